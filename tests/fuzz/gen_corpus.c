/* Writes the fuzz targets' seed corpus: gen_corpus DIR makes DIR/request,
 * DIR/control and DIR/control_struct and fills them with small inputs in the
 * layouts of fuzz_format.h. Built with the fuzzers, run by hand when the
 * protocol changes:
 *     build-fuzz/tests/fuzz/gen_corpus tests/fuzz/corpus
 * The control seeds assume the coordinator numbers its groups from
 * COORD_GROUP_BIT | 1 up; if that changes they still run, only less deep. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "control.pb-c.h"
#include "coord.h"
#include "fuzz_format.h"
#include "wire.h"

#define GROUP(k) (COORD_GROUP_BIT | (uint64_t) (k))

static const char *out_dir;
static int files;

/* ---- a growing byte buffer ---- */

struct buf {
    uint8_t b[1 << 16];
    size_t n;
};

static void put(struct buf *b, const void *p, size_t n) {
    if (n > sizeof b->b - b->n) {
        fprintf(stderr, "gen_corpus: seed too long\n");
        exit(1);
    }
    memcpy(b->b + b->n, p, n);
    b->n += n;
}

static void put8(struct buf *b, int v) {
    uint8_t c = (uint8_t) v;
    put(b, &c, 1);
}

static void put32(struct buf *b, uint32_t v) {
    uint8_t c[4] = { (uint8_t) v, (uint8_t) (v >> 8), (uint8_t) (v >> 16), (uint8_t) (v >> 24) };
    put(b, c, 4);
}

// Several bytes at once: bytes(b, n, v1, …, vn).
static void bytes(struct buf *b, int n, ...) {
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        put8(b, va_arg(ap, int));
    va_end(ap);
}

static void write_seed(const char *sub, const char *name, const struct buf *b) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", out_dir, sub);
    if (mkdir(path, 0755) < 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof path, "%s/%s/%s", out_dir, sub, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b->b, 1, b->n, f) != b->n || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
    files++;
}

/* ---- request seeds ---- */

// A request seed: the head (frame count and lengths), then the protobuf.
static void request_seed(const char *name, const Mlxd__Request *req, int nframes, const uint32_t *lens) {
    struct buf *b = calloc(1, sizeof *b);
    put8(b, nframes);
    for (int i = 0; i < nframes; i++)
        put32(b, lens[i]);
    size_t n = mlxd__request__get_packed_size(req);
    uint8_t *pb = malloc(n ? n : 1);
    mlxd__request__pack(req, pb);
    put(b, pb, n);
    write_seed("request", name, b);
    free(pb);
    free(b);
}

static void hello_seed(const char *name, uint32_t version, const char *job, int rank, int size, uint64_t attach) {
    Mlxd__Request r = MLXD__REQUEST__INIT;
    Mlxd__Hello h = MLXD__HELLO__INIT;
    h.version = version;
    h.pid = 4242;
    h.job = (char *) job;
    h.rank = rank;
    h.size = size;
    h.attach_group = attach;
    h.attach_token = attach ? UINT64_C(0x1234567890abcdef) : 0;
    r.id = 1;
    r.body_case = MLXD__REQUEST__BODY_HELLO;
    r.hello = &h;
    request_seed(name, &r, 0, NULL);
}

// An op seed; in/out may be NULL.
static void op_seed(const char *name, Mlxd__OpType op, Mlxd__Tensor *in, Mlxd__Tensor *out, int nframes,
                    const uint32_t *lens) {
    Mlxd__Request r = MLXD__REQUEST__INIT;
    Mlxd__OpRequest o = MLXD__OP_REQUEST__INIT;
    o.op = op;
    o.input = in;
    o.output = out;
    o.peer = 1;
    r.id = 7;
    r.timeout_ms = 5000;
    r.body_case = MLXD__REQUEST__BODY_OP;
    r.op = &o;
    request_seed(name, &r, nframes, lens);
}

static Mlxd__Tensor tensor(uint32_t dtype, size_t ndim, int64_t *shape, uint32_t frame) {
    Mlxd__Tensor t = MLXD__TENSOR__INIT;
    t.dtype = dtype;
    t.n_shape = ndim;
    t.shape = shape;
    t.frame = frame;
    return t;
}

static void request_seeds(void) {
    static int64_t s4[] = { 4 }, s23[] = { 2, 3 }, s8[] = { 8 }, s5[] = { 5 }, s9[] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 },
                   sneg[] = { 2, -3 }, shuge[] = { 1 << 20, 1 << 20, 8 };
    const uint32_t auto_len = FUZZ_LEN_AUTO, auto_minus_1 = FUZZ_LEN_AUTO | 0xff;
    uint32_t lens[2];

    hello_seed("hello_join", MLXD_PROTOCOL_VERSION, "job-1", 0, 2, 0);
    hello_seed("hello_attach", MLXD_PROTOCOL_VERSION, "", 0, 0, GROUP(2));
    hello_seed("hello_bad_version", MLXD_PROTOCOL_VERSION + 1, "job-1", 0, 2, 0);
    hello_seed("hello_bad_job_id", MLXD_PROTOCOL_VERSION, "job 1/x", 0, 2, 0);
    hello_seed("hello_rank_out_of_range", MLXD_PROTOCOL_VERSION, "j", 2, 2, 0);
    hello_seed("hello_size_too_big", MLXD_PROTOCOL_VERSION, "j", 0, 65537, 0);

    Mlxd__Request r = MLXD__REQUEST__INIT;
    Mlxd__Ping ping = MLXD__PING__INIT;
    r.id = 3;
    r.body_case = MLXD__REQUEST__BODY_PING;
    r.ping = &ping;
    request_seed("ping", &r, 0, NULL);
    lens[0] = 4;
    request_seed("ping_with_frame", &r, 1, lens);

    Mlxd__StatusRequest st = MLXD__STATUS_REQUEST__INIT;
    st.world = true;
    r.body_case = MLXD__REQUEST__BODY_STATUS;
    r.status = &st;
    request_seed("status_world", &r, 0, NULL);

    Mlxd__Goodbye bye = MLXD__GOODBYE__INIT;
    r.body_case = MLXD__REQUEST__BODY_GOODBYE;
    r.goodbye = &bye;
    request_seed("goodbye", &r, 0, NULL);

    Mlxd__Request empty = MLXD__REQUEST__INIT;
    empty.id = 9;
    request_seed("no_body", &empty, 0, NULL);

    Mlxd__Tensor in = tensor(MLXD_FLOAT32, 1, s4, 1), out;
    lens[0] = 16;
    op_seed("all_sum_f32_4", MLXD__OP_TYPE__OP_ALL_SUM, &in, NULL, 1, lens);
    in = tensor(MLXD_INT32, 2, s23, 1);
    lens[0] = auto_len;
    op_seed("all_max_i32_2x3", MLXD__OP_TYPE__OP_ALL_MAX, &in, NULL, 1, lens);
    in = tensor(MLXD_BFLOAT16, 1, s4, 1);
    op_seed("all_min_bf16_4", MLXD__OP_TYPE__OP_ALL_MIN, &in, NULL, 1, lens);
    in = tensor(MLXD_FLOAT64, 0, NULL, 1);
    op_seed("all_gather_scalar", MLXD__OP_TYPE__OP_ALL_GATHER, &in, NULL, 1, lens);
    in = tensor(MLXD_FLOAT32, 1, s8, 1);
    op_seed("sum_scatter_8", MLXD__OP_TYPE__OP_SUM_SCATTER, &in, NULL, 1, lens);
    in = tensor(MLXD_UINT8, 1, s5, 1);
    op_seed("send_u8_5", MLXD__OP_TYPE__OP_SEND, &in, NULL, 1, lens);
    out = tensor(MLXD_FLOAT32, 1, s4, 0);
    op_seed("recv_f32_4", MLXD__OP_TYPE__OP_RECV, NULL, &out, 0, NULL);
    op_seed("barrier", MLXD__OP_TYPE__OP_BARRIER, NULL, NULL, 0, NULL);

    Mlxd__Request sr = MLXD__REQUEST__INIT;
    Mlxd__OpRequest so = MLXD__OP_REQUEST__INIT;
    so.op = MLXD__OP_TYPE__OP_SPLIT;
    so.color = 1;
    so.key = -1;
    sr.id = 11;
    sr.body_case = MLXD__REQUEST__BODY_OP;
    sr.op = &so;
    request_seed("split", &sr, 0, NULL);

    // Shared memory in and out: no frames.
    in = tensor(MLXD_COMPLEX64, 2, s23, 0);
    in.segment = 3;
    in.offset = 64;
    out = in;
    out.offset = 4096;
    op_seed("all_sum_shm", MLXD__OP_TYPE__OP_ALL_SUM, &in, &out, 0, NULL);

    // Malformed: each is refused, for one reason.
    in = tensor(MLXD_FLOAT32, 1, s4, 1);
    lens[0] = auto_minus_1;
    op_seed("bad_frame_length", MLXD__OP_TYPE__OP_ALL_SUM, &in, NULL, 1, lens);
    lens[0] = auto_len;
    lens[1] = 8;
    op_seed("bad_unnamed_frame", MLXD__OP_TYPE__OP_ALL_SUM, &in, NULL, 2, lens);
    in = tensor(MLXD_FLOAT32, 1, s4, 2);
    out = tensor(MLXD_FLOAT32, 1, s4, 1);
    lens[0] = lens[1] = auto_len;
    op_seed("bad_output_frame", MLXD__OP_TYPE__OP_ALL_SUM, &in, &out, 2, lens);
    in = tensor(MLXD_FLOAT32, 1, s4, 0);
    in.segment = 1;
    in.frame = 1;
    lens[0] = auto_len;
    op_seed("bad_frame_and_segment", MLXD__OP_TYPE__OP_ALL_SUM, &in, NULL, 1, lens);
    in = tensor(MLXD_FLOAT32, 9, s9, 1);
    op_seed("bad_ndim_9", MLXD__OP_TYPE__OP_ALL_SUM, &in, NULL, 1, lens);
    in = tensor(MLXD_FLOAT32, 2, sneg, 1);
    op_seed("bad_negative_dim", MLXD__OP_TYPE__OP_ALL_SUM, &in, NULL, 1, lens);
    in = tensor(MLXD_FLOAT64, 3, shuge, 1);
    op_seed("bad_too_large", MLXD__OP_TYPE__OP_ALL_SUM, &in, NULL, 1, lens);
    in = tensor(MLXD_DTYPE_MAX, 1, s4, 1);
    op_seed("bad_dtype", MLXD__OP_TYPE__OP_ALL_SUM, &in, NULL, 1, lens);
    in = tensor(MLXD_FLOAT32, 0, NULL, 1);
    op_seed("bad_scatter_scalar", MLXD__OP_TYPE__OP_SUM_SCATTER, &in, NULL, 1, lens);
    op_seed("bad_unknown_op", (Mlxd__OpType) 42, NULL, NULL, 0, NULL);
    op_seed("bad_recv_with_input", MLXD__OP_TYPE__OP_RECV, &in, &out, 1, lens);

    struct buf *b = calloc(1, sizeof *b);
    bytes(b, 9, 0, 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x01);
    write_seed("request", "bad_not_protobuf", b);
    b->n = 0;
    put(b, "host:1000:1000:4242", 19);
    write_seed("request", "peer_address", b);
    free(b);
}

/* ---- control seeds: records of [from] [len] [packed Ctl] ---- */

static void record(struct buf *b, int from, const Mlxd__Ctl__Ctl *m) {
    uint8_t pb[4096];
    size_t n = mlxd__ctl__ctl__get_packed_size(m);
    if (n > sizeof pb)
        exit(1);
    mlxd__ctl__ctl__pack(m, pb);
    bytes(b, 3, from, (int) (n & 0xff), (int) (n >> 8));
    put(b, pb, n);
}

static void join(struct buf *b, int from, const char *job, uint32_t uid, int size, int rank) {
    Mlxd__Ctl__Join j = MLXD__CTL__JOIN__INIT;
    Mlxd__Ctl__Ctl m = MLXD__CTL__CTL__INIT;
    j.job = (char *) job;
    j.uid = uid;
    j.size = size;
    j.rank = rank;
    j.pid = 100 + rank;
    m.body_case = MLXD__CTL__CTL__BODY_JOIN;
    m.join = &j;
    record(b, from, &m);
}

static void leave(struct buf *b, int from, const char *job, int rank, bool timed_out) {
    Mlxd__Ctl__Leave l = MLXD__CTL__LEAVE__INIT;
    Mlxd__Ctl__Ctl m = MLXD__CTL__CTL__INIT;
    l.job = (char *) job;
    l.rank = rank;
    l.timed_out = timed_out;
    l.waited_ms = 30000;
    m.body_case = MLXD__CTL__CTL__BODY_LEAVE;
    m.leave = &l;
    record(b, from, &m);
}

static void arrive(struct buf *b, int from, uint64_t group, uint64_t seq, int rank, uint32_t op, int n,
                   int64_t dim0, int color, int key) {
    int64_t shape[1] = { dim0 };
    Mlxd__Ctl__Desc d = MLXD__CTL__DESC__INIT;
    Mlxd__Ctl__Arrive a = MLXD__CTL__ARRIVE__INIT;
    Mlxd__Ctl__Ctl m = MLXD__CTL__CTL__INIT;
    d.rank = rank;
    d.op = op;
    d.dtype = MLXD_FLOAT32;
    d.n_shape = (size_t) n;
    d.shape = n ? shape : NULL;
    d.color = color;
    d.key = key;
    a.group = group;
    a.seq = seq;
    a.desc = &d;
    m.body_case = MLXD__CTL__CTL__BODY_ARRIVE;
    m.arrive = &a;
    record(b, from, &m);
}

static void timeout(struct buf *b, int from, uint64_t group, uint64_t seq, int rank) {
    Mlxd__Ctl__Timeout t = MLXD__CTL__TIMEOUT__INIT;
    Mlxd__Ctl__Ctl m = MLXD__CTL__CTL__INIT;
    t.group = group;
    t.seq = seq;
    t.rank = rank;
    t.waited_ms = 60000;
    m.body_case = MLXD__CTL__CTL__BODY_TIMEOUT;
    m.timeout = &t;
    record(b, from, &m);
}

static void abort_req(struct buf *b, int from, uint64_t group, int code, const char *message) {
    Mlxd__Ctl__AbortReq a = MLXD__CTL__ABORT_REQ__INIT;
    Mlxd__Ctl__Ctl m = MLXD__CTL__CTL__INIT;
    a.group = group;
    a.code = code;
    a.message = (char *) message;
    m.body_case = MLXD__CTL__CTL__BODY_ABORT_REQ;
    m.abort_req = &a;
    record(b, from, &m);
}

static void group_gone(struct buf *b, int from, uint64_t group) {
    Mlxd__Ctl__GroupGone g = MLXD__CTL__GROUP_GONE__INIT;
    Mlxd__Ctl__Ctl m = MLXD__CTL__CTL__INIT;
    g.group = group;
    m.body_case = MLXD__CTL__CTL__BODY_GROUP_GONE;
    m.group_gone = &g;
    record(b, from, &m);
}

// Job "j" of size n, rank r on host r % FUZZ_WORLD: forms group 1.
static void form(struct buf *b, int n) {
    for (int r = 0; r < n; r++)
        join(b, r % FUZZ_WORLD, "j", 1000, n, r);
}

static void control_seeds(void) {
    struct buf *b = calloc(1, sizeof *b);
    const uint32_t SUM = MLXD__OP_TYPE__OP_ALL_SUM, SPLIT = MLXD__OP_TYPE__OP_SPLIT;

    // Two hosts: formation, one all_sum (arrive, arrive, go), both gone.
    form(b, 2);
    arrive(b, 0, GROUP(1), 0, 0, SUM, 1, 4, 0, 0);
    arrive(b, 1, GROUP(1), 0, 1, SUM, 1, 4, 0, 0);
    arrive(b, 1, GROUP(1), 1, 1, MLXD__OP_TYPE__OP_BARRIER, 0, 0, 0, 0);
    arrive(b, 0, GROUP(1), 1, 0, MLXD__OP_TYPE__OP_BARRIER, 0, 0, 0, 0);
    group_gone(b, 0, GROUP(1));
    group_gone(b, 1, GROUP(1));
    write_seed("control", "form_arrive_go_gone", b);

    // Four ranks on four hosts split by parity (groups 2 and 3), then an
    // all_sum in the even half and a split of it into singletons.
    b->n = 0;
    form(b, 4);
    for (int r = 0; r < 4; r++)
        arrive(b, r, GROUP(1), 0, r, SPLIT, 0, 0, r % 2, -1);
    arrive(b, 0, GROUP(2), 0, 0, SUM, 1, 8, 0, 0);
    arrive(b, 2, GROUP(2), 0, 1, SUM, 1, 8, 0, 0);
    arrive(b, 0, GROUP(2), 1, 0, SPLIT, 0, 0, 0, 5);
    arrive(b, 2, GROUP(2), 1, 1, SPLIT, 0, 0, 1, 0);
    group_gone(b, 0, GROUP(4));
    write_seed("control", "split_parity", b);

    // A member dies: the abort, and a late arrival that gets it again.
    b->n = 0;
    form(b, 3);
    arrive(b, 0, GROUP(1), 0, 0, SUM, 1, 4, 0, 0);
    abort_req(b, 1, GROUP(1), MLXD_EPEER, "rank 1 (pid 101) died");
    arrive(b, 2, GROUP(1), 0, 2, SUM, 1, 4, 0, 0);
    abort_req(b, 2, GROUP(1), MLXD_EPEER, "second reason");
    write_seed("control", "abort", b);

    // A collective's deadline passes with rank 1 missing.
    b->n = 0;
    form(b, 2);
    arrive(b, 0, GROUP(1), 0, 0, SUM, 1, 4, 0, 0);
    timeout(b, 0, GROUP(1), 0, 0);
    timeout(b, 1, GROUP(1), 0, 1);
    write_seed("control", "timeout", b);

    // Members disagree; sum_scatter that does not divide.
    b->n = 0;
    form(b, 2);
    arrive(b, 0, GROUP(1), 0, 0, SUM, 1, 4, 0, 0);
    arrive(b, 1, GROUP(1), 0, 1, MLXD__OP_TYPE__OP_ALL_MAX, 1, 4, 0, 0);
    arrive(b, 0, GROUP(1), 1, 0, MLXD__OP_TYPE__OP_SUM_SCATTER, 1, 3, 0, 0);
    arrive(b, 1, GROUP(1), 1, 1, MLXD__OP_TYPE__OP_SUM_SCATTER, 1, 3, 0, 0);
    write_seed("control", "mismatch", b);

    // A job that never forms: the hello's deadline, then a plain leave.
    b->n = 0;
    join(b, 0, "slow", 1000, 3, 0);
    join(b, 1, "slow", 1000, 3, 1);
    leave(b, 0, "slow", 0, true);
    leave(b, 1, "slow", 1, false);
    write_seed("control", "hello_timeout", b);

    // Joins the coordinator refuses: duplicate rank, other size, other user.
    b->n = 0;
    join(b, 0, "dup", 1000, 2, 0);
    join(b, 1, "dup", 1000, 2, 0);
    join(b, 1, "dup", 1000, 3, 1);
    join(b, 1, "dup", 1001, 2, 1);
    join(b, 1, "dup", 1000, 0, 0);
    join(b, 1, "", 1000, 1, 0);
    join(b, 1, "dup", 1000, 2, 1);
    join(b, 2, "dup", 1000, 2, 1);
    write_seed("control", "join_refused", b);

    // Messages meant for hosts, an empty one, and bytes that do not decode.
    b->n = 0;
    Mlxd__Ctl__Ctl m = MLXD__CTL__CTL__INIT;
    Mlxd__Ctl__Go go = MLXD__CTL__GO__INIT;
    go.group = GROUP(1);
    m.body_case = MLXD__CTL__CTL__BODY_GO;
    m.go = &go;
    record(b, 1, &m);
    Mlxd__Ctl__Ctl none = MLXD__CTL__CTL__INIT;
    record(b, 2, &none);
    bytes(b, 7, 3, 4, 0, 0x0a, 0xff, 0xff, 0x01);
    write_seed("control", "odd", b);
    free(b);
}

/* ---- control_struct seeds: steps of fuzz_control_struct.c ----
 * join:   STEP job size rank from      (job index, size index, rank byte)
 * arrive: STEP group rank host seq desc…
 * The bytes mirror the readers in fuzz_control_struct.c. */

static void s_join(struct buf *b, int job, int size_idx, int rank, int from) {
    bytes(b, 7, FUZZ_STEP_JOIN, job, 0, size_idx, rank, from, rank);
}

// Arrive of rank `rank` in the live group at index gi, first-arriver style
// (a made-up descriptor: op index, dtype, one dim index) or copying.
static void s_arrive_new(struct buf *b, int gi, int rank, int op_idx, int dim_idx, int color, int key) {
    bytes(b, 5, FUZZ_STEP_ARRIVE, gi, rank, 0, 0);
    bytes(b, 5, 0xff, op_idx, MLXD_FLOAT32, 1, dim_idx);
    bytes(b, 3, color + 1, key + 1, 0);
}

static void s_arrive_copy(struct buf *b, int gi, int rank, int color, int key) {
    bytes(b, 5, FUZZ_STEP_ARRIVE, gi, rank, 0, 0);
    bytes(b, 1, 0);
    bytes(b, 3, color + 1, key + 1, 0);
}

static void control_struct_seeds(void) {
    struct buf *b = calloc(1, sizeof *b);
    // sizes[] index 1 is 2, index 5 is 4; ops[] index 0 all_sum, 6 split,
    // 4 sum_scatter; dims[] index 4 is 4.

    // Two ranks on hosts 0 and 1: form, all_sum, gone.
    for (int r = 0; r < 2; r++)
        s_join(b, 0, 1, r, r);
    s_arrive_new(b, 0, 0, 0, 4, 0, 0);
    s_arrive_copy(b, 0, 1, 0, 0);
    bytes(b, 3, FUZZ_STEP_GROUP_GONE, 0, 0);
    bytes(b, 3, FUZZ_STEP_GROUP_GONE, 0, 1);
    write_seed("control_struct", "form_sum_gone", b);

    // Four ranks on four hosts, split by parity, all_sum in a half.
    b->n = 0;
    for (int r = 0; r < 4; r++)
        s_join(b, 1, 5, r, r);
    s_arrive_new(b, 0, 0, 6, 0, 0, -1);
    for (int r = 1; r < 4; r++)
        s_arrive_copy(b, 0, r, r % 2, -1);
    s_arrive_new(b, 1, 0, 0, 4, 0, 0);
    s_arrive_copy(b, 1, 1, 0, 0);
    write_seed("control_struct", "split", b);

    // Abort, then an arrival on the aborted group.
    b->n = 0;
    for (int r = 0; r < 2; r++)
        s_join(b, 2, 1, r, r);
    bytes(b, 5, FUZZ_STEP_ABORT_REQ, 0, 0, 0, 1);
    s_arrive_new(b, 0, 1, 0, 4, 0, 0);
    write_seed("control_struct", "abort", b);

    // One arrival, then the deadline; a hello that times out.
    b->n = 0;
    for (int r = 0; r < 2; r++)
        s_join(b, 0, 1, r, 3 - r);
    s_arrive_new(b, 0, 0, 4, 3, 0, 0);
    bytes(b, 7, FUZZ_STEP_TIMEOUT, 0, 0, 0, 0, 0x10, 0x27);
    s_join(b, 2, 5, 0, 0);
    bytes(b, 7, FUZZ_STEP_LEAVE, 2, 0, 0, 1, 0x10, 0x27);
    write_seed("control_struct", "timeouts", b);

    // Odd messages: no body, a Go, a join from outside the world.
    b->n = 0;
    bytes(b, 3, FUZZ_STEP_ODD, 1, 0);
    bytes(b, 5, FUZZ_STEP_ODD, 1, 2, 0, 0);
    bytes(b, 4, FUZZ_STEP_ODD, 1, 6, 1);
    write_seed("control_struct", "odd", b);
    free(b);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus DIR (e.g. tests/fuzz/corpus)\n");
        return 2;
    }
    out_dir = argv[1];
    if (mkdir(out_dir, 0755) < 0 && errno != EEXIST) {
        perror(out_dir);
        return 1;
    }
    request_seeds();
    control_seeds();
    control_struct_seeds();
    printf("wrote %d seeds under %s\n", files, out_dir);
    return 0;
}
