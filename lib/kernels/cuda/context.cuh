// The CUDA context behind the opaque cuda_ctx of cuda_kernels.h: cuBLASLt and cuBLAS handles, the GEMM
// workspace and the device properties the launchers size their grids with.
#pragma once
#include "kernels/cuda/common.cuh"

#include <cublasLt.h>
#include <cublas_v2.h>

#define CUDA_GEMM_CACHE 64                     // remembered cuBLASLt heuristic answers

// What a cuBLASLt heuristic answer depends on: types, transposes, sizes, strides and pointer alignments.
struct cuda_gemm_key {
    int ab, cd, opa, opb, m, n, k, bias;
    int64_t lda, ldb, ldc;
    uint32_t align_a, align_b, align_c, align_bias;
};

struct cuda_gemm_cache_entry {
    cuda_gemm_key key;
    bool used;
    bool found;                // false: cuBLASLt offered nothing (the cublasGemmEx path runs)
    cublasLtMatmulAlgo_t algo;
};

struct cuda_ctx {
    int device;
    char name[256];
    int sm_count;
    int smem_per_block_optin; // bytes of shared memory a block may use after cudaFuncSetAttribute
    cublasLtHandle_t lt;
    cublasHandle_t blas;      // fallback for shapes cuBLASLt has no algorithm for
    void *workspace;          // (CUDA_GEMM_WORKSPACE_BYTES) for cuBLASLt
    cuda_attention_kernel attention_kernel;
    cuda_attention_backward_kernel attention_backward;
    int decode_split_tiles;   // 64-key tiles per split of the decode attention; 0: the occupancy heuristic
    int prefill_rows;         // query rows per block of the tensor-core prefill attention: 64 or 128; 0: default
    int prefill_warp_rows;    // query rows per warp of that kernel: 16 or 32; 0: 32
    cuda_gemm_cache_entry gemm_cache[CUDA_GEMM_CACHE]; // filled round robin
    int gemm_cache_next;
    int gemm_algo_rank;       // which ranked heuristic answer a GEMM takes (cuda_ctx_set_gemm_algo_rank); 0: the first
    int gemm_last_answers;    // answers the last heuristic query offered
    int gemm_splitk;          // K splits forced on the chosen answer (cuda_ctx_set_gemm_splitk); 0: the answer's own
};

// Raises the dynamic shared-memory limits of the attention kernels (attention.cu); run by cuda_ctx_init.
int attention_kernels_init(const cuda_ctx *ctx);

// maye_fail("<what>: cuBLAS status <name>"); returns -1.
int cublas_fail(cublasStatus_t st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define CUBLAS_TRY(expr, ...)                                                                              \
    do {                                                                                                   \
        cublasStatus_t st_ = (expr);                                                                       \
        if (st_ != CUBLAS_STATUS_SUCCESS) return cublas_fail(st_, __VA_ARGS__);                            \
    } while (0)
