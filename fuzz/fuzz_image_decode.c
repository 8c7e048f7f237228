// Fuzz target: arbitrary bytes through the PNG/JPEG decoders and the RGB conversion, then (for images that
// decode) smart_resize with a small pixel budget, the bicubic resize and patchify. Any crash, leak, hang or
// undefined behaviour is a bug; errors are the expected outcome for most inputs.
#include "core/error.h"
#include "vision/image.h"
#include "vision/image_processor.h"

#include <omp.h>
#include <stddef.h>
#include <stdint.h>

// Decoded images are limited to this many pixels so one input stays fast.
#define FUZZ_MAX_PIXELS (1 << 18)

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    omp_set_num_threads(1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    maye_image img, resized;
    maye_alpha_mode alpha = size % 2 ? MAYE_ALPHA_WHITE : MAYE_ALPHA_DROP; // both modes, by input length
    if (maye_image_decode_alpha(&img, data, size, "fuzz-input", FUZZ_MAX_PIXELS, alpha) < 0) return 0;
    // Small model settings (patch 2, merge 2, temporal 2) and a budget of at most 64 x 64 pixels.
    maye_image_processor_config cfg;
    maye_image_processor_config_default(&cfg);
    cfg.patch_size = 2;
    cfg.min_pixels = 16;
    cfg.max_pixels = 64 * 64;
    if (maye_image_resize_for_model(&img, &cfg, &resized) == 0) {
        maye_patches p;
        if (maye_image_patchify(&resized, &cfg, &p) == 0) maye_patches_free(&p);
        maye_image_free(&resized);
    }
    maye_image_free(&img);
    return 0;
}
