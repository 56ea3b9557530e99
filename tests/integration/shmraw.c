/* shmraw: speaks the shared-memory side channel and the wire protocol itself,
 * to hand the daemon what libmlxd never would: memory that is not a sealed
 * memfd, sizes that lie, requests naming another process's segment, a
 * released one, or ranges past a segment's end. Each must be refused with
 * the documented code, and the daemon must go on serving.
 *
 *   shmraw ENDPOINT register|bounds|foreign
 *
 * register: what is not a sealed memfd of the size it claims, and garbage;
 * bounds: ranges past a segment's end; foreign: another process's segment,
 * one nobody registered, a released one, one of a closed side channel. Every
 * selection first shows that a valid segment works (so that refusals mean
 * something) and last that the daemon still serves. Prints one line per case
 * and exits 0 when every case held. */
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
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "mlxd.pb-c.h"
#include "wire.h"

#define REPLY_TIMEOUT_MS 5000
#define SEG_SIZE 8192u
#define N 16                    // float32 elements per tensor

static const char *endpoint;
static int failures, cases;

static void fail(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(const char *name, const char *fmt, ...) {
    va_list ap;
    printf("FAIL shmraw %s: ", name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    failures++;
}

static void ok(const char *name, const char *detail) {
    printf("ok   shmraw %s: %s\n", name, detail);
    fflush(stdout);
}

static void die(const char *what) {
    printf("FAIL shmraw: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* ---------- the side channel ---------- */

static int side_connect(void) {
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (wire_shm_path(endpoint, sa.sun_path, sizeof sa.sun_path) < 0) {
        printf("FAIL shmraw: %s has no shared-memory path\n", endpoint);
        exit(1);
    }
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
        die("cannot connect to the shared-memory socket");
    return fd;
}

// Sends one message with nfds descriptors attached.
static void side_send(int sock, const void *msg, size_t len, const int *fds, int nfds) {
    union {
        char buf[CMSG_SPACE(4 * sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = { (void *) msg, len };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
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
    if (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0)
        die("sendmsg on the shared-memory socket");
}

// Waits for one message: 1 and the reply, 0 when the daemon closed the
// connection, -1 when nothing came within the deadline.
static int side_recv(int sock, struct wire_shm_msg *ret) {
    struct pollfd p = { .fd = sock, .events = POLLIN };
    if (poll(&p, 1, REPLY_TIMEOUT_MS) <= 0)
        return -1;
    ssize_t n = recv(sock, ret, sizeof *ret, 0);
    if (n <= 0)
        return 0;
    if ((size_t) n != sizeof *ret || ret->magic != WIRE_SHM_MAGIC || ret->type != WIRE_SHM_REPLY) {
        printf("FAIL shmraw: a malformed reply of %zd bytes on the shared-memory socket\n", n);
        exit(1);
    }
    ret->message[sizeof ret->message - 1] = '\0';
    return 1;
}

// A memfd of size bytes, sealed as the protocol asks when seal is true.
static int memfd_of(size_t size, bool seal) {
    int fd = memfd_create("shmraw", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0 || ftruncate(fd, (off_t) size) < 0)
        die("memfd");
    if (seal && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
        die("sealing a memfd");
    return fd;
}

// Registers fd as size bytes; returns the reply's code and puts the id in
// *ret_id (0 if refused). The connection dropping or silence fail the run.
static int side_register(int sock, int fd, uint64_t size, uint32_t *ret_id, char *msg, size_t msglen) {
    struct wire_shm_msg m = { .magic = WIRE_SHM_MAGIC, .type = WIRE_SHM_REGISTER, .size = size }, r;
    side_send(sock, &m, sizeof m, &fd, fd >= 0 ? 1 : 0);
    int k = side_recv(sock, &r);
    if (k <= 0) {
        printf("FAIL shmraw: %s after a registration\n", k == 0 ? "the daemon closed the shared-memory socket"
                                                                : "no answer on the shared-memory socket");
        exit(1);
    }
    *ret_id = r.code == 0 ? r.segment : 0;
    if (msg)
        snprintf(msg, msglen, "%s", r.message);
    return r.code;
}

static void side_release(int sock, uint32_t id) {
    struct wire_shm_msg m = { .magic = WIRE_SHM_MAGIC, .type = WIRE_SHM_RELEASE, .segment = id };
    side_send(sock, &m, sizeof m, NULL, 0);
}

/* ---------- the ZeroMQ side ---------- */

struct conn {
    void *ctx, *s;
};

struct answer {
    Mlxd__Reply *reply;         // NULL: no reply within the deadline
    int nframes;
    float data[N];              // the first data frame, if N floats
};

static void answer_clear(struct answer *a) {
    if (a->reply)
        mlxd__reply__free_unpacked(a->reply, NULL);
    memset(a, 0, sizeof *a);
}

static void send_req(struct conn *c, Mlxd__Request *req) {
    if (wire_send_pb(c->s, &req->base, 0) < 0) {
        printf("FAIL shmraw: cannot send a request\n");
        exit(1);
    }
}

static void await(struct conn *c, struct answer *a) {
    memset(a, 0, sizeof *a);
    zmq_pollitem_t it = { c->s, 0, ZMQ_POLLIN, 0 };
    if (zmq_poll(&it, 1, REPLY_TIMEOUT_MS) <= 0)
        return;
    int part = 0, more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->s, 0) < 0) {
            zmq_msg_close(&m);
            break;
        }
        if (part == 0)
            a->reply = mlxd__reply__unpack(NULL, zmq_msg_size(&m), zmq_msg_data(&m));
        else if (part == 1 && zmq_msg_size(&m) == sizeof a->data)
            memcpy(a->data, zmq_msg_data(&m), sizeof a->data);
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
        part++;
    }
    a->nframes = part - 1;
}

// A connection that joined a job of its own (size 1: the reply comes at once).
static struct conn joined(void) {
    struct conn c = { zmq_ctx_new(), NULL };
    int zero = 0;
    char job[64];
    c.s = c.ctx ? zmq_socket(c.ctx, ZMQ_DEALER) : NULL;
    if (!c.s || zmq_setsockopt(c.s, ZMQ_LINGER, &zero, sizeof zero) < 0 || zmq_connect(c.s, endpoint) < 0) {
        printf("FAIL shmraw: cannot connect to %s\n", endpoint);
        exit(1);
    }
    snprintf(job, sizeof job, "shmraw-%d", (int) getpid());
    Mlxd__Hello h = MLXD__HELLO__INIT;
    Mlxd__Request req = MLXD__REQUEST__INIT;
    h.version = MLXD_PROTOCOL_VERSION;
    h.pid = (int32_t) getpid();
    h.job = job;
    h.rank = 0;
    h.size = 1;
    req.id = 1;
    req.body_case = MLXD__REQUEST__BODY_HELLO;
    req.hello = &h;
    send_req(&c, &req);
    struct answer a;
    await(&c, &a);
    if (!a.reply || a.reply->code != 0) {
        printf("FAIL shmraw: Hello: %s\n", a.reply ? a.reply->message : "no reply");
        exit(1);
    }
    answer_clear(&a);
    return c;
}

// An all_sum of float32 [N]: the input in segment in_seg at in_off (0: inline
// in frame 1, from inline_data), the output in out_seg at out_off (0: none).
static void all_sum(struct conn *c, uint64_t id, uint32_t in_seg, uint64_t in_off, uint32_t out_seg,
                    uint64_t out_off, const float *inline_data, struct answer *a) {
    int64_t shape[1] = { N };
    Mlxd__Tensor in = MLXD__TENSOR__INIT, out = MLXD__TENSOR__INIT;
    Mlxd__OpRequest o = MLXD__OP_REQUEST__INIT;
    Mlxd__Request req = MLXD__REQUEST__INIT;
    in.dtype = out.dtype = MLXD_FLOAT32;
    in.n_shape = out.n_shape = 1;
    in.shape = out.shape = shape;
    in.segment = in_seg;
    in.offset = in_off;
    in.frame = in_seg ? 0 : 1;
    out.segment = out_seg;
    out.offset = out_off;
    o.op = MLXD__OP_TYPE__OP_ALL_SUM;
    o.input = &in;
    o.output = out_seg ? &out : NULL;
    req.id = id;
    req.body_case = MLXD__REQUEST__BODY_OP;
    req.op = &o;
    if (wire_send_pb(c->s, &req.base, in_seg ? 0 : ZMQ_SNDMORE) < 0 ||
        (!in_seg && zmq_send(c->s, inline_data, N * sizeof(float), 0) < 0)) {
        printf("FAIL shmraw: cannot send an all_sum\n");
        exit(1);
    }
    await(c, a);
}

// The op must be refused with `code`; the message is shown.
static void expect_refused(const char *name, const struct answer *a, uint64_t id, int code) {
    cases++;
    if (!a->reply)
        fail(name, "no reply within %d ms", REPLY_TIMEOUT_MS);
    else if (a->reply->id != id)
        fail(name, "reply id %llu, expected %llu", (unsigned long long) a->reply->id, (unsigned long long) id);
    else if (a->reply->code != code)
        fail(name, "reply code %d (%s) \"%s\", expected %s", a->reply->code, wire_error_name(a->reply->code),
             a->reply->message, wire_error_name(code));
    else
        ok(name, a->reply->message);
}

/* ---------- the other process ---------- */

// A child that registers a segment of its own, says its id on `out`, and
// holds it until `in` closes. Runs before this process touches ZeroMQ.
static pid_t foreign_process(uint32_t *ret_id, int *ret_hold) {
    int idp[2], holdp[2];
    if (pipe(idp) < 0 || pipe(holdp) < 0)
        die("pipe");
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        close(idp[0]);
        close(holdp[1]);
        alarm(60);  // never outlive the test
        int sock = side_connect(), fd = memfd_of(SEG_SIZE, true);
        uint32_t id = 0;
        side_register(sock, fd, SEG_SIZE, &id, NULL, 0);
        if (write(idp[1], &id, sizeof id) != (ssize_t) sizeof id)
            _exit(1);
        char ch;
        while (read(holdp[0], &ch, 1) > 0) {
        }
        _exit(0);
    }
    close(idp[1]);
    close(holdp[0]);
    if (read(idp[0], ret_id, sizeof *ret_id) != (ssize_t) sizeof *ret_id || *ret_id == 0) {
        printf("FAIL shmraw: the other process could not register a segment\n");
        exit(1);
    }
    close(idp[0]);
    *ret_hold = holdp[1];
    return pid;
}

/* ---------- cases ---------- */

// A registration the daemon must refuse: fd (closed here) claiming size bytes.
static void refuse_registration(int sock, const char *name, int fd, uint64_t size) {
    char msg[256];
    uint32_t id;
    cases++;
    int code = side_register(sock, fd, size, &id, msg, sizeof msg);
    if (fd >= 0)
        close(fd);
    if (code >= 0)
        fail(name, "registered as segment %u", id);
    else
        ok(name, msg);
}

// One message that is not a valid one: the daemon answers with an error or
// closes that connection, nothing more.
static void refuse_message(const char *name, const void *m, size_t len) {
    int sock = side_connect();
    struct wire_shm_msg r;
    cases++;
    side_send(sock, m, len, NULL, 0);
    int k = side_recv(sock, &r);
    if (k < 0)
        fail(name, "neither an answer nor a close within %d ms", REPLY_TIMEOUT_MS);
    else if (k > 0 && r.code >= 0)
        fail(name, "answered with code %d", r.code);
    else
        ok(name, k == 0 ? "connection closed" : r.message);
    close(sock);
}

static void cases_register(int sock) {
    int pfd[2];
    refuse_registration(sock, "unsealed memfd refused", memfd_of(SEG_SIZE, false), SEG_SIZE);
    if (pipe(pfd) < 0)
        die("pipe");
    close(pfd[1]);
    refuse_registration(sock, "pipe instead of a memfd refused", pfd[0], SEG_SIZE);
    refuse_registration(sock, "size beyond the memfd refused", memfd_of(SEG_SIZE, true), 2 * SEG_SIZE);
    refuse_registration(sock, "size 0 refused", memfd_of(SEG_SIZE, true), 0);
    refuse_registration(sock, "registration without a descriptor refused", -1, SEG_SIZE);
    refuse_message("garbage on the side channel", "junk", 4);
    struct wire_shm_msg m = { .magic = WIRE_SHM_MAGIC, .type = 77 };
    refuse_message("unknown message type on the side channel", &m, sizeof m);
}

static void cases_bounds(struct conn *c, uint32_t mine) {
    const uint64_t nb = N * sizeof(float);
    struct answer a;
    all_sum(c, 20, mine, SEG_SIZE - nb + 4, 0, 0, NULL, &a);
    expect_refused("input past the end of the segment", &a, 20, MLXD_EINVAL);
    answer_clear(&a);
    all_sum(c, 21, mine, UINT64_MAX - 8, 0, 0, NULL, &a);
    expect_refused("input offset that wraps around", &a, 21, MLXD_EINVAL);
    answer_clear(&a);
    all_sum(c, 22, mine, 0, mine, SEG_SIZE, NULL, &a);
    expect_refused("output starting at the end of the segment", &a, 22, MLXD_EINVAL);
    answer_clear(&a);
    all_sum(c, 23, mine, 0, mine, SEG_SIZE - nb + 1, NULL, &a);
    expect_refused("output one byte past the end of the segment", &a, 23, MLXD_EINVAL);
    answer_clear(&a);
    // The last bytes exactly: allowed.
    all_sum(c, 24, mine, 0, mine, SEG_SIZE - nb, NULL, &a);
    cases++;
    if (!a.reply || a.reply->code != 0)
        fail("output ending at the end of the segment", "%s \"%s\"",
             a.reply ? wire_error_name(a.reply->code) : "no reply", a.reply ? a.reply->message : "");
    else
        ok("output ending at the end of the segment", "allowed");
    answer_clear(&a);
}

// Closes sock.
static void cases_foreign(struct conn *c, int sock, uint32_t mine, uint32_t foreign) {
    struct answer a;
    all_sum(c, 40, foreign, 0, 0, 0, NULL, &a);
    expect_refused("input in another process's segment", &a, 40, MLXD_EINVAL);
    answer_clear(&a);
    all_sum(c, 41, mine, 0, foreign, 0, NULL, &a);
    expect_refused("output in another process's segment", &a, 41, MLXD_EINVAL);
    answer_clear(&a);
    all_sum(c, 42, 0x7ffffff0u, 0, 0, 0, NULL, &a);
    expect_refused("a segment nobody registered", &a, 42, MLXD_EINVAL);
    answer_clear(&a);

    // A released segment is gone for requests at once. The daemon reads the
    // side channel and the ZeroMQ socket in one loop in no set order: the
    // answer to the next registration shows that it has read the release.
    side_release(sock, mine);
    uint32_t second = 0;
    int fd = memfd_of(SEG_SIZE, true);
    side_register(sock, fd, SEG_SIZE, &second, NULL, 0);
    close(fd);
    all_sum(c, 43, mine, 0, 0, 0, NULL, &a);
    expect_refused("a released segment", &a, 43, MLXD_EINVAL);
    answer_clear(&a);

    // Closing the side channel drops every segment that came through it; the
    // daemon notices the close in its own time: ask until it has, with a
    // deadline.
    close(sock);
    bool refused = false;
    cases++;
    for (long end = (long) (wire_now_us() / 1000) + REPLY_TIMEOUT_MS; !refused;) {
        all_sum(c, 44, second, 0, 0, 0, NULL, &a);
        refused = a.reply && a.reply->code == MLXD_EINVAL;
        bool still = a.reply && a.reply->code == 0;
        answer_clear(&a);
        if (refused)
            ok("a segment of a closed side channel", "refused");
        else if (!still)
            fail("a segment of a closed side channel", "neither refused nor served");
        else if ((long) (wire_now_us() / 1000) >= end)
            fail("a segment of a closed side channel", "still usable %d ms after the close", REPLY_TIMEOUT_MS);
        else {
            usleep(10000);
            continue;
        }
        break;
    }
}

/* ---------- main ---------- */

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[2], "register") && strcmp(argv[2], "bounds") && strcmp(argv[2], "foreign"))) {
        fprintf(stderr, "usage: shmraw ENDPOINT register|bounds|foreign\n");
        return 2;
    }
    endpoint = argv[1];
    const char *sel = argv[2];
    signal(SIGPIPE, SIG_IGN);

    int hold = -1;
    uint32_t foreign = 0;
    pid_t child = -1;
    if (strcmp(sel, "foreign") == 0)
        child = foreign_process(&foreign, &hold);  // before ZeroMQ starts threads

    int sock = side_connect();
    char msg[256];
    int code;
    if (strcmp(sel, "register") == 0)
        cases_register(sock);

    // A segment of our own, and that it works: refusals mean something only
    // next to that.
    int fd = memfd_of(SEG_SIZE, true);
    uint8_t *mem = mmap(NULL, SEG_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (mem == MAP_FAILED)
        die("mmap");
    uint32_t mine = 0;
    cases++;
    code = side_register(sock, fd, SEG_SIZE, &mine, msg, sizeof msg);
    close(fd);
    if (code != 0 || mine == 0) {
        fail("sealed memfd registered", "code %d \"%s\"", code, msg);
        return 1;
    }
    ok("sealed memfd registered", "a segment id");
    if (child > 0 && mine == foreign)
        fail("segment ids", "this process and another got the same id %u: the foreign case cannot tell", mine);

    struct conn c = joined();
    struct answer a;
    float *x = (float *) (void *) mem, *out = (float *) (void *) (mem + SEG_SIZE / 2);
    for (int i = 0; i < N; i++) {
        x[i] = (float) (i + 1);
        out[i] = -1;
    }
    cases++;
    all_sum(&c, 10, mine, 0, mine, SEG_SIZE / 2, NULL, &a);
    if (!a.reply || a.reply->code != 0)
        fail("all_sum in shared memory", "%s \"%s\"", a.reply ? wire_error_name(a.reply->code) : "no reply",
             a.reply ? a.reply->message : "");
    else if (a.reply->body_case != MLXD__REPLY__BODY_OP || !a.reply->op->output ||
             a.reply->op->output->segment != mine || a.reply->op->output->offset != SEG_SIZE / 2 ||
             a.reply->op->output->frame != 0 || a.nframes != 0)
        fail("all_sum in shared memory", "the reply does not name the output's place (or carries %d frames)",
             a.nframes);
    else if (memcmp(x, out, N * sizeof(float)) != 0)
        fail("all_sum in shared memory", "the output in the segment is not the input (a job of one)");
    else
        ok("all_sum in shared memory", "result written in place");
    answer_clear(&a);

    // Inline in, shared out: the mix works too.
    float inl[N];
    for (int i = 0; i < N; i++) {
        inl[i] = (float) (100 + i);
        out[i] = -1;
    }
    cases++;
    all_sum(&c, 11, 0, 0, mine, SEG_SIZE / 2, inl, &a);
    if (!a.reply || a.reply->code != 0 || memcmp(inl, out, sizeof inl) != 0 || a.nframes != 0)
        fail("inline input, shared output", "%s \"%s\"", a.reply ? wire_error_name(a.reply->code) : "no reply",
             a.reply ? a.reply->message : "");
    else
        ok("inline input, shared output", "result written in place");
    answer_clear(&a);

    if (strcmp(sel, "bounds") == 0)
        cases_bounds(&c, mine);
    if (strcmp(sel, "foreign") == 0)
        cases_foreign(&c, sock, mine, foreign);
    else
        close(sock);

    // The daemon still serves: a Ping, and a fresh registration.
    cases++;
    Mlxd__Ping ping = MLXD__PING__INIT;
    Mlxd__Request req = MLXD__REQUEST__INIT;
    req.id = 99;
    req.body_case = MLXD__REQUEST__BODY_PING;
    req.ping = &ping;
    send_req(&c, &req);
    await(&c, &a);
    if (!a.reply || a.reply->code != 0)
        fail("daemon still serves", "no answer to a Ping");
    else
        ok("daemon still serves", "Ping answered");
    answer_clear(&a);
    uint32_t id;
    sock = side_connect();
    fd = memfd_of(SEG_SIZE, true);
    cases++;
    code = side_register(sock, fd, SEG_SIZE, &id, msg, sizeof msg);
    close(fd);
    if (code != 0)
        fail("daemon still registers", "code %d \"%s\"", code, msg);
    else
        ok("daemon still registers", "a segment id");
    close(sock);

    if (child > 0) {
        int st;
        close(hold);
        waitpid(child, &st, 0);
    }
    munmap(mem, SEG_SIZE);
    zmq_close(c.s);
    zmq_ctx_term(c.ctx);
    printf("shmraw %s: %d cases, %d failures\n", sel, cases, failures);
    return failures ? 1 : 0;
}
