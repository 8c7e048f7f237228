// The language model on the GPU (model/cuda/model.h): the activations' size table, the decoder layer shared
// by every caller (fused q/k/v GEMM with bias, rotary in place on the fused rows, attention over per-segment
// key/value pointers, o_proj with the residual add in its epilogue, RMSNorm, fused gate|up GEMM, SiLU-gated
// product, down_proj with the residual add in its epilogue), the packed forward and the chunked log-probs.
// Dimension letters as in model/cuda/model.h.
#include "model/cuda/internal.cuh"

#include <stdlib.h>
#include <string.h>

#define LP_ROWS 2048   // rows per log-prob block: LP_ROWS x LP_VCHUNK fp32 logits (32 MiB) stay in L2
#define LP_VCHUNK 4096 // vocabulary entries per log-prob chunk

// ----------------------------------------------------------------------------
// activations

// The input regions (device or host twins): ids, pos, cu, seqlen, img_rows, kv.
static int input_regions(DevRegion *r, int64_t **ids, int64_t **pos, int **cu, int **seqlen, int **img_rows,
                         const void ***kv, int T_cap, int B_cap, int n_kept) {
    size_t T = (size_t)T_cap, B = (size_t)B_cap;
    r[0] = DEV_REGION(*ids, T * sizeof(int64_t));
    r[1] = DEV_REGION(*pos, 3 * T * sizeof(int64_t));
    r[2] = DEV_REGION(*cu, (B + 1) * sizeof(int));
    r[3] = DEV_REGION(*seqlen, B * sizeof(int));
    r[4] = DEV_REGION(*img_rows, T * sizeof(int));
    r[5] = DEV_REGION(*kv, (size_t)n_kept * 2 * B * sizeof(void *));
    return 6;
}

int cuda_llm_acts_init(cuda_llm_acts *a, const cuda_model *gm, int T_cap, int B_cap, int keep) {
    const maye_model_config *c = &gm->cfg;
    memset(a, 0, sizeof *a);
    CHECK_OR_FAIL(keep >= 0 && keep <= 2, "cuda_llm_acts_init: keep must be 0, 1 or 2 (got %d)", keep);
    if (T_cap < 1) T_cap = 1;
    if (B_cap < 1) B_cap = 1;
    if (B_cap > T_cap) B_cap = T_cap;
    a->T_cap = T_cap, a->B_cap = B_cap, a->keep = keep;
    a->n_kept = keep == 1 ? c->layers : 1;
    a->lp_rows = T_cap < LP_ROWS ? T_cap : LP_ROWS;
    a->lp_vchunk = c->vocab < LP_VCHUNK ? c->vocab : LP_VCHUNK;
    size_t es = gm_es(gm), T = (size_t)T_cap, C = (size_t)c->hidden, Lk = (size_t)a->n_kept;
    size_t QKV = (size_t)gm_qkv(c), HD = (size_t)c->heads * c->head_dim, I = (size_t)c->intermediate;
    size_t H = (size_t)c->heads, D2 = (size_t)(c->head_dim / 2), Lr = keep ? (size_t)c->layers + 1 : 1;
    DevRegion r[40];
    int n = input_regions(r, &a->ids, &a->pos, &a->cu, &a->seqlen, &a->img_rows, &a->kv, T_cap, B_cap, a->n_kept);
    size_t input_bytes = dev_layout(r, n, NULL);
    r[n++] = DEV_REGION(a->resid, Lr * T * C * es);
    r[n++] = DEV_REGION(a->cos, T * D2 * sizeof(float));
    r[n++] = DEV_REGION(a->sin, T * D2 * sizeof(float));
    r[n++] = DEV_REGION(a->ln1, Lk * T * C * es);
    r[n++] = DEV_REGION(a->rstd1, Lk * T * sizeof(float));
    r[n++] = DEV_REGION(a->qkv, Lk * T * QKV * es);
    r[n++] = DEV_REGION(a->att, Lk * T * HD * es);
    r[n++] = DEV_REGION(a->lse, Lk * T * H * sizeof(float));
    r[n++] = DEV_REGION(a->h, Lk * T * C * es);
    r[n++] = DEV_REGION(a->ln2, Lk * T * C * es);
    r[n++] = DEV_REGION(a->rstd2, Lk * T * sizeof(float));
    r[n++] = DEV_REGION(a->gu, Lk * T * 2 * I * es);
    r[n++] = DEV_REGION(a->act, T * I * es);
    r[n++] = DEV_REGION(a->hidden, T * C * es);
    r[n++] = DEV_REGION(a->rstdf, T * sizeof(float));
    r[n++] = DEV_REGION(a->lp_h, T * C * es);
    r[n++] = DEV_REGION(a->lp_row, T * sizeof(int));
    r[n++] = DEV_REGION(a->lp_tgt, T * sizeof(int64_t));
    r[n++] = DEV_REGION(a->lp_out, 2 * T * sizeof(float));
    r[n++] = DEV_REGION(a->lp_scratch, cuda_logprobs_scratch_bytes(a->lp_rows, a->lp_vchunk));
    TRY(dev_alloc_table(r, n, &a->memory, &a->bytes, "the language model's activations"));
    a->host = malloc(input_bytes);
    a->h_cu = (int *)malloc(sizeof(int) * (size_t)(B_cap + 1));
    if (!a->host || !a->h_cu) {
        cuda_llm_acts_free(a);
        return maye_fail("out of host memory for the GPU activations' staging (%zu bytes)", input_bytes);
    }
    return 0;
}

void cuda_llm_acts_free(cuda_llm_acts *a) {
    if (a->memory) cudaFree(a->memory);
    free(a->host);
    free(a->h_cu);
    memset(a, 0, sizeof *a);
}

LayerActs llm_layer_acts(const cuda_model *gm, const cuda_llm_acts *a, int l) {
    const maye_model_config *c = &gm->cfg;
    size_t s = a->keep == 1 ? (size_t)l : 0, T = (size_t)a->T_cap, C = (size_t)c->hidden;
    size_t QKV = (size_t)gm_qkv(c), HD = (size_t)c->heads * c->head_dim, I = (size_t)c->intermediate;
    LayerActs la;
    la.ln1 = gm_at(gm, a->ln1, s * T * C);
    la.rstd1 = a->rstd1 + s * T;
    la.qkv = gm_at(gm, a->qkv, s * T * QKV);
    la.att = gm_at(gm, a->att, s * T * HD);
    la.lse = a->lse + s * T * (size_t)c->heads;
    la.h = gm_at(gm, a->h, s * T * C);
    la.ln2 = gm_at(gm, a->ln2, s * T * C);
    la.rstd2 = a->rstd2 + s * T;
    la.gu = gm_at(gm, a->gu, s * T * 2 * I);
    return la;
}

void *llm_layer_input(const cuda_model *gm, const cuda_llm_acts *a, int l) {
    return a->keep ? gm_at(gm, a->resid, (size_t)l * a->T_cap * gm->cfg.hidden) : a->resid;
}

// ----------------------------------------------------------------------------
// one decoder layer

int llm_layer_body(cuda_model *gm, int l, const void *x_in, void *x_out, int T, const float *cos, const float *sin,
                   const LayerActs &la, void *act, const AttnPlan &ap) {
    const maye_model_config *c = &gm->cfg;
    const cuda_weights *w = &gm->w;
    cuda_ctx *ctx = gm->ctx;
    cuda_dtype dt = gm->dt;
    cuda_stream s = gm->stream;
    int C = c->hidden, H = c->heads, KV = c->kv_heads, D = c->head_dim, HD = H * D, KVD = KV * D, QKV = gm_qkv(c),
        I = c->intermediate;
    size_t Cz = (size_t)C, Iz = (size_t)I;

    // attention: h = x + o_proj(attn(rope(q), rope(k), v)), q|k|v = qkv_proj(ln1)
    gm_mark(gm, "qkv_proj");
    TRY(cuda_matmul_forward(ctx, dt, la.qkv, la.ln1, gm_layer(gm, w->qkv_w, l, (size_t)QKV * Cz),
                            gm_layer(gm, w->qkv_b, l, (size_t)QKV), T, C, QKV, s));
    gm_mark(gm, ap.cache_rows ? "rope_cache" : "rope");
    if (ap.cache_rows)
        TRY(cuda_rope_cache_forward(dt, la.qkv, cos, sin, T, H, KV, D, QKV, ap.cache_k, ap.cache_v, ap.cache_rows, KVD,
                                    s));
    else
        TRY(cuda_rope_forward(dt, la.qkv, cos, sin, T, H + KV, D, QKV, s));
    gm_mark(gm, "attention");
    TRY(cuda_attention_forward(ctx, dt, la.att, HD, la.lse, la.qkv, QKV, ap.kv, ap.kv + ap.B, ap.ldkv, ap.cu_q, ap.nk,
                               ap.B, H, KV, D, 1, ap.max_nq, ap.max_nk, ap.ws, ap.ws_bytes, s));
    // the residual add in the GEMM's epilogue: the sum rounded once (bf16), no temporary
    gm_mark(gm, "o_proj_residual");
    TRY(cuda_matmul_residual_forward(ctx, dt, la.h, x_in, la.att, gm_layer(gm, w->o_w, l, Cz * HD), NULL, T, HD, C,
                                     s));
    gm_mark(gm, "attn_norm");
    TRY(cuda_rmsnorm_forward(dt, la.ln2, la.rstd2, la.h, gm_layer(gm, w->ln2_w, l, Cz), T, C, c->rms_eps, s));

    // MLP: x_out = h + down(silu(gate(ln2)) * up(ln2))
    gm_mark(gm, "gate_up_proj");
    TRY(cuda_matmul_forward(ctx, dt, la.gu, la.ln2, gm_layer(gm, w->gu_w, l, 2 * Iz * Cz), NULL, T, C, 2 * I, s));
    gm_mark(gm, "silu_mul");
    TRY(cuda_gated_rows_forward(dt, act, la.gu, T, I, ACT_SILU, s));
    if (!x_out) return 0; // recomputation for the backward: the layer's output is not needed
    gm_mark(gm, "down_proj_residual");
    TRY(cuda_matmul_residual_forward(ctx, dt, x_out, la.h, act, gm_layer(gm, w->down_w, l, Cz * Iz), NULL, T, I, C,
                                     s));
    return 0;
}

// ----------------------------------------------------------------------------
// packed forward

static int check_batch(const maye_model_config *c, const cuda_llm_batch *b, const cuda_llm_acts *a) {
    CHECK_OR_FAIL(a->memory, "the GPU activations are not initialised");
    CHECK_OR_FAIL(b->B >= 1 && b->T >= 1, "a batch needs at least one sequence and one token (B = %d, T = %d)", b->B,
                  b->T);
    CHECK_OR_FAIL(b->T <= a->T_cap && b->B <= a->B_cap,
                  "the batch has %d tokens in %d sequences but the GPU activations were sized for %d in %d", b->T, b->B,
                  a->T_cap, a->B_cap);
    // the host arrays, as the CPU forward checks them (image features are on the device: only their pointer here)
    maye_llm_batch host = {b->B, b->T, b->cu_seqlens, b->ids, b->pos, NULL, b->n_image_embeds, b->n_prompt};
    TRY(maye_llm_batch_check(c, &host));
    CHECK_OR_FAIL(b->n_image_embeds == 0 || b->image_embeds, "image features are missing");
    return 0;
}

// Fills the host staging with the batch's inputs and the per-layer key/value pointers, and uploads it.
static int upload_inputs(cuda_model *gm, const cuda_llm_batch *b, cuda_llm_acts *a) {
    const maye_model_config *c = &gm->cfg;
    int64_t *ids = NULL, *pos = NULL;
    int *cu = NULL, *seqlen = NULL, *img_rows = NULL;
    const void **kv = NULL;
    DevRegion r[8];
    int n = input_regions(r, &ids, &pos, &cu, &seqlen, &img_rows, &kv, a->T_cap, a->B_cap, a->n_kept);
    size_t bytes = dev_layout(r, n, (char *)a->host);
    int T = b->T, B = b->B, HD = c->heads * c->head_dim, KVD = c->kv_heads * c->head_dim, QKV = gm_qkv(c);
    memcpy(ids, b->ids, sizeof(int64_t) * (size_t)T);
    memcpy(pos, b->pos, sizeof(int64_t) * 3 * (size_t)T);
    memcpy(cu, b->cu_seqlens, sizeof(int) * (size_t)(B + 1));
    memcpy(a->h_cu, b->cu_seqlens, sizeof(int) * (size_t)(B + 1));
    a->max_len = 0;
    for (int s = 0; s < B; s++) {
        seqlen[s] = cu[s + 1] - cu[s];
        a->max_len = seqlen[s] > a->max_len ? seqlen[s] : a->max_len;
    }
    int ni = 0;
    for (int s = 0; s < B; s++)
        for (int t = cu[s]; t < cu[s + 1]; t++)
            if (gm_image_row(c, b, s, t)) img_rows[ni++] = t;
    for (int k = 0; k < a->n_kept; k++) {
        LayerActs la = llm_layer_acts(gm, a, k);
        for (int s = 0; s < B; s++) {
            kv[(size_t)k * 2 * B + s] = gm_at(gm, la.qkv, (size_t)cu[s] * QKV + HD);
            kv[(size_t)k * 2 * B + B + s] = gm_at(gm, la.qkv, (size_t)cu[s] * QKV + HD + KVD);
        }
    }
    CUDA_TRY(cudaMemcpyAsync(a->memory, a->host, bytes, cudaMemcpyHostToDevice, gm->stream),
             "uploading the batch's inputs (%zu bytes)", bytes);
    return 0;
}

AttnPlan llm_packed_plan(const cuda_model *gm, const cuda_llm_acts *a, int l) {
    AttnPlan ap;
    memset(&ap, 0, sizeof ap);
    ap.kv = a->kv + (size_t)(a->keep == 1 ? l : 0) * 2 * a->B;
    ap.ldkv = gm_qkv(&gm->cfg);
    ap.cu_q = a->cu, ap.nk = a->seqlen, ap.B = a->B, ap.max_nq = ap.max_nk = a->max_len;
    return ap;
}

// The forward proper, with an optional cache write: cache_rows (T) device rows of the per-layer caches
// cache_k / cache_v (layer l at + l * cache_stride elements) receive every token's key / value.
int llm_forward_impl(cuda_model *gm, const cuda_llm_batch *b, cuda_llm_acts *a, const int *cache_rows, void *cache_k,
                     void *cache_v, size_t cache_stride) {
    const maye_model_config *c = &gm->cfg;
    const cuda_weights *w = &gm->w;
    cuda_dtype dt = gm->dt;
    cuda_stream s = gm->stream;
    TRY(check_batch(c, b, a));
    int T = b->T, C = c->hidden, L = c->layers;
    a->T = T, a->B = b->B;
    GmIdleOnReturn idle_on_return{gm};
    gm_mark(gm, "inputs");
    TRY(upload_inputs(gm, b, a));

    void *x0 = llm_layer_input(gm, a, 0);
    TRY(cuda_embedding_forward(dt, x0, a->ids, w->embed, T, C, s));
    if (b->n_image_embeds)
        TRY(cuda_copy_rows(dt, x0, C, a->img_rows, dt, b->image_embeds, C, NULL, (int)b->n_image_embeds, C, 0, s));
    TRY(cuda_mrope_cos_sin_forward(a->cos, a->sin, a->pos, T, T, c->head_dim, c->rope_theta, c->mrope_section, s));
    LayerActs la0 = llm_layer_acts(gm, a, 0);
    TRY(cuda_rmsnorm_forward(dt, la0.ln1, la0.rstd1, x0, w->ln1_w, T, C, c->rms_eps, s));

    for (int l = 0; l < L; l++) {
        LayerActs la = llm_layer_acts(gm, a, l);
        AttnPlan ap = llm_packed_plan(gm, a, l);
        if (cache_rows) {
            ap.cache_rows = cache_rows;
            ap.cache_k = gm_at(gm, cache_k, (size_t)l * cache_stride);
            ap.cache_v = gm_at(gm, cache_v, (size_t)l * cache_stride);
        }
        void *x_out = llm_layer_input(gm, a, l + 1);
        TRY(llm_layer_body(gm, l, llm_layer_input(gm, a, l), x_out, T, a->cos, a->sin, la, a->act, ap));
        gm_mark(gm, "mlp_norm");
        if (l + 1 < L) {
            LayerActs next = llm_layer_acts(gm, a, l + 1);
            TRY(cuda_rmsnorm_forward(dt, next.ln1, next.rstd1, x_out, gm_layer(gm, w->ln1_w, l + 1, (size_t)C), T, C,
                                     c->rms_eps, s));
        } else {
            TRY(cuda_rmsnorm_forward(dt, a->hidden, a->rstdf, x_out, w->norm_w, T, C, c->rms_eps, s));
        }
    }
    return 0;
}

int cuda_llm_forward(cuda_model *gm, const cuda_llm_batch *b, cuda_llm_acts *a) {
    gm_phase(gm, "forward");
    return llm_forward_impl(gm, b, a, NULL, NULL, NULL, 0);
}

// ----------------------------------------------------------------------------
// log-probs and logits

int cuda_llm_logprobs(cuda_model *gm, cuda_llm_acts *a, const int64_t *targets, float temperature, float *logprobs,
                      float *entropy) {
    const maye_model_config *c = &gm->cfg;
    int T = a->T, C = c->hidden;
    CHECK_OR_FAIL(T >= 1, "cuda_llm_logprobs: no forward has run");
    CHECK_OR_FAIL(temperature > 0 && isfinite(temperature), "temperature must be positive (got %g)", temperature);
    int *rows = (int *)xmalloc(sizeof(int) * (size_t)T);
    int64_t *tgt = (int64_t *)xmalloc(sizeof(int64_t) * (size_t)T);
    float *out = (float *)xmalloc(sizeof(float) * 2 * (size_t)T);
    int n = 0, rc = 0;
    for (int t = 0; t < T && rc == 0; t++) {
        if (targets[t] >= c->vocab)
            rc = maye_fail("target %d = %lld is outside the vocabulary [0, %d)", t, (long long)targets[t], c->vocab);
        if (targets[t] < 0) continue;
        rows[n] = t, tgt[n] = targets[t], n++;
    }
    cudaStream_t s = gm->stream;
    GmIdleOnReturn idle_on_return{gm};
    if (rc == 0 && n > 0) {
        gm_phase(gm, "logprobs");
        gm_mark(gm, "logprobs");
        cudaError_t err = cudaMemcpyAsync(a->lp_row, rows, sizeof(int) * (size_t)n, cudaMemcpyHostToDevice, s);
        if (err == cudaSuccess)
            err = cudaMemcpyAsync(a->lp_tgt, tgt, sizeof(int64_t) * (size_t)n, cudaMemcpyHostToDevice, s);
        if (err != cudaSuccess) rc = cuda_fail(err, "uploading %d log-prob targets", n);
        if (rc == 0) rc = cuda_copy_rows(gm->dt, a->lp_h, C, NULL, gm->dt, a->hidden, C, a->lp_row, n, C, 0, s);
        if (rc == 0)
            rc = cuda_logprobs_forward(gm->ctx, gm->dt, a->lp_out, entropy ? a->lp_out + a->T_cap : NULL, a->lp_h,
                                       gm->w.lm_head, a->lp_tgt, n, C, c->vocab, temperature, a->lp_rows, a->lp_vchunk,
                                       a->lp_scratch, s);
        if (rc == 0) {
            err = cudaMemcpyAsync(out, a->lp_out, sizeof(float) * (size_t)n, cudaMemcpyDeviceToHost, s);
            if (err == cudaSuccess && entropy)
                err = cudaMemcpyAsync(out + n, a->lp_out + a->T_cap, sizeof(float) * (size_t)n, cudaMemcpyDeviceToHost, s);
            gm_mark(gm, NULL);
            if (err == cudaSuccess) err = cudaStreamSynchronize(s);
            if (err != cudaSuccess) rc = cuda_fail(err, "computing %d log-probs on the GPU", n);
        }
    }
    if (rc == 0) {
        for (int t = 0; t < T; t++) {
            logprobs[t] = 0;
            if (entropy) entropy[t] = 0;
        }
        for (int i = 0; i < n; i++) {
            logprobs[rows[i]] = out[i];
            if (entropy) entropy[rows[i]] = out[n + i];
        }
        a->lp_n = n;
        a->lp_temperature = temperature;
    }
    free(rows), free(tgt), free(out);
    return rc;
}

int cuda_llm_logits(cuda_model *gm, cuda_llm_acts *a, int row0, int N, float *logits) {
    const maye_model_config *c = &gm->cfg;
    CHECK_OR_FAIL(row0 >= 0 && N >= 0 && row0 + N <= a->T, "cuda_llm_logits: rows [%d, %d) outside the %d of the last "
                  "forward", row0, row0 + N, a->T);
    if (N == 0) return 0;
    size_t bytes = sizeof(float) * (size_t)N * c->vocab;
    TRY(gm_scratch(gm, bytes));
    TRY(cuda_gemm(gm->ctx, gm->dt, CUDA_F32, 0, 1, N, c->vocab, c->hidden, 1.0f,
                  gm_at(gm, a->hidden, (size_t)row0 * c->hidden), c->hidden, gm->w.lm_head, c->hidden, 0.0f, gm->scratch,
                  c->vocab, gm->stream));
    CUDA_TRY(cudaMemcpyAsync(logits, gm->scratch, bytes, cudaMemcpyDeviceToHost, gm->stream), "downloading logits");
    return cuda_model_sync(gm);
}
