// maye synth: renders a small visual-math dataset in MAYE's format with Cairo, for the CPU demo and the
// examples. Every figure's answer needs the picture: counting shapes of one colour, reading the labelled
// sides of a rectangle (area, perimeter) or the legs of a right triangle (hypotenuse). Digits are drawn
// as seven-segment glyphs so the output does not depend on the fonts a machine has. The test split is
// out of distribution (larger numbers, an unseen shape kind), like the paper's OOD test set.
#include "core/error.h"
#include "core/log.h"
#include "core/rng.h"
#include "core/util.h"

#include <cairo.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// drawing helpers

typedef struct {
    const char *name;
    double r, g, b;
} colour;

static const colour colours[] = {{"red", 0.86, 0.12, 0.12}, {"blue", 0.12, 0.28, 0.86}, {"green", 0.1, 0.62, 0.2}};
enum { N_COLOURS = 3 };

// Seven-segment digit of height h at (x, y) (top-left). Segments a..g as bits 0..6.
static void draw_digit(cairo_t *cr, int d, double x, double y, double h) {
    static const unsigned char seg[10] = {0x3f, 0x06, 0x5b, 0x4f, 0x66, 0x6d, 0x7d, 0x07, 0x7f, 0x6f};
    double w = h * 0.55, m = h / 2;
    double ends[7][4] = {{0, 0, w, 0}, {w, 0, w, m}, {w, m, w, h}, {0, h, w, h}, {0, m, 0, h}, {0, 0, 0, m}, {0, m, w, m}};
    cairo_set_line_width(cr, h * 0.14);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
    for (int s = 0; s < 7; s++) {
        if (!(seg[d] >> s & 1)) continue;
        cairo_move_to(cr, x + ends[s][0], y + ends[s][1]);
        cairo_line_to(cr, x + ends[s][2], y + ends[s][3]);
    }
    cairo_stroke(cr);
}

// A non-negative number centred at (cx, cy).
static void draw_number(cairo_t *cr, int v, double cx, double cy, double h) {
    char s[16];
    int n = snprintf(s, sizeof s, "%d", v);
    double adv = h * 0.85, total = adv * n - h * 0.3;
    for (int i = 0; i < n; i++) draw_digit(cr, s[i] - '0', cx - total / 2 + i * adv, cy - h / 2, h);
}

// ----------------------------------------------------------------------------
// figure kinds

typedef struct {
    char question[512];
    char answer[64];
    char solution[512];
} item;

typedef enum { SHAPE_CIRCLE, SHAPE_SQUARE, SHAPE_TRIANGLE } shape_kind;

static void draw_shape(cairo_t *cr, shape_kind k, double x, double y, double r) {
    switch (k) {
    case SHAPE_CIRCLE: cairo_arc(cr, x, y, r, 0, 2 * M_PI); break;
    case SHAPE_SQUARE: cairo_rectangle(cr, x - r * 0.85, y - r * 0.85, 1.7 * r, 1.7 * r); break;
    case SHAPE_TRIANGLE:
        cairo_move_to(cr, x, y - r);
        cairo_line_to(cr, x + r * 0.95, y + r * 0.75);
        cairo_line_to(cr, x - r * 0.95, y + r * 0.75);
        cairo_close_path(cr);
        break;
    }
    cairo_fill(cr);
}

// Shapes on a jittered 3x3 grid of cells (no overlaps), 1-5 of the asked colour; `ood` draws triangles, a
// shape the training split never shows, on a denser 4x4 grid.
static void make_count(cairo_t *cr, int size, maye_rng *rng, int ood, item *it) {
    int grid = ood ? 4 : 3;
    int cells = grid * grid;
    int target = (int)maye_rng_below(rng, N_COLOURS);
    int want = 1 + (int)maye_rng_below(rng, 5);
    if (want > cells) want = cells;
    int others = (int)maye_rng_below(rng, (uint64_t)(cells - want < 4 ? cells - want + 1 : 4));
    int64_t order[16];
    for (int i = 0; i < cells; i++) order[i] = i;
    maye_rng_shuffle_i64(rng, order, cells);
    double cell = (double)size / grid, r = cell * 0.3;
    for (int i = 0; i < want + others; i++) {
        int c = i < want ? target : (target + 1 + (int)maye_rng_below(rng, N_COLOURS - 1)) % N_COLOURS;
        shape_kind k = ood ? SHAPE_TRIANGLE : (shape_kind)maye_rng_below(rng, 2);
        double jx = (maye_rng_uniform(rng) - 0.5) * cell * 0.25, jy = (maye_rng_uniform(rng) - 0.5) * cell * 0.25;
        double x = (double)(order[i] % grid + 0.5) * cell + jx, y = (double)(order[i] / grid + 0.5) * cell + jy;
        cairo_set_source_rgb(cr, colours[c].r, colours[c].g, colours[c].b);
        draw_shape(cr, k, x, y, r);
    }
    snprintf(it->question, sizeof it->question, "<image>How many %s shapes are there in the figure?", colours[target].name);
    snprintf(it->answer, sizeof it->answer, "%d", want);
    snprintf(it->solution, sizeof it->solution,
             "I count the %s shapes in the figure: there %s %d of them. The answer is \\boxed{%d}.",
             colours[target].name, want == 1 ? "is" : "are", want, want);
}

// A rectangle with its width labelled below and its height labelled to the left.
static void make_rect(cairo_t *cr, int size, maye_rng *rng, int ood, int perimeter, item *it) {
    int lo = ood ? 10 : 2, span = ood ? 11 : 8;
    int a = lo + (int)maye_rng_below(rng, (uint64_t)span), b = lo + (int)maye_rng_below(rng, (uint64_t)span);
    double m = size * 0.22, w = size - 1.6 * m, h = size - 1.6 * m;
    double x0 = m, y0 = m * 0.5;
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    cairo_set_line_width(cr, size * 0.025);
    cairo_rectangle(cr, x0, y0, w, h);
    cairo_stroke(cr);
    double fh = size * 0.13;
    draw_number(cr, a, x0 + w / 2, y0 + h + m * 0.55, fh);
    draw_number(cr, b, x0 * 0.45, y0 + h / 2, fh);
    if (perimeter) {
        snprintf(it->question, sizeof it->question, "<image>Find the perimeter of the rectangle.");
        snprintf(it->answer, sizeof it->answer, "%d", 2 * (a + b));
        snprintf(it->solution, sizeof it->solution,
                 "The rectangle has sides %d and %d, so its perimeter is $2(%d + %d) = %d$. The answer is "
                 "\\boxed{%d}.", a, b, a, b, 2 * (a + b), 2 * (a + b));
    } else {
        snprintf(it->question, sizeof it->question, "<image>Find the area of the rectangle.");
        snprintf(it->answer, sizeof it->answer, "%d", a * b);
        snprintf(it->solution, sizeof it->solution,
                 "The rectangle has sides %d and %d, so its area is $%d \\times %d = %d$. The answer is \\boxed{%d}.",
                 a, b, a, b, a * b, a * b);
    }
}

// A right triangle with both legs labelled; the answer is the hypotenuse (Pythagorean triples).
static void make_right_triangle(cairo_t *cr, int size, maye_rng *rng, int ood, item *it) {
    static const int small[][3] = {{3, 4, 5}, {6, 8, 10}, {5, 12, 13}, {9, 12, 15}, {8, 6, 10}, {4, 3, 5}};
    static const int large[][3] = {{8, 15, 17}, {12, 16, 20}, {7, 24, 25}, {20, 21, 29}, {15, 20, 25}};
    const int *t = ood ? large[maye_rng_below(rng, 5)] : small[maye_rng_below(rng, 6)];
    double m = size * 0.2, x0 = m, y0 = size - m * 0.9, w = size - 1.5 * m, h = size - 1.6 * m;
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    cairo_set_line_width(cr, size * 0.025);
    cairo_move_to(cr, x0, y0 - h);
    cairo_line_to(cr, x0, y0);
    cairo_line_to(cr, x0 + w, y0);
    cairo_close_path(cr);
    cairo_stroke(cr);
    double s = size * 0.06; // right-angle mark
    cairo_rectangle(cr, x0, y0 - s, s, s);
    cairo_set_line_width(cr, size * 0.012);
    cairo_stroke(cr);
    double fh = size * 0.12;
    draw_number(cr, t[0], x0 + w / 2, y0 + m * 0.5, fh);
    draw_number(cr, t[1], x0 * 0.45, y0 - h / 2, fh);
    snprintf(it->question, sizeof it->question, "<image>Find the length of the hypotenuse of the right triangle.");
    snprintf(it->answer, sizeof it->answer, "%d", t[2]);
    snprintf(it->solution, sizeof it->solution,
             "The legs are %d and %d, so the hypotenuse is $\\sqrt{%d^2 + %d^2} = \\sqrt{%d} = %d$. The answer is "
             "\\boxed{%d}.", t[0], t[1], t[0], t[1], t[0] * t[0] + t[1] * t[1], t[2], t[2]);
}

// ----------------------------------------------------------------------------
// the dataset

static const char *kind_names[] = {"count", "rect_area", "rect_perimeter", "right_triangle"};
enum { N_KINDS = 4 };

static int render(const char *dir, const char *split, int index, int kind, int size, int ood, uint64_t seed,
                  cJSON *line) {
    maye_rng rng;
    maye_rng_init(&rng, seed, maye_stream_id((uint64_t)kind, (uint64_t)index, maye_fnv1a(MAYE_FNV_INIT, split, strlen(split))));
    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, size, size);
    cairo_t *cr = cairo_create(surf);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    item it;
    switch (kind) {
    case 0: make_count(cr, size, &rng, ood, &it); break;
    case 1: make_rect(cr, size, &rng, ood, 0, &it); break;
    case 2: make_rect(cr, size, &rng, ood, 1, &it); break;
    default: make_right_triangle(cr, size, &rng, ood, &it); break;
    }
    cairo_destroy(cr);
    char id[96], rel[160];
    snprintf(id, sizeof id, "synth_%s_%s_%05d", split, kind_names[kind], index);
    snprintf(rel, sizeof rel, "images/%s.png", id);
    char *path = maye_path_join(dir, rel);
    cairo_status_t st = cairo_surface_write_to_png(surf, path);
    cairo_surface_destroy(surf);
    if (st != CAIRO_STATUS_SUCCESS) {
        maye_fail("cannot write '%s': %s", path, cairo_status_to_string(st));
        free(path);
        return -1;
    }
    free(path);
    cJSON_AddStringToObject(line, "question", it.question);
    cJSON_AddStringToObject(line, "answer", it.answer);
    cJSON_AddStringToObject(line, "solution", it.solution);
    cJSON_AddStringToObject(line, "id", id);
    cJSON_AddStringToObject(line, "image", rel);
    cJSON_AddStringToObject(line, "kind", kind_names[kind]);
    return 0;
}

static int write_split(const char *dir, const char *split, int n, const int *kinds, int nkinds, int size, int ood,
                       uint64_t seed) {
    maye_buf out = {0};
    for (int i = 0; i < n; i++) {
        cJSON *line = cJSON_CreateObject();
        int rc = render(dir, split, i, kinds[i % nkinds], size, ood, seed, line);
        if (rc == 0) {
            char *s = cJSON_PrintUnformatted(line);
            maye_buf_puts(&out, s);
            maye_buf_putc(&out, '\n');
            free(s);
        }
        cJSON_Delete(line);
        if (rc < 0) {
            maye_buf_free(&out);
            return -1;
        }
    }
    char name[64];
    snprintf(name, sizeof name, "%s.jsonl", split);
    char *path = maye_path_join(dir, name);
    int rc = maye_write_file_atomic(path, out.data ? out.data : "", out.len);
    if (rc == 0) log_info("wrote %d samples to %s", n, path);
    free(path);
    maye_buf_free(&out);
    return rc;
}

static void usage(void) {
    printf("usage: maye synth -o DIR [--train N] [--validation N] [--test N] [--size PX] [--seed S]\n"
           "                  [--kinds count,rect_area,rect_perimeter,right_triangle]\n\n"
           "Renders a visual-math dataset in MAYE's format: DIR/{train,validation,test}.jsonl and DIR/images/.\n"
           "Train and validation share one distribution; test is out of distribution (counting: triangles\n"
           "instead of circles and squares on a denser grid; lengths: larger numbers). Same seed, same files.\n\n"
           "  -o DIR           output directory (created)\n"
           "  --train N        training samples (default 512)\n"
           "  --validation N   validation samples (default 64)\n"
           "  --test N         out-of-distribution test samples (default 64)\n"
           "  --size PX        image side in pixels (default 112; a multiple of 28 from 56 to 3584 needs no\n"
           "                   resize under the default pixel bounds)\n"
           "  --seed S         seed (default 0)\n"
           "  --kinds LIST     figure kinds, cycled through (default: all four)\n");
}

int cmd_synth(int argc, char **argv) {
    const char *dir = NULL;
    int64_t n_train = 512, n_val = 64, n_test = 64, size = 112, seed = 0;
    int kinds[N_KINDS] = {0, 1, 2, 3}, nkinds = N_KINDS;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(), 0;
        if (i + 1 >= argc) {
            log_error("unknown option or missing value: %s (see maye synth --help)", a);
            return 2;
        }
        const char *v = argv[++i];
        int rc = 0;
        if (!strcmp(a, "-o")) dir = v;
        else if (!strcmp(a, "--train")) rc = maye_parse_i64(v, &n_train, "--train");
        else if (!strcmp(a, "--validation")) rc = maye_parse_i64(v, &n_val, "--validation");
        else if (!strcmp(a, "--test")) rc = maye_parse_i64(v, &n_test, "--test");
        else if (!strcmp(a, "--size")) rc = maye_parse_i64(v, &size, "--size");
        else if (!strcmp(a, "--seed")) rc = maye_parse_i64(v, &seed, "--seed");
        else if (!strcmp(a, "--kinds")) {
            nkinds = 0;
            char *copy = xstrdup(v), *save = NULL;
            for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                int k = -1;
                for (int j = 0; j < N_KINDS; j++)
                    if (!strcmp(tok, kind_names[j])) k = j;
                if (k < 0 || nkinds == N_KINDS) {
                    log_error("--kinds: unknown or repeated kind '%s' (kinds: count, rect_area, rect_perimeter, "
                              "right_triangle)", tok);
                    free(copy);
                    return 2;
                }
                kinds[nkinds++] = k;
            }
            free(copy);
            if (!nkinds) rc = maye_fail("--kinds: empty list");
        } else {
            log_error("unknown option %s (see maye synth --help)", a);
            return 2;
        }
        if (rc < 0) {
            maye_report_error();
            return 2;
        }
    }
    if (!dir) {
        log_error("missing -o DIR (see maye synth --help)");
        return 2;
    }
    if (size < 28 || size > 4096 || n_train < 0 || n_val < 0 || n_test < 0) {
        log_error("--size must be in [28, 4096] and the split sizes >= 0");
        return 2;
    }
    char *images = maye_path_join(dir, "images");
    int rc = maye_mkdir_p(images);
    free(images);
    if (rc == 0) rc = write_split(dir, "train", (int)n_train, kinds, nkinds, (int)size, 0, (uint64_t)seed);
    if (rc == 0) rc = write_split(dir, "validation", (int)n_val, kinds, nkinds, (int)size, 0, (uint64_t)seed);
    if (rc == 0) rc = write_split(dir, "test", (int)n_test, kinds, nkinds, (int)size, 1, (uint64_t)seed);
    if (rc < 0) {
        maye_report_error();
        return 1;
    }
    return 0;
}
