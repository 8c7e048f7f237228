// Golden test of the Qwen2-VL image processor against transformers' Qwen2VLImageProcessorPil: for every case
// of golden/image-processor/manifest.json, decode the PNG, run (2) resize and (3) patchify with the case's
// min/max pixels and the manifest's patch sizes, and compare image_grid_thw (identical) and pixel_values
// (identical without a resize, max |diff| <= 1e-6 after one) with expected.safetensors. The difference to
// the torchvision processor (Qwen2VLImageProcessor) is printed for information only.
#include "core/util.h"
#include "io/safetensors.h"
#include "test.h"
#include "vision/image_processor.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PIL_PROCESSOR "Qwen2VLImageProcessorPil"
#define TV_PROCESSOR "Qwen2VLImageProcessor"

static int64_t json_int_or(const cJSON *obj, const char *key, int64_t fallback) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : fallback;
}

static void json_triple_or(const cJSON *obj, const char *key, double out[3]) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 3)
        for (int c = 0; c < 3; c++) out[c] = cJSON_GetArrayItem(v, c)->valuedouble;
}

// Max |got - want| and the number of values differing by more than tol.
static double max_abs_diff(const float *got, const float *want, int64_t n, double tol, int64_t *n_over) {
    double m = 0;
    *n_over = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (!(d <= m)) m = d;
        if (!(d <= tol)) (*n_over)++;
    }
    return m;
}

// Loads `<case>.<processor>.*` and checks shapes; returns the pixel values as f32 (caller frees) or NULL.
static float *expected_pixels(const maye_safetensors *st, const char *case_name, const char *proc,
                              const maye_patches *got, int64_t grid[3]) {
    char name[256];
    const maye_st_tensor *t;
    snprintf(name, sizeof name, "%s.%s.image_grid_thw", case_name, proc);
    int64_t gshape[2] = {1, 3};
    if (maye_st_expect(st, name, 2, gshape, &t) < 0 || maye_st_to_i64(t, grid) < 0) {
        fprintf(stderr, "FAIL: %s\n", maye_errmsg());
        test_failures++;
        return NULL;
    }
    snprintf(name, sizeof name, "%s.%s.pixel_values", case_name, proc);
    int64_t pshape[2] = {got->n_patches, got->patch_dim};
    if (maye_st_expect(st, name, 2, pshape, &t) < 0) {
        fprintf(stderr, "FAIL: %s\n", maye_errmsg());
        test_failures++;
        return NULL;
    }
    float *want = xmalloc(sizeof(float) * t->numel);
    maye_st_to_f32(t, want);
    return want;
}

static void run_case(const cJSON *c, const char *dir, const maye_safetensors *st,
                     const maye_image_processor_config *defaults) {
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "name"));
    const char *png = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "png"));
    EXPECT(name && png, "manifest case without name/png");
    if (!name || !png) return;
    maye_image_processor_config cfg = *defaults;
    cfg.min_pixels = json_int_or(c, "min_pixels", cfg.min_pixels);
    cfg.max_pixels = json_int_or(c, "max_pixels", cfg.max_pixels);

    char *path = maye_path_join(dir, png);
    maye_image img = {0}, resized = {0};
    maye_patches got = {0};
    if (maye_image_load(&img, path, 0) < 0 || maye_image_resize_for_model(&img, &cfg, &resized) < 0 ||
        maye_image_patchify(&resized, &cfg, &got) < 0) {
        fprintf(stderr, "FAIL: case %s: %s\n", name, maye_errmsg());
        test_failures++;
        goto done;
    }
    EXPECT(img.height == json_int_or(c, "height", img.height) && img.width == json_int_or(c, "width", img.width),
           "case %s: decoded %d x %d, manifest says %lld x %lld", name, img.height, img.width,
           (long long)json_int_or(c, "height", -1), (long long)json_int_or(c, "width", -1));
    int resized_any = resized.height != img.height || resized.width != img.width;
    char what[300];
    for (int p = 0; p < 2; p++) {
        const char *proc = p == 0 ? PIL_PROCESSOR : TV_PROCESSOR;
        int64_t grid[3];
        float *want = expected_pixels(st, name, proc, &got, grid);
        if (!want) continue;
        snprintf(what, sizeof what, "%s.%s.image_grid_thw", name, proc);
        test_equal_i64(what, got.grid_thw, grid, 3);
        int64_t n = got.n_patches * got.patch_dim, n_over;
        double tol = p == 0 && !resized_any ? 0.0 : 1e-6;
        double d = max_abs_diff(got.pixel_values, want, n, tol, &n_over);
        printf("%-26s %-26s %4d x %-4d -> %4d x %-4d grid (%lld, %lld, %lld)  max|diff| %.3g  (%lld of %lld "
               "values > %g)%s\n", name, proc, img.height, img.width, resized.height, resized.width,
               (long long)got.grid_thw[0], (long long)got.grid_thw[1], (long long)got.grid_thw[2], d,
               (long long)n_over, (long long)n, tol, p == 0 ? "" : "  [information only]");
        if (p == 0) {
            snprintf(what, sizeof what, "%s.%s.pixel_values", name, proc);
            test_close_f32(what, got.pixel_values, want, n, tol, 0.0);
        }
        free(want);
    }
done:
    maye_patches_free(&got);
    maye_image_free(&resized);
    maye_image_free(&img);
    free(path);
}

int main(void) {
    const char *root = test_fixtures_root();
    if (!root) {
        printf("skip: fixtures not found (set MAYE_FIXTURES)\n");
        return TEST_SKIP;
    }
    char *dir = maye_path_join(root, "golden/image-processor");
    char *manifest_path = maye_path_join(dir, "manifest.json");
    char *expected_path = maye_path_join(dir, "expected.safetensors");
    if (!maye_file_exists(manifest_path)) {
        printf("skip: %s not found\n", manifest_path);
        return TEST_SKIP;
    }
    maye_buf buf = {0};
    EXPECT_OK(maye_read_file(manifest_path, &buf));
    cJSON *manifest = cJSON_ParseWithLength(buf.data, buf.len);
    EXPECT(manifest != NULL, "%s is not valid JSON", manifest_path);
    maye_safetensors st;
    int st_ok = maye_st_open(&st, expected_path) == 0;
    EXPECT(st_ok, "%s", maye_errmsg());
    if (manifest && st_ok) {
        maye_image_processor_config cfg;
        maye_image_processor_config_default(&cfg);
        const cJSON *defaults = cJSON_GetObjectItemCaseSensitive(manifest, "defaults");
        cfg.patch_size = (int)json_int_or(defaults, "patch_size", cfg.patch_size);
        cfg.merge_size = (int)json_int_or(defaults, "merge_size", cfg.merge_size);
        cfg.temporal_patch_size = (int)json_int_or(defaults, "temporal_patch_size", cfg.temporal_patch_size);
        cfg.min_pixels = json_int_or(defaults, "min_pixels", cfg.min_pixels);
        cfg.max_pixels = json_int_or(defaults, "max_pixels", cfg.max_pixels);
        json_triple_or(defaults, "image_mean", cfg.image_mean);
        json_triple_or(defaults, "image_std", cfg.image_std);
        const cJSON *cases = cJSON_GetObjectItemCaseSensitive(manifest, "cases");
        EXPECT(cJSON_GetArraySize(cases) > 0, "%s: no cases", manifest_path);
        const cJSON *c;
        cJSON_ArrayForEach(c, cases) run_case(c, dir, &st, &cfg);
        maye_st_close(&st);
    }
    cJSON_Delete(manifest);
    maye_buf_free(&buf);
    free(dir);
    free(manifest_path);
    free(expected_path);
    return TEST_RESULT();
}
