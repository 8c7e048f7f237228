// CPU reference kernels (fp32, OpenMP, OpenBLAS for the matmuls): one plain function per layer,
// `<layer>_forward`, in the style of llm.c. Every other backend (CUDA) is tested against these, and the
// backward twins `<layer>_backward` go beside them. Kernels never fail: the caller checks shapes and ids
// before calling. Backward kernels accumulate (+=) into every gradient they write (so micro-batches and
// branches add up), except rope_backward, which rotates in place. Tensors are row-major; the shape of each
// argument is written next to it with these dimension letters:
//   T  rows (tokens or patches)        C  channels of the input      OC  channels of the output
//   H  query heads                     KV key/value heads            D   head dim
//   B  sequences (segments)            V  vocabulary                 N   elements
#pragma once
#include <stddef.h>
#include <stdint.h>

// ----------------------------------------------------------------------------
// threads

// Sets the threads of OpenMP and OpenBLAS; n <= 0 means all cores (model.threads). Returns the count in use.
int cpu_set_threads(int n);

// ----------------------------------------------------------------------------
// matmul, embedding, residual

// out (T, OC) = inp (T, C) @ weight (OC, C)^T + bias (OC) (bias may be NULL). PyTorch's nn.Linear layout.
void matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int T, int C, int OC);
// Fixed tiles for matmul_forward: while on, a product is computed in tiles of 128 rows x 256 columns, each a
// single-threaded sgemm, spread over the threads, so every output's bits depend on the shapes alone and not
// on the thread count (OpenBLAS partitions a product by its thread count, and its results change with the
// partition). The generation engine turns it on for its vision tower and prefills. Returns the previous
// setting.
int cpu_matmul_fixed_tiles(int on);
// dinp (T, C) += dout (T, OC) @ weight; dweight (OC, C) += dout^T @ inp; dbias (OC) += column sums of dout.
// Any of dinp, dweight, dbias may be NULL (not wanted).
void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int T, int C, int OC);

// out (T, C) = table[ids[t]] of table (V, C). Ids must be in [0, V) (checked by the caller).
void embedding_forward(float *out, const int64_t *ids, const float *table, int T, int C);
// dtable (V, C) row ids[t] += dout (T, C) row t; rows with ids[t] < 0 are skipped (tokens whose embedding was
// replaced, e.g. image features).
void embedding_backward(float *dtable, const int64_t *ids, const float *dout, int T, int C);

// out (N) = a (N) + b (N); out may alias a or b.
void residual_forward(float *out, const float *a, const float *b, int64_t N);

// ----------------------------------------------------------------------------
// normalisation

// RMSNorm (Qwen2RMSNorm): out (T, C) = inp * rsqrt(mean(inp^2) + eps) * weight (C); rstd (T) is saved for
// the backward (may be NULL).
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int T, int C, float eps);
// dinp (T, C) += d out / d inp applied to dout (T, C); dweight (C) += sum over rows (may be NULL). rstd (T)
// from the forward.
void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                      const float *rstd, int T, int C);

// LayerNorm with affine weight and bias (C): out (T, C); mean, rstd (T) saved for the backward (may be NULL).
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                       const float *bias, int T, int C, float eps);
// dinp (T, C) +=, dweight (C) +=, dbias (C) += (either may be NULL); mean, rstd (T) from the forward.
void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                        const float *weight, const float *mean, const float *rstd, int T, int C);

// ----------------------------------------------------------------------------
// activations

typedef enum {
    ACT_SILU,       // x * sigmoid(x)
    ACT_GELU,       // exact: 0.5 x (1 + erf(x / sqrt 2)) (torch nn.GELU())
    ACT_GELU_TANH,  // tanh approximation (gelu_pytorch_tanh)
    ACT_QUICK_GELU, // x * sigmoid(1.702 x)
} act_kind;

// out (N) = act(inp (N)); out may alias inp.
void activation_forward(float *out, const float *inp, int64_t N, act_kind act);
// out (N) = act(gate (N)) * up (N) (the SiLU-gated MLP when act = ACT_SILU); out may alias gate or up.
void gated_activation_forward(float *out, const float *gate, const float *up, int64_t N, act_kind act);
// dinp (N) += act'(inp) * dout (N).
void activation_backward(float *dinp, const float *dout, const float *inp, int64_t N, act_kind act);
// dgate (N) += act'(gate) * up * dout, dup (N) += act(gate) * dout (N).
void gated_activation_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                               int64_t N, act_kind act);

// ----------------------------------------------------------------------------
// rotary embeddings (rotate-half form: pairs (i, i + D/2))

// M-RoPE tables of the language model: for row t and half-dim i (i < D/2), the angle is
// pos[axis(i) * ld + t] * theta^(-2i/D), where axis(i) is 0 (temporal) for the first section[0] half-dims,
// 1 (height) for the next section[1] and 2 (width) for the rest. pos is (3, ld) with the T rows used.
// cos, sin (T, D/2).
void mrope_cos_sin_forward(float *cos, float *sin, const int64_t *pos, int64_t ld, int T, int D, float theta,
                           const int section[3]);

// 2-D rotary tables of the vision tower: half-dims [0, D/4) rotate with the patch row hpos (T), [D/4, D/2)
// with the patch column wpos (T), frequencies 10000^(-2j/(D/2)). cos, sin (T, D/2).
void vision_rope_cos_sin_forward(float *cos, float *sin, const int32_t *hpos, const int32_t *wpos, int T, int D);

// Rotates NH heads of D values in each of T rows of x (row stride ld floats) in place with cos, sin (T, D/2).
void rope_forward(float *x, const float *cos, const float *sin, int T, int NH, int D, int64_t ld);
// The gradient through rope_forward: rotates dx (same layout) in place by the opposite angles.
void rope_backward(float *dx, const float *cos, const float *sin, int T, int NH, int D, int64_t ld);

// ----------------------------------------------------------------------------
// attention

// Scaled dot-product attention over B independent segments (sequences, images, windows) packed into T query
// rows. Segment b owns query rows [cu_q[b], cu_q[b+1]) of q (T, H*D) (row stride ldq) and attends to its
// nk[b] key/value rows k[b], v[b] ((nk[b], KV*D), row stride ldkv). Causal: query i of segment b (nq_b rows)
// sees keys j <= nk[b] - nq_b + i (its own prefix, cached keys included); otherwise all nk[b] keys.
// Query head h uses key/value head h / (H / KV). out (T, H*D) (row stride ldo) holds the attention output
// (before the output projection); lse (T, H) the log-sum-exp of each row's scaled scores (for a backward;
// may be NULL). scratch (scratch_n floats) holds the score blocks: attention_scratch_floats(max nk[b]) is
// enough for every thread; with less, fewer rows or threads are used per block, down to one row of max nk[b].
void attention_forward(float *out, int64_t ldo, float *lse, const float *q, int64_t ldq, const float *const *k,
                       const float *const *v, int64_t ldkv, const int *cu_q, const int *nk, int B, int H, int KV,
                       int D, int causal, float *scratch, size_t scratch_n);
size_t attention_scratch_floats(int max_nk);
// The gradients of attention_forward (same segments, heads and strides) from dout (T, H*D) (row stride ldo):
// dq (T, H*D) += (row stride ldq), dk[b], dv[b] ((nk[b], KV*D), row stride ldkv) +=. Scores are recomputed
// block by block and the probabilities rebuilt from the forward's lse (T, H). Each (segment, query head) is
// one task writing its own key/value gradients into scratch; the heads sharing a key/value head are summed
// in a fixed order afterwards, so results do not depend on the schedule. scratch: at least
// attention_backward_scratch_floats(sum nk[b], max nk[b], H, D) floats.
void attention_backward(float *dq, float *const *dk, float *const *dv, const float *dout, int64_t ldo,
                        const float *q, int64_t ldq, const float *const *k, const float *const *v, int64_t ldkv,
                        const float *lse, const int *cu_q, const int *nk, int B, int H, int KV, int D, int causal,
                        float *scratch, size_t scratch_n);
size_t attention_backward_scratch_floats(int64_t total_nk, int max_nk, int H, int D);

// ----------------------------------------------------------------------------
// log-probabilities over a large vocabulary

// For each of N rows of hidden (N, C): z = hidden @ wte (V, C)^T / temperature; logprob[n] = log softmax(z)
// at targets[n] (in [0, V)), entropy[n] = -sum p log p (may be NULL). The [N, V] logits never exist: rows go
// in blocks of `rows` and the vocabulary in chunks of `vchunk`, with an online log-sum-exp. scratch:
// logprobs_scratch_floats(rows, vchunk) floats.
void logprobs_forward(float *logprob, float *entropy, const float *hidden, const float *wte, const int64_t *targets,
                      int N, int C, int V, float temperature, int rows, int vchunk, float *scratch);
size_t logprobs_scratch_floats(int rows, int vchunk);
// Gradients of logprob[n] (as logprobs_forward computes it, same temperature) weighted by dlogprob (N):
// dhidden (N, C) += and dwte (V, C) += (may be NULL), using d logprob[n] / d z_j = [j = targets[n]] - p_j.
// logprob (N) are the forward's values (they give each row's log-sum-exp without another pass over the
// vocabulary). Rows and vocabulary go in the same blocks as the forward, three sgemms per chunk; the [N, V]
// logits never exist. scratch: logprobs_backward_scratch_floats(rows, vchunk) floats.
void logprobs_backward(float *dhidden, float *dwte, const float *dlogprob, const float *logprob, const float *hidden,
                       const float *wte, const int64_t *targets, int N, int C, int V, float temperature, int rows,
                       int vchunk, float *scratch);
size_t logprobs_backward_scratch_floats(int rows, int vchunk);
