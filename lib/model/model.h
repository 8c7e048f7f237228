// Qwen2-VL / Qwen2.5-VL on the CPU: checkpoint loading (hub and newer tensor names, F32/BF16/F16 upcast to
// fp32, sharded or single safetensors), random initialisation and saving, the vision tower + patch merger,
// M-RoPE positions, the language model over a packed batch of sequences, and chunked log-probs/entropy.
// This fp32 code is the reference every other backend is tested against.
//
// How the stages use it:
//   maye_model_load                         once per process (or maye_model_init for a random model)
//   maye_vision_forward                     once per image (its output rows are reused by every sample)
//   maye_mrope_positions                    per sequence -> (3, T) positions and rope_delta for decoding
//   maye_llm_forward                        packed batch (cu_seqlens) -> final hidden states
//   maye_llm_logprobs / maye_llm_logits     log p(target) and entropy at a temperature, or full logits
//   maye_llm_layer_forward + maye_kv_view   one layer over new tokens whose keys/values go to a KV cache
//
// Dimension letters used in this file:
//   V vocab, C hidden, L layers, H heads, KV kv-heads, D head dim, I MLP width            (language model)
//   VL blocks, VC width, VH heads, VD head dim, VI MLP width, PD values per patch (1176)  (vision tower)
//   M = merge^2 patches per merged token, P patches, T tokens, B sequences, NI image tokens
#pragma once
#include "io/safetensors.h"
#include "model/config.h"

#include <stddef.h>
#include <stdint.h>

// ----------------------------------------------------------------------------
// weights: one fp32 allocation carved into tensors from a size table

typedef struct {
    // vision tower
    float *patch_embed; // (VC, PD) Conv3d weight (VC, in_chans, temporal, patch, patch) flattened
    float *v_norm1_w;   // (VL, VC)
    float *v_norm1_b;   // (VL, VC) Qwen2-VL (LayerNorm) only
    float *v_qkv_w;     // (VL, 3*VC, VC)
    float *v_qkv_b;     // (VL, 3*VC)
    float *v_proj_w;    // (VL, VC, VC)
    float *v_proj_b;    // (VL, VC)
    float *v_norm2_w;   // (VL, VC)
    float *v_norm2_b;   // (VL, VC) Qwen2-VL only
    float *v_fc1_w;     // (VL, VI, VC) Qwen2-VL mlp.fc1, Qwen2.5-VL mlp.gate_proj
    float *v_fc1_b;     // (VL, VI)
    float *v_up_w;      // (VL, VI, VC) Qwen2.5-VL mlp.up_proj only
    float *v_up_b;      // (VL, VI)
    float *v_fc2_w;     // (VL, VC, VI) mlp.fc2 / mlp.down_proj
    float *v_fc2_b;     // (VL, VC)
    // patch merger
    float *m_norm_w;    // (VC) ln_q
    float *m_norm_b;    // (VC) Qwen2-VL only
    float *m_fc1_w;     // (M*VC, M*VC)
    float *m_fc1_b;     // (M*VC)
    float *m_fc2_w;     // (C, M*VC)
    float *m_fc2_b;     // (C)
    // language model
    float *embed;       // (V, C)
    float *ln1_w;       // (L, C) input_layernorm
    float *q_w;         // (L, H*D, C)
    float *q_b;         // (L, H*D)
    float *k_w;         // (L, KV*D, C)
    float *k_b;         // (L, KV*D)
    float *v_w;         // (L, KV*D, C)
    float *v_b;         // (L, KV*D)
    float *o_w;         // (L, C, H*D)
    float *ln2_w;       // (L, C) post_attention_layernorm
    float *gate_w;      // (L, I, C)
    float *up_w;        // (L, I, C)
    float *down_w;      // (L, C, I)
    float *norm_w;      // (C) final norm
    float *lm_head;     // (V, C); points at embed when the embeddings are tied
} maye_weights;

typedef enum { MAYE_PARAM_VISION, MAYE_PARAM_MERGER, MAYE_PARAM_LLM } maye_param_group;
typedef enum { MAYE_INIT_NORMAL, MAYE_INIT_ONES, MAYE_INIT_ZEROS } maye_param_init;

// One row of the size table: a checkpoint tensor, or `count` of them stacked (one per layer/block).
typedef struct {
    char hub[96];           // hub name; "%d" stands for the layer/block index
    maye_param_group group; // what a trainer freezes or trains (vision, merger, llm)
    maye_param_init init;
    int count;              // stacked copies (layers or blocks); 1 for single tensors
    int ndim;
    int64_t shape[5];       // of one copy, as stored in the checkpoint
    size_t numel;           // of one copy
    size_t offset;          // floats from the start of maye_model.params
    size_t field;           // offsetof(maye_weights, the pointer it sets)
} maye_param;

#define MAYE_MAX_PARAMS 48

typedef struct {
    maye_model_config cfg;
    maye_weights w;
    float *params;          // every weight, fp32, in table order (vision, merger, llm)
    size_t n_params;        // floats in params
    int n_specs;
    maye_param specs[MAYE_MAX_PARAMS];
    char *config_json;      // the config.json text the model was made from (written back by save)
} maye_model;

// Loads a checkpoint directory: config.json + model.safetensors or model.safetensors.index.json. Tensors
// may be F32, BF16 or F16 and use the hub names (visual.*, model.*, lm_head.weight) or the newer ones
// (model.visual.*, model.language_model.*). A missing tensor or a wrong shape is an error naming the file,
// the tensor and both shapes. A master.safetensors beside the weights (a maye checkpoint saved in bf16) is
// laid over them, so the fp32 trained weights come back exactly.
int maye_model_load(maye_model *m, const char *dir);
// A randomly initialised model from config.json text: normal(0, initializer_range) weights, ones for norm
// weights, zeros for biases. Deterministic in (config, seed), whatever the thread count.
int maye_model_init(maye_model *m, const char *config_json, const char *where, uint64_t seed);
// Writes dir/config.json and dir/model.safetensors with hub names in `dtype` (MAYE_F32, MAYE_BF16, MAYE_F16).
int maye_model_save(const maye_model *m, const char *dir, maye_dtype dtype);
void maye_model_free(maye_model *m);
// Floats of the parameters of one group (a contiguous range of params starting at *offset).
size_t maye_model_group_range(const maye_model *m, maye_param_group g, size_t *offset);
// Writes the tensors of the groups in the bit mask `groups` (1u << maye_param_group) to one safetensors file
// (hub names) with metadata key/value pairs meta_kv[2*i], meta_kv[2*i+1]: a weight-sync file.
int maye_model_save_groups(const maye_model *m, const char *path, unsigned groups, maye_dtype dtype,
                           const char *const *meta_kv, int n_meta);
// Overwrites the weights named in a safetensors file (hub names, any subset, F32/BF16/F16); the others keep
// their values. A name that is not a weight of this model or a wrong shape is an error naming it.
int maye_model_load_overlay(maye_model *m, const char *path);

// ----------------------------------------------------------------------------
// vision tower + merger

// Checks image grids against P patch rows (t*h*w each, h and w multiples of the merge size) and returns the
// number of merged tokens (sum of t*h*w / M) in *n_tokens.
int maye_vision_check(const maye_model_config *c, int64_t P, const int64_t *grid_thw, int n_images,
                      int64_t *n_tokens);
// Runs the tower on the patches of n_images images (attention within each image frame, or window) and the
// merger: pixels (P, PD) -> out (sum t*h*w/M, C), the rows in the order of the images' pad tokens.
int maye_vision_forward(const maye_model *m, const float *pixels, int64_t P, const int64_t *grid_thw, int n_images,
                        float *out);

// The order the tower processes patches in, their rotary positions and attention segments (shared by the
// forward and the backward). The tower works on merged units of M patches; Qwen2.5-VL walks them window by
// window.
typedef struct {
    int32_t *hpos, *wpos;  // (P) patch row / column, in processing order
    int32_t *unit_of;      // (P/M) original merged unit at each processing slot (identity for Qwen2-VL)
    int *cu_full, n_full;  // (n_full+1) one attention segment per image frame, in processing rows
    int *cu_win, n_win;    // (n_win+1) one attention segment per window (Qwen2.5-VL)
} maye_vision_layout;

// The layout of images whose grids passed maye_vision_check (P patches in total).
void maye_vision_layout_build(const maye_model_config *c, const int64_t *grid_thw, int n_images, int64_t P,
                              maye_vision_layout *lo);
void maye_vision_layout_free(maye_vision_layout *lo);

// ----------------------------------------------------------------------------
// M-RoPE positions

// transformers' get_rope_index for one sequence of T tokens holding n_images images (runs of image-pad
// tokens, one per grid row): pos (3, ld) gets temporal/height/width positions in its first T columns, and
// *rope_delta = max position + 1 - T, so a token appended at index t >= T has all three positions t + delta.
int maye_mrope_positions(const maye_model_config *c, const int64_t *ids, int T, const int64_t *grid_thw,
                         int n_images, int64_t *pos, int64_t ld, int64_t *rope_delta);
// Positions of a prompt (its first n_prompt of T tokens, holding the images) followed by a sampled response:
// the response's tokens continue as text, t + rope_delta on all three axes, as the decoder placed them
// (an image-pad id inside the response is an ordinary token).
int maye_mrope_positions_response(const maye_model_config *c, const int64_t *ids, int T, int n_prompt,
                                  const int64_t *grid_thw, int n_images, int64_t *pos, int64_t ld);

// ----------------------------------------------------------------------------
// language model

// A packed batch: B sequences of different lengths, concatenated.
typedef struct {
    int B;                      // sequences
    int T;                      // tokens over all sequences
    const int *cu_seqlens;      // (B+1) offset of each sequence's first token; cu_seqlens[B] = T
    const int64_t *ids;         // (T)
    const int64_t *pos;         // (3, T) M-RoPE positions (maye_mrope_positions per sequence)
    const float *image_embeds;  // (NI, C) scattered into the image-pad tokens in order; NULL when NI = 0
    int64_t n_image_embeds;     // NI
    const int *n_prompt;        // (B) image-pad ids are images only in the first n_prompt[b] tokens of sequence b
                                // (a sampled response may hold the id as an ordinary token); NULL = everywhere
} maye_llm_batch;

// Whether row t, in sequence s of the batch, takes an image feature instead of its token's embedding.
static inline int maye_llm_image_row(const maye_model_config *c, const maye_llm_batch *b, int s, int t) {
    return b->ids[t] == c->image_token_id && (!b->n_prompt || t < b->cu_seqlens[s] + b->n_prompt[s]);
}

// The checks of a packed batch's host arrays that every backend's forward makes (B >= 1 and its own
// capacities checked first): cu_seqlens runs from 0 to T without decreasing, every id is in the vocabulary,
// and the image-pad tokens (maye_llm_image_row) are as many as n_image_embeds. image_embeds is not looked at.
int maye_llm_batch_check(const maye_model_config *c, const maye_llm_batch *b);

// Where a layer's attention finds keys and values. Sequence b's rows (after rotary) live at k[b], v[b]
// ((n_past[b] + new tokens), KV*D): rows [0, n_past[b]) are already there (a KV cache) and the layer writes
// the new tokens' rows after them. For a plain packed forward k[b] points into the activations.
typedef struct {
    int B;
    const int *cu_q;    // (B+1) offsets of each sequence's new tokens in the layer's T rows
    const int *n_past;  // (B) cached rows before the new ones; NULL = none
    float **k, **v;     // (B) per-sequence key / value rows, row stride KV*D
} maye_kv_view;

// Activations of one layer (views into maye_llm_acts).
typedef struct {
    float *ln1;    // (T, C)
    float *rstd1;  // (T)
    float *q;      // (T, H*D) after rotary
    float *k, *v;  // (T, KV*D) this call's keys (after rotary) and values
    float *att;    // (T, H*D) attention output before o_proj
    float *lse;    // (T, H) log-sum-exp of the attention scores
    float *h;      // (T, C) residual stream after attention
    float *ln2;    // (T, C)
    float *rstd2;  // (T)
    float *gate;   // (T, I)
    float *up;     // (T, I)
    float *act;    // (T, I) silu(gate) * up
} maye_llm_layer_acts;

// One allocation for the language model's activations, sized for up to T_cap packed tokens whose sequences
// have at most max_ctx keys (cached + new; the attention scratch grows with it). With keep = 1 every layer
// has its own slices (what a backward needs); with keep = 0 the layers share one set; with keep = 2 the
// layers share one set but every layer's input stays in resid (a backward that recomputes each layer).
typedef struct {
    int T_cap, max_ctx, keep, n_kept; // n_kept = L with keep = 1, else 1
    int T;                    // tokens of the last forward
    float *memory;
    size_t n_floats;
    float *embeds;    // (T, C) input embeddings after the image features are scattered in
    float *resid;     // (L+1, T, C) with keep 1 or 2 (input of each layer, then the last output), else (1, T, C)
    float *cos, *sin; // (T, D/2) M-RoPE tables of the batch
    float *ln1, *rstd1, *q, *k, *v, *att, *lse, *h, *ln2, *rstd2, *gate, *up, *act; // (n_kept, ...) as above
    float *hidden;    // (T, C) final hidden states (after the final norm)
    float *rstdf;     // (T)
    float *scratch;   // attention scores and log-prob chunks
    size_t scratch_n; // floats in scratch
    int lp_rows, lp_vchunk; // log-prob blocking
    float *lp_in;     // (lp_rows, C) gathered hidden rows for the log-probs
    float *lp_out;    // (2, lp_rows) gathered log-probs and entropies
    int64_t *lp_tgt;  // (lp_rows) gathered targets
} maye_llm_acts;

// max_ctx <= T_cap means T_cap (a forward without a KV cache).
void maye_llm_acts_init(maye_llm_acts *a, const maye_model_config *c, int T_cap, int max_ctx, int keep);
void maye_llm_acts_free(maye_llm_acts *a);
// The slices layer l uses (layer 0's for every layer unless keep = 1).
maye_llm_layer_acts maye_llm_acts_layer(const maye_llm_acts *a, const maye_model_config *c, int l);

// M-RoPE cos/sin tables (T, D/2) for positions pos (3, ld).
void maye_mrope_tables(const maye_model_config *c, const int64_t *pos, int64_t ld, int T, float *cos, float *sin);
// One decoder layer over T rows: x_out (T, C) = x_in + attention + MLP (x_out may alias x_in). cos/sin come
// from the rows' positions; kv says where each sequence's keys/values are (the new rows are written there).
void maye_llm_layer_forward(const maye_model *m, int l, const float *x_in, float *x_out, int T, const float *cos,
                            const float *sin, const maye_kv_view *kv, const maye_llm_layer_acts *la, float *scratch,
                            size_t scratch_n);
// Embeddings (image features scattered in), every layer with causal attention within each sequence, final
// norm: a->hidden (T, C). Fails (with a message) on ids outside the vocabulary, an image-pad count that does
// not match n_image_embeds, or T > a->T_cap.
int maye_llm_forward(const maye_model *m, const maye_llm_batch *b, maye_llm_acts *a);
// logits (N, V) = hidden (N, C) @ lm_head^T.
void maye_llm_logits(const maye_model *m, const float *hidden, int N, float *logits);
// For each row t of the last forward with targets[t] >= 0: logprobs[t] = log softmax(logits_t / temperature)
// [targets[t]], entropy[t] (may be NULL) = entropy of that distribution; rows with targets[t] < 0 get 0.
int maye_llm_logprobs(const maye_model *m, maye_llm_acts *a, const int64_t *targets, float temperature,
                      float *logprobs, float *entropy);
// targets (T): the next token of the same sequence, -1 at each sequence's last token.
void maye_next_token_targets(const maye_llm_batch *b, int64_t *targets);
