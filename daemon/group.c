/* Groups: made, found by id (a hash map, one lookup per engine event),
 * aborted, freed; and the deadlines of their members' requests. */
#include "group.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "coord.h"
#include "ctl.h"
#include "job.h"
#include "log.h"
#include "world.h"

/* ---- the map by id ---- */

static size_t bucket_of(const struct group_map *m, uint64_t id) {
    uint64_t h = id * UINT64_C(0x9e3779b97f4a7c15);    // Fibonacci hashing: ids differ in their low bits
    return (size_t) (h >> 32) & (m->nbuckets - 1);
}

// Doubles the buckets once there are more groups than buckets; a map that
// cannot grow stays as it is (longer chains, still right).
static void map_grow(struct group_map *m) {
    size_t n = m->nbuckets ? m->nbuckets * 2 : 64;
    struct group **b = calloc(n, sizeof *b);
    if (!b)
        return;
    struct group_map bigger = { .buckets = b, .nbuckets = n, .n = m->n };
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct group *g, *next;
        for (g = m->buckets[i]; g; g = next) {
            next = g->hnext;
            size_t k = bucket_of(&bigger, g->id);
            g->hnext = b[k];
            b[k] = g;
        }
    }
    free(m->buckets);
    *m = bigger;
}

static int map_add(struct group_map *m, struct group *g) {
    if (m->n >= m->nbuckets)
        map_grow(m);
    if (!m->nbuckets)
        return -1;
    size_t k = bucket_of(m, g->id);
    g->hnext = m->buckets[k];
    m->buckets[k] = g;
    m->n++;
    return 0;
}

static void map_remove(struct group_map *m, struct group *g) {
    if (!m->nbuckets)
        return;
    for (struct group **pp = &m->buckets[bucket_of(m, g->id)]; *pp; pp = &(*pp)->hnext)
        if (*pp == g) {
            *pp = g->hnext;
            m->n--;
            return;
        }
}

struct group *group_find(struct server *s, uint64_t id) {
    const struct group_map *m = &s->groups;
    if (!m->nbuckets)
        return NULL;
    for (struct group *g = m->buckets[bucket_of(m, id)]; g; g = g->hnext)
        if (g->id == id)
            return g;
    return NULL;
}

void group_map_free(struct server *s) {
    free(s->groups.buckets);
    memset(&s->groups, 0, sizeof s->groups);
}

/* ---- lifecycle ---- */

static uint64_t random_token(void) {
    uint64_t t = 0;
    while (t == 0)
        if (getrandom(&t, sizeof t, 0) != sizeof t)
            t = wire_now_us() ^ ((uint64_t) rand() << 32);
    return t;
}

struct group *group_new(struct server *s, struct job *j, int size, uint64_t id) {
    struct group *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->slots = calloc((size_t) size, sizeof *g->slots);
    g->id = id ? id : ((uint64_t) world_rank(s->world) << 40) | s->next_group_id++;
    if (!g->slots || map_add(&s->groups, g) < 0) {
        free(g->slots);
        free(g);
        return NULL;
    }
    g->job = j;
    g->size = size;
    g->live = size;
    TAILQ_INIT(&g->messages);
    for (int i = 0; i < size; i++) {
        g->slots[i].token = random_token();
        g->slots[i].host = world_rank(s->world);
        TAILQ_INIT(&g->slots[i].later);
        TAILQ_INIT(&g->slots[i].recvs);
    }
    LIST_INSERT_HEAD(&j->groups, g, link);
    return g;
}

// A group the coordinator made stays on its books until every host says it
// has no member left.
void group_free(struct server *s, struct group *g) {
    if (g->id & COORD_GROUP_BIT)
        ctl_group_gone(s->world, g->id);
    if (g == g->job->world)
        g->job->world = NULL;
    map_remove(&s->groups, g);
    LIST_REMOVE(g, link);
    free(g->slots);
    free(g);
}

bool group_waiting(const struct group *g) {
    for (int r = 0; r < g->size; r++)
        if (g->slots[r].coll || !TAILQ_EMPTY(&g->slots[r].later) || !TAILQ_EMPTY(&g->slots[r].recvs))
            return true;
    return false;
}

bool group_done(const struct group *g) {
    return g->live == 0 && TAILQ_EMPTY(&g->messages) && !group_waiting(g);
}

void group_message_free(struct group *g, struct message *m) {
    TAILQ_REMOVE(&g->messages, m, link);
    if (m->sender)
        m->sender->queued_bytes -= m->nbytes;
    if (m->held)
        m->held->ref = NULL;
    zmq_msg_close(&m->data);
    free(m);
}

/* ---- aborts ---- */

void group_abort_now(struct server *s, struct group *g, int code, const char *text) {
    if (!g->abort_code) {
        g->abort_code = code;
        snprintf(g->abort_msg, sizeof g->abort_msg, "%s", text);
        snprintf(g->job->last_error, sizeof g->job->last_error, "%s", text);
        if (g == g->job->world)
            g->job->state = JOB_ABORTED;
        // A member leaving after the last op is how every job ends; it is
        // worth a warning only when somebody was waiting.
        bool waiting = !TAILQ_EMPTY(&g->messages) || group_waiting(g);
        log_msg(waiting ? LOG_WARNING : LOG_INFO, "Job %s group " WIRE_ID_FMT " aborted: %s", g->job->id, g->id,
                text);
    }
    group_fail_all(s, g);
}

void group_abort(struct server *s, struct group *g, int code, const char *fmt, ...) {
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (!g->spanning) {
        group_abort_now(s, g, code, text);
        return;
    }
    // Every host must end the group at the same point of its op sequence:
    // the coordinator decides, and its Abort comes back to every host.
    if (g->abort_code || g->abort_requested)
        return;
    g->abort_requested = true;
    ctl_abort_req(s->world, g->id, code, text);
}

void group_fail_all(struct server *s, struct group *g) {
    struct message *m;
    struct pending *p;
    int code = g->abort_code ? g->abort_code : MLXD_EPEER;
    const char *msg = g->abort_code ? g->abort_msg : "the group is gone";
    group_fail_collectives(s, g, code, msg);
    for (int r = 0; r < g->size; r++)
        while ((p = TAILQ_FIRST(&g->slots[r].recvs)))
            pending_fail(s, p, code, "%s", msg);
    while ((m = TAILQ_FIRST(&g->messages))) {
        struct pending *held = m->held;
        group_message_free(g, m);
        if (held)
            pending_fail(s, held, code, "%s", msg);
    }
}

void group_fail_collectives(struct server *s, struct group *g, int code, const char *msg) {
    struct pending *p;
    for (int r = 0; r < g->size; r++) {
        // The queued ones first, so that none becomes current meanwhile.
        while ((p = TAILQ_LAST(&g->slots[r].later, pending_list)))
            pending_fail(s, p, code, "%s", msg);
        if (g->slots[r].coll)
            pending_fail(s, g->slots[r].coll, code, "%s", msg);
    }
}

/* ---- deadlines ---- */

// How long after a member's deadline a host waits for the coordinator to end
// a spanning group before it fails its own members itself.
#define COORD_GRACE_MS 1000

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

// Ends a spanning group for this host's members now, and asks the
// coordinator to end it on every host (group_abort), for a failure this host
// sees on its own while the control plane may be unreachable.
static void group_abort_here(struct server *s, struct group *g, int code, const char *text) {
    group_abort(s, g, code, "%s", text);
    group_abort_now(s, g, code, text);
}

void group_host_lost(struct server *s, int host, const char *text) {
    struct job *j;
    struct group *g;
    LIST_FOREACH(j, &s->jobs, link)
        LIST_FOREACH(g, &j->groups, link) {
            bool there = false;
            for (int r = 0; r < g->size && !there; r++)
                there = g->slots[r].host == host;
            if (g->spanning && there && !g->abort_code)
                group_abort_here(s, g, MLXD_EPEER, text);
        }
}

// The coordinator did not end a spanning group within COORD_GRACE_MS of a
// member's deadline: world rank 0 is unreachable from here (or an engine is
// stuck in MPI). This host fails its own members now, naming that host,
// and still asks the coordinator to end the group everywhere (the request
// leaves once the link is back).
static void coord_silent(struct server *s, struct pending *p, double secs) {
    struct group *g = p->group;
    char text[512];
    snprintf(text, sizeof text,
             "%s timed out after %.1f s; world rank 0 (host %s), which ends it on every host, did not answer "
             "within %.1f s: that host is unreachable from %s, or stuck",
             wire_op_name(p->d.op), secs, world_host(s->world, 0), COORD_GRACE_MS / 1000.0,
             world_host(s->world, world_rank(s->world)));
    group_abort_here(s, g, MLXD_ETIMEDOUT, text);
}

void job_expired(struct server *s, struct pending *p) {
    uint64_t waited = wire_now_us() - p->start_us;
    double secs = (double) waited / 1e6;
    // Whatever happens next is decided elsewhere (the coordinator, or the
    // abort below): this deadline has done its work. On a spanning group, the
    // coordinator gets COORD_GRACE_MS to decide, then this host does.
    p->deadline_us = UINT64_MAX;
    if (p->kind == PENDING_OP && p->coord_asked) {
        coord_silent(s, p, secs);
        return;
    }
    if (p->kind == PENDING_OP && p->group->spanning) {
        p->coord_asked = true;
        p->deadline_us = wire_now_us() + COORD_GRACE_MS * 1000;
    }

    if (p->kind == PENDING_HELLO) {
        struct session *se = p->session;
        log_info("Job %s: rank %d (pid %d) gave up waiting for the job to form after %.1f s", se->job->id, p->rank,
                 (int) se->peer.pid, secs);
        ctl_leave(s->world, se->job->id, p->rank, true, waited / 1000);
        return;
    }
    struct group *g = p->group;
    char ranks[256];
    int missing[64], n = 0;

    if (p->queue && p->d.op != MLXD__OP_TYPE__OP_RECV) {
        // A collective queued behind the member's earlier ones: those
        // never ended, and their own deadlines were longer.
        group_abort(s, g, MLXD_ETIMEDOUT, "%s of rank %d timed out after %.1f s behind its earlier collectives",
                    wire_op_name(p->d.op), p->rank, secs);
        return;
    }
    switch (p->d.op) {
    case MLXD__OP_TYPE__OP_SEND:
        group_abort(s, g, MLXD_ETIMEDOUT, "send from rank %d to rank %d timed out after %.1f s: rank %d did not receive it",
                    p->rank, p->peer, secs, p->peer);
        break;
    case MLXD__OP_TYPE__OP_RECV:
        group_abort(s, g, MLXD_ETIMEDOUT, "recv of rank %d from rank %d timed out after %.1f s: rank %d sent nothing",
                    p->rank, p->peer, secs, p->peer);
        break;
    default:
        if (g->spanning) {
            // Only the coordinator knows who is missing on other hosts.
            ctl_timeout(s->world, g->id, p->seq, p->rank, waited / 1000);
            break;
        }
        for (int r = 0; r < g->size; r++)
            if (!g->slots[r].coll && n < 64)
                missing[n++] = r;
        group_abort(s, g, MLXD_ETIMEDOUT, "%s #%llu timed out after %.1f s waiting for rank(s) %s",
                    wire_op_name(p->d.op), (unsigned long long) p->seq + 1, secs,
                    ranks_str(ranks, sizeof ranks, missing, n));
        break;
    }
}
