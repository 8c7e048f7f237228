// Stands in for the CUDA toolkit's cuda_runtime.h when a kernel header is compiled for the CPU emulator
// (g++ -DMAYE_CUDA_EMU -Itests/cuda_emu/include): everything comes from tests/cuda_emu/cuda_emu.h.
#pragma once
#include "../cuda_emu.h"
