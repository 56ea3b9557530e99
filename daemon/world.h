/* The MPI world of the daemons. All MPI calls happen on one engine thread,
 * fed through an inproc ZeroMQ socket, so that the loop thread never blocks
 * on another host. The engine carries the control plane (proto/control.proto)
 * and, on world rank 0, runs the coordinator (coord.c); it runs the MPI
 * collectives of spanning groups strictly in the order their Go messages
 * arrive. The loop talks to it with world_send_*(), and learns what happened
 * from the events world_dispatch() hands to the handler it registered at
 * start-up. */
#ifndef MLXD_WORLD_H
#define MLXD_WORLD_H

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "control.pb-c.h"
#include "desc.h"

struct world;
struct world_event;

// What the engine is started with.
struct world_config {
    void *zctx;                     // the daemon's ZeroMQ context
    uint32_t op_timeout_ms;         // the default op deadline...
    uint32_t mpi_stall_ms;          // ...and an engine step longer than this is a wedged world; 0: 4 op deadlines
    uint32_t heartbeat_timeout_ms;  // a host silent this long is lost; 0: WORLD_SILENCE_MS
    // Called by world_dispatch(), on the loop's thread, for each event the
    // engine reports; takes e (world_event_free).
    void (*on_event)(void *ctx, struct world_event *e);
    void *ctx;
};

// Starts the engine thread, which initialises MPI (a daemon started without
// mpirun is a world of one), and waits until it has. Logs its failures.
int world_start(const struct world_config *cfg, struct world **ret);

// Finalises MPI, joins the engine thread and reaps the helper processes MPI
// forked. NULL is fine.
void world_stop(struct world *w);

int world_rank(const struct world *w);
int world_size(const struct world *w);
// Host name of world rank r.
const char *world_host(const struct world *w, int r);
// The MPI library's version string, first line.
const char *world_mpi_version(const struct world *w);

// Replaces "%r" in an endpoint with this daemon's world rank, in place.
int world_expand_endpoint(const struct world *w, char *endpoint, size_t size);

// Sends a control message to world rank dest (this daemon included: the
// coordinator is world rank 0). m is packed at once; the caller keeps it.
int world_send_ctl(struct world *w, int dest, const Mlxd__Ctl__Ctl *m);

// This host's part of the seq-th collective of a spanning group, handed over
// before the last local member's Arrive so that the engine has it when the Go
// comes. For sum_scatter, data is the local members' reduction; barrier and
// split carry none (data NULL); reductions and all_gather go by reference
// (world_send_part). d is the op as the local members asked it. data is
// moved into the engine.
int world_send_local(struct world *w, uint64_t group, uint64_t seq, const struct op_desc *d, zmq_msg_t *data);

// This host's part of a reduction (all_sum, all_max, all_min) or all_gather
// of a spanning group, by reference: the engine runs MPI straight on the
// members' memory, block by block, reducing the local inputs of one block
// while the previous one crosses the network, so that it needs no buffer of
// the tensor's size. Whoever builds it keeps that memory mapped (references
// on shared memory and frames) until release, which is called on the loop's
// thread once the engine is done with the memory: from world_event_free() of
// the Go's event (which carries the part, its result in dst), or from
// world_dispatch() when the op will never run.
struct world_part {
    const uint8_t *const *srcs;     // the local members' inputs, in rank order...
    size_t nsrcs;
    size_t nbytes;                  // ...of nbytes each
    // The result: reductions reduce the inputs into it (it may be srcs[0],
    // in place; else it overlaps none); all_gather gathers every member's
    // input into it, in rank order (nbytes times the group's size).
    uint8_t *dst;
    uint8_t *const *copies;         // further outputs, filled with the result as its blocks complete
    size_t ncopies;
    void (*release)(struct world_part *part);
};

// This host's part of the seq-th collective of a spanning group that is a
// reduction or all_gather, handed over like world_send_local's. part NULL:
// this host cannot take part (out of memory, or members that disagree); the
// engine still makes the MPI calls the other hosts make. The engine takes
// part (release is called however it ends).
int world_send_part(struct world *w, uint64_t group, uint64_t seq, const struct op_desc *d, struct world_part *part);

// A send to a rank on another host: the message and its bytes go to world
// rank dest. data is moved into the engine.
int world_send_p2p(struct world *w, int dest, uint64_t group, int src, int dst, const struct op_desc *d,
                   zmq_msg_t *data);

// What the engine reports to the loop.
enum world_event_type {
    WORLD_EVENT_CTL,                // a control message for the loop: HelloFail, Form, Abort, GroupFree, StatusReq, StatusRep
    WORLD_EVENT_GO,                 // a Go, run: ctl is the Go; data the result (sum_scatter), or part's dst
    WORLD_EVENT_P2P,                // a send from another host: ctl is the P2P; data its bytes
};

struct world_event {
    enum world_event_type type;
    int from;                       // world rank the message came from
    Mlxd__Ctl__Ctl *ctl;            // decoded; freed by world_event_free
    zmq_msg_t data;
    bool has_data;
    struct world_part *part;        // WORLD_EVENT_GO of a part sent by reference; released by world_event_free
    bool release_only;              // carries a part that never ran; world_dispatch() releases it
    int code;                       // WORLD_EVENT_GO: an MPI failure here overrides the Go's code
    char message[256];
};

// Frees e, releasing its part. On the loop's thread.
void world_event_free(struct world_event *e);

// The loop polls this socket; when it is readable, world_dispatch() reads
// every event and hands each to the on_event handler of world_config.
void *world_socket(struct world *w);
void world_dispatch(struct world *w);

/* The watch: a thread of its own (not the engine, which can sit in a long
 * MPI call) keeps a connection to every other daemon of the world, with
 * ZeroMQ heartbeats, and watches the engine. A connection that closes (the
 * host's processes died) or stays silent for the heartbeat timeout
 * (--heartbeat-timeout, default WORLD_SILENCE_MS) is a lost host;
 * an engine stuck in one step for the stall limit is a wedged world. The
 * connections are CURVE-encrypted to keys that only the world's members
 * learn (exchanged over MPI at start-up), bound to the address MPI's TCP
 * transport uses (OMPI_MCA_btl_tcp_if_include), or loopback when the world
 * is on one machine. */
#define WORLD_SILENCE_MS 2000

enum world_watch_type {
    WORLD_HOST_LOST,                // rank's daemon is gone or unreachable
    WORLD_HOST_BACK,                // ... and answers again
    WORLD_WEDGED,                   // the engine is stuck: stuck_ms in one step
};

struct world_watch_event {
    enum world_watch_type type;
    int rank;
    uint64_t stuck_ms;
    char why[128];
};

// The loop polls this socket too; world_watch_read() takes its events, one at
// a time, false when there are none left.
void *world_watch_socket(struct world *w);
bool world_watch_read(struct world *w, struct world_watch_event *ev);

#endif
