// RMSNorm and LayerNorm kernels: one warp per row, W elements per lane per access (16-byte vectors when the row
// length and pointers allow, else scalars); for RMSNorm over few rows (a decode step's 64), one block per row
// that holds the row in registers (one load latency, not two passes of C / (32 W) dependent loads). Row
// statistics are accumulated in double like the CPU reference; the scaling runs in fp32 in the CPU's operation
// order. The weights and biases are fp32 whatever the activations' dtype (the GPU model keeps its norms in fp32).
#pragma once
#include "kernels/cuda/common.cuh"

#define NORM_ROWS_PER_BLOCK 4 // one warp each
#define NORM_ROW_MAX_ROWS 1024 // rmsnorm_row_kernel below this many rows
#define NORM_ROW_THREADS 256   // its largest block

// rmsnorm_row_kernel's vectors per thread (1, 2 or 4) for rows x C in W-wide accesses, or 0: the warp kernel
// (many rows, or a row longer than 4 * NORM_ROW_THREADS vectors). Its block: norm_row_threads.
static inline int norm_row_vectors(int rows, int C, int W) {
    if (rows >= NORM_ROW_MAX_ROWS || C % W != 0) return 0;
    for (int K = 1; K <= 4; K *= 2)
        if (C / W <= NORM_ROW_THREADS * K) return K;
    return 0;
}
static inline int norm_row_threads(int C, int W, int K) {
    int threads = (C / W + K - 1) / K;
    return (threads + 31) / 32 * 32;
}

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

// rmsnorm_kernel's result with one block per row (grid rows, block norm_row_threads): thread j holds the W-wide
// vectors j, j + blockDim.x, ... (K of them); the sum of squares goes lanes, then warps in order, in double.
template <typename T, int W, int K>
__global__ void __launch_bounds__(NORM_ROW_THREADS)
    rmsnorm_row_kernel(T *out, float *rstd, const T *inp, const float *weight, int C, float eps) {
    __shared__ double warp_ss[NORM_ROW_THREADS / 32];
    int row = blockIdx.x, nt = blockDim.x, lane = threadIdx.x % 32;
    const T *x = inp + (int64_t)row * C;
    float u[K][W] = {};
    double ss = 0;
#pragma unroll
    for (int k = 0; k < K; k++) {
        int i = (threadIdx.x + k * nt) * W;
        if (i < C) {
            load_f32<T, W>(u[k], x + i);
#pragma unroll
            for (int j = 0; j < W; j++) ss += (double)u[k][j] * u[k][j];
        }
    }
    ss = warp_sum_f64(ss);
    if (lane == 0) warp_ss[threadIdx.x / 32] = ss;
    __syncthreads();
    double total = 0;
    for (int w = 0; w < nt / 32; w++) total += warp_ss[w];
    float r = (float)(1.0 / sqrt(total / C + (double)eps));
    T *o = out + (int64_t)row * C;
#pragma unroll
    for (int k = 0; k < K; k++) {
        int i = (threadIdx.x + k * nt) * W;
        if (i < C) {
            float w[W], y[W];
            load_fp32<W>(w, weight + i);
#pragma unroll
            for (int j = 0; j < W; j++) y[j] = w[j] * (u[k][j] * r);
            store_f32<T, W>(o + i, y);
        }
    }
    if (rstd && threadIdx.x == 0) rstd[row] = r;
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
