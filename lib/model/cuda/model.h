// Qwen2-VL / Qwen2.5-VL on one GPU: the weights on the device (uploaded from a CPU maye_model, or drawn at
// random on the GPU for benchmarks), the vision tower + merger, and the language model over a packed batch
// with the fused CUDA kernels and cuBLASLt, then chunked log-probs / entropy or logits. The CPU model
// (model/model.h) is the reference: in fp32 mode (CUDA_F32) this matches it to ~1e-5; in bf16 mode
// (CUDA_BF16) weights and activations are bf16 with fp32 accumulation, statistics and log-probs.
//
// How the stages use it:
//   cuda_ctx_init(&ctx, 0); cuda_model_upload(&gm, ctx, &m, CUDA_BF16, train)   once (train: fp32 master)
//   cuda_vision_forward(&gm, pixels, P, grid, n_images, embeds)                 images -> (NI, C) on the GPU
//   maye_mrope_positions (CPU, per sequence) -> positions (3, T)
//   cuda_llm_forward(&gm, &batch, &acts)                                        packed batch -> hidden states
//   cuda_llm_logprobs(&gm, &acts, targets, temperature, logp, entropy)          log p(target) back on the host
// backward.h adds the backward and the optimizer, generate.h the KV cache, decoding and sampling.
//
// Layout on the device: one allocation for all weights in the model's dtype, carved from a size table
// (cuda_param) in group order (vision, merger, language model), so the trained language model is one
// contiguous range that the fp32 master copy, the gradients and the AdamW moments mirror element for
// element. The norms' weights and biases (cuda_param.norm) are read in fp32 in every dtype: in bf16 mode
// their fp32 values live in the master copy (trained language model) or in `norm32` (everything else), and
// their bf16 copies in the weights allocation only keep the layout whole (rounding the norms of a checkpoint
// stored in fp32 cost tiny-qwen2-vl about 0.004 of its bf16 log-prob error of 0.020, bench/bf16_emulation.py).
// Linear biases stay in the model's dtype: cuBLASLt's bias epilogue takes them in the output's type. Per
// layer, q/k/v_proj are stacked into one (QKV, C) matrix and gate/up_proj into one (2*I, C) (one GEMM each);
// Qwen2.5-VL's vision gate/up_proj likewise.
//
// Dimension letters as in model/model.h, plus QKV = (H + 2*KV) * D and F = 2 (Qwen2.5-VL's gated vision MLP)
// or 1 (Qwen2-VL). Every pointer in cuda_weights is device memory: `void *` of the model's dtype, `float *`
// fp32 (the norms).
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#ifndef _Noreturn
#define _Noreturn [[noreturn]] // C11's spelling, for the C headers below
#endif
extern "C" {
#endif

#include "kernels/cuda/cuda_kernels.h"
#include "model/model.h"

// ----------------------------------------------------------------------------
// weights

typedef struct {
    // vision tower
    void *patch_embed; // (VC, PD)
    float *v_norm1_w;  // (VL, VC)
    float *v_norm1_b;  // (VL, VC) Qwen2-VL only
    void *v_qkv_w;     // (VL, 3*VC, VC)
    void *v_qkv_b;     // (VL, 3*VC)
    void *v_proj_w;    // (VL, VC, VC)
    void *v_proj_b;    // (VL, VC)
    float *v_norm2_w;  // (VL, VC)
    float *v_norm2_b;  // (VL, VC) Qwen2-VL only
    void *v_fc1_w;     // (VL, F*VI, VC) fc1, or gate_proj rows then up_proj rows
    void *v_fc1_b;     // (VL, F*VI)
    void *v_fc2_w;     // (VL, VC, VI)
    void *v_fc2_b;     // (VL, VC)
    // patch merger
    float *m_norm_w;   // (VC)
    float *m_norm_b;   // (VC) Qwen2-VL only
    void *m_fc1_w;     // (M*VC, M*VC)
    void *m_fc1_b;     // (M*VC)
    void *m_fc2_w;     // (C, M*VC)
    void *m_fc2_b;     // (C)
    // language model
    void *embed;       // (V, C)
    float *ln1_w;      // (L, C)
    void *qkv_w;       // (L, QKV, C) q_proj rows, then k_proj, then v_proj
    void *qkv_b;       // (L, QKV)
    void *o_w;         // (L, C, H*D)
    float *ln2_w;      // (L, C)
    void *gu_w;        // (L, 2*I, C) gate_proj rows, then up_proj
    void *down_w;      // (L, C, I)
    float *norm_w;     // (C)
    void *lm_head;     // (V, C); embed when the embeddings are tied
} cuda_weights;

// One row of the size table: a device tensor, `count` copies of it (layers or blocks), each copy the CPU
// tensors `part` stacked row-wise (q, k, v or gate, up) or a single one.
typedef struct {
    size_t field;          // offsetof(cuda_weights, the pointer it sets)
    maye_param_group group;
    maye_param_init init;  // for cuda_model_init_random
    int count;
    int n_parts;
    size_t part[3];        // offsetof(maye_weights, ...) of each CPU tensor
    size_t part_numel[3];  // elements of each CPU tensor per copy
    size_t numel;          // elements per copy (the sum of the parts)
    size_t offset;         // elements from the start of cuda_model.weights
    bool norm;             // a norm's weight or bias: read in fp32 (its cuda_weights field is a float *)
    size_t norm_offset;    // bf16 mode: floats from the start of cuda_model.norm32 (unused when the master holds it)
} cuda_param;

#define CUDA_MAX_PARAMS 40

typedef struct {
    cuda_ctx *ctx;          // not owned
    cuda_stream stream;     // every operation of the model runs on this stream (owned)
    cuda_dtype dt;
    maye_model_config cfg;
    int n_specs;
    cuda_param specs[CUDA_MAX_PARAMS];
    size_t n_elems;         // elements of weights
    size_t group_off[3];    // first element of each maye_param_group's range (by group)
    size_t group_len[3];    // elements of that range, alignment padding included
    void *weights;          // (n_elems) of dt, padding zero
    cuda_weights w;
    float *master;          // (group_len[MAYE_PARAM_LLM]) fp32 language model for training in bf16, or NULL
    float *norm32;          // (n_norm) bf16 mode: the fp32 norm weights the master does not hold; else NULL
    size_t n_norm;
    void *scratch;          // per-call workspace (vision activations, staging), grown on demand
    size_t scratch_bytes;
    size_t device_bytes;    // device memory held by the model (weights, master, norm32, scratch)
    struct cuda_prof *prof; // region timing while a profile runs (cuda_model_profile_begin), else NULL
    void *pinned;           // (2, upload_wave) page-locked host staging of the pixel upload, made on first use
    size_t upload_wave;     // bytes per wave of that upload (0 until first use: CUDA_UPLOAD_WAVE_BYTES)
    struct CUevent_st *upload_done[2]; // recorded after each half's copy to the device
} cuda_model;

// Uploads a CPU model in dtype dt. With `master` (training) the language model's fp32 weights are kept too
// (in fp32 mode the weights themselves are fp32 and master stays NULL).
int cuda_model_upload(cuda_model *gm, cuda_ctx *ctx, const maye_model *m, cuda_dtype dt, bool master);
// CPU tensors (fp32, the CPU model's shapes; fields that are NULL are skipped) into every tensor of the
// groups in the mask `groups` (1u << maye_param_group): the weights, the master copy where it holds them and
// the fp32 norm weights. cuda_model_upload loads every group this way; a weight sync from a file reloads the trained
// ones. Waits for the copies.
int cuda_model_load(cuda_model *gm, unsigned groups, const maye_weights *w);
// The fp32 norm weights and biases of `groups` in table order: their device tensors (home[i], bytes[i] bytes
// each; at most CUDA_MAX_PARAMS) and how many there are. None in fp32 mode, where they sit in the weights
// allocation; in bf16 mode a weight sync carries them next to the groups' bf16 weights.
int cuda_model_norms(const cuda_model *gm, unsigned groups, float **home, size_t *bytes);
// A random model from config.json text, drawn on the GPU (normal(0, initializer_range), ones for norm weights,
// zeros for biases; not the values maye_model_init gives): for benchmarks of real sizes.
int cuda_model_init_random(cuda_model *gm, cuda_ctx *ctx, const char *config_json, const char *where, cuda_dtype dt,
                           bool master, uint64_t seed);
void cuda_model_free(cuda_model *gm);
// Waits for the model's stream; reports a kernel fault that happened on it.
int cuda_model_sync(cuda_model *gm);
// Frees the per-call scratch (it grows again when a call needs it).
int cuda_model_trim(cuda_model *gm);

// ----------------------------------------------------------------------------
// region timing (benchmarks)

#define CUDA_PROF_MAX 128 // distinct regions a profile holds

typedef struct {
    char name[64]; // "phase.region": the phase the caller set (vision, prefill, decode, forward, backward,
                   // optimizer, ...) and the model's region in it (qkv_proj, attention, lm_head, ...)
    double ms;     // GPU time charged to it
    long calls;    // times it was entered
} cuda_prof_total;

typedef struct {
    int n;
    cuda_prof_total regions[CUDA_PROF_MAX]; // (n) largest time first
    int n_phases;
    cuda_prof_total phases[CUDA_PROF_MAX];  // (n_phases) each phase's regions summed (name: the phase), in the
                                            // order the phases first appear in `regions`
    double total_ms;                        // the regions' sum
    long holds;   // times the GPU was held back while the host queued launches (not charged)
    long stalls;  // of those, the ones that closed a region early (it may hold one mark's host time)
} cuda_prof_report;

// Times every region of the model's GPU work from here to cuda_model_profile_end with CUDA events
// (model/cuda/profile.cu): the time between two marks in the model's code is charged to the first. The GPU
// is held back whenever it catches up with the host, so the times are those of back-to-back kernels, as
// from a CUDA graph; the generator does not capture graphs while a profile runs (a graph hides its regions).
// For benchmarks: marks cost the host a few microseconds each.
int cuda_model_profile_begin(cuda_model *gm);
// Waits for the stream, fills *r and stops profiling.
int cuda_model_profile_end(cuda_model *gm, cuda_prof_report *r);
// Copies the device weights of the groups in the mask `groups` (1u << maye_param_group) back into a CPU model
// of the same config: the fp32 master where it exists, else the weights (bf16 widened).
int cuda_model_download(cuda_model *gm, maye_model *m, unsigned groups);
// Copies a device image of the weight layout into CPU tensors: src (dtype sdt) holds the elements of the
// layout from element `base` on (the weights: base 0; the master, gradients and moments of the language
// model: base group_off[MAYE_PARAM_LLM]); every tensor of `groups` whose field in `dst` is not NULL is
// written there (fp32, the CPU model's shapes: q/k/v and gate/up unstacked).
int cuda_model_unstack(cuda_model *gm, const void *src, cuda_dtype sdt, size_t base, unsigned groups,
                       maye_weights *dst);
// The inverse: CPU tensors (fp32, the fields of src that are not NULL) into a device image of the layout
// (dtype ddt, from element base on), e.g. optimizer moments or gradients from a CPU checkpoint.
int cuda_model_stack(cuda_model *gm, void *dst, cuda_dtype ddt, size_t base, unsigned groups, const maye_weights *src);

// ----------------------------------------------------------------------------
// vision tower + merger

// The GPU twin of maye_vision_forward: pixels (P, PD) fp32 on the host, grid_thw (n_images, 3) on the host;
// out (NI, C) device memory of the model's dtype, rows in the order of the images' pad tokens. The
// activations live in the model's scratch (grown to fit P). Runs on the model's stream (asynchronous).
int cuda_vision_forward(cuda_model *gm, const float *pixels, int64_t P, const int64_t *grid_thw, int n_images,
                        void *out);
// The same with the patches in n_parts host arrays (parts[i]: part_patches[i] rows of PD, in order; P is their
// sum), e.g. one per request. The pixels go to the device through two page-locked staging halves of
// upload_wave bytes: host threads fill one half while the other is copied (from pageable memory the driver
// staged them itself, at 6.5 GB/s on an H200: 47 ms of a 64-image rollout's 0.9 s). Without page-locked memory
// (cudaMallocHost failing) each part is copied from where it is.
#define CUDA_UPLOAD_WAVE_BYTES (16u << 20)
// The pixel upload's wave size (bytes, at least 4096; 0 for CUDA_UPLOAD_WAVE_BYTES): for tests of waves that
// split parts. Frees the staging halves (made again at the next upload). Fails with a message below 4096.
int cuda_model_set_upload_wave(cuda_model *gm, size_t bytes);
int cuda_vision_forward_parts(cuda_model *gm, const float *const *parts, const int64_t *part_patches, int n_parts,
                              const int64_t *grid_thw, int n_images, void *out);

// ----------------------------------------------------------------------------
// language model

// A packed batch on the GPU: host arrays for the ids, segments and positions (uploaded by the forward), the
// image features already on the device.
typedef struct {
    int B;                     // sequences
    int T;                     // tokens over all sequences
    const int *cu_seqlens;     // (B+1) host
    const int64_t *ids;        // (T) host
    const int64_t *pos;        // (3, T) host: maye_mrope_positions per sequence (row stride T)
    const void *image_embeds;  // (NI, C) device, model dtype (cuda_vision_forward's out); NULL when NI = 0
    int64_t n_image_embeds;    // NI
    const int *n_prompt;       // (B) host: image-pad ids are images only in the first n_prompt[b] tokens of
                               // sequence b (a response may hold the id as an ordinary token); NULL = everywhere
} cuda_llm_batch;

// Activations of the language model on the device, one allocation carved from a size table, for up to T_cap
// tokens in up to B_cap sequences. keep as in maye_llm_acts: 1 every layer its own slices (a backward),
// 0 the layers share one set (inference), 2 shared slices but every layer's input kept (recomputation).
// The MLP activation act(gate) * up is never kept (the backward recomputes it from the gate|up rows).
typedef struct {
    int T_cap, B_cap, keep, n_kept; // n_kept = L with keep 1, else 1
    int T, B;            // of the last forward (T = 0 before any)
    void *memory;
    size_t bytes;
    // inputs of the last forward
    int64_t *ids;        // (T) device
    int64_t *pos;        // (3, T) device
    int *cu;             // (B+1) device
    int *seqlen;         // (B) device: keys of each segment (its length)
    int *img_rows;       // (T) device: rows of the image-pad tokens, in order
    const void **kv;     // (n_kept, 2, B) device: each segment's first key / value row in each kept qkv slice
    int *h_cu;           // (B+1) host copy of cu
    int max_len;         // longest segment
    // activations (model dtype unless noted)
    void *resid;         // (L+1, T, C) with keep 1 or 2 (input of each layer, then the last output), else (1, T, C)
    float *cos, *sin;    // (T, D/2)
    void *ln1;           // (n_kept, T, C)
    float *rstd1;        // (n_kept, T)
    void *qkv;           // (n_kept, T, QKV) after rotary
    void *att;           // (n_kept, T, H*D)
    float *lse;          // (n_kept, T, H)
    void *h;             // (n_kept, T, C) residual stream after attention
    void *ln2;           // (n_kept, T, C)
    float *rstd2;        // (n_kept, T)
    void *gu;            // (n_kept, T, 2*I) gate | up
    void *act;           // (T, I) act(gate) * up, shared
    void *hidden;        // (T, C) after the final norm
    float *rstdf;        // (T)
    // log-probs of the last cuda_llm_logprobs call, rows with a target only
    int lp_n;            // rows
    int lp_rows, lp_vchunk;
    void *lp_h;          // (T, C) the gathered hidden rows
    int *lp_row;         // (T) device: their rows
    int64_t *lp_tgt;     // (T) device: their targets
    float *lp_out;       // (2, T) device: their log-probs, then entropies
    void *lp_scratch;    // cuda_logprobs_scratch_bytes(lp_rows, lp_vchunk)
    float lp_temperature;
    void *host;          // staging for the inputs (host memory)
} cuda_llm_acts;

int cuda_llm_acts_init(cuda_llm_acts *a, const cuda_model *gm, int T_cap, int B_cap, int keep);
void cuda_llm_acts_free(cuda_llm_acts *a);

// Embeddings with the image features scattered into the image-pad rows, every layer with causal attention
// within each sequence, final norm: a->hidden. Checks the batch first (ids in the vocabulary, image-pad
// count = n_image_embeds, cu_seqlens, T <= T_cap, B <= B_cap) and fails with a message naming what is off.
int cuda_llm_forward(cuda_model *gm, const cuda_llm_batch *b, cuda_llm_acts *a);
// For each row t of the last forward with targets[t] >= 0 (host (T)): logprobs[t] = log softmax(logits_t /
// temperature)[targets[t]] and entropy[t] (may be NULL), into host arrays (T); rows without a target get 0.
// Waits for the result.
int cuda_llm_logprobs(cuda_model *gm, cuda_llm_acts *a, const int64_t *targets, float temperature, float *logprobs,
                      float *entropy);
// logits (N, V) on the host = rows [row0, row0 + N) of the last forward's hidden states @ lm_head^T (fp32).
int cuda_llm_logits(cuda_model *gm, cuda_llm_acts *a, int row0, int N, float *logits);

#ifdef __cplusplus
}
#endif
