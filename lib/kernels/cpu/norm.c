// RMSNorm (language model, Qwen2.5-VL vision blocks and merger) and LayerNorm (Qwen2-VL vision blocks and
// merger), forward and backward. Row statistics are accumulated in double; the saved rstd/mean serve the
// backward. The weight (and bias) gradients are column sums done per block of channels, walking the rows in
// order, so they do not depend on the thread count.
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

#define NORM_COLS 64 // channels per task of the weight-gradient sums

// dweight[i] += sum_t dout[t, i] * xhat[t, i], xhat = (x - mean) * rstd (mean NULL: 0); dbias[i] += sum_t
// dout[t, i] (dbias may be NULL).
static void norm_param_backward(float *dweight, float *dbias, const float *dout, const float *inp,
                                const float *mean, const float *rstd, int T, int C) {
#pragma omp parallel for schedule(static) if ((int64_t)T * C > 32768)
    for (int i0 = 0; i0 < C; i0 += NORM_COLS) {
        int n = C - i0 < NORM_COLS ? C - i0 : NORM_COLS;
        float dw[NORM_COLS] = {0}, db[NORM_COLS] = {0};
        for (int t = 0; t < T; t++) {
            const float *x = inp + (size_t)t * C + i0, *d = dout + (size_t)t * C + i0;
            float m = mean ? mean[t] : 0.0f, r = rstd[t];
#pragma omp simd
            for (int i = 0; i < n; i++) {
                dw[i] += d[i] * ((x[i] - m) * r);
                db[i] += d[i];
            }
        }
        for (int i = 0; i < n; i++) {
            if (dweight) dweight[i0 + i] += dw[i];
            if (dbias) dbias[i0 + i] += db[i];
        }
    }
}

// y = w * x * r with r = (mean(x^2) + eps)^(-1/2):
// dx = r * (w * dy) - x * r^3 / C * sum(w * dy * x)
void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                      const float *rstd, int T, int C) {
#pragma omp parallel for schedule(static) if ((int64_t)T * C > 32768)
    for (int t = 0; t < T; t++) {
        const float *x = inp + (size_t)t * C, *d = dout + (size_t)t * C;
        float *dx = dinp + (size_t)t * C;
        double s = 0;
        for (int i = 0; i < C; i++) s += (double)d[i] * weight[i] * x[i];
        float r = rstd[t], k = (float)(s * r * r * r / C);
#pragma omp simd
        for (int i = 0; i < C; i++) dx[i] += r * (weight[i] * d[i]) - k * x[i];
    }
    if (dweight) norm_param_backward(dweight, NULL, dout, inp, NULL, rstd, T, C);
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

// y = xhat * w + b with xhat = (x - mean) * r; g = w * dy:
// dx = r * (g - mean(g) - xhat * mean(g * xhat))
void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                        const float *weight, const float *mean, const float *rstd, int T, int C) {
#pragma omp parallel for schedule(static) if ((int64_t)T * C > 32768)
    for (int t = 0; t < T; t++) {
        const float *x = inp + (size_t)t * C, *d = dout + (size_t)t * C;
        float *dx = dinp + (size_t)t * C;
        float m = mean[t], r = rstd[t];
        double sg = 0, sgx = 0;
        for (int i = 0; i < C; i++) {
            double g = (double)weight[i] * d[i];
            sg += g;
            sgx += g * (((double)x[i] - m) * r);
        }
        float mg = (float)(sg / C), mgx = (float)(sgx / C);
#pragma omp simd
        for (int i = 0; i < C; i++) dx[i] += r * (weight[i] * d[i] - mg - (x[i] - m) * r * mgx);
    }
    if (dweight || dbias) norm_param_backward(dweight, dbias, dout, inp, mean, rstd, T, C);
}
