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

struct session *session_find(struct server *s, const uint8_t *rid, size_t len) {
    struct session *se;
    LIST_FOREACH(se, &s->sessions, link)
        if (se->peer.rid_len == len && memcmp(se->peer.rid, rid, len) == 0)
            return se;
    return NULL;
}

int session_new(struct server *s, const struct peer *p, struct session **ret) {
    if (s->n_sessions >= s->cfg.max_clients)
        return -EMFILE;
    // One op at a time per connection: a process's ops in flight are bounded
    // by its connections (one per group).
    unsigned mine = 0;
    struct session *o;
    LIST_FOREACH(o, &s->sessions, link)
        mine += o->peer.pid == p->pid;
    if (mine >= s->cfg.max_groups_per_client)
        return -EUSERS;
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
    LIST_INSERT_HEAD(&s->sessions, se, link);
    s->n_sessions++;
    *ret = se;
    return 0;
}

void session_new_failed(struct server *s, const struct peer *p, uint64_t req_id, int r) {
    if (r == -EMFILE)
        server_reply_error(s, p, req_id, MLXD_ENOMEM, "too many clients (the daemon's limit is %u, --max-clients)",
                           s->cfg.max_clients);
    else if (r == -EUSERS)
        server_reply_error(s, p, req_id, MLXD_ENOMEM,
                           "too many groups in pid %d (the daemon's limit is %u per process, --max-groups-per-client)",
                           (int) p->pid, s->cfg.max_groups_per_client);
    else
        server_reply_error(s, p, req_id, MLXD_EINTERNAL, "cannot watch pid %d: %s", (int) p->pid, strerror(-r));
}

void session_close(struct server *s, struct session *se, int code, const char *why) {
    bool died = strncmp(why, "died", 4) == 0;
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
    s->n_sessions--;
    // A process that died, or left with its last connection, will attach to
    // nothing more.
    struct session *o;
    bool last = true;
    LIST_FOREACH(o, &s->sessions, link)
        last &= o->peer.pid != se->peer.pid;
    if (died || last)
        job_process_gone(s, se->peer.pid);
    close(se->pidfd);
    free(se);
}
