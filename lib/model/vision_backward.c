// Backward of the vision tower and patch merger, for update.train_vit / update.train_connector. The training
// forward repeats maye_vision_forward step for step with the same kernels (its output is bit-identical) but
// keeps what the backward needs: every block's input, norms with their statistics, q/k/v after rotary and
// the attention log-sum-exp, the MLP before and after its activation, and the merger's hidden states. With
// recomputation only the block inputs are kept and each block runs again just before its backward.
// The backward walks back from the merged tokens' gradient (in the images' pad-token order): merger
// (Linear-GELU-Linear over M concatenated patches, norm), blocks last to first (MLP, norm, projection,
// bidirectional attention per frame or window, 2-D rotary, qkv, norm), the inverse of the window reordering,
// and the patch embedding. Dimension letters as in model.h, plus S attention segments and U = P / M merged
// units.
#include "model/backward.h"

#include "core/error.h"

#include <stdlib.h>
#include <string.h>

#define VISION_EPS 1e-6f // the tower's and merger's norm epsilon (as maye_vision_forward)
#define WS_ALIGN 16      // floats: every tensor starts on a 64-byte boundary

// ----------------------------------------------------------------------------
// state

void maye_vision_train_init(maye_vision_train *vt, const maye_model_config *c, int64_t P_cap, bool recompute) {
    memset(vt, 0, sizeof *vt);
    if (P_cap < 1) P_cap = 1;
    int q25 = c->arch == MAYE_ARCH_QWEN2_5_VL;
    size_t P = (size_t)P_cap, VC = (size_t)c->vision.width, VI = (size_t)c->vision.intermediate;
    size_t VH = (size_t)c->vision.heads, VD = (size_t)c->vision.head_dim, M = (size_t)c->vision.merge * c->vision.merge;
    size_t U = P / M + 1, MVC = M * VC, C = (size_t)c->hidden, VL = (size_t)c->vision.depth;
    size_t K = recompute ? 1 : VL;
    vt->recompute = recompute, vt->n_kept = (int)K, vt->P_cap = P_cap;
    size_t fwd = attention_scratch_floats((int)P_cap);
    size_t bwd = attention_backward_scratch_floats(P_cap, (int)P_cap, (int)VH, (int)VD);
    vt->scratch_n = fwd > bwd ? fwd : bwd;
    struct {
        float **ptr;
        size_t n;
    } table[] = {
        {&vt->x, (VL + 1) * P * VC},
        {&vt->n1, K * P * VC},       {&vt->mean1, K * P},          {&vt->rstd1, K * P},
        {&vt->qkv, K * P * 3 * VC},  {&vt->lse, K * P * VH},       {&vt->att, K * P * VC},
        {&vt->h, K * P * VC},        {&vt->n2, K * P * VC},        {&vt->mean2, K * P},
        {&vt->rstd2, K * P},         {&vt->f1, K * P * VI},        {&vt->f2, q25 ? K * P * VI : 0},
        {&vt->fa, K * P * VI},
        {&vt->mn, P * VC},           {&vt->m_mean, P},             {&vt->m_rstd, P},
        {&vt->mh, U * MVC},          {&vt->mg, U * MVC},
        {&vt->cos, P * VD / 2},      {&vt->sin, P * VD / 2},
        {&vt->dx, P * VC},           {&vt->dn, P * VC},            {&vt->datt, P * VC},
        {&vt->dqkv, P * 3 * VC},     {&vt->df1, P * VI},           {&vt->df2, q25 ? P * VI : 0},
        {&vt->dfa, P * VI},          {&vt->dmh, U * MVC},          {&vt->dmg, U * MVC},
        {&vt->dmo, U * C},           {&vt->dpatch, P * VC},        {&vt->xout, recompute ? P * VC : 0},
        {&vt->scratch, vt->scratch_n},
    };
    size_t n = 0;
    for (size_t i = 0; i < sizeof table / sizeof *table; i++) n += (table[i].n + WS_ALIGN - 1) / WS_ALIGN * WS_ALIGN;
    void *mem = NULL;
    if (posix_memalign(&mem, 64, n * sizeof(float)) != 0)
        maye_die("out of memory: %.2f GB of vision activations for %lld patches", n * 4.0 / 1e9, (long long)P_cap);
    vt->memory = mem;
    vt->n_floats = n;
    size_t off = 0;
    for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
        *table[i].ptr = vt->memory + off;
        off += (table[i].n + WS_ALIGN - 1) / WS_ALIGN * WS_ALIGN;
    }
}

void maye_vision_train_free(maye_vision_train *vt) {
    if (vt->P > 0) maye_vision_layout_free(&vt->lo);
    free(vt->memory);
    memset(vt, 0, sizeof *vt);
}

// One block's activations (views), rows in processing order; Qwen2.5-VL (RMSNorm) leaves mean1/mean2 unused.
typedef struct {
    float *n1, *n2;          // (P, VC) normed inputs of attention / MLP
    float *mean1, *rstd1;    // (P)
    float *mean2, *rstd2;    // (P)
    float *qkv;              // (P, 3*VC) after rotary
    float *lse;              // (P, VH)
    float *att;              // (P, VC) attention output before the projection
    float *h;                // (P, VC) residual stream after attention
    float *f1, *f2;          // (P, VI) fc1 (gate) and up (Qwen2.5-VL) before the activation
    float *fa;               // (P, VI) activation output
} block_slices;

// The slices block l uses (block 0's for every block with recompute).
static block_slices block_slices_of(const maye_vision_train *vt, const maye_model_config *c, int l) {
    size_t s = vt->recompute ? 0 : (size_t)l, P = (size_t)vt->P_cap, VC = (size_t)c->vision.width;
    size_t VI = (size_t)c->vision.intermediate, VH = (size_t)c->vision.heads;
    block_slices ba = {
        .n1 = vt->n1 + s * P * VC,       .n2 = vt->n2 + s * P * VC,
        .mean1 = vt->mean1 + s * P,      .rstd1 = vt->rstd1 + s * P,
        .mean2 = vt->mean2 + s * P,      .rstd2 = vt->rstd2 + s * P,
        .qkv = vt->qkv + s * P * 3 * VC, .lse = vt->lse + s * P * VH,
        .att = vt->att + s * P * VC,     .h = vt->h + s * P * VC,
        .f1 = vt->f1 + s * P * VI,       .f2 = vt->f2 + s * P * VI,
        .fa = vt->fa + s * P * VI,
    };
    return ba;
}

// ----------------------------------------------------------------------------
// pieces shared by the forward and the backward

// LayerNorm (Qwen2-VL, with bias) or RMSNorm (Qwen2.5-VL) of P rows.
static void norm_forward(int q25, float *out, float *mean, float *rstd, const float *x, const float *w,
                         const float *b, int P, int VC) {
    if (q25) rmsnorm_forward(out, rstd, x, w, P, VC, VISION_EPS);
    else layernorm_forward(out, mean, rstd, x, w, b, P, VC, VISION_EPS);
}

static void norm_backward(int q25, float *dx, float *dw, float *db, const float *dout, const float *x, const float *w,
                          const float *mean, const float *rstd, int P, int VC) {
    if (q25) rmsnorm_backward(dx, dw, dout, x, w, rstd, P, VC);
    else layernorm_backward(dx, dw, db, dout, x, w, mean, rstd, P, VC);
}

// The attention segments of block l: key/value row pointers into base (P, 3*VC) and key counts.
typedef struct {
    int S;
    const int *cu;  // (S+1)
    float **k, **v; // (S)
    int *nk;        // (S)
} segments;

static segments segments_of(const maye_model_config *c, const maye_vision_layout *lo, int l, float *base) {
    int VC = c->vision.width, full = c->arch != MAYE_ARCH_QWEN2_5_VL || c->vision.full_attention[l];
    segments sg = {full ? lo->n_full : lo->n_win, full ? lo->cu_full : lo->cu_win};
    size_t n = (size_t)(sg.S ? sg.S : 1);
    sg.k = xmalloc(sizeof(float *) * n), sg.v = xmalloc(sizeof(float *) * n), sg.nk = xmalloc(sizeof(int) * n);
    for (int s = 0; s < sg.S; s++) {
        sg.k[s] = base + (size_t)sg.cu[s] * 3 * VC + VC;
        sg.v[s] = base + (size_t)sg.cu[s] * 3 * VC + 2 * VC;
        sg.nk[s] = sg.cu[s + 1] - sg.cu[s];
    }
    return sg;
}

static void segments_free(segments *sg) { free(sg->k), free(sg->v), free(sg->nk); }

// ----------------------------------------------------------------------------
// forward

// Block l from x_in to x_out (P, VC), the activations into ba.
static void block_forward(const maye_model *m, maye_vision_train *vt, int l, const float *x_in, float *x_out,
                          const block_slices *ba) {
    const maye_model_config *c = &m->cfg;
    const maye_weights *w = &m->w;
    int q25 = c->arch == MAYE_ARCH_QWEN2_5_VL, P = (int)vt->P;
    int VC = c->vision.width, VI = c->vision.intermediate, VH = c->vision.heads, VD = c->vision.head_dim;
    size_t L = (size_t)l;

    norm_forward(q25, ba->n1, ba->mean1, ba->rstd1, x_in, w->v_norm1_w + L * VC, q25 ? NULL : w->v_norm1_b + L * VC,
                 P, VC);
    matmul_forward(ba->qkv, ba->n1, w->v_qkv_w + L * 3 * VC * VC, w->v_qkv_b + L * 3 * VC, P, VC, 3 * VC);
    rope_forward(ba->qkv, vt->cos, vt->sin, P, VH, VD, 3 * VC);
    rope_forward(ba->qkv + VC, vt->cos, vt->sin, P, VH, VD, 3 * VC);
    segments sg = segments_of(c, &vt->lo, l, ba->qkv);
    attention_forward(ba->att, VC, ba->lse, ba->qkv, 3 * VC, (const float *const *)sg.k, (const float *const *)sg.v,
                      3 * VC, sg.cu, sg.nk, sg.S, VH, VH, VD, 0, vt->scratch, vt->scratch_n);
    segments_free(&sg);
    matmul_forward(ba->h, ba->att, w->v_proj_w + L * VC * VC, w->v_proj_b + L * VC, P, VC, VC);
    residual_forward(ba->h, ba->h, x_in, (int64_t)P * VC);

    norm_forward(q25, ba->n2, ba->mean2, ba->rstd2, ba->h, w->v_norm2_w + L * VC, q25 ? NULL : w->v_norm2_b + L * VC,
                 P, VC);
    matmul_forward(ba->f1, ba->n2, w->v_fc1_w + L * VI * VC, w->v_fc1_b + L * VI, P, VC, VI);
    if (q25) {
        matmul_forward(ba->f2, ba->n2, w->v_up_w + L * VI * VC, w->v_up_b + L * VI, P, VC, VI);
        gated_activation_forward(ba->fa, ba->f1, ba->f2, (int64_t)P * VI, c->vision.act);
    } else {
        activation_forward(ba->fa, ba->f1, (int64_t)P * VI, c->vision.act);
    }
    matmul_forward(x_out, ba->fa, w->v_fc2_w + L * VC * VI, w->v_fc2_b + L * VC, P, VI, VC);
    residual_forward(x_out, x_out, ba->h, (int64_t)P * VC);
}

int maye_vision_train_forward(const maye_model *m, maye_vision_train *vt, const float *pixels, int64_t P,
                              const int64_t *grid_thw, int n_images, float *out) {
    const maye_model_config *c = &m->cfg;
    const maye_weights *w = &m->w;
    TRY(maye_vision_check(c, P, grid_thw, n_images, NULL));
    CHECK_OR_FAIL(P <= vt->P_cap, "the images have %lld patches but the vision activations were sized for %lld",
                  (long long)P, (long long)vt->P_cap);
    if (vt->P > 0) maye_vision_layout_free(&vt->lo);
    vt->P = P;
    if (P == 0) return 0;
    maye_vision_layout_build(c, grid_thw, n_images, P, &vt->lo);
    int q25 = c->arch == MAYE_ARCH_QWEN2_5_VL, Pi = (int)P, VC = c->vision.width, M = c->vision.merge * c->vision.merge;
    int MVC = M * VC, C = c->hidden, U = Pi / M;
    size_t PVC = (size_t)vt->P_cap * VC;

    // patch embedding, then the rows in processing order
    matmul_forward(vt->dpatch, pixels, w->patch_embed, NULL, Pi, c->vision.patch_dim, VC);
    for (int k = 0; k < U; k++)
        memcpy(vt->x + (size_t)k * MVC, vt->dpatch + (size_t)vt->lo.unit_of[k] * MVC, sizeof(float) * (size_t)MVC);
    vision_rope_cos_sin_forward(vt->cos, vt->sin, vt->lo.hpos, vt->lo.wpos, Pi, c->vision.head_dim);
    for (int l = 0; l < c->vision.depth; l++) {
        block_slices ba = block_slices_of(vt, c, l);
        block_forward(m, vt, l, vt->x + (size_t)l * PVC, vt->x + (size_t)(l + 1) * PVC, &ba);
    }

    // merger
    norm_forward(q25, vt->mn, vt->m_mean, vt->m_rstd, vt->x + (size_t)c->vision.depth * PVC, w->m_norm_w,
                 w->m_norm_b, Pi, VC);
    matmul_forward(vt->mh, vt->mn, w->m_fc1_w, w->m_fc1_b, U, MVC, MVC);
    activation_forward(vt->mg, vt->mh, (int64_t)U * MVC, ACT_GELU);
    matmul_forward(vt->dmo, vt->mg, w->m_fc2_w, w->m_fc2_b, U, MVC, C);
    for (int k = 0; k < U; k++)
        memcpy(out + (size_t)vt->lo.unit_of[k] * C, vt->dmo + (size_t)k * C, sizeof(float) * (size_t)C);
    return 0;
}

// ----------------------------------------------------------------------------
// backward

#define GV(f, off) (g->g.f ? g->g.f + (off) : NULL)

// vt->dx holds dL/dx_out of block l on entry and dL/dx_in on return.
static void block_backward(const maye_model *m, maye_vision_train *vt, int l, const float *x_in,
                           const block_slices *ba, maye_grads *g) {
    const maye_model_config *c = &m->cfg;
    const maye_weights *w = &m->w;
    int q25 = c->arch == MAYE_ARCH_QWEN2_5_VL, P = (int)vt->P;
    int VC = c->vision.width, VI = c->vision.intermediate, VH = c->vision.heads, VD = c->vision.head_dim;
    size_t L = (size_t)l, PVC = (size_t)P * VC, PVI = (size_t)P * VI;

    // MLP: x_out = h + fc2(act(fc1(n)) [* up(n)]), n = norm2(h)
    memset(vt->dfa, 0, sizeof(float) * PVI);
    matmul_backward(vt->dfa, GV(v_fc2_w, L * VC * VI), GV(v_fc2_b, L * VC), vt->dx, ba->fa, w->v_fc2_w + L * VC * VI,
                    P, VI, VC);
    memset(vt->df1, 0, sizeof(float) * PVI);
    memset(vt->dn, 0, sizeof(float) * PVC);
    if (q25) {
        memset(vt->df2, 0, sizeof(float) * PVI);
        gated_activation_backward(vt->df1, vt->df2, vt->dfa, ba->f1, ba->f2, (int64_t)PVI, c->vision.act);
        matmul_backward(vt->dn, GV(v_up_w, L * VI * VC), GV(v_up_b, L * VI), vt->df2, ba->n2,
                        w->v_up_w + L * VI * VC, P, VC, VI);
    } else {
        activation_backward(vt->df1, vt->dfa, ba->f1, (int64_t)PVI, c->vision.act);
    }
    matmul_backward(vt->dn, GV(v_fc1_w, L * VI * VC), GV(v_fc1_b, L * VI), vt->df1, ba->n2, w->v_fc1_w + L * VI * VC,
                    P, VC, VI);
    norm_backward(q25, vt->dx, GV(v_norm2_w, L * VC), GV(v_norm2_b, L * VC), vt->dn, ba->h, w->v_norm2_w + L * VC,
                  ba->mean2, ba->rstd2, P, VC);

    // attention: h = x + proj(attn(rope(q), rope(k), v)), qkv = qkv(norm1(x))
    memset(vt->datt, 0, sizeof(float) * PVC);
    matmul_backward(vt->datt, GV(v_proj_w, L * VC * VC), GV(v_proj_b, L * VC), vt->dx, ba->att,
                    w->v_proj_w + L * VC * VC, P, VC, VC);
    memset(vt->dqkv, 0, sizeof(float) * 3 * PVC);
    segments sg = segments_of(c, &vt->lo, l, ba->qkv), dsg = segments_of(c, &vt->lo, l, vt->dqkv);
    attention_backward(vt->dqkv, dsg.k, dsg.v, vt->datt, VC, ba->qkv, 3 * VC, (const float *const *)sg.k,
                       (const float *const *)sg.v, 3 * VC, ba->lse, sg.cu, sg.nk, sg.S, VH, VH, VD, 0, vt->scratch,
                       vt->scratch_n);
    segments_free(&sg), segments_free(&dsg);
    rope_backward(vt->dqkv, vt->cos, vt->sin, P, VH, VD, 3 * VC);
    rope_backward(vt->dqkv + VC, vt->cos, vt->sin, P, VH, VD, 3 * VC);
    memset(vt->dn, 0, sizeof(float) * PVC);
    matmul_backward(vt->dn, GV(v_qkv_w, L * 3 * VC * VC), GV(v_qkv_b, L * 3 * VC), vt->dqkv, ba->n1,
                    w->v_qkv_w + L * 3 * VC * VC, P, VC, 3 * VC);
    norm_backward(q25, vt->dx, GV(v_norm1_w, L * VC), GV(v_norm1_b, L * VC), vt->dn, x_in, w->v_norm1_w + L * VC,
                  ba->mean1, ba->rstd1, P, VC);
}

int maye_vision_backward(const maye_model *m, maye_vision_train *vt, const float *pixels, const float *dout,
                         maye_grads *g) {
    const maye_model_config *c = &m->cfg;
    const maye_weights *w = &m->w;
    if (vt->P == 0) return 0;
    CHECK_OR_FAIL(dout, "the vision backward needs the image features' gradient (maye_llm_backward's dimage_embeds)");
    int q25 = c->arch == MAYE_ARCH_QWEN2_5_VL, P = (int)vt->P, VC = c->vision.width;
    int M = c->vision.merge * c->vision.merge, MVC = M * VC, C = c->hidden, U = P / M, VL = c->vision.depth;
    size_t PVC = (size_t)vt->P_cap * VC;

    // merger: out = fc2(gelu(fc1(norm(x) as (U, M*VC)))), rows in the images' order
    for (int k = 0; k < U; k++)
        memcpy(vt->dmo + (size_t)k * C, dout + (size_t)vt->lo.unit_of[k] * C, sizeof(float) * (size_t)C);
    memset(vt->dmg, 0, sizeof(float) * (size_t)U * MVC);
    matmul_backward(vt->dmg, g->g.m_fc2_w, g->g.m_fc2_b, vt->dmo, vt->mg, w->m_fc2_w, U, MVC, C);
    memset(vt->dmh, 0, sizeof(float) * (size_t)U * MVC);
    activation_backward(vt->dmh, vt->dmg, vt->mh, (int64_t)U * MVC, ACT_GELU);
    memset(vt->dn, 0, sizeof(float) * (size_t)P * VC);
    matmul_backward(vt->dn, g->g.m_fc1_w, g->g.m_fc1_b, vt->dmh, vt->mn, w->m_fc1_w, U, MVC, MVC);
    memset(vt->dx, 0, sizeof(float) * (size_t)P * VC);
    norm_backward(q25, vt->dx, g->g.m_norm_w, g->g.m_norm_b, vt->dn, vt->x + (size_t)VL * PVC, w->m_norm_w,
                  vt->m_mean, vt->m_rstd, P, VC);
    if (!g->g.patch_embed) return 0; // the tower is frozen

    // blocks, last to first
    for (int l = VL - 1; l >= 0; l--) {
        block_slices ba = block_slices_of(vt, c, l);
        const float *x_in = vt->x + (size_t)l * PVC;
        if (vt->recompute) block_forward(m, vt, l, x_in, vt->xout, &ba);
        block_backward(m, vt, l, x_in, &ba, g);
    }

    // back to the images' patch order, then the patch embedding
    for (int k = 0; k < U; k++)
        memcpy(vt->dpatch + (size_t)vt->lo.unit_of[k] * MVC, vt->dx + (size_t)k * MVC, sizeof(float) * (size_t)MVC);
    matmul_backward(NULL, g->g.patch_embed, NULL, vt->dpatch, pixels, w->patch_embed, P, c->vision.patch_dim, VC);
    return 0;
}
