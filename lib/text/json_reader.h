// A small read-only JSON parser for the text module. The whole document is parsed into one array of
// nodes (no allocation per value), strings are decoded into one buffer and keep their length (so
// "\u0000" survives, which cJSON's C strings cannot do), and every node remembers where it started so
// messages can say "tokenizer.json:1234:17". It parses the 11 MB Qwen2 tokenizer.json in about 0.1 s.
// maye_jr_append_string() writes a JSON string literal for output.
#pragma once
#include "core/util.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    MAYE_JR_NULL,
    MAYE_JR_FALSE,
    MAYE_JR_TRUE,
    MAYE_JR_NUMBER,
    MAYE_JR_STRING,
    MAYE_JR_ARRAY,
    MAYE_JR_OBJECT,
} maye_jr_type;

typedef struct {
    uint8_t type;       // maye_jr_type
    int32_t next;       // next sibling (node index), -1 after the last one
    int32_t child;      // first element / member of an array or object, -1 when empty
    int32_t n_children; // elements of an array, members of an object
    uint32_t key_off;   // member name (objects only): offset into the decoded strings
    uint32_t key_len;
    uint32_t str_off; // decoded string value: offset into the decoded strings (NUL-terminated)
    uint32_t str_len;
    uint32_t src_off; // where the value starts in the source, for messages
    double num;       // number value
} maye_jr_node;

typedef struct {
    char *src; // (len + 1) copy of the source, for positions in messages
    size_t len;
    char *strs;          // (len + 1) decoded strings and member names, each NUL-terminated
    maye_jr_node *nodes; // (n_nodes) node 0 is the root value
    int32_t n_nodes, cap;
    char *name; // what the document is called in messages ("tokenizer.json", "stdin:3")
} maye_jr_doc;

// Parses src[0..len) (one JSON value, surrounded only by whitespace). On error returns -1 with a message
// "name:line:column: what is wrong". doc is always safe to free afterwards.
int maye_jr_parse(maye_jr_doc *doc, const char *src, size_t len, const char *name);
void maye_jr_free(maye_jr_doc *doc);

static inline const maye_jr_node *maye_jr_root(const maye_jr_doc *d) { return &d->nodes[0]; }
static inline const maye_jr_node *maye_jr_first(const maye_jr_doc *d, const maye_jr_node *n) {
    return n->child < 0 ? NULL : &d->nodes[n->child];
}
static inline const maye_jr_node *maye_jr_next(const maye_jr_doc *d, const maye_jr_node *n) {
    return n->next < 0 ? NULL : &d->nodes[n->next];
}
static inline const char *maye_jr_str(const maye_jr_doc *d, const maye_jr_node *n) { return d->strs + n->str_off; }
static inline const char *maye_jr_key(const maye_jr_doc *d, const maye_jr_node *n) { return d->strs + n->key_off; }

// The member `key` of an object (the first one if repeated); NULL if absent or `obj` is not an object.
const maye_jr_node *maye_jr_get(const maye_jr_doc *d, const maye_jr_node *obj, const char *key);
// "null", "a number", "a string", ... for messages.
const char *maye_jr_type_name(int type);
// 1-based line and column of a node's source position.
void maye_jr_where(const maye_jr_doc *d, const maye_jr_node *n, int *line, int *col);
// 1 if n is a number holding an integer in [lo, hi] (then stored in *out).
int maye_jr_int(const maye_jr_node *n, int64_t lo, int64_t hi, int64_t *out);
// Appends s[0..n) as a JSON string literal (quotes, escapes for '"', '\\' and control characters).
void maye_jr_append_string(maye_buf *b, const char *s, size_t n);
