// maye-update: reads Trajectory records, updates the policy (Reinforce++ advantages, PPO-clip + KL loss, AdamW) and writes Metrics records.
// Not implemented yet (issue 6): it prints its help and refuses to run rather than emit fake records.
#include "core/cli.h"
#include "core/log.h"

#include <stdio.h>
#include <string.h>

static void usage(void) {
    printf("usage: maye-update [--config FILE] [key.path=value ...] [-i IN] [-o OUT]\n\n"
           "reads Trajectory records, updates the policy (Reinforce++ advantages, PPO-clip + KL loss, AdamW) and writes Metrics records.\n\n"
           "NOT IMPLEMENTED YET: this stage lands with issue 6; until then it refuses to run.\n\n"
           "options:\n%s",
           maye_cli_common_help);
}

int main(int argc, char **argv) {
    maye_log_init(argv[0]);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return usage(), 0;
    log_error("not implemented yet (issue 6); run 'maye-update --help'");
    return 2;
}
