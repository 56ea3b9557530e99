/* The shared-memory side channel: a SOCK_SEQPACKET Unix socket beside the
 * ZeroMQ one, where clients hand over sealed memfds. */
#include "shm.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "access.h"
#include "log.h"
#include "platform.h"
#include "ringsvc.h"
#include "server.h"

static void seg_unmap(struct shm_seg *seg) {
    munmap(seg->base, seg->size);
    free(seg);
}

void shm_unref(struct shm_seg *seg) {
    if (seg && --seg->refs == 0)
        seg_unmap(seg);
}

void shm_ref(struct shm_seg *seg) {
    seg->refs++;
}

// The owner lets go: the segment leaves its client's books at once (a
// request naming it is refused from now on), and is unmapped once no op uses
// it.
static void seg_release(struct shm_seg *seg) {
    struct shm_client *c = seg->owner;
    LIST_REMOVE(seg, link);
    c->n_segs--;
    c->bytes -= seg->size;
    seg->owner = NULL;
    shm_unref(seg);
}

static void client_close(struct server *s, struct shm_client *c) {
    while (!LIST_EMPTY(&c->segs))
        seg_release(LIST_FIRST(&c->segs));
    LIST_REMOVE(c, link);
    close(c->fd);
    log_debug("Shared memory of pid %d released", (int) c->pid);
    free(c);
}

int shm_start(struct server *s) {
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (wire_shm_path(s->cfg.endpoint, sa.sun_path, sizeof sa.sun_path) < 0)
        return log_errno(LOG_ERR, -ENAMETOOLONG,
                         "The shared-memory socket of %s does not fit a Unix socket path; use a shorter --socket",
                         s->cfg.endpoint);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return log_errno(LOG_ERR, -errno, "Failed to create the shared-memory socket: %m");
    // We hold the endpoint's lock: whatever is at the path is stale.
    unlink(sa.sun_path);
    mode_t old = umask(0117);
    int r = bind(fd, (struct sockaddr *) &sa, sizeof sa);
    umask(old);
    if (r < 0 || listen(fd, 64) < 0) {
        r = log_errno(LOG_ERR, -errno, "Failed to listen on %s: %m", sa.sun_path);
        close(fd);
        return r;
    }
    s->shm.listen_fd = fd;
    s->shm.owned = true;
    return 0;
}

void shm_stop(struct server *s) {
    while (!LIST_EMPTY(&s->shm.clients))
        client_close(s, LIST_FIRST(&s->shm.clients));
    if (s->shm.listen_fd >= 0) {
        char path[sizeof ((struct sockaddr_un *) 0)->sun_path];
        close(s->shm.listen_fd);
        if (s->shm.owned && wire_shm_path(s->cfg.endpoint, path, sizeof path) == 0)
            unlink(path);
    }
    s->shm.listen_fd = -1;
}

size_t shm_poll_fds(struct server *s, int *fds, size_t max) {
    size_t n = 0;
    struct shm_client *c;
    if (s->shm.listen_fd >= 0 && n < max)
        fds[n++] = s->shm.listen_fd;
    LIST_FOREACH(c, &s->shm.clients, link)
        if (n < max)
            fds[n++] = c->fd;
    return n;
}

static void accept_one(struct server *s) {
    struct peer p = { 0 };
    int fd = accept4(s->shm.listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return;
    if (platform_peer_cred(fd, &p.uid, &p.gid, &p.pid) < 0) {
        close(fd);
        return;
    }
    if (!peer_allowed(s, &p)) {
        log_warning("Refused shared memory from uid %u (pid %d): not this daemon's user, root or its group",
                    (unsigned) p.uid, (int) p.pid);
        close(fd);
        return;
    }
    unsigned n = 0;
    struct shm_client *c;
    LIST_FOREACH(c, &s->shm.clients, link)
        n++;
    if (n >= s->cfg.max_clients || !(c = calloc(1, sizeof *c))) {
        log_warning("Refused shared memory from pid %d: too many clients", (int) p.pid);
        close(fd);
        return;
    }
    c->fd = fd;
    c->pid = p.pid;
    c->uid = p.uid;
    LIST_INIT(&c->segs);
    LIST_INSERT_HEAD(&s->shm.clients, c, link);
}

static void reply(struct shm_client *c, uint32_t segment, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void reply(struct shm_client *c, uint32_t segment, int code, const char *fmt, ...) {
    struct wire_shm_msg m = { .magic = WIRE_SHM_MAGIC, .type = WIRE_SHM_REPLY, .segment = segment, .code = code };
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m.message, sizeof m.message, fmt, ap);
    va_end(ap);
    if (send(c->fd, &m, sizeof m, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        log_debug("Could not answer pid %d on the shared-memory socket: %m", (int) c->pid);
}

static void do_register(struct server *s, struct shm_client *c, const struct wire_shm_msg *m, int memfd) {
    struct stat st;
    if (!platform_memory_cannot_shrink(memfd)) {
        // An unsealed file could shrink under us and fault the daemon.
        reply(c, 0, MLXD_EINVAL, "shared memory must be a memfd sealed with F_SEAL_SHRINK");
        return;
    }
    if (m->size == 0) {
        reply(c, 0, MLXD_EINVAL, "a segment of 0 bytes cannot be registered");
        return;
    }
    if (fstat(memfd, &st) < 0 || (uint64_t) st.st_size < m->size) {
        reply(c, 0, MLXD_EINVAL, "the memfd holds %lld bytes, fewer than the %llu registered",
              (long long) st.st_size, (unsigned long long) m->size);
        return;
    }
    if (c->bytes + m->size > s->cfg.max_shm_bytes || m->size > s->cfg.max_shm_bytes) {
        reply(c, 0, MLXD_ENOMEM, "shared memory of this process would exceed the daemon's cap of %llu bytes "
              "(%llu in use)", (unsigned long long) s->cfg.max_shm_bytes, (unsigned long long) c->bytes);
        return;
    }
    struct shm_seg *seg = calloc(1, sizeof *seg);
    void *base = MAP_FAILED;
    if (seg)
        base = mmap(NULL, m->size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (base == MAP_FAILED) {
        free(seg);
        reply(c, 0, MLXD_ENOMEM, "cannot map %llu bytes of shared memory", (unsigned long long) m->size);
        return;
    }
    seg->owner = c;
    seg->base = base;
    seg->size = m->size;
    seg->refs = 1;
    do
        seg->id = s->shm.next_segment_id++;
    while (seg->id == 0);
    LIST_INSERT_HEAD(&c->segs, seg, link);
    c->n_segs++;
    c->bytes += m->size;
    reply(c, seg->id, 0, "%s", "");
}

static void read_one(struct server *s, struct shm_client *c) {
    struct wire_shm_msg m;
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int) * 4)];
    } ctl;
    struct iovec iov = { .iov_base = &m, .iov_len = sizeof m };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf };
    ssize_t n = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    int fds[4], nfds = 0;
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h))
        if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS)
            for (size_t i = 0; i < (h->cmsg_len - CMSG_LEN(0)) / sizeof(int) && nfds < 4; i++)
                memcpy(&fds[nfds++], CMSG_DATA(h) + i * sizeof(int), sizeof(int));
    if (n <= 0) {
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        client_close(s, c);          // gone, or an error: its memory goes too
        return;
    }
    if ((size_t) n != sizeof m || m.magic != WIRE_SHM_MAGIC || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
        log_warning("Pid %d sent a malformed message on the shared-memory socket; closing it", (int) c->pid);
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        client_close(s, c);
        return;
    }
    switch (m.type) {
    case WIRE_SHM_REGISTER:
        if (nfds != 1)
            reply(c, 0, MLXD_EPROTO, "a registration carries exactly one file descriptor, not %d", nfds);
        else
            do_register(s, c, &m, fds[0]);
        break;
    case WIRE_SHM_RELEASE: {
        struct shm_seg *seg;
        LIST_FOREACH(seg, &c->segs, link)
            if (seg->id == m.segment)
                break;
        if (seg)
            seg_release(seg);
        break;
    }
    case WIRE_SHM_RING: {
        char why[sizeof m.message];
        int r = MLXD_EPROTO;
        if (nfds != 2)
            snprintf(why, sizeof why, "a ring carries exactly two file descriptors, not %d", nfds);
        else if (m.segment > INT32_MAX)
            snprintf(why, sizeof why, "rank %u is out of range", m.segment);
        else
            r = ring_attach(s, c->pid, m.size, (int) m.segment, fds[0], fds[1], why, sizeof why);
        reply(c, 0, r, "%s", r < 0 ? why : "");
        break;
    }
    default:
        reply(c, 0, MLXD_EPROTO, "unknown shared-memory message type %u", m.type);
    }
    // The mapping keeps the memory; the descriptors are not needed.
    for (int i = 0; i < nfds; i++)
        close(fds[i]);
}

void shm_ready(struct server *s, int fd) {
    struct shm_client *c;
    if (fd == s->shm.listen_fd) {
        accept_one(s);
        return;
    }
    LIST_FOREACH(c, &s->shm.clients, link)
        if (c->fd == fd) {
            read_one(s, c);
            return;
        }
}

int shm_resolve(struct server *s, pid_t pid, uint32_t id, uint64_t offset, uint64_t nbytes,
                struct shm_seg **ret_seg, uint8_t **ret_ptr) {
    struct shm_client *c;
    struct shm_seg *seg;
    uint64_t end;
    LIST_FOREACH(c, &s->shm.clients, link) {
        if (c->pid != pid)
            continue;
        LIST_FOREACH(seg, &c->segs, link) {
            if (seg->id != id)
                continue;
            if (__builtin_add_overflow(offset, nbytes, &end) || end > seg->size)
                return -ERANGE;
            seg->refs++;
            *ret_seg = seg;
            *ret_ptr = seg->base + offset;
            return 0;
        }
    }
    return -ENOENT;
}

void shm_usage(struct server *s, pid_t pid, unsigned *ret_segs, uint64_t *ret_bytes) {
    struct shm_client *c;
    *ret_segs = 0;
    *ret_bytes = 0;
    LIST_FOREACH(c, &s->shm.clients, link)
        if (c->pid == pid) {
            *ret_segs += c->n_segs;
            *ret_bytes += c->bytes;
        }
}
