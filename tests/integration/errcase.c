/* errcase: client programs for the error behaviour of libmlxd and mlxd, one
 * mode per behaviour. Each checks the exact error code and that the detailed
 * message names the right thing, prints "FAIL ..." lines for what did not
 * hold, and exits 0 when everything held (the modes "dup" and "size" exit 10
 * when this process was the one refused, 11 when it timed out waiting).
 *
 * The job comes from the environment (MLXD_JOB, MLXD_RANK, MLXD_SIZE,
 * MLXD_SOCKET), as mlxctl launch or the harness's spawn_rank set it. Ranks of
 * one job coordinate outside mlxd through files in $MLXT_DIR (one rank waits
 * for another's file, with a deadline), so that a test can hold a member back
 * without sleeping.
 *
 *   errcase MODE [ARGS]
 *
 * Modes: smoke, mismatch, timeout [--daemon-deadline], killed, leave, drain,
 * init_bad RANK SIZE WORD, init_alone, dup, size, badargs, strict_nodaemon,
 * singleton. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mlxd/mlxd.h"
#include "testclient.h"

#define FILE_DEADLINE_MS 30000

struct ctx {
    const char *mode, *dir, *job;
    int rank;          // from the environment, before init
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



static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}


// Does s speak of rank r: "rank" followed (anywhere later) by the number r
// standing alone, as in "rank 1", "ranks [1]", "missing ranks: 0, 1"?
static bool mentions_rank(const char *s, int r) {
    const char *p = s ? strcasestr(s, "rank") : NULL;
    if (!p)
        return false;
    for (p += 4; *p; p++) {
        if (!isdigit((unsigned char) *p) || isdigit((unsigned char) p[-1]))
            continue;
        char *end;
        long v = strtol(p, &end, 10);
        if (v == r && !isdigit((unsigned char) *end) && *end != '.')
            return true;
    }
    return false;
}



static mlxd_group *init_or_die(struct ctx *c, const mlxd_init_opts *o) {
    mlxd_group *g = NULL;
    int rc = mlxd_init(o, &g);
    if (rc < 0) {
        fail(c, "mlxd_init: %s: %s", mlxd_strerror(rc), mlxd_init_error());
        exit(1);
    }
    return g;
}

// Checks that call returned want and that the group's message mentions every
// one of the words (NULL-terminated).
static void expect(struct ctx *c, mlxd_group *g, const char *what, int rc, int want, ...) {
    const char *msg = mlxd_last_error(g);
    if (rc != want) {
        fail(c, "%s: returned %d (%s), expected %s; last_error: \"%s\"", what, rc, mlxd_strerror(rc),
             mlxd_strerror(want), msg);
        return;
    }
    va_list ap;
    va_start(ap, want);
    for (const char *w; (w = va_arg(ap, const char *));)
        if (!mentions(msg, w))
            fail(c, "%s: got %s as expected, but last_error \"%s\" does not mention \"%s\"", what,
                 mlxd_strerror(rc), msg, w);
    va_end(ap);
    if (want != 0)
        note(c, "%s: %s: \"%s\"", what, mlxd_strerror(rc), msg);
}

// Like expect, but the message must mention at least one of the words.
static void expect_any(struct ctx *c, mlxd_group *g, const char *what, int rc, int want, ...) {
    const char *msg = mlxd_last_error(g);
    if (rc != want) {
        fail(c, "%s: returned %d (%s), expected %s; last_error: \"%s\"", what, rc, mlxd_strerror(rc),
             mlxd_strerror(want), msg);
        return;
    }
    va_list ap;
    va_start(ap, want);
    bool any = false, none = true;
    char words[256] = "";
    for (const char *w; (w = va_arg(ap, const char *));) {
        none = false;
        any |= mentions(msg, w);
        strncat(words, " \"", sizeof words - strlen(words) - 1);
        strncat(words, w, sizeof words - strlen(words) - 1);
        strncat(words, "\"", sizeof words - strlen(words) - 1);
    }
    va_end(ap);
    if (!none && !any)
        fail(c, "%s: got %s as expected, but last_error \"%s\" mentions none of%s", what,
             mlxd_strerror(rc), msg, words);
    else
        note(c, "%s: %s: \"%s\"", what, mlxd_strerror(rc), msg);
}



/* ---------- modes ---------- */

static int mode_smoke(struct ctx *c) {
    mlxd_group *g = init_or_die(c, NULL);
    smoke_sum(c, g, "smoke");
    expect(c, g, "barrier", mlxd_barrier(g), 0, NULL);
    mlxd_group_free(g);
    return finish(c);
}

// The last rank disagrees with the others, on op, dtype, shape, ndim; every
// member gets MLXD_EMISMATCH naming the difference, and the next agreeing op
// works.
static int mode_mismatch(struct ctx *c) {
    mlxd_group *g = init_or_die(c, NULL);
    int n = mlxd_group_size(g), r = mlxd_group_rank(g);
    bool odd = r == n - 1;
    float f[6] = { 1, 2, 3, 4, 5, 6 }, fo[64];
    int32_t i32[6] = { 1, 2, 3, 4, 5, 6 };
    mlxd_array x = { MLXD_FLOAT32, 1, { 4 }, f }, out = { MLXD_FLOAT32, 1, { 4 }, fo };

    int rc = odd ? mlxd_all_max(g, &x, &out) : mlxd_all_sum(g, &x, &out);
    expect(c, g, "all_sum against all_max", rc, MLXD_EMISMATCH, "all_sum", "all_max", NULL);
    smoke_sum(c, g, "all_sum after an op mismatch");

    mlxd_array xi = { MLXD_INT32, 1, { 4 }, i32 };
    rc = mlxd_all_sum(g, odd ? &xi : &x, &out);
    expect_any(c, g, "float32 against int32", rc, MLXD_EMISMATCH, "dtype", "int32", NULL);
    smoke_sum(c, g, "all_sum after a dtype mismatch");

    mlxd_array x5 = { MLXD_FLOAT32, 1, { 5 }, f };
    rc = mlxd_all_sum(g, odd ? &x5 : &x, &out);
    expect(c, g, "shape [4] against [5]", rc, MLXD_EMISMATCH, "shape", NULL);
    smoke_sum(c, g, "all_sum after a shape mismatch");

    mlxd_array x22 = { MLXD_FLOAT32, 2, { 2, 2 }, f };
    rc = mlxd_all_sum(g, odd ? &x22 : &x, &out);
    expect(c, g, "shape [4] against [2,2]", rc, MLXD_EMISMATCH, "shape", NULL);

    rc = odd ? mlxd_barrier(g) : mlxd_all_gather(g, &x, &out);
    expect(c, g, "all_gather against barrier", rc, MLXD_EMISMATCH, "all_gather", "barrier", NULL);
    smoke_sum(c, g, "all_sum after the mismatches");
    mlxd_group_free(g);
    return finish(c);
}

// Rank 1 never calls the op: rank 0 gets MLXD_ETIMEDOUT after its deadline,
// naming rank 1; the group is then aborted for both.
static int mode_timeout(struct ctx *c, bool daemon_deadline) {
    mlxd_init_opts o = MLXD_INIT_OPTS_DEFAULT;
    if (!daemon_deadline)
        o.timeout_ms = 1000;
    mlxd_group *g = init_or_die(c, &o);
    int32_t x[3] = { 1, 2, 3 }, out[3];
    mlxd_array xa = { MLXD_INT32, 1, { 3 }, x }, oa = { MLXD_INT32, 1, { 3 }, out };
    if (mlxd_group_rank(g) == 0) {
        double t0 = now_s();
        int rc = mlxd_all_sum(g, &xa, &oa);
        double dt = now_s() - t0;
        expect(c, g, "all_sum without rank 1", rc, MLXD_ETIMEDOUT, NULL);
        if (rc == MLXD_ETIMEDOUT && !mentions_rank(mlxd_last_error(g), 1))
            fail(c, "last_error \"%s\" does not name rank 1", mlxd_last_error(g));
        if (dt < 0.9 || dt > 3.0)
            fail(c, "timed out after %.3f s, expected about 1 s", dt);
        note(c, "timed out after %.3f s", dt);
        t0 = now_s();
        rc = mlxd_barrier(g);
        expect(c, g, "barrier on the timed-out group", rc, MLXD_ETIMEDOUT, NULL);
        if (now_s() - t0 > 0.5)
            fail(c, "the barrier on the aborted group took %.3f s", now_s() - t0);
        touch(c, "done");
    } else {
        wait_file(c, "done");
        int rc = mlxd_all_sum(g, &xa, &oa);
        expect(c, g, "all_sum on the timed-out group", rc, MLXD_ETIMEDOUT, NULL);
    }
    mlxd_group_free(g);
    return finish(c);
}

// Rank 1 kills itself while rank 0 waits in all_sum: rank 0 gets MLXD_EPEER
// in well under a second, and its later ops too.
static int mode_killed(struct ctx *c) {
    mlxd_group *g = init_or_die(c, NULL);
    float x[4] = { 1, 2, 3, 4 }, out[4];
    mlxd_array xa = { MLXD_FLOAT32, 1, { 4 }, x }, oa = { MLXD_FLOAT32, 1, { 4 }, out };
    if (mlxd_group_rank(g) == 1) {
        wait_file(c, "waiting");
        raise(SIGKILL);
    }
    touch(c, "waiting");
    double t0 = now_s();
    int rc = mlxd_all_sum(g, &xa, &oa);
    double dt = now_s() - t0;
    expect(c, g, "all_sum while rank 1 is killed", rc, MLXD_EPEER, NULL);
    if (rc == MLXD_EPEER && !*mlxd_last_error(g))
        fail(c, "last_error is empty");
    if (dt >= 1.0)
        fail(c, "MLXD_EPEER came after %.3f s, expected under 1 s", dt);
    note(c, "MLXD_EPEER after %.3f s", dt);
    rc = mlxd_all_sum(g, &xa, &oa);
    expect(c, g, "a later all_sum", rc, MLXD_EPEER, NULL);
    mlxd_group_free(g);
    return finish(c);
}

// Rank 1 leaves with mlxd_group_free (and stays alive): rank 0's pending and
// later ops get MLXD_EPEER.
static int mode_leave(struct ctx *c) {
    mlxd_group *g = init_or_die(c, NULL);
    float x[4] = { 1, 2, 3, 4 }, out[4];
    mlxd_array xa = { MLXD_FLOAT32, 1, { 4 }, x }, oa = { MLXD_FLOAT32, 1, { 4 }, out };
    if (mlxd_group_rank(g) == 1) {
        wait_file(c, "waiting");
        mlxd_group_free(g);
        wait_file(c, "done");
        return finish(c);
    }
    touch(c, "waiting");
    double t0 = now_s();
    int rc = mlxd_all_sum(g, &xa, &oa);
    double dt = now_s() - t0;
    expect(c, g, "all_sum while rank 1 leaves", rc, MLXD_EPEER, NULL);
    if (dt >= 1.0)
        fail(c, "MLXD_EPEER came after %.3f s, expected under 1 s", dt);
    rc = mlxd_barrier(g);
    expect(c, g, "a later barrier", rc, MLXD_EPEER, NULL);
    touch(c, "done");
    mlxd_group_free(g);
    return finish(c);
}

// The daemon is stopped (SIGTERM) while rank 0 waits in all_sum: rank 0 gets
// MLXD_EUNAVAILABLE at once, and rank 1's next op too, now that no daemon
// runs.
static int mode_drain(struct ctx *c) {
    mlxd_group *g = init_or_die(c, NULL);
    float x[4] = { 1, 2, 3, 4 }, out[4];
    mlxd_array xa = { MLXD_FLOAT32, 1, { 4 }, x }, oa = { MLXD_FLOAT32, 1, { 4 }, out };
    double t0;
    if (mlxd_group_rank(g) == 0) {
        int rc = mlxd_all_sum(g, &xa, &oa);
        expect(c, g, "all_sum while the daemon stops", rc, MLXD_EUNAVAILABLE, NULL);
        touch(c, "drained");
    } else {
        wait_file(c, "drained");
        t0 = now_s();
        int rc = mlxd_barrier(g);
        expect(c, g, "barrier after the daemon stopped", rc, MLXD_EUNAVAILABLE, NULL);
        if (now_s() - t0 > 5.0)
            fail(c, "the barrier took %.3f s to notice that no daemon runs", now_s() - t0);
    }
    mlxd_group_free(g);
    return finish(c);
}

// mlxd_init with the given rank and size (-1: from the environment) must be
// refused with MLXD_EINVAL and a message that mentions word.
static int mode_init_bad(struct ctx *c, int rank, int size, const char *word) {
    mlxd_init_opts o = MLXD_INIT_OPTS_DEFAULT;
    o.rank = rank;
    o.size = size;
    o.timeout_ms = 2000;
    mlxd_group *g = NULL;
    int rc = mlxd_init(&o, &g);
    if (rc != MLXD_EINVAL)
        fail(c, "mlxd_init(rank %d, size %d): returned %d (%s), expected MLXD_EINVAL; \"%s\"", rank, size,
             rc, mlxd_strerror(rc), rc < 0 ? mlxd_init_error() : "");
    else if (!mentions(mlxd_init_error(), word))
        fail(c, "mlxd_init_error() \"%s\" does not mention \"%s\"", mlxd_init_error(), word);
    else
        note(c, "refused: \"%s\"", mlxd_init_error());
    if (rc == 0)
        mlxd_group_free(g);
    return finish(c);
}

// The only member of a job of 2 that joins: mlxd_init times out naming rank 1.
static int mode_init_alone(struct ctx *c) {
    mlxd_init_opts o = MLXD_INIT_OPTS_DEFAULT;
    o.timeout_ms = 1000;
    mlxd_group *g = NULL;
    double t0 = now_s();
    int rc = mlxd_init(&o, &g);
    double dt = now_s() - t0;
    if (rc != MLXD_ETIMEDOUT)
        fail(c, "mlxd_init: returned %d (%s), expected MLXD_ETIMEDOUT; \"%s\"", rc, mlxd_strerror(rc),
             rc < 0 ? mlxd_init_error() : "");
    else if (!mentions_rank(mlxd_init_error(), 1))
        fail(c, "mlxd_init_error() \"%s\" does not name the missing rank 1", mlxd_init_error());
    else
        note(c, "timed out after %.3f s: \"%s\"", dt, mlxd_init_error());
    if (rc == MLXD_ETIMEDOUT && (dt < 0.9 || dt > 3.0))
        fail(c, "timed out after %.3f s, expected about 1 s", dt);
    if (rc == 0)
        mlxd_group_free(g);
    return finish(c);
}

// Two processes claim the same rank: the one that comes second is refused
// (exit 10); the other forms the job with the real rank 1 and checks it works.
static int mode_dup(struct ctx *c) {
    mlxd_group *g = NULL;
    int rc = mlxd_init(NULL, &g);
    if (rc == MLXD_EINVAL) {
        if (!mentions_rank(mlxd_init_error(), c->rank))
            fail(c, "mlxd_init_error() \"%s\" does not name rank %d", mlxd_init_error(), c->rank);
        else
            note(c, "refused: \"%s\"", mlxd_init_error());
        finish(c);
        return c->t.failures ? 1 : 10;
    }
    if (rc < 0) {
        fail(c, "mlxd_init: returned %d (%s), expected 0 or MLXD_EINVAL: \"%s\"", rc, mlxd_strerror(rc),
             mlxd_init_error());
        return finish(c);
    }
    smoke_sum(c, g, "the job after a duplicate was refused");
    mlxd_group_free(g);
    return finish(c);
}

// Two processes of one job claim different sizes: the second is refused
// (exit 10, message about the size); the first times out waiting (exit 11).
static int mode_size(struct ctx *c) {
    mlxd_init_opts o = MLXD_INIT_OPTS_DEFAULT;
    o.timeout_ms = 3000;
    mlxd_group *g = NULL;
    int rc = mlxd_init(&o, &g);
    if (rc == MLXD_EINVAL) {
        if (!mentions(mlxd_init_error(), "size"))
            fail(c, "mlxd_init_error() \"%s\" does not mention the size", mlxd_init_error());
        else
            note(c, "refused: \"%s\"", mlxd_init_error());
        finish(c);
        return c->t.failures ? 1 : 10;
    }
    if (rc == MLXD_ETIMEDOUT) {
        note(c, "timed out waiting: \"%s\"", mlxd_init_error());
        return 11;
    }
    fail(c, "mlxd_init: returned %d (%s), expected MLXD_EINVAL or MLXD_ETIMEDOUT: \"%s\"", rc,
         mlxd_strerror(rc), rc < 0 ? mlxd_init_error() : "");
    if (rc == 0)
        mlxd_group_free(g);
    return finish(c);
}

// Every rank makes the same bad calls; each is refused, and the group keeps
// working after each one.
static int mode_badargs(struct ctx *c) {
    mlxd_group *g = init_or_die(c, NULL);
    int n = mlxd_group_size(g), r = mlxd_group_rank(g);
    float f[16] = { 0 }, fo[64];
    mlxd_array out = { MLXD_FLOAT32, 1, { 4 }, fo };

    mlxd_array bad_dtype = { (mlxd_dtype) 99, 1, { 4 }, f };
    expect(c, g, "all_sum of dtype 99", mlxd_all_sum(g, &bad_dtype, &out), MLXD_EINVAL, "dtype", NULL);
    smoke_sum(c, g, "after dtype 99");

    mlxd_array ndim9 = { MLXD_FLOAT32, 9, { 1, 1, 1, 1, 1, 1, 1, 1 }, f };
    expect(c, g, "all_sum of ndim 9", mlxd_all_sum(g, &ndim9, &out), MLXD_EINVAL, "dim", NULL);
    mlxd_array ndim_neg = { MLXD_FLOAT32, -1, { 4 }, f };
    expect(c, g, "all_sum of ndim -1", mlxd_all_sum(g, &ndim_neg, &out), MLXD_EINVAL, "dim", NULL);
    mlxd_array neg_dim = { MLXD_FLOAT32, 2, { 2, -2 }, f };
    expect_any(c, g, "all_sum of shape [2,-2]", mlxd_all_sum(g, &neg_dim, &out), MLXD_EINVAL, "shape", "dim",
               "negative", NULL);
    mlxd_array no_data = { MLXD_FLOAT32, 1, { 4 }, NULL };
    expect(c, g, "all_sum with data NULL", mlxd_all_sum(g, &no_data, &out), MLXD_EINVAL, NULL);
    mlxd_array good = { MLXD_FLOAT32, 1, { 4 }, f };
    expect(c, g, "all_sum with x NULL", mlxd_all_sum(g, NULL, &out), MLXD_EINVAL, NULL);
    expect(c, g, "all_sum with out NULL", mlxd_all_sum(g, &good, NULL), MLXD_EINVAL, NULL);
    smoke_sum(c, g, "after bad shapes");

    expect_any(c, g, "send to oneself", mlxd_send(g, &good, r), MLXD_EINVAL, "self", "own", "rank", "peer", NULL);
    expect_any(c, g, "send to rank size", mlxd_send(g, &good, n), MLXD_EINVAL, "rank", "peer", "range", NULL);
    expect_any(c, g, "send to rank -1", mlxd_send(g, &good, -1), MLXD_EINVAL, "rank", "peer", "range", NULL);
    expect_any(c, g, "recv from oneself", mlxd_recv(g, &out, r), MLXD_EINVAL, "self", "own", "rank", "peer", NULL);
    expect_any(c, g, "recv from rank size", mlxd_recv(g, &out, n), MLXD_EINVAL, "rank", "peer", "range", NULL);
    smoke_sum(c, g, "after bad peers");

    mlxd_array odd_rows = { MLXD_FLOAT32, 2, { 2 * n + 1, 2 }, f };
    expect_any(c, g, "sum_scatter of a shape[0] not divisible by the size", mlxd_sum_scatter(g, &odd_rows, &out),
               MLXD_EINVAL, "divisible", "divide", NULL);
    mlxd_array scalar = { MLXD_FLOAT32, 0, { 0 }, f };
    expect(c, g, "sum_scatter of a scalar", mlxd_sum_scatter(g, &scalar, &out), MLXD_EINVAL, NULL);
    smoke_sum(c, g, "after a bad sum_scatter");

    // recv of another shape or dtype than was sent, one case per direction
    // so that neither depends on whether a mismatched message is consumed.
    if (n >= 2 && r < 2) {
        float s4[4] = { 1, 2, 3, 4 };
        int32_t i4[4] = { 1, 2, 3, 4 };
        mlxd_array sf = { MLXD_FLOAT32, 1, { 4 }, s4 }, si = { MLXD_INT32, 1, { 4 }, i4 };
        mlxd_array o5 = { MLXD_FLOAT32, 1, { 5 }, fo }, of = { MLXD_FLOAT32, 1, { 4 }, fo };
        if (r == 0) {
            expect(c, g, "send float32 [4] to rank 1", mlxd_send(g, &sf, 1), 0, NULL);
            expect_any(c, g, "recv float32 [4] of an int32 [4]", mlxd_recv(g, &of, 1), MLXD_EMISMATCH, "dtype",
                       "int32", NULL);
        } else {
            expect(c, g, "send int32 [4] to rank 0", mlxd_send(g, &si, 0), 0, NULL);
            expect_any(c, g, "recv float32 [5] of a float32 [4]", mlxd_recv(g, &o5, 0), MLXD_EMISMATCH, "shape",
                       "[4]", NULL);
        }
    }
    smoke_sum(c, g, "after mismatched recvs");
    expect(c, g, "barrier", mlxd_barrier(g), 0, NULL);
    mlxd_group_free(g);
    return finish(c);
}

static const char *socket_path(void) {
    const char *s = getenv("MLXD_SOCKET");
    return s && strncmp(s, "ipc://", 6) == 0 ? s + 6 : s;
}

// No daemon answers and strict is set: MLXD_EUNAVAILABLE naming the endpoint.
static int mode_strict_nodaemon(struct ctx *c) {
    mlxd_init_opts o = MLXD_INIT_OPTS_DEFAULT;
    o.strict = true;
    mlxd_group *g = NULL;
    double t0 = now_s();
    int rc = mlxd_init(&o, &g);
    double dt = now_s() - t0;
    if (rc != MLXD_EUNAVAILABLE)
        fail(c, "mlxd_init(strict): returned %d (%s), expected MLXD_EUNAVAILABLE; \"%s\"", rc, mlxd_strerror(rc),
             rc < 0 ? mlxd_init_error() : "");
    else if (!socket_path() || !mentions(mlxd_init_error(), socket_path()))
        fail(c, "mlxd_init_error() \"%s\" does not name the endpoint %s", mlxd_init_error(), socket_path());
    else
        note(c, "refused after %.3f s: \"%s\"", dt, mlxd_init_error());
    if (dt > 5.0)
        fail(c, "mlxd_init(strict) took %.3f s to give up", dt);
    if (mlxd_is_available())
        fail(c, "mlxd_is_available() is true with no daemon");
    if (rc == 0)
        mlxd_group_free(g);
    return finish(c);
}

// A singleton group (no daemon and not strict, or no job): rank 0 of 1,
// reductions copy, sends to oneself are refused.
static int mode_singleton(struct ctx *c, bool expect_daemon) {
    double t0 = now_s();
    mlxd_group *g = init_or_die(c, NULL);
    double dt = now_s() - t0;
    if (dt > 5.0)
        fail(c, "mlxd_init took %.3f s", dt);
    if (mlxd_group_rank(g) != 0 || mlxd_group_size(g) != 1)
        fail(c, "group is rank %d of %d, expected rank 0 of 1", mlxd_group_rank(g), mlxd_group_size(g));
    if (mlxd_is_available() != expect_daemon)
        fail(c, "mlxd_is_available() is %d, expected %d", mlxd_is_available(), expect_daemon);
    float x[3] = { 1.5f, -2, 7 }, out[8] = { 0 };
    mlxd_array xa = { MLXD_FLOAT32, 1, { 3 }, x }, oa = { MLXD_FLOAT32, 0, { 0 }, out };
    expect(c, g, "all_sum", mlxd_all_sum(g, &xa, &oa), 0, NULL);
    if (memcmp(out, x, sizeof x) != 0 || oa.ndim != 1 || oa.shape[0] != 3)
        fail(c, "all_sum on a singleton did not copy x");
    memset(out, 0, sizeof out);
    expect(c, g, "all_gather", mlxd_all_gather(g, &xa, &oa), 0, NULL);
    if (memcmp(out, x, sizeof x) != 0 || oa.ndim != 1 || oa.shape[0] != 3)
        fail(c, "all_gather on a singleton did not copy x");
    mlxd_array sc = { MLXD_FLOAT32, 0, { 0 }, x };
    memset(out, 0, sizeof out);
    expect(c, g, "all_gather of a scalar", mlxd_all_gather(g, &sc, &oa), 0, NULL);
    if (out[0] != x[0] || oa.ndim != 1 || oa.shape[0] != 1)
        fail(c, "all_gather of a scalar on a singleton: ndim %d shape[0] %lld value %g", oa.ndim,
             (long long) oa.shape[0], out[0]);
    expect(c, g, "send to oneself", mlxd_send(g, &xa, 0), MLXD_EINVAL, NULL);
    mlxd_array ra = { MLXD_FLOAT32, 1, { 3 }, out };
    expect(c, g, "recv from oneself", mlxd_recv(g, &ra, 0), MLXD_EINVAL, NULL);
    expect(c, g, "barrier", mlxd_barrier(g), 0, NULL);
    mlxd_group *s = NULL;
    int rc = mlxd_group_split(g, 0, -1, &s);
    expect(c, g, "split", rc, 0, NULL);
    if (rc == 0) {
        if (mlxd_group_rank(s) != 0 || mlxd_group_size(s) != 1)
            fail(c, "split of a singleton is rank %d of %d", mlxd_group_rank(s), mlxd_group_size(s));
        mlxd_group_free(s);
    }
    mlxd_group_free(g);
    return finish(c);
}

static int usage(void) {
    fprintf(stderr, "usage: errcase MODE [ARGS]\n");
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
    };
    snprintf(c.t.prefix, sizeof c.t.prefix, "errcase %s rank %d", c.mode, c.rank);
    snprintf(c.t.files, sizeof c.t.files, "%s/%s.", c.dir, c.job);
    const char *m = argv[1];
    if (strcmp(m, "smoke") == 0)
        return mode_smoke(&c);
    if (strcmp(m, "mismatch") == 0)
        return mode_mismatch(&c);
    if (strcmp(m, "timeout") == 0)
        return mode_timeout(&c, argc > 2 && strcmp(argv[2], "--daemon-deadline") == 0);
    if (strcmp(m, "killed") == 0)
        return mode_killed(&c);
    if (strcmp(m, "leave") == 0)
        return mode_leave(&c);
    if (strcmp(m, "drain") == 0)
        return mode_drain(&c);
    if (strcmp(m, "init_bad") == 0 && argc == 5)
        return mode_init_bad(&c, atoi(argv[2]), atoi(argv[3]), argv[4]);
    if (strcmp(m, "init_alone") == 0)
        return mode_init_alone(&c);
    if (strcmp(m, "dup") == 0)
        return mode_dup(&c);
    if (strcmp(m, "size") == 0)
        return mode_size(&c);
    if (strcmp(m, "badargs") == 0)
        return mode_badargs(&c);
    if (strcmp(m, "strict_nodaemon") == 0)
        return mode_strict_nodaemon(&c);
    if (strcmp(m, "singleton") == 0)
        return mode_singleton(&c, argc > 2 && strcmp(argv[2], "--daemon") == 0);
    return usage();
}
