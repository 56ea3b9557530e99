#include "metrics.h"

#include <math.h>

static int bucket_of(uint64_t us) {
    if (us == 0)
        return 0;
    int b = (int) (4.0 * log2((double) us)) + 1;
    return b < METRICS_BUCKETS ? b : METRICS_BUCKETS - 1;
}

// The upper edge of a bucket, in microseconds.
static uint64_t bucket_edge(int b) {
    return b == 0 ? 0 : (uint64_t) ceil(exp2((double) b / 4.0));
}

void metrics_record(struct metrics *m, Mlxd__OpType op, uint64_t bytes, uint64_t latency_us, int code) {
    if ((unsigned) op >= METRICS_OPS)
        return;
    struct op_metrics *o = &m->op[op];
    if (code != 0) {
        o->errors++;
        return;
    }
    o->count++;
    o->bytes += bytes;
    o->buckets[bucket_of(latency_us)]++;
}

uint64_t metrics_quantile(const struct metrics *m, Mlxd__OpType op, double q) {
    if ((unsigned) op >= METRICS_OPS || m->op[op].count == 0)
        return 0;
    const struct op_metrics *o = &m->op[op];
    uint64_t want = (uint64_t) ceil(q * (double) o->count), seen = 0;
    if (want == 0)
        want = 1;
    for (int b = 0; b < METRICS_BUCKETS; b++) {
        seen += o->buckets[b];
        if (seen >= want)
            return bucket_edge(b);
    }
    return bucket_edge(METRICS_BUCKETS - 1);
}
