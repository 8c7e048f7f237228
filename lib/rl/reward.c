// Rewards of one response (accuracy, language, format, the no-stop/short penalty) and the MAYE reflection
// metrics (see reward.h).
#include "rl/reward.h"

#include "core/error.h"

#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// components

// First occurrence of needle[0..m) in hay[0..n), or NULL.
static const char *find(const char *hay, size_t n, const char *needle, size_t m) {
    for (size_t i = 0; m <= n && i <= n - m; i++) {
        const char *p = memchr(hay + i, needle[0], n - m - i + 1);
        if (!p) return NULL;
        i = (size_t)(p - hay);
        if (!memcmp(p, needle, m)) return p;
    }
    return NULL;
}

static const char *const reward_names[MAYE_REWARD_NKINDS] = {"accuracy", "language", "format"};

const char *maye_reward_name(maye_reward_kind k) { return (unsigned)k < MAYE_REWARD_NKINDS ? reward_names[k] : "?"; }

int maye_reward_spec_from_config(maye_reward_spec *spec, const maye_config *cfg) {
    memset(spec, 0, sizeof *spec);
    const maye_strlist *names = &cfg->traj.rewards;
    CHECK_OR_FAIL(names->n > 0, "traj.rewards is empty: name at least one of accuracy, language, format");
    CHECK_OR_FAIL(names->n <= MAYE_REWARD_MAX_PARTS, "traj.rewards: %d components, at most %d", names->n,
                  MAYE_REWARD_MAX_PARTS);
    const maye_floatlist *w = &cfg->traj.reward_weights;
    CHECK_OR_FAIL(w->n == 0 || w->n == names->n,
                  "traj.reward_weights has %d values but traj.rewards names %d components: give one weight per "
                  "component, or none for all 1", w->n, names->n);
    for (int i = 0; i < names->n; i++) {
        int kind = -1;
        for (int k = 0; k < MAYE_REWARD_NKINDS; k++)
            if (!strcmp(names->items[i], reward_names[k])) kind = k;
        CHECK_OR_FAIL(kind >= 0, "traj.rewards: unknown component '%s' (known: accuracy, language, format)",
                      names->items[i]);
        for (int j = 0; j < i; j++)
            CHECK_OR_FAIL(spec->kinds[j] != (maye_reward_kind)kind, "traj.rewards: '%s' is listed twice",
                          names->items[i]);
        spec->kinds[i] = (maye_reward_kind)kind;
        spec->weights[i] = w->n ? w->v[i] : 1.0;
    }
    spec->n = names->n;
    CHECK_OR_FAIL(cfg->traj.judge_tolerance >= 0, "traj.judge_tolerance is %g: it must be >= 0",
                  cfg->traj.judge_tolerance);
    CHECK_OR_FAIL(cfg->traj.min_response_length >= 0, "traj.min_response_length is %lld: it must be >= 0",
                  (long long)cfg->traj.min_response_length);
    spec->tolerance = cfg->traj.judge_tolerance;
    spec->penalise_no_eos = cfg->traj.penalise_no_eos;
    spec->min_response_length = cfg->traj.min_response_length;
    spec->penalty = cfg->traj.reward_penalty;
    return 0;
}

double maye_cjk_share(const char *text, size_t n) {
    // counts code points like Python's len(str); an invalid byte counts as one (a replacement character)
    int64_t total = 0, cjk = 0;
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        uint32_t cp = c;
        bool ok = len > 0 && i + len <= n;
        if (ok && len > 1) {
            cp = c & (0x7F >> len);
            for (size_t k = 1; k < len && ok; k++) {
                ok = (s[i + k] & 0xC0) == 0x80;
                cp = (cp << 6) | (s[i + k] & 0x3F);
            }
        }
        if (!ok) len = 1, cp = 0xFFFD;
        total++;
        cjk += cp >= 0x4E00 && cp <= 0x9FFF;
        i += len;
    }
    return total ? (double)cjk / (double)total : 0.0;
}

double maye_language_reward(const char *text, size_t n) { return -0.1 * maye_cjk_share(text, n); }

double maye_format_reward(const char *text, size_t n) {
    // non-overlapping matches of <think>.*?</think> (dot matches newlines), like re.findall
    int blocks = 0;
    const char *p = text, *end = text + n;
    while (p < end) {
        const char *open = find(p, (size_t)(end - p), "<think>", 7);
        if (!open) break;
        const char *close = find(open + 7, (size_t)(end - open - 7), "</think>", 8);
        if (!close) break;
        blocks++;
        p = close + 8;
    }
    return blocks == 1 ? 1.0 : 0.0;
}

void maye_reward_compute(const maye_reward_spec *spec, const char *response, const char *answer, bool has_stop,
                         int64_t n_tokens, maye_reward_parts *out, maye_judge_result *judge) {
    memset(out, 0, sizeof *out);
    size_t n = strlen(response);
    maye_judge_result j;
    maye_judge(response, answer, spec->tolerance, &j);
    out->correct = j.correct;
    out->n = spec->n;
    for (int i = 0; i < spec->n; i++) {
        double v = 0;
        switch (spec->kinds[i]) {
        case MAYE_REWARD_ACCURACY: v = j.correct ? 1.0 : 0.0; break;
        case MAYE_REWARD_LANGUAGE: v = maye_language_reward(response, n); break;
        case MAYE_REWARD_FORMAT: v = maye_format_reward(response, n); break;
        case MAYE_REWARD_NKINDS: maye_die("bad reward kind");
        }
        out->names[i] = maye_reward_name(spec->kinds[i]);
        out->values[i] = v;
        out->total += spec->weights[i] * v;
    }
    out->penalised = (spec->penalise_no_eos && !has_stop) || n_tokens < spec->min_response_length;
    if (out->penalised) out->total = spec->penalty;
    if (judge) *judge = j;
    else maye_judge_result_free(&j);
}

// ----------------------------------------------------------------------------
// reflection metrics

const char *const maye_reflection_words[MAYE_REFLECTION_NWORDS] = {
    "re-check", "re-evaluate", "re-examine", "re-think",    "recheck",     "reevaluate", "reexamine", "reevaluation",
    "rethink",  "check again", "think again", "try again",  "verify",      "wait",       "yet",
};

void maye_reflection_count(const char *text, size_t n, maye_reflection *out) {
    memset(out, 0, sizeof *out);
    char *lower = malloc(n ? n : 1);
    if (!lower) maye_die("out of memory (%zu bytes)", n);
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        lower[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    for (int w = 0; w < MAYE_REFLECTION_NWORDS; w++) {
        const char *word = maye_reflection_words[w];
        size_t len = strlen(word), i = 0;
        while (i < n) {
            const char *hit = find(lower + i, n - i, word, len);
            if (!hit) break;
            out->counts[w]++;
            i = (size_t)(hit - lower) + len;
        }
        if (out->counts[w]) out->reflection = true;
    }
    free(lower);
}

void maye_reflection_stats_init(maye_reflection_stats *s) { memset(s, 0, sizeof *s); }

void maye_reflection_stats_add(maye_reflection_stats *s, const maye_reflection *r, bool correct) {
    s->n++;
    s->n_correct += correct;
    s->n_reflection += r->reflection;
    s->n_reflection_correct += r->reflection && correct;
    for (int w = 0; w < MAYE_REFLECTION_NWORDS; w++) s->word_totals[w] += r->counts[w];
}

static double ratio(int64_t num, int64_t den) { return den > 0 ? (double)num / (double)den : 0.0; }

void maye_reflection_stats_finish(maye_reflection_stats *s) {
    s->reflection_ratio = ratio(s->n_reflection, s->n);
    s->reflection_ratio_in_correct_answers = ratio(s->n_reflection_correct, s->n_correct);
    s->reflection_ratio_in_incorrect_answers = ratio(s->n_reflection - s->n_reflection_correct, s->n - s->n_correct);
    s->correct_ratio_in_reflection_texts = ratio(s->n_reflection_correct, s->n_reflection);
    s->correct_ratio_in_no_reflection_texts = ratio(s->n_correct - s->n_reflection_correct, s->n - s->n_reflection);
}
