/* The ring's records (proto/ring.c): what one side writes the other reads,
 * wrapping at the area's end; a full ring says so; and every impossible
 * index or length the other side may write is refused, never followed. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ring.h"

#define AREA WIRE_RING_AREA_MIN

struct pair {
    uint8_t *mem;
    struct ring_end c_req, c_rep, d_req, d_rep;  // the client's and the daemon's views
};

static struct pair *pair_new(void) {
    struct pair *p = calloc(1, sizeof *p);
    p->mem = aligned_alloc(4096, WIRE_RING_HDR + 2 * AREA);
    memset(p->mem, 0, WIRE_RING_HDR + 2 * AREA);
    struct wire_ring_hdr *h = (struct wire_ring_hdr *) p->mem;
    h->magic = WIRE_RING_MAGIC;
    h->version = WIRE_RING_VERSION;
    h->area = AREA;
    assert_int_equal(ring_check_header(h, WIRE_RING_HDR + 2 * AREA), AREA);
    ring_ends(p->mem, AREA, true, &p->c_req, &p->c_rep);
    ring_ends(p->mem, AREA, false, &p->d_req, &p->d_rep);
    return p;
}

static void pair_free(struct pair *p) {
    free(p->mem);
    free(p);
}

static void records_arrive_whole_and_in_order_across_the_wrap(void **state) {
    struct pair *p = pair_new();
    uint8_t pb[100], data[700], got_pb[100], got_data[700];
    size_t pl, dl;
    bool frame;
    (void) state;
    // Enough records to go round the area several times.
    for (int i = 0; i < 50; i++) {
        memset(pb, i, sizeof pb);
        memset(data, 255 - i, sizeof data);
        size_t n = 1 + (size_t) i * 13 % sizeof data;
        assert_int_equal(ring_put(&p->c_req, pb, 1 + (size_t) i, data, n), 0);
        assert_false(ring_drained(&p->c_req));
        assert_int_equal(ring_peek(&p->d_req, 1000, 1000, &pl, &dl, &frame), 1);
        assert_int_equal(pl, 1 + (size_t) i);
        assert_int_equal(dl, n);
        assert_true(frame);
        ring_read(&p->d_req, got_pb, got_data);
        assert_memory_equal(got_pb, pb, pl);
        assert_memory_equal(got_data, data, dl);
        assert_true(ring_drained(&p->c_req));
        assert_int_equal(ring_peek(&p->d_req, 1000, 1000, &pl, &dl, &frame), 0);
    }
    pair_free(p);
}

static void a_record_without_frame_differs_from_an_empty_frame(void **state) {
    struct pair *p = pair_new();
    size_t pl, dl;
    bool frame;
    (void) state;
    assert_int_equal(ring_put(&p->d_rep, "ab", 2, NULL, 0), 0);
    assert_int_equal(ring_put(&p->d_rep, "cd", 2, "", 0), 0);
    assert_int_equal(ring_peek(&p->c_rep, 10, 10, &pl, &dl, &frame), 1);
    assert_false(frame);
    ring_read(&p->c_rep, NULL, NULL);
    assert_int_equal(ring_peek(&p->c_rep, 10, 10, &pl, &dl, &frame), 1);
    assert_true(frame);
    assert_int_equal(dl, 0);
    pair_free(p);
}

static void a_full_ring_says_again_later_and_a_huge_record_never(void **state) {
    struct pair *p = pair_new();
    static uint8_t data[AREA];
    size_t pl, dl;
    bool frame;
    (void) state;
    assert_int_equal(ring_put(&p->c_req, "x", 1, data, AREA), -EMSGSIZE);
    assert_int_equal(ring_put(&p->c_req, "x", 1, data, AREA / 2), 0);
    assert_int_equal(ring_put(&p->c_req, "x", 1, data, AREA / 2), -EAGAIN);
    assert_int_equal(ring_peek(&p->d_req, 10, AREA, &pl, &dl, &frame), 1);
    ring_read(&p->d_req, NULL, NULL);
    assert_int_equal(ring_put(&p->c_req, "x", 1, data, AREA / 2), 0);
    pair_free(p);
}

static void impossible_indices_and_lengths_are_refused(void **state) {
    struct pair *p = pair_new();
    struct wire_ring_hdr *h = (struct wire_ring_hdr *) p->mem;
    size_t pl, dl;
    bool frame;
    (void) state;
    // A head further than the area ahead of the daemon's tail.
    atomic_store(&h->req_head, AREA + 8);
    assert_int_equal(ring_peek(&p->d_req, 100, 100, &pl, &dl, &frame), -EPROTO);
    // A head behind the tail (wraps to a huge count).
    atomic_store(&h->req_head, (uint64_t) -8);
    assert_int_equal(ring_peek(&p->d_req, 100, 100, &pl, &dl, &frame), -EPROTO);
    // Less than a record header published.
    atomic_store(&h->req_head, 4);
    assert_int_equal(ring_peek(&p->d_req, 100, 100, &pl, &dl, &frame), -EPROTO);
    // A record longer than what is published, or than the limits.
    uint32_t rec[2] = { 50 | WIRE_RING_FRAME, 0 };
    memcpy(p->d_req.area, rec, sizeof rec);
    atomic_store(&h->req_head, 16);
    assert_int_equal(ring_peek(&p->d_req, 100, 100, &pl, &dl, &frame), -EPROTO);
    atomic_store(&h->req_head, 64);
    assert_int_equal(ring_peek(&p->d_req, 40, 100, &pl, &dl, &frame), -EPROTO);
    assert_int_equal(ring_peek(&p->d_req, 100, 100, &pl, &dl, &frame), 1);
    // Data without the frame flag.
    rec[0] = 8;
    rec[1] = 8;
    memcpy(p->d_req.area, rec, sizeof rec);
    assert_int_equal(ring_peek(&p->d_req, 100, 100, &pl, &dl, &frame), -EPROTO);
    // A reply tail the client moved past the daemon's head.
    atomic_store(&h->rep_tail, 64);
    assert_int_equal(ring_put(&p->d_rep, "x", 1, NULL, 0), -EPROTO);
    pair_free(p);
}

static void headers_the_daemon_cannot_use_are_refused(void **state) {
    struct pair *p = pair_new();
    struct wire_ring_hdr *h = (struct wire_ring_hdr *) p->mem;
    (void) state;
    assert_int_equal(ring_check_header(h, WIRE_RING_HDR + 2 * AREA - 1), 0);
    h->area = AREA + 1;
    assert_int_equal(ring_check_header(h, 1u << 30), 0);
    h->area = WIRE_RING_AREA_MAX * 2;
    assert_int_equal(ring_check_header(h, 1u << 30), 0);
    h->area = AREA;
    h->version = 2;
    assert_int_equal(ring_check_header(h, 1u << 30), 0);
    h->version = WIRE_RING_VERSION;
    h->magic = 0;
    assert_int_equal(ring_check_header(h, 1u << 30), 0);
    pair_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(records_arrive_whole_and_in_order_across_the_wrap),
        cmocka_unit_test(a_record_without_frame_differs_from_an_empty_frame),
        cmocka_unit_test(a_full_ring_says_again_later_and_a_huge_record_never),
        cmocka_unit_test(impossible_indices_and_lengths_are_refused),
        cmocka_unit_test(headers_the_daemon_cannot_use_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
