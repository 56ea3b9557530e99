/* libmlxd's connection to its daemon: one ZeroMQ DEALER socket per group,
 * the framing of requests (protobuf frame + raw tensor frames), and waiting
 * for the one reply each request gets. Several requests may be in flight
 * (nonblocking ops): replies come in any order and are kept, by request id,
 * until their request is waited for. Everything here runs under the
 * member's lock, except tensor_released(), which ZeroMQ calls from its I/O
 * thread. The error strings every module of the library fills
 * (lib_errorf()) are formatted here too. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "libmlxd_impl.h"

// Counts the caller's tensors of one request that ZeroMQ still references.
// Shared with ZeroMQ's I/O thread, hence the lock; allocated apart from the
// conn so that it can outlive a conn whose tensor ZeroMQ never gave back
// (then it leaks rather than being written after free).
struct tracker {
    pthread_mutex_t lock;
    pthread_cond_t cond;                // signalled when inflight drops
    unsigned inflight;
};

// A request sent and not yet waited for, with its reply once it came.
struct outstanding {
    struct outstanding *next;           // in conn.out, oldest first
    uint64_t id;
    struct tracker *tracker;            // its zero-copy tensor; NULL without one
    struct reply rep;
    bool replied;
    bool via_zmq;                       // sent through the socket, not the ring
};

struct conn {
    void *sock;                         // DEALER; NULL once broken
    void *mon;                          // PAIR receiving sock's disconnect events
    struct outstanding *out;
    struct lib_ring *ring;              // NULL: ZeroMQ only
    uint64_t next_id;
    bool broken;
    enum conn_fault fault;              // what broke the last call that failed...
    int fault_errno;                    // ...and, for CONN_FAULT_IO, the errno
    char endpoint[LIB_ENDPOINT_MAX];
};

// Notes why a call on c fails (conn_fault()); returns code, like lib_errorf().
static int fault(struct conn *c, enum conn_fault f, int e, int code) {
    c->fault = f;
    c->fault_errno = e;
    return code;
}

enum conn_fault conn_fault(const struct conn *c, int *ret_errno) {
    if (ret_errno)
        *ret_errno = c->fault_errno;
    return c->fault;
}

int lib_errorf(char *err, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, LIB_ERR_MAX, fmt, ap);
    va_end(ap);
    return code;
}

uint64_t lib_deadline_us(int timeout_ms, uint64_t nbytes) {
    uint64_t ms = (uint64_t) (timeout_ms > 0 ? timeout_ms : WIRE_DEFAULT_TIMEOUT_MS) + LIB_GRACE_MS;
    return wire_now_us() + ms * 1000u + nbytes / (LIB_MIN_BYTES_PER_S / 1000000u);
}

static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;
static void *ctx;
static atomic_ulong monitor_seq;

static void ctx_create(void) {
    ctx = zmq_ctx_new();
    // The context lives as long as the process; never let its teardown block.
    if (ctx)
        zmq_ctx_set(ctx, ZMQ_BLOCKY, 0);
}

// One ZeroMQ context per process, made on first use from whichever thread.
static void *ctx_get(void) {
    pthread_once(&ctx_once, ctx_create);
    return ctx;
}

static struct tracker *tracker_new(void) {
    struct tracker *t = calloc(1, sizeof *t);
    pthread_condattr_t attr;
    if (!t)
        return NULL;
    pthread_mutex_init(&t->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cond, &attr);
    pthread_condattr_destroy(&attr);
    return t;
}

static void tracker_free(struct tracker *t) {
    if (!t)
        return;
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

// ZeroMQ's free function for a caller's tensor: it does not free anything,
// it tells the waiting thread that ZeroMQ no longer reads the buffer.
static void tensor_released(void *data, void *hint) {
    struct tracker *t = hint;
    (void) data;
    pthread_mutex_lock(&t->lock);
    t->inflight--;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

// Waits until ZeroMQ holds none of the caller's tensors, or deadline_us.
static bool tracker_wait(struct tracker *t, uint64_t deadline_us) {
    struct timespec ts = { .tv_sec = (time_t) (deadline_us / 1000000u),
                           .tv_nsec = (long) (deadline_us % 1000000u) * 1000 };
    bool idle;
    pthread_mutex_lock(&t->lock);
    while (t->inflight > 0)
        if (pthread_cond_timedwait(&t->cond, &t->lock, &ts) == ETIMEDOUT)
            break;
    idle = t->inflight == 0;
    pthread_mutex_unlock(&t->lock);
    return idle;
}

static void close_sockets(struct conn *c) {
    if (c->sock) {
        int linger = 0;
        // Nothing we still queue matters once we close: drop it, which also
        // gives the caller's tensor back at once.
        zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof linger);
        zmq_socket_monitor(c->sock, NULL, 0);
        zmq_close(c->sock);
        c->sock = NULL;
    }
    if (c->mon) {
        zmq_close(c->mon);
        c->mon = NULL;
    }
}

// Waits (until deadline_us) for ZeroMQ to let go of the tensor of o, and
// frees its tracker; one ZeroMQ keeps is leaked rather than freed. False
// when ZeroMQ kept it.
static bool release_tensor(struct outstanding *o, uint64_t deadline_us) {
    if (!o->tracker)
        return true;
    bool idle = tracker_wait(o->tracker, deadline_us);
    if (idle)
        tracker_free(o->tracker);
    o->tracker = NULL;
    return idle;
}

// Makes the connection unusable after silence or a disconnect. Closing the
// socket drops any request still queued, so that ZeroMQ lets go of the
// callers' tensors before their ops return.
void conn_break(struct conn *c) {
    c->broken = true;
    close_sockets(c);
    uint64_t deadline = wire_now_us() + (uint64_t) LIB_GRACE_MS * 1000u;
    for (struct outstanding *o = c->out; o; o = o->next)
        release_tensor(o, deadline);
}

static struct outstanding *find_outstanding(struct conn *c, uint64_t id) {
    for (struct outstanding *o = c->out; o; o = o->next)
        if (o->id == id)
            return o;
    return NULL;
}

// Forgets o (its reply, if any, is the caller's now or freed).
static void drop_outstanding(struct conn *c, struct outstanding *o) {
    for (struct outstanding **p = &c->out; *p; p = &(*p)->next)
        if (*p == o) {
            *p = o->next;
            break;
        }
    release_tensor(o, wire_now_us() + (uint64_t) LIB_GRACE_MS * 1000u);
    reply_done(&o->rep);
    free(o);
}

int conn_open(const char *endpoint, struct conn **ret_conn, char *err) {
    void *z = ctx_get();
    if (!z)
        return lib_errorf(err, MLXD_ENOMEM, "cannot create a ZeroMQ context: %s",
                          zmq_strerror(zmq_errno()));
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        return lib_errorf(err, MLXD_ENOMEM, "out of memory");
    c->next_id = 1;
    snprintf(c->endpoint, sizeof c->endpoint, "%s", endpoint);
    c->sock = zmq_socket(z, ZMQ_DEALER);
    c->mon = zmq_socket(z, ZMQ_PAIR);
    if (!c->sock || !c->mon) {
        int r = lib_errorf(err, MLXD_ENOMEM, "cannot create a ZeroMQ socket: %s",
                           zmq_strerror(zmq_errno()));
        conn_free(c);
        return r;
    }

    int linger = 100, sndtimeo = LIB_GRACE_MS;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof linger);
    // A send only blocks when the daemon stopped reading; do not hang there.
    zmq_setsockopt(c->sock, ZMQ_SNDTIMEO, &sndtimeo, sizeof sndtimeo);

    // A DEALER never says that its peer went away; the monitor does, so that
    // a daemon that exits or drops this session fails the pending request at
    // once instead of at its deadline.
    char mon_ep[64];
    snprintf(mon_ep, sizeof mon_ep, "inproc://mlxd-monitor-%lu", atomic_fetch_add(&monitor_seq, 1));
    if (zmq_socket_monitor(c->sock, mon_ep, ZMQ_EVENT_DISCONNECTED) < 0 ||
        zmq_connect(c->mon, mon_ep) < 0) {
        int r = lib_errorf(err, MLXD_EINTERNAL, "cannot monitor a ZeroMQ socket: %s",
                           zmq_strerror(zmq_errno()));
        conn_free(c);
        return r;
    }
    if (zmq_connect(c->sock, endpoint) < 0) {
        int r = lib_errorf(err, MLXD_EINVAL, "cannot connect to %s: %s", endpoint,
                           zmq_strerror(zmq_errno()));
        conn_free(c);
        return r;
    }
    *ret_conn = c;
    return 0;
}

void conn_free(struct conn *c) {
    if (!c)
        return;
    close_sockets(c);
    while (c->out)
        drop_outstanding(c, c->out);
    lib_ring_free(c->ring);
    free(c);
}

bool conn_is_broken(const struct conn *c) {
    return c->broken;
}

void reply_done(struct reply *r) {
    if (r->pb)
        mlxd__reply__free_unpacked(r->pb, NULL);
    r->pb = NULL;
    if (r->has_data)
        zmq_msg_close(&r->data);
    r->has_data = false;
}

// Hands what src holds over to dst (a zmq_msg_t must be moved, not copied).
static void reply_move(struct reply *dst, struct reply *src) {
    dst->pb = src->pb;
    dst->has_data = src->has_data;
    if (src->has_data) {
        zmq_msg_init(&dst->data);
        zmq_msg_move(&dst->data, &src->data);
        zmq_msg_close(&src->data);
    }
    src->pb = NULL;
    src->has_data = false;
}

static bool monitor_saw_disconnect(struct conn *c);

// Whether a request sent through the socket is still unanswered: the daemon
// may not have read it yet, so a later one must not overtake it by the ring.
static bool zmq_unanswered(const struct conn *c) {
    for (const struct outstanding *o = c->out; o; o = o->next)
        if (o->via_zmq && !o->replied)
            return true;
    return false;
}

// Waits, briefly sleeping, until done(c) or the daemon has been silent for
// LIB_GRACE_MS (it takes every request at once, so only a daemon that is
// gone or stuck makes this wait long). 0, or -ETIMEDOUT.
static int ring_wait_for(struct conn *c, bool (*done)(const struct conn *c)) {
    uint64_t deadline = wire_now_us() + (uint64_t) LIB_GRACE_MS * 1000u;
    while (!done(c)) {
        if (wire_now_us() >= deadline || monitor_saw_disconnect(c))
            return -ETIMEDOUT;
        zmq_pollitem_t item = { c->mon, 0, ZMQ_POLLIN, 0 };
        zmq_poll(&item, 1, 1);
    }
    return 0;
}

static bool ring_drained_c(const struct conn *c) {
    return lib_ring_drained(c->ring);
}

// Sends req (packed, n bytes) and its inline tensor through c's ring when
// it can go that way: 0 once written; -ENOTSUP when it must go through
// ZeroMQ (after the ring's requests were all taken, so that it cannot
// overtake them); -ETIMEDOUT when the daemon stopped taking them.
// The daemon matches a member's requests in the order it reads them: a
// request goes by the ring only while none sent by ZeroMQ is unanswered,
// and by ZeroMQ only once the ring is drained.
static int ring_send(struct conn *c, Mlxd__Request *req, size_t n, const void *data, size_t nbytes) {
    if (!c->ring)
        return -ENOTSUP;
    if (lib_ring_session_closed(c->ring))
        return -ECONNRESET;
    bool fits = req->body_case == MLXD__REQUEST__BODY_OP && nbytes <= LIB_RING_INLINE_MAX;
    if (fits && lib_ring_usable(c->ring) && !zmq_unanswered(c)) {
        uint8_t small[1024];
        uint8_t *pb = n <= sizeof small ? small : malloc(n);
        if (pb) {
            protobuf_c_message_pack(&req->base, pb);
            uint64_t deadline = wire_now_us() + (uint64_t) LIB_GRACE_MS * 1000u;
            int r;
            // Full: the daemon takes what is there at once, room comes soon.
            while ((r = lib_ring_send(c->ring, pb, n, data, nbytes)) == -EAGAIN && wire_now_us() < deadline &&
                   !monitor_saw_disconnect(c)) {
                zmq_pollitem_t item = { c->mon, 0, ZMQ_POLLIN, 0 };
                zmq_poll(&item, 1, 1);
            }
            if (pb != small)
                free(pb);
            if (r == 0)
                return 0;
            if (r == -EAGAIN)
                return -ETIMEDOUT;
        }
    }
    return ring_wait_for(c, ring_drained_c) < 0 ? -ETIMEDOUT : -ENOTSUP;
}

void conn_ring_start(struct conn *c, uint64_t group, int rank) {
    char err[LIB_ERR_MAX];
    if (!c->ring && lib_ring_open(c->endpoint, group, rank, &c->ring, err) < 0)
        c->ring = NULL;
}

int conn_send(struct conn *c, Mlxd__Request *req, bool tensor, const void *data, size_t nbytes,
              uint64_t *ret_id, char *err) {
    if (c->broken)
        return lib_errorf(err, MLXD_EUNAVAILABLE,
                          "the connection to mlxd at %s was lost earlier; free this group",
                          c->endpoint);
    uint64_t id = c->next_id++;
    req->id = id;

    size_t n = protobuf_c_message_get_packed_size(&req->base);
    if (n > WIRE_MAX_PB_FRAME)
        return lib_errorf(err, MLXD_EINVAL, "request of %zu bytes exceeds the limit of %u", n,
                          WIRE_MAX_PB_FRAME);
    struct outstanding *o = calloc(1, sizeof *o);
    if (!o || (tensor && nbytes > 0 && !(o->tracker = tracker_new()))) {
        free(o);
        return lib_errorf(err, MLXD_ENOMEM, "out of memory");
    }
    o->id = id;
    // Kept from here on, so that the tracker is waited for whatever happens.
    struct outstanding **tail = &c->out;
    while (*tail)
        tail = &(*tail)->next;
    *tail = o;
    static const char empty;
    int r = ring_send(c, req, n, tensor ? (data ? data : &empty) : NULL, tensor ? nbytes : 0);
    if (r == 0) {
        *ret_id = id;
        return 0;
    }
    o->via_zmq = true;
    if (r == -ECONNRESET || r == -ETIMEDOUT) {
        lib_errorf(err, MLXD_EUNAVAILABLE, "mlxd at %s %s", c->endpoint,
                   r == -ECONNRESET ? "closed this connection: its request ring broke the rules"
                                    : "stopped reading this connection's ring");
        conn_break(c);
        drop_outstanding(c, o);
        return MLXD_EUNAVAILABLE;
    }
    r = wire_send_pb(c->sock, &req->base, tensor ? ZMQ_SNDMORE : 0);
    if (r < 0)
        goto fail;
    if (tensor) {
        zmq_msg_t msg;
        if (nbytes == 0) {
            zmq_msg_init(&msg);
        } else {
            // Zero-copy: the caller's buffer goes out as it is. The tracker
            // learns when ZeroMQ is done with it; conn_wait() waits for that.
            pthread_mutex_lock(&o->tracker->lock);
            o->tracker->inflight++;
            pthread_mutex_unlock(&o->tracker->lock);
            if (zmq_msg_init_data(&msg, (void *) data, nbytes, tensor_released, o->tracker) < 0) {
                tensor_released(NULL, o->tracker);
                r = -ENOMEM;
                goto fail;
            }
        }
        if (zmq_msg_send(&msg, c->sock, 0) < 0) {
            r = -zmq_errno();
            zmq_msg_close(&msg);
            goto fail;
        }
    }
    *ret_id = id;
    return 0;

fail:
    // A half-sent multipart message would garble the stream: this socket is
    // done for.
    lib_errorf(err, MLXD_EUNAVAILABLE, "cannot send to mlxd at %s: %s", c->endpoint,
               zmq_strerror(-r));
    fault(c, CONN_FAULT_IO, -r, 0);
    conn_break(c);
    drop_outstanding(c, o);
    return r == -ENOMEM ? MLXD_ENOMEM : MLXD_EUNAVAILABLE;
}

static void drain_frames(void *sock, zmq_msg_t *last) {
    while (zmq_msg_more(last)) {
        zmq_msg_close(last);
        zmq_msg_init(last);
        if (zmq_msg_recv(last, sock, 0) < 0)
            break;
    }
}

// Receives one whole message if one is ready: 1 and *ret filled, 0 when none
// is, or a negative MLXD_E* code for a reply that breaks the protocol (the
// message is consumed either way).
static int recv_reply(struct conn *c, struct reply *ret, char *err) {
    zmq_msg_t pb;
    zmq_msg_init(&pb);
    if (zmq_msg_recv(&pb, c->sock, ZMQ_DONTWAIT) < 0) {
        int e = zmq_errno();
        zmq_msg_close(&pb);
        if (e == EAGAIN || e == EINTR)
            return 0;
        return fault(c, CONN_FAULT_IO, e,
                     lib_errorf(err, MLXD_EUNAVAILABLE, "cannot receive from mlxd at %s: %s", c->endpoint,
                                zmq_strerror(e)));
    }
    size_t len = zmq_msg_size(&pb);
    if (len > WIRE_MAX_REPLY_FRAME) {
        drain_frames(c->sock, &pb);
        zmq_msg_close(&pb);
        return fault(c, CONN_FAULT_TOO_LARGE, 0,
                     lib_errorf(err, MLXD_EPROTO, "mlxd at %s sent a reply frame of %zu bytes (limit %u)",
                                c->endpoint, len, WIRE_MAX_REPLY_FRAME));
    }
    Mlxd__Reply *m = mlxd__reply__unpack(NULL, len, zmq_msg_data(&pb));
    if (!m) {
        drain_frames(c->sock, &pb);
        zmq_msg_close(&pb);
        return fault(c, CONN_FAULT_GARBLED, 0,
                     lib_errorf(err, MLXD_EPROTO, "mlxd at %s sent a reply that does not decode", c->endpoint));
    }

    struct reply r = { .pb = m };
    size_t extra = 0;
    // Parts of a multipart message arrive together: once the first is here,
    // the rest can be read without waiting.
    bool more = zmq_msg_more(&pb);
    zmq_msg_close(&pb);
    while (more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, c->sock, 0) < 0) {
            zmq_msg_close(&part);
            break;
        }
        more = zmq_msg_more(&part);
        if (++extra == 1) {
            zmq_msg_init(&r.data);
            zmq_msg_move(&r.data, &part);
            r.has_data = true;
        }
        zmq_msg_close(&part);
    }
    if (extra > 1) {
        reply_done(&r);
        return fault(c, CONN_FAULT_GARBLED, 0,
                     lib_errorf(err, MLXD_EPROTO, "mlxd at %s sent a reply with %zu raw frames", c->endpoint,
                                extra));
    }
    reply_move(ret, &r);
    return 1;
}

// Takes every reply that has arrived and keeps each with its request. A
// reply with id 0 answers a request the daemon could not decode: the
// oldest one without a reply. Replies to requests given up on are dropped.
// Returns 0, or a negative MLXD_E* code for a socket that failed or a reply
// that breaks the protocol.
static void keep_reply(struct conn *c, struct reply *r) {
    struct outstanding *o = find_outstanding(c, r->pb->id);
    if (!o && r->pb->id == 0 && r->pb->code < 0)
        for (o = c->out; o && o->replied; o = o->next)
            ;
    if (o && !o->replied) {
        reply_move(&o->rep, r);
        o->replied = true;
    } else {
        reply_done(r);
    }
}

// The replies in the ring, as pump() for the socket's. A broken ring
// breaks the connection (the daemon is trusted not to: it is a bug).
static int pump_ring(struct conn *c, char *err) {
    for (;;) {
        struct reply r = { 0 };
        int k = c->ring ? lib_ring_take(c->ring, &r, err) : 0;
        if (k <= 0)
            return k == MLXD_EPROTO ? MLXD_EUNAVAILABLE : k;
        keep_reply(c, &r);
    }
}

static int pump(struct conn *c, char *err) {
    int k = pump_ring(c, err);
    if (k < 0)
        return k;
    for (;;) {
        struct reply r = { 0 };
        k = recv_reply(c, &r, err);
        if (k <= 0)
            return k;
        keep_reply(c, &r);
    }
}

static bool monitor_saw_disconnect(struct conn *c) {
    bool seen = false;
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return seen;
        }
        // An event is two frames: 16-bit event and 32-bit value, then the
        // endpoint. We subscribed to disconnects only.
        if (zmq_msg_size(&m) >= 2) {
            uint16_t ev;
            memcpy(&ev, zmq_msg_data(&m), sizeof ev);
            seen |= ev == ZMQ_EVENT_DISCONNECTED;
        }
        drain_frames(c->mon, &m);
        zmq_msg_close(&m);
    }
}

// Reads what the socket has (replies, the monitor's news) without waiting.
// Returns 0, or a negative MLXD_E* code once the connection is unusable
// (then broken).
static int take_news(struct conn *c, char *err) {
    int r = pump(c, err);
    if (r < 0) {
        if (r == MLXD_EUNAVAILABLE)
            conn_break(c);
        return r;
    }
    if (monitor_saw_disconnect(c)) {
        // Its last replies may have arrived just before the event.
        pump(c, err);
        conn_break(c);
        return fault(c, CONN_FAULT_CLOSED, 0,
                     lib_errorf(err, MLXD_EUNAVAILABLE,
                                "mlxd at %s closed the connection (it exited or dropped this client)", c->endpoint));
    }
    return 0;
}

// The reply of o, once it came: waits until ZeroMQ has let go of the
// request's tensor (it does right after the daemon read it all), then
// hands the reply over and forgets o.
static int finish(struct conn *c, struct outstanding *o, struct reply *ret, char *err) {
    if (!release_tensor(o, wire_now_us() + (uint64_t) LIB_GRACE_MS * 1000u)) {
        conn_break(c);
        drop_outstanding(c, o);
        return lib_errorf(err, MLXD_EINTERNAL, "ZeroMQ kept a request's tensor after the reply");
    }
    reply_move(ret, &o->rep);
    drop_outstanding(c, o);
    return 0;
}

int conn_wait(struct conn *c, uint64_t id, uint64_t deadline_us, struct reply *ret, char *err) {
    uint64_t start = wire_now_us();
    struct outstanding *o = find_outstanding(c, id);
    if (!o)
        return lib_errorf(err, MLXD_EINTERNAL, "request %llu is not in flight on this connection",
                          (unsigned long long) id);

    for (;;) {
        if (o->replied)
            return finish(c, o, ret, err);
        int r = c->broken ? lib_errorf(err, MLXD_EUNAVAILABLE,
                                       "the connection to mlxd at %s was lost; free this group", c->endpoint)
                          : take_news(c, err);
        if (o->replied)
            return finish(c, o, ret, err);
        if (r < 0) {
            drop_outstanding(c, o);
            return r;
        }

        // A ring's reply is near: spin a little before sleeping (and then
        // ask the daemon to ring).
        int bell = c->ring ? lib_ring_fd(c->ring) : -1;
        if (c->ring && lib_ring_spin_us() && lib_ring_spin(c->ring, wire_now_us() + lib_ring_spin_us()))
            continue;
        if (bell >= 0 && !lib_ring_sleep(c->ring))
            continue;
        zmq_pollitem_t items[] = { { c->sock, 0, ZMQ_POLLIN, 0 }, { c->mon, 0, ZMQ_POLLIN, 0 },
                                   { NULL, bell, ZMQ_POLLIN, 0 } };
        uint64_t now = wire_now_us();
        if (now >= deadline_us) {
            r = lib_errorf(err, MLXD_EUNAVAILABLE, "mlxd at %s did not answer within %llu ms",
                           c->endpoint, (unsigned long long) ((now - start) / 1000u));
            fault(c, CONN_FAULT_SILENT, 0, 0);
            conn_break(c);
            drop_outstanding(c, o);
            return r;
        }
        long wait_ms = (long) ((deadline_us - now + 999u) / 1000u);
        int n = zmq_poll(items, bell >= 0 ? 3 : 2, lib_wait_slice(wait_ms));
        if (bell >= 0)
            lib_ring_wake(c->ring);
        if (n < 0 && zmq_errno() != EINTR) {
            fault(c, CONN_FAULT_IO, zmq_errno(), 0);
            r = lib_errorf(err, MLXD_EUNAVAILABLE, "cannot wait for mlxd at %s: %s", c->endpoint,
                           zmq_strerror(zmq_errno()));
            conn_break(c);
            drop_outstanding(c, o);
            return r;
        }
        if (n <= 0 && lib_interrupted()) {
            fault(c, CONN_FAULT_INTERRUPTED, 0, 0);
            drop_outstanding(c, o);
            return conn_interrupted(c, err);
        }
    }
}

bool conn_ready(struct conn *c, uint64_t id) {
    struct outstanding *o = find_outstanding(c, id);
    char err[LIB_ERR_MAX];
    if (!o || o->replied || c->broken)
        return true;
    take_news(c, err);
    // A broken connection answers at once too (with its error).
    return o->replied || c->broken;
}

int conn_finish(struct conn *c, uint64_t id, uint64_t deadline_us, struct reply *ret, char *err) {
    struct reply rep;
    int r = conn_wait(c, id, deadline_us, &rep, err);
    if (r < 0)
        return r;
    if (rep.pb->code != 0) {
        int code = rep.pb->code > 0 ? MLXD_EPROTO : rep.pb->code;
        if (rep.pb->message && *rep.pb->message)
            lib_errorf(err, code, "%s", rep.pb->message);
        else
            lib_errorf(err, code, "mlxd answered %s", mlxd_strerror(code));
        reply_done(&rep);
        return code;
    }
    reply_move(ret, &rep);
    return 0;
}

int conn_brief(struct conn *c, Mlxd__Request *req, int ms, struct reply *ret, char *err) {
    uint64_t id;
    req->timeout_ms = (uint32_t) ms;
    int r = conn_send(c, req, false, NULL, 0, &id, err);
    return r < 0 ? r : conn_wait(c, id, wire_now_us() + (uint64_t) ms * 1000u, ret, err);
}

void conn_goodbye(struct conn *c, int ms) {
    Mlxd__Goodbye bye = MLXD__GOODBYE__INIT;
    Mlxd__Request req = MLXD__REQUEST__INIT;
    struct reply rep;
    char ignored[LIB_ERR_MAX];
    req.body_case = MLXD__REQUEST__BODY_GOODBYE;
    req.goodbye = &bye;
    if (conn_brief(c, &req, ms, &rep, ignored) == 0)
        reply_done(&rep);
}

int conn_issue(struct conn *c, Mlxd__Request *req, const struct call *call, uint64_t *ret_id,
               uint64_t *ret_deadline_us, char *err) {
    req->timeout_ms = (uint32_t) call->timeout_ms;
    int r = conn_send(c, req, call->tensor, call->data, call->nbytes, ret_id, err);
    if (r < 0)
        return r;
    *ret_deadline_us = lib_deadline_us(call->timeout_ms, (uint64_t) call->nbytes + call->reply_nbytes +
                                                             call->shm_nbytes);
    return 0;
}

int conn_call(struct conn *c, Mlxd__Request *req, const struct call *call, struct reply *ret,
              char *err) {
    uint64_t id, deadline;
    int r = conn_issue(c, req, call, &id, &deadline, err);
    return r < 0 ? r : conn_finish(c, id, deadline, ret, err);
}
