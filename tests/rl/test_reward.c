// Rewards and reflection metrics on hand-made responses against hand-computed values: the language
// reward's CJK share, the format reward, the reward spec from the config (and its errors), the penalty
// replacing the total, and MAYE's reflection word counts and batch ratios (including the 0/0 cases).
#include "core/config.h"
#include "rl/reward.h"
#include "test.h"

#include <math.h>
#include <string.h>

static void close1(const char *what, double got, double want) {
    EXPECT(fabs(got - want) <= 1e-12, "%s: got %.15g want %.15g", what, got, want);
}

static void test_language_format(void) {
    const char *t = "ab\xe4\xb8\xad\xe6\x96\x87"; // "ab中文": 4 code points, 2 CJK
    close1("cjk share", maye_cjk_share(t, strlen(t)), 0.5);
    close1("language reward", maye_language_reward(t, strlen(t)), -0.05);
    close1("no CJK", maye_language_reward("abc", 3), 0);
    close1("empty text", maye_language_reward("", 0), 0);
    const char *jp = "\xe3\x81\x82x"; // hiragana is outside U+4E00..U+9FFF
    close1("hiragana is not counted", maye_cjk_share(jp, strlen(jp)), 0);
    const char *bad = "\xff\xe4\xb8\xad"; // an invalid byte counts as one code point
    close1("invalid byte", maye_cjk_share(bad, strlen(bad)), 0.5);
    close1("one think block", maye_format_reward("<think>a</think> b", 18), 1);
    close1("two think blocks", maye_format_reward("<think>a</think><think>b</think>", 32), 0);
    close1("unclosed think", maye_format_reward("<think>a", 8), 0);
    close1("no think", maye_format_reward("plain", 5), 0);
}

static void test_spec_and_compute(void) {
    maye_config cfg;
    char *ov[] = {"traj.rewards=accuracy,language,format", "traj.reward_weights=1,2,0.5",
                  "traj.min_response_length=5", "traj.reward_penalty=-0.25"};
    EXPECT_OK(maye_config_load(&cfg, NULL, 4, ov));
    maye_reward_spec spec;
    EXPECT_OK(maye_reward_spec_from_config(&spec, &cfg));
    EXPECT(spec.n == 3 && spec.weights[1] == 2, "spec: %d components", spec.n);
    const char *resp = "<think>\xe4\xb8\xad</think> so \\boxed{12}"; // 30 code points, 1 CJK
    maye_reward_parts parts;
    maye_judge_result j;
    maye_reward_compute(&spec, resp, "12", true, 40, &parts, &j);
    double lang = -0.1 * 1.0 / 30.0;
    EXPECT(parts.n == 3 && !strcmp(parts.names[0], "accuracy") && !strcmp(parts.names[2], "format"), "names");
    close1("accuracy", parts.values[0], 1);
    close1("language", parts.values[1], lang);
    close1("format", parts.values[2], 1);
    close1("weighted total", parts.total, 1 + 2 * lang + 0.5);
    EXPECT(!parts.penalised && parts.correct && !strcmp(j.extracted, "12"), "verdict and judge details");
    maye_judge_result_free(&j);
    // no stop token: the total is replaced by the penalty, the components stay
    maye_reward_compute(&spec, resp, "12", false, 40, &parts, NULL);
    EXPECT(parts.penalised, "no stop -> penalised");
    close1("penalty replaces the total", parts.total, -0.25);
    close1("components kept", parts.values[0], 1);
    // too short
    maye_reward_compute(&spec, resp, "12", true, 4, &parts, NULL);
    EXPECT(parts.penalised, "4 tokens < 5 -> penalised");
    maye_reward_compute(&spec, resp, "12", true, 5, &parts, NULL);
    EXPECT(!parts.penalised, "5 tokens is long enough");
    maye_reward_compute(&spec, resp, "13", true, 5, &parts, NULL);
    close1("wrong answer", parts.values[0], 0);
    EXPECT(!parts.correct, "wrong answer verdict");
    maye_config_free(&cfg);

    char *bad1[] = {"traj.rewards=accuracy,length"};
    EXPECT_OK(maye_config_load(&cfg, NULL, 1, bad1));
    EXPECT_FAIL(maye_reward_spec_from_config(&spec, &cfg), "unknown component 'length'");
    maye_config_free(&cfg);
    char *bad2[] = {"traj.rewards=accuracy,language", "traj.reward_weights=1"};
    EXPECT_OK(maye_config_load(&cfg, NULL, 2, bad2));
    EXPECT_FAIL(maye_reward_spec_from_config(&spec, &cfg), "traj.reward_weights has 1 values");
    maye_config_free(&cfg);
    char *bad3[] = {"traj.rewards=accuracy,accuracy"};
    EXPECT_OK(maye_config_load(&cfg, NULL, 1, bad3));
    EXPECT_FAIL(maye_reward_spec_from_config(&spec, &cfg), "'accuracy' is listed twice");
    maye_config_free(&cfg);
}

// Word indices in maye_reflection_words.
enum { RE_CHECK, RE_EVALUATE, RE_EXAMINE, RE_THINK, RECHECK, REEVALUATE, REEXAMINE, REEVALUATION, RETHINK,
       CHECK_AGAIN, THINK_AGAIN, TRY_AGAIN, VERIFY, WAIT, YET };

static void test_reflection(void) {
    static const struct {
        const char *text;
        bool correct;
    } batch[] = {
        {"Wait, let me verify this. The answer is \\boxed{5}.", true},
        {"Let me re-check: recheck done. Yet again wait wait.", false},
        {"Simple solution. \\boxed{3}", true},
        {"I will RETHINK and Re-Think. Think again!", false},
        {"The height is yet unknown; reevaluation shows we should reevaluate.", true},
        {"plain text, correct?", false},
        {"awaiting the try again and verify-verify", false},
    };
    const int n = sizeof batch / sizeof *batch;
    maye_reflection_stats st;
    maye_reflection_stats_init(&st);
    bool want_flags[] = {true, true, false, true, true, false, true};
    for (int i = 0; i < n; i++) {
        maye_reflection r;
        maye_reflection_count(batch[i].text, strlen(batch[i].text), &r);
        EXPECT(r.reflection == want_flags[i], "response %d: reflection %d", i, r.reflection);
        maye_reflection_stats_add(&st, &r, batch[i].correct);
    }
    maye_reflection_stats_finish(&st);
    int64_t want[MAYE_REFLECTION_NWORDS] = {0};
    want[RE_CHECK] = 1, want[RE_THINK] = 1, want[RECHECK] = 1, want[REEVALUATE] = 1, want[REEVALUATION] = 1;
    want[RETHINK] = 1, want[THINK_AGAIN] = 1, want[TRY_AGAIN] = 1, want[VERIFY] = 3, want[WAIT] = 4, want[YET] = 2;
    test_equal_i64("reflection word totals", st.word_totals, want, MAYE_REFLECTION_NWORDS);
    EXPECT(st.n == 7 && st.n_correct == 3 && st.n_reflection == 5 && st.n_reflection_correct == 2, "counts");
    close1("reflection_ratio", st.reflection_ratio, 5.0 / 7);
    close1("reflection_ratio_in_correct_answers", st.reflection_ratio_in_correct_answers, 2.0 / 3);
    close1("reflection_ratio_in_incorrect_answers", st.reflection_ratio_in_incorrect_answers, 3.0 / 4);
    close1("correct_ratio_in_reflection_texts", st.correct_ratio_in_reflection_texts, 2.0 / 5);
    close1("correct_ratio_in_no_reflection_texts", st.correct_ratio_in_no_reflection_texts, 1.0 / 2);

    // 0/0 ratios are 0 (MAYE): an empty batch, and a batch where every answer is correct and reflects
    maye_reflection_stats_init(&st);
    maye_reflection_stats_finish(&st);
    close1("empty reflection_ratio", st.reflection_ratio, 0);
    close1("empty correct_ratio_in_reflection_texts", st.correct_ratio_in_reflection_texts, 0);
    maye_reflection r;
    maye_reflection_count("wait", 4, &r);
    maye_reflection_stats_add(&st, &r, true);
    maye_reflection_stats_finish(&st);
    close1("all correct: reflection_ratio_in_incorrect_answers", st.reflection_ratio_in_incorrect_answers, 0);
    close1("all reflect: correct_ratio_in_no_reflection_texts", st.correct_ratio_in_no_reflection_texts, 0);
    close1("all reflect and correct: correct_ratio_in_reflection_texts", st.correct_ratio_in_reflection_texts, 1);
    // counts are non-overlapping, like str.count
    maye_reflection_count("waitwaitwai", 11, &r);
    EXPECT(r.counts[WAIT] == 2, "waitwaitwai: %lld", (long long)r.counts[WAIT]);
}

int main(void) {
    test_language_format();
    test_spec_and_compute();
    test_reflection();
    return TEST_RESULT();
}
