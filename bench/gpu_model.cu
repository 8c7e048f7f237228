// End-to-end GPU benchmarks of a Qwen2-VL-2B-shaped model with random weights drawn on the GPU (hidden 1536,
// 28 layers, 12 heads, 2 KV heads, MLP 8960, vocabulary 151936, tied embeddings; vision tower depth 32,
// width 1280, 16 heads, merger to 1536), bf16 with fp32 master weights, one JSON line per result with the
// ceilings measured in the same run (device copy bandwidth, bf16 GEMM rate of an 8192^3 product):
//   rollout  64 prompts, each a 448x448 image (256 merged tokens) + 42 text tokens, 256 new tokens at
//            temperature 1 (no stop ids): generated tokens/s end to end (vision, prefill, decode), the decode
//            step's time and the fraction of the copy bandwidth its bytes (weights + KV cache) reach; with the
//            CUDA graph, and a short run without it; the full run again with the prefill attention in 16-row
//            warps, the kernel before the 32-row one (cuda_ctx_set_prefill_warp_rows; "prefill_warp_rows" in each
//            line, 0 for the default, 32; "prefill_rows" likewise, cuda_ctx_set_prefill_rows)
//   update   forward + backward + clip + AdamW on 8 sequences x 1024 tokens of the language model, with kept
//            activations (flash-style attention backward, then the per-segment GEMM one), with
//            recomputation, and kept activations with 16-row warps in the forward's attention: tokens/s, model
//            TFLOP/s (6 N + attention per token) and their fraction of the measured GEMM rate (MFU), device memory
//   profile  where the GPU time goes (cuda_model_profile_begin): a 32-token rollout without the CUDA graph
//            and one update step (flash attention backward, kept activations), each as one JSON line with
//            the time per phase (vision, prefill, first_draw, decode; forward, logprobs, backward, optimizer)
//            and per region (decode.attention, backward.down_proj_dw, ...), largest first
// bench/gpu_model_baseline.py runs the same jobs in PyTorch / transformers and prints the ratios.
//   gpu_model [--prompts N] [--new N] [--steps N] [--only rollout|update] [--smoke]
//   gpu_model --write-config PATH     writes the model's config.json (for the baseline) and exits
// --smoke runs every code path of the benchmark on a tiny model and tiny shapes (2 layers, hidden 128, vocabulary
// 4096; 112x112 images; 2 x 64 update tokens; 8 MiB copy, 256^3 GEMM): for the CUDA emulator
// (tests/cuda/test_gpu_bench_smoke.sh), its numbers mean nothing.
// Exits 77 without a GPU.
#ifndef _Noreturn
#define _Noreturn [[noreturn]]
#endif
extern "C" {
#include "core/error.h"
#include "core/rng.h"
#include "core/util.h"
}
#include "kernels/cuda/model_kernels.h"
#include "model/cuda/backward.h"
#include "model/cuda/generate.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <functional>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <string>
#include <vector>

// ----------------------------------------------------------------------------
// the model

static const char *CONFIG_2B =
    "{\n"
    "  \"architectures\": [\"Qwen2VLForConditionalGeneration\"],\n"
    "  \"model_type\": \"qwen2_vl\",\n"
    "  \"vocab_size\": 151936,\n"
    "  \"hidden_size\": 1536,\n"
    "  \"intermediate_size\": 8960,\n"
    "  \"num_hidden_layers\": 28,\n"
    "  \"num_attention_heads\": 12,\n"
    "  \"num_key_value_heads\": 2,\n"
    "  \"hidden_act\": \"silu\",\n"
    "  \"max_position_embeddings\": 32768,\n"
    "  \"rms_norm_eps\": 1e-06,\n"
    "  \"rope_theta\": 1000000.0,\n"
    "  \"rope_scaling\": {\"type\": \"mrope\", \"mrope_section\": [16, 24, 24]},\n"
    "  \"tie_word_embeddings\": true,\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"bos_token_id\": 151643,\n"
    "  \"eos_token_id\": 151645,\n"
    "  \"vision_start_token_id\": 151652,\n"
    "  \"vision_end_token_id\": 151653,\n"
    "  \"vision_token_id\": 151654,\n"
    "  \"image_token_id\": 151655,\n"
    "  \"video_token_id\": 151656,\n"
    "  \"torch_dtype\": \"bfloat16\",\n"
    "  \"vision_config\": {\"depth\": 32, \"embed_dim\": 1280, \"mlp_ratio\": 4, \"num_heads\": 16, \"in_chans\": 3,\n"
    "                    \"hidden_size\": 1536, \"patch_size\": 14, \"spatial_merge_size\": 2,\n"
    "                    \"temporal_patch_size\": 2, \"hidden_act\": \"quick_gelu\"}\n"
    "}\n";

static const char *CONFIG_SMOKE =
    "{\n"
    "  \"architectures\": [\"Qwen2VLForConditionalGeneration\"],\n"
    "  \"model_type\": \"qwen2_vl\",\n"
    "  \"vocab_size\": 4096,\n"
    "  \"hidden_size\": 128,\n"
    "  \"intermediate_size\": 256,\n"
    "  \"num_hidden_layers\": 2,\n"
    "  \"num_attention_heads\": 2,\n"
    "  \"num_key_value_heads\": 1,\n"
    "  \"hidden_act\": \"silu\",\n"
    "  \"max_position_embeddings\": 4096,\n"
    "  \"rms_norm_eps\": 1e-06,\n"
    "  \"rope_theta\": 1000000.0,\n"
    "  \"rope_scaling\": {\"type\": \"mrope\", \"mrope_section\": [8, 12, 12]},\n"
    "  \"tie_word_embeddings\": true,\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"bos_token_id\": 4000,\n"
    "  \"eos_token_id\": 4002,\n"
    "  \"vision_start_token_id\": 4003,\n"
    "  \"vision_end_token_id\": 4004,\n"
    "  \"vision_token_id\": 4005,\n"
    "  \"image_token_id\": 4006,\n"
    "  \"video_token_id\": 4007,\n"
    "  \"torch_dtype\": \"bfloat16\",\n"
    "  \"vision_config\": {\"depth\": 2, \"embed_dim\": 160, \"mlp_ratio\": 2, \"num_heads\": 2, \"in_chans\": 3,\n"
    "                    \"hidden_size\": 128, \"patch_size\": 14, \"spatial_merge_size\": 2,\n"
    "                    \"temporal_patch_size\": 2, \"hidden_act\": \"quick_gelu\"}\n"
    "}\n";

// The benchmark's sizes: the 2B model's, or the smoke test's (--smoke).
struct Sizes {
    const char *config, *config_name;
    int64_t im_start, im_end, text_ids; // chat markers; ordinary text ids are below text_ids
    int image_side;                     // patches per side of each prompt's image
    int update_b, update_s;             // update: sequences x tokens
    size_t copy_bytes;                  // the copy-bandwidth ceiling's buffer
    int gemm_n;                         // the GEMM ceiling's n^3 product
};
static const Sizes SIZES_2B = {CONFIG_2B, "Qwen2-VL-2B-shaped config", 151644, 151645, 151643, 32, 8, 1024,
                               (size_t)2 << 30, 8192};
static const Sizes SIZES_SMOKE = {CONFIG_SMOKE, "smoke-test config", 4001, 4002, 3990, 8, 2, 64, (size_t)8 << 20, 256};
static Sizes sz = SIZES_2B;

#define CK(expr)                                                                                           \
    do {                                                                                                   \
        cudaError_t e_ = (expr);                                                                           \
        if (e_ != cudaSuccess) maye_die("%s: %s", #expr, cudaGetErrorString(e_));                          \
    } while (0)
#define OK(expr)                                                                                           \
    do {                                                                                                   \
        if ((expr) < 0) maye_die("%s: %s", #expr, maye_errmsg());                                          \
    } while (0)

static cuda_ctx *ctx;
static double copy_gbps = 0, gemm_peak_tflops = 0;
static size_t base_used = 0; // device memory in use before the model

static size_t device_used(void) {
    size_t free_b = 0, total = 0;
    CK(cudaMemGetInfo(&free_b, &total));
    return total - free_b;
}

// ----------------------------------------------------------------------------
// ceilings

// Median over 5 trials of the time per call of fn (ms), after 2 warm-up calls.
static double time_ms(const std::function<void()> &fn, int reps) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    fn(), fn();
    CK(cudaDeviceSynchronize());
    std::vector<float> t;
    for (int trial = 0; trial < 5; trial++) {
        CK(cudaEventRecord(a));
        for (int r = 0; r < reps; r++) fn();
        CK(cudaEventRecord(b));
        CK(cudaEventSynchronize(b));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms / reps);
    }
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    std::sort(t.begin(), t.end());
    return t[2];
}

static void ceilings(void) {
    size_t bytes = sz.copy_bytes;
    void *a = NULL, *b = NULL;
    CK(cudaMalloc(&a, bytes));
    CK(cudaMalloc(&b, bytes));
    CK(cudaMemset(a, 1, bytes));
    double ms = time_ms([&] { CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice)); }, 5);
    copy_gbps = 2.0 * bytes / (ms * 1e-3) / 1e9;
    printf("{\"bench\": \"copy\", \"device\": \"%s\", \"shape\": \"%.0f MiB device to device\", \"ms\": %.4f, "
           "\"gb_per_s\": %.1f}\n", cuda_ctx_device_name(ctx), bytes / 1048576.0, ms, copy_gbps);
    const int n = sz.gemm_n;
    OK(cuda_fill_normal(CUDA_BF16, a, (int64_t)n * n, 1.0f, 1, 1, NULL));
    OK(cuda_fill_normal(CUDA_BF16, b, (int64_t)n * n, 1.0f, 1, 2, NULL));
    void *c = NULL;
    CK(cudaMalloc(&c, (size_t)n * n * 2));
    ms = time_ms([&] { OK(cuda_gemm(ctx, CUDA_BF16, CUDA_BF16, 0, 1, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n, NULL)); }, 5);
    gemm_peak_tflops = 2.0 * n * (double)n * n / (ms * 1e-3) / 1e12;
    printf("{\"bench\": \"gemm_peak\", \"device\": \"%s\", \"shape\": \"%dx%dx%d bf16\", \"ms\": %.4f, "
           "\"tflops\": %.1f}\n", cuda_ctx_device_name(ctx), n, n, n, ms, gemm_peak_tflops);
    CK(cudaFree(a));
    CK(cudaFree(b));
    CK(cudaFree(c));
    fflush(stdout);
}

// ----------------------------------------------------------------------------
// profile lines

// One JSON line: the report's phases and regions.
static void print_profile(const char *job, const cuda_prof_report &r, const std::string &extra) {
    printf("{\"bench\": \"profile\", \"job\": \"%s\", \"device\": \"%s\"%s, \"total_ms\": %.3f, \"holds\": %ld, "
           "\"stalls\": %ld, \"phases_ms\": {", job, cuda_ctx_device_name(ctx), extra.c_str(), r.total_ms, r.holds,
           r.stalls);
    for (int i = 0; i < r.n_phases; i++) printf("%s\"%s\": %.3f", i ? ", " : "", r.phases[i].name, r.phases[i].ms);
    printf("}, \"regions\": [");
    for (int i = 0; i < r.n; i++)
        printf("%s{\"name\": \"%s\", \"ms\": %.3f, \"calls\": %ld}", i ? ", " : "", r.regions[i].name,
               r.regions[i].ms, r.regions[i].calls);
    printf("]}\n");
    fflush(stdout);
}

// ----------------------------------------------------------------------------
// rollout

struct Prompts {
    std::vector<std::vector<int64_t>> ids;
    std::vector<float> pixels; // (n * P1, PD)
    int64_t grid[3];
    int64_t P1;                // patches per image
};

// n chat-shaped prompts, each: <|im_start|> 4 text ids <|vision_start|> pads <|vision_end|> 30 text ids
// <|im_end|> <|im_start|> 3 text ids, one 448x448 image (32 x 32 patches, 256 merged tokens; --smoke: 8 x 8)
// with random pixels.
static Prompts make_prompts(const maye_model_config *c, int n, uint64_t seed) {
    Prompts p;
    p.grid[0] = 1, p.grid[1] = sz.image_side, p.grid[2] = sz.image_side;
    p.P1 = (int64_t)sz.image_side * sz.image_side;
    int pads = (int)(p.P1 / (c->vision.merge * c->vision.merge));
    maye_rng rng;
    maye_rng_init(&rng, seed, 0x726f6c6c);
    for (int i = 0; i < n; i++) {
        std::vector<int64_t> v;
        v.push_back(sz.im_start);
        for (int k = 0; k < 4; k++) v.push_back((int64_t)maye_rng_below(&rng, sz.text_ids));
        v.push_back(c->vision_start_token_id);
        for (int k = 0; k < pads; k++) v.push_back(c->image_token_id);
        v.push_back(c->vision_end_token_id);
        for (int k = 0; k < 30; k++) v.push_back((int64_t)maye_rng_below(&rng, sz.text_ids));
        v.push_back(sz.im_end);
        v.push_back(sz.im_start);
        for (int k = 0; k < 3; k++) v.push_back((int64_t)maye_rng_below(&rng, sz.text_ids));
        p.ids.push_back(v);
    }
    p.pixels.resize((size_t)n * p.P1 * c->vision.patch_dim);
    uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (float &f : p.pixels) { // xorshift: fast, never zeros
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        f = (float)(x >> 40) * (2.0f / 16777216.0f) - 1.0f;
    }
    return p;
}

// Bytes a decode step reads: every language-model weight but the embedding table (the lm_head reads the tied
// table once) and the KV cache of n sequences of ctx rows on average.
static double step_bytes(const cuda_model *gm, int n, double ctx_rows) {
    const maye_model_config *c = &gm->cfg;
    double es = gm->dt == CUDA_BF16 ? 2 : 4, w = 0;
    for (int i = 0; i < gm->n_specs; i++) {
        const cuda_param *p = &gm->specs[i];
        if (p->group == MAYE_PARAM_LLM) w += (double)p->count * p->numel;
    }
    if (!c->tie_embeddings) w -= (double)c->vocab * c->hidden; // the table itself is only gathered from
    double kv = (double)n * ctx_rows * c->layers * 2.0 * c->kv_heads * c->head_dim;
    return (w + kv) * es;
}

static void bench_rollout(cuda_model *gm, int n_prompts, int n_new) {
    const maye_model_config *c = &gm->cfg;
    Prompts p = make_prompts(c, n_prompts, 17);
    int plen = (int)p.ids[0].size();
    std::vector<maye_gen_request> rq;
    std::vector<std::string> names;
    for (int i = 0; i < n_prompts; i++) names.push_back("p" + std::to_string(i));
    for (int i = 0; i < n_prompts; i++)
        rq.push_back({p.ids[(size_t)i].data(), plen, p.pixels.data() + (size_t)i * p.P1 * c->vision.patch_dim, p.P1,
                      p.grid, 1, maye_sample_stream_key(names[(size_t)i].c_str(), 0, 0), names[(size_t)i].c_str()});
    maye_gen_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.n = 1, cfg.sample = {1.0f, 1.0f, 0}, cfg.seed = 1, cfg.max_batch_seqs = n_prompts;
    cfg.max_batch_tokens = (int64_t)n_prompts * (plen + n_new + 64);

    struct Run {
        int max_tokens;
        bool graph, report, profile;
        int prefill_rows;      // 0: the default tiles of the prefill attention kernel
        int prefill_warp_rows; // 0: the default rows per warp (32)
    } runs[] = {{8, true, false, false, 0, 0},     {n_new, true, true, false, 0, 0}, {32, false, true, false, 0, 0},
                {32, true, true, false, 0, 0},     {32, false, false, true, 0, 0},   {n_new, true, true, false, 0, 16}};
    for (const Run &r : runs) {
        cfg.max_tokens = r.max_tokens;
        OK(cuda_ctx_set_prefill_rows(ctx, r.prefill_rows));
        OK(cuda_ctx_set_prefill_warp_rows(ctx, r.prefill_warp_rows));
        cuda_gen g;
        OK(cuda_gen_init(&g, gm, &cfg, r.graph));
        std::vector<maye_gen_result> res((size_t)n_prompts);
        if (r.profile) OK(cuda_model_profile_begin(gm));
        double t0 = maye_now();
        OK(cuda_gen_run(&g, rq.data(), n_prompts, res.data()));
        double secs = maye_now() - t0;
        if (r.profile) {
            cuda_prof_report rep;
            OK(cuda_model_profile_end(gm, &rep));
            print_profile("rollout", rep, ", \"prompts\": " + std::to_string(n_prompts) + ", \"new_tokens\": " +
                                              std::to_string(r.max_tokens) + ", \"decode_steps\": " +
                                              std::to_string(g.stats.decode_steps));
        }
        int64_t tokens = 0;
        for (int i = 0; i < n_prompts; i++) tokens += res[(size_t)i].out[0].n;
        maye_gen_result_free(res.data(), n_prompts, 1);
        if (r.report) {
            double step_s = g.stats.decode_steps ? g.stats.decode_seconds / g.stats.decode_steps : 0;
            double bytes = step_bytes(gm, n_prompts, plen + r.max_tokens / 2.0);
            double tbps = step_s > 0 ? bytes / step_s / 1e12 : 0;
            printf("{\"bench\": \"rollout\", \"impl\": \"maye\", \"device\": \"%s\", \"prompts\": %d, \"prompt_tokens\": "
                   "%d, \"new_tokens\": %d, \"graph\": %s%s, \"prefill_rows\": %d, \"prefill_warp_rows\": %d, "
                   "\"seconds\": %.3f, \"tokens\": %lld, \"tokens_per_s\": %.1f, "
                   "\"vision_s\": %.3f, \"prefill_s\": %.3f, \"decode_s\": %.3f, \"decode_steps\": %lld, "
                   "\"step_ms\": %.3f, \"step_gb\": %.3f, \"hbm_tb_per_s\": %.3f, \"hbm_fraction\": %.3f, "
                   "\"kv_and_state_gb\": %.3f}\n",
                   cuda_ctx_device_name(ctx), n_prompts, plen, r.max_tokens, r.graph ? "true" : "false",
                   g.graph_failed ? ", \"graph_failed\": true" : "", r.prefill_rows, r.prefill_warp_rows, secs,
                   (long long)tokens, tokens / secs,
                   g.stats.vision_seconds, g.stats.prefill_seconds, g.stats.decode_seconds,
                   (long long)g.stats.decode_steps, step_s * 1e3, bytes / 1e9, tbps,
                   copy_gbps > 0 ? tbps * 1e3 / copy_gbps : 0, g.peak_bytes / 1e9);
            fflush(stdout);
        }
        cuda_gen_free(&g);
    }
    OK(cuda_ctx_set_prefill_rows(ctx, 0));
    OK(cuda_ctx_set_prefill_warp_rows(ctx, 0));
    OK(cuda_model_trim(gm));
}

// ----------------------------------------------------------------------------
// update

static void bench_update(cuda_model *gm, int steps) {
    const maye_model_config *c = &gm->cfg;
    const int B = sz.update_b, S = sz.update_s, T = B * S;
    const std::string shape = std::to_string(B) + "x" + std::to_string(S) + " tokens";
    std::vector<int64_t> ids((size_t)T), pos(3 * (size_t)T), targets((size_t)T);
    std::vector<int> cu((size_t)B + 1);
    std::vector<float> lp((size_t)T), dlp((size_t)T);
    maye_rng rng;
    maye_rng_init(&rng, 5, 0x75706474);
    for (int t = 0; t < T; t++) ids[(size_t)t] = (int64_t)maye_rng_below(&rng, sz.text_ids);
    int n_tgt = 0;
    for (int b = 0; b <= B; b++) cu[(size_t)b] = b * S;
    for (int b = 0; b < B; b++) {
        OK(maye_mrope_positions(c, ids.data() + b * S, S, NULL, 0, pos.data() + b * S, T, NULL));
        for (int i = b * S; i < (b + 1) * S; i++) targets[(size_t)i] = i + 1 < (b + 1) * S ? ids[(size_t)i + 1] : -1;
    }
    for (int t = 0; t < T; t++) n_tgt += targets[(size_t)t] >= 0;
    for (int t = 0; t < T; t++) dlp[(size_t)t] = targets[(size_t)t] >= 0 ? -1.0f / n_tgt : 0.0f; // SFT's mean NLL
    cuda_llm_batch batch = {B, T, cu.data(), ids.data(), pos.data(), NULL, 0, NULL};
    maye_adamw_hparams hp = {0.9, 0.95, 1e-8, 0.01};

    // model FLOPs per token: 6 x matmul parameters (layers + lm_head) + causal attention forward and backward
    double HD = (double)c->heads * c->head_dim, QKV = (double)(c->heads + 2 * c->kv_heads) * c->head_dim;
    double n_mm = c->layers * ((double)c->hidden * (QKV + HD + 3.0 * c->intermediate)) + (double)c->vocab * c->hidden;
    double flops_tok = 6.0 * n_mm + 6.0 * c->layers * HD * S;

    // kept activations with the flash-style attention backward and with the per-segment GEMMs, recomputation
    struct {
        bool recompute;
        cuda_attention_backward_kernel attn;
        int prefill_warp_rows; // of the forward's attention; 0: the default
    } runs[4] = {{false, CUDA_ATTN_BWD_AUTO, 0}, {false, CUDA_ATTN_BWD_GEMM, 0}, {true, CUDA_ATTN_BWD_AUTO, 0},
                 {false, CUDA_ATTN_BWD_AUTO, 16}};
    for (const auto &run : runs) {
        bool recompute = run.recompute;
        cuda_ctx_set_attention_backward(gm->ctx, run.attn);
        OK(cuda_ctx_set_prefill_warp_rows(gm->ctx, run.prefill_warp_rows));
        const char *attn = run.attn == CUDA_ATTN_BWD_GEMM || !cuda_attention_backward_flash_supported(gm->dt, c->head_dim)
                               ? "gemm"
                               : "flash";
        cuda_llm_train tr;
        OK(cuda_llm_train_init(&tr, gm, T, B, recompute));
        auto step = [&]() {
            double norm = 0;
            OK(cuda_llm_train_zero(gm, &tr));
            OK(cuda_llm_forward(gm, &batch, &tr.acts));
            OK(cuda_llm_logprobs(gm, &tr.acts, targets.data(), 1.0f, lp.data(), NULL));
            OK(cuda_llm_backward(gm, &tr, &batch, targets.data(), 1.0f, lp.data(), dlp.data()));
            OK(cuda_llm_clip(gm, &tr, 1.0, &norm));
            OK(cuda_llm_adamw(gm, &tr, &hp, 1e-6));
        };
        step();
        OK(cuda_model_sync(gm));
        double t0 = maye_now();
        for (int i = 0; i < steps; i++) step();
        OK(cuda_model_sync(gm));
        double secs = (maye_now() - t0) / steps;
        double tok_s = T / secs, tflops = tok_s * flops_tok / 1e12;
        double loss = 0;
        for (int t = 0; t < T; t++) loss += dlp[(size_t)t] * lp[(size_t)t];
        size_t held = gm->device_bytes + cuda_llm_train_bytes(&tr);
        printf("{\"bench\": \"update\", \"impl\": \"maye\", \"device\": \"%s\", \"shape\": \"%s\", "
               "\"recompute\": %s, \"attention_backward\": \"%s\", \"prefill_warp_rows\": %d, \"ms\": %.2f, "
               "\"tokens_per_s\": %.1f, \"model_tflops\": %.1f, \"mfu\": %.3f, \"allocated_gb\": %.2f, "
               "\"device_used_gb\": %.2f, \"loss\": %.4f}\n",
               cuda_ctx_device_name(ctx), shape.c_str(), recompute ? "true" : "false", attn, run.prefill_warp_rows,
               secs * 1e3, tok_s, tflops,
               gemm_peak_tflops > 0 ? tflops / gemm_peak_tflops : 0, held / 1e9, (device_used() - base_used) / 1e9,
               loss);
        fflush(stdout);
        if (&run == runs) { // where the time of the first configuration goes (after its line: a step more)
            cuda_prof_report rep;
            OK(cuda_model_profile_begin(gm));
            step();
            OK(cuda_model_profile_end(gm, &rep));
            print_profile("update", rep, ", \"shape\": \"" + shape + "\", \"attention_backward\": \"" + attn + "\"");
        }
        cuda_llm_train_free(&tr);
    }
    cuda_ctx_set_attention_backward(gm->ctx, CUDA_ATTN_BWD_AUTO);
    OK(cuda_ctx_set_prefill_warp_rows(gm->ctx, 0));
}

// ----------------------------------------------------------------------------
// main

int main(int argc, char **argv) {
    int prompts = 64, n_new = 256, steps = 3;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--write-config") && i + 1 < argc) {
            if (maye_write_file_atomic(argv[i + 1], CONFIG_2B, strlen(CONFIG_2B)) < 0) maye_die("%s", maye_errmsg());
            return 0;
        } else if (!strcmp(argv[i], "--smoke")) {
            sz = SIZES_SMOKE;
        } else if (!strcmp(argv[i], "--prompts") && i + 1 < argc) {
            prompts = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--new") && i + 1 < argc) {
            n_new = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--steps") && i + 1 < argc) {
            steps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            only = argv[++i];
        } else {
            fprintf(stderr, "usage: gpu_model [--prompts N] [--new N] [--steps N] [--only rollout|update] [--smoke] | "
                            "--write-config PATH\n");
            return 2;
        }
    }
    if (prompts < 1 || n_new < 1 || steps < 1) maye_die("--prompts, --new and --steps must be at least 1");
    if (cuda_device_count() == 0) {
        printf("{\"bench\": \"gpu_model\", \"skipped\": \"no CUDA device\"}\n");
        return 77;
    }
    OK(cuda_ctx_init(&ctx, 0));
    base_used = device_used();
    ceilings();
    cuda_model gm;
    double t0 = maye_now();
    OK(cuda_model_init_random(&gm, ctx, sz.config, sz.config_name, CUDA_BF16, true, 42));
    printf("{\"bench\": \"model_init\", \"impl\": \"maye\", \"device\": \"%s\", \"seconds\": %.3f, \"weights_gb\": %.3f, "
           "\"params\": %zu}\n", cuda_ctx_device_name(ctx), maye_now() - t0, gm.device_bytes / 1e9, gm.n_elems);
    fflush(stdout);
    if (!only || !strcmp(only, "rollout")) bench_rollout(&gm, prompts, n_new);
    if (!only || !strcmp(only, "update")) bench_update(&gm, steps);
    cuda_model_free(&gm);
    cuda_ctx_free(ctx);
    return 0;
}
