// The GPU model's forward (model/cuda/model.h) against the CPU model (model/model.h): vision tower + merger
// (Qwen2-VL, and Qwen2.5-VL with window attention), the packed language model (hidden states, logits,
// log-probs and entropies) on random models of both architectures with odd sizes and with tensor-core head
// dims (the pixels also uploaded per image in 4 KiB waves: the same features to the bit), packed batches
// mixing image and text prompts, a batch of one-token sequences (the decode attention path), then every
// golden fixture model under $MAYE_FIXTURES/golden (each sample alone against the
// fixture's image_embeds, logits and token_logprobs, and all samples packed against the CPU). fp32 mode: 1e-4
// (logits 1e-3 against the fixtures); bf16 mode: mean |log-prob difference| to the CPU below 0.02, and the
// norms' weights and biases kept in fp32: a download gives them back exactly, every other tensor rounded to
// bf16. Bad batches fail with their messages. Exits 77 without a GPU.
#include "test_cuda_model_common.h"

#define FP32_TOL 1e-4
#define LOGIT_TOL 1e-3
#define BF16_MEAN_LP 0.02

// ----------------------------------------------------------------------------
// both sides of one batch

struct Outputs {
    std::vector<float> embeds, hidden, logits, lp, ent;
};

// The CPU model on a batch: image features, hidden states, logits, log-probs and entropies of targets.
static Outputs cpu_run(const maye_model *m, const TestBatch &b, const std::vector<int64_t> &targets, float tau) {
    const maye_model_config *c = &m->cfg;
    int C = c->hidden, V = c->vocab;
    Outputs o;
    o.embeds.resize((size_t)(b.NI * C + 1));
    if (b.n_images) EXPECT_OK(maye_vision_forward(m, b.pixels.data(), b.P, b.grid.data(), b.n_images, o.embeds.data()));
    maye_llm_acts a;
    maye_llm_acts_init(&a, c, b.T, 0, 0);
    maye_llm_batch cb = {b.B, b.T, b.cu.data(), b.ids.data(), b.pos.data(), b.NI ? o.embeds.data() : NULL, b.NI,
                         b.n_prompt_or_null()};
    EXPECT_OK(maye_llm_forward(m, &cb, &a));
    o.hidden.assign(a.hidden, a.hidden + (size_t)b.T * C);
    o.logits.resize((size_t)b.T * V);
    maye_llm_logits(m, a.hidden, b.T, o.logits.data());
    o.lp.resize((size_t)b.T), o.ent.resize((size_t)b.T);
    EXPECT_OK(maye_llm_logprobs(m, &a, targets.data(), tau, o.lp.data(), o.ent.data()));
    maye_llm_acts_free(&a);
    o.embeds.resize((size_t)(b.NI * C));
    return o;
}

// The GPU model on the same batch (its own vision tower's features feed its language model).
static Outputs gpu_run(cuda_model *gm, const TestBatch &b, const std::vector<int64_t> &targets, float tau) {
    int C = gm->cfg.hidden, V = gm->cfg.vocab;
    Outputs o;
    void *emb = gpu_image_embeds(gm, b);
    float *e = dev_to_f32(emb, b.NI * C, gm->dt);
    o.embeds.assign(e, e + b.NI * C);
    free(e);
    cuda_llm_acts a;
    EXPECT_OK(cuda_llm_acts_init(&a, gm, b.T + 5, b.B + 2, 0)); // capacities above the batch
    cuda_llm_batch gb = gpu_batch(b, emb);
    EXPECT_OK(cuda_llm_forward(gm, &gb, &a));
    EXPECT_OK(cuda_model_sync(gm));
    float *h = dev_to_f32(a.hidden, (int64_t)b.T * C, gm->dt);
    o.hidden.assign(h, h + (size_t)b.T * C);
    free(h);
    o.logits.resize((size_t)b.T * V);
    EXPECT_OK(cuda_llm_logits(gm, &a, 0, b.T, o.logits.data()));
    o.lp.resize((size_t)b.T), o.ent.resize((size_t)b.T);
    EXPECT_OK(cuda_llm_logprobs(gm, &a, targets.data(), tau, o.lp.data(), o.ent.data()));
    cuda_llm_acts_free(&a);
    dev_free(emb);
    return o;
}

static std::vector<int64_t> next_targets(const TestBatch &b) {
    std::vector<int64_t> t((size_t)b.T);
    for (int s = 0; s < b.B; s++)
        for (int i = b.cu[s]; i < b.cu[s + 1]; i++) t[(size_t)i] = i + 1 < b.cu[s + 1] ? b.ids[(size_t)i + 1] : -1;
    return t;
}

// Mean |got - want| over the rows with a target.
static double mean_lp_diff(const std::vector<float> &got, const std::vector<float> &want,
                           const std::vector<int64_t> &targets) {
    double s = 0;
    int n = 0;
    for (size_t i = 0; i < targets.size(); i++)
        if (targets[i] >= 0) s += fabs((double)got[i] - want[i]), n++;
    return n ? s / n : 0;
}

// fp32 GPU against the CPU (relative to the tensors' scale), bf16 GPU by the mean log-prob difference.
static void compare(const char *what, const Outputs &cpu, const Outputs &g32, const Outputs &g16,
                    const std::vector<int64_t> &targets) {
    char name[512];
    snprintf(name, sizeof name, "%s: image_embeds fp32", what);
    expect_close(name, g32.embeds.data(), cpu.embeds.data(), (int64_t)cpu.embeds.size(), FP32_TOL);
    snprintf(name, sizeof name, "%s: hidden fp32", what);
    expect_close(name, g32.hidden.data(), cpu.hidden.data(), (int64_t)cpu.hidden.size(), FP32_TOL);
    snprintf(name, sizeof name, "%s: logits fp32", what);
    expect_close(name, g32.logits.data(), cpu.logits.data(), (int64_t)cpu.logits.size(), FP32_TOL);
    snprintf(name, sizeof name, "%s: log-probs fp32", what);
    expect_close(name, g32.lp.data(), cpu.lp.data(), (int64_t)cpu.lp.size(), FP32_TOL);
    snprintf(name, sizeof name, "%s: entropies fp32", what);
    expect_close(name, g32.ent.data(), cpu.ent.data(), (int64_t)cpu.ent.size(), FP32_TOL);
    double d32 = mean_lp_diff(g32.lp, cpu.lp, targets), d16 = mean_lp_diff(g16.lp, cpu.lp, targets);
    EXPECT(d16 < BF16_MEAN_LP, "%s: bf16 mean |log-prob - CPU| = %.4g (limit %g)", what, d16, BF16_MEAN_LP);
    printf("%-48s mean |dlogp| fp32 %.2e  bf16 %.2e\n", what, d32, d16);
}

// A bf16 model downloaded into a CPU model of m's config gives m's norm weights and biases exactly (they stay
// fp32 on the GPU), the language model exactly when it has an fp32 master copy, and every other tensor rounded
// to bf16.
static void check_bf16_download(cuda_model *g16, const maye_model *m, const char *what) {
    maye_model d;
    if (maye_model_init(&d, m->config_json, what, 1) < 0) maye_die("%s: %s", what, maye_errmsg());
    unsigned all = (1u << MAYE_PARAM_VISION) | (1u << MAYE_PARAM_MERGER) | (1u << MAYE_PARAM_LLM);
    EXPECT_OK(cuda_model_download(g16, &d, all));
    int64_t bad_exact = 0, bad_other = 0, n_exact = 0;
    for (int i = 0; i < g16->n_specs; i++) {
        const cuda_param *p = &g16->specs[i];
        for (int q = 0; q < p->n_parts; q++) {
            const float *want = *(float *const *)((const char *)&m->w + p->part[q]);
            const float *got = *(float *const *)((const char *)&d.w + p->part[q]);
            bool exact = p->norm || (g16->master && p->group == MAYE_PARAM_LLM);
            for (size_t k = 0; k < (size_t)p->count * p->part_numel[q]; k++) {
                if (exact) bad_exact += got[k] != want[k], n_exact++;
                else bad_other += got[k] != maye_bf16_to_f32(maye_f32_to_bf16(want[k]));
            }
        }
    }
    EXPECT(n_exact > 0 && bad_exact == 0, "%s: %lld of %lld values that the bf16 model keeps in fp32 (norm weights "
           "and biases%s) came back changed", what, (long long)bad_exact, (long long)n_exact,
           g16->master ? ", the language model's master copy" : "");
    EXPECT(bad_other == 0, "%s: %lld weights differ from their bf16 rounding", what, (long long)bad_other);
    maye_model_free(&d);
}

// ----------------------------------------------------------------------------
// random models

// Moves the norm weights and biases and the linear biases of a random model (maye_model_init's 1 and 0) off the
// bf16 grid, by up to +-0.05, so that the bf16 checks see what stays fp32; g names the tensors (any GPU model
// of m's config).
static void perturb_ones_zeros(const cuda_model *g, maye_model *m, uint64_t seed) {
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (int i = 0; i < g->n_specs; i++) {
        const cuda_param *p = &g->specs[i];
        if (p->init == MAYE_INIT_NORMAL) continue;
        for (int q = 0; q < p->n_parts; q++) {
            float *v = *(float **)((char *)&m->w + p->part[q]);
            for (size_t k = 0; k < (size_t)p->count * p->part_numel[q]; k++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                v[k] += 0.1f * ((float)(x >> 40) / (float)(1 << 24) - 0.5f);
            }
        }
    }
}

static void random_model(cuda_ctx *ctx, const TestModelSpec &spec, uint64_t seed) {
    maye_model m;
    if (maye_model_init(&m, spec.json, spec.name, seed) < 0) maye_die("%s: %s", spec.name, maye_errmsg());
    const maye_model_config *c = &m.cfg;
    cuda_model g32, g16;
    EXPECT_OK(cuda_model_upload(&g32, ctx, &m, CUDA_F32, false));
    perturb_ones_zeros(&g32, &m, seed);
    unsigned all = (1u << MAYE_PARAM_VISION) | (1u << MAYE_PARAM_MERGER) | (1u << MAYE_PARAM_LLM);
    EXPECT_OK(cuda_model_load(&g32, all, &m.w)); // the perturbed values, through a reload
    EXPECT_OK(cuda_model_upload(&g16, ctx, &m, CUDA_BF16, false));
    check_bf16_download(&g16, &m, spec.name);
    cuda_model g16m; // with the master copy: the language model's norms live in it
    EXPECT_OK(cuda_model_upload(&g16m, ctx, &m, CUDA_BF16, true));
    char with_master[256];
    snprintf(with_master, sizeof with_master, "%s, with the fp32 master", spec.name);
    check_bf16_download(&g16m, &m, with_master);
    cuda_model_free(&g16m);

    // images with odd unit counts, a text-only prompt, a one-unit image
    std::vector<TestPrompt> ps = {test_prompt(c, 5, 4, 6, 3, seed + 1), test_prompt(c, 2, 8, 4, 7, seed + 2),
                                  test_prompt(c, 9, 0, 0, 0, seed + 3), test_prompt(c, 0, 2, 2, 1, seed + 4)};
    TestBatch b = test_batch(c, ps);
    std::vector<int64_t> tgt = next_targets(b);
    for (float tau : {1.0f, 0.7f}) {
        char what[256];
        snprintf(what, sizeof what, "%s, 4 prompts, T %.1f", spec.name, tau);
        Outputs cpu = cpu_run(&m, b, tgt, tau);
        compare(what, cpu, gpu_run(&g32, b, tgt, tau), gpu_run(&g16, b, tgt, tau), tgt);
    }

    // the pixels as one part per image, uploaded in 4 KiB waves that cut through parts and patches: the same
    // image features, to the bit, as one part in the default waves
    if (b.n_images) {
        std::vector<const float *> parts;
        std::vector<int64_t> counts;
        int64_t at = 0;
        for (int i = 0; i < b.n_images; i++) {
            int64_t n = b.grid[(size_t)3 * i] * b.grid[(size_t)3 * i + 1] * b.grid[(size_t)3 * i + 2];
            parts.push_back(b.pixels.data() + at * c->vision.patch_dim), counts.push_back(n);
            at += n;
        }
        size_t bytes = (size_t)b.NI * c->hidden * sizeof(float);
        void *one = dev_alloc(bytes), *waves = dev_alloc(bytes);
        EXPECT_OK(cuda_vision_forward(&g32, b.pixels.data(), b.P, b.grid.data(), b.n_images, one));
        EXPECT_OK(cuda_model_set_upload_wave(&g32, 4096));
        EXPECT_OK(cuda_vision_forward_parts(&g32, parts.data(), counts.data(), (int)parts.size(), b.grid.data(),
                                            b.n_images, waves));
        EXPECT_OK(cuda_model_sync(&g32));
        float *x = dev_to_f32(one, b.NI * c->hidden, CUDA_F32), *y = dev_to_f32(waves, b.NI * c->hidden, CUDA_F32);
        EXPECT(memcmp(x, y, bytes) == 0, "%s: image features after the upload in 4 KiB waves over %d "
               "parts differ from one part's", spec.name, (int)parts.size());
        EXPECT_OK(cuda_model_set_upload_wave(&g32, 0));
        EXPECT_FAIL(cuda_model_set_upload_wave(&g32, 100), "at least 4096");
        dev_free(one), dev_free(waves), free(x), free(y);
    }

    // prompts followed by responses holding the image-pad id as an ordinary token
    std::vector<std::vector<int64_t>> resp = {{c->image_token_id, 3, c->image_token_id}, {5}, {c->image_token_id},
                                              {7, 8}};
    TestBatch br = test_batch(c, ps, resp);
    std::vector<int64_t> tr = next_targets(br);
    char what_r[256];
    snprintf(what_r, sizeof what_r, "%s, prompts + responses", spec.name);
    compare(what_r, cpu_run(&m, br, tr, 1.0f), gpu_run(&g32, br, tr, 1.0f), gpu_run(&g16, br, tr, 1.0f), tr);

    // one token per sequence: the split-K decode attention inside a packed forward
    std::vector<TestPrompt> ones = {test_prompt(c, 1, 0, 0, 0, seed + 5), test_prompt(c, 1, 0, 0, 0, seed + 6),
                                    test_prompt(c, 1, 0, 0, 0, seed + 7)};
    TestBatch b1 = test_batch(c, ones);
    std::vector<int64_t> t1 = {3, 1, 4};
    char what[256];
    snprintf(what, sizeof what, "%s, 3 one-token sequences", spec.name);
    compare(what, cpu_run(&m, b1, t1, 1.0f), gpu_run(&g32, b1, t1, 1.0f), gpu_run(&g16, b1, t1, 1.0f), t1);

    // bad batches
    cuda_llm_acts a;
    EXPECT_OK(cuda_llm_acts_init(&a, &g32, b.T, b.B, 0));
    cuda_llm_batch gb = gpu_batch(b, NULL);
    EXPECT_FAIL(cuda_llm_forward(&g32, &gb, &a), "image feature");
    std::vector<int64_t> bad = b1.ids;
    bad[1] = c->vocab;
    cuda_llm_batch bb = {b1.B, b1.T, b1.cu.data(), bad.data(), b1.pos.data(), NULL, 0, NULL};
    EXPECT_FAIL(cuda_llm_forward(&g32, &bb, &a), "outside the vocabulary");
    cuda_llm_acts small;
    EXPECT_OK(cuda_llm_acts_init(&small, &g32, 2, 3, 0));
    cuda_llm_batch b1g = gpu_batch(b1, NULL);
    EXPECT_FAIL(cuda_llm_forward(&g32, &b1g, &small), "sized for");
    cuda_llm_acts_free(&small);
    cuda_llm_acts_free(&a);
    cuda_model_free(&g32);
    cuda_model_free(&g16);
    maye_model_free(&m);
}

// ----------------------------------------------------------------------------
// golden fixtures

// Compares got with the fixture's `s.name` when present (absolute tolerance, as the CPU golden test).
static void fixture_compare(const std::string &model, const maye_safetensors *st, const std::string &s,
                            const char *name, const float *got, int64_t n, double tol) {
    std::vector<float> want = golden_f32(st, s, name);
    if (want.empty()) return;
    std::string what = model + "/" + s + "." + name + " (GPU fp32)";
    EXPECT((int64_t)want.size() >= n, "%s: %lld values, the fixture has %zu", what.c_str(), (long long)n, want.size());
    if ((int64_t)want.size() < n) return;
    test_close_f32(what.c_str(), got, want.data(), n, tol, 0);
}

static void golden_model(cuda_ctx *ctx, const std::string &dir) {
    maye_model m;
    maye_safetensors st;
    std::string exp = dir + "/expected.safetensors", model = dir.substr(dir.rfind('/') + 1);
    if (maye_model_load(&m, dir.c_str()) < 0 || maye_st_open(&st, exp.c_str()) < 0) {
        EXPECT(0, "%s: %s", dir.c_str(), maye_errmsg());
        return;
    }
    const maye_model_config *c = &m.cfg;
    cuda_model g32, g16;
    EXPECT_OK(cuda_model_upload(&g32, ctx, &m, CUDA_F32, false));
    EXPECT_OK(cuda_model_upload(&g16, ctx, &m, CUDA_BF16, false));
    check_bf16_download(&g16, &m, model.c_str());
    std::vector<std::string> names = golden_samples(&st);
    EXPECT(!names.empty(), "%s: no samples (<name>.input_ids) in expected.safetensors", dir.c_str());
    std::vector<TestPrompt> all;
    for (const std::string &s : names) {
        TestPrompt p = golden_prompt(c, &st, s, 0);
        TestBatch b = test_batch(c, {p});
        std::vector<int64_t> tgt = next_targets(b);
        Outputs cpu = cpu_run(&m, b, tgt, 1.0f), g = gpu_run(&g32, b, tgt, 1.0f);
        fixture_compare(model, &st, s, "image_embeds", g.embeds.data(), (int64_t)g.embeds.size(), FP32_TOL);
        fixture_compare(model, &st, s, "last_hidden", g.hidden.data(), (int64_t)g.hidden.size(), FP32_TOL);
        fixture_compare(model, &st, s, "logits", g.logits.data(), (int64_t)g.logits.size(), LOGIT_TOL);
        fixture_compare(model, &st, s, "token_logprobs", g.lp.data(), b.T - 1, LOGIT_TOL);
        std::string what = model + "/" + s + ": logits vs CPU";
        test_close_f32(what.c_str(), g.logits.data(), cpu.logits.data(), (int64_t)cpu.logits.size(), LOGIT_TOL, 0);
        what = model + "/" + s;
        compare(what.c_str(), cpu, g, gpu_run(&g16, b, tgt, 1.0f), tgt);
        all.push_back(p);
    }
    if (all.size() > 1) {
        TestBatch b = test_batch(c, all);
        std::vector<int64_t> tgt = next_targets(b);
        std::string what = model + ": all samples packed";
        compare(what.c_str(), cpu_run(&m, b, tgt, 1.0f), gpu_run(&g32, b, tgt, 1.0f), gpu_run(&g16, b, tgt, 1.0f), tgt);
    }
    cuda_model_free(&g32);
    cuda_model_free(&g16);
    maye_st_close(&st);
    maye_model_free(&m);
}

int main(void) {
    cuda_ctx *ctx = cuda_test_start("test_cuda_model");
    uint64_t seed = 11;
    for (const TestModelSpec &spec : test_models) random_model(ctx, spec, seed += 100);
    std::vector<std::string> dirs = golden_model_dirs();
    if (dirs.empty()) printf("golden fixtures not found (set MAYE_FIXTURES): only random models checked\n");
    for (const std::string &d : dirs) golden_model(ctx, d);
    cuda_ctx_free(ctx);
    return TEST_RESULT();
}
