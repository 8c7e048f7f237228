// The Qwen2-VL image processor (transformers' Qwen2VLImageProcessorPil, the PIL "slow" processor), split in
// three steps so the pipeline can carry the resized uint8 image in records and patchify later:
//   (1) maye_image_load: decode + convert to RGB uint8 (vision/image.h)
//   (2) maye_image_resize_for_model: smart_resize + PIL bicubic resize -> resized uint8 RGB
//   (3) maye_image_patchify: rescale, normalise, temporal duplication and patch order -> pixel_values + grid
// Values match the reference exactly (same float32/float64 steps in the same order).
//
// Dimension letters: H, W image height/width (pixels); P patch_size; M merge_size; T temporal_patch_size;
// N patches = grid_t * grid_h * grid_w; D = 3 * T * P * P values per patch.
#pragma once
#include "vision/image.h"

#include <stdint.h>

typedef struct {
    int patch_size;          // P (14)
    int merge_size;          // M (2)
    int temporal_patch_size; // T (2)
    int64_t min_pixels;      // smallest H * W after resizing (3136)
    int64_t max_pixels;      // largest H * W after resizing (12845056)
    double rescale_factor;   // 1/255
    double image_mean[3];    // CLIP mean, per RGB channel
    double image_std[3];     // CLIP std, per RGB channel
    maye_alpha_mode alpha;   // transparency on decoding (MAYE_ALPHA_DROP, as transformers; not in the JSON)
} maye_image_processor_config;

// The defaults of the Qwen2-VL checkpoints' preprocessor_config.json.
void maye_image_processor_config_default(maye_image_processor_config *cfg);
// Reads a preprocessor_config.json (a file, or a model directory holding one) over the current values.
// Keys: min_pixels, max_pixels, size {shortest_edge, longest_edge}, patch_size, merge_size,
// temporal_patch_size, image_mean, image_std, rescale_factor; resample and do_* flags are checked to be
// what this processor implements; other keys are ignored. Errors name the file and the key.
int maye_image_processor_config_load(maye_image_processor_config *cfg, const char *path);
// Checks that the values are usable (positive sizes, non-zero std); messages start with `what`.
int maye_image_processor_config_check(const maye_image_processor_config *cfg, const char *what);

// ----------------------------------------------------------------------------
// resizing

// transformers' smart_resize: both sides multiples of `factor` (P * M), H * W within [min_pixels,
// max_pixels], aspect ratio kept as far as possible (Python's round-half-to-even, floor and ceil). An aspect
// ratio over 200 is an error, as in the reference.
int maye_smart_resize(int height, int width, int factor, int64_t min_pixels, int64_t max_pixels, int *out_h,
                      int *out_w);
// Step (2): smart_resize with cfg, then PIL's bicubic resize (a copy when the size does not change).
int maye_image_resize_for_model(const maye_image *in, const maye_image_processor_config *cfg, maye_image *out);

// ----------------------------------------------------------------------------
// patchify

typedef struct {
    int64_t grid_thw[3];  // (grid_t, grid_h, grid_w) in patches
    int64_t n_patches;    // N
    int64_t patch_dim;    // D
    float *pixel_values;  // (N, D) ordered (grid_t, grid_h/M, grid_w/M, M, M) x (3, T, P, P)
} maye_patches;

// Step (3): rescale by rescale_factor (float64, then float32), normalise ((x - mean) / std in float32),
// repeat the single frame T times and lay out the patches as Qwen2-VL's vision tower expects. The image
// sides must be multiples of P * M (as step (2) produces).
int maye_image_patchify(const maye_image *resized, const maye_image_processor_config *cfg, maye_patches *out);
void maye_patches_free(maye_patches *p);

// Steps (1) to (3) for one file; errors name the file.
int maye_image_preprocess_file(const char *path, const maye_image_processor_config *cfg, maye_patches *out);
