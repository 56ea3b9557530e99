/* The daemon's state as a DaemonStatus message, for mlxctl status. Every
 * field is heap-allocated so that protobuf-c's free_unpacked frees it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "job.h"
#include "world.h"

static char *dup_str(const char *s) {
    return strdup(s ? s : "");
}

static Mlxd__ClientStatus *client_status(const struct session *se) {
    Mlxd__ClientStatus *c = malloc(sizeof *c);
    if (!c)
        return NULL;
    mlxd__client_status__init(c);
    c->pid = se->peer.pid;
    c->uid = se->peer.uid;
    c->job = dup_str(se->job ? se->job->id : "");
    c->rank = se->rank;
    c->group = se->group ? se->group->id : 0;
    c->ops = se->ops;
    c->pending = dup_str(se->pending ? (se->pending->kind == PENDING_HELLO ? "hello" : wire_op_name(se->pending->op)) : "");
    return c;
}

static Mlxd__JobStatus *job_status(const struct job *j) {
    Mlxd__JobStatus *js = malloc(sizeof *js);
    if (!js)
        return NULL;
    mlxd__job_status__init(js);
    js->id = dup_str(j->id);
    js->size = j->size;
    js->uid = j->uid;
    js->state = dup_str(job_state_name(j->state));
    js->ops_done = j->ops_done;
    js->last_error = dup_str(j->last_error);
    int local = 0, groups = 0;
    const struct group *g;
    LIST_FOREACH(g, &j->groups, link)
        groups++;
    js->groups = groups;
    js->missing_ranks = malloc((size_t) j->size * sizeof *js->missing_ranks);
    if (j->state == JOB_FORMING) {
        local = job_joined(j);
        js->stalled_op = dup_str("hello");
        for (int r = 0; r < j->size && js->missing_ranks; r++)
            if (!j->hellos[r])
                js->missing_ranks[js->n_missing_ranks++] = r;
        uint64_t now = wire_now_us();
        js->stalled_ms = (now - j->created_us) / 1000;
    } else if (j->world) {
        // The world group's current collective, if some members wait in it.
        g = j->world;
        const struct pending *first = NULL;
        for (int r = 0; r < g->size; r++) {
            local += g->slots[r].state == SLOT_ATTACHED;
            const struct pending *p = g->slots[r].coll ? g->slots[r].coll : g->slots[r].recv;
            if (p && (!first || p->start_us < first->start_us))
                first = p;
        }
        if (first) {
            js->stalled_op = dup_str(wire_op_name(first->op));
            js->stalled_ms = (wire_now_us() - first->start_us) / 1000;
            for (int r = 0; r < g->size && js->missing_ranks; r++)
                if (first->op != MLXD__OP_TYPE__OP_RECV && !g->slots[r].coll)
                    js->missing_ranks[js->n_missing_ranks++] = r;
        } else {
            js->stalled_op = dup_str("");
        }
    } else {
        js->stalled_op = dup_str("");
    }
    js->local_members = local;
    return js;
}

Mlxd__DaemonStatus *status_build(struct server *s) {
    Mlxd__DaemonStatus *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    mlxd__daemon_status__init(d);
    d->version = dup_str(MLXD_VERSION_STRING);
    d->pid = (int32_t) getpid();
    d->uptime_ms = (wire_now_us() - s->start_us) / 1000;
    d->endpoint = dup_str(s->cfg.endpoint);
    d->world_rank = world_rank(s->world);
    d->world_size = world_size(s->world);
    d->host = dup_str(world_host(s->world, d->world_rank));
    d->mpi_version = dup_str(world_mpi_version(s->world));
    d->hosts = calloc((size_t) d->world_size, sizeof *d->hosts);
    for (int r = 0; d->hosts && r < d->world_size; r++)
        d->hosts[d->n_hosts++] = dup_str(world_host(s->world, r));

    d->clients = calloc(s->n_sessions ? s->n_sessions : 1, sizeof *d->clients);
    const struct session *se;
    LIST_FOREACH(se, &s->sessions, link)
        if (d->clients && (d->clients[d->n_clients] = client_status(se)))
            d->n_clients++;

    d->jobs = calloc(s->n_jobs ? s->n_jobs : 1, sizeof *d->jobs);
    const struct job *j;
    LIST_FOREACH(j, &s->jobs, link)
        if (d->jobs && (d->jobs[d->n_jobs] = job_status(j)))
            d->n_jobs++;

    d->totals = calloc(METRICS_OPS, sizeof *d->totals);
    for (int op = 1; d->totals && op < METRICS_OPS; op++) {
        const struct op_metrics *m = &s->metrics.op[op];
        if (m->count == 0 && m->errors == 0)
            continue;
        Mlxd__OpTotals *t = malloc(sizeof *t);
        if (!t)
            break;
        mlxd__op_totals__init(t);
        t->op = dup_str(wire_op_name((Mlxd__OpType) op));
        t->count = m->count;
        t->bytes = m->bytes;
        t->errors = m->errors;
        t->p50_us = metrics_quantile(&s->metrics, (Mlxd__OpType) op, 0.50);
        t->p99_us = metrics_quantile(&s->metrics, (Mlxd__OpType) op, 0.99);
        d->totals[d->n_totals++] = t;
    }
    return d;
}

void status_free(Mlxd__DaemonStatus *d) {
    if (d)
        mlxd__daemon_status__free_unpacked(d, NULL);
}
