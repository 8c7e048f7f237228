// The sampler and the engine's stop rules: with temperature 1 and top-p 1 the empirical frequencies of many
// seeded draws from a random model's logits pass a chi-square test against the model's probabilities (and a
// wrong temperature fails it); the same holds for the renormalised nucleus with top-p; top-p never draws
// outside the nucleus, top-k never outside the k best; greedy takes the lowest id among equal maxima;
// suppressed ids are never drawn; log-probs are log softmax(z / T) of the unsuppressed logits; min_tokens
// holds stop tokens back; stop strings end a response and cut its text before the string. Every draw equals
// a direct, slow transcription of the definition in sample.h (full sort, integer weights of sampling_def.h).
#include "common.h"
#include "model/generate.h"
#include "kernels/cuda/sampling_def.h"
#include "model/sample.h"
#include "text/tokenizer.h"

#include <math.h>
#include <stdio.h>

// ----------------------------------------------------------------------------
// reference distributions

// p = softmax(z / tau) in double.
static void softmax(const float *z, int V, double tau, double *p) {
    double m = -INFINITY, s = 0;
    for (int i = 0; i < V; i++) m = fmax(m, z[i] / tau);
    for (int i = 0; i < V; i++) s += p[i] = exp(z[i] / tau - m);
    for (int i = 0; i < V; i++) p[i] /= s;
}

// rank[i] = position of token i when sorted by z descending, ties by id.
static void ranks(const float *z, int V, int *rank) {
    for (int i = 0; i < V; i++) {
        rank[i] = 0;
        for (int j = 0; j < V; j++) rank[i] += z[j] > z[i] || (z[j] == z[i] && j < i);
    }
}

// Tokens kept by top-k then top-p (kept[i] = 1), from exact probabilities.
static int nucleus(const float *z, int V, double tau, int k, double top_p, int *kept) {
    double *p = xmalloc(sizeof(double) * (size_t)V);
    int *rank = xmalloc(sizeof(int) * (size_t)V), *by_rank = xmalloc(sizeof(int) * (size_t)V);
    softmax(z, V, tau, p);
    ranks(z, V, rank);
    for (int i = 0; i < V; i++) by_rank[rank[i]] = i;
    if (k <= 0 || k > V) k = V;
    double Z = 0, run = 0;
    for (int r = 0; r < k; r++) Z += p[by_rank[r]];
    int n = k;
    for (int r = 0; r < k && top_p < 1; r++) {
        run += p[by_rank[r]];
        if (run >= top_p * Z) {
            n = r + 1;
            break;
        }
    }
    for (int i = 0; i < V; i++) kept[i] = rank[i] < n;
    free(p), free(rank), free(by_rank);
    return n;
}

// Chi-square statistic of counts against probabilities q (bins with expectation < 5 pooled); *dof receives
// the degrees of freedom.
static double chi_square(const int64_t *count, const double *q, int V, int64_t N, int *dof) {
    double chi = 0, pool_e = 0, pool_o = 0;
    int bins = 0;
    for (int i = 0; i < V; i++) {
        double e = q[i] * N;
        if (e < 5) {
            pool_e += e, pool_o += count[i];
            continue;
        }
        chi += (count[i] - e) * (count[i] - e) / e;
        bins++;
    }
    if (pool_e >= 5) chi += (pool_o - pool_e) * (pool_o - pool_e) / pool_e, bins++;
    *dof = bins - 1;
    return chi;
}

// The 99.9% quantile of chi-square with k degrees of freedom (Wilson-Hilferty).
static double chi_square_q999(int k) {
    double a = 2.0 / (9.0 * k), z = 3.0902;
    return k * pow(1 - a + z * sqrt(a), 3);
}

// The definition of sample.h written out directly: every token weighed and ranked by a full sort.
static const float *def_z;
static int def_by_rank(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    uint32_t kx = maye_sample_key(def_z[x]), ky = maye_sample_key(def_z[y]);
    if (kx != ky) return kx > ky ? -1 : 1;
    return x - y;
}

static int32_t definition_draw(const float *z, int V, float tau, int top_k, float top_p, float u) {
    int *order = xmalloc(sizeof(int) * (size_t)V), *kept = xcalloc((size_t)V, sizeof(int));
    uint64_t *q = xmalloc(sizeof(uint64_t) * (size_t)V);
    float zmax = -INFINITY;
    for (int i = 0; i < V; i++) zmax = fmaxf(zmax, z[i]);
    for (int i = 0; i < V; i++) q[i] = maye_sample_weight(z[i], zmax, tau), order[i] = i;
    def_z = z;
    qsort(order, (size_t)V, sizeof(int), def_by_rank);
    int k = top_k > 0 && top_k < V ? top_k : V, n = k;
    uint64_t Z = 0, run = 0, S = 0;
    for (int r = 0; r < k; r++) Z += q[order[r]];
    if (top_p < 1) {
        uint64_t target = maye_sample_scale((double)top_p, Z);
        for (n = 1; n <= k; n++)
            if ((run += q[order[n - 1]]) >= target) break;
        if (n > k) n = k;
    }
    for (int r = 0; r < n; r++) kept[order[r]] = 1, S += q[order[r]];
    int32_t token = order[0];
    if (S > 0) {
        uint64_t rr = maye_sample_scale((double)u, S);
        run = 0;
        for (int i = 0; i < V; i++)
            if (kept[i] && (run += q[i]) > rr) {
                token = i;
                break;
            }
    }
    free(order), free(kept), free(q);
    return token;
}

// ----------------------------------------------------------------------------
// statistics on a model's logits

static void model_logits(maye_model *m, float *z) {
    test_prompt p;
    test_prompt_make(&m->cfg, &p, 5, 0, 0, 9);
    int64_t *pos = xmalloc(sizeof(int64_t) * 3 * (size_t)p.n), delta;
    maye_mrope_positions(&m->cfg, p.ids, p.n, NULL, 0, pos, p.n, &delta);
    maye_llm_acts a;
    maye_llm_acts_init(&a, &m->cfg, p.n, p.n, 0);
    int cu[2] = {0, p.n};
    maye_llm_batch b = {1, p.n, cu, p.ids, pos, NULL, 0};
    EXPECT_OK(maye_llm_forward(m, &b, &a));
    maye_llm_logits(m, a.hidden + (size_t)(p.n - 1) * m->cfg.hidden, 1, z);
    maye_llm_acts_free(&a);
    free(pos);
    test_prompt_free(&p);
}

static void test_statistics(void) {
    maye_model m;
    test_model(&m, TEST_MODEL_QWEN2_VL, 21);
    int V = m.cfg.vocab;
    float *z = xmalloc(sizeof(float) * (size_t)V);
    model_logits(&m, z);
    double *p = xmalloc(sizeof(double) * (size_t)V), *wrong = xmalloc(sizeof(double) * (size_t)V);
    int64_t *count = xcalloc((size_t)V, sizeof(int64_t));
    int *kept = xmalloc(sizeof(int) * (size_t)V);
    maye_sampler s;
    maye_sampler_init(&s, V);
    const int64_t N = 200000;
    uint64_t stream = maye_sample_stream(maye_sample_stream_key("stats", 0, 0), 0);

    // temperature 1, top-p 1: the model's probabilities
    maye_sample_params sp = {1.0f, 1.0f, 0};
    double worst_lp = 0;
    softmax(z, V, 1.0, p);
    for (int64_t i = 0; i < N; i++) {
        float lp;
        int32_t y = maye_sample(&s, &sp, z, NULL, 0, maye_uniform_at(42, stream, (uint64_t)i), &lp);
        count[y]++;
        if (i < 1000) worst_lp = fmax(worst_lp, fabs(lp - log(p[y])));
    }
    int dof;
    double chi = chi_square(count, p, V, N, &dof), q = chi_square_q999(dof);
    EXPECT(chi < q, "T=1: chi-square %.1f with %d dof is above the 99.9%% quantile %.1f", chi, dof, q);
    softmax(z, V, 0.8, wrong);
    int dof_w;
    double chi_w = chi_square(count, wrong, V, N, &dof_w);
    EXPECT(chi_w > chi_square_q999(dof_w), "the test cannot tell T=1 from T=0.8 (chi-square %.1f)", chi_w);
    EXPECT(worst_lp < 2e-6, "log-probs differ from log softmax(z) by %g", worst_lp);
    printf("T=1, top-p 1: chi-square %.1f (%d dof, 99.9%% quantile %.1f; against T=0.8: %.1f), log-prob error %.2g\n",
           chi, dof, q, chi_w, worst_lp);

    // top-p 0.8 at temperature 0.9: the renormalised nucleus, and nothing outside it
    sp = (maye_sample_params){0.9f, 0.8f, 0};
    int n_kept = nucleus(z, V, 0.9, 0, 0.8, kept);
    softmax(z, V, 0.9, p);
    double mass = 0;
    for (int i = 0; i < V; i++) mass += kept[i] ? p[i] : 0;
    for (int i = 0; i < V; i++) p[i] = kept[i] ? p[i] / mass : 0, count[i] = 0;
    int outside = 0;
    for (int64_t i = 0; i < N; i++) {
        float lp;
        int32_t y = maye_sample(&s, &sp, z, NULL, 0, maye_uniform_at(43, stream, (uint64_t)i), &lp);
        count[y]++;
        outside += !kept[y];
    }
    EXPECT(outside == 0, "top-p 0.8: %d of %lld draws outside the nucleus", outside, (long long)N);
    chi = chi_square(count, p, V, N, &dof);
    q = chi_square_q999(dof);
    EXPECT(chi < q, "top-p 0.8: chi-square %.1f with %d dof is above %.1f", chi, dof, q);
    printf("T=0.9, top-p 0.8 (%d of %d tokens kept): chi-square %.1f (%d dof, quantile %.1f)\n", n_kept, V, chi, dof,
           q);
    maye_sampler_free(&s);
    free(z), free(p), free(wrong), free(count), free(kept);
    maye_model_free(&m);
}

// ----------------------------------------------------------------------------
// truncation, greedy, suppression on random logits

static void test_truncation(void) {
    int V = 300;
    maye_rng rng;
    maye_rng_init(&rng, 3, 3);
    float *z = xmalloc(sizeof(float) * (size_t)V);
    int *kept = xmalloc(sizeof(int) * (size_t)V), *rank = xmalloc(sizeof(int) * (size_t)V);
    maye_sampler s;
    maye_sampler_init(&s, V);
    int bad_p = 0, bad_k = 0, bad_ban = 0, bad_def = 0, draws = 0;
    for (int trial = 0; trial < 12; trial++) {
        for (int i = 0; i < V; i++) z[i] = 3.0f * maye_rng_normal(&rng);
        ranks(z, V, rank);
        float tau = trial % 2 ? 0.7f : 1.0f;
        float top_p = trial % 3 == 0 ? 0.3f : 0.9f;
        nucleus(z, V, tau, 0, top_p, kept);
        maye_sample_params pp = {tau, top_p, 0}, pk = {tau, 1.0f, 1 + trial % 5}, pu = {tau, 1.0f, 0};
        int32_t banned[2] = {0, 0};
        for (int i = 0; i < V; i++) banned[0] = rank[i] == 0 ? i : banned[0], banned[1] = rank[i] == 1 ? i : banned[1];
        for (int d = 0; d < 400; d++, draws++) {
            float u = maye_uniform_at(5, (uint64_t)trial, (uint64_t)d);
            int32_t y = maye_sample(&s, &pp, z, NULL, 0, u, NULL);
            bad_p += !kept[y];
            bad_def += y != definition_draw(z, V, tau, 0, top_p, u);
            y = maye_sample(&s, &pk, z, NULL, 0, u, NULL);
            bad_k += rank[y] >= pk.top_k;
            bad_def += y != definition_draw(z, V, tau, pk.top_k, 1.0f, u);
            y = maye_sample(&s, &pu, z, NULL, 0, u, NULL);
            bad_def += y != definition_draw(z, V, tau, 0, 1.0f, u);
            float zc[300];
            memcpy(zc, z, sizeof zc);
            y = maye_sample(&s, &pu, zc, banned, 2, u, NULL);
            bad_ban += y == banned[0] || y == banned[1];
        }
    }
    EXPECT(bad_p == 0, "top-p drew %d of %d tokens outside the nucleus", bad_p, draws);
    EXPECT(bad_def == 0, "%d of %d draws differ from the definition written out", bad_def, 3 * draws);
    EXPECT(bad_k == 0, "top-k drew %d of %d tokens outside the k best", bad_k, draws);
    EXPECT(bad_ban == 0, "%d of %d draws were suppressed ids", bad_ban, draws);

    // the sampler's weights are those of sampling_def.h, edge values included
    int bad_w = 0;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < V; i++) z[i] = 8.0f * maye_rng_normal(&rng);
        z[0] = -INFINITY, z[1] = 30.0f, z[2] = 30.0f - 22.4f, z[3] = 30.0f - 22.3f, z[4] = -0.0f, z[5] = 0.0f;
        if (round) z[6] = 1e30f;
        maye_sample_params pw = {0.8f, 1.0f, 0};
        maye_sample(&s, &pw, z, NULL, 0, 0.25f, NULL);
        float zmax = -INFINITY;
        for (int i = 0; i < V; i++) zmax = fmaxf(zmax, z[i]);
        for (int i = 0; i < V; i++) bad_w += s.q[i] != maye_sample_weight(z[i], zmax, 0.8f);
    }
    EXPECT(bad_w == 0, "%d of %d weights differ from maye_sample_weight", bad_w, 2 * V);

    // greedy: the lowest id among equal maxima, at T = 0 and at T <= 1e-5; log-prob at temperature 1
    for (int i = 0; i < V; i++) z[i] = (float)(i % 7);
    z[40] = z[17] = 9.0f;
    double *p = xmalloc(sizeof(double) * (size_t)V);
    softmax(z, V, 1.0, p);
    for (int g = 0; g < 2; g++) {
        maye_sample_params gp = {g ? 1e-6f : 0.0f, 1.0f, 0};
        float lp;
        int32_t y = maye_sample(&s, &gp, z, NULL, 0, 0.5f, &lp);
        EXPECT(y == 17, "greedy picked %d, expected 17 (the lower of two maxima)", y);
        EXPECT(fabs(lp - log(p[17])) < 1e-6, "greedy log-prob %g, expected %g", lp, log(p[17]));
        int32_t ban = 17;
        y = maye_sample(&s, &gp, z, &ban, 1, 0.5f, &lp);
        EXPECT(y == 40, "greedy with 17 suppressed picked %d, expected 40", y);
        EXPECT(fabs(lp - log(p[40])) < 1e-6, "the log-prob of a draw with suppression is %g, expected the "
               "unsuppressed %g", lp, log(p[40]));
        z[17] = 9.0f;
    }
    maye_sampler_free(&s);
    free(z), free(kept), free(rank), free(p);
}

// ----------------------------------------------------------------------------
// min_tokens and stop strings through the engine

static void run_one(const maye_model *m, const maye_gen_config *g, const test_prompt *p, maye_gen_result *res) {
    maye_gen_engine e;
    maye_gen_request rq = {p->ids, p->n, p->pixels, p->P, p->grid, p->n_images, maye_sample_stream_key("s", 0, 0), "s"};
    EXPECT_OK(maye_gen_engine_init(&e, m, g));
    if (maye_gen_run(&e, &rq, 1, res) < 0) maye_die("generate: %s", maye_errmsg());
    maye_gen_engine_free(&e);
}

static void test_min_tokens(void) {
    maye_model m;
    test_model(&m, TEST_MODEL_QWEN2_VL, 31);
    test_prompt p;
    test_prompt_make(&m.cfg, &p, 4, 2, 2, 17);
    maye_gen_config g = {.n = 1, .sample = {0, 1, 0}, .max_tokens = 6, .max_batch_tokens = 64, .max_batch_seqs = 8};
    maye_gen_result free_run, r0, r3;
    run_one(&m, &g, &p, &free_run);
    int32_t first = free_run.out[0].ids[0];
    g.stop_ids[0] = first;
    g.n_stop = 1;
    run_one(&m, &g, &p, &r0);
    EXPECT(r0.out[0].n == 1 && r0.out[0].finish == MAYE_FINISH_STOP, "stop id %d: %d tokens, finish %d", first,
           r0.out[0].n, r0.out[0].finish);
    g.min_tokens = 3;
    run_one(&m, &g, &p, &r3);
    const maye_gen_output *o = &r3.out[0];
    EXPECT(o->n >= 3, "min_tokens 3: only %d tokens", o->n);
    for (int t = 0; t < 3 && t < o->n; t++) EXPECT(o->ids[t] != first, "min_tokens 3: stop id at token %d", t);
    EXPECT(o->finish == MAYE_FINISH_LENGTH || o->ids[o->n - 1] == first, "min_tokens 3: finish %d without a stop id",
           o->finish);
    // sampling: eight responses, the three likeliest first tokens as stop ids, none before token 4
    g = (maye_gen_config){.n = 8, .sample = {1.0f, 1.0f, 0}, .seed = 5, .max_tokens = 8, .min_tokens = 4,
                          .max_batch_tokens = 256, .max_batch_seqs = 8, .n_stop = 3};
    memcpy(g.stop_ids, free_run.out[0].ids, 3 * sizeof(int32_t));
    maye_gen_result rs;
    run_one(&m, &g, &p, &rs);
    int stopped = 0;
    for (int k = 0; k < 8; k++) {
        for (int t = 0; t < 4 && t < rs.out[k].n; t++)
            for (int i = 0; i < 3; i++) EXPECT(rs.out[k].ids[t] != g.stop_ids[i], "response %d: stop id at %d", k, t);
        EXPECT(rs.out[k].n >= 4, "response %d has %d tokens", k, rs.out[k].n);
        stopped += rs.out[k].finish == MAYE_FINISH_STOP;
    }
    printf("min_tokens: greedy stops at token 0 without it, at %d with min_tokens 3; %d of 8 sampled responses "
           "stopped after token 4\n", o->n, stopped);
    maye_gen_result_free(&free_run, 1, 1), maye_gen_result_free(&r0, 1, 1), maye_gen_result_free(&r3, 1, 1);
    maye_gen_result_free(&rs, 1, 8);
    test_prompt_free(&p);
    maye_model_free(&m);
}

// A random model over the demo tokenizer's 486 tokens (its vision ids looked up by name).
static void demo_model(maye_model *m, const maye_tokenizer *tok) {
    char json[2048];
    snprintf(json, sizeof json,
             "{\"model_type\": \"qwen2_vl\", \"vocab_size\": %d, \"hidden_size\": 32, \"intermediate_size\": 48,"
             " \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1,"
             " \"rms_norm_eps\": 1e-6, \"rope_theta\": 10000.0, \"initializer_range\": 0.1,"
             " \"rope_scaling\": {\"type\": \"mrope\", \"mrope_section\": [2, 3, 3]},"
             " \"image_token_id\": %d, \"video_token_id\": %d, \"vision_start_token_id\": %d,"
             " \"vision_end_token_id\": %d,"
             " \"vision_config\": {\"depth\": 1, \"embed_dim\": 16, \"mlp_ratio\": 2, \"num_heads\": 2,"
             "   \"in_chans\": 3,"
             "   \"hidden_size\": 32, \"patch_size\": 14, \"spatial_merge_size\": 2, \"temporal_patch_size\": 2}}",
             maye_tokenizer_vocab_size(tok), maye_tokenizer_token_id(tok, "<|image_pad|>"),
             maye_tokenizer_token_id(tok, "<|video_pad|>"), maye_tokenizer_token_id(tok, "<|vision_start|>"),
             maye_tokenizer_token_id(tok, "<|vision_end|>"));
    test_model(m, json, 8);
}

static void test_stop_strings(void) {
    maye_tokenizer *tok;
    if (maye_tokenizer_load(&tok, "configs/demo/tokenizer.json") < 0) {
        EXPECT(0, "%s (run from the repository root)", maye_errmsg());
        return;
    }
    maye_model m;
    demo_model(&m, tok);
    test_prompt p;
    test_prompt_make(&m.cfg, &p, 6, 0, 0, 4);
    maye_gen_config g = {.n = 4, .sample = {1.0f, 1.0f, 0}, .seed = 77, .max_tokens = 40, .tok = tok,
                         .max_batch_tokens = 512, .max_batch_seqs = 4};
    EXPECT_OK(maye_gen_stop_ids(&m, tok, g.stop_ids, &g.n_stop));
    maye_gen_result plain, cut;
    run_one(&m, &g, &p, &plain);
    // the plain text is the decoded ids without the stop token
    const maye_gen_output *o = &plain.out[0];
    maye_buf want = {0};
    int n_text = o->n - (o->finish == MAYE_FINISH_STOP);
    EXPECT_OK(maye_tokenizer_decode(tok, o->ids, (size_t)n_text, 1, &want));
    EXPECT(!strcmp(o->text, want.data ? want.data : ""), "text '%s' is not the decoded ids '%s'", o->text, want.data);
    // a stop string taken from the middle of response 0 (two ASCII bytes)
    size_t len = strlen(o->text), at = len / 2;
    while (at + 2 < len && ((unsigned char)o->text[at] >= 0x80 || (unsigned char)o->text[at + 1] >= 0x80)) at++;
    EXPECT(len >= 6 && at + 2 <= len, "response 0 is too short to cut: '%s'", o->text);
    char stop[3] = {o->text[at], o->text[at + 1], 0};
    char *stops[1] = {stop};
    g.stop_strings = stops;
    g.n_stop_strings = 1;
    run_one(&m, &g, &p, &cut);
    int cut_any = 0;
    for (int k = 0; k < g.n; k++) {
        const maye_gen_output *a = &plain.out[k], *b = &cut.out[k];
        const char *hit = strstr(a->text, stop);
        size_t keep = hit ? (size_t)(hit - a->text) : strlen(a->text);
        EXPECT(strlen(b->text) == keep && !strncmp(b->text, a->text, keep),
               "response %d with stop string '%s': text '%s', expected the first %zu bytes of '%s'", k, stop, b->text,
               keep, a->text);
        EXPECT(b->n <= a->n && !memcmp(b->ids, a->ids, sizeof(int32_t) * (size_t)b->n),
               "response %d: the ids are not a prefix of the ids without the stop string", k);
        if (hit) EXPECT(b->finish == MAYE_FINISH_STOP, "response %d: finish %d after a stop string", k, b->finish);
        if (hit) EXPECT(b->n < a->n || a->finish == MAYE_FINISH_STOP || b->n == g.max_tokens,
                        "response %d: generation went on after the stop string", k);
        cut_any += hit != NULL;
    }
    printf("stop string '%s': %d of %d responses cut ('%s' -> '%s')\n", stop, cut_any, g.n, o->text, cut.out[0].text);
    maye_buf_free(&want);
    maye_gen_result_free(&plain, 1, g.n), maye_gen_result_free(&cut, 1, g.n);
    test_prompt_free(&p);
    maye_model_free(&m);
    maye_tokenizer_free(tok);
}

int main(void) {
    test_statistics();
    test_truncation();
    test_min_tokens();
    test_stop_strings();
    return TEST_RESULT();
}
