/* Running under a service manager: the sd_notify protocol (READY, STATUS,
 * WATCHDOG, STOPPING) and socket activation. Without systemd (or without
 * libsystemd at build time) every function does nothing. */
#ifndef MLXD_SERVICE_H
#define MLXD_SERVICE_H

#include <stdbool.h>
#include <stdint.h>

struct server;

// Adopts sockets the service manager passed (LISTEN_FDS): a stream socket for
// ZeroMQ (its path becomes the endpoint) and, if given, a seqpacket socket
// for shared memory. Sets *ret_router_fd / *ret_shm_fd to -1 when none.
// Returns 0 or -errno (logged).
int service_adopt(struct server *s, int *ret_router_fd, int *ret_shm_fd);

// READY=1 and a first STATUS=: call once MPI is up and the socket is bound.
void service_ready(struct server *s);
// STATUS= with world, clients, jobs and ops, at most once a second.
void service_status(struct server *s, uint64_t now_us);
// STOPPING=1, at the start of a graceful stop.
void service_stopping(void);
// Sends WATCHDOG=1 when due; returns when it is due next (UINT64_MAX: never).
uint64_t service_tick(struct server *s, uint64_t now_us);

#endif
