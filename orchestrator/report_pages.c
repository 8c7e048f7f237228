// maye report: the accuracy table of the MAYE paper and the two pages that show it, OUT/report.md (also
// printed) and OUT/index.html (the runs, the table and every figure). For each split x setting: vanilla
// is the mean over runs of the accuracy at epoch 0 (before training); "max" and "mean" are the means over
// runs of the best and of the mean accuracy over the evaluated epochs >= 1, for RL and SFT, each with its
// gain over vanilla in points. Everything printed depends only on the runs, so the same runs give the
// same bytes.
#include "report.h"

#include "core/error.h"
#include "version.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// the table

void report_table_compute(const report_set *set, report_table *t) {
    memset(t, 0, sizeof *t);
    for (int s = 0; s < REPORT_NSPLITS; s++)
        for (int g = 0; g < REPORT_NSETTINGS; g++) {
            double v_sum = 0, max_sum[2] = {0, 0}, mean_sum[2] = {0, 0};
            int v_n = 0, n[2] = {0, 0};
            for (int i = 0; i < set->n; i++) {
                const report_run *r = &set->runs[i];
                const double *acc = r->eval[s][g];
                if (r->n_epochs_eval > 0 && !isnan(acc[0])) v_sum += acc[0], v_n++;
                if (r->kind == REPORT_EVAL) continue;
                double best = -INFINITY, sum = 0;
                int epochs = 0;
                for (int64_t e = 1; e < r->n_epochs_eval; e++) {
                    if (isnan(acc[e])) continue;
                    if (acc[e] > best) best = acc[e];
                    sum += acc[e];
                    epochs++;
                }
                if (!epochs) continue;
                max_sum[r->kind] += best;
                mean_sum[r->kind] += sum / epochs;
                n[r->kind]++;
            }
            t->vanilla[s][g] = v_n ? v_sum / v_n : NAN;
            for (int k = 0; k < 2; k++) {
                t->max[k][s][g] = n[k] ? max_sum[k] / n[k] : NAN;
                t->mean[k][s][g] = n[k] ? mean_sum[k] / n[k] : NAN;
            }
        }
    for (int i = 0; i < set->n; i++) {
        const report_run *r = &set->runs[i];
        int at0 = 0, later = 0;
        for (int s = 0; s < REPORT_NSPLITS; s++)
            for (int g = 0; g < REPORT_NSETTINGS; g++)
                for (int64_t e = 0; e < r->n_epochs_eval; e++)
                    if (!isnan(r->eval[s][g][e])) *(e ? &later : &at0) = 1;
        t->n_vanilla += at0;
        if (r->kind != REPORT_EVAL) t->n_trained[r->kind] += later;
    }
}

// "53.67", or "-" when nothing was measured.
static void fmt_pct(char *buf, size_t n, double v) {
    if (isnan(v)) snprintf(buf, n, "-");
    else snprintf(buf, n, "%.2f", 100 * v);
}

// "53.67 (+10.17)": a value with its gain over vanilla in points (no "-0.00").
static void fmt_cell(char *buf, size_t n, double v, double vanilla) {
    fmt_pct(buf, n, v);
    if (isnan(v) || isnan(vanilla)) return;
    double gain = 100 * (v - vanilla);
    if (fabs(gain) < 0.005) gain = 0;
    snprintf(buf + strlen(buf), n - strlen(buf), " (%+.2f)", gain);
}

typedef struct {
    const char *label;
    int kind;     // REPORT_RL / REPORT_SFT, or -1 for vanilla
    int is_max;
} table_row;

static const table_row table_rows[] = {
    {"vanilla", -1, 0}, {"SFT max", REPORT_SFT, 1}, {"SFT mean", REPORT_SFT, 0},
    {"RL max", REPORT_RL, 1}, {"RL mean", REPORT_RL, 0},
};

static int row_shown(const report_set *set, const table_row *row) {
    return row->kind < 0 || report_count(set, (report_kind)row->kind) > 0;
}

static void row_cell(const report_table *t, const table_row *row, int s, int g, char *buf, size_t n) {
    if (row->kind < 0) fmt_pct(buf, n, t->vanilla[s][g]);
    else fmt_cell(buf, n, (row->is_max ? t->max : t->mean)[row->kind][s][g], t->vanilla[s][g]);
}

static const char *plural(int n) { return n == 1 ? "" : "s"; }

static void table_legend(const report_set *set, const report_table *t, maye_buf *b) {
    maye_buf_printf(b, "vanilla: mean over the %d run%s evaluated at epoch 0 (before training). max / mean: mean "
                       "over runs of the best / of the mean accuracy over the evaluated epochs >= 1",
                    t->n_vanilla, plural(t->n_vanilla));
    const char *sep = " (";
    for (int k = 0; k < 2; k++) {
        if (!report_count(set, (report_kind)k)) continue;
        maye_buf_printf(b, "%s%s: %d run%s", sep, k == REPORT_RL ? "RL" : "SFT", t->n_trained[k],
                        plural(t->n_trained[k]));
        sep = ", ";
    }
    if (strcmp(sep, " (")) maye_buf_puts(b, ")");
    maye_buf_puts(b, ". In parentheses: the gain over vanilla in points.");
}

// ----------------------------------------------------------------------------
// run descriptions

static void seeds_of(const report_set *set, report_kind kind, maye_buf *b) {
    int n = report_count(set, kind), first = 1;
    if (!n) return;
    static const char *const what[] = {"RL", "SFT", "evaluation"};
    maye_buf_printf(b, "%d %s run%s (seed%s ", n, what[kind], plural(n), plural(n));
    for (int i = 0; i < set->n; i++)
        if (set->runs[i].kind == kind) {
            maye_buf_printf(b, "%s%lld", first ? "" : ", ", (long long)set->runs[i].seed);
            first = 0;
        }
    maye_buf_puts(b, ")");
}

static void runs_summary(const report_set *set, maye_buf *b) {
    size_t start = b->len;
    for (int k = 0; k < REPORT_NKINDS; k++) {
        if (!report_count(set, (report_kind)k)) continue;
        if (b->len > start) maye_buf_puts(b, ", ");
        seeds_of(set, (report_kind)k, b);
    }
    maye_buf_puts(b, ".");
}

// Epochs trained (distinct epochs among the steps) and evaluated ("0..2 (3)").
static int64_t epochs_trained(const report_run *r) {
    int64_t n = 0;
    for (int64_t k = 0; k < r->n_steps; k++) n += k == 0 || r->steps[k].epoch != r->steps[k - 1].epoch;
    return n;
}

static void eval_epochs(const report_run *r, char *buf, size_t n) {
    int64_t first = -1, last = -1, count = 0;
    for (int64_t e = 0; e < r->n_epochs_eval; e++) {
        int any = 0;
        for (int s = 0; s < REPORT_NSPLITS; s++)
            for (int g = 0; g < REPORT_NSETTINGS; g++) any |= !isnan(r->eval[s][g][e]);
        if (!any) continue;
        if (first < 0) first = e;
        last = e;
        count++;
    }
    if (!count) snprintf(buf, n, "none");
    else snprintf(buf, n, "%lld..%lld (%lld)", (long long)first, (long long)last, (long long)count);
}

// Notes on the runs that are not done, one line each.
static void run_notes(const report_set *set, maye_buf *b) {
    for (int i = 0; i < set->n; i++) {
        const report_run *r = &set->runs[i];
        if (!strcmp(r->status, "done")) continue;
        char ev[64];
        eval_epochs(r, ev, sizeof ev);
        if (!strcmp(r->status, "running"))
            maye_buf_printf(b, "%s is still running (status \"running\"): it is reported with what it has so far "
                               "(%lld steps, evaluated epochs %s)",
                            r->dir, (long long)r->n_steps, ev);
        else
            maye_buf_printf(b, "%s failed (status \"failed\"): it is reported with what it wrote (%lld steps, "
                               "evaluated epochs %s)",
                            r->dir, (long long)r->n_steps, ev);
        if (r->missing_metrics) maye_buf_puts(b, "; some of its metrics files do not exist yet");
        if (r->dropped_partial_line) maye_buf_puts(b, "; an unfinished last line was left out");
        maye_buf_puts(b, ".\n");
    }
}

// ----------------------------------------------------------------------------
// Markdown

static void md_text(maye_buf *b, const char *s) { // a table cell: '|' would end it
    for (; *s; s++) {
        if (*s == '|') maye_buf_putc(b, '\\');
        maye_buf_putc(b, *s == '\n' ? ' ' : *s);
    }
}

static void write_md(const report_set *set, const report_table *t, const report_figures *figs, const char *note,
                     maye_buf *b) {
    maye_buf_puts(b, "# maye report\n\n");
    runs_summary(set, b);
    maye_buf_puts(b, "\n\n## Runs\n\n| run | kind | seed | status | config digest | created | epochs | steps | "
                     "evaluated epochs |\n| --- | --- | ---: | --- | --- | --- | ---: | ---: | --- |\n");
    for (int i = 0; i < set->n; i++) {
        const report_run *r = &set->runs[i];
        char ev[64];
        eval_epochs(r, ev, sizeof ev);
        maye_buf_puts(b, "| ");
        md_text(b, r->dir);
        maye_buf_printf(b, " | %s | %lld | %s | ", report_kind_names[r->kind], (long long)r->seed, r->status);
        md_text(b, r->config_digest);
        maye_buf_puts(b, " | ");
        md_text(b, r->created);
        if (r->kind == REPORT_EVAL) maye_buf_printf(b, " | - | - | %s |\n", ev);
        else maye_buf_printf(b, " | %lld | %lld | %s |\n", (long long)epochs_trained(r), (long long)r->n_steps, ev);
    }
    maye_buf notes = {0};
    run_notes(set, &notes);
    for (char *line = notes.data; line && *line;) {
        char *end = strchr(line, '\n');
        maye_buf_printf(b, "\n> Note: %.*s\n", (int)(end - line), line);
        line = end + 1;
    }
    maye_buf_free(&notes);

    maye_buf_puts(b, "\n## Accuracy (%)\n\n|");
    for (int s = 0; s < REPORT_NSPLITS; s++)
        for (int g = 0; g < REPORT_NSETTINGS; g++) maye_buf_printf(b, " | %s %s", report_splits[s], report_settings[g]);
    maye_buf_puts(b, " |\n| ---");
    for (int c = 0; c < REPORT_NSPLITS * REPORT_NSETTINGS; c++) maye_buf_puts(b, " | ---:");
    maye_buf_puts(b, " |\n");
    for (size_t row = 0; row < sizeof table_rows / sizeof *table_rows; row++) {
        if (!row_shown(set, &table_rows[row])) continue;
        maye_buf_printf(b, "| %s", table_rows[row].label);
        for (int s = 0; s < REPORT_NSPLITS; s++)
            for (int g = 0; g < REPORT_NSETTINGS; g++) {
                char cell[64];
                row_cell(t, &table_rows[row], s, g, cell, sizeof cell);
                maye_buf_printf(b, " | %s", cell);
            }
        maye_buf_puts(b, " |\n");
    }
    maye_buf_puts(b, "\n");
    table_legend(set, t, b);

    maye_buf_puts(b, "\n\n## Figures\n\nLines are means over runs, bands ±1 standard deviation. The data and the "
                     "gnuplot scripts are in data/ (re-plot one: `cd data && gnuplot -d NAME.gp`).\n");
    if (note) maye_buf_printf(b, "\n> Note: %s\n", note);
    for (int i = 0; i < figs->n; i++) {
        const char *n = figs->f[i].name;
        maye_buf_printf(b, "\n### %s\n\n![%s](figures/%s.png)\n\n[SVG](figures/%s.svg) · [data](data/%s.dat) · "
                           "[gnuplot script](data/%s.gp)\n",
                        figs->f[i].title, figs->f[i].title, n, n, n, n);
    }
    if (!figs->n) maye_buf_puts(b, "\nThe runs have no metrics to draw.\n");
}

// ----------------------------------------------------------------------------
// HTML

static void html_text(maye_buf *b, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&': maye_buf_puts(b, "&amp;"); break;
        case '<': maye_buf_puts(b, "&lt;"); break;
        case '>': maye_buf_puts(b, "&gt;"); break;
        case '"': maye_buf_puts(b, "&quot;"); break;
        default: maye_buf_putc(b, *s);
        }
    }
}

static void write_html(const report_set *set, const report_table *t, const report_figures *figs, const char *note,
                       maye_buf *b) {
    maye_buf_puts(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                     "<title>maye report</title>\n<style>\nbody { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; }\n"
                     "table { border-collapse: collapse; margin: 1em 0; }\n"
                     "th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }\n"
                     "td.n { text-align: right; white-space: nowrap; }\n"
                     ".note { background: #fff6d5; padding: 0.5em 1em; }\n"
                     "figure { margin: 2em 0; } figure img { width: 100%; }\n</style>\n</head>\n<body>\n"
                     "<h1>maye report</h1>\n<p>");
    maye_buf s = {0};
    runs_summary(set, &s);
    html_text(b, s.data);
    maye_buf_free(&s);
    maye_buf_printf(b, " Made by maye-c %s.</p>\n", MAYE_VERSION);

    maye_buf_puts(b, "<h2>Runs</h2>\n<table>\n<tr><th>run</th><th>kind</th><th>seed</th><th>status</th>"
                     "<th>config digest</th><th>created</th><th>epochs</th><th>steps</th>"
                     "<th>evaluated epochs</th></tr>\n");
    for (int i = 0; i < set->n; i++) {
        const report_run *r = &set->runs[i];
        char ev[64];
        eval_epochs(r, ev, sizeof ev);
        maye_buf_puts(b, "<tr><td>");
        html_text(b, r->dir);
        maye_buf_printf(b, "</td><td>%s</td><td class=\"n\">%lld</td><td>%s</td><td>", report_kind_names[r->kind],
                        (long long)r->seed, r->status);
        html_text(b, r->config_digest);
        maye_buf_puts(b, "</td><td>");
        html_text(b, r->created);
        if (r->kind == REPORT_EVAL) maye_buf_printf(b, "</td><td class=\"n\">-</td><td class=\"n\">-</td>");
        else
            maye_buf_printf(b, "</td><td class=\"n\">%lld</td><td class=\"n\">%lld</td>", (long long)epochs_trained(r),
                            (long long)r->n_steps);
        maye_buf_printf(b, "<td>%s</td></tr>\n", ev);
    }
    maye_buf_puts(b, "</table>\n");
    maye_buf notes = {0};
    run_notes(set, &notes);
    for (char *line = notes.data; line && *line;) {
        char *end = strchr(line, '\n');
        *end = 0;
        maye_buf_puts(b, "<p class=\"note\">Note: ");
        html_text(b, line);
        maye_buf_puts(b, "</p>\n");
        line = end + 1;
    }
    maye_buf_free(&notes);

    maye_buf_puts(b, "<h2>Accuracy (%)</h2>\n<table>\n<tr><th rowspan=\"2\"></th>");
    for (int sp = 0; sp < REPORT_NSPLITS; sp++)
        maye_buf_printf(b, "<th colspan=\"%d\">%s</th>", REPORT_NSETTINGS, report_splits[sp]);
    maye_buf_puts(b, "</tr>\n<tr>");
    for (int sp = 0; sp < REPORT_NSPLITS; sp++)
        for (int g = 0; g < REPORT_NSETTINGS; g++) maye_buf_printf(b, "<th>%s</th>", report_settings[g]);
    maye_buf_puts(b, "</tr>\n");
    for (size_t row = 0; row < sizeof table_rows / sizeof *table_rows; row++) {
        if (!row_shown(set, &table_rows[row])) continue;
        maye_buf_printf(b, "<tr><th>%s</th>", table_rows[row].label);
        for (int sp = 0; sp < REPORT_NSPLITS; sp++)
            for (int g = 0; g < REPORT_NSETTINGS; g++) {
                char cell[64];
                row_cell(t, &table_rows[row], sp, g, cell, sizeof cell);
                maye_buf_printf(b, "<td class=\"n\">%s</td>", cell);
            }
        maye_buf_puts(b, "</tr>\n");
    }
    maye_buf_puts(b, "</table>\n<p>");
    maye_buf legend = {0};
    table_legend(set, t, &legend);
    html_text(b, legend.data);
    maye_buf_free(&legend);

    maye_buf_puts(b, "</p>\n<h2>Figures</h2>\n<p>Lines are means over runs, bands ±1 standard deviation. The data and "
                     "the gnuplot scripts are in <a href=\"data/\">data/</a> (re-plot one: "
                     "<code>cd data &amp;&amp; gnuplot -d NAME.gp</code>).</p>\n");
    if (note) {
        maye_buf_puts(b, "<p class=\"note\">Note: ");
        html_text(b, note);
        maye_buf_puts(b, "</p>\n");
    }
    for (int i = 0; i < figs->n; i++) {
        const char *n = figs->f[i].name;
        maye_buf_printf(b, "<figure id=\"%s\">\n<img src=\"figures/%s.svg\" alt=\"", n, n);
        html_text(b, figs->f[i].title);
        maye_buf_puts(b, "\">\n<figcaption>");
        html_text(b, figs->f[i].title);
        maye_buf_printf(b, " — <a href=\"figures/%s.png\">PNG</a> · <a href=\"figures/%s.svg\">SVG</a> · "
                           "<a href=\"data/%s.dat\">data</a> · <a href=\"data/%s.gp\">gnuplot script</a>"
                           "</figcaption>\n</figure>\n",
                        n, n, n, n);
    }
    if (!figs->n) maye_buf_puts(b, "<p>The runs have no metrics to draw.</p>\n");
    maye_buf_puts(b, "</body>\n</html>\n");
}

// ----------------------------------------------------------------------------
// files

int report_pages_write(const report_set *set, const report_table *t, const report_figures *figs,
                       const char *figures_note, const char *out, maye_buf *md) {
    maye_buf_clear(md);
    write_md(set, t, figs, figures_note, md);
    char *path = maye_path_join(out, "report.md");
    int rc = maye_write_file_atomic(path, md->data, md->len);
    free(path);
    if (rc < 0) return -1;
    maye_buf html = {0};
    write_html(set, t, figs, figures_note, &html);
    path = maye_path_join(out, "index.html");
    rc = maye_write_file_atomic(path, html.data, html.len);
    free(path);
    maye_buf_free(&html);
    return rc;
}
