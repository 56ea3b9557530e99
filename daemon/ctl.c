/* One sender per control message: each function builds its message on the
 * stack and hands it to the engine (which packs it at once). */
#include "ctl.h"

#include <string.h>

#include "log.h"
#include "world.h"

// The one place a control message leaves the loop.
static int send_ctl(struct world *w, int dest, Mlxd__Ctl__Ctl *c) {
    int r = world_send_ctl(w, dest, c);
    if (r < 0) {
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field(&mlxd__ctl__ctl__descriptor, (unsigned) c->body_case);
        log_error("Failed to send %s to world rank %d: %s", f ? f->name : "a control message", dest, strerror(-r));
    }
    return r;
}

int ctl_join(struct world *w, const char *job, uint32_t uid, int size, int rank, int pid) {
    Mlxd__Ctl__Ctl c = MLXD__CTL__CTL__INIT;
    Mlxd__Ctl__Join m = MLXD__CTL__JOIN__INIT;
    m.job = (char *) job;
    m.uid = uid;
    m.size = size;
    m.rank = rank;
    m.pid = pid;
    c.body_case = MLXD__CTL__CTL__BODY_JOIN;
    c.join = &m;
    return send_ctl(w, 0, &c);
}

int ctl_leave(struct world *w, const char *job, int rank, bool timed_out, uint64_t waited_ms) {
    Mlxd__Ctl__Ctl c = MLXD__CTL__CTL__INIT;
    Mlxd__Ctl__Leave m = MLXD__CTL__LEAVE__INIT;
    m.job = (char *) job;
    m.rank = rank;
    m.timed_out = timed_out;
    m.waited_ms = waited_ms;
    c.body_case = MLXD__CTL__CTL__BODY_LEAVE;
    c.leave = &m;
    return send_ctl(w, 0, &c);
}

int ctl_arrive(struct world *w, uint64_t group, uint64_t seq, int rank, const struct op_desc *d) {
    Mlxd__Ctl__Ctl c = MLXD__CTL__CTL__INIT;
    Mlxd__Ctl__Arrive m = MLXD__CTL__ARRIVE__INIT;
    Mlxd__Ctl__Desc desc = MLXD__CTL__DESC__INIT;
    desc.rank = rank;
    desc.op = (uint32_t) d->op;
    desc.dtype = d->dtype;
    desc.n_shape = (size_t) d->ndim;
    desc.shape = (int64_t *) d->shape;
    desc.color = d->color;
    desc.key = d->key;
    m.group = group;
    m.seq = seq;
    m.desc = &desc;
    c.body_case = MLXD__CTL__CTL__BODY_ARRIVE;
    c.arrive = &m;
    return send_ctl(w, 0, &c);
}

int ctl_timeout(struct world *w, uint64_t group, uint64_t seq, int rank, uint64_t waited_ms) {
    Mlxd__Ctl__Ctl c = MLXD__CTL__CTL__INIT;
    Mlxd__Ctl__Timeout m = MLXD__CTL__TIMEOUT__INIT;
    m.group = group;
    m.seq = seq;
    m.rank = rank;
    m.waited_ms = waited_ms;
    c.body_case = MLXD__CTL__CTL__BODY_TIMEOUT;
    c.timeout = &m;
    return send_ctl(w, 0, &c);
}

int ctl_abort_req(struct world *w, uint64_t group, int code, const char *message) {
    Mlxd__Ctl__Ctl c = MLXD__CTL__CTL__INIT;
    Mlxd__Ctl__AbortReq m = MLXD__CTL__ABORT_REQ__INIT;
    m.group = group;
    m.code = code;
    m.message = (char *) message;
    c.body_case = MLXD__CTL__CTL__BODY_ABORT_REQ;
    c.abort_req = &m;
    return send_ctl(w, 0, &c);
}

int ctl_group_gone(struct world *w, uint64_t group) {
    Mlxd__Ctl__Ctl c = MLXD__CTL__CTL__INIT;
    Mlxd__Ctl__GroupGone m = MLXD__CTL__GROUP_GONE__INIT;
    m.group = group;
    c.body_case = MLXD__CTL__CTL__BODY_GROUP_GONE;
    c.group_gone = &m;
    return send_ctl(w, 0, &c);
}

int ctl_depart(struct world *w, int dest, uint64_t group, int rank, uint64_t seq, const char *message) {
    Mlxd__Ctl__Ctl c = MLXD__CTL__CTL__INIT;
    Mlxd__Ctl__Depart m = MLXD__CTL__DEPART__INIT;
    m.group = group;
    m.rank = rank;
    m.seq = seq;
    m.message = (char *) message;
    c.body_case = MLXD__CTL__CTL__BODY_DEPART;
    c.depart = &m;
    return send_ctl(w, dest, &c);
}

int ctl_status_req(struct world *w, int dest, uint64_t id) {
    Mlxd__Ctl__Ctl c = MLXD__CTL__CTL__INIT;
    Mlxd__Ctl__StatusReq m = MLXD__CTL__STATUS_REQ__INIT;
    m.id = id;
    c.body_case = MLXD__CTL__CTL__BODY_STATUS_REQ;
    c.status_req = &m;
    return send_ctl(w, dest, &c);
}

int ctl_status_rep(struct world *w, int dest, uint64_t id, const uint8_t *daemon, size_t len) {
    Mlxd__Ctl__Ctl c = MLXD__CTL__CTL__INIT;
    Mlxd__Ctl__StatusRep m = MLXD__CTL__STATUS_REP__INIT;
    m.id = id;
    m.daemon.data = (uint8_t *) daemon;
    m.daemon.len = len;
    c.body_case = MLXD__CTL__CTL__BODY_STATUS_REP;
    c.status_rep = &m;
    return send_ctl(w, dest, &c);
}
