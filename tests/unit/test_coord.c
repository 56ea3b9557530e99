/* The coordinator's state machine: control messages in, control messages
 * out. Each test builds the messages hosts would send, feeds them to
 * coord_handle() and decodes what it queued. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "coord.h"
#include "mlxd.pb-c.h"
#include "mlxd/mlxd.h"

/* ---- allocation failures on demand ---- */

// With a sanitizer the allocator is not glibc's: no injection there.
#if defined(__SANITIZE_ADDRESS__)
#define NO_INJECTION 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define NO_INJECTION 1
#endif
#endif

// The allocation that fails: the countdown-th from when it is set; -1: none.
static long alloc_countdown = -1;
// Blocks allocated and not freed, to find leaks on the failure paths
// without valgrind (which takes malloc over and so cannot inject).
static long alloc_live;

#ifndef NO_INJECTION
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);

static void *counted(void *p) {
    alloc_live += p != NULL;
    return p;
}

static bool alloc_fails(void) {
    return alloc_countdown >= 0 && alloc_countdown-- == 0;
}

void *malloc(size_t n) {
    return alloc_fails() ? NULL : counted(__libc_malloc(n));
}

void *calloc(size_t n, size_t size) {
    return alloc_fails() ? NULL : counted(__libc_calloc(n, size));
}

void *realloc(void *p, size_t n) {
    if (alloc_fails())
        return NULL;
    void *q = __libc_realloc(p, n);
    alloc_live += (q && !p) - (!q && p && n == 0);
    return q;
}

void free(void *p) {
    alloc_live -= p != NULL;
    __libc_free(p);
}
#endif

// Whether failures can be injected here (not under a sanitizer or valgrind).
static bool can_inject(void) {
    void *(*volatile alloc)(size_t) = malloc;
    alloc_countdown = 0;
    void *p = alloc(1);
    alloc_countdown = -1;
    free(p);
    return p == NULL;
}

/* ---- fixture ---- */

#define WORLD 4
#define MAX_GOT 64

struct got {
    int dest;
    Mlxd__Ctl__Ctl *m;
};

struct fx {
    struct coord *c;
    struct ctl_outbox out;
    const char *ignored;
    struct got got[MAX_GOT];            // what the last message made the coordinator send
    size_t n;
};

static void forget_got(struct fx *f) {
    for (size_t i = 0; i < f->n; i++)
        mlxd__ctl__ctl__free_unpacked(f->got[i].m, NULL);
    f->n = 0;
}

static int setup(void **state) {
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->c = coord_new(WORLD);
    assert_non_null(f->c);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    struct fx *f = *state;
    forget_got(f);
    ctl_outbox_fini(&f->out);
    coord_free(f->c);
    free(f);
    return 0;
}

// Hands m from host `from` to the coordinator and decodes what it queued.
static void handle(struct fx *f, int from, const Mlxd__Ctl__Ctl *m) {
    forget_got(f);
    f->ignored = NULL;
    assert_int_equal(coord_handle(f->c, from, m, 1000, &f->out, &f->ignored), 0);
    assert_true(f->out.n <= MAX_GOT);
    for (size_t i = 0; i < f->out.n; i++) {
        f->got[i].dest = f->out.v[i].dest;
        f->got[i].m = mlxd__ctl__ctl__unpack(NULL, f->out.v[i].len, f->out.v[i].buf);
        assert_non_null(f->got[i].m);
    }
    f->n = f->out.n;
    ctl_outbox_clear(&f->out);
}

static void join_uid(struct fx *f, int from, const char *job, uint32_t uid, int size, int rank) {
    Mlxd__Ctl__Join j = MLXD__CTL__JOIN__INIT;
    Mlxd__Ctl__Ctl m = MLXD__CTL__CTL__INIT;
    j.job = (char *) job;
    j.uid = uid;
    j.size = size;
    j.rank = rank;
    j.pid = 100 + rank;
    m.body_case = MLXD__CTL__CTL__BODY_JOIN;
    m.join = &j;
    handle(f, from, &m);
}

static void join(struct fx *f, int from, const char *job, int size, int rank) {
    join_uid(f, from, job, 1000, size, rank);
}

static void leave(struct fx *f, int from, const char *job, int rank, bool timed_out, uint64_t waited_ms) {
    Mlxd__Ctl__Leave l = MLXD__CTL__LEAVE__INIT;
    Mlxd__Ctl__Ctl m = MLXD__CTL__CTL__INIT;
    l.job = (char *) job;
    l.rank = rank;
    l.timed_out = timed_out;
    l.waited_ms = waited_ms;
    m.body_case = MLXD__CTL__CTL__BODY_LEAVE;
    m.leave = &l;
    handle(f, from, &m);
}

static void arrive_desc(struct fx *f, int from, uint64_t group, uint64_t seq, Mlxd__Ctl__Desc *d) {
    Mlxd__Ctl__Arrive a = MLXD__CTL__ARRIVE__INIT;
    Mlxd__Ctl__Ctl m = MLXD__CTL__CTL__INIT;
    a.group = group;
    a.seq = seq;
    a.desc = d;
    m.body_case = MLXD__CTL__CTL__BODY_ARRIVE;
    m.arrive = &a;
    handle(f, from, &m);
}

// Rank `rank` arrives at a collective on a tensor of shape [dim0, 3].
static void arrive(struct fx *f, int from, uint64_t group, uint64_t seq, int rank, int op, int dtype, int64_t dim0) {
    int64_t shape[2] = { dim0, 3 };
    Mlxd__Ctl__Desc d = MLXD__CTL__DESC__INIT;
    d.rank = rank;
    d.op = (uint32_t) op;
    d.dtype = (uint32_t) dtype;
    if (op != MLXD__OP_TYPE__OP_BARRIER && op != MLXD__OP_TYPE__OP_SPLIT) {
        d.n_shape = 2;
        d.shape = shape;
    }
    arrive_desc(f, from, group, seq, &d);
}

static void arrive_split(struct fx *f, int from, uint64_t group, uint64_t seq, int rank, int color, int key) {
    Mlxd__Ctl__Desc d = MLXD__CTL__DESC__INIT;
    d.rank = rank;
    d.op = MLXD__OP_TYPE__OP_SPLIT;
    d.color = color;
    d.key = key;
    arrive_desc(f, from, group, seq, &d);
}

static void timeout(struct fx *f, int from, uint64_t group, uint64_t seq, int rank, uint64_t waited_ms) {
    Mlxd__Ctl__Timeout t = MLXD__CTL__TIMEOUT__INIT;
    Mlxd__Ctl__Ctl m = MLXD__CTL__CTL__INIT;
    t.group = group;
    t.seq = seq;
    t.rank = rank;
    t.waited_ms = waited_ms;
    m.body_case = MLXD__CTL__CTL__BODY_TIMEOUT;
    m.timeout = &t;
    handle(f, from, &m);
}

static void abort_req(struct fx *f, int from, uint64_t group, int code, const char *message) {
    Mlxd__Ctl__AbortReq a = MLXD__CTL__ABORT_REQ__INIT;
    Mlxd__Ctl__Ctl m = MLXD__CTL__CTL__INIT;
    a.group = group;
    a.code = code;
    a.message = (char *) message;
    m.body_case = MLXD__CTL__CTL__BODY_ABORT_REQ;
    m.abort_req = &a;
    handle(f, from, &m);
}

static void depart(struct fx *f, int from, uint64_t group, int rank, uint64_t seq, const char *message) {
    Mlxd__Ctl__Depart d = MLXD__CTL__DEPART__INIT;
    Mlxd__Ctl__Ctl m = MLXD__CTL__CTL__INIT;
    d.group = group;
    d.rank = rank;
    d.seq = seq;
    d.message = (char *) message;
    m.body_case = MLXD__CTL__CTL__BODY_DEPART;
    m.depart = &d;
    handle(f, from, &m);
}

static void group_gone(struct fx *f, int from, uint64_t group) {
    Mlxd__Ctl__GroupGone g = MLXD__CTL__GROUP_GONE__INIT;
    Mlxd__Ctl__Ctl m = MLXD__CTL__CTL__INIT;
    g.group = group;
    m.body_case = MLXD__CTL__CTL__BODY_GROUP_GONE;
    m.group_gone = &g;
    handle(f, from, &m);
}

// Joins every rank of a job from host[rank] and returns its first group.
static uint64_t form(struct fx *f, const char *job, int size, const int *host) {
    for (int r = 0; r < size; r++) {
        assert_int_equal(f->n, 0);
        join(f, host[r], job, size, r);
        assert_null(f->ignored);
    }
    assert_true(f->n > 0);
    assert_int_equal(f->got[0].m->body_case, MLXD__CTL__CTL__BODY_FORM);
    return f->got[0].m->form->group;
}

// Every rank of a group on host[] arrives at a [dim0, 3] collective.
static void all_arrive(struct fx *f, uint64_t group, uint64_t seq, int size, const int *host, int op, int dtype,
                       int64_t dim0) {
    for (int r = 0; r < size; r++)
        arrive(f, host[r], group, seq, r, op, dtype, dim0);
}

static void assert_counts(struct fx *f, int forming, int groups) {
    int nf = -1, ng = -1;
    coord_counts(f->c, &nf, &ng);
    assert_int_equal(nf, forming);
    assert_int_equal(ng, groups);
}

static const Mlxd__Ctl__HelloFail *hello_fail(struct fx *f, int dest) {
    assert_int_equal(f->n, 1);
    assert_int_equal(f->got[0].dest, dest);
    assert_int_equal(f->got[0].m->body_case, MLXD__CTL__CTL__BODY_HELLO_FAIL);
    return f->got[0].m->hello_fail;
}

static void assert_sent_nothing(struct fx *f) {
    assert_int_equal(f->n, 0);
}

static void assert_ignored(struct fx *f) {
    assert_int_equal(f->n, 0);
    assert_non_null(f->ignored);
}

/* ---- jobs forming ---- */

static void job_forms_when_last_rank_joins_across_two_hosts(void **state) {
    struct fx *f = *state;
    join(f, 2, "j", 3, 0);
    assert_sent_nothing(f);
    join(f, 0, "j", 3, 1);
    assert_sent_nothing(f);
    assert_counts(f, 1, 0);
    join(f, 2, "j", 3, 2);
    assert_null(f->ignored);
    assert_int_equal(f->n, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(f->got[i].dest, i == 0 ? 0 : 2);
        assert_int_equal(f->got[i].m->body_case, MLXD__CTL__CTL__BODY_FORM);
        const Mlxd__Ctl__Form *fm = f->got[i].m->form;
        assert_string_equal(fm->job, "j");
        assert_int_equal(fm->group, COORD_GROUP_BIT | 1);
        assert_int_equal(fm->n_hosts, 3);
        assert_int_equal(fm->hosts[0], 2);
        assert_int_equal(fm->hosts[1], 0);
        assert_int_equal(fm->hosts[2], 2);
    }
    assert_counts(f, 0, 1);
}

static void single_rank_job_forms_at_once(void **state) {
    struct fx *f = *state;
    join(f, 3, "solo", 1, 0);
    assert_int_equal(f->n, 1);
    assert_int_equal(f->got[0].dest, 3);
    assert_int_equal(f->got[0].m->form->group, COORD_GROUP_BIT | 1);
    assert_counts(f, 0, 1);
}

static void duplicate_rank_gets_hello_fail(void **state) {
    struct fx *f = *state;
    join(f, 1, "j", 3, 0);
    join(f, 2, "j", 3, 0);
    const Mlxd__Ctl__HelloFail *h = hello_fail(f, 2);
    assert_string_equal(h->job, "j");
    assert_int_equal(h->rank, 0);
    assert_int_equal(h->code, MLXD_EINVAL);
    assert_string_equal(h->message, "rank 0 of job j has already joined (pid 100 on daemon 1)");
    assert_counts(f, 1, 0);
}

static void size_disagreement_gets_hello_fail(void **state) {
    struct fx *f = *state;
    join(f, 0, "j", 3, 0);
    join(f, 1, "j", 4, 1);
    const Mlxd__Ctl__HelloFail *h = hello_fail(f, 1);
    assert_int_equal(h->code, MLXD_EINVAL);
    assert_int_equal(h->rank, 1);
    assert_string_equal(h->message, "job j has size 3, but this process says size 4");
}

static void other_uid_is_denied(void **state) {
    struct fx *f = *state;
    join_uid(f, 0, "j", 1000, 2, 0);
    join_uid(f, 1, "j", 1001, 2, 1);
    const Mlxd__Ctl__HelloFail *h = hello_fail(f, 1);
    assert_int_equal(h->code, MLXD_EDENIED);
    assert_string_equal(h->message, "job j belongs to another user");
    join_uid(f, 1, "j", 1000, 2, 1);    // the refused rank did not count
    assert_int_equal(f->got[0].m->body_case, MLXD__CTL__CTL__BODY_FORM);
}

static void rank_outside_size_gets_hello_fail(void **state) {
    struct fx *f = *state;
    join(f, 0, "j", 2, 2);
    assert_int_equal(hello_fail(f, 0)->code, MLXD_EINVAL);
    assert_string_equal(f->got[0].m->hello_fail->message, "job j: rank 2 is not in [0, 2)");
    join(f, 0, "j", 0, 0);
    assert_int_equal(hello_fail(f, 0)->code, MLXD_EINVAL);
    join(f, 0, "j", 65537, 0);
    assert_int_equal(hello_fail(f, 0)->code, MLXD_EINVAL);
    assert_counts(f, 0, 0);
}

static void formed_job_id_cannot_be_joined_again(void **state) {
    struct fx *f = *state;
    const int host[] = { 0, 1 };
    form(f, "j", 2, host);
    join(f, 1, "j", 2, 0);
    const Mlxd__Ctl__HelloFail *h = hello_fail(f, 1);
    assert_int_equal(h->code, MLXD_EINVAL);
    assert_string_equal(h->message, "job j has already formed; a new run needs a new job id");
    assert_counts(f, 0, 1);
}

static void too_many_forming_jobs_get_enomem(void **state) {
    struct fx *f = *state;
    char job[32];
    for (int i = 0; i < COORD_MAX_FORMING; i++) {
        snprintf(job, sizeof job, "job-%d", i);
        join(f, i % WORLD, job, 2, 0);
        assert_sent_nothing(f);
    }
    assert_counts(f, COORD_MAX_FORMING, 0);
    join(f, 1, "one-more", 2, 0);
    const Mlxd__Ctl__HelloFail *h = hello_fail(f, 1);
    assert_int_equal(h->code, MLXD_ENOMEM);
    assert_string_equal(h->message, "too many jobs forming");
    join(f, 1, "job-7", 2, 1);          // finishing a forming job still works
    assert_int_equal(f->got[0].m->body_case, MLXD__CTL__CTL__BODY_FORM);
    assert_counts(f, COORD_MAX_FORMING - 1, 1);
}

static void timed_out_leave_names_missing_ranks(void **state) {
    struct fx *f = *state;
    join(f, 1, "j", 5, 0);
    join(f, 2, "j", 5, 2);
    leave(f, 1, "j", 0, true, 1500);
    const Mlxd__Ctl__HelloFail *h = hello_fail(f, 1);
    assert_int_equal(h->code, MLXD_ETIMEDOUT);
    assert_int_equal(h->rank, 0);
    assert_string_equal(h->message, "job j did not form within 1.5 s: 2 of 5 ranks joined; missing rank(s) 1, 3, 4");
    assert_counts(f, 1, 0);
    leave(f, 2, "j", 2, false, 0);      // a process that died: no answer
    assert_sent_nothing(f);
    assert_null(f->ignored);
    assert_counts(f, 0, 0);
}

static void missing_rank_list_is_cut_short(void **state) {
    struct fx *f = *state;
    join(f, 0, "big", 1000, 999);
    leave(f, 0, "big", 999, true, 60000);
    const char *msg = hello_fail(f, 0)->message;
    assert_non_null(strstr(msg, "within 60.0 s: 1 of 1000 ranks joined; missing rank(s) 0, 1, 2, "));
    assert_non_null(strstr(msg, ", 30, 31, …"));
    assert_null(strstr(msg, "32"));
}

static void leave_after_form_is_ignored(void **state) {
    struct fx *f = *state;
    const int host[] = { 0, 1 };
    form(f, "j", 2, host);
    leave(f, 1, "j", 1, true, 5000);
    assert_ignored(f);
    assert_counts(f, 0, 1);
}

static void leave_from_another_host_is_ignored(void **state) {
    struct fx *f = *state;
    join(f, 1, "j", 2, 0);
    leave(f, 2, "j", 0, true, 100);
    assert_ignored(f);
    leave(f, 1, "j", 1, true, 100);     // never joined
    assert_ignored(f);
    assert_counts(f, 1, 0);
}

/* ---- collectives ---- */

static void go_waits_for_every_member(void **state) {
    struct fx *f = *state;
    const int host[] = { 0, 1, 1 };
    uint64_t g = form(f, "j", 3, host);
    arrive(f, 0, g, 0, 0, MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 2);
    assert_sent_nothing(f);
    arrive(f, 1, g, 0, 2, MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 2);
    assert_sent_nothing(f);
    assert_null(f->ignored);
    arrive(f, 1, g, 0, 1, MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 2);
    assert_int_equal(f->n, 2);
    const Mlxd__Ctl__Go *go = f->got[0].m->go;
    assert_int_equal(f->got[0].m->body_case, MLXD__CTL__CTL__BODY_GO);
    assert_int_equal(go->group, g);
    assert_int_equal(go->seq, 0);
    assert_int_equal(go->code, 0);
    assert_int_equal(go->n_split, 0);
    // The next collective is gathered afresh under seq 1.
    arrive(f, 0, g, 0, 0, MLXD__OP_TYPE__OP_BARRIER, 0, 0);
    assert_ignored(f);
    all_arrive(f, g, 1, 3, host, MLXD__OP_TYPE__OP_BARRIER, 0, 0);
    assert_int_equal(f->n, 2);
    assert_int_equal(f->got[0].m->go->seq, 1);
    assert_int_equal(f->got[0].m->go->code, 0);
}

static void go_goes_to_each_host_once_in_rank_order(void **state) {
    struct fx *f = *state;
    const int host[] = { 3, 0, 3, 1, 0 };
    uint64_t g = form(f, "j", 5, host);
    assert_int_equal(f->n, 3);
    all_arrive(f, g, 0, 5, host, MLXD__OP_TYPE__OP_ALL_GATHER, MLXD_INT64, 1);
    assert_int_equal(f->n, 3);
    const int want[] = { 0, 1, 3 };
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(f->got[i].dest, want[i]);
        assert_int_equal(f->got[i].m->body_case, MLXD__CTL__CTL__BODY_GO);
        assert_int_equal(f->got[i].m->go->group, g);
    }
}

static void disagreeing_dtype_gives_mismatch_go(void **state) {
    struct fx *f = *state;
    const int host[] = { 0, 1 };
    uint64_t g = form(f, "j", 2, host);
    arrive(f, 0, g, 0, 0, MLXD__OP_TYPE__OP_ALL_MAX, MLXD_FLOAT32, 4);
    arrive(f, 1, g, 0, 1, MLXD__OP_TYPE__OP_ALL_MAX, MLXD_FLOAT16, 4);
    assert_int_equal(f->n, 2);
    for (size_t i = 0; i < 2; i++) {
        const Mlxd__Ctl__Go *go = f->got[i].m->go;
        assert_int_equal(go->code, MLXD_EMISMATCH);
        assert_string_equal(go->message,
                            "members disagree on the dtype of all_max: rank 0 has float32, rank 1 has float16");
    }
    all_arrive(f, g, 1, 2, host, MLXD__OP_TYPE__OP_ALL_MAX, MLXD_FLOAT32, 4);   // not aborted: goes on
    assert_int_equal(f->got[0].m->go->code, 0);
}

static void sum_scatter_not_divisible_gives_einval_go(void **state) {
    struct fx *f = *state;
    const int host[] = { 0, 1, 2 };
    uint64_t g = form(f, "j", 3, host);
    all_arrive(f, g, 0, 3, host, MLXD__OP_TYPE__OP_SUM_SCATTER, MLXD_INT32, 4);
    assert_int_equal(f->n, 3);
    assert_int_equal(f->got[2].m->go->code, MLXD_EINVAL);
    assert_string_equal(f->got[2].m->go->message, "sum_scatter: shape[0] = 4 is not divisible by the group size 3");
}

static void split_makes_groups_by_color_and_key(void **state) {
    struct fx *f = *state;
    const int host[] = { 0, 1, 0, 1, 2 };
    uint64_t g = form(f, "j", 5, host);
    arrive_split(f, 0, g, 0, 0, 1, -1);
    arrive_split(f, 1, g, 0, 1, 0, 5);
    arrive_split(f, 0, g, 0, 2, 1, -1);
    arrive_split(f, 2, g, 0, 4, 0, 0);
    arrive_split(f, 1, g, 0, 3, 0, 2);
    assert_int_equal(f->n, 3);
    const Mlxd__Ctl__Go *go = f->got[0].m->go;
    assert_int_equal(go->code, 0);
    assert_int_equal(go->n_split, 2);
    // Color 0: ranks 4, 3, 1 by key; color 1: ranks 0, 2 in their old order.
    const Mlxd__Ctl__NewGroup *a = go->split[0], *b = go->split[1];
    assert_int_equal(a->group, COORD_GROUP_BIT | 2);
    assert_int_equal(a->n_members, 3);
    assert_int_equal(a->members[0], 4);
    assert_int_equal(a->members[1], 3);
    assert_int_equal(a->members[2], 1);
    assert_int_equal(a->n_hosts, 3);
    assert_int_equal(a->hosts[0], 2);
    assert_int_equal(a->hosts[1], 1);
    assert_int_equal(a->hosts[2], 1);
    assert_int_equal(b->group, COORD_GROUP_BIT | 3);
    assert_int_equal(b->n_members, 2);
    assert_int_equal(b->members[0], 0);
    assert_int_equal(b->members[1], 2);
    assert_int_equal(b->hosts[0], 0);
    assert_int_equal(b->hosts[1], 0);
    assert_counts(f, 0, 3);

    // The new group spanning hosts 1 and 2 is sequenced like any other.
    const int ahost[] = { 2, 1, 1 };
    all_arrive(f, a->group, 0, 3, ahost, MLXD__OP_TYPE__OP_ALL_SUM, MLXD_UINT8, 1);
    assert_int_equal(f->n, 2);
    assert_int_equal(f->got[0].dest, 1);
    assert_int_equal(f->got[1].dest, 2);
    assert_int_equal(f->got[0].m->go->code, 0);
    // The one on host 0 alone is forgotten at its GroupGone, with no GroupFree.
    group_gone(f, 0, COORD_GROUP_BIT | 3);
    assert_sent_nothing(f);
    assert_null(f->ignored);
    assert_counts(f, 0, 2);
}

static void split_with_mixed_ops_gives_mismatch(void **state) {
    struct fx *f = *state;
    const int host[] = { 0, 1 };
    uint64_t g = form(f, "j", 2, host);
    arrive_split(f, 0, g, 0, 0, 0, 0);
    arrive(f, 1, g, 0, 1, MLXD__OP_TYPE__OP_BARRIER, 0, 0);
    assert_int_equal(f->got[0].m->go->code, MLXD_EMISMATCH);
    assert_int_equal(f->got[0].m->go->n_split, 0);
    assert_counts(f, 0, 1);
}

static void timeout_names_ranks_that_did_not_arrive(void **state) {
    struct fx *f = *state;
    const int host[] = { 0, 1, 0, 1 };
    uint64_t g = form(f, "j", 4, host);
    all_arrive(f, g, 0, 4, host, MLXD__OP_TYPE__OP_BARRIER, 0, 0);
    arrive(f, 0, g, 1, 0, MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 2);
    arrive(f, 0, g, 1, 2, MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 2);
    timeout(f, 0, g, 1, 0, 60000);
    assert_int_equal(f->n, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(f->got[i].dest, (int) i);
        assert_int_equal(f->got[i].m->body_case, MLXD__CTL__CTL__BODY_ABORT);
        const Mlxd__Ctl__Abort *a = f->got[i].m->abort;
        assert_int_equal(a->group, g);
        assert_int_equal(a->code, MLXD_ETIMEDOUT);
        assert_string_equal(a->message, "all_sum #2 timed out after 60.0 s waiting for rank(s) 1, 3");
    }
    timeout(f, 0, g, 1, 2, 60000);      // the group is aborted already
    assert_ignored(f);
}

static void timeout_after_go_is_ignored(void **state) {
    struct fx *f = *state;
    const int host[] = { 0, 1 };
    uint64_t g = form(f, "j", 2, host);
    all_arrive(f, g, 0, 2, host, MLXD__OP_TYPE__OP_ALL_MIN, MLXD_INT8, 1);
    timeout(f, 1, g, 0, 1, 60000);
    assert_ignored(f);
    timeout(f, 1, g + 1, 0, 1, 60000);
    assert_ignored(f);
    all_arrive(f, g, 1, 2, host, MLXD__OP_TYPE__OP_ALL_MIN, MLXD_INT8, 1);
    assert_int_equal(f->got[0].m->go->code, 0);
}

static void abort_is_relayed_once(void **state) {
    struct fx *f = *state;
    const int host[] = { 2, 0, 1 };
    uint64_t g = form(f, "j", 3, host);
    abort_req(f, 1, g, MLXD_EPEER, "rank 2 (pid 77) died");
    assert_int_equal(f->n, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(f->got[i].dest, (int) i);
        assert_int_equal(f->got[i].m->abort->code, MLXD_EPEER);
        assert_string_equal(f->got[i].m->abort->message, "rank 2 (pid 77) died");
    }
    abort_req(f, 2, g, MLXD_ETIMEDOUT, "a later reason");
    assert_ignored(f);
}

static void abort_with_unknown_code_becomes_epeer(void **state) {
    struct fx *f = *state;
    const int host[] = { 0, 1 };
    uint64_t g = form(f, "j", 2, host);
    abort_req(f, 0, g, 5, "");
    assert_int_equal(f->n, 2);
    assert_int_equal(f->got[0].m->abort->code, MLXD_EPEER);
    assert_string_equal(f->got[0].m->abort->message, "the group was aborted");
    abort_req(f, 3, COORD_GROUP_BIT | 99, MLXD_EPEER, "x");
    assert_ignored(f);
}

static void abort_or_timeout_from_outside_the_group_is_ignored(void **state) {
    struct fx *f = *state;
    const int host[] = { 0, 1 };
    uint64_t g = form(f, "j", 2, host);
    abort_req(f, 3, g, MLXD_EPEER, "not mine");
    assert_ignored(f);
    timeout(f, 2, g, 0, 0, 1000);
    assert_ignored(f);
    all_arrive(f, g, 0, 2, host, MLXD__OP_TYPE__OP_BARRIER, 0, 0);
    assert_int_equal(f->got[0].m->go->code, 0);
}

static void arrive_on_aborted_group_gets_abort(void **state) {
    struct fx *f = *state;
    const int host[] = { 0, 1 };
    uint64_t g = form(f, "j", 2, host);
    arrive(f, 0, g, 0, 0, MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 1);
    abort_req(f, 0, g, MLXD_EPEER, "rank 0 left");
    arrive(f, 1, g, 0, 1, MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 1);
    assert_int_equal(f->n, 1);
    assert_int_equal(f->got[0].dest, 1);
    assert_int_equal(f->got[0].m->body_case, MLXD__CTL__CTL__BODY_ABORT);
    assert_int_equal(f->got[0].m->abort->group, g);
    assert_int_equal(f->got[0].m->abort->code, MLXD_EPEER);
    assert_string_equal(f->got[0].m->abort->message, "rank 0 left");
}

// Each of the n messages f got is the collectives-only Abort of g, to
// hosts 0..n-1 in order, naming why.
static void assert_collectives_broken(struct fx *f, uint64_t g, size_t n, const char *why) {
    assert_int_equal(f->n, n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(f->got[i].dest, (int) i);
        assert_int_equal(f->got[i].m->body_case, MLXD__CTL__CTL__BODY_ABORT);
        assert_int_equal(f->got[i].m->abort->group, g);
        assert_int_equal(f->got[i].m->abort->code, MLXD_EPEER);
        assert_true(f->got[i].m->abort->collectives);
        assert_non_null(strstr(f->got[i].m->abort->message, why));
    }
}

static void depart_before_a_collective_breaks_it_on_every_host(void **state) {
    struct fx *f = *state;
    const int host[] = { 0, 1, 1 };
    uint64_t g = form(f, "j", 3, host);
    arrive(f, 0, g, 0, 0, MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 1);
    depart(f, 1, g, 2, 0, "rank 2 (pid 9) left the group");
    assert_null(f->ignored);
    assert_collectives_broken(f, g, 2, "rank 2 (pid 9) left the group before collective #1");
    // Arrivals sent before the hosts had the Abort get it again; timeouts
    // and repeated departures are ignored.
    arrive(f, 1, g, 0, 1, MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 1);
    assert_int_equal(f->n, 1);
    assert_int_equal(f->got[0].dest, 1);
    assert_true(f->got[0].m->abort->collectives);
    timeout(f, 0, g, 0, 0, 1000);
    assert_ignored(f);
    depart(f, 1, g, 2, 0, "again");
    assert_ignored(f);
}

static void depart_after_contributing_breaks_only_the_next_collective(void **state) {
    struct fx *f = *state;
    const int host[] = { 0, 1 };
    uint64_t g = form(f, "j", 2, host);
    arrive(f, 1, g, 0, 1, MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 1);
    depart(f, 1, g, 1, 1, "rank 1 (pid 8) died");
    assert_null(f->ignored);
    assert_sent_nothing(f);             // its all_sum still completes
    arrive(f, 0, g, 0, 0, MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 1);
    // The Go for it, then at once the Abort of the collectives after it.
    assert_int_equal(f->n, 4);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(f->got[i].m->body_case, MLXD__CTL__CTL__BODY_GO);
        assert_int_equal(f->got[i].m->go->code, 0);
    }
    for (size_t i = 2; i < 4; i++) {
        assert_int_equal(f->got[i].m->body_case, MLXD__CTL__CTL__BODY_ABORT);
        assert_true(f->got[i].m->abort->collectives);
        assert_non_null(strstr(f->got[i].m->abort->message, "before collective #2"));
    }
}

static void depart_from_wrong_host_or_rank_is_ignored(void **state) {
    struct fx *f = *state;
    const int host[] = { 0, 1 };
    uint64_t g = form(f, "j", 2, host);
    depart(f, 0, g, 1, 0, "not its host");
    assert_ignored(f);
    depart(f, 1, g, 2, 0, "no such rank");
    assert_ignored(f);
    depart(f, 1, g ^ 77, 1, 0, "no such group");
    assert_ignored(f);
    all_arrive(f, g, 0, 2, host, MLXD__OP_TYPE__OP_BARRIER, 0, 0);
    assert_int_equal(f->got[0].m->go->code, 0);
}

static void arrive_from_wrong_host_is_ignored(void **state) {
    struct fx *f = *state;
    const int host[] = { 0, 1 };
    uint64_t g = form(f, "j", 2, host);
    arrive(f, 1, g, 0, 0, MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 1);
    assert_ignored(f);
    arrive(f, 0, g, 0, 0, MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 1);
    assert_null(f->ignored);
    arrive(f, 0, g, 0, 0, MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 1);   // twice
    assert_ignored(f);
    arrive(f, 1, g, 0, 1, MLXD__OP_TYPE__OP_ALL_SUM, MLXD_FLOAT32, 1);
    assert_int_equal(f->n, 2);
}

static void group_free_after_all_hosts_gone(void **state) {
    struct fx *f = *state;
    const int host[] = { 1, 0, 1 };
    uint64_t g = form(f, "j", 3, host);
    group_gone(f, 1, g);
    assert_sent_nothing(f);
    assert_null(f->ignored);
    group_gone(f, 1, g);
    assert_ignored(f);
    group_gone(f, 2, g);                // not a host of the group
    assert_ignored(f);
    assert_counts(f, 0, 1);
    group_gone(f, 0, g);
    assert_int_equal(f->n, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(f->got[i].dest, (int) i);
        assert_int_equal(f->got[i].m->body_case, MLXD__CTL__CTL__BODY_GROUP_FREE);
        assert_int_equal(f->got[i].m->group_free->group, g);
    }
    assert_counts(f, 0, 0);
    arrive(f, 0, g, 0, 1, MLXD__OP_TYPE__OP_BARRIER, 0, 0);
    assert_ignored(f);
    // With its last group gone the job id may be used again.
    uint64_t g2 = form(f, "j", 3, host);
    assert_int_equal(g2, COORD_GROUP_BIT | 2);
}

static void groups_are_bounded(void **state) {
    struct fx *f = *state;
    char job[32];
    for (int i = 0; i < COORD_MAX_GROUPS; i++) {
        snprintf(job, sizeof job, "solo-%d", i);
        join(f, i % WORLD, job, 1, 0);
        assert_int_equal(f->n, 1);
    }
    assert_counts(f, 0, COORD_MAX_GROUPS);
    // A job that completes gets the error on every rank, and is forgotten.
    join(f, 2, "late", 2, 1);
    assert_sent_nothing(f);
    join(f, 1, "late", 2, 0);
    assert_int_equal(f->n, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(f->got[i].m->body_case, MLXD__CTL__CTL__BODY_HELLO_FAIL);
        assert_int_equal(f->got[i].m->hello_fail->rank, (int) i);
        assert_int_equal(f->got[i].m->hello_fail->code, MLXD_ENOMEM);
    }
    assert_int_equal(f->got[0].dest, 1);
    assert_int_equal(f->got[1].dest, 2);
    assert_counts(f, 0, COORD_MAX_GROUPS);
    // A split fails everywhere rather than making more.
    arrive_split(f, 1, COORD_GROUP_BIT | 2, 0, 0, 0, 0);
    assert_int_equal(f->n, 1);
    assert_int_equal(f->got[0].m->go->code, MLXD_ENOMEM);
    assert_int_equal(f->got[0].m->go->n_split, 0);
    // Room again once a group is gone.
    group_gone(f, 0, COORD_GROUP_BIT | 1);
    join(f, 2, "late", 2, 1);
    join(f, 1, "late", 2, 0);
    assert_int_equal(f->got[0].m->body_case, MLXD__CTL__CTL__BODY_FORM);
    assert_counts(f, 0, COORD_MAX_GROUPS);
}

static void garbage_fields_are_ignored_not_crashed(void **state) {
    struct fx *f = *state;
    const int host[] = { 0, 1 };
    uint64_t g = form(f, "j", 2, host);
    Mlxd__Ctl__Ctl m = MLXD__CTL__CTL__INIT;
    handle(f, 0, &m);                   // no body
    assert_ignored(f);
    m.body_case = MLXD__CTL__CTL__BODY_ARRIVE;
    handle(f, 0, &m);                   // a body case with a NULL body
    assert_ignored(f);
    m.body_case = (Mlxd__Ctl__Ctl__BodyCase) 99;
    handle(f, 0, &m);
    assert_ignored(f);
    f->ignored = NULL;
    assert_int_equal(coord_handle(f->c, 0, NULL, 0, &f->out, &f->ignored), 0);
    assert_non_null(f->ignored);
    assert_int_equal(coord_handle(f->c, 0, NULL, 0, &f->out, NULL), 0);

    join(f, WORLD, "k", 2, 0);          // from outside the world
    assert_ignored(f);
    join(f, -1, "k", 2, 0);
    assert_ignored(f);
    join(f, 0, "", 2, 0);
    assert_ignored(f);
    char longid[200];
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    join(f, 0, longid, 2, 0);
    assert_ignored(f);
    join(f, 0, "k", -3, -1);
    assert_int_equal(hello_fail(f, 0)->code, MLXD_EINVAL);
    leave(f, 0, "", 0, true, 1);
    assert_ignored(f);
    leave(f, 0, "nobody", -5, true, 1);
    assert_ignored(f);

    Mlxd__Ctl__Desc d = MLXD__CTL__DESC__INIT;
    int64_t shape[MLXD_MAX_NDIM + 1] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 };
    arrive_desc(f, 0, g, 0, NULL);
    assert_ignored(f);
    d.rank = -1;
    d.op = MLXD__OP_TYPE__OP_ALL_SUM;
    arrive_desc(f, 0, g, 0, &d);
    assert_ignored(f);
    d.rank = 2;
    arrive_desc(f, 0, g, 0, &d);
    assert_ignored(f);
    d.rank = 0;
    d.op = 99;
    arrive_desc(f, 0, g, 0, &d);
    assert_ignored(f);
    d.op = MLXD__OP_TYPE__OP_SEND;      // not a collective
    arrive_desc(f, 0, g, 0, &d);
    assert_ignored(f);
    d.op = MLXD__OP_TYPE__OP_ALL_SUM;
    d.dtype = MLXD_DTYPE_MAX;
    arrive_desc(f, 0, g, 0, &d);
    assert_ignored(f);
    d.dtype = MLXD_INT32;
    d.n_shape = MLXD_MAX_NDIM + 1;
    d.shape = shape;
    arrive_desc(f, 0, g, 0, &d);
    assert_ignored(f);
    d.n_shape = 2;
    shape[1] = -4;
    arrive_desc(f, 0, g, 0, &d);
    assert_ignored(f);
    d.n_shape = 1;
    arrive_desc(f, 0, g, 7, &d);        // a future seq
    assert_ignored(f);
    arrive_desc(f, 0, g ^ COORD_GROUP_BIT, 0, &d);
    assert_ignored(f);
    timeout(f, 0, 12345, 0, 0, 1);
    assert_ignored(f);
    group_gone(f, 0, 0);
    assert_ignored(f);

    // Messages for hosts.
    const Mlxd__Ctl__Ctl__BodyCase host_only[] = {
        MLXD__CTL__CTL__BODY_HELLO_FAIL, MLXD__CTL__CTL__BODY_FORM, MLXD__CTL__CTL__BODY_GO,
        MLXD__CTL__CTL__BODY_ABORT, MLXD__CTL__CTL__BODY_GROUP_FREE, MLXD__CTL__CTL__BODY_P2P,
        MLXD__CTL__CTL__BODY_STATUS_REQ, MLXD__CTL__CTL__BODY_STATUS_REP,
    };
    Mlxd__Ctl__Go go = MLXD__CTL__GO__INIT;
    for (size_t i = 0; i < sizeof host_only / sizeof host_only[0]; i++) {
        m.body_case = host_only[i];
        m.go = &go;                     // any body: they all share the union
        handle(f, 1, &m);
        assert_ignored(f);
    }

    // After all that, the group still works.
    arrive_desc(f, 0, g, 0, &d);
    assert_null(f->ignored);
    d.rank = 1;
    arrive_desc(f, 1, g, 0, &d);
    assert_int_equal(f->n, 2);
    assert_int_equal(f->got[0].m->go->code, 0);
    assert_counts(f, 0, 1);
}

/* ---- out of memory ---- */

// One step of a scenario that exercises every allocation of coord.c.
struct step {
    int from;
    Mlxd__Ctl__Ctl m;
};

struct scenario {
    struct step s[64];
    int n;
    Mlxd__Ctl__Join join[8];
    Mlxd__Ctl__Arrive arrive[32];
    Mlxd__Ctl__Desc desc[32];
    int64_t shape[32][1];
    Mlxd__Ctl__Leave leave[2];
    Mlxd__Ctl__Timeout timeout[1];
    Mlxd__Ctl__AbortReq abort_req[1];
    Mlxd__Ctl__GroupGone gone[8];
    Mlxd__Ctl__Depart depart[2];
    int nj, na, nl, nt, nab, ng, nd;
};

static void sc_depart(struct scenario *sc, int from, uint64_t group, int rank, uint64_t seq) {
    Mlxd__Ctl__Depart *d = &sc->depart[sc->nd++];
    mlxd__ctl__depart__init(d);
    d->group = group;
    d->rank = rank;
    d->seq = seq;
    d->message = "rank left";
    struct step *st = &sc->s[sc->n++];
    st->from = from;
    mlxd__ctl__ctl__init(&st->m);
    st->m.body_case = MLXD__CTL__CTL__BODY_DEPART;
    st->m.depart = d;
}

static void sc_join(struct scenario *sc, int from, const char *job, int size, int rank) {
    Mlxd__Ctl__Join *j = &sc->join[sc->nj++];
    mlxd__ctl__join__init(j);
    j->job = (char *) job;
    j->uid = 7;
    j->size = size;
    j->rank = rank;
    struct step *st = &sc->s[sc->n++];
    st->from = from;
    mlxd__ctl__ctl__init(&st->m);
    st->m.body_case = MLXD__CTL__CTL__BODY_JOIN;
    st->m.join = j;
}

static void sc_arrive(struct scenario *sc, int from, uint64_t group, uint64_t seq, int rank, int op, int color) {
    Mlxd__Ctl__Desc *d = &sc->desc[sc->na];
    Mlxd__Ctl__Arrive *a = &sc->arrive[sc->na];
    mlxd__ctl__desc__init(d);
    d->rank = rank;
    d->op = (uint32_t) op;
    d->color = color;
    if (op != MLXD__OP_TYPE__OP_SPLIT) {
        sc->shape[sc->na][0] = 6;
        d->n_shape = 1;
        d->shape = sc->shape[sc->na];
    }
    mlxd__ctl__arrive__init(a);
    a->group = group;
    a->seq = seq;
    a->desc = d;
    sc->na++;
    struct step *st = &sc->s[sc->n++];
    st->from = from;
    mlxd__ctl__ctl__init(&st->m);
    st->m.body_case = MLXD__CTL__CTL__BODY_ARRIVE;
    st->m.arrive = a;
}

static void sc_gone(struct scenario *sc, int from, uint64_t group) {
    Mlxd__Ctl__GroupGone *g = &sc->gone[sc->ng++];
    mlxd__ctl__group_gone__init(g);
    g->group = group;
    struct step *st = &sc->s[sc->n++];
    st->from = from;
    mlxd__ctl__ctl__init(&st->m);
    st->m.body_case = MLXD__CTL__CTL__BODY_GROUP_GONE;
    st->m.group_gone = g;
}

static void build_scenario(struct scenario *sc) {
    const uint64_t g = COORD_GROUP_BIT | 1, ga = COORD_GROUP_BIT | 2, gb = COORD_GROUP_BIT | 3;
    const int host[] = { 0, 1, 0, 1 };
    memset(sc, 0, sizeof *sc);
    // A job that times out, one that forms; a collective, a split, a
    // timeout, an abort, and the groups going away.
    sc_join(sc, 2, "lost", 3, 1);
    Mlxd__Ctl__Leave *l = &sc->leave[sc->nl++];
    mlxd__ctl__leave__init(l);
    l->job = "lost";
    l->rank = 1;
    l->timed_out = true;
    l->waited_ms = 2000;
    sc->s[sc->n].from = 2;
    mlxd__ctl__ctl__init(&sc->s[sc->n].m);
    sc->s[sc->n].m.body_case = MLXD__CTL__CTL__BODY_LEAVE;
    sc->s[sc->n++].m.leave = l;
    for (int r = 0; r < 4; r++)
        sc_join(sc, host[r], "j", 4, r);
    for (int r = 0; r < 4; r++)
        sc_arrive(sc, host[r], g, 0, r, MLXD__OP_TYPE__OP_ALL_SUM, 0);
    for (int r = 0; r < 4; r++)
        sc_arrive(sc, host[r], g, 1, r, MLXD__OP_TYPE__OP_SPLIT, r % 2);
    // The split makes ga (ranks 0, 2 on host 0) and gb (ranks 1, 3 on host
    // 1); g's next op times out.
    sc_arrive(sc, 0, g, 2, 0, MLXD__OP_TYPE__OP_ALL_SUM, 0);
    Mlxd__Ctl__Timeout *t = &sc->timeout[sc->nt++];
    mlxd__ctl__timeout__init(t);
    t->group = g;
    t->seq = 2;
    t->waited_ms = 100;
    sc->s[sc->n].from = 0;
    mlxd__ctl__ctl__init(&sc->s[sc->n].m);
    sc->s[sc->n].m.body_case = MLXD__CTL__CTL__BODY_TIMEOUT;
    sc->s[sc->n++].m.timeout = t;
    sc_arrive(sc, 1, g, 2, 1, MLXD__OP_TYPE__OP_ALL_SUM, 0);   // gets Abort
    // In gb, rank 1 leaves after one collective: it runs, and the
    // collectives after it break.
    sc_depart(sc, 1, gb, 1, 1);
    sc_arrive(sc, 1, gb, 0, 0, MLXD__OP_TYPE__OP_ALL_SUM, 0);
    sc_arrive(sc, 1, gb, 0, 1, MLXD__OP_TYPE__OP_ALL_SUM, 0);
    sc_depart(sc, 1, gb, 0, 1);
    Mlxd__Ctl__AbortReq *ab = &sc->abort_req[sc->nab++];
    mlxd__ctl__abort_req__init(ab);
    ab->group = ga;
    ab->code = MLXD_EPEER;
    ab->message = "gone";
    sc->s[sc->n].from = 0;
    mlxd__ctl__ctl__init(&sc->s[sc->n].m);
    sc->s[sc->n].m.body_case = MLXD__CTL__CTL__BODY_ABORT_REQ;
    sc->s[sc->n++].m.abort_req = ab;
    sc_gone(sc, 0, ga);
    sc_gone(sc, 1, gb);
    sc_gone(sc, 0, g);
    sc_gone(sc, 1, g);
    sc_join(sc, 3, "j", 1, 0);          // the id is free again
}

// Runs the scenario, failing the fail-th allocation (-1: none), retrying a
// step that failed; appends every message sent to log. Returns how many
// steps failed.
static int run_scenario(const struct scenario *sc, long fail, struct ctl_outbox *log) {
    struct coord *c = NULL;
    int failures = 0;
    alloc_countdown = fail;
    while (!(c = coord_new(WORLD)))
        failures++;
    for (int i = 0; i < sc->n; i++) {
        size_t before = log->n;
        const char *ignored = NULL;
        int r = coord_handle(c, sc->s[i].from, &sc->s[i].m, 0, log, &ignored);
        if (r < 0) {
            assert_int_equal(r, -ENOMEM);
            assert_int_equal(log->n, before);   // nothing half-sent
            failures++;
            r = coord_handle(c, sc->s[i].from, &sc->s[i].m, 0, log, &ignored);
        }
        assert_int_equal(r, 0);
        assert_null(ignored);
    }
    alloc_countdown = -1;
    int forming, groups;
    coord_counts(c, &forming, &groups);
    assert_int_equal(forming, 0);
    assert_int_equal(groups, 1);
    coord_free(c);
    return failures;
}

static void every_allocation_failure_leaves_state_intact(void **state) {
    if (!can_inject())
        skip();
    struct scenario *sc = malloc(sizeof *sc);
    assert_non_null(sc);
    build_scenario(sc);
    struct ctl_outbox want = { 0 }, got = { 0 };
    assert_int_equal(run_scenario(sc, -1, &want), 0);
    assert_true(want.n > 10);
    long fail = 0;
    for (;; fail++) {
        long live = alloc_live;
        int failures = run_scenario(sc, fail, &got);
        assert_int_equal(got.n, want.n);
        for (size_t i = 0; i < want.n; i++) {
            assert_int_equal(got.v[i].dest, want.v[i].dest);
            assert_int_equal(got.v[i].len, want.v[i].len);
            assert_memory_equal(got.v[i].buf, want.v[i].buf, want.v[i].len);
        }
        ctl_outbox_fini(&got);
        assert_int_equal(alloc_live, live);     // nothing leaked on the way
        if (failures == 0)
            break;
    }
    assert_true(fail > 20);             // the sweep did reach coord.c's allocations
    ctl_outbox_fini(&want);
    free(sc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(job_forms_when_last_rank_joins_across_two_hosts, setup, teardown),
        cmocka_unit_test_setup_teardown(single_rank_job_forms_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(depart_before_a_collective_breaks_it_on_every_host, setup, teardown),
        cmocka_unit_test_setup_teardown(depart_after_contributing_breaks_only_the_next_collective, setup, teardown),
        cmocka_unit_test_setup_teardown(depart_from_wrong_host_or_rank_is_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(duplicate_rank_gets_hello_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(size_disagreement_gets_hello_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(other_uid_is_denied, setup, teardown),
        cmocka_unit_test_setup_teardown(rank_outside_size_gets_hello_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(formed_job_id_cannot_be_joined_again, setup, teardown),
        cmocka_unit_test_setup_teardown(too_many_forming_jobs_get_enomem, setup, teardown),
        cmocka_unit_test_setup_teardown(timed_out_leave_names_missing_ranks, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_rank_list_is_cut_short, setup, teardown),
        cmocka_unit_test_setup_teardown(leave_after_form_is_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(leave_from_another_host_is_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(go_waits_for_every_member, setup, teardown),
        cmocka_unit_test_setup_teardown(go_goes_to_each_host_once_in_rank_order, setup, teardown),
        cmocka_unit_test_setup_teardown(disagreeing_dtype_gives_mismatch_go, setup, teardown),
        cmocka_unit_test_setup_teardown(sum_scatter_not_divisible_gives_einval_go, setup, teardown),
        cmocka_unit_test_setup_teardown(split_makes_groups_by_color_and_key, setup, teardown),
        cmocka_unit_test_setup_teardown(split_with_mixed_ops_gives_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(timeout_names_ranks_that_did_not_arrive, setup, teardown),
        cmocka_unit_test_setup_teardown(timeout_after_go_is_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(abort_is_relayed_once, setup, teardown),
        cmocka_unit_test_setup_teardown(abort_with_unknown_code_becomes_epeer, setup, teardown),
        cmocka_unit_test_setup_teardown(abort_or_timeout_from_outside_the_group_is_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(groups_are_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(arrive_on_aborted_group_gets_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(arrive_from_wrong_host_is_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(group_free_after_all_hosts_gone, setup, teardown),
        cmocka_unit_test_setup_teardown(garbage_fields_are_ignored_not_crashed, setup, teardown),
        cmocka_unit_test(every_allocation_failure_leaves_state_intact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
