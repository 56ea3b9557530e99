/* Members that leave a group: by mlxd_group_free (Goodbye), by exiting, or
 * by dying. Nothing a member handed over is lost: its collectives in flight
 * run with its contribution and its queued sends are delivered. Only what
 * can no longer complete fails, with MLXD_EPEER: receives from it that have
 * no message, sends to it, and every collective from the first one it never
 * issued. On a spanning group every host must agree at which point of the
 * op sequence that is: the host tells the coordinator how many collectives
 * the member issued, and the coordinator breaks the collectives on every
 * host at once (proto/control.proto, Depart). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "job.h"
#include "p2p.h"
#include "log.h"
#include "world.h"

// Tells the coordinator, and every other host of g once, that member rank
// left after issuing seq collectives. To a host it travels behind the
// member's messages (the same channel keeps their order).
static void send_depart(struct server *s, struct group *g, int rank, uint64_t seq, const char *text) {
    int me = world_rank(s->world), n = world_size(s->world);
    bool *told = calloc((size_t) n, sizeof *told);
    if (!told) {
        log_error("Job %s: out of memory telling the other hosts that rank %d left", g->job->id, rank);
        return;
    }
    for (int r = 0; r < g->size; r++) {
        int h = g->slots[r].host;
        if (h < 0 || h >= n || h == me || told[h])
            continue;
        told[h] = true;
        ctl_depart(s->world, h, g->id, rank, seq, text);
    }
    if (!told[0])
        ctl_depart(s->world, 0, g->id, rank, seq, text);
    free(told);
}

void group_depart(struct server *s, struct group *g, int rank, struct session *se, const char *why) {
    struct slot *sl = &g->slots[rank];
    char text[256];
    if (sl->left)
        return;
    sl->state = SLOT_GONE;
    sl->session = NULL;
    sl->left = true;
    sl->left_seq = sl->issued;
    snprintf(sl->left_why, sizeof sl->left_why, "%s", why);
    g->live--;
    log_debug("Job %s group %016llx: rank %d (pid %d) %s after %llu collective(s)", g->job->id,
              (unsigned long long) g->id, rank, (int) sl->pid, why, (unsigned long long) sl->issued);
    p2p_depart(s, g, rank, se, why);
    if (g->spanning) {
        snprintf(text, sizeof text, "rank %d (pid %d) %s", rank, (int) sl->pid, why);
        send_depart(s, g, rank, sl->issued, text);
    } else {
        group_check_collectives(s, g);
    }
}

void group_depart_remote(struct server *s, struct group *g, int rank, uint64_t seq) {
    if (rank < 0 || rank >= g->size || g->slots[rank].state != SLOT_REMOTE || g->slots[rank].left)
        return;
    struct slot *sl = &g->slots[rank];
    sl->left = true;
    sl->left_seq = seq;
    snprintf(sl->left_why, sizeof sl->left_why, "left the group");
    p2p_depart(s, g, rank, NULL, sl->left_why);
}

void group_break_collectives(struct server *s, struct group *g, int code, const char *text) {
    if (!g->coll_code) {
        g->coll_code = code;
        snprintf(g->coll_msg, sizeof g->coll_msg, "%s", text);
        snprintf(g->job->last_error, sizeof g->job->last_error, "%s", text);
        bool waiting = group_waiting(g);
        log_msg(waiting ? LOG_WARNING : LOG_INFO, "Job %s group %016llx: no more collectives: %s", g->job->id,
                (unsigned long long) g->id, text);
    }
    group_fail_collectives(s, g, g->coll_code, g->coll_msg);
}

void group_check_collectives(struct server *s, struct group *g) {
    char text[512];
    if (g->spanning || g->coll_code || g->abort_code)
        return;
    for (int r = 0; r < g->size; r++) {
        const struct slot *sl = &g->slots[r];
        if (!sl->left || sl->left_seq > g->seq)
            continue;
        snprintf(text, sizeof text, "rank %d (pid %d) %s before collective #%llu of the group", r, (int) sl->pid,
                 sl->left_why, (unsigned long long) g->seq + 1);
        group_break_collectives(s, g, MLXD_EPEER, text);
        return;
    }
}
