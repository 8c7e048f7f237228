// Branch-free float math for the CPU kernels' inner loops, written so GCC vectorises it under
// `#pragma omp simd` (a libm call would keep the loop scalar without -ffast-math).
#pragma once
#include <stdint.h>
#include <string.h>

// exp(x) with Cody-Waite range reduction and the Cephes expf polynomial; relative error within 2 ulp.
// Inputs are clamped to [-87, 88] (the result stays a normal float; exp(-87) ~ 1.6e-38 is 0 for a softmax).
static inline float vec_expf(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = x * 1.44269504088896341f + 12582912.0f; // round(x / ln 2) by the 1.5 * 2^23 trick
    n -= 12582912.0f;
    float r = x - n * 0.693359375f;                    // x - n ln 2, ln 2 split in two parts
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;           // 2^n
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}
