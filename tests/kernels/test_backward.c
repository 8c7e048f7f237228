// CPU backward kernels against central finite differences of their forward twins on odd shapes (sizes that
// are not multiples of 8, single rows, single-token segments, strided rows, GQA ratios, cached prefixes,
// scratch buffers that force one query row per block, vocabulary chunks that do not divide the vocabulary).
// Each check takes a random upstream gradient G, the loss L = sum(G * forward(x)) summed in double, and
// compares every input gradient the backward accumulates with a fourth-order central difference of L
// (tolerance relative to the gradient's largest magnitude). Gradient buffers start with random values, so
// the checks also see that the backward adds (+=) instead of overwriting.
#include "core/rng.h"
#include "kernels/cpu/kernels.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FD_H 1e-2   // perturbation (inputs are O(1))
#define FD_TOL 2e-3 // relative to max |gradient|

static maye_rng rng;

static float *randn(int64_t n, float scale) {
    float *x = xmalloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) x[i] = scale * maye_rng_normal(&rng);
    return x;
}

static double dot(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

// ----------------------------------------------------------------------------
// finite differences

typedef double (*loss_fn)(void *ctx);

// Compares grad (n) with d loss / d x (x is perturbed in place and restored). `prior` holds what the gradient
// buffer held before the backward ran (subtracted first), or NULL.
static void check_grad(const char *what, loss_fn loss, void *ctx, float *x, const float *grad, const float *prior,
                       int64_t n) {
    float *fd = xmalloc(sizeof(float) * (size_t)(n ? n : 1)), *got = xmalloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) {
        float x0 = x[i];
        double f[4];
        const double steps[4] = {FD_H, -FD_H, 2 * FD_H, -2 * FD_H};
        for (int s = 0; s < 4; s++) {
            x[i] = (float)(x0 + steps[s]);
            f[s] = loss(ctx);
        }
        x[i] = x0;
        fd[i] = (float)((8 * (f[0] - f[1]) - (f[2] - f[3])) / (12 * FD_H));
        got[i] = prior ? grad[i] - prior[i] : grad[i];
    }
    test_close_rel_max(what, got, fd, n, FD_TOL);
    double md = 0, mg = 0;
    for (int64_t i = 0; i < n; i++) md = fmax(md, fabs((double)got[i] - fd[i])), mg = fmax(mg, fabs((double)fd[i]));
    printf("%-52s max |diff| %.2e of max |grad| %.2e\n", what, md, mg);
    free(fd), free(got);
}

// ----------------------------------------------------------------------------
// matmul, embedding

typedef struct {
    int T, C, OC;
    float *x, *w, *b, *G, *out;
} mm_ctx;

static double mm_loss(void *p) {
    mm_ctx *c = p;
    matmul_forward(c->out, c->x, c->w, c->b, c->T, c->C, c->OC);
    return dot(c->G, c->out, (int64_t)c->T * c->OC);
}

static void test_matmul(void) {
    int shapes[][3] = {{1, 1, 1}, {5, 13, 17}, {3, 1, 9}, {9, 11, 1}, {2, 33, 5}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        mm_ctx c = {shapes[s][0], shapes[s][1], shapes[s][2]};
        int64_t nx = (int64_t)c.T * c.C, nw = (int64_t)c.OC * c.C, no = (int64_t)c.T * c.OC;
        c.x = randn(nx, 1), c.w = randn(nw, 1), c.b = randn(c.OC, 1), c.G = randn(no, 1);
        c.out = xmalloc(sizeof(float) * (size_t)no);
        float *px = randn(nx, 1), *pw = randn(nw, 1), *pb = randn(c.OC, 1);
        float *dx = xmalloc(sizeof(float) * (size_t)nx), *dw = xmalloc(sizeof(float) * (size_t)nw);
        float *db = xmalloc(sizeof(float) * (size_t)c.OC);
        memcpy(dx, px, sizeof(float) * (size_t)nx), memcpy(dw, pw, sizeof(float) * (size_t)nw);
        memcpy(db, pb, sizeof(float) * (size_t)c.OC);
        matmul_backward(dx, dw, db, c.G, c.x, c.w, c.T, c.C, c.OC);
        char what[96];
        snprintf(what, sizeof what, "matmul %dx%dx%d dinp", c.T, c.C, c.OC);
        check_grad(what, mm_loss, &c, c.x, dx, px, nx);
        snprintf(what, sizeof what, "matmul %dx%dx%d dweight", c.T, c.C, c.OC);
        check_grad(what, mm_loss, &c, c.w, dw, pw, nw);
        snprintf(what, sizeof what, "matmul %dx%dx%d dbias", c.T, c.C, c.OC);
        check_grad(what, mm_loss, &c, c.b, db, pb, c.OC);
        // NULL gradients are skipped; the others come out the same
        float *dx2 = xmalloc(sizeof(float) * (size_t)nx);
        memcpy(dx2, px, sizeof(float) * (size_t)nx);
        matmul_backward(dx2, NULL, NULL, c.G, c.x, c.w, c.T, c.C, c.OC);
        EXPECT(!memcmp(dx, dx2, sizeof(float) * (size_t)nx), "matmul %dx%dx%d: dinp alone differs", c.T, c.C, c.OC);
        free(dx2);
        free(c.x), free(c.w), free(c.b), free(c.G), free(c.out), free(px), free(pw), free(pb), free(dx), free(dw),
            free(db);
    }
}

static void test_embedding(void) {
    int T = 9, C = 7, V = 5;
    int64_t ids[9] = {3, 0, 3, -1, 4, 3, -1, 0, 1};
    float *table = randn((int64_t)V * C, 1), *G = randn((int64_t)T * C, 1), *prior = randn((int64_t)V * C, 1);
    float *d = xmalloc(sizeof(float) * (size_t)V * C), *want = xmalloc(sizeof(float) * (size_t)V * C);
    memcpy(d, prior, sizeof(float) * (size_t)V * C);
    embedding_backward(d, ids, G, T, C);
    memcpy(want, prior, sizeof(float) * (size_t)V * C);
    for (int t = 0; t < T; t++)
        for (int c = 0; ids[t] >= 0 && c < C; c++) want[ids[t] * C + c] += G[t * C + c];
    test_close_f32("embedding dtable (skipping ids < 0)", d, want, (int64_t)V * C, 1e-6, 1e-6);
    free(table), free(G), free(prior), free(d), free(want);
}

// ----------------------------------------------------------------------------
// norms

typedef struct {
    int T, C, layer;
    float *x, *w, *b, *G, *out, *mean, *rstd;
} norm_ctx;

static double norm_loss(void *p) {
    norm_ctx *c = p;
    if (c->layer) layernorm_forward(c->out, c->mean, c->rstd, c->x, c->w, c->b, c->T, c->C, 1e-5f);
    else rmsnorm_forward(c->out, c->rstd, c->x, c->w, c->T, c->C, 1e-5f);
    return dot(c->G, c->out, (int64_t)c->T * c->C);
}

static void test_norms(void) {
    int shapes[][2] = {{1, 1}, {1, 13}, {7, 67}, {3, 129}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        for (int layer = 0; layer < 2; layer++) {
            norm_ctx c = {shapes[s][0], shapes[s][1], layer};
            int64_t n = (int64_t)c.T * c.C;
            c.x = randn(n, 1.5f), c.w = randn(c.C, 1), c.b = randn(c.C, 1), c.G = randn(n, 1);
            c.out = xmalloc(sizeof(float) * (size_t)n);
            c.mean = xmalloc(sizeof(float) * (size_t)c.T), c.rstd = xmalloc(sizeof(float) * (size_t)c.T);
            norm_loss(&c);
            float *px = randn(n, 1), *pw = randn(c.C, 1), *pb = randn(c.C, 1);
            float *dx = xmalloc(sizeof(float) * (size_t)n), *dw = xmalloc(sizeof(float) * (size_t)c.C);
            float *db = xmalloc(sizeof(float) * (size_t)c.C);
            memcpy(dx, px, sizeof(float) * (size_t)n), memcpy(dw, pw, sizeof(float) * (size_t)c.C);
            memcpy(db, pb, sizeof(float) * (size_t)c.C);
            if (layer) layernorm_backward(dx, dw, db, c.G, c.x, c.w, c.mean, c.rstd, c.T, c.C);
            else rmsnorm_backward(dx, dw, c.G, c.x, c.w, c.rstd, c.T, c.C);
            const char *name = layer ? "layernorm" : "rmsnorm";
            char what[96];
            snprintf(what, sizeof what, "%s %dx%d dinp", name, c.T, c.C);
            check_grad(what, norm_loss, &c, c.x, dx, px, n);
            snprintf(what, sizeof what, "%s %dx%d dweight", name, c.T, c.C);
            check_grad(what, norm_loss, &c, c.w, dw, pw, c.C);
            if (layer) {
                snprintf(what, sizeof what, "%s %dx%d dbias", name, c.T, c.C);
                check_grad(what, norm_loss, &c, c.b, db, pb, c.C);
            }
            free(c.x), free(c.w), free(c.b), free(c.G), free(c.out), free(c.mean), free(c.rstd);
            free(px), free(pw), free(pb), free(dx), free(dw), free(db);
        }
    }
}

// ----------------------------------------------------------------------------
// activations

typedef struct {
    int64_t N;
    act_kind act;
    int gated;
    float *x, *up, *G, *out;
} act_ctx;

static double act_loss(void *p) {
    act_ctx *c = p;
    if (c->gated) gated_activation_forward(c->out, c->x, c->up, c->N, c->act);
    else activation_forward(c->out, c->x, c->N, c->act);
    return dot(c->G, c->out, c->N);
}

static void test_activations(void) {
    const char *names[] = {"silu", "gelu", "gelu_tanh", "quick_gelu"};
    act_kind kinds[] = {ACT_SILU, ACT_GELU, ACT_GELU_TANH, ACT_QUICK_GELU};
    for (int k = 0; k < 4; k++) {
        for (int gated = 0; gated < 2; gated++) {
            act_ctx c = {37, kinds[k], gated};
            c.x = randn(c.N, 2.5f), c.up = randn(c.N, 1), c.G = randn(c.N, 1);
            c.out = xmalloc(sizeof(float) * (size_t)c.N);
            float *px = randn(c.N, 1), *pu = randn(c.N, 1);
            float *dx = xmalloc(sizeof(float) * (size_t)c.N), *du = xmalloc(sizeof(float) * (size_t)c.N);
            memcpy(dx, px, sizeof(float) * (size_t)c.N), memcpy(du, pu, sizeof(float) * (size_t)c.N);
            if (gated) gated_activation_backward(dx, du, c.G, c.x, c.up, c.N, c.act);
            else activation_backward(dx, c.G, c.x, c.N, c.act);
            char what[96];
            snprintf(what, sizeof what, "%s%s dinp", gated ? "gated " : "", names[k]);
            check_grad(what, act_loss, &c, c.x, dx, px, c.N);
            if (gated) {
                snprintf(what, sizeof what, "gated %s dup", names[k]);
                check_grad(what, act_loss, &c, c.up, du, pu, c.N);
            }
            free(c.x), free(c.up), free(c.G), free(c.out), free(px), free(pu), free(dx), free(du);
        }
    }
}

// ----------------------------------------------------------------------------
// rotary

typedef struct {
    int T, NH, D;
    int64_t ld;
    float *x, *y, *cos, *sin, *G;
} rope_ctx;

static double rope_loss(void *p) {
    rope_ctx *c = p;
    memcpy(c->y, c->x, sizeof(float) * (size_t)(c->T * c->ld));
    rope_forward(c->y, c->cos, c->sin, c->T, c->NH, c->D, c->ld);
    double s = 0;
    for (int t = 0; t < c->T; t++) s += dot(c->G + t * c->ld, c->y + t * c->ld, (int64_t)c->NH * c->D);
    return s;
}

static void test_rope(void) {
    int T = 5, NH = 3, D = 10;
    int64_t ld = NH * D + 7; // strided rows (the other values of a row are left alone)
    rope_ctx c = {T, NH, D, ld};
    c.x = randn(T * ld, 1), c.G = randn(T * ld, 1);
    c.y = xmalloc(sizeof(float) * (size_t)(T * ld));
    c.cos = xmalloc(sizeof(float) * (size_t)T * D / 2), c.sin = xmalloc(sizeof(float) * (size_t)T * D / 2);
    int64_t pos[3 * 5];
    for (int i = 0; i < 15; i++) pos[i] = (int64_t)maye_rng_below(&rng, 50);
    int section[3] = {1, 2, 2};
    mrope_cos_sin_forward(c.cos, c.sin, pos, T, T, D, 10000.0f, section);
    float *g = xmalloc(sizeof(float) * (size_t)(T * ld));
    memcpy(g, c.G, sizeof(float) * (size_t)(T * ld));
    rope_backward(g, c.cos, c.sin, T, NH, D, ld);
    for (int t = 0; t < T; t++) // values outside the heads keep their gradient
        for (int64_t j = NH * D; j < ld; j++) EXPECT(g[t * ld + j] == c.G[t * ld + j], "rope_backward touched pad %d", t);
    float *gh = xmalloc(sizeof(float) * (size_t)(T * ld));
    memcpy(gh, g, sizeof(float) * (size_t)(T * ld));
    for (int t = 0; t < T; t++) // the pads do not reach the loss
        for (int64_t j = NH * D; j < ld; j++) gh[t * ld + j] = 0;
    check_grad("rope dx (strided)", rope_loss, &c, c.x, gh, NULL, T * ld);
    free(c.x), free(c.y), free(c.cos), free(c.sin), free(c.G), free(g), free(gh);
}

// ----------------------------------------------------------------------------
// attention

typedef struct {
    int B, H, KV, D, causal, T;
    int64_t ldq, ldkv, ldo;
    const int *cu_q, *nk;
    float *q, *kv, *G, *out, *lse, *scratch; // kv: every segment's key rows then value rows
    int64_t *koff;                           // (B) first row of segment b's keys in kv
    int64_t nkv;                             // rows of keys (= rows of values)
    size_t scratch_n;
} attn_ctx;

static void attn_ptrs(const attn_ctx *c, float *base, float **k, float **v) {
    for (int b = 0; b < c->B; b++) {
        k[b] = base + c->koff[b] * c->ldkv;
        v[b] = base + (c->nkv + c->koff[b]) * c->ldkv;
    }
}

static double attn_loss(void *p) {
    attn_ctx *c = p;
    float *k[8], *v[8];
    attn_ptrs(c, c->kv, k, v);
    attention_forward(c->out, c->ldo, c->lse, c->q, c->ldq, (const float *const *)k, (const float *const *)v, c->ldkv,
                      c->cu_q, c->nk, c->B, c->H, c->KV, c->D, c->causal, c->scratch, c->scratch_n);
    double s = 0;
    for (int t = 0; t < c->T; t++) s += dot(c->G + t * c->ldo, c->out + t * c->ldo, (int64_t)c->H * c->D);
    return s;
}

static void run_attention(const char *name, int B, const int *nq, const int *nk, int H, int KV, int D, int causal,
                          int tiny_scratch) {
    attn_ctx c = {B, H, KV, D, causal};
    int cu[9] = {0};
    int64_t koff[8];
    c.nkv = 0;
    for (int b = 0; b < B; b++) cu[b + 1] = cu[b] + nq[b], koff[b] = c.nkv, c.nkv += nk[b];
    c.T = cu[B], c.cu_q = cu, c.nk = nk, c.koff = koff;
    c.ldq = H * D + 3, c.ldkv = KV * D + 2, c.ldo = H * D + 1;
    c.q = randn(c.T * c.ldq, 1), c.kv = randn(2 * c.nkv * c.ldkv, 1), c.G = randn(c.T * c.ldo, 1);
    c.out = xmalloc(sizeof(float) * (size_t)(c.T * c.ldo)), c.lse = xmalloc(sizeof(float) * (size_t)c.T * H);
    int max_nk = 1;
    for (int b = 0; b < B; b++) max_nk = nk[b] > max_nk ? nk[b] : max_nk;
    c.scratch_n = attention_scratch_floats(max_nk);
    c.scratch = xmalloc(sizeof(float) * c.scratch_n);
    attn_loss(&c);

    size_t bn = tiny_scratch ? 2 * (size_t)c.nkv * H * D + 2 * (size_t)max_nk
                             : attention_backward_scratch_floats(c.nkv, max_nk, H, D);
    float *bs = xmalloc(sizeof(float) * bn);
    float *pq = randn(c.T * c.ldq, 1), *pkv = randn(2 * c.nkv * c.ldkv, 1);
    float *dq = xmalloc(sizeof(float) * (size_t)(c.T * c.ldq)), *dkv = xmalloc(sizeof(float) * (size_t)(2 * c.nkv * c.ldkv));
    memcpy(dq, pq, sizeof(float) * (size_t)(c.T * c.ldq)), memcpy(dkv, pkv, sizeof(float) * (size_t)(2 * c.nkv * c.ldkv));
    float *k[8], *v[8], *dk[8], *dv[8];
    attn_ptrs(&c, c.kv, k, v);
    attn_ptrs(&c, dkv, dk, dv);
    attention_backward(dq, dk, dv, c.G, c.ldo, c.q, c.ldq, (const float *const *)k, (const float *const *)v, c.ldkv,
                       c.lse, cu, nk, B, H, KV, D, causal, bs, bn);
    // the pads of strided rows keep their values and do not reach the loss
    for (int64_t t = 0; t < c.T; t++)
        for (int64_t j = (int64_t)H * D; j < c.ldq; j++) EXPECT(dq[t * c.ldq + j] == pq[t * c.ldq + j], "dq pad");
    for (int64_t t = 0; t < c.T; t++)
        for (int64_t j = (int64_t)H * D; j < c.ldq; j++) dq[t * c.ldq + j] = pq[t * c.ldq + j] = 0;
    for (int64_t r = 0; r < 2 * c.nkv; r++)
        for (int64_t j = (int64_t)KV * D; j < c.ldkv; j++) {
            EXPECT(dkv[r * c.ldkv + j] == pkv[r * c.ldkv + j], "dk/dv pad");
            dkv[r * c.ldkv + j] = pkv[r * c.ldkv + j] = 0;
        }
    char what[128];
    snprintf(what, sizeof what, "attention %s dq", name);
    check_grad(what, attn_loss, &c, c.q, dq, pq, c.T * c.ldq);
    snprintf(what, sizeof what, "attention %s dk, dv", name);
    check_grad(what, attn_loss, &c, c.kv, dkv, pkv, 2 * c.nkv * c.ldkv);
    free(c.q), free(c.kv), free(c.G), free(c.out), free(c.lse), free(c.scratch), free(bs), free(pq), free(pkv),
        free(dq), free(dkv);
}

static void test_attention(void) {
    int nq1[3] = {1, 7, 3}, nk1[3] = {1, 7, 3};
    run_attention("causal GQA 6/2 segments 1,7,3", 3, nq1, nk1, 6, 2, 5, 1, 0);
    run_attention("causal GQA 6/2 one row per block", 3, nq1, nk1, 6, 2, 5, 1, 1);
    run_attention("bidirectional 3/3 segments 1,7,3", 3, nq1, nk1, 3, 3, 4, 0, 0);
    int nq2[2] = {2, 3}, nk2[2] = {5, 3};
    run_attention("causal 4/1 cached prefix", 2, nq2, nk2, 4, 1, 6, 1, 0);
    int nq3[1] = {9}, nk3[1] = {9};
    run_attention("bidirectional 2/1 one segment, one row per block", 1, nq3, nk3, 2, 1, 3, 0, 1);
}

// ----------------------------------------------------------------------------
// log-probabilities

typedef struct {
    int N, C, V, rows, vchunk;
    float temp;
    float *h, *w, *g, *lp, *scratch;
    const int64_t *tgt;
} lp_ctx;

static double lp_loss(void *p) {
    lp_ctx *c = p;
    logprobs_forward(c->lp, NULL, c->h, c->w, c->tgt, c->N, c->C, c->V, c->temp, c->rows, c->vchunk, c->scratch);
    return dot(c->g, c->lp, c->N);
}

static void test_logprobs(void) {
    int64_t tgt[6] = {0, 36, 5, 8, 8, 17};
    int rows_vchunk[][2] = {{2, 8}, {6, 37}, {1, 5}};
    for (int s = 0; s < 3; s++) {
        lp_ctx c = {6, 7, 37, rows_vchunk[s][0], rows_vchunk[s][1], 0.7f};
        c.tgt = tgt;
        c.h = randn((int64_t)c.N * c.C, 1), c.w = randn((int64_t)c.V * c.C, 1), c.g = randn(c.N, 1);
        c.lp = xmalloc(sizeof(float) * (size_t)c.N);
        c.scratch = xmalloc(sizeof(float) * logprobs_scratch_floats(c.rows, c.vchunk));
        lp_loss(&c);
        float *bs = xmalloc(sizeof(float) * logprobs_backward_scratch_floats(c.rows, c.vchunk));
        float *ph = randn((int64_t)c.N * c.C, 1), *pw = randn((int64_t)c.V * c.C, 1);
        float *dh = xmalloc(sizeof(float) * (size_t)c.N * c.C), *dw = xmalloc(sizeof(float) * (size_t)c.V * c.C);
        memcpy(dh, ph, sizeof(float) * (size_t)c.N * c.C), memcpy(dw, pw, sizeof(float) * (size_t)c.V * c.C);
        logprobs_backward(dh, dw, c.g, c.lp, c.h, c.w, c.tgt, c.N, c.C, c.V, c.temp, c.rows, c.vchunk, bs);
        char what[96];
        snprintf(what, sizeof what, "logprobs rows %d vchunk %d dhidden", c.rows, c.vchunk);
        check_grad(what, lp_loss, &c, c.h, dh, ph, (int64_t)c.N * c.C);
        snprintf(what, sizeof what, "logprobs rows %d vchunk %d dwte", c.rows, c.vchunk);
        check_grad(what, lp_loss, &c, c.w, dw, pw, (int64_t)c.V * c.C);
        free(c.h), free(c.w), free(c.g), free(c.lp), free(c.scratch), free(bs), free(ph), free(pw), free(dh), free(dw);
    }
}

int main(void) {
    maye_rng_init(&rng, 1234, 0);
    test_matmul();
    test_embedding();
    test_norms();
    test_activations();
    test_rope();
    test_attention();
    test_logprobs();
    return TEST_RESULT();
}
