// The Qwen2 language model of Qwen2-VL / Qwen2.5-VL over a packed batch of sequences: embeddings with the
// image features scattered into the image-pad tokens, decoder layers (RMSNorm, GQA attention with q/k/v
// bias and M-RoPE, causal within each sequence; RMSNorm, SiLU-gated MLP), final norm; then full logits or
// chunked log-probs/entropy of given targets. Dimension letters as in model.h.
#include "model/model.h"

#include "core/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ACT_ALIGN 16      // floats: every activation tensor starts on a 64-byte boundary
#define LP_MAX_ROWS 512   // rows per log-prob block
#define LP_VCHUNK 4096    // vocabulary entries per log-prob chunk

// ----------------------------------------------------------------------------
// activations

void maye_llm_acts_init(maye_llm_acts *a, const maye_model_config *c, int T_cap, int max_ctx, int keep) {
    memset(a, 0, sizeof *a);
    if (T_cap < 1) T_cap = 1;
    if (max_ctx < T_cap) max_ctx = T_cap;
    size_t T = (size_t)T_cap, C = (size_t)c->hidden, HD = (size_t)c->heads * c->head_dim;
    size_t KVD = (size_t)c->kv_heads * c->head_dim, I = (size_t)c->intermediate, H = (size_t)c->heads;
    size_t Lk = keep == 1 ? (size_t)c->layers : 1;
    a->T_cap = T_cap, a->max_ctx = max_ctx, a->keep = keep, a->n_kept = (int)Lk;
    a->lp_rows = T_cap < LP_MAX_ROWS ? T_cap : LP_MAX_ROWS;
    a->lp_vchunk = c->vocab < LP_VCHUNK ? c->vocab : LP_VCHUNK;
    size_t attn = attention_scratch_floats(max_ctx), lp = logprobs_scratch_floats(a->lp_rows, a->lp_vchunk);
    a->scratch_n = attn > lp ? attn : lp;
    float *lp_tgt;
    struct {
        float **ptr;
        size_t n;
    } table[] = {
        {&a->embeds, T * C},
        {&a->resid, (keep ? (size_t)c->layers + 1 : 1) * T * C},
        {&a->cos, T * (size_t)(c->head_dim / 2)},
        {&a->sin, T * (size_t)(c->head_dim / 2)},
        {&a->ln1, Lk * T * C},
        {&a->rstd1, Lk * T},
        {&a->q, Lk * T * HD},
        {&a->k, Lk * T * KVD},
        {&a->v, Lk * T * KVD},
        {&a->att, Lk * T * HD},
        {&a->lse, Lk * T * H},
        {&a->h, Lk * T * C},
        {&a->ln2, Lk * T * C},
        {&a->rstd2, Lk * T},
        {&a->gate, Lk * T * I},
        {&a->up, Lk * T * I},
        {&a->act, Lk * T * I},
        {&a->hidden, T * C},
        {&a->rstdf, T},
        {&a->scratch, a->scratch_n},
        {&a->lp_in, (size_t)a->lp_rows * C},
        {&a->lp_out, 2 * (size_t)a->lp_rows},
        {&lp_tgt, 2 * (size_t)a->lp_rows},
    };
    size_t n = 0;
    for (size_t i = 0; i < sizeof table / sizeof *table; i++) n += (table[i].n + ACT_ALIGN - 1) / ACT_ALIGN * ACT_ALIGN;
    void *mem = NULL;
    if (posix_memalign(&mem, 64, n * sizeof(float)) != 0)
        maye_die("out of memory: %.2f GB of activations for %d tokens", n * 4.0 / 1e9, T_cap);
    a->memory = mem;
    a->n_floats = n;
    size_t off = 0;
    for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
        *table[i].ptr = a->memory + off;
        off += (table[i].n + ACT_ALIGN - 1) / ACT_ALIGN * ACT_ALIGN;
    }
    a->lp_tgt = (int64_t *)lp_tgt;
}

void maye_llm_acts_free(maye_llm_acts *a) {
    free(a->memory);
    memset(a, 0, sizeof *a);
}

maye_llm_layer_acts maye_llm_acts_layer(const maye_llm_acts *a, const maye_model_config *c, int l) {
    size_t s = a->keep == 1 ? (size_t)l : 0, T = (size_t)a->T_cap, C = (size_t)c->hidden;
    size_t HD = (size_t)c->heads * c->head_dim, KVD = (size_t)c->kv_heads * c->head_dim, I = (size_t)c->intermediate;
    maye_llm_layer_acts la = {
        .ln1 = a->ln1 + s * T * C,
        .rstd1 = a->rstd1 + s * T,
        .q = a->q + s * T * HD,
        .k = a->k + s * T * KVD,
        .v = a->v + s * T * KVD,
        .att = a->att + s * T * HD,
        .lse = a->lse + s * T * (size_t)c->heads,
        .h = a->h + s * T * C,
        .ln2 = a->ln2 + s * T * C,
        .rstd2 = a->rstd2 + s * T,
        .gate = a->gate + s * T * I,
        .up = a->up + s * T * I,
        .act = a->act + s * T * I,
    };
    return la;
}

// ----------------------------------------------------------------------------
// one decoder layer

void maye_llm_layer_forward(const maye_model *m, int l, const float *x_in, float *x_out, int T, const float *cos,
                            const float *sin, const maye_kv_view *kv, const maye_llm_layer_acts *la, float *scratch,
                            size_t scratch_n) {
    const maye_model_config *c = &m->cfg;
    const maye_weights *w = &m->w;
    int C = c->hidden, H = c->heads, KV = c->kv_heads, D = c->head_dim, HD = H * D, KVD = KV * D,
        I = c->intermediate;
    size_t L = (size_t)l;

    // attention: h = x + o_proj(attn(rope(q), rope(k), v))
    rmsnorm_forward(la->ln1, la->rstd1, x_in, w->ln1_w + L * C, T, C, c->rms_eps);
    matmul_forward(la->q, la->ln1, w->q_w + L * HD * C, w->q_b + L * HD, T, C, HD);
    matmul_forward(la->k, la->ln1, w->k_w + L * KVD * C, w->k_b + L * KVD, T, C, KVD);
    matmul_forward(la->v, la->ln1, w->v_w + L * KVD * C, w->v_b + L * KVD, T, C, KVD);
    rope_forward(la->q, cos, sin, T, H, D, HD);
    rope_forward(la->k, cos, sin, T, KV, D, KVD);
    int *nk = xmalloc(sizeof(int) * (size_t)(kv->B ? kv->B : 1));
    for (int b = 0; b < kv->B; b++) {
        int nq = kv->cu_q[b + 1] - kv->cu_q[b], past = kv->n_past ? kv->n_past[b] : 0;
        float *kd = kv->k[b] + (size_t)past * KVD, *vd = kv->v[b] + (size_t)past * KVD;
        const float *ks = la->k + (size_t)kv->cu_q[b] * KVD, *vs = la->v + (size_t)kv->cu_q[b] * KVD;
        if (kd != ks) memcpy(kd, ks, sizeof(float) * (size_t)nq * KVD);
        if (vd != vs) memcpy(vd, vs, sizeof(float) * (size_t)nq * KVD);
        nk[b] = past + nq;
    }
    attention_forward(la->att, HD, la->lse, la->q, HD, (const float *const *)kv->k, (const float *const *)kv->v, KVD,
                      kv->cu_q, nk, kv->B, H, KV, D, 1, scratch, scratch_n);
    free(nk);
    matmul_forward(la->h, la->att, w->o_w + L * C * HD, NULL, T, HD, C);
    residual_forward(la->h, la->h, x_in, (int64_t)T * C);

    // MLP: x_out = h + down(silu(gate(n)) * up(n))
    rmsnorm_forward(la->ln2, la->rstd2, la->h, w->ln2_w + L * C, T, C, c->rms_eps);
    matmul_forward(la->gate, la->ln2, w->gate_w + L * I * C, NULL, T, C, I);
    matmul_forward(la->up, la->ln2, w->up_w + L * I * C, NULL, T, C, I);
    gated_activation_forward(la->act, la->gate, la->up, (int64_t)T * I, ACT_SILU);
    matmul_forward(x_out, la->act, w->down_w + L * C * I, NULL, T, I, C);
    residual_forward(x_out, x_out, la->h, (int64_t)T * C);
}

// ----------------------------------------------------------------------------
// packed forward

int maye_llm_batch_check(const maye_model_config *c, const maye_llm_batch *b) {
    CHECK_OR_FAIL(b->cu_seqlens[0] == 0 && b->cu_seqlens[b->B] == b->T,
                  "cu_seqlens must start at 0 and end at T = %d (got %d .. %d)", b->T, b->cu_seqlens[0],
                  b->cu_seqlens[b->B]);
    for (int s = 0; s < b->B; s++)
        CHECK_OR_FAIL(b->cu_seqlens[s + 1] >= b->cu_seqlens[s], "cu_seqlens decreases at sequence %d", s);
    int64_t n_img = 0;
    for (int s = 0; s < b->B; s++)
        for (int t = b->cu_seqlens[s]; t < b->cu_seqlens[s + 1]; t++) {
            CHECK_OR_FAIL(b->ids[t] >= 0 && b->ids[t] < c->vocab,
                          "input_ids[%d] = %lld is outside the vocabulary [0, %d)", t, (long long)b->ids[t], c->vocab);
            n_img += maye_llm_image_row(c, b, s, t);
        }
    CHECK_OR_FAIL(n_img == b->n_image_embeds, "the batch has %lld image-pad tokens (id %lld) but %lld image feature "
                  "rows; each image of grid (t, h, w) needs t*h*w/%d pad tokens", (long long)n_img,
                  (long long)c->image_token_id, (long long)b->n_image_embeds, c->vision.merge * c->vision.merge);
    return 0;
}

static int check_batch(const maye_model_config *c, const maye_llm_batch *b, const maye_llm_acts *a) {
    CHECK_OR_FAIL(b->B >= 1 && b->T >= 0, "a batch needs at least one sequence (B = %d, T = %d)", b->B, b->T);
    CHECK_OR_FAIL(b->T <= a->T_cap, "the batch has %d tokens but the activations were sized for %d", b->T, a->T_cap);
    TRY(maye_llm_batch_check(c, b));
    CHECK_OR_FAIL(b->n_image_embeds == 0 || b->image_embeds, "image features are missing");
    return 0;
}

int maye_llm_forward(const maye_model *m, const maye_llm_batch *b, maye_llm_acts *a) {
    const maye_model_config *c = &m->cfg;
    TRY(check_batch(c, b, a));
    int T = b->T, C = c->hidden, KVD = c->kv_heads * c->head_dim;
    size_t TC = (size_t)a->T_cap * C;
    a->T = T;

    embedding_forward(a->embeds, b->ids, m->w.embed, T, C);
    int64_t row = 0;
    for (int s = 0; s < b->B; s++)
        for (int t = b->cu_seqlens[s]; t < b->cu_seqlens[s + 1]; t++)
            if (maye_llm_image_row(c, b, s, t))
                memcpy(a->embeds + (size_t)t * C, b->image_embeds + (size_t)(row++) * C, sizeof(float) * (size_t)C);
    maye_mrope_tables(c, b->pos, T, T, a->cos, a->sin);
    memcpy(a->resid, a->embeds, sizeof(float) * (size_t)T * C);

    float **k = xmalloc(sizeof(float *) * (size_t)b->B), **v = xmalloc(sizeof(float *) * (size_t)b->B);
    maye_kv_view kv = {b->B, b->cu_seqlens, NULL, k, v};
    float *x = a->resid;
    for (int l = 0; l < c->layers; l++) {
        maye_llm_layer_acts la = maye_llm_acts_layer(a, c, l);
        for (int s = 0; s < b->B; s++) {
            k[s] = la.k + (size_t)b->cu_seqlens[s] * KVD;
            v[s] = la.v + (size_t)b->cu_seqlens[s] * KVD;
        }
        float *out = a->keep ? a->resid + (size_t)(l + 1) * TC : a->resid;
        maye_llm_layer_forward(m, l, x, out, T, a->cos, a->sin, &kv, &la, a->scratch, a->scratch_n);
        x = out;
    }
    free(k);
    free(v);
    rmsnorm_forward(a->hidden, a->rstdf, x, m->w.norm_w, T, C, c->rms_eps);
    return 0;
}

// ----------------------------------------------------------------------------
// logits and log-probs

void maye_llm_logits(const maye_model *m, const float *hidden, int N, float *logits) {
    matmul_forward(logits, hidden, m->w.lm_head, NULL, N, m->cfg.hidden, m->cfg.vocab);
}

void maye_next_token_targets(const maye_llm_batch *b, int64_t *targets) {
    for (int s = 0; s < b->B; s++)
        for (int t = b->cu_seqlens[s]; t < b->cu_seqlens[s + 1]; t++)
            targets[t] = t + 1 < b->cu_seqlens[s + 1] ? b->ids[t + 1] : -1;
}

// Log-probs of the n gathered rows in a->lp_in, scattered back to their rows.
static void logprob_block(const maye_model *m, maye_llm_acts *a, const int *rows, int n, float temperature,
                          float *logprobs, float *entropy) {
    float *lp = a->lp_out, *ent = a->lp_out + a->lp_rows;
    logprobs_forward(lp, ent, a->lp_in, m->w.lm_head, a->lp_tgt, n, m->cfg.hidden, m->cfg.vocab, temperature,
                     a->lp_rows, a->lp_vchunk, a->scratch);
    for (int i = 0; i < n; i++) {
        logprobs[rows[i]] = lp[i];
        if (entropy) entropy[rows[i]] = ent[i];
    }
}

int maye_llm_logprobs(const maye_model *m, maye_llm_acts *a, const int64_t *targets, float temperature,
                      float *logprobs, float *entropy) {
    int C = m->cfg.hidden;
    CHECK_OR_FAIL(temperature > 0 && isfinite(temperature), "temperature must be positive (got %g)", temperature);
    for (int t = 0; t < a->T; t++)
        CHECK_OR_FAIL(targets[t] < m->cfg.vocab, "target %d = %lld is outside the vocabulary [0, %d)", t,
                      (long long)targets[t], m->cfg.vocab);
    int *rows = xmalloc(sizeof(int) * (size_t)a->lp_rows);
    int n = 0;
    for (int t = 0; t < a->T; t++) {
        logprobs[t] = 0;
        if (entropy) entropy[t] = 0;
        if (targets[t] < 0) continue;
        memcpy(a->lp_in + (size_t)n * C, a->hidden + (size_t)t * C, sizeof(float) * (size_t)C);
        a->lp_tgt[n] = targets[t];
        rows[n++] = t;
        if (n == a->lp_rows) {
            logprob_block(m, a, rows, n, temperature, logprobs, entropy);
            n = 0;
        }
    }
    if (n) logprob_block(m, a, rows, n, temperature, logprobs, entropy);
    free(rows);
    return 0;
}
