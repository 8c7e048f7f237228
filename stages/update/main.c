// maye-update (Step IV): reads Trajectory records one generation step at a time, trains the policy on them
// (advantages, PPO-clip + KL loss, AdamW), publishes each new policy version as a WeightSync handle (`file`,
// or `cuda_ipc` with update.weight_sync=cuda_ipc), writes one Metrics record per step, and keeps checkpoints.
// With --sft it reads Query records instead and fine-tunes on their solutions (the SFT baseline).
#include "backend/backend.h"
#include "core/cli.h"
#include "core/error.h"
#include "core/interrupt.h"
#include "core/log.h"
#include "core/util.h"
#include "data/inputs.h"
#include "io/steps.h"
#include "kernels/cpu/kernels.h"
#include "model/weightsync.h"
#include "rl/update.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
    printf("usage: maye-update [--config FILE] [key.path=value ...] [-i IN] [-o OUT] [--sync-out FILE]\n"
           "                   [--resume DIR] [--sft] [--keep-every N]\n\n"
           "Reads Trajectory records (a live stream or a saved file) one generation step at a time. For each\n"
           "step: token KL rewards and returns, advantages (update.advantage), then (trajectories /\n"
           "update.ppo_batch_size) x update.ppo_epochs optimizer steps of the PPO-clip + KL loss over\n"
           "micro-batches of update.ppo_backward_batch_size, clipped to update.clip_grad_norm, AdamW with the\n"
           "learning rate of update.lr_schedule (default: linear warmup, then cosine). Then the policy version\n"
           "advances: its trainable weights go to run_dir/weights/policy-vNNNNNN.safetensors (the newest\n"
           "update.max_staleness + 2 versions are kept, see --keep-every), a WeightSync handle to --sync-out,\n"
           "and a Metrics record to OUT. Checkpoints (Hugging Face layout + optimizer state) go to\n"
           "run_dir/checkpoints every update.save_every generation steps and at the end. A trajectory with\n"
           "NaN/Inf values fails the step naming the sample; the weights stay those of the last good step.\n"
           "SIGINT/SIGTERM between steps saves a checkpoint and exits; during a step, that step is dropped\n"
           "(resume from the last checkpoint). With --resume, input steps the checkpoint already holds are\n"
           "skipped, so a whole saved stream can be replayed.\n\n"
           "With update.weight_sync=cuda_ipc (model.device=cuda, every stage on this GPU) the handles are CUDA\n"
           "IPC handles to device buffers holding the trained weights (a ring of update.max_staleness + 2),\n"
           "which maye-rollout and maye-traj copy device to device; the weight files are still written.\n\n"
           "The model trains on model.device in model.dtype: cpu (fp32), or cuda (make CUDA=1 builds; fp32, or\n"
           "bf16 with fp32 master weights and AdamW state), where only the language model trains\n"
           "(update.train_vit and update.train_connector must be false); there model.profile=true prints where\n"
           "the GPU time went (forward, backward, optimizer; per layer op) when the stage ends.\n\n"
           "options:\n"
           "  --sync-out FILE      write WeightSync handles there (a FIFO the orchestrator reads)\n"
           "  --resume DIR         continue from a checkpoint directory (weights, optimizer state, counters)\n"
           "  --sft                supervised fine-tuning on Query records' solutions instead of RL\n"
           "  --keep-every N       never delete the weight files of versions that are multiples of N (the\n"
           "                       orchestrator's evaluation points; it removes them once evaluated)\n"
           "%s",
           maye_cli_common_help);
}

typedef struct {
    maye_config cfg;
    maye_trainer tr;
    maye_tokenizer *tok;           // SFT
    maye_writer *metrics, *sync;
    const char *source_dir;        // tokenizer/preprocessor files copied into checkpoints
    int64_t last_saved;            // steps_done of the newest checkpoint
    int64_t keep_every;            // weight-sync versions kept for evaluation (--keep-every)
    int sft;
} update_stage;

static int write_metrics(update_stage *s, int64_t step, int64_t epoch, const maye_step_metrics *m) {
    Maye__Metrics rec = MAYE__METRICS__INIT;
    rec.step = step;
    rec.epoch = epoch;
    rec.version = s->tr.version;
    rec.split = "train";
    rec.setting = s->sft ? "sft" : "rl";
    Maye__Metrics__ValuesEntry *e = xcalloc((size_t)(m->n ? m->n : 1), sizeof *e);
    Maye__Metrics__ValuesEntry **ep = xcalloc((size_t)(m->n ? m->n : 1), sizeof *ep);
    for (int i = 0; i < m->n; i++) {
        maye__metrics__values_entry__init(&e[i]);
        e[i].key = (char *)m->names[i];
        e[i].value = m->values[i];
        ep[i] = &e[i];
    }
    rec.n_values = (size_t)m->n;
    rec.values = ep;
    if (m->example) rec.example = m->example;
    int rc = maye_writer_write(s->metrics, &rec.base);
    if (rc == 0) rc = maye_writer_flush(s->metrics);
    free(e), free(ep);
    return rc;
}

static int save(update_stage *s) {
    if (s->tr.steps_done == s->last_saved) return 0;
    double t0 = maye_now();
    char *dir;
    TRY(maye_trainer_save(&s->tr, s->cfg.run_dir, s->source_dir, &dir));
    log_info("checkpoint %s (%.1f s)", dir, maye_now() - t0);
    free(dir);
    s->last_saved = s->tr.steps_done;
    return 0;
}

// Ring size of update.weight_sync=cuda_ipc. When version u is published, maye-rollout and maye-traj have
// finished every record of the step maye-update just trained on (its trajectories came through them), so
// their copies for that step and every earlier one are complete (maye_device_import returns once the copy is
// done, before the stage touches the step's records). The records they process from now on ask for version
// u or later and may use versions down to (that version - max_staleness): at most the versions
// u - max_staleness .. u are still to be copied, max_staleness + 1 buffers. Writing u into buffer u % R
// overwrites version u - R, which must therefore be older than u - max_staleness: R >= max_staleness + 1.
// R = max_staleness + 2 keeps one buffer of margin; should a copy ever overlap a reuse anyway, the stage's
// checksum of what it copied does not match the handle's digest and it fails instead of sampling with it.
static int ipc_ring_slots(const maye_config *cfg) {
    return 2 + (int)(cfg->update.max_staleness > 0 ? cfg->update.max_staleness : 0);
}

// Publishes the trainer's new version: its weight file always (evaluation and shell pipelines read it), and to
// --sync-out a handle to that file (update.weight_sync=file) or to an exported device buffer (cuda_ipc).
static int publish(update_stage *s, int64_t step) {
    bool ipc = s->sync && maye_weight_sync_ipc(&s->cfg);
    TRY(maye_weight_publish(&s->tr.model, s->cfg.run_dir, s->tr.version, step, s->tr.groups, ipc ? NULL : s->sync,
                            2 + (int)s->cfg.update.max_staleness, s->keep_every));
    if (!ipc) return 0;
    int slots = ipc_ring_slots(&s->cfg);
    maye_ipc_weights w;
    TRY(maye_device_export(s->tr.dev, s->tr.groups, (int)(s->tr.version % slots), slots, &w));
    return maye_weight_publish_ipc(s->sync, s->tr.version, step, &w);
}

// Trains one step and publishes its version and metrics.
static int run_step(update_stage *s, ProtobufCMessage **msgs, int n, int64_t step) {
    int64_t epoch, total;
    maye_step_metrics m;
    double t0 = maye_now();
    if (s->sft) {
        Maye__Query **q = (Maye__Query **)msgs;
        epoch = q[0]->pos->epoch, total = q[0]->pos->total_steps;
        TRY(maye_trainer_sft_step(&s->tr, s->tok, q, n, total, &m));
    } else {
        Maye__Trajectory **t = (Maye__Trajectory **)msgs;
        epoch = t[0]->query->pos->epoch, total = t[0]->query->pos->total_steps;
        for (int i = 0; i < n; i++)
            CHECK_OR_FAIL(t[i]->version <= s->tr.version, "sample '%s': the trajectory comes from policy version "
                          "%lld, newer than the trainer's %lld (trajectories from another run?)",
                          t[i]->query->pos->sample_id, (long long)t[i]->version, (long long)s->tr.version);
        TRY(maye_trainer_rl_step(&s->tr, t, n, total, &m));
    }
    double secs = maye_now() - t0;
    if (m.n < MAYE_STEP_MAX_VALUES) {
        snprintf(m.names[m.n], sizeof m.names[0], "seconds/update");
        m.values[m.n++] = secs;
    }
    // the step's metrics first, then its version: the orchestrator logs the step before evaluating the version
    int rc = write_metrics(s, step, epoch, &m);
    if (rc == 0) rc = publish(s, step);
    maye_step_metrics_free(&m);
    TRY(rc);
    log_debug("step %lld trained in %.1f s -> version %lld", (long long)step, secs, (long long)s->tr.version);
    if (s->cfg.update.save_every > 0 && s->tr.steps_done % s->cfg.update.save_every == 0) TRY(save(s));
    return 0;
}

int main(int argc, char **argv) {
    maye_log_init(argv[0]);
    maye_install_stop_handlers();
    maye_cli cli;
    maye_cli_init(&cli);
    const char *sync_out = NULL, *resume = NULL;
    update_stage s;
    memset(&s, 0, sizeof s);
    for (int i = 1; i < argc;) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(), 0;
        int used = maye_cli_common(&cli, argc, argv, &i);
        if (used < 0) goto fail;
        if (used) continue;
        if (!strcmp(a, "--sft")) s.sft = 1, i++;
        else if (!strcmp(a, "--sync-out") && i + 1 < argc) sync_out = argv[i + 1], i += 2;
        else if (!strcmp(a, "--resume") && i + 1 < argc) resume = argv[i + 1], i += 2;
        else if (!strcmp(a, "--keep-every") && i + 1 < argc) {
            if (maye_parse_i64(argv[i + 1], &s.keep_every, "--keep-every") < 0) goto fail;
            i += 2;
        }
        else {
            log_error("unknown option or missing value: '%s' (see maye-update --help)", a);
            return 2;
        }
    }
    int loaded = maye_cli_load_config(&cli, &s.cfg);
    if (loaded < 0) goto fail;
    if (loaded > 0) return 0;
    if (maye_run_check_backend(&s.cfg) < 0) goto fail;
    const char *model_dir = resume ? resume : s.cfg.model.path;
    if (!model_dir || !model_dir[0]) {
        log_error("no model: set model.path (or --resume CHECKPOINT)");
        return 2;
    }
    s.source_dir = s.cfg.model.path[0] ? s.cfg.model.path : resume;
    if (maye_mkdir_p(s.cfg.run_dir) < 0) goto fail;
    cpu_set_threads((int)s.cfg.model.threads);
    if (maye_trainer_init(&s.tr, &s.cfg, model_dir, 0) < 0) goto fail;
    if (resume && maye_trainer_resume(&s.tr, resume) < 0) goto fail;
    s.last_saved = s.tr.steps_done; // nothing new to save before the first trained step
    if (s.sft) {
        char *tp;
        if (maye_run_tokenizer_path(&s.cfg, &tp) < 0) goto fail;
        int rc = maye_tokenizer_load(&s.tok, tp);
        free(tp);
        if (rc < 0) goto fail;
    }

    maye_reader *r = NULL;
    Maye__RecordKind in_kind = s.sft ? MAYE__RECORD_KIND__QUERY : MAYE__RECORD_KIND__TRAJECTORY;
    if (maye_reader_open(&r, cli.in_path, in_kind) < 0) goto fail;
    if (maye_reader_check_model_vocab(r, s.tr.model.cfg.vocab) < 0) goto fail;
    if (s.tok && maye_reader_check_tokenizer(r, maye_tokenizer_vocab_size(s.tok), maye_tokenizer_digest(s.tok)) < 0)
        goto fail;
    Maye__StreamHeader h;
    maye_header_init(&h, MAYE__RECORD_KIND__METRICS, NULL, &s.cfg);
    int rc = maye_writer_open(&s.metrics, cli.out_path, &h, &(maye_writer_opts){.atomic = 1, .tee_path = cli.tee_path});
    maye_header_free(&h);
    if (rc == 0 && sync_out) {
        maye_header_init(&h, MAYE__RECORD_KIND__WEIGHT_SYNC, NULL, &s.cfg);
        rc = maye_writer_open(&s.sync, sync_out, &h, NULL);
        maye_header_free(&h);
    }
    if (rc < 0) goto fail;
    maye_step_reader sr;
    maye_step_reader_init(&sr, r);
    maye_step_clock clock;
    maye_step_clock_start(&clock, r, s.metrics);
    for (;;) {
        ProtobufCMessage **msgs;
        int n;
        int64_t step;
        rc = maye_step_reader_next(&sr, &msgs, &n, &step);
        if (rc <= 0) break;
        if (step < s.tr.steps_done) {
            log_info("skipping step %lld: the checkpoint already holds it", (long long)step);
            maye_step_records_free(msgs, n);
            continue;
        }
        rc = run_step(&s, msgs, n, step);
        maye_step_records_free(msgs, n);
        if (rc < 0) {
            maye_fail_ctx("step %lld", (long long)step);
            break;
        }
        maye_step_clock_report(&clock, step, r, s.metrics);
        if (maye_stop_requested()) break;
    }
    // the last good state is kept whatever happened to the stream (a failed step changed no weights)
    char err[MAYE_ERRMSG_MAX];
    snprintf(err, sizeof err, "%s", maye_errmsg());
    int interrupted_mid_step = rc < 0 && strstr(err, "interrupted by signal");
    if (!interrupted_mid_step && save(&s) < 0) {
        maye_report_error();
        rc = -1;
    }
    maye_fail("%s", err);
    int stopped = maye_stop_requested() != 0;
    if (rc == 0) rc = maye_writer_close(s.metrics);
    else maye_writer_abort(s.metrics);
    if (s.sync && rc == 0) rc = maye_writer_close(s.sync);
    else if (s.sync) maye_writer_abort(s.sync);
    maye_reader_close(r);
    maye_trainer_free(&s.tr);
    if (s.tok) maye_tokenizer_free(s.tok);
    maye_config_free(&s.cfg);
    maye_cli_free(&cli);
    if (rc < 0 && stopped) {
        log_info("stopped by signal %d; resume from run_dir/checkpoints/latest", maye_stop_requested());
        return 1;
    }
    if (rc < 0) goto fail;
    return 0;
fail:
    maye_report_error();
    return 1;
}
