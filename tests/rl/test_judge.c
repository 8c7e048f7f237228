// The answer judge against the table tests/rl/judge_cases.jsonl: one JSON object per line with the
// response, the ground-truth answer, the expected verdict, why, and optionally a tolerance (default 1e-2).
// Also checks the evaluator and the box extraction directly. Run from the repository root.
#include "core/util.h"
#include "rl/judge.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#define CASES "tests/rl/judge_cases.jsonl"

static void check_eval(const char *expr, double want) {
    double v = NAN;
    int rc = maye_judge_eval(expr, &v);
    EXPECT(rc == 0 && fabs(v - want) <= 1e-12 * fmax(1.0, fabs(want)), "eval '%s': rc %d value %.17g want %.17g",
           expr, rc, v, want);
}

static void check_eval_fails(const char *expr) {
    double v = NAN;
    EXPECT(maye_judge_eval(expr, &v) < 0, "eval '%s' should fail, gave %.17g", expr, v);
}

static void check_extract(const char *text, const char *want) {
    size_t b = 0, e = 0;
    int found = maye_judge_extract(text, strlen(text), &b, &e);
    if (!want) {
        EXPECT(!found, "extract '%s': found '%.*s', want nothing", text, (int)(e - b), text + b);
        return;
    }
    EXPECT(found && e - b == strlen(want) && !memcmp(text + b, want, e - b), "extract '%s': got %s'%.*s' want '%s'",
           text, found ? "" : "(nothing) ", (int)(e - b), text + b, want);
}

static int run_table(void) {
    maye_buf file = {0};
    if (maye_read_file(CASES, &file) < 0) {
        fprintf(stderr, "FAIL: %s\n", maye_errmsg());
        return -1;
    }
    int line = 0, n = 0, wrong = 0;
    char *save = NULL;
    for (char *ln = strtok_r(file.data, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
        line++;
        cJSON *c = cJSON_Parse(ln);
        cJSON *resp = cJSON_GetObjectItemCaseSensitive(c, "response");
        cJSON *ans = cJSON_GetObjectItemCaseSensitive(c, "answer");
        cJSON *ok = cJSON_GetObjectItemCaseSensitive(c, "correct");
        cJSON *why = cJSON_GetObjectItemCaseSensitive(c, "why");
        cJSON *tol = cJSON_GetObjectItemCaseSensitive(c, "tolerance");
        if (!cJSON_IsString(resp) || !cJSON_IsString(ans) || !cJSON_IsBool(ok)) {
            fprintf(stderr, "FAIL: %s:%d: needs string fields response, answer and a bool correct\n", CASES, line);
            test_failures++;
            cJSON_Delete(c);
            continue;
        }
        maye_judge_result r;
        maye_judge(resp->valuestring, ans->valuestring, cJSON_IsNumber(tol) ? tol->valuedouble : 1e-2, &r);
        n++;
        if (r.correct != cJSON_IsTrue(ok)) {
            wrong++;
            fprintf(stderr, "FAIL: %s:%d (%s): got %s want %s\n  response %s\n  answer   %s\n  extracted '%s' -> '%s'"
                    " vs '%s'\n", CASES, line, cJSON_IsString(why) ? why->valuestring : "", r.correct ? "correct" :
                    "wrong", cJSON_IsTrue(ok) ? "correct" : "wrong", resp->valuestring, ans->valuestring, r.extracted,
                    r.norm_response, r.norm_answer);
        }
        maye_judge_result_free(&r);
        cJSON_Delete(c);
    }
    maye_buf_free(&file);
    fprintf(stderr, "judge table: %d cases, %d wrong\n", n, wrong);
    EXPECT(n >= 150, "the table should hold at least 150 cases, has %d", n);
    test_failures += wrong;
    return 0;
}

int main(void) {
    check_eval("1+2*3", 7);
    check_eval("2^{10}", 1024);
    check_eval("-2^2", -4);
    check_eval("\\frac{1}{2}\\sqrt{3}", 0.5 * sqrt(3));
    check_eval("\\frac12", 0.5);
    check_eval("\\sqrt[3]{8}", 2);
    check_eval("2\\pi", 2 * M_PI);
    check_eval("1/2\\pi", M_PI / 2);
    check_eval("3\\frac{1}{4}", 3.25);
    check_eval("(1+2)(3+4)", 21);
    check_eval("[2]{3}", 6);
    check_eval("10^{-2}", 0.01);
    check_eval_fails("");
    check_eval_fails("x");
    check_eval_fails("1/0");
    check_eval_fails("\\sqrt{-1}");
    check_eval_fails("2 3");
    check_eval_fails("(1");
    check_eval_fails("\\frac{1}");
    check_eval_fails("10^{1001}");

    check_extract("a \\boxed{1} b \\boxed{2}", "2");
    check_extract("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}");
    check_extract("\\fbox{x}", "x");
    check_extract("\\boxed { 3 }", " 3 ");
    check_extract("\\boxed{\\{1\\}}", "\\{1\\}");
    check_extract("\\boxed{1", NULL);
    check_extract("\\boxed{1} \\boxed{2", NULL);
    check_extract("no box", NULL);
    check_extract("\\boxed", NULL);

    EXPECT(maye_judge_equal("\\frac{1}{2}", "0.5", 1e-2), "maye_judge_equal on bare answers");
    EXPECT(!maye_judge_equal("\\frac{1}{2}", "0.6", 1e-2), "maye_judge_equal rejects 0.6");
    EXPECT(maye_judge_correct("so \\boxed{3}", "3", 0), "maye_judge_correct");

    if (run_table() < 0) return 1;
    return TEST_RESULT();
}
