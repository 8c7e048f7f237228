// C API of the attention kernels (attention.cuh, attention_backward.cuh): argument checks, the choice between
// the tensor-core prefill (64 or 128 query rows per block, 16 or 32 per warp), tensor-core split-K decode and
// SIMT kernels, the split count, the flash-style backward's four launches, and the shared-memory limits.
#include "kernels/cuda/attention_backward.cuh"
#include "kernels/cuda/model_kernels.h"
#include "kernels/cuda/context.cuh"

// ----------------------------------------------------------------------------
// shared-memory limits (set once per context: no attribute calls while a CUDA graph is being captured)

template <typename K> static int raise_smem_limit(const cuda_ctx *ctx, K kernel, size_t bytes, const char *what) {
    if (bytes > (size_t)ctx->smem_per_block_optin) bytes = (size_t)ctx->smem_per_block_optin;
    CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes),
             "raising the shared-memory limit of the %s attention kernel to %zu bytes", what, bytes);
    return 0;
}

int attention_kernels_init(const cuda_ctx *ctx) {
    TRY(raise_smem_limit(ctx, attn_simt_kernel<float, 8>, attn_simt_smem_bytes(256), "SIMT"));
    TRY(raise_smem_limit(ctx, attn_simt_kernel<bf16, 8>, attn_simt_smem_bytes(256), "SIMT"));
    TRY(raise_smem_limit(ctx, attn_mma_kernel<64, 4>, attn_mma_smem_bytes<64, 4>(), "tensor-core prefill"));
    TRY(raise_smem_limit(ctx, attn_mma_kernel<80, 4>, attn_mma_smem_bytes<80, 4>(), "tensor-core prefill"));
    TRY(raise_smem_limit(ctx, attn_mma_kernel<128, 4>, attn_mma_smem_bytes<128, 4>(), "tensor-core prefill"));
    TRY(raise_smem_limit(ctx, attn_mma_kernel<64, 8>, attn_mma_smem_bytes<64, 8>(), "tensor-core prefill"));
    TRY(raise_smem_limit(ctx, attn_mma_kernel<80, 8>, attn_mma_smem_bytes<80, 8>(), "tensor-core prefill"));
    TRY(raise_smem_limit(ctx, attn_mma_kernel<128, 8>, attn_mma_smem_bytes<128, 8>(), "tensor-core prefill"));
    TRY(raise_smem_limit(ctx, attn_mma_wide_kernel<64, 2>, attn_wide_smem_bytes<64, 2>(), "wide prefill"));
    TRY(raise_smem_limit(ctx, attn_mma_wide_kernel<80, 2>, attn_wide_smem_bytes<80, 2>(), "wide prefill"));
    TRY(raise_smem_limit(ctx, attn_mma_wide_kernel<128, 2>, attn_wide_smem_bytes<128, 2>(), "wide prefill"));
    TRY(raise_smem_limit(ctx, attn_mma_wide_kernel<64, 4>, attn_wide_smem_bytes<64, 4>(), "wide prefill"));
    TRY(raise_smem_limit(ctx, attn_mma_wide_kernel<80, 4>, attn_wide_smem_bytes<80, 4>(), "wide prefill"));
    TRY(raise_smem_limit(ctx, attn_mma_wide_kernel<128, 4>, attn_wide_smem_bytes<128, 4>(), "wide prefill"));
    TRY(raise_smem_limit(ctx, attn_decode_kernel<64>, attn_decode_smem_bytes<64>(), "tensor-core decode"));
    TRY(raise_smem_limit(ctx, attn_decode_kernel<80>, attn_decode_smem_bytes<80>(), "tensor-core decode"));
    TRY(raise_smem_limit(ctx, attn_decode_kernel<128>, attn_decode_smem_bytes<128>(), "tensor-core decode"));
    TRY(raise_smem_limit(ctx, attn_bwd_dkv_mma_kernel<64>, attn_bwd_dkv_smem_bytes<64>(), "tensor-core backward"));
    TRY(raise_smem_limit(ctx, attn_bwd_dkv_mma_kernel<80>, attn_bwd_dkv_smem_bytes<80>(), "tensor-core backward"));
    TRY(raise_smem_limit(ctx, attn_bwd_dkv_mma_kernel<128>, attn_bwd_dkv_smem_bytes<128>(), "tensor-core backward"));
    TRY(raise_smem_limit(ctx, attn_bwd_dq_mma_kernel<64>, attn_bwd_dq_smem_bytes<64>(), "tensor-core backward"));
    TRY(raise_smem_limit(ctx, attn_bwd_dq_mma_kernel<80>, attn_bwd_dq_smem_bytes<80>(), "tensor-core backward"));
    TRY(raise_smem_limit(ctx, attn_bwd_dq_mma_kernel<128>, attn_bwd_dq_smem_bytes<128>(), "tensor-core backward"));
    return 0;
}

// A launch needing more shared memory than the device gives one block fails with a message.
static int smem_check(const cuda_ctx *ctx, size_t bytes, const char *what) {
    CHECK_OR_FAIL(bytes <= (size_t)ctx->smem_per_block_optin,
                  "attention: the %s kernel needs %zu bytes of shared memory, the device allows %d", what, bytes,
                  ctx->smem_per_block_optin);
    return 0;
}

// ----------------------------------------------------------------------------
// launchers

template <typename T, int DPL> static int simt_launch(const cuda_ctx *ctx, const AttnArgs<T> &a, int max_nq, cudaStream_t s) {
    size_t smem = attn_simt_smem_bytes(a.D);
    TRY(smem_check(ctx, smem, "SIMT"));
    dim3 grid((unsigned)((max_nq + SIMT_BQ - 1) / SIMT_BQ), (unsigned)a.H, (unsigned)a.B);
    attn_simt_kernel<T, DPL><<<grid, 128, smem, s>>>(a);
    return 0;
}

template <typename T> static int simt_dispatch(const cuda_ctx *ctx, const AttnArgs<T> &a, int max_nq, cudaStream_t s) {
    if (a.D <= 32) return simt_launch<T, 1>(ctx, a, max_nq, s);
    if (a.D <= 64) return simt_launch<T, 2>(ctx, a, max_nq, s);
    if (a.D <= 128) return simt_launch<T, 4>(ctx, a, max_nq, s);
    return simt_launch<T, 8>(ctx, a, max_nq, s);
}

// The prefill kernel with WARPS warps (16 WARPS query rows) per block.
template <int D, int WARPS>
static int mma_launch_warps(const cuda_ctx *ctx, const AttnArgs<bf16> &a, int max_nq, cudaStream_t s) {
    constexpr size_t smem = attn_mma_smem_bytes<D, WARPS>();
    constexpr int BM = attn_mma_block_rows<WARPS>();
    TRY(smem_check(ctx, smem, "tensor-core prefill"));
    CHECK_OR_FAIL((max_nq + BM - 1) / BM <= 65535, "attention_forward: %d query rows in one segment are more "
                  "than the tensor-core prefill kernel's grid holds (65535 tiles of %d)", max_nq, BM);
    dim3 grid((unsigned)a.H, (unsigned)a.B, (unsigned)((max_nq + BM - 1) / BM));
    attn_mma_kernel<D, WARPS><<<grid, 32 * WARPS, smem, s>>>(a);
    return 0;
}

// The wide prefill kernel (32 query rows per warp) with WARPS warps.
template <int D, int WARPS>
static int mma_launch_wide(const cuda_ctx *ctx, const AttnArgs<bf16> &a, int max_nq, cudaStream_t s) {
    constexpr size_t smem = attn_wide_smem_bytes<D, WARPS>();
    constexpr int BM = MMA_WIDE_ROWS * WARPS;
    TRY(smem_check(ctx, smem, "wide prefill"));
    CHECK_OR_FAIL((max_nq + BM - 1) / BM <= 65535, "attention_forward: %d query rows in one segment are more "
                  "than the wide prefill kernel's grid holds (65535 tiles of %d)", max_nq, BM);
    dim3 grid((unsigned)a.H, (unsigned)a.B, (unsigned)((max_nq + BM - 1) / BM));
    attn_mma_wide_kernel<D, WARPS><<<grid, 32 * WARPS, smem, s>>>(a);
    return 0;
}

// The context's rows per warp (cuda_ctx_set_prefill_warp_rows), else 32; the context's rows per block
// (cuda_ctx_set_prefill_rows), else 128 in 32-row warps, and in 16-row warps 64 for causal attention and 128 for
// bidirectional. On an H200, 128 rows in four 32-row warps took 0.75x the time of the 16-row default on the
// update's causal 8 x 1024 (D 128) and 0.78x on the vision tower's 64 images of 1024 patches (D 80); 64 rows in
// two 32-row warps were the slowest on the causal shape (1.31x).
template <int D> static int mma_launch(const cuda_ctx *ctx, const AttnArgs<bf16> &a, int max_nq, cudaStream_t s) {
    if (ctx->prefill_warp_rows != 16) {
        bool two_warps = ctx->prefill_rows == 64;
        return two_warps ? mma_launch_wide<D, 2>(ctx, a, max_nq, s) : mma_launch_wide<D, 4>(ctx, a, max_nq, s);
    }
    bool rows64 = ctx->prefill_rows == 64 || (ctx->prefill_rows == 0 && a.causal);
    return rows64 ? mma_launch_warps<D, 4>(ctx, a, max_nq, s) : mma_launch_warps<D, 8>(ctx, a, max_nq, s);
}

// The decode split count: whole 64-key tiles of the longest segment (max_nk keys) per split. With about a
// block per SM already (B * KV >= 3/4 of the SMs), splits only cap a block's keys at DEC_SPLIT_TILES tiles;
// with fewer, enough splits for about three blocks per SM. (Measured on an H100, 64 sequences x 2 KV heads:
// 512 keys 17 us per layer unsplit against 26 us in 4 splits; 2048 keys 66 us in 4 splits, 63 in 8.) The
// context's fixed tiles per split (cuda_ctx_set_decode_split_tiles) override both. No more splits than the
// workspace holds (splits * B * H * (D + 1) floats). The kernel deals each segment's own tiles over the splits.
#define DEC_SPLIT_TILES 8
static int decode_splits(const cuda_ctx *ctx, int B, int KV, int H, int D, int max_nk, size_t ws_bytes) {
    int tiles = (max_nk + MMA_BN - 1) / MMA_BN;
    if (tiles < 1) tiles = 1;
    int64_t blocks = (int64_t)B * KV, want;
    if (4 * blocks >= 3 * (int64_t)ctx->sm_count) want = (tiles + DEC_SPLIT_TILES - 1) / DEC_SPLIT_TILES;
    else want = (3 * (int64_t)ctx->sm_count + blocks - 1) / blocks;
    if (ctx->decode_split_tiles > 0) want = (tiles + ctx->decode_split_tiles - 1) / ctx->decode_split_tiles;
    int splits = (int)(want < 1 ? 1 : want > tiles ? tiles : want);
    for (;; splits--) {
        int kps = (tiles + splits - 1) / splits * MMA_BN;
        int used = (max_nk + kps - 1) / kps;
        if (used < 1) used = 1;
        size_t need = sizeof(float) * (size_t)used * B * H * (D + 1);
        if (used == 1 || need <= ws_bytes) return used;
    }
}

template <int D>
static int decode_launch(const cuda_ctx *ctx, const AttnArgs<bf16> &a, int max_nk, void *ws, size_t ws_bytes,
                         cudaStream_t s) {
    constexpr size_t smem = attn_decode_smem_bytes<D>();
    static_assert(4 * DEC_ROWS * D * sizeof(float) + 8 * DEC_ROWS * sizeof(float) <= 4 * MMA_BN * (D + 8) * sizeof(bf16),
                  "the warp merge buffers fit in the K/V stages");
    TRY(smem_check(ctx, smem, "tensor-core decode"));
    int splits = decode_splits(ctx, a.B, a.KV, a.H, D, max_nk, ws ? ws_bytes : 0);
    float *ws_o = (float *)ws, *ws_lse = ws_o + (size_t)splits * a.B * a.H * D;
    dim3 grid((unsigned)splits, (unsigned)a.KV, (unsigned)a.B);
    attn_decode_kernel<D><<<grid, 128, smem, s>>>(a, ws_o, ws_lse);
    if (splits > 1) {
        CUDA_LAUNCHED("attention_forward: decode kernel");
        dim3 cgrid((unsigned)a.H, (unsigned)a.B);
        attn_combine_kernel<<<cgrid, 128, 0, s>>>(a.out, a.ldo, a.lse, ws_o, ws_lse, a.cu_q, a.B, a.H, D, splits);
    }
    return 0;
}

// ----------------------------------------------------------------------------
// C API

extern "C" size_t cuda_attention_workspace_bytes(const cuda_ctx *ctx, int B, int H, int D, int max_nk) {
    if (B <= 0 || H <= 0 || D <= 0) return 0;
    // the most splits any KV head count asks for: one KV head (the fewest blocks), or DEC_SPLIT_TILES-tile splits
    int splits = decode_splits(ctx, B, 1, H, D, max_nk, SIZE_MAX);
    int capped = (max_nk + MMA_BN * DEC_SPLIT_TILES - 1) / (MMA_BN * DEC_SPLIT_TILES);
    if (capped > splits) splits = capped;
    return splits > 1 ? sizeof(float) * (size_t)splits * B * H * (D + 1) : 0;
}

extern "C" int cuda_attention_forward(cuda_ctx *ctx, cuda_dtype dt, void *out, int64_t ldo, float *lse, const void *q,
                                      int64_t ldq, const void *const *k, const void *const *v, int64_t ldkv,
                                      const int *cu_q, const int *nk, int B, int H, int KV, int D, int causal,
                                      int max_nq, int max_nk, void *workspace, size_t workspace_bytes,
                                      cuda_stream stream) {
    CHECK_OR_FAIL(dtype_valid(dt), "attention_forward: unknown dtype %d", (int)dt);
    CHECK_OR_FAIL(B >= 0 && B <= 65535 && H >= 1 && H <= 65535 && KV >= 1 && H % KV == 0,
                  "attention_forward: bad heads or segments (B %d, H %d, KV %d): KV must divide H, B <= 65535", B, H,
                  KV);
    CHECK_OR_FAIL(D >= 1 && D <= 256, "attention_forward: head dim %d is outside [1, 256]", D);
    CHECK_OR_FAIL(ldq >= (int64_t)H * D && ldo >= (int64_t)H * D && ldkv >= (int64_t)KV * D,
                  "attention_forward: row strides ldq %lld, ldo %lld, ldkv %lld are below H*D %d / KV*D %d",
                  (long long)ldq, (long long)ldo, (long long)ldkv, H * D, KV * D);
    CHECK_OR_FAIL(max_nq >= 0 && max_nk >= 0, "attention_forward: negative max_nq %d or max_nk %d", max_nq, max_nk);
    if (B == 0 || max_nq == 0) return 0;
    cudaStream_t s = stream;
    float scale = 1.0f / sqrtf((float)D);
    int rc;
    if (dt == CUDA_F32) {
        AttnArgs<float> a = {(float *)out, ldo, lse, (const float *)q, ldq, (const float *const *)k,
                             (const float *const *)v, ldkv, cu_q, nk, B, H, KV, D, causal, scale};
        rc = simt_dispatch<float>(ctx, a, max_nq, s);
    } else {
        AttnArgs<bf16> a = {(bf16 *)out, ldo, lse, (const bf16 *)q, ldq, (const bf16 *const *)k,
                            (const bf16 *const *)v, ldkv, cu_q, nk, B, H, KV, D, causal, scale};
        bool tc = ctx->attention_kernel != CUDA_ATTN_SIMT && (D == 64 || D == 80 || D == 128) && aligned16(q) &&
                  aligned16(out) && ldq % 8 == 0 && ldo % 8 == 0 && ldkv % 8 == 0;
        bool decode = tc && ctx->attention_kernel != CUDA_ATTN_PREFILL && max_nq == 1 && H / KV <= DEC_ROWS;
        if (decode) {
            rc = D == 64    ? decode_launch<64>(ctx, a, max_nk, workspace, workspace_bytes, s)
                 : D == 80 ? decode_launch<80>(ctx, a, max_nk, workspace, workspace_bytes, s)
                           : decode_launch<128>(ctx, a, max_nk, workspace, workspace_bytes, s);
        } else if (tc) {
            rc = D == 64 ? mma_launch<64>(ctx, a, max_nq, s) : D == 80 ? mma_launch<80>(ctx, a, max_nq, s)
                                                                       : mma_launch<128>(ctx, a, max_nq, s);
        } else {
            rc = simt_dispatch<bf16>(ctx, a, max_nq, s);
        }
    }
    TRY(rc);
    CUDA_LAUNCHED("attention_forward (%s, B %d, H %d, KV %d, D %d, causal %d, max_nq %d, max_nk %d)", dtype_name(dt), B,
                  H, KV, D, causal, max_nq, max_nk);
    return 0;
}

// ----------------------------------------------------------------------------
// flash-style backward

extern "C" int cuda_attention_backward_flash_supported(cuda_dtype dt, int D) {
    return dt == CUDA_BF16 && (D == 64 || D == 80 || D == 128);
}

// The workspace's regions: the row deltas (T, H), the per-head key and value gradient partials (TK, H*D)
// each, all fp32.
static size_t flash_workspace(int T, int TK, int H, int D, void *base, float **delta, float **dk_part,
                              float **dv_part) {
    size_t sizes[3] = {sizeof(float) * (size_t)T * H, sizeof(float) * (size_t)TK * H * D,
                       sizeof(float) * (size_t)TK * H * D};
    void **slots[3] = {(void **)delta, (void **)dk_part, (void **)dv_part};
    return layout_regions(sizes, slots, 3, base);
}

extern "C" size_t cuda_attention_backward_flash_workspace_bytes(int T, int TK, int H, int D) {
    if (H <= 0 || D <= 0) return 0;
    return flash_workspace(T > 0 ? T : 0, TK > 0 ? TK : 0, H, D, NULL, NULL, NULL, NULL);
}

// The checks that depend on D, before anything is launched.
template <int D> static int bwd_check(const cuda_ctx *ctx, int max_nq, int max_nk) {
    constexpr size_t dkv_smem = attn_bwd_dkv_smem_bytes<D>(), dq_smem = attn_bwd_dq_smem_bytes<D>();
    TRY(smem_check(ctx, dkv_smem > dq_smem ? dkv_smem : dq_smem, "tensor-core backward"));
    CHECK_OR_FAIL((int64_t)(max_nq + BWD_BM - 1) / BWD_BM <= 65535 && (int64_t)(max_nk + BWD_BN - 1) / BWD_BN <= 65535,
                  "attention_backward_flash: segments of %d queries / %d keys are more than the grid holds (65535 "
                  "tiles of %d)", max_nq, max_nk, BWD_BM);
    return 0;
}

template <int D> static void bwd_launch(const AttnBwdArgs &a, int max_nq, int max_nk, cudaStream_t s) {
    if (max_nk > 0) {
        dim3 grid((unsigned)a.H, (unsigned)a.B, (unsigned)((max_nk + BWD_BN - 1) / BWD_BN));
        attn_bwd_dkv_mma_kernel<D><<<grid, BWD_THREADS, attn_bwd_dkv_smem_bytes<D>(), s>>>(a);
    }
    if (max_nq > 0) {
        dim3 grid((unsigned)a.H, (unsigned)a.B, (unsigned)((max_nq + BWD_BM - 1) / BWD_BM));
        attn_bwd_dq_mma_kernel<D><<<grid, BWD_THREADS, attn_bwd_dq_smem_bytes<D>(), s>>>(a);
    }
}

extern "C" int cuda_attention_backward_flash(cuda_ctx *ctx, cuda_dtype dt, void *dq, void *const *dk, void *const *dv,
                                             const void *dout, int64_t ldo, const void *out, int64_t ld_out,
                                             const void *q, int64_t ldq, const void *const *k, const void *const *v,
                                             int64_t ldkv, const float *lse, const int *cu_q, const int *cu_k,
                                             const int *nk, int B, int T, int TK, int H, int KV, int D, int causal,
                                             int max_nq, int max_nk, void *workspace, size_t workspace_bytes,
                                             cuda_stream stream) {
    CHECK_OR_FAIL(cuda_attention_backward_flash_supported(dt, D),
                  "attention_backward_flash: %s with head dim %d is not supported (bf16 with D 64, 80 or 128 is)",
                  dtype_name(dt), D);
    CHECK_OR_FAIL(B >= 0 && B <= 65535 && H >= 1 && H <= 65535 && KV >= 1 && H % KV == 0,
                  "attention_backward_flash: bad heads or segments (B %d, H %d, KV %d): B and H must be at most "
                  "65535, KV at least 1 and a divisor of H", B, H, KV);
    CHECK_OR_FAIL(ldq >= (int64_t)H * D && ldo >= (int64_t)H * D && ld_out >= (int64_t)H * D && ldkv >= (int64_t)KV * D,
                  "attention_backward_flash: row strides ldq %lld, ldo %lld, ld_out %lld, ldkv %lld are below H*D %d / "
                  "KV*D %d", (long long)ldq, (long long)ldo, (long long)ld_out, (long long)ldkv, H * D, KV * D);
    CHECK_OR_FAIL(aligned16(q) && aligned16(dout) && aligned16(dq) && ldq % 8 == 0 && ldo % 8 == 0,
                  "attention_backward_flash: q, dout and dq must be 16-byte aligned and the strides ldq %lld, ldo %lld "
                  "multiples of 8", (long long)ldq, (long long)ldo);
    CHECK_OR_FAIL(T >= 0 && TK >= 0 && max_nq >= 0 && max_nk >= 0,
                  "attention_backward_flash: negative T %d, TK %d, max_nq %d or max_nk %d", T, TK, max_nq, max_nk);
    if (B == 0 || (T == 0 && TK == 0)) return 0;
    size_t need = cuda_attention_backward_flash_workspace_bytes(T, TK, H, D);
    CHECK_OR_FAIL(workspace && aligned16(workspace) && workspace_bytes >= need,
                  "attention_backward_flash: %d query and %d key rows need %zu bytes of 16-byte aligned workspace, "
                  "%zu given", T, TK, need, workspace_bytes);
    TRY(D == 64 ? bwd_check<64>(ctx, max_nq, max_nk) : D == 80 ? bwd_check<80>(ctx, max_nq, max_nk)
                                                             : bwd_check<128>(ctx, max_nq, max_nk));
    float *delta, *dk_part, *dv_part;
    flash_workspace(T, TK, H, D, workspace, &delta, &dk_part, &dv_part);
    cudaStream_t s = stream;
    float scale = 1.0f / sqrtf((float)D);
    if (max_nq > 0) {
        dim3 rows_grid((unsigned)max_nq, (unsigned)B);
        attn_bwd_prep_kernel<<<rows_grid, BWD_THREADS, 0, s>>>(delta, (const bf16 *)dout, ldo, (const bf16 *)out,
                                                               ld_out, cu_q, H, D);
        CUDA_LAUNCHED("attention_backward_flash: delta (B %d, H %d, D %d, max_nq %d)", B, H, D, max_nq);
    }
    AttnBwdArgs a = {(const bf16 *const *)k, (const bf16 *const *)v, ldkv, (const bf16 *)q, ldq, (const bf16 *)dout,
                     ldo, (bf16 *)dq, lse, delta, dk_part, dv_part, cu_q, cu_k, nk, B, H, KV, causal, scale};
    if (D == 64) bwd_launch<64>(a, max_nq, max_nk, s);
    else if (D == 80) bwd_launch<80>(a, max_nq, max_nk, s);
    else bwd_launch<128>(a, max_nq, max_nk, s);
    CUDA_LAUNCHED("attention_backward_flash: tensor-core kernels (B %d, H %d, KV %d, D %d, causal %d, max_nq %d, "
                  "max_nk %d)", B, H, KV, D, causal, max_nq, max_nk);
    if (max_nk > 0) {
        dim3 keys_grid((unsigned)max_nk, (unsigned)B);
        attn_bwd_dkv_kernel<<<keys_grid, BWD_THREADS, 0, s>>>((bf16 *const *)dk, (bf16 *const *)dv, ldkv, dk_part,
                                                              dv_part, cu_k, nk, H, KV, D, scale);
        CUDA_LAUNCHED("attention_backward_flash: key and value gradients (B %d, KV %d, D %d, max_nk %d)", B, KV, D,
                      max_nk);
    }
    return 0;
}
