// maye: the orchestrator and the debugging tools around the four stages. It dispatches to the
// subcommands listed in commands.h; each subcommand has its own --help.
#include "backend/backend.h"
#include "commands.h"
#include "core/log.h"
#include "version.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} command;

#define COMMAND_ROW(name, fn, summary) {#name, fn, summary},
static const command commands[] = {MAYE_COMMANDS(COMMAND_ROW)};
#undef COMMAND_ROW

static void usage(FILE *f) {
    fprintf(f, "usage: maye COMMAND [options]   (maye COMMAND --help for details)\n\n"
               "maye-c %s: reinforcement learning for vision-language models.\n\ncommands:\n", MAYE_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
}

int cmd_version(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: maye version\n\nPrints the version and the backends this build has (the CUDA one with the "
               "GPUs it sees).\n");
        return 0;
    }
    if (argc > 1) {
        log_error("maye version takes no arguments (got '%s')", argv[1]);
        return 2;
    }
    const maye_backend_ops *cuda = maye_backend_cuda();
    printf("maye-c %s (CPU backend: fp32, OpenBLAS; CUDA backend: ", MAYE_VERSION);
    if (cuda) printf("fp32 and bf16, %d device(s) visible)\n", cuda->device_count());
    else printf("not built, make CUDA=1 builds it)\n");
    return 0;
}

int main(int argc, char **argv) {
    maye_log_init("maye");
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
        if (strcmp(argv[1], commands[i].name)) continue;
        char prog[64];
        snprintf(prog, sizeof prog, "maye %s", commands[i].name);
        maye_log_init(prog);
        return commands[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "maye: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
