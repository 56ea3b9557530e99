/* hardclient: client programs for the hardening tests (hardening.sh), one
 * mode per behaviour: the daemon's caps, processes of another user, clients
 * killed at chosen points, a daemon that dies under its clients, and the
 * latency of small ops while another client floods the daemon. Public API
 * only. Each mode checks the exact error code and that the detailed message
 * names the right thing, prints "FAIL ..." lines for what did not hold, and
 * exits 0 when everything held.
 *
 * The job comes from the environment (MLXD_JOB, MLXD_RANK, MLXD_SIZE,
 * MLXD_SOCKET), as mlxctl launch or the harness's spawn_rank set it. Ranks and
 * the test script meet through files $MLXT_DIR/JOB.NAME (created here with
 * touch_file, waited for with a deadline in wait_file), so that a test holds a
 * member back without sleeping. Times that the script compares with its own
 * (the moment it killed something) are printed as wall-clock milliseconds,
 * "at_ms=...".
 *
 *   hardclient MODE [ARGS]
 *
 * Modes:
 *   expect_init [--nonstrict] CODE WORD...  mlxd_init gives CODE (OK, EDENIED,
 *                                  ENOMEM...) with a message naming every WORD
 *   hold                           init, all_sum, touch R.ready, wait for
 *                                  "go", all_sum again, leave
 *   latency N                      N all_sums of 64 bytes, then "flood.on",
 *                                  N more: medians of both phases
 *   tensor_cap CAP inline|staged|alloc  all_sum of CAP bytes works, of CAP+4
 *                                  is refused (staged, alloc: MLXD_ENOMEM
 *                                  naming the limit; inline: an error, never
 *                                  a hang)
 *   queued MSG N                   job of 3: rank 0 sends N messages of MSG
 *                                  bytes to rank 1 before it receives, then a
 *                                  ring of MSG bytes
 *   shm_cap CAP                    rank 0 allocates past the daemon's cap:
 *                                  NULL with its message; rank 1 keeps working
 *   groups CAP                     rank 0 keeps CAP-1 split groups and fails
 *                                  the next split with MLXD_ENOMEM; rank 1
 *                                  keeps working
 *   survivor NBYTES heap|alloc [may_complete]  waits in an all_sum of
 *                                  NBYTES whose other member is killed:
 *                                  MLXD_EPEER, or with may_complete the sum
 *                                  of every part when the victim's had
 *                                  reached the daemon; then MLXD_EPEER
 *   victim NBYTES heap|alloc       after "go", an all_sum of NBYTES (killed)
 *   holder NBYTES                  holds two mlxd_alloc segments (killed)
 *   late [NBYTES heap|alloc]       after "late", the all_sum of NBYTES (as
 *                                  the survivor's), then a barrier: MLXD_EPEER
 *   daemon_killed                  rank 0 in all_sum, rank 1 in recv when
 *                                  the daemon is killed: MLXD_EUNAVAILABLE */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mlxd/mlxd.h"
#include "testclient.h"

#define FILE_DEADLINE_MS 60000

struct ctx {
    const char *mode, *dir, *job;
    int rank, size;                     // from the environment
    struct tc t;                        // reporting and rendezvous
};

// Reporting and rendezvous go through the shared test client code.
#define fail(c, ...) tc_fail(&(c)->t, __VA_ARGS__)
#define note(c, ...) tc_note(&(c)->t, __VA_ARGS__)
#define finish(c) tc_finish(&(c)->t)
#define mentions tc_mentions
#define touch(c, name) tc_touch(&(c)->t, name)
#define touch_file(c, name) tc_touch(&(c)->t, name)
#define wait_file(c, name) tc_wait_file(&(c)->t, name, FILE_DEADLINE_MS)
#define smoke_sum(c, g, what) tc_smoke_sum(&(c)->t, g, what)





static double mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}

// Wall-clock milliseconds, comparable with the script's `date +%s%3N`.
static long long wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}





static mlxd_group *init_or_die(struct ctx *c) {
    mlxd_init_opts o = MLXD_INIT_OPTS_DEFAULT;
    mlxd_group *g = NULL;
    o.strict = true;
    int rc = mlxd_init(&o, &g);
    if (rc < 0) {
        fail(c, "mlxd_init: %s: %s", mlxd_strerror(rc), mlxd_init_error());
        exit(1);
    }
    return g;
}

// Checks that rc is want and that the group's message names every word
// (NULL-terminated); notes the message of an expected failure.
static bool expect(struct ctx *c, mlxd_group *g, const char *what, int rc, int want, ...) {
    const char *msg = mlxd_last_error(g);
    bool ok = true;
    if (rc != want) {
        fail(c, "%s: returned %d (%s), expected %s; last_error: \"%s\"", what, rc, mlxd_strerror(rc),
             mlxd_strerror(want), msg);
        return false;
    }
    va_list ap;
    va_start(ap, want);
    for (const char *w; (w = va_arg(ap, const char *));)
        if (!mentions(msg, w)) {
            fail(c, "%s: got %s as expected, but last_error \"%s\" does not mention \"%s\"", what,
                 mlxd_strerror(rc), msg, w);
            ok = false;
        }
    va_end(ap);
    if (want != 0)
        note(c, "%s: %s: \"%s\"", what, mlxd_strerror(rc), msg);
    return ok;
}


// float32 all_sum of n elements at x (may be out) into out; each member
// contributes (rank + 1) * (i % 251): checks the sum.
static bool checked_sum(struct ctx *c, mlxd_group *g, const char *what, float *x, float *out, int64_t n) {
    int size = mlxd_group_size(g), r = mlxd_group_rank(g);
    for (int64_t i = 0; i < n; i++)
        x[i] = (float) ((r + 1) * (i % 251));
    mlxd_array xa = { MLXD_FLOAT32, 1, { n }, x }, oa = { MLXD_FLOAT32, 1, { n }, out };
    int rc = mlxd_all_sum(g, &xa, &oa);
    if (rc < 0) {
        fail(c, "%s: all_sum of %lld float32: %s: %s", what, (long long) n, mlxd_strerror(rc), mlxd_last_error(g));
        return false;
    }
    float k = (float) (size * (size + 1) / 2);
    for (int64_t i = 0; i < n; i++)
        if (out[i] != k * (float) (i % 251)) {
            fail(c, "%s: element %lld is %g, expected %g", what, (long long) i, out[i], k * (float) (i % 251));
            return false;
        }
    return true;
}

static int code_of(const char *name, int *ret) {
    static const struct {
        const char *name;
        int code;
    } codes[] = { { "OK", MLXD_OK }, { "EINVAL", MLXD_EINVAL }, { "EUNAVAILABLE", MLXD_EUNAVAILABLE },
                  { "EMISMATCH", MLXD_EMISMATCH }, { "EPEER", MLXD_EPEER }, { "ETIMEDOUT", MLXD_ETIMEDOUT },
                  { "ENOMEM", MLXD_ENOMEM }, { "EPROTO", MLXD_EPROTO }, { "EDENIED", MLXD_EDENIED },
                  { "EINTERNAL", MLXD_EINTERNAL } };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strcmp(codes[i].name, name) == 0) {
            *ret = codes[i].code;
            return 0;
        }
    return -1;
}

/* ---------- modes ---------- */

// mlxd_init must give the code, with a message naming every word; on
// success the group must work.
static int mode_expect_init(struct ctx *c, int argc, char **argv) {
    bool strict = true;
    int i = 2, want;
    if (i < argc && strcmp(argv[i], "--nonstrict") == 0) {
        strict = false;
        i++;
    }
    if (i >= argc || code_of(argv[i], &want) < 0) {
        fprintf(stderr, "usage: hardclient expect_init [--nonstrict] CODE WORD...\n");
        return 2;
    }
    i++;
    mlxd_init_opts o = MLXD_INIT_OPTS_DEFAULT;
    mlxd_group *g = NULL;
    o.strict = strict;
    double t0 = mono_ms();
    int rc = mlxd_init(&o, &g);
    const char *msg = mlxd_init_error();
    note(c, "%s mlxd_init as uid %u: %s after %.0f ms: \"%s\"", strict ? "strict" : "non-strict",
         (unsigned) getuid(), rc < 0 ? mlxd_strerror(rc) : "MLXD_OK", mono_ms() - t0, msg);
    if (rc != want) {
        fail(c, "mlxd_init returned %s, expected %s (group of %d)", rc < 0 ? mlxd_strerror(rc) : "MLXD_OK",
             mlxd_strerror(want), rc == 0 ? mlxd_group_size(g) : 0);
    } else {
        for (; i < argc; i++)
            if (!mentions(msg, argv[i]))
                fail(c, "mlxd_init's message \"%s\" does not mention \"%s\"", msg, argv[i]);
    }
    if (rc == 0) {
        if (want == 0)
            smoke_sum(c, g, "the group mlxd_init gave");
        mlxd_group_free(g);
    }
    return finish(c);
}

static int mode_hold(struct ctx *c) {
    char name[64];
    mlxd_group *g = init_or_die(c);
    smoke_sum(c, g, "after init");
    snprintf(name, sizeof name, "%d.ready", c->rank);
    touch_file(c, name);
    wait_file(c, "go");
    smoke_sum(c, g, "after go");
    mlxd_group_free(g);
    return finish(c);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

// Median and 99th percentile of n samples (sorts them).
static void stats(double *v, int n, double *ret_median, double *ret_p99) {
    qsort(v, (size_t) n, sizeof *v, cmp_double);
    *ret_median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    *ret_p99 = v[(int) ((n - 1) * 0.99)];
}

// One phase of the latency mode: n checked all_sums of 16 float32, each
// timed; the times go to us[] in microseconds.
static bool timed_sums(struct ctx *c, mlxd_group *g, int n, double *us, const char *phase) {
    float x[16], out[16];
    for (int k = 0; k < n; k++) {
        double t0 = mono_ms();
        if (!checked_sum(c, g, phase, x, out, 16))
            return false;
        us[k] = (mono_ms() - t0) * 1e3;
    }
    return true;
}

static int mode_latency(struct ctx *c, int n) {
    double *quiet = calloc((size_t) n, sizeof *quiet), *flood = calloc((size_t) n, sizeof *flood);
    mlxd_group *g = init_or_die(c);
    if (!quiet || !flood)
        return 1;
    double t0 = mono_ms();
    if (!timed_sums(c, g, n, quiet, "without the flood"))
        return finish(c);
    double quiet_ms = mono_ms() - t0;
    if (c->rank == 0)
        touch_file(c, "quiet.done");
    wait_file(c, "flood.on");
    t0 = mono_ms();
    if (!timed_sums(c, g, n, flood, "during the flood"))
        return finish(c);
    double flood_ms = mono_ms() - t0;
    if (c->rank == 0)
        touch_file(c, "flood.done");
    double qm, qp, fm, fp;
    stats(quiet, n, &qm, &qp);
    stats(flood, n, &fm, &fp);
    note(c, "%d all_sums of 64 bytes: without the flood median %.0f us p99 %.0f us (%.0f ms in all); "
            "during the flood median %.0f us p99 %.0f us (%.0f ms in all)",
         n, qm, qp, quiet_ms, fm, fp, flood_ms);
    printf("median_quiet_us=%.0f median_flood_us=%.0f\n", qm, fm);
    mlxd_group_free(g);
    free(quiet);
    free(flood);
    return finish(c);
}

// A float32 buffer of nbytes: mlxd_alloc memory or the heap.
static float *buffer(struct ctx *c, mlxd_group *g, size_t nbytes, bool shared) {
    float *p = shared ? mlxd_alloc(g, nbytes) : malloc(nbytes);
    if (!p) {
        fail(c, "%s of %zu bytes failed: %s", shared ? "mlxd_alloc" : "malloc", nbytes, mlxd_last_error(g));
        exit(1);
    }
    return p;
}

static void buffer_free(mlxd_group *g, float *p, bool shared) {
    if (shared)
        mlxd_free(g, p);
    else
        free(p);
}

// A job of one: an all_sum of exactly the daemon's --max-tensor-bytes works,
// one of 4 bytes more is refused.
static int mode_tensor_cap(struct ctx *c, size_t cap, const char *where) {
    bool inline_ = strcmp(where, "inline") == 0, shared = strcmp(where, "alloc") == 0;
    mlxd_group *g = init_or_die(c);
    int64_t n = (int64_t) (cap / 4);
    float *x = buffer(c, g, cap + 4, shared);
    checked_sum(c, g, "a tensor of exactly the cap", x, x, n);
    double t0 = mono_ms();
    mlxd_array xa = { MLXD_FLOAT32, 1, { n + 1 }, x };
    int rc = mlxd_all_sum(g, &xa, &xa);
    double took = mono_ms() - t0;
    note(c, "all_sum of %zu bytes (%s) over the cap of %zu: %s after %.0f ms: \"%s\"", cap + 4, where, cap,
         rc < 0 ? mlxd_strerror(rc) : "MLXD_OK", took, mlxd_last_error(g));
    if (inline_) {
        // A frame over ZeroMQ's maximum message size (the daemon sets it to
        // the cap) costs the connection: an error, at once, is what counts.
        if (rc == 0)
            fail(c, "an inline tensor of %zu bytes over the cap of %zu was accepted", cap + 4, cap);
        if (took > 5000)
            fail(c, "the refusal of an inline tensor over the cap took %.0f ms", took);
        rc = mlxd_barrier(g);
        note(c, "the group after that: barrier gives %s \"%s\"", rc < 0 ? mlxd_strerror(rc) : "MLXD_OK",
             mlxd_last_error(g));
    } else {
        expect(c, g, "a tensor 4 bytes over the cap", rc, MLXD_ENOMEM, "limit", NULL);
        char num[32];
        snprintf(num, sizeof num, "%zu", cap);
        if (rc == MLXD_ENOMEM && !mentions(mlxd_last_error(g), num))
            fail(c, "the message \"%s\" does not give the limit %s", mlxd_last_error(g), num);
        checked_sum(c, g, "the cap again after a refusal", x, x, n);
    }
    buffer_free(g, x, shared);
    mlxd_group_free(g);
    return finish(c);
}

static void fill_msg(uint8_t *p, size_t n, int k) {
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t) (i * 7 + (size_t) k * 13 + 1);
}

static bool msg_ok(const uint8_t *p, size_t n, int k) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (uint8_t) (i * 7 + (size_t) k * 13 + 1))
            return false;
    return true;
}

// A job of 3. Rank 0 sends n messages of msg bytes to rank 1, which receives
// only after "recv.go": the sends within --max-queued-bytes return at once
// (file sent.K after each), the next one waits until rank 1 has received its
// message, and none fails. Then a ring of msg bytes, every rank sending
// before it receives.
static int mode_queued(struct ctx *c, size_t msg, int n) {
    mlxd_group *g = init_or_die(c);
    uint8_t *buf = malloc(msg);
    char name[64];
    if (!buf)
        return 1;
    mlxd_array a = { MLXD_UINT8, 1, { (int64_t) msg }, buf };
    if (mlxd_group_size(g) != 3)
        fail(c, "this mode needs a job of 3");
    if (c->rank == 0) {
        for (int k = 0; k < n; k++) {
            fill_msg(buf, msg, k);
            double t0 = mono_ms();
            int rc = mlxd_send(g, &a, 1);
            if (rc < 0) {
                fail(c, "send %d of %zu bytes to rank 1: %s: %s", k, msg, mlxd_strerror(rc), mlxd_last_error(g));
                return finish(c);
            }
            note(c, "send %d of %zu bytes returned after %.0f ms (at_ms=%lld)", k, msg, mono_ms() - t0, wall_ms());
            snprintf(name, sizeof name, "sent.%d", k);
            touch_file(c, name);
        }
    } else if (c->rank == 1) {
        wait_file(c, "recv.go");
        note(c, "receiving from at_ms=%lld", wall_ms());
        for (int k = 0; k < n; k++) {
            memset(buf, 0, msg);
            int rc = mlxd_recv(g, &a, 0);
            if (rc < 0) {
                fail(c, "recv %d from rank 0: %s: %s", k, mlxd_strerror(rc), mlxd_last_error(g));
                return finish(c);
            }
            if (!msg_ok(buf, msg, k))
                fail(c, "message %d from rank 0 holds the wrong bytes (out of order?)", k);
        }
    }
    // The ring: every rank sends first, then receives.
    int size = 3, to = (c->rank + 1) % size, from = (c->rank + size - 1) % size;
    fill_msg(buf, msg, 100 + c->rank);
    int rc = mlxd_send(g, &a, to);
    expect(c, g, "ring send", rc, 0, NULL);
    memset(buf, 0, msg);
    rc = mlxd_recv(g, &a, from);
    if (expect(c, g, "ring recv", rc, 0, NULL) && !msg_ok(buf, msg, 100 + from))
        fail(c, "the ring message from rank %d holds the wrong bytes", from);
    expect(c, g, "barrier after the ring", mlxd_barrier(g), 0, NULL);
    free(buf);
    mlxd_group_free(g);
    return finish(c);
}

// A job of 2. Rank 0 allocates 3/4 of the cap, then half of it (over the cap:
// NULL with the daemon's message), frees, and allocates again; rank 1 works in
// memory of its own meanwhile (the cap is per process).
static int mode_shm_cap(struct ctx *c, size_t cap) {
    mlxd_group *g = init_or_die(c);
    size_t big = cap / 4 * 3, half = cap / 2;
    float *p = buffer(c, g, big, true);
    checked_sum(c, g, "in 3/4 of the cap", p, p, (int64_t) (big / 4));
    if (c->rank == 0) {
        float *q = mlxd_alloc(g, half);
        if (q) {
            fail(c, "mlxd_alloc of %zu bytes on top of %zu was granted under a cap of %zu", half, big, cap);
            mlxd_free(g, q);
        } else {
            const char *msg = mlxd_last_error(g);
            char num[32];
            snprintf(num, sizeof num, "%zu", cap);
            note(c, "mlxd_alloc of %zu bytes over the cap: NULL: \"%s\"", half, msg);
            if (!mentions(msg, "cap") || !mentions(msg, num))
                fail(c, "mlxd_alloc's message \"%s\" names neither the cap nor %s", msg, num);
        }
        touch_file(c, "refused");
    } else {
        // Meanwhile rank 1 keeps working in memory of its own.
        wait_file(c, "refused");
        float *q = mlxd_alloc(g, cap - big);
        if (!q)
            fail(c, "rank 1 could not allocate %zu bytes within its own cap: %s", cap - big, mlxd_last_error(g));
        else
            mlxd_free(g, q);
    }
    checked_sum(c, g, "after the refusal", p, p, (int64_t) (big / 4));
    mlxd_free(g, p);
    p = buffer(c, g, half, true);
    checked_sum(c, g, "in memory allocated after a free", p, p, (int64_t) (half / 4));
    mlxd_free(g, p);
    mlxd_group_free(g);
    return finish(c);
}

// A job of 2 on a daemon with --max-groups-per-client CAP. Rank 0 keeps every
// group it splits; rank 1 frees each at once. Rank 0's CAP-th group (its
// init's is the first) is refused with MLXD_ENOMEM; rank 1, whose half of
// that split did attach, gets an error on it rather than waiting; both go
// on with their other groups, and rank 0 splits again after freeing one.
static int mode_groups(struct ctx *c, int cap) {
    mlxd_group *g = init_or_die(c), *kept[64] = { 0 }, *s = NULL;
    int made = 0, rc;
    if (cap < 2 || cap > 64)
        return 2;
    for (int k = 0; k < cap - 1; k++) {
        rc = mlxd_group_split(g, 0, -1, &s);
        if (!expect(c, g, "a split within the cap", rc, 0, NULL))
            return finish(c);
        // Both have attached once the barrier returns: rank 1 leaving its
        // half before rank 0 attached would fail rank 0's split.
        if (!expect(c, g, "a barrier after the split", mlxd_barrier(g), 0, NULL))
            return finish(c);
        if (c->rank == 0)
            kept[made++] = s;
        else
            mlxd_group_free(s);
    }
    note(c, "%d groups open", c->rank == 0 ? made + 1 : 1);
    double t0 = mono_ms();
    rc = mlxd_group_split(g, 0, -1, &s);
    if (c->rank == 0) {
        expect(c, g, "the split past the cap", rc, MLXD_ENOMEM, "groups", NULL);
        if (rc == 0)
            mlxd_group_free(s);
        // Rank 1 tries the group first, so that a wait there shows as its
        // own and not as ours on the job's group.
        wait_file(c, "probed");
    } else if (rc == MLXD_EPEER) {
        // The refusal may abort the new group before rank 1 attaches: then
        // its split says so at once, which is just as good.
        note(c, "split: the group was aborted before this rank attached: \"%s\"", mlxd_last_error(g));
    } else if (expect(c, g, "rank 1's half of the split rank 0 cannot attach to", rc, 0, NULL)) {
        // Its partner never attaches: an op there must fail, not wait for
        // the deadline.
        rc = mlxd_barrier(s);
        note(c, "barrier on the group rank 0 could not attach to: %s after %.0f ms: \"%s\"",
             rc < 0 ? mlxd_strerror(rc) : "MLXD_OK", mono_ms() - t0, mlxd_last_error(s));
        if (rc == 0)
            fail(c, "a barrier with a member that never attached succeeded");
        else if (rc != MLXD_EPEER)
            fail(c, "a barrier with a member that was refused gave %s, expected MLXD_EPEER", mlxd_strerror(rc));
        mlxd_group_free(s);
    }
    if (c->rank == 1)
        touch_file(c, "probed");
    // (Rank 0's kept groups lost their other member when rank 1 freed its
    // halves: they only hold connections now.)
    smoke_sum(c, g, "the job's group after a refused split");
    // One freed, one more fits.
    if (c->rank == 0) {
        mlxd_group_free(kept[--made]);
        kept[made] = NULL;
    }
    rc = mlxd_group_split(g, 0, -1, &s);
    if (expect(c, g, "a split after freeing a group", rc, 0, NULL)) {
        smoke_sum(c, s, "the group split after freeing one");
        mlxd_group_free(s);
    }
    for (int k = 0; k < made; k++)
        mlxd_group_free(kept[k]);
    mlxd_group_free(g);
    return finish(c);
}

// The survivors' and the victim's tensors: small integers, so that sums are
// exact in float32.
static void fill_small(float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        x[i] = (float) (i & 1023);
}

// An all_sum of nbytes in which a member was killed: MLXD_EPEER, or, when
// the victim had handed its part over before it died and may_complete is
// set, the sum of every member's part (0). Says which ("returned ...").
static int killed_all_sum(struct ctx *c, mlxd_group *g, size_t nbytes, bool shared, bool may_complete,
                          const char *what) {
    float *x = buffer(c, g, nbytes, shared);
    size_t n = nbytes / 4;
    fill_small(x, n);
    mlxd_array xa = { MLXD_FLOAT32, 1, { (int64_t) n }, x };
    double t0 = mono_ms();
    int rc = mlxd_all_sum(g, &xa, &xa);
    long long at = wall_ms();
    note(c, "%s of %zu bytes returned %s at_ms=%lld after %.0f ms: \"%s\"", what, nbytes,
         rc < 0 ? mlxd_strerror(rc) : "MLXD_OK", at, mono_ms() - t0, mlxd_last_error(g));
    if (rc == 0 && may_complete) {
        for (size_t i = 0; i < n; i++)
            if (x[i] != (float) (mlxd_group_size(g) * (int) (i & 1023))) {
                fail(c, "%s: element %zu is %g, expected %d", what, i, x[i], mlxd_group_size(g) * (int) (i & 1023));
                break;
            }
    } else {
        expect(c, g, what, rc, MLXD_EPEER, "rank", NULL);
    }
    buffer_free(g, x, shared);
    return rc;
}

// Waits in an all_sum of nbytes whose other member is killed meanwhile. A
// member that never issued it (holder): MLXD_EPEER (the script compares
// at_ms with the kill). A member killed inside its own all_sum (victim):
// MLXD_EPEER if its part never reached the daemon, else the op completes
// with it once the late member joins in (may_complete). The next op on the
// group is MLXD_EPEER at once either way.
static int mode_survivor(struct ctx *c, size_t nbytes, bool shared, bool may_complete) {
    mlxd_group *g = init_or_die(c);
    killed_all_sum(c, g, nbytes, shared, may_complete, "all_sum whose member was killed");
    double t0 = mono_ms();
    int rc = mlxd_barrier(g);
    expect(c, g, "the next op on that group", rc, MLXD_EPEER, NULL);
    if (mono_ms() - t0 > 1000)
        fail(c, "the next op on the aborted group took %.0f ms", mono_ms() - t0);
    mlxd_group_free(g);
    return finish(c);
}

// After "go", an all_sum of nbytes; the script kills this process once the
// file "calling" shows it has started.
static int mode_victim(struct ctx *c, size_t nbytes, bool shared) {
    mlxd_group *g = init_or_die(c);
    float *x = buffer(c, g, nbytes, shared);
    fill_small(x, nbytes / 4);
    mlxd_array xa = { MLXD_FLOAT32, 1, { (int64_t) (nbytes / 4) }, x };
    touch_file(c, "victim.ready");
    wait_file(c, "go");
    touch_file(c, "calling");
    int rc = mlxd_all_sum(g, &xa, &xa);
    fail(c, "the victim's all_sum returned (%s) before it was killed", rc < 0 ? mlxd_strerror(rc) : "MLXD_OK");
    return finish(c);
}

// Holds two segments of nbytes of shared memory, written, until killed.
static int mode_holder(struct ctx *c, size_t nbytes) {
    mlxd_group *g = init_or_die(c);
    float *a = buffer(c, g, nbytes, true), *b = buffer(c, g, nbytes, true);
    memset(a, 1, nbytes);
    memset(b, 2, nbytes);
    touch_file(c, "holder.ready");
    for (;;)
        pause();
    return 0;                           // not reached: the test kills this process
}

// After "late": with nbytes, the all_sum the victim died in (it completes
// when the victim's part had reached the daemon, as the survivor's does);
// then a barrier, which the victim never issued.
static int mode_late(struct ctx *c, size_t nbytes, bool shared) {
    mlxd_group *g = init_or_die(c);
    wait_file(c, "late");
    if (nbytes)
        killed_all_sum(c, g, nbytes, shared, true, "the late all_sum");
    double t0 = mono_ms();
    int rc = mlxd_barrier(g);
    expect(c, g, "an op after a member was killed", rc, MLXD_EPEER, NULL);
    if (mono_ms() - t0 > 1000)
        fail(c, "it took %.0f ms", mono_ms() - t0);
    mlxd_group_free(g);
    return finish(c);
}

// Rank 0 waits in an all_sum, rank 1 in a recv from rank 0, when the daemon
// is killed: both get MLXD_EUNAVAILABLE (at_ms for the script), and a later op
// fails at once the same way.
static int mode_daemon_killed(struct ctx *c) {
    mlxd_group *g = init_or_die(c);
    float x[1024];
    for (int i = 0; i < 1024; i++)
        x[i] = (float) i;
    mlxd_array xa = { MLXD_FLOAT32, 1, { 1024 }, x };
    double t0 = mono_ms();
    int rc = c->rank == 0 ? mlxd_all_sum(g, &xa, &xa) : mlxd_recv(g, &xa, 0);
    long long at = wall_ms();
    note(c, "%s returned %s at_ms=%lld after %.0f ms: \"%s\"", c->rank == 0 ? "all_sum" : "recv",
         rc < 0 ? mlxd_strerror(rc) : "MLXD_OK", at, mono_ms() - t0, mlxd_last_error(g));
    expect(c, g, "an op in flight when the daemon died", rc, MLXD_EUNAVAILABLE, NULL);
    t0 = mono_ms();
    rc = mlxd_barrier(g);
    expect(c, g, "the next op", rc, MLXD_EUNAVAILABLE, NULL);
    if (mono_ms() - t0 > 1000)
        fail(c, "the next op took %.0f ms to fail", mono_ms() - t0);
    mlxd_group_free(g);
    return finish(c);
}

static int usage(void) {
    fprintf(stderr, "usage: hardclient MODE [ARGS] (see the top of hardclient.c)\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 2)
        return usage();
    struct ctx c = {
        .mode = argv[1],
        .dir = getenv("MLXT_DIR") ? getenv("MLXT_DIR") : "/tmp",
        .job = getenv("MLXD_JOB") ? getenv("MLXD_JOB") : "nojob",
        .rank = getenv("MLXD_RANK") ? atoi(getenv("MLXD_RANK")) : 0,
        .size = getenv("MLXD_SIZE") ? atoi(getenv("MLXD_SIZE")) : 1,
    };
    snprintf(c.t.prefix, sizeof c.t.prefix, "hardclient %s rank %d", c.mode, c.rank);
    snprintf(c.t.files, sizeof c.t.files, "%s/%s.", c.dir, c.job);
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *m = argv[1];
    if (strcmp(m, "expect_init") == 0)
        return mode_expect_init(&c, argc, argv);
    if (strcmp(m, "hold") == 0)
        return mode_hold(&c);
    if (strcmp(m, "latency") == 0 && argc == 3)
        return mode_latency(&c, atoi(argv[2]));
    if (strcmp(m, "tensor_cap") == 0 && argc == 4)
        return mode_tensor_cap(&c, strtoull(argv[2], NULL, 10), argv[3]);
    if (strcmp(m, "queued") == 0 && argc == 4)
        return mode_queued(&c, strtoull(argv[2], NULL, 10), atoi(argv[3]));
    if (strcmp(m, "shm_cap") == 0 && argc == 3)
        return mode_shm_cap(&c, strtoull(argv[2], NULL, 10));
    if (strcmp(m, "groups") == 0 && argc == 3)
        return mode_groups(&c, atoi(argv[2]));
    if (strcmp(m, "survivor") == 0 && (argc == 4 || argc == 5))
        return mode_survivor(&c, strtoull(argv[2], NULL, 10), strcmp(argv[3], "alloc") == 0,
                             argc == 5 && strcmp(argv[4], "may_complete") == 0);
    if (strcmp(m, "victim") == 0 && argc == 4)
        return mode_victim(&c, strtoull(argv[2], NULL, 10), strcmp(argv[3], "alloc") == 0);
    if (strcmp(m, "holder") == 0 && argc == 3)
        return mode_holder(&c, strtoull(argv[2], NULL, 10));
    if (strcmp(m, "late") == 0)
        return mode_late(&c, argc == 4 ? strtoull(argv[2], NULL, 10) : 0, argc == 4 && strcmp(argv[3], "alloc") == 0);
    if (strcmp(m, "daemon_killed") == 0)
        return mode_daemon_killed(&c);
    return usage();
}
