// Philox: known-answer vector from the Random123 paper, determinism, stream independence, uniformity.
#include "core/rng.h"
#include "test.h"

#include <math.h>

int main(void) {
    // Random123 kat_vectors: philox4x32_10 with zero counter and key
    uint32_t ctr[4] = {0, 0, 0, 0}, key[2] = {0, 0}, out[4];
    maye_philox4x32(ctr, key, out);
    EXPECT(out[0] == 0x6627e8d5u && out[1] == 0xe169c58du && out[2] == 0xbc57ac4cu && out[3] == 0x9b00dbd8u,
           "philox(0,0) = %08x %08x %08x %08x", out[0], out[1], out[2], out[3]);
    uint32_t ctr2[4] = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, key2[2] = {0xffffffffu, 0xffffffffu};
    maye_philox4x32(ctr2, key2, out);
    EXPECT(out[0] == 0x408f276du && out[1] == 0x41c83b0eu && out[2] == 0xa20bc7c6u && out[3] == 0x6d5451fdu,
           "philox(ff..) = %08x %08x %08x %08x", out[0], out[1], out[2], out[3]);

    maye_rng a, b, c;
    maye_rng_init(&a, 42, 7);
    maye_rng_init(&b, 42, 7);
    maye_rng_init(&c, 42, 8);
    int same = 1, diff = 0;
    for (int i = 0; i < 1000; i++) {
        uint32_t x = maye_rng_u32(&a), y = maye_rng_u32(&b), z = maye_rng_u32(&c);
        same &= x == y;
        diff += x != z;
    }
    EXPECT(same, "same seed and stream must repeat");
    EXPECT(diff > 990, "different streams must differ (%d)", diff);

    // uniform: mean 0.5, var 1/12
    maye_rng_init(&a, 1, 1);
    double s = 0, s2 = 0;
    int n = 200000;
    for (int i = 0; i < n; i++) {
        double u = maye_rng_uniform(&a);
        EXPECT(u >= 0 && u < 1, "uniform out of range");
        s += u, s2 += u * u;
    }
    double mean = s / n, var = s2 / n - mean * mean;
    EXPECT(fabs(mean - 0.5) < 0.005 && fabs(var - 1.0 / 12) < 0.002, "mean %f var %f", mean, var);
    float u0 = maye_uniform_at(5, 6, 7), u1 = maye_uniform_at(5, 6, 7);
    EXPECT(u0 == u1 && u0 >= 0 && u0 < 1, "stateless draw");
    int64_t perm[10];
    for (int i = 0; i < 10; i++) perm[i] = i;
    maye_rng_shuffle_i64(&a, perm, 10);
    int seen[10] = {0};
    for (int i = 0; i < 10; i++) seen[perm[i]]++;
    for (int i = 0; i < 10; i++) EXPECT(seen[i] == 1, "shuffle is a permutation");
    return TEST_RESULT();
}
