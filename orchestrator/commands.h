// The subcommands of `maye`: X(name, function, one-line summary). Each lives in orchestrator/cmd_<name>.c
// and has the signature int cmd_<name>(int argc, char **argv) with argv[0] = the subcommand name.
#pragma once

#define MAYE_COMMANDS(X)                                                                                   \
    X(train, cmd_train, "train with RL: maye-batch | maye-rollout | maye-traj | maye-update, evaluations, seeds") \
    X(eval, cmd_eval, "evaluate a checkpoint the MAYE way (validation/test x pass@8, pass@1 T=0.6, T=0.01)") \
    X(sft, cmd_sft, "the SFT baseline: fine-tune on the solutions, with the same evaluations")             \
    X(synth, cmd_synth, "render a small visual-math dataset (MAYE format) for demos and tests")                 \
    X(cat, cmd_cat, "print a record stream as JSON lines (--to-records: JSON lines back to records)")       \
    X(tokenize, cmd_tokenize, "tokenize JSON lines {\"text\"} -> {\"ids\"} (--decode: back to text)")     \
    X(version, cmd_version, "print the version and the build's backends")                                  \
    X(init, cmd_init, "make a randomly initialised Qwen2-VL / Qwen2.5-VL checkpoint from a config.json")     \
    X(forward, cmd_forward, "run the model on one sequence (-> positions, hidden states, logits, log-probs)")  \
    X(generate, cmd_generate, "sample or greedy-decode continuations of one sequence (-> JSON lines of ids)")  \
    X(grad, cmd_grad, "gradients of one sequence's mean log-prob w.r.t. the trained weights (-> safetensors)") \
    X(judge, cmd_judge, "judge answers: JSON lines {\"response\", \"answer\"} -> {\"correct\", ...}")             \
    X(preprocess, cmd_preprocess, "run the Qwen2-VL image processor on one image (-> safetensors)")        \
    X(report, cmd_report, "report on run directories: MAYE accuracy table, figures across seeds (gnuplot)")

#define DECLARE_COMMAND(name, fn, summary) int fn(int argc, char **argv);
MAYE_COMMANDS(DECLARE_COMMAND)
#undef DECLARE_COMMAND
