// Batch invariance of the generation engine: 16 queries of mixed lengths (text only, or with images of
// different grids; one of 150 tokens, one with 144 patches), two responses each, decoded together under
// tight limits (few sequences at a time, a KV pool that forces waiting, hand-overs and compaction) with two
// threads, must give exactly the same ids, log-probs and finish reasons as each query decoded alone, one
// sequence at a time, with one thread (the prefills use fixed matmul tiles, so their bits do not depend on
// the thread count either). Checked for greedy decoding and for seeded sampling (plain, and with
// temperature, top-k, top-p and min_tokens), on both test models and one with 7 query heads per kv head.
#include "common.h"
#include "kernels/cpu/kernels.h"
#include "model/generate.h"

#include <stdio.h>

#define N_QUERIES 16
#define N_RESP 2
#define MAX_TOKENS 10
#define LONG_PROMPT 150 // text tokens of query 5: more than two of the decode attention's 64-key blocks

static int same_output(const char *what, int q, int k, const maye_gen_output *a, const maye_gen_output *b) {
    if (a->n != b->n || a->finish != b->finish) {
        EXPECT(0, "%s: query %d response %d: %d tokens (finish %d) in the batch, %d (finish %d) alone", what, q, k,
               a->n, a->finish, b->n, b->finish);
        return 0;
    }
    for (int t = 0; t < a->n; t++)
        if (a->ids[t] != b->ids[t] || memcmp(&a->logprobs[t], &b->logprobs[t], sizeof(float))) {
            EXPECT(0, "%s: query %d response %d token %d: id %d logprob %.9g in the batch, id %d logprob %.9g alone",
                   what, q, k, t, a->ids[t], a->logprobs[t], b->ids[t], b->logprobs[t]);
            return 0;
        }
    return 1;
}

static void run_case(const maye_model *m, const maye_gen_request *rq, const char *what, maye_sample_params sp,
                     int min_tokens) {
    maye_gen_config g = {.n = N_RESP, .sample = sp, .seed = 1234, .max_tokens = MAX_TOKENS, .min_tokens = min_tokens,
                         .max_batch_seqs = 5};
    EXPECT_OK(maye_gen_stop_ids(m, NULL, g.stop_ids, &g.n_stop));
    int longest = 0;
    for (int q = 0; q < N_QUERIES; q++) longest = rq[q].n_ids > longest ? rq[q].n_ids : longest;
    // room for about three of the longest sequences: samples wait, ranges are handed over and compacted
    g.max_batch_tokens = 3 * (longest + MAX_TOKENS) + 5;
    maye_gen_engine e;
    maye_gen_result batch[N_QUERIES], alone[N_QUERIES];
    cpu_set_threads(2);
    EXPECT_OK(maye_gen_engine_init(&e, m, &g));
    EXPECT_OK(maye_gen_run(&e, rq, N_QUERIES, batch));
    int64_t steps = e.stats.decode_steps, tokens = e.stats.tokens;
    maye_gen_engine_free(&e);

    cpu_set_threads(1);
    g.max_batch_seqs = 1;
    EXPECT_OK(maye_gen_engine_init(&e, m, &g));
    for (int q = 0; q < N_QUERIES; q++) EXPECT_OK(maye_gen_run(&e, &rq[q], 1, &alone[q]));
    maye_gen_engine_free(&e);
    cpu_set_threads(0);

    int ok = 1, stops = 0;
    for (int q = 0; q < N_QUERIES; q++)
        for (int k = 0; k < N_RESP; k++) {
            ok &= same_output(what, q, k, &batch[q].out[k], &alone[q].out[k]);
            stops += batch[q].out[k].finish == MAYE_FINISH_STOP;
            for (int t = 0; t < min_tokens && t < batch[q].out[k].n; t++)
                for (int i = 0; i < g.n_stop; i++)
                    EXPECT(batch[q].out[k].ids[t] != g.stop_ids[i], "%s: stop id at token %d < min_tokens", what, t);
        }
    // the batch really was a batch: fewer steps than tokens
    EXPECT(steps * 2 < tokens, "%s: %lld decode steps for %lld tokens", what, (long long)steps, (long long)tokens);
    printf("%s: %d responses %s (%lld tokens in %lld batched steps, %d stopped early)\n", what, N_QUERIES * N_RESP,
           ok ? "identical" : "DIFFER", (long long)tokens, (long long)steps, stops);
    for (int q = 0; q < N_QUERIES; q++) {
        maye_gen_result_free(&batch[q], 1, N_RESP);
        maye_gen_result_free(&alone[q], 1, N_RESP);
    }
}

static void run_model(const char *json, const char *name) {
    maye_model m;
    test_model(&m, json, 5);
    test_prompt pr[N_QUERIES];
    maye_gen_request rq[N_QUERIES];
    static const int grids[4][2] = {{2, 2}, {4, 4}, {2, 6}, {4, 6}};
    char names[N_QUERIES][32];
    for (int q = 0; q < N_QUERIES; q++) {
        int img = q % 3 == 0;
        // query 5 is long, so its attention runs over several key blocks in a batch and over one alone, and
        // query 9's image has 144 patches: both make products of more rows than one tile of the prefill
        int n_text = q == 5 ? LONG_PROMPT : 1 + (q * 7) % 13;
        int gh = q == 9 ? 12 : img ? grids[q / 3 % 4][0] : 0, gw = q == 9 ? 12 : img ? grids[q / 3 % 4][1] : 0;
        test_prompt_make(&m.cfg, &pr[q], n_text, gh, gw, (uint64_t)q + 100);
        snprintf(names[q], sizeof names[q], "query %d", q);
        rq[q] = (maye_gen_request){pr[q].ids, pr[q].n, pr[q].pixels, pr[q].P, pr[q].grid, pr[q].n_images,
                                   maye_sample_stream_key(names[q], 0, 3), names[q]};
    }
    char what[128];
    snprintf(what, sizeof what, "%s greedy", name);
    run_case(&m, rq, what, (maye_sample_params){0, 1, 0}, 0);
    snprintf(what, sizeof what, "%s sampling T=1", name);
    run_case(&m, rq, what, (maye_sample_params){1.0f, 1.0f, 0}, 0);
    snprintf(what, sizeof what, "%s sampling T=0.7 top-k 20 top-p 0.9 min_tokens 3", name);
    run_case(&m, rq, what, (maye_sample_params){0.7f, 0.9f, 20}, 3);
    for (int q = 0; q < N_QUERIES; q++) test_prompt_free(&pr[q]);
    maye_model_free(&m);
}

int main(void) {
    run_model(TEST_MODEL_QWEN2_VL, "qwen2-vl");
    run_model(TEST_MODEL_QWEN25_ODD, "qwen2.5-vl odd sizes");
    run_model(TEST_MODEL_GQA7, "qwen2-vl 7 heads per kv head");
    return TEST_RESULT();
}
