// RMSNorm and LayerNorm kernels: one warp per row, W elements per lane
// per access (16-byte vectors when the row length and pointers allow, else scalars). Row statistics are
// accumulated in double like the CPU reference; the scaling runs in fp32 in the CPU's operation order. The
// weights and biases are fp32 whatever the activations' dtype (the GPU model keeps its norms in fp32).
#pragma once
#include "kernels/cuda/common.cuh"

#define NORM_ROWS_PER_BLOCK 4 // one warp each

// out (T, C) = rmsnorm(inp (T, C)) * weight (C); rstd (T) may be NULL.
template <typename T, int W>
__global__ void __launch_bounds__(32 * NORM_ROWS_PER_BLOCK)
    rmsnorm_kernel(T *out, float *rstd, const T *inp, const float *weight, int rows, int C, float eps) {
    int row = blockIdx.x * NORM_ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    const T *x = inp + (int64_t)row * C;
    double ss = 0;
    for (int i = lane * W; i < C; i += 32 * W) {
        float u[W];
        load_f32<T, W>(u, x + i);
#pragma unroll
        for (int k = 0; k < W; k++) ss += (double)u[k] * u[k];
    }
    ss = warp_sum_f64(ss);
    float r = (float)(1.0 / sqrt(ss / C + (double)eps));
    T *o = out + (int64_t)row * C;
    for (int i = lane * W; i < C; i += 32 * W) {
        float u[W], w[W], y[W];
        load_f32<T, W>(u, x + i);
        load_fp32<W>(w, weight + i);
#pragma unroll
        for (int k = 0; k < W; k++) y[k] = w[k] * (u[k] * r);
        store_f32<T, W>(o + i, y);
    }
    if (rstd && lane == 0) rstd[row] = r;
}

// out (T, C) = (inp - mean) * rstd * weight + bias; mean, rstd (T) may be NULL.
template <typename T, int W>
__global__ void __launch_bounds__(32 * NORM_ROWS_PER_BLOCK)
    layernorm_kernel(T *out, float *mean, float *rstd, const T *inp, const float *weight, const float *bias, int rows,
                     int C, float eps) {
    int row = blockIdx.x * NORM_ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    const T *x = inp + (int64_t)row * C;
    double s = 0;
    for (int i = lane * W; i < C; i += 32 * W) {
        float u[W];
        load_f32<T, W>(u, x + i);
#pragma unroll
        for (int k = 0; k < W; k++) s += u[k];
    }
    double mu = warp_sum_f64(s) / C, var = 0;
    for (int i = lane * W; i < C; i += 32 * W) {
        float u[W];
        load_f32<T, W>(u, x + i);
#pragma unroll
        for (int k = 0; k < W; k++) var += ((double)u[k] - mu) * ((double)u[k] - mu);
    }
    var = warp_sum_f64(var);
    float m = (float)mu, r = (float)(1.0 / sqrt(var / C + (double)eps));
    T *o = out + (int64_t)row * C;
    for (int i = lane * W; i < C; i += 32 * W) {
        float u[W], w[W], bb[W], y[W];
        load_f32<T, W>(u, x + i);
        load_fp32<W>(w, weight + i);
        load_fp32<W>(bb, bias + i);
#pragma unroll
        for (int k = 0; k < W; k++) y[k] = (u[k] - m) * r * w[k] + bb[k];
        store_f32<T, W>(o + i, y);
    }
    if (lane == 0) {
        if (mean) mean[row] = m;
        if (rstd) rstd[row] = r;
    }
}
