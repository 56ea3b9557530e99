/* The coordinator's groups: made when a job forms or a split goes, told
 * to every host they span, sequenced one collective at a time (Arrive, Go),
 * aborted (Timeout, AbortReq, Depart) and freed once every host said
 * GroupGone. Handlers keep coord.c's rule: all that can fail comes before
 * any change of state. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_impl.h"
#include "wire.h"

/* ---- small helpers ---- */

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
int coord_send_hosts(struct ctl_outbox *out, const struct coord_group *g, const Mlxd__Ctl__Ctl *m) {
    for (int i = 0; i < g->nhosts; i++) {
        int r = ctl_outbox_add(out, g->hosts[i], m);
        if (r < 0)
            return r;
    }
    return 0;
}

static void abort_msg(uint64_t group, int code, char *message, Mlxd__Ctl__Abort *a, Mlxd__Ctl__Ctl *m) {
    a->group = group;
    a->code = code;
    a->message = message;
    m->body_case = MLXD__CTL__CTL__BODY_ABORT;
    m->abort = a;
}

/* ---- groups ---- */

static struct coord_group **group_slot(struct coord *c, uint64_t id) {
    struct coord_group **pp = &c->groups[id % GROUP_BUCKETS];
    while (*pp && (*pp)->id != id)
        pp = &(*pp)->next;
    return pp;
}

static struct coord_group *group_find(struct coord *c, uint64_t id) {
    return *group_slot(c, id);
}

// host's entry in g->hosts, or NULL when no member of g sits there.
static const int *has_host(const struct coord_group *g, int host) {
    return bsearch(&host, g->hosts, (size_t) g->nhosts, sizeof *g->hosts, cmp_int);
}

void coord_group_free(struct coord_group *g) {
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
void coord_group_chain_free(struct coord_group *g) {
    while (g) {
        struct coord_group *next = g->next;
        coord_group_free(g);
        g = next;
    }
}

// A group of n members whose k-th member sits on host[idx ? idx[k] : k].
// Not linked yet: coord_group_link() makes it known once nothing can fail.
struct coord_group *coord_group_new(struct coord_job *job, uint64_t id, int n, const int *host, const int *idx) {
    struct coord_group *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->host = malloc((size_t) n * sizeof *g->host);
    g->hosts = malloc((size_t) n * sizeof *g->hosts);
    if (!g->host || !g->hosts) {
        coord_group_free(g);
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
        coord_group_free(g);
        return NULL;
    }
    g->id = id;
    g->job = job;
    g->size = n;
    return g;
}

void coord_group_link(struct coord *c, struct coord_group *g) {
    struct coord_group **pp = group_slot(c, g->id);
    g->next = *pp;
    *pp = g;
    g->job->groups++;
    c->ngroups++;
}

uint64_t coord_group_id(const struct coord *c, int k) {
    return COORD_GROUP_BIT | (c->next_group + (uint64_t) k);
}

static void clear_arrivals(struct coord_group *g) {
    if (g->arr)
        for (int r = 0; r < g->size; r++)
            g->arr[r].in = false;
    g->narrived = 0;
}

// Aborts g everywhere with code and message (first reason wins: callers
// check that g is not aborted yet).
static int group_abort(struct coord_group *g, int code, const char *message, struct ctl_outbox *out) {
    char *dup = strndup(message && message[0] ? message : "the group was aborted", MESSAGE_MAX);
    if (!dup)
        return -ENOMEM;
    Mlxd__Ctl__Abort a = MLXD__CTL__ABORT__INIT;
    Mlxd__Ctl__Ctl m = MLXD__CTL__CTL__INIT;
    abort_msg(g->id, code, dup, &a, &m);
    int r = coord_send_hosts(out, g, &m);
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
static void broken_msg(const struct coord_group *g, char *message, Mlxd__Ctl__Abort *a, Mlxd__Ctl__Ctl *m) {
    abort_msg(g->id, MLXD_EPEER, message, a, m);
    a->collectives = true;
}

// Whether collective seq of g waits for a member that left before issuing
// it; if so, the message every member gets (malloc'd, in *ret) or -ENOMEM.
static int break_at(const struct coord_group *g, uint64_t seq, char **ret) {
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
static int queue_break(const struct coord_group *g, uint64_t seq, struct ctl_outbox *out, char **ret_msg) {
    char *msg;
    int r = g->code || g->broken ? 0 : break_at(g, seq, &msg);
    *ret_msg = NULL;
    if (r <= 0)
        return r;
    Mlxd__Ctl__Abort a = MLXD__CTL__ABORT__INIT;
    Mlxd__Ctl__Ctl m = MLXD__CTL__CTL__INIT;
    broken_msg(g, msg, &a, &m);
    if ((r = coord_send_hosts(out, g, &m)) < 0) {
        free(msg);
        return r;
    }
    *ret_msg = msg;
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
static int plan_split(struct coord *c, const struct coord_group *g, const struct op_desc *const *d, int *order,
                      Mlxd__Ctl__Go *go, Mlxd__Ctl__NewGroup **ng, struct coord_group **made) {
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
        struct coord_group *x = coord_group_new(g->job, coord_group_id(c, k), len, g->host, &order[i]);
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
static int group_go(struct coord *c, struct coord_group *g, struct ctl_outbox *out) {
    int n = g->size, r = -ENOMEM;
    char err[512];
    const struct op_desc **d = malloc((size_t) n * sizeof *d);
    int *order = malloc((size_t) n * sizeof *order);
    Mlxd__Ctl__NewGroup *ng = NULL;
    struct coord_group *made = NULL;
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
    if ((r = coord_send_hosts(out, g, &m)) < 0 || (r = queue_break(g, g->seq + 1, out, &broken)) < 0)
        goto done;

    g->broken = broken;
    while (made) {
        struct coord_group *x = made;
        made = x->next;
        coord_group_link(c, x);
    }
    c->next_group += go.n_split;
    g->seq++;
    clear_arrivals(g);
done:
    coord_group_chain_free(made);                   // only left on failure
    free(go.split);
    free(ng);
    free(order);
    free(d);
    return r;
}

int coord_on_arrive(struct coord *c, int from, const Mlxd__Ctl__Arrive *m, struct ctl_outbox *out,
                    const char **ignored) {
    struct coord_group *g = group_find(c, m->group);
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
    struct coord_arrival *a = &g->arr[d->rank];
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

int coord_on_timeout(struct coord *c, int from, const Mlxd__Ctl__Timeout *m, struct ctl_outbox *out,
                     const char **ignored) {
    struct coord_group *g = group_find(c, m->group);
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
            coord_rank_list_add(&l, r);
    }
    snprintf(msg, sizeof msg, "%s #%llu timed out after %s s waiting for rank(s) %s", op,
             (unsigned long long) g->seq + 1, coord_secs_str(secs, sizeof secs, m->waited_ms), l.buf);
    return group_abort(g, MLXD_ETIMEDOUT, msg, out);
}

int coord_on_abort_req(struct coord *c, int from, const Mlxd__Ctl__AbortReq *m, struct ctl_outbox *out,
                       const char **ignored) {
    struct coord_group *g = group_find(c, m->group);
    if (!g)
        *ignored = "AbortReq for an unknown group";
    else if (!has_host(g, from))
        *ignored = "AbortReq from a host that is not in the group";
    else if (g->code)
        *ignored = "AbortReq on an aborted group (the first reason stands)";
    if (*ignored)
        return 0;
    // Anything but a daemon's own code becomes MLXD_EPEER.
    return group_abort(g, wire_daemon_error(m->code) ? m->code : MLXD_EPEER, m->message, out);
}

int coord_on_depart(struct coord *c, int from, const Mlxd__Ctl__Depart *m, struct ctl_outbox *out,
                    const char **ignored) {
    struct coord_group *g = group_find(c, m->group);
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

int coord_on_group_gone(struct coord *c, int from, const Mlxd__Ctl__GroupGone *m, struct ctl_outbox *out,
                        const char **ignored) {
    struct coord_group **pp = group_slot(c, m->group), *g = *pp;
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
        int r = coord_send_hosts(out, g, &fm);
        if (r < 0)
            return r;
    }
    struct coord_job *j = g->job;
    *pp = g->next;
    coord_group_free(g);
    c->ngroups--;
    if (--j->groups == 0) {
        struct coord_job **jp = coord_job_slot(c, j->id);
        *jp = j->next;
        coord_job_free(j);
    }
    return 0;
}
