// The GPU Philox stream against core/rng.c (bit-exact), and cuda_sample_forward against two CPU samplers:
// one written here straight from the definition in cuda_kernels.h (sort by key, prefix sums, scan in id
// order) and the rollout's own (lib/model/sample.c). The same token for every row, draw index and setting
// (greedy, temperatures, top-k with ties at the cut, top-p down to a single token, both at once, -inf
// logits, suppressed ids, one-token and 151936-token vocabularies), and the log-prob within 1e-5.
// Exits 77 without a GPU.
#include "cuda_test.h"

extern "C" {
#include "model/sample.h"
}
#include "kernels/cuda/sampling_def.h"

#include <algorithm>
#include <vector>

// ----------------------------------------------------------------------------
// Philox

static void test_uniform(void) {
    uint64_t seeds[] = {0, 1, 0x123456789abcdefULL, UINT64_MAX};
    uint64_t streams[] = {0, 7, maye_stream_id(3, 4, 5), UINT64_MAX - 1};
    uint64_t starts[] = {0, 1000, (1ULL << 32) - 5, UINT64_MAX - 300};
    int64_t n = 1000;
    float *d = (float *)dev_alloc(sizeof(float) * (size_t)n);
    for (int i = 0; i < 4; i++) {
        dev_poison(d, sizeof(float) * (size_t)n);
        EXPECT_GPU_OK(cuda_uniform_fill(d, seeds[i], streams[i], starts[i], n, NULL));
        float *got = dev_to_f32(d, n, CUDA_F32);
        int bad = 0;
        for (int64_t j = 0; j < n; j++) {
            float want = maye_uniform_at(seeds[i], streams[i], starts[i] + (uint64_t)j);
            if (got[j] != want && bad++ < 5)
                fprintf(stderr, "  uniform seed %llu stream %llu index %llu: got %.9g want %.9g\n",
                        (unsigned long long)seeds[i], (unsigned long long)streams[i],
                        (unsigned long long)(starts[i] + (uint64_t)j), got[j], want);
        }
        EXPECT(bad == 0, "uniform_fill: %d of %lld draws differ from maye_uniform_at", bad, (long long)n);
        free(got);
    }
    dev_free(d);
}

// ----------------------------------------------------------------------------
// the CPU sampler, step by step as cuda_kernels.h defines it

// zin (V) the row's logits; the ids in banned (n_banned) are -inf for the draw, not for the log-prob.
static int64_t ref_sample(const float *zin, int V, float tau, int K, float P, float u, const int32_t *banned,
                          int n_banned, double *lp) {
    std::vector<float> zv(zin, zin + V);
    for (int j = 0; j < n_banned; j++) zv[banned[j]] = -INFINITY;
    const float *z = zv.data();
    float zmax = -INFINITY, raw_max = -INFINITY;
    int argmax = 0;
    for (int i = 0; i < V; i++) {
        if (z[i] > zmax) zmax = z[i], argmax = i;
        raw_max = zin[i] > raw_max ? zin[i] : raw_max;
    }
    bool greedy = !(tau > MAYE_SAMPLE_GREEDY_TEMPERATURE);
    double t = greedy ? 1.0 : tau, esum = 0;
    for (int i = 0; i < V; i++) esum += exp((double)zin[i] / t - (double)raw_max / t);
    int64_t token = argmax;
    if (!greedy) {
        std::vector<int> order(V);
        for (int i = 0; i < V; i++) order[i] = i;
        std::sort(order.begin(), order.end(), [&](int a, int b) {
            uint32_t ka = maye_sample_key(z[a]), kb = maye_sample_key(z[b]);
            return ka != kb ? ka > kb : a < b;
        });
        std::vector<uint64_t> q(V);
        for (int i = 0; i < V; i++) q[i] = maye_sample_weight(z[i], zmax, tau);
        int k = (K > 0 && K < V) ? K : V;
        uint64_t zk = 0;
        for (int r = 0; r < k; r++) zk += q[order[r]];
        int n = k;
        if (P < 1.0f) {
            uint64_t target = maye_sample_scale((double)P, zk), cum = 0;
            n = 1;
            for (int m = 1; m <= k; m++) {
                cum += q[order[m - 1]];
                if (cum >= target) {
                    n = m;
                    break;
                }
            }
        }
        std::vector<char> kept(V, 0);
        uint64_t S = 0;
        for (int r = 0; r < n; r++) kept[order[r]] = 1, S += q[order[r]];
        token = order[0];
        if (S > 0) {
            uint64_t rr = maye_sample_scale((double)u, S), c = 0;
            for (int i = 0; i < V; i++) {
                if (kept[i]) c += q[i];
                if (c > rr) {
                    token = i;
                    break;
                }
            }
        }
    }
    *lp = ((double)zin[token] / t - (double)raw_max / t) - log(esum);
    return token;
}

// ----------------------------------------------------------------------------
// GPU against CPU

struct SampleRow {
    float tau;
    int K;
    float P;
};

// B rows of V logits (kind 0: normal * scale, kind 1: rounded to integers so many ties, kind 2: with -inf
// entries), each with its own settings; `draws` indices per row. Ids 0..2 get the largest logits of their
// row and are banned in odd rows (suppression), so they win there only if suppression fails.
static void run_batch(int V, int kind, float scale, const std::vector<SampleRow> &rows, int draws) {
    int B = (int)rows.size();
    int64_t ld = V + 3;
    float *z = host_randn((int64_t)B * ld, scale);
    for (int64_t i = 0; i < (int64_t)B * ld; i++) {
        if (kind == 1) z[i] = roundf(z[i]);
        if (kind == 2 && maye_rng_below(&test_rng, 4) == 0) z[i] = -INFINITY;
    }
    std::vector<int32_t> banned;
    for (int j = 0; j < 3 && j < V - 1; j++) banned.push_back(j);
    int nb = (int)banned.size();
    std::vector<uint8_t> suppress(B);
    for (int b = 0; b < B; b++) {
        suppress[b] = (uint8_t)(b % 2);
        for (int j = 0; j < nb; j++) z[(int64_t)b * ld + j] = 4.0f * scale + (float)j;
        if (kind == 2) z[(int64_t)b * ld + V - 1] = 1.0f; // a finite logit that is never banned
    }
    std::vector<float> tau(B), P(B);
    std::vector<int> K(B);
    std::vector<uint64_t> streams(B), idx(B);
    for (int b = 0; b < B; b++) tau[b] = rows[b].tau, K[b] = rows[b].K, P[b] = rows[b].P;
    for (int b = 0; b < B; b++) streams[b] = maye_stream_id(77, (uint64_t)b, 1);
    uint64_t seed = 2024;
    float *dz = (float *)dev_from_f32(z, (int64_t)B * ld, CUDA_F32), *dtau = (float *)dev_copy(tau.data(), sizeof(float) * B);
    float *dP = (float *)dev_copy(P.data(), sizeof(float) * B), *dlp = (float *)dev_alloc(sizeof(float) * B);
    int *dK = (int *)dev_copy(K.data(), sizeof(int) * B);
    uint64_t *ds = (uint64_t *)dev_copy(streams.data(), sizeof(uint64_t) * B), *di = (uint64_t *)dev_alloc(sizeof(uint64_t) * B);
    int32_t *dban = (int32_t *)dev_copy(banned.data(), sizeof(int32_t) * (size_t)(nb > 0 ? nb : 1));
    uint8_t *dsup = (uint8_t *)dev_copy(suppress.data(), (size_t)B);
    int64_t *dtok = (int64_t *)dev_alloc(sizeof(int64_t) * B);
    std::vector<int64_t> tok(B);
    std::vector<float> lp(B), zrow(V);
    maye_sampler cpu;
    maye_sampler_init(&cpu, V);
    int mismatches = 0;
    for (int d = 0; d < draws; d++) {
        for (int b = 0; b < B; b++) idx[b] = (uint64_t)(d * 1000 + b);
        CUDA_CHECK(cudaMemcpy(di, idx.data(), sizeof(uint64_t) * B, cudaMemcpyHostToDevice));
        dev_poison(dtok, sizeof(int64_t) * B), dev_poison(dlp, sizeof(float) * B);
        EXPECT_GPU_OK(cuda_sample_forward(dtok, dlp, dz, ld, B, V, dtau, dK, dP, seed, ds, di, dban, nb, dsup, NULL));
        CUDA_CHECK(cudaMemcpy(tok.data(), dtok, sizeof(int64_t) * B, cudaMemcpyDeviceToHost));
        CUDA_CHECK(cudaMemcpy(lp.data(), dlp, sizeof(float) * B, cudaMemcpyDeviceToHost));
        for (int b = 0; b < B; b++) {
            const float *zr = z + (int64_t)b * ld;
            float u = maye_uniform_at(seed, streams[b], idx[b]);
            double want_lp;
            int64_t want = ref_sample(zr, V, tau[b], K[b], P[b], u, banned.data(), suppress[b] ? nb : 0, &want_lp);
            // the rollout's CPU sampler (its settings allow top_k >= 0 and top_p in (0, 1] only)
            int64_t cpu_tok = want;
            float cpu_lp = (float)want_lp;
            if (K[b] >= 0 && P[b] > 0.0f) {
                maye_sample_params sp = {tau[b], P[b], K[b]};
                std::copy(zr, zr + V, zrow.begin());
                cpu_tok = maye_sample(&cpu, &sp, zrow.data(), banned.data(), suppress[b] ? nb : 0, u, &cpu_lp);
            }
            if (tok[b] != want || cpu_tok != want) {
                if (mismatches++ < 5)
                    fprintf(stderr, "  sample V %d kind %d row %d draw %d (tau %g, top_k %d, top_p %g, suppress %d): GPU "
                                    "token %lld, reference %lld, maye_sample %lld\n",
                            V, kind, b, d, tau[b], K[b], P[b], suppress[b], (long long)tok[b], (long long)want,
                            (long long)cpu_tok);
            } else if (!(fabs(lp[b] - want_lp) <= 1e-5 * (1 + fabs(want_lp))) ||
                       !(fabs(cpu_lp - want_lp) <= 1e-5 * (1 + fabs(want_lp)))) {
                if (mismatches++ < 5)
                    fprintf(stderr, "  sample V %d kind %d row %d draw %d: token %lld log-prob GPU %.9g, reference "
                                    "%.9g, maye_sample %.9g\n",
                            V, kind, b, d, (long long)want, lp[b], want_lp, cpu_lp);
            }
        }
    }
    EXPECT(mismatches == 0, "sample_forward V %d kind %d: %d of %d draws differ between GPU and CPU samplers", V, kind,
           mismatches, B * draws);
    maye_sampler_free(&cpu);
    free(z);
    dev_free(dz), dev_free(dtau), dev_free(dP), dev_free(dlp), dev_free(dK), dev_free(ds), dev_free(di), dev_free(dtok);
    dev_free(dban), dev_free(dsup);
}

int main(void) {
    cuda_ctx *ctx = cuda_test_start("test_cuda_sampling");
    maye_rng_init(&test_rng, 555, 4);
    test_uniform();
    std::vector<SampleRow> settings = {
        {1.0f, 0, 1.0f},  {0.0f, 0, 1.0f},   {0.6f, 0, 1.0f},  {0.01f, 0, 0.001f},      {1.0f, 5, 1.0f},
        {1.0f, 50, 0.9f}, {1.0f, 0, 0.5f},   {1.0f, 1, 1.0f},  {0.7f, 0, 0.0f},         {1.3f, 2, 0.95f},
        {1.0f, -3, 0.8f}, {2.0f, 0, 0.99f},  {1e-6f, 7, 0.5f}, {1.0f, 100000000, 1.0f},
    };
    run_batch(1000, 0, 1.0f, settings, 20);
    run_batch(1000, 0, 5.0f, settings, 10);
    run_batch(777, 1, 2.0f, settings, 20); // many ties: the cuts fall inside runs of equal logits
    run_batch(300, 2, 1.0f, settings, 10);
    run_batch(1, 0, 1.0f, settings, 3);
    run_batch(7, 1, 1.0f, settings, 10);
    run_batch(151936, 0, 3.0f, {{1.0f, 0, 1.0f}, {1.0f, 50, 0.9f}, {0.6f, 0, 0.95f}, {0.0f, 0, 1.0f}}, 3);
    EXPECT_GPU_OK(cuda_sample_forward(NULL, NULL, NULL, 8, 0, 8, NULL, NULL, NULL, 1, NULL, NULL, NULL, 0, NULL, NULL));
    EXPECT_FAIL(cuda_sample_forward(NULL, NULL, NULL, 8, 1, 8, NULL, NULL, NULL, 1, NULL, NULL, NULL, 300, NULL, NULL),
                "banned ids");
    cuda_ctx_free(ctx);
    return TEST_RESULT();
}
