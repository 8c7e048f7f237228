// The Qwen2-VL chat template for one user turn with images, as token ids or as text:
//   <|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n
//   <|vision_start|><|image_pad|>*N<|vision_end|> (per image, before the text){text}<|im_end|>\n
//   <|im_start|>assistant\n
// where an image of grid (t, h, w) patches becomes N = t*h*w / merge² <|image_pad|> tokens. Special ids
// are looked up in the tokenizer by their strings, never assumed. The ids equal what the tokenizer gives
// for the prompt text (text pieces are encoded with the same added-token matching).
#pragma once
#include "core/util.h"
#include "text/tokenizer.h"

#include <stdint.h>

#define MAYE_CHAT_DEFAULT_SYSTEM "You are a helpful assistant."
#define MAYE_CHAT_MAX_STOP 2

typedef struct {
    const maye_tokenizer *tok;
    int32_t im_start, im_end, vision_start, vision_end, image_pad; // ids of <|im_start|>, ...
    int32_t stop_ids[MAYE_CHAT_MAX_STOP]; // ids that end a response: <|im_end|>, <|endoftext|> (if present)
    int n_stop;
} maye_chat;

// One prompt: a system turn and a user turn whose images come before its text.
typedef struct {
    const char *system; // NULL: MAYE_CHAT_DEFAULT_SYSTEM
    const char *text;   // the user's text (NULL: empty)
    int n_images;
    const int64_t *image_grid_thw; // (n_images, 3) t, h, w in patches; NULL: one <|image_pad|> per image
                                   // (the unexpanded form Hugging Face's apply_chat_template writes)
    int merge_size;                // spatial merge size (2 for Qwen2-VL)
} maye_chat_prompt;

// Looks up the special tokens; fails naming the first one the tokenizer lacks.
int maye_chat_init(maye_chat *chat, const maye_tokenizer *tok);
// The ids of the stop tokens, looked up by name: <|im_end|> (required) and <|endoftext|> (if present).
int maye_chat_stop_ids(const maye_tokenizer *tok, int32_t ids[MAYE_CHAT_MAX_STOP], int *n);
// t*h*w / merge² for one image's grid; fails unless the grid is positive and divisible.
int maye_chat_image_pad_count(const int64_t thw[3], int merge_size, int64_t *count);
// Appends the prompt's token ids to out.
int maye_chat_prompt_ids(const maye_chat *chat, const maye_chat_prompt *p, maye_token_ids *out);
// Appends the prompt's text to out.
int maye_chat_prompt_text(const maye_chat_prompt *p, maye_buf *out);
// Appends an assistant response (encoded) and <|im_end|> to out, for supervised fine-tuning sequences.
int maye_chat_append_response(const maye_chat *chat, const char *response, size_t len, maye_token_ids *out);
