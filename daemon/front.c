/* The ZeroMQ front: where clients reach the daemon. The endpoint's lock is
 * taken before MPI starts, so that a second daemon is refused at once. */
#include "front.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "log.h"
#include "wire.h"

static int mkdir_parents(const char *path, mode_t mode) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int) sizeof buf)
        return -ENAMETOOLONG;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    return 0;
}

// The socket path's lock: held for the daemon's life, so that a second daemon
// on the same endpoint is refused even while the first is still starting.
static int lock_path(const char *sock_path, int *ret_fd) {
    char lock[PATH_MAX];
    if (snprintf(lock, sizeof lock, "%s.lock", sock_path) >= (int) sizeof lock)
        return -ENAMETOOLONG;
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int r = -errno;
        close(fd);
        return r == -EWOULDBLOCK ? -EADDRINUSE : r;
    }
    *ret_fd = fd;
    return 0;
}

int front_claim(struct front *f, const char *ep) {
    const char *path = wire_ipc_path(ep);
    int r = wire_check_endpoint(ep);
    if (f->lock_fd >= 0)
        return 0;
    if (r < 0 || !path)
        return log_errno(LOG_ERR, r < 0 ? r : -EINVAL,
                         "Endpoint %s is not usable: mlxd serves ipc:// endpoints whose path is at most %d bytes "
                         "(the shared-memory socket adds \".shm\" to it)",
                         ep, WIRE_MAX_IPC_PATH);
    // A user's daemon keeps its directory to itself; the system one lets the
    // socket's group in (the service sets the group and mode).
    r = mkdir_parents(path, geteuid() == 0 ? 0770 : 0700);
    if (r < 0)
        return log_errno(LOG_ERR, r, "Failed to create the directory of %s: %m", path);
    r = lock_path(path, &f->lock_fd);
    if (r == -EADDRINUSE || wire_probe_ipc(ep) == 0) {
        log_error("Another mlxd already serves %s; stop it first, or give this one another --socket", ep);
        return -EADDRINUSE;
    }
    if (r < 0)
        return log_errno(LOG_ERR, r, "Failed to lock %s.lock: %m", path);
    return 0;
}

static int bind_endpoint(struct front *f, const char *ep) {
    const char *path = wire_ipc_path(ep);
    int r = front_claim(f, ep);
    if (r < 0)
        return r;
    if (unlink(path) < 0 && errno != ENOENT)
        return log_errno(LOG_ERR, -errno, "Failed to remove the stale socket %s: %m", path);
    mode_t old = umask(0117);        // socket file 0660: owner and group only
    r = zmq_bind(f->router, ep);
    umask(old);
    if (r < 0)
        return log_errno(LOG_ERR, -zmq_errno(), "Failed to bind %s: %s", ep, zmq_strerror(zmq_errno()));
    f->unlink_on_exit = true;
    return 0;
}

int front_open(struct front *f, void *zctx, const char *ep, uint64_t max_msg, int passed_fd) {
    f->router = zmq_socket(zctx, ZMQ_ROUTER);
    if (!f->router)
        return log_errno(LOG_ERR, -zmq_errno(), "Failed to create the ROUTER socket");
    int one = 1, hwm = 10000, linger = 1000;
    int64_t maxmsg = (int64_t) max_msg;
    zmq_setsockopt(f->router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(f->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(f->router, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(f->router, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(f->router, ZMQ_LINGER, &linger, sizeof linger);
    f->activated = passed_fd >= 0;
    if (!f->activated)
        return bind_endpoint(f, ep);
    // systemd made, owns and will remove the socket file.
    zmq_setsockopt(f->router, ZMQ_USE_FD, &passed_fd, sizeof passed_fd);
    if (zmq_bind(f->router, ep) < 0)
        return log_errno(LOG_ERR, -zmq_errno(), "Failed to adopt the passed socket of %s: %s", ep,
                         zmq_strerror(zmq_errno()));
    return 0;
}

void front_unlink(const struct front *f, const char *ep) {
    if (f->unlink_on_exit)
        unlink(wire_ipc_path(ep));
}

void front_close(struct front *f, const char *ep) {
    if (f->router)
        zmq_close(f->router);
    if (f->unlink_on_exit) {
        const char *path = wire_ipc_path(ep);
        char lock[PATH_MAX];
        unlink(path);
        if (snprintf(lock, sizeof lock, "%s.lock", path) < (int) sizeof lock)
            unlink(lock);
    }
    if (f->lock_fd >= 0)
        close(f->lock_fd);
    *f = FRONT_INIT;
}
