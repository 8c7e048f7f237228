// RMSNorm (language model, Qwen2.5-VL vision blocks and merger) and LayerNorm (Qwen2-VL vision blocks and
// merger). Row statistics are accumulated in double; the saved rstd/mean serve the backward.
#include "kernels/cpu/kernels.h"

#include <math.h>

// ----------------------------------------------------------------------------
// RMSNorm

void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int T, int C, float eps) {
#pragma omp parallel for schedule(static) if ((int64_t)T * C > 32768)
    for (int t = 0; t < T; t++) {
        const float *x = inp + (size_t)t * C;
        float *o = out + (size_t)t * C;
        double ss = 0;
        for (int i = 0; i < C; i++) ss += (double)x[i] * x[i];
        float r = (float)(1.0 / sqrt(ss / C + eps));
        for (int i = 0; i < C; i++) o[i] = weight[i] * (x[i] * r);
        if (rstd) rstd[t] = r;
    }
}

// ----------------------------------------------------------------------------
// LayerNorm

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                       const float *bias, int T, int C, float eps) {
#pragma omp parallel for schedule(static) if ((int64_t)T * C > 32768)
    for (int t = 0; t < T; t++) {
        const float *x = inp + (size_t)t * C;
        float *o = out + (size_t)t * C;
        double s = 0;
        for (int i = 0; i < C; i++) s += x[i];
        double mu = s / C, v = 0;
        for (int i = 0; i < C; i++) v += ((double)x[i] - mu) * ((double)x[i] - mu);
        float m = (float)mu, r = (float)(1.0 / sqrt(v / C + eps));
        for (int i = 0; i < C; i++) o[i] = (x[i] - m) * r * weight[i] + bias[i];
        if (mean) mean[t] = m;
        if (rstd) rstd[t] = r;
    }
}
