// Backend selection, the device-model calls (dispatch to the backend's operations) and generation on either
// backend (see backend.h).
#include "backend/backend.h"

#include "core/error.h"
#include "data/inputs.h"

#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// backends

// Defined by lib/backend/cuda.cu, which only builds made with `make CUDA=1` link (the stage binaries pull it in
// with -Wl,-u); without it this weak reference is NULL.
const maye_backend_ops *maye_backend_cuda_ops(void) __attribute__((weak));

const maye_backend_ops *maye_backend_cuda(void) { return maye_backend_cuda_ops ? maye_backend_cuda_ops() : NULL; }

// ----------------------------------------------------------------------------
// device models

int maye_device_open(maye_device_model **dm, const maye_config *cfg, const maye_model *m, bool train) {
    *dm = NULL;
    TRY(maye_run_check_backend(cfg));
    if (strcmp(cfg->model.device, "cuda")) return 0;
    const maye_backend_ops *ops = maye_backend_cuda();
    CHECK_OR_FAIL(ops->device_count() > 0, "model.device = cuda: no CUDA device is visible (no GPU, no driver, or "
                  "CUDA_VISIBLE_DEVICES hides them); set model.device=cpu model.dtype=fp32 to run on the CPU");
    if (ops->open(dm, m, cfg->model.dtype, train, cfg->model.profile) < 0) {
        *dm = NULL;
        return maye_fail_ctx("model.device = cuda, model.dtype = %s", cfg->model.dtype);
    }
    return 0;
}

void maye_device_close(maye_device_model *dm) {
    if (dm) dm->ops->close(dm);
}

int maye_device_reload(maye_device_model *dm, const maye_model *m, unsigned groups) {
    return dm->ops->reload(dm, m, groups);
}

int maye_device_vision(maye_device_model *dm, const float *pixels, int64_t P, const int64_t *grid_thw, int n_images,
                       float *out) {
    return dm->ops->vision(dm, pixels, P, grid_thw, n_images, out);
}

int maye_device_logprobs(maye_device_model *dm, const maye_llm_batch *b, const int64_t *targets, float temperature,
                         float *logprobs, float *entropy) {
    return dm->ops->logprobs(dm, b, targets, temperature, logprobs, entropy);
}

int maye_device_gen_init(maye_device_model *dm, const maye_gen_config *cfg) { return dm->ops->gen_init(dm, cfg); }

int maye_device_gen_run(maye_device_model *dm, const maye_gen_request *reqs, int n, maye_gen_result *res,
                        maye_gen_stats *stats) {
    return dm->ops->gen_run(dm, reqs, n, res, stats);
}

int maye_device_train_init(maye_device_model *dm, int T_cap, int B_cap, bool recompute) {
    return dm->ops->train_init(dm, T_cap, B_cap, recompute);
}

int maye_device_train_forward(maye_device_model *dm, const maye_llm_batch *b, const int64_t *targets,
                              float temperature, float *logprobs, float *entropy) {
    return dm->ops->train_forward(dm, b, targets, temperature, logprobs, entropy);
}

int maye_device_train_backward(maye_device_model *dm, const maye_llm_batch *b, const int64_t *targets,
                               float temperature, const float *logprobs, const float *dlogprobs) {
    return dm->ops->train_backward(dm, b, targets, temperature, logprobs, dlogprobs);
}

int maye_device_train_zero(maye_device_model *dm) { return dm->ops->train_zero(dm); }

int maye_device_train_clip(maye_device_model *dm, double max_norm, double *norm) {
    return dm->ops->train_clip(dm, max_norm, norm);
}

int maye_device_train_adamw(maye_device_model *dm, const maye_adamw_hparams *hp, double lr) {
    return dm->ops->train_adamw(dm, hp, lr);
}

int maye_device_download(maye_device_model *dm, maye_model *m, unsigned groups) {
    return dm->ops->download(dm, m, groups);
}

int maye_device_opt_get(maye_device_model *dm, maye_weights *m, maye_weights *v) { return dm->ops->opt_get(dm, m, v); }

int maye_device_opt_set(maye_device_model *dm, const maye_weights *m, const maye_weights *v, int64_t step) {
    return dm->ops->opt_set(dm, m, v, step);
}

int maye_device_export(maye_device_model *dm, unsigned groups, int slot, int n_slots, maye_ipc_weights *out) {
    return dm->ops->weights_export(dm, groups, slot, n_slots, out);
}

int maye_device_import(maye_device_model *dm, unsigned groups, const maye_ipc_weights *in) {
    return dm->ops->weights_import(dm, groups, in);
}

// ----------------------------------------------------------------------------
// generation on either backend

int maye_generator_init(maye_generator *g, maye_device_model *dev, const maye_model *m, const maye_gen_config *cfg) {
    memset(g, 0, sizeof *g);
    if (!dev) return maye_gen_engine_init(&g->cpu, m, cfg);
    // the stop strings stay on the host: the checks of maye_gen_engine_init for them, then the device's own
    for (int i = 0; i < cfg->n_stop_strings; i++)
        CHECK_OR_FAIL(cfg->stop_strings[i] && cfg->stop_strings[i][0], "rollout.stop_strings[%d] is empty", i);
    CHECK_OR_FAIL(cfg->n_stop_strings == 0 || cfg->tok, "rollout.stop_strings need a tokenizer to decode the text");
    maye_gen_config dc = *cfg;
    dc.stop_strings = NULL, dc.n_stop_strings = 0, dc.tok = NULL;
    TRY(maye_device_gen_init(dev, &dc));
    g->dev = dev;
    g->cfg = *cfg;
    g->cfg.stop_strings = xmalloc(sizeof(char *) * (size_t)(cfg->n_stop_strings + 1));
    for (int i = 0; i < cfg->n_stop_strings; i++) g->cfg.stop_strings[i] = xstrdup(cfg->stop_strings[i]);
    return 0;
}

void maye_generator_free(maye_generator *g) {
    if (g->dev) {
        for (int i = 0; i < g->cfg.n_stop_strings; i++) free(g->cfg.stop_strings[i]);
        free(g->cfg.stop_strings);
    } else {
        maye_gen_engine_free(&g->cpu);
    }
    memset(g, 0, sizeof *g);
}

int maye_generator_run(maye_generator *g, const maye_gen_request *reqs, int n, maye_gen_result *res,
                       maye_progress *progress) {
    if (!g->dev) {
        g->cpu.progress = progress;
        int rc = maye_gen_run(&g->cpu, reqs, n, res);
        g->cpu.progress = NULL;
        return rc;
    }
    if (n <= 0) return 0;
    TRY(maye_device_gen_run(g->dev, reqs, n, res, &g->stats));
    for (int r = 0; r < n; r++)
        for (int s = 0; s < g->cfg.n; s++)
            if (maye_gen_output_finish(&g->cfg, &res[r].out[s]) < 0) {
                maye_gen_result_free(res, n, g->cfg.n);
                return maye_fail_ctx("%s, response %d", reqs[r].name ? reqs[r].name : "request", s);
            }
    if (progress) maye_progress_update(progress, progress->done + (int64_t)n * g->cfg.n);
    return 0;
}

maye_gen_stats maye_generator_stats(const maye_generator *g) { return g->dev ? g->stats : g->cpu.stats; }
