#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// More threads than this are never started, whatever the CPU count says.
#define POOL_MAX_WORKERS 256u

struct pool;

struct worker {
    struct pool *pool;
    pthread_t thread;
    unsigned index;                 // 1 … size - 1; the caller is 0
};

struct pool {
    unsigned size;                  // threads in all, the caller counted
    struct worker *workers;         // size - 1 of them
    pthread_mutex_t lock;
    pthread_cond_t wake;            // a job was posted, or stop
    pthread_cond_t idle;            // busy fell to 0
    // The job, under lock: fn is NULL between jobs.
    uint64_t gen;                   // counts jobs, so a worker joins each at most once
    pool_fn *fn;
    void *arg;
    size_t n;
    atomic_size_t next;             // the next block to claim
    unsigned busy;                  // workers inside the current job
    bool stop;
};

// Claims blocks until none is left.
static void drain(struct pool *p, pool_fn *fn, void *arg, size_t n, unsigned worker) {
    for (;;) {
        size_t i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (i >= n)
            return;
        fn(arg, i, worker);
    }
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    struct pool *p = w->pool;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->stop && (!p->fn || p->gen == seen))
            pthread_cond_wait(&p->wake, &p->lock);
        if (p->stop)
            break;
        seen = p->gen;
        pool_fn *fn = p->fn;
        void *farg = p->arg;
        size_t n = p->n;
        p->busy++;
        pthread_mutex_unlock(&p->lock);
        drain(p, fn, farg, n, w->index);
        pthread_mutex_lock(&p->lock);
        if (--p->busy == 0)
            pthread_cond_signal(&p->idle);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static unsigned cpus(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return (unsigned) CPU_COUNT(&set);
    return 1;
}

int pool_new(unsigned workers, struct pool **ret_pool) {
    unsigned size = workers ? workers : cpus();
    if (size > POOL_MAX_WORKERS)
        size = POOL_MAX_WORKERS;
    struct pool *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->workers = calloc(size, sizeof *p->workers);
    if (!p->workers) {
        free(p);
        return -ENOMEM;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->idle, NULL);
    atomic_init(&p->next, 0);
    p->size = 1;
    // Workers take no signals: the loop thread handles them.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int r = 0;
    for (unsigned i = 1; i < size; i++) {
        struct worker *w = &p->workers[i - 1];
        w->pool = p;
        w->index = i;
        r = -pthread_create(&w->thread, NULL, worker_main, w);
        if (r < 0)
            break;
        char name[16];
        snprintf(name, sizeof name, "mlxd-pool-%u", i);
        pthread_setname_np(w->thread, name);
        p->size++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r < 0) {
        pool_free(p);
        return r;
    }
    *ret_pool = p;
    return 0;
}

struct pool *pool_free(struct pool *p) {
    if (!p)
        return NULL;
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 1; i < p->size; i++)
        pthread_join(p->workers[i - 1].thread, NULL);
    pthread_cond_destroy(&p->idle);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p->workers);
    free(p);
    return NULL;
}

unsigned pool_size(const struct pool *p) {
    return p ? p->size : 1;
}

void pool_run(struct pool *p, size_t bytes, size_t n, pool_fn *fn, void *arg) {
    if (!p || p->size < 2 || n < 2 || bytes < POOL_MIN_BYTES) {
        for (size_t i = 0; i < n; i++)
            fn(arg, i, 0);
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    p->gen++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    drain(p, fn, arg, n, 0);
    // Every block is claimed; wait for the workers still finishing theirs
    // (at most one block each). Later wakers find no job.
    pthread_mutex_lock(&p->lock);
    while (p->busy)
        pthread_cond_wait(&p->idle, &p->lock);
    p->fn = NULL;
    p->arg = NULL;
    pthread_mutex_unlock(&p->lock);
}

struct move_job {
    uint8_t *dst;
    const uint8_t *src;
    size_t n;
};

static void move_block(void *arg, size_t i, unsigned worker) {
    struct move_job *j = arg;
    size_t off = i * POOL_BLOCK, len = j->n - off < POOL_BLOCK ? j->n - off : POOL_BLOCK;
    (void) worker;
    memcpy(j->dst + off, j->src + off, len);
}

void pool_move(struct pool *p, void *dst, const void *src, size_t n) {
    const uint8_t *d = dst, *s = src;
    if (n < POOL_MIN_BYTES || pool_size(p) < 2 || (d < s + n && s < d + n)) {
        // Overlapping: memmove's order matters, so one thread.
        if (n && dst != src)
            memmove(dst, src, n);
        return;
    }
    struct move_job j = { dst, src, n };
    pool_run(p, n, (n + POOL_BLOCK - 1) / POOL_BLOCK, move_block, &j);
}

struct reduce_job {
    const struct pool_reduce *r;
    size_t esize, per, chunks;      // element size, elements per block, blocks per part
    const void **scratch;           // n block pointers per worker
};

static void reduce_block(void *arg, size_t i, unsigned worker) {
    struct reduce_job *j = arg;
    const struct pool_reduce *r = j->r;
    size_t part = i / j->chunks, off = i % j->chunks * j->per;
    size_t m = r->count - off < j->per ? r->count - off : j->per, bo = off * j->esize;
    const void **blk = j->scratch + (size_t) worker * r->n;
    for (size_t k = 0; k < r->n; k++)
        blk[k] = r->srcs[k] + part * r->stride + bo;
    reduce_n(r->op, r->t, r->dsts[part] + bo, blk, r->n, m);
    for (size_t c = 0; c < r->ncopies; c++)
        memcpy(r->copies[c] + bo, r->dsts[part] + bo, m * j->esize);
}

int pool_reduce(struct pool *p, const struct pool_reduce *r) {
    struct reduce_job j = { .r = r, .esize = mlxd_dtype_size(r->t) };
    if (!j.esize || !r->count || !r->nparts)
        return 0;
    j.per = POOL_BLOCK / j.esize ? POOL_BLOCK / j.esize : 1;
    j.chunks = (r->count + j.per - 1) / j.per;
    j.scratch = malloc(pool_size(p) * r->n * sizeof *j.scratch);
    if (!j.scratch)
        return -ENOMEM;
    size_t bytes = r->nparts * r->count * j.esize * (r->n + r->ncopies);
    pool_run(p, bytes, r->nparts * j.chunks, reduce_block, &j);
    free(j.scratch);
    return 0;
}

struct gather_job {
    size_t each, total, chunks;     // chunks: blocks per output
    const uint8_t *const *srcs;
    uint8_t *const *outs;
};

static void gather_block(void *arg, size_t i, unsigned worker) {
    struct gather_job *j = arg;
    uint8_t *out = j->outs[i / j->chunks];
    size_t lo = i % j->chunks * POOL_BLOCK, hi = lo + POOL_BLOCK < j->total ? lo + POOL_BLOCK : j->total;
    (void) worker;
    while (lo < hi) {
        size_t k = lo / j->each, end = (k + 1) * j->each < hi ? (k + 1) * j->each : hi;
        const uint8_t *src = j->srcs[k] + (lo - k * j->each);
        if (out + lo != src)
            memcpy(out + lo, src, end - lo);
        lo = end;
    }
}

void pool_gather(struct pool *p, uint8_t *const *outs, size_t nouts, const uint8_t *const *srcs, size_t n,
                 size_t each) {
    if (!each || !n)
        return;
    size_t total = each * n;
    struct gather_job j = { .each = each, .total = total, .chunks = (total + POOL_BLOCK - 1) / POOL_BLOCK,
                            .srcs = srcs, .outs = outs };
    pool_run(p, nouts * total, nouts * j.chunks, gather_block, &j);
}
