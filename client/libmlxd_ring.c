/* libmlxd's side of a connection's request/reply ring (proto/ring.h,
 * proto/PROTOCOL.md "The ring"): the memory and doorbell a connection sets
 * up with its daemon after its Hello, writing requests into it and taking
 * replies out. The connection module (libmlxd_conn.c) decides what goes
 * which way; this file only moves records. Runs under the member's lock. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "libmlxd_impl.h"
#include "ring.h"

struct lib_ring {
    uint8_t *base;
    size_t len;
    struct wire_ring_hdr *hdr;
    struct ring_end req, rep;
    int bell;                           // our end of the doorbell
    bool usable;                        // false once the daemon closed it
};

static void init_header(void *base, size_t size) {
    struct wire_ring_hdr *h = base;
    (void) size;
    h->magic = WIRE_RING_MAGIC;
    h->version = WIRE_RING_VERSION;
    h->area = WIRE_RING_AREA;
}

// $MLXD_RING: "0" turns rings off (everything through ZeroMQ).
static bool ring_enabled(void) {
    const char *s = getenv("MLXD_RING");
    return !s || strcmp(s, "0") != 0;
}

unsigned lib_ring_spin_us(void) {
    static int spin = -1;
    if (spin < 0) {
        const char *s = getenv("MLXD_RING_SPIN_US");
        char *end;
        long v = s ? strtol(s, &end, 10) : -1;
        if (s && *s && *end == '\0' && v >= 0 && v <= 100000)
            spin = (int) v;
        else
            // Spinning only pays where the daemon and the other ranks have
            // cores of their own; on fewer it takes theirs.
            spin = sysconf(_SC_NPROCESSORS_ONLN) >= 4 ? LIB_RING_SPIN_US : 0;
    }
    return (unsigned) spin;
}

int lib_ring_open(const char *endpoint, uint64_t group, int rank, struct lib_ring **ret, char *err) {
    if (!ring_enabled())
        return lib_errorf(err, MLXD_EUNAVAILABLE, "rings are off ($MLXD_RING=0)");
    struct lib_ring *r = calloc(1, sizeof *r);
    if (!r)
        return lib_errorf(err, MLXD_ENOMEM, "out of memory");
    r->len = WIRE_RING_HDR + 2u * WIRE_RING_AREA;
    void *base;
    int e = shm_ring_new(endpoint, r->len, group, rank, init_header, &base, &r->bell, err);
    if (e < 0) {
        free(r);
        return e;
    }
    r->base = base;
    r->hdr = base;
    r->usable = true;
    ring_ends(r->base, WIRE_RING_AREA, true, &r->req, &r->rep);
    *ret = r;
    return 0;
}

void lib_ring_free(struct lib_ring *r) {
    if (!r)
        return;
    close(r->bell);
    munmap(r->base, r->len);
    free(r);
}

bool lib_ring_usable(const struct lib_ring *r) {
    return r && r->usable && !atomic_load_explicit(&r->hdr->closed, memory_order_relaxed);
}

bool lib_ring_session_closed(const struct lib_ring *r) {
    return atomic_load_explicit(&r->hdr->closed, memory_order_relaxed) == WIRE_RING_CLOSED_SESSION;
}

int lib_ring_fd(const struct lib_ring *r) {
    return r->usable ? r->bell : -1;
}

int lib_ring_send(struct lib_ring *r, const void *pb, size_t pb_len, const void *data, size_t data_len) {
    int e = ring_put(&r->req, pb, pb_len, data, data_len);
    if (e < 0)
        return e;
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&r->hdr->daemon_sleeping, memory_order_relaxed))
        (void) send(r->bell, "", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    return 0;
}

bool lib_ring_drained(const struct lib_ring *r) {
    return ring_drained(&r->req);
}

int lib_ring_take(struct lib_ring *r, struct reply *ret, char *err) {
    size_t pb_len, data_len;
    bool frame;
    int e = ring_peek(&r->rep, WIRE_MAX_REPLY_FRAME, r->rep.size, &pb_len, &data_len, &frame);
    if (e <= 0) {
        if (e < 0)
            r->usable = false;
        return e < 0 ? lib_errorf(err, MLXD_EPROTO, "mlxd wrote an impossible record into the reply ring") : 0;
    }
    uint8_t small[512];
    uint8_t *pb = pb_len <= sizeof small ? small : malloc(pb_len);
    struct reply rep = { 0 };
    if (!pb || (frame && zmq_msg_init_size(&rep.data, data_len) < 0)) {
        if (pb != small)
            free(pb);
        ring_read(&r->rep, NULL, NULL);
        return lib_errorf(err, MLXD_ENOMEM, "out of memory for a reply");
    }
    rep.has_data = frame;
    ring_read(&r->rep, pb, rep.has_data ? zmq_msg_data(&rep.data) : NULL);
    rep.pb = mlxd__reply__unpack(NULL, pb_len, pb);
    if (pb != small)
        free(pb);
    if (!rep.pb) {
        reply_done(&rep);
        r->usable = false;
        return lib_errorf(err, MLXD_EPROTO, "mlxd wrote a reply that does not decode into the ring");
    }
    *ret = rep;
    return 1;
}

bool lib_ring_replied(const struct lib_ring *r) {
    return ring_pending(&r->rep);
}

bool lib_ring_sleep(struct lib_ring *r) {
    atomic_store(&r->hdr->client_sleeping, 1);
    atomic_thread_fence(memory_order_seq_cst);
    if (!ring_pending(&r->rep))
        return true;
    atomic_store_explicit(&r->hdr->client_sleeping, 0, memory_order_relaxed);
    return false;
}

void lib_ring_wake(struct lib_ring *r) {
    char buf[64];
    ssize_t n;
    int saved = errno;                  // the caller still reads its poll's errno
    atomic_store_explicit(&r->hdr->client_sleeping, 0, memory_order_relaxed);
    while ((n = recv(r->bell, buf, sizeof buf, MSG_DONTWAIT)) > 0)
        ;
    errno = saved;
    // The daemon closed its end: it reads nothing more here (what it wrote
    // stays readable).
    if (n == 0)
        r->usable = false;
}

bool lib_ring_spin(const struct lib_ring *r, uint64_t until_us) {
    while (wire_now_us() < until_us) {
        if (ring_pending(&r->rep))
            return true;
#if defined(__x86_64__) || defined(__i386__)
        for (int i = 0; i < 64; i++)
            __builtin_ia32_pause();
#endif
    }
    return ring_pending(&r->rep);
}
