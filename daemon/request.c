#include "request.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "job.h"

static int fail(char *err, size_t errlen, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return code;
}

// Checks one tensor; *ret_frame is its frame (0 for none).
static int check_tensor(const char *what, const Mlxd__Tensor *t, bool want_frame, const size_t *lens, int nframes,
                        const struct config *cfg, unsigned *used, char *err, size_t errlen) {
    uint64_t nbytes;
    if (!t)
        return fail(err, errlen, MLXD_EPROTO, "the %s tensor is missing", what);
    if (!wire_dtype(t->dtype))
        return fail(err, errlen, MLXD_EINVAL, "the %s tensor has an unknown dtype %u (valid: 0 to %d)", what,
                    t->dtype, MLXD_DTYPE_MAX - 1);
    if (t->n_shape > MLXD_MAX_NDIM)
        return fail(err, errlen, MLXD_EINVAL, "the %s tensor has %zu dimensions; at most %d are allowed", what,
                    t->n_shape, MLXD_MAX_NDIM);
    for (size_t i = 0; i < t->n_shape; i++)
        if (t->shape[i] < 0)
            return fail(err, errlen, MLXD_EINVAL, "dimension %zu of the %s tensor is negative (%lld)", i, what,
                        (long long) t->shape[i]);
    int r = wire_tensor_nbytes(t->dtype, t->n_shape, t->shape, &nbytes);
    if (r < 0 || nbytes > cfg->max_tensor_bytes)
        return fail(err, errlen, MLXD_ENOMEM, "the %s tensor is larger than the daemon's limit of %llu bytes", what,
                    (unsigned long long) cfg->max_tensor_bytes);
    if (t->segment != 0) {
        // In shared memory: the daemon resolves it against what this client
        // shared; no frame may come with it.
        if (t->frame != 0)
            return fail(err, errlen, MLXD_EPROTO, "the %s tensor names both a frame and a shared-memory segment", what);
        return 0;
    }
    if (!want_frame) {
        if (t->frame != 0)
            return fail(err, errlen, MLXD_EPROTO, "the %s tensor must not carry data", what);
        return 0;
    }
    if (t->frame == 0 || t->frame > (uint32_t) nframes)
        return fail(err, errlen, MLXD_EPROTO, "the %s tensor names frame %u, but the request has %d data frame(s)",
                    what, t->frame, nframes);
    if (*used & (1u << t->frame))
        return fail(err, errlen, MLXD_EPROTO, "frame %u is named twice", t->frame);
    *used |= 1u << t->frame;
    if (lens[t->frame - 1] != nbytes)
        return fail(err, errlen, MLXD_EPROTO,
                    "the %s tensor (%s %llu elements) needs %llu bytes but its frame has %zu", what,
                    wire_dtype(t->dtype)->name, (unsigned long long) (nbytes / wire_dtype(t->dtype)->size),
                    (unsigned long long) nbytes, lens[t->frame - 1]);
    return 0;
}

static int check_hello(const Mlxd__Hello *h, const struct config *cfg, char *err, size_t errlen) {
    if (h->version != MLXD_PROTOCOL_VERSION)
        return fail(err, errlen, MLXD_EPROTO, "protocol version %u is not supported (this mlxd speaks version %d); "
                    "use a libmlxd of the same release", h->version, MLXD_PROTOCOL_VERSION);
    if (h->attach_group)
        return 0;
    if (!wire_job_id_valid(h->job))
        return fail(err, errlen, MLXD_EINVAL, "invalid job id: it must be 1 to %d characters of A-Z a-z 0-9 . _ : @ + -",
                    WIRE_JOB_ID_MAX);
    if (h->size < 1 || h->size > cfg->max_group_size)
        return fail(err, errlen, MLXD_EINVAL, "invalid job size %d: it must be 1 to %d", h->size, cfg->max_group_size);
    if (h->rank < 0 || h->rank >= h->size)
        return fail(err, errlen, MLXD_EINVAL, "invalid rank %d for a job of size %d: it must be 0 to %d", h->rank,
                    h->size, h->size - 1);
    return 0;
}

static int check_op(const Mlxd__OpRequest *op, const size_t *lens, int nframes, const struct config *cfg,
                    char *err, size_t errlen) {
    unsigned used = 0;
    int r = 0;
    switch (op->op) {
    case MLXD__OP_TYPE__OP_ALL_SUM:
    case MLXD__OP_TYPE__OP_ALL_MAX:
    case MLXD__OP_TYPE__OP_ALL_MIN:
    case MLXD__OP_TYPE__OP_ALL_GATHER:
    case MLXD__OP_TYPE__OP_SUM_SCATTER:
    case MLXD__OP_TYPE__OP_SEND:
        r = check_tensor("input", op->input, true, lens, nframes, cfg, &used, err, errlen);
        if (r == 0 && op->output)
            r = check_tensor("output", op->output, false, lens, nframes, cfg, &used, err, errlen);
        if (r == 0 && op->op == MLXD__OP_TYPE__OP_SUM_SCATTER && op->input->n_shape == 0)
            r = fail(err, errlen, MLXD_EINVAL, "sum_scatter needs at least one dimension to scatter along");
        break;
    case MLXD__OP_TYPE__OP_RECV:
        if (op->input)
            return fail(err, errlen, MLXD_EPROTO, "recv takes no input tensor");
        r = check_tensor("output", op->output, false, lens, nframes, cfg, &used, err, errlen);
        break;
    case MLXD__OP_TYPE__OP_BARRIER:
    case MLXD__OP_TYPE__OP_SPLIT:
        if (op->input || op->output)
            return fail(err, errlen, MLXD_EPROTO, "%s takes no tensors", wire_op_name(op->op));
        break;
    default:
        return fail(err, errlen, MLXD_EPROTO, "unknown op %d", (int) op->op);
    }
    if (r < 0)
        return r;
    if (used != ((1u << (nframes + 1)) - 2))
        return fail(err, errlen, MLXD_EPROTO, "the request carries %d data frame(s) that no tensor names", nframes);
    return 0;
}

int request_validate_lengths(const Mlxd__Request *req, const size_t *lens, int nframes, const struct config *cfg,
                             char *err, size_t errlen) {
    if (nframes < 0 || nframes > 30)
        return fail(err, errlen, MLXD_EPROTO, "too many frames");
    if (req->body_case != MLXD__REQUEST__BODY_OP && nframes > 0)
        return fail(err, errlen, MLXD_EPROTO, "only op requests carry data frames");
    switch (req->body_case) {
    case MLXD__REQUEST__BODY_PING:
    case MLXD__REQUEST__BODY_STATUS:
    case MLXD__REQUEST__BODY_GOODBYE:
        return 0;
    case MLXD__REQUEST__BODY_HELLO:
        return check_hello(req->hello, cfg, err, errlen);
    case MLXD__REQUEST__BODY_OP:
        return check_op(req->op, lens, nframes, cfg, err, errlen);
    default:
        return fail(err, errlen, MLXD_EPROTO, "the request has no body this mlxd knows (type %d)", (int) req->body_case);
    }
}

int request_validate(const Mlxd__Request *req, const zmq_msg_t *frames, int nframes, const struct config *cfg,
                     char *err, size_t errlen) {
    size_t lens[30];
    if (nframes < 0 || nframes > 30)
        return fail(err, errlen, MLXD_EPROTO, "too many frames");
    for (int i = 0; i < nframes; i++)
        lens[i] = zmq_msg_size((zmq_msg_t *) &frames[i]);
    return request_validate_lengths(req, lens, nframes, cfg, err, errlen);
}

void request_fill_pending(const Mlxd__OpRequest *op, struct pending *p) {
    // Reductions, gathers and sends describe their input; recv its output.
    const Mlxd__Tensor *t = op->input ? op->input : op->output;
    p->d.op = op->op;
    p->peer = op->peer;
    p->d.color = op->color;
    p->d.key = op->key;
    if (t) {
        p->d.dtype = t->dtype;
        p->d.ndim = (int) t->n_shape;
        for (size_t i = 0; i < t->n_shape; i++)
            p->d.shape[i] = t->shape[i];
        wire_tensor_nbytes(t->dtype, t->n_shape, t->shape, &p->nbytes);
    }
}
