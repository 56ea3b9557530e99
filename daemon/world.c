#include "world.h"

#include <errno.h>
#include <mpi.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "log.h"
#include "server.h"

#define HOST_MAX 256

// What the engine and the loop say to each other over the inproc pair.
enum engine_msg {
    ENGINE_READY,                   // engine -> loop: MPI is up (or failed)
    ENGINE_STOP,                    // loop -> engine: finalise and exit
};

struct world {
    void *zctx;
    void *loop_end, *engine_end;    // the inproc pair
    pthread_t thread;
    bool thread_started;
    int init_error;                 // set by the engine before ENGINE_READY
    int rank, size;
    char (*hosts)[HOST_MAX];
    char mpi_version[MPI_MAX_LIBRARY_VERSION_STRING];
    MPI_Comm control;               // the daemons' own duplicate of COMM_WORLD
};

static int send_code(void *sock, int code) {
    return zmq_send(sock, &code, sizeof code, 0) < 0 ? -zmq_errno() : 0;
}

static int recv_code(void *sock, int *ret) {
    int code;
    int n = zmq_recv(sock, &code, sizeof code, 0);
    if (n < 0)
        return -zmq_errno();
    if (n != sizeof code)
        return -EPROTO;
    *ret = code;
    return 0;
}

static int engine_init_mpi(struct world *w) {
    int provided, len, r;
    // A daemon started without mpirun is a world of one. It never spawns
    // processes, so it needs no helper orted (which would outlive it).
    setenv("OMPI_MCA_ess_singleton_isolated", "1", 0);
    // MPI may look at argv; the daemon's own options are none of its business.
    r = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (r != MPI_SUCCESS)
        return -EIO;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &w->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &w->size);
    MPI_Get_library_version(w->mpi_version, &len);
    w->mpi_version[strcspn(w->mpi_version, "\n")] = '\0';
    w->hosts = calloc((size_t) w->size, sizeof *w->hosts);
    if (!w->hosts)
        return -ENOMEM;
    char me[HOST_MAX] = { 0 };
    gethostname(me, sizeof me - 1);
    r = MPI_Allgather(me, HOST_MAX, MPI_CHAR, w->hosts, HOST_MAX, MPI_CHAR, MPI_COMM_WORLD);
    if (r != MPI_SUCCESS)
        return -EIO;
    r = MPI_Comm_dup(MPI_COMM_WORLD, &w->control);
    if (r != MPI_SUCCESS)
        return -EIO;
    MPI_Comm_set_errhandler(w->control, MPI_ERRORS_RETURN);
    return 0;
}

static void *engine_main(void *arg) {
    struct world *w = arg;
    int code;
    w->init_error = engine_init_mpi(w);
    send_code(w->engine_end, ENGINE_READY);
    if (w->init_error == 0) {
        // Until the control plane lands, the engine's only job is to wait
        // for the stop; a blocking recv sleeps.
        while (recv_code(w->engine_end, &code) == 0 && code != ENGINE_STOP)
            ;
        MPI_Comm_free(&w->control);
        MPI_Finalize();
    }
    return NULL;
}

int world_start(struct server *s, struct world **ret) {
    struct world *w = calloc(1, sizeof *w);
    char addr[64];
    int r, code;
    if (!w)
        return log_errno(LOG_ERR, -ENOMEM, "Out of memory");
    w->zctx = s->zctx;
    snprintf(addr, sizeof addr, "inproc://mlxd-world-%p", (void *) w);
    w->loop_end = zmq_socket(w->zctx, ZMQ_PAIR);
    w->engine_end = zmq_socket(w->zctx, ZMQ_PAIR);
    if (!w->loop_end || !w->engine_end || zmq_bind(w->loop_end, addr) < 0 || zmq_connect(w->engine_end, addr) < 0) {
        r = log_errno(LOG_ERR, -zmq_errno(), "Failed to set up the engine's socket: %s", zmq_strerror(zmq_errno()));
        world_stop(w);
        return r;
    }
    // Signals belong to the loop thread: the engine inherits a blocked mask.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    r = pthread_create(&w->thread, NULL, engine_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0) {
        world_stop(w);
        return log_errno(LOG_ERR, -r, "Failed to start the MPI engine thread: %m");
    }
    w->thread_started = true;
    r = recv_code(w->loop_end, &code);
    if (r < 0 || w->init_error < 0) {
        r = r < 0 ? r : w->init_error;
        log_errno(LOG_ERR, r, "Failed to initialise MPI: %m");
        world_stop(w);
        return r;
    }
    log_info("MPI world: rank %d of %d on %s; %s", w->rank, w->size, w->hosts[w->rank], w->mpi_version);
    *ret = w;
    return 0;
}

// Reaps the children MPI forked, if any (with OMPI_MCA_ess_singleton_isolated
// overridden, a singleton's orted exits only once we do), waiting a little.
static void reap_children(void) {
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        pid_t pid = waitpid(-1, NULL, WNOHANG);
        if (pid > 0)
            continue;
        if (pid < 0)                 // ECHILD: none left
            return;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= 1) {
            log_debug("A helper process of MPI is still running; it exits with us");
            return;
        }
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
}

void world_stop(struct world *w) {
    if (!w)
        return;
    if (w->thread_started) {
        if (w->init_error == 0)
            send_code(w->loop_end, ENGINE_STOP);
        pthread_join(w->thread, NULL);
        reap_children();
    }
    if (w->loop_end)
        zmq_close(w->loop_end);
    if (w->engine_end)
        zmq_close(w->engine_end);
    free(w->hosts);
    free(w);
}

int world_rank(const struct world *w) {
    return w->rank;
}

int world_size(const struct world *w) {
    return w->size;
}

const char *world_host(const struct world *w, int r) {
    return r >= 0 && r < w->size ? w->hosts[r] : "?";
}

const char *world_mpi_version(const struct world *w) {
    return w->mpi_version;
}

int world_expand_endpoint(const struct world *w, char *endpoint, size_t size) {
    char out[512], *o = out;
    for (const char *p = endpoint; *p; p++) {
        if (p[0] == '%' && p[1] == 'r') {
            o += snprintf(o, (size_t) (out + sizeof out - o), "%d", w->rank);
            p++;
        } else if (o < out + sizeof out - 1) {
            *o++ = *p;
        }
        if (o >= out + sizeof out - 1)
            return -ENAMETOOLONG;
    }
    *o = '\0';
    if (strlen(out) >= size)
        return -ENAMETOOLONG;
    strcpy(endpoint, out);
    return 0;
}

void *world_socket(struct world *w) {
    return w->loop_end;
}

void world_dispatch(struct world *w, struct server *s) {
    int code;
    while (zmq_recv(w->loop_end, &code, sizeof code, ZMQ_DONTWAIT) >= 0)
        log_debug("Engine said %d", code);
}

uint64_t world_next_wakeup_us(const struct world *w, uint64_t now) {
    return UINT64_MAX;
}
