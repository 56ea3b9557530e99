/* Totals per op type: count, bytes, errors and a latency histogram with
 * quarter-octave buckets, good for p50/p99 to within 19%. */
#ifndef MLXD_METRICS_H
#define MLXD_METRICS_H

#include <stdint.h>

#include "mlxd.pb-c.h"

#define METRICS_OPS 10             // Mlxd__OpType values
#define METRICS_BUCKETS 128        // 2^(i/4) microseconds

struct op_metrics {
    uint64_t count, bytes, errors;
    uint64_t buckets[METRICS_BUCKETS];
};

struct metrics {
    struct op_metrics op[METRICS_OPS];
};

void metrics_record(struct metrics *m, Mlxd__OpType op, uint64_t bytes, uint64_t latency_us, int code);

// The latency below which fraction q (0..1) of op's successful calls fell,
// in microseconds; 0 when there were none.
uint64_t metrics_quantile(const struct metrics *m, Mlxd__OpType op, double q);

#endif
