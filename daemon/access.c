/* Who may connect: the credentials a connection carries, against the
 * daemon's user and its socket's group. */
#include "access.h"

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "platform.h"
#include "server.h"

bool peer_allowed(const struct server *s, const struct peer *p) {
    if (p->uid == 0 || p->uid == geteuid())
        return true;
    // Members of the socket's group, whether it is their primary group or
    // one they were added to.
    struct stat st;
    const char *path = wire_ipc_path(s->cfg.endpoint);
    if (!path || stat(path, &st) < 0 || st.st_gid == 0)
        return false;
    return p->gid == st.st_gid || platform_process_in_group(p->pid, st.st_gid);
}

int access_check_address(const struct server *s, const char *addr, struct peer *p, char *err, size_t errlen) {
    if (!addr || wire_parse_peer_address(addr, &p->uid, &p->gid, &p->pid) < 0) {
        snprintf(err, errlen, "the peer's credentials are unknown; connect over ipc://");
        return MLXD_EDENIED;
    }
    if (!peer_allowed(s, p)) {
        log_warning("Refused a request from uid %u (pid %d): not this daemon's user, root or its group",
                    (unsigned) p->uid, (int) p->pid);
        snprintf(err, errlen, "uid %u may not use this mlxd (it serves uid %u, root and its group)",
                 (unsigned) p->uid, (unsigned) geteuid());
        return MLXD_EDENIED;
    }
    return 0;
}
