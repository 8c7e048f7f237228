// Learning-rate schedules (see schedule.h).
#include "optim/schedule.h"

#include "core/error.h"

#include <math.h>
#include <string.h>

int maye_lr_schedule_init(maye_lr_schedule *s, const char *kind, double lr, int64_t warmup_steps, double warmup_ratio,
                          int64_t total_steps, const char *key_prefix) {
    memset(s, 0, sizeof *s);
    if (kind && !strcmp(kind, "constant")) s->kind = MAYE_LR_CONSTANT;
    else if (kind && !strcmp(kind, "cosine")) s->kind = MAYE_LR_COSINE;
    else return maye_fail("%s.lr_schedule: unknown value '%s' (expected constant or cosine)", key_prefix,
                          kind ? kind : "");
    CHECK_OR_FAIL(lr >= 0 && isfinite(lr), "%s.lr is %g: it must be a finite number >= 0", key_prefix, lr);
    CHECK_OR_FAIL(warmup_steps >= 0, "%s.warmup_steps is %lld: it must be >= 0", key_prefix, (long long)warmup_steps);
    CHECK_OR_FAIL(warmup_ratio >= 0 && warmup_ratio <= 1, "%s.warmup_ratio is %g: it must be in [0, 1]", key_prefix,
                  warmup_ratio);
    CHECK_OR_FAIL(total_steps >= 0, "the schedule's total number of steps is %lld: it must be >= 0",
                  (long long)total_steps);
    s->lr = lr;
    s->total_steps = total_steps;
    s->warmup_steps = warmup_steps > 0 ? (double)warmup_steps : warmup_ratio * (double)total_steps;
    s->num_cycles = 0.5;
    return 0;
}

int maye_lr_schedule_from_config(maye_lr_schedule *s, const maye_config *cfg, int64_t total_steps) {
    return maye_lr_schedule_init(s, cfg->update.lr_schedule, cfg->update.lr, cfg->update.warmup_steps,
                                 cfg->update.warmup_ratio, total_steps, "update");
}

double maye_lr_at(const maye_lr_schedule *s, int64_t step) {
    if (s->kind == MAYE_LR_CONSTANT) return s->lr;
    double x = (double)step, w = s->warmup_steps;
    if (x < w) return s->lr * x / fmax(1.0, w);
    double progress = (x - w) / fmax(1.0, (double)s->total_steps - w);
    return s->lr * fmax(0.0, 0.5 * (1.0 + cos(M_PI * s->num_cycles * 2.0 * progress)));
}
