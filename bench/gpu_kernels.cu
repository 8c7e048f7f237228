// GPU kernel benchmarks for Qwen2-VL-2B shapes, one JSON line per result, each with ratios against a
// ceiling measured in the same run: the device-to-device copy bandwidth (memory-bound kernels) and the bf16
// GEMM rate of a large square product (matrix-bound ones).
//   copy         cudaMemcpy D2D, bytes read + written
//   gemm         T = 8192 tokens through every linear layer of a 2B block (forward, and one weight gradient)
//   gemm_decode  the decode step's 64-row GEMMs (q|k|v with bias, o, gate|up, down over 28 layer copies; the
//                lm_head with fp32 logits) with each of cuBLASLt's ranked heuristic answers: weight bandwidth
//                against the copy bandwidth, and the speed of each rank against rank 0 (what the model runs);
//                then rank 0 with K split 2 to 16 ways ("splitk")
//   attention    prefill 8 x 1024 causal (H 12, KV 2, D 128), vision 4 x 1024 and 64 x 1024 bidirectional
//                (H 16, D 80): the tensor-core prefill kernel with 64 and with 128 query rows per block ("rows"),
//                in warps of 16 and of 32 rows ("warp_rows"; each line after the first with its speedup over 64
//                rows of 16) and, except on the 64-image shape, the SIMT kernel for comparison; decode 64 sequences x 512 and 2048 keys over 28 layers' caches (plain
//                launches and a CUDA graph, against the prefill kernel; the split-K decode also with 1/2/3/4/6/8 key
//                tiles per block, for tuning its split heuristic);
//                backward 8 x 1024 causal (H 12, KV 2, D 128): the flash-style kernels against the per-segment
//                GEMMs
//   logprobs     8192 tokens, V 151936, C 1536 (fused lm_head + online log-sum-exp) against the bare GEMM
//   sampling     64 rows of 151936 logits: plain, top-p 0.9, top-k 50 + top-p 0.9
//   elementwise  RMSNorm, SiLU-gated MLP, AdamW over 256M parameters
// Inputs are pseudo-random (never zeros). Timing: CUDA events around `reps` launches after two warm-up
// launches, the median of 5 such trials, per launch. Exits 77 without a GPU.
//   gpu_kernels [--smoke] [--only NAME,...]
//     --smoke  every benchmark on shapes about 64x smaller (the names keep the 2B shapes), for the CUDA
//              emulator (tests/cuda/test_gpu_bench_smoke.sh); its numbers mean nothing
//     --only   these benchmarks alone (copy, gemm, prefill, backward, decode, gemm_decode, logprobs, sampling,
//              elementwise), e.g. under a profiler; ratios to a peak that did not run print as 0
#ifndef _Noreturn
#define _Noreturn [[noreturn]]
#endif
extern "C" {
#include "core/error.h"
}
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/model_kernels.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <functional>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

// ----------------------------------------------------------------------------
// helpers

#define CK(expr)                                                                                           \
    do {                                                                                                   \
        cudaError_t e_ = (expr);                                                                           \
        if (e_ != cudaSuccess) maye_die("%s: %s", #expr, cudaGetErrorString(e_));                          \
    } while (0)
#define OK(expr)                                                                                           \
    do {                                                                                                   \
        if ((expr) < 0) maye_die("%s: %s", #expr, maye_errmsg());                                          \
    } while (0)

static cuda_ctx *ctx;
static double copy_gbps = 0, gemm_peak_tflops = 0;

// a / b, or 0 when b is (a peak whose benchmark did not run: --only)
static double ratio(double a, double b) { return b > 0 ? a / b : 0; }
static bool smoke = false; // --smoke

// A dimension of the 2B shapes, or in a smoke run about 64 times less (a multiple of 16, at least 16).
static int S(int n) { return smoke ? ((n / 64 + 15) / 16 * 16 > 16 ? (n / 64 + 15) / 16 * 16 : 16) : n; }

static void *dalloc(size_t bytes) {
    void *p = NULL;
    CK(cudaMalloc(&p, bytes > 0 ? bytes : 16));
    return p;
}

// x[i] = scale * (hash(seed, i) uniform in [-1, 1)), stored as float or bf16.
__global__ void fill_random_kernel(void *x, int bf16_out, int64_t n, float scale, uint32_t seed) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 0x9E3779B1u ^ (uint32_t)(i >> 32) * 0x85EBCA77u ^ seed * 0xC2B2AE3Du;
        h ^= h >> 15, h *= 0x2C1B3C6Du, h ^= h >> 12, h *= 0x297A2D39u, h ^= h >> 15;
        float v = scale * ((float)(h >> 8) * (2.0f / 16777216.0f) - 1.0f);
        if (bf16_out) ((__nv_bfloat16 *)x)[i] = __float2bfloat16_rn(v);
        else ((float *)x)[i] = v;
    }
}

static void *drandom(cuda_dtype dt, int64_t n, float scale) {
    static uint32_t seed = 1;
    void *p = dalloc((size_t)n * (dt == CUDA_BF16 ? 2 : 4));
    fill_random_kernel<<<4096, 256>>>(p, dt == CUDA_BF16, n, scale, seed++);
    CK(cudaGetLastError());
    return p;
}

// Median over 5 trials of the time per call of fn (ms), `reps` calls per trial, after 2 warm-up calls (--smoke:
// one warm-up, one call); fn enqueues its work on `stream`.
static double time_ms(const std::function<void()> &fn, int reps, cudaStream_t stream = NULL) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    int trials = smoke ? 1 : 5; // a smoke run times one call
    if (smoke) reps = 1;
    fn();
    if (!smoke) fn();
    CK(cudaDeviceSynchronize());
    std::vector<float> t;
    for (int trial = 0; trial < trials; trial++) {
        CK(cudaEventRecord(a, stream));
        for (int r = 0; r < reps; r++) fn();
        CK(cudaEventRecord(b, stream));
        CK(cudaEventSynchronize(b));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms / reps);
    }
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

static void emit(const char *bench, const char *shape, double ms, const char *extra_fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void emit(const char *bench, const char *shape, double ms, const char *extra_fmt, ...) {
    char extra[512];
    va_list ap;
    va_start(ap, extra_fmt);
    vsnprintf(extra, sizeof extra, extra_fmt, ap);
    va_end(ap);
    printf("{\"bench\": \"%s\", \"device\": \"%s\", \"shape\": \"%s\", \"ms\": %.4f%s%s}\n", bench,
           cuda_ctx_device_name(ctx), shape, ms, extra[0] ? ", " : "", extra);
    fflush(stdout);
}

// ----------------------------------------------------------------------------
// ceilings

static void bench_copy(void) {
    size_t bytes = smoke ? (size_t)8 << 20 : (size_t)2 << 30;
    void *a = dalloc(bytes), *b = dalloc(bytes);
    CK(cudaMemset(a, 1, bytes));
    double ms = time_ms([&] { CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice)); }, 5);
    copy_gbps = 2.0 * bytes / (ms * 1e-3) / 1e9;
    emit("copy", "2 GiB device to device", ms, "\"gb_per_s\": %.1f", copy_gbps);
    CK(cudaFree(a));
    CK(cudaFree(b));
}

static double gemm_tflops(int M, int N, int K, int trans_a, double *ms_out) {
    void *a = drandom(CUDA_BF16, (int64_t)M * K, 1), *b = drandom(CUDA_BF16, (int64_t)N * K, 1);
    void *c = dalloc((size_t)M * N * 2);
    // forward: c (M, N) = a (M, K) @ b (N, K)^T; trans_a: c = a^T @ b with a (K, M), b (K, N)
    double ms = time_ms(
        [&] {
            OK(trans_a ? cuda_gemm(ctx, CUDA_BF16, CUDA_BF16, 1, 0, M, N, K, 1.0f, a, M, b, N, 0.0f, c, N, NULL)
                       : cuda_gemm(ctx, CUDA_BF16, CUDA_BF16, 0, 1, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N, NULL));
        },
        10);
    CK(cudaFree(a));
    CK(cudaFree(b));
    CK(cudaFree(c));
    *ms_out = ms;
    return 2.0 * M * N * K / (ms * 1e-3) / 1e12;
}

static void bench_gemm(void) {
    double ms;
    gemm_peak_tflops = gemm_tflops(S(8192), S(8192), S(8192), 0, &ms);
    emit("gemm_peak", "8192x8192x8192 bf16", ms, "\"tflops\": %.1f", gemm_peak_tflops);
    struct {
        const char *name;
        int M, N, K, trans_a;
    } shapes[] = {
        {"qkv 8192x1536->2048", S(8192), S(2048), S(1536), 0},     {"o 8192x1536->1536", S(8192), S(1536), S(1536), 0},
        {"gate_up 8192x1536->17920", S(8192), S(17920), S(1536), 0}, {"down 8192x8960->1536", S(8192), S(1536), S(8960), 0},
        {"dW gate_up 17920x1536 over 8192", S(17920), S(1536), S(8192), 1},
    };
    for (auto &s : shapes) {
        double tf = gemm_tflops(s.M, s.N, s.K, s.trans_a, &ms);
        emit("gemm", s.name, ms, "\"tflops\": %.1f, \"vs_peak\": %.3f", tf, ratio(tf, gemm_peak_tflops));
    }
}

// The decode step's GEMMs (64 rows, the 2B model's layer shapes, weights rotating over 28 layer copies so they
// stream from HBM as in a step; the lm_head once, fp32 logits) with each of cuBLASLt's ranked heuristic
// answers: weight bytes per second against the copy bandwidth, and which rank is fastest (0 is what the
// model runs).
static void bench_gemm_decode(void) {
    const int M = 64, L = smoke ? 2 : 28;
    struct {
        const char *name;
        int N, K, copies, bias;
        cuda_dtype out;
    } shapes[] = {{"qkv 64x1536->2048 +bias", S(2048), S(1536), L, 1, CUDA_BF16},
                  {"o 64x1536->1536", S(1536), S(1536), L, 0, CUDA_BF16},
                  {"gate_up 64x1536->17920", S(17920), S(1536), L, 0, CUDA_BF16},
                  {"down 64x8960->1536", S(1536), S(8960), L, 0, CUDA_BF16},
                  {"lm_head 64x1536->151936 fp32", S(151936), S(1536), 1, 0, CUDA_F32}};
    for (auto &s : shapes) {
        size_t wn = (size_t)s.N * s.K;
        void *x = drandom(CUDA_BF16, (int64_t)M * s.K, 1), *w = drandom(CUDA_BF16, (int64_t)wn * s.copies, 0.05f);
        void *b = drandom(CUDA_BF16, s.N, 0.1f), *y = dalloc((size_t)M * s.N * 4);
        bool failed = false; // a rank cuBLASLt cannot run: reported, and the other benchmarks go on
        auto call = [&](int l) {
            const void *wl = (const char *)w + (size_t)l * wn * 2;
            int rc = s.out == CUDA_F32 ? cuda_gemm(ctx, CUDA_BF16, CUDA_F32, 0, 1, M, s.N, s.K, 1.0f, x, s.K, wl, s.K,
                                                   0.0f, y, s.N, NULL)
                                       : cuda_matmul_forward(ctx, CUDA_BF16, y, x, wl, s.bias ? b : NULL, M, s.K, s.N,
                                                             NULL);
            failed |= rc < 0;
        };
        double base = 0;
        // after a first call (failed says how it went): the time per call as the context is set, or, when that
        // call failed, -1 and an error line naming the setting (key: value)
        auto timed = [&](const char *key, int value) -> double {
            if (failed) {
                printf("{\"bench\": \"gemm_decode\", \"device\": \"%s\", \"shape\": \"%s\", \"%s\": %d, "
                       "\"error\": \"%s\"}\n", cuda_ctx_device_name(ctx), s.name, key, value, maye_errmsg());
                fflush(stdout);
                cudaGetLastError();
                return -1;
            }
            return time_ms(
                       [&] {
                           for (int l = 0; l < s.copies; l++) call(l);
                       },
                       3) /
                   s.copies;
        };
        for (int rank = 0; rank < CUDA_GEMM_ALGOS; rank++) {
            OK(cuda_ctx_set_gemm_algo_rank(ctx, rank));
            failed = false;
            call(0); // asks the heuristic
            int answers = cuda_ctx_gemm_last_answers(ctx);
            if (!failed && answers < rank + 1) break; // no answer of this rank
            double ms = timed("algo_rank", rank);
            if (ms < 0) {
                if (rank == 0) break;
                continue;
            }
            if (rank == 0) base = ms;
            double gbps = wn * 2.0 / (ms * 1e-3) / 1e9;
            emit("gemm_decode", s.name, ms, "\"algo_rank\": %d, \"weight_gb_per_s\": %.1f, \"vs_copy_bandwidth\": %.3f, "
                 "\"vs_rank0\": %.3f", rank, gbps, ratio(gbps, copy_gbps), base / ms);
        }
        OK(cuda_ctx_set_gemm_algo_rank(ctx, 0));
        // rank 0 with K split n ways: whether more blocks in flight stream the 64-row weights faster
        for (int splits : {2, 3, 4, 6, 8, 12, 16}) {
            // partial sums reduced in fp32 need splits x M x N floats of workspace: skip what cannot fit
            if ((size_t)splits * M * s.N * sizeof(float) > CUDA_GEMM_WORKSPACE_BYTES) continue;
            OK(cuda_ctx_set_gemm_splitk(ctx, splits));
            failed = false;
            call(0);
            double ms = timed("splitk", splits);
            if (ms < 0) continue;
            double gbps = wn * 2.0 / (ms * 1e-3) / 1e9;
            emit("gemm_decode", s.name, ms, "\"algo_rank\": 0, \"splitk\": %d, \"weight_gb_per_s\": %.1f, "
                 "\"vs_copy_bandwidth\": %.3f, \"vs_rank0\": %.3f", splits, gbps, ratio(gbps, copy_gbps), base / ms);
        }
        OK(cuda_ctx_set_gemm_splitk(ctx, 0));
        void *ps[] = {x, w, b, y};
        for (void *p : ps) CK(cudaFree(p));
    }
}

// ----------------------------------------------------------------------------
// attention

struct AttnSetup {
    int B, H, KV, D, nq, nk, causal;
    void *q, *out, *kv;            // q/out (B*nq, H*D); kv: per layer, K then V, (B*nk, KV*D) each
    float *lse;
    int *cu, *nkd;
    const void **kp, **vp;         // (layers, B) device pointer arrays
    void *ws;
    size_t ws_bytes;
    int layers;
};

static AttnSetup attn_setup(int B, int H, int KV, int D, int nq, int nk, int causal, int layers) {
    AttnSetup s = {};
    s.B = B, s.H = H, s.KV = KV, s.D = D, s.nq = nq, s.nk = nk, s.causal = causal, s.layers = layers;
    int64_t T = (int64_t)B * nq, TK = (int64_t)B * nk;
    s.q = drandom(CUDA_BF16, T * H * D, 1);
    s.out = dalloc((size_t)T * H * D * 2);
    s.lse = (float *)dalloc(sizeof(float) * (size_t)T * H);
    s.kv = drandom(CUDA_BF16, (int64_t)layers * 2 * TK * KV * D, 1);
    std::vector<int> cu(B + 1), nks(B, nk);
    for (int b = 0; b <= B; b++) cu[b] = b * nq;
    std::vector<const void *> kp((size_t)layers * B), vp((size_t)layers * B);
    for (int l = 0; l < layers; l++)
        for (int b = 0; b < B; b++) {
            const char *base = (const char *)s.kv + (size_t)l * 2 * TK * KV * D * 2;
            kp[(size_t)l * B + b] = base + (size_t)b * nk * KV * D * 2;
            vp[(size_t)l * B + b] = base + ((size_t)TK + (size_t)b * nk) * KV * D * 2;
        }
    s.cu = (int *)dalloc(sizeof(int) * (B + 1));
    s.nkd = (int *)dalloc(sizeof(int) * B);
    s.kp = (const void **)dalloc(sizeof(void *) * kp.size());
    s.vp = (const void **)dalloc(sizeof(void *) * vp.size());
    CK(cudaMemcpy(s.cu, cu.data(), sizeof(int) * (B + 1), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(s.nkd, nks.data(), sizeof(int) * B, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(s.kp, kp.data(), sizeof(void *) * kp.size(), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(s.vp, vp.data(), sizeof(void *) * vp.size(), cudaMemcpyHostToDevice));
    s.ws_bytes = cuda_attention_workspace_bytes(ctx, B, H, D, nk);
    s.ws = dalloc(s.ws_bytes);
    return s;
}

static void attn_free(AttnSetup &s) {
    void *ps[] = {s.q, s.out, s.lse, s.kv, s.cu, s.nkd, (void *)s.kp, (void *)s.vp, s.ws};
    for (void *p : ps) CK(cudaFree(p));
}

static void attn_call(AttnSetup &s, int layer, cudaStream_t stream) {
    OK(cuda_attention_forward(ctx, CUDA_BF16, s.out, (int64_t)s.H * s.D, s.lse, s.q, (int64_t)s.H * s.D,
                              s.kp + (size_t)layer * s.B, s.vp + (size_t)layer * s.B, (int64_t)s.KV * s.D, s.cu, s.nkd,
                              s.B, s.H, s.KV, s.D, s.causal, s.nq, s.nk, s.ws, s.ws_bytes, (cuda_stream)stream));
}

// The tensor-core prefill kernel with 64 and 128 query rows per block, each in warps of 16 and of 32 rows
// ("warp_rows"; speedups against 64 rows of 16), then (simt) the SIMT kernel.
static void bench_prefill(const char *name, int B, int H, int KV, int D, int n, int causal, int simt) {
    AttnSetup s = attn_setup(B, H, KV, D, n, n, causal, 1);
    double pairs = causal ? (double)B * n * (n + 1) / 2 : (double)B * n * n; // (query, key) pairs
    double flops = 4.0 * D * H * pairs;
    double ms_64 = 0;
    for (int k = 0; k < 4 + simt; k++) {
        int rows = k & 1 ? 128 : 64, warp_rows = k == 2 || k == 3 ? 32 : 16;
        cuda_ctx_set_attention_kernel(ctx, k == 4 ? CUDA_ATTN_SIMT : CUDA_ATTN_AUTO);
        OK(cuda_ctx_set_prefill_rows(ctx, rows));
        OK(cuda_ctx_set_prefill_warp_rows(ctx, warp_rows));
        double ms = time_ms([&] { attn_call(s, 0, NULL); }, k < 4 ? 20 : 3);
        char shape[128], extra[128] = "";
        if (k < 4) {
            snprintf(shape, sizeof shape, "%s %dx%d H%d KV%d D%d (tensor-core %d rows%s)", name, B, n, H, KV, D, rows,
                     warp_rows == 32 ? ", 32 per warp" : "");
            if (k == 0) ms_64 = ms;
            snprintf(extra, sizeof extra, ", \"rows\": %d, \"warp_rows\": %d%s", rows, warp_rows,
                     k ? ", \"speedup_vs_64_rows\": " : "");
            if (k) snprintf(extra + strlen(extra), sizeof extra - strlen(extra), "%.3f", ms_64 / ms);
        } else {
            snprintf(shape, sizeof shape, "%s %dx%d H%d KV%d D%d (simt)", name, B, n, H, KV, D);
        }
        emit("attention_prefill", shape, ms, "\"kernel\": \"%s\"%s, \"tokens_per_s\": %.0f, \"tflops\": %.1f, "
             "\"vs_gemm_peak\": %.3f", k < 4 ? "tensor-core" : "simt", extra, B * n / (ms * 1e-3),
             flops / (ms * 1e-3) / 1e12, ratio(flops / (ms * 1e-3) / 1e12, gemm_peak_tflops));
    }
    cuda_ctx_set_attention_kernel(ctx, CUDA_ATTN_AUTO);
    OK(cuda_ctx_set_prefill_rows(ctx, 0));
    OK(cuda_ctx_set_prefill_warp_rows(ctx, 0));
    attn_free(s);
}

// The backward of a prefill (dQ, dK, dV from dO, the forward's output and lse): the flash-style kernels
// (device segment arrays) against the GEMM path (host arrays, one set of GEMMs per segment and key/value
// head). FLOPs: the five products S, dP, dV, dK, dQ over the visible (query, key) pairs.
static void bench_attention_backward(int B, int H, int KV, int D, int n) {
    AttnSetup s = attn_setup(B, H, KV, D, n, n, 1, 1);
    attn_call(s, 0, NULL); // out and lse
    int64_t T = (int64_t)B * n, TK = (int64_t)B * n;
    void *dout = drandom(CUDA_BF16, T * H * D, 1), *dq = dalloc((size_t)T * H * D * 2);
    void *dkv = dalloc((size_t)2 * TK * KV * D * 2);
    std::vector<void *> hd(2 * B);
    std::vector<const void *> hkv(2 * B);
    std::vector<int> cu(B + 1), nks(B, n);
    for (int b = 0; b <= B; b++) cu[b] = b * n;
    for (int b = 0; b < B; b++) {
        hd[b] = (char *)dkv + (size_t)b * n * KV * D * 2;
        hd[B + b] = (char *)dkv + ((size_t)TK + (size_t)b * n) * KV * D * 2;
    }
    CK(cudaMemcpy(hkv.data(), s.kp, sizeof(void *) * B, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hkv.data() + B, s.vp, sizeof(void *) * B, cudaMemcpyDeviceToHost));
    void **dd = (void **)dalloc(sizeof(void *) * 2 * B);
    CK(cudaMemcpy(dd, hd.data(), sizeof(void *) * 2 * B, cudaMemcpyHostToDevice));
    size_t fws_bytes = cuda_attention_backward_flash_workspace_bytes((int)T, (int)TK, H, D);
    size_t gws_bytes = cuda_attention_backward_workspace_bytes(CUDA_BF16, H, KV, D, n, n);
    void *fws = dalloc(fws_bytes), *gws = dalloc(gws_bytes);
    int64_t HD = (int64_t)H * D, KVD = (int64_t)KV * D;
    double flops = 10.0 * D * H * ((double)B * n * (n + 1) / 2);
    double ms[2];
    ms[0] = time_ms(
        [&] {
            OK(cuda_attention_backward_flash(ctx, CUDA_BF16, dq, dd, dd + B, dout, HD, s.out, HD, s.q, HD, s.kp, s.vp,
                                             KVD, s.lse, s.cu, s.cu, s.nkd, B, (int)T, (int)TK, H, KV, D, 1, n, n, fws,
                                             fws_bytes, NULL));
        },
        10);
    ms[1] = time_ms(
        [&] {
            OK(cuda_attention_backward(ctx, CUDA_BF16, dq, hd.data(), hd.data() + B, dout, HD, s.q, HD, hkv.data(),
                                       hkv.data() + B, KVD, s.lse, cu.data(), nks.data(), B, H, KV, D, 1, gws, gws_bytes,
                                       NULL));
        },
        10);
    const char *names[2] = {"flash", "per-segment GEMMs"};
    for (int k = 0; k < 2; k++) {
        char shape[128];
        snprintf(shape, sizeof shape, "causal %dx%d H%d KV%d D%d (%s)", B, n, H, KV, D, names[k]);
        emit("attention_backward", shape, ms[k],
             "\"tokens_per_s\": %.0f, \"tflops\": %.1f, \"vs_gemm_peak\": %.3f, \"workspace_mb\": %.1f, "
             "\"vs_gemm_path\": %.3f",
             B * n / (ms[k] * 1e-3), flops / (ms[k] * 1e-3) / 1e12, ratio(flops / (ms[k] * 1e-3) / 1e12, gemm_peak_tflops),
             (k == 0 ? fws_bytes : gws_bytes) / 1e6, ms[1] / ms[k]);
    }
    void *ps[] = {dout, dq, dkv, (void *)dd, fws, gws};
    for (void *p : ps) CK(cudaFree(p));
    attn_free(s);
}

// The time of one launch of the L layers' decode attention (attn_call for layers 0..L-1 on st) captured in a
// CUDA graph, as a decode step runs them: no launch gaps.
static double decode_graph_ms(AttnSetup &s, int L, cudaStream_t st) {
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    for (int l = 0; l < L; l++) attn_call(s, l, st);
    CK(cudaStreamEndCapture(st, &graph));
    CK(cudaGraphInstantiate(&exec, graph, 0));
    double ms = time_ms([&] { CK(cudaGraphLaunch(exec, st)); }, 10, st);
    CK(cudaGraphExecDestroy(exec));
    CK(cudaGraphDestroy(graph));
    return ms;
}

// 64 one-token queries over 512 cached keys per layer, 28 layers of separate caches (470 MB of K/V, far
// beyond L2) so every call streams its keys from HBM, as a decode step does.
static void bench_decode(int B, int nk) {
    int H = 12, KV = 2, D = 128, L = smoke ? 2 : 28;
    AttnSetup s = attn_setup(B, H, KV, D, 1, nk, 1, L);
    double kv_bytes = 2.0 * B * nk * KV * D * 2; // K and V of one layer, bf16
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    cuda_attention_kernel kernels[2] = {CUDA_ATTN_AUTO, CUDA_ATTN_PREFILL};
    const char *names[2] = {"split-K decode", "prefill kernel"};
    for (int k = 0; k < 2; k++) {
        cuda_ctx_set_attention_kernel(ctx, kernels[k]);
        double ms = time_ms(
            [&] {
                for (int l = 0; l < L; l++) attn_call(s, l, st);
            },
            5, st);
        double gms = decode_graph_ms(s, L, st); // the same 28 calls in a CUDA graph
        char shape[160];
        snprintf(shape, sizeof shape, "%d seqs x %d keys H%d KV%d D%d, %d layers (%s)", B, nk, H, KV, D, L, names[k]);
        double gbps = kv_bytes * L / (gms * 1e-3) / 1e9;
        emit("attention_decode", shape, gms / L,
             "\"ms_per_layer_launched\": %.4f, \"tokens_per_s_per_layer\": %.0f, \"kv_gb_per_s\": %.1f, "
             "\"vs_copy_bandwidth\": %.3f",
             ms / L, B / (gms / L * 1e-3), gbps, ratio(gbps, copy_gbps));
    }
    cuda_ctx_set_attention_kernel(ctx, CUDA_ATTN_AUTO);
    // the split-K decode with fixed keys per block (64-key tiles per split) against the heuristic above, in a
    // CUDA graph: the data for tuning decode_splits
    for (int tps : {1, 2, 3, 4, 6, 8}) {
        cuda_ctx_set_decode_split_tiles(ctx, tps);
        CK(cudaFree(s.ws));
        s.ws_bytes = cuda_attention_workspace_bytes(ctx, B, H, D, nk);
        s.ws = dalloc(s.ws_bytes);
        double gms = decode_graph_ms(s, L, st);
        char shape[160];
        snprintf(shape, sizeof shape, "%d seqs x %d keys H%d KV%d D%d, %d layers (split-K, %d tiles per split)", B, nk,
                 H, KV, D, L, tps);
        double gbps = kv_bytes * L / (gms * 1e-3) / 1e9;
        emit("attention_decode_split", shape, gms / L, "\"tiles_per_split\": %d, \"kv_gb_per_s\": %.1f, "
             "\"vs_copy_bandwidth\": %.3f", tps, gbps, ratio(gbps, copy_gbps));
    }
    cuda_ctx_set_decode_split_tiles(ctx, 0);
    CK(cudaStreamDestroy(st));
    attn_free(s);
}

// ----------------------------------------------------------------------------
// log-probs and sampling

static void bench_logprobs(void) {
    int N = S(8192), C = S(1536), V = S(151936);
    void *h = drandom(CUDA_BF16, (int64_t)N * C, 1), *w = drandom(CUDA_BF16, (int64_t)V * C, 0.05f);
    int64_t *tgt = (int64_t *)dalloc(sizeof(int64_t) * N);
    CK(cudaMemset(tgt, 0, sizeof(int64_t) * N));
    float *lp = (float *)dalloc(sizeof(float) * N), *ent = (float *)dalloc(sizeof(float) * N);
    double flops = 2.0 * N * V * C;
    // the model's blocking first (llm.cu: 2048 x 4096, 32 MB of fp32 logits), then others: 16 MB blocks, which
    // may stay in the L2 between the GEMM and the fold (Nsight Compute saw the fold hit L2 4% of the time)
    int blocking[][2] = {{S(2048), S(4096)}, {S(1024), S(8192)}, {S(4096), S(4096)}, {S(2048), S(2048)},
                         {S(1024), S(4096)}};
    for (auto &bl : blocking) {
        void *scr = dalloc(cuda_logprobs_scratch_bytes(bl[0], bl[1]));
        double ms = time_ms(
            [&] { OK(cuda_logprobs_forward(ctx, CUDA_BF16, lp, ent, h, w, tgt, N, C, V, 1.0f, bl[0], bl[1], scr, NULL)); },
            3);
        // the bare GEMMs of the same blocking, fp32 output (what the fold adds to)
        double gms = time_ms(
            [&] {
                for (int r0 = 0; r0 < N; r0 += bl[0])
                    for (int v0 = 0; v0 < V; v0 += bl[1]) {
                        int nv = V - v0 < bl[1] ? V - v0 : bl[1];
                        OK(cuda_gemm(ctx, CUDA_BF16, CUDA_F32, 0, 1, bl[0], nv, C, 1.0f, (const char *)h + (size_t)r0 * C * 2,
                                     C, (const char *)w + (size_t)v0 * C * 2, C, 0.0f, scr, nv, NULL));
                    }
            },
            3);
        char shape[128];
        snprintf(shape, sizeof shape, "N %d C %d V %d rows %d vchunk %d", N, C, V, bl[0], bl[1]);
        emit("logprobs", shape, ms,
             "\"tokens_per_s\": %.0f, \"tflops\": %.1f, \"gemm_only_ms\": %.4f, \"vs_gemm_only\": %.3f, "
             "\"vs_gemm_peak\": %.3f",
             N / (ms * 1e-3), flops / (ms * 1e-3) / 1e12, gms, gms / ms, ratio(flops / (ms * 1e-3) / 1e12, gemm_peak_tflops));
        CK(cudaFree(scr));
    }
    CK(cudaFree(h));
    CK(cudaFree(w));
    CK(cudaFree(tgt));
    CK(cudaFree(lp));
    CK(cudaFree(ent));
}

static void bench_sampling(void) {
    int B = 64, V = S(151936);
    float *z = (float *)drandom(CUDA_F32, (int64_t)B * V, 8.0f);
    int64_t *tok = (int64_t *)dalloc(sizeof(int64_t) * B);
    float *lp = (float *)dalloc(sizeof(float) * B);
    uint64_t *streams = (uint64_t *)dalloc(sizeof(uint64_t) * B), *idx = (uint64_t *)dalloc(sizeof(uint64_t) * B);
    CK(cudaMemset(streams, 3, sizeof(uint64_t) * B));
    CK(cudaMemset(idx, 0, sizeof(uint64_t) * B));
    struct {
        const char *name;
        float tau;
        int k;
        float p;
    } settings[] = {{"temperature 1", 1.0f, 0, 1.0f}, {"top-p 0.9", 1.0f, 0, 0.9f}, {"top-k 50 + top-p 0.9", 1.0f, 50, 0.9f}};
    for (auto &s : settings) {
        std::vector<float> tau(B, s.tau), p(B, s.p);
        std::vector<int> k(B, s.k);
        float *dt = (float *)dalloc(sizeof(float) * B), *dp = (float *)dalloc(sizeof(float) * B);
        int *dk = (int *)dalloc(sizeof(int) * B);
        CK(cudaMemcpy(dt, tau.data(), sizeof(float) * B, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dp, p.data(), sizeof(float) * B, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dk, k.data(), sizeof(int) * B, cudaMemcpyHostToDevice));
        double ms = time_ms(
            [&] { OK(cuda_sample_forward(tok, lp, z, V, B, V, dt, dk, dp, 7, streams, idx, NULL, 0, NULL, NULL)); }, 10);
        char shape[128];
        snprintf(shape, sizeof shape, "%d rows x %d logits, %s", B, V, s.name);
        emit("sampling", shape, ms, "\"rows_per_s\": %.0f", B / (ms * 1e-3));
        CK(cudaFree(dt));
        CK(cudaFree(dp));
        CK(cudaFree(dk));
    }
    CK(cudaFree(z));
    CK(cudaFree(tok));
    CK(cudaFree(lp));
    CK(cudaFree(streams));
    CK(cudaFree(idx));
}

// ----------------------------------------------------------------------------
// memory-bound kernels

static void bench_elementwise(void) {
    int T = S(8192), C = S(1536), I = S(8960);
    void *x = drandom(CUDA_BF16, (int64_t)T * C, 1);
    float *w = (float *)drandom(CUDA_F32, C, 1); // norm weights are fp32 in every dtype
    void *out = dalloc((size_t)T * C * 2);
    float *rstd = (float *)dalloc(sizeof(float) * T);
    double ms = time_ms([&] { OK(cuda_rmsnorm_forward(CUDA_BF16, out, rstd, x, w, T, C, 1e-6f, NULL)); }, 20);
    double gb = 2.0 * T * C * 2 / 1e9;
    emit("rmsnorm", "8192x1536 bf16", ms, "\"gb_per_s\": %.1f, \"vs_copy_bandwidth\": %.3f", gb / (ms * 1e-3),
         ratio(gb / (ms * 1e-3), copy_gbps));
    void *g = drandom(CUDA_BF16, (int64_t)T * I, 1), *u = drandom(CUDA_BF16, (int64_t)T * I, 1);
    void *a = dalloc((size_t)T * I * 2);
    ms = time_ms([&] { OK(cuda_gated_activation_forward(CUDA_BF16, a, g, u, (int64_t)T * I, ACT_SILU, NULL)); }, 20);
    gb = 3.0 * T * I * 2 / 1e9;
    emit("silu_gated", "8192x8960 bf16", ms, "\"gb_per_s\": %.1f, \"vs_copy_bandwidth\": %.3f", gb / (ms * 1e-3),
         ratio(gb / (ms * 1e-3), copy_gbps));
    // the model's form: gate|up rows of one GEMM; the backward also rebuilding the output (as the update does)
    void *gu = drandom(CUDA_BF16, (int64_t)T * 2 * I, 1), *dgu = dalloc((size_t)T * 2 * I * 2);
    ms = time_ms([&] { OK(cuda_gated_rows_forward(CUDA_BF16, a, gu, T, I, ACT_SILU, NULL)); }, 20);
    emit("silu_gated_rows", "8192x8960 bf16 from 8192x17920 gate|up rows", ms,
         "\"gb_per_s\": %.1f, \"vs_copy_bandwidth\": %.3f", gb / (ms * 1e-3), ratio(gb / (ms * 1e-3), copy_gbps));
    ms = time_ms([&] { OK(cuda_gated_rows_backward(CUDA_BF16, dgu, a, g, gu, T, I, ACT_SILU, NULL)); }, 20);
    gb = 6.0 * T * I * 2 / 1e9; // read gate, up, d out; write d gate, d up, out
    emit("silu_gated_rows_backward", "8192x8960 bf16, with the forward's output", ms,
         "\"gb_per_s\": %.1f, \"vs_copy_bandwidth\": %.3f", gb / (ms * 1e-3), ratio(gb / (ms * 1e-3), copy_gbps));
    void *ps[] = {x, w, out, rstd, g, u, a, gu, dgu};
    for (void *p : ps) CK(cudaFree(p));

    int64_t N = smoke ? (int64_t)1 << 20 : (int64_t)256 << 20;
    float *p = (float *)drandom(CUDA_F32, N, 1), *gr = (float *)drandom(CUDA_F32, N, 0.01f);
    float *m = (float *)dalloc(sizeof(float) * N), *v = (float *)dalloc(sizeof(float) * N);
    void *pb = dalloc(2 * (size_t)N);
    CK(cudaMemset(m, 0, sizeof(float) * N));
    CK(cudaMemset(v, 0, sizeof(float) * N));
    ms = time_ms([&] { OK(cuda_adamw_step(p, pb, gr, CUDA_F32, m, v, N, 1e-6, 0.9, 0.999, 1e-8, 0.0, 1, NULL, NULL)); }, 5);
    gb = 30.0 * N / 1e9; // read p, m, v, g; write p, m, v, bf16 copy
    emit("adamw", "256M params, fp32 grads + bf16 copy", ms, "\"gb_per_s\": %.1f, \"vs_copy_bandwidth\": %.3f",
         gb / (ms * 1e-3), ratio(gb / (ms * 1e-3), copy_gbps));
    void *ps2[] = {p, gr, m, v, pb};
    for (void *q : ps2) CK(cudaFree(q));
}

static const char *only = NULL; // --only: a comma-separated list of benchmark names

// Whether benchmark `name` runs (every one without --only).
static bool wanted(const char *name) {
    if (!only) return true;
    size_t n = strlen(name);
    for (const char *p = only; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && !strncmp(p, name, n)) return true;
        p += len + (end ? 1 : 0);
    }
    return false;
}

int main(int argc, char **argv) {
    static const char *names[] = {"copy", "gemm", "prefill", "backward", "decode", "gemm_decode", "logprobs",
                                  "sampling", "elementwise"};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--smoke")) {
            smoke = true;
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            only = argv[++i];
        } else {
            fprintf(stderr, "usage: gpu_kernels [--smoke] [--only NAME,...]\n");
            return 2;
        }
    }
    int known = 0;
    for (const char *name : names) known += wanted(name);
    if (only && !known) {
        fprintf(stderr, "gpu_kernels: --only %s names no benchmark; they are:", only);
        for (const char *name : names) fprintf(stderr, " %s", name);
        fprintf(stderr, "\n");
        return 2;
    }
    if (cuda_device_count() == 0) {
        printf("gpu_kernels: no CUDA device: skipped\n");
        return 77;
    }
    OK(cuda_ctx_init(&ctx, 0));
    if (wanted("copy")) bench_copy();
    if (wanted("gemm")) bench_gemm();
    // smoke: a few sequences of 160 tokens (two 128-row tiles, three 64-row ones, a partial last tile), decode
    // over 200 and 700 keys (4 and 11 key tiles, for the split sweep)
    int n = smoke ? 160 : 1024, b8 = smoke ? 2 : 8, b64 = smoke ? 3 : 64;
    if (wanted("prefill")) {
        bench_prefill("prefill causal", b8, 12, 2, 128, n, 1, 1);
        bench_prefill("vision bidirectional", smoke ? 2 : 4, 16, 16, 80, n, 0, 1);
        bench_prefill("vision bidirectional", b64, 16, 16, 80, n, 0, 0);
    }
    if (wanted("backward")) bench_attention_backward(b8, 12, 2, 128, n);
    if (wanted("decode")) {
        bench_decode(smoke ? 4 : 64, smoke ? 200 : 512);
        bench_decode(smoke ? 4 : 64, smoke ? 700 : 2048);
    }
    if (wanted("gemm_decode")) bench_gemm_decode(); // after the attention benchmarks: a rank cuBLASLt cannot run
                                                    // must not cost them
    if (wanted("logprobs")) bench_logprobs();
    if (wanted("sampling")) bench_sampling();
    if (wanted("elementwise")) bench_elementwise();
    cuda_ctx_free(ctx);
    return 0;
}
