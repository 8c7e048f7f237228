// The sampling kernels of lib/kernels/cuda/sampling.cuh and philox.cuh on the CPU emulator (CUB's block
// reduce and scan through the stand-ins in tests/cuda_emu/include/cub): uniform_fill_kernel bit for bit
// against maye_uniform_at (core/rng.c), and sample_kernel against two CPU samplers, one written here from
// the definition above cuda_sample_forward (cuda_kernels.h: sort by key, prefix sums, scan in id order) and
// the rollout's own maye_sample (lib/model/sample.c): the same token for every row and draw, and the log-prob
// within 1e-5. Settings as test_cuda_sampling.cu at smaller sizes: greedy, temperatures, top-k with ties at
// the cut, top-p down to a single token, both at once, negative top-k and top-p 0 (reference only), -inf
// logits, suppressed ids (odd rows; a batch without the suppress array), vocabularies smaller than the draw's
// 16 strips (1, 7, 13, 100 tokens), vocabularies that are no multiple of the strips or their pieces, and the
// full Qwen2 vocabulary. Rows built against the draw's two-level search: a background of ties with spikes on
// both sides of every strip boundary (the top-k and top-p cuts fall in the ties, and the kept ties span
// strips), all the weight in the last ids, all of it in the first id and on both sides of one strip boundary,
// kept ids behind skipped ties at the cut, and flat rows (every weight 2^40) drawn with u on a grid that puts r
// exactly on the kept weight before an id; draws with u within 2^-10 of 0 or 1 (the crossing at the first or
// last weighted id). Launches as sampling.cu. Dimension letters: B rows, V vocabulary.
#include "kernels/cuda/sampling.cuh"

#include "cuda_emu_test.h"

extern "C" {
#include "model/sample.h"
}

#include <algorithm>

// ----------------------------------------------------------------------------
// Philox

static void test_uniform(void) {
    uint64_t seeds[] = {0, 1, 0x123456789abcdefULL, UINT64_MAX};
    uint64_t streams[] = {0, 7, maye_stream_id(3, 4, 5), UINT64_MAX - 1};
    uint64_t starts[] = {0, 1000, (1ULL << 32) - 5, UINT64_MAX - 300};
    int64_t n = 1000;
    for (int i = 0; i < 4; i++) {
        for (bool small : {false, true}) {
            emu_array<float> d(n);
            cuda_emu_launch(uniform_fill_kernel, dim3(small ? 3u : grid_for(n, 256, 8192)), dim3(256), 0, d.data(),
                            seeds[i], streams[i], starts[i], n);
            int bad = 0;
            for (int64_t j = 0; j < n; j++) {
                float want = maye_uniform_at(seeds[i], streams[i], starts[i] + (uint64_t)j);
                if (d.data()[j] != want && bad++ < 5)
                    fprintf(stderr, "  uniform seed %llu stream %llu index %llu: got %.9g want %.9g\n",
                            (unsigned long long)seeds[i], (unsigned long long)streams[i],
                            (unsigned long long)(starts[i] + (uint64_t)j), d.data()[j], want);
            }
            EXPECT(bad == 0 && d.guards_intact(), "uniform_fill_kernel (grid %s): %d of %lld draws differ from "
                   "maye_uniform_at, guards %s", small ? "3" : "sampling.cu", bad, (long long)n,
                   d.guards_intact() ? "intact" : "written");
        }
    }
    printf("%-34s %d streams x 1000 draws bit-exact with maye_uniform_at\n", "uniform_fill_kernel", 4);
}

// ----------------------------------------------------------------------------
// the definition, step by step

// Row z (V) as given; the draw sees the banned ids (n_banned) as -inf, the log-prob does not. *lp: the
// log-prob in double.
static int64_t def_sample(const float *z, int V, float tau, int K, float P, float u, const int32_t *banned,
                          int n_banned, double *lp) {
    std::vector<float> zs(z, z + V);
    for (int j = 0; j < n_banned; j++) zs[(size_t)banned[j]] = -INFINITY;
    bool greedy = !(tau > MAYE_SAMPLE_GREEDY_TEMPERATURE);
    double t = greedy ? 1.0 : (double)tau, raw_max = -INFINITY, esum = 0;
    for (int i = 0; i < V; i++) raw_max = fmax(raw_max, (double)z[i]);
    for (int i = 0; i < V; i++) esum += exp((double)z[i] / t - raw_max / t);
    // rank order: key descending, id ascending
    std::vector<int> rank((size_t)V);
    for (int i = 0; i < V; i++) rank[(size_t)i] = i;
    std::stable_sort(rank.begin(), rank.end(),
                     [&](int a, int b) { return maye_sample_key(zs[(size_t)a]) > maye_sample_key(zs[(size_t)b]); });
    int64_t token = rank[0];
    if (greedy) { // argmax by float comparison: -0 and +0 are equal maxima
        for (int i = 0; i < V; i++)
            if (zs[(size_t)i] > zs[(size_t)token] || (zs[(size_t)i] == zs[(size_t)token] && i < token)) token = i;
    } else {
        float zmax = zs[(size_t)rank[0]];
        std::vector<uint64_t> q((size_t)V);
        for (int i = 0; i < V; i++) q[(size_t)i] = maye_sample_weight(zs[(size_t)i], zmax, tau);
        int k = K > 0 && K < V ? K : V, n = k;
        uint64_t Z = 0;
        for (int r = 0; r < k; r++) Z += q[(size_t)rank[(size_t)r]];
        if (P < 1.0f) {
            uint64_t target = maye_sample_scale((double)P, Z), sum = 0;
            for (n = 1; n < k; n++) {
                sum += q[(size_t)rank[(size_t)n - 1]];
                if (sum >= target) break;
            }
        }
        std::vector<bool> kept((size_t)V, false);
        uint64_t S = 0;
        for (int r = 0; r < n; r++) kept[(size_t)rank[(size_t)r]] = true, S += q[(size_t)rank[(size_t)r]];
        if (S > 0) {
            uint64_t draw = maye_sample_scale((double)u, S), run = 0;
            for (int i = 0; i < V; i++) {
                run += kept[(size_t)i] ? q[(size_t)i] : 0;
                if (run > draw) {
                    token = i;
                    break;
                }
            }
        }
    }
    *lp = ((double)z[token] / t - raw_max / t) - log(esum);
    return token;
}

// ----------------------------------------------------------------------------
// the kernel against both CPU samplers

struct row_setting {
    float tau;
    int K;
    float P;
};

static long draws_checked, draws_bad;
static double lp_worst; // |log-prob - definition's| / (1 + |definition's|)

// The logit kinds of run_batch.
enum logit_kind {
    LOGITS_NORMAL,   // normal * scale
    LOGITS_INTEGER,  // normal * scale rounded to integers: many ties
    LOGITS_NEG_INF,  // normal * scale, a quarter -inf, the last logit 1
    LOGITS_TIES,     // all 0 but spikes (2 + id % 5) * scale on the first and last ids and on both sides of every
                     // boundary of the draw's 16 strips: the cuts fall in the ties, which span strips
    LOGITS_LAST,     // -60 + normal (weight 0) but the last three ids 0, 0.5, 1: all the weight at the end
    LOGITS_FIRST,    // -60 + normal but 1 on the first id and on both sides of the 7th strip boundary
    LOGITS_TIE_GAP,  // 0 but 0.001 on id 3 and on both sides of the 7th strip boundary: top-k 4 or 5 keeps
                     // the first one or two ties at 0, skips the others, and keeps id 3 and the boundary ids
    LOGITS_FLAT,     // all 0: every weight is 2^40, so with V and the kept count powers of 2 a draw on a grid
                     // of u puts r exactly on the kept weight before some id, where "exceeds r" decides
};

// How run_batch picks the draw indices.
enum draw_kind {
    DRAWS_ANY,     // d * 1000 + b
    DRAWS_EXTREME, // u < 2^-10 in even draws, u > 1 - 2^-10 in odd ones
    DRAWS_GRID4,   // u a nonzero multiple of 2^-4 (the 16 strips' boundaries of a flat row)
    DRAWS_GRID14,  // u a nonzero multiple of 2^-14
};

static bool draw_fits(draw_kind dk, int d, float u) {
    switch (dk) {
    case DRAWS_ANY: return true;
    case DRAWS_EXTREME: return d % 2 ? u > 1.0f - 0x1p-10f : u < 0x1p-10f;
    case DRAWS_GRID4: return u > 0.0f && u * 16.0f == floorf(u * 16.0f);
    case DRAWS_GRID14: return u > 0.0f && u * 16384.0f == floorf(u * 16384.0f);
    }
    return false;
}

// B rows of V logits (stride V + 3) of a logit_kind. Ids 0..2 are banned in odd rows; in the first three kinds
// they get the largest logits of their row, so they win there only if the suppression fails. with_suppress
// false passes no suppress array (no row is suppressed). `draws` draw indices per row, picked by dk.
static void run_batch(int V, logit_kind kind, float scale, const std::vector<row_setting> &rows, int draws,
                      bool with_suppress, draw_kind dk = DRAWS_ANY) {
    int B = (int)rows.size();
    int64_t ld = V + 3;
    std::vector<float> z = emu_randn((size_t)B * ld, scale);
    int strip = (V + SAMPLE_THREADS / 32 - 1) / (SAMPLE_THREADS / 32); // ids per strip of the draw
    for (int b = 0; b < B; b++) {
        float *zr = z.data() + (size_t)b * ld;
        for (int i = 0; i < V; i++) {
            float &v = zr[i];
            if (kind == LOGITS_INTEGER) v = roundf(v);
            if (kind == LOGITS_NEG_INF && maye_rng_below(&emu_rng, 4) == 0) v = -INFINITY;
            if (kind == LOGITS_TIES || kind == LOGITS_TIE_GAP || kind == LOGITS_FLAT) v = 0.0f;
            if (kind == LOGITS_LAST || kind == LOGITS_FIRST) v = -60.0f + v / scale;
        }
        if (kind == LOGITS_TIES) {
            std::vector<int> spikes = {0, V - 1};
            for (int s = strip; s < V; s += strip) spikes.push_back(s - 1), spikes.push_back(s);
            for (int i : spikes) zr[i] = (float)(2 + i % 5) * scale;
        }
        for (int j = 0; kind == LOGITS_LAST && j < 3 && j < V; j++) zr[V - 1 - j] = 1.0f - 0.5f * (float)j;
        if (kind == LOGITS_FIRST) zr[0] = 1.0f;
        if (kind == LOGITS_TIE_GAP && V > 3) zr[3] = 0.001f;
        if (kind == LOGITS_FIRST || kind == LOGITS_TIE_GAP)
            for (int i = 7 * strip - 1; i <= 7 * strip && i < V; i++) zr[i] = kind == LOGITS_FIRST ? 1.0f : 0.001f;
    }
    std::vector<int32_t> banned;
    for (int j = 0; j < 3 && j < V - 1; j++) banned.push_back(j);
    int nb = (int)banned.size();
    std::vector<uint8_t> suppress((size_t)B);
    std::vector<float> tau((size_t)B), P((size_t)B);
    std::vector<int> K((size_t)B);
    std::vector<uint64_t> streams((size_t)B), idx((size_t)B);
    for (int b = 0; b < B; b++) {
        suppress[(size_t)b] = with_suppress && b % 2;
        for (int j = 0; kind <= LOGITS_NEG_INF && j < nb; j++) z[(size_t)(b * ld + j)] = 4.0f * scale + (float)j;
        if (kind == LOGITS_NEG_INF) z[(size_t)(b * ld + V - 1)] = 1.0f;
        tau[(size_t)b] = rows[(size_t)b].tau, K[(size_t)b] = rows[(size_t)b].K, P[(size_t)b] = rows[(size_t)b].P;
        streams[(size_t)b] = maye_stream_id(77, (uint64_t)b, 1);
    }
    uint64_t seed = 2024;
    emu_array<int64_t> tok(B);
    emu_array<float> lp(B);
    std::vector<float> zrow((size_t)V);
    maye_sampler cpu;
    maye_sampler_init(&cpu, V);
    for (int d = 0; d < draws; d++) {
        for (int b = 0; b < B; b++) {
            idx[(size_t)b] = (uint64_t)(d * 1000 + b);
            while (!draw_fits(dk, d, maye_uniform_at(seed, streams[(size_t)b], idx[(size_t)b])))
                idx[(size_t)b] += 1000000;
        }
        tok.poison(), lp.poison();
        bool with_lp = d % 3 != 2; // every third draw without log-probs
        cuda_emu_launch(sample_kernel, dim3((unsigned)B), dim3(SAMPLE_THREADS), 0, tok.data(),
                        with_lp ? lp.data() : nullptr, (const float *)z.data(), ld, V, (const float *)tau.data(),
                        (const int *)K.data(), (const float *)P.data(), seed, (const uint64_t *)streams.data(),
                        (const uint64_t *)idx.data(), (const int32_t *)banned.data(), nb,
                        with_suppress ? (const uint8_t *)suppress.data() : nullptr);
        EXPECT(tok.guards_intact() && lp.guards_intact(), "sample V %d kind %d draw %d: an element outside tokens or "
               "log-probs was written", V, kind, d);
        for (int b = 0; b < B; b++) {
            const float *zr = z.data() + (size_t)b * ld;
            const row_setting &s = rows[(size_t)b];
            float u = maye_uniform_at(seed, streams[(size_t)b], idx[(size_t)b]);
            int nban = suppress[(size_t)b] ? nb : 0;
            double want_lp;
            int64_t want = def_sample(zr, V, s.tau, s.K, s.P, u, banned.data(), nban, &want_lp);
            int64_t cpu_tok = want; // maye_sample takes top_k >= 0 and top_p in (0, 1] only
            float cpu_lp = (float)want_lp;
            if (s.K >= 0 && s.P > 0.0f) {
                maye_sample_params sp = {s.tau, s.P, s.K};
                std::copy(zr, zr + V, zrow.begin());
                cpu_tok = maye_sample(&cpu, &sp, zrow.data(), banned.data(), nban, u, &cpu_lp);
            }
            int64_t got = tok.data()[b];
            double lp_err = with_lp ? fabs(lp.data()[b] - want_lp) / (1 + fabs(want_lp)) : 0;
            if (with_lp) lp_worst = fmax(lp_worst, lp_err);
            else EXPECT(emu_is_poison(lp.data()[b]), "sample V %d row %d: log-prob written although not wanted", V, b);
            bool lp_bad = with_lp && !(lp_err <= 1e-5), cpu_lp_bad = !(fabs(cpu_lp - want_lp) <= 1e-5 * (1 + fabs(want_lp)));
            draws_checked++;
            if (got != want || cpu_tok != want || lp_bad || cpu_lp_bad) {
                if (draws_bad++ < 8)
                    fprintf(stderr, "  sample V %d kind %d row %d draw %d (tau %g, top_k %d, top_p %g, suppressed %d): "
                                    "kernel token %lld log-prob %.9g; definition %lld %.9g; maye_sample %lld %.9g\n",
                            V, kind, b, d, s.tau, s.K, s.P, nban > 0, (long long)got, with_lp ? lp.data()[b] : NAN,
                            (long long)want, want_lp, (long long)cpu_tok, cpu_lp);
                test_failures++;
            }
        }
    }
    maye_sampler_free(&cpu);
}

// ----------------------------------------------------------------------------

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    maye_rng_init(&emu_rng, 20240617, 6);
    test_uniform();
    std::vector<row_setting> settings = {
        {1.0f, 0, 1.0f},  {0.0f, 0, 1.0f},  {0.6f, 0, 1.0f},  {0.01f, 0, 0.001f}, {1.0f, 5, 1.0f},
        {1.0f, 50, 0.9f}, {1.0f, 0, 0.5f},  {1.0f, 1, 1.0f},  {0.7f, 0, 0.0f},    {1.3f, 2, 0.95f},
        {1.0f, -3, 0.8f}, {2.0f, 0, 0.99f}, {1e-6f, 7, 0.5f}, {1.0f, 100000000, 1.0f},
    };
    run_batch(1000, LOGITS_NORMAL, 1.0f, settings, 3, true);
    run_batch(1000, LOGITS_NORMAL, 5.0f, settings, 2, true);
    run_batch(777, LOGITS_INTEGER, 2.0f, settings, 3, true); // many ties: the cuts fall inside runs of equal logits
    run_batch(300, LOGITS_NEG_INF, 1.0f, settings, 2, true);
    run_batch(300, LOGITS_NORMAL, 1.0f, settings, 1, false);
    run_batch(1, LOGITS_NORMAL, 1.0f, settings, 1, true);
    run_batch(7, LOGITS_INTEGER, 1.0f, settings, 3, true);
    run_batch(13, LOGITS_TIES, 1.0f, settings, 2, true);
    run_batch(100, LOGITS_INTEGER, 1.0f, settings, 2, true, DRAWS_EXTREME);
    run_batch(5000, LOGITS_INTEGER, 3.0f, {{1.0f, 0, 1.0f}, {1.0f, 40, 0.9f}, {0.8f, 0, 0.9f}, {1.0f, 3000, 1.0f}}, 1,
              true);
    // the draw's strips and pieces: ties across strip boundaries, the weight at one end, extreme draws (the
    // largest vocabulary with fewer settings: the emulated radix selections take most of the time)
    std::vector<row_setting> cuts = {
        {1.0f, 0, 1.0f},  {0.5f, 0, 1.0f}, {1.0f, 1, 1.0f},   {1.0f, 0, 0.001f}, {1.0f, 0, 0.5f},
        {1.0f, 0, 0.95f}, {1.0f, 5, 0.9f}, {0.8f, 900, 1.0f}, {1.0f, 3000, 0.6f},
    };
    for (logit_kind kind : {LOGITS_TIES, LOGITS_LAST, LOGITS_FIRST})
        run_batch(5003, kind, 1.0f, cuts, 2, true, DRAWS_EXTREME);
    run_batch(20011, LOGITS_TIES, 1.0f, cuts, 2, true, DRAWS_EXTREME);
    // the kept weight skips the ties beyond the cut (with draws in the skip's window about one in four times): a
    // search that counts one tie too many misses the crossing at a boundary id, a walk that keeps one tie too
    // many stops before id 3 (ids 0..3 share a piece at 30011 ids)
    std::vector<row_setting> gap = {{1.0f, 4, 1.0f}, {1.0f, 4, 1.0f},  {1.0f, 5, 1.0f},
                                    {1.0f, 5, 1.0f}, {0.5f, 4, 0.99f}, {0.5f, 4, 0.99f}};
    run_batch(100, LOGITS_TIE_GAP, 1.0f, gap, 8, true);
    run_batch(5003, LOGITS_TIE_GAP, 1.0f, gap, 8, true);
    run_batch(30011, LOGITS_TIE_GAP, 1.0f, gap, 4, false);
    // r exactly on the kept weight before an id: on a strip boundary (grid 2^-4), anywhere (grid 2^-14: pieces of
    // 2 ids at 16384 ids); keep all, top-k and top-p halves with ties at the cut
    std::vector<row_setting> flat = {{1.0f, 0, 1.0f}, {1.0f, 8192, 1.0f}, {0.5f, 0, 0.5f}, {1.0f, 16, 1.0f}};
    run_batch(256, LOGITS_FLAT, 1.0f, flat, 2, false, DRAWS_GRID4);
    run_batch(16384, LOGITS_FLAT, 1.0f, flat, 2, false, DRAWS_GRID4);
    run_batch(16384, LOGITS_FLAT, 1.0f, flat, 4, false, DRAWS_GRID14);
    run_batch(20011, LOGITS_INTEGER, 2.0f, cuts, 1, true);
    run_batch(151936, LOGITS_TIES, 1.0f, {{1.0f, 0, 1.0f}, {1.0f, 20000, 1.0f}, {1.0f, 0, 0.5f}, {1.0f, 70000, 0.8f}},
              2, true, DRAWS_EXTREME);
    run_batch(151936, LOGITS_LAST, 1.0f, {{1.0f, 0, 1.0f}, {1.0f, 5, 0.9f}}, 2, true, DRAWS_EXTREME);
    run_batch(151936, LOGITS_FIRST, 1.0f, {{1.0f, 0, 1.0f}, {1.0f, 0, 0.95f}}, 2, true, DRAWS_EXTREME);
    run_batch(151936, LOGITS_NORMAL, 3.0f, {{1.0f, 50, 0.9f}, {1.0f, 0, 1.0f}, {0.7f, 0, 1.0f}}, 2, true,
              DRAWS_EXTREME);
    printf("%-34s %5ld draws, %ld differ; log-prob worst error %.2e of 1 + |want| (tolerance 1e-05)\n",
           "sample_kernel", draws_checked, draws_bad, lp_worst);
    return TEST_RESULT();
}
