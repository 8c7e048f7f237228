// What the golden tests share: the walk over the fixture folders under $MAYE_FIXTURES/golden, the sample
// names of an expected.safetensors, its tensors as host arrays, and numbers of a manifest's rl section.
#pragma once
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <stdint.h>

// The main of a golden test: calls check(dir, name) on every folder under $MAYE_FIXTURES/golden, in name
// order (check returns 1 when the folder had what the test compares, else 0), and returns the test's exit
// code. Skips (TEST_SKIP, with a line saying why) without fixtures, without a golden folder, or when no
// folder was checked: then `none` is the line (it says which folders the test looks for).
int test_golden_main(int (*check)(const char *dir, const char *name), const char *none);

// The samples of an expected.safetensors: the prefixes s of its `s.input_ids` tensors (the rl.* tensors
// left out), sorted. Returns how many; *names (free each and the array) gets them.
int test_golden_samples(const maye_safetensors *st, char ***names);

// A tensor as floats / int64s (caller frees), or NULL when absent; *n (may be NULL) gets its size.
float *test_st_f32(const maye_safetensors *st, const char *name, int64_t *n);
int64_t *test_st_i64(const maye_safetensors *st, const char *name, int64_t *n);

// The number `key` of a manifest object in its rl section (rl itself or a part of it, e.g. rl.adamw): 0, or
// -1 with a failure counted and printed, naming `where` and rl.<key>.
int test_rl_number(const cJSON *obj, const char *key, double *out, const char *where);
