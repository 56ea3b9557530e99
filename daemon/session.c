/* Sessions: one per client connection that said hello. Each watches its
 * process through a pidfd, so that a client that dies is noticed at once,
 * whatever state its connection is in. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "job.h"
#include "log.h"
#include "platform.h"
#include "ringsvc.h"
#include "server.h"

// FNV-1a.
static uint32_t hash_bytes(const void *data, size_t len) {
    const uint8_t *b = data;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

static uint32_t hash_int(int v) {
    return hash_bytes(&v, sizeof v);
}

static void bucket_insert(struct sessions *ss, struct session *se) {
    unsigned mask = ss->n_buckets - 1;
    LIST_INSERT_HEAD(&ss->by_rid[hash_bytes(se->peer.rid, se->peer.rid_len) & mask], se, rid_link);
    LIST_INSERT_HEAD(&ss->by_fd[hash_int(se->pidfd) & mask], se, fd_link);
    LIST_INSERT_HEAD(&ss->by_pid[hash_int(se->peer.pid) & mask], se, pid_link);
}

// Makes room for one more session: at most one per bucket on average. When
// that fails the buckets stay as they are (only longer).
static int grow(struct sessions *ss) {
    if (ss->n < ss->n_buckets)
        return 0;
    unsigned n = ss->n_buckets ? 2 * ss->n_buckets : 16;
    struct session_bucket *rid = calloc(n, sizeof *rid), *fd = calloc(n, sizeof *fd), *pid = calloc(n, sizeof *pid);
    if (!rid || !fd || !pid) {
        free(rid);
        free(fd);
        free(pid);
        return ss->n_buckets ? 0 : -ENOMEM;
    }
    free(ss->by_rid);
    free(ss->by_fd);
    free(ss->by_pid);
    ss->by_rid = rid;
    ss->by_fd = fd;
    ss->by_pid = pid;
    ss->n_buckets = n;
    struct session *se;
    LIST_FOREACH(se, &ss->list, link)
        bucket_insert(ss, se);
    return 0;
}

void sessions_fini(struct server *s) {
    struct sessions *ss = &s->sessions;
    free(ss->by_rid);
    free(ss->by_fd);
    free(ss->by_pid);
    ss->by_rid = ss->by_fd = ss->by_pid = NULL;
    ss->n_buckets = 0;
}

struct session *session_find(struct server *s, const uint8_t *rid, size_t len) {
    struct sessions *ss = &s->sessions;
    struct session *se;
    if (!ss->n_buckets)
        return NULL;
    LIST_FOREACH(se, &ss->by_rid[hash_bytes(rid, len) & (ss->n_buckets - 1)], rid_link)
        if (se->peer.rid_len == len && memcmp(se->peer.rid, rid, len) == 0)
            return se;
    return NULL;
}

struct session *session_of_member(struct server *s, pid_t pid, uint64_t group, int rank) {
    struct session *se;
    LIST_FOREACH(se, &s->sessions.list, link)
        if (se->peer.pid == pid && se->group && se->group->id == group && se->rank == rank)
            return se;
    return NULL;
}

struct session *session_by_pidfd(struct server *s, int fd) {
    struct sessions *ss = &s->sessions;
    struct session *se;
    if (!ss->n_buckets)
        return NULL;
    LIST_FOREACH(se, &ss->by_fd[hash_int(fd) & (ss->n_buckets - 1)], fd_link)
        if (se->pidfd == fd)
            return se;
    return NULL;
}

// How many sessions process pid has.
static unsigned sessions_of(const struct sessions *ss, pid_t pid) {
    unsigned n = 0;
    const struct session *se;
    if (!ss->n_buckets)
        return 0;
    LIST_FOREACH(se, &ss->by_pid[hash_int(pid) & (ss->n_buckets - 1)], pid_link)
        n += se->peer.pid == pid;
    return n;
}

int session_new(struct server *s, const struct peer *p, struct session **ret) {
    struct sessions *ss = &s->sessions;
    if (ss->n >= s->cfg.max_clients)
        return SESSION_TOO_MANY_CLIENTS;
    // One op at a time per connection: a process's ops in flight are bounded
    // by its connections (one per group).
    if (sessions_of(ss, p->pid) >= s->cfg.max_groups_per_client)
        return SESSION_TOO_MANY_GROUPS;
    if (grow(ss) < 0)
        return -ENOMEM;
    int fd = platform_watch_process(p->pid);
    if (fd < 0)
        return fd;
    struct session *se = calloc(1, sizeof *se);
    if (!se) {
        close(fd);
        return -ENOMEM;
    }
    se->peer = *p;
    se->pidfd = fd;
    TAILQ_INIT(&se->pendings);
    platform_process_cmdline(p->pid, se->cmdline, sizeof se->cmdline);
    se->rank = -1;
    LIST_INSERT_HEAD(&ss->list, se, link);
    bucket_insert(ss, se);
    ss->n++;
    *ret = se;
    return 0;
}

void session_new_failed(struct server *s, const struct peer *p, uint64_t req_id, int r) {
    if (r == SESSION_TOO_MANY_CLIENTS)
        server_reply_error(s, p, req_id, MLXD_ENOMEM, "too many clients (the daemon's limit is %u, --max-clients)",
                           s->cfg.max_clients);
    else if (r == SESSION_TOO_MANY_GROUPS)
        server_reply_error(s, p, req_id, MLXD_ENOMEM,
                           "too many groups in pid %d (the daemon's limit is %u per process, --max-groups-per-client)",
                           (int) p->pid, s->cfg.max_groups_per_client);
    else
        server_reply_error(s, p, req_id, MLXD_EINTERNAL, "cannot watch pid %d: %s", (int) p->pid, strerror(-r));
}

static void close_session(struct server *s, struct session *se, int code, const char *why, bool died) {
    log_info("Client pid %d (job %s rank %d) %s", (int) se->peer.pid, se->group ? se->group->job->id : "-",
             se->rank, why);
    ring_detach(s, se);
    // Nothing it handed over is lost: its collectives in flight and its
    // sends held over the cap stay, without anyone to answer, and complete
    // with the others (on a spanning group the other hosts may already run
    // the op, which needs its input here). Its receives are answered now (a
    // dead peer just won't read them).
    struct pending *p;
    while ((p = TAILQ_FIRST(&se->pendings))) {
        bool keep = p->kind == PENDING_OP && se->group && p->d.op != MLXD__OP_TYPE__OP_RECV &&
                    (code == MLXD_EPEER || se->group->spanning);
        if (keep)
            pending_orphan(p);
        else
            pending_fail(s, p, code, "%s", why);
    }
    job_session_gone(s, se, code, why);
    LIST_REMOVE(se, link);
    LIST_REMOVE(se, rid_link);
    LIST_REMOVE(se, fd_link);
    LIST_REMOVE(se, pid_link);
    s->sessions.n--;
    // A process that died, or left with its last connection, will attach to
    // nothing more.
    if (died || sessions_of(&s->sessions, se->peer.pid) == 0)
        job_process_gone(s, se->peer.pid);
    close(se->pidfd);
    free(se);
}

void session_close(struct server *s, struct session *se, int code, const char *why) {
    close_session(s, se, code, why, false);
}

void session_died(struct server *s, struct session *se) {
    char why[64];
    snprintf(why, sizeof why, "died (pid %d exited)", (int) se->peer.pid);
    close_session(s, se, MLXD_EPEER, why, true);
}
