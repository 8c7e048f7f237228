// What the stages derive from the run configuration and from Query records before running the model: the
// tokenizer and image-processor settings of a run, and a Query's images as patches (pixel_values).
#pragma once
#include "core/config.h"
#include "schemas/maye.pb-c.h"
#include "vision/image_processor.h"

#include <stdint.h>

// The tokenizer file of a run: model.tokenizer, else <model.path>/tokenizer.json (caller frees). Fails when
// neither is set.
int maye_run_tokenizer_path(const maye_config *cfg, char **out);
// The image processor of a run: defaults, then <model.path>/preprocessor_config.json when present, then
// data.min_pixels / data.max_pixels when set, and data.alpha.
int maye_run_image_config(const maye_config *cfg, maye_image_processor_config *out);

// A Query's images as the vision tower takes them.
typedef struct {
    int n_images;
    int64_t *grid_thw; // (n_images, 3)
    int64_t n_patches; // P, summed over the images
    int64_t patch_dim; // PD
    float *pixels;     // (P, PD)
} maye_query_pixels;

// Patchifies every image of q (its resized uint8 RGB travels in the record); errors name the sample and
// the image. A query without images gives n_images = 0.
int maye_query_pixels_build(const Maye__Query *q, const maye_image_processor_config *img, maye_query_pixels *out);
void maye_query_pixels_free(maye_query_pixels *p);

// Fails unless this build can run the backend the run asks for (the one place that checks model.device,
// model.dtype and, first, update.weight_sync: maye_weight_sync_check): cpu in fp32, or cuda in fp32 or bf16
// when the build has the CUDA backend (make CUDA=1).
int maye_run_check_backend(const maye_config *cfg);
