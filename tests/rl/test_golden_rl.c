// Golden test of the RL math against MAYE's formulas run by PyTorch: for every model folder under
// $MAYE_FIXTURES/golden whose manifest.json has an "rl" section, recompute from rl.old_logprobs,
// rl.ref_logprobs, rl.scores, rl.mask and rl.policy_logprobs (with the coefficients of manifest["rl"]) the
// token KL, the total reward, the returns, the advantages and the loss terms, and compare within 1e-5.
// Shapes come from the tensors: B sequences x T response tokens.
#include "core/util.h"
#include "io/safetensors.h"
#include "rl/ppo.h"
#include "support/golden.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-5

// A tensor of expected.safetensors as floats (caller frees); checks the shape when `shape` is given.
static float *load(const maye_safetensors *st, const char *name, int ndim, const int64_t *shape, int64_t *numel) {
    const maye_st_tensor *t;
    if (maye_st_expect(st, name, ndim, shape, &t) < 0) {
        fprintf(stderr, "FAIL: %s\n", maye_errmsg());
        test_failures++;
        return NULL;
    }
    float *x = xmalloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
    maye_st_to_f32(t, x);
    if (numel) *numel = t->numel;
    return x;
}

static void compare_scalar(const char *what, double got, const float *want) {
    float g = (float)got;
    test_close_f32(what, &g, want, 1, TOL, 0);
}

// Returns 1 if the folder had an rl section (and was checked), 0 otherwise.
static int check_folder(const char *dir, const char *name) {
    char *mpath = maye_path_join(dir, "manifest.json");
    maye_buf text = {0};
    int had = 0;
    if (maye_read_file(mpath, &text) < 0) goto done;
    cJSON *manifest = cJSON_Parse(text.data);
    const cJSON *rl = cJSON_GetObjectItemCaseSensitive(manifest, "rl");
    if (!cJSON_IsObject(rl)) {
        cJSON_Delete(manifest);
        goto done;
    }
    had = 1;
    fprintf(stderr, "%s: checking the rl section\n", name);
    double kl_reward_coeff = 0, gamma = 0, eps_low = 0, eps_high = 0, kl_loss_coeff = 0;
    int bad = test_rl_number(rl, "kl_reward_coeff", &kl_reward_coeff, name) |
              test_rl_number(rl, "gamma", &gamma, name) | test_rl_number(rl, "epsilon_low", &eps_low, name) |
              test_rl_number(rl, "epsilon_high", &eps_high, name) |
              test_rl_number(rl, "kl_loss_coeff", &kl_loss_coeff, name);
    // the reduction and the whitening are described in words; MAYE's are the defaults
    const cJSON *red = cJSON_GetObjectItemCaseSensitive(rl, "loss_reduction");
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(rl, "source");
    maye_loss_reduction reduction = MAYE_RED_TOKEN_MEAN;
    if (cJSON_IsString(red) && !strstr(red->valuestring, "masked mean over all response tokens")) {
        fprintf(stderr, "FAIL: %s: unknown rl.loss_reduction '%s'\n", name, red->valuestring);
        test_failures++, bad = -1;
    }
    bool shift_mean = !(cJSON_IsString(src) && strstr(src->valuestring, "shift_mean=False"));
    cJSON_Delete(manifest);
    if (bad) goto done;

    char *epath = maye_path_join(dir, "expected.safetensors");
    maye_safetensors st;
    if (maye_st_open(&st, epath) < 0) {
        fprintf(stderr, "FAIL: %s: %s\n", name, maye_errmsg());
        test_failures++;
        free(epath);
        goto done;
    }
    const maye_st_tensor *ot = maye_st_find(&st, "rl.old_logprobs");
    if (!ot || ot->ndim != 2) {
        fprintf(stderr, "FAIL: %s: rl.old_logprobs is missing or not [B, T]\n", name);
        test_failures++;
    } else {
        int64_t B = ot->shape[0], T = ot->shape[1], bt[2] = {B, T}, b1[1] = {B}, one[1] = {1};
        float *old = load(&st, "rl.old_logprobs", 2, bt, NULL), *ref = load(&st, "rl.ref_logprobs", 2, bt, NULL);
        float *pol = load(&st, "rl.policy_logprobs", 2, bt, NULL), *scores = load(&st, "rl.scores", 1, b1, NULL);
        float *mask = load(&st, "rl.mask", 2, bt, NULL);
        float *w_kl = load(&st, "rl.kl", 2, bt, NULL), *w_tr = load(&st, "rl.total_reward", 2, bt, NULL);
        float *w_ret = load(&st, "rl.returns", 2, bt, NULL), *w_adv = load(&st, "rl.advantages", 2, bt, NULL);
        float *w_loss = load(&st, "rl.loss", 1, one, NULL), *w_pl = load(&st, "rl.policy_loss", 1, one, NULL);
        float *w_kll = load(&st, "rl.kl_loss", 1, one, NULL), *w_cf = load(&st, "rl.clipfrac", 1, one, NULL);
        if (old && ref && pol && scores && mask && w_kl && w_tr && w_ret && w_adv && w_loss && w_pl && w_kll && w_cf) {
            size_t n = (size_t)(B * T);
            float *kl = xmalloc(sizeof(float) * n), *tr = xmalloc(sizeof(float) * n);
            float *ret = xmalloc(sizeof(float) * n), *adv = xmalloc(sizeof(float) * n);
            float *grad = xmalloc(sizeof(float) * n);
            char what[256];
            maye_rl_token_rewards(B, T, old, ref, mask, scores, kl_reward_coeff, MAYE_KL_K3, kl, tr);
            snprintf(what, sizeof what, "%s rl.kl", name), test_close_f32(what, kl, w_kl, B * T, TOL, 0);
            snprintf(what, sizeof what, "%s rl.total_reward", name), test_close_f32(what, tr, w_tr, B * T, TOL, 0);
            maye_adv_params ap = {.kind = MAYE_ADV_REINFORCE_PP, .gamma = gamma, .shift_mean = shift_mean};
            EXPECT_OK(maye_rl_advantages(&ap, B, T, tr, mask, NULL, ret, adv));
            snprintf(what, sizeof what, "%s rl.returns", name), test_close_f32(what, ret, w_ret, B * T, TOL, 0);
            snprintf(what, sizeof what, "%s rl.advantages", name), test_close_f32(what, adv, w_adv, B * T, TOL, 0);
            maye_ppo_params pp = {.epsilon_low = eps_low, .epsilon_high = eps_high, .kl_loss_coeff = kl_loss_coeff,
                                  .kl_estimator = MAYE_KL_K3, .reduction = reduction};
            maye_ppo_stats s;
            EXPECT_OK(maye_ppo_loss(&pp, B, T, pol, old, ref, adv, mask, grad, &s));
            snprintf(what, sizeof what, "%s rl.loss", name), compare_scalar(what, s.loss, w_loss);
            snprintf(what, sizeof what, "%s rl.policy_loss", name), compare_scalar(what, s.policy_loss, w_pl);
            snprintf(what, sizeof what, "%s rl.kl_loss", name), compare_scalar(what, s.kl_loss, w_kll);
            snprintf(what, sizeof what, "%s rl.clipfrac", name), compare_scalar(what, s.clipfrac, w_cf);
            double maxd = 0;
            for (size_t i = 0; i < n; i++) maxd = fmax(maxd, fmax(fabs(kl[i] - w_kl[i]), fabs(adv[i] - w_adv[i])));
            fprintf(stderr, "%s: B=%lld T=%lld loss %.9g (want %.9g) clipfrac %.6g; max |diff| kl/adv %.3g, "
                    "loss %.3g\n", name, (long long)B, (long long)T, s.loss, w_loss[0], s.clipfrac, maxd,
                    fabs(s.loss - w_loss[0]));
            free(kl), free(tr), free(ret), free(adv), free(grad);
        }
        free(old), free(ref), free(pol), free(scores), free(mask), free(w_kl), free(w_tr), free(w_ret), free(w_adv);
        free(w_loss), free(w_pl), free(w_kll), free(w_cf);
    }
    maye_st_close(&st);
    free(epath);
done:
    maye_buf_free(&text);
    free(mpath);
    return had;
}

int main(void) { return test_golden_main(check_folder, "no fixture folder with an rl section"); }
