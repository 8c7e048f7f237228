// Weight sync (DESIGN.md): policy versions travel from maye-update to the stages that sample or score
// with the policy. Version 0 is the loaded checkpoint; after each generation step's update maye-update
// writes the trainable tensors of version N to RUN_DIR/weights/policy-vNNNNNN.safetensors (atomically) and
// publishes a `file` WeightSync handle for it. A stage switches to a newer version before processing records
// that ask for it. Handles arrive either over a WeightSync record stream (the orchestrator forwards them
// through a FIFO) or, in a plain shell pipeline, by finding the files in the run directory.
#pragma once
#include "io/records.h"
#include "model/model.h"

#include <stdint.h>

// RUN_DIR/weights/policy-vNNNNNN.safetensors (caller frees).
char *maye_weight_file(const char *run_dir, int64_t version);

typedef struct {
    char *run_dir;
    maye_reader *handles; // WeightSync stream, or NULL: watch the run directory
    int64_t version;      // version the model holds
    int64_t seen;         // newest version a handle announced (stream mode)
    char *seen_path;      // its file
} maye_weight_source;

// `sync_path` names a WeightSync stream (a FIFO or file; NULL or "" = watch run_dir/weights/). The model
// starts at `version` (0 for a checkpoint, the checkpoint's version when resuming).
int maye_weight_source_open(maye_weight_source *ws, const char *run_dir, const char *sync_path, int64_t version);
void maye_weight_source_close(maye_weight_source *ws);
// Makes m hold a version in [want - max_staleness, want], the newest available: it waits (logging every
// 30 s what it waits for) while the newest available version is older than want - max_staleness. A version
// newer than `want` is never loaded. Fails if the model already holds a version newer than `want` (records
// out of order), if a handle names a missing file, or if the handle stream ends before the version arrives.
int maye_weight_source_sync(maye_weight_source *ws, maye_model *m, int64_t want, int64_t max_staleness);

// Publishing (maye-update): writes the trainable groups of m as version `version` and, when `out` is not
// NULL, a WeightSync handle to it (flushed). With keep > 0 only the files of the `keep` versions before this
// one are kept; older ones are deleted.
// Versions that are multiples of keep_every (> 0) are never deleted here: they are evaluation points,
// removed by whoever evaluates them.
int maye_weight_publish(const maye_model *m, const char *run_dir, int64_t version, int64_t step, unsigned groups,
                        maye_writer *out, int keep, int64_t keep_every);
