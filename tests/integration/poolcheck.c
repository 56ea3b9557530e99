/* poolcheck: sends whose receiver already waits, for the daemon's one-copy
 * path. Rank 1 posts each receive first and says so with a file
 * ("recv.K"); the test sees it waiting in the daemon and answers with
 * "posted.K"; only then does rank 0 send. Every case is a float32 tensor of
 * a small or a large size, from ordinary or mlxd_alloc memory into ordinary
 * or mlxd_alloc memory, and its bytes are checked.
 *
 *   MLXD_JOB=J MLXD_RANK=R MLXD_SIZE=2 MLXT_DIR=D poolcheck
 * Rendezvous files are D/J.NAME. Exit status 0 when every case matched. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testclient.h"

static const int64_t sizes[] = { 2, 1 << 20 };   // elements: 8 bytes, 4 MiB

static float value(int k, int64_t i) {
    return (float) ((i * 7 + k * 131) % 4093);
}

int main(void) {
    struct tc t = { .failures = 0 };
    const char *dir = getenv("MLXT_DIR"), *job = getenv("MLXD_JOB");
    mlxd_group *g;
    if (!dir || !job) {
        fprintf(stderr, "poolcheck: MLXT_DIR and MLXD_JOB must be set\n");
        return 2;
    }
    snprintf(t.files, sizeof t.files, "%s/%s.", dir, job);
    int rc = mlxd_init(NULL, &g);
    if (rc != MLXD_OK) {
        printf("FAIL poolcheck: mlxd_init: %s\n", mlxd_init_error());
        return 1;
    }
    int rank = mlxd_group_rank(g);
    snprintf(t.prefix, sizeof t.prefix, "poolcheck rank %d", rank);
    int k = 0;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
        for (int from_shm = 0; from_shm < 2; from_shm++)
            for (int to_shm = 0; to_shm < 2; to_shm++, k++) {
                int64_t n = sizes[si];
                size_t nbytes = (size_t) n * sizeof(float);
                bool shm = rank == 0 ? from_shm : to_shm;
                float *buf = shm ? mlxd_alloc(g, nbytes) : malloc(nbytes);
                char name[32];
                if (!buf) {
                    tc_fail(&t, "case %d: no memory for %zu bytes", k, nbytes);
                    return tc_finish(&t);
                }
                mlxd_array a = { MLXD_FLOAT32, 1, { n }, buf };
                if (rank == 0) {
                    for (int64_t i = 0; i < n; i++)
                        buf[i] = value(k, i);
                    snprintf(name, sizeof name, "posted.%d", k);
                    tc_wait_file(&t, name, 60000);
                    rc = mlxd_send(g, &a, 1);
                    if (rc != MLXD_OK)
                        tc_fail(&t, "case %d: send of %zu bytes: %s", k, nbytes, mlxd_strerror(rc));
                } else {
                    memset(buf, 0xA5, nbytes);
                    snprintf(name, sizeof name, "recv.%d", k);
                    tc_touch(&t, name);
                    rc = mlxd_recv(g, &a, 0);
                    if (rc != MLXD_OK)
                        tc_fail(&t, "case %d: recv of %zu bytes: %s", k, nbytes, mlxd_strerror(rc));
                    for (int64_t i = 0; rc == MLXD_OK && i < n; i++)
                        if (buf[i] != value(k, i)) {
                            tc_fail(&t, "case %d (%zu bytes, %s to %s): element %lld is %g, expected %g", k, nbytes,
                                    from_shm ? "shm" : "heap", to_shm ? "shm" : "heap", (long long) i, buf[i],
                                    value(k, i));
                            break;
                        }
                }
                if (shm)
                    mlxd_free(g, buf);
                else
                    free(buf);
            }
    tc_note(&t, "%d cases", k);
    mlxd_group_free(g);
    return tc_finish(&t);
}
