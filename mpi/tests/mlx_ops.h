/* MLX's reduction functions for its mpi backend (mlx/distributed/mpi/mpi.cpp:
 * simple_sum, simple_max, simple_min on float16_t, bfloat16_t and
 * complex64_t), written as MLX writes them, for the tests that register
 * them with MPI_Op_create: the loader and the probe's unit test. Needs
 * MPI_Datatype declared first. */
#ifndef MLXD_MPI_TESTS_MLX_OPS_H
#define MLXD_MPI_TESTS_MLX_OPS_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

// MLX's float16_t on x86 converts to float and back (round to nearest
// even); _Float16 does the same.
typedef _Float16 f16;
typedef struct {
    uint16_t bits;
} bf16;
typedef struct {
    float re, im;
} c64;

static inline float bf16_to_float(bf16 x) {
    uint32_t u = (uint32_t) x.bits << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline bf16 bf16_from_float(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if (isnan(f))
        return (bf16){(uint16_t) ((u >> 16) | 0x40)};
    return (bf16){(uint16_t) ((u + (0x7fff + ((u >> 16) & 1))) >> 16)};
}

static inline bool bf16_less(bf16 a, bf16 b) {
    return bf16_to_float(a) < bf16_to_float(b);
}
// complex64_t's operator<: by real part, then imaginary part.
static inline bool c64_less(c64 a, c64 b) {
    return b.re > a.re || (b.re == a.re && b.im > a.im);
}

static inline void sum_f16(void *input, void *accumulator, int *len, MPI_Datatype *datatype) {
    f16 *in = input, *acc = accumulator;
    for (int n = *len; n-- > 0; acc++, in++)
        *acc += *in;
}
static inline void sum_bf16(void *input, void *accumulator, int *len, MPI_Datatype *datatype) {
    bf16 *in = input, *acc = accumulator;
    for (int n = *len; n-- > 0; acc++, in++)
        *acc = bf16_from_float(bf16_to_float(*acc) + bf16_to_float(*in));
}
// std::max(a, b) is (a < b) ? b : a; std::min(a, b) is (b < a) ? b : a.
static inline void max_f16(void *input, void *accumulator, int *len, MPI_Datatype *datatype) {
    f16 *in = input, *acc = accumulator;
    for (int n = *len; n-- > 0; acc++, in++)
        *acc = (*acc < *in) ? *in : *acc;
}
static inline void max_bf16(void *input, void *accumulator, int *len, MPI_Datatype *datatype) {
    bf16 *in = input, *acc = accumulator;
    for (int n = *len; n-- > 0; acc++, in++)
        *acc = bf16_less(*acc, *in) ? *in : *acc;
}
static inline void max_c64(void *input, void *accumulator, int *len, MPI_Datatype *datatype) {
    c64 *in = input, *acc = accumulator;
    for (int n = *len; n-- > 0; acc++, in++)
        *acc = c64_less(*acc, *in) ? *in : *acc;
}
static inline void min_f16(void *input, void *accumulator, int *len, MPI_Datatype *datatype) {
    f16 *in = input, *acc = accumulator;
    for (int n = *len; n-- > 0; acc++, in++)
        *acc = (*in < *acc) ? *in : *acc;
}
static inline void min_bf16(void *input, void *accumulator, int *len, MPI_Datatype *datatype) {
    bf16 *in = input, *acc = accumulator;
    for (int n = *len; n-- > 0; acc++, in++)
        *acc = bf16_less(*in, *acc) ? *in : *acc;
}
static inline void min_c64(void *input, void *accumulator, int *len, MPI_Datatype *datatype) {
    c64 *in = input, *acc = accumulator;
    for (int n = *len; n-- > 0; acc++, in++)
        *acc = c64_less(*in, *acc) ? *in : *acc;
}
// None of MLX's: a product.
static inline void prod_f16(void *input, void *accumulator, int *len, MPI_Datatype *datatype) {
    f16 *in = input, *acc = accumulator;
    for (int n = *len; n-- > 0; acc++, in++)
        *acc *= *in;
}

#endif
