// The kernels of model_kernels.cu (launched there, with the grids and dtype dispatch of the C API in
// model_kernels.h): dtype conversion, Philox normal fills, row gathers/scatters, the MLP activation over fused
// gate|up rows and its backward, the column sums behind the weight and bias gradients, the RMSNorm and
// embedding backwards. In a header so the CPU emulator (tests/cuda_emu) runs them too.
#pragma once
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/philox.cuh"

#define COL_ROWS 64       // rows per partial column sum
#define COL_THREADS 256   // columns per block of the partial sums
#define GATED_THREADS 128 // threads per block of the gated activation kernels

// ----------------------------------------------------------------------------
// conversion and fills

template <typename TD, typename TS> __global__ void convert_kernel(TD *dst, const TS *src, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = from_f32<TD>(to_f32(src[i]));
}

// Element i: Box-Muller on words 0 and 1 of the Philox block (index i / 2, stream), cos for even i, sin for odd.
template <typename T> __global__ void fill_normal_kernel(T *out, int64_t n, float std, uint64_t seed, uint64_t stream) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        uint64_t pair = (uint64_t)i / 2;
        uint32_t c[4] = {(uint32_t)pair, (uint32_t)(pair >> 32), (uint32_t)stream, (uint32_t)(stream >> 32)};
        philox4x32_10(c, (uint32_t)seed, (uint32_t)(seed >> 32));
        float u1 = ((float)(c[0] >> 8) + 1.0f) * (1.0f / 16777216.0f), u2 = (float)(c[1] >> 8) * (1.0f / 16777216.0f);
        float rad = sqrtf(-2.0f * logf(u1)), a = 6.2831853071795865f * u2;
        out[i] = from_f32<T>(std * rad * ((i & 1) ? sinf(a) : cosf(a)));
    }
}

template <typename T> __global__ void fill_value_kernel(T *out, int64_t n, float value) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = from_f32<T>(value);
}

// ----------------------------------------------------------------------------
// rows

// One block per row (grid-stride over rows), threads over the W columns.
template <typename TD, typename TS>
__global__ void copy_rows_kernel(TD *dst, int64_t ldd, const int *dst_rows, const TS *src, int64_t lds,
                                 const int *src_rows, int n, int W, int accumulate) {
    for (int i = blockIdx.x; i < n; i += gridDim.x) {
        TD *d = dst + (int64_t)(dst_rows ? dst_rows[i] : i) * ldd;
        const TS *s = src + (int64_t)(src_rows ? src_rows[i] : i) * lds;
        for (int c = threadIdx.x; c < W; c += blockDim.x) {
            float x = to_f32(s[c]);
            if (accumulate) x += to_f32(d[c]);
            d[c] = from_f32<TD>(x);
        }
    }
}

// ----------------------------------------------------------------------------
// MLP activation over fused gate|up rows

// d act(x) / dx, as act_grad_one in kernels/cpu/activation.c.
__device__ __forceinline__ float act_grad_apply(float x, act_kind act) {
    switch (act) {
    case ACT_SILU: {
        float s = 1.0f / (1.0f + expf(-x));
        return s * (1.0f + x * (1.0f - s));
    }
    case ACT_GELU:
        return 0.5f * (1.0f + erff(x * 0.70710678118654752f)) + x * 0.39894228040143268f * expf(-0.5f * x * x);
    case ACT_GELU_TANH: {
        const float k = 0.7978845608028654f;
        float th = tanhf(k * (x + 0.044715f * x * x * x));
        return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * k * (1.0f + 3.0f * 0.044715f * x * x);
    }
    case ACT_QUICK_GELU: {
        float s = 1.0f / (1.0f + expf(-1.702f * x));
        return s * (1.0f + 1.702f * x * (1.0f - s));
    }
    }
    return 1.0f;
}

// grid (ceil(I / (W * GATED_THREADS)), rows (grid-stride)): each thread takes W consecutive columns of a row,
// in one 16-byte access per operand when W is the vector width (the launcher checks I % W and the alignment).
template <typename T, int W>
__global__ void __launch_bounds__(GATED_THREADS) gated_rows_kernel(T *out, const T *gu, int rows, int I, act_kind act) {
    int i = (blockIdx.x * GATED_THREADS + threadIdx.x) * W;
    if (i >= I) return;
    for (int t = blockIdx.y; t < rows; t += gridDim.y) {
        const T *g = gu + (int64_t)t * 2 * I + i;
        float x[W], y[W], o[W];
        load_f32<T, W>(x, g);
        load_f32<T, W>(y, g + I);
#pragma unroll
        for (int k = 0; k < W; k++) o[k] = act_apply(x[k], act) * y[k];
        store_f32<T, W>(out + (int64_t)t * I + i, o);
    }
}

// The backward on gated_rows_kernel's grid: dgu = (d gate, d up) from dout. act_out, when given, receives the
// forward's output too (the same bits as gated_rows_kernel), so a backward that did not keep it reads gate|up once.
template <typename T, int W>
__global__ void __launch_bounds__(GATED_THREADS)
    gated_rows_backward_kernel(T *dgu, T *act_out, const T *dout, const T *gu, int rows, int I, act_kind act) {
    int i = (blockIdx.x * GATED_THREADS + threadIdx.x) * W;
    if (i >= I) return;
    for (int t = blockIdx.y; t < rows; t += gridDim.y) {
        const T *g = gu + (int64_t)t * 2 * I + i;
        T *dg = dgu + (int64_t)t * 2 * I + i;
        float x[W], y[W], dy[W], dgv[W], duv[W], o[W];
        load_f32<T, W>(x, g);
        load_f32<T, W>(y, g + I);
        load_f32<T, W>(dy, dout + (int64_t)t * I + i);
#pragma unroll
        for (int k = 0; k < W; k++) {
            float a = act_apply(x[k], act);
            dgv[k] = act_grad_apply(x[k], act) * y[k] * dy[k];
            duv[k] = a * dy[k];
            o[k] = a * y[k];
        }
        store_f32<T, W>(dg, dgv);
        store_f32<T, W>(dg + I, duv);
        if (act_out) store_f32<T, W>(act_out + (int64_t)t * I + i, o);
    }
}

// ----------------------------------------------------------------------------
// column sums (weight and bias gradients)

// grid (ceil(C / COL_THREADS), chunks): partial[chunk][c] = sum over the chunk's COL_ROWS rows t of a[t, c],
// times b[t, c] * rowscale[t] when b is given.
template <typename T>
__global__ void __launch_bounds__(COL_THREADS)
    column_partial_kernel(float *partial, const T *a, int64_t lda, const T *b, int64_t ldb, const float *rowscale,
                          int rows, int C) {
    int c = blockIdx.x * COL_THREADS + threadIdx.x, chunk = blockIdx.y;
    if (c >= C) return;
    int t0 = chunk * COL_ROWS, t1 = min(rows, t0 + COL_ROWS);
    float s = 0.0f;
    for (int t = t0; t < t1; t++) {
        float v = to_f32(a[(int64_t)t * lda + c]);
        if (b) v *= to_f32(b[(int64_t)t * ldb + c]) * rowscale[t];
        s += v;
    }
    partial[(int64_t)chunk * C + c] = s;
}

// out[c] += sum over the chunks, in order, of partial[chunk][c].
__global__ void column_finish_kernel(float *out, const float *partial, int chunks, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float s = 0.0f;
    for (int k = 0; k < chunks; k++) s += partial[(int64_t)k * C + c];
    out[c] += s;
}

// ----------------------------------------------------------------------------
// RMSNorm backward

// One warp per row: dx += r * (w * dy) - x * r^3 / C * sum(w * dy * x), the sum in double (as the CPU).
template <typename T, int W>
__global__ void __launch_bounds__(128)
    rmsnorm_backward_kernel(T *dinp, const T *dout, const T *inp, const float *weight, const float *rstd, int rows,
                            int C) {
    int row = blockIdx.x * 4 + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= rows) return;
    const T *x = inp + (int64_t)row * C, *d = dout + (int64_t)row * C;
    T *dx = dinp + (int64_t)row * C;
    double s = 0;
    for (int i = lane * W; i < C; i += 32 * W) {
        float u[W], g[W], w[W];
        load_f32<T, W>(u, x + i);
        load_f32<T, W>(g, d + i);
        load_fp32<W>(w, weight + i);
#pragma unroll
        for (int k = 0; k < W; k++) s += (double)g[k] * w[k] * u[k];
    }
    s = warp_sum_f64(s);
    float r = rstd[row], kk = (float)(s * r * r * r / C);
    for (int i = lane * W; i < C; i += 32 * W) {
        float u[W], g[W], w[W], o[W];
        load_f32<T, W>(u, x + i);
        load_f32<T, W>(g, d + i);
        load_fp32<W>(w, weight + i);
        load_f32<T, W>(o, dx + i);
#pragma unroll
        for (int k = 0; k < W; k++) o[k] += r * (w[k] * g[k]) - kk * u[k];
        store_f32<T, W>(dx + i, o);
    }
}

// ----------------------------------------------------------------------------
// embedding backward

// One block per distinct id (grid-stride), threads over the C columns; each column sums its rows in order.
template <typename T>
__global__ void embedding_backward_kernel(float *dtable, const int64_t *ids, const int *starts, const int *rows, int U,
                                          const T *dout, int C) {
    for (int u = blockIdx.x; u < U; u += gridDim.x) {
        float *d = dtable + ids[u] * (int64_t)C;
        int r0 = starts[u], r1 = starts[u + 1];
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            float s = 0.0f;
            for (int r = r0; r < r1; r++) s += to_f32(dout[(int64_t)rows[r] * C + c]);
            d[c] += s;
        }
    }
}
