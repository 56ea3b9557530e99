/* The ring's records (see ring.h): pure code, shared by libmlxd and mlxd,
 * driven by the unit tests and the fuzzer as they are. */
#include "ring.h"

#include <errno.h>
#include <string.h>

static bool is_pow2(uint64_t x) {
    return x && !(x & (x - 1));
}

uint64_t ring_record_size(uint64_t size, size_t pb_len, size_t data_len) {
    if (pb_len >= WIRE_RING_FRAME || data_len > UINT32_MAX)
        return 0;
    uint64_t n = WIRE_RING_REC + (uint64_t) pb_len + (uint64_t) data_len;
    n = (n + 7u) & ~(uint64_t) 7u;
    return n <= size ? n : 0;
}

uint32_t ring_check_header(const struct wire_ring_hdr *h, size_t len) {
    uint32_t magic, version, area;
    // volatile reads: each field once, whatever the other side does meanwhile.
    magic = *(const volatile uint32_t *) &h->magic;
    version = *(const volatile uint32_t *) &h->version;
    area = *(const volatile uint32_t *) &h->area;
    if (magic != WIRE_RING_MAGIC || version != WIRE_RING_VERSION || !is_pow2(area) || area < WIRE_RING_AREA_MIN ||
        area > WIRE_RING_AREA_MAX)
        return 0;
    if (len < WIRE_RING_HDR || (len - WIRE_RING_HDR) / 2 < area)
        return 0;
    return area;
}

void ring_ends(uint8_t *base, uint32_t area, bool client, struct ring_end *ret_req, struct ring_end *ret_rep) {
    struct wire_ring_hdr *h = (struct wire_ring_hdr *) base;
    *ret_req = (struct ring_end) { .area = base + WIRE_RING_HDR, .size = area };
    *ret_rep = (struct ring_end) { .area = base + WIRE_RING_HDR + area, .size = area };
    if (client) {
        ret_req->mine_pub = &h->req_head;
        ret_req->theirs = &h->req_tail;
        ret_rep->mine_pub = &h->rep_tail;
        ret_rep->theirs = &h->rep_head;
    } else {
        ret_req->mine_pub = &h->req_tail;
        ret_req->theirs = &h->req_head;
        ret_rep->mine_pub = &h->rep_head;
        ret_rep->theirs = &h->rep_tail;
    }
}

// Copies n bytes in or out at index pos, wrapping at the area's end. The
// area is shared: the copy is a plain memcpy, and what a producer changes
// meanwhile only garbles bytes already bounded.
static void copy_in(struct ring_end *e, uint64_t pos, const void *src, size_t n) {
    uint64_t off = pos & (e->size - 1);
    size_t first = n < e->size - off ? n : (size_t) (e->size - off);
    memcpy(e->area + off, src, first);
    if (n > first)
        memcpy(e->area, (const uint8_t *) src + first, n - first);
}

static void copy_out(const struct ring_end *e, uint64_t pos, void *dst, size_t n) {
    uint64_t off = pos & (e->size - 1);
    size_t first = n < e->size - off ? n : (size_t) (e->size - off);
    memcpy(dst, e->area + off, first);
    if (n > first)
        memcpy((uint8_t *) dst + first, e->area, n - first);
}

int ring_put(struct ring_end *e, const void *pb, size_t pb_len, const void *data, size_t data_len) {
    uint64_t need = ring_record_size(e->size, pb_len, data_len);
    if (!need || (!data && data_len))
        return -EMSGSIZE;
    uint64_t tail = atomic_load_explicit(e->theirs, memory_order_acquire);
    uint64_t used = e->mine - tail;
    // A tail ahead of our head, or further back than the area, is a lie.
    if (used > e->size)
        return -EPROTO;
    if (need > e->size - used)
        return -EAGAIN;
    uint32_t rec[2] = { (uint32_t) pb_len | (data ? WIRE_RING_FRAME : 0), (uint32_t) data_len };
    copy_in(e, e->mine, rec, sizeof rec);
    if (pb_len)
        copy_in(e, e->mine + WIRE_RING_REC, pb, pb_len);
    if (data_len)
        copy_in(e, e->mine + WIRE_RING_REC + pb_len, data, data_len);
    e->mine += need;
    atomic_store_explicit(e->mine_pub, e->mine, memory_order_release);
    return 0;
}

int ring_peek(struct ring_end *e, size_t max_pb, size_t max_data, size_t *ret_pb_len, size_t *ret_data_len,
              bool *ret_frame) {
    uint64_t head = atomic_load_explicit(e->theirs, memory_order_acquire);
    uint64_t avail = head - e->mine;
    e->peeked = false;
    if (avail == 0)
        return 0;
    // Producers publish whole records: anything else is a broken ring.
    if (avail > e->size || avail < WIRE_RING_REC)
        return -EPROTO;
    uint32_t rec[2];
    copy_out(e, e->mine, rec, sizeof rec);
    bool frame = rec[0] & WIRE_RING_FRAME;
    rec[0] &= ~WIRE_RING_FRAME;
    uint64_t need = ring_record_size(e->size, rec[0], rec[1]);
    if (!need || need > avail || rec[0] > max_pb || rec[1] > max_data || (!frame && rec[1]))
        return -EPROTO;
    e->peek_pb = rec[0];
    e->peek_data = rec[1];
    e->peeked = true;
    *ret_pb_len = rec[0];
    *ret_data_len = rec[1];
    *ret_frame = frame;
    return 1;
}

void ring_read(struct ring_end *e, void *pb, void *data) {
    if (!e->peeked)
        return;
    if (pb && e->peek_pb)
        copy_out(e, e->mine + WIRE_RING_REC, pb, e->peek_pb);
    if (data && e->peek_data)
        copy_out(e, e->mine + WIRE_RING_REC + e->peek_pb, data, e->peek_data);
    e->mine += ring_record_size(e->size, e->peek_pb, e->peek_data);
    e->peeked = false;
    atomic_store_explicit(e->mine_pub, e->mine, memory_order_release);
}

bool ring_drained(const struct ring_end *e) {
    return atomic_load_explicit(e->theirs, memory_order_acquire) == e->mine;
}

bool ring_pending(const struct ring_end *e) {
    return atomic_load_explicit(e->theirs, memory_order_acquire) != e->mine;
}
