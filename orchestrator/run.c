// Run directories and evaluation pipelines (see run.h).
#include "run.h"

#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "io/records.h"
#include "io/steps.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

// ----------------------------------------------------------------------------
// run directory

static int write_run_json(const maye_run *run, const char *status, uint64_t digest) {
    char *path = maye_path_join(run->dir, "run.json");
    cJSON *o = cJSON_CreateObject();
    maye_buf old = {0};
    if (maye_read_file(path, &old) == 0) { // keep created / digest of an existing run
        cJSON *prev = cJSON_Parse(old.data);
        if (prev) cJSON_Delete(o), o = prev;
    }
    maye_buf_free(&old);
    char created[32], dig[32];
    time_t now = time(NULL);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    snprintf(dig, sizeof dig, "0x%016llx", (unsigned long long)digest);
    const char *keys[] = {"kind", "status"};
    const char *vals[] = {run->kind, status};
    for (int i = 0; i < 2; i++) {
        cJSON_DeleteItemFromObjectCaseSensitive(o, keys[i]);
        cJSON_AddStringToObject(o, keys[i], vals[i]);
    }
    if (!cJSON_GetObjectItemCaseSensitive(o, "seed")) cJSON_AddNumberToObject(o, "seed", (double)run->seed);
    if (!cJSON_GetObjectItemCaseSensitive(o, "created")) cJSON_AddStringToObject(o, "created", created);
    if (digest && !cJSON_GetObjectItemCaseSensitive(o, "config_digest")) cJSON_AddStringToObject(o, "config_digest", dig);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    maye_buf b = {0};
    maye_buf_printf(&b, "%s\n", text);
    int rc = maye_write_file_atomic(path, b.data, b.len);
    free(text), free(path);
    maye_buf_free(&b);
    return rc;
}

// Fails when dir already holds a run of another kind: its config.yaml and run.json would be overwritten.
static int check_kind(const char *dir, const char *kind) {
    char *path = maye_path_join(dir, "run.json");
    maye_buf text = {0};
    int rc = 0;
    if (maye_read_file(path, &text) == 0) {
        cJSON *o = cJSON_Parse(text.data);
        const cJSON *k = o ? cJSON_GetObjectItemCaseSensitive(o, "kind") : NULL;
        if (cJSON_IsString(k) && strcmp(k->valuestring, kind))
            rc = maye_fail("'%s' holds a run of kind '%s' (%s): a '%s' run there would overwrite its config.yaml and "
                           "run.json; use another directory", dir, k->valuestring, path, kind);
        cJSON_Delete(o);
    }
    maye_buf_free(&text);
    free(path);
    return rc;
}

int maye_run_create(maye_run *run, const char *dir, const char *kind, maye_config *cfg) {
    memset(run, 0, sizeof *run);
    TRY(check_kind(dir, kind));
    run->dir = xstrdup(dir);
    run->kind = xstrdup(kind);
    run->seed = cfg->seed;
    const char *subdirs[] = {"logs", "metrics", "eval", "weights", "checkpoints"};
    for (int i = 0; i < 5; i++) {
        char *p = maye_path_join(dir, subdirs[i]);
        int rc = maye_mkdir_p(p);
        free(p);
        TRY(rc);
    }
    free(cfg->run_dir);
    cfg->run_dir = xstrdup(dir);
    run->config_path = maye_path_join(dir, "config.yaml");
    char *yaml = maye_config_to_yaml(cfg);
    int rc = maye_write_file_atomic(run->config_path, yaml, strlen(yaml));
    free(yaml);
    TRY(rc);
    return write_run_json(run, "running", maye_config_digest(cfg));
}

int maye_run_set_status(const maye_run *run, const char *status) { return write_run_json(run, status, 0); }

void maye_run_free(maye_run *run) {
    free(run->dir), free(run->config_path), free(run->kind);
    memset(run, 0, sizeof *run);
}

int maye_run_append_line(const maye_run *run, const char *rel, const char *line) {
    char *path = maye_path_join(run->dir, rel);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        int rc = maye_fail("cannot open '%s': %s", path, strerror(errno));
        free(path);
        return rc;
    }
    maye_buf b = {0};
    maye_buf_printf(&b, "%s\n", line);
    ssize_t w = write(fd, b.data, b.len);
    int rc = w == (ssize_t)b.len ? 0 : maye_fail("cannot append to '%s': %s", path, strerror(errno));
    if (rc == 0) fdatasync(fd);
    close(fd);
    maye_buf_free(&b);
    free(path);
    return rc;
}

char *maye_run_log(const maye_run *run, const char *name) {
    char rel[96];
    snprintf(rel, sizeof rel, "logs/%s.log", name);
    return maye_path_join(run->dir, rel);
}

// ----------------------------------------------------------------------------
// evaluation

const maye_eval_setting maye_eval_settings[3] = {
    {"pass@8_t1.0", 8, 1.0, 1.0},
    {"pass@1_t0.6", 1, 0.6, 1.0},
    {"pass@1_t0.01", 1, 0.01, 0.001},
};

// One response of an evaluation as a JSON line.
static char *eval_line(const Maye__Trajectory *t, const char *split, const maye_eval_setting *s, int64_t epoch,
                       int64_t version) {
    const Maye__Query *q = t->query;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", q->pos->sample_id);
    cJSON_AddNumberToObject(o, "index", (double)q->pos->index);
    cJSON_AddStringToObject(o, "split", split);
    cJSON_AddStringToObject(o, "setting", s->name);
    cJSON_AddNumberToObject(o, "epoch", (double)epoch);
    cJSON_AddNumberToObject(o, "version", (double)version);
    cJSON_AddNumberToObject(o, "sample_index", t->sample_index);
    cJSON_AddStringToObject(o, "question", q->question);
    cJSON_AddStringToObject(o, "answer", q->answer);
    cJSON_AddStringToObject(o, "response", t->response_text);
    cJSON_AddStringToObject(o, "extracted", t->extracted_answer);
    cJSON_AddBoolToObject(o, "correct", t->correct);
    cJSON_AddNumberToObject(o, "length", t->response_length);
    cJSON_AddStringToObject(o, "finish", t->finish == MAYE__FINISH_REASON__STOP ? "stop" : "length");
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

// Reads the trajectories of an evaluation pipeline, writes the responses file and accumulates the result.
static int collect_eval(int fd, const char *responses_path, const char *split, const maye_eval_setting *s,
                        int64_t epoch, int64_t version, maye_eval_result *res) {
    maye_reader *r;
    TRY(maye_reader_open_fd(&r, fd, "evaluation trajectories", MAYE__RECORD_KIND__TRAJECTORY));
    maye_buf out = {0};
    memset(res, 0, sizeof *res);
    int64_t solved = 0, tokens = 0;
    maye_step_reader sr;
    maye_step_reader_init(&sr, r);
    int rc;
    for (;;) {
        ProtobufCMessage **msgs;
        int n;
        int64_t step;
        rc = maye_step_reader_next(&sr, &msgs, &n, &step);
        if (rc <= 0) break;
        // responses of one question are consecutive (queries x responses)
        for (int i = 0; i < n;) {
            const Maye__Trajectory *t0 = (const Maye__Trajectory *)msgs[i];
            int any = 0, j = i;
            for (; j < n && ((const Maye__Trajectory *)msgs[j])->query->pos->step_offset == t0->query->pos->step_offset;
                 j++) {
                const Maye__Trajectory *t = (const Maye__Trajectory *)msgs[j];
                any |= t->correct;
                tokens += t->response_length;
                char *line = eval_line(t, split, s, epoch, version);
                maye_buf_printf(&out, "%s\n", line);
                free(line);
                res->n_responses++;
            }
            res->n_questions++;
            solved += any;
            i = j;
        }
        maye_step_records_free(msgs, n);
    }
    maye_reader_close(r);
    if (rc == 0) {
        res->accuracy = res->n_questions ? (double)solved / (double)res->n_questions : 0;
        res->response_length = res->n_responses ? (double)tokens / (double)res->n_responses : 0;
        rc = maye_write_file_atomic(responses_path, out.data ? out.data : "", out.len);
    }
    maye_buf_free(&out);
    return rc;
}

int maye_eval_run(const maye_run *run, const char *bin_dir, const char *split, const maye_eval_setting *s,
                  int64_t epoch, int64_t step, int64_t version, maye_eval_result *out) {
    char ver[32], ep[32], n_ov[64], t_ov[64], p_ov[64];
    snprintf(ver, sizeof ver, "%lld", (long long)version);
    snprintf(ep, sizeof ep, "%lld", (long long)epoch);
    snprintf(n_ov, sizeof n_ov, "rollout.n=%d", s->n);
    snprintf(t_ov, sizeof t_ov, "rollout.temperature=%g", s->temperature);
    snprintf(p_ov, sizeof p_ov, "rollout.top_p=%g", s->top_p);
    char *batch_argv[] = {"maye-batch", "--config", run->config_path, "--split", (char *)split, "--version", ver,
                          "--epoch", ep, NULL};
    char *rollout_argv[] = {"maye-rollout", "--config", run->config_path, n_ov, t_ov, p_ov, NULL};
    char *traj_argv[] = {"maye-traj", "--config", run->config_path, "--no-logprobs", NULL};
    char *const *argvs[] = {batch_argv, rollout_argv, traj_argv};
    int p[3][2];
    for (int i = 0; i < 3; i++)
        if (pipe2(p[i], O_CLOEXEC) != 0) return maye_fail("pipe failed: %s", strerror(errno));
    maye_procs ps;
    maye_procs_init(&ps, bin_dir);
    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; i++) {
        char name[64];
        snprintf(name, sizeof name, "eval-%s", argvs[i][0] + 5);
        char *log = maye_run_log(run, name);
        rc = maye_procs_spawn(&ps, argvs[i], i ? p[i - 1][0] : -1, p[i][1], NULL, 0, log);
        free(log);
    }
    for (int i = 0; i < 3; i++) close(p[i][1]);
    close(p[0][0]), close(p[1][0]);
    char rel[160];
    snprintf(rel, sizeof rel, "eval/epoch-%04lld", (long long)epoch);
    char *dir = maye_path_join(run->dir, rel);
    snprintf(rel, sizeof rel, "%s-%s.jsonl", split, s->name);
    char *responses = maye_path_join(dir, rel);
    if (rc == 0) rc = maye_mkdir_p(dir);
    if (rc == 0) rc = collect_eval(p[2][0], responses, split, s, epoch, version, out);
    close(p[2][0]);
    if (rc < 0) maye_procs_stop(&ps, SIGTERM, 5.0);
    int bad = maye_procs_wait_all(&ps) >= 0 ? maye_procs_root_cause(&ps) : -1;
    if (bad >= 0) {
        char *why = maye_procs_describe_failure(&ps, bad, 12);
        rc = maye_fail("evaluation of %s (%s) failed: %s", split, s->name, why);
        free(why);
    }
    maye_procs_free(&ps);
    free(dir), free(responses);
    if (rc < 0) return -1;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "epoch", (double)epoch);
    cJSON_AddNumberToObject(o, "step", (double)step);
    cJSON_AddNumberToObject(o, "version", (double)version);
    cJSON_AddStringToObject(o, "split", split);
    cJSON_AddStringToObject(o, "setting", s->name);
    cJSON_AddNumberToObject(o, "accuracy", out->accuracy);
    cJSON_AddNumberToObject(o, "n_questions", (double)out->n_questions);
    cJSON_AddNumberToObject(o, "n_responses", (double)out->n_responses);
    cJSON_AddNumberToObject(o, "response_length", out->response_length);
    char *line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    rc = maye_run_append_line(run, "metrics/eval.jsonl", line);
    free(line);
    return rc;
}

int maye_eval_all(const maye_run *run, const maye_config *cfg, const char *bin_dir, int64_t epoch, int64_t step,
                  int64_t version) {
    const char *splits[2] = {"validation", "test"};
    const char *paths[2] = {cfg->data.validation, cfg->data.test};
    for (int i = 0; i < 2; i++) {
        if (!paths[i] || !paths[i][0]) continue;
        for (int k = 0; k < 3; k++) {
            maye_eval_result res;
            double t0 = maye_now();
            TRY(maye_eval_run(run, bin_dir, splits[i], &maye_eval_settings[k], epoch, step, version, &res));
            log_info("eval epoch %lld %-10s %-13s accuracy %5.1f%% (%lld questions, mean length %.0f, %.0f s)",
                     (long long)epoch, splits[i], maye_eval_settings[k].name, 100 * res.accuracy,
                     (long long)res.n_questions, res.response_length, maye_now() - t0);
        }
    }
    return 0;
}
