// maye generate: sampled (or greedy) continuations of one sequence with the rollout engine, for debugging and
// tests: reads input_ids (+ pixel_values, image_grid_thw) from a safetensors file, as `maye forward` does,
// and prints one JSON line per response with its ids, log-probs and finish reason.
#include "commands.h"
#include "debug_cli.h"

#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "kernels/cpu/kernels.h"
#include "model/generate.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void generate_usage(FILE *f) {
    fprintf(f,
            "usage: maye generate --model DIR --in IN.safetensors --max-new-tokens N [--temperature T]\n"
            "                     [--top-p P] [--top-k K] [--seed S] [--n N] [--min-tokens M] [--stop-ids A,B]\n"
            "                     [--tokenizer FILE] [--prefix P] [--prompt-tokens L] [--threads N]\n\n"
            "Generates N responses (CPU, fp32) after the sequence input_ids [L] of IN (with pixel_values [P, PD]\n"
            "and image_grid_thw [n, 3] for images, as for `maye forward`) and prints one JSON line per response:\n"
            "{\"sample\", \"ids\", \"logprobs\", \"finish\": \"stop\"|\"length\"} (+ \"text\" with --tokenizer).\n"
            "The sampler is the one of maye-rollout (model/sample.h); draws use the streams of sample id \"\",\n"
            "epoch 0, step 0 of --seed.\n\n"
            "  --model DIR          checkpoint directory (config.json + safetensors)\n"
            "  --in FILE            input tensors\n"
            "  --max-new-tokens N   tokens per response\n"
            "  --temperature T      0 (default) is greedy (its log-probs at temperature 1)\n"
            "  --top-p P            nucleus mass (default 1)\n"
            "  --top-k K            keep the K most likely tokens (default 0 = off)\n"
            "  --seed S             random seed (default 0)\n"
            "  --n N                responses (default 1)\n"
            "  --min-tokens M       stop ids are suppressed before M tokens (default 0)\n"
            "  --stop-ids A,B       stop token ids (default: the model's eos_token_id; \"\" = none)\n"
            "  --tokenizer FILE     decode the responses (and, without --stop-ids, add <|im_end|>, <|endoftext|>\n"
            "                       to the stop ids)\n"
            "  --prefix P           read P+input_ids, P+pixel_values, P+image_grid_thw\n"
            "  --prompt-tokens L    use only the first L ids of input_ids (e.g. a fixture's prompt)\n"
            "  --threads N          CPU threads (default 0 = all cores)\n"
            "  -h, --help           this help\n");
}

// ----------------------------------------------------------------------------
// options

// Parses "A,B,..." into ids; "" gives none.
static int parse_ids(const char *s, int32_t *ids, int *n) {
    *n = 0;
    char *copy = xstrdup(s), *save = NULL;
    int rc = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save)) {
        int64_t v;
        rc = maye_parse_i64(tok, &v, "--stop-ids");
        if (rc == 0 && *n >= MAYE_GEN_MAX_STOP_IDS) rc = maye_fail("--stop-ids: at most %d ids", MAYE_GEN_MAX_STOP_IDS);
        if (rc == 0 && (v < 0 || v > INT32_MAX)) rc = maye_fail("--stop-ids: %lld is not a token id", (long long)v);
        if (rc == 0) ids[(*n)++] = (int32_t)v;
    }
    free(copy);
    return rc;
}

// ----------------------------------------------------------------------------
// output

static void print_output(int index, const maye_gen_output *o) {
    cJSON *j = cJSON_CreateObject(), *ids = cJSON_CreateArray(), *lps = cJSON_CreateArray();
    for (int t = 0; t < o->n; t++) {
        cJSON_AddItemToArray(ids, cJSON_CreateNumber(o->ids[t]));
        char buf[32];
        snprintf(buf, sizeof buf, "%.9g", o->logprobs[t]);
        cJSON_AddItemToArray(lps, cJSON_CreateRaw(buf));
    }
    cJSON_AddNumberToObject(j, "sample", index);
    cJSON_AddItemToObject(j, "ids", ids);
    cJSON_AddItemToObject(j, "logprobs", lps);
    cJSON_AddStringToObject(j, "finish", o->finish == MAYE_FINISH_STOP ? "stop" : "length");
    if (o->text) cJSON_AddStringToObject(j, "text", o->text);
    char *line = cJSON_PrintUnformatted(j);
    printf("%s\n", line);
    free(line);
    cJSON_Delete(j);
}

// ----------------------------------------------------------------------------
// command

int cmd_generate(int argc, char **argv) {
    const char *model = NULL, *in_path = NULL, *max_s = NULL, *temp_s = "0", *top_p_s = "1", *top_k_s = "0",
               *seed_s = "0", *n_s = "1", *min_s = "0", *stop_s = NULL, *tok_path = NULL, *prefix = "",
               *threads_s = "0", *prompt_s = NULL;
    const maye_debug_opt opts[] = {
        {"--model", &model, NULL},            {"--in", &in_path, NULL},
        {"--max-new-tokens", &max_s, NULL},   {"--temperature", &temp_s, NULL},
        {"--top-p", &top_p_s, NULL},          {"--top-k", &top_k_s, NULL},
        {"--seed", &seed_s, NULL},            {"--n", &n_s, NULL},
        {"--min-tokens", &min_s, NULL},       {"--stop-ids", &stop_s, NULL},
        {"--tokenizer", &tok_path, NULL},     {"--prefix", &prefix, NULL},
        {"--prompt-tokens", &prompt_s, NULL}, {"--threads", &threads_s, NULL},
    };
    int status = maye_debug_opts_parse(argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), "generate",
                                       generate_usage);
    if (status >= 0) return status;
    if (!model || !in_path || !max_s) {
        generate_usage(stderr);
        return 2;
    }
    int64_t max_new, top_k, seed, n, min_tokens, threads, prompt_len = 0;
    double temperature, top_p;
    if (maye_parse_i64(max_s, &max_new, "--max-new-tokens") < 0 ||
        maye_parse_f64(temp_s, &temperature, "--temperature") < 0 || maye_parse_f64(top_p_s, &top_p, "--top-p") < 0 ||
        maye_parse_i64(top_k_s, &top_k, "--top-k") < 0 || maye_parse_i64(seed_s, &seed, "--seed") < 0 ||
        maye_parse_i64(n_s, &n, "--n") < 0 || maye_parse_i64(min_s, &min_tokens, "--min-tokens") < 0 ||
        maye_parse_i64(threads_s, &threads, "--threads") < 0 ||
        (prompt_s && maye_parse_i64(prompt_s, &prompt_len, "--prompt-tokens") < 0)) {
        maye_report_error();
        return 2;
    }
    if (max_new < 1 || max_new >= (1 << 30) || n < 1 || n > (1 << 20) || top_k < 0 || top_k > INT32_MAX ||
        min_tokens < 0 || min_tokens > max_new) {
        log_error("--max-new-tokens and --n must be positive, --top-k >= 0, --min-tokens in [0, --max-new-tokens]");
        return 2;
    }
    cpu_set_threads((int)threads);
    maye_model m;
    maye_tokenizer *tok = NULL;
    if (maye_model_load(&m, model) < 0) {
        maye_report_error();
        return 1;
    }
    maye_debug_input in;
    maye_gen_engine e;
    int have_engine = 0, have_input = 0;
    maye_gen_config g = {
        .n = (int)n, .sample = {(float)temperature, (float)top_p, (int)top_k}, .seed = (uint64_t)seed,
        .max_tokens = (int)max_new, .min_tokens = (int)min_tokens, .max_batch_seqs = (int)n,
    };
    int rc = tok_path ? maye_tokenizer_load(&tok, tok_path) : 0;
    g.tok = tok;
    if (rc == 0)
        rc = stop_s ? parse_ids(stop_s, g.stop_ids, &g.n_stop) : maye_gen_stop_ids(&m, tok, g.stop_ids, &g.n_stop);
    if (rc == 0) rc = maye_debug_input_read(&in, &m.cfg, in_path, prefix);
    have_input = rc == 0;
    if (rc == 0 && prompt_s) {
        if (prompt_len < 1 || prompt_len > in.L)
            rc = maye_fail("--prompt-tokens %lld: input_ids has %lld tokens", (long long)prompt_len, (long long)in.L);
        else in.L = prompt_len;
    }
    if (rc == 0) {
        g.max_batch_tokens = (in.L + max_new + 16) * n;
        rc = maye_gen_engine_init(&e, &m, &g);
        have_engine = rc == 0;
    }
    if (rc == 0) {
        maye_gen_request rq = {in.ids, (int)in.L, in.pixels, in.P, in.grid, (int)in.n_img,
                               maye_sample_stream_key("", 0, 0), in_path};
        maye_gen_result res;
        rc = maye_gen_run(&e, &rq, 1, &res);
        for (int s = 0; rc == 0 && s < n; s++) print_output(s, &res.out[s]);
        if (rc == 0) maye_gen_result_free(&res, 1, (int)n);
    }
    if (rc < 0) maye_report_error();
    if (have_engine) maye_gen_engine_free(&e);
    if (have_input) maye_debug_input_free(&in);
    if (tok) maye_tokenizer_free(tok);
    maye_model_free(&m);
    return rc < 0 ? 1 : 0;
}
