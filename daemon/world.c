/* The engine: one thread that owns MPI. It initialises the world, carries
 * control messages between daemons, runs the coordinator on world rank 0,
 * moves point-to-point messages between hosts, and runs the collectives of
 * spanning groups in the order their Go messages arrive. */
#include "world.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <limits.h>
#include <mpi.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "coord.h"
#include "log.h"
#include "reduce.h"
#include "server.h"
#include "span.h"
#include "wire.h"

#define HOST_MAX 256
#define TAG_CTL 1
#define TAG_DATA 2
// Largest piece of a tensor one MPI call moves: counts stay far below INT_MAX.
#define CHUNK_BYTES (UINT64_C(64) << 20)
#define CHUNK_ELEMS (1 << 28)
// The engine's poll interval when idle grows to this, so an idle world sleeps.
#define IDLE_POLL_MAX_MS 50

enum wmsg_type {
    WMSG_CTL,                       // send buf (a packed Ctl) to dest
    WMSG_LOCAL,                     // this host's part of a collective
    WMSG_P2P,                       // send buf (a packed P2P) then data to dest
    WMSG_STOP,
};

// What the loop hands the engine, by pointer over the inproc pair.
struct wmsg {
    enum wmsg_type type;
    int dest;
    uint8_t *buf;
    size_t len;
    uint64_t group, seq;
    struct op_desc d;
    zmq_msg_t data;
    bool has_data;
    struct wmsg *next;              // in the engine's lists
    MPI_Request *reqs;              // P2P: header and data chunks in flight
    int nreqs;
};

// A spanning group this host belongs to.
struct egroup {
    struct egroup *next;
    uint64_t id;
    int size;
    int *hosts;                     // world rank of each group rank
    MPI_Comm comm;                  // ranks = the distinct hosts, ascending
    int ncomm;
    int *comm_hosts;                // world rank of each comm rank
};

// A control message waiting its turn in the engine's ordered queue.
struct fifo_item {
    struct fifo_item *next;
    int from;
    Mlxd__Ctl__Ctl *ctl;
};

// A packed control message from this daemon to itself.
struct self_item {
    struct self_item *next;
    uint8_t *buf;
    size_t len;
};

// A send from another host whose bytes are still arriving.
struct p2p_in {
    struct p2p_in *next;
    int from;
    Mlxd__Ctl__Ctl *ctl;
    zmq_msg_t data;
    MPI_Request *reqs;
    int nreqs;
};

struct world {
    void *zctx;
    void *loop_end, *engine_end;    // the inproc pair
    pthread_t thread;
    bool thread_started;
    int init_error;
    int rank, size;
    char (*hosts)[HOST_MAX];
    char mpi_version[MPI_MAX_LIBRARY_VERSION_STRING];
    // Engine-only state below.
    MPI_Comm control;               // control messages and p2p bytes
    MPI_Comm data;                  // parent of every spanning group's comm
    struct coord *coord;            // world rank 0 only
    struct ctl_outbox out;
    struct egroup *groups;
    struct wmsg *locals;            // parts waiting for their Go
    struct wmsg *sending;           // p2p in flight out
    struct p2p_in *receiving, **receiving_tail;  // in header order
    struct fifo_item *fifo, **fifo_tail;
    struct self_item *self, **self_tail;
    struct {
        MPI_Request req;
        uint8_t *buf;
    } *isends;
    size_t n_isends, cap_isends;
    uint64_t go_wait_since;         // when the head Go started waiting for its part
    // The watch (world.h). Its thread owns the sockets but watch_loop, the
    // loop's end of the pair it reports through (and is stopped through).
    void *watch_loop, *watch_end;
    pthread_t watch_thread;
    bool watch_started;
    void *watch_router;             // the other daemons connect here
    void **watch_dealers;           // [size]: to each other daemon; NULL for this one
    void **watch_monitors;          // [size]: their connection events
    uint64_t stall_us;              // an engine step longer than this: wedged
    _Atomic uint64_t busy_since_us; // the engine's current step began; 0 while it waits
};

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
static void mpi_type_op(mlxd_dtype t, reduce_op op, MPI_Datatype *ret_type, MPI_Op *ret_op) {
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

static void mpi_error_text(int err, char *buf, size_t size) {
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

/* ---- talking to the loop ---- */

static int send_ptr(void *sock, void *p) {
    return zmq_send(sock, &p, sizeof p, 0) < 0 ? -zmq_errno() : 0;
}

static void *recv_ptr(void *sock, int flags) {
    void *p = NULL;
    if (zmq_recv(sock, &p, sizeof p, flags) != (int) sizeof p)
        return NULL;
    return p;
}

void world_event_free(struct world_event *e) {
    if (!e)
        return;
    if (e->ctl)
        mlxd__ctl__ctl__free_unpacked(e->ctl, NULL);
    zmq_msg_close(&e->data);
    free(e);
}

static void emit(struct world *w, enum world_event_type type, int from, Mlxd__Ctl__Ctl *ctl, zmq_msg_t *data,
                 int code, const char *message) {
    struct world_event *e = calloc(1, sizeof *e);
    if (!e) {
        log_error("Out of memory passing a control message to the loop; dropped it");
        if (ctl)
            mlxd__ctl__ctl__free_unpacked(ctl, NULL);
        if (data)
            zmq_msg_close(data);
        return;
    }
    e->type = type;
    e->from = from;
    e->ctl = ctl;
    e->code = code;
    snprintf(e->message, sizeof e->message, "%s", message ? message : "");
    zmq_msg_init(&e->data);
    if (data) {
        zmq_msg_move(&e->data, data);
        zmq_msg_close(data);
        e->has_data = true;
    }
    if (send_ptr(w->engine_end, e) < 0)
        world_event_free(e);
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
        mpi_error_text(r, e, sizeof e);
        log_error("MPI_Isend to world rank %d failed: %s", dest, e);
        free(buf);
        return;
    }
    w->isends[w->n_isends++].buf = buf;
}

// Sends a packed control message (taking buf) to dest, or queues it for this
// daemon itself.
static void send_packed(struct world *w, int dest, uint8_t *buf, size_t len) {
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
        send_packed(w, w->out.v[i].dest, w->out.v[i].buf, w->out.v[i].len);
        w->out.v[i].buf = NULL;
    }
    ctl_outbox_clear(&w->out);
}

static void progress_isends(struct world *w) {
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

static struct egroup *egroup_find(struct world *w, uint64_t id) {
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
static void egroup_add(struct world *w, uint64_t id, size_t n, const int32_t *hosts) {
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
    if (!g || !(g->hosts = malloc(n * sizeof *g->hosts))) {
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
        mpi_error_text(r, e, sizeof e);
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

static void egroup_free(struct world *w, uint64_t id) {
    for (struct egroup **p = &w->groups; *p; p = &(*p)->next) {
        struct egroup *g = *p;
        if (g->id != id)
            continue;
        *p = g->next;
        if (g->comm != MPI_COMM_NULL)
            MPI_Comm_free(&g->comm);
        free(g->hosts);
        free(g->comm_hosts);
        free(g);
        return;
    }
}

static void wmsg_free(struct wmsg *m) {
    if (!m)
        return;
    free(m->buf);
    free(m->reqs);
    zmq_msg_close(&m->data);
    free(m);
}

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
        mpi_error_text(r, e, sizeof e);
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
    mpi_type_op(t, op, &type, &mop);
    for (size_t off = 0; off < count; off += CHUNK_ELEMS) {
        int n = (int) (count - off < CHUNK_ELEMS ? count - off : CHUNK_ELEMS);
        int r = MPI_Allreduce(MPI_IN_PLACE, buf + off * esize, n, type, mop, g->comm);
        if (r != MPI_SUCCESS) {
            char e[128];
            mpi_error_text(r, e, sizeof e);
            snprintf(err, errlen, "MPI_Allreduce across hosts failed: %s", e);
            return MLXD_EINTERNAL;
        }
    }
    return 0;
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
            mpi_error_text(e, t, sizeof t);
            snprintf(err, errlen, "MPI_Allgatherv across hosts failed: %s", t);
            r = MLXD_EINTERNAL;
            goto out;
        }
        // tmp holds host after host, each host's members in rank order:
        // counts[] now serves as each host's next member.
        for (int c = 0; c < g->ncomm; c++)
            counts[c] = 0;
        for (int rank = 0; !in_order && rank < g->size; rank++)
            for (int c = 0; c < g->ncomm; c++)
                if (g->comm_hosts[c] == g->hosts[rank]) {
                    memcpy((char *) zmq_msg_data(ret) + (size_t) rank * each,
                           tmp + (size_t) (displs[c] + counts[c]++) * each, each);
                    break;
                }
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
        emit(w, WORLD_EVENT_GO, from, ctl, NULL, 0, NULL);
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
    emit(w, WORLD_EVENT_GO, from, ctl, has_result ? &result : NULL, code, err);
    wmsg_free(part);
}

// Runs the ordered queue as far as it can: a Go waits for this host's part.
static void run_fifo(struct world *w) {
    struct fifo_item *it;
    while ((it = w->fifo)) {
        Mlxd__Ctl__Ctl *ctl = it->ctl;
        struct wmsg *part = NULL;
        switch (ctl->body_case) {
        case MLXD__CTL__CTL__BODY_FORM:
            egroup_add(w, ctl->form->group, ctl->form->n_hosts, ctl->form->hosts);
            emit(w, WORLD_EVENT_CTL, it->from, ctl, NULL, 0, NULL);
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
            emit(w, WORLD_EVENT_CTL, it->from, ctl, NULL, 0, NULL);
            break;
        case MLXD__CTL__CTL__BODY_GROUP_FREE:
            drop_locals(w, ctl->group_free->group);
            egroup_free(w, ctl->group_free->group);
            emit(w, WORLD_EVENT_CTL, it->from, ctl, NULL, 0, NULL);
            break;
        default:
            emit(w, WORLD_EVENT_CTL, it->from, ctl, NULL, 0, NULL);
            break;
        }
        w->fifo = it->next;
        if (!w->fifo)
            w->fifo_tail = &w->fifo;
        free(it);
    }
}

/* ---- incoming messages ---- */

static void post_p2p_recv(struct world *w, int from, Mlxd__Ctl__Ctl *ctl) {
    const Mlxd__Ctl__P2P *h = ctl->p2p;
    struct p2p_in *in = calloc(1, sizeof *in);
    uint64_t n = h->nbytes;
    int chunks = (int) ((n + CHUNK_BYTES - 1) / CHUNK_BYTES);
    if (!in || (chunks && !(in->reqs = calloc((size_t) chunks, sizeof *in->reqs))) ||
        zmq_msg_init_size(&in->data, (size_t) n) < 0) {
        // Without a buffer the bytes cannot be received, and the sender's
        // next messages would be misread: this is as fatal as it gets.
        log_error("Out of memory receiving %llu bytes from world rank %d", (unsigned long long) n, from);
        abort();
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
        emit(w, WORLD_EVENT_CTL, from, ctl, NULL, 0, NULL);
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

static bool poll_mpi(struct world *w) {
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

static void progress_p2p(struct world *w) {
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
            emit(w, WORLD_EVENT_P2P, in->from, in->ctl, &in->data, 0, NULL);
        } else {
            zmq_msg_close(&in->data);
            emit(w, WORLD_EVENT_CTL, in->from, in->ctl, NULL, 0, NULL);
        }
        free(in->reqs);
        free(in);
    }
}

static void start_p2p(struct world *w, struct wmsg *m) {
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
static bool handle_loop(struct world *w) {
    struct wmsg *m;
    while ((m = recv_ptr(w->engine_end, ZMQ_DONTWAIT))) {
        switch (m->type) {
        case WMSG_STOP:
            wmsg_free(m);
            return false;
        case WMSG_CTL:
            send_packed(w, m->dest, m->buf, m->len);
            m->buf = NULL;
            wmsg_free(m);
            break;
        case WMSG_LOCAL:
            m->next = w->locals;
            w->locals = m;
            break;
        case WMSG_P2P:
            start_p2p(w, m);
            break;
        }
    }
    return true;
}

static void run_self(struct world *w) {
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

/* ---- the watch ---- */

// What one daemon tells the others at start-up, over MPI: where its watch
// listens and the CURVE public key that proves it is that daemon.
struct watch_card {
    char endpoint[64];              // empty: it has no watch
    char key[41];
};

// Whether a (host order) is in the subnet "a.b.c.d/n".
static bool in_subnet(uint32_t a, const char *cidr) {
    char net[32];
    int bits = 32;
    const char *slash = strchr(cidr, '/');
    size_t len = slash ? (size_t) (slash - cidr) : strlen(cidr);
    if (len >= sizeof net)
        return false;
    memcpy(net, cidr, len);
    net[len] = '\0';
    if (slash)
        bits = atoi(slash + 1);
    struct in_addr n;
    if (inet_pton(AF_INET, net, &n) != 1 || bits < 0 || bits > 32)
        return false;
    uint32_t mask = bits == 0 ? 0 : ~UINT32_C(0) << (32 - bits);
    return (a & mask) == (ntohl(n.s_addr) & mask);
}

// The address the watch binds: loopback when the whole world is on this
// machine (its daemons share a host name); else this host's first IPv4
// address in what Open MPI's TCP transport was told to use (the subnets or
// interface names of OMPI_MCA_btl_tcp_if_include), else on the first
// interface up that is not loopback, as Open MPI would pick.
static int watch_address(const struct world *w, char *buf, size_t size) {
    bool one_machine = true;
    for (int r = 1; r < w->size; r++)
        one_machine &= strcmp(w->hosts[r], w->hosts[0]) == 0;
    if (one_machine) {
        snprintf(buf, size, "127.0.0.1");
        return 0;
    }
    const char *include = getenv("OMPI_MCA_btl_tcp_if_include");
    struct ifaddrs *ifs, *i;
    if (getifaddrs(&ifs) < 0)
        return -errno;
    int r = -EADDRNOTAVAIL;
    for (i = ifs; i && r < 0; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_UP))
            continue;
        uint32_t a = ntohl(((struct sockaddr_in *) i->ifa_addr)->sin_addr.s_addr);
        bool ok = false;
        if (include && *include) {
            char list[256], *save = NULL;
            snprintf(list, sizeof list, "%s", include);
            for (char *t = strtok_r(list, ",", &save); t && !ok; t = strtok_r(NULL, ",", &save))
                ok = strchr(t, '.') ? in_subnet(a, t) : strcmp(t, i->ifa_name) == 0;
        } else {
            ok = !(i->ifa_flags & IFF_LOOPBACK);
        }
        if (ok && inet_ntop(AF_INET, &((struct sockaddr_in *) i->ifa_addr)->sin_addr, buf, (socklen_t) size))
            r = 0;
    }
    freeifaddrs(ifs);
    return r;
}

static void watch_emit(struct world *w, enum world_watch_type type, int rank, uint64_t stuck_ms, const char *why) {
    struct world_watch_event ev = { .type = type, .rank = rank, .stuck_ms = stuck_ms };
    snprintf(ev.why, sizeof ev.why, "%s", why);
    zmq_send(w->watch_end, &ev, sizeof ev, ZMQ_DONTWAIT);
}

// Binds the watch's listener, tells every daemon where it is and its key
// (a collective: every rank takes part, with an empty card if it could not
// bind), and connects to every other daemon's. A daemon without a watch
// still serves; it only learns of lost hosts later, through MPI.
static int watch_setup(struct world *w) {
    struct watch_card mine = { 0 }, *cards = calloc((size_t) w->size, sizeof *cards);
    char secret[41], addr[64], ep[128];
    int one = 1, zero = 0, ivl = WORLD_SILENCE_MS / 4, timeout = WORLD_SILENCE_MS, reconnect = 200;
    size_t len = sizeof mine.endpoint;
    if (!cards)
        return -ENOMEM;
    int r = watch_address(w, addr, sizeof addr);
    if (r < 0)
        log_warning("The watch of lost hosts is off: no address of this host to bind it to (%s)", strerror(-r));
    else if (zmq_curve_keypair(mine.key, secret) < 0 || !(w->watch_router = zmq_socket(w->zctx, ZMQ_ROUTER)) ||
             zmq_setsockopt(w->watch_router, ZMQ_CURVE_SERVER, &one, sizeof one) < 0 ||
             zmq_setsockopt(w->watch_router, ZMQ_CURVE_SECRETKEY, secret, 40) < 0 ||
             zmq_setsockopt(w->watch_router, ZMQ_LINGER, &zero, sizeof zero) < 0 ||
             (snprintf(ep, sizeof ep, "tcp://%s:*", addr), zmq_bind(w->watch_router, ep)) < 0 ||
             zmq_getsockopt(w->watch_router, ZMQ_LAST_ENDPOINT, mine.endpoint, &len) < 0) {
        log_warning("The watch of lost hosts is off: cannot listen on %s: %s", addr, zmq_strerror(zmq_errno()));
        mine.endpoint[0] = '\0';
    }
    if (MPI_Allgather(&mine, sizeof mine, MPI_BYTE, cards, sizeof mine, MPI_BYTE, MPI_COMM_WORLD) != MPI_SUCCESS) {
        free(cards);
        return -EIO;
    }
    w->watch_dealers = calloc((size_t) w->size, sizeof *w->watch_dealers);
    w->watch_monitors = calloc((size_t) w->size, sizeof *w->watch_monitors);
    if (!w->watch_dealers || !w->watch_monitors) {
        free(cards);
        return -ENOMEM;
    }
    for (int p = 0; p < w->size && mine.endpoint[0]; p++) {
        cards[p].endpoint[sizeof cards[p].endpoint - 1] = cards[p].key[40] = '\0';
        if (p == w->rank || !cards[p].endpoint[0])
            continue;
        char id[16], mon[64];
        void *d = zmq_socket(w->zctx, ZMQ_DEALER), *m = zmq_socket(w->zctx, ZMQ_PAIR);
        snprintf(id, sizeof id, "%d", w->rank);
        snprintf(mon, sizeof mon, "inproc://mlxd-watch-%p-%d", (void *) w, p);
        if (!d || !m || zmq_setsockopt(d, ZMQ_CURVE_SERVERKEY, cards[p].key, 40) < 0 ||
            zmq_setsockopt(d, ZMQ_CURVE_PUBLICKEY, mine.key, 40) < 0 ||
            zmq_setsockopt(d, ZMQ_CURVE_SECRETKEY, secret, 40) < 0 ||
            zmq_setsockopt(d, ZMQ_ROUTING_ID, id, strlen(id)) < 0 ||
            zmq_setsockopt(d, ZMQ_HEARTBEAT_IVL, &ivl, sizeof ivl) < 0 ||
            zmq_setsockopt(d, ZMQ_HEARTBEAT_TIMEOUT, &timeout, sizeof timeout) < 0 ||
            zmq_setsockopt(d, ZMQ_RECONNECT_IVL, &reconnect, sizeof reconnect) < 0 ||
            zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero) < 0 ||
            zmq_socket_monitor(d, mon, ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED) < 0 ||
            zmq_connect(m, mon) < 0 || zmq_connect(d, cards[p].endpoint) < 0) {
            log_warning("The watch cannot reach world rank %d at %s: %s", p, cards[p].endpoint, zmq_strerror(zmq_errno()));
            if (d)
                zmq_close(d);
            if (m)
                zmq_close(m);
            continue;
        }
        w->watch_dealers[p] = d;
        w->watch_monitors[p] = m;
    }
    explicit_bzero(secret, sizeof secret);
    free(cards);
    if (mine.endpoint[0])
        log_debug("The watch listens on %s", mine.endpoint);
    return 0;
}

// A daemon that stops says so first ("bye" from its link to us): its
// connection closing then is no lost host.
static void watch_read_byes(struct world *w, bool *bye) {
    char id[16], body[8];
    int k;
    while (w->watch_router && (k = zmq_recv(w->watch_router, id, sizeof id - 1, ZMQ_DONTWAIT)) > 0) {
        int more = 0;
        size_t len = sizeof more;
        zmq_getsockopt(w->watch_router, ZMQ_RCVMORE, &more, &len);
        int b = more ? zmq_recv(w->watch_router, body, sizeof body - 1, 0) : -1;
        id[k < (int) sizeof id - 1 ? k : (int) sizeof id - 1] = '\0';
        int p = atoi(id);
        if (b == 3 && memcmp(body, "bye", 3) == 0 && p >= 0 && p < w->size)
            bye[p] = true;
    }
}

// One connection event of the watch's link to rank p.
static void watch_link_event(struct world *w, int p, bool *up, bool *lost, bool *bye) {
    zmq_msg_t m;
    uint16_t ev = 0;
    zmq_msg_init(&m);
    while (zmq_msg_recv(&m, w->watch_monitors[p], ZMQ_DONTWAIT) >= 0) {
        if (zmq_msg_size(&m) >= sizeof ev)
            memcpy(&ev, zmq_msg_data(&m), sizeof ev);
        while (zmq_msg_more(&m))
            zmq_msg_recv(&m, w->watch_monitors[p], 0);
        if (ev == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
            up[p] = true;
            if (lost[p]) {
                lost[p] = false;
                watch_emit(w, WORLD_HOST_BACK, p, 0, "it answers again");
            }
        } else if (ev == ZMQ_EVENT_DISCONNECTED && up[p]) {
            up[p] = false;
            watch_read_byes(w, bye);
            if (!lost[p] && !bye[p]) {
                lost[p] = true;
                char why[128];
                snprintf(why, sizeof why, "its daemon closed the connection, or it was silent for %.1f s",
                         WORLD_SILENCE_MS / 1000.0);
                watch_emit(w, WORLD_HOST_LOST, p, 0, why);
            }
        }
    }
    zmq_msg_close(&m);
}

static void watch_close(struct world *w);

static void *watch_main(void *arg) {
    struct world *w = arg;
    int n = 0, *rank_of = calloc((size_t) w->size + 2, sizeof *rank_of);
    zmq_pollitem_t *items = calloc((size_t) w->size + 2, sizeof *items);
    bool *up = calloc((size_t) w->size, sizeof *up), *lost = calloc((size_t) w->size, sizeof *lost);
    bool *bye = calloc((size_t) w->size, sizeof *bye), wedged = false;
    if (!rank_of || !items || !up || !lost || !bye) {
        log_error("Out of memory starting the watch of lost hosts");
        goto out;
    }
    items[n++] = (zmq_pollitem_t) { .socket = w->watch_end, .events = ZMQ_POLLIN };
    if (w->watch_router)
        items[n++] = (zmq_pollitem_t) { .socket = w->watch_router, .events = ZMQ_POLLIN };
    for (int p = 0; p < w->size; p++)
        if (w->watch_monitors[p]) {
            rank_of[n] = p;
            items[n++] = (zmq_pollitem_t) { .socket = w->watch_monitors[p], .events = ZMQ_POLLIN };
        }
    for (;;) {
        // Link events wake it; the stall check needs no more than 2 a second.
        if (zmq_poll(items, n, 500) < 0 && zmq_errno() != EINTR)
            break;
        if (items[0].revents & ZMQ_POLLIN)
            break;                  // the loop says stop
        if (w->watch_router && (items[1].revents & ZMQ_POLLIN))
            watch_read_byes(w, bye);
        for (int i = 1 + (w->watch_router != NULL); i < n; i++)
            if (items[i].revents & ZMQ_POLLIN)
                watch_link_event(w, rank_of[i], up, lost, bye);
        uint64_t since = atomic_load(&w->busy_since_us), now = wire_now_us();
        if (since && now > since && now - since > w->stall_us && !wedged) {
            wedged = true;
            watch_emit(w, WORLD_WEDGED, w->rank, (now - since) / 1000, "one step of the MPI engine has not returned");
        }
    }
out:
    free(rank_of);
    free(items);
    free(up);
    free(lost);
    free(bye);
    watch_close(w);
    return NULL;
}

// Closes the watch's sockets: goodbyes first, a little time for them to
// leave, then the listener.
static void watch_close(struct world *w) {
    for (int p = 0; w->watch_dealers && p < w->size; p++)
        if (w->watch_dealers[p]) {
            int linger = 200;
            zmq_setsockopt(w->watch_dealers[p], ZMQ_LINGER, &linger, sizeof linger);
            zmq_send(w->watch_dealers[p], "bye", 3, ZMQ_DONTWAIT);
            zmq_close(w->watch_dealers[p]);
        }
    if (w->watch_router) {
        struct timespec ts = { 0, 100 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    for (int p = 0; w->watch_monitors && p < w->size; p++)
        if (w->watch_monitors[p])
            zmq_close(w->watch_monitors[p]);
    if (w->watch_router)
        zmq_close(w->watch_router);
    w->watch_router = NULL;
    free(w->watch_dealers);
    free(w->watch_monitors);
    w->watch_dealers = w->watch_monitors = NULL;
}

static int engine_init_mpi(struct world *w) {
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
    return 0;
}

static void engine_fini_mpi(struct world *w) {
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
// collectives that will never run) and what waits in the queues is dropped.
static void drain_queues(struct world *w) {
    struct wmsg *m;
    while ((m = recv_ptr(w->engine_end, ZMQ_DONTWAIT)))
        wmsg_free(m);
    while (w->self) {
        struct self_item *it = w->self;
        w->self = it->next;
        free(it->buf);
        free(it);
    }
    while (w->fifo) {
        struct fifo_item *it = w->fifo;
        w->fifo = it->next;
        mlxd__ctl__ctl__free_unpacked(it->ctl, NULL);
        free(it);
    }
    while ((m = w->locals)) {
        w->locals = m->next;
        wmsg_free(m);
    }
    // Transfers in flight are cancelled before their buffers go.
    while ((m = w->sending)) {
        w->sending = m->next;
        for (int i = 0; i < m->nreqs; i++) {
            MPI_Cancel(&m->reqs[i]);
            MPI_Request_free(&m->reqs[i]);
        }
        wmsg_free(m);
    }
    while (w->receiving) {
        struct p2p_in *in = w->receiving;
        w->receiving = in->next;
        for (int i = 0; i < in->nreqs; i++) {
            MPI_Cancel(&in->reqs[i]);
            MPI_Request_free(&in->reqs[i]);
        }
        mlxd__ctl__ctl__free_unpacked(in->ctl, NULL);
        zmq_msg_close(&in->data);
        free(in->reqs);
        free(in);
    }
}

// How long the engine may sleep. A world of one has nothing to probe:
// sleep until the loop speaks. Otherwise MPI must be polled: spin while
// bytes move or for 10 ms after activity (ops in a loop stay fast), poll every
// millisecond for a tenth of a second after that, then back off to
// IDLE_POLL_MAX_MS so an idle world sleeps (about 20 wakeups a second;
// the first op after a long idle spell may wait that long once).
static int engine_timeout(const struct world *w, uint64_t now, uint64_t last_active, int *idle_ms) {
    if (w->self || (w->fifo && !w->go_wait_since))
        return 0;
    if (w->size == 1)
        return -1;
    if (w->sending || w->receiving || w->n_isends || now - last_active < 10000)
        return 0;
    if (now - last_active < 100000) {
        *idle_ms = 1;
        return 1;
    }
    *idle_ms = *idle_ms * 2 > IDLE_POLL_MAX_MS ? IDLE_POLL_MAX_MS : *idle_ms * 2;
    return *idle_ms;
}

static void *engine_main(void *arg) {
    struct world *w = arg;
    int idle_ms = 1;
    uint64_t last_active = 0;
    w->init_error = engine_init_mpi(w);
    send_ptr(w->engine_end, NULL);     // ready (or failed: see init_error)
    if (w->init_error < 0)
        return NULL;
    for (;;) {
        zmq_pollitem_t item = { .socket = w->engine_end, .events = ZMQ_POLLIN };
        atomic_store(&w->busy_since_us, 0);
        int n = zmq_poll(&item, 1, engine_timeout(w, wire_now_us(), last_active, &idle_ms));
        atomic_store(&w->busy_since_us, wire_now_us());
        bool busy = n > 0;
        if (n > 0 && !handle_loop(w))
            break;
        if (w->size > 1)
            busy |= poll_mpi(w);
        busy |= w->self != NULL;
        run_self(w);
        progress_isends(w);
        progress_p2p(w);
        run_fifo(w);
        if (busy)
            last_active = wire_now_us();
    }
    drain_queues(w);
    w->coord = coord_free(w->coord);
    ctl_outbox_fini(&w->out);
    engine_fini_mpi(w);
    return NULL;
}

// Signals belong to the loop thread: the engine and the watch inherit a
// blocked mask.
static int start_thread(pthread_t *t, void *(*fn)(void *), struct world *w) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int r = pthread_create(t, NULL, fn, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r;
}

int world_start(struct server *s, struct world **ret) {
    struct world *w = calloc(1, sizeof *w);
    char addr[64];
    int r, zero = 0;
    if (!w)
        return log_errno(LOG_ERR, -ENOMEM, "Out of memory");
    w->zctx = s->zctx;
    w->fifo_tail = &w->fifo;
    w->self_tail = &w->self;
    w->receiving_tail = &w->receiving;
    w->stall_us = (uint64_t) (s->cfg.mpi_stall_ms ? s->cfg.mpi_stall_ms : 4 * (uint64_t) s->cfg.op_timeout_ms) * 1000;
    snprintf(addr, sizeof addr, "inproc://mlxd-watch-%p", (void *) w);
    w->watch_loop = zmq_socket(w->zctx, ZMQ_PAIR);
    w->watch_end = zmq_socket(w->zctx, ZMQ_PAIR);
    if (!w->watch_loop || !w->watch_end || zmq_bind(w->watch_loop, addr) < 0 || zmq_connect(w->watch_end, addr) < 0) {
        r = log_errno(LOG_ERR, -zmq_errno(), "Failed to set up the watch's socket: %s", zmq_strerror(zmq_errno()));
        world_stop(w);
        return r;
    }
    snprintf(addr, sizeof addr, "inproc://mlxd-world-%p", (void *) w);
    w->loop_end = zmq_socket(w->zctx, ZMQ_PAIR);
    w->engine_end = zmq_socket(w->zctx, ZMQ_PAIR);
    if (w->loop_end && w->engine_end) {
        // Pointers to owned messages go through; none may be dropped.
        zmq_setsockopt(w->loop_end, ZMQ_SNDHWM, &zero, sizeof zero);
        zmq_setsockopt(w->loop_end, ZMQ_RCVHWM, &zero, sizeof zero);
        zmq_setsockopt(w->engine_end, ZMQ_SNDHWM, &zero, sizeof zero);
        zmq_setsockopt(w->engine_end, ZMQ_RCVHWM, &zero, sizeof zero);
    }
    if (!w->loop_end || !w->engine_end || zmq_bind(w->loop_end, addr) < 0 || zmq_connect(w->engine_end, addr) < 0) {
        r = log_errno(LOG_ERR, -zmq_errno(), "Failed to set up the engine's socket: %s", zmq_strerror(zmq_errno()));
        world_stop(w);
        return r;
    }
    r = start_thread(&w->thread, engine_main, w);
    if (r != 0) {
        world_stop(w);
        return log_errno(LOG_ERR, -r, "Failed to start the MPI engine thread: %m");
    }
    w->thread_started = true;
    if (zmq_recv(w->loop_end, &(void *) { NULL }, sizeof(void *), 0) < 0 || w->init_error < 0) {
        r = w->init_error < 0 ? w->init_error : -EIO;
        log_errno(LOG_ERR, r, "Failed to initialise MPI: %m");
        world_stop(w);
        return r;
    }
    log_info("MPI world: rank %d of %d on %s; %s", w->rank, w->size, w->hosts[w->rank], w->mpi_version);
    if (w->size > 1) {
        r = start_thread(&w->watch_thread, watch_main, w);
        if (r != 0) {
            world_stop(w);
            return log_errno(LOG_ERR, -r, "Failed to start the watch thread: %m");
        }
        w->watch_started = true;
    }
    *ret = w;
    return 0;
}

// Reaps the children MPI forked, if any (with OMPI_MCA_ess_singleton_isolated
// overridden, a singleton's orted exits only once we do), waiting a little.
static void reap_children(void) {
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        pid_t pid = waitpid(-1, NULL, WNOHANG);
        if (pid > 0)
            continue;
        if (pid < 0)                 // ECHILD: none left
            return;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= 1) {
            log_debug("A helper process of MPI is still running; it exits with us");
            return;
        }
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
}

static int post(struct world *w, struct wmsg *m) {
    if (send_ptr(w->loop_end, m) < 0) {
        wmsg_free(m);
        return -EIO;
    }
    return 0;
}

void world_stop(struct world *w) {
    if (!w)
        return;
    if (w->watch_started) {
        zmq_send(w->watch_loop, "stop", 4, 0);
        pthread_join(w->watch_thread, NULL);
    }
    if (w->watch_loop)
        zmq_close(w->watch_loop);
    if (w->watch_end)
        zmq_close(w->watch_end);
    if (w->thread_started) {
        if (w->init_error == 0) {
            struct wmsg *m = calloc(1, sizeof *m);
            if (m) {
                zmq_msg_init(&m->data);
                m->type = WMSG_STOP;
                post(w, m);
            }
        }
        pthread_join(w->thread, NULL);
        reap_children();
    }
    // A watch the engine set up but that never ran (the start failed after).
    if (!w->watch_started)
        watch_close(w);
    // Events the loop never read.
    if (w->loop_end) {
        struct world_event *e;
        while ((e = recv_ptr(w->loop_end, ZMQ_DONTWAIT)))
            world_event_free(e);
        zmq_close(w->loop_end);
    }
    if (w->engine_end)
        zmq_close(w->engine_end);
    free(w->hosts);
    free(w);
}

int world_rank(const struct world *w) {
    return w->rank;
}

int world_size(const struct world *w) {
    return w->size;
}

const char *world_host(const struct world *w, int r) {
    return r >= 0 && r < w->size ? w->hosts[r] : "?";
}

const char *world_mpi_version(const struct world *w) {
    return w->mpi_version;
}

int world_expand_endpoint(const struct world *w, char *endpoint, size_t size) {
    char out[512];
    size_t o = 0;
    for (const char *p = endpoint; *p; p++) {
        int n = p[0] == '%' && p[1] == 'r' ? snprintf(out + o, sizeof out - o, "%d", w->rank)
                                           : snprintf(out + o, sizeof out - o, "%c", *p);
        if (n < 0 || (size_t) n >= sizeof out - o)
            return -ENAMETOOLONG;
        o += (size_t) n;
        p += p[0] == '%' && p[1] == 'r';
    }
    if (o >= size)
        return -ENAMETOOLONG;
    memcpy(endpoint, out, o + 1);
    return 0;
}

static struct wmsg *wmsg_new(enum wmsg_type type, int dest, const Mlxd__Ctl__Ctl *m) {
    struct wmsg *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->type = type;
    x->dest = dest;
    zmq_msg_init(&x->data);
    if (m) {
        x->len = protobuf_c_message_get_packed_size(&m->base);
        x->buf = malloc(x->len ? x->len : 1);
        if (!x->buf) {
            free(x);
            return NULL;
        }
        protobuf_c_message_pack(&m->base, x->buf);
    }
    return x;
}

int world_send_ctl(struct world *w, int dest, const Mlxd__Ctl__Ctl *m) {
    struct wmsg *x = wmsg_new(WMSG_CTL, dest, m);
    return x ? post(w, x) : -ENOMEM;
}

int world_send_local(struct world *w, uint64_t group, uint64_t seq, const struct op_desc *d, zmq_msg_t *data) {
    struct wmsg *x = wmsg_new(WMSG_LOCAL, w->rank, NULL);
    if (!x) {
        if (data)
            zmq_msg_close(data);
        return -ENOMEM;
    }
    x->group = group;
    x->seq = seq;
    x->d = *d;
    if (data) {
        zmq_msg_move(&x->data, data);
        zmq_msg_close(data);
        x->has_data = true;
    }
    return post(w, x);
}

int world_send_p2p(struct world *w, int dest, uint64_t group, int src, int dst, const struct op_desc *d,
                   zmq_msg_t *data) {
    Mlxd__Ctl__Ctl c = MLXD__CTL__CTL__INIT;
    Mlxd__Ctl__P2P h = MLXD__CTL__P2_P__INIT;
    h.group = group;
    h.src = src;
    h.dst = dst;
    h.dtype = d->dtype;
    h.n_shape = (size_t) d->ndim;
    h.shape = (int64_t *) d->shape;
    h.nbytes = zmq_msg_size(data);
    c.body_case = MLXD__CTL__CTL__BODY_P2P;
    c.p2p = &h;
    struct wmsg *x = wmsg_new(WMSG_P2P, dest, &c);
    if (!x) {
        zmq_msg_close(data);
        return -ENOMEM;
    }
    zmq_msg_move(&x->data, data);
    zmq_msg_close(data);
    x->has_data = true;
    return post(w, x);
}

void *world_socket(struct world *w) {
    return w->loop_end;
}

void *world_watch_socket(struct world *w) {
    return w->watch_loop;
}

bool world_watch_read(struct world *w, struct world_watch_event *ev) {
    return zmq_recv(w->watch_loop, ev, sizeof *ev, ZMQ_DONTWAIT) == (int) sizeof *ev;
}

void world_dispatch(struct world *w, struct server *s) {
    struct world_event *e;
    while ((e = recv_ptr(w->loop_end, ZMQ_DONTWAIT)))
        span_event(s, e);
}
