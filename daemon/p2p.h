/* Point-to-point messages of a group (p2p.c). */
#ifndef MLXD_P2P_H
#define MLXD_P2P_H

#include "job.h"

// A send / a recv of member se of g (p->peer is the other rank); takes p.
void p2p_send(struct server *s, struct group *g, struct session *se, struct pending *p);
void p2p_recv(struct server *s, struct group *g, struct session *se, struct pending *p);
// The point-to-point side of member rank leaving g: messages queued for it
// are dropped (a send held for it fails), receives from it that have no
// message fail, and its queued sends stay (no longer counted against se,
// which may be NULL).
void p2p_depart(struct server *s, struct group *g, int rank, struct session *se, const char *why);
// Queues a message that arrived from another host; takes data.
void p2p_deliver_remote(struct server *s, struct group *g, int src, int dst, const struct op_desc *d, zmq_msg_t *data);

#endif
