// The whole model's backward (language model, vision tower and merger) against central finite differences
// on tiny random models: Qwen2-VL (LayerNorm + QuickGELU tower, GQA 3:1, tied embeddings, a two-frame image)
// and Qwen2.5-VL (RMSNorm + gated SiLU tower, window attention with partial windows and a full-attention
// block, GQA 2:1, separate lm_head). Sizes are not multiples of 8. The packed batch holds an image at the
// very start of a sequence, a one-token sequence, an image (without markers) ending a sequence, and a text
// sequence. The loss is L = sum_t w_t logprob_t at temperature 0.7 with random weights w on some rows.
// Weights, norms and biases are random (not the init's ones and zeros) so that every path carries gradient.
// For every tensor of every group (all groups train): a directional derivative along a random direction
// of the whole tensor, and single entries (the largest gradients and random ones). Also: recomputation on
// and off give bit-identical gradients; a frozen language model (vision groups only) leaves the vision
// gradients bit-identical and gives the language model no gradient; a frozen tower with a trained merger
// gives the merger the same gradients; misuse (no matching forward, no kept activations, a zero temperature,
// too many patches) is an error.
#include "core/rng.h"
#include "core/util.h"
#include "model/backward.h"
#include "test.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define FD_H_DIR 5e-2    // step along a unit direction over a whole tensor
#define FD_H_ENTRY 2e-2  // step of one weight (weights are O(0.1); float rounding dominates)
#define TEMPERATURE 0.7f
#define DIR_TOL 1e-3     // directional derivative: relative to sum |g_i u_i|
#define ENTRY_TOL 3e-3   // single entries: relative to the tensor's max |g|

// Qwen2-VL, classic layout: hidden 36 in 3 heads of 12 over 1 KV head, MLP 50, vocabulary 301, tied
// embeddings; tower width 24 in 2 heads, MLP 36, patches 3x3 x 2 frames.
static const char *CFG_Q2 =
    "{\"architectures\": [\"Qwen2VLForConditionalGeneration\"], \"model_type\": \"qwen2_vl\",\n"
    " \"vocab_size\": 301, \"hidden_size\": 36, \"intermediate_size\": 50, \"num_hidden_layers\": 2,\n"
    " \"num_attention_heads\": 3, \"num_key_value_heads\": 1, \"rms_norm_eps\": 1e-6, \"rope_theta\": 10000.0,\n"
    " \"hidden_act\": \"silu\", \"tie_word_embeddings\": true, \"initializer_range\": 0.15,\n"
    " \"rope_scaling\": {\"type\": \"mrope\", \"mrope_section\": [1, 3, 2]},\n"
    " \"image_token_id\": 290, \"video_token_id\": 291, \"vision_start_token_id\": 288, \"vision_end_token_id\": 289,\n"
    " \"vision_config\": {\"depth\": 2, \"embed_dim\": 24, \"mlp_ratio\": 1.5, \"num_heads\": 2, \"in_chans\": 3,\n"
    "   \"hidden_size\": 36, \"patch_size\": 3, \"spatial_merge_size\": 2, \"temporal_patch_size\": 2,\n"
    "   \"hidden_act\": \"quick_gelu\"}}";

// Qwen2.5-VL, nested layout: hidden 40 in 4 heads of 10 over 2 KV heads, MLP 28, vocabulary 257, separate
// lm_head; tower width 24 in 2 heads, MLP 26, patches 2x2, windows of 2x2 merged units (8 px), full
// attention in block 1.
static const char *CFG_Q25 =
    "{\"architectures\": [\"Qwen2_5_VLForConditionalGeneration\"], \"model_type\": \"qwen2_5_vl\",\n"
    " \"image_token_id\": 250, \"video_token_id\": 251, \"vision_start_token_id\": 248,\n"
    " \"vision_end_token_id\": 249, \"tie_word_embeddings\": false,\n"
    " \"text_config\": {\"vocab_size\": 257, \"hidden_size\": 40, \"intermediate_size\": 28,\n"
    "   \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"rms_norm_eps\": 1e-5,\n"
    "   \"hidden_act\": \"silu\", \"initializer_range\": 0.15,\n"
    "   \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 1000000.0, \"mrope_section\": [2, 2, 1]}},\n"
    " \"vision_config\": {\"depth\": 2, \"hidden_size\": 24, \"intermediate_size\": 26, \"num_heads\": 2,\n"
    "   \"in_channels\": 3, \"out_hidden_size\": 40, \"patch_size\": 2, \"spatial_merge_size\": 2,\n"
    "   \"temporal_patch_size\": 1, \"window_size\": 8, \"fullatt_block_indexes\": [1],\n"
    "   \"tokens_per_second\": 2, \"hidden_act\": \"silu\"}}";

static maye_rng rng;

// ----------------------------------------------------------------------------
// the batch

#define MAX_T 256

typedef struct {
    int B, T, n_img;
    int cu[8];
    int64_t ids[MAX_T], pos[3 * MAX_T], grid[8 * 3];
    int64_t P, NI;
    float *pixels; // (P, PD)
    float w[MAX_T];
    int64_t tgt[MAX_T];
} batch;

static void add_text(const maye_model_config *c, batch *b, int n) {
    for (int i = 0; i < n; i++) b->ids[b->T++] = (int64_t)maye_rng_below(&rng, (uint64_t)c->vision_start_token_id);
}

static void add_image(const maye_model_config *c, batch *b, int t, int h, int w, int markers) {
    int64_t M = c->vision.merge * c->vision.merge, n = (int64_t)t * h * w;
    if (markers) b->ids[b->T++] = c->vision_start_token_id;
    for (int64_t i = 0; i < n / M; i++) b->ids[b->T++] = c->image_token_id;
    if (markers) b->ids[b->T++] = c->vision_end_token_id;
    b->grid[3 * b->n_img] = t, b->grid[3 * b->n_img + 1] = h, b->grid[3 * b->n_img + 2] = w;
    b->n_img++;
    b->P += n;
}

static void end_seq(batch *b) { b->cu[++b->B] = b->T; }

// Four sequences: image first, one token, image last (no markers), text. `g` holds the two images' grids.
static void make_batch(const maye_model *m, batch *b, const int g[2][3]) {
    const maye_model_config *c = &m->cfg;
    memset(b, 0, sizeof *b);
    add_image(c, b, g[0][0], g[0][1], g[0][2], 1), add_text(c, b, 5), end_seq(b);
    add_text(c, b, 1), end_seq(b);
    add_text(c, b, 3), add_image(c, b, g[1][0], g[1][1], g[1][2], 0), end_seq(b);
    add_text(c, b, 7), end_seq(b);
    ASSERT(b->T <= MAX_T);
    int img = 0;
    for (int s = 0; s < b->B; s++) {
        int n_img = s == 0 || s == 2;
        EXPECT_OK(maye_mrope_positions(c, b->ids + b->cu[s], b->cu[s + 1] - b->cu[s], b->grid + 3 * img, n_img,
                                       b->pos + b->cu[s], b->T, NULL));
        img += n_img;
    }
    EXPECT_OK(maye_vision_check(c, b->P, b->grid, b->n_img, &b->NI));
    b->pixels = xmalloc(sizeof(float) * (size_t)(b->P * c->vision.patch_dim));
    for (int64_t i = 0; i < b->P * c->vision.patch_dim; i++) b->pixels[i] = maye_rng_normal(&rng);
    maye_llm_batch lb = {b->B, b->T, b->cu, b->ids, b->pos, NULL, b->NI};
    maye_next_token_targets(&lb, b->tgt);
    for (int t = 0; t < b->T; t++) b->w[t] = b->tgt[t] >= 0 && maye_rng_below(&rng, 3) ? maye_rng_normal(&rng) : 0;
}

// Every weight random: matrices N(0, 0.15), norm weights 1 + N(0, 0.1), biases N(0, 0.1).
static void randomize(maye_model *m) {
    for (int i = 0; i < m->n_specs; i++) {
        const maye_param *p = &m->specs[i];
        float *x = m->params + p->offset;
        for (size_t k = 0; k < (size_t)p->count * p->numel; k++) {
            float z = maye_rng_normal(&rng);
            x[k] = p->init == MAYE_INIT_NORMAL ? 0.15f * z : p->init == MAYE_INIT_ONES ? 1.0f + 0.1f * z : 0.1f * z;
        }
    }
}

// ----------------------------------------------------------------------------
// loss and gradients

// L with the inference path (maye_vision_forward, keep = 0), summed in double.
static double loss_eval(const maye_model *m, const batch *b) {
    const maye_model_config *c = &m->cfg;
    float *emb = xmalloc(sizeof(float) * (size_t)(b->NI * c->hidden + 1)), lp[MAX_T];
    EXPECT_OK(maye_vision_forward(m, b->pixels, b->P, b->grid, b->n_img, emb));
    maye_llm_acts a;
    maye_llm_acts_init(&a, c, b->T, 0, 0);
    maye_llm_batch lb = {b->B, b->T, b->cu, b->ids, b->pos, emb, b->NI};
    EXPECT_OK(maye_llm_forward(m, &lb, &a));
    EXPECT_OK(maye_llm_logprobs(m, &a, b->tgt, TEMPERATURE, lp, NULL));
    double L = 0;
    for (int t = 0; t < b->T; t++) L += (double)b->w[t] * lp[t];
    maye_llm_acts_free(&a);
    free(emb);
    return L;
}

// Gradients of L for the groups of g, through the training path; the image features of the training
// forward must equal the inference forward's bit for bit.
static void gradients(const maye_model *m, const batch *b, bool recompute, maye_grads *g) {
    const maye_model_config *c = &m->cfg;
    bool vision = g->groups & ((1u << MAYE_PARAM_VISION) | (1u << MAYE_PARAM_MERGER));
    size_t ne = (size_t)(b->NI * c->hidden + 1);
    float *emb = xmalloc(sizeof(float) * ne), *ref = xmalloc(sizeof(float) * ne), *demb = xmalloc(sizeof(float) * ne);
    float lp[MAX_T];
    maye_vision_train vt;
    maye_vision_train_init(&vt, c, b->P, recompute);
    EXPECT_OK(maye_vision_train_forward(m, &vt, b->pixels, b->P, b->grid, b->n_img, emb));
    EXPECT_OK(maye_vision_forward(m, b->pixels, b->P, b->grid, b->n_img, ref));
    EXPECT(!memcmp(emb, ref, sizeof(float) * (size_t)(b->NI * c->hidden)),
           "the training forward of the tower differs from maye_vision_forward");
    maye_llm_train tr;
    maye_llm_train_init(&tr, c, b->T, recompute);
    maye_llm_batch lb = {b->B, b->T, b->cu, b->ids, b->pos, emb, b->NI};
    EXPECT_OK(maye_llm_forward(m, &lb, &tr.acts));
    EXPECT_OK(maye_llm_logprobs(m, &tr.acts, b->tgt, TEMPERATURE, lp, NULL));
    EXPECT_OK(maye_llm_backward(m, &tr, &lb, b->tgt, TEMPERATURE, lp, b->w, g, vision ? demb : NULL));
    if (vision) EXPECT_OK(maye_vision_backward(m, &vt, b->pixels, demb, g));
    maye_llm_train_free(&tr);
    maye_vision_train_free(&vt);
    free(emb), free(ref), free(demb);
}

// ----------------------------------------------------------------------------
// finite differences

// d L / d s of L(params + s u) at s = 0, fourth-order central difference with step h (params restored).
static double fd_dir(maye_model *m, const batch *b, int64_t off, const float *u, int64_t n, double h) {
    float *x = m->params + off, *x0 = xmalloc(sizeof(float) * (size_t)n);
    memcpy(x0, x, sizeof(float) * (size_t)n);
    const double steps[4] = {h, -h, 2 * h, -2 * h};
    double f[4];
    for (int s = 0; s < 4; s++) {
        for (int64_t i = 0; i < n; i++) x[i] = (float)(x0[i] + steps[s] * u[i]);
        f[s] = loss_eval(m, b);
    }
    memcpy(x, x0, sizeof(float) * (size_t)n);
    free(x0);
    return (8 * (f[0] - f[1]) - (f[2] - f[3])) / (12 * h);
}

// One tensor: a random unit direction over all of it, then its 2 largest gradients and 2 random entries.
static void check_tensor(const char *arch, maye_model *m, const batch *b, const maye_optim_tensor *t,
                         const float *grad, double *worst_dir, double *worst_entry) {
    int64_t n = t->numel;
    float *u = xmalloc(sizeof(float) * (size_t)n);
    double an = 0, mag = 0, gmax = 0, norm = 0;
    for (int64_t i = 0; i < n; i++) u[i] = maye_rng_normal(&rng), norm += (double)u[i] * u[i];
    for (int64_t i = 0; i < n; i++) {
        u[i] = (float)(u[i] / sqrt(norm));
        an += (double)grad[i] * u[i], mag += fabs((double)grad[i] * u[i]);
        gmax = fmax(gmax, fabs(grad[i]));
    }
    double fd = fd_dir(m, b, t->offset, u, n, FD_H_DIR), err = fabs(fd - an) / (mag > 0 ? mag : 1);
    EXPECT(err <= DIR_TOL, "%s %s: directional derivative %.9g, finite difference %.9g (rel %.3g)", arch, t->name,
           an, fd, err);
    *worst_dir = fmax(*worst_dir, err);

    int64_t pick[4] = {0, n > 1 ? 1 : 0, 0, 0};
    for (int64_t i = 0; i < n; i++) {
        if (fabs(grad[i]) > fabs(grad[pick[0]])) pick[1] = pick[0], pick[0] = i;
        else if (i != pick[0] && fabs(grad[i]) > fabs(grad[pick[1]])) pick[1] = i;
    }
    pick[2] = (int64_t)maye_rng_below(&rng, (uint64_t)n), pick[3] = (int64_t)maye_rng_below(&rng, (uint64_t)n);
    for (int k = 0; k < 4; k++) {
        memset(u, 0, sizeof(float) * (size_t)n);
        u[pick[k]] = 1;
        double fe = fd_dir(m, b, t->offset, u, n, FD_H_ENTRY), e = fabs(fe - grad[pick[k]]) / (gmax > 0 ? gmax : 1);
        EXPECT(e <= ENTRY_TOL, "%s %s[%lld]: gradient %.9g, finite difference %.9g (%.3g of max |g| %.3g)", arch,
               t->name, (long long)pick[k], grad[pick[k]], fe, e, gmax);
        *worst_entry = fmax(*worst_entry, e);
    }
    free(u);
}

// ----------------------------------------------------------------------------
// misuse

// A backward without a matching forward, activations without kept layers, a temperature of 0, too many
// patches for the vision activations: errors, not crashes.
static void check_errors(const maye_model *m, const batch *b, maye_grads *g) {
    const maye_model_config *c = &m->cfg;
    float *emb = xmalloc(sizeof(float) * (size_t)(b->NI * c->hidden + 1)), lp[MAX_T];
    EXPECT_OK(maye_vision_forward(m, b->pixels, b->P, b->grid, b->n_img, emb));
    maye_llm_batch lb = {b->B, b->T, b->cu, b->ids, b->pos, emb, b->NI};
    maye_llm_train tr;
    maye_llm_train_init(&tr, c, b->T, false);
    EXPECT_FAIL(maye_llm_backward(m, &tr, &lb, b->tgt, 1.0f, lp, b->w, g, NULL), "last forward ran on 0");
    EXPECT_OK(maye_llm_forward(m, &lb, &tr.acts));
    EXPECT_OK(maye_llm_logprobs(m, &tr.acts, b->tgt, 1.0f, lp, NULL));
    EXPECT_FAIL(maye_llm_backward(m, &tr, &lb, b->tgt, 0.0f, lp, b->w, g, NULL), "temperature must be positive");
    maye_llm_train_free(&tr);
    maye_llm_train inference;
    memset(&inference, 0, sizeof inference);
    maye_llm_acts_init(&inference.acts, c, b->T, 0, 0);
    EXPECT_OK(maye_llm_forward(m, &lb, &inference.acts));
    EXPECT_FAIL(maye_llm_backward(m, &inference, &lb, b->tgt, 1.0f, lp, b->w, g, NULL), "maye_llm_train_init");
    maye_llm_acts_free(&inference.acts);
    maye_vision_train vt;
    maye_vision_train_init(&vt, c, b->P - 1, false);
    EXPECT_FAIL(maye_vision_train_forward(m, &vt, b->pixels, b->P, b->grid, b->n_img, emb), "were sized for");
    maye_vision_train_free(&vt);
    free(emb);
}

// ----------------------------------------------------------------------------
// one architecture

static void run_arch(const char *arch, const char *cfg, const int grids[2][3]) {
    maye_model m;
    if (maye_model_init(&m, cfg, arch, 7) < 0) {
        EXPECT(0, "%s: %s", arch, maye_errmsg());
        return;
    }
    randomize(&m);
    batch b;
    make_batch(&m, &b, grids);
    unsigned all = maye_train_groups(true, true, true);
    maye_grads g, g2;
    maye_grads_init(&g, &m, all);
    gradients(&m, &b, false, &g);
    maye_optim_tensor *tab;
    int nt = maye_grads_optim_table(&g, &m, &tab);
    EXPECT(g.n_floats == m.n_params, "%s: gradients of every group hold %zu floats, the weights %zu", arch,
           g.n_floats, m.n_params);

    // finite differences, every tensor (one thread: thousands of tiny forwards)
    double worst_dir = 0, worst_entry = 0;
    int threads = omp_get_max_threads();
    cpu_set_threads(1);
    for (int i = 0; i < nt; i++)
        check_tensor(arch, &m, &b, &tab[i], g.memory + tab[i].grad_offset, &worst_dir, &worst_entry);
    cpu_set_threads(threads);
    printf("%s: %d tokens in %d sequences, %d images (%lld patches), %d tensors: worst directional error %.3g, "
           "worst entry error %.3g of the tensor's max |g|\n", arch, b.T, b.B, b.n_img, (long long)b.P, nt, worst_dir,
           worst_entry);

    // recomputation
    maye_grads_init(&g2, &m, all);
    gradients(&m, &b, true, &g2);
    EXPECT(!memcmp(g.memory, g2.memory, sizeof(float) * g.n_floats), "%s: recompute changes the gradients", arch);
    maye_grads_free(&g2);

    // frozen language model: the vision gradients are the same, the language model gets none
    maye_grads_init(&g2, &m, maye_train_groups(false, true, true));
    gradients(&m, &b, false, &g2);
    EXPECT(!g2.g.embed && !g2.g.q_w && !g2.g.lm_head && !g2.g.norm_w, "%s: a frozen LLM has gradient buffers", arch);
    size_t voff, vlen = maye_model_group_range(&m, MAYE_PARAM_VISION, &voff);
    size_t moff, mlen = maye_model_group_range(&m, MAYE_PARAM_MERGER, &moff);
    EXPECT(g2.n_floats < m.n_params, "%s: frozen LLM, %zu gradient floats", arch, g2.n_floats);
    EXPECT(!memcmp(g.memory + voff, g2.memory + voff + g2.shift[MAYE_PARAM_VISION], sizeof(float) * vlen) &&
               !memcmp(g.memory + moff, g2.memory + moff + g2.shift[MAYE_PARAM_MERGER], sizeof(float) * mlen),
           "%s: freezing the language model changes the vision gradients", arch);
    maye_grads_free(&g2);

    // frozen tower, trained merger (with recompute = true, which then keeps one block's slices only)
    maye_grads_init(&g2, &m, maye_train_groups(true, true, false));
    gradients(&m, &b, true, &g2);
    EXPECT(!g2.g.patch_embed && !g2.g.v_qkv_w && g2.g.m_fc1_w, "%s: a frozen tower has gradient buffers", arch);
    EXPECT(!memcmp(g.memory + moff, g2.memory + moff + g2.shift[MAYE_PARAM_MERGER], sizeof(float) * mlen),
           "%s: freezing the tower changes the merger's gradients", arch);
    maye_grads_free(&g2);

    check_errors(&m, &b, &g);
    maye_optim_table_free(tab, nt);
    maye_grads_free(&g);
    free(b.pixels);
    maye_model_free(&m);
}

int main(void) {
    maye_rng_init(&rng, 99, 0);
    const int q2_grids[2][3] = {{2, 2, 4}, {1, 4, 2}};  // a two-frame image, a tall one
    const int q25_grids[2][3] = {{1, 6, 6}, {1, 4, 6}}; // 3x3 and 2x3 merged units: reordered, partial windows
    run_arch("qwen2-vl", CFG_Q2, q2_grids);
    run_arch("qwen2.5-vl", CFG_Q25, q25_grids);
    return TEST_RESULT();
}
