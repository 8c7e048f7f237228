// The arithmetic of token sampling that the CPU and CUDA samplers share bit for bit (the algorithm is written
// out above cuda_sample_forward in cuda_kernels.h). Plain C with no CUDA dependency: a CPU sampler includes it
// as it is; under nvcc the same functions compile for the device. Every rounding step is explicit (fmaf,
// IEEE division, exact power-of-two scalings, truncating conversions), so compilers that contract a * b + c
// into FMAs cannot change a result.
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define MAYE_SAMPLE_FN __host__ __device__ static inline
#else
#define MAYE_SAMPLE_FN static inline
#endif

// Temperatures at or below this draw greedily (the argmax), on every backend.
#define MAYE_SAMPLE_GREEDY_TEMPERATURE 1e-5f

// Below this d = z / tau - zmax / tau a token's weight is 0 (exp(-28) * 2^40 < 1).
#define MAYE_SAMPLE_MIN_D (-28.0f)

// exp(x) for x in [MAYE_SAMPLE_MIN_D, 0] (callers clamp): Cody-Waite reduction by ln 2 and a degree-6
// polynomial, every step an fmaf or an exact operation. Relative error about 2 ulp; exactly 1 at x = 0.
MAYE_SAMPLE_FN float maye_sample_expf(float x) {
    float t = fmaf(x, 1.44269504088896341f, 12582912.0f); // 1.5 * 2^23 + round(x / ln 2)
    float n = t - 12582912.0f;                              // exact
    float r = fmaf(n, -0.693359375f, x);                    // x - n ln 2, ln 2 split in two parts
    r = fmaf(n, 2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    float r2 = r * r;
    float y = fmaf(p, r2, r) + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23; // 2^n, n in [-41, 0]
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return y * scale;
}

// The integer weight of a logit z in a row whose largest logit is zmax, at temperature tau > 0:
// floor(2^40 * exp(d)) with d = z / tau - zmax / tau (two IEEE divisions and a subtraction); 0 when d is
// below MAYE_SAMPLE_MIN_D or NaN. A weight is at most 2^40, so a row's sum fits 64 bits below 2^24 tokens.
MAYE_SAMPLE_FN uint64_t maye_sample_weight(float z, float zmax, float tau) {
    float d = z / tau - zmax / tau;
    if (!(d >= MAYE_SAMPLE_MIN_D)) return 0;
    if (d > 0.0f) d = 0.0f;
    return (uint64_t)(maye_sample_expf(d) * 1099511627776.0f); // 2^40: exact scaling, truncating conversion
}

// An unsigned key with the order of the float logits (larger logit, larger key; -0 sorts just below +0).
MAYE_SAMPLE_FN uint32_t maye_sample_key(float z) {
    uint32_t b;
    memcpy(&b, &z, sizeof b);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// The logit a key came from.
MAYE_SAMPLE_FN float maye_sample_key_value(uint32_t key) {
    uint32_t b = (key & 0x80000000u) ? (key & 0x7fffffffu) : ~key;
    float z;
    memcpy(&z, &b, sizeof z);
    return z;
}

// The top-p mass target and the draw, in double so both sides round the same way.
MAYE_SAMPLE_FN uint64_t maye_sample_scale(double fraction, uint64_t total) {
    return (uint64_t)(fraction * (double)total);
}
