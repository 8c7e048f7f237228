// The CUDA backend of the stages (backend/backend.h): a device model is the GPU model of lib/model/cuda
// (weights uploaded from the stage's CPU model in fp32 or bf16) plus what each stage drives on it: packed
// activations for scoring (maye-traj), the slab-KV generator (maye-rollout), or the language model's training
// state (maye-update: gradients, AdamW moments and fp32 masters on the device). Nothing here computes: every
// call is one of model/cuda's tested entry points, with the host <-> device copies around it. Image features
// cross as fp32 host rows (the model's dtype on the device: bf16 rounding is exact both ways).
//
// Weight sync over CUDA IPC (update.weight_sync=cuda_ipc): the trainer copies the trained groups' element
// ranges of its weights into a ring of exported buffers, followed in bf16 mode by the groups' fp32 norm weights
// and biases (cuda_model_norms: what the kernels read); the stages open a buffer's handle and copy the ranges
// into the same places of their own weights and the norms to theirs (the layout is the same for the same
// config and dtype). Both sides checksum the bytes with the same kernel, so a buffer overwritten during a
// copy, or a model laid out differently, fails loudly instead of sampling with mixed weights.
//
// Compiled only into libmaye_cuda.a (make CUDA=1); the stage binaries of that build link it with
// -Wl,-u,maye_backend_cuda_ops, which is what makes backend.c's weak reference non-NULL.
// Dimension letters as in model/cuda/model.h.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/model_kernels.h"
#include "model/cuda/backward.h"
#include "model/cuda/generate.h"

extern "C" {
#include "backend/backend.h"
#include "core/log.h"
#include "core/util.h"
}

#include <stdlib.h>
#include <string.h>

#define CAP_ROUND 256 // scoring activations grow in steps of this many tokens
#define IPC_OPEN_MAX 16 // imported buffers kept open (the trainer's ring is max_staleness + 2 buffers)
#define DIGEST_THREADS 256
#define DIGEST_BLOCKS_MAX 2048

static_assert(sizeof(cudaIpcMemHandle_t) == MAYE_IPC_HANDLE_BYTES, "backend.h's MAYE_IPC_HANDLE_BYTES");

// ----------------------------------------------------------------------------
// state

struct cuda_device {
    maye_device_model base; // first: the handle the stages hold
    cuda_model gm;
    bool train;             // opened with training state (fp32 masters in bf16)
    int serial;             // 1 for the first device model this process opened, 2 for the next, ...
    cuda_llm_acts acts;     // scoring activations (keep 0)
    bool have_acts;
    cuda_gen gen;
    bool have_gen;
    cuda_llm_train tr;      // training activations, gradients, AdamW moments
    bool have_train;
    void *embeds;           // (NI, C) image features of the current batch, model dtype
    size_t embeds_bytes;
    float *f32;             // (NI, C) fp32 staging of dtype conversions
    size_t f32_bytes;
    // weight sync, exporting side (maye-update)
    void **ring;            // (n_ring) exported buffers of ring_bytes each
    cudaIpcMemHandle_t *ring_handles; // (n_ring)
    int n_ring;
    unsigned ring_groups;
    size_t ring_bytes;
    // weight sync, importing side (maye-rollout, maye-traj): open handles, oldest first
    struct {
        cudaIpcMemHandle_t handle;
        void *ptr;
    } opened[IPC_OPEN_MAX];
    int n_opened;
    unsigned long long *digest_sum; // (1) device accumulator of the checksum kernel
};

static cuda_ctx *ctx_shared; // one context (cuBLASLt handle and workspace) for every device model of the process
static int ctx_users;
static int models_opened;    // device models opened by this process (numbers them in profile tables)

static const maye_backend_ops *backend_ops(void);

static cuda_device *dev(maye_device_model *dm) { return (cuda_device *)dm; }

// Grows a device buffer to at least `bytes` (waiting for the model's stream before it frees the old one).
static int grow(cuda_device *d, void **p, size_t *cap, size_t bytes, const char *what) {
    if (bytes <= *cap) return 0;
    TRY(cuda_model_sync(&d->gm));
    if (*p) cudaFree(*p);
    *p = NULL, *cap = 0;
    CUDA_TRY(cudaMalloc(p, bytes), "allocating %.3f GB of device memory for %s", bytes / 1e9, what);
    *cap = bytes;
    return 0;
}

// ----------------------------------------------------------------------------
// profile tables (model.profile)

// Prints the device model's profile to stderr whatever the log level (the user asked for it): per phase, then
// every region, largest first.
static void print_profile(const cuda_device *d, const cuda_prof_report &r) {
    const char *prog = maye_program_name();
    fprintf(stderr, "%s: GPU profile of device model %d (%s): %.1f ms of GPU time in %d regions (the GPU was held %ld "
            "times while the host queued work, not counted)\n", prog, d->serial, d->train ? "trained" : "inference",
            r.total_ms, r.n, r.holds);
    for (int p = 0; p < r.n_phases; p++)
        fprintf(stderr, "%s:   phase %-24s %12.3f ms %6.1f%%\n", prog, r.phases[p].name, r.phases[p].ms,
                r.total_ms > 0 ? 100 * r.phases[p].ms / r.total_ms : 0.0);
    for (int i = 0; i < r.n; i++) {
        const cuda_prof_total *t = &r.regions[i];
        fprintf(stderr, "%s:   %-30s %12.3f ms %6.1f%% %10ld calls %10.4f ms/call\n", prog, t->name, t->ms,
                r.total_ms > 0 ? 100 * t->ms / r.total_ms : 0.0, t->calls, t->ms / (double)t->calls);
    }
}

// ----------------------------------------------------------------------------
// life cycle

static void dev_close(maye_device_model *dm);

static int dev_open(maye_device_model **out, const maye_model *m, const char *dtype, bool train, bool profile) {
    *out = NULL;
    if (!ctx_shared) TRY(cuda_ctx_init(&ctx_shared, 0));
    ctx_users++;
    cuda_device *d = (cuda_device *)xcalloc(1, sizeof *d);
    d->base.ops = backend_ops();
    d->train = train;
    cuda_dtype dt = strcmp(dtype, "bf16") ? CUDA_F32 : CUDA_BF16;
    double t0 = maye_now();
    if (cuda_model_upload(&d->gm, ctx_shared, m, dt, train) < 0) {
        free(d);
        if (--ctx_users == 0) cuda_ctx_free(ctx_shared), ctx_shared = NULL;
        return -1;
    }
    log_info("model on %s in %s: %.2f GB of weights%s (%.1f s)", cuda_ctx_device_name(ctx_shared), dtype,
             d->gm.device_bytes / 1e9, d->gm.master ? " + fp32 masters of the language model" : "",
             maye_now() - t0);
    d->serial = ++models_opened;
    *out = &d->base;
    if (profile && cuda_model_profile_begin(&d->gm) < 0) {
        dev_close(&d->base);
        *out = NULL;
        return maye_fail_ctx("model.profile");
    }
    return 0;
}

static void dev_close(maye_device_model *dm) {
    cuda_device *d = dev(dm);
    if (d->gm.prof) { // the table; the caller's error message (a stage closing on an error) kept
        char msg[MAYE_ERRMSG_MAX];
        snprintf(msg, sizeof msg, "%s", maye_errmsg());
        cuda_prof_report r;
        if (cuda_model_profile_end(&d->gm, &r) == 0)
            print_profile(d, r);
        else
            log_warn("the GPU profile of device model %d is lost: %s", d->serial, maye_errmsg());
        maye_fail("%s", msg);
    }
    cuda_model_sync(&d->gm);
    if (d->have_train) cuda_llm_train_free(&d->tr);
    if (d->have_gen) cuda_gen_free(&d->gen);
    if (d->have_acts) cuda_llm_acts_free(&d->acts);
    if (d->embeds) cudaFree(d->embeds);
    if (d->f32) cudaFree(d->f32);
    for (int i = 0; i < d->n_ring; i++) cudaFree(d->ring[i]);
    free(d->ring), free(d->ring_handles);
    for (int i = 0; i < d->n_opened; i++) cudaIpcCloseMemHandle(d->opened[i].ptr);
    if (d->digest_sum) cudaFree(d->digest_sum);
    cuda_model_free(&d->gm);
    free(d);
    if (--ctx_users == 0) cuda_ctx_free(ctx_shared), ctx_shared = NULL;
}

static int dev_reload(maye_device_model *dm, const maye_model *m, unsigned groups) {
    return cuda_model_load(&dev(dm)->gm, groups, &m->w);
}

// ----------------------------------------------------------------------------
// image features and packed batches

static int dev_vision(maye_device_model *dm, const float *pixels, int64_t P, const int64_t *grid_thw, int n_images,
                      float *out) {
    cuda_device *d = dev(dm);
    cuda_model *gm = &d->gm;
    int64_t NI = 0;
    TRY(maye_vision_check(&gm->cfg, P, grid_thw, n_images, &NI));
    if (NI == 0) return 0;
    size_t n = (size_t)NI * gm->cfg.hidden;
    TRY(grow(d, &d->embeds, &d->embeds_bytes, n * dtype_size(gm->dt), "image features"));
    TRY(cuda_vision_forward(gm, pixels, P, grid_thw, n_images, d->embeds));
    const void *src = d->embeds;
    if (gm->dt != CUDA_F32) {
        TRY(grow(d, (void **)&d->f32, &d->f32_bytes, n * sizeof(float), "image features in fp32"));
        TRY(cuda_convert(CUDA_F32, d->f32, gm->dt, d->embeds, (int64_t)n, gm->stream));
        src = d->f32;
    }
    CUDA_TRY(cudaMemcpyAsync(out, src, n * sizeof(float), cudaMemcpyDeviceToHost, gm->stream),
             "downloading %lld image features", (long long)NI);
    return cuda_model_sync(gm);
}

// The GPU form of a packed batch: host arrays as they are, the image features uploaded in the model's dtype.
static int device_batch(cuda_device *d, const maye_llm_batch *b, bool upload, cuda_llm_batch *out) {
    cuda_model *gm = &d->gm;
    int64_t NI = b->n_image_embeds;
    CHECK_OR_FAIL(NI == 0 || b->image_embeds, "a batch with %lld image-pad rows has no image features", (long long)NI);
    size_t n = (size_t)NI * gm->cfg.hidden;
    if (NI > 0 && upload) {
        TRY(grow(d, &d->embeds, &d->embeds_bytes, n * dtype_size(gm->dt), "image features"));
        if (gm->dt == CUDA_F32) {
            CUDA_TRY(cudaMemcpyAsync(d->embeds, b->image_embeds, n * sizeof(float), cudaMemcpyHostToDevice, gm->stream),
                     "uploading %lld image features", (long long)NI);
        } else {
            TRY(grow(d, (void **)&d->f32, &d->f32_bytes, n * sizeof(float), "image features in fp32"));
            CUDA_TRY(cudaMemcpyAsync(d->f32, b->image_embeds, n * sizeof(float), cudaMemcpyHostToDevice, gm->stream),
                     "uploading %lld image features", (long long)NI);
            TRY(cuda_convert(gm->dt, d->embeds, CUDA_F32, d->f32, (int64_t)n, gm->stream));
        }
    }
    *out = cuda_llm_batch{b->B, b->T, b->cu_seqlens, b->ids, b->pos, NI > 0 ? d->embeds : NULL, NI, b->n_prompt};
    return 0;
}

static int dev_logprobs(maye_device_model *dm, const maye_llm_batch *b, const int64_t *targets, float temperature,
                        float *logprobs, float *entropy) {
    cuda_device *d = dev(dm);
    cuda_model *gm = &d->gm;
    if (!d->have_acts || d->acts.T_cap < b->T || d->acts.B_cap < b->B) {
        int B_cap = d->have_acts && d->acts.B_cap > b->B ? d->acts.B_cap : b->B;
        if (d->have_acts) cuda_llm_acts_free(&d->acts);
        d->have_acts = false;
        TRY(cuda_llm_acts_init(&d->acts, gm, (b->T + CAP_ROUND - 1) / CAP_ROUND * CAP_ROUND, B_cap, 0));
        d->have_acts = true;
    }
    cuda_llm_batch cb;
    TRY(device_batch(d, b, true, &cb));
    TRY(cuda_llm_forward(gm, &cb, &d->acts));
    return cuda_llm_logprobs(gm, &d->acts, targets, temperature, logprobs, entropy);
}

// ----------------------------------------------------------------------------
// generation

static int dev_gen_init(maye_device_model *dm, const maye_gen_config *cfg) {
    cuda_device *d = dev(dm);
    if (d->have_gen) cuda_gen_free(&d->gen);
    d->have_gen = false;
    TRY(cuda_gen_init(&d->gen, &d->gm, cfg, true));
    d->have_gen = true;
    return 0;
}

static int dev_gen_run(maye_device_model *dm, const maye_gen_request *reqs, int n, maye_gen_result *res,
                       maye_gen_stats *stats) {
    cuda_device *d = dev(dm);
    CHECK_OR_FAIL(d->have_gen, "the device model has no generator (maye_device_gen_init first)");
    maye_gen_stats a = d->gen.stats;
    TRY(cuda_gen_run(&d->gen, reqs, n, res));
    const maye_gen_stats &b = d->gen.stats;
    stats->requests += b.requests - a.requests;
    stats->sequences += b.sequences - a.sequences;
    stats->prompt_tokens += b.prompt_tokens - a.prompt_tokens;
    stats->tokens += b.tokens - a.tokens;
    stats->decode_steps += b.decode_steps - a.decode_steps;
    stats->vision_seconds += b.vision_seconds - a.vision_seconds;
    stats->prefill_seconds += b.prefill_seconds - a.prefill_seconds;
    stats->decode_seconds += b.decode_seconds - a.decode_seconds;
    stats->sample_seconds += b.sample_seconds - a.sample_seconds;
    return 0;
}

// ----------------------------------------------------------------------------
// training

static int need_train(cuda_device *d) {
    CHECK_OR_FAIL(d->have_train, "the device model has no training state (maye_device_train_init first)");
    return 0;
}

static int dev_train_init(maye_device_model *dm, int T_cap, int B_cap, bool recompute) {
    cuda_device *d = dev(dm);
    CHECK_OR_FAIL(d->train, "the device model was opened for inference only (train = false)");
    if (d->have_train) cuda_llm_train_free(&d->tr);
    d->have_train = false;
    TRY(cuda_llm_train_init(&d->tr, &d->gm, T_cap, B_cap, recompute));
    d->have_train = true;
    log_debug("training state on the GPU for %d tokens in %d sequences: %.2f GB", T_cap, B_cap,
              cuda_llm_train_bytes(&d->tr) / 1e9);
    return 0;
}

static int dev_train_forward(maye_device_model *dm, const maye_llm_batch *b, const int64_t *targets,
                             float temperature, float *logprobs, float *entropy) {
    cuda_device *d = dev(dm);
    TRY(need_train(d));
    cuda_llm_batch cb;
    TRY(device_batch(d, b, true, &cb));
    TRY(cuda_llm_forward(&d->gm, &cb, &d->tr.acts));
    return cuda_llm_logprobs(&d->gm, &d->tr.acts, targets, temperature, logprobs, entropy);
}

static int dev_train_backward(maye_device_model *dm, const maye_llm_batch *b, const int64_t *targets,
                              float temperature, const float *logprobs, const float *dlogprobs) {
    cuda_device *d = dev(dm);
    TRY(need_train(d));
    cuda_llm_batch cb;
    TRY(device_batch(d, b, false, &cb)); // the features train_forward uploaded
    TRY(cuda_llm_backward(&d->gm, &d->tr, &cb, targets, temperature, logprobs, dlogprobs));
    return cuda_model_sync(&d->gm);
}

static int dev_train_zero(maye_device_model *dm) {
    cuda_device *d = dev(dm);
    TRY(need_train(d));
    return cuda_llm_train_zero(&d->gm, &d->tr);
}

static int dev_train_clip(maye_device_model *dm, double max_norm, double *norm) {
    cuda_device *d = dev(dm);
    TRY(need_train(d));
    return cuda_llm_clip(&d->gm, &d->tr, max_norm, norm);
}

static int dev_train_adamw(maye_device_model *dm, const maye_adamw_hparams *hp, double lr) {
    cuda_device *d = dev(dm);
    TRY(need_train(d));
    TRY(cuda_llm_adamw(&d->gm, &d->tr, hp, lr));
    return cuda_model_sync(&d->gm);
}

static int dev_download(maye_device_model *dm, maye_model *m, unsigned groups) {
    return cuda_model_download(&dev(dm)->gm, m, groups);
}

static int dev_opt_get(maye_device_model *dm, maye_weights *m, maye_weights *v) {
    cuda_device *d = dev(dm);
    TRY(need_train(d));
    cuda_model *gm = &d->gm;
    size_t base = gm->group_off[MAYE_PARAM_LLM];
    unsigned llm = 1u << MAYE_PARAM_LLM;
    TRY(cuda_model_unstack(gm, d->tr.m, CUDA_F32, base, llm, m));
    return cuda_model_unstack(gm, d->tr.v, CUDA_F32, base, llm, v);
}

static int dev_opt_set(maye_device_model *dm, const maye_weights *m, const maye_weights *v, int64_t step) {
    cuda_device *d = dev(dm);
    TRY(need_train(d));
    cuda_model *gm = &d->gm;
    size_t base = gm->group_off[MAYE_PARAM_LLM];
    unsigned llm = 1u << MAYE_PARAM_LLM;
    TRY(cuda_model_stack(gm, d->tr.m, CUDA_F32, base, llm, m));
    TRY(cuda_model_stack(gm, d->tr.v, CUDA_F32, base, llm, v));
    d->tr.step = step;
    return 0;
}

// ----------------------------------------------------------------------------
// weight sync over CUDA IPC

__device__ __forceinline__ unsigned long long mix64(unsigned long long x) { // splitmix64's finaliser
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// *sum += the mixed (position, value) pairs of the 16-bit words p[0..n) that sit at positions base + i of the
// checksummed byte string: a sum, so the ranges of one string can be checksummed by separate launches.
static __global__ void digest_kernel(const uint16_t *p, int64_t n, int64_t base, unsigned long long *sum) {
    unsigned long long acc = 0;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        acc += mix64(((unsigned long long)(base + i) << 16) ^ p[i]);
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, o);
    __shared__ unsigned long long part[DIGEST_THREADS / 32];
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned long long t = 0;
        for (int w = 0; w < DIGEST_THREADS / 32; w++) t += part[w];
        atomicAdd(sum, t);
    }
}

#define SYNC_RANGES (3 + CUDA_MAX_PARAMS)

// What a weight sync of `groups` moves, as device ranges in the order of the exported byte string: the
// groups' ranges of the weights (in group order), then their fp32 norms. Returns how many; *total bytes.
static int sync_ranges(const cuda_model *gm, unsigned groups, char *at[SYNC_RANGES], size_t len[SYNC_RANGES],
                       size_t *total) {
    int n = 0;
    *total = 0;
    for (int g = MAYE_PARAM_VISION; g <= MAYE_PARAM_LLM; g++) {
        if (!(groups & (1u << g)) || gm->group_len[g] == 0) continue;
        at[n] = (char *)gm->weights + gm->group_off[g] * dtype_size(gm->dt);
        len[n] = gm->group_len[g] * dtype_size(gm->dt);
        *total += len[n++];
    }
    float *home[CUDA_MAX_PARAMS];
    size_t bytes[CUDA_MAX_PARAMS];
    int nv = cuda_model_norms(gm, groups, home, bytes);
    for (int i = 0; i < nv; i++) {
        at[n] = (char *)home[i], len[n] = bytes[i];
        *total += len[n++];
    }
    return n;
}

// The checksum of the byte string made of ranges[0..n) (device pointers) one after another; waits for it.
static int digest_of(cuda_device *d, const char *const *ranges, const size_t *len, int n, uint64_t *digest) {
    cuda_model *gm = &d->gm;
    if (!d->digest_sum)
        CUDA_TRY(cudaMalloc((void **)&d->digest_sum, sizeof *d->digest_sum), "allocating the weight checksum");
    CUDA_TRY(cudaMemsetAsync(d->digest_sum, 0, sizeof *d->digest_sum, gm->stream), "clearing the weight checksum");
    int64_t base = 0;
    for (int i = 0; i < n; i++) {
        int64_t words = (int64_t)(len[i] / 2);
        int64_t blocks = (words + DIGEST_THREADS - 1) / DIGEST_THREADS;
        if (blocks > DIGEST_BLOCKS_MAX) blocks = DIGEST_BLOCKS_MAX;
        if (blocks == 0) continue;
        digest_kernel<<<(unsigned)blocks, DIGEST_THREADS, 0, gm->stream>>>((const uint16_t *)ranges[i], words, base,
                                                                             d->digest_sum);
        CUDA_LAUNCHED("checksumming %.3f GB of weights", len[i] / 1e9);
        base += words;
    }
    unsigned long long sum = 0;
    CUDA_TRY(cudaMemcpyAsync(&sum, d->digest_sum, sizeof sum, cudaMemcpyDeviceToHost, gm->stream),
             "reading the weight checksum");
    TRY(cuda_model_sync(gm));
    *digest = (uint64_t)sum ^ (uint64_t)base;
    return 0;
}

static int dev_weights_export(maye_device_model *dm, unsigned groups, int slot, int n_slots, maye_ipc_weights *out) {
    cuda_device *d = dev(dm);
    cuda_model *gm = &d->gm;
    char *at[SYNC_RANGES];
    size_t len[SYNC_RANGES], total;
    int n = sync_ranges(gm, groups, at, len, &total);
    CHECK_OR_FAIL(n > 0, "weight sync: the groups 0x%x hold no weights to export", groups);
    CHECK_OR_FAIL(n_slots > 0 && slot >= 0 && slot < n_slots, "weight sync: buffer %d of a ring of %d", slot, n_slots);
    if (!d->ring) {
        d->ring = (void **)xcalloc((size_t)n_slots, sizeof *d->ring);
        d->ring_handles = (cudaIpcMemHandle_t *)xcalloc((size_t)n_slots, sizeof *d->ring_handles);
        d->ring_groups = groups, d->ring_bytes = total;
        for (; d->n_ring < n_slots; d->n_ring++) {
            CUDA_TRY(cudaMalloc(&d->ring[d->n_ring], total), "allocating %.3f GB of device memory for weight-sync "
                     "buffer %d of %d (update.weight_sync=cuda_ipc; update.weight_sync=file needs none)", total / 1e9,
                     d->n_ring, n_slots);
            CUDA_TRY(cudaIpcGetMemHandle(&d->ring_handles[d->n_ring], d->ring[d->n_ring]),
                     "exporting weight-sync buffer %d (CUDA IPC)", d->n_ring);
        }
        log_info("weight sync over CUDA IPC: %d buffers of %.3f GB", n_slots, total / 1e9);
    }
    CHECK_OR_FAIL(n_slots == d->n_ring && groups == d->ring_groups && total == d->ring_bytes,
                  "weight sync: the ring of %d buffers for groups 0x%x cannot change to %d buffers for groups 0x%x",
                  d->n_ring, d->ring_groups, n_slots, groups);
    char *dst = (char *)d->ring[slot];
    for (int i = 0; i < n; i++) {
        CUDA_TRY(cudaMemcpyAsync(dst, at[i], len[i], cudaMemcpyDeviceToDevice, gm->stream),
                 "copying %.3f GB of weights into weight-sync buffer %d", len[i] / 1e9, slot);
        dst += len[i];
    }
    const char *whole = (const char *)d->ring[slot];
    TRY(digest_of(d, &whole, &total, 1, &out->digest)); // waits for the copies too
    memcpy(out->handle, &d->ring_handles[slot], sizeof d->ring_handles[slot]);
    out->bytes = (int64_t)total;
    return 0;
}

// The mapping of an exported buffer in this process, opened on first use.
static int open_handle(cuda_device *d, const uint8_t *bytes, void **ptr) {
    for (int i = 0; i < d->n_opened; i++)
        if (!memcmp(&d->opened[i].handle, bytes, sizeof d->opened[i].handle)) return *ptr = d->opened[i].ptr, 0;
    if (d->n_opened == IPC_OPEN_MAX) { // the oldest is no longer in the exporter's ring
        CUDA_TRY(cudaIpcCloseMemHandle(d->opened[0].ptr), "closing an old weight-sync buffer");
        memmove(&d->opened[0], &d->opened[1], sizeof d->opened[0] * (IPC_OPEN_MAX - 1));
        d->n_opened--;
    }
    cudaIpcMemHandle_t h;
    memcpy(&h, bytes, sizeof h);
    CUDA_TRY(cudaIpcOpenMemHandle(ptr, h, cudaIpcMemLazyEnablePeerAccess),
             "opening maye-update's weight-sync buffer (update.weight_sync=cuda_ipc needs maye-update running on "
             "this machine's GPU as the same user; set update.weight_sync=file otherwise)");
    d->opened[d->n_opened].handle = h, d->opened[d->n_opened].ptr = *ptr;
    d->n_opened++;
    return 0;
}

static int dev_weights_import(maye_device_model *dm, unsigned groups, const maye_ipc_weights *in) {
    cuda_device *d = dev(dm);
    cuda_model *gm = &d->gm;
    char *at[SYNC_RANGES];
    size_t len[SYNC_RANGES], total;
    int n = sync_ranges(gm, groups, at, len, &total);
    CHECK_OR_FAIL(in->bytes == (int64_t)total, "the weight-sync buffer holds %lld bytes but this stage's %s model "
                  "takes %zu for the trained groups: maye-update and this stage load different models or dtypes "
                  "(model.path, model.dtype and update.train_* must be the same for every stage)",
                  (long long)in->bytes, dtype_name(gm->dt), total);
    void *src;
    TRY(open_handle(d, in->handle, &src));
    unsigned llm = 1u << MAYE_PARAM_LLM;
    bool to_master = gm->master && (groups & llm);
    const char *from = (const char *)src;
    for (int i = 0; i < n; i++) {
        CUDA_TRY(cudaMemcpyAsync(at[i], from, len[i], cudaMemcpyDeviceToDevice, gm->stream),
                 "copying %.3f GB of weights from the weight-sync buffer", len[i] / 1e9);
        from += len[i];
        // the master follows the bf16 weights before the fp32 norms (some of which live in it) arrive
        if (to_master && at[i] == (char *)gm->weights + gm->group_off[MAYE_PARAM_LLM] * dtype_size(gm->dt))
            TRY(cuda_convert(CUDA_F32, gm->master, gm->dt, at[i], (int64_t)gm->group_len[MAYE_PARAM_LLM], gm->stream));
    }
    uint64_t digest = 0;
    TRY(digest_of(d, (const char *const *)at, len, n, &digest));
    CHECK_OR_FAIL(digest == in->digest, "the weights copied from the weight-sync buffer have checksum 0x%016llx, "
                  "not the handle's 0x%016llx: maye-update reused the buffer while it was copied (its ring is too "
                  "small for update.max_staleness?)", (unsigned long long)digest, (unsigned long long)in->digest);
    return cuda_model_sync(gm);
}

// ----------------------------------------------------------------------------
// the backend

// in the order of maye_backend_ops' fields
static const maye_backend_ops cuda_backend_ops = {
    "cuda",
    cuda_device_count,
    dev_open,
    dev_close,
    dev_reload,
    dev_vision,
    dev_logprobs,
    dev_gen_init,
    dev_gen_run,
    dev_train_init,
    dev_train_forward,
    dev_train_backward,
    dev_train_zero,
    dev_train_clip,
    dev_train_adamw,
    dev_download,
    dev_opt_get,
    dev_opt_set,
    dev_weights_export,
    dev_weights_import,
};

static const maye_backend_ops *backend_ops(void) { return &cuda_backend_ops; }

extern "C" const maye_backend_ops *maye_backend_cuda_ops(void) { return &cuda_backend_ops; }
