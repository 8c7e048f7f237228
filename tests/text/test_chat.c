// Unit tests of the Qwen2-VL chat template: special ids come from the tokenizer (a tiny tokenizer puts
// them at unusual ids), each image expands to t*h*w/merge² <|image_pad|> between <|vision_start|> and
// <|vision_end|> before the user text, the exact prompt text, ids == encode(prompt text), stop ids,
// appended responses, and errors (bad grids, tokenizers without the chat tokens). With the fixtures, the
// same checks run on the real Qwen2 tokenizer.
#include "test.h"
#include "text/chat.h"
#include "tiny_tokenizer.h"

#include <stdlib.h>
#include <string.h>

static const char CHAT_ADDED[] =
    "[{\"id\": 700, \"content\": \"<|endoftext|>\", \"special\": true, \"normalized\": false},"
    " {\"id\": 703, \"content\": \"<|im_start|>\", \"special\": true, \"normalized\": false},"
    " {\"id\": 701, \"content\": \"<|im_end|>\", \"special\": true, \"normalized\": false},"
    " {\"id\": 711, \"content\": \"<|vision_start|>\", \"special\": true, \"normalized\": false},"
    " {\"id\": 705, \"content\": \"<|vision_end|>\", \"special\": true, \"normalized\": false},"
    " {\"id\": 690, \"content\": \"<|image_pad|>\", \"special\": true, \"normalized\": false}]";

static int64_t count(const maye_token_ids *v, size_t from, size_t to, int32_t id) {
    int64_t n = 0;
    for (size_t i = from; i < to && i < v->len; i++) n += v->data[i] == id;
    return n;
}

static size_t find(const maye_token_ids *v, size_t from, int32_t id) {
    for (size_t i = from; i < v->len; i++)
        if (v->data[i] == id) return i;
    return v->len;
}

static void check_template(const maye_tokenizer *tok, const char *what) {
    maye_chat chat;
    EXPECT_OK(maye_chat_init(&chat, tok));
    if (test_failures) return;
    // the ids come from the tokenizer, by name
    const char *names[] = {"<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>"};
    int32_t got[] = {chat.im_start, chat.im_end, chat.vision_start, chat.vision_end, chat.image_pad};
    for (int i = 0; i < 5; i++)
        EXPECT(got[i] == maye_tokenizer_token_id(tok, names[i]) && got[i] >= 0, "%s: %s id %d, tokenizer says %d", what,
               names[i], got[i], maye_tokenizer_token_id(tok, names[i]));
    EXPECT(chat.n_stop == 2 && chat.stop_ids[0] == chat.im_end &&
               chat.stop_ids[1] == maye_tokenizer_token_id(tok, "<|endoftext|>"),
           "%s: stop ids (%d) %d %d", what, chat.n_stop, chat.stop_ids[0], chat.stop_ids[1]);

    // two images: (1, 4, 6) -> 6 pads and (2, 2, 2) -> 2 pads with merge 2
    int64_t grids[] = {1, 4, 6, 2, 2, 2};
    maye_chat_prompt p = {.text = "What is 2+2?", .n_images = 2, .image_grid_thw = grids, .merge_size = 2};
    maye_token_ids ids = {0}, want = {0};
    EXPECT_OK(maye_chat_prompt_ids(&chat, &p, &ids));
    size_t vs1 = find(&ids, 0, chat.vision_start), ve1 = find(&ids, vs1, chat.vision_end);
    size_t vs2 = find(&ids, ve1, chat.vision_start), ve2 = find(&ids, vs2, chat.vision_end);
    EXPECT(ve2 < ids.len, "%s: two vision blocks expected", what);
    EXPECT(ve1 - vs1 - 1 == 6 && count(&ids, vs1, ve1, chat.image_pad) == 6, "%s: image 0 has %zu tokens, want 6 pads",
           what, ve1 - vs1 - 1);
    EXPECT(ve2 - vs2 - 1 == 2 && count(&ids, vs2, ve2, chat.image_pad) == 2, "%s: image 1 has %zu tokens, want 2 pads",
           what, ve2 - vs2 - 1);
    EXPECT(count(&ids, 0, ids.len, chat.image_pad) == 8, "%s: %lld pads in all, want 8", what,
           (long long)count(&ids, 0, ids.len, chat.image_pad));
    // image before text: right after the last <|vision_end|> comes the text, then <|im_end|>
    maye_token_ids text = {0};
    EXPECT_OK(maye_tokenizer_encode(tok, p.text, strlen(p.text), &text));
    EXPECT(ve2 + 1 + text.len < ids.len && !memcmp(ids.data + ve2 + 1, text.data, text.len * sizeof(int32_t)) &&
               ids.data[ve2 + 1 + text.len] == chat.im_end,
           "%s: the user text does not follow the images", what);
    // the prompt starts and ends as the template says
    EXPECT(ids.data[0] == chat.im_start, "%s: first id %d", what, ids.data[0]);
    maye_token_ids tail = {0};
    EXPECT_OK(maye_tokenizer_encode(tok, "assistant\n", 10, &tail));
    EXPECT(ids.len > tail.len && ids.data[ids.len - tail.len - 1] == chat.im_start &&
               !memcmp(ids.data + ids.len - tail.len, tail.data, tail.len * sizeof(int32_t)),
           "%s: prompt does not end with <|im_start|>assistant\\n", what);

    // the text form, exactly, and ids == encode(text)
    maye_buf s = {0};
    EXPECT_OK(maye_chat_prompt_text(&p, &s));
    maye_buf expect = {0};
    maye_buf_puts(&expect,
                  "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|>");
    for (int i = 0; i < 6; i++) maye_buf_puts(&expect, "<|image_pad|>");
    maye_buf_puts(&expect,
                  "<|vision_end|><|vision_start|><|image_pad|><|image_pad|><|vision_end|>What is 2+2?<|im_end|>\n"
                  "<|im_start|>assistant\n");
    EXPECT(s.len == expect.len && !strcmp(s.data, expect.data), "%s: prompt text\n%s\nwant\n%s", what, s.data,
           expect.data);
    EXPECT_OK(maye_tokenizer_encode(tok, s.data, s.len, &want));
    EXPECT(want.len == ids.len && !memcmp(want.data, ids.data, ids.len * sizeof(int32_t)),
           "%s: prompt ids (%zu) differ from encoding the prompt text (%zu)", what, ids.len, want.len);

    // a custom system prompt, no images, a response appended for SFT
    maye_chat_prompt q = {.system = "Be brief.", .text = "hello"};
    maye_buf_clear(&s);
    EXPECT_OK(maye_chat_prompt_text(&q, &s));
    EXPECT(
        !strcmp(s.data,
                "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"),
        "%s: prompt text without images: %s", what, s.data);
    ids.len = 0;
    EXPECT_OK(maye_chat_prompt_ids(&chat, &q, &ids));
    size_t n_prompt = ids.len;
    EXPECT_OK(maye_chat_append_response(&chat, "4", 1, &ids));
    EXPECT(ids.len == n_prompt + 2 && ids.data[ids.len - 1] == chat.im_end,
           "%s: response + <|im_end|> appended (%zu ids)", what, ids.len - n_prompt);

    // unexpanded form: one pad per image when no grid is given
    maye_chat_prompt u = {.text = "x", .n_images = 1};
    ids.len = 0;
    EXPECT_OK(maye_chat_prompt_ids(&chat, &u, &ids));
    EXPECT(count(&ids, 0, ids.len, chat.image_pad) == 1, "%s: unexpanded image gives %lld pads", what,
           (long long)count(&ids, 0, ids.len, chat.image_pad));

    // bad grids
    int64_t odd[] = {1, 3, 3};
    maye_chat_prompt bad = {.text = "x", .n_images = 1, .image_grid_thw = odd, .merge_size = 2};
    EXPECT_FAIL(maye_chat_prompt_ids(&chat, &bad, &ids), "image 0: chat template: image grid (1, 3, 3) has 9 patches");
    maye_buf_clear(&s);
    EXPECT_FAIL(maye_chat_prompt_text(&bad, &s), "not a multiple of 2");
    int64_t zero[] = {1, 0, 4}, n;
    EXPECT_FAIL(maye_chat_image_pad_count(zero, 2, &n), "must be positive");
    EXPECT_OK(maye_chat_image_pad_count(grids, 2, &n));
    EXPECT(n == 6, "pad count %lld, want 6", (long long)n);

    maye_buf_free(&s), maye_buf_free(&expect);
    maye_token_ids_free(&ids), maye_token_ids_free(&want), maye_token_ids_free(&text), maye_token_ids_free(&tail);
}

int main(void) {
    tiny_spec spec = {.added = CHAT_ADDED};
    maye_tokenizer *tok = tiny_tokenizer(&spec);
    EXPECT(tok, "tiny tokenizer: %s", maye_errmsg());
    if (tok) check_template(tok, "tiny tokenizer");
    maye_tokenizer_free(tok);

    // a tokenizer without the chat tokens
    tiny_spec plain = {0};
    tok = tiny_tokenizer(&plain);
    maye_chat chat;
    if (tok) EXPECT_FAIL(maye_chat_init(&chat, tok), "no '<|im_start|>' token");
    maye_tokenizer_free(tok);

    const char *root = test_fixtures_root();
    char *path = root ? maye_path_join(root, "qwen2-tokenizer/tokenizer.json") : NULL;
    if (path && maye_file_exists(path)) {
        tok = NULL;
        EXPECT_OK(maye_tokenizer_load(&tok, path));
        if (tok) check_template(tok, "qwen2 tokenizer");
        maye_tokenizer_free(tok);
    } else {
        printf("fixtures absent: the real Qwen2 tokenizer was not checked\n");
    }
    free(path);
    return TEST_RESULT();
}
