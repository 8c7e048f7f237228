// The decode step's linear layers with at most 64 rows: out (M, N) = x (M, K) @ w (N, K)^T (+ bias (N))
// (+ resid (M, N)), bf16 in and out, fp32 accumulation on the tensor cores (mma.sync m16n8k16). At M <= 64
// the weights dominate the bytes and the work is one wave or less of cuBLASLt's tiles: a 1536 x 1536 weight
// streams at 0.12 of the copy bandwidth there. Here a block takes 64 output columns (four warps of 16, each
// over all 64 rows) and one slice of K, so the grid is many blocks deep even for a narrow weight, and streams
// its weight and input tiles through four cp.async stages.
//   skinny_gemm_kernel   one (64-column tile, K slice) per block: with one slice the epilogue (bias, residual,
//                        one rounding to bf16) is applied in place, else the fp32 partial sums are written
//   skinny_reduce_kernel the slices' partials summed in slice order, then the same epilogue
// The sums have a fixed order: the same inputs give the same bits (not cuBLASLt's bits).
#pragma once
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/mma.cuh"

#define SKINNY_M 64        // rows the kernel computes (rows >= M are zeros)
#define SKINNY_BN 64       // output columns per block
#define SKINNY_BK 64       // K per pipeline stage
#define SKINNY_STAGES 4 // cp.async stages (the kernel's template argument: launched as skinny_gemm_kernel<SKINNY_STAGES>)
#define SKINNY_THREADS 128
#define SKINNY_LD (SKINNY_BK + 8) // shared-memory row stride (elements): rows 16-byte aligned, ldmatrix conflict-free

template <int STAGES> constexpr size_t skinny_smem_bytes() {
    return sizeof(bf16) * (size_t)STAGES * (SKINNY_M + SKINNY_BN) * SKINNY_LD;
}

struct SkinnyArgs {
    const bf16 *x;     // (M, K) row stride ldx
    const bf16 *w;     // (N, K) row stride ldw
    const bf16 *bias;  // (N) or NULL
    const bf16 *resid; // (M, N) row stride ldo, or NULL (may be out)
    bf16 *out;         // (M, N) row stride ldo
    float *part;       // (slices, M, N) fp32 partial sums when slices > 1
    int64_t ldx, ldw, ldo;
    int M, N, K;
    int steps_per_slice; // SKINNY_BK steps of K per slice
};

// One SKINNY_BK step of K (columns k0..) into a stage: x rows [0, 64) (zeros from row M on) and w rows n0..
// (zeros from row N on); 16-byte chunks, zeros past K (K is a multiple of 8).
__device__ __forceinline__ void skinny_load_stage(const SkinnyArgs &p, bf16 *Xs, bf16 *Ws, int n0, int k0) {
    constexpr int CHUNKS = SKINNY_BK / 8;
    for (int c = threadIdx.x; c < (SKINNY_M + SKINNY_BN) * CHUNKS; c += SKINNY_THREADS) {
        int r = c / CHUNKS, col = (c % CHUNKS) * 8, k = k0 + col;
        bool is_x = r < SKINNY_M;
        int rr = is_x ? r : r - SKINNY_M;
        bool valid = k < p.K && (is_x ? rr < p.M : n0 + rr < p.N);
        const bf16 *src = is_x ? p.x + (valid ? (int64_t)rr * p.ldx + k : 0) : p.w + (valid ? (int64_t)(n0 + rr) * p.ldw + k : 0);
        bf16 *dst = (is_x ? Xs : Ws) + rr * SKINNY_LD + col;
        cp_async16(dst, src, valid);
    }
}

// grid (ceil(N / SKINNY_BN), slices), SKINNY_THREADS threads, STAGES stages: warp w computes columns n0 + [16 w,
// 16 w + 16) of all 64 rows (4 x 2 accumulator tiles) over the slice's K steps.
template <int STAGES> __global__ void __launch_bounds__(SKINNY_THREADS) skinny_gemm_kernel(SkinnyArgs p) {
    DYNAMIC_SMEM(skinny_smem);
    bf16 *Xs = reinterpret_cast<bf16 *>(skinny_smem); // (STAGES, 64, LD)
    bf16 *Ws = Xs + STAGES * SKINNY_M * SKINNY_LD;     // (STAGES, 64, LD)
    const int n0 = blockIdx.x * SKINNY_BN, slice = blockIdx.y;
    const int steps = (p.K + SKINNY_BK - 1) / SKINNY_BK;
    const int s0 = slice * p.steps_per_slice, s1 = min(steps, s0 + p.steps_per_slice), n_steps = max(0, s1 - s0);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;

    // the first STAGES - 1 steps in flight, one commit group each (empty past the slice)
#pragma unroll
    for (int i = 0; i < STAGES - 1; i++) {
        if (i < n_steps)
            skinny_load_stage(p, Xs + i * SKINNY_M * SKINNY_LD, Ws + i * SKINNY_BN * SKINNY_LD, n0,
                              (s0 + i) * SKINNY_BK);
        cp_async_commit();
    }
    float acc[4][2][4];
#pragma unroll
    for (int mt = 0; mt < 4; mt++)
#pragma unroll
        for (int j = 0; j < 2; j++) acc[mt][j][0] = acc[mt][j][1] = acc[mt][j][2] = acc[mt][j][3] = 0.0f;

    for (int i = 0; i < n_steps; i++) {
        cp_async_wait<STAGES - 2>(); // step i has landed (this thread's copies)
        __syncthreads();                     // ... everyone's; and step i - 1's stage is free
        int next = i + STAGES - 1, st = i % STAGES;
        if (next < n_steps) {
            int ns = next % STAGES;
            skinny_load_stage(p, Xs + ns * SKINNY_M * SKINNY_LD, Ws + ns * SKINNY_BN * SKINNY_LD, n0,
                              (s0 + next) * SKINNY_BK);
        }
        cp_async_commit();
        const bf16 *Xt = Xs + st * SKINNY_M * SKINNY_LD, *Wt = Ws + st * SKINNY_BN * SKINNY_LD + warp * 16 * SKINNY_LD;
#pragma unroll
        for (int kk = 0; kk < SKINNY_BK / 16; kk++) {
            uint32_t f[2][2];
            load_b_fragments(f, Wt + kk * 16, SKINNY_LD); // columns [16 w, 16 w + 8) and [16 w + 8, 16 w + 16)
#pragma unroll
            for (int mt = 0; mt < 4; mt++) {
                uint32_t a[4];
                load_a_fragment(a, Xt + mt * 16 * SKINNY_LD + kk * 16, SKINNY_LD);
                mma_bf16_16816(acc[mt][0], a, f[0][0], f[0][1]);
                mma_bf16_16816(acc[mt][1], a, f[1][0], f[1][1]);
            }
        }
    }
    cp_async_wait<0>();

    // epilogue: column pairs (2 t4, 2 t4 + 1) of rows g and g + 8 of each tile
    const bool whole = gridDim.y == 1;
#pragma unroll
    for (int mt = 0; mt < 4; mt++) {
#pragma unroll
        for (int j = 0; j < 2; j++) {
            int col = n0 + warp * 16 + j * 8 + 2 * t4;
            if (col >= p.N) continue;
#pragma unroll
            for (int r = 0; r < 2; r++) {
                int row = mt * 16 + g + 8 * r;
                if (row >= p.M) continue;
                float v0 = acc[mt][j][2 * r], v1 = acc[mt][j][2 * r + 1];
                if (whole) {
                    if (p.bias) v0 += __bfloat162float(p.bias[col]), v1 += __bfloat162float(p.bias[col + 1]);
                    int64_t at = (int64_t)row * p.ldo + col;
                    if (p.resid) v0 += __bfloat162float(p.resid[at]), v1 += __bfloat162float(p.resid[at + 1]);
                    *reinterpret_cast<uint32_t *>(p.out + at) = pack_bf16x2(v0, v1);
                } else {
                    *reinterpret_cast<float2 *>(p.part + ((int64_t)slice * p.M + row) * p.N + col) =
                        make_float2(v0, v1);
                }
            }
        }
    }
}

// grid-stride over the (M, N / 2) column pairs: out = the slices' partials summed in slice order (+ bias)
// (+ resid), rounded once.
__global__ void skinny_reduce_kernel(SkinnyArgs p, int slices) {
    int64_t pairs = (int64_t)p.M * (p.N / 2);
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < pairs; i += (int64_t)gridDim.x * blockDim.x) {
        int row = (int)(i / (p.N / 2)), col = (int)(i % (p.N / 2)) * 2;
        float v0 = 0.0f, v1 = 0.0f;
        for (int s = 0; s < slices; s++) {
            float2 v = *reinterpret_cast<const float2 *>(p.part + ((int64_t)s * p.M + row) * p.N + col);
            v0 += v.x, v1 += v.y;
        }
        if (p.bias) v0 += __bfloat162float(p.bias[col]), v1 += __bfloat162float(p.bias[col + 1]);
        int64_t at = (int64_t)row * p.ldo + col;
        if (p.resid) v0 += __bfloat162float(p.resid[at]), v1 += __bfloat162float(p.resid[at + 1]);
        *reinterpret_cast<uint32_t *>(p.out + at) = pack_bf16x2(v0, v1);
    }
}
