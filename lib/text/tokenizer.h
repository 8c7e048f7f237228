// Byte-level BPE tokenizer loaded from a Hugging Face tokenizer.json (Qwen2/2.5/3, GPT-2 style). Encoding
// follows Hugging Face `tokenizers` with add_special_tokens=False:
//   1. added tokens (special or not) are matched in the raw text first, leftmost-longest
//      (lstrip/rstrip/single_word honoured); the text between them goes on:
//   2. normalizer (NFC/NFD/NFKC/NFKD via utf8proc, or a Sequence of them; characters newer than Hugging
//      Face tokenizers' Unicode tables pass through as it leaves them, text/unicode_compat.h), then added
//      tokens marked "normalized" are matched in the normalized text;
//   3. pre-tokenizer: regex Split steps (PCRE2 with JIT, UTF + UCP; \s/\S mean Unicode White_Space as in
//      Oniguruma) and a final ByteLevel step that maps each byte to its printable stand-in character;
//   4. BPE: the word's byte symbols are merged by merge rank (lowest first, leftmost on ties).
// Decoding maps ids to tokens, undoes the ByteLevel mapping and turns ill-formed UTF-8 into U+FFFD.
// A loaded tokenizer is read-only apart from per-thread word caches: several threads may encode and
// decode with one tokenizer at the same time, without locks (free it only after they are done).
#pragma once
#include "core/util.h"

#include <stddef.h>
#include <stdint.h>

typedef struct maye_tokenizer maye_tokenizer;

// ----------------------------------------------------------------------------
// token id vectors

typedef struct {
    int32_t *data; // (cap) ids, the first len in use
    size_t len;
    size_t cap;
} maye_token_ids;

void maye_token_ids_push(maye_token_ids *v, int32_t id);
void maye_token_ids_append(maye_token_ids *v, const int32_t *ids, size_t n);
void maye_token_ids_free(maye_token_ids *v);

// ----------------------------------------------------------------------------
// loading

// Loads tokenizer.json from `path` into a new tokenizer (*out). Errors name the file, the JSON position
// and the component ("tokenizer.json:1:2: pre_tokenizer: type 'Whitespace' is not supported ...").
int maye_tokenizer_load(maye_tokenizer **out, const char *path);
// The same from bytes in memory; `name` is used in messages.
int maye_tokenizer_load_mem(maye_tokenizer **out, const char *json, size_t len, const char *name);
void maye_tokenizer_free(maye_tokenizer *tok);

// ----------------------------------------------------------------------------
// encoding and decoding

// Encodes text[0..len) (valid UTF-8; an error names the first bad byte) and appends the ids to `out`.
int maye_tokenizer_encode(const maye_tokenizer *tok, const char *text, size_t len, maye_token_ids *out);
// Decodes ids and appends the text to `out`. With skip_special, added tokens marked special are left out.
// An id that is not in the vocabulary is an error naming it.
int maye_tokenizer_decode(const maye_tokenizer *tok, const int32_t *ids, size_t n, int skip_special, maye_buf *out);

// ----------------------------------------------------------------------------
// vocabulary

// The id of a token given by its string (an added token such as "<|im_end|>" or a vocabulary entry such
// as "Ġworld"), or -1 if there is none.
int32_t maye_tokenizer_token_id(const maye_tokenizer *tok, const char *token);
// The token string of an id (as stored in tokenizer.json, e.g. "Ġworld"), its length in *len; NULL if the
// id is unknown.
const char *maye_tokenizer_id_token(const maye_tokenizer *tok, int32_t id, size_t *len);
// 1 if id is an added token marked special.
int maye_tokenizer_is_special(const maye_tokenizer *tok, int32_t id);
// Largest id + 1 over the BPE vocabulary and the added tokens (151669 for Qwen2).
int32_t maye_tokenizer_vocab_size(const maye_tokenizer *tok);
// FNV-1a over the vocabulary, the merges, the added tokens and the normalizer/pre-tokenizer settings:
// record streams carry it so a stage can refuse ids made by another tokenizer.
uint64_t maye_tokenizer_digest(const maye_tokenizer *tok);
// The printable character (code point) that ByteLevel uses for a byte ('Ġ' = U+0120 for ' ').
uint32_t maye_tokenizer_byte_char(uint8_t byte);
