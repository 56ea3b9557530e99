/* An op's request, decoded, goes to the part of the domain that matches it:
 * send and recv to p2p.c, the collectives to coll.c. */
#include "coll.h"
#include "job.h"
#include "p2p.h"

void op_submit(struct server *s, struct session *se, struct pending *p) {
    struct group *g = se->group;
    p->group = g;
    p->rank = se->rank;
    if (g->abort_code) {
        pending_fail(s, p, g->abort_code, "%s", g->abort_msg);
        return;
    }
    switch (p->d.op) {
    case MLXD__OP_TYPE__OP_SEND:
        p2p_send(s, g, se, p);
        break;
    case MLXD__OP_TYPE__OP_RECV:
        p2p_recv(s, g, se, p);
        break;
    default:
        coll_submit(s, g, se, p);
        break;
    }
}

