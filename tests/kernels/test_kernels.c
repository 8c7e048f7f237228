// CPU kernels against naive double-precision references on odd shapes (sizes that are not multiples of
// 8/16/32, single rows, single-token segments, strided rows, GQA, cached prefixes, tiny scratch buffers,
// vocabulary chunks that do not divide the vocabulary).
#include "core/rng.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/vec_math.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static maye_rng rng;

static float *randn(int64_t n, float scale) {
    float *x = xmalloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) x[i] = scale * maye_rng_normal(&rng);
    return x;
}

static float *to_f32(const double *x, int64_t n) {
    float *y = xmalloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) y[i] = (float)x[i];
    return y;
}

// ----------------------------------------------------------------------------
// matmul, norms, activations

static void test_matmul(void) {
    int shapes[][3] = {{1, 1, 1}, {1, 7, 3}, {5, 13, 17}, {33, 65, 31}, {2, 1, 9}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int T = shapes[s][0], C = shapes[s][1], OC = shapes[s][2];
        float *x = randn((int64_t)T * C, 1), *w = randn((int64_t)OC * C, 1), *b = randn(OC, 1);
        float *out = xmalloc(sizeof(float) * (size_t)T * OC);
        double *ref = xmalloc(sizeof(double) * (size_t)T * OC);
        for (int bias = 0; bias < 2; bias++) {
            matmul_forward(out, x, w, bias ? b : NULL, T, C, OC);
            for (int t = 0; t < T; t++)
                for (int o = 0; o < OC; o++) {
                    double acc = bias ? b[o] : 0;
                    for (int c = 0; c < C; c++) acc += (double)x[t * C + c] * w[o * C + c];
                    ref[t * OC + o] = acc;
                }
            float *r = to_f32(ref, (int64_t)T * OC);
            char what[64];
            snprintf(what, sizeof what, "matmul %dx%dx%d bias=%d", T, C, OC, bias);
            test_close_f32(what, out, r, (int64_t)T * OC, 1e-5, 1e-5);
            free(r);
        }
        free(x), free(w), free(b), free(out), free(ref);
    }
}

static void test_norms(void) {
    int shapes[][2] = {{1, 1}, {1, 13}, {7, 67}, {3, 129}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int T = shapes[s][0], C = shapes[s][1];
        float *x = randn((int64_t)T * C, 2), *w = randn(C, 1), *b = randn(C, 1);
        float *out = xmalloc(sizeof(float) * (size_t)T * C), *rstd = xmalloc(sizeof(float) * (size_t)T);
        float *mean = xmalloc(sizeof(float) * (size_t)T);
        double *ref = xmalloc(sizeof(double) * (size_t)T * C);
        float eps = 1e-6f;
        rmsnorm_forward(out, rstd, x, w, T, C, eps);
        for (int t = 0; t < T; t++) {
            double ss = 0;
            for (int c = 0; c < C; c++) ss += (double)x[t * C + c] * x[t * C + c];
            double r = 1 / sqrt(ss / C + eps);
            for (int c = 0; c < C; c++) ref[t * C + c] = x[t * C + c] * r * w[c];
        }
        float *r = to_f32(ref, (int64_t)T * C);
        test_close_f32("rmsnorm", out, r, (int64_t)T * C, 1e-5, 1e-5);
        free(r);
        layernorm_forward(out, mean, rstd, x, w, b, T, C, eps);
        for (int t = 0; t < T; t++) {
            double mu = 0, var = 0;
            for (int c = 0; c < C; c++) mu += x[t * C + c];
            mu /= C;
            for (int c = 0; c < C; c++) var += (x[t * C + c] - mu) * (x[t * C + c] - mu);
            double rs = 1 / sqrt(var / C + eps);
            for (int c = 0; c < C; c++) ref[t * C + c] = (x[t * C + c] - mu) * rs * w[c] + b[c];
        }
        r = to_f32(ref, (int64_t)T * C);
        test_close_f32("layernorm", out, r, (int64_t)T * C, 1e-4, 1e-5);
        free(r), free(x), free(w), free(b), free(out), free(rstd), free(mean), free(ref);
    }
}

static double act_ref(double x, act_kind a) {
    switch (a) {
    case ACT_SILU: return x / (1 + exp(-x));
    case ACT_GELU: return 0.5 * x * (1 + erf(x / sqrt(2.0)));
    case ACT_GELU_TANH: return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    case ACT_QUICK_GELU: return x / (1 + exp(-1.702 * x));
    }
    return 0;
}

static void test_activations(void) {
    int64_t N = 1037;
    float *x = randn(N, 3), *u = randn(N, 1), *out = xmalloc(sizeof(float) * (size_t)N);
    double *ref = xmalloc(sizeof(double) * (size_t)N);
    const char *names[] = {"silu", "gelu", "gelu_tanh", "quick_gelu"};
    for (int a = ACT_SILU; a <= ACT_QUICK_GELU; a++) {
        activation_forward(out, x, N, (act_kind)a);
        for (int64_t i = 0; i < N; i++) ref[i] = act_ref(x[i], (act_kind)a);
        float *r = to_f32(ref, N);
        test_close_f32(names[a], out, r, N, 1e-6, 1e-5);
        gated_activation_forward(out, x, u, N, (act_kind)a);
        for (int64_t i = 0; i < N; i++) ref[i] = act_ref(x[i], (act_kind)a) * u[i];
        free(r);
        r = to_f32(ref, N);
        test_close_f32(names[a], out, r, N, 1e-6, 1e-5);
        free(r);
    }
    free(x), free(u), free(out), free(ref);
}

// ----------------------------------------------------------------------------
// rotary

static void test_rope(void) {
    int T = 5, D = 14, NH = 3, ld = NH * D + 3; // strided rows
    int64_t pos[3 * 7];
    for (int i = 0; i < 3 * 7; i++) pos[i] = (i * 37) % 101;
    int section[3] = {1, 4, 2};
    float tc[5 * 7], ts[5 * 7];
    mrope_cos_sin_forward(tc, ts, pos, 7, T, D, 10000.0f, section);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < D / 2; i++) {
            int axis = i < 1 ? 0 : i < 5 ? 1 : 2;
            double a = pos[axis * 7 + t] * pow(10000.0, -2.0 * i / D);
            EXPECT(fabs(tc[t * 7 + i] - cos(a)) < 2e-5 && fabs(ts[t * 7 + i] - sin(a)) < 2e-5,
                   "mrope table row %d half-dim %d: cos %g sin %g want %g %g", t, i, tc[t * 7 + i], ts[t * 7 + i],
                   cos(a), sin(a));
        }
    float *x = randn((int64_t)T * ld, 1), *y = xmalloc(sizeof(float) * (size_t)T * ld);
    memcpy(y, x, sizeof(float) * (size_t)T * ld);
    rope_forward(y, tc, ts, T, NH, D, ld);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < D / 2; i++) {
                double a = x[t * ld + h * D + i], b = x[t * ld + h * D + i + D / 2], c = tc[t * 7 + i],
                       s = ts[t * 7 + i];
                EXPECT(fabs(y[t * ld + h * D + i] - (a * c - b * s)) < 1e-5 &&
                           fabs(y[t * ld + h * D + i + D / 2] - (b * c + a * s)) < 1e-5,
                       "rope row %d head %d dim %d", t, h, i);
            }
    for (int t = 0; t < T; t++)
        for (int j = NH * D; j < ld; j++) EXPECT(y[t * ld + j] == x[t * ld + j], "rope touched padding %d,%d", t, j);
    int32_t hp[3] = {0, 5, 13}, wp[3] = {7, 0, 2};
    int VD = 12;
    float vc[3 * 6], vs[3 * 6];
    vision_rope_cos_sin_forward(vc, vs, hp, wp, 3, VD);
    for (int t = 0; t < 3; t++)
        for (int i = 0; i < VD / 2; i++) {
            int j = i < VD / 4 ? i : i - VD / 4;
            double a = (i < VD / 4 ? hp[t] : wp[t]) * pow(10000.0, -2.0 * j / (VD / 2));
            EXPECT(fabs(vc[t * 6 + i] - cos(a)) < 2e-5 && fabs(vs[t * 6 + i] - sin(a)) < 2e-5,
                   "vision rope table row %d half-dim %d", t, i);
        }
    free(x), free(y);
}

// ----------------------------------------------------------------------------
// attention

// Naive attention of one segment: queries q rows [q0, q0+nq) (stride ldq), keys/values (nk rows, stride ldkv).
static void attention_ref(double *out, const float *q, int64_t ldq, const float *k, const float *v, int64_t ldkv,
                          int nq, int nk, int H, int KV, int D, int causal) {
    double *s = xmalloc(sizeof(double) * (size_t)(nk ? nk : 1));
    for (int i = 0; i < nq; i++)
        for (int h = 0; h < H; h++) {
            int kh = h / (H / KV), lim = causal ? nk - nq + i + 1 : nk;
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < lim; j++) {
                double d = 0;
                for (int x = 0; x < D; x++) d += (double)q[i * ldq + h * D + x] * k[j * ldkv + kh * D + x];
                s[j] = d / sqrt((double)D);
                mx = fmax(mx, s[j]);
            }
            for (int j = 0; j < lim; j++) sum += (s[j] = exp(s[j] - mx));
            for (int x = 0; x < D; x++) {
                double acc = 0;
                for (int j = 0; j < lim; j++) acc += s[j] / sum * v[j * ldkv + kh * D + x];
                out[((int64_t)i * H + h) * D + x] = acc;
            }
        }
    free(s);
}

static void test_attention(void) {
    struct {
        int H, KV, D, causal, with_past;
        size_t scratch; // 0 = attention_scratch_floats; else at least the longest key row (one query row)
    } cases[] = {
        {6, 2, 5, 1, 0, 0}, {3, 3, 8, 0, 0, 0}, {4, 1, 7, 1, 1, 0}, {5, 5, 3, 1, 1, 23}, {2, 1, 9, 0, 0, 40},
    };
    int lens[] = {1, 7, 0, 19, 2};
    int B = 5;
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        int H = cases[ci].H, KV = cases[ci].KV, D = cases[ci].D, causal = cases[ci].causal;
        int cu[6] = {0}, nk[5], past[5];
        for (int b = 0; b < B; b++) {
            cu[b + 1] = cu[b] + lens[b];
            past[b] = cases[ci].with_past ? (b * 3) % 5 : 0;
            nk[b] = past[b] + lens[b];
        }
        int T = cu[B];
        int64_t ldq = (int64_t)H * D + 2, ldkv = (int64_t)KV * D + 1, ldo = (int64_t)H * D + 3;
        float *q = randn(T * ldq, 1);
        float *kbuf[5], *vbuf[5];
        for (int b = 0; b < B; b++) kbuf[b] = randn(nk[b] * ldkv + 1, 1), vbuf[b] = randn(nk[b] * ldkv + 1, 1);
        float *out = xmalloc(sizeof(float) * (size_t)T * ldo), *lse = xmalloc(sizeof(float) * (size_t)T * H);
        int max_nk = 1;
        for (int b = 0; b < B; b++) max_nk = nk[b] > max_nk ? nk[b] : max_nk;
        size_t sn = cases[ci].scratch ? cases[ci].scratch : attention_scratch_floats(max_nk);
        float *scratch = xmalloc(sizeof(float) * sn);
        attention_forward(out, ldo, lse, q, ldq, (const float *const *)kbuf, (const float *const *)vbuf, ldkv, cu, nk,
                          B, H, KV, D, causal, scratch, sn);
        for (int b = 0; b < B; b++) {
            if (!lens[b]) continue;
            double *ref = xmalloc(sizeof(double) * (size_t)lens[b] * H * D);
            attention_ref(ref, q + cu[b] * ldq, ldq, kbuf[b], vbuf[b], ldkv, lens[b], nk[b], H, KV, D, causal);
            float *got = xmalloc(sizeof(float) * (size_t)lens[b] * H * D);
            for (int i = 0; i < lens[b]; i++)
                memcpy(got + (size_t)i * H * D, out + (cu[b] + i) * ldo, sizeof(float) * (size_t)H * D);
            float *r = to_f32(ref, (int64_t)lens[b] * H * D);
            char what[96];
            snprintf(what, sizeof what, "attention case %zu segment %d (H %d KV %d D %d causal %d)", ci, b, H, KV, D,
                     causal);
            test_close_f32(what, got, r, (int64_t)lens[b] * H * D, 1e-5, 1e-4);
            free(r), free(got), free(ref);
        }
        for (int b = 0; b < B; b++) free(kbuf[b]), free(vbuf[b]);
        free(q), free(out), free(lse), free(scratch);
    }
}

// Causal attention with fewer keys than queries (the first nq - nk queries see no key): those rows get output 0,
// log-sum-exp -inf and no gradient; the others match the reference. Once wrote before its score rows.
static void test_attention_fewer_keys(void) {
    int H = 2, KV = 1, D = 5, nq = 9, nkv = 4, cu[2] = {0, nq}, nk[1] = {nkv};
    int64_t ld = (int64_t)H * D, ldkv = (int64_t)KV * D;
    float *q = randn(nq * ld, 1), *k = randn(nkv * ldkv, 1), *v = randn(nkv * ldkv, 1), *dout = randn(nq * ld, 1);
    float *out = xmalloc(sizeof(float) * (size_t)nq * ld), *lse = xmalloc(sizeof(float) * (size_t)nq * H);
    size_t sn = attention_scratch_floats(nkv);
    float *scratch = xmalloc(sizeof(float) * sn);
    attention_forward(out, ld, lse, q, ld, (const float *const *)&k, (const float *const *)&v, ldkv, cu, nk, 1, H, KV,
                      D, 1, scratch, sn);
    double *ref = xmalloc(sizeof(double) * (size_t)nq * ld);
    attention_ref(ref, q, ld, k, v, ldkv, nq, nkv, H, KV, D, 1);
    float *r = to_f32(ref, nq * ld);
    test_close_f32("attention with fewer keys than queries", out, r, nq * ld, 1e-5, 1e-4);
    for (int i = 0; i < nq; i++)
        for (int h = 0; h < H; h++) {
            float l = lse[i * H + h];
            if (i < nq - nkv) EXPECT(isinf(l) && l < 0, "row %d head %d sees no key: lse %g, want -inf", i, h, l);
            else EXPECT(isfinite(l), "row %d head %d: lse %g", i, h, l);
        }
    float *dq = xcalloc((size_t)nq * ld, sizeof(float)), *dk = xcalloc((size_t)nkv * ldkv, sizeof(float));
    float *dv = xcalloc((size_t)nkv * ldkv, sizeof(float));
    size_t bn = attention_backward_scratch_floats(nkv, nkv, H, D);
    float *bscr = xmalloc(sizeof(float) * bn);
    attention_backward(dq, &dk, &dv, dout, ld, q, ld, (const float *const *)&k, (const float *const *)&v, ldkv, lse, cu,
                       nk, 1, H, KV, D, 1, bscr, bn);
    for (int i = 0; i < nq * ld; i++) {
        EXPECT(isfinite(dq[i]), "dq[%d] = %g", i, dq[i]);
        if (i < (nq - nkv) * ld) EXPECT(dq[i] == 0.0f, "dq[%d] = %g of a row that sees no key", i, dq[i]);
    }
    for (int i = 0; i < nkv * ldkv; i++) EXPECT(isfinite(dk[i]) && isfinite(dv[i]), "dk/dv[%d] = %g %g", i, dk[i], dv[i]);
    free(q), free(k), free(v), free(dout), free(out), free(lse), free(scratch), free(ref), free(r), free(dq), free(dk),
        free(dv), free(bscr);
}

// ----------------------------------------------------------------------------
// log-probs

static void test_logprobs(void) {
    struct {
        int N, C, V, rows, vchunk;
        float temp;
    } cases[] = {
        {1, 1, 1, 1, 1, 1.0f},    {9, 13, 17, 4, 7, 1.0f},   {9, 13, 1000, 9, 333, 0.7f},
        {5, 33, 257, 2, 256, 1.3f}, {3, 8, 100, 3, 100, 0.05f},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        int N = cases[ci].N, C = cases[ci].C, V = cases[ci].V;
        float temp = cases[ci].temp;
        float *h = randn((int64_t)N * C, 1), *w = randn((int64_t)V * C, 1);
        int64_t *tgt = xmalloc(sizeof(int64_t) * (size_t)N);
        for (int n = 0; n < N; n++) tgt[n] = (int64_t)maye_rng_below(&rng, (uint64_t)V);
        float *lp = xmalloc(sizeof(float) * (size_t)N), *ent = xmalloc(sizeof(float) * (size_t)N);
        float *scratch = xmalloc(sizeof(float) * logprobs_scratch_floats(cases[ci].rows, cases[ci].vchunk));
        logprobs_forward(lp, ent, h, w, tgt, N, C, V, temp, cases[ci].rows, cases[ci].vchunk, scratch);
        double *rl = xmalloc(sizeof(double) * (size_t)N), *re = xmalloc(sizeof(double) * (size_t)N);
        double *z = xmalloc(sizeof(double) * (size_t)V);
        for (int n = 0; n < N; n++) {
            double mx = -INFINITY, sum = 0, e = 0;
            for (int v = 0; v < V; v++) {
                double d = 0;
                for (int c = 0; c < C; c++) d += (double)h[n * C + c] * w[v * C + c];
                z[v] = d / temp;
                mx = fmax(mx, z[v]);
            }
            for (int v = 0; v < V; v++) sum += exp(z[v] - mx);
            double lse = mx + log(sum);
            for (int v = 0; v < V; v++) e -= exp(z[v] - lse) * (z[v] - lse);
            rl[n] = z[tgt[n]] - lse;
            re[n] = e;
        }
        float *a = to_f32(rl, N), *b = to_f32(re, N);
        char what[96];
        snprintf(what, sizeof what, "logprobs case %zu (N %d V %d rows %d chunk %d T %g)", ci, N, V, cases[ci].rows,
                 cases[ci].vchunk, temp);
        test_close_f32(what, lp, a, N, 1e-4, 1e-5);
        snprintf(what, sizeof what, "entropy case %zu", ci);
        test_close_f32(what, ent, b, N, 1e-4, 1e-5);
        free(a), free(b), free(rl), free(re), free(z), free(h), free(w), free(tgt), free(lp), free(ent), free(scratch);
    }
}

// ----------------------------------------------------------------------------
// vectorisable exp

static void test_vec_expf(void) {
    double worst = 0, at = 0;
    for (int i = 0; i <= 200000; i++) {
        float x = -87.0f + 175.0f * (float)i / 200000.0f;
        double want = exp((double)x), rel = fabs(vec_expf(x) - want) / want;
        if (rel > worst) worst = rel, at = x;
    }
    EXPECT(worst < 3e-7, "vec_expf: relative error %.3g at x = %.9g", worst, at);
    EXPECT(vec_expf(-1000.0f) >= 0 && vec_expf(-1000.0f) < 1e-37f, "vec_expf(-1000) = %g", vec_expf(-1000.0f));
    EXPECT(isfinite(vec_expf(1000.0f)), "vec_expf(1000) = %g", vec_expf(1000.0f));
    EXPECT(vec_expf(0.0f) == 1.0f, "vec_expf(0) = %.9g", vec_expf(0.0f));
}

// ----------------------------------------------------------------------------
// embedding, residual

static void test_small(void) {
    float table[4 * 3];
    for (int i = 0; i < 12; i++) table[i] = (float)i;
    int64_t ids[3] = {3, 0, 3};
    float out[9];
    embedding_forward(out, ids, table, 3, 3);
    float want[9] = {9, 10, 11, 0, 1, 2, 9, 10, 11};
    test_close_f32("embedding", out, want, 9, 0, 0);
    float a[5] = {1, 2, 3, 4, 5}, b[5] = {5, 4, 3, 2, 1}, sum[5] = {6, 6, 6, 6, 6};
    residual_forward(a, a, b, 5);
    test_close_f32("residual", a, sum, 5, 0, 0);
}

int main(void) {
    maye_rng_init(&rng, 1234, 1);
    for (int threads = 1; threads <= 2; threads++) {
        cpu_set_threads(threads);
        test_matmul();
        test_norms();
        test_activations();
        test_rope();
        test_attention();
        test_attention_fewer_keys();
        test_logprobs();
        test_small();
    }
    test_vec_expf();
    return TEST_RESULT();
}
