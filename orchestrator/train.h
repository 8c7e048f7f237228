// `maye train` and `maye sft`: one run (one seed) of the pipeline
//   RL:  maye-batch | maye-rollout | maye-traj | maye-update
//   SFT: maye-batch | maye-update --sft
// with the orchestrator between maye-update and the policy users: it reads the Metrics records (metrics/
// train.jsonl, one progress line per generation step) and the WeightSync handles, and forwards each handle
// to maye-rollout and maye-traj after running the evaluations due at that version (before training: the
// vanilla point; after every train.eval_every_epochs epochs and at the end).
#pragma once
#include "core/config.h"
#include "run.h"

typedef struct {
    int sft;             // SFT instead of RL
    int eval;            // run the evaluations
    const char *resume;  // an existing run directory to continue, or NULL
    const char *bin_dir; // the stage executables
} maye_train_opts;

// Runs (or resumes) one seed in run_dir. Returns 0 when the run completed, -1 on failure (message set),
// 1 when it was stopped by a signal (resumable).
int maye_train_run(maye_config *cfg, const char *run_dir, const maye_train_opts *o);
// Parses the common command line of `maye train` / `maye sft` and runs every seed.
int maye_train_main(int argc, char **argv, int sft);
