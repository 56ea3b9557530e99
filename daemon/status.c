/* The daemon's state as a DaemonStatus message, for mlxctl status. Every
 * field is heap-allocated so that protobuf-c's free_unpacked frees it. Also
 * what status shows beyond the live state (the jobs that ended, the CPU use)
 * and the snapshot of the metrics that --metrics serves. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "ctl.h"
#include "http.h"
#include "job.h"
#include "log.h"
#include "platform.h"
#include "world.h"

// A member waiting this long in an op (or a job forming this long) shows
// as stalled; shorter waits are how healthy jobs run.
#define STALL_MS 1000
// Spacing of the CPU samples, and of the published metrics snapshots.
#define CPU_SAMPLE_US (250u * 1000u)
#define METRICS_PUBLISH_US (250u * 1000u)

static char *dup_str(const char *s) {
    return strdup(s ? s : "");
}

static Mlxd__ClientStatus *client_status(struct server *s, const struct session *se) {
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
    const struct pending *sp = TAILQ_FIRST(&se->pendings);
    c->pending = dup_str(sp ? (sp->kind == PENDING_HELLO ? "hello" : wire_op_name(sp->d.op)) : "");
    c->cmdline = dup_str(se->cmdline);
    unsigned segs;
    shm_usage(s, se->peer.pid, &segs, &c->shm_bytes);
    c->shm_segments = segs;
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
    uint64_t now = wire_now_us();
    js->age_ms = (now - j->created_us) / 1000;
    js->ops_per_s = js->age_ms ? (double) j->ops_done * 1000.0 / (double) js->age_ms : 0.0;
    js->missing_ranks = malloc((size_t) j->size * sizeof *js->missing_ranks);
    if (j->state == JOB_FORMING) {
        local = job_joined(j);
        if (js->age_ms >= STALL_MS) {
            js->stalled_op = dup_str("hello");
            for (int r = 0; r < j->size && js->missing_ranks; r++)
                if (!j->hellos[r])
                    js->missing_ranks[js->n_missing_ranks++] = r;
            js->stalled_ms = js->age_ms;
        } else {
            js->stalled_op = dup_str("");
        }
    } else if (j->world) {
        // The world group's current collective, if some members wait in it.
        g = j->world;
        const struct pending *first = NULL;
        for (int r = 0; r < g->size; r++) {
            local += g->slots[r].state == SLOT_ATTACHED;
            const struct pending *p = g->slots[r].coll ? g->slots[r].coll : TAILQ_FIRST(&g->slots[r].recvs);
            if (p && (!first || p->start_us < first->start_us))
                first = p;
        }
        if (first && (now - first->start_us) / 1000 >= STALL_MS) {
            js->stalled_op = dup_str(wire_op_name(first->d.op));
            js->stalled_ms = (now - first->start_us) / 1000;
            for (int r = 0; r < g->size && js->missing_ranks; r++)
                if (first->d.op != MLXD__OP_TYPE__OP_RECV && !g->slots[r].coll)
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

/* ---- what the daemon uses ---- */

static uint64_t cpu_time_us(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) < 0)
        return 0;
    return (uint64_t) (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
           (uint64_t) (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

void status_sample(struct server *s, uint64_t now) {
    const struct cpu_sample *last = &s->status.cpu[(s->status.cpu_next + STATUS_CPU_SAMPLES - 1) % STATUS_CPU_SAMPLES];
    if (last->wall_us && now - last->wall_us < CPU_SAMPLE_US)
        return;
    s->status.cpu[s->status.cpu_next] = (struct cpu_sample) { .wall_us = now, .cpu_us = cpu_time_us() };
    s->status.cpu_next = (s->status.cpu_next + 1) % STATUS_CPU_SAMPLES;
}

// Percent of one core over the last second: from the newest sample at least
// a second old (the loop samples on every wakeup, so a daemon that slept
// has none newer and was idle since), else the oldest one.
static double cpu_percent(const struct server *s, uint64_t now) {
    uint64_t cpu = cpu_time_us();
    const struct cpu_sample *aged = NULL, *oldest = NULL;
    for (int i = 0; i < STATUS_CPU_SAMPLES; i++) {
        const struct cpu_sample *c = &s->status.cpu[i];
        if (!c->wall_us || c->wall_us >= now)
            continue;
        if (now - c->wall_us >= 1000000u && (!aged || c->wall_us > aged->wall_us))
            aged = c;
        if (!oldest || c->wall_us < oldest->wall_us)
            oldest = c;
    }
    const struct cpu_sample *from = aged ? aged : oldest;
    if (!from || cpu < from->cpu_us)
        return 0.0;
    return (double) (cpu - from->cpu_us) * 100.0 / (double) (now - from->wall_us);
}

/* ---- jobs that ended ---- */

// The job of a request: its group's, or while it forms its session's.
static struct job *pending_job(const struct pending *p) {
    if (p->group)
        return p->group->job;
    return p->session ? p->session->job : NULL;
}

void status_request_failed(struct server *s, const struct pending *p, int code, const char *message) {
    struct job *j = pending_job(p);
    if (!j || j->first_code || code == 0)
        return;
    j->first_code = code;
    snprintf(j->first_error, sizeof j->first_error, "%s", message ? message : "");
}

void status_job_ended(struct server *s, const struct job *j) {
    struct ended_job *e = &s->status.recent[s->status.recent_next];
    *e = (struct ended_job) { .size = j->size, .code = j->first_code,
                              .duration_ms = (wire_now_us() - j->created_us) / 1000 };
    snprintf(e->id, sizeof e->id, "%s", j->id);
    snprintf(e->error, sizeof e->error, "%s", j->first_code ? j->first_error : "");
    s->status.recent_next = (s->status.recent_next + 1) % STATUS_RECENT_JOBS;
    if (s->status.n_recent < STATUS_RECENT_JOBS)
        s->status.n_recent++;
}

static Mlxd__RecentJob *recent_job(const struct ended_job *e) {
    Mlxd__RecentJob *r = malloc(sizeof *r);
    if (!r)
        return NULL;
    mlxd__recent_job__init(r);
    r->id = dup_str(e->id);
    r->size = e->size;
    r->duration_ms = e->duration_ms;
    r->result = dup_str(e->code ? wire_error_name(e->code) : "ok");
    r->error = dup_str(e->error);
    return r;
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

    d->clients = calloc(s->sessions.n ? s->sessions.n : 1, sizeof *d->clients);
    const struct session *se;
    LIST_FOREACH(se, &s->sessions.list, link)
        if (d->clients && (d->clients[d->n_clients] = client_status(s, se)))
            d->n_clients++;

    d->jobs = calloc(s->n_jobs ? s->n_jobs : 1, sizeof *d->jobs);
    const struct job *j;
    LIST_FOREACH(j, &s->jobs, link)
        if (d->jobs && (d->jobs[d->n_jobs] = job_status(j)))
            d->n_jobs++;

    d->recent_jobs = calloc(STATUS_RECENT_JOBS, sizeof *d->recent_jobs);
    for (unsigned i = 0; d->recent_jobs && i < s->status.n_recent; i++) {
        unsigned k = (s->status.recent_next + STATUS_RECENT_JOBS - s->status.n_recent + i) % STATUS_RECENT_JOBS;
        if ((d->recent_jobs[d->n_recent_jobs] = recent_job(&s->status.recent[k])))
            d->n_recent_jobs++;
    }
    uint64_t now = wire_now_us();
    d->cpu_percent = cpu_percent(s, now);
    d->rss_bytes = platform_resident_bytes();

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
    // A status that misses what it should show is not one: out of memory.
    if (!d->version || !d->endpoint || !d->host || !d->mpi_version || d->n_hosts < (size_t) d->world_size ||
        d->n_clients < s->sessions.n || d->n_jobs < s->n_jobs || d->n_recent_jobs < s->status.n_recent ||
        !d->totals) {
        status_free(d);
        return NULL;
    }
    return d;
}

void status_free(Mlxd__DaemonStatus *d) {
    if (d)
        mlxd__daemon_status__free_unpacked(d, NULL);
}

/* ---- mlxctl status --world ---- */

#define GATHER_TIMEOUT_US (2u * 1000u * 1000u)

// A StatusRequest(world) waiting for the other daemons' answers.
struct status_gather {
    struct status_gather *next;
    uint64_t id;
    struct peer peer;
    uint64_t req_id;
    Mlxd__DaemonStatus **got;       // [world size], by world rank
    int missing;
    uint64_t deadline_us;
};

static void gather_finish(struct server *s, struct status_gather *sg) {
    int n = world_size(s->world), k = 0;
    Mlxd__DaemonStatus **list = calloc((size_t) n, sizeof *list);
    sg->got[world_rank(s->world)] = status_build(s);
    for (int r = 0; list && r < n; r++)
        if (sg->got[r])
            list[k++] = sg->got[r];
    Mlxd__StatusReply st = MLXD__STATUS_REPLY__INIT;
    st.n_daemons = (size_t) k;
    st.daemons = list;
    Mlxd__Reply rep = MLXD__REPLY__INIT;
    rep.id = sg->req_id;
    rep.body_case = MLXD__REPLY__BODY_STATUS;
    rep.status = &st;
    char note[256] = "";
    if (sg->missing > 0) {
        size_t off = (size_t) snprintf(note, sizeof note, "%d daemon(s) did not answer within 2 s: world rank(s)",
                                       sg->missing);
        for (int r = 0; r < n && off < sizeof note; r++)
            if (!sg->got[r] && r != world_rank(s->world))
                off += (size_t) snprintf(note + off, sizeof note - off, " %d", r);
        rep.message = note;
    }
    if (list)
        server_reply(s, &sg->peer, &rep, NULL, 0);
    else
        server_reply_error(s, &sg->peer, sg->req_id, MLXD_ENOMEM, "out of memory");
    free(list);
    for (int r = 0; r < n; r++)
        status_free(sg->got[r]);
    free(sg->got);
    for (struct status_gather **p = &s->status.gathers; *p; p = &(*p)->next)
        if (*p == sg) {
            *p = sg->next;
            break;
        }
    free(sg);
}

void status_request(struct server *s, const struct peer *p, const Mlxd__Request *req) {
    int n = world_size(s->world);
    struct status_gather *sg = NULL;
    if (req->status->world && n > 1 && (sg = calloc(1, sizeof *sg)) &&
        !(sg->got = calloc((size_t) n, sizeof *sg->got))) {
        free(sg);
        sg = NULL;
    }
    if (!sg) {
        // This daemon alone (or no memory to ask the others).
        Mlxd__DaemonStatus *d = status_build(s);
        if (!d) {
            server_reply_error(s, p, req->id, MLXD_ENOMEM, "out of memory");
            return;
        }
        Mlxd__StatusReply st = MLXD__STATUS_REPLY__INIT;
        Mlxd__Reply rep = MLXD__REPLY__INIT;
        st.n_daemons = 1;
        st.daemons = &d;
        rep.id = req->id;
        rep.body_case = MLXD__REPLY__BODY_STATUS;
        rep.status = &st;
        server_reply(s, p, &rep, NULL, 0);
        status_free(d);
        return;
    }
    sg->id = ++s->status.last_gather_id;
    sg->peer = *p;
    sg->req_id = req->id;
    sg->missing = n - 1;
    sg->deadline_us = wire_now_us() + GATHER_TIMEOUT_US;
    sg->next = s->status.gathers;
    s->status.gathers = sg;
    // A host we cannot ask is a missing answer: the deadline reports it.
    for (int r = 0; r < n; r++)
        if (r != world_rank(s->world))
            ctl_status_req(s->world, r, sg->id);
}

void status_remote_request(struct server *s, int from, uint64_t id) {
    Mlxd__DaemonStatus *d = status_build(s);
    if (!d)
        return;
    size_t len = mlxd__daemon_status__get_packed_size(d);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf) {
        mlxd__daemon_status__pack(d, buf);
        ctl_status_rep(s->world, from, id, buf, len);
    } else {
        log_error("Out of memory answering world rank %d's status request", from);
    }
    free(buf);
    status_free(d);
}

void status_remote_reply(struct server *s, int from, uint64_t id, const uint8_t *buf, size_t len) {
    struct status_gather *sg;
    for (sg = s->status.gathers; sg && sg->id != id; sg = sg->next)
        ;
    if (!sg || from < 0 || from >= world_size(s->world) || sg->got[from])
        return;
    sg->got[from] = mlxd__daemon_status__unpack(NULL, len, buf);
    if (sg->got[from] && --sg->missing == 0)
        gather_finish(s, sg);
}

uint64_t status_expire(struct server *s, uint64_t now) {
    uint64_t next = UINT64_MAX;
    struct status_gather *sg, *sn;
    for (sg = s->status.gathers; sg; sg = sn) {
        sn = sg->next;
        if (sg->deadline_us <= now)
            gather_finish(s, sg);
        else if (sg->deadline_us < next)
            next = sg->deadline_us;
    }
    return next;
}

void status_free_all(struct server *s) {
    while (s->status.gathers)
        gather_finish(s, s->status.gathers);
}

/* ---- the metrics snapshot of --metrics ---- */

// Changes whenever what the snapshot shows changes.
static uint64_t metrics_fingerprint(const struct server *s) {
    return s->metrics.records * 1000003u ^ (uint64_t) s->sessions.n << 40 ^ (uint64_t) s->n_jobs << 20;
}

uint64_t status_publish_metrics(struct server *s, uint64_t now) {
    if (!s->status.http)
        return UINT64_MAX;
    uint64_t seen = metrics_fingerprint(s);
    if (seen == s->status.metrics_seen && s->status.metrics_next_us)
        return UINT64_MAX;           // nothing new: no wakeup needed
    if (now < s->status.metrics_next_us)
        return s->status.metrics_next_us;   // new, but published a moment ago
    struct metrics_gauges g = {
        .world_rank = world_rank(s->world),
        .world_size = world_size(s->world),
        .clients = s->sessions.n,
        .jobs = s->n_jobs,
    };
    char *text;
    size_t len;
    if (metrics_render(&s->metrics, &g, &text, &len) < 0)
        return now + METRICS_PUBLISH_US;  // try again later
    http_publish(s->status.http, text, len);
    s->status.metrics_seen = seen;
    s->status.metrics_next_us = now + METRICS_PUBLISH_US;
    return UINT64_MAX;
}
