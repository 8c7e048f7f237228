// Per-response rewards and the reflection metrics of the MAYE scheme.
//
// Reward components (traj.rewards, weights traj.reward_weights, each computed separately then summed):
//   accuracy  1 if the judge (judge.h) finds the final answer correct, else 0
//   language  -0.1 x (share of CJK ideographs U+4E00..U+9FFF among the response's code points), MAYE's
//   format    1 if the response holds exactly one <think>...</think> block, else 0 (MAYE's format reward)
// Penalty (MAYE's penalise_no_eos / min_response_length / reward_penalty): a response without a stop
// token (when traj.penalise_no_eos) or with fewer than traj.min_response_length tokens gets the total
// *replaced* by traj.reward_penalty, as MAYE does (scores[penalty_mask] = reward_penalty); the components
// keep their values so they can still be logged.
//
// Reflection metrics: MAYE's 15 reflection words are counted case-insensitively (ASCII case folding) as
// non-overlapping substrings of the response, like Python's text.lower().count(word); a response
// "reflects" when any word occurs. Batch ratios use the MAYE convention that a ratio over an empty set
// is 0 (e.g. reflection_ratio_in_correct_answers when no answer is correct).
#pragma once
#include "core/config.h"
#include "rl/judge.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// ----------------------------------------------------------------------------
// rewards

typedef enum { MAYE_REWARD_ACCURACY, MAYE_REWARD_LANGUAGE, MAYE_REWARD_FORMAT, MAYE_REWARD_NKINDS } maye_reward_kind;

#define MAYE_REWARD_MAX_PARTS 8

typedef struct {
    int n;                                          // components in use
    maye_reward_kind kinds[MAYE_REWARD_MAX_PARTS];  // (n)
    double weights[MAYE_REWARD_MAX_PARTS];          // (n)
    double tolerance;                               // judge tolerance (relative)
    bool penalise_no_eos;
    int64_t min_response_length;                    // in tokens; 0 = no length penalty
    double penalty;                                 // the total of a penalised response
} maye_reward_spec;

typedef struct {
    int n;
    const char *names[MAYE_REWARD_MAX_PARTS]; // (n) "accuracy", "language", "format" (static strings)
    double values[MAYE_REWARD_MAX_PARTS];     // (n) unweighted component values
    double total;                             // sum of weight x value, or the penalty
    bool penalised;
    bool correct;                             // the judge's verdict (also when accuracy is not a component)
} maye_reward_parts;

const char *maye_reward_name(maye_reward_kind k);
// Builds the spec from traj.rewards / traj.reward_weights / traj.judge_tolerance / traj.penalise_no_eos /
// traj.min_response_length / traj.reward_penalty. Fails with a message naming the key on unknown
// components, duplicates, or a weight count that does not match.
int maye_reward_spec_from_config(maye_reward_spec *spec, const maye_config *cfg);
// Scores one response. `has_stop`: the response ended with a stop token; `n_tokens`: its length in
// tokens. `judge` (may be NULL) receives the judge's details; free it with maye_judge_result_free.
void maye_reward_compute(const maye_reward_spec *spec, const char *response, const char *answer, bool has_stop,
                         int64_t n_tokens, maye_reward_parts *out, maye_judge_result *judge);

// The share of CJK ideographs among the code points of text[0..n) (0 for empty text), and MAYE's
// language reward -0.1 x that share.
double maye_cjk_share(const char *text, size_t n);
double maye_language_reward(const char *text, size_t n);
// 1 if text holds exactly one non-overlapping <think>...</think> block, else 0.
double maye_format_reward(const char *text, size_t n);

// ----------------------------------------------------------------------------
// reflection metrics

#define MAYE_REFLECTION_NWORDS 15
extern const char *const maye_reflection_words[MAYE_REFLECTION_NWORDS];

typedef struct {
    int64_t counts[MAYE_REFLECTION_NWORDS]; // occurrences of each word
    bool reflection;                        // any word occurs
} maye_reflection;

void maye_reflection_count(const char *text, size_t n, maye_reflection *out);

typedef struct {
    int64_t n, n_correct, n_reflection, n_reflection_correct;
    int64_t word_totals[MAYE_REFLECTION_NWORDS];
    // filled by maye_reflection_stats_finish; a ratio over an empty set is 0 (MAYE)
    double reflection_ratio;                     // n_reflection / n
    double reflection_ratio_in_correct_answers;  // n_reflection_correct / n_correct
    double reflection_ratio_in_incorrect_answers; // (n_reflection - n_reflection_correct) / (n - n_correct)
    double correct_ratio_in_reflection_texts;    // n_reflection_correct / n_reflection
    double correct_ratio_in_no_reflection_texts; // (n_correct - n_reflection_correct) / (n - n_reflection)
} maye_reflection_stats;

void maye_reflection_stats_init(maye_reflection_stats *s);
void maye_reflection_stats_add(maye_reflection_stats *s, const maye_reflection *r, bool correct);
void maye_reflection_stats_finish(maye_reflection_stats *s);
