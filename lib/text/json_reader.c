// The JSON reader behind tokenizer.json loading and `maye tokenize` (see json_reader.h): a recursive-descent
// parser that fills one node array and decodes strings in place.
#include "text/json_reader.h"

#include "core/error.h"
#include "text/utf8.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 512

typedef struct {
    maye_jr_doc *d;
    const char *s; // the source
    size_t n;
    size_t pos; // parse position in the source
    size_t w;   // write position in the decoded strings
    int depth;
} parser;

// ----------------------------------------------------------------------------
// errors with positions

static void line_col(const char *s, size_t off, int *line, int *col) {
    int l = 1, c = 1;
    for (size_t i = 0; i < off; i++) {
        if (s[i] == '\n')
            l++, c = 1;
        else
            c++;
    }
    *line = l, *col = c;
}

// "name:line:col: what", or "name: column C: what" for a one-line document (a JSON line whose name
// already carries the line number, or a minified file).
static int fail_at(parser *p, size_t off, const char *what) {
    int line, col;
    line_col(p->s, off, &line, &col);
    if (!memchr(p->s, '\n', p->n)) return maye_fail("%s: column %d: %s", p->d->name, col, what);
    return maye_fail("%s:%d:%d: %s", p->d->name, line, col, what);
}

void maye_jr_where(const maye_jr_doc *d, const maye_jr_node *n, int *line, int *col) {
    line_col(d->src, n->src_off, line, col);
}

// ----------------------------------------------------------------------------
// values

static int32_t new_node(parser *p, maye_jr_type type) {
    maye_jr_doc *d = p->d;
    if (d->n_nodes == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 256;
        d->nodes = xrealloc(d->nodes, (size_t)d->cap * sizeof *d->nodes);
    }
    int32_t i = d->n_nodes++;
    maye_jr_node *nd = &d->nodes[i];
    memset(nd, 0, sizeof *nd);
    nd->type = (uint8_t)type;
    nd->next = nd->child = -1;
    nd->src_off = (uint32_t)p->pos;
    return i;
}

static void skip_ws(parser *p) {
    while (p->pos < p->n) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static int hex4(const char *s, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        int h = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (h < 0) return -1;
        v = v << 4 | (uint32_t)h;
    }
    *out = v;
    return 0;
}

// Parses the string starting at the opening quote and decodes it into the string buffer; its offset and
// length there go to *off, *len.
static int parse_string(parser *p, uint32_t *off, uint32_t *len) {
    const char *s = p->s;
    char *out = p->d->strs;
    size_t start = p->pos++, w0 = p->w;
    char high = 0; // bit 7 set once a non-ASCII byte was seen: only then can the string be ill-formed
    for (;;) {
        size_t r = p->pos;
        while (r < p->n && s[r] != '"' && s[r] != '\\' && (unsigned char)s[r] >= 0x20) high |= s[r++];
        memcpy(out + p->w, s + p->pos, r - p->pos);
        p->w += r - p->pos;
        p->pos = r;
        if (r >= p->n) return fail_at(p, start, "unterminated string");
        char c = s[r];
        if (c == '"') break;
        if (c != '\\') return fail_at(p, r, "control character inside a string (escape it as \\u00XX)");
        if (r + 1 >= p->n) return fail_at(p, r, "unterminated escape in a string");
        char e = s[r + 1];
        p->pos = r + 2;
        switch (e) {
        case '"': out[p->w++] = '"'; break;
        case '\\': out[p->w++] = '\\'; break;
        case '/': out[p->w++] = '/'; break;
        case 'b': out[p->w++] = '\b'; break;
        case 'f': out[p->w++] = '\f'; break;
        case 'n': out[p->w++] = '\n'; break;
        case 'r': out[p->w++] = '\r'; break;
        case 't': out[p->w++] = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (p->pos + 4 > p->n || hex4(s + p->pos, &cp) < 0)
                return fail_at(p, r, "bad \\u escape (need 4 hex digits)");
            p->pos += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return fail_at(p, r, "lone low surrogate in a \\u escape");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                if (p->pos + 6 > p->n || s[p->pos] != '\\' || s[p->pos + 1] != 'u' || hex4(s + p->pos + 2, &lo) < 0 ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return fail_at(p, r, "lone high surrogate in a \\u escape");
                p->pos += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            // the encoding (<= 4 bytes) is never longer than the escape it replaces (>= 6 bytes)
            p->w += maye_utf8_encode(cp, out + p->w); // well-formed by construction
            break;
        }
        default: return fail_at(p, r, "unknown escape in a string");
        }
    }
    p->pos++;
    if ((high & 0x80) && !maye_utf8_valid(out + w0, p->w - w0, NULL))
        return fail_at(p, start, "string is not valid UTF-8");
    out[p->w++] = 0; // the closing quote (or the escapes) made room for it
    *off = (uint32_t)w0;
    *len = (uint32_t)(p->w - 1 - w0);
    return 0;
}

static int parse_number(parser *p, double *out) {
    size_t i = p->pos;
    const char *s = p->s;
    if (i < p->n && s[i] == '-') i++;
    if (i >= p->n || !(s[i] >= '0' && s[i] <= '9')) return fail_at(p, p->pos, "expected a value");
    int64_t iv = 0;
    int small = 1, digits = 0;
    if (s[i] == '0')
        i++, digits = 1;
    else
        for (; i < p->n && s[i] >= '0' && s[i] <= '9'; i++)
            if (++digits > 17)
                small = 0; // longer numbers go to strtod below
            else
                iv = iv * 10 + (s[i] - '0');
    int frac = 0;
    if (i < p->n && s[i] == '.') {
        frac = 1, i++;
        if (i >= p->n || !(s[i] >= '0' && s[i] <= '9')) return fail_at(p, i, "expected digits after '.'");
        while (i < p->n && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < p->n && (s[i] == 'e' || s[i] == 'E')) {
        frac = 1, i++;
        if (i < p->n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= p->n || !(s[i] >= '0' && s[i] <= '9')) return fail_at(p, i, "expected digits in the exponent");
        while (i < p->n && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (!frac && small)
        *out = s[p->pos] == '-' ? -(double)iv : (double)iv;
    else {
        char tmp[64];
        size_t len = i - p->pos;
        if (len < sizeof tmp) {
            memcpy(tmp, s + p->pos, len);
            tmp[len] = 0;
            *out = strtod(tmp, NULL);
        } else {
            char *big = xmalloc(len + 1);
            memcpy(big, s + p->pos, len);
            big[len] = 0;
            *out = strtod(big, NULL);
            free(big);
        }
    }
    p->pos = i;
    return 0;
}

static int literal(parser *p, const char *word) {
    size_t k = strlen(word);
    if (p->pos + k > p->n || memcmp(p->s + p->pos, word, k)) return fail_at(p, p->pos, "expected a value");
    p->pos += k;
    return 0;
}

static int parse_value(parser *p, int32_t *out);

static int parse_container(parser *p, int32_t self, int is_object) {
    char close = is_object ? '}' : ']';
    p->pos++;
    if (++p->depth > MAX_DEPTH) return fail_at(p, p->pos - 1, "nested too deeply");
    skip_ws(p);
    if (p->pos < p->n && p->s[p->pos] == close) {
        p->pos++;
        p->depth--;
        return 0;
    }
    int32_t prev = -1, count = 0;
    for (;;) {
        skip_ws(p);
        uint32_t koff = 0, klen = 0;
        if (is_object) {
            if (p->pos >= p->n || p->s[p->pos] != '"') return fail_at(p, p->pos, "expected a member name in quotes");
            TRY(parse_string(p, &koff, &klen));
            skip_ws(p);
            if (p->pos >= p->n || p->s[p->pos] != ':') return fail_at(p, p->pos, "expected ':' after a member name");
            p->pos++;
            skip_ws(p);
        }
        int32_t child;
        TRY(parse_value(p, &child));
        maye_jr_node *nodes = p->d->nodes; // may have moved
        nodes[child].key_off = koff, nodes[child].key_len = klen;
        if (prev < 0)
            nodes[self].child = child;
        else
            nodes[prev].next = child;
        prev = child;
        count++;
        skip_ws(p);
        if (p->pos >= p->n) return fail_at(p, p->pos, is_object ? "unterminated object" : "unterminated array");
        char c = p->s[p->pos++];
        if (c == close) break;
        if (c != ',') return fail_at(p, p->pos - 1, is_object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    p->d->nodes[self].n_children = count;
    p->depth--;
    return 0;
}

static int parse_value(parser *p, int32_t *out) {
    skip_ws(p);
    if (p->pos >= p->n) return fail_at(p, p->pos, "unexpected end of input, expected a value");
    char c = p->s[p->pos];
    int32_t i;
    switch (c) {
    case '{':
        i = new_node(p, MAYE_JR_OBJECT);
        TRY(parse_container(p, i, 1));
        break;
    case '[':
        i = new_node(p, MAYE_JR_ARRAY);
        TRY(parse_container(p, i, 0));
        break;
    case '"': {
        i = new_node(p, MAYE_JR_STRING);
        uint32_t off, len;
        TRY(parse_string(p, &off, &len));
        p->d->nodes[i].str_off = off, p->d->nodes[i].str_len = len;
        break;
    }
    case 't':
        i = new_node(p, MAYE_JR_TRUE);
        TRY(literal(p, "true"));
        break;
    case 'f':
        i = new_node(p, MAYE_JR_FALSE);
        TRY(literal(p, "false"));
        break;
    case 'n':
        i = new_node(p, MAYE_JR_NULL);
        TRY(literal(p, "null"));
        break;
    default: {
        i = new_node(p, MAYE_JR_NUMBER);
        double v = 0;
        TRY(parse_number(p, &v));
        p->d->nodes[i].num = v;
    }
    }
    *out = i;
    return 0;
}

// ----------------------------------------------------------------------------
// documents

int maye_jr_parse(maye_jr_doc *d, const char *src, size_t len, const char *name) {
    memset(d, 0, sizeof *d);
    d->name = xstrdup(name);
    if (len >= UINT32_MAX) return maye_fail("%s: %zu bytes is too large for a JSON document (limit 4 GiB)", name, len);
    d->src = xmalloc(len + 1);
    if (len) memcpy(d->src, src, len);
    d->src[len] = 0;
    d->len = len;
    d->strs = xmalloc(len + 1);
    // every value but the root follows one of these, so this bounds the node count (no regrowth)
    size_t bound = 1;
    for (size_t i = 0; i < len; i++) bound += src[i] == ',' || src[i] == ':' || src[i] == '[' || src[i] == '{';
    d->cap = bound < INT32_MAX ? (int32_t)bound : INT32_MAX;
    d->nodes = xmalloc((size_t)d->cap * sizeof *d->nodes);
    parser p = {.d = d, .s = d->src, .n = len};
    int32_t root;
    TRY(parse_value(&p, &root));
    skip_ws(&p);
    if (p.pos != len) return fail_at(&p, p.pos, "unexpected text after the JSON value");
    return 0;
}

void maye_jr_free(maye_jr_doc *d) {
    free(d->src);
    free(d->strs);
    free(d->nodes);
    free(d->name);
    memset(d, 0, sizeof *d);
}

const maye_jr_node *maye_jr_get(const maye_jr_doc *d, const maye_jr_node *obj, const char *key) {
    if (!obj || obj->type != MAYE_JR_OBJECT) return NULL;
    size_t k = strlen(key);
    for (const maye_jr_node *m = maye_jr_first(d, obj); m; m = maye_jr_next(d, m))
        if (m->key_len == k && !memcmp(d->strs + m->key_off, key, k)) return m;
    return NULL;
}

const char *maye_jr_type_name(int type) {
    static const char *names[] = {"null", "false", "true", "a number", "a string", "an array", "an object"};
    return type >= 0 && type <= MAYE_JR_OBJECT ? names[type] : "?";
}

int maye_jr_int(const maye_jr_node *n, int64_t lo, int64_t hi, int64_t *out) {
    if (!n || n->type != MAYE_JR_NUMBER) return 0;
    double v = n->num;
    if (!(v >= (double)lo && v <= (double)hi) || v != floor(v)) return 0;
    *out = (int64_t)v;
    return 1;
}

// ----------------------------------------------------------------------------
// writing

void maye_jr_append_string(maye_buf *b, const char *s, size_t n) {
    maye_buf_reserve(b, n + 2);
    maye_buf_putc(b, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        maye_buf_append(b, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': maye_buf_puts(b, "\\\""); break;
        case '\\': maye_buf_puts(b, "\\\\"); break;
        case '\n': maye_buf_puts(b, "\\n"); break;
        case '\r': maye_buf_puts(b, "\\r"); break;
        case '\t': maye_buf_puts(b, "\\t"); break;
        default: maye_buf_printf(b, "\\u%04x", c);
        }
    }
    maye_buf_append(b, s + run, n - run);
    maye_buf_putc(b, '"');
}
