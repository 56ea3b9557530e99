/* Collectives of a group whose members are on several hosts. Once this
 * host's members are in, arrive hands the engine this host's part (the
 * members' memory by reference for reductions and all_gather, hostpart.c;
 * the local reduction for sum_scatter; nothing for barrier and split); the coordinator's Go says when the engine has combined every
 * host's part, and go answers this host's members from the result. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coll.h"
#include "hostpart.h"
#include "log.h"
#include "result.h"

// sum_scatter: the local members' reduction of their whole inputs (into the
// first one's inline buffer), or an empty part when they disagree, which the
// coordinator will report to everyone.
static void arrive_reduce(struct server *s, struct group *g, const struct pending *p) {
    struct pending **ps = malloc((size_t) g->size * sizeof *ps);
    int n = ps ? coll_current(g, ps) : 0, r = ps ? 0 : MLXD_ENOMEM;
    bool agree = true;
    zmq_msg_t part;
    zmq_msg_init(&part);
    for (int i = 1; i < n; i++)
        agree &= op_desc_same(&ps[0]->d, &ps[i]->d);
    if (n && agree) {
        uint8_t *frame;
        r = coll_reduce_inputs(s, ps, n, NULL, &part, &frame);
    }
    free(ps);
    if (r < 0)
        log_error("Job %s: out of memory combining this host's part of op #%llu", g->job->id,
                  (unsigned long long) g->seq + 1);
    if (world_send_local(s->world, g->id, g->seq, &p->d, n && agree && r == 0 ? &part : NULL) < 0)
        log_error("Job %s: out of memory handing the engine this host's part of op #%llu", g->job->id,
                  (unsigned long long) g->seq + 1);
    zmq_msg_close(&part);
}

// Reductions and all_gather: the local members' inputs and outputs, by
// reference (hostpart.c).
static void arrive_by_reference(struct server *s, struct group *g, const struct pending *p) {
    struct world_part *part;
    if (hostpart_build(s, g, &part) < 0)
        log_error("Job %s: out of memory combining this host's part of op #%llu", g->job->id,
                  (unsigned long long) g->seq + 1);
    if (world_send_part(s->world, g->id, g->seq, &p->d, part) < 0)
        log_error("Job %s: out of memory handing the engine this host's part of op #%llu", g->job->id,
                  (unsigned long long) g->seq + 1);
}

// Every member here gets the whole result (reductions, all_gather): where
// the engine left it in the part handed by reference, else one frame their
// replies share.
static int go_whole(struct server *s, struct group *g, struct pending **ps, int n, const struct coll_go *go) {
    struct op_desc d = ps[0]->d;
    wire_result_shape(d.op, g->size, &d.ndim, d.shape);
    if (go->part) {
        hostpart_reply(s, g, &d, go->part);
        return 0;
    }
    for (int i = 0; i < n; i++)
        op_reply_result(s, ps[i], d.dtype, d.ndim, d.shape, zmq_msg_data(go->data), zmq_msg_size(go->data),
                        go->data);
    return 0;
}

// Member r gets block r of the reduction (sum_scatter).
static int go_block(struct server *s, struct group *g, struct pending **ps, int n, const struct coll_go *go) {
    struct op_desc d = ps[0]->d;
    size_t block = zmq_msg_size(go->data) / (size_t) g->size;
    wire_result_shape(d.op, g->size, &d.ndim, d.shape);
    for (int i = 0; i < n; i++)
        op_reply_result(s, ps[i], d.dtype, d.ndim, d.shape,
                        (const uint8_t *) zmq_msg_data(go->data) + (size_t) ps[i]->rank * block, block, NULL);
    return 0;
}

// The new groups of a split of a spanning group, as the coordinator made them.
static int split_done(struct server *s, struct group *g, struct pending **ps, int n_here, const struct coll_go *cg) {
    (void) ps, (void) n_here;
    const Mlxd__Ctl__Go *go = cg->go;
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
        struct group *sub = group_new(s, g->job, n, ng->group);
        if (!sub) {
            for (int k = 0; k < n; k++)
                if (ng->hosts[k] == me && g->slots[ng->members[k]].coll)
                    pending_fail(s, g->slots[ng->members[k]].coll, MLXD_ENOMEM, "out of memory splitting");
            continue;
        }
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
            coll_reply_split(s, old->coll, sub, k);
        }
        for (int k = 0; died >= 0 && k < n; k++)
            if (ng->hosts[k] == me && g->slots[ng->members[k]].left)
                group_depart(s, sub, k, NULL, g->slots[ng->members[k]].left_why);
        continue;
    bad:
        log_warning("Job %s: the coordinator's split names a rank outside group %016llx", g->job->id,
                    (unsigned long long) g->id);
    }
    return 0;
}

const struct coll coll_span[COLL_OPS] = {
    [MLXD__OP_TYPE__OP_ALL_SUM] = { .arrive = arrive_by_reference, .go = go_whole },
    [MLXD__OP_TYPE__OP_ALL_MAX] = { .arrive = arrive_by_reference, .go = go_whole },
    [MLXD__OP_TYPE__OP_ALL_MIN] = { .arrive = arrive_by_reference, .go = go_whole },
    [MLXD__OP_TYPE__OP_ALL_GATHER] = { .arrive = arrive_by_reference, .go = go_whole },
    [MLXD__OP_TYPE__OP_SUM_SCATTER] = { .arrive = arrive_reduce, .go = go_block },
    [MLXD__OP_TYPE__OP_BARRIER] = { .go = coll_reply_barrier },
    [MLXD__OP_TYPE__OP_SPLIT] = { .go = split_done },
};
