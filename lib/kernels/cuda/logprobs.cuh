// Log-probabilities and entropies over a large vocabulary, fused with the lm_head (cuda_logprobs_forward):
// a GEMM writes one (rows, vchunk) block of fp32 logits, logprobs_fold_kernel folds it into each row's
// online log-sum-exp state, logprobs_finish_kernel turns the states into log p(target) and the entropy.
// State of a row: m = running max of z, s = sum exp(z - m), t = sum exp(z - m) (z - m), zy = target logit;
// log p(y) = zy - m - log s and entropy = log s - t / s.
#pragma once
#include "kernels/cuda/common.cuh"

// One row's online state (see above).
struct LseState {
    float m, s, t;
};

// The state of the union of two disjoint sets of logits.
__device__ __forceinline__ LseState lse_merge(LseState a, LseState b) {
    if (b.s == 0.0f) return a;
    if (a.s == 0.0f) return b;
    float M = fmaxf(a.m, b.m);
    float fa = expf(a.m - M), fb = expf(b.m - M);
    LseState r;
    r.m = M;
    r.s = fa * a.s + fb * b.s;
    r.t = fa * (a.t + (a.m - M) * a.s) + fb * (b.t + (b.m - M) * b.s);
    return r;
}

// One logit into a state.
__device__ __forceinline__ void lse_push(LseState &st, float z) {
    if (z > st.m) { // new max: rescale what is there
        float d = st.m - z, f = expf(d);
        st.t = st.s == 0.0f ? 0.0f : f * (st.t + d * st.s);
        st.s = st.s == 0.0f ? 1.0f : f * st.s + 1.0f;
        st.m = z;
    } else if (st.s > 0.0f) { // (an empty state only takes a larger logit: skips -inf)
        float d = z - st.m, e = expf(d);
        st.s += e;
        st.t += e * d;
    }
}

#define LP_THREADS 256

// grid (nr), LP_THREADS threads: row r of the block logits (nr, nv), vocabulary columns [v0, v0 + nv), folds
// into the state of the block's row r (sm, ss, st, szy arrays of the block's rows); targets (nr) are the
// block's targets. The row's threads each keep a state over a strided slice, then merge.
__global__ void __launch_bounds__(LP_THREADS)
    logprobs_fold_kernel(const float *logits, int nv, int v0, const int64_t *targets, float *sm, float *ss, float *st,
                         float *szy) {
    __shared__ LseState part[LP_THREADS / 32];
    int r = blockIdx.x, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const float *z = logits + (int64_t)r * nv;
    LseState acc = {-INFINITY, 0.0f, 0.0f};
    for (int j = threadIdx.x; j < nv; j += LP_THREADS) lse_push(acc, z[j]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        LseState other = {__shfl_xor_sync(0xffffffffu, acc.m, o), __shfl_xor_sync(0xffffffffu, acc.s, o),
                          __shfl_xor_sync(0xffffffffu, acc.t, o)};
        acc = lse_merge(acc, other);
    }
    if (lane == 0) part[warp] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
        LseState total = {sm[r], ss[r], st[r]};
        for (int w = 0; w < LP_THREADS / 32; w++) total = lse_merge(total, part[w]);
        sm[r] = total.m, ss[r] = total.s, st[r] = total.t;
        int64_t y = targets[r];
        if (y >= v0 && y < v0 + nv) szy[r] = z[y - v0];
    }
}

// state arrays (N) of a row block <- empty.
__global__ void logprobs_init_kernel(float *sm, float *ss, float *st, float *szy, int N) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) sm[i] = -INFINITY, ss[i] = 0.0f, st[i] = 0.0f, szy[i] = 0.0f;
}

// logprob, entropy (N) of a row block from its final states.
__global__ void logprobs_finish_kernel(float *logprob, float *entropy, const float *sm, const float *ss,
                                       const float *st, const float *szy, int N) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) return;
    float ls = logf(ss[i]);
    logprob[i] = szy[i] - sm[i] - ls;
    if (entropy) entropy[i] = ls - st[i] / ss[i];
}
