#include "hostpart.h"

#include <stdlib.h>
#include <string.h>

#include "result.h"
#include "shm.h"

struct hostpart {
    struct world_part wp;           // first: the engine's view
    zmq_msg_t result;               // the reply frame (and then dst), when a member needs one
    bool has_result;
    size_t n;                       // local members
    const uint8_t **srcs;           // [n]
    uint8_t **copies;               // [n]
    uint8_t **outs;                 // [n]: where each member's result is written, NULL: not by the engine
    struct shm_seg **segs;          // [2n] references held
    size_t nsegs;
    zmq_msg_t *frames;              // [n] copies of inline inputs
    size_t nframes;
};

bool hostpart_by_reference(int op) {
    return op == MLXD__OP_TYPE__OP_ALL_SUM || op == MLXD__OP_TYPE__OP_ALL_MAX || op == MLXD__OP_TYPE__OP_ALL_MIN ||
           op == MLXD__OP_TYPE__OP_ALL_GATHER;
}

static void release(struct world_part *wp) {
    struct hostpart *h = (struct hostpart *) wp;
    for (size_t i = 0; i < h->nframes; i++)
        zmq_msg_close(&h->frames[i]);
    for (size_t i = 0; i < h->nsegs; i++)
        shm_unref(h->segs[i]);
    zmq_msg_close(&h->result);
    free(h->srcs);
    free(h->copies);
    free(h->outs);
    free(h->segs);
    free(h->frames);
    free(h);
}

static bool overlap(const uint8_t *a, size_t na, const uint8_t *b, size_t nb) {
    return a < b + nb && b < a + na;
}

// Whether the engine may write member i's output of len bytes while the
// inputs are read. A reduction writes block k once every input's block k is
// read: an output may be an input exactly, never overlap one elsewhere. A
// gather copies the inputs in first: its output may hold its own input at
// the member's own block only (own: where that is).
static bool writable(const struct hostpart *h, const uint8_t *out, size_t len, size_t i, const uint8_t *own) {
    for (size_t k = 0; k < h->n; k++) {
        const uint8_t *in = h->srcs[k];
        if (overlap(out, len, in, h->wp.nbytes) && !(own ? k == i && in == own : in == out))
            return false;
    }
    return true;
}

// The members' inputs, held: shared memory by a reference, an inline frame
// by a copy of it (pointers taken after the copy: a small message lives
// inside its zmq_msg_t).
static void hold_inputs(struct hostpart *h, struct pending *const *m) {
    for (size_t i = 0; i < h->n; i++) {
        if (m[i]->in_ptr) {
            h->segs[h->nsegs++] = m[i]->in_seg;
            shm_ref(m[i]->in_seg);
            h->srcs[i] = m[i]->in_ptr;
        } else {
            zmq_msg_t *f = &h->frames[h->nframes++];
            zmq_msg_init(f);
            zmq_msg_copy(f, &m[i]->data);
            h->srcs[i] = zmq_msg_data(f);
        }
    }
}

// Where the result goes: the shared-memory outputs the engine may write,
// and a reply frame when a member has none (or no output can hold it).
static int place_result(struct hostpart *h, struct pending *const *m, bool gather, size_t total) {
    bool frame = false;
    for (size_t i = 0; i < h->n; i++) {
        struct pending *p = m[i];
        const uint8_t *own = gather ? p->out_ptr + (size_t) p->rank * h->wp.nbytes : NULL;
        frame |= !p->out_ptr;
        if (p->out_ptr && p->out_nbytes == total && writable(h, p->out_ptr, total, i, own)) {
            h->outs[i] = p->out_ptr;
            h->segs[h->nsegs++] = p->out_seg;
            shm_ref(p->out_seg);
            if (!h->wp.dst)
                h->wp.dst = p->out_ptr;
            else
                h->copies[h->wp.ncopies++] = p->out_ptr;
        }
    }
    if (!frame && h->wp.dst)
        return 0;
    // A reduction runs in place in an inline input (the old request's
    // buffer), which then is the reply: no new buffer of the tensor's size.
    if (!gather && h->nframes > 0) {
        zmq_msg_copy(&h->result, &h->frames[0]);
    } else if (zmq_msg_init_size(&h->result, total) < 0) {
        zmq_msg_init(&h->result);
        return MLXD_ENOMEM;
    }
    h->has_result = true;
    if (h->wp.dst)
        h->copies[h->wp.ncopies++] = h->wp.dst;
    h->wp.dst = zmq_msg_data(&h->result);
    return 0;
}

static struct hostpart *hostpart_new(size_t n) {
    struct hostpart *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->n = n;
    zmq_msg_init(&h->result);
    h->srcs = calloc(n, sizeof *h->srcs);
    h->copies = calloc(n, sizeof *h->copies);
    h->outs = calloc(n, sizeof *h->outs);
    h->segs = calloc(2 * n, sizeof *h->segs);
    h->frames = calloc(n, sizeof *h->frames);
    if (!h->srcs || !h->copies || !h->outs || !h->segs || !h->frames) {
        release(&h->wp);
        return NULL;
    }
    h->wp.release = release;
    h->wp.srcs = h->srcs;
    h->wp.copies = h->copies;
    return h;
}

int hostpart_build(struct server *s, struct group *g, struct world_part **ret) {
    struct pending **m = calloc((size_t) g->size, sizeof *m);
    size_t n = 0;
    (void) s;
    *ret = NULL;
    if (!m)
        return MLXD_ENOMEM;
    for (int r = 0; r < g->size; r++)
        if (g->slots[r].coll) {
            m[n] = g->slots[r].coll;
            if (n > 0 && !op_desc_same(&m[0]->d, &m[n]->d)) {
                free(m);
                return 0;
            }
            n++;
        }
    struct hostpart *h = n ? hostpart_new(n) : NULL;
    if (!h) {
        free(m);
        return n ? MLXD_ENOMEM : 0;
    }
    bool gather = m[0]->d.op == MLXD__OP_TYPE__OP_ALL_GATHER;
    h->wp.nsrcs = n;
    h->wp.nbytes = m[0]->nbytes;
    hold_inputs(h, m);
    int r = place_result(h, m, gather, gather ? m[0]->nbytes * (size_t) g->size : m[0]->nbytes);
    free(m);
    if (r < 0) {
        release(&h->wp);
        return r;
    }
    *ret = &h->wp;
    return 0;
}

void hostpart_reply(struct server *s, struct group *g, const struct op_desc *d, struct world_part *part) {
    struct hostpart *h = (struct hostpart *) part;
    size_t total = d->op == MLXD__OP_TYPE__OP_ALL_GATHER ? h->wp.nbytes * (size_t) g->size : h->wp.nbytes;
    for (int r = 0; r < g->size; r++) {
        struct pending *p = g->slots[r].coll;
        bool filled = false;
        if (!p)
            continue;
        for (size_t i = 0; p->out_ptr && i < h->n && !filled; i++)
            filled = h->outs[i] == p->out_ptr;
        if (filled)
            op_reply_tensor(s, p, d->dtype, d->ndim, d->shape, NULL);
        else
            op_reply_result(s, p, d->dtype, d->ndim, d->shape, h->wp.dst, total,
                            !p->out_ptr && h->has_result ? &h->result : NULL);
    }
}
