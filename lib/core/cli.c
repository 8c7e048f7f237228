// Shared command-line options (see cli.h).
#include "core/cli.h"

#include "core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *maye_cli_common_help =
    "  --config FILE        YAML configuration (every stage reads the same file)\n"
    "  key.path=value       override one configuration key, e.g. rollout.temperature=0.6\n"
    "  -i FILE              read records from FILE instead of stdin\n"
    "  -o FILE              write records to FILE instead of stdout (a regular file is written under a\n"
    "                       temporary name and appears complete when the stage ends; a FIFO is written live)\n"
    "  --tee FILE           also save the output stream to FILE (replay it later, maye cat it)\n"
    "  --print-config       print the effective configuration as YAML and exit\n"
    "  -h, --help           show this help\n"
    "environment: MAYE_ZSTD_LEVEL, the zstd level of the streams written (default 1)\n";

void maye_cli_init(maye_cli *cli) {
    memset(cli, 0, sizeof *cli);
    cli->in_path = "-";
    cli->out_path = "-";
}

static int is_override(const char *a) {
    if (a[0] == '-' || !strchr(a, '=')) return 0;
    for (const char *p = a; *p && *p != '='; p++)
        if (*p == '/' || *p == ' ') return 0;
    return 1;
}

int maye_cli_common(maye_cli *cli, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    const char *value_opts[] = {"--config", "-c", "-i", "-o", "--tee"};
    for (int k = 0; k < 5; k++) {
        if (strcmp(a, value_opts[k])) continue;
        if (*i + 1 >= argc) return maye_fail("option %s needs a value", a);
        const char *v = argv[*i + 1];
        if (k <= 1) cli->config_path = v;
        else if (k == 2) cli->in_path = v;
        else if (k == 3) cli->out_path = v;
        else cli->tee_path = v;
        *i += 2;
        return 1;
    }
    if (!strncmp(a, "--config=", 9)) {
        cli->config_path = a + 9;
        *i += 1;
        return 1;
    }
    if (!strcmp(a, "--print-config")) {
        cli->print_config = 1;
        *i += 1;
        return 1;
    }
    if (is_override(a)) {
        cli->overrides = realloc(cli->overrides, sizeof(char *) * (size_t)(cli->n_overrides + 1));
        if (!cli->overrides) maye_die("out of memory");
        cli->overrides[cli->n_overrides++] = argv[*i];
        *i += 1;
        return 1;
    }
    return 0;
}

int maye_cli_load_config(const maye_cli *cli, maye_config *cfg) {
    if (maye_config_load(cfg, cli->config_path, cli->n_overrides, cli->overrides) < 0) return -1;
    if (!cli->print_config) return 0;
    char *y = maye_config_to_yaml(cfg);
    fputs(y, stdout);
    free(y);
    return 1;
}

void maye_cli_free(maye_cli *cli) {
    free(cli->overrides);
    cli->overrides = NULL;
    cli->n_overrides = 0;
}
