/* Replies and the requests that wait for one: the one place a reply is
 * built and sent, whatever transport it leaves by. */
#include "reply.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "server.h"

// The ZeroMQ front's transport: routing id, the reply, its frames.
static int router_send(void *router, const struct peer *p, Mlxd__Reply *r, zmq_msg_t *frames, int nframes) {
    int flags = ZMQ_DONTWAIT | ZMQ_SNDMORE, e = 0;
    if (zmq_send(router, p->rid, p->rid_len, flags) < 0)
        e = -zmq_errno();
    if (e == 0)
        e = wire_send_pb(router, &r->base, nframes > 0 ? flags : ZMQ_DONTWAIT);
    for (int i = 0; e == 0 && i < nframes; i++)
        if (zmq_msg_send(&frames[i], router, i + 1 < nframes ? flags : ZMQ_DONTWAIT) < 0)
            e = -zmq_errno();
    // Frames that were sent are empty: closing them all is safe.
    for (int i = 0; e < 0 && i < nframes; i++)
        zmq_msg_close(&frames[i]);
    return e;
}

void server_reply(struct server *s, const struct peer *p, Mlxd__Reply *r, zmq_msg_t *frames, int nframes) {
    int e = p->transport ? p->transport->send(p->transport, p, r, frames, nframes)
                         : router_send(s->front.router, p, r, frames, nframes);
    // The peer is gone (EHOSTUNREACH) or not reading (EAGAIN): its request
    // is answered as far as we are concerned.
    if (e < 0)
        log_debug("Dropped the reply to request %llu of pid %d: %s", (unsigned long long) r->id, (int) p->pid,
                  zmq_strerror(-e));
}

static void reply_error_va(struct server *s, const struct peer *p, uint64_t id, int code, const char *fmt,
                           va_list ap) {
    char text[1024];
    vsnprintf(text, sizeof text, fmt, ap);
    Mlxd__Reply r = MLXD__REPLY__INIT;
    r.id = id;
    r.code = code;
    r.message = text;
    log_debug("Request %llu of pid %d failed: %s: %s", (unsigned long long) id, (int) p->pid,
              wire_error_name(code), text);
    server_reply(s, p, &r, NULL, 0);
}

void server_reply_error(struct server *s, const struct peer *p, uint64_t id, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    reply_error_va(s, p, id, code, fmt, ap);
    va_end(ap);
}

/* ---- pending requests ---- */

// Most deadlines are the default timeout from now: the latest, found at
// once from the tail.
static void insert_by_deadline(struct replies *rs, struct pending *p) {
    struct pending *q;
    TAILQ_FOREACH_REVERSE(q, &rs->pendings, pending_list, link)
        if (q->deadline_us <= p->deadline_us)
            break;
    if (q)
        TAILQ_INSERT_AFTER(&rs->pendings, q, p, link);
    else
        TAILQ_INSERT_HEAD(&rs->pendings, p, link);
}

struct pending *pending_new(struct server *s, enum pending_kind kind, uint64_t req_id, uint32_t timeout_ms) {
    struct pending *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->kind = kind;
    p->req_id = req_id;
    p->start_us = wire_now_us();
    p->deadline_us = p->start_us + (uint64_t) (timeout_ms ? timeout_ms : s->cfg.op_timeout_ms) * 1000u;
    p->peer = -1;
    zmq_msg_init(&p->data);
    insert_by_deadline(&s->replies, p);
    return p;
}

void pending_free(struct server *s, struct pending *p) {
    if (!p)
        return;
    TAILQ_REMOVE(&s->replies.pendings, p, link);
    if (s->replies.expiring == p)
        s->replies.expiring = NULL;
    if (p->ref)
        *p->ref = NULL;
    if (p->queue)
        TAILQ_REMOVE(p->queue, p, qlink);
    pending_orphan(p);
    zmq_msg_close(&p->data);
    shm_unref(p->in_seg);
    shm_unref(p->out_seg);
    free(p);
}

void pending_track(struct session *se, struct pending *p) {
    p->session = se;
    TAILQ_INSERT_TAIL(&se->pendings, p, slink);
    se->inflight++;
}

void pending_orphan(struct pending *p) {
    if (!p->session)
        return;
    TAILQ_REMOVE(&p->session->pendings, p, slink);
    p->session->inflight--;
    p->session = NULL;
}

const uint8_t *pending_input(const struct pending *p) {
    return p->in_ptr ? p->in_ptr : zmq_msg_data((zmq_msg_t *) &p->data);
}

void pending_finish(struct server *s, struct pending *p, Mlxd__Reply *r, zmq_msg_t *frames, int nframes) {
    r->id = p->req_id;
    if (p->kind == PENDING_OP)
        metrics_record(&s->metrics, p->d.op, p->nbytes, wire_now_us() - p->start_us, r->code);
    if (r->code != 0 && s->replies.on_failed)
        s->replies.on_failed(s, p, r->code, r->message);
    if (p->session) {
        server_reply(s, &p->session->peer, r, frames, nframes);
    } else {
        // Its member died (a spanning group's op outlives it): nobody to
        // answer, but the frames may share received buffers.
        for (int i = 0; i < nframes; i++)
            zmq_msg_close(&frames[i]);
    }
    pending_free(s, p);
}

void pending_fail(struct server *s, struct pending *p, int code, const char *fmt, ...) {
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    Mlxd__Reply r = MLXD__REPLY__INIT;
    r.code = code;
    r.message = text;
    pending_finish(s, p, &r, NULL, 0);
}

void pending_fail_all(struct server *s, int code, const char *text) {
    struct pending *p;
    while ((p = TAILQ_FIRST(&s->replies.pendings)))
        pending_fail(s, p, code, "%s", text);
}

void pending_expire(struct server *s, uint64_t now, void (*expired)(struct server *s, struct pending *p)) {
    struct replies *rs = &s->replies;
    struct pending *p;
    // An expiry may fail a whole group and free other requests: the list's
    // head is read again after each one.
    while ((p = TAILQ_FIRST(&rs->pendings)) && p->deadline_us <= now) {
        rs->expiring = p;
        expired(s, p);
        if (rs->expiring == p) {
            // Still waiting, with a later deadline: back in its place.
            TAILQ_REMOVE(&rs->pendings, p, link);
            insert_by_deadline(rs, p);
        }
        rs->expiring = NULL;
    }
}

uint64_t pending_next_deadline(const struct server *s) {
    const struct pending *p = TAILQ_FIRST(&s->replies.pendings);
    return p ? p->deadline_us : UINT64_MAX;
}
