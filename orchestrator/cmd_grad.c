// maye grad: the gradients of one sequence's mean next-token log-prob with respect to the trained weights
// (CPU, fp32), for debugging the backward and diffing it against another framework (bench/hf_grad_diff.py
// compares them with torch autograd on transformers' model): reads input_ids (+ pixel_values, image_grid_thw)
// as `maye forward` does, runs the training forward (vision tower too when it trains) and backward of
// maye-update, and writes each trained tensor's gradient under its checkpoint name.
#include "commands.h"
#include "debug_cli.h"

#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "io/safetensors.h"
#include "model/backward.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void grad_usage(FILE *f) {
    fprintf(f,
            "usage: maye grad --model DIR --in IN.safetensors --out OUT.safetensors [--train PARTS]\n"
            "                 [--temperature T] [--recompute] [--prefix P] [--threads N]\n\n"
            "Gradients (CPU, fp32) of L = the mean over the sequence of log p(token t+1 | tokens <= t) at the\n"
            "temperature, with respect to the trained weights, through the forward and backward maye-update runs.\n"
            "IN holds input_ids [L] and, for images, pixel_values [P, PD] and image_grid_thw [n, 3], as for\n"
            "`maye forward`. OUT gets loss [1] and, for each trained tensor, its gradient under the tensor's\n"
            "checkpoint name, flat (F32 [numel]; reshape it like the weight).\n\n"
            "  --model DIR        checkpoint directory (config.json + safetensors)\n"
            "  --in FILE          input tensors\n"
            "  --out FILE         output tensors\n"
            "  --train PARTS      comma-separated: llm, connector (the merger), vit (the vision tower)\n"
            "                     (default llm,connector,vit)\n"
            "  --temperature T    divide the logits by T (default 1)\n"
            "  --recompute        recompute each layer's activations in the backward (update.recompute)\n"
            "  --prefix P         read P+input_ids, P+pixel_values, P+image_grid_thw\n"
            "  --threads N        CPU threads (default 0 = all cores)\n"
            "  -h, --help         this help\n");
}

// "llm,connector,vit" (any subset, at least one) -> the trained groups.
static int parse_train(const char *s, unsigned *groups) {
    bool llm = false, connector = false, vit = false;
    char *copy = xstrdup(s), *save = NULL;
    int rc = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save)) {
        if (!strcmp(tok, "llm")) llm = true;
        else if (!strcmp(tok, "connector")) connector = true;
        else if (!strcmp(tok, "vit")) vit = true;
        else rc = maye_fail("--train: unknown part '%s' (llm, connector or vit)", tok);
    }
    free(copy);
    if (rc == 0 && !llm && !connector && !vit) rc = maye_fail("--train: name at least one of llm, connector, vit");
    *groups = maye_train_groups(llm, connector, vit);
    return rc;
}

typedef struct {
    unsigned groups;
    float temperature;
    bool recompute;
    const char *out;
} grad_args;

// Runs the forward and backward and writes the gradients to out.
static int run(const maye_model *m, const maye_debug_input *in, void *arg) {
    const grad_args *ga = arg;
    unsigned groups = ga->groups;
    float temperature = ga->temperature;
    bool recompute = ga->recompute;
    const char *out = ga->out;
    const maye_model_config *c = &m->cfg;
    int L = (int)in->L, C = c->hidden;
    CHECK_OR_FAIL(L >= 2, "the sequence has %d token(s): a gradient needs at least one next token", L);
    bool vision = (groups & ((1u << MAYE_PARAM_VISION) | (1u << MAYE_PARAM_MERGER))) && in->n_img > 0;
    maye_grads g;
    maye_grads_init(&g, m, groups);
    maye_optim_tensor *tab = NULL;
    int n_tab = maye_grads_optim_table(&g, m, &tab);
    maye_llm_train lt;
    maye_llm_train_init(&lt, c, L, recompute);
    maye_vision_train vt;
    bool vit = (groups & (1u << MAYE_PARAM_VISION)) != 0;
    if (vision) maye_vision_train_init(&vt, c, in->P, recompute || !vit); // merger alone: nothing to recompute
    float *embeds = xcalloc((size_t)(in->n_tok * C + 1), sizeof(float));
    float *dembeds = xcalloc((size_t)(in->n_tok * C + 1), sizeof(float));
    int64_t *pos = xmalloc(sizeof(int64_t) * 3 * (size_t)L), *tgt = xmalloc(sizeof(int64_t) * (size_t)L), delta = 0;
    float *lp = xmalloc(sizeof(float) * (size_t)L), *dlp = xmalloc(sizeof(float) * (size_t)L);
    int cu[2] = {0, L};
    maye_llm_batch b = {1, L, cu, in->ids, pos, embeds, in->n_tok};
    int rc = vision ? maye_vision_train_forward(m, &vt, in->pixels, in->P, in->grid, (int)in->n_img, embeds)
                    : maye_vision_forward(m, in->pixels, in->P, in->grid, (int)in->n_img, embeds);
    if (rc == 0) rc = maye_mrope_positions(c, in->ids, L, in->grid, (int)in->n_img, pos, L, &delta);
    if (rc == 0) rc = maye_llm_forward(m, &b, &lt.acts);
    float loss = 0;
    if (rc == 0) {
        maye_next_token_targets(&b, tgt);
        rc = maye_llm_logprobs(m, &lt.acts, tgt, temperature, lp, NULL);
    }
    if (rc == 0) {
        double sum = 0;
        for (int t = 0; t < L; t++) {
            dlp[t] = tgt[t] >= 0 ? 1.0f / (float)(L - 1) : 0.0f;
            if (tgt[t] >= 0) sum += lp[t];
        }
        loss = (float)(sum / (L - 1));
        rc = maye_llm_backward(m, &lt, &b, tgt, temperature, lp, dlp, &g, vision ? dembeds : NULL);
    }
    if (rc == 0 && vision) rc = maye_vision_backward(m, &vt, in->pixels, dembeds, &g);
    if (rc == 0) {
        maye_st_writer w;
        maye_st_writer_init(&w);
        int64_t one[1] = {1};
        maye_st_writer_add(&w, "loss", MAYE_F32, 1, one, &loss);
        for (int k = 0; k < n_tab; k++) {
            if (!tab[k].trainable) continue;
            int64_t shape[1] = {tab[k].numel};
            maye_st_writer_add(&w, tab[k].name, MAYE_F32, 1, shape, g.memory + tab[k].grad_offset);
        }
        char temp[32];
        snprintf(temp, sizeof temp, "%g", temperature);
        maye_st_writer_meta(&w, "temperature", temp);
        maye_st_writer_meta(&w, "loss", "mean next-token log-prob");
        rc = maye_st_writer_save(&w, out);
        maye_st_writer_free(&w);
    }
    if (vision) maye_vision_train_free(&vt);
    maye_llm_train_free(&lt);
    maye_optim_table_free(tab, n_tab);
    maye_grads_free(&g);
    free(embeds), free(dembeds), free(pos), free(tgt), free(lp), free(dlp);
    return rc;
}

int cmd_grad(int argc, char **argv) {
    const char *model = NULL, *in_path = NULL, *out = NULL, *train = "llm,connector,vit", *temp_s = "1",
               *threads_s = "0", *prefix = "";
    int recompute = 0;
    const maye_debug_opt opts[] = {
        {"--model", &model, NULL},       {"--in", &in_path, NULL},         {"--out", &out, NULL},
        {"--train", &train, NULL},       {"--temperature", &temp_s, NULL}, {"--threads", &threads_s, NULL},
        {"--prefix", &prefix, NULL},     {"--recompute", NULL, &recompute},
    };
    int status = maye_debug_opts_parse(argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), "grad", grad_usage);
    if (status >= 0) return status;
    if (!model || !in_path || !out) {
        grad_usage(stderr);
        return 2;
    }
    double temperature;
    int64_t threads;
    unsigned groups;
    if (maye_parse_f64(temp_s, &temperature, "--temperature") < 0 ||
        maye_parse_i64(threads_s, &threads, "--threads") < 0 || parse_train(train, &groups) < 0) {
        maye_report_error();
        return 2;
    }
    if (!(temperature > 0)) {
        log_error("--temperature must be positive (got %s)", temp_s);
        return 2;
    }
    grad_args ga = {groups, (float)temperature, recompute != 0, out};
    return maye_debug_run(model, in_path, prefix, threads, run, &ga);
}
