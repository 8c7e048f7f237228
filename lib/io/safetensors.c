// Safetensors reading (mmap, sharded index) and writing (see safetensors.h).
// Format: u64 LE header length N, N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, ...,
// "__metadata__": {str: str}}, then the data region; offsets are relative to the data region.
#include "io/safetensors.h"

#include "core/error.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

// ----------------------------------------------------------------------------
// dtypes

static const char *dtype_names[MAYE_NDTYPES] = {"F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL"};
static const size_t dtype_sizes[MAYE_NDTYPES] = {4, 2, 2, 8, 8, 4, 2, 1, 1, 1};

const char *maye_dtype_name(maye_dtype t) { return (unsigned)t < MAYE_NDTYPES ? dtype_names[t] : "?"; }
size_t maye_dtype_size(maye_dtype t) { return (unsigned)t < MAYE_NDTYPES ? dtype_sizes[t] : 0; }

int maye_dtype_from_name(const char *name, maye_dtype *out) {
    for (int i = 0; i < MAYE_NDTYPES; i++)
        if (!strcmp(name, dtype_names[i])) return *out = (maye_dtype)i, 0;
    return -1;
}

// ----------------------------------------------------------------------------
// reading one file

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const maye_st_tensor *)a)->name, ((const maye_st_tensor *)b)->name);
}

typedef struct {
    size_t begin, end;
    const char *name;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

// Parses the header of a mapped file and appends its tensors to st (shard index `shard`).
static int parse_file(maye_safetensors *st, int shard, const char *path, const unsigned char *map, size_t size) {
    if (size < 8) return maye_fail("'%s' is not a safetensors file: %zu bytes, too short for a header", path, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | map[i];
    if (hlen > size - 8)
        return maye_fail("'%s' is truncated or not a safetensors file: header length %llu exceeds the file size "
                         "%zu", path, (unsigned long long)hlen, size);
    if (hlen > 100u * 1024 * 1024) return maye_fail("'%s': header of %llu bytes is implausibly large", path,
                                                    (unsigned long long)hlen);
    cJSON *root = cJSON_ParseWithLength((const char *)map + 8, (size_t)hlen);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return maye_fail("'%s': the header is not a valid JSON object", path);
    }
    const unsigned char *data = map + 8 + hlen;
    size_t data_size = size - 8 - (size_t)hlen;
    int count = 0;
    for (cJSON *it = root->child; it; it = it->next) count++;
    span *spans = xmalloc(sizeof(span) * (size_t)(count ? count : 1));
    int nspans = 0, rc = 0;
    st->tensors = xrealloc(st->tensors, sizeof(maye_st_tensor) * (size_t)(st->ntensors + count));
    for (cJSON *it = root->child; it && rc == 0; it = it->next) {
        if (!strcmp(it->string, "__metadata__")) {
            if (!st->metadata_json) st->metadata_json = cJSON_PrintUnformatted(it);
            continue;
        }
        cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
        cJSON *shape = cJSON_GetObjectItemCaseSensitive(it, "shape");
        cJSON *offs = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
        maye_st_tensor t = {0};
        if (!cJSON_IsString(dt) || maye_dtype_from_name(dt->valuestring, &t.dtype) < 0) {
            rc = maye_fail("'%s': tensor '%s': missing or unsupported dtype", path, it->string);
            break;
        }
        if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) > MAYE_MAX_DIMS) {
            rc = maye_fail("'%s': tensor '%s': missing shape or more than %d dimensions", path, it->string,
                           MAYE_MAX_DIMS);
            break;
        }
        t.ndim = cJSON_GetArraySize(shape);
        t.numel = 1;
        for (int d = 0; d < t.ndim; d++) {
            cJSON *s = cJSON_GetArrayItem(shape, d);
            if (!cJSON_IsNumber(s) || s->valuedouble < 0 || s->valuedouble > 1e15 ||
                s->valuedouble != (double)(int64_t)s->valuedouble) {
                rc = maye_fail("'%s': tensor '%s': bad shape entry %d", path, it->string, d);
                break;
            }
            t.shape[d] = (int64_t)s->valuedouble;
            if (t.shape[d] && t.numel > INT64_MAX / 16 / t.shape[d]) {
                rc = maye_fail("'%s': tensor '%s': shape too large", path, it->string);
                break;
            }
            t.numel *= t.shape[d];
        }
        if (rc) break;
        if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !cJSON_IsNumber(offs->child) ||
            !cJSON_IsNumber(offs->child->next)) {
            rc = maye_fail("'%s': tensor '%s': missing data_offsets", path, it->string);
            break;
        }
        double b = offs->child->valuedouble, e = offs->child->next->valuedouble;
        size_t want = (size_t)t.numel * dtype_sizes[t.dtype];
        if (b < 0 || e < b || e > (double)data_size) {
            rc = maye_fail("'%s' is truncated or inconsistent: tensor '%s' spans bytes [%.0f, %.0f) of a %zu-byte "
                           "data region", path, it->string, b, e, data_size);
            break;
        }
        if ((size_t)(e - b) != want) {
            rc = maye_fail("'%s': tensor '%s': %s shape needs %zu bytes but data_offsets give %.0f", path,
                           it->string, dtype_names[t.dtype], want, e - b);
            break;
        }
        t.name = xstrdup(it->string);
        t.data = data + (size_t)b;
        t.nbytes = want;
        t.shard = shard;
        spans[nspans++] = (span){(size_t)b, (size_t)e, t.name};
        st->tensors[st->ntensors++] = t;
    }
    if (rc == 0) {
        qsort(spans, (size_t)nspans, sizeof(span), cmp_span);
        for (int i = 1; i < nspans; i++)
            if (spans[i].begin < spans[i - 1].end && spans[i].end > spans[i].begin) {
                rc = maye_fail("'%s': tensors '%s' and '%s' overlap in the data region", path, spans[i - 1].name,
                               spans[i].name);
                break;
            }
    }
    free(spans);
    cJSON_Delete(root);
    return rc;
}

static int map_file(maye_safetensors *st, const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return maye_fail("cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return maye_fail("cannot stat '%s': %s", path, strerror(errno));
    }
    size_t size = (size_t)sb.st_size;
    void *map = NULL;
    if (size > 0) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            close(fd);
            return maye_fail("cannot map '%s': %s", path, strerror(errno));
        }
    }
    close(fd);
    int k = st->nfiles++;
    st->paths = xrealloc(st->paths, sizeof(char *) * (size_t)st->nfiles);
    st->maps = xrealloc(st->maps, sizeof(void *) * (size_t)st->nfiles);
    st->map_sizes = xrealloc(st->map_sizes, sizeof(size_t) * (size_t)st->nfiles);
    st->paths[k] = xstrdup(path);
    st->maps[k] = map;
    st->map_sizes[k] = size;
    return parse_file(st, k, path, map, size);
}

// ----------------------------------------------------------------------------
// sharded index

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int open_index(maye_safetensors *st, const char *index_path) {
    maye_buf text = {0};
    if (maye_read_file(index_path, &text) < 0) return -1;
    cJSON *root = cJSON_Parse(text.data);
    maye_buf_free(&text);
    cJSON *wm = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!cJSON_IsObject(wm)) {
        cJSON_Delete(root);
        return maye_fail("'%s': not a safetensors index (no \"weight_map\" object)", index_path);
    }
    // distinct shard names, in sorted order
    int n = 0;
    char **names = NULL;
    for (cJSON *it = wm->child; it; it = it->next) {
        if (!cJSON_IsString(it)) {
            cJSON_Delete(root);
            free(names);
            return maye_fail("'%s': weight_map entry '%s' is not a file name", index_path, it->string);
        }
        names = xrealloc(names, sizeof(char *) * (size_t)(n + 1));
        names[n++] = it->valuestring;
    }
    qsort(names, (size_t)n, sizeof(char *), cmp_str);
    char *dir = maye_dirname(index_path);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        if (i && !strcmp(names[i], names[i - 1])) continue;
        if (strchr(names[i], '/') || !strcmp(names[i], "..")) {
            rc = maye_fail("'%s': shard name '%s' must be a plain file name", index_path, names[i]);
            break;
        }
        char *p = maye_path_join(dir, names[i]);
        rc = map_file(st, p);
        free(p);
    }
    // every tensor the index names must be in the shard it names
    if (rc == 0) {
        qsort(st->tensors, (size_t)st->ntensors, sizeof(maye_st_tensor), cmp_tensor_name);
        for (cJSON *it = wm->child; it && rc == 0; it = it->next) {
            const maye_st_tensor *t = maye_st_find(st, it->string);
            if (!t) {
                rc = maye_fail("'%s' lists tensor '%s' in '%s', but that file does not contain it", index_path,
                               it->string, it->valuestring);
            }
        }
    }
    free(dir);
    free(names);
    cJSON_Delete(root);
    return rc;
}

// ----------------------------------------------------------------------------
// open / close / find

int maye_st_open(maye_safetensors *st, const char *path) {
    memset(st, 0, sizeof *st);
    int rc;
    if (maye_is_dir(path)) {
        char *single = maye_path_join(path, "model.safetensors");
        char *index = maye_path_join(path, "model.safetensors.index.json");
        if (maye_file_exists(single)) rc = map_file(st, single);
        else if (maye_file_exists(index)) rc = open_index(st, index);
        else rc = maye_fail("'%s' holds neither model.safetensors nor model.safetensors.index.json", path);
        free(single);
        free(index);
    } else {
        size_t n = strlen(path);
        if (n > 5 && !strcmp(path + n - 5, ".json")) rc = open_index(st, path);
        else rc = map_file(st, path);
    }
    if (rc == 0) {
        qsort(st->tensors, (size_t)st->ntensors, sizeof(maye_st_tensor), cmp_tensor_name);
        for (int i = 1; i < st->ntensors; i++)
            if (!strcmp(st->tensors[i].name, st->tensors[i - 1].name)) {
                rc = maye_fail("'%s': tensor '%s' appears twice", path, st->tensors[i].name);
                break;
            }
    }
    if (rc < 0) maye_st_close(st);
    return rc;
}

void maye_st_close(maye_safetensors *st) {
    for (int i = 0; i < st->ntensors; i++) free(st->tensors[i].name);
    for (int i = 0; i < st->nfiles; i++) {
        if (st->maps[i]) munmap(st->maps[i], st->map_sizes[i]);
        free(st->paths[i]);
    }
    free(st->tensors);
    free(st->paths);
    free(st->maps);
    free(st->map_sizes);
    free(st->metadata_json);
    memset(st, 0, sizeof *st);
}

const maye_st_tensor *maye_st_find(const maye_safetensors *st, const char *name) {
    int lo = 0, hi = st->ntensors - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(st->tensors[mid].name, name);
        if (c == 0) return &st->tensors[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

void maye_st_to_f32(const maye_st_tensor *t, float *out) {
    const unsigned char *p = t->data;
    int64_t n = t->numel;
    switch (t->dtype) {
    case MAYE_F32: memcpy(out, p, (size_t)n * 4); break;
    case MAYE_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = maye_f16_to_f32(h);
        }
        break;
    case MAYE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = maye_bf16_to_f32(h);
        }
        break;
    case MAYE_F64:
        for (int64_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            out[i] = (float)d;
        }
        break;
    case MAYE_I64:
        for (int64_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, p + 8 * i, 8);
            out[i] = (float)v;
        }
        break;
    case MAYE_I32:
        for (int64_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, p + 4 * i, 4);
            out[i] = (float)v;
        }
        break;
    case MAYE_I16:
        for (int64_t i = 0; i < n; i++) {
            int16_t v;
            memcpy(&v, p + 2 * i, 2);
            out[i] = (float)v;
        }
        break;
    case MAYE_I8:
        for (int64_t i = 0; i < n; i++) out[i] = (float)(int8_t)p[i];
        break;
    case MAYE_U8:
    case MAYE_BOOL:
        for (int64_t i = 0; i < n; i++) out[i] = (float)p[i];
        break;
    default: maye_die("bad dtype %d", (int)t->dtype);
    }
}

int maye_st_to_i64(const maye_st_tensor *t, int64_t *out) {
    const unsigned char *p = t->data;
    int64_t n = t->numel;
    switch (t->dtype) {
    case MAYE_I64: memcpy(out, p, (size_t)n * 8); return 0;
    case MAYE_I32:
        for (int64_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, p + 4 * i, 4);
            out[i] = v;
        }
        return 0;
    case MAYE_I16:
        for (int64_t i = 0; i < n; i++) {
            int16_t v;
            memcpy(&v, p + 2 * i, 2);
            out[i] = v;
        }
        return 0;
    case MAYE_I8:
        for (int64_t i = 0; i < n; i++) out[i] = (int8_t)p[i];
        return 0;
    case MAYE_U8:
    case MAYE_BOOL:
        for (int64_t i = 0; i < n; i++) out[i] = p[i];
        return 0;
    default: return maye_fail("tensor '%s' is %s, expected an integer dtype", t->name, dtype_names[t->dtype]);
    }
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && k < n; d++) k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

int maye_st_expect(const maye_safetensors *st, const char *name, int ndim, const int64_t *shape,
                   const maye_st_tensor **out) {
    const maye_st_tensor *t = maye_st_find(st, name);
    const char *file = st->nfiles ? st->paths[0] : "?";
    if (!t) return maye_fail("'%s': missing tensor '%s'", file, name);
    file = st->paths[t->shard];
    int ok = t->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++)
        if (shape[d] >= 0 && shape[d] != t->shape[d]) ok = 0;
    if (!ok) {
        char want[128], got[128];
        shape_str(want, sizeof want, ndim, shape);
        shape_str(got, sizeof got, t->ndim, t->shape);
        return maye_fail("'%s': tensor '%s' has shape %s, expected %s", file, name, got, want);
    }
    if (out) *out = t;
    return 0;
}

// ----------------------------------------------------------------------------
// writing

void maye_st_writer_init(maye_st_writer *w) { memset(w, 0, sizeof *w); }

static maye_st_entry *writer_push(maye_st_writer *w, const char *name, maye_dtype dtype, int ndim,
                                  const int64_t *shape) {
    if (ndim > MAYE_MAX_DIMS) maye_die("tensor '%s': %d dimensions", name, ndim);
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->entries = xrealloc(w->entries, sizeof(maye_st_entry) * (size_t)w->cap);
    }
    maye_st_entry *e = &w->entries[w->n++];
    memset(e, 0, sizeof *e);
    e->name = xstrdup(name);
    e->dtype = dtype;
    e->ndim = ndim;
    size_t numel = 1;
    for (int d = 0; d < ndim; d++) e->shape[d] = shape[d], numel *= (size_t)shape[d];
    e->nbytes = numel * dtype_sizes[dtype];
    return e;
}

void maye_st_writer_add(maye_st_writer *w, const char *name, maye_dtype dtype, int ndim, const int64_t *shape,
                        const void *data) {
    writer_push(w, name, dtype, ndim, shape)->data = data;
}

void maye_st_writer_add_f32_as(maye_st_writer *w, const char *name, maye_dtype dtype, int ndim,
                               const int64_t *shape, const float *data) {
    maye_st_entry *e = writer_push(w, name, dtype, ndim, shape);
    size_t numel = e->nbytes / dtype_sizes[dtype];
    if (dtype == MAYE_F32) {
        e->data = data;
        return;
    }
    uint16_t *h = xmalloc(numel * 2);
    for (size_t i = 0; i < numel; i++)
        h[i] = dtype == MAYE_BF16 ? maye_f32_to_bf16(data[i]) : maye_f32_to_f16(data[i]);
    if (dtype != MAYE_BF16 && dtype != MAYE_F16) maye_die("tensor '%s': cannot convert f32 to %s", name, dtype_names[dtype]);
    e->owned = h;
    e->data = h;
}

void maye_st_writer_meta(maye_st_writer *w, const char *key, const char *value) {
    w->meta_keys = xrealloc(w->meta_keys, sizeof(char *) * (size_t)(w->nmeta + 1));
    w->meta_vals = xrealloc(w->meta_vals, sizeof(char *) * (size_t)(w->nmeta + 1));
    w->meta_keys[w->nmeta] = xstrdup(key);
    w->meta_vals[w->nmeta] = xstrdup(value);
    w->nmeta++;
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const maye_st_entry *)a)->name, ((const maye_st_entry *)b)->name);
}

int maye_st_writer_save(maye_st_writer *w, const char *path) {
    qsort(w->entries, (size_t)w->n, sizeof(maye_st_entry), cmp_entry);
    for (int i = 1; i < w->n; i++)
        if (!strcmp(w->entries[i].name, w->entries[i - 1].name))
            return maye_fail("writing '%s': tensor '%s' added twice", path, w->entries[i].name);
    cJSON *root = cJSON_CreateObject();
    if (w->nmeta) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; i < w->nmeta; i++) cJSON_AddStringToObject(meta, w->meta_keys[i], w->meta_vals[i]);
    }
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        maye_st_entry *e = &w->entries[i];
        cJSON *t = cJSON_AddObjectToObject(root, e->name);
        cJSON_AddStringToObject(t, "dtype", dtype_names[e->dtype]);
        cJSON *shape = cJSON_AddArrayToObject(t, "shape");
        for (int d = 0; d < e->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)e->shape[d]));
        cJSON *offs = cJSON_AddArrayToObject(t, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + e->nbytes)));
        off += e->nbytes;
    }
    char *header = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    size_t hlen = strlen(header);
    size_t padded = (hlen + 7) / 8 * 8; // pad with spaces so the data region is 8-byte aligned
    maye_buf tmp = {0};
    maye_buf_printf(&tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp.data, "wb");
    int rc = 0;
    if (!f) {
        rc = maye_fail("cannot create '%s': %s", tmp.data, strerror(errno));
    } else {
        unsigned char len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
        int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(header, 1, hlen, f) == hlen;
        for (size_t i = hlen; ok && i < padded; i++) ok = fputc(' ', f) != EOF;
        for (int i = 0; ok && i < w->n; i++)
            ok = w->entries[i].nbytes == 0 || fwrite(w->entries[i].data, 1, w->entries[i].nbytes, f) == w->entries[i].nbytes;
        if (fclose(f) != 0) ok = 0;
        if (!ok) rc = maye_fail("cannot write '%s': %s", tmp.data, strerror(errno));
        if (rc == 0) rc = maye_commit_file(tmp.data, path);
        if (rc < 0) unlink(tmp.data);
    }
    free(header);
    maye_buf_free(&tmp);
    return rc;
}

void maye_st_writer_free(maye_st_writer *w) {
    for (int i = 0; i < w->n; i++) {
        free(w->entries[i].name);
        free(w->entries[i].owned);
    }
    for (int i = 0; i < w->nmeta; i++) {
        free(w->meta_keys[i]);
        free(w->meta_vals[i]);
    }
    free(w->entries);
    free(w->meta_keys);
    free(w->meta_vals);
    memset(w, 0, sizeof *w);
}
