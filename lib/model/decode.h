// The model steps of the generation engine on the CPU: the prefill of one prompt into its KV-cache range,
// and one decode step over the live batch (one new token per sequence). The engine (generate.h) schedules
// sequences and calls these two; a CUDA backend provides the same two steps over device memory.
//
// Batch invariance: a sequence's tokens must not depend on which other sequences share its decode steps.
// Prefill runs one prompt at a time (so nothing else is in its matmuls). In a decode step every per-row
// operation is independent of the other rows by construction: the projections, the MLP and the lm_head go
// through maye_matmul_rows (below), whose result for a row does not depend on the number of rows, the row's
// position, the blocking or the thread count; RMSNorm, rotary, the residual adds and the activation are
// computed row by row; attention runs per (sequence, head) on that sequence's own cache range with a fixed
// order of operations (one query row per sequence: dot products, softmax, weighted sum of values). OpenBLAS
// sgemm gives no such guarantee: it picks kernels and splits work by shape and thread count, and one row can
// round differently with M = 1 and M = 32 (bench/rollout.c and tests/rollout/test_batch_invariance.c).
// The prefill's sgemm calls do depend on the thread count, so log-probs can differ in their last bits
// between runs with different model.threads; the decode steps do not.
//
// Dimension letters as in model.h: V vocab, C hidden, L layers, H heads, KV kv-heads, D head dim, I MLP width,
// B sequences of the step, T tokens of a prompt, NI image tokens.
#pragma once
#include "model/kvcache.h"
#include "model/model.h"

#include <stdint.h>

// out (T, OC) = inp (T, C) @ w (OC, C)^T + bias (OC) (bias may be NULL); ldo, ldi are the row strides of out
// and inp. Every output element is computed by the same operations wherever it lies: eight lane sums over
// k < C8 = C - C % 8 (lane j takes k = j mod 8, in increasing k, one fused multiply-add each), the fixed
// reduction ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)), then the tail k >= C8 by fused multiply-adds
// in order, then + bias. The AVX2 and the portable code give the same bits (model/lanes.h).
// pack (may be NULL: allocated per call) holds maye_matmul_rows_pack_floats(T, C) floats, 64-byte aligned.
void maye_matmul_rows(float *out, int64_t ldo, const float *inp, int64_t ldi, const float *w, const float *bias,
                      int T, int C, int OC, float *pack);
size_t maye_matmul_rows_pack_floats(int T, int C);

// ----------------------------------------------------------------------------
// prefill

// One prompt of T tokens: embeddings (image features scattered into the image-pad tokens), every layer with
// its keys and values written to rows [0, T) of KV range h, the final norm of the last row and its logits
// (V) = the next-token distribution. pos (3, T) are the M-RoPE positions. `a` must hold T_cap >= T tokens
// and max_ctx >= T. Ids and image-pad counts are the caller's to check.
void maye_prefill(const maye_model *m, maye_llm_acts *a, maye_kv_pool *pool, int h, const int64_t *ids, int T,
                  const int64_t *pos, const float *image_embeds, float *logits);

// ----------------------------------------------------------------------------
// decode step

// Workspace of a decode step for up to B_cap sequences whose contexts reach max_ctx rows. Every row of the
// per-row buffers below is padded to a multiple of 16 floats (all rows 64-byte aligned).
typedef struct {
    int B_cap, max_ctx;
    int ldv;          // row stride of logits: V rounded up to 16 floats (every row equally aligned)
    float *memory;
    float *x;         // (B, C) residual stream
    float *ln;        // (B, C) normalised input of a sublayer
    float *q;         // (B, H*D)
    float *k, *v;     // (B, KV*D) the new rows (also written to the cache)
    float *att;       // (B, H*D)
    float *h;         // (B, C)
    float *gate, *up; // (B, I)
    float *cos, *sin; // (B, D/2)
    float *logits;    // (B, ldv)
    float *pack;      // the matmuls' packed inputs
    float *scores;    // attention scores: a row of max_ctx per thread (grown with the thread count)
    size_t n_scores;
    int64_t *pos;     // (3, B) positions
    int *nk;          // (B) keys of each sequence (cached + new)
    float **kp, **vp; // (B) cache rows of each sequence in the current layer
} maye_decode_ws;

void maye_decode_ws_init(maye_decode_ws *ws, const maye_model_config *c, int B_cap, int max_ctx);
void maye_decode_ws_free(maye_decode_ws *ws);

// One decode step: sequence b feeds token ids[b] at position pos[b] (all three M-RoPE axes) with n_past[b]
// rows already in its KV range kv[b]; its new row goes to row n_past[b]. ws->logits row b receives the
// next-token logits. B <= ws->B_cap and n_past[b] < ws->max_ctx.
void maye_decode_step(const maye_model *m, maye_decode_ws *ws, const maye_kv_pool *pool, int B, const int64_t *ids,
                      const int64_t *pos, const int *kv, const int *n_past);
