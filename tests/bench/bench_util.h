/* bench_util: what bench_client (mlxd) and bench_mpi (direct MPI) share, so
 * that both measure the same ops, at the same sizes, the same way, and print
 * the same lines for mlxd-bench to join.
 *
 * Timing method (both programs): every timed iteration starts with a barrier;
 * each rank times its own op from leaving the barrier to the op's return.
 * After the loop the per-iteration times are reduced with a max over the
 * ranks (outside the timed region), so one iteration's time is that of the
 * slowest rank; rank 0 prints the median and the minimum of those over the
 * timed iterations. send/recv is a ping-pong between rank r and rank
 * r + size/2 (r < size/2); its time is half the round trip. */
#ifndef MLXD_BENCH_UTIL_H
#define MLXD_BENCH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum bench_op {
    BENCH_ALL_SUM,
    BENCH_ALL_GATHER,
    BENCH_SUM_SCATTER,
    BENCH_SENDRECV,
    BENCH_OP_MAX,
};

#define BENCH_MAX_SIZES 64
// Sizes above this use iters_large iterations.
#define BENCH_LARGE_BYTES ((size_t) 8 << 20)

// What to run, from the command line; the same options for both programs.
struct bench_opts {
    bool ops[BENCH_OP_MAX];
    size_t sizes[BENCH_MAX_SIZES];
    int n_sizes;
    int iters, iters_large, warmup;
    bool heap; // bench_client: malloc instead of mlxd_alloc
    bool list; // print the sizes and stop
};

// The op's name as printed ("all_sum", "sendrecv").
const char *bench_op_name(enum bench_op op);

// Parses argv into *ret; returns -1 with *ret_exit set to the exit status
// when the program should stop: after --help or --list (their output on
// stdout, status 0), or on bad arguments (the error and usage on stderr,
// status 2).
int bench_parse_args(const char *prog, int argc, char **argv, struct bench_opts *ret, int *ret_exit);

// The buffers of one op at a nominal size for `size` ranks, in float32
// elements: the size column is the larger buffer (x for all_sum, sum_scatter
// and sendrecv, out for all_gather), rounded to whole elements per rank.
struct bench_shape {
    size_t x_count, out_count; // elements of x and of out
    size_t bytes;              // the size reported (and used for algbw)
};
struct bench_shape bench_shape_of(enum bench_op op, size_t nominal, int size);

// Timed iterations at this size.
int bench_iters(const struct bench_opts *o, size_t bytes);

// Monotonic time in microseconds.
double bench_now_us(void);

// Median and minimum of n values (sorts v in place).
void bench_stats(double *v, int n, double *ret_median, double *ret_min);

// Prints one result line on stdout, the format mlxd-bench reads.
void bench_print_result(const char *impl, enum bench_op op, size_t bytes, int ranks, int iters, double median_us,
                        double min_us);

// Checks the first, middle and last element of the last result of op on
// this rank, with every rank's x filled with rank + 1; prints the difference
// to stderr and returns -1 when one is wrong.
int bench_check(enum bench_op op, int rank, int size, const float *out, size_t out_count, size_t x_count);

// Fills n floats with value v (touches every page).
void bench_fill(float *p, size_t n, float v);

#endif
