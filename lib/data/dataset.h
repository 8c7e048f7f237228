// MAYE-format datasets and the batches of Query records built from them (Step I of the pipeline).
//
// A dataset is JSONL, one object per line: `question` (may contain "<image>"), `answer`, `solution`,
// `id`, `image` (a path relative to the .jsonl file). The whole file is parsed and checked when it is
// opened, so a malformed line, a missing field or a missing image is reported (file, line, field) before
// any record is written. Images are decoded when their batch is built.
//
// Batching (paper, Table 4): a generation step takes `batch_size` samples; the training split is shuffled
// every epoch with a seed-derived stream (same seed -> same order, bit for bit) and its incomplete last
// batch is dropped; evaluation splits are one pass in file order with the last batch kept.
#pragma once
#include "core/util.h"
#include "schemas/maye.pb-c.h"
#include "text/chat.h"
#include "text/tokenizer.h"
#include "vision/image_processor.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    char *id;       // the sample's `id` (or "<file>:<line>" when the line has none)
    char *question;
    char *answer;
    char *solution;
    char *image;    // resolved path (relative to the dataset's directory), NULL when the sample has none
    int line;       // 1-based line in the file
} maye_sample;

typedef struct {
    char *path;
    int n;
    maye_sample *samples;
} maye_dataset;

// Reads and checks a dataset; `limit` > 0 keeps only the first `limit` samples. An empty dataset is an error.
int maye_dataset_load(maye_dataset *ds, const char *path, int64_t limit);
void maye_dataset_free(maye_dataset *ds);

// ----------------------------------------------------------------------------
// the schedule of samples over steps

typedef struct {
    int n_samples;      // dataset size
    int batch_size;
    bool train;         // shuffled epochs, incomplete last batch dropped; else one ordered pass
    bool shuffle;
    uint64_t seed;
    int64_t epochs;     // train: passes over the data; eval: 1
    int64_t steps_per_epoch;
} maye_schedule;

// Sets up the schedule; fails when a training split is smaller than one batch.
int maye_schedule_init(maye_schedule *s, int n_samples, int batch_size, bool train, bool shuffle, uint64_t seed,
                       int64_t epochs);
int64_t maye_schedule_total_steps(const maye_schedule *s);
// The sample indices of global step `step` (0-based): *n of them written to idx (room for batch_size);
// *epoch receives the step's epoch. Steps are independent: any step can be computed without the others.
void maye_schedule_step(const maye_schedule *s, int64_t step, int *idx, int *n, int64_t *epoch);

// ----------------------------------------------------------------------------
// building Query records

typedef struct {
    const maye_tokenizer *tok;
    maye_chat chat;
    maye_image_processor_config image_cfg;
    const char *system_prompt;
    const char *prompt_suffix;   // appended to every question (MAYE's CoT prompt)
    bool strip_image_tag;        // remove "<image>" from questions (MAYE keeps it as text)
    int64_t max_prompt_tokens;
} maye_query_builder;

int maye_query_builder_init(maye_query_builder *b, const maye_tokenizer *tok, const maye_image_processor_config *img,
                            const char *system_prompt, const char *prompt_suffix, bool strip_image_tag,
                            int64_t max_prompt_tokens);

// Fills q (a fresh Maye__Query, owned afterwards: free with maye_query_clear) for one sample. Errors name the
// dataset file, the line and the field.
int maye_query_build(const maye_query_builder *b, const maye_dataset *ds, int sample_index, Maye__Query *q);
// Frees what maye_query_build allocated inside q (q itself is not freed).
void maye_query_clear(Maye__Query *q);
