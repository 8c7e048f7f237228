// The optimizer kernels of lib/kernels/cuda/adamw.cuh on the CPU emulator against optim/adamw.c: three
// AdamW steps (adamw_kernel) with fp32 and bf16 gradients, weights and both moments, the bf16 weight copy
// written in the same pass (exactly the rounded fp32 weight) or not wanted (NULL); global-norm clipping
// (grad_sq_kernel partial sums over 65536-element chunks, grad_norm_finish_kernel, grad_scale_kernel) for
// no elements, a few, and several chunks with a partial last one, clipped, unclipped, max_norm 0 and
// negative (no scaling launch, as adamw.cu), and with a NaN that leaves the gradients alone. Launches as
// adamw.cu (4-wide vectors when aligned, scalars with the gradients one element off); the element-wise kernels
// once more with 3 blocks so the grid-stride loops take several turns.
// AdamW applying the clipping coefficient itself (grad_clip_coef_kernel) equal to the bit to clipping in
// place first, clipped, unclipped and max_norm 0, with and without an infinite gradient.
// Dimension letters: N elements.
#include "kernels/cuda/adamw.cuh"

#include "cuda_emu_test.h"

extern "C" {
#include "optim/adamw.h"
}

// ----------------------------------------------------------------------------
// AdamW

static emu_stats adamw_st = {"adamw_kernel p, m, v", 1e-5};
static emu_stats copy_st = {"adamw_kernel bf16 copy (exact)", 0};
static emu_stats clip_f32 = {"grad_scale_kernel<float>", 1e-6};
static emu_stats clip_bf16 = {"grad_scale_kernel<bf16>", 4e-3};
static double norm_worst; // relative error of the grad norms

// The constants of cuda_adamw_step (adamw.cu), computed on the host as there.
static AdamWConsts adamw_consts(double lr, const maye_adamw_hparams &hp, int64_t step) {
    const double t = (double)step;
    AdamWConsts c;
    c.decay = (float)(1.0 - lr * hp.weight_decay);
    c.w1 = (float)(1.0 - hp.beta1), c.b2 = (float)hp.beta2, c.w2 = (float)(1.0 - hp.beta2);
    c.neg_step_size = (float)(-(lr / (1.0 - pow(hp.beta1, t))));
    c.bc2_sqrt = (float)sqrt(1.0 - pow(hp.beta2, t));
    c.eps = (float)hp.eps;
    return c;
}

// The launches of adamw.cu: the vector variant when the pointers allow (counted in vec_launches), grid 3 when
// small.
static int vec_launches, scalar_launches;
template <typename G>
static void adamw_launch(float *p, bf16 *pb, const G *g, float *m, float *v, int64_t N, AdamWConsts c,
                         const float *coef, bool small) {
    bool vec = adamw_vec_ok(p, pb, g, m, v);
    (vec ? vec_launches : scalar_launches)++;
    dim3 grid(small ? 3u : grid_for(vec ? N / ADAMW_VEC + 1 : N, 256, 8192));
    if (vec) cuda_emu_launch(adamw_kernel<G, ADAMW_VEC>, grid, dim3(256), 0, p, pb, g, m, v, N, c, coef);
    else cuda_emu_launch(adamw_kernel<G, 1>, grid, dim3(256), 0, p, pb, g, m, v, N, c, coef);
}

template <typename G> static void grad_sq_launch(double *partial, const G *g, int64_t N) {
    constexpr int VW = VecWidth<G>::value;
    dim3 grid((unsigned)((N + CLIP_CHUNK - 1) / CLIP_CHUNK));
    if (aligned16(g)) cuda_emu_launch(grad_sq_kernel<G, VW>, grid, dim3(CLIP_THREADS), 0, partial, g, N);
    else cuda_emu_launch(grad_sq_kernel<G, 1>, grid, dim3(CLIP_THREADS), 0, partial, g, N);
}

// off: the gradients one element past 16-byte alignment (the scalar variant).
template <typename G> static void test_adamw(int64_t N, bool with_copy, bool small, int off = 0) {
    bool is_bf16 = sizeof(G) == 2;
    std::string what = emu_what("adamw grads %s N %lld%s grid %s%s", is_bf16 ? "bf16" : "f32", (long long)N,
                                with_copy ? "" : " no bf16 copy", small ? "3" : "adamw.cu", off ? " grads+1" : "");
    maye_adamw_hparams hp = {0.9, 0.95, 1e-8, 0.1};
    maye_optim_tensor t = {"w", 0, 0, N, true};
    maye_adamw opt;
    EXPECT_OK(maye_adamw_init(&opt, &hp, 1, &t));
    std::vector<float> p = emu_randn((size_t)N, 1.0f);
    emu_array<float> dp(N), dm(N), dv(N);
    emu_array<bf16> dpb(N);
    emu_array<G> dg(N, off);
    dp.set(p), dm.set(std::vector<float>((size_t)N, 0.0f)), dv.set(std::vector<float>((size_t)N, 0.0f));
    for (int step = 1; step <= 3; step++) {
        std::vector<float> g = emu_randn((size_t)N, 0.01f);
        if (is_bf16) emu_round_bf16(g);
        double lr = 1e-3 * step;
        maye_adamw_step(&opt, p.data(), g.data(), lr);
        dg.set(g);
        dpb.poison();
        adamw_launch<G>(dp.data(), with_copy ? dpb.data() : nullptr, (const G *)dg.data(), dm.data(), dv.data(), N,
                        adamw_consts(lr, hp, step), nullptr, small);
    }
    std::vector<float> m(opt.m, opt.m + N), v(opt.v, opt.v + N), gp = dp.get();
    emu_check(adamw_st, what + " params", gp, p);
    emu_check(adamw_st, what + " m", dm.get(), m);
    emu_check(adamw_st, what + " v", dv.get(), v);
    if (with_copy) {
        emu_round_bf16(gp); // the copy is exactly the rounded fp32 result
        emu_check(copy_st, what + " bf16 copy", dpb.get(), gp);
    } else {
        bool untouched = true;
        for (int64_t i = 0; i < N; i++) untouched = untouched && emu_is_poison(dpb.data()[i]);
        EXPECT(untouched, "%s: the bf16 copy was written although not wanted", what.c_str());
    }
    EXPECT(dp.guards_intact() && dm.guards_intact() && dv.guards_intact() && dpb.guards_intact(),
           "%s: an element outside the arrays was written", what.c_str());
    maye_adamw_free(&opt);
}

// ----------------------------------------------------------------------------
// clipping

// cuda_grad_norm then cuda_grad_clip_scale (adamw.cu) on g (N).
template <typename G> static void grad_norm_clip(G *g, int64_t N, double *norm, double max_norm, bool small) {
    int64_t chunks = (N + CLIP_CHUNK - 1) / CLIP_CHUNK;
    emu_array<double> partial(chunks > 0 ? chunks : 1);
    if (chunks > 0) grad_sq_launch<G>(partial.data(), g, N);
    cuda_emu_launch(grad_norm_finish_kernel, dim3(1), dim3(CLIP_THREADS), 0, norm, (const double *)partial.data(),
                    chunks);
    EXPECT(partial.guards_intact(), "grad_norm N %lld: an element outside the partial sums was written", (long long)N);
    if (N == 0 || max_norm <= 0) return;
    cuda_emu_launch(grad_scale_kernel<G>, dim3(small ? 3u : grid_for(N, 256, 8192)), dim3(256), 0, g, N,
                    (const double *)norm, (float)max_norm);
}

// off: the gradients one element past 16-byte alignment (grad_sq_kernel's scalar variant).
template <typename G> static void test_clip(int64_t N, double max_norm, bool nan, bool small, int off = 0) {
    bool is_bf16 = sizeof(G) == 2;
    std::string what = emu_what("grad_clip %s N %lld max_norm %g%s grid %s%s", is_bf16 ? "bf16" : "f32",
                                (long long)N, max_norm, nan ? " with a NaN" : "", small ? "3" : "adamw.cu",
                                off ? " grads+1" : "");
    std::vector<float> g = emu_randn((size_t)N, 0.05f);
    if (is_bf16) emu_round_bf16(g);
    if (nan) g[(size_t)N / 2] = NAN;
    maye_optim_tensor t = {"g", 0, 0, N, true};
    std::vector<float> want = g;
    double want_norm = maye_grad_clip(1, &t, want.data(), max_norm);
    if (is_bf16) emu_round_bf16(want);
    emu_array<G> dg(N, off);
    emu_array<double> dnorm(1);
    dg.set(g);
    grad_norm_clip<G>(dg.data(), N, dnorm.data(), max_norm, small);
    double got_norm = dnorm.data()[0];
    if (nan) {
        EXPECT(isnan(got_norm), "%s: norm %g, want NaN", what.c_str(), got_norm);
    } else {
        double rel = fabs(got_norm - want_norm) / fmax(want_norm, 1e-300);
        norm_worst = fmax(norm_worst, want_norm > 0 ? rel : fabs(got_norm));
        EXPECT(fabs(got_norm - want_norm) <= 1e-9 * want_norm, "%s: norm %.17g, want %.17g", what.c_str(), got_norm,
               want_norm);
    }
    emu_check(is_bf16 ? clip_bf16 : clip_f32, what, dg.get(), want);
    EXPECT(dg.guards_intact() && dnorm.guards_intact(), "%s: an element outside the arrays was written", what.c_str());
}

// ----------------------------------------------------------------------------

// AdamW applying the clipping coefficient itself (grad_clip_coef_kernel, then adamw_kernel with coef) against
// grad_scale_kernel in place followed by the plain AdamW pass: equal to the bit.
template <typename G> static void test_clip_in_adamw(double max_norm, bool inf) {
    int64_t N = 5003;
    maye_adamw_hparams hp = {0.9, 0.95, 1e-8, 0.1};
    std::vector<float> g = emu_randn((size_t)N, 0.05f), p = emu_randn((size_t)N, 1.0f), mv = emu_randn((size_t)N, 0.01f);
    if (sizeof(G) == 2) emu_round_bf16(g);
    if (inf) g[(size_t)N / 3] = INFINITY;
    for (float &x : mv) x = fabsf(x);
    std::vector<float> out[2][3];
    std::vector<bf16> copy[2];
    for (int fused = 0; fused < 2; fused++) {
        std::vector<G> dg((size_t)N);
        for (int64_t i = 0; i < N; i++) dg[(size_t)i] = from_f32<G>(g[(size_t)i]);
        std::vector<float> dp = p, dm = mv, dv = mv;
        std::vector<bf16> dpb((size_t)N);
        double norm = 0;
        float coef = 0;
        int64_t chunks = (N + CLIP_CHUNK - 1) / CLIP_CHUNK;
        std::vector<double> partial((size_t)chunks);
        grad_sq_launch<G>(partial.data(), dg.data(), N);
        cuda_emu_launch(grad_norm_finish_kernel, dim3(1), dim3(CLIP_THREADS), 0, &norm, (const double *)partial.data(),
                        chunks);
        if (fused)
            cuda_emu_launch(grad_clip_coef_kernel, dim3(1), dim3(1), 0, &coef, (const double *)&norm, (float)max_norm);
        else if (max_norm > 0)
            cuda_emu_launch(grad_scale_kernel<G>, dim3(grid_for(N, 256, 8192)), dim3(256), 0, dg.data(), N,
                            (const double *)&norm, (float)max_norm);
        adamw_launch<G>(dp.data(), dpb.data(), (const G *)dg.data(), dm.data(), dv.data(), N, adamw_consts(1e-3, hp, 2),
                        fused ? &coef : nullptr, false);
        out[fused][0] = dp, out[fused][1] = dm, out[fused][2] = dv, copy[fused] = dpb;
    }
    const char *names[3] = {"weights", "m", "v"};
    for (int k = 0; k < 3; k++)
        EXPECT(!memcmp(out[0][k].data(), out[1][k].data(), sizeof(float) * (size_t)N),
               "adamw with the clip coefficient (%s grads, max_norm %g, inf %d): %s differ from clip + adamw",
               sizeof(G) == 2 ? "bf16" : "f32", max_norm, inf, names[k]);
    EXPECT(!memcmp(copy[0].data(), copy[1].data(), sizeof(bf16) * (size_t)N),
           "adamw with the clip coefficient (%s grads, max_norm %g, inf %d): the bf16 copies differ",
           sizeof(G) == 2 ? "bf16" : "f32", max_norm, inf);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    maye_rng_init(&emu_rng, 20240615, 4);
    for (int64_t N : {(int64_t)1, (int64_t)1037, (int64_t)20011}) {
        test_adamw<float>(N, true, false), test_adamw<bf16>(N, true, false);
        test_adamw<float>(N, false, N == 1037);
    }
    test_adamw<bf16>(1037, true, true);
    test_adamw<float>(20011, true, false, 1), test_adamw<bf16>(1037, true, false, 1);
    EXPECT(vec_launches > 0 && scalar_launches > 0, "adamw: %d vector and %d scalar launches (want both)", vec_launches,
           scalar_launches);
    for (int64_t N : {(int64_t)0, (int64_t)5, (int64_t)200001})
        for (double max_norm : {1.0, 1e9, 0.0, -1.0})
            for (bool nan : {false, true}) {
                if (nan && N == 0) continue;
                test_clip<float>(N, max_norm, nan, false), test_clip<bf16>(N, max_norm, nan, false);
            }
    test_clip<float>(3001, 0.5, false, true), test_clip<bf16>(3001, 0.5, false, true);
    test_clip<float>(200001, 0.5, false, false, 1), test_clip<bf16>(200001, 0.5, false, false, 1);
    for (double max_norm : {0.5, 1e9, 0.0})
        for (bool inf : {false, true}) test_clip_in_adamw<float>(max_norm, inf), test_clip_in_adamw<bf16>(max_norm, inf);
    for (const emu_stats *st : {&adamw_st, &copy_st, &clip_f32, &clip_bf16}) emu_stats_print(*st);
    printf("%-34s worst relative error %.2e (tolerance 1e-09)\n", "grad_sq + grad_norm_finish norm", norm_worst);
    return TEST_RESULT();
}
