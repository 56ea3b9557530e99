/* libmlxd: interrupting a wait (mlxd_set_interrupt). The check is per
 * thread; conn_wait() polls in slices while one is set and, when it fires,
 * calls conn_interrupted(), which takes this process out of the group at
 * once: a Goodbye, a short wait for its answer, then the connection is
 * closed. */
#include "libmlxd_impl.h"

// How long an interrupted wait waits for the daemon to confirm the Goodbye:
// short, since the caller (a person at Ctrl-C) wants control back within
// 100 ms; a daemon that is slower still drops the session when the process
// exits or frees the group.
#define LIB_INTERRUPT_GOODBYE_MS 50

static _Thread_local mlxd_interrupt_fn interrupt_fn;
static _Thread_local void *interrupt_arg;

void mlxd_set_interrupt(mlxd_interrupt_fn fn, void *arg) {
    interrupt_fn = fn;
    interrupt_arg = arg;
}

long lib_wait_slice(long ms) {
    return interrupt_fn && ms > MLXD_INTERRUPT_SLICE_MS ? MLXD_INTERRUPT_SLICE_MS : ms;
}

bool lib_interrupted(void) {
    return interrupt_fn && interrupt_fn(interrupt_arg);
}

int conn_interrupted(struct conn *c, char *err) {
    mlxd_interrupt_fn fn = interrupt_fn;
    void *arg = interrupt_arg;

    // The Goodbye's own wait must not be interrupted again.
    interrupt_fn = NULL;
    conn_goodbye(c, LIB_INTERRUPT_GOODBYE_MS);
    interrupt_fn = fn;
    interrupt_arg = arg;
    if (!conn_is_broken(c))
        conn_break(c);
    return lib_errorf(err, MLXD_EINTR, "interrupted while waiting for mlxd; this process left the group");
}
