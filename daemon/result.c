/* The answer to an op: a tensor (in a frame or already in the member's
 * shared memory) or nothing. */
#include "result.h"

#include "pool.h"

// Answers p with a tensor whose bytes are in frame (moved), or, when p's
// result goes to shared memory, already there (frame NULL).
void op_reply_tensor(struct server *s, struct pending *p, uint32_t dtype, int ndim, const int64_t *shape,
                     zmq_msg_t *frame) {
    Mlxd__Tensor t = MLXD__TENSOR__INIT;
    Mlxd__OpReply o = MLXD__OP_REPLY__INIT;
    Mlxd__Reply r = MLXD__REPLY__INIT;
    t.dtype = dtype;
    t.n_shape = (size_t) ndim;
    t.shape = (int64_t *) shape;
    if (frame) {
        t.frame = 1;
    } else {
        t.segment = p->out_segment;
        t.offset = p->out_offset;
    }
    o.output = &t;
    r.body_case = MLXD__REPLY__BODY_OP;
    r.op = &o;
    pending_finish(s, p, &r, frame, frame ? 1 : 0);
}

void op_reply_result(struct server *s, struct pending *p, uint32_t dtype, int ndim, const int64_t *shape,
                     const uint8_t *bytes, size_t n, zmq_msg_t *shared) {
    zmq_msg_t f;
    if (p->out_ptr) {
        if (p->out_nbytes != n) {
            pending_fail(s, p, MLXD_EINVAL, "the output in shared memory holds %llu bytes; the result of %s has %zu",
                         (unsigned long long) p->out_nbytes, wire_op_name(p->d.op), n);
            return;
        }
        pool_move(s->pool, p->out_ptr, bytes, n);
        op_reply_tensor(s, p, dtype, ndim, shape, NULL);
        return;
    }
    if (shared) {
        zmq_msg_init(&f);
        zmq_msg_copy(&f, shared);
    } else if (zmq_msg_init_size(&f, n) == 0) {
        pool_move(s->pool, zmq_msg_data(&f), bytes, n);
    } else {
        pending_fail(s, p, MLXD_ENOMEM, "out of memory answering %s", wire_op_name(p->d.op));
        return;
    }
    op_reply_tensor(s, p, dtype, ndim, shape, &f);
}

void op_reply_empty(struct server *s, struct pending *p) {
    Mlxd__OpReply o = MLXD__OP_REPLY__INIT;
    Mlxd__Reply r = MLXD__REPLY__INIT;
    r.body_case = MLXD__REPLY__BODY_OP;
    r.op = &o;
    pending_finish(s, p, &r, NULL, 0);
}

