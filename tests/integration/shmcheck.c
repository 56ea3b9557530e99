/* shmcheck: the shared-memory behaviours of libmlxd, through the public API
 * only, against a real daemon. One mode per behaviour:
 *
 *   shmcheck mix             every collective with inputs and outputs in every
 *                            mix of ordinary memory (inline and staged),
 *                            mlxd_alloc memory at its start and at an offset,
 *                            members choosing differently; in place; on a split
 *                            group with memory allocated from its parent
 *   shmcheck staged DIR yes|no
 *                            collectives on large heap tensors, results
 *                            checked and written to DIR/RANK.out; yes: they
 *                            must have gone through a staging segment, no:
 *                            they must not have
 *   shmcheck cycles N        N mlxd_alloc/mlxd_free cycles: no mapping and no
 *                            descriptor left; then holds one segment of 1 MiB
 *                            until $MLXT_DIR/cycles.go appears
 *   shmcheck hold            rank 0 waits in an all_sum on shared memory (to
 *                            be killed); rank 1 waits for $MLXT_DIR/hold.go,
 *                            then gets the sum with rank 0's part (handed
 *                            over before the kill) and MLXD_EPEER next
 *   shmcheck cap BYTES       the daemon's cap is BYTES: mlxd_alloc over it
 *                            fails with the daemon's message, staging over it
 *                            falls back to inline
 *   shmcheck nochannel       the daemon's side channel is gone: mlxd_alloc
 *                            gives ordinary memory and every op still works
 *   shmcheck restart         (a job of one) memory from before the daemon
 *                            restarted (between $MLXT_DIR/restart.ready and
 *                            restart.go) still works with a new group, and new
 *                            memory is shared again, even when allocated
 *                            before any new group is made
 *   shmcheck threads         four threads, each with its own group, allocate,
 *                            free and run ops on shared, staged and inline
 *                            memory at once, some of it from one common pool
 *
 * Prints a line per failure and a summary; exits 0 when everything held. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mlxd/mlxd.h"

#define GUARD 64
#define GUARD_BYTE 0xA5
#define OFFSET 4160             // where the "at an offset" buffers start in their segment
#define FILE_DEADLINE_MS 30000

static int world_rank;
static _Atomic int failures, checks;
static const char *mode;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void fail(const char *fmt, ...) {
    va_list ap;
    printf("FAIL shmcheck %s rank %d: ", mode, world_rank);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    failures++;
}

static int finish(void) {
    printf("shmcheck %s rank %d: %d checks, %d failures\n", mode, world_rank, checks, failures);
    return failures ? 1 : 0;
}

// An op that fails ends the run: the members are out of step.
static void must(int rc, mlxd_group *g, const char *what) {
    checks++;
    if (rc < 0) {
        fail("%s: %s: %s", what, mlxd_strerror(rc), mlxd_last_error(g));
        exit(finish());
    }
}

// Mappings of libmlxd's memfds in this process ("/memfd:mlxd (deleted)").
static int memfd_maps(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int n = 0;
    while (f && fgets(line, sizeof line, f))
        n += strstr(line, "/memfd:mlxd") != NULL;
    if (f)
        fclose(f);
    return n;
}

static int open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)))
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

// Waits for a file in $MLXT_DIR (the test creates it), with a deadline.
static bool wait_file(const char *name) {
    char path[512];
    const char *dir = getenv("MLXT_DIR");
    snprintf(path, sizeof path, "%s/%s", dir ? dir : ".", name);
    for (long end = now_ms() + FILE_DEADLINE_MS; now_ms() < end; usleep(10000))
        if (access(path, F_OK) == 0)
            return true;
    return false;
}

static void write_file(const char *name, const char *text) {
    char path[512];
    const char *dir = getenv("MLXT_DIR");
    snprintf(path, sizeof path, "%s/%s", dir ? dir : ".", name);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

// Leaves a group once every member is done with it: a member that leaves
// aborts the group for the others, even for messages already sent to them.
static void leave(mlxd_group *g) {
    must(mlxd_barrier(g), g, "barrier before leaving");
    mlxd_group_free(g);
}

/* ---------- buffers of each kind ---------- */

enum kind { HEAP, SHM, SHM_OFFSET, N_KINDS };
static const char *const kind_names[] = { "heap", "shm", "shm+offset" };

struct buf {
    enum kind kind;
    uint8_t *p;                 // where the tensor starts
    uint8_t *alloc;             // what to free
    size_t n;
};

static struct buf buf_new(mlxd_group *g, enum kind k, size_t n) {
    struct buf b = { k, NULL, NULL, n };
    size_t extra = k == SHM_OFFSET ? OFFSET : 0;
    b.alloc = k == HEAP ? malloc(n + GUARD) : mlxd_alloc(g, n + GUARD + extra);
    if (!b.alloc) {
        fail("allocating %zu bytes of %s: %s", n, kind_names[k], k == HEAP ? strerror(errno) : mlxd_last_error(g));
        exit(finish());
    }
    b.p = b.alloc + extra;
    memset(b.p, 0x5A, n);
    memset(b.p + n, GUARD_BYTE, GUARD);
    return b;
}

static void buf_free(mlxd_group *g, struct buf *b) {
    if (b->kind == HEAP)
        free(b->alloc);
    else
        mlxd_free(g, b->alloc);
}

static void check_guard(const struct buf *b, const char *what) {
    checks++;
    for (size_t i = 0; i < GUARD; i++)
        if (b->p[b->n + i] != GUARD_BYTE) {
            fail("%s: wrote past the end of the output (%s)", what, kind_names[b->kind]);
            return;
        }
}

/* ---------- data ---------- */

static int32_t value(int rank, size_t i) {
    return (int32_t) ((i * 31 + (size_t) rank * 17) % 101) - 50;
}

static void fill(int32_t *x, int rank, size_t n) {
    for (size_t i = 0; i < n; i++)
        x[i] = value(rank, i);
}

enum red { SUM, MAX, MIN };

static int32_t reduce(enum red op, int size, size_t i) {
    int32_t acc = value(0, i);
    for (int r = 1; r < size; r++) {
        int32_t v = value(r, i);
        acc = op == SUM ? acc + v : op == MAX ? (v > acc ? v : acc) : (v < acc ? v : acc);
    }
    return acc;
}

static void expect_elems(const char *what, const int32_t *got, size_t n, int32_t (*want)(size_t, const void *),
                         const void *arg) {
    checks++;
    for (size_t i = 0; i < n; i++)
        if (got[i] != want(i, arg)) {
            fail("%s: element %zu is %d, expected %d", what, i, got[i], want(i, arg));
            return;
        }
}

struct want {
    enum red op;
    int size, rank, src;
    size_t block;               // sum_scatter: elements per rank; all_gather: elements per member
};

static int32_t want_reduce(size_t i, const void *a) {
    const struct want *w = a;
    return reduce(w->op, w->size, i);
}

static int32_t want_scatter(size_t i, const void *a) {
    const struct want *w = a;
    return reduce(SUM, w->size, (size_t) w->rank * w->block + i);
}

static int32_t want_gather(size_t i, const void *a) {
    const struct want *w = a;
    return value((int) (i / w->block), i % w->block);
}

static int32_t want_from(size_t i, const void *a) {
    const struct want *w = a;
    return value(w->src, i);
}

static void check_meta(const char *what, const mlxd_array *out, int64_t n) {
    checks++;
    if (out->dtype != MLXD_INT32 || out->ndim != 1 || out->shape[0] != n)
        fail("%s: out is dtype %d ndim %d shape[0] %lld, expected int32 [%lld]", what, (int) out->dtype,
             out->ndim, (long long) out->shape[0], (long long) n);
}

/* ---------- one case of every op ---------- */

typedef int (*reduce_fn)(mlxd_group *, const mlxd_array *, mlxd_array *);
static const struct {
    const char *name;
    enum red op;
    reduce_fn fn;
} reductions[] = { { "all_sum", SUM, mlxd_all_sum }, { "all_max", MAX, mlxd_all_max }, { "all_min", MIN, mlxd_all_min } };

// Every op once with x of kind xk and out of kind ok, n int32 elements
// (n divisible by the group's size). dump: append the results there.
static void run_ops(mlxd_group *g, const char *label, enum kind xk, enum kind ok, size_t n, FILE *dump) {
    int rank = mlxd_group_rank(g), size = mlxd_group_size(g);
    size_t nb = n * sizeof(int32_t);
    char what[256];
    struct want w = { .size = size, .rank = rank, .block = n };

    for (size_t k = 0; k < sizeof reductions / sizeof reductions[0]; k++) {
        struct buf x = buf_new(g, xk, nb), o = buf_new(g, ok, nb);
        fill((int32_t *) (void *) x.p, rank, n);
        mlxd_array xa = { MLXD_INT32, 1, { (int64_t) n }, x.p }, oa = { MLXD_INT32, 0, { 0 }, o.p };
        snprintf(what, sizeof what, "%s %s x=%s out=%s n=%zu", label, reductions[k].name, kind_names[xk],
                 kind_names[ok], n);
        must(reductions[k].fn(g, &xa, &oa), g, what);
        w.op = reductions[k].op;
        check_meta(what, &oa, (int64_t) n);
        expect_elems(what, (int32_t *) (void *) o.p, n, want_reduce, &w);
        check_guard(&o, what);
        checks++;
        for (size_t i = 0; i < n; i++)
            if (((int32_t *) (void *) x.p)[i] != value(rank, i)) {
                fail("%s: the input was modified", what);
                break;
            }
        if (dump)
            fwrite(o.p, 1, nb, dump);

        // In place, in x's memory.
        snprintf(what, sizeof what, "%s %s in place x=out=%s n=%zu", label, reductions[k].name, kind_names[xk], n);
        must(reductions[k].fn(g, &xa, &xa), g, what);
        expect_elems(what, (int32_t *) (void *) x.p, n, want_reduce, &w);
        check_guard(&x, what);
        if (dump)
            fwrite(x.p, 1, nb, dump);
        buf_free(g, &x);
        buf_free(g, &o);
    }

    {
        struct buf x = buf_new(g, xk, nb), o = buf_new(g, ok, nb * (size_t) size);
        fill((int32_t *) (void *) x.p, rank, n);
        mlxd_array xa = { MLXD_INT32, 1, { (int64_t) n }, x.p }, oa = { MLXD_INT32, 0, { 0 }, o.p };
        snprintf(what, sizeof what, "%s all_gather x=%s out=%s n=%zu", label, kind_names[xk], kind_names[ok], n);
        must(mlxd_all_gather(g, &xa, &oa), g, what);
        check_meta(what, &oa, (int64_t) n * size);
        expect_elems(what, (int32_t *) (void *) o.p, n * (size_t) size, want_gather, &w);
        check_guard(&o, what);
        if (dump)
            fwrite(o.p, 1, nb * (size_t) size, dump);
        buf_free(g, &x);
        buf_free(g, &o);
    }

    {
        size_t m = n / (size_t) size;
        struct buf x = buf_new(g, xk, nb), o = buf_new(g, ok, m * sizeof(int32_t));
        fill((int32_t *) (void *) x.p, rank, n);
        mlxd_array xa = { MLXD_INT32, 1, { (int64_t) n }, x.p }, oa = { MLXD_INT32, 0, { 0 }, o.p };
        struct want ws = { .size = size, .rank = rank, .block = m };
        snprintf(what, sizeof what, "%s sum_scatter x=%s out=%s n=%zu", label, kind_names[xk], kind_names[ok], n);
        must(mlxd_sum_scatter(g, &xa, &oa), g, what);
        check_meta(what, &oa, (int64_t) m);
        expect_elems(what, (int32_t *) (void *) o.p, m, want_scatter, &ws);
        check_guard(&o, what);
        if (dump)
            fwrite(o.p, 1, m * sizeof(int32_t), dump);
        buf_free(g, &x);
        buf_free(g, &o);
    }

    if (size > 1) {
        // A ring: send to the next rank, then receive from the previous one,
        // with mlxd_recv and with mlxd_recv_like.
        int next = (rank + 1) % size, prev = (rank + size - 1) % size;
        struct buf x = buf_new(g, xk, nb), o = buf_new(g, ok, nb), o2 = buf_new(g, ok, nb);
        fill((int32_t *) (void *) x.p, rank, n);
        mlxd_array xa = { MLXD_INT32, 1, { (int64_t) n }, x.p };
        mlxd_array oa = { MLXD_INT32, 1, { (int64_t) n }, o.p }, ob = { MLXD_INT32, 0, { 0 }, o2.p };
        struct want wr = { .src = prev };
        snprintf(what, sizeof what, "%s send/recv x=%s out=%s n=%zu", label, kind_names[xk], kind_names[ok], n);
        must(mlxd_send(g, &xa, next), g, what);
        must(mlxd_send(g, &xa, next), g, what);
        must(mlxd_recv(g, &oa, prev), g, what);
        expect_elems(what, (int32_t *) (void *) o.p, n, want_from, &wr);
        check_guard(&o, what);
        must(mlxd_recv_like(g, &xa, &ob, prev), g, what);
        check_meta(what, &ob, (int64_t) n);
        expect_elems(what, (int32_t *) (void *) o2.p, n, want_from, &wr);
        check_guard(&o2, what);
        if (dump) {
            fwrite(o.p, 1, nb, dump);
            fwrite(o2.p, 1, nb, dump);
        }
        buf_free(g, &x);
        buf_free(g, &o);
        buf_free(g, &o2);
    }
}

/* ---------- modes ---------- */

static int mode_mix(mlxd_group *g) {
    int rank = mlxd_group_rank(g);
    // 120 elements stay inline; 3000 (12000 bytes) go through staging when
    // they are in ordinary memory and the test sets MLXD_SHM_THRESHOLD=8192.
    static const size_t sizes[] = { 120, 3000 };
    int before = memfd_maps();

    // mlxd_alloc memory is shared with the daemon: one mapping each.
    void *probe = mlxd_alloc(g, 1000);
    checks++;
    if (!probe || memfd_maps() != before + 1)
        fail("mlxd_alloc did not give shared memory (%d memfd mappings, expected %d): %s", memfd_maps(),
             before + 1, mlxd_last_error(g));
    mlxd_free(g, probe);

    for (size_t s = 0; s < 2; s++)
        for (int c = 0; c < N_KINDS * N_KINDS; c++) {
            // Every rank goes through every mix, each in its own order, so
            // that in one op members use different kinds of memory.
            enum kind xk = (enum kind) ((c / N_KINDS + rank) % N_KINDS);
            enum kind ok = (enum kind) ((c % N_KINDS + rank) % N_KINDS);
            run_ops(g, "world", xk, ok, sizes[s], NULL);
        }

    // Memory is usable with any group of the process: a split group with
    // buffers allocated from its parent.
    mlxd_group *sub = NULL;
    must(mlxd_group_split(g, 0, -1, &sub), g, "split");
    struct buf x = buf_new(g, SHM_OFFSET, 3000 * sizeof(int32_t)), o = buf_new(g, SHM, 3000 * sizeof(int32_t));
    fill((int32_t *) (void *) x.p, mlxd_group_rank(sub), 3000);
    mlxd_array xa = { MLXD_INT32, 1, { 3000 }, x.p }, oa = { MLXD_INT32, 0, { 0 }, o.p };
    struct want w = { .op = SUM, .size = mlxd_group_size(sub) };
    must(mlxd_all_sum(sub, &xa, &oa), sub, "all_sum on a split group with its parent's memory");
    expect_elems("all_sum on a split group with its parent's memory", (int32_t *) (void *) o.p, 3000,
                 want_reduce, &w);
    buf_free(g, &x);
    buf_free(g, &o);
    run_ops(sub, "split", HEAP, HEAP, 3000, NULL);
    leave(sub);

    // What is left: the world group's staging segment, gone with the group.
    checks++;
    if (memfd_maps() != before + 1)
        fail("%d memfd mappings after freeing everything but the group, expected %d (its staging segment)",
             memfd_maps(), before + 1);
    leave(g);
    checks++;
    if (memfd_maps() != before)
        fail("%d memfd mappings after mlxd_group_free, expected %d", memfd_maps(), before);
    return finish();
}

static int mode_staged(mlxd_group *g, const char *dir, bool expect) {
    char path[512];
    snprintf(path, sizeof path, "%s/%d.out", dir, mlxd_group_rank(g));
    FILE *dump = fopen(path, "wb");
    if (!dump) {
        fail("cannot write %s: %s", path, strerror(errno));
        return finish();
    }
    // 3 MiB tensors in ordinary memory, larger than the default threshold.
    run_ops(g, "staged", HEAP, HEAP, 3 * 262144, dump);
    fclose(dump);
    int maps = memfd_maps();
    checks++;
    if (expect && maps < 1)
        fail("no staging segment is mapped after ops on 3 MiB heap tensors");
    if (!expect && maps > 0)
        fail("%d memfd mappings, with staging turned off", maps);
    leave(g);
    checks++;
    if (memfd_maps() != 0)
        fail("%d memfd mappings after mlxd_group_free", memfd_maps());
    return finish();
}

static int mode_cycles(mlxd_group *g, long n) {
    // The first allocation opens the side channel, which then stays.
    mlxd_free(g, mlxd_alloc(g, 1));
    int maps0 = memfd_maps(), fds0 = open_fds();
    long t0 = now_ms();
    for (long i = 0; i < n; i++) {
        size_t size = 1 + (size_t) (i * 7919) % (256u << 10);
        uint8_t *p = mlxd_alloc(g, size);
        if (!p) {
            fail("cycle %ld: mlxd_alloc(%zu): %s", i, size, mlxd_last_error(g));
            return finish();
        }
        p[0] = 1;
        p[size - 1] = 2;
        if (i % 1000 == 0 && size >= 4) {
            // Now and then the memory is used too.
            mlxd_array x = { MLXD_UINT8, 1, { (int64_t) size }, p };
            must(mlxd_all_max(g, &x, &x), g, "all_max in place on fresh memory");
        }
        mlxd_free(g, p);
    }
    printf("shmcheck cycles: %ld alloc/free cycles in %ld ms\n", n, now_ms() - t0);
    checks++;
    if (memfd_maps() != maps0)
        fail("%d memfd mappings after %ld cycles, %d before", memfd_maps(), n, maps0);
    checks++;
    if (open_fds() != fds0)
        fail("%d open descriptors after %ld cycles, %d before", open_fds(), n, fds0);

    // One segment held, for the test to find in the daemon.
    void *held = mlxd_alloc(g, 1u << 20);
    checks++;
    if (!held)
        fail("mlxd_alloc(1 MiB) after the cycles: %s", mlxd_last_error(g));
    char pid[32];
    snprintf(pid, sizeof pid, "%d\n", (int) getpid());
    write_file("cycles.ready", pid);
    checks++;
    if (!wait_file("cycles.go"))
        fail("cycles.go did not appear within %d ms", FILE_DEADLINE_MS);
    mlxd_free(g, held);
    leave(g);
    return finish();
}

static int mode_hold(mlxd_group *g) {
    int32_t *x = mlxd_alloc(g, 4096), *o = mlxd_alloc(g, 4096);
    if (!x || !o) {
        fail("mlxd_alloc: %s", mlxd_last_error(g));
        return finish();
    }
    fill(x, world_rank, 1024);
    mlxd_array xa = { MLXD_INT32, 1, { 1024 }, x }, oa = { MLXD_INT32, 0, { 0 }, o };
    if (world_rank != 0) {
        checks++;
        if (!wait_file("hold.go")) {
            fail("hold.go did not appear within %d ms", FILE_DEADLINE_MS);
            return finish();
        }
    }
    int rc = mlxd_all_sum(g, &xa, &oa);
    checks++;
    if (world_rank == 0) {
        fail("the all_sum returned %d (%s) instead of waiting to be killed", rc, mlxd_last_error(g));
    } else if (rc != 0) {
        // Rank 0 had handed its part over before it was killed: the op
        // completes with it (its segments stay mapped until then).
        fail("all_sum after rank 0 was killed in it returned %d (%s), expected 0: %s", rc, mlxd_strerror(rc),
             mlxd_last_error(g));
    } else {
        for (size_t i = 0; i < 1024; i++)
            if (o[i] != reduce(SUM, 2, i)) {
                fail("all_sum after rank 0 was killed in it: element %zu is %d, expected %d", i, o[i],
                     reduce(SUM, 2, i));
                break;
            }
        rc = mlxd_all_sum(g, &xa, &oa);
        checks++;
        if (rc != MLXD_EPEER)
            fail("the next all_sum, which rank 0 never issued, returned %d (%s), expected MLXD_EPEER: %s", rc,
                 mlxd_strerror(rc), mlxd_last_error(g));
        else
            printf("shmcheck hold rank %d: MLXD_EPEER: %s\n", world_rank, mlxd_last_error(g));
    }
    mlxd_free(g, x);
    mlxd_free(g, o);
    mlxd_group_free(g);  // aborted: no barrier
    return finish();
}

static int mode_cap(mlxd_group *g, size_t cap) {
    int maps0 = memfd_maps();
    checks++;
    void *p = mlxd_alloc(g, 2 * cap);
    if (p) {
        fail("mlxd_alloc of twice the daemon's cap of %zu bytes succeeded", cap);
        mlxd_free(g, p);
    } else if (!strstr(mlxd_last_error(g), "cap")) {
        fail("mlxd_alloc over the cap failed, but its message does not say so: \"%s\"", mlxd_last_error(g));
    } else {
        printf("shmcheck cap: over the cap: \"%s\"\n", mlxd_last_error(g));
    }

    void *q = mlxd_alloc(g, cap / 2);
    checks++;
    if (!q || memfd_maps() != maps0 + 1) {
        fail("mlxd_alloc of half the cap: %s", q ? "not shared memory" : mlxd_last_error(g));
        return finish();
    }

    // Staging needs more than the cap leaves (the test sets a threshold
    // below cap): the op goes inline and works.
    size_t n = cap / sizeof(int32_t) + 1024;
    int32_t *x = malloc(n * sizeof *x), *o = malloc(n * sizeof *o);
    fill(x, 0, n);
    mlxd_array xa = { MLXD_INT32, 1, { (int64_t) n }, x }, oa = { MLXD_INT32, 0, { 0 }, o };
    struct want w = { .op = SUM, .size = 1 };
    must(mlxd_all_sum(g, &xa, &oa), g, "all_sum on a heap tensor that staging cannot fit");
    expect_elems("all_sum on a heap tensor that staging cannot fit", o, n, want_reduce, &w);
    checks++;
    if (memfd_maps() != maps0 + 1)
        fail("%d memfd mappings after an op staging could not fit, expected %d", memfd_maps(), maps0 + 1);
    free(x);
    free(o);

    checks++;
    void *r = mlxd_alloc(g, cap / 2 + cap / 4);
    if (r)
        fail("mlxd_alloc of three quarters of the cap succeeded with half of it in use");
    mlxd_free(g, q);
    checks++;
    r = mlxd_alloc(g, cap / 2 + cap / 4);
    if (!r)
        fail("mlxd_alloc of three quarters of the cap after freeing the half: %s", mlxd_last_error(g));
    mlxd_free(g, r);
    leave(g);
    return finish();
}

static int mode_nochannel(mlxd_group *g) {
    checks++;
    int32_t *x = mlxd_alloc(g, 4096);
    if (!x) {
        fail("mlxd_alloc without a side channel: %s", mlxd_last_error(g));
        return finish();
    }
    if (mlxd_last_error(g)[0])
        fail("mlxd_alloc fell back to ordinary memory but left a message: \"%s\"", mlxd_last_error(g));
    checks++;
    if (memfd_maps() != 0)
        fail("%d memfd mappings without a side channel", memfd_maps());
    run_ops(g, "nochannel", SHM, SHM_OFFSET, 120, NULL);
    run_ops(g, "nochannel", HEAP, HEAP, 3 * 262144, NULL);  // above the threshold: would stage
    checks++;
    if (memfd_maps() != 0)
        fail("%d memfd mappings without a side channel", memfd_maps());
    mlxd_free(g, x);
    leave(g);
    return finish();
}

static int mode_restart(mlxd_group *g) {
    const size_t n = 16384;
    struct want w = { .op = SUM, .size = 1 };
    int32_t *p = mlxd_alloc(g, n * sizeof *p);
    checks++;
    if (!p || memfd_maps() != 1) {
        fail("mlxd_alloc before the restart: %s", p ? "not shared memory" : mlxd_last_error(g));
        return finish();
    }
    fill(p, 0, n);
    mlxd_array x = { MLXD_INT32, 1, { (int64_t) n }, p };
    must(mlxd_all_sum(g, &x, &x), g, "all_sum before the restart");
    write_file("restart.ready", "");
    checks++;
    if (!wait_file("restart.go")) {
        fail("restart.go did not appear within %d ms", FILE_DEADLINE_MS);
        return finish();
    }
    // The side channel of before is closed: the first registration finds
    // out, and makes a new connection to the new daemon.
    int32_t *r0 = mlxd_alloc(g, n * sizeof *r0);
    checks++;
    if (!r0 || memfd_maps() != 2) {
        fail("mlxd_alloc right after the restart: %s", r0 ? "not shared memory" : mlxd_last_error(g));
        return finish();
    }
    fill(r0, 0, n);
    mlxd_group_free(g);

    // The new daemon knows nothing of p, and numbers its segments afresh.
    mlxd_init_opts o = MLXD_INIT_OPTS_DEFAULT;
    o.strict = true;
    int rc = mlxd_init(&o, &g);
    checks++;
    if (rc < 0) {
        fail("mlxd_init after the restart: %s: %s", mlxd_strerror(rc), mlxd_init_error());
        return finish();
    }
    int32_t *out = malloc(n * sizeof *out);
    mlxd_array oa = { MLXD_INT32, 0, { 0 }, out };
    must(mlxd_all_sum(g, &x, &oa), g, "all_sum from memory of before the restart");
    expect_elems("all_sum from memory of before the restart", out, n, want_reduce, &w);
    must(mlxd_all_sum(g, &x, &x), g, "all_sum in place in memory of before the restart");
    expect_elems("all_sum in place in memory of before the restart", p, n, want_reduce, &w);

    int32_t *q = mlxd_alloc(g, n * sizeof *q);
    checks++;
    if (!q || memfd_maps() != 3) {
        fail("mlxd_alloc after the restart: %s", q ? "not shared memory" : mlxd_last_error(g));
        return finish();
    }
    memset(q, 0, n * sizeof *q);
    mlxd_array qa = { MLXD_INT32, 0, { 0 }, q };
    must(mlxd_all_sum(g, &x, &qa), g, "all_sum from old memory into new memory");
    expect_elems("all_sum from old memory into new memory", q, n, want_reduce, &w);
    mlxd_array ra = { MLXD_INT32, 1, { (int64_t) n }, r0 };
    memset(q, 0, n * sizeof *q);
    must(mlxd_all_sum(g, &ra, &qa), g, "all_sum from memory allocated right after the restart");
    expect_elems("all_sum from memory allocated right after the restart", q, n, want_reduce, &w);
    mlxd_free(g, r0);
    mlxd_free(g, p);
    mlxd_free(g, q);
    checks++;
    if (memfd_maps() != 0)
        fail("%d memfd mappings after freeing both", memfd_maps());
    free(out);
    mlxd_group_free(g);
    return finish();
}

#define N_THREADS 4
#define POOL_SLICE 65536

struct thread_arg {
    mlxd_group *g;
    int t;
    uint8_t *pool;              // this thread's slice of the common pool
};

static void *thread_main(void *arg) {
    struct thread_arg *a = arg;
    mlxd_group *g = a->g;
    int rank = mlxd_group_rank(g);
    struct want w = { .op = SUM, .size = mlxd_group_size(g) };
    char what[128];
    for (int it = 0; it < 200; it++) {
        // Churn: memory comes and goes while other threads look theirs up.
        size_t churn = 1 + (size_t) (it * 7919 + a->t * 104729) % 65536;
        uint8_t *c = mlxd_alloc(g, churn);
        checks++;
        if (!c) {
            fail("thread %d: mlxd_alloc(%zu): %s", a->t, churn, mlxd_last_error(g));
            break;
        }
        c[churn - 1] = 1;

        // The ops' sizes depend on the iteration only (members agree), their
        // memory on the rank too.
        size_t n = it % 10 == 0 ? 4096 : 1 + (size_t) it % 1000;  // 4096 * 4 bytes: staged
        int32_t *x = (int32_t *) (void *) a->pool;
        if (n * sizeof(int32_t) > POOL_SLICE)
            n = POOL_SLICE / sizeof(int32_t);
        bool heap_in = (it + rank) % 3 == 0, heap_out = (it + rank) % 2 == 0;
        int32_t *xin = heap_in ? malloc(n * sizeof *xin) : x;
        int32_t *out = heap_out ? malloc(n * sizeof *out) : mlxd_alloc(g, n * sizeof *out);
        fill(xin, rank, n);
        mlxd_array xa = { MLXD_INT32, 1, { (int64_t) n }, xin }, oa = { MLXD_INT32, 0, { 0 }, out };
        snprintf(what, sizeof what, "thread %d iteration %d all_sum n=%zu", a->t, it, n);
        must(mlxd_all_sum(g, &xa, &oa), g, what);
        expect_elems(what, out, n, want_reduce, &w);
        if (heap_in)
            free(xin);
        if (heap_out)
            free(out);
        else
            mlxd_free(g, out);
        mlxd_free(g, c);
    }
    return NULL;
}

static int mode_threads(mlxd_group *g) {
    mlxd_group *subs[N_THREADS];
    struct thread_arg args[N_THREADS];
    pthread_t th[N_THREADS];
    uint8_t *pool = mlxd_alloc(g, N_THREADS * POOL_SLICE);
    if (!pool) {
        fail("mlxd_alloc of the pool: %s", mlxd_last_error(g));
        return finish();
    }
    for (int t = 0; t < N_THREADS; t++) {
        must(mlxd_group_split(g, 0, -1, &subs[t]), g, "split");
        args[t] = (struct thread_arg) { subs[t], t, pool + (size_t) t * POOL_SLICE };
    }
    for (int t = 0; t < N_THREADS; t++)
        pthread_create(&th[t], NULL, thread_main, &args[t]);
    for (int t = 0; t < N_THREADS; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < N_THREADS; t++)
        leave(subs[t]);
    mlxd_free(g, pool);
    leave(g);
    checks++;
    if (memfd_maps() != 0)
        fail("%d memfd mappings after every group and allocation is freed", memfd_maps());
    return finish();
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: shmcheck mix|staged DIR yes|no|cycles N|hold|cap BYTES|nochannel|restart|threads\n");
        return 2;
    }
    mode = argv[1];
    mlxd_init_opts o = MLXD_INIT_OPTS_DEFAULT;
    o.strict = true;
    o.timeout_ms = 20000;
    mlxd_group *g = NULL;
    int rc = mlxd_init(&o, &g);
    if (rc < 0) {
        printf("FAIL shmcheck %s: mlxd_init: %s: %s\n", mode, mlxd_strerror(rc), mlxd_init_error());
        return 1;
    }
    world_rank = mlxd_group_rank(g);
    if (strcmp(mode, "mix") == 0)
        return mode_mix(g);
    if (strcmp(mode, "staged") == 0 && argc == 4)
        return mode_staged(g, argv[2], strcmp(argv[3], "yes") == 0);
    if (strcmp(mode, "cycles") == 0 && argc == 3)
        return mode_cycles(g, strtol(argv[2], NULL, 10));
    if (strcmp(mode, "hold") == 0)
        return mode_hold(g);
    if (strcmp(mode, "cap") == 0 && argc == 3)
        return mode_cap(g, (size_t) strtoull(argv[2], NULL, 10));
    if (strcmp(mode, "nochannel") == 0)
        return mode_nochannel(g);
    if (strcmp(mode, "restart") == 0)
        return mode_restart(g);
    if (strcmp(mode, "threads") == 0)
        return mode_threads(g);
    fprintf(stderr, "shmcheck: unknown mode %s\n", mode);
    return 2;
}
