// The generation engine of maye-rollout: n sampled responses for each of a batch of prompts (text and images),
// with continuous batching over a shared KV cache. The structure is backend-neutral: a scheduler over
// sequences (this file) and two model steps (decode.h: prefill one prompt, decode one token for every live
// sequence); a CUDA backend supplies the same two steps.
//
// Scheduling. Samples wait in one queue in (request, sample index) order. A sample is admitted when fewer
// than max_batch_seqs sequences are live and a KV range of prompt + max_tokens rows can be reserved in the
// pool of max_batch_tokens rows (admission by reservation: a live sequence never needs more memory, so the
// engine never preempts and never exceeds the budget; compaction handles fragmentation). The first admitted
// sample of a request runs the vision tower once per image and prefills the prompt once into its range; its
// siblings copy the prompt rows from a live sibling, and a sibling that finishes while samples of its
// request still wait hands its range over as it is (no copy). Every admitted sample draws its first token
// from the prompt's logits; then each decode step runs the model on all live sequences at once and draws
// one token per sequence. A finished sequence frees its range at once, and waiting samples join the next
// step. A request whose prompt + max_tokens does not fit in the pool is an error before any work.
//
// Stopping. A response ends with finish STOP at a stop token (kept as its last id) or when its decoded text
// contains a stop string (the ids are kept, the text is cut before the earliest occurrence), and with
// LENGTH after max_tokens tokens. Before min_tokens tokens the stop ids are suppressed (sample.h) and stop
// strings are not looked for.
//
// Determinism: each sample draws from its own stream (sample.h) and the model steps are batch-invariant
// (decode.h), so a response does not depend on the other requests, max_batch_seqs/max_batch_tokens, the
// thread count or the order sequences finish.
#pragma once
#include "core/log.h"
#include "model/decode.h"
#include "model/kvcache.h"
#include "model/model.h"
#include "model/sample.h"
#include "text/tokenizer.h"

#include <stdint.h>

#define MAYE_GEN_MAX_STOP_IDS 16

// Why a response ended (the values of FinishReason in schemas/maye.proto).
typedef enum { MAYE_FINISH_STOP = 1, MAYE_FINISH_LENGTH = 2 } maye_finish;

typedef struct {
    int n;                          // responses per request (rollout.n)
    maye_sample_params sample;      // temperature, top_p, top_k
    uint64_t seed;
    int max_tokens;                 // new tokens per response
    int min_tokens;
    int32_t stop_ids[MAYE_GEN_MAX_STOP_IDS];
    int n_stop;
    char **stop_strings;            // (n_stop_strings) copied by the engine
    int n_stop_strings;
    const maye_tokenizer *tok;      // decodes the text (and finds stop strings); NULL: no text
    int64_t max_batch_tokens;       // KV rows over all live sequences
    int max_batch_seqs;             // live sequences at most
} maye_gen_config;

// One prompt.
typedef struct {
    const int64_t *ids;       // (T) chat template applied, image pads expanded
    int n_ids;                // T
    const float *pixels;      // (P, PD) the patches of every image in order; NULL without images
    int64_t n_patches;        // P
    const int64_t *grid_thw;  // (n_images, 3)
    int n_images;
    uint64_t stream_key;      // maye_sample_stream_key(sample id, epoch, step)
    const char *name;         // names the request in messages ("query record 3")
} maye_gen_request;

typedef struct {
    int32_t *ids;      // (n) generated ids, the stop token included when a stop token ended the response
    float *logprobs;   // (n) sampling log-probs (sample.h)
    int n;
    char *text;        // decoded without special tokens, cut before a stop string; NULL without a tokenizer
    maye_finish finish;
    double seconds;    // from the first token to the last
} maye_gen_output;

typedef struct {
    maye_gen_output *out;    // (cfg.n) by sample index
    double prefill_seconds;  // vision tower + prompt prefill
    double decode_seconds;   // from the first sample's admission to the last sample's last token
} maye_gen_result;

// Totals over every run of an engine (progress and benchmarks).
typedef struct {
    int64_t requests, sequences, prompt_tokens, tokens, decode_steps;
    double vision_seconds, prefill_seconds, decode_seconds, sample_seconds;
} maye_gen_stats;

typedef struct {
    const maye_model *m;
    maye_gen_config cfg;
    maye_kv_pool pool;
    maye_gen_stats stats;
    maye_progress *progress; // optional: sequences finished, advanced by every run
} maye_gen_engine;

// Checks the settings (messages name the rollout.* keys) and reserves the KV pool.
int maye_gen_engine_init(maye_gen_engine *e, const maye_model *m, const maye_gen_config *cfg);
void maye_gen_engine_free(maye_gen_engine *e);
// Generates cfg.n responses for each of the n requests into res (n; free with maye_gen_result_free). A
// request that is malformed (ids outside the vocabulary, image pads that do not match the grids) or too
// large for the pool fails the whole call before any work, naming it.
int maye_gen_run(maye_gen_engine *e, const maye_gen_request *reqs, int n, maye_gen_result *res);
void maye_gen_result_free(maye_gen_result *res, int n, int n_out);
// The checks every backend's engine makes on a request before any work, with messages naming rq->name: a
// non-empty prompt that stays under 2^30 tokens with max_tokens more, ids in the model's vocabulary, image
// grids that match the patch rows, and as many image-pad tokens as the images need (*n_image_tokens).
int maye_gen_request_check(const maye_model_config *c, const maye_gen_request *rq, int max_tokens,
                           int64_t *n_image_tokens);
// Gives an output made by another backend's decoder (which ends at stop ids and max_tokens only) what
// maye_gen_run gives: when a stop string shows up in the decoded text (from min_tokens on), the ids end with
// the token that completed it (finish STOP), exactly where maye_gen_run would have stopped the sequence; then
// out->text is decoded as maye_gen_run decodes it (nothing without cfg->tok).
int maye_gen_output_finish(const maye_gen_config *cfg, maye_gen_output *out);

// The stop ids of a model and tokenizer: <|im_end|> and <|endoftext|> (tokenizer may be NULL) plus the
// eos_token_id (a number or a list, top level or text_config) of the model's config.json; no duplicates.
int maye_gen_stop_ids(const maye_model *m, const maye_tokenizer *tok, int32_t *ids, int *n);
