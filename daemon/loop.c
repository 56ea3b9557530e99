/* The event loop at the top of the daemon: polls the ZeroMQ front, the
 * signal pipe, the engine, the shared-memory side channel and every
 * session's process; reads each request, checks who sent it, validates and
 * dispatches it; routes the engine's events; enforces the deadlines of the
 * requests that wait. */
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "access.h"
#include "front.h"
#include "job.h"
#include "log.h"
#include "request.h"
#include "ringsvc.h"
#include "server.h"
#include "service.h"
#include "world.h"

// Raw frames one request may carry; a request with more is refused.
#define MAX_DATA_FRAMES 2
// Requests handled per wakeup before timers and pidfds get a turn.
#define MAX_BATCH 64

static volatile sig_atomic_t got_stop, got_hup;
static int signal_fd = -1;           // write end of the server's signal pipe

static void on_signal(int sig) {
    int saved = errno;
    if (sig == SIGHUP)
        got_hup = 1;
    else
        got_stop = 1;
    if (signal_fd >= 0) {
        char c = 0;
        ssize_t n = write(signal_fd, &c, 1);
        (void) n;                    // a full pipe already wakes the loop
    }
    errno = saved;
}

int loop_init_signals(struct server *s) {
    if (pipe2(s->loop.signal_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        return -errno;
    signal_fd = s->loop.signal_pipe[1];
    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    // mpirun aborts its job on SIGTERM but forwards SIGUSR2 to every daemon:
    // mlxd-world.service stops the world with it, gracefully.
    sigaction(SIGUSR2, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

void loop_fini_signals(struct server *s) {
    signal_fd = -1;
    for (int i = 0; i < 2; i++)
        if (s->loop.signal_pipe[i] >= 0)
            close(s->loop.signal_pipe[i]);
}

/* ---- requests ---- */

static void handle_op(struct server *s, struct session *se, const Mlxd__Request *req, zmq_msg_t *frames,
                      int nframes) {
    // Several requests may be in flight on a connection (nonblocking ops);
    // each member's are matched in the order it sent them.
    if (se->inflight >= s->cfg.max_inflight_per_client) {
        server_reply_error(s, &se->peer, req->id, MLXD_ENOMEM,
                           "too many requests in flight on this group (the daemon's limit is %u, "
                           "--max-inflight-per-client): wait for some first",
                           s->cfg.max_inflight_per_client);
        return;
    }
    struct pending *p = pending_new(s, PENDING_OP, req->id, req->timeout_ms);
    if (!p) {
        server_reply_error(s, &se->peer, req->id, MLXD_ENOMEM, "out of memory");
        return;
    }
    pending_track(se, p);
    request_fill_pending(req->op, p);
    // The one inline tensor, if any, moves into the pending request.
    const Mlxd__Tensor *in = req->op->input;
    if (in && in->frame > 0) {
        zmq_msg_move(&p->data, &frames[in->frame - 1]);
        p->has_data = true;
    }
    // Tensors in shared memory: only what this very process shared.
    const Mlxd__Tensor *out = req->op->output;
    int r = 0;
    if (in && in->segment)
        r = shm_resolve(s, se->peer.pid, in->segment, in->offset, p->nbytes, &p->in_seg, &p->in_ptr);
    if (r == 0 && out && out->segment) {
        wire_tensor_nbytes(out->dtype, out->n_shape, out->shape, &p->out_nbytes);
        p->out_segment = out->segment;
        p->out_offset = out->offset;
        r = shm_resolve(s, se->peer.pid, out->segment, out->offset, p->out_nbytes, &p->out_seg, &p->out_ptr);
    }
    if (r < 0) {
        bool is_in = in && in->segment && !p->in_seg;
        const Mlxd__Tensor *t = is_in ? in : out;
        if (r == -ERANGE)
            pending_fail(s, p, MLXD_EINVAL, "the %s (%llu bytes at offset %llu) runs past the end of shared-memory segment %u",
                         is_in ? "input" : "output", (unsigned long long) (is_in ? p->nbytes : p->out_nbytes),
                         (unsigned long long) t->offset, t->segment);
        else
            pending_fail(s, p, MLXD_EINVAL, "the %s names shared-memory segment %u, which this process has not shared",
                         is_in ? "input" : "output", t->segment);
        return;
    }
    se->ops++;
    op_submit(s, se, p);
}

static void handle_goodbye(struct server *s, struct session *se, const Mlxd__Request *req, const struct peer *p) {
    Mlxd__Reply r = MLXD__REPLY__INIT;
    r.id = req->id;
    if (se)
        session_close(s, se, MLXD_EPEER, "left the group");
    server_reply(s, p, &r, NULL, 0);
}

void loop_request(struct server *s, const struct peer *p, const Mlxd__Request *req, zmq_msg_t *frames,
                  int nframes) {
    struct session *se = session_find(s, p->rid, p->rid_len);
    char err[512];
    int code;

    if (s->loop.stopping && req->body_case != MLXD__REQUEST__BODY_STATUS && req->body_case != MLXD__REQUEST__BODY_PING) {
        server_reply_error(s, p, req->id, MLXD_EUNAVAILABLE, "mlxd is shutting down");
        return;
    }
    code = request_validate(req, frames, nframes, &s->cfg, err, sizeof err);
    if (code < 0) {
        server_reply_error(s, p, req->id, code, "%s", err);
        return;
    }
    switch (req->body_case) {
    case MLXD__REQUEST__BODY_PING: {
        Mlxd__Reply r = MLXD__REPLY__INIT;
        r.id = req->id;
        server_reply(s, p, &r, NULL, 0);
        break;
    }
    case MLXD__REQUEST__BODY_STATUS:
        status_request(s, p, req);
        break;
    case MLXD__REQUEST__BODY_HELLO:
        if (se) {
            server_reply_error(s, p, req->id, MLXD_EPROTO, "this connection already said hello (job %s)",
                               se->group ? se->group->job->id : "forming");
            break;
        }
        if (req->hello->attach_group)
            job_attach(s, p, req);
        else
            job_hello(s, p, req);
        break;
    case MLXD__REQUEST__BODY_OP:
        if (!se || !se->group)
            server_reply_error(s, p, req->id, MLXD_EPROTO,
                               se ? "the job has not formed yet on this connection" : "say hello first: no job on this connection");
        else
            handle_op(s, se, req, frames, nframes);
        break;
    case MLXD__REQUEST__BODY_GOODBYE:
        handle_goodbye(s, se, req, p);
        break;
    default:
        server_reply_error(s, p, req->id, MLXD_EPROTO, "unknown request type %d", (int) req->body_case);
        break;
    }
}

// Reads one whole message from the router and handles it. Returns false when
// there was none.
static bool read_one(struct server *s) {
    zmq_msg_t head, pb, frames[MAX_DATA_FRAMES];
    int nframes = 0, extra = 0;
    struct peer p = { 0 };

    zmq_msg_init(&head);
    if (zmq_msg_recv(&head, s->front.router, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&head);
        return false;
    }
    p.rid_len = zmq_msg_size(&head) <= sizeof p.rid ? zmq_msg_size(&head) : sizeof p.rid;
    memcpy(p.rid, zmq_msg_data(&head), p.rid_len);
    bool more = zmq_msg_more(&head);
    zmq_msg_close(&head);
    if (!more)
        return true;
    zmq_msg_init(&pb);
    if (zmq_msg_recv(&pb, s->front.router, 0) < 0) {
        zmq_msg_close(&pb);
        return true;
    }
    more = zmq_msg_more(&pb);
    while (more) {
        zmq_msg_t *f = nframes < MAX_DATA_FRAMES ? &frames[nframes] : &head;
        zmq_msg_init(f);
        if (zmq_msg_recv(f, s->front.router, 0) < 0) {
            zmq_msg_close(f);
            break;
        }
        more = zmq_msg_more(f);
        if (f == &head) {
            extra++;
            zmq_msg_close(f);
        } else {
            nframes++;
        }
    }

    char err[256];
    size_t len = zmq_msg_size(&pb);
    int code = access_check_address(s, zmq_msg_gets(&pb, "Peer-Address"), &p, err, sizeof err);
    if (code < 0) {
        server_reply_error(s, &p, 0, code, "%s", err);
    } else if (len > WIRE_MAX_PB_FRAME) {
        server_reply_error(s, &p, 0, MLXD_EPROTO, "request frame of %zu bytes exceeds the maximum of %u", len,
                           WIRE_MAX_PB_FRAME);
    } else if (extra > 0) {
        server_reply_error(s, &p, 0, MLXD_EPROTO, "request has %d data frames; at most %d are allowed",
                           nframes + extra, MAX_DATA_FRAMES);
    } else {
        Mlxd__Request *req = mlxd__request__unpack(NULL, len, zmq_msg_data(&pb));
        if (!req) {
            server_reply_error(s, &p, 0, MLXD_EPROTO, "malformed request: not a valid mlxd protobuf message");
        } else {
            loop_request(s, &p, req, frames, nframes);
            mlxd__request__free_unpacked(req, NULL);
        }
    }
    zmq_msg_close(&pb);
    for (int i = 0; i < nframes; i++)
        zmq_msg_close(&frames[i]);
    return true;
}

static int next_timeout_ms(struct server *s, uint64_t now) {
    uint64_t first = pending_next_deadline(s);
    uint64_t w = status_expire(s, now);
    if (w < first)
        first = w;
    w = service_tick(s, now);
    if (w < first)
        first = w;
    w = status_publish_metrics(s, now);
    if (w < first)
        first = w;
    if (first == UINT64_MAX)
        return -1;
    return first <= now ? 0 : (int) ((first - now + 999) / 1000);
}

static void drain_signals(struct server *s) {
    char buf[64];
    while (read(s->loop.signal_pipe[0], buf, sizeof buf) > 0)
        ;
    if (got_hup) {
        // Logs go to stderr (the journal keeps them) and options come from
        // the command line, so there is nothing to reopen; say where we are.
        got_hup = 0;
        log_notice("SIGHUP: serving %s; %u client(s), %u job(s); options change with a restart", s->cfg.endpoint,
                   s->sessions.n, s->n_jobs);
    }
    if (got_stop && !s->loop.stopping) {
        s->loop.stopping = true;
        service_stopping();
        log_notice("Stopping: failing %u session(s) with MLXD_EUNAVAILABLE", s->sessions.n);
    }
}

// The world cannot make progress: its engine has been stuck in one MPI call
// for the stall limit. Every request in flight gets its answer, then the
// daemon exits at once with status 3 (the engine cannot be joined, nor MPI
// finalized), so that mpirun ends the world and mlxd-world.service or
// whoever started it starts it again.
static void exit_wedged(struct server *s, const struct world_watch_event *ev) {
    char text[256];
    snprintf(text, sizeof text,
             "mlxd exits: the world cannot make progress (%s for %.1f s, more than --max-mpi-stall)", ev->why,
             (double) ev->stuck_ms / 1000);
    log_error("%s", text);
    pending_fail_all(s, MLXD_EUNAVAILABLE, text);
    // A moment for the replies to leave, and the socket file goes.
    struct timespec ts = { 0, 200 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    front_unlink(&s->front, s->cfg.endpoint);
    _exit(3);
}

static void watch_events(struct server *s) {
    struct world_watch_event ev;
    while (world_watch_read(s->world, &ev)) {
        switch (ev.type) {
        case WORLD_HOST_LOST:
            log_warning("Lost host %s (world rank %d): %s", world_host(s->world, ev.rank), ev.rank, ev.why);
            job_host_lost(s, ev.rank, ev.why);
            break;
        case WORLD_HOST_BACK:
            log_notice("Host %s (world rank %d) answers again", world_host(s->world, ev.rank), ev.rank);
            break;
        case WORLD_WEDGED:
            exit_wedged(s, &ev);
            break;
        }
    }
}

// Fixed poll items before the side channel's, the sessions' and the rings'
// descriptors.
enum { ITEM_ROUTER, ITEM_SIGNAL, ITEM_WORLD, ITEM_WATCH, ITEM_FIXED };

// What one turn of the loop polls: items[first_session, first_ring) are the
// sessions' pidfds, [first_ring, n) the rings' doorbells.
struct poll_set {
    zmq_pollitem_t *items;
    int *fds;                       // scratch for the modules' descriptors
    size_t cap, n, first_session, first_ring;
    bool any;                       // poll found something ready
};

static int poll_grow(struct poll_set *ps, size_t n) {
    if (n <= ps->cap)
        return 0;
    // fds only ever holds fewer than n descriptors: sized by n too, both
    // grow together.
    zmq_pollitem_t *ni = realloc(ps->items, n * sizeof *ni);
    if (ni)
        ps->items = ni;
    int *nf = ni ? realloc(ps->fds, n * sizeof *nf) : NULL;
    if (!nf)
        return -ENOMEM;
    ps->fds = nf;
    ps->cap = n;
    return 0;
}

static void poll_add(struct poll_set *ps, void *socket, int fd) {
    ps->items[ps->n++] = (zmq_pollitem_t) { .socket = socket, .fd = fd, .events = ZMQ_POLLIN };
}

static int poll_build(struct server *s, struct poll_set *ps) {
    unsigned n_shm = 1;
    struct shm_client *c;
    LIST_FOREACH(c, &s->shm.clients, link)
        n_shm++;
    if (poll_grow(ps, ITEM_FIXED + n_shm + 2 * s->sessions.n) < 0)
        return -ENOMEM;
    ps->n = 0;
    poll_add(ps, s->front.router, 0);
    poll_add(ps, NULL, s->loop.signal_pipe[0]);
    poll_add(ps, world_socket(s->world), 0);
    poll_add(ps, world_watch_socket(s->world), 0);
    size_t nf = shm_poll_fds(s, ps->fds, n_shm);
    for (size_t i = 0; i < nf; i++)
        poll_add(ps, NULL, ps->fds[i]);
    ps->first_session = ps->n;
    struct session *se;
    LIST_FOREACH(se, &s->sessions.list, link)
        poll_add(ps, NULL, se->pidfd);
    // Every ring belongs to a session: at most n_sessions of them.
    ps->first_ring = ps->n;
    nf = ring_poll_fds(s, ps->fds, s->sessions.n);
    for (size_t i = 0; i < nf; i++)
        poll_add(ps, NULL, ps->fds[i]);
    return 0;
}

static bool ready(const struct poll_set *ps, size_t i) {
    return ps->any && (ps->items[i].revents & (ZMQ_POLLIN | ZMQ_POLLERR));
}

// Handles what poll found ready, engine news first, then requests, then
// the side channel, the rings (whose requests are taken whether or not
// their doorbell rang) and the processes that exited.
static void poll_handle(struct server *s, const struct poll_set *ps) {
    if (ready(ps, ITEM_WATCH))
        watch_events(s);
    if (ready(ps, ITEM_WORLD))
        world_dispatch(s->world);
    if (ready(ps, ITEM_ROUTER))
        for (int i = 0; i < MAX_BATCH && read_one(s); i++)
            ring_turn(s);
    // Each descriptor is looked up again: handling one may have closed
    // another.
    for (size_t i = ITEM_FIXED; i < ps->first_session; i++)
        if (ready(ps, i))
            shm_ready(s, ps->items[i].fd);
    for (size_t i = ps->first_ring; i < ps->n; i++)
        if (ready(ps, i))
            ring_ready(s, ps->items[i].fd);
    ring_run(s);
    for (size_t i = ps->first_session; i < ps->first_ring; i++) {
        struct session *se = ready(ps, i) ? session_by_pidfd(s, ps->items[i].fd) : NULL;
        if (se)
            session_died(s, se);
    }
}

int loop_run(struct server *s) {
    struct poll_set ps = { 0 };
    int r = 0;
    while (!s->loop.stopping) {
        if (poll_build(s, &ps) < 0) {
            r = log_errno(LOG_ERR, -ENOMEM, "Out of memory in the event loop");
            break;
        }
        int timeout = ring_prepare(s) ? 0 : next_timeout_ms(s, wire_now_us());
        int n = zmq_poll(ps.items, (int) ps.n, timeout);
        ring_awake(s);
        if (n < 0 && zmq_errno() != EINTR) {
            r = log_errno(LOG_ERR, -zmq_errno(), "zmq_poll failed: %s", zmq_strerror(zmq_errno()));
            break;
        }
        status_sample(s, wire_now_us());
        drain_signals(s);
        if (s->loop.stopping)
            break;
        ps.any = n > 0;
        poll_handle(s, &ps);
        pending_expire(s, wire_now_us(), job_expired);
        service_status(s, wire_now_us());
    }
    free(ps.items);
    free(ps.fds);
    return r;
}
