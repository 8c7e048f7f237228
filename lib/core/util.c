// Growable buffers, file helpers, paths, timing and number conversions (see util.h).
#include "core/util.h"

#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

// ----------------------------------------------------------------------------
// growable buffer

void maye_buf_reserve(maye_buf *b, size_t extra) {
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

void maye_buf_append(maye_buf *b, const void *p, size_t n) {
    maye_buf_reserve(b, n);
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
}

void maye_buf_puts(maye_buf *b, const char *s) { maye_buf_append(b, s, strlen(s)); }

void maye_buf_putc(maye_buf *b, char c) { maye_buf_append(b, &c, 1); }

void maye_buf_printf(maye_buf *b, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) maye_die("vsnprintf failed for format '%s'", fmt);
    maye_buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    b->len += (size_t)n;
}

void maye_buf_clear(maye_buf *b) {
    b->len = 0;
    if (b->data) b->data[0] = 0;
}

void maye_buf_free(maye_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

// ----------------------------------------------------------------------------
// files and paths

int maye_read_file(const char *path, maye_buf *out) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) return maye_fail("cannot open '%s': %s", path, strerror(errno));
    maye_buf_clear(out);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) maye_buf_append(out, chunk, n);
    int bad = ferror(f);
    if (f != stdin) fclose(f);
    if (bad) return maye_fail("error reading '%s': %s", path, strerror(errno));
    maye_buf_reserve(out, 0);
    out->data[out->len] = 0;
    return 0;
}

static int fsync_dir_of(const char *path) {
    char *dir = maye_dirname(path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    free(dir);
    if (fd < 0) return 0; // best effort: some filesystems do not allow opening directories
    fsync(fd);
    close(fd);
    return 0;
}

int maye_commit_file(const char *tmp, const char *path) {
    int fd = open(tmp, O_RDONLY);
    if (fd < 0) return maye_fail("cannot reopen '%s' to sync it: %s", tmp, strerror(errno));
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return maye_fail("fsync of '%s' failed: %s", tmp, strerror(e));
    }
    close(fd);
    if (rename(tmp, path) != 0) return maye_fail("cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
    return fsync_dir_of(path);
}

int maye_write_file_atomic(const char *path, const void *data, size_t n) {
    maye_buf tmp = {0};
    maye_buf_printf(&tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp.data, "wb");
    if (!f) {
        maye_fail("cannot create '%s': %s", tmp.data, strerror(errno));
        maye_buf_free(&tmp);
        return -1;
    }
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    int closed = fclose(f);
    if (w != n || closed != 0) {
        maye_fail("cannot write '%s': %s", tmp.data, strerror(errno));
        unlink(tmp.data);
        maye_buf_free(&tmp);
        return -1;
    }
    int rc = maye_commit_file(tmp.data, path);
    if (rc < 0) unlink(tmp.data);
    maye_buf_free(&tmp);
    return rc;
}

int maye_mkdir_p(const char *path) {
    char *p = xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            maye_fail("cannot create directory '%s': %s", p, strerror(errno));
            free(p);
            return -1;
        }
        *s = '/';
    }
    int rc = 0;
    if (mkdir(p, 0755) != 0 && errno != EEXIST) rc = maye_fail("cannot create directory '%s': %s", p, strerror(errno));
    free(p);
    return rc;
}

int maye_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int maye_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *maye_path_join(const char *dir, const char *rel) {
    if (rel[0] == '/' || !dir || !dir[0]) return xstrdup(rel);
    size_t a = strlen(dir), b = strlen(rel);
    char *p = xmalloc(a + b + 2);
    memcpy(p, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, rel, b + 1);
    return p;
}

char *maye_dirname(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return xstrdup(".");
    if (slash == path) return xstrdup("/");
    size_t n = (size_t)(slash - path);
    char *p = xmalloc(n + 1);
    memcpy(p, path, n);
    p[n] = 0;
    return p;
}

// ----------------------------------------------------------------------------
// time

double maye_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// ----------------------------------------------------------------------------
// numbers

uint64_t maye_fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

int maye_parse_i64(const char *s, int64_t *out, const char *what) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 0);
    if (end == s || *end || errno) return maye_fail("%s: expected an integer, got '%s'", what, s);
    *out = v;
    return 0;
}

int maye_parse_f64(const char *s, double *out, const char *what) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno == ERANGE) return maye_fail("%s: expected a number, got '%s'", what, s);
    *out = v;
    return 0;
}

float maye_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t maye_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float maye_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { // subnormal: normalise
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t maye_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00;     // NaN
    if (a >= 0x477ff000u) return sign | 0x7c00;    // overflow to inf (>= 65520 rounds up)
    if (a < 0x38800000u) {                         // subnormal or zero in f16
        float af;
        memcpy(&af, &a, 4);
        return sign | (uint16_t)lrintf(af * 16777216.0f); // af / 2^-24, round to nearest even
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1u) - (112u << 23);
    return sign | (uint16_t)(r >> 13);
}
