// What the debug commands of `maye` (init, forward, generate) share: their option loop ("--name value"
// options and bare flags, -h/--help) and, for forward and generate, the one sequence they read from a
// safetensors file: input_ids [L] (or [1, L]) and, for images, pixel_values [P, PD] and image_grid_thw
// [n, 3] (PD = the vision config's patch_dim).
#pragma once
#include "model/model.h"

#include <stdint.h>
#include <stdio.h>

// ----------------------------------------------------------------------------
// options

// One option: "--name value" stores the value's argv pointer in *value; a flag (value NULL) sets *flag = 1.
typedef struct {
    const char *name;
    const char **value;
    int *flag;
} maye_debug_opt;

// Parses argv[1..] against opts (n of them). -h/--help prints usage to stdout; an unknown argument or an
// option without its value is logged, naming `cmd` ("see maye <cmd> --help"). Returns -1 when the command
// should go on, else its exit status: 0 after --help, 2 after a bad argument.
int maye_debug_opts_parse(int argc, char **argv, const maye_debug_opt *opts, int n, const char *cmd,
                          void (*usage)(FILE *));

// ----------------------------------------------------------------------------
// one input sequence

typedef struct {
    int64_t L;      // tokens
    int64_t P;      // patch rows over all images (0 without images)
    int64_t n_img;  // images
    int64_t n_tok;  // image tokens the grids describe (merged patches)
    int64_t *ids;   // (L)
    int64_t *grid;  // (n_img, 3) t, h, w per image; NULL without images
    float *pixels;  // (P, PD); NULL without images
} maye_debug_input;

// Reads prefix+input_ids, prefix+pixel_values and prefix+image_grid_thw of the safetensors file at path
// (prefix "" or e.g. a fixture's "s0.") and checks them against the model config c: the ids' shape, both
// image tensors or neither, their shapes and dtypes, the grids against the patch rows. Messages name the
// file and the tensor. Free with maye_debug_input_free (nothing to free after a failure).
int maye_debug_input_read(maye_debug_input *in, const maye_model_config *c, const char *path, const char *prefix);
void maye_debug_input_free(maye_debug_input *in);

// What `maye forward` and `maye grad` do after their options: set the CPU threads, load the checkpoint at
// model_dir, read the input sequence (prefix) and run fn on them, reporting any error (naming the input).
// Returns the command's exit status: 0, or 1 after an error.
int maye_debug_run(const char *model_dir, const char *in_path, const char *prefix, int64_t threads,
                   int (*fn)(const maye_model *m, const maye_debug_input *in, void *arg), void *arg);
