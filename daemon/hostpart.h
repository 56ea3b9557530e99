/* This host's part of a reduction (all_sum, all_max, all_min) or all_gather
 * of a spanning group, by reference (struct world_part): the local members'
 * inputs and outputs where they are, kept mapped (a reference on each shared
 * memory segment, a copy of each inline frame) until the engine hands the
 * part back, even if their clients die meanwhile. The result lands in the
 * members' shared-memory outputs, or in one reply frame the inline members
 * share. Loop thread only. */
#ifndef MLXD_HOSTPART_H
#define MLXD_HOSTPART_H

#include "job.h"
#include "world.h"

// Whether op goes to the engine by reference.
bool hostpart_by_reference(int op);

// The part of g's current collective, once every local member is in;
// *ret NULL (and 0) when the local members disagree (the coordinator reports
// it to everyone). MLXD_ENOMEM when it cannot be made.
int hostpart_build(struct server *s, struct group *g, struct world_part **ret);

// Answers g's local members from part, the Go's result: d is the op with the
// result's shape.
void hostpart_reply(struct server *s, struct group *g, const struct op_desc *d, struct world_part *part);

#endif
