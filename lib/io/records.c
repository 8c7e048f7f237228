// Record streams: the zstd-framed, length-delimited protobuf streams between the stages (see records.h).
//
// Writer: a record is packed into `rec` (varint length + message) and only then handed to zstd, whose
// output collects in `out` and goes to write(2) when `out` fills, on flush and on close.
// Reader: read(2) fills `in` with whatever has arrived; zstd decodes it into `buf`; a record is returned
// as soon as `buf` holds all of its bytes. read(2) is only called when `buf` lacks a complete record, all
// of `in` has been decoded and the decoder holds no more output, so the reader never waits for bytes the
// current record does not need.
#include "io/records.h"

#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "version.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>
#include <zstd_errors.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "maye-c record streams store tensors little-endian and assume a little-endian host"
#endif

// ----------------------------------------------------------------------------
// record kinds

typedef struct {
    const char *name, *key;
    const ProtobufCMessageDescriptor *desc;
} kind_info;

static const kind_info kinds[] = {
    [MAYE__RECORD_KIND__QUERY] = {"Query", "query", &maye__query__descriptor},
    [MAYE__RECORD_KIND__ROLLOUT] = {"Rollout", "rollout", &maye__rollout__descriptor},
    [MAYE__RECORD_KIND__TRAJECTORY] = {"Trajectory", "trajectory", &maye__trajectory__descriptor},
    [MAYE__RECORD_KIND__WEIGHT_SYNC] = {"WeightSync", "weight_sync", &maye__weight_sync__descriptor},
    [MAYE__RECORD_KIND__METRICS] = {"Metrics", "metrics", &maye__metrics__descriptor},
};

static const kind_info *kind_of(Maye__RecordKind k) {
    if ((int)k <= 0 || (size_t)k >= sizeof kinds / sizeof *kinds) return NULL;
    return &kinds[k];
}

const char *maye_record_kind_name(Maye__RecordKind kind) { return kind_of(kind) ? kind_of(kind)->name : "?"; }
const char *maye_record_kind_key(Maye__RecordKind kind) { return kind_of(kind) ? kind_of(kind)->key : "?"; }
const ProtobufCMessageDescriptor *maye_record_descriptor(Maye__RecordKind kind) {
    return kind_of(kind) ? kind_of(kind)->desc : NULL;
}

void maye_record_free(ProtobufCMessage *msg) {
    if (msg) protobuf_c_message_free_unpacked(msg, NULL);
}

// ----------------------------------------------------------------------------
// stream headers

void maye_header_init(Maye__StreamHeader *h, Maye__RecordKind kind, const char *program, const maye_config *cfg) {
    maye__stream_header__init(h);
    h->kind = kind;
    h->schema_version = MAYE_SCHEMA_VERSION;
    maye_buf producer = {0};
    maye_buf_printf(&producer, "%s %s", program ? program : maye_program_name(), MAYE_VERSION);
    h->producer = producer.data;
    const char *run_dir = cfg && cfg->run_dir ? cfg->run_dir : "";
    size_t end = strlen(run_dir);
    while (end > 1 && run_dir[end - 1] == '/') end--;
    size_t begin = end;
    while (begin > 0 && run_dir[begin - 1] != '/') begin--;
    h->run_id = strndup(run_dir + begin, end - begin);
    if (!h->run_id) maye_die("out of memory");
    h->model = xstrdup(cfg && cfg->model.path ? cfg->model.path : "");
    if (cfg) h->config_digest = maye_config_digest(cfg);
}

void maye_header_free(Maye__StreamHeader *h) {
    free(h->producer);
    free(h->run_id);
    free(h->model);
    maye__stream_header__init(h);
}

// Checks what every stream's header must hold. `name` names the stream.
static int check_header(const Maye__StreamHeader *h, const char *name) {
    if (h->schema_version != MAYE_SCHEMA_VERSION)
        return maye_fail("stream '%s': record 0: schema version %u, this build reads %d (re-create the stream with "
                         "this version of maye-c, or use the maye-c that wrote it)",
                         name, h->schema_version, MAYE_SCHEMA_VERSION);
    if (!kind_of(h->kind))
        return maye_fail("stream '%s': record 0: the header names record kind %d, which is not one of Query, "
                         "Rollout, Trajectory, WeightSync, Metrics", name, (int)h->kind);
    return 0;
}

// ----------------------------------------------------------------------------
// writing

struct maye_writer {
    char *name;      // as given; "-" = stdout
    char *path;      // atomic: the final path (NULL otherwise)
    char *tmp_path;  // atomic: the file being written
    int fd;
    int owns_fd;
    int tee_fd;       // a copy of every byte written (opts->tee_path), -1 when none
    char *tee_path;
    int mask_sigpipe; // SIGPIPE is not ignored by the process: block it around write(2)
    int failed;
    const ProtobufCMessageDescriptor *desc;
    ZSTD_CCtx *cctx;
    maye_buf rec;    // the record being written: varint length + packed message
    uint8_t *out;    // (out_cap) compressed bytes not yet written out
    size_t out_cap, out_len;
    int64_t count, bytes;
    double wait_s;   // time in write(2): a full pipe means the consumer is behind
    double total_s;  // time inside write / flush (wait included)
};

static int write_all_timed(maye_writer *w, const uint8_t *p, size_t n);

static int write_all(maye_writer *w, const uint8_t *p, size_t n) {
    double t0 = maye_now();
    int rc = write_all_timed(w, p, n);
    w->wait_s += maye_now() - t0;
    return rc;
}

static int write_all_timed(maye_writer *w, const uint8_t *p, size_t n) {
    sigset_t pipe_set, old;
    int was_pending = 0;
    if (w->mask_sigpipe) {
        sigset_t pending;
        sigemptyset(&pipe_set);
        sigaddset(&pipe_set, SIGPIPE);
        sigpending(&pending);
        was_pending = sigismember(&pending, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    }
    int err = 0;
    while (n) {
        ssize_t k = write(w->fd, p, n);
        if (k > 0) {
            p += k;
            n -= (size_t)k;
            w->bytes += k;
        } else if (k < 0 && errno == EINTR) {
            continue;
        } else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {.fd = w->fd, .events = POLLOUT};
            poll(&pfd, 1, -1);
        } else {
            err = k < 0 ? errno : EIO;
            break;
        }
    }
    if (w->mask_sigpipe) {
        if (err == EPIPE && !was_pending) {
            struct timespec zero = {0, 0};
            sigtimedwait(&pipe_set, NULL, &zero);
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    if (!err) return 0;
    w->failed = 1;
    if (err == EPIPE)
        return maye_fail("stream '%s': cannot write: the reading end of the pipe is closed (did the next stage exit? "
                         "its own error message says why)", w->name);
    return maye_fail("stream '%s': cannot write: %s", w->name, strerror(err));
}

static int drain(maye_writer *w) {
    if (!w->out_len) return 0;
    TRY(write_all(w, w->out, w->out_len));
    for (size_t done = 0; w->tee_fd >= 0 && done < w->out_len;) {
        ssize_t k = write(w->tee_fd, w->out + done, w->out_len - done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            w->failed = 1;
            return maye_fail("stream '%s': cannot write its copy '%s': %s", w->name, w->tee_path, strerror(errno));
        }
        done += (size_t)k;
    }
    w->out_len = 0;
    return 0;
}

// Feeds n bytes to zstd with `mode`; with ZSTD_e_flush / ZSTD_e_end everything is written out on return.
static int compress(maye_writer *w, const void *src, size_t n, ZSTD_EndDirective mode) {
    ZSTD_inBuffer in = {src, n, 0};
    for (;;) {
        ZSTD_outBuffer out = {w->out, w->out_cap, w->out_len};
        size_t left = ZSTD_compressStream2(w->cctx, &out, &in, mode);
        w->out_len = out.pos;
        if (ZSTD_isError(left)) {
            w->failed = 1;
            return maye_fail("stream '%s': zstd compression failed: %s", w->name, ZSTD_getErrorName(left));
        }
        if (w->out_len == w->out_cap) TRY(drain(w));
        if (mode == ZSTD_e_continue ? in.pos == in.size : left == 0) break;
    }
    return mode == ZSTD_e_continue ? 0 : drain(w);
}

static int zstd_level(const maye_writer_opts *opts, int *level) {
    *level = MAYE_ZSTD_LEVEL_DEFAULT;
    const char *env = getenv("MAYE_ZSTD_LEVEL");
    if (opts && opts->level) {
        *level = opts->level;
    } else if (env && *env) {
        int64_t v;
        if (maye_parse_i64(env, &v, "MAYE_ZSTD_LEVEL") < 0) return -1;
        *level = (int)(v < INT_MIN ? INT_MIN : v > INT_MAX ? INT_MAX : v);
    }
    if (*level < ZSTD_minCLevel() || *level > ZSTD_maxCLevel() || *level == 0)
        return maye_fail("zstd level %d is out of range: use 1..%d (or a negative level down to %d for speed)", *level,
                         ZSTD_maxCLevel(), ZSTD_minCLevel());
    return 0;
}

// Packs one message (record `index`) into `rec` and hands it to zstd.
static int put(maye_writer *w, const ProtobufCMessage *msg, int64_t index) {
    size_t n = protobuf_c_message_get_packed_size(msg);
    if (n > MAYE_RECORD_MAX_BYTES)
        return maye_fail("stream '%s': record %lld: %zu bytes, more than the %zu-byte limit of a record", w->name,
                         (long long)index, n, MAYE_RECORD_MAX_BYTES);
    maye_buf_clear(&w->rec);
    maye_buf_reserve(&w->rec, n + 10);
    uint8_t *p = (uint8_t *)w->rec.data;
    size_t k = 0;
    for (size_t v = n;; v >>= 7) {
        p[k++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
        if (v < 0x80) break;
    }
    size_t packed = protobuf_c_message_pack(msg, p + k);
    ASSERT(packed == n);
    w->rec.len = k + n;
    return compress(w, p, k + n, ZSTD_e_continue);
}

static int writer_start(maye_writer *w, const Maye__StreamHeader *h, const maye_writer_opts *opts) {
    TRY(check_header(h, w->name));
    w->desc = maye_record_descriptor(h->kind);
    int level;
    TRY(zstd_level(opts, &level));
    struct sigaction sa;
    w->mask_sigpipe = sigaction(SIGPIPE, NULL, &sa) != 0 || sa.sa_handler != SIG_IGN;
    w->cctx = ZSTD_createCCtx();
    if (!w->cctx) maye_die("out of memory creating a zstd context");
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
    w->out_cap = ZSTD_CStreamOutSize();
    w->out = xmalloc(w->out_cap);
    if (opts && opts->tee_path && opts->tee_path[0]) {
        w->tee_path = xstrdup(opts->tee_path);
        w->tee_fd = open(w->tee_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (w->tee_fd < 0) return maye_fail("cannot create '%s' (a copy of stream '%s'): %s", w->tee_path, w->name,
                                            strerror(errno));
    }
    TRY(put(w, &h->base, 0));
    return compress(w, NULL, 0, ZSTD_e_flush); // a reader can check the header before the first record
}

static maye_writer *writer_new(const char *name) {
    maye_writer *w = xcalloc(1, sizeof *w);
    w->name = xstrdup(name);
    w->fd = -1;
    w->tee_fd = -1;
    return w;
}

int maye_writer_open(maye_writer **out, const char *path, const Maye__StreamHeader *h, const maye_writer_opts *opts) {
    *out = NULL;
    if (!strcmp(path, "-")) return maye_writer_open_fd(out, STDOUT_FILENO, "-", h, opts);
    maye_writer *w = writer_new(path);
    struct stat st;
    int exists = stat(path, &st) == 0;
    const char *target = path;
    if (opts && opts->atomic && (!exists || S_ISREG(st.st_mode))) {
        maye_buf tmp = {0};
        maye_buf_printf(&tmp, "%s.tmp.%d", path, (int)getpid());
        w->tmp_path = tmp.data;
        w->path = xstrdup(path);
        target = w->tmp_path;
    }
    w->fd = open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        maye_fail("cannot create stream '%s': %s", path, strerror(errno));
        free(w->tmp_path);
        w->tmp_path = NULL;
        maye_writer_abort(w);
        return -1;
    }
    w->owns_fd = 1;
    if (writer_start(w, h, opts) < 0) {
        maye_writer_abort(w);
        return -1;
    }
    *out = w;
    return 0;
}

int maye_writer_open_fd(maye_writer **out, int fd, const char *name, const Maye__StreamHeader *h,
                        const maye_writer_opts *opts) {
    *out = NULL;
    maye_writer *w = writer_new(name);
    w->fd = fd;
    if (writer_start(w, h, opts) < 0) {
        maye_writer_abort(w);
        return -1;
    }
    *out = w;
    return 0;
}

int maye_writer_write(maye_writer *w, const ProtobufCMessage *msg) {
    if (w->failed) return maye_fail("stream '%s': cannot write after an earlier error", w->name);
    if (msg->descriptor != w->desc)
        return maye_fail("stream '%s': record %lld: cannot write a %s message into a stream of %s records", w->name,
                         (long long)w->count + 1, msg->descriptor->short_name, w->desc->short_name);
    double t0 = maye_now();
    int rc = put(w, msg, w->count + 1);
    w->total_s += maye_now() - t0;
    TRY(rc);
    w->count++;
    return 0;
}

double maye_writer_busy_seconds(const maye_writer *w) { return w->total_s - w->wait_s; }
double maye_writer_wait_seconds(const maye_writer *w) { return w->wait_s; }

int maye_writer_flush(maye_writer *w) {
    if (w->failed) return maye_fail("stream '%s': cannot write after an earlier error", w->name);
    double t0 = maye_now();
    int rc = compress(w, NULL, 0, ZSTD_e_flush);
    w->total_s += maye_now() - t0;
    return rc;
}

int64_t maye_writer_count(const maye_writer *w) { return w->count; }
int64_t maye_writer_bytes(const maye_writer *w) { return w->bytes; }

static void writer_free(maye_writer *w) {
    ZSTD_freeCCtx(w->cctx);
    maye_buf_free(&w->rec);
    free(w->out);
    free(w->name);
    free(w->path);
    free(w->tmp_path);
    free(w);
}

static void close_tee(maye_writer *w) {
    if (w->tee_fd >= 0) close(w->tee_fd);
    w->tee_fd = -1;
    free(w->tee_path);
    w->tee_path = NULL;
}

int maye_writer_close(maye_writer *w) {
    if (w->failed) {
        maye_fail("stream '%s': cannot finish the stream after an earlier error", w->name);
        maye_writer_abort(w);
        return -1;
    }
    if (compress(w, NULL, 0, ZSTD_e_end) < 0) {
        maye_writer_abort(w);
        return -1;
    }
    int rc = 0;
    if (w->tee_fd >= 0 && fsync(w->tee_fd) != 0 && errno != EINVAL)
        rc = maye_fail("stream '%s': cannot sync its copy '%s': %s", w->name, w->tee_path, strerror(errno));
    close_tee(w);
    if (w->owns_fd) {
        if (close(w->fd) != 0) rc = maye_fail("stream '%s': cannot write: %s", w->name, strerror(errno));
        w->owns_fd = 0;
    }
    if (rc == 0 && w->tmp_path) {
        rc = maye_commit_file(w->tmp_path, w->path);
        if (rc == 0) {
            free(w->tmp_path);
            w->tmp_path = NULL;
        }
    }
    if (rc < 0) {
        maye_writer_abort(w);
        return -1;
    }
    writer_free(w);
    return 0;
}

void maye_writer_abort(maye_writer *w) {
    if (!w) return;
    close_tee(w); // the copy stays, without an end mark: readers report it truncated, like the stream
    if (w->owns_fd) close(w->fd);
    if (w->tmp_path) unlink(w->tmp_path);
    writer_free(w);
}

// ----------------------------------------------------------------------------
// reading

struct maye_reader {
    char *name;
    int fd;               // -1 when reading from memory
    int owns_fd;
    ZSTD_DCtx *dctx;
    const uint8_t *in;    // compressed bytes: in_store, or the caller's memory
    uint8_t *in_store;    // (in_cap) what read(2) returned
    size_t in_cap, in_pos, in_len;
    uint8_t *buf;         // (buf_cap) decompressed bytes; [buf_start, buf_end) not yet returned
    size_t buf_cap, buf_start, buf_end;
    int out_full;         // the decoder filled its output: it may hold more
    int frame_done;       // the decoder reached the end of the frame
    int failed;
    int64_t next_index;   // index of the next record (0 = the header)
    int64_t bytes_in;     // compressed bytes received so far
    double wait_s;        // time blocked in read(2), waiting for the producer
    double total_s;       // time inside maye_reader_next (wait included)
    size_t max_record;
    Maye__StreamHeader *header;
    const ProtobufCMessageDescriptor *desc;
};

static int read_fail(maye_reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int read_fail(maye_reader *r, const char *fmt, ...) {
    char what[MAYE_ERRMSG_MAX / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    r->failed = 1;
    return maye_fail("stream '%s': record %lld: %s", r->name, (long long)r->next_index, what);
}

// Reads whatever has arrived (at least one byte, or 0 at end of input) into `in`.
static ssize_t read_some(maye_reader *r) {
    if (r->fd < 0) return 0;
    double t0 = maye_now();
    for (;;) {
        ssize_t k = read(r->fd, r->in_store, r->in_cap);
        r->wait_s += maye_now() - t0;
        t0 = maye_now();
        if (k >= 0) {
            r->in = r->in_store;
            r->in_pos = 0;
            r->in_len = (size_t)k;
            r->bytes_in += k;
            return k;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
            poll(&pfd, 1, -1);
            continue;
        }
        return read_fail(r, "read error: %s", strerror(errno));
    }
}

// Makes room for one decoder output chunk after buf_end, moving pending bytes to the front first.
static void make_room(maye_reader *r) {
    size_t chunk = ZSTD_DStreamOutSize();
    if (r->buf_cap - r->buf_end >= chunk) return;
    size_t pending = r->buf_end - r->buf_start;
    if (r->buf_start) {
        memmove(r->buf, r->buf + r->buf_start, pending);
        r->buf_start = 0;
        r->buf_end = pending;
    }
    if (r->buf_cap - r->buf_end >= chunk) return;
    size_t need = pending + chunk, cap = r->buf_cap;
    size_t limit = r->max_record + 16 + chunk;
    while (cap < need) cap = cap > limit / 2 ? need : cap * 2;
    r->buf = xrealloc(r->buf, cap);
    r->buf_cap = cap;
}

static int decode_some(maye_reader *r) {
    make_room(r);
    ZSTD_inBuffer in = {r->in, r->in_len, r->in_pos};
    ZSTD_outBuffer out = {r->buf + r->buf_end, r->buf_cap - r->buf_end, 0};
    size_t ret = ZSTD_decompressStream(r->dctx, &out, &in);
    if (ZSTD_isError(ret)) {
        if (r->next_index == 0 && r->buf_end == 0 && ZSTD_getErrorCode(ret) == ZSTD_error_prefix_unknown)
            return read_fail(r, "not a record stream: it does not start with a zstd frame (records are written by "
                                "the maye stages, or by `maye cat --to-records` from JSON lines)");
        return read_fail(r, "corrupt stream: zstd says '%s'", ZSTD_getErrorName(ret));
    }
    r->in_pos = in.pos;
    r->buf_end += out.pos;
    r->out_full = out.pos == out.size;
    if (ret == 0) {
        r->frame_done = 1;
        r->out_full = 0;
    }
    return 0;
}

// Finds the next complete record: returns 1 with its bytes in [*rec, *rec + *len), 0 at the clean end.
static int next_bytes(maye_reader *r, const uint8_t **rec, size_t *len) {
    for (;;) {
        const uint8_t *p = r->buf + r->buf_start;
        size_t avail = r->buf_end - r->buf_start, k = 0;
        uint64_t n = 0;
        int have_len = 0;
        for (; k < avail && k < 10; k++) {
            n |= (uint64_t)(p[k] & 0x7f) << (7 * k);
            if (!(p[k] & 0x80)) {
                have_len = 1;
                k++;
                break;
            }
        }
        if (!have_len && k == 10) return read_fail(r, "corrupt stream: invalid length prefix");
        if (have_len && (n > r->max_record || (k == 10 && p[9] > 1)))
            return read_fail(r, "corrupt stream: the length prefix says %llu bytes, more than the %zu-byte limit of a "
                                "record", (unsigned long long)n, r->max_record);
        if (have_len && avail - k >= n) {
            *rec = p + k;
            *len = (size_t)n;
            r->buf_start += k + (size_t)n;
            return 1;
        }
        if (r->frame_done) {
            if (avail) return read_fail(r, "corrupt stream: the stream's end mark comes inside a record");
            if (r->in_pos == r->in_len) {
                ssize_t got = read_some(r);
                if (got < 0) return -1;
                if (got == 0) return 0;
            }
            return read_fail(r, "unexpected data after the end of the stream (two streams concatenated?)");
        }
        if (r->in_pos < r->in_len || r->out_full) {
            TRY(decode_some(r));
            continue;
        }
        ssize_t got = read_some(r);
        if (got < 0) return -1;
        if (got > 0) continue;
        if (r->bytes_in == 0)
            return read_fail(r, "the stream is empty (did the producer fail before writing anything?)");
        if (avail) return read_fail(r, "truncated: the stream ended inside a record (did the producer crash?)");
        return read_fail(r, "truncated: the stream ended without its end mark (did the producer crash?)");
    }
}

static maye_reader *reader_new(const char *name) {
    maye_reader *r = xcalloc(1, sizeof *r);
    r->name = xstrdup(name);
    r->fd = -1;
    r->max_record = MAYE_RECORD_MAX_BYTES;
    r->buf_cap = ZSTD_DStreamOutSize();
    r->buf = xmalloc(r->buf_cap);
    r->dctx = ZSTD_createDCtx();
    if (!r->dctx) maye_die("out of memory creating a zstd context");
    return r;
}

static int reader_start(maye_reader *r, Maye__RecordKind expect) {
    const uint8_t *rec;
    size_t len;
    int rc = next_bytes(r, &rec, &len);
    if (rc < 0) return -1;
    if (rc == 0) return read_fail(r, "the stream holds no header (an empty zstd frame)");
    r->header = maye__stream_header__unpack(NULL, len, rec);
    if (!r->header) return read_fail(r, "cannot decode the stream header (%zu bytes): not a record stream, or corrupt",
                                     len);
    if (check_header(r->header, r->name) < 0) return r->failed = 1, -1;
    if (expect != MAYE__RECORD_KIND__RECORD_KIND_UNSPECIFIED && r->header->kind != expect)
        return read_fail(r, "expected a %s stream, got %s (producer '%s')", maye_record_kind_name(expect),
                         maye_record_kind_name(r->header->kind), r->header->producer);
    r->desc = maye_record_descriptor(r->header->kind);
    r->next_index = 1;
    return 0;
}

static int reader_finish_open(maye_reader **out, maye_reader *r, Maye__RecordKind expect) {
    if (reader_start(r, expect) < 0) {
        maye_reader_close(r);
        return -1;
    }
    *out = r;
    return 0;
}

int maye_reader_open(maye_reader **out, const char *path, Maye__RecordKind expect) {
    *out = NULL;
    if (!strcmp(path, "-")) return maye_reader_open_fd(out, STDIN_FILENO, "-", expect);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return maye_fail("cannot open stream '%s': %s", path, strerror(errno));
    maye_reader *r = reader_new(path);
    r->fd = fd;
    r->owns_fd = 1;
    r->in_cap = ZSTD_DStreamInSize();
    r->in_store = xmalloc(r->in_cap);
    return reader_finish_open(out, r, expect);
}

int maye_reader_open_fd(maye_reader **out, int fd, const char *name, Maye__RecordKind expect) {
    *out = NULL;
    maye_reader *r = reader_new(name);
    r->fd = fd;
    r->in_cap = ZSTD_DStreamInSize();
    r->in_store = xmalloc(r->in_cap);
    return reader_finish_open(out, r, expect);
}

int maye_reader_open_mem(maye_reader **out, const void *data, size_t len, const char *name, Maye__RecordKind expect) {
    *out = NULL;
    maye_reader *r = reader_new(name);
    r->in = data;
    r->in_len = len;
    r->bytes_in = (int64_t)len;
    return reader_finish_open(out, r, expect);
}

void maye_reader_set_max_record(maye_reader *r, size_t max_bytes) { r->max_record = max_bytes; }

static int reader_next(maye_reader *r, ProtobufCMessage **msg, int64_t *index);

int maye_reader_next(maye_reader *r, ProtobufCMessage **msg, int64_t *index) {
    double t0 = maye_now();
    int rc = reader_next(r, msg, index);
    r->total_s += maye_now() - t0;
    return rc;
}

double maye_reader_busy_seconds(const maye_reader *r) { return r->total_s - r->wait_s; }
double maye_reader_wait_seconds(const maye_reader *r) { return r->wait_s; }

static int reader_next(maye_reader *r, ProtobufCMessage **msg, int64_t *index) {
    *msg = NULL;
    if (r->failed) return maye_fail("stream '%s': cannot read on after an earlier error", r->name);
    const uint8_t *rec;
    size_t len;
    int rc = next_bytes(r, &rec, &len);
    if (rc <= 0) return rc;
    *msg = protobuf_c_message_unpack(r->desc, NULL, len, rec);
    if (!*msg)
        return read_fail(r, "cannot decode a %s record of %zu bytes: the stream is corrupt",
                         maye_record_kind_name(r->header->kind), len);
    if (index) *index = r->next_index;
    r->next_index++;
    return 1;
}

const Maye__StreamHeader *maye_reader_header(const maye_reader *r) { return r->header; }
Maye__RecordKind maye_reader_kind(const maye_reader *r) { return r->header->kind; }
const char *maye_reader_name(const maye_reader *r) { return r->name; }

int maye_reader_check_tokenizer(const maye_reader *r, int64_t vocab_size, uint64_t tokenizer_digest) {
    const Maye__StreamHeader *h = r->header;
    if (vocab_size && h->vocab_size && vocab_size != h->vocab_size)
        return maye_fail("stream '%s': its token ids come from a vocabulary of %lld tokens (producer '%s'), this "
                         "stage loaded one of %lld: use the same tokenizer in every stage",
                         r->name, (long long)h->vocab_size, h->producer, (long long)vocab_size);
    if (tokenizer_digest && h->tokenizer_digest && tokenizer_digest != h->tokenizer_digest)
        return maye_fail("stream '%s': its token ids come from tokenizer 0x%016llx (producer '%s'), this stage "
                         "loaded tokenizer 0x%016llx: use the same tokenizer in every stage",
                         r->name, (unsigned long long)h->tokenizer_digest, h->producer,
                         (unsigned long long)tokenizer_digest);
    return 0;
}

int maye_reader_check_model_vocab(const maye_reader *r, int64_t model_vocab) {
    const Maye__StreamHeader *h = r->header;
    if (model_vocab && h->vocab_size > model_vocab)
        return maye_fail("stream '%s': its token ids come from a vocabulary of %lld tokens (producer '%s'), more "
                         "than the %lld rows of this model's embeddings: the stream was made for another model",
                         r->name, (long long)h->vocab_size, h->producer, (long long)model_vocab);
    return 0;
}

void maye_reader_close(maye_reader *r) {
    if (!r) return;
    if (r->owns_fd) close(r->fd);
    if (r->header) maye__stream_header__free_unpacked(r->header, NULL);
    ZSTD_freeDCtx(r->dctx);
    free(r->in_store);
    free(r->buf);
    free(r->name);
    free(r);
}

// ----------------------------------------------------------------------------
// tensors

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    [MAYE__DTYPE__DTYPE_UNSPECIFIED] = {"?", 0}, [MAYE__DTYPE__F32] = {"F32", 4}, [MAYE__DTYPE__F16] = {"F16", 2},
    [MAYE__DTYPE__BF16] = {"BF16", 2},           [MAYE__DTYPE__I64] = {"I64", 8}, [MAYE__DTYPE__I32] = {"I32", 4},
    [MAYE__DTYPE__U8] = {"U8", 1},
};
#define MAYE_TENSOR_MAX_DIMS 8

const char *maye_tensor_dtype_name(Maye__DType dtype) {
    return (int)dtype > 0 && (size_t)dtype < sizeof dtypes / sizeof *dtypes ? dtypes[dtype].name : "?";
}

size_t maye_tensor_dtype_size(Maye__DType dtype) {
    return (int)dtype > 0 && (size_t)dtype < sizeof dtypes / sizeof *dtypes ? dtypes[dtype].size : 0;
}

static int64_t shape_numel(size_t ndim, const int64_t *shape) {
    int64_t n = 1;
    for (size_t i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] && n > INT64_MAX / shape[i])) return -1;
        n *= shape[i];
    }
    return n;
}

int64_t maye_tensor_numel(const Maye__Tensor *t) { return shape_numel(t->n_shape, t->shape); }

static void format_shape(char *s, size_t cap, size_t ndim, const int64_t *shape) {
    size_t n = (size_t)snprintf(s, cap, "[");
    for (size_t i = 0; i < ndim && n < cap; i++) {
        if (shape[i] == -1) n += (size_t)snprintf(s + n, cap - n, "%s?", i ? ", " : "");
        else n += (size_t)snprintf(s + n, cap - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    }
    if (n < cap) snprintf(s + n, cap - n, "]");
}

// Validates a shape for a new tensor and returns its byte size in *nbytes.
static int new_tensor_size(Maye__DType dtype, int ndim, const int64_t *shape, size_t *nbytes) {
    size_t esize = maye_tensor_dtype_size(dtype);
    CHECK_OR_FAIL(esize, "tensor: unknown dtype %d", (int)dtype);
    CHECK_OR_FAIL(ndim >= 0 && ndim <= MAYE_TENSOR_MAX_DIMS, "tensor: %d dimensions, expected 0..%d", ndim,
                  MAYE_TENSOR_MAX_DIMS);
    int64_t numel = shape_numel((size_t)ndim, shape);
    if (numel < 0 || (uint64_t)numel > SIZE_MAX / esize) {
        char s[256];
        format_shape(s, sizeof s, (size_t)ndim, shape);
        return maye_fail("tensor: invalid shape %s (negative or too large)", s);
    }
    *nbytes = (size_t)numel * esize;
    return 0;
}

int maye_tensor_set(Maye__Tensor *t, Maye__DType dtype, int ndim, const int64_t *shape, const void *data) {
    maye__tensor__init(t);
    size_t nbytes;
    TRY(new_tensor_size(dtype, ndim, shape, &nbytes));
    t->dtype = dtype;
    t->n_shape = (size_t)ndim;
    t->shape = xmalloc(sizeof(int64_t) * (size_t)ndim);
    if (ndim) memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
    t->data.len = nbytes;
    t->data.data = xmalloc(nbytes);
    if (nbytes) memcpy(t->data.data, data, nbytes);
    return 0;
}

int maye_tensor_set_f32(Maye__Tensor *t, int ndim, const int64_t *shape, const float *data) {
    return maye_tensor_set(t, MAYE__DTYPE__F32, ndim, shape, data);
}
int maye_tensor_set_i64(Maye__Tensor *t, int ndim, const int64_t *shape, const int64_t *data) {
    return maye_tensor_set(t, MAYE__DTYPE__I64, ndim, shape, data);
}
int maye_tensor_set_i32(Maye__Tensor *t, int ndim, const int64_t *shape, const int32_t *data) {
    return maye_tensor_set(t, MAYE__DTYPE__I32, ndim, shape, data);
}
int maye_tensor_set_u8(Maye__Tensor *t, int ndim, const int64_t *shape, const uint8_t *data) {
    return maye_tensor_set(t, MAYE__DTYPE__U8, ndim, shape, data);
}

int maye_tensor_view(Maye__Tensor *t, Maye__DType dtype, int ndim, const int64_t *shape, const void *data) {
    maye__tensor__init(t);
    size_t nbytes;
    TRY(new_tensor_size(dtype, ndim, shape, &nbytes));
    t->dtype = dtype;
    t->n_shape = (size_t)ndim;
    t->shape = (int64_t *)shape;
    t->data.len = nbytes;
    t->data.data = (uint8_t *)data;
    return 0;
}

void maye_tensor_clear(Maye__Tensor *t) {
    free(t->shape);
    free(t->data.data);
    maye__tensor__init(t);
}

int maye_tensor_check(const Maye__Tensor *t, const char *what, Maye__DType dtype, int ndim, const int64_t *shape) {
    if (!t) return maye_fail("%s: missing tensor", what);
    char got[256], want[256];
    format_shape(got, sizeof got, t->n_shape, t->shape);
    if (t->dtype != dtype)
        return maye_fail("%s: dtype %s, expected %s", what, maye_tensor_dtype_name(t->dtype),
                         maye_tensor_dtype_name(dtype));
    if (ndim >= 0) {
        int ok = t->n_shape == (size_t)ndim;
        for (int i = 0; ok && shape && i < ndim; i++) ok = shape[i] == -1 || shape[i] == t->shape[i];
        if (!ok) {
            if (shape) format_shape(want, sizeof want, (size_t)ndim, shape);
            else snprintf(want, sizeof want, "%d dimensions", ndim);
            return maye_fail("%s: shape %s, expected %s", what, got, want);
        }
    }
    int64_t numel = maye_tensor_numel(t);
    size_t esize = maye_tensor_dtype_size(t->dtype);
    if (numel < 0) return maye_fail("%s: invalid shape %s", what, got);
    if ((uint64_t)numel > SIZE_MAX / esize || t->data.len != (size_t)numel * esize)
        return maye_fail("%s: %zu data bytes, but shape %s of %s needs %llu", what, t->data.len, got,
                         maye_tensor_dtype_name(t->dtype), (unsigned long long)numel * esize);
    return 0;
}

// Checks that t is one of `n_ok` dtypes with consistent data that fits in `cap` elements.
static int check_copy(const Maye__Tensor *t, const char *what, int64_t cap, int n_ok, const Maye__DType *ok,
                      int64_t *numel) {
    if (!t) return maye_fail("%s: missing tensor", what);
    int found = 0;
    for (int i = 0; i < n_ok; i++) found |= t->dtype == ok[i];
    if (!found) {
        char names[64] = "";
        for (int i = 0; i < n_ok; i++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? (i == n_ok - 1 ? " or " : ", ") : "",
                     maye_tensor_dtype_name(ok[i]));
        return maye_fail("%s: dtype %s, expected %s", what, maye_tensor_dtype_name(t->dtype), names);
    }
    TRY(maye_tensor_check(t, what, t->dtype, -1, NULL));
    *numel = maye_tensor_numel(t);
    if (*numel > cap) return maye_fail("%s: %lld elements, more than the %lld expected", what, (long long)*numel,
                                       (long long)cap);
    return 0;
}

int maye_tensor_to_f32(const Maye__Tensor *t, const char *what, float *out, int64_t cap) {
    const Maye__DType ok[] = {MAYE__DTYPE__F32, MAYE__DTYPE__BF16, MAYE__DTYPE__F16};
    int64_t n = 0;
    TRY(check_copy(t, what, cap, 3, ok, &n));
    const uint8_t *d = t->data.data;
    if (t->dtype == MAYE__DTYPE__F32) {
        memcpy(out, d, (size_t)n * 4);
        return 0;
    }
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, d + 2 * i, 2);
        out[i] = t->dtype == MAYE__DTYPE__BF16 ? maye_bf16_to_f32(h) : maye_f16_to_f32(h);
    }
    return 0;
}

int maye_tensor_to_i64(const Maye__Tensor *t, const char *what, int64_t *out, int64_t cap) {
    const Maye__DType ok[] = {MAYE__DTYPE__I64, MAYE__DTYPE__I32, MAYE__DTYPE__U8};
    int64_t n = 0;
    TRY(check_copy(t, what, cap, 3, ok, &n));
    const uint8_t *d = t->data.data;
    if (t->dtype == MAYE__DTYPE__I64) {
        memcpy(out, d, (size_t)n * 8);
    } else if (t->dtype == MAYE__DTYPE__I32) {
        for (int64_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, d + 4 * i, 4);
            out[i] = v;
        }
    } else {
        for (int64_t i = 0; i < n; i++) out[i] = d[i];
    }
    return 0;
}

int maye_tensor_to_i32(const Maye__Tensor *t, const char *what, int32_t *out, int64_t cap) {
    const Maye__DType ok[] = {MAYE__DTYPE__I32, MAYE__DTYPE__U8};
    int64_t n = 0;
    TRY(check_copy(t, what, cap, 2, ok, &n));
    const uint8_t *d = t->data.data;
    if (t->dtype == MAYE__DTYPE__I32) memcpy(out, d, (size_t)n * 4);
    else
        for (int64_t i = 0; i < n; i++) out[i] = d[i];
    return 0;
}

int maye_tensor_to_u8(const Maye__Tensor *t, const char *what, uint8_t *out, int64_t cap) {
    const Maye__DType ok[] = {MAYE__DTYPE__U8};
    int64_t n = 0;
    TRY(check_copy(t, what, cap, 1, ok, &n));
    if (n) memcpy(out, t->data.data, (size_t)n);
    return 0;
}
