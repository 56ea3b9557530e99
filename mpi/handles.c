/* The objects behind MPI handles. A handle is a pointer to one of them, as
 * in Open MPI: the predefined datatypes, ops and MPI_COMM_WORLD are objects
 * this library exports under Open MPI's names (their addresses are the
 * handles MLX's mpi backend looks up with dlsym); derived datatypes, user
 * ops and split communicators are allocated and kept in registries, so that
 * a handle the library did not make (or a communicator already freed) is
 * recognised and reported instead of read. One mutex guards the registries
 * and the communicators' reference counts; it is never held across a call
 * to the daemon. */
#include <stdlib.h>

#include "mpi_impl.h"

#define PREDEFINED_TYPE(sym, mpi_name, dtype)                                                                          \
    MLXD_MPI_EXPORT struct mpi_type sym = {                                                                            \
        .name = mpi_name, .base = dtype, .nbase = 1, .predefined = true, .committed = true}

PREDEFINED_TYPE(ompi_mpi_c_bool, "MPI_C_BOOL", MLXD_BOOL);
PREDEFINED_TYPE(ompi_mpi_int8_t, "MPI_INT8_T", MLXD_INT8);
PREDEFINED_TYPE(ompi_mpi_uint8_t, "MPI_UINT8_T", MLXD_UINT8);
PREDEFINED_TYPE(ompi_mpi_int16_t, "MPI_INT16_T", MLXD_INT16);
PREDEFINED_TYPE(ompi_mpi_uint16_t, "MPI_UINT16_T", MLXD_UINT16);
PREDEFINED_TYPE(ompi_mpi_int32_t, "MPI_INT32_T", MLXD_INT32);
PREDEFINED_TYPE(ompi_mpi_uint32_t, "MPI_UINT32_T", MLXD_UINT32);
PREDEFINED_TYPE(ompi_mpi_int64_t, "MPI_INT64_T", MLXD_INT64);
PREDEFINED_TYPE(ompi_mpi_uint64_t, "MPI_UINT64_T", MLXD_UINT64);
PREDEFINED_TYPE(ompi_mpi_float, "MPI_FLOAT", MLXD_FLOAT32);
PREDEFINED_TYPE(ompi_mpi_double, "MPI_DOUBLE", MLXD_FLOAT64);
PREDEFINED_TYPE(ompi_mpi_c_complex, "MPI_C_COMPLEX", MLXD_COMPLEX64);

static const struct mpi_type *const predefined_types[] = {
    &ompi_mpi_c_bool,   &ompi_mpi_int8_t,  &ompi_mpi_uint8_t,  &ompi_mpi_int16_t,
    &ompi_mpi_uint16_t, &ompi_mpi_int32_t, &ompi_mpi_uint32_t, &ompi_mpi_int64_t,
    &ompi_mpi_uint64_t, &ompi_mpi_float,   &ompi_mpi_double,   &ompi_mpi_c_complex,
};

#define PREDEFINED_OP(sym, mpi_name, reduction)                                                                        \
    MLXD_MPI_EXPORT struct mpi_op sym = {.name = mpi_name, .red = reduction, .predefined = true}

PREDEFINED_OP(ompi_mpi_op_sum, "MPI_SUM", MPI_RED_SUM);
PREDEFINED_OP(ompi_mpi_op_max, "MPI_MAX", MPI_RED_MAX);
PREDEFINED_OP(ompi_mpi_op_min, "MPI_MIN", MPI_RED_MIN);

MLXD_MPI_EXPORT struct mpi_comm ompi_mpi_comm_world = {.lock = PTHREAD_MUTEX_INITIALIZER};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mpi_type *derived_types;
static struct mpi_op *user_ops;
static struct mpi_comm *split_comms;

const char *mpi_red_name(enum mpi_red r) {
    static const char *const names[MPI_RED_MAX_] = {"sum", "max", "min"};
    return r >= 0 && r < MPI_RED_MAX_ ? names[r] : "invalid";
}

const struct mpi_type *mpi_type_get(MPI_Datatype t) {
    const struct mpi_type *found = NULL;
    for (size_t i = 0; i < sizeof predefined_types / sizeof predefined_types[0]; i++)
        if (t == predefined_types[i])
            return predefined_types[i];
    pthread_mutex_lock(&registry_lock);
    for (struct mpi_type *d = derived_types; d && !found; d = d->next)
        if (t == d)
            found = d;
    pthread_mutex_unlock(&registry_lock);
    return found;
}

struct mpi_type *mpi_type_derive(const struct mpi_type *old, int count) {
    struct mpi_type *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->name = "a derived datatype";
    t->base = old->base;
    t->nbase = old->nbase * count;
    pthread_mutex_lock(&registry_lock);
    t->next = derived_types;
    derived_types = t;
    pthread_mutex_unlock(&registry_lock);
    return t;
}

void mpi_type_commit(struct mpi_type *t) {
    pthread_mutex_lock(&registry_lock);
    t->committed = true;
    pthread_mutex_unlock(&registry_lock);
}

const struct mpi_op *mpi_op_get(MPI_Op op) {
    const struct mpi_op *found = NULL;
    if (op == &ompi_mpi_op_sum || op == &ompi_mpi_op_max || op == &ompi_mpi_op_min)
        return op;
    pthread_mutex_lock(&registry_lock);
    for (struct mpi_op *o = user_ops; o && !found; o = o->next)
        if (op == o)
            found = o;
    pthread_mutex_unlock(&registry_lock);
    return found;
}

struct mpi_op *mpi_op_new(MPI_User_function *fn) {
    struct mpi_op *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->name = "a user op";
    o->fn = fn;
    o->identified = mpi_probe_op(fn, &o->red, &o->dtype, o->why, sizeof o->why) == 0;
    pthread_mutex_lock(&registry_lock);
    o->next = user_ops;
    user_ops = o;
    pthread_mutex_unlock(&registry_lock);
    return o;
}

struct mpi_comm *mpi_comm_get(MPI_Comm comm) {
    struct mpi_comm *found = NULL;
    pthread_mutex_lock(&registry_lock);
    if (comm == &ompi_mpi_comm_world) {
        if (ompi_mpi_comm_world.live)
            found = &ompi_mpi_comm_world;
    } else {
        for (struct mpi_comm *c = split_comms; c && !found; c = c->next)
            if (comm == c)
                found = c;
    }
    if (found)
        found->refs++;
    pthread_mutex_unlock(&registry_lock);
    return found;
}

void mpi_comm_put(struct mpi_comm *c) {
    pthread_mutex_lock(&registry_lock);
    bool last = --c->refs == 0;
    mlxd_group *g = last ? c->g : NULL;
    if (last)
        c->g = NULL;
    pthread_mutex_unlock(&registry_lock);
    if (!last)
        return;
    // Nothing else can reach c now: it left the registry (or the world was
    // finalized) before its last reference went.
    mlxd_group_free(g);
    if (c != &ompi_mpi_comm_world) {
        pthread_mutex_destroy(&c->lock);
        free(c);
    }
}

struct mpi_comm *mpi_comm_new(mlxd_group *g) {
    struct mpi_comm *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    pthread_mutex_init(&c->lock, NULL);
    c->g = g;
    c->rank = mlxd_group_rank(g);
    c->size = mlxd_group_size(g);
    c->refs = 1;
    c->live = true;
    pthread_mutex_lock(&registry_lock);
    c->next = split_comms;
    split_comms = c;
    pthread_mutex_unlock(&registry_lock);
    return c;
}

// Takes a split communicator out of the registry and drops its handle's
// reference; calls in flight keep it until they return.
int mpi_comm_release(struct mpi_comm *c) {
    if (c == &ompi_mpi_comm_world)
        return -1;
    pthread_mutex_lock(&registry_lock);
    for (struct mpi_comm **p = &split_comms; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    c->live = false;
    pthread_mutex_unlock(&registry_lock);
    mpi_comm_put(c);
    return 0;
}

void mpi_world_start(mlxd_group *g) {
    struct mpi_comm *w = &ompi_mpi_comm_world;
    pthread_mutex_lock(&registry_lock);
    w->g = g;
    w->rank = mlxd_group_rank(g);
    w->size = mlxd_group_size(g);
    w->refs = 1;
    w->live = true;
    pthread_mutex_unlock(&registry_lock);
}

void mpi_world_stop(void) {
    struct mpi_comm *w = &ompi_mpi_comm_world;
    pthread_mutex_lock(&registry_lock);
    w->live = false;
    pthread_mutex_unlock(&registry_lock);
    mpi_comm_put(w);
}
