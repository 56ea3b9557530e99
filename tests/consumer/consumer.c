/* consumer: a program built against an installed libmlxd, outside the mlxd
 * tree, the way an application would be (pkg-config or find_package). Run as
 * every rank of a job (mlxctl launch -n N -- consumer): all_sum and
 * all_gather of known values, from ordinary and from mlxd_alloc memory.
 * Prints "consumer rank R of N: ok" and exits 0 when every result held. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mlxd/mlxd.h>

static int failures;

static void check(mlxd_group *g, const char *what, int rc) {
    if (rc < 0) {
        printf("consumer: %s: %s: %s\n", what, mlxd_strerror(rc), mlxd_last_error(g));
        failures++;
    }
}

int main(void) {
    mlxd_init_opts o = MLXD_INIT_OPTS_DEFAULT;
    o.strict = true;            // a job must reach the daemon, never fall back
    mlxd_group *g;
    int rc = mlxd_init(&o, &g);
    if (rc < 0) {
        printf("consumer: mlxd_init: %s: %s\n", mlxd_strerror(rc), mlxd_init_error());
        return 1;
    }
    int rank = mlxd_group_rank(g), size = mlxd_group_size(g);

    // all_sum of [r + 1, 10 (r + 1)] over ranks r: [n(n+1)/2, 10 n(n+1)/2].
    int64_t x[2] = { rank + 1, 10 * (rank + 1) }, sum[2] = { 0, 0 };
    mlxd_array xa = { .dtype = MLXD_INT64, .ndim = 1, .shape = { 2 }, .data = x };
    mlxd_array sa = { .dtype = MLXD_INT64, .ndim = 1, .shape = { 2 }, .data = sum };
    check(g, "all_sum", mlxd_all_sum(g, &xa, &sa));
    int64_t want = (int64_t) size * (size + 1) / 2;
    if (sum[0] != want || sum[1] != 10 * want) {
        printf("consumer: all_sum gave [%lld, %lld], expected [%lld, %lld]\n", (long long) sum[0],
               (long long) sum[1], (long long) want, (long long) (10 * want));
        failures++;
    }

    // all_gather of each rank's float32 scalar, into memory shared with the daemon.
    float mine = (float) rank;
    float *all = mlxd_alloc(g, (size_t) size * sizeof *all);
    if (!all) {
        printf("consumer: mlxd_alloc of %d floats failed\n", size);
        failures++;
    } else {
        mlxd_array ma = { .dtype = MLXD_FLOAT32, .ndim = 0, .data = &mine };
        mlxd_array ga = { .dtype = MLXD_FLOAT32, .data = all };
        check(g, "all_gather", mlxd_all_gather(g, &ma, &ga));
        if (ga.ndim != 1 || ga.shape[0] != size) {
            printf("consumer: all_gather of scalars gave ndim %d, shape[0] %lld\n", ga.ndim,
                   (long long) ga.shape[0]);
            failures++;
        }
        for (int r = 0; r < size; r++)
            if (all[r] != (float) r) {
                printf("consumer: all_gather element %d is %g\n", r, all[r]);
                failures++;
            }
        mlxd_free(g, all);
    }
    check(g, "barrier", mlxd_barrier(g));
    mlxd_group_free(g);

    printf("consumer rank %d of %d: %s\n", rank, size, failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
