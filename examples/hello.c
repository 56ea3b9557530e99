/* hello: the first seed program of MLX's distributed blog post, on libmlxd.
 * Every process joins the job its launcher describes (or runs alone) and
 * says which one it is. */
#include <stdio.h>
#include <stdlib.h>

#include <mlxd/mlxd.h>

int main(void) {
    mlxd_group *g;
    int r = mlxd_init(NULL, &g);
    if (r < 0) {
        fprintf(stderr, "hello: %s: %s\n", mlxd_strerror(r), mlxd_init_error());
        return EXIT_FAILURE;
    }
    printf("Process %d/%d initialized.\n", mlxd_group_rank(g) + 1, mlxd_group_size(g));
    fflush(stdout);
    mlxd_group_free(g);
    return EXIT_SUCCESS;
}
