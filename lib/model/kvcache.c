// The KV pool and its range allocator (see kvcache.h): first fit over the gaps between allocated ranges,
// compaction when only fragmentation blocks an allocation.
#include "model/kvcache.h"

#include "core/error.h"

#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// pool

static int64_t gcd64(int64_t a, int64_t b) {
    while (b) {
        int64_t t = a % b;
        a = b, b = t;
    }
    return a;
}

int maye_kv_pool_init(maye_kv_pool *p, const maye_model_config *c, int64_t n_rows) {
    memset(p, 0, sizeof *p);
    CHECK_OR_FAIL(n_rows >= 1, "rollout.max_batch_tokens must be at least 1 (got %lld)", (long long)n_rows);
    p->layers = c->layers;
    p->kvd = c->kv_heads * c->head_dim;
    p->granule = 16 / gcd64(16, p->kvd);
    p->n_rows = n_rows / p->granule * p->granule;
    CHECK_OR_FAIL(p->n_rows >= 1, "rollout.max_batch_tokens = %lld is below one allocation unit (%lld rows)",
                  (long long)n_rows, (long long)p->granule);
    size_t n = (size_t)p->layers * (size_t)p->n_rows * (size_t)p->kvd;
    void *k = NULL, *v = NULL;
    if (posix_memalign(&k, 64, n * sizeof(float)) != 0 || posix_memalign(&v, 64, n * sizeof(float)) != 0) {
        free(k);
        return maye_fail("cannot reserve %.2f GB for a KV cache of %lld tokens; lower rollout.max_batch_tokens",
                         2.0 * n * sizeof(float) / 1e9, (long long)n_rows);
    }
    p->k = k, p->v = v;
    return 0;
}

void maye_kv_pool_free(maye_kv_pool *p) {
    free(p->k);
    free(p->v);
    free(p->ranges);
    memset(p, 0, sizeof *p);
}

int64_t maye_kv_pool_round(const maye_kv_pool *p, int64_t n) {
    if (n < 1) n = 1;
    return (n + p->granule - 1) / p->granule * p->granule;
}

float *maye_kv_keys(const maye_kv_pool *p, int l, int h) {
    return p->k + ((size_t)l * (size_t)p->n_rows + (size_t)p->ranges[h].start) * (size_t)p->kvd;
}

float *maye_kv_values(const maye_kv_pool *p, int l, int h) {
    return p->v + ((size_t)l * (size_t)p->n_rows + (size_t)p->ranges[h].start) * (size_t)p->kvd;
}

// ----------------------------------------------------------------------------
// allocation

// Allocated handles ordered by their start row; returns how many (order has room for p->cap).
static int sorted_handles(const maye_kv_pool *p, int *order) {
    int n = 0;
    for (int h = 0; h < p->cap; h++) {
        if (!p->ranges[h].used) continue;
        int j = n++;
        while (j > 0 && p->ranges[order[j - 1]].start > p->ranges[h].start) order[j] = order[j - 1], j--;
        order[j] = h;
    }
    return n;
}

// Slides the ranges (given in start order) down to close the gaps between them, in every layer.
static void compact(maye_kv_pool *p, const int *order, int n) {
    int64_t next = 0;
    size_t kvd = (size_t)p->kvd;
    for (int i = 0; i < n; i++) {
        maye_kv_range *r = &p->ranges[order[i]];
        if (r->start != next) {
            for (int l = 0; l < p->layers; l++) {
                size_t base = (size_t)l * (size_t)p->n_rows;
                memmove(p->k + (base + (size_t)next) * kvd, p->k + (base + (size_t)r->start) * kvd,
                        sizeof(float) * (size_t)r->rows * kvd);
                memmove(p->v + (base + (size_t)next) * kvd, p->v + (base + (size_t)r->start) * kvd,
                        sizeof(float) * (size_t)r->rows * kvd);
            }
            r->start = next;
        }
        next += r->rows;
    }
}

// First gap of at least `rows` rows; -1 if none.
static int64_t first_fit(const maye_kv_pool *p, const int *order, int n, int64_t rows) {
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        const maye_kv_range *r = &p->ranges[order[i]];
        if (r->start - at >= rows) return at;
        at = r->start + r->rows;
    }
    return p->n_rows - at >= rows ? at : -1;
}

int maye_kv_alloc(maye_kv_pool *p, int64_t n) {
    int64_t rows = maye_kv_pool_round(p, n);
    if (rows > p->n_rows - p->reserved) return -1;
    int h = 0;
    while (h < p->cap && p->ranges[h].used) h++;
    if (h == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 16;
        p->ranges = xrealloc(p->ranges, sizeof *p->ranges * (size_t)p->cap);
        for (int i = h; i < p->cap; i++) p->ranges[i].used = 0;
    }
    int *order = xmalloc(sizeof(int) * (size_t)p->cap);
    int live = sorted_handles(p, order);
    int64_t at = first_fit(p, order, live, rows);
    if (at < 0) {
        compact(p, order, live);
        at = first_fit(p, order, live, rows);
    }
    free(order);
    if (at < 0) maye_die("KV pool: %lld free rows but no room for %lld after compaction",
                         (long long)(p->n_rows - p->reserved), (long long)rows);
    p->ranges[h] = (maye_kv_range){at, rows, 1};
    p->reserved += rows;
    return h;
}

void maye_kv_release(maye_kv_pool *p, int h) {
    if (h < 0 || h >= p->cap || !p->ranges[h].used) maye_die("KV pool: releasing handle %d that is not allocated", h);
    p->reserved -= p->ranges[h].rows;
    p->ranges[h].used = 0;
}

void maye_kv_copy_prefix(maye_kv_pool *p, int dst, int src, int64_t n) {
    size_t bytes = sizeof(float) * (size_t)n * (size_t)p->kvd;
    for (int l = 0; l < p->layers; l++) {
        memcpy(maye_kv_keys(p, l, dst), maye_kv_keys(p, l, src), bytes);
        memcpy(maye_kv_values(p, l, dst), maye_kv_values(p, l, src), bytes);
    }
}
