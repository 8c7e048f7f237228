// PNG and JPEG decoding: every PNG colour type and bit depth (written here with libpng, interlaced and not)
// gives the RGB values PIL gives (expected values measured with Pillow) in both alpha modes: convert("RGB"),
// what transformers' convert_to_rgb does, and alpha_composite over white,
// JPEG (RGB, gray, Adobe CMYK, written here with libjpeg) decodes close to its source, corrupt, truncated,
// unknown and oversized inputs are errors naming the file, and the bicubic resize reproduces PIL on a
// small image (values measured with Pillow, horizontal pass first).
#include "core/util.h"
#include "test.h"
#include "vision/image.h"

#include <jpeglib.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *tmp(const char *name) { return maye_path_join(test_tmpdir(), name); }

// ----------------------------------------------------------------------------
// writing test files

typedef struct {
    int w, h, depth, color_type, interlace;
    const uint8_t *samples;  // (h, w * channels) one byte per sample, or two (big-endian) at depth 16
    const uint8_t *palette;  // (n_palette, 3)
    int n_palette;
    const uint8_t *trns;     // palette alphas, or a 2-byte big-endian gray value
    int n_trns;
} png_spec;

static int channels(int color_type) {
    switch (color_type) {
    case PNG_COLOR_TYPE_GRAY_ALPHA: return 2;
    case PNG_COLOR_TYPE_RGB: return 3;
    case PNG_COLOR_TYPE_RGB_ALPHA: return 4;
    default: return 1;
    }
}

static void write_png(const char *path, const png_spec *s) {
    FILE *f = fopen(path, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (!f || !png || !info || setjmp(png_jmpbuf(png))) maye_die("cannot write test PNG %s", path);
    png_init_io(png, f);
    png_set_IHDR(png, info, s->w, s->h, s->depth, s->color_type,
                 s->interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (s->palette) {
        png_color pal[256];
        for (int i = 0; i < s->n_palette; i++)
            pal[i] = (png_color){s->palette[3 * i], s->palette[3 * i + 1], s->palette[3 * i + 2]};
        png_set_PLTE(png, info, pal, s->n_palette);
    }
    if (s->trns && s->color_type == PNG_COLOR_TYPE_PALETTE) png_set_tRNS(png, info, s->trns, s->n_trns, NULL);
    if (s->trns && s->color_type == PNG_COLOR_TYPE_GRAY) {
        png_color_16 c = {.gray = (png_uint_16)(s->trns[0] << 8 | s->trns[1])};
        png_set_tRNS(png, info, NULL, 0, &c);
    }
    png_write_info(png, info);
    if (s->depth < 8) png_set_packing(png);
    int bytes_per_sample = s->depth == 16 ? 2 : 1;
    size_t row = (size_t)s->w * channels(s->color_type) * bytes_per_sample;
    png_bytep *rows = malloc(sizeof(png_bytep) * s->h);
    for (int y = 0; y < s->h; y++) rows[y] = (png_bytep)s->samples + row * y;
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    fclose(f);
}

// CRC-32 of PNG chunks (to forge a valid header with other dimensions).
static uint32_t png_crc(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xffffffffu;
}

// One row of 16-bit samples, big-endian.
static void be16(uint8_t *out, const unsigned *v, int n) {
    for (int i = 0; i < n; i++) out[2 * i] = (uint8_t)(v[i] >> 8), out[2 * i + 1] = (uint8_t)v[i];
}

// Decodes the PNG written from `s` (interlaced and not) in both alpha modes and compares row 0 with
// want_drop (PIL's convert("RGB"), what transformers does) and want_white (alpha_composite over white);
// want_* hold w RGB triples, or w gray values to replicate when gray is set.
static void check_png(const char *label, png_spec s, const uint8_t *want_drop, const uint8_t *want_white, int gray) {
    for (int il = 0; il < 2; il++) {
        s.interlace = il;
        char name[128];
        snprintf(name, sizeof name, "%s%s.png", label, il ? "-interlaced" : "");
        char *path = tmp(name);
        write_png(path, &s);
        for (int mode = 0; mode < 2; mode++) {
            const uint8_t *want = mode ? want_white : want_drop;
            maye_image img;
            EXPECT_OK(maye_image_load_alpha(&img, path, 0, mode ? MAYE_ALPHA_WHITE : MAYE_ALPHA_DROP));
            if (!img.pixels) continue;
            EXPECT(img.width == s.w && img.height == s.h, "%s: %d x %d", name, img.width, img.height);
            int bad = 0;
            for (int x = 0; x < s.w * 3 && bad < 3; x++) {
                uint8_t w = gray ? want[x / 3] : want[x];
                if (img.pixels[x] != w && bad++ < 3)
                    fprintf(stderr, "  %s (alpha %s): pixel %d channel %d: got %u want %u\n", name,
                            mode ? "white" : "drop", x / 3, x % 3, img.pixels[x], w);
            }
            EXPECT(!bad, "%s (alpha %s): decoded values differ from PIL", name, mode ? "white" : "drop");
            maye_image_free(&img);
        }
        free(path);
    }
}

static void test_png_types(void) {
    // 16-bit gray: PIL opens it as "I;16" and convert("RGB") clips at 255; in white mode tRNS marks one
    // 16-bit value transparent.
    unsigned g16[8] = {0, 1, 255, 256, 300, 4095, 32768, 65535};
    uint8_t row16[16];
    be16(row16, g16, 8);
    const uint8_t want_g16[8] = {0, 1, 255, 255, 255, 255, 255, 255};
    check_png("gray16", (png_spec){.w = 8, .h = 1, .depth = 16, .color_type = PNG_COLOR_TYPE_GRAY, .samples = row16},
              want_g16, want_g16, 1);
    const uint8_t trns1[2] = {0, 1}, trns0[2] = {0, 0};
    const uint8_t want_g16_t1[8] = {0, 255, 255, 255, 255, 255, 255, 255};
    const uint8_t want_g16_t0[8] = {255, 1, 255, 255, 255, 255, 255, 255};
    check_png("gray16-trns1", (png_spec){.w = 8, .h = 1, .depth = 16, .color_type = PNG_COLOR_TYPE_GRAY,
                                         .samples = row16, .trns = trns1}, want_g16, want_g16_t1, 1);
    check_png("gray16-trns0", (png_spec){.w = 8, .h = 1, .depth = 16, .color_type = PNG_COLOR_TYPE_GRAY,
                                         .samples = row16, .trns = trns0}, want_g16, want_g16_t0, 1);

    // Low bit depths scale up (x255, x85, x17); tRNS is compared with the scaled value (PIL's mode "L").
    const uint8_t g2[8] = {0, 1, 2, 3, 0, 1, 2, 3};
    const uint8_t want_g2[8] = {0, 85, 170, 255, 0, 85, 170, 255};
    check_png("gray2", (png_spec){.w = 8, .h = 1, .depth = 2, .color_type = PNG_COLOR_TYPE_GRAY, .samples = g2},
              want_g2, want_g2, 1);
    // A (valid) 2-bit tRNS value is compared with the scaled samples, so it never matches (as in PIL).
    check_png("gray2-trns1", (png_spec){.w = 8, .h = 1, .depth = 2, .color_type = PNG_COLOR_TYPE_GRAY,
                                        .samples = g2, .trns = trns1}, want_g2, want_g2, 1);
    const uint8_t g4[4] = {0, 1, 7, 15};
    const uint8_t want_g4[4] = {0, 17, 119, 255};
    check_png("gray4", (png_spec){.w = 4, .h = 1, .depth = 4, .color_type = PNG_COLOR_TYPE_GRAY, .samples = g4},
              want_g4, want_g4, 1);
    const uint8_t g1[8] = {0, 1, 0, 1, 1, 1, 0, 0};
    const uint8_t want_g1[8] = {0, 255, 0, 255, 255, 255, 0, 0};
    const uint8_t all_white[8] = {255, 255, 255, 255, 255, 255, 255, 255};
    check_png("gray1", (png_spec){.w = 8, .h = 1, .depth = 1, .color_type = PNG_COLOR_TYPE_GRAY, .samples = g1},
              want_g1, want_g1, 1);
    check_png("gray1-trns0", (png_spec){.w = 8, .h = 1, .depth = 1, .color_type = PNG_COLOR_TYPE_GRAY,
                                        .samples = g1, .trns = trns0}, want_g1, all_white, 1);
    const uint8_t g8[4] = {0, 5, 6, 200}, trns5[2] = {0, 5};
    const uint8_t want_g8_t5[4] = {0, 255, 6, 200};
    check_png("gray8-trns5", (png_spec){.w = 4, .h = 1, .depth = 8, .color_type = PNG_COLOR_TYPE_GRAY,
                                        .samples = g8, .trns = trns5}, g8, want_g8_t5, 1);

    // Gray + alpha (8 and 16 bit; 16-bit keeps the high byte).
    const uint8_t la8[6] = {100, 0, 100, 128, 100, 255};
    const uint8_t want_la8_drop[3] = {100, 100, 100}, want_la8_white[3] = {255, 177, 100};
    check_png("gray-alpha8", (png_spec){.w = 3, .h = 1, .depth = 8, .color_type = PNG_COLOR_TYPE_GRAY_ALPHA,
                                        .samples = la8}, want_la8_drop, want_la8_white, 1);
    unsigned la16v[8] = {256, 256, 4095, 4095, 32768, 32768, 65535, 65535};
    uint8_t la16[16];
    be16(la16, la16v, 8);
    const uint8_t want_la16_drop[4] = {1, 15, 128, 255}, want_la16_white[4] = {254, 241, 191, 255};
    check_png("gray-alpha16", (png_spec){.w = 4, .h = 1, .depth = 16, .color_type = PNG_COLOR_TYPE_GRAY_ALPHA,
                                         .samples = la16}, want_la16_drop, want_la16_white, 1);

    // RGB (8 and 16 bit) and RGBA.
    const uint8_t rgb8[6] = {1, 2, 3, 250, 128, 0};
    check_png("rgb8", (png_spec){.w = 2, .h = 1, .depth = 8, .color_type = PNG_COLOR_TYPE_RGB, .samples = rgb8},
              rgb8, rgb8, 0);
    unsigned rgb16v[6] = {256, 65279, 128, 32768, 32767, 16384};
    uint8_t rgb16[12];
    be16(rgb16, rgb16v, 6);
    const uint8_t want_rgb16[6] = {1, 254, 0, 128, 127, 64};
    check_png("rgb16", (png_spec){.w = 2, .h = 1, .depth = 16, .color_type = PNG_COLOR_TYPE_RGB, .samples = rgb16},
              want_rgb16, want_rgb16, 0);
    unsigned rgba16v[8] = {4095, 61440, 2047, 4095, 32768, 32767, 16384, 32768};
    uint8_t rgba16[16];
    be16(rgba16, rgba16v, 8);
    const uint8_t want_rgba16_drop[6] = {15, 240, 7, 128, 127, 64};
    const uint8_t want_rgba16_white[6] = {241, 254, 240, 191, 191, 159};
    check_png("rgba16", (png_spec){.w = 2, .h = 1, .depth = 16, .color_type = PNG_COLOR_TYPE_RGB_ALPHA,
                                   .samples = rgba16}, want_rgba16_drop, want_rgba16_white, 0);
    const uint8_t rgba8[12] = {10, 20, 30, 0, 10, 20, 30, 255, 100, 0, 200, 128};
    const uint8_t want_rgba8_drop[9] = {10, 20, 30, 10, 20, 30, 100, 0, 200};
    const uint8_t want_rgba8_white[9] = {255, 255, 255, 10, 20, 30, 177, 127, 227};
    check_png("rgba8", (png_spec){.w = 3, .h = 1, .depth = 8, .color_type = PNG_COLOR_TYPE_RGB_ALPHA,
                                  .samples = rgba8}, want_rgba8_drop, want_rgba8_white, 0);

    // Palette, with tRNS (shorter than the palette: the rest is opaque) and at 2 bits.
    const uint8_t pal[9] = {10, 20, 30, 40, 50, 60, 70, 80, 90}, ptrns[2] = {0, 128}, idx[3] = {0, 1, 2};
    const uint8_t want_p_white[9] = {255, 255, 255, 147, 152, 157, 70, 80, 90};
    check_png("palette8", (png_spec){.w = 3, .h = 1, .depth = 8, .color_type = PNG_COLOR_TYPE_PALETTE,
                                     .samples = idx, .palette = pal, .n_palette = 3}, pal, pal, 0);
    check_png("palette8-trns", (png_spec){.w = 3, .h = 1, .depth = 8, .color_type = PNG_COLOR_TYPE_PALETTE,
                                          .samples = idx, .palette = pal, .n_palette = 3, .trns = ptrns, .n_trns = 2},
              pal, want_p_white, 0);
    check_png("palette2-trns", (png_spec){.w = 3, .h = 1, .depth = 2, .color_type = PNG_COLOR_TYPE_PALETTE,
                                          .samples = idx, .palette = pal, .n_palette = 3, .trns = ptrns, .n_trns = 2},
              pal, want_p_white, 0);

    // A larger interlaced image decodes exactly like its non-interlaced twin.
    enum { W = 37, H = 23 };
    static uint8_t big[H * W * 4];
    for (int i = 0; i < H * W * 4; i++) big[i] = (uint8_t)(i * 7 + i / 13);
    maye_image a, b;
    png_spec s = {.w = W, .h = H, .depth = 8, .color_type = PNG_COLOR_TYPE_RGB_ALPHA, .samples = big};
    char *p0 = tmp("big.png"), *p1 = tmp("big-interlaced.png");
    write_png(p0, &s);
    s.interlace = 1;
    write_png(p1, &s);
    EXPECT_OK(maye_image_load(&a, p0, 0));
    EXPECT_OK(maye_image_load(&b, p1, 0));
    EXPECT(a.pixels && b.pixels && !memcmp(a.pixels, b.pixels, (size_t)W * H * 3),
           "interlaced PNG decodes differently");
    maye_image_free(&a);
    maye_image_free(&b);
    free(p0);
    free(p1);
}

// ----------------------------------------------------------------------------
// JPEG

static void write_jpeg(const char *path, const uint8_t *pixels, int w, int h, int components, J_COLOR_SPACE cs) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    FILE *f = fopen(path, "wb");
    if (!f) maye_die("cannot write %s", path);
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = w;
    c.image_height = h;
    c.input_components = components;
    c.in_color_space = cs;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 98, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)pixels + (size_t)c.next_scanline * w * components;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(f);
}

// Max |decoded - want| over all samples (want is RGB).
static int max_diff(const maye_image *img, const uint8_t *want) {
    int m = 0;
    for (int i = 0; i < img->width * img->height * 3; i++) {
        int d = abs((int)img->pixels[i] - (int)want[i]);
        if (d > m) m = d;
    }
    return m;
}

static void test_jpeg(void) {
    enum { W = 48, H = 32 };
    static uint8_t rgb[H * W * 3], gray[H * W], gray_rgb[H * W * 3], cmyk[H * W * 4], cmyk_rgb[H * W * 3];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t *p = rgb + (y * W + x) * 3;
            p[0] = (uint8_t)(x * 5), p[1] = (uint8_t)(y * 7), p[2] = (uint8_t)(128 + x - y);
            gray[y * W + x] = (uint8_t)(x * 3 + y * 2);
            memset(gray_rgb + (y * W + x) * 3, gray[y * W + x], 3);
            // Adobe CMYK is stored inverted: raw C = 0 with raw K = 255 is full cyan and no black.
            uint8_t *q = cmyk + (y * W + x) * 4, *r = cmyk_rgb + (y * W + x) * 3;
            int left = x < W / 2;
            q[0] = left ? 0 : 255, q[1] = 255, q[2] = left ? 255 : 0, q[3] = 255;
            r[0] = left ? 0 : 255, r[1] = 255, r[2] = left ? 255 : 0;
        }
    struct {
        const char *name;
        const uint8_t *pixels, *want;
        int components;
        J_COLOR_SPACE cs;
        int tol;
    } cases[] = {
        {"rgb.jpg", rgb, rgb, 3, JCS_RGB, 12},
        {"gray.jpg", gray, gray_rgb, 1, JCS_GRAYSCALE, 3},
        {"cmyk.jpg", cmyk, cmyk_rgb, 4, JCS_CMYK, 6},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *path = tmp(cases[i].name);
        write_jpeg(path, cases[i].pixels, W, H, cases[i].components, cases[i].cs);
        maye_image img;
        EXPECT_OK(maye_image_load(&img, path, 0));
        if (img.pixels) {
            EXPECT(img.width == W && img.height == H, "%s: %d x %d", cases[i].name, img.width, img.height);
            int d = max_diff(&img, cases[i].want);
            EXPECT(d <= cases[i].tol, "%s: max |decoded - source| = %d > %d", cases[i].name, d, cases[i].tol);
        }
        maye_image_free(&img);
        free(path);
    }
}

// ----------------------------------------------------------------------------
// bad input

static void test_errors(void) {
    uint8_t px[64 * 48 * 3];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 31);
    char *png_path = tmp("ok.png"), *jpg_path = tmp("ok.jpg");
    write_png(png_path, &(png_spec){.w = 64, .h = 48, .depth = 8, .color_type = PNG_COLOR_TYPE_RGB, .samples = px});
    write_jpeg(jpg_path, px, 64, 48, 3, JCS_RGB);
    maye_buf png = {0}, jpg = {0};
    EXPECT_OK(maye_read_file(png_path, &png));
    EXPECT_OK(maye_read_file(jpg_path, &jpg));
    maye_image img;

    EXPECT_FAIL(maye_image_decode(&img, png.data, png.len / 2, "cut.png", 0), "cut.png");
    EXPECT_FAIL(maye_image_decode(&img, png.data, 40, "header-only.png", 0), "header-only.png: corrupt");
    EXPECT_FAIL(maye_image_decode(&img, jpg.data, jpg.len / 2, "cut.jpg", 0), "cut.jpg: corrupt");
    EXPECT_FAIL(maye_image_decode(&img, jpg.data, 200, "cut-early.jpg", 0), "cut-early.jpg");
    EXPECT_FAIL(maye_image_decode(&img, "GIF89a....", 10, "anim.gif", 0), "anim.gif: not a PNG or JPEG");
    EXPECT_FAIL(maye_image_decode(&img, "", 0, "empty.png", 0), "empty.png");
    EXPECT(img.pixels == NULL, "failed decode left pixels behind");

    // A flipped byte inside the PNG's image data: the chunk checksum no longer matches.
    maye_buf bad = {0};
    maye_buf_append(&bad, png.data, png.len);
    bad.data[png.len - 30] ^= 0x55;
    EXPECT_FAIL(maye_image_decode(&img, bad.data, bad.len, "flipped.png", 0), "flipped.png: corrupt");
    // Garbage in the JPEG's entropy-coded data after the headers is tolerated or reported, never a crash.
    maye_buf_clear(&bad);
    maye_buf_append(&bad, jpg.data, jpg.len);
    for (size_t i = jpg.len / 3; i < jpg.len - 2; i += 7) bad.data[i] = (char)0xff;
    if (maye_image_decode(&img, bad.data, bad.len, "garbled.jpg", 0) == 0) maye_image_free(&img);
    else EXPECT(test_contains(maye_errmsg(), "garbled.jpg"), "message '%s' lacks the file name", maye_errmsg());

    // Decompression bombs: dimensions over the limit are refused before any pixel is allocated.
    EXPECT_FAIL(maye_image_decode(&img, png.data, png.len, "small-limit.png", 1000), "exceeds the limit of 1000");
    EXPECT_FAIL(maye_image_decode(&img, jpg.data, jpg.len, "small-limit.jpg", 1000), "exceeds the limit of 1000");
    maye_buf_clear(&bad);
    maye_buf_append(&bad, png.data, png.len);
    const uint8_t ihdr_big[8] = {0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0}; // 100000 x 100000
    memcpy(bad.data + 16, ihdr_big, 8);
    uint32_t crc = png_crc((const uint8_t *)bad.data + 12, 17);
    for (int i = 0; i < 4; i++) bad.data[29 + i] = (char)(crc >> (24 - 8 * i));
    EXPECT_FAIL(maye_image_decode(&img, bad.data, bad.len, "bomb.png", 0), "bomb.png: image of 100000 x 100000 pixels "
                "exceeds the limit");

    char *missing = tmp("no-such-image.png");
    EXPECT_FAIL(maye_image_load(&img, missing, 0), "no-such-image.png");
    maye_buf_free(&bad);
    maye_buf_free(&png);
    maye_buf_free(&jpg);
    free(missing);
    free(png_path);
    free(jpg_path);
}

// ----------------------------------------------------------------------------
// bicubic resize

static void test_resize(void) {
    enum { H = 5, W = 7 };
    maye_image in = {.height = H, .width = W, .pixels = malloc(H * W * 3)};
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            uint8_t *p = in.pixels + (y * W + x) * 3;
            p[0] = (uint8_t)((37 * x + 11 * y * y) % 256), p[1] = (uint8_t)((200 - 23 * y + 5 * x) % 256);
            p[2] = (uint8_t)((x * y * 29) % 256);
        }
    // Pillow's Image.resize((w, h), BICUBIC) of that image (horizontal pass first).
    static const uint8_t want_3x4[36] = {17, 194, 4, 79, 202, 23, 148, 212, 48, 217, 220, 70, 61, 156, 25, 127, 164,
                                         109, 196, 174, 150, 117, 182, 95, 168, 118, 52, 185, 126, 151, 117, 136, 119,
                                         89, 144, 114};
    static const uint8_t want_5x3[45] = {27, 204, 0, 111, 215, 0, 195, 226, 0, 38, 181, 21, 122, 192, 87, 206, 203,
                                         153, 71, 158, 43, 163, 169, 170, 141, 180, 96, 127, 135, 72, 206, 146, 87,
                                         84, 157, 96, 212, 112, 94, 105, 123, 163, 106, 134, 137};
    static const uint8_t want_2x7[42] = {12, 180, 0, 49, 185, 25, 86, 190, 50, 131, 195, 75, 168, 200, 100, 198, 205,
                                         71, 174, 210, 89, 113, 128, 0, 150, 133, 91, 187, 138, 182, 135, 143, 78,
                                         172, 148, 169, 103, 153, 110, 79, 158, 95};
    struct {
        int h, w;
        const uint8_t *want;
    } cases[] = {{3, 4, want_3x4}, {5, 3, want_5x3}, {2, 7, want_2x7}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        maye_image out;
        EXPECT_OK(maye_image_resize_bicubic(&in, cases[i].h, cases[i].w, &out));
        int n = cases[i].h * cases[i].w * 3, bad = 0;
        for (int j = 0; j < n; j++)
            if (out.pixels[j] != cases[i].want[j] && bad++ < 3)
                fprintf(stderr, "  resize to %d x %d: value %d (pixel %d, channel %d): got %u want %u\n", cases[i].h,
                        cases[i].w, j, j / 3, j % 3, out.pixels[j], cases[i].want[j]);
        EXPECT(!bad, "resize %d x %d -> %d x %d differs from PIL in %d values", H, W, cases[i].h, cases[i].w, bad);
        maye_image_free(&out);
    }
    maye_image same;
    EXPECT_OK(maye_image_resize_bicubic(&in, H, W, &same));
    EXPECT(!memcmp(same.pixels, in.pixels, H * W * 3), "same-size resize is not a copy");
    maye_image_free(&same);

    // A constant image stays constant through up- and downscaling (the weights sum to one).
    maye_image flat = {.height = 61, .width = 83, .pixels = malloc(61 * 83 * 3)};
    memset(flat.pixels, 173, 61 * 83 * 3);
    const int sizes[][2] = {{7, 200}, {300, 5}, {61, 29}, {1, 1}};
    for (int i = 0; i < 4; i++) {
        maye_image out;
        EXPECT_OK(maye_image_resize_bicubic(&flat, sizes[i][0], sizes[i][1], &out));
        int ok = 1;
        for (int j = 0; j < sizes[i][0] * sizes[i][1] * 3; j++) ok &= out.pixels[j] == 173;
        EXPECT(ok, "constant image changed when resized to %d x %d", sizes[i][0], sizes[i][1]);
        maye_image_free(&out);
    }
    maye_image out;
    EXPECT_FAIL(maye_image_resize_bicubic(&flat, 0, 5, &out), "invalid target size");
    maye_image_free(&flat);
    maye_image_free(&in);
}

int main(void) {
    test_png_types();
    test_jpeg();
    test_errors();
    test_resize();
    return TEST_RESULT();
}
