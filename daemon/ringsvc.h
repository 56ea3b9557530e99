/* The request/reply rings (proto/ring.h): one per connection that set one
 * up on the shared-memory side channel, mapped here for the connection's
 * life. The loop polls each ring's doorbell; requests are copied out of the
 * ring and dispatched like those from ZeroMQ, and op replies go back
 * through the ring when they fit (else through ZeroMQ). Nothing here waits
 * on the client: the doorbell is a socket used with MSG_DONTWAIT, and every
 * index and length read from the ring is bounded. */
#ifndef MLXD_RINGSVC_H
#define MLXD_RINGSVC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct server;
struct session;
struct ring;

// What the rings need of the domain, registered at start-up: the session a
// ring is for, and closing one whose client broke its ring.
struct ring_hooks {
    struct session *(*find)(struct server *s, pid_t pid, uint64_t group, int rank);
    void (*close)(struct server *s, struct session *se, int code, const char *why);
};

// A WIRE_SHM_RING from process pid for its connection to group as rank:
// checks and maps memfd, keeps a duplicate of sock (the doorbell). 0, or an
// MLXD_E* code with the reason in why. The caller closes both descriptors.
int ring_attach(struct server *s, pid_t pid, uint64_t group, int rank, int memfd, int sock, char *why,
                size_t len);

// How many rings are live.
unsigned ring_count(const struct server *s);

// The doorbells the loop polls (at most max). Frees rings detached since.
size_t ring_poll_fds(struct server *s, int *fds, size_t max);

// Before the loop sleeps: rings the clients that got replies this turn,
// asks every client to ring, and says whether a
// ring already holds requests (then the loop must not sleep).
bool ring_prepare(struct server *s);

// After the loop woke: clients need not ring while it is awake.
void ring_awake(struct server *s);

// A doorbell is readable: drains it and takes that ring's requests.
void ring_ready(struct server *s, int fd);

// Takes the requests every ring holds (up to a batch each).
void ring_run(struct server *s);

// Between two requests from ZeroMQ: takes what the rings hold and rings the
// clients whose replies are ready, so that a ring waits for one ZeroMQ
// request at most, as ZeroMQ's fair queueing makes its own peers wait.
void ring_turn(struct server *s);

// se closes: its ring is no longer read, and is unmapped at the next poll.
void ring_detach(struct server *s, struct session *se);

// Frees every ring (shutdown).
void ring_stop(struct server *s);

#endif
