// A minimal test harness: EXPECT-style checks that count failures and print file:line, tolerance
// comparisons that name the tensor, the index and both values, and fixture lookup (MAYE_FIXTURES).
// A test binary exits 0 on success, 1 on failure, 77 when skipped (e.g. fixtures absent).
#pragma once
#include "core/error.h"

#include <stdint.h>
#include <stdio.h>

extern int test_failures;

#define EXPECT(cond, ...)                                                                                  \
    do {                                                                                                   \
        if (!(cond)) {                                                                                     \
            fprintf(stderr, "%s:%d: FAIL: %s: ", __FILE__, __LINE__, #cond);                               \
            fprintf(stderr, __VA_ARGS__);                                                                  \
            fputc('\n', stderr);                                                                           \
            test_failures++;                                                                               \
        }                                                                                                  \
    } while (0)

// Expects a library call to succeed (>= 0); prints the library's error message otherwise.
#define EXPECT_OK(expr)                                                                                    \
    do {                                                                                                   \
        if ((expr) < 0) {                                                                                  \
            fprintf(stderr, "%s:%d: FAIL: %s: %s\n", __FILE__, __LINE__, #expr, maye_errmsg());           \
            test_failures++;                                                                               \
        }                                                                                                  \
    } while (0)

// Expects a library call to fail and its message to contain `needle`.
#define EXPECT_FAIL(expr, needle)                                                                          \
    do {                                                                                                   \
        maye_clear_error();                                                                                \
        if ((expr) >= 0) {                                                                                 \
            fprintf(stderr, "%s:%d: FAIL: %s succeeded, expected an error\n", __FILE__, __LINE__, #expr);  \
            test_failures++;                                                                               \
        } else if (!test_contains(maye_errmsg(), needle)) {                                                \
            fprintf(stderr, "%s:%d: FAIL: %s: message '%s' lacks '%s'\n", __FILE__, __LINE__, #expr,        \
                    maye_errmsg(), needle);                                                                \
            test_failures++;                                                                               \
        }                                                                                                  \
    } while (0)

int test_contains(const char *haystack, const char *needle);

// Compares n floats: |got - want| <= atol + rtol * |want|. Prints the first mismatches (up to 5) and the
// max difference, naming `what`. Returns 1 if all match.
int test_close_f32(const char *what, const float *got, const float *want, int64_t n, double atol, double rtol);
// Like test_close_f32 but the tolerance is rel * max|want| (for gradients).
int test_close_rel_max(const char *what, const float *got, const float *want, int64_t n, double rel);
int test_equal_i64(const char *what, const int64_t *got, const int64_t *want, int64_t n);

// The fixtures root: $MAYE_FIXTURES or ../shared/fixtures. Returns NULL (and the test should skip with
// exit code 77) if it does not exist.
const char *test_fixtures_root(void);
// A scratch directory unique to this test process (removed by the runner), created on first use.
const char *test_tmpdir(void);

#define TEST_SKIP 77
#define TEST_RESULT() (test_failures ? (fprintf(stderr, "%d check(s) failed\n", test_failures), 1) : 0)
