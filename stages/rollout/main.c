// maye-rollout: reads Query records and writes Rollout records: n sampled responses per query.
// Not implemented yet (issue 4): it prints its help and refuses to run rather than emit fake records.
#include "core/cli.h"
#include "core/log.h"

#include <stdio.h>
#include <string.h>

static void usage(void) {
    printf("usage: maye-rollout [--config FILE] [key.path=value ...] [-i IN] [-o OUT]\n\n"
           "reads Query records and writes Rollout records: n sampled responses per query.\n\n"
           "NOT IMPLEMENTED YET: this stage lands with issue 4; until then it refuses to run.\n\n"
           "options:\n%s",
           maye_cli_common_help);
}

int main(int argc, char **argv) {
    maye_log_init(argv[0]);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return usage(), 0;
    log_error("not implemented yet (issue 4); run 'maye-rollout --help'");
    return 2;
}
