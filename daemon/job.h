/* Jobs and groups: job formation (job.c) and the ops members run on a group
 * (op.c). A job is the set of processes of one launch; its first group (the
 * "world" of the job) forms once every rank has said hello; split makes more
 * groups of the same job. All of it lives on the loop thread. */
#ifndef MLXD_JOB_H
#define MLXD_JOB_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "server.h"

enum job_state {
    JOB_FORMING,
    JOB_RUNNING,
    JOB_ABORTED,
    JOB_STATE_MAX,
};

enum slot_state {
    SLOT_UNATTACHED,                // made by a split, no connection yet
    SLOT_ATTACHED,
    SLOT_GONE,                      // left or died
    SLOT_REMOTE,                    // a member on another host
};

// One member of a group.
struct slot {
    enum slot_state state;
    struct session *session;        // when attached
    pid_t pid;                      // the member's process
    int host;                       // world rank of its daemon
    int job_rank;
    uint64_t token;                 // proves an attach comes from this member
    struct pending *coll;           // its request in the current collective
    struct pending_list later;      // its collectives after that one, in its order
    struct pending_list recvs;      // its waiting receives, in its order
    uint64_t issued;                // collectives it issued (here: its next one's seq)
    bool left;                      // it left (freed the group, exited, died), on any host...
    uint64_t left_seq;              // ...after issuing this many collectives
    char left_why[64];              // "left the group", "died (pid 12 exited)"
};

// A message sent and not yet received.
struct message {
    TAILQ_ENTRY(message) link;
    int src, dst;
    uint32_t dtype;
    int ndim;
    int64_t shape[MLXD_MAX_NDIM];
    zmq_msg_t data;
    uint64_t nbytes;
    struct session *sender;         // to credit its queued bytes; NULL once gone
    struct pending *held;           // the send's request when over the cap
};

struct group {
    LIST_ENTRY(group) link;         // in job.groups
    uint64_t id;
    struct job *job;
    int size;
    struct slot *slots;             // [size]
    int live;                       // local slots not gone
    bool spanning;                  // members on more than one host
    bool abort_requested;           // asked the coordinator; waiting for its Abort
    uint64_t seq;                   // collectives completed
    TAILQ_HEAD(, message) messages;
    int abort_code;                 // 0 while usable
    char abort_msg[512];
    int coll_code;                  // nonzero once no collective can complete any more
    char coll_msg[512];             // (a member left before issuing the current one)
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
// Ends group g for every member: on a group of this host at once, on a
// spanning group by asking the coordinator, whose Abort comes back through
// group_abort_now().
void group_abort(struct server *s, struct group *g, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
// Fails every pending and later op of g with (code, text).
void group_abort_now(struct server *s, struct group *g, int code, const char *text);
// Makes a group of `size` slots in job j with a fresh id of this host.
struct group *group_new(struct server *s, struct job *j, int size);
struct group *group_find(struct server *s, uint64_t id);
// Frees groups whose members are all gone, and jobs with no groups left.
void job_gc(struct server *s, struct job *j);
// The daemon of world rank host is gone or unreachable (the watch says so):
// every group with members there ends for this host's members with
// MLXD_EPEER naming the host.
void job_host_lost(struct server *s, int host, const char *why);
// A pending request's deadline passed.
void job_expired(struct server *s, struct pending *p);
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
// Answers every waiting request of g with g's abort error, drops its queue.
void op_fail_group(struct server *s, struct group *g);
// g->seq moved on: the members' next queued collectives become current
// (and run, on a group of this host alone).
void op_advance(struct server *s, struct group *g);
// Whether any request of g's members waits (a collective, queued or
// current, or a receive).
bool op_waiting(const struct group *g);
// Fails every collective request of g (current and queued) with (code, msg).
void op_fail_collectives(struct server *s, struct group *g, int code, const char *msg);
// The point-to-point side of member rank leaving g: messages queued for it
// are dropped (a send held for it fails), receives from it that have no
// message fail, and its queued sends stay (no longer counted against se,
// which may be NULL).
void op_depart(struct server *s, struct group *g, int rank, struct session *se, const char *why);
// Queues a message that arrived from another host; takes data.
void op_deliver_remote(struct server *s, struct group *g, int src, int dst, const struct op_desc *d, zmq_msg_t *data);
// Answers p with a tensor whose bytes are in frame (moved), or, when p's
// result goes to shared memory, already there (frame NULL).
void op_reply_tensor(struct server *s, struct pending *p, uint32_t dtype, int ndim, const int64_t *shape,
                     zmq_msg_t *frame);
// Answers p with a result of n bytes at bytes: copied into its shared-memory
// output (unless it is already there), or sent as a frame sharing `shared`
// (a copy of bytes when shared is NULL). A shared-memory output of the
// wrong size is MLXD_EINVAL.
void op_reply_result(struct server *s, struct pending *p, uint32_t dtype, int ndim, const int64_t *shape,
                     const uint8_t *bytes, size_t n, zmq_msg_t *shared);
void op_reply_empty(struct server *s, struct pending *p);

#endif
