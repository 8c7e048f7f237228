// maye report: reads run directories (docs/run-dir.md) and writes the MAYE accuracy table and figures
// across seeds: OUT/report.md (also printed), OUT/index.html, OUT/figures/*.png|svg drawn by gnuplot from
// OUT/data/*.dat|gp. The work is in report_runs.c, report_figures.c and report_pages.c.
#include "commands.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *report_help =
    "usage: maye report RUN_DIR... [--sft SFT_RUN_DIR]... -o OUT [--no-plots] [--gnuplot PROG]\n"
    "\n"
    "Reports on training runs: the accuracy table of the MAYE paper and figures across seeds.\n"
    "A RUN_DIR with seed-N/ subdirectories stands for its seeds; a RUN_DIR with run.json is one run.\n"
    "Runs are grouped by the kind in their run.json: \"rl\" (the seeds of one RL configuration), \"sft\" (the\n"
    "SFT baseline; --sft also takes them and checks their kind) and \"eval\" (evaluations of the untrained\n"
    "model, used for the vanilla column only). A run whose status is \"running\" is reported with what it\n"
    "has so far, and the report says so.\n"
    "\n"
    "Writes:\n"
    "  OUT/report.md      runs, accuracy table and figure links (also printed on stdout)\n"
    "  OUT/index.html     the same with every figure shown\n"
    "  OUT/figures/       NAME.png and NAME.svg for each figure, drawn by gnuplot\n"
    "  OUT/data/          NAME.dat (mean, std, runs per x) and NAME.gp (re-plot: cd OUT/data && gnuplot -d NAME.gp)\n"
    "Figures (when the runs have the data): train_accuracy, response_length, reflection_ratios,\n"
    "reflection_words (RL runs), sft_loss (SFT runs), eval_SPLIT_SETTING for SPLIT in validation, test and\n"
    "SETTING in pass8_t1.0, pass1_t0.6, pass1_t0.01 (RL, SFT and vanilla on the same axes).\n"
    "Accuracy table (percent), for each split x setting: vanilla = mean over runs of epoch 0; max / mean =\n"
    "mean over runs of the best / the mean accuracy over the evaluated epochs >= 1, for RL and SFT, with\n"
    "the gain over vanilla in points. Same runs -> same files.\n"
    "\n"
    "options:\n"
    "  -o, --output OUT   output directory (created if needed; files of an earlier report are replaced)\n"
    "  --sft DIR          an SFT run directory (or a parent of seed-N/ SFT runs); may be repeated\n"
    "  --no-plots         write the data and gnuplot scripts but do not run gnuplot\n"
    "  --gnuplot PROG     the gnuplot program (default: gnuplot, looked up in PATH)\n"
    "  -h, --help         show this help\n"
    "\n"
    "exit status: 0 on success; 1 on an error (a missing or malformed run directory or metrics line, no\n"
    "evaluation data, or figures that could not be drawn: gnuplot missing or failing, in which case the\n"
    "pages, data and scripts are still written); 2 on bad usage.\n";

// Logs "<what> '<arg>'" (or just <what> when arg is NULL) and the usage line; returns the usage exit status.
static int usage_error(const char *what, const char *arg) {
    if (arg) log_error("%s '%s'", what, arg);
    else log_error("%s", what);
    fputs("usage: maye report RUN_DIR... [--sft SFT_RUN_DIR]... -o OUT [--no-plots] [--gnuplot PROG]   "
          "(maye report --help)\n",
          stderr);
    return 2;
}

int cmd_report(int argc, char **argv) {
    const char *out = NULL, *gnuplot = "gnuplot";
    int no_plots = 0, n_dirs = 0, n_sft = 0;
    const char **dirs = xcalloc((size_t)argc, sizeof *dirs), **sft = xcalloc((size_t)argc, sizeof *sft);
    int rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(report_help, stdout);
            free(dirs);
            free(sft);
            return 0;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (has_value) out = argv[++i];
            else rc = usage_error("missing the directory after", a);
        } else if (!strcmp(a, "--sft")) {
            if (has_value) sft[n_sft++] = argv[++i];
            else rc = usage_error("missing the run directory after", a);
        } else if (!strcmp(a, "--gnuplot")) {
            if (has_value) gnuplot = argv[++i];
            else rc = usage_error("missing the program after", a);
        } else if (!strcmp(a, "--no-plots")) {
            no_plots = 1;
        } else if (a[0] == '-' && a[1]) {
            rc = usage_error("unknown option", a);
        } else {
            dirs[n_dirs++] = a;
        }
    }
    if (rc == 0 && !n_dirs && !n_sft) rc = usage_error("no run directory given", NULL);
    if (rc == 0 && !out) rc = usage_error("missing -o OUT (the output directory)", NULL);
    if (rc) {
        free(dirs);
        free(sft);
        return rc;
    }

    report_set set = {0};
    report_figures figs = {0};
    maye_buf md = {0}, note = {0};
    for (int i = 0; i < n_dirs + n_sft && rc == 0; i++)
        rc = report_load(&set, i < n_dirs ? dirs[i] : sft[i - n_dirs], i >= n_dirs);
    int64_t eval_lines = 0;
    for (int i = 0; i < set.n; i++) eval_lines += set.runs[i].n_eval_lines;
    if (rc == 0 && !eval_lines)
        rc = maye_fail("no evaluation data: %s%s%s has no lines in metrics/eval.jsonl; the report needs the "
                       "evaluations before training (epoch 0) and after the epochs",
                       set.n == 1 ? "the run " : "none of the runs (", set.runs[0].dir, set.n == 1 ? "" : ", ...)");
    if (rc == 0) rc = maye_mkdir_p(out);
    if (rc == 0) {
        report_table table;
        report_table_compute(&set, &table);
        report_figures_build(&set, &figs);
        rc = report_figures_write(&figs, out);
        maye_buf draw_err = {0};
        if (rc == 0 && !no_plots && report_figures_draw(&figs, out, gnuplot) < 0)
            maye_buf_puts(&draw_err, maye_errmsg());
        if (no_plots)
            maye_buf_puts(&note, "the figures were not drawn (--no-plots); draw them with "
                                 "`cd data && for f in *.gp; do gnuplot -d \"$f\"; done`");
        else if (draw_err.len)
            maye_buf_printf(&note, "the figures were not drawn: %s", draw_err.data);
        if (rc == 0) rc = report_pages_write(&set, &table, &figs, note.len ? note.data : NULL, out, &md);
        if (rc == 0) {
            fwrite(md.data, 1, md.len, stdout);
            fflush(stdout);
            log_info("wrote %s/report.md, %s/index.html and the data and scripts of %d figure%s in %s/data%s", out,
                     out, figs.n, figs.n == 1 ? "" : "s", out, no_plots || draw_err.len ? "" : " (drawn in figures/)");
            if (draw_err.len) rc = maye_fail("%s", draw_err.data);
        }
        maye_buf_free(&draw_err);
    }
    if (rc) maye_report_error();
    report_figures_free(&figs);
    report_set_free(&set);
    maye_buf_free(&md);
    maye_buf_free(&note);
    free(dirs);
    free(sft);
    return rc ? 1 : 0;
}
