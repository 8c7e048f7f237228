// Logging and progress on stderr. Every line starts with the program name so interleaved output of the
// pipeline stages stays readable: "maye-batch: wrote 128 queries (step 3/40)".
#pragma once
#include <stdint.h>

typedef enum { MAYE_LOG_ERROR = 0, MAYE_LOG_WARN = 1, MAYE_LOG_INFO = 2, MAYE_LOG_DEBUG = 3 } maye_log_level;

// Sets the program name and the level (MAYE_LOG=error|warn|info|debug in the environment overrides).
void maye_log_init(const char *program);
void maye_log_set_level(maye_log_level level);
maye_log_level maye_log_get_level(void);
const char *maye_program_name(void);
void maye_log(maye_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_error(...) maye_log(MAYE_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) maye_log(MAYE_LOG_WARN, __VA_ARGS__)
#define log_info(...) maye_log(MAYE_LOG_INFO, __VA_ARGS__)
#define log_debug(...) maye_log(MAYE_LOG_DEBUG, __VA_ARGS__)

// Prints "program: error: <current error message>" (see error.h).
void maye_report_error(void);

// Progress of a long job: redraws one line on a terminal, prints a line every `every_s` seconds otherwise.
typedef struct {
    const char *what;  // "tokenizing", "decoding"
    int64_t total;     // 0 when unknown
    int64_t done;
    double t_start, t_last;
    double every_s;
    int tty;
} maye_progress;

void maye_progress_start(maye_progress *p, const char *what, int64_t total);
void maye_progress_update(maye_progress *p, int64_t done);
void maye_progress_finish(maye_progress *p);
