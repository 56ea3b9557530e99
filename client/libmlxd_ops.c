/* libmlxd's collectives: argument checks, the local singleton's answers, and
 * the requests to the daemon with their results. Every op checks its
 * arguments before anything goes on the wire, clears the group's last_error
 * on entry, and writes out's data and shape only on success. */
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

// Points a protobuf Tensor at an array's dtype and shape; the shape is
// borrowed from a, which outlives the request.
static void tensor_of(Mlxd__Tensor *t, const mlxd_array *a, uint32_t frame) {
    t->dtype = (uint32_t) a->dtype;
    t->n_shape = (size_t) a->ndim;
    t->shape = (int64_t *) a->shape;
    t->frame = frame;
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
// dtype and shape, inline as one raw frame of nbytes) and copies it to dst.
// The frame is ZeroMQ's own buffer, never the caller's, so memcpy is safe
// even when dst is the input (in place).
static int take_result(mlxd_group *g, struct reply *rep, const mlxd_array *want, size_t nbytes,
                       void *dst, const char *name) {
    const Mlxd__OpReply *op = rep->pb->body_case == MLXD__REPLY__BODY_OP ? rep->pb->op : NULL;
    const Mlxd__Tensor *t = op ? op->output : NULL;
    char got_s[128], want_s[128];
    int r = 0;

    if (!t)
        r = lib_errorf(g->last_error, MLXD_EPROTO, "mlxd answered %s without an output", name);
    else if (t->segment != 0 || t->frame != 1 || !rep->has_data)
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
    else if (zmq_msg_size(&rep->data) != nbytes)
        r = lib_errorf(g->last_error, MLXD_EPROTO,
                       "mlxd answered %s with %zu bytes of data, expected %zu", name,
                       zmq_msg_size(&rep->data), nbytes);
    else if (nbytes > 0)
        memcpy(dst, zmq_msg_data(&rep->data), nbytes);
    reply_done(rep);
    return r;
}

static int broken_check(mlxd_group *g) {
    if (g->conn && conn_is_broken(g->conn))
        return lib_errorf(g->last_error, MLXD_EUNAVAILABLE,
                          "the connection to mlxd at %s was lost earlier; free this group",
                          g->endpoint);
    return 0;
}

// all_sum, all_max, all_min, all_gather and sum_scatter: x in, a result of
// the shape the op implies out.
static int collective(mlxd_group *g, Mlxd__OpType type, const mlxd_array *x, mlxd_array *out) {
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

    if (!g->conn) {
        // A group of one: every collective gives x back (size 1 makes the
        // result exactly as large as x). out->data may be x->data.
        if (in_bytes > 0)
            memmove(out->data, x->data, in_bytes);
    } else {
        if ((r = broken_check(g)) < 0)
            return r;
        Mlxd__Tensor input = MLXD__TENSOR__INIT;
        Mlxd__OpRequest op = MLXD__OP_REQUEST__INIT;
        Mlxd__Request req = MLXD__REQUEST__INIT;
        struct reply rep;
        tensor_of(&input, x, 1);
        op.op = type;
        op.input = &input;
        req.body_case = MLXD__REQUEST__BODY_OP;
        req.op = &op;
        struct call call = { .timeout_ms = g->timeout_ms, .tensor = true, .data = x->data,
                             .nbytes = in_bytes, .reply_nbytes = out_bytes };
        r = conn_call(g->conn, &req, &call, &rep, g->last_error);
        if (r < 0)
            return r;
        if ((r = take_result(g, &rep, &want, out_bytes, out->data, name)) < 0)
            return r;
    }
    out->dtype = want.dtype;
    out->ndim = want.ndim;
    memcpy(out->shape, want.shape, sizeof out->shape);
    return 0;
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

int mlxd_send(mlxd_group *g, const mlxd_array *x, int dst) {
    size_t nbytes;
    int r;
    if (!g)
        return MLXD_EINVAL;
    g->last_error[0] = '\0';
    if ((r = check_array("x", x, &nbytes, g->last_error)) < 0 ||
        (r = check_peer(g, "send: dst", dst, g->last_error)) < 0 || (r = broken_check(g)) < 0)
        return r;

    Mlxd__Tensor input = MLXD__TENSOR__INIT;
    Mlxd__OpRequest op = MLXD__OP_REQUEST__INIT;
    Mlxd__Request req = MLXD__REQUEST__INIT;
    struct reply rep;
    tensor_of(&input, x, 1);
    op.op = MLXD__OP_TYPE__OP_SEND;
    op.input = &input;
    op.peer = dst;
    req.body_case = MLXD__REQUEST__BODY_OP;
    req.op = &op;
    struct call call = { .timeout_ms = g->timeout_ms, .tensor = true, .data = x->data, .nbytes = nbytes };
    r = conn_call(g->conn, &req, &call, &rep, g->last_error);
    if (r < 0)
        return r;
    return take_nothing(g, &rep, "send");
}

// recv into data, with the dtype and shape of want (out itself for
// mlxd_recv, like for mlxd_recv_like). Writes nothing but data.
static int recv_into(mlxd_group *g, const mlxd_array *want, const char *what, void *data, int src) {
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
    struct reply rep;
    tensor_of(&expect, &a, 0);
    op.op = MLXD__OP_TYPE__OP_RECV;
    op.output = &expect;
    op.peer = src;
    req.body_case = MLXD__REQUEST__BODY_OP;
    req.op = &op;
    struct call call = { .timeout_ms = g->timeout_ms, .reply_nbytes = nbytes };
    r = conn_call(g->conn, &req, &call, &rep, g->last_error);
    if (r < 0)
        return r;
    return take_result(g, &rep, &a, nbytes, data, "recv");
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

int mlxd_barrier(mlxd_group *g) {
    int r;
    if (!g)
        return MLXD_EINVAL;
    g->last_error[0] = '\0';
    if (!g->conn)
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
    r = conn_call(g->conn, &req, &call, &rep, g->last_error);
    if (r < 0)
        return r;
    return take_nothing(g, &rep, "barrier");
}
