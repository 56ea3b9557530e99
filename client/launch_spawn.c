/* `mlxctl launch`: starting one rank. The child becomes the rank (or, for
 * a rank on another host, its rsh agent) in a process group of its own; a
 * close-on-exec pipe brings back why its exec failed, if it did, so that
 * mlxctl can say so and exit 127 or 126 as a shell does. */
#include "launch.h"
#include "platform.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// What a child that could not become its rank tells the parent.
struct child_error {
    int err;                        // errno
    bool chdir;                     // chdir(--cwd) failed, not exec
};

// In the child, between fork and exec: only async-signal-safe calls.
// stdin_fd becomes standard input; -1 is /dev/null, -2 keeps mlxctl's.
static void __attribute__((noreturn))
child_exec(struct launcher *l, int i, pid_t parent, int fds[2][2], int stdin_fd, int errfd, char *const *argv) {
    struct child_error ce = { 0 };
    setpgid(0, 0);
    // Dies with mlxctl even if mlxctl is killed with SIGKILL.
    platform_parent_death_signal(SIGTERM);
    if (getppid() != parent)
        _exit(127);
    sigaction(SIGPIPE, &l->old_sigpipe, NULL);
    // The signals mlxctl passes on act on the rank even where mlxctl's
    // caller ignored them (as a shell does for a background job).
    struct sigaction dfl = { .sa_handler = SIG_DFL };
    for (size_t k = 0; k < LAUNCH_N_STOPPING; k++)
        sigaction(launch_stopping[k], &dfl, NULL);
    if (l->nofile_raised)
        setrlimit(RLIMIT_NOFILE, &l->old_nofile);
    if (stdin_fd >= 0)
        dup2(stdin_fd, 0);
    else if (stdin_fd == -1) {
        int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null > 0)
            dup2(null, 0);
        else if (null == 0)
            fcntl(0, F_SETFD, 0);
    }
    if (l->o->prefix) {
        dup2(fds[0][1], 1);
        dup2(fds[1][1], 2);
    }
    sigprocmask(SIG_SETMASK, &l->oldmask, NULL);
    if (l->ranks[i].host >= 0)
        execvpe(argv[0], argv, l->agent_env);
    else if (l->o->cwd && chdir(l->o->cwd) < 0)
        ce.chdir = true;
    else
        execvp(argv[0], argv);
    ce.err = errno;
    ssize_t ignored = write(errfd, &ce, sizeof ce);
    (void) ignored;
    _exit(ce.chdir ? 1 : ce.err == ENOENT ? 127 : 126);
}

// The agent's command line for remote rank i: its words, the host and the
// remote command line, in one allocation (free() it).
static char **agent_argv(struct launcher *l, int i) {
    const struct launch_opts *o = l->o;
    size_t words = 0;
    while (o->rsh[words])
        words++;
    char *cmd = launch_remote_cmdline(o, *l->self ? l->self : NULL, *l->here ? l->here : NULL, l->job, i,
                                      l->attempt);
    if (!cmd)
        return NULL;
    size_t len = strlen(cmd) + 1;
    char **argv = malloc((words + 3) * sizeof *argv + len);
    if (argv) {
        char *copy = (char *) (argv + words + 3);
        memcpy(copy, cmd, len);
        memcpy(argv, o->rsh, words * sizeof *argv);
        argv[words] = o->hosts[l->ranks[i].host].name;
        argv[words + 1] = copy;
        argv[words + 2] = NULL;
    }
    free(cmd);
    return argv;
}

// What rank i needs made before its fork; -1 where not (yet) made.
struct spawn_fds {
    int out[2][2];                      // --prefix: the stdout and stderr pipes
    int err[2];                         // the child's exec error
    int link[2];                        // a remote rank's agent's stdin
    char **argv;                        // a remote rank's agent's command line
};

// The environment a rank here gets of its own. 0, or (after saying why)
// the exit status.
static int spawn_env(const struct launch_opts *o, int i) {
    char num[16];
    if (o->remote_host)
        return 0;
    snprintf(num, sizeof num, "%d", i);
    if (setenv("MLXD_RANK", num, 1) < 0 || setenv("MLXD_SOCKET", launch_rank_endpoint(o, i), 1) < 0) {
        fprintf(stderr, "mlxctl: cannot set the environment of rank %d: %s\n", i, strerror(errno));
        return MLXCTL_EXIT_FAILURE;
    }
    return 0;
}

// Makes what rank i needs before its fork into f: 0, or an errno (what was
// made stays in f for spawn_undo()).
static int spawn_make(struct launcher *l, int i, struct spawn_fds *f) {
    struct rank *r = &l->ranks[i];
    if (r->host >= 0) {
        f->argv = agent_argv(l, i);
        if (!f->argv || pipe2(f->link, O_CLOEXEC) < 0)
            return f->argv ? errno : ENOMEM;
    }
    if (l->o->prefix) {
        for (int k = 0; k < 2; k++) {
            r->streams[k].buf = malloc(LAUNCH_LINE_CAP);
            if (!r->streams[k].buf)
                return ENOMEM;
            if (pipe2(f->out[k], O_CLOEXEC) < 0 || fcntl(f->out[k][0], F_SETFL, O_NONBLOCK) < 0)
                return errno;
        }
    }
    return pipe2(f->err, O_CLOEXEC) < 0 ? errno : 0;
}

// Rank i could not be started (errno e): says why, closes what f holds.
static int spawn_undo(struct launcher *l, int i, struct spawn_fds *f, int e) {
    struct rank *r = &l->ranks[i];
    fprintf(stderr, "mlxctl: cannot start rank %d: %s%s\n", i, strerror(e),
            e == EMFILE || e == ENFILE ? " (raise the limit with `ulimit -n`, or run without --prefix)"
            : e == EAGAIN ? " (too many processes: check `ulimit -u`)" : "");
    for (int k = 0; k < 2; k++) {
        for (int m = 0; m < 2; m++)
            if (f->out[k][m] >= 0)
                close(f->out[k][m]);
        free(r->streams[k].buf);
        r->streams[k].buf = NULL;
    }
    for (int m = 0; m < 2; m++) {
        if (f->err[m] >= 0)
            close(f->err[m]);
        if (f->link[m] >= 0)
            close(f->link[m]);
    }
    free(f->argv);
    return MLXCTL_EXIT_FAILURE;
}

// In the parent once rank i's child is pid: the rank runs; its ends of
// the pipes are kept, the child's closed.
static void spawn_started(struct launcher *l, int i, pid_t pid, struct spawn_fds *f) {
    struct rank *r = &l->ranks[i];
    // Both sides set the group, so that it exists before either uses it.
    setpgid(pid, pid);
    r->pid = pid;
    r->running = true;
    l->running++;
    close(f->err[1]);
    if (f->link[0] >= 0)
        close(f->link[0]);
    r->link = f->link[1];
    for (int k = 0; k < 2; k++) {
        if (f->out[k][1] >= 0)
            close(f->out[k][1]);
        r->streams[k].fd = f->out[k][0];
        r->streams[k].out = k + 1;
    }
}

// What the child of rank i said on errfd before its exec, if anything:
// 0 when it exec'd, else (after saying why) the exit status.
static int spawn_verdict(const struct launcher *l, int i, int errfd) {
    const struct launch_opts *o = l->o;
    struct child_error ce = { 0 };
    ssize_t n;
    do
        n = read(errfd, &ce, sizeof ce);
    while (n < 0 && errno == EINTR);
    close(errfd);
    const char *what = l->ranks[i].host >= 0 ? o->rsh[0] : o->argv[0];
    if (n == (ssize_t) sizeof ce && ce.chdir) {
        fprintf(stderr, "mlxctl: cannot change to --cwd %s: %s\n", o->cwd, strerror(ce.err));
        return MLXCTL_EXIT_FAILURE;
    }
    if (n == (ssize_t) sizeof ce) {
        char name[300] = "";
        if (o->remote_host)
            snprintf(name, sizeof name, " on %s", o->remote_host);
        fprintf(stderr, "mlxctl: cannot run '%s'%s: %s%s\n", what, name, strerror(ce.err),
                ce.err == ENOENT ? " (check the name and $PATH)" : "");
        return ce.err == ENOENT ? 127 : 126;
    }
    return 0;
}

int launch_spawn(struct launcher *l, int i, bool stdin_to_rank0) {
    const struct launch_opts *o = l->o;
    struct spawn_fds f = { .out = { { -1, -1 }, { -1, -1 } }, .err = { -1, -1 }, .link = { -1, -1 } };
    int e;

    if (l->ranks[i].host < 0 && (e = spawn_env(o, i)) != 0)
        return e;
    if ((e = spawn_make(l, i, &f)) != 0)
        return spawn_undo(l, i, &f, e);
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return spawn_undo(l, i, &f, errno);
    // Standard input: the link for an agent, ours for rank 0 here (unless a
    // terminal), else /dev/null.
    if (pid == 0)
        child_exec(l, i, parent, f.out, f.link[0] >= 0 ? f.link[0] : i == 0 && stdin_to_rank0 ? -2 : -1, f.err[1],
                   f.argv ? f.argv : o->argv);
    spawn_started(l, i, pid, &f);
    free(f.argv);
    return spawn_verdict(l, i, f.err[0]);
}
