/* libFuzzer target: the coordinator driven by control messages built field
 * by field, so that the fuzzer reaches deep states (jobs forming from
 * several hosts, collectives gathered, agreed and mismatched, splits of
 * splits, timeouts, aborts, groups gone) rather than spending its time on
 * protobufs that do not decode. The input is a sequence of steps
 * (fuzz_format.h); each builds one message from a small alphabet (a few job
 * ids so that they collide, small sizes and ranks, group ids the
 * coordinator announced, sequence numbers near the current one, senders
 * that mostly hold the rank they speak for, a descriptor copied from a
 * member that already arrived or made up), packs it, and hands it through
 * the engine's decoding to the coordinator and the model in ctl_oracle.c. */
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_oracle.h"
#include "fuzz_format.h"
#include "mlxd.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct reader {
    const uint8_t *p;
    size_t n;
};

// The next byte; zeros once the input is used up.
static uint8_t u8(struct reader *r) {
    if (r->n == 0)
        return 0;
    r->n--;
    return *r->p++;
}

static uint16_t u16(struct reader *r) {
    uint16_t lo = u8(r);
    return (uint16_t) (lo | (uint16_t) u8(r) << 8);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

static char id_128[129], id_129[130], long_message[1500];

// "vm" and "ic" share a hash bucket with "a" and "b".
static const char *const job_ids[] = { "a", "b", "c", "a", "b", "d.e:f@g+h-1", "", id_128, id_129, "vm", "ic" };
static const int32_t sizes[] = { 1, 2, 2, 3, 3, 4, 4, 5, 8, 0, -1, 65536, 65537, INT_MIN, 2, 3 };
static const uint32_t ops[] = {
    MLXD__OP_TYPE__OP_ALL_SUM,  MLXD__OP_TYPE__OP_ALL_MAX,    MLXD__OP_TYPE__OP_ALL_MIN,
    MLXD__OP_TYPE__OP_ALL_GATHER, MLXD__OP_TYPE__OP_SUM_SCATTER, MLXD__OP_TYPE__OP_BARRIER,
    MLXD__OP_TYPE__OP_SPLIT,    MLXD__OP_TYPE__OP_SPLIT,      MLXD__OP_TYPE__OP_SEND,
    MLXD__OP_TYPE__OP_RECV,     MLXD__OP_TYPE__OP_INVALID,    42,
};
static const int64_t dims[] = { 0, 1, 2, 3, 4, 6, 8, -1, INT64_MAX, 1 << 20 };
static const int32_t codes[] = { MLXD_EPEER, MLXD_ETIMEDOUT, MLXD_EINVAL, MLXD_EINTERNAL, 0, 1, -10, INT_MIN,
                                 INT_MAX, -100 };
static const char *const messages[] = { "", "rank 2 died", long_message, "bad \xff\xfe utf-8", "left the group" };
static const uint64_t odd_groups[] = {
    0, 1, COORD_GROUP_BIT, COORD_GROUP_BIT | 1, COORD_GROUP_BIT | 1025, UINT64_C(1) << 40 | 1, UINT64_MAX,
    COORD_GROUP_BIT | 2,
};

// A group id: mostly a live one, sometimes one that is gone, sometimes one
// the coordinator never made. *ret_g is the model's group, if live.
static uint64_t pick_group(struct reader *r, const struct oracle *o, struct mgroup **ret_g) {
    uint8_t b = u8(r);
    uint64_t id;
    if (b < 0xd0 && o->ng)
        id = o->g[b % o->ng]->id;
    else if (b < 0xe8 && o->nseen)
        id = o->seen[b % o->nseen];
    else
        id = odd_groups[b % N(odd_groups)];
    *ret_g = oracle_group(o, id);
    return id;
}

// A rank of a group of size n: mostly in range, sometimes just outside.
static int pick_rank(struct reader *r, int n) {
    uint8_t b = u8(r);
    if (n < 1)
        n = 1;
    if (b < 0xc0)
        return b % n;
    if (b < 0xe0)
        return n + (b - 0xc0);
    return (int8_t) b;
}

// The sender: mostly a host of g (the one holding rank, when given).
static int pick_host(struct reader *r, const struct mgroup *g, int rank) {
    uint8_t b = u8(r);
    if (g && b < 0xe0) {
        if (rank >= 0 && rank < g->size)
            return g->host[rank];
        return g->hosts[b % g->nhosts];
    }
    return b % FUZZ_WORLD;
}

// The collective being gathered, or one near it.
static uint64_t pick_seq(struct reader *r, const struct mgroup *g) {
    uint8_t b = u8(r);
    uint64_t base = g ? g->seq : 0;
    return b < 0xe0 ? base : base + (uint64_t) (int64_t) (b - 0xf0);
}

// A descriptor: a copy of what a member that arrived said (so that members
// agree), or made up.
static void pick_desc(struct reader *r, const struct mgroup *g, Mlxd__Ctl__Desc *d, int64_t *shape) {
    const struct mdesc *first = NULL;
    for (int k = 0; g && k < g->size && !first; k++)
        if (g->in[k])
            first = &g->d[k];
    uint8_t b = u8(r);
    if (first && b < 0xb0) {
        d->op = first->op;
        d->dtype = first->dtype;
        d->n_shape = (size_t) first->ndim;
        memcpy(shape, first->shape, sizeof first->shape);
    } else {
        d->op = ops[u8(r) % N(ops)];
        d->dtype = u8(r) % 16;
        b = u8(r);
        d->n_shape = b >= 0xf0 ? 8 + (b & 1) : b % 4;
        for (size_t i = 0; i < d->n_shape; i++)
            shape[i] = dims[u8(r) % N(dims)];
    }
    d->shape = d->n_shape ? shape : NULL;
    d->color = (int) (u8(r) % 5) - 1;
    d->key = (int) (u8(r) % 5) - 1;
}

static void send_packed(struct oracle *o, int from, const Mlxd__Ctl__Ctl *m, uint64_t now) {
    uint8_t stackbuf[4096];
    size_t len = mlxd__ctl__ctl__get_packed_size(m);
    uint8_t *buf = len <= sizeof stackbuf ? stackbuf : malloc(len);
    if (!buf)
        abort();
    mlxd__ctl__ctl__pack(m, buf);
    oracle_step_packed(o, from, buf, len, now);
    if (buf != stackbuf)
        free(buf);
}

// One message that is not for the coordinator, or not from the world, or
// empty.
static void odd_step(struct reader *r, struct oracle *o, uint64_t *now) {
    Mlxd__Ctl__Ctl m = MLXD__CTL__CTL__INIT;
    Mlxd__Ctl__Form form = MLXD__CTL__FORM__INIT;
    Mlxd__Ctl__Go go = MLXD__CTL__GO__INIT;
    Mlxd__Ctl__Abort ab = MLXD__CTL__ABORT__INIT;
    Mlxd__Ctl__GroupFree gf = MLXD__CTL__GROUP_FREE__INIT;
    Mlxd__Ctl__P2P p2p = MLXD__CTL__P2_P__INIT;
    Mlxd__Ctl__StatusReq sq = MLXD__CTL__STATUS_REQ__INIT;
    Mlxd__Ctl__Join join = MLXD__CTL__JOIN__INIT;
    struct mgroup *g;
    int from = u8(r) % FUZZ_WORLD;
    switch (u8(r) % 9) {
    case 0:
        break;                          // no body
    case 1:
        form.job = (char *) "a";
        form.group = pick_group(r, o, &g);
        m.body_case = MLXD__CTL__CTL__BODY_FORM;
        m.form = &form;
        break;
    case 2:
        go.group = pick_group(r, o, &g);
        go.seq = pick_seq(r, g);
        m.body_case = MLXD__CTL__CTL__BODY_GO;
        m.go = &go;
        break;
    case 3:
        ab.group = pick_group(r, o, &g);
        m.body_case = MLXD__CTL__CTL__BODY_ABORT;
        m.abort = &ab;
        break;
    case 4:
        gf.group = pick_group(r, o, &g);
        m.body_case = MLXD__CTL__CTL__BODY_GROUP_FREE;
        m.group_free = &gf;
        break;
    case 5:
        p2p.group = pick_group(r, o, &g);
        m.body_case = MLXD__CTL__CTL__BODY_P2P;
        m.p2p = &p2p;
        break;
    case 6: {
        // A join from outside the world: handed over undecoded, as only a
        // broken engine could.
        join.job = (char *) "a";
        join.size = 1;
        m.body_case = MLXD__CTL__CTL__BODY_JOIN;
        m.join = &join;
        oracle_step(o, u8(r) & 1 ? FUZZ_WORLD : -1, &m, *now);
        return;
    }
    case 8: {
        Mlxd__Ctl__HelloFail hf = MLXD__CTL__HELLO_FAIL__INIT;
        Mlxd__Ctl__StatusRep rep = MLXD__CTL__STATUS_REP__INIT;
        if (u8(r) & 1) {
            hf.job = (char *) "a";
            m.body_case = MLXD__CTL__CTL__BODY_HELLO_FAIL;
            m.hello_fail = &hf;
        } else {
            m.body_case = MLXD__CTL__CTL__BODY_STATUS_REP;
            m.status_rep = &rep;
        }
        send_packed(o, from, &m, *now);
        return;
    }
    default:                            // 7: a status request, and time passes
        sq.id = u8(r);
        m.body_case = MLXD__CTL__CTL__BODY_STATUS_REQ;
        m.status_req = &sq;
        *now += (uint64_t) u16(r) * 1000;
        break;
    }
    send_packed(o, from, &m, *now);
}

static void step(struct reader *r, struct oracle *o, uint64_t *now) {
    Mlxd__Ctl__Ctl m = MLXD__CTL__CTL__INIT;
    struct mgroup *g = NULL;
    int from;
    *now += 1000;
    switch ((enum fuzz_step) (u8(r) % FUZZ_STEP_MAX)) {
    case FUZZ_STEP_JOIN: {
        Mlxd__Ctl__Join j = MLXD__CTL__JOIN__INIT;
        j.job = (char *) job_ids[u8(r) % N(job_ids)];
        j.uid = u8(r) < 0xf0 ? 1000 : 1001;
        j.size = sizes[u8(r) % N(sizes)];
        j.rank = pick_rank(r, j.size);
        from = u8(r) % FUZZ_WORLD;
        j.pid = 100 + u8(r);
        m.body_case = MLXD__CTL__CTL__BODY_JOIN;
        m.join = &j;
        send_packed(o, from, &m, *now);
        break;
    }
    case FUZZ_STEP_LEAVE: {
        Mlxd__Ctl__Leave l = MLXD__CTL__LEAVE__INIT;
        l.job = (char *) job_ids[u8(r) % N(job_ids)];
        l.rank = pick_rank(r, 4);
        from = u8(r) % FUZZ_WORLD;
        l.timed_out = u8(r) & 1;
        l.waited_ms = (uint64_t) u16(r) * 7;
        m.body_case = MLXD__CTL__CTL__BODY_LEAVE;
        m.leave = &l;
        send_packed(o, from, &m, *now);
        break;
    }
    case FUZZ_STEP_ARRIVE: {
        Mlxd__Ctl__Arrive a = MLXD__CTL__ARRIVE__INIT;
        Mlxd__Ctl__Desc d = MLXD__CTL__DESC__INIT;
        int64_t shape[MLXD_MAX_NDIM + 1];
        a.group = pick_group(r, o, &g);
        d.rank = pick_rank(r, g ? g->size : 4);
        from = pick_host(r, g, d.rank);
        a.seq = pick_seq(r, g);
        pick_desc(r, g, &d, shape);
        if (u8(r) != 0xff)              // almost always with its descriptor
            a.desc = &d;
        m.body_case = MLXD__CTL__CTL__BODY_ARRIVE;
        m.arrive = &a;
        send_packed(o, from, &m, *now);
        break;
    }
    case FUZZ_STEP_TIMEOUT: {
        Mlxd__Ctl__Timeout t = MLXD__CTL__TIMEOUT__INIT;
        t.group = pick_group(r, o, &g);
        t.rank = pick_rank(r, g ? g->size : 4);
        from = pick_host(r, g, -1);
        t.seq = pick_seq(r, g);
        t.waited_ms = (uint64_t) u16(r) * 13;
        m.body_case = MLXD__CTL__CTL__BODY_TIMEOUT;
        m.timeout = &t;
        send_packed(o, from, &m, *now);
        break;
    }
    case FUZZ_STEP_ABORT_REQ: {
        Mlxd__Ctl__AbortReq a = MLXD__CTL__ABORT_REQ__INIT;
        a.group = pick_group(r, o, &g);
        from = pick_host(r, g, -1);
        a.code = codes[u8(r) % N(codes)];
        a.message = (char *) messages[u8(r) % N(messages)];
        m.body_case = MLXD__CTL__CTL__BODY_ABORT_REQ;
        m.abort_req = &a;
        send_packed(o, from, &m, *now);
        break;
    }
    case FUZZ_STEP_GROUP_GONE: {
        Mlxd__Ctl__GroupGone gg = MLXD__CTL__GROUP_GONE__INIT;
        gg.group = pick_group(r, o, &g);
        from = pick_host(r, g, -1);
        m.body_case = MLXD__CTL__CTL__BODY_GROUP_GONE;
        m.group_gone = &gg;
        send_packed(o, from, &m, *now);
        break;
    }
    case FUZZ_STEP_DEPART: {
        Mlxd__Ctl__Depart d = MLXD__CTL__DEPART__INIT;
        d.group = pick_group(r, o, &g);
        d.rank = pick_rank(r, g ? g->size : 4);
        from = pick_host(r, g, d.rank);
        d.seq = pick_seq(r, g);
        d.message = (char *) messages[u8(r) % N(messages)];
        m.body_case = MLXD__CTL__CTL__BODY_DEPART;
        m.depart = &d;
        send_packed(o, from, &m, *now);
        break;
    }
    default:
        odd_step(r, o, now);
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!id_128[0]) {
        memset(id_128, 'j', sizeof id_128 - 1);
        memset(id_129, 'k', sizeof id_129 - 1);
        memset(long_message, 'm', sizeof long_message - 1);
    }
    struct reader r = { data, size };
    struct oracle *o = oracle_new(FUZZ_WORLD);
    uint64_t now = 1000000;
    while (r.n > 0)
        step(&r, o, &now);
    oracle_free(o);
    return 0;
}
