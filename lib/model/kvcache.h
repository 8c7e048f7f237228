// The KV cache of the generation engine: one pool of key and value rows shared by every live sequence, with
// a range allocator. A sequence owns one contiguous range of rows (the same rows in every layer), reserved
// whole when it is admitted (prompt + max_tokens), so the attention kernel reads its keys as one strided
// block and decoding never has to grow or move it. Ranges start on 64-byte boundaries, so a sequence's rows
// have the same alignment wherever it lands (kernels then take the same path alone or in a batch). When no
// hole is large enough but the free rows would be, the pool slides the ranges together (compaction); handles
// stay valid, only the rows' addresses change, so callers look them up after every allocation.
//
// Dimension letters: L layers, NT rows of the pool (rollout.max_batch_tokens), KVD = kv-heads * head dim.
#pragma once
#include "model/config.h"

#include <stdint.h>

typedef struct {
    int64_t start; // first row, a multiple of the granule
    int64_t rows;  // rows reserved (a multiple of the granule)
    int used;      // 1 while the handle is allocated
} maye_kv_range;

typedef struct {
    int layers;       // L
    int kvd;          // KVD
    int64_t n_rows;   // NT
    int64_t granule;  // rows per allocation unit: granule * KVD floats is a multiple of 16 (64 bytes)
    float *k, *v;     // (L, NT, KVD) keys (after rotary) and values; pages are touched only when used
    maye_kv_range *ranges; // (cap) indexed by handle
    int cap;
    int64_t reserved; // rows held by allocated ranges
} maye_kv_pool;

// A pool of n_rows rows per layer for the model's L and KVD. Fails (naming rollout.max_batch_tokens) when
// n_rows < 1 or the memory cannot be reserved.
int maye_kv_pool_init(maye_kv_pool *p, const maye_model_config *c, int64_t n_rows);
void maye_kv_pool_free(maye_kv_pool *p);
// Rows an allocation of n rows really takes (n rounded up to the granule).
int64_t maye_kv_pool_round(const maye_kv_pool *p, int64_t n);
// Reserves a range of at least n rows: returns its handle (>= 0), or -1 when the free rows do not suffice
// (compacting first when only fragmentation stands in the way). Never fails otherwise.
int maye_kv_alloc(maye_kv_pool *p, int64_t n);
void maye_kv_release(maye_kv_pool *p, int h);
// First row of range h in layer l: (rows, KVD) keys / values.
float *maye_kv_keys(const maye_kv_pool *p, int l, int h);
float *maye_kv_values(const maye_kv_pool *p, int l, int h);
// Copies rows [0, n) of range src to range dst in every layer (a shared prompt prefix).
void maye_kv_copy_prefix(maye_kv_pool *p, int dst, int src, int64_t n);
