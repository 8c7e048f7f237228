// Encoding and decoding with a loaded tokenizer (tables in tokenizer_internal.h, loading in
// tokenizer_load.c). Encode is a pipeline over pieces of the text, each stage handing sub-pieces to the
// next without copying where it can: added tokens -> normalizer -> normalized added tokens -> regex splits
// -> ByteLevel -> BPE (with a word cache). All scratch memory lives in one encode context per call.
#include "core/error.h"
#include "text/tokenizer_internal.h"
#include "text/unicode_compat.h"
#include "text/utf8.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

// ----------------------------------------------------------------------------
// token id vectors

void maye_token_ids_push(maye_token_ids *v, int32_t id) {
    if (v->len == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 64;
        v->data = xrealloc(v->data, v->cap * sizeof *v->data);
    }
    v->data[v->len++] = id;
}

void maye_token_ids_append(maye_token_ids *v, const int32_t *ids, size_t n) {
    if (v->len + n > v->cap) {
        size_t cap = v->cap ? v->cap : 64;
        while (cap < v->len + n) cap *= 2;
        v->data = xrealloc(v->data, cap * sizeof *v->data);
        v->cap = cap;
    }
    if (n) memcpy(v->data + v->len, ids, n * sizeof *ids);
    v->len += n;
}

void maye_token_ids_free(maye_token_ids *v) {
    free(v->data);
    memset(v, 0, sizeof *v);
}

// ----------------------------------------------------------------------------
// the encode context: per-call scratch (one thread)

typedef struct {
    int32_t id;         // current token of the symbol, -1 once merged into its left neighbour
    int32_t prev, next; // neighbours (indices), -1 at the ends
} bpe_symbol;

typedef struct {
    uint32_t rank;
    int32_t pos;             // left symbol
    int32_t left, right, id; // the pair's tokens when queued, and the merged token
} bpe_merge;

typedef struct {
    const maye_tokenizer *tok;
    maye_token_ids *out;
    word_cache *cache; // this thread's, or NULL
    pcre2_match_data *md;
    pcre2_match_context *mctx; // created with a big JIT stack only when the default one is too small
    pcre2_jit_stack *jit_stack;
    maye_buf norm[2];  // normalizer output (two for a Sequence)
    maye_buf prefixed; // " " + piece for ByteLevel add_prefix_space
    maye_buf mapped;   // a word as ByteLevel characters (ignore_merges)
    bpe_symbol *sym;   // (cap_sym)
    bpe_merge *heap;   // (cap_heap)
    int32_t *word_ids; // (cap_sym) ids of one word
    size_t cap_sym, cap_heap;
} encoder;

static void encoder_free(encoder *e) {
    pcre2_match_data_free(e->md);
    pcre2_match_context_free(e->mctx);
    pcre2_jit_stack_free(e->jit_stack);
    maye_buf_free(&e->norm[0]);
    maye_buf_free(&e->norm[1]);
    maye_buf_free(&e->prefixed);
    maye_buf_free(&e->mapped);
    free(e->sym);
    free(e->heap);
    free(e->word_ids);
}

// ----------------------------------------------------------------------------
// word cache (one per thread and tokenizer, no locks on lookups)

void tok_cache_free(void *p) {
    word_cache *c = p;
    maye_tokenizer *t = c->owner;
    pthread_mutex_lock(&t->cache_lock);
    if (c->prev) c->prev->next = c->next;
    else t->caches = c->next;
    if (c->next) c->next->prev = c->prev;
    pthread_mutex_unlock(&t->cache_lock);
    free(c->hash);
    free(c->entry);
    maye_buf_free(&c->data);
    free(c);
}

// This thread's cache for tok (made on first use); NULL when the tokenizer has no pthread key.
static word_cache *thread_cache(const maye_tokenizer *tok) {
    maye_tokenizer *t = (maye_tokenizer *)tok; // only the list of caches changes, under its lock
    if (!t->has_cache_key) return NULL;
    word_cache *c = pthread_getspecific(t->cache_key);
    if (c) return c;
    c = xcalloc(1, sizeof *c);
    c->hash = xcalloc(TOK_CACHE_SLOTS, sizeof *c->hash);
    c->entry = xmalloc(TOK_CACHE_SLOTS * sizeof *c->entry);
    c->owner = t;
    pthread_mutex_lock(&t->cache_lock);
    c->next = t->caches;
    if (t->caches) t->caches->prev = c;
    t->caches = c;
    pthread_mutex_unlock(&t->cache_lock);
    if (pthread_setspecific(t->cache_key, c) != 0) {
        tok_cache_free(c);
        return NULL;
    }
    return c;
}

static int cache_get(word_cache *c, uint64_t h, const char *w, size_t n, maye_token_ids *out) {
    for (uint32_t i = (uint32_t)h & (TOK_CACHE_SLOTS - 1); c->hash[i]; i = (i + 1) & (TOK_CACHE_SLOTS - 1)) {
        if (c->hash[i] != h) continue;
        const char *e = c->data.data + c->entry[i];
        uint32_t len, n_ids;
        memcpy(&len, e, 4), memcpy(&n_ids, e + 4, 4);
        if (len != n || memcmp(e + 8, w, n)) continue;
        maye_token_ids_append(out, (const int32_t *)(e + 8 + ((n + 3) & ~(size_t)3)), n_ids);
        return 1;
    }
    return 0;
}

// Adds a word that cache_get did not find.
static void cache_put(word_cache *c, uint64_t h, const char *w, size_t n, const int32_t *ids, uint32_t n_ids) {
    if (c->n >= TOK_CACHE_SLOTS * 3 / 4 || c->data.len > TOK_CACHE_MAX_BYTES) { // full: start over
        memset(c->hash, 0, TOK_CACHE_SLOTS * sizeof *c->hash);
        c->n = 0;
        maye_buf_clear(&c->data);
    }
    uint32_t i = (uint32_t)h & (TOK_CACHE_SLOTS - 1);
    while (c->hash[i]) i = (i + 1) & (TOK_CACHE_SLOTS - 1);
    size_t pad = ((n + 3) & ~(size_t)3) - n;
    uint32_t hdr[2] = {(uint32_t)n, n_ids};
    static const char zeros[4] = {0};
    // entries start at multiples of 4, so the ids inside them are aligned
    c->entry[i] = (uint32_t)c->data.len;
    maye_buf_append(&c->data, hdr, sizeof hdr);
    maye_buf_append(&c->data, w, n);
    maye_buf_append(&c->data, zeros, pad);
    maye_buf_append(&c->data, ids, n_ids * sizeof *ids);
    c->hash[i] = h;
    c->n++;
}

// ----------------------------------------------------------------------------
// BPE on one word

static void heap_push(encoder *e, size_t *n, bpe_merge m) {
    if (*n == e->cap_heap) {
        e->cap_heap = e->cap_heap ? e->cap_heap * 2 : 64;
        e->heap = xrealloc(e->heap, e->cap_heap * sizeof *e->heap);
    }
    bpe_merge *h = e->heap;
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p].rank < m.rank || (h[p].rank == m.rank && h[p].pos <= m.pos)) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = m;
}

static bpe_merge heap_pop(encoder *e, size_t *n) {
    bpe_merge *h = e->heap, top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && (h[c + 1].rank < h[c].rank || (h[c + 1].rank == h[c].rank && h[c + 1].pos < h[c].pos))) c++;
        if (last.rank < h[c].rank || (last.rank == h[c].rank && last.pos <= h[c].pos)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = last;
    return top;
}

static void queue_pair(encoder *e, size_t *n_heap, int32_t pos) {
    if (pos < 0) return;
    int32_t next = e->sym[pos].next;
    if (next < 0) return;
    bpe_merge m = {.pos = pos, .left = e->sym[pos].id, .right = e->sym[next].id};
    m.rank = tok_merge_lookup(e->tok, m.left, m.right, &m.id);
    if (m.rank != UINT32_MAX) heap_push(e, n_heap, m);
}

// The ids of one word (bytes after the pre-tokenizer) into e->word_ids; returns their count.
static size_t bpe_word(encoder *e, const unsigned char *w, size_t n) {
    const maye_tokenizer *t = e->tok;
    if (2 * n > e->cap_sym) {
        e->cap_sym = 2 * n > 64 ? 2 * n : 64;
        e->sym = xrealloc(e->sym, e->cap_sym * sizeof *e->sym);
        e->word_ids = xrealloc(e->word_ids, e->cap_sym * sizeof *e->word_ids);
    }
    if (t->ignore_merges) { // a word that is a whole vocabulary entry is taken as is
        maye_buf_clear(&e->mapped);
        for (size_t i = 0; i < n; i++) maye_utf8_append_cp(&e->mapped, maye_tokenizer_byte_char(w[i]));
        int32_t id = tok_vocab_lookup2(t, e->mapped.data, e->mapped.len, "", 0);
        if (id >= 0) {
            e->word_ids[0] = id;
            return 1;
        }
    }
    int32_t ns = 0;
    int last_unk = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned b = w[i];
        if (t->byte_unk[b] && t->fuse_unk && last_unk) continue;
        for (int k = 0; k < t->byte_nsym[b]; k++) {
            e->sym[ns] = (bpe_symbol){.id = t->byte_sym[b][k], .prev = ns - 1, .next = -1};
            if (ns) e->sym[ns - 1].next = ns;
            ns++;
        }
        if (t->byte_nsym[b]) last_unk = t->byte_unk[b];
    }
    size_t n_heap = 0;
    for (int32_t i = 0; i + 1 < ns; i++) queue_pair(e, &n_heap, i);
    while (n_heap) {
        bpe_merge m = heap_pop(e, &n_heap);
        bpe_symbol *s = &e->sym[m.pos];
        if (s->id != m.left || s->next < 0 || e->sym[s->next].id != m.right) continue; // stale
        bpe_symbol *r = &e->sym[s->next];
        s->id = m.id;
        s->next = r->next;
        if (r->next >= 0) e->sym[r->next].prev = m.pos;
        r->id = -1;
        queue_pair(e, &n_heap, s->prev);
        queue_pair(e, &n_heap, m.pos);
    }
    size_t k = 0;
    for (int32_t i = ns ? 0 : -1; i >= 0; i = e->sym[i].next) e->word_ids[k++] = e->sym[i].id;
    return k;
}

static void encode_word(encoder *e, const char *w, size_t n) {
    if (e->cache && n <= TOK_CACHE_MAX_WORD) {
        uint64_t h = tok_hash(w, n) | 1; // 0 marks empty cache slots
        if (cache_get(e->cache, h, w, n, e->out)) return;
        size_t k = bpe_word(e, (const unsigned char *)w, n);
        cache_put(e->cache, h, w, n, e->word_ids, (uint32_t)k);
        maye_token_ids_append(e->out, e->word_ids, k);
        return;
    }
    size_t k = bpe_word(e, (const unsigned char *)w, n);
    maye_token_ids_append(e->out, e->word_ids, k);
}

// ----------------------------------------------------------------------------
// pre-tokenizer: regex splits, then ByteLevel

static int pretokenize(encoder *e, int step, const char *s, size_t n);

// Next match of re in s[0..n) at or after `from`; returns 0 when there is none.
static int next_match(encoder *e, pcre2_code *re, const char *s, size_t n, size_t from, size_t *ms, size_t *me) {
    for (;;) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, e->md, e->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) return 0;
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !e->jit_stack) {
            e->jit_stack = pcre2_jit_stack_create(64 << 10, 256 << 20, NULL);
            e->mctx = pcre2_match_context_create(NULL);
            if (!e->jit_stack || !e->mctx) maye_die("out of memory for the PCRE2 JIT stack");
            pcre2_jit_stack_assign(e->mctx, NULL, e->jit_stack);
            continue;
        }
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return maye_fail("pre-tokenizer: regex match failed at byte %zu of a %zu-byte piece: %s", from, n,
                             (char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        *ms = ov[0], *me = ov[1];
        return 1;
    }
}

// Hands s[a..b) on to the next stage unless empty.
static int emit(encoder *e, int step, const char *s, size_t a, size_t b) {
    return b > a ? pretokenize(e, step + 1, s + a, b - a) : 0;
}

// Splits s[0..n) at the matches of the step's pattern and hands the pieces on, combined as its behavior
// says (Hugging Face's SplitDelimiterBehavior). Matches and the text between them arrive in order; a
// pending piece waits for the next one where a behavior merges neighbours.
static int split(encoder *e, int step, const pretok_step *st, const char *s, size_t n) {
    size_t from = 0, last = 0, ps = 0, pe = 0;
    int have_pending = 0, pending_match = 0, prev_match = 0;
    for (;;) {
        size_t ms = n, me = n;
        int rc = 1;
        while (from < n && (rc = next_match(e, st->re, s, n, from, &ms, &me)) > 0 && ms == me) {
            // empty matches delimit nothing; search again one character on
            size_t k = maye_utf8_next(s + me, n - me, NULL);
            from = me + (k ? k : 1);
        }
        TRY(rc);
        if (from >= n || rc == 0) ms = me = n;
        // up to two intervals: the gap [last, ms) and the match [ms, me)
        for (int part = 0; part < 2; part++) {
            size_t a = part ? ms : last, b = part ? me : ms;
            if (b <= a) continue;
            int is_match = part ^ st->invert;
            switch (st->behavior) {
            case SPLIT_ISOLATED: TRY(emit(e, step, s, a, b)); break;
            case SPLIT_REMOVED:
                if (!is_match) TRY(emit(e, step, s, a, b));
                break;
            case SPLIT_MERGED_WITH_PREVIOUS:
            case SPLIT_CONTIGUOUS: {
                int join = st->behavior == SPLIT_CONTIGUOUS ? is_match == prev_match : is_match && !prev_match;
                if (have_pending && join)
                    pe = b;
                else {
                    if (have_pending) TRY(emit(e, step, s, ps, pe));
                    ps = a, pe = b, have_pending = 1;
                }
                break;
            }
            case SPLIT_MERGED_WITH_NEXT:
                if (have_pending && pending_match && !is_match) {
                    TRY(emit(e, step, s, ps, b));
                    have_pending = 0;
                } else {
                    if (have_pending) TRY(emit(e, step, s, ps, pe));
                    ps = a, pe = b, have_pending = 1, pending_match = is_match;
                }
                break;
            }
            prev_match = is_match;
        }
        if (me >= n) break;
        last = from = me;
    }
    if (have_pending) TRY(emit(e, step, s, ps, pe));
    return 0;
}

// Runs pre-tokenizer step `step` on s[0..n); one past the last step, the piece is a word for BPE (pieces
// of ByteLevel's own GPT-2 split arrive there).
static int pretokenize(encoder *e, int step, const char *s, size_t n) {
    if (step == e->tok->n_steps) {
        encode_word(e, s, n);
        return 0;
    }
    const pretok_step *st = &e->tok->steps[step];
    if (st->kind == STEP_SPLIT) return split(e, step, st, s, n);
    // ByteLevel: optional prefix space, optional GPT-2 split, then each piece is a word for BPE
    if (st->add_prefix_space && s[0] != ' ') {
        maye_buf_clear(&e->prefixed);
        maye_buf_putc(&e->prefixed, ' ');
        maye_buf_append(&e->prefixed, s, n);
        s = e->prefixed.data, n = e->prefixed.len;
    }
    if (st->re) return split(e, step, st, s, n);
    encode_word(e, s, n);
    return 0;
}

// ----------------------------------------------------------------------------
// normalizer

#define NORM_FAST_RUN 32 // longer runs of combining marks take the O(n log n) path

static int ccc(uint32_t cp) { return utf8proc_get_property((utf8proc_int32_t)cp)->combining_class; }

// Stable sort of a run of code points by combining class (merge sort through tmp).
static void sort_by_ccc(utf8proc_int32_t *a, utf8proc_int32_t *tmp, size_t n) {
    if (n < 2) return;
    size_t h = n / 2;
    sort_by_ccc(a, tmp, h);
    sort_by_ccc(a + h, tmp, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = ccc((uint32_t)a[j]) < ccc((uint32_t)a[i]) ? a[j++] : a[i++];
    while (i < h) tmp[k++] = a[i++];
    while (j < n) tmp[k++] = a[j++];
    memcpy(a, tmp, n * sizeof *a);
}

// utf8proc_map does the canonical reordering of combining marks with a gnome sort, quadratic in the
// length of a run of marks. This path decomposes character by character, sorts each run of non-starters
// with a stable merge sort (the same order) and leaves composition and re-encoding to utf8proc.
static int normalize_long_runs(int opts, const char *s, size_t n, maye_buf *out) {
    size_t cap = n + 16, len = 0;
    utf8proc_int32_t *buf = xmalloc(cap * sizeof *buf);
    int boundclass = UTF8PROC_BOUNDCLASS_START;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += maye_utf8_next(s + i, n - i, &cp);
        for (;;) {
            utf8proc_ssize_t k = utf8proc_decompose_char((utf8proc_int32_t)cp, buf + len, (utf8proc_ssize_t)(cap - len),
                                                         opts, &boundclass);
            if (k < 0) {
                free(buf);
                return maye_fail("normalizer: %s", utf8proc_errmsg(k));
            }
            if ((size_t)k <= cap - len) {
                len += (size_t)k;
                break;
            }
            cap = 2 * cap + (size_t)k;
            buf = xrealloc(buf, cap * sizeof *buf);
        }
    }
    utf8proc_int32_t *tmp = xmalloc((len + 1) * sizeof *tmp);
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && ccc((uint32_t)buf[j])) j++;
        sort_by_ccc(buf + i, tmp, j - i);
        i = j > i ? j : i + 1;
    }
    free(tmp);
    utf8proc_ssize_t k = utf8proc_reencode(buf, (utf8proc_ssize_t)len, opts);
    if (k < 0) {
        free(buf);
        return maye_fail("normalizer: %s", utf8proc_errmsg(k));
    }
    maye_buf_append(out, buf, (size_t)k);
    free(buf);
    return 0;
}

// Normalizes the piece s[0..n) (at byte `at` of the text, for messages; `longest`: its longest run of
// combining marks) into out: through utf8proc_map, or normalize_long_runs when that run is long.
static int normalize_piece(int opts, const char *s, size_t n, size_t at, size_t longest, maye_buf *out) {
    if (longest > NORM_FAST_RUN) return normalize_long_runs(opts, s, n, out);
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t k = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst, opts);
    if (k < 0) {
        free(dst);
        return maye_fail("normalizer: %s at byte %zu", utf8proc_errmsg(k), at);
    }
    maye_buf_append(out, dst, (size_t)k);
    free(dst);
    return 0;
}

// Applies one utf8proc normalization to s[0..n) into out. Text is cut into ASCII runs, which are already
// normalized and never combine with what precedes them, and the rest (with the one ASCII character
// before it, which a following combining mark may compose with), which goes through utf8proc in pieces
// separated by the code points Hugging Face tokenizers does not know (unicode_compat.h): those are copied
// as they are and nothing reorders or composes across them.
static int normalize_one(int opts, const char *s, size_t n, maye_buf *out) {
    maye_buf_clear(out);
    size_t pos = 0;
    while (pos < n) {
        size_t i = pos;
        while (i < n && (unsigned char)s[i] < 0x80) i++;
        if (i == n) {
            maye_buf_append(out, s + pos, n - pos);
            break;
        }
        size_t rs = i > pos ? i - 1 : i, j = i, run = 0, longest = 0; // runs of marks in the current piece
        maye_buf_append(out, s + pos, rs - pos);
        while (j < n && (unsigned char)s[j] >= 0x80) {
            uint32_t cp;
            size_t k = maye_utf8_next(s + j, n - j, &cp);
            if (maye_unicode_compat_unknown(cp)) {
                if (j > rs) TRY(normalize_piece(opts, s + rs, j - rs, rs, longest, out));
                maye_buf_append(out, s + j, k);
                rs = j + k, run = longest = 0;
            } else {
                run = ccc(cp) ? run + 1 : 0;
                longest = run > longest ? run : longest;
            }
            j += k;
        }
        if (j > rs) TRY(normalize_piece(opts, s + rs, j - rs, rs, longest, out));
        pos = j;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// added tokens

// Finds the next added token of index ix in s[0..n) at or after `from` (leftmost, then longest), applying
// single_word, lstrip and rstrip. The token's span, widened by stripping, is [*ms, *me) with *ms >= floor.
static int find_added(const maye_tokenizer *t, const added_index *ix, const char *s, size_t n, size_t from,
                      size_t floor, size_t *ms, size_t *me, int32_t *id) {
    if (!ix->start[256]) return 0;
    for (size_t i = from; i < n; i++) {
        unsigned b = (unsigned char)s[i];
        uint32_t k0 = ix->start[b], k1 = ix->start[b + 1];
        for (uint32_t k = k0; k < k1; k++) {
            const added_token *a = &t->added[ix->order[k]];
            if (a->len > n - i || memcmp(s + i, t->pool.data + a->off, a->len)) continue;
            size_t start = i, stop = i + a->len;
            if (a->single_word) {
                uint32_t cp;
                int word_before = 0, word_after = 0;
                if (start > 0) { // the character before: step back over continuation bytes
                    size_t p = start - 1;
                    while (p > 0 && ((unsigned char)s[p] & 0xC0) == 0x80) p--;
                    word_before = maye_utf8_next(s + p, start - p, &cp) && maye_utf8_is_word(cp);
                }
                if (stop < n) word_after = maye_utf8_next(s + stop, n - stop, &cp) && maye_utf8_is_word(cp);
                if (word_before || word_after) { // not a word of its own: skip past it, as Hugging Face does
                    i = stop - 1;
                    goto next_position;
                }
            }
            if (a->lstrip)
                while (start > floor) {
                    size_t p = start - 1;
                    uint32_t cp;
                    while (p > floor && ((unsigned char)s[p] & 0xC0) == 0x80) p--;
                    if (!maye_utf8_next(s + p, start - p, &cp) || !maye_utf8_is_space(cp)) break;
                    start = p;
                }
            if (a->rstrip) {
                uint32_t cp;
                size_t k;
                while (stop < n && (k = maye_utf8_next(s + stop, n - stop, &cp)) && maye_utf8_is_space(cp)) stop += k;
            }
            *ms = start, *me = stop, *id = a->id;
            return 1;
        }
    next_position:;
    }
    return 0;
}

static int encode_normalized(encoder *e, const char *s, size_t n) {
    const maye_tokenizer *t = e->tok;
    size_t from = 0, text = 0, ms, me;
    int32_t id;
    while (find_added(t, &t->added_norm, s, n, from, text, &ms, &me, &id)) {
        if (ms > text) TRY(pretokenize(e, 0, s + text, ms - text));
        maye_token_ids_push(e->out, id);
        text = from = me;
    }
    if (n > text) TRY(pretokenize(e, 0, s + text, n - text));
    return 0;
}

static int encode_piece(encoder *e, const char *s, size_t n) {
    if (!n) return 0;
    const maye_tokenizer *t = e->tok;
    for (int i = 0; i < t->n_norm; i++) {
        maye_buf *dst = &e->norm[i & 1];
        TRY(normalize_one(t->norm_opts[i], s, n, dst));
        s = dst->data, n = dst->len;
    }
    return encode_normalized(e, s, n);
}

int maye_tokenizer_encode(const maye_tokenizer *t, const char *text, size_t len, maye_token_ids *out) {
    size_t bad;
    if (!maye_utf8_valid(text, len, &bad))
        return maye_fail("cannot tokenize: the text is not valid UTF-8 (byte %zu of %zu is 0x%02x)", bad, len,
                         (unsigned char)text[bad]);
    encoder e = {.tok = t, .out = out, .cache = thread_cache(t)};
    e.md = pcre2_match_data_create(1, NULL);
    if (!e.md) maye_die("out of memory for PCRE2 match data");
    size_t from = 0, plain = 0, ms, me;
    int32_t id;
    int rc = 0;
    while (rc == 0 && find_added(t, &t->added_raw, text, len, from, plain, &ms, &me, &id)) {
        rc = encode_piece(&e, text + plain, ms - plain);
        maye_token_ids_push(out, id);
        plain = from = me;
    }
    if (rc == 0) rc = encode_piece(&e, text + plain, len - plain);
    encoder_free(&e);
    return rc;
}

// ----------------------------------------------------------------------------
// decoding

int maye_tokenizer_decode(const maye_tokenizer *t, const int32_t *ids, size_t n, int skip_special, maye_buf *out) {
    maye_buf bytes = {0};
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *s = maye_tokenizer_id_token(t, ids[i], &len);
        if (!s) {
            maye_buf_free(&bytes);
            return maye_fail("cannot decode: token id %d (position %zu) is not in the vocabulary of %s (ids 0..%d)",
                             ids[i], i, t->name, t->n_ids - 1);
        }
        if (skip_special && maye_tokenizer_is_special(t, ids[i])) continue;
        // ByteLevel: each character stands for a byte; a token with any other character is taken as is
        size_t start = bytes.len, k = 0;
        int ok = 1;
        while (k < len) {
            uint32_t cp;
            size_t step = maye_utf8_next(s + k, len - k, &cp);
            if (!step || cp >= TOK_BYTE_CHARS || t->char_byte[cp] < 0) {
                ok = 0;
                break;
            }
            maye_buf_putc(&bytes, (char)t->char_byte[cp]);
            k += step;
        }
        if (!ok) {
            bytes.len = start;
            maye_buf_append(&bytes, s, len);
        }
    }
    maye_utf8_append_lossy(out, bytes.data ? bytes.data : "", bytes.len);
    maye_buf_free(&bytes);
    return 0;
}

// ----------------------------------------------------------------------------
// vocabulary

int32_t maye_tokenizer_token_id(const maye_tokenizer *t, const char *token) {
    size_t n = strlen(token);
    for (int32_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && !memcmp(t->pool.data + t->added[i].off, token, n)) return t->added[i].id;
    return tok_vocab_lookup2(t, token, n, "", 0);
}

const char *maye_tokenizer_id_token(const maye_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_ids) return NULL;
    if (t->added_of[id] >= 0) {
        const added_token *a = &t->added[t->added_of[id]];
        *len = a->len;
        return t->pool.data + a->off;
    }
    if (t->tok_len[id] == TOK_NO_TOKEN) return NULL;
    *len = t->tok_len[id];
    return t->pool.data + t->tok_off[id];
}

int maye_tokenizer_is_special(const maye_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_ids && t->added_of[id] >= 0 && t->added[t->added_of[id]].special;
}

int32_t maye_tokenizer_vocab_size(const maye_tokenizer *t) { return t->n_ids; }

uint64_t maye_tokenizer_digest(const maye_tokenizer *t) { return t->digest; }
