// The compute backend of the stages, chosen by model.device: the CPU model (lib/model, fp32, the reference
// every other backend is tested against) or the CUDA model (lib/model/cuda, fp32 or bf16 by model.dtype),
// which only a build made with `make CUDA=1` contains (lib/backend/cuda.cu in libmaye_cuda.a; without it
// model.device=cuda is refused by maye_run_check_backend).
//
// The stages keep their CPU models on every backend: checkpoints load into them, weight-sync files are laid
// over them, checkpoints and weight-sync files are written from them. A device model mirrors one of them on
// the accelerator and does the heavy work; on the CPU backend there is no device model (maye_device_open
// gives NULL) and the stages call lib/model themselves, exactly as before. Every input and output of a
// device call is host memory (image features travel as fp32 rows, as on the CPU), and every call returns
// once its results are on the host.
//
//   maye_device_open / reload        upload a CPU model; after a weight sync, upload the groups it changed
//   maye_device_vision               vision tower + merger: pixels -> image features
//   maye_device_logprobs             a packed forward + log-probs / entropies (maye_score_forward's shape)
//   maye_device_gen_init / gen_run   rollout generation with generate.h's types; the host adds the text and
//                                    the stop strings (maye_generator, below)
//   maye_device_train_*              the language model's training step: forward + log-probs, backward
//                                    from dL/dlogprob (the loss stays on the host, rl/ppo.c), global-norm
//                                    clipping, AdamW on fp32 master weights
//   maye_device_download / opt_get / opt_set   trained weights and AdamW moments to and from the trainer's
//                                    CPU copies (checkpoints, weight-sync files, resume)
//   maye_device_export / import      update.weight_sync=cuda_ipc: the trainer's weights of some groups into
//                                    exported device buffers (CUDA IPC), and another process's model copying
//                                    them device to device (model/weightsync.h)
#pragma once
#include "core/config.h"
#include "core/log.h"
#include "model/generate.h"
#include "model/model.h"
#include "model/weightsync.h"
#include "optim/adamw.h"

#include <stdbool.h>
#include <stdint.h>

// ----------------------------------------------------------------------------
// backends

typedef struct maye_device_model maye_device_model;

// maye_ipc_weights (an exported device buffer of weights) is declared in model/weightsync.h.

// A device backend's operations (see the maye_device_* functions below for what each does).
typedef struct {
    const char *name;                    // "cuda"
    int (*device_count)(void);           // usable devices; 0 when none (never fails)
    int (*open)(maye_device_model **dm, const maye_model *m, const char *dtype, bool train, bool profile);
    void (*close)(maye_device_model *dm);
    int (*reload)(maye_device_model *dm, const maye_model *m, unsigned groups);
    int (*vision)(maye_device_model *dm, const float *pixels, int64_t P, const int64_t *grid_thw, int n_images,
                  float *out);
    int (*logprobs)(maye_device_model *dm, const maye_llm_batch *b, const int64_t *targets, float temperature,
                    float *logprobs, float *entropy);
    int (*gen_init)(maye_device_model *dm, const maye_gen_config *cfg);
    int (*gen_run)(maye_device_model *dm, const maye_gen_request *reqs, int n, maye_gen_result *res,
                   maye_gen_stats *stats);
    int (*train_init)(maye_device_model *dm, int T_cap, int B_cap, bool recompute);
    int (*train_forward)(maye_device_model *dm, const maye_llm_batch *b, const int64_t *targets, float temperature,
                         float *logprobs, float *entropy);
    int (*train_backward)(maye_device_model *dm, const maye_llm_batch *b, const int64_t *targets, float temperature,
                          const float *logprobs, const float *dlogprobs);
    int (*train_zero)(maye_device_model *dm);
    int (*train_clip)(maye_device_model *dm, double max_norm, double *norm);
    int (*train_adamw)(maye_device_model *dm, const maye_adamw_hparams *hp, double lr);
    int (*download)(maye_device_model *dm, maye_model *m, unsigned groups);
    int (*opt_get)(maye_device_model *dm, maye_weights *m, maye_weights *v);
    int (*opt_set)(maye_device_model *dm, const maye_weights *m, const maye_weights *v, int64_t step);
    int (*weights_export)(maye_device_model *dm, unsigned groups, int slot, int n_slots, maye_ipc_weights *out);
    int (*weights_import)(maye_device_model *dm, unsigned groups, const maye_ipc_weights *in);
} maye_backend_ops;

// Every backend's device model starts with this.
struct maye_device_model {
    const maye_backend_ops *ops;
};

// The CUDA backend of this build, or NULL when it was built without CUDA=1.
const maye_backend_ops *maye_backend_cuda(void);

// ----------------------------------------------------------------------------
// device models

// The device model of m for cfg->model.device (uploaded in cfg->model.dtype): *dm = NULL on the CPU backend.
// With `train`, the trained language model keeps fp32 master weights (bf16) and the training calls work.
// With cfg->model.profile, the device model times its regions and maye_device_close prints the table.
// Fails when the build or the machine lacks the device (the message says what to do).
int maye_device_open(maye_device_model **dm, const maye_config *cfg, const maye_model *m, bool train);
void maye_device_close(maye_device_model *dm); // NULL is fine
// The CPU model m (the one opened) changed in the groups of the mask `groups` (1u << maye_param_group): the
// device copy takes their new values (fp32 master weights too).
int maye_device_reload(maye_device_model *dm, const maye_model *m, unsigned groups);
// maye_vision_forward on the device: pixels (P, PD) -> out (NI, C).
int maye_device_vision(maye_device_model *dm, const float *pixels, int64_t P, const int64_t *grid_thw, int n_images,
                       float *out);
// maye_llm_forward + maye_llm_logprobs of a packed batch (b->image_embeds: host fp32 rows).
int maye_device_logprobs(maye_device_model *dm, const maye_llm_batch *b, const int64_t *targets, float temperature,
                         float *logprobs, float *entropy);

// Generation: the engine's settings minus the stop strings and the tokenizer (cfg->n_stop_strings must be 0;
// outputs come without text), then runs as maye_gen_run; the run's statistics are added to *stats.
int maye_device_gen_init(maye_device_model *dm, const maye_gen_config *cfg);
int maye_device_gen_run(maye_device_model *dm, const maye_gen_request *reqs, int n, maye_gen_result *res,
                        maye_gen_stats *stats);

// Training (a device model opened with train = true): activations and workspace for up to T_cap packed tokens
// in B_cap sequences; gradients and AdamW moments start at zero (opt_set puts moments back). Calling it again
// resizes and zeroes everything again.
int maye_device_train_init(maye_device_model *dm, int T_cap, int B_cap, bool recompute);
// The forward of a micro-batch and its log-probs (entropy may be NULL), kept for train_backward.
int maye_device_train_forward(maye_device_model *dm, const maye_llm_batch *b, const int64_t *targets,
                              float temperature, float *logprobs, float *entropy);
// Adds dL/dweights of the language model from dlogprobs (T) after train_forward on the same batch.
int maye_device_train_backward(maye_device_model *dm, const maye_llm_batch *b, const int64_t *targets,
                               float temperature, const float *logprobs, const float *dlogprobs);
int maye_device_train_zero(maye_device_model *dm);
// *norm = the gradients' global L2 norm; when finite they are clipped to max_norm (<= 0: never).
int maye_device_train_clip(maye_device_model *dm, double max_norm, double *norm);
int maye_device_train_adamw(maye_device_model *dm, const maye_adamw_hparams *hp, double lr);
// The device's weights of `groups` (the fp32 masters for the trained language model) into the CPU model m.
int maye_device_download(maye_device_model *dm, maye_model *m, unsigned groups);
// The AdamW moments of the language model to / from CPU tensors shaped like the weights (fields that are
// NULL are skipped); opt_set also sets the step count.
int maye_device_opt_get(maye_device_model *dm, maye_weights *m, maye_weights *v);
int maye_device_opt_set(maye_device_model *dm, const maye_weights *m, const maye_weights *v, int64_t step);

// Weight sync over CUDA IPC (the trainer and the stages on one GPU). Export: the device's weights of
// `groups` (and, in bf16, their fp32 norm weights and biases) are copied into buffer `slot` of a ring of n_slots exported buffers (allocated on the first call;
// n_slots and groups must not change afterwards) and *out describes it; the copy is complete on return.
int maye_device_export(maye_device_model *dm, unsigned groups, int slot, int n_slots, maye_ipc_weights *out);
// Import: opens in->handle (kept open for later versions in the same buffer) and copies its weights into this
// device model's weights of `groups` (and their fp32 masters, if it has them). Fails when in->bytes is not
// what this model's layout of those groups takes (another model or dtype) or when the copied bytes do not
// give in->digest (the exporter overwrote the buffer meanwhile).
int maye_device_import(maye_device_model *dm, unsigned groups, const maye_ipc_weights *in);

// ----------------------------------------------------------------------------
// generation on either backend (maye-rollout)

typedef struct {
    maye_device_model *dev;  // NULL: the CPU engine
    maye_gen_engine cpu;     // the CPU engine (dev == NULL)
    maye_gen_config cfg;     // dev: the settings, stop strings copied (applied on the host)
    maye_gen_stats stats;    // dev: totals over every run
} maye_generator;

// The CPU engine over m, or generation on the device model dev (m's mirror).
int maye_generator_init(maye_generator *g, maye_device_model *dev, const maye_model *m, const maye_gen_config *cfg);
void maye_generator_free(maye_generator *g);
// maye_gen_run on the generator's backend; `progress` (may be NULL) advances by one per finished sequence (on a
// device, all at once at the end).
int maye_generator_run(maye_generator *g, const maye_gen_request *reqs, int n, maye_gen_result *res,
                       maye_progress *progress);
// Totals over every run (generate.h).
maye_gen_stats maye_generator_stats(const maye_generator *g);
