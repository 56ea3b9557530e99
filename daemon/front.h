/* The ZeroMQ front: the endpoint's lock and directory, the ROUTER socket,
 * bound by us or passed by the service manager, and its socket file. */
#ifndef MLXD_FRONT_H
#define MLXD_FRONT_H

#include <stdbool.h>
#include <stdint.h>

struct front {
    void *router;                   // the ROUTER socket clients talk to
    int lock_fd;                    // the endpoint's lock, held for the daemon's life
    bool unlink_on_exit;            // we created the socket file
    bool activated;                 // the service manager passed the socket
};

// A front that holds nothing yet.
#define FRONT_INIT ((struct front) { .lock_fd = -1 })

// Makes the endpoint's directory and takes its lock, so that a second
// daemon on the same endpoint is refused before it initialises MPI.
// Idempotent. Logs its failures.
int front_claim(struct front *f, const char *endpoint);

// Makes the ROUTER socket in zctx, frames up to max_msg bytes, and binds it
// to endpoint: on passed_fd when the service manager passed one (>= 0), else
// on a socket file of our own (claiming the endpoint first). Logs its
// failures.
int front_open(struct front *f, void *zctx, const char *endpoint, uint64_t max_msg, int passed_fd);

// Removes the socket file if it is ours; safe to call from a daemon that is
// about to _exit().
void front_unlink(const struct front *f, const char *endpoint);

// Closes the socket, removes our socket file and lock; the front holds
// nothing afterwards.
void front_close(struct front *f, const char *endpoint);

#endif
