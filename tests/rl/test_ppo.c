// RL math against hand-computed values and finite differences: KL estimators and their gradients, token
// rewards with padding and the clamp, discounted returns, the three advantage estimators, and the PPO
// loss (values, clip fraction, every reduction and estimator) with dloss/dlogp checked by central
// differences. Shapes: B sequences x T tokens, row-major.
#include "core/config.h"
#include "rl/ppo.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void close1(const char *what, double got, double want, double tol) {
    EXPECT(fabs(got - want) <= tol, "%s: got %.9g want %.9g", what, got, want);
}

// ----------------------------------------------------------------------------

static void test_kl(void) {
    double lp = -1.3, ref = -0.9, r = ref - lp;
    close1("k1", maye_kl_token(MAYE_KL_K1, lp, ref), -r, 1e-15);
    close1("k2", maye_kl_token(MAYE_KL_K2, lp, ref), 0.5 * r * r, 1e-15);
    close1("k3", maye_kl_token(MAYE_KL_K3, lp, ref), exp(r) - 1 - r, 1e-15);
    for (int e = 0; e < 3; e++) {
        double h = 1e-6;
        double fd = (maye_kl_token(e, lp + h, ref) - maye_kl_token(e, lp - h, ref)) / (2 * h);
        close1("kl grad vs central difference", maye_kl_token_grad(e, lp, ref), fd, 1e-8);
    }
    maye_kl_estimator e;
    EXPECT_FAIL(maye_kl_estimator_parse("k4", &e, "update.kl_estimator"), "update.kl_estimator: unknown value 'k4'");
    EXPECT_OK(maye_kl_estimator_parse("k2", &e, "x"));
    EXPECT(e == MAYE_KL_K2, "parsed k2");
}

static void test_rewards_returns(void) {
    enum { B = 2, T = 4 };
    float lp[B * T] = {-1, -2, -3, 1, -1, -0.5f, 1, 1};
    float ref[B * T] = {-1.5f, -2, -1, 1, -20, -0.5f, 1, 1};
    float mask[B * T] = {1, 1, 1, 0, 1, 1, 0, 0};
    float scores[B] = {1.0f, -0.1f};
    float kl[B * T], tr[B * T], ret[B * T];
    double c = 0.05;
    maye_rl_token_rewards(B, T, lp, ref, mask, scores, c, MAYE_KL_K3, kl, tr);
    double k00 = exp(-0.5) - 1 + 0.5, k02 = exp(2.0) - 1 - 2.0;
    // token (1, 0): r = -19, k3 = exp(-19) + 18 clamps to 10
    float want_kl[B * T] = {(float)k00, 0, (float)k02, 0, 10, 0, 0, 0};
    float want_tr[B * T] = {(float)(-c * k00), 0, (float)(-c * k02 + 1.0), 0, (float)(-c * 10), -0.1f, 0, 0};
    test_close_f32("kl (padding 0, clamp 10)", kl, want_kl, B * T, 1e-6, 0);
    test_close_f32("total_reward (score at the last real token)", tr, want_tr, B * T, 1e-6, 0);
    double g = 0.9;
    maye_rl_returns(B, T, tr, g, ret);
    float want_ret[B * T];
    for (int b = 0; b < B; b++) {
        double run = 0;
        for (int t = T - 1; t >= 0; t--) want_ret[b * T + t] = (float)(run = tr[b * T + t] + g * run);
    }
    test_close_f32("returns", ret, want_ret, B * T, 1e-6, 0);
    close1("returns[0,0] by hand", ret[0], tr[0] + g * tr[1] + g * g * tr[2], 1e-6);
    // a row without real tokens gets no score
    float m0[T] = {0, 0, 0, 0}, s0[1] = {5}, tr0[T];
    maye_rl_token_rewards(1, T, lp, ref, m0, s0, c, MAYE_KL_K3, NULL, tr0);
    for (int t = 0; t < T; t++) EXPECT(tr0[t] == 0, "empty row: total_reward[%d] = %g", t, tr0[t]);
}

static void test_advantages(void) {
    // reinforce_pp: returns [1, 3, 5 | pad] -> mean 3, unbiased var 4 -> [-1, 0, 1] (+3 with shift_mean)
    enum { T = 4 };
    float rewards[T] = {-2, -2, 5, 0}, mask[T] = {1, 1, 1, 0}, ret[T], adv[T];
    maye_adv_params p = {.kind = MAYE_ADV_REINFORCE_PP, .gamma = 1.0, .shift_mean = true};
    EXPECT_OK(maye_rl_advantages(&p, 1, T, rewards, mask, NULL, ret, adv));
    float want_ret[T] = {1, 3, 5, 0}, want_shift[T] = {2, 3, 4, 0}, want_plain[T] = {-1, 0, 1, 0};
    test_close_f32("reinforce_pp returns", ret, want_ret, T, 1e-6, 0);
    test_close_f32("reinforce_pp whitened + mean", adv, want_shift, T, 1e-6, 0);
    p.shift_mean = false;
    EXPECT_OK(maye_rl_advantages(&p, 1, T, rewards, mask, NULL, ret, adv));
    test_close_f32("reinforce_pp whitened", adv, want_plain, T, 1e-6, 0);

    // grpo / rloo over sequence rewards R = [1, 0 | 1, 1 | 2] in groups {0,1} {2,3} {4}, T = 2
    enum { B = 5, T2 = 2 };
    float tr[B * T2] = {0, 1, 0, 0, 0.5f, 0.5f, 1, 0, 2, 0};
    float m2[B * T2] = {1, 1, 1, 1, 1, 1, 1, 0, 1, 1};
    int64_t group[B] = {7, 7, 3, 3, 9};
    float r2[B * T2], a2[B * T2];
    maye_adv_params g = {.kind = MAYE_ADV_GRPO, .gamma = 1.0, .grpo_std = true};
    EXPECT_OK(maye_rl_advantages(&g, B, T2, tr, m2, group, r2, a2));
    double s = 1 / (sqrt(0.5) + 1e-6);
    float want_grpo[B * T2] = {(float)(0.5 * s), (float)(0.5 * s), (float)(-0.5 * s), (float)(-0.5 * s), 0, 0, 0, 0,
                               (float)(2 / (1 + 1e-6)), (float)(2 / (1 + 1e-6))};
    test_close_f32("grpo with std", a2, want_grpo, B * T2, 1e-5, 0);
    g.grpo_std = false;
    EXPECT_OK(maye_rl_advantages(&g, B, T2, tr, m2, group, r2, a2));
    float want_grpo_nostd[B * T2] = {0.5f, 0.5f, -0.5f, -0.5f, 0, 0, 0, 0, 2, 2};
    test_close_f32("grpo without std", a2, want_grpo_nostd, B * T2, 1e-6, 0);
    int64_t group3[B] = {1, 1, 1, 2, 2};
    maye_adv_params l = {.kind = MAYE_ADV_RLOO, .gamma = 1.0};
    EXPECT_OK(maye_rl_advantages(&l, B, T2, tr, m2, group3, r2, a2));
    // R = [1, 0, 1 | 1, 2]: 1 - 0.5, 0 - 1, 1 - 0.5 | 1 - 2, 2 - 1
    float want_rloo[B * T2] = {0.5f, 0.5f, -1, -1, 0.5f, 0.5f, -1, 0, 1, 1};
    test_close_f32("rloo", a2, want_rloo, B * T2, 1e-6, 0);
    EXPECT_FAIL(maye_rl_advantages(&l, B, T2, tr, m2, NULL, r2, a2), "needs the query of every sequence");
}

// ----------------------------------------------------------------------------
// the loss

enum { LB = 3, LT = 5 };

static double loss_of(const maye_ppo_params *p, const float *lp, const float *old, const float *ref, const float *adv,
                      const float *mask, float *grad, maye_ppo_stats *st) {
    maye_ppo_stats s;
    float g[LB * LT];
    EXPECT_OK(maye_ppo_loss(p, LB, LT, lp, old, ref, adv, mask, grad ? grad : g, st ? st : &s));
    return st ? st->loss : s.loss;
}

static void test_loss_values(void) {
    // one token per case: r = exp(lp - old) with advantages of both signs, epsilon_low 0.2, high 0.3
    float lp[4] = {0.5f, -0.5f, 0.1f, 0.5f}, old[4] = {0, 0, 0, 0}, ref[4] = {0.2f, 0, 0, 0};
    float adv[4] = {1, -1, 2, -1}, mask[4] = {1, 1, 1, 1}, grad[4];
    maye_ppo_params p = {.epsilon_low = 0.2, .epsilon_high = 0.3, .kl_loss_coeff = 0.1, .kl_estimator = MAYE_KL_K3};
    maye_ppo_stats st;
    EXPECT_OK(maye_ppo_loss(&p, 1, 4, lp, old, ref, adv, mask, grad, &st));
    double r0 = exp(0.5), r1 = exp(-0.5), r2 = exp(0.1), r3 = exp(0.5);
    double l0 = fmax(-1 * r0, -1 * 1.3);      // clipped (A > 0, r > 1.3): -1.3
    double l1 = fmax(1 * r1, 1 * 0.8);        // A < 0, r < 0.8: max(0.607, 0.8) = 0.8 clipped
    double l2 = -2 * r2;                      // inside
    double l3 = fmax(1 * r3, 1 * 1.3);        // A < 0, r > 1.3: unclipped r3
    double pol = (l0 + l1 + l2 + l3) / (4 + 1e-8);
    double k3[4] = {exp(-0.3) - 1 + 0.3, exp(0.5) - 1 - 0.5, exp(-0.1) - 1 + 0.1, exp(-0.5) - 1 + 0.5}; // r = ref - lp
    double kl = (k3[0] + k3[1] + k3[2] + k3[3]) / (4 + 1e-8);
    close1("policy_loss", st.policy_loss, pol, 1e-7);
    close1("kl_loss", st.kl_loss, kl, 1e-7);
    close1("loss", st.loss, pol + 0.1 * kl, 1e-7);
    close1("clipfrac (tokens 0 and 1)", st.clipfrac, 0.5, 1e-7);
    close1("ratio_mean", st.ratio_mean, (r0 + r1 + r2 + r3) / 4, 1e-7);
    close1("approx_kl", st.approx_kl, (0.125 + 0.125 + 0.005 + 0.125) / 4, 1e-7);
    EXPECT(st.n_tokens == 4, "n_tokens %lld", (long long)st.n_tokens);
    // clipped tokens have no policy gradient, only the KL part
    close1("grad of a clipped token", grad[0], 0.1 * (1 - exp(0.2 - 0.5)) / 4, 1e-7);
    close1("grad of an unclipped token", grad[3], (r3 + 0.1 * (1 - exp(-0.5))) / 4, 1e-7);
}

// Central differences of the loss w.r.t. each real token's logp against the analytic gradient.
static void check_gradient(const char *what, const maye_ppo_params *p, const float *lp0, const float *old,
                           const float *ref, const float *adv, const float *mask) {
    float lp[LB * LT], grad[LB * LT];
    memcpy(lp, lp0, sizeof lp);
    loss_of(p, lp, old, ref, adv, mask, grad, NULL);
    float fd[LB * LT];
    for (int i = 0; i < LB * LT; i++) {
        float h = 1e-3f, keep = lp[i];
        lp[i] = keep + h;
        double up = loss_of(p, lp, old, ref, adv, mask, NULL, NULL);
        lp[i] = keep - h;
        double down = loss_of(p, lp, old, ref, adv, mask, NULL, NULL);
        lp[i] = keep;
        fd[i] = (float)((up - down) / ((double)(keep + h) - (double)(keep - h)));
    }
    char name[128];
    snprintf(name, sizeof name, "dloss/dlogp vs central differences (%s)", what);
    test_close_f32(name, grad, fd, LB * LT, 1e-6, 1e-4);
    for (int i = 0; i < LB * LT; i++) EXPECT(mask[i] != 0 || grad[i] == 0, "%s: padding gradient %g", what, grad[i]);
}

static void test_loss_gradients(void) {
    // ratios spread over both sides of the clip range, away from its edges; padding in rows 1 and 2
    float old[LB * LT], lp[LB * LT], ref[LB * LT], adv[LB * LT];
    float mask[LB * LT] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0};
    const float d[LB * LT] = {-0.6f, -0.1f, 0.05f, 0.4f, 0.9f, -0.35f, 0.15f, 0.31f, 0.7f, -0.8f,
                              0.52f, -0.44f, 0.2f, 0.3f, -0.2f};
    for (int i = 0; i < LB * LT; i++) {
        old[i] = -1.0f - 0.1f * (float)i;
        lp[i] = old[i] + d[i];
        ref[i] = old[i] + 0.3f * sinf((float)i);
        adv[i] = (i % 3 == 0 ? -1.0f : 1.0f) * (0.5f + 0.1f * (float)i);
    }
    const char *red_names[] = {"token_mean", "token_sum_const", "seq_mean"};
    for (int red = 0; red < 3; red++)
        for (int est = 0; est < 3; est++) {
            maye_ppo_params p = {.epsilon_low = 0.2, .epsilon_high = 0.28, .kl_loss_coeff = 0.3,
                                 .kl_estimator = (maye_kl_estimator)est, .reduction = (maye_loss_reduction)red,
                                 .reduction_const = 7};
            char what[64];
            snprintf(what, sizeof what, "%s, k%d", red_names[red], est + 1);
            check_gradient(what, &p, lp, old, ref, adv, mask);
        }
    // a KL loss beyond the clamp contributes no gradient
    float far_ref[LB * LT];
    for (int i = 0; i < LB * LT; i++) far_ref[i] = lp[i] + 4.0f;
    maye_ppo_params p = {.epsilon_low = 0.2, .epsilon_high = 0.2, .kl_loss_coeff = 1.0, .kl_estimator = MAYE_KL_K3};
    maye_ppo_stats st;
    float grad[LB * LT];
    loss_of(&p, lp, old, far_ref, adv, mask, grad, &st);
    close1("kl_loss clamped to 10", st.kl_loss, 10.0, 0);
    check_gradient("KL clamped", &p, lp, old, far_ref, adv, mask);
}

static void test_reductions(void) {
    float lp[4] = {0, 0, 0, 0}, old[4] = {0, 0, 0, 0}, adv[4] = {1, 2, 3, 0}, mask[4] = {1, 1, 1, 0};
    maye_ppo_params p = {.epsilon_low = 0.2, .epsilon_high = 0.2, .kl_estimator = MAYE_KL_K3};
    maye_ppo_stats st;
    float g[4];
    // B = 2, T = 2: rows {1, 2} and {3, pad}; token losses -A
    p.reduction = MAYE_RED_TOKEN_MEAN;
    EXPECT_OK(maye_ppo_loss(&p, 2, 2, lp, old, old, adv, mask, g, &st));
    close1("token_mean", st.policy_loss, -6.0 / (3 + 1e-8), 1e-9);
    p.reduction = MAYE_RED_SEQ_MEAN;
    EXPECT_OK(maye_ppo_loss(&p, 2, 2, lp, old, old, adv, mask, g, &st));
    close1("seq_mean", st.policy_loss, (-1.5 + -3.0) / 2, 1e-9);
    p.reduction = MAYE_RED_TOKEN_SUM_CONST, p.reduction_const = 10;
    EXPECT_OK(maye_ppo_loss(&p, 2, 2, lp, old, old, adv, mask, g, &st));
    close1("token_sum_const", st.policy_loss, -6.0 / (2 * 10), 1e-9);
    p.reduction_const = 0;
    EXPECT_FAIL(maye_ppo_loss(&p, 2, 2, lp, old, old, adv, mask, g, &st), "constant length is 0");
    // an all-padding batch is a zero loss, not a NaN
    float none[4] = {0, 0, 0, 0};
    p.reduction = MAYE_RED_TOKEN_MEAN;
    EXPECT_OK(maye_ppo_loss(&p, 2, 2, lp, old, old, adv, none, g, &st));
    EXPECT(st.loss == 0 && st.clipfrac == 0 && st.ratio_mean == 0, "empty batch: loss %g", st.loss);
}

static void test_config(void) {
    maye_config cfg;
    EXPECT_OK(maye_config_load(&cfg, NULL, 0, NULL));
    maye_ppo_params p;
    EXPECT_OK(maye_ppo_params_from_config(&p, &cfg));
    EXPECT(p.kl_estimator == MAYE_KL_K3 && p.reduction == MAYE_RED_TOKEN_MEAN, "defaults");
    close1("reduction_const defaults to rollout.max_tokens", p.reduction_const, (double)cfg.rollout.max_tokens, 0);
    maye_adv_params a;
    EXPECT_OK(maye_adv_params_from_config(&a, &cfg));
    EXPECT(a.kind == MAYE_ADV_REINFORCE_PP && a.shift_mean, "advantage defaults");
    maye_config_free(&cfg);
    char *bad[] = {"update.epsilon_low=1.5"};
    EXPECT_OK(maye_config_load(&cfg, NULL, 1, bad));
    EXPECT_FAIL(maye_ppo_params_from_config(&p, &cfg), "update.epsilon_low is 1.5");
    maye_config_free(&cfg);
}

int main(void) {
    test_kl();
    test_rewards_returns();
    test_advantages();
    test_loss_values();
    test_loss_gradients();
    test_reductions();
    test_config();
    return TEST_RESULT();
}
