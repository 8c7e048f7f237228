// The language model's backward on the GPU (model/cuda/backward.h), in the order of model/backward.c:
//   dL/dlogprob -> chunked log-softmax backward of the gathered rows (lm_head gradient) -> final RMSNorm ->
//   per layer, last to first: down_proj, SiLU gate, gate|up_proj, RMSNorm, o_proj, attention (the flash-style
//   tensor-core kernels in bf16 with head dim 64/80/128, else per-segment GEMMs over materialised scores;
//   cuda_ctx_set_attention_backward), rotary, fused q|k|v_proj with bias, RMSNorm -> embedding rows of text
//   tokens.
// Weight gradients accumulate in fp32 through cuBLASLt's beta = 1 (bf16 inputs, fp32 output), except that the
// first backward after cuda_llm_train_zero writes the projection weights' gradients (beta 0: that zero skips
// them, 5.2 of the 2B model's 6.2 GB); the column sums (norm weights, biases) and the embedding rows go in a
// fixed order. Then the norm and AdamW passes over the whole gradient range (the clipping coefficient is
// applied inside the AdamW pass). Dimension letters as in model/cuda/model.h.
#include "model/cuda/backward.h"
#include "model/cuda/internal.cuh"

#include <stdlib.h>
#include <string.h>

#define LB_ROWS 8192   // rows per log-prob backward block (8x1024 tokens in one: the fp32 lm_head gradient is
                       // read and written once per vocabulary chunk, not once per block)
#define LB_VCHUNK 4096 // vocabulary entries per chunk

// ----------------------------------------------------------------------------
// state

// The row lists the backward uploads, laid out identically in device memory and in the host staging.
struct RowLists {
    int *lp_row;
    int64_t *lp_tgt;
    float *lp_lp, *lp_g;
    int64_t *emb_ids;
    int *emb_starts, *emb_rows;
    void **attn_dkv;
};

static int input_regions(DevRegion *r, RowLists *x, int T_cap, int B_cap) {
    size_t T = (size_t)T_cap;
    r[0] = DEV_REGION(x->lp_row, T * sizeof(int));
    r[1] = DEV_REGION(x->lp_tgt, T * sizeof(int64_t));
    r[2] = DEV_REGION(x->lp_lp, T * sizeof(float));
    r[3] = DEV_REGION(x->lp_g, T * sizeof(float));
    r[4] = DEV_REGION(x->emb_ids, T * sizeof(int64_t));
    r[5] = DEV_REGION(x->emb_starts, (T + 1) * sizeof(int));
    r[6] = DEV_REGION(x->emb_rows, T * sizeof(int));
    r[7] = DEV_REGION(x->attn_dkv, 2 * (size_t)B_cap * sizeof(void *));
    return 8;
}

// Whether the attention backward runs the flash-style kernels (else the per-segment GEMMs).
static bool attn_flash(const cuda_model *gm) {
    return cuda_ctx_attention_backward(gm->ctx) == CUDA_ATTN_BWD_AUTO &&
           cuda_attention_backward_flash_supported(gm->dt, gm->cfg.head_dim);
}

int cuda_llm_train_init(cuda_llm_train *tr, cuda_model *gm, int T_cap, int B_cap, bool recompute) {
    const maye_model_config *c = &gm->cfg;
    memset(tr, 0, sizeof *tr);
    CHECK_OR_FAIL(gm->dt == CUDA_F32 || gm->master, "training in bf16 needs the fp32 master weights: upload the model "
                  "with master = true");
    if (T_cap < 1) T_cap = 1;
    tr->recompute = recompute;
    TRY(cuda_llm_acts_init(&tr->acts, gm, T_cap, B_cap, recompute ? 2 : 1));
    T_cap = tr->acts.T_cap;

    // gradients, moments, norm, clipping scratch
    tr->n = gm->group_len[MAYE_PARAM_LLM];
    DevRegion s[6] = {DEV_REGION(tr->grads, tr->n * sizeof(float)), DEV_REGION(tr->m, tr->n * sizeof(float)),
                      DEV_REGION(tr->v, tr->n * sizeof(float)), DEV_REGION(tr->norm, sizeof(double)),
                      DEV_REGION(tr->clip_coef, sizeof(float)),
                      DEV_REGION(tr->clip_scratch, cuda_grad_norm_scratch_bytes((int64_t)tr->n))};
    if (dev_alloc_table(s, 6, &tr->state, &tr->state_bytes, "the gradients and AdamW moments") < 0) {
        cuda_llm_train_free(tr);
        return -1;
    }
    CUDA_TRY(cudaMemsetAsync(tr->state, 0, tr->state_bytes, gm->stream), "zeroing the gradients and moments");
    for (int i = 0; i < gm->n_specs; i++) {
        const cuda_param *p = &gm->specs[i];
        if (p->group != MAYE_PARAM_LLM) continue;
        *(void **)((char *)&tr->g + p->field) = tr->grads + (p->offset - gm->group_off[MAYE_PARAM_LLM]);
    }
    if (c->tie_embeddings) tr->g.lm_head = tr->g.embed;

    // backward workspace
    size_t es = gm_es(gm), T = (size_t)T_cap, C = (size_t)c->hidden, QKV = (size_t)gm_qkv(c);
    size_t HD = (size_t)c->heads * c->head_dim, I = (size_t)c->intermediate;
    tr->lp_rows = T_cap < LB_ROWS ? T_cap : LB_ROWS;
    tr->lp_vchunk = c->vocab < LB_VCHUNK ? c->vocab : LB_VCHUNK;
    size_t widest = QKV > C ? QKV : C;
    RowLists rows;
    DevRegion r[24];
    int n = input_regions(r, &rows, T_cap, tr->acts.B_cap);
    tr->input_bytes = dev_layout(r, n, NULL);
    r[n++] = DEV_REGION(tr->dres, T * C * es);
    r[n++] = DEV_REGION(tr->dln, T * C * es);
    r[n++] = DEV_REGION(tr->dhid, T * C * es);
    r[n++] = DEV_REGION(tr->dqkv, T * QKV * es);
    r[n++] = DEV_REGION(tr->datt, T * HD * es);
    r[n++] = DEV_REGION(tr->dgu, T * 2 * I * es);
    r[n++] = DEV_REGION(tr->dact, T * I * es);
    r[n++] = DEV_REGION(tr->lp_dh, T * C * sizeof(float));
    r[n++] = DEV_REGION(tr->col_scratch, cuda_column_scratch_bytes(T_cap, (int)widest));
    r[n++] = DEV_REGION(tr->lp_scratch, cuda_logprobs_backward_scratch_bytes(gm->dt, tr->lp_rows, tr->lp_vchunk,
                                                                             c->hidden));
    if (dev_alloc_table(r, n, &tr->memory, &tr->bytes, "the backward's workspace") < 0) {
        cuda_llm_train_free(tr);
        return -1;
    }
    tr->lp_row = rows.lp_row, tr->lp_tgt = rows.lp_tgt, tr->lp_lp = rows.lp_lp, tr->lp_g = rows.lp_g;
    tr->emb_ids = rows.emb_ids, tr->emb_starts = rows.emb_starts, tr->emb_rows = rows.emb_rows;
    tr->attn_dkv = rows.attn_dkv;
    tr->host = malloc(tr->input_bytes);
    if (!tr->host) {
        cuda_llm_train_free(tr);
        return maye_fail("out of host memory for the backward's staging (%zu bytes)", tr->input_bytes);
    }
    return cuda_model_sync(gm);
}

void cuda_llm_train_free(cuda_llm_train *tr) {
    cuda_llm_acts_free(&tr->acts);
    if (tr->state) cudaFree(tr->state);
    if (tr->memory) cudaFree(tr->memory);
    if (tr->attn_ws) cudaFree(tr->attn_ws);
    free(tr->host);
    memset(tr, 0, sizeof *tr);
}

size_t cuda_llm_train_bytes(const cuda_llm_train *tr) {
    return tr->acts.bytes + tr->state_bytes + tr->bytes + tr->attn_ws_bytes;
}

// The gradients the next backward's GEMMs write whole (beta 0) rather than add to: the layers' projection weights.
static bool written_by_gemm(size_t field) {
    return field == offsetof(cuda_weights, qkv_w) || field == offsetof(cuda_weights, o_w) ||
           field == offsetof(cuda_weights, gu_w) || field == offsetof(cuda_weights, down_w);
}

// Zeroes the gradients of LLM tensors where written_by_gemm(field) equals gemm_written.
static int zero_grads(cuda_model *gm, cuda_llm_train *tr, bool gemm_written) {
    for (int i = 0; i < gm->n_specs; i++) {
        const cuda_param *p = &gm->specs[i];
        if (p->group != MAYE_PARAM_LLM || written_by_gemm(p->field) != gemm_written) continue;
        float *g = tr->grads + (p->offset - gm->group_off[MAYE_PARAM_LLM]);
        CUDA_TRY(cudaMemsetAsync(g, 0, p->numel * (size_t)p->count * sizeof(float), gm->stream),
                 "zeroing the gradients");
    }
    return 0;
}

// A step without a backward since cuda_llm_train_zero: the gradients it left for that backward become zeros.
static int settle_fresh(cuda_model *gm, cuda_llm_train *tr) {
    if (!tr->fresh) return 0;
    tr->fresh = false;
    return zero_grads(gm, tr, true);
}

// Zeroes every gradient but those the first backward writes (5.2 of the 6.2 GB of a 2B model are not touched);
// until that backward, tr->fresh tells it to write them.
int cuda_llm_train_zero(cuda_model *gm, cuda_llm_train *tr) {
    GmIdleOnReturn idle_on_return{gm};
    tr->clipped = false;
    gm_phase(gm, "optimizer");
    gm_mark(gm, "zero_grads");
    TRY(zero_grads(gm, tr, false));
    tr->fresh = true;
    return 0;
}

// ----------------------------------------------------------------------------
// one decoder layer

// The fp32 gradient of layer l of a stacked tensor field (per_copy elements per layer).
static float *glayer(float *base, int l, size_t per_copy) { return base + (size_t)l * per_copy; }

// tr->dres holds dL/dx_out on entry and dL/dx_in on return.
static int layer_backward(cuda_model *gm, cuda_llm_train *tr, int l, const LayerActs &la, const void *x_in) {
    const maye_model_config *c = &gm->cfg;
    const cuda_weights *w = &gm->w;
    const cuda_llm_acts *a = &tr->acts;
    cuda_ctx *ctx = gm->ctx;
    cuda_dtype dt = gm->dt;
    cuda_stream s = gm->stream;
    int T = a->T, B = a->B, C = c->hidden, H = c->heads, KV = c->kv_heads, D = c->head_dim, HD = H * D,
        KVD = KV * D, QKV = gm_qkv(c), I = c->intermediate;
    size_t Cz = (size_t)C, Iz = (size_t)I, QKVz = (size_t)QKV;
    float *g_down = glayer((float *)tr->g.down_w, l, Cz * Iz), *g_gu = glayer((float *)tr->g.gu_w, l, 2 * Iz * Cz);
    float *g_o = glayer((float *)tr->g.o_w, l, Cz * HD), *g_qkv = glayer((float *)tr->g.qkv_w, l, QKVz * Cz);
    float *g_qkvb = glayer((float *)tr->g.qkv_b, l, QKVz), *g_ln1 = glayer((float *)tr->g.ln1_w, l, Cz);
    float *g_ln2 = glayer((float *)tr->g.ln2_w, l, Cz);
    float wbeta = tr->fresh ? 0.0f : 1.0f; // the four weight GEMMs write their gradients after a zero, else add

    // MLP: x_out = h + down(act), act = silu(gate) * up, gate|up = gu_proj(ln2), ln2 = rmsnorm(h). With keep 1 the
    // forward's act (one buffer for all layers) is gone: the activation backward rebuilds it in the same pass,
    // before down_proj's weight gradient reads it; after a recompute (keep 2) it is this layer's already.
    gm_mark(gm, "down_proj_dx");
    TRY(cuda_gemm(ctx, dt, dt, 0, 0, T, I, C, 1.0f, tr->dres, C, gm_layer(gm, w->down_w, l, Cz * Iz), I, 0.0f, tr->dact,
                  I, s));
    gm_mark(gm, "silu_mul_grad");
    TRY(cuda_gated_rows_backward(dt, tr->dgu, a->keep == 1 ? a->act : NULL, tr->dact, la.gu, T, I, ACT_SILU, s));
    gm_mark(gm, "down_proj_dw");
    TRY(cuda_gemm(ctx, dt, CUDA_F32, 1, 0, C, I, T, 1.0f, tr->dres, C, a->act, I, wbeta, g_down, I, s));
    gm_mark(gm, "gate_up_proj_dx");
    TRY(cuda_gemm(ctx, dt, dt, 0, 0, T, C, 2 * I, 1.0f, tr->dgu, 2 * I, gm_layer(gm, w->gu_w, l, 2 * Iz * Cz), C, 0.0f,
                  tr->dln, C, s));
    gm_mark(gm, "gate_up_proj_dw");
    TRY(cuda_gemm(ctx, dt, CUDA_F32, 1, 0, 2 * I, C, T, 1.0f, tr->dgu, 2 * I, la.ln2, C, wbeta, g_gu, C, s));
    gm_mark(gm, "ln2_grad");
    TRY(cuda_rmsnorm_backward(dt, tr->dres, g_ln2, tr->dln, la.h, gm_layer(gm, w->ln2_w, l, Cz), la.rstd2, T, C,
                              tr->col_scratch, s));

    // attention: h = x + o_proj(att), att = attention(rope(q), rope(k), v), q|k|v = qkv_proj(ln1)
    gm_mark(gm, "o_proj_dx");
    TRY(cuda_gemm(ctx, dt, dt, 0, 0, T, HD, C, 1.0f, tr->dres, C, gm_layer(gm, w->o_w, l, Cz * HD), HD, 0.0f, tr->datt,
                  HD, s));
    gm_mark(gm, "o_proj_dw");
    TRY(cuda_gemm(ctx, dt, CUDA_F32, 1, 0, C, HD, T, 1.0f, tr->dres, C, la.att, HD, wbeta, g_o, HD, s));
    gm_mark(gm, "attention_grad");
    if (attn_flash(gm)) {
        AttnPlan ap = llm_packed_plan(gm, a, l);
        TRY(cuda_attention_backward_flash(ctx, dt, tr->dqkv, tr->attn_dkv, tr->attn_dkv + B, tr->datt, HD, la.att, HD,
                                          la.qkv, QKV, ap.kv, ap.kv + B, QKV, la.lse, a->cu, a->cu, a->seqlen, B, T, T,
                                          H, KV, D, 1, a->max_len, a->max_len, tr->attn_ws, tr->attn_ws_bytes, s));
    } else {
        const int *cu = a->h_cu;
        int *nk = (int *)xmalloc(sizeof(int) * (size_t)B);
        const void **k = (const void **)xmalloc(sizeof(void *) * 2 * (size_t)B);
        void **dk = (void **)xmalloc(sizeof(void *) * 2 * (size_t)B);
        for (int b = 0; b < B; b++) {
            nk[b] = cu[b + 1] - cu[b];
            k[b] = gm_at(gm, la.qkv, (size_t)cu[b] * QKV + HD);
            k[B + b] = gm_at(gm, la.qkv, (size_t)cu[b] * QKV + HD + KVD);
            dk[b] = gm_at(gm, tr->dqkv, (size_t)cu[b] * QKV + HD);
            dk[B + b] = gm_at(gm, tr->dqkv, (size_t)cu[b] * QKV + HD + KVD);
        }
        int rc = cuda_attention_backward(ctx, dt, tr->dqkv, dk, dk + B, tr->datt, HD, la.qkv, QKV, k, k + B, QKV,
                                         la.lse, cu, nk, B, H, KV, D, 1, tr->attn_ws, tr->attn_ws_bytes, s);
        free(nk), free(k), free(dk);
        TRY(rc);
    }
    gm_mark(gm, "rope_grad");
    TRY(cuda_rope_backward(dt, tr->dqkv, a->cos, a->sin, T, H + KV, D, QKV, s));
    gm_mark(gm, "qkv_proj_dx");
    TRY(cuda_gemm(ctx, dt, dt, 0, 0, T, C, QKV, 1.0f, tr->dqkv, QKV, gm_layer(gm, w->qkv_w, l, QKVz * Cz), C, 0.0f,
                  tr->dln, C, s));
    gm_mark(gm, "qkv_proj_dw");
    TRY(cuda_gemm(ctx, dt, CUDA_F32, 1, 0, QKV, C, T, 1.0f, tr->dqkv, QKV, la.ln1, C, wbeta, g_qkv, C, s));
    gm_mark(gm, "bias_grad");
    TRY(cuda_bias_backward(g_qkvb, dt, tr->dqkv, T, QKV, QKV, tr->col_scratch, s));
    gm_mark(gm, "ln1_grad");
    TRY(cuda_rmsnorm_backward(dt, tr->dres, g_ln1, tr->dln, x_in, gm_layer(gm, w->ln1_w, l, Cz), la.rstd1, T, C,
                              tr->col_scratch, s));
    return 0;
}

// ----------------------------------------------------------------------------
// row lists

static int cmp_pair(const void *x, const void *y) {
    const int64_t *a = (const int64_t *)x, *b = (const int64_t *)y;
    return a[0] != b[0] ? (a[0] > b[0]) - (a[0] < b[0]) : (a[1] > b[1]) - (a[1] < b[1]);
}

// Fills the host staging with the rows that have a log-prob gradient (returns their count in *n_lp) and the
// text rows grouped by token id (their count of distinct ids in *n_ids), then uploads it.
static int upload_rows(cuda_model *gm, cuda_llm_train *tr, const cuda_llm_batch *b, const int64_t *targets,
                       const float *logprobs, const float *dlogprobs, int *n_lp, int *n_ids) {
    const maye_model_config *c = &gm->cfg;
    RowLists h;
    DevRegion r[8];
    int nr = input_regions(r, &h, tr->acts.T_cap, tr->acts.B_cap);
    size_t bytes = dev_layout(r, nr, (char *)tr->host);
    int T = b->T, n = 0;
    for (int t = 0; t < T; t++) {
        if (targets[t] < 0 || dlogprobs[t] == 0.0f) continue;
        h.lp_row[n] = t, h.lp_tgt[n] = targets[t], h.lp_lp[n] = logprobs[t], h.lp_g[n] = dlogprobs[t];
        n++;
    }
    *n_lp = n;
    // (id, row) pairs of the rows whose embedding came from the table, sorted
    int64_t *pairs = (int64_t *)xmalloc(sizeof(int64_t) * 2 * (size_t)T);
    int np = 0;
    for (int s = 0; s < b->B; s++)
        for (int t = b->cu_seqlens[s]; t < b->cu_seqlens[s + 1]; t++) {
            if (gm_image_row(c, b, s, t)) continue;
            pairs[2 * np] = b->ids[t], pairs[2 * np + 1] = t;
            np++;
        }
    qsort(pairs, (size_t)np, 2 * sizeof(int64_t), cmp_pair);
    int u = 0;
    for (int i = 0; i < np; i++) {
        if (i == 0 || pairs[2 * i] != pairs[2 * i - 2]) {
            h.emb_ids[u] = pairs[2 * i];
            h.emb_starts[u++] = i;
        }
        h.emb_rows[i] = (int)pairs[2 * i + 1];
    }
    h.emb_starts[u] = np;
    *n_ids = u;
    free(pairs);
    // the segments' key and value gradient rows inside dqkv (the flash attention backward's pointer arrays)
    int HD = c->heads * c->head_dim, KVD = c->kv_heads * c->head_dim, QKV = gm_qkv(c);
    for (int s = 0; s < b->B; s++) {
        h.attn_dkv[s] = gm_at(gm, tr->dqkv, (size_t)b->cu_seqlens[s] * QKV + HD);
        h.attn_dkv[b->B + s] = gm_at(gm, tr->dqkv, (size_t)b->cu_seqlens[s] * QKV + HD + KVD);
    }
    CUDA_TRY(cudaMemcpyAsync(tr->memory, tr->host, bytes, cudaMemcpyHostToDevice, gm->stream),
             "uploading the backward's row lists (%zu bytes)", bytes);
    return 0;
}

// Grows the attention workspace to the batch (flash: its rows; GEMMs: its longest sequence).
static int attn_workspace(cuda_model *gm, cuda_llm_train *tr) {
    const maye_model_config *c = &gm->cfg;
    size_t need = attn_flash(gm) ? cuda_attention_backward_flash_workspace_bytes(tr->acts.T, tr->acts.T, c->heads,
                                                                                 c->head_dim)
                                 : cuda_attention_backward_workspace_bytes(gm->dt, c->heads, c->kv_heads, c->head_dim,
                                                                           tr->acts.max_len, tr->acts.max_len);
    if (need <= tr->attn_ws_bytes) return 0;
    TRY(cuda_model_sync(gm));
    if (tr->attn_ws) cudaFree(tr->attn_ws);
    tr->attn_ws = NULL, tr->attn_ws_bytes = 0;
    CUDA_TRY(cudaMalloc(&tr->attn_ws, need), "allocating %.3f GB for the attention backward", need / 1e9);
    tr->attn_ws_bytes = need;
    return 0;
}

// ----------------------------------------------------------------------------
// packed backward

int cuda_llm_backward(cuda_model *gm, cuda_llm_train *tr, const cuda_llm_batch *b, const int64_t *targets,
                      float temperature, const float *logprobs, const float *dlogprobs) {
    const maye_model_config *c = &gm->cfg;
    const cuda_weights *w = &gm->w;
    cuda_llm_acts *a = &tr->acts;
    cuda_dtype dt = gm->dt;
    cuda_stream s = gm->stream;
    int T = b->T, C = c->hidden, L = c->layers;
    size_t es = gm_es(gm);
    CHECK_OR_FAIL(a->T == T && a->B == b->B && T >= 1, "the batch has %d tokens in %d sequences but the last forward "
                  "ran on %d in %d", T, b->B, a->T, a->B);
    CHECK_OR_FAIL(temperature > 0 && isfinite(temperature), "temperature must be positive (got %g)", temperature);
    for (int t = 0; t < T; t++)
        CHECK_OR_FAIL(targets[t] < c->vocab, "target %d = %lld is outside the vocabulary [0, %d)", t,
                      (long long)targets[t], c->vocab);
    int n_lp = 0, n_ids = 0;
    GmIdleOnReturn idle_on_return{gm};
    gm_phase(gm, "backward");
    gm_mark(gm, "inputs");
    TRY(upload_rows(gm, tr, b, targets, logprobs, dlogprobs, &n_lp, &n_ids));
    TRY(attn_workspace(gm, tr));

    // log-probs -> final hidden states, rows with a gradient only
    gm_mark(gm, "logprobs_grad");
    CUDA_TRY(cudaMemsetAsync(tr->dhid, 0, (size_t)T * C * es, s), "zeroing the hidden-state gradients");
    if (n_lp > 0) {
        TRY(cuda_copy_rows(dt, a->lp_h, C, NULL, dt, a->hidden, C, tr->lp_row, n_lp, C, 0, s));
        TRY(cuda_logprobs_backward(gm->ctx, dt, tr->lp_dh, (float *)tr->g.lm_head, tr->lp_g, tr->lp_lp, a->lp_h,
                                   w->lm_head, tr->lp_tgt, n_lp, C, c->vocab, temperature, tr->lp_rows, tr->lp_vchunk,
                                   tr->lp_scratch, s));
        TRY(cuda_copy_rows(dt, tr->dhid, C, tr->lp_row, CUDA_F32, tr->lp_dh, C, NULL, n_lp, C, 0, s));
    }

    // final norm
    gm_mark(gm, "final_norm_grad");
    CUDA_TRY(cudaMemsetAsync(tr->dres, 0, (size_t)T * C * es, s), "zeroing the residual gradients");
    TRY(cuda_rmsnorm_backward(dt, tr->dres, (float *)tr->g.norm_w, tr->dhid, llm_layer_input(gm, a, L), w->norm_w,
                              a->rstdf, T, C, tr->col_scratch, s));

    // layers, last to first (recomputing each layer's activations from its input when they were not kept)
    for (int l = L - 1; l >= 0; l--) {
        LayerActs la = llm_layer_acts(gm, a, l);
        const void *x_in = llm_layer_input(gm, a, l);
        if (a->keep == 2) {
            gm_phase(gm, "recompute");
            gm_mark(gm, "norm");
            TRY(cuda_rmsnorm_forward(dt, la.ln1, la.rstd1, x_in, gm_layer(gm, w->ln1_w, l, (size_t)C), T, C, c->rms_eps,
                                     s));
            TRY(llm_layer_body(gm, l, x_in, NULL, T, a->cos, a->sin, la, a->act, llm_packed_plan(gm, a, l)));
            gm_phase(gm, "backward");
        }
        if (layer_backward(gm, tr, l, la, x_in) < 0) return maye_fail_ctx("backward of layer %d", l);
    }
    tr->fresh = false; // every layer's projection gradients are written: the next micro-batch adds

    // embeddings: the text rows into the table
    gm_mark(gm, "embed_grad");
    TRY(cuda_embedding_backward((float *)tr->g.embed, tr->emb_ids, tr->emb_starts, tr->emb_rows, n_ids, dt, tr->dres, C,
                                s));
    return 0;
}

// ----------------------------------------------------------------------------
// optimizer

int cuda_llm_clip(cuda_model *gm, cuda_llm_train *tr, double max_norm, double *norm) {
    GmIdleOnReturn idle_on_return{gm};
    gm_phase(gm, "optimizer");
    gm_mark(gm, "grad_norm");
    TRY(settle_fresh(gm, tr));
    TRY(cuda_grad_norm(tr->norm, tr->grads, CUDA_F32, (int64_t)tr->n, tr->clip_scratch, gm->stream));
    TRY(cuda_grad_clip_coef(tr->clip_coef, tr->norm, max_norm, gm->stream)); // applied by cuda_llm_adamw
    tr->clipped = true;
    CUDA_TRY(cudaMemcpyAsync(norm, tr->norm, sizeof(double), cudaMemcpyDeviceToHost, gm->stream),
             "reading the gradient norm");
    return cuda_model_sync(gm);
}

int cuda_llm_adamw(cuda_model *gm, cuda_llm_train *tr, const maye_adamw_hparams *hp, double lr) {
    tr->step++;
    void *llm = gm_at(gm, gm->weights, gm->group_off[MAYE_PARAM_LLM]);
    float *params = gm->master ? gm->master : (float *)llm;
    void *params_bf16 = gm->master ? llm : NULL;
    const float *coef = tr->clipped ? tr->clip_coef : NULL;
    tr->clipped = false;
    GmIdleOnReturn idle_on_return{gm};
    gm_phase(gm, "optimizer");
    gm_mark(gm, "adamw");
    TRY(settle_fresh(gm, tr));
    return cuda_adamw_step(params, params_bf16, tr->grads, CUDA_F32, tr->m, tr->v, (int64_t)tr->n, lr, hp->beta1,
                           hp->beta2, hp->eps, hp->weight_decay, tr->step, coef, gm->stream);
}
