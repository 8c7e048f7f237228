// Small shared helpers: growable byte buffers, whole-file reads, atomic file writes, paths, timing.
#pragma once
#include <stddef.h>
#include <stdint.h>

// ----------------------------------------------------------------------------
// growable buffer

typedef struct {
    char *data; // (cap) bytes; data[len] == 0 is kept so text can be used as a C string
    size_t len;
    size_t cap;
} maye_buf;

void maye_buf_reserve(maye_buf *b, size_t extra);
void maye_buf_append(maye_buf *b, const void *p, size_t n);
void maye_buf_puts(maye_buf *b, const char *s);
void maye_buf_putc(maye_buf *b, char c);
void maye_buf_printf(maye_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void maye_buf_clear(maye_buf *b);
void maye_buf_free(maye_buf *b);

// ----------------------------------------------------------------------------
// files and paths

// Reads a whole file into a NUL-terminated buffer. "-" reads stdin. Returns -1 with a message naming it.
int maye_read_file(const char *path, maye_buf *out);
// Writes bytes to `path` atomically: write to path.tmp.PID, fsync, rename, fsync the directory.
int maye_write_file_atomic(const char *path, const void *data, size_t n);
// Renames tmp -> path after fsync of tmp (which must be closed) and fsyncs the containing directory.
int maye_commit_file(const char *tmp, const char *path);
// mkdir -p.
int maye_mkdir_p(const char *path);
int maye_file_exists(const char *path);
int maye_is_dir(const char *path);
// Joins a directory and a relative path ("a/b" + "c.png" -> "a/b/c.png"); absolute `rel` wins.
char *maye_path_join(const char *dir, const char *rel);
// The directory part of a path ("a/b/c.png" -> "a/b", "c.png" -> ".").
char *maye_dirname(const char *path);

// ----------------------------------------------------------------------------
// time

double maye_now(void); // seconds, monotonic

// ----------------------------------------------------------------------------
// numbers

// FNV-1a 64-bit over bytes; `h` is the running hash (start with MAYE_FNV_INIT).
#define MAYE_FNV_INIT 0xcbf29ce484222325ULL
uint64_t maye_fnv1a(uint64_t h, const void *p, size_t n);
// Strict number parsing of a whole string. Return -1 (with a message naming `what`) on junk.
int maye_parse_i64(const char *s, int64_t *out, const char *what);
int maye_parse_f64(const char *s, double *out, const char *what);
// bf16/f16 <-> f32 conversions (round to nearest even on the way down).
float maye_bf16_to_f32(uint16_t h);
uint16_t maye_f32_to_bf16(float f);
float maye_f16_to_f32(uint16_t h);
uint16_t maye_f32_to_f16(float f);
