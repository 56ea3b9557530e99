/* What the integration tests' client programs (errcase, hardclient,
 * mhclient) share: reporting a failure or a note under the program's prefix,
 * file rendezvous between processes with a deadline, and a known all_sum
 * that shows a group works. */
#ifndef MLXD_TESTCLIENT_H
#define MLXD_TESTCLIENT_H

#include <stdbool.h>

#include "mlxd/mlxd.h"

struct tc {
    char prefix[160];           // "errcase MODE rank R", in front of every line
    char files[512];            // rendezvous files are files + name
    int failures;
};

// Lines on stdout, flushed: "FAIL prefix: ..." (counted) or "prefix: ...".
void tc_fail(struct tc *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tc_note(struct tc *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// The last line, and the exit status: 0 without failures.
int tc_finish(struct tc *t);

// Monotonic clock in milliseconds.
double tc_now_ms(void);

// Case-insensitive: does s contain word?
bool tc_mentions(const char *s, const char *word);

// Creates the rendezvous file name; waits (polling every millisecond) until
// another process created it. Either exits the program on failure.
void tc_touch(struct tc *t, const char *name);
void tc_wait_file(struct tc *t, const char *name, double timeout_ms);

// Sets t's prefix ("PROG MODE rank R", R from $MLXD_RANK) and its
// rendezvous files ($MLXT_DIR/$MLXD_JOB.NAME), as the programs share them.
void tc_setup(struct tc *t, const char *prog, const char *mode);

// mlxd_init() with default options; on failure reports it and exits 1.
mlxd_group *tc_init_or_die(struct tc *t);

// Checks rc against want (0 or an MLXD_E* code); reports a difference with
// g's last_error (g may be NULL). True when they agree.
bool tc_expect(struct tc *t, mlxd_group *g, const char *what, int rc, int want);

// An all_sum of int32 [5] with a known result: true when the group works;
// what names the group and the moment in the failure.
bool tc_smoke_sum(struct tc *t, mlxd_group *g, const char *what);

#endif
