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

#define LP_THREADS 256
#define LP_BATCH 16 // logits a thread holds in registers per pass of the fold

// The state of up to LP_BATCH logits held in registers (-inf: none): their max first, then the sums, whose
// exponentials do not wait on each other (pushing one logit at a time, with a rescale whenever the max grows,
// made a chain of dependent exponentials: the fold ran latency-bound at a fifth of the copy bandwidth).
__device__ __forceinline__ LseState lse_of_batch(const float (&v)[LP_BATCH]) {
    float mx = -INFINITY;
#pragma unroll
    for (int k = 0; k < LP_BATCH; k++) mx = fmaxf(mx, v[k]);
    LseState r = {mx, 0.0f, 0.0f};
    if (mx == -INFINITY) return r;
#pragma unroll
    for (int k = 0; k < LP_BATCH; k++) {
        float d = v[k] - mx, e = v[k] == -INFINITY ? 0.0f : expf(d);
        r.s += e;
        r.t += v[k] == -INFINITY ? 0.0f : e * d;
    }
    return r;
}

// grid (nr), LP_THREADS threads: row r of the block logits (nr, nv), vocabulary columns [v0, v0 + nv), folds
// into the state of the block's row r (sm, ss, st, szy arrays of the block's rows); targets (nr) are the
// block's targets. The row's threads each keep a state over a strided slice (LP_BATCH logits per pass, each
// pass's loads coalesced across the block), then merge.
__global__ void __launch_bounds__(LP_THREADS)
    logprobs_fold_kernel(const float *logits, int nv, int v0, const int64_t *targets, float *sm, float *ss, float *st,
                         float *szy) {
    __shared__ LseState part[LP_THREADS / 32];
    int r = blockIdx.x, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const float *z = logits + (int64_t)r * nv;
    LseState acc = {-INFINITY, 0.0f, 0.0f};
    for (int base = 0; base < nv; base += LP_THREADS * LP_BATCH) {
        float v[LP_BATCH];
#pragma unroll
        for (int k = 0; k < LP_BATCH; k++) {
            int j = base + k * LP_THREADS + threadIdx.x;
            v[k] = j < nv ? z[j] : -INFINITY;
        }
        acc = lse_merge(acc, lse_of_batch(v));
    }
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
