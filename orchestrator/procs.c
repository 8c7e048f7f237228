// Child processes of the orchestrator (see procs.h).
#include "procs.h"

#include "core/error.h"
#include "core/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

void maye_procs_init(maye_procs *ps, const char *bin_dir) {
    memset(ps, 0, sizeof *ps);
    ps->bin_dir = bin_dir;
    ps->first_failed = -1;
}

char *maye_self_dir(void) {
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return xstrdup(".");
    buf[n] = 0;
    return maye_dirname(buf);
}

// In the child: every descriptor above 2 that is not kept gets closed.
static void close_other_fds(const int *keep, int n_keep) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return;
    int dfd = dirfd(d);
    int fds[1024], n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 1024) {
        int fd = atoi(e->d_name);
        if (fd <= 2 || fd == dfd || e->d_name[0] == '.') continue;
        int kept = 0;
        for (int i = 0; i < n_keep; i++) kept |= keep[i] == fd;
        if (!kept) fds[n++] = fd;
    }
    closedir(d);
    for (int i = 0; i < n; i++) close(fds[i]);
}

int maye_procs_spawn(maye_procs *ps, char *const argv[], int in_fd, int out_fd, const int *keep_fds, int n_keep,
                     const char *log_path) {
    CHECK_OR_FAIL(ps->n < MAYE_MAX_PROCS, "too many stage processes");
    char *exe = maye_path_join(ps->bin_dir, argv[0]);
    if (access(exe, X_OK) != 0) {
        int rc = maye_fail("cannot run '%s': %s (build it with `make`)", exe, strerror(errno));
        free(exe);
        return rc;
    }
    int log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) {
        int rc = maye_fail("cannot open log '%s': %s", log_path, strerror(errno));
        free(exe);
        return rc;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(log_fd);
        free(exe);
        return maye_fail("fork failed: %s", strerror(errno));
    }
    if (pid == 0) {
        signal(SIGINT, SIG_IGN); // Ctrl-C reaches the orchestrator, which stops the stages itself
        if (in_fd >= 0 && in_fd != 0) dup2(in_fd, 0);
        if (out_fd >= 0 && out_fd != 1) dup2(out_fd, 1);
        dup2(log_fd, 2);
        close_other_fds(keep_fds, n_keep);
        for (int i = 0; i < n_keep; i++) fcntl(keep_fds[i], F_SETFD, 0);
        execv(exe, argv);
        fprintf(stderr, "maye: cannot execute %s: %s\n", exe, strerror(errno));
        _exit(127);
    }
    close(log_fd);
    free(exe);
    maye_proc *p = &ps->procs[ps->n++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", argv[0]);
    p->pid = pid;
    p->log_path = xstrdup(log_path);
    return 0;
}

static int failed(const maye_proc *p) { return p->done && !(WIFEXITED(p->status) && WEXITSTATUS(p->status) == 0); }

static int reap(maye_procs *ps, pid_t pid, int status) {
    for (int i = 0; i < ps->n; i++)
        if (ps->procs[i].pid == pid && !ps->procs[i].done) {
            ps->procs[i].done = 1;
            ps->procs[i].status = status;
            if (!failed(&ps->procs[i])) return -1;
            if (ps->first_failed < 0 && !ps->stopping) ps->first_failed = i;
            return i;
        }
    return -1;
}

int maye_procs_poll(maye_procs *ps, int block) {
    int bad = -1, status;
    pid_t pid;
    if (block && maye_procs_live(ps)) {
        while ((pid = waitpid(-1, &status, 0)) < 0 && errno == EINTR) {}
        if (pid > 0) bad = reap(ps, pid, status);
    }
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        int b = reap(ps, pid, status);
        if (bad < 0) bad = b;
    }
    return bad;
}

int maye_procs_live(const maye_procs *ps) {
    int n = 0;
    for (int i = 0; i < ps->n; i++) n += !ps->procs[i].done;
    return n;
}

int maye_procs_wait_all(maye_procs *ps) {
    int first = -1;
    for (int i = 0; i < ps->n; i++) {
        if (!ps->procs[i].done) {
            int status;
            pid_t r;
            while ((r = waitpid(ps->procs[i].pid, &status, 0)) < 0 && errno == EINTR) {}
            if (r > 0) reap(ps, r, status);
        }
        if (first < 0 && failed(&ps->procs[i])) first = i;
    }
    return ps->first_failed >= 0 ? ps->first_failed : first;
}

int maye_procs_settle(maye_procs *ps, double seconds) {
    double t0 = maye_now();
    while (maye_procs_live(ps) && maye_now() - t0 < seconds) {
        maye_procs_poll(ps, 0);
        if (maye_procs_live(ps)) usleep(20000);
    }
    maye_procs_poll(ps, 0);
    return ps->first_failed;
}

// A failure that only echoes a neighbour's: a closed pipe, or a stream that ended early.
static int secondary_failure(const maye_proc *p) {
    static const char *echoes[] = {"reading end of the pipe is closed", "the stream is empty", "truncated",
                                   "ended inside step", "ended before policy version"};
    maye_buf log = {0};
    if (maye_read_file(p->log_path, &log) < 0 || !log.data) {
        maye_buf_free(&log);
        return 0;
    }
    const char *last = log.data; // the last error line decides
    for (char *e = strstr(log.data, "error:"); e; e = strstr(e + 1, "error:")) last = e;
    int echo = 0;
    for (size_t i = 0; i < sizeof echoes / sizeof *echoes; i++) echo |= strstr(last, echoes[i]) != NULL;
    maye_buf_free(&log);
    return echo;
}

int maye_procs_root_cause(const maye_procs *ps) {
    for (int i = 0; i < ps->n; i++) {
        const maye_proc *p = &ps->procs[i];
        int own = p->done && WIFEXITED(p->status) && WEXITSTATUS(p->status) != 0;
        if (own && !secondary_failure(p)) return i;
    }
    if (ps->first_failed >= 0) return ps->first_failed;
    for (int i = 0; i < ps->n; i++)
        if (failed(&ps->procs[i])) return i;
    return -1;
}

void maye_procs_stop(maye_procs *ps, int sig, double grace) {
    ps->stopping = 1;
    for (int i = 0; i < ps->n; i++)
        if (!ps->procs[i].done) kill(ps->procs[i].pid, sig);
    double t0 = maye_now();
    while (maye_procs_live(ps) && maye_now() - t0 < grace) {
        maye_procs_poll(ps, 0);
        usleep(20000);
    }
    for (int i = 0; i < ps->n; i++)
        if (!ps->procs[i].done) kill(ps->procs[i].pid, SIGKILL);
    maye_procs_wait_all(ps);
}

char *maye_procs_describe_failure(const maye_procs *ps, int i, int tail_lines) {
    const maye_proc *p = &ps->procs[i];
    maye_buf b = {0};
    if (WIFSIGNALED(p->status))
        maye_buf_printf(&b, "%s was killed by signal %d (%s)", p->name, WTERMSIG(p->status), strsignal(WTERMSIG(p->status)));
    else
        maye_buf_printf(&b, "%s exited with status %d", p->name, WEXITSTATUS(p->status));
    maye_buf log = {0};
    if (maye_read_file(p->log_path, &log) == 0 && log.len) {
        // the last tail_lines lines
        size_t start = log.len;
        int lines = 0;
        while (start > 0 && lines <= tail_lines) {
            start--;
            if (log.data[start] == '\n' && start + 1 < log.len) lines++;
        }
        if (lines > tail_lines) start++;
        maye_buf_printf(&b, "; the end of its log %s:\n", p->log_path);
        for (char *line = log.data + start; *line;) {
            char *nl = strchr(line, '\n');
            size_t len = nl ? (size_t)(nl - line) : strlen(line);
            maye_buf_puts(&b, "  | ");
            maye_buf_append(&b, line, len);
            maye_buf_putc(&b, '\n');
            line += len + (nl ? 1 : 0);
        }
    } else {
        maye_buf_printf(&b, " (its log %s is empty)", p->log_path);
    }
    maye_buf_free(&log);
    return b.data;
}

void maye_procs_free(maye_procs *ps) {
    for (int i = 0; i < ps->n; i++) free(ps->procs[i].log_path);
    ps->n = 0;
}
