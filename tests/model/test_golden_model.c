// Reference parity of the CPU model against transformers: for every model folder under
// $MAYE_FIXTURES/golden holding config.json + model.safetensors + expected.safetensors, and every sample
// (s0, s1, ... discovered from the `<sample>.input_ids` tensors), runs the vision tower, the M-RoPE
// positions, the language model and the log-probs, and compares with every expected tensor present:
// image_embeds, position_ids and rope_deltas (exact), embeds_after_merge, last_hidden, logits,
// token_logprobs and token_logprobs_t<temperature> (1e-4 absolute). Then all samples of a folder run again
// as one packed batch and must give the same hidden states and log-probs.
#include "core/util.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "support/golden.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-4

// ----------------------------------------------------------------------------
// expected tensors

// A float / int64 copy of `s.name` (a tensor of sample s), or NULL when absent; *n gets its size.
static float *get_f32(const maye_safetensors *st, const char *s, const char *name, int64_t *n) {
    char full[256];
    snprintf(full, sizeof full, "%s.%s", s, name);
    return test_st_f32(st, full, n);
}

static int64_t *get_i64(const maye_safetensors *st, const char *s, const char *name, int64_t *n) {
    char full[256];
    snprintf(full, sizeof full, "%s.%s", s, name);
    return test_st_i64(st, full, n);
}

static double max_diff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

// Compares got with the expected tensor `name` of the sample if present, printing the max difference.
static void compare(const char *model, const maye_safetensors *st, const char *s, const char *name, const float *got,
                    int64_t n) {
    int64_t ne = 0;
    float *want = get_f32(st, s, name, &ne);
    if (!want) return;
    char what[256];
    snprintf(what, sizeof what, "%s/%s.%s", model, s, name);
    if (ne != n) {
        EXPECT(ne == n, "%s: %lld values, expected %lld", what, (long long)n, (long long)ne);
    } else {
        test_close_f32(what, got, want, n, TOL, 0);
        printf("%-50s max |diff| %.3g\n", what, max_diff(got, want, n));
    }
    free(want);
}

// ----------------------------------------------------------------------------
// one sample

typedef struct {
    char *name;             // the sample (prefix of its tensors)
    int64_t L, n_img, P;
    int64_t *ids, *grid;
    float *pixels, *embeds; // embeds (NI, C) from the vision tower
    int64_t n_embeds;
    float *hidden, *lp;     // (L, C), (L) our results at temperature 1
} sample;

static void run_sample(const char *model, const maye_model *m, const maye_safetensors *st, sample *sm) {
    const maye_model_config *c = &m->cfg;
    const char *s = sm->name;
    int C = c->hidden, V = c->vocab;
    sm->ids = get_i64(st, s, "input_ids", &sm->L);
    int64_t ng = 0;
    sm->grid = get_i64(st, s, "image_grid_thw", &ng);
    sm->n_img = ng / 3;
    int64_t npix = 0;
    sm->pixels = get_f32(st, s, "pixel_values", &npix);
    sm->P = sm->pixels ? npix / c->vision.patch_dim : 0;
    int L = (int)sm->L;

    // vision tower
    EXPECT_OK(maye_vision_check(c, sm->P, sm->grid, (int)sm->n_img, &sm->n_embeds));
    sm->embeds = xmalloc(sizeof(float) * (size_t)(sm->n_embeds * C + 1));
    EXPECT_OK(maye_vision_forward(m, sm->pixels, sm->P, sm->grid, (int)sm->n_img, sm->embeds));
    compare(model, st, s, "image_embeds", sm->embeds, sm->n_embeds * C);

    // positions
    int64_t *pos = xmalloc(sizeof(int64_t) * 3 * (size_t)L), delta = 0;
    EXPECT_OK(maye_mrope_positions(c, sm->ids, L, sm->grid, (int)sm->n_img, pos, L, &delta));
    int64_t n = 0;
    int64_t *want = get_i64(st, s, "position_ids", &n);
    char what[256];
    if (want) {
        snprintf(what, sizeof what, "%s/%s.position_ids", model, s);
        EXPECT(n == 3 * L, "%s: size %lld", what, (long long)n);
        if (n == 3 * L && test_equal_i64(what, pos, want, n)) printf("%-50s exact\n", what);
        free(want);
    }
    want = get_i64(st, s, "rope_deltas", &n);
    if (want) {
        snprintf(what, sizeof what, "%s/%s.rope_deltas", model, s);
        if (test_equal_i64(what, &delta, want, 1)) printf("%-50s exact (%lld)\n", what, (long long)delta);
        free(want);
    }

    // language model
    maye_llm_acts a;
    maye_llm_acts_init(&a, c, L, 0, 0);
    int cu[2] = {0, L};
    maye_llm_batch b = {1, L, cu, sm->ids, pos, sm->embeds, sm->n_embeds};
    EXPECT_OK(maye_llm_forward(m, &b, &a));
    compare(model, st, s, "embeds_after_merge", a.embeds, (int64_t)L * C);
    compare(model, st, s, "last_hidden", a.hidden, (int64_t)L * C);
    float *logits = xmalloc(sizeof(float) * (size_t)L * V);
    maye_llm_logits(m, a.hidden, L, logits);
    compare(model, st, s, "logits", logits, (int64_t)L * V);
    free(logits);
    sm->hidden = xmalloc(sizeof(float) * (size_t)L * C);
    memcpy(sm->hidden, a.hidden, sizeof(float) * (size_t)L * C);

    // log-probs at 1 and at every temperature named by a token_logprobs_t<T> tensor
    int64_t *tgt = xmalloc(sizeof(int64_t) * (size_t)L);
    maye_next_token_targets(&b, tgt);
    float *lp = xmalloc(sizeof(float) * (size_t)L), *ent = xmalloc(sizeof(float) * (size_t)L);
    EXPECT_OK(maye_llm_logprobs(m, &a, tgt, 1.0f, lp, ent));
    compare(model, st, s, "token_logprobs", lp, L - 1);
    sm->lp = lp;
    char prefix[96];
    snprintf(prefix, sizeof prefix, "%s.token_logprobs_t", s);
    for (int i = 0; i < st->ntensors; i++) {
        const char *tn = st->tensors[i].name;
        if (strncmp(tn, prefix, strlen(prefix))) continue;
        double temp;
        if (maye_parse_f64(tn + strlen(prefix), &temp, tn) < 0) {
            EXPECT(0, "cannot parse the temperature of %s", tn);
            continue;
        }
        float *lpt = xmalloc(sizeof(float) * (size_t)L);
        EXPECT_OK(maye_llm_logprobs(m, &a, tgt, (float)temp, lpt, NULL));
        compare(model, st, s, tn + strlen(s) + 1, lpt, L - 1);
        free(lpt);
    }
    free(ent);
    free(tgt);
    free(pos);
    maye_llm_acts_free(&a);
}

// ----------------------------------------------------------------------------
// all samples as one packed batch

static void run_packed(const char *model, const maye_model *m, sample *sm, int n) {
    const maye_model_config *c = &m->cfg;
    int C = c->hidden, T = 0;
    int64_t NI = 0;
    for (int i = 0; i < n; i++) T += (int)sm[i].L, NI += sm[i].n_embeds;
    int *cu = xmalloc(sizeof(int) * (size_t)(n + 1));
    int64_t *ids = xmalloc(sizeof(int64_t) * (size_t)T), *pos = xmalloc(sizeof(int64_t) * 3 * (size_t)T);
    float *emb = xmalloc(sizeof(float) * (size_t)(NI * C + 1));
    cu[0] = 0;
    int64_t e = 0;
    for (int i = 0; i < n; i++) {
        cu[i + 1] = cu[i] + (int)sm[i].L;
        memcpy(ids + cu[i], sm[i].ids, sizeof(int64_t) * (size_t)sm[i].L);
        EXPECT_OK(maye_mrope_positions(c, sm[i].ids, (int)sm[i].L, sm[i].grid, (int)sm[i].n_img, pos + cu[i], T, NULL));
        memcpy(emb + e * C, sm[i].embeds, sizeof(float) * (size_t)(sm[i].n_embeds * C));
        e += sm[i].n_embeds;
    }
    maye_llm_acts a;
    maye_llm_acts_init(&a, c, T, 0, 1);
    maye_llm_batch b = {n, T, cu, ids, pos, emb, NI};
    EXPECT_OK(maye_llm_forward(m, &b, &a));
    int64_t *tgt = xmalloc(sizeof(int64_t) * (size_t)T);
    maye_next_token_targets(&b, tgt);
    float *lp = xmalloc(sizeof(float) * (size_t)T);
    EXPECT_OK(maye_llm_logprobs(m, &a, tgt, 1.0f, lp, NULL));
    for (int i = 0; i < n; i++) {
        char what[256];
        snprintf(what, sizeof what, "%.100s/packed[%.60s].last_hidden", model, sm[i].name);
        test_close_f32(what, a.hidden + (size_t)cu[i] * C, sm[i].hidden, sm[i].L * C, 1e-5, 0);
        snprintf(what, sizeof what, "%.100s/packed[%.60s].token_logprobs", model, sm[i].name);
        test_close_f32(what, lp + cu[i], sm[i].lp, sm[i].L - 1, 1e-5, 0);
    }
    printf("%-50s %d sequences, %d tokens\n", model, n, T);
    free(lp), free(tgt), free(cu), free(ids), free(pos), free(emb);
    maye_llm_acts_free(&a);
}

// ----------------------------------------------------------------------------
// discovery

// Checks the folder when it holds config.json + model.safetensors + expected.safetensors: returns 1 then,
// else 0.
static int run_model(const char *dir, const char *name) {
    char *exp = maye_path_join(dir, "expected.safetensors");
    char *cfg = maye_path_join(dir, "config.json"), *wts = maye_path_join(dir, "model.safetensors");
    int ran = 0;
    if (maye_file_exists(exp) && maye_file_exists(cfg) && maye_file_exists(wts)) {
        ran = 1;
        maye_model m;
        maye_safetensors st;
        if (maye_model_load(&m, dir) < 0 || maye_st_open(&st, exp) < 0) {
            EXPECT(0, "%s: %s", name, maye_errmsg());
        } else {
            char **names;
            int n = test_golden_samples(&st, &names);
            sample *sm = xcalloc((size_t)(n ? n : 1), sizeof(sample));
            for (int i = 0; i < n; i++) {
                sm[i].name = names[i];
                run_sample(name, &m, &st, &sm[i]);
            }
            EXPECT(n > 0, "%s: no samples (<name>.input_ids) in expected.safetensors", name);
            if (n > 1) run_packed(name, &m, sm, n);
            for (int i = 0; i < n; i++)
                free(sm[i].name), free(sm[i].ids), free(sm[i].grid), free(sm[i].pixels), free(sm[i].embeds),
                    free(sm[i].hidden), free(sm[i].lp);
            free(sm), free(names);
            maye_st_close(&st);
            maye_model_free(&m);
        }
    }
    free(exp), free(cfg), free(wts);
    return ran;
}

int main(void) {
    return test_golden_main(run_model, "no model folders (config.json + model.safetensors + expected.safetensors) "
                                       "under the fixtures");
}
