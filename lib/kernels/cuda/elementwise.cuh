// Elementwise kernels: the MLP activations (SiLU, exact GELU, tanh-GELU, QuickGELU) plain and
// gated, and the embedding gather. Grid-stride loops over 16-byte vectors with a scalar tail; the math is
// fp32 with accurate expf/erff/tanhf (the library is built without --use_fast_math), in the CPU's order.
#pragma once
#include "kernels/cuda/common.cuh"

// ----------------------------------------------------------------------------
// activations

__device__ __forceinline__ float act_apply(float x, act_kind act) {
    switch (act) {
    case ACT_SILU: return x / (1.0f + expf(-x));
    case ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case ACT_GELU_TANH: {
        float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
        return 0.5f * x * (1.0f + tanhf(u));
    }
    case ACT_QUICK_GELU: return x / (1.0f + expf(-1.702f * x));
    }
    return x;
}

// ----------------------------------------------------------------------------
// maps over N elements

// The operations of this file: out = op(a, b) per element, b unused by the unary one.
enum ElementOp { OP_ACT, OP_GATED_ACT };

template <ElementOp OP> __device__ __forceinline__ float element_op(float a, float b, act_kind act) {
    if constexpr (OP == OP_ACT) return act_apply(a, act);
    else return act_apply(a, act) * b;
}

// out (N) = op(a (N), b (N)); out may alias a or b (each element is read before it is written, by one thread).
// W = vector width: elements [0, N / W * W) go in W-wide accesses, the rest one by one.
template <typename T, int W, ElementOp OP>
__global__ void map_kernel(T *out, const T *a, const T *b, int64_t N, act_kind act) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x, tid = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    int64_t nvec = N / W;
    for (int64_t i = tid; i < nvec; i += stride) {
        float x[W], y[W], z[W];
        load_f32<T, W>(x, a + i * W);
        if constexpr (OP != OP_ACT) load_f32<T, W>(y, b + i * W);
#pragma unroll
        for (int k = 0; k < W; k++) z[k] = element_op<OP>(x[k], OP != OP_ACT ? y[k] : 0.0f, act);
        store_f32<T, W>(out + i * W, z);
    }
    for (int64_t i = nvec * W + tid; i < N; i += stride) {
        float x = to_f32(a[i]), y = OP != OP_ACT ? to_f32(b[i]) : 0.0f;
        out[i] = from_f32<T>(element_op<OP>(x, y, act));
    }
}

// ----------------------------------------------------------------------------
// embedding

// out (T, C) = table (V, C) rows ids (T); one block per row, W-wide copies.
template <typename T, int W> __global__ void embedding_kernel(T *out, const int64_t *ids, const T *table, int C) {
    int t = blockIdx.x;
    const T *src = table + ids[t] * (int64_t)C;
    T *dst = out + (int64_t)t * C;
    for (int i = threadIdx.x * W; i < C; i += blockDim.x * W) {
        if constexpr (W > 1) *reinterpret_cast<Vec16<T> *>(dst + i) = *reinterpret_cast<const Vec16<T> *>(src + i);
        else dst[i] = src[i];
    }
}
