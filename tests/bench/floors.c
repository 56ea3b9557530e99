/* floors: the costs under every mlxd op, measured on this machine in the same
 * run as the benchmark, to judge mlxd's numbers against:
 *
 *   zmq_ipc_rtt  an 8-byte round trip between two processes over a ZeroMQ
 *                ipc socket, DEALER (timed side) to ROUTER (echo side),
 *                both waiting in zmq_poll, as libmlxd and mlxd do
 *   unix_rtt     an 8-byte round trip over an AF_UNIX stream socketpair
 *                between two processes (read/write)
 *   memcpy       one memcpy of 64 MiB between buffers already touched;
 *                GB/s = bytes copied / time
 *
 * Each prints `floor name=... bytes=... iters=... median_us=... min_us=...`
 * (median and minimum of the per-iteration times). --quick does fewer
 * iterations. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zmq.h>

#include "bench_util.h"

#define MSG_BYTES 8

static void die(const char *what) {
    fprintf(stderr, "floors: %s: %s\n", what, errno ? strerror(errno) : "failed");
    exit(EXIT_FAILURE);
}

static void print_floor(const char *name, size_t bytes, double *t, int n) {
    double med, min;
    bench_stats(t, n, &med, &min);
    printf("floor name=%s bytes=%zu iters=%d median_us=%.3f min_us=%.3f\n", name, bytes, n, med, min);
    fflush(stdout);
}

static int wait_child(pid_t pid) {
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

// Waits in zmq_poll, then receives one message part.
static int poll_recv(void *sock, void *buf, size_t len) {
    zmq_pollitem_t it = {.socket = sock, .events = ZMQ_POLLIN};
    while (zmq_poll(&it, 1, -1) < 0)
        if (zmq_errno() != EINTR)
            return -1;
    return zmq_recv(sock, buf, len, 0);
}

// The echo side, in a child process: a ROUTER that binds, says so on
// ready_fd, and sends each of n messages back to its sender.
static int zmq_echo(const char *ep, int n, int ready_fd) {
    void *z = zmq_ctx_new(), *s = zmq_socket(z, ZMQ_ROUTER);
    char id[256], msg[MSG_BYTES];
    int rc = s && zmq_bind(s, ep) == 0 ? 0 : -1;
    if (write(ready_fd, rc == 0 ? "x" : "e", 1) != 1)
        rc = -1;
    for (int i = 0; i < n && rc == 0; i++) {
        int idn = poll_recv(s, id, sizeof id);
        if (idn < 0 || zmq_recv(s, msg, sizeof msg, 0) != MSG_BYTES || zmq_send(s, id, (size_t) idn, ZMQ_SNDMORE) < 0 ||
            zmq_send(s, msg, sizeof msg, 0) < 0)
            rc = -1;
    }
    zmq_close(s);
    zmq_ctx_term(z);
    return rc;
}

static void zmq_rtt(const char *dir, int warmup, int iters, double *t) {
    char ep[256];
    snprintf(ep, sizeof ep, "ipc://%s/floor.sock", dir);
    int ready[2];
    if (pipe(ready) < 0)
        die("pipe");
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0)
        _exit(zmq_echo(ep, warmup + iters, ready[1]) == 0 ? 0 : 1);
    char c;
    if (read(ready[0], &c, 1) != 1 || c != 'x')
        die("ZeroMQ echo process could not bind its socket");
    close(ready[0]);
    close(ready[1]);

    void *z = zmq_ctx_new(), *s = zmq_socket(z, ZMQ_DEALER);
    char msg[MSG_BYTES] = "ping1234";
    if (!s || zmq_connect(s, ep) < 0)
        die("zmq_connect");
    for (int i = 0; i < warmup + iters; i++) {
        double t0 = bench_now_us();
        if (zmq_send(s, msg, sizeof msg, 0) < 0 || poll_recv(s, msg, sizeof msg) != MSG_BYTES)
            die("ZeroMQ ping-pong");
        double t1 = bench_now_us();
        if (i >= warmup)
            t[i - warmup] = t1 - t0;
    }
    zmq_close(s);
    zmq_ctx_term(z);
    if (wait_child(pid) < 0)
        die("ZeroMQ echo process failed");
    unlink(ep + strlen("ipc://"));
}

static int full_io(int fd, char *buf, size_t n, bool writing) {
    for (size_t done = 0; done < n;) {
        ssize_t k = writing ? write(fd, buf + done, n - done) : read(fd, buf + done, n - done);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        done += (size_t) k;
    }
    return 0;
}

static void unix_rtt(int warmup, int iters, double *t) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        die("socketpair");
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        char msg[MSG_BYTES];
        close(sv[0]);
        for (int i = 0; i < warmup + iters; i++)
            if (full_io(sv[1], msg, sizeof msg, false) < 0 || full_io(sv[1], msg, sizeof msg, true) < 0)
                _exit(1);
        _exit(0);
    }
    close(sv[1]);
    char msg[MSG_BYTES] = "ping1234";
    for (int i = 0; i < warmup + iters; i++) {
        double t0 = bench_now_us();
        if (full_io(sv[0], msg, sizeof msg, true) < 0 || full_io(sv[0], msg, sizeof msg, false) < 0)
            die("Unix socket ping-pong");
        double t1 = bench_now_us();
        if (i >= warmup)
            t[i - warmup] = t1 - t0;
    }
    close(sv[0]);
    if (wait_child(pid) < 0)
        die("Unix socket echo process failed");
}

static void memcpy_bw(size_t bytes, int warmup, int iters, double *t) {
    char *src = malloc(bytes), *dst = malloc(bytes);
    if (!src || !dst)
        die("malloc");
    memset(src, 1, bytes);
    memset(dst, 2, bytes);
    for (int i = 0; i < warmup + iters; i++) {
        double t0 = bench_now_us();
        memcpy(dst, src, bytes);
        double t1 = bench_now_us();
        if (i >= warmup)
            t[i - warmup] = t1 - t0;
        src[i % bytes] = (char) i; // keeps the copies from being elided
    }
    if (dst[bytes - 1] != 1)
        die("memcpy check");
    free(src);
    free(dst);
}

int main(int argc, char **argv) {
    bool quick = false;
    size_t copy_bytes = (size_t) 64 << 20;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            quick = true;
        } else {
            fprintf(stderr, "Usage: floors [--quick]\n"
                            "Prints the ZeroMQ ipc and Unix socket round trips (8 B) and memcpy\n"
                            "bandwidth (64 MiB) of this machine as `floor` lines.\n");
            return strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0 ? 0 : 2;
        }
    }
    int rt_warm = quick ? 200 : 2000, rt_iters = quick ? 2000 : 20000;
    int cp_warm = quick ? 1 : 3, cp_iters = quick ? 5 : 20;
    double *t = malloc((size_t) rt_iters * sizeof *t);
    char dir[] = "/tmp/mxf.XXXXXX";
    if (!t || !mkdtemp(dir))
        die("setup");

    zmq_rtt(dir, rt_warm, rt_iters, t);
    print_floor("zmq_ipc_rtt", MSG_BYTES, t, rt_iters);
    unix_rtt(rt_warm, rt_iters, t);
    print_floor("unix_rtt", MSG_BYTES, t, rt_iters);
    memcpy_bw(copy_bytes, cp_warm, cp_iters, t);
    print_floor("memcpy", copy_bytes, t, cp_iters);

    rmdir(dir);
    free(t);
    return EXIT_SUCCESS;
}
