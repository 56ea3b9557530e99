/* mhclient: client programs for the multi-host integration tests
 * (multihost.sh), one mode per behaviour of a job whose ranks sit on several
 * daemons. Each mode checks exact results and error codes, prints "FAIL ..."
 * lines for what did not hold, and exits 0 only when everything held.
 *
 * The job comes from the environment (MLXD_JOB, MLXD_RANK, MLXD_SIZE,
 * MLXD_SOCKET), as mlxctl launch or multihost.sh set it. The daemon a rank
 * uses ("its host") is the number N of a socket named ".../d-N.sock", as
 * multihost.sh names them. Ranks coordinate outside mlxd through files in
 * $MH_DIR (waited for with a deadline, never slept on).
 *
 *   mhclient opposite ITERS KIB lead|follow NAME
 *       ITERS all_sums of KIB KiB of float32, each followed by a barrier,
 *       every result checked. "lead" creates NAME.i just before its i-th
 *       all_sum; "follow" waits for NAME.i before its i-th all_sum, so a
 *       test can fix the order in which two jobs' members reach a daemon.
 *   mhclient mismatch
 *       Ranks on host 0 and ranks on other hosts (or the last rank alone)
 *       call different ops, dtypes, shapes: every rank gets MLXD_EMISMATCH
 *       naming the difference, and the next agreeing op works.
 *   mhclient victim
 *       Joins the job and idles until the test kills it (gives up after 60 s).
 *   mhclient waiter
 *       all_sum while the victim is killed: MLXD_EPEER, and again on the next
 *       op; prints "epeer_at_ms=T" (CLOCK_REALTIME) for the test to time.
 *   mhclient timeout MISSING MS
 *       Every rank but MISSING calls all_sum with a deadline of MS ms: each
 *       gets MLXD_ETIMEDOUT about MS ms later, naming rank MISSING only.
 *   mhclient split
 *       Splits that keep subgroups on one host and splits whose subgroups
 *       span hosts (checked from the members' host numbers, at least one of
 *       each), ops on every subgroup interleaved with the parent's.
 *   mhclient resplit ROUNDS
 *       ROUNDS times: splits the job (by parity, then all ranks in one
 *       group, so that both stay on and span hosts), an all_sum on the new
 *       group, frees it and at once splits again, with no pause between: a
 *       split right after a freed split must work on every host.
 *   mhclient doomed FILE|- TEXT [MIB]
 *       Joins, runs an all_sum, creates ready.RANK, waits for FILE (unless
 *       "-"), then calls all_sum (of 4 floats, or MIB MiB) while the test
 *       breaks the world (kills a host, cuts a link): it must fail, with
 *       MLXD_EPEER, MLXD_ETIMEDOUT or MLXD_EUNAVAILABLE, its message naming
 *       TEXT (a host; or one of several, "a|b"); prints "error_at_ms=T" (CLOCK_REALTIME).
 *       $MH_TIMEOUT_MS, if set, is its deadline.
 *   mhclient forming TEXT
 *       Joins a job that never forms (the test breaks the world while it
 *       waits): mlxd_init must fail with MLXD_EPEER naming TEXT (a host),
 *       long before its deadline; prints "error_at_ms=T" (CLOCK_REALTIME).
 *   mhclient hold
 *       Joins, runs an all_sum, creates held.RANK and waits for the file
 *       "release", then a barrier: keeps a job formed while a test looks. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mlxd/mlxd.h"
#include "testclient.h"

#define FILE_DEADLINE_S 60.0
#define MAX_RANKS 64

struct ctx {
    const char *mode, *dir, *job;
    int rank;         // the job rank from the environment
    int host;         // the daemon's number, from MLXD_SOCKET
    struct tc t;                        // reporting and rendezvous
};

// Reporting and rendezvous go through the shared test client code.
#define fail(c, ...) tc_fail(&(c)->t, __VA_ARGS__)
#define note(c, ...) tc_note(&(c)->t, __VA_ARGS__)
#define finish(c) tc_finish(&(c)->t)
#define mentions tc_mentions
#define touch(c, name) tc_touch(&(c)->t, name)
#define touch_file(c, name) tc_touch(&(c)->t, name)
#define wait_file(c, name) tc_wait_file(&(c)->t, name, FILE_DEADLINE_S * 1000)
#define smoke_sum(c, g, what) tc_smoke_sum(&(c)->t, g, what)




static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static long long realtime_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// The daemon's number: $MH_HOST when set (on test hosts every daemon has the
// same endpoint), else the N of ".../d-N.sock" in $MLXD_SOCKET; -1 when
// neither says.
static int host_of_socket(void) {
    const char *s = getenv("MLXD_SOCKET"), *p = s ? strrchr(s, '/') : NULL;
    int n = -1;
    if (getenv("MH_HOST"))
        return atoi(getenv("MH_HOST"));
    if (p && sscanf(p, "/d-%d.sock", &n) == 1)
        return n;
    return -1;
}

/* ---------- files in $MH_DIR ---------- */



/* ---------- checks ---------- */


// The whole numbers that stand alone after the first "rank" in s (not part
// of a decimal like "2.0"), as a bit set of ranks below 64.
static uint64_t ranks_named(const char *s) {
    uint64_t set = 0;
    const char *p = s ? strcasestr(s, "rank") : NULL;
    if (!p)
        return 0;
    for (p += 4; *p; p++) {
        if (!isdigit((unsigned char) *p) || isdigit((unsigned char) p[-1]) || p[-1] == '.')
            continue;
        char *end;
        long v = strtol(p, &end, 10);
        if (*end != '.' && v >= 0 && v < 64)
            set |= UINT64_C(1) << v;
        p = end - 1;
    }
    return set;
}

// Checks that rc is want and that the group's message mentions every word
// (NULL-terminated list).
static bool expect(struct ctx *c, mlxd_group *g, const char *what, int rc, int want, ...) {
    const char *msg = mlxd_last_error(g);
    if (rc != want) {
        fail(c, "%s: returned %d (%s), expected %s; last_error \"%s\"", what, rc, mlxd_strerror(rc),
             mlxd_strerror(want), msg);
        return false;
    }
    bool ok = true;
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

static mlxd_group *init_or_die(struct ctx *c, const mlxd_init_opts *o) {
    mlxd_group *g = NULL;
    int rc = mlxd_init(o, &g);
    if (rc < 0) {
        fail(c, "mlxd_init: %s: %s", mlxd_strerror(rc), mlxd_init_error());
        exit(1);
    }
    if (mlxd_group_rank(g) != c->rank) {
        fail(c, "mlxd_init gave rank %d, the environment says %d", mlxd_group_rank(g), c->rank);
        exit(1);
    }
    return g;
}


// Every member's value of v, in rank order, through all_gather.
static bool gather_int(struct ctx *c, mlxd_group *g, const char *what, int32_t v, int32_t *ret) {
    mlxd_array x = { MLXD_INT32, 0, { 0 }, &v }, out = { MLXD_INT32, 0, { 0 }, ret };
    int rc = mlxd_all_gather(g, &x, &out);
    if (rc < 0) {
        fail(c, "%s: all_gather: %s: %s", what, mlxd_strerror(rc), mlxd_last_error(g));
        return false;
    }
    if (out.ndim != 1 || out.shape[0] != mlxd_group_size(g)) {
        fail(c, "%s: all_gather of a scalar gave ndim %d shape[0] %" PRId64, what, out.ndim, out.shape[0]);
        return false;
    }
    return true;
}

/* ---------- opposite ---------- */

static float opp_value(int iter, int rank, size_t i) {
    return (float) ((int) ((i * 7 + (size_t) iter * 5 + (size_t) rank * 13) % 17) - 8);
}

static int mode_opposite(struct ctx *c, int iters, int kib, bool lead, const char *name) {
    mlxd_group *g = init_or_die(c, NULL);
    int n = mlxd_group_size(g), r = mlxd_group_rank(g);
    size_t count = (size_t) kib * 256;
    float *x = malloc(count * sizeof *x), *out = malloc(count * sizeof *out);
    if (!x || !out) {
        fail(c, "out of memory");
        return finish(c);
    }
    double t0 = now_s();
    for (int it = 0; it < iters && !c->t.failures; it++) {
        char file[256];
        snprintf(file, sizeof file, "%s.%d", name, it);
        for (size_t i = 0; i < count; i++)
            x[i] = opp_value(it, r, i);
        memset(out, 0xff, count * sizeof *out);
        mlxd_array xa = { MLXD_FLOAT32, 1, { (int64_t) count }, x }, oa = { MLXD_FLOAT32, 0, { 0 }, out };
        if (lead)
            touch(c, file);
        else
            wait_file(c, file);
        int rc = mlxd_all_sum(g, &xa, &oa);
        if (rc < 0) {
            fail(c, "all_sum %d of %d: %s: %s", it + 1, iters, mlxd_strerror(rc), mlxd_last_error(g));
            break;
        }
        for (size_t i = 0; i < count; i++) {
            float e = 0;
            for (int k = 0; k < n; k++)
                e += opp_value(it, k, i);
            if (out[i] != e) {
                fail(c, "all_sum %d: element %zu is %g, expected %g", it + 1, i, out[i], e);
                break;
            }
        }
        rc = mlxd_barrier(g);
        if (rc < 0)
            fail(c, "barrier %d: %s: %s", it + 1, mlxd_strerror(rc), mlxd_last_error(g));
    }
    note(c, "%d all_sums of %d KiB with barriers in %.3f s", iters, kib, now_s() - t0);
    free(x);
    free(out);
    mlxd_group_free(g);
    return finish(c);
}

/* ---------- mismatch ---------- */

// odd: this rank is on the side that calls something else.
static void mismatch_cases(struct ctx *c, mlxd_group *g, bool odd, const char *side) {
    float f[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, fo[64];
    int32_t i32[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    mlxd_array x = { MLXD_FLOAT32, 1, { 4 }, f }, out = { MLXD_FLOAT32, 1, { 4 }, fo };
    char what[160];
    int rc;

    snprintf(what, sizeof what, "%s: all_sum against all_max", side);
    rc = odd ? mlxd_all_max(g, &x, &out) : mlxd_all_sum(g, &x, &out);
    expect(c, g, what, rc, MLXD_EMISMATCH, "all_sum", "all_max", NULL);
    smoke_sum(c, g, "all_sum after an op mismatch");

    snprintf(what, sizeof what, "%s: float32 against int32", side);
    mlxd_array xi = { MLXD_INT32, 1, { 4 }, i32 };
    rc = mlxd_all_sum(g, odd ? &xi : &x, &out);
    expect(c, g, what, rc, MLXD_EMISMATCH, "float32", "int32", NULL);
    smoke_sum(c, g, "all_sum after a dtype mismatch");

    snprintf(what, sizeof what, "%s: shape [4] against [5]", side);
    mlxd_array x5 = { MLXD_FLOAT32, 1, { 5 }, f };
    rc = mlxd_all_min(g, odd ? &x5 : &x, &out);
    expect(c, g, what, rc, MLXD_EMISMATCH, "shape", NULL);
    smoke_sum(c, g, "all_sum after a shape mismatch");

    snprintf(what, sizeof what, "%s: shape [4] against [2,2]", side);
    mlxd_array x22 = { MLXD_FLOAT32, 2, { 2, 2 }, f };
    rc = mlxd_all_gather(g, odd ? &x22 : &x, &out);
    expect(c, g, what, rc, MLXD_EMISMATCH, "shape", NULL);
    smoke_sum(c, g, "all_sum after an ndim mismatch");

    snprintf(what, sizeof what, "%s: all_gather against barrier", side);
    rc = odd ? mlxd_barrier(g) : mlxd_all_gather(g, &x, &out);
    expect(c, g, what, rc, MLXD_EMISMATCH, "all_gather", "barrier", NULL);
    smoke_sum(c, g, "all_sum after all_gather against barrier");

    snprintf(what, sizeof what, "%s: sum_scatter against all_sum", side);
    mlxd_array x8 = { MLXD_FLOAT32, 1, { 8 * mlxd_group_size(g) }, fo };
    for (int i = 0; i < 8 * mlxd_group_size(g); i++)
        fo[i] = (float) i;
    float so[64];
    mlxd_array sout = { MLXD_FLOAT32, 1, { 8 }, so };
    rc = odd ? mlxd_all_sum(g, &x8, &sout) : mlxd_sum_scatter(g, &x8, &sout);
    expect(c, g, what, rc, MLXD_EMISMATCH, "sum_scatter", "all_sum", NULL);
    smoke_sum(c, g, "all_sum after sum_scatter against all_sum");

    snprintf(what, sizeof what, "%s: split against all_sum", side);
    mlxd_group *ng = NULL;
    rc = odd ? mlxd_all_sum(g, &x, &out) : mlxd_group_split(g, 0, -1, &ng);
    expect(c, g, what, rc, MLXD_EMISMATCH, "split", "all_sum", NULL);
    if (rc == 0 && ng)
        mlxd_group_free(ng);
    smoke_sum(c, g, "all_sum after split against all_sum");
}

static int mode_mismatch(struct ctx *c) {
    mlxd_group *g = init_or_die(c, NULL);
    int n = mlxd_group_size(g), r = mlxd_group_rank(g), hosts[MAX_RANKS];
    int32_t h32[MAX_RANKS];
    // The buffers of mismatch_cases hold 8 floats per rank.
    if (n > 8) {
        fail(c, "needs a job of at most 8 ranks");
        return finish(c);
    }
    if (!gather_int(c, g, "hosts", c->host, h32))
        return finish(c);
    bool host0 = false, other = false;
    for (int i = 0; i < n; i++) {
        hosts[i] = h32[i];
        host0 |= hosts[i] == 0;
        other |= hosts[i] != 0;
    }
    if (!host0 || !other) {
        fail(c, "the job must have ranks on host 0 and on another host");
        return finish(c);
    }
    // Each host's members agree among themselves: only hosts disagree.
    mismatch_cases(c, g, c->host != 0, "host 0 against the other hosts");
    // The last rank alone disagrees, with the others on its host (if any)
    // agreeing with the rest of the job.
    mismatch_cases(c, g, r == n - 1, "the last rank against the others");
    expect(c, g, "barrier after the mismatches", mlxd_barrier(g), 0, NULL);
    smoke_sum(c, g, "all_sum at the end");
    mlxd_group_free(g);
    return finish(c);
}

/* ---------- victim, waiter ---------- */

static int mode_victim(struct ctx *c) {
    mlxd_group *g = init_or_die(c, NULL);
    note(c, "joined, waiting to be killed");
    wait_file(c, "never"); // exits after the deadline
    mlxd_group_free(g);
    fail(c, "was not killed");
    return finish(c);
}

static int mode_waiter(struct ctx *c) {
    mlxd_group *g = init_or_die(c, NULL);
    float x[4] = { 1, 2, 3, 4 }, out[4];
    mlxd_array xa = { MLXD_FLOAT32, 1, { 4 }, x }, oa = { MLXD_FLOAT32, 1, { 4 }, out };
    double t0 = now_s();
    int rc = mlxd_all_sum(g, &xa, &oa);
    long long at = realtime_ms();
    expect(c, g, "all_sum while a member is killed", rc, MLXD_EPEER, NULL);
    if (rc == MLXD_EPEER && !*mlxd_last_error(g))
        fail(c, "last_error is empty");
    note(c, "all_sum returned after %.3f s, epeer_at_ms=%lld", now_s() - t0, at);
    t0 = now_s();
    rc = mlxd_barrier(g);
    expect(c, g, "a later barrier", rc, MLXD_EPEER, NULL);
    if (now_s() - t0 > 0.5)
        fail(c, "the barrier on the aborted group took %.3f s", now_s() - t0);
    mlxd_group_free(g);
    return finish(c);
}

/* ---------- timeout ---------- */

static int mode_timeout(struct ctx *c, int missing, int ms) {
    mlxd_init_opts o = MLXD_INIT_OPTS_DEFAULT;
    o.timeout_ms = ms;
    mlxd_group *g = init_or_die(c, &o);
    int n = mlxd_group_size(g), r = mlxd_group_rank(g);
    char file[64];
    if (r == missing) {
        // Never calls the op; leaves once every other member has its error.
        for (int k = 0; k < n; k++) {
            snprintf(file, sizeof file, "tdone.%d", k);
            if (k != r)
                wait_file(c, file);
        }
        mlxd_group_free(g);
        return finish(c);
    }
    int32_t x[3] = { 1, 2, 3 }, out[3];
    mlxd_array xa = { MLXD_INT32, 1, { 3 }, x }, oa = { MLXD_INT32, 1, { 3 }, out };
    double t0 = now_s();
    int rc = mlxd_all_sum(g, &xa, &oa);
    double dt = now_s() - t0;
    char what[64];
    snprintf(what, sizeof what, "all_sum without rank %d", missing);
    if (expect(c, g, what, rc, MLXD_ETIMEDOUT, NULL)) {
        uint64_t named = ranks_named(mlxd_last_error(g));
        if (named != UINT64_C(1) << missing)
            fail(c, "last_error \"%s\" should name rank %d, and only it, as missing", mlxd_last_error(g), missing);
    }
    note(c, "timed out after %.3f s (deadline %d ms)", dt, ms);
    if (dt < 0.9 * ms / 1000.0 || dt > ms / 1000.0 + 1.5)
        fail(c, "timed out after %.3f s, expected about %.3f s", dt, ms / 1000.0);
    t0 = now_s();
    rc = mlxd_barrier(g);
    expect(c, g, "barrier on the timed-out group", rc, MLXD_ETIMEDOUT, NULL);
    if (now_s() - t0 > 0.5)
        fail(c, "the barrier on the timed-out group took %.3f s", now_s() - t0);
    snprintf(file, sizeof file, "tdone.%d", r);
    touch(c, file);
    mlxd_group_free(g);
    return finish(c);
}

/* ---------- split ---------- */

struct sub {
    const char *name;
    mlxd_group *g;
    int parents[MAX_RANKS]; // parent rank of each member, in new rank order
    int n;
    bool spans;
};

static int color_host(const int *hosts, int r) {
    return hosts[r];
}

static int color_parity(const int *hosts, int r) {
    return r % 2;
}

static int color_first(const int *hosts, int r) {
    return r == 0 ? 0 : 1;
}

// Splits parent (whose member i is on host hosts[i]) with the given color
// and a key (reverse: reverse order, else keep it), and checks the new
// group's rank, size, order and hosts.
static bool do_split(struct ctx *c, mlxd_group *parent, const int *hosts, const char *name,
                     int (*color)(const int *, int), bool reverse, struct sub *ret) {
    int n = mlxd_group_size(parent), r = mlxd_group_rank(parent), my = color(hosts, r);
    struct sub s = { .name = name };
    for (int i = 0; i < n; i++)
        if (color(hosts, i) == my)
            s.parents[s.n++] = i;
    if (reverse)
        for (int i = 0; i < s.n / 2; i++) {
            int t = s.parents[i];
            s.parents[i] = s.parents[s.n - 1 - i];
            s.parents[s.n - 1 - i] = t;
        }
    int myrank = -1;
    for (int i = 0; i < s.n; i++) {
        if (s.parents[i] == r)
            myrank = i;
        s.spans |= hosts[s.parents[i]] != hosts[s.parents[0]];
    }
    int rc = mlxd_group_split(parent, my, reverse ? n - r : -1, &s.g);
    if (rc < 0) {
        fail(c, "split %s: %s: %s", name, mlxd_strerror(rc), mlxd_last_error(parent));
        return false;
    }
    if (mlxd_group_rank(s.g) != myrank || mlxd_group_size(s.g) != s.n)
        fail(c, "split %s: rank %d of %d, expected rank %d of %d", name, mlxd_group_rank(s.g),
             mlxd_group_size(s.g), myrank, s.n);
    // The order, and the hosts, as the members see them.
    int32_t got[MAX_RANKS];
    if (gather_int(c, s.g, name, r, got))
        for (int i = 0; i < s.n; i++)
            if (got[i] != s.parents[i]) {
                fail(c, "split %s: member %d is parent rank %d, expected %d", name, i, got[i], s.parents[i]);
                break;
            }
    if (gather_int(c, s.g, name, c->host, got))
        for (int i = 0; i < s.n; i++)
            if (got[i] != hosts[s.parents[i]]) {
                fail(c, "split %s: member %d is on host %d, expected %d", name, i, got[i], hosts[s.parents[i]]);
                break;
            }
    char list[256] = "";
    for (int i = 0; i < s.n; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d@d%d", i ? " " : "", s.parents[i],
                 hosts[s.parents[i]]);
    note(c, "split %s: rank %d of [%s] (parent rank@host): %s", name, myrank, list,
         s.spans ? "spans hosts" : "stays on one host");
    *ret = s;
    return true;
}

// all_sum, all_max, sum_scatter, a send/recv ring and a barrier on one
// group, each result checked.
static void sub_ops(struct ctx *c, struct sub *s, int round) {
    mlxd_group *g = s->g;
    int n = mlxd_group_size(g), r = mlxd_group_rank(g), rc;
    char what[128];
    snprintf(what, sizeof what, "%s round %d", s->name, round);
    smoke_sum(c, g, what);

    int64_t v = (int64_t) (r * 31 + round), mx = 0;
    mlxd_array xa = { MLXD_INT64, 0, { 0 }, &v }, oa = { MLXD_INT64, 0, { 0 }, &mx };
    rc = mlxd_all_max(g, &xa, &oa);
    if (rc < 0)
        fail(c, "%s: all_max: %s: %s", what, mlxd_strerror(rc), mlxd_last_error(g));
    else if (mx != (int64_t) ((n - 1) * 31 + round))
        fail(c, "%s: all_max is %" PRId64 ", expected %d", what, mx, (n - 1) * 31 + round);

    // sum_scatter of [n, 3]: element (b, j) of rank k is k + 100 b + j.
    float sx[MAX_RANKS * 3], so[3];
    for (int b = 0; b < n; b++)
        for (int j = 0; j < 3; j++)
            sx[b * 3 + j] = (float) (r + 100 * b + j);
    mlxd_array sxa = { MLXD_FLOAT32, 2, { n, 3 }, sx }, soa = { MLXD_FLOAT32, 0, { 0 }, so };
    rc = mlxd_sum_scatter(g, &sxa, &soa);
    if (rc < 0)
        fail(c, "%s: sum_scatter: %s: %s", what, mlxd_strerror(rc), mlxd_last_error(g));
    else
        for (int j = 0; j < 3; j++) {
            float e = (float) (n * (n - 1) / 2 + n * (100 * r + j));
            if (so[j] != e || soa.ndim != 2 || soa.shape[0] != 1 || soa.shape[1] != 3) {
                fail(c, "%s: sum_scatter element %d is %g (ndim %d), expected %g", what, j, so[j], soa.ndim, e);
                break;
            }
        }

    if (n >= 2) {
        int32_t mine[4], got[4] = { 0 };
        int next = (r + 1) % n, prev = (r + n - 1) % n;
        for (int j = 0; j < 4; j++)
            mine[j] = 1000 * r + 10 * round + j;
        mlxd_array ma = { MLXD_INT32, 1, { 4 }, mine }, ga = { MLXD_INT32, 1, { 4 }, got };
        rc = mlxd_send(g, &ma, next);
        if (rc < 0)
            fail(c, "%s: send to %d: %s: %s", what, next, mlxd_strerror(rc), mlxd_last_error(g));
        rc = mlxd_recv(g, &ga, prev);
        if (rc < 0)
            fail(c, "%s: recv from %d: %s: %s", what, prev, mlxd_strerror(rc), mlxd_last_error(g));
        else
            for (int j = 0; j < 4; j++)
                if (got[j] != 1000 * prev + 10 * round + j) {
                    fail(c, "%s: recv from %d: element %d is %d, expected %d", what, prev, j, got[j],
                         1000 * prev + 10 * round + j);
                    break;
                }
    }
    rc = mlxd_barrier(g);
    if (rc < 0)
        fail(c, "%s: barrier: %s: %s", what, mlxd_strerror(rc), mlxd_last_error(g));
}

static int mode_split(struct ctx *c) {
    mlxd_group *w = init_or_die(c, NULL);
    int n = mlxd_group_size(w), hosts[MAX_RANKS];
    int32_t h32[MAX_RANKS];
    if (n > MAX_RANKS || n < 3 || !gather_int(c, w, "hosts", c->host, h32)) {
        fail(c, "needs a job of 3 to %d ranks", MAX_RANKS);
        return finish(c);
    }
    for (int i = 0; i < n; i++)
        hosts[i] = h32[i];
    struct sub subs[4], world = { .name = "world", .g = w, .n = n };
    int ns = 0;
    if (!do_split(c, w, hosts, "by_host", color_host, false, &subs[ns++]) ||
        !do_split(c, w, hosts, "by_parity_reversed", color_parity, true, &subs[ns++]) ||
        !do_split(c, w, hosts, "first_and_rest", color_first, false, &subs[ns++]))
        return finish(c);
    // A split of a subgroup: by host again, from the parity groups.
    int sub_hosts[MAX_RANKS];
    for (int i = 0; i < subs[1].n; i++)
        sub_hosts[i] = hosts[subs[1].parents[i]];
    if (!do_split(c, subs[1].g, sub_hosts, "parity_then_host", color_host, false, &subs[ns++]))
        return finish(c);

    // Across all members: at least one subgroup stays on one host and one
    // spans hosts, or the layout of the job does not test what it should.
    int stays = 0, spans = 0, st = 0, sp = 0;
    for (int i = 0; i < ns; i++) {
        stays += subs[i].n > 1 && !subs[i].spans;
        spans += subs[i].spans;
    }
    int32_t all[MAX_RANKS];
    if (gather_int(c, w, "stays", stays, all))
        for (int i = 0; i < n; i++)
            st += all[i];
    if (gather_int(c, w, "spans", spans, all))
        for (int i = 0; i < n; i++)
            sp += all[i];
    if (!st || !sp)
        fail(c, "no subgroup of more than one member %s", !st ? "stays on one host" : "spans hosts");
    note(c, "members in subgroups that stay on one host: %d, that span hosts: %d", st, sp);

    // Ops on every group, interleaved with the parent's.
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < ns; i++) {
            sub_ops(c, &subs[i], round);
            smoke_sum(c, w, "world between subgroup ops");
        }
        sub_ops(c, &world, round);
    }
    for (int i = ns - 1; i >= 0; i--)
        mlxd_group_free(subs[i].g);
    smoke_sum(c, w, "world after freeing the subgroups");
    mlxd_group_free(w);
    return finish(c);
}

/* ---------- resplit ---------- */

static int color_all(const int *hosts, int r) {
    (void) hosts;
    (void) r;
    return 0;
}

static int mode_resplit(struct ctx *c, int rounds) {
    mlxd_group *w = init_or_die(c, NULL);
    int n = mlxd_group_size(w), hosts[MAX_RANKS];
    int32_t h32[MAX_RANKS];
    if (n > MAX_RANKS || !gather_int(c, w, "hosts", c->host, h32)) {
        fail(c, "needs a job of at most %d ranks", MAX_RANKS);
        return finish(c);
    }
    for (int i = 0; i < n; i++)
        hosts[i] = h32[i];
    for (int round = 0; round < rounds && !c->t.failures; round++) {
        struct sub s;
        char what[64];
        snprintf(what, sizeof what, "round %d %s", round, round % 2 ? "all" : "by_parity");
        if (!do_split(c, w, hosts, what, round % 2 ? color_all : color_parity, false, &s))
            break;
        smoke_sum(c, s.g, what);
        mlxd_group_free(s.g);
    }
    smoke_sum(c, w, "world after the splits");
    mlxd_group_free(w);
    return finish(c);
}

/* ---------- doomed ---------- */

// Whether s mentions one of the '|'-separated words of any.
static bool mentions_any(const char *s, const char *any) {
    char buf[256], *save = NULL;
    snprintf(buf, sizeof buf, "%s", any);
    for (char *w = strtok_r(buf, "|", &save); w; w = strtok_r(NULL, "|", &save))
        if (mentions(s, w))
            return true;
    return false;
}

static int mode_doomed(struct ctx *c, const char *file, const char *host, int mib) {
    mlxd_init_opts o = MLXD_INIT_OPTS_DEFAULT;
    if (getenv("MH_TIMEOUT_MS"))
        o.timeout_ms = atoi(getenv("MH_TIMEOUT_MS"));
    mlxd_group *g = init_or_die(c, &o);
    smoke_sum(c, g, "before");
    char ready[64];
    snprintf(ready, sizeof ready, "ready.%d", c->rank);
    touch(c, ready);
    if (strcmp(file, "-") != 0)
        wait_file(c, file);
    int64_t n = mib > 0 ? (int64_t) mib << 18 : 4;
    float *x = calloc((size_t) n, sizeof *x), *out = calloc((size_t) n, sizeof *out);
    if (!x || !out) {
        fail(c, "out of memory");
        return finish(c);
    }
    mlxd_array xa = { MLXD_FLOAT32, 1, { n }, x }, oa = { MLXD_FLOAT32, 1, { n }, out };
    double t0 = now_s();
    int rc = mlxd_all_sum(g, &xa, &oa);
    long long at = realtime_ms();
    const char *msg = mlxd_last_error(g);
    if (rc != MLXD_EPEER && rc != MLXD_ETIMEDOUT && rc != MLXD_EUNAVAILABLE)
        fail(c, "all_sum while the world breaks: returned %d (%s), expected an error naming %s; last_error \"%s\"", rc,
             mlxd_strerror(rc), host, msg);
    else if (!mentions_any(msg, host))
        fail(c, "all_sum while the world breaks: %s, but last_error \"%s\" does not name host %s", mlxd_strerror(rc),
             msg, host);
    note(c, "all_sum returned %s after %.3f s, error_at_ms=%lld: \"%s\"", mlxd_strerror(rc), now_s() - t0, at, msg);
    free(x);
    free(out);
    mlxd_group_free(g);
    return finish(c);
}

/* ---------- forming ---------- */

static int mode_forming(struct ctx *c, const char *host) {
    mlxd_init_opts o = MLXD_INIT_OPTS_DEFAULT;
    mlxd_group *g = NULL;
    o.strict = true;
    double t0 = now_s();
    int rc = mlxd_init(&o, &g);
    long long at = realtime_ms();
    const char *msg = mlxd_init_error();
    if (rc != MLXD_EPEER)
        fail(c, "mlxd_init of a job that cannot form: returned %d (%s), expected MLXD_EPEER naming %s: \"%s\"", rc,
             mlxd_strerror(rc), host, msg);
    else if (!mentions(msg, host))
        fail(c, "mlxd_init of a job that cannot form: MLXD_EPEER, but \"%s\" does not name host %s", msg, host);
    note(c, "mlxd_init returned %s after %.3f s, error_at_ms=%lld: \"%s\"", mlxd_strerror(rc), now_s() - t0, at, msg);
    mlxd_group_free(g);
    return finish(c);
}

/* ---------- hold ---------- */

static int mode_hold(struct ctx *c) {
    mlxd_group *g = init_or_die(c, NULL);
    smoke_sum(c, g, "hold");
    char file[64];
    snprintf(file, sizeof file, "held.%d", c->rank);
    touch(c, file);
    wait_file(c, "release");
    expect(c, g, "barrier after release", mlxd_barrier(g), 0, NULL);
    mlxd_group_free(g);
    return finish(c);
}

static int usage(void) {
    fprintf(stderr, "usage: mhclient opposite ITERS KIB lead|follow NAME\n"
                    "       mhclient mismatch | victim | waiter | split | hold\n"
                    "       mhclient timeout MISSING MS\n"
                    "       mhclient resplit ROUNDS\n"
                    "       mhclient doomed FILE|- TEXT [MIB]\n"
                    "       mhclient forming TEXT\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 2)
        return usage();
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct ctx c = {
        .mode = argv[1],
        .dir = getenv("MH_DIR") ? getenv("MH_DIR") : "/tmp",
        .job = getenv("MLXD_JOB") ? getenv("MLXD_JOB") : "nojob",
        .rank = getenv("MLXD_RANK") ? atoi(getenv("MLXD_RANK")) : 0,
        .host = host_of_socket(),
    };
    snprintf(c.t.prefix, sizeof c.t.prefix, "mhclient %s rank %d (host %d)", c.mode, c.rank, c.host);
    snprintf(c.t.files, sizeof c.t.files, "%s/", c.dir);
    const char *m = argv[1];
    if (strcmp(m, "opposite") == 0 && argc == 6 && (!strcmp(argv[4], "lead") || !strcmp(argv[4], "follow")))
        return mode_opposite(&c, atoi(argv[2]), atoi(argv[3]), strcmp(argv[4], "lead") == 0, argv[5]);
    if (strcmp(m, "mismatch") == 0)
        return mode_mismatch(&c);
    if (strcmp(m, "victim") == 0)
        return mode_victim(&c);
    if (strcmp(m, "waiter") == 0)
        return mode_waiter(&c);
    if (strcmp(m, "timeout") == 0 && argc == 4)
        return mode_timeout(&c, atoi(argv[2]), atoi(argv[3]));
    if (strcmp(m, "split") == 0)
        return mode_split(&c);
    if (strcmp(m, "hold") == 0)
        return mode_hold(&c);
    if (strcmp(m, "doomed") == 0 && (argc == 4 || argc == 5))
        return mode_doomed(&c, argv[2], argv[3], argc == 5 ? atoi(argv[4]) : 0);
    if (strcmp(m, "forming") == 0 && argc == 3)
        return mode_forming(&c, argv[2]);
    if (strcmp(m, "resplit") == 0 && argc == 3)
        return mode_resplit(&c, atoi(argv[2]));
    return usage();
}
