/* The coordinator's state machine: jobs forming, the groups it sequences,
 * and the messages each control message makes it send. See coord.h and
 * proto/control.proto.
 *
 * Every handler does all it can fail at (allocations, packing into the
 * outbox) before it changes any state, so a -ENOMEM leaves the coordinator
 * as it was and coord_handle() takes back whatever it had queued: the caller
 * may drop the message and go on. */
#include "coord.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "desc.h"
#include "wire.h"

#define JOB_SIZE_MAX 65536
#define MESSAGE_MAX 1024                // longest abort message relayed from a host
#define RANKS_LISTED 32                 // ranks named in one message, then ", …"
#define JOB_BUCKETS 256
#define GROUP_BUCKETS 1024

/* A job id the coordinator knows. While forming it holds who joined; once
 * formed it stays as long as any of its groups lives, so that a late
 * process cannot start a second job under the same id. */
struct job {
    struct job *next;                   // in its bucket
    char *id;
    uint32_t uid;
    int size;
    bool formed;
    uint64_t created_us;                // when its first rank joined
    int joined;
    int *host;                          // forming: world rank of each job rank, -1 = not joined
    int *pid;                           // forming: pid of each joined rank
    int groups;                         // formed: groups alive
};

/* What a member said for the collective now being gathered. */
struct arrival {
    bool in;
    struct op_desc d;
};

/* A group the coordinator created; a job's first group or a split's. */
struct group {
    struct group *next;                 // in its bucket
    uint64_t id;
    struct job *job;                    // not owned; job->groups counts this one
    int size;
    int *host;                          // world rank of each member
    int *hosts;                         // the distinct hosts, ascending
    int nhosts;
    bool *gone;                         // per distinct host: it said GroupGone
    int ngone;
    uint64_t seq;                       // the collective being gathered
    struct arrival *arr;                // size entries, made at the first Arrive
    int narrived;
    int code;                           // aborted when nonzero
    char *message;                      // owned, set with code
    uint64_t *left;                     // size entries once a member left: the collectives
                                        // it issued (UINT64_MAX: still there)
    char **left_msg;                    // why, as its host said it (owned)
    char *broken;                       // owned: why no collective completes from here on
};

struct coord {
    int world_size;
    uint64_t next_group;                // counter for COORD_GROUP_BIT ids
    int forming, ngroups;
    struct job *jobs[JOB_BUCKETS];
    struct group *groups[GROUP_BUCKETS];
};

/* ---- outbox ---- */

int ctl_outbox_add(struct ctl_outbox *o, int dest, const Mlxd__Ctl__Ctl *m) {
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 16;
        struct ctl_out *v = realloc(o->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        o->v = v;
        o->cap = cap;
    }
    size_t len = mlxd__ctl__ctl__get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return -ENOMEM;
    mlxd__ctl__ctl__pack(m, buf);
    o->v[o->n++] = (struct ctl_out) { .dest = dest, .buf = buf, .len = len };
    return 0;
}

// Drops the messages from index n on: how a failed handler takes back what
// it queued.
static void outbox_truncate(struct ctl_outbox *o, size_t n) {
    while (o->n > n) {
        o->n--;
        free(o->v[o->n].buf);
    }
}

void ctl_outbox_clear(struct ctl_outbox *o) {
    if (o)
        outbox_truncate(o, 0);
}

void ctl_outbox_fini(struct ctl_outbox *o) {
    if (!o)
        return;
    ctl_outbox_clear(o);
    free(o->v);
    *o = (struct ctl_outbox) { 0 };
}

/* ---- small helpers ---- */

// "12.3": a duration in milliseconds as seconds with one decimal.
static const char *secs_str(char *buf, size_t size, uint64_t ms) {
    snprintf(buf, size, "%llu.%llu", (unsigned long long) (ms / 1000), (unsigned long long) (ms % 1000 / 100));
    return buf;
}

// A list of ranks for a message, "0, 3, 7", cut after RANKS_LISTED: a
// timeout of a 4096-rank job must still give a readable line.
struct rank_list {
    char buf[RANKS_LISTED * 8 + 16];
    size_t len;
    int n;
};

static void rank_list_add(struct rank_list *l, int rank) {
    size_t room = sizeof l->buf - l->len;
    if (l->n < RANKS_LISTED)
        l->len += (size_t) snprintf(l->buf + l->len, room, "%s%d", l->n ? ", " : "", rank);
    else if (l->n == RANKS_LISTED)
        l->len += (size_t) snprintf(l->buf + l->len, room, ", …");
    l->n++;
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *) a, y = *(const int *) b;
    return (x > y) - (x < y);
}

static bool is_collective(uint32_t op) {
    switch (op) {
    case MLXD__OP_TYPE__OP_ALL_SUM:
    case MLXD__OP_TYPE__OP_ALL_MAX:
    case MLXD__OP_TYPE__OP_ALL_MIN:
    case MLXD__OP_TYPE__OP_ALL_GATHER:
    case MLXD__OP_TYPE__OP_SUM_SCATTER:
    case MLXD__OP_TYPE__OP_BARRIER:
    case MLXD__OP_TYPE__OP_SPLIT:
        return true;
    default:
        return false;       // send and recv go host to host as P2P, never through here
    }
}

// Sends m to every distinct host of g, ascending world rank.
static int send_hosts(struct ctl_outbox *out, const struct group *g, const Mlxd__Ctl__Ctl *m) {
    for (int i = 0; i < g->nhosts; i++) {
        int r = ctl_outbox_add(out, g->hosts[i], m);
        if (r < 0)
            return r;
    }
    return 0;
}

__attribute__((format(printf, 6, 7)))
static int send_hello_fail(struct ctl_outbox *out, int dest, const char *job, int rank, int code, const char *fmt,
                           ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    Mlxd__Ctl__HelloFail f = MLXD__CTL__HELLO_FAIL__INIT;
    Mlxd__Ctl__Ctl m = MLXD__CTL__CTL__INIT;
    f.job = (char *) job;
    f.rank = rank;
    f.code = code;
    f.message = msg;
    m.body_case = MLXD__CTL__CTL__BODY_HELLO_FAIL;
    m.hello_fail = &f;
    return ctl_outbox_add(out, dest, &m);
}

static void abort_msg(uint64_t group, int code, char *message, Mlxd__Ctl__Abort *a, Mlxd__Ctl__Ctl *m) {
    a->group = group;
    a->code = code;
    a->message = message;
    m->body_case = MLXD__CTL__CTL__BODY_ABORT;
    m->abort = a;
}

/* ---- jobs ---- */

static struct job **job_slot(struct coord *c, const char *id) {
    uint32_t h = 2166136261u;           // FNV-1a
    for (const unsigned char *p = (const unsigned char *) id; *p; p++)
        h = (h ^ *p) * 16777619u;
    struct job **pp = &c->jobs[h % JOB_BUCKETS];
    while (*pp && strcmp((*pp)->id, id) != 0)
        pp = &(*pp)->next;
    return pp;
}

static void job_free(struct job *j) {
    if (!j)
        return;
    free(j->id);
    free(j->host);
    free(j->pid);
    free(j);
}

static struct job *job_new(const Mlxd__Ctl__Join *m, uint64_t now_us) {
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->id = strdup(m->job);
    j->host = malloc((size_t) m->size * sizeof *j->host);
    j->pid = calloc((size_t) m->size, sizeof *j->pid);
    if (!j->id || !j->host || !j->pid) {
        job_free(j);
        return NULL;
    }
    for (int r = 0; r < m->size; r++)
        j->host[r] = -1;
    j->uid = m->uid;
    j->size = m->size;
    j->created_us = now_us;
    return j;
}

/* ---- groups ---- */

static struct group **group_slot(struct coord *c, uint64_t id) {
    struct group **pp = &c->groups[id % GROUP_BUCKETS];
    while (*pp && (*pp)->id != id)
        pp = &(*pp)->next;
    return pp;
}

static struct group *group_find(struct coord *c, uint64_t id) {
    return *group_slot(c, id);
}

// host's entry in g->hosts, or NULL when no member of g sits there.
static const int *has_host(const struct group *g, int host) {
    return bsearch(&host, g->hosts, (size_t) g->nhosts, sizeof *g->hosts, cmp_int);
}

static void group_free(struct group *g) {
    if (!g)
        return;
    free(g->host);
    free(g->hosts);
    free(g->gone);
    free(g->arr);
    free(g->message);
    for (int r = 0; g->left_msg && r < g->size; r++)
        free(g->left_msg[r]);
    free(g->left_msg);
    free(g->left);
    free(g->broken);
    free(g);
}

// Frees g and the groups chained after it.
static void free_chain(struct group *g) {
    while (g) {
        struct group *next = g->next;
        group_free(g);
        g = next;
    }
}

// A group of n members whose k-th member sits on host[idx ? idx[k] : k].
// Not linked yet: group_link() makes it known once nothing can fail.
static struct group *group_new(struct job *job, uint64_t id, int n, const int *host, const int *idx) {
    struct group *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->host = malloc((size_t) n * sizeof *g->host);
    g->hosts = malloc((size_t) n * sizeof *g->hosts);
    if (!g->host || !g->hosts) {
        group_free(g);
        return NULL;
    }
    for (int k = 0; k < n; k++)
        g->host[k] = g->hosts[k] = host[idx ? idx[k] : k];
    qsort(g->hosts, (size_t) n, sizeof *g->hosts, cmp_int);
    for (int k = 0; k < n; k++)
        if (k == 0 || g->hosts[k] != g->hosts[g->nhosts - 1])
            g->hosts[g->nhosts++] = g->hosts[k];
    g->gone = calloc((size_t) g->nhosts, sizeof *g->gone);
    if (!g->gone) {
        group_free(g);
        return NULL;
    }
    g->id = id;
    g->job = job;
    g->size = n;
    return g;
}

static void group_link(struct coord *c, struct group *g) {
    struct group **pp = group_slot(c, g->id);
    g->next = *pp;
    *pp = g;
    g->job->groups++;
    c->ngroups++;
}

static uint64_t group_id(const struct coord *c, int k) {
    return COORD_GROUP_BIT | (c->next_group + (uint64_t) k);
}

static void clear_arrivals(struct group *g) {
    if (g->arr)
        for (int r = 0; r < g->size; r++)
            g->arr[r].in = false;
    g->narrived = 0;
}

// Aborts g everywhere with code and message (first reason wins: callers
// check that g is not aborted yet).
static int group_abort(struct group *g, int code, const char *message, struct ctl_outbox *out) {
    char *dup = strndup(message && message[0] ? message : "the group was aborted", MESSAGE_MAX);
    if (!dup)
        return -ENOMEM;
    Mlxd__Ctl__Abort a = MLXD__CTL__ABORT__INIT;
    Mlxd__Ctl__Ctl m = MLXD__CTL__CTL__INIT;
    abort_msg(g->id, code, dup, &a, &m);
    int r = send_hosts(out, g, &m);
    if (r < 0) {
        free(dup);
        return r;
    }
    g->code = code;
    g->message = dup;
    clear_arrivals(g);
    return 0;
}

// The collectives-only Abort: from the one being gathered on, no collective
// of g completes (a member left before issuing it).
static void broken_msg(const struct group *g, char *message, Mlxd__Ctl__Abort *a, Mlxd__Ctl__Ctl *m) {
    abort_msg(g->id, MLXD_EPEER, message, a, m);
    a->collectives = true;
}

// Whether collective seq of g waits for a member that left before issuing
// it; if so, the message every member gets (malloc'd, in *ret) or -ENOMEM.
static int break_at(const struct group *g, uint64_t seq, char **ret) {
    *ret = NULL;
    for (int r = 0; g->left && r < g->size; r++) {
        if (g->left[r] > seq)
            continue;
        char buf[MESSAGE_MAX + 1];          // relayed messages stay within MESSAGE_MAX
        snprintf(buf, sizeof buf, "%s before collective #%llu of the group",
                 g->left_msg[r] ? g->left_msg[r] : "a member left", (unsigned long long) seq + 1);
        return (*ret = strdup(buf)) ? 1 : -ENOMEM;
    }
    return 0;
}

// Queues the collectives-only Abort for every host of g when collective
// seq cannot complete; *ret_msg then owns its message, for the caller to
// keep in g->broken once nothing else can fail.
static int queue_break(const struct group *g, uint64_t seq, struct ctl_outbox *out, char **ret_msg) {
    char *msg;
    int r = g->code || g->broken ? 0 : break_at(g, seq, &msg);
    *ret_msg = NULL;
    if (r <= 0)
        return r;
    Mlxd__Ctl__Abort a = MLXD__CTL__ABORT__INIT;
    Mlxd__Ctl__Ctl m = MLXD__CTL__CTL__INIT;
    broken_msg(g, msg, &a, &m);
    if ((r = send_hosts(out, g, &m)) < 0) {
        free(msg);
        return r;
    }
    *ret_msg = msg;
    return 0;
}

/* ---- Join and Leave ---- */

// All ranks of j joined: make its first group and tell every host.
static int job_form(struct coord *c, struct job *j, struct ctl_outbox *out) {
    struct group *g = group_new(j, group_id(c, 0), j->size, j->host, NULL);
    if (!g)
        return -ENOMEM;
    Mlxd__Ctl__Form f = MLXD__CTL__FORM__INIT;
    Mlxd__Ctl__Ctl m = MLXD__CTL__CTL__INIT;
    f.job = j->id;
    f.group = g->id;
    f.n_hosts = (size_t) j->size;
    f.hosts = g->host;
    m.body_case = MLXD__CTL__CTL__BODY_FORM;
    m.form = &f;
    int r = send_hosts(out, g, &m);
    if (r < 0) {
        group_free(g);
        return r;
    }
    c->next_group++;
    group_link(c, g);
    return 0;
}

// All ranks of j joined but there is no room for its group: every rank
// gets the error now rather than a timeout later.
static int job_refuse(const struct job *j, struct ctl_outbox *out) {
    for (int r = 0; r < j->size; r++) {
        int e = send_hello_fail(out, j->host[r], j->id, r, MLXD_ENOMEM,
                                "job %s cannot form: the coordinator keeps %d groups already", j->id,
                                COORD_MAX_GROUPS);
        if (e < 0)
            return e;
    }
    return 0;
}

static int on_join(struct coord *c, int from, const Mlxd__Ctl__Join *m, uint64_t now_us, struct ctl_outbox *out,
                   const char **ignored) {
    if (!wire_job_id_valid(m->job)) {
        *ignored = "Join with an empty or over-long job id";
        return 0;
    }
    if (m->size < 1 || m->size > JOB_SIZE_MAX)
        return send_hello_fail(out, from, m->job, m->rank, MLXD_EINVAL, "job %s: size %d is not in [1, %d]",
                               m->job, m->size, JOB_SIZE_MAX);
    if (m->rank < 0 || m->rank >= m->size)
        return send_hello_fail(out, from, m->job, m->rank, MLXD_EINVAL, "job %s: rank %d is not in [0, %d)", m->job,
                               m->rank, m->size);

    struct job **pp = job_slot(c, m->job), *j = *pp;
    bool fresh = !j;
    if (j && j->formed)
        return send_hello_fail(out, from, m->job, m->rank, MLXD_EINVAL,
                               "job %s has already formed; a new run needs a new job id", m->job);
    if (j && j->uid != m->uid)
        return send_hello_fail(out, from, m->job, m->rank, MLXD_EDENIED, "job %s belongs to another user", m->job);
    if (j && j->size != m->size)
        return send_hello_fail(out, from, m->job, m->rank, MLXD_EINVAL,
                               "job %s has size %d, but this process says size %d", m->job, j->size, m->size);
    if (j && j->host[m->rank] >= 0)
        return send_hello_fail(out, from, m->job, m->rank, MLXD_EINVAL,
                               "rank %d of job %s has already joined (pid %d on daemon %d)", m->rank, m->job,
                               j->pid[m->rank], j->host[m->rank]);
    if (fresh) {
        if (c->forming >= COORD_MAX_FORMING)
            return send_hello_fail(out, from, m->job, m->rank, MLXD_ENOMEM, "too many jobs forming");
        if (!(j = job_new(m, now_us)))
            return -ENOMEM;
    }

    j->host[m->rank] = from;
    j->pid[m->rank] = m->pid;
    j->joined++;
    bool complete = j->joined == j->size, full = c->ngroups >= COORD_MAX_GROUPS;
    int r = !complete ? 0 : full ? job_refuse(j, out) : job_form(c, j, out);
    if (r < 0) {
        j->host[m->rank] = -1;
        j->joined--;
        if (fresh)
            job_free(j);
        return r;
    }
    if (fresh) {
        j->next = *pp;
        *pp = j;
        c->forming++;
    }
    if (!complete)
        return 0;
    c->forming--;
    if (full) {
        *pp = j->next;
        job_free(j);
        return 0;
    }
    // Formed: only the id and the count of groups matter from now on.
    free(j->host);
    free(j->pid);
    j->host = j->pid = NULL;
    j->formed = true;
    return 0;
}

static int on_leave(struct coord *c, int from, const Mlxd__Ctl__Leave *m, struct ctl_outbox *out,
                    const char **ignored) {
    if (!wire_job_id_valid(m->job)) {
        *ignored = "Leave with an empty or over-long job id";
        return 0;
    }
    struct job **pp = job_slot(c, m->job), *j = *pp;
    if (!j || j->formed) {
        // Formed already: the host has (or will have) the Form and sorts it out.
        *ignored = j ? "Leave after the job formed" : "Leave for a job that is not forming";
        return 0;
    }
    if (m->rank < 0 || m->rank >= j->size || j->host[m->rank] != from) {
        *ignored = "Leave for a rank that did not join from that host";
        return 0;
    }
    if (m->timed_out) {
        // The leaver itself joined; the others it waited for are missing.
        struct rank_list l = { 0 };
        char secs[32];
        for (int r = 0; r < j->size; r++)
            if (j->host[r] < 0)
                rank_list_add(&l, r);
        int r = send_hello_fail(out, from, j->id, m->rank, MLXD_ETIMEDOUT,
                                "job %s did not form within %s s: %d of %d ranks joined; missing rank(s) %s", j->id,
                                secs_str(secs, sizeof secs, m->waited_ms), j->joined, j->size, l.buf);
        if (r < 0)
            return r;
    }
    j->host[m->rank] = -1;
    j->joined--;
    if (j->joined == 0) {
        *pp = j->next;
        job_free(j);
        c->forming--;
    }
    return 0;
}

/* ---- collectives ---- */

static void desc_of(const Mlxd__Ctl__Desc *m, struct op_desc *d) {
    *d = (struct op_desc) { .op = (int) m->op, .dtype = m->dtype, .ndim = (int) m->n_shape,
                            .color = m->color, .key = m->key };
    if (m->n_shape)
        memcpy(d->shape, m->shape, m->n_shape * sizeof d->shape[0]);
}

// Why an Arrive's descriptor cannot be used, or NULL.
static const char *desc_invalid(const Mlxd__Ctl__Desc *d) {
    if (!is_collective(d->op))
        return "Arrive with an op that is not a collective";
    if (!wire_dtype(d->dtype))
        return "Arrive with an invalid dtype";
    if (d->n_shape > MLXD_MAX_NDIM)
        return "Arrive with more than MLXD_MAX_NDIM dimensions";
    if (d->n_shape && !d->shape)
        return "Arrive with a malformed shape";
    for (size_t i = 0; i < d->n_shape; i++)
        if (d->shape[i] < 0)
            return "Arrive with a negative dimension";
    return NULL;
}

// Prepares the groups of a split that passed the check: the new groups,
// not linked, in *made (chained through next, in plan order) and their
// NewGroup entries in *ng and go. Over COORD_MAX_GROUPS the Go carries the
// error instead. What was made is the caller's to free, on failure too.
static int plan_split(struct coord *c, const struct group *g, const struct op_desc *const *d, int *order,
                      Mlxd__Ctl__Go *go, Mlxd__Ctl__NewGroup **ng, struct group **made) {
    int n = g->size, ngroups = split_plan(d, n, order);
    if (ngroups < 0)
        return -ENOMEM;
    if (ngroups > COORD_MAX_GROUPS - c->ngroups) {
        go->code = MLXD_ENOMEM;
        go->message = (char *) "split: the coordinator keeps too many groups already";
        return 0;
    }
    *ng = calloc((size_t) ngroups, sizeof **ng);
    go->split = calloc((size_t) ngroups, sizeof *go->split);
    if (!*ng || !go->split)
        return -ENOMEM;
    for (int i = 0, k = 0; i < n; k++) {
        int len = split_run(d, n, order, i);
        struct group *x = group_new(g->job, group_id(c, k), len, g->host, &order[i]);
        if (!x)
            return -ENOMEM;
        *made = x;
        made = &x->next;
        Mlxd__Ctl__NewGroup *e = &(*ng)[k];
        mlxd__ctl__new_group__init(e);
        e->group = x->id;
        e->n_members = e->n_hosts = (size_t) len;
        e->members = &order[i];
        e->hosts = x->host;
        go->split[k] = e;
        i += len;
    }
    go->n_split = (size_t) ngroups;
    return 0;
}

// Every member arrived at g's collective: decide, tell each host, move on.
static int group_go(struct coord *c, struct group *g, struct ctl_outbox *out) {
    int n = g->size, r = -ENOMEM;
    char err[512];
    const struct op_desc **d = malloc((size_t) n * sizeof *d);
    int *order = malloc((size_t) n * sizeof *order);
    Mlxd__Ctl__NewGroup *ng = NULL;
    struct group *made = NULL;
    char *broken = NULL;
    Mlxd__Ctl__Go go = MLXD__CTL__GO__INIT;
    Mlxd__Ctl__Ctl m = MLXD__CTL__CTL__INIT;
    if (!d || !order)
        goto done;
    for (int k = 0; k < n; k++)
        d[k] = &g->arr[k].d;
    go.group = g->id;
    go.seq = g->seq;
    go.code = op_desc_check(d, n, err, sizeof err);
    if (go.code < 0)
        go.message = err;
    else if (d[0]->op == MLXD__OP_TYPE__OP_SPLIT && plan_split(c, g, d, order, &go, &ng, &made) < 0)
        goto done;
    m.body_case = MLXD__CTL__CTL__BODY_GO;
    m.go = &go;
    if ((r = send_hosts(out, g, &m)) < 0 || (r = queue_break(g, g->seq + 1, out, &broken)) < 0)
        goto done;

    g->broken = broken;
    while (made) {
        struct group *x = made;
        made = x->next;
        group_link(c, x);
    }
    c->next_group += go.n_split;
    g->seq++;
    clear_arrivals(g);
done:
    free_chain(made);                   // only left on failure
    free(go.split);
    free(ng);
    free(order);
    free(d);
    return r;
}

static int on_arrive(struct coord *c, int from, const Mlxd__Ctl__Arrive *m, struct ctl_outbox *out,
                     const char **ignored) {
    struct group *g = group_find(c, m->group);
    const Mlxd__Ctl__Desc *d = m->desc;
    if (!g)
        *ignored = "Arrive for an unknown group";
    else if (!d)
        *ignored = "Arrive without a descriptor";
    else if (d->rank < 0 || d->rank >= g->size)
        *ignored = "Arrive for a rank outside the group";
    else if (g->host[d->rank] != from)
        *ignored = "Arrive from a host that does not hold that rank";
    else
        *ignored = desc_invalid(d);
    if (*ignored)
        return 0;

    if (g->code || g->broken) {
        // Answered even though the host had the Abort: its member must not wait.
        Mlxd__Ctl__Abort a = MLXD__CTL__ABORT__INIT;
        Mlxd__Ctl__Ctl am = MLXD__CTL__CTL__INIT;
        if (g->code)
            abort_msg(g->id, g->code, g->message, &a, &am);
        else
            broken_msg(g, g->broken, &a, &am);
        return ctl_outbox_add(out, from, &am);
    }
    if (m->seq != g->seq) {
        *ignored = "Arrive for another collective than the one being gathered";
        return 0;
    }
    if (!g->arr && !(g->arr = calloc((size_t) g->size, sizeof *g->arr)))
        return -ENOMEM;
    struct arrival *a = &g->arr[d->rank];
    if (a->in) {
        *ignored = "Arrive for a rank that already arrived";
        return 0;
    }
    a->in = true;
    desc_of(d, &a->d);
    g->narrived++;
    if (g->narrived < g->size)
        return 0;
    int r = group_go(c, g, out);
    if (r < 0) {
        a->in = false;
        g->narrived--;
    }
    return r;
}

static int on_timeout(struct coord *c, int from, const Mlxd__Ctl__Timeout *m, struct ctl_outbox *out,
                      const char **ignored) {
    struct group *g = group_find(c, m->group);
    if (!g)
        *ignored = "Timeout for an unknown group";
    else if (!has_host(g, from))
        *ignored = "Timeout from a host that is not in the group";
    else if (g->code || g->broken)
        *ignored = "Timeout on an aborted group";
    else if (m->seq != g->seq)
        *ignored = "Timeout for a collective that is not being gathered (its Go went out)";
    if (*ignored)
        return 0;

    const char *op = "op";
    struct rank_list l = { 0 };
    char secs[32], msg[640];
    for (int r = 0; r < g->size; r++) {
        if (g->arr && g->arr[r].in)
            op = wire_op_name((Mlxd__OpType) g->arr[r].d.op);
        else
            rank_list_add(&l, r);
    }
    snprintf(msg, sizeof msg, "%s #%llu timed out after %s s waiting for rank(s) %s", op,
             (unsigned long long) g->seq + 1, secs_str(secs, sizeof secs, m->waited_ms), l.buf);
    return group_abort(g, MLXD_ETIMEDOUT, msg, out);
}

static int on_abort_req(struct coord *c, int from, const Mlxd__Ctl__AbortReq *m, struct ctl_outbox *out,
                        const char **ignored) {
    struct group *g = group_find(c, m->group);
    if (!g)
        *ignored = "AbortReq for an unknown group";
    else if (!has_host(g, from))
        *ignored = "AbortReq from a host that is not in the group";
    else if (g->code)
        *ignored = "AbortReq on an aborted group (the first reason stands)";
    if (*ignored)
        return 0;
    // The codes a daemon can end a group with; anything else (MLXD_EINTR is
    // the client library's own, never a daemon's) becomes MLXD_EPEER.
    bool known = m->code < 0 && m->code >= MLXD_EINTERNAL;
    return group_abort(g, known ? m->code : MLXD_EPEER, m->message, out);
}

static int on_depart(struct coord *c, int from, const Mlxd__Ctl__Depart *m, struct ctl_outbox *out,
                     const char **ignored) {
    struct group *g = group_find(c, m->group);
    if (!g)
        *ignored = "Depart for an unknown group";
    else if (m->rank < 0 || m->rank >= g->size)
        *ignored = "Depart for a rank outside the group";
    else if (g->host[m->rank] != from)
        *ignored = "Depart from a host that does not hold that rank";
    else if (g->left && g->left[m->rank] != UINT64_MAX)
        *ignored = "Depart repeated for a rank";
    if (*ignored)
        return 0;
    if (!g->left) {
        // Made once and kept: an allocation changes nothing a member sees.
        uint64_t *left = malloc((size_t) g->size * sizeof *left);
        char **msg = calloc((size_t) g->size, sizeof *msg);
        if (!left || !msg) {
            free(left);
            free(msg);
            return -ENOMEM;
        }
        for (int r = 0; r < g->size; r++)
            left[r] = UINT64_MAX;
        g->left = left;
        g->left_msg = msg;
    }
    char *why = strndup(m->message && m->message[0] ? m->message : "a member left the group", MESSAGE_MAX);
    if (!why)
        return -ENOMEM;
    // As it will be once this message is taken, to see whether it breaks
    // the collective being gathered.
    // A Depart whose seq is UINT64_MAX ("after every collective") leaves
    // left[rank] as it was, so another may follow: its reason replaces this.
    char *old = g->left_msg[m->rank];
    g->left[m->rank] = m->seq;
    g->left_msg[m->rank] = why;
    char *broken;
    int r = queue_break(g, g->seq, out, &broken);
    if (r < 0) {
        g->left[m->rank] = UINT64_MAX;
        g->left_msg[m->rank] = old;
        free(why);
        return r;
    }
    free(old);
    if (broken) {
        g->broken = broken;
        clear_arrivals(g);
    }
    return 0;
}

static int on_group_gone(struct coord *c, int from, const Mlxd__Ctl__GroupGone *m, struct ctl_outbox *out,
                         const char **ignored) {
    struct group **pp = group_slot(c, m->group), *g = *pp;
    const int *h = g ? has_host(g, from) : NULL;
    if (!g)
        *ignored = "GroupGone for an unknown group";
    else if (!h)
        *ignored = "GroupGone from a host that is not in the group";
    else if (g->gone[h - g->hosts])
        *ignored = "GroupGone repeated by a host";
    if (*ignored)
        return 0;
    if (g->ngone + 1 < g->nhosts) {
        g->gone[h - g->hosts] = true;
        g->ngone++;
        return 0;
    }
    // Only a group that spans hosts has a communicator to release.
    if (g->nhosts > 1) {
        Mlxd__Ctl__GroupFree f = MLXD__CTL__GROUP_FREE__INIT;
        Mlxd__Ctl__Ctl fm = MLXD__CTL__CTL__INIT;
        f.group = g->id;
        fm.body_case = MLXD__CTL__CTL__BODY_GROUP_FREE;
        fm.group_free = &f;
        int r = send_hosts(out, g, &fm);
        if (r < 0)
            return r;
    }
    struct job *j = g->job;
    *pp = g->next;
    group_free(g);
    c->ngroups--;
    if (--j->groups == 0) {
        struct job **jp = job_slot(c, j->id);
        *jp = j->next;
        job_free(j);
    }
    return 0;
}

/* ---- the interface ---- */

struct coord *coord_new(int world_size) {
    if (world_size < 1)
        return NULL;
    struct coord *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->world_size = world_size;
    c->next_group = 1;
    return c;
}

struct coord *coord_free(struct coord *c) {
    if (!c)
        return NULL;
    for (int b = 0; b < GROUP_BUCKETS; b++)
        free_chain(c->groups[b]);
    for (int b = 0; b < JOB_BUCKETS; b++)
        while (c->jobs[b]) {
            struct job *j = c->jobs[b];
            c->jobs[b] = j->next;
            job_free(j);
        }
    free(c);
    return NULL;
}

int coord_handle(struct coord *c, int from, const Mlxd__Ctl__Ctl *m, uint64_t now_us, struct ctl_outbox *out,
                 const char **ret_ignored) {
    const char *ignored = NULL;
    size_t mark = out->n;
    int r = 0;

    if (from < 0 || from >= c->world_size)
        ignored = "a message from outside the world";
    else if (!m || m->body_case == MLXD__CTL__CTL__BODY__NOT_SET)
        ignored = "a control message with no body";
    else if (!m->join)                  // the body pointers share one union
        ignored = "a control message with an empty body";
    else
        switch (m->body_case) {
        case MLXD__CTL__CTL__BODY_JOIN:
            r = on_join(c, from, m->join, now_us, out, &ignored);
            break;
        case MLXD__CTL__CTL__BODY_LEAVE:
            r = on_leave(c, from, m->leave, out, &ignored);
            break;
        case MLXD__CTL__CTL__BODY_ARRIVE:
            r = on_arrive(c, from, m->arrive, out, &ignored);
            break;
        case MLXD__CTL__CTL__BODY_TIMEOUT:
            r = on_timeout(c, from, m->timeout, out, &ignored);
            break;
        case MLXD__CTL__CTL__BODY_ABORT_REQ:
            r = on_abort_req(c, from, m->abort_req, out, &ignored);
            break;
        case MLXD__CTL__CTL__BODY_GROUP_GONE:
            r = on_group_gone(c, from, m->group_gone, out, &ignored);
            break;
        case MLXD__CTL__CTL__BODY_DEPART:
            r = on_depart(c, from, m->depart, out, &ignored);
            break;
        case MLXD__CTL__CTL__BODY_HELLO_FAIL:
        case MLXD__CTL__CTL__BODY_FORM:
        case MLXD__CTL__CTL__BODY_GO:
        case MLXD__CTL__CTL__BODY_ABORT:
        case MLXD__CTL__CTL__BODY_GROUP_FREE:
        case MLXD__CTL__CTL__BODY_P2P:
        case MLXD__CTL__CTL__BODY_STATUS_REQ:
        case MLXD__CTL__CTL__BODY_STATUS_REP:
            ignored = "a message meant for hosts, not the coordinator";
            break;
        default:
            ignored = "a control message of an unknown kind";
            break;
        }
    if (r < 0) {
        outbox_truncate(out, mark);
        return r;
    }
    if (ret_ignored)
        *ret_ignored = ignored;
    return 0;
}

void coord_counts(const struct coord *c, int *ret_forming, int *ret_groups) {
    if (ret_forming)
        *ret_forming = c ? c->forming : 0;
    if (ret_groups)
        *ret_groups = c ? c->ngroups : 0;
}
