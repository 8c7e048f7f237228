// Command-line options shared by every program: --config FILE, key.path=value overrides, -i/-o streams,
// --print-config. Programs handle their own options first and pass the rest here.
#pragma once
#include "core/config.h"

typedef struct {
    const char *config_path; // NULL = defaults only
    int n_overrides;
    char **overrides;        // "key.path=value" (pointers into argv)
    const char *in_path;     // "-" = stdin
    const char *out_path;    // "-" = stdout
    const char *tee_path;    // --tee: a copy of the output stream, or NULL
    int print_config;
} maye_cli;

void maye_cli_init(maye_cli *cli);
// Consumes argv[*i] (and its value) if it is a common option or an override: returns 1 and advances *i
// past what it used; 0 if argv[*i] is not one; -1 on a missing value (message set).
int maye_cli_common(maye_cli *cli, int argc, char **argv, int *i);
// Loads the configuration the options name. With --print-config it prints the effective config to
// stdout and returns 1 (the program then exits 0). Returns -1 on errors.
int maye_cli_load_config(const maye_cli *cli, maye_config *cfg);
void maye_cli_free(maye_cli *cli);
// The help text of the common options, for --help.
extern const char *maye_cli_common_help;
