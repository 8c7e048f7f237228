// The CPU sampler (see sample.h for the definition). Without truncation the draw scans the vocabulary in id
// order; with top-k or top-p only the candidates whose weight can be non-zero (z / tau - zmax / tau >=
// MAYE_SAMPLE_MIN_D, a prefix of the rank order) are sorted, which is the whole vocabulary only for very flat
// distributions.
#include "model/sample.h"

#include "core/error.h"
#include "core/rng.h"
#include "core/util.h"
#include "kernels/cuda/sampling_def.h"
#include "model/lanes.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DRAW_BLOCK 64 // weights per block sum of the draw without truncation

// ----------------------------------------------------------------------------
// setup

void maye_sampler_init(maye_sampler *s, int V) {
    s->V = V;
    s->block = xmalloc(sizeof(uint64_t) * (size_t)(V / DRAW_BLOCK + 1));
    s->q = xmalloc(sizeof(uint64_t) * (size_t)V);
    s->cand = xmalloc(sizeof(int32_t) * (size_t)V);
    s->e = xmalloc(sizeof(float) * (size_t)V);
    s->rank = xmalloc(sizeof(uint64_t) * (size_t)V);
}

void maye_sampler_free(maye_sampler *s) {
    free(s->q), free(s->cand), free(s->e), free(s->rank), free(s->block);
    memset(s, 0, sizeof *s);
}

int maye_sample_params_check(const maye_sample_params *p) {
    CHECK_OR_FAIL(p->temperature >= 0 && isfinite(p->temperature),
                  "rollout.temperature must be >= 0 (got %g; <= %g is greedy)", p->temperature,
                  MAYE_GREEDY_TEMPERATURE);
    CHECK_OR_FAIL(p->top_p > 0 && p->top_p <= 1, "rollout.top_p must be in (0, 1] (got %g)", p->top_p);
    CHECK_OR_FAIL(p->top_k >= 0, "rollout.top_k must be >= 0 (0 = off; got %d)", p->top_k);
    return 0;
}

// ----------------------------------------------------------------------------
// streams

#define ROLLOUT_STREAM_TAG 0x726f6c6c6f7574ULL // "rollout"

uint64_t maye_sample_stream_key(const char *sample_id, int64_t epoch, int64_t step) {
    const char *id = sample_id ? sample_id : "";
    return maye_stream_id(maye_fnv1a(MAYE_FNV_INIT, id, strlen(id)), (uint64_t)epoch, (uint64_t)step);
}

uint64_t maye_sample_stream(uint64_t key, int index) {
    return maye_stream_id(key, (uint64_t)index, ROLLOUT_STREAM_TAG);
}

// ----------------------------------------------------------------------------
// log-probs

// log sum_i exp(z_i / tau) over the V logits, in double (exponentials in float, fixed summation order).
// max_i (z_i / tau) is (max_i z_i) / tau: division by tau > 0 keeps the order, rounding included.
static double log_sum_exp(maye_sampler *s, const float *z, float tau) {
    int V = s->V, i = 0;
    float m = lanes_row_max(z, V) / tau, *e = s->e;
#ifdef LANES_AVX2
    for (; i + 8 <= V; i += 8) {
        __m256 x = _mm256_sub_ps(_mm256_div_ps(_mm256_loadu_ps(z + i), _mm256_set1_ps(tau)), _mm256_set1_ps(m));
        x = _mm256_blendv_ps(_mm256_set1_ps(-87.0f), x, _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_GE_OQ));
        _mm256_storeu_ps(e + i, lanes_exp(x));
    }
#endif
    for (; i < V; i++) e[i] = lanes_exp1(z[i] / tau - m);
    double acc[4] = {0, 0, 0, 0};
    for (i = 0; i + 4 <= V; i += 4)
        for (int j = 0; j < 4; j++) acc[j] += e[i + j];
    for (; i < V; i++) acc[0] += e[i];
    return (double)m + log((acc[0] + acc[1]) + (acc[2] + acc[3]));
}

// ----------------------------------------------------------------------------
// drawing

static int32_t argmax(const float *z, int V) {
    int32_t best = 0;
    for (int i = 1; i < V; i++)
        if (z[i] > z[best] || (z[best] != z[best] && z[i] == z[i])) best = i;
    return best;
}

// The rank-0 token: the largest key, the lowest id among equal keys.
static int32_t top_key(const float *z, int V) {
    int32_t best = 0;
    uint32_t kb = maye_sample_key(z[0]);
    for (int i = 1; i < V; i++) {
        uint32_t ki = maye_sample_key(z[i]);
        if (ki > kb) best = i, kb = ki;
    }
    return best;
}

// q_i = maye_sample_weight(z_i, zmax, tau) for every token: 8 lanes at a time with the same steps (the
// exponential evaluated on a clamped argument and discarded where the weight is 0), the rest one by one.
static void weights(maye_sampler *s, const float *z, float zmax, float tau) {
    int V = s->V, i = 0;
#ifdef LANES_AVX2
    float *e = s->e;
    __m256 vt = _mm256_set1_ps(tau), vzt = _mm256_set1_ps(zmax / tau), lo = _mm256_set1_ps(MAYE_SAMPLE_MIN_D);
    __m256 zero = _mm256_setzero_ps(), scale = _mm256_set1_ps(1099511627776.0f); // 2^40
    for (; i + 8 <= V; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_div_ps(_mm256_loadu_ps(z + i), vt), vzt);
        __m256 in = _mm256_cmp_ps(d, lo, _CMP_GE_OQ); // false for NaN, as !(d >= MIN_D)
        __m256 dc = _mm256_blendv_ps(zero, d, _mm256_cmp_ps(d, zero, _CMP_LE_OQ));
        dc = _mm256_blendv_ps(lo, dc, in);
        __m256 w = _mm256_blendv_ps(_mm256_set1_ps(-1.0f), _mm256_mul_ps(lanes_exp(dc), scale), in);
        _mm256_storeu_ps(e + i, w);
    }
    // q = (uint64_t)w for w >= 0 (whole or not, below 2^41), 0 for the -1 marks: four at a time through
    // double, truncated, then 2^52 added so the low 52 bits of the double hold the integer
    __m256d magic = _mm256_set1_pd(4503599627370496.0); // 2^52
    for (int j = 0; j + 4 <= i; j += 4) {
        __m256d d = _mm256_cvtps_pd(_mm_max_ps(_mm_loadu_ps(e + j), _mm_setzero_ps()));
        d = _mm256_add_pd(_mm256_round_pd(d, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC), magic);
        _mm256_storeu_si256((__m256i *)(s->q + j),
                            _mm256_sub_epi64(_mm256_castpd_si256(d), _mm256_castpd_si256(magic)));
    }
#endif
    for (; i < V; i++) s->q[i] = maye_sample_weight(z[i], zmax, tau);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

// Ranks the candidates (ids whose weight can be non-zero) and returns the kept ones, sorted by id, in
// s->cand; the count is returned.
static int truncate_ranked(maye_sampler *s, const maye_sample_params *p, const float *z, float zmax, int k) {
    int V = s->V, nc = 0;
    float tau = p->temperature;
    // (~key, id) ascending = key descending, id ascending
    for (int i = 0; i < V; i++)
        if (z[i] / tau - zmax / tau >= MAYE_SAMPLE_MIN_D)
            s->rank[nc++] = (uint64_t)(~maye_sample_key(z[i])) << 32 | (uint32_t)i;
    qsort(s->rank, (size_t)nc, sizeof *s->rank, cmp_u64);
    int lim = k < nc ? k : nc; // ranks beyond the candidates weigh 0
    int n = lim;
    if (p->top_p < 1.0f) {
        uint64_t Z = 0, run = 0;
        for (int j = 0; j < lim; j++) Z += s->q[(uint32_t)s->rank[j]];
        uint64_t target = maye_sample_scale((double)p->top_p, Z);
        n = lim < 1 ? lim : 1;
        for (int j = 0; j < lim; j++) {
            run += s->q[(uint32_t)s->rank[j]];
            if (run >= target) {
                n = j + 1;
                break;
            }
        }
    }
    for (int j = 0; j < n; j++) s->cand[j] = (int32_t)(uint32_t)s->rank[j];
    qsort(s->cand, (size_t)n, sizeof *s->cand, cmp_i32);
    return n;
}

int32_t maye_sample(maye_sampler *s, const maye_sample_params *p, float *z, const int32_t *banned, int n_banned,
                    float u, float *logprob) {
    int V = s->V;
    float tau = p->temperature;
    double lse = logprob ? log_sum_exp(s, z, tau > MAYE_GREEDY_TEMPERATURE ? tau : 1.0f) : 0;
    for (int i = 0; i < n_banned; i++) z[banned[i]] = -INFINITY;

    int32_t token;
    if (tau <= MAYE_GREEDY_TEMPERATURE) {
        token = argmax(z, V);
    } else {
        float zmax = lanes_row_max(z, V);
        weights(s, z, zmax, tau);
        int k = p->top_k > 0 && p->top_k < V ? p->top_k : V;
        // the kept ids in id order: all of them, or the ranked candidates that survive top-k and top-p
        int all = k == V && p->top_p >= 1.0f;
        int n_kept = all ? V : truncate_ranked(s, p, z, zmax, k);
        const int32_t *kept = s->cand;
        uint64_t S = 0, run = 0;
        int nb = all ? V / DRAW_BLOCK : 0, j0 = 0; // the draw's scan starts at j0, run = the weights before it
        for (int b = 0; b < nb; b++) { // block sums: integer sums are exact in any order
            uint64_t bs = 0;
            for (int j = b * DRAW_BLOCK; j < (b + 1) * DRAW_BLOCK; j++) bs += s->q[j];
            s->block[b] = bs;
            S += bs;
        }
        for (int j = nb * DRAW_BLOCK; j < n_kept; j++) S += s->q[all ? j : kept[j]];
        token = -1;
        if (S == 0) token = top_key(z, V);
        uint64_t r = maye_sample_scale((double)u, S);
        for (int b = 0; b < nb && run + s->block[b] <= r; b++) run += s->block[b], j0 += DRAW_BLOCK;
        for (int j = j0; j < n_kept && token < 0; j++) {
            int32_t id = all ? j : kept[j];
            run += s->q[id];
            if (run > r) token = id;
        }
        for (int j = n_kept - 1; j >= 0 && token < 0; j--) // r >= S only through rounding
            if (s->q[all ? j : kept[j]] > 0) token = all ? j : kept[j];
    }
    if (logprob) {
        float tl = tau > MAYE_GREEDY_TEMPERATURE ? tau : 1.0f;
        *logprob = (float)((double)(z[token] / tl) - lse);
    }
    return token;
}
