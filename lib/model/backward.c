// Backward of the language model over a packed batch, and the gradient buffer of the trained weights.
// The chain, from the loss back to the embeddings:
//   dL/dlogprob -> chunked log-softmax backward (lm_head gradient, final hidden states) -> final RMSNorm ->
//   per layer, last to first: down_proj, SiLU gate, gate/up_proj, RMSNorm, o_proj, causal GQA attention,
//   M-RoPE, q/k/v projections with bias, RMSNorm, each adding to the residual stream's gradient ->
//   embedding rows of text tokens, and the image features' gradient for the vision backward.
// With recomputation (activations kept with keep = 2) each layer's forward runs again from its kept input
// into the shared slices just before its backward. Dimension letters as in model.h and backward.h.
#include "model/backward.h"

#include "core/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GRAD_ALIGN 16 // floats: each group's range is rounded as maye_model.params rounds its tensors
#define WS_ALIGN 16   // floats: every workspace tensor starts on a 64-byte boundary

// ----------------------------------------------------------------------------
// gradient buffer

unsigned maye_train_groups(bool train_llm, bool train_connector, bool train_vit) {
    return (train_vit ? 1u << MAYE_PARAM_VISION : 0) | (train_connector ? 1u << MAYE_PARAM_MERGER : 0) |
           (train_llm ? 1u << MAYE_PARAM_LLM : 0);
}

void maye_grads_init(maye_grads *g, const maye_model *m, unsigned groups) {
    memset(g, 0, sizeof *g);
    g->groups = groups;
    size_t n = 0;
    for (int grp = MAYE_PARAM_VISION; grp <= MAYE_PARAM_LLM; grp++) {
        g->shift[grp] = -1;
        if (!(groups & (1u << grp))) continue;
        size_t begin, len = maye_model_group_range(m, (maye_param_group)grp, &begin);
        g->shift[grp] = (int64_t)n - (int64_t)begin;
        n += (len + GRAD_ALIGN - 1) / GRAD_ALIGN * GRAD_ALIGN;
    }
    g->n_floats = n;
    void *mem = NULL;
    if (posix_memalign(&mem, 64, (n ? n : 1) * sizeof(float)) != 0)
        maye_die("out of memory: %.2f GB of gradients", n * 4.0 / 1e9);
    g->memory = mem;
    maye_grads_zero(g);
    for (int i = 0; i < m->n_specs; i++) {
        const maye_param *p = &m->specs[i];
        if (!(groups & (1u << p->group))) continue;
        *(float **)((char *)&g->g + p->field) = g->memory + (int64_t)p->offset + g->shift[p->group];
    }
    if (m->cfg.tie_embeddings) g->g.lm_head = g->g.embed;
}

void maye_grads_free(maye_grads *g) {
    free(g->memory);
    memset(g, 0, sizeof *g);
}

void maye_grads_zero(maye_grads *g) {
#pragma omp parallel for schedule(static) if (g->n_floats > 65536)
    for (size_t i = 0; i < g->n_floats; i++) g->memory[i] = 0.0f;
}

int maye_grads_optim_table(const maye_grads *g, const maye_model *m, maye_optim_tensor **out) {
    int n = 0;
    for (int i = 0; i < m->n_specs; i++) n += m->specs[i].count;
    maye_optim_tensor *t = xcalloc((size_t)(n ? n : 1), sizeof *t);
    int k = 0;
    for (int i = 0; i < m->n_specs; i++) {
        const maye_param *p = &m->specs[i];
        bool trained = g->groups & (1u << p->group);
        for (int c = 0; c < p->count; c++, k++) {
            char name[160];
            snprintf(name, sizeof name, p->hub, c);
            int64_t off = (int64_t)(p->offset + (size_t)c * p->numel);
            t[k] = (maye_optim_tensor){.name = xstrdup(name), .offset = off, .numel = (int64_t)p->numel,
                                       .trainable = trained, .grad_offset = trained ? off + g->shift[p->group] : 0};
        }
    }
    *out = t;
    return n;
}

void maye_optim_table_free(maye_optim_tensor *t, int n) {
    for (int i = 0; i < n; i++) free((char *)t[i].name);
    free(t);
}

// ----------------------------------------------------------------------------
// training state of the language model

void maye_llm_train_init(maye_llm_train *tr, const maye_model_config *c, int T_cap, bool recompute) {
    memset(tr, 0, sizeof *tr);
    if (T_cap < 1) T_cap = 1;
    maye_llm_acts_init(&tr->acts, c, T_cap, 0, recompute ? 2 : 1);
    size_t T = (size_t)T_cap, C = (size_t)c->hidden, HD = (size_t)c->heads * c->head_dim;
    size_t KVD = (size_t)c->kv_heads * c->head_dim, I = (size_t)c->intermediate, R = (size_t)tr->acts.lp_rows;
    size_t attn = attention_backward_scratch_floats(T_cap, T_cap, c->heads, c->head_dim);
    size_t lp = logprobs_backward_scratch_floats(tr->acts.lp_rows, tr->acts.lp_vchunk);
    tr->scratch_n = attn > lp ? attn : lp;
    struct {
        float **ptr;
        size_t n;
    } table[] = {
        {&tr->dres, T * C},   {&tr->dln, T * C},   {&tr->dhid, T * C},  {&tr->xout, recompute ? T * C : 0},
        {&tr->datt, T * HD},  {&tr->dq, T * HD},   {&tr->dk, T * KVD},  {&tr->dv, T * KVD},
        {&tr->dgate, T * I},  {&tr->dup, T * I},   {&tr->dact, T * I},  {&tr->lp_h, R * C},
        {&tr->lp_dh, R * C},  {&tr->lp_lp, R},     {&tr->lp_g, R},      {&tr->scratch, tr->scratch_n},
    };
    size_t n = 0;
    for (size_t i = 0; i < sizeof table / sizeof *table; i++) n += (table[i].n + WS_ALIGN - 1) / WS_ALIGN * WS_ALIGN;
    void *mem = NULL;
    if (posix_memalign(&mem, 64, (n ? n : 1) * sizeof(float)) != 0)
        maye_die("out of memory: %.2f GB of backward workspace for %d tokens", n * 4.0 / 1e9, T_cap);
    tr->memory = mem;
    tr->n_floats = n;
    size_t off = 0;
    for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
        *table[i].ptr = tr->memory + off;
        off += (table[i].n + WS_ALIGN - 1) / WS_ALIGN * WS_ALIGN;
    }
    tr->lp_tgt = xmalloc(sizeof(int64_t) * R);
    tr->lp_row = xmalloc(sizeof(int) * R);
    tr->ids = xmalloc(sizeof(int64_t) * T);
}

void maye_llm_train_free(maye_llm_train *tr) {
    maye_llm_acts_free(&tr->acts);
    free(tr->memory), free(tr->lp_tgt), free(tr->lp_row), free(tr->ids);
    memset(tr, 0, sizeof *tr);
}

// ----------------------------------------------------------------------------
// one decoder layer

static void zero(float *x, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) x[i] = 0.0f;
}

// The gradient of layer l's weight `f` at offset `off`, or NULL when it is frozen.
#define GW(f, off) (g->g.f ? g->g.f + (off) : NULL)

// tr->dres holds dL/dx_out on entry and dL/dx_in on return. kv: the layer's keys/values per sequence.
static void layer_backward(const maye_model *m, int l, maye_llm_train *tr, const maye_llm_layer_acts *la,
                           const float *x_in, int T, const maye_kv_view *kv, maye_grads *g) {
    const maye_model_config *c = &m->cfg;
    const maye_weights *w = &m->w;
    const maye_llm_acts *a = &tr->acts;
    int C = c->hidden, H = c->heads, KV = c->kv_heads, D = c->head_dim, HD = H * D, KVD = KV * D,
        I = c->intermediate;
    size_t L = (size_t)l, TC = (size_t)T * C, TI = (size_t)T * I;

    // MLP: x_out = h + down(silu(gate(n)) * up(n)), n = rmsnorm(h)
    zero(tr->dact, TI);
    matmul_backward(tr->dact, GW(down_w, L * C * I), NULL, tr->dres, la->act, w->down_w + L * C * I, T, I, C);
    zero(tr->dgate, TI), zero(tr->dup, TI);
    gated_activation_backward(tr->dgate, tr->dup, tr->dact, la->gate, la->up, (int64_t)TI, ACT_SILU);
    zero(tr->dln, TC);
    matmul_backward(tr->dln, GW(gate_w, L * I * C), NULL, tr->dgate, la->ln2, w->gate_w + L * I * C, T, C, I);
    matmul_backward(tr->dln, GW(up_w, L * I * C), NULL, tr->dup, la->ln2, w->up_w + L * I * C, T, C, I);
    rmsnorm_backward(tr->dres, GW(ln2_w, L * C), tr->dln, la->h, w->ln2_w + L * C, la->rstd2, T, C);

    // attention: h = x + o_proj(attn(rope(q), rope(k), v)), q/k/v = proj(rmsnorm(x))
    zero(tr->datt, (size_t)T * HD);
    matmul_backward(tr->datt, GW(o_w, L * C * HD), NULL, tr->dres, la->att, w->o_w + L * C * HD, T, HD, C);
    zero(tr->dq, (size_t)T * HD), zero(tr->dk, (size_t)T * KVD), zero(tr->dv, (size_t)T * KVD);
    int B = kv->B;
    float **dk = xmalloc(sizeof(float *) * (size_t)B), **dv = xmalloc(sizeof(float *) * (size_t)B);
    int *nk = xmalloc(sizeof(int) * (size_t)B);
    for (int s = 0; s < B; s++) {
        dk[s] = tr->dk + (size_t)kv->cu_q[s] * KVD;
        dv[s] = tr->dv + (size_t)kv->cu_q[s] * KVD;
        nk[s] = kv->cu_q[s + 1] - kv->cu_q[s];
    }
    attention_backward(tr->dq, dk, dv, tr->datt, HD, la->q, HD, (const float *const *)kv->k,
                       (const float *const *)kv->v, KVD, la->lse, kv->cu_q, nk, B, H, KV, D, 1, tr->scratch,
                       tr->scratch_n);
    free(dk), free(dv), free(nk);
    rope_backward(tr->dq, a->cos, a->sin, T, H, D, HD);
    rope_backward(tr->dk, a->cos, a->sin, T, KV, D, KVD);
    zero(tr->dln, TC);
    matmul_backward(tr->dln, GW(q_w, L * HD * C), GW(q_b, L * HD), tr->dq, la->ln1, w->q_w + L * HD * C, T, C, HD);
    matmul_backward(tr->dln, GW(k_w, L * KVD * C), GW(k_b, L * KVD), tr->dk, la->ln1, w->k_w + L * KVD * C, T, C,
                    KVD);
    matmul_backward(tr->dln, GW(v_w, L * KVD * C), GW(v_b, L * KVD), tr->dv, la->ln1, w->v_w + L * KVD * C, T, C,
                    KVD);
    rmsnorm_backward(tr->dres, GW(ln1_w, L * C), tr->dln, x_in, w->ln1_w + L * C, la->rstd1, T, C);
}

// ----------------------------------------------------------------------------
// log-probs

// The log-prob backward of the n gathered rows, their hidden-state gradients added to tr->dhid.
static void logprob_block_backward(const maye_model *m, maye_llm_train *tr, int n, float temperature,
                                   maye_grads *g) {
    int C = m->cfg.hidden;
    zero(tr->lp_dh, (size_t)n * C);
    logprobs_backward(tr->lp_dh, g->g.lm_head, tr->lp_g, tr->lp_lp, tr->lp_h, m->w.lm_head, tr->lp_tgt, n, C,
                      m->cfg.vocab, temperature, tr->acts.lp_rows, tr->acts.lp_vchunk, tr->scratch);
    for (int i = 0; i < n; i++) {
        float *d = tr->dhid + (size_t)tr->lp_row[i] * C;
        const float *s = tr->lp_dh + (size_t)i * C;
        for (int j = 0; j < C; j++) d[j] += s[j];
    }
}

// ----------------------------------------------------------------------------
// packed backward

int maye_llm_backward(const maye_model *m, maye_llm_train *tr, const maye_llm_batch *b, const int64_t *targets,
                      float temperature, const float *logprobs, const float *dlogprobs, maye_grads *g,
                      float *dimage_embeds) {
    const maye_model_config *c = &m->cfg;
    maye_llm_acts *a = &tr->acts;
    int T = b->T, C = c->hidden, KVD = c->kv_heads * c->head_dim, R = a->lp_rows;
    size_t TC = (size_t)a->T_cap * C;
    CHECK_OR_FAIL(a->keep == 1 || a->keep == 2, "the backward needs activations made by maye_llm_train_init");
    CHECK_OR_FAIL(a->T == T && T <= a->T_cap, "the batch has %d tokens but the last forward ran on %d", T, a->T);
    CHECK_OR_FAIL(temperature > 0 && isfinite(temperature), "temperature must be positive (got %g)", temperature);
    for (int t = 0; t < T; t++)
        CHECK_OR_FAIL(targets[t] < c->vocab, "target %d = %lld is outside the vocabulary [0, %d)", t,
                      (long long)targets[t], c->vocab);

    // log-probs -> final hidden states, rows with a gradient only
    zero(tr->dhid, (size_t)T * C);
    int n = 0;
    for (int t = 0; t < T; t++) {
        if (targets[t] < 0 || dlogprobs[t] == 0.0f) continue;
        memcpy(tr->lp_h + (size_t)n * C, a->hidden + (size_t)t * C, sizeof(float) * (size_t)C);
        tr->lp_tgt[n] = targets[t], tr->lp_lp[n] = logprobs[t], tr->lp_g[n] = dlogprobs[t], tr->lp_row[n] = t;
        if (++n == R) {
            logprob_block_backward(m, tr, n, temperature, g);
            n = 0;
        }
    }
    if (n) logprob_block_backward(m, tr, n, temperature, g);

    // final norm
    zero(tr->dres, (size_t)T * C);
    rmsnorm_backward(tr->dres, g->g.norm_w, tr->dhid, a->resid + (size_t)c->layers * TC, m->w.norm_w, a->rstdf, T,
                     C);

    // layers, last to first
    float **k = xmalloc(sizeof(float *) * (size_t)b->B), **v = xmalloc(sizeof(float *) * (size_t)b->B);
    maye_kv_view kv = {b->B, b->cu_seqlens, NULL, k, v};
    for (int l = c->layers - 1; l >= 0; l--) {
        maye_llm_layer_acts la = maye_llm_acts_layer(a, c, l);
        for (int s = 0; s < b->B; s++) {
            k[s] = la.k + (size_t)b->cu_seqlens[s] * KVD;
            v[s] = la.v + (size_t)b->cu_seqlens[s] * KVD;
        }
        const float *x_in = a->resid + (size_t)l * TC;
        if (a->keep == 2)
            maye_llm_layer_forward(m, l, x_in, tr->xout, T, a->cos, a->sin, &kv, &la, a->scratch, a->scratch_n);
        layer_backward(m, l, tr, &la, x_in, T, &kv, g);
    }
    free(k), free(v);

    // embeddings: text tokens into the table, image-pad rows to the image features
    int64_t row = 0;
    for (int s = 0; s < b->B; s++)
        for (int t = b->cu_seqlens[s]; t < b->cu_seqlens[s + 1]; t++) {
            int img = maye_llm_image_row(c, b, s, t) && row < b->n_image_embeds;
            tr->ids[t] = img ? -1 : b->ids[t];
            if (img && dimage_embeds)
                memcpy(dimage_embeds + (size_t)row * C, tr->dres + (size_t)t * C, sizeof(float) * (size_t)C);
            row += img;
        }
    if (g->g.embed) embedding_backward(g->g.embed, tr->ids, tr->dres, T, C);
    return 0;
}
