// Thread-local error messages and the dying allocators (see error.h).
#include "core/error.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char errmsg[MAYE_ERRMSG_MAX];

int maye_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
    return -1;
}

int maye_fail_ctx(const char *fmt, ...) {
    char ctx[MAYE_ERRMSG_MAX / 2], old[MAYE_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    memcpy(old, errmsg, sizeof old);
    size_t n = (size_t)snprintf(errmsg, sizeof errmsg, "%s", ctx);
    if (old[0] && n + 2 < sizeof errmsg) snprintf(errmsg + n, sizeof errmsg - n, ": %.*s", (int)(sizeof errmsg - n - 3), old);
    return -1;
}

const char *maye_errmsg(void) { return errmsg; }

void maye_clear_error(void) { errmsg[0] = 0; }

void maye_die_at(const char *file, int line, const char *fmt, ...) {
    fprintf(stderr, "fatal (%s:%d): ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

void *maye_malloc_at(size_t n, const char *file, int line) {
    void *p = malloc(n ? n : 1);
    if (!p) maye_die_at(file, line, "out of memory allocating %zu bytes", n);
    return p;
}

void *maye_calloc_at(size_t n, size_t size, const char *file, int line) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) maye_die_at(file, line, "out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *maye_realloc_at(void *p, size_t n, const char *file, int line) {
    void *q = realloc(p, n ? n : 1);
    if (!q) maye_die_at(file, line, "out of memory reallocating %zu bytes", n);
    return q;
}

char *maye_strdup_at(const char *s, const char *file, int line) {
    size_t n = strlen(s) + 1;
    char *p = maye_malloc_at(n, file, line);
    memcpy(p, s, n);
    return p;
}
