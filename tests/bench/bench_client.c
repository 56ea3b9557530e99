/* bench_client: times mlxd's collectives from a libmlxd client. Run every
 * rank under `mlxctl launch`; rank 0 prints one `result impl=mlxd ...` line
 * per op and size (see bench_util.h for the timing method), and one `info`
 * line saying where the tensors live.
 *
 * Tensors are float32, allocated with mlxd_alloc (--heap: malloc), filled
 * with rank + 1; after the timed loop a few elements of the last result are
 * checked, so a wrong answer fails the run instead of being timed.
 *
 * --overlap (first argument) times, instead, communication overlapping
 * compute: an all_sum of the first --sizes size, blocking (comm), then the
 * same all_sum in flight (mlxd_iall_sum) while the rank sleeps as long as
 * the blocking one took (compute: a sleep leaves the CPU idle, standing in
 * for a GPU kernel), then mlxd_wait (total). Rank 0 prints one `overlap
 * ...` line with the medians of the slowest rank; total / (comm + compute)
 * is the figure (1: no overlap; 0.5: perfect). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mlxd/mlxd.h>

#include "bench_util.h"

struct bench {
    mlxd_group *g;
    int rank, size;
    const struct bench_opts *o;
};

static void die(struct bench *b, int err, const char *what) {
    fprintf(stderr, "bench_client: rank %d: %s: %s: %s\n", b->rank, what, mlxd_strerror(err),
            b->g ? mlxd_last_error(b->g) : mlxd_init_error());
    exit(EXIT_FAILURE);
}

static void *buf_alloc(struct bench *b, size_t nbytes) {
    void *p = b->o->heap ? malloc(nbytes) : mlxd_alloc(b->g, nbytes);
    if (!p) {
        fprintf(stderr, "bench_client: rank %d: cannot allocate %zu bytes%s%s\n", b->rank, nbytes,
                b->o->heap ? "" : ": ", b->o->heap ? "" : mlxd_last_error(b->g));
        exit(EXIT_FAILURE);
    }
    return p;
}

static void buf_free(struct bench *b, void *p) {
    if (b->o->heap)
        free(p);
    else
        mlxd_free(b->g, p);
}

// The pathname of the mapping that holds p in /proc/self/maps ("[anon]" for
// anonymous memory, "[heap]" for the brk heap), spaces made '_': says whether
// mlxd_alloc gave shared memory (a memfd or shm file) or private memory.
static void mapping_of(const void *p, char *ret, size_t len) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    snprintf(ret, len, "unknown");
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        int path_at = 0;
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi, &path_at) < 2)
            continue;
        if ((unsigned long) p < lo || (unsigned long) p >= hi)
            continue;
        char *path = line + path_at;
        path[strcspn(path, "\n")] = '\0';
        snprintf(ret, len, "%s", *path ? path : "[anon]");
        for (char *c = ret; *c; c++)
            if (*c == ' ')
                *c = '_';
        break;
    }
    fclose(f);
}

static mlxd_array vec(void *data, size_t count) {
    mlxd_array a = {.dtype = MLXD_FLOAT32, .ndim = 1, .data = data};
    a.shape[0] = (int64_t) count;
    return a;
}

// One iteration of op. send/recv: rank r < size/2 sends x to r + size/2 and
// receives it back; with an odd size the last rank only takes part in the
// barriers.
static int run_op(struct bench *b, enum bench_op op, mlxd_array *x, mlxd_array *out) {
    int half = b->size / 2, r;
    switch (op) {
    case BENCH_ALL_SUM:
        return mlxd_all_sum(b->g, x, out);
    case BENCH_ALL_GATHER:
        return mlxd_all_gather(b->g, x, out);
    case BENCH_SUM_SCATTER:
        return mlxd_sum_scatter(b->g, x, out);
    case BENCH_SENDRECV:
        if (b->rank < half) {
            r = mlxd_send(b->g, x, b->rank + half);
            return r < 0 ? r : mlxd_recv(b->g, out, b->rank + half);
        }
        if (b->rank < 2 * half) {
            r = mlxd_recv(b->g, out, b->rank - half);
            return r < 0 ? r : mlxd_send(b->g, out, b->rank - half);
        }
        return 0;
    default:
        return MLXD_EINVAL;
    }
}

static void bench_one(struct bench *b, enum bench_op op, size_t nominal, double *times) {
    struct bench_shape s = bench_shape_of(op, nominal, b->size);
    int iters = bench_iters(b->o, s.bytes), r;
    float *xd = buf_alloc(b, s.x_count * sizeof(float));
    float *od = buf_alloc(b, s.out_count * sizeof(float));
    mlxd_array x = vec(xd, s.x_count), out = vec(od, s.out_count);

    bench_fill(xd, s.x_count, (float) (b->rank + 1));
    bench_fill(od, s.out_count, 0);
    for (int i = 0; i < b->o->warmup + iters; i++) {
        if ((r = mlxd_barrier(b->g)) < 0)
            die(b, r, "barrier");
        double t0 = bench_now_us();
        if ((r = run_op(b, op, &x, &out)) < 0)
            die(b, r, bench_op_name(op));
        double t1 = bench_now_us();
        if (i >= b->o->warmup)
            times[i - b->o->warmup] = t1 - t0;
        out = vec(od, s.out_count); // recv needs the shape again
    }
    if (bench_check(op, b->rank, b->size, od, s.out_count, s.x_count) < 0)
        exit(EXIT_FAILURE);

    // The slowest rank's time of each iteration.
    mlxd_array t = {.dtype = MLXD_FLOAT64, .ndim = 1, .data = times};
    t.shape[0] = iters;
    if ((r = mlxd_all_max(b->g, &t, &t)) < 0)
        die(b, r, "all_max of the times");
    if (b->rank == 0) {
        double med, min;
        bench_stats(times, iters, &med, &min);
        if (op == BENCH_SENDRECV)
            med /= 2, min /= 2;
        bench_print_result("mlxd", op, s.bytes, b->size, iters, med, min);
    }
    buf_free(b, xd);
    buf_free(b, od);
}

static void sleep_us(double us) {
    long long ns = (long long) (us * 1e3);
    struct timespec ts = { .tv_sec = (time_t) (ns / 1000000000), .tv_nsec = (long) (ns % 1000000000) };
    while (nanosleep(&ts, &ts) < 0)
        ;
}

// The slowest rank's value of each of n iterations, in place.
static void slowest(struct bench *b, double *v, int n, const char *what) {
    mlxd_array t = {.dtype = MLXD_FLOAT64, .ndim = 1, .data = v};
    t.shape[0] = n;
    int r = mlxd_all_max(b->g, &t, &t);
    if (r < 0)
        die(b, r, what);
}

static void bench_overlap(struct bench *b, size_t nominal, double *times) {
    struct bench_shape s = bench_shape_of(BENCH_ALL_SUM, nominal, b->size);
    int iters = bench_iters(b->o, s.bytes), r;
    double *total = malloc((size_t) iters * sizeof *total), *slept = malloc((size_t) iters * sizeof *slept);
    float *xd = buf_alloc(b, s.x_count * sizeof(float));
    float *od = buf_alloc(b, s.out_count * sizeof(float));
    mlxd_array x = vec(xd, s.x_count), out = vec(od, s.out_count);
    if (!total || !slept)
        exit(EXIT_FAILURE);
    bench_fill(xd, s.x_count, (float) (b->rank + 1));
    // Communication alone, blocking.
    for (int i = 0; i < b->o->warmup + iters; i++) {
        if ((r = mlxd_barrier(b->g)) < 0)
            die(b, r, "barrier");
        double t0 = bench_now_us();
        if ((r = mlxd_all_sum(b->g, &x, &out)) < 0)
            die(b, r, "all_sum");
        if (i >= b->o->warmup)
            times[i - b->o->warmup] = bench_now_us() - t0;
    }
    slowest(b, times, iters, "all_max of the times");
    double comm, comm_min;
    bench_stats(times, iters, &comm, &comm_min);
    // The same in flight while the rank "computes" for as long.
    for (int i = 0; i < b->o->warmup + iters; i++) {
        mlxd_request *req;
        if ((r = mlxd_barrier(b->g)) < 0)
            die(b, r, "barrier");
        double t0 = bench_now_us();
        if ((r = mlxd_iall_sum(b->g, &x, &out, &req)) < 0)
            die(b, r, "iall_sum");
        sleep_us(comm);
        double t1 = bench_now_us();
        if ((r = mlxd_wait(req)) < 0)
            die(b, r, "mlxd_wait");
        if (i >= b->o->warmup) {
            total[i - b->o->warmup] = bench_now_us() - t0;
            slept[i - b->o->warmup] = t1 - t0;
        }
    }
    if (bench_check(BENCH_ALL_SUM, b->rank, b->size, od, s.out_count, s.x_count) < 0)
        exit(EXIT_FAILURE);
    slowest(b, total, iters, "all_max of the times");
    slowest(b, slept, iters, "all_max of the times");
    if (b->rank == 0) {
        double tot, tot_min, sl, sl_min;
        bench_stats(total, iters, &tot, &tot_min);
        bench_stats(slept, iters, &sl, &sl_min);
        printf("overlap impl=mlxd op=all_sum bytes=%zu ranks=%d iters=%d comm_us=%.3f compute_us=%.3f total_us=%.3f "
               "total_min_us=%.3f\n",
               s.bytes, b->size, iters, comm, sl, tot, tot_min);
        fflush(stdout);
    }
    buf_free(b, xd);
    buf_free(b, od);
    free(total);
    free(slept);
}

int main(int argc, char **argv) {
    struct bench_opts o;
    int ex, r;
    bool overlap = argc > 1 && strcmp(argv[1], "--overlap") == 0;
    if (overlap) {
        argv[1] = argv[0];
        argv++;
        argc--;
    }
    if (bench_parse_args("bench_client", argc, argv, &o, &ex) < 0)
        return ex;

    struct bench b = {.o = &o};
    mlxd_init_opts io = MLXD_INIT_OPTS_DEFAULT;
    io.strict = true;
    if ((r = mlxd_init(&io, &b.g)) < 0)
        die(&b, r, "mlxd_init");
    b.rank = mlxd_group_rank(b.g);
    b.size = mlxd_group_size(b.g);
    if (b.size < 2 && o.ops[BENCH_SENDRECV]) {
        fprintf(stderr, "bench_client: sendrecv needs at least 2 ranks; leaving it out\n");
        o.ops[BENCH_SENDRECV] = false;
    }

    int max_iters = o.iters > o.iters_large ? o.iters : o.iters_large;
    double *times = malloc((size_t) max_iters * sizeof *times);
    if (!times)
        return EXIT_FAILURE;

    if (b.rank == 0) {
        char where[256] = "";
        void *probe = buf_alloc(&b, 1 << 20);
        mapping_of(probe, where, sizeof where);
        buf_free(&b, probe);
        printf("info impl=mlxd ranks=%d memory=%s mapping=%s\n", b.size, o.heap ? "heap" : "mlxd_alloc", where);
        fflush(stdout);
    }
    if (overlap)
        bench_overlap(&b, o.sizes[o.n_sizes - 1], times);
    for (int op = 0; !overlap && op < BENCH_OP_MAX; op++)
        for (int i = 0; o.ops[op] && i < o.n_sizes; i++)
            bench_one(&b, (enum bench_op) op, o.sizes[i], times);

    free(times);
    mlxd_group_free(b.g);
    return EXIT_SUCCESS;
}
