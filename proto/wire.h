/* Helpers shared by the daemon, libmlxd and mlxctl: the protocol constants,
 * the one table of dtypes, op and error names, endpoint resolution and the
 * ZeroMQ framing of protobuf messages. Nothing here logs or keeps state. */
#ifndef MLXD_WIRE_H
#define MLXD_WIRE_H

#include <stdbool.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mlxd/mlxd.h"
#include "mlxd.pb-c.h"

// Bumped on every change an older peer would misread.
#define MLXD_PROTOCOL_VERSION 1

// Largest protobuf frame of a request; bigger ones are refused before
// decoding.
#define WIRE_MAX_PB_FRAME (64u * 1024u)

// Largest protobuf frame of a reply a client accepts: a status of many
// clients, or of every daemon of the world, is larger than any request.
#define WIRE_MAX_REPLY_FRAME (16u * 1024u * 1024u)

// The longest ipc:// path mlxd and libmlxd accept: a Unix socket path has at
// most 107 bytes (sizeof sun_path - 1), and the shared-memory side channel's
// path adds ".shm" to it. Stated the same in --help, the man pages and README.
#define WIRE_MAX_IPC_PATH 103

// How every group id is printed (the log, mlxctl status): 16 lowercase hex
// digits, for a uint64_t.
#define WIRE_ID_FMT "%016" PRIx64

// The default operation deadline.
#define WIRE_DEFAULT_TIMEOUT_MS 60000

typedef struct wire_dtype_info {
    const char *name;           // as MLX spells it
    size_t size;                // bytes per element
} wire_dtype_info;

// The dtype's entry, or NULL for a value that is not a dtype.
const wire_dtype_info *wire_dtype(uint32_t dtype);

// Looks a dtype up by name; returns its value or -1.
int wire_dtype_from_name(const char *name);

// "all_sum", "recv", ...; "invalid" for an unknown op.
const char *wire_op_name(Mlxd__OpType op);

// The reduction a collective applies: sum for all_sum and sum_scatter, max
// and min for all_max and all_min; REDUCE_OP_INVALID for the others.
typedef enum reduce_op {
    REDUCE_SUM,
    REDUCE_MAX,
    REDUCE_MIN,
    REDUCE_OP_MAX,
    REDUCE_OP_INVALID = -1,
} reduce_op;

reduce_op wire_op_reduction(Mlxd__OpType op);

// The result's shape of a collective on a group of group_size members whose
// input has this shape, in place: all_gather stacks along axis 0 (a scalar
// becomes [group_size]), sum_scatter keeps 1/group_size of axis 0, the
// others keep it. -EINVAL when sum_scatter's input is a scalar or its axis 0
// is not divisible, -EOVERFLOW when all_gather's axis 0 overflows.
int wire_result_shape(Mlxd__OpType op, int group_size, int *ndim, int64_t *shape);

// A job id: 1 to WIRE_JOB_ID_MAX characters of [A-Za-z0-9._:@+-].
#define WIRE_JOB_ID_MAX 128
bool wire_job_id_valid(const char *id);

// True when the n bytes at s are ASCII letters, digits or characters of punct.
bool wire_name_chars(const char *s, size_t n, const char *punct);

// The symbolic name of an MLXD_E* code ("MLXD_EPEER").
const char *wire_error_name(int code);

// Whether code is one of the MLXD_E* errors a daemon can end a group with
// (MLXD_EINVAL down to MLXD_EINTERNAL): tested by number, so that a code
// added later is not taken for one. MLXD_EINTR is the client library's own,
// never a daemon's.
bool wire_daemon_error(int code);

// Bytes of a dense tensor of this dtype and shape into *ret; -EINVAL for a
// bad dtype, ndim or negative dim, -EOVERFLOW when it does not fit 63 bits.
int wire_tensor_nbytes(uint32_t dtype, size_t ndim, const int64_t *shape, uint64_t *ret);

// Elements of a shape (1 for a scalar), or -EOVERFLOW / -EINVAL as above.
int wire_shape_elements(size_t ndim, const int64_t *shape, uint64_t *ret);

// The endpoint both the daemon and the library use when none is given:
// $MLXD_SOCKET; else ipc:///run/mlxd/mlxd.sock for root; else
// ipc://$XDG_RUNTIME_DIR/mlxd/mlxd.sock; else ipc:///tmp/mlxd-$UID/mlxd.sock.
// Writes it to buf; -ENAMETOOLONG when it does not fit.
int wire_default_endpoint(char *buf, size_t size);

// The filesystem path of an ipc:// endpoint, or NULL for another transport.
const char *wire_ipc_path(const char *endpoint);

// Checks that an endpoint is one ZeroMQ can use: ipc:// with a path of at
// most WIRE_MAX_IPC_PATH bytes, or tcp://. Returns 0 or -EINVAL /
// -ENAMETOOLONG.
int wire_check_endpoint(const char *endpoint);

// Connects a plain Unix socket to an ipc:// endpoint's path and closes it:
// 0 when something listens there, -ENOENT / -ECONNREFUSED (or another
// -errno) when nothing does, -EINVAL for another transport.
int wire_probe_ipc(const char *endpoint);

/* ---- the shared-memory side channel ----
 * ZeroMQ cannot pass file descriptors, so a client hands its memory to the
 * daemon over a SOCK_SEQPACKET Unix socket beside the ZeroMQ one: the ipc
 * path with ".shm" appended. Each message is one struct wire_shm_msg. A
 * REGISTER carries a memfd (SCM_RIGHTS) sealed with at least F_SEAL_SHRINK,
 * of at least `size` bytes; the daemon maps it and answers with a REPLY
 * naming the segment id that requests then use in Tensor.segment. A RELEASE
 * drops a segment (no reply). Closing the connection, or the process dying,
 * releases all of its segments. Segments count against the daemon's
 * per-client cap (--max-shm-bytes). */
#define WIRE_SHM_MAGIC 0x6d6c7873u    // "mlxs"
enum {
    WIRE_SHM_REGISTER = 1,
    WIRE_SHM_RELEASE = 2,
    WIRE_SHM_REPLY = 3,
    // A connection's request/reply ring (proto/ring.h): two descriptors,
    // the ring's memfd (sealed as a REGISTER's) and the client's end of a
    // SOCK_SEQPACKET socketpair, the doorbell both ways; `size` carries the
    // connection's group id and `segment` its rank there. Answered by a
    // REPLY (segment 0). An older daemon answers MLXD_EPROTO: no ring.
    WIRE_SHM_RING = 4,
};

struct wire_shm_msg {
    uint32_t magic;
    uint32_t type;
    uint32_t segment;                 // REPLY: the new segment; RELEASE: which
    int32_t code;                     // REPLY: 0 or an MLXD_E* code
    uint64_t size;                    // REGISTER: bytes to map
    char message[240];                // REPLY: what went wrong, NUL-terminated
};

// The side channel's path for an ipc:// endpoint into buf; -EINVAL for
// another transport, -ENAMETOOLONG when it does not fit a Unix socket path.
int wire_shm_path(const char *endpoint, char *buf, size_t size);

// Parses ZeroMQ's ipc "Peer-Address" property ("host:uid:gid:pid").
int wire_parse_peer_address(const char *s, uid_t *ret_uid, gid_t *ret_gid, pid_t *ret_pid);

// Packs a protobuf message into a new ZeroMQ frame and sends it; flags as
// for zmq_msg_send (ZMQ_SNDMORE, ZMQ_DONTWAIT). Returns 0 or -errno.
int wire_send_pb(void *socket, const ProtobufCMessage *m, int flags);

// Monotonic clock in microseconds.
uint64_t wire_now_us(void);

#endif
