/* The engine's MPI transport: MPI's start-up and end, the datatypes and
 * reductions MPI runs with, control messages between daemons (the ordered
 * queue, the coordinator on world rank 0), point-to-point bytes between
 * hosts, and the communicators of spanning groups. Runs on the engine thread
 * only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "wire.h"
#include "world_int.h"

/* ---- dtypes and reductions for MPI ----
 * MPI's user functions get no context, so the datatypes that name our dtypes
 * are process-wide: set once by the engine before any collective. */
static MPI_Datatype mpi_dtypes[MLXD_DTYPE_MAX];
static MPI_Op mpi_ops[REDUCE_OP_MAX];

static void user_reduce(void *in, void *inout, int *len, MPI_Datatype *dt, reduce_op op) {
    for (int t = 0; t < MLXD_DTYPE_MAX; t++)
        if (mpi_dtypes[t] == *dt) {
            reduce_into(op, (mlxd_dtype) t, inout, in, (size_t) *len);
            return;
        }
}

static void user_sum(void *in, void *inout, int *len, MPI_Datatype *dt) {
    user_reduce(in, inout, len, dt, REDUCE_SUM);
}

static void user_max(void *in, void *inout, int *len, MPI_Datatype *dt) {
    user_reduce(in, inout, len, dt, REDUCE_MAX);
}

static void user_min(void *in, void *inout, int *len, MPI_Datatype *dt) {
    user_reduce(in, inout, len, dt, REDUCE_MIN);
}

static int setup_reductions(void) {
    for (int t = 0; t < MLXD_DTYPE_MAX; t++) {
        if (MPI_Type_contiguous((int) wire_dtype((uint32_t) t)->size, MPI_BYTE, &mpi_dtypes[t]) != MPI_SUCCESS ||
            MPI_Type_commit(&mpi_dtypes[t]) != MPI_SUCCESS)
            return -EIO;
    }
    MPI_User_function *fns[REDUCE_OP_MAX] = { user_sum, user_max, user_min };
    for (int op = 0; op < REDUCE_OP_MAX; op++)
        if (MPI_Op_create(fns[op], 1, &mpi_ops[op]) != MPI_SUCCESS)
            return -EIO;
    return 0;
}

// MPI's own type and op where they compute exactly what ours would (they are
// faster), else ours.
void engine_mpi_type_op(mlxd_dtype t, reduce_op op, MPI_Datatype *ret_type, MPI_Op *ret_op) {
    if (op == REDUCE_SUM && t == MLXD_FLOAT32) {
        *ret_type = MPI_FLOAT;
        *ret_op = MPI_SUM;
    } else if (op == REDUCE_SUM && t == MLXD_FLOAT64) {
        *ret_type = MPI_DOUBLE;
        *ret_op = MPI_SUM;
    } else {
        *ret_type = mpi_dtypes[t];
        *ret_op = mpi_ops[op];
    }
}

void engine_mpi_error(int err, char *buf, size_t size) {
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(err, s, &len) != MPI_SUCCESS)
        len = snprintf(s, sizeof s, "MPI error %d", err);
    if (len < 0)
        len = 0;
    if ((size_t) len >= size)
        len = (int) size - 1;
    memcpy(buf, s, (size_t) len);
    buf[len] = '\0';
}

/* ---- sending control messages ---- */

static void isend(struct world *w, int dest, uint8_t *buf, size_t len, int tag) {
    if (w->n_isends == w->cap_isends) {
        size_t cap = w->cap_isends ? w->cap_isends * 2 : 16;
        void *v = realloc(w->isends, cap * sizeof *w->isends);
        if (!v) {
            log_error("Out of memory sending a control message to world rank %d; dropped it", dest);
            free(buf);
            return;
        }
        w->isends = v;
        w->cap_isends = cap;
    }
    int r = MPI_Isend(buf, (int) len, MPI_BYTE, dest, tag, w->control, &w->isends[w->n_isends].req);
    if (r != MPI_SUCCESS) {
        char e[256];
        engine_mpi_error(r, e, sizeof e);
        log_error("MPI_Isend to world rank %d failed: %s", dest, e);
        free(buf);
        return;
    }
    w->isends[w->n_isends++].buf = buf;
}

// Sends a packed control message (taking buf) to dest, or queues it for this
// daemon itself.
void engine_send_packed(struct world *w, int dest, uint8_t *buf, size_t len) {
    if (dest == w->rank) {
        struct self_item *it = malloc(sizeof *it);
        if (!it) {
            free(buf);
            log_error("Out of memory queueing a control message; dropped it");
            return;
        }
        *it = (struct self_item) { .buf = buf, .len = len };
        *w->self_tail = it;
        w->self_tail = &it->next;
        return;
    }
    isend(w, dest, buf, len, TAG_CTL);
}

static void flush_outbox(struct world *w) {
    for (size_t i = 0; i < w->out.n; i++) {
        engine_send_packed(w, w->out.v[i].dest, w->out.v[i].buf, w->out.v[i].len);
        w->out.v[i].buf = NULL;
    }
    ctl_outbox_clear(&w->out);
}

void engine_progress_isends(struct world *w) {
    size_t k = 0;
    for (size_t i = 0; i < w->n_isends; i++) {
        int done = 0;
        MPI_Test(&w->isends[i].req, &done, MPI_STATUS_IGNORE);
        if (done)
            free(w->isends[i].buf);
        else
            w->isends[k++] = w->isends[i];
    }
    w->n_isends = k;
}

/* ---- spanning groups ---- */

struct egroup *egroup_find(struct world *w, uint64_t id) {
    for (struct egroup *g = w->groups; g; g = g->next)
        if (g->id == id)
            return g;
    return NULL;
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *) a, y = *(const int *) b;
    return (x > y) - (x < y);
}

// Registers a group given the host of each of its ranks, and creates its
// communicator when it spans hosts and includes this one. Every host of the
// group does this for the same message in the same order (a Form or a Go),
// so MPI_Comm_create_group's collective calls line up.
void egroup_add(struct world *w, uint64_t id, size_t n, const int32_t *hosts) {
    int *sorted = malloc(n * sizeof *sorted), ncomm = 0;
    bool me = false;
    if (!sorted)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        if (hosts[i] < 0 || hosts[i] >= w->size) {
            log_error("Group %016llx names world rank %d, outside the world", (unsigned long long) id, hosts[i]);
            free(sorted);
            return;
        }
        sorted[i] = hosts[i];
        me |= hosts[i] == w->rank;
    }
    qsort(sorted, n, sizeof *sorted, cmp_int);
    for (size_t i = 0; i < n; i++)
        if (i == 0 || sorted[i] != sorted[i - 1])
            sorted[ncomm++] = sorted[i];
    if (!me || ncomm < 2 || egroup_find(w, id)) {
        free(sorted);
        return;
    }
    struct egroup *g = calloc(1, sizeof *g);
    size_t small = (size_t) (ncomm + 1) * (SMALL_HEADER + SMALL_BYTES);
    if (!g || !(g->hosts = malloc(n * sizeof *g->hosts)) || !(g->small = malloc(small)) ||
        !(g->small_parts = calloc((size_t) ncomm, sizeof *g->small_parts))) {
        if (g) {
            free(g->hosts);
            free(g->small);
        }
        free(g);
        free(sorted);
        goto oom;
    }
    for (size_t i = 0; i < n; i++)
        g->hosts[i] = hosts[i];
    g->id = id;
    g->size = (int) n;
    g->ncomm = ncomm;
    g->comm_hosts = sorted;
    MPI_Group world_grp, grp;
    MPI_Comm_group(w->data, &world_grp);
    MPI_Group_incl(world_grp, ncomm, sorted, &grp);
    int r = MPI_Comm_create_group(w->data, grp, 0, &g->comm);
    MPI_Group_free(&grp);
    MPI_Group_free(&world_grp);
    if (r != MPI_SUCCESS) {
        char e[256];
        engine_mpi_error(r, e, sizeof e);
        log_error("Failed to create the communicator of group %016llx: %s", (unsigned long long) id, e);
        g->comm = MPI_COMM_NULL;
    } else {
        MPI_Comm_set_errhandler(g->comm, MPI_ERRORS_RETURN);
    }
    g->next = w->groups;
    w->groups = g;
    log_debug("Group %016llx spans %d hosts", (unsigned long long) id, ncomm);
    return;
oom:
    log_error("Out of memory registering group %016llx", (unsigned long long) id);
}

void egroup_free(struct world *w, uint64_t id) {
    for (struct egroup **p = &w->groups; *p; p = &(*p)->next) {
        struct egroup *g = *p;
        if (g->id != id)
            continue;
        *p = g->next;
        if (g->comm != MPI_COMM_NULL)
            MPI_Comm_free(&g->comm);
        free(g->hosts);
        free(g->comm_hosts);
        free(g->small);
        free(g->small_parts);
        free(g);
        return;
    }
}

/* ---- incoming messages ---- */

// Without memory for a message's bytes they are still received, into
// nothing: each chunk completes truncated (MPI_ERR_TRUNCATE, which
// MPI_ERRORS_RETURN reports), so that the sender's next messages are not
// misread. The receive that waited for them runs into its deadline.
static void discard_p2p(struct world *w, int from, Mlxd__Ctl__Ctl *ctl) {
    uint64_t n = ctl->p2p->nbytes;
    log_error("Out of memory receiving %llu bytes from world rank %d; dropped them", (unsigned long long) n, from);
    for (uint64_t off = 0; off < n; off += CHUNK_BYTES)
        MPI_Recv(NULL, 0, MPI_BYTE, from, TAG_DATA, w->control, MPI_STATUS_IGNORE);
    mlxd__ctl__ctl__free_unpacked(ctl, NULL);
}

static void post_p2p_recv(struct world *w, int from, Mlxd__Ctl__Ctl *ctl) {
    const Mlxd__Ctl__P2P *h = ctl->p2p;
    struct p2p_in *in = calloc(1, sizeof *in);
    uint64_t n = h->nbytes;
    int chunks = (int) ((n + CHUNK_BYTES - 1) / CHUNK_BYTES);
    if (!in || (chunks && !(in->reqs = calloc((size_t) chunks, sizeof *in->reqs)))) {
        free(in);
        discard_p2p(w, from, ctl);
        return;
    }
    if (zmq_msg_init_size(&in->data, (size_t) n) < 0) {
        free(in->reqs);
        free(in);
        discard_p2p(w, from, ctl);
        return;
    }
    in->from = from;
    in->ctl = ctl;
    char *buf = zmq_msg_data(&in->data);
    for (uint64_t off = 0; off < n; off += CHUNK_BYTES) {
        int len = (int) (n - off < CHUNK_BYTES ? n - off : CHUNK_BYTES);
        MPI_Irecv(buf + off, len, MPI_BYTE, from, TAG_DATA, w->control, &in->reqs[in->nreqs++]);
    }
    // Appended, and handed to the loop from the head only: messages between
    // two ranks must arrive in the order they were sent, and a short one
    // completes before a long one ahead of it.
    *w->receiving_tail = in;
    w->receiving_tail = &in->next;
}

// A control message for the loop that must not overtake the P2P messages
// from the same host received before it: queued behind them, without bytes.
static void queue_in_order(struct world *w, int from, Mlxd__Ctl__Ctl *ctl) {
    struct p2p_in *in = calloc(1, sizeof *in);
    if (!in) {
        log_error("Out of memory queueing a control message from world rank %d; dropped it", from);
        mlxd__ctl__ctl__free_unpacked(ctl, NULL);
        return;
    }
    in->from = from;
    in->ctl = ctl;
    zmq_msg_init(&in->data);
    *w->receiving_tail = in;
    w->receiving_tail = &in->next;
}

static void handle_ctl(struct world *w, int from, Mlxd__Ctl__Ctl *ctl) {
    const char *ignored = NULL;
    switch (ctl->body_case) {
    case MLXD__CTL__CTL__BODY_JOIN:
    case MLXD__CTL__CTL__BODY_LEAVE:
    case MLXD__CTL__CTL__BODY_ARRIVE:
    case MLXD__CTL__CTL__BODY_TIMEOUT:
    case MLXD__CTL__CTL__BODY_ABORT_REQ:
    case MLXD__CTL__CTL__BODY_GROUP_GONE:
        if (!w->coord) {
            log_warning("World rank %d sent a coordinator's message to world rank %d; ignored", from, w->rank);
        } else if (coord_handle(w->coord, from, ctl, wire_now_us(), &w->out, &ignored) < 0) {
            log_error("The coordinator ran out of memory handling a message from world rank %d", from);
        } else if (ignored) {
            log_debug("Coordinator ignored a message from world rank %d: %s", from, ignored);
        }
        flush_outbox(w);
        mlxd__ctl__ctl__free_unpacked(ctl, NULL);
        break;
    case MLXD__CTL__CTL__BODY_HELLO_FAIL:
    case MLXD__CTL__CTL__BODY_FORM:
    case MLXD__CTL__CTL__BODY_GO:
    case MLXD__CTL__CTL__BODY_ABORT:
    case MLXD__CTL__CTL__BODY_GROUP_FREE: {
        struct fifo_item *it = malloc(sizeof *it);
        if (!it) {
            log_error("Out of memory queueing a control message from world rank %d; dropped it", from);
            mlxd__ctl__ctl__free_unpacked(ctl, NULL);
            break;
        }
        *it = (struct fifo_item) { .from = from, .ctl = ctl };
        *w->fifo_tail = it;
        w->fifo_tail = &it->next;
        break;
    }
    case MLXD__CTL__CTL__BODY_DEPART:
        // For the coordinator: where the member's collectives end. For this
        // host: no message of that member comes after it, so it goes to the
        // loop behind the messages whose bytes are still arriving.
        if (w->coord && coord_handle(w->coord, from, ctl, wire_now_us(), &w->out, &ignored) < 0)
            log_error("The coordinator ran out of memory handling a message from world rank %d", from);
        else if (ignored)
            log_debug("Coordinator ignored a message from world rank %d: %s", from, ignored);
        flush_outbox(w);
        if (from == w->rank)
            mlxd__ctl__ctl__free_unpacked(ctl, NULL);
        else
            queue_in_order(w, from, ctl);
        break;
    case MLXD__CTL__CTL__BODY_P2P:
        if (from == w->rank) {
            log_error("A p2p message from this daemon to itself; dropped it");
            mlxd__ctl__ctl__free_unpacked(ctl, NULL);
        } else {
            post_p2p_recv(w, from, ctl);
        }
        break;
    case MLXD__CTL__CTL__BODY_STATUS_REQ:
    case MLXD__CTL__CTL__BODY_STATUS_REP:
        engine_emit(w, WORLD_EVENT_CTL, from, ctl, NULL, 0, NULL);
        break;
    default:
        log_warning("World rank %d sent an unknown control message; ignored", from);
        mlxd__ctl__ctl__free_unpacked(ctl, NULL);
    }
}

static void handle_packed(struct world *w, int from, const uint8_t *buf, size_t len) {
    Mlxd__Ctl__Ctl *ctl = mlxd__ctl__ctl__unpack(NULL, len, buf);
    if (!ctl) {
        log_warning("World rank %d sent a control message that does not decode (%zu bytes); ignored", from, len);
        return;
    }
    handle_ctl(w, from, ctl);
}

bool engine_poll_mpi(struct world *w) {
    bool any = false;
    for (;;) {
        int flag = 0, len = 0;
        MPI_Status st;
        MPI_Message msg;
        if (MPI_Improbe(MPI_ANY_SOURCE, TAG_CTL, w->control, &flag, &msg, &st) != MPI_SUCCESS || !flag)
            break;
        MPI_Get_count(&st, MPI_BYTE, &len);
        uint8_t *buf = malloc(len > 0 ? (size_t) len : 1);
        if (!buf) {
            uint8_t dummy;
            log_error("Out of memory receiving a control message; dropped it");
            MPI_Mrecv(&dummy, 0, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
            continue;
        }
        MPI_Mrecv(buf, len, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
        handle_packed(w, st.MPI_SOURCE, buf, (size_t) len);
        free(buf);
        any = true;
    }
    return any;
}

void engine_progress_p2p(struct world *w) {
    for (struct wmsg **p = &w->sending; *p;) {
        int done = 0;
        MPI_Testall((*p)->nreqs, (*p)->reqs, &done, MPI_STATUSES_IGNORE);
        if (done) {
            struct wmsg *m = *p;
            *p = m->next;
            wmsg_free(m);
        } else {
            p = &(*p)->next;
        }
    }
    struct p2p_in *in;
    while ((in = w->receiving)) {
        int done = 0;
        MPI_Testall(in->nreqs, in->reqs, &done, MPI_STATUSES_IGNORE);
        if (!done)
            break;
        w->receiving = in->next;
        if (!w->receiving)
            w->receiving_tail = &w->receiving;
        if (in->ctl->body_case == MLXD__CTL__CTL__BODY_P2P) {
            engine_emit(w, WORLD_EVENT_P2P, in->from, in->ctl, &in->data, 0, NULL);
        } else {
            zmq_msg_close(&in->data);
            engine_emit(w, WORLD_EVENT_CTL, in->from, in->ctl, NULL, 0, NULL);
        }
        free(in->reqs);
        free(in);
    }
}

void engine_start_p2p(struct world *w, struct wmsg *m) {
    uint64_t n = zmq_msg_size(&m->data);
    int chunks = (int) ((n + CHUNK_BYTES - 1) / CHUNK_BYTES);
    m->reqs = calloc((size_t) chunks + 1, sizeof *m->reqs);
    if (!m->reqs) {
        log_error("Out of memory sending %llu bytes to world rank %d; dropped them", (unsigned long long) n, m->dest);
        wmsg_free(m);
        return;
    }
    MPI_Isend(m->buf, (int) m->len, MPI_BYTE, m->dest, TAG_CTL, w->control, &m->reqs[m->nreqs++]);
    char *buf = zmq_msg_data(&m->data);
    for (uint64_t off = 0; off < n; off += CHUNK_BYTES) {
        int len = (int) (n - off < CHUNK_BYTES ? n - off : CHUNK_BYTES);
        MPI_Isend(buf + off, len, MPI_BYTE, m->dest, TAG_DATA, w->control, &m->reqs[m->nreqs++]);
    }
    m->next = w->sending;
    w->sending = m;
}

// Takes what the loop sent; false once it said stop.

void engine_run_self(struct world *w) {
    struct self_item *it;
    while ((it = w->self)) {
        w->self = it->next;
        if (!w->self)
            w->self_tail = &w->self;
        handle_packed(w, w->rank, it->buf, it->len);
        free(it->buf);
        free(it);
    }
}


int engine_init_mpi(struct world *w) {
    int provided, len, r;
    // A daemon started without mpirun is a world of one. It never spawns
    // processes, so it needs no helper orted (which would outlive it).
    setenv("OMPI_MCA_ess_singleton_isolated", "1", 0);
#if defined(__SANITIZE_ADDRESS__)
    // Plugins stay loaded, so that the leak checker can name (and suppress)
    // what Open MPI keeps in them.
    setenv("OMPI_MCA_mca_base_component_disable_dlclose", "1", 0);
#endif
    // MPI may look at argv; the daemon's own options are none of its business.
    r = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (r != MPI_SUCCESS)
        return -EIO;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &w->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &w->size);
    MPI_Get_library_version(w->mpi_version, &len);
    w->mpi_version[strcspn(w->mpi_version, "\n")] = '\0';
    w->hosts = calloc((size_t) w->size, sizeof *w->hosts);
    if (!w->hosts)
        return -ENOMEM;
    char me[HOST_MAX] = { 0 };
    gethostname(me, sizeof me - 1);
    if (MPI_Allgather(me, HOST_MAX, MPI_CHAR, w->hosts, HOST_MAX, MPI_CHAR, MPI_COMM_WORLD) != MPI_SUCCESS ||
        MPI_Comm_dup(MPI_COMM_WORLD, &w->control) != MPI_SUCCESS ||
        MPI_Comm_dup(MPI_COMM_WORLD, &w->data) != MPI_SUCCESS)
        return -EIO;
    MPI_Comm_set_errhandler(w->control, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(w->data, MPI_ERRORS_RETURN);
    if (w->size > 1 && (r = watch_setup(w)) < 0)
        return r;
    r = setup_reductions();
    if (r < 0)
        return r;
    if (w->rank == 0 && !(w->coord = coord_new(w->size)))
        return -ENOMEM;
    if (w->size > 1 && (r = pipe_new(&w->pipe)) < 0)
        return r;
    return 0;
}

void engine_fini_mpi(struct world *w) {
    w->pipe = pipe_free(w->pipe);
    while (w->groups)
        egroup_free(w, w->groups->id);
    for (size_t i = 0; i < w->n_isends; i++) {
        MPI_Cancel(&w->isends[i].req);
        MPI_Request_free(&w->isends[i].req);
        free(w->isends[i].buf);
    }
    free(w->isends);
    for (int op = 0; op < REDUCE_OP_MAX; op++)
        MPI_Op_free(&mpi_ops[op]);
    for (int t = 0; t < MLXD_DTYPE_MAX; t++)
        MPI_Type_free(&mpi_dtypes[t]);
    MPI_Comm_free(&w->control);
    MPI_Comm_free(&w->data);
    MPI_Finalize();
}

// At the stop: what the loop sent last (goodbyes to the coordinator, parts of