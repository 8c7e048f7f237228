// Rollout engine throughput on the CPU with random weights: prefill tokens/s, decode tokens/s with 1, 8 and
// 32 sequences decoded together (and the gain of 32 over 1: decode of one sequence is a memory-bound GEMV,
// 32 make it a GEMM), for a tiny model and a ~100M-parameter one (hidden 768, 12 layers, 12 heads, 4 KV heads,
// MLP 2048, vocabulary 32000, tied embeddings); the time to first token of a prompt with one 448x448 image
// (1024 patches -> 256 visual tokens) through a small Qwen2-VL vision tower (width 640, 8 blocks, 10 heads)
// and the share of it spent in the tower; and the row-invariant matmul of the decode step against OpenBLAS
// sgemm on the decode shapes (the baseline of the same run); and decode with a long context (32 sequences after
// a 1024-token prompt, where the attention over the KV cache weighs as much as the weights). One JSON line
// per result; the machine's load average is printed with each, since the machine may be shared.
//   usage: rollout [--threads N] [--model tiny|100m|all] [--only decode|long|all]
#include "core/error.h"
#include "core/rng.h"
#include "core/util.h"
#include "kernels/cpu/kernels.h"
#include "model/decode.h"
#include "model/generate.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DECODE_REPS 5
#define LONG_PROMPT 1024 // prompt tokens of the long-context decode
#define LONG_TOKENS 8    // new tokens per sequence there
#define LONG_REPS 2

#define CONFIG_FMT                                                                                             \
    "{\"model_type\": \"qwen2_vl\", \"vocab_size\": %d, \"hidden_size\": %d, \"intermediate_size\": %d,"       \
    " \"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d,"                   \
    " \"rms_norm_eps\": 1e-6, \"rope_theta\": 1000000.0, \"tie_word_embeddings\": true,"                      \
    " \"initializer_range\": 0.02, \"rope_scaling\": {\"type\": \"mrope\", \"mrope_section\": [%d, %d, %d]},"  \
    " \"image_token_id\": 3, \"video_token_id\": 4, \"vision_start_token_id\": 1, \"vision_end_token_id\": 2,"  \
    " \"vision_config\": {\"depth\": %d, \"embed_dim\": %d, \"mlp_ratio\": 4, \"num_heads\": %d,"              \
    "   \"in_chans\": 3, \"hidden_size\": %d, \"patch_size\": 14, \"spatial_merge_size\": 2,"                  \
    "   \"temporal_patch_size\": 2, \"hidden_act\": \"quick_gelu\"}}"

typedef struct {
    const char *name;
    int vocab, hidden, inter, layers, heads, kv_heads;
    int v_depth, v_width, v_heads;
    int prefill_tokens, decode_tokens_1, decode_tokens_32;
} bench_model;

static const bench_model MODELS[] = {
    {"tiny", 1024, 64, 128, 2, 4, 2, 1, 32, 2, 512, 256, 128},
    {"100m", 32000, 768, 2048, 12, 12, 4, 8, 640, 10, 512, 24, 16},
};

static char load_avg[64];

static void read_load(void) {
    maye_buf b = {0};
    load_avg[0] = 0;
    if (maye_read_file("/proc/loadavg", &b) == 0 && b.data) {
        int n = 0;
        for (int fields = 0; b.data[n] && fields < 3 && n < (int)sizeof load_avg - 1; n++)
            fields += b.data[n] == ' ';
        snprintf(load_avg, sizeof load_avg, "%.*s", n > 0 ? n - 1 : 0, b.data);
    }
    maye_buf_free(&b);
}

// ----------------------------------------------------------------------------
// prompts and runs

typedef struct {
    int64_t *ids;
    int n;
    float *pixels;
    int64_t P, grid[3];
    int n_images;
} prompt;

// n_text random ids (ids 8.. of the vocabulary), then an image of (1, gh, gw) patches if gh > 0.
static void make_prompt(const maye_model_config *c, prompt *p, int n_text, int gh, int gw, uint64_t seed) {
    memset(p, 0, sizeof *p);
    maye_rng rng;
    maye_rng_init(&rng, seed, 1);
    int pads = gh > 0 ? gh * gw / 4 : 0;
    p->ids = xmalloc(sizeof(int64_t) * (size_t)(n_text + pads + 2));
    if (pads) {
        p->ids[p->n++] = c->vision_start_token_id;
        for (int i = 0; i < pads; i++) p->ids[p->n++] = c->image_token_id;
        p->ids[p->n++] = c->vision_end_token_id;
        p->n_images = 1;
        p->grid[0] = 1, p->grid[1] = gh, p->grid[2] = gw;
        p->P = (int64_t)gh * gw;
        p->pixels = xmalloc(sizeof(float) * (size_t)(p->P * c->vision.patch_dim));
        for (int64_t i = 0; i < p->P * c->vision.patch_dim; i++) p->pixels[i] = maye_rng_normal(&rng);
    }
    for (int i = 0; i < n_text; i++) p->ids[p->n++] = 8 + (int64_t)maye_rng_below(&rng, (uint64_t)(c->vocab - 8));
}

static void free_prompt(prompt *p) { free(p->ids), free(p->pixels); }

// Runs one request with n responses of max_tokens tokens; returns the engine's statistics of the run and
// its wall time.
static maye_gen_stats run(const maye_model *m, const prompt *p, int n, int max_tokens, double *wall) {
    maye_gen_config g = {.n = n, .sample = {1.0f, 1.0f, 0}, .seed = 1, .max_tokens = max_tokens,
                         .max_batch_tokens = (int64_t)n * (p->n + max_tokens + 16), .max_batch_seqs = n};
    maye_gen_engine e;
    if (maye_gen_engine_init(&e, m, &g) < 0) maye_die("%s", maye_errmsg());
    maye_gen_request rq = {p->ids, p->n, p->pixels, p->P, p->grid, p->n_images, 7, "bench"};
    maye_gen_result res;
    double t0 = maye_now();
    if (maye_gen_run(&e, &rq, 1, &res) < 0) maye_die("%s", maye_errmsg());
    *wall = maye_now() - t0;
    maye_gen_result_free(&res, 1, n);
    maye_gen_stats st = e.stats;
    maye_gen_engine_free(&e);
    return st;
}

// ----------------------------------------------------------------------------
// benchmarks

// prefill: one text prompt, one token
static void bench_prefill(const maye_model *mp, const bench_model *bm, size_t n_llm, int threads) {
    prompt p;
    make_prompt(&mp->cfg, &p, bm->prefill_tokens, 0, 0, 1);
    double wall, best = 0;
    for (int r = 0; r < 2; r++) {
        maye_gen_stats st = run(mp, &p, 1, 1, &wall);
        double tps = bm->prefill_tokens / st.prefill_seconds;
        best = tps > best ? tps : best;
    }
    read_load();
    printf("{\"bench\":\"rollout\",\"model\":\"%s\",\"llm_params\":%zu,\"what\":\"prefill\",\"prompt_tokens\":%d,"
           "\"tokens_per_s\":%.1f,\"threads\":%d,\"load\":\"%s\"}\n",
           bm->name, n_llm, bm->prefill_tokens, best, threads, load_avg);
    free_prompt(&p);
    fflush(stdout);

}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// The median over the repetitions of a[rep] / base[rep]: each batch size against the batch-1 run of the same
// repetition, seconds apart, so a change of the machine's load between repetitions cancels out.
static double paired_median(const double *a, const double *base) {
    double r[DECODE_REPS];
    for (int i = 0; i < DECODE_REPS; i++) r[i] = a[i] / base[i];
    qsort(r, DECODE_REPS, sizeof *r, cmp_double);
    return DECODE_REPS % 2 ? r[DECODE_REPS / 2] : 0.5 * (r[DECODE_REPS / 2 - 1] + r[DECODE_REPS / 2]);
}

// decode: 1, 8 and 32 sequences of one 32-token prompt decoded together; the three runs alternate and each
// keeps its best of DECODE_REPS (a shared machine's load changes from one second to the next)
static void bench_decode(const maye_model *m, const bench_model *bm, int threads) {
    prompt p;
    double wall;
    make_prompt(&m->cfg, &p, 32, 0, 0, 2);
    int batches[3] = {1, 8, 32};
    maye_gen_stats best_st[3];
    double best_tps[3] = {0, 0, 0}, rep_tps[3][DECODE_REPS];
    for (int rep = 0; rep < DECODE_REPS; rep++)
        for (int bi = 0; bi < 3; bi++) {
            int B = batches[bi];
            maye_gen_stats st = run(m, &p, B, B == 1 ? bm->decode_tokens_1 : bm->decode_tokens_32, &wall);
            double tps = (st.tokens - st.sequences) / (st.decode_seconds + st.sample_seconds);
            rep_tps[bi][rep] = tps;
            if (tps > best_tps[bi]) best_tps[bi] = tps, best_st[bi] = st;
        }
    read_load();
    for (int bi = 0; bi < 3; bi++) {
        const maye_gen_stats *st = &best_st[bi];
        double t = st->decode_seconds + st->sample_seconds;
        // the first token of each sequence comes from the prefill
        printf("{\"bench\":\"rollout\",\"model\":\"%s\",\"what\":\"decode\",\"batch\":%d,\"steps\":%lld,"
               "\"tokens\":%lld,\"tokens_per_s\":%.1f,\"ms_per_step\":%.2f,\"sampling_share\":%.3f,"
               "\"gain_over_batch1\":%.2f,\"gain_paired_median\":%.2f,\"threads\":%d,\"load\":\"%s\"}\n",
               bm->name, batches[bi], (long long)st->decode_steps, (long long)(st->tokens - st->sequences),
               best_tps[bi], 1e3 * t / st->decode_steps, st->sample_seconds / t, best_tps[bi] / best_tps[0],
               paired_median(rep_tps[bi], rep_tps[0]), threads, load_avg);
    }
    fflush(stdout);
    free_prompt(&p);
}

// decode with a long context: 32 sequences after one LONG_PROMPT-token prompt, LONG_TOKENS new tokens each,
// the best of LONG_REPS
static void bench_long_decode(const maye_model *m, const bench_model *bm, int threads) {
    prompt p;
    double wall, best = 0;
    make_prompt(&m->cfg, &p, LONG_PROMPT, 0, 0, 4);
    maye_gen_stats best_st = {0};
    for (int rep = 0; rep < LONG_REPS; rep++) {
        maye_gen_stats st = run(m, &p, 32, LONG_TOKENS, &wall);
        double tps = (st.tokens - st.sequences) / (st.decode_seconds + st.sample_seconds);
        if (tps > best) best = tps, best_st = st;
    }
    read_load();
    printf("{\"bench\":\"rollout\",\"model\":\"%s\",\"what\":\"decode_long_context\",\"batch\":32,"
           "\"prompt_tokens\":%d,\"steps\":%lld,\"tokens_per_s\":%.1f,\"ms_per_step\":%.2f,\"threads\":%d,"
           "\"load\":\"%s\"}\n",
           bm->name, LONG_PROMPT, (long long)best_st.decode_steps, best,
           1e3 * (best_st.decode_seconds + best_st.sample_seconds) / best_st.decode_steps, threads, load_avg);
    fflush(stdout);
    free_prompt(&p);
}

// time to first token with one 448x448 image (32 x 32 patches -> 256 visual tokens)
static void bench_ttft(const maye_model *m, const bench_model *bm, int threads) {
    prompt p;
    double wall, best = 1e30, vision = 0;
    make_prompt(&m->cfg, &p, 24, 32, 32, 3);
    for (int r = 0; r < 2; r++) {
        maye_gen_stats st = run(m, &p, 1, 1, &wall);
        if (wall < best) best = wall, vision = st.vision_seconds;
    }
    read_load();
    printf("{\"bench\":\"rollout\",\"model\":\"%s\",\"what\":\"time_to_first_token\",\"image\":\"448x448\","
           "\"visual_tokens\":256,\"prompt_tokens\":%d,\"vision\":\"width %d, %d blocks\",\"seconds\":%.3f,"
           "\"vision_seconds\":%.3f,\"vision_share\":%.3f,\"threads\":%d,\"load\":\"%s\"}\n",
           bm->name, p.n, bm->v_width, bm->v_depth, best, vision, vision / best, threads, load_avg);
    free_prompt(&p);
    fflush(stdout);
}

// only: "all", "decode" (the batch 1/8/32 decode alone) or "long" (the long-context decode alone)
static void bench_model_run(const bench_model *bm, int threads, const char *only) {
    bool all = !strcmp(only, "all"), decode = all || !strcmp(only, "decode"), lng = all || !strcmp(only, "long");
    char json[2048];
    int D2 = bm->hidden / bm->heads / 2;
    snprintf(json, sizeof json, CONFIG_FMT, bm->vocab, bm->hidden, bm->inter, bm->layers, bm->heads, bm->kv_heads,
             D2 / 4, (D2 - D2 / 4) / 2, D2 - D2 / 4 - (D2 - D2 / 4) / 2, bm->v_depth, bm->v_width, bm->v_heads,
             bm->hidden);
    maye_model m;
    if (maye_model_init(&m, json, bm->name, 1) < 0) maye_die("%s", maye_errmsg());
    size_t off, n_llm = maye_model_group_range(&m, MAYE_PARAM_LLM, &off);
    fprintf(stderr, "rollout bench: model %s, %.1fM language-model parameters\n", bm->name, n_llm / 1e6);
    if (all) bench_prefill(&m, bm, n_llm, threads);
    if (decode) bench_decode(&m, bm, threads);
    if (lng) bench_long_decode(&m, bm, threads);
    if (all) bench_ttft(&m, bm, threads);
    maye_model_free(&m);
}

// The decode step's matmul against OpenBLAS sgemm on the 100m model's decode shapes.
static void bench_matmul(int threads) {
    static const int shapes[][3] = {{1, 768, 768}, {1, 768, 2048}, {32, 768, 768}, {32, 768, 2048},
                                    {32, 2048, 768}, {32, 768, 32000}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int T = shapes[s][0], C = shapes[s][1], OC = shapes[s][2];
        float *x = xmalloc(sizeof(float) * (size_t)T * C), *w = xmalloc(sizeof(float) * (size_t)OC * C);
        float *y = xmalloc(sizeof(float) * (size_t)T * OC), *pack = NULL;
        if (posix_memalign((void **)&pack, 64, sizeof(float) * maye_matmul_rows_pack_floats(T, C)) != 0) return;
        for (size_t i = 0; i < (size_t)T * C; i++) x[i] = (float)(i % 13) * 0.1f - 0.6f;
        for (size_t i = 0; i < (size_t)OC * C; i++) w[i] = (float)(i % 7) * 0.01f - 0.03f;
        int reps = (int)(2e9 / (2.0 * T * C * OC)) + 2;
        if (reps > 2000) reps = 2000;
        double best_blas = 1e30, best_rows = 1e30;
        for (int round = 0; round < 3; round++) {
            double t0 = maye_now();
            for (int r = 0; r < reps; r++) matmul_forward(y, x, w, NULL, T, C, OC);
            double t1 = maye_now();
            for (int r = 0; r < reps; r++) maye_matmul_rows(y, OC, x, C, w, NULL, T, C, OC, pack);
            double t2 = maye_now();
            best_blas = t1 - t0 < best_blas ? t1 - t0 : best_blas;
            best_rows = t2 - t1 < best_rows ? t2 - t1 : best_rows;
        }
        double flops = 2.0 * T * C * OC * reps;
        read_load();
        printf("{\"bench\":\"rollout\",\"what\":\"matmul\",\"shape\":[%d,%d,%d],\"rows_gflops\":%.1f,"
               "\"openblas_gflops\":%.1f,\"speedup_over_openblas\":%.2f,\"threads\":%d,\"load\":\"%s\"}\n",
               T, C, OC, flops / best_rows / 1e9, flops / best_blas / 1e9, best_blas / best_rows, threads, load_avg);
        fflush(stdout);
        free(x), free(w), free(y), free(pack);
    }
}

int main(int argc, char **argv) {
    int threads = 0;
    const char *which = "all", *only = "all";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--model")) which = argv[i + 1];
        else if (!strcmp(argv[i], "--only")) only = argv[i + 1];
        else {
            fprintf(stderr, "usage: rollout [--threads N] [--model tiny|100m|all] [--only decode|long|all]\n");
            return 2;
        }
    }
    if (strcmp(only, "all") && strcmp(only, "decode") && strcmp(only, "long")) {
        fprintf(stderr, "rollout: --only takes decode, long or all, not '%s'\n", only);
        return 2;
    }
    threads = cpu_set_threads(threads);
    if (!strcmp(only, "all")) bench_matmul(threads);
    for (size_t i = 0; i < sizeof MODELS / sizeof *MODELS; i++)
        if (!strcmp(which, "all") || !strcmp(which, MODELS[i].name)) bench_model_run(&MODELS[i], threads, only);
    return 0;
}
