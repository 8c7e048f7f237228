// The baseline of the CPU model benchmarks (model_forward.c, update.c): the machine's sgemm rate, measured in
// the same run as what it is compared with. A header of static functions, as each benchmark is one program.
#pragma once
#include "core/error.h"
#include "core/util.h"

#include <cblas.h>
#include <stdlib.h>

// The best of `reps` cblas_sgemm products of n x n squares, in GFLOP/s.
static inline double bench_sgemm_peak(int n, int reps) {
    float *a = xmalloc(sizeof(float) * (size_t)n * n), *b = xmalloc(sizeof(float) * (size_t)n * n);
    float *c = xmalloc(sizeof(float) * (size_t)n * n);
    for (size_t i = 0; i < (size_t)n * n; i++) a[i] = (float)(i % 7) * 0.1f, b[i] = (float)(i % 5) * 0.1f;
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = maye_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double g = 2.0 * n * n * (double)n / (maye_now() - t0) / 1e9;
        if (g > best) best = g;
    }
    free(a), free(b), free(c);
    return best;
}
