// Backward of the CPU model (fp32): the gradients of a scalar loss L with respect to the trained weights,
// starting from dL/dlogprob of each token (maye_ppo_loss, or -1/N on the response tokens for SFT's
// cross-entropy). The gradients of every trained tensor live in one allocation (maye_grads) whose pointers
// mirror maye_weights; what trains follows update.train_llm / train_connector / train_vit (frozen parts get
// no gradient buffer and are never differentiated). Gradients accumulate (+=), so micro-batches add up.
// Activation recomputation (update.recompute) keeps only each layer's (block's) input and runs the layer's
// forward again during the backward; both modes give bit-identical gradients.
//
// How maye-update uses it:
//   groups = maye_train_groups(train_llm, train_connector, train_vit)
//   maye_grads_init(&g, m, groups)                        once
//   n = maye_grads_optim_table(&g, m, &tab)               once: the AdamW tensor table (params / grads offsets)
//   maye_llm_train_init(&lt, &m->cfg, T_cap, recompute)  once: activations + backward workspace
//   maye_vision_train_init(&vt, &m->cfg, P_cap, recompute) once, only when the tower or the merger trains
//   per optimizer step: maye_grads_zero(&g), then per micro-batch:
//     maye_vision_train_forward(m, &vt, pixels, P, grid, n_img, embeds)  (maye_vision_forward when frozen)
//     maye_llm_forward(m, &batch, &lt.acts)
//     maye_llm_logprobs(m, &lt.acts, targets, temperature, logp, NULL)
//     maye_ppo_loss(...)                                  dL/dlogp [B, T], scattered to the packed rows
//     maye_llm_backward(m, &lt, &batch, targets, temperature, logp, dlogp, &g, dembeds)
//     maye_vision_backward(m, &vt, pixels, dembeds, &g)   only when the tower or the merger trains
//   then maye_grad_clip(n, tab, g.memory, clip) and maye_adamw_step(&opt, m->params, g.memory, lr).
//
// Dimension letters as in model.h; R = rows per log-prob block, U = P / M merged units (P: the capacity).
#pragma once
#include "model/model.h"
#include "optim/adamw.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// ----------------------------------------------------------------------------
// gradients of the trained weights

// The groups to train as a bit mask (1u << maye_param_group).
unsigned maye_train_groups(bool train_llm, bool train_connector, bool train_vit);

typedef struct {
    unsigned groups;     // trained groups, bit (1u << maye_param_group)
    maye_weights g;      // the gradient of each trained tensor, shaped like the weight; NULL for frozen ones
                         // (g.lm_head == g.embed when the embeddings are tied)
    float *memory;       // the trained groups' ranges of maye_model.params, in table order (the same layout as
                         // params when every group trains)
    size_t n_floats;
    int64_t shift[3];    // per trained group: gradient offset - parameter offset of each of its tensors
} maye_grads;

// Zeroed gradients for the groups in the mask.
void maye_grads_init(maye_grads *g, const maye_model *m, unsigned groups);
void maye_grads_free(maye_grads *g);
void maye_grads_zero(maye_grads *g);
// The optimizer's table: one entry per checkpoint tensor (hub names, one per layer/block), offsets into
// maye_model.params and g->memory, trainable when its group trains. Returns the count; free with
// maye_optim_table_free.
int maye_grads_optim_table(const maye_grads *g, const maye_model *m, maye_optim_tensor **out);
void maye_optim_table_free(maye_optim_tensor *t, int n);

// ----------------------------------------------------------------------------
// language model

typedef struct {
    maye_llm_acts acts;     // the forward's activations: keep = 1, or keep = 2 (layer inputs only) to recompute
    float *memory;          // backward workspace, one allocation
    size_t n_floats;
    float *dres;            // (T, C) gradient of the residual stream
    float *dln;             // (T, C) gradient of a norm's output
    float *dhid;            // (T, C) gradient of the final hidden states
    float *xout;            // (T, C) where a recomputed layer writes its output (not needed again)
    float *datt, *dq;       // (T, H*D)
    float *dk, *dv;         // (T, KV*D)
    float *dgate, *dup, *dact; // (T, I)
    float *lp_h, *lp_dh;    // (R, C) gathered hidden rows and their gradients
    float *lp_lp, *lp_g;    // (R) their log-probs and dL/dlogprob
    float *scratch;         // attention and log-prob backward
    size_t scratch_n;
    int64_t *lp_tgt;        // (R) gathered targets
    int *lp_row;            // (R) their rows
    int64_t *ids;           // (T) token ids, -1 where an image feature replaced the embedding
} maye_llm_train;

// Activations for up to T_cap packed tokens (keep = 2 with recompute, else 1) and the backward's workspace.
void maye_llm_train_init(maye_llm_train *tr, const maye_model_config *c, int T_cap, bool recompute);
void maye_llm_train_free(maye_llm_train *tr);
// After maye_llm_forward(m, b, &tr->acts) and maye_llm_logprobs(.., targets, temperature, logprobs, ..):
// adds dL/dweights of the trained LLM tensors to g, where dlogprobs (T) = dL/dlogprobs[t] for each row
// (rows with targets[t] < 0 or dlogprobs[t] = 0 are skipped). dimage_embeds (NI, C), if not NULL, receives
// (is overwritten with) dL/d image_embeds. Fails if the activations do not hold that forward.
int maye_llm_backward(const maye_model *m, maye_llm_train *tr, const maye_llm_batch *b, const int64_t *targets,
                      float temperature, const float *logprobs, const float *dlogprobs, maye_grads *g,
                      float *dimage_embeds);

// ----------------------------------------------------------------------------
// vision tower + merger (vision_backward.c)

typedef struct {
    int recompute, n_kept;   // n_kept = VL blocks, or 1 with recompute
    int64_t P_cap, P;        // capacity; patches of the last forward (0 before any)
    maye_vision_layout lo;   // of the last forward
    float *memory;           // activations and workspace, one allocation
    size_t n_floats;
    float *x;                // (VL+1, P, VC) input of each block, then the tower's output (processing order)
    float *n1, *mean1, *rstd1, *qkv, *lse, *att, *h, *n2, *mean2, *rstd2, *f1, *f2, *fa; // (n_kept, ...)
    float *mn, *m_mean, *m_rstd; // (P, VC), (P), (P) merger norm
    float *mh, *mg;          // (U, M*VC) merger hidden before / after the GELU
    float *cos, *sin;        // (P, VD/2) rotary tables
    float *dx, *dn, *datt;   // (P, VC) backward: residual stream, norm output, attention output
    float *dqkv;             // (P, 3*VC)
    float *df1, *df2, *dfa;  // (P, VI)
    float *dmh, *dmg;        // (U, M*VC)
    float *dmo;              // (U, C) merger output gradients (processing order); forward: merger output
    float *dpatch;           // (P, VC) patch embeddings in the images' order (forward) / their gradients
    float *xout;             // (P, VC) where a recomputed block writes its output (not needed again)
    float *scratch;          // attention forward and backward
    size_t scratch_n;
} maye_vision_train;

// Activations and workspace for up to P_cap patches. When only the merger trains, pass recompute = true: the
// blocks are never differentiated then, so nothing is recomputed and only one block's slices are held.
void maye_vision_train_init(maye_vision_train *vt, const maye_model_config *c, int64_t P_cap, bool recompute);
void maye_vision_train_free(maye_vision_train *vt);
// maye_vision_forward (bit-identical output) keeping what the backward needs.
int maye_vision_train_forward(const maye_model *m, maye_vision_train *vt, const float *pixels, int64_t P,
                              const int64_t *grid_thw, int n_images, float *out);
// After maye_vision_train_forward on pixels (P, PD): adds dL/dweights of the trained merger and tower tensors
// to g, from dout (NI, C) = dL/d out (maye_llm_backward's dimage_embeds).
int maye_vision_backward(const maye_model *m, maye_vision_train *vt, const float *pixels, const float *dout,
                         maye_grads *g);
