/* `mlxctl launch`: starts the N ranks of a job and sees them through to the
 * end, and again after a failure while --max-restarts allows. Each rank runs
 * in its own process group, so that stopping a rank stops whatever it
 * started; mlxctl is a child subreaper, so that what a rank leaves behind is
 * reaped here rather than orphaned. Signals arrive through a signalfd and
 * are handled in the one poll loop, together with the ranks' output (with
 * --prefix) and the deadlines.
 *
 * A rank on another host (--hosts, --hostfile) is an rsh agent here and, on
 * its host, `mlxctl launch --remote-rank HOST` (this same code with one rank
 * and no job of its own), which watches the agent's connection on its
 * standard input: closing that pipe here stops the rank there. */
#include "mlxctl.h"
#include "launch.h"
#include "platform.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "wire.h"

extern char **environ;

// How long ranks get between SIGTERM and SIGKILL.
#define GRACE_MS 2000

// How long a remote rank's agent gets, once its connection is closed, to end
// on its own (its remote side gives the program GRACE_MS), before SIGTERM
// and, GRACE_MS later, SIGKILL.
#define REMOTE_GRACE_MS (2 * GRACE_MS + 1000)

// After SIGKILL, how long to wait for what is left before giving up on it.
#define GIVE_UP_MS 1000

// How long a daemon that accepts connections gets to answer a Ping before
// launch refuses to start.
#define CHECK_TIMEOUT_MS 5000


// The signals that stop a launch (and are passed on to the ranks).
static const int stopping[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };

struct rank {
    pid_t pid;                      // also its process group; 0 if never started
    bool running;                   // started and not yet reaped
    bool group_gone;                // nothing is left in its process group
    int host;                       // index into o->hosts; -1 for a rank here
    int link;                       // a remote rank's agent's stdin (write end): closing it stops the rank; -1
    struct stream streams[2];       // stdout, stderr
};

enum phase {
    PHASE_RUN,                      // ranks run
    PHASE_STOP,                     // a rank failed, the timeout passed or mlxctl was interrupted
    PHASE_SWEEP,                    // every rank exited: leftovers in their groups get SIGTERM
};

// What stopping the ranks does after the first signal (to the ranks here) and
// the closed links (to remote ranks): ms after the stop, to which ranks.
static const struct stop_step {
    int ms;
    bool remote;
    int sig;
} stop_steps[] = {
    { GRACE_MS, false, SIGKILL },
    { REMOTE_GRACE_MS, true, SIGTERM },
    { REMOTE_GRACE_MS + GRACE_MS, true, SIGKILL },
};

#define N_STOP_STEPS (sizeof stop_steps / sizeof stop_steps[0])

struct launcher {
    const struct launch_opts *o;
    char job[WIRE_JOB_ID_MAX + 1];
    int attempt;                    // 0, 1, ... as MLXD_ATTEMPT says
    struct rank *ranks;
    int running;                    // ranks not yet reaped
    int sigfd;
    sigset_t blocked, oldmask;
    struct sigaction old_sigpipe;
    struct rlimit old_nofile;       // restored in the ranks when raised here
    bool nofile_raised;
    struct output out;              // where the output of --prefix goes
    char self[PATH_MAX];            // this mlxctl, for remote command lines ("" if unknown)
    char here[PATH_MAX];            // the working directory ("" if unknown)
    char **agent_env;               // the agents' environment: ours without MLXD_*
    bool watch_stdin;               // the remote side: EOF on fd 0 stops the rank

    enum phase phase;
    // This attempt:
    int exit_status;                // the first failure's, 0 while none
    bool failed;
    char failure[PATH_MAX];         // what it was: "rank 2 exited with code 1"
    bool failure_told;              // already printed
    uint64_t stop_at;               // wire_now_us() of the stop, 0 while running
    size_t stop_step;               // the next stop_steps[] entry
    uint64_t kill_at;               // the sweep's SIGKILL
    uint64_t give_up_at;
    // The whole launch:
    int interrupted;                // the signal that stopped mlxctl, 0 if none
    int stopped;                    // ranks that were running then
    bool timed_out;
    bool no_restart;                // interrupted while stopping: no further attempt
    uint64_t timeout_at;            // wire_now_us() deadline of --timeout, 0 when unset
};

// host-pid-time-random: unique per launch, even for two launches from one
// process in one second.
static void make_job_id(char *buf, size_t size) {
    char host[65] = "";
    uint64_t rnd = 0;
    if (gethostname(host, sizeof host) < 0)
        host[0] = '\0';
    host[sizeof host - 1] = '\0';
    for (char *p = host; *p; p++) {
        char one[2] = { *p, '\0' };
        if (!wire_job_id_valid(one))
            *p = '-';
    }
    if (!platform_random(&rnd))
        rnd = wire_now_us() * 0x9e3779b97f4a7c15ull ^ (uint64_t) getpid();
    snprintf(buf, size, "%s-%d-%lld-%016" PRIx64, *host ? host : "host", (int) getpid(),
             (long long) time(NULL), rnd);
}

// The daemon of a rank: contiguous blocks over --daemons, the first
// n % daemons blocks one rank larger (5 ranks on 3 daemons: 2, 2, 1).
static const char *rank_endpoint(const struct launch_opts *o, int rank) {
    if (!o->daemons || o->n_daemons == 0)
        return o->default_endpoint;
    size_t n = (size_t) o->n, d = o->n_daemons, r = (size_t) rank;
    size_t q = n / d, big = n % d * (q + 1);
    size_t k = r < big ? r / (q + 1) : n % d + (r - big) / q;
    return o->daemons[k < d ? k : d - 1];
}

// Whether the daemon at endpoint answers a Ping; says why not, and what to
// do, when it does not.
static bool daemon_answers(const struct launcher *l, const char *endpoint) {
    const struct launch_opts *o = l->o;
    bool given = o->endpoint_given || o->daemons;
    if (wire_ipc_path(endpoint)) {
        // Nothing listens: say so at once rather than after the timeout.
        int r = wire_probe_ipc(endpoint);
        if (r == -ENOENT || r == -ECONNREFUSED || r == -ENOTDIR) {
            if (o->remote_host)
                fprintf(stderr, "mlxctl: on %s: no mlxd answers at %s: ", o->remote_host, endpoint);
            else
                fprintf(stderr, "mlxctl: no mlxd answers at %s: ", endpoint);
            mlxctl_print_start_hint(stderr, endpoint, given);
            fputc('\n', stderr);
            return false;
        }
    }
    struct wait_opts w = { .endpoint_given = given, .timeout_ms = CHECK_TIMEOUT_MS };
    snprintf(w.endpoint, sizeof w.endpoint, "%s", endpoint);
    return wait_run(&w) == MLXCTL_EXIT_OK;
}

// Every daemon listed in --daemons (each asked once), else the one endpoint
// of the ranks here, answers.
static bool daemons_answer(const struct launcher *l) {
    const struct launch_opts *o = l->o;
    bool ok = true;
    if (o->hosts)
        return true;                // each remote side asks its own daemon
    if (!o->daemons)
        return daemon_answers(l, o->default_endpoint);
    for (size_t i = 0; i < o->n_daemons; i++) {
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++)
            seen = strcmp(o->daemons[k], o->daemons[i]) == 0;
        if (!seen && !daemon_answers(l, o->daemons[i]))
            ok = false;
    }
    return ok;
}

static const char *signal_name(int sig, char *buf, size_t size) {
    const char *abbrev = sigabbrev_np(sig);
    if (abbrev)
        snprintf(buf, size, "SIG%s", abbrev);
    else
        snprintf(buf, size, "signal %d", sig);
    return buf;
}

/* ---- the ranks ---- */

// Sends sig to everything in rank's process group.
static void signal_rank(struct rank *r, int sig) {
    if (r->pid <= 0 || r->group_gone)
        return;
    if (kill(-r->pid, sig) < 0 && errno == ESRCH)
        r->group_gone = true;
}

// Sends sig to the ranks here (remote false) or the remote ranks' agents.
static void signal_ranks(struct launcher *l, bool remote, int sig) {
    for (int i = 0; i < l->o->n; i++)
        if ((l->ranks[i].host >= 0) == remote)
            signal_rank(&l->ranks[i], sig);
}

static void signal_all(struct launcher *l, int sig) {
    for (int i = 0; i < l->o->n; i++)
        signal_rank(&l->ranks[i], sig);
}

static void close_link(struct rank *r) {
    if (r->link >= 0)
        close(r->link);
    r->link = -1;
}

// True while something is left in the group of a rank that exited.
static bool leftovers(struct launcher *l) {
    bool any = false;
    for (int i = 0; i < l->o->n; i++) {
        struct rank *r = &l->ranks[i];
        if (r->running)
            continue;
        signal_rank(r, 0);
        any |= r->pid > 0 && !r->group_gone;
    }
    return any;
}

// Stops every rank: sig to the ranks here, and the remote ranks' links
// closed; then the steps of stop_steps[].
static void stop(struct launcher *l, int sig) {
    if (l->phase != PHASE_RUN)
        return;
    l->phase = PHASE_STOP;
    signal_ranks(l, false, sig);
    for (int i = 0; i < l->o->n; i++)
        close_link(&l->ranks[i]);
    l->stop_at = wire_now_us();
    l->stop_step = 0;
}

// The stop's next step, now.
static void hurry(struct launcher *l) {
    if (l->phase != PHASE_STOP || l->stop_step >= N_STOP_STEPS)
        return;
    uint64_t now = wire_now_us(), ahead = (uint64_t) stop_steps[l->stop_step].ms * 1000;
    l->stop_at = now > ahead ? now - ahead : 0;
}

// SIGINT, SIGTERM, SIGHUP or SIGQUIT to mlxctl: the ranks get the same
// signal (as a terminal's Ctrl-C would give them) and are stopped; nothing is
// a rank's failure from then on, and nothing is started again.
static void interrupt(struct launcher *l, int sig) {
    l->no_restart = true;
    if (l->phase == PHASE_RUN && !l->failed && !l->timed_out) {
        l->interrupted = sig;
        l->stopped = l->running;
        stop(l, sig);
    } else if (l->phase == PHASE_STOP)
        hurry(l);
    else
        signal_all(l, SIGKILL);
}

// Rank i's name in messages: "rank 2", "rank 2 on hostb", or on the remote
// side what MLXD_RANK says.
static const char *rank_name(const struct launcher *l, int i, char *buf, size_t size) {
    const struct launch_opts *o = l->o;
    if (o->remote_host) {
        const char *r = getenv("MLXD_RANK");
        snprintf(buf, size, "rank %s on %s", r ? r : "?", o->remote_host);
    } else if (l->ranks[i].host >= 0)
        snprintf(buf, size, "rank %d on %s", i, o->hosts[l->ranks[i].host].name);
    else
        snprintf(buf, size, "rank %d", i);
    return buf;
}

static void rank_exited(struct launcher *l, int i, int status) {
    struct rank *r = &l->ranks[i];
    char sig[32], name[300];
    r->running = false;
    l->running--;
    close_link(r);
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (ok || l->failed || l->timed_out || l->interrupted)
        return;
    // The rank's last words (often why it failed) come before the verdict.
    for (int k = 0; k < 2; k++)
        while (launch_stream_read(&l->out, i, &r->streams[k]))
            ;
    // The first failure decides the exit status; later ones are mostly our
    // own SIGTERM and would only be noise.
    l->failed = true;
    rank_name(l, i, name, sizeof name);
    if (WIFEXITED(status)) {
        l->exit_status = WEXITSTATUS(status);
        snprintf(l->failure, sizeof l->failure, "%s exited with code %d%s", name, l->exit_status,
                 r->host >= 0 && l->exit_status == 255 ? " (the rsh agent's code for its own failures)" : "");
    } else {
        l->exit_status = 128 + WTERMSIG(status);
        snprintf(l->failure, sizeof l->failure, "%s killed by signal %s", name,
                 signal_name(WTERMSIG(status), sig, sizeof sig));
    }
    // The remote side leaves the telling to the launcher; with attempts left,
    // the verdict waits for the end of the attempt, to say what comes next.
    if (l->o->remote_host)
        l->failure_told = true;
    else if (l->attempt >= l->o->max_restarts) {
        fprintf(stderr, "mlxctl: %s\n", l->failure);
        l->failure_told = true;
    }
    stop(l, SIGTERM);
}

// Reaps every child that exited: ranks, and (as subreaper) whatever they
// left behind.
static void reap(struct launcher *l) {
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            return;
        if (!WIFEXITED(status) && !WIFSIGNALED(status))
            continue;
        for (int i = 0; i < l->o->n; i++)
            if (l->ranks[i].running && l->ranks[i].pid == pid) {
                rank_exited(l, i, status);
                break;
            }
    }
}

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
    for (size_t k = 0; k < sizeof stopping / sizeof stopping[0]; k++)
        sigaction(stopping[k], &dfl, NULL);
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

// Starts rank i: the command here, or the agent for a remote rank. Returns
// 0, or (after saying why) the exit status for a rank that could not be
// started: 127 when CMD is not found, 126 when it cannot be executed, 1 when
// mlxctl ran out of processes, files or memory or --cwd does not exist.
static int spawn(struct launcher *l, int i, bool stdin_to_rank0) {
    const struct launch_opts *o = l->o;
    struct rank *r = &l->ranks[i];
    int fds[2][2] = { { -1, -1 }, { -1, -1 } }, errpipe[2] = { -1, -1 }, link[2] = { -1, -1 };
    char **argv = NULL;
    char num[16];
    int e = 0;

    if (r->host >= 0) {
        argv = agent_argv(l, i);
        if (!argv || pipe2(link, O_CLOEXEC) < 0) {
            e = argv ? errno : ENOMEM;
            goto fail;
        }
    } else if (!o->remote_host) {
        snprintf(num, sizeof num, "%d", i);
        if (setenv("MLXD_RANK", num, 1) < 0 || setenv("MLXD_SOCKET", rank_endpoint(o, i), 1) < 0) {
            fprintf(stderr, "mlxctl: cannot set the environment of rank %d: %s\n", i, strerror(errno));
            return MLXCTL_EXIT_FAILURE;
        }
    }
    if (o->prefix) {
        for (int k = 0; k < 2; k++) {
            r->streams[k].buf = malloc(LAUNCH_LINE_CAP);
            if (!r->streams[k].buf) {
                e = ENOMEM;
                goto fail;
            }
            if (pipe2(fds[k], O_CLOEXEC) < 0 || fcntl(fds[k][0], F_SETFL, O_NONBLOCK) < 0) {
                e = errno;
                goto fail;
            }
        }
    }
    if (pipe2(errpipe, O_CLOEXEC) < 0) {
        e = errno;
        goto fail;
    }

    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        e = errno;
        goto fail;
    }
    // Standard input: the link for an agent, ours for rank 0 here (unless a
    // terminal), else /dev/null.
    if (pid == 0)
        child_exec(l, i, parent, fds, link[0] >= 0 ? link[0] : i == 0 && stdin_to_rank0 ? -2 : -1, errpipe[1],
                   argv ? argv : o->argv);

    // Both sides set the group, so that it exists before either uses it.
    setpgid(pid, pid);
    r->pid = pid;
    r->running = true;
    l->running++;
    close(errpipe[1]);
    if (link[0] >= 0)
        close(link[0]);
    r->link = link[1];
    for (int k = 0; k < 2; k++) {
        if (fds[k][1] >= 0)
            close(fds[k][1]);
        r->streams[k].fd = fds[k][0];
        r->streams[k].out = k + 1;
    }
    struct child_error ce = { 0 };
    ssize_t n;
    do
        n = read(errpipe[0], &ce, sizeof ce);
    while (n < 0 && errno == EINTR);
    close(errpipe[0]);
    const char *what = r->host >= 0 ? o->rsh[0] : o->argv[0];
    free(argv);
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

fail:
    fprintf(stderr, "mlxctl: cannot start rank %d: %s%s\n", i, strerror(e),
            e == EMFILE || e == ENFILE ? " (raise the limit with `ulimit -n`, or run without --prefix)"
            : e == EAGAIN ? " (too many processes: check `ulimit -u`)" : "");
    for (int k = 0; k < 2; k++) {
        for (int m = 0; m < 2; m++)
            if (fds[k][m] >= 0)
                close(fds[k][m]);
        free(r->streams[k].buf);
        r->streams[k].buf = NULL;
    }
    for (int m = 0; m < 2; m++) {
        if (errpipe[m] >= 0)
            close(errpipe[m]);
        if (link[m] >= 0)
            close(link[m]);
    }
    free(argv);
    return MLXCTL_EXIT_FAILURE;
}

/* ---- the loop ---- */

static void handle_signals(struct launcher *l) {
    for (int sig; (sig = platform_signal_take(l->sigfd)) != 0;) {
        if (sig == SIGCHLD)
            reap(l);
        else
            interrupt(l, sig);
    }
}

// The remote side: what comes on the link is dropped; its end (the launcher
// closed it, or the agent's connection is gone) stops the rank.
static void read_link(struct launcher *l) {
    char buf[512];
    ssize_t r = read(0, buf, sizeof buf);
    if (r < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (r > 0)
        return;
    l->watch_stdin = false;
    if (l->phase == PHASE_RUN && !l->failed) {
        l->interrupted = SIGHUP;
        l->stopped = l->running;
    }
    stop(l, SIGTERM);
}

static uint64_t earliest(uint64_t a, uint64_t b) {
    return a == 0 ? b : b == 0 ? a : a < b ? a : b;
}

// When the stop's next step is due; 0 when none is left.
static uint64_t next_stop_step(const struct launcher *l) {
    if (l->phase != PHASE_STOP || l->stop_step >= N_STOP_STEPS)
        return 0;
    return l->stop_at + (uint64_t) stop_steps[l->stop_step].ms * 1000 + 1;
}

// Acts on the deadlines that passed.
static void check_deadlines(struct launcher *l, uint64_t now) {
    if (l->timeout_at && now >= l->timeout_at) {
        l->timeout_at = 0;
        if (l->phase == PHASE_RUN && !l->interrupted) {
            fprintf(stderr, "mlxctl: the job did not finish within %g s (--timeout); stopping it\n",
                    l->o->timeout_ms / 1000.0);
            l->timed_out = true;
            stop(l, SIGTERM);
        }
    }
    for (uint64_t at; (at = next_stop_step(l)) && now >= at; l->stop_step++) {
        const struct stop_step *st = &stop_steps[l->stop_step];
        signal_ranks(l, st->remote, st->sig);
    }
    if (l->kill_at && now >= l->kill_at) {
        l->kill_at = 0;
        signal_all(l, SIGKILL);
        l->give_up_at = now + GIVE_UP_MS * 1000ull;
    }
}

static int open_streams(const struct launcher *l) {
    int n = 0;
    for (int i = 0; i < l->o->n; i++)
        for (int k = 0; k < 2; k++)
            n += l->ranks[i].streams[k].fd >= 0;
    return n;
}

// Runs one attempt's ranks to their end.
static void run_loop(struct launcher *l) {
    // The signalfd, the link (remote side), two streams per rank.
    size_t max = (size_t) l->o->n * 2 + 2;
    struct pollfd *pfds = calloc(max, sizeof *pfds);
    int *owner = calloc(max, sizeof *owner);
    struct pollfd fixed[2];
    if (!pfds || !owner) {
        // Without room to poll the pipes, still see the ranks through.
        free(pfds);
        free(owner);
        pfds = NULL;
        owner = NULL;
        for (int i = 0; i < l->o->n; i++)
            for (int k = 0; k < 2; k++)
                launch_stream_close(&l->out, i, &l->ranks[i].streams[k]);
    }

    for (;;) {
        uint64_t now = wire_now_us();
        check_deadlines(l, now);
        if (l->running == 0 && l->phase != PHASE_SWEEP) {
            // Every rank exited: end what they left in their groups, and
            // give output pipes that something outside them holds open a
            // grace period to drain.
            l->phase = PHASE_SWEEP;
            l->kill_at = 0;
            l->give_up_at = now + GRACE_MS * 1000ull;
            if (leftovers(l)) {
                signal_all(l, SIGTERM);
                l->kill_at = l->give_up_at;
                l->give_up_at = 0;
            }
        }
        if (l->phase == PHASE_SWEEP && open_streams(l) == 0 && !leftovers(l))
            break;
        if (l->give_up_at && now >= l->give_up_at) {
            if (l->running == 0)
                break;
            // A rank SIGKILL has not ended yet (stuck in the kernel): its
            // exit will still come.
            l->give_up_at = 0;
        }

        int n = 0, link_at = -1;
        struct pollfd *p = pfds ? pfds : fixed;
        p[n++] = (struct pollfd) { .fd = l->sigfd, .events = POLLIN };
        if (l->watch_stdin) {
            link_at = n;
            p[n++] = (struct pollfd) { .fd = 0, .events = POLLIN };
        }
        for (int i = 0; pfds && i < l->o->n; i++)
            for (int k = 0; k < 2; k++)
                if (l->ranks[i].streams[k].fd >= 0) {
                    owner[n] = i * 2 + k;
                    p[n++] = (struct pollfd) { .fd = l->ranks[i].streams[k].fd, .events = POLLIN };
                }
        uint64_t next = earliest(earliest(l->timeout_at, l->kill_at), earliest(l->give_up_at, next_stop_step(l)));
        int timeout = -1;
        if (next)
            timeout = next <= now ? 0 : (int) ((next - now + 999) / 1000);
        int ready = poll(p, (nfds_t) n, timeout);
        if (ready < 0 && errno != EINTR)
            break;
        if (ready <= 0)
            continue;
        if (p[0].revents)
            handle_signals(l);
        if (link_at >= 0 && p[link_at].revents)
            read_link(l);
        for (int m = link_at >= 0 ? 2 : 1; m < n; m++)
            if (p[m].revents) {
                int i = owner[m] / 2, k = owner[m] % 2;
                launch_stream_read(&l->out, i, &l->ranks[i].streams[k]);
            }
    }
    for (int i = 0; i < l->o->n; i++)
        for (int k = 0; k < 2; k++)
            launch_stream_close(&l->out, i, &l->ranks[i].streams[k]);
    free(pfds);
    free(owner);
}

static int setup_signals(struct launcher *l) {
    struct sigaction ign = { .sa_handler = SIG_IGN };
    sigemptyset(&l->blocked);
    sigaddset(&l->blocked, SIGCHLD);
    for (size_t i = 0; i < sizeof stopping / sizeof stopping[0]; i++)
        sigaddset(&l->blocked, stopping[i]);
    if (sigprocmask(SIG_BLOCK, &l->blocked, &l->oldmask) < 0)
        return -errno;
    l->sigfd = platform_signal_fd(&l->blocked);
    if (l->sigfd < 0) {
        int e = errno;
        sigprocmask(SIG_SETMASK, &l->oldmask, NULL);
        return -e;
    }
    // A reader of --prefix output that goes away must not kill mlxctl (and
    // orphan the ranks); the ranks get the old disposition back.
    sigaction(SIGPIPE, &ign, &l->old_sigpipe);
    return 0;
}

static void restore_signals(struct launcher *l) {
    sigaction(SIGPIPE, &l->old_sigpipe, NULL);
    close(l->sigfd);
    sigprocmask(SIG_SETMASK, &l->oldmask, NULL);
}

// --prefix keeps two pipes per rank open: raises the soft limit on open
// files as far as that needs and the hard limit allows.
static void raise_fd_limit(struct launcher *l) {
    struct rlimit rl;
    rlim_t want = (rlim_t) l->o->n * 2 + 64;
    if (!l->o->prefix || getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want)
        return;
    l->old_nofile = rl;
    rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want ? rl.rlim_max : want;
    l->nofile_raised = setrlimit(RLIMIT_NOFILE, &rl) == 0;
}

// Opens /dev/null on whichever of fds 0, 1, 2 is closed, so that the pipes
// made later never land there.
static void ensure_std_fds(void) {
    for (;;) {
        int fd = open("/dev/null", O_RDWR);
        if (fd < 0)
            return;
        if (fd > 2) {
            close(fd);
            return;
        }
    }
}

// The agents' environment: ours without the variables a remote rank gets
// from its command line and its host. The strings stay environ's: with
// remote ranks, mlxctl sets no variable of its own.
static char **make_agent_env(void) {
    static const char *const own[] = { "MLXD_JOB=", "MLXD_RANK=", "MLXD_SIZE=", "MLXD_SOCKET=", "MLXD_ATTEMPT=" };
    size_t n = 0, k = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 1, sizeof *env);
    for (size_t i = 0; env && i < n; i++) {
        bool skip = false;
        for (size_t m = 0; m < sizeof own / sizeof own[0] && !skip; m++)
            skip = strncmp(environ[i], own[m], strlen(own[m])) == 0;
        if (!skip)
            env[k++] = environ[i];
    }
    return env;
}

// The job id of this attempt, and what the ranks here see of it.
static int set_attempt(struct launcher *l) {
    const struct launch_opts *o = l->o;
    char num[16];
    if (o->job && l->attempt == 0)
        snprintf(l->job, sizeof l->job, "%s", o->job);
    else if (o->job)
        snprintf(l->job, sizeof l->job, "%s.%d", o->job, l->attempt);
    else
        make_job_id(l->job, sizeof l->job);
    if (o->hosts || o->remote_host)
        return 0;
    if (setenv("MLXD_JOB", l->job, 1) < 0)
        return -errno;
    snprintf(num, sizeof num, "%d", o->n);
    if (setenv("MLXD_SIZE", num, 1) < 0)
        return -errno;
    snprintf(num, sizeof num, "%d", l->attempt);
    return setenv("MLXD_ATTEMPT", num, 1) < 0 ? -errno : 0;
}

// Starts one attempt's ranks and sees them to their end.
static void run_attempt(struct launcher *l, bool stdin_to_rank0) {
    const struct launch_opts *o = l->o;
    l->phase = PHASE_RUN;
    l->failed = l->failure_told = false;
    l->exit_status = 0;
    l->failure[0] = '\0';
    l->stop_at = l->kill_at = l->give_up_at = 0;
    l->stop_step = 0;
    for (int i = 0; i < o->n; i++) {
        struct rank *r = &l->ranks[i];
        *r = (struct rank) { .host = o->hosts ? (int) launch_host_of_rank(o, i) : -1, .link = -1 };
        for (int k = 0; k < 2; k++)
            r->streams[k].fd = -1;
    }

    int launch_status = 0;
    for (int i = 0; i < o->n && launch_status == 0 && !l->interrupted; i++)
        launch_status = spawn(l, i, stdin_to_rank0);
    if (launch_status != 0) {
        // Stop what started; a rank whose exec failed is reaped in the loop.
        // What fails to start would fail again: no restart.
        l->failed = l->failure_told = l->no_restart = true;
        l->exit_status = launch_status;
        stop(l, SIGTERM);
    }
    run_loop(l);
    // Anything still running at this point ignored SIGKILL's reach (it left
    // its process group); it is not ours to wait for any longer.
    reap(l);
    for (int i = 0; i < o->n; i++) {
        close_link(&l->ranks[i]);
        for (int k = 0; k < 2; k++) {
            free(l->ranks[i].streams[k].buf);
            l->ranks[i].streams[k].buf = NULL;
        }
    }
}

// After a failed attempt: whether to start the job again, and saying so.
static bool restart(struct launcher *l) {
    const struct launch_opts *o = l->o;
    if (l->attempt < o->max_restarts && !l->no_restart)
        handle_signals(l);          // an interrupt that came meanwhile
    if (l->attempt >= o->max_restarts || l->no_restart || l->interrupted || l->timed_out) {
        if (!l->failure_told && l->failed)
            fprintf(stderr, "mlxctl: %s\n", l->failure);
        return false;
    }
    if (!o->allow_singleton && !daemons_answer(l)) {
        fprintf(stderr, "mlxctl: %s; not restarting: a daemon of the job no longer answers\n", l->failure);
        return false;
    }
    fprintf(stderr, "mlxctl: %s; restarting (attempt %d of %d)\n", l->failure, l->attempt + 2,
            o->max_restarts + 1);
    l->attempt++;
    return true;
}

int launch_run(const struct launch_opts *o) {
    struct launcher l = { .o = o, .sigfd = -1 };
    int r = 0, status = MLXCTL_EXIT_FAILURE;

    ensure_std_fds();
    raise_fd_limit(&l);

    l.ranks = calloc((size_t) o->n, sizeof *l.ranks);
    if (!l.ranks) {
        fprintf(stderr, "mlxctl: out of memory\n");
        return MLXCTL_EXIT_FAILURE;
    }
    if (!o->allow_singleton && !daemons_answer(&l)) {
        if (!o->remote_host)
            fprintf(stderr, "mlxctl: not starting the job (--allow-singleton runs its ranks as groups of one "
                    "without a daemon)\n");
        free(l.ranks);
        return MLXCTL_EXIT_FAILURE;
    }
    if (o->hosts) {
        platform_self_exe(l.self, sizeof l.self);
        if (!getcwd(l.here, sizeof l.here))
            l.here[0] = '\0';
        l.agent_env = make_agent_env();
        if (!l.agent_env) {
            fprintf(stderr, "mlxctl: out of memory\n");
            free(l.ranks);
            return MLXCTL_EXIT_FAILURE;
        }
    } else if (o->remote_host) {
        // The rank's environment came on the command line; its daemon is
        // this host's.
        r = setenv("MLXD_SOCKET", o->default_endpoint, 1);
        l.watch_stdin = true;
    } else {
        r = 0;
        for (size_t i = 0; i < o->n_env && r == 0; i++)
            r = putenv(o->env[i]);
    }
    if (!o->hosts && r != 0) {
        fprintf(stderr, "mlxctl: cannot set the ranks' environment: %s\n", strerror(errno));
        free(l.ranks);
        return MLXCTL_EXIT_FAILURE;
    }
    r = setup_signals(&l);
    if (r < 0) {
        fprintf(stderr, "mlxctl: cannot set up signal handling: %s\n", strerror(-r));
        free(l.agent_env);
        free(l.ranks);
        return MLXCTL_EXIT_FAILURE;
    }
    // What the ranks leave behind is reparented to mlxctl and reaped here.
    platform_child_subreaper(1);

    // Standard input goes to rank 0 here; a remote side's is its link.
    bool stdin_to_rank0 = !o->hosts && !o->remote_host && !isatty(0);
    if (o->timeout_ms > 0)
        l.timeout_at = wire_now_us() + (uint64_t) o->timeout_ms * 1000;
    do {
        r = set_attempt(&l);
        if (r < 0) {
            fprintf(stderr, "mlxctl: cannot set the ranks' environment: %s\n", strerror(-r));
            l.failed = true;
            l.exit_status = MLXCTL_EXIT_FAILURE;
            break;
        }
        run_attempt(&l, stdin_to_rank0);
    } while (l.failed && restart(&l));

    restore_signals(&l);
    platform_child_subreaper(0);
    if (l.interrupted && !o->remote_host)
        fprintf(stderr, "mlxctl: interrupted: stopped %d rank%s\n", l.stopped, l.stopped == 1 ? "" : "s");
    if (l.interrupted)
        status = 128 + l.interrupted;
    else if (l.timed_out)
        status = MLXCTL_EXIT_FAILURE;
    else
        status = l.failed ? l.exit_status : MLXCTL_EXIT_OK;
    free(l.agent_env);
    free(l.ranks);
    if (l.nofile_raised)
        setrlimit(RLIMIT_NOFILE, &l.old_nofile);
    return status;
}
