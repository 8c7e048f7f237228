// Child processes of the orchestrator: the pipeline stages, wired with pipes, each with its stderr in a log
// file of the run directory. When one fails the others are stopped and the user sees which stage failed
// with the tail of its log.
#pragma once
#include <sys/types.h>

#define MAYE_MAX_PROCS 8

typedef struct {
    char name[32];    // "maye-rollout"
    pid_t pid;        // 0 once reaped
    char *log_path;   // its stderr
    int status;       // wait status once reaped
    int done;
} maye_proc;

typedef struct {
    maye_proc procs[MAYE_MAX_PROCS];
    int n;
    const char *bin_dir; // where the stage executables are
    int first_failed;    // the first child that failed on its own (before any stop), -1 if none
    int stopping;        // maye_procs_stop has signalled the children
} maye_procs;

// bin_dir: the directory of the running `maye` executable (the stages are installed beside it).
void maye_procs_init(maye_procs *ps, const char *bin_dir);
// Starts `argv` (argv[0] is a stage name looked up in bin_dir) with stdin in_fd, stdout out_fd and stderr
// appended to log_path; keep_fds (n_keep, may be NULL) stay open in the child (their numbers are passed
// on its command line as /dev/fd/N). Every other descriptor of the orchestrator is closed in the child.
int maye_procs_spawn(maye_procs *ps, char *const argv[], int in_fd, int out_fd, const int *keep_fds, int n_keep,
                     const char *log_path);
// Reaps children that have exited without blocking; returns the index of one that failed (non-zero exit
// or a signal) or -1. With `block`, waits for at least one child to change state first.
int maye_procs_poll(maye_procs *ps, int block);
// Waits for every child; returns the index of the first that failed, or -1.
int maye_procs_wait_all(maye_procs *ps);
// Waits up to `seconds` for children to exit on their own (a stage that fails usually does at once, and its
// neighbours follow when their pipes close); returns first_failed.
int maye_procs_settle(maye_procs *ps, double seconds);
// The child whose failure caused the others': a failed child whose log does not merely report a closed
// pipe or a truncated/empty stream from a neighbour; else first_failed; -1 when none failed.
int maye_procs_root_cause(const maye_procs *ps);
// Sends sig to every live child, waits up to `grace` seconds, then kills what is left.
void maye_procs_stop(maye_procs *ps, int sig, double grace);
// "maye-traj exited with status 1" / "maye-rollout was killed by signal 9 (Killed)" plus the last lines of
// its log, as a message for the user (caller frees).
char *maye_procs_describe_failure(const maye_procs *ps, int i, int tail_lines);
int maye_procs_live(const maye_procs *ps);
void maye_procs_free(maye_procs *ps);

// The directory holding the running executable (/proc/self/exe), for finding the stages.
char *maye_self_dir(void);
