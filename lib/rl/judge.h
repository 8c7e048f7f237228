// The answer judge behind the accuracy reward: is the final answer of a response (the last \boxed{...} or
// \fbox{...}) the ground truth? Both sides are normalised (LaTeX spacing and delimiters, \frac/\dfrac/
// \tfrac, \sqrt, \sqrt[n], degrees, \pi, \cdot/\times/\div, \text{...}, units and trailing words,
// thousands separators, percentages, "x = ..." prefixes), split into comma-separated items that compare
// as sets, and each pair of items is compared
//   1. as normalised strings,
//   2. as numbers, by evaluating both with a small LaTeX expression evaluator (numbers, + - * /, powers,
//      roots, fractions, mixed numbers, pi, parentheses, implicit multiplication) within a relative
//      tolerance |pred - truth| <= tol * |truth|; a side written with % may also stand for value/100,
//   3. as expressions in single-letter variables, evaluated at fixed sample points (so 2x+1 == 1+2x),
//   4. as tuples/intervals "(a, b)" element by element.
// The judge never fails, never recurses deeper than MAYE_JUDGE_MAX_DEPTH and judges at most
// MAYE_JUDGE_MAX_ANSWER bytes of an answer; anything it cannot make sense of is simply not correct.
#pragma once
#include <stdbool.h>
#include <stddef.h>

#define MAYE_JUDGE_MAX_ANSWER 2048 // longer extracted answers / ground truths are judged incorrect
#define MAYE_JUDGE_MAX_ITEMS 16    // most comma-separated items compared as a set
#define MAYE_JUDGE_MAX_DEPTH 48    // deepest nesting the expression evaluator follows

typedef struct {
    bool correct;
    bool found;          // the response has a complete \boxed{...} / \fbox{...}
    char *extracted;     // raw content of the response's last box ("" when none)
    char *norm_response; // the normalised items of the extracted answer, joined by ", "
    char *norm_answer;   // the normalised items of the ground truth, joined by ", "
} maye_judge_result;

// Judges `response` against the ground truth `answer` (itself a bare answer or a text with a \boxed{}).
// Fills `out` (free with maye_judge_result_free).
void maye_judge(const char *response, const char *answer, double tolerance, maye_judge_result *out);
void maye_judge_result_free(maye_judge_result *r);
// Just the verdict.
bool maye_judge_correct(const char *response, const char *answer, double tolerance);

// Finds the content of the last \boxed{...} or \fbox{...} of text[0..n): returns 1 and the content's
// byte range [*begin, *end) when that box is complete (balanced braces), 0 otherwise.
int maye_judge_extract(const char *text, size_t n, size_t *begin, size_t *end);
// Evaluates one normalised answer item (no variables) to a number. Returns 0, or -1 if it is not a
// finite number the evaluator understands. Exposed for tests.
int maye_judge_eval(const char *item, double *value);
// Compares two bare answers (no box extraction) with the full normalisation above.
bool maye_judge_equal(const char *pred, const char *truth, double tolerance);
