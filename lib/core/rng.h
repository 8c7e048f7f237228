// Counter-based random numbers (Philox4x32-10, Salmon et al. 2011). A draw is a pure function of
// (seed, stream, index), so every sample can own a stream derived from (seed, sample id, sample index)
// and results do not depend on batch composition, thread count or order; the CUDA twin computes the same
// numbers on the GPU.
#pragma once
#include <stdint.h>

// One Philox4x32-10 block: 4 random 32-bit words for a 128-bit counter and 64-bit key.
void maye_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

// A 64-bit mixer (SplitMix64 finaliser) used to derive stream ids from several integers.
uint64_t maye_mix64(uint64_t x);
// A stream id for (a, b, c), e.g. (sample id hash, sample index, purpose).
uint64_t maye_stream_id(uint64_t a, uint64_t b, uint64_t c);

// Stateless draw: a uniform float in [0, 1) from (seed, stream, index), 24 bits of mantissa.
float maye_uniform_at(uint64_t seed, uint64_t stream, uint64_t index);

// A sequential generator over one stream.
typedef struct {
    uint64_t seed, stream, index; // next block is philox(key=seed, ctr=(index, stream))
    uint32_t buf[4];
    int pos; // next unused word in buf (4 = empty)
} maye_rng;

void maye_rng_init(maye_rng *r, uint64_t seed, uint64_t stream);
uint32_t maye_rng_u32(maye_rng *r);
uint64_t maye_rng_u64(maye_rng *r);
double maye_rng_uniform(maye_rng *r);          // [0, 1), 53 bits
uint64_t maye_rng_below(maye_rng *r, uint64_t n); // uniform in [0, n), unbiased; n > 0
float maye_rng_normal(maye_rng *r);            // standard normal (Box-Muller)
// Fisher-Yates shuffle of n int64 values.
void maye_rng_shuffle_i64(maye_rng *r, int64_t *a, int64_t n);
