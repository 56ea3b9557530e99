/* Who may use this daemon: root, the daemon's own user, and members of its
 * socket's group (the system service's socket is 0660). The one rule, for
 * the ZeroMQ front, the shared-memory side channel and any other way in. */
#ifndef MLXD_ACCESS_H
#define MLXD_ACCESS_H

#include <stdbool.h>
#include <stddef.h>

struct server;
struct peer;

// True when p's uid, gid or supplementary groups let it in.
bool peer_allowed(const struct server *s, const struct peer *p);

// Fills p's credentials from a ZeroMQ message's "Peer-Address" property
// (addr, NULL when unknown) and checks them with peer_allowed(). 0 when p
// may go on; otherwise MLXD_EDENIED with the client's message in err (a
// refused user is logged here, as a warning).
int access_check_address(const struct server *s, const char *addr, struct peer *p, char *err, size_t errlen);

#endif
