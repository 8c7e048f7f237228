// The KV cache and the decode step: the range allocator (alignment, compaction that keeps every range's rows,
// refusal when the rows run out), the row-invariant matmul (close to a double reference; a row's bits do not
// depend on the other rows, its position, the strides or the thread count), and prefill + decode steps
// through the cache giving the same logits (1e-5) as a full forward over the whole sequence, for five
// sequences of different lengths decoded together, on the two test models and two with wide kv groups (5 and
// 7 query heads per kv head, as in the released models), with one thread and with six (the decode attention
// splits its work per sequence when there are at least two sequences per thread, else per kv group).
#include "common.h"
#include "kernels/cpu/kernels.h"
#include "model/decode.h"
#include "model/kvcache.h"

#include <math.h>
#include <stdint.h>

// ----------------------------------------------------------------------------
// pool

static void fill_range(maye_kv_pool *p, int h, int64_t rows, float tag) {
    for (int l = 0; l < p->layers; l++)
        for (int64_t i = 0; i < rows * p->kvd; i++) {
            maye_kv_keys(p, l, h)[i] = tag + (float)l * 1000 + (float)i;
            maye_kv_values(p, l, h)[i] = -tag - (float)l * 1000 - (float)i;
        }
}

static int range_intact(const maye_kv_pool *p, int h, int64_t rows, float tag) {
    for (int l = 0; l < p->layers; l++)
        for (int64_t i = 0; i < rows * p->kvd; i++)
            if (maye_kv_keys(p, l, h)[i] != tag + (float)l * 1000 + (float)i ||
                maye_kv_values(p, l, h)[i] != -tag - (float)l * 1000 - (float)i)
                return 0;
    return 1;
}

static void test_pool(void) {
    maye_model m;
    test_model(&m, TEST_MODEL_QWEN25_ODD, 1); // KVD = 10: a 64-byte granule is 8 rows
    maye_kv_pool p;
    EXPECT_FAIL(maye_kv_pool_init(&p, &m.cfg, 0), "rollout.max_batch_tokens");
    EXPECT_OK(maye_kv_pool_init(&p, &m.cfg, 6 * 8 + 5));
    int64_t g = p.granule;
    EXPECT(g == 8 && p.n_rows == 6 * g, "granule %lld, rows %lld", (long long)g, (long long)p.n_rows);
    EXPECT(maye_kv_pool_round(&p, g + 1) == 2 * g, "%lld rows round to %lld", (long long)g + 1,
           (long long)maye_kv_pool_round(&p, g + 1));
    int a = maye_kv_alloc(&p, 2 * g - 3), b = maye_kv_alloc(&p, g - 1), c = maye_kv_alloc(&p, 2 * g);
    EXPECT(a >= 0 && b >= 0 && c >= 0, "allocations %d %d %d", a, b, c);
    for (int h = 0; h < 3; h++)
        EXPECT(((uintptr_t)maye_kv_keys(&p, 1, h) % 64) == 0 && ((uintptr_t)maye_kv_values(&p, 0, h) % 64) == 0,
               "range %d is not 64-byte aligned", h);
    fill_range(&p, a, 2 * g - 3, 1e5f);
    fill_range(&p, c, 2 * g, 2e5f);
    EXPECT(maye_kv_alloc(&p, g + 1) < 0, "%lld rows fit where only %lld are free", (long long)g + 1, (long long)g);
    maye_kv_release(&p, b); // free: g rows between a and c, g at the end
    float *c_before = maye_kv_keys(&p, 0, c);
    int d = maye_kv_alloc(&p, 2 * g); // needs the gap and the tail together: compaction
    EXPECT(d >= 0, "%lld of %lld free rows were refused", (long long)(2 * g), (long long)(2 * g));
    EXPECT(maye_kv_keys(&p, 0, c) != c_before, "range c did not move during compaction");
    EXPECT(range_intact(&p, a, 2 * g - 3, 1e5f) && range_intact(&p, c, 2 * g, 2e5f), "compaction changed a range");
    fill_range(&p, d, 2 * g, 3e5f);
    maye_kv_copy_prefix(&p, d, a, 2 * g - 3);
    EXPECT(range_intact(&p, d, 2 * g - 3, 1e5f), "copied prefix differs");
    EXPECT(p.reserved == 6 * g && maye_kv_alloc(&p, 1) < 0, "%lld rows reserved, one more accepted",
           (long long)p.reserved);
    maye_kv_release(&p, a), maye_kv_release(&p, c), maye_kv_release(&p, d);
    EXPECT(p.reserved == 0, "%lld rows still reserved", (long long)p.reserved);
    EXPECT(maye_kv_alloc(&p, 6 * g) >= 0, "the whole pool could not be allocated when empty");
    maye_kv_pool_free(&p);
    maye_model_free(&m);
}

// ----------------------------------------------------------------------------
// row-invariant matmul

static void test_matmul_rows(void) {
    int T = 13, C = 29, OC = 37;
    int64_t ld = 40;
    maye_rng rng;
    maye_rng_init(&rng, 7, 1);
    float *x = xmalloc(sizeof(float) * (size_t)(T * ld)), *w = xmalloc(sizeof(float) * (size_t)(OC * C));
    float *bias = xmalloc(sizeof(float) * (size_t)OC), *all = xmalloc(sizeof(float) * (size_t)(T * OC));
    float *one = xmalloc(sizeof(float) * (size_t)(3 * OC)), *xr = xmalloc(sizeof(float) * (size_t)(3 * C + 8));
    for (int64_t i = 0; i < T * ld; i++) x[i] = maye_rng_normal(&rng);
    for (int i = 0; i < OC * C; i++) w[i] = maye_rng_normal(&rng);
    for (int i = 0; i < OC; i++) bias[i] = maye_rng_normal(&rng);
    maye_matmul_rows(all, OC, x, ld, w, bias, T, C, OC, NULL);
    double worst = 0;
    for (int t = 0; t < T; t++)
        for (int j = 0; j < OC; j++) {
            double ref = bias[j];
            for (int k = 0; k < C; k++) ref += (double)x[t * ld + k] * w[j * C + k];
            worst = fmax(worst, fabs(ref - all[t * OC + j]));
        }
    EXPECT(worst < 1e-4, "matmul_rows differs from the double reference by %g", worst);
    // each row alone, at another position and stride, and with other thread counts: the same bits
    for (int threads = 1; threads <= 2; threads++) {
        cpu_set_threads(threads);
        for (int t = 0; t < T; t++) {
            int at = t % 3;
            memcpy(xr + at * (C + 1) + 1, x + t * ld, sizeof(float) * (size_t)C);
            maye_matmul_rows(one + at * OC, OC, xr + at * (C + 1) + 1, C + 1, w, bias, 1, C, OC, NULL);
            for (int j = 0; j < OC; j++)
                if (one[at * OC + j] != all[t * OC + j]) {
                    EXPECT(0, "row %d, column %d: %.9g alone vs %.9g in the batch (%d threads)", t, j,
                           one[at * OC + j], all[t * OC + j], threads);
                    j = OC, t = T;
                }
        }
    }
    cpu_set_threads(0);
    free(x), free(w), free(bias), free(all), free(one), free(xr);
}

// ----------------------------------------------------------------------------
// decoding through the cache vs a full forward

#define N_SEQ 5
#define N_NEW 6

static void test_decode_vs_forward(const char *json, const char *what) {
    maye_model m;
    test_model(&m, json, 11);
    const maye_model_config *c = &m.cfg;
    int V = c->vocab, C = c->hidden;
    test_prompt pr[N_SEQ];
    test_prompt_make(c, &pr[0], 3, 4, 4, 1);
    test_prompt_make(c, &pr[1], 6, 0, 0, 2);
    test_prompt_make(c, &pr[2], 1, 2, 6, 3);
    test_prompt_make(c, &pr[3], 2, 2, 2, 4);
    test_prompt_make(c, &pr[4], 9, 0, 0, 5);
    maye_kv_pool pool;
    EXPECT_OK(maye_kv_pool_init(&pool, c, 256));
    int max_p = 0, kv[N_SEQ], n_past[N_SEQ];
    int64_t delta[N_SEQ], ids[N_SEQ], pos[N_SEQ];
    for (int s = 0; s < N_SEQ; s++) max_p = pr[s].n > max_p ? pr[s].n : max_p;
    maye_llm_acts acts;
    maye_llm_acts_init(&acts, c, max_p, max_p, 0);
    maye_decode_ws ws;
    maye_decode_ws_init(&ws, c, N_SEQ, max_p + N_NEW + 1);
    float *got[N_SEQ];      // (N_NEW + 1, V) logits after the prompt and after each new token
    int64_t *seq[N_SEQ];    // prompt + new tokens
    for (int s = 0; s < N_SEQ; s++) {
        test_prompt *p = &pr[s];
        got[s] = xmalloc(sizeof(float) * (size_t)(N_NEW + 1) * V);
        seq[s] = xmalloc(sizeof(int64_t) * (size_t)(p->n + N_NEW));
        memcpy(seq[s], p->ids, sizeof(int64_t) * (size_t)p->n);
        kv[s] = maye_kv_alloc(&pool, p->n + N_NEW);
        int64_t ni = 0;
        EXPECT_OK(maye_vision_check(c, p->P, p->grid, p->n_images, &ni));
        float *emb = xmalloc(sizeof(float) * (size_t)(ni * C + 1));
        if (p->n_images) EXPECT_OK(maye_vision_forward(&m, p->pixels, p->P, p->grid, 1, emb));
        int64_t *pp = xmalloc(sizeof(int64_t) * 3 * (size_t)p->n);
        EXPECT_OK(maye_mrope_positions(c, p->ids, p->n, p->grid, p->n_images, pp, p->n, &delta[s]));
        maye_prefill(&m, &acts, &pool, kv[s], p->ids, p->n, pp, emb, got[s]);
        free(emb), free(pp);
        n_past[s] = p->n;
    }
    // all sequences decode together; each feeds the argmax of its last logits
    for (int step = 0; step < N_NEW; step++) {
        for (int s = 0; s < N_SEQ; s++) {
            const float *z = got[s] + (size_t)step * V;
            int64_t best = 0;
            for (int i = 1; i < V; i++)
                if (z[i] > z[best]) best = i;
            ids[s] = seq[s][pr[s].n + step] = best;
            pos[s] = n_past[s] + delta[s];
        }
        maye_decode_step(&m, &ws, &pool, N_SEQ, ids, pos, kv, n_past);
        for (int s = 0; s < N_SEQ; s++) {
            memcpy(got[s] + (size_t)(step + 1) * V, ws.logits + (size_t)s * ws.ldv, sizeof(float) * (size_t)V);
            n_past[s]++;
        }
    }
    // the full forward of each whole sequence
    for (int s = 0; s < N_SEQ; s++) {
        test_prompt *p = &pr[s];
        int L = p->n + N_NEW;
        int64_t ni = 0;
        maye_vision_check(c, p->P, p->grid, p->n_images, &ni);
        float *emb = xmalloc(sizeof(float) * (size_t)(ni * C + 1));
        if (p->n_images) maye_vision_forward(&m, p->pixels, p->P, p->grid, 1, emb);
        // the prompt's positions, then the new tokens' as text (a generated image-pad id is an ordinary token)
        int64_t *pp = xmalloc(sizeof(int64_t) * 3 * (size_t)L);
        EXPECT_OK(maye_mrope_positions_response(c, seq[s], L, p->n, p->grid, p->n_images, pp, L));
        maye_llm_acts a;
        maye_llm_acts_init(&a, c, L, L, 0);
        int cu[2] = {0, L}, n_prompt[1] = {p->n};
        maye_llm_batch b = {1, L, cu, seq[s], pp, emb, ni, n_prompt};
        EXPECT_OK(maye_llm_forward(&m, &b, &a));
        float *want = xmalloc(sizeof(float) * (size_t)(N_NEW + 1) * V);
        maye_llm_logits(&m, a.hidden + (size_t)(p->n - 1) * C, N_NEW + 1, want);
        char name[128];
        snprintf(name, sizeof name, "%s: sequence %d (prompt %d) logits through the KV cache", what, s, p->n);
        test_close_f32(name, got[s], want, (int64_t)(N_NEW + 1) * V, 1e-5, 1e-5);
        double diff = 0;
        for (int64_t i = 0; i < (int64_t)(N_NEW + 1) * V; i++) diff = fmax(diff, fabs((double)got[s][i] - want[i]));
        printf("%s: max |diff| %.3g\n", name, diff);
        maye_llm_acts_free(&a);
        free(emb), free(pp), free(want), free(got[s]), free(seq[s]);
        test_prompt_free(p);
    }
    maye_decode_ws_free(&ws);
    maye_llm_acts_free(&acts);
    maye_kv_pool_free(&pool);
    maye_model_free(&m);
}

int main(void) {
    test_pool();
    test_matmul_rows();
    const char *models[][2] = {{TEST_MODEL_QWEN2_VL, "qwen2-vl"}, {TEST_MODEL_QWEN25_ODD, "qwen2.5-vl odd sizes"},
                               {TEST_MODEL_GQA7, "qwen2-vl 7 heads per kv head"},
                               {TEST_MODEL_GQA5, "qwen2-vl 5 heads per kv head"}};
    int threads[2] = {1, 6};
    for (int t = 0; t < 2; t++) {
        cpu_set_threads(threads[t]);
        for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
            char what[128];
            snprintf(what, sizeof what, "%s, %d thread%s", models[i][1], threads[t], threads[t] > 1 ? "s" : "");
            test_decode_vs_forward(models[i][0], what);
        }
    }
    return TEST_RESULT();
}
