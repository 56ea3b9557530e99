/* What members ask for in a collective, and the two decisions made from all
 * of them: do they agree, and how does a split regroup them. Used for local
 * groups by coll.c and for spanning groups by the coordinator (coord.c), so a
 * disagreement reads the same wherever it is found. Pure functions. */
#ifndef MLXD_DESC_H
#define MLXD_DESC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mlxd/mlxd.h"

struct op_desc {
    int op;                         // Mlxd__OpType
    uint32_t dtype;
    int ndim;
    int64_t shape[MLXD_MAX_NDIM];
    int color, key;                 // split
};

// Checks the descriptors of all members of a group of size n (d[r] is rank
// r's): the same op, and for ops with tensors the same dtype and shape; for
// sum_scatter, shape[0] divisible by n. Returns 0, or MLXD_EMISMATCH /
// MLXD_EINVAL with the first problem named in err ("members disagree on the
// op: rank 0 called all_sum, rank 1 called all_max").
int op_desc_check(const struct op_desc *const *d, int n, char *err, size_t errlen);

// Whether two members asked for the same tensor op: op, dtype and shape.
bool op_desc_same(const struct op_desc *a, const struct op_desc *b);

// A split of n members: fills order[] with the members (their ranks) in the
// order of their new groups and new ranks (by color, then key, then old rank;
// key < 0 counts as the old rank), and returns the number of new groups.
// The members of one color form one group: split_run() gives each run's
// length. Returns -1 when out of memory.
int split_plan(const struct op_desc *const *d, int n, int *order);

// The length of the color run that starts at order[start].
int split_run(const struct op_desc *const *d, int n, const int *order, int start);

// "[2, 3]" into buf.
const char *shape_str(char *buf, size_t size, int ndim, const int64_t *shape);

#endif
