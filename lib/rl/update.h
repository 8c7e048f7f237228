// The learning step (Step IV): one generation step's trajectories -> Reinforce++ (or GRPO/RLOO) advantages
// -> (batch / ppo_batch_size) x ppo_epochs optimizer steps of PPO-clip + KL loss, each over micro-batches of
// ppo_backward_batch_size sequences, with global-norm clipping and AdamW on a warmup + cosine schedule; the
// policy version advances by one per generation step. The same trainer runs supervised fine-tuning on the
// `solution` of Query records (cross-entropy on the response tokens).
//
// Micro-batches: the gradient of a minibatch split into micro-batches equals the unsplit minibatch's (each
// micro-batch's dL/dlogp is weighted by its share of the minibatch's tokens, sequences or rows, following
// the loss reduction).
//
// On a device backend (model.device=cuda, backend/backend.h) the vision tower, the forwards, the backward,
// the clipping and AdamW run on the device model (the language model only: update.train_vit and
// train_connector are refused there); the advantages and the loss gradients stay on the host. After every
// step the trained weights come back into `model` (weight-sync files, checkpoints), and the AdamW moments
// come back into `opt` before a checkpoint (maye_trainer_save).
#pragma once
#include "core/config.h"
#include "model/backward.h"
#include "optim/adamw.h"
#include "optim/schedule.h"
#include "rl/ppo.h"
#include "rl/reward.h"
#include "schemas/maye.pb-c.h"
#include "text/chat.h"
#include "vision/image_processor.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct maye_device_model maye_device_model; // a model on a device backend (backend/backend.h)

typedef struct {
    const maye_config *cfg;
    maye_model model;           // the policy: fp32 master weights
    unsigned groups;            // trained groups
    maye_device_model *dev;     // the policy on the device, NULL on the CPU backend
    int dev_T_cap, dev_B_cap;   // the device's training capacity (tokens, sequences per micro-batch); 0: none
    maye_grads grads;           // CPU backend (the device keeps its own gradients)
    maye_optim_tensor *tab;     // (ntab) optimizer table
    int ntab;
    maye_adamw opt;
    maye_lr_schedule sched;
    bool have_sched;            // set up at the first step (its horizon needs the step size)
    maye_llm_train lt;          // activations + backward workspace, grown on demand
    int T_cap;
    maye_vision_train vt;       // when the tower or the merger trains
    int64_t P_cap;
    bool train_vision;
    maye_image_processor_config img;
    maye_ppo_params pp;
    maye_adv_params ap;
    maye_kl_estimator kl_reward_est;
    int64_t version;            // policy version held
    int64_t steps_done;         // generation steps trained
    const maye_chat *chat;      // SFT: the chat template (response + <|im_end|>)
} maye_trainer;

// Loads the policy from model_dir as policy version `version` (maye_trainer_resume adds a checkpoint's
// optimizer state and counters).
int maye_trainer_init(maye_trainer *tr, const maye_config *cfg, const char *model_dir, int64_t version);
void maye_trainer_free(maye_trainer *tr);

// What a step did, for the Metrics record (name/value pairs, fixed order).
#define MAYE_STEP_MAX_VALUES 96
typedef struct {
    int n;
    char names[MAYE_STEP_MAX_VALUES][48];
    double values[MAYE_STEP_MAX_VALUES];
    char *example;              // a correct response with reflection words ("aha moment"), or NULL
} maye_step_metrics;

void maye_step_metrics_free(maye_step_metrics *m);

// One RL generation step over trajectories t[0..n) (one step, in order). Before touching the weights it
// checks every trajectory (finite log-probs and rewards, lengths); a bad one fails the step naming the
// sample, and the weights stay those of the last good step. `total_steps` is the run's number of
// generation steps (the schedule's horizon).
int maye_trainer_rl_step(maye_trainer *tr, Maye__Trajectory *const *t, int n, int64_t total_steps,
                         maye_step_metrics *out);
// One SFT step over queries q[0..n): the target of each is its `solution` followed by <|im_end|>.
int maye_trainer_sft_step(maye_trainer *tr, const maye_tokenizer *tok, Maye__Query *const *q, int n,
                          int64_t total_steps, maye_step_metrics *out);

// ----------------------------------------------------------------------------
// checkpoints (checkpoint.c)
//
// RUN/checkpoints/step-SSSSSS/ (SSSSSS = generation steps done) in the Hugging Face layout: config.json,
// model.safetensors (hub names, update.save_dtype), the tokenizer and preprocessor files of the source model
// when it has them, plus optimizer.safetensors (AdamW state), master.safetensors (every weight in fp32,
// when the model file is not fp32: maye_model_load lays it over the rounded ones) and state.json ({"steps_done", "version", "seed", "config_digest"}).
// The directory is written under a temporary name and renamed into place, then RUN/checkpoints/latest (its
// name) is replaced atomically: a crash never leaves a corrupt or missing latest checkpoint.

// Writes the checkpoint of the trainer's current state; `source_dir` is where tokenizer.json /
// preprocessor_config.json are copied from (NULL: none). *out_dir (may be NULL) receives its path.
int maye_trainer_save(maye_trainer *tr, const char *run_dir, const char *source_dir, char **out_dir);
// Loads the optimizer state and the counters of a checkpoint into a trainer made with
// maye_trainer_init(.., ckpt_dir, ..) (which loaded its fp32 master weights).
int maye_trainer_resume(maye_trainer *tr, const char *ckpt_dir);
// Device backend: copies the AdamW moments from the device into tr->opt (maye_trainer_save does it first);
// nothing to do on the CPU backend.
int maye_trainer_fetch_optimizer(maye_trainer *tr);
// The newest complete checkpoint of a run (caller frees); fails when there is none.
int maye_checkpoint_latest(const char *run_dir, char **dir);
// Reads steps_done and version from a checkpoint's state.json.
int maye_checkpoint_state(const char *ckpt_dir, int64_t *steps_done, int64_t *version);
