// Trajectory scoring throughput: maye-traj's packed log-prob scoring (maye_scorer_run: forward + log-probs of
// the response tokens, traj.forward_batch_size sequences per forward) against the raw forward of the same
// packed tokens, for a ~100M-parameter text model with random weights. One JSON line per result; the
// ratio is scoring tokens/s over forward tokens/s measured in the same run (issue 5's target: >= 0.8).
//   usage: traj [--seqs N] [--prompt P] [--response R] [--batch B] [--threads N]
#include "core/error.h"
#include "core/rng.h"
#include "core/util.h"
#include "kernels/cpu/kernels.h"
#include "model/score.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *CONFIG =
    "{\"architectures\": [\"Qwen2VLForConditionalGeneration\"], \"model_type\": \"qwen2_vl\",\n"
    " \"vocab_size\": 32000, \"hidden_size\": 768, \"intermediate_size\": 2048, \"num_hidden_layers\": 12,\n"
    " \"num_attention_heads\": 12, \"num_key_value_heads\": 4, \"rms_norm_eps\": 1e-6, \"rope_theta\": 1000000.0,\n"
    " \"hidden_act\": \"silu\", \"tie_word_embeddings\": true, \"initializer_range\": 0.02,\n"
    " \"rope_scaling\": {\"type\": \"mrope\", \"mrope_section\": [8, 12, 12]},\n"
    " \"image_token_id\": 31990, \"video_token_id\": 31991, \"vision_start_token_id\": 31992,\n"
    " \"vision_end_token_id\": 31993,\n"
    " \"vision_config\": {\"depth\": 1, \"embed_dim\": 32, \"mlp_ratio\": 2, \"num_heads\": 2, \"in_chans\": 3,\n"
    "   \"hidden_size\": 768, \"patch_size\": 14, \"spatial_merge_size\": 2, \"temporal_patch_size\": 2}}";

int main(int argc, char **argv) {
    int S = 16, P = 192, R = 64, batch = 16, threads = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--seqs")) S = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--prompt")) P = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--response")) R = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
    }
    threads = cpu_set_threads(threads);
    maye_model m;
    if (maye_model_init(&m, CONFIG, "bench config", 3) < 0) maye_die("%s", maye_errmsg());
    int T = P + R, N = S * T;
    // S text-only sequences of random ids below the special ids
    maye_rng rng;
    maye_rng_init(&rng, 7, 1);
    int32_t **seqs = xmalloc(sizeof(int32_t *) * (size_t)S);
    maye_score_item *items = xcalloc((size_t)S, sizeof(maye_score_item));
    float **lp = xmalloc(sizeof(float *) * (size_t)S);
    for (int s = 0; s < S; s++) {
        seqs[s] = xmalloc(sizeof(int32_t) * (size_t)T);
        for (int t = 0; t < T; t++) seqs[s][t] = (int32_t)maye_rng_below(&rng, 31000);
        items[s] = (maye_score_item){.ids = seqs[s], .T = T, .n_prompt = P};
        lp[s] = xmalloc(sizeof(float) * (size_t)R);
    }

    // the raw forward of the same packed tokens, batch sequences at a time
    int chunk = batch < S ? batch : S;
    maye_llm_acts acts;
    maye_llm_acts_init(&acts, &m.cfg, chunk * T, chunk * T, 0);
    int64_t *ids = xmalloc(sizeof(int64_t) * (size_t)chunk * T), *pos = xmalloc(sizeof(int64_t) * 3 * (size_t)chunk * T);
    int *cu = xmalloc(sizeof(int) * (size_t)(chunk + 1));
    double best_fwd = 1e30, best_score = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = maye_now();
        for (int s0 = 0; s0 < S; s0 += chunk) {
            int k = S - s0 < chunk ? S - s0 : chunk;
            for (int i = 0; i < k; i++) {
                cu[i] = i * T;
                for (int t = 0; t < T; t++) {
                    ids[i * T + t] = seqs[s0 + i][t];
                    for (int a = 0; a < 3; a++) pos[(size_t)a * k * T + i * T + t] = t;
                }
            }
            cu[k] = k * T;
            maye_llm_batch b = {.B = k, .T = k * T, .cu_seqlens = cu, .ids = ids, .pos = pos};
            if (maye_llm_forward(&m, &b, &acts) < 0) maye_die("%s", maye_errmsg());
        }
        double fwd = maye_now() - t0;
        maye_scorer sc;
        maye_scorer_init(&sc);
        t0 = maye_now();
        if (maye_scorer_run(&sc, &m, items, S, 1.0f, batch, lp, NULL) < 0) maye_die("%s", maye_errmsg());
        double score = maye_now() - t0;
        maye_scorer_free(&sc);
        if (fwd < best_fwd) best_fwd = fwd;
        if (score < best_score) best_score = score;
    }
    double fwd_tps = N / best_fwd, score_tps = N / best_score;
    printf("{\"bench\": \"traj_forward\", \"params\": %zu, \"threads\": %d, \"sequences\": %d, \"tokens\": %d, "
           "\"seconds\": %.3f, \"tokens_per_s\": %.1f}\n", m.n_params, threads, S, N, best_fwd, fwd_tps);
    printf("{\"bench\": \"traj_scoring\", \"params\": %zu, \"threads\": %d, \"sequences\": %d, \"tokens\": %d, "
           "\"response_tokens\": %d, \"forward_batch_size\": %d, \"seconds\": %.3f, \"tokens_per_s\": %.1f, "
           "\"policy_plus_reference_tokens_per_s\": %.1f, \"vs_forward\": %.3f}\n", m.n_params, threads, S, N, S * R,
           batch, best_score, score_tps, score_tps / 2, score_tps / fwd_tps);
    maye_llm_acts_free(&acts);
    for (int s = 0; s < S; s++) free(seqs[s]), free(lp[s]);
    free(seqs), free(items), free(lp), free(ids), free(pos), free(cu);
    maye_model_free(&m);
    return 0;
}
