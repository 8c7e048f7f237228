// Learning-rate schedules: constant, and linear warmup + cosine decay exactly as MAYE's
// get_cosine_schedule_with_warmup (maye/training/lr_schedulers.py, a torch LambdaLR): for the optimizer
// step with 0-based index s,
//   s < W:  lr * s / max(1, W)
//   else:   lr * max(0, 0.5 * (1 + cos(pi * num_cycles * 2 * (s - W) / max(1, S - W))))
// with W warmup steps (possibly fractional: MAYE passes 0.1 x S) and S total steps. The first step of a
// warmup therefore runs with lr 0, as in MAYE. The constant schedule ignores warmup.
#pragma once
#include "core/config.h"

#include <stdint.h>

typedef enum { MAYE_LR_CONSTANT, MAYE_LR_COSINE } maye_lr_kind;

typedef struct {
    maye_lr_kind kind;
    double lr;           // peak learning rate
    double warmup_steps; // W
    int64_t total_steps; // S
    double num_cycles;   // 0.5: half a cosine period, from lr down to 0
} maye_lr_schedule;

// `kind` is "constant" or "cosine"; warmup_steps > 0 wins over warmup_ratio (W = ratio x S otherwise).
// Fails (naming `key_prefix`.lr_schedule etc.) on bad values.
int maye_lr_schedule_init(maye_lr_schedule *s, const char *kind, double lr, int64_t warmup_steps, double warmup_ratio,
                          int64_t total_steps, const char *key_prefix);
// From update.lr_schedule / lr / warmup_steps / warmup_ratio and the run's number of optimizer steps.
int maye_lr_schedule_from_config(maye_lr_schedule *s, const maye_config *cfg, int64_t total_steps);
// The learning rate of the optimizer step with 0-based index `step`.
double maye_lr_at(const maye_lr_schedule *s, int64_t step);
