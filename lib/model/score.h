// Scoring sequences (prompt + response) with one model: the log-probs (and entropies) of the response
// tokens at a temperature, for many sequences packed into forwards of at most `max_seqs` sequences
// (traj.forward_batch_size). maye-traj scores every response twice with it (policy and reference);
// maye-update computes the same quantities with the backward's activations kept.
#pragma once
#include "model/model.h"

#include <stdint.h>

typedef struct {
    const int32_t *ids;         // (T) the prompt followed by the response
    int T;
    int n_prompt;               // the response is ids[n_prompt..T)
    const float *image_embeds;  // (NI, C) rows for the sequence's image-pad tokens, in order; NULL if NI = 0
    int64_t n_image_embeds;     // NI
    const int64_t *grid_thw;    // (n_images, 3)
    int n_images;
} maye_score_item;

typedef struct {
    maye_llm_acts acts; // grown to the largest packed forward seen
    int have_acts;
} maye_scorer;

void maye_scorer_init(maye_scorer *s);
void maye_scorer_free(maye_scorer *s);
// logprobs[i] (T_i - n_prompt_i floats each) receives log p(response token) for item i; entropy[i] (same
// size, may be NULL) the entropy of each of those distributions. Items are packed in order, `max_seqs` at
// a time. Fails on ids outside the vocabulary or image pads that do not match the embeddings.
int maye_scorer_run(maye_scorer *s, const maye_model *m, const maye_score_item *items, int n, float temperature,
                    int max_seqs, float **logprobs, float **entropy);

// The forward and log-probs of one packed batch on some backend: maye_llm_forward + maye_llm_logprobs on the
// CPU model, or a device model's (backend/backend.h).
typedef int (*maye_score_forward)(void *ctx, const maye_llm_batch *b, const int64_t *targets, float temperature,
                                  float *logprobs, float *entropy);
// maye_scorer_run with the packed forwards done by fwd(ctx, ...) for a model of config c.
int maye_score_packed(const maye_model_config *c, maye_score_forward fwd, void *ctx, const maye_score_item *items,
                      int n, float temperature, int max_seqs, float **logprobs, float **entropy);
