// The policy-gradient math around the model: KL estimators, the token-level KL reward with the score at
// the last response token, discounted returns, advantage estimators (MAYE's Reinforce++ whitening, GRPO,
// RLOO) and the PPO-clip + KL loss with its gradient w.r.t. each token's policy log-prob (the model's
// backward starts from it). All arrays are row-major [B, T]: B sequences of T response tokens, padded;
// mask [B, T] is 1 on real response tokens, 0 on padding. Formulas follow MAYE (rlhf/rewards.py,
// loss/ppo.py); where MAYE leaves a choice open the header says what is done.
#pragma once
#include "core/config.h"

#include <stdbool.h>
#include <stdint.h>

// ----------------------------------------------------------------------------
// KL estimators (Schulman, "Approximating KL divergence"): estimates of KL(pi || ref) from a token
// sampled from pi, with r = ref_logp - logp:
//   k1 = -r,   k2 = r^2 / 2,   k3 = exp(r) - 1 - r   (k3 is MAYE's, unbiased and >= 0)

typedef enum { MAYE_KL_K1, MAYE_KL_K2, MAYE_KL_K3 } maye_kl_estimator;

int maye_kl_estimator_parse(const char *name, maye_kl_estimator *out, const char *key);
double maye_kl_token(maye_kl_estimator e, double logp, double ref_logp);
// d(kl_token)/d(logp)
double maye_kl_token_grad(maye_kl_estimator e, double logp, double ref_logp);

// ----------------------------------------------------------------------------
// rewards and returns

// Token-level rewards (MAYE get_rewards_from_ref): kl[b,t] = clamp(estimator(logp, ref), -10, 10) on real
// tokens (0 on padding), total_reward = -kl_coeff * kl, plus scores[b] at the last real token of row b
// (rows without real tokens get no score). `logp` are the sampling policy's log-probs (old_logprobs).
// kl and total_reward are [B, T] outputs; kl may be NULL.
void maye_rl_token_rewards(int64_t B, int64_t T, const float *logp, const float *ref_logp, const float *mask,
                           const float *scores, double kl_coeff, maye_kl_estimator est, float *kl,
                           float *total_reward);
// returns[b,t] = rewards[b,t] + gamma * returns[b,t+1] over the whole row (MAYE estimate_advantages).
void maye_rl_returns(int64_t B, int64_t T, const float *rewards, double gamma, float *returns);

// ----------------------------------------------------------------------------
// advantages

typedef enum { MAYE_ADV_REINFORCE_PP, MAYE_ADV_GRPO, MAYE_ADV_RLOO } maye_adv_kind;

typedef struct {
    maye_adv_kind kind;
    double gamma;    // discount of the returns
    bool shift_mean; // reinforce_pp: add the mean back after whitening (MAYE's whiten(shift_mean=True))
    bool grpo_std;   // grpo: divide by the group's standard deviation
} maye_adv_params;

int maye_adv_kind_parse(const char *name, maye_adv_kind *out, const char *key);
// From update.advantage / update.gamma / update.shift_mean / update.grpo_std.
int maye_adv_params_from_config(maye_adv_params *p, const maye_config *cfg);
// Fills returns [B, T] (discounted, always) and advantages [B, T] (0 on padding):
//   reinforce_pp  returns whitened over the real tokens of the batch: (x - mean) / sqrt(var + 1e-8), with
//                 mean = sum(x m) / (sum(m) + 1e-8), unbiased var (Bessel factor n / (n - 1), n = sum(m)
//                 + 1e-8, exactly MAYE's masked_var), plus the mean when shift_mean.
//   grpo          per sequence R_b = sum of its total_reward over real tokens; A_b = R_b - mean_g, divided by
//                 (std_g + 1e-6) with grpo_std (unbiased std over the group g of R_b's query; a group of one
//                 has mean 0 and std 1, as verl), broadcast over the sequence's real tokens.
//   rloo          A_b = R_b - mean of the other members of its group (a group of one keeps R_b).
// `group` [B] names each sequence's query (the n responses of a query share a value); required for grpo and
// rloo, unused (may be NULL) for reinforce_pp. Fails on a missing group array.
int maye_rl_advantages(const maye_adv_params *p, int64_t B, int64_t T, const float *total_reward,
                       const float *mask, const int64_t *group, float *returns, float *advantages);

// ----------------------------------------------------------------------------
// PPO-clip + KL loss

typedef enum { MAYE_RED_TOKEN_MEAN, MAYE_RED_TOKEN_SUM_CONST, MAYE_RED_SEQ_MEAN } maye_loss_reduction;

typedef struct {
    double epsilon_low, epsilon_high; // ratio clipped to [1 - epsilon_low, 1 + epsilon_high]
    double kl_loss_coeff;
    maye_kl_estimator kl_estimator;   // of the KL loss against the reference log-probs (MAYE: k3)
    maye_loss_reduction reduction;
    double reduction_const;           // token_sum_const: the constant sequence length L (> 0)
} maye_ppo_params;

int maye_loss_reduction_parse(const char *name, maye_loss_reduction *out, const char *key);
// Fills the loss parameters from update.* (reduction_const from update.loss_reduction_const, or
// rollout.max_tokens when that is 0).
int maye_ppo_params_from_config(maye_ppo_params *p, const maye_config *cfg);

typedef struct {
    double loss;        // policy_loss + kl_loss_coeff * kl_loss
    double policy_loss; // reduced max(-A r, -A clip(r))
    double kl_loss;     // reduced KL estimate, clamped to [-10, 10] after the reduction (MAYE)
    double ratio_mean;  // mean of r = exp(logp - old_logp) over real tokens
    double clipfrac;    // share of real tokens where the clipped term is the larger one (MAYE)
    double approx_kl;   // mean of (logp - old_logp)^2 / 2 over real tokens (MAYE's approx_policy_kl)
    int64_t n_tokens;   // real tokens
} maye_ppo_stats;

// The loss of one (micro-)batch and dloss/dlogp [B, T] (0 on padding). Reductions:
//   token_mean       sum(l m) / (sum(m) + 1e-8)  (MAYE's masked_mean over the batch's real tokens)
//   token_sum_const  sum(l m) / (B x reduction_const)  (each sequence's token sum over a constant length,
//                    averaged over the B sequences, as Dr. GRPO)
//   seq_mean         mean over sequences with real tokens of sum_t(l m) / sum_t(m)
// Gradients follow torch's autograd of MAYE's PPOLoss (ties of the max split evenly, clamp passes the
// gradient inside its closed range). Fails on bad parameters (e.g. token_sum_const without a divisor).
int maye_ppo_loss(const maye_ppo_params *p, int64_t B, int64_t T, const float *logp, const float *old_logp,
                  const float *ref_logp, const float *advantages, const float *mask, float *dlogp,
                  maye_ppo_stats *stats);
