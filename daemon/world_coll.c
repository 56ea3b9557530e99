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

static int run_allreduce(struct egroup *g, struct wmsg *m, reduce_op op, char *err, size_t errlen) {
    MPI_Datatype type;
    MPI_Op mop;
    mlxd_dtype t = (mlxd_dtype) m->d.dtype;
    size_t esize = wire_dtype(m->d.dtype)->size;
    size_t count = zmq_msg_size(&m->data) / esize;
    char *buf = zmq_msg_data(&m->data);
    engine_mpi_type_op(t, op, &type, &mop);
    for (size_t off = 0; off < count; off += CHUNK_ELEMS) {
        int n = (int) (count - off < CHUNK_ELEMS ? count - off : CHUNK_ELEMS);
        int r = MPI_Allreduce(MPI_IN_PLACE, buf + off * esize, n, type, mop, g->comm);
        if (r != MPI_SUCCESS) {
            char e[128];
            engine_mpi_error(r, e, sizeof e);
            snprintf(err, errlen, "MPI_Allreduce across hosts failed: %s", e);
            return MLXD_EINTERNAL;
        }
    }
    return 0;
}

// tmp holds host after host, each host's members in rank order (host c's
// first at displs[c]); out gets them in group rank order. next is scratch.
static void put_in_rank_order(const struct egroup *g, const char *tmp, size_t each, const int *displs, int *next,
                              char *out) {
    for (int c = 0; c < g->ncomm; c++)
        next[c] = 0;
    for (int rank = 0; rank < g->size; rank++)
        for (int c = 0; c < g->ncomm; c++)
            if (g->comm_hosts[c] == g->hosts[rank]) {
                memcpy(out + (size_t) rank * each, tmp + (size_t) (displs[c] + next[c]++) * each, each);
                break;
            }
}

// Every host contributes its members' inputs, concatenated in rank order;
// the result is put back in rank order.
static int run_allgather(struct egroup *g, struct wmsg *m, zmq_msg_t *ret, char *err, size_t errlen) {
    uint64_t nbytes;
    wire_tensor_nbytes(m->d.dtype, (size_t) m->d.ndim, m->d.shape, &nbytes);
    size_t each = (size_t) nbytes;
    int *counts = calloc((size_t) g->ncomm, sizeof *counts), *displs = calloc((size_t) g->ncomm, sizeof *displs);
    int r = 0;
    char *tmp = NULL;
    zmq_msg_init(ret);
    // When each host's ranks follow one another, host after host (the blocks
    // mlxctl launch makes), MPI gathers straight into the result; otherwise
    // into tmp, put in rank order after.
    bool in_order = true;
    for (int rank = 0, c = 0; rank < g->size; rank++) {
        while (c < g->ncomm && g->comm_hosts[c] != g->hosts[rank])
            c++;
        in_order &= c < g->ncomm;
    }
    // Everything this host needs is allocated before the hosts agree to go.
    bool ok = counts && displs && m->has_data && each <= INT_MAX && zmq_msg_init_size(ret, each * (size_t) g->size) == 0 &&
              (each == 0 || in_order || (tmp = malloc(each * (size_t) g->size)));
    snprintf(err, errlen, each > INT_MAX ? "all_gather across hosts moves at most 2 GiB per member"
                                          : "out of memory gathering across hosts");
    r = all_can_take_part(g, ok, err, errlen);
    if (r < 0) {
        if (each > INT_MAX && r == MLXD_ENOMEM)
            r = MLXD_EINVAL;
        goto out;
    }
    for (int rank = 0; rank < g->size; rank++)
        for (int c = 0; c < g->ncomm; c++)
            if (g->comm_hosts[c] == g->hosts[rank])
                counts[c]++;
    for (int c = 1; c < g->ncomm; c++)
        displs[c] = displs[c - 1] + counts[c - 1];
    if (each > 0) {
        // In bytes while the whole fits an int: Open MPI moves a tensor-sized
        // derived datatype an order of magnitude slower than plain bytes.
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
        int e = MPI_Allgatherv(zmq_msg_data(&m->data), (int) (zmq_msg_size(&m->data) / each * scale), unit,
                               in_order ? zmq_msg_data(ret) : tmp, counts, displs, unit, g->comm);
        if (unit != MPI_BYTE)
            MPI_Type_free(&unit);
        for (int c = 0; c < g->ncomm; c++) {
            counts[c] = (int) ((size_t) counts[c] / scale);
            displs[c] = (int) ((size_t) displs[c] / scale);
        }
        if (e != MPI_SUCCESS) {
            char t[128];
            engine_mpi_error(e, t, sizeof t);
            snprintf(err, errlen, "MPI_Allgatherv across hosts failed: %s", t);
            r = MLXD_EINTERNAL;
            goto out;
        }
        if (!in_order)
            put_in_rank_order(g, tmp, each, displs, counts, zmq_msg_data(ret));
    }
out:
    free(tmp);
    free(counts);
    free(displs);
    if (r < 0)
        zmq_msg_close(ret);
    return r;
}

static void run_go(struct world *w, int from, Mlxd__Ctl__Ctl *ctl, struct wmsg *part) {
    const Mlxd__Ctl__Go *go = ctl->go;
    char err[256] = "";
    int code = 0;
    zmq_msg_t result;
    bool has_result = false;

    if (go->code != 0 || !part) {
        engine_emit(w, WORLD_EVENT_GO, from, ctl, NULL, 0, NULL);
        wmsg_free(part);
        return;
    }
    struct egroup *g = egroup_find(w, go->group);
    switch (part->d.op) {
    case MLXD__OP_TYPE__OP_BARRIER:
        break;
    case MLXD__OP_TYPE__OP_SPLIT:
        for (size_t i = 0; i < go->n_split; i++)
            if (go->split[i])
                egroup_add(w, go->split[i]->group, go->split[i]->n_hosts, go->split[i]->hosts);
        break;
    case MLXD__OP_TYPE__OP_ALL_SUM:
    case MLXD__OP_TYPE__OP_SUM_SCATTER:
    case MLXD__OP_TYPE__OP_ALL_MAX:
    case MLXD__OP_TYPE__OP_ALL_MIN:
        if (!g || g->comm == MPI_COMM_NULL) {
            code = MLXD_EINTERNAL;
            snprintf(err, sizeof err, "group %016llx has no communicator on this host", (unsigned long long) go->group);
            break;
        }
        snprintf(err, sizeof err, "this host could not combine its members' part (out of memory)");
        if ((code = all_can_take_part(g, part->has_data, err, sizeof err)) < 0)
            break;
        code = run_allreduce(g, part, wire_op_reduction(part->d.op), err, sizeof err);
        if (code == 0) {
            zmq_msg_init(&result);
            zmq_msg_move(&result, &part->data);
            has_result = true;
        }
        break;
    case MLXD__OP_TYPE__OP_ALL_GATHER:
        if (!g || g->comm == MPI_COMM_NULL) {
            code = MLXD_EINTERNAL;
            snprintf(err, sizeof err, "group %016llx has no communicator on this host", (unsigned long long) go->group);
            break;
        }
        code = run_allgather(g, part, &result, err, sizeof err);
        has_result = code == 0;
        break;
    default:
        code = MLXD_EINTERNAL;
        snprintf(err, sizeof err, "a Go for op %d, which is not a collective", part->d.op);
    }
    if (code < 0)
        log_error("Group %016llx: %s", (unsigned long long) go->group, err);
    engine_emit(w, WORLD_EVENT_GO, from, ctl, has_result ? &result : NULL, code, err);
    wmsg_free(part);
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
