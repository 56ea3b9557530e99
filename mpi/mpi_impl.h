/* Private header of libmlxd_mpi.so: the objects behind the MPI handles and
 * the prototypes its files share. handles.c owns datatypes, ops and
 * communicators (the exported predefined ones and the registries of the
 * ones made at run time); probe.c tells what a user op computes; mpi.c has
 * the entry points and the fatal error path. */
#ifndef MLXD_MPI_IMPL_H
#define MLXD_MPI_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "mlxd/mlxd.h"
#include "mpi_abi.h"

enum mpi_red { MPI_RED_SUM, MPI_RED_MAX, MPI_RED_MIN, MPI_RED_MAX_ };

// A datatype: nbase elements of the mlxd dtype base (1 for the predefined
// ones; MPI_Type_contiguous multiplies). Predefined ones are exported
// objects; derived ones live until the process exits (MLX never frees them,
// and the library exports no MPI_Type_free).
struct mpi_type {
    const char *name; // "MPI_FLOAT", or "a derived datatype"
    mlxd_dtype base;
    int64_t nbase;
    bool predefined, committed;
    struct mpi_type *next; // the registry of derived types
};

// A reduction: MPI_SUM/MAX/MIN (predefined), or a user function that
// probe.c identified as one reduction on one dtype (or could not: why says
// so, and using it is fatal). Lives until the process exits.
struct mpi_op {
    const char *name; // "MPI_SUM", or "a user op"
    enum mpi_red red;
    bool predefined, identified;
    mlxd_dtype dtype; // a user op's element type
    MPI_User_function *fn;
    char why[256];
    struct mpi_op *next;
};

// A communicator: an mlxd group, used by one call at a time (lock), kept
// alive by its handle and by every call in flight on it (refs), so that
// MPI_Comm_free while a call runs frees the group once that call returns.
struct mpi_comm {
    pthread_mutex_t lock; // held for the length of one call on g
    mlxd_group *g;
    int rank, size;        // g's, read without the lock
    int refs;              // under the registry lock
    bool live;             // world: between MPI_Init and MPI_Finalize
    struct mpi_comm *next; // the registry of split communicators
};

extern struct mpi_comm ompi_mpi_comm_world;

/* handles.c. The *_get functions return NULL for a handle the library did
 * not make (or a communicator already freed or finalized); mpi_comm_get
 * takes a reference that mpi_comm_put drops, freeing the group with the
 * last one. */
const char *mpi_red_name(enum mpi_red r);
const struct mpi_type *mpi_type_get(MPI_Datatype t);
struct mpi_type *mpi_type_derive(const struct mpi_type *old, int count);
void mpi_type_commit(struct mpi_type *t);
const struct mpi_op *mpi_op_get(MPI_Op op);
struct mpi_op *mpi_op_new(MPI_User_function *fn);
struct mpi_comm *mpi_comm_get(MPI_Comm comm);
void mpi_comm_put(struct mpi_comm *c);
struct mpi_comm *mpi_comm_new(mlxd_group *g);
int mpi_comm_release(struct mpi_comm *c); // the handle's reference; -1 for the world
void mpi_world_start(mlxd_group *g);
void mpi_world_stop(void);

/* probe.c: which reduction on which of float16, bfloat16 and complex64 fn
 * computes, told from its results on probe values. 0 and the answer, or -1
 * with the reason in why. */
int mpi_probe_op(MPI_User_function *fn, enum mpi_red *ret_red, mlxd_dtype *ret_dtype, char *why, size_t why_size);

#endif
