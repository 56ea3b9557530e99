/* The dtype kernels (daemon/reduce.c) against values worked out by hand and
 * checked with exact rational arithmetic, and against a plain scalar
 * reference. Most cases are repeated cyclically over SPAN elements, so every
 * case runs through both the vectorized full blocks and the scalar tail. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reduce.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

// Elements per cyclic check: several blocks of every dtype, and a partial
// block at the end (prime, so the cases do not line up with the blocks).
enum { SPAN = 10007 };

// Where the output goes: a fresh buffer, or one of the inputs (in place).
enum { OUT_OF_PLACE = -1 };

typedef struct c64 {
    float re, im;
} c64;

static size_t dtype_size(mlxd_dtype t) {
    static const size_t sizes[MLXD_DTYPE_MAX] = {
        [MLXD_BOOL] = 1, [MLXD_UINT8] = 1, [MLXD_UINT16] = 2, [MLXD_UINT32] = 4, [MLXD_UINT64] = 8,
        [MLXD_INT8] = 1, [MLXD_INT16] = 2, [MLXD_INT32] = 4, [MLXD_INT64] = 8,
        [MLXD_FLOAT16] = 2, [MLXD_BFLOAT16] = 2, [MLXD_FLOAT32] = 4, [MLXD_FLOAT64] = 8,
        [MLXD_COMPLEX64] = 8,
    };
    return sizes[t];
}

static const char *dtype_name(mlxd_dtype t) {
    static const char *const names[MLXD_DTYPE_MAX] = {
        "bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
        "float16", "bfloat16", "float32", "float64", "complex64",
    };
    return names[t];
}

static void print_element(const char *what, const uint8_t *p, size_t size) {
    print_error("%s:", what);
    for (size_t b = size; b-- > 0;)
        print_error(" %02x", p[b]);
    print_error("\n");
}

/* Repeats each of the n inputs' ncases elements over SPAN elements, reduces
 * them into a fresh buffer or into input `dst_is` (in place), and checks
 * every element against want's bytes. */
static void check_cases_into(reduce_op op, mlxd_dtype t, size_t n, size_t ncases, const void *const *cases,
                             const void *want, int dst_is) {
    size_t size = dtype_size(t);
    uint8_t *in[4];
    const void *srcs[4];
    assert_true(n >= 1 && n <= 4);
    for (size_t k = 0; k < n; k++) {
        in[k] = test_malloc(SPAN * size);
        for (size_t i = 0; i < SPAN; i++)
            memcpy(in[k] + i * size, (const uint8_t *)cases[k] + (i % ncases) * size, size);
        srcs[k] = in[k];
    }
    uint8_t *fresh = test_malloc(SPAN * size);
    memset(fresh, 0xa5, SPAN * size);
    uint8_t *out = dst_is == OUT_OF_PLACE ? fresh : in[dst_is];

    reduce_n(op, t, out, srcs, n, SPAN);

    for (size_t i = 0; i < SPAN; i++) {
        const uint8_t *w = (const uint8_t *)want + (i % ncases) * size;
        if (memcmp(out + i * size, w, size) != 0) {
            print_error("%s of %s, n=%zu, element %zu (case %zu):\n", reduce_op_name(op), dtype_name(t), n, i,
                        i % ncases);
            print_element("  got ", out + i * size, size);
            print_element("  want", w, size);
            fail();
        }
    }
    for (size_t k = 0; k < n; k++)
        test_free(in[k]);
    test_free(fresh);
}

#define SRCS(...) ((const void *const[]){ __VA_ARGS__ })

// check_cases(op, dtype, want, inputs...): out of place; every input and want
// are arrays of the same length.
#define check_cases(op, t, want, ...)                                                                   \
    check_cases_into(op, t, ARRAY_LEN(SRCS(__VA_ARGS__)), ARRAY_LEN(want), SRCS(__VA_ARGS__), want, \
                     OUT_OF_PLACE)

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static bool f16_is_nan(uint16_t h) {
    return (h & 0x7c00) == 0x7c00 && (h & 0x03ff) != 0;
}

static bool bf16_is_nan(uint16_t h) {
    return (h & 0x7f80) == 0x7f80 && (h & 0x007f) != 0;
}

/* ---- op names ---- */

static void op_names_are_sum_max_min_and_invalid_otherwise(void **state) {
    assert_string_equal(reduce_op_name(REDUCE_SUM), "sum");
    assert_string_equal(reduce_op_name(REDUCE_MAX), "max");
    assert_string_equal(reduce_op_name(REDUCE_MIN), "min");
    assert_string_equal(reduce_op_name(REDUCE_OP_MAX), "invalid");
    assert_string_equal(reduce_op_name(REDUCE_OP_INVALID), "invalid");
}

/* ---- conversions ---- */

static void float16_decodes_normals_subnormals_and_zeros(void **state) {
    assert_true(reduce_f16_to_float(0x3c00) == 1.0f);
    assert_true(reduce_f16_to_float(0xc000) == -2.0f);
    assert_true(reduce_f16_to_float(0x3555) == 0x1.554p-2f);
    assert_true(reduce_f16_to_float(0x7bff) == 65504.0f);
    assert_true(reduce_f16_to_float(0x0400) == 0x1p-14f);       // smallest normal
    assert_true(reduce_f16_to_float(0x03ff) == 0x1.ff8p-15f);   // largest subnormal
    assert_true(reduce_f16_to_float(0x0001) == 0x1p-24f);       // smallest subnormal
    assert_true(reduce_f16_to_float(0x8001) == -0x1p-24f);
    assert_int_equal(f32_bits(reduce_f16_to_float(0x0000)), 0x00000000);
    assert_int_equal(f32_bits(reduce_f16_to_float(0x8000)), 0x80000000);
}

static void float16_decodes_inf_and_keeps_nan_a_nan(void **state) {
    assert_true(reduce_f16_to_float(0x7c00) == INFINITY);
    assert_true(reduce_f16_to_float(0xfc00) == -INFINITY);
    assert_true(isnan(reduce_f16_to_float(0x7e00)));
    assert_true(isnan(reduce_f16_to_float(0xfe00)));
    assert_true(isnan(reduce_f16_to_float(0x7c01)));    // signalling, lowest payload
}

static void bfloat16_decodes_as_the_top_half_of_a_float32(void **state) {
    assert_true(reduce_bf16_to_float(0x3f80) == 1.0f);
    assert_true(reduce_bf16_to_float(0xc049) == -3.140625f);
    assert_true(reduce_bf16_to_float(0x7f7f) == 0x1.fep127f);
    assert_true(reduce_bf16_to_float(0x0080) == 0x1p-126f);
    assert_true(reduce_bf16_to_float(0x007f) == 0x1.fcp-127f);
    assert_true(reduce_bf16_to_float(0x0001) == 0x1p-133f);
    assert_true(reduce_bf16_to_float(0x7f80) == INFINITY);
    assert_true(reduce_bf16_to_float(0xff80) == -INFINITY);
    assert_true(isnan(reduce_bf16_to_float(0x7fc0)));
    assert_true(isnan(reduce_bf16_to_float(0x7f81)));
    assert_int_equal(f32_bits(reduce_bf16_to_float(0x8000)), 0x80000000);
}

static void double_to_float16_rounds_ties_to_even(void **state) {
    assert_int_equal(reduce_float_to_f16(1.0), 0x3c00);
    assert_int_equal(reduce_float_to_f16(1.0 + 0x1p-11), 0x3c00);          // tie, down to even
    assert_int_equal(reduce_float_to_f16(1.0 + 3 * 0x1p-11), 0x3c02);      // tie, up to even
    assert_int_equal(reduce_float_to_f16(1.0 + 0x1p-11 + 0x1p-40), 0x3c01);
    assert_int_equal(reduce_float_to_f16(1.0 + 0x1p-11 - 0x1p-40), 0x3c00);
    assert_int_equal(reduce_float_to_f16(-1.0 - 0x1p-11), 0xbc00);
    assert_int_equal(reduce_float_to_f16(2049.0), 0x6800);
    assert_int_equal(reduce_float_to_f16(2051.0), 0x6802);
    assert_int_equal(reduce_float_to_f16(2.0 - 0x1p-11), 0x4000);         // carries into the exponent
    assert_int_equal(reduce_float_to_f16(0.1), 0x2e66);
}

static void double_to_float16_rounds_subnormals_and_underflows_to_signed_zero(void **state) {
    assert_int_equal(reduce_float_to_f16(0x1p-24), 0x0001);
    assert_int_equal(reduce_float_to_f16(0x1p-25), 0x0000);                // tie, down to zero
    assert_int_equal(reduce_float_to_f16(0x1p-25 * (1 + 0x1p-52)), 0x0001);
    assert_int_equal(reduce_float_to_f16(3 * 0x1p-25), 0x0002);            // tie, up to even
    assert_int_equal(reduce_float_to_f16(5 * 0x1p-25), 0x0002);            // tie, down to even
    assert_int_equal(reduce_float_to_f16(0x1p-14 - 0x1p-24), 0x03ff);
    assert_int_equal(reduce_float_to_f16(0x1p-14 - 0x1p-25), 0x0400);      // tie, up into the normals
    assert_int_equal(reduce_float_to_f16(0x1p-14), 0x0400);
    assert_int_equal(reduce_float_to_f16(1e-30), 0x0000);
    assert_int_equal(reduce_float_to_f16(-1e-30), 0x8000);
    assert_int_equal(reduce_float_to_f16(0x1p-1074), 0x0000);              // a double subnormal
    assert_int_equal(reduce_float_to_f16(-0.0), 0x8000);
}

static void double_to_float16_overflows_to_inf_from_the_halfway_point(void **state) {
    assert_int_equal(reduce_float_to_f16(65504.0), 0x7bff);
    assert_int_equal(reduce_float_to_f16(65520.0 - 0x1p-37), 0x7bff);
    assert_int_equal(reduce_float_to_f16(65520.0), 0x7c00);                // tie: 0x7bff is odd
    assert_int_equal(reduce_float_to_f16(65536.0), 0x7c00);
    assert_int_equal(reduce_float_to_f16(1e300), 0x7c00);
    assert_int_equal(reduce_float_to_f16(-65520.0), 0xfc00);
    assert_int_equal(reduce_float_to_f16(INFINITY), 0x7c00);
    assert_int_equal(reduce_float_to_f16(-INFINITY), 0xfc00);
}

static void double_to_float16_keeps_nan_a_nan(void **state) {
    assert_true(f16_is_nan(reduce_float_to_f16(NAN)));
    assert_true(f16_is_nan(reduce_float_to_f16(-NAN)));
    // A payload only in the low bits must not become infinity.
    double low_payload;
    uint64_t bits = UINT64_C(0x7ff0000000000001);
    memcpy(&low_payload, &bits, sizeof bits);
    assert_true(f16_is_nan(reduce_float_to_f16(low_payload)));
}

static void double_to_bfloat16_rounds_ties_to_even(void **state) {
    assert_int_equal(reduce_float_to_bf16(1.0), 0x3f80);
    assert_int_equal(reduce_float_to_bf16(1.0 + 0x1p-8), 0x3f80);          // tie, down to even
    assert_int_equal(reduce_float_to_bf16(1.0 + 3 * 0x1p-8), 0x3f82);      // tie, up to even
    assert_int_equal(reduce_float_to_bf16(1.0 + 0x1p-8 + 0x1p-30), 0x3f81);
    assert_int_equal(reduce_float_to_bf16(3.141592653589793), 0x4049);
}

static void double_to_bfloat16_rounds_subnormals(void **state) {
    assert_int_equal(reduce_float_to_bf16(0x1p-133), 0x0001);
    assert_int_equal(reduce_float_to_bf16(0x1p-134), 0x0000);              // tie, down to zero
    assert_int_equal(reduce_float_to_bf16(3 * 0x1p-134), 0x0002);          // tie, up to even
    assert_int_equal(reduce_float_to_bf16(0x1p-126 - 0x1p-134), 0x0080);   // tie, up into the normals
    assert_int_equal(reduce_float_to_bf16(0x1p-126), 0x0080);
    assert_int_equal(reduce_float_to_bf16(1e-300), 0x0000);
    assert_int_equal(reduce_float_to_bf16(-1e-300), 0x8000);
}

static void double_to_bfloat16_overflows_to_inf_from_the_halfway_point(void **state) {
    assert_int_equal(reduce_float_to_bf16(0x1.fep127), 0x7f7f);            // the largest bfloat16
    assert_int_equal(reduce_float_to_bf16(0x1.feffffffp127), 0x7f7f);
    assert_int_equal(reduce_float_to_bf16(0x1.ffp127), 0x7f80);            // tie: 0x7f7f is odd
    assert_int_equal(reduce_float_to_bf16(FLT_MAX), 0x7f80);
    assert_int_equal(reduce_float_to_bf16(1e39), 0x7f80);                  // beyond float, too
    assert_int_equal(reduce_float_to_bf16(-1e39), 0xff80);
    assert_int_equal(reduce_float_to_bf16(INFINITY), 0x7f80);
}

static void double_to_bfloat16_keeps_nan_a_nan(void **state) {
    assert_true(bf16_is_nan(reduce_float_to_bf16(NAN)));
    assert_true(bf16_is_nan(reduce_float_to_bf16(-NAN)));
    double low_payload;
    uint64_t bits = UINT64_C(0x7ff0000000000001);
    memcpy(&low_payload, &bits, sizeof bits);
    assert_true(bf16_is_nan(reduce_float_to_bf16(low_payload)));
}

/* ---- float16 and bfloat16 kernels ---- */

static void float16_sum_rounds_to_nearest_even(void **state) {
    static const uint16_t a[] = { 0x3c00, 0x3c01, 0x3c00, 0xbc00, 0x6800, 0x6801, 0x2e66, 0x3555 };
    static const uint16_t b[] = { 0x1000, 0x1000, 0x1001, 0x9000, 0x3c00, 0x3c00, 0x3266, 0x3555 };
    // 1 + 2^-11 is a tie (down to even), 1 + 3 * 2^-11 too (up to even), a
    // hair above the tie rounds up; 2048 + 1 and 2050 + 1 are ties between
    // steps of 2; 0.1 + 0.2 is a tie as well.
    static const uint16_t want[] = { 0x3c00, 0x3c02, 0x3c01, 0xbc00, 0x6800, 0x6802, 0x34cc, 0x3955 };
    check_cases(REDUCE_SUM, MLXD_FLOAT16, want, a, b);
}

static void float16_sum_of_subnormals_is_exact_and_carries_into_the_normals(void **state) {
    static const uint16_t a[] = { 0x0001, 0x03ff, 0x0200, 0x8001, 0x0400 };
    static const uint16_t b[] = { 0x0001, 0x0001, 0x0200, 0x0001, 0x8001 };
    static const uint16_t want[] = { 0x0002, 0x0400, 0x0400, 0x0000, 0x03ff };
    check_cases(REDUCE_SUM, MLXD_FLOAT16, want, a, b);
}

static void float16_sum_of_zeros_keeps_ieee_signs(void **state) {
    static const uint16_t a[] = { 0x8000, 0x0000, 0x3c00 };
    static const uint16_t b[] = { 0x8000, 0x8000, 0xbc00 };
    static const uint16_t want[] = { 0x8000, 0x0000, 0x0000 };
    check_cases(REDUCE_SUM, MLXD_FLOAT16, want, a, b);
}

static void float16_sum_overflows_to_inf(void **state) {
    static const uint16_t a[] = { 0x7bff, 0x7bff, 0x7bff, 0xfbff, 0x7c00, 0x7c00 };
    static const uint16_t b[] = { 0x7bff, 0x4c00, 0x4bff, 0xcc00, 0x3c00, 0x7c00 };
    // 65504 + 16 is the halfway point to 65536: a tie, and 0x7bff is odd.
    static const uint16_t want[] = { 0x7c00, 0x7c00, 0x7bff, 0xfc00, 0x7c00, 0x7c00 };
    check_cases(REDUCE_SUM, MLXD_FLOAT16, want, a, b);
}

static void float16_sum_with_nan_or_opposite_infs_is_nan(void **state) {
    static const uint16_t a[] = { 0x7c00, 0x7e00, 0x3c00, 0x7c01, 0xfe00 };
    static const uint16_t b[] = { 0xfc00, 0x3c00, 0x7e00, 0x0000, 0x7c00 };
    uint16_t out[ARRAY_LEN(a)];
    reduce_n(REDUCE_SUM, MLXD_FLOAT16, out, SRCS(a, b), 2, ARRAY_LEN(a));
    for (size_t i = 0; i < ARRAY_LEN(a); i++)
        assert_true(f16_is_nan(out[i]));
}

static void float16_sum_rounds_at_every_step_left_to_right(void **state) {
    // 1 + 2^-11 rounds back to 1 at each step; 2^-11 + 2^-11 is exact first.
    static const uint16_t one[] = { 0x3c00 }, eps[] = { 0x1000 };
    static const uint16_t want1[] = { 0x3c00 }, want2[] = { 0x3c01 }, want3[] = { 0x3c02 };
    check_cases(REDUCE_SUM, MLXD_FLOAT16, want1, one, eps, eps);
    check_cases(REDUCE_SUM, MLXD_FLOAT16, want1, one, eps, eps, eps);
    check_cases(REDUCE_SUM, MLXD_FLOAT16, want2, eps, eps, one);
    check_cases(REDUCE_SUM, MLXD_FLOAT16, want3, eps, eps, eps, one);
    // 65504 + 65504 overflows before -65504 could bring it back.
    static const uint16_t big[] = { 0x7bff }, neg_big[] = { 0xfbff }, inf[] = { 0x7c00 };
    check_cases(REDUCE_SUM, MLXD_FLOAT16, inf, big, big, neg_big);
}

static void bfloat16_sum_rounds_to_nearest_even(void **state) {
    static const uint16_t a[] = { 0x3f80, 0x3f81, 0x3f80, 0x4049, 0x3f80, 0xbf80 };
    static const uint16_t b[] = { 0x3b80, 0x3b80, 0x3b81, 0x3f80, 0x0001, 0xbb80 };
    // 1 + 2^-8: tie down; 1 + 3 * 2^-8: tie up; a hair above rounds up;
    // 3.140625 + 1 = 4.140625 is a tie between steps of 2^-5; 1 + 2^-133 is 1.
    static const uint16_t want[] = { 0x3f80, 0x3f82, 0x3f81, 0x4084, 0x3f80, 0xbf80 };
    check_cases(REDUCE_SUM, MLXD_BFLOAT16, want, a, b);
}

static void bfloat16_sum_of_subnormals_is_exact_and_carries_into_the_normals(void **state) {
    static const uint16_t a[] = { 0x0001, 0x007f, 0x8001, 0x0080 };
    static const uint16_t b[] = { 0x0001, 0x0001, 0x0001, 0x8001 };
    static const uint16_t want[] = { 0x0002, 0x0080, 0x0000, 0x007f };
    check_cases(REDUCE_SUM, MLXD_BFLOAT16, want, a, b);
}

static void bfloat16_sum_overflows_to_inf(void **state) {
    static const uint16_t a[] = { 0x7f7f, 0x7f7f, 0x7f7f, 0xff7f, 0x7f80 };
    static const uint16_t b[] = { 0x7f7f, 0x7b00, 0x7a80, 0xfb00, 0x3f80 };
    // max + 2^119 (half its step) is a tie, and 0x7f7f is odd.
    static const uint16_t want[] = { 0x7f80, 0x7f80, 0x7f7f, 0xff80, 0x7f80 };
    check_cases(REDUCE_SUM, MLXD_BFLOAT16, want, a, b);
}

static void bfloat16_sum_with_nan_or_opposite_infs_is_nan(void **state) {
    static const uint16_t a[] = { 0x7f80, 0x7fc0, 0x3f80, 0x7f81, 0xffc0 };
    static const uint16_t b[] = { 0xff80, 0x3f80, 0x7fc0, 0x0000, 0x7f80 };
    uint16_t out[ARRAY_LEN(a)];
    reduce_n(REDUCE_SUM, MLXD_BFLOAT16, out, SRCS(a, b), 2, ARRAY_LEN(a));
    for (size_t i = 0; i < ARRAY_LEN(a); i++)
        assert_true(bf16_is_nan(out[i]));
}

static void bfloat16_sum_rounds_at_every_step_left_to_right(void **state) {
    static const uint16_t one[] = { 0x3f80 }, eps[] = { 0x3b80 };
    static const uint16_t want1[] = { 0x3f80 }, want2[] = { 0x3f81 };
    check_cases(REDUCE_SUM, MLXD_BFLOAT16, want1, one, eps, eps);
    check_cases(REDUCE_SUM, MLXD_BFLOAT16, want2, eps, eps, one);
    static const uint16_t big[] = { 0x7f7f }, neg_big[] = { 0xff7f }, inf[] = { 0x7f80 };
    check_cases(REDUCE_SUM, MLXD_BFLOAT16, inf, big, big, neg_big);
}

static uint64_t xorshift(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* The kernels work in float for speed; every pairwise sum must equal the
 * double sum rounded once by the (separately checked) conversion. */
static void sixteen_bit_sums_equal_the_exactly_rounded_sum(mlxd_dtype t) {
    enum { N = 1 << 20 };
    uint16_t *a = test_malloc(N * sizeof *a), *b = test_malloc(N * sizeof *b), *out = test_malloc(N * sizeof *out);
    uint64_t s = 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i < N; i++) {
        uint64_t r = xorshift(&s);
        a[i] = (uint16_t)r;
        // Half the pairs get nearby exponents, where rounding happens most.
        b[i] = (i & 1) ? (uint16_t)(r >> 16) : (uint16_t)((a[i] & 0xfc00) ^ ((r >> 32) & 0x87ff));
    }
    reduce_n(REDUCE_SUM, t, out, SRCS(a, b), 2, N);
    for (size_t i = 0; i < N; i++) {
        uint16_t want;
        bool nan;
        if (t == MLXD_FLOAT16) {
            want = reduce_float_to_f16((double)reduce_f16_to_float(a[i]) + (double)reduce_f16_to_float(b[i]));
            nan = f16_is_nan(want) && f16_is_nan(out[i]);
        } else {
            want = reduce_float_to_bf16((double)reduce_bf16_to_float(a[i]) + (double)reduce_bf16_to_float(b[i]));
            nan = bf16_is_nan(want) && bf16_is_nan(out[i]);
        }
        if (out[i] != want && !nan)
            fail_msg("%s: %04x + %04x gave %04x, want %04x", dtype_name(t), a[i], b[i], out[i], want);
    }
    test_free(a);
    test_free(b);
    test_free(out);
}

static void float16_sums_equal_the_exactly_rounded_sum(void **state) {
    sixteen_bit_sums_equal_the_exactly_rounded_sum(MLXD_FLOAT16);
}

static void bfloat16_sums_equal_the_exactly_rounded_sum(void **state) {
    sixteen_bit_sums_equal_the_exactly_rounded_sum(MLXD_BFLOAT16);
}

static void float16_max_min_compare_values_not_bits(void **state) {
    // -2 < -1 although 0xc000 > 0xbc00; -1 < 1; subnormals and infinities.
    static const uint16_t a[] = { 0xc000, 0xbc00, 0x0001, 0xfc00, 0x7c00 };
    static const uint16_t b[] = { 0xbc00, 0x3c00, 0x8001, 0x0000, 0x7bff };
    static const uint16_t max[] = { 0xbc00, 0x3c00, 0x0001, 0x0000, 0x7c00 };
    static const uint16_t min[] = { 0xc000, 0xbc00, 0x8001, 0xfc00, 0x7bff };
    check_cases(REDUCE_MAX, MLXD_FLOAT16, max, a, b);
    check_cases(REDUCE_MIN, MLXD_FLOAT16, min, a, b);
}

static void float16_max_min_propagate_nan(void **state) {
    static const uint16_t a[] = { 0x7e00, 0x3c00, 0xfe01 };
    static const uint16_t b[] = { 0x3c00, 0x7e00, 0x7c00 };
    static const uint16_t want[] = { 0x7e00, 0x7e00, 0xfe01 };
    check_cases(REDUCE_MAX, MLXD_FLOAT16, want, a, b);
    check_cases(REDUCE_MIN, MLXD_FLOAT16, want, a, b);
}

static void bfloat16_max_min_compare_values_not_bits(void **state) {
    static const uint16_t a[] = { 0xc000, 0xbf80, 0x0001, 0xff80 };
    static const uint16_t b[] = { 0xbf80, 0x3f80, 0x8001, 0x0000 };
    static const uint16_t max[] = { 0xbf80, 0x3f80, 0x0001, 0x0000 };
    static const uint16_t min[] = { 0xc000, 0xbf80, 0x8001, 0xff80 };
    check_cases(REDUCE_MAX, MLXD_BFLOAT16, max, a, b);
    check_cases(REDUCE_MIN, MLXD_BFLOAT16, min, a, b);
}

static void bfloat16_max_min_propagate_nan(void **state) {
    static const uint16_t a[] = { 0x7fc0, 0x3f80, 0xffc1 };
    static const uint16_t b[] = { 0x3f80, 0x7fc0, 0x7f80 };
    static const uint16_t want[] = { 0x7fc0, 0x7fc0, 0xffc1 };
    check_cases(REDUCE_MAX, MLXD_BFLOAT16, want, a, b);
    check_cases(REDUCE_MIN, MLXD_BFLOAT16, want, a, b);
}

/* ---- integers ---- */

static void uint8_sum_wraps(void **state) {
    static const uint8_t a[] = { 200, 255, 0, 1 }, b[] = { 100, 1, 0, 255 }, c[] = { 0, 0, 0, 1 };
    static const uint8_t want[] = { 44, 0, 0, 1 };
    check_cases(REDUCE_SUM, MLXD_UINT8, want, a, b, c);
}

static void uint16_sum_wraps(void **state) {
    static const uint16_t a[] = { 60000, 65535, 1 }, b[] = { 10000, 1, 2 };
    static const uint16_t want[] = { 4464, 0, 3 };
    check_cases(REDUCE_SUM, MLXD_UINT16, want, a, b);
}

static void uint32_sum_wraps(void **state) {
    static const uint32_t a[] = { UINT32_MAX, 0x80000000u, 7 }, b[] = { 2, 0x80000000u, 8 };
    static const uint32_t want[] = { 1, 0, 15 };
    check_cases(REDUCE_SUM, MLXD_UINT32, want, a, b);
}

static void uint64_sum_wraps(void **state) {
    static const uint64_t a[] = { UINT64_MAX, UINT64_C(1) << 63, 7 }, b[] = { 2, UINT64_C(1) << 63, 8 };
    static const uint64_t want[] = { 1, 0, 15 };
    check_cases(REDUCE_SUM, MLXD_UINT64, want, a, b);
}

static void int8_sum_wraps(void **state) {
    static const int8_t a[] = { 127, -128, -1, 100 }, b[] = { 1, -1, -128, 100 };
    static const int8_t want[] = { -128, 127, 127, -56 };
    check_cases(REDUCE_SUM, MLXD_INT8, want, a, b);
}

static void int16_sum_wraps(void **state) {
    static const int16_t a[] = { INT16_MAX, INT16_MIN, -5 }, b[] = { 1, -1, 3 };
    static const int16_t want[] = { INT16_MIN, INT16_MAX, -2 };
    check_cases(REDUCE_SUM, MLXD_INT16, want, a, b);
}

static void int32_sum_wraps(void **state) {
    static const int32_t a[] = { INT32_MAX, INT32_MIN, -5 }, b[] = { 1, -1, 3 };
    static const int32_t want[] = { INT32_MIN, INT32_MAX, -2 };
    check_cases(REDUCE_SUM, MLXD_INT32, want, a, b);
}

static void int64_sum_wraps(void **state) {
    static const int64_t a[] = { INT64_MAX, INT64_MIN, -5 }, b[] = { 1, -1, 3 };
    static const int64_t want[] = { INT64_MIN, INT64_MAX, -2 };
    check_cases(REDUCE_SUM, MLXD_INT64, want, a, b);
}

static void signed_max_min_use_signed_order(void **state) {
    static const int8_t a8[] = { -1, INT8_MIN, 5 }, b8[] = { 1, INT8_MAX, -5 };
    static const int8_t max8[] = { 1, INT8_MAX, 5 }, min8[] = { -1, INT8_MIN, -5 };
    check_cases(REDUCE_MAX, MLXD_INT8, max8, a8, b8);
    check_cases(REDUCE_MIN, MLXD_INT8, min8, a8, b8);
    static const int16_t a16[] = { -1, INT16_MIN }, b16[] = { 1, INT16_MAX };
    static const int16_t max16[] = { 1, INT16_MAX }, min16[] = { -1, INT16_MIN };
    check_cases(REDUCE_MAX, MLXD_INT16, max16, a16, b16);
    check_cases(REDUCE_MIN, MLXD_INT16, min16, a16, b16);
    static const int32_t a32[] = { -1, INT32_MIN }, b32[] = { 1, INT32_MAX };
    static const int32_t max32[] = { 1, INT32_MAX }, min32[] = { -1, INT32_MIN };
    check_cases(REDUCE_MAX, MLXD_INT32, max32, a32, b32);
    check_cases(REDUCE_MIN, MLXD_INT32, min32, a32, b32);
    static const int64_t a64[] = { -1, INT64_MIN }, b64[] = { 1, INT64_MAX };
    static const int64_t max64[] = { 1, INT64_MAX }, min64[] = { -1, INT64_MIN };
    check_cases(REDUCE_MAX, MLXD_INT64, max64, a64, b64);
    check_cases(REDUCE_MIN, MLXD_INT64, min64, a64, b64);
}

static void unsigned_max_min_use_unsigned_order(void **state) {
    static const uint8_t a8[] = { 255, 0, 128 }, b8[] = { 1, 1, 127 };
    static const uint8_t max8[] = { 255, 1, 128 }, min8[] = { 1, 0, 127 };
    check_cases(REDUCE_MAX, MLXD_UINT8, max8, a8, b8);
    check_cases(REDUCE_MIN, MLXD_UINT8, min8, a8, b8);
    static const uint16_t a16[] = { 65535, 0x8000 }, b16[] = { 1, 0x7fff };
    static const uint16_t max16[] = { 65535, 0x8000 }, min16[] = { 1, 0x7fff };
    check_cases(REDUCE_MAX, MLXD_UINT16, max16, a16, b16);
    check_cases(REDUCE_MIN, MLXD_UINT16, min16, a16, b16);
    static const uint32_t a32[] = { UINT32_MAX, 0x80000000u }, b32[] = { 1, 0x7fffffffu };
    static const uint32_t max32[] = { UINT32_MAX, 0x80000000u }, min32[] = { 1, 0x7fffffffu };
    check_cases(REDUCE_MAX, MLXD_UINT32, max32, a32, b32);
    check_cases(REDUCE_MIN, MLXD_UINT32, min32, a32, b32);
    static const uint64_t a64[] = { UINT64_MAX, UINT64_C(1) << 63 }, b64[] = { 1, (UINT64_C(1) << 63) - 1 };
    static const uint64_t max64[] = { UINT64_MAX, UINT64_C(1) << 63 }, min64[] = { 1, (UINT64_C(1) << 63) - 1 };
    check_cases(REDUCE_MAX, MLXD_UINT64, max64, a64, b64);
    check_cases(REDUCE_MIN, MLXD_UINT64, min64, a64, b64);
}

/* ---- bool ---- */

static void bool_sum_is_logical_or(void **state) {
    static const uint8_t a[] = { 0, 0, 1, 1, 0x80, 0xff }, b[] = { 0, 1, 0, 1, 0x80, 0x01 };
    static const uint8_t want[] = { 0, 1, 1, 1, 1, 1 };
    check_cases(REDUCE_SUM, MLXD_BOOL, want, a, b);
}

static void bool_max_is_logical_or(void **state) {
    static const uint8_t a[] = { 0, 0, 1, 1, 0x80, 0 }, b[] = { 0, 1, 0, 1, 0x02, 0 }, c[] = { 0, 0, 0, 0, 0, 7 };
    static const uint8_t want[] = { 0, 1, 1, 1, 1, 1 };
    check_cases(REDUCE_MAX, MLXD_BOOL, want, a, b, c);
}

static void bool_min_is_logical_and(void **state) {
    // 0x01 & 0x02 == 0, but both are true.
    static const uint8_t a[] = { 0, 0, 1, 1, 0x01, 0xff }, b[] = { 0, 1, 0, 1, 0x02, 0x80 };
    static const uint8_t want[] = { 0, 0, 0, 1, 1, 1 };
    check_cases(REDUCE_MIN, MLXD_BOOL, want, a, b);
}

static void bool_of_one_input_is_0_or_1(void **state) {
    static const uint8_t a[] = { 0, 1, 0x02, 0x80, 0xff };
    static const uint8_t want[] = { 0, 1, 1, 1, 1 };
    check_cases(REDUCE_SUM, MLXD_BOOL, want, a);
    check_cases(REDUCE_MIN, MLXD_BOOL, want, a);
    check_cases_into(REDUCE_MAX, MLXD_BOOL, 1, ARRAY_LEN(want), SRCS(a), want, 0);
}

/* ---- complex64 ---- */

static void complex64_sum_adds_componentwise(void **state) {
    static const c64 a[] = { { 1, 2 }, { -1.5f, 0.25f } }, b[] = { { 10, 20 }, { 1.5f, -0.25f } }, c[] = { { 100, 200 }, { 0, 1 } };
    static const c64 want[] = { { 111, 222 }, { 0, 1 } };
    check_cases(REDUCE_SUM, MLXD_COMPLEX64, want, a, b, c);
}

static void complex64_max_min_compare_the_real_part_first(void **state) {
    static const c64 a[] = { { 2, 0 }, { -1, 100 } }, b[] = { { 1, 9 }, { 0, -100 } };
    static const c64 max[] = { { 2, 0 }, { 0, -100 } }, min[] = { { 1, 9 }, { -1, 100 } };
    check_cases(REDUCE_MAX, MLXD_COMPLEX64, max, a, b);
    check_cases(REDUCE_MIN, MLXD_COMPLEX64, min, a, b);
}

static void complex64_equal_real_parts_are_decided_by_the_imaginary_part(void **state) {
    static const c64 a[] = { { 1, 5 }, { 1, 7 }, { -3, -1 } }, b[] = { { 1, 7 }, { 1, 5 }, { -3, -2 } };
    static const c64 max[] = { { 1, 7 }, { 1, 7 }, { -3, -1 } }, min[] = { { 1, 5 }, { 1, 5 }, { -3, -2 } };
    check_cases(REDUCE_MAX, MLXD_COMPLEX64, max, a, b);
    check_cases(REDUCE_MIN, MLXD_COMPLEX64, min, a, b);
}

static void complex64_max_min_keep_the_whole_chosen_element(void **state) {
    // Not a componentwise max/min: {3, 100} or {2, -1} would be wrong.
    static const c64 a[] = { { 3, -1 } }, b[] = { { 2, 100 } }, c[] = { { 2.5f, 50 } };
    static const c64 max[] = { { 3, -1 } }, min[] = { { 2, 100 } };
    check_cases(REDUCE_MAX, MLXD_COMPLEX64, max, a, b, c);
    check_cases(REDUCE_MIN, MLXD_COMPLEX64, min, a, b, c);
}

static void complex64_max_min_propagate_nan(void **state) {
    static const c64 a[] = { { NAN, 0 }, { 1, 1 }, { 5, NAN }, { 1, 1 } };
    static const c64 b[] = { { 1, 1 }, { NAN, 0 }, { 1, 1 }, { 0, NAN } };
    static const c64 want[] = { { NAN, 0 }, { NAN, 0 }, { 5, NAN }, { 0, NAN } };
    check_cases(REDUCE_MAX, MLXD_COMPLEX64, want, a, b);
    check_cases(REDUCE_MIN, MLXD_COMPLEX64, want, a, b);
}

/* ---- float32 and float64 ---- */

static void float32_max_min_compare_values(void **state) {
    static const float a[] = { 1, -INFINITY, -2, 0x1p-149f }, b[] = { 2, -5, INFINITY, 0 };
    static const float max[] = { 2, -5, INFINITY, 0x1p-149f }, min[] = { 1, -INFINITY, -2, 0 };
    check_cases(REDUCE_MAX, MLXD_FLOAT32, max, a, b);
    check_cases(REDUCE_MIN, MLXD_FLOAT32, min, a, b);
}

static void float32_max_min_propagate_nan_from_either_input(void **state) {
    static const float a[] = { NAN, 1, -INFINITY }, b[] = { 1, NAN, 5 }, c[] = { 2, 3, -NAN };
    static const float want_max[] = { NAN, NAN, -NAN }, want_min[] = { NAN, NAN, -NAN };
    check_cases(REDUCE_MAX, MLXD_FLOAT32, want_max, a, b, c);
    check_cases(REDUCE_MIN, MLXD_FLOAT32, want_min, a, b, c);
}

static void float64_max_min_propagate_nan_from_either_input(void **state) {
    static const double a[] = { NAN, 1, -INFINITY, 1 }, b[] = { 1, NAN, 5, 2 };
    static const double max[] = { NAN, NAN, 5, 2 }, min[] = { NAN, NAN, -INFINITY, 1 };
    check_cases(REDUCE_MAX, MLXD_FLOAT64, max, a, b);
    check_cases(REDUCE_MIN, MLXD_FLOAT64, min, a, b);
}

static void float64_sum_adds_in_double(void **state) {
    static const double a[] = { 1, 0.1, 1e308 }, b[] = { 0x1p-52, 0.2, 1e308 };
    static const double want[] = { 1 + 0x1p-52, 0.1 + 0.2, INFINITY };
    check_cases(REDUCE_SUM, MLXD_FLOAT64, want, a, b);
}

/* ---- number of inputs ---- */

static void sum_of_one_input_copies_it(void **state) {
    static const float a[] = { 1.5f, -0.0f, NAN, INFINITY };
    check_cases(REDUCE_SUM, MLXD_FLOAT32, a, a);
    static const uint16_t h[] = { 0x7c01, 0x8000 };     // bits kept, even a signalling NaN
    check_cases(REDUCE_MAX, MLXD_FLOAT16, h, h);
}

static void sum_of_two_inputs(void **state) {
    static const float a[] = { 1, 0.5f, -3 }, b[] = { 2, 0.25f, 3 };
    static const float want[] = { 3, 0.75f, 0 };
    check_cases(REDUCE_SUM, MLXD_FLOAT32, want, a, b);
}

static void sum_of_three_inputs_folds_left_to_right(void **state) {
    // (1e8 + -1e8) + 1 = 1, whereas 1e8 + (-1e8 + 1) would be 0 in float.
    static const float a[] = { 1e8f, 1 }, b[] = { -1e8f, 2 }, c[] = { 1, 4 };
    static const float want[] = { 1, 7 };
    check_cases(REDUCE_SUM, MLXD_FLOAT32, want, a, b, c);
}

static void sum_of_four_inputs_folds_left_to_right(void **state) {
    // ((1 + 1e8) + -1e8) + 1 = 1: the first 1 is lost.
    static const float a[] = { 1, 1 }, b[] = { 1e8f, 2 }, c[] = { -1e8f, 4 }, d[] = { 1, 8 };
    static const float want[] = { 1, 15 };
    check_cases(REDUCE_SUM, MLXD_FLOAT32, want, a, b, c, d);
    static const int32_t ia[] = { 1, INT32_MAX }, ib[] = { 2, 1 }, ic[] = { 3, 0 }, id[] = { 4, -1 };
    static const int32_t iwant[] = { 10, INT32_MAX };
    check_cases(REDUCE_SUM, MLXD_INT32, iwant, ia, ib, ic, id);
}

/* ---- in place ---- */

// The fold order is visible in these float16 cases, so an in-place kernel
// that overwrote an input before reading it, or folded in another order,
// fails.
static const uint16_t ip_a[] = { 0x3c00, 0x1000, 0x3c01, 0x7bff }, ip_b[] = { 0x1000, 0x1000, 0x1000, 0x7bff };
static const uint16_t ip_c[] = { 0x1000, 0x3c00, 0x0000, 0xfbff }, ip_d[] = { 0x1000, 0x1000, 0x1000, 0x3c00 };
static const uint16_t ip_want2[] = { 0x3c00, 0x1400, 0x3c02, 0x7c00 };
static const uint16_t ip_want4[] = { 0x3c00, 0x3c02, 0x3c02, 0x7c00 };

static void in_place_into_the_first_input(void **state) {
    check_cases_into(REDUCE_SUM, MLXD_FLOAT16, 2, 4, SRCS(ip_a, ip_b), ip_want2, 0);
    check_cases_into(REDUCE_SUM, MLXD_FLOAT16, 4, 4, SRCS(ip_a, ip_b, ip_c, ip_d), ip_want4, 0);
    static const float a[] = { 1, -1 }, b[] = { 2, 5 }, want[] = { 3, 4 };
    check_cases_into(REDUCE_SUM, MLXD_FLOAT32, 2, 2, SRCS(a, b), want, 0);
}

static void in_place_into_the_second_input(void **state) {
    check_cases_into(REDUCE_SUM, MLXD_FLOAT16, 2, 4, SRCS(ip_a, ip_b), ip_want2, 1);
    check_cases_into(REDUCE_SUM, MLXD_FLOAT16, 4, 4, SRCS(ip_a, ip_b, ip_c, ip_d), ip_want4, 1);
    static const float a[] = { 1, -1 }, b[] = { 2, 5 }, want[] = { 3, 4 };
    check_cases_into(REDUCE_SUM, MLXD_FLOAT32, 2, 2, SRCS(a, b), want, 1);
}

static void in_place_into_a_later_input(void **state) {
    check_cases_into(REDUCE_SUM, MLXD_FLOAT16, 4, 4, SRCS(ip_a, ip_b, ip_c, ip_d), ip_want4, 2);
    check_cases_into(REDUCE_SUM, MLXD_FLOAT16, 4, 4, SRCS(ip_a, ip_b, ip_c, ip_d), ip_want4, 3);
    static const c64 a[] = { { 1, 5 } }, b[] = { { 1, 7 } }, c[] = { { 0, 9 } }, want[] = { { 1, 7 } };
    check_cases_into(REDUCE_MAX, MLXD_COMPLEX64, 3, 1, SRCS(a, b, c), want, 2);
}

static void in_place_when_dst_is_several_of_the_inputs(void **state) {
    // dst == srcs[0] == srcs[2]: every input must be read before dst changes.
    enum { N = 5000 };
    float *x = test_malloc(N * sizeof *x), *y = test_malloc(N * sizeof *y);
    for (size_t i = 0; i < N; i++) {
        x[i] = (float)i;
        y[i] = 0.5f;
    }
    reduce_n(REDUCE_SUM, MLXD_FLOAT32, x, SRCS(x, y, x), 3, N);
    for (size_t i = 0; i < N; i++)
        assert_true(x[i] == 2.0f * (float)i + 0.5f);
    test_free(x);
    test_free(y);
}

static void reduce_into_folds_a_contribution_into_the_accumulator(void **state) {
    enum { N = 9000 };
    uint16_t *acc = test_malloc(N * sizeof *acc), *src = test_malloc(N * sizeof *src);
    for (size_t i = 0; i < N; i++) {
        acc[i] = 0x3c01;
        src[i] = 0x1000;
    }
    reduce_into(REDUCE_SUM, MLXD_BFLOAT16, acc, src, N);       // as bfloat16: 2^-95 vanishes
    for (size_t i = 0; i < N; i++)
        assert_int_equal(acc[i], 0x3c01);
    reduce_into(REDUCE_SUM, MLXD_FLOAT16, acc, src, N);        // as float16: a tie, up to even
    for (size_t i = 0; i < N; i++)
        assert_int_equal(acc[i], 0x3c02);
    reduce_into(REDUCE_MIN, MLXD_INT16, acc, src, N);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(acc[i], 0x1000);
    test_free(acc);
    test_free(src);
}

static void count_zero_writes_nothing(void **state) {
    uint32_t dst[4] = { 0xdeadbeef, 0xdeadbeef, 0xdeadbeef, 0xdeadbeef };
    static const uint32_t a[4] = { 1, 2, 3, 4 }, b[4] = { 5, 6, 7, 8 };
    for (mlxd_dtype t = 0; t < MLXD_DTYPE_MAX; t++) {
        for (reduce_op op = 0; op < REDUCE_OP_MAX; op++) {
            for (size_t n = 1; n <= 2; n++) {
                reduce_n(op, t, dst, SRCS(a, b), n, 0);
                for (size_t i = 0; i < 4; i++)
                    assert_int_equal(dst[i], 0xdeadbeef);
            }
        }
    }
    reduce_into(REDUCE_SUM, MLXD_FLOAT32, dst, a, 0);
    assert_int_equal(dst[0], 0xdeadbeef);
}

/* ---- against a scalar reference ---- */

/* One step of the fold, written the obvious way, element by element. The
 * float16/bfloat16 sums go through double and the conversions checked above. */
static void ref_step(reduce_op op, mlxd_dtype t, void *acc, const void *src) {
#define INT_STEP(T, UT)                                                     \
    do {                                                                    \
        T a, b;                                                             \
        memcpy(&a, acc, sizeof a);                                          \
        memcpy(&b, src, sizeof b);                                          \
        T r = op == REDUCE_SUM ? (T)(UT)((UT)a + (UT)b)                     \
            : op == REDUCE_MAX ? (a > b ? a : b)                            \
                               : (a < b ? a : b);                           \
        memcpy(acc, &r, sizeof r);                                          \
    } while (0)
#define FLOAT_STEP(T)                                                       \
    do {                                                                    \
        T a, b;                                                             \
        memcpy(&a, acc, sizeof a);                                          \
        memcpy(&b, src, sizeof b);                                          \
        T r;                                                                \
        if (op == REDUCE_SUM)                                               \
            r = a + b;                                                      \
        else if (isnan(a) || isnan(b))                                      \
            r = isnan(a) ? a : b;                                           \
        else                                                                \
            r = op == REDUCE_MAX ? (a >= b ? a : b) : (a <= b ? a : b);     \
        memcpy(acc, &r, sizeof r);                                          \
    } while (0)

    switch (t) {
    case MLXD_BOOL: {
        uint8_t a = *(uint8_t *)acc != 0, b = *(const uint8_t *)src != 0;
        *(uint8_t *)acc = op == REDUCE_MIN ? (a && b) : (a || b);
        break;
    }
    case MLXD_UINT8: INT_STEP(uint8_t, uint8_t); break;
    case MLXD_UINT16: INT_STEP(uint16_t, uint16_t); break;
    case MLXD_UINT32: INT_STEP(uint32_t, uint32_t); break;
    case MLXD_UINT64: INT_STEP(uint64_t, uint64_t); break;
    case MLXD_INT8: INT_STEP(int8_t, uint8_t); break;
    case MLXD_INT16: INT_STEP(int16_t, uint16_t); break;
    case MLXD_INT32: INT_STEP(int32_t, uint32_t); break;
    case MLXD_INT64: INT_STEP(int64_t, uint64_t); break;
    case MLXD_FLOAT16:
    case MLXD_BFLOAT16: {
        uint16_t a, b;
        memcpy(&a, acc, 2);
        memcpy(&b, src, 2);
        bool f16 = t == MLXD_FLOAT16;
        double x = f16 ? reduce_f16_to_float(a) : reduce_bf16_to_float(a);
        double y = f16 ? reduce_f16_to_float(b) : reduce_bf16_to_float(b);
        uint16_t r;
        if (op == REDUCE_SUM)
            r = f16 ? reduce_float_to_f16(x + y) : reduce_float_to_bf16(x + y);
        else if (isnan(x) || isnan(y))
            r = isnan(x) ? a : b;
        else
            r = op == REDUCE_MAX ? (x >= y ? a : b) : (x <= y ? a : b);
        memcpy(acc, &r, 2);
        break;
    }
    case MLXD_FLOAT32: FLOAT_STEP(float); break;
    case MLXD_FLOAT64: FLOAT_STEP(double); break;
    case MLXD_COMPLEX64: {
        c64 a, b, r;
        memcpy(&a, acc, sizeof a);
        memcpy(&b, src, sizeof b);
        if (op == REDUCE_SUM) {
            r = (c64){ a.re + b.re, a.im + b.im };
        } else if (isnan(a.re) || isnan(a.im)) {
            r = a;
        } else if (isnan(b.re) || isnan(b.im)) {
            r = b;
        } else {
            bool a_first = op == REDUCE_MAX ? (a.re > b.re || (a.re == b.re && a.im >= b.im))
                                            : (a.re < b.re || (a.re == b.re && a.im <= b.im));
            r = a_first ? a : b;
        }
        memcpy(acc, &r, sizeof r);
        break;
    }
    default:
        fail();
    }
#undef INT_STEP
#undef FLOAT_STEP
}

// Equal bytes, or both NaN (which NaN's payload wins is not specified).
static bool same_element(mlxd_dtype t, const uint8_t *x, const uint8_t *y) {
    size_t size = dtype_size(t);
    if (memcmp(x, y, size) == 0)
        return true;
    switch (t) {
    case MLXD_FLOAT16:
    case MLXD_BFLOAT16: {
        uint16_t a, b;
        memcpy(&a, x, 2);
        memcpy(&b, y, 2);
        return t == MLXD_FLOAT16 ? f16_is_nan(a) && f16_is_nan(b) : bf16_is_nan(a) && bf16_is_nan(b);
    }
    case MLXD_FLOAT32:
    case MLXD_COMPLEX64:
        for (size_t off = 0; off < size; off += 4) {
            float a, b;
            memcpy(&a, x + off, 4);
            memcpy(&b, y + off, 4);
            if (memcmp(&a, &b, 4) != 0 && !(isnan(a) && isnan(b)))
                return false;
        }
        return true;
    case MLXD_FLOAT64: {
        double a, b;
        memcpy(&a, x, 8);
        memcpy(&b, y, 8);
        return isnan(a) && isnan(b);
    }
    default:
        return false;
    }
}

/* Reduces n inputs of count random elements of type t (into a fresh buffer,
 * or in place into input dst_is) and compares with the scalar reference. */
static void check_against_reference(reduce_op op, mlxd_dtype t, size_t n, size_t count, int dst_is, uint64_t seed) {
    size_t size = dtype_size(t);
    uint8_t *in[4], *ref = test_malloc(count * size), *fresh = test_malloc(count * size);
    const void *srcs[4];
    for (size_t k = 0; k < n; k++) {
        in[k] = test_malloc(count * size);
        for (size_t i = 0; i < count * size; i += 8) {
            uint64_t r = xorshift(&seed);
            memcpy(in[k] + i, &r, count * size - i < 8 ? count * size - i : 8);
        }
        // Bool inputs are 0 or any nonzero byte; make a third of them 0.
        if (t == MLXD_BOOL)
            for (size_t i = 0; i < count; i++)
                if (in[k][i] % 3 == 0)
                    in[k][i] = 0;
        srcs[k] = in[k];
    }
    memcpy(ref, in[0], count * size);
    if (n == 1 && t == MLXD_BOOL)
        for (size_t i = 0; i < count; i++)
            ref[i] = ref[i] != 0;
    for (size_t k = 1; k < n; k++)
        for (size_t i = 0; i < count; i++)
            ref_step(op, t, ref + i * size, in[k] + i * size);

    uint8_t *out = dst_is == OUT_OF_PLACE ? fresh : in[dst_is];
    reduce_n(op, t, out, srcs, n, count);

    for (size_t i = 0; i < count; i++) {
        if (!same_element(t, out + i * size, ref + i * size)) {
            print_error("%s of %s, n=%zu, dst=%d, element %zu of %zu:\n", reduce_op_name(op), dtype_name(t), n,
                        dst_is, i, count);
            print_element("  got ", out + i * size, size);
            print_element("  want", ref + i * size, size);
            fail();
        }
    }
    for (size_t k = 0; k < n; k++)
        test_free(in[k]);
    test_free(ref);
    test_free(fresh);
}

static void every_dtype_op_and_input_count_matches_the_scalar_reference(void **state) {
    uint64_t seed = 1;
    for (mlxd_dtype t = 0; t < MLXD_DTYPE_MAX; t++)
        for (reduce_op op = 0; op < REDUCE_OP_MAX; op++)
            for (size_t n = 1; n <= 4; n++)
                check_against_reference(op, t, n, 20011, OUT_OF_PLACE, seed++);
}

static void every_dtype_and_op_in_place_matches_the_scalar_reference(void **state) {
    uint64_t seed = 1000;
    for (mlxd_dtype t = 0; t < MLXD_DTYPE_MAX; t++)
        for (reduce_op op = 0; op < REDUCE_OP_MAX; op++)
            for (int dst_is = 0; dst_is < 3; dst_is++)
                check_against_reference(op, t, 3, 20011, dst_is, seed++);
}

static void large_float32_sum_matches_the_scalar_reference(void **state) {
    // 3 Mi elements (12 MiB per input), not a whole number of blocks.
    size_t count = (size_t)3 << 20 | 5;
    check_against_reference(REDUCE_SUM, MLXD_FLOAT32, 4, count, OUT_OF_PLACE, 42);
    check_against_reference(REDUCE_SUM, MLXD_FLOAT32, 2, count, 0, 43);
}

static void large_bfloat16_sum_matches_the_scalar_reference(void **state) {
    size_t count = (size_t)3 << 20 | 3;
    check_against_reference(REDUCE_SUM, MLXD_BFLOAT16, 3, count, OUT_OF_PLACE, 44);
}


// Inline tensors may start at any address in a ZeroMQ frame.
static void misaligned_inputs_and_output_reduce_like_aligned_ones(void **state) {
    enum { N = 3001 };
    uint8_t *raw = malloc(4 * (N * 8 + 16));
    assert_non_null(raw);
    for (int t = 0; t < MLXD_DTYPE_MAX; t++) {
        if (t == MLXD_BOOL || mlxd_dtype_size((mlxd_dtype) t) == 1)
            continue;
        size_t bytes = N * mlxd_dtype_size((mlxd_dtype) t);
        uint8_t *a = raw + 1, *b = raw + bytes + 19, *odd = raw + 2 * bytes + 37;
        uint8_t *ref = malloc(bytes), *aa = malloc(bytes), *bb = malloc(bytes);
        assert_non_null(ref);
        for (size_t i = 0; i < bytes; i++) {
            // Small values keep every dtype's sum finite and exact.
            a[i] = (uint8_t) (i % 2 ? 0 : (i * 7) % 5);
            b[i] = (uint8_t) (i % 2 ? 0 : (i * 3) % 7);
        }
        memcpy(aa, a, bytes);
        memcpy(bb, b, bytes);
        for (int op = 0; op < REDUCE_OP_MAX; op++) {
            const void *al[2] = { aa, bb }, *mis[2] = { a, b };
            reduce_n((reduce_op) op, (mlxd_dtype) t, ref, al, 2, N);
            reduce_n((reduce_op) op, (mlxd_dtype) t, odd, mis, 2, N);
            assert_memory_equal(ref, odd, bytes);
        }
        free(ref);
        free(aa);
        free(bb);
    }
    free(raw);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(op_names_are_sum_max_min_and_invalid_otherwise),

        cmocka_unit_test(float16_decodes_normals_subnormals_and_zeros),
        cmocka_unit_test(float16_decodes_inf_and_keeps_nan_a_nan),
        cmocka_unit_test(bfloat16_decodes_as_the_top_half_of_a_float32),
        cmocka_unit_test(double_to_float16_rounds_ties_to_even),
        cmocka_unit_test(double_to_float16_rounds_subnormals_and_underflows_to_signed_zero),
        cmocka_unit_test(double_to_float16_overflows_to_inf_from_the_halfway_point),
        cmocka_unit_test(double_to_float16_keeps_nan_a_nan),
        cmocka_unit_test(double_to_bfloat16_rounds_ties_to_even),
        cmocka_unit_test(double_to_bfloat16_rounds_subnormals),
        cmocka_unit_test(double_to_bfloat16_overflows_to_inf_from_the_halfway_point),
        cmocka_unit_test(double_to_bfloat16_keeps_nan_a_nan),

        cmocka_unit_test(float16_sum_rounds_to_nearest_even),
        cmocka_unit_test(float16_sum_of_subnormals_is_exact_and_carries_into_the_normals),
        cmocka_unit_test(float16_sum_of_zeros_keeps_ieee_signs),
        cmocka_unit_test(float16_sum_overflows_to_inf),
        cmocka_unit_test(float16_sum_with_nan_or_opposite_infs_is_nan),
        cmocka_unit_test(float16_sum_rounds_at_every_step_left_to_right),
        cmocka_unit_test(bfloat16_sum_rounds_to_nearest_even),
        cmocka_unit_test(bfloat16_sum_of_subnormals_is_exact_and_carries_into_the_normals),
        cmocka_unit_test(bfloat16_sum_overflows_to_inf),
        cmocka_unit_test(bfloat16_sum_with_nan_or_opposite_infs_is_nan),
        cmocka_unit_test(bfloat16_sum_rounds_at_every_step_left_to_right),
        cmocka_unit_test(float16_sums_equal_the_exactly_rounded_sum),
        cmocka_unit_test(bfloat16_sums_equal_the_exactly_rounded_sum),
        cmocka_unit_test(float16_max_min_compare_values_not_bits),
        cmocka_unit_test(float16_max_min_propagate_nan),
        cmocka_unit_test(bfloat16_max_min_compare_values_not_bits),
        cmocka_unit_test(bfloat16_max_min_propagate_nan),

        cmocka_unit_test(uint8_sum_wraps),
        cmocka_unit_test(uint16_sum_wraps),
        cmocka_unit_test(uint32_sum_wraps),
        cmocka_unit_test(uint64_sum_wraps),
        cmocka_unit_test(int8_sum_wraps),
        cmocka_unit_test(int16_sum_wraps),
        cmocka_unit_test(int32_sum_wraps),
        cmocka_unit_test(int64_sum_wraps),
        cmocka_unit_test(signed_max_min_use_signed_order),
        cmocka_unit_test(unsigned_max_min_use_unsigned_order),

        cmocka_unit_test(bool_sum_is_logical_or),
        cmocka_unit_test(bool_max_is_logical_or),
        cmocka_unit_test(bool_min_is_logical_and),
        cmocka_unit_test(bool_of_one_input_is_0_or_1),

        cmocka_unit_test(complex64_sum_adds_componentwise),
        cmocka_unit_test(complex64_max_min_compare_the_real_part_first),
        cmocka_unit_test(complex64_equal_real_parts_are_decided_by_the_imaginary_part),
        cmocka_unit_test(complex64_max_min_keep_the_whole_chosen_element),
        cmocka_unit_test(complex64_max_min_propagate_nan),

        cmocka_unit_test(float32_max_min_compare_values),
        cmocka_unit_test(float32_max_min_propagate_nan_from_either_input),
        cmocka_unit_test(float64_max_min_propagate_nan_from_either_input),
        cmocka_unit_test(float64_sum_adds_in_double),

        cmocka_unit_test(sum_of_one_input_copies_it),
        cmocka_unit_test(sum_of_two_inputs),
        cmocka_unit_test(sum_of_three_inputs_folds_left_to_right),
        cmocka_unit_test(sum_of_four_inputs_folds_left_to_right),

        cmocka_unit_test(in_place_into_the_first_input),
        cmocka_unit_test(in_place_into_the_second_input),
        cmocka_unit_test(in_place_into_a_later_input),
        cmocka_unit_test(in_place_when_dst_is_several_of_the_inputs),
        cmocka_unit_test(reduce_into_folds_a_contribution_into_the_accumulator),
        cmocka_unit_test(count_zero_writes_nothing),
        cmocka_unit_test(misaligned_inputs_and_output_reduce_like_aligned_ones),

        cmocka_unit_test(every_dtype_op_and_input_count_matches_the_scalar_reference),
        cmocka_unit_test(every_dtype_and_op_in_place_matches_the_scalar_reference),
        cmocka_unit_test(large_float32_sum_matches_the_scalar_reference),
        cmocka_unit_test(large_bfloat16_sum_matches_the_scalar_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
