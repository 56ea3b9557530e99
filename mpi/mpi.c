/* libmlxd_mpi.so: the MPI functions MLX's mpi backend loads, served by
 * libmlxd (and so by the host's mlxd daemon) instead of Open MPI.
 *
 * Every entry point is thread-safe: a call on a communicator holds that
 * communicator's lock (libmlxd wants one thread at a time per group) and a
 * reference (handles.c), so calls on different communicators run at once
 * and MPI_Comm_free never waits for, nor pulls the group from under, a call
 * in flight.
 *
 * Errors follow MPI's default handler, MPI_ERRORS_ARE_FATAL, since MLX
 * ignores return codes: one line on stderr naming the call, the rank and
 * the daemon's message, then _exit(1) (not exit(): MLX's static destructors
 * would call back into this library while another thread is inside it).
 * So every function that returns, returns MPI_SUCCESS. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpi_impl.h"

enum { STATE_BEFORE_INIT, STATE_INITIALIZED, STATE_FINALIZED };

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int state = STATE_BEFORE_INIT;
static _Atomic int world_rank = -1; // for messages: the job rank, once known

static int (*const reductions[MPI_RED_MAX_])(mlxd_group *, const mlxd_array *, mlxd_array *) = {
    mlxd_all_sum,
    mlxd_all_max,
    mlxd_all_min,
};

/* ---- the fatal error path ---- */

// "mlxd: CALL on rank R[ (rank r of n in a split communicator)]: MESSAGE",
// written at once, then _exit(1).
__attribute__((noreturn, format(printf, 3, 4))) static void fatal(const char *call, const struct mpi_comm *c,
                                                                  const char *fmt, ...) {
    char rank[24] = "?", split[80] = "", msg[1536], line[1800];
    int r = atomic_load(&world_rank);
    if (r >= 0)
        snprintf(rank, sizeof rank, "%d", r);
    if (c && c != &ompi_mpi_comm_world)
        snprintf(split, sizeof split, " (rank %d of %d in a split communicator)", c->rank, c->size);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int n = snprintf(line, sizeof line, "mlxd: %s on rank %s%s: %s\n", call, rank, split, msg);
    if (n < 0 || n >= (int) sizeof line) {
        n = (int) sizeof line - 1;
        line[n - 1] = '\n';
    }
    fflush(stdout);
    while (write(STDERR_FILENO, line, (size_t) n) < 0 && errno == EINTR) {
    }
    _exit(1);
}

// A libmlxd failure: the code's name and the daemon's words for it.
__attribute__((noreturn)) static void fatal_mlxd(const char *call, const struct mpi_comm *c, int err,
                                                 const char *detail) {
    const char *s = mlxd_strerror(err);
    const char *colon = strchr(s, ':');
    if (detail && *detail && colon)
        fatal(call, c, "%.*s: %s", (int) (colon - s), s, detail);
    fatal(call, c, "%s", s);
}

/* ---- handles, checked ---- */

// The communicator behind comm, referenced for one call.
static struct mpi_comm *comm_ref(const char *call, MPI_Comm comm) {
    struct mpi_comm *c = mpi_comm_get(comm);
    if (!c) {
        int st = atomic_load(&state);
        if (comm == &ompi_mpi_comm_world && st != STATE_INITIALIZED)
            fatal(call, NULL, "MLXD_EINVAL: called %s",
                  st == STATE_BEFORE_INIT ? "before MPI_Init" : "after MPI_Finalize");
        fatal(call, NULL, "MLXD_EINVAL: communicator %p is not one this library made, or was freed", comm);
    }
    return c;
}

// The same, and locked: the call is the group's one user until comm_leave.
static struct mpi_comm *comm_enter(const char *call, MPI_Comm comm) {
    struct mpi_comm *c = comm_ref(call, comm);
    pthread_mutex_lock(&c->lock);
    return c;
}

static void comm_leave(struct mpi_comm *c) {
    pthread_mutex_unlock(&c->lock);
    mpi_comm_put(c);
}

static const struct mpi_type *type_check(const char *call, const struct mpi_comm *c, MPI_Datatype t) {
    const struct mpi_type *type = mpi_type_get(t);
    if (!type)
        fatal(call, c,
              "MLXD_EINVAL: datatype %p is not one this library knows (the predefined types MLX uses, "
              "or MPI_Type_contiguous of them)",
              t);
    if (!type->committed)
        fatal(call, c, "MLXD_EINVAL: %s %p was not committed (MPI_Type_commit)", type->name, t);
    return type;
}

static void count_check(const char *call, const struct mpi_comm *c, const char *what, int count) {
    if (count < 0)
        fatal(call, c, "MLXD_EINVAL: %s %d is negative", what, count);
}

static size_t type_bytes(const struct mpi_type *t) {
    return mlxd_dtype_size(t->base) * (size_t) t->nbase;
}

// A 1-d array of n elements of dtype at data.
static mlxd_array vec(mlxd_dtype dtype, int64_t n, const void *data) {
    mlxd_array a = {.dtype = dtype, .ndim = 1, .shape = {n}, .data = (void *) data};
    return a;
}

/* ---- joining the job ---- */

// $name as an int >= min; fallback when unset. -1 when malformed.
static int env_int(const char *name, int fallback, int min) {
    const char *s = getenv(name);
    if (!s || !*s)
        return fallback;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    return errno || *end || v < min || v > INT_MAX ? -1 : (int) v;
}

// $MLXD_MPI_OP_TIMEOUT: every op's deadline in seconds (as mlxd's
// --op-timeout); 0 when unset (the daemon's).
static int op_timeout_ms(void) {
    const char *s = getenv("MLXD_MPI_OP_TIMEOUT");
    if (!s || !*s)
        return 0;
    char *end;
    double secs = strtod(s, &end);
    if (*end || !(secs > 0) || secs * 1000 > INT_MAX)
        fatal("MPI_Init", NULL, "MLXD_EINVAL: MLXD_MPI_OP_TIMEOUT=%s is not a number of seconds above 0", s);
    return (int) ceil(secs * 1000);
}

int MPI_Init(int *argc, char ***argv) {
    static const char call[] = "MPI_Init";
    mlxd_init_opts o = MLXD_INIT_OPTS_DEFAULT;
    char job[160];
    const char *ompi_job = getenv("OMPI_MCA_ess_base_jobid");
    mlxd_group *g;

    pthread_mutex_lock(&init_lock);
    if (atomic_load(&state) != STATE_BEFORE_INIT)
        fatal(call, NULL, "MLXD_EINVAL: called %s",
              atomic_load(&state) == STATE_INITIALIZED ? "a second time" : "after MPI_Finalize");
    o.timeout_ms = op_timeout_ms();
    const char *mlxd_job = getenv("MLXD_JOB");
    if (mlxd_job && *mlxd_job) {
        // mlxctl launch (or a hand-made MLXD_* environment): libmlxd's own
        // rules, down to its singleton fallback when no daemon answers.
        atomic_store(&world_rank, env_int("MLXD_RANK", 0, 0));
    } else if (getenv("OMPI_COMM_WORLD_SIZE") && ompi_job && *ompi_job) {
        // mpirun as a launcher: the job is the mpirun job, and since nothing
        // asked for a singleton, a missing daemon is an error.
        o.rank = env_int("OMPI_COMM_WORLD_RANK", 0, 0);
        o.size = env_int("OMPI_COMM_WORLD_SIZE", 1, 1);
        atomic_store(&world_rank, o.rank);
        if (o.rank < 0 || o.size < 0)
            fatal(call, NULL, "MLXD_EINVAL: OMPI_COMM_WORLD_RANK=%s, OMPI_COMM_WORLD_SIZE=%s are not a rank and a size",
                  getenv("OMPI_COMM_WORLD_RANK"), getenv("OMPI_COMM_WORLD_SIZE"));
        snprintf(job, sizeof job, "ompi-%.100s", ompi_job);
        o.job = job;
        o.strict = o.size > 1;
    } else {
        // Neither: a world of one (MLX then runs undistributed).
        atomic_store(&world_rank, 0);
    }
    int r = mlxd_init(&o, &g);
    if (r < 0)
        fatal_mlxd(call, NULL, r, mlxd_init_error());
    int wanted = o.size > 0 ? o.size : env_int("MLXD_SIZE", 1, 1);
    if (wanted > 1 && mlxd_group_size(g) == 1 && *mlxd_init_error()) {
        // libmlxd fell back to a singleton: say so once, since this rank
        // will now run alone.
        char line[600];
        int n =
            snprintf(line, sizeof line, "mlxd: MPI_Init on rank %d: %s\n", atomic_load(&world_rank), mlxd_init_error());
        if (write(STDERR_FILENO, line, (size_t) (n < (int) sizeof line ? n : (int) sizeof line - 1)) < 0) {
        }
    }
    atomic_store(&world_rank, mlxd_group_rank(g));
    mpi_world_start(g);
    atomic_store(&state, STATE_INITIALIZED);
    pthread_mutex_unlock(&init_lock);
    return MPI_SUCCESS;
}

int MPI_Finalize(void) {
    pthread_mutex_lock(&init_lock);
    int st = atomic_load(&state);
    if (st != STATE_INITIALIZED)
        fatal("MPI_Finalize", NULL, "MLXD_EINVAL: called %s",
              st == STATE_BEFORE_INIT ? "before MPI_Init" : "a second time");
    atomic_store(&state, STATE_FINALIZED);
    // The world's group goes now, or when the last call on it returns.
    mpi_world_stop();
    pthread_mutex_unlock(&init_lock);
    return MPI_SUCCESS;
}

int MPI_Get_library_version(char *version, int *resultlen) {
    int n = snprintf(version, MPI_MAX_LIBRARY_VERSION_STRING,
                     "libmlxd_mpi (mlxd %s): the Open MPI interface of MLX's mpi backend, "
                     "served by the mlxd daemon, not by Open MPI",
                     MLXD_VERSION_STRING);
    *resultlen = n < MPI_MAX_LIBRARY_VERSION_STRING ? n : MPI_MAX_LIBRARY_VERSION_STRING - 1;
    return MPI_SUCCESS;
}

/* ---- communicators ---- */

// Rank and size never change: no lock, so they never wait for a call in
// flight on another thread.
int MPI_Comm_rank(MPI_Comm comm, int *rank) {
    struct mpi_comm *c = comm_ref("MPI_Comm_rank", comm);
    *rank = c->rank;
    mpi_comm_put(c);
    return MPI_SUCCESS;
}

int MPI_Comm_size(MPI_Comm comm, int *size) {
    struct mpi_comm *c = comm_ref("MPI_Comm_size", comm);
    *size = c->size;
    mpi_comm_put(c);
    return MPI_SUCCESS;
}

/* MPI orders the new communicator by key (any int), ties by the old rank;
 * mlxd_group_split takes a key >= 0 (below 0 means "keep the order"). So
 * the members first gather every (color, key), and each passes mlxd its
 * place among its color's members in MPI's order: dense keys 0..n-1 that
 * give the same order. MPI_UNDEFINED makes a throwaway group of one (a
 * color of its own, -1 - rank, which no valid color is) and gets
 * MPI_COMM_NULL. */
int MPI_Comm_split(MPI_Comm comm, int color, int key, MPI_Comm *newcomm) {
    static const char call[] = "MPI_Comm_split";
    struct mpi_comm *c = comm_enter(call, comm);
    if (color < 0 && color != MPI_UNDEFINED)
        fatal(call, c, "MLXD_EINVAL: color %d is negative (and not MPI_UNDEFINED)", color);
    int32_t mine[2] = {color, key};
    int32_t *all = malloc(sizeof mine * (size_t) c->size);
    if (!all)
        fatal(call, c, "MLXD_ENOMEM: out of memory");
    mlxd_array x = vec(MLXD_INT32, 2, mine), out = vec(MLXD_INT32, 2 * (int64_t) c->size, all);
    int r = mlxd_all_gather(c->g, &x, &out);
    if (r < 0)
        fatal_mlxd(call, c, r, mlxd_last_error(c->g));
    int place = 0;
    for (int i = 0; i < c->size; i++)
        if (all[2 * i] == color && (all[2 * i + 1] < key || (all[2 * i + 1] == key && i < c->rank)))
            place++;
    free(all);

    mlxd_group *ng;
    r = mlxd_group_split(c->g, color == MPI_UNDEFINED ? -1 - c->rank : color, place, &ng);
    if (r < 0)
        fatal_mlxd(call, c, r, mlxd_last_error(c->g));
    if (color == MPI_UNDEFINED) {
        mlxd_group_free(ng);
        *newcomm = NULL;
    } else {
        struct mpi_comm *n = mpi_comm_new(ng);
        if (!n)
            fatal(call, c, "MLXD_ENOMEM: out of memory");
        *newcomm = n;
    }
    comm_leave(c);
    return MPI_SUCCESS;
}

int MPI_Comm_free(MPI_Comm *comm) {
    static const char call[] = "MPI_Comm_free";
    if (!comm)
        fatal(call, NULL, "MLXD_EINVAL: comm is NULL");
    if (*comm == &ompi_mpi_comm_world)
        fatal(call, NULL, "MLXD_EINVAL: MPI_COMM_WORLD cannot be freed");
    // Works after MPI_Finalize too, as MLX may free a split group during
    // its static destruction, after the world's.
    struct mpi_comm *c = mpi_comm_get(*comm);
    if (!c)
        fatal(call, NULL, "MLXD_EINVAL: communicator %p is not one this library made, or was freed", *comm);
    mpi_comm_release(c);
    mpi_comm_put(c);
    *comm = NULL;
    return MPI_SUCCESS;
}

/* ---- datatypes and ops ---- */

int MPI_Type_contiguous(int count, MPI_Datatype oldtype, MPI_Datatype *newtype) {
    static const char call[] = "MPI_Type_contiguous";
    const struct mpi_type *old = mpi_type_get(oldtype);
    if (!old)
        fatal(call, NULL, "MLXD_EINVAL: datatype %p is not one this library knows", oldtype);
    count_check(call, NULL, "count", count);
    struct mpi_type *t = mpi_type_derive(old, count);
    if (!t)
        fatal(call, NULL, "MLXD_ENOMEM: out of memory");
    *newtype = t;
    return MPI_SUCCESS;
}

int MPI_Type_commit(MPI_Datatype *datatype) {
    static const char call[] = "MPI_Type_commit";
    const struct mpi_type *t = datatype ? mpi_type_get(*datatype) : NULL;
    if (!t)
        fatal(call, NULL, "MLXD_EINVAL: datatype %p is not one this library knows", datatype ? *datatype : NULL);
    if (!t->predefined)
        mpi_type_commit((struct mpi_type *) t);
    return MPI_SUCCESS;
}

// The function is identified here, once (probe.c); a function that is none
// of the reductions mlxd has fails where it is used, in MPI_Allreduce.
int MPI_Op_create(MPI_User_function *function, int commute, MPI_Op *op) {
    static const char call[] = "MPI_Op_create";
    if (!function)
        fatal(call, NULL, "MLXD_EINVAL: the user function is NULL");
    struct mpi_op *o = mpi_op_new(function);
    if (!o)
        fatal(call, NULL, "MLXD_ENOMEM: out of memory");
    *op = o;
    return MPI_SUCCESS;
}

/* ---- collectives and point to point ---- */

int MPI_Allreduce(const void *sendbuf, void *recvbuf, int count, MPI_Datatype datatype, MPI_Op op, MPI_Comm comm) {
    static const char call[] = "MPI_Allreduce";
    struct mpi_comm *c = comm_enter(call, comm);
    const struct mpi_type *t = type_check(call, c, datatype);
    const struct mpi_op *o = mpi_op_get(op);
    count_check(call, c, "count", count);
    if (!o)
        fatal(call, c,
              "MLXD_EINVAL: op %p is not one this library knows (MPI_SUM, MPI_MAX, MPI_MIN, or "
              "MPI_Op_create's)",
              op);
    mlxd_dtype dtype;
    if (o->predefined) {
        // A predefined op on a derived type (MLX's float16 is 2 x uint8)
        // would reduce the wrong elements: refuse it.
        if (!t->predefined)
            fatal(call, c, "MLXD_EINVAL: %s on %s (%lld x %s) is not supported: %s reduces predefined datatypes only",
                  o->name, t->name, (long long) t->nbase, mlxd_dtype_name(t->base), o->name);
        dtype = t->base;
    } else {
        if (!o->identified)
            fatal(call, c, "MLXD_EINVAL: cannot tell which reduction op %p is: %s", op, o->why);
        if (type_bytes(t) != mlxd_dtype_size(o->dtype))
            fatal(call, c, "MLXD_EINVAL: the user op (%s %s) was given %s of %zu bytes, not %zu",
                  mlxd_dtype_name(o->dtype), mpi_red_name(o->red), t->name, type_bytes(t), mlxd_dtype_size(o->dtype));
        dtype = o->dtype;
    }
    mlxd_array x = vec(dtype, count, sendbuf == MPI_IN_PLACE ? recvbuf : sendbuf);
    mlxd_array out = vec(dtype, count, recvbuf);
    int r = reductions[o->red](c->g, &x, &out);
    if (r < 0)
        fatal_mlxd(call, c, r, mlxd_last_error(c->g));
    comm_leave(c);
    return MPI_SUCCESS;
}

int MPI_Allgather(const void *sendbuf, int sendcount, MPI_Datatype sendtype, void *recvbuf, int recvcount,
                  MPI_Datatype recvtype, MPI_Comm comm) {
    static const char call[] = "MPI_Allgather";
    struct mpi_comm *c = comm_enter(call, comm);
    const struct mpi_type *rt = type_check(call, c, recvtype);
    count_check(call, c, "recvcount", recvcount);
    int64_t n = rt->nbase * recvcount;
    size_t block = type_bytes(rt) * (size_t) recvcount;
    void *copy = NULL;
    if (sendbuf == MPI_IN_PLACE) {
        // This rank's block is already in place: hand libmlxd a copy of it,
        // since its input and output must not overlap.
        if (!(copy = malloc(block ? block : 1)))
            fatal(call, c, "MLXD_ENOMEM: out of memory");
        memcpy(copy, (char *) recvbuf + block * (size_t) c->rank, block);
        sendbuf = copy;
    } else {
        const struct mpi_type *st = type_check(call, c, sendtype);
        count_check(call, c, "sendcount", sendcount);
        if (st->base != rt->base || st->nbase * sendcount != n)
            fatal(call, c, "MLXD_EINVAL: sends %d x %s (%lld %s) but receives %d x %s (%lld %s) per rank", sendcount,
                  st->name, (long long) (st->nbase * sendcount), mlxd_dtype_name(st->base), recvcount, rt->name,
                  (long long) n, mlxd_dtype_name(rt->base));
    }
    mlxd_array x = vec(rt->base, n, sendbuf), out = vec(rt->base, n * c->size, recvbuf);
    int r = mlxd_all_gather(c->g, &x, &out);
    if (r < 0)
        fatal_mlxd(call, c, r, mlxd_last_error(c->g));
    free(copy);
    comm_leave(c);
    return MPI_SUCCESS;
}

// mlxd carries no tags: messages between two ranks arrive in order. MLX
// sends with tag 0 and receives with MPI_ANY_TAG; any other tag could only
// be honoured by luck, so it is refused.
static void tag_check(const char *call, const struct mpi_comm *c, int tag, bool any_ok) {
    if (tag != 0 && !(any_ok && tag == MPI_ANY_TAG))
        fatal(call, c, "MLXD_EINVAL: tag %d is not supported: mlxd carries no tags, only tag 0%s", tag,
              any_ok ? " and MPI_ANY_TAG" : "");
}

int MPI_Send(const void *buf, int count, MPI_Datatype datatype, int dest, int tag, MPI_Comm comm) {
    static const char call[] = "MPI_Send";
    struct mpi_comm *c = comm_enter(call, comm);
    const struct mpi_type *t = type_check(call, c, datatype);
    count_check(call, c, "count", count);
    tag_check(call, c, tag, false);
    if (dest != MPI_PROC_NULL) {
        mlxd_array x = vec(t->base, t->nbase * count, buf);
        int r = mlxd_send(c->g, &x, dest);
        if (r < 0)
            fatal_mlxd(call, c, r, mlxd_last_error(c->g));
    }
    comm_leave(c);
    return MPI_SUCCESS;
}

int MPI_Recv(void *buf, int count, MPI_Datatype datatype, int source, int tag, MPI_Comm comm, MPI_Status *status) {
    static const char call[] = "MPI_Recv";
    struct mpi_comm *c = comm_enter(call, comm);
    const struct mpi_type *t = type_check(call, c, datatype);
    count_check(call, c, "count", count);
    tag_check(call, c, tag, true);
    if (source == MPI_ANY_SOURCE)
        fatal(call, c, "MLXD_EINVAL: MPI_ANY_SOURCE is not supported: mlxd receives from a given rank");
    size_t bytes = 0;
    if (source != MPI_PROC_NULL) {
        mlxd_array out = vec(t->base, t->nbase * count, buf);
        int r = mlxd_recv(c->g, &out, source);
        if (r < 0)
            fatal_mlxd(call, c, r, mlxd_last_error(c->g));
        bytes = type_bytes(t) * (size_t) count;
    }
    if (status != MPI_STATUS_IGNORE) {
        status->MPI_SOURCE = source;
        status->MPI_TAG = source == MPI_PROC_NULL ? MPI_ANY_TAG : 0;
        status->MPI_ERROR = MPI_SUCCESS;
        status->_cancelled = 0;
        status->_ucount = bytes;
    }
    comm_leave(c);
    return MPI_SUCCESS;
}
