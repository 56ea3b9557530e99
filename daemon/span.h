/* The loop's side of the world: what a host does for jobs and groups whose
 * members sit on several daemons, and for the control messages the engine
 * hands it (formation, Go, Abort, messages from other hosts, status). */
#ifndef MLXD_SPAN_H
#define MLXD_SPAN_H

#include "job.h"
#include "world.h"

// A member arrived at a collective of a spanning group (p is in its slot):
// tell the coordinator, and once every local member is in, hand the engine
// this host's part.
void span_arrive(struct server *s, struct group *g, struct pending *p);

// Handles one event of the engine; takes e.
void span_event(struct server *s, struct world_event *e);

#endif
