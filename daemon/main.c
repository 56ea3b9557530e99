/* mlxd: the daemon. Parses its options, builds the server and runs its loop. */
#include <errno.h>
#include <getopt.h>
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

static int parse_args(int argc, char **argv, struct config *cfg) {
    enum { OPT_MAX_CLIENTS = 256, OPT_MAX_JOBS, OPT_MAX_TENSOR, OPT_MAX_QUEUED, OPT_MAX_SHM, OPT_MAX_GROUPS,
           OPT_MAX_INFLIGHT, OPT_METRICS, OPT_MAX_MPI_STALL, OPT_WORKERS,
           OPT_HEARTBEAT_TIMEOUT };
    static const struct option opts[] = {
        { "socket", required_argument, NULL, 's' },
        { "log-level", required_argument, NULL, 'l' },
        { "op-timeout", required_argument, NULL, 't' },
        { "max-clients", required_argument, NULL, OPT_MAX_CLIENTS },
        { "max-jobs", required_argument, NULL, OPT_MAX_JOBS },
        { "max-tensor-bytes", required_argument, NULL, OPT_MAX_TENSOR },
        { "max-queued-bytes", required_argument, NULL, OPT_MAX_QUEUED },
        { "max-shm-bytes", required_argument, NULL, OPT_MAX_SHM },
        { "max-groups-per-client", required_argument, NULL, OPT_MAX_GROUPS },
        { "max-inflight-per-client", required_argument, NULL, OPT_MAX_INFLIGHT },
        { "max-mpi-stall", required_argument, NULL, OPT_MAX_MPI_STALL },
        { "metrics", required_argument, NULL, OPT_METRICS },
        { "workers", required_argument, NULL, OPT_WORKERS },
        { "heartbeat-timeout", required_argument, NULL, OPT_HEARTBEAT_TIMEOUT },
        { "foreground", no_argument, NULL, 'f' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        {},
    };
    uint64_t v;
    int c;
    while ((c = getopt_long(argc, argv, "s:l:t:fhV", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            if (snprintf(cfg->endpoint, sizeof cfg->endpoint, "%s", optarg) >= (int) sizeof cfg->endpoint) {
                fprintf(stderr, "mlxd: the endpoint %s is too long (an ipc path may have %d bytes at most)\n",
                        optarg, WIRE_MAX_IPC_PATH);
                return -EINVAL;
            }
            cfg->endpoint_given = true;
            break;
        case 'l':
            cfg->log_level = log_level_from_name(optarg);
            if (cfg->log_level < 0) {
                fprintf(stderr, "mlxd: unknown log level '%s' (error, warning, notice, info, debug)\n", optarg);
                return -EINVAL;
            }
            break;
        case 't':
        case OPT_MAX_MPI_STALL:
        case OPT_HEARTBEAT_TIMEOUT: {
            char *end;
            double secs = strtod(optarg, &end);
            const char *name = c == 't' ? "op-timeout" : c == OPT_MAX_MPI_STALL ? "max-mpi-stall" : "heartbeat-timeout";
            if (end == optarg || *end || !(secs > 0) || secs > 86400 * 7) {
                fprintf(stderr, "mlxd: --%s takes seconds, more than 0 (got '%s')\n", name, optarg);
                return -EINVAL;
            }
            *(c == 't' ? &cfg->op_timeout_ms : c == OPT_MAX_MPI_STALL ? &cfg->mpi_stall_ms
                                                                     : &cfg->heartbeat_timeout_ms) =
                (uint32_t) (secs * 1000 + 0.5);
            break;
        }
        case OPT_MAX_CLIENTS:
        case OPT_MAX_JOBS:
        case OPT_MAX_GROUPS:
        case OPT_MAX_INFLIGHT:
            if (parse_u64(optarg, 1, 1u << 20, &v) < 0) {
                fprintf(stderr, "mlxd: --%s takes a number from 1 to %u\n", opts[c - OPT_MAX_CLIENTS + 3].name, 1u << 20);
                return -EINVAL;
            }
            if (c == OPT_MAX_CLIENTS)
                cfg->max_clients = (uint32_t) v;
            else if (c == OPT_MAX_JOBS)
                cfg->max_jobs = (uint32_t) v;
            else if (c == OPT_MAX_GROUPS)
                cfg->max_groups_per_client = (uint32_t) v;
            else
                cfg->max_inflight_per_client = (uint32_t) v;
            break;
        case OPT_MAX_TENSOR:
        case OPT_MAX_QUEUED:
        case OPT_MAX_SHM:
            if (parse_u64(optarg, 1, UINT64_C(1) << 40, &v) < 0) {
                fprintf(stderr, "mlxd: --%s takes a number of bytes from 1 to 2^40\n", opts[c - OPT_MAX_CLIENTS + 3].name);
                return -EINVAL;
            }
            if (c == OPT_MAX_TENSOR)
                cfg->max_tensor_bytes = v;
            else if (c == OPT_MAX_QUEUED)
                cfg->max_queued_bytes = v;
            else
                cfg->max_shm_bytes = v;
            break;
        case OPT_METRICS: {
            struct sockaddr_storage sa;
            char err[512];
            if (strlen(optarg) >= sizeof cfg->metrics_addr || http_parse_addr(optarg, &sa, err, sizeof err) < 0) {
                fprintf(stderr, "mlxd: --metrics takes HOST:PORT, e.g. 127.0.0.1:9464: %s\n",
                        strlen(optarg) >= sizeof cfg->metrics_addr ? "too long" : err);
                return -EINVAL;
            }
            snprintf(cfg->metrics_addr, sizeof cfg->metrics_addr, "%s", optarg);
            break;
        }
        case OPT_WORKERS:
            if (parse_u64(optarg, 0, 256, &v) < 0) {
                fprintf(stderr, "mlxd: --workers takes a number of threads from 0 (one per CPU) to 256\n");
                return -EINVAL;
            }
            cfg->workers = (unsigned) v;
            break;
        case 'f':
            break;
        case 'h':
            usage(stdout);
            exit(EXIT_SUCCESS);
        case 'V':
            printf("mlxd %s (protocol %d)\n", MLXD_VERSION_STRING, MLXD_PROTOCOL_VERSION);
            exit(EXIT_SUCCESS);
        default:
            fprintf(stderr, "Try 'mlxd --help'.\n");
            return -EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "mlxd: unexpected argument '%s'\nTry 'mlxd --help'.\n", argv[optind]);
        return -EINVAL;
    }
    return 0;
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
