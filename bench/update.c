// Update throughput of the CPU trainer: forward (keep activations) + log-probs + backward + gradient clipping
// + AdamW, on a ~100M-parameter language model (hidden 768, 12 layers, 12 heads over 4 KV heads, MLP 2048,
// vocabulary 32000, tied embeddings; random weights from the init code; a tiny frozen vision tower), trained
// like SFT (dL/dlogp = -1/N on every token with a next token), with and without activation recomputation.
// Each mode runs `reps` timed optimizer steps after a warm-up and reports the fastest (the machine may be
// shared). The fraction of the machine's sgemm peak (cblas_sgemm on 2048 squares, measured just before and
// after each mode; the better one is used) counts 6 x params x tokens model flops (the tied table once, as the lm_head
// over the trained tokens) plus 3 x the causal attention forward (QK^T and PV); recomputation's extra forward
// is not counted. Peak memory: the allocations of each mode (weights, gradients, AdamW state, activations,
// backward workspace) and the process's peak RSS after each mode (recomputation runs first). One JSON line per
// result.
//   usage: update [--seqs B] [--seqlen N] [--micro K] [--layers L] [--threads N] [--reps R]
#include "sgemm_peak.h"

#include "core/error.h"
#include "core/rng.h"
#include "core/util.h"
#include "kernels/cpu/kernels.h"
#include "model/backward.h"
#include "optim/adamw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char *CONFIG =
    "{\"architectures\": [\"Qwen2VLForConditionalGeneration\"], \"model_type\": \"qwen2_vl\",\n"
    " \"vocab_size\": 32000, \"hidden_size\": 768, \"intermediate_size\": 2048, \"num_hidden_layers\": %d,\n"
    " \"num_attention_heads\": 12, \"num_key_value_heads\": 4, \"rms_norm_eps\": 1e-6, \"rope_theta\": 1000000.0,\n"
    " \"hidden_act\": \"silu\", \"tie_word_embeddings\": true, \"initializer_range\": 0.02,\n"
    " \"rope_scaling\": {\"type\": \"mrope\", \"mrope_section\": [8, 12, 12]},\n"
    " \"image_token_id\": 31995, \"video_token_id\": 31996, \"vision_start_token_id\": 31993,\n"
    " \"vision_end_token_id\": 31994,\n"
    " \"vision_config\": {\"depth\": 1, \"embed_dim\": 32, \"mlp_ratio\": 2, \"num_heads\": 2, \"in_chans\": 3,\n"
    "   \"hidden_size\": 768, \"patch_size\": 14, \"spatial_merge_size\": 2, \"temporal_patch_size\": 2}}";

// ----------------------------------------------------------------------------
// micro-batches

typedef struct {
    int B, T;
    int *cu;          // (B+1)
    int64_t *ids;     // (T)
    int64_t *pos;     // (3, T)
    int64_t *tgt;     // (T)
    float *dlogp;     // (T)
    int n_trained;    // rows with a target
} micro;

static void micro_make(micro *mb, const maye_model_config *c, int B, int n, maye_rng *r) {
    mb->B = B, mb->T = B * n;
    mb->cu = xmalloc(sizeof(int) * (size_t)(B + 1));
    mb->ids = xmalloc(sizeof(int64_t) * (size_t)mb->T), mb->pos = xmalloc(sizeof(int64_t) * 3 * (size_t)mb->T);
    mb->tgt = xmalloc(sizeof(int64_t) * (size_t)mb->T), mb->dlogp = xmalloc(sizeof(float) * (size_t)mb->T);
    for (int t = 0; t < mb->T; t++) mb->ids[t] = (int64_t)maye_rng_below(r, (uint64_t)c->vision_start_token_id);
    for (int s = 0; s <= B; s++) mb->cu[s] = s * n;
    for (int s = 0; s < B; s++)
        if (maye_mrope_positions(c, mb->ids + s * n, n, NULL, 0, mb->pos + s * n, mb->T, NULL) < 0)
            maye_die("%s", maye_errmsg());
    maye_llm_batch b = {B, mb->T, mb->cu, mb->ids, mb->pos, NULL, 0};
    maye_next_token_targets(&b, mb->tgt);
    mb->n_trained = mb->T - B;
    for (int t = 0; t < mb->T; t++) mb->dlogp[t] = mb->tgt[t] >= 0 ? -1.0f / (float)mb->n_trained : 0.0f;
}

static void micro_free(micro *mb) { free(mb->cu), free(mb->ids), free(mb->pos), free(mb->tgt), free(mb->dlogp); }

// Model flops of one micro-batch's forward + backward (see the file comment).
static double micro_flops(const maye_model_config *c, const micro *mb) {
    double C = c->hidden, HD = (double)c->heads * c->head_dim, KVD = (double)c->kv_heads * c->head_dim;
    double layer = C * HD + 2 * C * KVD + HD * C + 3 * C * c->intermediate;
    double attn = 0;
    for (int s = 0; s < mb->B; s++) {
        double n = mb->cu[s + 1] - mb->cu[s];
        attn += 2.0 * 2.0 * HD * n * (n + 1) / 2;
    }
    return 6 * layer * c->layers * mb->T + 6 * C * c->vocab * mb->n_trained + 3 * attn * c->layers;
}

// ----------------------------------------------------------------------------
// one mode

typedef struct {
    double fwd, lp, bwd, opt, total; // seconds of the fastest timed step
    double flops, peak;              // model flops of a step; the sgemm peak around the mode (GFLOPS)
    int tokens, trained;
    size_t bytes_grads, bytes_adam, bytes_acts, bytes_ws;
    double rss;
} result;

// One optimizer step over K micro-batches; the phases' times are added to r (when not NULL).
static void step(maye_model *m, maye_llm_train *tr, maye_grads *g, maye_adamw *opt, int nt,
                 const maye_optim_tensor *tab, micro *mbs, int K, float *lp, result *r) {
    maye_grads_zero(g);
    for (int k = 0; k < K; k++) {
        micro *mb = &mbs[k];
        maye_llm_batch b = {mb->B, mb->T, mb->cu, mb->ids, mb->pos, NULL, 0};
        double t0 = maye_now();
        if (maye_llm_forward(m, &b, &tr->acts) < 0) maye_die("%s", maye_errmsg());
        double t1 = maye_now();
        if (maye_llm_logprobs(m, &tr->acts, mb->tgt, 1.0f, lp, NULL) < 0) maye_die("%s", maye_errmsg());
        double t2 = maye_now();
        if (maye_llm_backward(m, tr, &b, mb->tgt, 1.0f, lp, mb->dlogp, g, NULL) < 0) maye_die("%s", maye_errmsg());
        double t3 = maye_now();
        if (r) r->fwd += t1 - t0, r->lp += t2 - t1, r->bwd += t3 - t2;
    }
    double t0 = maye_now();
    maye_grad_clip(nt, tab, g->memory, 1.0);
    maye_adamw_step(opt, m->params, g->memory, 1e-5);
    if (r) r->opt += maye_now() - t0;
}

static void run_mode(maye_model *m, bool recompute, micro *mbs, int K, micro *warm, int reps, result *r) {
    const maye_model_config *c = &m->cfg;
    memset(r, 0, sizeof *r);
    int T_cap = 0;
    for (int k = 0; k < K; k++) T_cap = mbs[k].T > T_cap ? mbs[k].T : T_cap;
    maye_grads g;
    maye_grads_init(&g, m, maye_train_groups(true, false, false));
    maye_optim_tensor *tab;
    int nt = maye_grads_optim_table(&g, m, &tab);
    maye_adamw opt;
    maye_adamw_hparams hp = {0.9, 0.95, 1e-8, 0.01};
    if (maye_adamw_init(&opt, &hp, nt, tab) < 0) maye_die("%s", maye_errmsg());
    maye_llm_train tr;
    maye_llm_train_init(&tr, c, T_cap, recompute);
    float *lp = xmalloc(sizeof(float) * (size_t)T_cap);

    r->peak = bench_sgemm_peak(2048, 3);
    step(m, &tr, &g, &opt, nt, tab, warm, 1, lp, NULL); // first touch of every buffer, BLAS warm-up
    for (int i = 0; i < reps; i++) {
        result x = {0};
        double t0 = maye_now();
        step(m, &tr, &g, &opt, nt, tab, mbs, K, lp, &x);
        x.total = maye_now() - t0;
        if (i > 0 && x.total >= r->total) continue;
        r->fwd = x.fwd, r->lp = x.lp, r->bwd = x.bwd, r->opt = x.opt;
        r->total = x.total;
    }
    double after = bench_sgemm_peak(2048, 3);
    if (after > r->peak) r->peak = after;
    for (int k = 0; k < K; k++) {
        r->flops += micro_flops(c, &mbs[k]);
        r->tokens += mbs[k].T;
        r->trained += mbs[k].n_trained;
    }
    r->bytes_grads = g.n_floats * 4, r->bytes_adam = (size_t)opt.nstate * 8;
    r->bytes_acts = tr.acts.n_floats * 4, r->bytes_ws = tr.n_floats * 4;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    r->rss = (double)ru.ru_maxrss * 1024;

    free(lp);
    maye_llm_train_free(&tr);
    maye_adamw_free(&opt);
    maye_optim_table_free(tab, nt);
    maye_grads_free(&g);
}

int main(int argc, char **argv) {
    int B = 4, n = 256, K = 2, layers = 12, threads = 0, reps = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--seqs")) B = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seqlen")) n = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--micro")) K = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--layers")) layers = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
    }
    if (B < 1 || n < 2 || K < 1 || layers < 1 || reps < 1)
        maye_die("--seqs, --micro, --layers, --reps must be >= 1 and --seqlen >= 2");
    threads = cpu_set_threads(threads);

    maye_model m;
    maye_buf cfg = {0};
    maye_buf_printf(&cfg, CONFIG, layers);
    if (maye_model_init(&m, cfg.data, "bench config", 1) < 0) maye_die("%s", maye_errmsg());
    maye_buf_free(&cfg);
    const maye_model_config *c = &m.cfg;
    size_t lo, n_llm = maye_model_group_range(&m, MAYE_PARAM_LLM, &lo);

    maye_rng r;
    maye_rng_init(&r, 11, 0);
    micro *mbs = xmalloc(sizeof(micro) * (size_t)K), warm;
    for (int k = 0; k < K; k++) micro_make(&mbs[k], c, B, n, &r);
    micro_make(&warm, c, 1, 32, &r);

    result res[2];
    const char *names[2] = {"recompute", "keep"};
    for (int mode = 0; mode < 2; mode++) {
        run_mode(&m, mode == 0, mbs, K, &warm, reps, &res[mode]);
        fprintf(stderr, "update: %s: fastest step %.1f s\n", names[mode], res[mode].total);
    }

    for (int mode = 1; mode >= 0; mode--) {
        const result *x = &res[mode];
        printf("{\"bench\": \"update_step\", \"mode\": \"%s\", \"params\": %zu, \"layers\": %d, \"micro_batches\": %d, "
               "\"seqs_per_micro\": %d, \"seqlen\": %d, \"tokens\": %d, \"trained_tokens\": %d, \"seconds\": %.3f, "
               "\"forward_s\": %.3f, \"logprobs_s\": %.3f, \"backward_s\": %.3f, \"optimizer_s\": %.3f, "
               "\"trained_tokens_per_s\": %.1f, \"gflops\": %.1f, \"threads\": %d, \"sgemm_peak_gflops\": %.1f, "
               "\"fraction_of_sgemm_peak\": %.3f}\n",
               names[mode], n_llm, c->layers, K, B, n, x->tokens, x->trained, x->total, x->fwd, x->lp, x->bwd, x->opt,
               x->trained / x->total, x->flops / x->total / 1e9, threads, x->peak, x->flops / x->total / 1e9 / x->peak);
    }
    for (int mode = 1; mode >= 0; mode--) {
        const result *x = &res[mode];
        double weights = (double)m.n_params * 4;
        double total = weights + x->bytes_grads + x->bytes_adam + x->bytes_acts + x->bytes_ws;
        printf("{\"bench\": \"update_memory\", \"mode\": \"%s\", \"tokens_per_micro\": %d, \"weights_bytes\": %.0f, "
               "\"grads_bytes\": %zu, \"adamw_bytes\": %zu, \"activations_bytes\": %zu, \"workspace_bytes\": %zu, "
               "\"allocated_bytes\": %.0f, \"peak_rss_bytes_so_far\": %.0f}\n",
               names[mode], B * n, weights, x->bytes_grads, x->bytes_adam, x->bytes_acts, x->bytes_ws, total, x->rss);
    }
    printf("{\"bench\": \"update_recompute_cost\", \"time_ratio\": %.3f, \"activation_ratio\": %.3f}\n",
           res[0].total / res[1].total, (double)res[0].bytes_acts / (double)res[1].bytes_acts);

    for (int k = 0; k < K; k++) micro_free(&mbs[k]);
    micro_free(&warm);
    free(mbs);
    maye_model_free(&m);
    return 0;
}
