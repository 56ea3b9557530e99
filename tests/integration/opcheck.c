/* opcheck: runs every collective of libmlxd on every dtype and a range of
 * shapes against a real daemon, and checks every element of every result
 * against a value computed locally.
 *
 * Run it as every rank of a job (mlxctl launch -n N -- opcheck). The data of
 * rank r is a pure function of (r, op, dtype, shape), so each rank can compute
 * what every other rank contributed. Float data are small integers so that
 * sums are exact in any order; float16, bfloat16 and complex64 results are
 * compared bit for bit; integer data include extremes so that sums wrap.
 *
 * Prints one line per mismatching element (at most a few per case), a summary
 * line per rank, and exits 0 only when everything matched. An op that returns
 * an error ends the run at once (the group's op sequence is no longer known to
 * be in step), with exit status 1.
 *
 *   opcheck [--quick] [--only OP] [--no-split] [--no-shm]
 *   opcheck --large MiB [--shm] [--int 1|4|8]
 *       (--int: uint8, int32 or int64 values whose sums overflow and wrap,
 *       checked exactly)
 *
 * OP is one of all_sum all_max all_min all_gather sum_scatter sendrecv
 * barrier split. With MLXT_DIR set (the harness sets it), barrier is checked
 * by files every member writes before it and must all see after it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mlxd/mlxd.h"

#define GUARD 64             // bytes after every output buffer that must stay untouched
#define GUARD_BYTE 0xA5
#define FILL_BYTE 0x5A       // what output buffers hold before a call
#define MAX_REPORTS 6        // mismatching elements printed per case
#define BIG_BYTES (2u << 20) // the "few MiB" tensor

enum red { RED_SUM, RED_MAX, RED_MIN };

enum op_sel {
    SEL_ALL_SUM = 1 << 0,
    SEL_ALL_MAX = 1 << 1,
    SEL_ALL_MIN = 1 << 2,
    SEL_ALL_GATHER = 1 << 3,
    SEL_SUM_SCATTER = 1 << 4,
    SEL_SENDRECV = 1 << 5,
    SEL_BARRIER = 1 << 6,
    SEL_SPLIT = 1 << 7,
    SEL_ALL = (1 << 8) - 1,
};

static const struct {
    const char *name;
    unsigned sel;
} op_names[] = {
    { "all_sum", SEL_ALL_SUM },         { "all_max", SEL_ALL_MAX },
    { "all_min", SEL_ALL_MIN },         { "all_gather", SEL_ALL_GATHER },
    { "sum_scatter", SEL_SUM_SCATTER }, { "sendrecv", SEL_SENDRECV },
    { "barrier", SEL_BARRIER },         { "split", SEL_SPLIT },
};

struct shape_case {
    const char *name;
    int ndim;
    int64_t shape[MLXD_MAX_NDIM]; // "big": shape[0] is computed from BIG_BYTES
    bool big;
    bool quick;                   // part of --quick
    bool shm;                     // also run with mlxd_alloc memory
};

static const struct shape_case shapes[] = {
    { "scalar", 0, { 0 }, false, true, false },
    { "1d", 1, { 7 }, false, true, false },
    { "3d", 3, { 2, 3, 5 }, false, true, true },
    { "8d", 8, { 2, 1, 3, 1, 2, 1, 2, 2 }, false, false, false },
    { "empty", 2, { 0, 4 }, false, true, false },
    { "empty_inner", 3, { 2, 0, 3 }, false, false, true },
    { "big", 2, { 0, 256 }, true, false, true },
};

// One run of the program: options and counters.
struct run {
    unsigned ops;
    bool quick, split, shm, shm_large;
    long large_mib;
    size_t large_int;             // --large with --int BYTES: unsigned sums that wrap, else float32
    const char *dir, *job;
    int world_rank;
    long checks, failures;
};

// A group under test and what this process knows about it.
struct grp {
    mlxd_group *g;
    const char *label;
    int rank, size;
    uint64_t salt;
    bool big;                     // run the big shape on it
};

// One (group, op, dtype, shape, variant) case, for messages.
struct where {
    const struct grp *G;
    const char *op, *variant;
    mlxd_dtype t;
    int ndim;
    const int64_t *shape;
};

/* ---------- data ---------- */

static uint64_t mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15u;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9u;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBu;
    return x ^ (x >> 31);
}

// The data of one case: a function of the group, dtype, shape and memory kind.
static uint64_t salt_of(uint64_t base, mlxd_dtype t, int shape_idx, int k) {
    return mix(base ^ ((uint64_t) t << 32) ^ ((uint64_t) shape_idx << 16) ^ (uint64_t) k);
}

// float16 and bfloat16 of a small integer, written independently of the
// daemon's conversions: sign, exponent of the leading bit, the rest as mantissa.
static uint16_t f16_from_int(int n) {
    if (n == 0)
        return 0;
    uint16_t s = n < 0 ? 0x8000 : 0;
    unsigned a = (unsigned) (n < 0 ? -n : n);
    int e = 31 - __builtin_clz(a); // a < 2048
    return (uint16_t) (s | (unsigned) (e + 15) << 10 | ((a << (10 - e)) & 0x3ffu));
}

static uint16_t bf16_from_int(int n) {
    if (n == 0)
        return 0;
    uint16_t s = n < 0 ? 0x8000 : 0;
    unsigned a = (unsigned) (n < 0 ? -n : n);
    int e = 31 - __builtin_clz(a); // a < 256
    return (uint16_t) (s | (unsigned) (e + 127) << 7 | ((a << (7 - e)) & 0x7fu));
}

static double f16_to_double(uint16_t h) {
    uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff, u;
    float f;
    if (e == 0) {
        f = (float) m / 16777216.0f; // subnormal: m * 2^-24
        return h & 0x8000 ? -f : f;
    }
    if (e == 31)
        u = 0x7f800000u | m << 13; // inf, nan
    else
        u = (e - 15 + 127) << 23 | m << 13;
    u |= (uint32_t) (h & 0x8000) << 16;
    memcpy(&f, &u, 4);
    return f;
}

static double bf16_to_double(uint16_t b) {
    uint32_t u = (uint32_t) b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint64_t load_u(const uint8_t *p, size_t sz) {
    uint8_t a;
    uint16_t b;
    uint32_t c;
    uint64_t d;
    switch (sz) {
    case 1: memcpy(&a, p, 1); return a;
    case 2: memcpy(&b, p, 2); return b;
    case 4: memcpy(&c, p, 4); return c;
    default: memcpy(&d, p, 8); return d;
    }
}

static int64_t load_s(const uint8_t *p, size_t sz) {
    uint64_t u = load_u(p, sz);
    unsigned sh = (unsigned) (64 - 8 * sz);
    return (int64_t) (u << sh) >> sh;
}

static void store_u(uint8_t *p, size_t sz, uint64_t v) {
    uint8_t a = (uint8_t) v;
    uint16_t b = (uint16_t) v;
    uint32_t c = (uint32_t) v;
    switch (sz) {
    case 1: memcpy(p, &a, 1); break;
    case 2: memcpy(p, &b, 2); break;
    case 4: memcpy(p, &c, 4); break;
    default: memcpy(p, &v, 8); break;
    }
}

static bool is_unsigned(mlxd_dtype t) {
    return t == MLXD_UINT8 || t == MLXD_UINT16 || t == MLXD_UINT32 || t == MLXD_UINT64;
}

static bool is_signed(mlxd_dtype t) {
    return t == MLXD_INT8 || t == MLXD_INT16 || t == MLXD_INT32 || t == MLXD_INT64;
}

// One element of rank-specific data from hash h.
static void gen_elem(mlxd_dtype t, size_t sz, uint64_t h, uint8_t *p) {
    int small = (int) ((h >> 8) % 17) - 8;
    if (is_unsigned(t) || is_signed(t)) {
        uint64_t bits = 8 * sz, ones = bits == 64 ? ~0ull : (1ull << bits) - 1, v;
        switch (h % 8) {
        case 0: v = is_signed(t) ? ones >> 1 : ones; break;              // type max
        case 1: v = is_signed(t) ? (ones >> 1) + 1 : 0; break;           // type min
        case 2: v = (uint64_t) (int64_t) small; break;                   // small, maybe negative
        default: v = h >> 3; break;                                      // anything
        }
        store_u(p, sz, v);
        return;
    }
    switch (t) {
    case MLXD_BOOL: p[0] = (uint8_t) ((h >> 7) & 1); break;
    case MLXD_FLOAT16: store_u(p, 2, f16_from_int(small)); break;
    case MLXD_BFLOAT16: store_u(p, 2, bf16_from_int(small)); break;
    case MLXD_FLOAT32: { float f = (float) small; memcpy(p, &f, 4); break; }
    case MLXD_FLOAT64: { double d = small; memcpy(p, &d, 8); break; }
    case MLXD_COMPLEX64: {
        // Real parts in {-1, 0, 1}, so max/min often tie on them and must
        // decide on the imaginary part.
        float c[2] = { (float) ((int) ((h >> 20) % 3) - 1), (float) small };
        memcpy(p, c, 8);
        break;
    }
    default: break;
    }
}

// Rank r's n elements of data for this salt.
static void gen(mlxd_dtype t, uint64_t salt, int rank, uint64_t n, uint8_t *p) {
    size_t sz = mlxd_dtype_size(t);
    uint64_t base = mix(salt * 131u + (uint64_t) rank);
    for (uint64_t i = 0; i < n; i++)
        gen_elem(t, sz, mix(base ^ i), p + i * sz);
}

// acc = acc (op) v for one element.
static void reduce_elem(mlxd_dtype t, size_t sz, enum red op, uint8_t *acc, const uint8_t *v) {
    if (is_unsigned(t) || is_signed(t)) {
        uint64_t r;
        if (op == RED_SUM)
            r = load_u(acc, sz) + load_u(v, sz);
        else if (is_signed(t)) {
            int64_t a = load_s(acc, sz), b = load_s(v, sz);
            r = (uint64_t) (op == RED_MAX ? (a > b ? a : b) : (a < b ? a : b));
        } else {
            uint64_t a = load_u(acc, sz), b = load_u(v, sz);
            r = op == RED_MAX ? (a > b ? a : b) : (a < b ? a : b);
        }
        store_u(acc, sz, r);
        return;
    }
    switch (t) {
    case MLXD_BOOL: {
        bool a = acc[0] != 0, b = v[0] != 0;
        acc[0] = op == RED_MIN ? (a && b) : (a || b);
        break;
    }
    case MLXD_FLOAT16:
    case MLXD_BFLOAT16: {
        uint16_t ha = (uint16_t) load_u(acc, 2), hb = (uint16_t) load_u(v, 2);
        double a = t == MLXD_FLOAT16 ? f16_to_double(ha) : bf16_to_double(ha);
        double b = t == MLXD_FLOAT16 ? f16_to_double(hb) : bf16_to_double(hb);
        uint16_t r;
        if (op == RED_SUM) {
            int s = (int) (a + b); // small integers: exact
            r = t == MLXD_FLOAT16 ? f16_from_int(s) : bf16_from_int(s);
        } else
            r = (op == RED_MAX ? b > a : b < a) ? hb : ha;
        store_u(acc, 2, r);
        break;
    }
    case MLXD_FLOAT32: {
        float a, b;
        memcpy(&a, acc, 4);
        memcpy(&b, v, 4);
        float r = op == RED_SUM ? a + b : op == RED_MAX ? (b > a ? b : a) : (b < a ? b : a);
        memcpy(acc, &r, 4);
        break;
    }
    case MLXD_FLOAT64: {
        double a, b;
        memcpy(&a, acc, 8);
        memcpy(&b, v, 8);
        double r = op == RED_SUM ? a + b : op == RED_MAX ? (b > a ? b : a) : (b < a ? b : a);
        memcpy(acc, &r, 8);
        break;
    }
    case MLXD_COMPLEX64: {
        float a[2], b[2];
        memcpy(a, acc, 8);
        memcpy(b, v, 8);
        if (op == RED_SUM) {
            a[0] += b[0];
            a[1] += b[1];
            memcpy(acc, a, 8);
        } else {
            bool b_greater = b[0] > a[0] || (b[0] == a[0] && b[1] > a[1]);
            bool b_less = b[0] < a[0] || (b[0] == a[0] && b[1] < a[1]);
            if (op == RED_MAX ? b_greater : b_less)
                memcpy(acc, b, 8);
        }
        break;
    }
    default: break;
    }
}

// exp = the reduction over ranks of in[r] (n elements each, laid out one
// rank after the other).
static void reduce_all(mlxd_dtype t, enum red op, const uint8_t *in, int size, uint64_t n, uint8_t *exp) {
    size_t sz = mlxd_dtype_size(t), nb = n * sz;
    memcpy(exp, in, nb);
    for (int r = 1; r < size; r++)
        for (uint64_t i = 0; i < n; i++)
            reduce_elem(t, sz, op, exp + i * sz, in + (size_t) r * nb + i * sz);
}

/* ---------- reporting ---------- */

static void fmt_shape(char *buf, size_t len, int ndim, const int64_t *shape) {
    size_t o = (size_t) snprintf(buf, len, "[");
    for (int i = 0; i < ndim && i < MLXD_MAX_NDIM && o < len; i++)
        o += (size_t) snprintf(buf + o, len - o, "%s%" PRId64, i ? "," : "", shape[i]);
    if (o < len)
        snprintf(buf + o, len - o, "]");
}

static void fmt_elem(char *buf, size_t len, mlxd_dtype t, const uint8_t *p) {
    size_t sz = mlxd_dtype_size(t);
    char hex[24];
    uint64_t u = load_u(p, sz > 8 ? 8 : sz);
    snprintf(hex, sizeof hex, "0x%0*" PRIx64, (int) (2 * sz), u);
    switch (t) {
    case MLXD_FLOAT16: snprintf(buf, len, "%s (%g)", hex, f16_to_double((uint16_t) u)); break;
    case MLXD_BFLOAT16: snprintf(buf, len, "%s (%g)", hex, bf16_to_double((uint16_t) u)); break;
    case MLXD_FLOAT32: { float f; memcpy(&f, p, 4); snprintf(buf, len, "%g", f); break; }
    case MLXD_FLOAT64: { double d; memcpy(&d, p, 8); snprintf(buf, len, "%g", d); break; }
    case MLXD_COMPLEX64: { float c[2]; memcpy(c, p, 8); snprintf(buf, len, "(%g%+gj)", c[0], c[1]); break; }
    default:
        if (is_signed(t))
            snprintf(buf, len, "%" PRId64 " (%s)", load_s(p, sz), hex);
        else
            snprintf(buf, len, "%" PRIu64 " (%s)", u, hex);
    }
}

static void failf(struct run *R, const struct where *w, const char *fmt, ...) {
    char shp[128], msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fmt_shape(shp, sizeof shp, w->ndim, w->shape);
    printf("FAIL rank %d group=%s(rank %d of %d) op=%s variant=%s dtype=%s shape=%s: %s\n",
           R->world_rank, w->G->label, w->G->rank, w->G->size, w->op, w->variant,
           mlxd_dtype_name(w->t), shp, msg);
    fflush(stdout);
    R->failures++;
}

// An op returned an error: the members may be out of step now, so stop.
static void op_error(struct run *R, const struct where *w, int rc) {
    failf(R, w, "returned %d (%s): %s", rc, mlxd_strerror(rc), mlxd_last_error(w->G->g));
    printf("opcheck rank %d: stopping after an op error: %ld checks, %ld failures\n",
           R->world_rank, R->checks, R->failures);
    exit(1);
}

// Checks an output array: its metadata, every element, and the guard bytes
// after it.
static void check_out(struct run *R, const struct where *w, const mlxd_array *out, int ndim,
                      const int64_t *shape, const uint8_t *exp, uint64_t n) {
    size_t sz = mlxd_dtype_size(w->t);
    R->checks++;
    if (out->dtype != w->t)
        failf(R, w, "out dtype is %d, expected %d", (int) out->dtype, (int) w->t);
    if (out->ndim != ndim)
        failf(R, w, "out ndim is %d, expected %d", out->ndim, ndim);
    else
        for (int i = 0; i < ndim; i++)
            if (out->shape[i] != shape[i]) {
                char a[128], b[128];
                fmt_shape(a, sizeof a, out->ndim, out->shape);
                fmt_shape(b, sizeof b, ndim, shape);
                failf(R, w, "out shape is %s, expected %s", a, b);
                break;
            }
    const uint8_t *got = out->data;
    uint64_t bad = 0;
    for (uint64_t i = memcmp(got, exp, n * sz) == 0 ? n : 0; i < n; i++) {
        if (memcmp(got + i * sz, exp + i * sz, sz) == 0)
            continue;
        if (bad++ < MAX_REPORTS) {
            char g[64], e[64];
            fmt_elem(g, sizeof g, w->t, got + i * sz);
            fmt_elem(e, sizeof e, w->t, exp + i * sz);
            failf(R, w, "element %" PRIu64 ": got %s, expected %s", i, g, e);
        }
    }
    if (bad > MAX_REPORTS)
        failf(R, w, "%" PRIu64 " of %" PRIu64 " elements differ", bad, n);
    for (size_t i = 0; i < GUARD; i++)
        if (got[n * sz + i] != GUARD_BYTE) {
            failf(R, w, "wrote past the end of the output (guard byte %zu)", i);
            break;
        }
}

/* ---------- buffers ---------- */

// n bytes plus the guard, from the heap or from mlxd_alloc, output fill and
// guard set.
static uint8_t *buf_new(struct run *R, const struct grp *G, size_t n, bool shm) {
    uint8_t *p = shm ? mlxd_alloc(G->g, n + GUARD) : malloc(n + GUARD);
    if (!p) {
        printf("FAIL rank %d group=%s: %s of %zu bytes failed: %s\n", R->world_rank, G->label,
               shm ? "mlxd_alloc" : "malloc", n + GUARD, shm ? mlxd_last_error(G->g) : strerror(errno));
        exit(1);
    }
    memset(p, FILL_BYTE, n);
    memset(p + n, GUARD_BYTE, GUARD);
    return p;
}

static void buf_free(const struct grp *G, uint8_t *p, bool shm) {
    if (shm)
        mlxd_free(G->g, p);
    else
        free(p);
}

static void set_garbage_meta(mlxd_array *a) {
    a->dtype = (mlxd_dtype) 77;
    a->ndim = 5;
    for (int i = 0; i < MLXD_MAX_NDIM; i++)
        a->shape[i] = 999;
}

static uint64_t elements(int ndim, const int64_t *shape) {
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (uint64_t) shape[i];
    return n;
}

/* ---------- the ops ---------- */

// The data of one case: every rank's input, laid out one rank after another
// (which is also what all_gather gives), and its reductions, computed once.
struct data {
    mlxd_dtype t;
    int size;
    uint64_t n, salt;
    size_t nb;
    uint8_t *in;
    uint8_t *red[3];
};

static void data_init(struct data *D, const struct grp *G, mlxd_dtype t, uint64_t n, uint64_t salt) {
    *D = (struct data) { .t = t, .size = G->size, .n = n, .salt = salt, .nb = n * mlxd_dtype_size(t) };
    D->in = malloc(D->nb * (size_t) G->size + 1);
    for (int r = 0; r < G->size; r++)
        gen(t, salt, r, n, D->in + (size_t) r * D->nb);
}

static const uint8_t *data_mine(const struct data *D, int rank) {
    return D->in + (size_t) rank * D->nb;
}

static const uint8_t *data_red(struct data *D, enum red op) {
    if (!D->red[op]) {
        D->red[op] = malloc(D->nb + 1);
        reduce_all(D->t, op, D->in, D->size, D->n, D->red[op]);
    }
    return D->red[op];
}

static void data_free(struct data *D) {
    free(D->in);
    for (int i = 0; i < 3; i++)
        free(D->red[i]);
}

typedef int (*reduce_fn)(mlxd_group *, const mlxd_array *, mlxd_array *);

static const struct {
    const char *name;
    unsigned sel;
    enum red red;
    reduce_fn fn;
} reductions[] = {
    { "all_sum", SEL_ALL_SUM, RED_SUM, mlxd_all_sum },
    { "all_max", SEL_ALL_MAX, RED_MAX, mlxd_all_max },
    { "all_min", SEL_ALL_MIN, RED_MIN, mlxd_all_min },
};

// all_sum, all_max, all_min into a separate buffer and in place.
static void check_reductions(struct run *R, const struct grp *G, struct data *D, const struct shape_case *S,
                             const int64_t *shape, bool shm) {
    const char *vnorm = shm ? "shm" : "heap", *vinpl = shm ? "shm_in_place" : "in_place";
    for (size_t k = 0; k < sizeof reductions / sizeof reductions[0]; k++) {
        if (!(R->ops & reductions[k].sel))
            continue;
        struct where w = { G, reductions[k].name, vnorm, D->t, S->ndim, shape };
        const uint8_t *exp = data_red(D, reductions[k].red), *mine = data_mine(D, G->rank);
        uint8_t *xb = buf_new(R, G, D->nb, shm), *ob = buf_new(R, G, D->nb, shm);
        memcpy(xb, mine, D->nb);
        mlxd_array x = { D->t, S->ndim, { 0 }, xb }, out = { D->t, 0, { 0 }, ob };
        memcpy(x.shape, shape, sizeof x.shape);
        set_garbage_meta(&out);
        int rc = reductions[k].fn(G->g, &x, &out);
        if (rc < 0)
            op_error(R, &w, rc);
        check_out(R, &w, &out, S->ndim, shape, exp, D->n);
        R->checks++;
        if (memcmp(xb, mine, D->nb) != 0)
            failf(R, &w, "the input x was modified");

        // In place: out is x.
        w.variant = vinpl;
        rc = reductions[k].fn(G->g, &x, &x);
        if (rc < 0)
            op_error(R, &w, rc);
        check_out(R, &w, &x, S->ndim, shape, exp, D->n);
        buf_free(G, xb, shm);
        buf_free(G, ob, shm);
    }
}

static void check_all_gather(struct run *R, const struct grp *G, struct data *D, const struct shape_case *S,
                             const int64_t *shape, bool shm) {
    struct where w = { G, "all_gather", shm ? "shm" : "heap", D->t, S->ndim, shape };
    int64_t oshape[MLXD_MAX_NDIM];
    int ondim = S->ndim ? S->ndim : 1;
    memcpy(oshape, shape, sizeof oshape);
    oshape[0] = S->ndim ? shape[0] * G->size : G->size;

    uint8_t *xb = buf_new(R, G, D->nb, shm), *ob = buf_new(R, G, D->nb * (size_t) G->size, shm);
    memcpy(xb, data_mine(D, G->rank), D->nb);
    mlxd_array x = { D->t, S->ndim, { 0 }, xb }, out = { D->t, 0, { 0 }, ob };
    memcpy(x.shape, shape, sizeof x.shape);
    set_garbage_meta(&out);
    int rc = mlxd_all_gather(G->g, &x, &out);
    if (rc < 0)
        op_error(R, &w, rc);
    check_out(R, &w, &out, ondim, oshape, D->in, D->n * (uint64_t) G->size);
    buf_free(G, xb, shm);
    buf_free(G, ob, shm);
}

// D holds data of shape[0] * size rows: rank r keeps block r of the sum.
static void check_sum_scatter(struct run *R, const struct grp *G, struct data *D, const struct shape_case *S,
                              const int64_t *ishape, bool shm) {
    int64_t oshape[MLXD_MAX_NDIM];
    memcpy(oshape, ishape, sizeof oshape);
    oshape[0] = ishape[0] / G->size;
    uint64_t m = elements(S->ndim, oshape);
    size_t mb = m * mlxd_dtype_size(D->t);
    struct where w = { G, "sum_scatter", shm ? "shm" : "heap", D->t, S->ndim, ishape };

    uint8_t *xb = buf_new(R, G, D->nb, shm), *ob = buf_new(R, G, mb, shm);
    memcpy(xb, data_mine(D, G->rank), D->nb);
    mlxd_array x = { D->t, S->ndim, { 0 }, xb }, out = { D->t, 0, { 0 }, ob };
    memcpy(x.shape, ishape, sizeof x.shape);
    set_garbage_meta(&out);
    int rc = mlxd_sum_scatter(G->g, &x, &out);
    if (rc < 0)
        op_error(R, &w, rc);
    check_out(R, &w, &out, S->ndim, oshape, data_red(D, RED_SUM) + (size_t) G->rank * mb, m);
    buf_free(G, xb, shm);
    buf_free(G, ob, shm);
}

// A ring: every rank sends two messages to rank+1 (its data A, then other
// data B), then receives two from rank-1, the first with mlxd_recv, the second
// with mlxd_recv_like; they must arrive in the order they were sent.
static void check_sendrecv(struct run *R, const struct grp *G, struct data *D, const struct shape_case *S,
                           const int64_t *shape, bool shm) {
    if (G->size < 2)
        return; // sending to oneself is an error, checked by errcase
    size_t nb = D->nb;
    int next = (G->rank + 1) % G->size, prev = (G->rank + G->size - 1) % G->size;
    uint64_t salt_b = mix(D->salt ^ 0x5e4d);
    struct where w = { G, "send", shm ? "shm" : "heap", D->t, S->ndim, shape };

    uint8_t *a = buf_new(R, G, nb, shm), *b = buf_new(R, G, nb, shm);
    uint8_t *exp_b = malloc(nb + 1), *mine_b = malloc(nb + 1);
    memcpy(a, data_mine(D, G->rank), nb);
    gen(D->t, salt_b, G->rank, D->n, mine_b);
    memcpy(b, mine_b, nb);
    gen(D->t, salt_b, prev, D->n, exp_b);
    mlxd_array xa = { D->t, S->ndim, { 0 }, a }, xb = { D->t, S->ndim, { 0 }, b };
    memcpy(xa.shape, shape, sizeof xa.shape);
    memcpy(xb.shape, shape, sizeof xb.shape);
    int rc = mlxd_send(G->g, &xa, next);
    if (rc < 0)
        op_error(R, &w, rc);
    rc = mlxd_send(G->g, &xb, next);
    if (rc < 0)
        op_error(R, &w, rc);

    uint8_t *o1 = buf_new(R, G, nb, shm), *o2 = buf_new(R, G, nb, shm);
    mlxd_array out1 = { D->t, S->ndim, { 0 }, o1 }, out2 = { D->t, 0, { 0 }, o2 };
    memcpy(out1.shape, shape, sizeof out1.shape);
    w.op = "recv";
    rc = mlxd_recv(G->g, &out1, prev);
    if (rc < 0)
        op_error(R, &w, rc);
    check_out(R, &w, &out1, S->ndim, shape, data_mine(D, prev), D->n);

    w.op = "recv_like";
    set_garbage_meta(&out2);
    rc = mlxd_recv_like(G->g, &xa, &out2, prev);
    if (rc < 0)
        op_error(R, &w, rc);
    check_out(R, &w, &out2, S->ndim, shape, exp_b, D->n);

    // What was sent is still what this rank generated.
    w.op = "send";
    R->checks++;
    if (memcmp(a, data_mine(D, G->rank), nb) != 0 || memcmp(b, mine_b, nb) != 0)
        failf(R, &w, "send modified its input");
    buf_free(G, a, shm);
    buf_free(G, b, shm);
    buf_free(G, o1, shm);
    buf_free(G, o2, shm);
    free(exp_b);
    free(mine_b);
}

// Barrier: each member leaves a file before it, and after it every member's
// file must be there.
static void check_barrier(struct run *R, const struct grp *G) {
    struct where w = { G, "barrier", "files", MLXD_UINT8, 0, NULL };
    for (int round = 0; round < 3; round++) {
        char path[512];
        if (R->dir) {
            snprintf(path, sizeof path, "%s/bar.%s.%s.%d.%d", R->dir, R->job, G->label, round, G->rank);
            int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
            if (fd < 0) {
                failf(R, &w, "cannot create %s: %s", path, strerror(errno));
                exit(1);
            }
            close(fd);
        }
        int rc = mlxd_barrier(G->g);
        if (rc < 0)
            op_error(R, &w, rc);
        R->checks++;
        if (!R->dir)
            continue;
        for (int r = 0; r < G->size; r++) {
            snprintf(path, sizeof path, "%s/bar.%s.%s.%d.%d", R->dir, R->job, G->label, round, r);
            if (access(path, F_OK) != 0)
                failf(R, &w, "round %d: passed the barrier before rank %d arrived", round, r);
        }
    }
}

// Every op, dtype and shape on one group.
static void check_group(struct run *R, const struct grp *G) {
    for (int ti = 0; ti < MLXD_DTYPE_MAX; ti++) {
        mlxd_dtype t = (mlxd_dtype) ti;
        for (int si = 0; si < (int) (sizeof shapes / sizeof shapes[0]); si++) {
            const struct shape_case *S = &shapes[si];
            if ((R->quick && !S->quick) || (S->big && !G->big))
                continue;
            int64_t shape[MLXD_MAX_NDIM];
            memcpy(shape, S->shape, sizeof shape);
            if (S->big)
                shape[0] = (int64_t) (BIG_BYTES / mlxd_dtype_size(t) / (uint64_t) shape[1]);
            for (int shm = 0; shm <= (R->shm && S->shm); shm++) {
                struct data D;
                data_init(&D, G, t, elements(S->ndim, shape), salt_of(G->salt, t, si, shm));
                check_reductions(R, G, &D, S, shape, shm);
                if (R->ops & SEL_ALL_GATHER)
                    check_all_gather(R, G, &D, S, shape, shm);
                if (R->ops & SEL_SENDRECV)
                    check_sendrecv(R, G, &D, S, shape, shm);
                data_free(&D);
                if ((R->ops & SEL_SUM_SCATTER) && S->ndim > 0) {
                    // x.shape[0] must be divisible by the size: size blocks
                    // of shape, or for the big one, about the same size.
                    int64_t ishape[MLXD_MAX_NDIM];
                    memcpy(ishape, shape, sizeof ishape);
                    ishape[0] = S->big ? shape[0] - shape[0] % G->size : shape[0] * G->size;
                    data_init(&D, G, t, elements(S->ndim, ishape), salt_of(G->salt, t, si, 2 + shm));
                    check_sum_scatter(R, G, &D, S, ishape, shm);
                    data_free(&D);
                }
            }
        }
    }
    if (R->ops & SEL_BARRIER)
        check_barrier(R, G);
}

/* ---------- split ---------- */

struct split_case {
    const char *label;
    int (*color)(int rank, int size);
    int (*key)(int rank, int size);
    bool run_ops;                 // run every op on the new group
};

static int color_parity(int rank, int size) { return rank % 2; }
static int color_zero(int rank, int size) { return 0; }
static int key_reverse(int rank, int size) { return size - rank; }
static int key_keep(int rank, int size) { return -1; }
static int key_ties(int rank, int size) { return (size - 1 - rank) / 2; }

static const struct split_case splits[] = {
    { "parity_reversed", color_parity, key_reverse, true },
    { "parity_kept", color_parity, key_keep, false },
    { "all_ties", color_zero, key_ties, true },
};

// The parent ranks of the new group of `me`, in their new rank order.
static int split_expect(const struct split_case *c, int size, int me, int *order) {
    int n = 0, mycolor = c->color(me, size);
    for (int r = 0; r < size; r++)
        if (c->color(r, size) == mycolor)
            order[n++] = r;
    // Insertion sort by (effective key, parent rank): stable, keeps g's order on ties.
    for (int i = 1; i < n; i++) {
        int v = order[i], j = i;
        while (j > 0) {
            int kp = c->key(order[j - 1], size), kv = c->key(v, size);
            if (kp < 0 || kv < 0 || kp <= kv)
                break;
            order[j] = order[j - 1];
            j--;
        }
        order[j] = v;
    }
    return n;
}

// Checks a split's rank, size and order (by gathering parent ranks), and
// that both the new and the parent group work afterwards.
static void check_split(struct run *R, const struct grp *P, const struct split_case *c, int depth) {
    struct where w = { P, "split", c->label, MLXD_INT32, 0, NULL };
    int order[256];
    if (P->size > 256)
        return;
    int n = split_expect(c, P->size, P->rank, order), myrank = -1;
    for (int i = 0; i < n; i++)
        if (order[i] == P->rank)
            myrank = i;

    mlxd_group *ng = NULL;
    int rc = mlxd_group_split(P->g, c->color(P->rank, P->size), c->key(P->rank, P->size), &ng);
    if (rc < 0)
        op_error(R, &w, rc);
    char label[128];
    snprintf(label, sizeof label, "%s.%s%d", P->label, c->label, c->color(P->rank, P->size));
    struct grp G = { ng, label, mlxd_group_rank(ng), mlxd_group_size(ng), mix(P->salt ^ mix(depth * 7u + (unsigned) c->color(P->rank, P->size))), false };
    R->checks++;
    if (G.rank != myrank || G.size != n)
        failf(R, &w, "new group has rank %d of %d, expected rank %d of %d", G.rank, G.size, myrank, n);

    // Gathering the parent ranks shows the new group's order.
    int32_t mine = P->rank, got[256];
    int32_t exp[256];
    for (int i = 0; i < n; i++)
        exp[i] = order[i];
    mlxd_array x = { MLXD_INT32, 0, { 0 }, &mine }, out = { MLXD_INT32, 0, { 0 }, got };
    memset(got, 0x5A, sizeof got);
    struct where wg = { &G, "all_gather", "parent_ranks", MLXD_INT32, 0, NULL };
    rc = mlxd_all_gather(ng, &x, &out);
    if (rc < 0)
        op_error(R, &wg, rc);
    R->checks++;
    for (int i = 0; i < n; i++)
        if (got[i] != exp[i]) {
            failf(R, &wg, "member %d of the new group is parent rank %d, expected %d", i, got[i], exp[i]);
            break;
        }

    if (c->run_ops)
        check_group(R, &G);

    // A split of the split keeps working too.
    if (depth == 0 && c->run_ops) {
        static const struct split_case again = { "again", color_zero, key_keep, false };
        check_split(R, &G, &again, depth + 1);
    }

    // The parent still works after the split, interleaved with the child.
    int32_t one = 1, total = 0;
    mlxd_array ox = { MLXD_INT32, 0, { 0 }, &one }, oo = { MLXD_INT32, 0, { 0 }, &total };
    struct where wp = { P, "all_sum", "parent_after_split", MLXD_INT32, 0, NULL };
    rc = mlxd_all_sum(P->g, &ox, &oo);
    if (rc < 0)
        op_error(R, &wp, rc);
    R->checks++;
    if (total != P->size)
        failf(R, &wp, "sum of ones is %d, expected %d", total, P->size);
    mlxd_group_free(ng);
}

/* ---------- large ---------- */

static float large_value(uint64_t i, int rank) {
    return (float) ((int) ((i * 7 + (uint64_t) rank * 13 + 5) % 17) - 8);
}

static int run_large(struct run *R, const struct grp *G) {
    uint64_t n = (uint64_t) R->large_mib * (1u << 20) / 4;
    int64_t shape[MLXD_MAX_NDIM] = { (int64_t) n };
    struct where w = { G, "all_sum", R->shm_large ? "large_shm" : "large_heap", MLXD_FLOAT32, 1, shape };
    float *x = (float *) (void *) buf_new(R, G, n * 4, R->shm_large);
    float *o = (float *) (void *) buf_new(R, G, n * 4, R->shm_large);
    for (uint64_t i = 0; i < n; i++)
        x[i] = large_value(i, G->rank);
    mlxd_array xa = { MLXD_FLOAT32, 1, { (int64_t) n }, x }, oa = { MLXD_FLOAT32, 0, { 0 }, o };
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = mlxd_all_sum(G->g, &xa, &oa);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc < 0)
        op_error(R, &w, rc);
    double s = (double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9;
    uint64_t bad = 0;
    R->checks++;
    if (oa.dtype != MLXD_FLOAT32 || oa.ndim != 1 || oa.shape[0] != (int64_t) n)
        failf(R, &w, "out metadata is dtype %d ndim %d shape[0] %" PRId64, (int) oa.dtype, oa.ndim, oa.shape[0]);
    for (uint64_t i = 0; i < n; i++) {
        float e = 0;
        for (int r = 0; r < G->size; r++)
            e += large_value(i, r);
        if (o[i] != e && bad++ < MAX_REPORTS)
            failf(R, &w, "element %" PRIu64 ": got %g, expected %g", i, o[i], e);
    }
    if (bad > MAX_REPORTS)
        failf(R, &w, "%" PRIu64 " of %" PRIu64 " elements differ", bad, n);
    for (size_t i = 0; i < GUARD; i++)
        if (((uint8_t *) o)[n * 4 + i] != GUARD_BYTE) {
            failf(R, &w, "wrote past the end of the output");
            break;
        }
    printf("opcheck rank %d: all_sum of %ld MiB float32 over %d ranks took %.3f s\n", G->rank,
           R->large_mib, G->size, s);
    buf_free(G, (uint8_t *) x, R->shm_large);
    buf_free(G, (uint8_t *) o, R->shm_large);
    return 0;
}

// Integer values whose sums over a few ranks overflow: the top bits are set.
static uint64_t large_int_value(uint64_t i, int rank) {
    return ~UINT64_C(0) - (i * UINT64_C(2654435761) + (uint64_t) rank * UINT64_C(0x9e3779b97f4a7c15)) % 97;
}

static int run_large_int(struct run *R, const struct grp *G) {
    size_t w = R->large_int, n = (size_t) R->large_mib * (1u << 20) / w;
    mlxd_dtype t = w == 1 ? MLXD_UINT8 : w == 4 ? MLXD_INT32 : MLXD_INT64;
    int64_t shape[MLXD_MAX_NDIM] = { (int64_t) n };
    struct where wh = { G, "all_sum", R->shm_large ? "large_int_shm" : "large_int_heap", t, 1, shape };
    uint8_t *x = buf_new(R, G, n * w, R->shm_large), *o = buf_new(R, G, n * w, R->shm_large);
    for (size_t i = 0; i < n; i++) {
        uint64_t v = large_int_value(i, G->rank);
        memcpy(x + i * w, &v, w);   // the low bytes (little-endian)
    }
    mlxd_array xa = { t, 1, { (int64_t) n }, x }, oa = { t, 0, { 0 }, o };
    int rc = mlxd_all_sum(G->g, &xa, &oa);
    if (rc < 0)
        op_error(R, &wh, rc);
    uint64_t bad = 0;
    R->checks++;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        uint64_t e = 0, got = 0;
        for (int r = 0; r < G->size; r++)
            e += large_int_value(i, r);
        memcpy(&got, o + i * w, w);
        if (w < 8)
            e &= (UINT64_C(1) << (8 * w)) - 1;
        if (got != e && bad++ < MAX_REPORTS)
            failf(R, &wh, "element %zu: got %" PRIu64 ", expected %" PRIu64 " (wrapped)", i, got, e);
    }
    if (bad > MAX_REPORTS)
        failf(R, &wh, "%" PRIu64 " of %zu elements differ", bad, n);
    printf("opcheck rank %d: all_sum of %ld MiB of %zu-byte integers over %d ranks: %s\n", G->rank, R->large_mib, w,
           G->size, rc == 0 && !bad ? "exact" : "wrong");
    buf_free(G, x, R->shm_large);
    buf_free(G, o, R->shm_large);
    return 0;
}

/* ---------- main ---------- */

static void usage(void) {
    fprintf(stderr, "usage: opcheck [--quick] [--only OP] [--no-split] [--no-shm]\n"
                    "       opcheck --large MiB [--shm] [--int 1|4|8]\n");
    exit(2);
}

int main(int argc, char **argv) {
    struct run R = { .ops = SEL_ALL, .split = true, .shm = true };
    bool only = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            R.quick = true;
        else if (strcmp(argv[i], "--no-split") == 0)
            R.split = false;
        else if (strcmp(argv[i], "--no-shm") == 0)
            R.shm = false;
        else if (strcmp(argv[i], "--shm") == 0)
            R.shm_large = true;
        else if (strcmp(argv[i], "--int") == 0 && i + 1 < argc) {
            R.large_int = (size_t) strtol(argv[++i], NULL, 10);
            if (R.large_int != 1 && R.large_int != 4 && R.large_int != 8)
                usage();
        } else if (strcmp(argv[i], "--large") == 0 && i + 1 < argc)
            R.large_mib = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            const char *name = argv[++i];
            unsigned sel = 0;
            for (size_t k = 0; k < sizeof op_names / sizeof op_names[0]; k++)
                if (strcmp(op_names[k].name, name) == 0)
                    sel = op_names[k].sel;
            if (!sel)
                usage();
            R.ops = (only ? R.ops : 0) | sel;
            only = true;
        } else
            usage();
    }
    R.dir = getenv("MLXT_DIR");
    R.job = getenv("MLXD_JOB") ? getenv("MLXD_JOB") : "nojob";

    mlxd_group *g = NULL;
    int rc = mlxd_init(NULL, &g);
    if (rc < 0) {
        printf("FAIL opcheck: mlxd_init: %s: %s\n", mlxd_strerror(rc), mlxd_init_error());
        return 1;
    }
    struct grp W = { g, "world", mlxd_group_rank(g), mlxd_group_size(g), 0x6d6c7864u, true };
    R.world_rank = W.rank;
    const char *env_size = getenv("MLXD_SIZE"), *env_rank = getenv("MLXD_RANK");
    R.checks++;
    if (getenv("MLXD_JOB") && env_size && env_rank && getenv("OPCHECK_EXPECT_SINGLETON") == NULL &&
        (W.size != atoi(env_size) || W.rank != atoi(env_rank))) {
        printf("FAIL opcheck: group is rank %d of %d, the environment says rank %s of %s\n", W.rank,
               W.size, env_rank, env_size);
        R.failures++;
    }
    if (getenv("OPCHECK_EXPECT_SINGLETON") && (W.size != 1 || W.rank != 0)) {
        printf("FAIL opcheck: expected a singleton group, got rank %d of %d\n", W.rank, W.size);
        R.failures++;
    }

    if (R.large_mib > 0)
        R.large_int ? run_large_int(&R, &W) : run_large(&R, &W);
    else {
        check_group(&R, &W);
        if (R.split && (R.ops & SEL_SPLIT))
            for (size_t k = 0; k < sizeof splits / sizeof splits[0]; k++)
                check_split(&R, &W, &splits[k], 0);
    }
    mlxd_group_free(g);
    printf("opcheck rank %d of %d: %ld checks, %ld failures\n", W.rank, W.size, R.checks, R.failures);
    return R.failures ? 1 : 0;
}
