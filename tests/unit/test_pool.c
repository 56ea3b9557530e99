/* The worker pool (daemon/pool.c): every block of a job runs exactly once,
 * small jobs stay on the caller, and block-wise reductions, gathers and
 * moves give exactly what one thread gives (reduce_n over the whole tensor,
 * memcpy, memmove), with more threads than cores so blocks interleave. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t rng = 88172645463325252u;

static uint64_t next_rand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void fill_random(uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t) next_rand();
}

struct count_job {
    atomic_uint *runs;
    unsigned size;
    atomic_uint bad_worker;
};

static void count_block(void *arg, size_t i, unsigned worker) {
    struct count_job *j = arg;
    atomic_fetch_add(&j->runs[i], 1);
    if (worker >= j->size)
        atomic_fetch_add(&j->bad_worker, 1);
}

static void test_null_pool_runs_on_the_caller(void **state) {
    (void) state;
    assert_null(pool_free(NULL));
    assert_int_equal(pool_size(NULL), 1);
    atomic_uint runs[10] = { 0 };
    struct count_job j = { runs, 1, 0 };
    pool_run(NULL, SIZE_MAX, ARRAY_LEN(runs), count_block, &j);
    for (size_t i = 0; i < ARRAY_LEN(runs); i++)
        assert_int_equal(runs[i], 1);
    assert_int_equal(j.bad_worker, 0);
}

static void test_every_block_runs_once_in_every_job(void **state) {
    struct pool *p = *state;
    enum { BLOCKS = 257 };
    atomic_uint *runs = calloc(BLOCKS, sizeof *runs);
    assert_non_null(runs);
    // Many jobs back to back: a worker late for one must not run the next's
    // blocks twice or with the old job's arguments.
    for (int job = 0; job < 300; job++) {
        size_t n = (size_t) 1 + (size_t) job % BLOCKS;
        memset(runs, 0, BLOCKS * sizeof *runs);
        struct count_job j = { runs, 4, 0 };
        pool_run(p, POOL_MIN_BYTES, n, count_block, &j);
        for (size_t i = 0; i < BLOCKS; i++)
            assert_int_equal(runs[i], i < n ? 1 : 0);
        assert_int_equal(j.bad_worker, 0);
    }
    free(runs);
}

struct worker_job {
    atomic_uint not_caller;
};

static void note_worker(void *arg, size_t i, unsigned worker) {
    struct worker_job *j = arg;
    (void) i;
    if (worker != 0)
        atomic_fetch_add(&j->not_caller, 1);
}

static void test_small_jobs_stay_on_the_caller(void **state) {
    (void) state;
    struct pool *p = NULL;
    assert_int_equal(pool_new(3, &p), 0);
    struct worker_job j = { 0 };
    for (int k = 0; k < 50; k++)
        pool_run(p, POOL_MIN_BYTES - 1, 64, note_worker, &j);
    assert_int_equal(j.not_caller, 0);
    pool_free(p);
}

static void test_one_worker_starts_no_thread(void **state) {
    (void) state;
    struct pool *p = NULL;
    assert_int_equal(pool_new(1, &p), 0);
    assert_int_equal(pool_size(p), 1);
    struct worker_job j = { 0 };
    pool_run(p, SIZE_MAX, 64, note_worker, &j);
    assert_int_equal(j.not_caller, 0);
    pool_free(p);
}

// A count that leaves a partial block at the end and is no multiple of any
// vector width.
enum { COUNT = 300007, MEMBERS = 3 };

static void check_reduce(struct pool *p, reduce_op op, mlxd_dtype t) {
    size_t es = mlxd_dtype_size(t), nbytes = COUNT * es;
    uint8_t *in[MEMBERS], *want = malloc(nbytes), *got = malloc(nbytes), *copy = malloc(nbytes);
    assert_true(want && got && copy);
    for (int r = 0; r < MEMBERS; r++) {
        in[r] = malloc(nbytes);
        assert_non_null(in[r]);
        fill_random(in[r], nbytes);
    }
    reduce_n(op, t, want, (const void *const *) in, MEMBERS, COUNT);
    uint8_t *dst = got, *copies[] = { copy };
    struct pool_reduce j = { .op = op, .t = t, .n = MEMBERS, .count = COUNT, .nparts = 1,
                             .srcs = (const uint8_t *const *) in, .dsts = &dst, .copies = copies, .ncopies = 1 };
    assert_int_equal(pool_reduce(p, &j), 0);
    assert_memory_equal(got, want, nbytes);
    assert_memory_equal(copy, want, nbytes);

    // sum_scatter's shape: MEMBERS parts of COUNT / MEMBERS elements.
    size_t part = COUNT / MEMBERS, pbytes = part * es;
    uint8_t *outs[MEMBERS];
    for (int k = 0; k < MEMBERS; k++) {
        outs[k] = malloc(pbytes);
        assert_non_null(outs[k]);
    }
    struct pool_reduce sj = { .op = op, .t = t, .n = MEMBERS, .count = part, .stride = pbytes,
                              .nparts = MEMBERS, .srcs = (const uint8_t *const *) in, .dsts = outs };
    assert_int_equal(pool_reduce(p, &sj), 0);
    for (int k = 0; k < MEMBERS; k++) {
        const void *blk[MEMBERS];
        for (int r = 0; r < MEMBERS; r++)
            blk[r] = in[r] + (size_t) k * pbytes;
        reduce_n(op, t, want, blk, MEMBERS, part);
        assert_memory_equal(outs[k], want, pbytes);
        free(outs[k]);
    }
    for (int r = 0; r < MEMBERS; r++)
        free(in[r]);
    free(want);
    free(got);
    free(copy);
}

static void test_reductions_equal_one_pass_on_one_thread(void **state) {
    struct pool *p = *state;
    static const mlxd_dtype types[] = { MLXD_BOOL, MLXD_INT8, MLXD_UINT64, MLXD_FLOAT16,
                                        MLXD_BFLOAT16, MLXD_FLOAT32, MLXD_FLOAT64, MLXD_COMPLEX64 };
    for (size_t i = 0; i < ARRAY_LEN(types); i++)
        for (int op = REDUCE_SUM; op < REDUCE_OP_MAX; op++)
            check_reduce(p, (reduce_op) op, types[i]);
}

static void test_gather_fills_every_output_and_skips_in_place(void **state) {
    struct pool *p = *state;
    // An odd size, so blocks straddle the members' pieces.
    enum { N = 3 };
    size_t each = (size_t) 1 << 20 | 12345, total = each * N;
    uint8_t *in[N], *a = malloc(total), *b = malloc(total), *want = malloc(total);
    assert_true(a && b && want);
    for (int k = 0; k < N; k++) {
        in[k] = malloc(each);
        assert_non_null(in[k]);
        fill_random(in[k], each);
    }
    // b gathers in place: member 1's input is its own block of b.
    fill_random(b + each, each);
    uint8_t *saved = in[1];
    in[1] = b + each;
    for (int k = 0; k < N; k++)
        memcpy(want + (size_t) k * each, in[k], each);
    uint8_t *outs[] = { a, b };
    pool_gather(p, outs, 2, (const uint8_t *const *) in, N, each);
    assert_memory_equal(a, want, total);
    assert_memory_equal(b, want, total);
    in[1] = saved;
    for (int k = 0; k < N; k++)
        free(in[k]);
    free(a);
    free(b);
    free(want);
}

static void test_move_is_memmove_overlapping_or_not(void **state) {
    struct pool *p = *state;
    size_t n = (size_t) 3 << 20 | 77;
    uint8_t *buf = malloc(2 * n), *want = malloc(2 * n);
    assert_true(buf && want);
    fill_random(buf, 2 * n);
    memcpy(want, buf, 2 * n);
    pool_move(p, buf + n, buf, n);              // disjoint: over the pool
    memmove(want + n, want, n);
    assert_memory_equal(buf, want, 2 * n);
    pool_move(p, buf + 4096, buf, n);           // overlapping: memmove's order
    memmove(want + 4096, want, n);
    assert_memory_equal(buf, want, 2 * n);
    free(buf);
    free(want);
}

// Four threads in all, more than the machines tests run on have cores.
static int setup(void **state) {
    struct pool *p = NULL;
    if (pool_new(4, &p) < 0 || pool_size(p) != 4)
        return -1;
    *state = p;
    return 0;
}

static int teardown(void **state) {
    *state = pool_free(*state);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_null_pool_runs_on_the_caller),
        cmocka_unit_test(test_every_block_runs_once_in_every_job),
        cmocka_unit_test(test_small_jobs_stay_on_the_caller),
        cmocka_unit_test(test_one_worker_starts_no_thread),
        cmocka_unit_test(test_reductions_equal_one_pass_on_one_thread),
        cmocka_unit_test(test_gather_fills_every_output_and_skips_in_place),
        cmocka_unit_test(test_move_is_memmove_overlapping_or_not),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
