/* metrics.c: what it counts per member request, and the Prometheus text it
 * renders from that. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "metrics.h"

static char *render(const struct metrics *m) {
    struct metrics_gauges g = { .world_rank = 1, .world_size = 3, .clients = 4, .jobs = 2 };
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(metrics_render(m, &g, &text, &len), 0);
    assert_int_equal(strlen(text), len);
    return text;
}

static void has_line(const char *text, const char *line) {
    char want[512];
    snprintf(want, sizeof want, "\n%s\n", line);
    if (!strstr(text, want) && strncmp(text, line, strlen(line)) != 0) {
        print_error("missing line: %s\n", line);
        fail();
    }
}

static void every_family_has_help_and_type(void **state) {
    struct metrics m = { 0 };
    char *t = render(&m);
    static const char *const families[][2] = {
        { "mlxd_up", "gauge" }, { "mlxd_world_rank", "gauge" }, { "mlxd_world_size", "gauge" },
        { "mlxd_clients", "gauge" }, { "mlxd_jobs", "gauge" }, { "mlxd_ops_total", "counter" },
        { "mlxd_op_bytes_total", "counter" }, { "mlxd_op_errors_total", "counter" },
        { "mlxd_op_duration_seconds", "histogram" },
    };
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        char line[128];
        snprintf(line, sizeof line, "# TYPE %s %s", families[i][0], families[i][1]);
        has_line(t, line);
        snprintf(line, sizeof line, "# HELP %s ", families[i][0]);
        assert_non_null(strstr(t, line));
    }
    has_line(t, "mlxd_up 1");
    has_line(t, "mlxd_world_rank 1");
    has_line(t, "mlxd_world_size 3");
    has_line(t, "mlxd_clients 4");
    has_line(t, "mlxd_jobs 2");
    // Every op has its series from the start, at 0; no error series yet.
    has_line(t, "mlxd_ops_total{op=\"split\"} 0");
    assert_null(strstr(t, "mlxd_op_errors_total{"));
    free(t);
}

static void requests_errors_by_code_and_cumulative_buckets(void **state) {
    struct metrics m = { 0 };
    metrics_record(&m, MLXD__OP_TYPE__OP_ALL_SUM, 64, 10, 0);          // le 25 µs
    metrics_record(&m, MLXD__OP_TYPE__OP_ALL_SUM, 64, 300, 0);         // le 500 µs
    metrics_record(&m, MLXD__OP_TYPE__OP_ALL_SUM, 64, 2000000, -4);    // MLXD_EPEER, le 2.5 s
    metrics_record(&m, MLXD__OP_TYPE__OP_ALL_SUM, 64, 90000000, -5);   // MLXD_ETIMEDOUT, +Inf
    metrics_record(&m, MLXD__OP_TYPE__OP_SEND, 8, 1, -12345);          // no such code
    metrics_record(&m, MLXD__OP_TYPE__OP_SEND, 8, 1, -14);             // nor this one: one series
    char *t = render(&m);
    has_line(t, "mlxd_ops_total{op=\"all_sum\"} 4");
    has_line(t, "mlxd_op_bytes_total{op=\"all_sum\"} 128");
    has_line(t, "mlxd_op_errors_total{op=\"all_sum\",code=\"MLXD_EPEER\"} 1");
    has_line(t, "mlxd_op_errors_total{op=\"all_sum\",code=\"MLXD_ETIMEDOUT\"} 1");
    has_line(t, "mlxd_op_errors_total{op=\"send\",code=\"MLXD_EUNKNOWN\"} 2");
    has_line(t, "mlxd_op_duration_seconds_bucket{op=\"all_sum\",le=\"2.5e-05\"} 1");
    has_line(t, "mlxd_op_duration_seconds_bucket{op=\"all_sum\",le=\"0.0005\"} 2");
    has_line(t, "mlxd_op_duration_seconds_bucket{op=\"all_sum\",le=\"1\"} 2");
    has_line(t, "mlxd_op_duration_seconds_bucket{op=\"all_sum\",le=\"2.5\"} 3");
    has_line(t, "mlxd_op_duration_seconds_bucket{op=\"all_sum\",le=\"60\"} 3");
    has_line(t, "mlxd_op_duration_seconds_bucket{op=\"all_sum\",le=\"+Inf\"} 4");
    has_line(t, "mlxd_op_duration_seconds_count{op=\"all_sum\"} 4");
    has_line(t, "mlxd_op_duration_seconds_sum{op=\"all_sum\"} 92.000310");
    // The status totals keep counting successes and failures apart.
    assert_int_equal(m.op[MLXD__OP_TYPE__OP_ALL_SUM].count, 2);
    assert_int_equal(m.op[MLXD__OP_TYPE__OP_ALL_SUM].errors, 2);
    free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_family_has_help_and_type),
        cmocka_unit_test(requests_errors_by_code_and_cumulative_buckets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
