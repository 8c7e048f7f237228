// Flash-style attention backward on the tensor cores (bf16, D 64, 80 or 128) over packed variable-length
// segments, the gradients of attention.cuh's forward without a score matrix in global memory and without
// atomics (the sums have a fixed order: the same inputs give the same bits). With S = scale Q K^T,
// P = exp(S - lse) (masked as in the forward), delta = rowsum(dO * O):
//   dV = P^T dO, dS = P (dO V^T - delta), dK = scale dS^T Q, dQ = scale dS K.
//   attn_bwd_prep_kernel     delta (T, H) from dO and the forward's output O.
//   attn_bwd_dkv_mma_kernel  one block per (64-key tile, query head, segment), 16 keys per warp: for each
//                            64-query tile that sees the keys, S^T and dP^T (keys x queries) on the tensor
//                            cores, then dV += P^T dO and dK += dS^T Q in registers (the accumulator layout
//                            of S^T is the A layout of P^T, so no shuffles); the head's dK, dV of the tile are
//                            written once, in fp32. One block per query head (not per key/value head) keeps
//                            the grid many waves deep, so the causal blocks' unequal work evens out.
//   attn_bwd_dkv_kernel      dK = scale * (sum of the G query heads' partials), dV = their sum, into the key
//                            and value gradient rows.
//   attn_bwd_dq_mma_kernel   one block per (64-query tile, query head, segment), 16 queries per warp, the
//                            forward's loop over key tiles: S and dP again, dQ += dS K in registers, written
//                            once (scaled, bf16). Recomputing S and dP costs two of the seven products; it
//                            replaces a dQ summed with atomics across key tiles.
// Shapes: T packed query rows, TK packed key rows, H query heads, KV key/value heads (G = H / KV), head dim D;
// segment b owns query rows [cu_q[b], cu_q[b+1]) (nq), keys k[b], v[b] (nk[b] rows, packed rows [cu_k[b],
// cu_k[b+1]) of the partials); query i of a causal segment sees keys j <= nk[b] - nq + i.
#pragma once
#include "kernels/cuda/attention.cuh"

#define BWD_BN 64      // keys per tile (16 per warp in the key-major kernel)
#define BWD_BM 64      // queries per tile (16 per warp in the query-major kernel)
#define BWD_THREADS 128

struct AttnBwdArgs {
    const bf16 *const *k; // (B) device pointers to (nk[b], KV*D) rows of stride ldkv
    const bf16 *const *v; // (B) likewise
    int64_t ldkv;
    const bf16 *q;       // (T, H*D) row stride ldq
    int64_t ldq;
    const bf16 *dout;    // (T, H*D) row stride ldo
    int64_t ldo;
    bf16 *dq;            // (T, H*D) row stride ldq: written
    const float *lse;    // (T, H) the forward's log-sum-exp
    const float *delta;  // (T, H) rowsum(dO * O)
    float *dk_part;      // (TK, H*D) fp32: each query head's dS^T Q (unscaled), written
    float *dv_part;      // (TK, H*D) fp32: each query head's P^T dO, written
    const int *cu_q;     // (B+1)
    const int *cu_k;     // (B+1) prefix sums of nk
    const int *nk;       // (B)
    int B, H, KV, causal;
    float scale;         // 1 / sqrt(D)
};

// ----------------------------------------------------------------------------
// delta, and the key/value gradients from the per-head partials

// grid (max_nq, B), BWD_THREADS threads: row i of segment b gets delta, one warp per head at a time.
__global__ void __launch_bounds__(BWD_THREADS)
    attn_bwd_prep_kernel(float *delta, const bf16 *dout, int64_t ldo, const bf16 *out, int64_t ld_out,
                         const int *cu_q, int H, int D) {
    int b = blockIdx.y, i = blockIdx.x, q0 = cu_q[b];
    if (i >= cu_q[b + 1] - q0) return;
    int64_t t = q0 + i;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int h = warp; h < H; h += BWD_THREADS / 32) {
        const bf16 *o = out + t * ld_out + (int64_t)h * D, *g = dout + t * ldo + (int64_t)h * D;
        float acc = 0.0f;
        for (int d = lane; d < D; d += 32) acc += __bfloat162float(o[d]) * __bfloat162float(g[d]);
        acc = warp_sum(acc);
        if (lane == 0) delta[t * H + h] = acc;
    }
}

// grid (max_nk, B), BWD_THREADS threads: key row j of segment b gets dK = scale * sum of its G query heads'
// partials and dV = the sum of theirs, in head order.
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
// key-major kernel: dK, dV

template <int D> constexpr size_t attn_bwd_dkv_smem_bytes() {
    return sizeof(bf16) * (size_t)(2 * BWD_BN + 4 * BWD_BM) * (D + 8) + sizeof(float) * 4 * BWD_BM;
}

// Query tile m0 of head h into stage buffers: Q and dO rows asynchronously (rows >= nq - m0 zero), lse (in
// log2 units) and delta with plain stores (0 past the segment).
template <int D>
__device__ __forceinline__ void bwd_load_query_tile(const AttnBwdArgs &p, bf16 *Qs, bf16 *dOs, float *lse_s,
                                                    float *delta_s, int q0, int nq, int m0, int h) {
    const int rows = min(BWD_BM, nq - m0);
    load_rows_bf16<D, BWD_BM>(Qs, p.q + (int64_t)(q0 + m0) * p.ldq + (int64_t)h * D, p.ldq, rows, true);
    load_rows_bf16<D, BWD_BM>(dOs, p.dout + (int64_t)(q0 + m0) * p.ldo + (int64_t)h * D, p.ldo, rows, true);
    for (int r = threadIdx.x; r < BWD_BM; r += BWD_THREADS) {
        int64_t row = (int64_t)(q0 + m0 + r) * p.H + h;
        lse_s[r] = r < rows ? p.lse[row] * ATTN_LOG2E : 0.0f;
        delta_s[r] = r < rows ? p.delta[row] : 0.0f;
    }
}

// grid (H, B, ceil(max_nk / BWD_BN)), BWD_THREADS threads; key tiles in grid order, so the causal tiles seen by
// the most queries (the first ones) start first. The query tiles go through two stages: the next one loads
// while this one is computed. q and dout rows are 16-byte aligned (checked by the launcher); key/value rows
// are loaded asynchronously when aligned, else with plain loads.
template <int D> __global__ void __launch_bounds__(BWD_THREADS) attn_bwd_dkv_mma_kernel(AttnBwdArgs p) {
    constexpr int LD = D + 8, KSTEPS = D / 16, DT = D / 8;
    DYNAMIC_SMEM(bwd_smem);
    bf16 *Ks = reinterpret_cast<bf16 *>(bwd_smem); // (BWD_BN, LD) this block's keys
    bf16 *Vs = Ks + BWD_BN * LD;                    // (BWD_BN, LD) values
    bf16 *Qs2 = Vs + BWD_BN * LD;                   // (2, BWD_BM, LD) the query tile, two stages
    bf16 *dOs2 = Qs2 + 2 * BWD_BM * LD;             // (2, BWD_BM, LD) its output gradients
    float *lse2 = reinterpret_cast<float *>(dOs2 + 2 * BWD_BM * LD); // (2, BWD_BM) lse in log2 units
    float *delta2 = lse2 + 2 * BWD_BM;              // (2, BWD_BM)
    int h = blockIdx.x, b = blockIdx.y, n0 = blockIdx.z * BWD_BN;
    int n_k = p.nk[b];
    if (n0 >= n_k) return;
    int q0 = p.cu_q[b], nq = p.cu_q[b + 1] - q0, off = n_k - nq, kvh = h / (p.H / p.KV);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;

    const bf16 *kb = p.k[b] + (int64_t)n0 * p.ldkv + (int64_t)kvh * D;
    const bf16 *vb = p.v[b] + (int64_t)n0 * p.ldkv + (int64_t)kvh * D;
    bool kv_aligned = aligned16(kb) && aligned16(vb) && p.ldkv % 8 == 0; // every row, not just the first
    load_kv_stage<D, BWD_BN>(Ks, Vs, 0, kb, vb, p.ldkv, 0, min(BWD_BN, n_k - n0), kv_aligned);

    float dk[DT][4], dv[DT][4];
    zero_tiles(dk), zero_tiles(dv);
    const float scale_log2 = p.scale * ATTN_LOG2E;
    const int key0 = n0 + warp * 16 + g; // key index of accumulator rows c0, c1 (c2, c3: key0 + 8)
    // the first query tile holding a query that sees a key of this block (causal: query n0 - off)
    const int m_first = p.causal ? max(0, n0 - off) / BWD_BM * BWD_BM : 0;

    if (m_first < nq) bwd_load_query_tile<D>(p, Qs2, dOs2, lse2, delta2, q0, nq, m_first, h);
    cp_async_commit(); // one group: the keys, values and the first query tile
    for (int m0 = m_first, it = 0; m0 < nq; m0 += BWD_BM, it++) {
        const int rows = min(BWD_BM, nq - m0), st = it & 1;
        if (m0 + BWD_BM < nq) // the other stage was freed by the barrier that ended the previous tile
            bwd_load_query_tile<D>(p, Qs2 + (st ^ 1) * BWD_BM * LD, dOs2 + (st ^ 1) * BWD_BM * LD,
                                   lse2 + (st ^ 1) * BWD_BM, delta2 + (st ^ 1) * BWD_BM, q0, nq, m0 + BWD_BM, h);
        cp_async_commit();
        cp_async_wait<1>(); // this tile has landed; only the next one may be in flight
        __syncthreads();
        const bf16 *Qs = Qs2 + st * BWD_BM * LD, *dOs = dOs2 + st * BWD_BM * LD;
        const float *lse_s = lse2 + st * BWD_BM, *delta_s = delta2 + st * BWD_BM;

        // S^T = K Q^T and dP^T = V dO^T: this warp's 16 keys x the tile's 64 queries (8 tiles of 8)
        float s[8][4], dp[8][4];
        zero_tiles(s), zero_tiles(dp);
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
        __syncthreads(); // every warp is done with this stage before the tile after next refills it
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

// ----------------------------------------------------------------------------
// query-major kernel: dQ

template <int D> constexpr size_t attn_bwd_dq_smem_bytes() {
    return sizeof(bf16) * (size_t)(2 * BWD_BM + 4 * BWD_BN) * (D + 8);
}

// grid (H, B, ceil(max_nq / BWD_BM)), BWD_THREADS threads, query tiles last to first as in attn_mma_kernel;
// alignment as attn_bwd_dkv_mma_kernel (dq as q: pairs are stored as one 32-bit word).
template <int D> __global__ void __launch_bounds__(BWD_THREADS) attn_bwd_dq_mma_kernel(AttnBwdArgs p) {
    constexpr int LD = D + 8, KSTEPS = D / 16, DT = D / 8;
    DYNAMIC_SMEM(dq_smem);
    bf16 *Qs = reinterpret_cast<bf16 *>(dq_smem); // (BWD_BM, LD) the query tile
    bf16 *dOs = Qs + BWD_BM * LD;                  // (BWD_BM, LD) its output gradients
    bf16 *Ks = dOs + BWD_BM * LD;                  // (2, BWD_BN, LD) two stages
    bf16 *Vs = Ks + 2 * BWD_BN * LD;               // (2, BWD_BN, LD)
    int h = blockIdx.x, b = blockIdx.y, m0 = (gridDim.z - 1 - blockIdx.z) * BWD_BM;
    int q0 = p.cu_q[b], nq = p.cu_q[b + 1] - q0;
    if (m0 >= nq) return;
    int n_k = p.nk[b], off = n_k - nq, rows = min(BWD_BM, nq - m0);
    int kvh = h / (p.H / p.KV);
    const bf16 *kb = p.k[b] + (int64_t)kvh * D, *vb = p.v[b] + (int64_t)kvh * D;
    bool kv_aligned = aligned16(kb) && aligned16(vb) && p.ldkv % 8 == 0; // every row, not just the first
    int kend = max(0, p.causal ? min(n_k, off + m0 + rows) : n_k); // keys any row of this tile sees
    int ntiles = (kend + BWD_BN - 1) / BWD_BN;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;

    load_rows_bf16<D, BWD_BM>(Qs, p.q + (int64_t)(q0 + m0) * p.ldq + (int64_t)h * D, p.ldq, rows, true);
    load_rows_bf16<D, BWD_BM>(dOs, p.dout + (int64_t)(q0 + m0) * p.ldo + (int64_t)h * D, p.ldo, rows, true);
    cp_async_commit();
    if (ntiles > 0) {
        load_kv_stage<D, BWD_BN>(Ks, Vs, 0, kb, vb, p.ldkv, 0, min(BWD_BN, kend), kv_aligned);
    }
    cp_async_commit();
    cp_async_wait<1>(); // Q and dO have landed
    __syncthreads();

    uint32_t qf[KSTEPS][4], of[KSTEPS][4];
#pragma unroll
    for (int kk = 0; kk < KSTEPS; kk++) {
        load_a_fragment(qf[kk], Qs + warp * 16 * LD + kk * 16, LD);
        load_a_fragment(of[kk], dOs + warp * 16 * LD + kk * 16, LD);
    }
    const int row0 = m0 + warp * 16 + g; // query index of accumulator rows c0, c1 (c2, c3: row0 + 8)
    float lse2[2], dlt[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        int i = row0 + 8 * r;
        int64_t at = (int64_t)(q0 + i) * p.H + h;
        lse2[r] = i < nq ? p.lse[at] * ATTN_LOG2E : 0.0f;
        dlt[r] = i < nq ? p.delta[at] : 0.0f;
    }
    float dq[DT][4];
    zero_tiles(dq);
    const float scale_log2 = p.scale * ATTN_LOG2E;

    for (int j = 0; j < ntiles; j++) {
        kv_stage_next<D, BWD_BN>(Ks, Vs, j, ntiles, kb, vb, p.ldkv, kend, kv_aligned);
        const bf16 *Kt = Ks + (j & 1) * BWD_BN * LD, *Vt = Vs + (j & 1) * BWD_BN * LD;

        // S = Q K^T and dP = dO V^T: this warp's 16 queries x the tile's 64 keys
        float s[8][4], dp[8][4];
        mma_scores<D, 8>(s, qf, Kt);
        mma_scores<D, 8>(dp, of, Vt);
        // dS in place of dP (0 for masked pairs, padding keys and padding queries)
        int n0 = j * BWD_BN;
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int col = n0 + nt * 8 + 2 * t4 + (e & 1), r = e >> 1, i = row0 + 8 * r;
                bool seen = col < n_k && i < nq && (!p.causal || col <= off + i);
                float pr = seen ? exp2f(s[nt][e] * scale_log2 - lse2[r]) : 0.0f;
                dp[nt][e] = pr * (dp[nt][e] - dlt[r]);
            }
        }
        // dQ += dS K (16 keys per step; K rows are the B operand as V's are in the forward)
#pragma unroll
        for (int ks = 0; ks < 4; ks++) pv_accumulate<D>(dq, dp[2 * ks], dp[2 * ks + 1], Kt + ks * 16 * LD);
        __syncthreads(); // every warp is done with this stage before it is refilled
    }
    cp_async_wait<0>(); // no copy is left in flight (a tile without keys committed an empty group)

#pragma unroll
    for (int r = 0; r < 2; r++) {
        int i = row0 + 8 * r;
        if (i >= nq) continue;
        bf16 *dst = p.dq + (int64_t)(q0 + i) * p.ldq + (int64_t)h * D + 2 * t4;
#pragma unroll
        for (int dt = 0; dt < DT; dt++)
            *reinterpret_cast<uint32_t *>(dst + dt * 8) =
                pack_bf16x2(dq[dt][2 * r] * p.scale, dq[dt][2 * r + 1] * p.scale);
    }
}
