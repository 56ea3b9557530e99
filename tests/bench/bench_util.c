/* bench_util: options, sizes, timing and output shared by bench_client and
 * bench_mpi. See bench_util.h for the timing method. */
#include "bench_util.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const op_names[BENCH_OP_MAX] = {
    [BENCH_ALL_SUM] = "all_sum",
    [BENCH_ALL_GATHER] = "all_gather",
    [BENCH_SUM_SCATTER] = "sum_scatter",
    [BENCH_SENDRECV] = "sendrecv",
};

const char *bench_op_name(enum bench_op op) {
    return (unsigned) op < BENCH_OP_MAX ? op_names[op] : "invalid";
}

// "8", "64K", "4M", "1G" (binary multiples); 0 on a malformed value.
static size_t parse_bytes(const char *s) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return 0;
    switch (*end) {
    case 'k':
    case 'K':
        v <<= 10;
        end++;
        break;
    case 'm':
    case 'M':
        v <<= 20;
        end++;
        break;
    case 'g':
    case 'G':
        v <<= 30;
        end++;
        break;
    default:
        break;
    }
    if (*end == 'i' || *end == 'B') // accept "KiB" and "MB" as well
        end += strspn(end, "iB");
    return *end ? 0 : (size_t) v;
}

static int cmp_size(const void *a, const void *b) {
    size_t x = *(const size_t *) a, y = *(const size_t *) b;
    return x < y ? -1 : x > y;
}

// The default sweep: max, max/factor, max/factor^2, ... down to min, and
// min itself, so that the sizes the targets name (64 MiB, 256 MiB, 8 B) are
// all measured with the default factor 4.
static int sweep(size_t min, size_t max, size_t factor, struct bench_opts *o) {
    o->n_sizes = 0;
    for (size_t s = max; s >= min && s > 0; s /= factor) {
        if (o->n_sizes == BENCH_MAX_SIZES)
            return -1;
        o->sizes[o->n_sizes++] = s;
    }
    if (o->n_sizes == 0 || o->sizes[o->n_sizes - 1] != min) {
        if (o->n_sizes == BENCH_MAX_SIZES)
            return -1;
        o->sizes[o->n_sizes++] = min;
    }
    qsort(o->sizes, (size_t) o->n_sizes, sizeof o->sizes[0], cmp_size);
    return 0;
}

static void usage(const char *prog, FILE *f) {
    fprintf(f,
            "Usage: %s [--ops LIST] [--sizes LIST | --min B --max B --factor F]\n"
            "          [--iters K] [--iters-large K] [--warmup W]%s\n"
            "  --ops LIST       all_sum,all_gather,sum_scatter,sendrecv (default: all)\n"
            "  --sizes LIST     sizes in bytes, K/M/G allowed (default: 8 B, then 16 B\n"
            "                   to 256 MiB in steps of 4)\n"
            "  --iters K        timed iterations per size up to 8 MiB (default 20)\n"
            "  --iters-large K  timed iterations above 8 MiB (default 8)\n"
            "  --warmup W       untimed iterations first (default 3)\n"
            "  --list           print the sizes, one per line, and exit\n"
            "Prints one 'result' line per op and size (rank 0).\n",
            prog, strcmp(prog, "bench_client") == 0 ? " [--heap]" : "");
}

int bench_parse_args(const char *prog, int argc, char **argv, struct bench_opts *ret, int *ret_exit) {
    enum {
        OPT_OPS = 256,
        OPT_SIZES,
        OPT_MIN,
        OPT_MAX,
        OPT_FACTOR,
        OPT_ITERS,
        OPT_ITERS_LARGE,
        OPT_WARMUP,
        OPT_HEAP,
        OPT_LIST
    };
    static const struct option longopts[] = {
        {"ops", required_argument, NULL, OPT_OPS},
        {"sizes", required_argument, NULL, OPT_SIZES},
        {"min", required_argument, NULL, OPT_MIN},
        {"max", required_argument, NULL, OPT_MAX},
        {"factor", required_argument, NULL, OPT_FACTOR},
        {"iters", required_argument, NULL, OPT_ITERS},
        {"iters-large", required_argument, NULL, OPT_ITERS_LARGE},
        {"warmup", required_argument, NULL, OPT_WARMUP},
        {"heap", no_argument, NULL, OPT_HEAP},
        {"list", no_argument, NULL, OPT_LIST},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct bench_opts o = {.iters = 20, .iters_large = 8, .warmup = 3};
    size_t min = 8, max = (size_t) 256 << 20, factor = 4;
    const char *sizes = NULL, *ops = NULL;
    int c;

    *ret_exit = 2;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_OPS:
            ops = optarg;
            break;
        case OPT_SIZES:
            sizes = optarg;
            break;
        case OPT_MIN:
            min = parse_bytes(optarg);
            break;
        case OPT_MAX:
            max = parse_bytes(optarg);
            break;
        case OPT_FACTOR:
            factor = (size_t) atoi(optarg);
            break;
        case OPT_ITERS:
            o.iters = atoi(optarg);
            break;
        case OPT_ITERS_LARGE:
            o.iters_large = atoi(optarg);
            break;
        case OPT_WARMUP:
            o.warmup = atoi(optarg);
            break;
        case OPT_HEAP:
            if (strcmp(prog, "bench_client") != 0)
                goto bad;
            o.heap = true;
            break;
        case OPT_LIST:
            o.list = true;
            break;
        case 'h':
            usage(prog, stdout);
            *ret_exit = 0;
            return -1;
        default:
            goto bad;
        }
    }
    if (optind != argc || o.iters < 1 || o.iters_large < 1 || o.warmup < 0) {
        fprintf(stderr, "%s: bad arguments (iterations must be >= 1, warm-up >= 0)\n", prog);
        goto bad;
    }

    if (!ops) {
        for (int i = 0; i < BENCH_OP_MAX; i++)
            o.ops[i] = true;
    } else {
        char *copy = strdup(ops), *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            int i;
            for (i = 0; i < BENCH_OP_MAX && strcmp(t, op_names[i]) != 0; i++)
                ;
            if (i == BENCH_OP_MAX) {
                fprintf(stderr, "%s: unknown op '%s'\n", prog, t);
                free(copy);
                goto bad;
            }
            o.ops[i] = true;
        }
        free(copy);
    }

    if (sizes) {
        char *copy = strdup(sizes), *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            size_t v = parse_bytes(t);
            if (v == 0 || o.n_sizes == BENCH_MAX_SIZES) {
                fprintf(stderr, "%s: bad size '%s' (or more than %d sizes)\n", prog, t, BENCH_MAX_SIZES);
                free(copy);
                goto bad;
            }
            o.sizes[o.n_sizes++] = v;
        }
        free(copy);
        if (o.n_sizes == 0)
            goto bad;
    } else if (min == 0 || max < min || factor < 2 || sweep(min, max, factor, &o) < 0) {
        fprintf(stderr, "%s: bad --min/--max/--factor\n", prog);
        goto bad;
    }
    *ret_exit = 0;
    if (o.list) {
        for (int i = 0; i < o.n_sizes; i++)
            printf("%zu\n", o.sizes[i]);
        return -1;
    }
    *ret = o;
    return 0;
bad:
    usage(prog, stderr);
    return -1;
}

struct bench_shape bench_shape_of(enum bench_op op, size_t nominal, int size) {
    struct bench_shape s;
    size_t n = nominal / sizeof(float), per;
    switch (op) {
    case BENCH_ALL_GATHER:
        per = n / (size_t) size ? n / (size_t) size : 1;
        s.x_count = per;
        s.out_count = per * (size_t) size;
        s.bytes = s.out_count * sizeof(float);
        break;
    case BENCH_SUM_SCATTER:
        per = n / (size_t) size ? n / (size_t) size : 1;
        s.x_count = per * (size_t) size;
        s.out_count = per;
        s.bytes = s.x_count * sizeof(float);
        break;
    default:
        s.x_count = s.out_count = n ? n : 1;
        s.bytes = s.x_count * sizeof(float);
        break;
    }
    return s;
}

int bench_iters(const struct bench_opts *o, size_t bytes) {
    return bytes > BENCH_LARGE_BYTES ? o->iters_large : o->iters;
}

double bench_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1e6 + (double) ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

void bench_stats(double *v, int n, double *ret_median, double *ret_min) {
    qsort(v, (size_t) n, sizeof *v, cmp_double);
    *ret_median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    *ret_min = v[0];
}

void bench_print_result(const char *impl, enum bench_op op, size_t bytes, int ranks, int iters, double median_us,
                        double min_us) {
    printf("result impl=%s op=%s bytes=%zu ranks=%d iters=%d median_us=%.3f min_us=%.3f\n", impl, bench_op_name(op),
           bytes, ranks, iters, median_us, min_us);
    fflush(stdout);
}

void bench_fill(float *p, size_t n, float v) {
    for (size_t i = 0; i < n; i++)
        p[i] = v;
}

int bench_check(enum bench_op op, int rank, int size, const float *out, size_t out_count, size_t x_count) {
    const size_t idx[] = {0, out_count / 2, out_count - 1};
    const int half = size / 2;
    const float total = (float) size * (float) (size + 1) / 2;
    if (op == BENCH_SENDRECV && rank >= 2 * half)
        return 0;
    for (size_t k = 0; k < sizeof idx / sizeof idx[0]; k++) {
        size_t i = idx[k];
        float want = op == BENCH_ALL_GATHER ? (float) (i / x_count + 1)
                     : op == BENCH_SENDRECV ? (float) (rank % half + 1)
                                            : total;
        if (out[i] != want) {
            fprintf(stderr, "rank %d: %s of %zu elements: out[%zu] = %g, expected %g\n", rank, bench_op_name(op),
                    out_count, i, (double) out[i], (double) want);
            return -1;
        }
    }
    return 0;
}
