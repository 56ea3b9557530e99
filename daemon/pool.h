/* The worker pool: bulk copies and reductions on every core. A job is split
 * into blocks that the pool's threads and the calling (loop) thread claim one
 * at a time; pool_run() returns when every block is done (fork-join). Jobs
 * only touch memory the daemon has mapped (its frames, sealed shared memory):
 * a worker never waits on a client, a host or a lock anyone else holds, so the
 * loop thread is busy for as long as the copy takes (a 4 GiB tensor at memory
 * speed: under a second), never longer. A NULL pool runs everything on the
 * caller. */
#ifndef MLXD_POOL_H
#define MLXD_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "reduce.h"

struct pool;

// Below this many bytes a copy or reduction stays on the calling thread
// without touching the pool: waking workers would cost more than it saves.
#define POOL_MIN_BYTES ((size_t) 256 << 10)
// Bytes of one block: large enough to run at memory speed, small enough that
// a reduced block is still in cache when it is copied on.
#define POOL_BLOCK ((size_t) 256 << 10)

// One call per block: i is the block, worker which thread runs it (0 is the
// caller, < pool_size()), for scratch space kept per thread.
typedef void pool_fn(void *arg, size_t i, unsigned worker);

// A pool of workers threads in all, the caller counted (so workers - 1 are
// started); 0 means one per CPU this process may run on. workers == 1 gives
// no threads (every job runs on the caller). Returns 0 or -errno; *ret_pool
// is untouched on failure.
int pool_new(unsigned workers, struct pool **ret_pool);
// Stops and joins the threads. Takes NULL; returns NULL. Not while a job runs.
struct pool *pool_free(struct pool *p);
// Threads a job may run on, the caller counted: 1 for NULL.
unsigned pool_size(const struct pool *p);
// Runs fn(arg, i, worker) once for every i < n and returns when all are
// done; bytes is what the job moves: below POOL_MIN_BYTES it all runs on the
// caller. One job at a time: called from the loop thread only.
void pool_run(struct pool *p, size_t bytes, size_t n, pool_fn *fn, void *arg);

// A reduction (reduce_n()'s rules) in blocks: each part j < nparts gets, in
// dsts[j], the reduction of count elements of every one of the n inputs
// srcs[] at byte offset j * stride (all_sum: one part; sum_scatter: a part
// per member). With one part, each reduced block is then copied on to
// copies[0 .. ncopies) while it is still in cache. dsts[j] may be one of the
// inputs at the same offset (in place); other overlaps are the caller's.
struct pool_reduce {
    reduce_op op;
    mlxd_dtype t;
    size_t n, count, stride, nparts;
    const uint8_t *const *srcs;
    uint8_t *const *dsts;
    uint8_t *const *copies;
    size_t ncopies;
};
// Returns 0, or -ENOMEM (nothing written).
int pool_reduce(struct pool *p, const struct pool_reduce *job);

// A gather in blocks: each of nouts outputs gets the n inputs srcs[] of each
// bytes, in order; a piece already in place (an input at its own block of an
// output) is skipped.
void pool_gather(struct pool *p, uint8_t *const *outs, size_t nouts, const uint8_t *const *srcs, size_t n,
                 size_t each);

// memmove: over the pool when dst and src do not overlap and n is large.
void pool_move(struct pool *p, void *dst, const void *src, size_t n);

#endif
