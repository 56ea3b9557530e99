/* The slice of Open MPI's C ABI that MLX's mpi backend uses
 * (mlx/distributed/mpi/mpi.cpp and mpi_declarations.h), declared here so
 * that libmlxd_mpi.so never includes Open MPI's mpi.h: handles are pointers
 * to objects the library exports or allocates, MPI_IN_PLACE is (void *)1,
 * MPI_ANY_TAG and MPI_ANY_SOURCE are -1, and MPI_Status is Open MPI's
 * ompi_status_public_t. Only the names MLX looks up with dlsym are exported
 * (see libmlxd_mpi.map); everything else in the library is hidden. */
#ifndef MLXD_MPI_ABI_H
#define MLXD_MPI_ABI_H

#include <stddef.h>

#define MLXD_MPI_EXPORT __attribute__((visibility("default")))

#define MPI_SUCCESS 0
#define MPI_ERR_OTHER 16 // Open MPI's value; never returned, errors are fatal
#define MPI_ANY_SOURCE (-1)
#define MPI_ANY_TAG (-1)
#define MPI_PROC_NULL (-2)
#define MPI_UNDEFINED (-32766)
#define MPI_IN_PLACE ((void *) 1)
#define MPI_STATUS_IGNORE ((MPI_Status *) 0)
#define MPI_MAX_LIBRARY_VERSION_STRING 256

typedef void *MPI_Comm;
typedef void *MPI_Datatype;
typedef void *MPI_Op;

typedef void(MPI_User_function)(void *invec, void *inoutvec, int *len, MPI_Datatype *datatype);

typedef struct ompi_status_public_t {
    int MPI_SOURCE;
    int MPI_TAG;
    int MPI_ERROR;
    int _cancelled;
    size_t _ucount; // bytes received
} MPI_Status;

// The functions MLX loads, with Open MPI's signatures.
MLXD_MPI_EXPORT int MPI_Get_library_version(char *version, int *resultlen);
MLXD_MPI_EXPORT int MPI_Init(int *argc, char ***argv);
MLXD_MPI_EXPORT int MPI_Finalize(void);
MLXD_MPI_EXPORT int MPI_Comm_rank(MPI_Comm comm, int *rank);
MLXD_MPI_EXPORT int MPI_Comm_size(MPI_Comm comm, int *size);
MLXD_MPI_EXPORT int MPI_Comm_split(MPI_Comm comm, int color, int key, MPI_Comm *newcomm);
MLXD_MPI_EXPORT int MPI_Comm_free(MPI_Comm *comm);
MLXD_MPI_EXPORT int MPI_Allreduce(const void *sendbuf, void *recvbuf, int count, MPI_Datatype datatype, MPI_Op op,
                                  MPI_Comm comm);
MLXD_MPI_EXPORT int MPI_Allgather(const void *sendbuf, int sendcount, MPI_Datatype sendtype, void *recvbuf,
                                  int recvcount, MPI_Datatype recvtype, MPI_Comm comm);
MLXD_MPI_EXPORT int MPI_Send(const void *buf, int count, MPI_Datatype datatype, int dest, int tag, MPI_Comm comm);
MLXD_MPI_EXPORT int MPI_Recv(void *buf, int count, MPI_Datatype datatype, int source, int tag, MPI_Comm comm,
                             MPI_Status *status);
MLXD_MPI_EXPORT int MPI_Type_contiguous(int count, MPI_Datatype oldtype, MPI_Datatype *newtype);
MLXD_MPI_EXPORT int MPI_Type_commit(MPI_Datatype *datatype);
MLXD_MPI_EXPORT int MPI_Op_create(MPI_User_function *function, int commute, MPI_Op *op);

#endif
