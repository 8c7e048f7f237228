// Elementwise activations of the MLPs and their derivatives: SiLU (and the SiLU-gated MLP of Qwen2 /
// Qwen2.5-VL), exact GELU (the patch merger), tanh-GELU and QuickGELU (the Qwen2-VL vision blocks).
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/vec_math.h"

#include <math.h>

// ----------------------------------------------------------------------------
// scalar forms

static inline float act_one(float x, act_kind act) {
    switch (act) {
    case ACT_SILU: return x / (1.0f + vec_expf(-x));
    case ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case ACT_GELU_TANH: {
        float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
        return 0.5f * x * (1.0f + tanhf(u));
    }
    case ACT_QUICK_GELU: return x / (1.0f + vec_expf(-1.702f * x));
    }
    return x;
}

// d act(x) / dx
static inline float act_grad_one(float x, act_kind act) {
    switch (act) {
    case ACT_SILU: {
        float s = 1.0f / (1.0f + vec_expf(-x));
        return s * (1.0f + x * (1.0f - s));
    }
    case ACT_GELU:
        return 0.5f * (1.0f + erff(x * 0.70710678118654752f)) + x * 0.39894228040143268f * expf(-0.5f * x * x);
    case ACT_GELU_TANH: {
        const float k = 0.7978845608028654f;
        float th = tanhf(k * (x + 0.044715f * x * x * x));
        return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * k * (1.0f + 3.0f * 0.044715f * x * x);
    }
    case ACT_QUICK_GELU: {
        float s = 1.0f / (1.0f + vec_expf(-1.702f * x));
        return s * (1.0f + 1.702f * x * (1.0f - s));
    }
    }
    return 1.0f;
}

// ----------------------------------------------------------------------------
// kernels

void activation_forward(float *out, const float *inp, int64_t N, act_kind act) {
#pragma omp parallel for schedule(static) if (N > 16384)
    for (int64_t i = 0; i < N; i++) out[i] = act_one(inp[i], act);
}

void gated_activation_forward(float *out, const float *gate, const float *up, int64_t N, act_kind act) {
    if (act == ACT_SILU) {
#pragma omp parallel for simd schedule(static) if (N > 16384)
        for (int64_t i = 0; i < N; i++) {
            float g = gate[i];
            out[i] = g / (1.0f + vec_expf(-g)) * up[i];
        }
        return;
    }
#pragma omp parallel for schedule(static) if (N > 16384)
    for (int64_t i = 0; i < N; i++) out[i] = act_one(gate[i], act) * up[i];
}

void activation_backward(float *dinp, const float *dout, const float *inp, int64_t N, act_kind act) {
#pragma omp parallel for schedule(static) if (N > 16384)
    for (int64_t i = 0; i < N; i++) dinp[i] += act_grad_one(inp[i], act) * dout[i];
}

void gated_activation_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                               int64_t N, act_kind act) {
    if (act == ACT_SILU) {
#pragma omp parallel for simd schedule(static) if (N > 16384)
        for (int64_t i = 0; i < N; i++) {
            float g = gate[i], s = 1.0f / (1.0f + vec_expf(-g)), d = dout[i];
            dgate[i] += s * (1.0f + g * (1.0f - s)) * up[i] * d;
            dup[i] += g * s * d;
        }
        return;
    }
#pragma omp parallel for schedule(static) if (N > 16384)
    for (int64_t i = 0; i < N; i++) {
        float d = dout[i];
        dgate[i] += act_grad_one(gate[i], act) * up[i] * d;
        dup[i] += act_one(gate[i], act) * d;
    }
}
