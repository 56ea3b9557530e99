/* The start hint (hint.h). */
#include "hint.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "wire.h"

void hint_start(char *buf, size_t size, const char *endpoint, bool endpoint_given) {
    char def[512];                      // as long as mlxctl's endpoints (MLXCTL_ENDPOINT_MAX)
    bool is_default = !endpoint_given || (wire_default_endpoint(def, sizeof def) >= 0 && strcmp(def, endpoint) == 0);
    if (!wire_ipc_path(endpoint))
        // mlxd binds ipc:// only: a tcp:// endpoint has no command to start.
        snprintf(buf, size, "mlxd serves ipc:// endpoints only; start mlxd on that host and "
                            "use its socket, e.g. `mlxd --socket ipc:///tmp/mlxd/mlxd.sock`");
    else if (!is_default)
        snprintf(buf, size, "start it with `mlxd --socket %s`", endpoint);
    else if (geteuid() == 0)
        snprintf(buf, size, "start it with `mlxd` or `systemctl start mlxd`");
    else
        snprintf(buf, size, "start it with `mlxd` or `systemctl --user start mlxd`");
}
