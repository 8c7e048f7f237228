// Flash-style attention backward on the tensor cores (bf16, D 64, 80 or 128) over packed variable-length
// segments, the gradients of attention.cuh's forward without a score matrix in global memory. With
// S = scale Q K^T, P = exp(S - lse) (masked as in the forward), delta = rowsum(dO * O):
//   dV = P^T dO, dS = P (dO V^T - delta), dK = scale dS^T Q, dQ = scale dS K.
//   attn_bwd_prep_kernel  delta (T, H) from dO and the forward's output O; zeroes the fp32 dQ accumulator.
//   attn_bwd_mma_kernel   one block per (64-key tile, query head, segment), 16 keys per warp: for each 64-query
//                         tile that sees the keys, S^T and dP^T (keys x queries) on the tensor cores, then dV
//                         and dK accumulate in registers (the accumulator layout of S^T is the A layout of
//                         P^T, so no shuffles), dS goes to shared memory query-major and dQ += dS K is added to
//                         the fp32 accumulator with atomics. The head's dK, dV of the tile are written once, in
//                         fp32, at the end. One block per query head (not per key/value head) keeps the
//                         grid many waves deep, so the causal blocks' unequal work evens out.
//   attn_bwd_dq_kernel    dQ = scale * accumulator, in the storage type, into the query-gradient rows.
//   attn_bwd_dkv_kernel   dK = scale * (sum of the G query heads' partials), dV = their sum, into the key and
//                         value gradient rows.
// Shapes: T packed query rows, TK packed key rows, H query heads, KV key/value heads (G = H / KV), head dim D;
// segment b owns query rows [cu_q[b], cu_q[b+1]) (nq), keys k[b], v[b] (nk[b] rows, packed rows [cu_k[b],
// cu_k[b+1]) of the partials); query i of a causal segment sees keys j <= nk[b] - nq + i.
#pragma once
#include "kernels/cuda/attention.cuh"

#define BWD_BN 64      // keys per block (16 per warp)
#define BWD_BM 64      // queries per tile
#define BWD_THREADS 128

struct AttnBwdArgs {
    const bf16 *const *k; // (B) device pointers to (nk[b], KV*D) rows of stride ldkv
    const bf16 *const *v; // (B) likewise
    int64_t ldkv;
    const bf16 *q;       // (T, H*D) row stride ldq
    int64_t ldq;
    const bf16 *dout;    // (T, H*D) row stride ldo
    int64_t ldo;
    const float *lse;    // (T, H) the forward's log-sum-exp
    const float *delta;  // (T, H) rowsum(dO * O)
    float *dq_acc;       // (T, H*D) fp32, zeroed by the prep kernel; += dS K (unscaled)
    float *dk_part;      // (TK, H*D) fp32: each query head's dS^T Q (unscaled), written
    float *dv_part;      // (TK, H*D) fp32: each query head's P^T dO, written
    const int *cu_q;     // (B+1)
    const int *cu_k;     // (B+1) prefix sums of nk
    const int *nk;       // (B)
    int B, H, KV, causal;
    float scale;         // 1 / sqrt(D)
};

// dst[0], dst[1] += x, y: one 8-byte atomic on sm_90 (dst 8-byte aligned), two 4-byte ones elsewhere.
__device__ __forceinline__ void atomic_add2(float *dst, float x, float y) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    atomicAdd(reinterpret_cast<float2 *>(dst), make_float2(x, y));
#else
    atomicAdd(dst, x);
    atomicAdd(dst + 1, y);
#endif
}

// ----------------------------------------------------------------------------
// delta and the dQ accumulator

// grid (max_nq, B), BWD_THREADS threads: row i of segment b gets delta (one warp per head at a time) and a
// zeroed accumulator row.
__global__ void __launch_bounds__(BWD_THREADS)
    attn_bwd_prep_kernel(float *delta, float *dq_acc, const bf16 *dout, int64_t ldo, const bf16 *out, int64_t ld_out,
                         const int *cu_q, int H, int D) {
    int b = blockIdx.y, i = blockIdx.x, q0 = cu_q[b];
    if (i >= cu_q[b + 1] - q0) return;
    int64_t t = q0 + i;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, HD = H * D;
    for (int h = warp; h < H; h += BWD_THREADS / 32) {
        const bf16 *o = out + t * ld_out + (int64_t)h * D, *g = dout + t * ldo + (int64_t)h * D;
        float acc = 0.0f;
        for (int d = lane; d < D; d += 32) acc += __bfloat162float(o[d]) * __bfloat162float(g[d]);
        acc = warp_sum(acc);
        if (lane == 0) delta[t * H + h] = acc;
    }
    for (int c = threadIdx.x; c < HD; c += BWD_THREADS) dq_acc[t * HD + c] = 0.0f;
}

// grid (max_nq, B), BWD_THREADS threads: dq row = scale * accumulator row.
__global__ void __launch_bounds__(BWD_THREADS)
    attn_bwd_dq_kernel(bf16 *dq, int64_t ldq, const float *dq_acc, const int *cu_q, int HD, float scale) {
    int b = blockIdx.y, i = blockIdx.x, q0 = cu_q[b];
    if (i >= cu_q[b + 1] - q0) return;
    int64_t t = q0 + i;
    for (int c = threadIdx.x; c < HD; c += BWD_THREADS) dq[t * ldq + c] = __float2bfloat16_rn(dq_acc[t * HD + c] * scale);
}

// grid (max_nk, B), BWD_THREADS threads: key row j of segment b gets dK = scale * sum of its G query heads'
// partials and dV = the sum of theirs.
__global__ void __launch_bounds__(BWD_THREADS)
    attn_bwd_dkv_kernel(bf16 *const *dk, bf16 *const *dv, int64_t ldkv, const float *dk_part, const float *dv_part,
                        const int *cu_k, const int *nk, int H, int KV, int D, float scale) {
    int b = blockIdx.y, j = blockIdx.x, G = H / KV;
    if (j >= nk[b]) return;
    int64_t row = (int64_t)(cu_k[b] + j) * H * D;
    for (int c = threadIdx.x; c < KV * D; c += BWD_THREADS) {
        int kvh = c / D, d = c % D;
        float sk = 0.0f, sv = 0.0f;
        for (int hh = 0; hh < G; hh++) {
            int64_t at = row + (int64_t)(kvh * G + hh) * D + d;
            sk += dk_part[at], sv += dv_part[at];
        }
        dk[b][(int64_t)j * ldkv + c] = __float2bfloat16_rn(sk * scale);
        dv[b][(int64_t)j * ldkv + c] = __float2bfloat16_rn(sv);
    }
}

// ----------------------------------------------------------------------------
// the tensor-core kernel

template <int D> constexpr size_t attn_bwd_smem_bytes() {
    return sizeof(bf16) * ((size_t)(2 * BWD_BN + 2 * BWD_BM) * (D + 8) + (size_t)BWD_BM * (BWD_BN + 8)) +
           sizeof(float) * 2 * BWD_BM;
}

// grid (ceil(max_nk / BWD_BN), H, B), BWD_THREADS threads. q, dout rows and the k, v rows are 16-byte
// aligned (checked by the launcher: aligned bases, strides multiple of 8).
template <int D> __global__ void __launch_bounds__(BWD_THREADS) attn_bwd_mma_kernel(AttnBwdArgs p) {
    constexpr int LD = D + 8, LDS = BWD_BN + 8, KSTEPS = D / 16, DT = D / 8;
    DYNAMIC_SMEM(bwd_smem);
    bf16 *Ks = reinterpret_cast<bf16 *>(bwd_smem); // (BWD_BN, LD) this block's keys
    bf16 *Vs = Ks + BWD_BN * LD;                    // (BWD_BN, LD) values
    bf16 *Qs = Vs + BWD_BN * LD;                    // (BWD_BM, LD) the query tile
    bf16 *dOs = Qs + BWD_BM * LD;                   // (BWD_BM, LD) its output gradients
    bf16 *dSs = dOs + BWD_BM * LD;                  // (BWD_BM, LDS) dS of the tile, query-major
    float *lse_s = reinterpret_cast<float *>(dSs + BWD_BM * LDS); // (BWD_BM) lse in log2 units
    float *delta_s = lse_s + BWD_BM;                // (BWD_BM)
    int b = blockIdx.z, h = blockIdx.y, n0 = blockIdx.x * BWD_BN;
    int n_k = p.nk[b];
    if (n0 >= n_k) return;
    int q0 = p.cu_q[b], nq = p.cu_q[b + 1] - q0, off = n_k - nq, kvh = h / (p.H / p.KV);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;

    int64_t kv_off = (int64_t)n0 * p.ldkv + (int64_t)kvh * D;
    load_rows_bf16<D, BWD_BN>(Ks, p.k[b] + kv_off, p.ldkv, min(BWD_BN, n_k - n0), true);
    load_rows_bf16<D, BWD_BN>(Vs, p.v[b] + kv_off, p.ldkv, min(BWD_BN, n_k - n0), true);
    cp_async_commit();

    float dk[DT][4], dv[DT][4];
#pragma unroll
    for (int dt = 0; dt < DT; dt++)
#pragma unroll
        for (int e = 0; e < 4; e++) dk[dt][e] = dv[dt][e] = 0.0f;
    const float scale_log2 = p.scale * ATTN_LOG2E;
    const int key0 = n0 + warp * 16 + g; // key index of accumulator rows c0, c1 (c2, c3: key0 + 8)
    // the first query tile holding a query that sees a key of this block (causal: query n0 - off)
    const int m_first = p.causal ? max(0, n0 - off) / BWD_BM * BWD_BM : 0;

    for (int m0 = m_first; m0 < nq; m0 += BWD_BM) {
        const int rows = min(BWD_BM, nq - m0);
        // (no barrier needed here: the previous tile's last reads of Qs, dOs, lse_s and delta_s came before
        // its dS barrier, and dSs is rewritten only after the barrier below)
        load_rows_bf16<D, BWD_BM>(Qs, p.q + (int64_t)(q0 + m0) * p.ldq + (int64_t)h * D, p.ldq, rows, true);
        load_rows_bf16<D, BWD_BM>(dOs, p.dout + (int64_t)(q0 + m0) * p.ldo + (int64_t)h * D, p.ldo, rows, true);
        cp_async_commit();
        for (int r = threadIdx.x; r < BWD_BM; r += BWD_THREADS) {
            int64_t row = (int64_t)(q0 + m0 + r) * p.H + h;
            lse_s[r] = r < rows ? p.lse[row] * ATTN_LOG2E : 0.0f;
            delta_s[r] = r < rows ? p.delta[row] : 0.0f;
        }
        cp_async_wait<0>();
        __syncthreads();

        // S^T = K Q^T and dP^T = V dO^T: this warp's 16 keys x the tile's 64 queries (8 tiles of 8)
        float s[8][4], dp[8][4];
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[nt][e] = dp[nt][e] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < KSTEPS; kk++) {
            uint32_t ka[4], va[4];
            load_a_fragment(ka, Ks + warp * 16 * LD + kk * 16, LD);
            load_a_fragment(va, Vs + warp * 16 * LD + kk * 16, LD);
#pragma unroll
            for (int nt = 0; nt < 8; nt += 2) {
                uint32_t qf[2][2], of[2][2];
                load_b_fragments(qf, Qs + nt * 8 * LD + kk * 16, LD);
                load_b_fragments(of, dOs + nt * 8 * LD + kk * 16, LD);
#pragma unroll
                for (int j = 0; j < 2; j++) {
                    mma_bf16_16816(s[nt + j], ka, qf[j][0], qf[j][1]);
                    mma_bf16_16816(dp[nt + j], va, of[j][0], of[j][1]);
                }
            }
        }
        // P^T and dS^T in place (0 for masked pairs, padding queries and padding keys)
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int key = key0 + (e >> 1) * 8, col = nt * 8 + 2 * t4 + (e & 1);
                bool seen = key < n_k && col < rows && (!p.causal || key <= off + m0 + col);
                float pr = seen ? exp2f(s[nt][e] * scale_log2 - lse_s[col]) : 0.0f;
                s[nt][e] = pr;
                dp[nt][e] = pr * (dp[nt][e] - delta_s[col]);
            }
        }
        // dV += P^T dO, dK += dS^T Q (16 queries per step)
#pragma unroll
        for (int ks = 0; ks < 4; ks++) {
            pv_accumulate<D>(dv, s[2 * ks], s[2 * ks + 1], dOs + ks * 16 * LD);
            pv_accumulate<D>(dk, dp[2 * ks], dp[2 * ks + 1], Qs + ks * 16 * LD);
        }
        // dS query-major for dQ
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                dSs[(nt * 8 + 2 * t4 + (e & 1)) * LDS + warp * 16 + g + (e >> 1) * 8] =
                    __float2bfloat16_rn(dp[nt][e]);
        __syncthreads();

        // dQ rows [16 warp, 16 warp + 16) of the tile += dS (16 x 64 keys) K (64 keys x D)
        float dq[DT][4];
#pragma unroll
        for (int dt = 0; dt < DT; dt++)
#pragma unroll
            for (int e = 0; e < 4; e++) dq[dt][e] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < 4; ks++) {
            uint32_t a[4];
            load_a_fragment(a, dSs + warp * 16 * LDS + ks * 16, LDS);
            mma_rows_accumulate<D>(dq, a, Ks + ks * 16 * LD);
        }
#pragma unroll
        for (int r = 0; r < 2; r++) {
            int row = warp * 16 + g + 8 * r;
            if (row >= rows) continue;
            float *acc = p.dq_acc + (int64_t)(q0 + m0 + row) * p.H * D + (int64_t)h * D + 2 * t4;
#pragma unroll
            for (int dt = 0; dt < DT; dt++) atomic_add2(acc + dt * 8, dq[dt][2 * r], dq[dt][2 * r + 1]);
        }
    }
    cp_async_wait<0>(); // no copy is left in flight (a segment without queries never waited)

    // this head's dS^T Q and P^T dO for this warp's 16 keys (attn_bwd_dkv_kernel sums the heads)
#pragma unroll
    for (int r = 0; r < 2; r++) {
        int key = key0 + 8 * r;
        if (key >= n_k) continue;
        int64_t at = ((int64_t)(p.cu_k[b] + key) * p.H + h) * D + 2 * t4;
#pragma unroll
        for (int dt = 0; dt < DT; dt++) {
            *reinterpret_cast<float2 *>(p.dk_part + at + dt * 8) = make_float2(dk[dt][2 * r], dk[dt][2 * r + 1]);
            *reinterpret_cast<float2 *>(p.dv_part + at + dt * 8) = make_float2(dv[dt][2 * r], dv[dt][2 * r + 1]);
        }
    }
}
