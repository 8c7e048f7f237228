// The attention backward of model_kernels.h (cuda_attention_backward) with the scores materialised one
// (segment, key/value head) at a time: the G query heads that share a key/value head are stacked into
// (G * nq, D) rows, so every product is one plain cuBLASLt GEMM on the tensor cores (bf16) or in fp32, and a
// softmax-backward kernel rebuilds P from the forward's log-sum-exp. Memory per (segment, key/value head):
// two fp32 score blocks (G * nq, nk) plus P and dS in the storage dtype.
// The kernels themselves are in model_attention.cuh; this file holds the launches and the GEMMs.
#include "kernels/cuda/model_kernels.h"

#include "kernels/cuda/model_attention.cuh"
#include "kernels/cuda/matmul.cuh"

// ----------------------------------------------------------------------------
// workspace

// Regions of the workspace for G * nq stacked rows and nk keys.
struct BwdWorkspace {
    void *qs, *dos, *dqs; // (G * nq, D) dtype: stacked queries, output gradients, query gradients
    float *s, *dp;        // (G * nq, nk) fp32: scores, dP
    void *p, *ds;         // (G * nq, nk) dtype
};

static size_t workspace_layout(cuda_dtype dt, int G, int D, int nq, int nk, void *base, BwdWorkspace *w) {
    size_t es = dtype_size(dt), rows = (size_t)G * (size_t)(nq > 0 ? nq : 1), keys = (size_t)(nk > 0 ? nk : 1);
    size_t sizes[7] = {rows * D * es, rows * D * es, rows * D * es, rows * keys * 4, rows * keys * 4, rows * keys * es,
                       rows * keys * es};
    void **slots[7] = {w ? &w->qs : NULL, w ? &w->dos : NULL, w ? &w->dqs : NULL, w ? (void **)&w->s : NULL,
                       w ? (void **)&w->dp : NULL, w ? &w->p : NULL, w ? &w->ds : NULL};
    return layout_regions(sizes, slots, 7, w ? base : NULL);
}

extern "C" size_t cuda_attention_backward_workspace_bytes(cuda_dtype dt, int H, int KV, int D, int max_nq, int max_nk) {
    if (H <= 0 || KV <= 0 || D <= 0) return 0;
    return workspace_layout(dt, H / KV, D, max_nq, max_nk, NULL, NULL);
}

// ----------------------------------------------------------------------------
// one (segment, key/value head)

template <typename T>
static int segment_backward(cuda_ctx *ctx, cuda_dtype dt, T *dq, T *dk, T *dv, const T *dout, int64_t ldo, const T *q,
                            int64_t ldq, const T *k, const T *v, int64_t ldkv, const float *lse, int H, int h0, int G,
                            int D, int nq, int nk, int causal, const BwdWorkspace &w, cudaStream_t s) {
    int rows = G * nq;
    float scale = 1.0f / sqrtf((float)D);
    unsigned grid = (unsigned)(rows < 65535 ? rows : 65535);
    int threads = D >= 128 ? 128 : (D + 31) / 32 * 32;
    heads_gather_kernel<T><<<grid, threads, 0, s>>>((T *)w.qs, q, ldq, nq, G, D);
    heads_gather_kernel<T><<<grid, threads, 0, s>>>((T *)w.dos, dout, ldo, nq, G, D);
    CUDA_LAUNCHED("attention_backward: stacking %d heads x %d rows", G, nq);
    // S = scale Qs K^T, dP = dOs V^T (fp32)
    TRY(gemm_rowmajor(ctx, dt, CUDA_F32, false, true, rows, nk, D, scale, w.qs, D, k, ldkv, 0.0f, w.s, nk, NULL, s));
    TRY(gemm_rowmajor(ctx, dt, CUDA_F32, false, true, rows, nk, D, 1.0f, w.dos, D, v, ldkv, 0.0f, w.dp, nk, NULL, s));
    softmax_backward_kernel<T><<<(unsigned)rows, SB_THREADS, 0, s>>>((T *)w.p, (T *)w.ds, w.s, w.dp, lse, H, h0, nq, nk,
                                                                      causal);
    CUDA_LAUNCHED("attention_backward: softmax backward of %d x %d scores", rows, nk);
    // dV = P^T dOs, dK = scale dS^T Qs, dQs = scale dS K
    TRY(gemm_rowmajor(ctx, dt, dt, true, false, nk, D, rows, 1.0f, w.p, nk, w.dos, D, 0.0f, dv, ldkv, NULL, s));
    TRY(gemm_rowmajor(ctx, dt, dt, true, false, nk, D, rows, scale, w.ds, nk, w.qs, D, 0.0f, dk, ldkv, NULL, s));
    TRY(gemm_rowmajor(ctx, dt, dt, false, false, rows, D, nk, scale, w.ds, nk, k, ldkv, 0.0f, w.dqs, D, NULL, s));
    heads_scatter_kernel<T><<<grid, threads, 0, s>>>(dq, ldq, (const T *)w.dqs, nq, G, D);
    CUDA_LAUNCHED("attention_backward: query gradients of %d heads x %d rows", G, nq);
    return 0;
}

// ----------------------------------------------------------------------------
// C API

extern "C" int cuda_attention_backward(cuda_ctx *ctx, cuda_dtype dt, void *dq, void *const *dk, void *const *dv,
                                       const void *dout, int64_t ldo, const void *q, int64_t ldq, const void *const *k,
                                       const void *const *v, int64_t ldkv, const float *lse, const int *cu_q,
                                       const int *nk, int B, int H, int KV, int D, int causal, void *workspace,
                                       size_t workspace_bytes, cuda_stream stream) {
    CHECK_OR_FAIL(dtype_valid(dt), "attention_backward: unknown dtype %d", (int)dt);
    CHECK_OR_FAIL(B >= 0 && H >= 1 && KV >= 1 && H % KV == 0 && D >= 1,
                  "attention_backward: bad heads (B %d, H %d, KV %d, D %d): KV must divide H", B, H, KV, D);
    CHECK_OR_FAIL(ldq >= (int64_t)H * D && ldo >= (int64_t)H * D && ldkv >= (int64_t)KV * D,
                  "attention_backward: row strides ldq %lld, ldo %lld, ldkv %lld are below H*D %d / KV*D %d",
                  (long long)ldq, (long long)ldo, (long long)ldkv, H * D, KV * D);
    int G = H / KV;
    size_t es = dtype_size(dt);
    for (int b = 0; b < B; b++) {
        int q0 = cu_q[b], nq = cu_q[b + 1] - cu_q[b], n_k = nk[b];
        CHECK_OR_FAIL(nq >= 0 && n_k >= 0, "attention_backward: segment %d has %d queries and %d keys", b, nq, n_k);
        if (nq == 0) { // no query: the keys and values get no gradient
            for (int which = 0; which < 2 && n_k > 0; which++)
                CUDA_TRY(cudaMemset2DAsync(which ? dv[b] : dk[b], (size_t)ldkv * es, 0, (size_t)KV * D * es,
                                           (size_t)n_k, stream),
                         "attention_backward: zeroing the key/value gradients of segment %d", b);
            continue;
        }
        char *dqb = (char *)dq + (size_t)q0 * ldq * es;
        if (n_k == 0) { // no key: the queries get no gradient
            CUDA_TRY(cudaMemset2DAsync(dqb, (size_t)ldq * es, 0, (size_t)H * D * es, (size_t)nq, stream),
                     "attention_backward: zeroing the query gradients of segment %d", b);
            continue;
        }
        size_t need = workspace_layout(dt, G, D, nq, n_k, NULL, NULL);
        CHECK_OR_FAIL(need <= workspace_bytes, "attention_backward: segment %d (%d queries, %d keys) needs %zu bytes of "
                      "workspace, %zu given", b, nq, n_k, need, workspace_bytes);
        BwdWorkspace w;
        workspace_layout(dt, G, D, nq, n_k, workspace, &w);
        for (int g = 0; g < KV; g++) {
            size_t qoff = (size_t)q0 * ldq + (size_t)g * G * D, ooff = (size_t)q0 * ldo + (size_t)g * G * D;
            size_t koff = (size_t)g * D;
            const float *lse_b = lse + (size_t)q0 * H;
            int rc;
            if (dt == CUDA_BF16)
                rc = segment_backward<bf16>(ctx, dt, (bf16 *)dq + qoff, (bf16 *)dk[b] + koff, (bf16 *)dv[b] + koff,
                                            (const bf16 *)dout + ooff, ldo, (const bf16 *)q + qoff, ldq,
                                            (const bf16 *)k[b] + koff, (const bf16 *)v[b] + koff, ldkv, lse_b, H, g * G,
                                            G, D, nq, n_k, causal, w, stream);
            else
                rc = segment_backward<float>(ctx, dt, (float *)dq + qoff, (float *)dk[b] + koff, (float *)dv[b] + koff,
                                             (const float *)dout + ooff, ldo, (const float *)q + qoff, ldq,
                                             (const float *)k[b] + koff, (const float *)v[b] + koff, ldkv, lse_b, H,
                                             g * G, G, D, nq, n_k, causal, w, stream);
            if (rc < 0)
                return maye_fail_ctx("attention_backward (%s, segment %d of %d queries and %d keys, key/value head %d)",
                                     dtype_name(dt), b, nq, n_k, g);
        }
    }
    return 0;
}
