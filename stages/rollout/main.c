// maye-rollout (Step II): reads Query records a generation step at a time, switches the policy to the version
// the step asks for (weight sync), samples rollout.n responses per query with the generation engine
// (model/generate.h) on the backend model.device names (backend/backend.h) and writes one Rollout record per
// query, in query order, flushing after each step. A step that fails leaves no record of it in the output.
#include "backend/backend.h"
#include "core/cli.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "data/inputs.h"
#include "io/records.h"
#include "io/steps.h"
#include "kernels/cpu/kernels.h"
#include "model/generate.h"
#include "model/weightsync.h"
#include "text/chat.h"

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
    printf("usage: maye-rollout [--config FILE] [key.path=value ...] [-i IN] [-o OUT] [--sync FILE]\n"
           "                    [--start-version V]\n\n"
           "Reads Query records and writes Rollout records: rollout.n responses per query sampled from the model\n"
           "model.path with rollout.temperature / top_p / top_k, at most rollout.max_tokens new tokens, ending at\n"
           "<|im_end|>, <|endoftext|>, the model's eos ids or a rollout.stop_strings entry (none before\n"
           "rollout.min_tokens). Each response keeps its ids, text, finish reason and the log-prob of every\n"
           "token: log softmax(logits / temperature) over the whole vocabulary, before top-k/top-p (at\n"
           "temperature 1 when greedy, rollout.temperature <= 1e-5; maye-traj scores those at 1 too).\n"
           "Draws come from per-sample streams of `seed`, and on the CPU the decode is batch-invariant and the\n"
           "vision tower and prefills run in fixed matmul tiles, so the output depends neither on which queries\n"
           "share a batch nor on model.threads; with rollout.timing=false two runs are bit-identical.\n\n"
           "The model runs on model.device in model.dtype: cpu (fp32), or cuda (fp32 or bf16; builds made with\n"
           "make CUDA=1). On the GPU the draws follow the same streams from logits rounded differently (fp32:\n"
           "the CPU's tokens up to near-ties; bf16: other, equally valid draws), rollout.max_batch_seqs must be\n"
           "at least rollout.n, and stop strings are applied to each finished response (the ids end where the\n"
           "CPU engine would have stopped). model.profile=true prints where the GPU time went (per phase:\n"
           "vision, prefill, decode; per layer op) when the stage ends; it slows the run.\n\n"
           "Queries are processed a step at a time (Position.step_records). Before a step the model switches to\n"
           "the policy version its queries ask for (at most update.max_staleness older), from file handles on\n"
           "the WeightSync stream --sync, or else from run_dir/weights/. Decoding runs up to\n"
           "rollout.max_batch_seqs sequences at once within a KV cache of rollout.max_batch_tokens tokens.\n\n"
           "options:\n"
           "  --sync FILE          WeightSync stream (a FIFO from the orchestrator, or a file); default: find\n"
           "                       policy versions in run_dir/weights/\n"
           "  --start-version V    policy version of model.path (resuming from a checkpoint; default 0)\n"
           "%s",
           maye_cli_common_help);
}

// ----------------------------------------------------------------------------
// setup

typedef struct {
    maye_config cfg;
    maye_model m;
    maye_tokenizer *tok;
    maye_image_processor_config img;
    maye_device_model *dev;  // the model on the device (NULL on the CPU backend)
    maye_generator gen;
    maye_weight_source ws;
    const char *sync_path;   // WeightSync stream, opened when a step first needs another version
    int64_t version;         // policy version the model holds
    maye_reader *in;
    maye_writer *out;
    maye_step_clock clock;   // per-step timing (waiting for weights counts as idle)
    int have_model, have_gen, have_ws;
} rollout;

// Checks that the tokenizer and the image processor fit the model.
static int check_fit(const rollout *ro) {
    const maye_model_config *c = &ro->m.cfg;
    int32_t tv = maye_tokenizer_vocab_size(ro->tok);
    CHECK_OR_FAIL(tv <= c->vocab, "the tokenizer has %d tokens but the model's vocabulary is %d: model.tokenizer "
                  "does not belong to model.path", tv, c->vocab);
    maye_chat chat;
    TRY(maye_chat_init(&chat, ro->tok));
    CHECK_OR_FAIL(chat.image_pad == c->image_token_id && chat.vision_start == c->vision_start_token_id,
                  "the tokenizer's <|image_pad|> / <|vision_start|> are ids %d / %d but the model expects %lld / %lld: "
                  "model.tokenizer does not belong to model.path", chat.image_pad, chat.vision_start,
                  (long long)c->image_token_id, (long long)c->vision_start_token_id);
    CHECK_OR_FAIL(ro->img.patch_size == c->vision.patch && ro->img.merge_size == c->vision.merge &&
                  ro->img.temporal_patch_size == c->vision.temporal_patch,
                  "the image processor (patch %d, merge %d, temporal %d) does not match the model's vision tower "
                  "(patch %d, merge %d, temporal %d)", ro->img.patch_size, ro->img.merge_size,
                  ro->img.temporal_patch_size, c->vision.patch, c->vision.merge, c->vision.temporal_patch);
    return 0;
}

static int setup(rollout *ro, const maye_cli *cli, const char *sync_path, int64_t start_version) {
    const maye_config *cfg = &ro->cfg;
    CHECK_OR_FAIL(cfg->model.path[0], "no model: set model.path to a checkpoint directory");
    const struct {
        const char *key;
        int64_t v, lo, hi;
    } ranges[] = {
        {"rollout.n", cfg->rollout.n, 1, 1 << 20},
        {"rollout.max_tokens", cfg->rollout.max_tokens, 1, 1 << 29},
        {"rollout.min_tokens", cfg->rollout.min_tokens, 0, 1 << 29},
        {"rollout.top_k", cfg->rollout.top_k, 0, INT32_MAX},
        {"rollout.max_batch_seqs", cfg->rollout.max_batch_seqs, 1, 1 << 20},
    };
    for (size_t i = 0; i < sizeof ranges / sizeof *ranges; i++)
        CHECK_OR_FAIL(ranges[i].v >= ranges[i].lo && ranges[i].v <= ranges[i].hi,
                      "%s must be in [%lld, %lld] (got %lld)", ranges[i].key, (long long)ranges[i].lo,
                      (long long)ranges[i].hi, (long long)ranges[i].v);
    cpu_set_threads((int)cfg->model.threads);
    char *tok_path;
    TRY(maye_run_tokenizer_path(cfg, &tok_path));
    int rc = maye_tokenizer_load(&ro->tok, tok_path);
    free(tok_path);
    TRY(rc);
    TRY(maye_run_image_config(cfg, &ro->img));
    TRY(maye_model_load(&ro->m, cfg->model.path));
    ro->have_model = 1;
    TRY(check_fit(ro));

    maye_gen_config g = {
        .n = (int)cfg->rollout.n,
        .sample = {(float)cfg->rollout.temperature, (float)cfg->rollout.top_p, (int)cfg->rollout.top_k},
        .seed = (uint64_t)cfg->seed,
        .max_tokens = (int)cfg->rollout.max_tokens,
        .min_tokens = (int)cfg->rollout.min_tokens,
        .stop_strings = cfg->rollout.stop_strings.items,
        .n_stop_strings = cfg->rollout.stop_strings.n,
        .tok = ro->tok,
        .max_batch_tokens = cfg->rollout.max_batch_tokens,
        .max_batch_seqs = (int)cfg->rollout.max_batch_seqs,
    };
    TRY(maye_gen_stop_ids(&ro->m, ro->tok, g.stop_ids, &g.n_stop));
    TRY(maye_device_open(&ro->dev, cfg, &ro->m, false));
    TRY(maye_generator_init(&ro->gen, ro->dev, &ro->m, &g));
    ro->have_gen = 1;
    CHECK_OR_FAIL(!sync_path || !sync_path[0] || !strcmp(sync_path, "-") || maye_file_exists(sync_path),
                  "--sync '%s': no such file (a WeightSync stream, a FIFO or /dev/fd/N)", sync_path);
    ro->sync_path = sync_path;
    ro->version = start_version;

    TRY(maye_reader_open(&ro->in, cli->in_path, MAYE__RECORD_KIND__QUERY));
    const Maye__StreamHeader *ih = maye_reader_header(ro->in);
    TRY(maye_reader_check_tokenizer(ro->in, maye_tokenizer_vocab_size(ro->tok), maye_tokenizer_digest(ro->tok)));
    TRY(maye_reader_check_model_vocab(ro->in, ro->m.cfg.vocab));
    Maye__StreamHeader h;
    maye_header_init(&h, MAYE__RECORD_KIND__ROLLOUT, NULL, cfg);
    h.vocab_size = ih->vocab_size;
    h.tokenizer_digest = ih->tokenizer_digest;
    rc = maye_writer_open(&ro->out, cli->out_path, &h, &(maye_writer_opts){.atomic = 1, .tee_path = cli->tee_path});
    maye_header_free(&h);
    return rc;
}

static void teardown(rollout *ro) {
    if (ro->in) maye_reader_close(ro->in);
    if (ro->have_ws) maye_weight_source_close(&ro->ws);
    if (ro->have_gen) maye_generator_free(&ro->gen);
    maye_device_close(ro->dev);
    if (ro->have_model) maye_model_free(&ro->m);
    if (ro->tok) maye_tokenizer_free(ro->tok);
}

// ----------------------------------------------------------------------------
// one step

// Writes the Rollout records of a generated step (nothing reaches the reader before the flush).
static int write_step(rollout *ro, ProtobufCMessage **msgs, int n, const maye_gen_result *res, double step_seconds) {
    const maye_config *cfg = &ro->cfg;
    int ns = (int)cfg->rollout.n, rc = 0;
    Maye__Response *resp = xmalloc(sizeof *resp * (size_t)ns);
    Maye__Response **ptrs = xmalloc(sizeof *ptrs * (size_t)ns);
    for (int q = 0; q < n && rc == 0; q++) {
        Maye__Rollout r = MAYE__ROLLOUT__INIT;
        r.query = (Maye__Query *)msgs[q];
        r.n_responses = (size_t)ns;
        r.responses = ptrs;
        r.version = ro->version;
        r.temperature = (float)cfg->rollout.temperature;
        r.top_p = (float)cfg->rollout.top_p;
        r.top_k = (int32_t)cfg->rollout.top_k;
        r.seed = (uint64_t)cfg->seed;
        r.prefill_seconds = cfg->rollout.timing ? res[q].prefill_seconds : 0;
        r.decode_seconds = cfg->rollout.timing ? res[q].decode_seconds : 0;
        r.step_seconds = cfg->rollout.timing ? step_seconds : 0;
        for (int s = 0; s < ns; s++) {
            const maye_gen_output *o = &res[q].out[s];
            maye__response__init(&resp[s]);
            resp[s].sample_index = s;
            resp[s].n_ids = (size_t)o->n;
            resp[s].ids = o->ids;
            resp[s].text = o->text;
            resp[s].finish = (Maye__FinishReason)o->finish;
            resp[s].n_logprobs = (size_t)o->n;
            resp[s].logprobs = o->logprobs;
            resp[s].seconds = cfg->rollout.timing ? o->seconds : 0;
            ptrs[s] = &resp[s];
        }
        rc = maye_writer_write(ro->out, &r.base);
    }
    free(resp), free(ptrs);
    return rc < 0 ? rc : maye_writer_flush(ro->out);
}

static int run_step(rollout *ro, ProtobufCMessage **msgs, int n, int64_t step) {
    const maye_config *cfg = &ro->cfg;
    Maye__Query **qs = (Maye__Query **)msgs;
    for (int q = 1; q < n; q++)
        CHECK_OR_FAIL(qs[q]->version == qs[0]->version, "step %lld: query %d (sample '%s') asks for policy version "
                      "%lld but query 0 asks for %lld (one version per step)", (long long)step, q,
                      qs[q]->pos->sample_id, (long long)qs[q]->version, (long long)qs[0]->version);
    // a handle stream opens only when a step cannot use the version loaded: the orchestrator writes the
    // stream's header with the first handle, which comes after this stage's first step
    int64_t want = qs[0]->version, need = want - (cfg->update.max_staleness > 0 ? cfg->update.max_staleness : 0);
    int stream = ro->sync_path && ro->sync_path[0];
    if (!ro->have_ws && (!stream || need > ro->version || want < ro->version)) {
        if (maye_weight_source_open(&ro->ws, cfg->run_dir, ro->sync_path, ro->version) < 0)
            return maye_fail_ctx("step %lld", (long long)step);
        ro->have_ws = 1;
        maye_weight_source_use_device(&ro->ws, ro->dev, cfg);
    }
    double t_sync = maye_now();
    if (ro->have_ws && maye_weight_source_sync(&ro->ws, &ro->m, want, cfg->update.max_staleness) < 0)
        return maye_fail_ctx("step %lld", (long long)step);
    ro->clock.idle_extra += maye_now() - t_sync;
    if (ro->have_ws) ro->version = ro->ws.version;
    double t_busy = maye_now(); // the step's own work starts here

    maye_query_pixels *px = xcalloc((size_t)n, sizeof *px);
    maye_gen_request *rq = xcalloc((size_t)n, sizeof *rq);
    int64_t **ids = xcalloc((size_t)n, sizeof *ids);
    char (*names)[96] = xcalloc((size_t)n, sizeof *names);
    int rc = 0;
    for (int q = 0; q < n && rc == 0; q++) {
        const Maye__Query *Q = qs[q];
        rc = maye_query_pixels_build(Q, &ro->img, &px[q]);
        ids[q] = xmalloc(sizeof(int64_t) * (Q->n_prompt_ids + 1));
        for (size_t t = 0; t < Q->n_prompt_ids; t++) ids[q][t] = Q->prompt_ids[t];
        snprintf(names[q], sizeof names[q], "step %lld, sample '%s'", (long long)step, Q->pos->sample_id);
        rq[q] = (maye_gen_request){ids[q], (int)Q->n_prompt_ids, px[q].pixels, px[q].n_patches, px[q].grid_thw,
                                   px[q].n_images, maye_sample_stream_key(Q->pos->sample_id, Q->pos->epoch, step),
                                   names[q]};
    }
    maye_gen_result *res = xcalloc((size_t)n, sizeof *res);
    maye_gen_stats before = maye_generator_stats(&ro->gen);
    double t0 = maye_now();
    maye_progress prog;
    maye_progress_start(&prog, "sampling", (int64_t)n * cfg->rollout.n);
    if (rc == 0) rc = maye_generator_run(&ro->gen, rq, n, res, &prog);
    maye_progress_finish(&prog);
    if (rc == 0) {
        double dt = maye_now() - t0;
        maye_gen_stats after = maye_generator_stats(&ro->gen);
        int64_t tokens = after.tokens - before.tokens;
        log_info("step %lld (policy v%lld): %d queries x %lld responses, %lld tokens in %.2f s (%.1f tokens/s; "
                 "prefill %.2f s, vision %.2f s)", (long long)step, (long long)ro->version, n,
                 (long long)cfg->rollout.n, (long long)tokens, dt, tokens / (dt > 0 ? dt : 1),
                 after.prefill_seconds - before.prefill_seconds, after.vision_seconds - before.vision_seconds);
        rc = write_step(ro, msgs, n, res, maye_now() - t_busy);
        maye_gen_result_free(res, n, (int)cfg->rollout.n);
    }
    for (int q = 0; q < n; q++) {
        maye_query_pixels_free(&px[q]);
        free(ids[q]);
    }
    free(px), free(rq), free(ids), free(names), free(res);
    return rc;
}

// ----------------------------------------------------------------------------
// main

int main(int argc, char **argv) {
    maye_log_init(argv[0]);
    signal(SIGPIPE, SIG_IGN);
    maye_cli cli;
    maye_cli_init(&cli);
    const char *sync_path = NULL;
    int64_t start_version = 0;
    for (int i = 1; i < argc;) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(), 0;
        int used = maye_cli_common(&cli, argc, argv, &i);
        if (used < 0) {
            maye_report_error();
            return 2;
        }
        if (used) continue;
        if (!strcmp(a, "--sync") && i + 1 < argc) {
            sync_path = argv[i + 1];
        } else if (!strcmp(a, "--start-version") && i + 1 < argc) {
            if (maye_parse_i64(argv[i + 1], &start_version, "--start-version") < 0 || start_version < 0) {
                if (start_version < 0) maye_fail("--start-version must be >= 0");
                maye_report_error();
                return 2;
            }
        } else {
            log_error("unknown option or missing value: '%s' (see maye-rollout --help)", a);
            return 2;
        }
        i += 2;
    }
    rollout ro;
    memset(&ro, 0, sizeof ro);
    int loaded = maye_cli_load_config(&cli, &ro.cfg);
    if (loaded != 0) {
        if (loaded < 0) maye_report_error();
        maye_cli_free(&cli);
        return loaded < 0 ? 2 : 0;
    }
    int rc = maye_run_check_backend(&ro.cfg);
    if (rc == 0) rc = setup(&ro, &cli, sync_path, start_version);
    maye_step_reader sr;
    if (rc == 0) maye_step_reader_init(&sr, ro.in);
    if (rc == 0) maye_step_clock_start(&ro.clock, ro.in, ro.out);
    while (rc == 0) {
        ProtobufCMessage **msgs;
        int n;
        int64_t step;
        int got = maye_step_reader_next(&sr, &msgs, &n, &step);
        if (got <= 0) {
            rc = got;
            break;
        }
        rc = run_step(&ro, msgs, n, step);
        maye_step_records_free(msgs, n);
        if (rc == 0) maye_step_clock_report(&ro.clock, step, ro.in, ro.out);
    }
    if (ro.out) {
        if (rc == 0) rc = maye_writer_close(ro.out);
        else maye_writer_abort(ro.out);
    }
    if (rc < 0) maye_report_error();
    teardown(&ro);
    maye_config_free(&ro.cfg);
    maye_cli_free(&cli);
    return rc < 0 ? 1 : 0;
}
