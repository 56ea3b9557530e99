/* The daemon's side of the request/reply rings (ringsvc.h, proto/ring.h,
 * proto/PROTOCOL.md "The ring"). Runs on the loop thread only.
 *
 * Trust: the client can rewrite its ring at any moment. The daemon keeps
 * its own indices (the client's are only read, and bounded by ring_peek /
 * ring_put), copies each record out before decoding it, and validates the
 * copy exactly as a request from ZeroMQ. Tensors never stay in the ring
 * past the copy, so an op's memory is the daemon's own (or a counted
 * shared-memory segment) and outlives a client that dies. A ring that
 * breaks the rules closes its session with MLXD_EPROTO; the daemon goes on
 * serving the others. */
#include "ringsvc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "platform.h"
#include "reply.h"
#include "ring.h"
#include "server.h"

// Records taken from one ring per turn, so that one busy client does not
// starve the others.
#define RING_BATCH 64

struct ring {
    struct reply_transport transport;   // the session's replies (reply.h); first
    LIST_ENTRY(ring) link;          // in server.rings
    struct server *server;
    struct session *session;        // NULL once detached
    uint8_t *base;
    size_t len;
    struct wire_ring_hdr *hdr;
    struct ring_end req, rep;
    int fd;                         // our end of the doorbell
    bool bell_due;                  // replies were put this turn: ring before the loop sleeps
    bool dead;                      // detached: freed at the next ring_poll_fds()
};

// The loop thread's scratch for one protobuf, in or out.
static uint8_t pb_buf[WIRE_MAX_PB_FRAME];

static void ring_free(struct ring *rg) {
    LIST_REMOVE(rg, link);
    munmap(rg->base, rg->len);
    close(rg->fd);
    free(rg);
}

static void mark_dead(struct ring *rg, uint32_t why) {
    if (rg->dead)
        return;
    rg->dead = true;
    atomic_store(&rg->hdr->closed, why);
    if (rg->session) {
        rg->session->ring = NULL;
        rg->session->peer.transport = NULL;
    }
    rg->session = NULL;
}

static int ring_send(struct reply_transport *t, const struct peer *p, Mlxd__Reply *r, zmq_msg_t *frames,
                     int nframes);


// Maps memfd as a ring: 0 with the mapping and its area size, or an MLXD_E*.
static int map_ring(int memfd, uint8_t **ret_base, size_t *ret_len, uint32_t *ret_area, char *why, size_t wlen) {
    struct stat st;
    if (!platform_memory_cannot_shrink(memfd)) {
        snprintf(why, wlen, "a ring must be a memfd sealed with F_SEAL_SHRINK");
        return MLXD_EINVAL;
    }
    uint64_t max = WIRE_RING_HDR + 2ull * WIRE_RING_AREA_MAX;
    if (fstat(memfd, &st) < 0 || st.st_size < (off_t) (WIRE_RING_HDR + 2u * WIRE_RING_AREA_MIN) ||
        (uint64_t) st.st_size > max) {
        snprintf(why, wlen, "a ring's memfd must hold %u to %llu bytes", WIRE_RING_HDR + 2u * WIRE_RING_AREA_MIN,
                 (unsigned long long) max);
        return MLXD_EINVAL;
    }
    size_t len = (size_t) st.st_size;
    void *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (base == MAP_FAILED) {
        snprintf(why, wlen, "cannot map the ring: %s", strerror(errno));
        return MLXD_ENOMEM;
    }
    uint32_t area = ring_check_header(base, len);
    if (!area) {
        munmap(base, len);
        snprintf(why, wlen, "the ring's header is not one this mlxd reads (magic, version or area size)");
        return MLXD_EINVAL;
    }
    *ret_base = base;
    *ret_len = len;
    *ret_area = area;
    return 0;
}

int ring_attach(struct server *s, pid_t pid, uint64_t group, int rank, int memfd, int sock, char *why,
                size_t len) {
    struct session *se = s->ring_hooks.find(s, pid, group, rank);
    int type = 0;
    socklen_t tl = sizeof type;
    if (!se) {
        snprintf(why, len, "pid %d has no connection to group " WIRE_ID_FMT " as rank %d", (int) pid, group, rank);
        return MLXD_EINVAL;
    }
    if (se->ring) {
        snprintf(why, len, "this connection has a ring already");
        return MLXD_EINVAL;
    }
    if (getsockopt(sock, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_SEQPACKET) {
        snprintf(why, len, "a ring's doorbell must be a SOCK_SEQPACKET socket");
        return MLXD_EINVAL;
    }
    struct ring *rg = calloc(1, sizeof *rg);
    if (!rg) {
        snprintf(why, len, "out of memory");
        return MLXD_ENOMEM;
    }
    uint32_t area;
    int r = map_ring(memfd, &rg->base, &rg->len, &area, why, len);
    if (r < 0) {
        free(rg);
        return r;
    }
    rg->fd = fcntl(sock, F_DUPFD_CLOEXEC, 3);
    if (rg->fd < 0) {
        munmap(rg->base, rg->len);
        free(rg);
        snprintf(why, len, "cannot keep the doorbell: %s", strerror(errno));
        return MLXD_ENOMEM;
    }
    rg->hdr = (struct wire_ring_hdr *) rg->base;
    ring_ends(rg->base, area, false, &rg->req, &rg->rep);
    rg->session = se;
    rg->server = s;
    rg->transport.send = ring_send;
    se->ring = rg;
    se->peer.transport = &rg->transport;
    LIST_INSERT_HEAD(&s->rings, rg, link);
    log_debug("Pid %d (group " WIRE_ID_FMT " rank %d) talks over a ring of 2 x %u bytes", (int) pid, group, rank,
              area);
    return 0;
}

unsigned ring_count(const struct server *s) {
    unsigned n = 0;
    struct ring *rg;
    LIST_FOREACH(rg, &s->rings, link)
        n += !rg->dead;
    return n;
}

size_t ring_poll_fds(struct server *s, int *fds, size_t max) {
    struct ring *rg, *next;
    size_t n = 0;
    for (rg = LIST_FIRST(&s->rings); rg; rg = next) {
        next = LIST_NEXT(rg, link);
        if (rg->dead)
            ring_free(rg);
        else if (n < max)
            fds[n++] = rg->fd;
    }
    return n;
}

// Rings the client of rg if it got replies since its last bell and sleeps.
static void ring_bell(struct ring *rg) {
    if (!rg->bell_due)
        return;
    rg->bell_due = false;
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&rg->hdr->client_sleeping, memory_order_relaxed))
        (void) send(rg->fd, "", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
}

bool ring_prepare(struct server *s) {
    struct ring *rg;
    bool pending = false;
    LIST_FOREACH(rg, &s->rings, link) {
        if (rg->dead)
            continue;
        ring_bell(rg);
        // Dekker's handshake with the client: flag, fence, look. The client
        // publishes, fences, and rings when it sees the flag.
        atomic_store(&rg->hdr->daemon_sleeping, 1);
        atomic_thread_fence(memory_order_seq_cst);
        pending |= ring_pending(&rg->req);
    }
    return pending;
}

void ring_awake(struct server *s) {
    struct ring *rg;
    LIST_FOREACH(rg, &s->rings, link)
        if (!rg->dead)
            atomic_store_explicit(&rg->hdr->daemon_sleeping, 0, memory_order_relaxed);
}

// The client broke its ring: its session closes with MLXD_EPROTO (its
// requests in flight are answered through ZeroMQ).
static void ring_broken(struct server *s, struct ring *rg, const char *what) {
    struct session *se = rg->session;
    char why[256];
    snprintf(why, sizeof why, "broke its request ring (%s); the connection is closed", what);
    log_warning("Client pid %d %s", se ? (int) se->peer.pid : -1, why);
    mark_dead(rg, WIRE_RING_CLOSED_SESSION);
    if (se)
        s->ring_hooks.close(s, se, MLXD_EPROTO, why);
}

// Takes one record: 1 when one was dispatched, 0 when the ring is empty,
// -1 when the ring is gone (broken, or its session closed meanwhile).
static int take_one(struct server *s, struct ring *rg) {
    size_t pb_len, data_len;
    bool has_frame;
    // The area bounds the frame; --max-tensor-bytes is the validation's, as
    // for a frame from ZeroMQ.
    int r = ring_peek(&rg->req, sizeof pb_buf, rg->req.size, &pb_len, &data_len, &has_frame);
    if (r == 0)
        return 0;
    if (r < 0) {
        ring_broken(s, rg, "a record's indices or lengths are impossible");
        return -1;
    }
    zmq_msg_t frame;
    bool have_frame = has_frame && zmq_msg_init_size(&frame, data_len) == 0;
    ring_read(&rg->req, pb_buf, have_frame ? zmq_msg_data(&frame) : NULL);
    Mlxd__Request *req = mlxd__request__unpack(NULL, pb_len, pb_buf);
    if (!req) {
        if (have_frame)
            zmq_msg_close(&frame);
        ring_broken(s, rg, "a request that does not decode");
        return -1;
    }
    struct peer p = rg->session->peer;
    if (req->body_case != MLXD__REQUEST__BODY_OP && req->body_case != MLXD__REQUEST__BODY_PING)
        server_reply_error(s, &p, req->id, MLXD_EPROTO, "only operations and pings travel over the ring");
    else if (has_frame && !have_frame)
        server_reply_error(s, &p, req->id, MLXD_ENOMEM, "out of memory for a tensor of %zu bytes", data_len);
    else
        s->replies.on_request(s, &p, req, have_frame ? &frame : NULL, have_frame ? 1 : 0);
    mlxd__request__free_unpacked(req, NULL);
    if (have_frame)
        zmq_msg_close(&frame);
    return rg->dead ? -1 : 1;
}

static void take_batch(struct server *s, struct ring *rg) {
    for (int i = 0; i < RING_BATCH; i++)
        if (take_one(s, rg) <= 0)
            return;
}

void ring_ready(struct server *s, int fd) {
    struct ring *rg;
    LIST_FOREACH(rg, &s->rings, link)
        if (!rg->dead && rg->fd == fd)
            break;
    if (!rg)
        return;
    char buf[64];
    bool eof = false;
    for (;;) {
        ssize_t n = recv(rg->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0)
            eof = true;
        if (n <= 0)
            break;
    }
    take_batch(s, rg);
    // The client closed its end of the doorbell (it is exiting, or gave the
    // ring up): what it wrote has been taken; ZeroMQ carries the rest.
    if (eof && !rg->dead)
        mark_dead(rg, WIRE_RING_CLOSED_RING);
}

void ring_run(struct server *s) {
    struct ring *rg;
    LIST_FOREACH(rg, &s->rings, link)
        if (!rg->dead && ring_pending(&rg->req))
            take_batch(s, rg);
}

void ring_turn(struct server *s) {
    ring_run(s);
    struct ring *rg;
    LIST_FOREACH(rg, &s->rings, link)
        if (!rg->dead)
            ring_bell(rg);
}

// Puts r in the ring: 0, or -errno when it cannot go this way.
static int ring_put_reply(struct ring *rg, Mlxd__Reply *r, zmq_msg_t *frames, int nframes) {
    if (rg->dead || nframes > 1)
        return -EMSGSIZE;
    size_t n = protobuf_c_message_get_packed_size(&r->base);
    if (n > sizeof pb_buf)
        return -EMSGSIZE;
    protobuf_c_message_pack(&r->base, pb_buf);
    const void *data = nframes ? zmq_msg_data(&frames[0]) : NULL;
    static const char empty;
    if (nframes && !data)
        data = &empty;
    size_t data_len = nframes ? zmq_msg_size(&frames[0]) : 0;
    int e = ring_put(&rg->rep, pb_buf, n, data, data_len);
    if (e == -EPROTO) {
        // Its reply tail is impossible: no more replies here, and no more
        // requests read (the session itself is left alone: this runs inside
        // a reply).
        log_warning("Client pid %d broke its reply ring; it talks through ZeroMQ from now on",
                    rg->session ? (int) rg->session->peer.pid : -1);
        mark_dead(rg, WIRE_RING_CLOSED_RING);
    }
    if (e < 0)
        return e;
    for (int i = 0; i < nframes; i++)
        zmq_msg_close(&frames[i]);
    // The doorbell rings once the turn is over (ring_prepare): a client
    // woken now would take the core from the replies still to write.
    rg->bell_due = true;
    return 0;
}

// The session's transport: through the ring when the reply fits (an op's
// result inline, or in the caller's shared memory), else through ZeroMQ.
// Replies are matched by id, so the two ways may interleave.
static int ring_send(struct reply_transport *t, const struct peer *p, Mlxd__Reply *r, zmq_msg_t *frames,
                     int nframes) {
    struct ring *rg = (struct ring *) t;
    if (ring_put_reply(rg, r, frames, nframes) == 0)
        return 0;
    struct peer z = *p;
    z.transport = NULL;
    server_reply(rg->server, &z, r, frames, nframes);
    return 0;
}

void ring_detach(struct server *s, struct session *se) {
    (void) s;
    if (se->ring)
        mark_dead(se->ring, WIRE_RING_CLOSED_SESSION);
}

void ring_stop(struct server *s) {
    while (!LIST_EMPTY(&s->rings)) {
        struct ring *rg = LIST_FIRST(&s->rings);
        mark_dead(rg, WIRE_RING_CLOSED_RING);
        ring_free(rg);
    }
}
