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


const int launch_stopping[LAUNCH_N_STOPPING] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };

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
const char *launch_rank_endpoint(const struct launch_opts *o, int rank) {
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

// One turn of the loop's bookkeeping at now: the deadlines, the sweep
// once every rank exited. True when the attempt is over.
static bool attempt_over(struct launcher *l, uint64_t now) {
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
        return true;
    if (l->give_up_at && now >= l->give_up_at) {
        if (l->running == 0)
            return true;
        // A rank SIGKILL has not ended yet (stuck in the kernel): its
        // exit will still come.
        l->give_up_at = 0;
    }
    return false;
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
        if (attempt_over(l, now))
            break;

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
    for (size_t i = 0; i < LAUNCH_N_STOPPING; i++)
        sigaddset(&l->blocked, launch_stopping[i]);
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
        launch_status = launch_spawn(l, i, stdin_to_rank0);
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

// What the ranks' side needs before any starts: for --hosts, this mlxctl's
// path, the working directory and the agents' environment; here, the
// ranks' environment. False after saying why not.
static bool prepare_env(struct launcher *l) {
    const struct launch_opts *o = l->o;
    int r = 0;
    if (o->hosts) {
        platform_self_exe(l->self, sizeof l->self);
        if (!getcwd(l->here, sizeof l->here))
            l->here[0] = '\0';
        l->agent_env = make_agent_env();
        if (!l->agent_env) {
            fprintf(stderr, "mlxctl: out of memory\n");
            return false;
        }
        return true;
    }
    if (o->remote_host) {
        // The rank's environment came on the command line; its daemon is
        // this host's.
        r = setenv("MLXD_SOCKET", o->default_endpoint, 1);
        l->watch_stdin = true;
    } else {
        for (size_t i = 0; i < o->n_env && r == 0; i++)
            r = putenv(o->env[i]);
    }
    if (r != 0) {
        fprintf(stderr, "mlxctl: cannot set the ranks' environment: %s\n", strerror(errno));
        return false;
    }
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
    if (!prepare_env(&l)) {
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
    status = l.interrupted ? 128 + l.interrupted : l.timed_out ? MLXCTL_EXIT_FAILURE
                                               : l.failed ? l.exit_status : MLXCTL_EXIT_OK;
    free(l.agent_env);
    free(l.ranks);
    if (l.nofile_raised)
        setrlimit(RLIMIT_NOFILE, &l.old_nofile);
    return status;
}
