// The run configuration: one YAML file drives every stage. Values come from the defaults in the schema
// table (config_schema.c), then the YAML file, then `key.path=value` overrides on the command line. Types
// are checked; unknown keys are rejected with the nearest valid key suggested.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int n;
    char **items;
} maye_strlist;

typedef struct {
    int n;
    double *v;
} maye_floatlist;

// Adding a key: add the field here and one row to the table in config_schema.c.
typedef struct {
    int64_t seed;  // base seed of the run; every stream of randomness is derived from it
    char *run_dir; // where checkpoints, weight-sync files, logs and metrics go

    struct {
        char *path;      // checkpoint directory (config.json + safetensors)
        char *ref_path;  // reference model for the KL terms; "" = model.path (differs when resuming)
        char *tokenizer; // tokenizer.json; "" = <path>/tokenizer.json
        char *device;    // cpu | cuda
        char *dtype;     // fp32 | bf16
        bool profile;    // cuda: time the GPU model's regions, printed to stderr when the stage closes it
        int64_t threads; // CPU threads; 0 = all cores
    } model;

    struct {
        char *train, *validation, *test; // MAYE-format JSONL files
        int64_t batch_size;             // queries per generation step
        bool shuffle;                   // reshuffle every epoch with the seed
        int64_t limit;                  // use only the first N samples (0 = all)
        int64_t min_pixels, max_pixels; // smart_resize bounds; 0 = the checkpoint's preprocessor config
        char *system_prompt;
        char *prompt_suffix;
        bool strip_image_tag;           // remove "<image>" from questions (MAYE keeps it as text)
        char *alpha;                    // transparency: white (composite on white) | drop (ignore alpha)
        int64_t max_prompt_tokens;      // longer prompts are an error naming the sample
    } data;

    struct {
        int64_t n;             // responses per query
        double temperature;    // <= 1e-5 means greedy
        double top_p;
        int64_t top_k;         // 0 = off
        int64_t max_tokens;    // new tokens per response
        int64_t min_tokens;
        maye_strlist stop_strings;
        int64_t max_batch_tokens; // KV-cache budget in tokens over all live sequences
        int64_t max_batch_seqs;   // most sequences decoded at once
        bool timing;              // write wall-clock seconds into Rollout records (false: zeros, reproducible bits)
    } rollout;

    struct {
        int64_t forward_batch_size;   // sequences per scoring forward
        maye_strlist rewards;         // which reward components: accuracy, language, format
        maye_floatlist reward_weights; // one per component (empty = all 1)
        double judge_tolerance;       // relative tolerance of numeric answer comparison
        bool penalise_no_eos;
        double reward_penalty;
        int64_t min_response_length;
    } traj;

    struct {
        int64_t ppo_batch_size;
        int64_t ppo_backward_batch_size;
        int64_t ppo_epochs;
        double epsilon_low, epsilon_high; // PPO clip range
        double gamma;
        double kl_loss_coeff, kl_reward_coeff;
        char *kl_estimator;   // k1 | k2 | k3
        char *kl_reward_estimator; // k1 | k2 | k3, of the token KL reward
        char *advantage;      // reinforce_pp | grpo | rloo
        bool shift_mean;      // MAYE's whiten(shift_mean=True)
        bool grpo_std;        // divide by the group std in grpo
        char *loss_reduction; // token_mean | token_sum_const | seq_mean
        double loss_reduction_const; // token_sum_const's constant length; 0 = rollout.max_tokens
        double lr, weight_decay, beta1, beta2, eps, clip_grad_norm;
        char *lr_schedule;    // constant | cosine
        int64_t warmup_steps;
        double warmup_ratio;
        bool train_llm, train_connector, train_vit, recompute;
        int64_t save_every;   // steps between checkpoints
        char *save_dtype;     // bf16 | fp32
        int64_t max_staleness;
        char *weight_sync;    // file | cuda_ipc: how new policy versions reach rollout and traj
    } update;

    struct {
        int64_t epochs;
        int64_t eval_every_epochs;
        bool eval_before;         // evaluate the starting model (epoch 0, the "vanilla" point)
        bool save_streams;        // keep a copy of every stage's output stream in RUN/streams/
        int64_t seeds;
    } train;
} maye_config;

typedef enum { CFG_INT, CFG_FLOAT, CFG_BOOL, CFG_STRING, CFG_STRLIST, CFG_FLOATLIST } maye_cfg_type;

typedef struct {
    const char *key;     // dotted path, "rollout.temperature"
    maye_cfg_type type;
    size_t offset;       // offsetof(maye_config, ...)
    const char *def;     // default value as text ("" for empty strings/lists)
    const char *choices; // "cpu|cuda" for enumerated strings, NULL otherwise
    const char *help;
} maye_cfg_field;

extern const maye_cfg_field maye_cfg_fields[];
extern const int maye_cfg_nfields;

// Fills `c` with defaults, then the YAML file (NULL for none), then overrides "key.path=value".
int maye_config_load(maye_config *c, const char *yaml_path, int n_overrides, char *const *overrides);
// Sets one key from text (used for overrides and by programs that fill values themselves).
int maye_config_set(maye_config *c, const char *key, const char *value);
// The effective config as YAML (caller frees).
char *maye_config_to_yaml(const maye_config *c);
// A digest of the effective config (FNV-1a of its YAML), written into stream headers.
uint64_t maye_config_digest(const maye_config *c);
void maye_config_free(maye_config *c);
// Nearest valid key to `key` by edit distance (NULL if nothing is close).
const char *maye_config_suggest(const char *key);
