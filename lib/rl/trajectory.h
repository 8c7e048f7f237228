// Turning one generation step of Rollout records into Trajectory records (Step III): rewards and the judge's
// verdict, reflection counts, and the log-probs of every response token under the policy (the version that
// sampled it) and under the reference model (version 0), computed in packed forwards of
// traj.forward_batch_size sequences. The vision tower runs once per query; when it is frozen (the paper's
// default) the reference reuses the policy's image features. With device models (backend/backend.h) the
// vision tower and the forwards run there; the packing, rewards and everything else stay on the host.
#pragma once
#include "core/config.h"
#include "model/score.h"
#include "rl/reward.h"
#include "schemas/maye.pb-c.h"
#include "vision/image_processor.h"

#include <stdbool.h>

typedef struct maye_device_model maye_device_model; // a model on a device backend (backend/backend.h)

typedef struct {
    maye_reward_spec rewards;
    maye_image_processor_config img;
    const maye_model *policy; // NULL: rewards only (evaluation)
    const maye_model *ref;
    maye_device_model *policy_dev, *ref_dev; // their device models, NULL on the CPU backend (set by the caller)
    maye_scorer scorer;
    int forward_batch_size;
    bool share_vision;        // vision tower and merger frozen: one image pass serves both models
} maye_traj_builder;

// policy/ref may be NULL together (no log-probs).
int maye_traj_builder_init(maye_traj_builder *b, const maye_config *cfg, const maye_model *policy,
                           const maye_model *ref);
void maye_traj_builder_free(maye_traj_builder *b);
// Builds the trajectories of rollouts[0..n) (one step, in order: queries x responses). *out receives n_out
// records; each borrows its rollout's query (free them with maye_traj_free before the rollouts).
int maye_traj_build_step(maye_traj_builder *b, Maye__Rollout *const *rollouts, int n, Maye__Trajectory ***out,
                         int *n_out);
void maye_traj_free(Maye__Trajectory **t, int n);
