// Stands in for CUB's cub/block/block_reduce.cuh under the CPU emulator (tests/cuda_emu/cuda_emu.h):
// cub::BlockReduce<T, BLOCK_DIM_X> over a 1-D block of exactly BLOCK_DIM_X threads. Every thread stores its
// input in the TempStorage, one __syncthreads, then thread 0 folds the inputs in thread order (CUB's tree
// order may round a float sum differently in the last bits). As in CUB, only thread 0 gets the aggregate:
// the others get 0xFF bytes (NaN for floats), and reusing the TempStorage needs a __syncthreads first (a
// missing one shows up under the emulator's schedule as another warp overwriting the inputs).
#pragma once
#include "../../cuda_emu_cub.h"

namespace cub {

template <typename T, int BLOCK_DIM_X> class BlockReduce {
  public:
    struct TempStorage {
        T in[BLOCK_DIM_X];
    };

    explicit BlockReduce(TempStorage &temp) : temp_(temp) {}

    template <typename Op>
    T Reduce(T input, Op op, cuda_emu_site site = cuda_emu_site("cub::BlockReduce::Reduce")) {
        int tid = cuda_emu_cub_tid(BLOCK_DIM_X, site);
        temp_.in[tid] = input;
        __syncthreads(site);
        T r;
        if (tid != 0) {
            memset((void *)&r, 0xFF, sizeof r);
            return r;
        }
        r = temp_.in[0];
        for (int i = 1; i < BLOCK_DIM_X; i++) r = op(r, temp_.in[i]);
        return r;
    }

    T Sum(T input, cuda_emu_site site = cuda_emu_site("cub::BlockReduce::Sum")) {
        return Reduce(input, [](const T &a, const T &b) { return a + b; }, site);
    }

  private:
    TempStorage &temp_;
};

} // namespace cub
