/* Request validation: every malformed or out-of-limit request gets a precise
 * error before anything else looks at it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "job.h"
#include "request.h"

static const struct config cfg = {
    .max_tensor_bytes = 1 << 20,
    .max_group_size = 1024,
};

static int64_t shape4[] = { 4 };

static int check(const Mlxd__Request *req, const size_t *lens, int n, char *err) {
    return request_validate_lengths(req, lens, n, &cfg, err, 512);
}

static Mlxd__Request hello_req(Mlxd__Hello *h) {
    Mlxd__Request r = MLXD__REQUEST__INIT;
    r.body_case = MLXD__REQUEST__BODY_HELLO;
    r.hello = h;
    return r;
}

static void valid_hello_passes(void **state) {
    Mlxd__Hello h = MLXD__HELLO__INIT;
    h.version = MLXD_PROTOCOL_VERSION;
    h.job = "host-1-2-abc";
    h.rank = 1;
    h.size = 2;
    Mlxd__Request r = hello_req(&h);
    char err[512];
    assert_int_equal(check(&r, NULL, 0, err), 0);
}

static void wrong_protocol_version_is_eproto(void **state) {
    Mlxd__Hello h = MLXD__HELLO__INIT;
    h.version = MLXD_PROTOCOL_VERSION + 1;
    h.job = "j";
    h.size = 1;
    Mlxd__Request r = hello_req(&h);
    char err[512];
    assert_int_equal(check(&r, NULL, 0, err), MLXD_EPROTO);
    assert_non_null(strstr(err, "version"));
}

static void ranks_outside_the_job_are_einval(void **state) {
    Mlxd__Hello h = MLXD__HELLO__INIT;
    h.version = MLXD_PROTOCOL_VERSION;
    h.job = "j";
    h.size = 2;
    Mlxd__Request r = hello_req(&h);
    char err[512];
    h.rank = 2;
    assert_int_equal(check(&r, NULL, 0, err), MLXD_EINVAL);
    assert_non_null(strstr(err, "rank 2"));
    h.rank = -1;
    assert_int_equal(check(&r, NULL, 0, err), MLXD_EINVAL);
    h.rank = 0;
    h.size = 0;
    assert_int_equal(check(&r, NULL, 0, err), MLXD_EINVAL);
    h.size = 5000;
    assert_int_equal(check(&r, NULL, 0, err), MLXD_EINVAL);
}

static void job_ids_are_checked(void **state) {
    assert_true(wire_job_id_valid("vm-123-456-9f3a"));
    assert_true(wire_job_id_valid("a.b:c@d+e_f"));
    assert_false(wire_job_id_valid(""));
    assert_false(wire_job_id_valid(NULL));
    assert_false(wire_job_id_valid("has space"));
    assert_false(wire_job_id_valid("slash/"));
    char long_id[WIRE_JOB_ID_MAX + 2];
    memset(long_id, 'a', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    assert_false(wire_job_id_valid(long_id));
    long_id[WIRE_JOB_ID_MAX] = '\0';
    assert_true(wire_job_id_valid(long_id));
}

// An all_sum of 4 float32 carried in frame 1.
struct op_req {
    Mlxd__Request req;
    Mlxd__OpRequest op;
    Mlxd__Tensor in;
};

static void op_init(struct op_req *o, Mlxd__OpType type) {
    mlxd__request__init(&o->req);
    mlxd__op_request__init(&o->op);
    mlxd__tensor__init(&o->in);
    o->req.body_case = MLXD__REQUEST__BODY_OP;
    o->req.op = &o->op;
    o->op.op = type;
    o->op.input = &o->in;
    o->in.dtype = MLXD_FLOAT32;
    o->in.n_shape = 1;
    o->in.shape = shape4;
    o->in.frame = 1;
}

static void valid_all_sum_passes(void **state) {
    struct op_req o;
    op_init(&o, MLXD__OP_TYPE__OP_ALL_SUM);
    size_t lens[] = { 16 };
    char err[512];
    assert_int_equal(check(&o.req, lens, 1, err), 0);
}

static void frame_length_that_lies_is_eproto(void **state) {
    struct op_req o;
    op_init(&o, MLXD__OP_TYPE__OP_ALL_SUM);
    size_t lens[] = { 15 };
    char err[512];
    assert_int_equal(check(&o.req, lens, 1, err), MLXD_EPROTO);
    assert_non_null(strstr(err, "16 bytes"));
}

static void frame_index_past_the_frames_is_eproto(void **state) {
    struct op_req o;
    op_init(&o, MLXD__OP_TYPE__OP_ALL_SUM);
    o.in.frame = 2;
    size_t lens[] = { 16 };
    char err[512];
    assert_int_equal(check(&o.req, lens, 1, err), MLXD_EPROTO);
    o.in.frame = 0;
    assert_int_equal(check(&o.req, lens, 1, err), MLXD_EPROTO);
}

static void unreferenced_frames_are_eproto(void **state) {
    struct op_req o;
    op_init(&o, MLXD__OP_TYPE__OP_ALL_SUM);
    size_t lens[] = { 16, 3 };
    char err[512];
    assert_int_equal(check(&o.req, lens, 2, err), MLXD_EPROTO);
    o.op.op = MLXD__OP_TYPE__OP_BARRIER;
    o.op.input = NULL;
    assert_int_equal(check(&o.req, lens, 1, err), MLXD_EPROTO);
}

static void unknown_dtype_is_einval(void **state) {
    struct op_req o;
    op_init(&o, MLXD__OP_TYPE__OP_ALL_MAX);
    o.in.dtype = 99;
    size_t lens[] = { 16 };
    char err[512];
    assert_int_equal(check(&o.req, lens, 1, err), MLXD_EINVAL);
    assert_non_null(strstr(err, "dtype"));
}

static void negative_dim_and_too_many_dims_are_einval(void **state) {
    struct op_req o;
    op_init(&o, MLXD__OP_TYPE__OP_ALL_SUM);
    int64_t neg[] = { -4 };
    o.in.shape = neg;
    size_t lens[] = { 16 };
    char err[512];
    assert_int_equal(check(&o.req, lens, 1, err), MLXD_EINVAL);
    int64_t nine[9] = { 1, 1, 1, 1, 1, 1, 1, 1, 4 };
    o.in.shape = nine;
    o.in.n_shape = 9;
    assert_int_equal(check(&o.req, lens, 1, err), MLXD_EINVAL);
}

static void tensors_over_the_limit_are_enomem(void **state) {
    struct op_req o;
    op_init(&o, MLXD__OP_TYPE__OP_ALL_SUM);
    int64_t huge[] = { (int64_t) 1 << 40, 1 << 20 };
    o.in.shape = huge;
    o.in.n_shape = 2;
    size_t lens[] = { 16 };
    char err[512];
    assert_int_equal(check(&o.req, lens, 1, err), MLXD_ENOMEM);
    assert_non_null(strstr(err, "limit"));
}

static void unknown_op_is_eproto(void **state) {
    struct op_req o;
    op_init(&o, (Mlxd__OpType) 42);
    size_t lens[] = { 16 };
    char err[512];
    assert_int_equal(check(&o.req, lens, 1, err), MLXD_EPROTO);
}

static void recv_takes_an_output_without_data(void **state) {
    struct op_req o;
    op_init(&o, MLXD__OP_TYPE__OP_RECV);
    char err[512];
    assert_int_equal(check(&o.req, NULL, 0, err), MLXD_EPROTO);   // input given
    o.op.input = NULL;
    o.op.output = &o.in;
    o.in.frame = 0;
    assert_int_equal(check(&o.req, NULL, 0, err), 0);
    o.op.output = NULL;
    assert_int_equal(check(&o.req, NULL, 0, err), MLXD_EPROTO);
}

static void sum_scatter_of_a_scalar_is_einval(void **state) {
    struct op_req o;
    op_init(&o, MLXD__OP_TYPE__OP_SUM_SCATTER);
    o.in.n_shape = 0;
    size_t lens[] = { 4 };
    char err[512];
    assert_int_equal(check(&o.req, lens, 1, err), MLXD_EINVAL);
}

static void shared_memory_tensors_carry_no_frame(void **state) {
    struct op_req o;
    op_init(&o, MLXD__OP_TYPE__OP_ALL_SUM);
    o.in.frame = 0;
    o.in.segment = 7;
    char err[512];
    assert_int_equal(check(&o.req, NULL, 0, err), 0);
    o.in.frame = 1;
    size_t lens[] = { 16 };
    assert_int_equal(check(&o.req, lens, 1, err), MLXD_EPROTO);
}

static void data_frames_on_other_requests_are_eproto(void **state) {
    Mlxd__Request r = MLXD__REQUEST__INIT;
    Mlxd__Ping ping = MLXD__PING__INIT;
    r.body_case = MLXD__REQUEST__BODY_PING;
    r.ping = &ping;
    size_t lens[] = { 1 };
    char err[512];
    assert_int_equal(check(&r, NULL, 0, err), 0);
    assert_int_equal(check(&r, lens, 1, err), MLXD_EPROTO);
    r.body_case = MLXD__REQUEST__BODY__NOT_SET;
    assert_int_equal(check(&r, NULL, 0, err), MLXD_EPROTO);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_hello_passes),
        cmocka_unit_test(wrong_protocol_version_is_eproto),
        cmocka_unit_test(ranks_outside_the_job_are_einval),
        cmocka_unit_test(job_ids_are_checked),
        cmocka_unit_test(valid_all_sum_passes),
        cmocka_unit_test(frame_length_that_lies_is_eproto),
        cmocka_unit_test(frame_index_past_the_frames_is_eproto),
        cmocka_unit_test(unreferenced_frames_are_eproto),
        cmocka_unit_test(unknown_dtype_is_einval),
        cmocka_unit_test(negative_dim_and_too_many_dims_are_einval),
        cmocka_unit_test(tensors_over_the_limit_are_enomem),
        cmocka_unit_test(unknown_op_is_eproto),
        cmocka_unit_test(recv_takes_an_output_without_data),
        cmocka_unit_test(sum_scatter_of_a_scalar_is_einval),
        cmocka_unit_test(shared_memory_tensors_carry_no_frame),
        cmocka_unit_test(data_frames_on_other_requests_are_eproto),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
