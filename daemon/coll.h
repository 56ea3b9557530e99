/* Collectives: each member's k-th collective is matched with the others'
 * k-th and run once every member is in. One table per way of running them,
 * with one row {arrive, go} per collective (all_sum, all_max, all_min,
 * all_gather, sum_scatter, barrier, split):
 *   coll_local (coll_local.c)  every member on this host: go runs it over the
 *                              inputs and answers every member;
 *   coll_span (coll_span.c)    members on several hosts: arrive hands the
 *                              engine this host's part once its members are
 *                              in (by reference for reductions and
 *                              all_gather, hostpart.c), which it combines
 *                              with the other hosts'; go answers them from
 *                              the coordinator's Go.
 * coll.c matches requests, picks the table and keeps the order. */
#ifndef MLXD_COLL_H
#define MLXD_COLL_H

#include "job.h"
#include "world.h"

// What completes a collective of a spanning group: the coordinator's Go and
// the engine's result, in data (sum_scatter) or in the part this host handed
// it by reference (part, NULL otherwise).
struct coll_go {
    const Mlxd__Ctl__Go *go;
    zmq_msg_t *data;
    struct world_part *part;
};

struct coll {
    // Spanning groups: every member of g on this host is in, the last one
    // with p: hands the engine this host's part. NULL: an empty part.
    void (*arrive)(struct server *s, struct group *g, const struct pending *p);
    // The collective completes: answers ps[n] (every member of g on this
    // host, in rank order; on a group of this host alone, every member),
    // from their inputs (go NULL) or the Go. Returns 0 or a negative
    // MLXD_E*, with which coll.c fails the members left unanswered.
    int (*go)(struct server *s, struct group *g, struct pending **ps, int n, const struct coll_go *go);
};

// Indexed by Mlxd__OpType; a row without go is not a collective.
#define COLL_OPS (MLXD__OP_TYPE__OP_SPLIT + 1)
extern const struct coll coll_local[COLL_OPS];
extern const struct coll coll_span[COLL_OPS];

/* coll.c */
// A collective request of member se of g; takes p.
void coll_submit(struct server *s, struct group *g, struct session *se, struct pending *p);
// g->seq moved on: the members' next queued collectives become current
// (and run, on a group of this host alone).
void coll_advance(struct server *s, struct group *g);
// The engine's Go for a collective of a spanning group (e->ctl->go, its
// result in e->data): answers this host's members and moves on. Returns
// the group, NULL when none of it is left here.
struct group *coll_span_go(struct server *s, struct world_event *e);
// The current requests of g's members on this host, in rank order, into
// ps[g->size]; returns how many.
int coll_current(const struct group *g, struct pending **ps);
// Copies of the descriptors of ps[n], in order (answering a member frees
// its request); one allocation, free() it. NULL: out of memory.
const struct op_desc **coll_descs(struct pending **ps, int n);

/* Shared by both ways (coll_local.c) */
// The inputs of ps[n] reduced in one pass with the op's reduction (into
// the whole input: sum_scatter's blocks too). outs NULL: into *result,
// which takes the first member's inline input buffer or a new frame (*frame
// is its bytes). Else outs[r] gets member r's shared-memory output when the
// result can go there straight (NULL: it needs the frame) and the result is
// copied into every one; *frame is NULL when no member needs a frame.
int coll_reduce_inputs(struct server *s, struct pending **ps, int n, uint8_t **outs, zmq_msg_t *result,
                       uint8_t **frame);
// Answers every request of ps[n] of a barrier.
int coll_reply_barrier(struct server *s, struct group *g, struct pending **ps, int n, const struct coll_go *go);
// Answers member p of a split: its rank k in new group ng.
void coll_reply_split(struct server *s, struct pending *p, const struct group *ng, int k);

#endif
