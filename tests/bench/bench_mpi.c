/* bench_mpi: the ops bench_client times, done directly with MPI, for
 * comparison: MPI_Allreduce, MPI_Allgather, MPI_Reduce_scatter_block and an
 * MPI_Send/MPI_Recv ping-pong. Run with `mpirun -n N`; rank 0 prints one
 * `result impl=mpi ...` line per op and size, timed exactly as bench_client
 * times mlxd (see bench_util.h), on the same float32 data. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "bench_util.h"

struct bench {
    int rank, size;
    const struct bench_opts *o;
};

static void *buf_alloc(size_t nbytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, nbytes) != 0) {
        fprintf(stderr, "bench_mpi: cannot allocate %zu bytes\n", nbytes);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    return p;
}

// One iteration of op; the send/recv pairs are those of bench_client.
static void run_op(struct bench *b, enum bench_op op, float *x, float *out, const struct bench_shape *s) {
    int half = b->size / 2;
    switch (op) {
    case BENCH_ALL_SUM:
        MPI_Allreduce(x, out, (int) s->x_count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        break;
    case BENCH_ALL_GATHER:
        MPI_Allgather(x, (int) s->x_count, MPI_FLOAT, out, (int) s->x_count, MPI_FLOAT, MPI_COMM_WORLD);
        break;
    case BENCH_SUM_SCATTER:
        MPI_Reduce_scatter_block(x, out, (int) s->out_count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        break;
    case BENCH_SENDRECV:
        if (b->rank < half) {
            MPI_Send(x, (int) s->x_count, MPI_FLOAT, b->rank + half, 0, MPI_COMM_WORLD);
            MPI_Recv(out, (int) s->x_count, MPI_FLOAT, b->rank + half, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else if (b->rank < 2 * half) {
            MPI_Recv(out, (int) s->x_count, MPI_FLOAT, b->rank - half, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            MPI_Send(out, (int) s->x_count, MPI_FLOAT, b->rank - half, 0, MPI_COMM_WORLD);
        }
        break;
    default:
        break;
    }
}

static void bench_one(struct bench *b, enum bench_op op, size_t nominal, double *times, double *maxes) {
    struct bench_shape s = bench_shape_of(op, nominal, b->size);
    int iters = bench_iters(b->o, s.bytes);
    float *x = buf_alloc(s.x_count * sizeof(float));
    float *out = buf_alloc(s.out_count * sizeof(float));

    bench_fill(x, s.x_count, (float) (b->rank + 1));
    bench_fill(out, s.out_count, 0);
    for (int i = 0; i < b->o->warmup + iters; i++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = bench_now_us();
        run_op(b, op, x, out, &s);
        double t1 = bench_now_us();
        if (i >= b->o->warmup)
            times[i - b->o->warmup] = t1 - t0;
    }
    if (bench_check(op, b->rank, b->size, out, s.out_count, s.x_count) < 0)
        MPI_Abort(MPI_COMM_WORLD, 1);
    MPI_Reduce(times, maxes, iters, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (b->rank == 0) {
        double med, min;
        bench_stats(maxes, iters, &med, &min);
        if (op == BENCH_SENDRECV)
            med /= 2, min /= 2;
        bench_print_result("mpi", op, s.bytes, b->size, iters, med, min);
    }
    free(x);
    free(out);
}

int main(int argc, char **argv) {
    struct bench_opts o;
    int ex;
    MPI_Init(&argc, &argv);
    if (bench_parse_args("bench_mpi", argc, argv, &o, &ex) < 0) {
        MPI_Finalize();
        return ex;
    }
    struct bench b = {.o = &o};
    MPI_Comm_rank(MPI_COMM_WORLD, &b.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &b.size);
    if (b.size < 2)
        o.ops[BENCH_SENDRECV] = false;

    int max_iters = o.iters > o.iters_large ? o.iters : o.iters_large;
    double *times = malloc((size_t) max_iters * sizeof *times);
    double *maxes = malloc((size_t) max_iters * sizeof *maxes);
    if (!times || !maxes)
        MPI_Abort(MPI_COMM_WORLD, 1);
    if (b.rank == 0) {
        char version[MPI_MAX_LIBRARY_VERSION_STRING];
        int len;
        MPI_Get_library_version(version, &len);
        version[strcspn(version, ",\n")] = '\0';
        for (char *c = version; *c; c++)
            if (*c == ' ')
                *c = '_';
        printf("info impl=mpi ranks=%d library=%s\n", b.size, version);
        fflush(stdout);
    }
    for (int op = 0; op < BENCH_OP_MAX; op++)
        for (int i = 0; o.ops[op] && i < o.n_sizes; i++)
            bench_one(&b, (enum bench_op) op, o.sizes[i], times, maxes);

    free(times);
    free(maxes);
    MPI_Finalize();
    return EXIT_SUCCESS;
}
