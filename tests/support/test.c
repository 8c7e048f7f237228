// Test harness support (see tests/test.h).
#include "test.h"

#include "core/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int test_failures = 0;

int test_contains(const char *haystack, const char *needle) { return strstr(haystack, needle) != NULL; }

int test_close_f32(const char *what, const float *got, const float *want, int64_t n, double atol, double rtol) {
    int bad = 0;
    double maxd = 0;
    int64_t maxi = -1;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        int nan_mismatch = isnan(got[i]) != isnan(want[i]);
        if (d > maxd || (isnan(d) && maxi < 0)) maxd = isnan(d) ? INFINITY : d, maxi = i;
        if (nan_mismatch || d > atol + rtol * fabs((double)want[i])) {
            if (bad < 5) fprintf(stderr, "  %s[%lld]: got %.9g want %.9g (diff %.3g)\n", what, (long long)i,
                                 got[i], want[i], d);
            bad++;
        }
    }
    if (bad) {
        fprintf(stderr, "FAIL: %s: %d of %lld values out of tolerance (atol %g rtol %g); max diff %.3g at %lld\n",
                what, bad, (long long)n, atol, rtol, maxd, (long long)maxi);
        test_failures++;
    }
    return bad == 0;
}

int test_close_rel_max(const char *what, const float *got, const float *want, int64_t n, double rel) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)want[i]));
    return test_close_f32(what, got, want, n, rel * (m > 0 ? m : 1.0), 0.0);
}

int test_equal_i64(const char *what, const int64_t *got, const int64_t *want, int64_t n) {
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
        if (got[i] != want[i]) {
            if (bad < 5) fprintf(stderr, "  %s[%lld]: got %lld want %lld\n", what, (long long)i, (long long)got[i],
                                 (long long)want[i]);
            bad++;
        }
    if (bad) {
        fprintf(stderr, "FAIL: %s: %d of %lld values differ\n", what, bad, (long long)n);
        test_failures++;
    }
    return bad == 0;
}

const char *test_fixtures_root(void) {
    const char *env = getenv("MAYE_FIXTURES");
    const char *root = env && env[0] ? env : "../shared/fixtures";
    return maye_is_dir(root) ? root : NULL;
}

const char *test_tmpdir(void) {
    static char dir[512];
    if (dir[0]) return dir;
    const char *base = getenv("MAYE_TEST_TMP");
    snprintf(dir, sizeof dir, "%s/maye-test-%d", base && base[0] ? base : "/tmp", (int)getpid());
    if (maye_mkdir_p(dir) < 0) maye_die("cannot create test directory %s: %s", dir, maye_errmsg());
    return dir;
}
