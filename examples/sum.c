/* sum: the second seed program of MLX's distributed blog post, on libmlxd,
 * printing what examples/sum.py prints. The list [1, 2, 3, 4] is split
 * into contiguous parts (rank r takes elements r * n / size up to
 * (r + 1) * n / size: with 2 ranks [1, 2] and [3, 4]), each rank sums its
 * part, and all_sum gives every rank the total. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <mlxd/mlxd.h>

static void die(int err, const char *detail) {
    fprintf(stderr, "sum: %s: %s\n", mlxd_strerror(err), detail);
    exit(EXIT_FAILURE);
}

int main(void) {
    static const int32_t data[] = { 1, 2, 3, 4 };
    const int n = (int) (sizeof data / sizeof data[0]);
    mlxd_group *g;
    int r = mlxd_init(NULL, &g);
    if (r < 0)
        die(r, mlxd_init_error());
    int rank = mlxd_group_rank(g), size = mlxd_group_size(g);
    printf("Process %d/%d initialized.\n", rank + 1, size);

    int32_t local = 0, total = 0;
    for (int i = rank * n / size; i < (rank + 1) * n / size; i++)
        local += data[i];
    printf("Process %d computed data sum to be %d\n", rank, (int) local);
    fflush(stdout);

    mlxd_array x = { .dtype = MLXD_INT32, .ndim = 0, .data = &local };
    mlxd_array out = { .dtype = MLXD_INT32, .ndim = 0, .data = &total };
    r = mlxd_all_sum(g, &x, &out);
    if (r < 0)
        die(r, mlxd_last_error(g));
    printf("Data sum total = %d\n", (int) total);
    fflush(stdout);
    mlxd_group_free(g);
    return EXIT_SUCCESS;
}
