// maye forward: one forward pass of a checkpoint on one sequence (text, or text with images), for
// debugging and for diffing against a reference: reads input_ids (+ pixel_values, image_grid_thw) from a
// safetensors file and writes positions, image features, hidden states, logits and next-token log-probs.
#include "commands.h"
#include "debug_cli.h"

#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "io/safetensors.h"
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>

static void forward_usage(FILE *f) {
    fprintf(f,
            "usage: maye forward --model DIR --in IN.safetensors --out OUT.safetensors [--temperature T]\n"
            "                    [--prefix P] [--no-logits] [--threads N]\n\n"
            "Runs the vision tower, M-RoPE and the language model (CPU, fp32) on one sequence.\n"
            "IN holds input_ids [L] (integers), and for images pixel_values [P, %s] and image_grid_thw [n, 3].\n"
            "OUT gets position_ids [3, L] and rope_deltas [1] (I64), image_embeds [tokens, C] (with images),\n"
            "embeds_after_merge [L, C], last_hidden [L, C], logits [L, V], token_logprobs [L-1]\n"
            "(log p(token t+1 | tokens <= t) at the temperature) and entropy [L-1] (F32).\n\n"
            "  --model DIR        checkpoint directory (config.json + safetensors)\n"
            "  --in FILE          input tensors\n"
            "  --out FILE         output tensors\n"
            "  --temperature T    divide the logits by T for the log-probs and entropy (default 1)\n"
            "  --prefix P         read P+input_ids, P+pixel_values, P+image_grid_thw (e.g. --prefix s0. on a\n"
            "                     reference fixture's expected.safetensors)\n"
            "  --no-logits        leave out the [L, V] logits\n"
            "  --threads N        CPU threads (default 0 = all cores)\n"
            "  -h, --help         this help\n",
            "in_chans*temporal_patch*patch^2");
}

typedef struct {
    float temperature;
    int with_logits;
    const char *out;
} forward_args;

static int run(const maye_model *m, const maye_debug_input *in, void *arg) {
    const forward_args *fa = arg;
    float temperature = fa->temperature;
    int with_logits = fa->with_logits;
    const char *out = fa->out;
    const maye_model_config *c = &m->cfg;
    int L = (int)in->L, C = c->hidden, V = c->vocab;
    float *embeds = xmalloc(sizeof(float) * (size_t)(in->n_tok * C + 1));
    int64_t *pos = xmalloc(sizeof(int64_t) * 3 * (size_t)L), delta = 0;
    int64_t *tgt = xmalloc(sizeof(int64_t) * (size_t)L);
    float *lp = xmalloc(sizeof(float) * (size_t)L), *ent = xmalloc(sizeof(float) * (size_t)L), *logits = NULL;
    maye_llm_acts a;
    maye_llm_acts_init(&a, c, L, 0, 0);
    int cu[2] = {0, L};
    maye_llm_batch b = {1, L, cu, in->ids, pos, embeds, in->n_tok};
    int rc = maye_vision_forward(m, in->pixels, in->P, in->grid, (int)in->n_img, embeds);
    if (rc == 0) rc = maye_mrope_positions(c, in->ids, L, in->grid, (int)in->n_img, pos, L, &delta);
    if (rc == 0) rc = maye_llm_forward(m, &b, &a);
    if (rc == 0) {
        maye_next_token_targets(&b, tgt);
        rc = maye_llm_logprobs(m, &a, tgt, temperature, lp, ent);
    }
    if (rc == 0) {
        maye_st_writer w;
        maye_st_writer_init(&w);
        int64_t s3L[2] = {3, L}, s1[1] = {1}, sLC[2] = {L, C}, sTC[2] = {in->n_tok, C}, sL1[1] = {L - 1};
        maye_st_writer_add(&w, "position_ids", MAYE_I64, 2, s3L, pos);
        maye_st_writer_add(&w, "rope_deltas", MAYE_I64, 1, s1, &delta);
        if (in->n_img) maye_st_writer_add(&w, "image_embeds", MAYE_F32, 2, sTC, embeds);
        maye_st_writer_add(&w, "embeds_after_merge", MAYE_F32, 2, sLC, a.embeds);
        maye_st_writer_add(&w, "last_hidden", MAYE_F32, 2, sLC, a.hidden);
        maye_st_writer_add(&w, "token_logprobs", MAYE_F32, 1, sL1, lp);
        maye_st_writer_add(&w, "entropy", MAYE_F32, 1, sL1, ent);
        if (with_logits) {
            int64_t sLV[2] = {L, V};
            logits = xmalloc(sizeof(float) * (size_t)L * V);
            maye_llm_logits(m, a.hidden, L, logits);
            maye_st_writer_add(&w, "logits", MAYE_F32, 2, sLV, logits);
        }
        char temp[32];
        snprintf(temp, sizeof temp, "%g", temperature);
        maye_st_writer_meta(&w, "temperature", temp);
        rc = maye_st_writer_save(&w, out);
        maye_st_writer_free(&w);
    }
    maye_llm_acts_free(&a);
    free(embeds), free(pos), free(tgt), free(lp), free(ent), free(logits);
    return rc;
}

int cmd_forward(int argc, char **argv) {
    const char *model = NULL, *in_path = NULL, *out = NULL, *temp_s = "1", *threads_s = "0", *prefix = "";
    int no_logits = 0;
    const maye_debug_opt opts[] = {
        {"--model", &model, NULL},         {"--in", &in_path, NULL},
        {"--out", &out, NULL},             {"--temperature", &temp_s, NULL},
        {"--threads", &threads_s, NULL},   {"--prefix", &prefix, NULL},
        {"--no-logits", NULL, &no_logits},
    };
    int status = maye_debug_opts_parse(argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), "forward", forward_usage);
    if (status >= 0) return status;
    if (!model || !in_path || !out) {
        forward_usage(stderr);
        return 2;
    }
    double temperature;
    int64_t threads;
    if (maye_parse_f64(temp_s, &temperature, "--temperature") < 0 ||
        maye_parse_i64(threads_s, &threads, "--threads") < 0) {
        maye_report_error();
        return 2;
    }
    if (!(temperature > 0)) {
        log_error("--temperature must be positive (got %s)", temp_s);
        return 2;
    }
    forward_args fa = {(float)temperature, !no_logits, out};
    return maye_debug_run(model, in_path, prefix, threads, run, &fa);
}
