/* Ops on a group: each member's k-th collective is matched with the others'
 * k-th, checked for agreement, and run in one pass over the inputs; send and
 * recv are matched per pair of ranks, in order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "log.h"
#include "pool.h"
#include "reduce.h"
#include "span.h"
#include "world.h"

// Answers p with a tensor whose bytes are in frame (moved), or, when p's
// result goes to shared memory, already there (frame NULL).
void op_reply_tensor(struct server *s, struct pending *p, uint32_t dtype, int ndim, const int64_t *shape,
                     zmq_msg_t *frame) {
    Mlxd__Tensor t = MLXD__TENSOR__INIT;
    Mlxd__OpReply o = MLXD__OP_REPLY__INIT;
    Mlxd__Reply r = MLXD__REPLY__INIT;
    t.dtype = dtype;
    t.n_shape = (size_t) ndim;
    t.shape = (int64_t *) shape;
    if (frame) {
        t.frame = 1;
    } else {
        t.segment = p->out_segment;
        t.offset = p->out_offset;
    }
    o.output = &t;
    r.body_case = MLXD__REPLY__BODY_OP;
    r.op = &o;
    pending_finish(s, p, &r, frame, frame ? 1 : 0);
}

void op_reply_result(struct server *s, struct pending *p, uint32_t dtype, int ndim, const int64_t *shape,
                     const uint8_t *bytes, size_t n, zmq_msg_t *shared) {
    zmq_msg_t f;
    if (p->out_ptr) {
        if (p->out_nbytes != n) {
            pending_fail(s, p, MLXD_EINVAL, "the output in shared memory holds %llu bytes; the result of %s has %zu",
                         (unsigned long long) p->out_nbytes, wire_op_name(p->d.op), n);
            return;
        }
        pool_move(s->pool, p->out_ptr, bytes, n);
        op_reply_tensor(s, p, dtype, ndim, shape, NULL);
        return;
    }
    if (shared) {
        zmq_msg_init(&f);
        zmq_msg_copy(&f, shared);
    } else if (zmq_msg_init_size(&f, n) == 0) {
        pool_move(s->pool, zmq_msg_data(&f), bytes, n);
    } else {
        pending_fail(s, p, MLXD_ENOMEM, "out of memory answering %s", wire_op_name(p->d.op));
        return;
    }
    op_reply_tensor(s, p, dtype, ndim, shape, &f);
}

void op_reply_empty(struct server *s, struct pending *p) {
    Mlxd__OpReply o = MLXD__OP_REPLY__INIT;
    Mlxd__Reply r = MLXD__REPLY__INIT;
    r.body_case = MLXD__REPLY__BODY_OP;
    r.op = &o;
    pending_finish(s, p, &r, NULL, 0);
}

/* ---- collectives ---- */

// Copies of the members' descriptors, in rank order, for desc.c's checks:
// copies, because answering a member frees its request. One allocation:
// the pointers, then the descriptors they point to.
static const struct op_desc **descs_of(struct group *g) {
    size_t n = (size_t) g->size;
    const struct op_desc **d = malloc(n * (sizeof *d + sizeof **d));
    struct op_desc *copy = (struct op_desc *) (d + n);
    for (size_t r = 0; d && r < n; r++) {
        copy[r] = g->slots[r].coll->d;
        d[r] = &copy[r];
    }
    return d;
}

static void fail_collective(struct server *s, struct group *g, int code, const char *msg) {
    for (int r = 0; r < g->size; r++)
        if (g->slots[r].coll)
            pending_fail(s, g->slots[r].coll, code, "%s", msg);
}

// True when a member's shared-memory output overlaps its input anywhere but
// at exactly the same place: then results must not be written into outputs
// while inputs are still being read.
static bool overlaps_input(const struct pending *p, size_t out_offset_of_in) {
    const uint8_t *in = pending_input(p), *out = p->out_ptr;
    if (!out)
        return false;
    bool overlap = out < in + p->nbytes && in < out + p->out_nbytes;
    return overlap && in != out + out_offset_of_in;
}

static int run_reduce(struct server *s, struct group *g, reduce_op rop) {
    int n = g->size;
    struct pending *first = g->slots[0].coll;
    size_t esize = wire_dtype(first->d.dtype)->size, nbytes = first->nbytes, count = nbytes / esize;
    const uint8_t **srcs = malloc((size_t) n * sizeof *srcs);
    uint8_t **copies = malloc(((size_t) n + 1) * sizeof *copies);
    uint8_t **outs = calloc((size_t) n, sizeof *outs);
    uint8_t *dst = NULL, *frame = NULL;
    bool any_frame = false;
    zmq_msg_t result;
    int code = 0;

    zmq_msg_init(&result);
    if (!srcs || !copies || !outs) {
        code = MLXD_ENOMEM;
        goto out;
    }
    for (int r = 0; r < n; r++) {
        struct pending *p = g->slots[r].coll;
        srcs[r] = pending_input(p);
        if (p->out_ptr && p->out_nbytes == nbytes && !overlaps_input(p, 0))
            outs[r] = p->out_ptr;
        else
            any_frame = true;
        if (!dst)
            dst = outs[r];
    }
    if (any_frame) {
        // Rank 0's inline buffer takes the result (every inline member's
        // reply then shares it: zmq_msg_copy counts references). Small
        // messages live inside the zmq_msg_t: take pointers after the move.
        if (!first->in_ptr && !dst) {
            zmq_msg_move(&result, &first->data);
            srcs[0] = zmq_msg_data(&result);
        } else if (zmq_msg_init_size(&result, nbytes) < 0) {
            code = MLXD_ENOMEM;
            goto out;
        }
        frame = zmq_msg_data(&result);
        if (!dst)
            dst = frame;
    }
    // One pass over the inputs: each block is reduced into the first output,
    // then copied to the other outputs while it is still in cache.
    struct pool_reduce j = { .op = rop, .t = (mlxd_dtype) first->d.dtype, .n = (size_t) n, .count = count,
                             .nparts = 1, .srcs = srcs, .dsts = &dst, .copies = copies };
    for (int r = 0; r < n; r++)
        if (outs[r] && outs[r] != dst)
            copies[j.ncopies++] = outs[r];
    if (frame && frame != dst)
        copies[j.ncopies++] = frame;
    if (pool_reduce(s->pool, &j) < 0) {
        code = MLXD_ENOMEM;
        goto out;
    }
    struct op_desc d = first->d;
    for (int r = 0; r < n; r++)
        op_reply_result(s, g->slots[r].coll, d.dtype, d.ndim, d.shape, outs[r] ? outs[r] : frame, nbytes,
                        outs[r] || !frame ? NULL : &result);
out:
    zmq_msg_close(&result);
    free(srcs);
    free(copies);
    free(outs);
    return code;
}

static int run_gather(struct server *s, struct group *g) {
    int n = g->size;
    struct pending *first = g->slots[0].coll;
    size_t each = first->nbytes, total = each * (size_t) n;
    bool any_frame = false, staged = false;
    zmq_msg_t result;
    for (int r = 0; r < n; r++) {
        struct pending *p = g->slots[r].coll;
        any_frame |= !p->out_ptr || p->out_nbytes != total;
        // Gathering in place (x at its own block of out) is fine; any other
        // overlap is gathered aside first.
        staged |= overlaps_input(p, (size_t) r * each);
    }
    const uint8_t **srcs = malloc((size_t) n * sizeof *srcs);
    uint8_t **outs = malloc(((size_t) n + 1) * sizeof *outs);
    size_t nouts = 0;
    zmq_msg_init(&result);
    if (!srcs || !outs || ((any_frame || staged) && zmq_msg_init_size(&result, total) < 0)) {
        free(srcs);
        free(outs);
        return MLXD_ENOMEM;
    }
    uint8_t *frame = any_frame || staged ? zmq_msg_data(&result) : NULL;
    for (int r = 0; r < n; r++)
        srcs[r] = pending_input(g->slots[r].coll);
    if (frame)
        outs[nouts++] = frame;
    // Straight into each shared-memory output (skipping a member's own
    // block when it gathers in place); staged, the frame is copied there
    // when answering.
    for (int r = 0; r < n && !staged; r++) {
        struct pending *p = g->slots[r].coll;
        if (p->out_ptr && p->out_nbytes == total)
            outs[nouts++] = p->out_ptr;
    }
    pool_gather(s->pool, outs, nouts, srcs, (size_t) n, each);
    free(srcs);
    free(outs);
    struct op_desc d = first->d;
    wire_result_shape(d.op, n, &d.ndim, d.shape);
    for (int r = 0; r < n; r++) {
        struct pending *p = g->slots[r].coll;
        bool direct = !staged && p->out_ptr && p->out_nbytes == total;
        op_reply_result(s, p, d.dtype, d.ndim, d.shape, direct ? p->out_ptr : frame, total,
                        direct || !any_frame ? NULL : &result);
    }
    zmq_msg_close(&result);
    return 0;
}

static int run_scatter(struct server *s, struct group *g) {
    int n = g->size;
    struct pending *first = g->slots[0].coll;
    size_t esize = wire_dtype(first->d.dtype)->size;
    size_t block = first->nbytes / (size_t) n;
    bool staged = false;
    for (int r = 0; r < n; r++)
        staged |= overlaps_input(g->slots[r].coll, SIZE_MAX);
    zmq_msg_t *out = calloc((size_t) n, sizeof *out);
    uint8_t **dst = calloc((size_t) n, sizeof *dst);
    const uint8_t **srcs = malloc((size_t) n * sizeof *srcs);
    int code = 0, made = 0;
    if (!out || !dst || !srcs) {
        code = MLXD_ENOMEM;
        goto done;
    }
    // Each member's block is reduced straight into its output: its shared
    // memory, or its own reply frame (also when outputs overlap inputs, so
    // nothing is written while it may still be read).
    for (int r = 0; r < n; r++, made++) {
        struct pending *p = g->slots[r].coll;
        zmq_msg_init(&out[r]);
        if (!staged && p->out_ptr && p->out_nbytes == block) {
            dst[r] = p->out_ptr;
        } else if (zmq_msg_init_size(&out[r], block) == 0) {
            dst[r] = zmq_msg_data(&out[r]);
        } else {
            code = MLXD_ENOMEM;
            goto done;
        }
    }
    for (int i = 0; i < n; i++)
        srcs[i] = pending_input(g->slots[i].coll);
    struct pool_reduce j = { .op = REDUCE_SUM, .t = (mlxd_dtype) first->d.dtype, .n = (size_t) n,
                             .count = block / esize, .stride = block, .nparts = (size_t) n, .srcs = srcs, .dsts = dst };
    if (pool_reduce(s->pool, &j) < 0) {
        code = MLXD_ENOMEM;
        goto done;
    }
    struct op_desc d = first->d;
    wire_result_shape(d.op, n, &d.ndim, d.shape);
    for (int r = 0; r < n; r++) {
        struct pending *p = g->slots[r].coll;
        if (dst[r] == p->out_ptr)
            op_reply_tensor(s, p, d.dtype, d.ndim, d.shape, NULL);
        else
            op_reply_result(s, p, d.dtype, d.ndim, d.shape, dst[r], block, p->out_ptr ? NULL : &out[r]);
    }
done:
    for (int r = 0; out && r < made; r++)
        zmq_msg_close(&out[r]);
    free(out);
    free(dst);
    free(srcs);
    return code;
}

static int run_split(struct server *s, struct group *g, const struct op_desc **d) {
    int *order = malloc((size_t) g->size * sizeof *order);
    if (!order || split_plan(d, g->size, order) < 0) {
        free(order);
        return MLXD_ENOMEM;
    }
    for (int i = 0; i < g->size;) {
        int n = split_run(d, g->size, order, i);
        struct group *ng = group_new(s, g->job, n);
        if (!ng) {
            free(order);
            return MLXD_ENOMEM;        // groups made so far are freed by their slots' gc
        }
        for (int k = 0; k < n; k++) {
            struct slot *old = &g->slots[order[i + k]];
            ng->slots[k].state = SLOT_UNATTACHED;
            ng->slots[k].pid = old->pid;
            ng->slots[k].job_rank = old->job_rank;
            // A member that left after it asked for the split never
            // attaches: the new group is born without it.
            if (old->left)
                group_depart(s, ng, k, NULL, old->left_why);
            Mlxd__OpReply o = MLXD__OP_REPLY__INIT;
            Mlxd__Reply r = MLXD__REPLY__INIT;
            o.group = ng->id;
            o.rank = k;
            o.size = n;
            o.token = ng->slots[k].token;
            r.body_case = MLXD__REPLY__BODY_OP;
            r.op = &o;
            pending_finish(s, old->coll, &r, NULL, 0);
        }
        log_debug("Job %s: split group %016llx color %d -> group %016llx of %d", g->job->id, (unsigned long long) g->id,
                  d[order[i]]->color, (unsigned long long) ng->id, n);
        i += n;
    }
    free(order);
    return 0;
}

static void run_collective(struct server *s, struct group *g) {
    char err[512];
    int code;
    const struct op_desc **d = descs_of(g);
    Mlxd__OpType op = g->slots[0].coll->d.op;

    if (!d) {
        code = MLXD_ENOMEM;
        snprintf(err, sizeof err, "out of memory running %s", wire_op_name(op));
    } else if ((code = op_desc_check(d, g->size, err, sizeof err)) < 0) {
        log_info("Job %s: %s", g->job->id, err);
    } else {
        uint64_t t0 = wire_now_us(), nbytes = g->slots[0].coll->nbytes;
        switch (op) {
        case MLXD__OP_TYPE__OP_ALL_SUM:
        case MLXD__OP_TYPE__OP_ALL_MAX:
        case MLXD__OP_TYPE__OP_ALL_MIN:
            code = run_reduce(s, g, wire_op_reduction(op));
            break;
        case MLXD__OP_TYPE__OP_ALL_GATHER:
            code = run_gather(s, g);
            break;
        case MLXD__OP_TYPE__OP_SUM_SCATTER:
            code = run_scatter(s, g);
            break;
        case MLXD__OP_TYPE__OP_SPLIT:
            code = run_split(s, g, d);
            break;
        case MLXD__OP_TYPE__OP_BARRIER:
            for (int r = 0; r < g->size; r++)
                op_reply_empty(s, g->slots[r].coll);
            break;
        default:
            code = MLXD_EINTERNAL;
        }
        // What the loop spent on a bulk op (copies, reductions, replies), to
        // see the pool at work.
        if (nbytes >= POOL_MIN_BYTES)
            log_debug("Job %s: %s of %llu bytes took %llu us on %u thread(s)", g->job->id, wire_op_name(op),
                      (unsigned long long) nbytes, (unsigned long long) (wire_now_us() - t0), pool_size(s->pool));
        snprintf(err, sizeof err, code == MLXD_ENOMEM ? "out of memory running %s" : "%s is not a collective",
                 wire_op_name(op));
    }
    free(d);
    if (code < 0)
        fail_collective(s, g, code, err);
    g->seq++;
    g->job->ops_done++;
}

// p becomes its member's request in the current collective (g->seq); on a
// spanning group the coordinator hears of it.
static void make_current(struct server *s, struct group *g, struct slot *sl, struct pending *p) {
    p->seq = g->seq;
    p->ref = &sl->coll;
    sl->coll = p;
    if (g->spanning)
        span_arrive(s, g, p);
}

// The members' next queued collectives become current, one at a time:
// on a spanning group span_arrive() hands the engine this host's part once
// the last local member is in, so each must see the others before it.
static void promote(struct server *s, struct group *g) {
    for (int r = 0; r < g->size; r++) {
        struct slot *sl = &g->slots[r];
        struct pending *next = TAILQ_FIRST(&sl->later);
        if (!sl->coll && next) {
            TAILQ_REMOVE(&sl->later, next, qlink);
            next->queue = NULL;
            make_current(s, g, sl, next);
        }
    }
}

// Runs the collectives of a group of this host alone for as long as every
// member has its next one in.
static void run_local(struct server *s, struct group *g) {
    for (;;) {
        group_check_collectives(s, g);
        for (int r = 0; r < g->size; r++)
            if (!g->slots[r].coll)
                return;
        run_collective(s, g);
        promote(s, g);
    }
}

void op_advance(struct server *s, struct group *g) {
    if (g->spanning)
        promote(s, g);
    else
        run_local(s, g);
}

bool op_waiting(const struct group *g) {
    for (int r = 0; r < g->size; r++)
        if (g->slots[r].coll || !TAILQ_EMPTY(&g->slots[r].later) || !TAILQ_EMPTY(&g->slots[r].recvs))
            return true;
    return false;
}

static void submit_collective(struct server *s, struct group *g, struct session *se, struct pending *p) {
    struct slot *sl = &g->slots[se->rank];
    sl->issued++;
    if (g->coll_code) {
        pending_fail(s, p, g->coll_code, "%s", g->coll_msg);
        return;
    }
    if (sl->coll) {
        // Its earlier collective still runs: this one waits its turn, to be
        // matched with the others' next ones.
        TAILQ_INSERT_TAIL(&sl->later, p, qlink);
        p->queue = &sl->later;
        return;
    }
    make_current(s, g, sl, p);
    if (!g->spanning)
        run_local(s, g);
}

/* ---- send and recv ---- */

static void message_free(struct server *s, struct group *g, struct message *m) {
    TAILQ_REMOVE(&g->messages, m, link);
    if (m->sender)
        m->sender->queued_bytes -= m->nbytes;
    if (m->held)
        m->held->ref = NULL;
    zmq_msg_close(&m->data);
    free(m);
}

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
    message_free(s, g, m);
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

static void submit_send(struct server *s, struct group *g, struct session *se, struct pending *p) {
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

static void submit_recv(struct server *s, struct group *g, struct session *se, struct pending *p) {
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

void op_submit(struct server *s, struct session *se, struct pending *p) {
    struct group *g = se->group;
    p->group = g;
    p->rank = se->rank;
    if (g->abort_code) {
        pending_fail(s, p, g->abort_code, "%s", g->abort_msg);
        return;
    }
    switch (p->d.op) {
    case MLXD__OP_TYPE__OP_SEND:
        submit_send(s, g, se, p);
        break;
    case MLXD__OP_TYPE__OP_RECV:
        submit_recv(s, g, se, p);
        break;
    default:
        submit_collective(s, g, se, p);
        break;
    }
}

void op_fail_group(struct server *s, struct group *g) {
    struct message *m;
    struct pending *p;
    int code = g->abort_code ? g->abort_code : MLXD_EPEER;
    const char *msg = g->abort_code ? g->abort_msg : "the group is gone";
    op_fail_collectives(s, g, code, msg);
    for (int r = 0; r < g->size; r++)
        while ((p = TAILQ_FIRST(&g->slots[r].recvs)))
            pending_fail(s, p, code, "%s", msg);
    while ((m = TAILQ_FIRST(&g->messages))) {
        struct pending *held = m->held;
        message_free(s, g, m);
        if (held)
            pending_fail(s, held, code, "%s", msg);
    }
}

void op_fail_collectives(struct server *s, struct group *g, int code, const char *msg) {
    struct pending *p;
    for (int r = 0; r < g->size; r++) {
        // The queued ones first, so that none becomes current meanwhile.
        while ((p = TAILQ_LAST(&g->slots[r].later, pending_list)))
            pending_fail(s, p, code, "%s", msg);
        if (g->slots[r].coll)
            pending_fail(s, g->slots[r].coll, code, "%s", msg);
    }
}

void op_depart(struct server *s, struct group *g, int rank, struct session *se, const char *why) {
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
        message_free(s, g, m);
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

void op_deliver_remote(struct server *s, struct group *g, int src, int dst, const struct op_desc *d, zmq_msg_t *data) {
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
