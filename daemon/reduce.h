/* The dtype kernels: elementwise sum, max and min over the contributions of a
 * group's members, for every mlxd_dtype. Pure functions, no state, safe from
 * any thread. */
#ifndef MLXD_REDUCE_H
#define MLXD_REDUCE_H

#include <stddef.h>
#include <stdint.h>

#include "mlxd/mlxd.h"

#include "wire.h"             // reduce_op and wire_op_reduction

// "sum", "max", "min".
const char *reduce_op_name(reduce_op op);

// dst[i] = srcs[0][i] op srcs[1][i] op ... op srcs[n-1][i], left to right,
// for count elements of dtype t, in one pass over the inputs. n >= 1. dst may
// be one of the srcs (in place); otherwise it must not overlap them.
// Rules: integers wrap like C unsigned arithmetic; bool sum and max are
// logical or, min is logical and; float16 and bfloat16 sums are correctly
// rounded at every step (as if each pairwise add were done exactly and
// rounded to nearest even); complex64 max/min compare the real part, then
// the imaginary part; max/min of floats propagate NaN like numpy.
void reduce_n(reduce_op op, mlxd_dtype t, void *dst, const void *const *srcs, size_t n, size_t count);

// acc[i] = acc[i] op src[i]: the same rules, for folding in a remote
// contribution.
void reduce_into(reduce_op op, mlxd_dtype t, void *acc, const void *src, size_t count);

// Conversions used by the kernels, exposed for tests and reference code.
float reduce_f16_to_float(uint16_t h);
uint16_t reduce_float_to_f16(double x);     // round to nearest even
float reduce_bf16_to_float(uint16_t h);
uint16_t reduce_float_to_bf16(double x);    // round to nearest even

#endif
