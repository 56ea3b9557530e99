/* probe.c: MLX's eight reduction functions are told apart, each as the
 * reduction and dtype it is; a function that is none of them is refused,
 * never taken for the nearest one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "mpi_impl.h"
#include "mlx_ops.h"

static void expect_identified(MPI_User_function *fn, enum mpi_red red, mlxd_dtype dtype) {
    enum mpi_red got_red = MPI_RED_MAX_;
    mlxd_dtype got_dtype = MLXD_DTYPE_MAX;
    char why[256] = "";
    assert_int_equal(mpi_probe_op(fn, &got_red, &got_dtype, why, sizeof why), 0);
    assert_int_equal(got_red, red);
    assert_int_equal(got_dtype, dtype);
}

static void expect_refused(MPI_User_function *fn, const char *reason) {
    enum mpi_red red = MPI_RED_MAX_;
    mlxd_dtype dtype = MLXD_DTYPE_MAX;
    char why[256] = "";
    assert_int_equal(mpi_probe_op(fn, &red, &dtype, why, sizeof why), -1);
    assert_non_null(strstr(why, reason));
    // Nothing written on failure.
    assert_int_equal(red, MPI_RED_MAX_);
    assert_int_equal(dtype, MLXD_DTYPE_MAX);
}

static void mlx_functions_are_identified(void **state) {
    expect_identified(sum_f16, MPI_RED_SUM, MLXD_FLOAT16);
    expect_identified(sum_bf16, MPI_RED_SUM, MLXD_BFLOAT16);
    expect_identified(max_f16, MPI_RED_MAX, MLXD_FLOAT16);
    expect_identified(max_bf16, MPI_RED_MAX, MLXD_BFLOAT16);
    expect_identified(max_c64, MPI_RED_MAX, MLXD_COMPLEX64);
    expect_identified(min_f16, MPI_RED_MIN, MLXD_FLOAT16);
    expect_identified(min_bf16, MPI_RED_MIN, MLXD_BFLOAT16);
    expect_identified(min_c64, MPI_RED_MIN, MLXD_COMPLEX64);
}

static void sum_c64(void *input, void *accumulator, int *len, MPI_Datatype *datatype) {
    c64 *in = input, *acc = accumulator;
    for (int n = *len; n-- > 0; acc++, in++)
        *acc = (c64){acc->re + in->re, acc->im + in->im};
}

static void complex64_sum_is_identified(void **state) {
    expect_identified(sum_c64, MPI_RED_SUM, MLXD_COMPLEX64);
}

// numpy's maximum: a NaN wins. Not MLX's std::max; on float16 NaNs it
// would differ from mlxd's bfloat16 max, so it must not pass for one.
static void nan_wins_max_f16(void *input, void *accumulator, int *len, MPI_Datatype *datatype) {
    f16 *in = input, *acc = accumulator;
    for (int n = *len; n-- > 0; acc++, in++)
        *acc = (isnan((float) *acc) || *acc >= *in) ? *acc : *in;
}

static void sum_f32(void *input, void *accumulator, int *len, MPI_Datatype *datatype) {
    float *in = input, *acc = accumulator;
    for (int n = *len; n-- > 0; acc++, in++)
        *acc += *in;
}

static void nothing(void *input, void *accumulator, int *len, MPI_Datatype *datatype) {
}

static void writes_input(void *input, void *accumulator, int *len, MPI_Datatype *datatype) {
    sum_f16(input, accumulator, len, datatype);
    *(uint8_t *) input ^= 1;
}

static void other_functions_are_refused(void **state) {
    expect_refused(prod_f16, "computes none of");
    expect_refused(nan_wins_max_f16, "computes none of");
    expect_refused(sum_f32, "computes none of");
    expect_refused(nothing, "computes none of");
    expect_refused(writes_input, "writes its input");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mlx_functions_are_identified),
        cmocka_unit_test(complex64_sum_is_identified),
        cmocka_unit_test(other_functions_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
