/* Answering an op's request (result.c). */
#ifndef MLXD_RESULT_H
#define MLXD_RESULT_H

#include <stddef.h>
#include <stdint.h>

#include "server.h"

// Answers p with a tensor whose bytes are in frame (moved), or, when p's
// result goes to shared memory, already there (frame NULL).
void op_reply_tensor(struct server *s, struct pending *p, uint32_t dtype, int ndim, const int64_t *shape,
                     zmq_msg_t *frame);
// Answers p with a result of n bytes at bytes: copied into its shared-memory
// output (unless it is already there), or sent as a frame sharing `shared`
// (a copy of bytes when shared is NULL). A shared-memory output of the
// wrong size is MLXD_EINVAL.
void op_reply_result(struct server *s, struct pending *p, uint32_t dtype, int ndim, const int64_t *shape,
                     const uint8_t *bytes, size_t n, zmq_msg_t *shared);
void op_reply_empty(struct server *s, struct pending *p);

#endif
