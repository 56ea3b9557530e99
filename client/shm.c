/* libmlxd's shared memory: the side channel that hands memfds to the daemon,
 * the process's table of registered segments that turns a pointer into
 * (segment, offset), and the staging segment of each group, through which
 * large tensors in ordinary memory go.
 *
 * The side channel is one SOCK_SEQPACKET connection per process and endpoint
 * (the daemon keys segments by process), made on first use and shared by
 * every group of that endpoint. Each segment is one memfd, sealed against
 * shrinking and growing, mapped here and registered there; its fd is closed
 * once registered (the mapping keeps the memory), so that many segments do
 * not use up the process's descriptors.
 *
 * If the connection is lost (the daemon exited, or did not answer in time),
 * the daemon has dropped every segment that came through it: each channel
 * counts its connections (gen), a segment remembers the one it was
 * registered on, and one from an earlier connection is never named in a
 * request again (its memory stays valid for the caller; tensors in it then
 * travel inline). So an id the daemon hands out on a later connection can
 * never be confused with a stale one.
 *
 * Locking: shm_lock guards the channel list and the segment table, and every
 * write of a channel's fd and gen (which are then readable under either
 * lock). Each channel's lock serializes the use of its socket, so a
 * registration that waits for the daemon holds up other registrations on the
 * same endpoint, never the lookups of ops. Order: a channel's lock, then
 * shm_lock. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "libmlxd_impl.h"
#include "platform.h"

// The side channel to one endpoint's daemon. Never freed: there are as many
// as endpoints the process talks to.
struct chan {
    struct chan *next;                  // in chans
    pthread_mutex_t lock;               // serializes the use of fd
    int fd;                             // -1: not connected
    unsigned gen;                       // bumped each time a connection is lost
    uint64_t retry_us;                  // while not connected: no new attempt before this
    char why[LIB_ERR_MAX];              // why the last attempt failed
    char endpoint[LIB_ENDPOINT_MAX];
};

struct shm_seg {
    void *base;
    size_t size;                        // mapped bytes, whole pages
    uint32_t id;                        // the daemon's id...
    unsigned gen;                       // ...on this connection of chan
    bool staging;
    struct chan *chan;
};

static pthread_mutex_t shm_lock = PTHREAD_MUTEX_INITIALIZER;
static struct chan *chans;
static struct shm_seg **segs;           // sorted by base; segments never overlap
static size_t nsegs, segs_cap;

/* ---- the side channel ---- */

static struct chan *chan_get(const char *endpoint) {
    struct chan *c;
    pthread_mutex_lock(&shm_lock);
    for (c = chans; c; c = c->next)
        if (strcmp(c->endpoint, endpoint) == 0)
            break;
    if (!c && (c = calloc(1, sizeof *c))) {
        pthread_mutex_init(&c->lock, NULL);
        c->fd = -1;
        snprintf(c->endpoint, sizeof c->endpoint, "%s", endpoint);
        c->next = chans;
        chans = c;
    }
    pthread_mutex_unlock(&shm_lock);
    return c;
}

// Closes c's connection: the daemon drops every segment registered through
// it, and so does the table (by gen). c->lock held.
static void chan_break(struct chan *c) {
    pthread_mutex_lock(&shm_lock);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->gen++;
    pthread_mutex_unlock(&shm_lock);
    // The daemon may be back already (it restarted): try again at once.
    c->retry_us = 0;
}

// Connects c if it is not. c->lock held. MLXD_EUNAVAILABLE when the daemon
// has no side channel there (or not yet: retried after LIB_SHM_RETRY_MS).
static int chan_connect(struct chan *c, char *err) {
    char path[sizeof ((struct sockaddr_un *) NULL)->sun_path];
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    uint64_t now = wire_now_us();
    int fd = -1, r;

    if (c->fd >= 0)
        return 0;
    if (now < c->retry_us)
        return lib_errorf(err, MLXD_EUNAVAILABLE, "%s", c->why);

    r = wire_shm_path(c->endpoint, path, sizeof path);
    if (r < 0) {
        snprintf(c->why, sizeof c->why, "%s has no shared-memory socket (%s)", c->endpoint,
                 r == -EINVAL ? "only ipc:// endpoints do" : "its path is too long");
        c->retry_us = UINT64_MAX;  // and never will
        return lib_errorf(err, MLXD_EUNAVAILABLE, "%s", c->why);
    }
    strcpy(sa.sun_path, path);
    struct timeval tv = { .tv_sec = LIB_SHM_REPLY_MS / 1000, .tv_usec = (LIB_SHM_REPLY_MS % 1000) * 1000 };
    fd = platform_seqpacket_socket();
    // The send timeout also bounds connect(), which waits when the daemon's
    // backlog is full.
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0 ||
        connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
        snprintf(c->why, sizeof c->why, "cannot connect to mlxd's shared-memory socket %s: %s", path,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        c->retry_us = now + (uint64_t) LIB_SHM_RETRY_MS * 1000u;
        return lib_errorf(err, MLXD_EUNAVAILABLE, "%s", c->why);
    }
    pthread_mutex_lock(&shm_lock);
    c->fd = fd;
    pthread_mutex_unlock(&shm_lock);
    return 0;
}

// Receives one message from c within LIB_SHM_REPLY_MS. c->lock held. Any
// descriptor that comes along is closed: the daemon has no business sending
// one. On failure the connection is broken and the code is EUNAVAILABLE.
static int chan_recv(struct chan *c, struct wire_shm_msg *ret, char *err) {
    uint64_t deadline = wire_now_us() + (uint64_t) LIB_SHM_REPLY_MS * 1000u;
    union {
        char buf[CMSG_SPACE(4 * sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = { ret, sizeof *ret };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                         .msg_controllen = sizeof u.buf };
    const char *what = NULL;
    ssize_t n;

    for (;;) {
        uint64_t now = wire_now_us();
        struct pollfd p = { .fd = c->fd, .events = POLLIN };
        if (now >= deadline) {
            what = "no answer within the deadline";
            break;
        }
        int k = poll(&p, 1, (int) ((deadline - now + 999u) / 1000u));
        if (k < 0 && errno != EINTR) {
            what = strerror(errno);
            break;
        }
        if (k <= 0)
            continue;
        n = platform_recvmsg(c->fd, &mh);
        if (n < 0 && errno == EINTR)
            continue;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
                for (size_t i = 0; i < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
                    int fd;
                    memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
                    close(fd);
                }
        if (n < 0)
            what = strerror(errno);
        else if (n == 0)
            what = "the daemon closed the connection";
        else if ((size_t) n != sizeof *ret || (mh.msg_flags & MSG_TRUNC) || ret->magic != WIRE_SHM_MAGIC ||
                 ret->type != WIRE_SHM_REPLY)
            what = "a malformed message";
        break;
    }
    if (!what)
        return 0;
    lib_errorf(err, MLXD_EUNAVAILABLE, "mlxd's shared-memory socket for %s: %s", c->endpoint, what);
    chan_break(c);
    return MLXD_EUNAVAILABLE;
}

// Sends one message, with nfds descriptors (at most 2) attached. c->lock
// held. On failure the connection is broken; *ret_lost says whether it was
// already gone (the daemon closed it earlier: a new connection may work).
static int chan_send(struct chan *c, const struct wire_shm_msg *m, const int *fds, int nfds, bool *ret_lost,
                     char *err) {
    union {
        char buf[CMSG_SPACE(2 * sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = { (void *) m, sizeof *m };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
    ssize_t n;

    memset(&u, 0, sizeof u);
    if (nfds > 0) {
        mh.msg_control = u.buf;
        mh.msg_controllen = CMSG_SPACE((size_t) nfds * sizeof(int));
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN((size_t) nfds * sizeof(int));
        memcpy(CMSG_DATA(cm), fds, (size_t) nfds * sizeof(int));
    }
    do
        n = platform_sendmsg(c->fd, &mh);
    while (n < 0 && errno == EINTR);
    if (n == (ssize_t) sizeof *m)
        return 0;
    int e = n < 0 ? errno : EIO;
    if (ret_lost)
        *ret_lost = e == EPIPE || e == ECONNRESET || e == ENOTCONN;
    lib_errorf(err, MLXD_EUNAVAILABLE, "cannot send to mlxd's shared-memory socket for %s: %s",
               c->endpoint, strerror(e));
    chan_break(c);
    return MLXD_EUNAVAILABLE;
}

// Registers memfd (size bytes) with the daemon behind c: 0 and the id, the
// daemon's code and message when it refuses, or MLXD_EUNAVAILABLE when the
// connection fails (then broken; *ret_lost as for chan_send). c->lock held.
static int chan_register(struct chan *c, int memfd, uint64_t size, uint32_t *ret_id, bool *ret_lost,
                         char *err) {
    struct wire_shm_msg m = { .magic = WIRE_SHM_MAGIC, .type = WIRE_SHM_REGISTER, .size = size };
    struct wire_shm_msg rep;
    int r;

    *ret_lost = false;
    if ((r = chan_send(c, &m, &memfd, 1, ret_lost, err)) < 0 || (r = chan_recv(c, &rep, err)) < 0)
        return r;
    rep.message[sizeof rep.message - 1] = '\0';
    if (rep.code < 0) {
        int code = rep.code >= MLXD_EINTERNAL ? rep.code : MLXD_EPROTO;
        if (rep.message[0])
            return lib_errorf(err, code, "%s", rep.message);
        return lib_errorf(err, code, "mlxd refused %llu bytes of shared memory: %s",
                          (unsigned long long) size, mlxd_strerror(code));
    }
    if (rep.code > 0 || rep.segment == 0) {
        // The daemon may hold the memory under an id we cannot know: drop the
        // connection, and with it everything the daemon holds of ours.
        lib_errorf(err, MLXD_EUNAVAILABLE,
                   "mlxd's shared-memory socket for %s answered code %d segment %u", c->endpoint,
                   rep.code, rep.segment);
        chan_break(c);
        return MLXD_EUNAVAILABLE;
    }
    *ret_id = rep.segment;
    return 0;
}

/* ---- the segment table ---- */

// The index of the last segment whose base is at most p, or -1. shm_lock held.
static ssize_t table_find(const void *p) {
    size_t lo = 0, hi = nsegs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((uintptr_t) segs[mid]->base <= (uintptr_t) p)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (ssize_t) lo - 1;
}

// shm_lock held.
static bool table_insert(struct shm_seg *s) {
    if (nsegs == segs_cap) {
        size_t cap = segs_cap ? 2 * segs_cap : 16;
        struct shm_seg **n = realloc(segs, cap * sizeof *n);
        if (!n)
            return false;
        segs = n;
        segs_cap = cap;
    }
    size_t i = (size_t) (table_find(s->base) + 1);
    memmove(segs + i + 1, segs + i, (nsegs - i) * sizeof *segs);
    segs[i] = s;
    nsegs++;
    return true;
}

// shm_lock held.
static void table_remove(struct shm_seg *s) {
    ssize_t i = table_find(s->base);
    if (i < 0 || segs[i] != s)
        return;
    memmove(segs + i, segs + i + 1, (nsegs - (size_t) i - 1) * sizeof *segs);
    nsegs--;
}

/* ---- segments ---- */

static int errno_code(int e) {
    return e == ENOMEM || e == EMFILE || e == ENFILE || e == EFBIG || e == ENOSPC ? MLXD_ENOMEM
                                                                                  : MLXD_EINTERNAL;
}

// A sealed memfd of size bytes, mapped: 0, or an MLXD_E* code (EUNAVAILABLE
// when the kernel has no memfds or seals, so that the caller falls back).
static int memfd_map(const char *name, size_t size, int *ret_fd, void **ret_base, char *err) {
    enum platform_shm_step step;
    int fd = platform_shm_create_named(name, size, &step);
    if (fd < 0) {
        int e = -fd;
        switch (step) {
        case PLATFORM_SHM_CREATE:
            return lib_errorf(err, e == ENOSYS || e == EINVAL ? MLXD_EUNAVAILABLE : errno_code(e),
                              "cannot create a memfd: %s", strerror(e));
        case PLATFORM_SHM_SIZE:
            return lib_errorf(err, errno_code(e), "cannot size a memfd to %zu bytes: %s", size, strerror(e));
        case PLATFORM_SHM_SEAL:
            break;
        }
        return lib_errorf(err, e == EINVAL ? MLXD_EUNAVAILABLE : errno_code(e), "cannot seal a memfd: %s",
                          strerror(e));
    }
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        int e = errno;
        close(fd);
        return lib_errorf(err, errno_code(e), "cannot map %zu bytes of shared memory: %s", size, strerror(e));
    }
    *ret_fd = fd;
    *ret_base = base;
    return 0;
}

int shm_seg_new(const char *endpoint, size_t nbytes, bool staging, struct shm_seg **ret_seg, char *err) {
    size_t page = (size_t) sysconf(_SC_PAGESIZE), size;
    if (nbytes == 0)
        nbytes = 1;  // every allocation gets its own address
    if (nbytes > SIZE_MAX - page || nbytes > (size_t) INT64_MAX - page)
        return lib_errorf(err, MLXD_ENOMEM, "%zu bytes of shared memory is too many", nbytes);
    size = (nbytes + page - 1) / page * page;

    struct chan *c = chan_get(endpoint);
    struct shm_seg *s = calloc(1, sizeof *s);
    if (!c || !s) {
        free(s);
        return lib_errorf(err, MLXD_ENOMEM, "out of memory");
    }
    s->size = size;
    s->staging = staging;
    s->chan = c;

    int fd = -1, r;
    bool lost = false;
    pthread_mutex_lock(&c->lock);
    // Without a side channel there is no point in making the memory.
    if ((r = chan_connect(c, err)) < 0 || (r = memfd_map("mlxd", size, &fd, &s->base, err)) < 0)
        goto out;
    r = chan_register(c, fd, size, &s->id, &lost, err);
    // A connection the daemon closed since the last use (it restarted) is
    // noticed only now: one new connection gets a fair chance.
    if (r == MLXD_EUNAVAILABLE && lost && (r = chan_connect(c, err)) == 0)
        r = chan_register(c, fd, size, &s->id, &lost, err);
    if (r < 0)
        goto out;
    s->gen = c->gen;
    pthread_mutex_lock(&shm_lock);
    bool inserted = table_insert(s);
    pthread_mutex_unlock(&shm_lock);
    if (!inserted) {
        struct wire_shm_msg m = { .magic = WIRE_SHM_MAGIC, .type = WIRE_SHM_RELEASE, .segment = s->id };
        chan_send(c, &m, NULL, 0, NULL, err);
        r = lib_errorf(err, MLXD_ENOMEM, "out of memory");
    }
out:
    pthread_mutex_unlock(&c->lock);
    if (fd >= 0)
        close(fd);  // the mappings, ours and the daemon's, keep the memory
    if (r < 0) {
        if (s->base)
            munmap(s->base, size);
        free(s);
        return r;
    }
    *ret_seg = s;
    return 0;
}

// Releases s with the daemon (if the connection it came on still stands),
// unmaps and frees it. s is out of the table already.
static void seg_destroy(struct shm_seg *s) {
    struct chan *c = s->chan;
    char err[LIB_ERR_MAX];
    pthread_mutex_lock(&c->lock);
    // Under c->lock the gen cannot change: a matching one means the daemon
    // still knows the id as this segment.
    if (s->gen == c->gen && c->fd >= 0) {
        struct wire_shm_msg m = { .magic = WIRE_SHM_MAGIC, .type = WIRE_SHM_RELEASE, .segment = s->id };
        chan_send(c, &m, NULL, 0, NULL, err);
    }
    pthread_mutex_unlock(&c->lock);
    munmap(s->base, s->size);
    free(s);
}

void shm_seg_free(struct shm_seg *s) {
    if (!s)
        return;
    pthread_mutex_lock(&shm_lock);
    table_remove(s);
    pthread_mutex_unlock(&shm_lock);
    seg_destroy(s);
}

bool shm_free_base(void *p) {
    struct shm_seg *s = NULL;
    pthread_mutex_lock(&shm_lock);
    ssize_t i = table_find(p);
    if (i >= 0 && segs[i]->base == p && !segs[i]->staging) {
        s = segs[i];
        table_remove(s);
    }
    pthread_mutex_unlock(&shm_lock);
    if (!s)
        return false;
    seg_destroy(s);
    return true;
}

void *shm_seg_base(const struct shm_seg *s) {
    return s->base;
}

size_t shm_seg_size(const struct shm_seg *s) {
    return s->size;
}

bool shm_seg_ref(const struct shm_seg *s, size_t offset, struct shm_ref *ret) {
    pthread_mutex_lock(&shm_lock);
    bool ok = s->gen == s->chan->gen && offset <= s->size;
    pthread_mutex_unlock(&shm_lock);
    if (ok)
        *ret = (struct shm_ref) { s->id, offset };
    return ok;
}

bool shm_lookup(const char *endpoint, const void *p, size_t nbytes, struct shm_ref *ret) {
    bool found = false;
    if (!p || nbytes == 0)
        return false;
    pthread_mutex_lock(&shm_lock);
    ssize_t i = table_find(p);
    if (i >= 0) {
        const struct shm_seg *s = segs[i];
        size_t off = (size_t) ((uintptr_t) p - (uintptr_t) s->base);
        if (off < s->size && nbytes <= s->size - off && s->gen == s->chan->gen &&
            strcmp(s->chan->endpoint, endpoint) == 0) {
            *ret = (struct shm_ref) { s->id, off };
            found = true;
        }
    }
    pthread_mutex_unlock(&shm_lock);
    return found;
}

void shm_refresh(const char *endpoint) {
    struct chan *c;
    pthread_mutex_lock(&shm_lock);
    for (c = chans; c; c = c->next)
        if (strcmp(c->endpoint, endpoint) == 0)
            break;
    pthread_mutex_unlock(&shm_lock);
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    // The daemon only ever answers, and answers are read under c->lock: a
    // connection with anything to read has been closed.
    struct pollfd p = { .fd = c->fd, .events = POLLIN | POLLRDHUP };
    if (c->fd >= 0 && poll(&p, 1, 0) != 0)
        chan_break(c);
    pthread_mutex_unlock(&c->lock);
}

/* ---- rings ---- */

int shm_ring_new(const char *endpoint, size_t size, uint64_t group, int rank, void (*init)(void *base, size_t size),
                 void **ret_base, int *ret_bell, char *err) {
    struct chan *c = chan_get(endpoint);
    struct wire_shm_msg m = { .magic = WIRE_SHM_MAGIC, .type = WIRE_SHM_RING, .segment = (uint32_t) rank,
                              .size = group };
    struct wire_shm_msg rep;
    int fds[2] = { -1, -1 }, bell[2] = { -1, -1 }, r;
    void *base = NULL;
    bool lost;

    if (!c)
        return lib_errorf(err, MLXD_ENOMEM, "out of memory");
    pthread_mutex_lock(&c->lock);
    if ((r = chan_connect(c, err)) < 0 || (r = memfd_map("mlxring", size, &fds[0], &base, err)) < 0)
        goto out;
    if (platform_seqpacket_pair(bell) < 0) {
        r = lib_errorf(err, errno_code(errno), "cannot make a doorbell: %s", strerror(errno));
        goto out;
    }
    init(base, size);
    fds[1] = bell[1];
    if ((r = chan_send(c, &m, fds, 2, &lost, err)) < 0 || (r = chan_recv(c, &rep, err)) < 0)
        goto out;
    rep.message[sizeof rep.message - 1] = '\0';
    if (rep.code != 0)
        r = lib_errorf(err, rep.code < 0 ? rep.code : MLXD_EPROTO, "mlxd gives this connection no ring: %s",
                       rep.message[0] ? rep.message : mlxd_strerror(rep.code));
out:
    pthread_mutex_unlock(&c->lock);
    // The daemon keeps its own descriptors; the mapping keeps the memory.
    if (fds[0] >= 0)
        close(fds[0]);
    if (bell[1] >= 0)
        close(bell[1]);
    if (r < 0) {
        if (base)
            munmap(base, size);
        if (bell[0] >= 0)
            close(bell[0]);
        return r;
    }
    *ret_base = base;
    *ret_bell = bell[0];
    return 0;
}

/* ---- staging ---- */

size_t shm_threshold(void) {
    const char *s = getenv("MLXD_SHM_THRESHOLD");
    char *end;
    if (!s || *s < '0' || *s > '9')
        return LIB_SHM_THRESHOLD_DEFAULT;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end != '\0' || v > SIZE_MAX)
        return LIB_SHM_THRESHOLD_DEFAULT;
    return (size_t) v;
}

void *shm_staging_reserve(struct staging *st, const char *endpoint, size_t nbytes) {
    struct shm_ref ref;
    char err[LIB_ERR_MAX];
    if (st->seg && shm_seg_size(st->seg) >= nbytes && shm_seg_ref(st->seg, 0, &ref))
        return shm_seg_base(st->seg);
    uint64_t now = wire_now_us();
    if (nbytes >= st->refused && now < st->retry_us)
        return NULL;
    // The old one goes first, so that the new one fits the daemon's cap.
    shm_seg_free(st->seg);
    st->seg = NULL;
    if (shm_seg_new(endpoint, nbytes, true, &st->seg, err) < 0) {
        // Over the cap, or no side channel: inline for a while, then ask
        // again (the caller may have freed memory, the daemon may be back).
        st->seg = NULL;
        st->refused = nbytes;
        st->retry_us = now + (uint64_t) LIB_SHM_RETRY_MS * 1000u;
        return NULL;
    }
    st->refused = 0;
    st->retry_us = 0;
    return shm_seg_base(st->seg);
}

void shm_staging_free(struct staging *st) {
    shm_seg_free(st->seg);
    *st = (struct staging) { 0 };
}
