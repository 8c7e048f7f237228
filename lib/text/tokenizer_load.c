// Loading a Hugging Face tokenizer.json into the tables of tokenizer_internal.h: the BPE vocabulary and
// merges as hash maps, added tokens indexed by first byte, the normalizer as utf8proc options, the
// pre-tokenizer as compiled PCRE2 patterns (JIT), and the ByteLevel byte <-> character tables.
// Component types other than the byte-level BPE ones are refused with a message naming the component.
#include "core/error.h"
#include "text/json_reader.h"
#include "text/tokenizer_internal.h"
#include "text/utf8.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

// The pattern ByteLevel splits with when use_regex is true (the GPT-2 pre-tokenizer).
static const char GPT2_PATTERN[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef struct {
    maye_tokenizer *t;
    maye_jr_doc doc;
    uint64_t digest;
} loader;

// ----------------------------------------------------------------------------
// messages: "file:line:col: component: what"

__attribute__((format(printf, 3, 4))) static int fail_at(loader *L, const maye_jr_node *n, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line, col;
    maye_jr_where(&L->doc, n, &line, &col);
    return maye_fail("%s:%d:%d: %s", L->t->name, line, col, msg);
}

static const char *type_of(loader *L, const maye_jr_node *obj) {
    const maye_jr_node *ty = maye_jr_get(&L->doc, obj, "type");
    return ty && ty->type == MAYE_JR_STRING ? maye_jr_str(&L->doc, ty) : NULL;
}

// A boolean member; `def` when absent or null.
static int get_bool(loader *L, const maye_jr_node *obj, const char *key, int def, const char *where, int *out) {
    const maye_jr_node *v = maye_jr_get(&L->doc, obj, key);
    if (!v || v->type == MAYE_JR_NULL)
        *out = def;
    else if (v->type == MAYE_JR_TRUE || v->type == MAYE_JR_FALSE)
        *out = v->type == MAYE_JR_TRUE;
    else
        return fail_at(L, v, "%s.%s: expected true or false, got %s", where, key, maye_jr_type_name(v->type));
    return 0;
}

static void digest_add(loader *L, const void *p, size_t n) { L->digest = maye_fnv1a(L->digest, p, n); }
static void digest_i32(loader *L, int32_t v) { digest_add(L, &v, sizeof v); }

// ----------------------------------------------------------------------------
// vocabulary: id -> string and string -> id

uint64_t tok_hash(const void *p, size_t n) {
    uint64_t h = maye_fnv1a(MAYE_FNV_INIT, p, n);
    return h ^ (h >> 29);
}

static uint64_t hash2(const char *a, size_t na, const char *b, size_t nb) {
    uint64_t h = maye_fnv1a(maye_fnv1a(MAYE_FNV_INIT, a, na), b, nb);
    return h ^ (h >> 29);
}

int32_t tok_vocab_lookup2(const maye_tokenizer *t, const char *a, size_t na, const char *b, size_t nb) {
    uint32_t i = (uint32_t)hash2(a, na, b, nb) & t->vmask;
    for (;;) {
        uint32_t e = t->vmap[i];
        if (!e) return -1;
        int32_t id = (int32_t)e - 1;
        const char *s = t->pool.data + t->tok_off[id];
        if (t->tok_len[id] == na + nb && !memcmp(s, a, na) && !memcmp(s + na, b, nb)) return id;
        i = (i + 1) & t->vmask;
    }
}

static int load_vocab(loader *L, const maye_jr_node *vocab) {
    maye_tokenizer *t = L->t;
    maye_jr_doc *d = &L->doc;
    if (vocab->type != MAYE_JR_OBJECT)
        return fail_at(L, vocab, "model.vocab: expected an object {token: id}, got %s", maye_jr_type_name(vocab->type));
    // ids first, to size the tables
    int32_t max_id = -1;
    for (const maye_jr_node *m = maye_jr_first(d, vocab); m; m = maye_jr_next(d, m)) {
        int64_t id;
        if (!maye_jr_int(m, 0, TOK_MAX_IDS - 1, &id))
            return fail_at(L, m, "model.vocab: token '%s' has no valid id (need an integer in [0, %d))",
                           maye_jr_key(d, m), TOK_MAX_IDS);
        if (id > max_id) max_id = (int32_t)id;
    }
    t->n_ids = max_id + 1;
    t->tok_off = xcalloc((size_t)t->n_ids + 1, sizeof *t->tok_off);
    t->tok_len = xmalloc(((size_t)t->n_ids + 1) * sizeof *t->tok_len);
    for (int32_t i = 0; i <= t->n_ids; i++) t->tok_len[i] = TOK_NO_TOKEN;
    uint32_t cap = 16;
    while (cap < 2u * (uint32_t)vocab->n_children) cap *= 2;
    t->vmap = xcalloc(cap, sizeof *t->vmap);
    t->vmask = cap - 1;
    maye_buf_reserve(&t->pool, (size_t)vocab->n_children * 8);
    for (const maye_jr_node *m = maye_jr_first(d, vocab); m; m = maye_jr_next(d, m)) {
        int32_t id = (int32_t)m->num;
        const char *s = maye_jr_key(d, m);
        if (t->tok_len[id] != TOK_NO_TOKEN)
            return fail_at(L, m, "model.vocab: id %d is given to both '%s' and '%s'", id, t->pool.data + t->tok_off[id],
                           s);
        uint32_t i = (uint32_t)tok_hash(s, m->key_len) & t->vmask;
        for (; t->vmap[i]; i = (i + 1) & t->vmask) {
            int32_t other = (int32_t)t->vmap[i] - 1;
            if (t->tok_len[other] == m->key_len && !memcmp(t->pool.data + t->tok_off[other], s, m->key_len))
                return fail_at(L, m, "model.vocab: token '%s' appears twice", s);
        }
        t->tok_off[id] = (uint32_t)t->pool.len;
        t->tok_len[id] = m->key_len;
        maye_buf_append(&t->pool, s, m->key_len + 1); // with its NUL
        t->vmap[i] = (uint32_t)id + 1;
    }
    digest_i32(L, t->n_ids);
    for (int32_t id = 0; id < t->n_ids; id++) {
        digest_i32(L, (int32_t)t->tok_len[id]);
        if (t->tok_len[id] != TOK_NO_TOKEN) digest_add(L, t->pool.data + t->tok_off[id], t->tok_len[id]);
    }
    return 0;
}

// ----------------------------------------------------------------------------
// merges

static void merge_insert(maye_tokenizer *t, int32_t a, int32_t b, uint32_t rank, int32_t new_id) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint32_t i = (uint32_t)((key * 0x9E3779B97F4A7C15ULL) >> 32) & t->mmask;
    while (t->mkey[i] != UINT64_MAX && t->mkey[i] != key) i = (i + 1) & t->mmask;
    // a repeated pair takes the later rank, as the Hugging Face loader's hash map does
    t->mkey[i] = key, t->mrank[i] = rank, t->mnew[i] = new_id;
}

static int load_merges(loader *L, const maye_jr_node *merges) {
    maye_tokenizer *t = L->t;
    maye_jr_doc *d = &L->doc;
    if (merges->type != MAYE_JR_ARRAY)
        return fail_at(L, merges, "model.merges: expected an array of \"a b\" strings or [a, b] pairs, got %s",
                       maye_jr_type_name(merges->type));
    uint32_t cap = 16;
    while (cap < 2u * (uint32_t)merges->n_children) cap *= 2;
    t->mkey = xmalloc(cap * sizeof *t->mkey);
    memset(t->mkey, 0xFF, cap * sizeof *t->mkey);
    t->mrank = xmalloc(cap * sizeof *t->mrank);
    t->mnew = xmalloc(cap * sizeof *t->mnew);
    t->mmask = cap - 1;
    uint32_t rank = 0;
    for (const maye_jr_node *m = maye_jr_first(d, merges); m; m = maye_jr_next(d, m), rank++) {
        const char *a, *b;
        size_t na, nb;
        if (m->type == MAYE_JR_STRING) {
            a = maye_jr_str(d, m);
            const char *sp = memchr(a, ' ', m->str_len);
            if (!sp || memchr(sp + 1, ' ', m->str_len - (size_t)(sp + 1 - a)))
                return fail_at(L, m, "model.merges[%u]: '%s' is not two tokens separated by one space", rank, a);
            na = (size_t)(sp - a), b = sp + 1, nb = m->str_len - na - 1;
        } else if (m->type == MAYE_JR_ARRAY && m->n_children == 2 && maye_jr_first(d, m)->type == MAYE_JR_STRING &&
                   maye_jr_next(d, maye_jr_first(d, m))->type == MAYE_JR_STRING) {
            const maye_jr_node *x = maye_jr_first(d, m), *y = maye_jr_next(d, x);
            a = maye_jr_str(d, x), na = x->str_len, b = maye_jr_str(d, y), nb = y->str_len;
        } else {
            return fail_at(L, m, "model.merges[%u]: expected \"a b\" or [\"a\", \"b\"], got %s", rank,
                           maye_jr_type_name(m->type));
        }
        int32_t ia = tok_vocab_lookup2(t, a, na, "", 0), ib = tok_vocab_lookup2(t, b, nb, "", 0);
        int32_t inew = tok_vocab_lookup2(t, a, na, b, nb);
        if (ia < 0 || ib < 0)
            return fail_at(L, m, "model.merges[%u]: token '%.*s' is not in model.vocab", rank, (int)(ia < 0 ? na : nb),
                           ia < 0 ? a : b);
        if (inew < 0)
            return fail_at(L, m, "model.merges[%u]: the merged token '%.*s%.*s' is not in model.vocab", rank, (int)na,
                           a, (int)nb, b);
        merge_insert(t, ia, ib, rank, inew);
        digest_i32(L, ia), digest_i32(L, ib);
    }
    return 0;
}

// ----------------------------------------------------------------------------
// the BPE model section

static int load_model(loader *L, const maye_jr_node *model) {
    maye_tokenizer *t = L->t;
    maye_jr_doc *d = &L->doc;
    if (!model || model->type != MAYE_JR_OBJECT)
        return maye_fail("%s: no 'model' section: a tokenizer.json from Hugging Face tokenizers has "
                         "model {type: BPE, vocab, merges}",
                         t->name);
    const char *type = type_of(L, model);
    if (type && strcmp(type, "BPE"))
        return fail_at(L, model, "model: type '%s' is not supported (only byte-level 'BPE')", type);
    const maye_jr_node *vocab = maye_jr_get(d, model, "vocab"), *merges = maye_jr_get(d, model, "merges");
    if (!vocab) return fail_at(L, model, "model: no 'vocab' {token: id}");
    if (!merges) return fail_at(L, model, "model: no 'merges' list");
    const maye_jr_node *v;
    if ((v = maye_jr_get(d, model, "dropout")) && v->type != MAYE_JR_NULL &&
        !(v->type == MAYE_JR_NUMBER && v->num == 0))
        return fail_at(L, v, "model.dropout: BPE dropout is not supported (set it to null)");
    const char *affix[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++)
        if ((v = maye_jr_get(d, model, affix[i])) && v->type != MAYE_JR_NULL &&
            !(v->type == MAYE_JR_STRING && v->str_len == 0))
            return fail_at(L, v, "model.%s: not supported in a byte-level BPE (must be null or \"\")", affix[i]);
    int byte_fallback = 0;
    TRY(get_bool(L, model, "fuse_unk", 0, "model", &t->fuse_unk));
    TRY(get_bool(L, model, "byte_fallback", 0, "model", &byte_fallback));
    TRY(get_bool(L, model, "ignore_merges", 0, "model", &t->ignore_merges));
    TRY(load_vocab(L, vocab));
    TRY(load_merges(L, merges));
    t->unk_id = -1;
    if ((v = maye_jr_get(d, model, "unk_token")) && v->type != MAYE_JR_NULL) {
        if (v->type != MAYE_JR_STRING) return fail_at(L, v, "model.unk_token: expected a string or null");
        t->unk_id = tok_vocab_lookup2(t, maye_jr_str(d, v), v->str_len, "", 0);
        if (t->unk_id < 0) return fail_at(L, v, "model.unk_token: '%s' is not in model.vocab", maye_jr_str(d, v));
    }
    // the start symbols of each byte: its ByteLevel character, else its UTF-8 bytes as <0xXX>, else unk
    for (int b = 0; b < 256; b++) {
        char ch[4];
        size_t n = maye_utf8_encode(maye_tokenizer_byte_char((uint8_t)b), ch);
        int32_t id = tok_vocab_lookup2(t, ch, n, "", 0);
        t->byte_nsym[b] = 0, t->byte_unk[b] = 0;
        if (id >= 0) {
            t->byte_sym[b][0] = id, t->byte_nsym[b] = 1;
            continue;
        }
        if (byte_fallback) {
            int ok = 1;
            for (size_t k = 0; k < n; k++) {
                char hex[8];
                snprintf(hex, sizeof hex, "<0x%02X>", (unsigned char)ch[k]);
                int32_t hid = tok_vocab_lookup2(t, hex, strlen(hex), "", 0);
                if (hid < 0) ok = 0;
                t->byte_sym[b][k] = hid;
            }
            if (ok) {
                t->byte_nsym[b] = (uint8_t)n;
                continue;
            }
        }
        if (t->unk_id >= 0) t->byte_sym[b][0] = t->unk_id, t->byte_nsym[b] = 1, t->byte_unk[b] = 1;
    }
    int32_t flags[4] = {t->unk_id, t->fuse_unk, byte_fallback, t->ignore_merges};
    digest_add(L, flags, sizeof flags);
    return 0;
}

// ----------------------------------------------------------------------------
// added tokens

typedef struct {
    const char *s;
    uint32_t len;
    int32_t index; // into maye_tokenizer.added
} added_key;

// by first byte, then longest first, then content (so equal contents end up next to each other)
static int cmp_added(const void *x, const void *y) {
    const added_key *a = x, *b = y;
    if (a->s[0] != b->s[0]) return (unsigned char)a->s[0] < (unsigned char)b->s[0] ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    int c = memcmp(a->s, b->s, a->len);
    return c ? c : a->index - b->index;
}

static void index_added(maye_tokenizer *t, added_index *ix, int normalized, const added_key *sorted) {
    memset(ix->start, 0, sizeof ix->start);
    ix->order = xmalloc(((size_t)t->n_added + 1) * sizeof *ix->order);
    uint32_t k = 0;
    for (int32_t i = 0; i < t->n_added; i++) {
        if (t->added[sorted[i].index].normalized != normalized) continue;
        ix->start[(unsigned char)sorted[i].s[0] + 1]++;
        ix->order[k++] = sorted[i].index;
    }
    for (int b = 0; b < 256; b++) ix->start[b + 1] += ix->start[b];
}

static int load_added(loader *L, const maye_jr_node *list) {
    maye_tokenizer *t = L->t;
    maye_jr_doc *d = &L->doc;
    if (list && list->type != MAYE_JR_NULL && list->type != MAYE_JR_ARRAY)
        return fail_at(L, list, "added_tokens: expected an array, got %s", maye_jr_type_name(list->type));
    int n = list && list->type == MAYE_JR_ARRAY ? list->n_children : 0;
    t->added = xcalloc((size_t)n + 1, sizeof *t->added);
    int32_t max_id = t->n_ids - 1;
    int k = 0;
    for (const maye_jr_node *a = n ? maye_jr_first(d, list) : NULL; a; a = maye_jr_next(d, a), k++) {
        added_token *at = &t->added[k];
        const maye_jr_node *id = maye_jr_get(d, a, "id"), *content = maye_jr_get(d, a, "content");
        int64_t v;
        if (a->type != MAYE_JR_OBJECT || !maye_jr_int(id, 0, TOK_MAX_IDS - 1, &v))
            return fail_at(L, a, "added_tokens[%d]: expected {\"id\": integer in [0, %d), \"content\": ...}", k,
                           TOK_MAX_IDS);
        if (!content || content->type != MAYE_JR_STRING || content->str_len == 0)
            return fail_at(L, a, "added_tokens[%d]: 'content' must be a non-empty string", k);
        at->id = (int32_t)v;
        int special = 0, lstrip = 0, rstrip = 0, single_word = 0, normalized = 0;
        char where[64];
        snprintf(where, sizeof where, "added_tokens[%d]", k);
        TRY(get_bool(L, a, "special", 0, where, &special));
        TRY(get_bool(L, a, "lstrip", 0, where, &lstrip));
        TRY(get_bool(L, a, "rstrip", 0, where, &rstrip));
        TRY(get_bool(L, a, "single_word", 0, where, &single_word));
        TRY(get_bool(L, a, "normalized", !special, where, &normalized));
        at->special = (uint8_t)special, at->lstrip = (uint8_t)lstrip, at->rstrip = (uint8_t)rstrip;
        at->single_word = (uint8_t)single_word, at->normalized = (uint8_t)(normalized && t->n_norm > 0);
        const char *s = maye_jr_str(d, content);
        at->off = (uint32_t)t->pool.len, at->len = content->str_len;
        maye_buf_append(&t->pool, s, content->str_len + 1);
        if (at->id > max_id) max_id = at->id;
        digest_i32(L, at->id);
        digest_add(L, s, content->str_len);
        uint8_t flags[5] = {at->special, at->lstrip, at->rstrip, at->single_word, at->normalized};
        digest_add(L, flags, sizeof flags);
    }
    t->n_added = k;
    if (max_id + 1 > t->n_ids) { // added ids beyond the BPE vocabulary
        t->tok_off = xrealloc(t->tok_off, ((size_t)max_id + 2) * sizeof *t->tok_off);
        t->tok_len = xrealloc(t->tok_len, ((size_t)max_id + 2) * sizeof *t->tok_len);
        for (int32_t i = t->n_ids; i <= max_id + 1; i++) t->tok_off[i] = 0, t->tok_len[i] = TOK_NO_TOKEN;
        t->n_ids = max_id + 1;
    }
    t->added_of = xmalloc((size_t)t->n_ids * sizeof *t->added_of);
    for (int32_t i = 0; i < t->n_ids; i++) t->added_of[i] = -1;
    for (int32_t i = 0; i < t->n_added; i++) {
        if (t->added_of[t->added[i].id] >= 0)
            return maye_fail("%s: added_tokens[%d]: id %d is also added_tokens[%d]", t->name, i, t->added[i].id,
                             t->added_of[t->added[i].id]);
        t->added_of[t->added[i].id] = i;
    }
    added_key *keys = xmalloc(((size_t)t->n_added + 1) * sizeof *keys);
    for (int32_t i = 0; i < t->n_added; i++)
        keys[i] = (added_key){.s = t->pool.data + t->added[i].off, .len = t->added[i].len, .index = i};
    qsort(keys, (size_t)t->n_added, sizeof *keys, cmp_added);
    for (int32_t i = 1; i < t->n_added; i++)
        if (keys[i].len == keys[i - 1].len && !memcmp(keys[i].s, keys[i - 1].s, keys[i].len)) {
            int rc = maye_fail("%s: added_tokens[%d] and added_tokens[%d] are both '%s'", t->name, keys[i - 1].index,
                               keys[i].index, keys[i].s);
            free(keys);
            return rc;
        }
    index_added(t, &t->added_raw, 0, keys);
    index_added(t, &t->added_norm, 1, keys);
    free(keys);
    return 0;
}

// ----------------------------------------------------------------------------
// normalizer

static int load_normalizer(loader *L, const maye_jr_node *n) {
    maye_tokenizer *t = L->t;
    if (!n || n->type == MAYE_JR_NULL) return 0;
    const char *type = type_of(L, n);
    if (!type) return fail_at(L, n, "normalizer: expected an object with a 'type'");
    if (!strcmp(type, "Sequence")) {
        const maye_jr_node *list = maye_jr_get(&L->doc, n, "normalizers");
        if (!list || list->type != MAYE_JR_ARRAY)
            return fail_at(L, n, "normalizer: Sequence without 'normalizers' list");
        for (const maye_jr_node *c = maye_jr_first(&L->doc, list); c; c = maye_jr_next(&L->doc, c))
            TRY(load_normalizer(L, c));
        return 0;
    }
    int opts;
    if (!strcmp(type, "NFC"))
        opts = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    else if (!strcmp(type, "NFD"))
        opts = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE;
    else if (!strcmp(type, "NFKC"))
        opts = UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
    else if (!strcmp(type, "NFKD"))
        opts = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
    else
        return fail_at(L, n, "normalizer: type '%s' is not supported (supported: NFC, NFD, NFKC, NFKD, Sequence)",
                       type);
    if (t->n_norm == TOK_MAX_NORM) return fail_at(L, n, "normalizer: more than %d steps", TOK_MAX_NORM);
    t->norm_opts[t->n_norm++] = opts;
    digest_i32(L, opts);
    return 0;
}

// ----------------------------------------------------------------------------
// pre-tokenizer

// Compiles a pattern for PCRE2 (UTF, UCP, JIT). Oniguruma's \s is Unicode White_Space while PCRE2's also
// matches U+180E, so \s and \S are spelled out as the property.
static int compile_pattern(loader *L, const maye_jr_node *where, const char *pat, size_t n, int literal,
                           pcre2_code **out) {
    maye_buf src = {0};
    if (literal)
        maye_buf_append(&src, pat, n);
    else
        for (size_t i = 0; i < n; i++) {
            if (pat[i] != '\\' || i + 1 == n) {
                maye_buf_putc(&src, pat[i]);
                continue;
            }
            char c = pat[++i];
            if (c == 's')
                maye_buf_puts(&src, "\\p{White_Space}");
            else if (c == 'S')
                maye_buf_puts(&src, "\\P{White_Space}");
            else
                maye_buf_putc(&src, '\\'), maye_buf_putc(&src, c);
        }
    int err;
    PCRE2_SIZE erroff;
    uint32_t opts = PCRE2_UTF | PCRE2_NO_UTF_CHECK | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(src.data ? src.data : ""), src.len, opts, &err, &erroff, NULL);
    maye_buf_free(&src);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return fail_at(L, where, "pre_tokenizer: cannot compile the pattern '%.*s': %s", (int)n, pat, (char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); // without JIT (unsupported CPU) matching is slower, not wrong
    *out = re;
    digest_add(L, pat, n);
    return 0;
}

static int add_step(loader *L, const maye_jr_node *n, pretok_step **out) {
    maye_tokenizer *t = L->t;
    if (t->n_steps == TOK_MAX_STEPS) return fail_at(L, n, "pre_tokenizer: more than %d steps", TOK_MAX_STEPS);
    if (t->n_steps && t->steps[t->n_steps - 1].kind == STEP_BYTELEVEL)
        return fail_at(L, n, "pre_tokenizer: ByteLevel must be the last step");
    *out = &t->steps[t->n_steps++];
    return 0;
}

static int load_pre_tokenizer(loader *L, const maye_jr_node *n) {
    maye_jr_doc *d = &L->doc;
    if (!n || n->type == MAYE_JR_NULL) return 0;
    const char *type = type_of(L, n);
    if (!type) return fail_at(L, n, "pre_tokenizer: expected an object with a 'type'");
    if (!strcmp(type, "Sequence")) {
        const maye_jr_node *list = maye_jr_get(d, n, "pretokenizers");
        if (!list || list->type != MAYE_JR_ARRAY)
            return fail_at(L, n, "pre_tokenizer: Sequence without 'pretokenizers' list");
        for (const maye_jr_node *c = maye_jr_first(d, list); c; c = maye_jr_next(d, c)) TRY(load_pre_tokenizer(L, c));
        return 0;
    }
    pretok_step *st = NULL;
    if (!strcmp(type, "Split")) {
        TRY(add_step(L, n, &st));
        st->kind = STEP_SPLIT;
        const maye_jr_node *pat = maye_jr_get(d, n, "pattern"), *re = maye_jr_get(d, pat, "Regex"),
                           *lit = maye_jr_get(d, pat, "String");
        const maye_jr_node *p = re ? re : lit;
        if (!p || p->type != MAYE_JR_STRING)
            return fail_at(L, n, "pre_tokenizer: Split needs \"pattern\": {\"Regex\": ...} or {\"String\": ...}");
        TRY(compile_pattern(L, p, maye_jr_str(d, p), p->str_len, p == lit, &st->re));
        static const char *behaviors[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
        const maye_jr_node *b = maye_jr_get(d, n, "behavior");
        st->behavior = -1;
        for (int i = 0; i < 5 && b && b->type == MAYE_JR_STRING; i++)
            if (!strcmp(maye_jr_str(d, b), behaviors[i])) st->behavior = i;
        if (st->behavior < 0)
            return fail_at(L, b ? b : n,
                           "pre_tokenizer: Split 'behavior' must be one of Removed, Isolated, "
                           "MergedWithPrevious, MergedWithNext, Contiguous");
        TRY(get_bool(L, n, "invert", 0, "pre_tokenizer", &st->invert));
    } else if (!strcmp(type, "ByteLevel")) {
        TRY(add_step(L, n, &st));
        st->kind = STEP_BYTELEVEL;
        int use_regex = 0;
        TRY(get_bool(L, n, "add_prefix_space", 1, "pre_tokenizer.ByteLevel", &st->add_prefix_space));
        TRY(get_bool(L, n, "use_regex", 1, "pre_tokenizer.ByteLevel", &use_regex));
        if (use_regex) TRY(compile_pattern(L, n, GPT2_PATTERN, strlen(GPT2_PATTERN), 0, &st->re));
        st->behavior = SPLIT_ISOLATED;
    } else {
        return fail_at(L, n, "pre_tokenizer: type '%s' is not supported (supported: Sequence, Split, ByteLevel)", type);
    }
    int32_t cfg[4] = {st->kind, st->behavior, st->invert, st->add_prefix_space};
    digest_add(L, cfg, sizeof cfg);
    return 0;
}

// ----------------------------------------------------------------------------
// decoder and post-processor

static int load_decoder(loader *L, const maye_jr_node *n) {
    const char *type = n && n->type == MAYE_JR_OBJECT ? type_of(L, n) : NULL;
    if (!n || n->type == MAYE_JR_NULL)
        return maye_fail("%s: decoder: missing; a byte-level BPE needs \"decoder\": {\"type\": \"ByteLevel\"}",
                         L->t->name);
    if (!type) return fail_at(L, n, "decoder: expected an object with a 'type'");
    if (strcmp(type, "ByteLevel")) return fail_at(L, n, "decoder: type '%s' is not supported (only ByteLevel)", type);
    return 0;
}

// Encoding here is add_special_tokens=False, so processors that only add special tokens change nothing.
static int load_post_processor(loader *L, const maye_jr_node *n) {
    if (!n || n->type == MAYE_JR_NULL) return 0;
    const char *type = type_of(L, n);
    if (!type) return fail_at(L, n, "post_processor: expected an object with a 'type'");
    if (!strcmp(type, "Sequence")) {
        const maye_jr_node *list = maye_jr_get(&L->doc, n, "processors");
        if (!list || list->type != MAYE_JR_ARRAY) return fail_at(L, n, "post_processor: Sequence without 'processors'");
        for (const maye_jr_node *c = maye_jr_first(&L->doc, list); c; c = maye_jr_next(&L->doc, c))
            TRY(load_post_processor(L, c));
        return 0;
    }
    static const char *ok[] = {"ByteLevel", "TemplateProcessing", "RobertaProcessing", "BertProcessing"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(type, ok[i])) return 0;
    return fail_at(L, n,
                   "post_processor: type '%s' is not supported (supported: ByteLevel, TemplateProcessing, "
                   "RobertaProcessing, BertProcessing, Sequence)",
                   type);
}

// ----------------------------------------------------------------------------
// the whole file

uint32_t maye_tokenizer_byte_char(uint8_t b) {
    // printable Latin-1 bytes stand for themselves; the others (0x00-0x20, 0x7F-0xA0, 0xAD) get 256, 257, ...
    if (b <= 0x20) return 256u + b;
    if (b >= 0x7F && b <= 0xA0) return 256u + 33 + (b - 0x7Fu);
    if (b == 0xAD) return 256u + 33 + 34;
    return b;
}

static int load_all(loader *L, const char *json, size_t len) {
    maye_tokenizer *t = L->t;
    TRY(maye_jr_parse(&L->doc, json, len, t->name));
    const maye_jr_doc *d = &L->doc;
    const maye_jr_node *root = maye_jr_root(d);
    if (root->type != MAYE_JR_OBJECT)
        return fail_at(L, root, "expected a JSON object with 'model', 'pre_tokenizer', 'decoder', ...");
    TRY(load_normalizer(L, maye_jr_get(d, root, "normalizer")));
    TRY(load_pre_tokenizer(L, maye_jr_get(d, root, "pre_tokenizer")));
    if (!t->n_steps || t->steps[t->n_steps - 1].kind != STEP_BYTELEVEL)
        return maye_fail("%s: pre_tokenizer: a byte-level BPE needs a ByteLevel step (last in the sequence)", t->name);
    TRY(load_decoder(L, maye_jr_get(d, root, "decoder")));
    TRY(load_post_processor(L, maye_jr_get(d, root, "post_processor")));
    TRY(load_model(L, maye_jr_get(d, root, "model")));
    TRY(load_added(L, maye_jr_get(d, root, "added_tokens")));
    for (int i = 0; i < TOK_BYTE_CHARS; i++) t->char_byte[i] = -1;
    for (int b = 0; b < 256; b++) t->char_byte[maye_tokenizer_byte_char((uint8_t)b)] = (int16_t)b;
    pthread_mutex_init(&t->cache_lock, NULL);
    t->has_cache_key = pthread_key_create(&t->cache_key, tok_cache_free) == 0;
    t->digest = L->digest;
    return 0;
}

int maye_tokenizer_load_mem(maye_tokenizer **out, const char *json, size_t len, const char *name) {
    *out = NULL;
    loader L = {.t = xcalloc(1, sizeof(maye_tokenizer)), .digest = MAYE_FNV_INIT};
    L.t->name = xstrdup(name);
    int rc = load_all(&L, json, len);
    maye_jr_free(&L.doc);
    if (rc < 0) {
        maye_tokenizer_free(L.t);
        return -1;
    }
    *out = L.t;
    return 0;
}

int maye_tokenizer_load(maye_tokenizer **out, const char *path) {
    *out = NULL;
    maye_buf b = {0};
    if (maye_read_file(path, &b) < 0) {
        maye_buf_free(&b);
        return maye_fail_ctx("tokenizer");
    }
    int rc = maye_tokenizer_load_mem(out, b.data ? b.data : "", b.len, path);
    maye_buf_free(&b);
    return rc;
}

void maye_tokenizer_free(maye_tokenizer *t) {
    if (!t) return;
    for (int i = 0; i < t->n_steps; i++) pcre2_code_free(t->steps[i].re);
    if (t->has_cache_key) {
        pthread_key_delete(t->cache_key); // no destructor runs after this; free what threads still hold
        while (t->caches) tok_cache_free(t->caches);
        pthread_mutex_destroy(&t->cache_lock);
    }
    free(t->added_raw.order);
    free(t->added_norm.order);
    free(t->added);
    free(t->added_of);
    free(t->mkey);
    free(t->mrank);
    free(t->mnew);
    free(t->vmap);
    free(t->tok_off);
    free(t->tok_len);
    maye_buf_free(&t->pool);
    free(t->name);
    free(t);
}
