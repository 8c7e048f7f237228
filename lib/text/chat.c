// The Qwen2-VL chat template (see chat.h). The prompt is built as pieces: special tokens are pushed as
// ids, the text between them is encoded, which is what tokenizing the whole prompt text gives because the
// tokenizer splits at added tokens before anything else.
#include "text/chat.h"

#include "core/error.h"

#include <string.h>

static const char *const STOP_TOKENS[MAYE_CHAT_MAX_STOP] = {"<|im_end|>", "<|endoftext|>"};

// ----------------------------------------------------------------------------
// special tokens

static int lookup(const maye_tokenizer *tok, const char *name, int32_t *id) {
    *id = maye_tokenizer_token_id(tok, name);
    CHECK_OR_FAIL(*id >= 0, "chat template: the tokenizer has no '%s' token (is it a Qwen2-VL tokenizer.json?)", name);
    return 0;
}

int maye_chat_stop_ids(const maye_tokenizer *tok, int32_t ids[MAYE_CHAT_MAX_STOP], int *n) {
    *n = 0;
    TRY(lookup(tok, STOP_TOKENS[0], &ids[(*n)++]));
    for (int i = 1; i < MAYE_CHAT_MAX_STOP; i++) {
        int32_t id = maye_tokenizer_token_id(tok, STOP_TOKENS[i]);
        if (id >= 0) ids[(*n)++] = id;
    }
    return 0;
}

int maye_chat_init(maye_chat *c, const maye_tokenizer *tok) {
    memset(c, 0, sizeof *c);
    c->tok = tok;
    TRY(lookup(tok, "<|im_start|>", &c->im_start));
    TRY(lookup(tok, "<|im_end|>", &c->im_end));
    TRY(lookup(tok, "<|vision_start|>", &c->vision_start));
    TRY(lookup(tok, "<|vision_end|>", &c->vision_end));
    TRY(lookup(tok, "<|image_pad|>", &c->image_pad));
    return maye_chat_stop_ids(tok, c->stop_ids, &c->n_stop);
}

int maye_chat_image_pad_count(const int64_t thw[3], int merge_size, int64_t *count) {
    CHECK_OR_FAIL(merge_size > 0, "chat template: merge size %d must be positive", merge_size);
    for (int i = 0; i < 3; i++)
        CHECK_OR_FAIL(thw[i] > 0 && thw[i] < (1 << 20), "chat template: image grid (%lld, %lld, %lld) must be positive",
                      (long long)thw[0], (long long)thw[1], (long long)thw[2]);
    int64_t m2 = (int64_t)merge_size * merge_size, n = thw[0] * thw[1] * thw[2];
    CHECK_OR_FAIL(n % m2 == 0, "chat template: image grid (%lld, %lld, %lld) has %lld patches, not a multiple of %d²",
                  (long long)thw[0], (long long)thw[1], (long long)thw[2], (long long)n, merge_size);
    *count = n / m2;
    return 0;
}

// ----------------------------------------------------------------------------
// prompts

static int encode_str(const maye_chat *c, maye_buf *tmp, const char *a, const char *b, maye_token_ids *out) {
    maye_buf_clear(tmp);
    maye_buf_puts(tmp, a);
    maye_buf_puts(tmp, b);
    return maye_tokenizer_encode(c->tok, tmp->data, tmp->len, out);
}

int maye_chat_prompt_ids(const maye_chat *c, const maye_chat_prompt *p, maye_token_ids *out) {
    maye_buf tmp = {0};
    int rc = -1;
    maye_token_ids_push(out, c->im_start);
    if (encode_str(c, &tmp, "system\n", p->system ? p->system : MAYE_CHAT_DEFAULT_SYSTEM, out) < 0) goto done;
    maye_token_ids_push(out, c->im_end);
    if (encode_str(c, &tmp, "\n", "", out) < 0) goto done;
    maye_token_ids_push(out, c->im_start);
    if (encode_str(c, &tmp, "user\n", "", out) < 0) goto done;
    for (int i = 0; i < p->n_images; i++) {
        int64_t n = 1;
        if (p->image_grid_thw && maye_chat_image_pad_count(p->image_grid_thw + 3 * i, p->merge_size, &n) < 0) {
            maye_fail_ctx("image %d", i);
            goto done;
        }
        maye_token_ids_push(out, c->vision_start);
        for (int64_t k = 0; k < n; k++) maye_token_ids_push(out, c->image_pad);
        maye_token_ids_push(out, c->vision_end);
    }
    if (encode_str(c, &tmp, p->text ? p->text : "", "", out) < 0) goto done;
    maye_token_ids_push(out, c->im_end);
    if (encode_str(c, &tmp, "\n", "", out) < 0) goto done;
    maye_token_ids_push(out, c->im_start);
    if (encode_str(c, &tmp, "assistant\n", "", out) < 0) goto done;
    rc = 0;
done:
    maye_buf_free(&tmp);
    return rc;
}

int maye_chat_prompt_text(const maye_chat_prompt *p, maye_buf *out) {
    maye_buf_printf(out, "<|im_start|>system\n%s<|im_end|>\n<|im_start|>user\n",
                    p->system ? p->system : MAYE_CHAT_DEFAULT_SYSTEM);
    for (int i = 0; i < p->n_images; i++) {
        int64_t n = 1;
        if (p->image_grid_thw && maye_chat_image_pad_count(p->image_grid_thw + 3 * i, p->merge_size, &n) < 0)
            return maye_fail_ctx("image %d", i);
        maye_buf_puts(out, "<|vision_start|>");
        for (int64_t k = 0; k < n; k++) maye_buf_puts(out, "<|image_pad|>");
        maye_buf_puts(out, "<|vision_end|>");
    }
    maye_buf_printf(out, "%s<|im_end|>\n<|im_start|>assistant\n", p->text ? p->text : "");
    return 0;
}

int maye_chat_append_response(const maye_chat *c, const char *response, size_t len, maye_token_ids *out) {
    TRY(maye_tokenizer_encode(c->tok, response, len, out));
    maye_token_ids_push(out, c->im_end);
    return 0;
}
