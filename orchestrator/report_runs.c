// maye report: loading run directories (docs/run-dir.md). A directory with seed-N/ subdirectories stands
// for its seeds; a directory with run.json is one run. run.json, metrics/train.jsonl and
// metrics/eval.jsonl are checked field by field; errors name the file, the line and the field. A run whose
// status is "running" may lack its metrics files and may end in an unfinished line: it is loaded with what
// it has so far.
#include "report.h"

#include "core/error.h"
#include "core/log.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const report_splits[REPORT_NSPLITS] = {"validation", "test"};
const char *const report_settings[REPORT_NSETTINGS] = {"pass@8_t1.0", "pass@1_t0.6", "pass@1_t0.01"};
const char *const report_ratio_keys[REPORT_NRATIOS] = {
    "reflection_ratio", "reflection_ratio_in_correct_answers", "reflection_ratio_in_incorrect_answers",
    "correct_ratio_in_reflection_texts", "correct_ratio_in_no_reflection_texts"};
const char *const report_kind_names[REPORT_NKINDS] = {"rl", "sft", "eval"};

#define REPORT_MAX_EPOCH 100000          // bounds the per-epoch arrays a malformed line could ask for
#define REPORT_MAX_STEP 1000000000000LL
#define REPORT_MAX_SEED 9007199254740992LL // 2^53: larger integers do not survive JSON numbers

// ----------------------------------------------------------------------------
// fields

// A number in [lo, hi] (hi may be INFINITY).
static int field_number(const cJSON *o, const char *key, const char *where, double lo, double hi, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) return maye_fail("%s: field '%s' is missing or not a number", where, key);
    double d = v->valuedouble;
    if (!isfinite(d)) return maye_fail("%s: field '%s' is not a finite number", where, key);
    if (d < lo || d > hi) {
        if (isinf(hi)) return maye_fail("%s: field '%s' is %g; it must be >= %.16g", where, key, d, lo);
        if (isinf(lo)) return maye_fail("%s: field '%s' is %g; it must be <= %.16g", where, key, d, hi);
        return maye_fail("%s: field '%s' is %g; it must lie in [%.16g, %.16g]", where, key, d, lo, hi);
    }
    *out = d;
    return 0;
}

static int field_int(const cJSON *o, const char *key, const char *where, int64_t lo, int64_t hi, int64_t *out) {
    double d;
    TRY(field_number(o, key, where, (double)lo, (double)hi, &d));
    CHECK_OR_FAIL(d == floor(d), "%s: field '%s' is %g; it must be an integer", where, key, d);
    *out = (int64_t)d;
    return 0;
}

// A string field, or NULL with an error.
static const char *field_string(const cJSON *o, const char *key, const char *where) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v)) {
        maye_fail("%s: field '%s' is missing or not a string", where, key);
        return NULL;
    }
    return v->valuestring;
}

static int index_of(const char *s, const char *const *names, int n) {
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}

// ----------------------------------------------------------------------------
// JSON lines

typedef struct {
    report_step *steps; // (lines) in file order
    int64_t n, cap;
} step_lines;

typedef struct {
    int64_t epoch;
    int split, setting;
    double accuracy;
} eval_line;

typedef struct {
    eval_line *lines; // in file order
    int64_t n, cap;
    int64_t n_skipped, first_skipped; // lines of splits/settings outside the MAYE scheme
    char first_skipped_what[96];
} eval_lines;

// Parses one line (`where` = "file:line") into the accumulator `acc`.
typedef int (*line_fn)(const report_run *run, const cJSON *o, const char *where, long lineno, void *acc);

static int train_line_read(const report_run *run, const cJSON *o, const char *where, long lineno, void *acc) {
    step_lines *sl = acc;
    report_step st = {0};
    TRY(field_int(o, "step", where, 0, REPORT_MAX_STEP, &st.step));
    TRY(field_int(o, "epoch", where, 0, REPORT_MAX_EPOCH, &st.epoch));
    if (run->kind == REPORT_SFT) {
        TRY(field_number(o, "loss", where, -INFINITY, INFINITY, &st.loss));
    } else {
        TRY(field_number(o, "accuracy", where, 0, 1, &st.accuracy));
        TRY(field_number(o, "response_length", where, 0, INFINITY, &st.response_length));
        for (int r = 0; r < REPORT_NRATIOS; r++)
            TRY(field_number(o, report_ratio_keys[r], where, 0, 1, &st.ratios[r]));
        const cJSON *words = cJSON_GetObjectItemCaseSensitive(o, "reflection_words");
        CHECK_OR_FAIL(cJSON_IsObject(words), "%s: field 'reflection_words' is missing or not an object", where);
        char ctx[PATH_MAX + 64];
        snprintf(ctx, sizeof ctx, "%s: field 'reflection_words'", where);
        for (int w = 0; w < MAYE_REFLECTION_NWORDS; w++)
            TRY(field_number(words, maye_reflection_words[w], ctx, 0, INFINITY, &st.words[w]));
    }
    if (sl->n == sl->cap) {
        sl->cap = sl->cap ? 2 * sl->cap : 64;
        sl->steps = xrealloc(sl->steps, (size_t)sl->cap * sizeof *sl->steps);
    }
    sl->steps[sl->n++] = st;
    return 0;
}

static int eval_line_read(const report_run *run, const cJSON *o, const char *where, long lineno, void *acc) {
    eval_lines *el = acc;
    eval_line e = {0};
    TRY(field_int(o, "epoch", where, 0, REPORT_MAX_EPOCH, &e.epoch));
    const char *split = field_string(o, "split", where);
    if (!split) return -1;
    const char *setting = field_string(o, "setting", where);
    if (!setting) return -1;
    TRY(field_number(o, "accuracy", where, 0, 1, &e.accuracy));
    e.split = index_of(split, report_splits, REPORT_NSPLITS);
    e.setting = index_of(setting, report_settings, REPORT_NSETTINGS);
    if (e.split < 0 || e.setting < 0) {
        if (!el->n_skipped++) {
            snprintf(el->first_skipped_what, sizeof el->first_skipped_what, "%s '%.60s'",
                     e.split < 0 ? "split" : "setting", e.split < 0 ? split : setting);
            el->first_skipped = lineno;
        }
        return 0;
    }
    if (el->n == el->cap) {
        el->cap = el->cap ? 2 * el->cap : 64;
        el->lines = xrealloc(el->lines, (size_t)el->cap * sizeof *el->lines);
    }
    el->lines[el->n++] = e;
    return 0;
}

// Calls `fn` on every non-blank line of `path`. A running run may lack the file (sets missing_metrics)
// and may end in an unfinished line (ignored, sets dropped_partial_line).
static int read_jsonl(report_run *run, const char *path, line_fn fn, void *acc) {
    int running = !strcmp(run->status, "running");
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT && running) {
            run->missing_metrics = 1;
            return 0;
        }
        return maye_fail("cannot open '%s': %s (run.json says status \"%s\"; only a running run may lack it)",
                         path, strerror(errno), run->status);
    }
    char *line = NULL, where[PATH_MAX + 32];
    size_t cap = 0;
    ssize_t got;
    long lineno = 0;
    int rc = 0;
    while (rc == 0 && (got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t len = (size_t)got;
        int complete = len && line[len - 1] == '\n';
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        if (strspn(line, " \t") >= len) continue;
        snprintf(where, sizeof where, "%s:%ld", path, lineno);
        line[len] = 0; // the object must end the line: parse through the terminator
        cJSON *o = cJSON_ParseWithLengthOpts(line, len + 1, NULL, 1);
        if (!o || !cJSON_IsObject(o)) {
            cJSON_Delete(o);
            if (!complete && running) {
                run->dropped_partial_line = 1;
                break;
            }
            rc = maye_fail("%s: not a JSON object (every line must be one JSON object; see docs/run-dir.md)", where);
            break;
        }
        rc = fn(run, o, where, lineno, acc);
        cJSON_Delete(o);
    }
    if (rc == 0 && ferror(f)) rc = maye_fail("error reading '%s': %s", path, strerror(errno));
    fclose(f);
    free(line);
    return rc;
}

// ----------------------------------------------------------------------------
// one run

typedef struct {
    int64_t step, order;
} step_key;

static int cmp_step_key(const void *a, const void *b) {
    const step_key *x = a, *y = b;
    if (x->step != y->step) return x->step < y->step ? -1 : 1;
    return (x->order > y->order) - (x->order < y->order);
}

// Sorts the steps by step number; of repeated steps (a resumed run logs them again) the last line wins.
// Epochs may not decrease along the steps (`path` names the file in the error).
static int keep_last_steps(report_run *run, step_lines *sl, const char *path) {
    step_key *keys = xmalloc((size_t)(sl->n ? sl->n : 1) * sizeof *keys);
    for (int64_t i = 0; i < sl->n; i++) keys[i] = (step_key){sl->steps[i].step, i};
    qsort(keys, (size_t)sl->n, sizeof *keys, cmp_step_key);
    run->steps = xmalloc((size_t)(sl->n ? sl->n : 1) * sizeof *run->steps);
    run->n_steps = 0;
    for (int64_t i = 0; i < sl->n; i++) {
        if (i + 1 < sl->n && keys[i + 1].step == keys[i].step) continue;
        run->steps[run->n_steps++] = sl->steps[keys[i].order];
    }
    free(keys);
    for (int64_t k = 1; k < run->n_steps; k++) {
        const report_step *a = &run->steps[k - 1], *b = &run->steps[k];
        CHECK_OR_FAIL(b->epoch >= a->epoch,
                      "%s: step %lld has epoch %lld but the earlier step %lld has epoch %lld; epochs may not "
                      "decrease along the steps",
                      path, (long long)b->step, (long long)b->epoch, (long long)a->step, (long long)a->epoch);
    }
    return 0;
}

static int parse_run_json(report_run *run, const cJSON *o, const char *path, int as_sft) {
    CHECK_OR_FAIL(cJSON_IsObject(o), "%s: not a JSON object (see docs/run-dir.md)", path);
    const char *kind = field_string(o, "kind", path);
    if (!kind) return -1;
    const char *status = field_string(o, "status", path);
    if (!status) return -1;
    const char *digest = field_string(o, "config_digest", path);
    if (!digest) return -1;
    TRY(field_int(o, "seed", path, 0, REPORT_MAX_SEED, &run->seed));
    int k = index_of(kind, report_kind_names, REPORT_NKINDS);
    CHECK_OR_FAIL(k >= 0, "%s: field 'kind' is \"%.40s\"; it must be \"rl\", \"sft\" or \"eval\"", path, kind);
    CHECK_OR_FAIL(!strcmp(status, "running") || !strcmp(status, "done") || !strcmp(status, "failed"),
                  "%s: field 'status' is \"%.40s\"; it must be \"running\", \"done\" or \"failed\"", path, status);
    CHECK_OR_FAIL(!as_sft || k == REPORT_SFT,
                  "%s: given with --sft but its kind is \"%s\"; --sft takes SFT runs (kind \"sft\")", path, kind);
    run->kind = (report_kind)k;
    run->status = xstrdup(status);
    run->config_digest = xstrdup(digest);
    const cJSON *created = cJSON_GetObjectItemCaseSensitive(o, "created");
    run->created = xstrdup(cJSON_IsString(created) ? created->valuestring : "");
    return 0;
}

static int load_run_json(report_run *run, const char *path, int as_sft) {
    maye_buf text = {0};
    if (maye_read_file(path, &text) < 0) {
        maye_buf_free(&text);
        return -1;
    }
    cJSON *o = cJSON_ParseWithLengthOpts(text.data, text.len + 1, NULL, 1); // nothing may follow the object
    maye_buf_free(&text);
    int rc = parse_run_json(run, o, path, as_sft);
    cJSON_Delete(o);
    return rc;
}

static int load_eval(report_run *run, const char *path) {
    eval_lines el = {0};
    int rc = read_jsonl(run, path, eval_line_read, &el);
    if (rc == 0) {
        int64_t last = -1;
        for (int64_t i = 0; i < el.n; i++)
            if (el.lines[i].epoch > last) last = el.lines[i].epoch;
        run->n_epochs_eval = last + 1;
        for (int s = 0; s < REPORT_NSPLITS; s++)
            for (int g = 0; g < REPORT_NSETTINGS; g++) {
                run->eval[s][g] = xmalloc((size_t)(last + 2) * sizeof(double));
                for (int64_t e = 0; e <= last; e++) run->eval[s][g][e] = NAN;
            }
        for (int64_t i = 0; i < el.n; i++) // file order: a repeated evaluation's last line wins
            run->eval[el.lines[i].split][el.lines[i].setting][el.lines[i].epoch] = el.lines[i].accuracy;
        run->n_eval_lines = el.n;
        if (el.n_skipped)
            log_warn("%s:%lld: %s is not part of the MAYE evaluation scheme; %lld such line(s) left out of "
                     "the report", path, (long long)el.first_skipped, el.first_skipped_what, (long long)el.n_skipped);
    }
    free(el.lines);
    return rc;
}

static int load_run(report_run *run, const char *dir, int as_sft) {
    run->dir = xstrdup(dir);
    char *path = maye_path_join(dir, "run.json");
    int rc = load_run_json(run, path, as_sft);
    free(path);
    if (rc < 0) return -1;
    if (run->kind != REPORT_EVAL) {
        step_lines sl = {0};
        path = maye_path_join(dir, "metrics/train.jsonl");
        rc = read_jsonl(run, path, train_line_read, &sl);
        if (rc == 0) rc = keep_last_steps(run, &sl, path);
        free(sl.steps);
        free(path);
        if (rc < 0) return -1;
    }
    path = maye_path_join(dir, "metrics/eval.jsonl");
    rc = load_eval(run, path);
    free(path);
    return rc;
}

// ----------------------------------------------------------------------------
// run directories

typedef struct {
    long long seed;
    char *name;
} seed_dir;

static int cmp_seed_dir(const void *a, const void *b) {
    const seed_dir *x = a, *y = b;
    if (x->seed != y->seed) return x->seed < y->seed ? -1 : 1;
    return strcmp(x->name, y->name);
}

// The seed-N/ subdirectories of `dir`, sorted by N.
static int list_seed_dirs(const char *dir, seed_dir **out, int *n_out) {
    DIR *d = opendir(dir);
    if (!d) return maye_fail("cannot read directory '%s': %s", dir, strerror(errno));
    seed_dir *list = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *num = e->d_name + 5;
        if (strncmp(e->d_name, "seed-", 5) || !*num || strspn(num, "0123456789") != strlen(num) || strlen(num) > 15)
            continue;
        char *full = maye_path_join(dir, e->d_name);
        int is_dir = maye_is_dir(full);
        free(full);
        if (!is_dir) continue;
        list = xrealloc(list, (size_t)(n + 1) * sizeof *list);
        list[n++] = (seed_dir){strtoll(num, NULL, 10), xstrdup(e->d_name)};
    }
    closedir(d);
    if (n) qsort(list, (size_t)n, sizeof *list, cmp_seed_dir);
    *out = list;
    *n_out = n;
    return 0;
}

static int add_run(report_set *set, const char *dir, int as_sft) {
    char *real = realpath(dir, NULL);
    if (!real) return maye_fail("cannot resolve '%s': %s", dir, strerror(errno));
    for (int i = 0; i < set->n; i++) {
        char *other = realpath(set->runs[i].dir, NULL);
        int same = other && !strcmp(other, real);
        free(other);
        if (same) {
            free(real);
            return maye_fail("'%s' is the same run as '%s': give each run once", dir, set->runs[i].dir);
        }
    }
    free(real);
    set->runs = xrealloc(set->runs, (size_t)(set->n + 1) * sizeof *set->runs);
    report_run *run = &set->runs[set->n++];
    memset(run, 0, sizeof *run);
    return load_run(run, dir, as_sft);
}

int report_load(report_set *set, const char *dir, int as_sft) {
    if (!maye_is_dir(dir)) {
        if (maye_file_exists(dir))
            return maye_fail("'%s' is not a directory; give a run directory (with run.json) or the parent of "
                             "seed-N/ run directories", dir);
        return maye_fail("run directory '%s' does not exist", dir);
    }
    seed_dir *seeds = NULL;
    int n_seeds = 0;
    TRY(list_seed_dirs(dir, &seeds, &n_seeds));
    int rc = 0;
    for (int i = 0; i < n_seeds && rc == 0; i++) {
        char *sub = maye_path_join(dir, seeds[i].name);
        rc = add_run(set, sub, as_sft);
        free(sub);
    }
    for (int i = 0; i < n_seeds; i++) free(seeds[i].name);
    free(seeds);
    if (n_seeds || rc < 0) return rc;
    char *run_json = maye_path_join(dir, "run.json");
    int has_run = maye_file_exists(run_json);
    free(run_json);
    if (!has_run)
        return maye_fail("'%s' is not a run directory: it has neither run.json nor seed-N/ subdirectories", dir);
    return add_run(set, dir, as_sft);
}

void report_set_free(report_set *set) {
    for (int i = 0; i < set->n; i++) {
        report_run *r = &set->runs[i];
        free(r->dir);
        free(r->config_digest);
        free(r->created);
        free(r->status);
        free(r->steps);
        for (int s = 0; s < REPORT_NSPLITS; s++)
            for (int g = 0; g < REPORT_NSETTINGS; g++) free(r->eval[s][g]);
    }
    free(set->runs);
    set->runs = NULL;
    set->n = 0;
}

int report_count(const report_set *set, report_kind kind) {
    int n = 0;
    for (int i = 0; i < set->n; i++) n += set->runs[i].kind == kind;
    return n;
}
