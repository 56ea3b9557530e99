/* Totals per op type: count, bytes, errors and a latency histogram with
 * quarter-octave buckets, good for p50/p99 to within 19%; and the same
 * counted as Prometheus wants it (every member request, errors by code, a
 * histogram of fixed buckets), rendered in its text format. Pure: no I/O,
 * no clock, no locks. */
#ifndef MLXD_METRICS_H
#define MLXD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "mlxd.pb-c.h"

#define METRICS_OPS 10             // Mlxd__OpType values
#define METRICS_BUCKETS 128        // 2^(i/4) microseconds
#define METRICS_CODES 16           // -MLXD_E* codes; 0 counts any other code
#define METRICS_HIST 20            // fixed buckets of mlxd_op_duration_seconds, +Inf apart

struct op_metrics {
    uint64_t count, bytes, errors;  // successful calls, their bytes; failed calls
    uint64_t buckets[METRICS_BUCKETS];  // latency of the successful ones
    uint64_t requests;              // every member request answered, ok or not
    uint64_t by_code[METRICS_CODES];
    uint64_t hist[METRICS_HIST + 1];  // latency of every request; the last is +Inf
    uint64_t sum_us;
};

struct metrics {
    struct op_metrics op[METRICS_OPS];
    uint64_t records;               // metrics_record() calls, to tell a change
};

// The gauges of a snapshot, from the daemon's state.
struct metrics_gauges {
    int world_rank, world_size;
    unsigned clients, jobs;
};

// Counts one member request of op, answered with code (0 or an MLXD_E*
// code) after latency_us; bytes count only when it succeeded.
void metrics_record(struct metrics *m, Mlxd__OpType op, uint64_t bytes, uint64_t latency_us, int code);

// The latency below which fraction q (0..1) of op's successful calls fell,
// in microseconds; 0 when there were none.
uint64_t metrics_quantile(const struct metrics *m, Mlxd__OpType op, double q);

// Renders m and g in Prometheus' text exposition format (version 0.0.4):
// mlxd_up, mlxd_world_rank, mlxd_world_size, mlxd_clients, mlxd_jobs,
// mlxd_ops_total{op}, mlxd_op_bytes_total{op}, mlxd_op_errors_total{op,code}
// and mlxd_op_duration_seconds{op}, each with # HELP and # TYPE. On success
// *ret_text is a NUL-terminated string the caller frees, of *ret_len bytes.
// Returns 0 or -ENOMEM.
int metrics_render(const struct metrics *m, const struct metrics_gauges *g, char **ret_text, size_t *ret_len);

#endif
