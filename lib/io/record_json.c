// Records as JSON and back by walking the protobuf-c descriptors (see record_json.h).
//
// Printing appends to a maye_buf. Parsing first reads the JSON text into a tree of nodes (numbers and
// strings keep their text; everything lives in one arena freed at the end), then builds the message from
// the tree field by field, keeping the field path for error messages. A message under construction is
// always in a state protobuf_c_message_free_unpacked can free, so an error anywhere just frees it.
#include "io/record_json.h"

#include "core/error.h"
#include "io/records.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64 // JSON nesting accepted (the schema nests far less)

// ----------------------------------------------------------------------------
// descriptor helpers

static size_t elem_size(const ProtobufCFieldDescriptor *f) {
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32: case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_ENUM: return 4;
    case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64: case PROTOBUF_C_TYPE_DOUBLE: return 8;
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
    }
    return 0;
}

#define FIELD_PTR(msg, off) ((void *)((char *)(msg) + (off)))

// A map<K, V> field is a repeated message field whose entry type is "<Name>Entry" {key = 1; value = 2}.
static int is_map(const ProtobufCFieldDescriptor *f) {
    if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE) return 0;
    const ProtobufCMessageDescriptor *d = f->descriptor;
    size_t n = strlen(d->short_name);
    return d->n_fields == 2 && n > 5 && !strcmp(d->short_name + n - 5, "Entry") && d->fields[0].id == 1 &&
           !strcmp(d->fields[0].name, "key") && d->fields[1].id == 2 && !strcmp(d->fields[1].name, "value");
}

// Whether a singular field is set (proto3 scalars always are; proto2/proto3 `optional` ones say so).
static int field_present(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f) {
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) return *(const uint32_t *)FIELD_PTR(msg, f->quantifier_offset) == f->id;
    if (f->label != PROTOBUF_C_LABEL_OPTIONAL) return 1;
    if (f->type == PROTOBUF_C_TYPE_MESSAGE || f->type == PROTOBUF_C_TYPE_STRING)
        return *(void *const *)FIELD_PTR(msg, f->offset) != NULL;
    return *(const protobuf_c_boolean *)FIELD_PTR(msg, f->quantifier_offset);
}

// Map keys are JSON strings: strings and fixed64 ("0x...") print as strings already, other keys are quoted.
static int key_prints_as_string(const ProtobufCFieldDescriptor *kf) {
    return kf->type == PROTOBUF_C_TYPE_STRING || kf->type == PROTOBUF_C_TYPE_FIXED64;
}

// ----------------------------------------------------------------------------
// printing

static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void put_base64(maye_buf *b, const uint8_t *p, size_t n) {
    maye_buf_reserve(b, 4 * (n / 3 + 1) + 2);
    char *o = b->data + b->len;
    *o++ = '"';
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = b64_chars[v >> 18];
        *o++ = b64_chars[(v >> 12) & 63];
        *o++ = b64_chars[(v >> 6) & 63];
        *o++ = b64_chars[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
        *o++ = b64_chars[v >> 18];
        *o++ = b64_chars[(v >> 12) & 63];
        *o++ = i + 1 < n ? b64_chars[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    b->data[b->len] = 0;
}

// Length of the valid UTF-8 sequence at p (of n bytes), 0 if there is none.
static size_t utf8_len(const uint8_t *p, size_t n) {
    uint8_t c = p[0];
    size_t len;
    uint32_t min;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) len = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef) len = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4) len = 4, min = 0x10000;
    else return 0;
    if (n < len) return 0;
    uint32_t cp = c & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

static void put_string(maye_buf *b, const char *s, size_t n) {
    const uint8_t *p = (const uint8_t *)s;
    maye_buf_reserve(b, n + 2);
    maye_buf_putc(b, '"');
    size_t run = 0; // start of the pending run of bytes copied as they are
    for (size_t i = 0; i < n;) {
        uint8_t c = p[i];
        size_t len = c >= 0x20 && c != '"' && c != '\\' ? utf8_len(p + i, n - i) : 0;
        if (len) {
            i += len;
            continue;
        }
        maye_buf_append(b, p + run, i - run);
        switch (c) {
        case '"': maye_buf_puts(b, "\\\""); break;
        case '\\': maye_buf_puts(b, "\\\\"); break;
        case '\n': maye_buf_puts(b, "\\n"); break;
        case '\t': maye_buf_puts(b, "\\t"); break;
        case '\r': maye_buf_puts(b, "\\r"); break;
        default: maye_buf_printf(b, "\\u%04x", c < 0x80 ? c : 0xdc00 + c); break;
        }
        run = ++i;
    }
    maye_buf_append(b, p + run, n - run);
    maye_buf_putc(b, '"');
}

// The shortest %g that reads back to the same value: more digits never stop a value from round-tripping,
// so the precision is found by bisection (9 digits always suffice for a float, 17 for a double).
static void put_double(maye_buf *b, double v, int single) {
    if (isnan(v)) return maye_buf_puts(b, "\"NaN\"");
    if (isinf(v)) return maye_buf_puts(b, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    char s[320]; // %g of a double needs at most 24; the compiler assumes 310
    int lo = 1, hi = single ? 9 : 17;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        snprintf(s, sizeof s, "%.*g", mid, v);
        if (single ? strtof(s, NULL) == (float)v : strtod(s, NULL) == v) hi = mid;
        else lo = mid + 1;
    }
    snprintf(s, sizeof s, "%.*g", lo, v);
    maye_buf_puts(b, s);
}

static void print_message(maye_buf *b, const ProtobufCMessage *msg, maye_json_mode mode);

// Prints one value of field f stored at p.
static void print_value(maye_buf *b, const ProtobufCFieldDescriptor *f, const void *p, maye_json_mode mode) {
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
        maye_buf_printf(b, "%" PRId32, *(const int32_t *)p); break;
    case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32: maye_buf_printf(b, "%" PRIu32, *(const uint32_t *)p); break;
    case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
        maye_buf_printf(b, "%" PRId64, *(const int64_t *)p); break;
    case PROTOBUF_C_TYPE_UINT64: maye_buf_printf(b, "%" PRIu64, *(const uint64_t *)p); break;
    case PROTOBUF_C_TYPE_FIXED64: maye_buf_printf(b, "\"0x%016" PRIx64 "\"", *(const uint64_t *)p); break;
    case PROTOBUF_C_TYPE_FLOAT: put_double(b, *(const float *)p, 1); break;
    case PROTOBUF_C_TYPE_DOUBLE: put_double(b, *(const double *)p, 0); break;
    case PROTOBUF_C_TYPE_BOOL: maye_buf_puts(b, *(const protobuf_c_boolean *)p ? "true" : "false"); break;
    case PROTOBUF_C_TYPE_ENUM: {
        int v = *(const int *)p;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
        if (ev) maye_buf_printf(b, "\"%s\"", ev->name);
        else maye_buf_printf(b, "%d", v);
        break;
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        put_string(b, s ? s : "", s ? strlen(s) : 0);
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *bd = p;
        put_base64(b, bd->data, bd->len);
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        if (m) print_message(b, m, mode);
        else maye_buf_puts(b, "null");
        break;
    }
    }
}

// Whether full mode can write a tensor's data as numbers that read back to the same bytes.
static int tensor_as_numbers(const Maye__Tensor *t) {
    size_t es = maye_tensor_dtype_size(t->dtype);
    int64_t numel = maye_tensor_numel(t);
    if (!es || numel < 0 || (uint64_t)numel > SIZE_MAX / es || t->data.len != (size_t)numel * es) return 0;
    const uint8_t *d = t->data.data;
    uint16_t nan16 = t->dtype == MAYE__DTYPE__BF16 ? maye_f32_to_bf16(NAN) : maye_f32_to_f16(NAN);
    float nan32 = NAN;
    for (int64_t i = 0; i < numel; i++) {
        if (t->dtype == MAYE__DTYPE__F32) {
            float v;
            memcpy(&v, d + 4 * i, 4);
            if (isnan(v) && memcmp(&v, &nan32, 4)) return 0;
        } else if (t->dtype == MAYE__DTYPE__BF16 || t->dtype == MAYE__DTYPE__F16) {
            uint16_t h;
            memcpy(&h, d + 2 * i, 2);
            float v = t->dtype == MAYE__DTYPE__BF16 ? maye_bf16_to_f32(h) : maye_f16_to_f32(h);
            if (isnan(v) && h != nan16) return 0;
        }
    }
    return 1;
}

static void print_tensor(maye_buf *b, const Maye__Tensor *t, maye_json_mode mode) {
    const ProtobufCFieldDescriptor *fdtype = protobuf_c_message_descriptor_get_field_by_name(&maye__tensor__descriptor,
                                                                                            "dtype");
    maye_buf_puts(b, "{\"dtype\":");
    print_value(b, fdtype, &t->dtype, mode);
    maye_buf_puts(b, ",\"shape\":[");
    for (size_t i = 0; i < t->n_shape; i++) maye_buf_printf(b, "%s%" PRId64, i ? "," : "", t->shape[i]);
    maye_buf_putc(b, ']');
    if (mode == MAYE_JSON_SUMMARY) {
        maye_buf_printf(b, ",\"checksum\":\"0x%016" PRIx64 "\"}", maye_fnv1a(MAYE_FNV_INIT, t->data.data, t->data.len));
        return;
    }
    maye_buf_puts(b, ",\"data\":");
    if (!tensor_as_numbers(t)) {
        put_base64(b, t->data.data, t->data.len);
        maye_buf_putc(b, '}');
        return;
    }
    const uint8_t *d = t->data.data;
    int64_t numel = maye_tensor_numel(t);
    maye_buf_putc(b, '[');
    for (int64_t i = 0; i < numel; i++) {
        if (i) maye_buf_putc(b, ',');
        switch (t->dtype) {
        case MAYE__DTYPE__F32: {
            float v;
            memcpy(&v, d + 4 * i, 4);
            put_double(b, v, 1);
            break;
        }
        case MAYE__DTYPE__BF16: case MAYE__DTYPE__F16: {
            uint16_t h;
            memcpy(&h, d + 2 * i, 2);
            put_double(b, t->dtype == MAYE__DTYPE__BF16 ? maye_bf16_to_f32(h) : maye_f16_to_f32(h), 1);
            break;
        }
        case MAYE__DTYPE__I64: {
            int64_t v;
            memcpy(&v, d + 8 * i, 8);
            maye_buf_printf(b, "%" PRId64, v);
            break;
        }
        case MAYE__DTYPE__I32: {
            int32_t v;
            memcpy(&v, d + 4 * i, 4);
            maye_buf_printf(b, "%" PRId32, v);
            break;
        }
        default: maye_buf_printf(b, "%u", d[i]); break;
        }
    }
    maye_buf_puts(b, "]}");
}

static void print_field(maye_buf *b, const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
                        maye_json_mode mode) {
    const void *p = FIELD_PTR(msg, f->offset);
    if (f->label != PROTOBUF_C_LABEL_REPEATED) return print_value(b, f, p, mode);
    size_t n = *(const size_t *)FIELD_PTR(msg, f->quantifier_offset);
    const char *arr = *(char *const *)p;
    size_t es = elem_size(f);
    if (is_map(f)) {
        const ProtobufCMessageDescriptor *ed = f->descriptor;
        const ProtobufCFieldDescriptor *kf = &ed->fields[0], *vf = &ed->fields[1];
        maye_buf_putc(b, '{');
        for (size_t i = 0; i < n; i++) {
            const ProtobufCMessage *e = ((ProtobufCMessage *const *)arr)[i];
            if (i) maye_buf_putc(b, ',');
            if (key_prints_as_string(kf)) {
                print_value(b, kf, FIELD_PTR(e, kf->offset), mode);
            } else {
                maye_buf_putc(b, '"');
                print_value(b, kf, FIELD_PTR(e, kf->offset), mode);
                maye_buf_putc(b, '"');
            }
            maye_buf_putc(b, ':');
            print_value(b, vf, FIELD_PTR(e, vf->offset), mode);
        }
        maye_buf_putc(b, '}');
        return;
    }
    maye_buf_putc(b, '[');
    for (size_t i = 0; i < n; i++) {
        if (i) maye_buf_putc(b, ',');
        print_value(b, f, arr + i * es, mode);
    }
    maye_buf_putc(b, ']');
}

static void print_message(maye_buf *b, const ProtobufCMessage *msg, maye_json_mode mode) {
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    if (d == &maye__tensor__descriptor) return print_tensor(b, (const Maye__Tensor *)msg, mode);
    maye_buf_putc(b, '{');
    int first = 1;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->label != PROTOBUF_C_LABEL_REPEATED && !field_present(msg, f)) continue;
        maye_buf_printf(b, "%s\"%s\":", first ? "" : ",", f->name);
        first = 0;
        print_field(b, msg, f, mode);
    }
    maye_buf_putc(b, '}');
}

void maye_json_print_message(maye_buf *out, const ProtobufCMessage *msg, maye_json_mode mode) {
    print_message(out, msg, mode);
}

void maye_json_print_record(maye_buf *out, const char *key, const ProtobufCMessage *msg, maye_json_mode mode) {
    maye_buf_putc(out, '{');
    put_string(out, key, strlen(key));
    maye_buf_putc(out, ':');
    print_message(out, msg, mode);
    maye_buf_putc(out, '}');
}

// ----------------------------------------------------------------------------
// JSON text -> tree

typedef enum { J_NULL, J_FALSE, J_TRUE, J_NUM, J_STR, J_ARR, J_OBJ } jtype;

typedef struct jnode {
    jtype type;
    size_t n;            // J_STR/J_NUM: text length; J_ARR/J_OBJ: members
    const char *s;       // J_STR: decoded bytes (NUL-terminated); J_NUM: the number's text (not terminated)
    struct jnode *first; // J_ARR/J_OBJ: first member
    struct jnode *next;  // next member of the enclosing array/object
    const char *key;     // member of an object: its key (NUL-terminated)
    size_t key_len;
} jnode;

typedef struct arena_block {
    struct arena_block *prev;
    size_t used, cap;
    char data[];
} arena_block;

typedef struct {
    const char *text, *p, *end;
    int line;
    int depth;
    arena_block *arena;
} jparser;

static void *arena_alloc(jparser *j, size_t n) {
    n = (n + 7) & ~(size_t)7;
    arena_block *a = j->arena;
    if (!a || a->cap - a->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        a = xmalloc(sizeof *a + cap);
        a->prev = j->arena;
        a->used = 0;
        a->cap = cap;
        j->arena = a;
    }
    void *p = a->data + a->used;
    a->used += n;
    return p;
}

static void arena_free(jparser *j) {
    while (j->arena) {
        arena_block *prev = j->arena->prev;
        free(j->arena);
        j->arena = prev;
    }
}

static int syntax_error(jparser *j, const char *what) {
    return maye_fail("line %d: column %d: invalid JSON: %s", j->line, (int)(j->p - j->text) + 1, what);
}

static void skip_ws(jparser *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

static int hex4(const char *p, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v << 4 | (uint32_t)d;
    }
    *out = v;
    return 0;
}

static void put_utf8(char **o, uint32_t cp) {
    char *q = *o;
    if (cp < 0x80) *q++ = (char)cp;
    else if (cp < 0x800) *q++ = (char)(0xc0 | cp >> 6), *q++ = (char)(0x80 | (cp & 0x3f));
    else if (cp < 0x10000)
        *q++ = (char)(0xe0 | cp >> 12), *q++ = (char)(0x80 | ((cp >> 6) & 0x3f)), *q++ = (char)(0x80 | (cp & 0x3f));
    else
        *q++ = (char)(0xf0 | cp >> 18), *q++ = (char)(0x80 | ((cp >> 12) & 0x3f)),
        *q++ = (char)(0x80 | ((cp >> 6) & 0x3f)), *q++ = (char)(0x80 | (cp & 0x3f));
    *o = q;
}

// Parses a string at j->p (on the opening quote) into arena memory.
static int parse_string(jparser *j, const char **out, size_t *out_len) {
    const char *p = ++j->p;
    while (p < j->end && *p != '"') p += *p == '\\' && p + 1 < j->end ? 2 : 1;
    if (p >= j->end) return syntax_error(j, "unterminated string");
    char *o = arena_alloc(j, (size_t)(p - j->p) + 1), *start = o;
    while (*j->p != '"') {
        unsigned char c = (unsigned char)*j->p;
        if (c < 0x20) return syntax_error(j, "control character inside a string (write it as an escape)");
        if (c != '\\') {
            *o++ = (char)c;
            j->p++;
            continue;
        }
        char e = j->p[1];
        j->p += 2;
        switch (e) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (j->end - j->p < 4 || hex4(j->p, &cp) < 0) return syntax_error(j, "bad \\u escape");
            j->p += 4;
            if (cp >= 0xd800 && cp <= 0xdbff && j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u' &&
                hex4(j->p + 2, &lo) == 0 && lo >= 0xdc00 && lo <= 0xdfff) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                j->p += 6;
            } else if (cp >= 0xdc80 && cp <= 0xdcff) {
                *o++ = (char)(cp - 0xdc00); // a byte that was not valid UTF-8 (see record_json.h)
                break;
            } else if (cp >= 0xd800 && cp <= 0xdfff) {
                return syntax_error(j, "unpaired surrogate in a \\u escape");
            }
            put_utf8(&o, cp);
            break;
        }
        default: j->p -= 1; return syntax_error(j, "bad escape in a string");
        }
    }
    j->p++;
    *o = 0;
    *out = start;
    *out_len = (size_t)(o - start);
    return 0;
}

static int parse_number(jparser *j, jnode *n) {
    const char *p = j->p, *e = j->end;
    if (p < e && *p == '-') p++;
    if (p >= e || *p < '0' || *p > '9') return syntax_error(j, "expected a value");
    if (*p == '0') p++;
    else
        while (p < e && *p >= '0' && *p <= '9') p++;
    if (p < e && *p == '.') {
        p++;
        if (p >= e || *p < '0' || *p > '9') return syntax_error(j, "expected digits after '.'");
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        if (p >= e || *p < '0' || *p > '9') return syntax_error(j, "expected digits in an exponent");
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    n->type = J_NUM;
    n->s = j->p;
    n->n = (size_t)(p - j->p);
    j->p = p;
    return 0;
}

static int parse_value(jparser *j, jnode *n);

static int parse_members(jparser *j, jnode *n, int object) {
    char close = object ? '}' : ']';
    j->p++;
    if (++j->depth > MAX_DEPTH) return syntax_error(j, "nested too deeply");
    n->type = object ? J_OBJ : J_ARR;
    jnode **tail = &n->first;
    skip_ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
        j->depth--;
        return 0;
    }
    for (;;) {
        jnode *m = arena_alloc(j, sizeof *m);
        memset(m, 0, sizeof *m);
        skip_ws(j);
        if (object) {
            if (j->p >= j->end || *j->p != '"') return syntax_error(j, "expected a \"key\"");
            TRY(parse_string(j, &m->key, &m->key_len));
            skip_ws(j);
            if (j->p >= j->end || *j->p != ':') return syntax_error(j, "expected ':' after a key");
            j->p++;
        }
        TRY(parse_value(j, m));
        *tail = m;
        tail = &m->next;
        n->n++;
        skip_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == close) break;
        return syntax_error(j, object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    j->p++;
    j->depth--;
    return 0;
}

static int parse_literal(jparser *j, const char *word, jtype type, jnode *n) {
    size_t len = strlen(word);
    if ((size_t)(j->end - j->p) < len || memcmp(j->p, word, len)) return syntax_error(j, "expected a value");
    j->p += len;
    n->type = type;
    return 0;
}

static int parse_value(jparser *j, jnode *n) {
    skip_ws(j);
    if (j->p >= j->end) return syntax_error(j, "unexpected end of the line");
    switch (*j->p) {
    case '{': return parse_members(j, n, 1);
    case '[': return parse_members(j, n, 0);
    case '"': n->type = J_STR; return parse_string(j, &n->s, &n->n);
    case 't': return parse_literal(j, "true", J_TRUE, n);
    case 'f': return parse_literal(j, "false", J_FALSE, n);
    case 'n': return parse_literal(j, "null", J_NULL, n);
    default: return parse_number(j, n);
    }
}

// Parses the whole text as one JSON value.
static int parse_document(jparser *j, const char *text, size_t len, int line, jnode **root) {
    memset(j, 0, sizeof *j);
    j->text = j->p = text;
    j->end = text + len;
    j->line = line;
    *root = arena_alloc(j, sizeof **root);
    memset(*root, 0, sizeof **root);
    TRY(parse_value(j, *root));
    skip_ws(j);
    if (j->p != j->end) return syntax_error(j, "unexpected text after the value");
    return 0;
}

// ----------------------------------------------------------------------------
// tree -> message

typedef struct {
    int line;
    maye_buf path; // "query.images[0].rgb"
} builder;

static const char *describe(const jnode *n, char *s, size_t cap) {
    switch (n->type) {
    case J_NULL: return "null";
    case J_TRUE: return "true";
    case J_FALSE: return "false";
    case J_NUM: snprintf(s, cap, "%.*s", (int)(n->n > 40 ? 40 : n->n), n->s); return s;
    case J_STR: snprintf(s, cap, "\"%.*s\"%s", (int)(n->n > 40 ? 40 : n->n), n->s, n->n > 40 ? "..." : ""); return s;
    case J_ARR: return "an array";
    case J_OBJ: return "an object";
    }
    return "?";
}

static int build_fail(builder *b, const char *what, const jnode *n) {
    char s[64];
    if (n) return maye_fail("line %d: %s: %s, got %s", b->line, b->path.data, what, describe(n, s, sizeof s));
    return maye_fail("line %d: %s: %s", b->line, b->path.data, what);
}

static size_t path_push_field(builder *b, const char *name) {
    size_t old = b->path.len;
    if (old) maye_buf_putc(&b->path, '.');
    maye_buf_puts(&b->path, name);
    return old;
}

static size_t path_push_index(builder *b, size_t i) {
    size_t old = b->path.len;
    maye_buf_printf(&b->path, "[%zu]", i);
    return old;
}

static size_t path_push_key(builder *b, const char *key) {
    size_t old = b->path.len;
    maye_buf_printf(&b->path, "[\"%.60s\"]", key);
    return old;
}

static void path_pop(builder *b, size_t old) {
    b->path.len = old;
    b->path.data[old] = 0;
}

// An integer number (no fraction or exponent), or the digits of a string (map keys).
static int to_integer(builder *b, const jnode *n, const char *text, size_t len, int64_t lo, uint64_t hi, int64_t *sv,
                      uint64_t *uv) {
    const char *p = text, *e = text + len;
    int neg = p < e && *p == '-';
    p += neg;
    if (p >= e) return build_fail(b, "expected an integer", n);
    uint64_t mag = 0;
    for (; p < e; p++) {
        if (*p < '0' || *p > '9') return build_fail(b, "expected an integer", n);
        unsigned d = (unsigned)(*p - '0');
        if (mag > (UINT64_MAX - d) / 10) return build_fail(b, "integer out of range", n);
        mag = mag * 10 + d;
    }
    if (neg ? (mag > (uint64_t)INT64_MAX + 1 || (lo >= 0 && mag) || -(int64_t)(mag - 1) - 1 < lo) : mag > hi)
        return build_fail(b, "integer out of range for this field", n);
    if (sv) *sv = neg ? -(int64_t)(mag - 1) - 1 : (int64_t)mag;
    if (uv) *uv = mag;
    return 0;
}

static int to_double(builder *b, const jnode *n, double *out) {
    if (n->type == J_STR) {
        if (!strcmp(n->s, "NaN")) return *out = NAN, 0;
        if (!strcmp(n->s, "Infinity")) return *out = INFINITY, 0;
        if (!strcmp(n->s, "-Infinity")) return *out = -INFINITY, 0;
    }
    if (n->type != J_NUM) return build_fail(b, "expected a number (or \"NaN\", \"Infinity\", \"-Infinity\")", n);
    char s[512];
    if (n->n >= sizeof s) return build_fail(b, "number too long", NULL);
    memcpy(s, n->s, n->n);
    s[n->n] = 0;
    errno = 0;
    *out = strtod(s, NULL);
    if (isinf(*out)) return build_fail(b, "number out of range", n);
    return 0;
}

static int to_float(builder *b, const jnode *n, float *out) {
    double v;
    TRY(to_double(b, n, &v));
    *out = (float)v;
    if (isinf(*out) && !isinf(v)) return build_fail(b, "number out of range for a float", n);
    return 0;
}

static int b64_value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

// Decodes base64 (padding optional) into a malloc'ed buffer.
static int from_base64(builder *b, const jnode *n, ProtobufCBinaryData *out) {
    if (n->type != J_STR) return build_fail(b, "expected a base64 string", n);
    size_t len = n->n;
    while (len && n->s[len - 1] == '=') len--;
    if (len % 4 == 1 || n->n - len > 2) return build_fail(b, "invalid base64 (wrong length)", NULL);
    uint8_t *o = xmalloc(len * 3 / 4 + 1);
    size_t k = 0;
    uint32_t acc = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(n->s[i]);
        if (v < 0) {
            free(o);
            return build_fail(b, "invalid base64 character", NULL);
        }
        acc = acc << 6 | (uint32_t)v;
        if (i % 4 == 3) {
            o[k++] = (uint8_t)(acc >> 16);
            o[k++] = (uint8_t)(acc >> 8);
            o[k++] = (uint8_t)acc;
            acc = 0;
        }
    }
    if (len % 4 == 2) o[k++] = (uint8_t)(acc >> 4);
    else if (len % 4 == 3) o[k++] = (uint8_t)(acc >> 10), o[k++] = (uint8_t)(acc >> 2);
    out->data = o;
    out->len = k;
    return 0;
}

static int build_message(builder *b, const jnode *n, ProtobufCMessage *msg);

static ProtobufCMessage *new_message(const ProtobufCMessageDescriptor *d) {
    ProtobufCMessage *m = xmalloc(d->sizeof_message);
    d->message_init(m);
    return m;
}

// Parses one value of field f into p (which holds the field's initial value).
static int build_value(builder *b, const ProtobufCFieldDescriptor *f, const jnode *n, void *p) {
    int64_t sv;
    uint64_t uv;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32: case PROTOBUF_C_TYPE_SINT32: case PROTOBUF_C_TYPE_SFIXED32:
        if (n->type != J_NUM) return build_fail(b, "expected an integer", n);
        TRY(to_integer(b, n, n->s, n->n, INT32_MIN, INT32_MAX, &sv, NULL));
        *(int32_t *)p = (int32_t)sv;
        return 0;
    case PROTOBUF_C_TYPE_UINT32: case PROTOBUF_C_TYPE_FIXED32:
        if (n->type != J_NUM) return build_fail(b, "expected an integer", n);
        TRY(to_integer(b, n, n->s, n->n, 0, UINT32_MAX, NULL, &uv));
        *(uint32_t *)p = (uint32_t)uv;
        return 0;
    case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
        if (n->type != J_NUM) return build_fail(b, "expected an integer", n);
        TRY(to_integer(b, n, n->s, n->n, INT64_MIN, INT64_MAX, &sv, NULL));
        *(int64_t *)p = sv;
        return 0;
    case PROTOBUF_C_TYPE_UINT64:
        if (n->type != J_NUM) return build_fail(b, "expected an integer", n);
        TRY(to_integer(b, n, n->s, n->n, 0, UINT64_MAX, NULL, &uv));
        *(uint64_t *)p = uv;
        return 0;
    case PROTOBUF_C_TYPE_FIXED64:
        if (n->type == J_STR && n->n > 2 && n->n <= 18 && n->s[0] == '0' && (n->s[1] == 'x' || n->s[1] == 'X')) {
            uint64_t v = 0;
            for (size_t i = 2; i < n->n; i++) {
                char c = n->s[i];
                int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                      : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
                if (d < 0) return build_fail(b, "expected a hex string \"0x...\" or an integer", n);
                v = v << 4 | (uint64_t)d;
            }
            *(uint64_t *)p = v;
            return 0;
        }
        if (n->type != J_NUM) return build_fail(b, "expected a hex string \"0x...\" or an integer", n);
        TRY(to_integer(b, n, n->s, n->n, 0, UINT64_MAX, NULL, &uv));
        *(uint64_t *)p = uv;
        return 0;
    case PROTOBUF_C_TYPE_FLOAT: return to_float(b, n, p);
    case PROTOBUF_C_TYPE_DOUBLE: return to_double(b, n, p);
    case PROTOBUF_C_TYPE_BOOL:
        if (n->type != J_TRUE && n->type != J_FALSE) return build_fail(b, "expected true or false", n);
        *(protobuf_c_boolean *)p = n->type == J_TRUE;
        return 0;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        if (n->type == J_NUM) {
            TRY(to_integer(b, n, n->s, n->n, INT32_MIN, INT32_MAX, &sv, NULL));
            *(int *)p = (int)sv;
            return 0;
        }
        const ProtobufCEnumValue *ev = n->type == J_STR ? protobuf_c_enum_descriptor_get_value_by_name(ed, n->s) : NULL;
        if (!ev) {
            maye_buf names = {0};
            for (unsigned i = 0; i < ed->n_values; i++) maye_buf_printf(&names, "%s%s", i ? ", " : "", ed->values[i].name);
            char s[64];
            maye_fail("line %d: %s: expected one of %s, got %s", b->line, b->path.data, names.data, describe(n, s, sizeof s));
            maye_buf_free(&names);
            return -1;
        }
        *(int *)p = ev->value;
        return 0;
    }
    case PROTOBUF_C_TYPE_STRING:
        if (n->type != J_STR) return build_fail(b, "expected a string", n);
        if (strlen(n->s) != n->n) return build_fail(b, "a string cannot contain a NUL character (\\u0000)", NULL);
        *(char **)p = xstrdup(n->s);
        return 0;
    case PROTOBUF_C_TYPE_BYTES: return from_base64(b, n, p);
    case PROTOBUF_C_TYPE_MESSAGE:
        if (n->type == J_NULL) return 0;
        if (n->type != J_OBJ) return build_fail(b, "expected an object", n);
        *(ProtobufCMessage **)p = new_message(f->descriptor);
        return build_message(b, n, *(ProtobufCMessage **)p);
    }
    return build_fail(b, "unsupported field type", NULL);
}

static int cmp_key(const void *a, const void *b) {
    const jnode *x = *(const jnode *const *)a, *y = *(const jnode *const *)b;
    int c = memcmp(x->key, y->key, x->key_len < y->key_len ? x->key_len : y->key_len);
    return c ? c : (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

// Fails if two members of object n have the same key.
static int check_unique_keys(builder *b, const jnode *n) {
    if (n->n < 2) return 0;
    const jnode **keys = xmalloc(n->n * sizeof *keys);
    size_t k = 0;
    for (const jnode *m = n->first; m; m = m->next) keys[k++] = m;
    qsort(keys, k, sizeof *keys, cmp_key);
    int rc = 0;
    for (size_t i = 1; i < k && rc == 0; i++) {
        if (cmp_key(&keys[i - 1], &keys[i])) continue;
        size_t old = path_push_field(b, keys[i]->key);
        rc = build_fail(b, "the key appears twice", NULL);
        path_pop(b, old);
    }
    free(keys);
    return rc;
}

static int build_map(builder *b, const ProtobufCFieldDescriptor *f, const jnode *n, ProtobufCMessage *msg) {
    if (n->type != J_OBJ) return build_fail(b, "expected an object (a map)", n);
    TRY(check_unique_keys(b, n));
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    const ProtobufCFieldDescriptor *kf = &ed->fields[0], *vf = &ed->fields[1];
    size_t *count = FIELD_PTR(msg, f->quantifier_offset);
    ProtobufCMessage **arr = xcalloc(n->n ? n->n : 1, sizeof *arr);
    *(ProtobufCMessage ***)FIELD_PTR(msg, f->offset) = arr;
    for (const jnode *m = n->first; m; m = m->next) {
        ProtobufCMessage *e = new_message(ed);
        arr[(*count)++] = e;
        size_t old = path_push_key(b, m->key);
        jnode key = {.type = key_prints_as_string(kf) ? J_STR : J_NUM, .s = m->key, .n = m->key_len};
        if (kf->type == PROTOBUF_C_TYPE_BOOL) key.type = !strcmp(m->key, "true") ? J_TRUE : J_FALSE;
        int rc = build_value(b, kf, &key, FIELD_PTR(e, kf->offset));
        if (rc == 0) rc = build_value(b, vf, m, FIELD_PTR(e, vf->offset));
        path_pop(b, old);
        TRY(rc);
    }
    return 0;
}

static int build_repeated(builder *b, const ProtobufCFieldDescriptor *f, const jnode *n, ProtobufCMessage *msg) {
    if (is_map(f)) return build_map(b, f, n, msg);
    if (n->type != J_ARR) return build_fail(b, "expected an array", n);
    size_t es = elem_size(f);
    size_t *count = FIELD_PTR(msg, f->quantifier_offset);
    char *arr = xcalloc(n->n ? n->n : 1, es);
    *(char **)FIELD_PTR(msg, f->offset) = arr;
    size_t i = 0;
    for (const jnode *m = n->first; m; m = m->next, i++) {
        size_t old = path_push_index(b, i);
        if (f->type == PROTOBUF_C_TYPE_MESSAGE && m->type != J_OBJ) {
            int rc = build_fail(b, "expected an object", m);
            path_pop(b, old);
            return rc;
        }
        int rc = build_value(b, f, m, arr + i * es);
        path_pop(b, old);
        (*count)++; // the element is in a state free_unpacked can free, even after an error
        TRY(rc);
    }
    return 0;
}

static int build_field(builder *b, const ProtobufCFieldDescriptor *f, const jnode *n, ProtobufCMessage *msg) {
    if (f->label == PROTOBUF_C_LABEL_REPEATED) return build_repeated(b, f, n, msg);
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        uint32_t *which = FIELD_PTR(msg, f->quantifier_offset);
        if (*which) return build_fail(b, "another member of its oneof is already set", NULL);
        if (n->type == J_NULL) return 0;
        TRY(build_value(b, f, n, FIELD_PTR(msg, f->offset)));
        *which = f->id;
        return 0;
    }
    TRY(build_value(b, f, n, FIELD_PTR(msg, f->offset)));
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset && f->type != PROTOBUF_C_TYPE_MESSAGE &&
        f->type != PROTOBUF_C_TYPE_STRING)
        *(protobuf_c_boolean *)FIELD_PTR(msg, f->quantifier_offset) = 1;
    return 0;
}

// Tensor data given as numbers: converted to the dtype's little-endian bytes.
static int build_tensor_numbers(builder *b, const jnode *n, Maye__Tensor *t) {
    size_t es = maye_tensor_dtype_size(t->dtype);
    if (!es) return build_fail(b, "set \"dtype\" (F32, F16, BF16, I64, I32, U8) to give data as numbers", NULL);
    int64_t numel = maye_tensor_numel(t);
    if (numel < 0 || (uint64_t)numel != n->n) {
        char shape[128];
        size_t k = (size_t)snprintf(shape, sizeof shape, "[");
        for (size_t i = 0; i < t->n_shape && k < sizeof shape; i++)
            k += (size_t)snprintf(shape + k, sizeof shape - k, "%s%" PRId64, i ? ", " : "", t->shape[i]);
        if (k < sizeof shape) snprintf(shape + k, sizeof shape - k, "]");
        maye_fail("line %d: %s: %zu values, but shape %s needs %" PRId64, b->line, b->path.data, n->n, shape, numel);
        return -1;
    }
    uint8_t *d = xmalloc(n->n * es);
    t->data.data = d;
    t->data.len = n->n * es;
    size_t i = 0;
    for (const jnode *m = n->first; m; m = m->next, i++) {
        size_t old = path_push_index(b, i);
        int rc = 0;
        int64_t sv = 0;
        float f = 0;
        switch (t->dtype) {
        case MAYE__DTYPE__F32: rc = to_float(b, m, &f); memcpy(d + 4 * i, &f, 4); break;
        case MAYE__DTYPE__BF16: case MAYE__DTYPE__F16: {
            rc = to_float(b, m, &f);
            uint16_t h = t->dtype == MAYE__DTYPE__BF16 ? maye_f32_to_bf16(f) : maye_f32_to_f16(f);
            float back = t->dtype == MAYE__DTYPE__BF16 ? maye_bf16_to_f32(h) : maye_f16_to_f32(h);
            if (rc == 0 && isinf(back) && !isinf(f)) rc = build_fail(b, "number out of range for this dtype", m);
            memcpy(d + 2 * i, &h, 2);
            break;
        }
        case MAYE__DTYPE__I64:
        case MAYE__DTYPE__I32:
        case MAYE__DTYPE__U8: {
            int64_t lo = t->dtype == MAYE__DTYPE__I64 ? INT64_MIN : t->dtype == MAYE__DTYPE__I32 ? INT32_MIN : 0;
            uint64_t hi = t->dtype == MAYE__DTYPE__I64 ? INT64_MAX : t->dtype == MAYE__DTYPE__I32 ? INT32_MAX : 255;
            rc = m->type == J_NUM ? to_integer(b, m, m->s, m->n, lo, hi, &sv, NULL) : build_fail(b, "expected an integer", m);
            if (t->dtype == MAYE__DTYPE__I64) memcpy(d + 8 * i, &sv, 8);
            else if (t->dtype == MAYE__DTYPE__I32) {
                int32_t v = (int32_t)sv;
                memcpy(d + 4 * i, &v, 4);
            } else d[i] = (uint8_t)sv;
            break;
        }
        default: break;
        }
        path_pop(b, old);
        TRY(rc);
    }
    return 0;
}

static int build_tensor(builder *b, const jnode *n, Maye__Tensor *t) {
    const ProtobufCMessageDescriptor *d = &maye__tensor__descriptor;
    const jnode *data = NULL, *checksum = NULL;
    for (const jnode *m = n->first; m; m = m->next) {
        if (!strcmp(m->key, "data")) data = m;
        else if (!strcmp(m->key, "checksum")) checksum = m;
    }
    if (checksum && !data)
        return build_fail(b, "this tensor is a summary (dtype, shape, checksum) without its data: print the stream "
                             "with `maye cat --full` to get JSON that can be turned back into records", NULL);
    for (const jnode *m = n->first; m; m = m->next) {
        if (m == data || m == checksum) continue;
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, m->key);
        size_t old = path_push_field(b, m->key);
        int rc = f ? build_field(b, f, m, &t->base) : build_fail(b, "unknown field (a tensor has dtype, shape, data)", NULL);
        path_pop(b, old);
        TRY(rc);
    }
    if (!data) return 0;
    size_t old = path_push_field(b, "data");
    int rc = data->type == J_ARR ? build_tensor_numbers(b, data, t) : from_base64(b, data, &t->data);
    path_pop(b, old);
    return rc;
}

static int build_message(builder *b, const jnode *n, ProtobufCMessage *msg) {
    TRY(check_unique_keys(b, n));
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    if (d == &maye__tensor__descriptor) return build_tensor(b, n, (Maye__Tensor *)msg);
    for (const jnode *m = n->first; m; m = m->next) {
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, m->key);
        if (!f) {
            maye_buf names = {0};
            for (unsigned i = 0; i < d->n_fields; i++) maye_buf_printf(&names, "%s%s", i ? ", " : "", d->fields[i].name);
            maye_fail("line %d: %s: unknown field '%.60s' (a %s has: %s)", b->line, b->path.data, m->key, d->short_name,
                      names.data);
            maye_buf_free(&names);
            return -1;
        }
        size_t old = path_push_field(b, m->key);
        int rc = build_field(b, f, m, msg);
        path_pop(b, old);
        TRY(rc);
    }
    return 0;
}

// Builds a message of type desc from node n (an object), named `root` in messages.
static int build_root(const jnode *n, int line, const char *root, const ProtobufCMessageDescriptor *desc,
                      ProtobufCMessage **out) {
    *out = NULL;
    builder b = {.line = line};
    maye_buf_puts(&b.path, root);
    int rc;
    if (n->type != J_OBJ) {
        rc = build_fail(&b, "expected an object", n);
    } else {
        ProtobufCMessage *msg = new_message(desc);
        rc = build_message(&b, n, msg);
        if (rc == 0) *out = msg;
        else protobuf_c_message_free_unpacked(msg, NULL);
    }
    maye_buf_free(&b.path);
    return rc;
}

int maye_json_parse_message(const char *text, size_t len, int line, const char *root,
                            const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out) {
    *out = NULL;
    jparser j;
    jnode *n;
    int rc = parse_document(&j, text, len, line, &n);
    if (rc == 0) rc = build_root(n, line, root, desc, out);
    arena_free(&j);
    return rc;
}

int maye_json_parse_record(const char *text, size_t len, int line, const char *key,
                           const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out) {
    *out = NULL;
    jparser j;
    jnode *n;
    int rc = parse_document(&j, text, len, line, &n);
    if (rc == 0 && (n->type != J_OBJ || n->n != 1))
        rc = maye_fail("line %d: expected one object with a single key, {\"%s\": {...}}", line, key);
    if (rc == 0 && strcmp(n->first->key, key))
        rc = maye_fail("line %d: expected a \"%s\" record, got \"%.60s\"", line, key, n->first->key);
    if (rc == 0) rc = build_root(n->first, line, key, desc, out);
    arena_free(&j);
    return rc;
}
