/* mlx_cases: the cases of MLX's distributed communication tests (the ones
 * test_mlx_distributed.py ports to Python), in C against libmlxd, so that
 * the C library is held to MLX's tests as well: groups (init twice, split),
 * all_reduce over MLX's dtypes and sizes on the world and a split group,
 * all_gather, mixed groups, send/recv in pairs and around a ring,
 * sum_scatter. Every rank of a job runs it under `mlxctl launch`; the data
 * are the same on every rank (a hash of the element's index), as MLX's
 * tests draw them from one key. Prints one line per failure and exits 1 if
 * there was any. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reduce.h"
#include "testclient.h"

static struct tc T;

// The dtypes of MLX's tests and the relative tolerance of their sums.
static const struct {
    mlxd_dtype t;
    double rtol;
} reduce_dtypes[] = {
    { MLXD_INT8, 0 }, { MLXD_UINT8, 0 }, { MLXD_INT32, 0 }, { MLXD_UINT32, 0 },
    { MLXD_FLOAT32, 1e-6 }, { MLXD_FLOAT16, 5e-3 }, { MLXD_BFLOAT16, 1e-1 },
    { MLXD_INT16, 0 }, { MLXD_UINT16, 0 }, { MLXD_COMPLEX64, 1e-6 },
};
#define N_DTYPES (sizeof reduce_dtypes / sizeof reduce_dtypes[0])

static const int64_t sizes[][2] = { { 7, 1 }, { 10, 1 }, { 1024, 1 }, { 1024, 1024 } };

// Uniform [0, 1) from the element's index: the same on every rank.
static double uniform(uint64_t i) {
    i += 0x9E3779B97F4A7C15u;
    i = (i ^ (i >> 30)) * 0xBF58476D1CE4E5B9u;
    i = (i ^ (i >> 27)) * 0x94D049BB133111EBu;
    i ^= i >> 31;
    return (double) (i >> 11) / 9007199254740992.0;
}

// Element i of an array of t as a number (the real part for complex64).
static double load(mlxd_dtype t, const void *p, size_t i) {
    switch (t) {
    case MLXD_BOOL: return ((const uint8_t *) p)[i] != 0;
    case MLXD_UINT8: return ((const uint8_t *) p)[i];
    case MLXD_UINT16: return ((const uint16_t *) p)[i];
    case MLXD_UINT32: return ((const uint32_t *) p)[i];
    case MLXD_UINT64: return (double) ((const uint64_t *) p)[i];
    case MLXD_INT8: return ((const int8_t *) p)[i];
    case MLXD_INT16: return ((const int16_t *) p)[i];
    case MLXD_INT32: return ((const int32_t *) p)[i];
    case MLXD_INT64: return (double) ((const int64_t *) p)[i];
    case MLXD_FLOAT16: return reduce_f16_to_float(((const uint16_t *) p)[i]);
    case MLXD_BFLOAT16: return reduce_bf16_to_float(((const uint16_t *) p)[i]);
    case MLXD_FLOAT32: return ((const float *) p)[i];
    case MLXD_FLOAT64: return ((const double *) p)[i];
    case MLXD_COMPLEX64: return ((const float *) p)[2 * i];
    default: return NAN;
    }
}

// Stores v as MLX's astype would (integers truncate and wrap; complex64 gets
// v + 0i).
static void store(mlxd_dtype t, void *p, size_t i, double v) {
    int64_t n = (int64_t) v;
    switch (t) {
    case MLXD_BOOL: ((uint8_t *) p)[i] = v != 0; break;
    case MLXD_UINT8: ((uint8_t *) p)[i] = (uint8_t) n; break;
    case MLXD_UINT16: ((uint16_t *) p)[i] = (uint16_t) n; break;
    case MLXD_UINT32: ((uint32_t *) p)[i] = (uint32_t) n; break;
    case MLXD_UINT64: ((uint64_t *) p)[i] = (uint64_t) n; break;
    case MLXD_INT8: ((int8_t *) p)[i] = (int8_t) n; break;
    case MLXD_INT16: ((int16_t *) p)[i] = (int16_t) n; break;
    case MLXD_INT32: ((int32_t *) p)[i] = (int32_t) n; break;
    case MLXD_INT64: ((int64_t *) p)[i] = n; break;
    case MLXD_FLOAT16: ((uint16_t *) p)[i] = reduce_float_to_f16(v); break;
    case MLXD_BFLOAT16: ((uint16_t *) p)[i] = reduce_float_to_bf16(v); break;
    case MLXD_FLOAT32: ((float *) p)[i] = (float) v; break;
    case MLXD_FLOAT64: ((double *) p)[i] = v; break;
    case MLXD_COMPLEX64: ((float *) p)[2 * i] = (float) v; ((float *) p)[2 * i + 1] = 0; break;
    default: break;
    }
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        tc_fail(&T, "out of memory for %zu bytes", n);
        exit(1);
    }
    return p;
}

static mlxd_array arr(mlxd_dtype t, int ndim, const int64_t *shape, void *data) {
    mlxd_array a = { .dtype = t, .ndim = ndim, .data = data };
    memcpy(a.shape, shape, sizeof shape[0] * (size_t) ndim);
    return a;
}

static bool ok(int r, mlxd_group *g, const char *what) {
    if (r < 0)
        tc_fail(&T, "%s: %s: %s", what, mlxd_strerror(r), mlxd_last_error(g));
    return r == 0;
}

static mlxd_group *split(mlxd_group *g, int color) {
    mlxd_group *n = NULL;
    if (!ok(mlxd_group_split(g, color, -1, &n), g, "split")) {
        tc_note(&T, "cannot go on without the split group");
        exit(tc_finish(&T));
    }
    return n;
}

// all_sum, all_max and all_min of row g.rank() of a (g.size, count) array
// of the hash's values * 10, against the reductions over its rows.
static void check_reductions(mlxd_group *g, mlxd_dtype t, double rtol, int ndim, const int64_t *shape,
                             const char *gname) {
    int n = mlxd_group_size(g), r = mlxd_group_rank(g);
    size_t count = (size_t) (shape[0] * (ndim > 1 ? shape[1] : 1)), es = mlxd_dtype_size(t);
    unsigned char *all = xmalloc((size_t) n * count * es), *out = xmalloc(count * es);
    for (size_t i = 0; i < (size_t) n * count; i++)
        store(t, all, i, uniform(i) * 10);
    mlxd_array x = arr(t, ndim, shape, all + (size_t) r * count * es), o = arr(t, ndim, shape, out);
    static const char *const names[] = { "all_sum", "all_max", "all_min" };
    int (*const fns[])(mlxd_group *, const mlxd_array *, mlxd_array *) = { mlxd_all_sum, mlxd_all_max, mlxd_all_min };
    for (int k = 0; k < 3; k++) {
        if (!ok(fns[k](g, &x, &o), g, names[k]))
            continue;
        int bad = 0;
        for (size_t i = 0; i < count && bad < 3; i++) {
            double want = k == 1 ? -INFINITY : k == 2 ? INFINITY : 0;
            unsigned char exact[16];
            for (int m = 0; m < n; m++) {
                double v = load(t, all, (size_t) m * count + i);
                want = k == 0 ? want + v : k == 1 ? fmax(want, v) : fmin(want, v);
            }
            double got = load(t, out, i);
            bool good;
            if (k == 0 && rtol > 0) {
                good = fabs(got - want) <= rtol * fabs(want);
            } else {
                store(t, exact, 0, want);   // integers wrap in their dtype
                good = memcmp(exact, out + i * es, es) == 0;
            }
            if (!good && ++bad)
                tc_fail(&T, "%s of %s [%lld%s] on %s: element %zu is %g, expected %g", names[k], mlxd_dtype_name(t),
                        (long long) shape[0], ndim > 1 ? ", 1024" : "", gname, i, got, want);
        }
    }
    free(all);
    free(out);
}

static void test_groups(mlxd_group *w) {
    int r = mlxd_group_rank(w), n = mlxd_group_size(w);
    mlxd_group *w2 = NULL;
    // MLX's init() returns the same group again; libmlxd another handle on it.
    int rc = mlxd_init(NULL, &w2);
    if (rc == 0) {
        if (mlxd_group_rank(w2) != r || mlxd_group_size(w2) != n)
            tc_fail(&T, "second init: rank %d of %d, expected %d of %d", mlxd_group_rank(w2), mlxd_group_size(w2), r, n);
        mlxd_group_free(w2);
    } else {
        tc_fail(&T, "mlxd_init a second time: %s: %s", mlxd_strerror(rc), mlxd_init_error());
    }
    mlxd_group *sub = split(w, r % 2);
    if (mlxd_group_size(sub) != (n + 1 - r % 2) / 2 || mlxd_group_rank(sub) != r / 2)
        tc_fail(&T, "split(rank %% 2): rank %d of %d", mlxd_group_rank(sub), mlxd_group_size(sub));
    mlxd_group_free(sub);
    sub = split(w, r / 2);
    int want = n - 2 * (r / 2) < 2 ? n - 2 * (r / 2) : 2;
    if (mlxd_group_size(sub) != want)
        tc_fail(&T, "split(rank / 2): size %d, expected %d", mlxd_group_size(sub), want);
    mlxd_group_free(sub);
}

static void test_all_reduce(mlxd_group *w) {
    mlxd_group *sub = split(w, mlxd_group_rank(w) % 2);
    for (size_t d = 0; d < N_DTYPES; d++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            int ndim = sizes[s][1] > 1 ? 2 : 1;
            check_reductions(w, reduce_dtypes[d].t, reduce_dtypes[d].rtol, ndim, sizes[s], "the world");
            check_reductions(sub, reduce_dtypes[d].t, reduce_dtypes[d].rtol, ndim, sizes[s], "split(rank % 2)");
        }
    mlxd_group_free(sub);
}

static void test_all_gather(mlxd_group *w) {
    mlxd_group *sub = split(w, mlxd_group_rank(w) % 2);
    mlxd_group *groups[] = { w, sub };
    for (size_t d = 0; d < N_DTYPES; d++)
        for (int k = 0; k < 2; k++) {
            mlxd_dtype t = reduce_dtypes[d].t;
            int n = mlxd_group_size(groups[k]);
            size_t es = mlxd_dtype_size(t);
            int64_t shape[] = { 2, 2, 4 };
            unsigned char x[16 * 8], *out = xmalloc((size_t) n * 16 * es);
            for (size_t i = 0; i < 16; i++)
                store(t, x, i, 1);
            mlxd_array xa = arr(t, 3, shape, x), oa = arr(t, 3, shape, out);
            if (ok(mlxd_all_gather(groups[k], &xa, &oa), groups[k], "all_gather")) {
                if (oa.ndim != 3 || oa.shape[0] != 2 * n || oa.shape[1] != 2 || oa.shape[2] != 4)
                    tc_fail(&T, "all_gather of %s: shape [%lld, ...]", mlxd_dtype_name(t), (long long) oa.shape[0]);
                for (size_t i = 0; i < (size_t) n * 16; i++)
                    if (load(t, out, i) != 1) {
                        tc_fail(&T, "all_gather of %s: element %zu is not 1", mlxd_dtype_name(t), i);
                        break;
                    }
            }
            free(out);
        }
    mlxd_group_free(sub);
}

static void test_mixed(mlxd_group *w) {
    int r = mlxd_group_rank(w), n = mlxd_group_size(w);
    mlxd_group *sub1 = split(w, r / 2), *sub2 = split(w, r % 2);
    int m = mlxd_group_size(sub2);
    float x[8], y[8], *z = xmalloc((size_t) m * 8 * sizeof *z);
    for (int i = 0; i < 8; i++)
        x[i] = (float) r;
    int64_t shape[] = { 1, 8 };
    mlxd_array xa = arr(MLXD_FLOAT32, 2, shape, x), ya = arr(MLXD_FLOAT32, 2, shape, y), za = arr(MLXD_FLOAT32, 2, shape, z);
    if (ok(mlxd_all_sum(sub1, &xa, &ya), sub1, "mixed: all_sum") && ok(mlxd_all_gather(sub2, &ya, &za), sub2, "mixed: all_gather"))
        for (int k = 0; k < m; k++) {
            float want = (float) (2 * k + (2 * k + 1 < n ? 2 * k + 1 : 0));
            for (int i = 0; i < 8; i++)
                if (z[k * 8 + i] != want) {
                    tc_fail(&T, "mixed: row %d is %g, expected %g", k, z[k * 8 + i], want);
                    break;
                }
        }
    free(z);
    mlxd_group_free(sub1);
    mlxd_group_free(sub2);
}

static void test_send_recv(mlxd_group *w) {
    mlxd_group *pairs = split(w, mlxd_group_rank(w) / 2);
    if (mlxd_group_size(pairs) == 2) {
        int me = mlxd_group_rank(pairs), neighbor = (me + 1) % 2;
        bool send = me == 0;
        float x[10], twice[10];
        int64_t shape[] = { 10 };
        for (int i = 0; i < 10; i++)
            x[i] = 1;
        for (int it = 0; it < 10; it++, send = !send) {
            if (send) {
                for (int i = 0; i < 10; i++)
                    twice[i] = 2 * x[i];
                mlxd_array a = arr(MLXD_FLOAT32, 1, shape, twice);
                ok(mlxd_send(pairs, &a, neighbor), pairs, "send");
            } else {
                mlxd_array a = arr(MLXD_FLOAT32, 1, shape, x);
                ok(mlxd_recv_like(pairs, &a, &a, neighbor), pairs, "recv_like");
            }
        }
        if (x[0] != (me == 0 ? 1024 : 512))
            tc_fail(&T, "send/recv in pairs: %g, expected %d", x[0], me == 0 ? 1024 : 512);
    }
    mlxd_group_free(pairs);
}

static void test_ring(mlxd_group *w) {
    int r = mlxd_group_rank(w), n = mlxd_group_size(w);
    if (n < 2)
        return;
    int right = (r + 1) % n, left = (r + n - 1) % n;
    for (size_t d = 0; d < N_DTYPES; d++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            mlxd_dtype t = reduce_dtypes[d].t;
            int ndim = sizes[s][1] > 1 ? 2 : 1;
            size_t count = (size_t) (sizes[s][0] * sizes[s][1]), es = mlxd_dtype_size(t);
            unsigned char *all = xmalloc((size_t) n * count * es), *z = xmalloc(count * es);
            for (size_t i = 0; i < (size_t) n * count; i++)
                store(t, all, i, uniform(i) * 10);
            mlxd_array xa = arr(t, ndim, sizes[s], all + (size_t) r * count * es), za = arr(t, ndim, sizes[s], z);
            if (r % 2 == 0) {
                ok(mlxd_send(w, &xa, right), w, "ring send");
                ok(mlxd_recv_like(w, &xa, &za, left), w, "ring recv_like");
            } else {
                ok(mlxd_recv_like(w, &xa, &za, left), w, "ring recv_like");
                ok(mlxd_send(w, &xa, right), w, "ring send");
            }
            if (memcmp(z, all + (size_t) left * count * es, count * es) != 0)
                tc_fail(&T, "ring of %s [%lld]: not what rank %d sent", mlxd_dtype_name(t), (long long) sizes[s][0], left);
            free(all);
            free(z);
        }
}

static void test_sum_scatter(mlxd_group *w) {
    int r = mlxd_group_rank(w), n = mlxd_group_size(w);
    static const mlxd_dtype ts[] = { MLXD_FLOAT32, MLXD_FLOAT16, MLXD_BFLOAT16 };
    static const double rtols[] = { 1e-6, 5e-3, 1e-1 };
    const int64_t shapes[][2] = { { 8 * n, 1 }, { 64 * n, 1 }, { 1024 * n, 1 }, { 128 * n, 1024 } };
    for (int d = 0; d < 3; d++)
        for (int s = 0; s < 4; s++) {
            mlxd_dtype t = ts[d];
            int ndim = shapes[s][1] > 1 ? 2 : 1;
            size_t count = (size_t) (shapes[s][0] * shapes[s][1]), chunk = count / (size_t) n, es = mlxd_dtype_size(t);
            unsigned char *x = xmalloc(count * es), *y = xmalloc(chunk * es), *z = xmalloc(count * es);
            for (size_t i = 0; i < count; i++)
                store(t, x, i, uniform(i + (size_t) r * count) * 10);   // different on every rank
            mlxd_array xa = arr(t, ndim, shapes[s], x), ya = arr(t, ndim, shapes[s], y), za = arr(t, ndim, shapes[s], z);
            if (ok(mlxd_sum_scatter(w, &xa, &ya), w, "sum_scatter") && ok(mlxd_all_sum(w, &xa, &za), w, "all_sum")) {
                for (size_t i = 0; i < chunk; i++) {
                    double want = load(t, z, (size_t) r * chunk + i), got = load(t, y, i);
                    if (fabs(got - want) > rtols[d] * fabs(want)) {
                        tc_fail(&T, "sum_scatter of %s: element %zu is %g, expected %g", mlxd_dtype_name(t), i, got, want);
                        break;
                    }
                }
            }
            free(x);
            free(y);
            free(z);
        }
}

int main(void) {
    mlxd_init_opts o = MLXD_INIT_OPTS_DEFAULT;
    mlxd_group *w;
    o.strict = true;
    int r = mlxd_init(&o, &w);
    snprintf(T.prefix, sizeof T.prefix, "mlx_cases rank %s", getenv("MLXD_RANK") ? getenv("MLXD_RANK") : "0");
    if (r < 0) {
        tc_fail(&T, "mlxd_init: %s: %s", mlxd_strerror(r), mlxd_init_error());
        return tc_finish(&T);
    }
    test_groups(w);
    test_all_reduce(w);
    test_all_gather(w);
    test_mixed(w);
    test_send_recv(w);
    test_ring(w);
    test_sum_scatter(w);
    ok(mlxd_barrier(w), w, "barrier");
    mlxd_group_free(w);
    return tc_finish(&T);
}
