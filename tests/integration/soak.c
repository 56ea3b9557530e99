/* soak: one rank of a job of the soak test (hardening.sh,
 * soak_two_daemons_random_ops_and_kills). Runs random ops (all_sum, all_max,
 * all_min, all_gather, sum_scatter, a send/recv ring, barrier, split with an
 * op on the new group) of random dtypes, shapes and sizes, with inputs and
 * outputs in heap or mlxd_alloc memory, and checks every result against a
 * reference computed here: every rank draws the same op sequence from the
 * job's seed and can make every member's input, so it knows what each op
 * must give. Float inputs are small integers, so that sums are exact in
 * every float type whatever the order the daemons add them in.
 *
 *   soak OPS MAXBYTES
 *
 * The job comes from the environment (MLXD_JOB, MLXD_RANK, MLXD_SIZE,
 * MLXD_SOCKET) and SOAK_SEED (the same for every rank). After init it creates
 * $MLXT_DIR/JOB.RANK.formed. Every 8th op is an all_max of a stop flag, set
 * once OPS ops are done or $MLXT_DIR/JOB.stop exists, so that all ranks stop
 * together. An op that fails with MLXD_EPEER (a member was killed) ends the
 * run after one more op on the job's group, which must fail the same way.
 *
 * Last line: "soak JOB rank R: ok=N epeer=N wrong=N unexpected=N end=clean|peer|fail".
 * Exit status: 0 stopped cleanly, 3 ended by MLXD_EPEER, 1 a wrong result or
 * an unexpected error, 2 usage or init failure. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mlxd/mlxd.h"

#define MAX_MEMBERS 8
#define STOP_EVERY 8
#define SUB_ID (UINT64_C(1) << 40)   // marks the ids of ops on split groups

enum { OP_SUM, OP_MAX, OP_MIN, OP_GATHER, OP_SCATTER, OP_RING, OP_BARRIER, OP_SPLIT, OP_COUNT };
static const char *const op_names[] = { "all_sum", "all_max", "all_min", "all_gather", "sum_scatter",
                                        "ring", "barrier", "split" };

struct soak {
    const char *job, *dir;
    int rank, size;                     // in the job
    uint64_t seed;
    size_t maxbytes;
    uint64_t ok, epeer, wrong, unexpected;
    uint8_t *shm_in, *shm_out;          // mlxd_alloc pools: maxbytes, maxbytes * size
};

// A group with what the reference needs: its members' job ranks in group
// rank order.
struct grp {
    mlxd_group *g;
    int rank, size;
    int members[MAX_MEMBERS];
};

// What one op does; the same on every member (from the shared seed).
struct desc {
    int op;
    mlxd_dtype dtype;
    int ndim;
    int64_t shape[MLXD_MAX_NDIM];
    uint64_t id;                        // seeds the members' inputs
};

/* ---------- random numbers ---------- */

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t mix(uint64_t a, uint64_t b) {
    uint64_t s = a ^ (b * 0x9e3779b97f4a7c15ull);
    return splitmix(&s);
}

static uint64_t below(uint64_t *s, uint64_t n) {
    return n ? splitmix(s) % n : 0;
}

/* ---------- dtypes ---------- */

enum kind { K_BOOL, K_UINT, K_SINT, K_F16, K_BF16, K_F32, K_F64, K_C64 };

static enum kind kind_of(mlxd_dtype t) {
    switch (t) {
    case MLXD_BOOL:
        return K_BOOL;
    case MLXD_UINT8:
    case MLXD_UINT16:
    case MLXD_UINT32:
    case MLXD_UINT64:
        return K_UINT;
    case MLXD_INT8:
    case MLXD_INT16:
    case MLXD_INT32:
    case MLXD_INT64:
        return K_SINT;
    case MLXD_FLOAT16:
        return K_F16;
    case MLXD_BFLOAT16:
        return K_BF16;
    case MLXD_FLOAT32:
        return K_F32;
    case MLXD_FLOAT64:
        return K_F64;
    default:
        return K_C64;
    }
}

// float16 bits of an integer of magnitude below 2048 (exact).
static uint16_t f16_of_int(int v) {
    if (v == 0)
        return 0;
    uint16_t sign = v < 0 ? 0x8000 : 0;
    unsigned m = (unsigned) (v < 0 ? -v : v);
    int e = 31 - __builtin_clz(m);
    return (uint16_t) (sign | (unsigned) (e + 15) << 10 | ((m << (10 - e)) & 0x3ff));
}

static double f16_value(uint16_t h) {
    int e = (h >> 10) & 0x1f;
    double m = h & 0x3ff;
    double v = e == 0 ? m / 1024.0 / 16384.0 : (1.0 + m / 1024.0) * (double) (1ull << e) / 32768.0;
    return h & 0x8000 ? -v : v;
}

static uint16_t bf16_of_float(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (uint16_t) (u >> 16);        // exact for the small integers used here
}

static float bf16_value(uint16_t b) {
    uint32_t u = (uint32_t) b << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

// One element as every kind needs it.
struct val {
    uint64_t u;                         // K_BOOL, K_UINT, K_SINT (two's complement)
    double re, im;                      // floats and complex
};

static struct val load(mlxd_dtype t, const uint8_t *p, size_t i) {
    struct val v = { 0 };
    size_t sz = mlxd_dtype_size(t);
    const uint8_t *e = p + i * sz;
    switch (kind_of(t)) {
    case K_BOOL:
        v.u = e[0] != 0;
        break;
    case K_UINT:
    case K_SINT: {
        uint64_t u = 0;
        memcpy(&u, e, sz);
        if (kind_of(t) == K_SINT && sz < 8 && (u >> (sz * 8 - 1)) & 1)
            u |= ~0ull << (sz * 8);
        v.u = u;
        break;
    }
    case K_F16: {
        uint16_t h;
        memcpy(&h, e, 2);
        v.re = f16_value(h);
        break;
    }
    case K_BF16: {
        uint16_t b;
        memcpy(&b, e, 2);
        v.re = bf16_value(b);
        break;
    }
    case K_F32: {
        float f;
        memcpy(&f, e, 4);
        v.re = f;
        break;
    }
    case K_F64:
        memcpy(&v.re, e, 8);
        break;
    case K_C64: {
        float f[2];
        memcpy(f, e, 8);
        v.re = f[0];
        v.im = f[1];
        break;
    }
    }
    return v;
}

static void store(mlxd_dtype t, uint8_t *p, size_t i, struct val v) {
    size_t sz = mlxd_dtype_size(t);
    uint8_t *e = p + i * sz;
    switch (kind_of(t)) {
    case K_BOOL:
        e[0] = v.u != 0;
        break;
    case K_UINT:
    case K_SINT:
        memcpy(e, &v.u, sz);            // little-endian: the low bytes
        break;
    case K_F16: {
        uint16_t h = f16_of_int((int) v.re);
        memcpy(e, &h, 2);
        break;
    }
    case K_BF16: {
        uint16_t b = bf16_of_float((float) v.re);
        memcpy(e, &b, 2);
        break;
    }
    case K_F32: {
        float f = (float) v.re;
        memcpy(e, &f, 4);
        break;
    }
    case K_F64:
        memcpy(e, &v.re, 8);
        break;
    case K_C64: {
        float f[2] = { (float) v.re, (float) v.im };
        memcpy(e, f, 8);
        break;
    }
    }
}

// Orders a and b as max/min do: -1, 0, 1.
static int compare(mlxd_dtype t, struct val a, struct val b) {
    switch (kind_of(t)) {
    case K_BOOL:
    case K_UINT:
        return a.u < b.u ? -1 : a.u > b.u;
    case K_SINT:
        return (int64_t) a.u < (int64_t) b.u ? -1 : (int64_t) a.u > (int64_t) b.u;
    case K_C64:
        if (a.re != b.re)
            return a.re < b.re ? -1 : 1;
        return a.im < b.im ? -1 : a.im > b.im;
    default:
        return a.re < b.re ? -1 : a.re > b.re;
    }
}

static struct val combine(int op, mlxd_dtype t, struct val a, struct val b) {
    if (op == OP_MAX)
        return compare(t, a, b) >= 0 ? a : b;
    if (op == OP_MIN)
        return compare(t, a, b) <= 0 ? a : b;
    struct val s = { a.u + b.u, a.re + b.re, a.im + b.im };
    if (kind_of(t) == K_BOOL)
        s.u = a.u | b.u;
    return s;
}

/* ---------- ops ---------- */

static uint64_t elements(const struct desc *d) {
    uint64_t n = 1;
    for (int i = 0; i < d->ndim; i++)
        n *= (uint64_t) d->shape[i];
    return n;
}

// Job rank r's input of op d: small integers for floats, any bits for ints.
static void make_input(const struct soak *S, const struct desc *d, int r, uint8_t *p) {
    uint64_t s = mix(mix(S->seed, d->id), (uint64_t) r + 1), n = elements(d);
    size_t sz = mlxd_dtype_size(d->dtype);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t x = splitmix(&s);
        struct val v = { x, (double) ((int) (x % 17) - 8), (double) ((int) ((x >> 8) % 17) - 8) };
        if (kind_of(d->dtype) == K_BOOL)
            v.u = x & 1;
        if (kind_of(d->dtype) == K_UINT || kind_of(d->dtype) == K_SINT)
            memcpy(p + i * sz, &x, sz);
        else
            store(d->dtype, p, i, v);
    }
}

// The op's descriptor: the same on every member of a group of gsize.
static void make_desc(const struct soak *S, uint64_t id, int gsize, bool allow_split, struct desc *d) {
    uint64_t s = mix(S->seed, id * 2 + 1);
    static const int weights[OP_COUNT] = { 20, 10, 10, 12, 10, 12, 5, 8 };
    int total = 0, w;
    for (int i = 0; i < OP_COUNT; i++)
        total += i == OP_SPLIT && !allow_split ? 0 : weights[i];
    w = (int) below(&s, (uint64_t) total);
    *d = (struct desc) { .id = id };
    for (d->op = 0; d->op < OP_COUNT; d->op++) {
        int wi = d->op == OP_SPLIT && !allow_split ? 0 : weights[d->op];
        if (w < wi)
            break;
        w -= wi;
    }
    if (d->op == OP_RING && gsize < 2)
        d->op = OP_SUM;
    d->dtype = (mlxd_dtype) below(&s, MLXD_DTYPE_MAX);
    size_t sz = mlxd_dtype_size(d->dtype);
    // Mostly small, sometimes up to maxbytes.
    uint64_t c = below(&s, 100), bytes;
    if (c < 55)
        bytes = below(&s, 257);
    else if (c < 82)
        bytes = below(&s, 64 << 10);
    else if (c < 96)
        bytes = below(&s, 1 << 20);
    else
        bytes = below(&s, S->maxbytes + 1);
    if (bytes > S->maxbytes)
        bytes = S->maxbytes;
    uint64_t n = bytes / sz;
    d->ndim = below(&s, 20) == 0 && d->op != OP_SCATTER ? 0 : 1 + (int) below(&s, 3);
    uint64_t rest = 1;
    for (int i = 1; i < d->ndim; i++) {
        d->shape[i] = 1 + (int64_t) below(&s, 4);
        rest *= (uint64_t) d->shape[i];
    }
    if (d->ndim > 0)
        d->shape[0] = (int64_t) (n / rest);
    if (d->op == OP_SCATTER)
        d->shape[0] -= d->shape[0] % gsize;
}

static void report(struct soak *S, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void report(struct soak *S, const char *fmt, ...) {
    va_list ap;
    printf("soak %s rank %d: ", S->job, S->rank);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

// Sorts out an op's return code: 1 go on and check the result, 0 the group
// is aborted (MLXD_EPEER), -1 an unexpected failure.
static int outcome(struct soak *S, const struct grp *G, const struct desc *d, int rc) {
    if (rc == 0)
        return 1;
    if (rc == MLXD_EPEER) {
        S->epeer++;
        report(S, "%s #%" PRIu64 " on a group of %d: %s \"%s\"", op_names[d->op], d->id, G->size, mlxd_strerror(rc),
               mlxd_last_error(G->g));
        return 0;
    }
    S->unexpected++;
    report(S, "FAIL %s #%" PRIu64 " (%s, %d dims, %" PRIu64 " elements) on a group of %d: %s \"%s\"",
           op_names[d->op], d->id, mlxd_dtype_name(d->dtype), d->ndim, elements(d), G->size, mlxd_strerror(rc),
           mlxd_last_error(G->g));
    return -1;
}

static void check_bytes(struct soak *S, const struct desc *d, const char *what, const uint8_t *got,
                        const uint8_t *want, size_t nbytes, const mlxd_array *out, int ndim, const int64_t *shape) {
    bool shape_ok = out->ndim == ndim && out->dtype == d->dtype;
    for (int i = 0; shape_ok && i < ndim; i++)
        shape_ok = out->shape[i] == shape[i];
    if (!shape_ok) {
        S->wrong++;
        report(S, "FAIL %s #%" PRIu64 " (%s): the output has dtype %d and %d dims, expected %d and %d", what, d->id,
               mlxd_dtype_name(d->dtype), (int) out->dtype, out->ndim, (int) d->dtype, ndim);
        return;
    }
    if (nbytes && memcmp(got, want, nbytes) != 0) {
        size_t i = 0;
        while (got[i] == want[i])
            i++;
        S->wrong++;
        report(S, "FAIL %s #%" PRIu64 " (%s, %d dims, %" PRIu64 " elements): byte %zu of %zu is %#x, expected %#x", what,
               d->id, mlxd_dtype_name(d->dtype), d->ndim, elements(d), i, nbytes, got[i], want[i]);
        return;
    }
    S->ok++;
}

// Memory for nbytes of an op's tensor: heap, the shared pool (of pool_size
// bytes), or a fresh segment freed after the op. *ret_fresh says which to free.
static uint8_t *op_memory(struct soak *S, mlxd_group *g, uint64_t *rs, size_t nbytes, uint8_t *pool, size_t pool_size,
                          bool *ret_fresh) {
    uint64_t c = below(rs, 10);
    *ret_fresh = false;
    if (c < 3 && pool && nbytes <= pool_size)
        return pool;
    if (c == 3) {
        uint8_t *p = mlxd_alloc(g, nbytes ? nbytes : 1);
        if (p) {
            *ret_fresh = true;
            return p;
        }
        report(S, "mlxd_alloc of %zu bytes failed: %s (heap instead)", nbytes, mlxd_last_error(g));
    }
    return malloc(nbytes ? nbytes : 1);
}

static void op_memory_free(mlxd_group *g, uint8_t *p, uint8_t *pool, bool fresh) {
    if (fresh)
        mlxd_free(g, p);
    else if (p != pool)
        free(p);
}

static int run_op(struct soak *S, struct grp *G, const struct desc *d);

// A split of G, one op on the new group, a barrier there, and free.
static int run_split(struct soak *S, struct grp *G, const struct desc *d) {
    uint64_t s = mix(S->seed, d->id * 2 + 2);
    int colors[MAX_MEMBERS] = { 0 }, keys[MAX_MEMBERS] = { 0 };
    bool use_keys = below(&s, 2);
    int ncolors = 1 + (int) below(&s, 2);
    for (int r = 0; r < G->size; r++) {
        colors[r] = (int) below(&s, (uint64_t) ncolors);
        keys[r] = use_keys ? (int) below(&s, 4) : -1;
    }
    // The new group: same color, by key then old rank.
    struct grp N = { 0 };
    int order[MAX_MEMBERS], n = 0;
    for (int r = 0; r < G->size; r++)
        if (colors[r] == colors[G->rank])
            order[n++] = r;
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && keys[order[j - 1]] > keys[order[j]]; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    N.size = n;
    for (int i = 0; i < n; i++) {
        N.members[i] = G->members[order[i]];
        if (order[i] == G->rank)
            N.rank = i;
    }
    int rc = mlxd_group_split(G->g, colors[G->rank], keys[G->rank], &N.g);
    int k = outcome(S, G, d, rc);
    if (k <= 0)
        return k;
    if (mlxd_group_rank(N.g) != N.rank || mlxd_group_size(N.g) != N.size) {
        S->wrong++;
        report(S, "FAIL split #%" PRIu64 ": rank %d of %d, expected %d of %d", d->id, mlxd_group_rank(N.g),
               mlxd_group_size(N.g), N.rank, N.size);
        mlxd_group_free(N.g);
        return -1;
    }
    S->ok++;
    struct desc sub;
    // Ids of ops on split groups are apart from the job group's.
    make_desc(S, d->id | SUB_ID, N.size, false, &sub);
    k = run_op(S, &N, &sub);
    if (k > 0) {
        // Nobody leaves before everyone has received: a barrier first.
        struct desc bar = { .op = OP_BARRIER, .id = sub.id };
        k = outcome(S, &N, &bar, mlxd_barrier(N.g));
        if (k > 0)
            S->ok++;
    }
    mlxd_group_free(N.g);
    return k;
}

// Runs op d on G and checks it: 1 done, 0 the group is aborted, -1 failed.
static int run_op(struct soak *S, struct grp *G, const struct desc *d) {
    if (d->op == OP_BARRIER) {
        int k = outcome(S, G, d, mlxd_barrier(G->g));
        if (k > 0)
            S->ok++;
        return k;
    }
    if (d->op == OP_SPLIT)
        return run_split(S, G, d);

    size_t sz = mlxd_dtype_size(d->dtype), n = elements(d), nbytes = n * sz;
    size_t outbytes = d->op == OP_GATHER ? nbytes * (size_t) G->size : d->op == OP_SCATTER ? nbytes / (size_t) G->size
                                                                                            : nbytes;
    uint64_t rs = mix(mix(S->seed, d->id * 2 + 3), (uint64_t) S->rank);
    bool in_fresh, out_fresh;
    uint8_t *all = malloc(nbytes * (size_t) G->size + 1), *want = malloc(outbytes + 1);
    uint8_t *in = op_memory(S, G->g, &rs, nbytes, S->shm_in, S->maxbytes, &in_fresh);
    uint8_t *out = op_memory(S, G->g, &rs, outbytes, S->shm_out, S->maxbytes * (size_t) S->size, &out_fresh);
    if (!all || !want || !in || !out) {
        report(S, "FAIL out of memory for an op of %zu bytes", nbytes);
        exit(1);
    }
    for (int r = 0; r < G->size; r++)
        make_input(S, d, G->members[r], all + (size_t) r * nbytes);
    memcpy(in, all + (size_t) G->rank * nbytes, nbytes);

    mlxd_array x = { d->dtype, d->ndim, { 0 }, in }, o = { d->dtype, d->ndim, { 0 }, out };
    memcpy(x.shape, d->shape, sizeof x.shape);
    int64_t oshape[MLXD_MAX_NDIM];
    memcpy(oshape, d->shape, sizeof oshape);
    int ondim = d->ndim, rc;
    bool in_place = (d->op == OP_SUM || d->op == OP_MAX || d->op == OP_MIN) && below(&rs, 6) == 0;
    if (in_place)
        o.data = in;
    switch (d->op) {
    case OP_SUM:
    case OP_MAX:
    case OP_MIN:
        for (size_t i = 0; i < n; i++) {
            struct val acc = load(d->dtype, all, i);
            for (int r = 1; r < G->size; r++)
                acc = combine(d->op, d->dtype, acc, load(d->dtype, all + (size_t) r * nbytes, i));
            store(d->dtype, want, i, acc);
        }
        rc = d->op == OP_SUM ? mlxd_all_sum(G->g, &x, &o) : d->op == OP_MAX ? mlxd_all_max(G->g, &x, &o)
                                                                             : mlxd_all_min(G->g, &x, &o);
        break;
    case OP_GATHER:
        memcpy(want, all, outbytes);
        if (ondim == 0) {
            ondim = 1;
            oshape[0] = G->size;
        } else {
            oshape[0] *= G->size;
        }
        rc = mlxd_all_gather(G->g, &x, &o);
        break;
    case OP_SCATTER: {
        size_t block = n / (size_t) G->size;
        for (size_t i = 0; i < block; i++) {
            size_t e = (size_t) G->rank * block + i;
            struct val acc = load(d->dtype, all, e);
            for (int r = 1; r < G->size; r++)
                acc = combine(OP_SUM, d->dtype, acc, load(d->dtype, all + (size_t) r * nbytes, e));
            store(d->dtype, want, i, acc);
        }
        oshape[0] /= G->size;
        rc = mlxd_sum_scatter(G->g, &x, &o);
        break;
    }
    default: {                          // OP_RING
        int to = (G->rank + 1) % G->size, from = (G->rank + G->size - 1) % G->size;
        memcpy(want, all + (size_t) from * nbytes, nbytes);
        rc = mlxd_send(G->g, &x, to);
        if (rc == 0) {
            memcpy(o.shape, d->shape, sizeof o.shape);
            rc = mlxd_recv(G->g, &o, from);
        }
        break;
    }
    }
    int k = outcome(S, G, d, rc);
    if (k > 0)
        check_bytes(S, d, op_names[d->op], o.data, want, outbytes, &o, ondim, oshape);
    op_memory_free(G->g, in, S->shm_in, in_fresh);
    op_memory_free(G->g, out, S->shm_out, out_fresh);
    free(all);
    free(want);
    return k;
}

// The all_max of the stop flags: 1 stop, 0 go on, -1/-2 as run_op (-2 for
// the group aborted).
static int stop_vote(struct soak *S, struct grp *G, uint64_t k, uint64_t budget) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.stop", S->dir, S->job);
    int32_t flag = k >= budget || access(path, F_OK) == 0, got = -1;
    mlxd_array x = { MLXD_INT32, 1, { 1 }, &flag }, o = { MLXD_INT32, 1, { 1 }, &got };
    struct desc d = { .op = OP_MAX, .dtype = MLXD_INT32, .ndim = 1, .shape = { 1 }, .id = k };
    int r = outcome(S, G, &d, mlxd_all_max(G->g, &x, &o));
    if (r <= 0)
        return r == 0 ? -2 : -1;
    if ((got != 0 && got != 1) || got < flag) {
        S->wrong++;
        report(S, "FAIL the stop vote's all_max gave %d with this rank's flag %d", got, flag);
        return -1;
    }
    S->ok++;
    return got;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: soak OPS MAXBYTES\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct soak S = {
        .job = getenv("MLXD_JOB") ? getenv("MLXD_JOB") : "nojob",
        .dir = getenv("MLXT_DIR") ? getenv("MLXT_DIR") : "/tmp",
        .seed = getenv("SOAK_SEED") ? strtoull(getenv("SOAK_SEED"), NULL, 10) : 1,
        .maxbytes = strtoull(argv[2], NULL, 10),
    };
    uint64_t budget = strtoull(argv[1], NULL, 10);
    mlxd_init_opts opts = MLXD_INIT_OPTS_DEFAULT;
    struct grp G = { 0 };
    opts.strict = true;
    int rc = mlxd_init(&opts, &G.g);
    if (rc < 0) {
        printf("soak %s: FAIL mlxd_init: %s: %s\n", S.job, mlxd_strerror(rc), mlxd_init_error());
        return 2;
    }
    S.rank = G.rank = mlxd_group_rank(G.g);
    S.size = G.size = mlxd_group_size(G.g);
    if (G.size > MAX_MEMBERS) {
        printf("soak: FAIL jobs of at most %d\n", MAX_MEMBERS);
        return 2;
    }
    for (int r = 0; r < G.size; r++)
        G.members[r] = r;
    char path[512];
    snprintf(path, sizeof path, "%s/%s.%d.formed", S.dir, S.job, S.rank);
    close(open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
    S.shm_in = mlxd_alloc(G.g, S.maxbytes);
    S.shm_out = mlxd_alloc(G.g, S.maxbytes * (size_t) S.size);

    const char *end = "clean";
    for (uint64_t k = 0;; k++) {
        int r;
        if (k % STOP_EVERY == 0) {
            r = stop_vote(&S, &G, k, budget);
            if (r == 1)
                break;
        } else {
            struct desc d;
            make_desc(&S, k, G.size, true, &d);
            r = run_op(&S, &G, &d);
            r = r == 0 ? -2 : r;
        }
        if (r == -2) {
            // A member is gone: the next op on the job's group fails the same way.
            struct desc bar = { .op = OP_BARRIER, .id = k };
            int again = mlxd_barrier(G.g);
            if (again == MLXD_EPEER)
                S.epeer++;
            else
                outcome(&S, &G, &bar, again == 0 ? MLXD_EINTERNAL : again);
            end = "peer";
            break;
        }
        if (r < 0) {
            end = "fail";
            break;
        }
    }
    if (S.wrong || S.unexpected)
        end = "fail";
    mlxd_free(G.g, S.shm_in);
    mlxd_free(G.g, S.shm_out);
    mlxd_group_free(G.g);
    printf("soak %s rank %d: ok=%" PRIu64 " epeer=%" PRIu64 " wrong=%" PRIu64 " unexpected=%" PRIu64 " end=%s\n",
           S.job, S.rank, S.ok, S.epeer, S.wrong, S.unexpected, end);
    return strcmp(end, "clean") == 0 ? 0 : strcmp(end, "peer") == 0 ? 3 : 1;
}
