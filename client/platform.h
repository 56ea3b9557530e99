/* The client side's Linux-only calls, behind one small interface: sealed
 * shared memory (memfd_create and its seals), the side channel's socket
 * and its descriptor passing flags, and what mlxctl asks of the kernel for
 * its ranks (signals as a descriptor, the parent-death signal, the child
 * subreaper, its own path, random bytes). A port to another system (macOS:
 * shm_open, SO_NOSIGPIPE, a self-pipe or kqueue for signals) implements
 * this file only. Used by libmlxd (shm.c) and by
 * mlxctl (launch.c). Every function is thread-safe; none logs. */
#ifndef MLXD_CLIENT_PLATFORM_H
#define MLXD_CLIENT_PLATFORM_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

// The step of platform_shm_create() that failed.
enum platform_shm_step {
    PLATFORM_SHM_CREATE,                // no descriptor could be made
    PLATFORM_SHM_SIZE,                  // it could not be sized
    PLATFORM_SHM_SEAL,                  // it could not be sealed
};

// Creates anonymous shared memory of size bytes, close-on-exec, sealed
// against shrinking and growing (the daemon that maps it refuses memory
// without these seals). Returns its descriptor, or a negative errno with the
// step that failed in *ret_step; -ENOSYS or -EINVAL at PLATFORM_SHM_CREATE,
// and -EINVAL at PLATFORM_SHM_SEAL, mean this kernel has no sealed memory.
int platform_shm_create(size_t size, enum platform_shm_step *ret_step);

// The same under another name (what /proc/PID/maps shows: "memfd:NAME"),
// for memory that is not the caller's tensors (a connection's ring).
int platform_shm_create_named(const char *name, size_t size, enum platform_shm_step *ret_step);

// A close-on-exec AF_UNIX SOCK_SEQPACKET socket, or -1 with errno set.
int platform_seqpacket_socket(void);

// A pair of connected, nonblocking, close-on-exec AF_UNIX SOCK_SEQPACKET
// sockets: 0, or -1 with errno set.
int platform_seqpacket_pair(int sv[2]);

// sendmsg() that never raises SIGPIPE on a peer that went away (EPIPE instead).
ssize_t platform_sendmsg(int fd, const struct msghdr *mh);

// recvmsg() whose received descriptors are close-on-exec.
ssize_t platform_recvmsg(int fd, struct msghdr *mh);

// A nonblocking, close-on-exec descriptor that becomes readable when one of
// the signals of mask (blocked by the caller) is pending, or -1 with errno.
int platform_signal_fd(const sigset_t *mask);

// Takes one pending signal from fd: its number, or 0 when none is pending.
int platform_signal_take(int fd);

// In a forked child: asks for signal sig when the parent exits.
void platform_parent_death_signal(int sig);

// Makes this process (on) or no longer (off) the reaper of its orphaned
// descendants.
void platform_child_subreaper(int on);

// Writes this executable's absolute path into buf (size bytes, NUL ended):
// "" when it is not known.
void platform_self_exe(char *buf, size_t size);

// Fills *ret with random bits from the kernel: false when it has none to give.
bool platform_random(uint64_t *ret);

#endif
