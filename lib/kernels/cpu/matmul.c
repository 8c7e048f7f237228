// Matmuls through OpenBLAS (cblas_sgemm), embeddings and residual adds and their backwards, plus the thread
// settings shared by every CPU kernel (OpenMP and the OpenMP build of OpenBLAS use one thread pool).
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

#define TILE_ROWS 128
#define TILE_COLS 256

static int fixed_tiles;

int cpu_matmul_fixed_tiles(int on) {
    int was = fixed_tiles;
    fixed_tiles = on;
    return was;
}

// out (T, OC) = inp @ weight^T in fixed TILE_ROWS x TILE_COLS tiles, one single-threaded sgemm each (OpenBLAS
// runs single-threaded inside a parallel region).
static void matmul_tiles(float *out, const float *inp, const float *weight, int T, int C, int OC) {
    int tm = (T + TILE_ROWS - 1) / TILE_ROWS, tn = (OC + TILE_COLS - 1) / TILE_COLS;
#pragma omp parallel for schedule(dynamic) // always a parallel region: OpenBLAS runs single-threaded in one
    for (int i = 0; i < tm * tn; i++) {
        int m0 = i / tn * TILE_ROWS, n0 = i % tn * TILE_COLS;
        int m = T - m0 < TILE_ROWS ? T - m0 : TILE_ROWS, n = OC - n0 < TILE_COLS ? OC - n0 : TILE_COLS;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, C, 1.0f, inp + (size_t)m0 * C, C,
                    weight + (size_t)n0 * C, C, 0.0f, out + (size_t)m0 * OC + n0, OC);
    }
}

void matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int T, int C, int OC) {
    if (T <= 0 || OC <= 0) return;
    if (C <= 0) {
        memset(out, 0, sizeof(float) * (size_t)T * (size_t)OC);
    } else if (fixed_tiles) {
        matmul_tiles(out, inp, weight, T, C, OC);
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

// Column sums of dout (T, OC) added to dbias (OC): each block of columns is one task that walks the rows in
// order, so the sums do not depend on the thread count.
static void bias_backward(float *dbias, const float *dout, int T, int OC) {
    enum { COLS = 64 };
#pragma omp parallel for schedule(static) if ((int64_t)T * OC > 65536)
    for (int j0 = 0; j0 < OC; j0 += COLS) {
        int n = OC - j0 < COLS ? OC - j0 : COLS;
        float acc[COLS] = {0};
        for (int t = 0; t < T; t++) {
            const float *d = dout + (size_t)t * OC + j0;
#pragma omp simd
            for (int j = 0; j < n; j++) acc[j] += d[j];
        }
        for (int j = 0; j < n; j++) dbias[j0 + j] += acc[j];
    }
}

void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int T, int C, int OC) {
    if (T <= 0 || OC <= 0) return;
    if (dinp && C > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, C, OC, 1.0f, dout, OC, weight, C, 1.0f, dinp, C);
    if (dweight && C > 0)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, T, 1.0f, dout, OC, inp, C, 1.0f, dweight, C);
    if (dbias) bias_backward(dbias, dout, T, OC);
}

// ----------------------------------------------------------------------------
// embedding, residual

void embedding_forward(float *out, const int64_t *ids, const float *table, int T, int C) {
#pragma omp parallel for schedule(static) if ((int64_t)T * C > 65536)
    for (int t = 0; t < T; t++) memcpy(out + (size_t)t * C, table + (size_t)ids[t] * C, sizeof(float) * (size_t)C);
}

// Parallel over blocks of channels, each walking the tokens in order: tokens sharing an id never race and
// the sums do not depend on the thread count.
void embedding_backward(float *dtable, const int64_t *ids, const float *dout, int T, int C) {
    enum { COLS = 256 };
#pragma omp parallel for schedule(static) if ((int64_t)T * C > 65536)
    for (int c0 = 0; c0 < C; c0 += COLS) {
        int n = C - c0 < COLS ? C - c0 : COLS;
        for (int t = 0; t < T; t++) {
            if (ids[t] < 0) continue;
            float *d = dtable + (size_t)ids[t] * C + c0;
            const float *g = dout + (size_t)t * C + c0;
#pragma omp simd
            for (int j = 0; j < n; j++) d[j] += g[j];
        }
    }
}

void residual_forward(float *out, const float *a, const float *b, int64_t N) {
#pragma omp parallel for schedule(static) if (N > 65536)
    for (int64_t i = 0; i < N; i++) out[i] = a[i] + b[i];
}
