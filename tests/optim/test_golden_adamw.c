// Golden test of gradient clipping + one AdamW step against torch: for every fixture model folder whose
// expected.safetensors holds grad.<name> and updated.<name> tensors, load the initial weights of
// model.safetensors into one parameter array (every tensor; trainable = has a grad.*), pack the gradients
// into one gradient array, compare the global norm with rl.grad_norm_before_clip (1e-5 relative), clip to
// manifest rl.clip_grad_norm, take one step with manifest rl.adamw, and compare every updated.<name>
// (1e-6) and every frozen tensor (unchanged).
#include "core/util.h"
#include "io/safetensors.h"
#include "optim/adamw.h"
#include "support/golden.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// Reads lr, betas, eps, weight_decay from manifest rl.adamw and rl.clip_grad_norm.
static int read_hparams(const char *dir, const char *name, maye_adamw_hparams *hp, double *lr, double *clip) {
    char *path = maye_path_join(dir, "manifest.json");
    maye_buf text = {0};
    int rc = -1;
    if (maye_read_file(path, &text) == 0) {
        cJSON *m = cJSON_Parse(text.data);
        const cJSON *rl = cJSON_GetObjectItemCaseSensitive(m, "rl");
        const cJSON *aw = cJSON_GetObjectItemCaseSensitive(rl, "adamw");
        const cJSON *betas = cJSON_GetObjectItemCaseSensitive(aw, "betas");
        if (!cJSON_IsObject(aw) || cJSON_GetArraySize(betas) != 2) {
            fprintf(stderr, "FAIL: %s: manifest rl.adamw with lr, betas[2], eps, weight_decay is missing\n", name);
            test_failures++;
        } else if (test_rl_number(aw, "lr", lr, name) == 0 && test_rl_number(aw, "eps", &hp->eps, name) == 0 &&
                   test_rl_number(aw, "weight_decay", &hp->weight_decay, name) == 0 &&
                   test_rl_number(rl, "clip_grad_norm", clip, name) == 0) {
            hp->beta1 = cJSON_GetArrayItem(betas, 0)->valuedouble;
            hp->beta2 = cJSON_GetArrayItem(betas, 1)->valuedouble;
            rc = 0;
        }
        cJSON_Delete(m);
    } else {
        fprintf(stderr, "FAIL: %s\n", maye_errmsg());
        test_failures++;
    }
    maye_buf_free(&text);
    free(path);
    return rc;
}

// The fixture's gradients may be stored before clipping (their norm is rl.grad_norm_before_clip) or after
// torch's in-place clip_grad_norm_ (their norm is min(1, clip / (norm + 1e-6)) x norm). Before: clip them
// here. After: rebuild the unclipped gradients, check that clipping them gives the norm and the stored
// gradients back, and step with the stored ones (exactly what torch stepped with).
static void check_norm_and_clip(const char *name, const maye_safetensors *exp, int nt, const maye_optim_tensor *table,
                                float *grads, int64_t ng, double clip) {
    const maye_st_tensor *nt_norm = maye_st_find(exp, "rl.grad_norm_before_clip");
    if (!nt_norm || nt_norm->numel != 1) {
        fprintf(stderr, "FAIL: %s: rl.grad_norm_before_clip is missing\n", name);
        test_failures++;
        return;
    }
    float want;
    maye_st_to_f32(nt_norm, &want);
    double stored = maye_grad_norm(nt, table, grads);
    double coef = clip > 0 ? fmin(1.0, clip / ((double)want + 1e-6)) : 1.0;
    char what[256];
    snprintf(what, sizeof what, "%s rl.grad_norm_before_clip", name);
    if (fabs(stored - want) <= 1e-5 * want) {
        float got = (float)maye_grad_clip(nt, table, grads, clip);
        test_close_f32(what, &got, &want, 1, 0, 1e-5);
        fprintf(stderr, "%s: grad norm %.9g (want %.9g, rel diff %.3g)\n", name, got, want, fabs(got - want) / want);
        return;
    }
    if (fabs(stored - want * coef) > 1e-5 * want * coef) {
        fprintf(stderr, "FAIL: %s: the gradients' norm %.9g is neither rl.grad_norm_before_clip %.9g nor its clipped "
                "value %.9g\n", name, stored, want, want * coef);
        test_failures++;
        return;
    }
    fprintf(stderr, "%s: note: the fixture's grad.* are stored after clipping (norm %.9g)\n", name, stored);
    float *unclipped = xmalloc(sizeof(float) * (size_t)(ng ? ng : 1));
    for (int64_t i = 0; i < ng; i++) unclipped[i] = (float)(grads[i] / coef);
    float got = (float)maye_grad_clip(nt, table, unclipped, clip);
    test_close_f32(what, &got, &want, 1, 0, 1e-5);
    snprintf(what, sizeof what, "%s gradients clipped again", name);
    test_close_rel_max(what, unclipped, grads, ng, 1e-5);
    fprintf(stderr, "%s: grad norm %.9g (want %.9g, rel diff %.3g)\n", name, got, want, fabs(got - want) / want);
    free(unclipped);
}

// Returns 1 if the folder holds gradients (and was checked), 0 otherwise.
static int check_folder(const char *dir, const char *name) {
    int checked = 0;
    char *epath = maye_path_join(dir, "expected.safetensors"), *wpath = maye_path_join(dir, "model.safetensors");
    maye_safetensors exp, w;
    if (!maye_file_exists(epath) || !maye_file_exists(wpath) || maye_st_open(&exp, epath) < 0) goto out;
    int ngrad = 0;
    for (int i = 0; i < exp.ntensors; i++) ngrad += !strncmp(exp.tensors[i].name, "grad.", 5);
    if (ngrad == 0) {
        maye_st_close(&exp);
        goto out;
    }
    fprintf(stderr, "%s: %d gradients\n", name, ngrad);
    checked = 1;
    maye_adamw_hparams hp;
    double lr = 0, clip = 0;
    if (read_hparams(dir, name, &hp, &lr, &clip) < 0) {
        maye_st_close(&exp);
        goto out;
    }
    if (maye_st_open(&w, wpath) < 0) {
        fprintf(stderr, "FAIL: %s: %s\n", name, maye_errmsg());
        test_failures++;
        maye_st_close(&exp);
        goto out;
    }
    // every grad.* names a model tensor of the same size
    for (int i = 0; i < exp.ntensors; i++) {
        const maye_st_tensor *g = &exp.tensors[i];
        if (strncmp(g->name, "grad.", 5)) continue;
        const maye_st_tensor *t = maye_st_find(&w, g->name + 5);
        EXPECT(t && t->numel == g->numel, "%s: %s has no model tensor of %lld values", name, g->name,
               (long long)g->numel);
    }
    // the parameter table: every weight; the gradient array packs the trainable ones in the same order
    maye_optim_tensor *table = xcalloc((size_t)w.ntensors, sizeof *table);
    int64_t np = 0, ng = 0;
    for (int i = 0; i < w.ntensors; i++) {
        const maye_st_tensor *t = &w.tensors[i];
        char gname[512];
        snprintf(gname, sizeof gname, "grad.%s", t->name);
        const maye_st_tensor *g = maye_st_find(&exp, gname);
        table[i] = (maye_optim_tensor){.name = t->name, .offset = np, .numel = t->numel,
                                       .trainable = g && g->numel == t->numel, .grad_offset = ng};
        np += t->numel;
        if (table[i].trainable) ng += t->numel;
    }
    float *params = xmalloc(sizeof(float) * (size_t)np), *grads = xmalloc(sizeof(float) * (size_t)(ng ? ng : 1));
    float *initial = xmalloc(sizeof(float) * (size_t)np);
    for (int i = 0; i < w.ntensors; i++) {
        maye_st_to_f32(&w.tensors[i], params + table[i].offset);
        if (!table[i].trainable) continue;
        char gname[512];
        snprintf(gname, sizeof gname, "grad.%s", w.tensors[i].name);
        maye_st_to_f32(maye_st_find(&exp, gname), grads + table[i].grad_offset);
    }
    memcpy(initial, params, sizeof(float) * (size_t)np);

    check_norm_and_clip(name, &exp, w.ntensors, table, grads, ng, clip);
    maye_adamw opt;
    EXPECT_OK(maye_adamw_init(&opt, &hp, w.ntensors, table));
    maye_adamw_step(&opt, params, grads, lr);
    double maxd = 0;
    int compared = 0;
    for (int i = 0; i < w.ntensors; i++) {
        const maye_optim_tensor *t = &table[i];
        if (!t->trainable) {
            EXPECT(!memcmp(params + t->offset, initial + t->offset, sizeof(float) * (size_t)t->numel),
                   "%s: frozen tensor %s changed", name, t->name);
            continue;
        }
        char uname[512], what[600];
        snprintf(uname, sizeof uname, "updated.%s", t->name);
        const maye_st_tensor *u = maye_st_find(&exp, uname);
        if (!u || u->numel != t->numel) {
            fprintf(stderr, "FAIL: %s: %s is missing or has another size\n", name, uname);
            test_failures++;
            continue;
        }
        float *want = xmalloc(sizeof(float) * (size_t)t->numel);
        maye_st_to_f32(u, want);
        snprintf(what, sizeof what, "%s %s", name, uname);
        test_close_f32(what, params + t->offset, want, t->numel, 1e-6, 0);
        for (int64_t k = 0; k < t->numel; k++) maxd = fmax(maxd, fabs(params[t->offset + k] - want[k]));
        free(want);
        compared++;
    }
    EXPECT(compared == ngrad, "%s: compared %d updated tensors, %d gradients", name, compared, ngrad);
    fprintf(stderr, "%s: %d updated tensors, max |diff| %.3g\n", name, compared, maxd);
    maye_adamw_free(&opt);
    free(params), free(grads), free(initial), free(table);
    maye_st_close(&w);
    maye_st_close(&exp);
out:
    free(epath), free(wpath);
    return checked;
}

int main(void) { return test_golden_main(check_folder, "no fixture folder with grad.* tensors"); }
