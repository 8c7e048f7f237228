// The CUDA backend of the stages (backend/backend.h): a device model is the GPU model of lib/model/cuda
// (weights uploaded from the stage's CPU model in fp32 or bf16) plus what each stage drives on it: packed
// activations for scoring (maye-traj), the slab-KV generator (maye-rollout), or the language model's training
// state (maye-update: gradients, AdamW moments and fp32 masters on the device). Nothing here computes: every
// call is one of model/cuda's tested entry points, with the host <-> device copies around it. Image features
// cross as fp32 host rows (the model's dtype on the device: bf16 rounding is exact both ways).
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

// ----------------------------------------------------------------------------
// state

struct cuda_device {
    maye_device_model base; // first: the handle the stages hold
    cuda_model gm;
    bool train;             // opened with training state (fp32 masters in bf16)
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
};

static cuda_ctx *ctx_shared; // one context (cuBLASLt handle and workspace) for every device model of the process
static int ctx_users;

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
// life cycle

static int dev_open(maye_device_model **out, const maye_model *m, const char *dtype, bool train) {
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
    *out = &d->base;
    return 0;
}

static void dev_close(maye_device_model *dm) {
    cuda_device *d = dev(dm);
    cuda_model_sync(&d->gm);
    if (d->have_train) cuda_llm_train_free(&d->tr);
    if (d->have_gen) cuda_gen_free(&d->gen);
    if (d->have_acts) cuda_llm_acts_free(&d->acts);
    if (d->embeds) cudaFree(d->embeds);
    if (d->f32) cudaFree(d->f32);
    cuda_model_free(&d->gm);
    free(d);
    if (--ctx_users == 0) cuda_ctx_free(ctx_shared), ctx_shared = NULL;
}

static int dev_reload(maye_device_model *dm, const maye_model *m, unsigned groups) {
    cuda_model *gm = &dev(dm)->gm;
    unsigned llm = 1u << MAYE_PARAM_LLM;
    if (gm->master && (groups & llm)) {
        size_t off = gm->group_off[MAYE_PARAM_LLM];
        TRY(cuda_model_stack(gm, gm->master, CUDA_F32, off, llm, &m->w));
        TRY(cuda_convert(gm->dt, (char *)gm->weights + off * dtype_size(gm->dt), CUDA_F32, gm->master,
                         (int64_t)gm->group_len[MAYE_PARAM_LLM], gm->stream));
        groups &= ~llm;
    }
    if (groups) TRY(cuda_model_stack(gm, gm->weights, gm->dt, 0, groups, &m->w));
    return cuda_model_sync(gm);
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
};

static const maye_backend_ops *backend_ops(void) { return &cuda_backend_ops; }

extern "C" const maye_backend_ops *maye_backend_cuda_ops(void) { return &cuda_backend_ops; }
