/* The MPI world of the daemons. All MPI calls happen on one engine thread,
 * fed through an inproc ZeroMQ socket, so that the loop thread never blocks
 * on another host. */
#ifndef MLXD_WORLD_H
#define MLXD_WORLD_H

#include <stddef.h>
#include <stdint.h>

struct server;
struct world;

// Starts the engine thread, which initialises MPI (a daemon started without
// mpirun is a world of one), and waits until it has. Logs its failures.
int world_start(struct server *s, struct world **ret);

// Finalises MPI, joins the engine thread and reaps the helper processes MPI
// forked (the singleton's orted). NULL is fine.
void world_stop(struct world *w);

int world_rank(const struct world *w);
int world_size(const struct world *w);
// Host name of world rank r.
const char *world_host(const struct world *w, int r);
// The MPI library's version string, first line.
const char *world_mpi_version(const struct world *w);

// Replaces "%r" in an endpoint with this daemon's world rank, in place.
int world_expand_endpoint(const struct world *w, char *endpoint, size_t size);

// The loop polls this socket; when it is readable, world_dispatch() handles
// what the engine sent.
void *world_socket(struct world *w);
void world_dispatch(struct world *w, struct server *s);

// When the loop must wake for the world next (UINT64_MAX: no need).
uint64_t world_next_wakeup_us(const struct world *w, uint64_t now);

#endif
