/* `mlxctl launch`: starts the N ranks of a job and sees them through to the
 * end. Each rank runs in its own process group, so that stopping a rank stops
 * whatever it started; mlxctl is a child subreaper, so that what a rank leaves
 * behind is reaped here rather than orphaned. Signals arrive through a
 * signalfd and are handled in the one poll loop, together with the ranks'
 * output (with --prefix) and the deadlines. */
#include "mlxctl.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "wire.h"

// How long ranks get between SIGTERM and SIGKILL.
#define GRACE_MS 2000

// After SIGKILL, how long to wait for what is left before giving up on it.
#define GIVE_UP_MS 1000

// Longest line --prefix holds back; a longer one is passed on in pieces.
#define LINE_CAP (64 * 1024)

#define JOB_ID_MAX 128

// The signals mlxctl passes on to the ranks.
static const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };

// One output stream of a rank under --prefix.
struct stream {
    int fd;                         // read end of the rank's pipe; -1 once closed
    int out;                        // where its lines go: 1 or 2
    char *buf;                      // LINE_CAP bytes, the line so far
    size_t len;
    bool midline;                   // a piece of this line went out already
};

struct rank {
    pid_t pid;                      // also its process group; 0 if never started
    bool running;                   // started and not yet reaped
    bool group_gone;                // nothing is left in its process group
    struct stream streams[2];       // stdout, stderr
};

enum phase {
    PHASE_RUN,                      // ranks run
    PHASE_STOP,                     // a rank failed, or the timeout passed: SIGTERM sent
    PHASE_SWEEP,                    // every rank exited: leftovers in their groups get SIGTERM
};

struct launcher {
    const struct launch_opts *o;
    char job[JOB_ID_MAX + 1];
    struct rank *ranks;
    int running;                    // ranks not yet reaped
    int sigfd;
    sigset_t blocked, oldmask;
    struct sigaction old_sigpipe;
    struct rlimit old_nofile;       // restored in the ranks when raised here
    bool nofile_raised;
    bool out_broken[3];          // by fd: writes to it failed, output is dropped

    enum phase phase;
    int exit_status;                // the first failure's, 0 while none
    bool failed;
    bool timed_out;
    uint64_t timeout_at;            // wire_now_us() deadlines, 0 when unset
    uint64_t kill_at;
    uint64_t give_up_at;
};

bool launch_job_id_is_valid(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > JOB_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              strchr("._:@+-", c)))
            return false;
    }
    return true;
}

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
        if (!launch_job_id_is_valid(one))
            *p = '-';
    }
    if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t) sizeof rnd)
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

// Warns (once per endpoint) when nothing listens on a rank's ipc endpoint:
// the ranks would otherwise run as singletons or fail, far from the cause.
static void warn_unreachable(const struct launch_opts *o) {
    const char *prev = NULL;
    for (int i = 0; i < o->n; i++) {
        const char *ep = rank_endpoint(o, i);
        if (prev && strcmp(prev, ep) == 0)
            continue;
        prev = ep;
        int r = wire_probe_ipc(ep);
        if (r == -ENOENT || r == -ECONNREFUSED) {
            fprintf(stderr, "mlxctl: warning: no mlxd answers at %s yet: ", ep);
            mlxctl_print_start_hint(stderr, ep, o->daemons != NULL);
            fputc('\n', stderr);
        }
    }
}

static const char *signal_name(int sig, char *buf, size_t size) {
    const char *abbrev = sigabbrev_np(sig);
    if (abbrev)
        snprintf(buf, size, "SIG%s", abbrev);
    else
        snprintf(buf, size, "signal %d", sig);
    return buf;
}

/* ---- output of --prefix ---- */

// Writes all of iov to fd; false when fd is gone (then output to it is
// dropped, so that ranks never block on a reader that left).
static bool write_all(int fd, struct iovec *iov, int n) {
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                struct pollfd p = { .fd = fd, .events = POLLOUT };
                poll(&p, 1, -1);
                continue;
            }
            return false;
        }
        while (n > 0 && (size_t) w >= iov->iov_len) {
            w -= (ssize_t) iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *) iov->iov_base + w;
            iov->iov_len -= (size_t) w;
        }
    }
    return true;
}

// Emits len bytes of s's line, starting with the prefix unless this line
// already started, ending with a newline when end_line.
static void emit(struct launcher *l, int rank, struct stream *s, const char *data, size_t len, bool end_line) {
    char prefix[32];
    struct iovec iov[3];
    int n = 0;
    if (!s->midline) {
        int p = snprintf(prefix, sizeof prefix, "[%d] ", rank);
        iov[n++] = (struct iovec) { prefix, (size_t) p };
    }
    if (len)
        iov[n++] = (struct iovec) { (void *) data, len };
    if (end_line)
        iov[n++] = (struct iovec) { "\n", 1 };
    s->midline = !end_line;
    if (!l->out_broken[s->out] && !write_all(s->out, iov, n))
        l->out_broken[s->out] = true;
}

// Passes on every complete line in s's buffer; a full buffer without a
// newline goes out as a piece of a line.
static void flush_lines(struct launcher *l, int rank, struct stream *s) {
    size_t start = 0;
    for (;;) {
        char *nl = memchr(s->buf + start, '\n', s->len - start);
        if (!nl)
            break;
        size_t end = (size_t) (nl - s->buf);
        emit(l, rank, s, s->buf + start, end - start, true);
        start = end + 1;
    }
    memmove(s->buf, s->buf + start, s->len - start);
    s->len -= start;
    if (s->len == LINE_CAP) {
        emit(l, rank, s, s->buf, s->len, false);
        s->len = 0;
    }
}

static void stream_close(struct launcher *l, int rank, struct stream *s) {
    if (s->fd < 0)
        return;
    // A last line without its newline still gets one, so that the next
    // rank's line starts on a line of its own.
    if (s->len > 0 || s->midline)
        emit(l, rank, s, s->buf, s->len, true);
    s->len = 0;
    close(s->fd);
    s->fd = -1;
}

// Reads what the pipe holds (it is nonblocking); returns true when there
// may be more.
static bool stream_read(struct launcher *l, int rank, struct stream *s) {
    if (s->fd < 0)
        return false;
    ssize_t r = read(s->fd, s->buf + s->len, LINE_CAP - s->len);
    if (r < 0 && errno == EINTR)
        return true;
    if (r < 0 && errno == EAGAIN)
        return false;
    if (r <= 0) {
        stream_close(l, rank, s);
        return false;
    }
    s->len += (size_t) r;
    flush_lines(l, rank, s);
    return true;
}

/* ---- the ranks ---- */

// Sends sig to everything in rank's process group.
static void signal_rank(struct rank *r, int sig) {
    if (r->pid <= 0 || r->group_gone)
        return;
    if (kill(-r->pid, sig) < 0 && errno == ESRCH)
        r->group_gone = true;
}

static void signal_all(struct launcher *l, int sig) {
    for (int i = 0; i < l->o->n; i++)
        signal_rank(&l->ranks[i], sig);
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

static void stop(struct launcher *l) {
    if (l->phase != PHASE_RUN)
        return;
    l->phase = PHASE_STOP;
    signal_all(l, SIGTERM);
    l->kill_at = wire_now_us() + GRACE_MS * 1000ull;
}

static void rank_exited(struct launcher *l, int i, int status) {
    char sig[32];
    l->ranks[i].running = false;
    l->running--;
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (ok || l->failed || l->timed_out)
        return;
    // The rank's last words (often why it failed) come before the verdict.
    for (int k = 0; k < 2; k++)
        while (stream_read(l, i, &l->ranks[i].streams[k]))
            ;
    // The first failure decides the exit status; later ones are mostly our
    // own SIGTERM and would only be noise.
    l->failed = true;
    if (WIFEXITED(status)) {
        l->exit_status = WEXITSTATUS(status);
        fprintf(stderr, "mlxctl: rank %d exited with code %d\n", i, l->exit_status);
    } else {
        l->exit_status = 128 + WTERMSIG(status);
        fprintf(stderr, "mlxctl: rank %d killed by signal %s\n", i,
                signal_name(WTERMSIG(status), sig, sizeof sig));
    }
    stop(l);
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

// In the child, between fork and exec: only async-signal-safe calls.
static void __attribute__((noreturn))
child_exec(struct launcher *l, int i, pid_t parent, int fds[2][2], int errfd, bool stdin_to_rank0) {
    setpgid(0, 0);
    // Dies with mlxctl even if mlxctl is killed with SIGKILL.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(127);
    sigaction(SIGPIPE, &l->old_sigpipe, NULL);
    if (l->nofile_raised)
        setrlimit(RLIMIT_NOFILE, &l->old_nofile);
    if (i != 0 || !stdin_to_rank0) {
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
    execvp(l->o->argv[0], l->o->argv);
    int e = errno;
    ssize_t ignored = write(errfd, &e, sizeof e);
    (void) ignored;
    _exit(e == ENOENT ? 127 : 126);
}

// Starts rank i. Returns 0, or (after saying why) the exit status for a rank
// that could not be started: 127 when CMD is not found, 126 when it cannot be
// executed, 1 when mlxctl ran out of processes, files or memory.
static int spawn(struct launcher *l, int i, bool stdin_to_rank0) {
    struct rank *r = &l->ranks[i];
    int fds[2][2] = { { -1, -1 }, { -1, -1 } }, errpipe[2] = { -1, -1 };
    char num[16];
    int e = 0;

    snprintf(num, sizeof num, "%d", i);
    if (setenv("MLXD_RANK", num, 1) < 0 || setenv("MLXD_SOCKET", rank_endpoint(l->o, i), 1) < 0) {
        fprintf(stderr, "mlxctl: cannot set the environment of rank %d: %s\n", i, strerror(errno));
        return MLXCTL_EXIT_FAILURE;
    }
    if (l->o->prefix) {
        for (int k = 0; k < 2; k++) {
            r->streams[k].buf = malloc(LINE_CAP);
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
    if (pid == 0)
        child_exec(l, i, parent, fds, errpipe[1], stdin_to_rank0);

    // Both sides set the group, so that it exists before either uses it.
    setpgid(pid, pid);
    r->pid = pid;
    r->running = true;
    l->running++;
    close(errpipe[1]);
    for (int k = 0; k < 2; k++) {
        if (fds[k][1] >= 0)
            close(fds[k][1]);
        r->streams[k].fd = fds[k][0];
        r->streams[k].out = k + 1;
    }
    int child_errno = 0;
    ssize_t n;
    do
        n = read(errpipe[0], &child_errno, sizeof child_errno);
    while (n < 0 && errno == EINTR);
    close(errpipe[0]);
    if (n == (ssize_t) sizeof child_errno) {
        fprintf(stderr, "mlxctl: cannot run '%s': %s%s\n", l->o->argv[0], strerror(child_errno),
                child_errno == ENOENT ? " (check the name and $PATH)" : "");
        return child_errno == ENOENT ? 127 : 126;
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
    if (errpipe[0] >= 0) {
        close(errpipe[0]);
        close(errpipe[1]);
    }
    return MLXCTL_EXIT_FAILURE;
}

/* ---- the loop ---- */

static void handle_signals(struct launcher *l) {
    struct signalfd_siginfo si;
    while (read(l->sigfd, &si, sizeof si) == (ssize_t) sizeof si) {
        if (si.ssi_signo == SIGCHLD)
            reap(l);
        else
            signal_all(l, (int) si.ssi_signo);
    }
}

static uint64_t earliest(uint64_t a, uint64_t b) {
    return a == 0 ? b : b == 0 ? a : a < b ? a : b;
}

// Acts on the deadlines that passed.
static void check_deadlines(struct launcher *l, uint64_t now) {
    if (l->timeout_at && now >= l->timeout_at) {
        l->timeout_at = 0;
        if (l->phase == PHASE_RUN) {
            fprintf(stderr, "mlxctl: the job did not finish within %g s (--timeout); stopping it\n",
                    l->o->timeout_ms / 1000.0);
            l->timed_out = true;
            stop(l);
        }
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

static void run_loop(struct launcher *l) {
    struct pollfd *pfds = calloc((size_t) l->o->n * 2 + 1, sizeof *pfds);
    int *owner = calloc((size_t) l->o->n * 2 + 1, sizeof *owner);
    if (!pfds || !owner) {
        // Without room to poll the pipes, still see the ranks through.
        free(pfds);
        free(owner);
        pfds = NULL;
        owner = NULL;
        for (int i = 0; i < l->o->n; i++)
            for (int k = 0; k < 2; k++)
                stream_close(l, i, &l->ranks[i].streams[k]);
    }
    struct pollfd only_sig;

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

        int n = 0;
        struct pollfd *p = pfds ? pfds : &only_sig;
        p[n++] = (struct pollfd) { .fd = l->sigfd, .events = POLLIN };
        for (int i = 0; pfds && i < l->o->n; i++)
            for (int k = 0; k < 2; k++)
                if (l->ranks[i].streams[k].fd >= 0) {
                    owner[n] = i * 2 + k;
                    p[n++] = (struct pollfd) { .fd = l->ranks[i].streams[k].fd, .events = POLLIN };
                }
        uint64_t next = earliest(earliest(l->timeout_at, l->kill_at), l->give_up_at);
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
        for (int m = 1; m < n; m++)
            if (p[m].revents) {
                int i = owner[m] / 2, k = owner[m] % 2;
                stream_read(l, i, &l->ranks[i].streams[k]);
            }
    }
    for (int i = 0; i < l->o->n; i++)
        for (int k = 0; k < 2; k++)
            stream_close(l, i, &l->ranks[i].streams[k]);
    free(pfds);
    free(owner);
}

static int setup_signals(struct launcher *l) {
    struct sigaction ign = { .sa_handler = SIG_IGN };
    sigemptyset(&l->blocked);
    sigaddset(&l->blocked, SIGCHLD);
    for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++)
        sigaddset(&l->blocked, forwarded[i]);
    if (sigprocmask(SIG_BLOCK, &l->blocked, &l->oldmask) < 0)
        return -errno;
    l->sigfd = signalfd(-1, &l->blocked, SFD_CLOEXEC | SFD_NONBLOCK);
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

int launch_run(const struct launch_opts *o) {
    struct launcher l = { .o = o, .sigfd = -1 };
    char size[16];
    int r;

    ensure_std_fds();
    raise_fd_limit(&l);

    if (o->job)
        snprintf(l.job, sizeof l.job, "%s", o->job);
    else
        make_job_id(l.job, sizeof l.job);
    l.ranks = calloc((size_t) o->n, sizeof *l.ranks);
    if (!l.ranks) {
        fprintf(stderr, "mlxctl: out of memory\n");
        return MLXCTL_EXIT_FAILURE;
    }
    for (int i = 0; i < o->n; i++)
        for (int k = 0; k < 2; k++)
            l.ranks[i].streams[k].fd = -1;
    warn_unreachable(o);

    snprintf(size, sizeof size, "%d", o->n);
    if (setenv("MLXD_JOB", l.job, 1) < 0 || setenv("MLXD_SIZE", size, 1) < 0) {
        fprintf(stderr, "mlxctl: cannot set the ranks' environment: %s\n", strerror(errno));
        free(l.ranks);
        return MLXCTL_EXIT_FAILURE;
    }
    r = setup_signals(&l);
    if (r < 0) {
        fprintf(stderr, "mlxctl: cannot set up signal handling: %s\n", strerror(-r));
        free(l.ranks);
        return MLXCTL_EXIT_FAILURE;
    }
    // What the ranks leave behind is reparented to mlxctl and reaped here.
    prctl(PR_SET_CHILD_SUBREAPER, 1);

    bool stdin_to_rank0 = !isatty(0);
    int launch_status = 0;
    for (int i = 0; i < o->n && launch_status == 0; i++)
        launch_status = spawn(&l, i, stdin_to_rank0);
    if (launch_status != 0) {
        // Stop what started; a rank whose exec failed is reaped in the loop.
        l.failed = true;
        l.exit_status = launch_status;
        stop(&l);
    } else if (o->timeout_ms > 0)
        l.timeout_at = wire_now_us() + (uint64_t) o->timeout_ms * 1000;

    run_loop(&l);
    // Anything still running at this point ignored SIGKILL's reach (it left
    // its process group); it is not ours to wait for any longer.
    reap(&l);
    restore_signals(&l);
    prctl(PR_SET_CHILD_SUBREAPER, 0);

    for (int i = 0; i < o->n; i++)
        for (int k = 0; k < 2; k++)
            free(l.ranks[i].streams[k].buf);
    free(l.ranks);
    if (l.nofile_raised)
        setrlimit(RLIMIT_NOFILE, &l.old_nofile);
    if (l.timed_out)
        return MLXCTL_EXIT_FAILURE;
    return l.failed ? l.exit_status : MLXCTL_EXIT_OK;
}
