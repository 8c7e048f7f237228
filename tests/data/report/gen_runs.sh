#!/bin/sh
# Writes synthetic run directories (docs/run-dir.md) with known numbers for the tests of `maye report`:
#   ROOT/rl/seed-{0,1,2}/  three seeds of one RL configuration (2 epochs of 4 generation steps each)
#   ROOT/sft/              one SFT run
# Accuracy in percent, with base = 40 + 10*setting - 5*split (setting 0..2 = pass@8_t1.0, pass@1_t0.6,
# pass@1_t0.01; split 0..1 = validation, test) and m = 1 + split:
#   RL seed s:  epoch 0: base + 2s   epoch 1: base + m*(10 + 2s)   epoch 2: base + m*(14 - s)
#   SFT:        epoch 0: base + 8    epoch 1: base + 5             epoch 2: base + 1
# so vanilla = base + 3.5, RL max = base + m*41/3, RL mean = base + m*12.5, SFT max = base + 5, SFT
# mean = base + 3 (expected_table.md). The files also hold what the reader must cope with: a repeated
# step and a repeated evaluation (the last line wins), blank lines and keys the report does not use.
# RL training accuracy of step k (0..7) of seed s is 0.25 + 0.05k + 0.01s.
# usage: sh gen_runs.sh ROOT
set -e
root=$1
[ -n "$root" ] || { echo "usage: sh gen_runs.sh ROOT" >&2; exit 2; }

rl_run() { # seed
  d=$root/rl/seed-$1
  mkdir -p "$d/metrics"
  printf '{"kind": "rl", "seed": %d, "config_digest": "0x5eed0000c0ffee01", "created": "2026-11-26T07:00:0%dZ", "status": "done"}\n' "$1" "$1" > "$d/run.json"
  printf 'train:\n  epochs: 2\n' > "$d/config.yaml"
  awk -v s="$1" 'BEGIN {
    split("re-check re-evaluate re-examine re-think recheck reevaluate reexamine reevaluation rethink", w, " ")
    w[10] = "check again"; w[11] = "think again"; w[12] = "try again"; w[13] = "verify"; w[14] = "wait"; w[15] = "yet"
    for (k = 0; k < 8; k++) {
      if (s == 1 && k == 3) line(k, 0.99)   # logged again after a resume: the next line replaces it
      line(k, 0.25 + 0.05 * k + 0.01 * s)
    }
  }
  function line(k, acc,   words, i) {
    words = ""
    for (i = 1; i <= 15; i++) words = words sprintf("%s\"%s\": %d", i > 1 ? ", " : "", w[i], (k * i + s) % 5)
    printf "{\"step\": %d, \"epoch\": %d, \"version\": %d, \"gradient_steps\": 32, \"reward\": %.4f, \"accuracy\": %.4f, ", k, int(k / 4), k + 1, acc, acc
    printf "\"response_length\": %.1f, \"kl\": 0.001, \"entropy\": 0.8, \"policy_loss\": -0.01, \"lr\": 5e-06, ", 200 + 10 * k + 5 * s
    printf "\"reflection_ratio\": %.3f, \"reflection_ratio_in_correct_answers\": %.3f, ", 0.1 + 0.01 * k, 0.12 + 0.01 * s
    printf "\"reflection_ratio_in_incorrect_answers\": %.3f, \"correct_ratio_in_reflection_texts\": %.3f, ", 0.08, 0.5 - 0.02 * k
    printf "\"correct_ratio_in_no_reflection_texts\": %.3f, \"reflection_words\": {%s}, ", 0.43, words
    printf "\"aha_example\": \"wait, let me check again\", \"seconds\": {\"batch\": 0.1, \"rollout\": 30.2}}\n"
  }' > "$d/metrics/train.jsonl"
  awk -v s="$1" 'BEGIN {
    split("validation test", sp, " "); split("pass@8_t1.0 pass@1_t0.6 pass@1_t0.01", st, " ")
    for (e = 0; e <= 2; e++) {
      if (e == 1) print ""
      for (i = 0; i < 2; i++) for (j = 0; j < 3; j++) {
        base = 40 + 10 * j - 5 * i; m = 1 + i
        acc = e == 0 ? base + 2 * s : e == 1 ? base + m * (10 + 2 * s) : base + m * (14 - s)
        if (s == 0 && e == 1 && i == 0 && j == 1) out(e, sp[i + 1], st[j + 1], 99)   # evaluated again below
        out(e, sp[i + 1], st[j + 1], acc)
      }
    }
  }
  function out(e, split_name, setting_name, pct) {
    printf "{\"epoch\": %d, \"step\": %d, \"version\": %d, \"split\": \"%s\", \"setting\": \"%s\", \"accuracy\": %.4f, \"n_questions\": 64, \"n_responses\": 64, \"response_length\": 190.5}\n", e, 4 * e, 4 * e, split_name, setting_name, pct / 100
  }' > "$d/metrics/eval.jsonl"
}

sft_run() {
  d=$root/sft
  mkdir -p "$d/metrics"
  printf '{"kind": "sft", "seed": 0, "config_digest": "0x5f70000000000002", "created": "2026-11-26T08:00:00Z", "status": "done"}\n' > "$d/run.json"
  awk 'BEGIN { for (k = 0; k < 8; k++) printf "{\"step\": %d, \"epoch\": %d, \"loss\": %.2f, \"lr\": 1e-05, \"grad_norm\": 0.5, \"tokens\": 4096}\n", k, int(k / 4), 2 - 0.1 * k }' > "$d/metrics/train.jsonl"
  awk 'BEGIN {
    split("validation test", sp, " "); split("pass@8_t1.0 pass@1_t0.6 pass@1_t0.01", st, " ")
    for (e = 0; e <= 2; e++) for (i = 0; i < 2; i++) for (j = 0; j < 3; j++) {
      base = 40 + 10 * j - 5 * i
      pct = e == 0 ? base + 8 : e == 1 ? base + 5 : base + 1
      printf "{\"epoch\": %d, \"split\": \"%s\", \"setting\": \"%s\", \"accuracy\": %.4f}\n", e, sp[i + 1], st[j + 1], pct / 100
    }
  }' > "$d/metrics/eval.jsonl"
}

rl_run 0
rl_run 1
rl_run 2
sft_run
