// Rotary embeddings on the GPU: the M-RoPE and vision 2-D cos/sin tables (one thread per table entry, the
// frequencies rounded exactly as the CPU reference and transformers compute them), the in-place rotate-half
// rotation of NH heads per row (by the opposite angle for the backward), and the same rotation of a fused q|k|v
// row that also writes the rotated keys and the values into a KV cache (one launch instead of three).
// The rotations come in two variants of one template: W = VecWidth<T> (8 bf16, 4 fp32) pairs per thread with
// 16-byte loads and stores of the values, cos and sin (when rope_vectors_fit says every access is aligned), and
// W = 1, one pair per thread. Both round through rope_pairs' explicit FMAs (common.cuh), so their outputs are equal
// to the bit, and equal to those of the one-pair kernel that came before them.
#pragma once
#include "kernels/cuda/common.cuh"

#include <initializer_list>

// ----------------------------------------------------------------------------
// tables

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
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < n; idx += stride) {
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
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < n; idx += stride) {
        int t = (int)(idx / half), i = (int)(idx % half);
        float a = i < quarter ? (float)hpos[t] * rope_inv_freq(10000.0f, i, half)
                              : (float)wpos[t] * rope_inv_freq(10000.0f, i - quarter, half);
        cos_t[idx] = cosf(a);
        sin_t[idx] = sinf(a);
    }
}

// ----------------------------------------------------------------------------
// rotations

// Whether a rotation of heads of D values can run W = VecWidth<T> pairs per thread: every group of W pairs, of
// cos/sin entries and of copied values starts on a 16-byte boundary. half % W == 0 makes D and its multiples (the
// head offsets, KV * D) multiples of W too. lds: the row strides in elements (x or qkv, and the caches' ldc);
// ptrs: the tensors' base pointers (x or qkv, cos, sin, and the caches).
template <typename T>
static inline bool rope_vectors_fit(int D, std::initializer_list<int64_t> lds,
                                    std::initializer_list<const void *> ptrs) {
    constexpr int W = VecWidth<T>::value;
    if ((D / 2) % W != 0) return false;
    for (int64_t ld : lds)
        if (ld % W != 0) return false;
    for (const void *p : ptrs)
        if (!aligned16(p)) return false;
    return true;
}

// x (T rows of stride ld): heads h < NH of D values; (x[i], x[i + D/2]) rotate by the row's angle i, times
// sin_sign: 1 the forward, -1 the backward (the gradient turns back by the same angle). Each index is a group of W
// pairs i..i+W-1 of one head.
template <typename T, int W = 1>
__global__ void rope_kernel(T *x, const float *cos_t, const float *sin_t, float sin_sign, int rows, int NH, int D,
                            int64_t ld) {
    int half = D / 2, groups = half / W;
    int64_t n = (int64_t)rows * NH * groups;
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < n; idx += stride) {
        int64_t t;
        int h, g;
        rope_pair_index(idx, groups, NH, &t, &h, &g);
        int i = g * W;
        float lo[W], hi[W];
        rope_pairs<T, W>(x + t * ld + (int64_t)h * D, i, half, cos_t + t * half + i, sin_t + t * half + i, sin_sign, lo,
                         hi);
    }
}

// Copies W consecutive elements: one 16-byte access when W is the vector width, else W scalar ones.
template <typename T, int W> __device__ __forceinline__ void rope_copy(T *dst, const T *src) {
    if constexpr (W == VecWidth<T>::value) {
        *reinterpret_cast<Vec16<T> *>(dst) = *reinterpret_cast<const Vec16<T> *>(src);
    } else {
#pragma unroll
        for (int j = 0; j < W; j++) dst[j] = src[j];
    }
}

// qkv (T rows of stride ld: H query heads, KV key heads, KV value heads of D values): the query and key heads
// rotate in place as in rope_kernel; row t's rotated keys and its values also go to row cache_rows[t] of
// cache_k and cache_v (KV * D values per row, row stride ldc). Indices [0, T (H + KV) D/2 / W) are groups of W
// rotated pairs, the T KV D / W after them groups of W value copies.
template <typename T, int W = 1>
__global__ void rope_cache_kernel(T *qkv, const float *cos_t, const float *sin_t, int rows, int H, int KV, int D,
                                  int64_t ld, T *cache_k, T *cache_v, const int *cache_rows, int64_t ldc) {
    int half = D / 2, groups = half / W, NH = H + KV, KVD = KV * D, copies = KVD / W;
    int64_t n_rope = (int64_t)rows * NH * groups, n = n_rope + (int64_t)rows * copies;
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < n; idx += stride) {
        if (idx < n_rope) {
            int64_t t;
            int h, g;
            rope_pair_index(idx, groups, NH, &t, &h, &g);
            int i = g * W;
            float lo[W], hi[W];
            rope_pairs<T, W>(qkv + t * ld + (int64_t)h * D, i, half, cos_t + t * half + i, sin_t + t * half + i, 1.0f,
                             lo, hi);
            if (h >= H) {
                T *dst = cache_k + (int64_t)cache_rows[t] * ldc + (int64_t)(h - H) * D;
                store_f32<T, W>(dst + i, lo), store_f32<T, W>(dst + i + half, hi);
            }
        } else {
            int64_t j = idx - n_rope, t = j / copies;
            int c = (int)(j % copies) * W;
            rope_copy<T, W>(cache_v + (int64_t)cache_rows[t] * ldc + c, qkv + t * ld + (int64_t)NH * D + c);
        }
    }
}
