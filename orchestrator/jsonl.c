// JSON-lines filters (see jsonl.h).
#include "jsonl.h"

#include "core/error.h"

#include <stdlib.h>
#include <string.h>

int maye_jsonl_filter(FILE *in, const char *name, maye_jsonl_fn fn, void *ctx) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    int rc = 0;
    maye_buf out = {0};
    while ((n = getline(&line, &cap, in)) >= 0) {
        lineno++;
        size_t len = (size_t)n;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        if (strspn(line, " \t") >= len) continue;
        char where[512];
        snprintf(where, sizeof where, "%s:%ld", name, lineno);
        maye_buf_clear(&out);
        if (fn(ctx, line, len, where, &out) < 0) {
            rc = -1;
            break;
        }
        fwrite(out.data, 1, out.len, stdout);
    }
    if (fflush(stdout) != 0 && rc == 0) rc = maye_fail("cannot write to stdout");
    free(line);
    maye_buf_free(&out);
    return rc;
}
