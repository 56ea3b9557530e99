#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

// Upper edges of mlxd_op_duration_seconds' buckets, in microseconds: from a
// small op on one host to a large one across hosts.
static const uint64_t hist_edges_us[METRICS_HIST] = {
    25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000, 10000000, 30000000, 60000000,
};

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

static int hist_of(uint64_t us) {
    int b = 0;
    while (b < METRICS_HIST && us > hist_edges_us[b])
        b++;
    return b;
}

void metrics_record(struct metrics *m, Mlxd__OpType op, uint64_t bytes, uint64_t latency_us, int code) {
    if ((unsigned) op >= METRICS_OPS)
        return;
    struct op_metrics *o = &m->op[op];
    m->records++;
    o->requests++;
    o->hist[hist_of(latency_us)]++;
    o->sum_us += latency_us;
    if (code != 0) {
        o->errors++;
        // Codes without a name share one series, so no two print alike.
        bool named = code < 0 && -code < METRICS_CODES && strcmp(wire_error_name(code), "MLXD_EUNKNOWN") != 0;
        o->by_code[named ? -code : 0]++;
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

/* ---- Prometheus text format ---- */

static void family(FILE *f, const char *name, const char *type, const char *help) {
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void gauge(FILE *f, const char *name, const char *help, long long v) {
    family(f, name, "gauge", help);
    fprintf(f, "%s %lld\n", name, v);
}

// Every op type but OP_INVALID, whether or not it ran: a series that exists
// from the start makes rate() right from the first request.
#define FOR_EACH_OP(op) for (int op = 1; op < METRICS_OPS; op++)

int metrics_render(const struct metrics *m, const struct metrics_gauges *g, char **ret_text, size_t *ret_len) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return -ENOMEM;

    gauge(f, "mlxd_up", "Whether the daemon serves requests (1 while it runs).", 1);
    gauge(f, "mlxd_world_rank", "This daemon's rank in the MPI world of daemons.", g->world_rank);
    gauge(f, "mlxd_world_size", "Daemons in the MPI world.", g->world_size);
    gauge(f, "mlxd_clients", "Connected client sessions (one per group of a process).", g->clients);
    gauge(f, "mlxd_jobs", "Jobs on this daemon, forming or running.", g->jobs);

    family(f, "mlxd_ops_total", "counter", "Member requests of each op answered, successful or not.");
    FOR_EACH_OP(op)
        fprintf(f, "mlxd_ops_total{op=\"%s\"} %" PRIu64 "\n", wire_op_name((Mlxd__OpType) op), m->op[op].requests);

    family(f, "mlxd_op_bytes_total", "counter", "Bytes of the tensors of member requests that succeeded.");
    FOR_EACH_OP(op)
        fprintf(f, "mlxd_op_bytes_total{op=\"%s\"} %" PRIu64 "\n", wire_op_name((Mlxd__OpType) op), m->op[op].bytes);

    family(f, "mlxd_op_errors_total", "counter", "Member requests of each op answered with an error, by error code.");
    FOR_EACH_OP(op)
        for (int c = 0; c < METRICS_CODES; c++)
            if (m->op[op].by_code[c])
                fprintf(f, "mlxd_op_errors_total{op=\"%s\",code=\"%s\"} %" PRIu64 "\n",
                        wire_op_name((Mlxd__OpType) op), c ? wire_error_name(-c) : "MLXD_EUNKNOWN", m->op[op].by_code[c]);

    family(f, "mlxd_op_duration_seconds", "histogram",
           "Time from a member's request to its answer, successful or not.");
    FOR_EACH_OP(op) {
        const struct op_metrics *o = &m->op[op];
        const char *name = wire_op_name((Mlxd__OpType) op);
        uint64_t cum = 0;
        for (int b = 0; b < METRICS_HIST; b++) {
            cum += o->hist[b];
            fprintf(f, "mlxd_op_duration_seconds_bucket{op=\"%s\",le=\"%g\"} %" PRIu64 "\n", name,
                    (double) hist_edges_us[b] / 1e6, cum);
        }
        cum += o->hist[METRICS_HIST];
        fprintf(f, "mlxd_op_duration_seconds_bucket{op=\"%s\",le=\"+Inf\"} %" PRIu64 "\n", name, cum);
        fprintf(f, "mlxd_op_duration_seconds_sum{op=\"%s\"} %.6f\n", name, (double) o->sum_us / 1e6);
        fprintf(f, "mlxd_op_duration_seconds_count{op=\"%s\"} %" PRIu64 "\n", name, o->requests);
    }
    if (fclose(f) != 0 || !text) {
        free(text);
        return -ENOMEM;
    }
    *ret_text = text;
    *ret_len = len;
    return 0;
}
