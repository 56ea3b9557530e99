/* The engine's own header: what the parts of the MPI engine share, and no
 * module outside them includes. The engine is one thread that owns MPI;
 * world.c is its plumbing (the thread, the inproc pair to the loop, the
 * public calls of world.h), world_mpi.c the MPI transport (start-up, control
 * messages, point-to-point bytes, spanning groups' communicators),
 * world_coll.c the executor of spanning groups' collectives, and
 * world_watch.c the watch thread (lost hosts, a wedged engine). */
#ifndef MLXD_WORLD_INT_H
#define MLXD_WORLD_INT_H

#include <mpi.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "coord.h"
#include "reduce.h"
#include "world.h"

#define HOST_MAX 256
#define TAG_CTL 1
#define TAG_DATA 2
// Largest piece of a tensor one MPI call moves: counts stay far below INT_MAX.
#define CHUNK_BYTES (UINT64_C(64) << 20)
// Blocks of a reduction across hosts: large enough for MPI to run at the
// links' speed, small enough that its own buffers stay small and the
// pipeline (the local reduction of the next block beside the transfer of
// this one) fills at once.
#define PIPE_BLOCK ((size_t) 4 << 20)
// Reductions up to this many bytes travel with the hosts' word on whether
// they can take part, in one exchange; each host's record has a header.
#define SMALL_BYTES 4096
#define SMALL_HEADER 16
// The engine's poll interval when idle grows to this, so an idle world sleeps.
#define IDLE_POLL_MAX_MS 50

enum wmsg_type {
    WMSG_CTL,                       // send buf (a packed Ctl) to dest
    WMSG_LOCAL,                     // this host's part of a collective, in data
    WMSG_PART,                      // this host's part of a collective, by reference
    WMSG_P2P,                       // send buf (a packed P2P) then data to dest
    WMSG_STOP,
};

// What the loop hands the engine, by pointer over the inproc pair.
struct wmsg {
    enum wmsg_type type;
    int dest;
    uint8_t *buf;
    size_t len;
    uint64_t group, seq;
    struct op_desc d;
    zmq_msg_t data;
    bool has_data;
    struct world_part *part;        // WMSG_PART: by reference (NULL: this host cannot take part)
    struct wmsg *next;              // in the engine's lists
    MPI_Request *reqs;              // P2P: header and data chunks in flight
    int nreqs;
};

// A spanning group this host belongs to.
struct egroup {
    struct egroup *next;
    uint64_t id;
    int size;
    int *hosts;                     // world rank of each group rank
    MPI_Comm comm;                  // ranks = the distinct hosts, ascending
    int ncomm;
    int *comm_hosts;                // world rank of each comm rank
    uint8_t *small;                 // (ncomm + 1) records for small reductions (world_coll.c)
    void **small_parts;             // [ncomm]
};

// A control message waiting its turn in the engine's ordered queue.
struct fifo_item {
    struct fifo_item *next;
    int from;
    Mlxd__Ctl__Ctl *ctl;
};

// A packed control message from this daemon to itself.
struct self_item {
    struct self_item *next;
    uint8_t *buf;
    size_t len;
};

// A send from another host whose bytes are still arriving.
struct p2p_in {
    struct p2p_in *next;
    int from;
    Mlxd__Ctl__Ctl *ctl;
    zmq_msg_t data;
    MPI_Request *reqs;
    int nreqs;
};

struct world {
    void *zctx;
    void *loop_end, *engine_end;    // the inproc pair
    pthread_t thread;
    bool thread_started;
    int init_error;
    int rank, size;
    char (*hosts)[HOST_MAX];
    char mpi_version[MPI_MAX_LIBRARY_VERSION_STRING];
    // Engine-only state below.
    MPI_Comm control;               // control messages and p2p bytes
    MPI_Comm data;                  // parent of every spanning group's comm
    struct coord *coord;            // world rank 0 only
    struct pipe *pipe;              // the helper of pipelined reductions (worlds of several)
    struct ctl_outbox out;
    struct egroup *groups;
    struct wmsg *locals;            // parts waiting for their Go
    struct wmsg *sending;           // p2p in flight out
    struct p2p_in *receiving, **receiving_tail;  // in header order
    struct fifo_item *fifo, **fifo_tail;
    struct self_item *self, **self_tail;
    struct {
        MPI_Request req;
        uint8_t *buf;
    } *isends;
    size_t n_isends, cap_isends;
    uint64_t go_wait_since;         // when the head Go started waiting for its part
    uint32_t silence_ms;            // --heartbeat-timeout
    void (*on_event)(void *ctx, struct world_event *e);
    void *on_event_ctx;
    // The watch (world.h). Its thread owns the sockets but watch_loop, the
    // loop's end of the pair it reports through (and is stopped through).
    void *watch_loop, *watch_end;
    pthread_t watch_thread;
    bool watch_started;
    void *watch_router;             // the other daemons connect here
    void **watch_dealers;           // [size]: to each other daemon; NULL for this one
    void **watch_monitors;          // [size]: their connection events
    uint64_t stall_us;              // an engine step longer than this: wedged
    _Atomic uint64_t busy_since_us; // the engine's current step began; 0 while it waits
};

/* world.c */
// Hands an event to the loop; takes ctl and data (either may be NULL).
void engine_emit(struct world *w, enum world_event_type type, int from, Mlxd__Ctl__Ctl *ctl, zmq_msg_t *data,
                 int code, const char *message);
// A Go's event that hands part back with the result in it.
void engine_emit_go(struct world *w, int from, Mlxd__Ctl__Ctl *ctl, struct world_part *part, int code,
                    const char *message);
// Hands back a part that will never run, for the loop to release. NULL is fine.
void engine_release_part(struct world *w, struct world_part *part);
// Frees m; its part must have been handed back or released already.
void wmsg_free(struct wmsg *m);
// Starts a thread with every signal blocked (they are the loop's).
int engine_start_thread(pthread_t *t, void *(*fn)(void *), void *arg);

/* world_mpi.c */
int engine_init_mpi(struct world *w);
void engine_fini_mpi(struct world *w);
// MPI's own type and op where they compute exactly what ours would, else ours.
void engine_mpi_type_op(mlxd_dtype t, reduce_op op, MPI_Datatype *ret_type, MPI_Op *ret_op);
// The text of an MPI error code, into buf.
void engine_mpi_error(int err, char *buf, size_t size);
// Sends a packed control message (taking buf) to dest, or queues it for this
// daemon itself.
void engine_send_packed(struct world *w, int dest, uint8_t *buf, size_t len);
void engine_progress_isends(struct world *w);
struct egroup *egroup_find(struct world *w, uint64_t id);
void egroup_add(struct world *w, uint64_t id, size_t n, const int32_t *hosts);
void egroup_free(struct world *w, uint64_t id);
// Receives and handles what other daemons sent; whether there was any.
bool engine_poll_mpi(struct world *w);
// Starts sending a p2p message (takes m); moves p2p bytes in flight along.
void engine_start_p2p(struct world *w, struct wmsg *m);
void engine_progress_p2p(struct world *w);
// Handles the control messages this daemon sent itself.
void engine_run_self(struct world *w);

/* world_coll.c */
// Runs the ordered queue of control messages as far as it can: a Go waits
// for this host's part.
void engine_run_fifo(struct world *w);

/* world_pipe.c */
// The helper thread of pipelined reductions (one per engine).
struct pipe;
int pipe_new(struct pipe **ret);
struct pipe *pipe_free(struct pipe *p);
// Starts a job on part in blocks of block bytes: the helper reduces the
// inputs into dst (when reduce) ahead of MPI, and copies each block that
// pipe_sent() reports on to the copies.
void pipe_start(struct pipe *p, const struct world_part *part, reduce_op op, mlxd_dtype t, size_t block,
                bool reduce);
// Waits until block k is reduced.
void pipe_wait_reduced(struct pipe *p, size_t k);
// Block k (and every one before it) has its result from MPI.
void pipe_sent(struct pipe *p, size_t k);
// Waits until the helper is done with the job (cancel: at once, the rest
// left undone); the part is the caller's again.
void pipe_finish(struct pipe *p, bool cancel);

// dst = the reduction of part's inputs at byte offset off, count elements.
void part_reduce(const struct world_part *part, reduce_op op, mlxd_dtype t, size_t off, size_t count, uint8_t *dst);

/* world_watch.c */
// Sets up the watch's sockets (collective over MPI_COMM_WORLD, at start-up).
int watch_setup(struct world *w);
// The watch thread; arg is the world.
void *watch_main(void *arg);
// Closes the watch's sockets (the watch thread at its end, or world_stop).
void watch_close(struct world *w);

#endif
