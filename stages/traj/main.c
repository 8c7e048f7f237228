// maye-traj (Step III): reads Rollout records and writes Trajectory records: rewards and the judge's
// verdict, reflection counts, and the log-probs of every response token under the policy (the version that
// sampled it) and the reference model (version 0), one generation step at a time, on the backend
// model.device names (backend/backend.h).
#include "backend/backend.h"
#include "core/cli.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "data/inputs.h"
#include "io/steps.h"
#include "kernels/cpu/kernels.h"
#include "model/weightsync.h"
#include "rl/trajectory.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
    printf("usage: maye-traj [--config FILE] [key.path=value ...] [-i IN] [-o OUT] [--sync FILE]\n"
           "                 [--start-version V] [--no-logprobs]\n\n"
           "Reads Rollout records and writes one Trajectory record per response: prompt + response ids, the\n"
           "response mask, the reward components (traj.rewards) and their sum, the judge's verdict and the\n"
           "extracted answer, MAYE's reflection counts, and the log-probs of the response tokens under the\n"
           "policy (switched to the version that sampled them) and under the reference model (model.ref_path,\n"
           "default model.path), computed traj.forward_batch_size sequences at a time at the sampling\n"
           "temperature on model.device in model.dtype (cpu/fp32, or cuda/fp32|bf16 in a make CUDA=1 build).\n"
           "The sampler's own log-probs are kept beside them. On the GPU, model.profile=true prints where the GPU\n"
           "time went (two tables: the policy model's, then the reference model's) when the stage ends.\n\n"
           "options:\n"
           "  --sync FILE          WeightSync handles (FIFO or file); default: find policy versions in\n"
           "                       run_dir/weights/\n"
           "  --start-version V    policy version of model.path (resuming from a checkpoint; default 0)\n"
           "  --no-logprobs        rewards only, no model (evaluation)\n"
           "%s",
           maye_cli_common_help);
}

typedef struct {
    maye_config cfg;
    maye_model policy, ref;
    maye_device_model *policy_dev, *ref_dev; // NULL on the CPU backend
    int with_logprobs;
    maye_weight_source ws;
    maye_traj_builder tb;
    maye_step_clock clock;
} traj_stage;

static int load_models(traj_stage *s, const char *sync_path, int64_t start_version) {
    const maye_config *c = &s->cfg;
    CHECK_OR_FAIL(c->model.path[0], "no model: set model.path (or pass --no-logprobs)");
    cpu_set_threads((int)c->model.threads);
    TRY(maye_model_load(&s->policy, c->model.path));
    TRY(maye_model_load(&s->ref, c->model.ref_path[0] ? c->model.ref_path : c->model.path));
    TRY(maye_device_open(&s->policy_dev, c, &s->policy, false));
    TRY(maye_device_open(&s->ref_dev, c, &s->ref, false));
    TRY(maye_weight_source_open(&s->ws, c->run_dir, sync_path, start_version));
    maye_weight_source_use_device(&s->ws, s->policy_dev, c);
    return 0;
}

// Scores one step and writes its trajectories.
static int run_step(traj_stage *s, maye_writer *w, Maye__Rollout **rollouts, int n) {
    if (s->with_logprobs) {
        int64_t version = rollouts[0]->version;
        for (int i = 1; i < n; i++)
            CHECK_OR_FAIL(rollouts[i]->version == version, "step %lld mixes policy versions %lld and %lld",
                          (long long)rollouts[0]->query->pos->step, (long long)version,
                          (long long)rollouts[i]->version);
        double t_sync = maye_now();
        TRY(maye_weight_source_sync(&s->ws, &s->policy, version, 0));
        s->clock.idle_extra += maye_now() - t_sync;
    }
    Maye__Trajectory **trajs;
    int nt;
    double t0 = maye_now();
    TRY(maye_traj_build_step(&s->tb, rollouts, n, &trajs, &nt));
    if (s->cfg.rollout.timing)
        for (int i = 0; i < nt; i++) trajs[i]->rollout_seconds = rollouts[0]->step_seconds, trajs[i]->traj_seconds = maye_now() - t0;
    int rc = 0;
    for (int i = 0; i < nt && rc == 0; i++) rc = maye_writer_write(w, &trajs[i]->base);
    if (rc == 0) rc = maye_writer_flush(w);
    maye_traj_free(trajs, nt);
    return rc;
}

int main(int argc, char **argv) {
    maye_log_init(argv[0]);
    maye_cli cli;
    maye_cli_init(&cli);
    const char *sync_path = NULL;
    int64_t start_version = 0;
    traj_stage s;
    memset(&s, 0, sizeof s);
    s.with_logprobs = 1;
    for (int i = 1; i < argc;) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(), 0;
        int used = maye_cli_common(&cli, argc, argv, &i);
        if (used < 0) goto fail;
        if (used) continue;
        if (!strcmp(a, "--no-logprobs")) {
            s.with_logprobs = 0;
            i++;
        } else if (!strcmp(a, "--sync") && i + 1 < argc) {
            sync_path = argv[i + 1];
            i += 2;
        } else if (!strcmp(a, "--start-version") && i + 1 < argc) {
            if (maye_parse_i64(argv[i + 1], &start_version, "--start-version") < 0) goto fail;
            if (start_version < 0) {
                maye_fail("--start-version must be >= 0 (got %lld)", (long long)start_version);
                goto fail;
            }
            i += 2;
        } else {
            log_error("unknown option or missing value: '%s' (see maye-traj --help)", a);
            return 2;
        }
    }
    int loaded = maye_cli_load_config(&cli, &s.cfg);
    if (loaded < 0) goto fail;
    if (loaded > 0) return 0;
    if (s.with_logprobs && maye_run_check_backend(&s.cfg) < 0) goto fail;
    if (s.with_logprobs && load_models(&s, sync_path, start_version) < 0) goto fail;
    if (maye_traj_builder_init(&s.tb, &s.cfg, s.with_logprobs ? &s.policy : NULL, s.with_logprobs ? &s.ref : NULL) < 0)
        goto fail;
    s.tb.policy_dev = s.policy_dev, s.tb.ref_dev = s.ref_dev;

    maye_reader *r = NULL;
    maye_writer *w = NULL;
    if (maye_reader_open(&r, cli.in_path, MAYE__RECORD_KIND__ROLLOUT) < 0) goto fail;
    if (s.with_logprobs && maye_reader_check_model_vocab(r, s.policy.cfg.vocab) < 0) goto fail;
    Maye__StreamHeader h;
    maye_header_init(&h, MAYE__RECORD_KIND__TRAJECTORY, NULL, &s.cfg);
    h.vocab_size = maye_reader_header(r)->vocab_size;
    h.tokenizer_digest = maye_reader_header(r)->tokenizer_digest;
    int rc = maye_writer_open(&w, cli.out_path, &h, &(maye_writer_opts){.atomic = 1, .tee_path = cli.tee_path});
    maye_header_free(&h);
    if (rc < 0) goto fail;
    maye_step_reader sr;
    maye_step_reader_init(&sr, r);
    int64_t steps = 0, trajectories = 0;
    double t0 = maye_now();
    maye_step_clock_start(&s.clock, r, w);
    for (;;) {
        ProtobufCMessage **msgs;
        int n;
        int64_t step;
        rc = maye_step_reader_next(&sr, &msgs, &n, &step);
        if (rc <= 0) break;
        rc = run_step(&s, w, (Maye__Rollout **)msgs, n);
        for (int i = 0; i < n; i++) trajectories += (int64_t)((Maye__Rollout *)msgs[i])->n_responses;
        maye_step_records_free(msgs, n);
        if (rc < 0) {
            maye_fail_ctx("step %lld", (long long)step);
            break;
        }
        steps++;
        maye_step_clock_report(&s.clock, step, r, w);
    }
    if (rc == 0) rc = maye_writer_close(w);
    else maye_writer_abort(w);
    maye_reader_close(r);
    if (rc < 0) goto fail;
    log_info("%lld steps, %lld trajectories in %.1f s", (long long)steps, (long long)trajectories, maye_now() - t0);
    maye_traj_builder_free(&s.tb);
    if (s.with_logprobs) {
        maye_weight_source_close(&s.ws);
        maye_device_close(s.policy_dev), maye_device_close(s.ref_dev);
        maye_model_free(&s.policy), maye_model_free(&s.ref);
    }
    maye_config_free(&s.cfg);
    maye_cli_free(&cli);
    return 0;
fail:
    maye_report_error();
    return 1;
}
