// Golden test of the model's backward against PyTorch autograd: for every model folder under
// $MAYE_FIXTURES/golden whose expected.safetensors holds grad.<name> tensors, run the batch of the rl.*
// tensors (the first B samples <name>.input_ids in name order, B = rl.mask rows) packed into one forward,
// take the log-probs of each sample's last T = rl.mask columns tokens at manifest rl.temperature (they must
// match rl.policy_logprobs within 1e-5), compute the PPO-clip + KL loss with lib/rl from rl.old_logprobs,
// rl.ref_logprobs, rl.advantages, rl.mask and the manifest coefficients (it must match rl.loss), run the
// backward, and compare:
//   - the global gradient norm with rl.grad_norm_before_clip (1e-4 relative);
//   - every grad.<name> within 1e-4 of the tensor's max magnitude. The fixtures may store the gradients
//     after torch's clip_grad_norm_ to rl.clip_grad_norm (their norm says which); then ours are scaled by
//     the same clip coefficient first;
//   - the trained tensors with the fixture's: exactly the tensors with a grad.* train (the groups follow
//     from them), every other one gets no gradient.
// Then the same batch with activation recomputation must give bit-identical gradients, and the samples run
// as separate micro-batches must add up to the packed batch's gradients.
#include "core/util.h"
#include "io/safetensors.h"
#include "model/backward.h"
#include "rl/ppo.h"
#include "support/golden.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GRAD_TOL 1e-4
#define LOGP_TOL 1e-5

// ----------------------------------------------------------------------------
// fixture reading

typedef struct {
    double temperature, eps_low, eps_high, kl_loss_coeff, clip;
} rl_params;

static int read_manifest(const char *dir, const char *name, rl_params *p) {
    char *path = maye_path_join(dir, "manifest.json");
    maye_buf text = {0};
    int rc = -1;
    if (maye_read_file(path, &text) < 0) {
        fprintf(stderr, "FAIL: %s: %s\n", name, maye_errmsg());
        test_failures++;
    } else {
        cJSON *m = cJSON_Parse(text.data);
        const cJSON *rl = cJSON_GetObjectItemCaseSensitive(m, "rl");
        const cJSON *red = cJSON_GetObjectItemCaseSensitive(rl, "loss_reduction");
        if (!cJSON_IsObject(rl)) {
            fprintf(stderr, "FAIL: %s: manifest.json has no rl section\n", name);
            test_failures++;
        } else if (cJSON_IsString(red) && !strstr(red->valuestring, "masked mean over all response tokens")) {
            fprintf(stderr, "FAIL: %s: unknown rl.loss_reduction '%s'\n", name, red->valuestring);
            test_failures++;
        } else if (test_rl_number(rl, "temperature", &p->temperature, name) == 0 &&
                   test_rl_number(rl, "epsilon_low", &p->eps_low, name) == 0 &&
                   test_rl_number(rl, "epsilon_high", &p->eps_high, name) == 0 &&
                   test_rl_number(rl, "kl_loss_coeff", &p->kl_loss_coeff, name) == 0 &&
                   test_rl_number(rl, "clip_grad_norm", &p->clip, name) == 0) {
            rc = 0;
        }
        cJSON_Delete(m);
    }
    maye_buf_free(&text);
    free(path);
    return rc;
}

// ----------------------------------------------------------------------------
// the batch

typedef struct {
    int B, Tr, T;                 // samples, response tokens per sample, packed tokens
    int *cu;                      // (B+1)
    int64_t *ids, *pos, *grid;    // (T), (3, T), (n_img, 3)
    int n_img;
    int *img_cu;                  // (B+1) first image of each sample
    float *pixels;                // (P, PD) every sample's patches in order
    int64_t P, NI;
    float *old, *ref, *adv, *mask, *policy; // (B, Tr) rl.*
} batch;

static void batch_free(batch *b) {
    free(b->cu), free(b->img_cu), free(b->ids), free(b->pos), free(b->grid), free(b->pixels);
    free(b->old), free(b->ref), free(b->adv), free(b->mask), free(b->policy);
}

// Samples in name order; the first B form the batch. Returns 0 on success.
static int read_batch(const maye_model *m, const maye_safetensors *st, const char *name, batch *b) {
    const maye_model_config *c = &m->cfg;
    memset(b, 0, sizeof *b);
    const maye_st_tensor *mt = maye_st_find(st, "rl.mask");
    if (!mt || mt->ndim != 2) {
        fprintf(stderr, "FAIL: %s: rl.mask is missing or not [B, T]\n", name);
        test_failures++;
        return -1;
    }
    b->B = (int)mt->shape[0], b->Tr = (int)mt->shape[1];
    char **names;
    int n = test_golden_samples(st, &names);
    int rc = 0;
    if (n < b->B) {
        fprintf(stderr, "FAIL: %s: rl.mask has %d rows but there are %d samples\n", name, b->B, n);
        test_failures++;
        rc = -1;
    }
    b->cu = xcalloc((size_t)b->B + 1, sizeof(int));
    b->img_cu = xcalloc((size_t)b->B + 1, sizeof(int));
    int64_t **sids = xcalloc((size_t)(b->B ? b->B : 1), sizeof(int64_t *)), *slen = xcalloc((size_t)b->B + 1, 8);
    for (int i = 0; rc == 0 && i < b->B; i++) {
        char key[160];
        snprintf(key, sizeof key, "%s.input_ids", names[i]);
        sids[i] = test_st_i64(st, key, &slen[i]);
        b->cu[i + 1] = b->cu[i] + (int)slen[i];
        int64_t ng = 0, np = 0;
        snprintf(key, sizeof key, "%s.image_grid_thw", names[i]);
        int64_t *grid = test_st_i64(st, key, &ng);
        snprintf(key, sizeof key, "%s.pixel_values", names[i]);
        float *pix = test_st_f32(st, key, &np);
        if (grid) {
            b->grid = xrealloc(b->grid, sizeof(int64_t) * (size_t)(3 * b->n_img + ng));
            memcpy(b->grid + 3 * b->n_img, grid, sizeof(int64_t) * (size_t)ng);
            b->n_img += (int)(ng / 3);
        }
        b->img_cu[i + 1] = b->n_img;
        if (pix) {
            b->pixels = xrealloc(b->pixels, sizeof(float) * (size_t)(b->P * c->vision.patch_dim + np));
            memcpy(b->pixels + b->P * c->vision.patch_dim, pix, sizeof(float) * (size_t)np);
            b->P += np / c->vision.patch_dim;
        }
        free(grid), free(pix);
        if (slen[i] <= b->Tr) {
            fprintf(stderr, "FAIL: %s: sample %s has %lld tokens, not more than the %d response tokens\n", name,
                    names[i], (long long)slen[i], b->Tr);
            test_failures++;
            rc = -1;
        }
    }
    if (rc == 0) {
        b->T = b->cu[b->B];
        b->ids = xmalloc(sizeof(int64_t) * (size_t)b->T), b->pos = xmalloc(sizeof(int64_t) * 3 * (size_t)b->T);
        for (int i = 0; i < b->B; i++) {
            memcpy(b->ids + b->cu[i], sids[i], sizeof(int64_t) * (size_t)slen[i]);
            if (maye_mrope_positions(c, sids[i], (int)slen[i], b->grid + 3 * b->img_cu[i],
                                     b->img_cu[i + 1] - b->img_cu[i], b->pos + b->cu[i], b->T, NULL) < 0) {
                fprintf(stderr, "FAIL: %s: %s\n", name, maye_errmsg());
                test_failures++;
                rc = -1;
            }
        }
        if (rc == 0 && maye_vision_check(c, b->P, b->grid, b->n_img, &b->NI) < 0) {
            fprintf(stderr, "FAIL: %s: %s\n", name, maye_errmsg());
            test_failures++;
            rc = -1;
        }
    }
    b->old = test_st_f32(st, "rl.old_logprobs", NULL), b->ref = test_st_f32(st, "rl.ref_logprobs", NULL);
    b->adv = test_st_f32(st, "rl.advantages", NULL), b->mask = test_st_f32(st, "rl.mask", NULL);
    b->policy = test_st_f32(st, "rl.policy_logprobs", NULL);
    if (rc == 0 && !(b->old && b->ref && b->adv && b->mask && b->policy)) {
        fprintf(stderr, "FAIL: %s: one of rl.old_logprobs, ref_logprobs, advantages, policy_logprobs is missing\n",
                name);
        test_failures++;
        rc = -1;
    }
    for (int i = 0; i < b->B; i++) free(sids[i]);
    for (int i = 0; i < n; i++) free(names[i]);
    free(names), free(sids), free(slen);
    return rc;
}

// Row of the packed batch whose next-token log-prob is response token j of sample i.
static int response_row(const batch *b, int i, int j) { return b->cu[i + 1] - b->Tr - 1 + j; }

// ----------------------------------------------------------------------------
// one backward pass over samples [s0, s1) of the batch

typedef struct {
    const maye_model *m;
    const char *name;
    const batch *b;
    rl_params rp;
    unsigned groups;
} run_ctx;

// Forward, log-probs, PPO loss over the whole batch (dlogp from the full batch), backward of the rows of
// samples [s0, s1) only, added to g. Checks the log-probs and the loss when the whole batch runs.
static int run_backward(const run_ctx *x, int s0, int s1, bool recompute, maye_grads *g) {
    const maye_model *m = x->m;
    const maye_model_config *c = &m->cfg;
    const batch *b = x->b;
    int C = c->hidden, Tr = b->Tr, B = b->B;
    bool vision = g->groups & ((1u << MAYE_PARAM_VISION) | (1u << MAYE_PARAM_MERGER));

    // the sub-batch: samples [s0, s1), their images and patches
    int nb = s1 - s0, T = b->cu[s1] - b->cu[s0];
    int *cu = xmalloc(sizeof(int) * (size_t)(nb + 1));
    for (int i = 0; i <= nb; i++) cu[i] = b->cu[s0 + i] - b->cu[s0];
    int64_t *pos = xmalloc(sizeof(int64_t) * 3 * (size_t)T);
    for (int a = 0; a < 3; a++) memcpy(pos + a * T, b->pos + a * b->T + b->cu[s0], sizeof(int64_t) * (size_t)T);
    int img0 = b->img_cu[s0], img1 = b->img_cu[s1];
    int64_t p0 = 0, P = 0, NI = 0;
    for (int i = 0; i < img1; i++) {
        int64_t n = b->grid[3 * i] * b->grid[3 * i + 1] * b->grid[3 * i + 2];
        if (i < img0) p0 += n;
        else P += n, NI += n / (c->vision.merge * c->vision.merge);
    }
    const float *pixels = b->pixels ? b->pixels + p0 * c->vision.patch_dim : NULL;
    float *emb = xmalloc(sizeof(float) * (size_t)(NI * C + 1)), *demb = xmalloc(sizeof(float) * (size_t)(NI * C + 1));
    maye_vision_train vt;
    int rc = 0;
    if (vision) {
        maye_vision_train_init(&vt, c, P, recompute);
        rc = maye_vision_train_forward(m, &vt, pixels, P, b->grid + 3 * img0, img1 - img0, emb);
    } else {
        rc = maye_vision_forward(m, pixels, P, b->grid + 3 * img0, img1 - img0, emb);
    }

    maye_llm_train tr;
    maye_llm_train_init(&tr, c, T, recompute);
    maye_llm_batch lb = {nb, T, cu, b->ids + b->cu[s0], pos, emb, NI};
    int64_t *tgt = xmalloc(sizeof(int64_t) * (size_t)T);
    float *lp = xmalloc(sizeof(float) * (size_t)T), *dlp = xcalloc((size_t)T, sizeof(float));
    float *grid_lp = xmalloc(sizeof(float) * (size_t)B * Tr), *grid_dlp = xmalloc(sizeof(float) * (size_t)B * Tr);
    if (rc == 0) rc = maye_llm_forward(m, &lb, &tr.acts);
    if (rc == 0) {
        maye_next_token_targets(&lb, tgt);
        rc = maye_llm_logprobs(m, &tr.acts, tgt, (float)x->rp.temperature, lp, NULL);
    }
    if (rc == 0) {
        // the loss needs every sample's log-probs: those outside the sub-batch come from the fixture
        memcpy(grid_lp, b->policy, sizeof(float) * (size_t)B * Tr);
        for (int i = s0; i < s1; i++)
            for (int j = 0; j < Tr; j++) grid_lp[i * Tr + j] = lp[response_row(b, i, j) - b->cu[s0]];
        if (s0 == 0 && s1 == B) {
            char what[256];
            snprintf(what, sizeof what, "%s rl.policy_logprobs", x->name);
            float *masked = xmalloc(sizeof(float) * (size_t)B * Tr);
            for (int i = 0; i < B * Tr; i++) masked[i] = b->mask[i] != 0 ? grid_lp[i] : b->policy[i];
            test_close_f32(what, masked, b->policy, (int64_t)B * Tr, LOGP_TOL, 0);
            double md = 0;
            for (int i = 0; i < B * Tr; i++) md = fmax(md, fabs(masked[i] - b->policy[i]));
            printf("%-52s max |diff| %.3g\n", what, md);
            free(masked);
        }
        maye_ppo_params pp = {.epsilon_low = x->rp.eps_low, .epsilon_high = x->rp.eps_high,
                              .kl_loss_coeff = x->rp.kl_loss_coeff, .kl_estimator = MAYE_KL_K3,
                              .reduction = MAYE_RED_TOKEN_MEAN};
        maye_ppo_stats ps;
        rc = maye_ppo_loss(&pp, B, Tr, grid_lp, b->old, b->ref, b->adv, b->mask, grid_dlp, &ps);
        for (int i = s0; rc == 0 && i < s1; i++)
            for (int j = 0; j < Tr; j++) dlp[response_row(b, i, j) - b->cu[s0]] = grid_dlp[i * Tr + j];
        if (rc == 0)
            rc = maye_llm_backward(m, &tr, &lb, tgt, (float)x->rp.temperature, lp, dlp, g, vision ? demb : NULL);
        if (rc == 0 && vision) rc = maye_vision_backward(m, &vt, pixels, demb, g);
    }
    if (rc < 0) {
        fprintf(stderr, "FAIL: %s: %s\n", x->name, maye_errmsg());
        test_failures++;
    }
    if (vision) maye_vision_train_free(&vt);
    maye_llm_train_free(&tr);
    free(cu), free(pos), free(emb), free(demb), free(tgt), free(lp), free(dlp), free(grid_lp), free(grid_dlp);
    return rc;
}

// ----------------------------------------------------------------------------
// comparison

// The loss value against rl.loss (a separate pass over the whole batch with the fixture's coefficients).
static void check_loss(const run_ctx *x, const maye_safetensors *st) {
    const batch *b = x->b;
    float *want = test_st_f32(st, "rl.loss", NULL);
    if (!want) return;
    maye_ppo_params pp = {.epsilon_low = x->rp.eps_low, .epsilon_high = x->rp.eps_high,
                          .kl_loss_coeff = x->rp.kl_loss_coeff, .kl_estimator = MAYE_KL_K3,
                          .reduction = MAYE_RED_TOKEN_MEAN};
    float *d = xmalloc(sizeof(float) * (size_t)b->B * b->Tr);
    maye_ppo_stats ps;
    EXPECT_OK(maye_ppo_loss(&pp, b->B, b->Tr, b->policy, b->old, b->ref, b->adv, b->mask, d, &ps));
    char what[256];
    snprintf(what, sizeof what, "%s rl.loss", x->name);
    float got = (float)ps.loss;
    test_close_f32(what, &got, want, 1, LOGP_TOL, 0);
    printf("%-52s %.9g (want %.9g)\n", what, ps.loss, want[0]);
    free(d), free(want);
}

// Every grad.<name> against ours (scaled by coef); the fixture's trained set against ours.
static void compare_grads(const run_ctx *x, const maye_safetensors *st, const maye_grads *g, int nt,
                          const maye_optim_tensor *tab, double coef) {
    int compared = 0;
    double worst = 0;
    for (int i = 0; i < nt; i++) {
        char gname[200];
        snprintf(gname, sizeof gname, "grad.%s", tab[i].name);
        int64_t n = 0;
        float *want = test_st_f32(st, gname, &n);
        if (!tab[i].trainable) {
            EXPECT(!want, "%s: %s exists but the tensor's group does not train", x->name, gname);
            free(want);
            continue;
        }
        if (!want || n != tab[i].numel) {
            fprintf(stderr, "FAIL: %s: %s is missing or has %lld values (expected %lld)\n", x->name, gname,
                    (long long)n, (long long)tab[i].numel);
            test_failures++;
            free(want);
            continue;
        }
        float *got = xmalloc(sizeof(float) * (size_t)n);
        for (int64_t k = 0; k < n; k++) got[k] = (float)(g->memory[tab[i].grad_offset + k] * coef);
        char what[300];
        snprintf(what, sizeof what, "%s %s", x->name, gname);
        test_close_rel_max(what, got, want, n, GRAD_TOL);
        double md = 0, mw = 0;
        for (int64_t k = 0; k < n; k++) md = fmax(md, fabs((double)got[k] - want[k])), mw = fmax(mw, fabs(want[k]));
        printf("%-60s max |diff| %.3g (%.2g of max |grad| %.3g)\n", what, md, md / (mw > 0 ? mw : 1), mw);
        worst = fmax(worst, md / (mw > 0 ? mw : 1));
        compared++;
        free(got), free(want);
    }
    int in_fixture = 0;
    for (int i = 0; i < st->ntensors; i++) in_fixture += !strncmp(st->tensors[i].name, "grad.", 5);
    EXPECT(compared == in_fixture, "%s: compared %d gradients, the fixture has %d", x->name, compared, in_fixture);
    printf("%s: %d gradients, worst max |diff| / max |grad| = %.3g\n", x->name, compared, worst);
}

// The groups that train: those with a grad.* tensor in the fixture.
static unsigned fixture_groups(const maye_model *m, const maye_safetensors *st) {
    unsigned groups = 0;
    for (int i = 0; i < m->n_specs; i++) {
        char name[200];
        snprintf(name, sizeof name, "grad.");
        snprintf(name + 5, sizeof name - 5, m->specs[i].hub, 0);
        if (maye_st_find(st, name)) groups |= 1u << m->specs[i].group;
    }
    return groups;
}

static void check_folder(const char *dir, const char *name, const maye_safetensors *st) {
    rl_params rp;
    if (read_manifest(dir, name, &rp) < 0) return;
    maye_model m;
    if (maye_model_load(&m, dir) < 0) {
        fprintf(stderr, "FAIL: %s: %s\n", name, maye_errmsg());
        test_failures++;
        return;
    }
    batch b;
    if (read_batch(&m, st, name, &b) == 0) {
        run_ctx x = {&m, name, &b, rp, fixture_groups(&m, st)};
        printf("%s: B=%d samples, %d response tokens each, %d packed tokens, %lld patches, groups 0x%x, "
               "temperature %g\n", name, b.B, b.Tr, b.T, (long long)b.P, x.groups, rp.temperature);
        check_loss(&x, st);
        maye_grads g;
        maye_grads_init(&g, &m, x.groups);
        maye_optim_tensor *tab;
        int nt = maye_grads_optim_table(&g, &m, &tab);
        if (run_backward(&x, 0, b.B, false, &g) == 0) {
            // the norm, then the stored gradients (after clipping if their norm says so)
            double norm = maye_grad_norm(nt, tab, g.memory), want_norm = 0;
            float *wn = test_st_f32(st, "rl.grad_norm_before_clip", NULL);
            if (wn) {
                want_norm = wn[0];
                EXPECT(fabs(norm - want_norm) <= 1e-4 * want_norm, "%s: gradient norm %.9g, expected %.9g", name,
                       norm, want_norm);
                printf("%-52s %.9g (want %.9g, rel diff %.3g)\n", "grad norm before clip", norm, want_norm,
                       fabs(norm - want_norm) / want_norm);
            } else {
                fprintf(stderr, "FAIL: %s: rl.grad_norm_before_clip is missing\n", name);
                test_failures++;
            }
            double stored = 0;
            for (int i = 0; i < st->ntensors; i++) {
                if (strncmp(st->tensors[i].name, "grad.", 5)) continue;
                int64_t n = 0;
                float *v = test_st_f32(st, st->tensors[i].name, &n);
                for (int64_t k = 0; k < n; k++) stored += (double)v[k] * v[k];
                free(v);
            }
            stored = sqrt(stored);
            double coef = rp.clip > 0 ? fmin(1.0, rp.clip / (norm + 1e-6)) : 1.0;
            bool clipped = coef < 1 && fabs(stored - norm * coef) < fabs(stored - norm);
            printf("%s: the fixture's gradients are stored %s clipping (their norm %.6g)\n", name,
                   clipped ? "after" : "before", stored);
            compare_grads(&x, st, &g, nt, tab, clipped ? coef : 1.0);

            // recomputation: bit-identical
            maye_grads g2;
            maye_grads_init(&g2, &m, x.groups);
            if (run_backward(&x, 0, b.B, true, &g2) == 0) {
                size_t diff = 0;
                for (size_t i = 0; i < g.n_floats; i++) diff += memcmp(&g.memory[i], &g2.memory[i], sizeof(float)) != 0;
                EXPECT(diff == 0, "%s: recompute changed %zu of %zu gradient values", name, diff, g.n_floats);
                printf("%s: recompute on/off: %zu of %zu gradient values differ\n", name, diff, g.n_floats);
            }
            // one micro-batch per sample, accumulated
            maye_grads_zero(&g2);
            int ok = 0;
            for (int i = 0; i < b.B; i++) ok |= run_backward(&x, i, i + 1, false, &g2);
            if (ok == 0) {
                for (int i = 0; i < nt; i++) {
                    if (!tab[i].trainable) continue;
                    char what[300];
                    snprintf(what, sizeof what, "%s micro-batches %s", name, tab[i].name);
                    test_close_rel_max(what, g2.memory + tab[i].grad_offset, g.memory + tab[i].grad_offset,
                                       tab[i].numel, 1e-5);
                }
                printf("%s: %d micro-batches accumulate to the packed batch's gradients\n", name, b.B);
            }
            maye_grads_free(&g2);
            free(wn);
        }
        maye_optim_table_free(tab, nt);
        maye_grads_free(&g);
    }
    batch_free(&b);
    maye_model_free(&m);
}

// ----------------------------------------------------------------------------
// discovery

// Checks the folder when it holds model.safetensors and an expected.safetensors with grad.* tensors: returns
// 1 then, else 0.
static int visit_folder(const char *dir, const char *name) {
    char *exp = maye_path_join(dir, "expected.safetensors"), *wts = maye_path_join(dir, "model.safetensors");
    maye_safetensors st;
    int checked = 0;
    if (maye_file_exists(exp) && maye_file_exists(wts) && maye_st_open(&st, exp) == 0) {
        int grads = 0;
        for (int k = 0; k < st.ntensors; k++) grads += !strncmp(st.tensors[k].name, "grad.", 5);
        if (grads) {
            check_folder(dir, name, &st);
            checked = 1;
        }
        maye_st_close(&st);
    }
    free(exp), free(wts);
    return checked;
}

int main(void) { return test_golden_main(visit_folder, "no fixture folder with grad.* tensors"); }
