// The run directory (docs/run-dir.md) and the pieces of the orchestrator shared by `maye train`,
// `maye sft` and `maye eval`: run.json, the effective config.yaml, metrics lines, evaluation pipelines.
#pragma once
#include "core/config.h"
#include "procs.h"
#include "schemas/maye.pb-c.h"

#include <stdint.h>

// ----------------------------------------------------------------------------
// run directory

typedef struct {
    char *dir;         // RUN (one seed)
    char *config_path; // RUN/config.yaml (what every stage reads)
    char *kind;        // "rl" | "sft" | "eval"
    int64_t seed;
} maye_run;

// Creates RUN, RUN/logs, RUN/metrics, RUN/eval and writes config.yaml (cfg with run_dir and seed as given)
// and run.json (status "running"). Fails, touching nothing, when RUN holds a run of another kind (an eval
// pointed at a training run's directory).
int maye_run_create(maye_run *run, const char *dir, const char *kind, maye_config *cfg);
// Sets run.json's status ("done", "failed", "stopped").
int maye_run_set_status(const maye_run *run, const char *status);
void maye_run_free(maye_run *run);
// Appends one line of JSON text (and a newline) to RUN/<rel>, flushed to disk.
int maye_run_append_line(const maye_run *run, const char *rel, const char *line);
// RUN/logs/<name>.log (caller frees).
char *maye_run_log(const maye_run *run, const char *name);

// ----------------------------------------------------------------------------
// evaluation (MAYE section 4): validation and test sets under three generation settings

typedef struct {
    const char *name;  // "pass@8_t1.0"
    int n;             // responses per question
    double temperature, top_p;
} maye_eval_setting;

extern const maye_eval_setting maye_eval_settings[3];

typedef struct {
    double accuracy;         // pass@n: share of questions with a correct response among n
    int64_t n_questions, n_responses;
    double response_length;  // mean tokens
} maye_eval_result;

// Runs maye-batch --split <split> | maye-rollout | maye-traj --no-logprobs for policy `version` (its weights
// in RUN/weights, or the checkpoint itself for version 0) and writes every response to
// RUN/eval/epoch-EEEE/<split>-<setting>.jsonl and one line to RUN/metrics/eval.jsonl.
int maye_eval_run(const maye_run *run, const char *bin_dir, const char *split, const maye_eval_setting *s,
                  int64_t epoch, int64_t step, int64_t version, maye_eval_result *out);
// Every configured split (data.validation, data.test) under every setting; prints one summary line each.
int maye_eval_all(const maye_run *run, const maye_config *cfg, const char *bin_dir, int64_t epoch, int64_t step,
                  int64_t version);
