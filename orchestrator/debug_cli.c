// The option loop and the input-sequence reader shared by `maye init`, `maye forward` and `maye generate`
// (debug_cli.h).
#include "debug_cli.h"

#include "core/error.h"
#include "core/log.h"
#include "io/safetensors.h"
#include "kernels/cpu/kernels.h"

#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// options

int maye_debug_opts_parse(int argc, char **argv, const maye_debug_opt *opts, int n, const char *cmd,
                          void (*usage)(FILE *)) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        const maye_debug_opt *o = NULL;
        for (int k = 0; k < n && !o; k++)
            if (!strcmp(a, opts[k].name)) o = &opts[k];
        if (!o) {
            log_error("unknown argument '%s' (see maye %s --help)", a, cmd);
            return 2;
        }
        if (!o->value) {
            *o->flag = 1;
            continue;
        }
        if (i + 1 >= argc) {
            log_error("option %s needs a value (see maye %s --help)", a, cmd);
            return 2;
        }
        *o->value = argv[++i];
    }
    return -1;
}

// ----------------------------------------------------------------------------
// one input sequence

void maye_debug_input_free(maye_debug_input *in) {
    free(in->ids), free(in->grid), free(in->pixels);
    memset(in, 0, sizeof *in);
}

int maye_debug_input_read(maye_debug_input *in, const maye_model_config *c, const char *path, const char *prefix) {
    memset(in, 0, sizeof *in);
    maye_safetensors st;
    TRY(maye_st_open(&st, path));
    int rc = 0;
    char n_ids[256], n_px[256], n_grid[256];
    snprintf(n_ids, sizeof n_ids, "%sinput_ids", prefix);
    snprintf(n_px, sizeof n_px, "%spixel_values", prefix);
    snprintf(n_grid, sizeof n_grid, "%simage_grid_thw", prefix);
    const maye_st_tensor *ids = maye_st_find(&st, n_ids), *px = maye_st_find(&st, n_px),
                         *grid = maye_st_find(&st, n_grid);
    if (!ids) rc = maye_fail("'%s': missing tensor '%s' ([L] token ids)", path, n_ids);
    else if (!(ids->ndim == 1 || (ids->ndim == 2 && ids->shape[0] == 1)) || ids->numel < 1)
        rc = maye_fail("'%s': %s must be a non-empty [L] (or [1, L]) tensor", path, n_ids);
    else if (!px != !grid)
        rc = maye_fail("'%s': give both %s and %s, or neither (text only)", path, n_px, n_grid);
    if (rc == 0) {
        in->L = ids->numel;
        in->ids = xmalloc(sizeof(int64_t) * (size_t)in->L);
        rc = maye_st_to_i64(ids, in->ids);
        if (rc < 0) maye_fail_ctx("'%s'", path);
    }
    if (rc == 0 && px) {
        int64_t ps[2] = {-1, c->vision.patch_dim}, gs[2] = {-1, 3};
        rc = maye_st_expect(&st, n_px, 2, ps, NULL);
        if (rc == 0) rc = maye_st_expect(&st, n_grid, 2, gs, NULL);
        if (rc == 0 && px->dtype != MAYE_F32 && px->dtype != MAYE_BF16 && px->dtype != MAYE_F16)
            rc = maye_fail("'%s': %s must be a float tensor (F32, BF16 or F16)", path, n_px);
        if (rc == 0) {
            in->P = px->shape[0], in->n_img = grid->shape[0];
            in->pixels = xmalloc(sizeof(float) * (size_t)(px->numel ? px->numel : 1));
            maye_st_to_f32(px, in->pixels);
            in->grid = xmalloc(sizeof(int64_t) * (size_t)(grid->numel ? grid->numel : 1));
            rc = maye_st_to_i64(grid, in->grid);
            if (rc < 0) maye_fail_ctx("'%s'", path);
        }
    }
    if (rc == 0 && in->L >= (1 << 30)) rc = maye_fail("'%s': %lld tokens are too many", path, (long long)in->L);
    if (rc == 0 && maye_vision_check(c, in->P, in->grid, (int)in->n_img, &in->n_tok) < 0)
        rc = maye_fail_ctx("'%s'", path);
    maye_st_close(&st);
    if (rc < 0) maye_debug_input_free(in);
    return rc;
}

int maye_debug_run(const char *model_dir, const char *in_path, const char *prefix, int64_t threads,
                   int (*fn)(const maye_model *m, const maye_debug_input *in, void *arg), void *arg) {
    cpu_set_threads((int)threads);
    maye_model m;
    if (maye_model_load(&m, model_dir) < 0) {
        maye_report_error();
        return 1;
    }
    maye_debug_input in;
    int rc = maye_debug_input_read(&in, &m.cfg, in_path, prefix);
    if (rc == 0) {
        rc = fn(&m, &in, arg);
        if (rc < 0) maye_fail_ctx("'%s'", in_path);
        maye_debug_input_free(&in);
    }
    if (rc < 0) maye_report_error();
    maye_model_free(&m);
    return rc < 0 ? 1 : 0;
}
