/* Shared memory: segments clients hand over on the side channel (see
 * proto/PROTOCOL.md), mapped here and named by requests. Segments are
 * counted references: a client that releases or dies while an op still uses
 * its memory only unmaps it once the op is done. */
#ifndef MLXD_SHM_H
#define MLXD_SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

struct server;
struct shm_client;

struct shm_seg {
    LIST_ENTRY(shm_seg) link;       // in its client's list
    struct shm_client *owner;       // NULL once released or its client gone
    uint32_t id;
    uint8_t *base;
    size_t size;
    int refs;                       // 1 for the owner, 1 per op using it
};

// One process's connection on the side channel.
struct shm_client {
    LIST_ENTRY(shm_client) link;
    int fd;
    pid_t pid;
    uid_t uid;
    LIST_HEAD(, shm_seg) segs;
    unsigned n_segs;
    uint64_t bytes;
};

// The side channel and what its clients registered.
struct shm_registry {
    int listen_fd;                  // the listener; -1 when none
    bool owned;                     // we created its socket file
    LIST_HEAD(, shm_client) clients;
    uint32_t next_segment_id;
};

// A registry that holds nothing yet.
#define SHM_REGISTRY_INIT ((struct shm_registry) { .listen_fd = -1, .next_segment_id = 1 })

// Binds the side channel beside the ZeroMQ socket. Logs its failures.
int shm_start(struct server *s);
// Closes every connection and unmaps what no op uses; NULL-safe on a server
// that never started it.
void shm_stop(struct server *s);

// The loop polls the listener and every connection: shm_poll_fds() fills
// fds (at most max) and returns how many; shm_ready() handles one that is
// readable.
size_t shm_poll_fds(struct server *s, int *fds, size_t max);
void shm_ready(struct server *s, int fd);

// Resolves [offset, offset + nbytes) of segment id of process pid to memory,
// taking a reference on the segment (drop it with shm_unref). -EINVAL when
// pid has no such segment or the range does not fit in it.
int shm_resolve(struct server *s, pid_t pid, uint32_t id, uint64_t offset, uint64_t nbytes,
                struct shm_seg **ret_seg, uint8_t **ret_ptr);
void shm_unref(struct shm_seg *seg);
// Another reference on seg (an op across hosts that uses its memory), dropped
// with shm_unref.
void shm_ref(struct shm_seg *seg);

// What process pid shares with us, for mlxctl status.
void shm_usage(struct server *s, pid_t pid, unsigned *ret_segs, uint64_t *ret_bytes);

#endif
