// Fuzz target: encode and decode arbitrary text with a small tokenizer (all 256 bytes, some merges, added
// tokens, one of them single_word and one normalized, NFC, the Qwen2 split regex). Checks: encoding valid
// UTF-8 succeeds, every id is in the vocabulary, and the NFC form of the decoded text is the NFC form of
// the input (byte-level BPE loses nothing; the text between added tokens is normalized piece by piece,
// hence NFC on both sides; lstrip/rstrip tokens, which drop spaces, are left out for that reason, and the
// added tokens avoid Latin-1 letters, which the ByteLevel decoder would map to single bytes as Hugging
// Face's does).
// Invalid UTF-8 must be refused with a message. The input's first byte picks the text or the ids path.
#include "core/error.h"
#include "text/tiny_tokenizer.h"
#include "text/tokenizer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static const char *const MERGES[] = {"h e", "l l",  "he ll", "hell o", "Ġ w", "o r",     "Ġw or", "Ġ Ġ",  "ĠĠ Ġ", "Ċ Ċ",
                                     "1 2", "12 3", "\\ f",  "\\f r",  "a c", "\\fr ac", "Ã ©",   "c Ã©", NULL};
static const char ADDED[] = "[{\"id\": 300, \"content\": \"<|im_end|>\", \"special\": true, \"normalized\": false},"
                            " {\"id\": 301, \"content\": \"<x>\", \"special\": true, \"normalized\": false},"
                            " {\"id\": 302, \"content\": \"<x>y\", \"special\": false, \"normalized\": false},"
                            " {\"id\": 303, \"content\": \"word\", \"single_word\": true, \"normalized\": false},"
                            " {\"id\": 304, \"content\": \"\\u03a9m\", \"normalized\": true}]";

static maye_tokenizer *tok;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!tok) {
        tiny_spec spec = {.merges = MERGES, .added = ADDED};
        tok = tiny_tokenizer(&spec);
        if (!tok) abort();
    }
    if (size == 0) return 0;
    maye_token_ids ids = {0};
    maye_buf back = {0};
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    if (data[0] & 1) { // ids path: 16-bit ids, some out of range
        for (size_t i = 0; i + 1 < n; i += 2)
            maye_token_ids_push(&ids, (int32_t)((data[1 + i] | data[2 + i] << 8) % 320) - 5);
        maye_buf_clear(&back);
        maye_tokenizer_decode(tok, ids.data, ids.len, data[0] & 2, &back);
    } else if (maye_tokenizer_encode(tok, text, n, &ids) < 0) {
        size_t bad;
        if (maye_utf8_valid(text, n, &bad) || !maye_errmsg()[0]) abort(); // only invalid UTF-8 may fail
    } else {
        for (size_t i = 0; i < ids.len; i++)
            if (ids.data[i] < 0 || ids.data[i] >= maye_tokenizer_vocab_size(tok)) abort();
        if (maye_tokenizer_decode(tok, ids.data, ids.len, 0, &back) < 0) abort();
        utf8proc_uint8_t *want = NULL, *got = NULL;
        utf8proc_ssize_t kw = utf8proc_map((const utf8proc_uint8_t *)text, (utf8proc_ssize_t)n, &want,
                                           UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        utf8proc_ssize_t kg = utf8proc_map((const utf8proc_uint8_t *)(back.data ? back.data : ""),
                                           (utf8proc_ssize_t)back.len, &got, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        if (kw < 0 || kg != kw || memcmp(want, got, (size_t)kw)) abort();
        free(want);
        free(got);
    }
    maye_token_ids_free(&ids);
    maye_buf_free(&back);
    return 0;
}
