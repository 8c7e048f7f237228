// maye-batch: reads a MAYE-format JSONL dataset and writes Query records (Step I).
// Not implemented yet (issue 2, in progress): it prints its help and refuses to run.
#include "core/cli.h"
#include "core/log.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    maye_log_init(argv[0]);
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: maye-batch [--config FILE] [key.path=value ...] [-o OUT]\n\nNOT IMPLEMENTED YET.\n\n%s",
                   maye_cli_common_help);
            return 0;
        }
    log_error("not implemented yet (issue 2)");
    return 2;
}
