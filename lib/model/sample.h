// Token sampling for the rollout engine (CPU). This is the exact definition every backend follows; the
// CUDA sampler (cuda_sample_forward in kernels/cuda/cuda_kernels.h) implements the same one and both share
// the arithmetic of kernels/cuda/sampling_def.h, so the same fp32 logits give the same token on either side.
//
// One draw, for a row of logits z (V) at response position t (0-based) of a sample with stream id s:
//   0. Suppression: ids in `banned` (the stop ids while t < min_tokens) get z_i = -inf first.
//   1. Greedy (temperature <= MAYE_GREEDY_TEMPERATURE): the token is argmax z, the lowest id among equal
//      maxima. Otherwise, with tau = temperature:
//   2. zmax = max z; weight q_i = maye_sample_weight(z_i, zmax, tau), an integer ~ 2^40 exp((z_i - zmax)/tau)
//      (0 below exp(-28)).
//   3. Rank the tokens by maye_sample_key(z_i) descending (the float order), ties by id ascending. k = top_k
//      if 0 < top_k < V, else V. Z = sum of q over ranks < k.
//   4. n = k if top_p >= 1; else n is the smallest m >= 1 whose sum of q over ranks < m reaches
//      maye_sample_scale(top_p, Z). The kept set is ranks < n; S = sum of its q.
//   5. S == 0: the token is rank 0. Otherwise u = maye_uniform_at(seed, s, t), r = maye_sample_scale(u, S),
//      and the token is the smallest kept id whose running sum of q over the kept ids up to it (in id order)
//      exceeds r: inverse-CDF sampling of the truncated distribution with one uniform per token.
// Integer weights make every sum exact, so the result depends on nothing but z, the settings and u.
//
// The log-prob reported with each token is log softmax(z / tau) at the token over the whole vocabulary,
// computed from the logits before suppression, top-k and top-p (tau = 1 for greedy draws): the model's own
// probability at the sampling temperature, what the trainer recomputes and compares against.
//
// Streams: a sample owns stream s = maye_sample_stream(maye_sample_stream_key(sample id, epoch, step), index),
// so its draws do not depend on batch composition, thread count or the order sequences finish.
#pragma once
#include <stdint.h>

// Temperatures at or below this are greedy decoding.
#define MAYE_GREEDY_TEMPERATURE 1e-5f

typedef struct {
    float temperature; // <= MAYE_GREEDY_TEMPERATURE: greedy
    float top_p;       // (0, 1]; 1 = off
    int top_k;         // 0 = off
} maye_sample_params;

// Scratch for one row of V entries; one per thread.
typedef struct {
    int V;
    uint64_t *q;     // (V) weights
    int32_t *cand;   // (V) candidate ids
    uint64_t *rank;  // (V) candidates as (~key << 32 | id): ascending = rank order
    float *e;        // (V) exponentials (log-prob, weights)
    uint64_t *block; // (V / 64 + 1) block sums of the weights
} maye_sampler;

void maye_sampler_init(maye_sampler *s, int V);
void maye_sampler_free(maye_sampler *s);

// Checks the settings (temperature >= 0, top_p in (0, 1], top_k >= 0); messages name rollout.* keys.
int maye_sample_params_check(const maye_sample_params *p);

// Draws one token from logits z (V) following the definition above; the banned ids of z are overwritten with
// -inf. u is the draw's uniform (unused when greedy). *logprob (may be NULL) receives the token's log-prob,
// taken before the suppression.
int32_t maye_sample(maye_sampler *s, const maye_sample_params *p, float *z, const int32_t *banned, int n_banned,
                    float u, float *logprob);

// The key of a sample's draws: FNV-1a of its id mixed with its epoch and generation step.
uint64_t maye_sample_stream_key(const char *sample_id, int64_t epoch, int64_t step);
// The stream of response `index` (0..n-1) of the sample with that key.
uint64_t maye_sample_stream(uint64_t key, int index);
