/* Linux: pidfds, SO_PEERCRED, memfd seals and /proc. */
#include "platform.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

int platform_watch_process(pid_t pid) {
    int fd = (int) syscall(SYS_pidfd_open, pid, 0);
    return fd < 0 ? -errno : fd;
}

int platform_peer_cred(int fd, uid_t *ret_uid, gid_t *ret_gid, pid_t *ret_pid) {
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return -errno;
    *ret_uid = cred.uid;
    *ret_gid = cred.gid;
    *ret_pid = cred.pid;
    return 0;
}

bool platform_memory_cannot_shrink(int fd) {
    int seals = fcntl(fd, F_GET_SEALS);
    return seals >= 0 && (seals & F_SEAL_SHRINK);
}

// The "Groups:" line of /proc/PID/status.
bool platform_process_in_group(pid_t pid, gid_t gid) {
    char path[64], line[4096];
    bool in = false;
    snprintf(path, sizeof path, "/proc/%d/status", (int) pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    while (!in && fgets(line, sizeof line, f)) {
        if (strncmp(line, "Groups:", 7) != 0)
            continue;
        for (char *save, *t = strtok_r(line + 7, " \t\n", &save); t && !in; t = strtok_r(NULL, " \t\n", &save))
            in = strtoul(t, NULL, 10) == gid;
        break;
    }
    fclose(f);
    return in;
}

void platform_process_cmdline(pid_t pid, char *buf, size_t size) {
    char path[64];
    buf[0] = '\0';
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int) pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    size_t n = fread(buf, 1, size - 1, f);
    fclose(f);
    while (n > 0 && buf[n - 1] == '\0')
        n--;
    for (size_t i = 0; i < n; i++)
        if (buf[i] == '\0')
            buf[i] = ' ';
    buf[n] = '\0';
}

uint64_t platform_resident_bytes(void) {
    unsigned long long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "re");
    if (!f)
        return 0;
    if (fscanf(f, "%llu %llu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return (uint64_t) resident * (uint64_t) sysconf(_SC_PAGESIZE);
}
