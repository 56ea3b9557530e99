/* The daemon's calls that only Linux has, in one place: a port (macOS:
 * kqueue EVFILT_PROC, getpeereid, shm_open) implements this file alone.
 * Each returns a negative errno on failure, or says so in its comment. */
#ifndef MLXD_PLATFORM_H
#define MLXD_PLATFORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

// A descriptor that becomes readable when process pid exits (a pidfd), for
// the loop to poll; the caller closes it.
int platform_watch_process(pid_t pid);

// The credentials of the process at the other end of Unix socket fd.
int platform_peer_cred(int fd, uid_t *ret_uid, gid_t *ret_gid, pid_t *ret_pid);

// True when fd is shared memory that cannot shrink under its mappings (a
// memfd sealed with F_SEAL_SHRINK).
bool platform_memory_cannot_shrink(int fd);

// True when process pid is in group gid, as its primary or a supplementary
// group; false when that cannot be read.
bool platform_process_in_group(pid_t pid, gid_t gid);

// The process's command line, arguments joined by spaces, cut to fit buf;
// "" when it cannot be read (the process is gone, or another user's under
// hidepid).
void platform_process_cmdline(pid_t pid, char *buf, size_t size);

// This process's resident memory in bytes; 0 when unknown.
uint64_t platform_resident_bytes(void);

#endif
