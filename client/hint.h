/* What to tell someone whom no daemon answered: the start hint, shared by
 * libmlxd (mlxd_init with strict) and mlxctl (status, wait, launch), so that
 * both give the same advice. */
#ifndef MLXD_CLIENT_HINT_H
#define MLXD_CLIENT_HINT_H

#include <stdbool.h>
#include <stddef.h>

// Writes into buf (size bytes, NUL ended, cut to fit) how to start a daemon
// at endpoint: `mlxd --socket EP` for an endpoint given that is not the
// default, `mlxd` or the systemd unit (system or user, as for this user)
// for the default one, and for tcp:// that mlxd serves ipc:// only.
// endpoint_given: the caller named the endpoint (else it is the default).
void hint_start(char *buf, size_t size, const char *endpoint, bool endpoint_given);

#endif
