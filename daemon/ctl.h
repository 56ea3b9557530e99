/* The control messages this host sends (proto/control.proto), one function
 * per message: each builds its message and hands it to the engine for world
 * rank dest (the coordinator is world rank 0, this host included). A failure
 * to hand it over is logged here, naming the message and why, and returned
 * (a negative errno). */
#ifndef MLXD_CTL_H
#define MLXD_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "desc.h"

struct world;

// Coordinator: rank of job (of uid, size ranks) said hello here from pid.
int ctl_join(struct world *w, const char *job, uint32_t uid, int size, int rank, int pid);
// Coordinator: rank of a forming job left (or gave up after waited_ms).
int ctl_leave(struct world *w, const char *job, int rank, bool timed_out, uint64_t waited_ms);
// Coordinator: member rank of group arrived at its seq-th collective, d.
int ctl_arrive(struct world *w, uint64_t group, uint64_t seq, int rank, const struct op_desc *d);
// Coordinator: member rank's seq-th collective of group passed its deadline.
int ctl_timeout(struct world *w, uint64_t group, uint64_t seq, int rank, uint64_t waited_ms);
// Coordinator: end group on every host with (code, message).
int ctl_abort_req(struct world *w, uint64_t group, int code, const char *message);
// Coordinator: this host has no member of group left.
int ctl_group_gone(struct world *w, uint64_t group);
// World rank dest: member rank of group left after issuing seq collectives.
int ctl_depart(struct world *w, int dest, uint64_t group, int rank, uint64_t seq, const char *message);
// World rank dest: send us your status, for request id.
int ctl_status_req(struct world *w, int dest, uint64_t id);
// World rank dest: our status (a packed mlxd.DaemonStatus) for its request id.
int ctl_status_rep(struct world *w, int dest, uint64_t id, const uint8_t *daemon, size_t len);

#endif
