// Stands in for CUB's cub/block/block_scan.cuh under the CPU emulator (tests/cuda_emu/cuda_emu.h):
// cub::BlockScan<T, BLOCK_DIM_X>::ExclusiveSum over a 1-D block of exactly BLOCK_DIM_X threads. Every thread
// stores its input in the TempStorage, one __syncthreads, then each thread adds the inputs of the threads
// before it (thread 0 gets T(0)) and every thread gets the block's total. As in CUB, reusing the TempStorage
// needs a __syncthreads first.
#pragma once
#include "../../cuda_emu_cub.h"

namespace cub {

template <typename T, int BLOCK_DIM_X> class BlockScan {
  public:
    struct TempStorage {
        T in[BLOCK_DIM_X];
    };

    explicit BlockScan(TempStorage &temp) : temp_(temp) {}

    void ExclusiveSum(T input, T &output, T &block_aggregate,
                      cuda_emu_site site = cuda_emu_site("cub::BlockScan::ExclusiveSum")) {
        int tid = cuda_emu_cub_tid(BLOCK_DIM_X, site);
        temp_.in[tid] = input;
        __syncthreads(site);
        T run = T(0);
        for (int i = 0; i < tid; i++) run = run + temp_.in[i];
        output = run;
        for (int i = tid; i < BLOCK_DIM_X; i++) run = run + temp_.in[i];
        block_aggregate = run;
    }

  private:
    TempStorage &temp_;
};

} // namespace cub
