/* Private header of libmlxd: the group object and the prototypes shared by
 * the library's files. libmlxd.c owns init, groups, split and memory;
 * libmlxd_conn.c owns the connection to the daemon (sockets, framing,
 * waiting) and the error strings; libmlxd_ops.c owns the collectives; shm.c
 * owns shared memory (the side channel to the daemon, the segment table,
 * staging); platform.c the Linux-only calls. Nothing here is exported.
 * mlxctl's status.c links libmlxd_conn.c and libmlxd_intr.c too: one
 * connection code for the library and the tool. */
#ifndef MLXD_LIBMLXD_IMPL_H
#define MLXD_LIBMLXD_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "mlxd/mlxd.h"
#include "wire.h"

// Size of every error buffer (a group's last_error, the init error).
#define LIB_ERR_MAX 1024

// Longest endpoint we keep, with its NUL.
#define LIB_ENDPOINT_MAX 256

// How much longer than a request's deadline the client waits for the reply:
// the daemon's own deadline fires first and names the missing ranks; only a
// daemon that is gone or stuck lets this one pass.
#define LIB_GRACE_MS 5000

// Moving a tensor through the socket takes time that the daemon's deadline
// does not count: the client adds this much per byte sent and expected back
// (a rate far below what even a loaded machine manages).
#define LIB_MIN_BYTES_PER_S (32u << 20)

// How long mlxd_group_free() waits for the daemon to confirm a Goodbye.
#define LIB_GOODBYE_MS 1000

// How long mlxd_is_available() waits for a Ping's answer. (mlxd_init()
// gives its Ping LIB_GRACE_MS: falling back to a singleton because a busy
// daemon was slow would be far worse than waiting.)
#define LIB_PING_MS 1000

// Tensors in ordinary memory larger than this many bytes go through the
// group's staging segment (one copy in, one copy out) instead of through the
// socket; $MLXD_SHM_THRESHOLD overrides it, 0 turns staging off.
#define LIB_SHM_THRESHOLD_DEFAULT (1u << 20)

// How long a registration waits for the daemon's answer on the side channel.
#define LIB_SHM_REPLY_MS 5000

// After the side channel could not be reached, how long before it is tried
// again (a daemon may come back; an old one never will).
#define LIB_SHM_RETRY_MS 1000

// How long a wait spins on the ring before it sleeps, where there are
// cores to spare ($MLXD_RING_SPIN_US overrides it).
#define LIB_RING_SPIN_US 50

// Tensors of at most this many bytes travel inline in the ring; larger ones
// (not in shared memory) go through ZeroMQ.
#define LIB_RING_INLINE_MAX (64u * 1024u)

struct conn;
struct shm_seg;
struct lib_ring;

// A group's staging memory: one segment, replaced by a larger one when an op
// needs more, freed with the group. Used only by the group's thread.
struct staging {
    struct shm_seg *seg;                // NULL until an op first needs it
    size_t refused;                     // a size the daemon refused, not asked again...
    uint64_t retry_us;                  // ...before this (wire_now_us() clock)
};

// One member of a group: a local singleton (conn == NULL) or a session on a
// daemon. mlxd_init() for a job this process already joined gives another
// handle on the same member (libmlxd.c keeps the registry), so a member is
// refcounted: the last handle freed leaves the group. Its ops run under
// lock, one at a time, whichever handle they come through.
struct member {
    pthread_mutex_t lock;
    unsigned refs;                      // handles on it
    int rank, size;
    int timeout_ms;                     // the daemon's default deadline (0: unknown)
    uint64_t id;                        // the daemon's group id; 0 for a local singleton
    struct conn *conn;                  // owned; NULL for a local singleton
    char endpoint[LIB_ENDPOINT_MAX];    // kept so that split can connect again
    char job[132];                      // the job it joined: the registry's key with
                                        // endpoint, rank and size; "" for a split's
    size_t shm_threshold;               // staging above this many bytes; 0: never
    struct staging staging;
    bool staging_busy;                  // a request in flight uses it
    struct mlxd_request *outstanding;   // nonblocking requests not yet completed, in issue order
    struct member *next;                // in the registry, when job is set
};

// A handle on a member: what mlxd_init() and mlxd_group_split() return.
struct mlxd_group {
    struct member *m;                   // shared with the member's other handles
    int rank, size;                     // m's, copied for the accessors
    int timeout_ms;                     // as given to mlxd_init; 0: the daemon's default
    char last_error[LIB_ERR_MAX];
};

// A reply as it came off the socket: the decoded protobuf and at most one
// raw frame (the result tensor).
struct reply {
    Mlxd__Reply *pb;                    // owned, never NULL once received
    zmq_msg_t data;                     // valid when has_data
    bool has_data;
};

/* libmlxd_ops.c */

// Completes every outstanding request issued through handle g (waiting for
// each), so that g can be freed; they stay the caller's until mlxd_wait().
// Under g's member's lock.
void lib_requests_complete(mlxd_group *g);

/* libmlxd_conn.c */

// Formats a message into an error buffer of LIB_ERR_MAX bytes; returns code,
// so that failures read `return lib_errorf(err, MLXD_EINVAL, "...")`.
int lib_errorf(char *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

// The client-side deadline (wire_now_us() clock) for a request whose daemon
// deadline is timeout_ms (0: the daemon's default) and which moves nbytes
// through the socket both ways together.
uint64_t lib_deadline_us(int timeout_ms, uint64_t nbytes);

// Opens a DEALER socket (with a monitor that reports the daemon closing the
// connection) to endpoint. Returns 0 and the connection in *ret_conn, or a
// negative MLXD_E* code with the reason in err.
int conn_open(const char *endpoint, struct conn **ret_conn, char *err);

// Closes the connection and frees it. NULL is fine.
void conn_free(struct conn *c);

// What made a call on a connection fail, beyond its MLXD_E* code and message:
// for a caller that explains failures in its own words (mlxctl).
enum conn_fault {
    CONN_FAULT_NONE,                    // no failure of the connection itself
    CONN_FAULT_SILENT,                  // no reply before the deadline
    CONN_FAULT_CLOSED,                  // the daemon closed the connection
    CONN_FAULT_TOO_LARGE,               // a reply frame over WIRE_MAX_REPLY_FRAME
    CONN_FAULT_GARBLED,                 // a reply that does not decode, or with too many frames
    CONN_FAULT_INTERRUPTED,             // the thread's interrupt check said stop
    CONN_FAULT_IO,                      // the socket failed: the errno in *ret_errno
};

// Why the last call on c that failed for the connection's sake failed.
enum conn_fault conn_fault(const struct conn *c, int *ret_errno);

// True once the connection is unusable (the daemon went silent or closed it):
// every later request fails at once.
bool conn_is_broken(const struct conn *c);

// Sends req with the next request id of c and, when tensor is true, one raw
// frame of nbytes at data (not copied: ZeroMQ reads it while the request is
// in flight, so it must stay valid until conn_wait() returns). Returns the
// request id in *ret_id, or a negative MLXD_E* code with the reason in err.
int conn_send(struct conn *c, Mlxd__Request *req, bool tensor, const void *data, size_t nbytes,
              uint64_t *ret_id, char *err);

// Waits until deadline_us (wire_now_us() clock) for the reply to request id
// (keeping the replies of the other requests in flight for their own wait),
// and until ZeroMQ has let go of the request's tensor. Returns 0 and the
// reply in *ret (its code may still be an error; free it with
// reply_done()), or a negative MLXD_E* code with the reason in err; silence
// or a closed connection breaks c. Either way id is no longer in flight.
int conn_wait(struct conn *c, uint64_t id, uint64_t deadline_us, struct reply *ret, char *err);

// Whether conn_wait() for id would return at once (its reply came, or the
// connection is lost). Never blocks.
bool conn_ready(struct conn *c, uint64_t id);

// What a request carries besides its protobuf, and what its reply should.
struct call {
    int timeout_ms;                     // the request's deadline; 0: the daemon's default
    bool tensor;                        // one raw frame follows the protobuf...
    const void *data;                   // ...with these bytes, borrowed until the reply
    size_t nbytes;
    size_t reply_nbytes;                // bytes the reply is expected to carry
    size_t shm_nbytes;                  // bytes the daemon reads and writes in shared
                                        // memory: they lengthen the wait like the others
};

// conn_send() with the request's deadline and the tensor of call; the
// client-side deadline to wait until (lib_deadline_us()) in
// *ret_deadline_us.
int conn_issue(struct conn *c, Mlxd__Request *req, const struct call *call, uint64_t *ret_id,
               uint64_t *ret_deadline_us, char *err);

// conn_wait(); then, for a reply whose code is an error, returns that code
// with the daemon's message in err (the reply is freed).
int conn_finish(struct conn *c, uint64_t id, uint64_t deadline_us, struct reply *ret, char *err);

// conn_issue() then conn_finish().
int conn_call(struct conn *c, Mlxd__Request *req, const struct call *call, struct reply *ret,
              char *err);

// Sends req (no tensor) with a deadline of ms and waits as long, no
// longer, for its reply: for the short requests whose silence means "no
// daemon" (Ping) or does not matter (Goodbye). As conn_wait() returns.
int conn_brief(struct conn *c, Mlxd__Request *req, int ms, struct reply *ret, char *err);

// Says Goodbye on c and waits at most ms for its answer, whatever it is.
void conn_goodbye(struct conn *c, int ms);

// Frees what a reply holds.
void reply_done(struct reply *r);

// Makes the connection unusable: closes the socket (dropping whatever is
// still queued) and waits for ZeroMQ to let go of the caller's tensor.
void conn_break(struct conn *c);

// Sets up a request/reply ring for c, a connection to group as rank (after
// its Hello): from then on its ops go through the ring where they can.
// Without one (tcp://, $MLXD_RING=0, an older daemon) c goes on with ZeroMQ.
void conn_ring_start(struct conn *c, uint64_t group, int rank);

/* libmlxd_ring.c: a connection's ring, record by record */

// Makes the ring's memory and doorbell and hands them to the daemon at
// endpoint: 0, or an MLXD_E* code with the reason in err.
int lib_ring_open(const char *endpoint, uint64_t group, int rank, struct lib_ring **ret, char *err);
void lib_ring_free(struct lib_ring *r);
// Whether requests may still go in (the daemon has not closed the ring).
bool lib_ring_usable(const struct lib_ring *r);
// Whether the daemon closed the connection's session with the ring.
bool lib_ring_session_closed(const struct lib_ring *r);
// The doorbell to poll while waiting, or -1 once unusable.
int lib_ring_fd(const struct lib_ring *r);
// Writes one request and rings the daemon if it sleeps: 0, -EAGAIN when
// full, -EMSGSIZE when it never fits, -EPROTO when the ring is broken.
int lib_ring_send(struct lib_ring *r, const void *pb, size_t pb_len, const void *data, size_t data_len);
// Whether the daemon has taken every request written.
bool lib_ring_drained(const struct lib_ring *r);
// Takes one reply: 1 and *ret, 0 when none is there, or an MLXD_E* code
// (the ring is then unusable).
int lib_ring_take(struct lib_ring *r, struct reply *ret, char *err);
// Whether a reply waits in the ring.
bool lib_ring_replied(const struct lib_ring *r);
// About to sleep: asks the daemon to ring; false when a reply is there
// already (then do not sleep).
bool lib_ring_sleep(struct lib_ring *r);
// Woke up: the daemon need not ring; drains the doorbell. Keeps errno.
void lib_ring_wake(struct lib_ring *r);
// Spins until a reply is there (true) or until_us.
bool lib_ring_spin(const struct lib_ring *r, uint64_t until_us);
// How long waits spin (LIB_RING_SPIN_US where cores allow, or the env).
unsigned lib_ring_spin_us(void);

/* libmlxd_intr.c */

// How long conn_wait() may poll before it checks for an interrupt: ms, or
// less while this thread has an interrupt check.
long lib_wait_slice(long ms);

// True when this thread's interrupt check (if any) says stop.
bool lib_interrupted(void);

// The wait on c was interrupted: says Goodbye (briefly waiting for its
// answer), breaks c, and returns MLXD_EINTR with the reason in err.
int conn_interrupted(struct conn *c, char *err);

/* shm.c */

// Where a tensor in shared memory is: what Tensor.segment and Tensor.offset say.
struct shm_ref {
    uint32_t segment;
    uint64_t offset;
};

// Creates a memfd of at least nbytes (whole pages), seals it against
// shrinking and growing, maps it, and registers it with the daemon at
// endpoint over the side channel (connected on first use, shared by every
// group of the process). staging: the segment is a group's staging memory,
// which mlxd_free() never frees. Returns 0 with the segment in *ret_seg, or
// MLXD_EUNAVAILABLE when the side channel cannot be reached (no daemon with
// shared memory there: the caller may fall back to ordinary memory), or
// another MLXD_E* code (the daemon refused, out of memory); err says why.
// Thread-safe.
int shm_seg_new(const char *endpoint, size_t nbytes, bool staging, struct shm_seg **ret_seg, char *err);

// Makes a connection's ring: size bytes of sealed memory, which init fills
// in (the header), and a doorbell socketpair; hands the memory and one end
// of the doorbell to the daemon at endpoint (WIRE_SHM_RING) for group and
// rank. Returns 0 with the mapping and our end of the doorbell, or an
// MLXD_E* code (MLXD_EUNAVAILABLE without a side channel; the daemon's code
// when it refuses, MLXD_EPROTO from one that has no rings). Thread-safe.
int shm_ring_new(const char *endpoint, size_t size, uint64_t group, int rank, void (*init)(void *base, size_t size),
                 void **ret_base, int *ret_bell, char *err);

// Releases a segment with the daemon, unmaps and frees it. NULL is fine.
// Thread-safe.
void shm_seg_free(struct shm_seg *s);

// The segment's first byte and its size (a whole number of pages).
void *shm_seg_base(const struct shm_seg *s);
size_t shm_seg_size(const struct shm_seg *s);

// The reference to offset in s; false once the daemon no longer has s (its
// side channel was lost). Thread-safe.
bool shm_seg_ref(const struct shm_seg *s, size_t offset, struct shm_ref *ret);

// Finds the segment from shm_seg_new(staging = false) whose first byte is p,
// and frees it as shm_seg_free() does. False when there is none. Thread-safe.
bool shm_free_base(void *p);

// Whether the nbytes at p (nbytes > 0) lie inside one segment the daemon at
// endpoint holds; if so their reference goes to *ret. Thread-safe.
bool shm_lookup(const char *endpoint, const void *p, size_t nbytes, struct shm_ref *ret);

// Notices that the daemon at endpoint closed the side channel (it exited
// and maybe restarted), so that segments it dropped are never named to its
// successor, whose ids start afresh. Cheap; called when a group is made.
void shm_refresh(const char *endpoint);

// The staging threshold: $MLXD_SHM_THRESHOLD (bytes, decimal) when set and
// valid, else LIB_SHM_THRESHOLD_DEFAULT.
size_t shm_threshold(void);

// Makes st hold at least nbytes and returns its first byte, or NULL when
// staging is not possible now (no side channel, the daemon's cap): the op
// then sends its tensors inline. Not thread-safe (one group, one thread).
void *shm_staging_reserve(struct staging *st, const char *endpoint, size_t nbytes);

// Frees a group's staging memory. Leaves st empty.
void shm_staging_free(struct staging *st);

#endif
