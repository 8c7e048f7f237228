// KL estimators, token rewards, returns, advantages and the PPO-clip + KL loss with its gradient (see
// ppo.h). Arrays are [B, T] row-major; sums run in double in a fixed order, so results do not depend on
// the thread count.
#include "rl/ppo.h"

#include "core/error.h"
#include "core/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KL_CLAMP 10.0     // MAYE clamps the token KL (reward) and the reduced KL loss to [-10, 10]
#define MASKED_EPS 1e-8   // MAYE's masked_mean / whiten epsilon
#define GROUP_STD_EPS 1e-6

// ----------------------------------------------------------------------------
// names

static int parse_choice(const char *name, const char *const *choices, int n, const char *key) {
    for (int i = 0; i < n; i++)
        if (name && !strcmp(name, choices[i])) return i;
    maye_buf list = {0};
    for (int i = 0; i < n; i++) maye_buf_printf(&list, "%s%s", i ? ", " : "", choices[i]);
    maye_fail("%s: unknown value '%s' (expected one of %s)", key, name ? name : "", list.data);
    maye_buf_free(&list);
    return -1;
}

int maye_kl_estimator_parse(const char *name, maye_kl_estimator *out, const char *key) {
    static const char *const names[] = {"k1", "k2", "k3"};
    int k = parse_choice(name, names, 3, key);
    TRY(k);
    *out = (maye_kl_estimator)k;
    return 0;
}

int maye_adv_kind_parse(const char *name, maye_adv_kind *out, const char *key) {
    static const char *const names[] = {"reinforce_pp", "grpo", "rloo"};
    int k = parse_choice(name, names, 3, key);
    TRY(k);
    *out = (maye_adv_kind)k;
    return 0;
}

int maye_loss_reduction_parse(const char *name, maye_loss_reduction *out, const char *key) {
    static const char *const names[] = {"token_mean", "token_sum_const", "seq_mean"};
    int k = parse_choice(name, names, 3, key);
    TRY(k);
    *out = (maye_loss_reduction)k;
    return 0;
}

// ----------------------------------------------------------------------------
// KL estimators

double maye_kl_token(maye_kl_estimator e, double logp, double ref_logp) {
    double r = ref_logp - logp;
    switch (e) {
    case MAYE_KL_K1: return -r;
    case MAYE_KL_K2: return 0.5 * r * r;
    case MAYE_KL_K3: return exp(r) - 1.0 - r;
    }
    maye_die("bad KL estimator %d", (int)e);
}

double maye_kl_token_grad(maye_kl_estimator e, double logp, double ref_logp) {
    double r = ref_logp - logp; // dr/dlogp = -1
    switch (e) {
    case MAYE_KL_K1: return 1.0;
    case MAYE_KL_K2: return -r;
    case MAYE_KL_K3: return 1.0 - exp(r);
    }
    maye_die("bad KL estimator %d", (int)e);
}

// ----------------------------------------------------------------------------
// rewards and returns

void maye_rl_token_rewards(int64_t B, int64_t T, const float *logp, const float *ref_logp, const float *mask,
                           const float *scores, double kl_coeff, maye_kl_estimator est, float *kl,
                           float *total_reward) {
    for (int64_t b = 0; b < B; b++) {
        int64_t last = -1;
        for (int64_t t = 0; t < T; t++) {
            int64_t i = b * T + t;
            double k = 0;
            if (mask[i] != 0) {
                k = fmin(fmax(maye_kl_token(est, logp[i], ref_logp[i]), -KL_CLAMP), KL_CLAMP);
                last = t;
            }
            if (kl) kl[i] = (float)k;
            total_reward[i] = (float)(-kl_coeff * k);
        }
        if (last >= 0) total_reward[b * T + last] = (float)((double)total_reward[b * T + last] + scores[b]);
    }
}

void maye_rl_returns(int64_t B, int64_t T, const float *rewards, double gamma, float *returns) {
    for (int64_t b = 0; b < B; b++) {
        double running = 0;
        for (int64_t t = T - 1; t >= 0; t--) {
            running = rewards[b * T + t] + gamma * running;
            returns[b * T + t] = (float)running;
        }
    }
}

// ----------------------------------------------------------------------------
// advantages

int maye_adv_params_from_config(maye_adv_params *p, const maye_config *cfg) {
    memset(p, 0, sizeof *p);
    TRY(maye_adv_kind_parse(cfg->update.advantage, &p->kind, "update.advantage"));
    CHECK_OR_FAIL(cfg->update.gamma >= 0 && cfg->update.gamma <= 1, "update.gamma is %g: it must be in [0, 1]",
                  cfg->update.gamma);
    p->gamma = cfg->update.gamma;
    p->shift_mean = cfg->update.shift_mean;
    p->grpo_std = cfg->update.grpo_std;
    return 0;
}

// MAYE's whiten(x, mask, shift_mean): masked mean, unbiased masked variance, both with its 1e-8 epsilons.
static void whiten(int64_t n, const float *x, const float *mask, bool shift_mean, float *out) {
    double sum = 0, count = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)x[i] * mask[i], count += mask[i];
    double denom = count + MASKED_EPS;
    double mean = sum / denom;
    double sq = 0;
    for (int64_t i = 0; i < n; i++) {
        double c = (double)x[i] - mean;
        sq += c * c * mask[i];
    }
    double var = sq / denom * (denom / (denom - 1.0));
    double inv_std = 1.0 / sqrt(var + MASKED_EPS);
    if (!isfinite(inv_std)) inv_std = 0; // one real token: Bessel's factor is negative and huge
    for (int64_t i = 0; i < n; i++) {
        double w = ((double)x[i] - mean) * inv_std + (shift_mean ? mean : 0.0);
        out[i] = mask[i] != 0 ? (float)w : 0.0f;
    }
}

int maye_rl_advantages(const maye_adv_params *p, int64_t B, int64_t T, const float *total_reward,
                       const float *mask, const int64_t *group, float *returns, float *advantages) {
    maye_rl_returns(B, T, total_reward, p->gamma, returns);
    if (p->kind == MAYE_ADV_REINFORCE_PP) {
        whiten(B * T, returns, mask, p->shift_mean, advantages);
        return 0;
    }
    CHECK_OR_FAIL(group != NULL, "the %s advantage needs the query of every sequence (group ids)",
                  p->kind == MAYE_ADV_GRPO ? "grpo" : "rloo");
    double *R = xmalloc(sizeof(double) * (size_t)(B ? B : 1)); // (B) sequence rewards
    for (int64_t b = 0; b < B; b++) {
        double r = 0;
        for (int64_t t = 0; t < T; t++) r += mask[b * T + t] != 0 ? total_reward[b * T + t] : 0.0;
        R[b] = r;
    }
    for (int64_t b = 0; b < B; b++) {
        double sum = 0;
        int64_t n = 0;
        for (int64_t j = 0; j < B; j++)
            if (group[j] == group[b]) sum += R[j], n++;
        double a;
        if (p->kind == MAYE_ADV_RLOO) {
            a = n > 1 ? R[b] - (sum - R[b]) / (double)(n - 1) : R[b];
        } else {
            double mean = n > 1 ? sum / (double)n : 0.0, std = 1.0;
            if (n > 1) {
                double sq = 0;
                for (int64_t j = 0; j < B; j++)
                    if (group[j] == group[b]) sq += (R[j] - mean) * (R[j] - mean);
                std = sqrt(sq / (double)(n - 1));
            }
            a = R[b] - mean;
            if (p->grpo_std) a /= std + GROUP_STD_EPS;
        }
        for (int64_t t = 0; t < T; t++) advantages[b * T + t] = mask[b * T + t] != 0 ? (float)a : 0.0f;
    }
    free(R);
    return 0;
}

// ----------------------------------------------------------------------------
// PPO-clip + KL loss

int maye_ppo_params_from_config(maye_ppo_params *p, const maye_config *cfg) {
    memset(p, 0, sizeof *p);
    const typeof(cfg->update) *u = &cfg->update;
    CHECK_OR_FAIL(u->epsilon_low >= 0 && u->epsilon_low < 1, "update.epsilon_low is %g: it must be in [0, 1)",
                  u->epsilon_low);
    CHECK_OR_FAIL(u->epsilon_high >= 0, "update.epsilon_high is %g: it must be >= 0", u->epsilon_high);
    p->epsilon_low = u->epsilon_low;
    p->epsilon_high = u->epsilon_high;
    p->kl_loss_coeff = u->kl_loss_coeff;
    TRY(maye_kl_estimator_parse(u->kl_estimator, &p->kl_estimator, "update.kl_estimator"));
    TRY(maye_loss_reduction_parse(u->loss_reduction, &p->reduction, "update.loss_reduction"));
    p->reduction_const = u->loss_reduction_const > 0 ? u->loss_reduction_const : (double)cfg->rollout.max_tokens;
    if (p->reduction == MAYE_RED_TOKEN_SUM_CONST)
        CHECK_OR_FAIL(p->reduction_const > 0, "update.loss_reduction_const is %g and rollout.max_tokens is %lld: "
                      "token_sum_const needs a positive length", u->loss_reduction_const,
                      (long long)cfg->rollout.max_tokens);
    return 0;
}

// Per-token weights w[b,t] of the reduction: loss = sum(w * l).
static int reduction_weights(const maye_ppo_params *p, int64_t B, int64_t T, const float *mask, double *w,
                             int64_t *n_tokens) {
    double count = 0;
    for (int64_t i = 0; i < B * T; i++) count += mask[i];
    *n_tokens = (int64_t)count;
    switch (p->reduction) {
    case MAYE_RED_TOKEN_MEAN:
        for (int64_t i = 0; i < B * T; i++) w[i] = mask[i] / (count + MASKED_EPS);
        return 0;
    case MAYE_RED_TOKEN_SUM_CONST:
        CHECK_OR_FAIL(p->reduction_const > 0, "token_sum_const reduction: the constant length is %g, it must be > 0",
                      p->reduction_const);
        for (int64_t i = 0; i < B * T; i++) w[i] = B ? mask[i] / ((double)B * p->reduction_const) : 0.0;
        return 0;
    case MAYE_RED_SEQ_MEAN: {
        int64_t seqs = 0;
        for (int64_t b = 0; b < B; b++) {
            double n = 0;
            for (int64_t t = 0; t < T; t++) n += mask[b * T + t];
            seqs += n > 0;
        }
        for (int64_t b = 0; b < B; b++) {
            double n = 0;
            for (int64_t t = 0; t < T; t++) n += mask[b * T + t];
            for (int64_t t = 0; t < T; t++) w[b * T + t] = n > 0 ? mask[b * T + t] / (n * (double)seqs) : 0.0;
        }
        return 0;
    }
    }
    return maye_fail("unknown loss reduction %d", (int)p->reduction);
}

int maye_ppo_loss(const maye_ppo_params *p, int64_t B, int64_t T, const float *logp, const float *old_logp,
                  const float *ref_logp, const float *advantages, const float *mask, float *dlogp,
                  maye_ppo_stats *stats) {
    memset(stats, 0, sizeof *stats);
    int64_t N = B * T;
    double *w = xmalloc(sizeof(double) * (size_t)(N ? N : 1));     // (B*T) reduction weights
    double *dpol = xmalloc(sizeof(double) * (size_t)(N ? N : 1));  // (B*T) d(token policy loss)/dlogp
    double *dkl = xmalloc(sizeof(double) * (size_t)(N ? N : 1));   // (B*T) d(token KL)/dlogp
    if (reduction_weights(p, B, T, mask, w, &stats->n_tokens) < 0) {
        free(w), free(dpol), free(dkl);
        return -1;
    }
    double lo = 1.0 - p->epsilon_low, hi = 1.0 + p->epsilon_high;
    double policy = 0, kl = 0, ratio_sum = 0, clipped = 0, approx = 0, count = 0;
    for (int64_t i = 0; i < N; i++) {
        dpol[i] = dkl[i] = 0;
        if (mask[i] == 0) continue;
        double lr = (double)logp[i] - (double)old_logp[i];
        double r = exp(lr), rc = fmin(fmax(r, lo), hi), A = advantages[i];
        double unclipped = -A * r, clip = -A * rc;
        bool inside = r >= lo && r <= hi;
        // d/dlogp of max(clip, unclipped): torch's maximum splits ties evenly; clamp passes the gradient
        // inside [lo, hi]
        double g_unclipped = -A * r, g_clip = inside ? -A * r : 0.0;
        dpol[i] = clip > unclipped ? g_clip : clip < unclipped ? g_unclipped : 0.5 * (g_clip + g_unclipped);
        policy += w[i] * fmax(clip, unclipped);
        kl += w[i] * maye_kl_token(p->kl_estimator, logp[i], ref_logp[i]);
        dkl[i] = maye_kl_token_grad(p->kl_estimator, logp[i], ref_logp[i]);
        ratio_sum += r * mask[i];
        clipped += (clip > unclipped) * mask[i];
        approx += 0.5 * lr * lr * mask[i];
        count += mask[i];
    }
    double kl_clamped = fmin(fmax(kl, -KL_CLAMP), KL_CLAMP);
    double kl_pass = (kl >= -KL_CLAMP && kl <= KL_CLAMP) ? 1.0 : 0.0;
    for (int64_t i = 0; i < N; i++) dlogp[i] = (float)(w[i] * (dpol[i] + p->kl_loss_coeff * kl_pass * dkl[i]));
    stats->policy_loss = policy;
    stats->kl_loss = kl_clamped;
    stats->loss = policy + p->kl_loss_coeff * kl_clamped;
    stats->ratio_mean = count > 0 ? ratio_sum / count : 0.0;
    stats->clipfrac = clipped / (count + MASKED_EPS);
    stats->approx_kl = count > 0 ? approx / count : 0.0;
    free(w), free(dpol), free(dkl);
    return 0;
}
