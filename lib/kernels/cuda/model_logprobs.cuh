// The kernels of model_logprobs.cu (launched there, between the cuBLASLt GEMMs of cuda_logprobs_backward):
// each row's log-sum-exp from the forward's log-prob and the target's logit, and the logit gradients
// dz = g ([j = y] - p_j) of one vocabulary chunk. In a header so the CPU emulator (tests/cuda_emu) runs them too.
#pragma once
#include "kernels/cuda/common.cuh"

#define LB_THREADS 256

// ----------------------------------------------------------------------------
// kernels

// One warp per row: lse[r] = (hidden[r] . wte[targets[r]]) / temperature - logprob[r] (the dot in double).
template <typename T>
__global__ void __launch_bounds__(128)
    row_lse_kernel(float *lse, const T *hidden, const T *wte, const int64_t *targets, const float *logprob, int rows,
                   int C, float temperature) {
    int r = blockIdx.x * 4 + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= rows) return;
    const T *h = hidden + (int64_t)r * C, *w = wte + targets[r] * (int64_t)C;
    double s = 0;
    for (int c = lane; c < C; c += 32) s += (double)to_f32(h[c]) * to_f32(w[c]);
    s = warp_sum_f64(s);
    if (lane == 0) lse[r] = (float)(s / temperature - logprob[r]);
}

// One block per row of the chunk: dz[r][j] = -g exp(z[r][j] - lse[r]), plus g at the target's column.
template <typename T>
__global__ void __launch_bounds__(LB_THREADS)
    logit_grad_kernel(T *dz, const float *z, const float *lse, const float *dlogprob, const int64_t *targets, int nv,
                      int v0) {
    int r = blockIdx.x;
    float l = lse[r], g = dlogprob[r];
    int64_t y = targets[r] - v0;
    const float *zr = z + (int64_t)r * nv;
    T *d = dz + (int64_t)r * nv;
    for (int j = threadIdx.x; j < nv; j += LB_THREADS) {
        float x = -g * expf(zr[j] - l);
        if (j == y) x += g;
        d[j] = from_f32<T>(x);
    }
}
