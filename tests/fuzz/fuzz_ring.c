/* libFuzzer target: a client's request ring as the daemon reads it
 * (daemon/ring.c, take_one): records found with ring_peek against the
 * daemon's bounds, copied out with ring_read, decoded with
 * mlxd__request__unpack and checked by request_validate_lengths, as the
 * daemon does before dispatching; and the reply side's ring_put against a
 * reply tail the client wrote. The client is hostile: it may publish any
 * head, rewrite record headers, and (flag FUZZ_RING_RACE) keep rewriting
 * the whole area and its head from another thread while the daemon reads,
 * which the copies must survive (ASan sees any read or write out of
 * bounds; the invariants below see any length that escaped its bound).
 *
 * Input layout: [flags] [head delta: int16 LE] [poke offset: u16 LE]
 * [poke value: u32 LE] [reply tail delta: int16 LE], then records, each
 * [pb_len: u16 LE] [data_len: u16 LE, 0xffff: the input tensor's size]
 * [pb_len bytes of Request protobuf]; the client writes them with ring_put
 * (data bytes are a pattern), the daemon reads after each one when
 * FUZZ_RING_INTERLEAVE is set (so that records wrap), else after all. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_format.h"
#include "request.h"
#include "ring.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum {
    FUZZ_RING_RACE = 1,                 // another thread rewrites the ring meanwhile
    FUZZ_RING_HEAD = 2,                 // the head delta applies
    FUZZ_RING_POKE = 4,                 // the poke applies (a u32 anywhere in the area)
    FUZZ_RING_INTERLEAVE = 8,           // the daemon reads after each record
    FUZZ_RING_TAIL = 16,                // the reply tail delta applies
};

#define AREA WIRE_RING_AREA_MIN

static const struct config cfg = {
    .max_tensor_bytes = UINT64_C(4) << 30,
    .max_group_size = 65536,
};

struct race {
    uint8_t *mem;
    const uint8_t *noise;
    size_t nnoise;
    atomic_bool stop;
};

// The hostile client: flips area bytes and moves the head, until told.
static void *rewrite(void *arg) {
    struct race *r = arg;
    struct wire_ring_hdr *h = (struct wire_ring_hdr *) r->mem;
    uint8_t *area = r->mem + WIRE_RING_HDR;
    for (size_t i = 0; !atomic_load(&r->stop); i++) {
        uint8_t v = r->nnoise ? r->noise[i % r->nnoise] : (uint8_t) i;
        area[(i * 131) % AREA] ^= v;
        if (i % 64 == 0)
            atomic_fetch_add(&h->req_head, (uint64_t) (int8_t) v);
    }
    return NULL;
}

static uint16_t get16(const uint8_t *p) {
    return (uint16_t) (p[0] | p[1] << 8);
}

// The daemon's read of every record there: 0 when the ring is empty, -1
// when it refused the ring (then it reads no more).
static int daemon_read(struct ring_end *e) {
    static uint8_t pb[WIRE_MAX_PB_FRAME];
    for (int k = 0; k < 64; k++) {
        size_t pl, dl;
        bool frame;
        uint64_t before = e->mine;
        int r = ring_peek(e, sizeof pb, AREA, &pl, &dl, &frame);
        if (r <= 0)
            return r;
        CHECK(pl <= sizeof pb && dl <= AREA && (frame || dl == 0));
        uint8_t *buf = frame ? malloc(dl ? dl : 1) : NULL;
        ring_read(e, pb, buf);
        CHECK(e->mine - before == ring_record_size(AREA, pl, dl));
        CHECK(atomic_load(e->mine_pub) == e->mine);
        Mlxd__Request *req = mlxd__request__unpack(NULL, pl, pb);
        if (!req) {
            free(buf);
            return -1;
        }
        size_t lens[1] = { dl };
        char err[512];
        int code = request_validate_lengths(req, lens, frame ? 1 : 0, &cfg, err, sizeof err);
        CHECK(code <= 0);
        if (code == 0 && req->body_case == MLXD__REQUEST__BODY_OP && req->op->input && req->op->input->frame) {
            uint64_t n = 0;
            CHECK(wire_tensor_nbytes(req->op->input->dtype, req->op->input->n_shape, req->op->input->shape, &n) == 0);
            CHECK(frame && n == dl);
        }
        mlxd__request__free_unpacked(req, NULL);
        free(buf);
    }
    return 1;
}

// The data length a record asks for: its own, or (0xffff) its tensor's.
static size_t data_len(const uint8_t *pb, size_t pl, uint16_t want) {
    if (want != 0xffff)
        return want;
    Mlxd__Request *req = mlxd__request__unpack(NULL, pl, pb);
    uint64_t n = 0;
    if (req && req->body_case == MLXD__REQUEST__BODY_OP && req->op && req->op->input)
        wire_tensor_nbytes(req->op->input->dtype, req->op->input->n_shape, req->op->input->shape, &n);
    if (req)
        mlxd__request__free_unpacked(req, NULL);
    return n < AREA ? (size_t) n : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static uint8_t pattern[AREA];
    if (size < 11)
        return 0;
    uint8_t flags = data[0];
    int16_t head_delta = (int16_t) get16(data + 1), tail_delta = (int16_t) get16(data + 9);
    uint16_t poke_at = get16(data + 3);
    uint32_t poke;
    memcpy(&poke, data + 5, sizeof poke);
    const uint8_t *p = data + 11, *end = data + size;

    uint8_t *mem = aligned_alloc(4096, WIRE_RING_HDR + 2 * AREA);
    memset(mem, 0, WIRE_RING_HDR + 2 * AREA);
    memset(pattern, 0xa5, sizeof pattern);
    struct wire_ring_hdr *h = (struct wire_ring_hdr *) mem;
    h->magic = WIRE_RING_MAGIC;
    h->version = WIRE_RING_VERSION;
    h->area = AREA;
    uint32_t area = ring_check_header(h, WIRE_RING_HDR + 2 * AREA);
    CHECK(area == AREA);
    struct ring_end c_req, c_rep, d_req, d_rep;
    ring_ends(mem, area, true, &c_req, &c_rep);
    ring_ends(mem, area, false, &d_req, &d_rep);

    struct race race = { .mem = mem, .noise = p, .nnoise = (size_t) (end - p) };
    pthread_t t;
    bool racing = (flags & FUZZ_RING_RACE) && pthread_create(&t, NULL, rewrite, &race) == 0;

    int state = 0;
    while (end - p >= 4 && state >= 0) {
        size_t pl = get16(p);
        uint16_t want = get16(p + 2);
        p += 4;
        if (pl > (size_t) (end - p))
            pl = (size_t) (end - p);
        size_t dl = data_len(p, pl, want);
        // A full ring: the daemon reads, and the client tries once more.
        if (ring_put(&c_req, p, pl, pattern, dl) == -EAGAIN && (state = daemon_read(&d_req)) >= 0)
            ring_put(&c_req, p, pl, pattern, dl);
        p += pl;
        if ((flags & FUZZ_RING_INTERLEAVE) && state >= 0)
            state = daemon_read(&d_req);
    }
    if (flags & FUZZ_RING_HEAD)
        atomic_fetch_add(&h->req_head, (uint64_t) (int64_t) head_delta);
    if (flags & FUZZ_RING_POKE)
        memcpy(mem + WIRE_RING_HDR + poke_at % (AREA - 3), &poke, sizeof poke);
    if (state >= 0)
        daemon_read(&d_req);

    // The reply side: the daemon writes against whatever tail the client set.
    if (flags & FUZZ_RING_TAIL)
        atomic_store(&h->rep_tail, (uint64_t) (int64_t) tail_delta);
    for (int i = 0; i < 8; i++) {
        uint64_t before = d_rep.mine;
        int r = ring_put(&d_rep, "reply", 5, pattern, 100u * (unsigned) i);
        CHECK(r == 0 || r == -EAGAIN || r == -EPROTO);
        CHECK(r == 0 ? d_rep.mine - before == ring_record_size(AREA, 5, 100u * (unsigned) i) : d_rep.mine == before);
    }

    if (racing) {
        atomic_store(&race.stop, true);
        pthread_join(t, NULL);
    }
    free(mem);
    return 0;
}
