// A tiny Qwen2-VL config matched to a tokenizer (see tiny_vlm.h).
#include "support/tiny_vlm.h"

#include "core/util.h"

char *test_tiny_vlm_config(const maye_tokenizer *tok) {
    maye_buf b = {0};
    maye_buf_printf(&b,
                    "{\"architectures\": [\"Qwen2VLForConditionalGeneration\"], \"model_type\": \"qwen2_vl\",\n"
                    " \"vocab_size\": %d, \"hidden_size\": 32, \"intermediate_size\": 48, \"num_hidden_layers\": 2,\n"
                    " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"rms_norm_eps\": 1e-6,\n"
                    " \"rope_theta\": 10000.0, \"hidden_act\": \"silu\", \"tie_word_embeddings\": true,\n"
                    " \"initializer_range\": 0.1, \"rope_scaling\": {\"type\": \"mrope\", \"mrope_section\": [1, 1, 2]},\n"
                    " \"image_token_id\": %d, \"video_token_id\": %d, \"vision_start_token_id\": %d,\n"
                    " \"vision_end_token_id\": %d,\n"
                    " \"vision_config\": {\"depth\": 1, \"embed_dim\": 16, \"mlp_ratio\": 2, \"num_heads\": 2,\n"
                    "   \"in_chans\": 3, \"hidden_size\": 32, \"patch_size\": 14, \"spatial_merge_size\": 2,\n"
                    "   \"temporal_patch_size\": 2, \"hidden_act\": \"quick_gelu\"}}",
                    maye_tokenizer_vocab_size(tok), maye_tokenizer_token_id(tok, "<|image_pad|>"),
                    maye_tokenizer_token_id(tok, "<|video_pad|>"), maye_tokenizer_token_id(tok, "<|vision_start|>"),
                    maye_tokenizer_token_id(tok, "<|vision_end|>"));
    return b.data;
}
