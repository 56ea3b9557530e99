/* Collectives of a group whose members are on several hosts. Once this
 * host's members are in, arrive hands the engine this host's part (the
 * local reduction, or the local inputs in rank order; nothing for barrier
 * and split); the coordinator's Go says when the engine has combined every
 * host's part, and go answers this host's members from the result. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coll.h"
#include "log.h"
#include "result.h"

static int part_reduce(struct server *s, struct group *g, struct pending **ps, int n, zmq_msg_t *part) {
    (void) g;
    uint8_t *frame;
    int r = coll_reduce_inputs(s, ps, n, NULL, part, &frame);
    return r < 0 ? r : 1;
}

static int part_gather(struct server *s, struct group *g, struct pending **ps, int n, zmq_msg_t *part) {
    (void) g;
    bool any_frame, staged;
    int r = coll_gather_inputs(s, ps, n, false, part, &any_frame, &staged);
    return r < 0 ? r : 1;
}

// Every member here gets the whole result (reductions, all_gather), one
// frame their replies share.
static int go_whole(struct server *s, struct group *g, struct pending **ps, int n, const struct coll_go *go) {
    struct op_desc d = ps[0]->d;
    wire_result_shape(d.op, g->size, &d.ndim, d.shape);
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
    [MLXD__OP_TYPE__OP_ALL_SUM] = { .arrive = part_reduce, .go = go_whole },
    [MLXD__OP_TYPE__OP_ALL_MAX] = { .arrive = part_reduce, .go = go_whole },
    [MLXD__OP_TYPE__OP_ALL_MIN] = { .arrive = part_reduce, .go = go_whole },
    [MLXD__OP_TYPE__OP_ALL_GATHER] = { .arrive = part_gather, .go = go_whole },
    [MLXD__OP_TYPE__OP_SUM_SCATTER] = { .arrive = part_reduce, .go = go_block },
    [MLXD__OP_TYPE__OP_BARRIER] = { .go = coll_reply_barrier },
    [MLXD__OP_TYPE__OP_SPLIT] = { .go = split_done },
};
