/* The daemon's wiring: builds each module in order (signals, the engine,
 * the ZeroMQ front, shared memory, metrics, the worker pool) and takes them
 * down in the reverse order, every request answered first. */
#include "server.h"

#include <string.h>
#include <unistd.h>

#include "front.h"
#include "http.h"
#include "job.h"
#include "log.h"
#include "loop.h"
#include "pool.h"
#include "ringsvc.h"
#include "service.h"
#include "span.h"
#include "world.h"

// The engine's events go to span.c, which owns what they mean.
static void on_world_event(void *ctx, struct world_event *e) {
    span_event(ctx, e);
}

static int start_world(struct server *s) {
    struct world_config wc = {
        .zctx = s->zctx,
        .op_timeout_ms = s->cfg.op_timeout_ms,
        .mpi_stall_ms = s->cfg.mpi_stall_ms,
        .heartbeat_timeout_ms = s->cfg.heartbeat_timeout_ms,
        .on_event = on_world_event,
        .ctx = s,
    };
    return world_start(&wc, &s->world);
}

int server_init(struct server *s, const struct config *cfg) {
    int r;
    *s = (struct server) { .cfg = *cfg, .loop = LOOP_INIT, .front = FRONT_INIT, .shm = SHM_REGISTRY_INIT,
                           .next_group_id = 1 };
    LIST_INIT(&s->sessions.list);
    LIST_INIT(&s->jobs);
    TAILQ_INIT(&s->replies.pendings);
    s->replies.on_failed = status_request_failed;
    s->replies.on_request = loop_request;
    LIST_INIT(&s->shm.clients);
    LIST_INIT(&s->rings);
    s->ring_hooks = (struct ring_hooks) { .find = session_of_member, .close = session_close };
    s->start_us = wire_now_us();
    r = loop_init_signals(s);
    if (r < 0)
        return log_errno(LOG_ERR, r, "Failed to set up signal handling: %m");
    s->zctx = zmq_ctx_new();
    if (!s->zctx)
        return log_errno(LOG_ERR, -zmq_errno(), "Failed to create the ZeroMQ context");
    int router_fd, shm_fd;
    r = service_adopt(s, &router_fd, &shm_fd);
    if (r < 0)
        return r;
    bool activated = router_fd >= 0;
    // Without %r the endpoint is known before MPI starts: refuse a second
    // daemon at once rather than after MPI's start-up.
    if (!activated && !strstr(s->cfg.endpoint, "%r")) {
        r = front_claim(&s->front, s->cfg.endpoint);
        if (r < 0)
            return r;
    }
    r = start_world(s);
    if (r < 0)
        return r;
    if (!activated)
        r = world_expand_endpoint(s->world, s->cfg.endpoint, sizeof s->cfg.endpoint);
    if (r < 0)
        return log_errno(LOG_ERR, r, "The endpoint is too long once %%r is replaced: %m");
    uint64_t max_msg = s->cfg.max_tensor_bytes > WIRE_MAX_PB_FRAME ? s->cfg.max_tensor_bytes : WIRE_MAX_PB_FRAME;
    r = front_open(&s->front, s->zctx, s->cfg.endpoint, max_msg, router_fd);
    if (r < 0)
        return r;
    if (shm_fd >= 0)
        s->shm.listen_fd = shm_fd;
    else if ((r = shm_start(s)) < 0)
        return r;
    if (s->cfg.metrics_addr[0]) {
        r = http_start(s->cfg.metrics_addr, &s->status.http);
        if (r < 0)
            return r;
        status_publish_metrics(s, wire_now_us());
    }
    r = pool_new(s->cfg.workers, &s->pool);
    if (r < 0)
        log_errno(LOG_WARNING, r, "Failed to start the worker pool, bulk work stays on one thread: %m");
    log_debug("Bulk copies and reductions run on %u thread(s)", pool_size(s->pool));
    service_ready(s);
    log_notice("mlxd %s serving %s (world rank %d of %d, pid %d)", MLXD_VERSION_STRING, s->cfg.endpoint,
               world_rank(s->world), world_size(s->world), (int) getpid());
    return 0;
}

void server_fini(struct server *s) {
    struct session *se;
    // Every request in flight gets its answer before the sessions go, so no
    // member sees a peer failure for what is the daemon stopping.
    status_free_all(s);
    s->status.http = http_stop(s->status.http);
    pending_fail_all(s, MLXD_EUNAVAILABLE, "mlxd is shutting down");
    while ((se = LIST_FIRST(&s->sessions.list)))
        session_close(s, se, MLXD_EUNAVAILABLE, "mlxd is shutting down");
    sessions_fini(s);
    job_free_all(s);
    ring_stop(s);
    shm_stop(s);
    front_close(&s->front, s->cfg.endpoint);
    s->pool = pool_free(s->pool);
    world_stop(s->world);            // finalizes MPI, reaps its helpers
    s->world = NULL;
    if (s->zctx)
        zmq_ctx_term(s->zctx);
    loop_fini_signals(s);
}

