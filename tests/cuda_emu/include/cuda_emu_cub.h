// What the CUB stand-ins of tests/cuda_emu/include/cub share: the calling thread's index in a block that
// must be 1-D with the class's BLOCK_DIM_X threads (CUB's requirement; a mismatch aborts).
#pragma once
#include "../cuda_emu.h"

inline int cuda_emu_cub_tid(int block_dim_x, const cuda_emu_site &site) {
    if ((int)blockDim.x != block_dim_x || blockDim.y != 1 || blockDim.z != 1)
        cuda_emu_die("%s (%s:%d) for %d threads in a block of (%u,%u,%u)", site.what, site.file, site.line,
                     block_dim_x, blockDim.x, blockDim.y, blockDim.z);
    return (int)threadIdx.x;
}
