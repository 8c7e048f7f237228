// The GPU model's weights: the size table built from the config (the CPU tensors stacked per layer where one
// GEMM takes them together), one device allocation carved from it (plus, in bf16 mode, the fp32 norms),
// upload from a CPU model (through an fp32 staging buffer converted on the GPU), random initialisation on the
// GPU, download back into CPU tensors, and the model's stream and scratch. Dimension letters as in
// model/cuda/model.h.
#include "model/cuda/internal.cuh"

extern "C" {
#include "core/rng.h"
}

#include <stdlib.h>
#include <string.h>

#define GPU_ALIGN 128            // elements: every tensor starts on a 256-byte boundary (bf16) or 512 (fp32)
#define STAGE_FLOATS (16u << 20) // fp32 staging buffer for conversions (64 MiB)

// ----------------------------------------------------------------------------
// size table

#define CW(f) offsetof(cuda_weights, f)
#define MW(f) offsetof(maye_weights, f)

static void add(cuda_model *gm, size_t field, maye_param_group g, maye_param_init init, int count, int n_parts,
                size_t p0, size_t n0, size_t p1 = 0, size_t n1 = 0, size_t p2 = 0, size_t n2 = 0) {
    ASSERT(gm->n_specs < CUDA_MAX_PARAMS);
    cuda_param *p = &gm->specs[gm->n_specs++];
    memset(p, 0, sizeof *p);
    p->field = field, p->group = g, p->init = init, p->count = count, p->n_parts = n_parts;
    p->part[0] = p0, p->part[1] = p1, p->part[2] = p2;
    p->part_numel[0] = n0, p->part_numel[1] = n_parts > 1 ? n1 : 0, p->part_numel[2] = n_parts > 2 ? n2 : 0;
    p->numel = p->part_numel[0] + p->part_numel[1] + p->part_numel[2];
}

// A norm's weight or bias: a single vector of fp32 in every dtype.
static void add_norm(cuda_model *gm, size_t field, maye_param_group g, maye_param_init init, int count, size_t p0,
                     size_t n0) {
    add(gm, field, g, init, count, 1, p0, n0);
    gm->specs[gm->n_specs - 1].norm = true;
}

static void build_table(cuda_model *gm) {
    const maye_model_config *c = &gm->cfg;
    bool q25 = c->arch == MAYE_ARCH_QWEN2_5_VL;
    size_t VL = (size_t)c->vision.depth, VC = (size_t)c->vision.width, VI = (size_t)c->vision.intermediate;
    size_t MVC = (size_t)c->vision.merge * c->vision.merge * VC, PD = (size_t)c->vision.patch_dim;
    int L = c->layers;
    size_t C = (size_t)c->hidden, HD = (size_t)c->heads * c->head_dim, KVD = (size_t)c->kv_heads * c->head_dim;
    size_t I = (size_t)c->intermediate, V = (size_t)c->vocab;
    const maye_param_group VG = MAYE_PARAM_VISION, MG = MAYE_PARAM_MERGER, LG = MAYE_PARAM_LLM;
    const maye_param_init N = MAYE_INIT_NORMAL, ONE = MAYE_INIT_ONES, ZERO = MAYE_INIT_ZEROS;
    int vl = (int)VL;
    gm->n_specs = 0;

    add(gm, CW(patch_embed), VG, N, 1, 1, MW(patch_embed), VC * PD);
    add_norm(gm, CW(v_norm1_w), VG, ONE, vl, MW(v_norm1_w), VC);
    if (!q25) add_norm(gm, CW(v_norm1_b), VG, ZERO, vl, MW(v_norm1_b), VC);
    add(gm, CW(v_qkv_w), VG, N, vl, 1, MW(v_qkv_w), 3 * VC * VC);
    add(gm, CW(v_qkv_b), VG, ZERO, vl, 1, MW(v_qkv_b), 3 * VC);
    add(gm, CW(v_proj_w), VG, N, vl, 1, MW(v_proj_w), VC * VC);
    add(gm, CW(v_proj_b), VG, ZERO, vl, 1, MW(v_proj_b), VC);
    add_norm(gm, CW(v_norm2_w), VG, ONE, vl, MW(v_norm2_w), VC);
    if (!q25) add_norm(gm, CW(v_norm2_b), VG, ZERO, vl, MW(v_norm2_b), VC);
    if (q25) {
        add(gm, CW(v_fc1_w), VG, N, vl, 2, MW(v_fc1_w), VI * VC, MW(v_up_w), VI * VC);
        add(gm, CW(v_fc1_b), VG, ZERO, vl, 2, MW(v_fc1_b), VI, MW(v_up_b), VI);
    } else {
        add(gm, CW(v_fc1_w), VG, N, vl, 1, MW(v_fc1_w), VI * VC);
        add(gm, CW(v_fc1_b), VG, ZERO, vl, 1, MW(v_fc1_b), VI);
    }
    add(gm, CW(v_fc2_w), VG, N, vl, 1, MW(v_fc2_w), VC * VI);
    add(gm, CW(v_fc2_b), VG, ZERO, vl, 1, MW(v_fc2_b), VC);

    add_norm(gm, CW(m_norm_w), MG, ONE, 1, MW(m_norm_w), VC);
    if (!q25) add_norm(gm, CW(m_norm_b), MG, ZERO, 1, MW(m_norm_b), VC);
    add(gm, CW(m_fc1_w), MG, N, 1, 1, MW(m_fc1_w), MVC * MVC);
    add(gm, CW(m_fc1_b), MG, ZERO, 1, 1, MW(m_fc1_b), MVC);
    add(gm, CW(m_fc2_w), MG, N, 1, 1, MW(m_fc2_w), C * MVC);
    add(gm, CW(m_fc2_b), MG, ZERO, 1, 1, MW(m_fc2_b), C);

    add(gm, CW(embed), LG, N, 1, 1, MW(embed), V * C);
    add_norm(gm, CW(ln1_w), LG, ONE, L, MW(ln1_w), C);
    add(gm, CW(qkv_w), LG, N, L, 3, MW(q_w), HD * C, MW(k_w), KVD * C, MW(v_w), KVD * C);
    add(gm, CW(qkv_b), LG, ZERO, L, 3, MW(q_b), HD, MW(k_b), KVD, MW(v_b), KVD);
    add(gm, CW(o_w), LG, N, L, 1, MW(o_w), C * HD);
    add_norm(gm, CW(ln2_w), LG, ONE, L, MW(ln2_w), C);
    add(gm, CW(gu_w), LG, N, L, 2, MW(gate_w), I * C, MW(up_w), I * C);
    add(gm, CW(down_w), LG, N, L, 1, MW(down_w), C * I);
    add_norm(gm, CW(norm_w), LG, ONE, 1, MW(norm_w), C);
    if (!c->tie_embeddings) add(gm, CW(lm_head), LG, N, 1, 1, MW(lm_head), V * C);

    // offsets in table order (the groups come in order), each group's range from its first tensor to its end
    size_t off = 0;
    for (int g = 0; g < 3; g++) gm->group_off[g] = gm->group_len[g] = 0;
    for (int i = 0; i < gm->n_specs; i++) {
        cuda_param *p = &gm->specs[i];
        if (i == 0 || gm->specs[i - 1].group != p->group) gm->group_off[p->group] = off;
        p->offset = off;
        off += ((size_t)p->count * p->numel + GPU_ALIGN - 1) / GPU_ALIGN * GPU_ALIGN;
        gm->group_len[p->group] = off - gm->group_off[p->group];
    }
    gm->n_elems = off;
}

// The fp32 tensor the kernels read for norm p (its values in every dtype), or NULL for any other tensor: in
// the weights (fp32 mode), the master copy (bf16, trained language model) or norm32 (bf16, the rest).
static float *norm_home(const cuda_model *gm, const cuda_param *p) {
    if (!p->norm) return NULL;
    if (gm->dt == CUDA_F32) return (float *)gm->weights + p->offset;
    if (gm->master && p->group == MAYE_PARAM_LLM) return gm->master + (p->offset - gm->group_off[MAYE_PARAM_LLM]);
    return gm->norm32 + p->norm_offset;
}

// Points the weight fields at their tensors: the norms at their fp32 homes.
static void set_pointers(cuda_model *gm) {
    memset(&gm->w, 0, sizeof gm->w);
    for (int i = 0; i < gm->n_specs; i++) {
        const cuda_param *p = &gm->specs[i];
        void *t = p->norm ? (void *)norm_home(gm, p) : gm_at(gm, gm->weights, p->offset);
        *(void **)((char *)&gm->w + p->field) = t;
    }
    if (gm->cfg.tie_embeddings) gm->w.lm_head = gm->w.embed;
}

int cuda_model_norms(const cuda_model *gm, unsigned groups, float **home, size_t *bytes) {
    int n = 0;
    if (gm->dt == CUDA_F32) return 0;
    for (int i = 0; i < gm->n_specs; i++) {
        const cuda_param *p = &gm->specs[i];
        if (!p->norm || !(groups & (1u << p->group))) continue;
        home[n] = norm_home(gm, p);
        bytes[n++] = (size_t)p->count * p->numel * sizeof(float);
    }
    return n;
}

// ----------------------------------------------------------------------------
// life cycle

int dev_alloc_table(const DevRegion *r, int n, void **mem, size_t *bytes, const char *what) {
    size_t total = dev_layout(r, n, NULL);
    if (total < 256) total = 256;
    *mem = NULL;
    CUDA_TRY(cudaMalloc(mem, total), "allocating %.3f GB of device memory for %s", total / 1e9, what);
    dev_layout(r, n, (char *)*mem);
    if (bytes) *bytes = total;
    return 0;
}

int gm_scratch(cuda_model *gm, size_t bytes) {
    if (bytes <= gm->scratch_bytes) return 0;
    TRY(cuda_model_trim(gm));
    size_t want = (bytes + (1u << 20) - 1) / (1u << 20) * (1u << 20);
    CUDA_TRY(cudaMalloc(&gm->scratch, want), "allocating %.3f GB of device scratch", want / 1e9);
    gm->scratch_bytes = want;
    gm->device_bytes += want;
    return 0;
}

// Everything but the values: config, table, stream, the weight (and master) allocations.
static int setup(cuda_model *gm, cuda_ctx *ctx, const maye_model_config *c, cuda_dtype dt, bool master) {
    memset(gm, 0, sizeof *gm);
    CHECK_OR_FAIL(dt == CUDA_F32 || dt == CUDA_BF16, "cuda model: unknown dtype %d", (int)dt);
    gm->ctx = ctx, gm->dt = dt, gm->cfg = *c;
    build_table(gm);
    cudaStream_t s;
    CUDA_TRY(cudaStreamCreate(&s), "creating the model's CUDA stream");
    gm->stream = s;
    size_t bytes = gm->n_elems * gm_es(gm);
    cudaError_t err = cudaMalloc(&gm->weights, bytes);
    if (err == cudaSuccess) err = cudaMemsetAsync(gm->weights, 0, bytes, s);
    if (err != cudaSuccess) {
        cuda_model_free(gm);
        return cuda_fail(err, "allocating %.3f GB of device memory for the weights (%s)", bytes / 1e9, dtype_name(dt));
    }
    gm->device_bytes = bytes;
    if (master && dt == CUDA_BF16) {
        size_t mb = gm->group_len[MAYE_PARAM_LLM] * sizeof(float);
        err = cudaMalloc(&gm->master, mb);
        if (err == cudaSuccess) err = cudaMemsetAsync(gm->master, 0, mb, s);
        if (err != cudaSuccess) {
            cuda_model_free(gm);
            return cuda_fail(err, "allocating %.3f GB of device memory for the fp32 master weights", mb / 1e9);
        }
        gm->device_bytes += mb;
    }
    if (dt == CUDA_BF16) { // fp32 norms, each on a 256-byte boundary (16-byte vector loads need that)
        for (int i = 0; i < gm->n_specs; i++) {
            cuda_param *p = &gm->specs[i];
            if (!p->norm || (gm->master && p->group == MAYE_PARAM_LLM)) continue;
            p->norm_offset = gm->n_norm;
            gm->n_norm += ((size_t)p->count * p->numel + 63) / 64 * 64;
        }
        size_t vb = gm->n_norm * sizeof(float);
        if (vb) {
            err = cudaMalloc((void **)&gm->norm32, vb);
            if (err == cudaSuccess) err = cudaMemsetAsync(gm->norm32, 0, vb, s);
            if (err != cudaSuccess) {
                cuda_model_free(gm);
                return cuda_fail(err, "allocating %.3f MB of device memory for the fp32 norm weights and biases",
                                 vb / 1e6);
            }
            gm->device_bytes += vb;
        }
    }
    set_pointers(gm);
    return 0;
}

void cuda_model_free(cuda_model *gm) {
    if (gm->prof) { // a profile nobody ended: dropped, the caller's error message kept
        char msg[MAYE_ERRMSG_MAX];
        snprintf(msg, sizeof msg, "%s", maye_errmsg());
        cuda_prof_report r;
        if (cuda_model_profile_end(gm, &r) < 0) maye_fail("%s", msg);
    }
    if (gm->stream) cudaStreamSynchronize(gm->stream);
    if (gm->weights) cudaFree(gm->weights);
    if (gm->master) cudaFree(gm->master);
    if (gm->norm32) cudaFree(gm->norm32);
    if (gm->scratch) cudaFree(gm->scratch);
    cuda_model_free_staging(gm);
    if (gm->stream) cudaStreamDestroy(gm->stream);
    memset(gm, 0, sizeof *gm);
}

int cuda_model_sync(cuda_model *gm) {
    gm_mark(gm, NULL);
    CUDA_TRY(cudaStreamSynchronize(gm->stream), "waiting for the GPU model's stream");
    return 0;
}

int cuda_model_trim(cuda_model *gm) {
    TRY(cuda_model_sync(gm));
    if (gm->scratch) cudaFree(gm->scratch);
    gm->device_bytes -= gm->scratch_bytes;
    gm->scratch = NULL, gm->scratch_bytes = 0;
    return 0;
}

// ----------------------------------------------------------------------------
// moving tensors between the CPU layout and the device layout

// n fp32 host values -> dst (dtype dt) on the device, through the fp32 stage when dt is bf16.
static int put(cuda_model *gm, void *dst, cuda_dtype dt, const float *src, size_t n, float *stage) {
    for (size_t i = 0; i < n; i += STAGE_FLOATS) {
        size_t k = n - i < STAGE_FLOATS ? n - i : STAGE_FLOATS;
        void *d = (char *)dst + i * dtype_size(dt);
        if (dt == CUDA_F32) {
            CUDA_TRY(cudaMemcpyAsync(d, src + i, k * sizeof(float), cudaMemcpyHostToDevice, gm->stream),
                     "uploading %zu weights", k);
        } else {
            CUDA_TRY(cudaMemcpyAsync(stage, src + i, k * sizeof(float), cudaMemcpyHostToDevice, gm->stream),
                     "uploading %zu weights", k);
            TRY(cuda_convert(dt, d, CUDA_F32, stage, (int64_t)k, gm->stream));
        }
    }
    return 0;
}

// n values of src (dtype dt) on the device -> fp32 host values.
static int get(cuda_model *gm, float *dst, const void *src, cuda_dtype dt, size_t n, float *stage) {
    for (size_t i = 0; i < n; i += STAGE_FLOATS) {
        size_t k = n - i < STAGE_FLOATS ? n - i : STAGE_FLOATS;
        const void *s = (const char *)src + i * dtype_size(dt);
        if (dt != CUDA_F32) {
            TRY(cuda_convert(CUDA_F32, stage, dt, s, (int64_t)k, gm->stream));
            s = stage;
        }
        CUDA_TRY(cudaMemcpyAsync(dst + i, s, k * sizeof(float), cudaMemcpyDeviceToHost, gm->stream),
                 "downloading %zu values", k);
        TRY(cuda_model_sync(gm));
    }
    return 0;
}

// The CPU tensor of part p, copy c, in a CPU weight struct (NULL when the field is NULL).
static float *host_part(const maye_weights *w, const cuda_param *p, int part, int copy) {
    float *base = *(float *const *)((const char *)w + p->part[part]);
    return base ? base + (size_t)copy * p->part_numel[part] : NULL;
}

// Element offset (in the device layout) of part p, copy c.
static size_t dev_part(const cuda_param *p, int part, int copy) {
    size_t off = p->offset + (size_t)copy * p->numel;
    for (int q = 0; q < part; q++) off += p->part_numel[q];
    return off;
}

static int with_stage(float **stage) {
    *stage = NULL;
    CUDA_TRY(cudaMalloc((void **)stage, STAGE_FLOATS * sizeof(float)), "allocating the 64 MiB staging buffer");
    return 0;
}

int cuda_model_load(cuda_model *gm, unsigned groups, const maye_weights *w) {
    float *stage = NULL;
    int rc = gm->dt == CUDA_BF16 ? with_stage(&stage) : 0;
    for (int i = 0; i < gm->n_specs && rc == 0; i++) {
        const cuda_param *p = &gm->specs[i];
        if (!(groups & (1u << p->group))) continue;
        bool to_master = gm->master && p->group == MAYE_PARAM_LLM;
        float *home = gm->dt == CUDA_BF16 && !to_master ? norm_home(gm, p) : NULL; // a second, fp32 copy
        for (int c = 0; c < p->count && rc == 0; c++)
            for (int q = 0; q < p->n_parts && rc == 0; q++) {
                const float *src = host_part(w, p, q, c);
                if (!src) continue;
                size_t off = dev_part(p, q, c);
                if (to_master) rc = put(gm, gm->master + (off - gm->group_off[MAYE_PARAM_LLM]), CUDA_F32, src,
                                        p->part_numel[q], stage);
                else rc = put(gm, gm_at(gm, gm->weights, off), gm->dt, src, p->part_numel[q], stage);
                if (rc == 0 && home) rc = put(gm, home + (off - p->offset), CUDA_F32, src, p->part_numel[q], stage);
            }
    }
    if (rc == 0 && gm->master && (groups & (1u << MAYE_PARAM_LLM)))
        rc = cuda_convert(gm->dt, gm_at(gm, gm->weights, gm->group_off[MAYE_PARAM_LLM]), CUDA_F32, gm->master,
                          (int64_t)gm->group_len[MAYE_PARAM_LLM], gm->stream);
    if (rc == 0) rc = cuda_model_sync(gm);
    if (stage) cudaFree(stage);
    return rc;
}

int cuda_model_upload(cuda_model *gm, cuda_ctx *ctx, const maye_model *m, cuda_dtype dt, bool master) {
    TRY(setup(gm, ctx, &m->cfg, dt, master));
    unsigned all = (1u << MAYE_PARAM_VISION) | (1u << MAYE_PARAM_MERGER) | (1u << MAYE_PARAM_LLM);
    if (cuda_model_load(gm, all, &m->w) < 0) {
        cuda_model_free(gm);
        return maye_fail_ctx("uploading the model to the GPU");
    }
    return 0;
}

int cuda_model_unstack(cuda_model *gm, const void *src, cuda_dtype sdt, size_t base, unsigned groups,
                       maye_weights *dst) {
    float *stage = NULL;
    int rc = sdt != CUDA_F32 ? with_stage(&stage) : 0;
    for (int i = 0; i < gm->n_specs && rc == 0; i++) {
        const cuda_param *p = &gm->specs[i];
        if (!(groups & (1u << p->group))) continue;
        for (int c = 0; c < p->count && rc == 0; c++)
            for (int q = 0; q < p->n_parts && rc == 0; q++) {
                float *h = host_part(dst, p, q, c);
                if (!h) continue;
                size_t off = dev_part(p, q, c);
                if (off < base) {
                    rc = maye_fail("cuda_model_unstack: a tensor lies before the image's first element %zu", base);
                    break;
                }
                rc = get(gm, h, (const char *)src + (off - base) * dtype_size(sdt), sdt, p->part_numel[q], stage);
            }
    }
    if (stage) cudaFree(stage);
    return rc;
}

int cuda_model_stack(cuda_model *gm, void *dst, cuda_dtype ddt, size_t base, unsigned groups, const maye_weights *src) {
    float *stage = NULL;
    int rc = ddt != CUDA_F32 ? with_stage(&stage) : 0;
    for (int i = 0; i < gm->n_specs && rc == 0; i++) {
        const cuda_param *p = &gm->specs[i];
        if (!(groups & (1u << p->group))) continue;
        for (int c = 0; c < p->count && rc == 0; c++)
            for (int q = 0; q < p->n_parts && rc == 0; q++) {
                const float *h = host_part(src, p, q, c);
                if (!h) continue;
                size_t off = dev_part(p, q, c);
                if (off < base) {
                    rc = maye_fail("cuda_model_stack: a tensor lies before the image's first element %zu", base);
                    break;
                }
                rc = put(gm, (char *)dst + (off - base) * dtype_size(ddt), ddt, h, p->part_numel[q], stage);
            }
    }
    if (rc == 0) rc = cuda_model_sync(gm);
    if (stage) cudaFree(stage);
    return rc;
}

int cuda_model_download(cuda_model *gm, maye_model *m, unsigned groups) {
    CHECK_OR_FAIL(m->cfg.hidden == gm->cfg.hidden && m->cfg.layers == gm->cfg.layers && m->cfg.vocab == gm->cfg.vocab,
                  "cuda_model_download: the CPU model's config differs from the GPU model's");
    unsigned llm = 1u << MAYE_PARAM_LLM;
    if (gm->master && (groups & llm)) {
        TRY(cuda_model_unstack(gm, gm->master, CUDA_F32, gm->group_off[MAYE_PARAM_LLM], llm, &m->w));
        groups &= ~llm;
    }
    TRY(cuda_model_unstack(gm, gm->weights, gm->dt, 0, groups, &m->w));
    if (gm->dt == CUDA_F32) return 0;
    for (int i = 0; i < gm->n_specs; i++) { // the norms again, from their fp32 homes
        const cuda_param *p = &gm->specs[i];
        const float *home = norm_home(gm, p);
        if (!home || !(groups & (1u << p->group))) continue;
        for (int c = 0; c < p->count; c++)
            for (int q = 0; q < p->n_parts; q++) {
                float *h = host_part(&m->w, p, q, c);
                if (h) TRY(get(gm, h, home + (dev_part(p, q, c) - p->offset), CUDA_F32, p->part_numel[q], NULL));
            }
    }
    return 0;
}

// ----------------------------------------------------------------------------
// random initialisation

int cuda_model_init_random(cuda_model *gm, cuda_ctx *ctx, const char *config_json, const char *where, cuda_dtype dt,
                           bool master, uint64_t seed) {
    maye_model_config c;
    TRY(maye_model_config_parse(&c, config_json, where));
    TRY(setup(gm, ctx, &c, dt, master));
    int rc = 0;
    for (int i = 0; i < gm->n_specs && rc == 0; i++) {
        const cuda_param *p = &gm->specs[i];
        int64_t n = (int64_t)p->count * (int64_t)p->numel;
        bool to_master = gm->master && p->group == MAYE_PARAM_LLM;
        cuda_dtype tdt = to_master ? CUDA_F32 : dt;
        void *target = to_master ? (void *)(gm->master + (p->offset - gm->group_off[MAYE_PARAM_LLM]))
                                 : gm_at(gm, gm->weights, p->offset);
        if (p->init == MAYE_INIT_NORMAL)
            rc = cuda_fill_normal(tdt, target, n, c.initializer_range, seed, maye_stream_id(seed, (uint64_t)i, 0x696e6974),
                                  gm->stream);
        else rc = cuda_fill_value(tdt, target, n, p->init == MAYE_INIT_ONES ? 1.0f : 0.0f, gm->stream);
        float *home = dt == CUDA_BF16 && !to_master ? norm_home(gm, p) : NULL;
        if (rc == 0 && home)
            rc = cuda_fill_value(CUDA_F32, home, n, p->init == MAYE_INIT_ONES ? 1.0f : 0.0f, gm->stream);
    }
    if (rc == 0 && gm->master)
        rc = cuda_convert(dt, gm_at(gm, gm->weights, gm->group_off[MAYE_PARAM_LLM]), CUDA_F32, gm->master,
                          (int64_t)gm->group_len[MAYE_PARAM_LLM], gm->stream);
    if (rc == 0) rc = cuda_model_sync(gm);
    if (rc < 0) {
        cuda_model_free(gm);
        return maye_fail_ctx("%s: random initialisation on the GPU", where);
    }
    return 0;
}
