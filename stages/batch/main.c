// maye-batch (Step I): reads a MAYE-format JSONL dataset and its images, applies the chat template and the
// prompt suffix, tokenizes, resizes the images, and writes one Query record per sample, a generation step
// (batch) at a time, flushing after each step.
#include "core/cli.h"
#include "core/error.h"
#include "core/log.h"
#include "data/dataset.h"
#include "data/inputs.h"
#include "io/records.h"
#include "io/steps.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
    printf("usage: maye-batch [--config FILE] [key.path=value ...] [-o OUT] [--split SPLIT] [--steps K]\n"
           "                  [--start-step S] [--epoch E] [--version V]\n\n"
           "Reads the dataset data.<SPLIT> (MAYE JSONL: question, answer, solution, id, image) and writes Query\n"
           "records: prompt ids (chat template + data.prompt_suffix, image pads expanded), the resized uint8\n"
           "RGB image and its patch grid, the answer, and the position (sample id, epoch, step).\n\n"
           "The train split is shuffled every epoch (data.shuffle) with `seed` (same seed, same stream) in batches of\n"
           "data.batch_size (an incomplete last batch is dropped) for train.epochs epochs; the validation and\n"
           "test splits are one pass in file order. The tokenizer is model.tokenizer (default\n"
           "<model.path>/tokenizer.json); the image processor reads <model.path>/preprocessor_config.json if\n"
           "present, and data.min_pixels / data.max_pixels override its bounds.\n\n"
           "options:\n"
           "  --split SPLIT        train (default), validation or test\n"
           "  --steps K            stop after K generation steps\n"
           "  --start-step S       begin at global step S (resuming a run)\n"
           "  --epoch E            epoch label of an evaluation pass (default 0)\n"
           "  --version V          policy version evaluation queries ask for (default 0); training step k\n"
           "                       asks for version k\n"
           "%s(maye-batch reads no records: -i is refused.)\n",
           maye_cli_common_help);
}

// Loads the tokenizer and image-processor settings the config names.
static int setup(const maye_config *cfg, maye_tokenizer **tok, maye_image_processor_config *img) {
    char *tok_path;
    TRY(maye_run_tokenizer_path(cfg, &tok_path));
    int rc = maye_tokenizer_load(tok, tok_path);
    free(tok_path);
    TRY(rc);
    return maye_run_image_config(cfg, img);
}

// Builds every Query of one step (in parallel) before writing any of them, so an error leaves no partial
// step in the stream.
static int write_step(maye_writer *w, const maye_query_builder *b, const maye_dataset *ds, const char *split,
                      int64_t step, int64_t total_steps, int64_t epoch, int64_t version, const int *idx, int n) {
    Maye__Query *qs = xcalloc((size_t)n, sizeof(Maye__Query));
    Maye__Position *pos = xcalloc((size_t)n, sizeof(Maye__Position));
    int *ok = xcalloc((size_t)n, sizeof(int));
    char first_err[MAYE_ERRMSG_MAX] = "";
    int failed = -1;
#pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < n; i++) {
        if (maye_query_build(b, ds, idx[i], &qs[i]) == 0) {
            ok[i] = 1;
            continue;
        }
#pragma omp critical
        if (failed < 0 || i < failed) failed = i, snprintf(first_err, sizeof first_err, "%s", maye_errmsg());
    }
    int rc = 0;
    if (failed >= 0) rc = maye_fail("%s", first_err);
    for (int i = 0; i < n && rc == 0; i++) {
        const maye_sample *s = &ds->samples[idx[i]];
        maye__position__init(&pos[i]);
        pos[i].sample_id = s->id;
        pos[i].index = s->line - 1;
        pos[i].epoch = epoch;
        pos[i].step = step;
        pos[i].step_offset = i;
        pos[i].step_records = n;
        pos[i].split = (char *)split;
        pos[i].total_steps = total_steps;
        qs[i].pos = &pos[i];
        qs[i].version = version;
        rc = maye_writer_write(w, &qs[i].base);
        qs[i].pos = NULL; // borrowed strings: not freed by maye_query_clear
    }
    if (rc == 0) rc = maye_writer_flush(w);
    for (int i = 0; i < n; i++)
        if (ok[i]) maye_query_clear(&qs[i]);
    free(qs), free(pos), free(ok);
    return rc;
}

int main(int argc, char **argv) {
    maye_log_init(argv[0]);
    signal(SIGPIPE, SIG_IGN);
    maye_cli cli;
    maye_cli_init(&cli);
    const char *split = "train";
    int64_t steps = -1, start = 0, epoch_label = 0, version = 0;
    for (int i = 1; i < argc;) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(), 0;
        int used = maye_cli_common(&cli, argc, argv, &i);
        if (used < 0) goto fail;
        if (used) continue;
        bool known = !strcmp(a, "--split") || !strcmp(a, "--steps") || !strcmp(a, "--start-step") ||
                     !strcmp(a, "--epoch") || !strcmp(a, "--version");
        if (i + 1 >= argc) {
            if (known) log_error("option '%s' needs a value (see maye-batch --help)", a);
            else log_error("unknown option '%s' (see maye-batch --help)", a);
            return 2;
        }
        const char *v = argv[i + 1];
        int rc = 0;
        if (!strcmp(a, "--split")) split = v;
        else if (!strcmp(a, "--steps")) rc = maye_parse_i64(v, &steps, "--steps");
        else if (!strcmp(a, "--start-step")) rc = maye_parse_i64(v, &start, "--start-step");
        else if (!strcmp(a, "--epoch")) rc = maye_parse_i64(v, &epoch_label, "--epoch");
        else if (!strcmp(a, "--version")) rc = maye_parse_i64(v, &version, "--version");
        else {
            log_error("unknown option '%s' (see maye-batch --help)", a);
            return 2;
        }
        if (rc < 0) goto fail;
        i += 2;
    }
    if (strcmp(cli.in_path, "-")) {
        log_error("-i: maye-batch reads no records (it reads data.<split> of the configuration)");
        return 2;
    }
    maye_config cfg;
    int loaded = maye_cli_load_config(&cli, &cfg);
    if (loaded < 0) goto fail;
    if (loaded > 0) return 0;

    int train = !strcmp(split, "train");
    const char *data_path = train ? cfg.data.train
                          : !strcmp(split, "validation") ? cfg.data.validation
                          : !strcmp(split, "test") ? cfg.data.test : NULL;
    if (!data_path) {
        log_error("--split must be train, validation or test, got '%s'", split);
        return 2;
    }
    if (!data_path[0]) {
        log_error("no dataset for split '%s': set data.%s", split, split);
        return 2;
    }
    maye_tokenizer *tok = NULL;
    maye_image_processor_config img;
    maye_dataset ds;
    maye_query_builder qb;
    maye_schedule sched;
    if (setup(&cfg, &tok, &img) < 0) goto fail;
    if (maye_dataset_load(&ds, data_path, cfg.data.limit) < 0) goto fail;
    if (maye_query_builder_init(&qb, tok, &img, cfg.data.system_prompt, cfg.data.prompt_suffix,
                                cfg.data.strip_image_tag, cfg.data.max_prompt_tokens) < 0)
        goto fail;
    if (maye_schedule_init(&sched, ds.n, (int)cfg.data.batch_size, train, cfg.data.shuffle, (uint64_t)cfg.seed,
                           cfg.train.epochs) < 0)
        goto fail;
    int64_t total = maye_schedule_total_steps(&sched);
    int64_t end = steps >= 0 && start + steps < total ? start + steps : total;
    if (start < 0 || start > total) {
        log_error("--start-step %lld is outside the run's %lld steps", (long long)start, (long long)total);
        return 2;
    }
    if (train && ds.n % cfg.data.batch_size)
        log_info("%s: %d samples; the last %d of each shuffled epoch are dropped (batch size %lld)", data_path,
                 ds.n, (int)(ds.n % cfg.data.batch_size), (long long)cfg.data.batch_size);

    Maye__StreamHeader h;
    maye_header_init(&h, MAYE__RECORD_KIND__QUERY, NULL, &cfg);
    h.vocab_size = maye_tokenizer_vocab_size(tok);
    h.tokenizer_digest = maye_tokenizer_digest(tok);
    maye_writer *w = NULL;
    int rc = maye_writer_open(&w, cli.out_path, &h, &(maye_writer_opts){.atomic = 1, .tee_path = cli.tee_path});
    maye_header_free(&h);
    if (rc < 0) goto fail;
    int *idx = xmalloc(sizeof(int) * (size_t)cfg.data.batch_size);
    maye_progress prog;
    maye_progress_start(&prog, train ? "batching steps" : "batching eval steps", end - start);
    maye_step_clock clock;
    maye_step_clock_start(&clock, NULL, w);
    for (int64_t step = start; step < end && rc == 0; step++) {
        int n;
        int64_t epoch;
        maye_schedule_step(&sched, step, idx, &n, &epoch);
        rc = write_step(w, &qb, &ds, split, step, total, train ? epoch : epoch_label, train ? step : version, idx, n);
        if (rc == 0) maye_step_clock_report(&clock, step, NULL, w);
        maye_progress_update(&prog, step - start + 1);
    }
    maye_progress_finish(&prog);
    free(idx);
    if (rc == 0) rc = maye_writer_close(w);
    else maye_writer_abort(w);
    maye_dataset_free(&ds);
    maye_tokenizer_free(tok);
    maye_config_free(&cfg);
    maye_cli_free(&cli);
    if (rc < 0) goto fail;
    return 0;
fail:
    maye_report_error();
    return 1;
}
