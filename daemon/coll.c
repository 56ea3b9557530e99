/* Collectives: matching each member's k-th collective with the others' and
 * running it the group's way (coll_local or coll_span), in order. */
#include "coll.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "log.h"
#include "pool.h"

const struct op_desc **coll_descs(struct pending **ps, int n) {
    const struct op_desc **d = malloc((size_t) n * (sizeof *d + sizeof **d));
    struct op_desc *copy = (struct op_desc *) (d + n);
    for (int r = 0; d && r < n; r++) {
        copy[r] = ps[r]->d;
        d[r] = &copy[r];
    }
    return d;
}

int coll_current(const struct group *g, struct pending **ps) {
    int n = 0;
    for (int r = 0; r < g->size; r++)
        if (g->slots[r].coll)
            ps[n++] = g->slots[r].coll;
    return n;
}

// Fails the current request of every member still unanswered.
static void fail_current(struct server *s, struct group *g, int code, const char *msg) {
    for (int r = 0; r < g->size; r++)
        if (g->slots[r].coll)
            pending_fail(s, g->slots[r].coll, code, "%s", msg);
}

static const struct coll *coll_of(const struct coll *table, Mlxd__OpType op) {
    return (unsigned) op < COLL_OPS && table[op].go ? &table[op] : NULL;
}

// The group's current collective is over: the next one becomes current.
static void coll_done(struct group *g) {
    g->seq++;
    g->job->ops_done++;
}

/* ---- a group of this host alone ---- */

static void run_collective(struct server *s, struct group *g) {
    char err[512];
    int code, n = 0;
    struct pending **ps = malloc((size_t) g->size * sizeof *ps);
    const struct op_desc **d = NULL;
    Mlxd__OpType op = g->slots[0].coll->d.op;

    if (ps)
        n = coll_current(g, ps);
    if (!ps || !(d = coll_descs(ps, n))) {
        code = MLXD_ENOMEM;
        snprintf(err, sizeof err, "out of memory running %s", wire_op_name(op));
    } else if ((code = op_desc_check(d, n, err, sizeof err)) < 0) {
        log_info("Job %s: %s", g->job->id, err);
    } else {
        uint64_t t0 = wire_now_us(), nbytes = ps[0]->nbytes;
        const struct coll *c = coll_of(coll_local, op);
        code = c ? c->go(s, g, ps, n, NULL) : MLXD_EINTERNAL;
        // What the loop spent on a bulk op (copies, reductions, replies), to
        // see the pool at work.
        if (nbytes >= POOL_MIN_BYTES)
            log_debug("Job %s: %s of %llu bytes took %llu us on %u thread(s)", g->job->id, wire_op_name(op),
                      (unsigned long long) nbytes, (unsigned long long) (wire_now_us() - t0), pool_size(s->pool));
        snprintf(err, sizeof err, code == MLXD_ENOMEM ? "out of memory running %s" : "%s is not a collective",
                 wire_op_name(op));
    }
    free(d);
    free(ps);
    if (code < 0)
        fail_current(s, g, code, err);
    coll_done(g);
}

/* ---- a group of several hosts ---- */

// A member arrived at a collective of a spanning group (p is in its slot):
// once every local member is in, the engine gets this host's part; then the
// coordinator hears of the member.
static void span_arrive(struct server *s, struct group *g, struct pending *p) {
    bool all = true;
    for (int r = 0; r < g->size; r++)
        if (g->slots[r].state != SLOT_REMOTE && !g->slots[r].coll)
            all = false;
    // The part goes first, so the engine has it by the time the Go comes.
    const struct coll *c = coll_of(coll_span, p->d.op);
    if (all && c && c->arrive)
        c->arrive(s, g, p);
    else if (all && world_send_local(s->world, g->id, g->seq, &p->d, NULL) < 0)
        log_error("Job %s: out of memory handing the engine this host's part of op #%llu", g->job->id,
                  (unsigned long long) g->seq + 1);
    ctl_arrive(s->world, g->id, g->seq, p->rank, &p->d);
}

struct group *coll_span_go(struct server *s, struct world_event *e) {
    const Mlxd__Ctl__Go *go = e->ctl->go;
    struct group *g = group_find(s, go->group);
    if (!g)
        return NULL;                 // nobody of it is left here
    if (go->seq != g->seq) {
        log_warning("Job %s: a Go for op #%llu of group %016llx, which is at op #%llu; ignored", g->job->id,
                    (unsigned long long) go->seq + 1, (unsigned long long) g->id, (unsigned long long) g->seq + 1);
        return NULL;
    }
    struct pending **ps = malloc((size_t) g->size * sizeof *ps);
    int n = ps ? coll_current(g, ps) : 0;
    int code = e->code ? e->code : go->code;
    const char *msg = e->code ? e->message : go->message;
    const struct coll *c = n ? coll_of(coll_span, ps[0]->d.op) : NULL;
    if (code < 0 || !c) {
        if (code < 0)
            log_info("Job %s: %s", g->job->id, msg);
        fail_current(s, g, code < 0 ? code : ps ? MLXD_EINTERNAL : MLXD_ENOMEM, ps ? msg : "out of memory");
    } else {
        struct coll_go cg = { .go = go, .data = &e->data, .part = e->part };
        c->go(s, g, ps, n, &cg);
    }
    free(ps);
    coll_done(g);
    coll_advance(s, g);
    return g;
}

/* ---- both ---- */

// p becomes its member's request in the current collective (g->seq).
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

void coll_advance(struct server *s, struct group *g) {
    if (g->spanning)
        promote(s, g);
    else
        run_local(s, g);
}

void coll_submit(struct server *s, struct group *g, struct session *se, struct pending *p) {
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
