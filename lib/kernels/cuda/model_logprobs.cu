// The log-prob backward of model_kernels.h (cuda_logprobs_backward): the lm_head logits are rebuilt chunk by
// chunk (never [N x V] at once), turned into dz = g ([j = y] - p_j), and pushed through the two GEMMs of
// the lm_head backward. Each row's log-sum-exp comes from the forward's log-prob and the target's logit.
// The kernels themselves are in model_logprobs.cuh; this file holds the launches and the GEMMs.
#include "kernels/cuda/model_kernels.h"

#include "kernels/cuda/model_logprobs.cuh"
#include "kernels/cuda/matmul.cuh"

// ----------------------------------------------------------------------------
// C API

extern "C" size_t cuda_logprobs_backward_scratch_bytes(cuda_dtype dt, int rows, int vchunk, int C) {
    if (rows <= 0 || vchunk <= 0) return 0;
    size_t block = (size_t)rows * (size_t)vchunk;
    return round256(block * sizeof(float)) + round256(block * dtype_size(dt)) + round256((size_t)rows * sizeof(float));
}

extern "C" int cuda_logprobs_backward(cuda_ctx *ctx, cuda_dtype dt, float *dhidden, float *dwte, const float *dlogprob,
                                      const float *logprob, const void *hidden, const void *wte,
                                      const int64_t *targets, int N, int C, int V, float temperature, int rows,
                                      int vchunk, void *scratch, cuda_stream stream) {
    CHECK_OR_FAIL(dtype_valid(dt), "logprobs_backward: unknown dtype %d", (int)dt);
    CHECK_OR_FAIL(N >= 0 && C >= 1 && V >= 1, "logprobs_backward: bad shape N %d C %d V %d", N, C, V);
    CHECK_OR_FAIL(rows >= 1 && vchunk >= 1, "logprobs_backward: rows %d and vchunk %d must be >= 1", rows, vchunk);
    CHECK_OR_FAIL(temperature > 0, "logprobs_backward: temperature %g must be > 0", (double)temperature);
    if (N == 0) return 0;
    size_t es = dtype_size(dt), block = (size_t)rows * (size_t)vchunk;
    float *z = (float *)scratch;
    void *dz = (char *)scratch + round256(block * sizeof(float));
    float *lse = (float *)((char *)dz + round256(block * es));
    float inv_t = 1.0f / temperature;
    for (int r0 = 0; r0 < N; r0 += rows) {
        int nr = N - r0 < rows ? N - r0 : rows;
        const void *h = (const char *)hidden + (size_t)r0 * C * es;
        if (dt == CUDA_BF16)
            row_lse_kernel<<<(nr + 3) / 4, 128, 0, stream>>>(lse, (const bf16 *)h, (const bf16 *)wte, targets + r0,
                                                            logprob + r0, nr, C, temperature);
        else
            row_lse_kernel<<<(nr + 3) / 4, 128, 0, stream>>>(lse, (const float *)h, (const float *)wte, targets + r0,
                                                            logprob + r0, nr, C, temperature);
        CUDA_LAUNCHED("logprobs_backward: log-sum-exp of rows %d..", r0);
        for (int v0 = 0; v0 < V; v0 += vchunk) {
            int nv = V - v0 < vchunk ? V - v0 : vchunk;
            const void *w = (const char *)wte + (size_t)v0 * C * es;
            int rc = gemm_rowmajor(ctx, dt, CUDA_F32, false, true, nr, nv, C, inv_t, h, C, w, C, 0.0f, z, nv, NULL,
                                   stream);
            if (rc == 0) {
                if (dt == CUDA_BF16)
                    logit_grad_kernel<<<nr, LB_THREADS, 0, stream>>>((bf16 *)dz, z, lse, dlogprob + r0, targets + r0, nv,
                                                                     v0);
                else
                    logit_grad_kernel<<<nr, LB_THREADS, 0, stream>>>((float *)dz, z, lse, dlogprob + r0, targets + r0,
                                                                     nv, v0);
                cudaError_t err = cudaGetLastError();
                if (err != cudaSuccess) rc = cuda_fail(err, "logprobs_backward: logit gradients");
            }
            if (rc == 0)
                rc = gemm_rowmajor(ctx, dt, CUDA_F32, false, false, nr, C, nv, inv_t, dz, nv, w, C, v0 == 0 ? 0.0f : 1.0f,
                                   dhidden + (size_t)r0 * C, C, NULL, stream);
            if (rc == 0 && dwte)
                rc = gemm_rowmajor(ctx, dt, CUDA_F32, true, false, nv, C, nr, inv_t, dz, nv, h, C, 1.0f,
                                   dwte + (size_t)v0 * C, C, NULL, stream);
            if (rc < 0) return maye_fail_ctx("logprobs_backward: rows %d.., vocabulary %d..", r0, v0);
        }
    }
    return 0;
}
