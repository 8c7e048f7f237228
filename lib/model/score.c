// Packed scoring of response tokens (see score.h).
#include "model/score.h"

#include "core/error.h"

#include <stdlib.h>
#include <string.h>

void maye_scorer_init(maye_scorer *s) { memset(s, 0, sizeof *s); }

void maye_scorer_free(maye_scorer *s) {
    if (s->have_acts) maye_llm_acts_free(&s->acts);
    memset(s, 0, sizeof *s);
}

typedef struct {
    maye_scorer *s;
    const maye_model *m;
} cpu_scorer;

// The CPU model's packed forward, in activations grown to the largest batch seen.
static int cpu_forward(void *ctx, const maye_llm_batch *b, const int64_t *targets, float temperature, float *logprobs,
                       float *entropy) {
    cpu_scorer *cs = ctx;
    maye_scorer *s = cs->s;
    if (!s->have_acts || s->acts.T_cap < b->T) {
        if (s->have_acts) maye_llm_acts_free(&s->acts);
        maye_llm_acts_init(&s->acts, &cs->m->cfg, b->T, b->T, 0);
        s->have_acts = 1;
    }
    TRY(maye_llm_forward(cs->m, b, &s->acts));
    return maye_llm_logprobs(cs->m, &s->acts, targets, temperature, logprobs, entropy);
}

// Scores items [first, first + count) in one packed forward.
static int score_chunk(const maye_model_config *c, maye_score_forward fwd, void *ctx, const maye_score_item *items,
                       int first, int count, float temperature, float **logprobs, float **entropy) {
    int T = 0;
    int64_t NI = 0;
    for (int i = first; i < first + count; i++) T += items[i].T, NI += items[i].n_image_embeds;
    int *cu = xmalloc(sizeof(int) * (size_t)(count + 1)), *n_prompt = xmalloc(sizeof(int) * (size_t)count);
    int64_t *ids = xmalloc(sizeof(int64_t) * (size_t)T), *pos = xmalloc(sizeof(int64_t) * 3 * (size_t)T);
    int64_t *targets = xmalloc(sizeof(int64_t) * (size_t)T);
    float *embeds = NI ? xmalloc(sizeof(float) * (size_t)(NI * c->hidden)) : NULL;
    float *lp = xmalloc(sizeof(float) * (size_t)T), *ent = entropy ? xmalloc(sizeof(float) * (size_t)T) : NULL;
    int rc = 0, off = 0;
    int64_t erow = 0;
    int64_t *pos_one = xmalloc(sizeof(int64_t) * 3 * (size_t)T);
    for (int i = first; i < first + count && rc == 0; i++) {
        const maye_score_item *it = &items[i];
        cu[i - first] = off;
        for (int t = 0; t < it->T; t++) {
            ids[off + t] = it->ids[t];
            // the next token of a response position; -1 where nothing is scored
            targets[off + t] = t + 1 < it->T && t + 1 >= it->n_prompt ? it->ids[t + 1] : -1;
        }
        rc = maye_mrope_positions_response(c, ids + off, it->T, it->n_prompt, it->grid_thw, it->n_images, pos_one,
                                           it->T);
        n_prompt[i - first] = it->n_prompt;
        for (int a = 0; a < 3 && rc == 0; a++) memcpy(pos + (size_t)a * T + off, pos_one + (size_t)a * it->T,
                                                     sizeof(int64_t) * (size_t)it->T);
        if (it->n_image_embeds) {
            memcpy(embeds + erow * c->hidden, it->image_embeds, sizeof(float) * (size_t)(it->n_image_embeds * c->hidden));
            erow += it->n_image_embeds;
        }
        off += it->T;
    }
    cu[count] = T;
    // positions are laid out (3, T) over the packed batch
    if (rc == 0) {
        maye_llm_batch b = {.B = count, .T = T, .cu_seqlens = cu, .ids = ids, .pos = pos, .image_embeds = embeds,
                            .n_image_embeds = NI, .n_prompt = n_prompt};
        rc = fwd(ctx, &b, targets, temperature, lp, ent);
    }
    for (int i = first; i < first + count && rc == 0; i++) {
        const maye_score_item *it = &items[i];
        int base = cu[i - first] + it->n_prompt - 1; // row predicting the first response token
        int nr = it->T - it->n_prompt;
        memcpy(logprobs[i], lp + base, sizeof(float) * (size_t)nr);
        if (entropy) memcpy(entropy[i], ent + base, sizeof(float) * (size_t)nr);
    }
    free(cu), free(n_prompt), free(ids), free(pos), free(pos_one), free(targets), free(embeds), free(lp), free(ent);
    return rc;
}

int maye_score_packed(const maye_model_config *c, maye_score_forward fwd, void *ctx, const maye_score_item *items,
                      int n, float temperature, int max_seqs, float **logprobs, float **entropy) {
    if (max_seqs < 1) max_seqs = 1;
    for (int i = 0; i < n; i++)
        CHECK_OR_FAIL(items[i].n_prompt >= 1 && items[i].n_prompt <= items[i].T,
                      "sequence %d: prompt of %d tokens in a sequence of %d", i, items[i].n_prompt, items[i].T);
    for (int first = 0; first < n; first += max_seqs) {
        int count = n - first < max_seqs ? n - first : max_seqs;
        TRY(score_chunk(c, fwd, ctx, items, first, count, temperature, logprobs, entropy));
    }
    return 0;
}

int maye_scorer_run(maye_scorer *s, const maye_model *m, const maye_score_item *items, int n, float temperature,
                    int max_seqs, float **logprobs, float **entropy) {
    cpu_scorer cs = {s, m};
    return maye_score_packed(&m->cfg, cpu_forward, &cs, items, n, temperature, max_seqs, logprobs, entropy);
}
