// The GPU generator (model/cuda/generate.h): greedy decoding in fp32 reproduces every golden fixture's
// greedy_ids (transformers' generate()), each sample alone and all samples together with two responses each
// in three slots (admission waves, sibling prompt copies); seeded sampling (temperature, top-k, top-p,
// min_tokens) on random models gives the CPU engine's tokens and log-probs (maye_gen_run) in fp32, with
// the decode step captured in a CUDA graph and launched eagerly; bf16 runs give valid responses and the
// graph and eager steps agree bit for bit, and so does a run under the profiler, whose report holds every
// decode step's regions. Exits 77 without a GPU.
#include "test_cuda_model_common.h"

extern "C" {
#include "model/generate.h"
}
#include "model/cuda/generate.h"

#include <cjson/cJSON.h>

// ----------------------------------------------------------------------------
// helpers

// Runs the GPU generator on requests; res must be freed with maye_gen_result_free.
static int gpu_generate(cuda_model *gm, const maye_gen_config *cfg, bool graph, const maye_gen_request *rq, int n,
                        maye_gen_result *res) {
    cuda_gen g;
    if (cuda_gen_init(&g, gm, cfg, graph) < 0) return -1;
    int rc = cuda_gen_run(&g, rq, n, res);
    if (rc == 0)
        printf("  %d requests x %d: %lld tokens in %lld decode steps (graph %s)\n", n, cfg->n,
               (long long)g.stats.tokens, (long long)g.stats.decode_steps,
               !graph ? "off" : g.graph_failed ? "FAILED, eager" : "on");
    EXPECT(!graph || !g.graph_failed, "the decode step could not be captured in a CUDA graph");
    cuda_gen_free(&g);
    return rc;
}

// Two result sets give the same responses: tokens and finish reasons exactly, log-probs within tol (< 0:
// bit for bit).
static void same_results(const char *what, const maye_gen_result *a, const maye_gen_result *b, int n, int n_out,
                         double tol) {
    for (int r = 0; r < n; r++)
        for (int k = 0; k < n_out; k++) {
            const maye_gen_output *x = &a[r].out[k], *y = &b[r].out[k];
            int same_n = x->n == y->n;
            EXPECT(same_n, "%s: request %d response %d has %d tokens vs %d", what, r, k, x->n, y->n);
            for (int t = 0; same_n && t < x->n; t++)
                if (x->ids[t] != y->ids[t]) {
                    EXPECT(x->ids[t] == y->ids[t], "%s: request %d response %d token %d is %d vs %d", what, r, k, t,
                           x->ids[t], y->ids[t]);
                    same_n = 0;
                }
            if (same_n) {
                char name[512];
                snprintf(name, sizeof name, "%s: request %d response %d log-probs", what, r, k);
                if (tol < 0) {
                    EXPECT(!memcmp(x->logprobs, y->logprobs, sizeof(float) * (size_t)x->n), "%s differ", name);
                } else {
                    test_close_f32(name, x->logprobs, y->logprobs, x->n, tol, 0);
                }
            }
            EXPECT(x->finish == y->finish, "%s: request %d response %d finish %d vs %d", what, r, k, x->finish, y->finish);
        }
}

// ----------------------------------------------------------------------------
// greedy decoding against the fixtures

struct GreedySample {
    TestPrompt p;
    std::vector<int64_t> want;
    std::string name;
};

static void check_greedy(const char *what, const maye_gen_output *o, const GreedySample &s, const maye_gen_config *g) {
    int n = 0;
    while (n < (int)s.want.size()) {
        int stop = 0;
        for (int i = 0; i < g->n_stop; i++) stop |= s.want[(size_t)n] == g->stop_ids[i];
        n++;
        if (stop) break;
    }
    EXPECT(o->n == n, "%s: %d tokens, expected %d", what, o->n, n);
    for (int t = 0; t < n && t < o->n; t++)
        if (o->ids[t] != s.want[(size_t)t]) {
            EXPECT(o->ids[t] == s.want[(size_t)t], "%s: token %d is %d, transformers gave %lld", what, t, o->ids[t],
                   (long long)s.want[(size_t)t]);
            break;
        }
}

static void golden_greedy(cuda_ctx *ctx, const std::string &dir) {
    std::string man_path = dir + "/manifest.json", exp = dir + "/expected.safetensors";
    maye_buf man = {};
    if (!maye_file_exists(man_path.c_str()) || maye_read_file(man_path.c_str(), &man) < 0) return;
    maye_safetensors st;
    maye_model m;
    if (maye_st_open(&st, exp.c_str()) < 0 || maye_model_load(&m, dir.c_str()) < 0) {
        EXPECT(0, "%s: %s", dir.c_str(), maye_errmsg());
        maye_buf_free(&man);
        return;
    }
    std::vector<GreedySample> gs;
    cJSON *root = cJSON_Parse(man.data ? man.data : "");
    const cJSON *samples = cJSON_GetObjectItemCaseSensitive(root, "samples"), *it;
    cJSON_ArrayForEach(it, samples) {
        const cJSON *idx = cJSON_GetObjectItemCaseSensitive(it, "index"), *np = cJSON_GetObjectItemCaseSensitive(it, "n_prompt");
        if (!cJSON_IsNumber(idx) || !cJSON_IsNumber(np)) continue;
        GreedySample s;
        s.name = "s" + std::to_string(idx->valueint);
        s.want = golden_i64(&st, s.name, "greedy_ids");
        if (s.want.empty()) continue;
        s.p = golden_prompt(&m.cfg, &st, s.name, np->valueint);
        gs.push_back(s);
    }
    cJSON_Delete(root);
    maye_buf_free(&man);
    if (!gs.empty()) {
        cuda_model gm;
        EXPECT_OK(cuda_model_upload(&gm, ctx, &m, CUDA_F32, false));
        maye_gen_config g;
        memset(&g, 0, sizeof g);
        g.n = 1, g.sample = {0, 1, 0}, g.max_batch_seqs = 8;
        for (const GreedySample &s : gs) g.max_tokens = (int)s.want.size() > g.max_tokens ? (int)s.want.size() : g.max_tokens;
        EXPECT_OK(maye_gen_stop_ids(&m, NULL, g.stop_ids, &g.n_stop));
        std::vector<maye_gen_request> rq;
        for (const GreedySample &s : gs) {
            rq.push_back({s.p.ids.data(), (int)s.p.ids.size(), s.p.n_images ? s.p.pixels.data() : NULL, s.p.P,
                          s.p.grid.data(), s.p.n_images, maye_sample_stream_key(s.name.c_str(), 0, 0), s.name.c_str()});
            g.max_batch_tokens += (int64_t)s.p.ids.size() + g.max_tokens + 64;
        }
        g.max_batch_tokens *= 4;
        for (bool graph : {true, false}) {
            g.n = 1, g.max_batch_seqs = 8;
            for (size_t i = 0; i < gs.size(); i++) { // alone
                maye_gen_result res;
                if (gpu_generate(&gm, &g, graph, &rq[i], 1, &res) < 0) {
                    EXPECT(0, "%s/%s: %s", dir.c_str(), gs[i].name.c_str(), maye_errmsg());
                    continue;
                }
                std::string what = dir + "/" + gs[i].name + " greedy on the GPU" + (graph ? "" : " (eager)");
                check_greedy(what.c_str(), &res.out[0], gs[i], &g);
                maye_gen_result_free(&res, 1, 1);
            }
            g.n = 2, g.max_batch_seqs = 3; // together: two responses each, one request per wave
            std::vector<maye_gen_result> res(gs.size());
            if (gpu_generate(&gm, &g, graph, rq.data(), (int)rq.size(), res.data()) < 0) {
                EXPECT(0, "%s batched: %s", dir.c_str(), maye_errmsg());
            } else {
                for (size_t i = 0; i < gs.size(); i++)
                    for (int k = 0; k < 2; k++) {
                        std::string what = dir + "/" + gs[i].name + " greedy in a batch, response " + std::to_string(k);
                        check_greedy(what.c_str(), &res[i].out[k], gs[i], &g);
                    }
                maye_gen_result_free(res.data(), (int)res.size(), 2);
            }
        }
        printf("%s: greedy ids of %zu samples checked\n", dir.c_str(), gs.size());
        cuda_model_free(&gm);
    }
    maye_st_close(&st);
    maye_model_free(&m);
}

// ----------------------------------------------------------------------------
// the profiler

static const cuda_prof_total *find_region(const cuda_prof_report &r, const char *name) {
    for (int i = 0; i < r.n; i++)
        if (!strcmp(r.regions[i].name, name)) return &r.regions[i];
    return NULL;
}

// A run under cuda_model_profile_begin/_end (graph requested: the profiler launches every step eagerly): the
// report's regions add up to no more than the run's wall time, each decode step charged its layers' regions,
// its lm_head and its sampling, every prefill and vision region a whole number of passes over the layers.
static int profiled_generate(cuda_model *gm, const maye_gen_config *cfg, const maye_gen_request *rq, int n,
                             maye_gen_result *res, bool images) {
    const maye_model_config *c = &gm->cfg;
    cuda_gen g;
    if (cuda_gen_init(&g, gm, cfg, true) < 0) return -1;
    cuda_prof_report r;
    EXPECT_FAIL(cuda_model_profile_end(gm, &r), "no profile is running");
    EXPECT_OK(cuda_model_profile_begin(gm));
    EXPECT_FAIL(cuda_model_profile_begin(gm), "already running");
    double t0 = maye_now();
    int rc = cuda_gen_run(&g, rq, n, res);
    double wall_ms = (maye_now() - t0) * 1e3;
    EXPECT_OK(cuda_model_profile_end(gm, &r));
    long steps = (long)g.stats.decode_steps;
    cuda_gen_free(&g);
    if (rc < 0) return rc;
    printf("  profile: %d regions, %.3f ms of GPU time in a %.3f ms run (%ld holds, %ld stalls), %ld decode steps\n",
           r.n, r.total_ms, wall_ms, r.holds, r.stalls, steps);
    EXPECT(r.total_ms > 0 && r.total_ms <= wall_ms, "profile: %.3f ms charged in a run of %.3f ms", r.total_ms, wall_ms);
    static const char *phases[] = {"vision.", "prefill.", "first_draw.", "decode."};
    double sum = 0;
    for (int i = 0; i < r.n; i++) {
        const cuda_prof_total *t = &r.regions[i];
        bool known = false;
        for (const char *p : phases) known |= !strncmp(t->name, p, strlen(p));
        EXPECT(known, "profile: region %s is outside the generator's phases", t->name);
        EXPECT(t->ms >= 0 && t->calls >= 1, "profile: region %s has %.3f ms in %ld calls", t->name, t->ms, t->calls);
        EXPECT(i == 0 || t->ms <= r.regions[i - 1].ms, "profile: region %d (%s) is out of order", i, t->name);
        sum += t->ms;
    }
    EXPECT(fabs(sum - r.total_ms) <= 1e-6 * r.total_ms, "profile: regions add up to %.6f ms, total %.6f", sum, r.total_ms);
    double phase_sum = 0;
    for (int k = 0; k < r.n_phases; k++) {
        char dotted[sizeof r.phases[k].name + 1];
        snprintf(dotted, sizeof dotted, "%s.", r.phases[k].name);
        bool known = false;
        for (const char *p : phases) known |= !strcmp(dotted, p);
        EXPECT(known, "profile: phase %s is not one of the generator's", r.phases[k].name);
        phase_sum += r.phases[k].ms;
    }
    EXPECT(fabs(phase_sum - r.total_ms) <= 1e-6 * r.total_ms, "profile: phases add up to %.6f ms, total %.6f",
           phase_sum, r.total_ms);
    struct {
        const char *name;
        long per;  // calls per pass
        bool exact; // exactly `steps` passes (decode), else a positive whole number of them
    } want[] = {{"decode.attention", c->layers, true},          {"decode.qkv_proj", c->layers, true},
                {"decode.down_proj_residual", c->layers, true}, {"decode.attn_norm", c->layers, true},
                {"decode.mlp_norm", c->layers, true},           {"decode.lm_head", 1, true},
                {"decode.sample", 1, true},                     {"prefill.attention", c->layers, false},
                {"prefill.gate_up_proj", c->layers, false},     {"first_draw.sample", 1, false},
                {"vision.attention", c->vision.depth, false},   {"vision.norm2", c->vision.depth, false}};
    for (const auto &w : want) {
        if (!images && !strncmp(w.name, "vision.", 7)) continue;
        const cuda_prof_total *t = find_region(r, w.name);
        EXPECT(t, "profile: no region %s", w.name);
        if (!t) continue;
        EXPECT(w.exact ? t->calls == w.per * steps : t->calls % w.per == 0,
               "profile: %s entered %ld times (%ld per pass, %ld decode steps)", w.name, t->calls, w.per, steps);
    }
    return 0;
}

// ----------------------------------------------------------------------------
// seeded sampling against the CPU engine

static void random_sampling(cuda_ctx *ctx, const TestModelSpec &spec, uint64_t seed) {
    maye_model m;
    if (maye_model_init(&m, spec.json, spec.name, seed) < 0) maye_die("%s: %s", spec.name, maye_errmsg());
    const maye_model_config *c = &m.cfg;
    std::vector<TestPrompt> ps = {test_prompt(c, 6, 4, 6, 3, seed + 1), test_prompt(c, 11, 0, 0, 0, seed + 2),
                                  test_prompt(c, 1, 8, 4, 2, seed + 3)};
    const char *names[] = {"q0", "q1", "q2"};
    std::vector<maye_gen_request> rq;
    for (size_t i = 0; i < ps.size(); i++)
        rq.push_back({ps[i].ids.data(), (int)ps[i].ids.size(), ps[i].n_images ? ps[i].pixels.data() : NULL, ps[i].P,
                      ps[i].grid.data(), ps[i].n_images, maye_sample_stream_key(names[i], 3, 7), names[i]});
    int n = (int)rq.size();
    maye_gen_config g;
    memset(&g, 0, sizeof g);
    g.n = 2, g.sample = {1.0f, 0.9f, 20}, g.seed = seed * 7 + 1, g.max_tokens = 14, g.min_tokens = 2;
    g.max_batch_seqs = 16, g.max_batch_tokens = 4096;
    EXPECT_OK(maye_gen_stop_ids(&m, NULL, g.stop_ids, &g.n_stop));

    // the CPU engine
    std::vector<maye_gen_result> cpu(rq.size());
    maye_gen_engine e;
    EXPECT_OK(maye_gen_engine_init(&e, &m, &g));
    EXPECT_OK(maye_gen_run(&e, rq.data(), n, cpu.data()));
    maye_gen_engine_free(&e);

    // fp32 on the GPU, all at once and in waves of two requests, graph and eager
    cuda_model g32, g16;
    EXPECT_OK(cuda_model_upload(&g32, ctx, &m, CUDA_F32, false));
    for (int seqs : {16, 4})
        for (bool graph : {true, false}) {
            maye_gen_config gc = g;
            gc.max_batch_seqs = seqs;
            std::vector<maye_gen_result> res(rq.size());
            char what[256];
            snprintf(what, sizeof what, "%s fp32, %d slots%s vs CPU engine", spec.name, seqs, graph ? "" : ", eager");
            if (gpu_generate(&g32, &gc, graph, rq.data(), n, res.data()) < 0) {
                EXPECT(0, "%s: %s", what, maye_errmsg());
                continue;
            }
            same_results(what, res.data(), cpu.data(), n, g.n, 1e-4);
            maye_gen_result_free(res.data(), n, g.n);
        }

    // bf16: valid responses, graph and eager identical
    EXPECT_OK(cuda_model_upload(&g16, ctx, &m, CUDA_BF16, false));
    std::vector<maye_gen_result> a(rq.size()), b(rq.size());
    int ra = gpu_generate(&g16, &g, true, rq.data(), n, a.data()), rb = gpu_generate(&g16, &g, false, rq.data(), n, b.data());
    EXPECT(ra == 0 && rb == 0, "%s bf16 generation: %s", spec.name, maye_errmsg());
    if (ra == 0 && rb == 0) {
        char what[256];
        snprintf(what, sizeof what, "%s bf16 graph vs eager", spec.name);
        same_results(what, a.data(), b.data(), n, g.n, -1);
        int agree = 0, total = 0;
        for (int r = 0; r < n; r++)
            for (int k = 0; k < g.n; k++) {
                const maye_gen_output *o = &a[r].out[k];
                EXPECT(o->n >= 1 && o->n <= g.max_tokens, "%s bf16: %d tokens", spec.name, o->n);
                for (int t = 0; t < o->n; t++) {
                    EXPECT(o->ids[t] >= 0 && o->ids[t] < c->vocab && isfinite(o->logprobs[t]) && o->logprobs[t] <= 0,
                           "%s bf16: token %d = %d, log-prob %g", spec.name, t, o->ids[t], o->logprobs[t]);
                    if (t < cpu[r].out[k].n) agree += o->ids[t] == cpu[r].out[k].ids[t], total++;
                }
            }
        printf("%-40s bf16 tokens equal to the CPU engine's: %d of %d\n", spec.name, agree, total);
    }
    std::vector<maye_gen_result> p(rq.size());
    bool images = false;
    for (int r = 0; r < n; r++) images |= rq[(size_t)r].n_images > 0;
    int rp = profiled_generate(&g16, &g, rq.data(), n, p.data(), images);
    EXPECT(rp == 0, "%s bf16 generation under the profiler: %s", spec.name, maye_errmsg());
    if (rp == 0 && ra == 0) {
        char what[256];
        snprintf(what, sizeof what, "%s bf16 graph vs profiled", spec.name);
        same_results(what, a.data(), p.data(), n, g.n, -1);
    }
    if (ra == 0) maye_gen_result_free(a.data(), n, g.n);
    if (rb == 0) maye_gen_result_free(b.data(), n, g.n);
    if (rp == 0) maye_gen_result_free(p.data(), n, g.n);

    // settings the GPU generator refuses
    maye_gen_config bad = g;
    char *stop = (char *)"</answer>";
    bad.stop_strings = &stop, bad.n_stop_strings = 1;
    cuda_gen gen;
    EXPECT_FAIL(cuda_gen_init(&gen, &g32, &bad, true), "stop_strings");
    bad = g, bad.max_batch_tokens = 8;
    std::vector<maye_gen_result> none(rq.size());
    EXPECT_FAIL(gpu_generate(&g32, &bad, true, rq.data(), n, none.data()), "max_batch_tokens");

    maye_gen_result_free(cpu.data(), n, g.n);
    cuda_model_free(&g32);
    cuda_model_free(&g16);
    maye_model_free(&m);
}

int main(void) {
    cuda_ctx *ctx = cuda_test_start("test_cuda_model_generate");
    uint64_t seed = 5;
    for (const TestModelSpec &spec : test_models) random_sampling(ctx, spec, seed += 10);
    std::vector<std::string> dirs = golden_model_dirs();
    if (dirs.empty()) printf("golden fixtures not found (set MAYE_FIXTURES): greedy ids not checked\n");
    for (const std::string &d : dirs) golden_greedy(ctx, d);
    cuda_ctx_free(ctx);
    return TEST_RESULT();
}
