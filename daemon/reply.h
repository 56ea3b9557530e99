/* Replies, and the requests that wait for one. Every request gets exactly one
 * reply: at once (server_reply, server_reply_error), or once it is done
 * (pending_finish, pending_fail). A reply leaves by the transport its request
 * came in on: the ZeroMQ front, or one a peer names (the shared-memory
 * request ring). Loop thread only. */
#ifndef MLXD_REPLY_H
#define MLXD_REPLY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>
#include <zmq.h>

#include "desc.h"
#include "wire.h"

struct server;
struct session;
struct group;
struct shm_seg;
struct peer;

// Another way back to a peer than the ROUTER socket. Whoever reads requests
// from it sets struct peer's transport; the transport must outlive every
// session and pending request of that peer (the ring keeps it until its
// client is gone and its requests are answered).
struct reply_transport {
    // Sends r to p with frames (moved in: closed whatever happens). Returns
    // 0, or a negative errno when the reply cannot leave (logged at debug
    // level by the caller, never fatal).
    int (*send)(struct reply_transport *t, const struct peer *p, Mlxd__Reply *r, zmq_msg_t *frames, int nframes);
};

// The peer of one request: who sent it and how to answer.
struct peer {
    uint8_t rid[256];               // ZeroMQ routing id (or the transport's own id)
    size_t rid_len;
    uid_t uid;
    gid_t gid;
    pid_t pid;
    struct reply_transport *transport; // NULL: the ZeroMQ front
};

enum pending_kind {
    PENDING_HELLO,                  // waits for its job to form
    PENDING_OP,                     // a collective, send or recv
};

TAILQ_HEAD(pending_list, pending);

// A request that is waiting: for the other members, a message, or the job to
// form. Owns its input frame. Exactly one reply ends it (pending_finish).
struct pending {
    TAILQ_ENTRY(pending) link;      // in replies.pendings, in deadline order
    TAILQ_ENTRY(pending) slink;     // in session->pendings, while it has a session
    TAILQ_ENTRY(pending) qlink;     // in *queue: a member's queued collectives or receives
    struct pending_list *queue;
    enum pending_kind kind;
    struct session *session;        // who to answer; NULL once it died
    struct group *group;            // an op's group, and the member's rank in it
    int rank;
    struct pending **ref;           // the one pointer to it (slot, hello list), cleared on free
    uint64_t req_id;
    struct op_desc d;               // what it asks for (op is an Mlxd__OpType)
    uint64_t nbytes;
    zmq_msg_t data;                 // inline input (send, reductions, gather)
    bool has_data;
    struct shm_seg *in_seg;         // input in shared memory: in_ptr points into it
    uint8_t *in_ptr;
    struct shm_seg *out_seg;        // the result goes to shared memory: out_ptr
    uint8_t *out_ptr;
    uint64_t out_nbytes;
    uint32_t out_segment;           // as the client named it, for the reply
    uint64_t out_offset;
    int peer;                       // send dst / recv src
    uint64_t start_us, deadline_us;
    uint64_t seq;                   // k for the k-th collective on the group
    bool coord_asked;               // its deadline passed and the coordinator was told
};

// The requests that wait, each until its reply or its deadline.
struct replies {
    struct pending_list pendings;   // earliest deadline first
    struct pending *expiring;       // the one whose expiry runs (pending_expire)
    // A request is answered with an error (code, message): the domain's
    // bookkeeping of a job's first error. Set at start-up; may be NULL.
    void (*on_failed)(struct server *s, const struct pending *p, int code, const char *message);
    // Handles one decoded request that came by another transport than the
    // ZeroMQ front (the ring): loop_request() (loop.h says the contract),
    // registered at start-up so that transports need not call the loop.
    void (*on_request)(struct server *s, const struct peer *p, const Mlxd__Request *req, zmq_msg_t *frames,
                       int nframes);
};

// Sends a reply to p, by p's transport; frames (may be NULL) are moved into
// the message. Failures to send are logged, never fatal.
void server_reply(struct server *s, const struct peer *p, Mlxd__Reply *r, zmq_msg_t *frames, int nframes);

// An error reply with a formatted message, also logged at debug level.
void server_reply_error(struct server *s, const struct peer *p, uint64_t id, int code,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));

// A new request that waits, with its deadline (timeout_ms, 0: the daemon's
// default). NULL when out of memory.
struct pending *pending_new(struct server *s, enum pending_kind kind, uint64_t req_id, uint32_t timeout_ms);
// Answers the request (r may carry frames) and frees it. Updates metrics.
void pending_finish(struct server *s, struct pending *p, Mlxd__Reply *r, zmq_msg_t *frames, int nframes);
// Answers with an error and frees it.
void pending_fail(struct server *s, struct pending *p, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
// Frees p without an answer (its answer was sent another way); NULL is fine.
void pending_free(struct server *s, struct pending *p);
// p belongs to session se (se answers it) / no longer does: nobody will be
// answered (its member died), but the request stays and completes.
void pending_track(struct session *se, struct pending *p);
void pending_orphan(struct pending *p);
// Answers every request that waits with code and text (shutdown).
void pending_fail_all(struct server *s, int code, const char *text);
// Calls expired(s, p) for each request whose deadline has passed, earliest
// first. expired() either frees p, or moves its deadline (p->deadline_us,
// which only it may write directly) to a later time or UINT64_MAX.
void pending_expire(struct server *s, uint64_t now, void (*expired)(struct server *s, struct pending *p));
// The earliest deadline of a request that waits; UINT64_MAX: none.
uint64_t pending_next_deadline(const struct server *s);
// The bytes of a pending op's input, wherever they are.
const uint8_t *pending_input(const struct pending *p);

#endif
