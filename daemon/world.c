/* The engine's plumbing: one thread that owns MPI, fed by the loop through an
 * inproc pair of ZeroMQ sockets (pointers to owned messages go through), and
 * reporting back the same way; the public calls of world.h. What the engine
 * does with MPI is in world_mpi.c, world_coll.c and world_watch.c. */
#include "world.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "wire.h"
#include "world_int.h"

/* ---- talking to the loop ---- */

static int send_ptr(void *sock, void *p) {
    return zmq_send(sock, &p, sizeof p, 0) < 0 ? -zmq_errno() : 0;
}

static void *recv_ptr(void *sock, int flags) {
    void *p = NULL;
    if (zmq_recv(sock, &p, sizeof p, flags) != (int) sizeof p)
        return NULL;
    return p;
}

void world_event_free(struct world_event *e) {
    if (!e)
        return;
    if (e->ctl)
        mlxd__ctl__ctl__free_unpacked(e->ctl, NULL);
    zmq_msg_close(&e->data);
    if (e->part)
        e->part->release(e->part);
    free(e);
}

static void emit_event(struct world *w, enum world_event_type type, int from, Mlxd__Ctl__Ctl *ctl, zmq_msg_t *data,
                       struct world_part *part, int code, const char *message) {
    struct world_event *e = calloc(1, sizeof *e);
    if (!e) {
        // A part cannot be released here (its references are the loop's):
        // it stays mapped for good, which is the lesser harm.
        log_error("Out of memory passing a control message to the loop; dropped it");
        if (ctl)
            mlxd__ctl__ctl__free_unpacked(ctl, NULL);
        if (data)
            zmq_msg_close(data);
        return;
    }
    e->type = type;
    e->from = from;
    e->ctl = ctl;
    e->part = part;
    e->code = code;
    snprintf(e->message, sizeof e->message, "%s", message ? message : "");
    zmq_msg_init(&e->data);
    if (data) {
        zmq_msg_move(&e->data, data);
        zmq_msg_close(data);
        e->has_data = true;
    }
    if (send_ptr(w->engine_end, e) < 0) {
        if (part)
            log_error("Failed to pass an event to the loop: %s", zmq_strerror(zmq_errno()));
        else
            world_event_free(e);
    }
}

void engine_emit(struct world *w, enum world_event_type type, int from, Mlxd__Ctl__Ctl *ctl, zmq_msg_t *data,
                 int code, const char *message) {
    emit_event(w, type, from, ctl, data, NULL, code, message);
}

void engine_emit_go(struct world *w, int from, Mlxd__Ctl__Ctl *ctl, struct world_part *part, int code,
                    const char *message) {
    emit_event(w, WORLD_EVENT_GO, from, ctl, NULL, part, code, message);
}

void engine_release_part(struct world *w, struct world_part *part) {
    if (!part)
        return;
    struct world_event *e = calloc(1, sizeof *e);
    if (!e) {
        log_error("Out of memory handing back the memory of an op that will not run; it stays mapped");
        return;
    }
    e->release_only = true;
    e->part = part;
    zmq_msg_init(&e->data);
    if (send_ptr(w->engine_end, e) < 0)
        log_error("Failed to pass an event to the loop: %s", zmq_strerror(zmq_errno()));
}

void wmsg_free(struct wmsg *m) {
    if (!m)
        return;
    free(m->buf);
    free(m->reqs);
    zmq_msg_close(&m->data);
    free(m);
}


static bool handle_loop(struct world *w) {
    struct wmsg *m;
    while ((m = recv_ptr(w->engine_end, ZMQ_DONTWAIT))) {
        switch (m->type) {
        case WMSG_STOP:
            wmsg_free(m);
            return false;
        case WMSG_CTL:
            engine_send_packed(w, m->dest, m->buf, m->len);
            m->buf = NULL;
            wmsg_free(m);
            break;
        case WMSG_LOCAL:
        case WMSG_PART:
            m->next = w->locals;
            w->locals = m;
            break;
        case WMSG_P2P:
            engine_start_p2p(w, m);
            break;
        }
    }
    return true;
}


static void drain_queues(struct world *w) {
    struct wmsg *m;
    while ((m = recv_ptr(w->engine_end, ZMQ_DONTWAIT))) {
        engine_release_part(w, m->part);
        wmsg_free(m);
    }
    while (w->self) {
        struct self_item *it = w->self;
        w->self = it->next;
        free(it->buf);
        free(it);
    }
    while (w->fifo) {
        struct fifo_item *it = w->fifo;
        w->fifo = it->next;
        mlxd__ctl__ctl__free_unpacked(it->ctl, NULL);
        free(it);
    }
    while ((m = w->locals)) {
        w->locals = m->next;
        engine_release_part(w, m->part);
        wmsg_free(m);
    }
    // Transfers in flight are cancelled before their buffers go.
    while ((m = w->sending)) {
        w->sending = m->next;
        for (int i = 0; i < m->nreqs; i++) {
            MPI_Cancel(&m->reqs[i]);
            MPI_Request_free(&m->reqs[i]);
        }
        wmsg_free(m);
    }
    while (w->receiving) {
        struct p2p_in *in = w->receiving;
        w->receiving = in->next;
        for (int i = 0; i < in->nreqs; i++) {
            MPI_Cancel(&in->reqs[i]);
            MPI_Request_free(&in->reqs[i]);
        }
        mlxd__ctl__ctl__free_unpacked(in->ctl, NULL);
        zmq_msg_close(&in->data);
        free(in->reqs);
        free(in);
    }
}

// How long the engine may sleep. A world of one has nothing to probe:
// sleep until the loop speaks. Otherwise MPI must be polled: spin while
// bytes move or for 10 ms after activity (ops in a loop stay fast), poll every
// millisecond for a tenth of a second after that, then back off to
// IDLE_POLL_MAX_MS so an idle world sleeps (about 20 wakeups a second;
// the first op after a long idle spell may wait that long once).
static int engine_timeout(const struct world *w, uint64_t now, uint64_t last_active, int *idle_ms) {
    if (w->self || (w->fifo && !w->go_wait_since))
        return 0;
    if (w->size == 1)
        return -1;
    if (w->sending || w->receiving || w->n_isends || now - last_active < 10000)
        return 0;
    if (now - last_active < 100000) {
        *idle_ms = 1;
        return 1;
    }
    *idle_ms = *idle_ms * 2 > IDLE_POLL_MAX_MS ? IDLE_POLL_MAX_MS : *idle_ms * 2;
    return *idle_ms;
}

static void *engine_main(void *arg) {
    struct world *w = arg;
    int idle_ms = 1;
    uint64_t last_active = 0;
    w->init_error = engine_init_mpi(w);
    send_ptr(w->engine_end, NULL);     // ready (or failed: see init_error)
    if (w->init_error < 0)
        return NULL;
    for (;;) {
        zmq_pollitem_t item = { .socket = w->engine_end, .events = ZMQ_POLLIN };
        atomic_store(&w->busy_since_us, 0);
        int n = zmq_poll(&item, 1, engine_timeout(w, wire_now_us(), last_active, &idle_ms));
        atomic_store(&w->busy_since_us, wire_now_us());
        bool busy = n > 0;
        if (n > 0 && !handle_loop(w))
            break;
        if (w->size > 1)
            busy |= engine_poll_mpi(w);
        busy |= w->self != NULL;
        engine_run_self(w);
        engine_progress_isends(w);
        engine_progress_p2p(w);
        engine_run_fifo(w);
        if (busy)
            last_active = wire_now_us();
    }
    drain_queues(w);
    w->coord = coord_free(w->coord);
    ctl_outbox_fini(&w->out);
    engine_fini_mpi(w);
    return NULL;
}

// Signals belong to the loop thread: the engine and the watch inherit a
// blocked mask.
int engine_start_thread(pthread_t *t, void *(*fn)(void *), void *arg) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int r = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r;
}

int world_start(const struct world_config *cfg, struct world **ret) {
    struct world *w = calloc(1, sizeof *w);
    char addr[64];
    int r, zero = 0;
    if (!w)
        return log_errno(LOG_ERR, -ENOMEM, "Out of memory");
    w->zctx = cfg->zctx;
    w->on_event = cfg->on_event;
    w->on_event_ctx = cfg->ctx;
    w->silence_ms = cfg->heartbeat_timeout_ms ? cfg->heartbeat_timeout_ms : WORLD_SILENCE_MS;
    if (w->silence_ms < 4)
        w->silence_ms = 4;          // a heartbeat every millisecond at most
    w->fifo_tail = &w->fifo;
    w->self_tail = &w->self;
    w->receiving_tail = &w->receiving;
    w->stall_us = (uint64_t) (cfg->mpi_stall_ms ? cfg->mpi_stall_ms : 4 * (uint64_t) cfg->op_timeout_ms) * 1000;
    snprintf(addr, sizeof addr, "inproc://mlxd-watch-%p", (void *) w);
    w->watch_loop = zmq_socket(w->zctx, ZMQ_PAIR);
    w->watch_end = zmq_socket(w->zctx, ZMQ_PAIR);
    if (!w->watch_loop || !w->watch_end || zmq_bind(w->watch_loop, addr) < 0 || zmq_connect(w->watch_end, addr) < 0) {
        r = log_errno(LOG_ERR, -zmq_errno(), "Failed to set up the watch's socket: %s", zmq_strerror(zmq_errno()));
        world_stop(w);
        return r;
    }
    snprintf(addr, sizeof addr, "inproc://mlxd-world-%p", (void *) w);
    w->loop_end = zmq_socket(w->zctx, ZMQ_PAIR);
    w->engine_end = zmq_socket(w->zctx, ZMQ_PAIR);
    if (w->loop_end && w->engine_end) {
        // Pointers to owned messages go through; none may be dropped.
        zmq_setsockopt(w->loop_end, ZMQ_SNDHWM, &zero, sizeof zero);
        zmq_setsockopt(w->loop_end, ZMQ_RCVHWM, &zero, sizeof zero);
        zmq_setsockopt(w->engine_end, ZMQ_SNDHWM, &zero, sizeof zero);
        zmq_setsockopt(w->engine_end, ZMQ_RCVHWM, &zero, sizeof zero);
    }
    if (!w->loop_end || !w->engine_end || zmq_bind(w->loop_end, addr) < 0 || zmq_connect(w->engine_end, addr) < 0) {
        r = log_errno(LOG_ERR, -zmq_errno(), "Failed to set up the engine's socket: %s", zmq_strerror(zmq_errno()));
        world_stop(w);
        return r;
    }
    r = engine_start_thread(&w->thread, engine_main, w);
    if (r != 0) {
        world_stop(w);
        return log_errno(LOG_ERR, -r, "Failed to start the MPI engine thread: %m");
    }
    w->thread_started = true;
    if (zmq_recv(w->loop_end, &(void *) { NULL }, sizeof(void *), 0) < 0 || w->init_error < 0) {
        r = w->init_error < 0 ? w->init_error : -EIO;
        log_errno(LOG_ERR, r, "Failed to initialise MPI: %m");
        world_stop(w);
        return r;
    }
    log_info("MPI world: rank %d of %d on %s; %s", w->rank, w->size, w->hosts[w->rank], w->mpi_version);
    if (w->size > 1) {
        r = engine_start_thread(&w->watch_thread, watch_main, w);
        if (r != 0) {
            world_stop(w);
            return log_errno(LOG_ERR, -r, "Failed to start the watch thread: %m");
        }
        w->watch_started = true;
    }
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

static int post(struct world *w, struct wmsg *m) {
    if (send_ptr(w->loop_end, m) < 0) {
        wmsg_free(m);
        return -EIO;
    }
    return 0;
}

void world_stop(struct world *w) {
    if (!w)
        return;
    if (w->watch_started) {
        zmq_send(w->watch_loop, "stop", 4, 0);
        pthread_join(w->watch_thread, NULL);
    }
    if (w->watch_loop)
        zmq_close(w->watch_loop);
    if (w->watch_end)
        zmq_close(w->watch_end);
    if (w->thread_started) {
        if (w->init_error == 0) {
            struct wmsg *m = calloc(1, sizeof *m);
            if (m) {
                zmq_msg_init(&m->data);
                m->type = WMSG_STOP;
                post(w, m);
            }
        }
        pthread_join(w->thread, NULL);
        reap_children();
    }
    // A watch the engine set up but that never ran (the start failed after).
    if (!w->watch_started)
        watch_close(w);
    // Events the loop never read.
    if (w->loop_end) {
        struct world_event *e;
        while ((e = recv_ptr(w->loop_end, ZMQ_DONTWAIT)))
            world_event_free(e);
        zmq_close(w->loop_end);
    }
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
    char out[512];
    size_t o = 0;
    for (const char *p = endpoint; *p; p++) {
        int n = p[0] == '%' && p[1] == 'r' ? snprintf(out + o, sizeof out - o, "%d", w->rank)
                                           : snprintf(out + o, sizeof out - o, "%c", *p);
        if (n < 0 || (size_t) n >= sizeof out - o)
            return -ENAMETOOLONG;
        o += (size_t) n;
        p += p[0] == '%' && p[1] == 'r';
    }
    if (o >= size)
        return -ENAMETOOLONG;
    memcpy(endpoint, out, o + 1);
    return 0;
}

static struct wmsg *wmsg_new(enum wmsg_type type, int dest, const Mlxd__Ctl__Ctl *m) {
    struct wmsg *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->type = type;
    x->dest = dest;
    zmq_msg_init(&x->data);
    if (m) {
        x->len = protobuf_c_message_get_packed_size(&m->base);
        x->buf = malloc(x->len ? x->len : 1);
        if (!x->buf) {
            free(x);
            return NULL;
        }
        protobuf_c_message_pack(&m->base, x->buf);
    }
    return x;
}

int world_send_ctl(struct world *w, int dest, const Mlxd__Ctl__Ctl *m) {
    struct wmsg *x = wmsg_new(WMSG_CTL, dest, m);
    return x ? post(w, x) : -ENOMEM;
}

int world_send_local(struct world *w, uint64_t group, uint64_t seq, const struct op_desc *d, zmq_msg_t *data) {
    struct wmsg *x = wmsg_new(WMSG_LOCAL, w->rank, NULL);
    if (!x) {
        if (data)
            zmq_msg_close(data);
        return -ENOMEM;
    }
    x->group = group;
    x->seq = seq;
    x->d = *d;
    if (data) {
        zmq_msg_move(&x->data, data);
        zmq_msg_close(data);
        x->has_data = true;
    }
    return post(w, x);
}

int world_send_part(struct world *w, uint64_t group, uint64_t seq, const struct op_desc *d, struct world_part *part) {
    struct wmsg *x = wmsg_new(WMSG_PART, w->rank, NULL);
    if (!x) {
        if (part)
            part->release(part);
        return -ENOMEM;
    }
    x->group = group;
    x->seq = seq;
    x->d = *d;
    x->part = part;
    if (send_ptr(w->loop_end, x) < 0) {
        if (part)
            part->release(part);
        wmsg_free(x);
        return -EIO;
    }
    return 0;
}

int world_send_p2p(struct world *w, int dest, uint64_t group, int src, int dst, const struct op_desc *d,
                   zmq_msg_t *data) {
    Mlxd__Ctl__Ctl c = MLXD__CTL__CTL__INIT;
    Mlxd__Ctl__P2P h = MLXD__CTL__P2_P__INIT;
    h.group = group;
    h.src = src;
    h.dst = dst;
    h.dtype = d->dtype;
    h.n_shape = (size_t) d->ndim;
    h.shape = (int64_t *) d->shape;
    h.nbytes = zmq_msg_size(data);
    c.body_case = MLXD__CTL__CTL__BODY_P2P;
    c.p2p = &h;
    struct wmsg *x = wmsg_new(WMSG_P2P, dest, &c);
    if (!x) {
        zmq_msg_close(data);
        return -ENOMEM;
    }
    zmq_msg_move(&x->data, data);
    zmq_msg_close(data);
    x->has_data = true;
    return post(w, x);
}

void *world_socket(struct world *w) {
    return w->loop_end;
}

void *world_watch_socket(struct world *w) {
    return w->watch_loop;
}

bool world_watch_read(struct world *w, struct world_watch_event *ev) {
    return zmq_recv(w->watch_loop, ev, sizeof *ev, ZMQ_DONTWAIT) == (int) sizeof *ev;
}

void world_dispatch(struct world *w) {
    struct world_event *e;
    while ((e = recv_ptr(w->loop_end, ZMQ_DONTWAIT))) {
        if (e->release_only)
            world_event_free(e);
        else
            w->on_event(w->on_event_ctx, e);
    }
}
