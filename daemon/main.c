/* mlxd: the daemon. Parses its options, builds the server and runs its loop. */
#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "log.h"
#include "loop.h"
#include "server.h"

static void usage(FILE *f) {
    fprintf(f,
            "Usage: mlxd [OPTIONS]\n"
            "Serve MLX's distributed collectives to the processes of this host.\n"
            "\n"
            "  -s, --socket EP          endpoint to serve (default: $MLXD_SOCKET, else the per-user\n"
            "                           default such as ipc:///run/mlxd/mlxd.sock for root);\n"
            "                           %%r is replaced by the daemon's MPI world rank; an ipc\n"
            "                           path may have %d bytes at most\n"
            "  -l, --log-level LEVEL    error, warning, notice, info (default) or debug\n"
            "  -t, --op-timeout SECS    default deadline of every op (default 60)\n"
            "      --max-clients N      connected clients (default 1024)\n"
            "      --max-jobs N         jobs at once (default 256)\n"
            "      --max-tensor-bytes N largest tensor (default 4 GiB)\n"
            "      --max-queued-bytes N bytes a client may have sent and not yet received (default 1 GiB)\n"
            "      --max-shm-bytes N    shared memory per client process (default 16 GiB)\n"
            "      --max-groups-per-client N  groups (connections) per client process\n"
            "                           (default 64)\n"
            "      --max-inflight-per-client N  requests a client may have in flight on\n"
            "                           one group (nonblocking ops; default 64)\n"
            "      --max-mpi-stall SECS exit with status 3 when one MPI call between hosts has not\n"
            "                           returned for SECS, so that the world is started again\n"
            "                           (default 4 times --op-timeout)\n"
            "      --heartbeat-timeout SECS  a host whose daemon is silent for SECS is lost\n"
            "                           (default 2)\n"
            "      --metrics HOST:PORT  serve Prometheus metrics at http://HOST:PORT/metrics\n"
            "                           (off by default; PORT alone is 127.0.0.1:PORT,\n"
            "                           0.0.0.0:PORT listens on every address)\n"
            "      --workers N          threads for bulk copies and reductions, the event loop's\n"
            "                           counted (default 0: one per CPU; 1: the loop alone)\n"
            "  -f, --foreground         stay in the foreground (mlxd never daemonizes; accepted for scripts)\n"
            "  -h, --help               show this help\n"
            "  -V, --version            show the version\n"
            "\n"
            "Start several under mpirun to span hosts: mpirun -n 2 mlxd --socket ipc:///tmp/mlxd-%%r.sock\n",
            WIRE_MAX_IPC_PATH);
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
        return -EINVAL;
    *ret = v;
    return 0;
}

// The options that set a number in struct config, one row each: their
// getopt value is OPT_NUMBER + the row.
enum num_kind {
    NUM_SECONDS,                    // a uint32_t of milliseconds, given in seconds
    NUM_COUNT,                      // a uint32_t from 1 to 2^20
    NUM_BYTES,                      // a uint64_t from 1 to 2^40
    NUM_THREADS,                    // an unsigned from 0 to 256
};

static const struct num_opt {
    const char *name;
    enum num_kind kind;
    size_t offset;                  // in struct config
} num_opts[] = {
    { "op-timeout", NUM_SECONDS, offsetof(struct config, op_timeout_ms) },
    { "max-mpi-stall", NUM_SECONDS, offsetof(struct config, mpi_stall_ms) },
    { "heartbeat-timeout", NUM_SECONDS, offsetof(struct config, heartbeat_timeout_ms) },
    { "max-clients", NUM_COUNT, offsetof(struct config, max_clients) },
    { "max-jobs", NUM_COUNT, offsetof(struct config, max_jobs) },
    { "max-groups-per-client", NUM_COUNT, offsetof(struct config, max_groups_per_client) },
    { "max-inflight-per-client", NUM_COUNT, offsetof(struct config, max_inflight_per_client) },
    { "max-tensor-bytes", NUM_BYTES, offsetof(struct config, max_tensor_bytes) },
    { "max-queued-bytes", NUM_BYTES, offsetof(struct config, max_queued_bytes) },
    { "max-shm-bytes", NUM_BYTES, offsetof(struct config, max_shm_bytes) },
    { "workers", NUM_THREADS, offsetof(struct config, workers) },
};

#define N_NUM_OPTS (sizeof num_opts / sizeof num_opts[0])

enum { OPT_METRICS = 256, OPT_NUMBER };

// Sets the number option o from arg, or says why not.
static int set_number(const struct num_opt *o, const char *arg, struct config *cfg) {
    void *field = (char *) cfg + o->offset;
    uint64_t v;
    switch (o->kind) {
    case NUM_SECONDS: {
        char *end;
        double secs = strtod(arg, &end);
        if (end == arg || *end || !(secs > 0) || secs > 86400 * 7) {
            fprintf(stderr, "mlxd: --%s takes seconds, more than 0 (got '%s')\n", o->name, arg);
            return -EINVAL;
        }
        *(uint32_t *) field = (uint32_t) (secs * 1000 + 0.5);
        return 0;
    }
    case NUM_COUNT:
        if (parse_u64(arg, 1, 1u << 20, &v) < 0) {
            fprintf(stderr, "mlxd: --%s takes a number from 1 to %u\n", o->name, 1u << 20);
            return -EINVAL;
        }
        *(uint32_t *) field = (uint32_t) v;
        return 0;
    case NUM_BYTES:
        if (parse_u64(arg, 1, UINT64_C(1) << 40, &v) < 0) {
            fprintf(stderr, "mlxd: --%s takes a number of bytes from 1 to 2^40\n", o->name);
            return -EINVAL;
        }
        *(uint64_t *) field = v;
        return 0;
    case NUM_THREADS:
        if (parse_u64(arg, 0, 256, &v) < 0) {
            fprintf(stderr, "mlxd: --%s takes a number of threads from 0 (one per CPU) to 256\n", o->name);
            return -EINVAL;
        }
        *(unsigned *) field = (unsigned) v;
        return 0;
    }
    return -EINVAL;
}

// One option that takes an argument and is not a number.
static int set_other(int c, const char *arg, struct config *cfg) {
    struct sockaddr_storage sa;
    char err[512];
    switch (c) {
    case 's':
        if (snprintf(cfg->endpoint, sizeof cfg->endpoint, "%s", arg) >= (int) sizeof cfg->endpoint) {
            fprintf(stderr, "mlxd: the endpoint %s is too long (an ipc path may have %d bytes at most)\n", arg,
                    WIRE_MAX_IPC_PATH);
            return -EINVAL;
        }
        cfg->endpoint_given = true;
        return 0;
    case 'l':
        cfg->log_level = log_level_from_name(arg);
        if (cfg->log_level < 0) {
            fprintf(stderr, "mlxd: unknown log level '%s' (error, warning, notice, info, debug)\n", arg);
            return -EINVAL;
        }
        return 0;
    case OPT_METRICS:
        if (strlen(arg) >= sizeof cfg->metrics_addr || http_parse_addr(arg, &sa, err, sizeof err) < 0) {
            fprintf(stderr, "mlxd: --metrics takes HOST:PORT, e.g. 127.0.0.1:9464: %s\n",
                    strlen(arg) >= sizeof cfg->metrics_addr ? "too long" : err);
            return -EINVAL;
        }
        snprintf(cfg->metrics_addr, sizeof cfg->metrics_addr, "%s", arg);
        return 0;
    }
    fprintf(stderr, "Try 'mlxd --help'.\n");
    return -EINVAL;
}

static int parse_args(int argc, char **argv, struct config *cfg) {
    static const struct option fixed[] = {
        { "socket", required_argument, NULL, 's' },
        { "log-level", required_argument, NULL, 'l' },
        { "metrics", required_argument, NULL, OPT_METRICS },
        { "foreground", no_argument, NULL, 'f' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
    };
    struct option opts[sizeof fixed / sizeof fixed[0] + N_NUM_OPTS + 1] = { 0 };
    size_t n = 0;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        opts[n++] = fixed[i];
    for (size_t i = 0; i < N_NUM_OPTS; i++)
        opts[n++] = (struct option) { num_opts[i].name, required_argument, NULL, OPT_NUMBER + (int) i };
    int c, r = 0;
    while (r == 0 && (c = getopt_long(argc, argv, "s:l:t:fhV", opts, NULL)) != -1) {
        if (c == 't')
            c = OPT_NUMBER;         // -t is --op-timeout, the table's first row
        if (c >= OPT_NUMBER && c < OPT_NUMBER + (int) N_NUM_OPTS) {
            r = set_number(&num_opts[c - OPT_NUMBER], optarg, cfg);
        } else if (c == 'h') {
            usage(stdout);
            exit(EXIT_SUCCESS);
        } else if (c == 'V') {
            printf("mlxd %s (protocol %d)\n", MLXD_VERSION_STRING, MLXD_PROTOCOL_VERSION);
            exit(EXIT_SUCCESS);
        } else if (c != 'f') {
            r = set_other(c, optarg, cfg);
        }
    }
    if (r == 0 && optind < argc) {
        fprintf(stderr, "mlxd: unexpected argument '%s'\nTry 'mlxd --help'.\n", argv[optind]);
        r = -EINVAL;
    }
    return r;
}

#if defined(__SANITIZE_ADDRESS__)
/* Sanitizer builds only. Open MPI keeps memory until exit in itself and in
 * its plugins; the leak checker stays on for mlxd's own memory, however the
 * daemon was started (mpirun, systemd-socket-activate: environments we do
 * not control). Stacks must be unwound fully to reach those libraries. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
    return "leak:libmpi.so\nleak:libopen-pal.so\nleak:libopen-rte.so\nleak:libhwloc.so\n"
           "leak:libpmix.so\nleak:libevent\nleak:mca_\n";
}
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
    return "fast_unwind_on_malloc=0";
}
#endif

/* Tensors pass through the daemon's heap at every size (inline frames,
 * results, cross-host buffers). glibc raises its mmap threshold to the largest block freed
 * so far (up to 32 MiB): after the first large tensor, such blocks come from
 * the arenas and their memory stays there, fragmented. In a soak of jobs with
 * tensors up to 4 MiB, RssAnon rose from 5 MB to 45 MB within 3 minutes and
 * stayed there. A fixed threshold turns the sliding one off: blocks this
 * large get mappings of their own, given back when freed (and the heap's
 * top is trimmed past the default 128 KiB again). */
#define MLXD_MMAP_THRESHOLD (256 << 10)

static void malloc_setup(void) {
#ifdef M_MMAP_THRESHOLD
    (void) mallopt(M_MMAP_THRESHOLD, MLXD_MMAP_THRESHOLD); // sanitizers' allocators ignore it
#endif
}

int main(int argc, char **argv) {
    struct config cfg = {
        .log_level = LOG_INFO,
        .op_timeout_ms = WIRE_DEFAULT_TIMEOUT_MS,
        .max_clients = 1024,
        .max_jobs = 256,
        .max_groups_per_client = 64,
        .max_inflight_per_client = 64,
        .max_tensor_bytes = UINT64_C(4) << 30,
        .max_queued_bytes = UINT64_C(1) << 30,
        .max_shm_bytes = UINT64_C(16) << 30,
        .max_group_size = 65536,
    };
    struct server s;
    int r;

    malloc_setup();
    setvbuf(stderr, NULL, _IOLBF, 0);
    if (parse_args(argc, argv, &cfg) < 0)
        return 2;
    log_setup(cfg.log_level);
    if (!cfg.endpoint_given && wire_default_endpoint(cfg.endpoint, sizeof cfg.endpoint) < 0) {
        log_error("The default endpoint is too long; give one with --socket");
        return 1;
    }
    r = server_init(&s, &cfg);
    if (r == 0)
        r = loop_run(&s);
    server_fini(&s);
    if (r == 0)
        log_notice("Stopped");
    return r < 0 ? 1 : 0;
}
