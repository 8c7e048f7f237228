// CUDA kernels against the CPU reference (kernels/cpu) on odd shapes, in fp32 (1e-5) and bf16 (2e-2) mode:
// matmul (with and without bias, aligned and unaligned bias; also added to a residual stream in the GEMM's
// epilogue, into another buffer and in place), the general GEMM in every transpose
// combination, embedding, RMSNorm, LayerNorm (their weights and
// biases fp32 in both modes, as the GPU model keeps them), the activations plain and gated (in place too),
// the M-RoPE and vision rotary tables, the rotation with strided rows (equal to the bit to the host's rotation with
// the kernels' FMA rounding; forward and backward, the 16-byte vector variant equal to the bit to the one-pair one on
// a copy one element off), and the rotation with KV-cache writes
// (equal to the bit to the rotation followed by row copies, with the cache rows aligned and not).
// Every GPU output is poisoned with NaN before the call. Exits 77 without a GPU.
#include "cuda_test.h"

#include "kernels/cuda/model_kernels.h"

#include <vector>

static const cuda_dtype DTYPES[2] = {CUDA_F32, CUDA_BF16};

// ----------------------------------------------------------------------------
// matmul and GEMM

static void test_matmul(cuda_ctx *ctx) {
    int shapes[][3] = {{1, 1, 1}, {1, 7, 3}, {5, 13, 17}, {33, 65, 31}, {2, 1, 9}, {64, 128, 96}, {3, 0, 5}, {0, 4, 6}};
    for (cuda_dtype dt : DTYPES) {
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
            int T = shapes[s][0], C = shapes[s][1], OC = shapes[s][2];
            float *x = host_randn((int64_t)T * C, 1), *w = host_randn((int64_t)OC * C, 1), *b = host_randn(OC + 1, 1);
            round_to(x, (int64_t)T * C, dt), round_to(w, (int64_t)OC * C, dt), round_to(b, OC + 1, dt);
            void *dx = dev_from_f32(x, (int64_t)T * C, dt), *dw = dev_from_f32(w, (int64_t)OC * C, dt);
            void *db = dev_from_f32(b, OC + 1, dt), *dout = dev_alloc((size_t)T * OC * dt_size(dt) + 16);
            float *ref = host_zeros((int64_t)T * OC);
            // bias: none, aligned, and one element in (a pointer cuBLASLt's epilogue may not take)
            for (int mode = 0; mode < 3; mode++) {
                const float *hb = mode == 0 ? NULL : mode == 1 ? b : b + 1;
                const void *bias = mode == 0 ? NULL : (const char *)db + (mode == 2 ? dt_size(dt) : 0);
                matmul_forward(ref, x, w, hb, T, C, OC);
                dev_poison(dout, (size_t)T * OC * dt_size(dt));
                EXPECT_GPU_OK(cuda_matmul_forward(ctx, dt, dout, dx, dw, bias, T, C, OC, NULL));
                float *got = dev_to_f32(dout, (int64_t)T * OC, dt);
                expect_close(what("matmul %s %dx%d->%d bias mode %d", dt_name(dt), T, C, OC, mode), got, ref,
                             (int64_t)T * OC, dt_tol(dt));
                free(got);
                // added to a residual stream r: into another buffer (r unchanged), then in place
                float *r = host_randn((int64_t)T * OC, 1);
                round_to(r, (int64_t)T * OC, dt);
                void *dr = dev_from_f32(r, (int64_t)T * OC, dt);
                float *sum = host_zeros((int64_t)T * OC);
                for (int64_t i = 0; i < (int64_t)T * OC; i++) sum[i] = r[i] + ref[i];
                dev_poison(dout, (size_t)T * OC * dt_size(dt));
                EXPECT_GPU_OK(cuda_matmul_residual_forward(ctx, dt, dout, dr, dx, dw, bias, T, C, OC, NULL));
                got = dev_to_f32(dout, (int64_t)T * OC, dt);
                expect_close(what("matmul + residual into out %s %dx%d->%d bias mode %d", dt_name(dt), T, C, OC, mode),
                             got, sum, (int64_t)T * OC, dt_tol(dt));
                free(got);
                got = dev_to_f32(dr, (int64_t)T * OC, dt);
                expect_close(what("matmul + residual: the residual kept %s", dt_name(dt)), got, r, (int64_t)T * OC, 0);
                free(got);
                EXPECT_GPU_OK(cuda_matmul_residual_forward(ctx, dt, dr, dr, dx, dw, bias, T, C, OC, NULL));
                got = dev_to_f32(dr, (int64_t)T * OC, dt);
                expect_close(what("matmul + residual in place %s %dx%d->%d bias mode %d", dt_name(dt), T, C, OC, mode),
                             got, sum, (int64_t)T * OC, dt_tol(dt));
                free(got), free(r), free(sum);
                dev_free(dr);
            }
            dev_free(dx), dev_free(dw), dev_free(db), dev_free(dout);
            free(x), free(w), free(b), free(ref);
        }
    }
}

// c (M, N) = alpha op(a) op(b) + beta c against a double reference, all four transposes, padded strides,
// bf16 inputs with fp32 output too.
static void test_gemm(cuda_ctx *ctx) {
    int shapes[][3] = {{7, 5, 3}, {17, 33, 65}, {1, 9, 130}};
    cuda_dtype combos[3][2] = {{CUDA_F32, CUDA_F32}, {CUDA_BF16, CUDA_BF16}, {CUDA_BF16, CUDA_F32}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        for (int c = 0; c < 3; c++) {
            for (int ta = 0; ta < 2; ta++) {
                for (int tb = 0; tb < 2; tb++) {
                    int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                    cuda_dtype ab = combos[c][0], cd = combos[c][1];
                    int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
                    int64_t lda = ac + 3, ldb = bc + 1, ldc = N + 2;
                    float *a = host_randn(ar * lda, 1), *b = host_randn(br * ldb, 1), *cc = host_randn(M * ldc, 1);
                    round_to(a, ar * lda, ab), round_to(b, br * ldb, ab), round_to(cc, M * ldc, cd);
                    float alpha = 0.5f, beta = 0.25f;
                    float *want = host_zeros(M * ldc);
                    for (int i = 0; i < M; i++)
                        for (int j = 0; j < ldc; j++) {
                            if (j >= N) {
                                want[i * ldc + j] = cc[i * ldc + j];
                                continue;
                            }
                            double acc = 0;
                            for (int k = 0; k < K; k++) {
                                double av = ta ? a[k * lda + i] : a[i * lda + k], bv = tb ? b[j * ldb + k] : b[k * ldb + j];
                                acc += av * bv;
                            }
                            want[i * ldc + j] = (float)(alpha * acc + beta * cc[i * ldc + j]);
                        }
                    void *da = dev_from_f32(a, ar * lda, ab), *dbb = dev_from_f32(b, br * ldb, ab);
                    void *dc = dev_from_f32(cc, M * ldc, cd);
                    EXPECT_GPU_OK(cuda_gemm(ctx, ab, cd, ta, tb, M, N, K, alpha, da, lda, dbb, ldb, beta, dc, ldc, NULL));
                    float *got = dev_to_f32(dc, M * ldc, cd);
                    expect_close(what("gemm %s->%s %dx%dx%d trans %d%d", dt_name(ab), dt_name(cd), M, N, K, ta, tb), got,
                                 want, M * ldc, cd == CUDA_F32 && ab == CUDA_F32 ? 1e-5 : 2e-2);
                    free(got), free(a), free(b), free(cc), free(want);
                    dev_free(da), dev_free(dbb), dev_free(dc);
                }
            }
        }
    }
    EXPECT_FAIL(cuda_gemm(ctx, CUDA_F32, CUDA_F32, 0, 0, 4, 5, 6, 1, NULL, 5, NULL, 5, 0, NULL, 5, NULL),
                "leading dimensions");
}

// ----------------------------------------------------------------------------
// embedding, activations

static void test_embedding(void) {
    for (cuda_dtype dt : DTYPES) {
        for (int C : {13, 16, 1}) {
            int V = 37, T = 9;
            float *table = host_randn((int64_t)V * C, 1);
            round_to(table, (int64_t)V * C, dt);
            int64_t ids[9];
            for (int t = 0; t < T; t++) ids[t] = (int64_t)maye_rng_below(&test_rng, (uint64_t)V);
            float *ref = host_zeros((int64_t)T * C);
            embedding_forward(ref, ids, table, T, C);
            void *dtab = dev_from_f32(table, (int64_t)V * C, dt), *dout = dev_alloc((size_t)T * C * dt_size(dt));
            int64_t *dids = (int64_t *)dev_copy(ids, sizeof ids);
            dev_poison(dout, (size_t)T * C * dt_size(dt));
            EXPECT_GPU_OK(cuda_embedding_forward(dt, dout, dids, dtab, T, C, NULL));
            float *got = dev_to_f32(dout, (int64_t)T * C, dt);
            test_close_f32(what("embedding %s T %d C %d", dt_name(dt), T, C), got, ref, (int64_t)T * C, 0, 0);
            free(got), free(table), free(ref);
            dev_free(dtab), dev_free(dout), dev_free(dids);
        }
    }
}

static void test_activations(void) {
    const char *names[] = {"silu", "gelu", "gelu_tanh", "quick_gelu"};
    for (cuda_dtype dt : DTYPES) {
        for (int64_t N : {(int64_t)1037, (int64_t)64, (int64_t)3}) {
            float *x = host_randn(N, 3), *u = host_randn(N, 1), *ref = host_zeros(N);
            round_to(x, N, dt), round_to(u, N, dt);
            void *dx = dev_from_f32(x, N, dt), *du = dev_from_f32(u, N, dt), *dout = dev_alloc((size_t)N * dt_size(dt));
            for (int a = ACT_SILU; a <= ACT_QUICK_GELU; a++) {
                activation_forward(ref, x, N, (act_kind)a);
                round_to(ref, N, dt);
                dev_poison(dout, (size_t)N * dt_size(dt));
                EXPECT_GPU_OK(cuda_activation_forward(dt, dout, dx, N, (act_kind)a, NULL));
                float *got = dev_to_f32(dout, N, dt);
                expect_close(what("%s %s N %lld", names[a], dt_name(dt), (long long)N), got, ref, N,
                             dt == CUDA_BF16 ? 1e-2 : 1e-5);
                free(got);
                gated_activation_forward(ref, x, u, N, (act_kind)a);
                round_to(ref, N, dt);
                dev_poison(dout, (size_t)N * dt_size(dt));
                EXPECT_GPU_OK(cuda_gated_activation_forward(dt, dout, dx, du, N, (act_kind)a, NULL));
                got = dev_to_f32(dout, N, dt);
                expect_close(what("gated %s %s N %lld", names[a], dt_name(dt), (long long)N), got, ref, N,
                             dt == CUDA_BF16 ? 1e-2 : 1e-5);
                free(got);
            }
            // the SiLU-gated MLP in place over `up`
            gated_activation_forward(ref, x, u, N, ACT_SILU);
            round_to(ref, N, dt);
            EXPECT_GPU_OK(cuda_gated_activation_forward(dt, du, dx, du, N, ACT_SILU, NULL));
            float *got = dev_to_f32(du, N, dt);
            expect_close(what("gated silu in place %s N %lld", dt_name(dt), (long long)N), got, ref, N,
                         dt == CUDA_BF16 ? 1e-2 : 1e-5);
            free(got), free(x), free(u), free(ref);
            dev_free(dx), dev_free(du), dev_free(dout);
        }
    }
    EXPECT_FAIL(cuda_activation_forward(CUDA_F32, NULL, NULL, 4, (act_kind)9, NULL), "unknown activation");
}

// ----------------------------------------------------------------------------
// normalisation

static void test_norms(void) {
    // rows < 1024: RMSNorm's block-per-row kernel (2 x 2056: two or four vectors per thread; 3 x 9000: too long,
    // the warp kernel); 1030 rows: the warp kernel
    int shapes[][2] = {{1, 1}, {1, 13}, {7, 67}, {3, 129}, {5, 1536}, {9, 64}, {0, 8}, {2, 2056}, {3, 9000}, {1030, 136}};
    for (cuda_dtype dt : DTYPES) {
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
            int T = shapes[s][0], C = shapes[s][1];
            int64_t n = (int64_t)T * C;
            float eps = 1e-6f;
            float *x = host_randn(n, 2), *w = host_randn(C, 1), *bb = host_randn(C, 1);
            round_to(x, n, dt); // the weight and bias stay fp32
            float *ref = host_zeros(n), *rstd = host_zeros(T), *mean = host_zeros(T);
            void *dx = dev_from_f32(x, n, dt), *dout = dev_alloc((size_t)n * dt_size(dt));
            float *dw = (float *)dev_from_f32(w, C, CUDA_F32), *dbias = (float *)dev_from_f32(bb, C, CUDA_F32);
            float *drstd = (float *)dev_alloc(sizeof(float) * (size_t)T), *dmean = (float *)dev_alloc(sizeof(float) * (size_t)T);
            double tol = dt_tol(dt);

            rmsnorm_forward(ref, rstd, x, w, T, C, eps);
            dev_poison(dout, (size_t)n * dt_size(dt)), dev_poison(drstd, sizeof(float) * (size_t)T);
            EXPECT_GPU_OK(cuda_rmsnorm_forward(dt, dout, drstd, dx, dw, T, C, eps, NULL));
            float *got = dev_to_f32(dout, n, dt), *got_r = dev_to_f32(drstd, T, CUDA_F32);
            expect_close(what("rmsnorm %s %dx%d", dt_name(dt), T, C), got, ref, n, tol);
            expect_close(what("rmsnorm rstd %s %dx%d", dt_name(dt), T, C), got_r, rstd, T, 1e-5);
            free(got), free(got_r);

            layernorm_forward(ref, mean, rstd, x, w, bb, T, C, eps);
            dev_poison(dout, (size_t)n * dt_size(dt)), dev_poison(drstd, sizeof(float) * (size_t)T);
            dev_poison(dmean, sizeof(float) * (size_t)T);
            EXPECT_GPU_OK(cuda_layernorm_forward(dt, dout, dmean, drstd, dx, dw, dbias, T, C, eps, NULL));
            got = dev_to_f32(dout, n, dt), got_r = dev_to_f32(drstd, T, CUDA_F32);
            float *got_m = dev_to_f32(dmean, T, CUDA_F32);
            expect_close(what("layernorm %s %dx%d", dt_name(dt), T, C), got, ref, n, tol);
            expect_close(what("layernorm rstd %s %dx%d", dt_name(dt), T, C), got_r, rstd, T, 1e-5);
            expect_close(what("layernorm mean %s %dx%d", dt_name(dt), T, C), got_m, mean, T, 1e-5);
            free(got), free(got_r), free(got_m);

            free(x), free(w), free(bb), free(ref), free(rstd), free(mean);
            dev_free(dx), dev_free(dw), dev_free(dbias), dev_free(dout);
            dev_free(drstd), dev_free(dmean);
        }
    }
}

// ----------------------------------------------------------------------------
// rotary embeddings

// got and want (n device elements of dtype dt) equal to the bit; prints the first differing index and both values.
static void expect_same_dev(const char *name, const void *got, const void *want, int64_t n, cuda_dtype dt) {
    size_t es = dt_size(dt);
    std::vector<unsigned char> hg((size_t)n * es), hw((size_t)n * es);
    CUDA_CHECK(cudaMemcpy(hg.data(), got, hg.size(), cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaMemcpy(hw.data(), want, hw.size(), cudaMemcpyDeviceToHost));
    int64_t bad = 0, first = 0;
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&hg[(size_t)i * es], &hw[(size_t)i * es], es) && bad++ == 0) first = i;
    if (bad == 0) return;
    float *fg = dev_to_f32(got, n, dt), *fw = dev_to_f32(want, n, dt);
    EXPECT(bad == 0, "%s: %lld of %lld elements differ, first [%lld]: got %.9g want %.9g", name, (long long)bad,
           (long long)n, (long long)first, (double)fg[first], (double)fw[first]);
    free(fg), free(fw);
}

// x (T rows of stride ld, NH heads of D) rotated in place as the rotation kernels round it (rope_pairs in
// kernels/cuda/common.cuh): lo = fmaf(a, c, -(b s)), hi = fmaf(a, s, b c), then rounded to dt.
static void rope_fused(float *x, const float *c, const float *sn, int T, int NH, int D, int64_t ld, cuda_dtype dt) {
    int half = D / 2;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < half; i++) {
                float *v = x + t * ld + (int64_t)h * D, a = v[i], b = v[i + half];
                float cc = c[(int64_t)t * half + i], s = sn[(int64_t)t * half + i];
                v[i] = fmaf(a, cc, -(b * s)), v[i + half] = fmaf(a, s, b * cc);
            }
    round_to(x, T * ld, dt);
}

static void test_rope(void) {
    struct {
        int T, D, ld, sec[3];
        int64_t maxpos;
    } mcases[] = {{5, 14, 7, {1, 4, 2}, 101}, {37, 128, 40, {16, 24, 24}, 5000}, {1, 2, 1, {1, 0, 0}, 3}};
    for (size_t c = 0; c < sizeof mcases / sizeof *mcases; c++) {
        int T = mcases[c].T, D = mcases[c].D, ld = mcases[c].ld, half = D / 2;
        int64_t *pos = (int64_t *)xmalloc(sizeof(int64_t) * 3 * (size_t)ld);
        for (int i = 0; i < 3 * ld; i++) pos[i] = (int64_t)maye_rng_below(&test_rng, (uint64_t)mcases[c].maxpos);
        float *rc = host_zeros((int64_t)T * half), *rs = host_zeros((int64_t)T * half);
        mrope_cos_sin_forward(rc, rs, pos, ld, T, D, 1000000.0f, mcases[c].sec);
        int64_t *dpos = (int64_t *)dev_copy(pos, sizeof(int64_t) * 3 * (size_t)ld);
        float *dc = (float *)dev_alloc(sizeof(float) * (size_t)T * half), *ds = (float *)dev_alloc(sizeof(float) * (size_t)T * half);
        dev_poison(dc, sizeof(float) * (size_t)T * half), dev_poison(ds, sizeof(float) * (size_t)T * half);
        EXPECT_GPU_OK(cuda_mrope_cos_sin_forward(dc, ds, dpos, ld, T, D, 1000000.0f, mcases[c].sec, NULL));
        float *gc = dev_to_f32(dc, (int64_t)T * half, CUDA_F32), *gs = dev_to_f32(ds, (int64_t)T * half, CUDA_F32);
        test_close_f32(what("mrope cos T %d D %d", T, D), gc, rc, (int64_t)T * half, 2e-6, 1e-5);
        test_close_f32(what("mrope sin T %d D %d", T, D), gs, rs, (int64_t)T * half, 2e-6, 1e-5);
        free(gc), free(gs), free(rc), free(rs), free(pos);
        dev_free(dpos), dev_free(dc), dev_free(ds);
    }
    for (int D : {80, 20, 4}) {
        int T = 23, half = D / 2;
        int32_t hpos[23], wpos[23];
        for (int t = 0; t < T; t++) hpos[t] = (int32_t)maye_rng_below(&test_rng, 64), wpos[t] = (int32_t)maye_rng_below(&test_rng, 64);
        float *rc = host_zeros((int64_t)T * half), *rs = host_zeros((int64_t)T * half);
        vision_rope_cos_sin_forward(rc, rs, hpos, wpos, T, D);
        int32_t *dh = (int32_t *)dev_copy(hpos, sizeof hpos), *dwp = (int32_t *)dev_copy(wpos, sizeof wpos);
        float *dc = (float *)dev_alloc(sizeof(float) * (size_t)T * half), *ds = (float *)dev_alloc(sizeof(float) * (size_t)T * half);
        dev_poison(dc, sizeof(float) * (size_t)T * half), dev_poison(ds, sizeof(float) * (size_t)T * half);
        EXPECT_GPU_OK(cuda_vision_rope_cos_sin_forward(dc, ds, dh, dwp, T, D, NULL));
        float *gc = dev_to_f32(dc, (int64_t)T * half, CUDA_F32), *gs = dev_to_f32(ds, (int64_t)T * half, CUDA_F32);
        test_close_f32(what("vision rope cos T %d D %d", T, D), gc, rc, (int64_t)T * half, 2e-6, 1e-5);
        test_close_f32(what("vision rope sin T %d D %d", T, D), gs, rs, (int64_t)T * half, 2e-6, 1e-5);
        free(gc), free(gs), free(rc), free(rs);
        dev_free(dh), dev_free(dwp), dev_free(dc), dev_free(ds);
    }
    // rotation of strided rows: the padding after NH * D must stay as it was, and the values must equal the fused
    // rounding of rope_fused. Aligned rows whose half-dim and stride are multiples of the vector width (pad 0 or 8;
    // D 24: fp32 only) take the 16-byte vector variant; the same rotation, forward and backward, of a copy one element
    // off (the one-pair variant) must give the same bits.
    for (cuda_dtype dt : DTYPES) {
        // T, NH, D, pad (elements after NH * D in each row)
        int shapes[][4] = {{5, 3, 14, 3}, {17, 16, 128, 3}, {1, 1, 2, 3}, {17, 16, 128, 0}, {9, 16, 80, 8},
                           {4, 4, 24, 0}};
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
            int T = shapes[s][0], NH = shapes[s][1], D = shapes[s][2], half = D / 2;
            int64_t ld = (int64_t)NH * D + shapes[s][3], n = T * ld;
            size_t es = dt_size(dt);
            float *x = host_randn(n, 1), *c = host_randn((int64_t)T * half, 1), *sn = host_randn((int64_t)T * half, 1);
            round_to(x, n, dt);
            float *ref = (float *)xmalloc(sizeof(float) * (size_t)n);
            memcpy(ref, x, sizeof(float) * (size_t)n);
            rope_forward(ref, c, sn, T, NH, D, ld);
            round_to(ref, n, dt);
            void *dx = dev_from_f32(x, n, dt), *dx1 = dev_alloc((size_t)(n + 1) * es);
            CUDA_CHECK(cudaMemcpy((char *)dx1 + es, dx, (size_t)n * es, cudaMemcpyDeviceToDevice));
            float *dc = (float *)dev_from_f32(c, (int64_t)T * half, CUDA_F32), *ds = (float *)dev_from_f32(sn, (int64_t)T * half, CUDA_F32);
            char shape[96];
            snprintf(shape, sizeof shape, "%s T %d NH %d D %d ld %lld", dt_name(dt), T, NH, D, (long long)ld);
            EXPECT_GPU_OK(cuda_rope_forward(dt, dx, dc, ds, T, NH, D, ld, NULL));
            float *got = dev_to_f32(dx, n, dt);
            expect_close(what("rope %s", shape), got, ref, n, dt == CUDA_BF16 ? 1e-2 : 1e-5);
            memcpy(ref, x, sizeof(float) * (size_t)n);
            rope_fused(ref, c, sn, T, NH, D, ld, dt);
            expect_close(what("rope %s against fmaf(a, c, -(b s)), fmaf(a, s, b c)", shape), got, ref, n, 0);
            EXPECT_GPU_OK(cuda_rope_forward(dt, (char *)dx1 + es, dc, ds, T, NH, D, ld, NULL));
            expect_same_dev(what("rope %s, one element off", shape), (char *)dx1 + es, dx, n, dt);
            EXPECT_GPU_OK(cuda_rope_backward(dt, dx, dc, ds, T, NH, D, ld, NULL));
            EXPECT_GPU_OK(cuda_rope_backward(dt, (char *)dx1 + es, dc, ds, T, NH, D, ld, NULL));
            expect_same_dev(what("rope backward %s, one element off", shape), (char *)dx1 + es, dx, n, dt);
            free(got), free(x), free(c), free(sn), free(ref);
            dev_free(dx), dev_free(dx1), dev_free(dc), dev_free(ds);
        }
    }
    // the rotation of fused q|k|v rows with the KV-cache writes: equal to the bit to the rotation + row copies (the
    // rotation takes the vector variant; the cache rows of stride KV * D + 3 make the one-pair one, those of KV * D
    // the vector one)
    for (int v = 0; v < 4; v++) {
        cuda_dtype dt = DTYPES[v / 2];
        int T = 37, H = 7, KV = 1, D = 64, half = D / 2, KVD = KV * D, R = 50;
        int64_t ld = (int64_t)(H + 2 * KV) * D + 8, ldc = KVD + (v % 2 ? 0 : 3), n = T * ld, nc = (int64_t)R * ldc;
        float *x = host_randn(n, 1), *c = host_randn((int64_t)T * half, 1), *sn = host_randn((int64_t)T * half, 1);
        std::vector<int> rows(T);
        for (int t = 0; t < T; t++) rows[t] = (t * 7 + 3) % R;
        size_t es = dt_size(dt);
        void *dx = dev_from_f32(x, n, dt), *dy = dev_from_f32(x, n, dt);
        void *wk = dev_alloc((size_t)nc * es), *wv = dev_alloc((size_t)nc * es), *gk = dev_alloc((size_t)nc * es),
             *gv = dev_alloc((size_t)nc * es);
        dev_poison(wk, (size_t)nc * es), dev_poison(wv, (size_t)nc * es), dev_poison(gk, (size_t)nc * es),
            dev_poison(gv, (size_t)nc * es);
        float *dc = (float *)dev_from_f32(c, (int64_t)T * half, CUDA_F32), *ds = (float *)dev_from_f32(sn, (int64_t)T * half, CUDA_F32);
        int *drows = (int *)dev_copy(rows.data(), sizeof(int) * (size_t)T);
        EXPECT_GPU_OK(cuda_rope_forward(dt, dx, dc, ds, T, H + KV, D, ld, NULL));
        EXPECT_GPU_OK(cuda_copy_rows(dt, wk, ldc, drows, dt, (char *)dx + (size_t)H * D * es, ld, NULL, T, KVD, 0, NULL));
        EXPECT_GPU_OK(cuda_copy_rows(dt, wv, ldc, drows, dt, (char *)dx + (size_t)(H + KV) * D * es, ld, NULL, T, KVD, 0,
                                     NULL));
        EXPECT_GPU_OK(cuda_rope_cache_forward(dt, dy, dc, ds, T, H, KV, D, ld, gk, gv, drows, ldc, NULL));
        struct {
            const char *what;
            void *got, *want;
            int64_t n;
        } outs[3] = {{"qkv", dy, dx, n}, {"cache_k", gk, wk, nc}, {"cache_v", gv, wv, nc}};
        for (const auto &o : outs)
            expect_same_dev(what("rope_cache_forward %s ldc %lld: %s against rope_forward + copy_rows", dt_name(dt),
                                 (long long)ldc, o.what),
                            o.got, o.want, o.n, dt);
        free(x), free(c), free(sn);
        dev_free(dx), dev_free(dy), dev_free(wk), dev_free(wv), dev_free(gk), dev_free(gv), dev_free(dc), dev_free(ds),
            dev_free(drows);
    }
}

int main(void) {
    cuda_ctx *ctx = cuda_test_start("test_cuda_kernels");
    maye_rng_init(&test_rng, 1234, 1);
    test_matmul(ctx);
    test_gemm(ctx);
    test_embedding();
    test_activations();
    test_norms();
    test_rope();
    cuda_ctx_free(ctx);
    return TEST_RESULT();
}
