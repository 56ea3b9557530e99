/* The daemon's state: struct server holds each module's own part (the loop,
 * the ZeroMQ front, the replies, the sessions, shared memory, status, the
 * engine, the domain's jobs), built by server.c. Everything here runs on the
 * loop thread; nothing takes a lock. */
#ifndef MLXD_SERVER_H
#define MLXD_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>
#include <zmq.h>

#include "desc.h"
#include "front.h"
#include "loop.h"
#include "metrics.h"
#include "reply.h"
#include "ringsvc.h"
#include "shm.h"
#include "wire.h"

struct world;
struct job;
struct group;
struct http;
struct pool;

// mlxctl status keeps the last STATUS_RECENT_JOBS jobs that ended here.
#define STATUS_RECENT_JOBS 32
// CPU samples kept to report the use over the last second (status.c).
#define STATUS_CPU_SAMPLES 8

// Daemon settings, from the command line.
struct config {
    char endpoint[WIRE_MAX_IPC_PATH + 16];
    bool endpoint_given;
    int log_level;
    uint32_t op_timeout_ms;         // default deadline of every request
    uint32_t max_clients;           // connected sessions
    uint32_t max_groups_per_client; // sessions of one process
    uint32_t max_inflight_per_client; // requests in flight on one session
    uint32_t max_jobs;
    uint64_t max_tensor_bytes;      // one tensor, and one frame
    uint64_t max_queued_bytes;      // sent but not yet received, per session
    uint64_t max_shm_bytes;         // shared memory per client process
    int max_group_size;
    uint32_t mpi_stall_ms;          // the world exits when one MPI call takes longer; 0: 4 op timeouts
    uint32_t heartbeat_timeout_ms;  // --heartbeat-timeout: a host silent this long is lost; 0: the default
    char metrics_addr[256];         // --metrics HOST:PORT; "" when off
    unsigned workers;               // --workers: threads for bulk work, the loop counted; 0: one per CPU
};

// One connection (one group of one client process), created by Hello.
struct session {
    LIST_ENTRY(session) link;       // in sessions.list
    LIST_ENTRY(session) rid_link, fd_link, pid_link;   // in sessions' buckets
    struct peer peer;
    int pidfd;                      // becomes readable when the process exits
    struct job *job;                // the job it joined (forming or formed)
    struct group *group;            // once formed or attached
    int rank;                       // in group
    struct pending_list pendings;   // its requests in flight, oldest first...
    unsigned inflight;              // ...and how many (--max-inflight-per-client)
    uint64_t ops;
    uint64_t queued_bytes;          // of its sends not yet received
    char cmdline[256];              // /proc/PID/cmdline when it connected, for status
    struct ring *ring;              // its request/reply ring (ring.c); NULL: ZeroMQ only
};

// A job that ended, as mlxctl status shows it (status.c).
struct ended_job {
    char id[129];
    int size;
    uint64_t duration_ms;
    int code;                       // the first error a member got; 0: ok
    char error[256];
};

// The process's CPU time at one moment (status.c).
struct cpu_sample {
    uint64_t wall_us, cpu_us;
};

LIST_HEAD(session_bucket, session);

// The sessions, one per connection that said hello (session.c), found by
// routing id, by pidfd and by process in hash buckets.
struct sessions {
    LIST_HEAD(, session) list;
    unsigned n;
    struct session_bucket *by_rid, *by_fd, *by_pid;
    unsigned n_buckets;             // a power of two, at least n (0: none yet)
};

// What mlxctl status and the metrics endpoint show (status.c).
struct status_state {
    struct status_gather *gathers;  // mlxctl status --world in progress
    uint64_t last_gather_id;        // the id of the latest one (ids start at 1)
    struct ended_job recent[STATUS_RECENT_JOBS];  // a ring, recent_next is the oldest once full
    unsigned n_recent, recent_next;
    struct cpu_sample cpu[STATUS_CPU_SAMPLES];     // a ring, taken at most every 250 ms
    unsigned cpu_next;
    struct http *http;              // --metrics: the HTTP server, reading what we publish
    uint64_t metrics_next_us;       // when the next snapshot may be published
    uint64_t metrics_seen;          // what the last one showed (metrics_fingerprint)
};

// The daemon: each module's own part, built by server_init().
// Groups by id, for the engine's events and attaches (group.c).
struct group_map {
    struct group **buckets;         // [nbuckets], a power of two
    size_t nbuckets, n;
};

struct server {
    struct config cfg;
    void *zctx;                     // shared by the front and the engine
    uint64_t start_us;
    struct loop_state loop;         // signals, stopping (loop.c)
    struct front front;             // the ROUTER socket, its file and lock (front.c)
    struct replies replies;         // requests waiting for their reply (reply.c)
    struct sessions sessions;       // (session.c)
    struct shm_registry shm;        // the side channel and its segments (shm.c)
    struct status_state status;     // (status.c)
    struct metrics metrics;         // counters by op and code (metrics.c)
    struct world *world;            // the MPI engine (world.c)
    struct pool *pool;              // bulk copies and reductions (NULL: all on the loop thread)
    LIST_HEAD(, job) jobs;
    unsigned n_jobs;
    struct group_map groups;        // every group of every job, by id (group.c)
    LIST_HEAD(, ring) rings;        // request/reply rings (ring.c)
    struct ring_hooks ring_hooks;   // what the rings ask of the sessions (server.c sets them)
    uint64_t next_group_id;         // of groups this host makes alone
};

/* server.c */
// Builds every module (logs its failures); server_fini() takes down what
// was built, whatever server_init() returned.
int server_init(struct server *s, const struct config *cfg);
void server_fini(struct server *s);

/* session.c */
// What session_new() refuses with, beside a negative errno (watching the
// process failed, or out of memory): below every errno.
enum session_refusal {
    SESSION_TOO_MANY_CLIENTS = -4096,   // --max-clients
    SESSION_TOO_MANY_GROUPS,            // --max-groups-per-client, in one process
};

// The session of routing id rid / of the pidfd fd; NULL when none.
struct session *session_find(struct server *s, const uint8_t *rid, size_t len);
struct session *session_by_pidfd(struct server *s, int fd);
// The session of process pid's connection to group as rank; NULL when none.
struct session *session_of_member(struct server *s, pid_t pid, uint64_t group, int rank);
int session_new(struct server *s, const struct peer *p, struct session **ret);
// Answers a hello whose session_new() failed with r, saying which limit.
void session_new_failed(struct server *s, const struct peer *p, uint64_t req_id, int r);
// Ends a session: its group learns (code, why), its pending request is
// failed with the same code, and it is freed.
void session_close(struct server *s, struct session *se, int code, const char *why);
// The session's process exited (its pidfd is readable): as session_close(),
// MLXD_EPEER, and the process attaches to nothing more.
void session_died(struct server *s, struct session *se);
// Frees the buckets, once every session is closed.
void sessions_fini(struct server *s);

/* status.c */
// Fills a DaemonStatus of this daemon; free with status_free().
Mlxd__DaemonStatus *status_build(struct server *s);
void status_free(Mlxd__DaemonStatus *d);
// Answers a StatusRequest: this daemon alone, or (world) every daemon's
// status, gathered over the control plane with a deadline.
void status_request(struct server *s, const struct peer *p, const Mlxd__Request *req);
// Another daemon asked for our status / answered our request.
void status_remote_request(struct server *s, int from, uint64_t id);
void status_remote_reply(struct server *s, int from, uint64_t id, const uint8_t *buf, size_t len);
// Answers gathers whose deadline passed; returns the next deadline.
uint64_t status_expire(struct server *s, uint64_t now);
void status_free_all(struct server *s);
// Request p of a job is answered with error code: the job's first error
// becomes its result in recent_jobs.
void status_request_failed(struct server *s, const struct pending *p, int code, const char *message);
// Job j is about to be freed: it goes into recent_jobs.
void status_job_ended(struct server *s, const struct job *j);
// Samples the process's CPU time when due; cheap, call on every wakeup.
void status_sample(struct server *s, uint64_t now);
// With --metrics: publishes a new snapshot of the metrics to the HTTP
// server when something changed, at most every 250 ms; returns when it
// should be called again (UINT64_MAX: nothing waits).
uint64_t status_publish_metrics(struct server *s, uint64_t now);

#endif
