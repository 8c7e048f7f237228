// Shared pieces of the CUDA kernels: error reporting into libmaye's error messages, the two storage types
// (float, __nv_bfloat16) behind one set of load/store helpers, 16-byte vector access, warp reductions and
// grid sizing. Included by every lib/kernels/cuda/*.cu file.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

// libmaye's C headers: C linkage, and C11's _Noreturn spelled for C++.
#ifndef _Noreturn
#define _Noreturn [[noreturn]]
#endif
extern "C" {
#include "core/error.h"
}
#include "kernels/cuda/cuda_kernels.h"

typedef __nv_bfloat16 bf16;

// ----------------------------------------------------------------------------
// dynamic shared memory

// DYNAMIC_SMEM(name) declares the block's dynamic shared memory (the launch's byte count) as a 16-byte
// aligned `unsigned char name[]`; under the CPU emulator (tests/cuda_emu) a pointer to the block's buffer.
#ifdef MAYE_CUDA_EMU
#define DYNAMIC_SMEM(name) unsigned char *name = cuda_emu_dynamic_smem()
#else
#define DYNAMIC_SMEM(name) extern __shared__ __align__(16) unsigned char name[]
#endif

// ----------------------------------------------------------------------------
// errors

// maye_fail("<what>: <cuda error name> (<description>)"); returns -1. The failure is reported here, so it is
// taken off the runtime's last error: a failed call (a cudaMalloc past the device's memory) would otherwise
// show again at the next launch's check, as that launch's failure. (An error that poisons the context stays.)
static inline int cuda_fail(cudaError_t err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline int cuda_fail(cudaError_t err, const char *fmt, ...) {
    (void)cudaGetLastError();
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return maye_fail("%s: %s (%s)", what, cudaGetErrorName(err), cudaGetErrorString(err));
}

// Returns cuda_fail(...) from the current function when a CUDA runtime call fails.
#define CUDA_TRY(expr, ...)                                                                                \
    do {                                                                                                   \
        cudaError_t err_ = (expr);                                                                         \
        if (err_ != cudaSuccess) return cuda_fail(err_, __VA_ARGS__);                                      \
    } while (0)

// After a kernel launch: a bad launch configuration fails here; an earlier asynchronous fault may too.
#define CUDA_LAUNCHED(...) CUDA_TRY(cudaGetLastError(), __VA_ARGS__)

// ----------------------------------------------------------------------------
// storage types

template <typename T> __device__ __forceinline__ float to_f32(T x);
template <> __device__ __forceinline__ float to_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ float to_f32<bf16>(bf16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ bf16 from_f32<bf16>(float x) { return __float2bfloat16_rn(x); }

static inline size_t dtype_size(cuda_dtype dt) { return dt == CUDA_BF16 ? 2 : 4; }
static inline const char *dtype_name(cuda_dtype dt) { return dt == CUDA_BF16 ? "bf16" : "f32"; }
static inline bool dtype_valid(cuda_dtype dt) { return dt == CUDA_F32 || dt == CUDA_BF16; }

// ----------------------------------------------------------------------------
// 16-byte vectors: VEC<T> elements per aligned 16-byte access

template <typename T> struct VecWidth { static constexpr int value = 16 / (int)sizeof(T); };

template <typename T> struct alignas(16) Vec16 {
    T v[VecWidth<T>::value];
};

__host__ __device__ __forceinline__ bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

// Loads W consecutive elements as floats: one 16-byte access when W is the vector width, else scalars.
template <typename T, int W> __device__ __forceinline__ void load_f32(float out[W], const T *p) {
    if constexpr (W == VecWidth<T>::value) {
        Vec16<T> x = *reinterpret_cast<const Vec16<T> *>(p);
#pragma unroll
        for (int i = 0; i < W; i++) out[i] = to_f32(x.v[i]);
    } else {
#pragma unroll
        for (int i = 0; i < W; i++) out[i] = to_f32(p[i]);
    }
}

// Loads W consecutive fp32 values (the norms' weights and biases, fp32 in every dtype): 16-byte accesses when W
// is a multiple of 4 (the caller checked that p is 16-byte aligned), else scalars.
template <int W> __device__ __forceinline__ void load_fp32(float out[W], const float *p) {
    if constexpr (W % 4 == 0) {
#pragma unroll
        for (int j = 0; j < W; j += 4) {
            float4 x = *reinterpret_cast<const float4 *>(p + j);
            out[j] = x.x, out[j + 1] = x.y, out[j + 2] = x.z, out[j + 3] = x.w;
        }
    } else {
#pragma unroll
        for (int i = 0; i < W; i++) out[i] = p[i];
    }
}

template <typename T, int W> __device__ __forceinline__ void store_f32(T *p, const float in[W]) {
    if constexpr (W == VecWidth<T>::value) {
        Vec16<T> x;
#pragma unroll
        for (int i = 0; i < W; i++) x.v[i] = from_f32<T>(in[i]);
        *reinterpret_cast<Vec16<T> *>(p) = x;
    } else {
#pragma unroll
        for (int i = 0; i < W; i++) p[i] = from_f32<T>(in[i]);
    }
}

// ----------------------------------------------------------------------------
// reductions

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

__device__ __forceinline__ double warp_sum_f64(double x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// ----------------------------------------------------------------------------
// rotary embeddings

// Pair index idx of a rotation over rows of NH heads: row t, head h, half-dim i (idx = (t NH + h) half + i). With
// `half` the head's groups of W pairs (half-dim / W), i is the group.
__device__ __forceinline__ void rope_pair_index(int64_t idx, int half, int NH, int64_t *t, int *h, int *i) {
    *i = (int)(idx % half);
    int64_t th = idx / half;
    *h = (int)(th % NH);
    *t = th / NH;
}

// Rotates the W pairs (v[i + j], v[i + half + j]), j < W, of one head by the angles whose cos are c[j] and sin
// sin_sign * s[j]; lo, hi receive the results before their rounding to T (store_f32 rounds them as v got them).
// W = VecWidth<T>: 16-byte loads and stores (the caller checked that v + i, v + i + half, c and s are aligned);
// W = 1: one pair. lo = a c - b s and hi = b c + a s are rounded as nvcc contracted the one-pair rotation before the
// vector variant existed (a c and a s inside the FMAs, b s and b c rounded first); spelled out, so that every width,
// and the CPU emulator, rounds the same way.
template <typename T, int W>
__device__ __forceinline__ void rope_pairs(T *v, int i, int half, const float *c, const float *s, float sin_sign,
                                           float lo[W], float hi[W]) {
    float a[W], b[W], cw[W], sw[W];
    load_f32<T, W>(a, v + i), load_f32<T, W>(b, v + i + half);
    load_fp32<W>(cw, c), load_fp32<W>(sw, s);
#pragma unroll
    for (int j = 0; j < W; j++) {
        float sn = sin_sign * sw[j];
        lo[j] = fmaf(a[j], cw[j], -(b[j] * sn));
        hi[j] = fmaf(a[j], sn, b[j] * cw[j]);
    }
    store_f32<T, W>(v + i, lo), store_f32<T, W>(v + i + half, hi);
}

// ----------------------------------------------------------------------------
// launch sizing

// n rounded up to a multiple of 256 (the alignment of workspace regions).
static inline size_t round256(size_t n) { return (n + 255) / 256 * 256; }

// Lays n workspace regions of sizes[i] bytes out one after another, each starting on a 256-byte boundary and
// taking at least 256 bytes; with base, *slots[i] receives region i's address. Returns the total bytes.
static inline size_t layout_regions(const size_t *sizes, void **const *slots, int n, void *base) {
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        if (base) *slots[i] = (char *)base + off;
        off += round256(sizes[i] > 0 ? sizes[i] : 1);
    }
    return off;
}

// Blocks for a grid-stride loop over n items with `threads` per block (at least 1, at most `cap`).
static inline unsigned grid_for(int64_t n, int threads, int64_t cap = 65536) {
    int64_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > cap) b = cap;
    return (unsigned)b;
}
