// The Qwen2-VL image processor (see image_processor.h): configuration (defaults and preprocessor_config.json),
// smart_resize, and patchify + normalisation in the reference's float precision.
#include "vision/image_processor.h"

#include "core/error.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// configuration

void maye_image_processor_config_default(maye_image_processor_config *cfg) {
    static const double mean[3] = {0.48145466, 0.4578275, 0.40821073};
    static const double std[3] = {0.26862954, 0.26130258, 0.27577711};
    cfg->patch_size = 14;
    cfg->merge_size = 2;
    cfg->temporal_patch_size = 2;
    cfg->min_pixels = 3136;
    cfg->max_pixels = 12845056;
    cfg->rescale_factor = 1.0 / 255.0;
    memcpy(cfg->image_mean, mean, sizeof mean);
    memcpy(cfg->image_std, std, sizeof std);
    cfg->alpha = MAYE_ALPHA_DROP;
}

int maye_image_processor_config_check(const maye_image_processor_config *cfg, const char *what) {
    CHECK_OR_FAIL(cfg->patch_size >= 1 && cfg->patch_size <= 1024, "%s: patch_size %d is out of range [1, 1024]",
                  what, cfg->patch_size);
    CHECK_OR_FAIL(cfg->merge_size >= 1 && cfg->merge_size <= 64, "%s: merge_size %d is out of range [1, 64]", what,
                  cfg->merge_size);
    CHECK_OR_FAIL(cfg->temporal_patch_size >= 1 && cfg->temporal_patch_size <= 64,
                  "%s: temporal_patch_size %d is out of range [1, 64]", what, cfg->temporal_patch_size);
    CHECK_OR_FAIL(cfg->min_pixels >= 1, "%s: min_pixels must be positive, got %lld", what,
                  (long long)cfg->min_pixels);
    CHECK_OR_FAIL(cfg->max_pixels >= 1, "%s: max_pixels must be positive, got %lld", what,
                  (long long)cfg->max_pixels);
    CHECK_OR_FAIL(isfinite(cfg->rescale_factor) && cfg->rescale_factor > 0,
                  "%s: rescale_factor must be a positive number, got %g", what, cfg->rescale_factor);
    for (int c = 0; c < 3; c++) {
        CHECK_OR_FAIL(isfinite(cfg->image_mean[c]), "%s: image_mean[%d] is not a finite number", what, c);
        CHECK_OR_FAIL(isfinite(cfg->image_std[c]) && cfg->image_std[c] != 0,
                      "%s: image_std[%d] must be a finite non-zero number, got %g", what, c, cfg->image_std[c]);
    }
    return 0;
}

// Fails naming the file, the key and the offending JSON value.
static int bad_value(const char *file, const char *key, const cJSON *v, const char *expected) {
    char *text = cJSON_PrintUnformatted(v);
    maye_fail("%s: key '%s': expected %s, got %s", file, key, expected, text ? text : "?");
    free(text);
    return -1;
}

static int json_int(const cJSON *v, const char *file, const char *key, int64_t lo, int64_t hi, int64_t *out) {
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < (double)lo ||
        v->valuedouble > (double)hi) {
        char expected[96];
        snprintf(expected, sizeof expected, "an integer in [%lld, %lld]", (long long)lo, (long long)hi);
        return bad_value(file, key, v, expected);
    }
    *out = (int64_t)v->valuedouble;
    return 0;
}

// A number, or a list of one number per RGB channel (transformers accepts both).
static int json_per_channel(const cJSON *v, const char *file, const char *key, double out[3]) {
    if (cJSON_IsNumber(v)) {
        out[0] = out[1] = out[2] = v->valuedouble;
        return 0;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 3) return bad_value(file, key, v, "a list of 3 numbers");
    for (int c = 0; c < 3; c++) {
        const cJSON *e = cJSON_GetArrayItem(v, c);
        if (!cJSON_IsNumber(e)) return bad_value(file, key, v, "a list of 3 numbers");
        out[c] = e->valuedouble;
    }
    return 0;
}

// Flags that must keep the value this processor implements.
static int json_expect_true(const cJSON *v, const char *file, const char *key) {
    if (!cJSON_IsBool(v)) return bad_value(file, key, v, "true or false");
    if (!cJSON_IsTrue(v))
        return maye_fail("%s: key '%s': false is not supported (maye-c always resizes, rescales, normalises and "
                         "converts to RGB like the Qwen2-VL processor); remove the key or set it to true",
                         file, key);
    return 0;
}

static int load_size_object(maye_image_processor_config *cfg, const cJSON *size, const char *file) {
    if (!cJSON_IsObject(size)) return bad_value(file, "size", size, "an object {\"shortest_edge\", \"longest_edge\"}");
    for (const cJSON *it = size->child; it; it = it->next) {
        char key[96];
        snprintf(key, sizeof key, "size.%s", it->string);
        int64_t v;
        if (!strcmp(it->string, "shortest_edge") || !strcmp(it->string, "min_pixels")) {
            TRY(json_int(it, file, key, 1, INT64_C(1) << 40, &v));
            cfg->min_pixels = v;
        } else if (!strcmp(it->string, "longest_edge") || !strcmp(it->string, "max_pixels")) {
            TRY(json_int(it, file, key, 1, INT64_C(1) << 40, &v));
            cfg->max_pixels = v;
        } else {
            return maye_fail("%s: key '%s' is not supported: the Qwen2-VL processor takes 'shortest_edge' (min "
                             "pixels) and 'longest_edge' (max pixels)", file, key);
        }
    }
    return 0;
}

static int load_config_json(maye_image_processor_config *cfg, const cJSON *root, const char *file) {
    if (!cJSON_IsObject(root)) return maye_fail("%s: expected a JSON object", file);
    const cJSON *v;
    int64_t n;
    // "size" first: the top-level min_pixels / max_pixels override it, as in transformers.
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "size"))) TRY(load_size_object(cfg, v, file));
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "min_pixels"))) {
        TRY(json_int(v, file, "min_pixels", 1, INT64_C(1) << 40, &n));
        cfg->min_pixels = n;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "max_pixels"))) {
        TRY(json_int(v, file, "max_pixels", 1, INT64_C(1) << 40, &n));
        cfg->max_pixels = n;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "patch_size"))) {
        TRY(json_int(v, file, "patch_size", 1, 1024, &n));
        cfg->patch_size = (int)n;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "merge_size"))) {
        TRY(json_int(v, file, "merge_size", 1, 64, &n));
        cfg->merge_size = (int)n;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "temporal_patch_size"))) {
        TRY(json_int(v, file, "temporal_patch_size", 1, 64, &n));
        cfg->temporal_patch_size = (int)n;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "image_mean")))
        TRY(json_per_channel(v, file, "image_mean", cfg->image_mean));
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "image_std")))
        TRY(json_per_channel(v, file, "image_std", cfg->image_std));
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "rescale_factor"))) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble > 0))
            return bad_value(file, "rescale_factor", v, "a positive number");
        cfg->rescale_factor = v->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(root, "resample"))) {
        TRY(json_int(v, file, "resample", 0, 5, &n));
        if (n != 3)
            return maye_fail("%s: key 'resample': only 3 (bicubic, the Qwen2-VL default) is implemented, got %lld",
                             file, (long long)n);
    }
    static const char *const flags[] = {"do_resize", "do_rescale", "do_normalize", "do_convert_rgb"};
    for (size_t i = 0; i < sizeof flags / sizeof *flags; i++)
        if ((v = cJSON_GetObjectItemCaseSensitive(root, flags[i]))) TRY(json_expect_true(v, file, flags[i]));
    return maye_image_processor_config_check(cfg, file);
}

int maye_image_processor_config_load(maye_image_processor_config *cfg, const char *path) {
    char *file = maye_is_dir(path) ? maye_path_join(path, "preprocessor_config.json") : xstrdup(path);
    maye_buf buf = {0};
    int rc = maye_read_file(file, &buf);
    if (rc == 0) {
        cJSON *root = cJSON_ParseWithLength(buf.data, buf.len);
        if (!root) rc = maye_fail("%s: not valid JSON (near byte %td)", file,
                                  cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - buf.data : (ptrdiff_t)0);
        else rc = load_config_json(cfg, root, file);
        cJSON_Delete(root);
    }
    maye_buf_free(&buf);
    free(file);
    return rc;
}

// ----------------------------------------------------------------------------
// smart_resize

int maye_smart_resize(int height, int width, int factor, int64_t min_pixels, int64_t max_pixels, int *out_h,
                      int *out_w) {
    CHECK_OR_FAIL(height > 0 && width > 0, "image of %d x %d pixels is empty", height, width);
    CHECK_OR_FAIL(factor > 0 && min_pixels > 0 && max_pixels > 0,
                  "smart_resize: factor (%d), min_pixels (%lld) and max_pixels (%lld) must be positive", factor,
                  (long long)min_pixels, (long long)max_pixels);
    int lo = height < width ? height : width, hi = height < width ? width : height;
    double ratio = (double)hi / (double)lo;
    CHECK_OR_FAIL(!(ratio > 200), "image of %d x %d pixels: absolute aspect ratio must be smaller than 200, got %.17g",
                  height, width, ratio);
    int64_t area = (int64_t)height * width;
    // Python's round() on a float rounds half to even, as rint() does in the default rounding mode.
    int64_t h_bar = (int64_t)rint((double)height / factor) * factor;
    int64_t w_bar = (int64_t)rint((double)width / factor) * factor;
    if (h_bar * w_bar > max_pixels) {
        double beta = sqrt((double)area / (double)max_pixels);
        h_bar = (int64_t)floor((double)height / beta / factor) * factor;
        w_bar = (int64_t)floor((double)width / beta / factor) * factor;
        if (h_bar < factor) h_bar = factor;
        if (w_bar < factor) w_bar = factor;
    } else if (h_bar * w_bar < min_pixels) {
        double beta = sqrt((double)min_pixels / (double)area);
        h_bar = (int64_t)ceil((double)height * beta / factor) * factor;
        w_bar = (int64_t)ceil((double)width * beta / factor) * factor;
    }
    CHECK_OR_FAIL(h_bar <= INT_MAX && w_bar <= INT_MAX && h_bar * w_bar <= MAYE_IMAGE_MAX_PIXELS_DEFAULT,
                  "image of %d x %d pixels would be resized to %lld x %lld, more than %lld pixels; lower min_pixels "
                  "(%lld)", height, width, (long long)h_bar, (long long)w_bar, MAYE_IMAGE_MAX_PIXELS_DEFAULT,
                  (long long)min_pixels);
    *out_h = (int)h_bar;
    *out_w = (int)w_bar;
    return 0;
}

int maye_image_resize_for_model(const maye_image *in, const maye_image_processor_config *cfg, maye_image *out) {
    int h = 0, w = 0;
    out->height = out->width = 0;
    out->pixels = NULL;
    TRY(maye_smart_resize(in->height, in->width, cfg->patch_size * cfg->merge_size, cfg->min_pixels,
                          cfg->max_pixels, &h, &w));
    return maye_image_resize_bicubic(in, h, w, out);
}

// ----------------------------------------------------------------------------
// patchify

int maye_image_patchify(const maye_image *img, const maye_image_processor_config *cfg, maye_patches *out) {
    memset(out, 0, sizeof *out);
    const int P = cfg->patch_size, M = cfg->merge_size, T = cfg->temporal_patch_size;
    CHECK_OR_FAIL(img->height > 0 && img->width > 0 && img->height % (P * M) == 0 && img->width % (P * M) == 0,
                  "patchify: image of %d x %d pixels is not a multiple of patch_size * merge_size = %d on both "
                  "sides; resize it with maye_image_resize_for_model first", img->height, img->width, P * M);
    // rescale: uint8 -> float64 * factor -> float32; normalize: float32 (x - mean) / std. 256 values per channel.
    float lut[3][256];
    for (int c = 0; c < 3; c++) {
        float mean = (float)cfg->image_mean[c], std = (float)cfg->image_std[c];
        for (int v = 0; v < 256; v++) {
            float x = (float)((double)v * cfg->rescale_factor);
            lut[c][v] = (x - mean) / std;
        }
    }
    const int64_t gh = img->height / P, gw = img->width / P, D = 3 * (int64_t)T * P * P;
    out->grid_thw[0] = 1; // one image: a single temporal patch of T copies
    out->grid_thw[1] = gh;
    out->grid_thw[2] = gw;
    out->n_patches = gh * gw;
    out->patch_dim = D;
    out->pixel_values = xmalloc(sizeof(float) * out->n_patches * D);
    const int W = img->width;
    const int64_t bw_n = gw / M;
#pragma omp parallel for schedule(static) if (out->n_patches > 256)
    for (int64_t bh = 0; bh < gh / M; bh++)
        for (int64_t bw = 0; bw < bw_n; bw++)
            for (int mh = 0; mh < M; mh++)
                for (int mw = 0; mw < M; mw++) {
                    int64_t r = ((bh * bw_n + bw) * M + mh) * M + mw;
                    float *dst = out->pixel_values + r * D;
                    int64_t y0 = (bh * M + mh) * P, x0 = (bw * M + mw) * P;
                    for (int c = 0; c < 3; c++) {
                        float *slice = dst + (int64_t)c * T * P * P; // (T, P, P) of channel c
                        for (int py = 0; py < P; py++) {
                            const uint8_t *src = img->pixels + ((y0 + py) * W + x0) * 3 + c;
                            for (int px = 0; px < P; px++) slice[py * P + px] = lut[c][src[3 * px]];
                        }
                        for (int t = 1; t < T; t++) memcpy(slice + (int64_t)t * P * P, slice, sizeof(float) * P * P);
                    }
                }
    return 0;
}

void maye_patches_free(maye_patches *p) {
    free(p->pixel_values);
    memset(p, 0, sizeof *p);
}

int maye_image_preprocess_file(const char *path, const maye_image_processor_config *cfg, maye_patches *out) {
    maye_image img, resized;
    memset(out, 0, sizeof *out);
    TRY(maye_image_load_alpha(&img, path, 0, cfg->alpha));
    int rc = maye_image_resize_for_model(&img, cfg, &resized);
    maye_image_free(&img);
    if (rc < 0) return maye_fail_ctx("%s", path);
    rc = maye_image_patchify(&resized, cfg, out);
    maye_image_free(&resized);
    return rc < 0 ? maye_fail_ctx("%s", path) : 0;
}
