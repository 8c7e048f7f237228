// maye tokenize: the tokenizer on JSON lines, for checking ids against other tools. Encodes
// {"text": ...} lines to {"ids": [...]} or, with --decode, {"ids": [...]} lines to {"text": ...}.
#include "core/error.h"
#include "core/log.h"
#include "jsonl.h"
#include "core/util.h"
#include "text/json_reader.h"
#include "text/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: maye tokenize --tokenizer FILE [--decode [--skip-special]]\n\n"
               "Reads JSON lines on stdin and writes one JSON line per input line on stdout.\n"
               "  encode (default): {\"text\": \"...\"}  ->  {\"ids\": [...]}\n"
               "  --decode:         {\"ids\": [...]}     ->  {\"text\": \"...\"}\n\n"
               "options:\n"
               "  --tokenizer FILE  a Hugging Face tokenizer.json (byte-level BPE, e.g. Qwen2-VL's)\n"
               "  --decode          decode ids instead of encoding text\n"
               "  --skip-special    with --decode, leave out special tokens (<|im_end|>, ...)\n"
               "  -h, --help        this help\n"
               "Blank lines are skipped. A malformed line stops with an error naming its line number.\n");
}

// One input line -> one output line (appended to out). Messages name "stdin:LINE".
static int tokenize_line(const maye_tokenizer *tok, int decode, int skip_special, const char *line, size_t len,
                         const char *where, maye_buf *out) {
    maye_jr_doc d;
    int rc = -1;
    maye_token_ids ids = {0};
    maye_buf text = {0};
    if (maye_jr_parse(&d, line, len, where) < 0) goto done;
    const maye_jr_node *root = maye_jr_root(&d);
    const char *field = decode ? "ids" : "text";
    const maye_jr_node *v = maye_jr_get(&d, root, field);
    if (!v) {
        maye_fail("%s: expected an object with a field '%s'", where, field);
        goto done;
    }
    if (!decode) {
        if (v->type != MAYE_JR_STRING) {
            maye_fail("%s: field 'text': expected a string, got %s", where, maye_jr_type_name(v->type));
            goto done;
        }
        if (maye_tokenizer_encode(tok, maye_jr_str(&d, v), v->str_len, &ids) < 0) {
            maye_fail_ctx("%s: field 'text'", where);
            goto done;
        }
        maye_buf_puts(out, "{\"ids\": [");
        for (size_t i = 0; i < ids.len; i++) maye_buf_printf(out, i ? ", %d" : "%d", ids.data[i]);
        maye_buf_puts(out, "]}\n");
    } else {
        if (v->type != MAYE_JR_ARRAY) {
            maye_fail("%s: field 'ids': expected an array of token ids, got %s", where, maye_jr_type_name(v->type));
            goto done;
        }
        int k = 0;
        for (const maye_jr_node *e = maye_jr_first(&d, v); e; e = maye_jr_next(&d, e), k++) {
            int64_t id;
            if (!maye_jr_int(e, INT32_MIN, INT32_MAX, &id)) {
                maye_fail("%s: field 'ids'[%d]: expected an integer token id, got %s", where, k,
                          maye_jr_type_name(e->type));
                goto done;
            }
            maye_token_ids_push(&ids, (int32_t)id);
        }
        if (maye_tokenizer_decode(tok, ids.data, ids.len, skip_special, &text) < 0) {
            maye_fail_ctx("%s: field 'ids'", where);
            goto done;
        }
        maye_buf_puts(out, "{\"text\": ");
        maye_jr_append_string(out, text.data ? text.data : "", text.len);
        maye_buf_puts(out, "}\n");
    }
    rc = 0;
done:
    maye_jr_free(&d);
    maye_token_ids_free(&ids);
    maye_buf_free(&text);
    return rc;
}

typedef struct {
    const maye_tokenizer *tok;
    int decode, skip_special;
} tokenize_ctx;

static int tokenize_filter(void *ctx, const char *line, size_t len, const char *where, maye_buf *out) {
    const tokenize_ctx *c = ctx;
    return tokenize_line(c->tok, c->decode, c->skip_special, line, len, where, out);
}

int cmd_tokenize(int argc, char **argv) {
    const char *path = NULL;
    int decode = 0, skip_special = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) {
            path = argv[++i];
        } else if (!strcmp(argv[i], "--decode")) {
            decode = 1;
        } else if (!strcmp(argv[i], "--skip-special")) {
            skip_special = 1;
        } else {
            log_error("unknown option '%s'", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (skip_special && !decode) {
        log_error("--skip-special goes with --decode (encoding keeps every token)");
        usage(stderr);
        return 2;
    }
    if (!path) {
        log_error("--tokenizer FILE is required");
        usage(stderr);
        return 2;
    }
    maye_tokenizer *tok;
    if (maye_tokenizer_load(&tok, path) < 0) {
        maye_report_error();
        return 1;
    }
    tokenize_ctx tc = {tok, decode, skip_special};
    int rc = maye_jsonl_filter(stdin, "stdin", tokenize_filter, &tc);
    if (rc < 0) maye_report_error();
    maye_tokenizer_free(tok);
    return rc < 0 ? 1 : 0;
}
