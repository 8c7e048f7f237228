// maye cat: a record stream as JSON lines (one per record, header first), and with --to-records the way
// back, so any stage's input can be inspected, hand-edited and replayed into that stage.
#include "commands.h"
#include "core/error.h"
#include "core/log.h"
#include "io/record_json.h"
#include "io/records.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *cat_help =
    "usage: maye cat [--full] [FILE|-]\n"
    "       maye cat --to-records [-o OUT] [FILE|-]\n"
    "\n"
    "Prints a record stream (from a file, or stdin when FILE is - or absent) as JSON lines: first\n"
    "{\"header\": {...}}, then one line per record keyed by the stream's kind: {\"query\": {...}},\n"
    "{\"rollout\": ...}, {\"trajectory\": ...}, {\"weight_sync\": ...} or {\"metrics\": ...}. Line N+1 is\n"
    "record N (the header is record 0), the index error messages use. Field names are those of\n"
    "schemas/maye.proto; enums print as names, digests as \"0x...\" strings, bytes as base64, and tensors\n"
    "as {\"dtype\", \"shape\", \"checksum\"} unless --full prints their data.\n"
    "\n"
    "With --to-records it reads such JSON lines and writes the record stream they describe: the header\n"
    "line decides the kind, every later line is one record. Tensors need their data, so start from\n"
    "`maye cat --full`. Blank lines are skipped. `maye cat --full S | maye cat --to-records` gives a\n"
    "stream whose `maye cat --full` is identical to that of S.\n"
    "\n"
    "options:\n"
    "  --full          print tensors with all their data (what --to-records needs)\n"
    "  --to-records    JSON lines in, a record stream out\n"
    "  -o OUT          with --to-records: write the stream to OUT (default stdout, which must not be a\n"
    "                  terminal); a regular file is written under a temporary name and renamed when complete\n"
    "  -h, --help      show this help\n"
    "\n"
    "environment: MAYE_ZSTD_LEVEL sets the zstd level of the written stream (default 1).\n"
    "exit status: 0 on success, 1 on a bad or truncated stream or bad JSON (the message names the record\n"
    "or line and the field), 2 on bad usage.\n";

// Whether reading `path` can wait for a producer (a pipe, FIFO or terminal), so output should be flushed
// after every record.
static int is_live(const char *path) {
    struct stat st;
    int rc = strcmp(path, "-") ? stat(path, &st) : fstat(STDIN_FILENO, &st);
    return rc != 0 || !S_ISREG(st.st_mode);
}

// ----------------------------------------------------------------------------
// records -> JSON lines

static int records_to_json(const char *in, maye_json_mode mode) {
    maye_reader *r;
    TRY(maye_reader_open(&r, in, MAYE__RECORD_KIND__RECORD_KIND_UNSPECIFIED));
    int live = is_live(in);
    maye_buf line = {0};
    maye_json_print_record(&line, "header", &maye_reader_header(r)->base, mode);
    maye_buf_putc(&line, '\n');
    const char *key = maye_record_kind_key(maye_reader_kind(r));
    int rc = 0;
    for (;;) {
        if (fwrite(line.data, 1, line.len, stdout) != line.len || (live && fflush(stdout) != 0)) {
            rc = maye_fail("cannot write to stdout");
            break;
        }
        maye_buf_clear(&line);
        ProtobufCMessage *msg;
        rc = maye_reader_next(r, &msg, NULL);
        if (rc <= 0) break;
        maye_json_print_record(&line, key, msg, mode);
        maye_buf_putc(&line, '\n');
        maye_record_free(msg);
    }
    maye_buf_free(&line);
    maye_reader_close(r);
    if (rc == 0 && fflush(stdout) != 0) rc = maye_fail("cannot write to stdout");
    return rc < 0 ? -1 : 0;
}

// ----------------------------------------------------------------------------
// JSON lines -> records

static int json_to_records(const char *in, const char *out) {
    const char *in_name = strcmp(in, "-") ? in : "stdin";
    if (!strcmp(out, "-") && isatty(STDOUT_FILENO))
        return maye_fail("refusing to write a binary record stream to a terminal: use -o FILE or a pipe");
    FILE *f = strcmp(in, "-") ? fopen(in, "r") : stdin;
    if (!f) return maye_fail("cannot open '%s': %s", in, strerror(errno));
    int live = is_live(in);
    char *text = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, rc = 0;
    maye_writer *w = NULL;
    const ProtobufCMessageDescriptor *desc = NULL;
    const char *key = NULL;
    while ((len = getline(&text, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r')) len--;
        if (strspn(text, " \t") >= (size_t)len) continue;
        ProtobufCMessage *msg;
        if (!w) {
            rc = maye_json_parse_record(text, (size_t)len, lineno, "header", &maye__stream_header__descriptor, &msg);
            if (rc < 0) break;
            maye_writer_opts opts = {.atomic = 1};
            rc = maye_writer_open(&w, out, (Maye__StreamHeader *)msg, &opts);
            Maye__RecordKind kind = ((Maye__StreamHeader *)msg)->kind;
            maye_record_free(msg);
            if (rc < 0) {
                maye_fail_ctx("line %d: header", lineno);
                break;
            }
            desc = maye_record_descriptor(kind);
            key = maye_record_kind_key(kind);
        } else {
            rc = maye_json_parse_record(text, (size_t)len, lineno, key, desc, &msg);
            if (rc < 0) break;
            rc = maye_writer_write(w, msg);
            maye_record_free(msg);
            if (rc == 0 && live) rc = maye_writer_flush(w);
            if (rc < 0) break;
        }
    }
    if (rc == 0 && ferror(f)) rc = maye_fail("read error");
    if (rc == 0 && !w) rc = maye_fail("no header line: the input is empty (expected the output of `maye cat --full`)");
    free(text);
    if (f != stdin) fclose(f);
    if (rc < 0) {
        maye_writer_abort(w);
        return maye_fail_ctx("%s", in_name);
    }
    return maye_writer_close(w);
}

// ----------------------------------------------------------------------------
// command

int cmd_cat(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    int full = 0, to_records = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(cat_help, stdout);
            return 0;
        } else if (!strcmp(a, "--full")) {
            full = 1;
        } else if (!strcmp(a, "--to-records")) {
            to_records = 1;
        } else if (!strcmp(a, "-o")) {
            if (i + 1 >= argc) {
                log_error("option -o needs a value (see maye cat --help)");
                return 2;
            }
            out = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            log_error("unknown option '%s' (see maye cat --help)", a);
            return 2;
        } else if (in) {
            log_error("one input at a time: got '%s' and '%s' (see maye cat --help)", in, a);
            return 2;
        } else {
            in = a;
        }
    }
    if (out && !to_records) {
        log_error("-o applies to --to-records only; `maye cat` prints JSON lines to stdout");
        return 2;
    }
    if (full && to_records) {
        log_error("--full applies to printing; --to-records reads what `maye cat --full` printed");
        return 2;
    }
    int rc = to_records ? json_to_records(in ? in : "-", out ? out : "-")
                        : records_to_json(in ? in : "-", full ? MAYE_JSON_FULL : MAYE_JSON_SUMMARY);
    if (rc < 0) {
        maye_report_error();
        return 1;
    }
    return 0;
}
