// Matmuls through OpenBLAS (cblas_sgemm), embeddings and residual adds, plus the thread settings shared by
// every CPU kernel (OpenMP and the OpenMP build of OpenBLAS use one thread pool).
#include "kernels/cpu/kernels.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

// ----------------------------------------------------------------------------
// threads

int cpu_set_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
    return n;
}

// ----------------------------------------------------------------------------
// matmul

void matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int T, int C, int OC) {
    if (T <= 0 || OC <= 0) return;
    if (C <= 0) {
        memset(out, 0, sizeof(float) * (size_t)T * (size_t)OC);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, OC, C, 1.0f, inp, C, weight, C, 0.0f, out, OC);
    }
    if (!bias) return;
#pragma omp parallel for schedule(static) if ((int64_t)T * OC > 65536)
    for (int t = 0; t < T; t++) {
        float *o = out + (size_t)t * OC;
        for (int j = 0; j < OC; j++) o[j] += bias[j];
    }
}

// ----------------------------------------------------------------------------
// embedding, residual

void embedding_forward(float *out, const int64_t *ids, const float *table, int T, int C) {
#pragma omp parallel for schedule(static) if ((int64_t)T * C > 65536)
    for (int t = 0; t < T; t++) memcpy(out + (size_t)t * C, table + (size_t)ids[t] * C, sizeof(float) * (size_t)C);
}

void residual_forward(float *out, const float *a, const float *b, int64_t N) {
#pragma omp parallel for schedule(static) if (N > 65536)
    for (int64_t i = 0; i < N; i++) out[i] = a[i] + b[i];
}
