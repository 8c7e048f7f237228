// The RL and SFT learning steps (see update.h).
#include "rl/update.h"

#include "backend/backend.h"
#include "core/error.h"
#include "core/interrupt.h"
#include "core/log.h"
#include "core/rng.h"
#include "core/util.h"
#include "data/inputs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// Dimension letters: B sequences of a step, K sequences of a micro-batch, R longest response of a batch,
// T packed tokens of a micro-batch, C hidden, NI image-feature rows.

// ----------------------------------------------------------------------------
// setup

int maye_trainer_init(maye_trainer *tr, const maye_config *cfg, const char *model_dir, int64_t version) {
    memset(tr, 0, sizeof *tr);
    tr->cfg = cfg;
    tr->version = version;
    tr->groups = maye_train_groups(cfg->update.train_llm, cfg->update.train_connector, cfg->update.train_vit);
    CHECK_OR_FAIL(tr->groups, "nothing to train: update.train_llm, update.train_connector and update.train_vit "
                              "are all false");
    tr->train_vision = cfg->update.train_vit || cfg->update.train_connector;
    CHECK_OR_FAIL(!tr->train_vision || !strcmp(cfg->model.device, "cpu"), "update.train_vit / update.train_connector "
                  "= true: the GPU trainer (model.device=%s) trains the language model only; set both to false (the "
                  "paper's recipe), or train on the CPU (model.device=cpu model.dtype=fp32)", cfg->model.device);
    TRY(maye_ppo_params_from_config(&tr->pp, cfg));
    TRY(maye_adv_params_from_config(&tr->ap, cfg));
    TRY(maye_kl_estimator_parse(cfg->update.kl_reward_estimator, &tr->kl_reward_est, "update.kl_reward_estimator"));
    TRY(maye_run_image_config(cfg, &tr->img));
    maye_adamw_hparams hp;
    TRY(maye_adamw_hparams_from_config(&hp, cfg));
    TRY(maye_model_load(&tr->model, model_dir));
    TRY(maye_device_open(&tr->dev, cfg, &tr->model, true));
    maye_grads_init(&tr->grads, &tr->model, tr->groups);
    tr->ntab = maye_grads_optim_table(&tr->grads, &tr->model, &tr->tab);
    if (tr->dev) maye_grads_free(&tr->grads); // the device keeps its own gradients
    TRY(maye_adamw_init(&tr->opt, &hp, tr->ntab, tr->tab));
    return 0;
}

void maye_trainer_free(maye_trainer *tr) {
    if (tr->T_cap) maye_llm_train_free(&tr->lt);
    if (tr->P_cap) maye_vision_train_free(&tr->vt);
    maye_device_close(tr->dev);
    maye_adamw_free(&tr->opt);
    if (tr->tab) maye_optim_table_free(tr->tab, tr->ntab);
    maye_grads_free(&tr->grads);
    maye_model_free(&tr->model);
    memset(tr, 0, sizeof *tr);
}

void maye_step_metrics_free(maye_step_metrics *m) {
    free(m->example);
    memset(m, 0, sizeof *m);
}

static void metric(maye_step_metrics *m, const char *name, double v) {
    if (m->n >= MAYE_STEP_MAX_VALUES) maye_die("too many step metrics");
    snprintf(m->names[m->n], sizeof m->names[0], "%s", name);
    m->values[m->n++] = v;
}

// ----------------------------------------------------------------------------
// sequences and micro-batches

typedef struct {
    int32_t *ids;            // (T) prompt then response
    int T, n_prompt;
    const Maye__Query *q;
    int feat;                // index of the query's image features in the step's cache (-1: none)
    float temperature;
} train_seq;

typedef struct {
    int n;
    float **feats;           // (n) (NI, C) image features per distinct query (vision frozen)
    int64_t *nfeat;
    maye_query_pixels *pix;  // (n)
} feature_cache;

static void feature_cache_free(feature_cache *fc) {
    for (int i = 0; i < fc->n; i++) free(fc->feats[i]), maye_query_pixels_free(&fc->pix[i]);
    free(fc->feats), free(fc->nfeat), free(fc->pix);
    memset(fc, 0, sizeof *fc);
}

// Patches (and, when the vision is frozen, features) of every distinct query of the step. seq[i].feat is
// set to the cache slot of seq i's query (queries are identified by their position in the step).
static int feature_cache_build(maye_trainer *tr, train_seq *seq, int n, feature_cache *fc) {
    memset(fc, 0, sizeof *fc);
    fc->feats = xcalloc((size_t)n, sizeof(float *));
    fc->nfeat = xcalloc((size_t)n, sizeof(int64_t));
    fc->pix = xcalloc((size_t)n, sizeof(maye_query_pixels));
    for (int i = 0; i < n; i++) {
        int slot = -1;
        for (int j = 0; j < i && slot < 0; j++)
            if (seq[j].q == seq[i].q || (seq[j].q->pos && seq[i].q->pos && seq[j].q->pos->step_offset ==
                                         seq[i].q->pos->step_offset && !strcmp(seq[j].q->pos->sample_id,
                                                                                 seq[i].q->pos->sample_id)))
                slot = seq[j].feat;
        if (slot >= 0) {
            seq[i].feat = slot;
            continue;
        }
        slot = fc->n++;
        seq[i].feat = slot;
        TRY(maye_query_pixels_build(seq[i].q, &tr->img, &fc->pix[slot]));
        maye_query_pixels *p = &fc->pix[slot];
        if (!p->n_images) continue;
        TRY(maye_vision_check(&tr->model.cfg, p->n_patches, p->grid_thw, p->n_images, &fc->nfeat[slot]));
        if (tr->train_vision) continue; // recomputed with activations in each micro-batch
        fc->feats[slot] = xmalloc(sizeof(float) * (size_t)(fc->nfeat[slot] * tr->model.cfg.hidden));
        if (tr->dev)
            TRY(maye_device_vision(tr->dev, p->pixels, p->n_patches, p->grid_thw, p->n_images, fc->feats[slot]));
        else TRY(maye_vision_forward(&tr->model, p->pixels, p->n_patches, p->grid_thw, p->n_images, fc->feats[slot]));
    }
    return 0;
}

typedef struct {
    int K, T, R;              // sequences, packed tokens, longest response
    int *cu;                  // (K+1)
    int *n_prompt;            // (K)
    int64_t *ids, *pos, *targets; // (T), (3, T), (T)
    float *embeds;            // (NI, C)
    int64_t NI;
    float *pixels;            // (P, PD) when the vision trains
    int64_t P;
    int64_t *grid;            // (n_images, 3)
    int n_images;
    float *logprobs, *entropy, *dlogprobs; // (T)
    float *dembeds;           // (NI, C)
} micro_batch;

static void micro_free(micro_batch *mb) {
    free(mb->cu), free(mb->n_prompt), free(mb->ids), free(mb->pos), free(mb->targets), free(mb->embeds), free(mb->pixels);
    free(mb->grid), free(mb->logprobs), free(mb->entropy), free(mb->dlogprobs), free(mb->dembeds);
    memset(mb, 0, sizeof *mb);
}

// Packs sequences seq[idx[0..K)] and runs the forward (vision when it trains, then the LLM) and the
// log-probs of their response tokens.
static int micro_forward(maye_trainer *tr, const train_seq *seq, const int *idx, int K, feature_cache *fc,
                         micro_batch *mb) {
    const maye_model_config *c = &tr->model.cfg;
    memset(mb, 0, sizeof *mb);
    mb->K = K;
    mb->cu = xmalloc(sizeof(int) * (size_t)(K + 1));
    mb->n_prompt = xmalloc(sizeof(int) * (size_t)K);
    int T = 0;
    for (int k = 0; k < K; k++) {
        const train_seq *s = &seq[idx[k]];
        mb->cu[k] = T;
        T += s->T;
        if (s->T - s->n_prompt > mb->R) mb->R = s->T - s->n_prompt;
        const maye_query_pixels *p = &fc->pix[s->feat];
        mb->NI += fc->nfeat[s->feat];
        mb->P += p->n_patches;
        mb->n_images += p->n_images;
    }
    mb->cu[K] = mb->T = T;
    mb->ids = xmalloc(sizeof(int64_t) * (size_t)T);
    mb->pos = xmalloc(sizeof(int64_t) * 3 * (size_t)T);
    mb->targets = xmalloc(sizeof(int64_t) * (size_t)T);
    mb->logprobs = xcalloc((size_t)T, sizeof(float));
    mb->entropy = xcalloc((size_t)T, sizeof(float));
    mb->dlogprobs = xcalloc((size_t)T, sizeof(float));
    mb->embeds = xmalloc(sizeof(float) * (size_t)((mb->NI ? mb->NI : 1) * c->hidden));
    mb->dembeds = tr->train_vision ? xmalloc(sizeof(float) * (size_t)((mb->NI ? mb->NI : 1) * c->hidden)) : NULL;
    mb->grid = xmalloc(sizeof(int64_t) * 3 * (size_t)(mb->n_images ? mb->n_images : 1));
    int64_t pd = 0;
    for (int k = 0; k < K; k++) pd = fc->pix[seq[idx[k]].feat].patch_dim ? fc->pix[seq[idx[k]].feat].patch_dim : pd;
    if (tr->train_vision && mb->P) mb->pixels = xmalloc(sizeof(float) * (size_t)(mb->P * pd));
    int64_t erow = 0, prow = 0, *pos1 = xmalloc(sizeof(int64_t) * 3 * (size_t)T);
    int img = 0;
    for (int k = 0; k < K; k++) {
        const train_seq *s = &seq[idx[k]];
        const maye_query_pixels *p = &fc->pix[s->feat];
        int off = mb->cu[k];
        for (int t = 0; t < s->T; t++) {
            mb->ids[off + t] = s->ids[t];
            mb->targets[off + t] = t + 1 < s->T && t + 1 >= s->n_prompt ? s->ids[t + 1] : -1;
        }
        mb->n_prompt[k] = s->n_prompt;
        TRY(maye_mrope_positions_response(c, mb->ids + off, s->T, s->n_prompt, p->grid_thw, p->n_images, pos1, s->T));
        for (int a = 0; a < 3; a++) memcpy(mb->pos + (size_t)a * T + off, pos1 + (size_t)a * s->T, sizeof(int64_t) * (size_t)s->T);
        if (p->n_images) {
            memcpy(mb->grid + 3 * img, p->grid_thw, sizeof(int64_t) * 3 * (size_t)p->n_images);
            img += p->n_images;
            if (tr->train_vision) {
                memcpy(mb->pixels + prow * pd, p->pixels, sizeof(float) * (size_t)(p->n_patches * pd));
                prow += p->n_patches;
            } else {
                memcpy(mb->embeds + erow * c->hidden, fc->feats[s->feat], sizeof(float) * (size_t)(fc->nfeat[s->feat] * c->hidden));
            }
            erow += fc->nfeat[s->feat];
        }
    }
    free(pos1);
    if (tr->train_vision && mb->P) {
        if (tr->P_cap < mb->P) {
            if (tr->P_cap) maye_vision_train_free(&tr->vt);
            maye_vision_train_init(&tr->vt, c, mb->P, tr->cfg->update.recompute || !tr->cfg->update.train_vit);
            tr->P_cap = mb->P;
        }
        TRY(maye_vision_train_forward(&tr->model, &tr->vt, mb->pixels, mb->P, mb->grid, mb->n_images, mb->embeds));
    }
    maye_llm_batch b = {.B = K, .T = T, .cu_seqlens = mb->cu, .ids = mb->ids, .pos = mb->pos,
                        .image_embeds = mb->NI ? mb->embeds : NULL, .n_image_embeds = mb->NI, .n_prompt = mb->n_prompt};
    float temperature = seq[idx[0]].temperature;
    if (tr->dev) return maye_device_train_forward(tr->dev, &b, mb->targets, temperature, mb->logprobs, mb->entropy);
    if (tr->T_cap < T) {
        if (tr->T_cap) maye_llm_train_free(&tr->lt);
        maye_llm_train_init(&tr->lt, c, T, tr->cfg->update.recompute);
        tr->T_cap = T;
    }
    TRY(maye_llm_forward(&tr->model, &b, &tr->lt.acts));
    return maye_llm_logprobs(&tr->model, &tr->lt.acts, mb->targets, temperature, mb->logprobs, mb->entropy);
}

// Response token r of micro-batch sequence k is packed row cu[k] + n_prompt - 1 + r.
static int resp_row(const micro_batch *mb, const train_seq *s, int k, int r) { return mb->cu[k] + s->n_prompt - 1 + r; }

static int micro_backward(maye_trainer *tr, const train_seq *seq, const int *idx, micro_batch *mb) {
    maye_llm_batch b = {.B = mb->K, .T = mb->T, .cu_seqlens = mb->cu, .ids = mb->ids, .pos = mb->pos,
                        .image_embeds = mb->NI ? mb->embeds : NULL, .n_image_embeds = mb->NI, .n_prompt = mb->n_prompt};
    float temperature = seq[idx[0]].temperature;
    if (tr->dev)
        return maye_device_train_backward(tr->dev, &b, mb->targets, temperature, mb->logprobs, mb->dlogprobs);
    TRY(maye_llm_backward(&tr->model, &tr->lt, &b, mb->targets, temperature, mb->logprobs, mb->dlogprobs,
                          &tr->grads, tr->train_vision && mb->NI ? mb->dembeds : NULL));
    if (tr->train_vision && mb->P) TRY(maye_vision_backward(&tr->model, &tr->vt, mb->pixels, mb->dembeds, &tr->grads));
    return 0;
}

// The gradients back to zero (a failed step leaves no half-accumulated gradient behind).
static void zero_grads(maye_trainer *tr) {
    if (!tr->dev) maye_grads_zero(&tr->grads);
    else if (tr->dev_T_cap) maye_device_train_zero(tr->dev);
}

// One optimizer step: clip, AdamW at the scheduled rate, zero the gradients; *norm receives the norm before
// clipping. A non-finite gradient is refused before it reaches the weights.
static int optimizer_step(maye_trainer *tr, double *norm, double *lr) {
    if (tr->dev) TRY(maye_device_train_clip(tr->dev, tr->cfg->update.clip_grad_norm, norm));
    else *norm = maye_grad_norm(tr->ntab, tr->tab, tr->grads.memory);
    if (!isfinite(*norm)) {
        zero_grads(tr);
        return maye_fail("the gradient norm is %g (a NaN or Inf in the loss or the activations); the optimizer "
                         "step is refused", *norm);
    }
    *lr = maye_lr_at(&tr->sched, tr->opt.step);
    if (tr->dev) {
        TRY(maye_device_train_adamw(tr->dev, &tr->opt.hp, *lr));
        tr->opt.step++;
        return maye_device_train_zero(tr->dev);
    }
    maye_grad_clip(tr->ntab, tr->tab, tr->grads.memory, tr->cfg->update.clip_grad_norm);
    maye_adamw_step(&tr->opt, tr->model.params, tr->grads.memory, *lr);
    maye_grads_zero(&tr->grads);
    return 0;
}

// tr->opt's AdamW moments as weight-shaped tensors: the fields of the trained tensors point into opt.m / opt.v
// (a tensor's copies are consecutive in the optimizer table, so its stacked layers are too).
static void moment_views(const maye_trainer *tr, maye_weights *m, maye_weights *v) {
    memset(m, 0, sizeof *m);
    memset(v, 0, sizeof *v);
    int k = 0;
    for (int i = 0; i < tr->model.n_specs; i++) {
        const maye_param *p = &tr->model.specs[i];
        if (tr->opt.state_offset[k] >= 0) {
            *(float **)((char *)m + p->field) = tr->opt.m + tr->opt.state_offset[k];
            *(float **)((char *)v + p->field) = tr->opt.v + tr->opt.state_offset[k];
        }
        k += p->count;
    }
}

int maye_trainer_fetch_optimizer(maye_trainer *tr) {
    if (!tr->dev || !tr->dev_T_cap) return 0; // no device state yet: tr->opt is current
    maye_weights m, v;
    moment_views(tr, &m, &v);
    return maye_device_opt_get(tr->dev, &m, &v);
}

// Device backend: training capacity for the step's largest micro-batch (its K longest sequences), grown by at
// least a quarter when it grows; the AdamW moments cross through tr->opt, since growing starts the device's
// training state afresh.
static int device_reserve(maye_trainer *tr, const train_seq *seq, int n, int K) {
    if (K > n) K = n;
    int *len = xmalloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) len[i] = seq[i].T;
    int64_t T = 0;
    for (int k = 0; k < K; k++) { // selection of the K longest
        int best = k;
        for (int i = k + 1; i < n; i++) best = len[i] > len[best] ? i : best;
        int x = len[k];
        len[k] = len[best], len[best] = x;
        T += len[k];
    }
    free(len);
    if (T <= tr->dev_T_cap && K <= tr->dev_B_cap) return 0;
    if (T < (int64_t)tr->dev_T_cap + tr->dev_T_cap / 4) T = (int64_t)tr->dev_T_cap + tr->dev_T_cap / 4;
    T = (T + 255) / 256 * 256;
    CHECK_OR_FAIL(T < INT32_MAX, "a micro-batch of %lld tokens is too large", (long long)T);
    int B = K > tr->dev_B_cap ? K : tr->dev_B_cap;
    TRY(maye_trainer_fetch_optimizer(tr));
    tr->dev_T_cap = tr->dev_B_cap = 0;
    TRY(maye_device_train_init(tr->dev, (int)T, B, tr->cfg->update.recompute));
    tr->dev_T_cap = (int)T, tr->dev_B_cap = B;
    maye_weights m, v;
    moment_views(tr, &m, &v);
    return maye_device_opt_set(tr->dev, &m, &v, tr->opt.step);
}

static int setup_schedule(maye_trainer *tr, int n_seqs, int64_t total_steps) {
    if (tr->have_sched) return 0;
    int64_t pb = tr->cfg->update.ppo_batch_size > 0 ? tr->cfg->update.ppo_batch_size : 1;
    int64_t per_step = (n_seqs + pb - 1) / pb * (tr->cfg->update.ppo_epochs > 0 ? tr->cfg->update.ppo_epochs : 1);
    TRY(maye_lr_schedule_from_config(&tr->sched, tr->cfg, per_step * (total_steps > 0 ? total_steps : 1)));
    tr->have_sched = 1;
    return 0;
}

// ----------------------------------------------------------------------------
// RL step

static int check_finite(const float *x, size_t n, const char *what, const Maye__Trajectory *t) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return maye_fail("sample '%s' response %d: %s[%zu] is %g; the step is refused and the weights stay "
                             "those of version %s", t->query->pos->sample_id, t->sample_index, what, i, (double)x[i],
                             "before it");
    return 0;
}

static int check_trajectory(const Maye__Trajectory *t, int vocab) {
    CHECK_OR_FAIL(t->query && t->query->pos, "a trajectory has no query");
    size_t R = t->n_response_ids;
    const char *sid = t->query->pos->sample_id;
    CHECK_OR_FAIL(t->n_policy_logprobs == R && t->n_ref_logprobs == R && t->n_response_mask == R,
                  "sample '%s' response %d: %zu response ids but %zu policy / %zu reference log-probs and %zu mask "
                  "values (was maye-traj run with --no-logprobs?)", sid, t->sample_index, R, t->n_policy_logprobs,
                  t->n_ref_logprobs, t->n_response_mask);
    for (size_t i = 0; i < R; i++)
        CHECK_OR_FAIL(t->response_ids[i] >= 0 && t->response_ids[i] < vocab,
                      "sample '%s' response %d: token %d is outside the model's vocabulary of %d (a trajectory "
                      "of another model?)", sid, t->sample_index, t->response_ids[i], vocab);
    for (size_t i = 0; i < t->query->n_prompt_ids; i++)
        CHECK_OR_FAIL(t->query->prompt_ids[i] >= 0 && t->query->prompt_ids[i] < vocab,
                      "sample '%s': prompt token %d is outside the model's vocabulary of %d", sid,
                      t->query->prompt_ids[i], vocab);
    TRY(check_finite(t->policy_logprobs, R, "policy_logprobs", t));
    TRY(check_finite(t->ref_logprobs, R, "ref_logprobs", t));
    TRY(check_finite(t->response_mask, R, "response_mask", t));
    TRY(check_finite(&t->score, 1, "score", t));
    CHECK_OR_FAIL(t->temperature > 0 && isfinite(t->temperature), "sample '%s' response %d: temperature %g", sid,
                  t->sample_index, (double)t->temperature);
    return 0;
}

// The share of the minibatch's reduction that micro-batch sequences `sub` carry (see update.h).
static double micro_weight(const maye_ppo_params *pp, const float *mask, int R, const int *sub, int K,
                           const int *mini, int M) {
    double a = 0, b = 0;
    for (int pass = 0; pass < 2; pass++) {
        const int *set = pass ? mini : sub;
        int n = pass ? M : K;
        double acc = 0;
        for (int i = 0; i < n; i++) {
            double toks = 0;
            for (int r = 0; r < R; r++) toks += mask[(size_t)set[i] * R + r];
            acc += pp->reduction == MAYE_RED_TOKEN_MEAN ? toks : pp->reduction == MAYE_RED_SEQ_MEAN ? toks > 0 : 1;
        }
        if (pass) b = acc;
        else a = acc;
    }
    return b > 0 ? a / b : 0;
}

int maye_trainer_rl_step(maye_trainer *tr, Maye__Trajectory *const *t, int n, int64_t total_steps,
                         maye_step_metrics *out) {
    memset(out, 0, sizeof *out);
    CHECK_OR_FAIL(n > 0, "an empty step: no trajectories");
    for (int i = 0; i < n; i++) TRY(check_trajectory(t[i], tr->model.cfg.vocab));
    const maye_config *cfg = tr->cfg;
    int R = 0;
    int64_t resp_tokens = 0;
    for (int i = 0; i < n; i++) {
        if ((int)t[i]->n_response_ids > R) R = (int)t[i]->n_response_ids;
        resp_tokens += (int64_t)t[i]->n_response_ids;
    }
    CHECK_OR_FAIL(resp_tokens > 0, "an empty step: step %lld has %d trajectories and no response tokens",
                  (long long)t[0]->query->pos->step, n);
    TRY(setup_schedule(tr, n, total_steps));

    // [B, R] arrays of the step
    size_t BR = (size_t)n * R;
    float *old = xcalloc(BR, sizeof(float)), *ref = xcalloc(BR, sizeof(float)), *mask = xcalloc(BR, sizeof(float));
    float *kl = xcalloc(BR, sizeof(float)), *rew = xcalloc(BR, sizeof(float)), *ret = xcalloc(BR, sizeof(float));
    float *adv = xcalloc(BR, sizeof(float)), *scores = xcalloc((size_t)n, sizeof(float));
    int64_t *group = xcalloc((size_t)n, sizeof(int64_t));
    train_seq *seq = xcalloc((size_t)n, sizeof(train_seq));
    for (int i = 0; i < n; i++) {
        const Maye__Trajectory *x = t[i];
        for (size_t r = 0; r < x->n_response_ids; r++) {
            old[(size_t)i * R + r] = x->policy_logprobs[r];
            ref[(size_t)i * R + r] = x->ref_logprobs[r];
            mask[(size_t)i * R + r] = x->response_mask[r];
        }
        scores[i] = x->score;
        group[i] = x->query->pos->step_offset;
        int np = (int)x->query->n_prompt_ids, nr = (int)x->n_response_ids;
        seq[i] = (train_seq){.ids = xmalloc(sizeof(int32_t) * (size_t)(np + nr)), .T = np + nr, .n_prompt = np,
                             .q = x->query, .feat = -1, .temperature = x->temperature};
        memcpy(seq[i].ids, x->query->prompt_ids, sizeof(int32_t) * (size_t)np);
        memcpy(seq[i].ids + np, x->response_ids, sizeof(int32_t) * (size_t)nr);
    }
    maye_rl_token_rewards(n, R, old, ref, mask, scores, cfg->update.kl_reward_coeff, tr->kl_reward_est, kl, rew);
    int rc = maye_rl_advantages(&tr->ap, n, R, rew, mask, group, ret, adv);
    feature_cache fc;
    if (rc == 0) rc = feature_cache_build(tr, seq, n, &fc);

    // PPO epochs x minibatches x micro-batches
    int pb = (int)(cfg->update.ppo_batch_size > 0 ? cfg->update.ppo_batch_size : 1);
    int mbs = (int)(cfg->update.ppo_backward_batch_size > 0 ? cfg->update.ppo_backward_batch_size : pb);
    if (rc == 0 && tr->dev) rc = device_reserve(tr, seq, n, mbs);
    int64_t *perm = xmalloc(sizeof(int64_t) * (size_t)n);
    int *mini = xmalloc(sizeof(int) * (size_t)n);
    double sum_loss = 0, sum_pl = 0, sum_kll = 0, sum_clip = 0, sum_ratio = 0, sum_akl = 0, sum_norm = 0, lr = 0;
    double ent_sum = 0, ent_n = 0;
    int64_t opt_steps = 0;
    maye_rng rng;
    int64_t gstep = t[0]->query->pos->step;
    for (int64_t e = 0; e < (cfg->update.ppo_epochs > 0 ? cfg->update.ppo_epochs : 1) && rc == 0; e++) {
        for (int i = 0; i < n; i++) perm[i] = i;
        maye_rng_init(&rng, (uint64_t)cfg->seed, maye_stream_id(0x7570646174655fULL /* "update_" */, (uint64_t)gstep, (uint64_t)e));
        maye_rng_shuffle_i64(&rng, perm, n);
        for (int m0 = 0; m0 < n && rc == 0; m0 += pb) {
            int M = n - m0 < pb ? n - m0 : pb;
            for (int i = 0; i < M; i++) mini[i] = (int)perm[m0 + i];
            maye_ppo_stats acc = {0};
            for (int k0 = 0; k0 < M && rc == 0; k0 += mbs) {
                int K = M - k0 < mbs ? M - k0 : mbs;
                const int *sub = mini + k0;
                if (maye_stop_requested()) {
                    rc = maye_fail("interrupted by signal %d in the middle of a step", maye_stop_requested());
                    break;
                }
                micro_batch mb;
                rc = micro_forward(tr, seq, sub, K, &fc, &mb);
                // the micro-batch's [K, R] slices
                float *lp = xcalloc((size_t)K * R, sizeof(float)), *o = xcalloc((size_t)K * R, sizeof(float));
                float *rf = xcalloc((size_t)K * R, sizeof(float)), *a = xcalloc((size_t)K * R, sizeof(float));
                float *mk = xcalloc((size_t)K * R, sizeof(float)), *dl = xcalloc((size_t)K * R, sizeof(float));
                for (int k = 0; k < K && rc == 0; k++) {
                    int i = sub[k];
                    for (int r = 0; r < seq[i].T - seq[i].n_prompt; r++) {
                        int row = resp_row(&mb, &seq[i], k, r);
                        lp[(size_t)k * R + r] = mb.logprobs[row];
                        ent_sum += mb.entropy[row] * mask[(size_t)i * R + r];
                        ent_n += mask[(size_t)i * R + r];
                        o[(size_t)k * R + r] = old[(size_t)i * R + r];
                        rf[(size_t)k * R + r] = ref[(size_t)i * R + r];
                        a[(size_t)k * R + r] = adv[(size_t)i * R + r];
                        mk[(size_t)k * R + r] = mask[(size_t)i * R + r];
                    }
                }
                maye_ppo_stats st;
                if (rc == 0) rc = maye_ppo_loss(&tr->pp, K, R, lp, o, rf, a, mk, dl, &st);
                if (rc == 0) {
                    double w = micro_weight(&tr->pp, mask, R, sub, K, mini, M);
                    for (int k = 0; k < K; k++)
                        for (int r = 0; r < seq[sub[k]].T - seq[sub[k]].n_prompt; r++)
                            mb.dlogprobs[resp_row(&mb, &seq[sub[k]], k, r)] = (float)(w * dl[(size_t)k * R + r]);
                    rc = micro_backward(tr, seq, sub, &mb);
                    acc.loss += w * st.loss, acc.policy_loss += w * st.policy_loss, acc.kl_loss += w * st.kl_loss;
                    acc.clipfrac += w * st.clipfrac, acc.ratio_mean += w * st.ratio_mean, acc.approx_kl += w * st.approx_kl;
                }
                free(lp), free(o), free(rf), free(a), free(mk), free(dl);
                micro_free(&mb);
            }
            double norm = 0;
            if (rc == 0) rc = optimizer_step(tr, &norm, &lr);
            if (rc < 0) break;
            sum_norm += norm;
            opt_steps++;
            sum_loss += acc.loss, sum_pl += acc.policy_loss, sum_kll += acc.kl_loss, sum_clip += acc.clipfrac;
            sum_ratio += acc.ratio_mean, sum_akl += acc.approx_kl;
        }
    }
    if (rc == 0 && tr->dev) rc = maye_device_download(tr->dev, &tr->model, tr->groups);
    if (rc == 0) {
        tr->version++;
        tr->steps_done++;
        // the metrics of the step
        double correct = 0, score = 0, len = 0, klm = 0, kln = 0;
        maye_reflection_stats rs;
        maye_reflection_stats_init(&rs);
        for (int i = 0; i < n; i++) {
            correct += t[i]->correct, score += t[i]->score, len += (double)t[i]->n_response_ids;
            maye_reflection refl = {0};
            refl.reflection = t[i]->reflection;
            for (size_t w = 0; w < t[i]->n_reflection_counts && w < MAYE_REFLECTION_NWORDS; w++)
                refl.counts[w] = t[i]->reflection_counts[w];
            maye_reflection_stats_add(&rs, &refl, t[i]->correct);
            if (!out->example && t[i]->correct && t[i]->reflection) out->example = xstrdup(t[i]->response_text);
        }
        for (size_t j = 0; j < BR; j++) klm += kl[j] * mask[j], kln += mask[j];
        maye_reflection_stats_finish(&rs);
        double os = opt_steps ? (double)opt_steps : 1;
        metric(out, "reward", score / n);
        metric(out, "accuracy", correct / n);
        metric(out, "response_length", len / n);
        metric(out, "kl", kln > 0 ? klm / kln : 0);
        metric(out, "entropy", ent_n > 0 ? ent_sum / ent_n : 0);
        metric(out, "loss", sum_loss / os);
        metric(out, "policy_loss", sum_pl / os);
        metric(out, "kl_loss", sum_kll / os);
        metric(out, "clipfrac", sum_clip / os);
        metric(out, "ratio_mean", sum_ratio / os);
        metric(out, "approx_kl", sum_akl / os);
        metric(out, "grad_norm", sum_norm / os);
        metric(out, "lr", lr);
        metric(out, "gradient_steps", (double)opt_steps);
        int64_t seq_tokens = 0;
        for (int i = 0; i < n; i++) seq_tokens += seq[i].T;
        metric(out, "trajectories", n);
        metric(out, "response_tokens", (double)resp_tokens);
        metric(out, "sequence_tokens", (double)seq_tokens);
        metric(out, "seconds/rollout", t[0]->rollout_seconds);
        metric(out, "seconds/traj", t[0]->traj_seconds);
        metric(out, "reflection_ratio", rs.reflection_ratio);
        metric(out, "reflection_ratio_in_correct_answers", rs.reflection_ratio_in_correct_answers);
        metric(out, "reflection_ratio_in_incorrect_answers", rs.reflection_ratio_in_incorrect_answers);
        metric(out, "correct_ratio_in_reflection_texts", rs.correct_ratio_in_reflection_texts);
        metric(out, "correct_ratio_in_no_reflection_texts", rs.correct_ratio_in_no_reflection_texts);
        for (int w = 0; w < MAYE_REFLECTION_NWORDS; w++) {
            char name[48];
            snprintf(name, sizeof name, "reflection_words/%s", maye_reflection_words[w]);
            metric(out, name, (double)rs.word_totals[w]);
        }
        // the mean of each reward component
        for (size_t c = 0; c < t[0]->n_rewards; c++) {
            double s = 0;
            for (int i = 0; i < n; i++)
                for (size_t d = 0; d < t[i]->n_rewards; d++)
                    if (!strcmp(t[i]->rewards[d]->key, t[0]->rewards[c]->key)) s += t[i]->rewards[d]->value;
            char name[48];
            snprintf(name, sizeof name, "rewards/%s", t[0]->rewards[c]->key);
            metric(out, name, s / n);
        }
    } else {
        zero_grads(tr);
    }
    if (fc.feats) feature_cache_free(&fc);
    for (int i = 0; i < n; i++) free(seq[i].ids);
    free(seq), free(old), free(ref), free(mask), free(kl), free(rew), free(ret), free(adv), free(scores), free(group);
    free(perm), free(mini);
    return rc;
}

// ----------------------------------------------------------------------------
// SFT step

int maye_trainer_sft_step(maye_trainer *tr, const maye_tokenizer *tok, Maye__Query *const *q, int n,
                          int64_t total_steps, maye_step_metrics *out) {
    memset(out, 0, sizeof *out);
    CHECK_OR_FAIL(n > 0, "an empty step");
    maye_chat chat;
    TRY(maye_chat_init(&chat, tok));
    train_seq *seq = xcalloc((size_t)n, sizeof(train_seq));
    int rc = 0, R = 0;
    int64_t tokens = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        CHECK_OR_FAIL(q[i]->pos, "query without a position");
        CHECK_OR_FAIL(q[i]->solution && q[i]->solution[0], "sample '%s' has no solution to fine-tune on",
                      q[i]->pos->sample_id);
        maye_token_ids ids = {0};
        maye_token_ids_append(&ids, q[i]->prompt_ids, q[i]->n_prompt_ids);
        rc = maye_chat_append_response(&chat, q[i]->solution, strlen(q[i]->solution), &ids);
        seq[i] = (train_seq){.ids = ids.data, .T = (int)ids.len, .n_prompt = (int)q[i]->n_prompt_ids, .q = q[i],
                             .feat = -1, .temperature = 1.0f};
        if (seq[i].T - seq[i].n_prompt > R) R = seq[i].T - seq[i].n_prompt;
        tokens += seq[i].T - seq[i].n_prompt;
    }
    feature_cache fc = {0};
    if (rc == 0) rc = setup_schedule(tr, n, total_steps);
    if (rc == 0) rc = feature_cache_build(tr, seq, n, &fc);
    int pb = (int)(tr->cfg->update.ppo_batch_size > 0 ? tr->cfg->update.ppo_batch_size : 1);
    int mbs = (int)(tr->cfg->update.ppo_backward_batch_size > 0 ? tr->cfg->update.ppo_backward_batch_size : pb);
    if (rc == 0 && tr->dev) rc = device_reserve(tr, seq, n, mbs);
    int *idx = xmalloc(sizeof(int) * (size_t)n);
    double sum_loss = 0, sum_norm = 0, lr = 0;
    int64_t opt_steps = 0;
    for (int i = 0; i < n; i++) idx[i] = i;
    for (int m0 = 0; m0 < n && rc == 0; m0 += pb) {
        int M = n - m0 < pb ? n - m0 : pb;
        int64_t mtok = 0;
        for (int i = m0; i < m0 + M; i++) mtok += seq[i].T - seq[i].n_prompt;
        double loss = 0;
        for (int k0 = 0; k0 < M && rc == 0; k0 += mbs) {
            int K = M - k0 < mbs ? M - k0 : mbs;
            if (maye_stop_requested()) {
                rc = maye_fail("interrupted by signal %d in the middle of a step", maye_stop_requested());
                break;
            }
            micro_batch mb;
            rc = micro_forward(tr, seq, idx + m0 + k0, K, &fc, &mb);
            // cross-entropy averaged over the minibatch's response tokens: dL/dlogp = -1/N
            for (int k = 0; k < K && rc == 0; k++) {
                const train_seq *s = &seq[m0 + k0 + k];
                for (int r = 0; r < s->T - s->n_prompt; r++) {
                    int row = resp_row(&mb, s, k, r);
                    loss -= mb.logprobs[row] / (double)mtok;
                    mb.dlogprobs[row] = -1.0f / (float)mtok;
                }
            }
            if (rc == 0) rc = micro_backward(tr, seq, idx + m0 + k0, &mb);
            micro_free(&mb);
        }
        double norm = 0;
        if (rc == 0) rc = optimizer_step(tr, &norm, &lr);
        if (rc < 0) break;
        sum_norm += norm;
        sum_loss += loss;
        opt_steps++;
    }
    if (rc == 0 && tr->dev) rc = maye_device_download(tr->dev, &tr->model, tr->groups);
    if (rc == 0) {
        tr->version++;
        tr->steps_done++;
        double os = opt_steps ? (double)opt_steps : 1;
        metric(out, "loss", sum_loss / os);
        metric(out, "grad_norm", sum_norm / os);
        metric(out, "lr", lr);
        metric(out, "tokens", (double)tokens);
        metric(out, "gradient_steps", (double)opt_steps);
    } else {
        zero_grads(tr);
    }
    if (fc.feats) feature_cache_free(&fc);
    for (int i = 0; i < n; i++) free(seq[i].ids);
    free(seq), free(idx);
    return rc;
}
