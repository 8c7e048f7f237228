// Record streams: how the pipeline stages exchange Query, Rollout, Trajectory, WeightSync and Metrics
// records (DESIGN.md, "Records"). A stream is one zstd frame whose content is a sequence of
// varint-length-prefixed protobuf messages (the protobuf "delimited" convention); message 0 is a
// StreamHeader and every later message has the type the header's kind names.
//
// Record indices count from the header: the header is record 0, the first data record is record 1, so
// record N is line N+1 of `maye cat`. Every error names the stream, the record index and what was wrong.
//
// Writing: records are serialised whole in memory before any byte reaches the compressor, and
// maye_writer_flush pushes everything written so far through zstd and write(2) at once, so the reader at
// the other end of a pipe sees the records immediately. Reading uses read(2) and returns a record as soon
// as its bytes have arrived; it never waits for more input than the record needs (the stages exchange
// weight-sync handles in lock-step, so a reader that waited for a full buffer would deadlock them).
#pragma once
#include "core/config.h"
#include "schemas/maye.pb-c.h"

#include <stddef.h>
#include <stdint.h>

// Bumped when the meaning of an existing field changes; readers refuse streams of another version.
#define MAYE_SCHEMA_VERSION 1
// Largest record a reader accepts by default: a larger length prefix is a corrupt stream, not a request
// for a huge allocation.
#define MAYE_RECORD_MAX_BYTES ((size_t)1 << 30)
// Default zstd level; the environment variable MAYE_ZSTD_LEVEL overrides it.
#define MAYE_ZSTD_LEVEL_DEFAULT 1

// ----------------------------------------------------------------------------
// record kinds

// "Query", "Rollout", "Trajectory", "WeightSync", "Metrics"; "?" for anything else.
const char *maye_record_kind_name(Maye__RecordKind kind);
// "query", "rollout", "trajectory", "weight_sync", "metrics": the key of a record line in `maye cat`.
const char *maye_record_kind_key(Maye__RecordKind kind);
// The message type of a kind's records; NULL when `kind` is not a record kind.
const ProtobufCMessageDescriptor *maye_record_descriptor(Maye__RecordKind kind);
// Frees a record returned by maye_reader_next or maye_json_parse_record (NULL is fine).
void maye_record_free(ProtobufCMessage *msg);

// ----------------------------------------------------------------------------
// stream headers

// Fills a header for a stream of `kind` written by `program` (NULL = the name given to maye_log_init):
// schema version, producer "<program> <MAYE_VERSION>", and, when cfg is not NULL, the config digest,
// the run id (the last component of run_dir) and the model path. vocab_size and tokenizer_digest stay 0
// for the caller to set. The strings are owned by h: release them with maye_header_free.
void maye_header_init(Maye__StreamHeader *h, Maye__RecordKind kind, const char *program, const maye_config *cfg);
void maye_header_free(Maye__StreamHeader *h);

// ----------------------------------------------------------------------------
// writing

typedef struct maye_writer maye_writer;

typedef struct {
    int level;  // zstd level; 0 = $MAYE_ZSTD_LEVEL, else MAYE_ZSTD_LEVEL_DEFAULT
    int atomic; // regular files only: write PATH.tmp.PID and rename it to PATH on close, so a crashed
                // stage never leaves a saved stream that looks complete (ignored for "-", FIFOs, devices)
    const char *tee_path; // also write every byte to this file (a saved copy of a piped stream), or NULL
} maye_writer_opts;

// Opens a stream on `path` ("-" = stdout) and writes and flushes the header. opts may be NULL (defaults). The header
// must name a record kind and carry MAYE_SCHEMA_VERSION.
int maye_writer_open(maye_writer **out, const char *path, const Maye__StreamHeader *h, const maye_writer_opts *opts);
// Same on an open file descriptor, which stays open after close; `name` names it in messages.
int maye_writer_open_fd(maye_writer **out, int fd, const char *name, const Maye__StreamHeader *h,
                        const maye_writer_opts *opts);
// Appends one record; its type must be the one the header's kind names. Nothing reaches the reader until
// the next flush (or close). After any error the writer only accepts maye_writer_abort.
int maye_writer_write(maye_writer *w, const ProtobufCMessage *msg);
// Makes everything written so far readable downstream at once: call it at record-batch boundaries.
// A reader that has gone away (EPIPE) is an error, never a SIGPIPE death.
int maye_writer_flush(maye_writer *w);
// Ends the zstd frame (what marks the stream complete), writes it out, closes what open() opened, renames
// the temporary file into place when atomic, and frees w (also on error).
int maye_writer_close(maye_writer *w);
// Stops without ending the frame (readers will report the stream as truncated), removes an atomic
// temporary file, frees w. NULL is fine.
void maye_writer_abort(maye_writer *w);
// Time accounting: busy = encoding and compressing (write(2) excluded), wait = inside write(2) (a full pipe
// means the consumer is behind). Seconds since the writer opened.
double maye_writer_busy_seconds(const maye_writer *w);
double maye_writer_wait_seconds(const maye_writer *w);
// Records written so far, the header excluded.
int64_t maye_writer_count(const maye_writer *w);
// Compressed bytes written out so far.
int64_t maye_writer_bytes(const maye_writer *w);

// ----------------------------------------------------------------------------
// reading

typedef struct maye_reader maye_reader;

// Opens a stream on `path` ("-" = stdin), reads its header and checks the schema version and the kind:
// `expect` is the kind required, or MAYE__RECORD_KIND__RECORD_KIND_UNSPECIFIED for any kind.
int maye_reader_open(maye_reader **out, const char *path, Maye__RecordKind expect);
// Same on an open file descriptor, which stays open after close; `name` names it in messages.
int maye_reader_open_fd(maye_reader **out, int fd, const char *name, Maye__RecordKind expect);
// Same on bytes in memory (not copied: they must outlive the reader).
int maye_reader_open_mem(maye_reader **out, const void *data, size_t len, const char *name, Maye__RecordKind expect);
// Lowers or raises the largest record accepted (default MAYE_RECORD_MAX_BYTES).
void maye_reader_set_max_record(maye_reader *r, size_t max_bytes);
// Reads the next record: returns 1 and sets *msg (a message of the stream's type; free it with
// maye_record_free) and *index (may be NULL); 0 at the clean end of the stream; -1 on error (truncated or
// corrupt stream, trailing data, I/O error; the message names the stream and the record index).
int maye_reader_next(maye_reader *r, ProtobufCMessage **msg, int64_t *index);
// Time accounting: busy = decompressing and decoding, wait = blocked in read(2) waiting for the producer.
double maye_reader_busy_seconds(const maye_reader *r);
double maye_reader_wait_seconds(const maye_reader *r);
const Maye__StreamHeader *maye_reader_header(const maye_reader *r);
Maye__RecordKind maye_reader_kind(const maye_reader *r);
const char *maye_reader_name(const maye_reader *r);
// Checks that the stream's token ids belong to the tokenizer the caller loaded. A zero on either side
// (stream or caller) means "not tied to a tokenizer" and is not compared.
int maye_reader_check_tokenizer(const maye_reader *r, int64_t vocab_size, uint64_t tokenizer_digest);
// Checks that the stream's token ids fit a model whose embedding table has model_vocab rows (checkpoints
// often pad the table beyond the tokenizer's vocabulary, so this is <=, not ==).
int maye_reader_check_model_vocab(const maye_reader *r, int64_t model_vocab);
void maye_reader_close(maye_reader *r);

// ----------------------------------------------------------------------------
// tensors
//
// Tensor{dtype, shape, data} holds dense little-endian data. The setters copy shape and data into
// storage owned by t (release with maye_tensor_clear); maye_tensor_view borrows them instead (no copy;
// they must outlive every use of t, e.g. until maye_writer_write returns).

int maye_tensor_set(Maye__Tensor *t, Maye__DType dtype, int ndim, const int64_t *shape, const void *data);
int maye_tensor_set_f32(Maye__Tensor *t, int ndim, const int64_t *shape, const float *data);
int maye_tensor_set_i64(Maye__Tensor *t, int ndim, const int64_t *shape, const int64_t *data);
int maye_tensor_set_i32(Maye__Tensor *t, int ndim, const int64_t *shape, const int32_t *data);
int maye_tensor_set_u8(Maye__Tensor *t, int ndim, const int64_t *shape, const uint8_t *data);
int maye_tensor_view(Maye__Tensor *t, Maye__DType dtype, int ndim, const int64_t *shape, const void *data);
void maye_tensor_clear(Maye__Tensor *t);

// "F32", "BF16", ...; "?" for an unknown dtype. Element size in bytes (0 when unknown).
const char *maye_tensor_dtype_name(Maye__DType dtype);
size_t maye_tensor_dtype_size(Maye__DType dtype);
// Elements the shape describes; -1 when a dimension is negative or the product overflows.
int64_t maye_tensor_numel(const Maye__Tensor *t);
// Checks a received tensor: dtype, rank `ndim` and shape (entries of -1, or shape == NULL, match any size;
// ndim < 0 matches any rank) and a data length of exactly numel * element size. `what` names the tensor in
// the message ("query.images[0].rgb"). t == NULL is an error ("missing").
int maye_tensor_check(const Maye__Tensor *t, const char *what, Maye__DType dtype, int ndim, const int64_t *shape);
// Copies a checked tensor's elements into out (room for `cap` elements). to_f32 accepts F32, BF16 and F16;
// to_i64 accepts I64, I32 and U8; to_i32 accepts I32 and U8; to_u8 accepts U8.
int maye_tensor_to_f32(const Maye__Tensor *t, const char *what, float *out, int64_t cap);
int maye_tensor_to_i64(const Maye__Tensor *t, const char *what, int64_t *out, int64_t cap);
int maye_tensor_to_i32(const Maye__Tensor *t, const char *what, int32_t *out, int64_t cap);
int maye_tensor_to_u8(const Maye__Tensor *t, const char *what, uint8_t *out, int64_t cap);
