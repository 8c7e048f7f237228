// Trainer checkpoints: atomic Hugging Face-layout directories with the optimizer state (see update.h).
#include "core/error.h"
#include "core/util.h"
#include "rl/update.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int copy_file(const char *from, const char *to) {
    maye_buf b = {0};
    int rc = maye_read_file(from, &b);
    if (rc == 0) rc = maye_write_file_atomic(to, b.data, b.len);
    maye_buf_free(&b);
    return rc;
}

static int remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = maye_path_join(dir, e->d_name);
        if (maye_is_dir(p)) remove_tree(p);
        else unlink(p);
        free(p);
    }
    closedir(d);
    return rmdir(dir);
}

int maye_trainer_save(maye_trainer *tr, const char *run_dir, const char *source_dir, char **out_dir) {
    TRY(maye_trainer_fetch_optimizer(tr));
    char name[64], tmpname[96];
    snprintf(name, sizeof name, "checkpoints/step-%06lld", (long long)tr->steps_done);
    snprintf(tmpname, sizeof tmpname, "checkpoints/.step-%06lld.tmp.%d", (long long)tr->steps_done, (int)getpid());
    char *final = maye_path_join(run_dir, name), *tmp = maye_path_join(run_dir, tmpname);
    remove_tree(tmp);
    maye_dtype dtype = !strcmp(tr->cfg->update.save_dtype, "fp32") ? MAYE_F32 : MAYE_BF16;
    int rc = maye_model_save(&tr->model, tmp, dtype);
    char *p;
    if (rc == 0 && dtype != MAYE_F32) {
        p = maye_path_join(tmp, "master.safetensors");
        // every group, frozen ones too: a resumed run must see exactly the weights it stopped with
        rc = maye_model_save_groups(&tr->model, p, (1u << MAYE_PARAM_VISION) | (1u << MAYE_PARAM_MERGER) |
                                                       (1u << MAYE_PARAM_LLM), MAYE_F32, NULL, 0);
        free(p);
    }
    if (rc == 0) {
        p = maye_path_join(tmp, "optimizer.safetensors");
        rc = maye_adamw_save(&tr->opt, p);
        free(p);
    }
    const char *extras[] = {"tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"};
    for (int i = 0; i < 3 && rc == 0 && source_dir && source_dir[0]; i++) {
        char *from = maye_path_join(source_dir, extras[i]);
        if (maye_file_exists(from)) {
            char *to = maye_path_join(tmp, extras[i]);
            rc = copy_file(from, to);
            free(to);
        }
        free(from);
    }
    if (rc == 0) {
        char state[256];
        snprintf(state, sizeof state,
                 "{\"steps_done\": %lld, \"version\": %lld, \"seed\": %lld, \"config_digest\": \"0x%016llx\"}\n",
                 (long long)tr->steps_done, (long long)tr->version, (long long)tr->cfg->seed,
                 (unsigned long long)maye_config_digest(tr->cfg));
        p = maye_path_join(tmp, "state.json");
        rc = maye_write_file_atomic(p, state, strlen(state));
        free(p);
    }
    if (rc == 0) {
        remove_tree(final); // a checkpoint of the same step from an interrupted earlier attempt
        if (rename(tmp, final) != 0) rc = maye_fail("cannot rename '%s' to '%s': %s", tmp, final, strerror(errno));
    }
    if (rc == 0) {
        p = maye_path_join(run_dir, "checkpoints/latest");
        char line[80];
        snprintf(line, sizeof line, "step-%06lld\n", (long long)tr->steps_done);
        rc = maye_write_file_atomic(p, line, strlen(line));
        free(p);
    }
    if (rc < 0) {
        remove_tree(tmp);
        maye_fail_ctx("writing checkpoint %s (the previous checkpoint is untouched)", final);
    } else if (out_dir) {
        *out_dir = xstrdup(final);
    }
    free(tmp);
    if (rc < 0 || !out_dir) free(final);
    return rc;
}

int maye_checkpoint_state(const char *ckpt_dir, int64_t *steps_done, int64_t *version) {
    char *p = maye_path_join(ckpt_dir, "state.json");
    maye_buf b = {0};
    int rc = maye_read_file(p, &b);
    cJSON *o = rc == 0 ? cJSON_Parse(b.data) : NULL;
    cJSON *s = o ? cJSON_GetObjectItemCaseSensitive(o, "steps_done") : NULL;
    cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, "version") : NULL;
    if (rc == 0 && (!cJSON_IsNumber(s) || !cJSON_IsNumber(v)))
        rc = maye_fail("'%s': not a checkpoint state (steps_done and version missing)", p);
    if (rc == 0) *steps_done = (int64_t)s->valuedouble, *version = (int64_t)v->valuedouble;
    cJSON_Delete(o);
    maye_buf_free(&b);
    free(p);
    return rc;
}

int maye_checkpoint_latest(const char *run_dir, char **dir) {
    char *p = maye_path_join(run_dir, "checkpoints/latest");
    maye_buf b = {0};
    int rc = maye_read_file(p, &b);
    free(p);
    if (rc < 0) {
        maye_buf_free(&b);
        return maye_fail("run '%s' has no checkpoint yet (checkpoints/latest is missing)", run_dir);
    }
    while (b.len && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == ' ')) b.data[--b.len] = 0;
    char rel[256];
    snprintf(rel, sizeof rel, "checkpoints/%s", b.data);
    maye_buf_free(&b);
    *dir = maye_path_join(run_dir, rel);
    char *state = maye_path_join(*dir, "state.json");
    int ok = maye_file_exists(state);
    free(state);
    if (!ok) {
        rc = maye_fail("'%s' named by checkpoints/latest is not a complete checkpoint", *dir);
        free(*dir);
        *dir = NULL;
    }
    return rc;
}

int maye_trainer_resume(maye_trainer *tr, const char *ckpt_dir) {
    // the fp32 master weights came with maye_model_load(ckpt_dir)
    char *opt = maye_path_join(ckpt_dir, "optimizer.safetensors");
    int rc = maye_adamw_load(&tr->opt, opt);
    free(opt);
    TRY(rc);
    return maye_checkpoint_state(ckpt_dir, &tr->steps_done, &tr->version);
}
