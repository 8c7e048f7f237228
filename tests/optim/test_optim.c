// The optimizer pieces on small hand-made cases: LR schedules at key steps (warmup, fractional warmup,
// cosine midpoint and end, constant), AdamW against a plain double-precision reference over several
// steps (frozen tensors untouched), gradient clipping like clip_grad_norm_, and a save/load of the state
// in the middle of a run that continues bit-identically.
#include "core/util.h"
#include "optim/adamw.h"
#include "optim/schedule.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void close1(const char *what, double got, double want, double tol) {
    EXPECT(fabs(got - want) <= tol, "%s: got %.15g want %.15g", what, got, want);
}

static void test_schedules(void) {
    maye_lr_schedule s;
    EXPECT_OK(maye_lr_schedule_init(&s, "cosine", 2.0, 10, 0.5, 110, "update"));
    close1("cosine step 0 (warmup starts at 0)", maye_lr_at(&s, 0), 0, 0);
    close1("cosine step 5", maye_lr_at(&s, 5), 1.0, 1e-15);
    close1("cosine end of warmup", maye_lr_at(&s, 10), 2.0, 1e-15);
    close1("cosine midpoint", maye_lr_at(&s, 60), 1.0, 1e-12);
    close1("cosine quarter", maye_lr_at(&s, 35), 2.0 * 0.5 * (1 + cos(M_PI * 0.25)), 1e-12);
    close1("cosine last step", maye_lr_at(&s, 110), 0.0, 1e-12);
    // warmup from the ratio, fractional as in MAYE (0.1 x 75 = 7.5 steps)
    EXPECT_OK(maye_lr_schedule_init(&s, "cosine", 1.0, 0, 0.1, 75, "update"));
    close1("fractional warmup W", s.warmup_steps, 7.5, 1e-15);
    close1("fractional warmup step 7", maye_lr_at(&s, 7), 7 / 7.5, 1e-15);
    close1("fractional warmup step 8", maye_lr_at(&s, 8), 0.5 * (1 + cos(M_PI * 0.5 / 67.5)), 1e-15);
    EXPECT_OK(maye_lr_schedule_init(&s, "cosine", 1.0, 0, 0.0, 4, "update"));
    close1("no warmup step 0", maye_lr_at(&s, 0), 1.0, 0);
    close1("no warmup step 2", maye_lr_at(&s, 2), 0.5, 1e-15);
    EXPECT_OK(maye_lr_schedule_init(&s, "constant", 3e-6, 5, 0.1, 100, "update"));
    close1("constant step 0", maye_lr_at(&s, 0), 3e-6, 0);
    close1("constant step 99", maye_lr_at(&s, 99), 3e-6, 0);
    EXPECT_FAIL(maye_lr_schedule_init(&s, "linear", 1, 0, 0, 10, "update"),
                "update.lr_schedule: unknown value 'linear'");
    EXPECT_FAIL(maye_lr_schedule_init(&s, "cosine", 1, 0, 1.5, 10, "update"), "update.warmup_ratio is 1.5");
}

// ----------------------------------------------------------------------------
// a tiny "model": tensors a (trainable, 5), b (frozen, 3), c (trainable, 4); grads packed (a then c)

enum { NP = 12, NG = 9 };
static const maye_optim_tensor table[] = {
    {"a", 0, 0, 5, true},
    {"b", 5, 0, 3, false},
    {"c", 8, 5, 4, true},
};

static void grads_at(int step, float *g) {
    for (int i = 0; i < NG; i++) g[i] = (float)(0.3 * sin(1.7 * i + 0.9 * step) + 0.05 * (i - 4));
}

static void init_params(float *p) {
    for (int i = 0; i < NP; i++) p[i] = (float)(0.1 * i - 0.4);
}

static void test_adamw_reference(void) {
    maye_adamw_hparams hp = {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-5, .weight_decay = 0.1};
    maye_adamw opt;
    EXPECT_OK(maye_adamw_init(&opt, &hp, 3, table));
    EXPECT(opt.nstate == 9, "state size %lld", (long long)opt.nstate);
    float p[NP], g[NG];
    init_params(p);
    double rp[NP], rm[NP] = {0}, rv[NP] = {0};
    for (int i = 0; i < NP; i++) rp[i] = p[i];
    for (int step = 1; step <= 4; step++) {
        double lr = 1e-2 * step;
        grads_at(step, g);
        maye_adamw_step(&opt, p, g, lr);
        for (int k = 0; k < 3; k++) {
            if (!table[k].trainable) continue;
            for (int64_t i = 0; i < table[k].numel; i++) {
                int64_t pi = table[k].offset + i;
                double gi = g[table[k].grad_offset + i];
                rp[pi] *= 1 - lr * hp.weight_decay;
                rm[pi] = hp.beta1 * rm[pi] + (1 - hp.beta1) * gi;
                rv[pi] = hp.beta2 * rv[pi] + (1 - hp.beta2) * gi * gi;
                double denom = sqrt(rv[pi]) / sqrt(1 - pow(hp.beta2, step)) + hp.eps;
                rp[pi] -= lr / (1 - pow(hp.beta1, step)) * rm[pi] / denom;
            }
        }
    }
    float want[NP];
    for (int i = 0; i < NP; i++) want[i] = (float)rp[i];
    test_close_f32("AdamW after 4 steps vs double reference", p, want, NP, 1e-6, 0);
    float p0[NP];
    init_params(p0);
    EXPECT(!memcmp(p + 5, p0 + 5, 3 * sizeof(float)), "the frozen tensor changed");
    EXPECT(opt.step == 4, "step %lld", (long long)opt.step);
    maye_adamw_free(&opt);
    maye_optim_tensor dup[2] = {{"x", 0, 0, 1, true}, {"x", 1, 1, 1, true}};
    EXPECT_FAIL(maye_adamw_init(&opt, &hp, 2, dup), "'x' is listed twice");
}

static void test_clip(void) {
    // trainable grads a = [3, 0, 0, 0, 0], c = [0, 4, 0, 0]; the frozen slot is not in the grads array
    float g[NG] = {3, 0, 0, 0, 0, 0, 4, 0, 0};
    close1("global norm", maye_grad_norm(3, table, g), 5.0, 1e-12);
    double norm = maye_grad_clip(3, table, g, 10.0);
    close1("norm before clip", norm, 5.0, 1e-12);
    EXPECT(g[0] == 3 && g[6] == 4, "a larger max_norm leaves the gradients as they are");
    norm = maye_grad_clip(3, table, g, 1.0);
    float coef = 1.0f / (5.0f + 1e-6f);
    float want[NG] = {3 * coef, 0, 0, 0, 0, 0, 4 * coef, 0, 0};
    test_close_f32("clipped gradients", g, want, NG, 0, 0);
    close1("norm after clip", maye_grad_norm(3, table, g), 1.0, 1e-6);
    float inf[NG] = {INFINITY, 1, 1, 1, 1, 1, 1, 1, 1};
    EXPECT(!isfinite(maye_grad_clip(3, table, inf, 1.0)) && inf[1] == 1, "a non-finite norm leaves the grads");
}

static void run_steps(maye_adamw *opt, float *p, const maye_lr_schedule *s, int from, int to) {
    float g[NG];
    for (int step = from; step < to; step++) {
        grads_at(step, g);
        maye_grad_clip(3, table, g, 0.5);
        maye_adamw_step(opt, p, g, maye_lr_at(s, step));
    }
}

static void test_save_load(void) {
    maye_adamw_hparams hp = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01};
    maye_lr_schedule s;
    EXPECT_OK(maye_lr_schedule_init(&s, "cosine", 1e-2, 2, 0, 6, "update"));
    maye_adamw full, first, resumed;
    float p_full[NP], p[NP];
    init_params(p_full), init_params(p);
    EXPECT_OK(maye_adamw_init(&full, &hp, 3, table));
    run_steps(&full, p_full, &s, 0, 6);

    EXPECT_OK(maye_adamw_init(&first, &hp, 3, table));
    run_steps(&first, p, &s, 0, 3);
    char *path = maye_path_join(test_tmpdir(), "adamw.safetensors");
    EXPECT_OK(maye_adamw_save(&first, path));
    maye_adamw_free(&first);
    EXPECT_OK(maye_adamw_init(&resumed, &hp, 3, table));
    EXPECT_OK(maye_adamw_load(&resumed, path));
    EXPECT(resumed.step == 3, "resumed step %lld", (long long)resumed.step);
    run_steps(&resumed, p, &s, (int)resumed.step, 6);
    EXPECT(!memcmp(p, p_full, sizeof p), "save/load in the middle of a run is not bit-identical");
    EXPECT(!memcmp(resumed.m, full.m, sizeof(float) * 2 * (size_t)full.nstate), "m/v differ after resume");

    // a run that trains other tensors cannot load this state
    maye_optim_tensor other[3];
    memcpy(other, table, sizeof other);
    other[1].trainable = true, other[1].grad_offset = 9;
    maye_adamw wrong;
    EXPECT_OK(maye_adamw_init(&wrong, &hp, 3, other));
    EXPECT_FAIL(maye_adamw_load(&wrong, path), "has no tensor 'm.b'");
    EXPECT(wrong.step == 0, "a failed load resets the step");
    maye_adamw_free(&wrong);
    other[1].trainable = false, other[2].trainable = false;
    EXPECT_OK(maye_adamw_init(&wrong, &hp, 3, other));
    EXPECT_FAIL(maye_adamw_load(&wrong, path), "holds 5 tensors but this run trains tensors with 3");
    maye_adamw_free(&wrong);
    char *missing = maye_path_join(test_tmpdir(), "none.safetensors");
    EXPECT_OK(maye_adamw_init(&wrong, &hp, 3, table));
    EXPECT_FAIL(maye_adamw_load(&wrong, missing), "none.safetensors");
    maye_adamw_free(&wrong);
    free(missing), free(path);
    maye_adamw_free(&full), maye_adamw_free(&resumed);
}

int main(void) {
    test_schedules();
    test_adamw_reference();
    test_clip();
    test_save_load();
    return TEST_RESULT();
}
