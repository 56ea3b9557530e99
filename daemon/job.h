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

#define JOB_ID_MAX 128

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
};

// One member of a group.
struct slot {
    enum slot_state state;
    struct session *session;        // when attached
    pid_t pid;                      // the member's process
    int job_rank;
    uint64_t token;                 // proves an attach comes from this member
    struct pending *coll;           // its request in the current collective
    struct pending *recv;           // its waiting recv
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
    int live;                       // slots not gone
    uint64_t seq;                   // collectives completed
    TAILQ_HEAD(, message) messages;
    int abort_code;                 // 0 while usable
    char abort_msg[512];
};

struct job {
    LIST_ENTRY(job) link;
    char id[JOB_ID_MAX + 1];
    uid_t uid;
    int size;
    enum job_state state;
    struct pending **hellos;        // [size] while forming
    LIST_HEAD(, group) groups;
    struct group *world;            // the job's first group, once formed
    uint64_t created_us;
    uint64_t ops_done;
    char last_error[512];
};

const char *job_state_name(enum job_state st);
// Ranks that said hello and wait for the job to form.
int job_joined(const struct job *j);

/* job.c */
// A Hello that joins a job; the reply comes when the job forms (or fails).
void job_hello(struct server *s, const struct peer *p, const Mlxd__Request *req);
// A Hello that attaches a new connection to a group a split made.
void job_attach(struct server *s, const struct peer *p, const Mlxd__Request *req);
// The session left or died: its group is aborted with code (MLXD_EPEER, or
// MLXD_EUNAVAILABLE when the daemon stops), naming it and why.
void job_session_gone(struct server *s, struct session *se, int code, const char *why);
// Process pid of this uid exited: forget its hellos and unattached slots.
void job_process_gone(struct server *s, pid_t pid);
// Fails every pending and later op of g with (code, message).
void group_abort(struct server *s, struct group *g, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
// Makes a group of `size` unattached slots in job j.
struct group *group_new(struct server *s, struct job *j, int size);
// Frees groups whose members are all gone, and jobs with no groups left.
void job_gc(struct server *s, struct job *j);
// A pending request's deadline passed.
void job_expired(struct server *s, struct pending *p);
void job_free_all(struct server *s);

/* op.c */
// An OpRequest from an attached session, already decoded; takes p.
void op_submit(struct server *s, struct session *se, struct pending *p);
// Answers every waiting request of g with g's abort error, drops its queue.
void op_fail_group(struct server *s, struct group *g);
// "[2, 3]" into buf.
const char *shape_str(char *buf, size_t size, int ndim, const int64_t *shape);

#endif
