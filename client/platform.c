/* Linux's implementation of the client side's platform calls (platform.h). */
#include "platform.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <unistd.h>

int platform_shm_create(size_t size, enum platform_shm_step *ret_step) {
    return platform_shm_create_named("mlxd", size, ret_step);
}

int platform_shm_create_named(const char *name, size_t size, enum platform_shm_step *ret_step) {
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    enum platform_shm_step step = PLATFORM_SHM_CREATE;
    if (fd >= 0) {
        step = PLATFORM_SHM_SIZE;
        if (ftruncate(fd, (off_t) size) == 0) {
            step = PLATFORM_SHM_SEAL;
            if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0)
                return fd;
        }
    }
    int e = errno;
    if (fd >= 0)
        close(fd);
    *ret_step = step;
    return -e;
}

int platform_seqpacket_socket(void) {
    return socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
}

int platform_seqpacket_pair(int sv[2]) {
    return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv);
}

ssize_t platform_sendmsg(int fd, const struct msghdr *mh) {
    return sendmsg(fd, mh, MSG_NOSIGNAL);
}

ssize_t platform_recvmsg(int fd, struct msghdr *mh) {
    return recvmsg(fd, mh, MSG_CMSG_CLOEXEC);
}

void platform_parent_death_signal(int sig) {
    prctl(PR_SET_PDEATHSIG, sig);
}

void platform_child_subreaper(int on) {
    prctl(PR_SET_CHILD_SUBREAPER, on ? 1 : 0);
}

void platform_self_exe(char *buf, size_t size) {
    if (size == 0)
        return;
    ssize_t n = readlink("/proc/self/exe", buf, size - 1);
    buf[n > 0 ? n : 0] = '\0';
}

int platform_signal_fd(const sigset_t *mask) {
    return signalfd(-1, mask, SFD_CLOEXEC | SFD_NONBLOCK);
}

int platform_signal_take(int fd) {
    struct signalfd_siginfo si;
    return read(fd, &si, sizeof si) == (ssize_t) sizeof si ? (int) si.ssi_signo : 0;
}

bool platform_random(uint64_t *ret) {
    return getrandom(ret, sizeof *ret, 0) == (ssize_t) sizeof *ret;
}
