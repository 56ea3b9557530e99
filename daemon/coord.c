/* The coordinator's state machine: jobs forming, the groups it sequences,
 * and the messages each control message makes it send. See coord.h and
 * proto/control.proto. This file: the outbox, jobs forming and the
 * interface; the groups are coord_group.c's.
 *
 * Every handler does all it can fail at (allocations, packing into the
 * outbox) before it changes any state, so a -ENOMEM leaves the coordinator
 * as it was and coord_handle() takes back whatever it had queued: the caller
 * may drop the message and go on. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_impl.h"
#include "wire.h"

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
const char *coord_secs_str(char *buf, size_t size, uint64_t ms) {
    snprintf(buf, size, "%llu.%llu", (unsigned long long) (ms / 1000), (unsigned long long) (ms % 1000 / 100));
    return buf;
}

void coord_rank_list_add(struct rank_list *l, int rank) {
    size_t room = sizeof l->buf - l->len;
    if (l->n < RANKS_LISTED)
        l->len += (size_t) snprintf(l->buf + l->len, room, "%s%d", l->n ? ", " : "", rank);
    else if (l->n == RANKS_LISTED)
        l->len += (size_t) snprintf(l->buf + l->len, room, ", …");
    l->n++;
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

/* ---- jobs ---- */

struct coord_job **coord_job_slot(struct coord *c, const char *id) {
    uint32_t h = 2166136261u;           // FNV-1a
    for (const unsigned char *p = (const unsigned char *) id; *p; p++)
        h = (h ^ *p) * 16777619u;
    struct coord_job **pp = &c->jobs[h % JOB_BUCKETS];
    while (*pp && strcmp((*pp)->id, id) != 0)
        pp = &(*pp)->next;
    return pp;
}

void coord_job_free(struct coord_job *j) {
    if (!j)
        return;
    free(j->id);
    free(j->host);
    free(j->pid);
    free(j);
}

static struct coord_job *job_new(const Mlxd__Ctl__Join *m, uint64_t now_us) {
    struct coord_job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->id = strdup(m->job);
    j->host = malloc((size_t) m->size * sizeof *j->host);
    j->pid = calloc((size_t) m->size, sizeof *j->pid);
    if (!j->id || !j->host || !j->pid) {
        coord_job_free(j);
        return NULL;
    }
    for (int r = 0; r < m->size; r++)
        j->host[r] = -1;
    j->uid = m->uid;
    j->size = m->size;
    j->created_us = now_us;
    return j;
}

/* ---- Join and Leave ---- */

// All ranks of j joined: make its first group and tell every host.
static int job_form(struct coord *c, struct coord_job *j, struct ctl_outbox *out) {
    struct coord_group *g = coord_group_new(j, coord_group_id(c, 0), j->size, j->host, NULL);
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
    int r = coord_send_hosts(out, g, &m);
    if (r < 0) {
        coord_group_free(g);
        return r;
    }
    c->next_group++;
    coord_group_link(c, g);
    return 0;
}

// All ranks of j joined but there is no room for its group: every rank
// gets the error now rather than a timeout later.
static int job_refuse(const struct coord_job *j, struct ctl_outbox *out) {
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

    struct coord_job **pp = coord_job_slot(c, m->job), *j = *pp;
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
            coord_job_free(j);
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
        coord_job_free(j);
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
    struct coord_job **pp = coord_job_slot(c, m->job), *j = *pp;
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
                coord_rank_list_add(&l, r);
        int r = send_hello_fail(out, from, j->id, m->rank, MLXD_ETIMEDOUT,
                                "job %s did not form within %s s: %d of %d ranks joined; missing rank(s) %s", j->id,
                                coord_secs_str(secs, sizeof secs, m->waited_ms), j->joined, j->size, l.buf);
        if (r < 0)
            return r;
    }
    j->host[m->rank] = -1;
    j->joined--;
    if (j->joined == 0) {
        *pp = j->next;
        coord_job_free(j);
        c->forming--;
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
        coord_group_chain_free(c->groups[b]);
    for (int b = 0; b < JOB_BUCKETS; b++)
        while (c->jobs[b]) {
            struct coord_job *j = c->jobs[b];
            c->jobs[b] = j->next;
            coord_job_free(j);
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
            r = coord_on_arrive(c, from, m->arrive, out, &ignored);
            break;
        case MLXD__CTL__CTL__BODY_TIMEOUT:
            r = coord_on_timeout(c, from, m->timeout, out, &ignored);
            break;
        case MLXD__CTL__CTL__BODY_ABORT_REQ:
            r = coord_on_abort_req(c, from, m->abort_req, out, &ignored);
            break;
        case MLXD__CTL__CTL__BODY_GROUP_GONE:
            r = coord_on_group_gone(c, from, m->group_gone, out, &ignored);
            break;
        case MLXD__CTL__CTL__BODY_DEPART:
            r = coord_on_depart(c, from, m->depart, out, &ignored);
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
