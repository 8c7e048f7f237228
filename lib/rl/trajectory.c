// Rollouts -> Trajectories (see trajectory.h).
#include "rl/trajectory.h"

#include "backend/backend.h"
#include "core/error.h"
#include "data/inputs.h"

#include <stdlib.h>
#include <string.h>

int maye_traj_builder_init(maye_traj_builder *b, const maye_config *cfg, const maye_model *policy,
                           const maye_model *ref) {
    memset(b, 0, sizeof *b);
    TRY(maye_reward_spec_from_config(&b->rewards, cfg));
    TRY(maye_run_image_config(cfg, &b->img));
    b->policy = policy;
    b->ref = ref;
    b->forward_batch_size = cfg->traj.forward_batch_size > 0 ? (int)cfg->traj.forward_batch_size : 1;
    b->share_vision = !cfg->update.train_vit && !cfg->update.train_connector;
    maye_scorer_init(&b->scorer);
    return 0;
}

void maye_traj_builder_free(maye_traj_builder *b) { maye_scorer_free(&b->scorer); }

static float *fdup(const float *p, size_t n) {
    float *q = xmalloc(sizeof(float) * (n ? n : 1));
    if (n) memcpy(q, p, sizeof(float) * n);
    return q;
}

// Rewards, judge and reflection of one response into t (t->query set by the caller).
static void score_response(const maye_traj_builder *b, const Maye__Rollout *r, const Maye__Response *resp,
                           Maye__Trajectory *t) {
    maye_reward_parts parts;
    maye_judge_result judge;
    bool stopped = resp->finish == MAYE__FINISH_REASON__STOP;
    maye_reward_compute(&b->rewards, resp->text, r->query->answer, stopped, (int64_t)resp->n_ids, &parts, &judge);
    t->score = (float)parts.total;
    t->n_rewards = (size_t)parts.n;
    t->rewards = xmalloc(sizeof(Maye__Trajectory__RewardsEntry *) * (size_t)(parts.n ? parts.n : 1));
    for (int k = 0; k < parts.n; k++) {
        Maye__Trajectory__RewardsEntry *e = xmalloc(sizeof *e);
        maye__trajectory__rewards_entry__init(e);
        e->key = xstrdup(parts.names[k]);
        e->value = (float)parts.values[k];
        t->rewards[k] = e;
    }
    t->correct = judge.correct;
    t->extracted_answer = xstrdup(judge.extracted ? judge.extracted : "");
    maye_judge_result_free(&judge);
    maye_reflection refl;
    maye_reflection_count(resp->text, strlen(resp->text), &refl);
    t->reflection = refl.reflection;
    t->n_reflection_counts = MAYE_REFLECTION_NWORDS;
    t->reflection_counts = xmalloc(sizeof(int32_t) * MAYE_REFLECTION_NWORDS);
    for (int k = 0; k < MAYE_REFLECTION_NWORDS; k++) t->reflection_counts[k] = (int32_t)refl.counts[k];
}

// Image features of every query of the step under model m (on its device model dev, when not NULL): feats[q]
// (NI_q, C).
static int vision_features(const maye_model *m, maye_device_model *dev, int n, float **feats, int64_t *nfeat,
                           maye_query_pixels *pix) {
    for (int q = 0; q < n; q++) {
        if (!pix[q].n_images) continue;
        int64_t ntok;
        TRY(maye_vision_check(&m->cfg, pix[q].n_patches, pix[q].grid_thw, pix[q].n_images, &ntok));
        feats[q] = xmalloc(sizeof(float) * (size_t)(ntok * m->cfg.hidden));
        nfeat[q] = ntok;
        const maye_query_pixels *p = &pix[q];
        if (dev) TRY(maye_device_vision(dev, p->pixels, p->n_patches, p->grid_thw, p->n_images, feats[q]));
        else TRY(maye_vision_forward(m, p->pixels, p->n_patches, p->grid_thw, p->n_images, feats[q]));
    }
    return 0;
}

static int device_forward(void *dev, const maye_llm_batch *b, const int64_t *targets, float temperature,
                          float *logprobs, float *entropy) {
    return maye_device_logprobs(dev, b, targets, temperature, logprobs, entropy);
}

// Log-probs of every response under model m (on its device model dev, when not NULL) into lp[i] (one array per
// trajectory, allocated here).
static int model_logprobs(maye_traj_builder *b, const maye_model *m, maye_device_model *dev,
                          Maye__Rollout *const *rollouts, int n, maye_query_pixels *pix, float **feats, int64_t *nfeat,
                          Maye__Trajectory **trajs, int n_out, int32_t **seqs, float **lp) {
    maye_score_item *items = xcalloc((size_t)n_out, sizeof(maye_score_item));
    int k = 0;
    for (int q = 0; q < n; q++) {
        const Maye__Rollout *r = rollouts[q];
        for (size_t i = 0; i < r->n_responses; i++, k++) {
            items[k] = (maye_score_item){.ids = seqs[k], .T = (int)(r->query->n_prompt_ids + r->responses[i]->n_ids),
                                         .n_prompt = (int)r->query->n_prompt_ids, .image_embeds = feats[q],
                                         .n_image_embeds = nfeat[q], .grid_thw = pix[q].grid_thw,
                                         .n_images = pix[q].n_images};
            lp[k] = xmalloc(sizeof(float) * (r->responses[i]->n_ids ? r->responses[i]->n_ids : 1));
        }
    }
    float temperature = trajs[0]->temperature;
    for (int i = 1; i < n_out; i++)
        if (trajs[i]->temperature != temperature) {
            free(items);
            return maye_fail("rollouts of one step were sampled at different temperatures (%g and %g)",
                             temperature, trajs[i]->temperature);
        }
    int rc = dev ? maye_score_packed(&m->cfg, device_forward, dev, items, n_out, temperature, b->forward_batch_size,
                                     lp, NULL)
                 : maye_scorer_run(&b->scorer, m, items, n_out, temperature, b->forward_batch_size, lp, NULL);
    free(items);
    return rc;
}

int maye_traj_build_step(maye_traj_builder *b, Maye__Rollout *const *rollouts, int n, Maye__Trajectory ***out,
                         int *n_out) {
    int total = 0;
    for (int q = 0; q < n; q++) {
        CHECK_OR_FAIL(rollouts[q]->query && rollouts[q]->query->pos, "rollout %d has no query", q);
        total += (int)rollouts[q]->n_responses;
    }
    Maye__Trajectory **trajs = xcalloc((size_t)(total ? total : 1), sizeof(Maye__Trajectory *));
    int32_t **seqs = xcalloc((size_t)(total ? total : 1), sizeof(int32_t *));
    int k = 0;
    for (int q = 0; q < n; q++) {
        Maye__Rollout *r = rollouts[q];
        for (size_t i = 0; i < r->n_responses; i++, k++) {
            const Maye__Response *resp = r->responses[i];
            Maye__Trajectory *t = xmalloc(sizeof *t);
            maye__trajectory__init(t);
            t->query = r->query;
            t->sample_index = resp->sample_index;
            t->version = r->version;
            t->n_response_ids = resp->n_ids;
            t->response_ids = xmalloc(sizeof(int32_t) * (resp->n_ids ? resp->n_ids : 1));
            memcpy(t->response_ids, resp->ids, sizeof(int32_t) * resp->n_ids);
            t->response_text = xstrdup(resp->text);
            t->finish = resp->finish;
            t->n_rollout_logprobs = resp->n_logprobs;
            t->rollout_logprobs = fdup(resp->logprobs, resp->n_logprobs);
            t->n_response_mask = resp->n_ids;
            t->response_mask = xmalloc(sizeof(float) * (resp->n_ids ? resp->n_ids : 1));
            for (size_t j = 0; j < resp->n_ids; j++) t->response_mask[j] = 1.0f;
            t->response_length = (int32_t)resp->n_ids;
            t->temperature = r->temperature > 1e-5f ? r->temperature : 1.0f;
            t->step_offset = k;
            t->step_records = total;
            score_response(b, r, resp, t);
            size_t np = r->query->n_prompt_ids;
            seqs[k] = xmalloc(sizeof(int32_t) * (np + resp->n_ids));
            memcpy(seqs[k], r->query->prompt_ids, sizeof(int32_t) * np);
            memcpy(seqs[k] + np, resp->ids, sizeof(int32_t) * resp->n_ids);
            trajs[k] = t;
        }
    }
    int rc = 0;
    if (b->policy && total) {
        maye_query_pixels *pix = xcalloc((size_t)n, sizeof(maye_query_pixels));
        float **feats = xcalloc((size_t)n, sizeof(float *)), **ref_feats = xcalloc((size_t)n, sizeof(float *));
        int64_t *nfeat = xcalloc((size_t)n, sizeof(int64_t));
        float **lp = xcalloc((size_t)total, sizeof(float *)), **rlp = xcalloc((size_t)total, sizeof(float *));
        for (int q = 0; q < n && rc == 0; q++) rc = maye_query_pixels_build(rollouts[q]->query, &b->img, &pix[q]);
        if (rc == 0) rc = vision_features(b->policy, b->policy_dev, n, feats, nfeat, pix);
        if (rc == 0)
            rc = model_logprobs(b, b->policy, b->policy_dev, rollouts, n, pix, feats, nfeat, trajs, total, seqs, lp);
        if (rc == 0 && !b->share_vision) rc = vision_features(b->ref, b->ref_dev, n, ref_feats, nfeat, pix);
        if (rc == 0)
            rc = model_logprobs(b, b->ref, b->ref_dev, rollouts, n, pix, b->share_vision ? feats : ref_feats, nfeat,
                                trajs, total, seqs, rlp);
        for (int i = 0; i < total; i++) {
            if (rc == 0) {
                trajs[i]->policy_logprobs = lp[i], trajs[i]->n_policy_logprobs = trajs[i]->n_response_ids;
                trajs[i]->ref_logprobs = rlp[i], trajs[i]->n_ref_logprobs = trajs[i]->n_response_ids;
            } else {
                free(lp[i]), free(rlp[i]);
            }
        }
        for (int q = 0; q < n; q++) maye_query_pixels_free(&pix[q]), free(feats[q]), free(ref_feats[q]);
        free(pix), free(feats), free(ref_feats), free(nfeat), free(lp), free(rlp);
    }
    for (int i = 0; i < total; i++) free(seqs[i]);
    free(seqs);
    if (rc < 0) {
        maye_traj_free(trajs, total);
        return -1;
    }
    *out = trajs;
    *n_out = total;
    return 0;
}

void maye_traj_free(Maye__Trajectory **t, int n) {
    for (int i = 0; i < n; i++) {
        Maye__Trajectory *x = t[i];
        free(x->response_ids), free(x->response_text), free(x->rollout_logprobs), free(x->response_mask);
        free(x->policy_logprobs), free(x->ref_logprobs), free(x->extracted_answer), free(x->reflection_counts);
        for (size_t k = 0; k < x->n_rewards; k++) free(x->rewards[k]->key), free(x->rewards[k]);
        free(x->rewards);
        free(x);
    }
    free(t);
}
