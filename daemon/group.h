/* Groups: the members of one communicator of a job, their requests and
 * their messages. group.c owns a group's lifecycle (made, found by id,
 * aborted, freed) and its deadlines; depart.c its members leaving; coll*.c
 * its collectives; p2p.c its sends and receives. All of it lives on the loop
 * thread. */
#ifndef MLXD_GROUP_H
#define MLXD_GROUP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "server.h"

struct job;

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
    struct group *hnext;            // in its bucket of the map by id (group.c)
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

// Makes a group of `size` slots in job j with id (0: a fresh id of this
// host), in the map.
struct group *group_new(struct server *s, struct job *j, int size, uint64_t id);
struct group *group_find(struct server *s, uint64_t id);
// Frees g (telling the coordinator when it made g), out of the map.
void group_free(struct server *s, struct group *g);
// Frees the map itself, once every group is freed.
void group_map_free(struct server *s);
// Whether any request of g's members waits (a collective, queued or
// current, or a receive).
bool group_waiting(const struct group *g);
// A group is done on this host once no local member is left and no request
// of a member that died still waits in it.
bool group_done(const struct group *g);
// Ends group g for every member: on a group of this host at once, on a
// spanning group by asking the coordinator, whose Abort comes back through
// group_abort_now().
void group_abort(struct server *s, struct group *g, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
// Records g's abort (the first one wins) and fails every request of g.
void group_abort_now(struct server *s, struct group *g, int code, const char *text);
// Answers every waiting request of g with g's abort error (MLXD_EPEER "the
// group is gone" when none), drops its queued messages.
void group_fail_all(struct server *s, struct group *g);
// Fails every collective request of g (current and queued) with (code, msg).
void group_fail_collectives(struct server *s, struct group *g, int code, const char *msg);
// Unlinks and frees one queued message (its held send is no longer its).
void group_message_free(struct group *g, struct message *m);
// The daemon of world rank host is gone or unreachable: every spanning
// group with members there ends for this host's members with MLXD_EPEER
// and text (which names the host).
void group_host_lost(struct server *s, int host, const char *text);
// A pending request's deadline passed.
void job_expired(struct server *s, struct pending *p);

#endif
