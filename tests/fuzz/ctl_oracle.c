/* See ctl_oracle.h. The model is written from proto/control.proto and
 * daemon/desc.h, not from coord.c, so that the two can disagree. */
#include "ctl_oracle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_format.h"
#include "wire.h"

#define MESSAGE_MAX 1024                // coord.c relays at most this much of a host's reason

// One queued message, decoded.
struct sent {
    int dest;
    Mlxd__Ctl__Ctl *m;
    const uint8_t *buf;
    size_t len;
};

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    CHECK(p);
    return p;
}

/* ---- the model's groups ---- */

struct mgroup *oracle_group(const struct oracle *o, uint64_t id) {
    for (size_t i = 0; i < o->ng; i++)
        if (o->g[i]->id == id)
            return o->g[i];
    return NULL;
}

// Whether a group of this job lives: then the job has formed.
static bool job_live(const struct oracle *o, const char *job) {
    for (size_t i = 0; i < o->ng; i++)
        if (strcmp(o->g[i]->job, job) == 0)
            return true;
    return false;
}

static bool seen(const struct oracle *o, uint64_t id) {
    for (size_t i = 0; i < o->nseen; i++)
        if (o->seen[i] == id)
            return true;
    return false;
}

static int host_index(const struct mgroup *g, int host) {
    for (int i = 0; i < g->nhosts; i++)
        if (g->hosts[i] == host)
            return i;
    return -1;
}

static void mgroup_free(struct mgroup *g) {
    if (!g)
        return;
    free(g->job);
    free(g->host);
    free(g->in);
    free(g->d);
    free(g->left);
    free(g);
}

// A group the coordinator just announced: a fresh id of its own, members on
// hosts of the world.
static void add_group(struct oracle *o, const char *job, uint64_t id, size_t n, const int32_t *host) {
    CHECK(id & COORD_GROUP_BIT);
    CHECK(!seen(o, id));
    CHECK(n >= 1);
    struct mgroup *g = xcalloc(1, sizeof *g);
    g->id = id;
    g->job = strdup(job);
    CHECK(g->job);
    g->size = (int) n;
    g->host = xcalloc(n, sizeof *g->host);
    g->in = xcalloc(n, sizeof *g->in);
    g->d = xcalloc(n, sizeof *g->d);
    g->left = xcalloc(n, sizeof *g->left);
    for (size_t k = 0; k < n; k++) {
        g->left[k] = UINT64_MAX;
        CHECK(host[k] >= 0 && host[k] < o->world_size);
        g->host[k] = host[k];
        if (host_index(g, host[k]) < 0) {
            int i = g->nhosts++;
            while (i > 0 && g->hosts[i - 1] > host[k]) {
                g->hosts[i] = g->hosts[i - 1];
                i--;
            }
            g->hosts[i] = host[k];
        }
    }
    if (o->ng == o->gcap) {
        o->gcap = o->gcap ? 2 * o->gcap : 16;
        o->g = realloc(o->g, o->gcap * sizeof *o->g);
        CHECK(o->g);
    }
    o->g[o->ng++] = g;
    if (o->nseen == o->seencap) {
        o->seencap = o->seencap ? 2 * o->seencap : 64;
        o->seen = realloc(o->seen, o->seencap * sizeof *o->seen);
        CHECK(o->seen);
    }
    o->seen[o->nseen++] = id;
}

static void remove_group(struct oracle *o, struct mgroup *g) {
    for (size_t i = 0; i < o->ng; i++)
        if (o->g[i] == g) {
            o->g[i] = o->g[--o->ng];
            mgroup_free(g);
            return;
        }
    CHECK(!"removing a group the model does not have");
}

static void clear_arrivals(struct mgroup *g) {
    memset(g->in, 0, (size_t) g->size * sizeof *g->in);
    g->narrived = 0;
}

/* ---- what the coordinator sent ---- */

// Messages [i, i + g->nhosts) are one message to every host of g, in
// ascending order, byte for byte the same.
static void check_to_hosts(const struct sent *s, size_t n, size_t i, const struct mgroup *g) {
    CHECK(n - i >= (size_t) g->nhosts);
    for (int k = 0; k < g->nhosts; k++) {
        CHECK(s[i + (size_t) k].dest == g->hosts[k]);
        CHECK(s[i + (size_t) k].len == s[i].len && memcmp(s[i + (size_t) k].buf, s[i].buf, s[i].len) == 0);
    }
}

static bool known_error(int code) {
    return code < 0 && code >= MLXD_EINTERNAL;
}

static void check_hello_fail(const struct sent *s, int dest, const char *job) {
    CHECK(s->m->body_case == MLXD__CTL__CTL__BODY_HELLO_FAIL);
    const Mlxd__Ctl__HelloFail *f = s->m->hello_fail;
    CHECK(s->dest == dest || dest < 0);
    CHECK(strcmp(f->job, job) == 0);
    CHECK(known_error(f->code));
    CHECK(f->message && f->message[0]);
}

static void check_abort(const struct sent *s, const struct mgroup *g, int code) {
    CHECK(s->m->body_case == MLXD__CTL__CTL__BODY_ABORT);
    const Mlxd__Ctl__Abort *a = s->m->abort;
    CHECK(a->group == g->id);
    CHECK(a->code == code);
    CHECK(a->message && a->message[0] && strlen(a->message) <= MESSAGE_MAX);
}

// The Abort of a group's collectives only (a member left before issuing
// the one being gathered): MLXD_EPEER, and the group goes on otherwise.
static void check_break(const struct sent *s, const struct mgroup *g) {
    check_abort(s, g, MLXD_EPEER);
    CHECK(s->m->abort->collectives);
}

// Whether collective seq of g waits for a member that left before issuing it.
static bool breaks_at(const struct mgroup *g, uint64_t seq) {
    for (int r = 0; r < g->size; r++)
        if (g->left[r] <= seq)
            return true;
    return false;
}

/* ---- agreement and splits, as desc.h states them ---- */

static bool has_tensor(uint32_t op) {
    return op != MLXD__OP_TYPE__OP_BARRIER && op != MLXD__OP_TYPE__OP_SPLIT;
}

static int expected_code(const struct mgroup *g) {
    const struct mdesc *a = &g->d[0];
    for (int r = 1; r < g->size; r++) {
        const struct mdesc *b = &g->d[r];
        if (b->op != a->op)
            return MLXD_EMISMATCH;
        if (!has_tensor(a->op))
            continue;
        if (b->dtype != a->dtype || b->ndim != a->ndim ||
            memcmp(a->shape, b->shape, (size_t) a->ndim * sizeof a->shape[0]) != 0)
            return MLXD_EMISMATCH;
    }
    if (a->op == MLXD__OP_TYPE__OP_SUM_SCATTER && (a->ndim == 0 || a->shape[0] % g->size != 0))
        return MLXD_EINVAL;
    return 0;
}

struct skey {
    int rank, color, key;
};

static int cmp_skey(const void *pa, const void *pb) {
    const struct skey *x = pa, *y = pb;
    if (x->color != y->color)
        return x->color < y->color ? -1 : 1;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->rank > y->rank) - (x->rank < y->rank);
}

// A successful split: the new groups are the colors in ascending order, each
// with its members by key (a negative key: the old rank), then old rank.
static void check_split(struct oracle *o, const struct mgroup *g, const Mlxd__Ctl__Go *go) {
    struct skey *k = xcalloc((size_t) g->size, sizeof *k);
    for (int r = 0; r < g->size; r++)
        k[r] = (struct skey) { .rank = r, .color = g->d[r].color, .key = g->d[r].key < 0 ? r : g->d[r].key };
    qsort(k, (size_t) g->size, sizeof *k, cmp_skey);
    size_t ngroups = 0;
    for (int i = 0; i < g->size; i++)
        ngroups += i == 0 || k[i].color != k[i - 1].color;
    CHECK(go->n_split == ngroups);
    int i = 0;
    for (size_t s = 0; s < go->n_split; s++) {
        const Mlxd__Ctl__NewGroup *ng = go->split[s];
        CHECK(ng->n_members >= 1 && ng->n_members == ng->n_hosts);
        CHECK(ng->n_members <= (size_t) (g->size - i));
        for (size_t m = 0; m < ng->n_members; m++) {
            CHECK(ng->members[m] == k[i + (int) m].rank);
            CHECK(k[i + (int) m].color == k[i].color);
            CHECK(ng->hosts[m] == g->host[ng->members[m]]);
        }
        i += (int) ng->n_members;
        CHECK(i == g->size || k[i].color != k[i - 1].color);
        add_group(o, g->job, ng->group, ng->n_hosts, ng->hosts);
    }
    CHECK(i == g->size);
    free(k);
}

/* ---- one message ---- */

static bool desc_valid(const Mlxd__Ctl__Desc *d) {
    switch (d->op) {
    case MLXD__OP_TYPE__OP_ALL_SUM:
    case MLXD__OP_TYPE__OP_ALL_MAX:
    case MLXD__OP_TYPE__OP_ALL_MIN:
    case MLXD__OP_TYPE__OP_ALL_GATHER:
    case MLXD__OP_TYPE__OP_SUM_SCATTER:
    case MLXD__OP_TYPE__OP_BARRIER:
    case MLXD__OP_TYPE__OP_SPLIT:
        break;
    default:
        return false;
    }
    if (!wire_dtype(d->dtype) || d->n_shape > MLXD_MAX_NDIM)
        return false;
    for (size_t i = 0; i < d->n_shape; i++)
        if (d->shape[i] < 0)
            return false;
    return true;
}

// Join: nothing, one HelloFail to the joiner, or the job's Form to each of
// its hosts (the joiner's rank on the joiner's host).
static void after_join(struct oracle *o, int from, const Mlxd__Ctl__Join *j, const char *ignored,
                       const struct sent *s, size_t n) {
    bool valid = wire_job_id_valid(j->job);
    CHECK(!ignored == valid);
    if (valid && job_live(o, j->job)) {
        // Its id stays taken as long as any of its groups lives.
        CHECK(n == 1);
        check_hello_fail(&s[0], from, j->job);
        return;
    }
    if (n == 0)
        return;
    if (s[0].m->body_case == MLXD__CTL__CTL__BODY_HELLO_FAIL) {
        if (n == 1) {
            check_hello_fail(&s[0], from, j->job);
            CHECK(s[0].m->hello_fail->rank == j->rank);
            return;
        }
        // All ranks refused at once: the coordinator is full of groups.
        CHECK(n == (size_t) j->size);
        for (size_t i = 0; i < n; i++) {
            check_hello_fail(&s[i], -1, j->job);
            CHECK(s[i].m->hello_fail->code == MLXD_ENOMEM);
        }
        return;
    }
    CHECK(s[0].m->body_case == MLXD__CTL__CTL__BODY_FORM);
    const Mlxd__Ctl__Form *f = s[0].m->form;
    CHECK(strcmp(f->job, j->job) == 0);
    CHECK(f->n_hosts == (size_t) j->size);
    CHECK(j->rank >= 0 && j->rank < j->size && f->hosts[j->rank] == from);
    CHECK(!job_live(o, j->job));          // a job forms once while any of its groups lives
    add_group(o, j->job, f->group, f->n_hosts, f->hosts);
    const struct mgroup *g = oracle_group(o, f->group);
    CHECK(n == (size_t) g->nhosts);
    check_to_hosts(s, n, 0, g);
}

static void after_leave(const struct oracle *o, const Mlxd__Ctl__Leave *l, int from, const char *ignored,
                        const struct sent *s, size_t n) {
    CHECK(n <= 1);
    if (job_live(o, l->job))
        CHECK(ignored && n == 0);       // formed: the host sorts it out
    if (n == 1) {
        CHECK(l->timed_out);
        check_hello_fail(&s[0], from, l->job);
        CHECK(s[0].m->hello_fail->code == MLXD_ETIMEDOUT);
        CHECK(s[0].m->hello_fail->rank == l->rank);
    }
}

static void after_arrive(struct oracle *o, int from, const Mlxd__Ctl__Arrive *a, const char *ignored,
                         const struct sent *s, size_t n) {
    struct mgroup *g = oracle_group(o, a->group);
    const Mlxd__Ctl__Desc *d = a->desc;
    bool ignore = !g || !d || d->rank < 0 || d->rank >= g->size || g->host[d->rank] != from || !desc_valid(d);
    if (!ignore && g->code) {
        // The member must not wait: the group's abort, again, to its host.
        CHECK(!ignored && n == 1 && s[0].dest == from);
        check_abort(&s[0], g, g->code);
        CHECK(!s[0].m->abort->collectives);
        return;
    }
    if (!ignore && g->broken) {
        CHECK(!ignored && n == 1 && s[0].dest == from);
        check_break(&s[0], g);
        return;
    }
    ignore = ignore || a->seq != g->seq || g->in[d->rank];
    CHECK(!ignored == !ignore);
    if (ignore) {
        CHECK(n == 0);
        return;
    }
    struct mdesc *md = &g->d[d->rank];
    *md = (struct mdesc) { .op = d->op, .dtype = d->dtype, .ndim = (int) d->n_shape, .color = d->color,
                           .key = d->key };
    if (d->n_shape)
        memcpy(md->shape, d->shape, d->n_shape * sizeof d->shape[0]);
    g->in[d->rank] = true;
    if (++g->narrived < g->size) {
        CHECK(n == 0);
        return;
    }

    // The last member arrived: Go, the same to every host; then, if a member
    // left before issuing the next collective, the Abort of the collectives.
    bool breaks = breaks_at(g, g->seq + 1);
    CHECK(n == (size_t) g->nhosts * (breaks ? 2 : 1));
    check_to_hosts(s, n, 0, g);
    if (breaks) {
        check_to_hosts(s, n, (size_t) g->nhosts, g);
        check_break(&s[g->nhosts], g);
        g->broken = true;
    }
    CHECK(s[0].m->body_case == MLXD__CTL__CTL__BODY_GO);
    const Mlxd__Ctl__Go *go = s[0].m->go;
    CHECK(go->group == g->id && go->seq == g->seq);
    int code = expected_code(g);
    CHECK(go->code == code);
    if (code)
        CHECK(go->message && go->message[0]);
    if (code == 0 && g->d[0].op == MLXD__OP_TYPE__OP_SPLIT)
        check_split(o, g, go);
    else
        CHECK(go->n_split == 0);
    g->seq++;
    clear_arrivals(g);
}

static void after_timeout(struct oracle *o, int from, const Mlxd__Ctl__Timeout *t, const char *ignored,
                          const struct sent *s, size_t n) {
    struct mgroup *g = oracle_group(o, t->group);
    bool ignore = !g || host_index(g, from) < 0 || g->code || g->broken || t->seq != g->seq;
    CHECK(!ignored == !ignore);
    if (ignore) {
        CHECK(n == 0);
        return;
    }
    CHECK(n == (size_t) g->nhosts);
    check_to_hosts(s, n, 0, g);
    check_abort(&s[0], g, MLXD_ETIMEDOUT);
    g->code = MLXD_ETIMEDOUT;
    clear_arrivals(g);
}

static void after_abort_req(struct oracle *o, int from, const Mlxd__Ctl__AbortReq *a, const char *ignored,
                            const struct sent *s, size_t n) {
    struct mgroup *g = oracle_group(o, a->group);
    bool ignore = !g || host_index(g, from) < 0 || g->code;
    CHECK(!ignored == !ignore);
    if (ignore) {
        CHECK(n == 0);
        return;
    }
    // A code that is not an MLXD_E* error becomes MLXD_EPEER; the host's
    // reason is relayed, cut at MESSAGE_MAX bytes.
    int code = known_error(a->code) ? a->code : MLXD_EPEER;
    CHECK(n == (size_t) g->nhosts);
    check_to_hosts(s, n, 0, g);
    check_abort(&s[0], g, code);
    if (a->message && a->message[0])
        CHECK(strncmp(s[0].m->abort->message, a->message, MESSAGE_MAX) == 0);
    g->code = code;
    clear_arrivals(g);
}

static void after_depart(struct oracle *o, int from, const Mlxd__Ctl__Depart *m, const char *ignored,
                         const struct sent *s, size_t n) {
    struct mgroup *g = oracle_group(o, m->group);
    bool ignore = !g || m->rank < 0 || m->rank >= g->size || g->host[m->rank] != from ||
                  g->left[m->rank] != UINT64_MAX;
    CHECK(!ignored == !ignore);
    if (ignore) {
        CHECK(n == 0);
        return;
    }
    g->left[m->rank] = m->seq;
    if (g->code || g->broken || !breaks_at(g, g->seq)) {
        CHECK(n == 0);
        return;
    }
    CHECK(n == (size_t) g->nhosts);
    check_to_hosts(s, n, 0, g);
    check_break(&s[0], g);
    g->broken = true;
    clear_arrivals(g);
}

static void after_group_gone(struct oracle *o, int from, const Mlxd__Ctl__GroupGone *m, const char *ignored,
                             const struct sent *s, size_t n) {
    struct mgroup *g = oracle_group(o, m->group);
    int h = g ? host_index(g, from) : -1;
    bool ignore = h < 0 || g->gone[h];
    CHECK(!ignored == !ignore);
    if (ignore) {
        CHECK(n == 0);
        return;
    }
    g->gone[h] = true;
    for (int i = 0; i < g->nhosts; i++)
        if (!g->gone[i]) {
            CHECK(n == 0);
            return;
        }
    // Every host said so: a spanning group's communicator is released.
    if (g->nhosts > 1) {
        CHECK(n == (size_t) g->nhosts);
        check_to_hosts(s, n, 0, g);
        CHECK(s[0].m->body_case == MLXD__CTL__CTL__BODY_GROUP_FREE);
        CHECK(s[0].m->group_free->group == g->id);
    } else {
        CHECK(n == 0);
    }
    remove_group(o, g);
}

void oracle_step(struct oracle *o, int from, const Mlxd__Ctl__Ctl *m, uint64_t now_us) {
    const char *ignored = NULL;
    CHECK(o->out.n == 0);
    int r = coord_handle(o->c, from, m, now_us, &o->out, &ignored);
    CHECK(r == 0);                      // nothing here runs out of memory
    o->steps++;

    // Everything queued decodes, goes to a daemon of the world, and is a
    // kind that hosts take.
    size_t n = o->out.n;
    struct sent *s = xcalloc(n, sizeof *s);
    for (size_t i = 0; i < n; i++) {
        s[i].dest = o->out.v[i].dest;
        s[i].buf = o->out.v[i].buf;
        s[i].len = o->out.v[i].len;
        CHECK(s[i].dest >= 0 && s[i].dest < o->world_size);
        s[i].m = mlxd__ctl__ctl__unpack(NULL, s[i].len, s[i].buf);
        CHECK(s[i].m);
        switch (s[i].m->body_case) {
        case MLXD__CTL__CTL__BODY_HELLO_FAIL:
        case MLXD__CTL__CTL__BODY_FORM:
        case MLXD__CTL__CTL__BODY_GO:
        case MLXD__CTL__CTL__BODY_ABORT:
        case MLXD__CTL__CTL__BODY_GROUP_FREE:
            break;
        default:
            CHECK(!"the coordinator sent a kind of message hosts do not take");
        }
    }
    if (o->verbose) {
        fprintf(stderr, "step %llu: from %d kind %d: %s; sent", (unsigned long long) o->steps, from,
                m ? (int) m->body_case : -1, ignored ? ignored : "taken");
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %d->%d", (int) s[i].m->body_case, s[i].dest);
        fprintf(stderr, "\n");
    }
    // A message the coordinator ignores changes nothing and sends nothing.
    if (ignored)
        CHECK(n == 0);

    if (from < 0 || from >= o->world_size || !m || m->body_case == MLXD__CTL__CTL__BODY__NOT_SET) {
        CHECK(ignored);
    } else {
        switch (m->body_case) {
        case MLXD__CTL__CTL__BODY_JOIN:
            after_join(o, from, m->join, ignored, s, n);
            break;
        case MLXD__CTL__CTL__BODY_LEAVE:
            after_leave(o, m->leave, from, ignored, s, n);
            break;
        case MLXD__CTL__CTL__BODY_ARRIVE:
            after_arrive(o, from, m->arrive, ignored, s, n);
            break;
        case MLXD__CTL__CTL__BODY_TIMEOUT:
            after_timeout(o, from, m->timeout, ignored, s, n);
            break;
        case MLXD__CTL__CTL__BODY_ABORT_REQ:
            after_abort_req(o, from, m->abort_req, ignored, s, n);
            break;
        case MLXD__CTL__CTL__BODY_GROUP_GONE:
            after_group_gone(o, from, m->group_gone, ignored, s, n);
            break;
        case MLXD__CTL__CTL__BODY_DEPART:
            after_depart(o, from, m->depart, ignored, s, n);
            break;
        default:
            CHECK(ignored);             // meant for hosts
            break;
        }
    }

    int forming = -1, groups = -1;
    coord_counts(o->c, &forming, &groups);
    CHECK(forming >= 0 && forming <= COORD_MAX_FORMING);
    CHECK(groups >= 0 && (size_t) groups == o->ng);

    for (size_t i = 0; i < n; i++)
        mlxd__ctl__ctl__free_unpacked(s[i].m, NULL);
    free(s);
    ctl_outbox_clear(&o->out);
}

void oracle_step_packed(struct oracle *o, int from, const uint8_t *buf, size_t len, uint64_t now_us) {
    Mlxd__Ctl__Ctl *m = mlxd__ctl__ctl__unpack(NULL, len, buf);
    if (!m)
        return;
    oracle_step(o, from, m, now_us);
    mlxd__ctl__ctl__free_unpacked(m, NULL);
}

struct oracle *oracle_new(int world_size) {
    CHECK(world_size >= 1 && world_size <= FUZZ_WORLD_MAX);
    struct oracle *o = xcalloc(1, sizeof *o);
    o->c = coord_new(world_size);
    CHECK(o->c);
    o->world_size = world_size;
    o->verbose = getenv("MLXD_FUZZ_VERBOSE") != NULL;
    return o;
}

void oracle_free(struct oracle *o) {
    if (!o)
        return;
    o->c = coord_free(o->c);
    for (size_t i = 0; i < o->ng; i++)
        mgroup_free(o->g[i]);
    free(o->g);
    free(o->seen);
    ctl_outbox_fini(&o->out);
    free(o);
}
