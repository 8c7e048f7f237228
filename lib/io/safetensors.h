// Safetensors files: memory-mapped reading (single files and sharded checkpoints through
// model.safetensors.index.json) and atomic writing. A truncated or inconsistent file is an error that
// names the file and the tensor.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef enum {
    MAYE_F32,
    MAYE_F16,
    MAYE_BF16,
    MAYE_F64,
    MAYE_I64,
    MAYE_I32,
    MAYE_I16,
    MAYE_I8,
    MAYE_U8,
    MAYE_BOOL,
    MAYE_NDTYPES
} maye_dtype;

#define MAYE_MAX_DIMS 8

const char *maye_dtype_name(maye_dtype t); // "F32", "BF16", ... (the safetensors spelling)
size_t maye_dtype_size(maye_dtype t);
int maye_dtype_from_name(const char *name, maye_dtype *out);

typedef struct {
    char *name;
    maye_dtype dtype;
    int ndim;
    int64_t shape[MAYE_MAX_DIMS];
    int64_t numel;
    const void *data; // points into the mapped file
    size_t nbytes;
    int shard;        // index into the file list
} maye_st_tensor;

typedef struct {
    int ntensors;
    maye_st_tensor *tensors; // sorted by name
    int nfiles;
    char **paths;            // (nfiles) the files mapped
    void **maps;             // (nfiles)
    size_t *map_sizes;       // (nfiles)
    char *metadata_json;     // "__metadata__" of the first file as JSON text, or NULL
} maye_safetensors;

// Opens a .safetensors file, a model.safetensors.index.json, or a directory holding either.
int maye_st_open(maye_safetensors *st, const char *path);
void maye_st_close(maye_safetensors *st);
const maye_st_tensor *maye_st_find(const maye_safetensors *st, const char *name);
// Converts a tensor of any float or integer dtype to f32 into out (numel floats).
void maye_st_to_f32(const maye_st_tensor *t, float *out);
// Converts an integer tensor to int64 into out (numel values); float tensors are an error.
int maye_st_to_i64(const maye_st_tensor *t, int64_t *out);
// Finds `name` and checks dtype class and shape; shape entries of -1 match anything. On mismatch returns -1
// with a message naming the file, the tensor and both shapes.
int maye_st_expect(const maye_safetensors *st, const char *name, int ndim, const int64_t *shape,
                   const maye_st_tensor **out);

// ----------------------------------------------------------------------------
// writing

typedef struct {
    char *name;
    maye_dtype dtype;
    int ndim;
    int64_t shape[MAYE_MAX_DIMS];
    const void *data;     // borrowed until save (or owned, see below)
    void *owned;          // data copy freed by maye_st_writer_free
    size_t nbytes;
} maye_st_entry;

typedef struct {
    int n, cap;
    maye_st_entry *entries;
    int nmeta;
    char **meta_keys, **meta_vals;
} maye_st_writer;

void maye_st_writer_init(maye_st_writer *w);
// Adds a tensor whose data the caller keeps alive until maye_st_writer_save (no copy).
void maye_st_writer_add(maye_st_writer *w, const char *name, maye_dtype dtype, int ndim, const int64_t *shape,
                        const void *data);
// Adds a tensor from f32 data converted to `dtype` (F32, BF16 or F16); the converted copy is owned.
void maye_st_writer_add_f32_as(maye_st_writer *w, const char *name, maye_dtype dtype, int ndim,
                               const int64_t *shape, const float *data);
void maye_st_writer_meta(maye_st_writer *w, const char *key, const char *value);
// Writes the file atomically (temp file, fsync, rename). Tensors are stored sorted by name.
int maye_st_writer_save(maye_st_writer *w, const char *path);
void maye_st_writer_free(maye_st_writer *w);
