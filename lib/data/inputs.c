// Run-level tokenizer/image settings and Query images as patches (see inputs.h).
#include "data/inputs.h"

#include "backend/backend.h"
#include "core/error.h"
#include "core/util.h"
#include "io/records.h"

#include <stdlib.h>
#include <string.h>

int maye_run_tokenizer_path(const maye_config *cfg, char **out) {
    if (cfg->model.tokenizer && cfg->model.tokenizer[0]) *out = xstrdup(cfg->model.tokenizer);
    else if (cfg->model.path && cfg->model.path[0]) *out = maye_path_join(cfg->model.path, "tokenizer.json");
    else return maye_fail("no tokenizer: set model.tokenizer or model.path");
    return 0;
}

int maye_run_image_config(const maye_config *cfg, maye_image_processor_config *out) {
    maye_image_processor_config_default(out);
    if (cfg->model.path && cfg->model.path[0]) {
        char *pp = maye_path_join(cfg->model.path, "preprocessor_config.json");
        int rc = maye_file_exists(pp) ? maye_image_processor_config_load(out, pp) : 0;
        free(pp);
        TRY(rc);
    }
    if (cfg->data.min_pixels > 0) out->min_pixels = cfg->data.min_pixels;
    if (cfg->data.max_pixels > 0) out->max_pixels = cfg->data.max_pixels;
    out->alpha = strcmp(cfg->data.alpha, "drop") ? MAYE_ALPHA_WHITE : MAYE_ALPHA_DROP;
    return maye_image_processor_config_check(out, "image processor (data.min_pixels/max_pixels)");
}

int maye_query_pixels_build(const Maye__Query *q, const maye_image_processor_config *img, maye_query_pixels *out) {
    memset(out, 0, sizeof *out);
    const char *sid = q->pos && q->pos->sample_id ? q->pos->sample_id : "?";
    if (q->n_images == 0) return 0;
    maye_patches *parts = xcalloc(q->n_images, sizeof(maye_patches));
    int rc = 0;
    for (size_t i = 0; i < q->n_images && rc == 0; i++) {
        const Maye__Image *im = q->images[i];
        char what[256];
        snprintf(what, sizeof what, "sample '%s': images[%zu].rgb", sid, i);
        int64_t shape[3] = {im->height, im->width, 3};
        rc = maye_tensor_check(im->rgb, what, MAYE__DTYPE__U8, 3, shape);
        if (rc == 0) {
            maye_image view = {.height = im->height, .width = im->width, .pixels = im->rgb->data.data};
            rc = maye_image_patchify(&view, img, &parts[i]);
            if (rc < 0) maye_fail_ctx("sample '%s': images[%zu]", sid, i);
        }
        if (rc == 0 && im->n_grid_thw == 3 &&
            (im->grid_thw[0] != parts[i].grid_thw[0] || im->grid_thw[1] != parts[i].grid_thw[1] ||
             im->grid_thw[2] != parts[i].grid_thw[2]))
            rc = maye_fail("sample '%s': images[%zu]: grid_thw [%lld, %lld, %lld] does not match the image's %dx%d "
                           "pixels (the image processor of this run differs from the one that made the query)",
                           sid, i, (long long)im->grid_thw[0], (long long)im->grid_thw[1], (long long)im->grid_thw[2],
                           im->height, im->width);
    }
    if (rc == 0) {
        out->n_images = (int)q->n_images;
        out->grid_thw = xmalloc(sizeof(int64_t) * 3 * q->n_images);
        out->patch_dim = parts[0].patch_dim;
        for (size_t i = 0; i < q->n_images; i++) {
            memcpy(out->grid_thw + 3 * i, parts[i].grid_thw, sizeof(int64_t) * 3);
            out->n_patches += parts[i].n_patches;
        }
        out->pixels = xmalloc(sizeof(float) * (size_t)(out->n_patches * out->patch_dim));
        int64_t row = 0;
        for (size_t i = 0; i < q->n_images; i++) {
            memcpy(out->pixels + row * out->patch_dim, parts[i].pixel_values,
                   sizeof(float) * (size_t)(parts[i].n_patches * out->patch_dim));
            row += parts[i].n_patches;
        }
    }
    for (size_t i = 0; i < q->n_images; i++) maye_patches_free(&parts[i]);
    free(parts);
    return rc;
}

void maye_query_pixels_free(maye_query_pixels *p) {
    free(p->grid_thw);
    free(p->pixels);
    memset(p, 0, sizeof *p);
}

int maye_run_check_backend(const maye_config *cfg) {
    TRY(maye_weight_sync_check(cfg));
    const char *dev = cfg->model.device, *dt = cfg->model.dtype;
    bool cuda = !strcmp(dev, "cuda");
    if (!cuda && strcmp(dev, "cpu"))
        return maye_fail("model.device = %s: expected cpu or cuda", dev);
    if (cuda && !maye_backend_cuda())
        return maye_fail("model.device = cuda: this build has no CUDA backend: rebuild with make CUDA=1 (needs nvcc), "
                         "or set model.device=cpu model.dtype=fp32");
    if (!cuda && cfg->model.profile)
        return maye_fail("model.profile = true times the GPU model's regions, but model.device = cpu: set "
                         "model.device=cuda, or model.profile=false (on the CPU, `perf` or the stages' own timings)");
    if (!cuda && strcmp(dt, "fp32"))
        return maye_fail("model.dtype = %s: the CPU backend computes in fp32; set model.dtype=fp32 (bf16 needs "
                         "model.device=cuda)", dt);
    if (strcmp(dt, "fp32") && strcmp(dt, "bf16"))
        return maye_fail("model.dtype = %s: expected fp32 or bf16", dt);
    return 0;
}
