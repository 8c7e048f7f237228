// The vision tower and patch merger of Qwen2-VL and Qwen2.5-VL (transformers'
// Qwen2VisionTransformerPretrainedModel / Qwen2_5_VisionTransformerPretrainedModel):
//   patch embedding (the Conv3d as a matmul over PD-value patches) -> 2-D rotary positions (patch row and
//   column, in the merge-block order the image processor emits) -> blocks (Qwen2-VL: LayerNorm, QuickGELU
//   MLP; Qwen2.5-VL: RMSNorm, gated MLP, window attention except in fullatt_block_indexes, on patches
//   reordered window by window) -> merger (norm, M patches concatenated, Linear-GELU-Linear to the LLM width)
//   -> Qwen2.5-VL's inverse reordering.
// Attention never crosses an image frame (full) or a window. Dimension letters as in model.h, plus
// S attention segments (frames or windows) and U = P / M merged units.
#include "model/model.h"

#include "core/error.h"

#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// grids

int maye_vision_check(const maye_model_config *c, int64_t P, const int64_t *grid_thw, int n_images,
                      int64_t *n_tokens) {
    int64_t m = c->vision.merge, total = 0, tokens = 0;
    CHECK_OR_FAIL(n_images >= 0, "negative image count");
    for (int i = 0; i < n_images; i++) {
        int64_t t = grid_thw[3 * i], h = grid_thw[3 * i + 1], w = grid_thw[3 * i + 2];
        CHECK_OR_FAIL(t > 0 && h > 0 && w > 0 && t < (1 << 20) && h < (1 << 20) && w < (1 << 20),
                      "image_grid_thw row %d = [%lld, %lld, %lld]: every entry must be positive", i, (long long)t,
                      (long long)h, (long long)w);
        CHECK_OR_FAIL(h % m == 0 && w % m == 0, "image_grid_thw row %d = [%lld, %lld, %lld]: height and width must "
                      "be multiples of spatial_merge_size %lld", i, (long long)t, (long long)h, (long long)w,
                      (long long)m);
        total += t * h * w;
        tokens += t * h * w / (m * m);
    }
    CHECK_OR_FAIL(total == P, "pixel_values has %lld patch rows but image_grid_thw describes %lld (sum of t*h*w)",
                  (long long)P, (long long)total);
    if (n_tokens) *n_tokens = tokens;
    return 0;
}

// ----------------------------------------------------------------------------
// layout: rotary positions, attention segments, Qwen2.5-VL windows

void maye_vision_layout_free(maye_vision_layout *lo) {
    free(lo->hpos), free(lo->wpos), free(lo->unit_of), free(lo->cu_full), free(lo->cu_win);
}

void maye_vision_layout_build(const maye_model_config *c, const int64_t *grid, int n_images, int64_t P,
                              maye_vision_layout *lo) {
    int m = c->vision.merge, M = m * m;
    int64_t U = P / M;
    size_t np = (size_t)(P ? P : 1);
    int32_t *hpos = xmalloc(sizeof(int32_t) * np), *wpos = xmalloc(sizeof(int32_t) * np);
    lo->hpos = xmalloc(sizeof(int32_t) * np);
    lo->wpos = xmalloc(sizeof(int32_t) * np);
    lo->unit_of = xmalloc(sizeof(int32_t) * (size_t)(U ? U : 1));
    int n_frames = 0;
    for (int i = 0; i < n_images; i++) n_frames += (int)grid[3 * i];
    lo->cu_full = xmalloc(sizeof(int) * (size_t)(n_frames + 1));
    lo->n_full = 0;
    lo->cu_full[0] = 0;
    // patch positions in the processor's order: (t, h/m, w/m, m, m)
    int64_t p = 0;
    for (int i = 0; i < n_images; i++) {
        int t = (int)grid[3 * i], h = (int)grid[3 * i + 1], w = (int)grid[3 * i + 2];
        for (int ti = 0; ti < t; ti++) {
            for (int k = 0; k < h * w; k++, p++) {
                int blk = k / M, in = k % M;
                hpos[p] = (blk / (w / m)) * m + in / m;
                wpos[p] = (blk % (w / m)) * m + in % m;
            }
            lo->cu_full[lo->n_full + 1] = lo->cu_full[lo->n_full] + h * w;
            lo->n_full++;
        }
    }
    // processing order: Qwen2.5-VL walks the merged units window by window (transformers' get_window_index)
    int64_t n_win_max = 1;
    int ws = c->arch == MAYE_ARCH_QWEN2_5_VL ? c->vision.window_size / m / c->vision.patch : 0;
    for (int i = 0; ws && i < n_images; i++) {
        int64_t lh = grid[3 * i + 1] / m, lw = grid[3 * i + 2] / m;
        n_win_max += grid[3 * i] * ((lh + ws - 1) / ws) * ((lw + ws - 1) / ws);
    }
    lo->cu_win = xmalloc(sizeof(int) * (size_t)(n_win_max + 1));
    lo->cu_win[0] = 0;
    lo->n_win = 0;
    int64_t u = 0, unit_base = 0;
    for (int i = 0; i < n_images; i++) {
        int t = (int)grid[3 * i], lh = (int)grid[3 * i + 1] / m, lw = (int)grid[3 * i + 2] / m;
        if (!ws) {
            for (int64_t k = 0; k < (int64_t)t * lh * lw; k++) lo->unit_of[u++] = (int32_t)(unit_base + k);
        } else {
            for (int ti = 0; ti < t; ti++)
                for (int wy = 0; wy < lh; wy += ws)
                    for (int wx = 0; wx < lw; wx += ws) {
                        int count = 0;
                        for (int y = wy; y < wy + ws && y < lh; y++)
                            for (int x = wx; x < wx + ws && x < lw; x++, count++)
                                lo->unit_of[u++] = (int32_t)(unit_base + ((int64_t)ti * lh + y) * lw + x);
                        lo->cu_win[lo->n_win + 1] = lo->cu_win[lo->n_win] + count * M;
                        lo->n_win++;
                    }
        }
        unit_base += (int64_t)t * lh * lw;
    }
    for (int64_t k = 0; k < U; k++)
        for (int j = 0; j < M; j++) {
            int64_t src = (int64_t)lo->unit_of[k] * M + j;
            lo->hpos[k * M + j] = hpos[src];
            lo->wpos[k * M + j] = wpos[src];
        }
    free(hpos);
    free(wpos);
}

// ----------------------------------------------------------------------------
// forward

// Attention of one block over segments cu (S+1) of the qkv rows (P, 3*VC) -> att (P, VC).
static void block_attention(const maye_model_config *c, const float *qkv, float *att, const int *cu, int S,
                            float *scratch, size_t scratch_n) {
    int VC = c->vision.width;
    const float **k = xmalloc(sizeof(float *) * (size_t)(S ? S : 1));
    const float **v = xmalloc(sizeof(float *) * (size_t)(S ? S : 1));
    int *nk = xmalloc(sizeof(int) * (size_t)(S ? S : 1));
    for (int s = 0; s < S; s++) {
        k[s] = qkv + (size_t)cu[s] * 3 * VC + VC;
        v[s] = qkv + (size_t)cu[s] * 3 * VC + 2 * VC;
        nk[s] = cu[s + 1] - cu[s];
    }
    attention_forward(att, VC, NULL, qkv, 3 * VC, k, v, 3 * VC, cu, nk, S, c->vision.heads, c->vision.heads,
                      c->vision.head_dim, 0, scratch, scratch_n);
    free(k), free(v), free(nk);
}

int maye_vision_forward(const maye_model *m, const float *pixels, int64_t P, const int64_t *grid_thw, int n_images,
                        float *out) {
    const maye_model_config *c = &m->cfg;
    const maye_weights *w = &m->w;
    int64_t n_tokens;
    TRY(maye_vision_check(c, P, grid_thw, n_images, &n_tokens));
    if (P == 0) return 0;
    CHECK_OR_FAIL(P < (1 << 30), "%lld patches are too many for one call", (long long)P);
    int q25 = c->arch == MAYE_ARCH_QWEN2_5_VL;
    int VC = c->vision.width, VI = c->vision.intermediate, VD = c->vision.head_dim, PD = c->vision.patch_dim;
    int M = c->vision.merge * c->vision.merge, MVC = M * VC, C = c->hidden, Pi = (int)P, U = Pi / M;
    const float eps = 1e-6f;

    maye_vision_layout lo;
    maye_vision_layout_build(c, grid_thw, n_images, P, &lo);
    int max_seg = 1;
    for (int s = 0; s < lo.n_full; s++) max_seg = lo.cu_full[s + 1] - lo.cu_full[s] > max_seg ?
        lo.cu_full[s + 1] - lo.cu_full[s] : max_seg;

    // activations: one allocation carved from a size table
    size_t scratch_n = attention_scratch_floats(max_seg);
    float *x, *n, *qkv, *att, *tmp, *f1, *f2, *cos, *sin, *mh, *mo, *scratch;
    float **slots[] = {&x, &n, &qkv, &att, &tmp, &f1, &f2, &cos, &sin, &mh, &mo, &scratch};
    size_t sizes[] = {
        (size_t)P * VC,                   // x (P, VC) residual stream
        (size_t)P * VC,                   // n (P, VC) normed
        (size_t)P * 3 * VC,               // qkv (P, 3*VC)
        (size_t)P * VC,                   // att (P, VC)
        (size_t)P * VC,                   // tmp (P, VC) embedded patches, then projections
        (size_t)P * VI,                   // f1 (P, VI) fc1 / gate
        (size_t)(q25 ? P * VI : 0),       // f2 (P, VI) up
        (size_t)P * VD / 2,               // cos (P, VD/2)
        (size_t)P * VD / 2,               // sin (P, VD/2)
        (size_t)U * MVC,                  // mh (U, M*VC) merger hidden
        (size_t)U * C,                    // mo (U, C) merger output in processing order
        scratch_n,                        // attention scores
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) total += sizes[i];
    float *mem = malloc(sizeof(float) * total);
    if (!mem) {
        maye_vision_layout_free(&lo);
        return maye_fail("cannot allocate %.2f GB of vision activations for %lld patches", total * 4.0 / 1e9,
                         (long long)P);
    }
    size_t off = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) *slots[i] = mem + off, off += sizes[i];

    // patch embedding, then the rows in processing order (merged units gathered window by window)
    matmul_forward(tmp, pixels, w->patch_embed, NULL, Pi, PD, VC);
    for (int k = 0; k < U; k++)
        memcpy(x + (size_t)k * MVC, tmp + (size_t)lo.unit_of[k] * MVC, sizeof(float) * (size_t)MVC);
    vision_rope_cos_sin_forward(cos, sin, lo.hpos, lo.wpos, Pi, VD);

    for (int l = 0; l < c->vision.depth; l++) {
        if (q25) rmsnorm_forward(n, NULL, x, w->v_norm1_w + (size_t)l * VC, Pi, VC, eps);
        else layernorm_forward(n, NULL, NULL, x, w->v_norm1_w + (size_t)l * VC, w->v_norm1_b + (size_t)l * VC, Pi,
                               VC, eps);
        matmul_forward(qkv, n, w->v_qkv_w + (size_t)l * 3 * VC * VC, w->v_qkv_b + (size_t)l * 3 * VC, Pi, VC, 3 * VC);
        rope_forward(qkv, cos, sin, Pi, c->vision.heads, VD, 3 * VC);
        rope_forward(qkv + VC, cos, sin, Pi, c->vision.heads, VD, 3 * VC);
        int full = !q25 || c->vision.full_attention[l];
        block_attention(c, qkv, att, full ? lo.cu_full : lo.cu_win, full ? lo.n_full : lo.n_win, scratch,
                        scratch_n);
        matmul_forward(tmp, att, w->v_proj_w + (size_t)l * VC * VC, w->v_proj_b + (size_t)l * VC, Pi, VC, VC);
        residual_forward(x, x, tmp, (int64_t)P * VC);

        if (q25) rmsnorm_forward(n, NULL, x, w->v_norm2_w + (size_t)l * VC, Pi, VC, eps);
        else layernorm_forward(n, NULL, NULL, x, w->v_norm2_w + (size_t)l * VC, w->v_norm2_b + (size_t)l * VC, Pi,
                               VC, eps);
        matmul_forward(f1, n, w->v_fc1_w + (size_t)l * VI * VC, w->v_fc1_b + (size_t)l * VI, Pi, VC, VI);
        if (q25) {
            matmul_forward(f2, n, w->v_up_w + (size_t)l * VI * VC, w->v_up_b + (size_t)l * VI, Pi, VC, VI);
            gated_activation_forward(f1, f1, f2, (int64_t)P * VI, c->vision.act);
        } else {
            activation_forward(f1, f1, (int64_t)P * VI, c->vision.act);
        }
        matmul_forward(tmp, f1, w->v_fc2_w + (size_t)l * VC * VI, w->v_fc2_b + (size_t)l * VC, Pi, VI, VC);
        residual_forward(x, x, tmp, (int64_t)P * VC);
    }

    // merger: norm, M consecutive patches form one row of M*VC, Linear -> GELU -> Linear
    if (q25) rmsnorm_forward(n, NULL, x, w->m_norm_w, Pi, VC, eps);
    else layernorm_forward(n, NULL, NULL, x, w->m_norm_w, w->m_norm_b, Pi, VC, eps);
    matmul_forward(mh, n, w->m_fc1_w, w->m_fc1_b, U, MVC, MVC);
    activation_forward(mh, mh, (int64_t)U * MVC, ACT_GELU);
    matmul_forward(mo, mh, w->m_fc2_w, w->m_fc2_b, U, MVC, C);
    for (int k = 0; k < U; k++)
        memcpy(out + (size_t)lo.unit_of[k] * C, mo + (size_t)k * C, sizeof(float) * (size_t)C);

    free(mem);
    maye_vision_layout_free(&lo);
    return 0;
}
