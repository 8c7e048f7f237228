// Eight float lanes for the generation engine's CPU kernels (decode.c, sample.c): AVX2 + FMA when the build
// targets them, else plain C with the same operations lane by lane (fmaf for the fused multiply-adds), so
// both give the same bits. Reductions use one fixed order, ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)),
// and the exponential is maye_sample_expf (kernels/cuda/sampling_def.h) on every lane. max/min take no NaN.
#pragma once
#include "kernels/cuda/sampling_def.h"

#include <math.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define LANES_AVX2 1
#endif

// ----------------------------------------------------------------------------
// lanes

#ifdef LANES_AVX2
typedef __m256 lanes8;
static inline lanes8 lanes_zero(void) { return _mm256_setzero_ps(); }
static inline lanes8 lanes_set1(float x) { return _mm256_set1_ps(x); }
// The empty asm makes the loaded vector opaque, so GCC keeps it in a register for all its uses instead of
// folding a reload into every FMA (7 loads per 12 FMAs in the matmul tile instead of 16: about 1.5x faster).
static inline lanes8 lanes_load(const float *p) {
    __m256 v = _mm256_loadu_ps(p);
    __asm__("" : "+x"(v));
    return v;
}
static inline void lanes_store(float *p, lanes8 a) { _mm256_storeu_ps(p, a); }
static inline lanes8 lanes_fma(lanes8 a, lanes8 b, lanes8 c) { return _mm256_fmadd_ps(a, b, c); }
static inline lanes8 lanes_add(lanes8 a, lanes8 b) { return _mm256_add_ps(a, b); }
static inline lanes8 lanes_sub(lanes8 a, lanes8 b) { return _mm256_sub_ps(a, b); }
static inline lanes8 lanes_mul(lanes8 a, lanes8 b) { return _mm256_mul_ps(a, b); }
static inline lanes8 lanes_div(lanes8 a, lanes8 b) { return _mm256_div_ps(a, b); }
static inline lanes8 lanes_max(lanes8 a, lanes8 b) { return _mm256_max_ps(a, b); } // a, b not NaN
static inline lanes8 lanes_min(lanes8 a, lanes8 b) { return _mm256_min_ps(a, b); } // a, b not NaN
static inline float lanes_sum(lanes8 a) {
    __m128 h = _mm_hadd_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1)); // l0+l1, l2+l3, l4+l5, l6+l7
    h = _mm_hadd_ps(h, h);
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}
// The sums of eight vectors at once: lane j of the result is lanes_sum(a[j]).
static inline lanes8 lanes_sum8(const lanes8 a[8]) {
    __m256 h0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
    __m256 h1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(h0, h1, 0x20), _mm256_permute2f128_ps(h0, h1, 0x31));
}
static inline lanes8 lanes_exp(lanes8 x) { // maye_sample_expf, x in [-87, 88]
    __m256 big = _mm256_set1_ps(12582912.0f);
    __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), big);
    __m256 n = _mm256_sub_ps(t, big);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-0.693359375f), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(bits));
}
#else
typedef struct {
    float l[8];
} lanes8;
static inline lanes8 lanes_zero(void) { return (lanes8){{0}}; }
static inline lanes8 lanes_set1(float x) { return (lanes8){{x, x, x, x, x, x, x, x}}; }
static inline lanes8 lanes_load(const float *p) {
    lanes8 r;
    memcpy(r.l, p, sizeof r.l);
    return r;
}
static inline void lanes_store(float *p, lanes8 a) { memcpy(p, a.l, sizeof a.l); }
static inline lanes8 lanes_fma(lanes8 a, lanes8 b, lanes8 c) {
    for (int i = 0; i < 8; i++) c.l[i] = fmaf(a.l[i], b.l[i], c.l[i]);
    return c;
}
static inline lanes8 lanes_add(lanes8 a, lanes8 b) {
    for (int i = 0; i < 8; i++) a.l[i] += b.l[i];
    return a;
}
static inline lanes8 lanes_sub(lanes8 a, lanes8 b) {
    for (int i = 0; i < 8; i++) a.l[i] -= b.l[i];
    return a;
}
static inline lanes8 lanes_mul(lanes8 a, lanes8 b) {
    for (int i = 0; i < 8; i++) a.l[i] *= b.l[i];
    return a;
}
static inline lanes8 lanes_div(lanes8 a, lanes8 b) {
    for (int i = 0; i < 8; i++) a.l[i] /= b.l[i];
    return a;
}
static inline lanes8 lanes_max(lanes8 a, lanes8 b) {
    for (int i = 0; i < 8; i++) a.l[i] = a.l[i] > b.l[i] ? a.l[i] : b.l[i];
    return a;
}
static inline lanes8 lanes_min(lanes8 a, lanes8 b) {
    for (int i = 0; i < 8; i++) a.l[i] = a.l[i] < b.l[i] ? a.l[i] : b.l[i];
    return a;
}
static inline float lanes_sum(lanes8 a) {
    return ((a.l[0] + a.l[1]) + (a.l[2] + a.l[3])) + ((a.l[4] + a.l[5]) + (a.l[6] + a.l[7]));
}
static inline lanes8 lanes_sum8(const lanes8 a[8]) {
    lanes8 r;
    for (int j = 0; j < 8; j++) r.l[j] = lanes_sum(a[j]);
    return r;
}
static inline lanes8 lanes_exp(lanes8 x) {
    for (int i = 0; i < 8; i++) x.l[i] = maye_sample_expf(x.l[i]);
    return x;
}
#endif

// exp(x) for x <= 88 with the arithmetic of lanes_exp (maye_sample_expf's steps hold for 2^n, n in
// [-126, 127]): clamped at -87, where exp is 1.6e-38, nothing next to the 1 of a softmax maximum.
static inline float lanes_exp1(float x) { return maye_sample_expf(x >= -87.0f ? x : -87.0f); }

// The largest of x[0..n), NaN skipped (-inf when there is none): the value of the scalar loop
// m = x_i > m ? x_i : m from m = -inf, eight lanes at a time (only the sign of a zero maximum can differ, which
// no caller can see: it is only ever subtracted from the values and exponentiated, or divided by a positive
// temperature and then subtracted).
static inline float lanes_row_max(const float *x, int n) {
    float m = -INFINITY;
    int i = 0;
#ifdef LANES_AVX2
    __m256 vm = _mm256_set1_ps(-INFINITY);
    for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(_mm256_loadu_ps(x + i), vm); // a NaN lane keeps vm
    float l[8];
    _mm256_storeu_ps(l, vm);
    for (int j = 0; j < 8; j++) m = l[j] > m ? l[j] : m;
#endif
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

// out[i] = lanes_sum(a[i]) for i < n: eight at a time through lanes_sum8 (the same bits with a quarter of the
// shuffles), the rest one by one.
static inline void lanes_sums(float *out, const lanes8 *a, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) lanes_store(out + i, lanes_sum8(a + i));
    for (; i < n; i++) out[i] = lanes_sum(a[i]);
}
