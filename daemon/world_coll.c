/* The executor of spanning groups' collectives: the engine runs them strictly
 * in the order their Go messages arrive, each once this host's part is there,
 * on the group's own communicator. Runs on the engine thread only. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "wire.h"
#include "world_int.h"

static struct wmsg *take_local(struct world *w, uint64_t group, uint64_t seq) {
    for (struct wmsg **p = &w->locals; *p; p = &(*p)->next)
        if ((*p)->group == group && (*p)->seq == seq) {
            struct wmsg *m = *p;
            *p = m->next;
            return m;
        }
    return NULL;
}

static void drop_locals(struct world *w, uint64_t group) {
    for (struct wmsg **p = &w->locals; *p;) {
        if ((*p)->group == group) {
            struct wmsg *m = *p;
            *p = m->next;
            engine_release_part(w, m->part);
            wmsg_free(m);
        } else {
            p = &(*p)->next;
        }
    }
}

/* ---- collectives ---- */

// Before a collective's data moves, every host says whether it can take
// part (its buffers are there): a host that cannot must still make the same
// MPI calls as the others, so that none is left waiting in a collective the
// others skipped. One int, MIN over the hosts.
static int all_can_take_part(struct egroup *g, bool ok, char *err, size_t errlen) {
    int v = ok;
    int r = MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MIN, g->comm);
    if (r != MPI_SUCCESS) {
        char e[128];
        engine_mpi_error(r, e, sizeof e);
        snprintf(err, errlen, "MPI across hosts failed: %s", e);
        return MLXD_EINTERNAL;
    }
    if (!v) {
        if (ok)
            snprintf(err, errlen, "another host could not take part (out of memory)");
        return MLXD_ENOMEM;
    }
    return 0;
}

static int mpi_failed(int e, const char *call, char *err, size_t errlen) {
    char t[128];
    engine_mpi_error(e, t, sizeof t);
    snprintf(err, errlen, "%s across hosts failed: %s", call, t);
    return MLXD_EINTERNAL;
}

// sum_scatter's reduction, in place in the message, in blocks: Open MPI's
// own buffers stay block-sized.
static int run_allreduce(struct egroup *g, struct wmsg *m, reduce_op op, char *err, size_t errlen) {
    MPI_Datatype type;
    MPI_Op mop;
    size_t esize = wire_dtype(m->d.dtype)->size, block = PIPE_BLOCK / esize * esize, n = zmq_msg_size(&m->data);
    uint8_t *buf = zmq_msg_data(&m->data);
    engine_mpi_type_op((mlxd_dtype) m->d.dtype, op, &type, &mop);
    for (size_t off = 0; off < n; off += block) {
        size_t len = n - off < block ? n - off : block;
        int e = MPI_Allreduce(MPI_IN_PLACE, buf + off, (int) (len / esize), type, mop, g->comm);
        if (e != MPI_SUCCESS)
            return mpi_failed(e, "MPI_Allreduce", err, errlen);
    }
    return 0;
}

// tmp holds host after host, each host's members in rank order (host c's
// first at displs[c]); out gets them in group rank order. next is scratch.
static void put_in_rank_order(const struct egroup *g, const uint8_t *tmp, size_t each, const int *displs, int *next,
                              uint8_t *out) {
    for (int c = 0; c < g->ncomm; c++)
        next[c] = 0;
    for (int rank = 0; rank < g->size; rank++)
        for (int c = 0; c < g->ncomm; c++)
            if (g->comm_hosts[c] == g->hosts[rank]) {
                memcpy(out + (size_t) rank * each, tmp + (size_t) (displs[c] + next[c]++) * each, each);
                break;
            }
}

static uint64_t op_bytes(const struct wmsg *m) {
    uint64_t nbytes = 0;
    wire_tensor_nbytes(m->d.dtype, (size_t) m->d.ndim, m->d.shape, &nbytes);
    return nbytes;
}

// A small reduction is one exchange: each host's word on whether it can take
// part travels with its local reduction (one MPI_Allgather), and every host
// folds the hosts' parts in the same order, so that all get the same bits.
static int run_small_reduce(struct world *w, struct egroup *g, struct wmsg *m, reduce_op op, char *err,
                            size_t errlen) {
    struct world_part *part = m->part;
    mlxd_dtype t = (mlxd_dtype) m->d.dtype;
    size_t nbytes = (size_t) op_bytes(m), count = nbytes / wire_dtype(m->d.dtype)->size;
    size_t rec = SMALL_HEADER + (nbytes + 15) / 16 * 16;
    uint8_t *mine = g->small + (size_t) g->ncomm * rec;
    int32_t ok = part != NULL;
    memcpy(mine, &ok, sizeof ok);
    if (ok)
        part_reduce(part, op, t, 0, count, mine + SMALL_HEADER);
    int e = MPI_Allgather(mine, (int) rec, MPI_BYTE, g->small, (int) rec, MPI_BYTE, g->comm);
    if (e != MPI_SUCCESS)
        return mpi_failed(e, "MPI_Allgather", err, errlen);
    for (int c = 0; c < g->ncomm; c++) {
        int32_t v;
        memcpy(&v, g->small + (size_t) c * rec, sizeof v);
        if (!v) {
            snprintf(err, errlen, ok ? "another host could not take part (out of memory)"
                                     : "this host could not combine its members' part (out of memory)");
            return MLXD_ENOMEM;
        }
        g->small_parts[c] = g->small + (size_t) c * rec + SMALL_HEADER;
    }
    reduce_n(op, t, part->dst, (const void *const *) g->small_parts, (size_t) g->ncomm, count);
    for (size_t i = 0; i < part->ncopies; i++)
        memcpy(part->copies[i], part->dst, nbytes);
    return 0;
}

// A reduction in blocks, on the members' memory: the helper reduces the
// local inputs of block k + 1 into dst while MPI moves block k (in place),
// and copies each finished block on to the other outputs. One member whose
// input is not dst needs no local reduction: MPI reads its input and writes
// dst.
static int run_reduce(struct world *w, struct egroup *g, struct wmsg *m, reduce_op op, char *err, size_t errlen) {
    struct world_part *part = m->part;
    if (op_bytes(m) <= SMALL_BYTES)
        return run_small_reduce(w, g, m, op, err, errlen);
    snprintf(err, errlen, "this host could not combine its members' part (out of memory)");
    int code = all_can_take_part(g, part != NULL, err, errlen);
    if (code < 0)
        return code;
    mlxd_dtype t = (mlxd_dtype) m->d.dtype;
    // Each block is one blocking MPI call, which every host enters and
    // leaves together: smaller blocks overlap more of the local reduction,
    // but cost a meeting each (on a loaded machine, 8 blocks of 256 KiB
    // took 5 to 10 times as long as 1 of 2 MiB).
    size_t esize = wire_dtype(m->d.dtype)->size, block = PIPE_BLOCK;
    size_t nblocks = (part->nbytes + block - 1) / block;
    bool direct = part->nsrcs == 1 && part->srcs[0] != part->dst, reduce = part->nsrcs > 1;
    bool helper = reduce || part->ncopies > 0;
    MPI_Datatype type;
    MPI_Op mop;
    engine_mpi_type_op(t, op, &type, &mop);
    // Where the time goes, for the debug log: waiting for the local
    // reduction, in MPI, and for the last copies.
    uint64_t t0 = wire_now_us(), waited = 0, in_mpi = 0;
    if (helper)
        pipe_start(w->pipe, part, op, t, block, reduce);
    for (size_t k = 0; k < nblocks; k++) {
        size_t off = k * block, len = part->nbytes - off < block ? part->nbytes - off : block;
        uint64_t a = wire_now_us();
        if (reduce)
            pipe_wait_reduced(w->pipe, k);
        uint64_t b = wire_now_us();
        int e = MPI_Allreduce(direct ? part->srcs[0] + off : MPI_IN_PLACE, part->dst + off, (int) (len / esize), type,
                              mop, g->comm);
        waited += b - a;
        in_mpi += wire_now_us() - b;
        if (e != MPI_SUCCESS) {
            code = mpi_failed(e, "MPI_Allreduce", err, errlen);
            break;
        }
        if (helper)
            pipe_sent(w->pipe, k);
    }
    uint64_t c = wire_now_us();
    if (helper)
        pipe_finish(w->pipe, code < 0);
    log_debug("Group %016llx: %zu bytes in %zu blocks of %zu members here in %.3f ms: %.3f in MPI, %.3f waiting for "
              "the local reduction, %.3f for the last copies", (unsigned long long) g->id, part->nbytes, nblocks,
              part->nsrcs, (wire_now_us() - t0) / 1e3, in_mpi / 1e3, waited / 1e3, (wire_now_us() - c) / 1e3);
    return code;
}

// How many members each host has (counts, in comm order) and where its
// first is in host-after-host order (displs); whether that order is the
// group's rank order (each host's ranks follow one another, the blocks
// mlxctl launch makes), so that MPI can gather straight into the result.
static bool gather_layout(const struct egroup *g, int *counts, int *displs) {
    bool in_order = true;
    for (int rank = 0, c = 0; rank < g->size; rank++) {
        while (c < g->ncomm && g->comm_hosts[c] != g->hosts[rank])
            c++;
        in_order &= c < g->ncomm;
    }
    for (int rank = 0; rank < g->size; rank++)
        for (int c = 0; c < g->ncomm; c++)
            if (g->comm_hosts[c] == g->hosts[rank])
                counts[c]++;
    for (int c = 1; c < g->ncomm; c++)
        displs[c] = displs[c - 1] + counts[c - 1];
    return in_order;
}

// MPI_Allgatherv of members of each bytes: the counts in bytes while the
// whole fits an int (Open MPI moves a tensor-sized derived datatype an order
// of magnitude slower than plain bytes), else in members.
static int allgatherv(const struct egroup *g, const void *send, int me, uint8_t *recv, int *counts, int *displs,
                      size_t each) {
    MPI_Datatype unit = MPI_BYTE;
    size_t scale = each;
    if (each * (size_t) g->size > INT_MAX) {
        MPI_Type_contiguous((int) each, MPI_BYTE, &unit);
        MPI_Type_commit(&unit);
        scale = 1;
    }
    for (int c = 0; c < g->ncomm; c++) {
        counts[c] = (int) ((size_t) counts[c] * scale);
        displs[c] = (int) ((size_t) displs[c] * scale);
    }
    int e = MPI_Allgatherv(send, counts[me], unit, recv, counts, displs, unit, g->comm);
    if (unit != MPI_BYTE)
        MPI_Type_free(&unit);
    for (int c = 0; c < g->ncomm; c++) {
        counts[c] = (int) ((size_t) counts[c] / scale);
        displs[c] = (int) ((size_t) displs[c] / scale);
    }
    return e;
}

static int comm_rank_of(const struct egroup *g, int host) {
    for (int c = 0; c < g->ncomm; c++)
        if (g->comm_hosts[c] == host)
            return c;
    return -1;
}

// The local members' inputs into their places from at (skipping one already
// there), for MPI to gather in place; or, when direct and there is one
// member whose input lies outside the result, that input for MPI to read.
static const void *gather_send(const struct world_part *part, uint8_t *at, size_t each, size_t total, bool direct) {
    const uint8_t *in = part->srcs[0];
    if (direct && part->nsrcs == 1 && (in + each <= part->dst || in >= part->dst + total))
        return in;
    for (size_t i = 0; i < part->nsrcs; i++)
        if (part->srcs[i] != at + i * each)
            memmove(at + i * each, part->srcs[i], each);
    return MPI_IN_PLACE;
}

// Every host's members' inputs into dst, in rank order: straight from the
// members' memory into the result when hosts hold blocks of ranks, else
// through a staging buffer put in rank order after.
static int run_gather(struct world *w, struct egroup *g, struct wmsg *m, char *err, size_t errlen) {
    struct world_part *part = m->part;
    size_t each = (size_t) op_bytes(m), total = each * (size_t) g->size;
    int *counts = calloc((size_t) g->ncomm, sizeof *counts), *displs = calloc((size_t) g->ncomm, sizeof *displs);
    int me = comm_rank_of(g, w->rank), r = 0;
    uint8_t *tmp = NULL;
    bool in_order = counts && displs && gather_layout(g, counts, displs);
    // Everything this host needs is allocated before the hosts agree to go.
    bool ok = counts && displs && part && me >= 0 && each <= INT_MAX &&
              (each == 0 || in_order || (tmp = malloc(total)));
    snprintf(err, errlen, each > INT_MAX ? "all_gather across hosts moves at most 2 GiB per member"
                                          : "out of memory gathering across hosts");
    r = all_can_take_part(g, ok, err, errlen);
    if (r < 0) {
        if (each > INT_MAX && r == MLXD_ENOMEM)
            r = MLXD_EINVAL;
        goto out;
    }
    if (each > 0) {
        uint8_t *base = in_order ? part->dst : tmp;
        const void *send = gather_send(part, base + (size_t) displs[me] * each, each, total, in_order);
        int e = allgatherv(g, send, me, base, counts, displs, each);
        if (e != MPI_SUCCESS) {
            r = mpi_failed(e, "MPI_Allgatherv", err, errlen);
            goto out;
        }
        if (!in_order)
            put_in_rank_order(g, tmp, each, displs, counts, part->dst);
        for (size_t i = 0; i < part->ncopies; i++)
            memcpy(part->copies[i], part->dst, total);
    }
out:
    free(tmp);
    free(counts);
    free(displs);
    return r;
}

// sum_scatter: the local members' reduction travels in the message; the
// result comes back in it.
static int run_scatter(struct egroup *g, struct wmsg *m, char *err, size_t errlen) {
    snprintf(err, errlen, "this host could not combine its members' part (out of memory)");
    int code = all_can_take_part(g, m->has_data, err, errlen);
    if (code < 0)
        return code;
    return run_allreduce(g, m, REDUCE_SUM, err, errlen);
}

static int run_op(struct world *w, const Mlxd__Ctl__Go *go, struct wmsg *m, char *err, size_t errlen) {
    struct egroup *g = egroup_find(w, go->group);
    switch (m->d.op) {
    case MLXD__OP_TYPE__OP_BARRIER:
        return 0;
    case MLXD__OP_TYPE__OP_SPLIT:
        for (size_t i = 0; i < go->n_split; i++)
            if (go->split[i])
                egroup_add(w, go->split[i]->group, go->split[i]->n_hosts, go->split[i]->hosts);
        return 0;
    case MLXD__OP_TYPE__OP_ALL_SUM:
    case MLXD__OP_TYPE__OP_SUM_SCATTER:
    case MLXD__OP_TYPE__OP_ALL_MAX:
    case MLXD__OP_TYPE__OP_ALL_MIN:
    case MLXD__OP_TYPE__OP_ALL_GATHER:
        break;
    default:
        snprintf(err, errlen, "a Go for op %d, which is not a collective", m->d.op);
        return MLXD_EINTERNAL;
    }
    if (!g || g->comm == MPI_COMM_NULL) {
        snprintf(err, errlen, "group %016llx has no communicator on this host", (unsigned long long) go->group);
        return MLXD_EINTERNAL;
    }
    if (m->d.op == MLXD__OP_TYPE__OP_SUM_SCATTER)
        return run_scatter(g, m, err, errlen);
    if (m->d.op == MLXD__OP_TYPE__OP_ALL_GATHER)
        return run_gather(w, g, m, err, errlen);
    return run_reduce(w, g, m, wire_op_reduction(m->d.op), err, errlen);
}

static void run_go(struct world *w, int from, Mlxd__Ctl__Ctl *ctl, struct wmsg *m) {
    const Mlxd__Ctl__Go *go = ctl->go;
    char err[256] = "";
    int code = 0;
    if (go->code == 0 && m)
        code = run_op(w, go, m, err, sizeof err);
    if (code < 0)
        log_error("Group %016llx: %s", (unsigned long long) go->group, err);
    if (m && m->type == WMSG_PART)
        engine_emit_go(w, from, ctl, m->part, code, err);
    else
        engine_emit(w, WORLD_EVENT_GO, from, ctl, code == 0 && m && m->has_data ? &m->data : NULL, code, err);
    wmsg_free(m);
}

// Runs the ordered queue as far as it can: a Go waits for this host's part.
void engine_run_fifo(struct world *w) {
    struct fifo_item *it;
    while ((it = w->fifo)) {
        Mlxd__Ctl__Ctl *ctl = it->ctl;
        struct wmsg *part = NULL;
        switch (ctl->body_case) {
        case MLXD__CTL__CTL__BODY_FORM:
            egroup_add(w, ctl->form->group, ctl->form->n_hosts, ctl->form->hosts);
            engine_emit(w, WORLD_EVENT_CTL, it->from, ctl, NULL, 0, NULL);
            break;
        case MLXD__CTL__CTL__BODY_GO:
            if (ctl->go->code == 0) {
                part = take_local(w, ctl->go->group, ctl->go->seq);
                if (!part) {
                    uint64_t now = wire_now_us();
                    if (!w->go_wait_since)
                        w->go_wait_since = now;
                    else if (now - w->go_wait_since > 10u * 1000000u) {
                        log_warning("Group %016llx op #%llu: waiting 10 s for this host's part",
                                    (unsigned long long) ctl->go->group, (unsigned long long) ctl->go->seq + 1);
                        w->go_wait_since = now;
                    }
                    return;
                }
            } else {
                drop_locals(w, ctl->go->group);
            }
            w->go_wait_since = 0;
            run_go(w, it->from, ctl, part);
            break;
        case MLXD__CTL__CTL__BODY_ABORT:
            drop_locals(w, ctl->abort->group);
            engine_emit(w, WORLD_EVENT_CTL, it->from, ctl, NULL, 0, NULL);
            break;
        case MLXD__CTL__CTL__BODY_GROUP_FREE:
            drop_locals(w, ctl->group_free->group);
            egroup_free(w, ctl->group_free->group);
            engine_emit(w, WORLD_EVENT_CTL, it->from, ctl, NULL, 0, NULL);
            break;
        default:
            engine_emit(w, WORLD_EVENT_CTL, it->from, ctl, NULL, 0, NULL);
            break;
        }
        w->fifo = it->next;
        if (!w->fifo)
            w->fifo_tail = &w->fifo;
        free(it);
    }
}
