// Errors as values. A library function that can fail on user input returns an int (0 = ok, -1 = error)
// and records one human-readable message in a thread-local buffer; callers may prepend context
// ("data/train.jsonl:12: field 'image': ") as the error travels up, and the program prints it once.
// Programming errors and out-of-memory are not user errors: they die at once with file and line.
#pragma once
#include <stddef.h>
#include <stdio.h>

#define MAYE_ERRMSG_MAX 2048

// Records a message (printf-style) and returns -1, so `return maye_fail("...")` reads naturally.
int maye_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Prepends context to the current message: "ctx: old message". Returns -1.
int maye_fail_ctx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// The current message ("" when none).
const char *maye_errmsg(void);
void maye_clear_error(void);

// Dies with file:line and a message: for broken invariants, never for bad user input.
_Noreturn void maye_die_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define maye_die(...) maye_die_at(__FILE__, __LINE__, __VA_ARGS__)

// Return -1 from the current function if `expr` < 0 (the error message is already set).
#define TRY(expr)                                                                                          \
    do {                                                                                                   \
        if ((expr) < 0) return -1;                                                                         \
    } while (0)
// Return maye_fail(...) unless `cond` holds.
#define CHECK_OR_FAIL(cond, ...)                                                                           \
    do {                                                                                                   \
        if (!(cond)) return maye_fail(__VA_ARGS__);                                                        \
    } while (0)
// Die unless an invariant holds.
#define ASSERT(cond)                                                                                       \
    do {                                                                                                   \
        if (!(cond)) maye_die("assertion failed: %s", #cond);                                              \
    } while (0)

// Allocation that dies with file:line on failure (llm.c's mallocCheck).
void *maye_malloc_at(size_t n, const char *file, int line);
void *maye_calloc_at(size_t n, size_t size, const char *file, int line);
void *maye_realloc_at(void *p, size_t n, const char *file, int line);
char *maye_strdup_at(const char *s, const char *file, int line);
#define xmalloc(n) maye_malloc_at((n), __FILE__, __LINE__)
#define xcalloc(n, s) maye_calloc_at((n), (s), __FILE__, __LINE__)
#define xrealloc(p, n) maye_realloc_at((p), (n), __FILE__, __LINE__)
#define xstrdup(s) maye_strdup_at((s), __FILE__, __LINE__)
