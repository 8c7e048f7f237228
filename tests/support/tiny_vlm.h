// A tiny Qwen2-VL config for stage-level tests: its vocabulary and vision ids are those of a tokenizer (the
// demo tokenizer), its vision tower takes the Qwen2-VL image processor's patches (14 px, merge 2, 2 frames).
#pragma once
#include "text/tokenizer.h"

// The config.json text (caller frees).
char *test_tiny_vlm_config(const maye_tokenizer *tok);
