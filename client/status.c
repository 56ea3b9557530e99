/* `mlxctl status` and `mlxctl wait`: one request to the daemon over the
 * library's connection (libmlxd_conn.c), its reply checked before use, and the StatusReply printed
 * (status_print.c), once or, with --watch, redrawn in place until Ctrl-C.
 * Whatever the daemon sends, mlxctl reports it and never crashes: frame
 * sizes are checked, decoding is bounded by the frame, Reply.code is
 * honoured. */
#include "mlxctl.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "libmlxd_impl.h"
#include "wire.h"

// Backoff of `mlxctl wait` between attempts, and how long one attempt waits
// for its Ping to be answered.
#define WAIT_BACKOFF_MIN_MS 10
#define WAIT_BACKOFF_MAX_MS 200
#define WAIT_ATTEMPT_MS 1000

// --watch: set by SIGINT / SIGTERM, which end the watch (exit status 0).
static volatile sig_atomic_t got_stop;

/* ---- talking to the daemon ---- */

// The --watch interrupt check: the library's wait ends once a signal came.
static bool stop_requested(void *arg) {
    (void) arg;
    return got_stop;
}

// An -errno for why the library's connection c failed.
static int fault_errno(const struct conn *c) {
    int e;
    switch (conn_fault(c, &e)) {
    case CONN_FAULT_SILENT:
        return -ETIMEDOUT;
    case CONN_FAULT_CLOSED:
        return -ECONNRESET;
    case CONN_FAULT_TOO_LARGE:
        return -EMSGSIZE;
    case CONN_FAULT_GARBLED:
        return -EBADMSG;
    case CONN_FAULT_INTERRUPTED:
        return -EINTR;
    case CONN_FAULT_IO:
        return e > 0 ? -e : -EIO;
    case CONN_FAULT_NONE:
        break;
    }
    return -EIO;
}

// Sends req on a new connection to endpoint (libmlxd's, libmlxd_conn.c) and
// waits until deadline_us for its reply. Returns 0 with the reply in *ret
// (free it with reply_done()), or -EINTR (--watch was stopped), -ETIMEDOUT,
// -ECONNRESET (the daemon closed the connection), -EMSGSIZE for a protobuf
// frame over the limit, -EBADMSG for one that does not decode, or another
// -errno.
static int request(const char *endpoint, Mlxd__Request *req, uint64_t deadline_us, struct reply *ret) {
    char err[LIB_ERR_MAX];
    struct conn *c;
    uint64_t id;
    int r = conn_open(endpoint, &c, err);
    if (r < 0)
        return r == MLXD_ENOMEM ? -ENOMEM : -EINVAL;
    r = conn_send(c, req, false, NULL, 0, &id, err);
    if (r == 0)
        r = conn_wait(c, id, deadline_us, ret, err);
    if (r < 0)
        r = fault_errno(c);
    conn_free(c);
    return r;
}

static bool is_absent(int r) {
    return r == -ENOENT || r == -ECONNREFUSED || r == -ENOTDIR;
}

// Prints why nothing could be reached at o's endpoint, as advice.
static void print_unreachable(FILE *err, const char *endpoint, bool given, int r, int timeout_ms) {
    if (r == -EACCES || r == -EPERM) {
        fprintf(err, "mlxctl: cannot connect to %s: %s; run as the daemon's user, as root, "
                "or as a member of the socket's group\n", endpoint, strerror(-r));
        return;
    }
    if (is_absent(r) || r == -ETIMEDOUT) {
        fprintf(err, "mlxctl: no mlxd answers at %s", endpoint);
        if (r == -ETIMEDOUT)
            fprintf(err, " (waited %g s)", timeout_ms / 1000.0);
        fputs(": ", err);
        mlxctl_print_start_hint(err, endpoint, given);
        fputc('\n', err);
        return;
    }
    fprintf(err, "mlxctl: cannot talk to mlxd at %s: %s\n", endpoint, strerror(-r));
}

static void print_bad_reply(FILE *err, const char *endpoint, int r) {
    if (r == -EMSGSIZE)
        fprintf(err, "mlxctl: mlxd at %s sent a reply larger than %u bytes; "
                "is it a different version than mlxctl %s?\n", endpoint, WIRE_MAX_REPLY_FRAME,
                MLXD_VERSION_STRING);
    else
        fprintf(err, "mlxctl: mlxd at %s sent a reply that does not decode; "
                "is it a different version than mlxctl %s?\n", endpoint, MLXD_VERSION_STRING);
}

// One status request and its answer printed to f. Returns the exit status;
// what went wrong is printed to err.
static int status_once(const struct status_opts *o, FILE *f, FILE *err) {
    bool ipc = wire_ipc_path(o->endpoint) != NULL;
    int r;

    if (ipc) {
        // Fails at once when nothing listens, rather than after the timeout.
        r = wire_probe_ipc(o->endpoint);
        if (r < 0) {
            print_unreachable(err, o->endpoint, o->endpoint_given, r, o->timeout_ms);
            return MLXCTL_EXIT_FAILURE;
        }
    }

    Mlxd__StatusRequest status = MLXD__STATUS_REQUEST__INIT;
    Mlxd__Request req = MLXD__REQUEST__INIT;
    status.world = o->world;
    // The daemon's deadline comes first, so that a world query that cannot
    // reach every daemon still answers before mlxctl gives up.
    req.timeout_ms = (uint32_t) (o->timeout_ms > 4 ? o->timeout_ms / 4 * 3 : o->timeout_ms);
    req.body_case = MLXD__REQUEST__BODY_STATUS;
    req.status = &status;

    struct reply rep = { 0 };
    r = request(o->endpoint, &req, wire_now_us() + (uint64_t) o->timeout_ms * 1000, &rep);
    if (r == -EINTR)
        return MLXCTL_EXIT_FAILURE;      // --watch was stopped
    if (r == -ETIMEDOUT && ipc) {
        fprintf(err, "mlxctl: mlxd at %s accepted the connection but did not answer within %g s; "
                "check its log (journalctl -u mlxd) or retry with a larger --timeout\n",
                o->endpoint, o->timeout_ms / 1000.0);
        return MLXCTL_EXIT_FAILURE;
    }
    if (r == -EMSGSIZE || r == -EBADMSG) {
        print_bad_reply(err, o->endpoint, r);
        return MLXCTL_EXIT_FAILURE;
    }
    if (r < 0) {
        print_unreachable(err, o->endpoint, o->endpoint_given, r, o->timeout_ms);
        return MLXCTL_EXIT_FAILURE;
    }

    const Mlxd__Reply *reply = rep.pb;
    int exit_status = MLXCTL_EXIT_FAILURE;
    if (reply->code != 0) {
        char *msg = status_term_clean(reply->message && *reply->message ? reply->message : "no detail given");
        fprintf(err, "mlxctl: mlxd at %s refused the status request: %s: %s\n", o->endpoint,
                wire_error_name(reply->code), msg ? msg : "?");
        free(msg);
    } else if (reply->body_case != MLXD__REPLY__BODY_STATUS || !reply->status) {
        fprintf(err, "mlxctl: mlxd at %s answered without a status; "
                "is it a different version than mlxctl %s?\n", o->endpoint, MLXD_VERSION_STRING);
    } else {
        // A partial answer (some daemons of the world were silent) says so.
        if (reply->message && *reply->message) {
            char *msg = status_term_clean(reply->message);
            fprintf(err, "mlxctl: warning: %s\n", msg ? msg : "?");
            free(msg);
        }
        if (o->json)
            status_print_json(f, reply->status);
        else
            status_print_text(f, reply->status, o->endpoint);
        exit_status = MLXCTL_EXIT_OK;
    }
    reply_done(&rep);
    return exit_status;
}

static void on_stop(int sig) {
    got_stop = 1;
}

// Writes a frame that replaces the previous one in place, as watch(1) does:
// cursor home, each line cleared to its end, the rest of the screen cleared.
// On something that is not a terminal the frames just follow each other.
static void draw_frame(const char *text, size_t len, bool tty) {
    if (!tty) {
        fwrite(text, 1, len, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        return;
    }
    fputs("\033[H", stdout);
    for (const char *p = text, *end = text + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t) (end - p));
        size_t n = nl ? (size_t) (nl - p) : (size_t) (end - p);
        fwrite(p, 1, n, stdout);
        fputs("\033[K\n", stdout);
        p += n + (nl ? 1 : 0);
    }
    fputs("\033[J", stdout);
    fflush(stdout);
}

// --watch: a status every o->watch_ms, each frame headed like watch(1)'s,
// until SIGINT or SIGTERM; a daemon that does not answer shows as such and
// is asked again. Exits 0 when stopped.
static int status_watch(const struct status_opts *o) {
    struct sigaction sa = { .sa_handler = on_stop };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    mlxd_set_interrupt(stop_requested, NULL);
    bool tty = isatty(STDOUT_FILENO);
    if (tty)
        fputs("\033[2J", stdout);       // a clean screen once; frames then overwrite it
    while (!got_stop) {
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        if (!f) {
            fprintf(stderr, "mlxctl: out of memory\n");
            return MLXCTL_EXIT_FAILURE;
        }
        // watch(1)'s header: what runs on the left, host and time on the right.
        char host[64] = "", when[32] = "", left[64], right[128];
        time_t now = time(NULL);
        struct tm tm;
        gethostname(host, sizeof host - 1);
        if (localtime_r(&now, &tm))
            strftime(when, sizeof when, "%H:%M:%S", &tm);
        snprintf(left, sizeof left, "Every %.1fs: mlxctl status%s", o->watch_ms / 1000.0, o->world ? " --world" : "");
        snprintf(right, sizeof right, "%s: %s", host, when);
        int pad = 80 - (int) strlen(left) - (int) strlen(right);
        fprintf(f, "%s%*s%s\n\n", left, pad > 1 ? pad : 1, "", right);
        // Errors go into the frame, not under it.
        status_once(o, f, f);
        if (fclose(f) != 0 || !text) {
            free(text);
            fprintf(stderr, "mlxctl: out of memory\n");
            return MLXCTL_EXIT_FAILURE;
        }
        if (!got_stop)
            draw_frame(text, len, tty);
        free(text);
        // Sleeps until the next frame; a signal ends the sleep at once.
        uint64_t until = wire_now_us() + (uint64_t) o->watch_ms * 1000;
        for (uint64_t t; !got_stop && (t = wire_now_us()) < until;)
            poll(NULL, 0, (int) ((until - t + 999) / 1000));
    }
    if (ferror(stdout))
        return MLXCTL_EXIT_FAILURE;
    return MLXCTL_EXIT_OK;
}

int status_run(const struct status_opts *o) {
    if (o->watch_ms > 0)
        return status_watch(o);
    int r = status_once(o, stdout, stderr);
    if (r == MLXCTL_EXIT_OK && (fflush(stdout) != 0 || ferror(stdout))) {
        fprintf(stderr, "mlxctl: cannot write the status: %s\n", strerror(errno));
        return MLXCTL_EXIT_FAILURE;
    }
    return r;
}

int wait_run(const struct wait_opts *o) {
    uint64_t deadline = wire_now_us() + (uint64_t) o->timeout_ms * 1000;
    bool ipc = wire_ipc_path(o->endpoint) != NULL;
    int backoff_ms = WAIT_BACKOFF_MIN_MS;
    // The failure the final message explains: "no daemon" unless something
    // more telling happened (permission denied, a reply that is garbage).
    int verdict = -ETIMEDOUT;

    for (;;) {
        uint64_t now = wire_now_us();
        if (now >= deadline)
            break;
        int r = ipc ? wire_probe_ipc(o->endpoint) : 0;
        if (r >= 0) {
            Mlxd__Ping ping = MLXD__PING__INIT;
            Mlxd__Request req = MLXD__REQUEST__INIT;
            struct reply rep = { 0 };
            uint64_t until = now + WAIT_ATTEMPT_MS * 1000;
            req.body_case = MLXD__REQUEST__BODY_PING;
            req.ping = &ping;
            r = request(o->endpoint, &req, until < deadline ? until : deadline, &rep);
            if (r >= 0) {
                int code = rep.pb->code;
                reply_done(&rep);
                if (code == 0)
                    return MLXCTL_EXIT_OK;
                r = -EAGAIN;        // starting or shutting down: ask again
            }
        }
        // A daemon that closes the connection is starting or stopping too.
        verdict = r == -ETIMEDOUT || r == -EAGAIN || r == -ECONNRESET || is_absent(r) ? -ETIMEDOUT : r;

        now = wire_now_us();
        if (now >= deadline)
            break;
        uint64_t left_ms = (deadline - now + 999) / 1000;
        poll(NULL, 0, (int) ((uint64_t) backoff_ms < left_ms ? (uint64_t) backoff_ms : left_ms));
        backoff_ms = backoff_ms * 2 > WAIT_BACKOFF_MAX_MS ? WAIT_BACKOFF_MAX_MS : backoff_ms * 2;
    }
    if (verdict == -EMSGSIZE || verdict == -EBADMSG)
        print_bad_reply(stderr, o->endpoint, verdict);
    else
        print_unreachable(stderr, o->endpoint, o->endpoint_given, verdict, o->timeout_ms);
    return MLXCTL_EXIT_FAILURE;
}
