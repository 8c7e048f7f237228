// M-RoPE position ids (transformers' get_rope_index for images): text tokens share one position on the three
// axes, counting on from the previous chunk's largest position + 1; the merged tokens of an image at grid
// (t, h/merge, w/merge) get (temporal, row, column) offsets from the position where the image starts.
// Qwen2.5-VL scales the temporal index by seconds-per-grid x tokens_per_second, which is 0 for still
// images. The cos/sin tables of those positions feed every decoder layer.
#include "model/model.h"

#include "core/error.h"

// ----------------------------------------------------------------------------
// positions

int maye_mrope_positions(const maye_model_config *c, const int64_t *ids, int T, const int64_t *grid_thw,
                         int n_images, int64_t *pos, int64_t ld, int64_t *rope_delta) {
    const int64_t img = c->image_token_id, m = c->vision.merge;
    for (int i = 0; i < n_images; i++) {
        int64_t t = grid_thw[3 * i], h = grid_thw[3 * i + 1], w = grid_thw[3 * i + 2];
        CHECK_OR_FAIL(t > 0 && h > 0 && w > 0 && t <= T && h % m == 0 && w % m == 0 && h / m <= T && w / m <= T,
                      "image_grid_thw row %d = [%lld, %lld, %lld]: entries must be positive, height and width "
                      "multiples of spatial_merge_size %lld, and the image must fit in the %d tokens", i,
                      (long long)t, (long long)h, (long long)w, (long long)m, T);
    }
    int64_t next = 0, max_pos = -1; // next text position; largest position so far
    int st = 0, image = 0;
    while (st < T) {
        int ed = st;
        while (ed < T && ids[ed] != img) ed++;
        for (int i = st; i < ed; i++) { // text before the image (or up to the end)
            pos[i] = pos[ld + i] = pos[2 * ld + i] = next + (i - st);
        }
        if (ed > st) max_pos = next + (ed - st) - 1;
        if (ed == T) break;
        if (image >= n_images)
            return maye_fail("token %d starts image %d (image-pad id %lld) but image_grid_thw has only %d row(s)",
                             ed, image + 1, (long long)img, n_images);
        int64_t t = grid_thw[3 * image], lh = grid_thw[3 * image + 1] / m, lw = grid_thw[3 * image + 2] / m;
        int64_t n = t * lh * lw, base = next + (ed - st);
        int64_t run = 0;
        while (ed + run < T && ids[ed + run] == img) run++;
        if (run < n)
            return maye_fail("image %d at token %d: grid [%lld, %lld, %lld] needs %lld image-pad tokens but the "
                             "sequence has %lld there", image, ed, (long long)t, (long long)grid_thw[3 * image + 1],
                             (long long)grid_thw[3 * image + 2], (long long)n, (long long)run);
        int64_t k = 0;
        for (int64_t ti = 0; ti < t; ti++)
            for (int64_t y = 0; y < lh; y++)
                for (int64_t x = 0; x < lw; x++, k++) {
                    int64_t tpos = c->arch == MAYE_ARCH_QWEN2_5_VL ? 0 : ti; // images: 0 seconds per grid
                    pos[ed + k] = base + tpos;
                    pos[ld + ed + k] = base + y;
                    pos[2 * ld + ed + k] = base + x;
                }
        int64_t tmax = c->arch == MAYE_ARCH_QWEN2_5_VL ? 0 : t - 1;
        int64_t top = tmax > lh - 1 ? tmax : lh - 1;
        top = top > lw - 1 ? top : lw - 1;
        max_pos = base + top;
        next = max_pos + 1;
        st = ed + (int)n;
        image++;
    }
    if (image != n_images)
        return maye_fail("image_grid_thw has %d row(s) but the sequence has %d image(s) (runs of image-pad id %lld)",
                         n_images, image, (long long)img);
    if (rope_delta) *rope_delta = max_pos + 1 - T;
    return 0;
}

// ----------------------------------------------------------------------------
// rotary tables

void maye_mrope_tables(const maye_model_config *c, const int64_t *pos, int64_t ld, int T, float *cos, float *sin) {
    mrope_cos_sin_forward(cos, sin, pos, ld, T, c->head_dim, c->rope_theta, c->mrope_section);
}

int maye_mrope_positions_response(const maye_model_config *c, const int64_t *ids, int T, int n_prompt,
                                  const int64_t *grid_thw, int n_images, int64_t *pos, int64_t ld) {
    int64_t delta;
    TRY(maye_mrope_positions(c, ids, n_prompt, grid_thw, n_images, pos, ld, &delta));
    for (int a = 0; a < 3; a++)
        for (int t = n_prompt; t < T; t++) pos[a * ld + t] = t + delta;
    return 0;
}
