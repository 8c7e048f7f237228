// cuda_logprobs_forward (lm_head GEMM fused with an online log-sum-exp) against the CPU logprobs_forward:
// odd row counts and vocabularies, row blocks and vocabulary chunks that do not divide them, temperatures,
// entropy on and off, the full Qwen2 vocabulary (151936) once, fp32 (1e-5) and bf16 inputs (2e-2).
// Exits 77 without a GPU.
#include "cuda_test.h"

static void run_case(cuda_ctx *ctx, cuda_dtype dt, int N, int C, int V, float temperature, int rows, int vchunk,
                     int with_entropy) {
    float *h = host_randn((int64_t)N * C, 1), *w = host_randn((int64_t)V * C, 0.5f);
    round_to(h, (int64_t)N * C, dt), round_to(w, (int64_t)V * C, dt);
    int64_t *tgt = (int64_t *)xmalloc(sizeof(int64_t) * (size_t)(N > 0 ? N : 1));
    for (int i = 0; i < N; i++) tgt[i] = (int64_t)maye_rng_below(&test_rng, (uint64_t)V);
    float *ref_lp = host_zeros(N), *ref_ent = host_zeros(N);
    int crows = 16, cchunk = 1000;
    float *scratch = host_zeros((int64_t)logprobs_scratch_floats(crows, cchunk));
    logprobs_forward(ref_lp, ref_ent, h, w, tgt, N, C, V, temperature, crows, cchunk, scratch);

    void *dh = dev_from_f32(h, (int64_t)N * C, dt), *dw = dev_from_f32(w, (int64_t)V * C, dt);
    int64_t *dt_tgt = (int64_t *)dev_copy(tgt, sizeof(int64_t) * (size_t)(N > 0 ? N : 1));
    float *dlp = (float *)dev_alloc(sizeof(float) * (size_t)N), *dent = (float *)dev_alloc(sizeof(float) * (size_t)N);
    void *dscr = dev_alloc(cuda_logprobs_scratch_bytes(rows, vchunk));
    dev_poison(dlp, sizeof(float) * (size_t)N), dev_poison(dent, sizeof(float) * (size_t)N);
    EXPECT_GPU_OK(cuda_logprobs_forward(ctx, dt, dlp, with_entropy ? dent : NULL, dh, dw, dt_tgt, N, C, V, temperature,
                                        rows, vchunk, dscr, NULL));
    float *got_lp = dev_to_f32(dlp, N, CUDA_F32);
    double tol = dt == CUDA_BF16 ? 2e-2 : 1e-5;
    expect_close(what("logprobs %s N %d C %d V %d T %.2f rows %d vchunk %d", dt_name(dt), N, C, V, temperature, rows,
                      vchunk),
                 got_lp, ref_lp, N, tol);
    if (with_entropy) {
        float *got_ent = dev_to_f32(dent, N, CUDA_F32);
        expect_close(what("entropy %s N %d C %d V %d T %.2f rows %d vchunk %d", dt_name(dt), N, C, V, temperature, rows,
                          vchunk),
                     got_ent, ref_ent, N, tol);
        free(got_ent);
    } else {
        float *untouched = dev_to_f32(dent, N, CUDA_F32);
        for (int i = 0; i < N; i++)
            EXPECT(isnan(untouched[i]), "logprobs without entropy wrote entropy[%d] = %g", i, untouched[i]);
        free(untouched);
    }
    free(got_lp), free(h), free(w), free(tgt), free(ref_lp), free(ref_ent), free(scratch);
    dev_free(dh), dev_free(dw), dev_free(dt_tgt), dev_free(dlp), dev_free(dent), dev_free(dscr);
}

int main(void) {
    cuda_ctx *ctx = cuda_test_start("test_cuda_logprobs");
    maye_rng_init(&test_rng, 99, 3);
    for (cuda_dtype dt : {CUDA_F32, CUDA_BF16}) {
        run_case(ctx, dt, 1, 13, 1, 1.0f, 1, 1, 1);
        run_case(ctx, dt, 7, 13, 37, 1.0f, 4, 7, 1);
        run_case(ctx, dt, 33, 64, 1000, 0.7f, 8, 300, 1);
        run_case(ctx, dt, 33, 64, 1000, 1.3f, 64, 4096, 0);
        run_case(ctx, dt, 65, 48, 5003, 1.0f, 32, 1024, 1);
        run_case(ctx, dt, 0, 16, 50, 1.0f, 8, 16, 1);
        run_case(ctx, dt, 6, 64, 151936, 1.0f, 4, 32768, 1);
    }
    EXPECT_FAIL(cuda_logprobs_forward(ctx, CUDA_F32, NULL, NULL, NULL, NULL, NULL, 4, 8, 16, 0.0f, 4, 4, NULL, NULL),
                "temperature");
    cuda_ctx_free(ctx);
    return TEST_RESULT();
}
