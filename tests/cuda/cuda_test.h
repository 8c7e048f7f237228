// Shared helpers of the CUDA tests: the skip when no GPU is present (exit 77), device buffers filled from
// host floats in either dtype, downloads back to floats, NaN poisoning of outputs (so an unwritten element
// fails), bf16 rounding of host inputs (so the CPU reference sees exactly the GPU's inputs) and the
// tolerance check that names the op, the shape, the index and both values.
#pragma once
#ifndef _Noreturn
#define _Noreturn [[noreturn]]
#endif
extern "C" {
#include "core/rng.h"
#include "core/util.h"
#include "test.h"
}
#include "kernels/cuda/cuda_kernels.h"

#include <cuda_runtime.h>

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// setup and failures

// Dies with file:line when a CUDA runtime call fails (a broken test environment, not a kernel mismatch).
#define CUDA_CHECK(expr)                                                                                   \
    do {                                                                                                   \
        cudaError_t e_ = (expr);                                                                           \
        if (e_ != cudaSuccess) maye_die("%s: %s (%s)", #expr, cudaGetErrorName(e_), cudaGetErrorString(e_)); \
    } while (0)

// Expects a cuda_* call to succeed, then waits for the device so that a kernel fault is reported here.
#define EXPECT_GPU_OK(expr)                                                                                \
    do {                                                                                                   \
        EXPECT_OK(expr);                                                                                   \
        cudaError_t e_ = cudaDeviceSynchronize();                                                          \
        if (e_ != cudaSuccess) maye_die("%s: kernel fault: %s (%s)", #expr, cudaGetErrorName(e_),          \
                                        cudaGetErrorString(e_));                                           \
    } while (0)

// Returns a context on device 0, or exits 77 with a message when no GPU is usable.
static inline cuda_ctx *cuda_test_start(const char *name) {
    setvbuf(stdout, NULL, _IOLBF, 0); // progress lines survive an abort
    if (cuda_device_count() == 0) {
        printf("%s: no CUDA device (cudaGetDeviceCount failed or found none): skipped\n", name);
        exit(TEST_SKIP);
    }
    cuda_ctx *ctx = NULL;
    if (cuda_ctx_init(&ctx, 0) < 0) maye_die("cuda_ctx_init: %s", maye_errmsg());
    printf("%s on %s\n", name, cuda_ctx_device_name(ctx));
    return ctx;
}

static inline const char *dt_name(cuda_dtype dt) { return dt == CUDA_BF16 ? "bf16" : "f32"; }
static inline size_t dt_size(cuda_dtype dt) { return dt == CUDA_BF16 ? 2 : 4; }
// The tolerance of a dtype: fp32 parity with the CPU, bf16 storage.
static inline double dt_tol(cuda_dtype dt) { return dt == CUDA_BF16 ? 2e-2 : 1e-5; }

// "op dtype shape" into a static buffer for messages.
static inline const char *what(const char *fmt, ...) {
    static char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return buf;
}

// ----------------------------------------------------------------------------
// host data

static maye_rng test_rng;

static inline float *host_randn(int64_t n, float scale) {
    float *x = (float *)xmalloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) x[i] = scale * maye_rng_normal(&test_rng);
    return x;
}

static inline float *host_zeros(int64_t n) { return (float *)xcalloc((size_t)(n > 0 ? n : 1), sizeof(float)); }

// Rounds host values to what the dtype stores (bf16 round to nearest even), in place.
static inline void round_to(float *x, int64_t n, cuda_dtype dt) {
    if (dt != CUDA_BF16) return;
    for (int64_t i = 0; i < n; i++) x[i] = maye_bf16_to_f32(maye_f32_to_bf16(x[i]));
}

// ----------------------------------------------------------------------------
// device buffers

static inline void *dev_alloc(size_t bytes) {
    void *p = NULL;
    CUDA_CHECK(cudaMalloc(&p, bytes > 0 ? bytes : 16));
    return p;
}

// A device copy of `bytes` host bytes; an empty host array (host == NULL, e.g. an empty std::vector's
// data()) gives zeroed device memory of that size (callers round empty sizes up to one element).
static inline void *dev_copy(const void *host, size_t bytes) {
    void *p = dev_alloc(bytes);
    if (bytes && host) CUDA_CHECK(cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice));
    else if (bytes) CUDA_CHECK(cudaMemset(p, 0, bytes));
    return p;
}

// n host floats stored on the device in dtype dt (a new allocation).
static inline void *dev_from_f32(const float *x, int64_t n, cuda_dtype dt) {
    size_t es = dt_size(dt), bytes = (size_t)(n > 0 ? n : 1) * es;
    void *h = xmalloc(bytes);
    for (int64_t i = 0; i < n; i++) {
        if (dt == CUDA_BF16) ((uint16_t *)h)[i] = maye_f32_to_bf16(x[i]);
        else ((float *)h)[i] = x[i];
    }
    void *d = dev_copy(h, bytes);
    free(h);
    return d;
}

// Copies n host floats into existing device memory in dtype dt.
static inline void dev_store_f32(void *d, const float *x, int64_t n, cuda_dtype dt) {
    size_t es = dt_size(dt), bytes = (size_t)n * es;
    if (n <= 0) return;
    void *h = xmalloc(bytes);
    for (int64_t i = 0; i < n; i++) {
        if (dt == CUDA_BF16) ((uint16_t *)h)[i] = maye_f32_to_bf16(x[i]);
        else ((float *)h)[i] = x[i];
    }
    CUDA_CHECK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
    free(h);
}

// n elements of dtype dt from the device as host floats (caller frees).
static inline float *dev_to_f32(const void *d, int64_t n, cuda_dtype dt) {
    size_t es = dt_size(dt);
    float *out = (float *)xmalloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    if (n <= 0) return out;
    void *h = xmalloc((size_t)n * es);
    CUDA_CHECK(cudaMemcpy(h, d, (size_t)n * es, cudaMemcpyDeviceToHost));
    for (int64_t i = 0; i < n; i++) out[i] = dt == CUDA_BF16 ? maye_bf16_to_f32(((uint16_t *)h)[i]) : ((float *)h)[i];
    free(h);
    return out;
}

// Fills device memory with 0xFF bytes: NaN in f32 and bf16, so an element a kernel forgot to write fails.
static inline void dev_poison(void *d, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemset(d, 0xFF, bytes));
}

static inline void dev_free(void *d) { CUDA_CHECK(cudaFree(d)); }

// ----------------------------------------------------------------------------
// comparison

// The root mean square of want (1 when empty or all zero): the scale of the absolute tolerance.
static inline double rms_of(const float *want, int64_t n) {
    double s = 0;
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(want[i])) s += (double)want[i] * want[i], m++;
    return m && s > 0 ? sqrt(s / m) : 1.0;
}

// |got - want| <= tol * (|want| + rms(want)) elementwise; prints op/shape, index and both values on failure.
static inline int expect_close(const char *name, const float *got, const float *want, int64_t n, double tol) {
    return test_close_f32(name, got, want, n, tol * rms_of(want, n), tol);
}
