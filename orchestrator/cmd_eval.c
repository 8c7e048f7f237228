// maye eval: the MAYE evaluation of any checkpoint (validation and test sets under the three generation
// settings), written as an "eval" run that `maye report` reads as a vanilla point.
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "procs.h"
#include "run.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
    printf("usage: maye eval CONFIG --checkpoint DIR [-o RUN_DIR] [--epoch E] [key.path=value ...]\n\n"
           "Evaluates the checkpoint DIR on data.validation and data.test under the MAYE settings pass@8 (n=8,\n"
           "T=1.0), pass@1 (T=0.6) and pass@1 (T=0.01, top_p=0.001): every response goes to\n"
           "RUN_DIR/eval/epoch-EEEE/<split>-<setting>.jsonl and each accuracy to RUN_DIR/metrics/eval.jsonl.\n\n"
           "  --checkpoint DIR   the model to evaluate (Hugging Face layout)\n"
           "  -o RUN_DIR         where to write (default: run_dir of the config); a directory holding a\n"
           "                     training run is refused\n"
           "  --epoch E          the epoch label of the evaluation (default 0; maye report takes eval runs as\n"
           "                     the vanilla model at epoch 0)\n");
}

int cmd_eval(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    const char *config = NULL, *ckpt = NULL, *out = NULL;
    int64_t epoch = 0;
    char **ov = xcalloc((size_t)argc, sizeof(char *));
    int nov = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            free(ov);
            usage();
            return 0;
        }
        if (!strcmp(a, "--checkpoint") && i + 1 < argc) ckpt = argv[++i];
        else if (!strcmp(a, "-o") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(a, "--epoch") && i + 1 < argc) {
            if (maye_parse_i64(argv[++i], &epoch, "--epoch") < 0) {
                maye_report_error();
                free(ov);
                return 2;
            }
        } else if (a[0] != '-' && strchr(a, '=')) ov[nov++] = argv[i];
        else if (a[0] != '-' && !config) config = a;
        else {
            log_error("unknown option or argument '%s' (see maye eval --help)", a);
            free(ov);
            return 2;
        }
    }
    if (!config || !ckpt) {
        log_error("usage: maye eval CONFIG --checkpoint DIR (see maye eval --help)");
        free(ov);
        return 2;
    }
    maye_config cfg;
    int rc = maye_config_load(&cfg, config, nov, ov);
    free(ov);
    if (rc == 0 && !maye_is_dir(ckpt)) rc = maye_fail("--checkpoint: '%s' is not a directory", ckpt);
    if (rc == 0 && !cfg.data.validation[0] && !cfg.data.test[0])
        rc = maye_fail("%s: neither data.validation nor data.test is set: nothing to evaluate", config);
    maye_run run;
    char *bin = maye_self_dir();
    if (rc == 0) {
        free(cfg.model.path);
        cfg.model.path = xstrdup(ckpt);
        char *dir = xstrdup(out ? out : cfg.run_dir);
        rc = maye_run_create(&run, dir, "eval", &cfg);
        free(dir);
        if (rc == 0) {
            rc = maye_eval_all(&run, &cfg, bin, epoch, 0, 0);
            maye_run_set_status(&run, rc == 0 ? "done" : "failed");
            maye_run_free(&run);
        }
    }
    free(bin);
    maye_config_free(&cfg);
    if (rc < 0) {
        maye_report_error();
        return 1;
    }
    return 0;
}
