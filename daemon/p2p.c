/* Send and recv: matched per pair of ranks, in order. A message to a member
 * of this host waits in its group until a receive takes it (the sender goes
 * on at once, within its cap of queued bytes); one to another host goes to
 * that host's daemon through the engine, which keeps the order. */
#include "p2p.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pool.h"
#include "result.h"
#include "world.h"

// Answers the recv request p with what rank src sent (d, and nbytes at
// bytes): copied once into p's shared memory, else a reply sharing frame
// (NULL: a new frame with a copy of the bytes).
static void hand_over(struct server *s, struct pending *p, int src, const struct op_desc *d, const uint8_t *bytes,
                      size_t nbytes, zmq_msg_t *frame) {
    if (d->dtype != p->d.dtype || d->ndim != p->d.ndim ||
        memcmp(d->shape, p->d.shape, (size_t) p->d.ndim * sizeof p->d.shape[0]) != 0) {
        char want[160], got[160];
        pending_fail(s, p, MLXD_EMISMATCH, "recv from rank %d expected %s %s, but rank %d sent %s %s", src,
                     wire_dtype(p->d.dtype)->name, shape_str(want, sizeof want, p->d.ndim, p->d.shape), src,
                     wire_dtype(d->dtype)->name, shape_str(got, sizeof got, d->ndim, d->shape));
        return;
    }
    op_reply_result(s, p, d->dtype, d->ndim, d->shape, bytes, nbytes, p->out_ptr ? NULL : frame);
}

// Hands m to the recv request p, then frees m (and answers a held send).
static void deliver(struct server *s, struct group *g, struct message *m, struct pending *p) {
    struct pending *held = m->held;
    struct op_desc d = { .dtype = m->dtype, .ndim = m->ndim };
    memcpy(d.shape, m->shape, sizeof d.shape);
    hand_over(s, p, m->src, &d, zmq_msg_data(&m->data), m->nbytes, &m->data);
    group_message_free(g, m);
    if (held)
        op_reply_empty(s, held);
}

// The first receive of sl waiting for a message from src: receives from one
// rank are matched with its sends in order.
static struct pending *waiting_recv(struct slot *sl, int src) {
    struct pending *p;
    TAILQ_FOREACH(p, &sl->recvs, qlink)
        if (p->peer == src)
            return p;
    return NULL;
}

static bool peer_ok(struct server *s, struct group *g, struct session *se, struct pending *p) {
    if (p->peer < 0 || p->peer >= g->size) {
        pending_fail(s, p, MLXD_EINVAL, "%s: rank %d is outside the group (size %d)", wire_op_name(p->d.op), p->peer,
                     g->size);
        return false;
    }
    if (p->peer == se->rank) {
        pending_fail(s, p, MLXD_EINVAL, "%s: rank %d cannot %s itself", wire_op_name(p->d.op), p->peer,
                     p->d.op == MLXD__OP_TYPE__OP_SEND ? "send to" : "receive from");
        return false;
    }
    return true;
}

void p2p_send(struct server *s, struct group *g, struct session *se, struct pending *p) {
    if (!peer_ok(s, g, se, p))
        return;
    struct slot *dst = &g->slots[p->peer];
    if (dst->left) {
        pending_fail(s, p, MLXD_EPEER, "send to rank %d: rank %d left the group", p->peer, p->peer);
        return;
    }
    struct pending *waiting = dst->state != SLOT_REMOTE ? waiting_recv(dst, se->rank) : NULL;
    if (waiting) {
        // The receiver waits (so nothing from us is queued before this):
        // straight from the sender's memory into the receiver's, one copy.
        log_debug("Job %s: rank %d's send of %llu bytes goes straight to rank %d, which waits", g->job->id,
                  se->rank, (unsigned long long) p->nbytes, p->peer);
        hand_over(s, waiting, se->rank, &p->d, pending_input(p), p->nbytes, p->in_ptr ? NULL : &p->data);
        op_reply_empty(s, p);
        return;
    }
    if (p->in_ptr && zmq_msg_init_size(&p->data, p->nbytes) == 0) {
        // send returns at once and the sender may reuse its memory: the
        // daemon keeps a copy.
        pool_move(s->pool, zmq_msg_data(&p->data), p->in_ptr, p->nbytes);
        p->in_ptr = NULL;
    } else if (p->in_ptr) {
        pending_fail(s, p, MLXD_ENOMEM, "out of memory queueing a send");
        return;
    }
    if (dst->state == SLOT_REMOTE) {
        // The receiver's daemon holds it from here; MPI keeps the order of
        // messages between two daemons.
        int r = world_send_p2p(s->world, dst->host, g->id, se->rank, p->peer, &p->d, &p->data);
        zmq_msg_init(&p->data);
        if (r < 0)
            pending_fail(s, p, MLXD_ENOMEM, "out of memory sending to rank %d", p->peer);
        else
            op_reply_empty(s, p);
        return;
    }
    struct message *m = calloc(1, sizeof *m);
    if (!m) {
        pending_fail(s, p, MLXD_ENOMEM, "out of memory queueing a send");
        return;
    }
    m->src = se->rank;
    m->dst = p->peer;
    m->dtype = p->d.dtype;
    m->ndim = p->d.ndim;
    memcpy(m->shape, p->d.shape, sizeof m->shape);
    zmq_msg_init(&m->data);
    zmq_msg_move(&m->data, &p->data);
    m->nbytes = zmq_msg_size(&m->data);
    m->sender = se;

    se->queued_bytes += m->nbytes;
    TAILQ_INSERT_TAIL(&g->messages, m, link);

    // Within the cap the sender goes on at once; over it, it waits for the
    // receiver, so a sender cannot pile up unbounded memory in the daemon.
    bool hold = se->queued_bytes > s->cfg.max_queued_bytes;
    if (hold) {
        m->held = p;
        p->ref = &m->held;
    }
    // No receive waits for it (one would have taken it above): it stays
    // queued until one comes.
    if (!hold)
        op_reply_empty(s, p);
}

void p2p_recv(struct server *s, struct group *g, struct session *se, struct pending *p) {
    if (!peer_ok(s, g, se, p))
        return;
    struct message *m;
    TAILQ_FOREACH(m, &g->messages, link)
        if (m->src == p->peer && m->dst == se->rank) {
            deliver(s, g, m, p);
            return;
        }
    if (g->slots[p->peer].left) {
        pending_fail(s, p, MLXD_EPEER, "recv from rank %d: rank %d left the group without sending", p->peer, p->peer);
        return;
    }
    // A receive from the same rank already waits, so no message of that
    // rank is queued: this one waits behind it.
    struct slot *sl = &g->slots[se->rank];
    TAILQ_INSERT_TAIL(&sl->recvs, p, qlink);
    p->queue = &sl->recvs;
}

void p2p_depart(struct server *s, struct group *g, int rank, struct session *se, const char *why) {
    struct message *m, *next;
    for (m = TAILQ_FIRST(&g->messages); m; m = next) {
        next = TAILQ_NEXT(m, link);
        if (m->sender && m->sender == se) {
            // Accepted, so it is delivered; its sender no longer counts it.
            se->queued_bytes -= m->nbytes;
            m->sender = NULL;
        }
        if (m->dst != rank)
            continue;
        struct pending *held = m->held;
        group_message_free(g, m);
        if (held)
            pending_fail(s, held, MLXD_EPEER, "send to rank %d: rank %d %s before receiving it", rank, rank, why);
    }
    for (int r = 0; r < g->size; r++) {
        // A receive from it still waiting has no message: none will come.
        struct pending *p;
        while ((p = waiting_recv(&g->slots[r], rank)))
            pending_fail(s, p, MLXD_EPEER, "recv from rank %d: rank %d %s without sending", rank, rank, why);
    }
}

void p2p_deliver_remote(struct server *s, struct group *g, int src, int dst, const struct op_desc *d, zmq_msg_t *data) {
    if (g->abort_code || src < 0 || src >= g->size || dst < 0 || dst >= g->size ||
        g->slots[dst].state == SLOT_REMOTE || g->slots[dst].left) {
        zmq_msg_close(data);
        return;
    }
    struct message *m = calloc(1, sizeof *m);
    if (!m) {
        zmq_msg_close(data);
        group_abort(s, g, MLXD_ENOMEM, "out of memory receiving a message from rank %d for rank %d", src, dst);
        return;
    }
    m->src = src;
    m->dst = dst;
    m->dtype = d->dtype;
    m->ndim = d->ndim;
    memcpy(m->shape, d->shape, sizeof m->shape);
    zmq_msg_init(&m->data);
    zmq_msg_move(&m->data, data);
    zmq_msg_close(data);
    m->nbytes = zmq_msg_size(&m->data);
    TAILQ_INSERT_TAIL(&g->messages, m, link);
    struct pending *recv = waiting_recv(&g->slots[dst], src);
    if (recv)
        deliver(s, g, m, recv);
}
