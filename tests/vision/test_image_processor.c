// The image processor: config defaults and preprocessor_config.json loading (flat keys, the newer "size"
// form, precedence, errors naming the file and key), patchify (patch order, temporal copies, float32
// normalisation of every uint8 value) and the whole file -> pixel_values path.
#include "core/util.h"
#include "test.h"
#include "vision/image_processor.h"

#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *write_text(const char *name, const char *text) {
    char *path = maye_path_join(test_tmpdir(), name);
    if (maye_write_file_atomic(path, text, strlen(text)) < 0) maye_die("%s", maye_errmsg());
    return path;
}

static void test_config(void) {
    maye_image_processor_config cfg;
    maye_image_processor_config_default(&cfg);
    EXPECT(cfg.patch_size == 14 && cfg.merge_size == 2 && cfg.temporal_patch_size == 2, "default sizes");
    EXPECT(cfg.min_pixels == 3136 && cfg.max_pixels == 12845056, "default pixels %lld %lld",
           (long long)cfg.min_pixels, (long long)cfg.max_pixels);
    EXPECT(cfg.image_mean[0] == 0.48145466 && cfg.image_std[2] == 0.27577711, "default CLIP mean/std");
    EXPECT_OK(maye_image_processor_config_check(&cfg, "defaults"));

    // The flat form of the Qwen2-VL checkpoints.
    char *flat = write_text("flat.json",
                            "{\"min_pixels\": 1000, \"max_pixels\": 200000, \"patch_size\": 16,"
                            " \"temporal_patch_size\": 1, \"merge_size\": 3, \"image_mean\": [0.5, 0.5, 0.5],"
                            " \"image_std\": 0.25, \"image_processor_type\": \"Qwen2VLImageProcessor\","
                            " \"do_resize\": true, \"resample\": 3, \"rescale_factor\": 0.00392156862745098}");
    EXPECT_OK(maye_image_processor_config_load(&cfg, flat));
    EXPECT(cfg.min_pixels == 1000 && cfg.max_pixels == 200000 && cfg.patch_size == 16 && cfg.merge_size == 3 &&
           cfg.temporal_patch_size == 1, "flat keys not read");
    EXPECT(cfg.image_mean[1] == 0.5 && cfg.image_std[0] == 0.25 && cfg.image_std[2] == 0.25, "mean/std not read");

    // The newer "size" form; top-level min/max_pixels override it; a directory finds preprocessor_config.json.
    char *dir = maye_path_join(test_tmpdir(), "model");
    EXPECT_OK(maye_mkdir_p(dir));
    char *sized = write_text("model/preprocessor_config.json",
                             "{\"size\": {\"shortest_edge\": 4000, \"longest_edge\": 90000}, \"max_pixels\": 80000}");
    maye_image_processor_config_default(&cfg);
    EXPECT_OK(maye_image_processor_config_load(&cfg, dir));
    EXPECT(cfg.min_pixels == 4000 && cfg.max_pixels == 80000, "size form: %lld %lld", (long long)cfg.min_pixels,
           (long long)cfg.max_pixels);

    struct {
        const char *json, *needle;
    } bad[] = {
        {"{\"min_pixels\": \"many\"}", "bad.json: key 'min_pixels': expected an integer"},
        {"{\"max_pixels\": 12.5}", "bad.json: key 'max_pixels': expected an integer"},
        {"{\"patch_size\": 0}", "bad.json: key 'patch_size'"},
        {"{\"image_mean\": [0.1, 0.2]}", "bad.json: key 'image_mean': expected a list of 3 numbers"},
        {"{\"image_std\": [1, 0, 1]}", "image_std[1] must be a finite non-zero number"},
        {"{\"size\": {\"height\": 224, \"width\": 224}}", "bad.json: key 'size.height' is not supported"},
        {"{\"resample\": 2}", "bad.json: key 'resample': only 3 (bicubic"},
        {"{\"do_normalize\": false}", "bad.json: key 'do_normalize': false is not supported"},
        {"{\"do_resize\": 1}", "bad.json: key 'do_resize': expected true or false"},
        {"[1, 2]", "bad.json: expected a JSON object"},
        {"{\"min_pixels\": ", "bad.json: not valid JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *path = write_text("bad.json", bad[i].json);
        maye_image_processor_config_default(&cfg);
        EXPECT_FAIL(maye_image_processor_config_load(&cfg, path), bad[i].needle);
        free(path);
    }
    char *missing = maye_path_join(test_tmpdir(), "nowhere");
    EXPECT_FAIL(maye_image_processor_config_load(&cfg, missing), "nowhere");
    free(missing);
    free(flat);
    free(sized);
    free(dir);
}

// Every pixel encodes its own position so the patch order can be checked value by value.
static uint8_t code(int y, int x, int c) { return (uint8_t)((y * 7 + x * 3 + c * 101) % 256); }

static void test_patchify(void) {
    maye_image_processor_config cfg;
    maye_image_processor_config_default(&cfg);
    cfg.patch_size = 3; // small odd shapes: P = 3, M = 2, T = 3
    cfg.temporal_patch_size = 3;
    const int P = 3, M = 2, T = 3, H = 12, W = 18; // grid 4 x 6
    maye_image img = {.height = H, .width = W, .pixels = malloc(H * W * 3)};
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++) img.pixels[(y * W + x) * 3 + c] = code(y, x, c);
    maye_patches p;
    EXPECT_OK(maye_image_patchify(&img, &cfg, &p));
    EXPECT(p.grid_thw[0] == 1 && p.grid_thw[1] == H / P && p.grid_thw[2] == W / P, "grid (%lld, %lld, %lld)",
           (long long)p.grid_thw[0], (long long)p.grid_thw[1], (long long)p.grid_thw[2]);
    EXPECT(p.n_patches == (H / P) * (W / P) && p.patch_dim == 3 * T * P * P, "shape %lld x %lld",
           (long long)p.n_patches, (long long)p.patch_dim);
    // Row order: (grid_h/M, grid_w/M, M, M); column order: (channel, t, py, px).
    int bad = 0;
    for (int64_t r = 0; r < p.n_patches && bad < 5; r++) {
        int64_t gw = W / P, mw = r % M, mh = (r / M) % M, bw = (r / (M * M)) % (gw / M), bh = r / (M * M * (gw / M));
        int64_t py0 = (bh * M + mh) * P, px0 = (bw * M + mw) * P;
        for (int64_t d = 0; d < p.patch_dim; d++) {
            int c = (int)(d / (T * P * P)), py = (int)(d / P % P), px = (int)(d % P);
            uint8_t v = code((int)(py0 + py), (int)(px0 + px), c);
            float x = (float)((double)v * cfg.rescale_factor);
            float want = (x - (float)cfg.image_mean[c]) / (float)cfg.image_std[c];
            if (p.pixel_values[r * p.patch_dim + d] != want && bad++ < 5)
                fprintf(stderr, "  pixel_values[%lld][%lld]: got %.9g want %.9g (pixel y %lld x %lld c %d)\n",
                        (long long)r, (long long)d, p.pixel_values[r * p.patch_dim + d], want,
                        (long long)(py0 + py), (long long)(px0 + px), c);
        }
    }
    EXPECT(!bad, "patch order or values wrong");
    maye_patches_free(&p);
    img.width = 15; // not a multiple of P * M = 6
    EXPECT_FAIL(maye_image_patchify(&img, &cfg, &p), "not a multiple of patch_size * merge_size = 6");
    maye_image_free(&img);

    // Each of the 256 uint8 values of each channel, normalised exactly as numpy does it in float32.
    maye_image_processor_config_default(&cfg);
    maye_image all = {.height = 28, .width = 28, .pixels = malloc(28 * 28 * 3)};
    for (int i = 0; i < 28 * 28 * 3; i++) all.pixels[i] = (uint8_t)(i / 3);
    EXPECT_OK(maye_image_patchify(&all, &cfg, &p));
    EXPECT(p.pixel_values[0] == (0.0f - 0.48145466f) / 0.26862954f, "value 0, channel 0: %.9g", p.pixel_values[0]);
    float v255 = (1.0f - 0.40821073f) / 0.27577711f;
    int found = 0;
    for (int64_t i = 0; i < p.n_patches * p.patch_dim; i++) found |= p.pixel_values[i] == v255;
    EXPECT(found, "value 255 of channel 2 (%.9g) not found", v255);
    maye_patches_free(&p);
    maye_image_free(&all);
}

static void test_preprocess_file(void) {
    // A 20 x 30 gray PNG: smart_resize scales it up to 56 x 84 (min_pixels 3136), grid 4 x 6.
    char *path = maye_path_join(test_tmpdir(), "gray.png");
    FILE *f = fopen(path, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (!f || !png || !info || setjmp(png_jmpbuf(png))) maye_die("cannot write %s", path);
    png_init_io(png, f);
    png_set_IHDR(png, info, 30, 20, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    uint8_t row[30];
    for (int y = 0; y < 20; y++) {
        for (int x = 0; x < 30; x++) row[x] = (uint8_t)(x * 8 + y);
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(f);

    maye_image_processor_config cfg;
    maye_image_processor_config_default(&cfg);
    maye_patches p;
    EXPECT_OK(maye_image_preprocess_file(path, &cfg, &p));
    EXPECT(p.grid_thw[0] == 1 && p.grid_thw[1] == 4 && p.grid_thw[2] == 6 && p.patch_dim == 1176,
           "grid (%lld, %lld, %lld) dim %lld", (long long)p.grid_thw[0], (long long)p.grid_thw[1],
           (long long)p.grid_thw[2], (long long)p.patch_dim);
    // Gray replicated to RGB: channel 0 and 1 of the same pixel differ only by the per-channel mean/std.
    if (p.pixel_values) {
        float r = p.pixel_values[0], g = p.pixel_values[2 * 14 * 14];
        float x = r * 0.26862954f + 0.48145466f, y = g * 0.26130258f + 0.4578275f;
        EXPECT(x - y < 1e-6f && y - x < 1e-6f, "gray not replicated: %g vs %g", x, y);
    }
    maye_patches_free(&p);
    cfg.min_pixels = 100; // 20 x 30 rounds to 28 x 28, within [100, 1000]: grid 2 x 2
    cfg.max_pixels = 1000;
    EXPECT_OK(maye_image_preprocess_file(path, &cfg, &p));
    EXPECT(p.grid_thw[1] == 2 && p.grid_thw[2] == 2, "lowered bounds: grid %lld x %lld", (long long)p.grid_thw[1],
           (long long)p.grid_thw[2]);
    maye_patches_free(&p);
    char *missing = maye_path_join(test_tmpdir(), "missing.png");
    EXPECT_FAIL(maye_image_preprocess_file(missing, &cfg, &p), "missing.png");
    free(missing);
    free(path);
}

int main(void) {
    test_config();
    test_patchify();
    test_preprocess_file();
    return TEST_RESULT();
}
