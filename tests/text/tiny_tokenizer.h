// Builds small byte-level BPE tokenizer.json documents for the text tests and fuzzers: ids 0-255 are the
// 256 ByteLevel characters (id = byte value), each merge "a b" adds the token "ab" with the next id, and
// the other sections are given as JSON text (defaults: NFC, the Qwen2 split regex + ByteLevel, ByteLevel
// decoder, no added tokens).
#pragma once
#include "core/util.h"
#include "text/json_reader.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

#include <string.h>

#define TINY_QWEN2_PATTERN                                                                                             \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| "                                  \
    "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|"                                                                         \
    "\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+"
#define TINY_QWEN2_PRE_TOKENIZER                                                                                       \
    "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "                     \
    "\"" TINY_QWEN2_PATTERN "\"}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", "          \
    "\"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": false}]}"

typedef struct {
    const char *normalizer;    // JSON; NULL: {"type": "NFC"}
    const char *pre_tokenizer; // JSON; NULL: TINY_QWEN2_PRE_TOKENIZER
    const char *const *merges; // "a b" in ByteLevel characters, NULL-terminated (NULL: none)
    int pair_merges;           // write merges as ["a", "b"] instead of "a b"
    const char *added;         // JSON array of added tokens; NULL: []
    const char *model_extra;   // more members of "model", e.g. "\"ignore_merges\": true"; NULL: none
} tiny_spec;

static inline void tiny_tokenizer_json(const tiny_spec *s, maye_buf *out) {
    maye_buf_clear(out);
    maye_buf_printf(out, "{\"version\": \"1.0\", \"truncation\": null, \"padding\": null, \"added_tokens\": %s,\n",
                    s->added ? s->added : "[]");
    maye_buf_printf(out, "\"normalizer\": %s,\n\"pre_tokenizer\": %s,\n",
                    s->normalizer ? s->normalizer : "{\"type\": \"NFC\"}",
                    s->pre_tokenizer ? s->pre_tokenizer : TINY_QWEN2_PRE_TOKENIZER);
    maye_buf_puts(out, "\"post_processor\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": "
                       "false, \"use_regex\": false},\n\"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": "
                       "false, \"trim_offsets\": false, \"use_regex\": false},\n");
    maye_buf_printf(out, "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, %s%s\"vocab\": {",
                    s->model_extra ? s->model_extra : "", s->model_extra ? ", " : "");
    for (int b = 0; b < 256; b++) {
        maye_buf ch = {0};
        maye_utf8_append_cp(&ch, maye_tokenizer_byte_char((uint8_t)b));
        if (b) maye_buf_puts(out, ", ");
        maye_jr_append_string(out, ch.data, ch.len);
        maye_buf_printf(out, ": %d", b);
        maye_buf_free(&ch);
    }
    int n = 0;
    for (; s->merges && s->merges[n]; n++) {
        const char *m = s->merges[n], *sp = strchr(m, ' ');
        maye_buf tok = {0};
        maye_buf_append(&tok, m, (size_t)(sp - m));
        maye_buf_puts(&tok, sp + 1);
        maye_buf_puts(out, ", ");
        maye_jr_append_string(out, tok.data, tok.len);
        maye_buf_printf(out, ": %d", 256 + n);
        maye_buf_free(&tok);
    }
    maye_buf_puts(out, "},\n\"merges\": [");
    for (int i = 0; i < n; i++) {
        const char *m = s->merges[i], *sp = strchr(m, ' ');
        if (i) maye_buf_puts(out, ", ");
        if (s->pair_merges) {
            maye_buf_putc(out, '[');
            maye_jr_append_string(out, m, (size_t)(sp - m));
            maye_buf_puts(out, ", ");
            maye_jr_append_string(out, sp + 1, strlen(sp + 1));
            maye_buf_putc(out, ']');
        } else {
            maye_jr_append_string(out, m, strlen(m));
        }
    }
    maye_buf_puts(out, "]}}\n");
}

// Loads a tiny tokenizer made from spec (NULL on failure, with the message set).
static inline maye_tokenizer *tiny_tokenizer(const tiny_spec *s) {
    maye_buf json = {0};
    tiny_tokenizer_json(s, &json);
    maye_tokenizer *tok = NULL;
    maye_tokenizer_load_mem(&tok, json.data, json.len, "tiny-tokenizer.json");
    maye_buf_free(&json);
    return tok;
}
