// The optimizer kernels against optim/adamw.c: three AdamW steps with fp32 and bf16 gradients (weights, both
// moments, and the bf16 weight copy written in the same pass), and global-norm clipping (the norm, clipped,
// unclipped, max_norm 0, and a non-finite norm that leaves the gradients alone) over sizes that are not
// multiples of the 65536-element chunks; AdamW applying the clipping coefficient itself (cuda_grad_clip_coef)
// equal to the bit to clipping in place first. Exits 77 without a GPU.
#include "cuda_test.h"

extern "C" {
#include "optim/adamw.h"
}

static void test_adamw(void) {
    for (cuda_dtype gdt : {CUDA_F32, CUDA_BF16}) {
        for (int64_t N : {(int64_t)1, (int64_t)100003}) {
            maye_adamw_hparams hp = {0.9, 0.95, 1e-8, 0.1};
            maye_optim_tensor t = {"w", 0, 0, N, true};
            maye_adamw opt;
            EXPECT_OK(maye_adamw_init(&opt, &hp, 1, &t));
            float *p = host_randn(N, 1);
            float *dp = (float *)dev_from_f32(p, N, CUDA_F32), *dm = (float *)dev_alloc(sizeof(float) * (size_t)N);
            float *dv = (float *)dev_alloc(sizeof(float) * (size_t)N);
            CUDA_CHECK(cudaMemset(dm, 0, sizeof(float) * (size_t)N));
            CUDA_CHECK(cudaMemset(dv, 0, sizeof(float) * (size_t)N));
            void *dpb = dev_alloc(sizeof(uint16_t) * (size_t)N), *dg = dev_alloc((size_t)N * dt_size(gdt));
            for (int step = 1; step <= 3; step++) {
                float *g = host_randn(N, 0.01f);
                round_to(g, N, gdt);
                double lr = 1e-3 * step;
                maye_adamw_step(&opt, p, g, lr);
                dev_store_f32(dg, g, N, gdt);
                dev_poison(dpb, sizeof(uint16_t) * (size_t)N);
                EXPECT_GPU_OK(cuda_adamw_step(dp, dpb, dg, gdt, dm, dv, N, lr, hp.beta1, hp.beta2, hp.eps, hp.weight_decay,
                                              step, NULL, NULL));
                free(g);
            }
            float *gp = dev_to_f32(dp, N, CUDA_F32), *gm = dev_to_f32(dm, N, CUDA_F32), *gv = dev_to_f32(dv, N, CUDA_F32);
            float *gpb = dev_to_f32(dpb, N, CUDA_BF16);
            expect_close(what("adamw params grads %s N %lld", dt_name(gdt), (long long)N), gp, p, N, 1e-5);
            expect_close(what("adamw m grads %s N %lld", dt_name(gdt), (long long)N), gm, opt.m, N, 1e-5);
            expect_close(what("adamw v grads %s N %lld", dt_name(gdt), (long long)N), gv, opt.v, N, 1e-5);
            round_to(gp, N, CUDA_BF16); // the bf16 copy is exactly the rounded fp32 result
            test_close_f32(what("adamw bf16 copy grads %s N %lld", dt_name(gdt), (long long)N), gpb, gp, N, 0, 0);
            free(gp), free(gm), free(gv), free(gpb), free(p);
            dev_free(dp), dev_free(dm), dev_free(dv), dev_free(dpb), dev_free(dg);
            maye_adamw_free(&opt);
        }
    }
}

static void test_clip(void) {
    for (cuda_dtype gdt : {CUDA_F32, CUDA_BF16}) {
        for (int64_t N : {(int64_t)0, (int64_t)5, (int64_t)200001}) {
            for (double max_norm : {1.0, 1e9, 0.0, -1.0}) {
                for (int poison : {0, 1}) {
                    if (poison && N == 0) continue;
                    float *g = host_randn(N, 0.05f);
                    round_to(g, N, gdt);
                    if (poison) g[N / 2] = NAN;
                    maye_optim_tensor t = {"g", 0, 0, N, true};
                    float *want = (float *)xmalloc(sizeof(float) * (size_t)(N > 0 ? N : 1));
                    memcpy(want, g, sizeof(float) * (size_t)N);
                    double want_norm = maye_grad_clip(1, &t, want, max_norm);
                    round_to(want, N, gdt);
                    void *dg = dev_from_f32(g, N, gdt), *scr = dev_alloc(cuda_grad_norm_scratch_bytes(N));
                    double *dnorm = (double *)dev_alloc(sizeof(double)), got_norm = 0;
                    EXPECT_GPU_OK(cuda_grad_norm(dnorm, dg, gdt, N, scr, NULL));
                    EXPECT_GPU_OK(cuda_grad_clip_scale(dg, gdt, N, dnorm, max_norm, NULL));
                    CUDA_CHECK(cudaMemcpy(&got_norm, dnorm, sizeof(double), cudaMemcpyDeviceToHost));
                    if (poison)
                        EXPECT(isnan(got_norm), "grad_norm %s N %lld with a NaN: got %g, want NaN", dt_name(gdt),
                               (long long)N, got_norm);
                    else
                        EXPECT(fabs(got_norm - want_norm) <= 1e-9 * want_norm,
                               "grad_norm %s N %lld: got %.17g want %.17g", dt_name(gdt), (long long)N, got_norm, want_norm);
                    float *got = dev_to_f32(dg, N, gdt);
                    expect_close(what("grad_clip %s N %lld max_norm %g nan %d", dt_name(gdt), (long long)N, max_norm, poison),
                                 got, want, N, gdt == CUDA_BF16 ? 1e-2 : 1e-6);
                    free(got), free(g), free(want);
                    dev_free(dg), dev_free(scr), dev_free(dnorm);
                }
            }
        }
    }
}

// clip in place + AdamW against AdamW with the coefficient: the same weights, moments and bf16 copy, bit for bit
static void test_clip_in_adamw(void) {
    for (cuda_dtype gdt : {CUDA_F32, CUDA_BF16})
        for (double max_norm : {0.5, 1e9, 0.0})
            for (int poison : {0, 1}) {
                int64_t N = 70001;
                float *g = host_randn(N, 0.05f), *p = host_randn(N, 1), *mv = host_randn(N, 0.01f);
                round_to(g, N, gdt);
                if (poison) g[N / 3] = INFINITY;
                for (int64_t i = 0; i < N; i++) mv[i] = fabsf(mv[i]);
                float *res[2][4];
                for (int fused = 0; fused < 2; fused++) {
                    void *dg = dev_from_f32(g, N, gdt), *scr = dev_alloc(cuda_grad_norm_scratch_bytes(N));
                    float *dp = (float *)dev_from_f32(p, N, CUDA_F32), *dm = (float *)dev_from_f32(mv, N, CUDA_F32);
                    float *dv = (float *)dev_from_f32(mv, N, CUDA_F32), *coef = (float *)dev_alloc(sizeof(float));
                    void *dpb = dev_alloc(sizeof(uint16_t) * (size_t)N);
                    double *dnorm = (double *)dev_alloc(sizeof(double));
                    EXPECT_GPU_OK(cuda_grad_norm(dnorm, dg, gdt, N, scr, NULL));
                    if (fused) {
                        EXPECT_GPU_OK(cuda_grad_clip_coef(coef, dnorm, max_norm, NULL));
                    } else {
                        EXPECT_GPU_OK(cuda_grad_clip_scale(dg, gdt, N, dnorm, max_norm, NULL));
                    }
                    EXPECT_GPU_OK(cuda_adamw_step(dp, dpb, dg, gdt, dm, dv, N, 1e-3, 0.9, 0.95, 1e-8, 0.1, 2,
                                                  fused ? coef : NULL, NULL));
                    res[fused][0] = dev_to_f32(dp, N, CUDA_F32), res[fused][1] = dev_to_f32(dm, N, CUDA_F32);
                    res[fused][2] = dev_to_f32(dv, N, CUDA_F32), res[fused][3] = dev_to_f32(dpb, N, CUDA_BF16);
                    dev_free(dg), dev_free(scr), dev_free(dp), dev_free(dm), dev_free(dv), dev_free(coef), dev_free(dpb),
                        dev_free(dnorm);
                }
                const char *names[4] = {"weights", "m", "v", "bf16 copy"};
                for (int k = 0; k < 4; k++) {
                    int64_t bad = 0;
                    for (int64_t i = 0; i < N; i++) bad += memcmp(&res[0][k][i], &res[1][k][i], sizeof(float)) != 0;
                    EXPECT(bad == 0, "adamw with the clip coefficient (%s, max_norm %g, inf %d): %lld %s differ from "
                           "clip + adamw", dt_name(gdt), max_norm, poison, (long long)bad, names[k]);
                    free(res[0][k]), free(res[1][k]);
                }
                free(g), free(p), free(mv);
            }
}

int main(void) {
    cuda_ctx *ctx = cuda_test_start("test_cuda_adamw");
    maye_rng_init(&test_rng, 77, 5);
    test_adamw();
    test_clip();
    test_clip_in_adamw();
    cuda_ctx_free(ctx);
    return TEST_RESULT();
}
