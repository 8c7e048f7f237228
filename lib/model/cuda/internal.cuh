// Pieces the GPU model's files share (model/cuda/*.cu): dtype helpers over the model, device allocations
// carved from size tables, layer pointers into the stacked weights, the decoder layer that the packed
// forward, the recomputing backward, the prefill and the decode step all run, and the region marks of the
// profiler (profile.cu). Not a public header.
#pragma once
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/model_kernels.h"
#include "model/cuda/model.h"

#include <stddef.h>

// ----------------------------------------------------------------------------
// dtypes and pointers

static inline size_t gm_es(const cuda_model *gm) { return gm->dt == CUDA_BF16 ? 2 : 4; }

// p advanced by n elements of the model's dtype.
static inline void *gm_at(const cuda_model *gm, const void *p, size_t n) { return (char *)p + n * gm_es(gm); }

// Copy l of a stacked weight tensor whose copies hold per_copy elements.
static inline void *gm_layer(const cuda_model *gm, void *base, int l, size_t per_copy) {
    return gm_at(gm, base, (size_t)l * per_copy);
}

// Copy l of a stacked norm weight or bias: fp32 in every dtype, so the overload on a float * steps in floats
// whatever the model's dtype.
static inline float *gm_layer(const cuda_model *, float *base, int l, size_t per_copy) {
    return base + (size_t)l * per_copy;
}

// Frees the pixel upload's page-locked staging halves and their events (vision.cu); the stream must be idle.
void cuda_model_free_staging(cuda_model *gm);

static inline int gm_qkv(const maye_model_config *c) { return (c->heads + 2 * c->kv_heads) * c->head_dim; }

// Whether row t of sequence s takes an image feature (maye_llm_image_row on the batch's host arrays).
static inline bool gm_image_row(const maye_model_config *c, const cuda_llm_batch *b, int s, int t) {
    maye_llm_batch v = {b->B, b->T, b->cu_seqlens, b->ids, b->pos, NULL, b->n_image_embeds, b->n_prompt};
    return maye_llm_image_row(c, &v, s, t) != 0;
}

// ----------------------------------------------------------------------------
// allocations carved from a size table

// One region of a device (or host) allocation: *ptr is set to base + its offset; regions start on 256-byte
// boundaries.
struct DevRegion {
    void **ptr;
    size_t bytes;
};

#define DEV_REGION(p, n) DevRegion{(void **)&(p), (size_t)(n)}

// Lays the regions out from base (NULL: only measures) and returns the total bytes.
static inline size_t dev_layout(const DevRegion *r, int n, char *base) {
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        if (base) *r[i].ptr = r[i].bytes ? base + off : NULL;
        off += (r[i].bytes + 255) / 256 * 256;
    }
    return off;
}

// cudaMalloc of the table's total (at least 256 bytes) and the pointers set; *mem receives the allocation.
int dev_alloc_table(const DevRegion *r, int n, void **mem, size_t *bytes, const char *what);

// Grows the model's scratch to at least `bytes` (waits for the stream first when it reallocates).
int gm_scratch(cuda_model *gm, size_t bytes);

// ----------------------------------------------------------------------------
// the decoder layer

// Where a layer's attention finds its keys and values (all device memory).
struct AttnPlan {
    const void *const *kv;  // (2, B): each segment's first key row, then its first value row
    int64_t ldkv;           // row stride of the key / value rows
    const int *cu_q;        // (B+1) query rows of each segment
    const int *nk;          // (B) keys of each segment
    int B, max_nq, max_nk;  // max_nq / max_nk: host-side upper bounds
    const int *cache_rows;  // (T) rows of the cache that receive this call's keys / values, or NULL
    void *cache_k, *cache_v; // this layer's cache (rows, KV*D) when cache_rows is given
    void *ws;               // attention workspace (split-K decode) and its size
    size_t ws_bytes;
};

// One layer's activation slices (see cuda_llm_acts).
struct LayerActs {
    void *ln1;
    float *rstd1;
    void *qkv, *att;
    float *lse;
    void *h, *ln2;
    float *rstd2;
    void *gu;
};

// Layer l from its normalised input la.ln1 (already computed) over T rows: qkv, rotary, the cache write,
// attention, h = x_in + o_proj(attention) (the add in the GEMM's epilogue: one rounding), ln2 = rmsnorm(h),
// gate|up, act, and x_out = h + down_proj(act) the same way (x_out may be x_in; NULL skips it, for the
// backward's recomputation). The caller normalises x_out for the next layer.
int llm_layer_body(cuda_model *gm, int l, const void *x_in, void *x_out, int T, const float *cos, const float *sin,
                   const LayerActs &la, void *act, const AttnPlan &ap);

// The slices layer l uses in a (layer 0's unless keep = 1).
LayerActs llm_layer_acts(const cuda_model *gm, const cuda_llm_acts *a, int l);
// Layer l's input in a's residual stream (keep 1 or 2), or the shared stream (keep 0).
void *llm_layer_input(const cuda_model *gm, const cuda_llm_acts *a, int l);

// The attention plan of layer l over the last packed forward of a (keys and values in the layer's qkv rows).
AttnPlan llm_packed_plan(const cuda_model *gm, const cuda_llm_acts *a, int l);

// cuda_llm_forward with an optional cache write: when cache_rows (T, device) is given, every token's key and
// value (after rotary) also go to those rows of the per-layer caches cache_k / cache_v ((rows, KV*D) per
// layer, layer l at + l * cache_stride elements).
int llm_forward_impl(cuda_model *gm, const cuda_llm_batch *b, cuda_llm_acts *a, const int *cache_rows, void *cache_k,
                     void *cache_v, size_t cache_stride);

// ----------------------------------------------------------------------------
// region timing (profile.cu): no-ops unless a profile runs

void prof_mark(cuda_model *gm, const char *region);
void prof_phase(cuda_model *gm, const char *phase);

// The GPU work queued from here to the next mark belongs to `region` (a string literal) of the current phase;
// NULL: to nothing (the host is about to wait or return to its caller, or the work is not the model's), so
// that host time before the next mark is never charged to a region.
static inline void gm_mark(cuda_model *gm, const char *region) {
    if (gm->prof) prof_mark(gm, region);
}

// The phase (a string literal) of the regions marked from here on.
static inline void gm_phase(cuda_model *gm, const char *phase) {
    if (gm->prof) prof_phase(gm, phase);
}

// Declared at the top of an entry point: closes its last region when it returns, on error returns too.
struct GmIdleOnReturn {
    cuda_model *gm;
    ~GmIdleOnReturn() { gm_mark(gm, NULL); }
};
