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
#include <stdlib.h>
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
    // One request at a time uses the member's staging segment; the others
    // in flight meanwhile go inline.
    if (g->m->staging_busy)
        thr = 0;
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
    if (pi.staged || po.staged)
        g->m->staging_busy = true;      // until the request completes
    *ret_in = pi;
    *ret_out = po;
}

// Checks that an op's reply carries no result, as send and barrier expect.
static int take_nothing(struct reply *rep, const char *name, char *err) {
    bool extra = rep->has_data;
    reply_done(rep);
    if (extra)
        return lib_errorf(err, MLXD_EPROTO, "mlxd answered %s with a tensor", name);
    return 0;
}

// Checks that an op's reply carries exactly the result expected (want's
// dtype and shape, nbytes) where it was asked for (po), and puts it in dst:
// copied from the reply's frame or the staging segment, or already there
// when dst is the caller's shared memory. Neither source is ever the
// caller's buffer, so memcpy is safe even when dst is the input (in place).
static int take_result(struct reply *rep, const mlxd_array *want, size_t nbytes, void *dst,
                       const struct placement *po, const char *name, char *err) {
    const Mlxd__OpReply *op = rep->pb->body_case == MLXD__REPLY__BODY_OP ? rep->pb->op : NULL;
    const Mlxd__Tensor *t = op ? op->output : NULL;
    char got_s[128], want_s[128];
    int r = 0;

    if (!t)
        r = lib_errorf(err, MLXD_EPROTO, "mlxd answered %s without an output", name);
    else if (po->shm && (t->segment != po->ref.segment || t->offset != po->ref.offset ||
                         t->frame != 0 || rep->has_data))
        r = lib_errorf(err, MLXD_EPROTO,
                       "mlxd answered %s with an output that is not in shared-memory segment %u "
                       "at offset %llu, where it was asked for",
                       name, po->ref.segment, (unsigned long long) po->ref.offset);
    else if (!po->shm && (t->segment != 0 || t->frame != 1 || !rep->has_data))
        r = lib_errorf(err, MLXD_EPROTO,
                       "mlxd answered %s with an output that is not inline in frame 1", name);
    else if (t->dtype != (uint32_t) want->dtype || t->n_shape != (size_t) want->ndim ||
             (want->ndim > 0 &&
              memcmp(t->shape, want->shape, (size_t) want->ndim * sizeof want->shape[0]) != 0))
        r = lib_errorf(err, MLXD_EPROTO, "mlxd answered %s with %s, expected %s", name,
                       t->n_shape <= MLXD_MAX_NDIM
                           ? describe(got_s, sizeof got_s, (mlxd_dtype) t->dtype, t->n_shape, t->shape)
                           : "too many dimensions",
                       describe(want_s, sizeof want_s, want->dtype, (size_t) want->ndim, want->shape));
    else if (po->shm) {
        if (po->staged && nbytes > 0)
            memcpy(dst, po->staged, nbytes);
    } else if (zmq_msg_size(&rep->data) != nbytes)
        r = lib_errorf(err, MLXD_EPROTO,
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

/* Requests.
 *
 * Every op is issued (checked, placed, sent: issue_*) and then completed
 * (its reply waited for and its result taken: complete()). A blocking call
 * does both under the member's lock with its request on the stack; the
 * nonblocking ones hand a heap request to the caller, and mlxd_wait()
 * completes it. Errors found before anything is sent go to the handle's
 * last_error and are returned at once; those of the reply go to the
 * request's err, which mlxd_wait() copies to the handle. */

struct mlxd_request {
    mlxd_group *g;                      // the handle it was issued on; NULL once freed
    struct member *m;
    struct mlxd_request *next;          // in m->outstanding, in issue order
    const char *name;                   // the op, for messages
    bool done;                          // rc is its result; nothing in flight
    int rc;
    bool tracked;                       // in m->outstanding
    bool staged;                        // it holds the member's staging segment
    uint64_t id, deadline_us;           // in flight on m->conn
    bool has_result;                    // a tensor comes back (else nothing)
    mlxd_array want;                    // the result's dtype and shape
    size_t out_bytes;
    void *dst;                          // where the result goes
    struct placement po;
    char err[LIB_ERR_MAX];
};

static void request_start(struct mlxd_request *r, mlxd_group *g, const char *name) {
    r->g = g;
    r->m = g->m;
    r->next = NULL;
    r->name = name;
    r->done = false;
    r->rc = 0;
    r->tracked = false;
    r->staged = false;
    r->has_result = false;
    r->dst = NULL;
    r->out_bytes = 0;
    r->err[0] = '\0';
}

// Done without the daemon (a local singleton's op).
static void request_done_locally(struct mlxd_request *r) {
    r->done = true;
    r->rc = 0;
}

// Sends req with call's tensor; the request is in flight on success. On
// failure the staging segment the placement took is given back.
static int request_send(struct mlxd_request *r, Mlxd__Request *req, const struct call *call,
                        const struct placement *pi, const struct placement *po) {
    r->staged = (pi && pi->staged) || (po && po->staged);
    int rc = conn_issue(r->m->conn, req, call, &r->id, &r->deadline_us, r->g->last_error);
    if (rc < 0 && r->staged)
        r->m->staging_busy = false;
    return rc;
}

// Waits for r's reply and takes its result: r is done. Under the member's lock.
static void complete(struct mlxd_request *r) {
    struct reply rep;
    if (r->done)
        return;
    int rc = conn_finish(r->m->conn, r->id, r->deadline_us, &rep, r->err);
    if (rc == 0)
        rc = r->has_result ? take_result(&rep, &r->want, r->out_bytes, r->dst, &r->po, r->name, r->err)
                           : take_nothing(&rep, r->name, r->err);
    if (r->staged)
        r->m->staging_busy = false;
    r->rc = rc;
    r->done = true;
    if (r->tracked) {
        for (struct mlxd_request **p = &r->m->outstanding; *p; p = &(*p)->next)
            if (*p == r) {
                *p = r->next;
                break;
            }
        r->tracked = false;
    }
}

void lib_requests_complete(mlxd_group *g) {
    struct mlxd_request *r, *next;
    for (r = g->m->outstanding; r; r = next) {
        next = r->next;
        if (r->g != g)
            continue;
        complete(r);
        r->g = NULL;
    }
}

// all_sum, all_max, all_min, all_gather and sum_scatter: x in, a result of
// the shape the op implies out.
static int issue_collective(mlxd_group *g, Mlxd__OpType type, const mlxd_array *x, const mlxd_array *out,
                            struct mlxd_request *r) {
    const char *name = wire_op_name(type);
    size_t in_bytes, out_bytes;
    uint64_t n;
    int rc;

    request_start(r, g, name);
    if ((rc = check_array("x", x, &in_bytes, g->last_error)) < 0)
        return rc;
    if (!out)
        return lib_errorf(g->last_error, MLXD_EINVAL, "out is NULL");

    // The result's dtype and shape, taken from x before out (which may be x)
    // is written.
    mlxd_array want = *x;
    if (wire_result_shape(type, g->size, &want.ndim, want.shape) < 0) {
        if (type == MLXD__OP_TYPE__OP_ALL_GATHER)
            return lib_errorf(g->last_error, MLXD_EINVAL, "all_gather: the result's size overflows");
        if (want.ndim == 0)
            return lib_errorf(g->last_error, MLXD_EINVAL,
                              "sum_scatter: x is a scalar; it needs an axis 0 to scatter");
        return lib_errorf(g->last_error, MLXD_EINVAL,
                          "sum_scatter: x.shape[0] = %lld is not divisible by the group size %d",
                          (long long) want.shape[0], g->size);
    }
    if (wire_tensor_nbytes((uint32_t) want.dtype, (size_t) want.ndim, want.shape, &n) < 0 ||
        n > SIZE_MAX)
        return lib_errorf(g->last_error, MLXD_EINVAL, "%s: the result's size overflows", name);
    out_bytes = (size_t) n;
    if ((rc = check_data("out", out->data, out_bytes, g->last_error)) < 0)
        return rc;
    r->want = want;
    r->want.data = out->data;
    r->out_bytes = out_bytes;
    r->dst = out->data;
    r->has_result = true;

    if (!g->m->conn) {
        // A group of one: every collective gives x back (size 1 makes the
        // result exactly as large as x). out->data may be x->data.
        if (in_bytes > 0)
            memmove(out->data, x->data, in_bytes);
        request_done_locally(r);
        return 0;
    }
    if ((rc = broken_check(g)) < 0)
        return rc;
    Mlxd__Tensor input = MLXD__TENSOR__INIT, output = MLXD__TENSOR__INIT;
    Mlxd__OpRequest op = MLXD__OP_REQUEST__INIT;
    Mlxd__Request req = MLXD__REQUEST__INIT;
    struct placement pi;
    bool reduction = type == MLXD__OP_TYPE__OP_ALL_SUM || type == MLXD__OP_TYPE__OP_ALL_MAX ||
                     type == MLXD__OP_TYPE__OP_ALL_MIN;
    place(g, x->data, in_bytes, out->data, out_bytes, reduction, &pi, &r->po);
    tensor_of(&input, x, &pi, true);
    op.op = type;
    op.input = &input;
    if (r->po.shm) {
        // The daemon writes the result there and says so in its reply.
        tensor_of(&output, &r->want, &r->po, false);
        op.output = &output;
    }
    req.body_case = MLXD__REQUEST__BODY_OP;
    req.op = &op;
    struct call call = { .timeout_ms = g->timeout_ms, .tensor = !pi.shm, .data = x->data,
                         .nbytes = pi.shm ? 0 : in_bytes, .reply_nbytes = r->po.shm ? 0 : out_bytes,
                         .shm_nbytes = (pi.shm ? in_bytes : 0) + (r->po.shm ? out_bytes : 0) };
    return request_send(r, &req, &call, &pi, &r->po);
}

static int issue_send(mlxd_group *g, const mlxd_array *x, int dst, struct mlxd_request *r) {
    size_t nbytes;
    int rc;
    request_start(r, g, "send");
    if ((rc = check_array("x", x, &nbytes, g->last_error)) < 0 ||
        (rc = check_peer(g, "send: dst", dst, g->last_error)) < 0 || (rc = broken_check(g)) < 0)
        return rc;

    Mlxd__Tensor input = MLXD__TENSOR__INIT;
    Mlxd__OpRequest op = MLXD__OP_REQUEST__INIT;
    Mlxd__Request req = MLXD__REQUEST__INIT;
    struct placement pi, po;
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
    return request_send(r, &req, &call, &pi, NULL);
}

// recv into data, with the dtype and shape of want.
static int issue_recv(mlxd_group *g, const mlxd_array *want, const char *what, void *data, int src,
                      struct mlxd_request *r) {
    size_t nbytes;
    int rc;
    request_start(r, g, "recv");
    mlxd_array a = *want;
    a.data = data;
    if ((rc = check_shape(what, &a, &nbytes, g->last_error)) < 0 ||
        (rc = check_data("out", data, nbytes, g->last_error)) < 0 ||
        (rc = check_peer(g, "recv: src", src, g->last_error)) < 0 || (rc = broken_check(g)) < 0)
        return rc;
    r->want = a;
    r->out_bytes = nbytes;
    r->dst = data;
    r->has_result = true;

    Mlxd__Tensor expect = MLXD__TENSOR__INIT;
    Mlxd__OpRequest op = MLXD__OP_REQUEST__INIT;
    Mlxd__Request req = MLXD__REQUEST__INIT;
    struct placement pi;
    place(g, NULL, 0, data, nbytes, false, &pi, &r->po);
    tensor_of(&expect, &r->want, &r->po, false);
    op.op = MLXD__OP_TYPE__OP_RECV;
    op.output = &expect;
    op.peer = src;
    req.body_case = MLXD__REQUEST__BODY_OP;
    req.op = &op;
    struct call call = { .timeout_ms = g->timeout_ms, .reply_nbytes = r->po.shm ? 0 : nbytes,
                         .shm_nbytes = r->po.shm ? nbytes : 0 };
    return request_send(r, &req, &call, NULL, &r->po);
}

static int issue_barrier(mlxd_group *g, struct mlxd_request *r) {
    int rc;
    request_start(r, g, "barrier");
    if (!g->m->conn) {
        request_done_locally(r);
        return 0;
    }
    if ((rc = broken_check(g)) < 0)
        return rc;
    Mlxd__OpRequest op = MLXD__OP_REQUEST__INIT;
    Mlxd__Request req = MLXD__REQUEST__INIT;
    op.op = MLXD__OP_TYPE__OP_BARRIER;
    req.body_case = MLXD__REQUEST__BODY_OP;
    req.op = &op;
    struct call call = { .timeout_ms = g->timeout_ms };
    return request_send(r, &req, &call, NULL, NULL);
}

/* The calls. Each takes the member's lock (its handles share one
 * connection and one op sequence) and clears the handle's last_error. */

// What every op does with its request once issued (rc: what issuing
// returned): a blocking call completes it at once; a nonblocking one
// hands it to the caller, kept on the member's list until it completes.
static int finish_blocking(mlxd_group *g, struct mlxd_request *r, int rc) {
    if (rc < 0)
        return rc;
    complete(r);
    if (r->rc < 0)
        snprintf(g->last_error, LIB_ERR_MAX, "%s", r->err);
    return r->rc;
}

static void track(struct mlxd_request *r) {
    if (r->done)
        return;
    struct mlxd_request **p = &r->m->outstanding;
    while (*p)
        p = &(*p)->next;
    *p = r;
    r->tracked = true;
}

// Writes the result's descriptor into out (its data pointer stays).
static void fill_out(mlxd_array *out, const mlxd_array *want) {
    out->dtype = want->dtype;
    out->ndim = want->ndim;
    memcpy(out->shape, want->shape, sizeof out->shape);
}

static int collective(mlxd_group *g, Mlxd__OpType type, const mlxd_array *x, mlxd_array *out) {
    struct mlxd_request r;
    if (!g)
        return MLXD_EINVAL;
    pthread_mutex_lock(&g->m->lock);
    g->last_error[0] = '\0';
    int rc = finish_blocking(g, &r, issue_collective(g, type, x, out, &r));
    pthread_mutex_unlock(&g->m->lock);
    if (rc == 0)
        fill_out(out, &r.want);
    return rc;
}

// What a nonblocking op issues: one of the issue_*() with its arguments.
struct issue {
    Mlxd__OpType type;                  // a collective's; SEND, RECV
    const mlxd_array *x;
    mlxd_array *out;
    int peer;
};

// A nonblocking op: a request on the heap, issued, kept on the member's list
// and handed to the caller; out's descriptor is filled at once.
static int start(mlxd_group *g, const struct issue *is, mlxd_request **ret) {
    struct mlxd_request *r = NULL;
    int rc;
    if (!g)
        return MLXD_EINVAL;
    pthread_mutex_lock(&g->m->lock);
    g->last_error[0] = '\0';
    if (!ret)
        rc = lib_errorf(g->last_error, MLXD_EINVAL, "ret is NULL");
    else if (!(r = malloc(sizeof *r)))
        rc = lib_errorf(g->last_error, MLXD_ENOMEM, "out of memory");
    else if (is->type == MLXD__OP_TYPE__OP_SEND)
        rc = issue_send(g, is->x, is->peer, r);
    else if (is->type == MLXD__OP_TYPE__OP_RECV)
        rc = is->out ? issue_recv(g, is->out, "out", is->out->data, is->peer, r)
                     : lib_errorf(g->last_error, MLXD_EINVAL, "out is NULL");
    else
        rc = issue_collective(g, is->type, is->x, is->out, r);
    if (rc < 0) {
        free(r);
    } else {
        if (is->out && is->type != MLXD__OP_TYPE__OP_RECV)
            fill_out(is->out, &r->want);
        track(r);
        *ret = r;
    }
    pthread_mutex_unlock(&g->m->lock);
    return rc;
}

static int icollective(mlxd_group *g, Mlxd__OpType type, const mlxd_array *x, mlxd_array *out,
                       mlxd_request **ret) {
    struct issue is = { .type = type, .x = x, .out = out };
    return start(g, &is, ret);
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

int mlxd_iall_sum(mlxd_group *g, const mlxd_array *x, mlxd_array *out, mlxd_request **ret) {
    return icollective(g, MLXD__OP_TYPE__OP_ALL_SUM, x, out, ret);
}

int mlxd_iall_max(mlxd_group *g, const mlxd_array *x, mlxd_array *out, mlxd_request **ret) {
    return icollective(g, MLXD__OP_TYPE__OP_ALL_MAX, x, out, ret);
}

int mlxd_iall_min(mlxd_group *g, const mlxd_array *x, mlxd_array *out, mlxd_request **ret) {
    return icollective(g, MLXD__OP_TYPE__OP_ALL_MIN, x, out, ret);
}

int mlxd_iall_gather(mlxd_group *g, const mlxd_array *x, mlxd_array *out, mlxd_request **ret) {
    return icollective(g, MLXD__OP_TYPE__OP_ALL_GATHER, x, out, ret);
}

int mlxd_isum_scatter(mlxd_group *g, const mlxd_array *x, mlxd_array *out, mlxd_request **ret) {
    return icollective(g, MLXD__OP_TYPE__OP_SUM_SCATTER, x, out, ret);
}

int mlxd_send(mlxd_group *g, const mlxd_array *x, int dst) {
    struct mlxd_request r;
    if (!g)
        return MLXD_EINVAL;
    pthread_mutex_lock(&g->m->lock);
    g->last_error[0] = '\0';
    int rc = finish_blocking(g, &r, issue_send(g, x, dst, &r));
    pthread_mutex_unlock(&g->m->lock);
    return rc;
}

int mlxd_isend(mlxd_group *g, const mlxd_array *x, int dst, mlxd_request **ret) {
    struct issue is = { .type = MLXD__OP_TYPE__OP_SEND, .x = x, .peer = dst };
    return start(g, &is, ret);
}

// Blocking recv into data, with the dtype and shape of want (out itself for
// mlxd_recv, like for mlxd_recv_like). Writes nothing but data.
static int recv_into(mlxd_group *g, const mlxd_array *want, const char *what, void *data, int src) {
    struct mlxd_request r;
    pthread_mutex_lock(&g->m->lock);
    int rc = finish_blocking(g, &r, issue_recv(g, want, what, data, src, &r));
    pthread_mutex_unlock(&g->m->lock);
    return rc;
}

int mlxd_recv(mlxd_group *g, mlxd_array *out, int src) {
    if (!g)
        return MLXD_EINVAL;
    g->last_error[0] = '\0';
    if (!out)
        return lib_errorf(g->last_error, MLXD_EINVAL, "out is NULL");
    return recv_into(g, out, "out", out->data, src);
}

int mlxd_irecv(mlxd_group *g, mlxd_array *out, int src, mlxd_request **ret) {
    struct issue is = { .type = MLXD__OP_TYPE__OP_RECV, .out = out, .peer = src };
    return start(g, &is, ret);
}

int mlxd_recv_like(mlxd_group *g, const mlxd_array *like, mlxd_array *out, int src) {
    int rc;
    if (!g)
        return MLXD_EINVAL;
    g->last_error[0] = '\0';
    if (!like)
        return lib_errorf(g->last_error, MLXD_EINVAL, "like is NULL");
    if (!out)
        return lib_errorf(g->last_error, MLXD_EINVAL, "out is NULL");
    // like may be out; keep its dtype and shape before out is written.
    mlxd_array want = *like;
    if ((rc = recv_into(g, &want, "like", out->data, src)) < 0)
        return rc;
    fill_out(out, &want);
    return 0;
}

int mlxd_barrier(mlxd_group *g) {
    struct mlxd_request r;
    if (!g)
        return MLXD_EINVAL;
    pthread_mutex_lock(&g->m->lock);
    g->last_error[0] = '\0';
    int rc = finish_blocking(g, &r, issue_barrier(g, &r));
    pthread_mutex_unlock(&g->m->lock);
    return rc;
}

int mlxd_wait(mlxd_request *r) {
    if (!r)
        return MLXD_EINVAL;
    if (!r->done) {
        // Not done, so the handle it was issued on is still there.
        pthread_mutex_lock(&r->m->lock);
        complete(r);
        pthread_mutex_unlock(&r->m->lock);
    }
    int rc = r->rc;
    if (r->g)
        snprintf(r->g->last_error, LIB_ERR_MAX, "%s", rc < 0 ? r->err : "");
    free(r);
    return rc;
}

int mlxd_test(mlxd_request *r, bool *ret_done) {
    if (!r || !ret_done)
        return MLXD_EINVAL;
    if (!r->done) {
        pthread_mutex_lock(&r->m->lock);
        if (conn_ready(r->m->conn, r->id))
            complete(r);
        pthread_mutex_unlock(&r->m->lock);
    }
    *ret_done = r->done;
    return 0;
}
