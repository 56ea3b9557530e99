#include "testclient.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void say(const char *head, struct tc *t, const char *fmt, va_list ap) {
    printf("%s%s: ", head, t->prefix);
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
}

void tc_fail(struct tc *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    say("FAIL ", t, fmt, ap);
    va_end(ap);
    t->failures++;
}

void tc_note(struct tc *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    say("", t, fmt, ap);
    va_end(ap);
}

int tc_finish(struct tc *t) {
    tc_note(t, "%s (%d failures)", t->failures ? "FAILED" : "ok", t->failures);
    return t->failures ? 1 : 0;
}

double tc_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}

bool tc_mentions(const char *s, const char *word) {
    return s && strcasestr(s, word) != NULL;
}

void tc_touch(struct tc *t, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s%s", t->files, name);
    int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) {
        tc_fail(t, "cannot create %s: %s", path, strerror(errno));
        exit(1);
    }
    close(fd);
}

void tc_wait_file(struct tc *t, const char *name, double timeout_ms) {
    char path[1024];
    snprintf(path, sizeof path, "%s%s", t->files, name);
    double deadline = tc_now_ms() + timeout_ms;
    while (access(path, F_OK) != 0) {
        if (tc_now_ms() > deadline) {
            tc_fail(t, "gave up waiting for %s after %.0f s", path, timeout_ms / 1000);
            exit(1);
        }
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
}

bool tc_smoke_sum(struct tc *t, mlxd_group *g, const char *what) {
    int n = mlxd_group_size(g), r = mlxd_group_rank(g);
    int32_t x[5], out[5];
    for (int i = 0; i < 5; i++)
        x[i] = r * 10 + i;
    mlxd_array xa = { MLXD_INT32, 1, { 5 }, x }, oa = { MLXD_INT32, 1, { 5 }, out };
    int rc = mlxd_all_sum(g, &xa, &oa);
    if (rc < 0) {
        tc_fail(t, "%s: all_sum: %s: %s", what, mlxd_strerror(rc), mlxd_last_error(g));
        return false;
    }
    for (int i = 0; i < 5; i++) {
        int32_t e = 10 * (n * (n - 1) / 2) + n * i;
        if (out[i] != e) {
            tc_fail(t, "%s: all_sum element %d is %d, expected %d", what, i, out[i], e);
            return false;
        }
    }
    return true;
}

void tc_setup(struct tc *t, const char *prog, const char *mode) {
    const char *dir = getenv("MLXT_DIR") ? getenv("MLXT_DIR") : "/tmp";
    const char *job = getenv("MLXD_JOB") ? getenv("MLXD_JOB") : "nojob";
    const char *rank = getenv("MLXD_RANK") ? getenv("MLXD_RANK") : "?";
    snprintf(t->prefix, sizeof t->prefix, "%s %s rank %s", prog, mode, rank);
    snprintf(t->files, sizeof t->files, "%s/%s.", dir, job);
}

mlxd_group *tc_init_or_die(struct tc *t) {
    mlxd_group *g = NULL;
    int rc = mlxd_init(NULL, &g);
    if (rc < 0) {
        tc_fail(t, "mlxd_init: %s: %s", mlxd_strerror(rc), mlxd_init_error());
        exit(1);
    }
    return g;
}

bool tc_expect(struct tc *t, mlxd_group *g, const char *what, int rc, int want) {
    if (rc == want)
        return true;
    tc_fail(t, "%s: returned %s, expected %s; last_error: \"%s\"", what, mlxd_strerror(rc), mlxd_strerror(want),
            mlxd_last_error(g));
    return false;
}
