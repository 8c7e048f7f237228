// maye report: the data model shared by the parts of the report. report_runs.c loads run directories
// (docs/run-dir.md) into report_run values; report_figures.c aggregates them across runs into mean/std
// series, writes gnuplot data files and scripts and runs gnuplot; report_pages.c computes the accuracy
// table and writes report.md and index.html.
//
// Dimension letters: E evaluated epochs of one run (0 = before training), S steps of one run,
// P points of a series, W reflection words (MAYE_REFLECTION_NWORDS).
#pragma once
#include "core/util.h"
#include "rl/reward.h"

#include <stdint.h>

// ----------------------------------------------------------------------------
// the MAYE evaluation scheme

enum { REPORT_NSPLITS = 2, REPORT_NSETTINGS = 3, REPORT_NRATIOS = 5 };
extern const char *const report_splits[REPORT_NSPLITS];     // "validation", "test"
extern const char *const report_settings[REPORT_NSETTINGS]; // "pass@8_t1.0", "pass@1_t0.6", "pass@1_t0.01"
extern const char *const report_ratio_keys[REPORT_NRATIOS]; // the reflection ratios of train.jsonl

// ----------------------------------------------------------------------------
// runs

typedef enum { REPORT_RL = 0, REPORT_SFT = 1, REPORT_EVAL = 2 } report_kind;
enum { REPORT_NKINDS = 3 };
extern const char *const report_kind_names[REPORT_NKINDS]; // "rl", "sft", "eval"

// One generation step of metrics/train.jsonl (RL fields or the SFT loss, by the run's kind).
typedef struct {
    int64_t step;
    int64_t epoch; // 0-based training epoch the step belongs to
    double accuracy, response_length;
    double ratios[REPORT_NRATIOS];
    double words[MAYE_REFLECTION_NWORDS]; // (W) counts of each reflection word
    double loss;
} report_step;

typedef struct {
    char *dir; // as found: the argument, or argument/seed-N
    report_kind kind;
    int64_t seed;
    char *config_digest;
    char *created; // "" when run.json has none
    char *status;  // "running", "done" or "failed"
    report_step *steps; // (S) sorted by step, one entry per step (the last line wins)
    int64_t n_steps;
    double *eval[REPORT_NSPLITS][REPORT_NSETTINGS]; // (E) accuracy after e epochs, NaN when not evaluated
    int64_t n_epochs_eval;                          // E = 1 + the largest evaluated epoch (0 when none)
    int64_t n_eval_lines;                           // lines of metrics/eval.jsonl used
    int missing_metrics;                            // a running run without train.jsonl/eval.jsonl yet
    int dropped_partial_line;                       // a running run's unfinished last line was ignored
} report_run;

typedef struct {
    report_run *runs; // in the order given; the seeds of a parent directory by seed number
    int n;
} report_set;

// Loads the runs of `dir` (a run directory or a parent of seed-N/ directories) and appends them to `set`.
// `as_sft` marks runs given with --sft: their run.json must say kind "sft".
int report_load(report_set *set, const char *dir, int as_sft);
void report_set_free(report_set *set);
// Number of runs of a kind.
int report_count(const report_set *set, report_kind kind);

// ----------------------------------------------------------------------------
// series across runs

typedef struct {
    double x, mean, std; // std over runs (population, ddof 0)
    int n;               // runs that have a value at x
} report_point;

typedef struct {
    report_point *p; // (P) sorted by x
    int64_t n;
} report_series;

void report_series_free(report_series *s);

// ----------------------------------------------------------------------------
// the accuracy table (fractions in [0, 1]; NaN where nothing was measured)

typedef struct {
    double vanilla[REPORT_NSPLITS][REPORT_NSETTINGS];               // mean over runs of epoch 0
    double max[2][REPORT_NSPLITS][REPORT_NSETTINGS];                // [RL or SFT] mean over runs of max_e>=1
    double mean[2][REPORT_NSPLITS][REPORT_NSETTINGS];               // [RL or SFT] mean over runs of mean_e>=1
    int n_vanilla;                                                  // runs with any epoch-0 evaluation
    int n_trained[2];                                               // runs with any evaluation after epoch 0
} report_table;

void report_table_compute(const report_set *set, report_table *t);

// ----------------------------------------------------------------------------
// figures

enum { REPORT_MAX_LINES = 16 };

typedef struct {
    char label[64];     // legend entry
    const char *colour; // "#rrggbb"
    report_series s;
    int band;           // draw the +-1 std band
    int dashed;
} report_line;

typedef struct {
    char name[64];   // file stem: figures/<name>.png|svg, data/<name>.dat|gp
    char title[160];
    const char *xlabel, *ylabel;
    int x_is_epoch; // integer tics when there are few epochs
    report_line lines[REPORT_MAX_LINES];
    int n_lines;
} report_figure;

typedef struct {
    report_figure *f;
    int n;
} report_figures;

// Builds every figure the runs have data for (see docs/run-dir.md, "maye report").
void report_figures_build(const report_set *set, report_figures *figs);
void report_figures_free(report_figures *figs);
// Writes OUT/data/<name>.dat and OUT/data/<name>.gp for every figure.
int report_figures_write(const report_figures *figs, const char *out);
// Runs `gnuplot` (a program name looked up in PATH, or a path) on every script, in OUT/data, producing
// OUT/figures/<name>.png and .svg. Fails with a message that says what to do when gnuplot is missing.
int report_figures_draw(const report_figures *figs, const char *out, const char *gnuplot);

// ----------------------------------------------------------------------------
// pages

// Writes OUT/report.md and OUT/index.html; `md` receives the Markdown (printed by the command).
// `figures_note` is NULL when the figures were drawn, otherwise why they were not (shown on both pages).
int report_pages_write(const report_set *set, const report_table *t, const report_figures *figs,
                       const char *figures_note, const char *out, maye_buf *md);
