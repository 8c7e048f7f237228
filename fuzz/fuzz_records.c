// Fuzz target for record streams and their JSON form. The first byte picks what the rest is:
//   0: a record stream as it arrives (zstd framing, length prefixes, protobuf);
//   1: the decompressed content of a stream (compressed here, so the fuzzer works on the framing and
//      protobuf layer without having to get past zstd);
//   2: JSON lines for `maye cat --to-records` (a header line, then records).
// Every message that decodes is printed as JSON in both modes; the full JSON must parse back and print
// identically (the `maye cat --full | maye cat --to-records` round trip). Run: fuzz/run.sh records 300.
#include "core/error.h"
#include "core/util.h"
#include "io/record_json.h"
#include "io/records.h"

#include <stdlib.h>
#include <string.h>
#include <zstd.h>

// Prints msg in both modes and checks that the full JSON reads back to a message that prints the same.
static void check_json(const ProtobufCMessage *msg, const char *key) {
    maye_buf a = {0}, b = {0};
    maye_json_print_record(&a, key, msg, MAYE_JSON_SUMMARY);
    maye_buf_clear(&a);
    maye_json_print_record(&a, key, msg, MAYE_JSON_FULL);
    ProtobufCMessage *back = NULL;
    if (maye_json_parse_record(a.data, a.len, 1, key, msg->descriptor, &back) < 0) {
        // a map with the same key twice is valid protobuf but cannot be a JSON object
        if (!strstr(maye_errmsg(), "the key appears twice")) {
            fprintf(stderr, "printed JSON does not parse back: %s\n%s\n", maye_errmsg(), a.data);
            abort();
        }
    } else {
        maye_json_print_record(&b, key, back, MAYE_JSON_FULL);
        if (a.len != b.len || memcmp(a.data, b.data, a.len)) {
            fprintf(stderr, "JSON round trip differs:\n%s\n%s\n", a.data, b.data);
            abort();
        }
        maye_record_free(back);
    }
    maye_buf_free(&a);
    maye_buf_free(&b);
}

static void read_stream(const uint8_t *data, size_t size) {
    maye_reader *r;
    if (maye_reader_open_mem(&r, data, size, "fuzz", MAYE__RECORD_KIND__RECORD_KIND_UNSPECIFIED) < 0) return;
    maye_reader_set_max_record(r, 16 << 20);
    check_json(&maye_reader_header(r)->base, "header");
    const char *key = maye_record_kind_key(maye_reader_kind(r));
    for (;;) {
        ProtobufCMessage *msg;
        if (maye_reader_next(r, &msg, NULL) <= 0) break;
        check_json(msg, key);
        maye_record_free(msg);
    }
    maye_reader_close(r);
}

static void parse_lines(const uint8_t *data, size_t size) {
    const char *p = (const char *)data, *end = p + size;
    const ProtobufCMessageDescriptor *desc = NULL;
    const char *key = NULL;
    for (int line = 1; p < end; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        ProtobufCMessage *msg;
        if (!desc) {
            if (maye_json_parse_record(p, len, line, "header", &maye__stream_header__descriptor, &msg) < 0) return;
            Maye__StreamHeader *h = (Maye__StreamHeader *)msg;
            desc = maye_record_descriptor(h->kind);
            key = maye_record_kind_key(h->kind);
            check_json(msg, "header");
            maye_record_free(msg);
            if (!desc) return;
        } else if (maye_json_parse_record(p, len, line, key, desc, &msg) == 0) {
            check_json(msg, key);
            maye_record_free(msg);
        }
        p += len + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int mode = data[0] % 3;
    data++, size--;
    if (mode == 0) {
        read_stream(data, size);
    } else if (mode == 1) {
        size_t cap = ZSTD_compressBound(size);
        uint8_t *z = malloc(cap);
        size_t n = ZSTD_compress(z, cap, data, size, 1);
        if (!ZSTD_isError(n)) read_stream(z, n);
        free(z);
    } else {
        parse_lines(data, size);
    }
    maye_clear_error();
    return 0;
}
