// maye-traj: reads Rollout records and writes Trajectory records: rewards, policy and reference log-probs.
// Not implemented yet (issue 5): it prints its help and refuses to run rather than emit fake records.
#include "core/cli.h"
#include "core/log.h"

#include <stdio.h>
#include <string.h>

static void usage(void) {
    printf("usage: maye-traj [--config FILE] [key.path=value ...] [-i IN] [-o OUT]\n\n"
           "reads Rollout records and writes Trajectory records: rewards, policy and reference log-probs.\n\n"
           "NOT IMPLEMENTED YET: this stage lands with issue 5; until then it refuses to run.\n\n"
           "options:\n%s",
           maye_cli_common_help);
}

int main(int argc, char **argv) {
    maye_log_init(argv[0]);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return usage(), 0;
    log_error("not implemented yet (issue 5); run 'maye-traj --help'");
    return 2;
}
