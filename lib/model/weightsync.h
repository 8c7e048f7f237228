// Weight sync (DESIGN.md): policy versions travel from maye-update to the stages that sample or score
// with the policy. Version 0 is the loaded checkpoint; after each generation step's update maye-update
// writes the trainable tensors of version N to RUN_DIR/weights/policy-vNNNNNN.safetensors (atomically) and
// publishes a `file` WeightSync handle for it. A stage switches to a newer version before processing records
// that ask for it. Handles arrive either over a WeightSync record stream (the orchestrator forwards them
// through a FIFO) or, in a plain shell pipeline, by finding the files in the run directory.
//
// update.weight_sync=cuda_ipc (model.device=cuda, every stage on one GPU): maye-update still writes the file of
// every version (evaluation, `maye eval` and shell pipelines read them), but the handles it publishes are
// CUDA_IPC handles to a ring of exported device buffers holding the trained groups in the model dtype (plus,
// in bf16, their norms in fp32); a stage with a device model copies them device to device (backend/backend.h, maye_device_import) and never reads
// the file. Its CPU model's trained groups are then stale: they are filled with NaN, so anything that would
// compute with them on the host gives NaN (which maye-update refuses, naming the sample) instead of quietly
// using an old policy.
#pragma once
#include "core/config.h"
#include "io/records.h"
#include "model/model.h"

#include <stdbool.h>
#include <stdint.h>

// The device mirror of a model (backend/backend.h).
typedef struct maye_device_model maye_device_model;

#define MAYE_IPC_HANDLE_BYTES 64 // sizeof(cudaIpcMemHandle_t)

// An exported device buffer holding the weights of some parameter groups: the device model's own layout of
// those groups (their element ranges in group order, alignment padding included) in the model's dtype,
// followed in bf16 mode by the groups' fp32 norm weights and biases (cuda_model_norms).
typedef struct {
    uint8_t handle[MAYE_IPC_HANDLE_BYTES]; // cudaIpcMemHandle_t of the buffer
    int64_t bytes;                         // of the weights in it
    uint64_t digest;                       // checksum of those bytes (the same function on both sides)
} maye_ipc_weights;

// Checks update.weight_sync against the backend: cuda_ipc needs model.device=cuda and a CUDA build (the
// message says what to set instead).
int maye_weight_sync_check(const maye_config *cfg);
// Whether cfg asks for weight sync over CUDA IPC.
bool maye_weight_sync_ipc(const maye_config *cfg);

// RUN_DIR/weights/policy-vNNNNNN.safetensors (caller frees).
char *maye_weight_file(const char *run_dir, int64_t version);

typedef struct {
    char *run_dir;
    maye_reader *handles; // WeightSync stream, or NULL: watch the run directory
    int64_t version;      // version the model holds
    int64_t seen;         // newest version a handle announced (stream mode)
    char *seen_path;      // its file (FILE handles)
    bool seen_ipc;        // it is a CUDA_IPC handle, to seen_buf
    maye_ipc_weights seen_buf;
    maye_device_model *dev; // the model's device mirror (maye_weight_source_use_device), or NULL
    unsigned dev_groups;  // the groups a version changes (the trained ones)
    bool cpu_stale;       // the CPU model's trained groups were NaN-filled: the device holds the policy
} maye_weight_source;

// `sync_path` names a WeightSync stream (a FIFO or file; NULL or "" = watch run_dir/weights/). The model
// starts at `version` (0 for a checkpoint, the checkpoint's version when resuming).
int maye_weight_source_open(maye_weight_source *ws, const char *run_dir, const char *sync_path, int64_t version);
void maye_weight_source_close(maye_weight_source *ws);
// The model synced has a device mirror dev (maye_device_open; NULL: none): from now on a version from a file
// is laid over the CPU model and reloaded into dev, and a CUDA_IPC handle is copied into dev directly, in both
// cases the groups a version carries (what maye-update trains under cfg's update.train_*). Without a device
// mirror CUDA_IPC handles are refused.
void maye_weight_source_use_device(maye_weight_source *ws, maye_device_model *dev, const maye_config *cfg);
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
// Publishes a CUDA_IPC handle for version `version` (an exported buffer, maye_device_export) to out (flushed).
int maye_weight_publish_ipc(maye_writer *out, int64_t version, int64_t step, const maye_ipc_weights *w);
