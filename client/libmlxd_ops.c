/* libmlxd's collectives: argument checks, the local singleton's answers, and
 * the requests to the daemon with their results. Every op checks its
 * arguments before anything goes on the wire, clears the group's last_error
 * on entry, and writes out's shape only on success (and out's data only on
 * success, except where out lies in mlxd_alloc memory: the daemon writes
 * there in place, and a failed op may have written part of it).
 *
 * Each tensor travels one of three ways (place()): named by segment and
 * offset when it lies in mlxd_alloc memory; through the group's staging
 * segment when it is in ordinary memory and larger than the threshold (one
 * copy in, one copy out); inline as a raw frame otherwise. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "libmlxd_impl.h"

// "float32 [2, 3]", for messages.
static const char *describe(char *buf, size_t size, mlxd_dtype dtype, size_t ndim,
                            const int64_t *shape) {
    int n = snprintf(buf, size, "%s [", mlxd_dtype_name(dtype));
    for (size_t i = 0; i < ndim && n > 0 && (size_t) n < size; i++)
        n += snprintf(buf + n, size - (size_t) n, "%s%lld", i ? ", " : "", (long long) shape[i]);
    if (n > 0 && (size_t) n < size)
        snprintf(buf + n, size - (size_t) n, "]");
    return buf;
}

// Checks an array the caller passed (dtype, ndim, dims) and gives its size
// in bytes; the data pointer is check_data()'s business.
static int check_shape(const char *what, const mlxd_array *a, size_t *ret_nbytes, char *err) {
    uint64_t n;
    if (!a)
        return lib_errorf(err, MLXD_EINVAL, "%s is NULL", what);
    if ((unsigned) a->dtype >= MLXD_DTYPE_MAX)
        return lib_errorf(err, MLXD_EINVAL, "%s: dtype %d is not an mlxd_dtype", what, (int) a->dtype);
    if (a->ndim < 0 || a->ndim > MLXD_MAX_NDIM)
        return lib_errorf(err, MLXD_EINVAL, "%s: ndim %d is outside 0..%d", what, a->ndim,
                          MLXD_MAX_NDIM);
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] < 0)
            return lib_errorf(err, MLXD_EINVAL, "%s: shape[%d] is negative (%lld)", what, i,
                              (long long) a->shape[i]);
    if (wire_tensor_nbytes((uint32_t) a->dtype, (size_t) a->ndim, a->shape, &n) < 0 || n > SIZE_MAX)
        return lib_errorf(err, MLXD_EINVAL, "%s: the size of a %s tensor overflows", what,
                          mlxd_dtype_name(a->dtype));
    *ret_nbytes = (size_t) n;
    return 0;
}

static int check_data(const char *what, const void *data, size_t nbytes, char *err) {
    if (nbytes > 0 && !data)
        return lib_errorf(err, MLXD_EINVAL, "%s: data is NULL for %zu bytes", what, nbytes);
    return 0;
}

// check_shape() and check_data() of an input array.
static int check_array(const char *what, const mlxd_array *a, size_t *ret_nbytes, char *err) {
    size_t n;
    int r = check_shape(what, a, &n, err);
    if (r < 0 || (r = check_data(what, a->data, n, err)) < 0)
        return r;
    *ret_nbytes = n;
    return 0;
}

// Checks the rank a send or recv names.
static int check_peer(const mlxd_group *g, const char *what, int peer, char *err) {
    if (peer < 0 || peer >= g->size)
        return lib_errorf(err, MLXD_EINVAL, "%s %d is not a rank of a group of size %d", what, peer,
                          g->size);
    if (peer == g->rank)
        return lib_errorf(err, MLXD_EINVAL, "%s %d is this process's own rank", what, peer);
    return 0;
}

// How one tensor of an op travels.
struct placement {
    bool shm;                           // named by ref, no frame; else inline
    struct shm_ref ref;
    void *staged;                       // in the staging segment: the copy of the
                                        // input, or where the result lands
};

// Points a protobuf Tensor at an array's dtype and shape (borrowed from a,
// which outlives the request) and at where its bytes are: frame 1 inline, or
// the shared memory p names.
static void tensor_of(Mlxd__Tensor *t, const mlxd_array *a, const struct placement *p, bool inline_frame) {
    t->dtype = (uint32_t) a->dtype;
    t->n_shape = (size_t) a->ndim;
    t->shape = (int64_t *) a->shape;
    t->frame = 0;
    if (p && p->shm) {
        t->segment = p->ref.segment;
        t->offset = p->ref.offset;
    } else if (inline_frame) {
        t->frame = 1;
    }
}

// Decides how an op's input (in_bytes at in; NULL for none) and output
// (out_bytes at out; NULL for none) travel, and copies a staged input into
// the staging segment. one_area: the op may write its result over its input
// (the reductions, which work in place), so both can share one staging area.
// Staging that is not possible now (no side channel, the daemon's cap) leaves
// the tensors inline: it is only ever an optimisation.
static void place(mlxd_group *g, const void *in, size_t in_bytes, void *out, size_t out_bytes,
                  bool one_area, struct placement *ret_in, struct placement *ret_out) {
    struct placement pi = { 0 }, po = { 0 };
    size_t thr = g->m->shm_threshold, in_off = 0, out_off = 0, total = 0;

    pi.shm = in && shm_lookup(g->m->endpoint, in, in_bytes, &pi.ref);
    po.shm = out && shm_lookup(g->m->endpoint, out, out_bytes, &po.ref);
    bool stage_in = in && !pi.shm && thr > 0 && in_bytes > thr;
    bool stage_out = out && !po.shm && thr > 0 && out_bytes > thr;
    if (stage_in && stage_out && !one_area) {
        out_off = (in_bytes + 63) & ~(size_t) 63;
        if (out_off < in_bytes || __builtin_add_overflow(out_off, out_bytes, &total))
            stage_in = stage_out = false;
    } else {
        // One area at offset 0 serves whichever is staged.
        total = stage_in ? in_bytes : 0;
        if (stage_out && out_bytes > total)
            total = out_bytes;
    }
    uint8_t *base = stage_in || stage_out ? shm_staging_reserve(&g->m->staging, g->m->endpoint, total) : NULL;
    if (base && stage_in && shm_seg_ref(g->m->staging.seg, in_off, &pi.ref)) {
        pi.shm = true;
        pi.staged = base + in_off;
        memcpy(pi.staged, in, in_bytes);
    }
    if (base && stage_out && shm_seg_ref(g->m->staging.seg, out_off, &po.ref)) {
        po.shm = true;
        po.staged = base + out_off;
    }
    *ret_in = pi;
    *ret_out = po;
}

// Checks that an op's reply carries no result, as send and barrier expect.
static int take_nothing(mlxd_group *g, struct reply *rep, const char *name) {
    bool extra = rep->has_data;
    reply_done(rep);
    if (extra)
        return lib_errorf(g->last_error, MLXD_EPROTO, "mlxd answered %s with a tensor", name);
    return 0;
}

// Checks that an op's reply carries exactly the result expected (want's
// dtype and shape, nbytes) where it was asked for (po), and puts it in dst:
// copied from the reply's frame or the staging segment, or already there
// when dst is the caller's shared memory. Neither source is ever the
// caller's buffer, so memcpy is safe even when dst is the input (in place).
static int take_result(mlxd_group *g, struct reply *rep, const mlxd_array *want, size_t nbytes,
                       void *dst, const struct placement *po, const char *name) {
    const Mlxd__OpReply *op = rep->pb->body_case == MLXD__REPLY__BODY_OP ? rep->pb->op : NULL;
    const Mlxd__Tensor *t = op ? op->output : NULL;
    char got_s[128], want_s[128];
    int r = 0;

    if (!t)
        r = lib_errorf(g->last_error, MLXD_EPROTO, "mlxd answered %s without an output", name);
    else if (po->shm && (t->segment != po->ref.segment || t->offset != po->ref.offset ||
                         t->frame != 0 || rep->has_data))
        r = lib_errorf(g->last_error, MLXD_EPROTO,
                       "mlxd answered %s with an output that is not in shared-memory segment %u "
                       "at offset %llu, where it was asked for",
                       name, po->ref.segment, (unsigned long long) po->ref.offset);
    else if (!po->shm && (t->segment != 0 || t->frame != 1 || !rep->has_data))
        r = lib_errorf(g->last_error, MLXD_EPROTO,
                       "mlxd answered %s with an output that is not inline in frame 1", name);
    else if (t->dtype != (uint32_t) want->dtype || t->n_shape != (size_t) want->ndim ||
             (want->ndim > 0 &&
              memcmp(t->shape, want->shape, (size_t) want->ndim * sizeof want->shape[0]) != 0))
        r = lib_errorf(g->last_error, MLXD_EPROTO, "mlxd answered %s with %s, expected %s", name,
                       t->n_shape <= MLXD_MAX_NDIM
                           ? describe(got_s, sizeof got_s, (mlxd_dtype) t->dtype, t->n_shape, t->shape)
                           : "too many dimensions",
                       describe(want_s, sizeof want_s, want->dtype, (size_t) want->ndim, want->shape));
    else if (po->shm) {
        if (po->staged && nbytes > 0)
            memcpy(dst, po->staged, nbytes);
    } else if (zmq_msg_size(&rep->data) != nbytes)
        r = lib_errorf(g->last_error, MLXD_EPROTO,
                       "mlxd answered %s with %zu bytes of data, expected %zu", name,
                       zmq_msg_size(&rep->data), nbytes);
    else if (nbytes > 0)
        memcpy(dst, zmq_msg_data(&rep->data), nbytes);
    reply_done(rep);
    return r;
}

static int broken_check(mlxd_group *g) {
    if (g->m->conn && conn_is_broken(g->m->conn))
        return lib_errorf(g->last_error, MLXD_EUNAVAILABLE,
                          "the connection to mlxd at %s was lost earlier; free this group",
                          g->m->endpoint);
    return 0;
}

// all_sum, all_max, all_min, all_gather and sum_scatter: x in, a result of
// the shape the op implies out.
static int collective_locked(mlxd_group *g, Mlxd__OpType type, const mlxd_array *x, mlxd_array *out) {
    const char *name = wire_op_name(type);
    size_t in_bytes, out_bytes;
    uint64_t n;
    int r;

    if (!g)
        return MLXD_EINVAL;
    g->last_error[0] = '\0';
    if ((r = check_array("x", x, &in_bytes, g->last_error)) < 0)
        return r;
    if (!out)
        return lib_errorf(g->last_error, MLXD_EINVAL, "out is NULL");

    // The result's dtype and shape, taken from x before out (which may be x)
    // is written.
    mlxd_array want = *x;
    if (type == MLXD__OP_TYPE__OP_ALL_GATHER) {
        if (want.ndim == 0) {
            want.ndim = 1;
            want.shape[0] = g->size;
        } else if (__builtin_mul_overflow(want.shape[0], (int64_t) g->size, &want.shape[0])) {
            return lib_errorf(g->last_error, MLXD_EINVAL, "all_gather: the result's size overflows");
        }
    } else if (type == MLXD__OP_TYPE__OP_SUM_SCATTER) {
        if (want.ndim == 0)
            return lib_errorf(g->last_error, MLXD_EINVAL,
                              "sum_scatter: x is a scalar; it needs an axis 0 to scatter");
        if (want.shape[0] % g->size != 0)
            return lib_errorf(g->last_error, MLXD_EINVAL,
                              "sum_scatter: x.shape[0] = %lld is not divisible by the group size %d",
                              (long long) want.shape[0], g->size);
        want.shape[0] /= g->size;
    }
    if (wire_tensor_nbytes((uint32_t) want.dtype, (size_t) want.ndim, want.shape, &n) < 0 ||
        n > SIZE_MAX)
        return lib_errorf(g->last_error, MLXD_EINVAL, "%s: the result's size overflows", name);
    out_bytes = (size_t) n;
    if ((r = check_data("out", out->data, out_bytes, g->last_error)) < 0)
        return r;

    if (!g->m->conn) {
        // A group of one: every collective gives x back (size 1 makes the
        // result exactly as large as x). out->data may be x->data.
        if (in_bytes > 0)
            memmove(out->data, x->data, in_bytes);
    } else {
        if ((r = broken_check(g)) < 0)
            return r;
        Mlxd__Tensor input = MLXD__TENSOR__INIT, output = MLXD__TENSOR__INIT;
        Mlxd__OpRequest op = MLXD__OP_REQUEST__INIT;
        Mlxd__Request req = MLXD__REQUEST__INIT;
        struct placement pi, po;
        struct reply rep;
        bool reduction = type == MLXD__OP_TYPE__OP_ALL_SUM || type == MLXD__OP_TYPE__OP_ALL_MAX ||
                         type == MLXD__OP_TYPE__OP_ALL_MIN;
        place(g, x->data, in_bytes, out->data, out_bytes, reduction, &pi, &po);
        tensor_of(&input, x, &pi, true);
        op.op = type;
        op.input = &input;
        if (po.shm) {
            // The daemon writes the result there and says so in its reply.
            tensor_of(&output, &want, &po, false);
            op.output = &output;
        }
        req.body_case = MLXD__REQUEST__BODY_OP;
        req.op = &op;
        struct call call = { .timeout_ms = g->timeout_ms, .tensor = !pi.shm, .data = x->data,
                             .nbytes = pi.shm ? 0 : in_bytes, .reply_nbytes = po.shm ? 0 : out_bytes,
                             .shm_nbytes = (pi.shm ? in_bytes : 0) + (po.shm ? out_bytes : 0) };
        r = conn_call(g->m->conn, &req, &call, &rep, g->last_error);
        if (r < 0)
            return r;
        if ((r = take_result(g, &rep, &want, out_bytes, out->data, &po, name)) < 0)
            return r;
    }
    out->dtype = want.dtype;
    out->ndim = want.ndim;
    memcpy(out->shape, want.shape, sizeof out->shape);
    return 0;
}

// The handles of one member share its connection: its ops run one at a time.
static int collective(mlxd_group *g, Mlxd__OpType type, const mlxd_array *x, mlxd_array *out) {
    if (!g)
        return MLXD_EINVAL;
    pthread_mutex_lock(&g->m->lock);
    int r = collective_locked(g, type, x, out);
    pthread_mutex_unlock(&g->m->lock);
    return r;
}

int mlxd_all_sum(mlxd_group *g, const mlxd_array *x, mlxd_array *out) {
    return collective(g, MLXD__OP_TYPE__OP_ALL_SUM, x, out);
}

int mlxd_all_max(mlxd_group *g, const mlxd_array *x, mlxd_array *out) {
    return collective(g, MLXD__OP_TYPE__OP_ALL_MAX, x, out);
}

int mlxd_all_min(mlxd_group *g, const mlxd_array *x, mlxd_array *out) {
    return collective(g, MLXD__OP_TYPE__OP_ALL_MIN, x, out);
}

int mlxd_all_gather(mlxd_group *g, const mlxd_array *x, mlxd_array *out) {
    return collective(g, MLXD__OP_TYPE__OP_ALL_GATHER, x, out);
}

int mlxd_sum_scatter(mlxd_group *g, const mlxd_array *x, mlxd_array *out) {
    return collective(g, MLXD__OP_TYPE__OP_SUM_SCATTER, x, out);
}

static int send_locked(mlxd_group *g, const mlxd_array *x, int dst) {
    size_t nbytes;
    int r;
    g->last_error[0] = '\0';
    if ((r = check_array("x", x, &nbytes, g->last_error)) < 0 ||
        (r = check_peer(g, "send: dst", dst, g->last_error)) < 0 || (r = broken_check(g)) < 0)
        return r;

    Mlxd__Tensor input = MLXD__TENSOR__INIT;
    Mlxd__OpRequest op = MLXD__OP_REQUEST__INIT;
    Mlxd__Request req = MLXD__REQUEST__INIT;
    struct placement pi, po;
    struct reply rep;
    // The daemon copies a message out of shared memory before it answers, so
    // the caller may reuse x (and the staging segment serve the next op).
    place(g, x->data, nbytes, NULL, 0, false, &pi, &po);
    tensor_of(&input, x, &pi, true);
    op.op = MLXD__OP_TYPE__OP_SEND;
    op.input = &input;
    op.peer = dst;
    req.body_case = MLXD__REQUEST__BODY_OP;
    req.op = &op;
    struct call call = { .timeout_ms = g->timeout_ms, .tensor = !pi.shm, .data = x->data,
                         .nbytes = pi.shm ? 0 : nbytes, .shm_nbytes = pi.shm ? nbytes : 0 };
    r = conn_call(g->m->conn, &req, &call, &rep, g->last_error);
    if (r < 0)
        return r;
    return take_nothing(g, &rep, "send");
}

int mlxd_send(mlxd_group *g, const mlxd_array *x, int dst) {
    if (!g)
        return MLXD_EINVAL;
    pthread_mutex_lock(&g->m->lock);
    int r = send_locked(g, x, dst);
    pthread_mutex_unlock(&g->m->lock);
    return r;
}

// recv into data, with the dtype and shape of want (out itself for
// mlxd_recv, like for mlxd_recv_like). Writes nothing but data.
static int recv_locked(mlxd_group *g, const mlxd_array *want, const char *what, void *data, int src) {
    size_t nbytes;
    int r;
    mlxd_array a = *want;
    a.data = data;
    if ((r = check_shape(what, &a, &nbytes, g->last_error)) < 0 ||
        (r = check_data("out", data, nbytes, g->last_error)) < 0 ||
        (r = check_peer(g, "recv: src", src, g->last_error)) < 0 || (r = broken_check(g)) < 0)
        return r;

    Mlxd__Tensor expect = MLXD__TENSOR__INIT;
    Mlxd__OpRequest op = MLXD__OP_REQUEST__INIT;
    Mlxd__Request req = MLXD__REQUEST__INIT;
    struct placement pi, po;
    struct reply rep;
    place(g, NULL, 0, data, nbytes, false, &pi, &po);
    tensor_of(&expect, &a, &po, false);
    op.op = MLXD__OP_TYPE__OP_RECV;
    op.output = &expect;
    op.peer = src;
    req.body_case = MLXD__REQUEST__BODY_OP;
    req.op = &op;
    struct call call = { .timeout_ms = g->timeout_ms, .reply_nbytes = po.shm ? 0 : nbytes,
                         .shm_nbytes = po.shm ? nbytes : 0 };
    r = conn_call(g->m->conn, &req, &call, &rep, g->last_error);
    if (r < 0)
        return r;
    return take_result(g, &rep, &a, nbytes, data, &po, "recv");
}

static int recv_into(mlxd_group *g, const mlxd_array *want, const char *what, void *data, int src) {
    pthread_mutex_lock(&g->m->lock);
    int r = recv_locked(g, want, what, data, src);
    pthread_mutex_unlock(&g->m->lock);
    return r;
}

int mlxd_recv(mlxd_group *g, mlxd_array *out, int src) {
    if (!g)
        return MLXD_EINVAL;
    g->last_error[0] = '\0';
    if (!out)
        return lib_errorf(g->last_error, MLXD_EINVAL, "out is NULL");
    return recv_into(g, out, "out", out->data, src);
}

int mlxd_recv_like(mlxd_group *g, const mlxd_array *like, mlxd_array *out, int src) {
    int r;
    if (!g)
        return MLXD_EINVAL;
    g->last_error[0] = '\0';
    if (!like)
        return lib_errorf(g->last_error, MLXD_EINVAL, "like is NULL");
    if (!out)
        return lib_errorf(g->last_error, MLXD_EINVAL, "out is NULL");
    // like may be out; keep its dtype and shape before out is written.
    mlxd_array want = *like;
    if ((r = recv_into(g, &want, "like", out->data, src)) < 0)
        return r;
    out->dtype = want.dtype;
    out->ndim = want.ndim;
    memcpy(out->shape, want.shape, sizeof out->shape);
    return 0;
}

static int barrier_locked(mlxd_group *g) {
    int r;
    if (!g->m->conn)
        return 0;
    if ((r = broken_check(g)) < 0)
        return r;

    Mlxd__OpRequest op = MLXD__OP_REQUEST__INIT;
    Mlxd__Request req = MLXD__REQUEST__INIT;
    struct reply rep;
    op.op = MLXD__OP_TYPE__OP_BARRIER;
    req.body_case = MLXD__REQUEST__BODY_OP;
    req.op = &op;
    struct call call = { .timeout_ms = g->timeout_ms };
    r = conn_call(g->m->conn, &req, &call, &rep, g->last_error);
    if (r < 0)
        return r;
    return take_nothing(g, &rep, "barrier");
}

int mlxd_barrier(mlxd_group *g) {
    if (!g)
        return MLXD_EINVAL;
    g->last_error[0] = '\0';
    pthread_mutex_lock(&g->m->lock);
    int r = barrier_locked(g);
    pthread_mutex_unlock(&g->m->lock);
    return r;
}
