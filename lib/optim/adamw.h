// AdamW exactly as torch.optim.AdamW (decoupled weight decay), global-norm gradient clipping exactly as
// torch.nn.utils.clip_grad_norm_, and save/load of the optimizer state for resume.
//
// The model keeps its parameters in one fp32 allocation and its gradients in another; a table of tensors
// says where each tensor lives in both (offsets in floats) and whether it is trained. Only trainable
// tensors have optimizer state (fp32 first and second moments, packed in one allocation in table order)
// and only their gradients enter the norm (frozen parameters have no gradient in torch). One step, per
// element of a trainable tensor, with t = the step number counting from 1:
//   p *= 1 - lr * weight_decay
//   m += (1 - beta1) * (g - m)              (torch's lerp)
//   v  = beta2 * v + (1 - beta2) * g * g
//   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// Clipping: total = sqrt(sum over trainable tensors of |g|^2); coef = max_norm / (total + 1e-6) clamped to
// 1; every trainable gradient is multiplied by coef.
#pragma once
#include "core/config.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    const char *name;    // the checkpoint's tensor name (copied by maye_adamw_init)
    int64_t offset;      // first element in the parameter array
    int64_t grad_offset; // first element in the gradient array (ignored when not trainable)
    int64_t numel;
    bool trainable;
} maye_optim_tensor;

typedef struct {
    double beta1, beta2, eps, weight_decay;
} maye_adamw_hparams;

typedef struct {
    maye_adamw_hparams hp;
    int ntensors;
    maye_optim_tensor *tensors; // (ntensors) own copies of the table and names
    int64_t *state_offset;      // (ntensors) first element in m / v, -1 for frozen tensors
    int64_t nstate;             // S: elements of all trainable tensors
    float *m;                   // (S) first moments
    float *v;                   // (S) second moments (same allocation as m)
    int64_t step;               // optimizer steps taken
} maye_adamw;

// From update.beta1 / beta2 / eps / weight_decay (checked: betas in [0, 1), eps > 0, weight_decay >= 0).
int maye_adamw_hparams_from_config(maye_adamw_hparams *hp, const maye_config *cfg);
// Zero state for the trainable tensors of `tensors`. Fails on an inconsistent table (negative sizes,
// duplicate names).
int maye_adamw_init(maye_adamw *opt, const maye_adamw_hparams *hp, int ntensors, const maye_optim_tensor *tensors);
void maye_adamw_free(maye_adamw *opt);
// One step with learning rate `lr` on the trainable tensors of `params` using `grads`.
void maye_adamw_step(maye_adamw *opt, float *params, const float *grads, double lr);

// The global L2 norm of the trainable gradients (in double, summed in a fixed order).
double maye_grad_norm(int ntensors, const maye_optim_tensor *tensors, const float *grads);
// Clips the trainable gradients to `max_norm` (no clipping when max_norm <= 0) and returns the norm before
// clipping. A non-finite norm leaves the gradients untouched (the caller should skip the step).
double maye_grad_clip(int ntensors, const maye_optim_tensor *tensors, float *grads, double max_norm);

// The state (step count, m and v of every trainable tensor) to/from a safetensors file: tensors "step"
// (I64 [1]), "m.<name>", "v.<name>" (F32 [numel]). Loading checks that the file holds exactly the state of
// this optimizer's trainable tensors, with matching sizes, and names what differs; on failure the state
// is reset to zero.
int maye_adamw_save(const maye_adamw *opt, const char *path);
int maye_adamw_load(maye_adamw *opt, const char *path);
