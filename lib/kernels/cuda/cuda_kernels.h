// The CUDA kernel layer, callable from C: the GPU twins of the CPU reference kernels in kernels/cpu/kernels.h
// (same arguments, same semantics, same dimension letters), plus sampling and the optimizer kernels. Every
// tensor argument is a device pointer; `stream` may be NULL (the default stream). Every function returns 0,
// or -1 with a message (error.h) naming the operation and the CUDA/cuBLAS error; kernels run asynchronously,
// so a fault inside a kernel surfaces at the next synchronisation (or the next call that checks).
//
// dtypes: CUDA_F32 stores activations and weights in fp32 and computes in fp32 (no TF32): results match the
// CPU reference to about 1e-5 relative. CUDA_BF16 stores them in bf16 and accumulates in fp32 (GEMMs through
// cuBLASLt, attention on the tensor cores). Statistics (rstd, mean, lse), rotary tables, log-probs, entropies
// and optimizer state are always fp32. `void *` arguments hold elements of the call's dtype.
//
// Dimension letters (as in kernels.h):
//   T  rows (tokens or patches)        C  channels of the input      OC  channels of the output
//   H  query heads                     KV key/value heads            D   head dim
//   B  sequences (segments)            V  vocabulary                 N   elements
//
// This header needs no CUDA headers: the stream type is the runtime's cudaStream_t under another name.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "kernels/cpu/kernels.h" // act_kind (and the CPU twins, with C linkage from C++ too)

typedef struct CUstream_st *cuda_stream; // the same type as cudaStream_t

typedef enum {
    CUDA_F32 = 0,
    CUDA_BF16 = 1,
} cuda_dtype;

// ----------------------------------------------------------------------------
// device and context

// Number of usable GPUs; 0 when there is no GPU or no driver (never fails).
int cuda_device_count(void);

// Which attention kernel cuda_attention_forward uses (cuda_ctx_set_attention_kernel).
typedef enum {
    CUDA_ATTN_AUTO = 0,    // bf16: tensor cores (split-K decode when every segment has <= 1 query row); fp32: SIMT
    CUDA_ATTN_SIMT = 1,    // the fp32-math SIMT flash kernel for every dtype and shape
    CUDA_ATTN_PREFILL = 2, // bf16: the tensor-core prefill kernel even for one-row segments (else as AUTO)
} cuda_attention_kernel;

// Which attention backward the GPU model's training uses (cuda_ctx_set_attention_backward).
typedef enum {
    CUDA_ATTN_BWD_AUTO = 0, // the flash-style tensor-core kernels where supported (bf16, head dim 64, 80, 128),
                            // else the per-segment GEMMs (cuda_attention_backward_flash / _backward, model_kernels.h)
    CUDA_ATTN_BWD_GEMM = 1, // the per-segment GEMMs for every dtype and shape
} cuda_attention_backward_kernel;

// A context owns the cuBLASLt handle and its 32 MiB workspace and caches device properties. Calls that take
// a context must not run concurrently on different streams with the same context (they share the workspace).
typedef struct cuda_ctx cuda_ctx;

// Selects `device`, creates the handles. Fails with a message when the device does not exist.
int cuda_ctx_init(cuda_ctx **ctx, int device);
void cuda_ctx_free(cuda_ctx *ctx);
const char *cuda_ctx_device_name(const cuda_ctx *ctx); // "NVIDIA H200"
int cuda_ctx_sm_count(const cuda_ctx *ctx);
void cuda_ctx_set_attention_kernel(cuda_ctx *ctx, cuda_attention_kernel kernel);
void cuda_ctx_set_attention_backward(cuda_ctx *ctx, cuda_attention_backward_kernel kernel);
cuda_attention_backward_kernel cuda_ctx_attention_backward(const cuda_ctx *ctx);
// The split-K decode attention's keys per block in 64-key tiles (0, the default: at most 8 tiles per block when
// the sequences' key/value heads fill the GPU, else enough blocks for about three per SM). For tuning:
// cuda_attention_workspace_bytes follows it, so size the workspace after setting it.
void cuda_ctx_set_decode_split_tiles(cuda_ctx *ctx, int tiles);
// The block shape of the tensor-core prefill attention: query rows per warp, 32 (two mma tiles sharing every
// K/V fragment read from shared memory; the default) or 16 (one tile, the kernel before it); and query rows per
// block, 64 or 128: in 32-row warps 2 or 4 warps (default 128: on an H200 0.75x the time of the 16-row default
// on the update's causal 8 x 1024, D 128, and 0.78x on the rollout's 64 images of 1024 patches, D 80), in
// 16-row warps 4 or 8 warps (default 64 for causal attention, 128 for bidirectional: on an H100 each the faster
// one there, by 1.08x and 1.12x). The same bits in every shape; 0 selects the default. Each fails with a message
// for any other value (the context keeps its setting).
int cuda_ctx_set_prefill_rows(cuda_ctx *ctx, int rows);
int cuda_ctx_set_prefill_warp_rows(cuda_ctx *ctx, int rows);
// Which of cuBLASLt's ranked heuristic answers (at most CUDA_GEMM_ALGOS) the GEMMs take: 0, the default, its
// first choice; a rank past the answers offered takes the last one. Forgets the context's remembered answers,
// so the next GEMM of every shape asks again. For benchmarks (bench/gpu_kernels times the decode step's GEMMs
// per rank); fails with a message outside [0, CUDA_GEMM_ALGOS).
#define CUDA_GEMM_ALGOS 8
#define CUDA_GEMM_WORKSPACE_BYTES (32u << 20) // the context's cuBLASLt workspace (the recommendation for Hopper)
int cuda_ctx_set_gemm_algo_rank(cuda_ctx *ctx, int rank);
// How many answers cuBLASLt's heuristic offered for the last GEMM shape the context asked about (it asks for
// rank + 1: fewer means the rank was past the last answer).
int cuda_ctx_gemm_last_answers(const cuda_ctx *ctx);
// Splits K n ways (2 to 64) in the chosen answer, partial sums reduced by cuBLASLt in fp32 where the algorithm
// offers that; 0, the default, keeps the answer as the heuristic gave it. A GEMM whose algorithm cannot split K
// (or not within the context's workspace) then fails with a message. Forgets the remembered answers, as the
// rank does. For benchmarks (gpu_kernels' decode GEMMs: whether splitting K feeds more SMs at 64 rows).
int cuda_ctx_set_gemm_splitk(cuda_ctx *ctx, int splits);

// ----------------------------------------------------------------------------
// matmul, embedding, residual

// out (T, OC) = inp (T, C) @ weight (OC, C)^T + bias (OC) (bias may be NULL), all of dtype dt (nn.Linear).
int cuda_matmul_forward(cuda_ctx *ctx, cuda_dtype dt, void *out, const void *inp, const void *weight,
                        const void *bias, int T, int C, int OC, cuda_stream stream);
// out (T, OC) = resid (T, OC) + inp (T, C) @ weight (OC, C)^T + bias (OC): a linear layer added to a residual
// stream in the GEMM's epilogue (one rounding of the sum, no (T, OC) temporary, no separate residual pass);
// resid may be out (in place).
int cuda_matmul_residual_forward(cuda_ctx *ctx, cuda_dtype dt, void *out, const void *resid, const void *inp,
                                 const void *weight, const void *bias, int T, int C, int OC, cuda_stream stream);

// General row-major GEMM: c (M, N) = alpha * op(a) @ op(b) + beta * c, where op(a) is (M, K) (a stored (M, K)
// with row stride lda, or (K, M) when trans_a), op(b) is (K, N) (b stored (K, N), or (N, K) when trans_b).
// a and b have dtype ab; c has dtype c_dt (CUDA_F32 output from CUDA_BF16 inputs is allowed). Accumulation
// is fp32. For the backward passes: dinp = dout @ W is (trans_a 0, trans_b 0), dW = dout^T @ inp is (1, 0).
int cuda_gemm(cuda_ctx *ctx, cuda_dtype ab, cuda_dtype c_dt, int trans_a, int trans_b, int M, int N, int K,
              float alpha, const void *a, int64_t lda, const void *b, int64_t ldb, float beta, void *c, int64_t ldc,
              cuda_stream stream);

// out (T, C) = table[ids[t]] of table (V, C); ids (T) int64 must be in [0, V) (checked by the caller).
int cuda_embedding_forward(cuda_dtype dt, void *out, const int64_t *ids, const void *table, int T, int C,
                           cuda_stream stream);

// ----------------------------------------------------------------------------
// normalisation

// The norms' weight and bias (C) are fp32 in every dtype (the GPU model keeps them so).

// RMSNorm: out (T, C) = inp * rsqrt(mean(inp^2) + eps) * weight (C); rstd (T) fp32, may be NULL.
int cuda_rmsnorm_forward(cuda_dtype dt, void *out, float *rstd, const void *inp, const float *weight, int T, int C,
                         float eps, cuda_stream stream);

// LayerNorm with affine weight and bias (C): out (T, C); mean, rstd (T) fp32, may be NULL.
int cuda_layernorm_forward(cuda_dtype dt, void *out, float *mean, float *rstd, const void *inp, const float *weight,
                           const float *bias, int T, int C, float eps, cuda_stream stream);

// ----------------------------------------------------------------------------
// activations

// out (N) = act(inp (N)); out may alias inp.
int cuda_activation_forward(cuda_dtype dt, void *out, const void *inp, int64_t N, act_kind act, cuda_stream stream);
// out (N) = act(gate (N)) * up (N) (the SiLU-gated MLP with ACT_SILU); out may alias gate or up.
int cuda_gated_activation_forward(cuda_dtype dt, void *out, const void *gate, const void *up, int64_t N,
                                  act_kind act, cuda_stream stream);

// ----------------------------------------------------------------------------
// rotary embeddings (rotate-half form; the tables are fp32 whatever the dtype)

// M-RoPE tables: pos (3, ld) int64 on the device, section[3] on the host; cos, sin (T, D/2). See kernels.h.
int cuda_mrope_cos_sin_forward(float *cos, float *sin, const int64_t *pos, int64_t ld, int T, int D, float theta,
                               const int section[3], cuda_stream stream);
// Vision tower 2-D tables from hpos, wpos (T) int32; cos, sin (T, D/2). See kernels.h.
int cuda_vision_rope_cos_sin_forward(float *cos, float *sin, const int32_t *hpos, const int32_t *wpos, int T, int D,
                                     cuda_stream stream);
// Rotates NH heads of D values in each of T rows of x (row stride ld elements) in place. Queries and keys
// that sit side by side in a fused qkv row rotate in one call (NH = H + KV).
int cuda_rope_forward(cuda_dtype dt, void *x, const float *cos, const float *sin, int T, int NH, int D, int64_t ld,
                      cuda_stream stream);
// cuda_rope_forward of the H query and KV key heads of fused q|k|v rows (T rows of stride ld: H + 2 KV heads
// of D) that also writes each row's rotated keys and its values to row cache_rows[t] (device, T) of cache_k and
// cache_v (KV * D values per row, row stride ldc): one launch for the rotation and both cache writes.
int cuda_rope_cache_forward(cuda_dtype dt, void *qkv, const float *cos, const float *sin, int T, int H, int KV, int D,
                            int64_t ld, void *cache_k, void *cache_v, const int *cache_rows, int64_t ldc,
                            cuda_stream stream);

// ----------------------------------------------------------------------------
// attention

// Scaled dot-product attention over B packed segments, with the semantics of attention_forward (kernels.h):
// segment b owns query rows [cu_q[b], cu_q[b+1]) of q (T, H*D) (row stride ldq) and attends to its nk[b] key /
// value rows k[b], v[b] ((nk[b], KV*D), row stride ldkv); causal: query i of an nq-row segment sees keys
// j <= nk[b] - nq + i; query head h uses key/value head h / (H / KV). out (T, H*D) (row stride ldo) and
// lse (T, H) (fp32, may be NULL) as in kernels.h.
// Device layout: cu_q (B+1) and nk (B) are int arrays in device memory; k and v are device arrays of B device
// pointers (the CPU kernel's pointer-per-segment layout: a packed batch points them into the qkv activations,
// a KV cache at each sequence's slab). max_nq and max_nk are host-side upper bounds of the segments' query
// and key counts (they size the grid). A row that sees no key (nk[b] = 0, or causal with nk[b] < nq) gets
// out = 0 and lse = -inf (the CPU kernel leaves NaN there).
// Kernels: bf16 with D in {64, 80, 128}, 16-byte aligned q/out and ldq, ldo, ldkv multiples of 8 runs on the
// tensor cores (mma.sync m16n8k16, 64-row query tiles, 64-key tiles double-buffered with cp.async; segments
// whose k[b]/v[b] are not 16-byte aligned use plain loads). When every segment has at most one query row
// (max_nq == 1) and H / KV <= 16 the decode kernel runs instead: the H / KV query heads of a key/value head
// share one 16-row tile, the keys are split across blocks (split-K) and a second kernel merges the splits;
// the split count grows with the workspace up to cuda_attention_workspace_bytes. Everything else (fp32,
// other head dims, unaligned rows) runs the SIMT kernel (fp32 math, any D <= 256).
size_t cuda_attention_workspace_bytes(const cuda_ctx *ctx, int B, int H, int D, int max_nk);
int cuda_attention_forward(cuda_ctx *ctx, cuda_dtype dt, void *out, int64_t ldo, float *lse, const void *q,
                           int64_t ldq, const void *const *k, const void *const *v, int64_t ldkv, const int *cu_q,
                           const int *nk, int B, int H, int KV, int D, int causal, int max_nq, int max_nk,
                           void *workspace, size_t workspace_bytes, cuda_stream stream);

// ----------------------------------------------------------------------------
// log-probabilities over a large vocabulary, fused with the lm_head

// For each of N rows of hidden (N, C): z = hidden @ wte (V, C)^T / temperature; logprob[n] = log softmax(z) at
// targets[n] (int64, in [0, V)), entropy[n] = -sum p log p (may be NULL); logprob, entropy (N) fp32. Rows go
// in blocks of `rows`, the vocabulary in chunks of `vchunk`: one cuBLASLt GEMM writes a (rows, vchunk) fp32
// logit block into scratch (bf16 inputs, fp32 accumulation and output), one kernel folds it into each row's
// online log-sum-exp state (max m, s = sum exp(z - m), t = sum exp(z - m) (z - m)); the [N, V] logits never
// exist. Pick rows * vchunk * 4 bytes below the L2 size (e.g. 2048 x 4096 = 32 MiB) so the fold reads the
// block from L2. scratch: cuda_logprobs_scratch_bytes(rows, vchunk) bytes of device memory.
size_t cuda_logprobs_scratch_bytes(int rows, int vchunk);
int cuda_logprobs_forward(cuda_ctx *ctx, cuda_dtype dt, float *logprob, float *entropy, const void *hidden,
                          const void *wte, const int64_t *targets, int N, int C, int V, float temperature, int rows,
                          int vchunk, void *scratch, cuda_stream stream);

// ----------------------------------------------------------------------------
// sampling (rollout)

// out (N) = maye_uniform_at(seed, stream_id, index0 + i) (core/rng.h), computed on the GPU.
int cuda_uniform_fill(float *out, uint64_t seed, uint64_t stream_id, uint64_t index0, int64_t N, cuda_stream stream);

// Draws one token per row of logits (B, V) (fp32, row stride ld) with per-row settings temperature (B),
// top_k (B), top_p (B) and per-row Philox streams: row b uses u = maye_uniform_at(seed, streams[b],
// indices[b]) (a sample's stream and its response position). Rows b with suppress[b] != 0 (suppress (B) may be
// NULL: none) see the n_banned (<= 256) ids of banned as -inf (stop ids before min_tokens). tokens (B) int64;
// logprob (B) fp32 (may be NULL) = log softmax(z / temperature) at the token over the whole vocabulary of the
// logits as given, before suppression and truncation (temperature 1 for greedy rows). All arrays are in
// device memory. lib/model/sample.c is the CPU twin: it draws the same tokens from the same logits.
//
// The exact definition (kernels/cuda/sampling_def.h has the shared arithmetic). For one row with logits z
// (V, after suppression), temperature tau, top-k K, top-p P:
//  1. tau <= MAYE_SAMPLE_GREEDY_TEMPERATURE (1e-5): greedy, the token is argmax z (the lowest id among
//     equal maxima). Otherwise:
//  2. zmax = max z; every token gets an integer weight q_i = maye_sample_weight(z_i, zmax, tau) (uint64,
//     ~2^40 * exp(z_i / tau - zmax / tau), 0 below exp(-28); exact and identical on CPU and GPU).
//  3. Order the tokens by maye_sample_key(z_i) descending (the float order), ties by id ascending; rank 0 is
//     the first. k = K if 0 < K < V, else V. Z = sum of q over ranks < k.
//  4. n = k if P >= 1; else with target = maye_sample_scale(P, Z), n is the smallest m >= 1 with
//     sum of q over ranks < m >= target. The kept set is ranks < n; S = sum of their q.
//  5. S == 0: the token is rank 0. Otherwise r = maye_sample_scale(u, S) and the token is the smallest id i
//     in the kept set whose running sum of q over kept ids <= i (in id order) exceeds r: inverse-CDF over
//     the truncated distribution with one uniform per token. The scan runs in id order rather than sorted
//     order, so the GPU never sorts the vocabulary: it finds the top-k and top-p cut-offs by radix
//     selection over the keys (4 passes of 8 bits each) with integer (order-independent) sums.
// One block of 512 threads per row; the logits are read twice plus a sixteenth of the row (no truncation) to
// about 12 times (top-k and top-p), from L2 for typical batch sizes; the draw is a two-level prefix search
// (strips, then pieces of one strip), not a walk over the row.
int cuda_sample_forward(int64_t *tokens, float *logprob, const float *logits, int64_t ld, int B, int V,
                        const float *temperature, const int *top_k, const float *top_p, uint64_t seed,
                        const uint64_t *streams, const uint64_t *indices, const int32_t *banned, int n_banned,
                        const uint8_t *suppress, cuda_stream stream);

// ----------------------------------------------------------------------------
// optimizer (optim/adamw.h has the CPU twins and the exact update)

// One AdamW step (torch.optim.AdamW) over N elements: params, m, v (N) fp32 (master weights and state),
// grads (N) of dtype gdt; params_bf16 (N) (may be NULL) receives the updated weights rounded to bf16 in the
// same pass. step is the step number counting from 1 (after the increment maye_adamw_step does). grad_coef
// (one device float, may be NULL) scales each gradient as it is read, rounded as cuda_grad_clip_scale would
// have stored it: clipping without a pass of its own (cuda_grad_clip_coef).
int cuda_adamw_step(float *params, void *params_bf16, const void *grads, cuda_dtype gdt, float *m, float *v,
                    int64_t N, double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step,
                    const float *grad_coef, cuda_stream stream);

// Global-norm clipping in two passes, as maye_grad_clip: cuda_grad_norm writes sqrt(sum g^2) (summed in
// double over fixed chunks of 65536 elements, then the chunks in order) to *norm (a device double);
// cuda_grad_clip_scale multiplies grads (N) by min(1, max_norm / (norm + 1e-6)) (fp32), reading the norm
// from the device (no host round trip), and leaves them untouched when the norm is not finite or
// max_norm <= 0. scratch: cuda_grad_norm_scratch_bytes(N) bytes.
size_t cuda_grad_norm_scratch_bytes(int64_t N);
int cuda_grad_norm(double *norm, const void *grads, cuda_dtype gdt, int64_t N, void *scratch, cuda_stream stream);
int cuda_grad_clip_scale(void *grads, cuda_dtype gdt, int64_t N, const double *norm, double max_norm,
                         cuda_stream stream);
// *coef (one device float) = the coefficient cuda_grad_clip_scale would multiply by: min(1, max_norm / (norm +
// 1e-6)), or 1 when the norm is not finite or max_norm <= 0. For cuda_adamw_step's grad_coef.
int cuda_grad_clip_coef(float *coef, const double *norm, double max_norm, cuda_stream stream);

#ifdef __cplusplus
}
#endif
