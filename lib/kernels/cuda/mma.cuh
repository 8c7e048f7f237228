// The sm_80+ warp-level instructions the tensor-core attention kernels are built from, as inline PTX:
// mma.sync (bf16 in, fp32 accumulation), ldmatrix and cp.async. The CPU emulator of tests/cuda_emu gives
// the same functions (same fragment layouts) in C++, so the kernels that use them also run there.
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
