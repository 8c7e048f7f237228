// PNG and JPEG decoding into 8-bit RGB with the pixel values the Python reference pipeline produces: PIL
// opens the file (its modes and its reduction of 16-bit and low-bit-depth samples), then transformers'
// convert_to_rgb calls PIL's convert("RGB"), which ignores transparency (MAYE_ALPHA_DROP). Optionally
// (MAYE_ALPHA_WHITE) transparency is first composited over opaque white with PIL's integer arithmetic
// (Image.alpha_composite of the image converted to RGBA). libpng and libjpeg report errors through
// setjmp/longjmp so a corrupt file becomes an error message, never a crash or an exit.
#include "vision/image.h"

#include "core/error.h"
#include "core/util.h"

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Most progressive JPEG scans libjpeg is allowed to read (crafted files can hold millions of tiny scans).
#define MAX_JPEG_SCANS 1000
// Largest ancillary PNG chunk (text, ICC profile) libpng may decompress.
#define MAX_PNG_CHUNK_BYTES (8u << 20)

void maye_image_free(maye_image *img) {
    free(img->pixels);
    img->pixels = NULL;
    img->height = img->width = 0;
}

// ----------------------------------------------------------------------------
// PIL arithmetic: compositing over white, CMYK to RGB

// One channel of Image.alpha_composite(white, src) for an opaque white background (AlphaComposite.c with
// dst = (255, 255, 255, 255)): outa = 255 * 255, coef1 = a * 128 (7 precision bits), coef2 = (255 - a) * 128,
// then a rounded division by 255 done with shifts.
static inline uint8_t over_white(unsigned v, unsigned a) {
    if (a == 0) return 255;
    unsigned coef1 = a << 7, coef2 = (255u - a) << 7;
    unsigned tmp = v * coef1 + 255u * coef2 + (0x80u << 7);
    return (uint8_t)((((tmp >> 8) + tmp) >> 8) >> 7);
}

// PIL's MULDIV255: a * b / 255, rounded, with shifts.
static inline unsigned muldiv255(unsigned a, unsigned b) {
    unsigned tmp = a * b + 128;
    return ((tmp >> 8) + tmp) >> 8;
}

// PIL opens Adobe-style CMYK JPEGs inverted ("CMYK;I") and converts with cmyk2rgb; `raw` is what libjpeg
// returns. CMYK has no transparency, so both alpha modes give these values.
static inline void cmyk_to_rgb(const uint8_t *raw, uint8_t *rgb) {
    unsigned nk = raw[3]; // 255 - inverted K
    for (int c = 0; c < 3; c++) {
        int v = (int)nk - (int)muldiv255(255u - raw[c], nk);
        rgb[c] = (uint8_t)(v < 0 ? 0 : v);
    }
}

// ----------------------------------------------------------------------------
// PNG

typedef struct {
    jmp_buf jmp;
    const char *kind;    // what went wrong, before msg: "corrupt or unsupported PNG file: " by default
    char msg[200];
    const uint8_t *data; // (n) the whole file
    size_t n, pos;
} png_source;

static void png_on_error(png_structp png, png_const_charp msg) {
    png_source *src = png_get_error_ptr(png);
    snprintf(src->msg, sizeof src->msg, "%s", msg);
    longjmp(src->jmp, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {}

static void png_read_mem(png_structp png, png_bytep out, png_size_t len) {
    png_source *src = png_get_io_ptr(png);
    if (len > src->n - src->pos) png_error(png, "file is truncated");
    memcpy(out, src->data + src->pos, len);
    src->pos += len;
}

// The 8-bit value PIL holds for a gray sample of `depth` bits (modes "1", "L" scale up; "I;16" keeps the
// 16-bit value, which convert("RGB") then clips to 255).
static inline unsigned gray_sample(const uint8_t *row, int x, int depth) {
    switch (depth) {
    case 1: return row[x] ? 255 : 0;
    case 2: return row[x] * 85u;
    case 4: return row[x] * 17u;
    case 8: return row[x];
    default: return (unsigned)row[2 * x] << 8 | row[2 * x + 1];
    }
}

// What the row conversion needs to know about a PNG.
typedef struct {
    int color_type, depth;
    int white;                 // composite transparency over white (MAYE_ALPHA_WHITE)
    int has_trns_gray;         // (white only) a tRNS chunk on a gray image: one fully transparent gray value
    unsigned trns_gray;        // that value, as PIL compares it (see png_prepare_layout)
    uint8_t palette[256][4];   // RGBA; entries past PLTE are (0, 0, 0, 255) as in PIL
} png_layout;

// A colour sample `v` with alpha `a` in the chosen alpha mode.
static inline uint8_t with_alpha(const png_layout *L, unsigned v, unsigned a) {
    return L->white ? over_white(v, a) : (uint8_t)v;
}

// Converts one decoded row (samples unpacked to one byte each, 16-bit samples big-endian) to RGB.
static void png_convert_row(const png_layout *L, const uint8_t *row, int w, uint8_t *rgb) {
    int hi = L->depth == 16 ? 2 : 1; // byte stride of one sample; 16-bit keeps the high byte
    switch (L->color_type) {
    case PNG_COLOR_TYPE_GRAY:
        for (int x = 0; x < w; x++) {
            unsigned v = gray_sample(row, x, L->depth);
            uint8_t out = L->has_trns_gray && v == L->trns_gray ? 255 : (uint8_t)(v > 255 ? 255 : v);
            rgb[3 * x] = rgb[3 * x + 1] = rgb[3 * x + 2] = out;
        }
        break;
    case PNG_COLOR_TYPE_GRAY_ALPHA:
        for (int x = 0; x < w; x++) {
            uint8_t out = with_alpha(L, row[2 * hi * x], row[2 * hi * x + hi]);
            rgb[3 * x] = rgb[3 * x + 1] = rgb[3 * x + 2] = out;
        }
        break;
    case PNG_COLOR_TYPE_RGB:
        if (hi == 1) memcpy(rgb, row, (size_t)w * 3);
        else
            for (int x = 0; x < 3 * w; x++) rgb[x] = row[2 * x];
        break;
    case PNG_COLOR_TYPE_RGB_ALPHA:
        for (int x = 0; x < w; x++) {
            const uint8_t *p = row + 4 * hi * x;
            for (int c = 0; c < 3; c++) rgb[3 * x + c] = with_alpha(L, p[hi * c], p[3 * hi]);
        }
        break;
    case PNG_COLOR_TYPE_PALETTE:
        for (int x = 0; x < w; x++) {
            const uint8_t *e = L->palette[row[x]];
            for (int c = 0; c < 3; c++) rgb[3 * x + c] = with_alpha(L, e[c], e[3]);
        }
        break;
    }
}

// The raw tRNS chunk of a palette image (before the first IDAT), or NULL. PIL applies its alphas to the
// palette entries in order whatever its length; libpng drops a tRNS longer than the palette, so the chunk
// is looked up directly. A damaged chunk never gets here: libpng reads (and CRC-checks) it first.
static const uint8_t *png_find_trns(const uint8_t *data, size_t n, size_t *len) {
    size_t pos = 8;
    while (pos + 8 <= n) {
        size_t clen = (size_t)data[pos] << 24 | (size_t)data[pos + 1] << 16 | (size_t)data[pos + 2] << 8 |
                      data[pos + 3];
        const uint8_t *type = data + pos + 4;
        if (!memcmp(type, "IDAT", 4) || clen > n - pos - 8) return NULL;
        if (!memcmp(type, "tRNS", 4)) {
            *len = clen;
            return data + pos + 8;
        }
        if (n - pos - 8 - clen < 4) return NULL;
        pos += 12 + clen;
    }
    return NULL;
}

// Reads the palette and transparency the way PIL applies them.
static void png_prepare_layout(png_structp png, png_infop info, const png_source *src, maye_alpha_mode alpha,
                               png_layout *L) {
    L->color_type = png_get_color_type(png, info);
    L->depth = png_get_bit_depth(png, info);
    L->white = alpha == MAYE_ALPHA_WHITE;
    L->has_trns_gray = 0;
    png_bytep trns_alpha = NULL;
    int num_trns = 0;
    png_color_16p trns_color = NULL;
    if (L->white && L->color_type == PNG_COLOR_TYPE_GRAY && png_get_valid(png, info, PNG_INFO_tRNS) &&
        png_get_tRNS(png, info, &trns_alpha, &num_trns, &trns_color) && trns_color) {
        L->has_trns_gray = 1;
        // PIL's mode "1" makes any non-zero tRNS value mean white; other depths compare the raw value with
        // the scaled sample (so a 2-bit value 1 never matches the sample 85, as in PIL).
        L->trns_gray = L->depth == 1 ? (trns_color->gray ? 255 : 0) : trns_color->gray;
    }
    if (L->color_type == PNG_COLOR_TYPE_PALETTE) {
        png_colorp plte = NULL;
        int num_plte = 0;
        if (!png_get_PLTE(png, info, &plte, &num_plte)) png_error(png, "palette image without a PLTE chunk");
        size_t trns_len = 0;
        const uint8_t *trns = png_find_trns(src->data, src->n, &trns_len);
        for (int i = 0; i < 256; i++) {
            L->palette[i][0] = i < num_plte ? plte[i].red : 0;
            L->palette[i][1] = i < num_plte ? plte[i].green : 0;
            L->palette[i][2] = i < num_plte ? plte[i].blue : 0;
            L->palette[i][3] = trns && (size_t)i < trns_len ? trns[i] : 255;
        }
    }
}

static int decode_png(maye_image *out, const uint8_t *data, size_t n, const char *name, int64_t max_pixels,
                      maye_alpha_mode alpha) {
    png_source src = {.data = data, .n = n, .kind = "corrupt or unsupported PNG file: "};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return maye_fail("%s: cannot initialise the PNG decoder (out of memory?)", name);
    }
    uint8_t *volatile raw = NULL;   // (H, row bytes) decoded rows
    png_bytep *volatile rows = NULL; // (H) pointers into raw
    if (setjmp(src.jmp)) {
        free(raw);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        maye_image_free(out);
        return maye_fail("%s: %s%s", name, src.kind, src.msg);
    }
    png_set_read_fn(png, &src, png_read_mem);
    png_set_chunk_malloc_max(png, MAX_PNG_CHUNK_BYTES);
    // PIL refuses a file with any bad chunk checksum; libpng would only warn about ancillary chunks.
    png_set_crc_action(png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    if ((int64_t)w * h > max_pixels) {
        src.kind = "";
        snprintf(src.msg, sizeof src.msg, "image of %u x %u pixels exceeds the limit of %lld pixels "
                 "(a decompression bomb?)", (unsigned)w, (unsigned)h, (long long)max_pixels);
        longjmp(src.jmp, 1);
    }
    png_layout L;
    png_prepare_layout(png, info, &src, alpha, &L);
    if (L.depth < 8) png_set_packing(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    raw = xmalloc(rowbytes * h);
    rows = xmalloc(sizeof(png_bytep) * h);
    for (png_uint_32 y = 0; y < h; y++) rows[y] = raw + rowbytes * y;
    png_read_image(png, rows);

    out->height = (int)h;
    out->width = (int)w;
    out->pixels = xmalloc((size_t)w * h * 3);
    for (png_uint_32 y = 0; y < h; y++) png_convert_row(&L, rows[y], (int)w, out->pixels + (size_t)y * w * 3);
    free(raw);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    return 0;
}

// ----------------------------------------------------------------------------
// JPEG

typedef struct {
    struct jpeg_error_mgr mgr; // first, so the libjpeg error pointer is also ours
    jmp_buf jmp;
    const char *kind;          // as in png_source
    char msg[JMSG_LENGTH_MAX];
} jpeg_errors;

static void jpeg_on_error(j_common_ptr cinfo) {
    jpeg_errors *e = (jpeg_errors *)cinfo->err;
    cinfo->err->format_message(cinfo, e->msg);
    longjmp(e->jmp, 1);
}

// Warnings are ignored (as PIL does) except a premature end of data: PIL refuses truncated images.
static void jpeg_on_message(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) jpeg_on_error(cinfo);
}

static void jpeg_on_progress(j_common_ptr cinfo) {
    if (cinfo->is_decompressor && ((j_decompress_ptr)cinfo)->input_scan_number > MAX_JPEG_SCANS) {
        jpeg_errors *e = (jpeg_errors *)cinfo->err;
        snprintf(e->msg, sizeof e->msg, "more than %d progressive scans", MAX_JPEG_SCANS);
        longjmp(e->jmp, 1);
    }
}

static int decode_jpeg(maye_image *out, const uint8_t *data, size_t n, const char *name, int64_t max_pixels) {
    struct jpeg_decompress_struct cinfo;
    jpeg_errors err;
    struct jpeg_progress_mgr progress = {.progress_monitor = jpeg_on_progress};
    uint8_t *volatile row = NULL; // (W * components) one decoded scanline
    err.kind = "corrupt or unsupported JPEG file: ";
    cinfo.err = jpeg_std_error(&err.mgr);
    err.mgr.error_exit = jpeg_on_error;
    err.mgr.emit_message = jpeg_on_message;
    if (setjmp(err.jmp)) {
        free(row);
        jpeg_destroy_decompress(&cinfo);
        maye_image_free(out);
        return maye_fail("%s: %s%s", name, err.kind, err.msg);
    }
    jpeg_create_decompress(&cinfo);
    cinfo.progress = &progress;
    jpeg_mem_src(&cinfo, data, (unsigned long)n);
    jpeg_read_header(&cinfo, TRUE);
    if ((int64_t)cinfo.image_width * cinfo.image_height > max_pixels) {
        err.kind = "";
        snprintf(err.msg, sizeof err.msg, "image of %u x %u pixels exceeds the limit of %lld pixels "
                 "(a decompression bomb?)", cinfo.image_width, cinfo.image_height, (long long)max_pixels);
        longjmp(err.jmp, 1);
    }
    switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE: cinfo.out_color_space = JCS_GRAYSCALE; break;
    case JCS_CMYK:
    case JCS_YCCK: cinfo.out_color_space = JCS_CMYK; break;
    default: cinfo.out_color_space = JCS_RGB; break;
    }
    jpeg_start_decompress(&cinfo);
    int w = (int)cinfo.output_width, h = (int)cinfo.output_height, nc = cinfo.output_components;
    row = xmalloc((size_t)w * nc);
    out->height = h;
    out->width = w;
    out->pixels = xmalloc((size_t)w * h * 3);
    while ((int)cinfo.output_scanline < h) {
        uint8_t *rgb = out->pixels + (size_t)cinfo.output_scanline * w * 3;
        JSAMPROW rp = row;
        if (jpeg_read_scanlines(&cinfo, &rp, 1) != 1) {
            snprintf(err.msg, sizeof err.msg, "no data for row %u", cinfo.output_scanline);
            longjmp(err.jmp, 1);
        }
        if (nc == 3) memcpy(rgb, row, (size_t)w * 3);
        else if (nc == 1)
            for (int x = 0; x < w; x++) rgb[3 * x] = rgb[3 * x + 1] = rgb[3 * x + 2] = row[x];
        else
            for (int x = 0; x < w; x++) cmyk_to_rgb(row + 4 * x, rgb + 3 * x);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row);
    return 0;
}

// ----------------------------------------------------------------------------
// entry points

int maye_image_decode_alpha(maye_image *out, const void *data, size_t n, const char *name, int64_t max_pixels,
                            maye_alpha_mode alpha) {
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    const uint8_t *p = data;
    out->height = out->width = 0;
    out->pixels = NULL;
    if (max_pixels <= 0) max_pixels = MAYE_IMAGE_MAX_PIXELS_DEFAULT;
    if (n >= 8 && !memcmp(p, png_sig, 8)) return decode_png(out, p, n, name, max_pixels, alpha);
    if (n >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff) return decode_jpeg(out, p, n, name, max_pixels);
    return maye_fail("%s: not a PNG or JPEG file (%zu bytes; unknown signature); convert the image to PNG or "
                     "JPEG", name, n);
}

int maye_image_load_alpha(maye_image *out, const char *path, int64_t max_pixels, maye_alpha_mode alpha) {
    maye_buf buf = {0};
    out->height = out->width = 0;
    out->pixels = NULL;
    if (maye_read_file(path, &buf) < 0) return -1;
    int rc = maye_image_decode_alpha(out, buf.data, buf.len, path, max_pixels, alpha);
    maye_buf_free(&buf);
    return rc;
}

int maye_image_decode(maye_image *out, const void *data, size_t n, const char *name, int64_t max_pixels) {
    return maye_image_decode_alpha(out, data, n, name, max_pixels, MAYE_ALPHA_DROP);
}

int maye_image_load(maye_image *out, const char *path, int64_t max_pixels) {
    return maye_image_load_alpha(out, path, max_pixels, MAYE_ALPHA_DROP);
}
