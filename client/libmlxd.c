/* libmlxd: joining a job (mlxd_init), the life of a group (split, free),
 * memory for tensors, and the error strings. The collectives are in
 * libmlxd_ops.c, the connection to the daemon in libmlxd_conn.c.
 *
 * A group is either a session on the host's daemon, or a local singleton
 * (rank 0 of 1, no daemon) when no job was given or no daemon answers and
 * strict is off. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hint.h"
#include "libmlxd_impl.h"

// The detail of the last mlxd_init() failure, per thread, since mlxd_init()
// has no group to keep it in yet.
static _Thread_local char init_error[LIB_ERR_MAX];

const char *mlxd_init_error(void) {
    return init_error;
}

// NULL reads as "" so that error paths that print it never crash.
const char *mlxd_last_error(const mlxd_group *g) {
    return g ? g->last_error : "";
}

// NULL reads as a singleton (rank 0 of 1), the values that keep arithmetic on
// them safe (no division by zero, no index past the end); every op on NULL
// is MLXD_EINVAL.
int mlxd_group_rank(const mlxd_group *g) {
    return g ? g->rank : 0;
}

int mlxd_group_size(const mlxd_group *g) {
    return g ? g->size : 1;
}

// A member of rank of size, not connected yet, with one handle on it: the
// handle returned. NULL when out of memory.
static mlxd_group *group_new(const char *endpoint, int timeout_ms, int rank, int size) {
    mlxd_group *g = calloc(1, sizeof *g);
    struct member *m = calloc(1, sizeof *m);
    if (!g || !m) {
        free(g);
        free(m);
        return NULL;
    }
    pthread_mutex_init(&m->lock, NULL);
    m->refs = 1;
    m->rank = g->rank = rank;
    m->size = g->size = size;
    m->timeout_ms = g->timeout_ms = timeout_ms;
    m->shm_threshold = shm_threshold();
    snprintf(m->endpoint, sizeof m->endpoint, "%s", endpoint ? endpoint : "");
    g->m = m;
    return g;
}

/* The members this process joined jobs as, so that mlxd_init() again for the
 * same job gives another handle on the same member (as MLX's init() gives
 * its cached group). Keyed by endpoint, job, rank and size. registry_lock
 * also serializes mlxd_init() itself: two threads joining the same job at
 * once must not both say Hello. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct member *registry;

// The member that joined job as rank of size at endpoint, or NULL. Under
// registry_lock.
static struct member *registry_find(const char *endpoint, const char *job, int rank, int size) {
    for (struct member *m = registry; m; m = m->next)
        if (m->rank == rank && m->size == size && strcmp(m->job, job) == 0 && strcmp(m->endpoint, endpoint) == 0)
            return m;
    return NULL;
}

// Another handle on m, with its own deadline and last_error. Under
// registry_lock.
static mlxd_group *member_handle(struct member *m, int timeout_ms) {
    mlxd_group *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->m = m;
    g->rank = m->rank;
    g->size = m->size;
    g->timeout_ms = timeout_ms ? timeout_ms : m->timeout_ms;
    m->refs++;
    return g;
}

// Parses a rank or size from the environment: a whole decimal int >= min.
static int env_int(const char *name, int fallback, int min, int *ret, char *err) {
    const char *s = getenv(name);
    if (!s || !*s) {
        *ret = fallback;
        return 0;
    }
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < min || v > INT_MAX)
        return lib_errorf(err, MLXD_EINVAL, "%s=%s is not an integer >= %d", name, s, min);
    *ret = (int) v;
    return 0;
}

// Asks the daemon behind c for a Ping, within ms. Returns 0 when it answered
// yes; its refusal (e.g. MLXD_EDENIED for another user) with its message in
// err; or 1, with the reason in err, when nothing answered.
static int ping(struct conn *c, const char *endpoint, int ms, char *err) {
    Mlxd__Ping p = MLXD__PING__INIT;
    Mlxd__Request req = MLXD__REQUEST__INIT;
    struct reply rep;
    req.body_case = MLXD__REQUEST__BODY_PING;
    req.ping = &p;
    if (conn_brief(c, &req, ms, &rep, err) < 0)
        return 1;
    int r = rep.pb->code;
    if (r < 0)
        lib_errorf(err, r, "mlxd at %s refused this process: %s", endpoint,
                   rep.pb->message && *rep.pb->message ? rep.pb->message : mlxd_strerror(r));
    else if (r > 0)
        r = lib_errorf(err, MLXD_EPROTO, "mlxd at %s answered a ping with code %d", endpoint, r);
    reply_done(&rep);
    return r;
}

bool mlxd_is_available(void) {
    char endpoint[LIB_ENDPOINT_MAX], err[LIB_ERR_MAX];
    struct conn *c;
    if (wire_default_endpoint(endpoint, sizeof endpoint) < 0 || wire_check_endpoint(endpoint) < 0)
        return false;
    // An ipc socket with nobody listening is known at once, without ZeroMQ.
    if (wire_ipc_path(endpoint) && wire_probe_ipc(endpoint) < 0)
        return false;
    if (conn_open(endpoint, &c, err) < 0)
        return false;
    bool ok = ping(c, endpoint, LIB_PING_MS, err) == 0;
    conn_free(c);
    return ok;
}

// Where no daemon answers: a local singleton, or with strict an error.
static int no_daemon(const char *endpoint, const mlxd_init_opts *o, mlxd_group **ret) {
    if (o->strict) {
        char hint[LIB_ENDPOINT_MAX + 128];
        hint_start(hint, sizeof hint, endpoint, o->endpoint != NULL);
        return lib_errorf(init_error, MLXD_EUNAVAILABLE, "no mlxd answers at %s: %s", endpoint, hint);
    }
    mlxd_group *g = group_new(endpoint, o->timeout_ms, 0, 1);
    if (!g)
        return lib_errorf(init_error, MLXD_ENOMEM, "out of memory");
    // Not a failure, but worth a look when a job unexpectedly runs alone.
    lib_errorf(init_error, 0, "no mlxd answers at %s: running as a singleton group", endpoint);
    *ret = g;
    return 0;
}

// Says Hello on c (joining a job, or attaching to a group a split made) and
// checks the answer. Returns 0, or the daemon's code with its message in err.
// *ret_timeout_ms gets the daemon's default deadline when it says it.
static int hello(struct conn *c, const Mlxd__Hello *h, int timeout_ms, uint64_t *ret_group,
                 int *ret_timeout_ms, char *err) {
    Mlxd__Request req = MLXD__REQUEST__INIT;
    struct reply rep;
    req.body_case = MLXD__REQUEST__BODY_HELLO;
    req.hello = (Mlxd__Hello *) h;
    struct call call = { .timeout_ms = timeout_ms };
    int r = conn_call(c, &req, &call, &rep, err);
    if (r < 0)
        return r;
    const Mlxd__HelloReply *hr = rep.pb->body_case == MLXD__REPLY__BODY_HELLO ? rep.pb->hello : NULL;
    if (h->attach_group) {
        // The attach reply may leave the body out; if it has one, it must agree.
        if (hr && hr->group != 0 && hr->group != h->attach_group)
            r = lib_errorf(err, MLXD_EPROTO, "mlxd attached this connection to group %llu, not %llu",
                           (unsigned long long) hr->group, (unsigned long long) h->attach_group);
        else
            *ret_group = h->attach_group;
    } else if (!hr) {
        r = lib_errorf(err, MLXD_EPROTO, "mlxd answered Hello without a HelloReply");
    } else if (hr->rank != h->rank || hr->size != h->size) {
        r = lib_errorf(err, MLXD_EPROTO, "mlxd answered Hello with rank %d of %d, not %d of %d",
                       hr->rank, hr->size, h->rank, h->size);
    } else {
        *ret_group = hr->group;
    }
    if (r == 0 && hr && hr->op_timeout_ms > 0 && hr->op_timeout_ms <= INT_MAX)
        *ret_timeout_ms = (int) hr->op_timeout_ms;
    reply_done(&rep);
    return r;
}

static int join(const char *endpoint, const char *job, int rank, int size, const mlxd_init_opts *opts,
                mlxd_group **ret);

// mlxd_init()'s rank and size: o's, or where o says -1 (or 0 for the size)
// $MLXD_RANK's and $MLXD_SIZE's. 0, or MLXD_EINVAL with the reason in
// init_error.
static int init_place(const mlxd_init_opts *o, int *ret_rank, int *ret_size) {
    int rank, size, r;
    // -1 means "from the environment" (0 for the size too, so that zeroed
    // options work); any other negative value is a mistake to report.
    if (o->rank < -1)
        return lib_errorf(init_error, MLXD_EINVAL,
                          "opts.rank %d is invalid: give a rank >= 0, or -1 for $MLXD_RANK", o->rank);
    if (o->size < -1)
        return lib_errorf(init_error, MLXD_EINVAL,
                          "opts.size %d is invalid: give a size >= 1, or -1 for $MLXD_SIZE", o->size);
    rank = o->rank;
    if (rank < 0 && (r = env_int("MLXD_RANK", 0, 0, &rank, init_error)) < 0)
        return r;
    size = o->size;
    if (size <= 0 && (r = env_int("MLXD_SIZE", 1, 1, &size, init_error)) < 0)
        return r;
    if (rank >= size)
        return lib_errorf(init_error, MLXD_EINVAL, "rank %d is not below the size %d", rank, size);
    *ret_rank = rank;
    *ret_size = size;
    return 0;
}

// mlxd_init()'s endpoint: given (o->endpoint) or the default one, into
// endpoint (LIB_ENDPOINT_MAX bytes). 0, or MLXD_EINVAL with the reason in
// init_error.
static int init_endpoint(const mlxd_init_opts *o, char *endpoint) {
    if (o->endpoint) {
        if (strlen(o->endpoint) >= LIB_ENDPOINT_MAX)
            return lib_errorf(init_error, MLXD_EINVAL, "endpoint \"%.200s...\" is too long",
                              o->endpoint);
        strcpy(endpoint, o->endpoint);
    } else if (wire_default_endpoint(endpoint, LIB_ENDPOINT_MAX) < 0) {
        return lib_errorf(init_error, MLXD_EINVAL, "the endpoint in $MLXD_SOCKET is too long");
    }
    int r = wire_check_endpoint(endpoint);
    if (r < 0)
        return r == -ENAMETOOLONG
                   ? lib_errorf(init_error, MLXD_EINVAL, "endpoint %s: the ipc path is longer than %d bytes", endpoint,
                                WIRE_MAX_IPC_PATH)
                   : lib_errorf(init_error, MLXD_EINVAL, "endpoint %s is neither ipc://PATH nor tcp://HOST:PORT",
                                endpoint);
    return 0;
}

int mlxd_init(const mlxd_init_opts *opts, mlxd_group **ret) {
    mlxd_init_opts o = MLXD_INIT_OPTS_DEFAULT;
    char endpoint[LIB_ENDPOINT_MAX];
    int rank = 0, size = 1, r;

    init_error[0] = '\0';
    if (!ret)
        return lib_errorf(init_error, MLXD_EINVAL, "ret is NULL");
    if (opts)
        o = *opts;

    const char *job = o.job ? o.job : getenv("MLXD_JOB");
    if (job && !*job)
        job = NULL;
    if ((r = init_place(&o, &rank, &size)) < 0)
        return r;
    if (o.timeout_ms < 0)
        return lib_errorf(init_error, MLXD_EINVAL, "timeout_ms %d is negative", o.timeout_ms);

    if (!job) {
        // Without a job every call gets a singleton of its own.
        mlxd_group *g = group_new(NULL, o.timeout_ms, 0, 1);
        if (!g)
            return lib_errorf(init_error, MLXD_ENOMEM, "out of memory");
        *ret = g;
        return 0;
    }
    if (!wire_job_id_valid(job))
        return lib_errorf(init_error, MLXD_EINVAL,
                          "job id \"%.200s\" is not 1 to 128 characters of [A-Za-z0-9._:@+-]", job);
    if ((r = init_endpoint(&o, endpoint)) < 0)
        return r;

    pthread_mutex_lock(&registry_lock);
    r = join(endpoint, job, rank, size, &o, ret);
    pthread_mutex_unlock(&registry_lock);
    return r;
}

// mlxd_init() once the job, rank, size and endpoint are known and valid:
// another handle on the member this process already is, or a new member.
// Under registry_lock.
static int join(const char *endpoint, const char *job, int rank, int size, const mlxd_init_opts *opts,
                mlxd_group **ret) {
    mlxd_init_opts o = *opts;
    int r;
    struct member *known = registry_find(endpoint, job, rank, size);
    if (known) {
        mlxd_group *g = member_handle(known, o.timeout_ms);
        if (!g)
            return lib_errorf(init_error, MLXD_ENOMEM, "out of memory");
        *ret = g;
        return 0;
    }

    if (wire_ipc_path(endpoint)) {
        r = wire_probe_ipc(endpoint);
        // A socket we may not use is a permission problem to report, not a
        // missing daemon to quietly run without.
        if (r == -EACCES || r == -EPERM)
            return lib_errorf(init_error, MLXD_EDENIED, "cannot connect to mlxd at %s: %s",
                              endpoint, strerror(-r));
        if (r < 0)
            return no_daemon(endpoint, &o, ret);
    }

    struct conn *c;
    if ((r = conn_open(endpoint, &c, init_error)) < 0)
        return r;
    // A Ping first, so that a socket nobody serves (or a tcp endpoint with no
    // daemon) is found within seconds rather than after the join deadline.
    // A daemon that answers but refuses us (another user) is an error, not a
    // missing daemon: falling back to a singleton would hide it.
    if ((r = ping(c, endpoint, LIB_GRACE_MS, init_error)) != 0) {
        conn_free(c);
        return r < 0 ? r : no_daemon(endpoint, &o, ret);
    }

    Mlxd__Hello h = MLXD__HELLO__INIT;
    uint64_t group_id;
    h.version = MLXD_PROTOCOL_VERSION;
    h.pid = (int32_t) getpid();
    h.job = (char *) job;
    h.rank = rank;
    h.size = size;
    // Without a deadline of its own, the group uses the daemon's, so that the
    // library waits for the daemon's answer as long as the daemon waits.
    int timeout_ms = o.timeout_ms;
    if ((r = hello(c, &h, o.timeout_ms, &group_id, o.timeout_ms ? &(int) { 0 } : &timeout_ms, init_error)) < 0) {
        conn_free(c);
        return r;
    }

    mlxd_group *g = group_new(endpoint, timeout_ms, rank, size);
    if (!g) {
        conn_free(c);
        return lib_errorf(init_error, MLXD_ENOMEM, "out of memory");
    }
    g->m->conn = c;
    g->m->id = group_id;
    // Later handles without a deadline of their own get the daemon's.
    g->m->timeout_ms = o.timeout_ms ? 0 : timeout_ms;
    snprintf(g->m->job, sizeof g->m->job, "%s", job);
    g->m->next = registry;
    registry = g->m;
    shm_refresh(endpoint);
    conn_ring_start(c, group_id, rank);
    *ret = g;
    return 0;
}

static int split_locked(mlxd_group *g, int color, int key, mlxd_group **ret) {
    struct member *m = g->m;
    if (!m->conn) {
        mlxd_group *n = group_new(m->endpoint, g->timeout_ms, 0, 1);
        if (!n)
            return lib_errorf(g->last_error, MLXD_ENOMEM, "out of memory");
        *ret = n;
        return 0;
    }

    Mlxd__OpRequest op = MLXD__OP_REQUEST__INIT;
    Mlxd__Request req = MLXD__REQUEST__INIT;
    struct reply rep;
    op.op = MLXD__OP_TYPE__OP_SPLIT;
    op.color = color;
    op.key = key;
    req.body_case = MLXD__REQUEST__BODY_OP;
    req.op = &op;
    struct call call = { .timeout_ms = g->timeout_ms };
    int r = conn_call(m->conn, &req, &call, &rep, g->last_error);
    if (r < 0)
        return r;
    const Mlxd__OpReply *sr = rep.pb->body_case == MLXD__REPLY__BODY_OP ? rep.pb->op : NULL;
    if (!sr || sr->group == 0 || sr->size < 1 || sr->rank < 0 || sr->rank >= sr->size) {
        reply_done(&rep);
        return lib_errorf(g->last_error, MLXD_EPROTO, "mlxd answered split without a valid group");
    }
    Mlxd__Hello h = MLXD__HELLO__INIT;
    h.version = MLXD_PROTOCOL_VERSION;
    h.pid = (int32_t) getpid();
    h.attach_group = sr->group;
    h.attach_token = sr->token;
    int new_rank = sr->rank, new_size = sr->size;
    reply_done(&rep);

    // The new group gets a connection of its own, so that it can be used
    // from another thread than g.
    struct conn *c;
    uint64_t group_id;
    if ((r = conn_open(m->endpoint, &c, g->last_error)) < 0)
        return r;
    if ((r = hello(c, &h, g->timeout_ms, &group_id, &(int) { 0 }, g->last_error)) < 0) {
        conn_free(c);
        return r;
    }
    mlxd_group *n = group_new(m->endpoint, g->timeout_ms, new_rank, new_size);
    if (!n) {
        conn_free(c);
        return lib_errorf(g->last_error, MLXD_ENOMEM, "out of memory");
    }
    n->m->conn = c;
    n->m->id = group_id;
    conn_ring_start(c, group_id, new_rank);
    *ret = n;
    return 0;
}

int mlxd_group_split(mlxd_group *g, int color, int key, mlxd_group **ret) {
    if (!g)
        return MLXD_EINVAL;
    g->last_error[0] = '\0';
    if (!ret)
        return lib_errorf(g->last_error, MLXD_EINVAL, "ret is NULL");
    pthread_mutex_lock(&g->m->lock);
    int r = split_locked(g, color, key, ret);
    pthread_mutex_unlock(&g->m->lock);
    return r;
}

// The member's last handle is gone: it leaves the group.
static void member_leave(struct member *m) {
    // Say Goodbye so that the others see an orderly leave, but do not let a
    // stuck daemon hold the caller.
    if (m->conn && !conn_is_broken(m->conn))
        conn_goodbye(m->conn, LIB_GOODBYE_MS);
    shm_staging_free(&m->staging);
    conn_free(m->conn);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

void mlxd_group_free(mlxd_group *g) {
    if (!g)
        return;
    struct member *m = g->m;
    // Its requests in flight complete first (their memory must stay valid
    // until mlxd_wait(), which the caller still calls).
    pthread_mutex_lock(&m->lock);
    lib_requests_complete(g);
    pthread_mutex_unlock(&m->lock);
    // The registry's lock also covers refs: mlxd_init() may be handing out
    // a new handle on this member right now.
    pthread_mutex_lock(&registry_lock);
    bool last = --m->refs == 0;
    if (last)
        for (struct member **p = &registry; *p; p = &(*p)->next)
            if (*p == m) {
                *p = m->next;
                break;
            }
    pthread_mutex_unlock(&registry_lock);
    if (last)
        member_leave(m);
    free(g);
}

/* Memory for tensors.
 *
 * On a group backed by a daemon, mlxd_alloc() gives a shared-memory segment
 * of its own (shm.c), which tensors are then named by instead of travelling
 * through the socket. Where the daemon has no side channel (an older daemon,
 * a tcp endpoint), and on a local singleton, it gives ordinary 64-byte
 * aligned heap memory, kept in the list below so that mlxd_free() knows it.
 * Both are per process, since the memory is usable with any group. */

struct allocation {
    void *base;
    struct allocation *next;
};

static pthread_mutex_t allocations_lock = PTHREAD_MUTEX_INITIALIZER;
static struct allocation *allocations;

static void *heap_alloc(mlxd_group *g, size_t nbytes) {
    void *p = NULL;
    struct allocation *a = malloc(sizeof *a);
    // posix_memalign(0) may give NULL; every allocation gets its own address.
    if (!a || posix_memalign(&p, 64, nbytes ? nbytes : 64) != 0) {
        free(a);
        if (g)
            lib_errorf(g->last_error, MLXD_ENOMEM, "out of memory allocating %zu bytes", nbytes);
        return NULL;
    }
    a->base = p;
    pthread_mutex_lock(&allocations_lock);
    a->next = allocations;
    allocations = a;
    pthread_mutex_unlock(&allocations_lock);
    return p;
}

static bool heap_free(void *p) {
    struct allocation *found = NULL;
    pthread_mutex_lock(&allocations_lock);
    for (struct allocation **a = &allocations; *a; a = &(*a)->next)
        if ((*a)->base == p) {
            found = *a;
            *a = found->next;
            break;
        }
    pthread_mutex_unlock(&allocations_lock);
    if (!found)
        return false;
    free(found->base);
    free(found);
    return true;
}

void *mlxd_alloc(mlxd_group *g, size_t nbytes) {
    struct shm_seg *s;
    if (!g)
        return heap_alloc(NULL, nbytes);
    g->last_error[0] = '\0';
    if (!g->m->conn)
        return heap_alloc(g, nbytes);
    int r = shm_seg_new(g->m->endpoint, nbytes, false, &s, g->last_error);
    if (r == MLXD_EUNAVAILABLE) {
        // No side channel: ordinary memory works too, only slower. Not a
        // failure, so no message.
        g->last_error[0] = '\0';
        return heap_alloc(g, nbytes);
    }
    return r < 0 ? NULL : shm_seg_base(s);
}

void mlxd_free(mlxd_group *g, void *p) {
    if (g)
        g->last_error[0] = '\0';
    if (!p || shm_free_base(p) || heap_free(p))
        return;
    // Freeing what mlxd_alloc did not give is the caller's bug; ignoring it
    // beats corrupting the heap.
    if (g)
        lib_errorf(g->last_error, MLXD_EINVAL, "%p was not allocated by mlxd_alloc", p);
}
