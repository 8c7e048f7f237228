// Stands in for the CUDA toolkit's cublas_v2.h under the CPU emulator: cuda_emu_blas.h.
#pragma once
#include "../cuda_emu_blas.h"
