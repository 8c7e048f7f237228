// The optimizer kernels: one fused AdamW pass (fp32 master weights and moments, fp32 or bf16 gradients, the
// bf16 copy of the updated weights written in the same pass, optionally the clipping coefficient applied to
// each gradient as it is read) and global-norm clipping (partial sums of squares in double over fixed
// 65536-element chunks, then one block sums them in a fixed order; the coefficient from the norm in device memory,
// applied in place by grad_scale_kernel or inside the AdamW pass). Element updates run in fp32 in the order of
// maye_adamw_step (optim/adamw.c).
#pragma once
#include "kernels/cuda/common.cuh"

#define CLIP_CHUNK 65536 // elements per partial sum (as the CPU's CHUNK)
#define CLIP_THREADS 256

// The per-step constants, computed on the host exactly as maye_adamw_step does.
struct AdamWConsts {
    float decay;         // 1 - lr * weight_decay
    float w1, b2, w2;    // 1 - beta1, beta2, 1 - beta2
    float neg_step_size; // -lr / (1 - beta1^t)
    float bc2_sqrt;      // sqrt(1 - beta2^t)
    float eps;
};

// The clipping coefficient min(1, max_norm / (norm + 1e-6)) in fp32 (as maye_grad_clip); 1 when the norm
// is not finite or max_norm <= 0 (no clipping).
__device__ __forceinline__ float clip_coef(double norm, float max_norm) {
    if (!isfinite(norm) || !(max_norm > 0.0f)) return 1.0f;
    float coef = max_norm / ((float)norm + 1e-6f);
    return coef > 1.0f ? 1.0f : coef;
}

// One element of maye_adamw_step: p, m, v updated in place from the gradient g.
__device__ __forceinline__ void adamw_element(float &p, float &m, float &v, float g, const AdamWConsts &c) {
    float pi = p * c.decay;
    float mi = m + c.w1 * (g - m);
    float vi = v * c.b2;
    vi = vi + c.w2 * g * g;
    float denom = sqrtf(vi) / c.bc2_sqrt + c.eps;
    pi = pi + c.neg_step_size * (mi / denom);
    p = pi, m = mi, v = vi;
}

// Four bf16 values in one 8-byte store.
struct alignas(8) Bf16x4 {
    bf16 v[4];
};

// ADAMW_VEC elements per thread and access when adamw_vec_ok: 16-byte fp32 loads and stores, an 8-byte bf16
// copy store.
#define ADAMW_VEC 4
template <typename G>
static inline bool adamw_vec_ok(const float *p, const bf16 *p_bf16, const G *g, const float *m, const float *v) {
    return aligned16(p) && aligned16(m) && aligned16(v) && ((uintptr_t)g % (ADAMW_VEC * sizeof(G))) == 0 &&
           ((uintptr_t)p_bf16 % 8) == 0;
}

// coef (NULL: none): each gradient is first scaled as grad_scale_kernel would have (same rounding). W = 1, or
// ADAMW_VEC when adamw_vec_ok: elements [0, n / W * W) W at a time, the rest one by one.
template <typename G, int W>
__global__ void adamw_kernel(float *p, bf16 *p_bf16, const G *g, float *m, float *v, int64_t n, AdamWConsts c,
                             const float *coef) {
    const float k = coef ? *coef : 1.0f;
    int64_t stride = (int64_t)gridDim.x * blockDim.x, tid = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    int64_t nvec = n / W;
    for (int64_t j = tid; j < nvec; j += stride) {
        int64_t i = j * W;
        float gi[W], pi[W], mi[W], vi[W];
        load_f32<G, W>(gi, g + i);
        load_fp32<W>(pi, p + i);
        load_fp32<W>(mi, m + i);
        load_fp32<W>(vi, v + i);
#pragma unroll
        for (int e = 0; e < W; e++) {
            if (coef) gi[e] = to_f32(from_f32<G>(gi[e] * k));
            adamw_element(pi[e], mi[e], vi[e], gi[e], c);
        }
        if constexpr (W == ADAMW_VEC) {
            *reinterpret_cast<float4 *>(p + i) = make_float4(pi[0], pi[1], pi[2], pi[3]);
            *reinterpret_cast<float4 *>(m + i) = make_float4(mi[0], mi[1], mi[2], mi[3]);
            *reinterpret_cast<float4 *>(v + i) = make_float4(vi[0], vi[1], vi[2], vi[3]);
            if (p_bf16) {
                Bf16x4 b;
#pragma unroll
                for (int e = 0; e < 4; e++) b.v[e] = __float2bfloat16_rn(pi[e]);
                *reinterpret_cast<Bf16x4 *>(p_bf16 + i) = b;
            }
        } else {
#pragma unroll
            for (int e = 0; e < W; e++) {
                p[i + e] = pi[e], m[i + e] = mi[e], v[i + e] = vi[e];
                if (p_bf16) p_bf16[i + e] = __float2bfloat16_rn(pi[e]);
            }
        }
    }
    for (int64_t i = nvec * W + tid; i < n; i += stride) {
        float gi = to_f32(g[i]);
        if (coef) gi = to_f32(from_f32<G>(gi * k));
        adamw_element(p[i], m[i], v[i], gi, c);
        if (p_bf16) p_bf16[i] = __float2bfloat16_rn(p[i]);
    }
}

// The sum of s over a block of CLIP_THREADS threads in a fixed order (the lanes, then the warps in order), on
// thread 0 (0 elsewhere).
__device__ __forceinline__ double clip_block_sum(double s) {
    __shared__ double warp_part[CLIP_THREADS / 32];
    s = warp_sum_f64(s);
    if (threadIdx.x % 32 == 0) warp_part[threadIdx.x / 32] = s;
    __syncthreads();
    double total = 0;
    if (threadIdx.x == 0)
        for (int w = 0; w < CLIP_THREADS / 32; w++) total += warp_part[w];
    return total;
}

// grid (ceil(n / CLIP_CHUNK)), CLIP_THREADS threads: partial[c] = sum over chunk c of g^2 (double). W elements per
// access: the vector width when g is 16-byte aligned (chunks start at multiples of CLIP_CHUNK), else 1.
template <typename G, int W>
__global__ void __launch_bounds__(CLIP_THREADS) grad_sq_kernel(double *partial, const G *g, int64_t n) {
    int64_t begin = (int64_t)blockIdx.x * CLIP_CHUNK, end = begin + CLIP_CHUNK < n ? begin + CLIP_CHUNK : n;
    int64_t vend = begin + (end - begin) / W * W;
    double s = 0;
    for (int64_t i = begin + threadIdx.x * W; i < vend; i += CLIP_THREADS * W) {
        float x[W];
        load_f32<G, W>(x, g + i);
#pragma unroll
        for (int e = 0; e < W; e++) s += (double)x[e] * x[e];
    }
    for (int64_t i = vend + threadIdx.x; i < end; i += CLIP_THREADS) {
        double x = to_f32(g[i]);
        s += x * x;
    }
    double total = clip_block_sum(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

// One block of CLIP_THREADS: *norm = sqrt(sum of partial (nchunks)), thread j summing partials j, j + CLIP_THREADS,
// ... in order, then the lanes and warps in a fixed order.
__global__ void __launch_bounds__(CLIP_THREADS) grad_norm_finish_kernel(double *norm, const double *partial,
                                                                         int64_t nchunks) {
    double t = 0;
    for (int64_t c = threadIdx.x; c < nchunks; c += CLIP_THREADS) t += partial[c];
    double total = clip_block_sum(t);
    if (threadIdx.x == 0) *norm = sqrt(total);
}

// One thread: *coef = clip_coef(*norm, max_norm).
__global__ void grad_clip_coef_kernel(float *coef, const double *norm, float max_norm) {
    *coef = clip_coef(*norm, max_norm);
}

// g *= min(1, max_norm / (norm + 1e-6)) in fp32 (as maye_grad_clip); nothing when the norm is not finite.
template <typename G> __global__ void grad_scale_kernel(G *g, int64_t n, const double *norm, float max_norm) {
    double nv = *norm;
    if (!isfinite(nv)) return;
    float coef = clip_coef(nv, max_norm);
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        g[i] = from_f32<G>(to_f32(g[i]) * coef);
}
