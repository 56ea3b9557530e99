/* hardraw: speaks the wire protocol and the shared-memory side channel
 * itself, for the hardening tests (hardening.sh): what libmlxd never does
 * (flood the daemon and never read its replies, connect and then die before
 * Hello, name another process's memory) and what another user may try.
 *
 *   hardraw ENDPOINT MODE [ARGS]
 *
 * Modes:
 *   flood SECONDS READYFILE ping|status  sends requests as fast as the socket
 *                          takes them and never reads a reply; READYFILE after
 *                          a second and 20000 requests; stops after SECONDS or
 *                          at SIGTERM
 *   connect_hold READYFILE connects (a Ping answered) and registers a segment
 *                          on the side channel, never says Hello, then waits
 *                          to be killed
 *   denied                 as a user the daemon does not serve: a Ping and a
 *                          Hello get MLXD_EDENIED naming the uid, the side
 *                          channel registers nothing
 *   shm_hold IDFILE        registers a segment and writes its id to IDFILE
 *                          (then waits to be killed)
 *   foreign ID             joins a job of one: requests naming segment ID as
 *                          input or output get MLXD_EINVAL, its own segment
 *                          works
 *
 * Prints one line per case ("ok ..." or "FAIL ...") and exits 0 when every
 * case held. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <zmq.h>

#include "mlxd.pb-c.h"
#include "wire.h"

#define REPLY_TIMEOUT_MS 5000
#define SEG_SIZE 65536u
#define N 16                            // float32 elements per tensor

static const char *endpoint;
static int failures;
static volatile sig_atomic_t stop;

static void fail(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(const char *name, const char *fmt, ...) {
    va_list ap;
    printf("FAIL hardraw %s: ", name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    failures++;
}

static void ok(const char *name, const char *detail) {
    printf("ok   hardraw %s: %s\n", name, detail);
    fflush(stdout);
}

static void die(const char *what) {
    printf("FAIL hardraw: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void touch(const char *path) {
    int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0)
        die(path);
    close(fd);
}

static void on_term(int sig) {
    (void) sig;
    stop = 1;
}

/* ---------- ZeroMQ ---------- */

static void *zctx;

static void *dealer(void) {
    int zero = 0;
    void *s = zmq_socket(zctx, ZMQ_DEALER);
    if (!s || zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero) < 0 || zmq_connect(s, endpoint) < 0) {
        printf("FAIL hardraw: cannot connect to %s: %s\n", endpoint, zmq_strerror(zmq_errno()));
        exit(1);
    }
    return s;
}

static void send_req(void *s, Mlxd__Request *req, int flags) {
    if (wire_send_pb(s, &req->base, flags) < 0) {
        printf("FAIL hardraw: cannot send a request: %s\n", zmq_strerror(zmq_errno()));
        exit(1);
    }
}

// The reply to the last request (frames after the protobuf dropped), or NULL
// after REPLY_TIMEOUT_MS.
static Mlxd__Reply *await(void *s) {
    zmq_pollitem_t it = { s, 0, ZMQ_POLLIN, 0 };
    if (zmq_poll(&it, 1, REPLY_TIMEOUT_MS) <= 0)
        return NULL;
    Mlxd__Reply *r = NULL;
    int part = 0, more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s, 0) < 0) {
            zmq_msg_close(&m);
            break;
        }
        if (part++ == 0)
            r = mlxd__reply__unpack(NULL, zmq_msg_size(&m), zmq_msg_data(&m));
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
    return r;
}

static void ping_req(Mlxd__Request *req, Mlxd__Ping *p, uint64_t id) {
    req->id = id;
    req->body_case = MLXD__REQUEST__BODY_PING;
    req->ping = p;
}

static void hello_req(Mlxd__Request *req, Mlxd__Hello *h, uint64_t id, const char *job) {
    h->version = MLXD_PROTOCOL_VERSION;
    h->pid = (int32_t) getpid();
    h->job = (char *) job;
    h->rank = 0;
    h->size = 1;
    req->id = id;
    req->body_case = MLXD__REQUEST__BODY_HELLO;
    req->hello = h;
}

// The reply's code must be want and its message name word.
static void expect_reply(const char *name, Mlxd__Reply *r, int want, const char *word) {
    char detail[512];
    if (!r) {
        fail(name, "no reply within %d ms", REPLY_TIMEOUT_MS);
        return;
    }
    if (r->code != want)
        fail(name, "reply code %d (%s) \"%s\", expected %s", r->code, wire_error_name(r->code), r->message,
             wire_error_name(want));
    else if (word && !strcasestr(r->message ? r->message : "", word))
        fail(name, "%s as expected, but the message \"%s\" does not mention \"%s\"", wire_error_name(r->code),
             r->message, word);
    else {
        snprintf(detail, sizeof detail, "%s \"%s\"", wire_error_name(r->code), r->message ? r->message : "");
        ok(name, detail);
    }
    mlxd__reply__free_unpacked(r, NULL);
}

/* ---------- the side channel ---------- */

// Connects to the side channel; -1 with errno when that fails.
static int side_connect(void) {
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (wire_shm_path(endpoint, sa.sun_path, sizeof sa.sun_path) < 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int sealed_memfd(size_t size) {
    int fd = memfd_create("mlxd", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0 || ftruncate(fd, (off_t) size) < 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
        die("a sealed memfd");
    return fd;
}

// Registers fd: 1 and the reply in *ret, 0 when the daemon closed the
// connection, -1 when nothing came within the deadline or sending failed.
static int side_register(int sock, int fd, uint64_t size, struct wire_shm_msg *ret) {
    struct wire_shm_msg m = { .magic = WIRE_SHM_MAGIC, .type = WIRE_SHM_REGISTER, .size = size };
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = { &m, sizeof m };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
    memset(&u, 0, sizeof u);
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    if (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0)
        return errno == EPIPE || errno == ECONNRESET ? 0 : -1;
    struct pollfd p = { .fd = sock, .events = POLLIN };
    if (poll(&p, 1, REPLY_TIMEOUT_MS) <= 0)
        return -1;
    ssize_t n = recv(sock, ret, sizeof *ret, 0);
    if (n <= 0)
        return 0;
    if ((size_t) n != sizeof *ret || ret->magic != WIRE_SHM_MAGIC || ret->type != WIRE_SHM_REPLY) {
        printf("FAIL hardraw: a malformed reply of %zd bytes on the side channel\n", n);
        exit(1);
    }
    ret->message[sizeof ret->message - 1] = '\0';
    return 1;
}

// A registered segment of our own: its id, the socket (to keep it alive) and
// its memory.
static uint32_t own_segment(int *ret_sock, void **ret_mem) {
    struct wire_shm_msg r;
    int sock = side_connect();
    if (sock < 0)
        die("cannot connect to the side channel");
    int fd = sealed_memfd(SEG_SIZE);
    void *mem = mmap(NULL, SEG_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (mem == MAP_FAILED)
        die("mmap");
    int k = side_register(sock, fd, SEG_SIZE, &r);
    close(fd);
    if (k <= 0 || r.code != 0 || r.segment == 0) {
        printf("FAIL hardraw: registering a segment of our own: %s\n", k <= 0 ? "no answer" : r.message);
        exit(1);
    }
    *ret_sock = sock;
    if (ret_mem)
        *ret_mem = mem;
    return r.segment;
}

/* ---------- modes ---------- */

static int mode_flood(double seconds, const char *ready, bool status) {
    void *s = dealer();
    int timeo = 100;
    zmq_setsockopt(s, ZMQ_SNDTIMEO, &timeo, sizeof timeo);
    Mlxd__Ping p = MLXD__PING__INIT;
    Mlxd__StatusRequest st = MLXD__STATUS_REQUEST__INIT;
    Mlxd__Request req = MLXD__REQUEST__INIT;
    uint8_t buf[256];
    unsigned long long sent = 0, blocked = 0;
    uint64_t start = wire_now_us(), end = start + (uint64_t) (seconds * 1e6);
    bool ready_done = false;
    signal(SIGTERM, on_term);
    while (!stop && wire_now_us() < end) {
        if (status) {
            req.body_case = MLXD__REQUEST__BODY_STATUS;
            req.status = &st;
        } else {
            ping_req(&req, &p, 0);
        }
        req.id = sent + 1;
        size_t n = mlxd__request__pack(&req, buf);
        // Blocks (up to timeo) once the daemon reads slower than we send.
        if (zmq_send(s, buf, n, 0) < 0) {
            blocked++;
            continue;
        }
        // In full swing: a second of flooding, the daemon's queue towards
        // us long full.
        if (++sent >= 20000 && !ready_done && wire_now_us() - start >= 1000000) {
            touch(ready);
            ready_done = true;
        }
    }
    printf("hardraw flood: sent %llu %s requests in %.1f s (a send blocked %llu times), read no reply\n", sent,
           status ? "status" : "ping", (double) (wire_now_us() - start) / 1e6, blocked);
    zmq_close(s);
    return 0;
}

static int mode_connect_hold(const char *ready) {
    void *s = dealer();
    Mlxd__Ping p = MLXD__PING__INIT;
    Mlxd__Request req = MLXD__REQUEST__INIT;
    ping_req(&req, &p, 7);
    send_req(s, &req, 0);
    expect_reply("a Ping before dying", await(s), 0, NULL);
    int sock;
    own_segment(&sock, NULL);
    ok("a segment registered before dying", "held");
    touch(ready);
    for (;;)
        pause();
    return 0;                           // not reached: the test kills this process
}

static int mode_denied(void) {
    char uid[32];
    snprintf(uid, sizeof uid, "uid %u", (unsigned) getuid());
    void *s = dealer();
    Mlxd__Ping p = MLXD__PING__INIT;
    Mlxd__Hello h = MLXD__HELLO__INIT;
    Mlxd__Request req = MLXD__REQUEST__INIT;
    ping_req(&req, &p, 11);
    send_req(s, &req, 0);
    expect_reply("a Ping from another user", await(s), MLXD_EDENIED, uid);
    char job[64];
    snprintf(job, sizeof job, "denied-%d", (int) getpid());
    hello_req(&req, &h, 12, job);
    send_req(s, &req, 0);
    expect_reply("a Hello from another user", await(s), MLXD_EDENIED, uid);
    zmq_close(s);

    // The side channel: the daemon closes the connection without mapping
    // anything (or answers with an error).
    struct wire_shm_msg r;
    int sock = side_connect();
    if (sock < 0) {
        char d[128];
        snprintf(d, sizeof d, "cannot even connect: %s", strerror(errno));
        ok("the side channel refuses another user", d);
        return failures ? 1 : 0;
    }
    int fd = sealed_memfd(SEG_SIZE);
    int k = side_register(sock, fd, SEG_SIZE, &r);
    if (k < 0)
        fail("the side channel refuses another user", "neither an answer nor a close within %d ms", REPLY_TIMEOUT_MS);
    else if (k > 0 && r.code == 0)
        fail("the side channel refuses another user", "segment %u registered", r.segment);
    else
        ok("the side channel refuses another user", k == 0 ? "connection closed" : r.message);
    close(fd);
    close(sock);
    return failures ? 1 : 0;
}

static int mode_shm_hold(const char *idfile) {
    int sock;
    uint32_t id = own_segment(&sock, NULL);
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s.tmp", idfile);
    FILE *f = fopen(tmp, "we");
    if (!f || fprintf(f, "%u\n", id) < 0 || fclose(f) != 0 || rename(tmp, idfile) < 0)
        die(idfile);
    printf("hardraw shm_hold: pid %d holds segment %u\n", (int) getpid(), id);
    fflush(stdout);
    for (;;)
        pause();
    return 0;                           // not reached: the test kills this process
}

// An all_sum of float32 [N] with its input in in_seg (0: inline) and its
// output in out_seg (0: in the reply).
static Mlxd__Reply *all_sum(void *s, uint64_t id, uint32_t in_seg, uint32_t out_seg) {
    int64_t shape[1] = { N };
    float data[N] = { 0 };
    Mlxd__Tensor in = MLXD__TENSOR__INIT, out = MLXD__TENSOR__INIT;
    Mlxd__OpRequest o = MLXD__OP_REQUEST__INIT;
    Mlxd__Request req = MLXD__REQUEST__INIT;
    in.dtype = out.dtype = MLXD_FLOAT32;
    in.n_shape = out.n_shape = 1;
    in.shape = out.shape = shape;
    in.segment = in_seg;
    in.frame = in_seg ? 0 : 1;
    out.segment = out_seg;
    o.op = MLXD__OP_TYPE__OP_ALL_SUM;
    o.input = &in;
    o.output = out_seg ? &out : NULL;
    req.id = id;
    req.body_case = MLXD__REQUEST__BODY_OP;
    req.op = &o;
    send_req(s, &req, in_seg ? 0 : ZMQ_SNDMORE);
    if (!in_seg && zmq_send(s, data, sizeof data, 0) < 0)
        die("zmq_send");
    return await(s);
}

static int mode_foreign(uint32_t foreign) {
    int sock;
    uint32_t mine = own_segment(&sock, NULL);
    void *s = dealer();
    Mlxd__Hello h = MLXD__HELLO__INIT;
    Mlxd__Request req = MLXD__REQUEST__INIT;
    char job[64];
    snprintf(job, sizeof job, "foreign-%d", (int) getpid());
    hello_req(&req, &h, 1, job);
    send_req(s, &req, 0);
    expect_reply("Hello, a job of one", await(s), 0, NULL);
    expect_reply("all_sum in a segment of our own (control)", all_sum(s, 2, mine, mine), 0, NULL);
    expect_reply("input in another process's segment", all_sum(s, 3, foreign, 0), MLXD_EINVAL, "segment");
    expect_reply("output in another process's segment", all_sum(s, 4, 0, foreign), MLXD_EINVAL, "segment");
    expect_reply("all_sum in a segment of our own after the refusals", all_sum(s, 5, mine, mine), 0, NULL);
    zmq_close(s);
    close(sock);
    return failures ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: hardraw ENDPOINT MODE [ARGS] (see the top of hardraw.c)\n");
        return 2;
    }
    endpoint = argv[1];
    const char *m = argv[2];
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    zctx = zmq_ctx_new();
    int rc = 2;
    if (strcmp(m, "flood") == 0 && argc == 6)
        rc = mode_flood(atof(argv[3]), argv[4], strcmp(argv[5], "status") == 0);
    else if (strcmp(m, "connect_hold") == 0 && argc == 4)
        rc = mode_connect_hold(argv[3]);
    else if (strcmp(m, "denied") == 0 && argc == 3)
        rc = mode_denied();
    else if (strcmp(m, "shm_hold") == 0 && argc == 4)
        rc = mode_shm_hold(argv[3]);
    else if (strcmp(m, "foreign") == 0 && argc == 4)
        rc = mode_foreign((uint32_t) strtoul(argv[3], NULL, 10));
    else
        fprintf(stderr, "usage: hardraw ENDPOINT MODE [ARGS] (see the top of hardraw.c)\n");
    zmq_ctx_set(zctx, ZMQ_BLOCKY, 0);
    zmq_ctx_term(zctx);
    return rc;
}
