// Training the language model on one GPU: the backward of the packed forward (model/cuda/model.h) from
// dL/dlogprob of each token, global-norm clipping and AdamW on fp32 master weights, the GPU twin of
// model/backward.h for the language model (the vision tower and the merger stay frozen: train_llm only).
// Weight gradients are fp32 and accumulate (+=) over micro-batches in one allocation that mirrors the
// language model's range of cuda_model.weights element for element, so the norm, the clipping and AdamW
// are one fused pass each over it. Activation gradients are in the model's dtype (bf16 in bf16 mode).
//
// How maye-update would use it (bf16: the model must be uploaded with master = true):
//   cuda_llm_train_init(&tr, &gm, T_cap, B_cap, recompute)         once
//   per optimizer step: cuda_llm_train_zero(&gm, &tr), then per micro-batch:
//     cuda_llm_forward(&gm, &batch, &tr.acts)
//     cuda_llm_logprobs(&gm, &tr.acts, targets, temperature, logp, NULL)
//     (PPO / SFT loss on the host -> dL/dlogp)
//     cuda_llm_backward(&gm, &tr, &batch, targets, temperature, logp, dlogp)
//   then cuda_llm_clip(&gm, &tr, clip, &norm) and, when the norm is finite, cuda_llm_adamw(&gm, &tr, &hp, lr):
//   the master weights and the model's bf16 weights are both updated.
//
// Dimension letters as in model/cuda/model.h; N = elements of the language model's range.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#ifndef _Noreturn
#define _Noreturn [[noreturn]] // C11's spelling, for the C headers below
#endif
extern "C" {
#endif

#include "model/cuda/model.h"
#include "optim/adamw.h"

typedef struct {
    cuda_llm_acts acts;   // the forward's activations: keep 1, or keep 2 (layer inputs only) with recompute
    bool recompute;
    size_t n;             // N
    float *grads;         // (N) fp32 weight gradients
    cuda_weights g;       // each language-model tensor's gradient inside grads (fp32); NULL for frozen ones
    float *m, *v;         // (N) AdamW moments
    int64_t step;         // optimizer steps taken
    double *norm;         // (1) device: the last gradient norm
    float *clip_coef;     // (1) device: the clipping coefficient of that norm
    bool fresh;           // cuda_llm_train_zero left the projection weights' gradients for the next backward to
                          // write (beta 0); that backward clears it, and later ones add
    bool clipped;         // cuda_llm_clip ran since the last zero / AdamW step: AdamW applies clip_coef
    void *clip_scratch;   // cuda_grad_norm_scratch_bytes(N)
    void *state;          // grads, moments, norm and the clipping scratch: one allocation
    size_t state_bytes;
    // backward workspace (model dtype unless noted): one allocation
    void *memory;
    size_t bytes;
    void *dres;           // (T, C) gradient of the residual stream
    void *dln;            // (T, C) gradient of a norm's output
    void *dhid;           // (T, C) gradient of the final hidden states
    void *dqkv;           // (T, QKV)
    void *datt;           // (T, H*D)
    void *dgu;            // (T, 2*I)
    void *dact;           // (T, I)
    float *lp_dh;         // (T, C) fp32 gradients of the gathered hidden rows
    int *lp_row;          // (T) rows with a gradient, their targets, log-probs and dL/dlogprob
    int64_t *lp_tgt;
    float *lp_lp, *lp_g;
    int64_t *emb_ids;     // (T) distinct token ids of the text rows, sorted
    int *emb_starts;      // (T+1) their rows in emb_rows
    int *emb_rows;        // (T)
    void **attn_dkv;      // (2, B) device: each segment's first key / value gradient row inside dqkv
    void *col_scratch;    // column sums (norm weights, biases)
    void *lp_scratch;     // cuda_logprobs_backward_scratch_bytes
    int lp_rows, lp_vchunk;
    void *attn_ws;        // attention backward workspace, grown to the longest sequence seen
    size_t attn_ws_bytes;
    void *host;           // staging of the row lists (host memory)
    size_t input_bytes;
} cuda_llm_train;

// Activations for up to T_cap tokens in B_cap sequences (keep 2 with recompute, else 1), gradients, AdamW
// state and the backward's workspace. In bf16 mode the model needs its fp32 master weights.
int cuda_llm_train_init(cuda_llm_train *tr, cuda_model *gm, int T_cap, int B_cap, bool recompute);
void cuda_llm_train_free(cuda_llm_train *tr);
// Zeroes the gradients for the next optimizer step (the projection weights' lazily: the next backward writes
// them instead of adding, or the next clip / AdamW zeroes them when no backward came).
int cuda_llm_train_zero(cuda_model *gm, cuda_llm_train *tr);
// After cuda_llm_forward(gm, b, &tr->acts) and cuda_llm_logprobs(.., targets, temperature, logprobs, ..): adds
// dL/dweights of the language model to tr->grads, where dlogprobs (T, host) = dL/dlogprobs[t] (rows with
// targets[t] < 0 or dlogprobs[t] = 0 are skipped). targets, logprobs, dlogprobs are host arrays (T). Fails
// if the activations do not hold that forward.
int cuda_llm_backward(cuda_model *gm, cuda_llm_train *tr, const cuda_llm_batch *b, const int64_t *targets,
                      float temperature, const float *logprobs, const float *dlogprobs);
// *norm = the global L2 norm of the gradients (waits for it); the next cuda_llm_adamw sees them scaled to
// max_norm when the norm is finite and larger (max_norm <= 0: no clipping), as maye_grad_clip. The scaling
// happens inside the AdamW pass (bit for bit what scaling in place would give): the gradients in memory stay
// unscaled.
int cuda_llm_clip(cuda_model *gm, cuda_llm_train *tr, double max_norm, double *norm);
// One AdamW step with learning rate lr on the fp32 weights (the master copy in bf16 mode, whose update is
// also written to the model's bf16 weights in the same pass).
int cuda_llm_adamw(cuda_model *gm, cuda_llm_train *tr, const maye_adamw_hparams *hp, double lr);
// Device memory held by the training state and workspace (activations included).
size_t cuda_llm_train_bytes(const cuda_llm_train *tr);

#ifdef __cplusplus
}
#endif
