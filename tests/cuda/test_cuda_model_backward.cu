// The language model's backward and optimizer on the GPU (model/cuda/backward.h) against the CPU backward
// (model/backward.h) on random models of both architectures (odd sizes, tied and untied embeddings,
// tensor-core head dims) and the golden fixture models, on packed batches with images and random
// dL/dlogprob (some rows zero): in fp32 every gradient of the language model within 1e-3 of the tensor's max
// magnitude, recomputation bit-identical to kept activations, a second micro-batch doubling the gradients;
// clipping and AdamW from the same gradients give the CPU's norm and updated weights; in bf16 (fp32 master
// weights) the gradients' relative L2 error stays small with both attention backwards (flash-style kernels for
// the tensor-core head dims, per-segment GEMMs), a second step gives the same gradient bits (so does a step
// under the profiler, whose report charges every layer's regions once), and the bf16 weights are the rounded
// master weights after a step. A training state larger than the device fails with a message, keeps no device
// memory and leaves no pending error for the next step. Exits 77 without a GPU.
#include "test_cuda_model_common.h"

extern "C" {
#include "model/backward.h"
}
#include "kernels/cuda/model_kernels.h"
#include "model/cuda/backward.h"

#define GRAD_TOL 1e-3
#define BF16_GRAD_L2 0.05
#define TAU 0.9f

static const unsigned LLM = 1u << MAYE_PARAM_LLM;

// ----------------------------------------------------------------------------
// gradients

// Every language-model tensor of b against a (1e-3 of each tensor's max magnitude), named by checkpoint name.
static void compare_grads(const char *what, const maye_model *m, const maye_weights *got, const maye_weights *want,
                          double tol) {
    for (int i = 0; i < m->n_specs; i++) {
        const maye_param *p = &m->specs[i];
        if (p->group != MAYE_PARAM_LLM) continue;
        const float *g = *(float *const *)((const char *)got + p->field), *w = *(float *const *)((const char *)want + p->field);
        for (int c = 0; c < p->count; c++) {
            char name[512], hub[160];
            snprintf(hub, sizeof hub, p->hub, c);
            snprintf(name, sizeof name, "%s: grad %s", what, hub);
            test_close_rel_max(name, g + (size_t)c * p->numel, w + (size_t)c * p->numel, (int64_t)p->numel, tol);
        }
    }
}

// ||a - b|| / ||b|| over every language-model tensor.
static double rel_l2(const maye_model *m, const maye_weights *a, const maye_weights *b) {
    double num = 0, den = 0;
    for (int i = 0; i < m->n_specs; i++) {
        const maye_param *p = &m->specs[i];
        if (p->group != MAYE_PARAM_LLM) continue;
        const float *x = *(float *const *)((const char *)a + p->field), *y = *(float *const *)((const char *)b + p->field);
        for (size_t k = 0; k < (size_t)p->count * p->numel; k++) {
            double d = (double)x[k] - y[k];
            num += d * d, den += (double)y[k] * y[k];
        }
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

// The GPU's gradients as CPU tensors (a maye_grads buffer for the language model).
static void download_grads(cuda_model *gm, cuda_llm_train *tr, const maye_model *m, maye_grads *out) {
    maye_grads_init(out, m, LLM);
    EXPECT_OK(cuda_model_unstack(gm, tr->grads, CUDA_F32, gm->group_off[MAYE_PARAM_LLM], LLM, &out->g));
}

// ----------------------------------------------------------------------------
// one case

struct Case {
    TestBatch b;
    std::vector<float> embeds;         // (NI, C) CPU image features, fed to both sides
    std::vector<int64_t> targets;      // (T)
    std::vector<float> dlogp;          // (T)
};

static Case make_case(const maye_model *m, const std::vector<TestPrompt> &ps, uint64_t seed,
                      const std::vector<std::vector<int64_t>> &responses = {}) {
    Case k;
    k.b = test_batch(&m->cfg, ps, responses);
    const TestBatch &b = k.b;
    k.embeds.resize((size_t)(b.NI * m->cfg.hidden + 1));
    if (b.n_images) EXPECT_OK(maye_vision_forward(m, b.pixels.data(), b.P, b.grid.data(), b.n_images, k.embeds.data()));
    k.targets.resize((size_t)b.T);
    k.dlogp.resize((size_t)b.T);
    maye_rng rng;
    maye_rng_init(&rng, seed, 0x646c6f6770ULL);
    for (int s = 0; s < b.B; s++)
        for (int i = b.cu[s]; i < b.cu[s + 1]; i++) {
            k.targets[(size_t)i] = i + 1 < b.cu[s + 1] ? b.ids[(size_t)i + 1] : -1;
            k.dlogp[(size_t)i] = i % 5 == 3 ? 0.0f : maye_rng_normal(&rng) / b.T;
        }
    return k;
}

// The CPU's log-probs and gradients of a case.
static void cpu_backward(const maye_model *m, const Case &k, std::vector<float> &lp, maye_grads *g) {
    const TestBatch &b = k.b;
    maye_llm_train lt;
    maye_llm_train_init(&lt, &m->cfg, b.T, false);
    maye_grads_init(g, m, LLM);
    maye_llm_batch cb = {b.B, b.T, b.cu.data(), b.ids.data(), b.pos.data(), b.NI ? k.embeds.data() : NULL, b.NI,
                         b.n_prompt_or_null()};
    lp.resize((size_t)b.T);
    EXPECT_OK(maye_llm_forward(m, &cb, &lt.acts));
    EXPECT_OK(maye_llm_logprobs(m, &lt.acts, k.targets.data(), TAU, lp.data(), NULL));
    EXPECT_OK(maye_llm_backward(m, &lt, &cb, k.targets.data(), TAU, lp.data(), k.dlogp.data(), g, NULL));
    maye_llm_train_free(&lt);
}

// Forward, log-probs and `times` backwards of a case on the GPU into tr (zeroed first); returns the log-probs.
static std::vector<float> gpu_backward(cuda_model *gm, cuda_llm_train *tr, const Case &k, const void *d_embeds,
                                       int times) {
    const TestBatch &b = k.b;
    std::vector<float> lp((size_t)b.T);
    cuda_llm_batch gb = gpu_batch(b, d_embeds);
    EXPECT_OK(cuda_llm_train_zero(gm, tr));
    EXPECT_OK(cuda_llm_forward(gm, &gb, &tr->acts));
    EXPECT_OK(cuda_llm_logprobs(gm, &tr->acts, k.targets.data(), TAU, lp.data(), NULL));
    for (int i = 0; i < times; i++)
        EXPECT_OK(cuda_llm_backward(gm, tr, &gb, k.targets.data(), TAU, lp.data(), k.dlogp.data()));
    EXPECT_OK(cuda_model_sync(gm));
    return lp;
}

// The profile of zero + forward + log-probs + backward (gpu_backward) over L layers: every region in one of
// those phases, each layer's regions entered once per layer, the rest once.
static void check_step_profile(const char *what, const cuda_prof_report &r, int L) {
    static const char *phases[] = {"optimizer.", "forward.", "logprobs.", "backward."};
    for (int i = 0; i < r.n; i++) {
        bool known = false;
        for (const char *p : phases) known |= !strncmp(r.regions[i].name, p, strlen(p));
        EXPECT(known, "%s: profile region %s is outside the step's phases", what, r.regions[i].name);
    }
    struct {
        const char *name;
        long calls;
    } want[] = {{"optimizer.zero_grads", 1},       {"forward.attention", L},         {"forward.gate_up_proj", L},
                {"forward.attn_norm", L},          {"forward.mlp_norm", L},           {"logprobs.logprobs", 1},
                {"backward.logprobs_grad", 1},     {"backward.final_norm_grad", 1},  {"backward.attention_grad", L},
                {"backward.down_proj_dw", L},      {"backward.qkv_proj_dx", L},      {"backward.ln1_grad", L},
                {"backward.ln2_grad", L},          {"backward.embed_grad", 1}};
    for (const auto &w : want) {
        long calls = -1;
        double ms = -1;
        for (int i = 0; i < r.n; i++)
            if (!strcmp(r.regions[i].name, w.name)) calls = r.regions[i].calls, ms = r.regions[i].ms;
        EXPECT(calls == w.calls && ms >= 0, "%s: profile region %s entered %ld times (want %ld), %.3f ms", what, w.name,
               calls, w.calls, ms);
    }
    EXPECT(r.total_ms > 0, "%s: the profile charged %.3f ms", what, r.total_ms);
    printf("%-48s profile: %d regions, %.3f ms, largest %s %.3f ms\n", what, r.n, r.total_ms,
           r.n ? r.regions[0].name : "-", r.n ? r.regions[0].ms : 0.0);
}

// fp32: gradients against the CPU, recomputation, accumulation; then clipping + AdamW from the CPU's
// gradients. m's weights are updated by the CPU step (fresh_model rebuilds its initial state).
static void fp32_case(cuda_ctx *ctx, const char *what, maye_model *m, const Case &k, maye_model *fresh) {
    const TestBatch &b = k.b;
    std::vector<float> lp;
    maye_grads want;
    cpu_backward(m, k, lp, &want);

    cuda_model gm;
    EXPECT_OK(cuda_model_upload(&gm, ctx, m, CUDA_F32, false));
    void *d_emb = dev_from_f32(k.embeds.data(), b.NI * m->cfg.hidden, CUDA_F32);
    cuda_llm_train keep, rec;
    EXPECT_OK(cuda_llm_train_init(&keep, &gm, b.T + 3, b.B + 1, false));
    EXPECT_OK(cuda_llm_train_init(&rec, &gm, b.T, b.B, true));
    char name[512];
    snprintf(name, sizeof name, "%s: log-probs fp32", what);
    std::vector<float> glp = gpu_backward(&gm, &keep, k, d_emb, 1);
    test_close_f32(name, glp.data(), lp.data(), b.T, 1e-4, 1e-4);
    maye_grads got, got_rec, got_twice;
    download_grads(&gm, &keep, m, &got);
    snprintf(name, sizeof name, "%s fp32", what);
    compare_grads(name, m, &got.g, &want.g, GRAD_TOL);
    gpu_backward(&gm, &rec, k, d_emb, 1);
    download_grads(&gm, &rec, m, &got_rec);
    snprintf(name, sizeof name, "%s recompute vs keep", what);
    compare_grads(name, m, &got_rec.g, &got.g, 1e-6);
    gpu_backward(&gm, &keep, k, d_emb, 2);
    download_grads(&gm, &keep, m, &got_twice);
    for (size_t i = 0; i < got.n_floats; i++) got.memory[i] *= 2;
    snprintf(name, sizeof name, "%s two micro-batches", what);
    compare_grads(name, m, &got_twice.g, &got.g, 1e-6);
    printf("%-48s fp32 gradients: rel L2 to CPU %.2e\n", what, rel_l2(m, &got_rec.g, &want.g));

    // clipping and AdamW from the same gradients
    EXPECT_OK(cuda_model_stack(&gm, keep.grads, CUDA_F32, gm.group_off[MAYE_PARAM_LLM], LLM, &want.g));
    maye_optim_tensor *tab;
    int nt = maye_grads_optim_table(&want, m, &tab);
    maye_adamw_hparams hp = {0.9, 0.95, 1e-3, 0.01};
    maye_adamw opt;
    EXPECT_OK(maye_adamw_init(&opt, &hp, nt, tab));
    double norm_cpu = maye_grad_clip(nt, tab, want.memory, 0.05), norm_gpu = 0;
    maye_adamw_step(&opt, m->params, want.memory, 1e-3);
    EXPECT_OK(cuda_llm_clip(&gm, &keep, 0.05, &norm_gpu));
    EXPECT_OK(cuda_llm_adamw(&gm, &keep, &hp, 1e-3));
    EXPECT(fabs(norm_gpu - norm_cpu) <= 1e-5 * norm_cpu, "%s: gradient norm %.9g on the GPU, %.9g on the CPU", what,
           norm_gpu, norm_cpu);
    // a zero with no backward after it (the projection gradients are left for a backward to write): still zeros
    double norm_none = -1;
    EXPECT_OK(cuda_llm_train_zero(&gm, &keep));
    EXPECT_OK(cuda_llm_clip(&gm, &keep, 0.05, &norm_none));
    EXPECT(norm_none == 0, "%s: gradient norm %g after a zero without a backward, want 0", what, norm_none);
    EXPECT_OK(cuda_model_download(&gm, fresh, LLM));
    for (int i = 0; i < m->n_specs; i++) {
        const maye_param *p = &m->specs[i];
        if (p->group != MAYE_PARAM_LLM) continue;
        snprintf(name, sizeof name, "%s: %s after clip + AdamW", what, p->hub);
        test_close_f32(name, fresh->params + p->offset, m->params + p->offset, (int64_t)p->count * (int64_t)p->numel,
                       1e-6, 1e-5);
    }
    maye_adamw_free(&opt);
    maye_optim_table_free(tab, nt);
    maye_grads_free(&want), maye_grads_free(&got), maye_grads_free(&got_rec), maye_grads_free(&got_twice);
    cuda_llm_train_free(&keep);
    cuda_llm_train_free(&rec);
    dev_free(d_emb);
    cuda_model_free(&gm);
}

// bf16 with fp32 master weights: gradients close to fp32's, bf16 weights = rounded master after AdamW.
static void bf16_case(cuda_ctx *ctx, const char *what, const maye_model *m, const Case &k) {
    const TestBatch &b = k.b;
    std::vector<float> lp;
    maye_grads want;
    cpu_backward(m, k, lp, &want);
    cuda_model gm;
    EXPECT_OK(cuda_model_upload(&gm, ctx, m, CUDA_BF16, true));
    void *d_emb = dev_from_f32(k.embeds.data(), b.NI * m->cfg.hidden, CUDA_BF16);
    // a training state far larger than the device fails with a message naming the allocation, gives back what
    // it took, and leaves no error behind for the next launch (the step below runs)
    size_t free_before = 0, free_after = 0, total = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_before, &total));
    cuda_llm_train huge;
    EXPECT_FAIL(cuda_llm_train_init(&huge, &gm, 1 << 28, 4, false), "allocating");
    CUDA_CHECK(cudaMemGetInfo(&free_after, &total));
    EXPECT(free_after == free_before, "%s: a failed training-state allocation kept %lld bytes of the device", what,
           (long long)free_before - (long long)free_after);
    cuda_llm_train tr;
    EXPECT_OK(cuda_llm_train_init(&tr, &gm, b.T, b.B, false));
    gpu_backward(&gm, &tr, k, d_emb, 1);
    maye_grads got, again, gemm, master, weights;
    download_grads(&gm, &tr, m, &got);
    double err = rel_l2(m, &got.g, &want.g);
    EXPECT(err < BF16_GRAD_L2, "%s: bf16 gradients' relative L2 error %.4g (limit %g)", what, err, BF16_GRAD_L2);
    // the same step again gives the same bits (no atomics anywhere, the flash attention backward included)
    gpu_backward(&gm, &tr, k, d_emb, 1);
    download_grads(&gm, &tr, m, &again);
    EXPECT(!memcmp(again.memory, got.memory, sizeof(float) * got.n_floats), "%s: a second bf16 backward gave other "
           "gradient bits", what);
    // and under the profiler
    maye_grads profiled;
    cuda_prof_report rep;
    EXPECT_OK(cuda_model_profile_begin(&gm));
    gpu_backward(&gm, &tr, k, d_emb, 1);
    EXPECT_OK(cuda_model_profile_end(&gm, &rep));
    download_grads(&gm, &tr, m, &profiled);
    EXPECT(!memcmp(profiled.memory, got.memory, sizeof(float) * got.n_floats), "%s: a bf16 backward under the "
           "profiler gave other gradient bits", what);
    check_step_profile(what, rep, m->cfg.layers);
    maye_grads_free(&profiled);
    // the per-segment GEMM attention backward: as close to the CPU
    cuda_attention_backward_kernel was = cuda_ctx_attention_backward(ctx);
    cuda_ctx_set_attention_backward(ctx, CUDA_ATTN_BWD_GEMM);
    gpu_backward(&gm, &tr, k, d_emb, 1);
    cuda_ctx_set_attention_backward(ctx, was);
    download_grads(&gm, &tr, m, &gemm);
    double err_gemm = rel_l2(m, &gemm.g, &want.g);
    EXPECT(err_gemm < BF16_GRAD_L2, "%s: bf16 gradients with the GEMM attention backward: relative L2 error %.4g "
           "(limit %g)", what, err_gemm, BF16_GRAD_L2);
    bool flash = cuda_attention_backward_flash_supported(CUDA_BF16, m->cfg.head_dim);
    printf("%-48s bf16 gradients: rel L2 to CPU %.2e (%s attention backward), %.2e (GEMM attention backward)\n",
           what, err, flash ? "flash" : "GEMM", err_gemm);
    // the optimizer from the first step's gradients
    gpu_backward(&gm, &tr, k, d_emb, 1);
    maye_adamw_hparams hp = {0.9, 0.95, 1e-3, 0.01};
    double norm = 0;
    EXPECT_OK(cuda_llm_clip(&gm, &tr, 1.0, &norm));
    EXPECT_OK(cuda_llm_adamw(&gm, &tr, &hp, 1e-3));
    maye_grads_init(&master, m, LLM), maye_grads_init(&weights, m, LLM);
    EXPECT_OK(cuda_model_unstack(&gm, gm.master, CUDA_F32, gm.group_off[MAYE_PARAM_LLM], LLM, &master.g));
    EXPECT_OK(cuda_model_unstack(&gm, gm.weights, CUDA_BF16, 0, LLM, &weights.g));
    int64_t bad = 0;
    for (size_t i = 0; i < master.n_floats; i++)
        bad += weights.memory[i] != maye_bf16_to_f32(maye_f32_to_bf16(master.memory[i]));
    EXPECT(bad == 0, "%s: %lld bf16 weights differ from their rounded fp32 master after AdamW", what, (long long)bad);
    maye_grads_free(&want), maye_grads_free(&got), maye_grads_free(&again), maye_grads_free(&gemm);
    maye_grads_free(&master), maye_grads_free(&weights);
    cuda_llm_train_free(&tr);
    dev_free(d_emb);
    cuda_model_free(&gm);
}

// ----------------------------------------------------------------------------
// models

static void random_model(cuda_ctx *ctx, const TestModelSpec &spec, uint64_t seed) {
    maye_model m, fresh;
    if (maye_model_init(&m, spec.json, spec.name, seed) < 0 || maye_model_init(&fresh, spec.json, spec.name, seed) < 0)
        maye_die("%s: %s", spec.name, maye_errmsg());
    const maye_model_config *c = &m.cfg;
    std::vector<TestPrompt> ps = {test_prompt(c, 5, 4, 6, 4, seed + 1), test_prompt(c, 13, 0, 0, 0, seed + 2),
                                  test_prompt(c, 1, 8, 4, 6, seed + 3)};
    // responses after the prompts, one holding the image-pad id as an ordinary (trained) token
    std::vector<std::vector<int64_t>> resp = {{4, c->image_token_id, 9}, {2, 2}, {c->image_token_id, 1}};
    Case k = make_case(&m, ps, seed, resp);
    bf16_case(ctx, spec.name, &m, k);
    fp32_case(ctx, spec.name, &m, k, &fresh);
    maye_model_free(&m);
    maye_model_free(&fresh);
}

static void golden_model(cuda_ctx *ctx, const std::string &dir) {
    maye_model m, fresh;
    maye_safetensors st;
    std::string exp = dir + "/expected.safetensors";
    if (maye_model_load(&m, dir.c_str()) < 0 || maye_model_load(&fresh, dir.c_str()) < 0 ||
        maye_st_open(&st, exp.c_str()) < 0) {
        EXPECT(0, "%s: %s", dir.c_str(), maye_errmsg());
        return;
    }
    std::vector<TestPrompt> ps;
    for (const std::string &s : golden_samples(&st)) ps.push_back(golden_prompt(&m.cfg, &st, s, 0));
    maye_st_close(&st);
    if (!ps.empty()) {
        Case k = make_case(&m, ps, 99);
        fp32_case(ctx, dir.c_str(), &m, k, &fresh);
    }
    maye_model_free(&m);
    maye_model_free(&fresh);
}

int main(void) {
    cuda_ctx *ctx = cuda_test_start("test_cuda_model_backward");
    uint64_t seed = 21;
    for (const TestModelSpec &spec : test_models) random_model(ctx, spec, seed += 100);
    std::vector<std::string> dirs = golden_model_dirs();
    if (dirs.empty()) printf("golden fixtures not found (set MAYE_FIXTURES): only random models checked\n");
    for (const std::string &d : dirs) golden_model(ctx, d);
    cuda_ctx_free(ctx);
    return TEST_RESULT();
}
