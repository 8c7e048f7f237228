// Tokenizer benchmark: load time of a tokenizer.json (default: the fixtures' 11 MB Qwen2 one) and encode
// throughput on 10 MB of mixed English/LaTeX text generated here from a fixed seed, on one thread (the
// word cache starts empty) and on all threads sharing one tokenizer; then decode throughput. Prints one
// JSON line per result; targets: load < 0.5 s, encode >= 5 MB/s on one core. Single-thread results give
// wall time and the thread's CPU time (the CPU time is what counts when other jobs share the cores).
// Also checks that decoding gives the text back and that the chunked parallel encode gives the same ids.
//   bench/tokenizer [tokenizer.json] [megabytes]
#include "text/tokenizer.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/util.h"

#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const WORDS[] = {
    "the",
    "of",
    "and",
    "a",
    "to",
    "in",
    "is",
    "you",
    "that",
    "it",
    "he",
    "was",
    "for",
    "on",
    "are",
    "as",
    "with",
    "his",
    "they",
    "at",
    "be",
    "this",
    "have",
    "from",
    "or",
    "one",
    "had",
    "by",
    "word",
    "but",
    "not",
    "what",
    "all",
    "were",
    "we",
    "when",
    "your",
    "can",
    "said",
    "there",
    "use",
    "an",
    "each",
    "which",
    "she",
    "do",
    "how",
    "their",
    "if",
    "will",
    "up",
    "other",
    "about",
    "out",
    "many",
    "then",
    "them",
    "these",
    "so",
    "some",
    "her",
    "would",
    "make",
    "like",
    "him",
    "into",
    "time",
    "has",
    "look",
    "two",
    "more",
    "write",
    "go",
    "see",
    "number",
    "no",
    "way",
    "could",
    "people",
    "my",
    "than",
    "first",
    "water",
    "been",
    "call",
    "who",
    "oil",
    "its",
    "now",
    "find",
    "triangle",
    "angle",
    "circle",
    "radius",
    "perpendicular",
    "bisector",
    "tangent",
    "hypotenuse",
    "area",
    "perimeter",
    "therefore",
    "since",
    "because",
    "solution",
    "answer",
    "equation",
    "substitute",
    "simplify",
    "compute",
    "geometry",
    "length",
    "segment",
    "parallel",
    "diameter",
    "chord",
    "polygon",
    "quadrilateral",
    "theorem",
    "Pythagorean",
    "similar",
    "congruent",
    "ratio",
    "probability",
    "integer",
    "function",
    "derivative",
    "Wait",
    "let",
    "me",
    "check",
    "again",
    "verify",
    "result",
    "correct",
    "hmm",
    "actually",
    "consider",
    "don't",
    "it's",
};

static const char *const LATEX[] = {
    "$\\frac{%d}{%d}$",
    "\\sqrt{%d}",
    "$x^{%d} + y^{%d} = z^2$",
    "$\\angle ABC = %d^\\circ$",
    "\\boxed{%d}",
    "$\\overline{AB} = %d$ cm",
    "$\\triangle ABC \\sim \\triangle DEF$",
    "$%d \\times %d = ?$",
    "\\[ \\int_0^{%d} x\\,dx = \\frac{%d}{2} \\]",
    "$\\pi r^2 = %d\\pi$",
    "$\\sin %d^\\circ \\approx 0.%d$",
    "$\\{a_n\\}_{n=1}^{%d}$",
    "\\begin{align} a &= %d \\\\ b &= %d \\end{align}",
};

// Deterministic text of about `bytes` bytes: sentences of words and LaTeX, paragraphs split by newlines.
static void make_text(maye_buf *out, size_t bytes) {
    maye_rng r;
    maye_rng_init(&r, 20240607, 1);
    const size_t n_words = sizeof WORDS / sizeof *WORDS, n_latex = sizeof LATEX / sizeof *LATEX;
    while (out->len < bytes) {
        int sentence = 6 + (int)maye_rng_below(&r, 14);
        for (int i = 0; i < sentence; i++) {
            if (i) maye_buf_putc(out, ' ');
            if (maye_rng_below(&r, 8) == 0) {
                int a = (int)maye_rng_below(&r, 1000), b = 1 + (int)maye_rng_below(&r, 99);
                maye_buf_printf(out, LATEX[maye_rng_below(&r, n_latex)], a, b);
            } else {
                const char *w = WORDS[maye_rng_below(&r, n_words)];
                if (i == 0) maye_buf_putc(out, (char)(w[0] >= 'a' && w[0] <= 'z' ? w[0] - 32 : w[0])), w++;
                maye_buf_puts(out, w);
            }
        }
        maye_buf_puts(out, maye_rng_below(&r, 5) == 0 ? ".\n\n" : maye_rng_below(&r, 6) == 0 ? "? " : ". ");
    }
}

static double thread_cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void json_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void json_line(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

int main(int argc, char **argv) {
    const char *fixtures = getenv("MAYE_FIXTURES");
    char *path = argc > 1 ? xstrdup(argv[1])
                          : maye_path_join(fixtures && fixtures[0] ? fixtures : "../shared/fixtures",
                                           "qwen2-tokenizer/tokenizer.json");
    size_t mb = argc > 2 ? (size_t)atoi(argv[2]) : 10;
    if (!maye_file_exists(path)) {
        json_line("{\"bench\": \"tokenizer\", \"skipped\": \"%s not found\"}", path);
        free(path);
        return 0;
    }

    // load: best and mean of 3
    maye_tokenizer *tok = NULL;
    double best = 1e9, sum = 0, best_cpu = 1e9;
    for (int i = 0; i < 3; i++) {
        maye_tokenizer_free(tok);
        double t0 = maye_now(), c0 = thread_cpu();
        if (maye_tokenizer_load(&tok, path) < 0) {
            fprintf(stderr, "bench/tokenizer: %s\n", maye_errmsg());
            return 1;
        }
        double dt = maye_now() - t0, dc = thread_cpu() - c0;
        best = dt < best ? dt : best, sum += dt, best_cpu = dc < best_cpu ? dc : best_cpu;
    }
    maye_buf file = {0};
    maye_read_file(path, &file);
    json_line(
        "{\"bench\": \"tokenizer_load\", \"file\": \"%s\", \"bytes\": %zu, \"vocab_size\": %d, \"seconds_min\": %.4f, "
        "\"seconds_mean\": %.4f, \"cpu_seconds_min\": %.4f, \"target_seconds\": 0.5, \"meets_target\": %s}",
        path, file.len, maye_tokenizer_vocab_size(tok), best, sum / 3, best_cpu, best < 0.5 ? "true" : "false");
    maye_buf_free(&file);

    // encode on one thread, word cache empty at the start
    maye_buf text = {0};
    make_text(&text, mb * 1000000);
    maye_token_ids ids = {0};
    double t0 = maye_now(), c0 = thread_cpu();
    if (maye_tokenizer_encode(tok, text.data, text.len, &ids) < 0) {
        fprintf(stderr, "bench/tokenizer: %s\n", maye_errmsg());
        return 1;
    }
    double one = maye_now() - t0, one_cpu = thread_cpu() - c0, mbs1 = text.len / one / 1e6;
    json_line("{\"bench\": \"tokenizer_encode\", \"threads\": 1, \"bytes\": %zu, \"tokens\": %zu, \"seconds\": %.4f, "
              "\"mb_per_s\": %.2f, \"cpu_seconds\": %.4f, \"mb_per_cpu_s\": %.2f, \"bytes_per_token\": %.2f, "
              "\"target_mb_per_s\": 5, \"meets_target\": %s}",
              text.len, ids.len, one, mbs1, one_cpu, text.len / one_cpu / 1e6, (double)text.len / ids.len,
              mbs1 >= 5 ? "true" : "false");

    // all threads, one shared tokenizer: the text cut into chunks after paragraph ends (".\n\n" is one
    // pre-token, so the cuts do not change the ids)
    int nt = omp_get_max_threads(), n_chunks = 64 * nt;
    size_t *cut = xmalloc((n_chunks + 1) * sizeof *cut);
    cut[0] = 0;
    for (int c = 1; c < n_chunks; c++) {
        size_t p = text.len * c / n_chunks;
        while (p + 1 < text.len && !(text.data[p] == '\n' && text.data[p + 1] == '\n')) p++;
        p = p + 1 < text.len ? p + 2 : text.len;
        cut[c] = p > cut[c - 1] ? p : cut[c - 1];
    }
    cut[n_chunks] = text.len;
    maye_token_ids *part = xcalloc(n_chunks, sizeof *part);
    int bad = 0;
    t0 = maye_now();
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : bad)
    for (int c = 0; c < n_chunks; c++)
        bad += maye_tokenizer_encode(tok, text.data + cut[c], cut[c + 1] - cut[c], &part[c]) < 0;
    double many = maye_now() - t0;
    size_t n_par = 0;
    for (int c = 0; c < n_chunks; c++) {
        bad += n_par + part[c].len > ids.len || memcmp(part[c].data, ids.data + n_par, part[c].len * sizeof(int32_t));
        n_par += part[c].len;
    }
    bad += n_par != ids.len;
    json_line("{\"bench\": \"tokenizer_encode\", \"threads\": %d, \"bytes\": %zu, \"tokens\": %zu, \"seconds\": %.4f, "
              "\"mb_per_s\": %.2f, \"speedup_vs_1_thread\": %.2f, \"chunks_differing\": %d}",
              nt, text.len, n_par, many, text.len / many / 1e6, one / many, bad);

    // decode everything back
    maye_buf back = {0};
    t0 = maye_now();
    if (maye_tokenizer_decode(tok, ids.data, ids.len, 0, &back) < 0) {
        fprintf(stderr, "bench/tokenizer: %s\n", maye_errmsg());
        return 1;
    }
    double dec = maye_now() - t0;
    int same = back.len == text.len && !memcmp(back.data, text.data, text.len);
    json_line(
        "{\"bench\": \"tokenizer_decode\", \"tokens\": %zu, \"bytes\": %zu, \"seconds\": %.4f, \"mb_per_s\": %.2f, "
        "\"round_trip_exact\": %s}",
        ids.len, back.len, dec, back.len / dec / 1e6, same ? "true" : "false");

    for (int c = 0; c < n_chunks; c++) maye_token_ids_free(&part[c]);
    free(part);
    free(cut);
    maye_buf_free(&back);
    maye_buf_free(&text);
    maye_token_ids_free(&ids);
    maye_tokenizer_free(tok);
    free(path);
    return same && !bad ? 0 : 1;
}
