// The warp-level tensor-core instructions of lib/kernels/cuda/mma.cuh for the CPU emulator (included there
// when MAYE_CUDA_EMU is defined): the same functions with the PTX fragment layouts, as warp collectives of
// tests/cuda_emu/cuda_emu.h. mma.sync multiplies in fp32 (bf16 products are exact) and sums in fp32 in k
// order, which may round differently from the hardware's adder tree. A cp.async poisons its destination
// when issued and copies at the cp.async.wait that retires its group.
//
// Fragments of mma.m16n8k16 (g = lane / 4, t = lane % 4; the lower 16 bits of a register hold the lower
// column or k index): a0 A(g, 2t..2t+1), a1 A(g+8, 2t..), a2 A(g, 2t+8..), a3 A(g+8, 2t+8..);
// b0 B(k 2t..2t+1, n g), b1 B(k 2t+8.., n g); c0, c1 C(g, 2t..2t+1), c2, c3 C(g+8, 2t..2t+1).
// ldmatrix.m8n8: lanes 8i..8i+7 give the addresses of rows 0..7 of matrix i (16 bytes each); register i of
// lane L holds matrix i's elements (row L/4, columns 2(L%4), 2(L%4)+1), or with .trans (rows 2(L%4),
// 2(L%4)+1, column L/4).
#pragma once
#include "../cuda_emu.h"

// ----------------------------------------------------------------------------
// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32

struct cuda_emu_mma_op {
    float *c;
    uint32_t a[4], b[2];
};

inline float cuda_emu_bf16_half(uint32_t r, int hi) {
    __nv_bfloat16 h;
    h.__x = (unsigned short)(hi ? r >> 16 : r & 0xffffu);
    return __bfloat162float(h);
}

inline void cuda_emu_mma_resolve(void *const ops[32]) {
    float A[16][16], B[16][8], C[16][8];
    for (int l = 0; l < 32; l++) {
        const cuda_emu_mma_op *op = static_cast<const cuda_emu_mma_op *>(ops[l]);
        int g = l / 4, t = l % 4;
        for (int e = 0; e < 2; e++) {
            A[g][2 * t + e] = cuda_emu_bf16_half(op->a[0], e);
            A[g + 8][2 * t + e] = cuda_emu_bf16_half(op->a[1], e);
            A[g][2 * t + 8 + e] = cuda_emu_bf16_half(op->a[2], e);
            A[g + 8][2 * t + 8 + e] = cuda_emu_bf16_half(op->a[3], e);
            B[2 * t + e][g] = cuda_emu_bf16_half(op->b[0], e);
            B[2 * t + 8 + e][g] = cuda_emu_bf16_half(op->b[1], e);
            C[g][2 * t + e] = op->c[e];
            C[g + 8][2 * t + e] = op->c[2 + e];
        }
    }
    for (int l = 0; l < 32; l++) {
        cuda_emu_mma_op *op = static_cast<cuda_emu_mma_op *>(ops[l]);
        int g = l / 4, t = l % 4;
        for (int e = 0; e < 4; e++) {
            int row = g + 8 * (e >> 1), col = 2 * t + (e & 1);
            float acc = C[row][col];
            for (int k = 0; k < 16; k++) acc += A[row][k] * B[k][col];
            op->c[e] = acc;
        }
    }
}

// c (16x8 fp32) += a (16x16 bf16, row) @ b (16x8 bf16, col).
__device__ __forceinline__ void mma_bf16_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1,
                                               cuda_emu_site site = cuda_emu_site("mma.sync.m16n8k16")) {
    cuda_emu_mma_op op = {c, {a[0], a[1], a[2], a[3]}, {b0, b1}};
    cuda_emu_warp_collective(site, cuda_emu_mma_resolve, &op);
}

// ----------------------------------------------------------------------------
// ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16

struct cuda_emu_ldmatrix_op {
    uint32_t *r;
    const void *row; // this lane's row address
};

template <int NMAT, bool TRANS> inline void cuda_emu_ldmatrix_resolve(void *const ops[32]) {
    uint16_t M[NMAT][8][8];
    for (int i = 0; i < NMAT; i++)
        for (int row = 0; row < 8; row++) {
            const void *p = static_cast<const cuda_emu_ldmatrix_op *>(ops[8 * i + row])->row;
            if ((uintptr_t)p & 15)
                cuda_emu_die("ldmatrix: lane %d gives the row address %p, which is not 16-byte aligned", 8 * i + row, p);
            memcpy(M[i][row], p, 16);
        }
    for (int l = 0; l < 32; l++) {
        cuda_emu_ldmatrix_op *op = static_cast<cuda_emu_ldmatrix_op *>(ops[l]);
        int a = l / 4, b = 2 * (l % 4);
        for (int i = 0; i < NMAT; i++) {
            uint16_t lo = TRANS ? M[i][b][a] : M[i][a][b], hi = TRANS ? M[i][b + 1][a] : M[i][a][b + 1];
            op->r[i] = (uint32_t)lo | (uint32_t)hi << 16;
        }
    }
}

// Four 8x8 bf16 matrices from shared memory.
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void *smem,
                                            cuda_emu_site site = cuda_emu_site("ldmatrix.x4")) {
    cuda_emu_ldmatrix_op op = {r, smem};
    cuda_emu_warp_collective(site, cuda_emu_ldmatrix_resolve<4, false>, &op);
}

// Four 8x8 bf16 matrices from shared memory, transposed.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void *smem,
                                                  cuda_emu_site site = cuda_emu_site("ldmatrix.x4.trans")) {
    cuda_emu_ldmatrix_op op = {r, smem};
    cuda_emu_warp_collective(site, cuda_emu_ldmatrix_resolve<4, true>, &op);
}

// ----------------------------------------------------------------------------
// cp.async.cg (16 bytes), commit_group, wait_group

// 16 bytes global -> shared; valid = false writes zeros. The destination holds 0xFF bytes (undefined) from
// here until a cp_async_wait retires the copy's group.
__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, bool valid) {
    if (((uintptr_t)smem | (uintptr_t)gmem) & 15)
        cuda_emu_die("thread (%u,%u,%u): cp.async of 16 bytes from %p to %p: both addresses must be 16-byte aligned",
                     threadIdx.x, threadIdx.y, threadIdx.z, gmem, smem);
    memset(smem, 0xFF, 16);
    cuda_emu_self().copies.push_back({smem, gmem, valid});
}
__device__ __forceinline__ void cp_async_commit() {
    cuda_emu_thread &t = cuda_emu_self();
    t.group_ends.push_back(t.copies.size());
}
// Waits until at most N of this thread's committed groups are still in flight.
template <int N> __device__ __forceinline__ void cp_async_wait() { cuda_emu_copies_retire(cuda_emu_self(), N); }
