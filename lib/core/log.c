// Logging and progress lines on stderr (see log.h).
#include "core/log.h"

#include "core/error.h"
#include "core/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *program = "maye";
static maye_log_level level = MAYE_LOG_INFO;

void maye_log_init(const char *prog) {
    const char *slash = strrchr(prog, '/');
    program = slash ? slash + 1 : prog;
    const char *env = getenv("MAYE_LOG");
    if (!env) return;
    if (!strcmp(env, "error")) level = MAYE_LOG_ERROR;
    else if (!strcmp(env, "warn")) level = MAYE_LOG_WARN;
    else if (!strcmp(env, "info")) level = MAYE_LOG_INFO;
    else if (!strcmp(env, "debug")) level = MAYE_LOG_DEBUG;
}

void maye_log_set_level(maye_log_level l) { level = l; }
maye_log_level maye_log_get_level(void) { return level; }
const char *maye_program_name(void) { return program; }

void maye_log(maye_log_level l, const char *fmt, ...) {
    if (l > level) return;
    static const char *tags[] = {"error: ", "warning: ", "", "debug: "};
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s%s\n", program, tags[l], line);
}

void maye_report_error(void) {
    const char *m = maye_errmsg();
    fprintf(stderr, "%s: error: %s\n", program, m[0] ? m : "unknown error");
}

// ----------------------------------------------------------------------------
// progress

void maye_progress_start(maye_progress *p, const char *what, int64_t total) {
    memset(p, 0, sizeof *p);
    p->what = what;
    p->total = total;
    p->t_start = p->t_last = maye_now();
    p->every_s = 10.0;
    p->tty = isatty(STDERR_FILENO) && level >= MAYE_LOG_INFO;
}

static void progress_draw(maye_progress *p, int final) {
    double el = maye_now() - p->t_start;
    double rate = el > 0 ? (double)p->done / el : 0;
    char eta[32] = "";
    if (p->total > 0 && rate > 0 && p->done < p->total)
        snprintf(eta, sizeof eta, ", ETA %.0fs", (double)(p->total - p->done) / rate);
    if (p->tty) {
        int width = 30, fill = p->total > 0 ? (int)(width * p->done / p->total) : 0;
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\r%s: %s [%s] %lld/%lld (%.1f/s%s)%s", program, p->what, bar, (long long)p->done,
                (long long)p->total, rate, eta, final ? "\n" : "   ");
    } else if (p->total > 0) {
        fprintf(stderr, "%s: %s %lld/%lld (%.1f/s%s)\n", program, p->what, (long long)p->done,
                (long long)p->total, rate, eta);
    } else {
        fprintf(stderr, "%s: %s %lld (%.1f/s)\n", program, p->what, (long long)p->done, rate);
    }
}

void maye_progress_update(maye_progress *p, int64_t done) {
    p->done = done;
    if (level < MAYE_LOG_INFO) return;
    double now = maye_now();
    double every = p->tty ? 0.2 : p->every_s;
    if (now - p->t_last < every) return;
    p->t_last = now;
    progress_draw(p, 0);
}

void maye_progress_finish(maye_progress *p) {
    if (level < MAYE_LOG_INFO) return;
    if (p->tty || maye_now() - p->t_start >= p->every_s) progress_draw(p, 1);
}
