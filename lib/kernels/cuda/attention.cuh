// Flash-style attention over packed variable-length segments (see cuda_attention_forward in cuda_kernels.h):
// online softmax over key tiles held in shared memory, never a [T x T] score matrix in global memory.
//   attn_simt_kernel     fp32 math for both storage types, any D <= 256: 16 query rows per block (4 per warp),
//                        32-key tiles; lane j scores key j, then every lane accumulates its D/32 output dims.
//   attn_mma_kernel      bf16 tensor cores (mma.sync m16n8k16, fp32 accumulation), D in {64, 80, 128}:
//                        16 query rows per warp, 4 or 8 warps (64 or 128 rows per block, chosen at run time),
//                        64-key tiles in two cp.async stages shared by the block's warps, S = Q K^T from
//                        register Q fragments (read from global memory by the 4-warp block, through a shared
//                        stage by the 8-warp one) and K rows, P V with V fragments from ldmatrix.trans; a warp
//                        skips the tiles none of its rows sees (causal, or rows past the segment).
//   attn_mma_wide_kernel the same with 32 query rows per warp (two mma tiles sharing each K/V fragment), 2 or 4
//                        warps (64 or 128 rows per block), queries staged in shared memory: the default (4
//                        warps), 1.25-1.34x faster than attn_mma_kernel on an H200.
//   attn_decode_kernel   one query row per segment: the G = H / KV query heads of one key/value head are the
//                        16 rows of the tensor-core tile; each block takes one split of its segment's keys
//                        (split-K), each warp 16 keys of every 64-key tile; warps merge in shared memory and
//                        attn_combine_kernel merges the splits by their log-sum-exp.
// Segment b: query rows [cu_q[b], cu_q[b+1]) (nq rows), keys k[b], v[b] (nk[b] rows of stride ldkv); query i
// of a causal segment sees keys j <= nk[b] - nq + i. Rows that see no key get out = 0 and lse = -inf.
#pragma once
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/mma.cuh"

#define ATTN_LN2 0.6931471805599453f
#define ATTN_LOG2E 1.4426950408889634f

template <typename T> struct AttnArgs {
    T *out;             // (T, H*D) row stride ldo
    int64_t ldo;
    float *lse;         // (T, H) or NULL
    const T *q;         // (T, H*D) row stride ldq
    int64_t ldq;
    const T *const *k;  // (B) device pointers to (nk[b], KV*D) rows of stride ldkv
    const T *const *v;  // (B) likewise
    int64_t ldkv;
    const int *cu_q;    // (B+1)
    const int *nk;      // (B)
    int B, H, KV, D, causal;
    float scale;        // 1 / sqrt(D)
};

// ----------------------------------------------------------------------------
// SIMT kernel

#define SIMT_BQ 16  // query rows per block
#define SIMT_BK 32  // keys per tile (one per lane)
#define SIMT_RPW 4  // query rows per warp

static inline size_t attn_simt_smem_bytes(int D) {
    return sizeof(float) * ((size_t)SIMT_BQ * D + (size_t)SIMT_BK * (D + 1) + (size_t)SIMT_BK * D);
}

// grid (ceil(max_nq / SIMT_BQ), H, B), 128 threads; DPL = head-dim values per lane (D <= 32 * DPL).
template <typename T, int DPL> __global__ void __launch_bounds__(128) attn_simt_kernel(AttnArgs<T> p) {
    DYNAMIC_SMEM(simt_raw);
    float *simt_smem = reinterpret_cast<float *>(simt_raw);
    const int D = p.D;
    float *Qs = simt_smem;             // (SIMT_BQ, D)
    float *Ks = Qs + SIMT_BQ * D;      // (SIMT_BK, D + 1): the pad keeps lane j's row in its own banks
    float *Vs = Ks + SIMT_BK * (D + 1); // (SIMT_BK, D)
    int b = blockIdx.z, h = blockIdx.y, m0 = blockIdx.x * SIMT_BQ;
    int q0 = p.cu_q[b], nq = p.cu_q[b + 1] - q0;
    if (m0 >= nq) return;
    int n_k = p.nk[b], off = n_k - nq, rows = min(SIMT_BQ, nq - m0);
    int kvh = h / (p.H / p.KV);
    const T *kb = p.k[b] + (int64_t)kvh * D, *vb = p.v[b] + (int64_t)kvh * D;
    int kend = p.causal ? min(n_k, off + m0 + rows) : n_k; // keys any row of this block sees
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

    for (int idx = threadIdx.x; idx < SIMT_BQ * D; idx += blockDim.x) {
        int r = idx / D, c = idx % D;
        Qs[idx] = r < rows ? to_f32(p.q[(int64_t)(q0 + m0 + r) * p.ldq + (int64_t)h * D + c]) : 0.0f;
    }
    float m[SIMT_RPW], l[SIMT_RPW], acc[SIMT_RPW][DPL];
#pragma unroll
    for (int rr = 0; rr < SIMT_RPW; rr++) {
        m[rr] = -INFINITY, l[rr] = 0.0f;
#pragma unroll
        for (int j = 0; j < DPL; j++) acc[rr][j] = 0.0f;
    }

    for (int n0 = 0; n0 < kend; n0 += SIMT_BK) {
        __syncthreads(); // the previous tile is consumed (and Q is stored, on the first pass)
        for (int idx = threadIdx.x; idx < SIMT_BK * D; idx += blockDim.x) {
            int r = idx / D, c = idx % D;
            bool valid = n0 + r < kend;
            Ks[r * (D + 1) + c] = valid ? to_f32(kb[(int64_t)(n0 + r) * p.ldkv + c]) : 0.0f;
            Vs[r * D + c] = valid ? to_f32(vb[(int64_t)(n0 + r) * p.ldkv + c]) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int rr = 0; rr < SIMT_RPW; rr++) {
            int r = warp * SIMT_RPW + rr, i = m0 + r; // row in the block, query index in the segment
            if (r >= rows) break;
            int lim = p.causal ? min(kend, off + i + 1) : kend; // keys < lim are visible to row i
            int key = n0 + lane;
            float s = -INFINITY;
            if (key < lim) {
                const float *qr = Qs + r * D, *kr = Ks + lane * (D + 1);
                float dot = 0.0f;
                for (int d = 0; d < D; d++) dot += qr[d] * kr[d];
                s = dot * p.scale;
            }
            float m_new = fmaxf(m[rr], warp_max(s));
            if (m_new == -INFINITY) continue; // nothing visible to this row yet (uniform over the warp)
            float pr = s == -INFINITY ? 0.0f : expf(s - m_new);
            float corr = expf(m[rr] - m_new);
            l[rr] = l[rr] * corr + warp_sum(pr);
#pragma unroll
            for (int j = 0; j < DPL; j++) acc[rr][j] *= corr;
            for (int kk = 0; kk < SIMT_BK; kk++) {
                float pk = __shfl_sync(0xffffffffu, pr, kk);
                const float *vr = Vs + kk * D;
#pragma unroll
                for (int j = 0; j < DPL; j++)
                    if (lane + 32 * j < D) acc[rr][j] += pk * vr[lane + 32 * j];
            }
            m[rr] = m_new;
        }
    }

#pragma unroll
    for (int rr = 0; rr < SIMT_RPW; rr++) {
        int r = warp * SIMT_RPW + rr, i = m0 + r;
        if (r >= rows) break;
        float inv = l[rr] > 0.0f ? 1.0f / l[rr] : 0.0f;
        T *o = p.out + (int64_t)(q0 + i) * p.ldo + (int64_t)h * D;
#pragma unroll
        for (int j = 0; j < DPL; j++)
            if (lane + 32 * j < D) o[lane + 32 * j] = from_f32<T>(acc[rr][j] * inv);
        if (p.lse && lane == 0)
            p.lse[(int64_t)(q0 + i) * p.H + h] = l[rr] > 0.0f ? m[rr] + logf(l[rr]) : -INFINITY;
    }
}

// ----------------------------------------------------------------------------
// tensor-core helpers

// ROWS x D bf16 rows (row stride ld elements in global memory) into shared memory rows of D + 8 elements;
// rows >= nvalid become zeros. aligned: 16-byte cp.async (asynchronous, completes at cp_async_wait);
// otherwise plain loads and stores (complete at once).
template <int D, int ROWS>
__device__ __forceinline__ void load_rows_bf16(bf16 *smem, const bf16 *src, int64_t ld, int nvalid, bool aligned) {
    constexpr int LD = D + 8, CHUNKS = D / 8;
    for (int c = threadIdx.x; c < ROWS * CHUNKS; c += blockDim.x) {
        int r = c / CHUNKS, col = (c % CHUNKS) * 8;
        bool valid = r < nvalid;
        const bf16 *s = src + (valid ? (int64_t)r * ld : 0) + col;
        bf16 *d = smem + r * LD + col;
        if (aligned) {
            cp_async16(d, s, valid);
        } else {
#pragma unroll
            for (int e = 0; e < 8; e++) d[e] = valid ? s[e] : __float2bfloat16_rn(0.0f);
        }
    }
}

// ROWS keys and their values from row n1 on (kb, vb: row stride ld) into stage st of the double-buffered K and V
// tiles (ROWS x (D + 8) each stage); rows >= nvalid become zeros. As load_rows_bf16.
template <int D, int ROWS>
__device__ __forceinline__ void load_kv_stage(bf16 *Ks, bf16 *Vs, int st, const bf16 *kb, const bf16 *vb, int64_t ld,
                                              int n1, int nvalid, bool aligned) {
    constexpr int LD = D + 8;
    load_rows_bf16<D, ROWS>(Ks + st * ROWS * LD, kb + (int64_t)n1 * ld, ld, nvalid, aligned);
    load_rows_bf16<D, ROWS>(Vs + st * ROWS * LD, vb + (int64_t)n1 * ld, ld, nvalid, aligned);
}

// The double-buffered K/V loop's step to tile j of ntiles (ROWS keys each, stage j & 1): prefetches tile j + 1
// (keys n1 = (j + 1) ROWS on, rows >= kend - n1 zero) into the other stage, freed by the barrier that ended
// tile j - 1, then waits until tile j has landed for every thread (only tile j + 1 may still be in flight).
template <int D, int ROWS>
__device__ __forceinline__ void kv_stage_next(bf16 *Ks, bf16 *Vs, int j, int ntiles, const bf16 *kb, const bf16 *vb,
                                              int64_t ld, int kend, bool aligned) {
    if (j + 1 < ntiles) {
        int n1 = (j + 1) * ROWS;
        load_kv_stage<D, ROWS>(Ks, Vs, (j + 1) & 1, kb, vb, ld, n1, min(ROWS, kend - n1), aligned);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
}

// Zeroes N accumulator tiles (16x8 fp32 fragments).
template <int N> __device__ __forceinline__ void zero_tiles(float (&x)[N][4]) {
#pragma unroll
    for (int i = 0; i < N; i++) x[i][0] = x[i][1] = x[i][2] = x[i][3] = 0.0f;
}

// The online-softmax update of one warp's two fragment rows (g and g + 8) for NT 8-key score tiles s (raw
// dot products, -inf where masked): turns s into exp2 weights, rescales the output accumulators o (DT tiles)
// and the per-thread partial row sums l. m holds the running max of the scaled scores (log2 units).
template <int NT, int DT>
__device__ __forceinline__ void online_softmax_update(float s[NT][4], float o[DT][4], float m[2], float l[2],
                                                      float scale_log2) {
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float mx = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < NT; nt++) mx = fmaxf(mx, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        float m_new = fmaxf(m[r], mx * scale_log2);
        float m_use = m_new == -INFINITY ? 0.0f : m_new; // a fully masked row keeps zero weights
        float corr = exp2f(m[r] - m_use);
        float sum = 0.0f;
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
#pragma unroll
            for (int e = 0; e < 2; e++) {
                float w = exp2f(s[nt][2 * r + e] * scale_log2 - m_use);
                s[nt][2 * r + e] = w;
                sum += w;
            }
        }
        l[r] = l[r] * corr + sum;
#pragma unroll
        for (int dt = 0; dt < DT; dt++) o[dt][2 * r] *= corr, o[dt][2 * r + 1] *= corr;
        m[r] = m_new;
    }
}

// s (NT tiles of 16x8) = A R^T: A (16 x D) as the A fragments a[kk] of its 16-column steps (in registers), R rows
// [0, 8 NT) of a row-major bf16 matrix in shared memory (row stride D + 8): 16 rows' scores against 8 NT keys.
template <int D, int NT>
__device__ __forceinline__ void mma_scores(float (&s)[NT][4], const uint32_t (&a)[D / 16][4], const bf16 *R) {
    constexpr int LD = D + 8;
    zero_tiles(s);
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
#pragma unroll
        for (int nt = 0; nt < NT; nt += 2) {
            uint32_t f[2][2];
            load_b_fragments(f, R + nt * 8 * LD + kk * 16, LD);
            mma_bf16_16816(s[nt], a[kk], f[0][0], f[0][1]);
            mma_bf16_16816(s[nt + 1], a[kk], f[1][0], f[1][1]);
        }
    }
}

// o (D/8 tiles of 16x8) += A (16 x 16, fragments a in the mma layout) @ rows [0, 16) of R (shared, row stride
// D + 8): B fragments of R come from ldmatrix.trans.
template <int D>
__device__ __forceinline__ void mma_rows_accumulate(float o[D / 8][4], const uint32_t a[4], const bf16 *R) {
    constexpr int LD = D + 8;
    int lane = threadIdx.x % 32, mat = lane / 8, r8 = lane % 8;
    // matrices: 0 rows 0-7 / dims +0-7, 1 rows 8-15 / dims +0-7, 2 rows 0-7 / dims +8-15, 3 rows 8-15 / dims +8-15
    const bf16 *row = R + ((mat & 1) * 8 + r8) * LD + (mat >> 1) * 8;
#pragma unroll
    for (int dp = 0; dp < D / 16; dp++) {
        uint32_t f[4];
        ldmatrix_x4_trans(f, row + dp * 16);
        mma_bf16_16816(o[2 * dp], a, f[0], f[1]);
        mma_bf16_16816(o[2 * dp + 1], a, f[2], f[3]);
    }
}

// o (D/8 tiles of 16x8) += P (16 x 16: the accumulator tiles s0, s1 of two 8-column blocks, rounded to bf16)
// @ rows [0, 16) of Vt. The accumulator layout of two adjacent 16x8 tiles is the A-fragment layout of their
// 16x16 concatenation, so no data moves between lanes.
template <int D>
__device__ __forceinline__ void pv_accumulate(float o[D / 8][4], const float s0[4], const float s1[4], const bf16 *Vt) {
    uint32_t a[4] = {pack_bf16x2(s0[0], s0[1]), pack_bf16x2(s0[2], s0[3]), pack_bf16x2(s1[0], s1[1]),
                     pack_bf16x2(s1[2], s1[3])};
    mma_rows_accumulate<D>(o, a, Vt);
}

// ----------------------------------------------------------------------------
// tensor-core prefill kernel

#define MMA_WARP_ROWS 16 // query rows per warp (the mma tile's M)
#define MMA_BN 64        // keys per tile

// Query rows per block of the prefill kernel with WARPS warps.
template <int WARPS> __host__ __device__ constexpr int attn_mma_block_rows() { return MMA_WARP_ROWS * WARPS; }

// Whether the prefill kernel's warps read their queries from global memory straight into registers (the 4-warp
// block: its shared memory is then the two K/V stages alone, room for three blocks per SM, and it measured 1.18x
// faster that way on an H100) or through a shared-memory stage (the 8-warp block, held to one block per SM by its
// registers anyway, measured 1.06x faster with the stage).
template <int WARPS> __host__ __device__ constexpr bool attn_mma_q_in_registers() { return WARPS == 4; }

// The prefill kernel's shared memory: two K/V stages, and the query stage of the 8-warp block.
template <int D, int WARPS> constexpr size_t attn_mma_smem_bytes() {
    constexpr int q_rows = attn_mma_q_in_registers<WARPS>() ? 0 : attn_mma_block_rows<WARPS>();
    return sizeof(bf16) * (size_t)(q_rows + 4 * MMA_BN) * (D + 8);
}

// grid (H, B, ceil(max_nq / BM)), 32 WARPS threads, BM = 16 WARPS query rows per block (warp w: rows
// [16 w, 16 w + 16) of the block). The query tiles run last to first (blockIdx.z = 0 is the last tile): blocks
// start in grid order, so the causal tiles with the most keys start first and the short ones fill the tail.
// Every warp takes part in every K/V stage (loads and barriers) but computes only on tiles holding a key one
// of its rows sees: with no rows in the segment, or (causal) a tile past its last row's keys, it skips the tile,
// which changes nothing (such a tile's weights are all zero).
// The 4-warp block asks for at most 168 registers (three blocks per SM; 173 unbounded at D 128), the 8-warp one
// cannot reach two blocks per SM (128 registers) without spilling.
template <int D, int WARPS>
__global__ void __launch_bounds__(32 * WARPS, WARPS == 4 ? 3 : 0) attn_mma_kernel(AttnArgs<bf16> p) {
    constexpr int LD = D + 8, KSTEPS = D / 16, DT = D / 8, BM = attn_mma_block_rows<WARPS>();
    constexpr bool Q_REGS = attn_mma_q_in_registers<WARPS>();
    DYNAMIC_SMEM(mma_smem);
    bf16 *Qs = reinterpret_cast<bf16 *>(mma_smem); // (BM, LD) unless Q_REGS
    bf16 *Ks = Qs + (Q_REGS ? 0 : BM * LD);         // (2, MMA_BN, LD) two stages
    bf16 *Vs = Ks + 2 * MMA_BN * LD;                // (2, MMA_BN, LD)
    int h = blockIdx.x, b = blockIdx.y, m0 = (gridDim.z - 1 - blockIdx.z) * BM;
    int q0 = p.cu_q[b], nq = p.cu_q[b + 1] - q0;
    if (m0 >= nq) return;
    int n_k = p.nk[b], off = n_k - nq, rows = min(BM, nq - m0);
    int kvh = h / (p.H / p.KV);
    const bf16 *kb = p.k[b] + (int64_t)kvh * D, *vb = p.v[b] + (int64_t)kvh * D;
    bool kv_aligned = aligned16(kb) && aligned16(vb);
    int kend = max(0, p.causal ? min(n_k, off + m0 + rows) : n_k);
    int ntiles = (kend + MMA_BN - 1) / MMA_BN;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;
    // keys < warp_kend are visible to some row of this warp (none when it has no rows)
    int warp_kend = warp * MMA_WARP_ROWS >= rows ? 0 : p.causal ? off + m0 + (warp + 1) * MMA_WARP_ROWS : n_k;

    // the warp's 16 query rows as A fragments: straight from global memory while tile 0 lands (Q_REGS), or staged
    // with tile 0 through shared memory
    uint32_t qf[KSTEPS][4];
    if constexpr (Q_REGS) {
        if (ntiles > 0) load_kv_stage<D, MMA_BN>(Ks, Vs, 0, kb, vb, p.ldkv, 0, min(MMA_BN, kend), kv_aligned);
        cp_async_commit(); // tile 0 lands by kv_stage_next's wait
        int wrow0 = m0 + warp * MMA_WARP_ROWS;
        const bf16 *qw = p.q + (int64_t)(q0 + wrow0) * p.ldq + (int64_t)h * D;
#pragma unroll
        for (int kk = 0; kk < KSTEPS; kk++) load_a_fragment_global(qf[kk], qw + kk * 16, p.ldq, nq - wrow0);
    } else {
        load_rows_bf16<D, BM>(Qs, p.q + (int64_t)(q0 + m0) * p.ldq + (int64_t)h * D, p.ldq, rows, aligned16(p.q) &&
                              p.ldq % 8 == 0);
        cp_async_commit();
        if (ntiles > 0) load_kv_stage<D, MMA_BN>(Ks, Vs, 0, kb, vb, p.ldkv, 0, min(MMA_BN, kend), kv_aligned);
        cp_async_commit();
        cp_async_wait<1>(); // Q has landed
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < KSTEPS; kk++) load_a_fragment(qf[kk], Qs + warp * MMA_WARP_ROWS * LD + kk * 16, LD);
    }
    float o[DT][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    zero_tiles(o);
    const float scale_log2 = p.scale * ATTN_LOG2E;
    const int row0 = m0 + warp * MMA_WARP_ROWS + g; // query index of fragment rows c0, c1 (c2, c3: row0 + 8)

    for (int j = 0; j < ntiles; j++) {
        kv_stage_next<D, MMA_BN>(Ks, Vs, j, ntiles, kb, vb, p.ldkv, kend, kv_aligned);
        int n0 = j * MMA_BN;
        if (n0 < warp_kend) {
            const bf16 *Kt = Ks + (j & 1) * MMA_BN * LD, *Vt = Vs + (j & 1) * MMA_BN * LD;
            float s[8][4];
            mma_scores<D, 8>(s, qf, Kt);
            if (n0 + MMA_BN > n_k || (p.causal && n0 + MMA_BN - 1 > off + m0 + warp * MMA_WARP_ROWS)) {
#pragma unroll
                for (int nt = 0; nt < 8; nt++) {
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        int col = n0 + nt * 8 + 2 * t4 + (e & 1), row = row0 + (e >> 1) * 8;
                        if (col >= n_k || (p.causal && col > off + row)) s[nt][e] = -INFINITY;
                    }
                }
            }
            online_softmax_update<8, DT>(s, o, m, l, scale_log2);
#pragma unroll
            for (int ks = 0; ks < 4; ks++) pv_accumulate<D>(o, s[2 * ks], s[2 * ks + 1], Vt + ks * 16 * LD);
        }
        __syncthreads(); // every warp is done with this stage before it is refilled
    }

#pragma unroll
    for (int r = 0; r < 2; r++) {
        float lr = l[r];
        lr += __shfl_xor_sync(0xffffffffu, lr, 1);
        lr += __shfl_xor_sync(0xffffffffu, lr, 2);
        int i = row0 + 8 * r;
        if (i >= nq) continue;
        float inv = lr > 0.0f ? 1.0f / lr : 0.0f;
        bf16 *orow = p.out + (int64_t)(q0 + i) * p.ldo + (int64_t)h * D + 2 * t4;
#pragma unroll
        for (int dt = 0; dt < DT; dt++)
            *reinterpret_cast<uint32_t *>(orow + dt * 8) = pack_bf16x2(o[dt][2 * r] * inv, o[dt][2 * r + 1] * inv);
        if (p.lse && t4 == 0)
            p.lse[(int64_t)(q0 + i) * p.H + h] = lr > 0.0f ? (m[r] + log2f(lr)) * ATTN_LN2 : -INFINITY;
    }
}

// ----------------------------------------------------------------------------
// tensor-core prefill kernel, two mma tiles per warp

#define MMA_WIDE_ROWS 32 // query rows per warp of the wide prefill kernel

// Whether the wide kernel's warps keep their query fragments in registers (D 64: 32 registers beside the output
// accumulators, 238 in all) or read them from the shared query stage at every key tile (D 80: 235 registers
// that way, 255 and spills with them in registers; D 128: 255 and 68 bytes of spills that way, where the
// fragments would ask for 64 registers more).
template <int D> __host__ __device__ constexpr bool attn_wide_q_in_registers() { return D <= 64; }

// The wide kernel's shared memory: the query stage (32 WARPS rows) and two K/V stages.
template <int D, int WARPS> constexpr size_t attn_wide_smem_bytes() {
    return sizeof(bf16) * (size_t)(MMA_WIDE_ROWS * WARPS + 4 * MMA_BN) * (D + 8);
}

// attn_mma_kernel with 32 query rows per warp, as two 16-row mma tiles that share every K and V fragment a
// warp reads from shared memory (one ldmatrix feeds two mma instead of one: the 16-row warp's loop moves
// as many bytes out of shared memory as its tensor cores take). grid (H, B, ceil(max_nq / BM)), 32 WARPS
// threads, BM = 32 WARPS rows per block; the same tiles, order, skipping and masking as attn_mma_kernel, per
// row the same arithmetic in the same order, so the same bits.
template <int D, int WARPS>
__global__ void __launch_bounds__(32 * WARPS, 2) attn_mma_wide_kernel(AttnArgs<bf16> p) {
    constexpr int LD = D + 8, KSTEPS = D / 16, DT = D / 8, WR = MMA_WIDE_ROWS, BM = WR * WARPS;
    constexpr bool QREG = attn_wide_q_in_registers<D>();
    DYNAMIC_SMEM(mma_smem);
    bf16 *Qs = reinterpret_cast<bf16 *>(mma_smem); // (BM, LD)
    bf16 *Ks = Qs + BM * LD;                        // (2, MMA_BN, LD) two stages
    bf16 *Vs = Ks + 2 * MMA_BN * LD;                // (2, MMA_BN, LD)
    int h = blockIdx.x, b = blockIdx.y, m0 = (gridDim.z - 1 - blockIdx.z) * BM;
    int q0 = p.cu_q[b], nq = p.cu_q[b + 1] - q0;
    if (m0 >= nq) return;
    int n_k = p.nk[b], off = n_k - nq, rows = min(BM, nq - m0);
    int kvh = h / (p.H / p.KV);
    const bf16 *kb = p.k[b] + (int64_t)kvh * D, *vb = p.v[b] + (int64_t)kvh * D;
    bool kv_aligned = aligned16(kb) && aligned16(vb);
    int kend = max(0, p.causal ? min(n_k, off + m0 + rows) : n_k);
    int ntiles = (kend + MMA_BN - 1) / MMA_BN;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;
    int warp_kend = warp * WR >= rows ? 0 : p.causal ? off + m0 + (warp + 1) * WR : n_k;

    // the block's queries and key tile 0 through shared memory
    load_rows_bf16<D, BM>(Qs, p.q + (int64_t)(q0 + m0) * p.ldq + (int64_t)h * D, p.ldq, rows,
                          aligned16(p.q) && p.ldq % 8 == 0);
    cp_async_commit();
    if (ntiles > 0) load_kv_stage<D, MMA_BN>(Ks, Vs, 0, kb, vb, p.ldkv, 0, min(MMA_BN, kend), kv_aligned);
    cp_async_commit();
    cp_async_wait<1>(); // Q has landed
    __syncthreads();
    const bf16 *Qw = Qs + warp * WR * LD;
    uint32_t qf[QREG ? 2 : 1][QREG ? KSTEPS : 1][4];
    if constexpr (QREG) {
#pragma unroll
        for (int wm = 0; wm < 2; wm++)
#pragma unroll
            for (int kk = 0; kk < KSTEPS; kk++) load_a_fragment(qf[wm][kk], Qw + wm * 16 * LD + kk * 16, LD);
    }
    float o[2][DT][4], m[2][2], l[2][2];
#pragma unroll
    for (int wm = 0; wm < 2; wm++) {
        zero_tiles(o[wm]);
        m[wm][0] = m[wm][1] = -INFINITY, l[wm][0] = l[wm][1] = 0.0f;
    }
    const float scale_log2 = p.scale * ATTN_LOG2E;
    const int row0 = m0 + warp * WR + g; // query index of tile 0's fragment rows c0, c1 (c2, c3: + 8; tile 1: + 16)

    for (int j = 0; j < ntiles; j++) {
        kv_stage_next<D, MMA_BN>(Ks, Vs, j, ntiles, kb, vb, p.ldkv, kend, kv_aligned);
        int n0 = j * MMA_BN;
        if (n0 < warp_kend) {
            const bf16 *Kt = Ks + (j & 1) * MMA_BN * LD, *Vt = Vs + (j & 1) * MMA_BN * LD;
            float s[2][8][4];
            zero_tiles(s[0]);
            zero_tiles(s[1]);
#pragma unroll
            for (int kk = 0; kk < KSTEPS; kk++) {
                uint32_t a[2][4];
#pragma unroll
                for (int wm = 0; wm < 2; wm++) {
                    if constexpr (QREG) {
#pragma unroll
                        for (int i = 0; i < 4; i++) a[wm][i] = qf[wm][kk][i];
                    } else {
                        load_a_fragment(a[wm], Qw + wm * 16 * LD + kk * 16, LD);
                    }
                }
#pragma unroll
                for (int nt = 0; nt < 8; nt += 2) {
                    uint32_t f[2][2];
                    load_b_fragments(f, Kt + nt * 8 * LD + kk * 16, LD);
#pragma unroll
                    for (int wm = 0; wm < 2; wm++) {
                        mma_bf16_16816(s[wm][nt], a[wm], f[0][0], f[0][1]);
                        mma_bf16_16816(s[wm][nt + 1], a[wm], f[1][0], f[1][1]);
                    }
                }
            }
            if (n0 + MMA_BN > n_k || (p.causal && n0 + MMA_BN - 1 > off + m0 + warp * WR)) {
#pragma unroll
                for (int wm = 0; wm < 2; wm++)
#pragma unroll
                    for (int nt = 0; nt < 8; nt++)
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            int col = n0 + nt * 8 + 2 * t4 + (e & 1), row = row0 + wm * 16 + (e >> 1) * 8;
                            if (col >= n_k || (p.causal && col > off + row)) s[wm][nt][e] = -INFINITY;
                        }
            }
#pragma unroll
            for (int wm = 0; wm < 2; wm++) online_softmax_update<8, DT>(s[wm], o[wm], m[wm], l[wm], scale_log2);
            // P V: each V fragment (ldmatrix.trans) into both tiles' accumulators
            int mat = lane / 8, r8 = lane % 8;
#pragma unroll
            for (int ks = 0; ks < 4; ks++) {
                uint32_t a[2][4];
#pragma unroll
                for (int wm = 0; wm < 2; wm++) {
                    const float *s0 = s[wm][2 * ks], *s1 = s[wm][2 * ks + 1];
                    a[wm][0] = pack_bf16x2(s0[0], s0[1]), a[wm][1] = pack_bf16x2(s0[2], s0[3]);
                    a[wm][2] = pack_bf16x2(s1[0], s1[1]), a[wm][3] = pack_bf16x2(s1[2], s1[3]);
                }
                const bf16 *vrow = Vt + ks * 16 * LD + ((mat & 1) * 8 + r8) * LD + (mat >> 1) * 8;
#pragma unroll
                for (int dp = 0; dp < D / 16; dp++) {
                    uint32_t f[4];
                    ldmatrix_x4_trans(f, vrow + dp * 16);
#pragma unroll
                    for (int wm = 0; wm < 2; wm++) {
                        mma_bf16_16816(o[wm][2 * dp], a[wm], f[0], f[1]);
                        mma_bf16_16816(o[wm][2 * dp + 1], a[wm], f[2], f[3]);
                    }
                }
            }
        }
        __syncthreads(); // every warp is done with this stage before it is refilled
    }

#pragma unroll
    for (int wm = 0; wm < 2; wm++) {
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float lr = l[wm][r];
            lr += __shfl_xor_sync(0xffffffffu, lr, 1);
            lr += __shfl_xor_sync(0xffffffffu, lr, 2);
            int i = row0 + wm * 16 + 8 * r;
            if (i >= nq) continue;
            float inv = lr > 0.0f ? 1.0f / lr : 0.0f;
            bf16 *orow = p.out + (int64_t)(q0 + i) * p.ldo + (int64_t)h * D + 2 * t4;
#pragma unroll
            for (int dt = 0; dt < DT; dt++)
                *reinterpret_cast<uint32_t *>(orow + dt * 8) =
                    pack_bf16x2(o[wm][dt][2 * r] * inv, o[wm][dt][2 * r + 1] * inv);
            if (p.lse && t4 == 0)
                p.lse[(int64_t)(q0 + i) * p.H + h] = lr > 0.0f ? (m[wm][r] + log2f(lr)) * ATTN_LN2 : -INFINITY;
        }
    }
}

// ----------------------------------------------------------------------------
// tensor-core decode kernel (split-K) and the split merge

#define DEC_ROWS 16 // query heads per tile (G = H / KV <= DEC_ROWS)

template <int D> constexpr size_t attn_decode_smem_bytes() {
    return sizeof(bf16) * (size_t)(DEC_ROWS + 4 * MMA_BN) * (D + 8);
}

// grid (splits, KV, B), 128 threads. Segment b's single query row, heads kvh * G + [0, G), and its share of
// the segment's own keys: its 64-key tiles dealt evenly over the splits (ceil(tiles / splits) per split, the
// last splits short or empty), so a segment shorter than the longest (a decode slot early in its response,
// while the grid is sized for the slot's capacity) still spreads over every split. With one split the block
// writes out and lse; otherwise its normalised output to ws_o (splits, B, H, D) and log-sum-exp to ws_lse
// (splits, B, H).
template <int D>
__global__ void __launch_bounds__(128) attn_decode_kernel(AttnArgs<bf16> p, float *ws_o, float *ws_lse) {
    constexpr int LD = D + 8, KSTEPS = D / 16, DT = D / 8;
    DYNAMIC_SMEM(dec_smem);
    bf16 *Qs = reinterpret_cast<bf16 *>(dec_smem); // (DEC_ROWS, LD)
    bf16 *Ks = Qs + DEC_ROWS * LD;                  // (2, MMA_BN, LD)
    bf16 *Vs = Ks + 2 * MMA_BN * LD;                // (2, MMA_BN, LD)
    int split = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z, G = p.H / p.KV;
    int q0 = p.cu_q[b];
    if (p.cu_q[b + 1] - q0 <= 0) return;
    int seg_tiles = (p.nk[b] + MMA_BN - 1) / MMA_BN, keys_per_split = (seg_tiles + gridDim.x - 1) / gridDim.x * MMA_BN;
    int kbeg = min(p.nk[b], split * keys_per_split), kstop = min(p.nk[b], kbeg + keys_per_split);
    int nkeys = max(0, kstop - kbeg), ntiles = (nkeys + MMA_BN - 1) / MMA_BN;
    const bf16 *kb = p.k[b] + (int64_t)kbeg * p.ldkv + (int64_t)kvh * D;
    const bf16 *vb = p.v[b] + (int64_t)kbeg * p.ldkv + (int64_t)kvh * D;
    bool kv_aligned = aligned16(kb) && aligned16(vb);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;

    // the G heads of this key/value head are consecutive D-blocks of the query row
    load_rows_bf16<D, DEC_ROWS>(Qs, p.q + (int64_t)q0 * p.ldq + (int64_t)kvh * G * D, D, G, true);
    cp_async_commit();
    if (ntiles > 0) {
        load_kv_stage<D, MMA_BN>(Ks, Vs, 0, kb, vb, p.ldkv, 0, min(MMA_BN, nkeys), kv_aligned);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();

    uint32_t qf[KSTEPS][4];
#pragma unroll
    for (int kk = 0; kk < KSTEPS; kk++) load_a_fragment(qf[kk], Qs + kk * 16, LD);
    float o[DT][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    zero_tiles(o);
    const float scale_log2 = p.scale * ATTN_LOG2E;

    for (int j = 0; j < ntiles; j++) {
        kv_stage_next<D, MMA_BN>(Ks, Vs, j, ntiles, kb, vb, p.ldkv, nkeys, kv_aligned);
        const bf16 *Kt = Ks + (j & 1) * MMA_BN * LD + warp * 16 * LD; // this warp's 16 keys
        const bf16 *Vt = Vs + (j & 1) * MMA_BN * LD + warp * 16 * LD;
        float s[2][4];
        mma_scores<D, 2>(s, qf, Kt);
        int c0 = j * MMA_BN + warp * 16; // key offset (within the split) of this warp's first key
        if (c0 + 16 > nkeys) {
#pragma unroll
            for (int nt = 0; nt < 2; nt++) {
#pragma unroll
                for (int e = 0; e < 4; e++)
                    if (c0 + nt * 8 + 2 * t4 + (e & 1) >= nkeys) s[nt][e] = -INFINITY;
            }
        }
        online_softmax_update<2, DT>(s, o, m, l, scale_log2);
        pv_accumulate<D>(o, s[0], s[1], Vt);
        __syncthreads();
    }

    // merge the four warps (each saw a quarter of every tile) through shared memory, reusing the K/V stages
    float *red_o = reinterpret_cast<float *>(Ks); // (4, DEC_ROWS, D) unnormalised outputs
    float *red_m = red_o + 4 * DEC_ROWS * D;      // (4, DEC_ROWS) running max, log2 units
    float *red_l = red_m + 4 * DEC_ROWS;          // (4, DEC_ROWS) row sums
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float lr = l[r];
        lr += __shfl_xor_sync(0xffffffffu, lr, 1);
        lr += __shfl_xor_sync(0xffffffffu, lr, 2);
        int row = g + 8 * r;
        float *dst = red_o + (warp * DEC_ROWS + row) * D + 2 * t4;
#pragma unroll
        for (int dt = 0; dt < DT; dt++) dst[dt * 8] = o[dt][2 * r], dst[dt * 8 + 1] = o[dt][2 * r + 1];
        if (t4 == 0) red_m[warp * DEC_ROWS + row] = m[r], red_l[warp * DEC_ROWS + row] = lr;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < G * D; idx += blockDim.x) {
        int row = idx / D, d = idx % D;
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < 4; w++) M = fmaxf(M, red_m[w * DEC_ROWS + row]);
        float L = 0.0f, acc = 0.0f;
        if (M != -INFINITY) {
#pragma unroll
            for (int w = 0; w < 4; w++) {
                float f = exp2f(red_m[w * DEC_ROWS + row] - M);
                L += f * red_l[w * DEC_ROWS + row];
                acc += f * red_o[(w * DEC_ROWS + row) * D + d];
            }
        }
        float val = L > 0.0f ? acc / L : 0.0f, lse = L > 0.0f ? (M + log2f(L)) * ATTN_LN2 : -INFINITY;
        int h = kvh * G + row;
        if (gridDim.x == 1) {
            p.out[(int64_t)q0 * p.ldo + (int64_t)h * D + d] = __float2bfloat16_rn(val);
            if (p.lse && d == 0) p.lse[(int64_t)q0 * p.H + h] = lse;
        } else {
            int64_t slot = ((int64_t)split * p.B + b) * p.H + h;
            ws_o[slot * D + d] = val;
            if (d == 0) ws_lse[slot] = lse;
        }
    }
}

// grid (H, B), 128 threads: out row of (b, h) = sum over splits of exp(lse_s - lse) o_s, lse = logsumexp lse_s.
__global__ void attn_combine_kernel(bf16 *out, int64_t ldo, float *lse, const float *ws_o, const float *ws_lse,
                                    const int *cu_q, int B, int H, int D, int splits) {
    int h = blockIdx.x, b = blockIdx.y;
    int q0 = cu_q[b];
    if (cu_q[b + 1] - q0 <= 0) return;
    float M = -INFINITY;
    for (int s = 0; s < splits; s++) M = fmaxf(M, ws_lse[((int64_t)s * B + b) * H + h]);
    float L = 0.0f;
    if (M != -INFINITY)
        for (int s = 0; s < splits; s++) L += expf(ws_lse[((int64_t)s * B + b) * H + h] - M);
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float acc = 0.0f;
        if (L > 0.0f)
            for (int s = 0; s < splits; s++) {
                int64_t slot = ((int64_t)s * B + b) * H + h;
                acc += expf(ws_lse[slot] - M) * ws_o[slot * D + d];
            }
        out[(int64_t)q0 * ldo + (int64_t)h * D + d] = __float2bfloat16_rn(L > 0.0f ? acc / L : 0.0f);
    }
    if (lse && threadIdx.x == 0) lse[(int64_t)q0 * H + h] = L > 0.0f ? M + logf(L) : -INFINITY;
}
