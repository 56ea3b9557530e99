/* libmlxd: the collective operations of MLX's distributed module, served by
 * the host's mlxd daemon.
 *
 * Every function that can fail returns 0 (MLXD_OK) on success and a negative
 * MLXD_E* code on failure; mlxd_strerror() names the code and
 * mlxd_last_error() gives the detailed message of the last failure on a
 * group. The library never prints and never exits the process.
 *
 * Thread-safety: a group is used by one thread at a time; different groups
 * may be used from different threads at once. */
#ifndef MLXD_MLXD_H
#define MLXD_MLXD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MLXD_VERSION_MAJOR 0
#define MLXD_VERSION_MINOR 1
#define MLXD_VERSION_PATCH 0
#define MLXD_VERSION_STRING "0.1.0"

#define MLXD_MAX_NDIM 8

// Marks the library's functions as exported from libmlxd.so, which is built
// with hidden visibility; on a declaration it also covers the definition, so
// the functions defined in proto/wire.c are exported as well.
#if defined(__GNUC__) && __GNUC__ >= 4
#define MLXD_API __attribute__((visibility("default")))
#else
#define MLXD_API
#endif

// The element types of MLX arrays. The values are part of the wire protocol.
typedef enum mlxd_dtype {
    MLXD_BOOL,
    MLXD_UINT8,
    MLXD_UINT16,
    MLXD_UINT32,
    MLXD_UINT64,
    MLXD_INT8,
    MLXD_INT16,
    MLXD_INT32,
    MLXD_INT64,
    MLXD_FLOAT16,
    MLXD_BFLOAT16,
    MLXD_FLOAT32,
    MLXD_FLOAT64,
    MLXD_COMPLEX64,
    MLXD_DTYPE_MAX,
} mlxd_dtype;

// A dense, row-major array in memory the caller owns. The library never keeps
// a pointer to it past the call it was passed to (a nonblocking op keeps
// using ->data until mlxd_wait(), but never the descriptor itself).
typedef struct mlxd_array {
    mlxd_dtype dtype;
    int ndim;                   // 0 (a scalar) .. MLXD_MAX_NDIM
    int64_t shape[MLXD_MAX_NDIM];
    void *data;
} mlxd_array;

// A set of processes that run collectives together: a job's world, or a group
// made from one by mlxd_group_split(). Owned by the caller, freed with
// mlxd_group_free().
typedef struct mlxd_group mlxd_group;

// Options of mlxd_init(). Start from MLXD_INIT_OPTS_DEFAULT.
typedef struct mlxd_init_opts {
    const char *endpoint;       // NULL: $MLXD_SOCKET, else the default socket
    const char *job;            // NULL: $MLXD_JOB
    int rank, size;             // -1: $MLXD_RANK / $MLXD_SIZE; unset env: 0 and 1
    bool strict;                // true: fail rather than fall back to a singleton group
    int timeout_ms;             // per-operation deadline; 0: the default (60 s)
} mlxd_init_opts;

#define MLXD_INIT_OPTS_DEFAULT { NULL, NULL, -1, -1, false, 0 }

enum {
    MLXD_OK = 0,
    MLXD_EINVAL = -1,           // a bad argument or request
    MLXD_EUNAVAILABLE = -2,     // no daemon answers, or it is shutting down
    MLXD_EMISMATCH = -3,        // members disagree on an op
    MLXD_EPEER = -4,            // a member left or died: the op can no longer complete
    MLXD_ETIMEDOUT = -5,        // a member did not arrive before the deadline
    MLXD_ENOMEM = -6,           // out of memory, or over a limit of the daemon
    MLXD_EPROTO = -7,           // a protocol error (version, malformed message)
    MLXD_EDENIED = -8,          // not allowed (credentials, another user's job)
    MLXD_EINTERNAL = -9,        // a bug or an MPI failure in the daemon
    MLXD_EINTR = -10,           // the wait was interrupted (mlxd_set_interrupt)
};

// Bytes of one element of type t; 0 for a value that is not a dtype.
MLXD_API size_t mlxd_dtype_size(mlxd_dtype t);

// The dtype's name as MLX spells it ("float32", "bfloat16"); "invalid" for
// a value that is not a dtype.
MLXD_API const char *mlxd_dtype_name(mlxd_dtype t);

// True when a daemon answers at the default endpoint ($MLXD_SOCKET or the
// per-user default) within a second.
MLXD_API bool mlxd_is_available(void);

// Joins the job named by opts (or the environment) and returns its group in
// *ret once all of the job's ranks have joined, or the deadline passes
// (MLXD_ETIMEDOUT). opts may be NULL (all defaults). With no job given it
// returns a singleton group; when no daemon answers it returns a local
// singleton group unless strict is set (then MLXD_EUNAVAILABLE). On failure
// *ret is left untouched; mlxd_init_error() gives the detail.
//
// Called again in the same process for the same job (endpoint, job, rank
// and size), it returns at once another handle on the same group, as MLX's
// init() returns its cached group. The handles are one member: an op on any
// of them is that member's next op (use them from one thread at a time),
// and the process leaves the group when its last handle is freed. Another
// process cannot join a job that has formed (MLXD_EINVAL). Thread-safe.
MLXD_API int mlxd_init(const mlxd_init_opts *opts, mlxd_group **ret);

// The detailed message of the last mlxd_init() failure on this thread.
MLXD_API const char *mlxd_init_error(void);

// Frees the handle g; NULL is fine. Freeing the last handle on a member
// (see mlxd_init) leaves the group. Nothing the member handed over is lost:
// a send that returned is still delivered, and a collective the daemon
// holds this member's part of completes for the others. Their ops that can
// no longer complete fail with MLXD_EPEER: a receive from this member with
// no message, a send to it, a collective it never issued. The same holds
// when the process exits or is killed.
MLXD_API void mlxd_group_free(mlxd_group *g);

// This process's rank in g, and g's size.
MLXD_API int mlxd_group_rank(const mlxd_group *g);
MLXD_API int mlxd_group_size(const mlxd_group *g);

// Collective over g: members with the same color form a new group, ordered by
// key (ties, and key < 0, keep g's order). The new group supports every op
// and is freed with mlxd_group_free(); g stays usable. A split completes for
// every member even if another frees the new group at once; only ops issued
// later on that group see MLXD_EPEER.
MLXD_API int mlxd_group_split(mlxd_group *g, int color, int key, mlxd_group **ret);

// Reductions: out gets x's dtype and shape and the elementwise sum, max or
// min over all members; out may be x (in place). out->data must hold
// as many bytes as x.
MLXD_API int mlxd_all_sum(mlxd_group *g, const mlxd_array *x, mlxd_array *out);
MLXD_API int mlxd_all_max(mlxd_group *g, const mlxd_array *x, mlxd_array *out);
MLXD_API int mlxd_all_min(mlxd_group *g, const mlxd_array *x, mlxd_array *out);

// Concatenation of every member's x along axis 0, in rank order: out's
// shape[0] is size * x.shape[0]; a scalar gives shape [size].
MLXD_API int mlxd_all_gather(mlxd_group *g, const mlxd_array *x, mlxd_array *out);

// Sum over all members, then rank r keeps block r of axis 0: x.shape[0] must
// be divisible by the size; out's shape[0] is x.shape[0] / size.
MLXD_API int mlxd_sum_scatter(mlxd_group *g, const mlxd_array *x, mlxd_array *out);

// Sends x to rank dst. Returns once the daemon holds the data (the receiver
// need not be waiting), within the daemon's per-client cap; from then on it
// is delivered even if this process frees the group, exits or dies.
// Messages between two ranks arrive in the order they were sent.
MLXD_API int mlxd_send(mlxd_group *g, const mlxd_array *x, int dst);

// Receives from rank src into out; out->dtype, ndim and shape say what is
// expected (a different message is MLXD_EMISMATCH).
MLXD_API int mlxd_recv(mlxd_group *g, mlxd_array *out, int src);

// mlxd_recv() with the dtype and shape of like.
MLXD_API int mlxd_recv_like(mlxd_group *g, const mlxd_array *like, mlxd_array *out, int src);

// Returns once every member has called it.
MLXD_API int mlxd_barrier(mlxd_group *g);

// Nonblocking ops. Each starts the op of the same name and returns at once
// with a request in *ret (on failure, *ret is untouched and nothing was
// started), to be finished with mlxd_wait(). The library copies the array
// descriptors (and fills out's dtype, ndim and shape at once, as the
// blocking op would on success); only the memory behind ->data (x's and
// out's) must stay valid, and unread and unwritten by the caller, until
// mlxd_wait() returns. Several requests may be in flight on one group, up
// to the daemon's cap (--max-inflight-per-client; over it the op's result
// is MLXD_ENOMEM); every member's ops, blocking or not, are matched in the
// order it issued them. The blocking calls are these followed by
// mlxd_wait(). mlxd_group_free() waits for the requests issued on that
// handle first (mlxd_wait() must still be called on each).
typedef struct mlxd_request mlxd_request;
MLXD_API int mlxd_iall_sum(mlxd_group *g, const mlxd_array *x, mlxd_array *out, mlxd_request **ret);
MLXD_API int mlxd_iall_max(mlxd_group *g, const mlxd_array *x, mlxd_array *out, mlxd_request **ret);
MLXD_API int mlxd_iall_min(mlxd_group *g, const mlxd_array *x, mlxd_array *out, mlxd_request **ret);
MLXD_API int mlxd_iall_gather(mlxd_group *g, const mlxd_array *x, mlxd_array *out, mlxd_request **ret);
MLXD_API int mlxd_isum_scatter(mlxd_group *g, const mlxd_array *x, mlxd_array *out, mlxd_request **ret);
MLXD_API int mlxd_isend(mlxd_group *g, const mlxd_array *x, int dst, mlxd_request **ret);
MLXD_API int mlxd_irecv(mlxd_group *g, mlxd_array *out, int src, mlxd_request **ret);

// Waits until r's op ended, frees r and returns the op's result (0 or an
// MLXD_E* code, with the detail in mlxd_last_error() of the group r was
// issued on, if it still exists). Called exactly once per request, from
// one thread at a time with the group's other calls.
MLXD_API int mlxd_wait(mlxd_request *r);

// Sets *ret_done to whether r's op ended (mlxd_wait() would return at
// once). Never blocks and never frees r. Returns 0, or MLXD_EINVAL for a
// NULL argument.
MLXD_API int mlxd_test(mlxd_request *r, bool *ret_done);

// Memory the daemon reads and writes in place, so tensors in it never travel
// through the socket: a memfd shared with this process's daemon only (no other
// process or user can map it). Each call makes one segment, rounded up to
// whole pages: allocate a few large buffers and reuse them. Valid until
// mlxd_free() or until the process exits; usable with any group of this
// process on the same daemon. Without a daemon (a singleton group, or an
// mlxd without shared memory) it is ordinary heap memory. NULL when out of
// memory or over the daemon's per-client cap (mlxd_last_error() says
// which). An op that fails may have written part of an output in this
// memory. Tensors in ordinary memory larger than $MLXD_SHM_THRESHOLD bytes
// (default 1 MiB; 0: never) are copied through such memory, one copy each
// way, which beats sending them through the socket.
MLXD_API void *mlxd_alloc(mlxd_group *g, size_t nbytes);
MLXD_API void mlxd_free(mlxd_group *g, void *p);

// The name of an MLXD_E* code ("MLXD_ETIMEDOUT: operation timed out").
MLXD_API const char *mlxd_strerror(int err);

// The detailed message of the last failure on g (the daemon's own words,
// such as which ranks are missing); "" when there was none. Valid until the
// next call on g.
MLXD_API const char *mlxd_last_error(const mlxd_group *g);

// An interrupt check for the blocking calls of the calling thread. While a
// call waits for the daemon it calls fn(arg) at least every
// MLXD_INTERRUPT_SLICE_MS; when fn returns true the call stops waiting and
// fails with MLXD_EINTR, and this process leaves the group it waited on (it
// says Goodbye, so the other members' ops that can no longer complete fail
// with MLXD_EPEER); that group can then only be freed. fn is called on the
// calling thread, with nothing of the library's locked. NULL turns the check
// off. The Python module uses it for Ctrl-C.
#define MLXD_INTERRUPT_SLICE_MS 20
typedef bool (*mlxd_interrupt_fn)(void *arg);
MLXD_API void mlxd_set_interrupt(mlxd_interrupt_fn fn, void *arg);

#ifdef __cplusplus
}
#endif

#endif
