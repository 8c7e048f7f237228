// AdamW, gradient clipping and optimizer-state files (see adamw.h). Element-wise updates run in fp32 in the
// order torch uses (so one step matches torch.optim.AdamW to rounding); reductions run in double over fixed
// chunks, so results do not depend on the number of threads.
#include "optim/adamw.h"

#include "core/error.h"
#include "core/util.h"
#include "io/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 65536 // elements per partial sum / per parallel work item

// ----------------------------------------------------------------------------
// setup

int maye_adamw_hparams_from_config(maye_adamw_hparams *hp, const maye_config *cfg) {
    const typeof(cfg->update) *u = &cfg->update;
    CHECK_OR_FAIL(u->beta1 >= 0 && u->beta1 < 1, "update.beta1 is %g: it must be in [0, 1)", u->beta1);
    CHECK_OR_FAIL(u->beta2 >= 0 && u->beta2 < 1, "update.beta2 is %g: it must be in [0, 1)", u->beta2);
    CHECK_OR_FAIL(u->eps > 0, "update.eps is %g: it must be > 0", u->eps);
    CHECK_OR_FAIL(u->weight_decay >= 0, "update.weight_decay is %g: it must be >= 0", u->weight_decay);
    *hp = (maye_adamw_hparams){.beta1 = u->beta1, .beta2 = u->beta2, .eps = u->eps, .weight_decay = u->weight_decay};
    return 0;
}

int maye_adamw_init(maye_adamw *opt, const maye_adamw_hparams *hp, int ntensors, const maye_optim_tensor *tensors) {
    memset(opt, 0, sizeof *opt);
    for (int i = 0; i < ntensors; i++) {
        const maye_optim_tensor *t = &tensors[i];
        CHECK_OR_FAIL(t->name && t->name[0], "optimizer tensor %d has no name", i);
        CHECK_OR_FAIL(t->numel >= 0 && t->offset >= 0 && (!t->trainable || t->grad_offset >= 0),
                      "optimizer tensor '%s': negative size or offset", t->name);
        for (int j = 0; j < i; j++)
            CHECK_OR_FAIL(strcmp(tensors[j].name, t->name), "optimizer tensor '%s' is listed twice", t->name);
    }
    opt->hp = *hp;
    opt->ntensors = ntensors;
    opt->tensors = xmalloc(sizeof(maye_optim_tensor) * (size_t)(ntensors ? ntensors : 1));
    opt->state_offset = xmalloc(sizeof(int64_t) * (size_t)(ntensors ? ntensors : 1));
    for (int i = 0; i < ntensors; i++) {
        opt->tensors[i] = tensors[i];
        opt->tensors[i].name = xstrdup(tensors[i].name);
        opt->state_offset[i] = tensors[i].trainable ? opt->nstate : -1;
        if (tensors[i].trainable) opt->nstate += tensors[i].numel;
    }
    opt->m = xcalloc((size_t)(2 * opt->nstate + 1), sizeof(float));
    opt->v = opt->m + opt->nstate;
    return 0;
}

void maye_adamw_free(maye_adamw *opt) {
    for (int i = 0; i < opt->ntensors; i++) free((char *)opt->tensors[i].name);
    free(opt->tensors), free(opt->state_offset), free(opt->m);
    memset(opt, 0, sizeof *opt);
}

// ----------------------------------------------------------------------------
// the step

void maye_adamw_step(maye_adamw *opt, float *params, const float *grads, double lr) {
    opt->step++;
    const double t = (double)opt->step;
    const float decay = (float)(1.0 - lr * opt->hp.weight_decay);
    const float w1 = (float)(1.0 - opt->hp.beta1), b2 = (float)opt->hp.beta2, w2 = (float)(1.0 - opt->hp.beta2);
    const float neg_step_size = (float)(-(lr / (1.0 - pow(opt->hp.beta1, t))));
    const float bc2_sqrt = (float)sqrt(1.0 - pow(opt->hp.beta2, t));
    const float eps = (float)opt->hp.eps;
    for (int k = 0; k < opt->ntensors; k++) {
        const maye_optim_tensor *tn = &opt->tensors[k];
        if (!tn->trainable) continue;
        float *p = params + tn->offset;
        const float *g = grads + tn->grad_offset;
        float *m = opt->m + opt->state_offset[k], *v = opt->v + opt->state_offset[k];
        int64_t n = tn->numel;
#pragma omp parallel for schedule(static) if (n > CHUNK)
        for (int64_t i = 0; i < n; i++) {
            float gi = g[i];
            float pi = p[i] * decay;
            float mi = m[i] + w1 * (gi - m[i]);
            float vi = v[i] * b2;
            vi = vi + w2 * gi * gi;
            float denom = sqrtf(vi) / bc2_sqrt + eps;
            p[i] = pi + neg_step_size * (mi / denom);
            m[i] = mi, v[i] = vi;
        }
    }
}

// ----------------------------------------------------------------------------
// clipping

double maye_grad_norm(int ntensors, const maye_optim_tensor *tensors, const float *grads) {
    double total = 0;
    for (int k = 0; k < ntensors; k++) {
        if (!tensors[k].trainable) continue;
        const float *g = grads + tensors[k].grad_offset;
        int64_t n = tensors[k].numel, nchunks = (n + CHUNK - 1) / CHUNK;
        double *partial = xmalloc(sizeof(double) * (size_t)(nchunks ? nchunks : 1));
#pragma omp parallel for schedule(static) if (nchunks > 1)
        for (int64_t c = 0; c < nchunks; c++) {
            int64_t end = (c + 1) * CHUNK < n ? (c + 1) * CHUNK : n;
            double s = 0;
            for (int64_t i = c * CHUNK; i < end; i++) s += (double)g[i] * (double)g[i];
            partial[c] = s;
        }
        for (int64_t c = 0; c < nchunks; c++) total += partial[c];
        free(partial);
    }
    return sqrt(total);
}

double maye_grad_clip(int ntensors, const maye_optim_tensor *tensors, float *grads, double max_norm) {
    double norm = maye_grad_norm(ntensors, tensors, grads);
    if (max_norm <= 0 || !isfinite(norm)) return norm;
    float coef = (float)max_norm / ((float)norm + 1e-6f);
    if (coef > 1.0f) coef = 1.0f;
    for (int k = 0; k < ntensors; k++) {
        if (!tensors[k].trainable) continue;
        float *g = grads + tensors[k].grad_offset;
        int64_t n = tensors[k].numel;
#pragma omp parallel for schedule(static) if (n > CHUNK)
        for (int64_t i = 0; i < n; i++) g[i] *= coef;
    }
    return norm;
}

// ----------------------------------------------------------------------------
// state files

static char *state_name(const char *prefix, const char *name) {
    maye_buf b = {0};
    maye_buf_printf(&b, "%s.%s", prefix, name);
    return b.data;
}

int maye_adamw_save(const maye_adamw *opt, const char *path) {
    maye_st_writer w;
    maye_st_writer_init(&w);
    int64_t one[1] = {1}, step[1] = {opt->step};
    maye_st_writer_add(&w, "step", MAYE_I64, 1, one, step);
    for (int k = 0; k < opt->ntensors; k++) {
        if (!opt->tensors[k].trainable) continue;
        int64_t shape[1] = {opt->tensors[k].numel};
        char *mn = state_name("m", opt->tensors[k].name), *vn = state_name("v", opt->tensors[k].name);
        maye_st_writer_add(&w, mn, MAYE_F32, 1, shape, opt->m + opt->state_offset[k]);
        maye_st_writer_add(&w, vn, MAYE_F32, 1, shape, opt->v + opt->state_offset[k]);
        free(mn), free(vn);
    }
    char hp[256];
    snprintf(hp, sizeof hp, "{\"beta1\": %.17g, \"beta2\": %.17g, \"eps\": %.17g, \"weight_decay\": %.17g}",
             opt->hp.beta1, opt->hp.beta2, opt->hp.eps, opt->hp.weight_decay);
    maye_st_writer_meta(&w, "format", "maye-adamw");
    maye_st_writer_meta(&w, "hparams", hp);
    int rc = maye_st_writer_save(&w, path);
    maye_st_writer_free(&w);
    if (rc < 0) return maye_fail_ctx("saving the optimizer state");
    return 0;
}

// Copies the state tensor `prefix.name` into dst (numel floats).
static int load_state_tensor(const maye_safetensors *st, const char *path, const char *prefix, const char *name,
                             int64_t numel, float *dst) {
    char *full = state_name(prefix, name);
    const maye_st_tensor *t = maye_st_find(st, full);
    int rc = 0;
    if (!t) rc = maye_fail("optimizer state '%s' has no tensor '%s': it was saved for other trainable tensors "
                           "(check update.train_llm / train_connector / train_vit)", path, full);
    else if (t->dtype != MAYE_F32 || t->numel != numel)
        rc = maye_fail("optimizer state '%s': tensor '%s' is %s with %lld values, expected F32 with %lld", path, full,
                       maye_dtype_name(t->dtype), (long long)t->numel, (long long)numel);
    else
        memcpy(dst, t->data, sizeof(float) * (size_t)numel);
    free(full);
    return rc;
}

int maye_adamw_load(maye_adamw *opt, const char *path) {
    maye_safetensors st;
    TRY(maye_st_open(&st, path));
    int rc = 0, expected = 1;
    const maye_st_tensor *step = maye_st_find(&st, "step");
    int64_t step_value = 0;
    if (!step || step->numel != 1 || maye_st_to_i64(step, &step_value) < 0 || step_value < 0)
        rc = maye_fail("optimizer state '%s' lacks a valid 'step' tensor (I64 [1])", path);
    for (int k = 0; k < opt->ntensors && rc == 0; k++) {
        const maye_optim_tensor *t = &opt->tensors[k];
        if (!t->trainable) continue;
        expected += 2;
        rc = load_state_tensor(&st, path, "m", t->name, t->numel, opt->m + opt->state_offset[k]);
        if (rc == 0) rc = load_state_tensor(&st, path, "v", t->name, t->numel, opt->v + opt->state_offset[k]);
    }
    if (rc == 0 && st.ntensors != expected)
        rc = maye_fail("optimizer state '%s' holds %d tensors but this run trains tensors with %d state tensors: "
                       "it was saved with other trainable tensors (check update.train_*)",
                       path, st.ntensors, expected);
    if (rc == 0) {
        opt->step = step_value;
    } else { // a half-loaded state is never used
        memset(opt->m, 0, sizeof(float) * (size_t)(2 * opt->nstate));
        opt->step = 0;
    }
    maye_st_close(&st);
    return rc;
}
