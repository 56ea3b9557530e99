/* The coordinator of the daemons' world (world rank 0): forms jobs whose
 * ranks may sit on any daemon and sequences the collectives of groups that
 * span daemons. A pure state machine: control messages in, control messages
 * out; no MPI, no I/O, no clock of its own. proto/control.proto explains the
 * protocol. World rank 0's MPI engine (world.c) runs it on its thread; the
 * private parts are in coord_impl.h. */
#ifndef MLXD_COORD_H
#define MLXD_COORD_H

#include <stddef.h>
#include <stdint.h>

#include "control.pb-c.h"

// Group ids the coordinator assigns have this bit set.
#define COORD_GROUP_BIT (UINT64_C(1) << 63)

// Bounds on what hosts can make the coordinator keep.
#define COORD_MAX_FORMING 4096
#define COORD_MAX_GROUPS 65536

// A message to send: a packed Mlxd__Ctl__Ctl for world rank dest.
struct ctl_out {
    int dest;
    uint8_t *buf;
    size_t len;
};

// Messages to send, in the order they must go out.
struct ctl_outbox {
    struct ctl_out *v;
    size_t n, cap;
};

// Packs m and appends it for dest; -ENOMEM on failure.
int ctl_outbox_add(struct ctl_outbox *o, int dest, const Mlxd__Ctl__Ctl *m);
// Frees every buffer and empties the box (keeps its array).
void ctl_outbox_clear(struct ctl_outbox *o);
void ctl_outbox_fini(struct ctl_outbox *o);

struct coord;

// A coordinator for a world of world_size daemons. NULL when out of memory.
struct coord *coord_new(int world_size);
// Frees it; NULL is fine; returns NULL.
struct coord *coord_free(struct coord *c);

// Handles one control message from world rank `from` (already decoded;
// anything may be in it: every field is checked before use) at time now_us,
// appending to out the messages to send. Messages the coordinator does not
// take (Form, Go, P2P, …) and messages that make no sense (unknown group,
// rank out of range, an Arrive from a host that does not hold that rank) are
// ignored, with a reason in *ret_ignored for the log when ret_ignored is
// not NULL. Returns 0, or -ENOMEM.
int coord_handle(struct coord *c, int from, const Mlxd__Ctl__Ctl *m, uint64_t now_us, struct ctl_outbox *out,
                 const char **ret_ignored);

// The jobs forming and the groups known: what the coordinator keeps, for the
// unit tests and the fuzzers' oracle to check against their own count.
void coord_counts(const struct coord *c, int *ret_forming, int *ret_groups);

#endif
