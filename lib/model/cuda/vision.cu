// The vision tower and patch merger on the GPU (cuda_vision_forward), the twin of model/vision.c: patch
// embedding as one GEMM, the rows gathered into the processing order of maye_vision_layout (Qwen2.5-VL's
// windows), 2-D rotary on the fused qkv rows, bidirectional attention per image frame or window, the
// blocks' MLPs (QuickGELU, or Qwen2.5-VL's gated SiLU over one fused gate|up GEMM), the attention output
// projection and the MLP's last GEMM added to the residual stream in their epilogues, the merger, and the
// merged rows scattered back to the images' order. Dimension letters as in model/cuda/model.h, plus
// S attention segments and U = P / M merged units.
#include "model/cuda/internal.cuh"

#include <stdlib.h>
#include <string.h>

#include <thread>
#include <vector>

#define VISION_EPS 1e-6f

// ----------------------------------------------------------------------------
// index arrays (built on the host from the layout, uploaded in one copy)

struct VisionIndex {
    int32_t *hpos, *wpos;  // (P)
    int *rowmap;           // (P) processing row -> row of the embedded patches
    int *unit_of;          // (U) processing unit -> merged token (image order)
    int *cu_full, *nk_full; // (n_full+1), (n_full)
    int *cu_win, *nk_win;   // (n_win+1), (n_win)
    const void **kv_full;  // (2, n_full) key rows, then value rows, in the qkv activations
    const void **kv_win;   // (2, n_win)
};

static int index_regions(DevRegion *r, VisionIndex *x, int64_t P, int64_t U, int n_full, int n_win) {
    r[0] = DEV_REGION(x->hpos, (size_t)P * sizeof(int32_t));
    r[1] = DEV_REGION(x->wpos, (size_t)P * sizeof(int32_t));
    r[2] = DEV_REGION(x->rowmap, (size_t)P * sizeof(int));
    r[3] = DEV_REGION(x->unit_of, (size_t)U * sizeof(int));
    r[4] = DEV_REGION(x->cu_full, (size_t)(n_full + 1) * sizeof(int));
    r[5] = DEV_REGION(x->nk_full, (size_t)(n_full > 0 ? n_full : 1) * sizeof(int));
    r[6] = DEV_REGION(x->cu_win, (size_t)(n_win + 1) * sizeof(int));
    r[7] = DEV_REGION(x->nk_win, (size_t)(n_win > 0 ? n_win : 1) * sizeof(int));
    r[8] = DEV_REGION(x->kv_full, (size_t)2 * (n_full > 0 ? n_full : 1) * sizeof(void *));
    r[9] = DEV_REGION(x->kv_win, (size_t)2 * (n_win > 0 ? n_win : 1) * sizeof(void *));
    return 10;
}

// Segment lengths and the key/value pointers of segments cu (S+1) into qkv rows of 3*VC.
static void fill_segments(const cuda_model *gm, const int *cu, int S, int *nk, const void **kv, const void *qkv,
                          int VC) {
    for (int s = 0; s < S; s++) {
        nk[s] = cu[s + 1] - cu[s];
        kv[s] = gm_at(gm, qkv, (size_t)cu[s] * 3 * VC + VC);
        kv[S + s] = gm_at(gm, qkv, (size_t)cu[s] * 3 * VC + 2 * VC);
    }
}

// ----------------------------------------------------------------------------
// forward

// norm (LayerNorm with bias for Qwen2-VL, RMSNorm for Qwen2.5-VL) of P rows of VC.
static int vision_norm(cuda_model *gm, void *out, const void *x, const float *w, const float *b, int P, int VC) {
    if (gm->cfg.arch == MAYE_ARCH_QWEN2_5_VL)
        return cuda_rmsnorm_forward(gm->dt, out, NULL, x, w, P, VC, VISION_EPS, gm->stream);
    return cuda_layernorm_forward(gm->dt, out, NULL, NULL, x, w, b, P, VC, VISION_EPS, gm->stream);
}

// ----------------------------------------------------------------------------
// pixel upload through page-locked staging

#define UPLOAD_THREADS 8          // host threads filling a wave
#define UPLOAD_MIN_SPLIT (1u << 20) // bytes below which one thread fills a wave

int cuda_model_set_upload_wave(cuda_model *gm, size_t bytes) {
    CHECK_OR_FAIL(bytes == 0 || bytes >= 4096, "cuda_model_set_upload_wave: %zu bytes per wave (at least 4096; 0 for "
                  "the default)", bytes);
    TRY(cuda_model_sync(gm)); // no copy still reads the halves
    cuda_model_free_staging(gm);
    gm->upload_wave = bytes ? bytes : CUDA_UPLOAD_WAVE_BYTES;
    return 0;
}

void cuda_model_free_staging(cuda_model *gm) {
    if (gm->pinned) cudaFreeHost(gm->pinned);
    for (int h = 0; h < 2; h++)
        if (gm->upload_done[h]) cudaEventDestroy(gm->upload_done[h]);
    gm->pinned = NULL, gm->upload_done[0] = gm->upload_done[1] = NULL;
}

// The staging halves and their events; false (no error) when page-locked memory is not to be had.
static bool staging_ready(cuda_model *gm) {
    if (gm->pinned) return true;
    if (!gm->upload_wave) gm->upload_wave = CUDA_UPLOAD_WAVE_BYTES;
    if (cudaMallocHost(&gm->pinned, 2 * gm->upload_wave) != cudaSuccess) {
        cudaGetLastError(); // not sticky: the pageable path goes on
        gm->pinned = NULL;
        return false;
    }
    for (int h = 0; h < 2; h++)
        if (cudaEventCreate(&gm->upload_done[h]) != cudaSuccess) {
            cudaGetLastError();
            cuda_model_free_staging(gm);
            return false;
        }
    return true;
}

// Bytes [from, from + n) of the parts laid end to end (starts[i]: where part i begins; starts[n_parts]: the
// end) into dst.
static void copy_span(char *dst, const char *const *parts, const size_t *starts, int n_parts, size_t from, size_t n) {
    int i = 0;
    while (i + 1 < n_parts && starts[i + 1] <= from) i++;
    while (n > 0 && i < n_parts) {
        size_t in_part = starts[i + 1] - from, take = n < in_part ? n : in_part;
        memcpy(dst, parts[i] + (from - starts[i]), take);
        dst += take, from += take, n -= take, i++;
    }
}

// dst (device) <- the parts laid end to end (total bytes), wave by wave through the staging halves: a half is
// refilled once its previous copy has finished (its event), by up to UPLOAD_THREADS threads, then queued.
static int upload_staged(cuda_model *gm, char *dst, const char *const *parts, const size_t *starts, int n_parts,
                         size_t total) {
    size_t wave = gm->upload_wave;
    for (size_t off = 0, w = 0; off < total; off += wave, w++) {
        size_t n = total - off < wave ? total - off : wave;
        int h = (int)(w & 1);
        char *half = (char *)gm->pinned + h * wave;
        CUDA_TRY(cudaEventSynchronize(gm->upload_done[h]), "waiting for the pixel staging half %d", h);
        int threads = n < UPLOAD_MIN_SPLIT ? 1 : UPLOAD_THREADS;
        size_t per = (n + threads - 1) / threads;
        std::vector<std::thread> pool;
        for (int t = 1; t < threads && (size_t)t * per < n; t++) {
            size_t a = (size_t)t * per, len = n - a < per ? n - a : per;
            try {
                pool.emplace_back(copy_span, half + a, parts, starts, n_parts, off + a, len);
            } catch (...) { // no thread to be had: this one copies the range itself
                copy_span(half + a, parts, starts, n_parts, off + a, len);
            }
        }
        copy_span(half, parts, starts, n_parts, off, n < per ? n : per);
        for (std::thread &th : pool) th.join();
        CUDA_TRY(cudaMemcpyAsync(dst + off, half, n, cudaMemcpyHostToDevice, gm->stream),
                 "uploading pixels %zu..%zu", off, off + n);
        CUDA_TRY(cudaEventRecord(gm->upload_done[h], gm->stream), "marking the pixel staging half %d", h);
    }
    return 0;
}

// ----------------------------------------------------------------------------
// forward

int cuda_vision_forward(cuda_model *gm, const float *pixels, int64_t P, const int64_t *grid_thw, int n_images,
                        void *out) {
    return cuda_vision_forward_parts(gm, &pixels, &P, 1, grid_thw, n_images, out);
}

int cuda_vision_forward_parts(cuda_model *gm, const float *const *parts, const int64_t *part_patches, int n_parts,
                              const int64_t *grid_thw, int n_images, void *out) {
    const maye_model_config *c = &gm->cfg;
    const cuda_weights *w = &gm->w;
    int64_t n_tokens, P64 = 0;
    for (int i = 0; i < n_parts; i++) {
        CHECK_OR_FAIL(part_patches[i] >= 0, "vision tower: part %d of the pixels has %lld patches", i,
                      (long long)part_patches[i]);
        P64 += part_patches[i];
    }
    TRY(maye_vision_check(c, P64, grid_thw, n_images, &n_tokens));
    if (P64 == 0) return 0;
    GmIdleOnReturn idle_on_return{gm};
    gm_phase(gm, "vision");
    CHECK_OR_FAIL(P64 < (1 << 30), "%lld patches are too many for one call", (long long)P64);
    bool q25 = c->arch == MAYE_ARCH_QWEN2_5_VL;
    cuda_dtype dt = gm->dt;
    cuda_ctx *ctx = gm->ctx;
    cuda_stream s = gm->stream;
    int P = (int)P64, VC = c->vision.width, VI = c->vision.intermediate, VH = c->vision.heads,
        VD = c->vision.head_dim, PD = c->vision.patch_dim, M = c->vision.merge * c->vision.merge, MVC = M * VC,
        C = c->hidden, U = P / M, F = q25 ? 2 : 1;
    size_t es = gm_es(gm), Pz = (size_t)P, VCz = (size_t)VC, VIz = (size_t)VI;

    maye_vision_layout lo;
    maye_vision_layout_build(c, grid_thw, n_images, P64, &lo);
    int max_full = 1, max_win = 1;
    for (int i = 0; i < lo.n_full; i++) max_full = lo.cu_full[i + 1] - lo.cu_full[i] > max_full ? lo.cu_full[i + 1] - lo.cu_full[i] : max_full;
    for (int i = 0; i < lo.n_win; i++) max_win = lo.cu_win[i + 1] - lo.cu_win[i] > max_win ? lo.cu_win[i + 1] - lo.cu_win[i] : max_win;

    // workspace: index arrays, then the activations
    VisionIndex dix, hix;
    void *pix, *pixd, *x, *n, *qkv, *att, *tmp, *f1, *fa, *mh, *mo;
    float *cos, *sin;
    DevRegion r[32];
    int nr = index_regions(r, &dix, P, U, lo.n_full, lo.n_win);
    size_t index_bytes = dev_layout(r, nr, NULL);
    r[nr++] = DEV_REGION(pix, Pz * PD * sizeof(float));           // (P, PD) fp32 as uploaded
    r[nr++] = DEV_REGION(pixd, dt == CUDA_F32 ? 0 : Pz * PD * es); // (P, PD) in the model's dtype
    r[nr++] = DEV_REGION(x, Pz * VCz * es);                        // (P, VC) residual stream
    r[nr++] = DEV_REGION(n, Pz * VCz * es);                        // (P, VC) normed
    r[nr++] = DEV_REGION(qkv, Pz * 3 * VCz * es);                  // (P, 3*VC)
    r[nr++] = DEV_REGION(att, Pz * VCz * es);                      // (P, VC)
    r[nr++] = DEV_REGION(tmp, Pz * VCz * es);                      // (P, VC) embedded patches, input order
    r[nr++] = DEV_REGION(f1, Pz * F * VIz * es);                   // (P, F*VI) fc1 or gate|up
    r[nr++] = DEV_REGION(fa, q25 ? Pz * VIz * es : 0);             // (P, VI) gated product
    r[nr++] = DEV_REGION(cos, Pz * (VD / 2) * sizeof(float));      // (P, VD/2)
    r[nr++] = DEV_REGION(sin, Pz * (VD / 2) * sizeof(float));
    r[nr++] = DEV_REGION(mh, (size_t)U * MVC * es);                // (U, M*VC) merger hidden
    r[nr++] = DEV_REGION(mo, (size_t)U * C * es);                  // (U, C) merger output, processing order
    size_t bytes = dev_layout(r, nr, NULL);
    int rc = gm_scratch(gm, bytes);
    char *host = rc == 0 ? (char *)malloc(index_bytes) : NULL;
    if (rc == 0 && !host) rc = maye_fail("out of host memory for the vision indices (%zu bytes)", index_bytes);
    if (rc < 0) {
        maye_vision_layout_free(&lo);
        return -1;
    }
    dev_layout(r, nr, (char *)gm->scratch);
    if (dt == CUDA_F32) pixd = pix;

    // the index arrays, laid out on the host exactly as on the device
    DevRegion hr[10];
    index_regions(hr, &hix, P, U, lo.n_full, lo.n_win);
    dev_layout(hr, 10, host);
    memcpy(hix.hpos, lo.hpos, Pz * sizeof(int32_t));
    memcpy(hix.wpos, lo.wpos, Pz * sizeof(int32_t));
    for (int k = 0; k < U; k++)
        for (int j = 0; j < M; j++) hix.rowmap[k * M + j] = lo.unit_of[k] * M + j;
    for (int k = 0; k < U; k++) hix.unit_of[k] = lo.unit_of[k];
    memcpy(hix.cu_full, lo.cu_full, sizeof(int) * (size_t)(lo.n_full + 1));
    memcpy(hix.cu_win, lo.cu_win, sizeof(int) * (size_t)(lo.n_win + 1));
    fill_segments(gm, lo.cu_full, lo.n_full, hix.nk_full, hix.kv_full, qkv, VC);
    fill_segments(gm, lo.cu_win, lo.n_win, hix.nk_win, hix.kv_win, qkv, VC);
    gm_mark(gm, "upload");
    cudaError_t err = cudaMemcpyAsync(gm->scratch, host, index_bytes, cudaMemcpyHostToDevice, s);
    free(host);
    if (err == cudaSuccess && staging_ready(gm)) {
        std::vector<size_t> starts((size_t)n_parts + 1, 0); // bytes
        for (int i = 0; i < n_parts; i++)
            starts[(size_t)i + 1] = starts[(size_t)i] + (size_t)part_patches[i] * PD * sizeof(float);
        if (upload_staged(gm, (char *)pix, (const char *const *)parts, starts.data(), n_parts,
                          starts[(size_t)n_parts]) < 0) {
            maye_vision_layout_free(&lo);
            return maye_fail_ctx("uploading %d patches", P);
        }
    } else {
        // each part straight from the caller's pageable memory
        size_t done = 0;
        for (int i = 0; i < n_parts && err == cudaSuccess; i++) {
            size_t n = (size_t)part_patches[i] * PD;
            if (n) err = cudaMemcpyAsync((float *)pix + done, parts[i], n * sizeof(float), cudaMemcpyHostToDevice, s);
            done += n;
        }
    }
    if (err != cudaSuccess) {
        maye_vision_layout_free(&lo);
        return cuda_fail(err, "uploading %d patches", P);
    }

    // patch embedding, rows in processing order, rotary tables
    gm_mark(gm, "patch_embed");
    if (pixd != pix) rc = cuda_convert(dt, pixd, CUDA_F32, pix, (int64_t)Pz * PD, s);
    if (rc == 0) rc = cuda_matmul_forward(ctx, dt, tmp, pixd, w->patch_embed, NULL, P, PD, VC, s);
    if (rc == 0) rc = cuda_copy_rows(dt, x, VC, NULL, dt, tmp, VC, dix.rowmap, P, VC, 0, s);
    if (rc == 0) rc = cuda_vision_rope_cos_sin_forward(cos, sin, dix.hpos, dix.wpos, P, VD, s);

    for (int l = 0; l < c->vision.depth && rc == 0; l++) {
        bool full = !q25 || c->vision.full_attention[l];
        const int *cu = full ? dix.cu_full : dix.cu_win, *nk = full ? dix.nk_full : dix.nk_win;
        const void **kv = full ? dix.kv_full : dix.kv_win;
        int S = full ? lo.n_full : lo.n_win, mx = full ? max_full : max_win;
        gm_mark(gm, "norm1");
        rc = vision_norm(gm, n, x, gm_layer(gm, w->v_norm1_w, l, VCz), q25 ? NULL : gm_layer(gm, w->v_norm1_b, l, VCz),
                         P, VC);
        gm_mark(gm, "qkv_proj");
        if (rc == 0)
            rc = cuda_matmul_forward(ctx, dt, qkv, n, gm_layer(gm, w->v_qkv_w, l, 3 * VCz * VCz),
                                     gm_layer(gm, w->v_qkv_b, l, 3 * VCz), P, VC, 3 * VC, s);
        gm_mark(gm, "rope");
        if (rc == 0) rc = cuda_rope_forward(dt, qkv, cos, sin, P, 2 * VH, VD, 3 * VC, s);
        gm_mark(gm, "attention");
        if (rc == 0)
            rc = cuda_attention_forward(ctx, dt, att, VC, NULL, qkv, 3 * VC, kv, kv + S, 3 * VC, cu, nk, S, VH, VH, VD, 0,
                                        mx, mx, NULL, 0, s);
        gm_mark(gm, "proj_residual");
        if (rc == 0)
            rc = cuda_matmul_residual_forward(ctx, dt, x, x, att, gm_layer(gm, w->v_proj_w, l, VCz * VCz),
                                              gm_layer(gm, w->v_proj_b, l, VCz), P, VC, VC, s);
        gm_mark(gm, "norm2");
        if (rc == 0)
            rc = vision_norm(gm, n, x, gm_layer(gm, w->v_norm2_w, l, VCz),
                             q25 ? NULL : gm_layer(gm, w->v_norm2_b, l, VCz), P, VC);
        gm_mark(gm, "fc1");
        if (rc == 0)
            rc = cuda_matmul_forward(ctx, dt, f1, n, gm_layer(gm, w->v_fc1_w, l, (size_t)F * VIz * VCz),
                                     gm_layer(gm, w->v_fc1_b, l, (size_t)F * VIz), P, VC, F * VI, s);
        void *mlp_in = q25 ? fa : f1;
        gm_mark(gm, "act");
        if (rc == 0)
            rc = q25 ? cuda_gated_rows_forward(dt, fa, f1, P, VI, c->vision.act, s)
                     : cuda_activation_forward(dt, f1, f1, (int64_t)Pz * VIz, c->vision.act, s);
        gm_mark(gm, "fc2_residual");
        if (rc == 0)
            rc = cuda_matmul_residual_forward(ctx, dt, x, x, mlp_in, gm_layer(gm, w->v_fc2_w, l, VCz * VIz),
                                              gm_layer(gm, w->v_fc2_b, l, VCz), P, VI, VC, s);
    }

    // merger: norm, M consecutive rows as one of M*VC, Linear -> GELU -> Linear, back to the images' order
    gm_mark(gm, "merger");
    if (rc == 0) rc = vision_norm(gm, n, x, w->m_norm_w, q25 ? NULL : w->m_norm_b, P, VC);
    if (rc == 0) rc = cuda_matmul_forward(ctx, dt, mh, n, w->m_fc1_w, w->m_fc1_b, U, MVC, MVC, s);
    if (rc == 0) rc = cuda_activation_forward(dt, mh, mh, (int64_t)U * MVC, ACT_GELU, s);
    if (rc == 0) rc = cuda_matmul_forward(ctx, dt, mo, mh, w->m_fc2_w, w->m_fc2_b, U, MVC, C, s);
    if (rc == 0) rc = cuda_copy_rows(dt, out, C, dix.unit_of, dt, mo, C, NULL, U, C, 0, s);
    maye_vision_layout_free(&lo);
    if (rc < 0) return maye_fail_ctx("vision tower on the GPU (%d patches, %d images)", P, n_images);
    return 0;
}
