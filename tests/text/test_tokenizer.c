// Unit tests of the byte-level BPE tokenizer on small tokenizer.json documents built in the test (see
// tiny_tokenizer.h): BPE merges, added/special tokens inside text (leftmost-longest, lstrip, rstrip,
// single_word), the Split behaviors, GPT-2 style ByteLevel, NFC, decoding of invalid UTF-8, skipping
// special tokens, unknown ids, loader errors, the digest, encoding from several threads at once, and the
// normalizers on characters newer than Hugging Face tokenizers' Unicode tables (unicode_compat.h).
#include "test.h"
#include "text/tokenizer.h"
#include "text/unicode_compat.h"
#include "tiny_tokenizer.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static const char *const MERGES[] = {"h e",    "l l",     "he ll", "hell o", "Ġ w", "o r",  "Ġw or",
                                     "Ġwor l", "Ġworl d", "a Ġ",   "Ġ b",    "Ġ Ġ", "ĠĠ Ġ", NULL};
static const char ADDED[] =
    "[{\"id\": 400, \"content\": \"<|im_end|>\", \"special\": true, \"normalized\": false},"
    " {\"id\": 401, \"content\": \"<x>\", \"special\": true, \"normalized\": false},"
    " {\"id\": 402, \"content\": \"<x>y\", \"special\": false, \"normalized\": false},"
    " {\"id\": 403, \"content\": \"[L]\", \"lstrip\": true, \"normalized\": false},"
    " {\"id\": 404, \"content\": \"[R]\", \"rstrip\": true, \"normalized\": false},"
    " {\"id\": 405, \"content\": \"word\", \"single_word\": true, \"normalized\": false},"
    " {\"id\": 406, \"content\": \"\\u00e9t\\u00e9\", \"special\": false, \"normalized\": true}]";

// Encodes text and compares the token strings, given as one space-separated string.
static void expect_tokens(const maye_tokenizer *tok, const char *what, const char *text, const char *want) {
    maye_token_ids ids = {0};
    EXPECT_OK(maye_tokenizer_encode(tok, text, strlen(text), &ids));
    maye_buf got = {0};
    for (size_t i = 0; i < ids.len; i++) {
        size_t len;
        const char *s = maye_tokenizer_id_token(tok, ids.data[i], &len);
        if (i) maye_buf_putc(&got, ' ');
        maye_buf_append(&got, s ? s : "?", s ? len : 1);
    }
    EXPECT(!strcmp(got.data ? got.data : "", want), "%s: '%s' gave tokens '%s', want '%s'", what, text,
           got.data ? got.data : "", want);
    maye_buf_free(&got);
    maye_token_ids_free(&ids);
}

static void expect_decode(const maye_tokenizer *tok, const char *what, const int32_t *ids, size_t n, int skip,
                          const char *want, size_t want_len) {
    maye_buf out = {0};
    EXPECT_OK(maye_tokenizer_decode(tok, ids, n, skip, &out));
    EXPECT(out.len == want_len && !memcmp(out.data ? out.data : "", want, want_len),
           "%s: decoded '%s' (%zu bytes), want '%s'", what, out.data ? out.data : "", out.len, want);
    maye_buf_free(&out);
}

// ----------------------------------------------------------------------------

static void test_bpe_and_added(void) {
    tiny_spec spec = {.merges = MERGES, .added = ADDED};
    maye_tokenizer *tok = tiny_tokenizer(&spec);
    EXPECT(tok, "tiny tokenizer: %s", maye_errmsg());
    if (!tok) return;
    EXPECT(maye_tokenizer_vocab_size(tok) == 407, "vocab size %d, want 407", maye_tokenizer_vocab_size(tok));
    expect_tokens(tok, "merges", "hello world", "hello Ġworld");
    expect_tokens(tok, "partial merges", "hell wor", "hell Ġwor");
    expect_tokens(tok, "whitespace runs", "a   b", "a ĠĠ Ġb");
    expect_tokens(tok, "special inside text", "hello<|im_end|>world", "hello <|im_end|> w or l d");
    expect_tokens(tok, "special at both ends", "<|im_end|><|im_end|>", "<|im_end|> <|im_end|>");
    expect_tokens(tok, "partial special is text", "<|im_end|", "< | i m _ e n d |");
    expect_tokens(tok, "longest added token", "<x>y <x>z", "<x>y Ġ <x> z");
    expect_tokens(tok, "lstrip eats spaces before", "a  [L] b", "a [L] Ġb");
    expect_tokens(tok, "rstrip eats spaces after", "a [R]  b", "a Ġ [R] b");
    expect_tokens(tok, "single_word alone", "a word b", "a Ġ word Ġb");
    expect_tokens(tok, "single_word inside a word", "swordfish", "s w or d f i s h");
    // NFC: "e" + U+0301 composes to U+00E9 (bytes C3 A9 -> "Ã" "©"), and then matches the normalized token
    expect_tokens(tok, "NFC", "e\xcc\x81", "Ã ©");
    expect_tokens(tok, "normalized added token", "e\xcc\x81te\xcc\x81!", "été !");
    expect_tokens(tok, "empty", "", "");

    // token ids by name; unknown names
    EXPECT(maye_tokenizer_token_id(tok, "<|im_end|>") == 400, "<|im_end|> id %d",
           maye_tokenizer_token_id(tok, "<|im_end|>"));
    EXPECT(maye_tokenizer_token_id(tok, "Ġworld") == 264, "Ġworld id %d", maye_tokenizer_token_id(tok, "Ġworld"));
    EXPECT(maye_tokenizer_token_id(tok, "<|nope|>") == -1, "unknown token has an id");

    // invalid UTF-8 in the text to encode
    maye_token_ids ids = {0};
    EXPECT_FAIL(maye_tokenizer_encode(tok, "ab\xff", 3, &ids), "byte 2");

    // decoding: ByteLevel bytes, invalid UTF-8 -> U+FFFD per maximal ill-formed subsequence (ids = bytes here)
    int32_t ok[] = {'h', 0xC3, 0xA9, 400, ' '};
    expect_decode(tok, "plain", ok, 5, 0, "h\xc3\xa9<|im_end|> ", 14);
    expect_decode(tok, "skip special", ok, 5, 1, "h\xc3\xa9 ", 4);
    int32_t truncated[] = {'a', 0xE2, 0x82, 'b'}; // E2 82 is an unfinished 3-byte sequence
    expect_decode(tok, "truncated sequence", truncated, 4, 0,
                  "a\xef\xbf\xbd"
                  "b",
                  5);
    int32_t lone[] = {0xFF, 0xC0, 0x80, 0xED, 0xA0, 0x80, 0xF0, 0x9F, 0x98}; // bad lead, overlong, surrogate, cut emoji
    expect_decode(tok, "ill-formed bytes", lone, 9, 0,
                  "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 21);
    int32_t emoji[] = {0xF0, 0x9F, 0x98, 0x80};
    expect_decode(tok, "emoji split over tokens", emoji, 4, 0, "\xf0\x9f\x98\x80", 4);
    maye_buf out = {0};
    int32_t unknown[] = {'a', 399};
    EXPECT_FAIL(maye_tokenizer_decode(tok, unknown, 2, 0, &out), "token id 399");
    int32_t negative[] = {-5};
    EXPECT_FAIL(maye_tokenizer_decode(tok, negative, 1, 0, &out), "token id -5");
    maye_buf_free(&out);

    // round trip on NFC text, from several threads at once (the word cache is shared)
    static const char *texts[] = {"hello world, hello again!\n\n", "  tabs\tand spaces  ",
                                  "\xe4\xb8\xad\xe6\x96\x87 and \xf0\x9f\x98\x80", "x^2 + y^2 = \\frac{1}{2}",
                                  "don't STOP'S 12345"};
    int bad = 0;
#pragma omp parallel for num_threads(4) reduction(+ : bad)
    for (int i = 0; i < 400; i++) {
        const char *t = texts[i % 5];
        maye_token_ids v = {0};
        maye_buf back = {0};
        if (maye_tokenizer_encode(tok, t, strlen(t), &v) < 0 ||
            maye_tokenizer_decode(tok, v.data, v.len, 0, &back) < 0 || back.len != strlen(t) ||
            memcmp(back.data, t, back.len))
            bad++;
        maye_token_ids_free(&v);
        maye_buf_free(&back);
    }
    EXPECT(bad == 0, "%d of 400 threaded round trips differ", bad);

    // long runs of combining marks (sorted by the tokenizer's own merge sort) give utf8proc's NFC
    maye_buf marks = {0};
    maye_buf_puts(&marks, "e");
    for (int i = 0; i < 40; i++) maye_buf_puts(&marks, i % 3 ? "\xcc\x81" : "\xcc\xa3"); // U+0301 (230), U+0323 (220)
    maye_buf_puts(&marks, "\xe1\xb9\xa9\xcd\x84\xcc\xa3 a\xcc\x8a\xea\xb0\x80\xe1\x86\xa8"); // U+1E69, U+0344, Hangul
    for (int i = 0; i < 50; i++) maye_buf_puts(&marks, i % 2 ? "\xd6\xb0" : "\xd6\x91");     // Hebrew points 10, 220
    utf8proc_uint8_t *nfc = NULL;
    utf8proc_ssize_t k = utf8proc_map((const utf8proc_uint8_t *)marks.data, (utf8proc_ssize_t)marks.len, &nfc,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    ids.len = 0;
    maye_buf back = {0};
    EXPECT_OK(maye_tokenizer_encode(tok, marks.data, marks.len, &ids));
    EXPECT_OK(maye_tokenizer_decode(tok, ids.data, ids.len, 0, &back));
    EXPECT(k > 0 && back.len == (size_t)k && !memcmp(back.data, nfc, back.len),
           "long combining runs: %zu bytes back, utf8proc NFC has %zd", back.len, k);
    free(nfc);
    maye_buf_free(&marks);
    maye_buf_free(&back);
    maye_token_ids_free(&ids);
    maye_tokenizer_free(tok);
}

// Each Split behavior on "a b  b" split at " " (merges "a Ġ", "Ġ b", "Ġ Ġ" show where pieces end).
static void test_split_behaviors(void) {
    static const struct {
        const char *behavior;
        int invert;
        const char *want;
    } cases[] = {
        {"Isolated", 0, "a Ġ b Ġ Ġ b"},     {"Removed", 0, "a b b"},         {"MergedWithPrevious", 0, "aĠ b Ġ Ġ b"},
        {"MergedWithNext", 0, "a Ġb Ġ Ġb"}, {"Contiguous", 0, "a Ġ b ĠĠ b"}, {"Removed", 1, "Ġ Ġ Ġ"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char pre[512];
        snprintf(pre, sizeof pre,
                 "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, "
                 "\"behavior\": \"%s\", \"invert\": %s}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
                 "\"use_regex\": false}]}",
                 cases[i].behavior, cases[i].invert ? "true" : "false");
        tiny_spec spec = {.merges = MERGES, .pre_tokenizer = pre};
        maye_tokenizer *tok = tiny_tokenizer(&spec);
        EXPECT(tok, "%s: %s", cases[i].behavior, maye_errmsg());
        if (!tok) continue;
        expect_tokens(tok, cases[i].behavior, "a b  b", cases[i].want);
        maye_tokenizer_free(tok);
    }
}

// GPT-2 style: ByteLevel alone with its own regex and a prefix space; ignore_merges; no normalizer.
static void test_gpt2_style(void) {
    tiny_spec spec = {.merges = MERGES,
                      .normalizer = "null",
                      .pre_tokenizer = "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"use_regex\": true}"};
    maye_tokenizer *tok = tiny_tokenizer(&spec);
    EXPECT(tok, "gpt2 style: %s", maye_errmsg());
    if (tok) {
        expect_tokens(tok, "prefix space", "world  wor", "Ġworld Ġ Ġwor");
        maye_tokenizer_free(tok);
    }
    static const char *const few[] = {"h e", "l l", "he ll", "hell o", "x y", NULL};
    static const char *const with_direct[] = {"h e", "l l", "he ll", "hell o", "l o", NULL};
    tiny_spec direct = {.merges = with_direct, .model_extra = "\"ignore_merges\": true"};
    tok = tiny_tokenizer(&direct);
    EXPECT(tok, "ignore_merges: %s", maye_errmsg());
    if (tok) {
        expect_tokens(tok, "ignore_merges takes a whole-word entry", "lo", "lo");
        maye_tokenizer_free(tok);
    }
    tiny_spec plain = {.merges = few};
    tok = tiny_tokenizer(&plain);
    if (tok) {
        expect_tokens(tok, "without that merge", "lo", "l o");
        maye_tokenizer_free(tok);
    }
}

// ----------------------------------------------------------------------------
// normalizers on characters tokenizers does not know

// Each text normalized as Hugging Face tokenizers 0.23.3 does it (the expected bytes are its
// tokenizers.normalizers output): the characters its Unicode tables lack stay where they are, uncomposed,
// and nothing is reordered or composed across them, while the characters it knows are normalized as usual.
static void test_unicode_compat(void) {
    static const struct {
        const char *normalizer, *text, *want;
    } cases[] = {
        // U+08D0 (Unicode 14) after U+08DD: utf8proc would put it first (combining class 220 < 230)
        {"NFC", "a\xe0\xa3\x9d\xe0\xa3\x90", "a\xe0\xa3\x9d\xe0\xa3\x90"},
        // U+11935 U+11930 (Unicode 13) would compose to U+11938
        {"NFC", "\xf0\x91\xa4\xb5\xf0\x91\xa4\xb0", "\xf0\x91\xa4\xb5\xf0\x91\xa4\xb0"},
        // U+08DD is known: e U+0301 U+08DD U+0316 -> U+00E9 U+0316 U+08DD
        {"NFC", "e\xcc\x81\xe0\xa3\x9d\xcc\x96", "\xc3\xa9\xcc\x96\xe0\xa3\x9d"},
        // U+0C3C (Unicode 14) between a consonant and U+093C: no reordering across it
        {"NFC", "\xe0\xa4\x95\xe0\xb0\xbc\xe0\xa4\xbc", "\xe0\xa4\x95\xe0\xb0\xbc\xe0\xa4\xbc"},
        // U+1FBF0 (a digit since Unicode 13) and U+32FF keep their compatibility forms under NFKC
        {"NFKC", "x\xf0\x9f\xaf\xb0\xe3\x8b\xbf", "x\xf0\x9f\xaf\xb0\xe3\x8b\xbf"},
        // NFD: U+1EBF decomposes, U+08D3 (Unicode 11) stays a boundary before the last U+0301
        {"NFD", "\xe1\xba\xbf\xe0\xa3\x93\xcc\x81", "e\xcc\x82\xcc\x81\xe0\xa3\x93\xcc\x81"},
        // NFKD: the ligature splits, U+1E030 (Unicode 15, compatibility of U+0430) stays
        {"NFKD", "\xef\xac\x81\xf0\x9e\x80\xb0", "fi\xf0\x9e\x80\xb0"},
        // known characters only: composition and canonical order as before
        {"NFC", "e\xcc\x81" "a\xcc\x96\xcc\x81", "\xc3\xa9\xc3\xa1\xcc\x96"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char normalizer[64];
        snprintf(normalizer, sizeof normalizer, "{\"type\": \"%s\"}", cases[i].normalizer);
        tiny_spec spec = {.normalizer = normalizer};
        maye_tokenizer *tok = tiny_tokenizer(&spec);
        EXPECT(tok, "%s tokenizer: %s", cases[i].normalizer, maye_errmsg());
        if (!tok) continue;
        maye_token_ids ids = {0};
        EXPECT_OK(maye_tokenizer_encode(tok, cases[i].text, strlen(cases[i].text), &ids));
        char what[64];
        snprintf(what, sizeof what, "%s case %zu", cases[i].normalizer, i);
        expect_decode(tok, what, ids.data, ids.len, 0, cases[i].want, strlen(cases[i].want));
        maye_token_ids_free(&ids);
        maye_tokenizer_free(tok);
    }
    EXPECT(!strcmp(maye_unicode_compat_utf8proc, utf8proc_unicode_version()), "lib/text/unicode_compat.c was made "
           "with utf8proc's Unicode %s but this build links Unicode %s: regenerate it with "
           "tests/text/gen_unicode_compat.py", maye_unicode_compat_utf8proc, utf8proc_unicode_version());
}

// ----------------------------------------------------------------------------
// loading

static void expect_load_error(const char *json, const char *needle) {
    maye_tokenizer *tok = NULL;
    EXPECT_FAIL(maye_tokenizer_load_mem(&tok, json, strlen(json), "bad.json"), needle);
    EXPECT(tok == NULL, "a failed load returned a tokenizer");
    maye_tokenizer_free(tok);
}

// Replaces the first `from` in the tiny tokenizer's JSON by `to` and expects the load to fail with needle.
static void expect_edit_error(const char *from, const char *to, const char *needle) {
    tiny_spec spec = {.merges = MERGES, .added = ADDED};
    maye_buf json = {0}, edited = {0};
    tiny_tokenizer_json(&spec, &json);
    const char *at = strstr(json.data, from);
    EXPECT(at, "'%s' not in the test tokenizer", from);
    if (at) {
        maye_buf_append(&edited, json.data, (size_t)(at - json.data));
        maye_buf_puts(&edited, to);
        maye_buf_puts(&edited, at + strlen(from));
        expect_load_error(edited.data, needle);
    }
    maye_buf_free(&json);
    maye_buf_free(&edited);
}

static void test_loader_errors(void) {
    tiny_spec spec = {.merges = MERGES, .added = ADDED};
    maye_buf json = {0};
    tiny_tokenizer_json(&spec, &json);
    // truncated anywhere: always a clean error naming the file
    for (size_t cut = 0; cut < json.len - 2; cut += 97) {
        maye_tokenizer *tok = NULL;
        maye_clear_error();
        EXPECT(maye_tokenizer_load_mem(&tok, json.data, cut, "cut.json") < 0, "truncated at %zu loaded", cut);
        EXPECT(test_contains(maye_errmsg(), "cut.json:"), "truncated at %zu: message '%s'", cut, maye_errmsg());
    }
    maye_buf_free(&json);
    expect_load_error("", "bad.json: column 1: unexpected end of input");
    expect_load_error("[1, 2]", "expected a JSON object");
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"decoder\": {\"type\": \"ByteLevel\"}}",
                      "no 'model' section");
    expect_edit_error("\"type\": \"BPE\"", "\"type\": \"WordPiece\"", "model: type 'WordPiece' is not supported");
    expect_edit_error("\"merges\": [\"h e\"", "\"merges\": [\"h e x\"", "model.merges[0]: 'h e x' is not two tokens");
    expect_edit_error("\"merges\": [\"h e\", \"l l\"", "\"merges\": [\"h e\", \"l zz\"",
                      "model.merges[1]: token 'zz' is not in model.vocab");
    expect_edit_error("\"merges\": [\"h e\", \"l l\"", "\"merges\": [\"h e\", \"l h\"",
                      "model.merges[1]: the merged token 'lh' is not in model.vocab");
    expect_edit_error("\"merges\": [\"h e\"", "\"merges\": [7", "model.merges[0]: expected \"a b\"");
    expect_edit_error("\"merges\": [", "\"merges\": 3, \"x\": [", "model.merges: expected an array");
    expect_edit_error("\"vocab\": {", "\"vocab\": {\"zz\": -1, ", "token 'zz' has no valid id");
    expect_edit_error("\"vocab\": {", "\"vocab\": {\"zz\": 5, ", "id 5 is given to both");
    expect_edit_error("{\"type\": \"NFC\"}", "{\"type\": \"Lowercase\"}",
                      "normalizer: type 'Lowercase' is not supported");
    expect_edit_error("{\"type\": \"Split\"", "{\"type\": \"Whitespace\"",
                      "pre_tokenizer: type 'Whitespace' is not supported");
    expect_edit_error("\"Regex\": \"", "\"Regex\": \"(", "cannot compile the pattern");
    expect_edit_error("\"behavior\": \"Isolated\"", "\"behavior\": \"Sideways\"", "'behavior' must be one of");
    expect_edit_error("\"decoder\": {\"type\": \"ByteLevel\"", "\"decoder\": {\"type\": \"WordPiece\"",
                      "decoder: type 'WordPiece' is not supported");
    expect_edit_error("\"post_processor\": {\"type\": \"ByteLevel\"", "\"post_processor\": {\"type\": \"Weird\"",
                      "post_processor: type 'Weird' is not supported");
    expect_edit_error("\"dropout\": null", "\"dropout\": 0.1", "model.dropout");
    expect_edit_error("\"id\": 401", "\"id\": 400", "id 400 is also added_tokens[0]");
    expect_edit_error("\"content\": \"<x>\"", "\"content\": \"<|im_end|>\"", "are both '<|im_end|>'");
    expect_edit_error("\"content\": \"<x>\"", "\"content\": \"\"", "added_tokens[1]: 'content' must be a non-empty");
    expect_edit_error("\"use_regex\": false}]}",
                      "\"use_regex\": false}, {\"type\": \"Split\", \"pattern\": {\"String\": \"a\"}, "
                      "\"behavior\": \"Isolated\"}]}",
                      "ByteLevel must be the last step");
    // no such file
    maye_tokenizer *tok = NULL;
    EXPECT_FAIL(maye_tokenizer_load(&tok, "/nonexistent/tokenizer.json"), "/nonexistent/tokenizer.json");
}

// Merges given as pairs load the same tokenizer (same digest, same ids); a different merge list does not.
static void test_pairs_and_digest(void) {
    tiny_spec strings = {.merges = MERGES, .added = ADDED},
              pairs = {.merges = MERGES, .added = ADDED, .pair_merges = 1};
    static const char *const other[] = {"h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", NULL};
    tiny_spec fewer = {.merges = other, .added = ADDED};
    maye_tokenizer *a = tiny_tokenizer(&strings), *b = tiny_tokenizer(&pairs), *c = tiny_tokenizer(&fewer);
    EXPECT(a && b && c, "load: %s", maye_errmsg());
    if (a && b && c) {
        EXPECT(maye_tokenizer_digest(a) == maye_tokenizer_digest(b),
               "pair merges change the digest: %016llx vs %016llx", (unsigned long long)maye_tokenizer_digest(a),
               (unsigned long long)maye_tokenizer_digest(b));
        EXPECT(maye_tokenizer_digest(a) != maye_tokenizer_digest(c), "different merges, same digest");
        expect_tokens(b, "pair merges", "hello world", "hello Ġworld");
    }
    maye_tokenizer_free(a);
    maye_tokenizer_free(b);
    maye_tokenizer_free(c);
}

int main(void) {
    test_bpe_and_added();
    test_split_behaviors();
    test_gpt2_style();
    test_loader_errors();
    test_pairs_and_digest();
    test_unicode_compat();
    return TEST_RESULT();
}
