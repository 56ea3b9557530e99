/* lifecheck: client programs for the lifetime MLX programs rely on (DESIGN.md,
 * "What MLX programs rely on"): init again gives another handle on the same
 * member, a split completes for every member whatever the others do next,
 * and nothing accepted is lost when its member leaves, exits or is killed.
 * One mode per behaviour; each prints "FAIL ..." lines for what did not hold
 * and exits 0 when everything held. Ranks coordinate outside mlxd through
 * files in $MLXT_DIR (a wait has a deadline), as errcase's do.
 *
 *   lifecheck MODE
 *
 * Modes:
 *   init_twice    init twice: same rank and size, one op sequence across the
 *                 two handles, freeing the first is invisible to the others
 *   intruder      (another process, once the job formed) init with that job
 *                 id is refused: MLXD_EINVAL naming the formed job
 *   split_race    20 times: split and free the new group at once; then
 *                 splits with reversed keys, freed at once too: every split
 *                 succeeds with the rank its key gives
 *   ring          send to the next rank, receive from the previous one,
 *                 free, exit: no barrier, and every message arrives
 *   send_kill     rank 1 sends to rank 0 and SIGKILLs itself right after the
 *                 send returned; rank 0 then receives it, and a second recv
 *                 and an all_sum get MLXD_EPEER
 *   contrib_kill  rank 1 calls all_sum (the test kills it while it waits);
 *                 the others call all_sum once it is dead and get the sum
 *                 with rank 1's part; their next all_sum gets MLXD_EPEER */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mlxd/mlxd.h"
#include "testclient.h"

#define FILE_DEADLINE_MS 60000

static struct tc T;

#define fail(...) tc_fail(&T, __VA_ARGS__)
#define note(...) tc_note(&T, __VA_ARGS__)

#define init_or_die() tc_init_or_die(&T)
#define expect(g, what, rc, want) tc_expect(&T, g, what, rc, want)

// all_sum of int32 [4], x[i] = (rank + 1) * 100 + i: the result names who
// took part (sum of (rank + 1) * 100 over the members, plus n * i).
static int rank_sum(mlxd_group *g, int32_t out[4]) {
    int32_t x[4];
    for (int i = 0; i < 4; i++)
        x[i] = (mlxd_group_rank(g) + 1) * 100 + i;
    mlxd_array xa = { MLXD_INT32, 1, { 4 }, x }, oa = { MLXD_INT32, 1, { 4 }, out };
    return mlxd_all_sum(g, &xa, &oa);
}

static void check_rank_sum(const char *what, const int32_t out[4], int n) {
    for (int i = 0; i < 4; i++) {
        int32_t want = 100 * n * (n + 1) / 2 + n * i;
        if (out[i] != want) {
            fail("%s: element %d is %d, expected %d (every member's part)", what, i, out[i], want);
            return;
        }
    }
}

static int mode_init_twice(void) {
    mlxd_group *a = init_or_die(), *b = init_or_die();
    int n = mlxd_group_size(a), r = mlxd_group_rank(a);
    int32_t out[4];
    if (a == b)
        fail("the second init returned the same pointer; expected another handle");
    if (mlxd_group_rank(b) != r || mlxd_group_size(b) != n)
        fail("the second init gave rank %d of %d, the first %d of %d", mlxd_group_rank(b), mlxd_group_size(b), r, n);
    tc_touch(&T, "formed");
    // One op sequence: the others' k-th op meets this member's k-th,
    // whichever handle it came through.
    if (expect(a, "all_sum on the first handle", rank_sum(a, out), 0))
        check_rank_sum("all_sum on the first handle", out, n);
    if (expect(b, "all_sum on the second handle", rank_sum(b, out), 0))
        check_rank_sum("all_sum on the second handle", out, n);
    // Odd ranks free their first handle: nobody else notices.
    if (r % 2)
        mlxd_group_free(a);
    if (expect(b, "all_sum after odd ranks freed a handle", rank_sum(b, out), 0))
        check_rank_sum("all_sum after odd ranks freed a handle", out, n);
    mlxd_group *c = init_or_die();      // a third, while one is freed
    if (expect(c, "barrier on a third handle", mlxd_barrier(c), 0) && r % 2 == 0)
        expect(a, "barrier on the first handle", mlxd_barrier(a), 0);
    else if (r % 2)
        expect(b, "barrier on the second handle", mlxd_barrier(b), 0);
    mlxd_group_free(c);
    if (r % 2 == 0)
        mlxd_group_free(a);
    if (expect(b, "all_sum on the last handle", rank_sum(b, out), 0))
        check_rank_sum("all_sum on the last handle", out, n);
    // The intruder (another process with this job id) is refused while we
    // are all still here.
    if (r == 0)
        tc_wait_file(&T, "intruder-done", FILE_DEADLINE_MS);
    expect(b, "barrier after the intruder", mlxd_barrier(b), 0);
    mlxd_group_free(b);
    return tc_finish(&T);
}

static int mode_intruder(void) {
    mlxd_group *g = NULL;
    mlxd_init_opts o = MLXD_INIT_OPTS_DEFAULT;
    o.strict = true;
    int rc = mlxd_init(&o, &g);
    if (rc != MLXD_EINVAL)
        fail("init with the id of a formed job returned %s, expected MLXD_EINVAL", mlxd_strerror(rc));
    else if (!tc_mentions(mlxd_init_error(), "formed"))
        fail("the refusal \"%s\" does not say that the job formed", mlxd_init_error());
    else
        note("refused: %s", mlxd_init_error());
    if (rc == 0)
        mlxd_group_free(g);
    tc_touch(&T, "intruder-done");
    return tc_finish(&T);
}

static int mode_split_race(void) {
    mlxd_group *g = init_or_die();
    int n = mlxd_group_size(g), r = mlxd_group_rank(g), bad = 0;
    for (int i = 0; i < 40; i++) {
        bool reversed = i >= 20;
        mlxd_group *s = NULL;
        int rc = mlxd_group_split(g, 0, reversed ? n - 1 - r : r, &s);
        if (rc < 0) {
            if (bad++ < 5)
                fail("split %d (%s keys): %s: %s", i, reversed ? "reversed" : "in order", mlxd_strerror(rc),
                     mlxd_last_error(g));
            continue;
        }
        int want = reversed ? n - 1 - r : r;
        if (mlxd_group_rank(s) != want || mlxd_group_size(s) != n)
            fail("split %d: rank %d of %d, expected %d of %d", i, mlxd_group_rank(s), mlxd_group_size(s), want, n);
        mlxd_group_free(s);
    }
    if (bad)
        fail("%d of 40 splits failed", bad);
    // The parent still works, and a split that is used works too.
    mlxd_group *s = NULL;
    if (expect(g, "a last split", mlxd_group_split(g, r % 2, -1, &s), 0)) {
        tc_smoke_sum(&T, s, "all_sum on the last split");
        mlxd_group_free(s);
    }
    tc_smoke_sum(&T, g, "all_sum on the parent");
    mlxd_group_free(g);
    return tc_finish(&T);
}

static int mode_ring(void) {
    mlxd_group *g = init_or_die();
    int n = mlxd_group_size(g), r = mlxd_group_rank(g);
    float x[256], y[256];
    for (int i = 0; i < 256; i++)
        x[i] = (float) (r * 1000 + i);
    mlxd_array xa = { MLXD_FLOAT32, 1, { 256 }, x }, ya = { MLXD_FLOAT32, 1, { 256 }, y };
    if (expect(g, "send to the next rank", mlxd_send(g, &xa, (r + 1) % n), 0) &&
        expect(g, "recv from the previous rank", mlxd_recv(g, &ya, (r + n - 1) % n), 0))
        for (int i = 0; i < 256; i++)
            if (y[i] != (float) (((r + n - 1) % n) * 1000 + i)) {
                fail("recv: element %d is %g, expected %d", i, y[i], ((r + n - 1) % n) * 1000 + i);
                break;
            }
    mlxd_group_free(g);
    return tc_finish(&T);
}

static int mode_send_kill(void) {
    mlxd_group *g = init_or_die();
    int r = mlxd_group_rank(g);
    int32_t x[1000], y[1000], out[4];
    mlxd_array xa = { MLXD_INT32, 1, { 1000 }, x }, ya = { MLXD_INT32, 1, { 1000 }, y };
    if (r == 1) {
        for (int i = 0; i < 1000; i++)
            x[i] = 7 * i;
        if (!expect(g, "send to rank 0", mlxd_send(g, &xa, 0), 0))
            return tc_finish(&T);
        raise(SIGKILL);
    }
    if (r != 0) {
        // Others only see the group's collectives end.
        expect(g, "all_sum without rank 1", rank_sum(g, out), MLXD_EPEER);
        mlxd_group_free(g);
        return tc_finish(&T);
    }
    tc_wait_file(&T, "killed", FILE_DEADLINE_MS);
    if (expect(g, "recv of the message of a killed sender", mlxd_recv(g, &ya, 1), 0))
        for (int i = 0; i < 1000; i++)
            if (y[i] != 7 * i) {
                fail("recv: element %d is %d, expected %d", i, y[i], 7 * i);
                break;
            }
    int rc = mlxd_recv(g, &ya, 1);
    if (expect(g, "a second recv from the killed sender", rc, MLXD_EPEER) &&
        !tc_mentions(mlxd_last_error(g), "rank 1"))
        fail("the second recv's error \"%s\" does not name rank 1", mlxd_last_error(g));
    expect(g, "all_sum without rank 1", rank_sum(g, out), MLXD_EPEER);
    mlxd_group_free(g);
    return tc_finish(&T);
}

// Rank 1 hands over its all_sum and dies in it (the test kills it once
// the daemon shows it waiting); the others start theirs only once the
// daemon noticed the death.
static int mode_contrib_kill(void) {
    mlxd_group *g = init_or_die();
    int n = mlxd_group_size(g), r = mlxd_group_rank(g);
    int32_t out[4];
    if (r == 1) {
        int rc = rank_sum(g, out);
        fail("all_sum returned %s although the test should have killed this rank", mlxd_strerror(rc));
        return tc_finish(&T);
    }
    tc_wait_file(&T, "killed", FILE_DEADLINE_MS);
    if (expect(g, "all_sum whose rank 1 contributed and then died", rank_sum(g, out), 0))
        check_rank_sum("all_sum whose rank 1 contributed and then died", out, n);
    int rc = rank_sum(g, out);
    if (expect(g, "the next all_sum, which rank 1 never issued", rc, MLXD_EPEER) &&
        !tc_mentions(mlxd_last_error(g), "rank 1"))
        fail("the error \"%s\" does not name rank 1", mlxd_last_error(g));
    mlxd_group_free(g);
    return tc_finish(&T);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    tc_setup(&T, "lifecheck", mode);
    if (strcmp(mode, "init_twice") == 0)
        return mode_init_twice();
    if (strcmp(mode, "intruder") == 0)
        return mode_intruder();
    if (strcmp(mode, "split_race") == 0)
        return mode_split_race();
    if (strcmp(mode, "ring") == 0)
        return mode_ring();
    if (strcmp(mode, "send_kill") == 0)
        return mode_send_kill();
    if (strcmp(mode, "contrib_kill") == 0)
        return mode_contrib_kill();
    fprintf(stderr, "usage: lifecheck init_twice|intruder|split_race|ring|send_kill|contrib_kill\n");
    return 2;
}
