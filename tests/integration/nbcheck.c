/* nbcheck: client programs for the nonblocking ops (DESIGN.md, "Nonblocking
 * operations"): several requests in flight on one group, matched in the
 * order each member issued them; polling with mlxd_test; the daemon's cap;
 * mlxd_group_free with requests in flight; blocking and nonblocking ops
 * mixed; a peer that dies with requests in flight. One mode per behaviour;
 * each prints "FAIL ..." lines for what did not hold and exits 0 when
 * everything held. Ranks coordinate outside mlxd through files in
 * $MLXT_DIR (a wait has a deadline).
 *
 *   nbcheck inorder heap|alloc|staged   every op in flight at once, twice
 *                        over, with a blocking all_sum among them; waited
 *                        for in an order of their own; each result checked
 *   nbcheck poll         rank 0 polls an all_sum that rank 1 holds back:
 *                        not done while held, done once rank 1 joins in
 *   nbcheck overcap CAP  rank 0 has CAP receives in flight: one more is
 *                        MLXD_ENOMEM naming --max-inflight-per-client; the
 *                        CAP then get their messages
 *   nbcheck free         rank 0 frees its group with an all_sum in flight:
 *                        the free waits for it, and mlxd_wait then gives
 *                        its result
 *   nbcheck peer_dies    rank 1 issues an all_sum and a recv, sends, and is
 *                        killed; the others' requests in flight and later
 *                        get what can still complete, MLXD_EPEER for the
 *                        rest */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mlxd/mlxd.h"
#include "testclient.h"

#define FILE_DEADLINE_MS 60000
#define ROUNDS 2

static struct tc T;

#define fail(...) tc_fail(&T, __VA_ARGS__)
#define note(...) tc_note(&T, __VA_ARGS__)

#define init_or_die() tc_init_or_die(&T)
#define expect(g, what, rc, want) tc_expect(&T, g, what, rc, want)

// Issuing must succeed.
static void issued(mlxd_group *g, const char *what, int rc) {
    if (rc < 0) {
        fail("%s: %s: %s", what, mlxd_strerror(rc), mlxd_last_error(g));
        exit(1);
    }
}

// Tensors of the inorder mode: n int32 elements, value v(rank, k, i) for the
// k-th op (k differs per op, so a result matched with the wrong op shows).
static int32_t v(int rank, int k, size_t i) {
    return (int32_t) (rank * 1000 + k * 100 + (int) (i % 97));
}

// Buffers of the inorder mode: in mlxd_alloc memory, or on the heap (large
// ones are staged through shared memory by the library).
static int32_t *buf(mlxd_group *g, size_t n, bool alloc) {
    int32_t *p = alloc ? mlxd_alloc(g, n * 4) : malloc(n * 4);
    if (!p) {
        fail("out of memory for %zu elements: %s", n, mlxd_last_error(g));
        exit(1);
    }
    return p;
}

static void buf_free(mlxd_group *g, int32_t *p, bool alloc) {
    if (alloc)
        mlxd_free(g, p);
    else
        free(p);
}

static void check(const char *what, const int32_t *got, size_t n, int32_t (*want)(int, int, size_t, int, int),
                  int k, int rank, int size) {
    for (size_t i = 0; i < n; i++)
        if (got[i] != want(k, rank, i, size, (int) n)) {
            fail("%s: element %zu is %d, expected %d", what, i, got[i], want(k, rank, i, size, (int) n));
            return;
        }
}

static int32_t want_sum(int k, int rank, size_t i, int size, int n) {
    (void) rank;
    (void) n;
    int32_t s = 0;
    for (int r = 0; r < size; r++)
        s += v(r, k, i);
    return s;
}

static int32_t want_max(int k, int rank, size_t i, int size, int n) {
    (void) rank;
    (void) n;
    return v(size - 1, k, i);
}

static int32_t want_min(int k, int rank, size_t i, int size, int n) {
    (void) rank;
    (void) size;
    (void) n;
    return v(0, k, i);
}

// Gather of n-element blocks: element i of the result is block i / each.
static int32_t want_gather(int k, int rank, size_t i, int size, int n) {
    (void) rank;
    size_t each = (size_t) n / (size_t) size;
    return v((int) (i / each), k, i % each);
}

// sum_scatter: rank keeps block rank of the sum of x (of size * n elements).
static int32_t want_scatter(int k, int rank, size_t i, int size, int n) {
    return want_sum(k, rank, (size_t) rank * (size_t) n + i, size, n);
}

static int32_t want_recv(int k, int rank, size_t i, int size, int n) {
    (void) n;
    return v((rank + size - 1) % size, k, i);
}

static void fill(int32_t *x, size_t n, int rank, int k) {
    for (size_t i = 0; i < n; i++)
        x[i] = v(rank, k, i);
}

enum { OP_SUM, OP_MAX, OP_MIN, OP_GATHER, OP_SCATTER, OP_SEND, OP_RECV, OP_KINDS };

struct inflight {
    int kind, k;
    mlxd_request *r;
    int32_t *x, *out;
    size_t n_out;
};

static int mode_inorder(const char *mem) {
    mlxd_group *g = init_or_die();
    bool alloc = strcmp(mem, "alloc") == 0;
    // Staged: over the library's threshold (1 MiB), in ordinary memory.
    size_t n = strcmp(mem, "staged") == 0 ? (size_t) 300 * 1024 : 1000;
    int rank = mlxd_group_rank(g), size = mlxd_group_size(g);
    struct inflight f[ROUNDS * OP_KINDS];
    int nf = 0, k = 0;
    static const char *names[OP_KINDS] = { "iall_sum", "iall_max", "iall_min", "iall_gather",
                                           "isum_scatter", "isend", "irecv" };
    for (int round = 0; round < ROUNDS; round++) {
        for (int kind = 0; kind < OP_KINDS; kind++, k++) {
            struct inflight *e = &f[nf++];
            e->kind = kind;
            e->k = k;
            size_t n_in = kind == OP_SCATTER ? n * (size_t) size : n;
            e->n_out = kind == OP_GATHER ? n * (size_t) size : n;
            e->x = buf(g, n_in, alloc);
            e->out = kind == OP_SEND ? NULL : buf(g, e->n_out, alloc);
            fill(e->x, n_in, rank, k);
            mlxd_array xa = { MLXD_INT32, 1, { (int64_t) n_in }, e->x };
            mlxd_array oa = { MLXD_INT32, 1, { (int64_t) e->n_out }, e->out };
            int rc;
            switch (kind) {
            case OP_SUM: rc = mlxd_iall_sum(g, &xa, &oa, &e->r); break;
            case OP_MAX: rc = mlxd_iall_max(g, &xa, &oa, &e->r); break;
            case OP_MIN: rc = mlxd_iall_min(g, &xa, &oa, &e->r); break;
            case OP_GATHER: rc = mlxd_iall_gather(g, &xa, &oa, &e->r); break;
            case OP_SCATTER: rc = mlxd_isum_scatter(g, &xa, &oa, &e->r); break;
            case OP_SEND: rc = mlxd_isend(g, &xa, (rank + 1) % size, &e->r); break;
            default:
                // The recv's message is the previous rank's send of this round.
                e->k = k - 1;
                rc = mlxd_irecv(g, &oa, (rank + size - 1) % size, &e->r);
                break;
            }
            issued(g, names[kind], rc);
            // The library filled out's descriptor at once, as a blocking op does.
            if (kind == OP_GATHER && oa.shape[0] != (int64_t) e->n_out)
                fail("iall_gather filled out.shape[0] = %lld, expected %zu", (long long) oa.shape[0], e->n_out);
            // The descriptors may go now: only the data must stay.
            memset(&xa, 0xee, sizeof xa);
            memset(&oa, 0xee, sizeof oa);
        }
        // A blocking op among the ones in flight is the member's next op too.
        int32_t bx[4], bo[4];
        for (int i = 0; i < 4; i++)
            bx[i] = v(rank, 90 + round, (size_t) i);
        mlxd_array bxa = { MLXD_INT32, 1, { 4 }, bx }, boa = { MLXD_INT32, 1, { 4 }, bo };
        if (expect(g, "a blocking all_sum among requests in flight", mlxd_all_sum(g, &bxa, &boa), 0))
            check("the blocking all_sum", bo, 4, want_sum, 90 + round, rank, size);
        k++;
    }
    // Waited for in an order that is neither the issue order nor its reverse.
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < nf; i++) {
            struct inflight *e = &f[i];
            if ((i % 2) != pass)
                continue;
            char what[64];
            snprintf(what, sizeof what, "%s #%d", names[e->kind], i);
            if (!expect(g, what, mlxd_wait(e->r), 0))
                continue;
            switch (e->kind) {
            case OP_SUM: check(what, e->out, n, want_sum, e->k, rank, size); break;
            case OP_MAX: check(what, e->out, n, want_max, e->k, rank, size); break;
            case OP_MIN: check(what, e->out, n, want_min, e->k, rank, size); break;
            case OP_GATHER: check(what, e->out, e->n_out, want_gather, e->k, rank, size); break;
            case OP_SCATTER: check(what, e->out, n, want_scatter, e->k, rank, size); break;
            case OP_RECV: check(what, e->out, n, want_recv, e->k, rank, size); break;
            default: break;
            }
        }
    for (int i = 0; i < nf; i++) {
        buf_free(g, f[i].x, alloc);
        if (f[i].out)
            buf_free(g, f[i].out, alloc);
    }
    tc_smoke_sum(&T, g, "a blocking all_sum after them all");
    mlxd_group_free(g);
    return tc_finish(&T);
}

static int mode_poll(void) {
    mlxd_group *g = init_or_die();
    int rank = mlxd_group_rank(g), size = mlxd_group_size(g);
    int32_t x[8], out[8];
    fill(x, 8, rank, 5);
    mlxd_array xa = { MLXD_INT32, 1, { 8 }, x }, oa = { MLXD_INT32, 1, { 8 }, out };
    if (rank == 1)
        tc_wait_file(&T, "go", FILE_DEADLINE_MS);
    mlxd_request *r;
    issued(g, "iall_sum", mlxd_iall_sum(g, &xa, &oa, &r));
    bool done = true;
    if (rank == 0) {
        // Rank 1 has not issued it: it cannot be done, however often polled.
        for (int i = 0; i < 50; i++) {
            if (!expect(g, "mlxd_test", mlxd_test(r, &done), 0) || done) {
                fail("poll %d: done before rank 1 issued its all_sum", i);
                break;
            }
            usleep(2000);
        }
        tc_touch(&T, "go");
    }
    double deadline = tc_now_ms() + FILE_DEADLINE_MS;
    int polls = 0;
    do {
        if (!expect(g, "mlxd_test", mlxd_test(r, &done), 0))
            break;
        polls++;
        if (!done)
            usleep(1000);
    } while (!done && tc_now_ms() < deadline);
    if (!done)
        fail("the all_sum was not done %d s after every rank issued it (%d polls)", FILE_DEADLINE_MS / 1000, polls);
    // Testing again is fine; wait returns the result at once.
    expect(g, "mlxd_test once done", mlxd_test(r, &done), 0);
    if (expect(g, "mlxd_wait after polling", mlxd_wait(r), 0))
        check("the polled all_sum", out, 8, want_sum, 5, rank, size);
    note("done after %d polls", polls);
    expect(g, "mlxd_test(NULL)", mlxd_test(NULL, &done), MLXD_EINVAL);
    mlxd_group_free(g);
    return tc_finish(&T);
}

static int mode_overcap(int cap) {
    mlxd_group *g = init_or_die();
    int rank = mlxd_group_rank(g);
    enum { N = 16 };
    int32_t bufs[64][N];
    if (cap < 1 || cap > 63) {
        fail("cap %d is outside 1..63", cap);
        return tc_finish(&T);
    }
    if (rank == 1) {
        tc_wait_file(&T, "full", FILE_DEADLINE_MS);
        for (int k = 0; k < cap; k++) {
            fill(bufs[k], N, rank, k);
            mlxd_array xa = { MLXD_INT32, 1, { N }, bufs[k] };
            expect(g, "send", mlxd_send(g, &xa, 0), 0);
        }
    } else if (rank == 0) {
        mlxd_request *r[64];
        for (int k = 0; k <= cap; k++) {
            mlxd_array oa = { MLXD_INT32, 1, { N }, bufs[k] };
            issued(g, "irecv", mlxd_irecv(g, &oa, 1, &r[k]));
        }
        // The one over the cap is refused by the daemon: its result says so.
        int rc = mlxd_wait(r[cap]);
        if (expect(g, "the request over the cap", rc, MLXD_ENOMEM) &&
            !tc_mentions(mlxd_last_error(g), "--max-inflight-per-client"))
            fail("the refusal \"%s\" does not name --max-inflight-per-client", mlxd_last_error(g));
        else
            note("over the cap: %s", mlxd_last_error(g));
        tc_touch(&T, "full");
        for (int k = 0; k < cap; k++) {
            char what[32];
            snprintf(what, sizeof what, "irecv #%d", k);
            if (expect(g, what, mlxd_wait(r[k]), 0))
                check(what, bufs[k], N, want_recv, k, 0, 2);
        }
    }
    expect(g, "barrier", mlxd_barrier(g), 0);
    mlxd_group_free(g);
    return tc_finish(&T);
}

static int mode_free(void) {
    mlxd_group *g = init_or_die();
    int rank = mlxd_group_rank(g), size = mlxd_group_size(g);
    int32_t x[8], out[8];
    fill(x, 8, rank, 3);
    mlxd_array xa = { MLXD_INT32, 1, { 8 }, x }, oa = { MLXD_INT32, 1, { 8 }, out };
    if (rank == 0) {
        mlxd_request *r;
        issued(g, "iall_sum", mlxd_iall_sum(g, &xa, &oa, &r));
        tc_touch(&T, "freeing");
        // Waits for the all_sum, which the others start only now.
        mlxd_group_free(g);
        if (expect(NULL, "mlxd_wait after the group was freed", mlxd_wait(r), 0))
            check("the all_sum completed by mlxd_group_free", out, 8, want_sum, 3, rank, size);
        return tc_finish(&T);
    }
    tc_wait_file(&T, "freeing", FILE_DEADLINE_MS);
    if (expect(g, "all_sum with rank 0's part", mlxd_all_sum(g, &xa, &oa), 0))
        check("all_sum with rank 0's part", out, 8, want_sum, 3, rank, size);
    mlxd_group_free(g);
    return tc_finish(&T);
}

static int mode_peer_dies(void) {
    mlxd_group *g = init_or_die();
    int rank = mlxd_group_rank(g), size = mlxd_group_size(g);
    int32_t x[8], out[8], msg[8], got[8];
    fill(x, 8, rank, 1);
    mlxd_array xa = { MLXD_INT32, 1, { 8 }, x }, oa = { MLXD_INT32, 1, { 8 }, out };
    mlxd_array ma = { MLXD_INT32, 1, { 8 }, msg }, ga = { MLXD_INT32, 1, { 8 }, got };
    if (rank == 1) {
        // Both requests are in the daemon once the blocking send that
        // follows them on the connection returned.
        tc_wait_file(&T, "ready", FILE_DEADLINE_MS);
        mlxd_request *a;
        issued(g, "iall_sum", mlxd_iall_sum(g, &xa, &oa, &a));
        mlxd_request *b;
        issued(g, "irecv", mlxd_irecv(g, &ga, 0, &b));
        fill(msg, 8, rank, 2);
        if (expect(g, "send to rank 0", mlxd_send(g, &ma, 0), 0))
            raise(SIGKILL);
        (void) b;
        return tc_finish(&T);
    }
    mlxd_request *a = NULL, *b = NULL;
    if (rank == 0) {
        issued(g, "iall_sum", mlxd_iall_sum(g, &xa, &oa, &a));
        issued(g, "irecv", mlxd_irecv(g, &ga, 1, &b));
        tc_touch(&T, "ready");
        tc_wait_file(&T, "killed", FILE_DEADLINE_MS);
        // In flight when rank 1 died: both were handed over by rank 1.
        if (expect(g, "the all_sum in flight, which rank 1 had issued", mlxd_wait(a), 0))
            check("the all_sum in flight", out, 8, want_sum, 1, rank, size);
        if (expect(g, "the recv in flight, which rank 1 had sent", mlxd_wait(b), 0))
            check("the recv in flight", got, 8, want_recv, 2, 0, 2);
        issued(g, "irecv", mlxd_irecv(g, &ga, 1, &b));
        expect(g, "a recv from rank 1, which never sent it", mlxd_wait(b), MLXD_EPEER);
        fill(msg, 8, rank, 4);
        issued(g, "isend", mlxd_isend(g, &ma, 1, &b));
        expect(g, "a send to rank 1, which left", mlxd_wait(b), MLXD_EPEER);
    } else {
        if (expect(g, "all_sum, which rank 1 issued before it died", mlxd_all_sum(g, &xa, &oa), 0))
            check("the all_sum", out, 8, want_sum, 1, rank, size);
    }
    issued(g, "iall_sum", mlxd_iall_sum(g, &xa, &oa, &a));
    if (expect(g, "an all_sum rank 1 never issued", mlxd_wait(a), MLXD_EPEER) &&
        !tc_mentions(mlxd_last_error(g), "rank 1"))
        fail("the error \"%s\" does not name rank 1", mlxd_last_error(g));
    mlxd_group_free(g);
    return tc_finish(&T);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    tc_setup(&T, "nbcheck", mode);
    if (strcmp(mode, "inorder") == 0 && argc == 3)
        return mode_inorder(argv[2]);
    if (strcmp(mode, "poll") == 0)
        return mode_poll();
    if (strcmp(mode, "overcap") == 0 && argc == 3)
        return mode_overcap(atoi(argv[2]));
    if (strcmp(mode, "free") == 0)
        return mode_free();
    if (strcmp(mode, "peer_dies") == 0)
        return mode_peer_dies();
    fprintf(stderr, "usage: nbcheck inorder heap|alloc|staged | poll | overcap CAP | free | peer_dies\n");
    return 2;
}
