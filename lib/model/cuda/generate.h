// Rollout generation on one GPU: a slab KV cache (one fixed range of rows per slot), the packed prefill of
// newly admitted prompts into their slots (the vision tower first), one decode step for every slot at once
// with the split-K decode attention, and sampling on the GPU with each sample's Philox stream
// (cuda_sample_forward draws what model/sample.c draws from the same logits). The decode step, sampling and
// the per-slot bookkeeping (append the token, stop ids, max_tokens, min_tokens suppression) run on the device
// without the host, captured once in a CUDA graph and replayed every step; the host only admits waiting
// requests into free slots and collects finished ones (continuous batching at request granularity: the n
// samples of a request are admitted together and share one prefill, the siblings' prompt rows copied).
//
// The configuration and the results are generate.h's (maye_gen_config / maye_gen_request / maye_gen_result):
// the same settings give the same tokens as the CPU engine (maye_gen_run) up to the rounding of the logits
// (fp32 mode: identical in practice; bf16: a different but equally valid draw). Differences from the CPU
// engine: stop strings and the decoded text are not handled here (cfg.n_stop_strings must be 0, out.text
// stays NULL: the engine's text and stop-string logic in model/generate.c is what a GPU backend hook there
// would reuse), and the KV budget is max_batch_tokens rows in slots of (longest prompt + max_tokens) rows.
//
// Dimension letters as in model/cuda/model.h, plus S slots, R rows per slot (a multiple of 64), MT = max_tokens.
// The KV cache is (L, S, R, KV*D) keys and as many values, allocated per run with the slot state.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
#ifndef _Noreturn
#define _Noreturn [[noreturn]] // C11's spelling, for the C headers below
#endif
extern "C" {
#endif

#include "model/cuda/model.h"
#include "model/generate.h"

typedef struct {
    cuda_model *gm;
    maye_gen_config cfg;  // stop_strings not copied (there are none)
    bool use_graph;       // capture the decode step in a CUDA graph (else launch it every step)
    bool graph_failed;    // a capture failed once: steps are launched eagerly from then on
    maye_gen_stats stats; // totals over every run
    size_t peak_bytes;    // largest device memory a run held (KV cache, activations, state)
} cuda_gen;

// Checks the settings (messages name the rollout.* keys, as maye_gen_engine_init).
int cuda_gen_init(cuda_gen *g, cuda_model *gm, const maye_gen_config *cfg, bool use_graph);
void cuda_gen_free(cuda_gen *g);
// Generates cfg.n responses for each of the n requests into res (n; free with maye_gen_result_free(res, n,
// cfg.n)). A malformed request (ids outside the vocabulary, image pads that do not match the grids) or one
// too large for the KV budget fails the whole call before any work, naming it.
int cuda_gen_run(cuda_gen *g, const maye_gen_request *reqs, int n, maye_gen_result *res);

#ifdef __cplusplus
}
#endif
