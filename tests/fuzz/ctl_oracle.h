/* The fuzz targets' model of the coordinator (daemon/coord.c): it feeds
 * control messages to a real coordinator as the engine does (world.c,
 * handle_ctl), decodes every message the coordinator queues, and checks
 * them against what proto/control.proto promises, for the groups it has
 * seen formed and split: Go for the collective being gathered exactly when
 * its last member arrived, to every host of the group, with the agreement
 * decided as desc.h says; splits that partition the members by color and
 * order them by key; Abort with the first reason; GroupFree once every host
 * said GroupGone; nothing at all for a message it says it ignored. Any
 * violation aborts, so that libFuzzer keeps the input. */
#ifndef MLXD_FUZZ_CTL_ORACLE_H
#define MLXD_FUZZ_CTL_ORACLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "control.pb-c.h"
#include "coord.h"
#include "mlxd/mlxd.h"

// The largest world the model handles.
#define FUZZ_WORLD_MAX 8

// What a member said in an Arrive.
struct mdesc {
    uint32_t op, dtype;
    int ndim;
    int64_t shape[MLXD_MAX_NDIM];
    int color, key;
};

// A group the coordinator announced (Form, or a split's Go) and has not freed.
struct mgroup {
    uint64_t id;
    char *job;                          // the job it belongs to
    int size;
    int *host;                          // world rank of each member
    int hosts[FUZZ_WORLD_MAX];          // its distinct hosts, ascending
    int nhosts;
    bool gone[FUZZ_WORLD_MAX];          // per distinct host: said GroupGone
    uint64_t seq;                       // the collective being gathered
    bool *in;                           // per member: arrived at seq
    struct mdesc *d;                    // per member: what it said
    int narrived;
    int code;                           // aborted when nonzero
    uint64_t *left;                     // per member: collectives it issued before it
                                        // left (Depart); UINT64_MAX while it is there
    bool broken;                        // no collective completes any more (a member
                                        // left before issuing the one gathered)
};

struct oracle {
    struct coord *c;                    // owned
    int world_size;
    struct mgroup **g;                  // live groups
    size_t ng, gcap;
    uint64_t *seen;                     // every group id announced, live or not
    size_t nseen, seencap;
    struct ctl_outbox out;
    uint64_t steps;
    bool verbose;                       // $MLXD_FUZZ_VERBOSE: each step to stderr
};

// A coordinator for a world of world_size (at most FUZZ_WORLD_MAX) daemons,
// and its model.
struct oracle *oracle_new(int world_size);
void oracle_free(struct oracle *o);

// Hands m, from world rank `from`, to the coordinator at time now_us, checks
// what it queued against the model and empties the outbox.
void oracle_step(struct oracle *o, int from, const Mlxd__Ctl__Ctl *m, uint64_t now_us);

// The same for a packed message, decoded as the engine does (handle_packed);
// a message that does not decode is dropped.
void oracle_step_packed(struct oracle *o, int from, const uint8_t *buf, size_t len, uint64_t now_us);

// The live group with this id, or NULL.
struct mgroup *oracle_group(const struct oracle *o, uint64_t id);

#endif
