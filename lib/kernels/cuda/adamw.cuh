// The optimizer kernels: one fused AdamW pass (fp32 master weights and moments, fp32 or bf16 gradients, the
// bf16 copy of the updated weights written in the same pass, optionally the clipping coefficient applied to
// each gradient as it is read) and global-norm clipping (partial sums of squares in double over fixed
// 65536-element chunks, then one block sums them in order; the coefficient from the norm in device memory,
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

// coef (NULL: none): each gradient is first scaled as grad_scale_kernel would have (same rounding).
template <typename G>
__global__ void adamw_kernel(float *p, bf16 *p_bf16, const G *g, float *m, float *v, int64_t n, AdamWConsts c,
                             const float *coef) {
    const float k = coef ? *coef : 1.0f;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float gi = to_f32(g[i]);
        if (coef) gi = to_f32(from_f32<G>(gi * k));
        float pi = p[i] * c.decay;
        float mi = m[i] + c.w1 * (gi - m[i]);
        float vi = v[i] * c.b2;
        vi = vi + c.w2 * gi * gi;
        float denom = sqrtf(vi) / c.bc2_sqrt + c.eps;
        pi = pi + c.neg_step_size * (mi / denom);
        p[i] = pi, m[i] = mi, v[i] = vi;
        if (p_bf16) p_bf16[i] = __float2bfloat16_rn(pi);
    }
}

// grid (ceil(n / CLIP_CHUNK)), CLIP_THREADS threads: partial[c] = sum over chunk c of g^2 (double).
template <typename G> __global__ void __launch_bounds__(CLIP_THREADS) grad_sq_kernel(double *partial, const G *g, int64_t n) {
    __shared__ double warp_part[CLIP_THREADS / 32];
    int64_t begin = (int64_t)blockIdx.x * CLIP_CHUNK, end = begin + CLIP_CHUNK < n ? begin + CLIP_CHUNK : n;
    double s = 0;
    for (int64_t i = begin + threadIdx.x; i < end; i += CLIP_THREADS) {
        double x = to_f32(g[i]);
        s += x * x;
    }
    s = warp_sum_f64(s);
    if (threadIdx.x % 32 == 0) warp_part[threadIdx.x / 32] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double t = 0;
        for (int w = 0; w < CLIP_THREADS / 32; w++) t += warp_part[w];
        partial[blockIdx.x] = t;
    }
}

// One thread: *norm = sqrt(sum of partial (nchunks) in order).
__global__ void grad_norm_finish_kernel(double *norm, const double *partial, int64_t nchunks) {
    double t = 0;
    for (int64_t c = 0; c < nchunks; c++) t += partial[c];
    *norm = sqrt(t);
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
