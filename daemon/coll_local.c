/* Collectives of a group whose members are all on this host: one pass over
 * the inputs, results written straight into the members' shared-memory
 * outputs where they can go, else into one frame their replies share. The
 * local reduction here also makes a host's part of a sum_scatter of a
 * spanning group (coll_span.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coll.h"
#include "log.h"
#include "pool.h"
#include "reduce.h"
#include "result.h"

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

int coll_reduce_inputs(struct server *s, struct pending **ps, int n, uint8_t **outs, zmq_msg_t *result,
                       uint8_t **frame) {
    struct pending *first = ps[0];
    size_t esize = wire_dtype(first->d.dtype)->size, nbytes = first->nbytes;
    const uint8_t **srcs = malloc((size_t) n * sizeof *srcs);
    uint8_t **copies = malloc(((size_t) n + 1) * sizeof *copies);
    uint8_t *dst = NULL;
    bool any_frame = !outs;
    int code = MLXD_ENOMEM;

    *frame = NULL;
    if (!srcs || !copies)
        goto out;
    for (int r = 0; r < n; r++) {
        struct pending *p = ps[r];
        srcs[r] = pending_input(p);
        if (!outs)
            continue;
        bool direct = p->out_ptr && p->out_nbytes == nbytes && !overlaps_input(p, 0);
        outs[r] = direct ? p->out_ptr : NULL;
        any_frame |= !direct;
        if (!dst)
            dst = outs[r];
    }
    if (any_frame) {
        // The first member's inline buffer takes the result (every inline
        // member's reply then shares it: zmq_msg_copy counts references),
        // unless its input is in shared memory, which must not be written.
        // Small messages live inside the zmq_msg_t: take pointers after the
        // move.
        if (!first->in_ptr && !dst) {
            zmq_msg_move(result, &first->data);
            srcs[0] = zmq_msg_data(result);
        } else if (zmq_msg_init_size(result, nbytes) < 0) {
            goto out;
        }
        *frame = zmq_msg_data(result);
        if (!dst)
            dst = *frame;
    }
    // One pass over the inputs: each block is reduced into the first output,
    // then copied to the other outputs while it is still in cache.
    struct pool_reduce j = { .op = wire_op_reduction(first->d.op), .t = (mlxd_dtype) first->d.dtype,
                             .n = (size_t) n, .count = nbytes / esize, .nparts = 1, .srcs = srcs, .dsts = &dst,
                             .copies = copies };
    for (int r = 0; outs && r < n; r++)
        if (outs[r] && outs[r] != dst)
            copies[j.ncopies++] = outs[r];
    if (*frame && *frame != dst)
        copies[j.ncopies++] = *frame;
    code = pool_reduce(s->pool, &j) < 0 ? MLXD_ENOMEM : 0;
out:
    free(srcs);
    free(copies);
    return code;
}

static int run_reduce(struct server *s, struct group *g, struct pending **ps, int n, const struct coll_go *go) {
    (void) g, (void) go;
    uint8_t **outs = calloc((size_t) n, sizeof *outs), *frame = NULL;
    struct op_desc d = ps[0]->d;
    size_t nbytes = ps[0]->nbytes;
    zmq_msg_t result;
    zmq_msg_init(&result);
    int code = outs ? coll_reduce_inputs(s, ps, n, outs, &result, &frame) : MLXD_ENOMEM;
    for (int r = 0; code == 0 && r < n; r++)
        op_reply_result(s, ps[r], d.dtype, d.ndim, d.shape, outs[r] ? outs[r] : frame, nbytes,
                        outs[r] || !frame ? NULL : &result);
    zmq_msg_close(&result);
    free(outs);
    return code;
}

// The inputs of ps[n] concatenated in order: straight into the members'
// shared-memory outputs of the right size, and into *result (a new frame)
// when a member needs one (*any_frame) or outputs overlap inputs (*staged:
// every member is then answered from the frame).
static int gather_inputs(struct server *s, struct pending **ps, int n, zmq_msg_t *result, bool *any_frame,
                         bool *staged) {
    size_t each = ps[0]->nbytes, total = each * (size_t) n, nouts = 0;
    *any_frame = false;
    *staged = false;
    for (int r = 0; r < n; r++) {
        *any_frame |= !ps[r]->out_ptr || ps[r]->out_nbytes != total;
        // Gathering in place (x at its own block of out) is fine; any other
        // overlap is gathered aside first.
        *staged |= overlaps_input(ps[r], (size_t) r * each);
    }
    bool framed = *any_frame || *staged;
    const uint8_t **srcs = malloc((size_t) n * sizeof *srcs);
    uint8_t **outs = malloc(((size_t) n + 1) * sizeof *outs);
    if (!srcs || !outs || (framed && zmq_msg_init_size(result, total) < 0)) {
        free(srcs);
        free(outs);
        return MLXD_ENOMEM;
    }
    for (int r = 0; r < n; r++)
        srcs[r] = pending_input(ps[r]);
    if (framed)
        outs[nouts++] = zmq_msg_data(result);
    // Straight into each shared-memory output (skipping a member's own
    // block when it gathers in place); staged, the frame is copied there
    // when answering.
    for (int r = 0; r < n && !*staged; r++)
        if (ps[r]->out_ptr && ps[r]->out_nbytes == total)
            outs[nouts++] = ps[r]->out_ptr;
    pool_gather(s->pool, outs, nouts, srcs, (size_t) n, each);
    free(srcs);
    free(outs);
    return 0;
}

static int run_gather(struct server *s, struct group *g, struct pending **ps, int n, const struct coll_go *go) {
    (void) g, (void) go;
    size_t total = ps[0]->nbytes * (size_t) n;
    struct op_desc d = ps[0]->d;
    bool any_frame, staged;
    zmq_msg_t result;
    zmq_msg_init(&result);
    int code = gather_inputs(s, ps, n, &result, &any_frame, &staged);
    const uint8_t *frame = any_frame || staged ? zmq_msg_data(&result) : NULL;
    wire_result_shape(d.op, n, &d.ndim, d.shape);
    for (int r = 0; code == 0 && r < n; r++) {
        struct pending *p = ps[r];
        bool direct = !staged && p->out_ptr && p->out_nbytes == total;
        op_reply_result(s, p, d.dtype, d.ndim, d.shape, direct ? p->out_ptr : frame, total,
                        direct || !any_frame ? NULL : &result);
    }
    zmq_msg_close(&result);
    return code;
}

static int run_scatter(struct server *s, struct group *g, struct pending **ps, int n, const struct coll_go *go) {
    (void) g, (void) go;
    struct pending *first = ps[0];
    size_t esize = wire_dtype(first->d.dtype)->size;
    size_t block = first->nbytes / (size_t) n;
    bool staged = false;
    for (int r = 0; r < n; r++)
        staged |= overlaps_input(ps[r], SIZE_MAX);
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
        struct pending *p = ps[r];
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
        srcs[i] = pending_input(ps[i]);
    struct pool_reduce j = { .op = REDUCE_SUM, .t = (mlxd_dtype) first->d.dtype, .n = (size_t) n,
                             .count = block / esize, .stride = block, .nparts = (size_t) n, .srcs = srcs, .dsts = dst };
    if (pool_reduce(s->pool, &j) < 0) {
        code = MLXD_ENOMEM;
        goto done;
    }
    struct op_desc d = first->d;
    wire_result_shape(d.op, n, &d.ndim, d.shape);
    for (int r = 0; r < n; r++) {
        struct pending *p = ps[r];
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

static int run_split(struct server *s, struct group *g, struct pending **ps, int n_all, const struct coll_go *go) {
    (void) go;
    const struct op_desc **d = coll_descs(ps, n_all);
    int *order = malloc((size_t) g->size * sizeof *order);
    if (!d || !order || split_plan(d, g->size, order) < 0) {
        free(d);
        free(order);
        return MLXD_ENOMEM;
    }
    for (int i = 0; i < g->size;) {
        int n = split_run(d, g->size, order, i);
        struct group *ng = group_new(s, g->job, n, 0);
        if (!ng) {
            free(d);
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
            coll_reply_split(s, old->coll, ng, k);
        }
        log_debug("Job %s: split group %016llx color %d -> group %016llx of %d", g->job->id, (unsigned long long) g->id,
                  d[order[i]]->color, (unsigned long long) ng->id, n);
        i += n;
    }
    free(d);
    free(order);
    return 0;
}

int coll_reply_barrier(struct server *s, struct group *g, struct pending **ps, int n, const struct coll_go *go) {
    (void) g, (void) go;
    for (int r = 0; r < n; r++)
        op_reply_empty(s, ps[r]);
    return 0;
}

void coll_reply_split(struct server *s, struct pending *p, const struct group *ng, int k) {
    Mlxd__OpReply o = MLXD__OP_REPLY__INIT;
    Mlxd__Reply r = MLXD__REPLY__INIT;
    o.group = ng->id;
    o.rank = k;
    o.size = ng->size;
    o.token = ng->slots[k].token;
    r.body_case = MLXD__REPLY__BODY_OP;
    r.op = &o;
    pending_finish(s, p, &r, NULL, 0);
}

const struct coll coll_local[COLL_OPS] = {
    [MLXD__OP_TYPE__OP_ALL_SUM] = { .go = run_reduce },
    [MLXD__OP_TYPE__OP_ALL_MAX] = { .go = run_reduce },
    [MLXD__OP_TYPE__OP_ALL_MIN] = { .go = run_reduce },
    [MLXD__OP_TYPE__OP_ALL_GATHER] = { .go = run_gather },
    [MLXD__OP_TYPE__OP_SUM_SCATTER] = { .go = run_scatter },
    [MLXD__OP_TYPE__OP_BARRIER] = { .go = coll_reply_barrier },
    [MLXD__OP_TYPE__OP_SPLIT] = { .go = run_split },
};
