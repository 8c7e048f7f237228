// cuda_attention_forward against the CPU attention_forward on packed segments of odd lengths: causal with and
// without cached keys, bidirectional (vision), GQA ratios 1/2/6/7, head dims 64/80/128 (tensor cores in bf16)
// and 32/96 (SIMT), one-row decode segments (split-K, with and without workspace), empty segments, strided
// and fused-qkv rows, and key pointers that are not 16-byte aligned. Every applicable kernel (auto with the
// default block shapes and with 16-row warps, SIMT, tensor-core prefill) runs each case, the prefill kernel in
// all four block shapes (64 or 128 query rows per block, cuda_ctx_set_prefill_rows; 16 or 32 per warp,
// cuda_ctx_set_prefill_warp_rows), which must give the same bits; outputs and log-sum-exps are compared,
// poisoned with NaN beforehand.
// Exits 77 without a GPU.
#include "cuda_test.h"

#include <string.h>

#include <vector>

struct AttnCase {
    const char *name;
    std::vector<int> nq, nk; // per segment
    int H, KV, D, causal;
    int pad_q, pad_kv;       // extra elements per row of q/out and k/v
    int fused;               // q, k, v side by side in one (T, (H + 2 KV) D) buffer (nq = nk)
    int misalign;            // k/v rows start one element into their buffer (not 16-byte aligned)
};

// One case in one dtype with one kernel choice, prefill block rows (64 or 128) and rows per warp (16 or 32, 0
// for the default; what the tensor-core prefill kernel uses when it runs); the CPU reference runs on the rounded
// inputs. With same_bits, the first run's output (with workspace) is kept there and later runs must give the same
// bits.
static void run_case(cuda_ctx *ctx, const AttnCase &c, cuda_dtype dt, cuda_attention_kernel kernel, int rows,
                     int warp_rows = 0, std::vector<float> *same_bits = nullptr) {
    int B = (int)c.nq.size(), H = c.H, KV = c.KV, D = c.D;
    std::vector<int> cu(B + 1, 0), kv_off(B + 1, 0);
    int max_nq = 0, max_nk = 0;
    for (int b = 0; b < B; b++) {
        cu[b + 1] = cu[b] + c.nq[b];
        kv_off[b + 1] = kv_off[b] + c.nk[b];
        max_nq = c.nq[b] > max_nq ? c.nq[b] : max_nq;
        max_nk = c.nk[b] > max_nk ? c.nk[b] : max_nk;
    }
    int T = cu[B], TK = kv_off[B];
    int64_t ldq, ldkv, ldo = (int64_t)H * D + c.pad_q;
    int64_t qn, kvn; // elements of the q buffer and of each k/v buffer
    if (c.fused) {
        ldq = ldkv = (int64_t)(H + 2 * KV) * D + c.pad_q;
        qn = (int64_t)T * ldq, kvn = 0;
    } else {
        ldq = (int64_t)H * D + c.pad_q, ldkv = (int64_t)KV * D + c.pad_kv;
        qn = (int64_t)T * ldq, kvn = (int64_t)TK * ldkv + c.misalign;
    }
    float *q = host_randn(qn, 1), *k = host_randn(kvn, 1), *v = host_randn(kvn, 1);
    round_to(q, qn, dt), round_to(k, kvn, dt), round_to(v, kvn, dt);
    void *dq = dev_from_f32(q, qn, dt), *dk = dev_from_f32(k, kvn, dt), *dv = dev_from_f32(v, kvn, dt);
    size_t es = dt_size(dt);
    std::vector<const float *> hk(B), hv(B);
    std::vector<const void *> gk(B), gv(B);
    for (int b = 0; b < B; b++) {
        if (c.fused) {
            hk[b] = q + (int64_t)cu[b] * ldq + (int64_t)H * D, hv[b] = q + (int64_t)cu[b] * ldq + (int64_t)(H + KV) * D;
            gk[b] = (const char *)dq + ((int64_t)cu[b] * ldq + (int64_t)H * D) * es;
            gv[b] = (const char *)dq + ((int64_t)cu[b] * ldq + (int64_t)(H + KV) * D) * es;
        } else {
            int64_t off = (int64_t)kv_off[b] * ldkv + c.misalign;
            hk[b] = k + off, hv[b] = v + off;
            gk[b] = (const char *)dk + off * es, gv[b] = (const char *)dv + off * es;
        }
    }
    float *ref = host_zeros((int64_t)T * ldo), *ref_lse = host_zeros((int64_t)T * H);
    size_t scratch_n = attention_scratch_floats(max_nk);
    float *scratch = host_zeros((int64_t)scratch_n);
    attention_forward(ref, ldo, ref_lse, q, ldq, hk.data(), hv.data(), ldkv, cu.data(), c.nk.data(), B, H, KV, D,
                      c.causal, scratch, scratch_n);

    void *dout = dev_alloc((size_t)T * ldo * es);
    float *dlse = (float *)dev_alloc(sizeof(float) * (size_t)T * H);
    int *dcu = (int *)dev_copy(cu.data(), sizeof(int) * (size_t)(B + 1));
    int *dnk = (int *)dev_copy(c.nk.data(), sizeof(int) * (size_t)(B > 0 ? B : 1));
    const void **dkp = (const void **)dev_copy(gk.data(), sizeof(void *) * (size_t)(B > 0 ? B : 1));
    const void **dvp = (const void **)dev_copy(gv.data(), sizeof(void *) * (size_t)(B > 0 ? B : 1));
    size_t ws_bytes = cuda_attention_workspace_bytes(ctx, B, H, D, max_nk);
    void *ws = dev_alloc(ws_bytes);
    cuda_ctx_set_attention_kernel(ctx, kernel);
    EXPECT_OK(cuda_ctx_set_prefill_rows(ctx, rows));
    EXPECT_OK(cuda_ctx_set_prefill_warp_rows(ctx, warp_rows));
    const char *kname = kernel == CUDA_ATTN_SIMT ? "simt" : kernel == CUDA_ATTN_PREFILL ? "prefill" : "auto";
    for (int use_ws = 1; use_ws >= (max_nq == 1 ? 0 : 1); use_ws--) { // one-row cases also without workspace
        dev_poison(dout, (size_t)T * ldo * es), dev_poison(dlse, sizeof(float) * (size_t)T * H);
        EXPECT_GPU_OK(cuda_attention_forward(ctx, dt, dout, ldo, dlse, dq, ldq, dkp, dvp, ldkv, dcu, dnk, B, H, KV, D,
                                             c.causal, max_nq, max_nk, use_ws ? ws : NULL, use_ws ? ws_bytes : 0,
                                             NULL));
        float *got = dev_to_f32(dout, (int64_t)T * ldo, dt), *got_lse = dev_to_f32(dlse, (int64_t)T * H, CUDA_F32);
        // compare the H * D values of each row (the padding is not written)
        float *g2 = host_zeros((int64_t)T * H * D), *r2 = host_zeros((int64_t)T * H * D);
        for (int t = 0; t < T; t++)
            for (int j = 0; j < H * D; j++) g2[(int64_t)t * H * D + j] = got[t * ldo + j], r2[(int64_t)t * H * D + j] = ref[t * ldo + j];
        expect_close(what("attention out (T %d, H %d x D %d) %s, KV %d, %s, kernel %s, prefill rows %d (%d per warp), "
                          "workspace %d", T, H, D, c.name, KV, dt_name(dt), kname, rows, warp_rows, use_ws),
                     g2, r2, (int64_t)T * H * D, dt_tol(dt));
        expect_close(what("attention lse (T %d, H %d) %s, KV %d, D %d, %s, kernel %s, prefill rows %d (%d per warp), "
                          "workspace %d", T, H, c.name, KV, D, dt_name(dt), kname, rows, warp_rows, use_ws),
                     got_lse, ref_lse, (int64_t)T * H, dt == CUDA_BF16 ? 1e-3 : 1e-5);
        if (same_bits && use_ws) {
            std::vector<float> mine(g2, g2 + (int64_t)T * H * D);
            mine.insert(mine.end(), got_lse, got_lse + (int64_t)T * H);
            if (same_bits->empty()) {
                *same_bits = mine;
            } else {
                int64_t diff = -1;
                for (size_t i = 0; i < mine.size() && diff < 0; i++)
                    if (memcmp(&mine[i], &(*same_bits)[i], sizeof(float)) != 0) diff = (int64_t)i;
                EXPECT(mine.size() == same_bits->size() && diff < 0, "attention %s, D %d, prefill rows %d (%d per "
                       "warp): value %lld differs from the first run's bits", c.name, D, rows, warp_rows,
                       (long long)diff);
            }
        }
        free(got), free(got_lse), free(g2), free(r2);
    }
    cuda_ctx_set_attention_kernel(ctx, CUDA_ATTN_AUTO);
    EXPECT_OK(cuda_ctx_set_prefill_rows(ctx, 0));
    EXPECT_OK(cuda_ctx_set_prefill_warp_rows(ctx, 0));
    free(q), free(k), free(v), free(ref), free(ref_lse), free(scratch);
    dev_free(dq), dev_free(dk), dev_free(dv), dev_free(dout), dev_free(dlse), dev_free(dcu), dev_free(dnk);
    dev_free((void *)dkp), dev_free((void *)dvp), dev_free(ws);
}

// A segment with no keys (non-causal) gets zeros and -inf (the CPU reference has NaN there), from the SIMT and
// the tensor-core kernels (64 and 128 prefill rows).
static void test_no_keys(cuda_ctx *ctx) {
    for (cuda_dtype dt : {CUDA_F32, CUDA_BF16}) {
        int H = 2, KV = 1, D = 64, T = 3;
        int cu[2] = {0, T}, nk[1] = {0};
        float *q = host_randn((int64_t)T * H * D, 1);
        void *dq = dev_from_f32(q, (int64_t)T * H * D, dt), *dkv = dev_alloc(64);
        const void *ptrs[1] = {dkv};
        const void **dp = (const void **)dev_copy(ptrs, sizeof ptrs);
        int *dcu = (int *)dev_copy(cu, sizeof cu), *dnk = (int *)dev_copy(nk, sizeof nk);
        void *dout = dev_alloc((size_t)T * H * D * dt_size(dt));
        float *dlse = (float *)dev_alloc(sizeof(float) * (size_t)T * H);
        for (int variant = 0; variant < 5; variant++) {
            cuda_attention_kernel kern = variant == 2 ? CUDA_ATTN_SIMT : CUDA_ATTN_AUTO;
            int rows = variant == 1 || variant == 4 ? 128 : 64, warp_rows = variant >= 3 ? 32 : 16;
            cuda_ctx_set_attention_kernel(ctx, kern);
            EXPECT_OK(cuda_ctx_set_prefill_rows(ctx, rows));
            EXPECT_OK(cuda_ctx_set_prefill_warp_rows(ctx, warp_rows));
            dev_poison(dout, (size_t)T * H * D * dt_size(dt)), dev_poison(dlse, sizeof(float) * (size_t)T * H);
            EXPECT_GPU_OK(cuda_attention_forward(ctx, dt, dout, H * D, dlse, dq, H * D, dp, dp, KV * D, dcu, dnk, 1, H,
                                                 KV, D, 0, T, 0, NULL, 0, NULL));
            float *got = dev_to_f32(dout, (int64_t)T * H * D, dt), *gl = dev_to_f32(dlse, (int64_t)T * H, CUDA_F32);
            for (int i = 0; i < T * H * D; i++)
                EXPECT(got[i] == 0.0f, "attention no-keys %s kernel %d (prefill rows %d): out[%d] = %g, want 0",
                       dt_name(dt), (int)kern, rows, i, got[i]);
            for (int i = 0; i < T * H; i++)
                EXPECT(gl[i] == -INFINITY, "attention no-keys %s kernel %d (prefill rows %d): lse[%d] = %g, want -inf",
                       dt_name(dt), (int)kern, rows, i, gl[i]);
            free(got), free(gl);
        }
        cuda_ctx_set_attention_kernel(ctx, CUDA_ATTN_AUTO);
        EXPECT_OK(cuda_ctx_set_prefill_rows(ctx, 0));
        EXPECT_OK(cuda_ctx_set_prefill_warp_rows(ctx, 0));
        free(q);
        dev_free(dq), dev_free(dkv), dev_free((void *)dp), dev_free(dcu), dev_free(dnk), dev_free(dout), dev_free(dlse);
    }
}

int main(void) {
    cuda_ctx *ctx = cuda_test_start("test_cuda_attention");
    maye_rng_init(&test_rng, 4321, 2);
    std::vector<AttnCase> cases = {
        {"causal packed D128 G6", {1, 17, 64, 100, 129}, {1, 17, 64, 100, 129}, 12, 2, 128, 1, 0, 0, 0, 0},
        {"causal packed D64 G1", {3, 65, 40}, {3, 65, 40}, 4, 4, 64, 1, 0, 0, 0, 0},
        {"causal packed D80 G2", {70, 1, 33}, {70, 1, 33}, 4, 2, 80, 1, 0, 0, 0, 0},
        {"causal packed D64 G2 around 128 rows", {127, 0, 129, 200, 256}, {127, 0, 129, 200, 256}, 4, 2, 64, 1, 0, 0, 0,
         0},
        {"causal nk < nq D128 G6", {200, 130}, {70, 3}, 6, 1, 128, 1, 0, 0, 0, 0},
        {"bidirectional vision D80 around 128 rows", {127, 129, 256}, {127, 129, 256}, 4, 4, 80, 0, 0, 0, 0, 0},
        {"causal cached D128 G7", {1, 5, 70, 64}, {1, 38, 270, 64}, 14, 2, 128, 1, 0, 0, 0, 0},
        {"causal cached D64 G2 strided", {9, 130}, {75, 131}, 4, 2, 64, 1, 8, 16, 0, 0},
        {"bidirectional vision D80 fused qkv", {1, 50, 64, 130}, {1, 50, 64, 130}, 3, 3, 80, 0, 0, 0, 1, 0},
        {"bidirectional D128 G6", {31, 7}, {90, 200}, 6, 1, 128, 0, 0, 0, 0, 0},
        {"decode D128 G6", {1, 1, 1, 1, 1, 1}, {1, 63, 64, 65, 300, 1000}, 12, 2, 128, 1, 0, 0, 0, 0},
        {"decode D64 G7 empty segment", {1, 0, 1, 1}, {700, 5, 129, 2}, 7, 1, 64, 1, 0, 0, 0, 0},
        {"decode D80 G1", {1, 1, 1}, {3, 77, 513}, 2, 2, 80, 0, 0, 0, 0, 0},
        {"misaligned keys D128 G2", {20, 1}, {50, 70}, 4, 2, 128, 1, 0, 0, 0, 1},
        {"misaligned keys decode D64 G6", {1, 1}, {90, 33}, 6, 1, 64, 1, 0, 0, 0, 1},
        {"SIMT head dim 32", {13, 40}, {13, 60}, 4, 2, 32, 1, 0, 0, 0, 0},
        {"SIMT head dim 96 odd stride", {1, 33}, {8, 33}, 6, 6, 96, 1, 3, 5, 0, 0},
        {"single token", {1}, {1}, 1, 1, 64, 1, 0, 0, 0, 0},
        {"empty batch", {}, {}, 4, 2, 64, 1, 0, 0, 0, 0},
    };
    for (const AttnCase &c : cases) {
        for (cuda_dtype dt : {CUDA_F32, CUDA_BF16}) {
            run_case(ctx, c, dt, CUDA_ATTN_AUTO, 0); // the defaults
            if (dt == CUDA_BF16) {
                run_case(ctx, c, dt, CUDA_ATTN_AUTO, 0, 16); // the 16-row warps' per-kind rows
                run_case(ctx, c, dt, CUDA_ATTN_SIMT, 0);
                // the tensor-core prefill kernel in every block shape: the same bits from each
                std::vector<float> bits;
                maye_rng inputs = test_rng; // each shape on the same inputs
                for (int shape = 0; shape < 4; shape++) {
                    test_rng = inputs;
                    run_case(ctx, c, dt, CUDA_ATTN_PREFILL, shape & 1 ? 128 : 64, shape & 2 ? 32 : 16, &bits);
                }
            }
        }
    }
    test_no_keys(ctx);
    EXPECT_FAIL(cuda_ctx_set_prefill_rows(ctx, 96), "64 or 128");
    EXPECT_FAIL(cuda_ctx_set_prefill_warp_rows(ctx, 8), "16 or 32");
    EXPECT_FAIL(cuda_attention_forward(ctx, CUDA_BF16, NULL, 0, NULL, NULL, 0, NULL, NULL, 0, NULL, NULL, 1, 6, 4, 64,
                                       1, 1, 1, NULL, 0, NULL),
                "KV must divide H");
    cuda_ctx_free(ctx);
    return TEST_RESULT();
}
