// Device discovery and the cuda_ctx life cycle (handles, workspace, device properties).
#include "kernels/cuda/context.cuh"

#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// errors

int cublas_fail(cublasStatus_t st, const char *fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return maye_fail("%s: cuBLAS status %s", what, cublasGetStatusString(st));
}

// ----------------------------------------------------------------------------
// devices

extern "C" int cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); // clear the sticky "no driver" error
        return 0;
    }
    return n;
}

// ----------------------------------------------------------------------------
// context

extern "C" int cuda_ctx_init(cuda_ctx **out, int device) {
    *out = NULL;
    int n = cuda_device_count();
    CHECK_OR_FAIL(device >= 0 && device < n, "CUDA device %d does not exist (%d device%s visible)", device, n,
                  n == 1 ? "" : "s");
    CUDA_TRY(cudaSetDevice(device), "selecting CUDA device %d", device);
    cudaDeviceProp prop;
    CUDA_TRY(cudaGetDeviceProperties(&prop, device), "reading the properties of CUDA device %d", device);
    cuda_ctx *ctx = (cuda_ctx *)calloc(1, sizeof *ctx);
    if (!ctx) return maye_fail("out of host memory for the CUDA context");
    ctx->device = device;
    snprintf(ctx->name, sizeof ctx->name, "%s", prop.name);
    ctx->sm_count = prop.multiProcessorCount;
    ctx->smem_per_block_optin = (int)prop.sharedMemPerBlockOptin;
    ctx->attention_kernel = CUDA_ATTN_AUTO;
    ctx->attention_backward = CUDA_ATTN_BWD_AUTO;
    cublasStatus_t st = cublasLtCreate(&ctx->lt);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasCreate(&ctx->blas);
    if (st != CUBLAS_STATUS_SUCCESS) {
        cuda_ctx_free(ctx);
        return cublas_fail(st, "creating the cuBLAS handles on device %d", device);
    }
    cudaError_t err = cudaMalloc(&ctx->workspace, CUDA_GEMM_WORKSPACE_BYTES);
    if (err != cudaSuccess) {
        cuda_ctx_free(ctx);
        return cuda_fail(err, "allocating the %u-byte GEMM workspace", CUDA_GEMM_WORKSPACE_BYTES);
    }
    if (attention_kernels_init(ctx) < 0) {
        cuda_ctx_free(ctx);
        return -1;
    }
    *out = ctx;
    return 0;
}

extern "C" void cuda_ctx_free(cuda_ctx *ctx) {
    if (!ctx) return;
    if (ctx->workspace) cudaFree(ctx->workspace);
    if (ctx->blas) cublasDestroy(ctx->blas);
    if (ctx->lt) cublasLtDestroy(ctx->lt);
    free(ctx);
}

extern "C" const char *cuda_ctx_device_name(const cuda_ctx *ctx) { return ctx->name; }
extern "C" int cuda_ctx_sm_count(const cuda_ctx *ctx) { return ctx->sm_count; }
extern "C" void cuda_ctx_set_attention_kernel(cuda_ctx *ctx, cuda_attention_kernel kernel) {
    ctx->attention_kernel = kernel;
}

extern "C" void cuda_ctx_set_attention_backward(cuda_ctx *ctx, cuda_attention_backward_kernel kernel) {
    ctx->attention_backward = kernel;
}

extern "C" cuda_attention_backward_kernel cuda_ctx_attention_backward(const cuda_ctx *ctx) {
    return ctx->attention_backward;
}

extern "C" void cuda_ctx_set_decode_split_tiles(cuda_ctx *ctx, int tiles) {
    ctx->decode_split_tiles = tiles > 0 ? tiles : 0;
}

// Forgets the remembered cuBLASLt answers: the next GEMM of every shape asks the heuristic again.
static void forget_gemm_answers(cuda_ctx *ctx) {
    memset(ctx->gemm_cache, 0, sizeof ctx->gemm_cache);
    ctx->gemm_cache_next = 0;
}

extern "C" int cuda_ctx_set_gemm_algo_rank(cuda_ctx *ctx, int rank) {
    CHECK_OR_FAIL(rank >= 0 && rank < CUDA_GEMM_ALGOS, "cuda_ctx_set_gemm_algo_rank: rank %d is outside [0, %d)", rank,
                  CUDA_GEMM_ALGOS);
    ctx->gemm_algo_rank = rank;
    forget_gemm_answers(ctx);
    return 0;
}

extern "C" int cuda_ctx_set_gemm_splitk(cuda_ctx *ctx, int splits) {
    CHECK_OR_FAIL(splits == 0 || (splits >= 2 && splits <= 64),
                  "cuda_ctx_set_gemm_splitk: %d K splits is outside 2..64 (0 keeps the heuristic's own)", splits);
    ctx->gemm_splitk = splits;
    forget_gemm_answers(ctx);
    return 0;
}

extern "C" int cuda_ctx_gemm_last_answers(const cuda_ctx *ctx) { return ctx->gemm_last_answers; }

extern "C" int cuda_ctx_set_prefill_warp_rows(cuda_ctx *ctx, int rows) {
    CHECK_OR_FAIL(rows == 0 || rows == 16 || rows == 32,
                  "cuda_ctx_set_prefill_warp_rows: %d query rows per warp is not a tensor-core prefill shape (16 or "
                  "32; 0 for the default)", rows);
    ctx->prefill_warp_rows = rows;
    return 0;
}

extern "C" int cuda_ctx_set_prefill_rows(cuda_ctx *ctx, int rows) {
    CHECK_OR_FAIL(rows == 0 || rows == 64 || rows == 128,
                  "cuda_ctx_set_prefill_rows: %d query rows per block is not a tensor-core prefill shape (64 or 128; "
                  "0 for the default)", rows);
    ctx->prefill_rows = rows;
    return 0;
}
