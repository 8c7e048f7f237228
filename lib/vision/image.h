// Images for the vision pipeline: PNG (libpng) and JPEG (libjpeg-turbo) decoding from a file or from memory
// into 8-bit RGB exactly the way the Qwen2-VL Python pipeline sees them (PIL opens the file, transformers'
// convert_to_rgb converts it with PIL's convert("RGB")), and PIL's bicubic resize (Image.resize(size,
// BICUBIC)) reproduced bit for bit. A corrupt, truncated or absurdly large file is an error naming the file.
//
// Dimension letters: H height, W width (pixels); pixels are stored row-major, channels last (R, G, B).
#pragma once
#include <stddef.h>
#include <stdint.h>

// PIL's decompression-bomb limit (2 x Image.MAX_IMAGE_PIXELS): larger images are refused.
#define MAYE_IMAGE_MAX_PIXELS_DEFAULT 178956970LL

typedef struct {
    int height;      // H
    int width;       // W
    uint8_t *pixels; // (H, W, 3) RGB
} maye_image;

// ----------------------------------------------------------------------------
// decoding

// What happens to transparency (alpha channels, PNG tRNS) on the way to RGB.
typedef enum {
    // PIL's convert("RGB"): ignored. This is what transformers' convert_to_rgb (used by the Qwen2-VL image
    // processors) does, so it is the reference behaviour and the default.
    MAYE_ALPHA_DROP = 0,
    // Composited over opaque white first (PIL's Image.alpha_composite with the image converted to RGBA):
    // transparent pixels become white, as in pipelines that paste images on a white background.
    MAYE_ALPHA_WHITE,
} maye_alpha_mode;

// Decodes a PNG or JPEG held in memory (`name` is used in messages; the format comes from the signature)
// and converts it to RGB with MAYE_ALPHA_DROP. Images with more than `max_pixels` pixels (0:
// MAYE_IMAGE_MAX_PIXELS_DEFAULT) are refused. Returns -1 with a message naming `name` on any problem; out is
// then empty.
int maye_image_decode(maye_image *out, const void *data, size_t n, const char *name, int64_t max_pixels);
// Reads and decodes a file (see maye_image_decode).
int maye_image_load(maye_image *out, const char *path, int64_t max_pixels);
// The same with a choice of alpha mode.
int maye_image_decode_alpha(maye_image *out, const void *data, size_t n, const char *name, int64_t max_pixels,
                            maye_alpha_mode alpha);
int maye_image_load_alpha(maye_image *out, const char *path, int64_t max_pixels, maye_alpha_mode alpha);
void maye_image_free(maye_image *img);

// ----------------------------------------------------------------------------
// resizing

// Resizes to (out_h, out_w) with PIL's bicubic filter (ImagingResample on 8-bit data: separable passes,
// horizontal first, support widened by the downscale factor, fixed-point coefficients). Equal sizes copy.
int maye_image_resize_bicubic(const maye_image *in, int out_h, int out_w, maye_image *out);
