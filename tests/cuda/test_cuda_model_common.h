// Shared pieces of the GPU model tests (test_cuda_model*.cu): random model configs of both architectures
// (odd sizes that take the SIMT / scalar paths, and tensor-core head dims 64/80/128), random prompts with
// images, packed batches with M-RoPE positions, host <-> device helpers for the model's dtype, and the
// discovery of the golden fixture folders and their samples.
#pragma once
#include "cuda_test.h"

extern "C" {
#include "io/safetensors.h"
}
#include "model/cuda/model.h"

#include <algorithm>
#include <dirent.h>
#include <string>
#include <vector>

// ----------------------------------------------------------------------------
// random models

// Qwen2-VL, odd: hidden 30 (3 heads of 10, 1 KV head), MLP 34, vocab 97; vision width 24 (3 heads of 8),
// patch 2, temporal 1, merge 2 (12 values per patch).
#define TEST_QWEN2_VL_ODD                                                                                     \
    "{\"architectures\": [\"Qwen2VLForConditionalGeneration\"], \"model_type\": \"qwen2_vl\","                \
    " \"vocab_size\": 97, \"hidden_size\": 30, \"intermediate_size\": 34, \"num_hidden_layers\": 2,"          \
    " \"num_attention_heads\": 3, \"num_key_value_heads\": 1, \"rms_norm_eps\": 1e-6, \"rope_theta\": 10000.0," \
    " \"tie_word_embeddings\": false, \"initializer_range\": 0.1, \"eos_token_id\": 92,"                       \
    " \"rope_scaling\": {\"type\": \"mrope\", \"mrope_section\": [2, 2, 1]},"                                  \
    " \"image_token_id\": 90, \"video_token_id\": 91, \"vision_start_token_id\": 88, \"vision_end_token_id\": 89," \
    " \"vision_config\": {\"depth\": 2, \"embed_dim\": 24, \"mlp_ratio\": 1.5, \"num_heads\": 3, \"in_chans\": 3," \
    "   \"hidden_size\": 30, \"patch_size\": 2, \"spatial_merge_size\": 2, \"temporal_patch_size\": 1,"         \
    "   \"hidden_act\": \"quick_gelu\"}}"

// Qwen2.5-VL, odd: hidden 30, tied embeddings, window attention (2 x 2 merged units per window, block 1 full).
#define TEST_QWEN25_VL_ODD                                                                                    \
    "{\"architectures\": [\"Qwen2_5_VLForConditionalGeneration\"], \"model_type\": \"qwen2_5_vl\","           \
    " \"vocab_size\": 101, \"hidden_size\": 30, \"intermediate_size\": 40, \"num_hidden_layers\": 2,"         \
    " \"num_attention_heads\": 3, \"num_key_value_heads\": 1, \"rms_norm_eps\": 1e-6, \"rope_theta\": 10000.0," \
    " \"tie_word_embeddings\": true, \"initializer_range\": 0.1, \"eos_token_id\": [92, 95],"                   \
    " \"rope_scaling\": {\"type\": \"mrope\", \"mrope_section\": [2, 2, 1]},"                                  \
    " \"image_token_id\": 90, \"video_token_id\": 91, \"vision_start_token_id\": 88, \"vision_end_token_id\": 89," \
    " \"vision_config\": {\"depth\": 2, \"hidden_size\": 16, \"intermediate_size\": 20, \"num_heads\": 2,"      \
    "   \"in_chans\": 3, \"out_hidden_size\": 30, \"patch_size\": 2, \"spatial_merge_size\": 2,"               \
    "   \"temporal_patch_size\": 1, \"window_size\": 8, \"fullatt_block_indexes\": [1], \"hidden_act\": \"silu\"}}"

// Qwen2.5-VL with tensor-core head dims: hidden 256 (4 heads of 64, 2 KV heads), vision 160 (2 heads of 80).
#define TEST_QWEN25_VL_TC                                                                                     \
    "{\"architectures\": [\"Qwen2_5_VLForConditionalGeneration\"], \"model_type\": \"qwen2_5_vl\","           \
    " \"vocab_size\": 1000, \"hidden_size\": 256, \"intermediate_size\": 384, \"num_hidden_layers\": 2,"      \
    " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"rms_norm_eps\": 1e-6, \"rope_theta\": 1000000.0," \
    " \"tie_word_embeddings\": false, \"initializer_range\": 0.03, \"eos_token_id\": 995,"                     \
    " \"rope_scaling\": {\"type\": \"mrope\", \"mrope_section\": [8, 12, 12]},"                                \
    " \"image_token_id\": 990, \"video_token_id\": 991, \"vision_start_token_id\": 988,"                       \
    " \"vision_end_token_id\": 989,"                                                                           \
    " \"vision_config\": {\"depth\": 2, \"hidden_size\": 160, \"intermediate_size\": 320, \"num_heads\": 2,"   \
    "   \"in_chans\": 3, \"out_hidden_size\": 256, \"patch_size\": 2, \"spatial_merge_size\": 2,"              \
    "   \"temporal_patch_size\": 1, \"window_size\": 8, \"fullatt_block_indexes\": [1], \"hidden_act\": \"silu\"}}"

// Qwen2-VL with tensor-core head dims: hidden 256 (2 heads of 128, 1 KV head), vision 160 (2 heads of 80).
#define TEST_QWEN2_VL_TC                                                                                      \
    "{\"architectures\": [\"Qwen2VLForConditionalGeneration\"], \"model_type\": \"qwen2_vl\","                \
    " \"vocab_size\": 1000, \"hidden_size\": 256, \"intermediate_size\": 320, \"num_hidden_layers\": 2,"      \
    " \"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"rms_norm_eps\": 1e-6, \"rope_theta\": 1000000.0," \
    " \"tie_word_embeddings\": true, \"initializer_range\": 0.03, \"eos_token_id\": 995,"                      \
    " \"rope_scaling\": {\"type\": \"mrope\", \"mrope_section\": [16, 24, 24]},"                               \
    " \"image_token_id\": 990, \"video_token_id\": 991, \"vision_start_token_id\": 988,"                       \
    " \"vision_end_token_id\": 989,"                                                                           \
    " \"vision_config\": {\"depth\": 2, \"embed_dim\": 160, \"mlp_ratio\": 2, \"num_heads\": 2, \"in_chans\": 3," \
    "   \"hidden_size\": 256, \"patch_size\": 2, \"spatial_merge_size\": 2, \"temporal_patch_size\": 1,"       \
    "   \"hidden_act\": \"quick_gelu\"}}"

struct TestModelSpec {
    const char *name, *json;
};

static const TestModelSpec test_models[] = {
    {"random qwen2-vl odd", TEST_QWEN2_VL_ODD},
    {"random qwen2.5-vl odd", TEST_QWEN25_VL_ODD},
    {"random qwen2.5-vl D64/VD80", TEST_QWEN25_VL_TC},
    {"random qwen2-vl D128/VD80", TEST_QWEN2_VL_TC},
};

// ----------------------------------------------------------------------------
// prompts and packed batches

// A prompt: n_text random ids, then (gh, gw > 0) <|vision_start|>, the pads of a (1, gh, gw) image,
// <|vision_end|>, then n_text2 random ids; random pixels for the image.
struct TestPrompt {
    std::vector<int64_t> ids;
    std::vector<float> pixels; // (P, PD)
    std::vector<int64_t> grid; // (n_images, 3)
    int n_images = 0;
    int64_t P = 0;
};

static inline TestPrompt test_prompt(const maye_model_config *c, int n_text, int gh, int gw, int n_text2, uint64_t seed) {
    TestPrompt p;
    maye_rng rng;
    maye_rng_init(&rng, seed, 0x70726f6d7074ULL);
    int64_t lo = c->vision_start_token_id < c->image_token_id ? c->vision_start_token_id : c->image_token_id;
    for (int i = 0; i < n_text; i++) p.ids.push_back((int64_t)maye_rng_below(&rng, (uint64_t)lo));
    if (gh > 0) {
        int pads = gh * gw / (c->vision.merge * c->vision.merge);
        p.ids.push_back(c->vision_start_token_id);
        for (int i = 0; i < pads; i++) p.ids.push_back(c->image_token_id);
        p.ids.push_back(c->vision_end_token_id);
        p.n_images = 1;
        p.grid = {1, gh, gw};
        p.P = (int64_t)gh * gw;
        p.pixels.resize((size_t)(p.P * c->vision.patch_dim));
        for (float &x : p.pixels) x = maye_rng_normal(&rng);
    }
    for (int i = 0; i < n_text2; i++) p.ids.push_back((int64_t)maye_rng_below(&rng, (uint64_t)lo));
    return p;
}

// Several prompts packed, each optionally followed by a response: ids, cu_seqlens, positions (3, T), the
// images' pixels and grids in order; with responses, n_prompt (B) (an image-pad id in a response is an
// ordinary token, its positions continue as text).
struct TestBatch {
    int B = 0, T = 0, n_images = 0;
    int64_t P = 0, NI = 0;
    std::vector<int> cu, n_prompt;
    std::vector<int64_t> ids, pos, grid, deltas;
    std::vector<float> pixels;
    const int *n_prompt_or_null() const { return n_prompt.empty() ? NULL : n_prompt.data(); }
};

static inline TestBatch test_batch(const maye_model_config *c, const std::vector<TestPrompt> &ps,
                                   const std::vector<std::vector<int64_t>> &responses = {}) {
    TestBatch b;
    b.B = (int)ps.size();
    b.cu.push_back(0);
    for (size_t i = 0; i < ps.size(); i++) {
        const TestPrompt &p = ps[i];
        b.ids.insert(b.ids.end(), p.ids.begin(), p.ids.end());
        b.T += (int)p.ids.size();
        if (!responses.empty()) {
            b.n_prompt.push_back((int)p.ids.size());
            b.ids.insert(b.ids.end(), responses[i].begin(), responses[i].end());
            b.T += (int)responses[i].size();
        }
        b.cu.push_back(b.T);
        if (p.n_images) {
            b.grid.insert(b.grid.end(), p.grid.begin(), p.grid.end());
            b.pixels.insert(b.pixels.end(), p.pixels.begin(), p.pixels.end());
            b.n_images += p.n_images;
            b.P += p.P;
        }
    }
    b.pos.resize(3 * (size_t)b.T);
    for (int i = 0; i < b.B; i++) {
        int64_t delta = 0;
        const TestPrompt &p = ps[i];
        int n = (int)p.ids.size(), len = b.cu[i + 1] - b.cu[i];
        if (maye_mrope_positions(c, p.ids.data(), n, p.grid.data(), p.n_images, b.pos.data() + b.cu[i], b.T, &delta) < 0 ||
            maye_mrope_positions_response(c, b.ids.data() + b.cu[i], len, n, p.grid.data(), p.n_images,
                                          b.pos.data() + b.cu[i], b.T) < 0)
            maye_die("test batch positions: %s", maye_errmsg());
        b.deltas.push_back(delta);
    }
    if (maye_vision_check(c, b.P, b.grid.data(), b.n_images, &b.NI) < 0) maye_die("test batch: %s", maye_errmsg());
    return b;
}

// ----------------------------------------------------------------------------
// the model's dtype on the device

// NI x C image features of the GPU vision tower for a batch's images (device memory of the model's dtype).
static inline void *gpu_image_embeds(cuda_model *gm, const TestBatch &b) {
    size_t bytes = (size_t)(b.NI > 0 ? b.NI : 1) * gm->cfg.hidden * dt_size(gm->dt);
    void *d = dev_alloc(bytes);
    if (b.n_images) EXPECT_OK(cuda_vision_forward(gm, b.pixels.data(), b.P, b.grid.data(), b.n_images, d));
    EXPECT_OK(cuda_model_sync(gm));
    return d;
}

static inline cuda_llm_batch gpu_batch(const TestBatch &b, const void *embeds) {
    cuda_llm_batch g = {b.B, b.T, b.cu.data(), b.ids.data(), b.pos.data(), b.NI ? embeds : NULL, b.NI,
                        b.n_prompt_or_null()};
    return g;
}

// ----------------------------------------------------------------------------
// golden fixtures

// The model folders under $MAYE_FIXTURES/golden holding config.json + model.safetensors + expected.safetensors,
// sorted; empty without fixtures.
static inline std::vector<std::string> golden_model_dirs() {
    std::vector<std::string> out;
    const char *fx = test_fixtures_root();
    if (!fx) return out;
    char *root = maye_path_join(fx, "golden");
    DIR *d = opendir(root);
    if (d) {
        for (struct dirent *e; (e = readdir(d)) != NULL;) {
            if (e->d_name[0] == '.') continue;
            std::string dir = std::string(root) + "/" + e->d_name;
            if (maye_file_exists((dir + "/config.json").c_str()) && maye_file_exists((dir + "/model.safetensors").c_str()) &&
                maye_file_exists((dir + "/expected.safetensors").c_str()))
                out.push_back(dir);
        }
        closedir(d);
    }
    free(root);
    std::sort(out.begin(), out.end());
    return out;
}

// Sample names of a fixture (the prefixes of its `<sample>.input_ids` tensors), sorted.
static inline std::vector<std::string> golden_samples(const maye_safetensors *st) {
    std::vector<std::string> out;
    for (int i = 0; i < st->ntensors; i++) {
        const char *tn = st->tensors[i].name, *dot = strchr(tn, '.');
        if (dot && !strcmp(dot, ".input_ids")) out.push_back(std::string(tn, (size_t)(dot - tn)));
    }
    std::sort(out.begin(), out.end());
    return out;
}

// A float copy of tensor `prefix.name` (empty when absent).
static inline std::vector<float> golden_f32(const maye_safetensors *st, const std::string &prefix, const char *name) {
    std::vector<float> out;
    const maye_st_tensor *t = maye_st_find(st, (prefix + "." + name).c_str());
    if (!t) return out;
    out.resize((size_t)t->numel);
    maye_st_to_f32(t, out.data());
    return out;
}

static inline std::vector<int64_t> golden_i64(const maye_safetensors *st, const std::string &prefix, const char *name) {
    std::vector<int64_t> out;
    const maye_st_tensor *t = maye_st_find(st, (prefix + "." + name).c_str());
    if (!t) return out;
    out.resize((size_t)t->numel);
    if (maye_st_to_i64(t, out.data()) < 0) maye_die("%s", maye_errmsg());
    return out;
}

// A fixture sample as one prompt (its first n ids, all of them when n <= 0).
static inline TestPrompt golden_prompt(const maye_model_config *c, const maye_safetensors *st, const std::string &s, int n) {
    TestPrompt p;
    p.ids = golden_i64(st, s, "input_ids");
    if (n > 0 && n < (int)p.ids.size()) p.ids.resize((size_t)n);
    p.grid = golden_i64(st, s, "image_grid_thw");
    p.n_images = (int)(p.grid.size() / 3);
    if (p.n_images) {
        p.pixels = golden_f32(st, s, "pixel_values");
        p.P = (int64_t)p.pixels.size() / c->vision.patch_dim;
    }
    return p;
}
