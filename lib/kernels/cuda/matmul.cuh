// GEMMs for the CUDA kernels: one row-major entry point over cuBLASLt (fp32 accumulation; fp32 mode without
// TF32), with the bias folded into cuBLASLt's epilogue, and cublasGemmEx plus a bias kernel for the shapes
// and alignments cuBLASLt has no algorithm for. Used by matmul.cu (the C API) and logprobs.cu (lm_head).
#pragma once
#include "kernels/cuda/context.cuh"

// c (M, N) = alpha * op(a) (M, K) @ op(b) (K, N) + beta * c_in, plus bias (N) (dtype c_dt, may be NULL) on every
// row; c_in (row stride ldc, dtype c_dt) is c when NULL. Row-major storage as in cuda_gemm. Fails (with a message
// naming the shape) on bad leading dimensions.
int gemm_rowmajor(cuda_ctx *ctx, cuda_dtype ab, cuda_dtype c_dt, bool trans_a, bool trans_b, int M, int N, int K,
                  float alpha, const void *a, int64_t lda, const void *b, int64_t ldb, float beta, void *c,
                  int64_t ldc, const void *bias, cudaStream_t stream, const void *c_in = NULL);
