// The model on odd shapes with randomly initialised checkpoints made here (maye_model_init): one-token
// text-only input, several images of different grids in one sequence, images at the start and the end,
// a packed batch against each sequence alone (with and without kept activations), chunked log-probs and
// entropy against a naive full softmax, Qwen2.5-VL window attention against full attention, the BF16/F16
// load path, the newer tensor names with a nested config and a sharded index, determinism, and the errors
// for missing tensors, wrong shapes, bad configs and mismatched image tokens.
#include "core/rng.h"
#include "core/util.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// Qwen2-VL, classic layout: 3 heads of 12 over 1 KV head, sections [1, 3, 2], tied embeddings, vision
// width 24 in 2 heads, patches of 3x3 pixels x 2 frames (PD = 54).
static const char *CFG_Q2 =
    "{\"architectures\": [\"Qwen2VLForConditionalGeneration\"], \"model_type\": \"qwen2_vl\",\n"
    " \"vocab_size\": 301, \"hidden_size\": 36, \"intermediate_size\": 50, \"num_hidden_layers\": 3,\n"
    " \"num_attention_heads\": 3, \"num_key_value_heads\": 1, \"rms_norm_eps\": 1e-6, \"rope_theta\": 10000.0,\n"
    " \"hidden_act\": \"silu\", \"tie_word_embeddings\": true, \"initializer_range\": 0.05,\n"
    " \"rope_scaling\": {\"type\": \"mrope\", \"mrope_section\": [1, 3, 2]},\n"
    " \"image_token_id\": 290, \"video_token_id\": 291, \"vision_start_token_id\": 288, \"vision_end_token_id\": 289,\n"
    " \"vision_config\": {\"depth\": 2, \"embed_dim\": 24, \"mlp_ratio\": 1.5, \"num_heads\": 2, \"in_chans\": 3,\n"
    "   \"hidden_size\": 36, \"patch_size\": 3, \"spatial_merge_size\": 2, \"temporal_patch_size\": 2,\n"
    "   \"hidden_act\": \"quick_gelu\"}}";

// Qwen2.5-VL, nested layout with rope_parameters: 5 heads of 8 over 5 KV heads, sections [2, 1, 1],
// vocabulary 5000 (more than one log-prob chunk), separate lm_head, vision width 16 in 1 head, windows of
// 3x3 merged units, full attention in block 1.
static const char *CFG_Q25 =
    "{\"architectures\": [\"Qwen2_5_VLForConditionalGeneration\"], \"model_type\": \"qwen2_5_vl\",\n"
    " \"image_token_id\": 4990, \"video_token_id\": 4991, \"vision_start_token_id\": 4988,\n"
    " \"vision_end_token_id\": 4989, \"tie_word_embeddings\": false,\n"
    " \"text_config\": {\"vocab_size\": 5000, \"hidden_size\": 40, \"intermediate_size\": 28,\n"
    "   \"num_hidden_layers\": 2, \"num_attention_heads\": 5, \"num_key_value_heads\": 5, \"rms_norm_eps\": 1e-5,\n"
    "   \"hidden_act\": \"silu\", \"initializer_range\": 0.05,\n"
    "   \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 1000000.0, \"mrope_section\": [2, 1, 1]}},\n"
    " \"vision_config\": {\"depth\": 3, \"hidden_size\": 16, \"intermediate_size\": 20, \"num_heads\": 1,\n"
    "   \"in_channels\": 3, \"out_hidden_size\": 40, \"patch_size\": 2, \"spatial_merge_size\": 2,\n"
    "   \"temporal_patch_size\": 1, \"window_size\": %d, \"fullatt_block_indexes\": [%s],\n"
    "   \"tokens_per_second\": 2, \"hidden_act\": \"silu\"}}";

static maye_rng rng;

static char *q25_config(int window, const char *full) {
    maye_buf b = {0};
    maye_buf_printf(&b, CFG_Q25, window, full);
    return b.data;
}

static float *randn(int64_t n) {
    float *x = xmalloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) x[i] = maye_rng_normal(&rng);
    return x;
}

// ----------------------------------------------------------------------------
// sequences with images

typedef struct {
    int T, n_img;
    int64_t ids[512];
    int64_t grid[8 * 3];
    int64_t P;
    float *pixels;      // (P, PD)
    float *embeds;      // (NI, C)
    int64_t n_embeds;
} seq;

// Builds a sequence: `pre` text tokens, then for each grid (vision_start, pads, vision_end) separated by
// `mid` text tokens, then `post` text tokens. With bare = 1 the images have no start/end markers.
static void make_seq(const maye_model *m, seq *s, int pre, int mid, int post, int n_img, const int64_t *grids,
                     int bare) {
    const maye_model_config *c = &m->cfg;
    memset(s, 0, sizeof *s);
    int64_t M = c->vision.merge * c->vision.merge;
    for (int i = 0; i < pre; i++) s->ids[s->T++] = (int64_t)maye_rng_below(&rng, 250);
    for (int k = 0; k < n_img; k++) {
        if (k && mid) for (int i = 0; i < mid; i++) s->ids[s->T++] = (int64_t)maye_rng_below(&rng, 250);
        if (!bare) s->ids[s->T++] = c->vision_start_token_id;
        int64_t n = grids[3 * k] * grids[3 * k + 1] * grids[3 * k + 2];
        for (int64_t i = 0; i < n / M; i++) s->ids[s->T++] = c->image_token_id;
        if (!bare) s->ids[s->T++] = c->vision_end_token_id;
        memcpy(s->grid + 3 * k, grids + 3 * k, sizeof(int64_t) * 3);
        s->P += n;
    }
    for (int i = 0; i < post; i++) s->ids[s->T++] = (int64_t)maye_rng_below(&rng, 250);
    ASSERT(s->T <= 512);
    s->n_img = n_img;
    s->pixels = randn(s->P * c->vision.patch_dim);
    EXPECT_OK(maye_vision_check(c, s->P, s->grid, n_img, &s->n_embeds));
    s->embeds = xmalloc(sizeof(float) * (size_t)(s->n_embeds * c->hidden + 1));
    EXPECT_OK(maye_vision_forward(m, s->pixels, s->P, s->grid, n_img, s->embeds));
}

static void free_seq(seq *s) { free(s->pixels), free(s->embeds); }

// Runs a packed batch of n sequences; returns hidden (T, C) and next-token log-probs/entropies (T).
static int run_batch(const maye_model *m, seq **ss, int n, int keep, float temperature, float **hidden, float **lp,
                     float **ent) {
    const maye_model_config *c = &m->cfg;
    int T = 0, C = c->hidden;
    int64_t NI = 0;
    for (int i = 0; i < n; i++) T += ss[i]->T, NI += ss[i]->n_embeds;
    int *cu = xmalloc(sizeof(int) * (size_t)(n + 1));
    int64_t *ids = xmalloc(sizeof(int64_t) * (size_t)(T + 1)), *pos = xmalloc(sizeof(int64_t) * 3 * (size_t)(T + 1));
    float *emb = xmalloc(sizeof(float) * (size_t)(NI * C + 1));
    cu[0] = 0;
    int64_t e = 0;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        cu[i + 1] = cu[i] + ss[i]->T;
        memcpy(ids + cu[i], ss[i]->ids, sizeof(int64_t) * (size_t)ss[i]->T);
        if (maye_mrope_positions(c, ss[i]->ids, ss[i]->T, ss[i]->grid, ss[i]->n_img, pos + cu[i], T, NULL) < 0) rc = -1;
        memcpy(emb + e * C, ss[i]->embeds, sizeof(float) * (size_t)(ss[i]->n_embeds * C));
        e += ss[i]->n_embeds;
    }
    maye_llm_acts a;
    maye_llm_acts_init(&a, c, T, 0, keep);
    maye_llm_batch b = {n, T, cu, ids, pos, emb, NI};
    if (rc == 0) rc = maye_llm_forward(m, &b, &a);
    if (rc == 0) {
        int64_t *tgt = xmalloc(sizeof(int64_t) * (size_t)(T + 1));
        maye_next_token_targets(&b, tgt);
        *hidden = xmalloc(sizeof(float) * (size_t)(T * C + 1));
        memcpy(*hidden, a.hidden, sizeof(float) * (size_t)T * C);
        *lp = xmalloc(sizeof(float) * (size_t)(T + 1));
        *ent = xmalloc(sizeof(float) * (size_t)(T + 1));
        rc = maye_llm_logprobs(m, &a, tgt, temperature, *lp, *ent);
        free(tgt);
    }
    maye_llm_acts_free(&a);
    free(cu), free(ids), free(pos), free(emb);
    return rc;
}

// ----------------------------------------------------------------------------
// tests

static void test_one_token(const maye_model *m) {
    seq one, longer;
    make_seq(m, &longer, 9, 0, 0, 0, NULL, 0);
    one = longer;
    one.T = 1;
    seq *a[] = {&one}, *b[] = {&longer};
    float *h1, *lp1, *e1, *h2, *lp2, *e2;
    EXPECT_OK(run_batch(m, a, 1, 0, 1.0f, &h1, &lp1, &e1));
    EXPECT_OK(run_batch(m, b, 1, 0, 1.0f, &h2, &lp2, &e2));
    test_close_f32("one-token hidden vs first token of a longer text", h1, h2, m->cfg.hidden, 1e-5, 0);
    EXPECT(lp1[0] == 0 && e1[0] == 0, "a one-token sequence has no target: %g %g", lp1[0], e1[0]);
    free(h1), free(lp1), free(e1), free(h2), free(lp2), free(e2);
    free_seq(&longer);
}

static void test_images(const maye_model *m, const char *what) {
    const maye_model_config *c = &m->cfg;
    int C = c->hidden;
    // three images of different grids (one with two frames) in one sequence
    int64_t grids[] = {1, 4, 6, 1, 6, 2, 2, 2, 4, 1, 10, 14};
    seq s;
    make_seq(m, &s, 5, 3, 4, 4, grids, 0);
    // the vision tower attends within each image: running the images one by one gives the same rows
    int64_t row = 0, p0 = 0;
    for (int k = 0; k < 4; k++) {
        int64_t P = grids[3 * k] * grids[3 * k + 1] * grids[3 * k + 2], n;
        EXPECT_OK(maye_vision_check(c, P, grids + 3 * k, 1, &n));
        float *one = xmalloc(sizeof(float) * (size_t)(n * C));
        EXPECT_OK(maye_vision_forward(m, s.pixels + p0 * c->vision.patch_dim, P, grids + 3 * k, 1, one));
        char name[96];
        snprintf(name, sizeof name, "%s: image %d alone vs in a batch of 4", what, k);
        test_close_f32(name, one, s.embeds + row * C, n * C, 1e-5, 1e-5);
        free(one);
        row += n, p0 += P;
    }
    // images at the very start and the very end, without markers, and a packed batch = each alone
    int64_t g2[] = {1, 2, 2, 1, 4, 2};
    seq edge, text, single;
    make_seq(m, &edge, 0, 2, 0, 2, g2, 1);
    EXPECT(edge.ids[0] == c->image_token_id && edge.ids[edge.T - 1] == c->image_token_id, "edge layout");
    make_seq(m, &text, 17, 0, 0, 0, NULL, 0);
    make_seq(m, &single, 1, 0, 1, 1, grids + 3, 0);
    seq *all[] = {&s, &edge, &text, &single};
    float *hp = NULL, *lpp = NULL, *ep = NULL;
    for (int keep = 0; keep < 2; keep++) {
        EXPECT_OK(run_batch(m, all, 4, keep, 0.8f, &hp, &lpp, &ep));
        int off = 0;
        for (int i = 0; i < 4; i++) {
            float *h, *lp, *e;
            EXPECT_OK(run_batch(m, all + i, 1, 0, 0.8f, &h, &lp, &e));
            char name[128];
            snprintf(name, sizeof name, "%s: packed (keep %d) vs alone, sequence %d: hidden", what, keep, i);
            test_close_f32(name, hp + (size_t)off * C, h, (int64_t)all[i]->T * C, 1e-5, 1e-5);
            snprintf(name, sizeof name, "%s: packed (keep %d) vs alone, sequence %d: log-probs", what, keep, i);
            test_close_f32(name, lpp + off, lp, all[i]->T, 1e-5, 1e-5);
            snprintf(name, sizeof name, "%s: packed (keep %d) vs alone, sequence %d: entropy", what, keep, i);
            test_close_f32(name, ep + off, e, all[i]->T, 1e-5, 1e-5);
            off += all[i]->T;
            free(h), free(lp), free(e);
        }
        free(hp), free(lpp), free(ep);
    }
    free_seq(&s), free_seq(&edge), free_seq(&text), free_seq(&single);
}

static void test_positions(const maye_model *m) {
    // text(2) start pad*6 end text: grid [1, 4, 6] -> 2 x 3 merged tokens
    const maye_model_config *c = &m->cfg;
    int64_t I = c->image_token_id, S = c->vision_start_token_id, E = c->vision_end_token_id;
    int64_t ids[] = {5, 6, S, I, I, I, I, I, I, E, 7};
    int64_t grid[] = {1, 4, 6}, pos[3 * 11], delta;
    EXPECT_OK(maye_mrope_positions(c, ids, 11, grid, 1, pos, 11, &delta));
    int64_t want[3 * 11] = {0, 1, 2, 3, 3, 3, 3, 3, 3, 6, 7, 0, 1, 2, 3, 3, 3, 4, 4, 4, 6, 7,
                            0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7};
    test_equal_i64("M-RoPE positions", pos, want, 33);
    EXPECT(delta == 8 - 11, "rope_delta %lld", (long long)delta);
    EXPECT_FAIL(maye_mrope_positions(c, ids, 8, grid, 1, pos, 11, &delta), "needs 6 image-pad tokens");
    EXPECT_FAIL(maye_mrope_positions(c, ids, 11, grid, 0, pos, 11, &delta), "has only 0 row");
    int64_t neg[] = {1, -4, 6}, huge[] = {1, 4, (int64_t)1 << 40};
    EXPECT_FAIL(maye_mrope_positions(c, ids, 11, neg, 1, pos, 11, &delta), "entries must be positive");
    EXPECT_FAIL(maye_mrope_positions(c, ids, 11, huge, 1, pos, 11, &delta), "must fit in the 11 tokens");
    int64_t two[] = {1, 4, 6, 1, 2, 2};
    EXPECT_FAIL(maye_mrope_positions(c, ids, 11, two, 2, pos, 11, &delta), "has 2 row(s) but the sequence has 1");
}

static void test_logprobs_naive(const maye_model *m, const char *what) {
    const maye_model_config *c = &m->cfg;
    seq s;
    int64_t grid[] = {1, 2, 4};
    make_seq(m, &s, 3, 0, 6, 1, grid, 0);
    int T = s.T, V = c->vocab;
    float temps[] = {1.0f, 0.6f};
    for (int ti = 0; ti < 2; ti++) {
        seq *b[] = {&s};
        float *h, *lp, *ent;
        EXPECT_OK(run_batch(m, b, 1, 0, temps[ti], &h, &lp, &ent));
        float *logits = xmalloc(sizeof(float) * (size_t)T * V);
        maye_llm_logits(m, h, T, logits);
        float *rl = xmalloc(sizeof(float) * (size_t)T), *re = xmalloc(sizeof(float) * (size_t)T);
        for (int t = 0; t < T; t++) {
            if (t == T - 1) {
                rl[t] = re[t] = 0;
                continue;
            }
            double mx = -INFINITY, sum = 0, e = 0;
            for (int v = 0; v < V; v++) mx = fmax(mx, logits[(size_t)t * V + v] / temps[ti]);
            for (int v = 0; v < V; v++) sum += exp(logits[(size_t)t * V + v] / temps[ti] - mx);
            double lse = mx + log(sum);
            for (int v = 0; v < V; v++) {
                double z = logits[(size_t)t * V + v] / temps[ti] - lse;
                e -= exp(z) * z;
            }
            rl[t] = (float)(logits[(size_t)t * V + s.ids[t + 1]] / temps[ti] - lse);
            re[t] = (float)e;
        }
        char name[96];
        snprintf(name, sizeof name, "%s: chunked log-probs vs full softmax (T %g)", what, temps[ti]);
        test_close_f32(name, lp, rl, T, 2e-5, 1e-5);
        snprintf(name, sizeof name, "%s: entropy vs full softmax (T %g)", what, temps[ti]);
        test_close_f32(name, ent, re, T, 2e-5, 1e-5);
        free(h), free(lp), free(ent), free(logits), free(rl), free(re);
    }
    free_seq(&s);
}

// Qwen2.5-VL windows: with a window covering the whole image, windowed blocks equal full-attention blocks;
// with small windows they differ.
static void test_windows(uint64_t seed) {
    char *wide = q25_config(400, ""), *all_full = q25_config(12, "0, 1, 2"), *small = q25_config(12, "1");
    maye_model a, b, s;
    EXPECT_OK(maye_model_init(&a, wide, "wide", seed));
    EXPECT_OK(maye_model_init(&b, all_full, "all_full", seed));
    EXPECT_OK(maye_model_init(&s, small, "small", seed));
    int64_t grid[] = {1, 14, 10, 1, 4, 4};
    int64_t P = 140 + 16, n;
    float *px = randn(P * a.cfg.vision.patch_dim);
    EXPECT_OK(maye_vision_check(&a.cfg, P, grid, 2, &n));
    float *oa = xmalloc(sizeof(float) * (size_t)n * 40), *ob = xmalloc(sizeof(float) * (size_t)n * 40);
    float *os = xmalloc(sizeof(float) * (size_t)n * 40);
    EXPECT_OK(maye_vision_forward(&a, px, P, grid, 2, oa));
    EXPECT_OK(maye_vision_forward(&b, px, P, grid, 2, ob));
    EXPECT_OK(maye_vision_forward(&s, px, P, grid, 2, os));
    test_close_f32("one window per image vs full attention", oa, ob, n * 40, 1e-5, 1e-5);
    double d = 0;
    for (int64_t i = 0; i < n * 40; i++) d = fmax(d, fabs(os[i] - ob[i]));
    EXPECT(d > 1e-4, "3x3 windows should change the output (max diff %g)", d);
    free(px), free(oa), free(ob), free(os), free(wide), free(all_full), free(small);
    maye_model_free(&a), maye_model_free(&b), maye_model_free(&s);
}

// Incremental decoding through maye_kv_view: a packed prefill of all but the last token of two sequences
// into per-sequence K/V buffers, then one new token per sequence after n_past cached rows, gives the full
// forward's hidden state at each last token; the last (text) token sits at position t + rope_delta.
static void test_kv_decode(const maye_model *m, const char *what) {
    const maye_model_config *c = &m->cfg;
    int C = c->hidden, KVD = c->kv_heads * c->head_dim, L = c->layers, half = c->head_dim / 2;
    int64_t grid[] = {1, 2, 4};
    seq s0, s1;
    make_seq(m, &s0, 2, 0, 5, 1, grid, 0);
    make_seq(m, &s1, 7, 0, 0, 0, NULL, 0);
    seq *ss[2] = {&s0, &s1};
    float *ref = NULL, *lp = NULL, *ent = NULL;
    EXPECT_OK(run_batch(m, ss, 2, 0, 1.0f, &ref, &lp, &ent));
    int len[2] = {s0.T, s1.T}, total = s0.T + s1.T, off[2] = {0, s0.T};
    int TP = total - 2, cu_p[3] = {0, len[0] - 1, TP}, cu_d[3] = {0, 1, 2}, n_past[2] = {len[0] - 1, len[1] - 1};
    int64_t *ids = xmalloc(sizeof(int64_t) * (size_t)total), *pp = xmalloc(sizeof(int64_t) * 3 * (size_t)TP);
    int64_t pd[6], last_ids[2];
    float *x = xmalloc(sizeof(float) * (size_t)TP * C), *x2 = xmalloc(sizeof(float) * 2 * (size_t)C);
    for (int b = 0, col = 0; b < 2; b++) {
        int64_t *pos = xmalloc(sizeof(int64_t) * 3 * (size_t)len[b]), delta;
        EXPECT_OK(maye_mrope_positions(c, ss[b]->ids, len[b], ss[b]->grid, ss[b]->n_img, pos, len[b], &delta));
        for (int a = 0; a < 3; a++) {
            EXPECT(pos[a * len[b] + len[b] - 1] == len[b] - 1 + delta, "%s: last position %lld, t + delta %lld", what,
                   (long long)pos[a * len[b] + len[b] - 1], (long long)(len[b] - 1 + delta));
            memcpy(pp + a * TP + col, pos + a * len[b], sizeof(int64_t) * (size_t)(len[b] - 1));
            pd[a * 2 + b] = pos[a * len[b] + len[b] - 1];
        }
        memcpy(ids + col, ss[b]->ids, sizeof(int64_t) * (size_t)(len[b] - 1));
        last_ids[b] = ss[b]->ids[len[b] - 1];
        col += len[b] - 1;
        free(pos);
    }
    embedding_forward(x, ids, m->w.embed, TP, C);
    for (int t = 0, row = 0; t < TP; t++)
        if (ids[t] == c->image_token_id) memcpy(x + (size_t)t * C, s0.embeds + (size_t)(row++) * C, sizeof(float) * C);
    embedding_forward(x2, last_ids, m->w.embed, 2, C);
    size_t cache = (size_t)L * total * KVD;
    float *kc = xmalloc(sizeof(float) * cache), *vc = xmalloc(sizeof(float) * cache);
    float *cos = xmalloc(sizeof(float) * (size_t)TP * half), *sin = xmalloc(sizeof(float) * (size_t)TP * half);
    float cos2[2 * 64], sin2[2 * 64];
    ASSERT(half <= 64);
    maye_mrope_tables(c, pp, TP, TP, cos, sin);
    maye_mrope_tables(c, pd, 2, 2, cos2, sin2);
    maye_llm_acts a, a2;
    maye_llm_acts_init(&a, c, TP, 0, 0);
    maye_llm_acts_init(&a2, c, 2, len[0] > len[1] ? len[0] : len[1], 0);
    for (int l = 0; l < L; l++) {
        float *k[2], *v[2];
        for (int b = 0; b < 2; b++) {
            k[b] = kc + ((size_t)l * total + off[b]) * KVD;
            v[b] = vc + ((size_t)l * total + off[b]) * KVD;
        }
        maye_kv_view prefill = {2, cu_p, NULL, k, v}, decode = {2, cu_d, n_past, k, v};
        maye_llm_layer_acts la = maye_llm_acts_layer(&a, c, l), la2 = maye_llm_acts_layer(&a2, c, l);
        maye_llm_layer_forward(m, l, x, x, TP, cos, sin, &prefill, &la, a.scratch, a.scratch_n);
        maye_llm_layer_forward(m, l, x2, x2, 2, cos2, sin2, &decode, &la2, a2.scratch, a2.scratch_n);
    }
    float out[2 * 64];
    ASSERT(C <= 64);
    rmsnorm_forward(out, NULL, x2, m->w.norm_w, 2, C, c->rms_eps);
    char name[96];
    for (int b = 0; b < 2; b++) {
        snprintf(name, sizeof name, "%s: KV-cache decode of sequence %d vs full forward", what, b);
        test_close_f32(name, out + b * C, ref + (size_t)(off[b] + len[b] - 1) * C, C, 1e-5, 1e-5);
    }
    maye_llm_acts_free(&a), maye_llm_acts_free(&a2);
    free(ids), free(pp), free(x), free(x2), free(kc), free(vc), free(cos), free(sin), free(ref), free(lp), free(ent);
    free_seq(&s0), free_seq(&s1);
}

// The parameter groups are disjoint contiguous ranges in table order (vision, merger, llm).
static void test_groups(const maye_model *m) {
    size_t ov, om, ol;
    size_t nv = maye_model_group_range(m, MAYE_PARAM_VISION, &ov);
    size_t nm = maye_model_group_range(m, MAYE_PARAM_MERGER, &om);
    size_t nl = maye_model_group_range(m, MAYE_PARAM_LLM, &ol), want = 0;
    for (int i = 0; i < m->n_specs; i++) want += (size_t)m->specs[i].count * m->specs[i].numel;
    EXPECT(ov == 0 && ov + nv <= om && om + nm <= ol && ol + nl <= m->n_params, "group ranges overlap");
    EXPECT(nv + nm + nl >= want && nv + nm + nl <= m->n_params, "groups cover %zu of %zu values", nv + nm + nl, want);
    EXPECT(m->w.embed == m->params + ol && m->w.patch_embed == m->params && m->w.m_norm_w == m->params + om,
           "group starts");
}

// ----------------------------------------------------------------------------
// checkpoints

// Writes m's weights to dir (config.json = json) with variations: `skip` leaves one tensor out, `transpose`
// stores one 2-D tensor transposed, `newer` uses the model.visual.* / model.language_model.* names, `sharded`
// splits vision and language tensors into two files with a model.safetensors.index.json.
static void write_variant(const maye_model *m, const char *dir, const char *json, const char *skip,
                          const char *transpose, int newer, int sharded) {
    EXPECT_OK(maye_mkdir_p(dir));
    char *cfg = maye_path_join(dir, "config.json");
    EXPECT_OK(maye_write_file_atomic(cfg, json, strlen(json)));
    free(cfg);
    maye_st_writer w[2];
    maye_st_writer_init(&w[0]), maye_st_writer_init(&w[1]);
    maye_buf index = {0};
    maye_buf_puts(&index, "{\"metadata\": {}, \"weight_map\": {");
    int first = 1;
    for (int i = 0; i < m->n_specs; i++) {
        const maye_param *p = &m->specs[i];
        for (int c = 0; c < p->count; c++) {
            char base[128], name[160];
            snprintf(base, sizeof base, p->hub, c);
            if (skip && !strcmp(base, skip)) continue;
            int vis = !strncmp(base, "visual.", 7);
            if (newer && vis) snprintf(name, sizeof name, "model.%s", base);
            else if (newer && !strncmp(base, "model.", 6))
                snprintf(name, sizeof name, "model.language_model.%s", base + 6);
            else snprintf(name, sizeof name, "%s", base);
            int64_t shape[5];
            memcpy(shape, p->shape, sizeof shape);
            if (transpose && !strcmp(base, transpose)) shape[0] = p->shape[1], shape[1] = p->shape[0];
            int f = sharded && !vis;
            maye_st_writer_add(&w[f], name, MAYE_F32, p->ndim, shape, m->params + p->offset + (size_t)c * p->numel);
            maye_buf_printf(&index, "%s\"%s\": \"%s\"", first ? "" : ", ", name,
                            f ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors");
            first = 0;
        }
    }
    maye_buf_puts(&index, "}}");
    if (sharded) {
        const char *files[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
        for (int f = 0; f < 2; f++) {
            char *p = maye_path_join(dir, files[f]);
            EXPECT_OK(maye_st_writer_save(&w[f], p));
            free(p);
        }
        char *p = maye_path_join(dir, "model.safetensors.index.json");
        EXPECT_OK(maye_write_file_atomic(p, index.data, index.len));
        free(p);
    } else {
        char *p = maye_path_join(dir, "model.safetensors");
        EXPECT_OK(maye_st_writer_save(&w[0], p));
        free(p);
    }
    maye_buf_free(&index);
    maye_st_writer_free(&w[0]), maye_st_writer_free(&w[1]);
}

static char *tmp(const char *name) { return maye_path_join(test_tmpdir(), name); }

static void test_checkpoints(const maye_model *m, const char *json, const char *what) {
    // F32 round trip is exact; BF16 / F16 load the rounded values
    maye_dtype dts[3] = {MAYE_F32, MAYE_BF16, MAYE_F16};
    for (int d = 0; d < 3; d++) {
        char *dir = tmp(maye_dtype_name(dts[d]));
        EXPECT_OK(maye_model_save(m, dir, dts[d]));
        maye_model back;
        if (maye_model_load(&back, dir) < 0) {
            EXPECT(0, "%s: load %s: %s", what, dir, maye_errmsg());
            free(dir);
            continue;
        }
        EXPECT(back.n_params == m->n_params, "param count");
        float *want = xmalloc(sizeof(float) * m->n_params);
        for (size_t i = 0; i < m->n_params; i++) {
            float v = m->params[i];
            want[i] = dts[d] == MAYE_BF16 ? maye_bf16_to_f32(maye_f32_to_bf16(v))
                      : dts[d] == MAYE_F16 ? maye_f16_to_f32(maye_f32_to_f16(v)) : v;
        }
        char name[96];
        snprintf(name, sizeof name, "%s: weights after a %s save/load", what, maye_dtype_name(dts[d]));
        test_close_f32(name, back.params, want, (int64_t)m->n_params, 0, 0);
        free(want);
        maye_model_free(&back);
        free(dir);
    }
    // newer tensor names in a sharded checkpoint
    char *dir = tmp("newer");
    write_variant(m, dir, json, NULL, NULL, 1, 1);
    maye_model back;
    if (maye_model_load(&back, dir) == 0) {
        test_close_f32("newer names + sharded index", back.params, m->params, (int64_t)m->n_params, 0, 0);
        maye_model_free(&back);
    } else {
        EXPECT(0, "%s: load newer/sharded: %s", what, maye_errmsg());
    }
    free(dir);
    // a missing tensor and a wrong shape name the file, the tensor and the shapes
    dir = tmp("missing");
    write_variant(m, dir, json, "model.layers.1.mlp.up_proj.weight", NULL, 0, 0);
    EXPECT_FAIL(maye_model_load(&back, dir), "missing tensor 'model.layers.1.mlp.up_proj.weight'");
    free(dir);
    dir = tmp("transposed");
    write_variant(m, dir, json, NULL, "visual.blocks.0.attn.qkv.weight", 0, 0);
    char want[160];
    int VC = m->cfg.vision.width;
    snprintf(want, sizeof want, "tensor 'visual.blocks.0.attn.qkv.weight' has shape [%d, %d], expected [%d, %d]", VC,
             3 * VC, 3 * VC, VC);
    EXPECT_FAIL(maye_model_load(&back, dir), want);
    EXPECT_FAIL(maye_model_load(&back, dir), "model.safetensors");
    free(dir);
    if (!m->cfg.tie_embeddings) {
        dir = tmp("nohead");
        write_variant(m, dir, json, "lm_head.weight", NULL, 0, 0);
        EXPECT_FAIL(maye_model_load(&back, dir), "tie_word_embeddings: false");
        free(dir);
    }
}

static void test_config_errors(void) {
    maye_model_config c;
    EXPECT_FAIL(maye_model_config_parse(&c, "{\"model_type\": \"llama\"}", "cfg.json"), "unsupported architecture");
    EXPECT_FAIL(maye_model_config_parse(&c, "[1]", "cfg.json"), "not a JSON object");
    char *bad = xstrdup(CFG_Q2);
    char *p = strstr(bad, "[1, 3, 2]");
    memcpy(p, "[1, 3, 3]", 9);
    EXPECT_FAIL(maye_model_config_parse(&c, bad, "cfg.json"), "mrope_section [1, 3, 3] sums to 7");
    p = strstr(bad, "\"hidden_size\": 36");
    memcpy(p, "\"hidden_sizX\": 36", 17);
    EXPECT_FAIL(maye_model_config_parse(&c, bad, "cfg.json"), "cfg.json: missing key 'hidden_size'");
    free(bad);
    bad = xstrdup(CFG_Q2);
    p = strstr(bad, "\"num_attention_heads\": 3");
    memcpy(p, "\"num_attention_heads\": 5", 24);
    EXPECT_FAIL(maye_model_config_parse(&c, bad, "cfg.json"), "not a multiple of num_attention_heads 5");
    free(bad);
}

static void test_input_errors(const maye_model *m) {
    const maye_model_config *c = &m->cfg;
    int64_t grid[] = {1, 4, 6}, odd[] = {1, 3, 6}, n;
    EXPECT_FAIL(maye_vision_check(c, 23, grid, 1, &n),
                "pixel_values has 23 patch rows but image_grid_thw describes 24");
    EXPECT_FAIL(maye_vision_check(c, 18, odd, 1, &n), "multiples of spatial_merge_size");
    int64_t ids[4] = {1, c->image_token_id, 2, 3}, pos[12] = {0};
    int cu[2] = {0, 4};
    maye_llm_acts a;
    maye_llm_acts_init(&a, c, 4, 0, 0);
    maye_llm_batch b = {1, 4, cu, ids, pos, NULL, 0};
    EXPECT_FAIL(maye_llm_forward(m, &b, &a), "1 image-pad tokens");
    ids[1] = c->vocab;
    EXPECT_FAIL(maye_llm_forward(m, &b, &a), "input_ids[1]");
    b.T = 5;
    EXPECT_FAIL(maye_llm_forward(m, &b, &a), "sized for 4");
    maye_llm_acts_free(&a);
}

static void test_determinism(const char *json) {
    maye_model a, b;
    EXPECT_OK(maye_model_init(&a, json, "det", 11));
    EXPECT_OK(maye_model_init(&b, json, "det", 11));
    EXPECT(!memcmp(a.params, b.params, sizeof(float) * a.n_params), "same seed, different weights");
    maye_model_free(&b);
    EXPECT_OK(maye_model_init(&b, json, "det", 12));
    EXPECT(memcmp(a.params, b.params, sizeof(float) * a.n_params), "different seeds, same weights");
    // normal(0, initializer_range): check the spread of the embedding table
    double s = 0, s2 = 0;
    size_t n = (size_t)a.cfg.vocab * a.cfg.hidden;
    for (size_t i = 0; i < n; i++) s += a.w.embed[i], s2 += (double)a.w.embed[i] * a.w.embed[i];
    double sd = sqrt(s2 / n - (s / n) * (s / n));
    EXPECT(fabs(sd - a.cfg.initializer_range) < 0.05 * a.cfg.initializer_range, "embedding std %g want %g", sd,
           a.cfg.initializer_range);
    EXPECT(a.w.ln1_w[0] == 1.0f && a.w.q_b[0] == 0.0f, "norms start at 1, biases at 0");
    maye_model_free(&a), maye_model_free(&b);
}

int main(void) {
    maye_rng_init(&rng, 77, 3);
    cpu_set_threads(2);
    test_config_errors();
    test_determinism(CFG_Q2);
    char *q25 = q25_config(12, "1");
    const char *jsons[2] = {CFG_Q2, q25};
    const char *names[2] = {"qwen2-vl", "qwen2.5-vl"};
    for (int k = 0; k < 2; k++) {
        maye_model m;
        if (maye_model_init(&m, jsons[k], names[k], 5) < 0) {
            EXPECT(0, "%s: %s", names[k], maye_errmsg());
            continue;
        }
        if (k == 0) test_positions(&m), test_input_errors(&m);
        test_groups(&m);
        test_one_token(&m);
        test_images(&m, names[k]);
        test_kv_decode(&m, names[k]);
        test_logprobs_naive(&m, names[k]);
        test_checkpoints(&m, jsons[k], names[k]);
        maye_model_free(&m);
    }
    test_windows(9);
    free(q25);
    return TEST_RESULT();
}
