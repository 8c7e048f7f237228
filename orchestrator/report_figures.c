// maye report: figures across runs. Each figure is a set of lines (mean over runs at each x, with a +-1 std
// band) written as a gnuplot data file (one block per line) and a gnuplot script in OUT/data, so users can
// re-plot; gnuplot runs as a child process on each script and writes OUT/figures/<name>.png (pngcairo)
// and .svg. Scripts start gnuplot with its default settings (-d) and set no timestamps, so the same data
// gives the same files.
#include "report.h"

#include "core/error.h"
#include "core/log.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
                                      "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"};
#define COLOUR_RL "#1f77b4"
#define COLOUR_SFT "#d62728"
#define COLOUR_VANILLA "#555555"

// ----------------------------------------------------------------------------
// series from samples

typedef struct {
    double x, v;
    int run;
} sample;

typedef struct {
    sample *s; // (samples) one value of one run at one x
    int64_t n, cap;
} samples;

static void samples_add(samples *ss, double x, int run, double v) {
    if (ss->n == ss->cap) {
        ss->cap = ss->cap ? 2 * ss->cap : 256;
        ss->s = xrealloc(ss->s, (size_t)ss->cap * sizeof *ss->s);
    }
    ss->s[ss->n++] = (sample){x, v, run};
}

static int cmp_sample(const void *a, const void *b) {
    const sample *p = a, *q = b;
    if (p->x != q->x) return p->x < q->x ? -1 : 1;
    return (p->run > q->run) - (p->run < q->run);
}

// Mean and population std over the runs at each x; consumes the samples (sorted, then freed).
static report_series series_from(samples *ss) {
    report_series out = {xmalloc((size_t)(ss->n ? ss->n : 1) * sizeof(report_point)), 0};
    if (ss->n) qsort(ss->s, (size_t)ss->n, sizeof *ss->s, cmp_sample);
    for (int64_t i = 0; i < ss->n;) {
        int64_t j = i;
        double sum = 0, sq = 0;
        while (j < ss->n && ss->s[j].x == ss->s[i].x) sum += ss->s[j++].v;
        double mean = sum / (double)(j - i);
        for (int64_t k = i; k < j; k++) sq += (ss->s[k].v - mean) * (ss->s[k].v - mean);
        out.p[out.n++] = (report_point){ss->s[i].x, mean, sqrt(sq / (double)(j - i)), (int)(j - i)};
        i = j;
    }
    free(ss->s);
    *ss = (samples){0};
    return out;
}

void report_series_free(report_series *s) {
    free(s->p);
    s->p = NULL;
    s->n = 0;
}

// ----------------------------------------------------------------------------
// building the figures

static report_figure *new_figure(report_figures *figs, const char *name, const char *title, const char *xlabel,
                                 const char *ylabel, int x_is_epoch) {
    figs->f = xrealloc(figs->f, (size_t)(figs->n + 1) * sizeof *figs->f);
    report_figure *f = &figs->f[figs->n++];
    memset(f, 0, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", name);
    snprintf(f->title, sizeof f->title, "%s", title);
    f->xlabel = xlabel;
    f->ylabel = ylabel;
    f->x_is_epoch = x_is_epoch;
    return f;
}

// Adds a line from samples unless it has none (the samples are consumed either way).
static void add_line(report_figure *f, samples *ss, const char *label, const char *colour, int band, int dashed) {
    report_series s = series_from(ss);
    if (!s.n) {
        report_series_free(&s);
        return;
    }
    ASSERT(f->n_lines < REPORT_MAX_LINES);
    report_line *l = &f->lines[f->n_lines++];
    snprintf(l->label, sizeof l->label, "%s", label);
    l->colour = colour;
    l->s = s;
    l->band = band;
    l->dashed = dashed;
}

static void runs_label(char *buf, size_t n, const char *what, int runs) {
    snprintf(buf, n, "%s (%d run%s)", what, runs, runs == 1 ? "" : "s");
}

// Training accuracy per epoch (mean over the epoch's steps, at x = epoch + 1 like the evaluations),
// response length, reflection ratios and reflection word counts per step: the RL runs' train.jsonl.
static void build_rl_training(const report_set *set, report_figures *figs) {
    int n_rl = 0;
    for (int i = 0; i < set->n; i++) n_rl += set->runs[i].kind == REPORT_RL && set->runs[i].n_steps > 0;
    if (!n_rl) return;
    char label[64];
    runs_label(label, sizeof label, "RL", n_rl);

    samples acc = {0}, len = {0}, ratios[REPORT_NRATIOS] = {{0}}, words[MAYE_REFLECTION_NWORDS] = {{0}};
    for (int i = 0; i < set->n; i++) {
        const report_run *r = &set->runs[i];
        if (r->kind != REPORT_RL) continue;
        for (int64_t k = 0; k < r->n_steps;) { // steps are sorted by step, so an epoch's steps are adjacent
            int64_t j = k;
            double sum = 0;
            while (j < r->n_steps && r->steps[j].epoch == r->steps[k].epoch) sum += r->steps[j++].accuracy;
            samples_add(&acc, (double)(r->steps[k].epoch + 1), i, sum / (double)(j - k));
            k = j;
        }
        for (int64_t k = 0; k < r->n_steps; k++) {
            const report_step *st = &r->steps[k];
            samples_add(&len, (double)st->step, i, st->response_length);
            for (int q = 0; q < REPORT_NRATIOS; q++) samples_add(&ratios[q], (double)st->step, i, st->ratios[q]);
            for (int w = 0; w < MAYE_REFLECTION_NWORDS; w++) samples_add(&words[w], (double)st->step, i, st->words[w]);
        }
    }
    report_figure *f = new_figure(figs, "train_accuracy", "Training accuracy per epoch (mean ± 1 std over runs)",
                                  "epoch", "accuracy", 1);
    add_line(f, &acc, label, COLOUR_RL, 1, 0);
    f = new_figure(figs, "response_length", "Response length per generation step (mean ± 1 std over runs)",
                   "generation step", "tokens", 0);
    add_line(f, &len, label, COLOUR_RL, 1, 0);
    f = new_figure(figs, "reflection_ratios", "Reflection ratios per generation step (mean ± 1 std over runs)",
                   "generation step", "ratio", 0);
    for (int q = 0; q < REPORT_NRATIOS; q++) add_line(f, &ratios[q], report_ratio_keys[q], palette[q], 1, 0);
    f = new_figure(figs, "reflection_words", "Reflection words per generation step (mean over runs)",
                   "generation step", "count", 0);
    for (int w = 0; w < MAYE_REFLECTION_NWORDS; w++)
        add_line(f, &words[w], maye_reflection_words[w], palette[w], 0, 0);
}

// The SFT runs' training loss per step.
static void build_sft_training(const report_set *set, report_figures *figs) {
    int n_sft = 0;
    samples loss = {0};
    for (int i = 0; i < set->n; i++) {
        const report_run *r = &set->runs[i];
        if (r->kind != REPORT_SFT || !r->n_steps) continue;
        n_sft++;
        for (int64_t k = 0; k < r->n_steps; k++) samples_add(&loss, (double)r->steps[k].step, i, r->steps[k].loss);
    }
    if (!n_sft) return;
    char label[64];
    runs_label(label, sizeof label, "SFT", n_sft);
    report_figure *f = new_figure(figs, "sft_loss", "SFT training loss per step (mean ± 1 std over runs)", "step",
                                  "loss", 0);
    add_line(f, &loss, label, COLOUR_SFT, 1, 0);
}

// Accuracy per evaluated epoch for one split x setting: RL and SFT (mean ± std over runs, from epoch 0)
// and the vanilla level (mean over all runs of epoch 0) as a dashed line across the epochs.
static void build_eval(const report_set *set, int s, int g, report_figures *figs) {
    samples kind[2] = {{0}};
    int runs[2] = {0, 0};
    double v_sum = 0, last_epoch = 0;
    int v_n = 0;
    for (int i = 0; i < set->n; i++) {
        const report_run *r = &set->runs[i];
        int any = 0;
        for (int64_t e = 0; e < r->n_epochs_eval; e++) {
            double a = r->eval[s][g][e];
            if (isnan(a)) continue;
            if (e == 0) v_sum += a, v_n++;
            if (r->kind == REPORT_EVAL) continue;
            samples_add(&kind[r->kind], (double)e, i, a);
            if ((double)e > last_epoch) last_epoch = (double)e;
            any = 1;
        }
        if (any) runs[r->kind]++;
    }
    if (!kind[REPORT_RL].n && !kind[REPORT_SFT].n && !v_n) return;
    char name[64], title[160], label[64];
    const char *setting = report_settings[g];
    snprintf(name, sizeof name, "eval_%s_", report_splits[s]);
    for (const char *c = setting; *c; c++) // "pass@8_t1.0" -> "pass8_t1.0"
        if (*c != '@') snprintf(name + strlen(name), sizeof name - strlen(name), "%c", *c);
    snprintf(title, sizeof title, "%s accuracy, %s, per epoch (mean ± 1 std over runs)", report_splits[s], setting);
    title[0] = (char)(title[0] - 'a' + 'A');
    report_figure *f = new_figure(figs, name, title, "epoch", "accuracy", 1);
    runs_label(label, sizeof label, "RL", runs[REPORT_RL]);
    add_line(f, &kind[REPORT_RL], label, COLOUR_RL, 1, 0);
    runs_label(label, sizeof label, "SFT", runs[REPORT_SFT]);
    add_line(f, &kind[REPORT_SFT], label, COLOUR_SFT, 1, 0);
    if (v_n) {
        samples v = {0};
        samples_add(&v, 0, 0, v_sum / v_n);
        if (last_epoch > 0) samples_add(&v, last_epoch, 0, v_sum / v_n);
        add_line(f, &v, "vanilla (epoch 0)", COLOUR_VANILLA, 0, 1);
        report_series *vs = &f->lines[f->n_lines - 1].s;
        for (int64_t k = 0; k < vs->n; k++) vs->p[k].n = v_n; // the runs behind the level, not 1
    }
}

void report_figures_build(const report_set *set, report_figures *figs) {
    *figs = (report_figures){0};
    build_rl_training(set, figs);
    build_sft_training(set, figs);
    for (int s = 0; s < REPORT_NSPLITS; s++)
        for (int g = 0; g < REPORT_NSETTINGS; g++) build_eval(set, s, g, figs);
}

void report_figures_free(report_figures *figs) {
    for (int i = 0; i < figs->n; i++)
        for (int l = 0; l < figs->f[i].n_lines; l++) report_series_free(&figs->f[i].lines[l].s);
    free(figs->f);
    *figs = (report_figures){0};
}

// ----------------------------------------------------------------------------
// data files and scripts

static int write_data(const report_figure *f, const char *path) {
    maye_buf b = {0};
    maye_buf_printf(&b, "# maye report: %s\n# x = %s; one block per line of the figure (gnuplot: index N);\n"
                        "# columns: x, mean over runs, std over runs (population), runs\n",
                    f->title, f->xlabel);
    for (int l = 0; l < f->n_lines; l++) {
        if (l) maye_buf_puts(&b, "\n\n");
        maye_buf_printf(&b, "# index %d: %s\n", l, f->lines[l].label);
        for (int64_t k = 0; k < f->lines[l].s.n; k++) {
            const report_point *p = &f->lines[l].s.p[k];
            maye_buf_printf(&b, "%.10g %.10g %.10g %d\n", p->x, p->mean, p->std, p->n);
        }
    }
    int rc = maye_write_file_atomic(path, b.data, b.len);
    maye_buf_free(&b);
    return rc;
}

static int write_script(const report_figure *f, const char *path) {
    double last_x = 0;
    int points = 0;
    for (int l = 0; l < f->n_lines; l++) {
        const report_series *s = &f->lines[l].s;
        if (s->n && s->p[s->n - 1].x > last_x) last_x = s->p[s->n - 1].x;
        if (s->n > points) points = (int)s->n;
    }
    const char *style = points <= 60 ? "linespoints pt 7 ps 0.5" : "lines";
    maye_buf b = {0};
    maye_buf_printf(&b,
                    "# maye report: %s\n"
                    "# Draws ../figures/%s.png and ../figures/%s.svg from %s.dat. Run it in this directory:\n"
                    "#   gnuplot -d %s.gp\n"
                    "reset\nset encoding utf8\n"
                    "set title \"%s\" noenhanced\nset xlabel \"%s\" noenhanced\nset ylabel \"%s\" noenhanced\n"
                    "set grid\nset key %s noenhanced\n%s"
                    "set style fill transparent solid 0.2 noborder\n",
                    f->title, f->name, f->name, f->name, f->name, f->title, f->xlabel, f->ylabel,
                    f->n_lines > 3 ? "below" : "outside right top", f->n_lines > 3 ? "set bmargin 7\n" : "");
    if (f->x_is_epoch && last_x <= 20) maye_buf_puts(&b, "set xtics 1\n");
    maye_buf_printf(&b, "set terminal pngcairo size 1000,560 font \"sans,10\" noenhanced\n"
                        "set output \"../figures/%s.png\"\nplot \\\n",
                    f->name);
    int first = 1;
    for (int pass = 0; pass < 2; pass++) // bands under every line
        for (int l = 0; l < f->n_lines; l++) {
            const report_line *ln = &f->lines[l];
            if (pass == 0 && !ln->band) continue;
            maye_buf_printf(&b, "%s  \"%s.dat\" index %d ", first ? "" : ", \\\n", f->name, l);
            first = 0;
            if (pass == 0)
                maye_buf_printf(&b, "using 1:($2-$3):($2+$3) with filledcurves lc rgb \"%s\" notitle", ln->colour);
            else
                maye_buf_printf(&b, "using 1:2 with %s lw 2 dt %d lc rgb \"%s\" title \"%s\"",
                                ln->dashed ? "lines" : style, ln->dashed ? 2 : 1, ln->colour, ln->label);
        }
    maye_buf_printf(&b, "\nset terminal svg size 1000,560 font \"sans,10\" noenhanced\n"
                        "set output \"../figures/%s.svg\"\nreplot\nset output\n",
                    f->name);
    int rc = maye_write_file_atomic(path, b.data, b.len);
    maye_buf_free(&b);
    return rc;
}

int report_figures_write(const report_figures *figs, const char *out) {
    char *dir = maye_path_join(out, "data"), *fig_dir = maye_path_join(out, "figures");
    int rc = maye_mkdir_p(dir);
    if (rc == 0) rc = maye_mkdir_p(fig_dir); // where the scripts write, drawn now or re-plotted later
    free(fig_dir);
    for (int i = 0; i < figs->n && rc == 0; i++) {
        char file[96];
        snprintf(file, sizeof file, "%s.dat", figs->f[i].name);
        char *path = maye_path_join(dir, file);
        rc = write_data(&figs->f[i], path);
        free(path);
        snprintf(file, sizeof file, "%s.gp", figs->f[i].name);
        path = maye_path_join(dir, file);
        if (rc == 0) rc = write_script(&figs->f[i], path);
        free(path);
    }
    free(dir);
    return rc;
}

// ----------------------------------------------------------------------------
// running gnuplot

// The executable for `prog`: a path as given, or the first match in PATH. NULL when there is none.
static char *find_program(const char *prog) {
    if (strchr(prog, '/')) return access(prog, X_OK) == 0 && !maye_is_dir(prog) ? xstrdup(prog) : NULL;
    const char *path = getenv("PATH");
    if (!path) path = "/usr/local/bin:/usr/bin:/bin";
    for (const char *p = path;; p++) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char *dir = n ? strndup(p, n) : xstrdup(".");
        if (!dir) maye_die("out of memory");
        char *full = maye_path_join(dir, prog);
        free(dir);
        if (access(full, X_OK) == 0 && !maye_is_dir(full)) return full;
        free(full);
        if (!end) return NULL;
        p = end;
    }
}

// Runs `exe -d script` in `dir` with its stdout sent to stderr (our stdout carries the report).
static int run_gnuplot(const char *exe, const char *dir, const char *script) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return maye_fail("cannot start gnuplot: fork failed: %s", strerror(errno));
    if (pid == 0) {
        if (chdir(dir) != 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0) _exit(126);
        execl(exe, exe, "-d", script, (char *)NULL);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return maye_fail("waiting for gnuplot failed: %s", strerror(errno));
    if (WIFSIGNALED(status))
        return maye_fail("gnuplot was killed by signal %d while running %s/%s", WTERMSIG(status), dir, script);
    if (WEXITSTATUS(status))
        return maye_fail("gnuplot failed (exit status %d) on %s/%s; its message is above", WEXITSTATUS(status), dir,
                         script);
    return 0;
}

static int check_output(const char *path) {
    struct stat st;
    CHECK_OR_FAIL(stat(path, &st) == 0 && st.st_size > 0, "gnuplot did not write '%s'", path);
    return 0;
}

int report_figures_draw(const report_figures *figs, const char *out, const char *gnuplot) {
    char *exe = find_program(gnuplot);
    char *data = maye_path_join(out, "data"), *fig_dir = maye_path_join(out, "figures");
    int rc = 0;
    if (!exe)
        rc = maye_fail("gnuplot not found (looked for '%s'%s): the data and scripts are in %s; install gnuplot "
                       "(Debian: apt-get install gnuplot-nox) and run `cd %s && for f in *.gp; do gnuplot -d \"$f\"; "
                       "done`, or pass --no-plots to skip the figures",
                       gnuplot, strchr(gnuplot, '/') ? "" : " in PATH", data, data);
    if (rc == 0) rc = maye_mkdir_p(fig_dir);
    for (int i = 0; i < figs->n && rc == 0; i++) {
        char file[96], *png, *svg;
        snprintf(file, sizeof file, "%s.png", figs->f[i].name);
        png = maye_path_join(fig_dir, file);
        snprintf(file, sizeof file, "%s.svg", figs->f[i].name);
        svg = maye_path_join(fig_dir, file);
        unlink(png); // a failed run must not leave an older figure behind
        unlink(svg);
        snprintf(file, sizeof file, "%s.gp", figs->f[i].name);
        rc = run_gnuplot(exe, data, file);
        if (rc == 0) rc = check_output(png);
        if (rc == 0) rc = check_output(svg);
        free(png);
        free(svg);
    }
    free(exe);
    free(data);
    free(fig_dir);
    return rc;
}
