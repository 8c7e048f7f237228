// The sm_80+ warp-level instructions the tensor-core attention kernels are built from, as inline PTX:
// mma.sync (bf16 in, fp32 accumulation), ldmatrix and cp.async. The CPU emulator of tests/cuda_emu gives
// the same functions (same fragment layouts) in C++, so the kernels that use them also run there. Then the
// fragment loads of row-major bf16 tiles built on them.
#pragma once
#include "kernels/cuda/common.cuh"

#ifdef MAYE_CUDA_EMU
#include "cuda_emu_mma.h"
#else

// c (16x8 fp32) += a (16x16 bf16, row) @ b (16x8 bf16, col). Fragments, with g = lane / 4, t = lane % 4:
// a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..); b0 (k 2t..2t+1, n g), b1 (k 2t+8.., n g);
// c0, c1 (g, 2t..2t+1), c2, c3 (g+8, 2t..2t+1).
__device__ __forceinline__ void mma_bf16_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8x8 bf16 matrices from shared memory: lane L gives the address of row L % 8 of matrix L / 8 (16 bytes,
// 16-byte aligned); register i of lane L receives matrix i's elements (row L / 4, columns 2 (L % 4) and
// 2 (L % 4) + 1).
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void *smem) {
    uint32_t addr = (uint32_t)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}

// Four 8x8 bf16 matrices from shared memory, transposed: lane L gives the address of row L % 8 of matrix
// L / 8; register i of lane L receives matrix i's elements (row 2 (L % 4) and 2 (L % 4) + 1, column L / 4).
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void *smem) {
    uint32_t addr = (uint32_t)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}

// 16 bytes global -> shared without a register round trip; valid = false writes 16 zero bytes.
__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, bool valid) {
    uint32_t addr = (uint32_t)__cvta_generic_to_shared(smem);
    int src_bytes = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(addr), "l"(gmem), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most N of this thread's committed groups are still in flight.
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

#endif

// ----------------------------------------------------------------------------
// fragments of row-major bf16 tiles (built on the instructions above)

// Two floats rounded to bf16 in one 32-bit register: lo in the lower 16 bits (an mma operand's element order).
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi); // .x (lo) is the lower 16 bits
    return *reinterpret_cast<uint32_t *>(&v);
}

// The A fragment (mma layout) of the 16 x 16 block at m of a row-major bf16 matrix in shared memory (row
// stride ld elements, rows 16-byte aligned): rows [0, 16), columns [0, 16), in one ldmatrix.x4.
__device__ __forceinline__ void load_a_fragment(uint32_t a[4], const bf16 *m, int ld) {
    int lane = threadIdx.x % 32, mat = lane / 8;
    // matrices: 0 rows 0-7 / cols 0-7, 1 rows 8-15 / cols 0-7, 2 rows 0-7 / cols 8-15, 3 rows 8-15 / cols 8-15
    ldmatrix_x4(a, m + ((mat & 1) * 8 + lane % 8) * ld + (mat >> 1) * 8);
}

// The A fragment of the 16 x 16 block at m of a row-major bf16 matrix in global memory (row stride ld elements),
// the same registers as load_a_fragment gives from shared memory; rows >= nvalid read as zeros. Two 2-byte loads
// per register, so any stride and alignment: for operands read once per block (the prefill's queries).
__device__ __forceinline__ void load_a_fragment_global(uint32_t a[4], const bf16 *m, int64_t ld, int nvalid) {
    int lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        int r = g + (i & 1) * 8, c = 2 * t4 + (i >> 1) * 8;
        const bf16 *e = m + (int64_t)r * ld + c;
        a[i] = r < nvalid ? pack_bf16x2(to_f32(e[0]), to_f32(e[1])) : 0u;
    }
}

// The B fragments of two 16 (k) x 8 (n) product operands whose n-th columns are rows n and 8 + n of m (rows
// [0, 16), columns [0, 16) of a row-major bf16 matrix in shared memory, row stride ld, rows 16-byte aligned):
// b[j] is the B operand of A m[8j .. 8j + 8)^T. One ldmatrix.x4.
__device__ __forceinline__ void load_b_fragments(uint32_t b[2][2], const bf16 *m, int ld) {
    int lane = threadIdx.x % 32, mat = lane / 8;
    // matrices: 0 rows 0-7 / cols 0-7, 1 rows 0-7 / cols 8-15, 2 rows 8-15 / cols 0-7, 3 rows 8-15 / cols 8-15
    uint32_t r[4];
    ldmatrix_x4(r, m + ((mat >> 1) * 8 + lane % 8) * ld + (mat & 1) * 8);
    b[0][0] = r[0], b[0][1] = r[1], b[1][0] = r[2], b[1][1] = r[3];
}
