// The CUDA kernels the GPU model (model/cuda/) needs beyond cuda_kernels.h: the backward twins of the CPU
// reference kernels (kernels/cpu/kernels.h: rmsnorm_backward, rope_backward, gated_activation_backward,
// embedding_backward, the bias part of matmul_backward, attention_backward, logprobs_backward), the MLP
// activation over fused gate|up rows, row gathers and scatters, dtype conversion and random fills. Same
// conventions as cuda_kernels.h: device pointers, `stream` may be NULL, 0 or -1 with a message, dtypes
// CUDA_F32 / CUDA_BF16 for activations, fp32 for statistics and every weight gradient.
//
// Where the CPU backward kernels accumulate (+=) into their input gradients, these say per argument whether
// they write or accumulate: the GPU model writes fresh activation gradients and accumulates weight gradients.
//
// Dimension letters as in cuda_kernels.h, plus I (MLP width: fused rows hold 2*I values, gate then up),
// U (distinct token ids), R (rows per block) and NC (vocabulary chunk).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kernels/cuda/cuda_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

// ----------------------------------------------------------------------------
// conversion, fills, rows

// dst (N) of dtype ddt = src (N) of dtype sdt (bf16 rounds to nearest even); dst == src is allowed when the
// dtypes are equal (nothing happens).
int cuda_convert(cuda_dtype ddt, void *dst, cuda_dtype sdt, const void *src, int64_t N, cuda_stream stream);
// out (N) = std * normal: element i is a Box-Muller draw from the Philox words of (seed, stream_id, i / 2), so
// the values depend on nothing but the arguments.
int cuda_fill_normal(cuda_dtype dt, void *out, int64_t N, float std, uint64_t seed, uint64_t stream_id,
                     cuda_stream stream);
// out (N) = value.
int cuda_fill_value(cuda_dtype dt, void *out, int64_t N, float value, cuda_stream stream);

// For i < n: row dst_rows[i] of dst (row stride ldd, dtype ddt) gets (accumulate: += in fp32, rounded to ddt)
// the W values of row src_rows[i] of src (row stride lds, dtype sdt). A NULL row map is the identity (row i).
// Row maps are int arrays in device memory; the destination rows must be distinct when accumulating.
int cuda_copy_rows(cuda_dtype ddt, void *dst, int64_t ldd, const int *dst_rows, cuda_dtype sdt, const void *src,
                   int64_t lds, const int *src_rows, int n, int W, int accumulate, cuda_stream stream);

// ----------------------------------------------------------------------------
// MLP activation over fused rows

// out (T, I) = act(gate) * up, where row t of gu (T, 2*I) holds gate in columns [0, I) and up in [I, 2*I)
// (one GEMM against the stacked gate_proj / up_proj weights); as gated_activation_forward per element.
int cuda_gated_rows_forward(cuda_dtype dt, void *out, const void *gu, int T, int I, act_kind act, cuda_stream stream);
// dgu (T, 2*I) is written with (d gate, d up) from dout (T, I), as gated_activation_backward per element;
// act_out (T, I), unless NULL, with the forward's output (bit for bit cuda_gated_rows_forward's), for a backward
// that recomputes it: gate|up is read once for both.
int cuda_gated_rows_backward(cuda_dtype dt, void *dgu, void *act_out, const void *dout, const void *gu, int T, int I,
                             act_kind act, cuda_stream stream);

// ----------------------------------------------------------------------------
// backward kernels

// RMSNorm: dinp (T, C) += (dtype dt); dweight (C) fp32 += column sums (may be NULL); weight (C) fp32. rstd
// (T) from the forward. Column sums go through scratch (cuda_column_scratch_bytes(T, C)) in a fixed order.
int cuda_rmsnorm_backward(cuda_dtype dt, void *dinp, float *dweight, const void *dout, const void *inp,
                          const float *weight, const float *rstd, int T, int C, void *scratch, cuda_stream stream);
// dbias (N) fp32 += the column sums of dout (T, N) (row stride ld): the bias gradient of a linear layer.
int cuda_bias_backward(float *dbias, cuda_dtype dt, const void *dout, int T, int N, int64_t ld, void *scratch,
                       cuda_stream stream);
size_t cuda_column_scratch_bytes(int T, int C);

// The gradient through cuda_rope_forward: rotates dx in place by the opposite angles (same layout).
int cuda_rope_backward(cuda_dtype dt, void *dx, const float *cos, const float *sin, int T, int NH, int D, int64_t ld,
                       cuda_stream stream);

// Embedding rows grouped by token id: for u < U, dtable (V, C) fp32 row ids[u] += the sum, in the listed
// order, of rows rows[starts[u]] .. rows[starts[u+1] - 1] of dout (T, C) (dtype dt). ids (U) int64, starts
// (U+1) and rows int, all in device memory; ids must be distinct (no atomics: the sums are deterministic).
int cuda_embedding_backward(float *dtable, const int64_t *ids, const int *starts, const int *rows, int U,
                            cuda_dtype dt, const void *dout, int C, cuda_stream stream);

// The gradients of cuda_attention_forward (same segments, heads, strides and causality) from dout (T, H*D)
// (row stride ldo) and the forward's lse (T, H): dq (T, H*D) (row stride ldq) and dk[b], dv[b] ((nk[b],
// KV*D), row stride ldkv) are written (not accumulated); the rows of dq outside every segment are untouched.
// Unlike the forward, cu_q, nk and the per-segment pointer arrays k, v, dk, dv are host arrays (the host
// launches one set of GEMMs per segment and key/value head). Per (segment, key/value head) the G = H / KV
// query heads are stacked into (G * nq, D) rows and, with S = scale Q K^T and P = exp(S - lse) (masked):
//   dP = dO V^T, dS = P (dP - rowsum(P dP)), dV = P^T dO, dK = scale dS^T Q, dQ = scale dS K
// as six cuBLASLt GEMMs (fp32 scores, P and dS rounded to dt before their GEMMs). The workspace holds one
// (segment, key/value head): cuda_attention_backward_workspace_bytes(dt, H, KV, D, max nq, max nk).
size_t cuda_attention_backward_workspace_bytes(cuda_dtype dt, int H, int KV, int D, int max_nq, int max_nk);
int cuda_attention_backward(cuda_ctx *ctx, cuda_dtype dt, void *dq, void *const *dk, void *const *dv, const void *dout,
                            int64_t ldo, const void *q, int64_t ldq, const void *const *k, const void *const *v,
                            int64_t ldkv, const float *lse, const int *cu_q, const int *nk, int B, int H, int KV, int D,
                            int causal, void *workspace, size_t workspace_bytes, cuda_stream stream);

// The same gradients with the flash-style tensor-core kernels of attention_backward.cuh, for bf16 with head dim
// 64, 80 or 128 (cuda_attention_backward_flash_supported): no score matrix in memory and no atomics (the same
// inputs give the same bits), one launch per kernel over all segments and query heads. As in
// cuda_attention_forward, cu_q (B+1), nk (B) and the pointer arrays k, v, dk, dv (B each) are device arrays;
// cu_k (B+1, device) holds the prefix sums of nk (the segments' rows in the workspace's key partials; TK =
// cu_k[B]); out (T, H*D) (row stride ld_out) is the forward's output (for rowsum(dO * O)), T the packed query
// rows (cu_q[B]), max_nq / max_nk bound the segments. q, dout and dq must be 16-byte aligned with strides
// ldq, ldo multiples of 8 (key/value rows may be anywhere). dQ rows of every query and dK, dV rows of every
// key are written (zeros where nothing is seen); dq rows outside every segment are untouched. workspace
// (16-byte aligned): cuda_attention_backward_flash_workspace_bytes(T, TK, H, D) (fp32: the row deltas and each
// query head's key and value gradients, summed over the heads of a key/value head at the end).
int cuda_attention_backward_flash_supported(cuda_dtype dt, int D);
size_t cuda_attention_backward_flash_workspace_bytes(int T, int TK, int H, int D);
int cuda_attention_backward_flash(cuda_ctx *ctx, cuda_dtype dt, void *dq, void *const *dk, void *const *dv,
                                  const void *dout, int64_t ldo, const void *out, int64_t ld_out, const void *q,
                                  int64_t ldq, const void *const *k, const void *const *v, int64_t ldkv,
                                  const float *lse, const int *cu_q, const int *cu_k, const int *nk, int B, int T,
                                  int TK, int H, int KV, int D, int causal, int max_nq, int max_nk, void *workspace,
                                  size_t workspace_bytes, cuda_stream stream);

// Gradients of cuda_logprobs_forward's logprob (same temperature) weighted by dlogprob (N): dhidden (N, C) fp32
// is written, dwte (V, C) fp32 += (may be NULL); logprob (N) are the forward's values (with each target's
// logit they give the row's log-sum-exp). Rows go in blocks of `rows`, the vocabulary in chunks of `vchunk`:
// per chunk one GEMM rebuilds the logits (fp32), one kernel turns them into dz = g ([j = y] - p_j) (dtype
// dt), two GEMMs add dz W to the fp32 row gradients and dz^T h to dwte. scratch:
// cuda_logprobs_backward_scratch_bytes(dt, rows, vchunk, C).
size_t cuda_logprobs_backward_scratch_bytes(cuda_dtype dt, int rows, int vchunk, int C);
int cuda_logprobs_backward(cuda_ctx *ctx, cuda_dtype dt, float *dhidden, float *dwte, const float *dlogprob,
                           const float *logprob, const void *hidden, const void *wte, const int64_t *targets, int N,
                           int C, int V, float temperature, int rows, int vchunk, void *scratch, cuda_stream stream);

#ifdef __cplusplus
}
#endif
