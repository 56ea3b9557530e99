/* interrupt_case: mlxd_set_interrupt() in C, as the Python module uses it
 * for Ctrl-C. Rank 0 waits in an all_sum that rank 1 never joins, with an
 * interrupt check that says stop 300 ms in: the all_sum must fail with
 * MLXD_EINTR within MLXD_INTERRUPT_SLICE_MS of that (with a generous
 * margin for a busy machine), and the check must have been called every
 * slice meanwhile. Rank 1 then finds rank 0 gone: the all_sum rank 0 had
 * handed over still completes (or, had the daemon not held it yet, fails
 * with MLXD_EPEER), and its next op, which can no longer complete, fails
 * with MLXD_EPEER. Run with 2 ranks under mlxctl launch. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "testclient.h"

static struct tc T;

struct check {
    double stop_at_ms;                  // say stop from this moment on
    double said_ms;                     // when it first said so
    int calls;
};

static bool check(void *arg) {
    struct check *c = arg;
    double now = tc_now_ms();
    c->calls++;
    if (now < c->stop_at_ms)
        return false;
    if (c->said_ms == 0)
        c->said_ms = now;
    return true;
}

int main(void) {
    mlxd_init_opts o = MLXD_INIT_OPTS_DEFAULT;
    mlxd_group *g;
    const char *dir = getenv("MLXT_DIR"), *job = getenv("MLXD_JOB");
    o.strict = true;
    int r = mlxd_init(&o, &g);
    snprintf(T.prefix, sizeof T.prefix, "interrupt_case rank %d", r == 0 ? mlxd_group_rank(g) : -1);
    snprintf(T.files, sizeof T.files, "%s/%s.", dir ? dir : "/tmp", job ? job : "nojob");
    if (r < 0) {
        tc_fail(&T, "mlxd_init: %s: %s", mlxd_strerror(r), mlxd_init_error());
        return tc_finish(&T);
    }
    int32_t x[4] = { 1, 2, 3, 4 }, out[4];
    mlxd_array xa = { MLXD_INT32, 1, { 4 }, x }, oa = { MLXD_INT32, 1, { 4 }, out };
    if (mlxd_group_rank(g) == 0) {
        struct check c = { .stop_at_ms = tc_now_ms() + 300 };
        mlxd_set_interrupt(check, &c);
        r = mlxd_all_sum(g, &xa, &oa);
        double back = tc_now_ms();
        mlxd_set_interrupt(NULL, NULL);
        if (r != MLXD_EINTR)
            tc_fail(&T, "all_sum gave %s, expected MLXD_EINTR", mlxd_strerror(r));
        else if (!tc_mentions(mlxd_last_error(g), "interrupted"))
            tc_fail(&T, "MLXD_EINTR with the message \"%s\"", mlxd_last_error(g));
        tc_note(&T, "the wait ended %.1f ms after the check said stop (slice %d ms), %d calls",
                back - c.said_ms, MLXD_INTERRUPT_SLICE_MS, c.calls);
        if (c.said_ms == 0 || back - c.said_ms > 1000)
            tc_fail(&T, "the wait did not end within 1 s of the check saying stop");
        if (c.calls < 300 / MLXD_INTERRUPT_SLICE_MS / 2)
            tc_fail(&T, "the check was called %d times in 300 ms", c.calls);
        r = mlxd_barrier(g);
        if (r == 0)
            tc_fail(&T, "a barrier after leaving the group succeeded");
        tc_touch(&T, "interrupted");
    } else {
        tc_wait_file(&T, "interrupted", 60000);
        r = mlxd_all_sum(g, &xa, &oa);
        if (r == 0 && (out[0] != 2 || out[3] != 8))
            tc_fail(&T, "all_sum with rank 0's accepted part gave %d .. %d, expected 2 .. 8", out[0], out[3]);
        else if (r != 0 && r != MLXD_EPEER)
            tc_fail(&T, "all_sum after rank 0 left gave %s (%s)", mlxd_strerror(r), mlxd_last_error(g));
        r = mlxd_barrier(g);
        if (r != MLXD_EPEER)
            tc_fail(&T, "barrier after rank 0 left gave %s (%s), expected MLXD_EPEER", mlxd_strerror(r),
                    mlxd_last_error(g));
    }
    mlxd_group_free(g);
    return tc_finish(&T);
}
