// Shared pieces of the rollout tests: small random Qwen2-VL / Qwen2.5-VL models (one with odd sizes, whose
// rows are not 64-byte multiples) and random prompts with or without an image.
#pragma once
#include "core/rng.h"
#include "core/util.h"
#include "model/model.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

// Qwen2-VL: hidden 32, 4 heads, 2 kv heads, vision patch 2, merge 2, temporal 1 (12 values per patch).
#define TEST_MODEL_QWEN2_VL                                                                                    \
    "{\"architectures\": [\"Qwen2VLForConditionalGeneration\"], \"model_type\": \"qwen2_vl\"," \
    " \"vocab_size\": 97, \"hidden_size\": 32, \"intermediate_size\": 48, \"num_hidden_layers\": 2," \
    " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"rms_norm_eps\": 1e-6, \"rope_theta\": 10000.0," \
    " \"hidden_act\": \"silu\", \"tie_word_embeddings\": false, \"initializer_range\": 0.2, \"eos_token_id\": 92," \
    " \"rope_scaling\": {\"type\": \"mrope\", \"mrope_section\": [2, 1, 1]}," \
    " \"image_token_id\": 90, \"video_token_id\": 91, \"vision_start_token_id\": 88, \"vision_end_token_id\": 89," \
    " \"vision_config\": {\"depth\": 1, \"embed_dim\": 16, \"mlp_ratio\": 2, \"num_heads\": 2, \"in_chans\": 3," \
    "   \"hidden_size\": 32, \"patch_size\": 2, \"spatial_merge_size\": 2, \"temporal_patch_size\": 1," \
    "   \"hidden_act\": \"quick_gelu\"}}"

// Qwen2-VL with wide kv groups, as the released models have (2B: 6 query heads per kv head, 7B: 7):
// TEST_MODEL_GQA7 7 heads of 8 on 1 kv head (hidden 56), TEST_MODEL_GQA5 10 heads of 12 on 2 (hidden 120).
#define TEST_MODEL_GQA(hidden, heads, kv, section)                                                             \
    "{\"architectures\": [\"Qwen2VLForConditionalGeneration\"], \"model_type\": \"qwen2_vl\"," \
    " \"vocab_size\": 97, \"hidden_size\": " #hidden ", \"intermediate_size\": 64, \"num_hidden_layers\": 2," \
    " \"num_attention_heads\": " #heads ", \"num_key_value_heads\": " #kv ", \"rms_norm_eps\": 1e-6," \
    " \"rope_theta\": 10000.0, \"hidden_act\": \"silu\", \"tie_word_embeddings\": false," \
    " \"initializer_range\": 0.2, \"eos_token_id\": 92, \"rope_scaling\": {\"type\": \"mrope\"," \
    " \"mrope_section\": " section "}, \"image_token_id\": 90, \"video_token_id\": 91," \
    " \"vision_start_token_id\": 88, \"vision_end_token_id\": 89," \
    " \"vision_config\": {\"depth\": 1, \"embed_dim\": 16, \"mlp_ratio\": 2, \"num_heads\": 2, \"in_chans\": 3," \
    "   \"hidden_size\": " #hidden ", \"patch_size\": 2, \"spatial_merge_size\": 2, \"temporal_patch_size\": 1," \
    "   \"hidden_act\": \"quick_gelu\"}}"
#define TEST_MODEL_GQA7 TEST_MODEL_GQA(56, 7, 1, "[2, 1, 1]")
#define TEST_MODEL_GQA5 TEST_MODEL_GQA(120, 10, 2, "[2, 2, 2]")

// Qwen2.5-VL with odd sizes: hidden 30, 3 heads of 10, 1 kv head, MLP 40, window attention.
#define TEST_MODEL_QWEN25_ODD                                                                                  \
    "{\"architectures\": [\"Qwen2_5_VLForConditionalGeneration\"], \"model_type\": \"qwen2_5_vl\"," \
    " \"vocab_size\": 101, \"hidden_size\": 30, \"intermediate_size\": 40, \"num_hidden_layers\": 2," \
    " \"num_attention_heads\": 3, \"num_key_value_heads\": 1, \"rms_norm_eps\": 1e-6, \"rope_theta\": 10000.0," \
    " \"hidden_act\": \"silu\", \"tie_word_embeddings\": true, \"initializer_range\": 0.3," \
    " \"eos_token_id\": [92, 95]," \
    " \"rope_scaling\": {\"type\": \"mrope\", \"mrope_section\": [2, 2, 1]}," \
    " \"image_token_id\": 90, \"video_token_id\": 91, \"vision_start_token_id\": 88, \"vision_end_token_id\": 89," \
    " \"vision_config\": {\"depth\": 2, \"hidden_size\": 16, \"intermediate_size\": 20, \"num_heads\": 2," \
    "   \"in_chans\": 3, \"out_hidden_size\": 30, \"patch_size\": 2, \"spatial_merge_size\": 2," \
    "   \"temporal_patch_size\": 1, \"window_size\": 8, \"fullatt_block_indexes\": [1], \"hidden_act\": \"silu\"}}"

static void test_model(maye_model *m, const char *json, uint64_t seed) {
    if (maye_model_init(m, json, "test model", seed) < 0) maye_die("test model: %s", maye_errmsg());
}

// A prompt: n_text random ids, then (with gh, gw > 0) <|vision_start|>, the image pads of a (1, gh, gw) grid,
// <|vision_end|>, then n_text more random ids; random pixels for the image.
typedef struct {
    int64_t *ids;
    int n;
    float *pixels;   // (P, PD)
    int64_t P;
    int64_t grid[3];
    int n_images;
} test_prompt;

static void test_prompt_make(const maye_model_config *c, test_prompt *p, int n_text, int gh, int gw, uint64_t seed) {
    memset(p, 0, sizeof *p);
    maye_rng rng;
    maye_rng_init(&rng, seed, 0x70726f6d7074ULL);
    int merge = c->vision.merge, pads = gh > 0 ? gh * gw / (merge * merge) : 0;
    int64_t lo = c->vision_start_token_id;
    lo = c->image_token_id < lo ? c->image_token_id : lo;
    p->ids = xmalloc(sizeof(int64_t) * (size_t)(2 * n_text + pads + 2));
    for (int i = 0; i < n_text; i++) p->ids[p->n++] = (int64_t)maye_rng_below(&rng, (uint64_t)lo);
    if (pads) {
        p->ids[p->n++] = c->vision_start_token_id;
        for (int i = 0; i < pads; i++) p->ids[p->n++] = c->image_token_id;
        p->ids[p->n++] = c->vision_end_token_id;
        p->n_images = 1;
        p->grid[0] = 1, p->grid[1] = gh, p->grid[2] = gw;
        p->P = (int64_t)gh * gw;
        p->pixels = xmalloc(sizeof(float) * (size_t)(p->P * c->vision.patch_dim));
        for (int64_t i = 0; i < p->P * c->vision.patch_dim; i++) p->pixels[i] = maye_rng_normal(&rng);
    }
    for (int i = 0; i < n_text; i++) p->ids[p->n++] = (int64_t)maye_rng_below(&rng, (uint64_t)lo);
}

static void test_prompt_free(test_prompt *p) {
    free(p->ids);
    free(p->pixels);
    memset(p, 0, sizeof *p);
}
