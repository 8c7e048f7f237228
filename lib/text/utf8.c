// UTF-8 validation, decoding and lossy repair (see utf8.h).
#include "text/utf8.h"

#include <utf8proc.h>

// ----------------------------------------------------------------------------
// decoding

size_t maye_utf8_next(const char *str, size_t n, uint32_t *cp) {
    const unsigned char *s = (const unsigned char *)str;
    if (n == 0) return 0;
    unsigned b = s[0];
    if (b < 0x80) {
        if (cp) *cp = b;
        return 1;
    }
    // length and the allowed range of the second byte (Unicode Table 3-7, well-formed byte sequences)
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF)
        len = 2;
    else if (b >= 0xE0 && b <= 0xEF)
        len = 3, lo = b == 0xE0 ? 0xA0 : 0x80, hi = b == 0xED ? 0x9F : 0xBF;
    else if (b >= 0xF0 && b <= 0xF4)
        len = 4, lo = b == 0xF0 ? 0x90 : 0x80, hi = b == 0xF4 ? 0x8F : 0xBF;
    else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    if (cp) {
        uint32_t c = b & (0xFF >> (len + 1));
        for (size_t i = 1; i < len; i++) c = (c << 6) | (s[i] & 0x3F);
        *cp = c;
    }
    return len;
}

int maye_utf8_valid(const char *s, size_t n, size_t *bad) {
    size_t i = 0;
    while (i < n) {
        // ASCII fast path, 8 bytes at a time
        while (i + 8 <= n) {
            uint64_t w;
            __builtin_memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ULL) break;
            i += 8;
        }
        if (i >= n) break;
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        size_t len = maye_utf8_next(s + i, n - i, NULL);
        if (!len) {
            if (bad) *bad = i;
            return 0;
        }
        i += len;
    }
    return 1;
}

// ----------------------------------------------------------------------------
// lossy repair

void maye_utf8_append_lossy(maye_buf *out, const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    maye_buf_reserve(out, n);
    size_t i = 0, run = 0; // s[run..i) is valid and not yet copied
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t len = maye_utf8_next(str + i, n - i, NULL);
        if (len) {
            i += len;
            continue;
        }
        maye_buf_append(out, s + run, i - run);
        // the maximal subpart: the lead byte plus the continuation bytes that were still acceptable
        unsigned b = s[i];
        size_t want = b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xF0 && b <= 0xF4 ? 4 : 1;
        size_t k = 1;
        if (want > 1) {
            unsigned lo = b == 0xE0 ? 0xA0 : b == 0xF0 ? 0x90 : 0x80;
            unsigned hi = b == 0xED ? 0x9F : b == 0xF4 ? 0x8F : 0xBF;
            if (i + 1 < n && s[i + 1] >= lo && s[i + 1] <= hi) {
                k = 2;
                while (k < want && i + k < n && s[i + k] >= 0x80 && s[i + k] <= 0xBF) k++;
            }
        }
        maye_buf_append(out, "\xEF\xBF\xBD", 3);
        i += k;
        run = i;
    }
    maye_buf_append(out, s + run, n - run);
}

size_t maye_utf8_encode(uint32_t cp, char b[4]) {
    if (cp < 0x80) {
        b[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        b[0] = (char)(0xC0 | cp >> 6), b[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        b[0] = (char)(0xE0 | cp >> 12), b[1] = (char)(0x80 | ((cp >> 6) & 0x3F)), b[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    b[0] = (char)(0xF0 | cp >> 18), b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), b[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

void maye_utf8_append_cp(maye_buf *out, uint32_t cp) {
    char b[4];
    maye_buf_append(out, b, maye_utf8_encode(cp, b));
}

// ----------------------------------------------------------------------------
// character classes

int maye_utf8_is_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

int maye_utf8_is_word(uint32_t c) {
    if (c == '_') return 1;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO: return 1;
    default: return 0;
    }
}
