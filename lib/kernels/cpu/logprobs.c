// Log-probabilities and entropies of the softmax over a large vocabulary (152k for Qwen2) without ever
// materialising [tokens x vocab] logits: rows go in blocks, the vocabulary in chunks whose logits come from
// one sgemm, and each row keeps an online log-sum-exp state (running max m, sum s = sum exp(z - m),
// t = sum exp(z - m) (z - m)), so log p(y) = z_y - m - log s and entropy = log s - t / s. The temperature is
// folded into the sgemm (alpha = 1 / temperature). The backward walks the same chunks with the log-sum-exp
// known up front (from the forward's log-probs), turning each chunk of logits into its gradient in place.
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/vec_math.h"

#include <cblas.h>
#include <math.h>

// ----------------------------------------------------------------------------
// scratch

size_t logprobs_scratch_floats(int rows, int vchunk) { return (size_t)rows * (size_t)vchunk + 4 * (size_t)rows; }

// ----------------------------------------------------------------------------
// forward

void logprobs_forward(float *logprob, float *entropy, const float *hidden, const float *wte, const int64_t *targets,
                      int N, int C, int V, float temperature, int rows, int vchunk, float *scratch) {
    float *logits = scratch;                          // (rows, vchunk)
    float *m = scratch + (size_t)rows * vchunk;       // (rows) running max of z
    float *s = m + rows, *t = s + rows, *zy = t + rows; // (rows) sum, centred sum, target logit
    for (int r0 = 0; r0 < N; r0 += rows) {
        int nr = N - r0 < rows ? N - r0 : rows;
        for (int r = 0; r < nr; r++) m[r] = -INFINITY, s[r] = 0, t[r] = 0, zy[r] = 0;
        for (int v0 = 0; v0 < V; v0 += vchunk) {
            int nv = V - v0 < vchunk ? V - v0 : vchunk;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, nv, C, 1.0f / temperature,
                        hidden + (size_t)r0 * C, C, wte + (size_t)v0 * C, C, 0.0f, logits, nv);
#pragma omp parallel for schedule(static)
            for (int r = 0; r < nr; r++) {
                const float *z = logits + (size_t)r * nv;
                float cm = -INFINITY;
#pragma omp simd reduction(max : cm)
                for (int j = 0; j < nv; j++) cm = z[j] > cm ? z[j] : cm;
                float mr = m[r];
                if (cm > mr) { // rescale the state to the new max
                    if (mr > -INFINITY) {
                        float f = expf(mr - cm);
                        t[r] = f * (t[r] + (mr - cm) * s[r]);
                        s[r] = f * s[r];
                    }
                    m[r] = mr = cm;
                }
                float cs = 0, ct = 0;
#pragma omp simd reduction(+ : cs, ct)
                for (int j = 0; j < nv; j++) {
                    float d = z[j] - mr, e = vec_expf(d);
                    cs += e;
                    ct += e * d;
                }
                s[r] += cs;
                t[r] += ct;
                int64_t y = targets[r0 + r];
                if (y >= v0 && y < v0 + nv) zy[r] = z[y - v0];
            }
        }
        for (int r = 0; r < nr; r++) {
            float ls = logf(s[r]);
            logprob[r0 + r] = zy[r] - m[r] - ls;
            if (entropy) entropy[r0 + r] = ls - t[r] / s[r];
        }
    }
}

// ----------------------------------------------------------------------------
// backward

size_t logprobs_backward_scratch_floats(int rows, int vchunk) { return (size_t)rows * (size_t)vchunk + (size_t)rows; }

// dL/dz_j = g ([j = y] - exp(z_j - lse)) with lse = z_y - logprob; dL/dh = dz W / T, dL/dW = dz^T h / T.
void logprobs_backward(float *dhidden, float *dwte, const float *dlogprob, const float *logprob, const float *hidden,
                       const float *wte, const int64_t *targets, int N, int C, int V, float temperature, int rows,
                       int vchunk, float *scratch) {
    float *dz = scratch;                        // (rows, vchunk) logits, then their gradients
    float *lse = scratch + (size_t)rows * vchunk; // (rows)
    float inv_t = 1.0f / temperature;
    for (int r0 = 0; r0 < N; r0 += rows) {
        int nr = N - r0 < rows ? N - r0 : rows;
        for (int r = 0; r < nr; r++) {
            const float *h = hidden + (size_t)(r0 + r) * C, *w = wte + (size_t)targets[r0 + r] * C;
            double zy = 0;
            for (int c = 0; c < C; c++) zy += (double)h[c] * w[c];
            lse[r] = (float)(zy / temperature - logprob[r0 + r]);
        }
        for (int v0 = 0; v0 < V; v0 += vchunk) {
            int nv = V - v0 < vchunk ? V - v0 : vchunk;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, nv, C, inv_t, hidden + (size_t)r0 * C, C,
                        wte + (size_t)v0 * C, C, 0.0f, dz, nv);
#pragma omp parallel for schedule(static)
            for (int r = 0; r < nr; r++) {
                float *z = dz + (size_t)r * nv, l = lse[r], g = dlogprob[r0 + r];
#pragma omp simd
                for (int j = 0; j < nv; j++) z[j] = -g * vec_expf(z[j] - l);
                int64_t y = targets[r0 + r];
                if (y >= v0 && y < v0 + nv) z[y - v0] += g;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, C, nv, inv_t, dz, nv, wte + (size_t)v0 * C, C,
                        1.0f, dhidden + (size_t)r0 * C, C);
            if (dwte)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nv, C, nr, inv_t, dz, nv, hidden + (size_t)r0 * C,
                            C, 1.0f, dwte + (size_t)v0 * C, C);
        }
    }
}
