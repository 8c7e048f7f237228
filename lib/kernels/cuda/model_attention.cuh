// The kernels of model_attention.cu (launched there, between the cuBLASLt GEMMs of cuda_attention_backward):
// the gather/scatter that stacks the G query heads of one key/value head into (G * nq, D) rows and back, and
// the softmax backward that rebuilds P from the forward's log-sum-exp and forms dS. In a header so the CPU
// emulator (tests/cuda_emu) runs them too.
#pragma once
#include "kernels/cuda/common.cuh"

#define SB_THREADS 256 // threads per score row

// ----------------------------------------------------------------------------
// head stacking

// dst (G * nq, D) row j * nq + i = head j of row i of src (row stride lds, heads D apart).
template <typename T> __global__ void heads_gather_kernel(T *dst, const T *src, int64_t lds, int nq, int G, int D) {
    for (int r = blockIdx.x; r < G * nq; r += gridDim.x) {
        int j = r / nq, i = r % nq;
        const T *s = src + (int64_t)i * lds + (int64_t)j * D;
        for (int c = threadIdx.x; c < D; c += blockDim.x) dst[(int64_t)r * D + c] = s[c];
    }
}

// head j of row i of dst (row stride ldd) = src (G * nq, D) row j * nq + i.
template <typename T> __global__ void heads_scatter_kernel(T *dst, int64_t ldd, const T *src, int nq, int G, int D) {
    for (int r = blockIdx.x; r < G * nq; r += gridDim.x) {
        int j = r / nq, i = r % nq;
        T *d = dst + (int64_t)i * ldd + (int64_t)j * D;
        for (int c = threadIdx.x; c < D; c += blockDim.x) d[c] = src[(int64_t)r * D + c];
    }
}

// ----------------------------------------------------------------------------
// softmax backward

// Block r handles stacked row r (head j = r / nq, query i = r % nq): p = exp(S - lse) on the visible keys
// (causal: j <= off + i), delta = sum p dP, then P = p and dS = p (dP - delta) in the storage dtype (0 on the
// masked keys). S, dP (rows, nk) fp32; lse of the row at lse[(i) * H + h0 + j] (lse already offset to the
// segment's first row).
template <typename T>
__global__ void __launch_bounds__(SB_THREADS)
    softmax_backward_kernel(T *P, T *dS, const float *S, const float *dP, const float *lse, int H, int h0, int nq,
                            int nk, int causal) {
    __shared__ float part[SB_THREADS / 32];
    int r = blockIdx.x, j = r / nq, i = r % nq;
    int lim = causal ? min(nk, nk - nq + i + 1) : nk;
    float l = lse[(int64_t)i * H + h0 + j];
    const float *s = S + (int64_t)r * nk, *dp = dP + (int64_t)r * nk;
    bool none = l == -INFINITY; // the row saw no key in the forward
    float delta = 0.0f;
    if (!none)
        for (int c = threadIdx.x; c < lim; c += SB_THREADS) delta += expf(s[c] - l) * dp[c];
    delta = warp_sum(delta);
    if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = delta;
    __syncthreads();
    delta = 0.0f;
#pragma unroll
    for (int w = 0; w < SB_THREADS / 32; w++) delta += part[w];
    T *p_out = P + (int64_t)r * nk, *ds_out = dS + (int64_t)r * nk;
    for (int c = threadIdx.x; c < nk; c += SB_THREADS) {
        float p = (!none && c < lim) ? expf(s[c] - l) : 0.0f;
        p_out[c] = from_f32<T>(p);
        ds_out[c] = from_f32<T>(p * (dp[c] - delta));
    }
}
