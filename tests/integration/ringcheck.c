/* The request/reply ring (proto/PROTOCOL.md, "The ring"), seen from a
 * client: ringcheck MODE, one rank of a job (mlxctl launch or spawn_rank).
 *   on        the connection has a ring (a memfd:mlxring mapping), and ops work
 *   off       with $MLXD_RING=0 it has none, and ops work
 *   interleave  ops that go by the ring (8 B) and by ZeroMQ (256 KiB) in
 *             flight together on one connection, and blocking between them:
 *             every result right, in issue order
 *   full      more 64 KiB all_sums in flight than the ring holds
 *   corrupt   rank 0 writes an impossible record into its ring: its op in
 *             flight fails with MLXD_EPROTO naming the ring, its next op finds
 *             the connection closed, rank 1 learns that rank 0 left
 *   kill      rank 1 puts an all_sum into the ring and SIGKILLs itself; rank
 *             0's all_sum completes (the op was accepted) or fails MLXD_EPEER */
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ring.h"
#include "testclient.h"

static struct tc t;
static int rank, size;

// The first mapping of this process's ring, or NULL.
static struct wire_ring_hdr *find_ring(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    void *base = NULL;
    while (f && !base && fgets(line, sizeof line, f)) {
        unsigned long lo;
        if (strstr(line, "/memfd:mlxring") && sscanf(line, "%lx-", &lo) == 1)
            base = (void *) lo;
    }
    if (f)
        fclose(f);
    return base;
}

// An all_sum of n floats, rank r contributing r + 1 + i: true when right.
static bool sum_check(const float *out, size_t n, int k) {
    for (size_t i = 0; i < n; i++) {
        float want = 0;
        for (int r = 0; r < size; r++)
            want += (float) (r + 1 + k) + (float) (i % 7);
        if (out[i] != want) {
            tc_fail(&t, "op %d element %zu is %g, expected %g", k, i, out[i], want);
            return false;
        }
    }
    return true;
}

static float *filled(size_t n, int k) {
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = (float) (rank + 1 + k) + (float) (i % 7);
    return x;
}

// count ops in flight at once, op k of n_of(k) floats; then all waited.
static void in_flight(mlxd_group *g, int count, size_t (*n_of)(int k)) {
    mlxd_request *req[64];
    float *in[64], *out[64];
    for (int k = 0; k < count; k++) {
        size_t n = n_of(k);
        in[k] = filled(n, k);
        out[k] = calloc(n, sizeof(float));
        mlxd_array x = { MLXD_FLOAT32, 1, { (int64_t) n }, in[k] }, o = { MLXD_FLOAT32, 1, { (int64_t) n }, out[k] };
        if (!tc_expect(&t, g, "mlxd_iall_sum", mlxd_iall_sum(g, &x, &o, &req[k]), 0))
            exit(tc_finish(&t));
    }
    for (int k = 0; k < count; k++) {
        if (tc_expect(&t, g, "mlxd_wait", mlxd_wait(req[k]), 0))
            sum_check(out[k], n_of(k), k);
        free(in[k]);
        free(out[k]);
    }
}

static size_t alternate(int k) {
    return k % 3 == 2 ? 65536 : 2;      // 256 KiB by ZeroMQ, 8 B by the ring
}

static size_t quarter_area(int k) {
    (void) k;
    return 16384;                       // 64 KiB: three fit in the ring
}

static void blocking(mlxd_group *g, size_t n, int k) {
    float *in = filled(n, k), *out = calloc(n, sizeof(float));
    mlxd_array x = { MLXD_FLOAT32, 1, { (int64_t) n }, in }, o = { MLXD_FLOAT32, 1, { (int64_t) n }, out };
    if (tc_expect(&t, g, "mlxd_all_sum", mlxd_all_sum(g, &x, &o), 0))
        sum_check(out, n, k);
    free(in);
    free(out);
}

// Rank 0 has an all_sum in flight, then writes a record header of an
// impossible length into its ring as a hostile client would, and wakes the
// daemon (a Ping on a connection of its own): the all_sum fails with
// MLXD_EPROTO naming the ring, and the next op finds the connection closed.
static void mode_corrupt(mlxd_group *g) {
    int32_t v = 1, out = 0;
    mlxd_array x = { MLXD_INT32, 0, { 0 }, &v }, o = { MLXD_INT32, 0, { 0 }, &out };
    if (rank != 0) {
        tc_wait_file(&t, "corrupted", 30000);
        int rc = mlxd_all_sum(g, &x, &o);
        // The group learns why its member left (its code and reason).
        if ((rc != MLXD_EPEER && rc != MLXD_EPROTO) || !tc_mentions(mlxd_last_error(g), "rank 0"))
            tc_fail(&t, "all_sum after rank 0 was closed gave %s, not MLXD_EPEER or MLXD_EPROTO naming rank 0: %s",
                    mlxd_strerror(rc), mlxd_last_error(g));
        return;
    }
    struct wire_ring_hdr *h = find_ring();
    mlxd_request *r;
    if (!h) {
        tc_fail(&t, "no ring to corrupt");
        return;
    }
    if (!tc_expect(&t, g, "mlxd_iall_sum", mlxd_iall_sum(g, &x, &o, &r), 0))
        return;
    uint64_t head = atomic_load(&h->req_head);
    uint32_t rec[2] = { 0x7fffffffu, 0 };
    memcpy((uint8_t *) h + WIRE_RING_HDR + (head & (h->area - 1)), rec, sizeof rec);
    atomic_store(&h->req_head, head + sizeof rec);
    double t0 = tc_now_ms();
    if (!mlxd_is_available())
        tc_fail(&t, "the daemon does not answer a ping after the corruption");
    int rc = mlxd_wait(r);
    if (rc != MLXD_EPROTO || !tc_mentions(mlxd_last_error(g), "ring"))
        tc_fail(&t, "the all_sum in flight gave %s (%s), not MLXD_EPROTO naming the ring", mlxd_strerror(rc),
                mlxd_last_error(g));
    else
        tc_note(&t, "corrupted ring: %s after %.0f ms: %s", mlxd_strerror(rc), tc_now_ms() - t0, mlxd_last_error(g));
    rc = mlxd_all_sum(g, &x, &o);
    if (rc != MLXD_EUNAVAILABLE && rc != MLXD_EPROTO)
        tc_fail(&t, "an op after the ring was refused gave %s: %s", mlxd_strerror(rc), mlxd_last_error(g));
    tc_touch(&t, "corrupted");
}

static void mode_kill(mlxd_group *g) {
    int32_t v = 1, out = 0;
    mlxd_array x = { MLXD_INT32, 0, { 0 }, &v }, o = { MLXD_INT32, 0, { 0 }, &out };
    if (rank == 1) {
        mlxd_request *r;
        tc_expect(&t, g, "mlxd_iall_sum", mlxd_iall_sum(g, &x, &o, &r), 0);
        raise(SIGKILL);
    }
    int rc = mlxd_all_sum(g, &x, &o);
    if (rc == 0 && out != size)
        tc_fail(&t, "all_sum with a member killed after issuing it gave %d, expected %d", out, size);
    else if (rc != 0 && rc != MLXD_EPEER)
        tc_fail(&t, "all_sum with a member killed gave %s: %s", mlxd_strerror(rc), mlxd_last_error(g));
    else
        tc_note(&t, "all_sum with rank 1 killed: %s", rc ? mlxd_strerror(rc) : "completed");
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    tc_setup(&t, "ringcheck", mode);
    mlxd_group *g = tc_init_or_die(&t);
    rank = mlxd_group_rank(g);
    size = mlxd_group_size(g);
    if (strcmp(mode, "on") == 0 || strcmp(mode, "off") == 0) {
        bool want = strcmp(mode, "on") == 0;
        if ((find_ring() != NULL) != want)
            tc_fail(&t, "the connection %s a ring", want ? "has no" : "has");
        blocking(g, 2, 0);
        in_flight(g, 9, alternate);
    } else if (strcmp(mode, "interleave") == 0) {
        for (int round = 0; round < 5; round++) {
            in_flight(g, 12, alternate);
            blocking(g, 65536, round);
            blocking(g, 2, round);
        }
    } else if (strcmp(mode, "full") == 0) {
        for (int round = 0; round < 3; round++)
            in_flight(g, 24, quarter_area);
    } else if (strcmp(mode, "corrupt") == 0) {
        mode_corrupt(g);
    } else if (strcmp(mode, "kill") == 0) {
        mode_kill(g);
    } else {
        tc_fail(&t, "unknown mode %s", mode);
    }
    mlxd_group_free(g);
    return tc_finish(&t);
}
