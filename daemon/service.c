#include "service.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "job.h"
#include "log.h"
#include "server.h"
#include "world.h"

#ifdef MLXD_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>

// STATUS= is rate limited; the watchdog is pinged at half its interval.
#define STATUS_INTERVAL_US 1000000u

static uint64_t watchdog_usec, watchdog_next, status_next;
static char status_last[256];

int service_adopt(struct server *s, int *ret_router_fd, int *ret_shm_fd) {
    *ret_router_fd = *ret_shm_fd = -1;
    int n = sd_listen_fds(1);
    if (n < 0)
        return log_errno(LOG_ERR, n, "Failed to read the sockets passed by the service manager: %m");
    for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++) {
        if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) > 0 && *ret_router_fd < 0) {
            struct sockaddr_un sa;
            socklen_t len = sizeof sa;
            memset(&sa, 0, sizeof sa);
            if (getsockname(fd, (struct sockaddr *) &sa, &len) < 0 || sa.sun_path[0] == '\0')
                return log_errno(LOG_ERR, -EINVAL, "The passed stream socket has no path; mlxd needs a Unix socket file");
            if (snprintf(s->cfg.endpoint, sizeof s->cfg.endpoint, "ipc://%s", sa.sun_path) >= (int) sizeof s->cfg.endpoint)
                return log_errno(LOG_ERR, -ENAMETOOLONG, "The passed socket's path is too long");
            *ret_router_fd = fd;
        } else if (sd_is_socket_unix(fd, SOCK_SEQPACKET, 1, NULL, 0) > 0 && *ret_shm_fd < 0) {
            *ret_shm_fd = fd;
        } else {
            log_warning("Ignoring passed file descriptor %d: not a listening Unix socket mlxd uses", fd);
        }
    }
    if (n > 0 && *ret_router_fd < 0)
        return log_errno(LOG_ERR, -EINVAL, "The service manager passed no listening Unix stream socket");
    return 0;
}

void service_ready(struct server *s) {
    if (sd_watchdog_enabled(0, &watchdog_usec) <= 0)
        watchdog_usec = 0;
    watchdog_next = 0;
    sd_notifyf(0, "READY=1\nMAINPID=%d\nSTATUS=serving %s, world rank %d of %d", (int) getpid(), s->cfg.endpoint,
               world_rank(s->world), world_size(s->world));
}

void service_status(struct server *s, uint64_t now_us) {
    if (now_us < status_next)
        return;
    uint64_t ops = 0;
    for (int i = 0; i < METRICS_OPS; i++)
        ops += s->metrics.op[i].count;
    char text[256];
    snprintf(text, sizeof text, "world rank %d of %d; %u client(s), %u job(s), %llu op(s) done",
             world_rank(s->world), world_size(s->world), s->sessions.n, s->n_jobs, (unsigned long long) ops);
    if (strcmp(text, status_last) != 0) {
        sd_notifyf(0, "STATUS=%s", text);
        memcpy(status_last, text, sizeof text);
        status_next = now_us + STATUS_INTERVAL_US;
    }
}

void service_stopping(void) {
    sd_notify(0, "STOPPING=1\nSTATUS=stopping: failing in-flight ops with MLXD_EUNAVAILABLE");
}

uint64_t service_tick(struct server *s, uint64_t now_us) {
    uint64_t next = UINT64_MAX;
    if (watchdog_usec) {
        if (now_us >= watchdog_next) {
            sd_notify(0, "WATCHDOG=1");
            watchdog_next = now_us + watchdog_usec / 2;
        }
        next = watchdog_next;
    }
    // A status that changed within the rate limit goes out when it ends.
    if (status_next > now_us && status_next < next)
        next = status_next;
    return next;
}

#else

int service_adopt(struct server *s, int *ret_router_fd, int *ret_shm_fd) {
    *ret_router_fd = *ret_shm_fd = -1;
    return 0;
}

void service_ready(struct server *s) {
}

void service_status(struct server *s, uint64_t now_us) {
}

void service_stopping(void) {
}

uint64_t service_tick(struct server *s, uint64_t now_us) {
    return UINT64_MAX;
}

#endif
