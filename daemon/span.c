/* The engine's events, routed to the domain: formation (job.c), Go (the
 * spanning collectives, coll.c), messages from other hosts (p2p.c), Abort
 * and Depart (group.c, depart.c), status (status.c). */
#include "span.h"

#include "coll.h"
#include "log.h"
#include "p2p.h"

void span_event(struct server *s, struct world_event *e) {
    const Mlxd__Ctl__Ctl *c = e->ctl;
    struct group *g;
    switch (e->type) {
    case WORLD_EVENT_GO:
        if ((g = coll_span_go(s, e)))
            job_gc(s, g->job);
        break;
    case WORLD_EVENT_P2P:
        if ((g = group_find(s, c->p2p->group))) {
            struct op_desc d = { .op = MLXD__OP_TYPE__OP_SEND, .dtype = c->p2p->dtype };
            uint64_t nbytes;
            if (c->p2p->n_shape > MLXD_MAX_NDIM ||
                wire_tensor_nbytes(c->p2p->dtype, c->p2p->n_shape, c->p2p->shape, &nbytes) < 0 ||
                nbytes != zmq_msg_size(&e->data)) {
                log_warning("World rank %d sent a message that does not add up; dropped it", e->from);
                break;
            }
            d.ndim = (int) c->p2p->n_shape;
            for (int i = 0; i < d.ndim; i++)     // a scalar has no shape array at all
                d.shape[i] = c->p2p->shape[i];
            p2p_deliver_remote(s, g, c->p2p->src, c->p2p->dst, &d, &e->data);
        }
        break;
    case WORLD_EVENT_CTL:
        switch (c->body_case) {
        case MLXD__CTL__CTL__BODY_FORM:
            job_form(s, c->form->job, c->form->group, c->form->hosts, c->form->n_hosts);
            break;
        case MLXD__CTL__CTL__BODY_HELLO_FAIL:
            job_hello_fail(s, c->hello_fail->job, c->hello_fail->rank, c->hello_fail->code, c->hello_fail->message);
            break;
        case MLXD__CTL__CTL__BODY_ABORT:
            if ((g = group_find(s, c->abort->group))) {
                int code = c->abort->code < 0 ? c->abort->code : MLXD_EPEER;
                if (c->abort->collectives)
                    group_break_collectives(s, g, code, c->abort->message);
                else
                    group_abort_now(s, g, code, c->abort->message);
                job_gc(s, g->job);
            }
            break;
        case MLXD__CTL__CTL__BODY_DEPART:
            // After every message the member sent us (the engine keeps the order).
            if ((g = group_find(s, c->depart->group))) {
                group_depart_remote(s, g, c->depart->rank, c->depart->seq);
                job_gc(s, g->job);
            }
            break;
        case MLXD__CTL__CTL__BODY_STATUS_REQ:
            status_remote_request(s, e->from, c->status_req->id);
            break;
        case MLXD__CTL__CTL__BODY_STATUS_REP:
            status_remote_reply(s, e->from, c->status_rep->id, c->status_rep->daemon.data, c->status_rep->daemon.len);
            break;
        default:
            break;                   // GroupFree: the engine released the communicator
        }
        break;
    }
    world_event_free(e);
}
