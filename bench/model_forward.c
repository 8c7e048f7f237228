// Forward throughput and memory of a Qwen2-VL-2B-shaped language model (hidden 1536, 28 layers, 12 heads,
// 2 KV heads, MLP 8960, vocabulary 151936, tied embeddings; a tiny vision tower) with random weights made by
// the init code, against the machine's sgemm peak measured in the same run (cblas_sgemm on large squares).
// Prints one JSON line per result: sgemm peak (before and after the model runs; the fractions use the
// better one), prefill (layers + final norm), log-probs over the full vocabulary, and peak resident memory
// against the weights' size.
//   usage: model_forward [--tokens N] [--layers L] [--threads N] [--checkpoint DIR]
// --checkpoint loads DIR instead of initialising (to measure the load path's memory).
#include "sgemm_peak.h"

#include "core/error.h"
#include "core/rng.h"
#include "core/util.h"
#include "kernels/cpu/kernels.h"
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char *CONFIG =
    "{\"architectures\": [\"Qwen2VLForConditionalGeneration\"], \"model_type\": \"qwen2_vl\",\n"
    " \"vocab_size\": 151936, \"hidden_size\": 1536, \"intermediate_size\": 8960, \"num_hidden_layers\": %d,\n"
    " \"num_attention_heads\": 12, \"num_key_value_heads\": 2, \"rms_norm_eps\": 1e-6, \"rope_theta\": 1000000.0,\n"
    " \"hidden_act\": \"silu\", \"tie_word_embeddings\": true, \"initializer_range\": 0.02,\n"
    " \"rope_scaling\": {\"type\": \"mrope\", \"mrope_section\": [16, 24, 24]},\n"
    " \"image_token_id\": 151655, \"video_token_id\": 151656, \"vision_start_token_id\": 151652,\n"
    " \"vision_end_token_id\": 151653,\n"
    " \"vision_config\": {\"depth\": 1, \"embed_dim\": 32, \"mlp_ratio\": 2, \"num_heads\": 2, \"in_chans\": 3,\n"
    "   \"hidden_size\": 1536, \"patch_size\": 14, \"spatial_merge_size\": 2, \"temporal_patch_size\": 2}}";

// ----------------------------------------------------------------------------
// model

// Floating-point operations of the prefill of T tokens in one sequence (matmuls and attention).
static double prefill_flops(const maye_model_config *c, int T) {
    double C = c->hidden, KVD = (double)c->kv_heads * c->head_dim, F = c->intermediate;
    double per_token = 2 * (C * C + 2 * C * KVD + C * C + 3 * C * F);
    double attn = 2.0 * 2.0 * c->heads * c->head_dim * ((double)T * (T + 1) / 2); // QK^T and PV, causal
    return c->layers * (per_token * T + attn);
}

int main(int argc, char **argv) {
    int T = 512, layers = 28, threads = 0;
    const char *checkpoint = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--tokens")) T = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--layers")) layers = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--checkpoint")) checkpoint = argv[i + 1];
    }
    threads = cpu_set_threads(threads);

    maye_model m;
    double t0 = maye_now();
    if (checkpoint) {
        if (maye_model_load(&m, checkpoint) < 0) maye_die("%s", maye_errmsg());
    } else {
        maye_buf cfg = {0};
        maye_buf_printf(&cfg, CONFIG, layers);
        if (maye_model_init(&m, cfg.data, "bench config", 1) < 0) maye_die("%s", maye_errmsg());
        maye_buf_free(&cfg);
    }
    double t_setup = maye_now() - t0;
    const maye_model_config *c = &m.cfg;

    double peak = bench_sgemm_peak(2048, 4);
    printf("{\"bench\": \"sgemm_peak\", \"n\": 2048, \"threads\": %d, \"gflops\": %.1f}\n", threads, peak);
    fflush(stdout);

    // one sequence of T random text tokens
    int64_t *ids = xmalloc(sizeof(int64_t) * (size_t)T), *pos = xmalloc(sizeof(int64_t) * 3 * (size_t)T);
    maye_rng r;
    maye_rng_init(&r, 5, 0);
    for (int t = 0; t < T; t++) ids[t] = (int64_t)maye_rng_below(&r, 150000);
    if (maye_mrope_positions(c, ids, T, NULL, 0, pos, T, NULL) < 0) maye_die("%s", maye_errmsg());
    int cu[2] = {0, T};
    maye_llm_batch b = {1, T, cu, ids, pos, NULL, 0};
    maye_llm_acts a;
    maye_llm_acts_init(&a, c, T, 0, 0);
    int64_t *tgt = xmalloc(sizeof(int64_t) * (size_t)T);
    float *lp = xmalloc(sizeof(float) * (size_t)T), *ent = xmalloc(sizeof(float) * (size_t)T);
    maye_next_token_targets(&b, tgt);

    // warm-up on a short prefix (first touch of the activations, BLAS buffers)
    maye_llm_batch warm = {1, T < 32 ? T : 32, (int[]){0, T < 32 ? T : 32}, ids, pos, NULL, 0};
    if (maye_llm_forward(&m, &warm, &a) < 0) maye_die("%s", maye_errmsg());

    t0 = maye_now();
    if (maye_llm_forward(&m, &b, &a) < 0) maye_die("%s", maye_errmsg());
    double t_fwd = maye_now() - t0;
    t0 = maye_now();
    if (maye_llm_logprobs(&m, &a, tgt, 1.0f, lp, ent) < 0) maye_die("%s", maye_errmsg());
    double t_lp = maye_now() - t0;

    // the machine is shared: measure the peak again after the model ran and use the better of the two
    double peak_after = bench_sgemm_peak(2048, 4);
    printf("{\"bench\": \"sgemm_peak_after\", \"n\": 2048, \"threads\": %d, \"gflops\": %.1f}\n", threads,
           peak_after);
    if (peak_after > peak) peak = peak_after;
    double f_fwd = prefill_flops(c, T), f_lp = 2.0 * c->hidden * (double)c->vocab * (T - 1);
    printf("{\"bench\": \"model_prefill\", \"model\": \"qwen2-vl-2b-text\", \"layers\": %d, \"tokens\": %d, "
           "\"seconds\": %.3f, \"tokens_per_s\": %.1f, \"gflops\": %.1f, \"fraction_of_sgemm_peak\": %.3f}\n",
           c->layers, T, t_fwd, T / t_fwd, f_fwd / t_fwd / 1e9, f_fwd / t_fwd / 1e9 / peak);
    printf("{\"bench\": \"model_logprobs\", \"vocab\": %d, \"rows\": %d, \"seconds\": %.3f, \"gflops\": %.1f, "
           "\"fraction_of_sgemm_peak\": %.3f}\n", c->vocab, T - 1, t_lp, f_lp / t_lp / 1e9, f_lp / t_lp / 1e9 / peak);
    printf("{\"bench\": \"model_forward_total\", \"tokens\": %d, \"seconds\": %.3f, \"tokens_per_s\": %.1f, "
           "\"fraction_of_sgemm_peak\": %.3f}\n", T, t_fwd + t_lp, T / (t_fwd + t_lp),
           (f_fwd + f_lp) / (t_fwd + t_lp) / 1e9 / peak);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double weights = (double)m.n_params * 4, rss = (double)ru.ru_maxrss * 1024;
    printf("{\"bench\": \"model_memory\", \"source\": \"%s\", \"setup_s\": %.1f, \"weights_bytes\": %.0f, "
           "\"activations_bytes\": %.0f, \"peak_rss_bytes\": %.0f, \"overhead_vs_weights\": %.3f}\n",
           checkpoint ? "load" : "init", t_setup, weights, (double)a.n_floats * 4, rss, rss / weights - 1);

    maye_llm_acts_free(&a);
    maye_model_free(&m);
    free(ids), free(pos), free(tgt), free(lp), free(ent);
    return 0;
}
