// Token sampling on the GPU, one block of SAMPLE_THREADS threads per row, following the exact definition
// above cuda_sample_forward (cuda_kernels.h) with the shared arithmetic of sampling_def.h. Passes over the row
// (banned ids of suppressed rows read as -inf everywhere except in the log-prob):
//   1. max logit and greedy argmax;  2. total integer weight Z, per strip of the row too (SAMPLE_WARPS
//      contiguous strips, one per warp, read 32 consecutive ids at a time), and the float sum for the
//      log-prob;  3. top-k: radix selection of the k-th key (4 passes of 8-bit digits over key counts) and
//      the weight of the top-k set;  4. top-p: radix selection of the key where the running weight crosses
//      the target (4 passes over digit weights);  5. the draw, the first id whose running kept weight exceeds
//      r, by a two-level search: each warp counts its strip's ties at the cut and weighs its keys above the
//      cut (without truncation pass 2's strip weights serve), every thread finds the strip where the running
//      weight crosses r; the block splits that strip into one piece per thread, scans the pieces' tie counts
//      and weights, and the thread whose piece holds the crossing walks its ids.
// Every sum is over uint64 integers, so its value does not depend on the order of the additions: the block
// reproduces a sequential CPU loop exactly. The kept weight of the ids before any position is
// (weight of keys > cut before it) + min(ties before it, cut_ties) * (weight of the cut key), so two prefix
// sums locate the crossing without walking the row. Histograms aggregate lanes with equal digits (match.any)
// before their shared-memory atomics.
#pragma once
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/philox.cuh"
#include "kernels/cuda/sampling_def.h"

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#define SAMPLE_THREADS 512
#define SAMPLE_WARPS (SAMPLE_THREADS / 32) // strips of the row (passes 2 and 5)
#define SAMPLE_MAX_BANNED 256              // suppressed ids (cuda_sample_forward checks)

typedef unsigned long long u64;

struct ArgMax {
    float v;
    int i;
};

struct ArgMaxOp {
    __device__ __forceinline__ ArgMax operator()(const ArgMax &a, const ArgMax &b) const {
        return (b.v > a.v || (b.v == a.v && b.i < a.i)) ? b : a;
    }
};

struct FMaxOp {
    __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

typedef cub::BlockReduce<u64, SAMPLE_THREADS> SampleReduceU64;
typedef cub::BlockReduce<float, SAMPLE_THREADS> SampleReduceF32;
typedef cub::BlockReduce<ArgMax, SAMPLE_THREADS> SampleReduceArg;
typedef cub::BlockScan<u64, SAMPLE_THREADS> SampleScanU64;
typedef cub::BlockScan<unsigned, SAMPLE_THREADS> SampleScanU32;

struct SampleShared {
    union {
        SampleReduceU64::TempStorage ru;
        SampleReduceF32::TempStorage rf;
        SampleReduceArg::TempStorage ra;
        SampleScanU64::TempStorage su;
    } tmp;
    SampleScanU32::TempStorage s32;    // outside tmp: the draw scans ties and weights with no barrier between
    u64 strip_all[SAMPLE_WARPS];       // weight of every id, per strip
    u64 strip_above[SAMPLE_WARPS];     // weight of the keys > cut, per strip
    unsigned strip_ties[SAMPLE_WARPS]; // keys == cut, per strip
    unsigned hist_c[256]; // tokens per digit
    u64 hist_m[256];      // weight per digit
    u64 lane_q[SAMPLE_THREADS];
    u64 bu[4];            // values thread 0 broadcasts
    unsigned bk[4];
    float bf[2];
    int bi[2];
    int32_t banned[SAMPLE_MAX_BANNED];
};

// Adds (count 1, weight q) of every participating lane to the digit histograms: lanes with equal digits
// are summed by their lowest lane first, so each digit gets one atomic per warp.
__device__ __forceinline__ void hist_add(SampleShared &sh, bool part, unsigned digit, u64 q, bool with_mass) {
    int lane = threadIdx.x % 32;
    unsigned peers = __match_any_sync(0xffffffffu, part ? digit : 0xffffffffu);
    if (with_mass) {
        sh.lane_q[threadIdx.x] = q;
        __syncwarp();
    }
    if (part && lane == __ffs(peers) - 1) {
        atomicAdd(&sh.hist_c[digit], (unsigned)__popc(peers));
        if (with_mass) {
            u64 sum = 0;
            for (unsigned m = peers; m; m &= m - 1) sum += sh.lane_q[(threadIdx.x & ~31u) + __ffs(m) - 1];
            atomicAdd(&sh.hist_m[digit], sum);
        }
    }
    if (with_mass) __syncwarp();
}

// The sum over the 32 lanes of a warp, in every lane (integers: the order of the additions does not matter).
template <typename T> __device__ __forceinline__ T warp_sum_int(T x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// The weight of a key of this row.
__device__ __forceinline__ u64 key_weight(unsigned key, float zmax, float tau) {
    return maye_sample_weight(maye_sample_key_value(key), zmax, tau);
}

// grid (B), SAMPLE_THREADS threads. See cuda_sample_forward. One block per SM (78 registers on sm_90a): left
// free, ptxas squeezes the kernel into 64 registers for two blocks and spills.
__global__ void __launch_bounds__(SAMPLE_THREADS, 1)
    sample_kernel(int64_t *tokens, float *logprob, const float *logits, int64_t ld, int V, const float *temperature,
                  const int *top_k, const float *top_p, uint64_t seed, const uint64_t *streams,
                  const uint64_t *indices, const int32_t *banned, int n_banned, const uint8_t *suppress) {
    __shared__ SampleShared sh;
    const int b = blockIdx.x, tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const float *zraw = logits + (int64_t)b * ld;
    const float tau_in = temperature[b], P = top_p[b];
    const int K = top_k[b];
    const bool greedy = !(tau_in > MAYE_SAMPLE_GREEDY_TEMPERATURE);
    const float tau = greedy ? 1.0f : tau_in;
    const int nb = suppress && suppress[b] ? n_banned : 0;
    for (int j = tid; j < nb; j += SAMPLE_THREADS) sh.banned[j] = banned[j];
    __syncthreads();
    // the logit the draw sees: banned ids of a suppressed row are -inf
    auto zat = [&](int i) -> float {
        float v = zraw[i];
        for (int j = 0; j < nb; j++)
            if (sh.banned[j] == i) v = -INFINITY;
        return v;
    };

    // 1. max and argmax (lowest id among equal maxima) of what the draw sees; max of the raw logits
    ArgMax best = {-INFINITY, 0x7fffffff};
    float rmax = -INFINITY;
    for (int i = tid; i < V; i += SAMPLE_THREADS) {
        best = ArgMaxOp()(best, ArgMax{zat(i), i});
        rmax = fmaxf(rmax, zraw[i]);
    }
    best = SampleReduceArg(sh.tmp.ra).Reduce(best, ArgMaxOp());
    __syncthreads();
    rmax = SampleReduceF32(sh.tmp.rf).Reduce(rmax, FMaxOp());
    if (tid == 0) sh.bf[0] = best.v, sh.bi[0] = best.i == 0x7fffffff ? 0 : best.i, sh.bf[1] = rmax;
    __syncthreads();
    const float zmax = sh.bf[0], raw_max = sh.bf[1];
    const int argmax = sh.bi[0];

    // 2. total weight, per strip (this warp's ids [s_lo, s_hi)), and the float normaliser of the log-prob (raw
    // logits)
    const int strip_len = (V + SAMPLE_WARPS - 1) / SAMPLE_WARPS;
    const int s_lo = min(V, warp * strip_len), s_hi = min(V, s_lo + strip_len);
    u64 zsum = 0;
    float esum = 0.0f;
    for (int i = s_lo + lane; i < s_hi; i += 32) {
        esum += expf(zraw[i] / tau - raw_max / tau);
        if (!greedy) zsum += maye_sample_weight(zat(i), zmax, tau);
    }
    esum = SampleReduceF32(sh.tmp.rf).Sum(esum);
    zsum = warp_sum_int(zsum);
    if (lane == 0) sh.strip_all[warp] = zsum;
    if (tid == 0) sh.bf[1] = esum;
    __syncthreads();
    const float log_esum = logf(sh.bf[1]);
    u64 z_all = 0;
    for (int s = 0; s < SAMPLE_WARPS; s++) z_all += sh.strip_all[s];

    int token = argmax;
    if (!greedy) {
        // the kept set: keys > cut, plus the first `cut_ties` ids with key == cut (all when keep_all)
        bool keep_all = true;
        unsigned cut = 0, cut_ties = 0;
        u64 total = z_all; // weight of the kept set

        // 3. top-k
        const int k = (K > 0 && K < V) ? K : V;
        unsigned kcut = 0, kties = 0;
        u64 zk = z_all;
        if (k < V) {
            unsigned prefix = 0, mask = 0, above = 0;
            for (int pass = 0; pass < 4; pass++) {
                int shift = 24 - 8 * pass;
                for (int d = tid; d < 256; d += SAMPLE_THREADS) sh.hist_c[d] = 0;
                __syncthreads();
                for (int i0 = 0; i0 < V; i0 += SAMPLE_THREADS) {
                    int i = i0 + tid;
                    unsigned key = i < V ? maye_sample_key(zat(i)) : 0;
                    bool part = i < V && (key & mask) == prefix;
                    hist_add(sh, part, (key >> shift) & 255u, 0, false);
                }
                __syncthreads();
                if (tid == 0) {
                    unsigned cum = above;
                    int d = 255;
                    for (; d > 0; d--) {
                        if (cum + sh.hist_c[d] >= (unsigned)k) break;
                        cum += sh.hist_c[d];
                    }
                    sh.bk[0] = cum, sh.bk[1] = (unsigned)d;
                }
                __syncthreads();
                above = sh.bk[0];
                prefix |= sh.bk[1] << shift;
                mask |= 255u << shift;
            }
            kcut = prefix;
            kties = (unsigned)k - above;
            u64 zabove = 0;
            for (int i = tid; i < V; i += SAMPLE_THREADS)
                if (maye_sample_key(zat(i)) > kcut) zabove += maye_sample_weight(zat(i), zmax, tau);
            zabove = SampleReduceU64(sh.tmp.ru).Sum(zabove);
            if (tid == 0) sh.bu[1] = zabove;
            __syncthreads();
            zk = sh.bu[1] + (u64)kties * key_weight(kcut, zmax, tau);
            keep_all = false, cut = kcut, cut_ties = kties, total = zk;
        }

        // 4. top-p within the top-k set
        if (P < 1.0f) {
            u64 target = maye_sample_scale((double)P, zk);
            if (target == 0) { // only rank 0: the lowest id among the largest logits
                keep_all = false, cut = maye_sample_key(zmax), cut_ties = 1;
                total = key_weight(cut, zmax, tau);
            } else {
                unsigned prefix = 0, mask = 0;
                u64 above = 0;
                unsigned last_digit = 0;
                for (int pass = 0; pass < 4; pass++) {
                    int shift = 24 - 8 * pass;
                    for (int d = tid; d < 256; d += SAMPLE_THREADS) sh.hist_c[d] = 0, sh.hist_m[d] = 0;
                    __syncthreads();
                    for (int i0 = 0; i0 < V; i0 += SAMPLE_THREADS) {
                        int i = i0 + tid;
                        unsigned key = i < V ? maye_sample_key(zat(i)) : 0;
                        bool part = i < V && (key & mask) == prefix && (k == V || key > kcut);
                        u64 q = part ? maye_sample_weight(zat(i), zmax, tau) : 0;
                        hist_add(sh, part, (key >> shift) & 255u, q, true);
                    }
                    __syncthreads();
                    if (tid == 0) {
                        if (k < V && (kcut & mask) == prefix) { // the kept ties at the top-k cut
                            unsigned d = (kcut >> shift) & 255u;
                            sh.hist_c[d] += kties;
                            sh.hist_m[d] += (u64)kties * key_weight(kcut, zmax, tau);
                        }
                        u64 cum = above;
                        int d = 255;
                        for (; d > 0; d--) {
                            if (cum + sh.hist_m[d] >= target) break;
                            cum += sh.hist_m[d];
                        }
                        sh.bu[2] = cum, sh.bk[2] = (unsigned)d, sh.bk[3] = sh.hist_c[d];
                    }
                    __syncthreads();
                    above = sh.bu[2];
                    last_digit = sh.bk[2];
                    prefix |= last_digit << shift;
                    mask |= 255u << shift;
                }
                unsigned nties = sh.bk[3];
                u64 qc = key_weight(prefix, zmax, tau);
                u64 j = qc > 0 ? (target - above + qc - 1) / qc : 1;
                if (j < 1) j = 1;
                if (j > nties) j = nties;
                keep_all = false, cut = prefix, cut_ties = (unsigned)j;
                total = above + j * qc;
            }
        }

        // 5. the draw: the first id (in id order) whose running kept weight exceeds r. An id counts in `above`
        // when it is kept for its key alone (every id when keep_all), in `ties` when its key is the cut; the kept
        // weight before a position is above + min(ties, cut_ties) * qc, counted from the row's start.
        if (total > 0) {
            float u = philox_uniform_at(seed, streams[b], indices[b]);
            const u64 r = maye_sample_scale((double)u, total);
            const u64 qc = keep_all ? 0 : key_weight(cut, zmax, tau);
            auto kept_before = [&](u64 above, unsigned ties) { return above + (u64)min(ties, cut_ties) * qc; };
            // level 1: the strips' ties and weights above the cut (pass 2's weights when keep_all)
            if (!keep_all) {
                unsigned t = 0;
                u64 a = 0;
                for (int i = s_lo + lane; i < s_hi; i += 32) {
                    float z = zat(i);
                    unsigned key = maye_sample_key(z);
                    t += key == cut;
                    if (key > cut) a += maye_sample_weight(z, zmax, tau);
                }
                t = warp_sum_int(t);
                a = warp_sum_int(a);
                if (lane == 0) sh.strip_ties[warp] = t, sh.strip_above[warp] = a;
                __syncthreads();
            }
            // every thread finds the strip s of the crossing and what precedes it: a0 above, t0 ties
            int s = 0;
            u64 a0 = 0;
            unsigned t0 = 0;
            for (; s < SAMPLE_WARPS; s++) {
                u64 a = keep_all ? sh.strip_all[s] : sh.strip_above[s];
                unsigned t = keep_all ? 0u : sh.strip_ties[s];
                if (kept_before(a0 + a, t0 + t) > r) break;
                a0 += a, t0 += t;
            }
            if (s < SAMPLE_WARPS) {
                // level 2: one piece [p_lo, p_hi) of strip s per thread
                const int lo = s * strip_len, n = min(V, lo + strip_len) - lo;
                const int piece = (n + SAMPLE_THREADS - 1) / SAMPLE_THREADS;
                const int p_lo = lo + min(n, tid * piece), p_hi = lo + min(n, (tid + 1) * piece);
                unsigned t = 0;
                u64 a = 0;
                for (int i = p_lo; i < p_hi; i++) {
                    float z = zat(i);
                    unsigned key = maye_sample_key(z);
                    t += !keep_all && key == cut;
                    if (keep_all || key > cut) a += maye_sample_weight(z, zmax, tau);
                }
                if (tid == 0) sh.bi[1] = -1;
                unsigned t_before = 0, t_strip;
                u64 a_before, a_strip;
                if (!keep_all) SampleScanU32(sh.s32).ExclusiveSum(t, t_before, t_strip);
                SampleScanU64(sh.tmp.su).ExclusiveSum(a, a_before, a_strip);
                a_before += a0, t_before += t0;
                u64 c = kept_before(a_before, t_before);
                if (c <= r && r < kept_before(a_before + a, t_before + t)) { // the crossing is in this piece
                    unsigned rank = t_before;                                 // ties before id i
                    for (int i = p_lo; i < p_hi; i++) {
                        float z = zat(i);
                        unsigned key = maye_sample_key(z);
                        bool kept = keep_all || key > cut || (key == cut && rank < cut_ties);
                        if (!keep_all && key == cut) rank++;
                        if (kept) c += maye_sample_weight(z, zmax, tau);
                        if (c > r) {
                            sh.bi[1] = i;
                            break;
                        }
                    }
                }
                __syncthreads();
                if (sh.bi[1] >= 0) token = sh.bi[1];
            }
        }
    }
    if (tid == 0) {
        tokens[b] = token;
        if (logprob) logprob[b] = (zraw[token] / tau - raw_max / tau) - log_esum;
    }
}

// out (N) = maye_uniform_at(seed, stream, index0 + i).
__global__ void uniform_fill_kernel(float *out, uint64_t seed, uint64_t stream, uint64_t index0, int64_t N) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < N; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = philox_uniform_at(seed, stream, index0 + (uint64_t)i);
}
