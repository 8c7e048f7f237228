// Rotary position embeddings in the rotate-half form used by Qwen2/2.5-VL: the tables (cos, sin of the
// angles, one per half-dim) are built once per forward from explicit positions, then applied to the query and
// key heads in place; the backward rotates the gradient back by the same angles. Frequencies are computed as
// transformers does (fp32 exponent, fp32 angle product).
#include "kernels/cpu/kernels.h"

#include <math.h>

// ----------------------------------------------------------------------------
// tables

// theta^(-2i/dim) rounded as PyTorch computes 1.0 / (theta ** (arange(0, dim, 2).float() / dim)) in fp32.
static float inv_freq(float theta, int i, int dim) {
    float e = (float)(2 * i) / (float)dim;
    float p = (float)pow((double)theta, (double)e);
    return 1.0f / p;
}

void mrope_cos_sin_forward(float *cos, float *sin, const int64_t *pos, int64_t ld, int T, int D, float theta,
                           const int section[3]) {
    int half = D / 2;
    float inv[half > 0 ? half : 1];
    int axis[half > 0 ? half : 1];
    for (int i = 0; i < half; i++) {
        inv[i] = inv_freq(theta, i, D);
        axis[i] = i < section[0] ? 0 : i < section[0] + section[1] ? 1 : 2;
    }
#pragma omp parallel for schedule(static) if ((int64_t)T * half > 16384)
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < half; i++) {
            float a = (float)pos[axis[i] * ld + t] * inv[i];
            cos[(size_t)t * half + i] = cosf(a);
            sin[(size_t)t * half + i] = sinf(a);
        }
    }
}

void vision_rope_cos_sin_forward(float *cos, float *sin, const int32_t *hpos, const int32_t *wpos, int T, int D) {
    int half = D / 2, quarter = D / 4;
    float inv[quarter > 0 ? quarter : 1];
    for (int j = 0; j < quarter; j++) inv[j] = inv_freq(10000.0f, j, half);
#pragma omp parallel for schedule(static) if ((int64_t)T * half > 16384)
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < half; i++) {
            float a = i < quarter ? (float)hpos[t] * inv[i] : (float)wpos[t] * inv[i - quarter];
            cos[(size_t)t * half + i] = cosf(a);
            sin[(size_t)t * half + i] = sinf(a);
        }
    }
}

// ----------------------------------------------------------------------------
// rotation

void rope_forward(float *x, const float *cos, const float *sin, int T, int NH, int D, int64_t ld) {
    int half = D / 2;
#pragma omp parallel for schedule(static) if ((int64_t)T * NH * D > 32768)
    for (int t = 0; t < T; t++) {
        const float *c = cos + (size_t)t * half, *s = sin + (size_t)t * half;
        for (int h = 0; h < NH; h++) {
            float *v = x + t * ld + (int64_t)h * D;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * s[i];
                v[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}

// The transpose of the rotation: (da, db) = (dx_a c + dx_b s, dx_b c - dx_a s).
void rope_backward(float *dx, const float *cos, const float *sin, int T, int NH, int D, int64_t ld) {
    int half = D / 2;
#pragma omp parallel for schedule(static) if ((int64_t)T * NH * D > 32768)
    for (int t = 0; t < T; t++) {
        const float *c = cos + (size_t)t * half, *s = sin + (size_t)t * half;
        for (int h = 0; h < NH; h++) {
            float *g = dx + t * ld + (int64_t)h * D;
            for (int i = 0; i < half; i++) {
                float a = g[i], b = g[i + half];
                g[i] = a * c[i] + b * s[i];
                g[i + half] = b * c[i] - a * s[i];
            }
        }
    }
}
