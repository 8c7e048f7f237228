// The schema of every configuration key: type, default, allowed values, help. Defaults reproduce the
// MAYE paper's recipe (DESIGN.md, "Defaults that reproduce the paper") where the paper sets a value.
#include "core/config.h"

#include <stddef.h>

#define F(key, type, member, def, choices, help) {key, type, offsetof(maye_config, member), def, choices, help}

const maye_cfg_field maye_cfg_fields[] = {
    F("seed", CFG_INT, seed, "0", NULL, "base seed of the run"),
    F("run_dir", CFG_STRING, run_dir, "runs/default", NULL, "checkpoints, weight-sync files, logs, metrics"),

    F("model.path", CFG_STRING, model.path, "", NULL, "checkpoint directory (config.json + safetensors)"),
    F("model.tokenizer", CFG_STRING, model.tokenizer, "", NULL, "tokenizer.json; empty = <model.path>/tokenizer.json"),
    F("model.device", CFG_STRING, model.device, "cpu", "cpu|cuda", "compute backend"),
    F("model.dtype", CFG_STRING, model.dtype, "fp32", "fp32|bf16", "compute dtype (the CPU backend is fp32)"),
    F("model.threads", CFG_INT, model.threads, "0", NULL, "CPU threads; 0 = all cores"),

    F("data.train", CFG_STRING, data.train, "", NULL, "training set, MAYE-format JSONL"),
    F("data.validation", CFG_STRING, data.validation, "", NULL, "validation set, MAYE-format JSONL"),
    F("data.test", CFG_STRING, data.test, "", NULL, "test set, MAYE-format JSONL"),
    F("data.batch_size", CFG_INT, data.batch_size, "128", NULL, "queries per generation step"),
    F("data.shuffle", CFG_BOOL, data.shuffle, "true", NULL, "reshuffle the training set every epoch"),
    F("data.limit", CFG_INT, data.limit, "0", NULL, "use only the first N samples (0 = all)"),
    F("data.min_pixels", CFG_INT, data.min_pixels, "0", NULL, "smart_resize lower bound; 0 = the checkpoint's"),
    F("data.max_pixels", CFG_INT, data.max_pixels, "0", NULL, "smart_resize upper bound; 0 = the checkpoint's"),
    F("data.system_prompt", CFG_STRING, data.system_prompt, "You are a helpful assistant.", NULL,
      "system turn of the chat template"),
    F("data.prompt_suffix", CFG_STRING, data.prompt_suffix,
      "\nSolve the above mathematics problem, write out the solution process according to the question, and "
      "use the same LaTeX format as the question in the solution process. Please display the final answer in "
      "the format \\boxed{}.",
      NULL, "text appended to every question (MAYE's prompt)"),
    F("data.strip_image_tag", CFG_BOOL, data.strip_image_tag, "false", NULL,
      "remove \"<image>\" from questions (MAYE keeps it as text)"),
    F("data.max_prompt_tokens", CFG_INT, data.max_prompt_tokens, "8192", NULL,
      "longest prompt accepted (tokens, image included)"),

    F("rollout.n", CFG_INT, rollout.n, "1", NULL, "responses sampled per query"),
    F("rollout.temperature", CFG_FLOAT, rollout.temperature, "1.0", NULL, "sampling temperature; <= 1e-5 is greedy"),
    F("rollout.top_p", CFG_FLOAT, rollout.top_p, "1.0", NULL, "nucleus sampling mass"),
    F("rollout.top_k", CFG_INT, rollout.top_k, "0", NULL, "keep the k most likely tokens; 0 = off"),
    F("rollout.max_tokens", CFG_INT, rollout.max_tokens, "2048", NULL, "new tokens per response"),
    F("rollout.min_tokens", CFG_INT, rollout.min_tokens, "0", NULL, "stop tokens are suppressed before this"),
    F("rollout.stop_strings", CFG_STRLIST, rollout.stop_strings, "", NULL, "extra stop strings"),
    F("rollout.max_batch_tokens", CFG_INT, rollout.max_batch_tokens, "65536", NULL,
      "KV-cache budget in tokens over all live sequences"),
    F("rollout.max_batch_seqs", CFG_INT, rollout.max_batch_seqs, "64", NULL, "most sequences decoded at once"),

    F("traj.forward_batch_size", CFG_INT, traj.forward_batch_size, "16", NULL, "sequences per scoring forward"),
    F("traj.rewards", CFG_STRLIST, traj.rewards, "accuracy,language", NULL,
      "reward components: accuracy, language, format"),
    F("traj.reward_weights", CFG_FLOATLIST, traj.reward_weights, "", NULL, "weight per component (empty = 1)"),
    F("traj.judge_tolerance", CFG_FLOAT, traj.judge_tolerance, "1e-2", NULL, "relative tolerance of the judge"),
    F("traj.penalise_no_eos", CFG_BOOL, traj.penalise_no_eos, "true", NULL, "penalise responses without a stop"),
    F("traj.reward_penalty", CFG_FLOAT, traj.reward_penalty, "-0.1", NULL, "score of a penalised response"),
    F("traj.min_response_length", CFG_INT, traj.min_response_length, "1", NULL, "shorter responses are penalised"),

    F("update.ppo_batch_size", CFG_INT, update.ppo_batch_size, "4", NULL, "trajectories per gradient step"),
    F("update.ppo_backward_batch_size", CFG_INT, update.ppo_backward_batch_size, "4", NULL,
      "trajectories per backward pass (gradient accumulation inside a step)"),
    F("update.ppo_epochs", CFG_INT, update.ppo_epochs, "1", NULL, "passes over each generation step's batch"),
    F("update.epsilon_low", CFG_FLOAT, update.epsilon_low, "0.2", NULL, "PPO clip below 1"),
    F("update.epsilon_high", CFG_FLOAT, update.epsilon_high, "0.2", NULL, "PPO clip above 1"),
    F("update.gamma", CFG_FLOAT, update.gamma, "1.0", NULL, "discount of returns"),
    F("update.kl_loss_coeff", CFG_FLOAT, update.kl_loss_coeff, "0.001", NULL, "weight of the KL loss"),
    F("update.kl_reward_coeff", CFG_FLOAT, update.kl_reward_coeff, "0.0", NULL, "weight of the token KL reward"),
    F("update.kl_estimator", CFG_STRING, update.kl_estimator, "k3", "k1|k2|k3", "KL loss estimator"),
    F("update.kl_reward_estimator", CFG_STRING, update.kl_reward_estimator, "k3", "k1|k2|k3",
      "estimator of the token KL reward (MAYE: k3)"),
    F("update.advantage", CFG_STRING, update.advantage, "reinforce_pp", "reinforce_pp|grpo|rloo",
      "advantage estimator"),
    F("update.shift_mean", CFG_BOOL, update.shift_mean, "true", NULL, "add the mean back after whitening (MAYE)"),
    F("update.grpo_std", CFG_BOOL, update.grpo_std, "true", NULL, "divide by the group std in grpo"),
    F("update.loss_reduction", CFG_STRING, update.loss_reduction, "token_mean", "token_mean|token_sum_const|seq_mean",
      "how token losses are reduced"),
    F("update.loss_reduction_const", CFG_FLOAT, update.loss_reduction_const, "0", NULL,
      "token_sum_const: constant sequence length the token sums are divided by (0 = rollout.max_tokens)"),
    F("update.lr", CFG_FLOAT, update.lr, "5e-6", NULL, "peak learning rate"),
    F("update.weight_decay", CFG_FLOAT, update.weight_decay, "0.01", NULL, "AdamW decoupled weight decay"),
    F("update.beta1", CFG_FLOAT, update.beta1, "0.9", NULL, "AdamW beta1"),
    F("update.beta2", CFG_FLOAT, update.beta2, "0.999", NULL, "AdamW beta2"),
    F("update.eps", CFG_FLOAT, update.eps, "1e-8", NULL, "AdamW epsilon"),
    F("update.clip_grad_norm", CFG_FLOAT, update.clip_grad_norm, "1.0", NULL, "global gradient-norm clip"),
    F("update.lr_schedule", CFG_STRING, update.lr_schedule, "cosine", "constant|cosine",
      "constant, or linear warmup + cosine decay"),
    F("update.warmup_steps", CFG_INT, update.warmup_steps, "0", NULL, "warmup gradient steps (overrides ratio)"),
    F("update.warmup_ratio", CFG_FLOAT, update.warmup_ratio, "0.03", NULL, "warmup share of all gradient steps"),
    F("update.train_llm", CFG_BOOL, update.train_llm, "true", NULL, "train the language model"),
    F("update.train_connector", CFG_BOOL, update.train_connector, "false", NULL, "train the patch merger"),
    F("update.train_vit", CFG_BOOL, update.train_vit, "false", NULL, "train the vision tower"),
    F("update.recompute", CFG_BOOL, update.recompute, "false", NULL, "recompute activations in backward"),
    F("update.save_every", CFG_INT, update.save_every, "0", NULL, "gradient steps between checkpoints (0 = end)"),
    F("update.save_dtype", CFG_STRING, update.save_dtype, "bf16", "bf16|fp32", "dtype of saved checkpoints"),
    F("update.max_staleness", CFG_INT, update.max_staleness, "0", NULL, "policy versions a record may lag"),

    F("train.epochs", CFG_INT, train.epochs, "30", NULL, "passes over the training set"),
    F("train.eval_every_epochs", CFG_INT, train.eval_every_epochs, "1", NULL, "evaluate every N epochs"),
    F("train.seeds", CFG_INT, train.seeds, "1", NULL, "independent runs with seeds seed, seed+1, ..."),
};

const int maye_cfg_nfields = (int)(sizeof maye_cfg_fields / sizeof maye_cfg_fields[0]);
