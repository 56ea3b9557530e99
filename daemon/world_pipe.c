/* The engine's helper thread: the memory side of a pipelined reduction across
 * hosts. While the engine moves block k over MPI, the helper reduces the
 * local members' inputs of the blocks after it into the result, and copies
 * each block MPI has finished on to the other local outputs. It touches only
 * memory the part keeps mapped, and never calls MPI. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"
#include "world_int.h"

struct pipe {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work;            // the helper waits here: a job, a block MPI finished, stop
    pthread_cond_t progress;        // the engine waits here: a block reduced, the job finished
    bool stop;
    // The current job, under mu; NULL part: none.
    const struct world_part *part;
    reduce_op op;
    mlxd_dtype t;
    size_t esize, block, nblocks;
    bool reduce;                    // the helper reduces the inputs into dst
    size_t reduced, sent, copied;   // blocks reduced (by the helper), finished by MPI, copied on
    bool cancel, finished;
};

static size_t block_len(const struct pipe *p, size_t k) {
    size_t off = k * p->block;
    return p->part->nbytes - off < p->block ? p->part->nbytes - off : p->block;
}

// The first members in one pass; more than fit the array are folded in one
// by one after (the same left-to-right order).
void part_reduce(const struct world_part *part, reduce_op op, mlxd_dtype t, size_t off, size_t count, uint8_t *dst) {
    const void *srcs[64];
    size_t n = part->nsrcs < 64 ? part->nsrcs : 64;
    for (size_t i = 0; i < n; i++)
        srcs[i] = part->srcs[i] + off;
    reduce_n(op, t, dst, srcs, n, count);
    for (size_t i = n; i < part->nsrcs; i++)
        reduce_into(op, t, dst, part->srcs[i] + off, count);
}

static void reduce_block(const struct pipe *p, size_t k) {
    size_t off = k * p->block;
    part_reduce(p->part, p->op, p->t, off, block_len(p, k) / p->esize, p->part->dst + off);
}

static void copy_block(const struct pipe *p, size_t k) {
    size_t off = k * p->block, len = block_len(p, k);
    for (size_t i = 0; i < p->part->ncopies; i++)
        memcpy(p->part->copies[i] + off, p->part->dst + off, len);
}

// One job: reductions first (MPI waits on them), copies as MPI finishes.
static void run_job(struct pipe *p) {
    while (!p->cancel) {
        bool reduce = p->reduce && p->reduced < p->nblocks;
        bool copy = p->copied < p->sent;
        if (!reduce && !copy) {
            if (p->copied == p->nblocks || !p->part->ncopies)
                break;
            pthread_cond_wait(&p->work, &p->mu);
            continue;
        }
        size_t k = reduce ? p->reduced : p->copied;
        pthread_mutex_unlock(&p->mu);
        if (reduce)
            reduce_block(p, k);
        else
            copy_block(p, k);
        pthread_mutex_lock(&p->mu);
        if (reduce) {
            p->reduced++;
            pthread_cond_signal(&p->progress);
        } else {
            p->copied++;
        }
    }
    p->finished = true;
    pthread_cond_signal(&p->progress);
}

static void *pipe_main(void *arg) {
    struct pipe *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && (!p->part || p->finished))
            pthread_cond_wait(&p->work, &p->mu);
        if (p->stop)
            break;
        run_job(p);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int pipe_new(struct pipe **ret) {
    struct pipe *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->progress, NULL);
    int r = engine_start_thread(&p->thread, pipe_main, p);
    if (r != 0) {
        pthread_cond_destroy(&p->work);
        pthread_cond_destroy(&p->progress);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return -r;
    }
    *ret = p;
    return 0;
}

struct pipe *pipe_free(struct pipe *p) {
    if (!p)
        return NULL;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->progress);
    pthread_mutex_destroy(&p->mu);
    free(p);
    return NULL;
}

void pipe_start(struct pipe *p, const struct world_part *part, reduce_op op, mlxd_dtype t, size_t block,
                bool reduce) {
    pthread_mutex_lock(&p->mu);
    p->part = part;
    p->op = op;
    p->t = t;
    p->esize = wire_dtype(t)->size;
    p->block = block;
    p->nblocks = (part->nbytes + block - 1) / block;
    p->reduce = reduce;
    p->reduced = p->sent = p->copied = 0;
    p->cancel = p->finished = false;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->mu);
}

void pipe_wait_reduced(struct pipe *p, size_t k) {
    pthread_mutex_lock(&p->mu);
    while (p->reduce && p->reduced <= k && !p->finished)
        pthread_cond_wait(&p->progress, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void pipe_sent(struct pipe *p, size_t k) {
    pthread_mutex_lock(&p->mu);
    p->sent = k + 1;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->mu);
}

void pipe_finish(struct pipe *p, bool cancel) {
    pthread_mutex_lock(&p->mu);
    p->cancel |= cancel;
    pthread_cond_signal(&p->work);
    while (!p->finished)
        pthread_cond_wait(&p->progress, &p->mu);
    p->part = NULL;
    pthread_mutex_unlock(&p->mu);
}
