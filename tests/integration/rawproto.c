/* rawproto: speaks ZeroMQ to a daemon directly and sends it malformed and
 * out-of-order requests. Each one must get a reply with the documented code
 * (or, for bytes that are not a request at all, may cost the connection), and
 * afterwards a Ping on a fresh connection must still be answered.
 *
 *   rawproto ENDPOINT
 *
 * Prints one line per case and exits 0 when every case held. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "mlxd.pb-c.h"
#include "wire.h"

#define REPLY_TIMEOUT_MS 5000

struct t {
    void *zctx;
    const char *ep;
    int failures, cases;
    unsigned jobs;
};

struct conn {
    void *s, *mon;
};

// What came back for one request.
struct answer {
    Mlxd__Reply *reply; // NULL: no reply
    bool dropped;       // the daemon closed the connection
    int nframes;        // frames after the protobuf
    size_t frame_len[4];
    uint8_t frame1[64];
};

static void fail(struct t *T, const char *name, const char *fmt, ...) {
    va_list ap;
    printf("FAIL rawproto %s: ", name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    T->failures++;
}

static struct conn conn_open(struct t *T) {
    static unsigned n;
    struct conn c = { zmq_socket(T->zctx, ZMQ_DEALER), zmq_socket(T->zctx, ZMQ_PAIR) };
    char mon[64];
    int zero = 0;
    snprintf(mon, sizeof mon, "inproc://mon-%u", n++);
    if (!c.s || !c.mon || zmq_setsockopt(c.s, ZMQ_LINGER, &zero, sizeof zero) < 0 ||
        zmq_socket_monitor(c.s, mon, ZMQ_EVENT_DISCONNECTED) < 0 || zmq_connect(c.mon, mon) < 0 ||
        zmq_connect(c.s, T->ep) < 0) {
        printf("FAIL rawproto: cannot connect to %s: %s\n", T->ep, zmq_strerror(zmq_errno()));
        exit(1);
    }
    zmq_setsockopt(c.mon, ZMQ_LINGER, &zero, sizeof zero);
    return c;
}

static void conn_close(struct conn *c) {
    zmq_socket_monitor(c->s, NULL, 0);
    zmq_close(c->mon);
    zmq_close(c->s);
}

static void answer_clear(struct answer *a) {
    if (a->reply)
        mlxd__reply__free_unpacked(a->reply, NULL);
    memset(a, 0, sizeof *a);
}

// Waits for the reply to the last request, or for the connection to drop.
static void await(struct conn *c, struct answer *a) {
    memset(a, 0, sizeof *a);
    uint64_t deadline = wire_now_us() + REPLY_TIMEOUT_MS * 1000ull;
    for (;;) {
        uint64_t now = wire_now_us();
        if (now >= deadline)
            return;
        zmq_pollitem_t items[2] = { { c->s, 0, ZMQ_POLLIN, 0 }, { c->mon, 0, ZMQ_POLLIN, 0 } };
        if (zmq_poll(items, 2, (long) ((deadline - now) / 1000 + 1)) < 0)
            continue;
        if (items[1].revents & ZMQ_POLLIN) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            zmq_msg_recv(&m, c->mon, 0); // event frame
            int more = zmq_msg_more(&m);
            zmq_msg_close(&m);
            if (more) {
                zmq_msg_init(&m);
                zmq_msg_recv(&m, c->mon, 0); // address frame
                zmq_msg_close(&m);
            }
            a->dropped = true;
            return;
        }
        if (!(items[0].revents & ZMQ_POLLIN))
            continue;
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
            else {
                if (part <= 4)
                    a->frame_len[part - 1] = zmq_msg_size(&m);
                if (part == 1)
                    memcpy(a->frame1, zmq_msg_data(&m), zmq_msg_size(&m) < 64 ? zmq_msg_size(&m) : 64);
            }
            more = zmq_msg_more(&m);
            zmq_msg_close(&m);
            part++;
        }
        a->nframes = part - 1;
        if (!a->reply)
            printf("rawproto: a reply that is not a Reply (%d frames)\n", part);
        return;
    }
}

static void send_raw(struct conn *c, const void *p, size_t n, bool more) {
    zmq_send(c->s, p, n, more ? ZMQ_SNDMORE : 0);
}

static void send_req(struct conn *c, Mlxd__Request *req, bool more) {
    int r = wire_send_pb(c->s, &req->base, more ? ZMQ_SNDMORE : 0);
    if (r < 0) {
        printf("FAIL rawproto: wire_send_pb: %s\n", zmq_strerror(-r));
        exit(1);
    }
}

static const char *code_name(int code) {
    return wire_error_name(code);
}

// Checks that the answer is a reply with one of the codes (0-terminated
// list cannot hold MLXD_OK, so ok_codes ends with 1) and, when id is
// nonzero, that it echoes the id (or is 0 for an undecodable request).
static void check(struct t *T, const char *name, const struct answer *a, uint64_t id, bool drop_ok, const int *codes) {
    T->cases++;
    if (!a->reply) {
        if (a->dropped && drop_ok) {
            printf("ok   rawproto %s: the connection was dropped\n", name);
            return;
        }
        fail(T, name, a->dropped ? "the connection was dropped, expected a reply" : "no reply within %d ms",
             REPLY_TIMEOUT_MS);
        return;
    }
    bool code_ok = false;
    char want[128] = "";
    for (const int *p = codes; *p != 1; p++) {
        code_ok |= a->reply->code == *p;
        strncat(want, code_name(*p), sizeof want - strlen(want) - 1);
        strncat(want, " ", sizeof want - strlen(want) - 1);
    }
    if (!code_ok)
        fail(T, name, "reply code %d (%s) \"%s\", expected one of %s", a->reply->code, code_name(a->reply->code),
             a->reply->message, want);
    else if (id && a->reply->id != id && a->reply->id != 0)
        fail(T, name, "reply id %llu, expected %llu (or 0)", (unsigned long long) a->reply->id,
             (unsigned long long) id);
    else
        printf("ok   rawproto %s: %s \"%s\"\n", name, code_name(a->reply->code), a->reply->message);
}

static const int EPROTO_ONLY[] = { MLXD_EPROTO, 1 };
static const int EPROTO_OR_EINVAL[] = { MLXD_EPROTO, MLXD_EINVAL, 1 };
static const int REFUSED_MEMORY[] = { MLXD_EPROTO, MLXD_EINVAL, MLXD_EDENIED, 1 };
static const int REFUSED_PID[] = { MLXD_EPROTO, MLXD_EINVAL, MLXD_EDENIED, 1 };
static const int EINVAL_ONLY[] = { MLXD_EINVAL, 1 };
static const int OK_ONLY[] = { MLXD_OK, 1 };

// A Ping on a fresh connection is answered with code 0.
static void ping_fresh(struct t *T, const char *after) {
    struct conn c = conn_open(T);
    Mlxd__Ping ping = MLXD__PING__INIT;
    Mlxd__Request req = MLXD__REQUEST__INIT;
    req.id = 4242;
    req.body_case = MLXD__REQUEST__BODY_PING;
    req.ping = &ping;
    send_req(&c, &req, false);
    struct answer a;
    await(&c, &a);
    char name[160];
    snprintf(name, sizeof name, "ping after %s", after);
    T->cases++;
    if (!a.reply)
        fail(T, name, "no answer to a Ping on a fresh connection");
    else if (a.reply->code != 0 || a.reply->id != 4242)
        fail(T, name, "Ping answered with id %llu code %d", (unsigned long long) a.reply->id, a.reply->code);
    answer_clear(&a);
    conn_close(&c);
}

static void hello_req(Mlxd__Request *req, Mlxd__Hello *h, uint64_t id, const char *job, int rank, int size) {
    h->version = MLXD_PROTOCOL_VERSION;
    h->pid = (int32_t) getpid();
    h->job = (char *) job;
    h->rank = rank;
    h->size = size;
    req->id = id;
    req->body_case = MLXD__REQUEST__BODY_HELLO;
    req->hello = h;
}

// A connection that has joined a new job of the given size as the given rank
// (for size 1, the reply comes at once).
static struct conn joined(struct t *T, const char *job, int rank, int size, bool wait) {
    struct conn c = conn_open(T);
    Mlxd__Hello h = MLXD__HELLO__INIT;
    Mlxd__Request req = MLXD__REQUEST__INIT;
    hello_req(&req, &h, 1, job, rank, size);
    send_req(&c, &req, false);
    if (wait) {
        struct answer a;
        await(&c, &a);
        if (!a.reply || a.reply->code != 0) {
            printf("FAIL rawproto: Hello for job %s rank %d of %d: %s \"%s\"\n", job, rank, size,
                   a.reply ? code_name(a.reply->code) : "no reply", a.reply ? a.reply->message : "");
            exit(1);
        }
        answer_clear(&a);
    }
    return c;
}

static const char *new_job(struct t *T, char *buf, size_t n) {
    snprintf(buf, n, "rawproto-%d-%u", (int) getpid(), T->jobs++);
    return buf;
}

// Sends an op with one input tensor float32 `shape`, the tensor's frame
// field set to `frame`, followed by the given raw data frames.
static void send_op(struct conn *c, uint64_t id, Mlxd__OpType op, uint32_t dtype, size_t ndim, int64_t *shape,
                    uint32_t frame, uint32_t segment, const size_t *frame_lens, int nframes) {
    Mlxd__Tensor in = MLXD__TENSOR__INIT;
    Mlxd__OpRequest o = MLXD__OP_REQUEST__INIT;
    Mlxd__Request req = MLXD__REQUEST__INIT;
    in.dtype = dtype;
    in.n_shape = ndim;
    in.shape = shape;
    in.frame = frame;
    in.segment = segment;
    o.op = op;
    o.input = &in;
    req.id = id;
    req.body_case = MLXD__REQUEST__BODY_OP;
    req.op = &o;
    send_req(c, &req, nframes > 0);
    static uint8_t data[4096];
    for (int i = 0; i < nframes; i++) {
        for (size_t k = 0; k < frame_lens[i] && k < sizeof data; k++)
            data[k] = (uint8_t) (k + 1);
        send_raw(c, data, frame_lens[i], i + 1 < nframes);
    }
}

/* ---------- cases ---------- */

static void case_garbage(struct t *T) {
    static const uint8_t garbage[] = { 0x0f, 'G', 'A', 'R', 'B', 'A', 'G', 'E', 0xff, 0xfe, 0x00, 0x07 };
    struct conn c = conn_open(T);
    send_raw(&c, garbage, sizeof garbage, false);
    struct answer a;
    await(&c, &a);
    check(T, "garbage bytes as frame 1", &a, 0, true, EPROTO_ONLY);
    if (a.reply && a.reply->id != 0)
        fail(T, "garbage bytes as frame 1", "reply id %llu, expected 0", (unsigned long long) a.reply->id);
    answer_clear(&a);
    conn_close(&c);
    ping_fresh(T, "garbage");
}

static void case_empty_frame(struct t *T) {
    // An empty frame decodes as a Request with no body.
    struct conn c = conn_open(T);
    send_raw(&c, "", 0, false);
    struct answer a;
    await(&c, &a);
    check(T, "empty frame 1", &a, 0, true, EPROTO_OR_EINVAL);
    answer_clear(&a);
    conn_close(&c);
    ping_fresh(T, "an empty frame");
}

static void case_no_body(struct t *T) {
    struct conn c = conn_open(T);
    Mlxd__Request req = MLXD__REQUEST__INIT;
    req.id = 31;
    send_req(&c, &req, false);
    struct answer a;
    await(&c, &a);
    check(T, "request without a body", &a, 31, false, EPROTO_OR_EINVAL);
    answer_clear(&a);
    conn_close(&c);
    ping_fresh(T, "a request without a body");
}

static void case_truncated(struct t *T) {
    Mlxd__Hello h = MLXD__HELLO__INIT;
    Mlxd__Request req = MLXD__REQUEST__INIT;
    hello_req(&req, &h, 77, "a-job-name-long-enough-to-cut-in-the-middle", 0, 2);
    size_t n = mlxd__request__get_packed_size(&req);
    uint8_t *buf = malloc(n);
    mlxd__request__pack(&req, buf);
    struct conn c = conn_open(T);
    send_raw(&c, buf, n - 10, false);
    struct answer a;
    await(&c, &a);
    check(T, "truncated protobuf", &a, 77, true, EPROTO_ONLY);
    answer_clear(&a);
    conn_close(&c);
    free(buf);
    ping_fresh(T, "a truncated protobuf");
}

static void case_oversized(struct t *T) {
    // A well-formed Request, but bigger than WIRE_MAX_PB_FRAME.
    size_t len = WIRE_MAX_PB_FRAME + 1000;
    char *job = malloc(len + 1);
    memset(job, 'j', len);
    job[len] = '\0';
    Mlxd__Hello h = MLXD__HELLO__INIT;
    Mlxd__Request req = MLXD__REQUEST__INIT;
    hello_req(&req, &h, 78, job, 0, 1);
    struct conn c = conn_open(T);
    send_req(&c, &req, false);
    struct answer a;
    await(&c, &a);
    check(T, "frame 1 over 64 KiB", &a, 78, true, EPROTO_OR_EINVAL);
    answer_clear(&a);
    conn_close(&c);
    free(job);
    ping_fresh(T, "an oversized frame");
}

static void case_wrong_version(struct t *T) {
    char job[64];
    Mlxd__Hello h = MLXD__HELLO__INIT;
    Mlxd__Request req = MLXD__REQUEST__INIT;
    hello_req(&req, &h, 79, new_job(T, job, sizeof job), 0, 1);
    h.version = MLXD_PROTOCOL_VERSION + 100;
    struct conn c = conn_open(T);
    send_req(&c, &req, false);
    struct answer a;
    await(&c, &a);
    check(T, "Hello with a wrong protocol version", &a, 79, false, EPROTO_ONLY);
    if (a.reply && a.reply->code == MLXD_EPROTO && !strcasestr(a.reply->message, "version"))
        fail(T, "Hello with a wrong protocol version", "message \"%s\" does not mention the version",
             a.reply->message);
    answer_clear(&a);
    conn_close(&c);
    ping_fresh(T, "a wrong version");
}

static void case_bad_job_names(struct t *T) {
    static const char *names[] = { "", "bad/job", "bad job", "ünïcode" };
    char longname[200];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    for (size_t i = 0; i <= sizeof names / sizeof names[0]; i++) {
        const char *job = i < sizeof names / sizeof names[0] ? names[i] : longname;
        Mlxd__Hello h = MLXD__HELLO__INIT;
        Mlxd__Request req = MLXD__REQUEST__INIT;
        hello_req(&req, &h, 80 + i, job, 0, 1);
        struct conn c = conn_open(T);
        send_req(&c, &req, false);
        struct answer a;
        await(&c, &a);
        char name[300];
        snprintf(name, sizeof name, "Hello with job name \"%.40s%s\"", job, strlen(job) > 40 ? "..." : "");
        check(T, name, &a, 80 + i, false, EINVAL_ONLY);
        answer_clear(&a);
        conn_close(&c);
    }
    ping_fresh(T, "bad job names");
}

static void case_bad_hello_ranks(struct t *T) {
    static const struct { int rank, size; } bad[] = { { 1, 1 }, { -1, 2 }, { 0, 0 }, { 0, -3 } };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char job[64], name[128];
        Mlxd__Hello h = MLXD__HELLO__INIT;
        Mlxd__Request req = MLXD__REQUEST__INIT;
        hello_req(&req, &h, 90 + i, new_job(T, job, sizeof job), bad[i].rank, bad[i].size);
        struct conn c = conn_open(T);
        send_req(&c, &req, false);
        struct answer a;
        await(&c, &a);
        snprintf(name, sizeof name, "Hello as rank %d of %d", bad[i].rank, bad[i].size);
        check(T, name, &a, 90 + i, false, EINVAL_ONLY);
        answer_clear(&a);
        conn_close(&c);
    }
    ping_fresh(T, "bad ranks");
}

static void case_wrong_pid(struct t *T) {
    char job[64];
    Mlxd__Hello h = MLXD__HELLO__INIT;
    Mlxd__Request req = MLXD__REQUEST__INIT;
    hello_req(&req, &h, 95, new_job(T, job, sizeof job), 0, 1);
    h.pid = getpid() == 1 ? 2 : 1;
    struct conn c = conn_open(T);
    send_req(&c, &req, false);
    struct answer a;
    await(&c, &a);
    check(T, "Hello with another process's pid", &a, 95, false, REFUSED_PID);
    answer_clear(&a);
    conn_close(&c);
    ping_fresh(T, "a wrong pid");
}

static void case_op_before_hello(struct t *T) {
    struct conn c = conn_open(T);
    int64_t shape[1] = { 4 };
    size_t lens[1] = { 16 };
    send_op(&c, 101, MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 1, shape, 1, 0, lens, 1);
    struct answer a;
    await(&c, &a);
    check(T, "op before Hello", &a, 101, false, EPROTO_ONLY);
    answer_clear(&a);
    conn_close(&c);
    ping_fresh(T, "an op before Hello");
}

// Cases on a connection that has joined a job of one: each op is answered
// at once, so a bad one shows in its reply.
static void case_bad_ops(struct t *T) {
    char job[64];
    struct conn c = joined(T, new_job(T, job, sizeof job), 0, 1, true);
    struct answer a;
    int64_t shape4[1] = { 4 };
    int64_t shape9[9] = { 1, 1, 1, 1, 1, 1, 1, 1, 4 };
    int64_t shape_neg[2] = { 2, -2 };
    size_t lens16[1] = { 16 }, lens12[1] = { 12 }, lens16x2[2] = { 16, 16 };

    // The control: a well-formed all_sum of a job of one gives x back.
    send_op(&c, 200, MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 1, shape4, 1, 0, lens16, 1);
    await(&c, &a);
    check(T, "well-formed all_sum (control)", &a, 200, false, OK_ONLY);
    if (a.reply && a.reply->code == 0) {
        Mlxd__OpReply *r = a.reply->body_case == MLXD__REPLY__BODY_OP ? a.reply->op : NULL;
        if (!r || !r->output || r->output->frame != 1 || a.nframes != 1 || a.frame_len[0] != 16 ||
            a.frame1[0] != 1 || a.frame1[15] != 16)
            fail(T, "well-formed all_sum (control)", "the reply does not carry x back in frame 1 (%d frames)",
                 a.nframes);
    }
    answer_clear(&a);

    struct {
        const char *name;
        Mlxd__OpType op;
        uint32_t dtype;
        size_t ndim;
        int64_t *shape;
        uint32_t frame, segment;
        const size_t *lens;
        int nframes;
        const int *codes;
    } bad[] = {
        { "unknown op type 99", (Mlxd__OpType) 99, MLXD_FLOAT32, 1, shape4, 1, 0, lens16, 1, EPROTO_OR_EINVAL },
        { "op type OP_INVALID", MLXD__OP_TYPE__OP_INVALID, MLXD_FLOAT32, 1, shape4, 1, 0, lens16, 1, EPROTO_OR_EINVAL },
        { "tensor frame index past the frames", MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 1, shape4, 2, 0, lens16, 1,
          EPROTO_ONLY },
        { "tensor frame index with no frames", MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 1, shape4, 1, 0, NULL, 0,
          EPROTO_ONLY },
        { "frame length not dtype x shape", MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 1, shape4, 1, 0, lens12, 1,
          EPROTO_ONLY },
        { "an extra unreferenced frame", MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 1, shape4, 1, 0, lens16x2, 2,
          EPROTO_ONLY },
        { "tensor neither inline nor shared", MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 1, shape4, 0, 0, NULL, 0,
          EPROTO_OR_EINVAL },
        { "shared memory segment never registered", MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 1, shape4, 0, 4242, NULL,
          0, REFUSED_MEMORY },
        { "dtype 99", MLXD__OP_TYPE__OP_ALL_SUM, 99, 1, shape4, 1, 0, lens16, 1, EPROTO_OR_EINVAL },
        { "9 dimensions", MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 9, shape9, 1, 0, lens16, 1, EPROTO_OR_EINVAL },
        { "a negative dimension", MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 2, shape_neg, 1, 0, lens16, 1,
          EPROTO_OR_EINVAL },
        { "send to oneself", MLXD__OP_TYPE__OP_SEND, MLXD_FLOAT32, 1, shape4, 1, 0, lens16, 1, EINVAL_ONLY },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        send_op(&c, 300 + i, bad[i].op, bad[i].dtype, bad[i].ndim, bad[i].shape, bad[i].frame, bad[i].segment,
                bad[i].lens, bad[i].nframes);
        await(&c, &a);
        check(T, bad[i].name, &a, 300 + i, false, bad[i].codes);
        answer_clear(&a);
        ping_fresh(T, bad[i].name);
    }
    conn_close(&c);
}

// Checks that a is the OK reply to request id of an all_sum whose two
// members both sent the bytes 1..16: twice those floats.
static void check_twice(struct t *T, const char *name, struct answer *a, uint64_t id) {
    check(T, name, a, id, false, OK_ONLY);
    if (a->reply && a->reply->id != id)
        fail(T, name, "reply id %llu, expected %llu", (unsigned long long) a->reply->id, (unsigned long long) id);
    if (a->reply && a->reply->code == 0) {
        float in[4], got[4];
        uint8_t pattern[16];
        for (int k = 0; k < 16; k++)
            pattern[k] = (uint8_t) (k + 1);
        memcpy(in, pattern, 16);
        memcpy(got, a->frame1, 16);
        if (a->nframes != 1 || a->frame_len[0] != 16 || got[0] != 2 * in[0] || got[3] != 2 * in[3])
            fail(T, name, "the sum is not twice the input");
    }
}

// Two ops in flight on one connection (nonblocking ops) are not a protocol
// error: each member's are matched in the order it sent them, and each gets
// its own reply.
static void case_second_op_in_flight(struct t *T) {
    char job[64];
    const char *name = "a second op while one is in flight";
    new_job(T, job, sizeof job);
    struct conn c0 = joined(T, job, 0, 2, false), c1 = joined(T, job, 1, 2, false);
    struct answer a;
    await(&c0, &a);
    if (!a.reply || a.reply->code != 0) {
        fail(T, name, "Hello of rank 0 of a job of 2 did not succeed");
        answer_clear(&a);
        return;
    }
    answer_clear(&a);
    await(&c1, &a);
    answer_clear(&a);

    int64_t shape4[1] = { 4 };
    size_t lens16[1] = { 16 };
    send_op(&c0, 400, MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 1, shape4, 1, 0, lens16, 1);
    send_op(&c0, 401, MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 1, shape4, 1, 0, lens16, 1);
    send_op(&c1, 500, MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 1, shape4, 1, 0, lens16, 1);
    send_op(&c1, 501, MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 1, shape4, 1, 0, lens16, 1);
    await(&c0, &a);
    check_twice(T, "the first of two ops in flight", &a, 400);
    answer_clear(&a);
    await(&c0, &a);
    check_twice(T, "the second of two ops in flight", &a, 401);
    answer_clear(&a);
    await(&c1, &a);
    check_twice(T, "the other member's first op", &a, 500);
    answer_clear(&a);
    await(&c1, &a);
    check_twice(T, "the other member's second op", &a, 501);
    answer_clear(&a);
    conn_close(&c0);
    conn_close(&c1);
    ping_fresh(T, name);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: rawproto ENDPOINT\n");
        return 2;
    }
    struct t T = { zmq_ctx_new(), argv[1], 0, 0, 0 };
    ping_fresh(&T, "nothing (the daemon answers)");
    case_garbage(&T);
    case_empty_frame(&T);
    case_no_body(&T);
    case_truncated(&T);
    case_oversized(&T);
    case_wrong_version(&T);
    case_bad_job_names(&T);
    case_bad_hello_ranks(&T);
    case_wrong_pid(&T);
    case_op_before_hello(&T);
    case_bad_ops(&T);
    case_second_op_in_flight(&T);
    printf("rawproto: %d cases, %d failures\n", T.cases, T.failures);
    zmq_ctx_term(T.zctx);
    return T.failures ? 1 : 0;
}
