#include "span.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "hostpart.h"
#include "log.h"
#include "pool.h"
#include "reduce.h"

static bool same_op(const struct op_desc *a, const struct op_desc *b) {
    return a->op == b->op && a->dtype == b->dtype && a->ndim == b->ndim &&
           memcmp(a->shape, b->shape, (size_t) a->ndim * sizeof a->shape[0]) == 0;
}

// This host's part of the current collective, once every local member is in:
// the local reduction (sum_scatter, into the first local member's buffer),
// or nothing (barrier, split, or members here that disagree, which the
// coordinator will report to everyone). Reductions and all_gather go to the
// engine by reference (hostpart.c).
static int local_part(struct server *s, struct group *g, zmq_msg_t *ret) {
    struct pending *first = NULL;
    int n = 0;
    for (int r = 0; r < g->size; r++) {
        struct pending *p = g->slots[r].coll;
        if (!p)
            continue;
        if (!first)
            first = p;
        else if (!same_op(&first->d, &p->d))
            return 0;
        n++;
    }
    const uint8_t **srcs = NULL;
    switch (first->d.op) {
    case MLXD__OP_TYPE__OP_SUM_SCATTER: {
        reduce_op op = wire_op_reduction(first->d.op);
        size_t count = first->nbytes / wire_dtype(first->d.dtype)->size;
        if (!(srcs = malloc((size_t) n * sizeof *srcs)))
            return MLXD_ENOMEM;
        // Into the first member's inline buffer, or a new one when its input
        // is in shared memory (which must not be written).
        if (first->in_ptr) {
            if (zmq_msg_init_size(ret, first->nbytes) < 0) {
                free(srcs);
                return MLXD_ENOMEM;
            }
        } else {
            zmq_msg_move(ret, &first->data);
        }
        int k = 0;
        srcs[k++] = first->in_ptr ? first->in_ptr : zmq_msg_data(ret);
        for (int r = 0; r < g->size; r++)
            if (g->slots[r].coll && g->slots[r].coll != first)
                srcs[k++] = pending_input(g->slots[r].coll);
        uint8_t *dst = zmq_msg_data(ret);
        struct pool_reduce j = { .op = op, .t = (mlxd_dtype) first->d.dtype, .n = (size_t) n, .count = count,
                                 .nparts = 1, .srcs = srcs, .dsts = &dst };
        int r = pool_reduce(s->pool, &j);
        free(srcs);
        return r < 0 ? MLXD_ENOMEM : 1;
    }
    default:
        return 0;
    }
}

void span_arrive(struct server *s, struct group *g, struct pending *p) {
    bool all = true;
    for (int r = 0; r < g->size; r++)
        if (g->slots[r].state != SLOT_REMOTE && !g->slots[r].coll)
            all = false;
    // The part goes first, so the engine has it by the time the Go comes.
    if (all && hostpart_by_reference(p->d.op)) {
        struct world_part *part;
        if (hostpart_build(s, g, &part) < 0)
            log_error("Job %s: out of memory combining this host's part of op #%llu", g->job->id,
                      (unsigned long long) g->seq + 1);
        world_send_part(s->world, g->id, g->seq, &p->d, part);
    } else if (all) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        int r = local_part(s, g, &part);
        if (r < 0)
            log_error("Job %s: out of memory combining this host's part of op #%llu", g->job->id,
                      (unsigned long long) g->seq + 1);
        world_send_local(s->world, g->id, g->seq, &p->d, r > 0 ? &part : NULL);
        zmq_msg_close(&part);
    }
    ctl_arrive(s->world, g->id, g->seq, p->rank, &p->d);
}

// The new groups of a split of a spanning group, as the coordinator made them.
static void split_done(struct server *s, struct group *g, const Mlxd__Ctl__Go *go) {
    int me = world_rank(s->world);
    for (size_t i = 0; i < go->n_split; i++) {
        const Mlxd__Ctl__NewGroup *ng = go->split[i];
        int n = (int) ng->n_members, here = 0, nhosts = 0;
        if (n < 1 || ng->n_hosts != ng->n_members)
            continue;
        for (int k = 0; k < n; k++) {
            if (ng->members[k] < 0 || ng->members[k] >= g->size)
                goto bad;
            here += ng->hosts[k] == me;
            nhosts += k == 0 || ng->hosts[k] != ng->hosts[0];
        }
        if (!here)
            continue;
        struct group *sub = group_new(s, g->job, n);
        if (!sub) {
            for (int k = 0; k < n; k++)
                if (ng->hosts[k] == me && g->slots[ng->members[k]].coll)
                    pending_fail(s, g->slots[ng->members[k]].coll, MLXD_ENOMEM, "out of memory splitting");
            continue;
        }
        sub->id = ng->group;
        sub->spanning = nhosts > 1;
        sub->live = here;
        int died = -1;
        for (int k = 0; k < n; k++) {
            struct slot *old = &g->slots[ng->members[k]], *sl = &sub->slots[k];
            sl->host = ng->hosts[k];
            sl->job_rank = old->job_rank;
            if (ng->hosts[k] != me) {
                sl->state = SLOT_REMOTE;
                continue;
            }
            sl->pid = old->pid;
            // A member that left after it asked for the split never attaches:
            // the new group is born without it (it departs below).
            sl->state = SLOT_UNATTACHED;
            if (old->left)
                died = k;
            if (!old->coll)
                continue;
            Mlxd__OpReply o = MLXD__OP_REPLY__INIT;
            Mlxd__Reply r = MLXD__REPLY__INIT;
            o.group = sub->id;
            o.rank = k;
            o.size = n;
            o.token = sl->token;
            r.body_case = MLXD__REPLY__BODY_OP;
            r.op = &o;
            pending_finish(s, old->coll, &r, NULL, 0);
        }
        for (int k = 0; died >= 0 && k < n; k++)
            if (ng->hosts[k] == me && g->slots[ng->members[k]].left)
                group_depart(s, sub, k, NULL, g->slots[ng->members[k]].left_why);
        continue;
    bad:
        log_warning("Job %s: the coordinator's split names a rank outside group %016llx", g->job->id,
                    (unsigned long long) g->id);
    }
}

static void go_done(struct server *s, struct world_event *e) {
    const Mlxd__Ctl__Go *go = e->ctl->go;
    struct group *g = group_find(s, go->group);
    struct pending *first = NULL;
    if (!g)
        return;                      // nobody of it is left here
    if (go->seq != g->seq) {
        log_warning("Job %s: a Go for op #%llu of group %016llx, which is at op #%llu; ignored", g->job->id,
                    (unsigned long long) go->seq + 1, (unsigned long long) g->id, (unsigned long long) g->seq + 1);
        return;
    }
    for (int r = 0; r < g->size && !first; r++)
        first = g->slots[r].coll;
    int code = e->code ? e->code : go->code;
    const char *msg = e->code ? e->message : go->message;
    if (code < 0 || !first) {
        if (code < 0)
            log_info("Job %s: %s", g->job->id, msg);
        for (int r = 0; r < g->size; r++)
            if (g->slots[r].coll)
                pending_fail(s, g->slots[r].coll, code < 0 ? code : MLXD_EINTERNAL, "%s", msg);
    } else {
        struct op_desc d = first->d;
        switch (d.op) {
        case MLXD__OP_TYPE__OP_BARRIER:
            for (int r = 0; r < g->size; r++)
                if (g->slots[r].coll)
                    op_reply_empty(s, g->slots[r].coll);
            break;
        case MLXD__OP_TYPE__OP_SPLIT:
            split_done(s, g, go);
            break;
        case MLXD__OP_TYPE__OP_SUM_SCATTER: {
            size_t block = zmq_msg_size(&e->data) / (size_t) g->size;
            wire_result_shape(d.op, g->size, &d.ndim, d.shape);
            for (int r = 0; r < g->size; r++)
                if (g->slots[r].coll)
                    op_reply_result(s, g->slots[r].coll, d.dtype, d.ndim, d.shape,
                                    (const uint8_t *) zmq_msg_data(&e->data) + (size_t) r * block, block, NULL);
            break;
        }
        default:
            wire_result_shape(d.op, g->size, &d.ndim, d.shape);
            if (e->part) {
                hostpart_reply(s, g, &d, e->part);
                break;
            }
            for (int r = 0; r < g->size; r++)
                if (g->slots[r].coll)
                    op_reply_result(s, g->slots[r].coll, d.dtype, d.ndim, d.shape, zmq_msg_data(&e->data),
                                    zmq_msg_size(&e->data), &e->data);
        }
    }
    g->seq++;
    g->job->ops_done++;
    op_advance(s, g);
    job_gc(s, g->job);
}

void span_event(struct server *s, struct world_event *e) {
    const Mlxd__Ctl__Ctl *c = e->ctl;
    struct group *g;
    switch (e->type) {
    case WORLD_EVENT_GO:
        go_done(s, e);
        break;
    case WORLD_EVENT_P2P:
        if ((g = group_find(s, c->p2p->group))) {
            struct op_desc d = { .op = MLXD__OP_TYPE__OP_SEND, .dtype = c->p2p->dtype };
            uint64_t nbytes;
            if (c->p2p->n_shape > MLXD_MAX_NDIM ||
                wire_tensor_nbytes(c->p2p->dtype, c->p2p->n_shape, c->p2p->shape, &nbytes) < 0 ||
                nbytes != zmq_msg_size(&e->data)) {
                log_warning("World rank %d sent a message that does not add up; dropped it", e->from);
                break;
            }
            d.ndim = (int) c->p2p->n_shape;
            for (int i = 0; i < d.ndim; i++)     // a scalar has no shape array at all
                d.shape[i] = c->p2p->shape[i];
            op_deliver_remote(s, g, c->p2p->src, c->p2p->dst, &d, &e->data);
        }
        break;
    case WORLD_EVENT_CTL:
        switch (c->body_case) {
        case MLXD__CTL__CTL__BODY_FORM:
            job_form(s, c->form->job, c->form->group, c->form->hosts, c->form->n_hosts);
            break;
        case MLXD__CTL__CTL__BODY_HELLO_FAIL:
            job_hello_fail(s, c->hello_fail->job, c->hello_fail->rank, c->hello_fail->code, c->hello_fail->message);
            break;
        case MLXD__CTL__CTL__BODY_ABORT:
            if ((g = group_find(s, c->abort->group))) {
                int code = c->abort->code < 0 ? c->abort->code : MLXD_EPEER;
                if (c->abort->collectives)
                    group_break_collectives(s, g, code, c->abort->message);
                else
                    group_abort_now(s, g, code, c->abort->message);
                job_gc(s, g->job);
            }
            break;
        case MLXD__CTL__CTL__BODY_DEPART:
            // After every message the member sent us (the engine keeps the order).
            if ((g = group_find(s, c->depart->group))) {
                group_depart_remote(s, g, c->depart->rank, c->depart->seq);
                job_gc(s, g->job);
            }
            break;
        case MLXD__CTL__CTL__BODY_STATUS_REQ:
            status_remote_request(s, e->from, c->status_req->id);
            break;
        case MLXD__CTL__CTL__BODY_STATUS_REP:
            status_remote_reply(s, e->from, c->status_rep->id, c->status_rep->daemon.data, c->status_rep->daemon.len);
            break;
        default:
            break;                   // GroupFree: the engine released the communicator
        }
        break;
    }
    world_event_free(e);
}
