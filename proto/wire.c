#include "wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

static const wire_dtype_info dtypes[MLXD_DTYPE_MAX] = {
    [MLXD_BOOL] = { "bool", 1 },
    [MLXD_UINT8] = { "uint8", 1 },
    [MLXD_UINT16] = { "uint16", 2 },
    [MLXD_UINT32] = { "uint32", 4 },
    [MLXD_UINT64] = { "uint64", 8 },
    [MLXD_INT8] = { "int8", 1 },
    [MLXD_INT16] = { "int16", 2 },
    [MLXD_INT32] = { "int32", 4 },
    [MLXD_INT64] = { "int64", 8 },
    [MLXD_FLOAT16] = { "float16", 2 },
    [MLXD_BFLOAT16] = { "bfloat16", 2 },
    [MLXD_FLOAT32] = { "float32", 4 },
    [MLXD_FLOAT64] = { "float64", 8 },
    [MLXD_COMPLEX64] = { "complex64", 8 },
};

const wire_dtype_info *wire_dtype(uint32_t dtype) {
    return dtype < MLXD_DTYPE_MAX ? &dtypes[dtype] : NULL;
}

int wire_dtype_from_name(const char *name) {
    for (int i = 0; i < MLXD_DTYPE_MAX; i++)
        if (strcmp(dtypes[i].name, name) == 0)
            return i;
    return -1;
}

size_t mlxd_dtype_size(mlxd_dtype t) {
    const wire_dtype_info *d = wire_dtype((uint32_t) t);
    return d ? d->size : 0;
}

const char *mlxd_dtype_name(mlxd_dtype t) {
    const wire_dtype_info *d = wire_dtype((uint32_t) t);
    return d ? d->name : "invalid";
}

static const char *const op_names[] = {
    [MLXD__OP_TYPE__OP_INVALID] = "invalid",
    [MLXD__OP_TYPE__OP_ALL_SUM] = "all_sum",
    [MLXD__OP_TYPE__OP_ALL_MAX] = "all_max",
    [MLXD__OP_TYPE__OP_ALL_MIN] = "all_min",
    [MLXD__OP_TYPE__OP_ALL_GATHER] = "all_gather",
    [MLXD__OP_TYPE__OP_SUM_SCATTER] = "sum_scatter",
    [MLXD__OP_TYPE__OP_SEND] = "send",
    [MLXD__OP_TYPE__OP_RECV] = "recv",
    [MLXD__OP_TYPE__OP_BARRIER] = "barrier",
    [MLXD__OP_TYPE__OP_SPLIT] = "split",
};

const char *wire_op_name(Mlxd__OpType op) {
    if ((unsigned) op < sizeof op_names / sizeof op_names[0] && op_names[op])
        return op_names[op];
    return "invalid";
}

reduce_op wire_op_reduction(Mlxd__OpType op) {
    switch (op) {
    case MLXD__OP_TYPE__OP_ALL_SUM:
    case MLXD__OP_TYPE__OP_SUM_SCATTER:
        return REDUCE_SUM;
    case MLXD__OP_TYPE__OP_ALL_MAX:
        return REDUCE_MAX;
    case MLXD__OP_TYPE__OP_ALL_MIN:
        return REDUCE_MIN;
    default:
        return REDUCE_OP_INVALID;
    }
}

int wire_result_shape(Mlxd__OpType op, int group_size, int *ndim, int64_t *shape) {
    if (op == MLXD__OP_TYPE__OP_ALL_GATHER) {
        if (*ndim == 0) {
            *ndim = 1;
            shape[0] = group_size;
        } else if (__builtin_mul_overflow(shape[0], (int64_t) group_size, &shape[0])) {
            return -EOVERFLOW;
        }
    } else if (op == MLXD__OP_TYPE__OP_SUM_SCATTER) {
        if (*ndim == 0 || group_size <= 0 || shape[0] % group_size != 0)
            return -EINVAL;
        shape[0] /= group_size;
    }
    return 0;
}

bool wire_name_chars(const char *s, size_t n, const char *punct) {
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || (c && strchr(punct, c))))
            return false;
    }
    return true;
}

bool wire_job_id_valid(const char *id) {
    size_t n = id ? strnlen(id, WIRE_JOB_ID_MAX + 1) : 0;
    return n > 0 && n <= WIRE_JOB_ID_MAX && wire_name_chars(id, n, "._:@+-");
}

static const struct {
    const char *name, *text;
} errors[] = {
    { "MLXD_OK", "success" },
    { "MLXD_EINVAL", "invalid argument" },
    { "MLXD_EUNAVAILABLE", "daemon unavailable" },
    { "MLXD_EMISMATCH", "members disagree on the operation" },
    { "MLXD_EPEER", "a member of the group died or left" },
    { "MLXD_ETIMEDOUT", "operation timed out" },
    { "MLXD_ENOMEM", "out of memory or over a limit" },
    { "MLXD_EPROTO", "protocol error" },
    { "MLXD_EDENIED", "permission denied" },
    { "MLXD_EINTERNAL", "internal error" },
    { "MLXD_EINTR", "interrupted" },
};

#define N_ERRORS ((int) (sizeof errors / sizeof errors[0]))

const char *wire_error_name(int code) {
    // Compared before negating: -INT_MIN does not exist.
    return code <= 0 && code > -N_ERRORS ? errors[-code].name : "MLXD_EUNKNOWN";
}

bool wire_daemon_error(int code) {
    return code < 0 && code >= MLXD_EINTERNAL;
}

const char *mlxd_strerror(int err) {
    static const char *const strings[] = {
        "MLXD_OK: success",
        "MLXD_EINVAL: invalid argument",
        "MLXD_EUNAVAILABLE: daemon unavailable",
        "MLXD_EMISMATCH: members disagree on the operation",
        "MLXD_EPEER: a member of the group died or left",
        "MLXD_ETIMEDOUT: operation timed out",
        "MLXD_ENOMEM: out of memory or over a limit",
        "MLXD_EPROTO: protocol error",
        "MLXD_EDENIED: permission denied",
        "MLXD_EINTERNAL: internal error",
        "MLXD_EINTR: interrupted",
    };
    _Static_assert(sizeof strings / sizeof strings[0] == N_ERRORS, "one string per error");
    return err <= 0 && err > -N_ERRORS ? strings[-err] : "MLXD_EUNKNOWN: unknown error code";
}

int wire_shape_elements(size_t ndim, const int64_t *shape, uint64_t *ret) {
    if (ndim > MLXD_MAX_NDIM)
        return -EINVAL;
    uint64_t n = 1;
    for (size_t i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return -EINVAL;
        if (__builtin_mul_overflow(n, (uint64_t) shape[i], &n) || n > INT64_MAX)
            return -EOVERFLOW;
    }
    *ret = n;
    return 0;
}

int wire_tensor_nbytes(uint32_t dtype, size_t ndim, const int64_t *shape, uint64_t *ret) {
    const wire_dtype_info *d = wire_dtype(dtype);
    if (!d)
        return -EINVAL;
    uint64_t n;
    int r = wire_shape_elements(ndim, shape, &n);
    if (r < 0)
        return r;
    if (__builtin_mul_overflow(n, (uint64_t) d->size, &n) || n > INT64_MAX)
        return -EOVERFLOW;
    *ret = n;
    return 0;
}

int wire_default_endpoint(char *buf, size_t size) {
    const char *env = getenv("MLXD_SOCKET");
    int n;
    if (env && *env)
        n = snprintf(buf, size, "%s", env);
    else if (geteuid() == 0)
        n = snprintf(buf, size, "ipc:///run/mlxd/mlxd.sock");
    else if ((env = getenv("XDG_RUNTIME_DIR")) && *env == '/')
        n = snprintf(buf, size, "ipc://%s/mlxd/mlxd.sock", env);
    else
        n = snprintf(buf, size, "ipc:///tmp/mlxd-%u/mlxd.sock", (unsigned) geteuid());
    return n < 0 || (size_t) n >= size ? -ENAMETOOLONG : 0;
}

const char *wire_ipc_path(const char *endpoint) {
    return strncmp(endpoint, "ipc://", 6) == 0 ? endpoint + 6 : NULL;
}

int wire_check_endpoint(const char *endpoint) {
    const char *path = wire_ipc_path(endpoint);
    if (path) {
        if (*path == '\0')
            return -EINVAL;
        return strlen(path) > WIRE_MAX_IPC_PATH ? -ENAMETOOLONG : 0;
    }
    return strncmp(endpoint, "tcp://", 6) == 0 ? 0 : -EINVAL;
}

int wire_shm_path(const char *endpoint, char *buf, size_t size) {
    const char *path = wire_ipc_path(endpoint);
    struct sockaddr_un sa;
    if (!path)
        return -EINVAL;
    int n = snprintf(buf, size, "%s.shm", path);
    if (n < 0 || (size_t) n >= size || (size_t) n >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    return 0;
}

int wire_probe_ipc(const char *endpoint) {
    const char *path = wire_ipc_path(endpoint);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (!path)
        return -EINVAL;
    if (strlen(path) >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int r = connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0 ? -errno : 0;
    close(fd);
    return r;
}

int wire_parse_peer_address(const char *s, uid_t *ret_uid, gid_t *ret_gid, pid_t *ret_pid) {
    // The host part may itself hold colons; the last three fields are ours.
    const char *p[3];
    const char *end = s ? s + strlen(s) : NULL;
    if (!s)
        return -EINVAL;
    for (int i = 2; i >= 0; i--) {
        while (end > s && end[-1] != ':')
            end--;
        if (end == s)
            return -EINVAL;
        p[i] = end;
        end--;
    }
    // Plain decimals that fit: strtoul alone takes a sign or blanks ("-1"
    // wraps) and values past uid_t ("4294967296" would read as root).
    const unsigned long max[3] = { UINT32_MAX - 1, UINT32_MAX - 1, INT32_MAX };
    unsigned long v[3];
    for (int i = 0; i < 3; i++) {
        char *e;
        errno = 0;
        if (*p[i] < '0' || *p[i] > '9')
            return -EINVAL;
        v[i] = strtoul(p[i], &e, 10);
        if (errno || (*e != ':' && *e != '\0') || v[i] > max[i])
            return -EINVAL;
    }
    *ret_uid = (uid_t) v[0];
    *ret_gid = (gid_t) v[1];
    *ret_pid = (pid_t) v[2];
    return 0;
}

static void free_packed(void *data, void *hint) {
    (void) hint;
    free(data);
}

int wire_send_pb(void *socket, const ProtobufCMessage *m, int flags) {
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return -ENOMEM;
    protobuf_c_message_pack(m, buf);
    zmq_msg_t msg;
    if (zmq_msg_init_data(&msg, buf, n, free_packed, NULL) < 0) {
        free(buf);
        return -ENOMEM;
    }
    if (zmq_msg_send(&msg, socket, flags) < 0) {
        int r = -zmq_errno();
        zmq_msg_close(&msg);
        return r;
    }
    return 0;
}

uint64_t wire_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}
