// Philox4x32-10 and helpers over it (see rng.h).
#include "core/rng.h"

#include <math.h>

// ----------------------------------------------------------------------------
// Philox4x32-10

static inline uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t *hi) {
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

void maye_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint32_t hi0, hi1;
        uint32_t lo0 = mulhilo(0xD2511F53u, c0, &hi0);
        uint32_t lo1 = mulhilo(0xCD9E8D57u, c2, &hi1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0, c1 = n1, c2 = n2, c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

uint64_t maye_mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

uint64_t maye_stream_id(uint64_t a, uint64_t b, uint64_t c) {
    return maye_mix64(maye_mix64(maye_mix64(a) ^ b) ^ c);
}

static void block(uint64_t seed, uint64_t stream, uint64_t index, uint32_t out[4]) {
    uint32_t ctr[4] = {(uint32_t)index, (uint32_t)(index >> 32), (uint32_t)stream, (uint32_t)(stream >> 32)};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    maye_philox4x32(ctr, key, out);
}

float maye_uniform_at(uint64_t seed, uint64_t stream, uint64_t index) {
    uint32_t out[4];
    block(seed, stream, index, out);
    return (float)(out[0] >> 8) * (1.0f / 16777216.0f);
}

// ----------------------------------------------------------------------------
// sequential generator

void maye_rng_init(maye_rng *r, uint64_t seed, uint64_t stream) {
    r->seed = seed;
    r->stream = stream;
    r->index = 0;
    r->pos = 4;
}

uint32_t maye_rng_u32(maye_rng *r) {
    if (r->pos == 4) {
        block(r->seed, r->stream, r->index++, r->buf);
        r->pos = 0;
    }
    return r->buf[r->pos++];
}

uint64_t maye_rng_u64(maye_rng *r) {
    uint64_t hi = maye_rng_u32(r);
    return (hi << 32) | maye_rng_u32(r);
}

double maye_rng_uniform(maye_rng *r) { return (double)(maye_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }

uint64_t maye_rng_below(maye_rng *r, uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n; // reject the biased tail
    uint64_t x;
    do x = maye_rng_u64(r);
    while (x >= limit);
    return x % n;
}

float maye_rng_normal(maye_rng *r) {
    double u1 = maye_rng_uniform(r), u2 = maye_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void maye_rng_shuffle_i64(maye_rng *r, int64_t *a, int64_t n) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)maye_rng_below(r, (uint64_t)i + 1);
        int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}
