/* The shared wire helpers: dtype table, sizes with overflow, endpoints,
 * peer credentials. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "wire.h"

static void dtype_sizes_match_mlx(void **state) {
    static const size_t want[MLXD_DTYPE_MAX] = { 1, 1, 2, 4, 8, 1, 2, 4, 8, 2, 2, 4, 8, 8 };
    for (int t = 0; t < MLXD_DTYPE_MAX; t++)
        assert_int_equal(mlxd_dtype_size((mlxd_dtype) t), want[t]);
    assert_int_equal(mlxd_dtype_size(MLXD_DTYPE_MAX), 0);
    assert_int_equal(mlxd_dtype_size((mlxd_dtype) -1), 0);
}

static void dtype_names_round_trip(void **state) {
    for (int t = 0; t < MLXD_DTYPE_MAX; t++)
        assert_int_equal(wire_dtype_from_name(mlxd_dtype_name((mlxd_dtype) t)), t);
    assert_string_equal(mlxd_dtype_name(MLXD_BFLOAT16), "bfloat16");
    assert_string_equal(mlxd_dtype_name((mlxd_dtype) 99), "invalid");
    assert_int_equal(wire_dtype_from_name("float8"), -1);
}

static void scalar_has_one_element(void **state) {
    uint64_t n = 0;
    assert_int_equal(wire_tensor_nbytes(MLXD_FLOAT64, 0, NULL, &n), 0);
    assert_int_equal(n, 8);
}

static void empty_dimension_gives_zero_bytes(void **state) {
    int64_t shape[] = { 4, 0, 3 };
    uint64_t n = 1;
    assert_int_equal(wire_tensor_nbytes(MLXD_INT32, 3, shape, &n), 0);
    assert_int_equal(n, 0);
}

static void huge_shapes_overflow_cleanly(void **state) {
    int64_t shape[] = { INT64_MAX / 2, 4 };
    uint64_t n;
    assert_int_equal(wire_tensor_nbytes(MLXD_UINT8, 2, shape, &n), -EOVERFLOW);
    int64_t big[] = { (int64_t) 1 << 32, (int64_t) 1 << 30 };
    assert_int_equal(wire_tensor_nbytes(MLXD_FLOAT32, 2, big, &n), -EOVERFLOW);
    int64_t ok[] = { (int64_t) 3 << 30 };   // more than 2^31 elements is fine
    assert_int_equal(wire_tensor_nbytes(MLXD_UINT8, 1, ok, &n), 0);
    assert_int_equal(n, (uint64_t) 3 << 30);
}

static void negative_dims_and_bad_dtypes_are_invalid(void **state) {
    int64_t neg[] = { 2, -1 };
    uint64_t n;
    assert_int_equal(wire_tensor_nbytes(MLXD_INT8, 2, neg, &n), -EINVAL);
    assert_int_equal(wire_tensor_nbytes(MLXD_DTYPE_MAX, 0, NULL, &n), -EINVAL);
    int64_t nine[9] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 };
    assert_int_equal(wire_tensor_nbytes(MLXD_INT8, 9, nine, &n), -EINVAL);
}

static void socket_env_wins_for_the_endpoint(void **state) {
    char buf[256];
    setenv("MLXD_SOCKET", "ipc:///tmp/x/y.sock", 1);
    assert_int_equal(wire_default_endpoint(buf, sizeof buf), 0);
    assert_string_equal(buf, "ipc:///tmp/x/y.sock");
    unsetenv("MLXD_SOCKET");
    assert_int_equal(wire_default_endpoint(buf, sizeof buf), 0);
    if (geteuid() == 0)
        assert_string_equal(buf, "ipc:///run/mlxd/mlxd.sock");
    else
        assert_non_null(strstr(buf, "/mlxd"));
    assert_int_equal(wire_default_endpoint(buf, 8), -ENAMETOOLONG);
}

// 103 bytes, so that the shared-memory socket's path (".shm" added) still
// fits a Unix socket address.
static void ipc_paths_over_103_bytes_are_refused(void **state) {
    char ep[200] = "ipc:///", shm[200];
    memset(ep + 7, 'a', 103);
    assert_int_equal(wire_check_endpoint(ep), -ENAMETOOLONG);
    ep[7 + 102] = '\0';                 // "/" + 102 = 103 bytes of path
    assert_int_equal(wire_check_endpoint(ep), 0);
    assert_int_equal(wire_shm_path(ep, shm, sizeof shm), 0);
    assert_int_equal(wire_check_endpoint("ipc://"), -EINVAL);
    assert_int_equal(wire_check_endpoint("udp://x"), -EINVAL);
    assert_int_equal(wire_check_endpoint("tcp://127.0.0.1:5555"), 0);
}

static void probing_a_missing_socket_says_so(void **state) {
    int r = wire_probe_ipc("ipc:///tmp/definitely-not-here-mlxd.sock");
    assert_true(r == -ENOENT || r == -ECONNREFUSED);
    assert_int_equal(wire_probe_ipc("tcp://127.0.0.1:1"), -EINVAL);
}

static void peer_address_gives_uid_gid_pid(void **state) {
    uid_t u;
    gid_t g;
    pid_t p;
    assert_int_equal(wire_parse_peer_address("localhost:1000:100:4242", &u, &g, &p), 0);
    assert_int_equal(u, 1000);
    assert_int_equal(g, 100);
    assert_int_equal(p, 4242);
    assert_int_equal(wire_parse_peer_address("a:b:c:1:2:3", &u, &g, &p), 0);
    assert_int_equal(p, 3);
    assert_int_equal(wire_parse_peer_address("127.0.0.1", &u, &g, &p), -EINVAL);
    assert_int_equal(wire_parse_peer_address(":1:2:x", &u, &g, &p), -EINVAL);
    assert_int_equal(wire_parse_peer_address(NULL, &u, &g, &p), -EINVAL);
    // Values that would wrap into another uid (4294967296 -> 0) are refused.
    assert_int_equal(wire_parse_peer_address("h:4294967296:0:1", &u, &g, &p), -EINVAL);
    assert_int_equal(wire_parse_peer_address("h:-1:0:1", &u, &g, &p), -EINVAL);
    assert_int_equal(wire_parse_peer_address("h: 5:0:1", &u, &g, &p), -EINVAL);
}

static void every_error_code_has_a_name(void **state) {
    for (int e = MLXD_OK; e >= MLXD_EINTERNAL; e--) {
        assert_non_null(strstr(mlxd_strerror(e), wire_error_name(e)));
    }
    assert_non_null(strstr(mlxd_strerror(-100), "unknown"));
    assert_non_null(strstr(mlxd_strerror(5), "unknown"));
    assert_non_null(strstr(mlxd_strerror(INT_MIN), "unknown"));
    assert_string_equal(wire_error_name(INT_MIN), "MLXD_EUNKNOWN");
}

static void result_shapes_follow_the_op(void **state) {
    (void) state;
    int nd = 0;
    int64_t sh[MLXD_MAX_NDIM] = { 0 };
    assert_int_equal(wire_result_shape(MLXD__OP_TYPE__OP_ALL_GATHER, 3, &nd, sh), 0);
    assert_int_equal(nd, 1);
    assert_int_equal(sh[0], 3);
    nd = 2, sh[0] = 4, sh[1] = 5;
    assert_int_equal(wire_result_shape(MLXD__OP_TYPE__OP_ALL_GATHER, 2, &nd, sh), 0);
    assert_int_equal(sh[0], 8);
    assert_int_equal(sh[1], 5);
    assert_int_equal(wire_result_shape(MLXD__OP_TYPE__OP_SUM_SCATTER, 4, &nd, sh), 0);
    assert_int_equal(sh[0], 2);
    assert_int_equal(wire_result_shape(MLXD__OP_TYPE__OP_SUM_SCATTER, 3, &nd, sh), -EINVAL);
    assert_int_equal(wire_result_shape(MLXD__OP_TYPE__OP_ALL_SUM, 3, &nd, sh), 0);
    assert_int_equal(sh[0], 2);
    nd = 0;
    assert_int_equal(wire_result_shape(MLXD__OP_TYPE__OP_SUM_SCATTER, 1, &nd, sh), -EINVAL);
    nd = 1, sh[0] = INT64_MAX / 2 + 1;
    assert_int_equal(wire_result_shape(MLXD__OP_TYPE__OP_ALL_GATHER, 2, &nd, sh), -EOVERFLOW);
}

static void ops_map_to_their_reduction(void **state) {
    (void) state;
    assert_int_equal(wire_op_reduction(MLXD__OP_TYPE__OP_ALL_SUM), REDUCE_SUM);
    assert_int_equal(wire_op_reduction(MLXD__OP_TYPE__OP_SUM_SCATTER), REDUCE_SUM);
    assert_int_equal(wire_op_reduction(MLXD__OP_TYPE__OP_ALL_MAX), REDUCE_MAX);
    assert_int_equal(wire_op_reduction(MLXD__OP_TYPE__OP_ALL_MIN), REDUCE_MIN);
    assert_int_equal(wire_op_reduction(MLXD__OP_TYPE__OP_ALL_GATHER), REDUCE_OP_INVALID);
    assert_int_equal(wire_op_reduction(MLXD__OP_TYPE__OP_SEND), REDUCE_OP_INVALID);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dtype_sizes_match_mlx),
        cmocka_unit_test(dtype_names_round_trip),
        cmocka_unit_test(scalar_has_one_element),
        cmocka_unit_test(empty_dimension_gives_zero_bytes),
        cmocka_unit_test(huge_shapes_overflow_cleanly),
        cmocka_unit_test(negative_dims_and_bad_dtypes_are_invalid),
        cmocka_unit_test(socket_env_wins_for_the_endpoint),
        cmocka_unit_test(ipc_paths_over_103_bytes_are_refused),
        cmocka_unit_test(probing_a_missing_socket_says_so),
        cmocka_unit_test(peer_address_gives_uid_gid_pid),
        cmocka_unit_test(every_error_code_has_a_name),
        cmocka_unit_test(result_shapes_follow_the_op),
        cmocka_unit_test(ops_map_to_their_reduction),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
