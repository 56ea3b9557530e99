/* Private header of the coordinator (coord.h), shared by its two files:
 * coord.c owns the outbox, jobs forming (Join, Leave) and the interface;
 * coord_group.c owns the groups it sequences (their lifecycle and the
 * collective messages: Arrive, Timeout, AbortReq, Depart, GroupGone).
 * Nothing here leaves the coordinator. */
#ifndef MLXD_COORD_IMPL_H
#define MLXD_COORD_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coord.h"
#include "desc.h"

#define JOB_SIZE_MAX 65536
#define MESSAGE_MAX 1024                // longest abort message relayed from a host
#define RANKS_LISTED 32                 // ranks named in one message, then ", …"
#define JOB_BUCKETS 256
#define GROUP_BUCKETS 1024

/* A job id the coordinator knows. While forming it holds who joined; once
 * formed it stays as long as any of its groups lives, so that a late
 * process cannot start a second job under the same id. */
struct coord_job {
    struct coord_job *next;             // in its bucket
    char *id;
    uint32_t uid;
    int size;
    bool formed;
    uint64_t created_us;                // when its first rank joined
    int joined;
    int *host;                          // forming: world rank of each job rank, -1 = not joined
    int *pid;                           // forming: pid of each joined rank
    int groups;                         // formed: groups alive
};

/* What a member said for the collective now being gathered. */
struct coord_arrival {
    bool in;
    struct op_desc d;
};

/* A group the coordinator created; a job's first group or a split's. */
struct coord_group {
    struct coord_group *next;           // in its bucket
    uint64_t id;
    struct coord_job *job;              // not owned; job->groups counts this one
    int size;
    int *host;                          // world rank of each member
    int *hosts;                         // the distinct hosts, ascending
    int nhosts;
    bool *gone;                         // per distinct host: it said GroupGone
    int ngone;
    uint64_t seq;                       // the collective being gathered
    struct coord_arrival *arr;          // size entries, made at the first Arrive
    int narrived;
    int code;                           // aborted when nonzero
    char *message;                      // owned, set with code
    uint64_t *left;                     // size entries once a member left: the collectives
                                        // it issued (UINT64_MAX: still there)
    char **left_msg;                    // why, as its host said it (owned)
    char *broken;                       // owned: why no collective completes from here on
};

struct coord {
    int world_size;
    uint64_t next_group;                // counter for COORD_GROUP_BIT ids
    int forming, ngroups;
    struct coord_job *jobs[JOB_BUCKETS];
    struct coord_group *groups[GROUP_BUCKETS];
};

// A list of ranks for a message, "0, 3, 7", cut after RANKS_LISTED: a
// timeout of a 4096-rank job must still give a readable line.
struct rank_list {
    char buf[RANKS_LISTED * 8 + 16];
    size_t len;
    int n;
};

/* coord.c */

// "12.3": a duration in milliseconds as seconds with one decimal, in buf.
const char *coord_secs_str(char *buf, size_t size, uint64_t ms);

// Appends rank to l.
void coord_rank_list_add(struct rank_list *l, int rank);

// Where job id is, or would be linked, in c's table.
struct coord_job **coord_job_slot(struct coord *c, const char *id);

// Frees j; NULL is fine.
void coord_job_free(struct coord_job *j);

/* coord_group.c */

// Sends m to every distinct host of g, ascending world rank.
int coord_send_hosts(struct ctl_outbox *out, const struct coord_group *g, const Mlxd__Ctl__Ctl *m);

// A group of n members of job whose k-th member sits on
// host[idx ? idx[k] : k]. Not linked yet: coord_group_link() makes it known
// once nothing can fail. NULL when out of memory.
struct coord_group *coord_group_new(struct coord_job *job, uint64_t id, int n, const int *host, const int *idx);

// Makes g known to c (and counted in its job).
void coord_group_link(struct coord *c, struct coord_group *g);

// Frees g; NULL is fine.
void coord_group_free(struct coord_group *g);

// Frees g and the groups chained after it.
void coord_group_chain_free(struct coord_group *g);

// The id of the k-th group c makes next.
uint64_t coord_group_id(const struct coord *c, int k);

// The handlers of the group messages: as coord_handle() (coord.h) says,
// with the reason a message is ignored in *ignored.
int coord_on_arrive(struct coord *c, int from, const Mlxd__Ctl__Arrive *m, struct ctl_outbox *out,
                    const char **ignored);
int coord_on_timeout(struct coord *c, int from, const Mlxd__Ctl__Timeout *m, struct ctl_outbox *out,
                     const char **ignored);
int coord_on_abort_req(struct coord *c, int from, const Mlxd__Ctl__AbortReq *m, struct ctl_outbox *out,
                       const char **ignored);
int coord_on_depart(struct coord *c, int from, const Mlxd__Ctl__Depart *m, struct ctl_outbox *out,
                    const char **ignored);
int coord_on_group_gone(struct coord *c, int from, const Mlxd__Ctl__GroupGone *m, struct ctl_outbox *out,
                        const char **ignored);

#endif
