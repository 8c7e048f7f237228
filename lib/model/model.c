// Model weights: the size table built from the config, one fp32 allocation carved from it, loading from
// safetensors (upcasting BF16/F16, both tensor naming schemes, pages of the file mapping released as soon as
// a tensor is copied so the peak stays near the weights' size), random initialisation and saving in the hub
// layout. Dimension letters as in model.h.
#include "model/model.h"

#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PARAM_ALIGN 16 // floats: every tensor starts on a 64-byte boundary

// ----------------------------------------------------------------------------
// size table

static void add_param(maye_model *m, maye_param_group g, maye_param_init init, size_t field, int count,
                      const char *hub, int ndim, ...) {
    ASSERT(m->n_specs < MAYE_MAX_PARAMS);
    maye_param *p = &m->specs[m->n_specs++];
    memset(p, 0, sizeof *p);
    snprintf(p->hub, sizeof p->hub, "%s", hub);
    p->group = g, p->init = init, p->field = field, p->count = count, p->ndim = ndim;
    va_list ap;
    va_start(ap, ndim);
    p->numel = 1;
    for (int d = 0; d < ndim; d++) {
        p->shape[d] = va_arg(ap, int64_t);
        p->numel *= (size_t)p->shape[d];
    }
    va_end(ap);
}

#define I64(x) ((int64_t)(x))
#define W(f) offsetof(maye_weights, f)

static void build_specs(maye_model *m) {
    const maye_model_config *c = &m->cfg;
    int q25 = c->arch == MAYE_ARCH_QWEN2_5_VL;
    int VL = c->vision.depth, VC = c->vision.width, VI = c->vision.intermediate, MVC = c->vision.merge *
        c->vision.merge * VC;
    int L = c->layers, C = c->hidden, KVD = c->kv_heads * c->head_dim, HD = c->heads * c->head_dim;
    m->n_specs = 0;
    const maye_param_group VG = MAYE_PARAM_VISION, MG = MAYE_PARAM_MERGER, LG = MAYE_PARAM_LLM;
    const maye_param_init N = MAYE_INIT_NORMAL, ONE = MAYE_INIT_ONES, ZERO = MAYE_INIT_ZEROS;

    add_param(m, VG, N, W(patch_embed), 1, "visual.patch_embed.proj.weight", 5, I64(VC), I64(c->vision.in_chans),
              I64(c->vision.temporal_patch), I64(c->vision.patch), I64(c->vision.patch));
    add_param(m, VG, ONE, W(v_norm1_w), VL, "visual.blocks.%d.norm1.weight", 1, I64(VC));
    if (!q25) add_param(m, VG, ZERO, W(v_norm1_b), VL, "visual.blocks.%d.norm1.bias", 1, I64(VC));
    add_param(m, VG, N, W(v_qkv_w), VL, "visual.blocks.%d.attn.qkv.weight", 2, I64(3 * VC), I64(VC));
    add_param(m, VG, ZERO, W(v_qkv_b), VL, "visual.blocks.%d.attn.qkv.bias", 1, I64(3 * VC));
    add_param(m, VG, N, W(v_proj_w), VL, "visual.blocks.%d.attn.proj.weight", 2, I64(VC), I64(VC));
    add_param(m, VG, ZERO, W(v_proj_b), VL, "visual.blocks.%d.attn.proj.bias", 1, I64(VC));
    add_param(m, VG, ONE, W(v_norm2_w), VL, "visual.blocks.%d.norm2.weight", 1, I64(VC));
    if (!q25) add_param(m, VG, ZERO, W(v_norm2_b), VL, "visual.blocks.%d.norm2.bias", 1, I64(VC));
    if (q25) {
        add_param(m, VG, N, W(v_fc1_w), VL, "visual.blocks.%d.mlp.gate_proj.weight", 2, I64(VI), I64(VC));
        add_param(m, VG, ZERO, W(v_fc1_b), VL, "visual.blocks.%d.mlp.gate_proj.bias", 1, I64(VI));
        add_param(m, VG, N, W(v_up_w), VL, "visual.blocks.%d.mlp.up_proj.weight", 2, I64(VI), I64(VC));
        add_param(m, VG, ZERO, W(v_up_b), VL, "visual.blocks.%d.mlp.up_proj.bias", 1, I64(VI));
        add_param(m, VG, N, W(v_fc2_w), VL, "visual.blocks.%d.mlp.down_proj.weight", 2, I64(VC), I64(VI));
        add_param(m, VG, ZERO, W(v_fc2_b), VL, "visual.blocks.%d.mlp.down_proj.bias", 1, I64(VC));
    } else {
        add_param(m, VG, N, W(v_fc1_w), VL, "visual.blocks.%d.mlp.fc1.weight", 2, I64(VI), I64(VC));
        add_param(m, VG, ZERO, W(v_fc1_b), VL, "visual.blocks.%d.mlp.fc1.bias", 1, I64(VI));
        add_param(m, VG, N, W(v_fc2_w), VL, "visual.blocks.%d.mlp.fc2.weight", 2, I64(VC), I64(VI));
        add_param(m, VG, ZERO, W(v_fc2_b), VL, "visual.blocks.%d.mlp.fc2.bias", 1, I64(VC));
    }

    add_param(m, MG, ONE, W(m_norm_w), 1, "visual.merger.ln_q.weight", 1, I64(VC));
    if (!q25) add_param(m, MG, ZERO, W(m_norm_b), 1, "visual.merger.ln_q.bias", 1, I64(VC));
    add_param(m, MG, N, W(m_fc1_w), 1, "visual.merger.mlp.0.weight", 2, I64(MVC), I64(MVC));
    add_param(m, MG, ZERO, W(m_fc1_b), 1, "visual.merger.mlp.0.bias", 1, I64(MVC));
    add_param(m, MG, N, W(m_fc2_w), 1, "visual.merger.mlp.2.weight", 2, I64(C), I64(MVC));
    add_param(m, MG, ZERO, W(m_fc2_b), 1, "visual.merger.mlp.2.bias", 1, I64(C));

    add_param(m, LG, N, W(embed), 1, "model.embed_tokens.weight", 2, I64(c->vocab), I64(C));
    add_param(m, LG, ONE, W(ln1_w), L, "model.layers.%d.input_layernorm.weight", 1, I64(C));
    add_param(m, LG, N, W(q_w), L, "model.layers.%d.self_attn.q_proj.weight", 2, I64(HD), I64(C));
    add_param(m, LG, ZERO, W(q_b), L, "model.layers.%d.self_attn.q_proj.bias", 1, I64(HD));
    add_param(m, LG, N, W(k_w), L, "model.layers.%d.self_attn.k_proj.weight", 2, I64(KVD), I64(C));
    add_param(m, LG, ZERO, W(k_b), L, "model.layers.%d.self_attn.k_proj.bias", 1, I64(KVD));
    add_param(m, LG, N, W(v_w), L, "model.layers.%d.self_attn.v_proj.weight", 2, I64(KVD), I64(C));
    add_param(m, LG, ZERO, W(v_b), L, "model.layers.%d.self_attn.v_proj.bias", 1, I64(KVD));
    add_param(m, LG, N, W(o_w), L, "model.layers.%d.self_attn.o_proj.weight", 2, I64(C), I64(HD));
    add_param(m, LG, ONE, W(ln2_w), L, "model.layers.%d.post_attention_layernorm.weight", 1, I64(C));
    add_param(m, LG, N, W(gate_w), L, "model.layers.%d.mlp.gate_proj.weight", 2, I64(c->intermediate), I64(C));
    add_param(m, LG, N, W(up_w), L, "model.layers.%d.mlp.up_proj.weight", 2, I64(c->intermediate), I64(C));
    add_param(m, LG, N, W(down_w), L, "model.layers.%d.mlp.down_proj.weight", 2, I64(C), I64(c->intermediate));
    add_param(m, LG, ONE, W(norm_w), 1, "model.norm.weight", 1, I64(C));
    if (!c->tie_embeddings) add_param(m, LG, N, W(lm_head), 1, "lm_head.weight", 2, I64(c->vocab), I64(C));
}

// Lays the table out in one allocation and points the weight fields at it.
static int allocate_params(maye_model *m, const char *where) {
    size_t off = 0;
    for (int i = 0; i < m->n_specs; i++) {
        maye_param *p = &m->specs[i];
        p->offset = off;
        off += ((size_t)p->count * p->numel + PARAM_ALIGN - 1) / PARAM_ALIGN * PARAM_ALIGN;
    }
    m->n_params = off;
    void *mem = NULL;
    if (posix_memalign(&mem, 64, (off ? off : 1) * sizeof(float)) != 0)
        return maye_fail("%s: cannot allocate %.2f GB for the model's weights", where, off * 4.0 / 1e9);
    m->params = mem;
    for (int i = 0; i < m->n_specs; i++) {
        const maye_param *p = &m->specs[i];
        *(float **)((char *)&m->w + p->field) = m->params + p->offset;
        size_t end = p->offset + (size_t)p->count * p->numel, next = i + 1 < m->n_specs ? m->specs[i + 1].offset : off;
        memset(m->params + end, 0, sizeof(float) * (next - end)); // alignment padding
    }
    if (m->cfg.tie_embeddings) m->w.lm_head = m->w.embed;
    return 0;
}

static int setup(maye_model *m, const char *json, const char *where) {
    memset(m, 0, sizeof *m);
    if (maye_model_config_parse(&m->cfg, json, where) < 0) return -1;
    m->config_json = xstrdup(json);
    build_specs(m);
    if (allocate_params(m, where) < 0) {
        maye_model_free(m);
        return -1;
    }
    return 0;
}

size_t maye_model_group_range(const maye_model *m, maye_param_group g, size_t *offset) {
    size_t begin = m->n_params, end = 0;
    for (int i = 0; i < m->n_specs; i++) {
        const maye_param *p = &m->specs[i];
        if (p->group != g) continue;
        if (p->offset < begin) begin = p->offset;
        size_t e = p->offset + (size_t)p->count * p->numel;
        if (e > end) end = e;
    }
    if (end == 0) begin = end = 0;
    if (offset) *offset = begin;
    return end - begin;
}

void maye_model_free(maye_model *m) {
    free(m->params);
    free(m->config_json);
    memset(m, 0, sizeof *m);
}

// ----------------------------------------------------------------------------
// loading

// The name of copy `idx` of a table row in the checkpoint's naming scheme.
static void tensor_name(char *out, size_t n, const char *hub, int idx, int newer_visual, int newer_llm) {
    char base[128];
    snprintf(base, sizeof base, hub, idx);
    if (newer_visual && !strncmp(base, "visual.", 7)) snprintf(out, n, "model.%s", base);
    else if (newer_llm && !strncmp(base, "model.", 6)) snprintf(out, n, "model.language_model.%s", base + 6);
    else snprintf(out, n, "%s", base);
}

#define LOAD_CHUNK (4 << 20) // values converted between releases of the file pages behind them

// Drops the mapped file pages of [p, p + n) once copied (they are re-read if touched again), so the peak
// memory of a load stays near the weights' size instead of weights + file.
static void release_pages(const void *p, size_t n) {
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t b = (uintptr_t)p & ~(page - 1), e = ((uintptr_t)p + n + page - 1) & ~(page - 1);
    if (e > b) madvise((void *)b, e - b, MADV_DONTNEED);
}

// Converts a tensor to fp32 in chunks, releasing each chunk's file pages as it goes.
static void copy_tensor(const maye_st_tensor *t, float *dst) {
    size_t es = maye_dtype_size(t->dtype);
    for (int64_t i = 0; i < t->numel; i += LOAD_CHUNK) {
        maye_st_tensor part = *t;
        part.numel = t->numel - i < LOAD_CHUNK ? t->numel - i : LOAD_CHUNK;
        part.data = (const unsigned char *)t->data + (size_t)i * es;
        part.nbytes = (size_t)part.numel * es;
        maye_st_to_f32(&part, dst + i);
        release_pages(part.data, part.nbytes);
    }
}

static int load_tensors(maye_model *m, const maye_safetensors *st, const char *dir) {
    int newer_visual = !maye_st_find(st, "visual.patch_embed.proj.weight") &&
                       maye_st_find(st, "model.visual.patch_embed.proj.weight");
    int newer_llm = !maye_st_find(st, "model.embed_tokens.weight") &&
                    maye_st_find(st, "model.language_model.embed_tokens.weight");
    for (int i = 0; i < m->n_specs; i++) {
        const maye_param *p = &m->specs[i];
        for (int c = 0; c < p->count; c++) {
            char name[160];
            tensor_name(name, sizeof name, p->hub, c, newer_visual, newer_llm);
            const maye_st_tensor *t;
            if (maye_st_expect(st, name, p->ndim, p->shape, &t) < 0) {
                if (!strcmp(p->hub, "lm_head.weight") && !maye_st_find(st, name))
                    return maye_fail("%s: tensor 'lm_head.weight' is missing and config.json says "
                                     "tie_word_embeddings: false (set it to true if the head shares the "
                                     "embeddings)", dir);
                return maye_fail_ctx("checkpoint %s", dir);
            }
            if (t->dtype != MAYE_F32 && t->dtype != MAYE_BF16 && t->dtype != MAYE_F16 && t->dtype != MAYE_F64)
                return maye_fail("'%s': tensor '%s' is %s; weights must be F32, BF16 or F16", st->paths[t->shard],
                                 name, maye_dtype_name(t->dtype));
            copy_tensor(t, m->params + p->offset + (size_t)c * p->numel);
        }
    }
    return 0;
}

int maye_model_load(maye_model *m, const char *dir) {
    char *cfg_path = maye_path_join(dir, "config.json");
    maye_buf text = {0};
    int rc = maye_read_file(cfg_path, &text);
    if (rc == 0) rc = setup(m, text.data, cfg_path);
    maye_buf_free(&text);
    free(cfg_path);
    if (rc < 0) return -1;
    maye_safetensors st;
    if (maye_st_open(&st, dir) < 0) {
        maye_model_free(m);
        return -1;
    }
    rc = load_tensors(m, &st, dir);
    maye_st_close(&st);
    // a maye checkpoint saved in bf16 keeps its trained weights exactly beside it (checkpoint.c)
    char *master = maye_path_join(dir, "master.safetensors");
    if (rc == 0 && maye_file_exists(master)) rc = maye_model_load_overlay(m, master);
    free(master);
    if (rc < 0) maye_model_free(m);
    return rc;
}

// ----------------------------------------------------------------------------
// random initialisation

#define INIT_CHUNK 4096 // values per random stream, so the fill is parallel and thread-count independent

// Fills n values with normal(0, std) from stream `stream` (Box-Muller on Philox words).
static void fill_normal(float *x, size_t n, uint64_t seed, uint64_t stream, float std) {
    maye_rng r;
    maye_rng_init(&r, seed, stream);
    for (size_t i = 0; i < n; i += 2) {
        float u1 = ((float)(maye_rng_u32(&r) >> 8) + 1.0f) * (1.0f / 16777216.0f);
        float u2 = (float)(maye_rng_u32(&r) >> 8) * (1.0f / 16777216.0f);
        float rad = sqrtf(-2.0f * logf(u1)), a = 6.2831853071795865f * u2;
        x[i] = std * rad * cosf(a);
        if (i + 1 < n) x[i + 1] = std * rad * sinf(a);
    }
}

int maye_model_init(maye_model *m, const char *config_json, const char *where, uint64_t seed) {
    TRY(setup(m, config_json, where));
    float std = m->cfg.initializer_range;
    for (int i = 0; i < m->n_specs; i++) {
        const maye_param *p = &m->specs[i];
        float *base = m->params + p->offset;
        size_t n = (size_t)p->count * p->numel;
        if (p->init != MAYE_INIT_NORMAL) {
            float v = p->init == MAYE_INIT_ONES ? 1.0f : 0.0f;
            for (size_t j = 0; j < n; j++) base[j] = v;
            continue;
        }
        uint64_t name_hash = maye_fnv1a(MAYE_FNV_INIT, p->hub, strlen(p->hub));
        int64_t chunks = (int64_t)((n + INIT_CHUNK - 1) / INIT_CHUNK);
#pragma omp parallel for schedule(static)
        for (int64_t k = 0; k < chunks; k++) {
            size_t b = (size_t)k * INIT_CHUNK, len = n - b < INIT_CHUNK ? n - b : INIT_CHUNK;
            fill_normal(base + b, len, seed, maye_stream_id(name_hash, (uint64_t)k, 0x696e6974), std);
        }
    }
    return 0;
}

// ----------------------------------------------------------------------------
// saving

static const char *torch_dtype_name(maye_dtype d) {
    return d == MAYE_BF16 ? "bfloat16" : d == MAYE_F16 ? "float16" : "float32";
}

int maye_model_save(const maye_model *m, const char *dir, maye_dtype dtype) {
    CHECK_OR_FAIL(dtype == MAYE_F32 || dtype == MAYE_BF16 || dtype == MAYE_F16,
                  "cannot save weights as %s (F32, BF16 or F16)", maye_dtype_name(dtype));
    TRY(maye_mkdir_p(dir));
    cJSON *root = cJSON_Parse(m->config_json);
    ASSERT(root);
    cJSON_DeleteItemFromObjectCaseSensitive(root, "torch_dtype");
    cJSON_AddStringToObject(root, "torch_dtype", torch_dtype_name(dtype));
    char *json = cJSON_Print(root);
    cJSON_Delete(root);
    char *cfg_path = maye_path_join(dir, "config.json");
    int rc = maye_write_file_atomic(cfg_path, json, strlen(json));
    free(cfg_path);
    free(json);
    TRY(rc);

    maye_st_writer w;
    maye_st_writer_init(&w);
    maye_st_writer_meta(&w, "format", "pt");
    for (int i = 0; i < m->n_specs; i++) {
        const maye_param *p = &m->specs[i];
        for (int c = 0; c < p->count; c++) {
            char name[160];
            tensor_name(name, sizeof name, p->hub, c, 0, 0);
            const float *data = m->params + p->offset + (size_t)c * p->numel;
            if (dtype == MAYE_F32) maye_st_writer_add(&w, name, MAYE_F32, p->ndim, p->shape, data);
            else maye_st_writer_add_f32_as(&w, name, dtype, p->ndim, p->shape, data);
        }
    }
    char *st_path = maye_path_join(dir, "model.safetensors");
    rc = maye_st_writer_save(&w, st_path);
    free(st_path);
    maye_st_writer_free(&w);
    return rc;
}

// ----------------------------------------------------------------------------
// partial weight files (weight sync, optimizer-free snapshots)

int maye_model_save_groups(const maye_model *m, const char *path, unsigned groups, maye_dtype dtype,
                           const char *const *meta_kv, int n_meta) {
    CHECK_OR_FAIL(dtype == MAYE_F32 || dtype == MAYE_BF16 || dtype == MAYE_F16,
                  "cannot save weights as %s (F32, BF16 or F16)", maye_dtype_name(dtype));
    maye_st_writer w;
    maye_st_writer_init(&w);
    maye_st_writer_meta(&w, "format", "pt");
    for (int i = 0; i + 1 < 2 * n_meta; i += 2) maye_st_writer_meta(&w, meta_kv[i], meta_kv[i + 1]);
    for (int i = 0; i < m->n_specs; i++) {
        const maye_param *p = &m->specs[i];
        if (!(groups & (1u << p->group))) continue;
        for (int c = 0; c < p->count; c++) {
            char name[160];
            tensor_name(name, sizeof name, p->hub, c, 0, 0);
            const float *data = m->params + p->offset + (size_t)c * p->numel;
            if (dtype == MAYE_F32) maye_st_writer_add(&w, name, MAYE_F32, p->ndim, p->shape, data);
            else maye_st_writer_add_f32_as(&w, name, dtype, p->ndim, p->shape, data);
        }
    }
    int rc = maye_st_writer_save(&w, path);
    maye_st_writer_free(&w);
    return rc;
}

int maye_model_load_overlay(maye_model *m, const char *path) {
    maye_safetensors st;
    TRY(maye_st_open(&st, path));
    int rc = 0, matched = 0;
    for (int i = 0; i < st.ntensors && rc == 0; i++) {
        const maye_st_tensor *t = &st.tensors[i];
        int found = 0;
        for (int s = 0; s < m->n_specs && !found; s++) {
            const maye_param *p = &m->specs[s];
            for (int c = 0; c < p->count && !found; c++) {
                char name[160];
                tensor_name(name, sizeof name, p->hub, c, 0, 0);
                if (strcmp(name, t->name)) continue;
                found = 1;
                if ((rc = maye_st_expect(&st, name, p->ndim, p->shape, NULL)) < 0) break;
                if (t->dtype != MAYE_F32 && t->dtype != MAYE_BF16 && t->dtype != MAYE_F16) {
                    rc = maye_fail("'%s': tensor '%s' is %s; weights must be F32, BF16 or F16", path, name,
                                   maye_dtype_name(t->dtype));
                    break;
                }
                maye_st_to_f32(t, m->params + p->offset + (size_t)c * p->numel);
            }
        }
        if (rc == 0 && !found) rc = maye_fail("'%s': tensor '%s' is not a weight of this model", path, t->name);
        matched += found;
    }
    if (rc == 0 && matched == 0) rc = maye_fail("'%s' holds no tensors", path);
    maye_st_close(&st);
    return rc;
}
