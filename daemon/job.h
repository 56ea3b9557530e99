/* Jobs: their formation from hellos (job.c); their groups are in group.h.
 * A job is the set of processes of one launch; its first group (the "world"
 * of the job) forms once every rank has said hello; split makes more
 * groups of the same job. All of it lives on the loop thread. */
#ifndef MLXD_JOB_H
#define MLXD_JOB_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "group.h"
#include "server.h"

enum job_state {
    JOB_FORMING,
    JOB_RUNNING,
    JOB_ABORTED,
    JOB_STATE_MAX,
};

struct job {
    LIST_ENTRY(job) link;
    char id[WIRE_JOB_ID_MAX + 1];
    uid_t uid;
    int size;
    enum job_state state;
    struct pending **hellos;        // [size] while forming
    LIST_HEAD(, group) groups;
    struct group *world;            // the job's first group, once formed
    uint64_t created_us;
    uint64_t ops_done;
    char last_error[512];
    int first_code;                 // the first error a member's request got (status.c)
    char first_error[256];
};

const char *job_state_name(enum job_state st);
// Ranks that said hello and wait for the job to form.
int job_joined(const struct job *j);

/* job.c */
// A Hello that joins a job: reported to the coordinator, answered when the
// job forms (job_form) or fails (job_hello_fail).
void job_hello(struct server *s, const struct peer *p, const Mlxd__Request *req);
// A Hello that attaches a new connection to a group a split made.
void job_attach(struct server *s, const struct peer *p, const Mlxd__Request *req);
// The coordinator formed job id as group gid; hosts[r] is job rank r's daemon.
void job_form(struct server *s, const char *id, uint64_t gid, const int32_t *hosts, size_t n);
// The coordinator refused rank's hello.
void job_hello_fail(struct server *s, const char *id, int rank, int code, const char *message);
// The session left or died. With MLXD_EPEER the member departs
// (group_depart); with another code (MLXD_EUNAVAILABLE when the daemon
// stops) its group is aborted with code, naming it and why.
void job_session_gone(struct server *s, struct session *se, int code, const char *why);
// Process pid exited or closed its last connection: its unattached slots
// are gone.
void job_process_gone(struct server *s, pid_t pid);
// Frees groups whose members are all gone, and jobs with no groups left.
void job_gc(struct server *s, struct job *j);
// The daemon of world rank host is gone or unreachable (the watch says so):
// every group with members there ends for this host's members with
// MLXD_EPEER naming the host, and so does every job still forming here
// that needs it (world rank 0, the coordinator, forms every job; another
// host may hold the ranks a job still waits for).
void job_host_lost(struct server *s, int host, const char *why);
void job_free_all(struct server *s);

/* depart.c */
// Member rank of g, attached here (se) or never attached (se NULL), left
// (why: "left the group", "died (pid 12 exited)"). What it handed over
// stays and completes: its collectives in flight, its queued sends. What
// can no longer complete fails with MLXD_EPEER: receives from it without a
// message, sends to it, and collectives from the first one it never issued
// (on a spanning group the coordinator says when, for every host at once).
void group_depart(struct server *s, struct group *g, int rank, struct session *se, const char *why);
// Another host's member `rank` of g left after issuing seq collectives;
// every message it sent here has arrived.
void group_depart_remote(struct server *s, struct group *g, int rank, uint64_t seq);
// No collective of g can complete from the current one on: fails them all,
// now and later, with (code, text). Sends and receives go on.
void group_break_collectives(struct server *s, struct group *g, int code, const char *text);
// On a group of this host alone: breaks the collectives once one of them
// waits for a member that left before issuing it. After every change of
// g->seq or of a member's departure.
void group_check_collectives(struct server *s, struct group *g);

/* op.c */
// An OpRequest from an attached session, already decoded; takes p.
void op_submit(struct server *s, struct session *se, struct pending *p);

#endif
