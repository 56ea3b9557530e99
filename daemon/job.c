/* Jobs: formation from hellos (through the coordinator, world rank 0),
 * groups and their members, aborts, deadlines and the freeing of what nobody
 * uses any more. */
#include "job.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord.h"
#include "ctl.h"
#include "log.h"
#include "world.h"

static const char *const job_state_names[JOB_STATE_MAX] = {
    [JOB_FORMING] = "forming",
    [JOB_RUNNING] = "running",
    [JOB_ABORTED] = "aborted",
};

const char *job_state_name(enum job_state st) {
    return (unsigned) st < JOB_STATE_MAX ? job_state_names[st] : "invalid";
}

int job_joined(const struct job *j) {
    int n = 0;
    for (int r = 0; j->hellos && r < j->size; r++)
        n += j->hellos[r] != NULL;
    return n;
}

static struct job *job_find(struct server *s, const char *id) {
    struct job *j;
    LIST_FOREACH(j, &s->jobs, link)
        if (strcmp(j->id, id) == 0)
            return j;
    return NULL;
}

static void job_free(struct server *s, struct job *j) {
    struct group *g;
    for (int r = 0; r < j->size; r++)
        if (j->hellos[r])
            pending_free(s, j->hellos[r]);
    while ((g = LIST_FIRST(&j->groups))) {
        group_fail_all(s, g);
        group_free(s, g);
    }
    status_job_ended(s, j);
    LIST_REMOVE(j, link);
    s->n_jobs--;
    free(j->hellos);
    free(j);
}

void job_gc(struct server *s, struct job *j) {
    struct group *g, *next;
    for (g = LIST_FIRST(&j->groups); g; g = next) {
        next = LIST_NEXT(g, link);
        if (group_done(g))
            group_free(s, g);
    }
    if (LIST_EMPTY(&j->groups) && job_joined(j) == 0) {
        log_info("Job %s ended (%llu ops)", j->id, (unsigned long long) j->ops_done);
        job_free(s, j);
    }
}

void job_free_all(struct server *s) {
    struct job *j;
    while ((j = LIST_FIRST(&s->jobs)))
        job_free(s, j);
    group_map_free(s);
}

/* ---- formation ---- */

// What a member learns when its connection joins group g as rank.
static void hello_reply_fill(struct server *s, Mlxd__HelloReply *h, const struct group *g, int rank) {
    mlxd__hello_reply__init(h);
    h->group = g->id;
    h->rank = rank;
    h->size = g->size;
    h->daemon_version = (char *) MLXD_VERSION_STRING;
    h->world_rank = world_rank(s->world);
    h->world_size = world_size(s->world);
    h->op_timeout_ms = s->cfg.op_timeout_ms;
}

static void leave(struct server *s, struct job *j, int rank, bool timed_out, uint64_t waited_ms) {
    ctl_leave(s->world, j->id, rank, timed_out, waited_ms);
}

void job_hello(struct server *s, const struct peer *p, const Mlxd__Request *req) {
    const Mlxd__Hello *h = req->hello;
    struct job *j = job_find(s, h->job);
    struct session *se;
    int r;

    if (h->pid != p->pid) {
        server_reply_error(s, p, req->id, MLXD_EDENIED, "hello says pid %d but the connection belongs to pid %d",
                           h->pid, (int) p->pid);
        return;
    }
    // What this host can tell on its own; the coordinator checks the same
    // across hosts.
    if (j && j->uid != p->uid) {
        server_reply_error(s, p, req->id, MLXD_EDENIED, "job %s belongs to another user", h->job);
        return;
    }
    if (j && j->state != JOB_FORMING) {
        server_reply_error(s, p, req->id, MLXD_EINVAL,
                           "job %s has already formed; a new run needs a new job id (mlxctl launch makes one)",
                           h->job);
        return;
    }
    if (j && j->size != h->size) {
        server_reply_error(s, p, req->id, MLXD_EINVAL, "job %s has size %d, but this process says size %d", h->job,
                           j->size, h->size);
        return;
    }
    if (j && j->hellos[h->rank]) {
        server_reply_error(s, p, req->id, MLXD_EINVAL, "rank %d of job %s has already joined (pid %d)", h->rank,
                           h->job, (int) j->hellos[h->rank]->session->peer.pid);
        return;
    }
    if (!j && s->n_jobs >= s->cfg.max_jobs) {
        server_reply_error(s, p, req->id, MLXD_ENOMEM, "too many jobs (the daemon's limit is %u)", s->cfg.max_jobs);
        return;
    }
    r = session_new(s, p, &se);
    if (r < 0) {
        session_new_failed(s, p, req->id, r);
        return;
    }
    if (!j) {
        j = calloc(1, sizeof *j);
        if (j && !(j->hellos = calloc((size_t) h->size, sizeof *j->hellos))) {
            free(j);
            j = NULL;
        }
        if (!j) {
            server_reply_error(s, p, req->id, MLXD_ENOMEM, "out of memory");
            session_close(s, se, MLXD_ENOMEM, "out of memory");
            return;
        }
        snprintf(j->id, sizeof j->id, "%s", h->job);
        j->uid = p->uid;
        j->size = h->size;
        j->created_us = wire_now_us();
        LIST_INIT(&j->groups);
        LIST_INSERT_HEAD(&s->jobs, j, link);
        s->n_jobs++;
        log_info("Job %s forming: size %d, uid %u", j->id, j->size, (unsigned) j->uid);
    }
    struct pending *pe = pending_new(s, PENDING_HELLO, req->id, req->timeout_ms);
    if (!pe) {
        server_reply_error(s, p, req->id, MLXD_ENOMEM, "out of memory");
        session_close(s, se, MLXD_ENOMEM, "out of memory");
        return;
    }
    pe->rank = h->rank;
    pe->ref = &j->hellos[h->rank];
    pending_track(se, pe);
    se->rank = h->rank;
    se->job = j;
    j->hellos[h->rank] = pe;
    log_debug("Job %s: rank %d said hello (pid %d)", j->id, h->rank, (int) p->pid);
    ctl_join(s->world, j->id, j->uid, j->size, h->rank, p->pid);
}

// Refuses the hello of rank of j, forming, with (code, message): its
// session ends (and the coordinator forgets the rank).
static void refuse(struct server *s, struct job *j, int rank, int code, const char *message) {
    struct session *se = j->hellos[rank]->session;
    pending_fail(s, j->hellos[rank], code < 0 ? code : MLXD_EINTERNAL, "%s", message);
    log_info("Job %s: rank %d (pid %d) refused: %s", j->id, rank, (int) se->peer.pid, message);
    session_close(s, se, code, "could not join its job");
}

void job_hello_fail(struct server *s, const char *id, int rank, int code, const char *message) {
    struct job *j = job_find(s, id);
    if (!j || j->state != JOB_FORMING || rank < 0 || rank >= j->size || !j->hellos[rank])
        return;                      // its hello is gone already
    refuse(s, j, rank, code, message);
}

void job_form(struct server *s, const char *id, uint64_t gid, const int32_t *hosts, size_t n) {
    struct job *j = job_find(s, id);
    int me = world_rank(s->world), nhosts = 0, left = -1;
    struct group *g = NULL;

    if (j && j->state == JOB_FORMING && (size_t) j->size == n)
        g = group_new(s, j, j->size, gid);
    if (!g) {
        // Nobody of this job is left here (or no memory): the others must
        // not wait for us.
        char msg[256];
        snprintf(msg, sizeof msg, "the members of job %s on %s left before it formed", id,
                 world_host(s->world, me));
        ctl_abort_req(s->world, gid, MLXD_EPEER, msg);
        ctl_group_gone(s->world, gid);
        return;
    }
    j->world = g;
    j->state = JOB_RUNNING;
    g->live = 0;
    for (int r = 0; r < j->size; r++) {
        struct slot *sl = &g->slots[r];
        sl->job_rank = r;
        sl->host = hosts[r];
        nhosts += r == 0 || hosts[r] != hosts[0];
        if (hosts[r] != me) {
            sl->state = SLOT_REMOTE;
            continue;
        }
        struct pending *p = j->hellos[r];
        if (!p) {
            sl->state = SLOT_GONE;
            left = r;
            continue;
        }
        struct session *se = p->session;
        sl->state = SLOT_ATTACHED;
        sl->session = se;
        sl->pid = se->peer.pid;
        g->live++;
        se->group = g;
        se->rank = r;
        Mlxd__HelloReply h;
        hello_reply_fill(s, &h, g, r);
        Mlxd__Reply rep = MLXD__REPLY__INIT;
        rep.body_case = MLXD__REPLY__BODY_HELLO;
        rep.hello = &h;
        pending_finish(s, p, &rep, NULL, 0);
    }
    g->spanning = nhosts > 1;
    log_info("Job %s formed: %d rank(s), %d here, uid %u%s", j->id, j->size, g->live, (unsigned) j->uid,
             g->spanning ? ", across hosts" : "");
    if (left >= 0)
        group_abort(s, g, MLXD_EPEER, "rank %d left before the job formed", left);
    job_gc(s, j);
}

void job_attach(struct server *s, const struct peer *p, const Mlxd__Request *req) {
    const Mlxd__Hello *h = req->hello;
    struct group *g = group_find(s, h->attach_group);
    struct session *se;
    int rank = -1, r;

    for (int i = 0; g && i < g->size; i++)
        if (g->slots[i].state != SLOT_REMOTE && g->slots[i].token == h->attach_token)
            rank = i;
    if (!g || rank < 0 || g->job->uid != p->uid || g->slots[rank].pid != p->pid) {
        server_reply_error(s, p, req->id, MLXD_EDENIED, "no group %016llx with that token for this process",
                           (unsigned long long) h->attach_group);
        return;
    }
    struct slot *sl = &g->slots[rank];
    if (sl->state != SLOT_UNATTACHED) {
        server_reply_error(s, p, req->id, MLXD_EINVAL, "rank %d of group %016llx is already attached", rank,
                           (unsigned long long) g->id);
        return;
    }
    // A split completes for every member, whatever the others did since
    // (left, died, the group aborted): only the ops issued later learn it.
    r = session_new(s, p, &se);
    if (r < 0) {
        // This member will never attach: the others must not wait for it.
        session_new_failed(s, p, req->id, r);
        group_depart(s, g, rank, NULL, "could not attach to the group (a limit of the daemon)");
        job_gc(s, g->job);
        return;
    }
    sl->state = SLOT_ATTACHED;
    sl->session = se;
    se->job = g->job;
    se->group = g;
    se->rank = rank;
    Mlxd__HelloReply hr;
    hello_reply_fill(s, &hr, g, rank);
    Mlxd__Reply rep = MLXD__REPLY__INIT;
    rep.id = req->id;
    rep.body_case = MLXD__REPLY__BODY_HELLO;
    rep.hello = &hr;
    server_reply(s, p, &rep, NULL, 0);
}

void job_session_gone(struct server *s, struct session *se, int code, const char *why) {
    struct group *g = se->group;
    struct job *j = se->job;
    se->job = NULL;
    if (!g) {
        // Still forming: it leaves the job (its hello is answered or freed
        // by now), and the coordinator forgets its rank.
        if (j && j->state == JOB_FORMING && se->rank >= 0)
            leave(s, j, se->rank, false, 0);
        if (j)
            job_gc(s, j);
        return;
    }
    se->group = NULL;
    group_depart(s, g, se->rank, se, why);
    if (code != MLXD_EPEER)
        group_abort(s, g, code, "rank %d (pid %d) %s", se->rank, (int) se->peer.pid, why);
    job_gc(s, g->job);
}

// Job j, still forming, cannot form any more: every rank that said hello
// here is refused with (code, text), as the coordinator refuses one.
static void job_refuse_here(struct server *s, struct job *j, int code, const char *text) {
    // The job is freed with its last hello: count them first.
    int left = job_joined(j);
    for (int r = 0; left > 0; r++) {
        if (j->hellos[r]) {
            left--;
            refuse(s, j, r, code, text);
        }
    }
}

void job_host_lost(struct server *s, int host, const char *why) {
    struct job *j, *jn;
    char text[512];
    snprintf(text, sizeof text, "host %s (world rank %d) was lost: %s", world_host(s->world, host), host, why);
    group_host_lost(s, host, text);
    for (j = LIST_FIRST(&s->jobs); j; j = jn) {
        jn = LIST_NEXT(j, link);
        if (j->state == JOB_FORMING && (host == 0 || job_joined(j) < j->size))
            job_refuse_here(s, j, MLXD_EPEER, text);
    }
}

void job_process_gone(struct server *s, pid_t pid) {
    struct job *j, *jn;
    struct group *g;
    for (j = LIST_FIRST(&s->jobs); j; j = jn) {
        jn = LIST_NEXT(j, link);
        LIST_FOREACH(g, &j->groups, link) {
            for (int r = 0; r < g->size; r++) {
                struct slot *sl = &g->slots[r];
                if (sl->state == SLOT_UNATTACHED && sl->pid == pid)
                    group_depart(s, g, r, NULL, "ended before attaching to the group");
            }
        }
        job_gc(s, j);
    }
}

