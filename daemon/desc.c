#include "desc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

const char *shape_str(char *buf, size_t size, int ndim, const int64_t *shape) {
    size_t off = (size_t) snprintf(buf, size, "[");
    for (int i = 0; i < ndim && off < size; i++)
        off += (size_t) snprintf(buf + off, size - off, "%s%lld", i ? ", " : "", (long long) shape[i]);
    if (off < size)
        snprintf(buf + off, size - off, "]");
    return buf;
}

static bool has_tensor(int op) {
    return op != MLXD__OP_TYPE__OP_BARRIER && op != MLXD__OP_TYPE__OP_SPLIT;
}

int op_desc_check(const struct op_desc *const *d, int n, char *err, size_t errlen) {
    const struct op_desc *a = d[0];
    char sa[160], sb[160];
    for (int r = 1; r < n; r++) {
        const struct op_desc *b = d[r];
        if (b->op != a->op) {
            snprintf(err, errlen, "members disagree on the op: rank 0 called %s, rank %d called %s",
                     wire_op_name(a->op), r, wire_op_name(b->op));
            return MLXD_EMISMATCH;
        }
        if (!has_tensor(a->op))
            continue;
        if (b->dtype != a->dtype) {
            snprintf(err, errlen, "members disagree on the dtype of %s: rank 0 has %s, rank %d has %s",
                     wire_op_name(a->op), wire_dtype(a->dtype)->name, r, wire_dtype(b->dtype)->name);
            return MLXD_EMISMATCH;
        }
        if (b->ndim != a->ndim || memcmp(a->shape, b->shape, (size_t) a->ndim * sizeof a->shape[0]) != 0) {
            snprintf(err, errlen, "members disagree on the shape of %s: rank 0 has %s, rank %d has %s",
                     wire_op_name(a->op), shape_str(sa, sizeof sa, a->ndim, a->shape), r,
                     shape_str(sb, sizeof sb, b->ndim, b->shape));
            return MLXD_EMISMATCH;
        }
    }
    if (a->op == MLXD__OP_TYPE__OP_SUM_SCATTER && (a->ndim == 0 || a->shape[0] % n != 0)) {
        snprintf(err, errlen, "sum_scatter: shape[0] = %lld is not divisible by the group size %d",
                 a->ndim ? (long long) a->shape[0] : 0LL, n);
        return MLXD_EINVAL;
    }
    return 0;
}

struct split_key {
    int rank, color, key;
};

static int cmp_split(const void *a, const void *b) {
    const struct split_key *x = a, *y = b;
    if (x->color != y->color)
        return x->color < y->color ? -1 : 1;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->rank > y->rank) - (x->rank < y->rank);
}

bool op_desc_same(const struct op_desc *a, const struct op_desc *b) {
    return a->op == b->op && a->dtype == b->dtype && a->ndim == b->ndim &&
           memcmp(a->shape, b->shape, (size_t) a->ndim * sizeof a->shape[0]) == 0;
}

int split_plan(const struct op_desc *const *d, int n, int *order) {
    struct split_key *k = malloc((size_t) n * sizeof *k);
    if (!k)
        return -1;
    for (int r = 0; r < n; r++)
        k[r] = (struct split_key) { .rank = r, .color = d[r]->color, .key = d[r]->key < 0 ? r : d[r]->key };
    qsort(k, (size_t) n, sizeof *k, cmp_split);
    int groups = 0;
    for (int i = 0; i < n; i++) {
        order[i] = k[i].rank;
        groups += i == 0 || k[i].color != k[i - 1].color;
    }
    free(k);
    return groups;
}

int split_run(const struct op_desc *const *d, int n, const int *order, int start) {
    int len = 1;
    while (start + len < n && d[order[start + len]]->color == d[order[start]]->color)
        len++;
    return len;
}
