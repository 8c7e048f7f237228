// Stands in for the CUDA toolkit's cuda_bf16.h under the CPU emulator: __nv_bfloat16, __nv_bfloat162 and
// their conversions come from tests/cuda_emu/cuda_emu.h.
#pragma once
#include "../cuda_emu.h"
