/* Jobs: formation from hellos, groups and their members, aborts, deadlines
 * and the freeing of what nobody uses any more. */
#include "job.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "log.h"

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

static uint64_t random_token(void) {
    uint64_t t = 0;
    while (t == 0)
        if (getrandom(&t, sizeof t, 0) != sizeof t)
            t = wire_now_us() ^ ((uint64_t) rand() << 32);
    return t;
}

struct group *group_new(struct server *s, struct job *j, int size) {
    struct group *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->slots = calloc((size_t) size, sizeof *g->slots);
    if (!g->slots) {
        free(g);
        return NULL;
    }
    g->id = s->next_group_id++;
    g->job = j;
    g->size = size;
    g->live = size;
    TAILQ_INIT(&g->messages);
    for (int i = 0; i < size; i++)
        g->slots[i].token = random_token();
    LIST_INSERT_HEAD(&j->groups, g, link);
    return g;
}

static void group_free(struct group *g) {
    LIST_REMOVE(g, link);
    free(g->slots);
    free(g);
}

static void job_free(struct server *s, struct job *j) {
    struct group *g;
    for (int r = 0; r < j->size; r++)
        if (j->hellos[r])
            pending_free(s, j->hellos[r]);
    while ((g = LIST_FIRST(&j->groups))) {
        op_fail_group(s, g);
        group_free(g);
    }
    LIST_REMOVE(j, link);
    s->n_jobs--;
    free(j->hellos);
    free(j);
}

void job_gc(struct server *s, struct job *j) {
    struct group *g, *next;
    for (g = LIST_FIRST(&j->groups); g; g = next) {
        next = LIST_NEXT(g, link);
        if (g->live == 0) {
            if (g == j->world)
                j->world = NULL;
            group_free(g);
        }
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
}

// "1, 3" (at most a few dozen, then "…") into buf.
static const char *ranks_str(char *buf, size_t size, const int *ranks, int n) {
    size_t off = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && off + 16 < size; i++)
        off += (size_t) snprintf(buf + off, size - off, "%s%d", i ? ", " : "", ranks[i]);
    if (off + 16 >= size)
        snprintf(buf + off, size - off, ", …");
    return buf;
}

static void form(struct server *s, struct job *j) {
    struct group *g = group_new(s, j, j->size);
    if (!g) {
        for (int r = 0; r < j->size; r++)
            pending_fail(s, j->hellos[r], MLXD_ENOMEM, "out of memory forming job %s", j->id);
        return;
    }
    j->world = g;
    j->state = JOB_RUNNING;
    for (int r = 0; r < j->size; r++) {
        struct pending *p = j->hellos[r];
        struct session *se = p->session;
        g->slots[r] = (struct slot) {
            .state = SLOT_ATTACHED, .session = se, .pid = se->peer.pid, .job_rank = r, .token = g->slots[r].token,
        };
        se->group = g;
        se->rank = r;
        Mlxd__HelloReply h = MLXD__HELLO_REPLY__INIT;
        h.group = g->id;
        h.rank = r;
        h.size = j->size;
        h.daemon_version = (char *) MLXD_VERSION_STRING;
        h.world_rank = 0;
        h.world_size = 1;
        Mlxd__Reply rep = MLXD__REPLY__INIT;
        rep.body_case = MLXD__REPLY__BODY_HELLO;
        rep.hello = &h;
        pending_finish(s, p, &rep, NULL, 0);
    }
    log_info("Job %s formed: %d rank(s), uid %u", j->id, j->size, (unsigned) j->uid);
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
    if (j && j->uid != p->uid) {
        server_reply_error(s, p, req->id, MLXD_EDENIED, "job %s belongs to another user", h->job);
        return;
    }
    if (j && j->state != JOB_FORMING) {
        server_reply_error(s, p, req->id, MLXD_EINVAL,
                           "job %s has already formed (%s); a new run needs a new job id (mlxctl launch makes one)",
                           h->job, job_state_name(j->state));
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
        if (r == -EMFILE)
            server_reply_error(s, p, req->id, MLXD_ENOMEM, "too many clients (the daemon's limit is %u)",
                               s->cfg.max_clients);
        else
            server_reply_error(s, p, req->id, MLXD_EINTERNAL, "cannot watch pid %d: %s", (int) p->pid, strerror(-r));
        return;
    }
    if (!j) {
        j = calloc(1, sizeof *j);
        if (j)
            j->hellos = calloc((size_t) h->size, sizeof *j->hellos);
        if (!j || !j->hellos) {
            free(j);
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
        job_gc(s, j);
        return;
    }
    pe->session = se;
    pe->peer = h->rank;
    pe->ref = &j->hellos[h->rank];
    se->pending = pe;
    se->rank = h->rank;
    se->job = j;
    j->hellos[h->rank] = pe;
    log_debug("Job %s: rank %d joined (pid %d), %d of %d", j->id, h->rank, (int) p->pid, job_joined(j), j->size);
    if (job_joined(j) == j->size)
        form(s, j);
}

static struct group *group_find(struct server *s, uint64_t id) {
    struct job *j;
    struct group *g;
    LIST_FOREACH(j, &s->jobs, link)
        LIST_FOREACH(g, &j->groups, link)
            if (g->id == id)
                return g;
    return NULL;
}

void job_attach(struct server *s, const struct peer *p, const Mlxd__Request *req) {
    const Mlxd__Hello *h = req->hello;
    struct group *g = group_find(s, h->attach_group);
    struct session *se;
    int rank = -1, r;

    for (int i = 0; g && i < g->size; i++)
        if (g->slots[i].token == h->attach_token)
            rank = i;
    if (!g || rank < 0 || g->job->uid != p->uid || g->slots[rank].pid != p->pid) {
        server_reply_error(s, p, req->id, MLXD_EDENIED, "no group %llu with that token for this process",
                           (unsigned long long) h->attach_group);
        return;
    }
    struct slot *sl = &g->slots[rank];
    if (sl->state != SLOT_UNATTACHED) {
        server_reply_error(s, p, req->id, MLXD_EINVAL, "rank %d of group %llu is already attached", rank,
                           (unsigned long long) g->id);
        return;
    }
    if (g->abort_code) {
        server_reply_error(s, p, req->id, g->abort_code, "%s", g->abort_msg);
        sl->state = SLOT_GONE;
        g->live--;
        job_gc(s, g->job);
        return;
    }
    r = session_new(s, p, &se);
    if (r < 0) {
        server_reply_error(s, p, req->id, r == -EMFILE ? MLXD_ENOMEM : MLXD_EINTERNAL,
                           r == -EMFILE ? "too many clients (the daemon's limit is %u)" : "cannot watch this process (%u)",
                           s->cfg.max_clients);
        return;
    }
    sl->state = SLOT_ATTACHED;
    sl->session = se;
    se->job = g->job;
    se->group = g;
    se->rank = rank;
    Mlxd__HelloReply hr = MLXD__HELLO_REPLY__INIT;
    hr.group = g->id;
    hr.rank = rank;
    hr.size = g->size;
    hr.daemon_version = (char *) MLXD_VERSION_STRING;
    hr.world_size = 1;
    Mlxd__Reply rep = MLXD__REPLY__INIT;
    rep.id = req->id;
    rep.body_case = MLXD__REPLY__BODY_HELLO;
    rep.hello = &hr;
    server_reply(s, p, &rep, NULL, 0);
}

void group_abort(struct server *s, struct group *g, int code, const char *fmt, ...) {
    if (!g->abort_code) {
        char text[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(text, sizeof text, fmt, ap);
        va_end(ap);
        g->abort_code = code;
        snprintf(g->abort_msg, sizeof g->abort_msg, "%s", text);
        snprintf(g->job->last_error, sizeof g->job->last_error, "%s", text);
        if (g == g->job->world)
            g->job->state = JOB_ABORTED;
        // A member leaving after the last op is how every job ends; it is
        // worth a warning only when somebody was waiting.
        bool waiting = !TAILQ_EMPTY(&g->messages);
        for (int r = 0; r < g->size; r++)
            waiting |= g->slots[r].coll || g->slots[r].recv;
        log_msg(waiting ? LOG_WARNING : LOG_INFO, "Job %s group %llu aborted: %s", g->job->id,
                (unsigned long long) g->id, text);
    }
    op_fail_group(s, g);
}

void job_session_gone(struct server *s, struct session *se, int code, const char *why) {
    struct group *g = se->group;
    if (!g) {
        // Still forming (its hello is answered or freed by now): it simply
        // leaves the job.
        if (se->job)
            job_gc(s, se->job);
        se->job = NULL;
        return;
    }
    struct slot *sl = &g->slots[se->rank];
    sl->state = SLOT_GONE;
    sl->session = NULL;
    g->live--;
    se->group = NULL;
    group_abort(s, g, code, "rank %d (pid %d) %s", se->rank, (int) se->peer.pid, why);
    job_gc(s, g->job);
}

void job_process_gone(struct server *s, pid_t pid) {
    struct job *j, *jn;
    struct group *g;
    for (j = LIST_FIRST(&s->jobs); j; j = jn) {
        jn = LIST_NEXT(j, link);
        LIST_FOREACH(g, &j->groups, link) {
            for (int r = 0; r < g->size; r++) {
                struct slot *sl = &g->slots[r];
                if (sl->state == SLOT_UNATTACHED && sl->pid == pid) {
                    sl->state = SLOT_GONE;
                    g->live--;
                    group_abort(s, g, MLXD_EPEER, "rank %d (pid %d) died before attaching", r, (int) pid);
                }
            }
        }
        job_gc(s, j);
    }
}

static void hello_expired(struct server *s, struct pending *p) {
    struct session *se = p->session;
    struct job *j = se->job;
    int missing[64], n = 0, total = 0;

    for (int r = 0; r < j->size; r++)
        if (!j->hellos[r]) {
            if (n < 64)
                missing[n++] = r;
            total++;
        }
    char ranks[256];
    pending_fail(s, p, MLXD_ETIMEDOUT, "job %s did not form within %.1f s: %d of %d ranks joined; missing rank(s) %s",
                 j->id, (double) (wire_now_us() - p->start_us) / 1e6, j->size - total, j->size,
                 ranks_str(ranks, sizeof ranks, missing, n));
    log_warning("Job %s: rank %d gave up waiting for rank(s) %s to join", j->id, se->rank, ranks);
    session_close(s, se, MLXD_ETIMEDOUT, "gave up waiting for its job to form");
}

void job_expired(struct server *s, struct pending *p) {
    if (p->kind == PENDING_HELLO) {
        hello_expired(s, p);
        return;
    }
    struct session *se = p->session;
    struct group *g = se->group;
    double secs = (double) (wire_now_us() - p->start_us) / 1e6;
    char ranks[256];
    int missing[64], n = 0;

    switch (p->op) {
    case MLXD__OP_TYPE__OP_SEND:
        group_abort(s, g, MLXD_ETIMEDOUT, "send from rank %d to rank %d timed out after %.1f s: rank %d did not receive it",
                    se->rank, p->peer, secs, p->peer);
        break;
    case MLXD__OP_TYPE__OP_RECV:
        group_abort(s, g, MLXD_ETIMEDOUT, "recv of rank %d from rank %d timed out after %.1f s: rank %d sent nothing",
                    se->rank, p->peer, secs, p->peer);
        break;
    default:
        for (int r = 0; r < g->size; r++)
            if (!g->slots[r].coll && n < 64)
                missing[n++] = r;
        group_abort(s, g, MLXD_ETIMEDOUT, "%s #%llu timed out after %.1f s waiting for rank(s) %s", wire_op_name(p->op),
                    (unsigned long long) p->seq + 1, secs, ranks_str(ranks, sizeof ranks, missing, n));
        break;
    }
}
