// One training run of the pipeline, watched and wired by the orchestrator (see train.h).
#include "train.h"

#include "core/error.h"
#include "core/interrupt.h"
#include "core/log.h"
#include "core/util.h"
#include "data/dataset.h"
#include "io/records.h"
#include "model/weightsync.h"
#include "rl/update.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// ----------------------------------------------------------------------------
// helpers

// Evaluations already complete for `epoch` (lines of metrics/eval.jsonl), so a resumed run skips them.
static int eval_lines_for_epoch(const maye_run *run, int64_t epoch) {
    char *path = maye_path_join(run->dir, "metrics/eval.jsonl");
    maye_buf b = {0};
    int n = 0;
    if (maye_read_file(path, &b) == 0 && b.data) {
        for (char *line = b.data; *line;) {
            char *nl = strchr(line, '\n');
            if (nl) *nl = 0;
            cJSON *o = cJSON_Parse(line);
            cJSON *e = o ? cJSON_GetObjectItemCaseSensitive(o, "epoch") : NULL;
            if (cJSON_IsNumber(e) && (int64_t)e->valuedouble == epoch) n++;
            cJSON_Delete(o);
            if (!nl) break;
            line = nl + 1;
        }
    }
    maye_buf_free(&b);
    free(path);
    return n;
}

static int n_eval_splits(const maye_config *cfg) {
    return (cfg->data.validation[0] != 0) + (cfg->data.test[0] != 0);
}

static int eval_if_needed(const maye_run *run, const maye_config *cfg, const maye_train_opts *o, int64_t epoch,
                          int64_t step, int64_t version) {
    if (!o->eval || !n_eval_splits(cfg)) return 0;
    if (eval_lines_for_epoch(run, epoch) >= 3 * n_eval_splits(cfg)) return 0; // done before a resume
    return maye_eval_all(run, cfg, o->bin_dir, epoch, step, version);
}

// A Metrics record as a line of metrics/train.jsonl: "a/b" keys become nested objects.
static char *metrics_line(const Maye__Metrics *m) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", (double)m->step);
    cJSON_AddNumberToObject(o, "epoch", (double)m->epoch);
    cJSON_AddNumberToObject(o, "version", (double)m->version);
    for (size_t i = 0; i < m->n_values; i++) {
        const char *k = m->values[i]->key, *slash = strchr(k, '/');
        if (!slash) {
            cJSON_AddNumberToObject(o, k, m->values[i]->value);
            continue;
        }
        char group[64];
        snprintf(group, sizeof group, "%.*s", (int)(slash - k), k);
        cJSON *g = cJSON_GetObjectItemCaseSensitive(o, group);
        if (!g) g = cJSON_AddObjectToObject(o, group);
        cJSON_AddNumberToObject(g, slash + 1, m->values[i]->value);
    }
    if (m->example && m->example[0]) cJSON_AddStringToObject(o, "aha_example", m->example);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static double value_of(const Maye__Metrics *m, const char *key) {
    for (size_t i = 0; i < m->n_values; i++)
        if (!strcmp(m->values[i]->key, key)) return m->values[i]->value;
    return 0;
}

// A bar of the run's progress, drawn only on a terminal ("" in logs and pipes).
static const char *progress_bar(int64_t done, int64_t total) {
    static char bar[48];
    bar[0] = 0;
    if (!isatty(STDERR_FILENO) || total <= 0) return bar;
    int width = 24, fill = (int)(width * done / total);
    bar[0] = '[';
    for (int i = 0; i < width; i++) bar[1 + i] = i < fill ? '#' : '.';
    snprintf(bar + 1 + width, sizeof bar - 1 - (size_t)width, "] ");
    return bar;
}

static void progress_line(const Maye__Metrics *m, int64_t total, double t_start, int64_t first_step, int sft) {
    double el = maye_now() - t_start;
    int64_t done = m->step + 1 - first_step;
    double eta = done > 0 ? el / (double)done * (double)(total - m->step - 1) : 0;
    double secs = value_of(m, "seconds/update");
    if (sft) {
        log_info("%sstep %lld/%lld epoch %lld  loss %.4f  lr %.2e  %.0f tok/s (update)  ETA %.0f s",
                 progress_bar(m->step + 1, total), (long long)m->step + 1,
                 (long long)total, (long long)m->epoch, value_of(m, "loss"), value_of(m, "lr"),
                 secs > 0 ? value_of(m, "tokens") / secs : 0, eta);
        return;
    }
    // tokens per second of each stage's busy time: generated (rollout), scored by policy + reference (traj),
    // trained (update, times the PPO epochs)
    double rs = value_of(m, "seconds/rollout"), ts = value_of(m, "seconds/traj"), seq = value_of(m, "sequence_tokens");
    log_info("%sstep %lld/%lld epoch %lld  reward %.3f  acc %.3f  len %.0f  kl %.4f  entropy %.3f  tok/s: rollout %.0f "
             "traj %.0f update %.0f  ETA %.0f s", progress_bar(m->step + 1, total), (long long)m->step + 1, (long long)total, (long long)m->epoch,
             value_of(m, "reward"), value_of(m, "accuracy"), value_of(m, "response_length"), value_of(m, "kl"),
             value_of(m, "entropy"), rs > 0 ? value_of(m, "response_tokens") / rs : 0, ts > 0 ? 2 * seq / ts : 0,
             secs > 0 ? seq / secs : 0, eta);
}

// ----------------------------------------------------------------------------
// the pipeline

typedef struct {
    maye_procs ps;
    int metrics_fd, sync_fd;        // from maye-update
    int fwd_fd[2];                  // to maye-rollout, maye-traj (-1 when absent)
    maye_reader *metrics, *sync;
    maye_writer *fwd[2];
} pipeline;

static int make_pipe(int fds[2]) {
    if (pipe2(fds, O_CLOEXEC) != 0) return maye_fail("pipe failed: %s", strerror(errno));
    return 0;
}

static int spawn_stage(pipeline *p, const maye_run *run, char **argv, int in, int out, const int *keep, int n_keep) {
    char *log = maye_run_log(run, argv[0] + 5); // "maye-rollout" -> logs/rollout.log
    int rc = maye_procs_spawn(&p->ps, argv, in, out, keep, n_keep, log);
    free(log);
    return rc;
}

static int start_pipeline(pipeline *p, const maye_run *run, const maye_config *cfg, const maye_train_opts *o,
                          int64_t start_step, int64_t start_version, const char *ckpt, int64_t keep_every) {
    memset(p, 0, sizeof *p);
    p->fwd_fd[0] = p->fwd_fd[1] = -1;
    maye_procs_init(&p->ps, o->bin_dir);
    int q[2], r[2], t[2], m[2], s[2], sr[2], st[2];
    TRY(make_pipe(q));
    TRY(make_pipe(m));
    TRY(make_pipe(s));
    if (!o->sft) {
        TRY(make_pipe(r));
        TRY(make_pipe(t));
        TRY(make_pipe(sr));
        TRY(make_pipe(st));
    }
    char start[32], ver[32], keep[32], fdpath[3][32], model_ov[4096], ref_ov[4096];
    snprintf(keep, sizeof keep, "%lld", (long long)keep_every);
    snprintf(start, sizeof start, "%lld", (long long)start_step);
    snprintf(ver, sizeof ver, "%lld", (long long)start_version);
    snprintf(model_ov, sizeof model_ov, "model.path=%s", ckpt ? ckpt : cfg->model.path);
    snprintf(ref_ov, sizeof ref_ov, "model.ref_path=%s", cfg->model.ref_path[0] ? cfg->model.ref_path : cfg->model.path);
    char *cp = run->config_path;
    int rc = 0;
    // with train.save_streams each stage keeps a copy of its output: RUN/streams/<stage>-from-<step>.zst
    char tee[4][4096];
    const char *kinds[4] = {"queries", "rollouts", "trajectories", "metrics"};
    if (cfg->train.save_streams) {
        char *dir = maye_path_join(run->dir, "streams");
        TRY(maye_mkdir_p(dir));
        for (int i = 0; i < 4; i++)
            snprintf(tee[i], sizeof tee[i], "%s/%s-from-step-%06lld.zst", dir, kinds[i], (long long)start_step);
        free(dir);
    }
    char *tee_opt = cfg->train.save_streams ? "--tee" : NULL;
    char *batch[] = {"maye-batch", "--config", cp, "--start-step", start, tee_opt, tee[0], NULL};
    rc = spawn_stage(p, run, batch, -1, q[1], NULL, 0);
    if (o->sft) {
        snprintf(fdpath[0], sizeof fdpath[0], "/dev/fd/%d", s[1]);
        char *update[] = {"maye-update", "--config", cp, "--sft", "--sync-out", fdpath[0], "--keep-every", keep,
                          ckpt ? "--resume" : NULL, (char *)ckpt, NULL, NULL, NULL};
        if (tee_opt) update[ckpt ? 10 : 8] = tee_opt, update[ckpt ? 11 : 9] = tee[3];
        if (rc == 0) rc = spawn_stage(p, run, update, q[0], m[1], &s[1], 1);
    } else {
        snprintf(fdpath[0], sizeof fdpath[0], "/dev/fd/%d", sr[0]);
        snprintf(fdpath[1], sizeof fdpath[1], "/dev/fd/%d", st[0]);
        snprintf(fdpath[2], sizeof fdpath[2], "/dev/fd/%d", s[1]);
        char *rollout[] = {"maye-rollout", "--config", cp, "--sync", fdpath[0], model_ov, "--start-version", ver,
                           tee_opt, tee[1], NULL};
        char *traj[] = {"maye-traj", "--config", cp, "--sync", fdpath[1], model_ov, ref_ov, "--start-version", ver,
                        tee_opt, tee[2], NULL};
        char *update[] = {"maye-update", "--config", cp, "--sync-out", fdpath[2], "--keep-every", keep,
                          ckpt ? "--resume" : NULL, (char *)ckpt, NULL, NULL, NULL};
        if (tee_opt) update[ckpt ? 9 : 7] = tee_opt, update[ckpt ? 10 : 8] = tee[3];
        if (rc == 0) rc = spawn_stage(p, run, rollout, q[0], r[1], &sr[0], 1);
        if (rc == 0) rc = spawn_stage(p, run, traj, r[0], t[1], &st[0], 1);
        if (rc == 0) rc = spawn_stage(p, run, update, t[0], m[1], &s[1], 1);
        close(r[0]), close(r[1]), close(t[0]), close(t[1]), close(sr[0]), close(st[0]);
        p->fwd_fd[0] = sr[1], p->fwd_fd[1] = st[1];
    }
    close(q[0]), close(q[1]), close(m[1]), close(s[1]);
    p->metrics_fd = m[0];
    p->sync_fd = s[0];
    return rc;
}

// Opens the handle streams to maye-rollout and maye-traj (their headers go out at once: a stage may read the
// header when it starts, long before the first handle).
static int open_forwarding(pipeline *p, const maye_config *cfg) {
    for (int i = 0; i < 2; i++) {
        if (p->fwd_fd[i] < 0) continue;
        Maye__StreamHeader hd;
        maye_header_init(&hd, MAYE__RECORD_KIND__WEIGHT_SYNC, "maye", cfg);
        int rc = maye_writer_open_fd(&p->fwd[i], p->fwd_fd[i], i ? "handles to maye-traj" : "handles to maye-rollout",
                                     &hd, NULL);
        maye_header_free(&hd);
        TRY(rc);
    }
    return 0;
}

static int forward_handle(pipeline *p, const Maye__WeightSync *h) {
    for (int i = 0; i < 2; i++) {
        if (!p->fwd[i]) continue;
        TRY(maye_writer_write(p->fwd[i], &h->base));
        TRY(maye_writer_flush(p->fwd[i]));
    }
    return 0;
}

static void close_pipeline(pipeline *p) {
    for (int i = 0; i < 2; i++) {
        if (p->fwd[i]) maye_writer_close(p->fwd[i]);
        if (p->fwd_fd[i] >= 0) close(p->fwd_fd[i]);
    }
    if (p->metrics) maye_reader_close(p->metrics);
    if (p->sync) maye_reader_close(p->sync);
    close(p->metrics_fd), close(p->sync_fd);
    maye_procs_free(&p->ps);
}

// ----------------------------------------------------------------------------
// one run

int maye_train_run(maye_config *cfg, const char *run_dir, const maye_train_opts *o) {
    maye_run run;
    int64_t start_step = 0, start_version = 0;
    char *ckpt = NULL;
    if (o->resume) {
        memset(&run, 0, sizeof run);
        run.dir = xstrdup(run_dir);
        run.kind = xstrdup(o->sft ? "sft" : "rl");
        run.seed = cfg->seed;
        run.config_path = maye_path_join(run_dir, "config.yaml");
        if (maye_checkpoint_latest(run_dir, &ckpt) == 0) {
            TRY(maye_checkpoint_state(ckpt, &start_step, &start_version));
            log_info("resuming %s from %s (step %lld, policy version %lld)", run_dir, ckpt, (long long)start_step,
                     (long long)start_version);
        } else {
            log_info("resuming %s from the start: it has no checkpoint yet", run_dir);
        }
        TRY(maye_run_set_status(&run, "running"));
    } else {
        TRY(maye_run_create(&run, run_dir, o->sft ? "sft" : "rl", cfg));
    }
    // the schedule, for epochs and evaluations
    maye_dataset ds;
    maye_schedule sched;
    int rc = maye_dataset_load(&ds, cfg->data.train, cfg->data.limit);
    if (rc == 0) rc = maye_schedule_init(&sched, ds.n, (int)cfg->data.batch_size, true, cfg->data.shuffle,
                                         (uint64_t)cfg->seed, cfg->train.epochs);
    if (rc == 0) maye_dataset_free(&ds);
    int64_t total = rc == 0 ? maye_schedule_total_steps(&sched) : 0, spe = rc == 0 ? sched.steps_per_epoch : 1;
    int64_t every = cfg->train.eval_every_epochs > 0 ? cfg->train.eval_every_epochs : 1;
    if (rc == 0 && start_step == 0 && cfg->train.eval_before) rc = eval_if_needed(&run, cfg, o, 0, 0, 0);
    if (rc == 0 && start_step >= total) {
        log_info("%s: all %lld steps are done", run_dir, (long long)total);
        free(ckpt);
        rc = maye_run_set_status(&run, "done");
        maye_run_free(&run);
        return rc;
    }
    pipeline p;
    int64_t keep_every = o->eval ? spe * every : 0; // evaluation points outlive maye-update's retention
    if (rc == 0) rc = start_pipeline(&p, &run, cfg, o, start_step, start_version, ckpt, keep_every);
    if (rc == 0) rc = open_forwarding(&p, cfg);
    free(ckpt);
    if (rc < 0) {
        maye_run_set_status(&run, "failed");
        maye_run_free(&run);
        return -1;
    }
    log_info("%s run %s: steps %lld..%lld of %lld (%lld per epoch), stage logs in %s/logs", o->sft ? "SFT" : "RL",
             run_dir, (long long)start_step + 1, (long long)total, (long long)total, (long long)spe, run_dir);
    double t_start = maye_now();
    int metrics_open = 1, sync_open = 1, failed = -1, stopped = 0;
    int64_t evaluated = -1; // the last evaluation point whose weight file still waits to be removed
    while ((metrics_open || sync_open) && rc == 0) {
        if (maye_stop_requested() && !stopped) {
            stopped = 1;
            log_info("stopping: the stages finish their step and maye-update keeps a checkpoint");
            maye_procs_stop(&p.ps, SIGTERM, 20.0);
            break;
        }
        struct pollfd fds[2] = {{metrics_open ? p.metrics_fd : -1, POLLIN, 0}, {sync_open ? p.sync_fd : -1, POLLIN, 0}};
        int k = poll(fds, 2, 200);
        if (k < 0 && errno != EINTR) rc = maye_fail("poll failed: %s", strerror(errno));
        if ((failed = maye_procs_poll(&p.ps, 0)) >= 0) break;
        if (k <= 0) continue;
        if (fds[0].revents) { // metrics of a finished step (before its version's evaluation)
            if (!p.metrics) rc = maye_reader_open_fd(&p.metrics, p.metrics_fd, "metrics from maye-update",
                                                     MAYE__RECORD_KIND__METRICS);
            ProtobufCMessage *msg = NULL;
            int got = rc == 0 ? maye_reader_next(p.metrics, &msg, NULL) : -1;
            if (got < 0) rc = -1;
            else if (got == 0) metrics_open = 0;
            else {
                char *line = metrics_line((const Maye__Metrics *)msg);
                rc = maye_run_append_line(&run, "metrics/train.jsonl", line);
                free(line);
                progress_line((const Maye__Metrics *)msg, total, t_start, start_step, o->sft);
                maye_record_free(msg);
            }
        }
        if (fds[1].revents && rc == 0) { // a new policy version: evaluate if due, then let the stages use it
            if (!p.sync) rc = maye_reader_open_fd(&p.sync, p.sync_fd, "weight sync from maye-update",
                                                  MAYE__RECORD_KIND__WEIGHT_SYNC);
            ProtobufCMessage *msg = NULL;
            int got = rc == 0 ? maye_reader_next(p.sync, &msg, NULL) : -1;
            if (got < 0) rc = -1;
            else if (got == 0) sync_open = 0;
            else {
                const Maye__WeightSync *h = (const Maye__WeightSync *)msg;
                int64_t v = h->version, epoch_done = v / spe;
                if (evaluated > 0 && evaluated < v) { // every stage has moved past it
                    char *old = maye_weight_file(run_dir, evaluated);
                    unlink(old);
                    free(old);
                    evaluated = -1;
                }
                if (v % spe == 0 && (epoch_done % every == 0 || v == total)) {
                    rc = eval_if_needed(&run, cfg, o, epoch_done, v, v);
                    if (keep_every > 0 && v % keep_every == 0 && v < total) evaluated = v;
                }
                if (rc == 0 && v < total) rc = forward_handle(&p, h);
                maye_record_free(msg);
            }
        }
    }
    if (failed >= 0 || rc < 0) {
        char err[MAYE_ERRMSG_MAX];
        snprintf(err, sizeof err, "%s", maye_errmsg());
        // let a failing stage and its neighbours exit on their own, so the one that failed first is named
        maye_procs_settle(&p.ps, 3.0);
        maye_procs_stop(&p.ps, SIGTERM, 10.0);
        failed = maye_procs_root_cause(&p.ps);
        if (failed >= 0) {
            char *why = maye_procs_describe_failure(&p.ps, failed, 15);
            rc = maye_fail("%s", why);
            free(why);
        } else {
            rc = maye_fail("%s", err);
        }
    } else {
        int bad = maye_procs_wait_all(&p.ps) >= 0 ? maye_procs_root_cause(&p.ps) : -1;
        if (bad >= 0 && !stopped) {
            char *why = maye_procs_describe_failure(&p.ps, bad, 15);
            rc = maye_fail("%s", why);
            free(why);
        }
    }
    char err[MAYE_ERRMSG_MAX];
    snprintf(err, sizeof err, "%s", maye_errmsg()); // closing the pipes to dead stages must not replace it
    close_pipeline(&p);
    const char *status = stopped ? "stopped" : rc < 0 ? "failed" : "done";
    if (stopped) log_info("stopped; continue with: maye %s --resume %s", o->sft ? "sft" : "train", run_dir);
    else if (rc == 0) log_info("%s run %s done in %.0f s", o->sft ? "SFT" : "RL", run_dir, maye_now() - t_start);
    maye_run_set_status(&run, status);
    maye_fail("%s", err);
    maye_run_free(&run);
    return stopped ? 1 : rc;
}

// ----------------------------------------------------------------------------
// command line of `maye train` / `maye sft`

static void usage(int sft) {
    const char *cmd = sft ? "sft" : "train";
    printf("usage: maye %s CONFIG [key.path=value ...] [--seeds N] [--no-eval]\n"
           "       maye %s --resume RUN_DIR\n\n", cmd, cmd);
    if (sft)
        printf("Supervised fine-tuning on the training set's `solution` field (cross-entropy on the response\n"
               "tokens, learning rate on update.lr_schedule): maye-batch | maye-update --sft, with the same\n"
               "evaluations as RL, so RL and SFT compare in one report (maye report RL_RUN --sft SFT_RUN).\n\n");
    else
        printf("Runs the RL pipeline maye-batch | maye-rollout | maye-traj | maye-update as child processes in\n"
               "the run directory `run_dir` (config.yaml, logs/, metrics/, eval/, weights/, checkpoints/; see\n"
               "docs/run-dir.md), forwards each policy version from maye-update to maye-rollout and maye-traj, and\n"
               "evaluates before training (train.eval_before), every train.eval_every_epochs epochs and at the end,\n"
               "on whichever of data.validation and data.test are set, under the MAYE settings pass@8 (T=1.0),\n"
               "pass@1 (T=0.6), pass@1 (T=0.01, top_p=0.001).\n\n");
    printf("options:\n"
           "  --seeds N         independent runs with seeds seed..seed+N-1, each in RUN_DIR/seed-S (N = 1: in\n"
           "                    RUN_DIR itself; default train.seeds)\n"
           "  --no-eval         skip the evaluations\n"
           "  --resume RUN_DIR  continue a stopped or failed run from its latest checkpoint, with its own\n"
           "                    RUN_DIR/config.yaml (no CONFIG or overrides); RUN_DIR may hold seed-*/ runs,\n"
           "                    each of which is resumed\n\n"
           "A stage that fails stops the others; its name and the end of its log are shown. Ctrl-C stops cleanly\n"
           "and leaves a resumable run.\n");
}

static int resume_dir(const char *dir, maye_train_opts *o) {
    char *cp = maye_path_join(dir, "config.yaml");
    maye_config cfg;
    int rc = maye_config_load(&cfg, cp, 0, NULL);
    free(cp);
    if (rc == 0) rc = maye_train_run(&cfg, dir, o);
    maye_config_free(&cfg);
    return rc;
}

int maye_train_main(int argc, char **argv, int sft) {
    maye_install_stop_handlers();
    signal(SIGPIPE, SIG_IGN);
    const char *config = NULL, *resume = NULL;
    char **ov = xcalloc((size_t)argc, sizeof(char *));
    int nov = 0, eval = 1;
    int64_t seeds = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            free(ov);
            usage(sft);
            return 0;
        }
        if (!strcmp(a, "--no-eval")) eval = 0;
        else if (!strcmp(a, "--resume") && i + 1 < argc) resume = argv[++i];
        else if (!strcmp(a, "--seeds") && i + 1 < argc) {
            if (maye_parse_i64(argv[++i], &seeds, "--seeds") < 0 || seeds < 1) {
                log_error("--seeds needs a positive number");
                free(ov);
                return 2;
            }
        } else if (a[0] != '-' && strchr(a, '=')) ov[nov++] = argv[i];
        else if (a[0] != '-' && !config) config = a;
        else {
            log_error("unknown option or argument '%s' (see maye %s --help)", a, sft ? "sft" : "train");
            free(ov);
            return 2;
        }
    }
    if (resume && (config || nov || seeds)) {
        log_error("--resume continues a run with its own RUN_DIR/config.yaml: leave out CONFIG, key=value "
                  "overrides and --seeds (only --no-eval goes with it)");
        free(ov);
        return 2;
    }
    char *bin = maye_self_dir();
    maye_train_opts o = {.sft = sft, .eval = eval, .resume = resume, .bin_dir = bin};
    int rc = 0;
    if (resume) {
        if (!maye_is_dir(resume)) rc = maye_fail("--resume: '%s' is not a run directory", resume);
        char *single = rc == 0 ? maye_path_join(resume, "config.yaml") : NULL;
        if (rc == 0 && maye_file_exists(single)) {
            rc = resume_dir(resume, &o);
        } else if (rc == 0) { // RUN/seed-*/
            int found = 0;
            for (int64_t s = 0; s < 100000 && rc >= 0; s++) {
                char rel[32];
                snprintf(rel, sizeof rel, "seed-%lld", (long long)s);
                char *d = maye_path_join(resume, rel);
                if (maye_is_dir(d)) {
                    found++;
                    rc = resume_dir(d, &o);
                }
                free(d);
                if (rc == 1) break; // stopped again
            }
            if (!found && rc == 0) rc = maye_fail("--resume: '%s' holds neither config.yaml nor seed-*/ runs", resume);
        }
        free(single);
    } else {
        maye_config cfg;
        if (!config) {
            log_error("missing CONFIG (see maye %s --help)", sft ? "sft" : "train");
            free(ov), free(bin);
            return 2;
        }
        rc = maye_config_load(&cfg, config, nov, ov);
        if (rc == 0 && !cfg.model.path[0]) rc = maye_fail("%s: model.path is not set", config);
        if (rc == 0 && !cfg.data.train[0]) rc = maye_fail("%s: data.train is not set", config);
        int64_t n = seeds ? seeds : cfg.train.seeds > 0 ? cfg.train.seeds : 1;
        int64_t base = rc == 0 ? cfg.seed : 0;
        char *root = rc == 0 ? xstrdup(cfg.run_dir) : NULL;
        for (int64_t i = 0; i < n && rc == 0; i++) {
            cfg.seed = base + i;
            char rel[32];
            snprintf(rel, sizeof rel, "seed-%lld", (long long)cfg.seed);
            char *dir = n > 1 ? maye_path_join(root, rel) : xstrdup(root);
            if (n > 1) log_info("seed %lld (%lld of %lld): %s", (long long)cfg.seed, (long long)i + 1, (long long)n, dir);
            rc = maye_train_run(&cfg, dir, &o);
            free(dir);
        }
        free(root);
        maye_config_free(&cfg);
    }
    free(ov), free(bin);
    if (rc == 1) return 130;
    if (rc < 0) {
        maye_report_error();
        return 1;
    }
    return 0;
}
