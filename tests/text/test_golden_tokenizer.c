// Golden test: the tokenizer against Hugging Face tokenizers. Reads golden/tokenizer/cases.json from the
// fixtures root (its "tokenizer" field names the tokenizer.json, relative to that root) and checks every
// case's ids, token strings and decoded text exactly, then that decoding with skip_special drops exactly
// the special tokens. Skips (77) when the fixtures are absent.
#include "core/util.h"
#include "test.h"
#include "text/json_reader.h"
#include "text/tokenizer.h"

#include <stdlib.h>
#include <string.h>

// The path before the first space of the "tokenizer" field ("qwen2-tokenizer/tokenizer.json (relative to
// the fixtures root)").
static char *tokenizer_path(const char *root, const char *field) {
    size_t n = strcspn(field, " ");
    char *rel = xmalloc(n + 1);
    memcpy(rel, field, n);
    rel[n] = 0;
    char *path = maye_path_join(root, rel);
    free(rel);
    return path;
}

static void check_case(const maye_tokenizer *tok, const maye_jr_doc *d, const maye_jr_node *c, int index) {
    const maye_jr_node *text = maye_jr_get(d, c, "text"), *ids = maye_jr_get(d, c, "ids"),
                       *tokens = maye_jr_get(d, c, "tokens"), *decoded = maye_jr_get(d, c, "decoded");
    if (!text || !ids || !tokens || !decoded || ids->n_children != tokens->n_children) {
        EXPECT(0, "case %d: needs text, ids, tokens (as many as ids) and decoded", index);
        return;
    }
    const char *s = maye_jr_str(d, text);
    maye_token_ids got = {0};
    EXPECT_OK(maye_tokenizer_encode(tok, s, text->str_len, &got));
    int bad = got.len != (size_t)ids->n_children;
    size_t i = 0;
    for (const maye_jr_node *w = maye_jr_first(d, ids), *tk = maye_jr_first(d, tokens); w;
         w = maye_jr_next(d, w), tk = maye_jr_next(d, tk), i++) {
        int32_t want = (int32_t)w->num;
        if (i >= got.len || got.data[i] != want) {
            if (!bad++ || i < got.len)
                fprintf(stderr, "case %d (%.60s): ids[%zu]: got %d want %d\n", index, s, i,
                        i < got.len ? got.data[i] : -1, want);
            continue;
        }
        size_t len;
        const char *ts = maye_tokenizer_id_token(tok, want, &len);
        EXPECT(ts && len == tk->str_len && !memcmp(ts, maye_jr_str(d, tk), len),
               "case %d: token of id %d: got '%s' want '%s'", index, want, ts ? ts : "(none)", maye_jr_str(d, tk));
    }
    EXPECT(!bad, "case %d (%.60s): %zu ids, want %d (see the differences above)", index, s, got.len, ids->n_children);
    maye_buf out = {0};
    EXPECT_OK(maye_tokenizer_decode(tok, got.data, got.len, 0, &out));
    EXPECT(out.len == decoded->str_len && !memcmp(out.data ? out.data : "", maye_jr_str(d, decoded), out.len),
           "case %d: decoded '%s' want '%s'", index, out.data ? out.data : "", maye_jr_str(d, decoded));
    // skip_special leaves out exactly the special tokens
    maye_token_ids plain = {0};
    for (size_t k = 0; k < got.len; k++)
        if (!maye_tokenizer_is_special(tok, got.data[k])) maye_token_ids_push(&plain, got.data[k]);
    maye_buf want_skip = {0}, got_skip = {0};
    EXPECT_OK(maye_tokenizer_decode(tok, plain.data, plain.len, 0, &want_skip));
    EXPECT_OK(maye_tokenizer_decode(tok, got.data, got.len, 1, &got_skip));
    EXPECT(got_skip.len == want_skip.len &&
               !memcmp(got_skip.data ? got_skip.data : "", want_skip.data ? want_skip.data : "", got_skip.len),
           "case %d: skip_special decoded '%s' want '%s'", index, got_skip.data, want_skip.data);
    maye_buf_free(&out), maye_buf_free(&want_skip), maye_buf_free(&got_skip);
    maye_token_ids_free(&got), maye_token_ids_free(&plain);
}

int main(void) {
    const char *root = test_fixtures_root();
    if (!root) {
        printf("fixtures not found (set MAYE_FIXTURES)\n");
        return TEST_SKIP;
    }
    char *cases_path = maye_path_join(root, "golden/tokenizer/cases.json");
    if (!maye_file_exists(cases_path)) {
        printf("%s not found\n", cases_path);
        free(cases_path);
        return TEST_SKIP;
    }
    maye_buf raw = {0};
    maye_jr_doc d;
    EXPECT_OK(maye_read_file(cases_path, &raw));
    EXPECT_OK(maye_jr_parse(&d, raw.data ? raw.data : "", raw.len, cases_path));
    const maye_jr_node *field = maye_jr_get(&d, maye_jr_root(&d), "tokenizer"),
                       *cases = maye_jr_get(&d, maye_jr_root(&d), "cases");
    if (test_failures || !field || field->type != MAYE_JR_STRING || !cases || cases->type != MAYE_JR_ARRAY) {
        EXPECT(0, "%s: needs \"tokenizer\" (string) and \"cases\" (array)", cases_path);
        return TEST_RESULT();
    }
    char *tok_path = tokenizer_path(root, maye_jr_str(&d, field));
    maye_tokenizer *tok = NULL;
    double t0 = maye_now();
    EXPECT_OK(maye_tokenizer_load(&tok, tok_path));
    printf("loaded %s in %.3f s: %d ids, digest %016llx\n", tok_path, maye_now() - t0,
           tok ? maye_tokenizer_vocab_size(tok) : 0, tok ? (unsigned long long)maye_tokenizer_digest(tok) : 0ULL);
    if (tok) {
        int index = 0;
        for (const maye_jr_node *c = maye_jr_first(&d, cases); c; c = maye_jr_next(&d, c))
            check_case(tok, &d, c, index++);
        printf("%d cases checked\n", index);
        EXPECT(index > 0, "%s has no cases", cases_path);
    }
    maye_tokenizer_free(tok);
    maye_jr_free(&d);
    maye_buf_free(&raw);
    free(tok_path);
    free(cases_path);
    return TEST_RESULT();
}
