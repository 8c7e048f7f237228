// C API of the fused lm_head log-probs (logprobs.cuh): row blocks of `rows`, vocabulary chunks of `vchunk`,
// one GEMM and one fold per chunk, one finish per row block.
#include "kernels/cuda/logprobs.cuh"
#include "kernels/cuda/matmul.cuh"

// scratch: logits (rows, vchunk) then m, s, t, zy (rows) each
extern "C" size_t cuda_logprobs_scratch_bytes(int rows, int vchunk) {
    if (rows <= 0 || vchunk <= 0) return 0;
    return sizeof(float) * ((size_t)rows * (size_t)vchunk + 4 * (size_t)rows);
}

extern "C" int cuda_logprobs_forward(cuda_ctx *ctx, cuda_dtype dt, float *logprob, float *entropy, const void *hidden,
                                     const void *wte, const int64_t *targets, int N, int C, int V, float temperature,
                                     int rows, int vchunk, void *scratch, cuda_stream stream) {
    CHECK_OR_FAIL(dtype_valid(dt), "logprobs_forward: unknown dtype %d", (int)dt);
    CHECK_OR_FAIL(N >= 0 && C >= 1 && V >= 1, "logprobs_forward: bad shape N %d C %d V %d", N, C, V);
    CHECK_OR_FAIL(rows >= 1 && vchunk >= 1, "logprobs_forward: rows %d and vchunk %d must be >= 1", rows, vchunk);
    CHECK_OR_FAIL(temperature > 0, "logprobs_forward: temperature %g must be > 0", (double)temperature);
    if (N == 0) return 0;
    size_t es = dtype_size(dt);
    float *logits = (float *)scratch;
    float *sm = logits + (size_t)rows * vchunk, *ss = sm + rows, *st = ss + rows, *szy = st + rows;
    for (int r0 = 0; r0 < N; r0 += rows) {
        int nr = N - r0 < rows ? N - r0 : rows;
        logprobs_init_kernel<<<(nr + 255) / 256, 256, 0, stream>>>(sm, ss, st, szy, nr);
        CUDA_LAUNCHED("logprobs_forward: state init");
        const void *h = (const char *)hidden + (size_t)r0 * C * es;
        for (int v0 = 0; v0 < V; v0 += vchunk) {
            int nv = V - v0 < vchunk ? V - v0 : vchunk;
            const void *w = (const char *)wte + (size_t)v0 * C * es;
            if (gemm_rowmajor(ctx, dt, CUDA_F32, false, true, nr, nv, C, 1.0f / temperature, h, C, w, C, 0.0f, logits,
                              nv, NULL, stream) < 0)
                return maye_fail_ctx("logprobs_forward: rows %d.., vocabulary %d..", r0, v0);
            logprobs_fold_kernel<<<nr, LP_THREADS, 0, stream>>>(logits, nv, v0, targets + r0, sm, ss, st, szy);
            CUDA_LAUNCHED("logprobs_forward: fold of rows %d.., vocabulary %d..", r0, v0);
        }
        logprobs_finish_kernel<<<(nr + 255) / 256, 256, 0, stream>>>(logprob + r0, entropy ? entropy + r0 : NULL, sm,
                                                                     ss, st, szy, nr);
        CUDA_LAUNCHED("logprobs_forward: finish");
    }
    return 0;
}
