// The hyper-parameters of a Qwen2-VL / Qwen2.5-VL checkpoint, read from its config.json. Both layouts real
// checkpoints use are accepted: the classic one (text keys at the top level, `vision_config` beside them) and
// the nested one (`text_config` + `vision_config`, token ids at the top level), with `rope_scaling` or
// `rope_parameters` holding `mrope_section`. Absent optional keys take transformers' defaults; a missing
// required key, a bad value or an unsupported architecture is an error naming the file and the key.
#pragma once
#include "kernels/cpu/kernels.h"

#include <stdint.h>

typedef enum { MAYE_ARCH_QWEN2_VL, MAYE_ARCH_QWEN2_5_VL } maye_arch;

#define MAYE_MAX_VISION_DEPTH 256

typedef struct {
    maye_arch arch;

    // language model
    int vocab;             // V
    int hidden;            // C
    int layers;            // L
    int heads;             // H
    int kv_heads;          // KV
    int head_dim;          // D = C / H
    int intermediate;      // I
    float rms_eps;
    float rope_theta;
    int mrope_section[3];  // half-dims rotated by the temporal / height / width position; sums to D / 2
    int tie_embeddings;    // lm_head shares the embedding table
    float initializer_range;

    // token ids (never constants: every checkpoint says its own)
    int64_t image_token_id, video_token_id, vision_start_token_id, vision_end_token_id;

    // vision tower and merger
    struct {
        int depth;          // VL blocks
        int width;          // VC (Qwen2-VL embed_dim, Qwen2.5-VL hidden_size)
        int heads;          // VH
        int head_dim;       // VD = VC / VH
        int intermediate;   // VI: MLP width (embed_dim * mlp_ratio, or intermediate_size)
        int in_chans, patch, temporal_patch, merge;
        int patch_dim;      // in_chans * temporal_patch * patch * patch (1176)
        int out_hidden;     // merger output = C
        act_kind act;       // MLP activation (quick_gelu for Qwen2-VL, silu gated for Qwen2.5-VL)
        int window_size;    // Qwen2.5-VL: window side in pixels
        int tokens_per_second;
        unsigned char full_attention[MAYE_MAX_VISION_DEPTH]; // Qwen2.5-VL: 1 for fullatt_block_indexes
    } vision;
} maye_model_config;

// Parses config.json text; `where` names the file in messages.
int maye_model_config_parse(maye_model_config *c, const char *json, const char *where);
// Reads and parses a config.json file.
int maye_model_config_load(maye_model_config *c, const char *path);
const char *maye_arch_name(maye_arch a);
