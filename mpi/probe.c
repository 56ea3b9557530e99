/* Telling what a user op computes.
 *
 * MLX registers its own reduction functions with MPI_Op_create: sum, max
 * and min on float16 and bfloat16, max and min on complex64, each
 * `*acc = op(*acc, *in)` elementwise (std::max and std::min, complex64
 * ordered by real part, then imaginary part). Their datatypes say nothing
 * (float16 and bfloat16 are both MPI_Type_contiguous(2, MPI_UINT8_T)), so
 * the library calls the function on probe values and compares its output,
 * byte for byte, with what each of the nine candidates (sum, max, min on
 * float16, bfloat16, complex64) gives on them:
 *
 *  - Probe A, 2 elements, tells the reduction and the element size apart,
 *    and float16 from bfloat16 for sums: 0x3f80 + 0x4000 is 1.875 + 2 =
 *    3.875 (0x43c0) in float16 but 1 + 2 = 3 (0x4040) in bfloat16, while a
 *    16-bit max or min picks one of the two inputs (the same one in both
 *    types, whose order agrees on every value that is not a float16 NaN),
 *    and a complex64 function rewrites 16 bytes, not 4.
 *  - Probe B, 3 elements, only for a 16-bit max or min: 0x7e00 and 0xfe00
 *    are NaNs in float16, where every comparison is false and std::max and
 *    std::min keep the accumulator, but 2^125 and -2^125 in bfloat16, which
 *    they compare like any number.
 *
 * Every input is exact in every candidate type, so no candidate's result
 * depends on rounding. The buffers are 256 bytes, zero past the probe
 * values, so that a function on larger elements cannot run past them. A
 * function whose output is no candidate's, or that writes its input, is not
 * identified. */
#include <stdio.h>
#include <string.h>

#include "mpi_impl.h"

#define PROBE_BYTES 256

struct candidate {
    enum mpi_red red;
    mlxd_dtype dtype;
};

static const struct candidate candidates[] = {
    {MPI_RED_SUM, MLXD_FLOAT16}, {MPI_RED_SUM, MLXD_BFLOAT16}, {MPI_RED_SUM, MLXD_COMPLEX64},
    {MPI_RED_MAX, MLXD_FLOAT16}, {MPI_RED_MAX, MLXD_BFLOAT16}, {MPI_RED_MAX, MLXD_COMPLEX64},
    {MPI_RED_MIN, MLXD_FLOAT16}, {MPI_RED_MIN, MLXD_BFLOAT16}, {MPI_RED_MIN, MLXD_COMPLEX64},
};
#define N_CANDIDATES (sizeof candidates / sizeof candidates[0])

enum { PROBE_A, PROBE_B, N_PROBES };

static const int probe_len[N_PROBES] = {2, 3};

// The 16-bit inputs of each probe, and each 16-bit candidate's result on
// them, indexed [probe][red][0 float16, 1 bfloat16].
static const uint16_t acc16[N_PROBES][3] = {{0x3f80, 0x4000}, {0x3c00, 0x7e00, 0x3c00}};
static const uint16_t in16[N_PROBES][3] = {{0x4000, 0x3f80}, {0x7e00, 0x3c00, 0xfe00}};
static const uint16_t want16[N_PROBES][MPI_RED_MAX_][2][3] = {
    [PROBE_A] =
        {
            [MPI_RED_SUM] = {{0x43c0, 0x43c0}, {0x4040, 0x4040}},
            [MPI_RED_MAX] = {{0x4000, 0x4000}, {0x4000, 0x4000}},
            [MPI_RED_MIN] = {{0x3f80, 0x3f80}, {0x3f80, 0x3f80}},
        },
    [PROBE_B] =
        {
            [MPI_RED_MAX] = {{0x3c00, 0x7e00, 0x3c00}, {0x7e00, 0x7e00, 0x3c00}},
            [MPI_RED_MIN] = {{0x3c00, 0x7e00, 0x3c00}, {0x3c00, 0x3c00, 0xfe00}},
        },
};
// Probe A's bytes 4..15 as floats 1..3 (the imaginary part of complex 0,
// then complex 1), so that complex64 candidates see (x, 5) vs (y, 7) and
// (1, 2) vs (1, 3): one decided by the real part, one by the imaginary.
static const float acc_f[3] = {5, 1, 2}, in_f[3] = {7, 1, 3};

struct probe {
    uint8_t acc[PROBE_BYTES], in[PROBE_BYTES];
};

static void probe_fill(int which, struct probe *p) {
    memset(p, 0, sizeof *p);
    memcpy(p->acc, acc16[which], sizeof acc16[which]);
    memcpy(p->in, in16[which], sizeof in16[which]);
    if (which == PROBE_A) {
        memcpy(p->acc + 4, acc_f, sizeof acc_f);
        memcpy(p->in + 4, in_f, sizeof in_f);
    }
}

// MLX's complex64 order: a < b by real part, then imaginary part.
static bool c64_less(const float *a, const float *b) {
    return b[0] > a[0] || (b[0] == a[0] && b[1] > a[1]);
}

// What candidate c leaves in the accumulator on probe `which`; false when
// the probe says nothing about c (probe B on sums and complex64).
static bool expected(int which, const struct candidate *c, uint8_t *out) {
    struct probe p;
    int len = probe_len[which];
    probe_fill(which, &p);
    memcpy(out, p.acc, PROBE_BYTES);
    if (c->dtype != MLXD_COMPLEX64) {
        const uint16_t *w = want16[which][c->red][c->dtype == MLXD_BFLOAT16];
        if (w[0] == 0)
            return false;
        memcpy(out, w, (size_t) len * sizeof *w);
        return true;
    }
    if (which != PROBE_A)
        return false;
    for (int i = 0; i < len; i++) {
        float a[2], b[2], r[2];
        memcpy(a, p.acc + 8 * i, sizeof a);
        memcpy(b, p.in + 8 * i, sizeof b);
        if (c->red == MPI_RED_SUM) {
            r[0] = a[0] + b[0];
            r[1] = a[1] + b[1];
        } else if (c->red == MPI_RED_MAX) {
            memcpy(r, c64_less(a, b) ? b : a, sizeof r);
        } else {
            memcpy(r, c64_less(b, a) ? b : a, sizeof r);
        }
        memcpy(out + 8 * i, r, sizeof r);
    }
    return true;
}

int mpi_probe_op(MPI_User_function *fn, enum mpi_red *ret_red, mlxd_dtype *ret_dtype, char *why, size_t why_size) {
    bool maybe[N_CANDIDATES];
    size_t left = N_CANDIDATES;

    for (size_t i = 0; i < N_CANDIDATES; i++)
        maybe[i] = true;
    for (int which = PROBE_A; which < N_PROBES && left > 1; which++) {
        struct probe p, before;
        uint8_t want[PROBE_BYTES];
        int len = probe_len[which];
        MPI_Datatype type = NULL;

        probe_fill(which, &p);
        before = p;
        fn(p.in, p.acc, &len, &type);
        if (memcmp(p.in, before.in, PROBE_BYTES) != 0) {
            snprintf(why, why_size, "the user function %p writes its input vector", (void *) fn);
            return -1;
        }
        left = 0;
        for (size_t i = 0; i < N_CANDIDATES; i++) {
            maybe[i] = maybe[i] && expected(which, &candidates[i], want) && memcmp(want, p.acc, PROBE_BYTES) == 0;
            left += maybe[i];
        }
    }
    for (size_t i = 0; i < N_CANDIDATES && left == 1; i++)
        if (maybe[i]) {
            *ret_red = candidates[i].red;
            *ret_dtype = candidates[i].dtype;
            return 0;
        }
    snprintf(why, why_size,
             "the user function %p computes none of sum, max and min on float16, bfloat16 or complex64 "
             "(as MLX defines them): its results on probe values match %s",
             (void *) fn, left == 0 ? "no candidate" : "more than one candidate");
    return -1;
}
