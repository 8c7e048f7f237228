// The answer judge (see judge.h): box extraction, LaTeX normalisation, answer items, a bounded recursive-
// descent evaluator for LaTeX arithmetic, and the item/set comparison. Everything works on byte strings
// of bounded length; malformed input only ever makes an answer "not correct".
#include "rl/judge.h"

#include "core/error.h"
#include "core/util.h"

#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TEXT_MAX_DEPTH 4  // nesting of \text{...} groups that are unwrapped
#define TUPLE_MAX_DEPTH 4 // nesting of tuples/intervals compared element by element
#define NUM_MAX_CHARS 64  // longest number literal the evaluator reads
#define N_VAR_POINTS 3    // sample points for expressions with variables

// ----------------------------------------------------------------------------
// small string helpers

static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static bool starts_with(const char *s, size_t n, size_t i, const char *p) {
    size_t m = strlen(p);
    return i <= n && n - i >= m && memcmp(s + i, p, m) == 0;
}

// Length of the run of ASCII letters at s[i..n).
static size_t letters_at(const char *s, size_t n, size_t i) {
    size_t j = i;
    while (j < n && is_alpha(s[j])) j++;
    return j - i;
}

// s[i..n) starts with the command \name (not followed by more letters).
static bool command_at(const char *s, size_t n, size_t i, const char *name) {
    size_t m = strlen(name);
    return i < n && s[i] == '\\' && letters_at(s, n, i + 1) == m && memcmp(s + i + 1, name, m) == 0;
}

// Decodes one UTF-8 code point at s[i..n); returns its byte length (1 with U+FFFD for an invalid byte).
static size_t utf8_decode(const unsigned char *s, size_t n, size_t i, uint32_t *cp) {
    unsigned c = s[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > n) return *cp = 0xFFFD, 1;
    if (len == 1) return *cp = c, 1;
    uint32_t v = c & (0x7F >> len);
    for (size_t k = 1; k < len; k++) {
        if ((s[i + k] & 0xC0) != 0x80) return *cp = 0xFFFD, 1;
        v = (v << 6) | (s[i + k] & 0x3F);
    }
    return *cp = v, len;
}

static bool is_cjk(uint32_t cp) { return cp >= 0x4E00 && cp <= 0x9FFF; }

// ----------------------------------------------------------------------------
// extraction of the final answer

// The brace group opening at s[i] == '{': returns 1 with the content range, 0 if it never closes.
// Escaped braces (\{ \}) do not count.
static int brace_group(const char *s, size_t n, size_t i, size_t *begin, size_t *end) {
    int depth = 0;
    for (size_t k = i; k < n; k++) {
        if (s[k] == '\\') {
            k++;
            continue;
        }
        if (s[k] == '{') depth++;
        else if (s[k] == '}' && --depth == 0) return *begin = i + 1, *end = k, 1;
    }
    return 0;
}

int maye_judge_extract(const char *text, size_t n, size_t *begin, size_t *end) {
    size_t after = 0;
    bool seen = false;
    for (size_t i = 0; i < n; i++) {
        if (text[i] != '\\') continue;
        size_t j = starts_with(text, n, i, "\\boxed") ? i + 6 : starts_with(text, n, i, "\\fbox") ? i + 5 : 0;
        if (j == 0 || (j < n && is_alpha(text[j]))) continue;
        seen = true, after = j;
    }
    if (!seen) return 0;
    size_t j = after;
    while (j < n && is_space(text[j])) j++;
    if (j < n && text[j] == '{') return brace_group(text, n, j, begin, end);
    // "\boxed 5": one bare token
    size_t k = j;
    while (k < n && !is_space(text[k]) && text[k] != '$' && text[k] != '\\') k++;
    if (k == j) return 0;
    return *begin = j, *end = k, 1;
}

// ----------------------------------------------------------------------------
// LaTeX cleaning: one pass that drops layout, unwraps \text-like groups, spells operators in ASCII and
// maps Unicode math symbols, producing text the item splitter and the evaluator read.

typedef enum {
    CMD_KEEP,       // copied as is (\pi, \sqrt, \angle, ...)
    CMD_DROP,       // layout: \displaystyle, \big, \circ, ...
    CMD_DROP_DELIM, // \left, \right (and a following "." delimiter)
    CMD_SPACE,      // \quad
    CMD_FRAC,       // \frac, \dfrac, \tfrac, \cfrac -> \frac
    CMD_TEXT,       // \text{...}-like: the group is unwrapped
    CMD_MUL,        // \cdot, \times -> *
    CMD_DIV,        // \div -> /
    CMD_APPROX,     // \approx
} cmd_kind;

static const struct {
    const char *name;
    cmd_kind kind;
} commands[] = {
    {"left", CMD_DROP_DELIM},   {"right", CMD_DROP_DELIM},  {"middle", CMD_DROP_DELIM}, {"big", CMD_DROP},
    {"Big", CMD_DROP},          {"bigg", CMD_DROP},         {"Bigg", CMD_DROP},         {"bigl", CMD_DROP},
    {"bigr", CMD_DROP},         {"Bigl", CMD_DROP},         {"Bigr", CMD_DROP},         {"biggl", CMD_DROP},
    {"biggr", CMD_DROP},        {"Biggl", CMD_DROP},        {"Biggr", CMD_DROP},        {"displaystyle", CMD_DROP},
    {"textstyle", CMD_DROP},    {"scriptstyle", CMD_DROP},  {"limits", CMD_DROP},       {"nolimits", CMD_DROP},
    {"circ", CMD_DROP},         {"degree", CMD_DROP},       {"mathdollar", CMD_DROP},   {"quad", CMD_SPACE},
    {"qquad", CMD_SPACE},       {"enspace", CMD_SPACE},     {"space", CMD_SPACE},       {"frac", CMD_FRAC},
    {"dfrac", CMD_FRAC},        {"tfrac", CMD_FRAC},        {"cfrac", CMD_FRAC},        {"text", CMD_TEXT},
    {"textrm", CMD_TEXT},       {"textbf", CMD_TEXT},       {"textit", CMD_TEXT},       {"textsf", CMD_TEXT},
    {"texttt", CMD_TEXT},       {"textnormal", CMD_TEXT},   {"mathrm", CMD_TEXT},       {"mathbf", CMD_TEXT},
    {"mathit", CMD_TEXT},       {"mathsf", CMD_TEXT},       {"mathtt", CMD_TEXT},       {"mathnormal", CMD_TEXT},
    {"mbox", CMD_TEXT},         {"hbox", CMD_TEXT},         {"operatorname", CMD_TEXT}, {"boldsymbol", CMD_TEXT},
    {"bm", CMD_TEXT},           {"cdot", CMD_MUL},          {"times", CMD_MUL},         {"ast", CMD_MUL},
    {"div", CMD_DIV},           {"approx", CMD_APPROX},     {"simeq", CMD_APPROX},      {"approxeq", CMD_APPROX},
};

static cmd_kind command_kind(const char *name, size_t len) {
    for (size_t k = 0; k < sizeof commands / sizeof *commands; k++)
        if (strlen(commands[k].name) == len && !memcmp(commands[k].name, name, len)) return commands[k].kind;
    return CMD_KEEP;
}

// Unicode characters with an ASCII/LaTeX spelling ("" = dropped).
static const struct {
    uint32_t cp;
    const char *repl;
} unicode_map[] = {
    {0x2212, "-"},        {0x2013, "-"},  {0x00D7, "*"},     {0x00F7, "/"},        {0x00B7, "*"},  {0x22C5, "*"},
    {0x2219, "*"},        {0x221A, "\\sqrt "},              {0x03C0, "\\pi "},    {0x00B0, ""},   {0x00B2, "^2"},
    {0x00B3, "^3"},       {0x2220, "\\angle "},             {0xFF0C, ","},        {0xFF08, "("},  {0xFF09, ")"},
    {0xFF1A, ":"},        {0xFF0B, "+"},  {0xFF1D, "="},     {0x2248, "\\approx "},        {0x221E, "\\infty "},
    {0x00B1, "\\pm "},    {0x3002, "."},  {0xFF0E, "."},     {0x00A0, " "},        {0x2009, " "},  {0x202F, " "},
    {0x3000, " "},        {0x2032, "'"},  {0x2264, "\\le "}, {0x2265, "\\ge "},    {0x2260, "\\ne "},
    {0xFF05, "%"},        {0x2103, ""},
};

static const char *unicode_replacement(uint32_t cp) {
    for (size_t k = 0; k < sizeof unicode_map / sizeof *unicode_map; k++)
        if (unicode_map[k].cp == cp) return unicode_map[k].repl;
    return NULL;
}

// The whole string is CJK ideographs (MAYE keeps such answers, e.g. a Chinese "yes"; otherwise it drops
// CJK characters, which are then mostly units).
static bool all_cjk(const char *s, size_t n) {
    size_t i = 0, count = 0;
    while (i < n && is_space(s[i])) i++;
    while (n > i && is_space(s[n - 1])) n--;
    while (i < n) {
        uint32_t cp;
        i += utf8_decode((const unsigned char *)s, n, i, &cp);
        if (!is_cjk(cp)) return false;
        count++;
    }
    return count > 0;
}

// "^\circ", "^{\circ}", "^{ \circ }", "^\degree", "^°" starting at s[i] == '^': the length to drop (0 = none).
static size_t degree_suffix(const char *s, size_t n, size_t i) {
    size_t j = i + 1;
    while (j < n && is_space(s[j])) j++;
    if (command_at(s, n, j, "circ") || command_at(s, n, j, "degree")) return j + 1 + letters_at(s, n, j + 1) - i;
    if (starts_with(s, n, j, "\xC2\xB0")) return j + 2 - i;
    size_t b, e;
    if (j >= n || s[j] != '{' || !brace_group(s, n, j, &b, &e)) return 0;
    size_t close = e; // s[close] == '}'
    while (b < e && is_space(s[b])) b++;
    while (e > b && is_space(s[e - 1])) e--;
    bool degree = (command_at(s, e, b, "circ") && e - b == 5) || (command_at(s, e, b, "degree") && e - b == 7) ||
                  (e - b == 2 && starts_with(s, e, b, "\xC2\xB0"));
    return degree ? close + 1 - i : 0;
}

static void clean_latex(const char *s, size_t n, bool keep_cjk, int depth, maye_buf *out) {
    size_t i = 0;
    while (i < n) {
        char c = s[i];
        if (c == '$' || c == '&') {
            i++;
        } else if (c == '{' && starts_with(s, n, i, "{,}")) { // 1{,}000
            i += 3;
        } else if (c == '^') {
            size_t drop = degree_suffix(s, n, i);
            if (drop) i += drop;
            else maye_buf_putc(out, '^'), i++;
        } else if (c == '~' || is_space(c)) {
            maye_buf_putc(out, ' '), i++;
        } else if (c == '\\') {
            if (i + 1 >= n) {
                i++;
                continue;
            }
            size_t len = letters_at(s, n, i + 1);
            if (len == 0) { // \% \{ \, \\ ...
                char d = s[i + 1];
                if (d == '%') maye_buf_putc(out, '%');
                else if (d == '{') maye_buf_puts(out, "\\{");
                else if (d == '}') maye_buf_puts(out, "\\}");
                else if (d == '|') maye_buf_putc(out, '|');
                else if (d == '\\' || d == ' ') maye_buf_putc(out, ' ');
                i += 2;
                continue;
            }
            const char *name = s + i + 1;
            size_t j = i + 1 + len;
            switch (command_kind(name, len)) {
            case CMD_DROP: break;
            case CMD_DROP_DELIM:
                while (j < n && is_space(s[j])) j++;
                if (j < n && s[j] == '.') j++; // \left. and \right.
                break;
            case CMD_SPACE: maye_buf_putc(out, ' '); break;
            case CMD_FRAC: maye_buf_puts(out, "\\frac"); break;
            case CMD_MUL: maye_buf_putc(out, '*'); break;
            case CMD_DIV: maye_buf_putc(out, '/'); break;
            case CMD_APPROX: maye_buf_puts(out, " \\approx "); break;
            case CMD_TEXT: {
                size_t k = j, b, e;
                while (k < n && is_space(s[k])) k++;
                if (k < n && s[k] == '{' && brace_group(s, n, k, &b, &e)) {
                    maye_buf_putc(out, ' ');
                    if (depth < TEXT_MAX_DEPTH) clean_latex(s + b, e - b, keep_cjk, depth + 1, out);
                    maye_buf_putc(out, ' ');
                    j = e + 1;
                }
                break;
            }
            case CMD_KEEP:
                maye_buf_putc(out, '\\');
                maye_buf_append(out, name, len);
                if (j < n && is_alpha(s[j])) maye_buf_putc(out, ' ');
                break;
            }
            i = j;
        } else if ((unsigned char)c >= 0x80) {
            uint32_t cp;
            size_t len = utf8_decode((const unsigned char *)s, n, i, &cp);
            const char *repl = unicode_replacement(cp);
            if (repl) maye_buf_puts(out, repl);
            else if (!is_cjk(cp) || keep_cjk) maye_buf_append(out, s + i, len);
            i += len;
        } else {
            maye_buf_putc(out, c), i++;
        }
    }
}

// ----------------------------------------------------------------------------
// answer items: split at top-level separators, strip "x =" prefixes, units, trailing punctuation and %

typedef struct {
    char *s;      // normalised text (owned), spaces kept for the evaluator
    bool percent; // written with a % sign
} item;

typedef struct {
    int n;
    item items[2 * MAYE_JUDGE_MAX_ITEMS]; // \pm doubles an item
} answer_set;

static void set_free(answer_set *a) {
    for (int k = 0; k < a->n; k++) free(a->items[k].s);
    a->n = 0;
}

static bool is_open(char c) { return c == '(' || c == '[' || c == '{'; }
static bool is_close(char c) { return c == ')' || c == ']' || c == '}'; }

static char *trim(char *s) {
    while (is_space(*s)) s++;
    size_t n = strlen(s);
    while (n > 0 && is_space(s[n - 1])) s[--n] = 0;
    return s;
}

// "or"/"and" as a whole word at s[i].
static size_t word_separator(const char *s, size_t n, size_t i) {
    if (i > 0 && !is_space(s[i - 1])) return 0;
    size_t len = letters_at(s, n, i);
    if (!((len == 2 && !memcmp(s + i, "or", 2)) || (len == 3 && !memcmp(s + i, "and", 3)))) return 0;
    return (i + len == n || is_space(s[i + len])) ? len : 0;
}

// Removes thousands separators in place: a run of digits and commas shaped d{1,3}(,ddd)+ loses its commas.
static void drop_thousands_commas(char *s) {
    size_t n = strlen(s), w = 0;
    char *src = xmalloc(n + 1);
    memcpy(src, s, n + 1);
    for (size_t i = 0; i < n;) {
        bool start = is_digit(src[i]) && (i == 0 || (!is_digit(src[i - 1]) && src[i - 1] != '.' && src[i - 1] != ','));
        size_t j = i;
        while (start && j < n && (is_digit(src[j]) || src[j] == ',')) j++;
        size_t lead = 0;
        while (i + lead < j && is_digit(src[i + lead])) lead++;
        bool thousands = lead >= 1 && lead <= 3 && i + lead < j;
        for (size_t k = i + lead; thousands && k < j; k += 4)
            thousands = k + 4 <= j && src[k] == ',' && is_digit(src[k + 1]) && is_digit(src[k + 2]) &&
                        is_digit(src[k + 3]);
        if (!thousands) {
            s[w++] = src[i++];
            continue;
        }
        for (; i < j; i++)
            if (src[i] != ',') s[w++] = src[i];
    }
    s[w] = 0;
    free(src);
}

static const char *const unit_words[] = {
    "cm",          "mm",          "m",          "km",          "dm",         "in",         "inch",
    "inches",      "ft",          "foot",       "feet",        "yd",         "yard",       "yards",
    "mi",          "mile",        "miles",      "meter",       "meters",     "metre",      "metres",
    "centimeter",  "centimeters", "centimetre", "centimetres", "millimeter", "millimeters", "kilometer",
    "kilometers",  "unit",        "units",      "square",      "sq",         "cubic",      "cu",
    "degree",      "degrees",     "deg",        "radian",      "radians",    "rad",        "dollar",
    "dollars",     "cents",       "hour",       "hours",       "hr",         "minute",     "minutes",
    "min",         "second",      "seconds",    "sec",         "kg",         "gram",       "grams",
    "liter",       "liters",      "litre",      "litres",      "ml",         "long",       "wide",
    "tall",        "high",        "each",
};

static bool word_is(const char *w, size_t len, const char *lower) {
    if (strlen(lower) != len) return false;
    for (size_t m = 0; m < len; m++)
        if (tolower((unsigned char)w[m]) != lower[m]) return false;
    return true;
}

static bool is_unit_word(const char *w, size_t len) {
    for (size_t k = 0; k < sizeof unit_words / sizeof *unit_words; k++)
        if (word_is(w, len, unit_words[k])) return true;
    return false;
}

// Strips one trailing '%', "percent", or unit word (with an optional ^2 / ^3 after it) from the trimmed
// string s. Returns true if it removed something.
static bool strip_one_suffix(char *s, bool *percent) {
    size_t n = strlen(s);
    if (n == 0) return false;
    if (s[n - 1] == '%') return s[n - 1] = 0, *percent = true, true;
    static const char *const powers[] = {"^2", "^3", "^{2}", "^{3}"};
    size_t end = n; // end of the word
    for (size_t k = 0; k < 4 && end == n; k++) {
        size_t m = strlen(powers[k]);
        if (n > m && !strcmp(s + n - m, powers[k])) end = n - m;
    }
    while (end > 0 && is_space(s[end - 1])) end--;
    size_t begin = end;
    while (begin > 0 && is_alpha(s[begin - 1])) begin--;
    if (begin == end || begin == 0) return false;
    char before = s[begin - 1]; // a command (\pi) or a variable product (2x) is not a unit
    if (!(is_space(before) || is_digit(before) || is_close(before) || before == '.')) return false;
    bool pct = end == n && word_is(s + begin, end - begin, "percent");
    if (!pct && !is_unit_word(s + begin, end - begin)) return false;
    size_t rest = begin;
    while (rest > 0 && is_space(s[rest - 1])) rest--;
    if (rest == 0) return false;
    s[rest] = 0;
    if (pct) *percent = true;
    return true;
}

// Bracket depth change of s[i] (escaped \{ \} count as brackets too); *skip is set to 1 for them.
static int bracket_step(const char *s, size_t n, size_t i, size_t *skip) {
    *skip = 0;
    if (s[i] == '\\' && i + 1 < n && (s[i + 1] == '{' || s[i + 1] == '}')) return *skip = 1, s[i + 1] == '{' ? 1 : -1;
    return is_open(s[i]) ? 1 : is_close(s[i]) ? -1 : 0;
}

// The left side of "x = 5", "m\angle ABC = 30", "f(x) = 2x+1" names the unknown; a side with arithmetic
// in it ("x^2 + y^2 = 4") makes the item an equation that is compared whole.
static bool names_unknown(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (strchr("+-*/^<>", s[i])) return false;
        if (command_at(s, n, i, "frac") || command_at(s, n, i, "sqrt") || command_at(s, n, i, "pi")) return false;
    }
    return true;
}

// Normalises one item in place and returns its start.
static char *normalise_item(char *s, bool *percent) {
    *percent = false;
    s = trim(s);
    for (int guard = 0; guard < 8; guard++) { // outer braces around everything: {5} -> 5
        size_t n = strlen(s), b, e;
        if (n < 2 || s[0] != '{' || !brace_group(s, n, 0, &b, &e) || e != n - 1) break;
        s[n - 1] = 0;
        s = trim(s + 1);
    }
    // the value after "x =", "\approx" or "\in" at the top level
    size_t n = strlen(s), cut = 0, first_eq = 0, skip;
    int depth = 0;
    for (size_t i = 0; i < n; i++) {
        depth += bracket_step(s, n, i, &skip);
        if (depth != 0 || skip) {
            i += skip;
            continue;
        }
        if (s[i] == '=' && i > 0 && !strchr("<>!", s[i - 1])) {
            if (!first_eq) first_eq = i;
            if (names_unknown(s, first_eq)) cut = i + 1;
        } else if (command_at(s, n, i, "approx") || command_at(s, n, i, "in")) {
            cut = i + 1 + letters_at(s, n, i + 1);
        }
    }
    if (cut > 0 && *trim(s + cut)) s = trim(s + cut);
    for (int guard = 0; guard < 8; guard++) { // trailing punctuation, units and percent
        s = trim(s);
        size_t m = strlen(s);
        while (m > 0 && strchr(".,;:!", s[m - 1])) s[--m] = 0;
        while (*s && strchr(",;:", *s)) s++;
        s = trim(s);
        if (!strip_one_suffix(s, percent)) break;
    }
    size_t m = strlen(s); // "(A)" -> "A"
    if (m == 3 && s[0] == '(' && is_alpha(s[1]) && s[2] == ')') s[0] = s[1], s[1] = 0;
    return s;
}

static char *dup_range(const char *s, size_t n) {
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

static void add_item(answer_set *a, char *owned, bool percent) {
    if (a->n >= 2 * MAYE_JUDGE_MAX_ITEMS) return free(owned);
    a->items[a->n].s = owned;
    a->items[a->n].percent = percent;
    a->n++;
}

// Adds an item, expanding a \pm / \mp into its two signs.
static void add_item_pm(answer_set *a, const char *s, bool percent) {
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++) {
        if (!command_at(s, n, i, "pm") && !command_at(s, n, i, "mp")) continue;
        for (int sign = 0; sign < 2; sign++) {
            char *v = xmalloc(n);
            memcpy(v, s, i);
            v[i] = sign ? '-' : '+';
            memcpy(v + i + 1, s + i + 3, n - i - 3 + 1);
            add_item(a, v, percent);
        }
        return;
    }
    add_item(a, dup_range(s, n), percent);
}

// Cleans and splits an answer into items at top-level ',' ';' "or" "and". Returns false if it is too
// long, has too many items or none.
static bool prepare_answer(const char *text, size_t n, answer_set *out) {
    out->n = 0;
    if (n > MAYE_JUDGE_MAX_ANSWER) return false;
    maye_buf buf = {0};
    clean_latex(text, n, all_cjk(text, n), 0, &buf);
    maye_buf_puts(&buf, "");
    char *s = buf.data;
    drop_thousands_commas(s);
    size_t len = strlen(s), start = 0, skip;
    int depth = 0, count = 0;
    char *parts[MAYE_JUDGE_MAX_ITEMS];
    bool ok = true;
    for (size_t i = 0;; i++) {
        size_t sep = 0;
        if (i < len) {
            depth += bracket_step(s, len, i, &skip);
            if (depth == 0 && !skip && !is_close(s[i]))
                sep = (s[i] == ',' || s[i] == ';') ? 1 : word_separator(s, len, i);
            if (!sep) {
                i += skip;
                continue;
            }
        }
        if (count == MAYE_JUDGE_MAX_ITEMS) {
            ok = false;
            break;
        }
        parts[count++] = s + start;
        if (i >= len) break;
        memset(s + i, 0, sep);
        i += sep - 1;
        start = i + 1;
    }
    for (int k = 0; k < count && ok; k++) {
        bool percent;
        char *it = normalise_item(parts[k], &percent);
        if (*it) add_item_pm(out, it, percent);
    }
    maye_buf_free(&buf);
    if (!ok || out->n == 0) set_free(out);
    return ok && out->n > 0;
}

// The item without spaces, except one that ends a command before a letter ("\pi r" stays "\pi r"): the
// form compared as a string and shown to users.
static void compact(const char *s, maye_buf *out) {
    bool in_command = false;
    for (; *s; s++) {
        if (is_space(*s)) {
            const char *next = s;
            while (is_space(*next)) next++;
            if (in_command && is_alpha(*next)) maye_buf_putc(out, ' ');
            s = next - 1;
            in_command = false;
            continue;
        }
        in_command = *s == '\\' || (in_command && is_alpha(*s));
        maye_buf_putc(out, *s);
    }
    maye_buf_puts(out, "");
}

static char *render_set(const answer_set *a) {
    maye_buf b = {0};
    for (int k = 0; k < a->n; k++) {
        if (k) maye_buf_puts(&b, ", ");
        compact(a->items[k].s, &b);
        if (a->items[k].percent) maye_buf_putc(&b, '%');
    }
    maye_buf_puts(&b, "");
    return b.data;
}

// ----------------------------------------------------------------------------
// expression evaluator: numbers, + - * / ^, \frac, \sqrt, \sqrt[n], \pi, ( ) [ ] { }, implicit
// multiplication (2\sqrt{3}, 3\pi, 2(x+1)), mixed numbers (2\frac{1}{2} = 2.5) and, when `vars` is set,
// single-letter variables. Recursion depth is bounded; any error makes the whole evaluation fail.

typedef struct {
    const char *s;
    size_t n, i;
    int depth;
    const double *vars; // (52) values of a-z then A-Z, or NULL when letters are not numbers
    uint64_t used;      // bit per variable seen
    bool err;
} parser;

static double parse_expr(parser *p);
static double parse_power(parser *p);

static bool enter(parser *p) {
    if (++p->depth > MAYE_JUDGE_MAX_DEPTH) p->err = true;
    return !p->err;
}

static void skip_ws(parser *p) {
    while (p->i < p->n && is_space(p->s[p->i])) p->i++;
}

static char peek(parser *p) {
    skip_ws(p);
    return p->i < p->n ? p->s[p->i] : 0;
}

static bool expect(parser *p, char c) {
    if (peek(p) != c) return p->err = true, false;
    p->i++;
    return true;
}

static int var_index(char c) { return c >= 'a' && c <= 'z' ? c - 'a' : c - 'A' + 26; }

static double parse_number(parser *p) {
    char tmp[NUM_MAX_CHARS + 1];
    size_t k = 0;
    bool dot = false;
    while (p->i < p->n && (is_digit(p->s[p->i]) || (p->s[p->i] == '.' && !dot))) {
        if (p->s[p->i] == '.') dot = true;
        if (k == NUM_MAX_CHARS) return p->err = true, NAN;
        tmp[k++] = p->s[p->i++];
    }
    tmp[k] = 0;
    if (k == 0 || (k == 1 && dot)) return p->err = true, NAN;
    return strtod(tmp, NULL);
}

// A non-negative integer written as {12} or a single digit (an argument of a mixed-number fraction).
static bool int_arg(parser *p, double *v) {
    skip_ws(p);
    if (p->i < p->n && is_digit(p->s[p->i])) return *v = p->s[p->i++] - '0', true;
    if (p->i >= p->n || p->s[p->i] != '{') return false;
    p->i++;
    skip_ws(p);
    size_t b = p->i;
    while (p->i < p->n && is_digit(p->s[p->i])) p->i++;
    if (p->i == b || p->i - b > 18) return false;
    double x = strtod(p->s + b, NULL);
    skip_ws(p);
    if (p->i >= p->n || p->s[p->i] != '}') return false;
    p->i++;
    return *v = x, true;
}

// The argument of a macro: {expr}, one digit, one letter, or one command.
static double parse_arg(parser *p) {
    if (!enter(p)) return NAN;
    double v = NAN;
    char c = peek(p);
    if (c == '{') {
        p->i++;
        v = parse_expr(p);
        expect(p, '}');
    } else if (is_digit(c)) {
        v = c - '0', p->i++;
    } else if (c == '\\' || (is_alpha(c) && p->vars)) {
        v = parse_power(p);
    } else {
        p->err = true;
    }
    p->depth--;
    return v;
}

static double parse_primary(parser *p) {
    if (!enter(p)) return NAN;
    double v = NAN;
    char c = peek(p);
    if (is_digit(c) || c == '.') {
        v = parse_number(p);
        size_t save = p->i;
        double num, den;
        skip_ws(p);
        if (!p->err && v == floor(v) && command_at(p->s, p->n, p->i, "frac")) {
            p->i += 5;
            if (int_arg(p, &num) && int_arg(p, &den) && den != 0) v += num / den;
            else p->i = save;
        } else {
            p->i = save;
        }
    } else if (c == '(' || c == '[' || c == '{') {
        p->i++;
        v = parse_expr(p);
        expect(p, c == '(' ? ')' : c == '[' ? ']' : '}');
    } else if (c == '\\') {
        if (command_at(p->s, p->n, p->i, "frac")) {
            p->i += 5;
            double a = parse_arg(p), b = parse_arg(p);
            v = a / b;
        } else if (command_at(p->s, p->n, p->i, "sqrt")) {
            p->i += 5;
            double root = 2;
            if (peek(p) == '[') {
                p->i++;
                root = parse_expr(p);
                expect(p, ']');
            }
            double x = parse_arg(p);
            if (root == 2) v = sqrt(x);
            else if (x < 0 && root == floor(root) && fmod(root, 2) != 0) v = -pow(-x, 1 / root);
            else v = pow(x, 1 / root);
        } else if (command_at(p->s, p->n, p->i, "pi")) {
            p->i += 3;
            v = M_PI;
        } else {
            p->err = true;
        }
    } else if (is_alpha(c) && p->vars && !(p->i + 1 < p->n && is_alpha(p->s[p->i + 1]))) {
        int k = var_index(c);
        p->used |= 1ull << k;
        v = p->vars[k];
        p->i++;
    } else {
        p->err = true;
    }
    p->depth--;
    return v;
}

static double parse_unary(parser *p);

static double parse_power(parser *p) {
    if (!enter(p)) return NAN;
    double base = parse_primary(p);
    if (peek(p) == '^') {
        p->i++;
        double e;
        char c = peek(p);
        if (c == '{') e = parse_arg(p);
        else if (c == '-' || c == '+') p->i++, e = (c == '-' ? -1 : 1) * parse_primary(p);
        else e = parse_primary(p);
        if (fabs(e) > 1000) p->err = true;
        base = pow(base, e);
    }
    p->depth--;
    return base;
}

static double parse_unary(parser *p) {
    if (!enter(p)) return NAN;
    double v;
    char c = peek(p);
    if (c == '-' || c == '+') {
        p->i++;
        v = parse_unary(p);
        if (c == '-') v = -v;
    } else {
        v = parse_power(p);
    }
    p->depth--;
    return v;
}

// Does a factor of an implicit product start here (2\pi, 2(3), 2x)?
static bool starts_factor(parser *p) {
    char c = peek(p);
    if (c == '(' || c == '[' || c == '{') return true;
    if (c == '\\')
        return command_at(p->s, p->n, p->i, "frac") || command_at(p->s, p->n, p->i, "sqrt") ||
               command_at(p->s, p->n, p->i, "pi");
    return is_alpha(c) && p->vars;
}

static double parse_term(parser *p) {
    if (!enter(p)) return NAN;
    double v = parse_unary(p);
    while (!p->err) {
        char c = peek(p);
        if (c == '*') p->i++, v *= parse_unary(p);
        else if (c == '/') p->i++, v /= parse_unary(p);
        else if (starts_factor(p)) v *= parse_power(p);
        else break;
    }
    p->depth--;
    return v;
}

static double parse_expr(parser *p) {
    if (!enter(p)) return NAN;
    double v = parse_term(p);
    while (!p->err) {
        char c = peek(p);
        if (c == '+') p->i++, v += parse_term(p);
        else if (c == '-') p->i++, v -= parse_term(p);
        else break;
    }
    p->depth--;
    return v;
}

// Evaluates s with variables `vars` (NULL = none). Returns 0 and the value, -1 if it is not a finite number.
static int evaluate(const char *s, const double *vars, double *value, uint64_t *used) {
    parser p = {.s = s, .n = strlen(s), .vars = vars};
    double v = parse_expr(&p);
    skip_ws(&p);
    if (p.err || p.i != p.n || !isfinite(v)) return -1;
    if (used) *used = p.used;
    *value = v;
    return 0;
}

int maye_judge_eval(const char *item, double *value) { return evaluate(item, NULL, value, NULL); }

// ----------------------------------------------------------------------------
// comparison

static bool close_rel(double pred, double truth, double tol) {
    if (pred == truth) return true;
    return fabs(pred - truth) <= tol * fabs(truth);
}

static bool numbers_equal(double p, bool p_pct, double a, bool a_pct, double tol) {
    double ps[2] = {p, p / 100}, as[2] = {a, a / 100};
    for (int i = 0; i < (p_pct ? 2 : 1); i++)
        for (int j = 0; j < (a_pct ? 2 : 1); j++)
            if (close_rel(ps[i], as[j], tol)) return true;
    return false;
}

// Value of variable k at sample point `pt`: positive, non-integer, distinct per variable and point.
static double sample_value(int k, int pt) { return 1.0 + fmod(0.6180339887 * (k + 1) * (pt + 2), 1.7) + 0.013 * pt; }

static bool expressions_equal(const char *pred, const char *truth, double tol) {
    double vars[52];
    for (int pt = 0; pt < N_VAR_POINTS; pt++) {
        for (int k = 0; k < 52; k++) vars[k] = sample_value(k, pt);
        double a, b;
        uint64_t ua = 0, ub = 0;
        if (evaluate(pred, vars, &a, &ua) < 0 || evaluate(truth, vars, &b, &ub) < 0) return false;
        if (ua != ub || ua == 0) return false;
        if (!close_rel(a, b, tol)) return false;
    }
    return true;
}

static bool strings_equal(const char *a, const char *b) {
    maye_buf x = {0}, y = {0};
    compact(a, &x), compact(b, &y);
    bool eq = !strcmp(x.data, y.data) && x.len > 0;
    maye_buf_free(&x), maye_buf_free(&y);
    return eq;
}

static bool items_equal(const char *p, bool p_pct, const char *a, bool a_pct, double tol, int depth);

// "(a, b)" / "[a, b)": the inner elements split at depth-1 commas (owned), or 0 if s is not such a tuple.
static int tuple_split(const char *s, char **elems, int max) {
    size_t n = strlen(s);
    if (n < 2 || (s[0] != '(' && s[0] != '[') || (s[n - 1] != ')' && s[n - 1] != ']')) return 0;
    size_t cuts[MAYE_JUDGE_MAX_ITEMS]; // positions of the separating commas, then the closing bracket
    int depth = 0, count = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_open(s[i])) depth++;
        else if (is_close(s[i])) depth--;
        if (depth == 0 && i != n - 1) return 0; // the first bracket closes early: "(1)+(2)"
        if ((depth == 1 && s[i] == ',') || i == n - 1) {
            if (count == max || count == MAYE_JUDGE_MAX_ITEMS) return 0;
            cuts[count++] = i;
        }
    }
    if (depth != 0 || count < 2) return 0;
    for (int k = 0; k < count; k++) {
        size_t start = k ? cuts[k - 1] + 1 : 1;
        elems[k] = dup_range(s + start, cuts[k] - start);
    }
    return count;
}

static bool tuples_equal(const char *p, const char *a, double tol, int depth, bool *decided) {
    char *pe[MAYE_JUDGE_MAX_ITEMS], *ae[MAYE_JUDGE_MAX_ITEMS];
    int np = tuple_split(p, pe, MAYE_JUDGE_MAX_ITEMS), na = tuple_split(a, ae, MAYE_JUDGE_MAX_ITEMS);
    *decided = np > 0 && na > 0;
    bool eq = *decided && np == na && p[0] == a[0] && p[strlen(p) - 1] == a[strlen(a) - 1];
    for (int k = 0; eq && k < np; k++) eq = items_equal(trim(pe[k]), false, trim(ae[k]), false, tol, depth + 1);
    for (int k = 0; k < np; k++) free(pe[k]);
    for (int k = 0; k < na; k++) free(ae[k]);
    return eq;
}

static bool items_equal(const char *p, bool p_pct, const char *a, bool a_pct, double tol, int depth) {
    if (p_pct == a_pct && strings_equal(p, a)) return true;
    if (depth < TUPLE_MAX_DEPTH) {
        bool decided;
        bool eq = tuples_equal(p, a, tol, depth, &decided);
        if (decided) return eq;
    }
    double x = 0, y = 0;
    bool px = evaluate(p, NULL, &x, NULL) == 0, ay = evaluate(a, NULL, &y, NULL) == 0;
    if (px && ay) return numbers_equal(x, p_pct, y, a_pct, tol);
    if (px || ay) return false;
    if (p_pct == a_pct && expressions_equal(p, a, tol)) return true;
    return false;
}

// Every predicted item matches a distinct ground-truth item (and the counts agree).
static bool sets_equal(const answer_set *p, const answer_set *a, double tol) {
    if (p->n != a->n || p->n == 0) return false;
    bool used[2 * MAYE_JUDGE_MAX_ITEMS] = {0};
    for (int i = 0; i < p->n; i++) {
        bool found = false;
        for (int j = 0; j < a->n && !found; j++) {
            if (used[j]) continue;
            if (items_equal(p->items[i].s, p->items[i].percent, a->items[j].s, a->items[j].percent, tol, 0))
                used[j] = found = true;
        }
        if (!found) return false;
    }
    return true;
}

// ----------------------------------------------------------------------------
// public API

void maye_judge(const char *response, const char *answer, double tolerance, maye_judge_result *out) {
    memset(out, 0, sizeof *out);
    size_t rn = strlen(response), an = strlen(answer), b = 0, e = 0, ab = 0, ae = an;
    out->found = maye_judge_extract(response, rn, &b, &e) == 1;
    out->extracted = dup_range(response + b, out->found ? e - b : 0);
    if (!maye_judge_extract(answer, an, &ab, &ae)) ab = 0, ae = an;
    answer_set P = {0}, A = {0};
    bool a_ok = prepare_answer(answer + ab, ae - ab, &A);
    bool p_ok = out->found && prepare_answer(response + b, e - b, &P);
    out->norm_answer = a_ok ? render_set(&A) : xstrdup("");
    out->norm_response = p_ok ? render_set(&P) : xstrdup("");
    out->correct = a_ok && p_ok && sets_equal(&P, &A, tolerance);
    set_free(&P), set_free(&A);
}

void maye_judge_result_free(maye_judge_result *r) {
    free(r->extracted), free(r->norm_response), free(r->norm_answer);
    memset(r, 0, sizeof *r);
}

bool maye_judge_correct(const char *response, const char *answer, double tolerance) {
    maye_judge_result r;
    maye_judge(response, answer, tolerance, &r);
    bool ok = r.correct;
    maye_judge_result_free(&r);
    return ok;
}

bool maye_judge_equal(const char *pred, const char *truth, double tolerance) {
    answer_set P = {0}, A = {0};
    bool ok = prepare_answer(pred, strlen(pred), &P) && prepare_answer(truth, strlen(truth), &A) &&
              sets_equal(&P, &A, tolerance);
    set_free(&P), set_free(&A);
    return ok;
}
