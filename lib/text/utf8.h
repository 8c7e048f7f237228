// UTF-8 helpers for the text module: validation, decoding one code point, lossy conversion of arbitrary
// bytes (each ill-formed subsequence becomes one U+FFFD, exactly as Rust's String::from_utf8_lossy and so
// Hugging Face tokenizers do), and the Unicode whitespace / word-character tests the tokenizer needs.
#pragma once
#include "core/util.h"

#include <stddef.h>
#include <stdint.h>

// Length of the well-formed UTF-8 sequence at s[0..n), or 0 if it is ill-formed (or truncated). The code
// point goes to *cp when cp is not NULL.
size_t maye_utf8_next(const char *s, size_t n, uint32_t *cp);
// 1 if s[0..n) is valid UTF-8; otherwise 0 and *bad (when not NULL) = offset of the first bad byte.
int maye_utf8_valid(const char *s, size_t n, size_t *bad);
// Appends s[0..n) to out with every maximal ill-formed subsequence replaced by U+FFFD.
void maye_utf8_append_lossy(maye_buf *out, const char *s, size_t n);
// Writes the UTF-8 encoding of a code point (cp <= 0x10FFFF, not a surrogate); returns its length (1-4).
size_t maye_utf8_encode(uint32_t cp, char out[4]);
void maye_utf8_append_cp(maye_buf *out, uint32_t cp);
// Unicode White_Space (the set \s matches in Oniguruma, which Hugging Face tokenizers uses).
int maye_utf8_is_space(uint32_t cp);
// Letter, number or '_' (a "word" character for added tokens marked single_word).
int maye_utf8_is_word(uint32_t cp);
