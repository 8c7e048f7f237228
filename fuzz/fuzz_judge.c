// Fuzz target for the answer judge and the text rewards: the input is split at its first newline into a
// response and a ground truth; the judge, the evaluator, the language/format rewards and the reflection
// counter must never crash, hang or leak on any bytes.
#include "rl/judge.h"
#include "rl/reward.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size + 1);
    memcpy(buf, data, size);
    buf[size] = 0;
    char *nl = memchr(buf, '\n', size);
    const char *response = buf, *answer = "";
    if (nl) *nl = 0, answer = nl + 1;
    maye_judge_result r;
    maye_judge(response, answer, 1e-2, &r);
    maye_judge_result_free(&r);
    maye_judge(answer, response, 0, &r);
    maye_judge_result_free(&r);
    double v;
    maye_judge_eval(response, &v);
    (void)maye_judge_equal(answer, response, 1e-2);
    maye_reflection refl;
    maye_reflection_count(buf, size, &refl);
    (void)maye_language_reward(buf, size);
    (void)maye_format_reward(buf, size);
    free(buf);
    return 0;
}
