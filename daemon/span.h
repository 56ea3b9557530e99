/* The loop's side of the world: the control messages and results the
 * engine hands it (formation, Go, Abort, Depart, messages from other hosts,
 * status), routed to the domain. */
#ifndef MLXD_SPAN_H
#define MLXD_SPAN_H

#include "job.h"
#include "world.h"

// Handles one event of the engine; takes e.
void span_event(struct server *s, struct world_event *e);

#endif
