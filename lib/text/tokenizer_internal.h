// The tokenizer's tables, shared by the loader (tokenizer_load.c) and the encoder/decoder (tokenizer.c).
// Not part of the public API. Dimension letters: V ids (largest id + 1), A added tokens, S cache slots
// per shard.
#pragma once
#include "text/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdint.h>

#define TOK_MAX_IDS (1 << 24)   // ids must be below this (real vocabularies are < 300k)
#define TOK_NO_TOKEN UINT32_MAX // tok_len of an id the BPE vocabulary does not have
#define TOK_MAX_NORM 8          // normalizer steps
#define TOK_MAX_STEPS 16        // pre-tokenizer steps
#define TOK_BYTE_CHARS 324      // ByteLevel stand-ins are code points below this
#define TOK_CACHE_SHARDS 16
#define TOK_CACHE_SLOTS 8192  // S
#define TOK_CACHE_MAX_WORD 64 // longer words are not cached
#define TOK_CACHE_MAX_BYTES (1u << 20)

// ----------------------------------------------------------------------------
// pieces of the pipeline

enum { STEP_SPLIT, STEP_BYTELEVEL };
enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_WITH_PREVIOUS, SPLIT_MERGED_WITH_NEXT, SPLIT_CONTIGUOUS };

typedef struct {
    int kind;             // STEP_SPLIT or STEP_BYTELEVEL (always the last step)
    pcre2_code *re;       // Split's pattern; ByteLevel's GPT-2 pattern when use_regex, else NULL
    int behavior;         // Split: SPLIT_*
    int invert;           // Split: the matches are the text between delimiters
    int add_prefix_space; // ByteLevel: prepend ' ' to each piece that does not start with one
} pretok_step;

typedef struct {
    int32_t id;
    uint32_t off, len; // content, in the string pool
    uint8_t special, lstrip, rstrip, single_word, normalized;
} added_token;

// Added tokens of one kind (matched in raw or in normalized text) grouped by first byte, longest first:
// the candidates for byte b are order[start[b] .. start[b+1]).
typedef struct {
    uint32_t start[257];
    int32_t *order; // indices into maye_tokenizer.added
} added_index;

// One thread's word cache for one tokenizer: open addressing from a word's hash to an entry in `data`.
// Each thread that encodes gets its own (through a pthread key), so lookups take no lock; the tokenizer
// keeps a list of them to free what live threads still hold.
typedef struct word_cache {
    uint64_t *hash;  // (S) 0 = empty slot
    uint32_t *entry; // (S) offset of the entry in data
    maye_buf data;   // entries: u32 word length, u32 id count, word bytes (padded to 4), int32 ids
    uint32_t n;
    struct maye_tokenizer *owner;
    struct word_cache *prev, *next; // in owner->caches
} word_cache;

struct maye_tokenizer {
    char *name;                  // the path, for messages
    int32_t n_ids;               // V
    maye_buf pool;               // token strings and added-token contents, each NUL-terminated
    uint32_t *tok_off, *tok_len; // (V) BPE vocabulary strings in the pool; TOK_NO_TOKEN for holes
    int32_t *added_of;           // (V) index into added, or -1
    uint32_t *vmap;              // (vmask+1) string hash -> id + 1 (0 = empty), BPE vocabulary
    uint32_t vmask;
    uint64_t *mkey;  // (mmask+1) merge pair (left id << 32 | right id); UINT64_MAX = empty
    uint32_t *mrank; // (mmask+1) rank of the merge (its line in model.merges)
    int32_t *mnew;   // (mmask+1) id of the merged token
    uint32_t mmask;

    added_token *added; // (A)
    int32_t n_added;
    added_index added_raw, added_norm;

    int norm_opts[TOK_MAX_NORM]; // utf8proc options of each normalizer step
    int n_norm;
    pretok_step steps[TOK_MAX_STEPS];
    int n_steps;

    int32_t byte_sym[256][2];          // BPE start symbols of each byte (byte fallback may need two)
    uint8_t byte_nsym[256];            // 0: the byte is dropped (no vocabulary entry, no unk)
    uint8_t byte_unk[256];             // the symbol is unk_token (fused with a preceding unk when fuse_unk)
    int16_t char_byte[TOK_BYTE_CHARS]; // ByteLevel stand-in code point -> byte, -1 if none
    int32_t unk_id;
    int fuse_unk, ignore_merges;

    pthread_key_t cache_key;     // -> this thread's word_cache
    int has_cache_key;           // 0 if no key could be made (then nothing is cached)
    pthread_mutex_t cache_lock;  // guards the list below (taken when a thread's cache is made or freed)
    word_cache *caches;
    uint64_t digest;
};

// ----------------------------------------------------------------------------
// lookups shared by loader and encoder

// Frees one thread's word cache (the pthread key's destructor, and maye_tokenizer_free for live threads).
void tok_cache_free(void *cache);

uint64_t tok_hash(const void *p, size_t n);
// BPE-vocabulary id of the string a[0..na) + b[0..nb), or -1.
int32_t tok_vocab_lookup2(const maye_tokenizer *t, const char *a, size_t na, const char *b, size_t nb);
// Merge of the pair (left, right): returns its rank and sets *new_id, or returns UINT32_MAX.
static inline uint32_t tok_merge_lookup(const maye_tokenizer *t, int32_t left, int32_t right, int32_t *new_id) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    uint32_t i = (uint32_t)((key * 0x9E3779B97F4A7C15ULL) >> 32) & t->mmask;
    for (;;) {
        uint64_t k = t->mkey[i];
        if (k == key) {
            *new_id = t->mnew[i];
            return t->mrank[i];
        }
        if (k == UINT64_MAX) return UINT32_MAX;
        i = (i + 1) & t->mmask;
    }
}
