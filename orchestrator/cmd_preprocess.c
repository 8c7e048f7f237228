// maye preprocess: runs the Qwen2-VL image processor on one image and writes pixel_values and
// image_grid_thw to a safetensors file, to inspect or diff what the vision tower will receive.
#include "commands.h"

#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "io/safetensors.h"
#include "vision/image_processor.h"

#include <stdio.h>
#include <string.h>

static void preprocess_usage(FILE *f) {
    fprintf(f,
            "usage: maye preprocess IMAGE [--model DIR] [--min-pixels N] [--max-pixels N] [--alpha drop|white]\n"
            "                        -o OUT.safetensors\n\n"
            "Decodes IMAGE (PNG or JPEG), converts it to RGB, resizes it with smart_resize + bicubic and patchifies\n"
            "it exactly like transformers' Qwen2-VL image processor (the PIL one). Writes pixel_values\n"
            "[patches, 3*temporal*patch*patch] F32 and image_grid_thw [1, 3] I64.\n\n"
            "  --model DIR       read DIR/preprocessor_config.json (or a .json file) instead of the defaults\n"
            "  --min-pixels N    smallest resized area (default 3136, or the model's)\n"
            "  --max-pixels N    largest resized area (default 12845056, or the model's)\n"
            "  --alpha MODE      transparency: drop (ignore it, as transformers does; default) or white\n"
            "                    (composite over a white background first)\n"
            "  -o FILE           output .safetensors file (required)\n"
            "  -h, --help        this help\n");
}

static int write_patches(const maye_patches *p, const char *image, const char *out) {
    int64_t pv_shape[2] = {p->n_patches, p->patch_dim}, grid_shape[2] = {1, 3};
    char h[32], w[32];
    maye_st_writer wr;
    maye_st_writer_init(&wr);
    maye_st_writer_add(&wr, "pixel_values", MAYE_F32, 2, pv_shape, p->pixel_values);
    maye_st_writer_add(&wr, "image_grid_thw", MAYE_I64, 2, grid_shape, p->grid_thw);
    snprintf(h, sizeof h, "%lld", (long long)p->grid_thw[1]);
    snprintf(w, sizeof w, "%lld", (long long)p->grid_thw[2]);
    maye_st_writer_meta(&wr, "image", image);
    maye_st_writer_meta(&wr, "grid_h", h);
    maye_st_writer_meta(&wr, "grid_w", w);
    int rc = maye_st_writer_save(&wr, out);
    maye_st_writer_free(&wr);
    return rc;
}

int cmd_preprocess(int argc, char **argv) {
    const char *image = NULL, *model = NULL, *out = NULL, *min_s = NULL, *max_s = NULL, *alpha = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            preprocess_usage(stdout);
            return 0;
        }
        const char **slot = !strcmp(a, "--model") ? &model
                            : !strcmp(a, "--min-pixels") ? &min_s
                            : !strcmp(a, "--max-pixels") ? &max_s
                            : !strcmp(a, "--alpha") ? &alpha
                            : !strcmp(a, "-o") ? &out
                            : NULL;
        if (slot) {
            if (i + 1 >= argc) {
                log_error("option %s needs a value (see maye preprocess --help)", a);
                return 2;
            }
            *slot = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            log_error("unknown option '%s' (see maye preprocess --help)", a);
            return 2;
        } else if (!image) {
            image = a;
        } else {
            log_error("more than one image given ('%s' and '%s'); preprocess takes one", image, a);
            return 2;
        }
    }
    if (!image || !out) {
        preprocess_usage(stderr);
        return 2;
    }
    maye_image_processor_config cfg;
    maye_image_processor_config_default(&cfg);
    int64_t v;
    if (model && maye_image_processor_config_load(&cfg, model) < 0) goto fail;
    if (min_s) {
        if (maye_parse_i64(min_s, &v, "--min-pixels") < 0) goto fail;
        cfg.min_pixels = v;
    }
    if (max_s) {
        if (maye_parse_i64(max_s, &v, "--max-pixels") < 0) goto fail;
        cfg.max_pixels = v;
    }
    if (alpha && strcmp(alpha, "drop") && strcmp(alpha, "white")) {
        log_error("--alpha takes 'drop' or 'white', not '%s'", alpha);
        return 2;
    }
    if (alpha) cfg.alpha = !strcmp(alpha, "white") ? MAYE_ALPHA_WHITE : MAYE_ALPHA_DROP;
    if (maye_image_processor_config_check(&cfg, "maye preprocess") < 0) goto fail;
    maye_patches p;
    if (maye_image_preprocess_file(image, &cfg, &p) < 0) goto fail;
    int rc = write_patches(&p, image, out);
    if (rc == 0)
        log_info("%s: grid (t, h, w) = (%lld, %lld, %lld), %lld patches -> %s", image, (long long)p.grid_thw[0],
                 (long long)p.grid_thw[1], (long long)p.grid_thw[2], (long long)p.n_patches, out);
    maye_patches_free(&p);
    if (rc < 0) goto fail;
    return 0;
fail:
    maye_report_error();
    return 1;
}
