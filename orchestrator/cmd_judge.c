// maye judge: runs the answer judge of the accuracy reward on JSON lines {"response", "answer"} and prints
// the verdict with what was extracted and how both sides were normalised, to debug rewards by hand.
#include "commands.h"
#include "core/error.h"
#include "core/log.h"
#include "jsonl.h"
#include "core/util.h"
#include "rl/judge.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *judge_help =
    "usage: maye judge [--tolerance T] [FILE|-]\n"
    "\n"
    "Reads JSON lines {\"response\": ..., \"answer\": ...} (from FILE, or stdin when FILE is - or absent) and\n"
    "writes one line per input line:\n"
    "  {\"correct\": bool, \"found\": bool, \"extracted\": ..., \"normalized_response\": ...,\n"
    "   \"normalized_answer\": ...}\n"
    "`found` says whether the response has a complete \\boxed{...} / \\fbox{...}; `extracted` is the content\n"
    "of the last one; the normalized forms are the answer items the judge compared (a set, comma-separated).\n"
    "The answer may be bare (\"\\frac{1}{2}\") or boxed. An \"id\" field, if present, is copied to the output.\n"
    "Numbers compare within a relative tolerance (traj.judge_tolerance, default 1e-2).\n"
    "\n"
    "options:\n"
    "  --tolerance T   relative tolerance of numeric comparisons (>= 0; 0 = exact)\n"
    "  -h, --help      show this help\n"
    "\n"
    "exit status: 0 on success, 1 on a malformed line (the message names the line and the field), 2 on bad\n"
    "usage.\n";

// Judges one JSON line into `out` (a JSON line). `where` names the line for errors.
static int judge_line(const char *text, size_t len, double tol, const char *where, maye_buf *out) {
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return maye_fail("%s: not a JSON object; each line must be {\"response\": ..., \"answer\": ...}", where);
    }
    cJSON *resp = cJSON_GetObjectItemCaseSensitive(root, "response");
    cJSON *ans = cJSON_GetObjectItemCaseSensitive(root, "answer");
    char num[64];
    const char *answer = NULL;
    if (cJSON_IsString(ans)) answer = ans->valuestring;
    else if (cJSON_IsNumber(ans)) snprintf(num, sizeof num, "%.17g", ans->valuedouble), answer = num;
    int rc = 0;
    if (!cJSON_IsString(resp)) rc = maye_fail("%s: field 'response' is missing or not a string", where);
    else if (!answer) rc = maye_fail("%s: field 'answer' is missing or not a string or number", where);
    if (rc < 0) {
        cJSON_Delete(root);
        return -1;
    }
    maye_judge_result r;
    maye_judge(resp->valuestring, answer, tol, &r);
    cJSON *o = cJSON_CreateObject();
    cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
    if (id) cJSON_AddItemToObject(o, "id", cJSON_Duplicate(id, 1));
    cJSON_AddBoolToObject(o, "correct", r.correct);
    cJSON_AddBoolToObject(o, "found", r.found);
    cJSON_AddStringToObject(o, "extracted", r.extracted);
    cJSON_AddStringToObject(o, "normalized_response", r.norm_response);
    cJSON_AddStringToObject(o, "normalized_answer", r.norm_answer);
    char *s = cJSON_PrintUnformatted(o);
    maye_buf_puts(out, s);
    maye_buf_putc(out, '\n');
    free(s);
    cJSON_Delete(o);
    cJSON_Delete(root);
    maye_judge_result_free(&r);
    return 0;
}

typedef struct {
    double tolerance;
} judge_ctx;

static int judge_filter(void *ctx, const char *line, size_t len, const char *where, maye_buf *out) {
    return judge_line(line, len, ((const judge_ctx *)ctx)->tolerance, where, out);
}

int cmd_judge(int argc, char **argv) {
    double tol = 1e-2;
    const char *path = "-";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(judge_help, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--tolerance") && i + 1 < argc) {
            if (maye_parse_f64(argv[++i], &tol, "--tolerance") < 0 || !(tol >= 0) || !isfinite(tol)) {
                log_error("--tolerance needs a finite number >= 0, got '%s'", argv[i]);
                return 2;
            }
        } else if (argv[i][0] != '-' || !strcmp(argv[i], "-")) {
            path = argv[i];
        } else {
            log_error("unknown option '%s'", argv[i]);
            fputs(judge_help, stderr);
            return 2;
        }
    }
    FILE *in = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    const char *name = strcmp(path, "-") ? path : "stdin";
    if (!in) {
        log_error("cannot open '%s'", path);
        return 1;
    }
    judge_ctx jc = {tol};
    int rc = maye_jsonl_filter(in, name, judge_filter, &jc);
    if (rc < 0) maye_report_error();
    if (in != stdin) fclose(in);
    return rc < 0 ? 1 : 0;
}
