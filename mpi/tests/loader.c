/* loader: a stand-in for MLX's mpi backend (mlx/distributed/mpi/mpi.cpp).
 * It loads $MLX_MPI_LIBNAME exactly as MLX does (dlopen RTLD_NOW |
 * RTLD_GLOBAL, the same names through dlsym, the version check for
 * "Open MPI"), declares the ABI as MLX does (not from any header of the
 * library), makes float16 and bfloat16 as MPI_Type_contiguous(2, uint8),
 * registers reduction functions written like MLX's (std::max(*acc, *in)
 * and friends), and calls the library with MLX's call patterns (MPI_IN_PLACE
 * when input and output are one buffer, all_gather counts, recv with
 * MPI_ANY_TAG, split with the rank as key when none is given). It never
 * links libmlxd: the library must find it by itself.
 *
 *   loader [check]   every op on every dtype MLX maps, splits, p2p
 *   loader single    a world of one (no job, or no daemon)
 *   loader wrap      uint8 sum of 85 + 86 + 87 on three ranks gives 2
 *   loader missing   the last rank never calls; the others must die
 *   loader killed    the last rank is SIGKILLed after one op
 *   loader badop     a user op that is none of MLX's reductions
 *   loader badtype   MPI_SUM on the derived float16 type
 *   loader threads   two threads at once, and a free while a call runs
 *                    (with $MLXT_DIR/go-free from the test script)
 *
 * Lines on stdout; "FAIL ..." lines and exit 2 for a wrong result, exit 3
 * when the library returned where it must have failed. */
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- the ABI, as MLX declares it (mpi_declarations.h) ---- */

#define MPI_SUCCESS 0
#define MPI_ANY_TAG -1
#define MPI_IN_PLACE ((void *) 1)
#define MPI_UNDEFINED (-32766) // Open MPI's; MLX never uses it
#define MPI_MAX_LIBRARY_VERSION_STRING 256

typedef void *MPI_Comm;
typedef void *MPI_Datatype;
typedef void *MPI_Op;
typedef void(MPI_User_function)(void *, void *, int *, MPI_Datatype *);
typedef struct ompi_status_public_t {
    int MPI_SOURCE;
    int MPI_TAG;
    int MPI_ERROR;
    int _cancelled;
    size_t _ucount;
} MPI_Status;

#include "mlx_ops.h"

static struct {
    void *handle;
    int (*init)(int *, char ***);
    int (*finalize)(void);
    int (*rank)(MPI_Comm, int *);
    int (*size)(MPI_Comm, int *);
    int (*all_reduce)(const void *, void *, int, MPI_Datatype, MPI_Op, MPI_Comm);
    int (*all_gather)(const void *, int, MPI_Datatype, void *, int, MPI_Datatype, MPI_Comm);
    int (*comm_split)(MPI_Comm, int, int, MPI_Comm *);
    int (*comm_free)(MPI_Comm *);
    int (*send)(const void *, int, MPI_Datatype, int, int, MPI_Comm);
    int (*recv)(void *, int, MPI_Datatype, int, int, MPI_Comm, MPI_Status *);
    int (*type_contiguous)(int, MPI_Datatype, MPI_Datatype *);
    int (*type_commit)(MPI_Datatype *);
    int (*op_create)(MPI_User_function *, int, MPI_Op *);
    MPI_Comm world;
    MPI_Op op_sum, op_max, op_min;
    MPI_Op op_sum_f16, op_sum_bf16, op_max_f16, op_max_bf16, op_max_c64, op_min_f16, op_min_bf16, op_min_c64;
    MPI_Datatype t_bool, t_i8, t_u8, t_i16, t_u16, t_i32, t_u32, t_i64, t_u64, t_f32, t_f64, t_c64;
    MPI_Datatype t_f16, t_bf16;
} mpi;

static int rank = -1, size = -1, failures, checks;
static const char *mode = "check";

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
    va_list ap;
    printf("loader %s rank %d: ", mode, rank);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

#define FAIL(...) (failures++, printf("FAIL "), say(__VA_ARGS__))

/* ---- loading, as MLXWrapper's constructor ---- */

#define LOAD(sym, var)                                                                                                 \
    do {                                                                                                               \
        *(void **) &(var) = dlsym(mpi.handle, #sym);                                                                   \
        const char *e_ = dlerror();                                                                                    \
        if (e_) {                                                                                                      \
            say("dlsym(%s) failed: %s (MLX would run undistributed)", #sym, e_);                                       \
            exit(2);                                                                                                   \
        }                                                                                                              \
    } while (0)

// The handle objects: MLX loads the symbol's address as the handle.
#define LOAD_OBJECT(sym, var) LOAD(sym, var)

static void load(void) {
    const char *name = getenv("MLX_MPI_LIBNAME");
    mpi.handle = dlopen(name ? name : "libmpi.so", RTLD_NOW | RTLD_GLOBAL);
    if (!mpi.handle) {
        say("dlopen failed: %s (MLX would run undistributed)", dlerror());
        exit(2);
    }
    int (*get_version)(char *, int *);
    LOAD(MPI_Get_library_version, get_version);
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    get_version(version, &len);
    if (len <= 0 || len >= MPI_MAX_LIBRARY_VERSION_STRING || !strstr(version, "Open MPI")) {
        say("MPI_Get_library_version gave \"%.*s\": MLX requires \"Open MPI\" in it", len, version);
        exit(2);
    }
    LOAD(MPI_Init, mpi.init);
    LOAD(MPI_Finalize, mpi.finalize);
    LOAD(MPI_Comm_rank, mpi.rank);
    LOAD(MPI_Comm_size, mpi.size);
    LOAD(MPI_Comm_split, mpi.comm_split);
    LOAD(MPI_Comm_free, mpi.comm_free);
    LOAD(MPI_Allreduce, mpi.all_reduce);
    LOAD(MPI_Allgather, mpi.all_gather);
    LOAD(MPI_Send, mpi.send);
    LOAD(MPI_Recv, mpi.recv);
    LOAD(MPI_Type_contiguous, mpi.type_contiguous);
    LOAD(MPI_Type_commit, mpi.type_commit);
    LOAD(MPI_Op_create, mpi.op_create);
    LOAD_OBJECT(ompi_mpi_comm_world, mpi.world);
    LOAD_OBJECT(ompi_mpi_op_sum, mpi.op_sum);
    LOAD_OBJECT(ompi_mpi_op_max, mpi.op_max);
    LOAD_OBJECT(ompi_mpi_op_min, mpi.op_min);
    LOAD_OBJECT(ompi_mpi_c_bool, mpi.t_bool);
    LOAD_OBJECT(ompi_mpi_int8_t, mpi.t_i8);
    LOAD_OBJECT(ompi_mpi_uint8_t, mpi.t_u8);
    LOAD_OBJECT(ompi_mpi_int16_t, mpi.t_i16);
    LOAD_OBJECT(ompi_mpi_uint16_t, mpi.t_u16);
    LOAD_OBJECT(ompi_mpi_int32_t, mpi.t_i32);
    LOAD_OBJECT(ompi_mpi_uint32_t, mpi.t_u32);
    LOAD_OBJECT(ompi_mpi_int64_t, mpi.t_i64);
    LOAD_OBJECT(ompi_mpi_uint64_t, mpi.t_u64);
    LOAD_OBJECT(ompi_mpi_float, mpi.t_f32);
    LOAD_OBJECT(ompi_mpi_double, mpi.t_f64);
    LOAD_OBJECT(ompi_mpi_c_complex, mpi.t_c64);
}

// MLX's init_safe: MPI_Init, then the custom types and ops.
static void init(void) {
    mpi.init(NULL, NULL);
    mpi.type_contiguous(2, mpi.t_u8, &mpi.t_f16);
    mpi.type_commit(&mpi.t_f16);
    mpi.type_contiguous(2, mpi.t_u8, &mpi.t_bf16);
    mpi.type_commit(&mpi.t_bf16);
    mpi.op_create(&sum_f16, 1, &mpi.op_sum_f16);
    mpi.op_create(&sum_bf16, 1, &mpi.op_sum_bf16);
    mpi.op_create(&max_f16, 1, &mpi.op_max_f16);
    mpi.op_create(&max_bf16, 1, &mpi.op_max_bf16);
    mpi.op_create(&max_c64, 1, &mpi.op_max_c64);
    mpi.op_create(&min_f16, 1, &mpi.op_min_f16);
    mpi.op_create(&min_bf16, 1, &mpi.op_min_bf16);
    mpi.op_create(&min_c64, 1, &mpi.op_min_c64);
    mpi.size(mpi.world, &size);
    mpi.rank(mpi.world, &rank);
}

/* ---- the dtypes MLX maps, and their expected results ---- */

enum kind { K_BOOL, K_INT, K_UINT, K_FLOAT, K_F16, K_BF16, K_C64 };
enum red { SUM, MAX, MIN };
static const char *const red_names[] = {"all_sum", "all_max", "all_min"};

struct dt {
    const char *name;
    enum kind kind;
    size_t size;
    MPI_Datatype *type;
    MPI_Op *ops[3]; // MLX's op_sum(), op_max(), op_min() for this dtype
};

#define BUILTIN_OPS                                                                                                    \
    { &mpi.op_sum, &mpi.op_max, &mpi.op_min }
static const struct dt dtypes[] = {
    {"bool", K_BOOL, 1, &mpi.t_bool, BUILTIN_OPS},
    {"int8", K_INT, 1, &mpi.t_i8, BUILTIN_OPS},
    {"uint8", K_UINT, 1, &mpi.t_u8, BUILTIN_OPS},
    {"int16", K_INT, 2, &mpi.t_i16, BUILTIN_OPS},
    {"uint16", K_UINT, 2, &mpi.t_u16, BUILTIN_OPS},
    {"int32", K_INT, 4, &mpi.t_i32, BUILTIN_OPS},
    {"uint32", K_UINT, 4, &mpi.t_u32, BUILTIN_OPS},
    {"int64", K_INT, 8, &mpi.t_i64, BUILTIN_OPS},
    {"uint64", K_UINT, 8, &mpi.t_u64, BUILTIN_OPS},
    {"float32", K_FLOAT, 4, &mpi.t_f32, BUILTIN_OPS},
    {"float64", K_FLOAT, 8, &mpi.t_f64, BUILTIN_OPS},
    {"complex64", K_C64, 8, &mpi.t_c64, {&mpi.op_sum, &mpi.op_max_c64, &mpi.op_min_c64}},
    {"float16", K_F16, 2, &mpi.t_f16, {&mpi.op_sum_f16, &mpi.op_max_f16, &mpi.op_min_f16}},
    {"bfloat16", K_BF16, 2, &mpi.t_bf16, {&mpi.op_sum_bf16, &mpi.op_max_bf16, &mpi.op_min_bf16}},
};
#define N_DTYPES (sizeof dtypes / sizeof dtypes[0])
#define N_ELEMS 13

static int64_t load_int(const struct dt *d, const void *p) {
    switch (d->size) {
    case 1:
        return d->kind == K_INT ? *(const int8_t *) p : *(const uint8_t *) p;
    case 2:
        return d->kind == K_INT ? *(const int16_t *) p : *(const uint16_t *) p;
    case 4:
        return d->kind == K_INT ? (int64_t) * (const int32_t *) p : (int64_t) * (const uint32_t *) p;
    default:
        return *(const int64_t *) p;
    }
}

static void store_int(const struct dt *d, void *p, uint64_t v) {
    switch (d->size) {
    case 1:
        *(uint8_t *) p = (uint8_t) v;
        break;
    case 2:
        *(uint16_t *) p = (uint16_t) v;
        break;
    case 4:
        *(uint32_t *) p = (uint32_t) v;
        break;
    default:
        *(uint64_t *) p = v;
        break;
    }
}

static double load_float(const struct dt *d, const void *p) {
    switch (d->kind) {
    case K_F16:
        return (double) *(const f16 *) p;
    case K_BF16:
        return bf16_to_float(*(const bf16 *) p);
    default:
        return d->size == 4 ? *(const float *) p : *(const double *) p;
    }
}

static void store_float(const struct dt *d, void *p, double v) {
    switch (d->kind) {
    case K_F16:
        *(f16 *) p = (f16) v;
        break;
    case K_BF16:
        *(bf16 *) p = bf16_from_float((float) v);
        break;
    default:
        if (d->size == 4)
            *(float *) p = (float) v;
        else
            *(double *) p = v;
    }
}

// Rank r's element i for reduction `red`: small values whose sums are
// exact in every type (so every order of summing gives the same bits),
// except integer sums, which wrap as C's unsigned arithmetic. For float16
// and bfloat16 max/min, rank 0 has 0xfe00 at element 1 and 0x7e00 at
// element 2: NaNs in float16 (mlxd's NaN wins), -2^125 and 2^125 in
// bfloat16, so results show which of the two types the library took.
static void gen(const struct dt *d, enum red red, int r, int i, void *p) {
    switch (d->kind) {
    case K_BOOL:
        *(uint8_t *) p = i % 4 == 0 || (r + i) % 3 == 0;
        break;
    case K_INT:
        store_int(d, p, (uint64_t) ((int64_t) (r + 1) * (i + 1) * (i % 2 ? -1 : 1) + 3 * r));
        break;
    case K_UINT:
        store_int(d, p, (uint64_t) (r + 1) * (uint64_t) (i + 1) * 37u + (uint64_t) r);
        break;
    case K_FLOAT:
        store_float(d, p, (((r + 1) * (i + 1)) % 7 - 3) * 0.5);
        break;
    case K_F16:
    case K_BF16:
        if (red != SUM && r == 0 && (i == 1 || i == 2))
            *(uint16_t *) p = i == 1 ? 0xfe00 : 0x7e00;
        else
            store_float(d, p, ((r + 1) * (i + 3)) % 11 - 5);
        break;
    case K_C64:
        *(c64 *) p = (c64){(float) ((r + i) % 3), (float) ((r * 2 + i) % 5 - 2)};
        break;
    }
}

// mlxd's reduction of one element: acc = red(acc, x). Integers wrap, bool
// sum and max are or and min is and, NaN wins max and min (keeping its
// bits), complex64 is ordered by real part, then imaginary part.
static void combine(const struct dt *d, enum red red, void *acc, const void *x) {
    switch (d->kind) {
    case K_BOOL: {
        uint8_t a = *(uint8_t *) acc, b = *(const uint8_t *) x;
        *(uint8_t *) acc = red == MIN ? (a && b) : (a || b);
        break;
    }
    case K_INT:
    case K_UINT: {
        int64_t a = load_int(d, acc), b = load_int(d, x);
        bool less = d->kind == K_UINT && d->size == 8 ? (uint64_t) a < (uint64_t) b : a < b;
        if (red == SUM)
            store_int(d, acc, (uint64_t) a + (uint64_t) b);
        else if ((red == MAX && less) || (red == MIN && !less && a != b))
            store_int(d, acc, (uint64_t) b);
        break;
    }
    case K_FLOAT:
    case K_F16:
    case K_BF16: {
        double a = load_float(d, acc), b = load_float(d, x);
        if (red == SUM)
            store_float(d, acc, a + b);
        else if (!isnan(a) && (isnan(b) || (red == MAX ? b > a : b < a)))
            memcpy(acc, x, d->size);
        break;
    }
    case K_C64: {
        c64 a = *(c64 *) acc, b = *(const c64 *) x;
        if (red == SUM)
            *(c64 *) acc = (c64){a.re + b.re, a.im + b.im};
        else if (red == MAX ? c64_less(a, b) : c64_less(b, a))
            *(c64 *) acc = b;
        break;
    }
    }
}

static void fill(const struct dt *d, enum red red, int r, void *buf, int n) {
    for (int i = 0; i < n; i++)
        gen(d, red, r, i, (char *) buf + (size_t) i * d->size);
}

static bool same(const struct dt *d, const char *what, const void *got, const void *want, int n) {
    checks++;
    for (int i = 0; i < n; i++) {
        const uint8_t *g = (const uint8_t *) got + (size_t) i * d->size,
                      *w = (const uint8_t *) want + (size_t) i * d->size;
        if (memcmp(g, w, d->size) != 0) {
            char gs[40] = "", ws[40] = "";
            for (size_t b = d->size; b-- > 0;) {
                snprintf(gs + strlen(gs), sizeof gs - strlen(gs), "%02x", g[b]);
                snprintf(ws + strlen(ws), sizeof ws - strlen(ws), "%02x", w[b]);
            }
            FAIL("%s %s: element %d is 0x%s, expected 0x%s", d->name, what, i, gs, ws);
            return false;
        }
    }
    return true;
}

/* ---- the checks ---- */

// all_sum/max/min as MLX's MPIGroup issues them, out of place and in place.
static void check_reductions(MPI_Comm comm, int crank, int csize, const int *world_of) {
    uint8_t in[N_ELEMS * 8], out[N_ELEMS * 8], want[N_ELEMS * 8], x[N_ELEMS * 8];
    for (size_t t = 0; t < N_DTYPES; t++) {
        const struct dt *d = &dtypes[t];
        for (enum red red = SUM; red <= MIN; red++) {
            fill(d, red, world_of[0], want, N_ELEMS);
            for (int r = 1; r < csize; r++) {
                fill(d, red, world_of[r], x, N_ELEMS);
                for (int i = 0; i < N_ELEMS; i++)
                    combine(d, red, want + (size_t) i * d->size, x + (size_t) i * d->size);
            }
            for (int inplace = 0; inplace < 2; inplace++) {
                char what[64];
                snprintf(what, sizeof what, "%s%s", red_names[red], inplace ? " in place" : "");
                fill(d, red, world_of[crank], in, N_ELEMS);
                void *input = in, *output = out;
                if (inplace) {
                    memcpy(out, in, sizeof in);
                    input = out;
                }
                memset(inplace ? in : out, 0xa5, sizeof out);
                mpi.all_reduce(input == output ? MPI_IN_PLACE : input, output, N_ELEMS, *d->type, *d->ops[red], comm);
                same(d, what, out, want, N_ELEMS);
            }
        }
    }
}

static void check_gather_and_p2p(MPI_Comm comm, int crank, int csize, const int *world_of) {
    uint8_t in[N_ELEMS * 8], got[4 * N_ELEMS * 8], want[4 * N_ELEMS * 8];
    for (size_t t = 0; t < N_DTYPES; t++) {
        const struct dt *d = &dtypes[t];
        fill(d, SUM, world_of[crank], in, N_ELEMS);
        for (int r = 0; r < csize; r++)
            fill(d, SUM, world_of[r], want + (size_t) r * N_ELEMS * d->size, N_ELEMS);
        if (csize > 1) {
            // A ring: every rank sends first, then receives (mlxd's send
            // returns once the daemon holds the data).
            int to = (crank + 1) % csize, from = (crank + csize - 1) % csize;
            MPI_Status st = {-7, -7, -7, -7, 7};
            mpi.send(in, N_ELEMS, *d->type, to, 0, comm);
            memset(got, 0xa5, sizeof got);
            mpi.recv(got, N_ELEMS, *d->type, from, MPI_ANY_TAG, comm, &st);
            same(d, "send/recv", got, want + (size_t) from * N_ELEMS * d->size, N_ELEMS);
            if (st.MPI_SOURCE != from || st.MPI_ERROR != MPI_SUCCESS || st._ucount != N_ELEMS * d->size)
                FAIL("%s recv: status source %d error %d count %zu, expected %d, 0, %zu", d->name, st.MPI_SOURCE,
                     st.MPI_ERROR, st._ucount, from, N_ELEMS * d->size);
        }
        // After the ring, so that no rank frees the communicator before
        // every message arrived.
        memset(got, 0xa5, sizeof got);
        mpi.all_gather(in, N_ELEMS, *d->type, got, N_ELEMS, *d->type, comm);
        same(d, "all_gather", got, want, N_ELEMS * csize);
    }
}

static void check_comm(MPI_Comm comm, const char *what, int want_rank, int want_size, int *world_of) {
    int r = -1, s = -1;
    mpi.rank(comm, &r);
    mpi.size(comm, &s);
    if (r != want_rank || s != want_size) {
        FAIL("%s: rank %d of %d, expected %d of %d", what, r, s, want_rank, want_size);
        return;
    }
    // Who is who: gather the world ranks.
    int32_t me = rank, all[64];
    mpi.all_gather(&me, 1, mpi.t_i32, all, 1, mpi.t_i32, comm);
    for (int i = 0; i < s; i++)
        if (all[i] != world_of[i])
            FAIL("%s: rank %d is world rank %d, expected %d", what, i, all[i], world_of[i]);
}

// MLX's split: key < 0 becomes the rank. Then MPI's keys: any int, ties
// by old rank, negative keys too.
static void check_splits(void) {
    int world_of[64] = {0};
    MPI_Comm c;

    // color rank % 2, no key given (MLX passes the rank).
    int n = 0, me = -1;
    for (int r = 0; r < size; r++)
        if (r % 2 == rank % 2) {
            if (r == rank)
                me = n;
            world_of[n++] = r;
        }
    mpi.comm_split(mpi.world, rank % 2, rank, &c);
    check_comm(c, "split(rank % 2)", me, n, world_of);
    check_reductions(c, me, n, world_of);
    check_gather_and_p2p(c, me, n, world_of);

    // Nested: split the split, everyone in one color, reversed by negative keys.
    MPI_Comm rev;
    int rev_of[64];
    for (int i = 0; i < n; i++)
        rev_of[i] = world_of[n - 1 - i];
    mpi.comm_split(c, 5, -100 - me, &rev);
    check_comm(rev, "split(5, -100 - rank) of split(rank % 2)", n - 1 - me, n, rev_of);
    mpi.comm_free(&rev);
    if (rev != NULL)
        FAIL("MPI_Comm_free did not set the handle to MPI_COMM_NULL");
    mpi.comm_free(&c);

    // The world reversed by keys from INT_MAX down, and ties keep the order.
    for (int r = 0; r < size; r++)
        world_of[r] = size - 1 - r;
    mpi.comm_split(mpi.world, 0, 2147483647 - rank, &c);
    check_comm(c, "split(0, INT_MAX - rank)", size - 1 - rank, size, world_of);
    mpi.comm_free(&c);
    for (int r = 0; r < size; r++)
        world_of[r] = r;
    mpi.comm_split(mpi.world, 3, 7, &c);
    check_comm(c, "split(3, 7)", rank, size, world_of);
    check_gather_and_p2p(c, rank, size, world_of);
    mpi.comm_free(&c);

    // Python drops a split group at once: split and free, with no op
    // between, again and again.
    for (int k = 0; k < 5; k++) {
        mpi.comm_split(mpi.world, (rank + k) % 2, -1, &c);
        mpi.comm_free(&c);
    }

    // MPI_UNDEFINED (ranks 0, 3): MPI_COMM_NULL; the others, reversed.
    n = 0;
    for (int r = size - 1; r >= 0; r--)
        if (r % 3 != 0)
            world_of[n++] = r;
    c = &n;
    mpi.comm_split(mpi.world, rank % 3 ? 1 : MPI_UNDEFINED, -rank, &c);
    if (rank % 3 == 0) {
        if (c != NULL)
            FAIL("split with MPI_UNDEFINED gave %p, not MPI_COMM_NULL", c);
        checks++;
    } else {
        for (me = 0; world_of[me] != rank; me++) {
        }
        check_comm(c, "split(MPI_UNDEFINED or 1, -rank)", me, n, world_of);
        mpi.comm_free(&c);
    }
}

static int check(void) {
    int world_of[64];
    if (size < 2 || size > 4) {
        say("needs 2 to 4 ranks, got %d", size);
        return 2;
    }
    for (int r = 0; r < size; r++)
        world_of[r] = r;
    check_reductions(mpi.world, rank, size, world_of);
    check_gather_and_p2p(mpi.world, rank, size, world_of);
    check_splits();

    // Empty arrays (MLX dispatches them too): nothing to move, no failure.
    float none[1] = {42};
    mpi.all_reduce(none, none + 1, 0, mpi.t_f32, mpi.op_sum, mpi.world);
    mpi.all_reduce(MPI_IN_PLACE, none, 0, mpi.t_f16, mpi.op_max_f16, mpi.world);
    mpi.all_gather(none, 0, mpi.t_f32, none + 1, 0, mpi.t_f32, mpi.world);
    if (none[0] != 42)
        FAIL("an empty all_sum wrote its buffer");
    checks++;

    // A 4 MiB all_sum in place, large enough for libmlxd's shared memory.
    enum { BIG = 1 << 20 };
    float *big = malloc(BIG * sizeof *big);
    if (!big)
        return 2;
    for (int i = 0; i < BIG; i++)
        big[i] = (float) ((i % 1000) + rank);
    mpi.all_reduce(MPI_IN_PLACE, big, BIG, mpi.t_f32, mpi.op_sum, mpi.world);
    for (int i = 0; i < BIG; i++)
        if (big[i] != (float) (size * (i % 1000) + size * (size - 1) / 2)) {
            FAIL("float32 all_sum of %d elements: element %d is %g", BIG, i, big[i]);
            break;
        }
    free(big);

    // Last, a ring with nothing after it, as a program that sends, receives
    // and exits: what a rank sent is delivered even once it has gone.
    int32_t token = 1000 + rank, got = -1;
    mpi.send(&token, 1, mpi.t_i32, (rank + 1) % size, 0, mpi.world);
    mpi.recv(&got, 1, mpi.t_i32, (rank + size - 1) % size, MPI_ANY_TAG, mpi.world, NULL);
    if (got != 1000 + (rank + size - 1) % size)
        FAIL("the last ring gave %d", got);
    checks++;
    return 0;
}

/* ---- file rendezvous with the test script, with a deadline ---- */

static void path(char *buf, size_t n, const char *name) {
    const char *dir = getenv("MLXT_DIR");
    snprintf(buf, n, "%s/%s", dir ? dir : "/tmp", name);
}

static void touch(const char *name) {
    char p[600];
    path(p, sizeof p, name);
    FILE *f = fopen(p, "w");
    if (!f || fclose(f) != 0) {
        FAIL("cannot create %s", p);
        exit(2);
    }
}

static void wait_file(const char *name, int timeout_s) {
    char p[600];
    path(p, sizeof p, name);
    for (int ms = 0; access(p, F_OK) != 0; ms++) {
        if (ms > timeout_s * 1000) {
            FAIL("%s did not appear within %d s", p, timeout_s);
            exit(2);
        }
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
}

/* ---- threads ---- */

struct worker {
    MPI_Comm comm;
    MPI_Datatype type;
    int iterations, done;
};

// int32 (or float32) all_sum of rank + k, checked, `iterations` times.
static void *worker(void *arg) {
    struct worker *w = arg;
    for (int k = 0; k < w->iterations; k++) {
        int r, s;
        mpi.rank(w->comm, &r);
        mpi.size(w->comm, &s);
        union {
            int32_t i;
            float f;
        } x[3], want;
        bool is_int = w->type == mpi.t_i32;
        for (int j = 0; j < 3; j++) {
            if (is_int)
                x[j].i = r + k + j;
            else
                x[j].f = (float) (r + k + j);
        }
        mpi.all_reduce(MPI_IN_PLACE, x, 3, w->type, mpi.op_sum, w->comm);
        for (int j = 0; j < 3; j++) {
            int64_t expect = (int64_t) s * (s - 1) / 2 + (int64_t) s * (k + j);
            if (is_int)
                want.i = (int32_t) expect;
            else
                want.f = (float) expect;
            if (memcmp(&x[j], &want, sizeof want) != 0)
                FAIL("thread on %s: sum %d element %d is wrong", is_int ? "world" : "split", k, j);
        }
        w->done = k + 1;
    }
    return NULL;
}

static int threads(void) {
    MPI_Comm s, t, s2;
    pthread_t a, b;

    // Three threads at once, each on its own communicator: the stream
    // thread's collectives and the caller's splits, as in MLX.
    mpi.comm_split(mpi.world, 0, rank, &s);
    mpi.comm_split(mpi.world, 1, rank, &t);
    struct worker wa = {mpi.world, mpi.t_i32, 200, 0}, wb = {s, mpi.t_f32, 200, 0};
    pthread_create(&a, NULL, worker, &wa);
    pthread_create(&b, NULL, worker, &wb);
    // Meanwhile this thread splits the split and frees what it made.
    for (int k = 0; k < 5; k++) {
        mpi.comm_split(t, k % 2 ? rank % 2 : 0, size - rank, &s2);
        struct worker w2 = {s2, mpi.t_i32, 1, 0};
        worker(&w2);
        mpi.comm_free(&s2);
    }
    pthread_join(b, NULL);
    pthread_join(a, NULL);
    mpi.comm_free(&t);
    say("two threads did %d and %d checked sums while a third split", wa.done, wb.done);

    // A free while a call on the communicator is in flight: ranks > 0 enter
    // an all_sum on s (which waits for rank 0), the test script sees them
    // waiting in the daemon and creates go-free, they free s from this
    // thread, and only then does rank 0 join the all_sum.
    if (rank == 0) {
        char name[32];
        for (int r = 1; r < size; r++) {
            snprintf(name, sizeof name, "freed.%d", r);
            wait_file(name, 60);
        }
        wb.iterations = 1;
        worker(&wb);
        mpi.comm_free(&s);
    } else {
        char name[32];
        wb.iterations = 1;
        wb.done = 0;
        snprintf(name, sizeof name, "entering.%d", rank);
        touch(name);
        pthread_create(&b, NULL, worker, &wb);
        wait_file("go-free", 60);
        mpi.comm_free(&s);
        snprintf(name, sizeof name, "freed.%d", rank);
        touch(name);
        pthread_join(b, NULL);
        if (wb.done != 1)
            FAIL("the all_sum in flight during MPI_Comm_free did not complete");
    }
    // The world still works.
    wa.iterations = 3;
    worker(&wa);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1)
        mode = argv[1];
    setvbuf(stdout, NULL, _IOLBF, 0);
    load();
    init();
    int rc = 0;

    if (strcmp(mode, "check") == 0) {
        rc = check();
    } else if (strcmp(mode, "single") == 0) {
        // Open MPI's world of one, which MLX takes as "not distributed".
        if (size != 1 || rank != 0)
            FAIL("a world of one was expected, got rank %d of %d", rank, size);
        int32_t x[2] = {5, -6}, y[2] = {0, 0};
        mpi.all_reduce(x, y, 2, mpi.t_i32, mpi.op_sum, mpi.world);
        if (y[0] != 5 || y[1] != -6)
            FAIL("all_sum in a world of one is %d %d, not 5 -6", y[0], y[1]);
    } else if (strcmp(mode, "wrap") == 0) {
        // Open MPI 4.1.4's AVX op saturates here (255); mlxd wraps, as C does.
        uint8_t x[4] = {(uint8_t) (85 + rank), 255, (uint8_t) (rank * 100), 1}, want[4];
        want[0] = (uint8_t) (size * 85 + size * (size - 1) / 2);
        want[1] = (uint8_t) (255 * size);
        want[2] = (uint8_t) (100 * size * (size - 1) / 2);
        want[3] = (uint8_t) size;
        mpi.all_reduce(MPI_IN_PLACE, x, 4, mpi.t_u8, mpi.op_sum, mpi.world);
        if (memcmp(x, want, sizeof x) != 0)
            FAIL("uint8 all_sum gave %u %u %u %u, expected %u %u %u %u", x[0], x[1], x[2], x[3], want[0], want[1],
                 want[2], want[3]);
        else
            say("uint8 sums wrap: %u %u %u %u", x[0], x[1], x[2], x[3]);
    } else if (strcmp(mode, "missing") == 0 || strcmp(mode, "killed") == 0) {
        float x[4] = {1, 2, 3, 4};
        mpi.all_reduce(MPI_IN_PLACE, x, 4, mpi.t_f32, mpi.op_sum, mpi.world);
        if (rank == size - 1) {
            say("%s", mode[0] == 'k' ? "killing myself" : "not calling all_sum");
            if (mode[0] == 'k')
                raise(SIGKILL);
            for (int i = 0; i < 600; i++)
                nanosleep(&(struct timespec){0, 100000000}, NULL);
            return 2;
        }
        mpi.all_reduce(MPI_IN_PLACE, x, 4, mpi.t_f32, mpi.op_sum, mpi.world);
        say("MPI_Allreduce returned without the last rank");
        return 3;
    } else if (strcmp(mode, "badop") == 0) {
        MPI_Op prod;
        mpi.op_create(&prod_f16, 1, &prod);
        f16 x[2] = {2, 3};
        mpi.all_reduce(MPI_IN_PLACE, x, 2, mpi.t_f16, prod, mpi.world);
        say("MPI_Allreduce returned with an op it cannot know");
        return 3;
    } else if (strcmp(mode, "badtype") == 0) {
        f16 x[2] = {2, 3};
        mpi.all_reduce(MPI_IN_PLACE, x, 2, mpi.t_f16, mpi.op_sum, mpi.world);
        say("MPI_Allreduce returned with MPI_SUM on a derived type");
        return 3;
    } else if (strcmp(mode, "threads") == 0) {
        rc = threads();
    } else {
        say("unknown mode");
        return 2;
    }
    // MLX's global group's destructor.
    mpi.finalize();
    if (failures)
        return 2;
    if (rc == 0)
        say("ok (%d results checked)", checks);
    return rc;
}
