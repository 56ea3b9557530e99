/* Validation of a decoded request against its raw frames and the daemon's
 * limits, before anything else looks at it. Pure functions: no server state,
 * so that unit tests and fuzzers drive them directly. */
#ifndef MLXD_REQUEST_H
#define MLXD_REQUEST_H

#include <stddef.h>
#include <zmq.h>

#include "server.h"

// 0 when req is well formed: known body, supported version, a valid job id,
// rank and size, a known op with the tensors it needs, dtypes and shapes in
// range, tensor sizes within cfg's limits, and every raw frame referenced
// exactly once with the length its tensor implies. Otherwise a negative
// MLXD_E* code and a message for the client in err.
int request_validate(const Mlxd__Request *req, const zmq_msg_t *frames, int nframes, const struct config *cfg,
                     char *err, size_t errlen);

// The same checks on frame lengths alone (for fuzzing without ZeroMQ).
int request_validate_lengths(const Mlxd__Request *req, const size_t *frame_lens, int nframes,
                             const struct config *cfg, char *err, size_t errlen);

// Copies a validated OpRequest's op, tensor description, peer and split
// arguments into p (not the data frame).
void request_fill_pending(const Mlxd__OpRequest *op, struct pending *p);


#endif
