// Bicubic resize identical to PIL's Image.resize(size, Image.BICUBIC) on 8-bit images (libImaging's
// ImagingResample with the default box (0, 0, W, H)): two separable passes, horizontal first over only the
// input rows the vertical pass will read, then vertical. Each output sample is a weighted sum over a window
// of input samples; the window is the cubic kernel's support (2, with a = -0.5) widened by the downscale
// factor. Weights are computed in double, normalised to sum 1, converted to fixed point with 22 fraction
// bits (round half away from zero), accumulated in int with a rounding bias and clipped to 0..255 after
// each pass. The intermediate image is 8-bit, as in PIL. (Pillow 13 runs the vertical pass first when the
// height is reduced more than the width, which changes some pixels by a few levels; the reference
// fixtures were made with the horizontal-first order of earlier Pillow versions, reproduced here.)
//
// The weight computation must round exactly like PIL's C code: fused multiply-adds would change the last
// bit of some weights and, through the fixed-point rounding, occasionally an output pixel. Contraction is
// therefore turned off for this file.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "vision/image.h"

#include "core/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS (32 - 8 - 2)
#define BICUBIC_SUPPORT 2.0

// ----------------------------------------------------------------------------
// coefficients

typedef struct {
    int n_out;     // number of output samples along the axis
    int ksize;     // maximum window length
    int *first;    // (n_out) first input sample of each window
    int *count;    // (n_out) window length (<= ksize)
    int32_t *kk;   // (n_out, ksize) fixed-point weights
} resample_axis;

// Keys' cubic convolution kernel with a = -0.5.
static double bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

// Weights for resampling `in_size` samples (the box [0, in_size) given as floats, as PIL does) to `out_size`.
static void axis_init(resample_axis *ax, int in_size, int out_size) {
    float in0 = 0.0f, in1 = (float)in_size;
    double scale = (double)(in1 - in0) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = BICUBIC_SUPPORT * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    double *w = xmalloc(sizeof(double) * ksize);
    ax->n_out = out_size;
    ax->ksize = ksize;
    ax->first = xmalloc(sizeof(int) * out_size);
    ax->count = xmalloc(sizeof(int) * out_size);
    ax->kk = xcalloc((size_t)out_size * ksize, sizeof(int32_t));
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale;
        double ss = 1.0 / filterscale, ww = 0.0;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            w[x] = bicubic((x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        int32_t *k = ax->kk + (size_t)xx * ksize;
        for (int x = 0; x < xmax; x++) {
            double v = ww != 0.0 ? w[x] / ww : w[x];
            k[x] = (int32_t)(v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS));
        }
        ax->first[xx] = xmin;
        ax->count[xx] = xmax;
    }
    free(w);
}

static void axis_free(resample_axis *ax) {
    free(ax->first);
    free(ax->count);
    free(ax->kk);
}

static inline uint8_t clip8(int32_t v) {
    v >>= PRECISION_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

// ----------------------------------------------------------------------------
// passes (3 interleaved channels)

// Rows [y0, y0 + n_rows) of src (width in_w) resampled horizontally into dst (width ax->n_out).
static void pass_horizontal(const uint8_t *src, int in_w, int y0, int n_rows, const resample_axis *ax,
                            uint8_t *dst) {
    int out_w = ax->n_out;
#pragma omp parallel for schedule(static) if ((int64_t)n_rows * out_w * ax->ksize > 200000)
    for (int y = 0; y < n_rows; y++) {
        const uint8_t *in = src + (size_t)(y0 + y) * in_w * 3;
        uint8_t *out = dst + (size_t)y * out_w * 3;
        for (int xx = 0; xx < out_w; xx++) {
            const int32_t *k = ax->kk + (size_t)xx * ax->ksize;
            const uint8_t *p = in + (size_t)ax->first[xx] * 3;
            int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int x = 0; x < ax->count[xx]; x++) {
                s0 += p[3 * x] * k[x];
                s1 += p[3 * x + 1] * k[x];
                s2 += p[3 * x + 2] * k[x];
            }
            out[3 * xx] = clip8(s0);
            out[3 * xx + 1] = clip8(s1);
            out[3 * xx + 2] = clip8(s2);
        }
    }
}

// src (width w) resampled vertically into dst (ax->n_out rows); window starts are shifted up by y_shift rows
// (the rows the horizontal pass skipped). Sums run row by row into an accumulator row so the inner loop is
// contiguous; integer sums do not depend on the order.
static void pass_vertical(const uint8_t *src, int w, int y_shift, const resample_axis *ax, uint8_t *dst) {
    size_t row = (size_t)w * 3;
#pragma omp parallel if ((int64_t)ax->n_out * w * ax->ksize > 200000)
    {
        int32_t *acc = xmalloc(sizeof(int32_t) * row);
#pragma omp for schedule(static)
        for (int yy = 0; yy < ax->n_out; yy++) {
            const int32_t *k = ax->kk + (size_t)yy * ax->ksize;
            const uint8_t *in = src + (size_t)(ax->first[yy] - y_shift) * row;
            for (size_t i = 0; i < row; i++) acc[i] = 1 << (PRECISION_BITS - 1);
            for (int y = 0; y < ax->count[yy]; y++) {
                const uint8_t *p = in + (size_t)y * row;
                int32_t ky = k[y];
                for (size_t i = 0; i < row; i++) acc[i] += p[i] * ky;
            }
            uint8_t *out = dst + (size_t)yy * row;
            for (size_t i = 0; i < row; i++) out[i] = clip8(acc[i]);
        }
        free(acc);
    }
}

// ----------------------------------------------------------------------------
// entry point

int maye_image_resize_bicubic(const maye_image *in, int out_h, int out_w, maye_image *out) {
    out->height = out->width = 0;
    out->pixels = NULL;
    CHECK_OR_FAIL(in->height > 0 && in->width > 0 && in->pixels, "resize: the input image is empty (%d x %d)",
                  in->height, in->width);
    CHECK_OR_FAIL(out_h > 0 && out_w > 0, "resize: invalid target size %d x %d", out_h, out_w);
    out->pixels = xmalloc((size_t)out_h * out_w * 3);
    out->height = out_h;
    out->width = out_w;
    int need_h = out_w != in->width, need_v = out_h != in->height;
    if (!need_h && !need_v) {
        memcpy(out->pixels, in->pixels, (size_t)out_h * out_w * 3);
        return 0;
    }
    resample_axis vert;
    axis_init(&vert, in->height, out_h);
    if (!need_h) {
        pass_vertical(in->pixels, in->width, 0, &vert, out->pixels);
        axis_free(&vert);
        return 0;
    }
    // The vertical pass reads input rows [first used, last used); the horizontal pass produces only those.
    int y_first = vert.first[0];
    int y_last = vert.first[out_h - 1] + vert.count[out_h - 1];
    ASSERT(need_v || (y_first == 0 && y_last == out_h));
    resample_axis horiz;
    axis_init(&horiz, in->width, out_w);
    uint8_t *dst = need_v ? xmalloc((size_t)(y_last - y_first) * out_w * 3) : out->pixels;
    pass_horizontal(in->pixels, in->width, y_first, y_last - y_first, &horiz, dst);
    if (need_v) {
        pass_vertical(dst, out_w, y_first, &vert, out->pixels);
        free(dst);
    }
    axis_free(&horiz);
    axis_free(&vert);
    return 0;
}
