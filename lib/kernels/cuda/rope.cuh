// Rotary embeddings on the GPU: the M-RoPE and vision 2-D cos/sin tables (one thread per table entry, the
// frequencies rounded exactly as the CPU reference and transformers compute them), the in-place rotate-half
// rotation of NH heads per row (one thread per rotated pair; by the opposite angle for the backward), and the
// same rotation of a fused q|k|v row
// that also writes the rotated keys and the values into a KV cache (one launch instead of three).
#pragma once
#include "kernels/cuda/common.cuh"

// theta^(-2i/dim) as PyTorch rounds 1.0 / (theta ** (arange(0, dim, 2).float() / dim)) in fp32.
__device__ __forceinline__ float rope_inv_freq(float theta, int i, int dim) {
    float e = (float)(2 * i) / (float)dim;
    float p = (float)pow((double)theta, (double)e);
    return 1.0f / p;
}

// cos, sin (T, D/2): the angle of row t, half-dim i is pos[axis(i) * ld + t] * theta^(-2i/D).
__global__ void mrope_table_kernel(float *cos_t, float *sin_t, const int64_t *pos, int64_t ld, int T, int D,
                                   float theta, int sec0, int sec1) {
    int half = D / 2;
    int64_t n = (int64_t)T * half;
    for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < n; idx += (int64_t)gridDim.x * blockDim.x) {
        int t = (int)(idx / half), i = (int)(idx % half);
        int axis = i < sec0 ? 0 : i < sec0 + sec1 ? 1 : 2;
        float a = (float)pos[axis * ld + t] * rope_inv_freq(theta, i, D);
        cos_t[idx] = cosf(a);
        sin_t[idx] = sinf(a);
    }
}

// cos, sin (T, D/2): half-dims [0, D/4) rotate with hpos (T), [D/4, D/2) with wpos (T).
__global__ void vision_rope_table_kernel(float *cos_t, float *sin_t, const int32_t *hpos, const int32_t *wpos, int T,
                                         int D) {
    int half = D / 2, quarter = D / 4;
    int64_t n = (int64_t)T * half;
    for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < n; idx += (int64_t)gridDim.x * blockDim.x) {
        int t = (int)(idx / half), i = (int)(idx % half);
        float a = i < quarter ? (float)hpos[t] * rope_inv_freq(10000.0f, i, half)
                              : (float)wpos[t] * rope_inv_freq(10000.0f, i - quarter, half);
        cos_t[idx] = cosf(a);
        sin_t[idx] = sinf(a);
    }
}

// x (T rows of stride ld): heads h < NH of D values; (x[i], x[i + D/2]) rotate by the row's angle i, times
// sin_sign: 1 the forward, -1 the backward (the gradient turns back by the same angle).
template <typename T>
__global__ void rope_kernel(T *x, const float *cos_t, const float *sin_t, float sin_sign, int rows, int NH, int D,
                            int64_t ld) {
    int half = D / 2;
    int64_t n = (int64_t)rows * NH * half;
    for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < n; idx += (int64_t)gridDim.x * blockDim.x) {
        int64_t t;
        int h, i;
        rope_pair_index(idx, half, NH, &t, &h, &i);
        T lo, hi;
        rope_pair(x + t * ld + (int64_t)h * D, i, half, cos_t[t * half + i], sin_sign * sin_t[t * half + i], &lo, &hi);
    }
}

// qkv (T rows of stride ld: H query heads, KV key heads, KV value heads of D values): the query and key heads
// rotate in place as in rope_kernel; row t's rotated keys and its values also go to row cache_rows[t] of
// cache_k and cache_v (KV * D values per row, row stride ldc). Indices [0, T (H + KV) D/2) are rotated
// pairs, the T KV D after them the value copies.
template <typename T>
__global__ void rope_cache_kernel(T *qkv, const float *cos_t, const float *sin_t, int rows, int H, int KV, int D,
                                  int64_t ld, T *cache_k, T *cache_v, const int *cache_rows, int64_t ldc) {
    int half = D / 2, NH = H + KV, KVD = KV * D;
    int64_t n_rope = (int64_t)rows * NH * half, n = n_rope + (int64_t)rows * KVD;
    for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < n; idx += (int64_t)gridDim.x * blockDim.x) {
        if (idx < n_rope) {
            int64_t t;
            int h, i;
            rope_pair_index(idx, half, NH, &t, &h, &i);
            T lo, hi;
            rope_pair(qkv + t * ld + (int64_t)h * D, i, half, cos_t[t * half + i], sin_t[t * half + i], &lo, &hi);
            if (h >= H) {
                T *dst = cache_k + (int64_t)cache_rows[t] * ldc + (int64_t)(h - H) * D;
                dst[i] = lo, dst[i + half] = hi;
            }
        } else {
            int64_t j = idx - n_rope, t = j / KVD;
            int c = (int)(j % KVD);
            cache_v[(int64_t)cache_rows[t] * ldc + c] = qkv[t * ld + (int64_t)NH * D + c];
        }
    }
}
