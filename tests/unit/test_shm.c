/* libmlxd's shared memory (client/shm.c) against a fake daemon in a thread:
 * which pointers map to which (segment, offset), what a registration hands
 * over, what releases, refusals and a lost side channel do, the staging
 * segment's growth and the threshold. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "libmlxd_impl.h"

/* ---------- the fake daemon ---------- */

// Listens on the side channel of its own endpoint; answers registrations
// (with increasing ids per connection, as a daemon that restarted would) and
// records what it was sent. Commands come on a pipe and are acknowledged.
struct fake {
    char dir[64], endpoint[128];
    int lfd, cfd;
    int cmd[2], ack[2];
    pthread_t th;
    pthread_mutex_t lock;
    // under lock:
    int refuse;                 // answer registrations with this code (0: accept)
    uint32_t next_id;
    int registers, releases, connections;
    uint32_t released[64];
    int seals;
    uint64_t size;
    off_t file_size;
};

static void fake_message(struct fake *f) {
    struct wire_shm_msg m;
    union {
        char buf[CMSG_SPACE(4 * sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = { &m, sizeof m };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
    ssize_t n = recvmsg(f->cfd, &mh, MSG_CMSG_CLOEXEC);
    int fd = -1;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
        if (cm->cmsg_type == SCM_RIGHTS)
            memcpy(&fd, CMSG_DATA(cm), sizeof fd);
    if (n <= 0) {
        close(f->cfd);
        f->cfd = -1;
        return;
    }
    pthread_mutex_lock(&f->lock);
    if (m.type == WIRE_SHM_REGISTER) {
        struct stat st;
        struct wire_shm_msg r = { .magic = WIRE_SHM_MAGIC, .type = WIRE_SHM_REPLY };
        f->registers++;
        f->seals = fcntl(fd, F_GET_SEALS);
        f->size = m.size;
        f->file_size = fstat(fd, &st) == 0 ? st.st_size : -1;
        if (f->refuse) {
            r.code = f->refuse;
            snprintf(r.message, sizeof r.message, "over the fake cap");
        } else {
            r.segment = f->next_id++;
        }
        send(f->cfd, &r, sizeof r, MSG_NOSIGNAL);
    } else if (m.type == WIRE_SHM_RELEASE && f->releases < 64) {
        f->released[f->releases++] = m.segment;
    }
    pthread_mutex_unlock(&f->lock);
    if (fd >= 0)
        close(fd);
}

static void *fake_main(void *arg) {
    struct fake *f = arg;
    for (;;) {
        struct pollfd p[3] = { { f->cmd[0], POLLIN, 0 }, { f->lfd, POLLIN, 0 }, { f->cfd, POLLIN, 0 } };
        if (poll(p, f->cfd >= 0 ? 3 : 2, -1) < 0)
            continue;
        if (p[0].revents & POLLIN) {
            char c = 0;
            if (read(f->cmd[0], &c, 1) != 1 || c == 'q')
                break;
            if (c == 'd' && f->cfd >= 0) {   // drop the connection
                close(f->cfd);
                f->cfd = -1;
            }
            if (write(f->ack[1], &c, 1) != 1)
                break;
            continue;
        }
        if (p[1].revents & POLLIN) {
            int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0) {
                if (f->cfd >= 0)
                    close(f->cfd);
                f->cfd = fd;
                pthread_mutex_lock(&f->lock);
                f->connections++;
                f->next_id = 1;  // a new daemon numbers afresh
                pthread_mutex_unlock(&f->lock);
            }
            continue;
        }
        if (f->cfd >= 0 && (p[2].revents & (POLLIN | POLLHUP)))
            fake_message(f);
    }
    if (f->cfd >= 0)
        close(f->cfd);
    return NULL;
}

static struct fake *fake_start(void) {
    struct fake *f = calloc(1, sizeof *f);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(f->dir, sizeof f->dir, "/tmp/tshm.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->endpoint, sizeof f->endpoint, "ipc://%s/d.sock", f->dir);
    assert_int_equal(wire_shm_path(f->endpoint, sa.sun_path, sizeof sa.sun_path), 0);
    f->lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    assert_true(f->lfd >= 0);
    assert_int_equal(bind(f->lfd, (struct sockaddr *) &sa, sizeof sa), 0);
    assert_int_equal(listen(f->lfd, 8), 0);
    f->cfd = -1;
    f->next_id = 1;
    assert_int_equal(pipe(f->cmd), 0);
    assert_int_equal(pipe(f->ack), 0);
    pthread_mutex_init(&f->lock, NULL);
    pthread_create(&f->th, NULL, fake_main, f);
    return f;
}

// Runs a command in the fake's thread and waits until it is done.
static void fake_cmd(struct fake *f, char c) {
    char a;
    assert_int_equal(write(f->cmd[1], &c, 1), 1);
    assert_int_equal(read(f->ack[0], &a, 1), 1);
}

static void fake_stop(struct fake *f) {
    char c = 'q';
    char path[160];
    assert_int_equal(write(f->cmd[1], &c, 1), 1);
    pthread_join(f->th, NULL);
    close(f->lfd);
    snprintf(path, sizeof path, "%s/d.sock.shm", f->dir);
    unlink(path);
    rmdir(f->dir);
    free(f);
}

static int fake_get(struct fake *f, const int *field) {
    pthread_mutex_lock(&f->lock);
    int v = *field;
    pthread_mutex_unlock(&f->lock);
    return v;
}

// Waits (with a deadline) until the fake has recorded `want` releases.
static bool fake_wait_releases(struct fake *f, int want) {
    for (int i = 0; i < 500; i++) {
        if (fake_get(f, &f->releases) >= want)
            return true;
        usleep(2000);
    }
    return false;
}

static size_t page(void) {
    return (size_t) sysconf(_SC_PAGESIZE);
}

/* ---------- tests ---------- */

static void lookup_maps_pointers_inside_a_segment_only(void **state) {
    struct fake *f = fake_start();
    struct shm_seg *a, *b;
    struct shm_ref r;
    char err[LIB_ERR_MAX];
    assert_int_equal(shm_seg_new(f->endpoint, 3 * page() - 10, false, &a, err), 0);
    uint8_t *base = shm_seg_base(a);
    size_t size = shm_seg_size(a);
    assert_int_equal(size, 3 * page());

    assert_true(shm_lookup(f->endpoint, base, size, &r));
    assert_int_equal(r.segment, 1);
    assert_int_equal(r.offset, 0);
    assert_true(shm_lookup(f->endpoint, base + 100, size - 100, &r));
    assert_int_equal(r.offset, 100);
    assert_true(shm_lookup(f->endpoint, base + size - 1, 1, &r));
    assert_int_equal(r.offset, size - 1);
    assert_false(shm_lookup(f->endpoint, base + size - 1, 2, &r));   // one byte past the end
    assert_false(shm_lookup(f->endpoint, base + 100, size, &r));
    assert_false(shm_lookup(f->endpoint, base - 1, 1, &r));
    assert_false(shm_lookup(f->endpoint, base, 0, &r));              // nothing to share
    assert_false(shm_lookup("ipc:///elsewhere/d.sock", base, 8, &r)); // another daemon's group

    // Another segment, wherever the kernel maps it (maybe right beside a).
    assert_int_equal(shm_seg_new(f->endpoint, 1, false, &b, err), 0);
    uint8_t *bb = shm_seg_base(b);
    assert_true(shm_lookup(f->endpoint, bb + 8, 8, &r));
    assert_int_equal(r.segment, 2);
    assert_int_equal(r.offset, 8);
    assert_true(shm_lookup(f->endpoint, base, 8, &r));
    assert_int_equal(r.segment, 1);
    assert_false(shm_lookup(f->endpoint, bb + page() - 4, 8, &r));   // never across two segments
    assert_false(shm_lookup(f->endpoint, base + size - 4, 8, &r));
    int local = 0;
    assert_false(shm_lookup(f->endpoint, &local, sizeof local, &r));
    shm_seg_free(a);
    shm_seg_free(b);
    fake_stop(f);
}

static void segments_are_sealed_memfds_of_whole_pages(void **state) {
    struct fake *f = fake_start();
    struct shm_seg *s;
    char err[LIB_ERR_MAX];
    assert_int_equal(shm_seg_new(f->endpoint, page() + 1, false, &s, err), 0);
    pthread_mutex_lock(&f->lock);
    int seals = f->seals;
    uint64_t size = f->size;
    off_t file_size = f->file_size;
    pthread_mutex_unlock(&f->lock);
    assert_true(seals >= 0);
    assert_true(seals & F_SEAL_SHRINK);
    assert_true(seals & F_SEAL_GROW);
    assert_true(seals & F_SEAL_SEAL);
    assert_int_equal(size, 2 * page());
    assert_int_equal(file_size, 2 * page());
    // The mapping is shared and writable to its last byte.
    uint8_t *p = shm_seg_base(s);
    p[2 * page() - 1] = 7;
    assert_int_equal((uintptr_t) p % 64, 0);
    shm_seg_free(s);
    fake_stop(f);
}

static void free_releases_the_segment(void **state) {
    struct fake *f = fake_start();
    struct shm_seg *s, *staging;
    struct shm_ref r;
    char err[LIB_ERR_MAX];
    assert_int_equal(shm_seg_new(f->endpoint, 100, false, &s, err), 0);
    assert_int_equal(shm_seg_new(f->endpoint, 100, true, &staging, err), 0);
    uint8_t *base = shm_seg_base(s);
    assert_false(shm_free_base(base + 8));                 // not a base
    assert_false(shm_free_base(shm_seg_base(staging)));    // not mlxd_alloc memory
    assert_true(shm_free_base(base));
    assert_true(fake_wait_releases(f, 1));
    assert_int_equal(fake_get(f, (const int *) &f->released[0]), 1);
    assert_false(shm_lookup(f->endpoint, base, 8, &r));
    assert_false(shm_free_base(base));                     // only once
    shm_seg_free(staging);
    assert_true(fake_wait_releases(f, 2));
    assert_int_equal(fake_get(f, (const int *) &f->released[1]), 2);
    fake_stop(f);
}

static void refusal_gives_the_daemons_code_and_message(void **state) {
    struct fake *f = fake_start();
    struct shm_seg *s = NULL;
    char err[LIB_ERR_MAX] = "";
    pthread_mutex_lock(&f->lock);
    f->refuse = MLXD_ENOMEM;
    pthread_mutex_unlock(&f->lock);
    assert_int_equal(shm_seg_new(f->endpoint, 100, false, &s, err), MLXD_ENOMEM);
    assert_null(s);
    assert_string_equal(err, "over the fake cap");
    fake_stop(f);
}

static void no_side_channel_is_unavailable(void **state) {
    struct shm_seg *s = NULL;
    char err[LIB_ERR_MAX] = "";
    assert_int_equal(shm_seg_new("ipc:///nonexistent-dir/d.sock", 100, false, &s, err), MLXD_EUNAVAILABLE);
    assert_non_null(strstr(err, "/nonexistent-dir/d.sock.shm"));
    assert_int_equal(shm_seg_new("tcp://127.0.0.1:1", 100, false, &s, err), MLXD_EUNAVAILABLE);
    assert_non_null(strstr(err, "only ipc://"));
    assert_null(s);
}

static void lost_channel_invalidates_its_segments(void **state) {
    struct fake *f = fake_start();
    struct shm_seg *a, *b;
    struct shm_ref r;
    char err[LIB_ERR_MAX];
    assert_int_equal(shm_seg_new(f->endpoint, 100, false, &a, err), 0);
    assert_true(shm_seg_ref(a, 0, &r));
    fake_cmd(f, 'd');
    // A daemon that restarted numbers from 1 again: the old segment must
    // never be named, nor released on the new connection.
    shm_refresh(f->endpoint);
    assert_false(shm_lookup(f->endpoint, shm_seg_base(a), 8, &r));
    assert_false(shm_seg_ref(a, 0, &r));
    assert_int_equal(shm_seg_new(f->endpoint, 100, false, &b, err), 0);
    assert_int_equal(fake_get(f, &f->connections), 2);
    assert_true(shm_lookup(f->endpoint, shm_seg_base(b), 8, &r));
    assert_int_equal(r.segment, 1);
    assert_false(shm_lookup(f->endpoint, shm_seg_base(a), 8, &r));
    int before = fake_get(f, &f->releases);
    shm_seg_free(a);
    shm_seg_free(b);
    assert_true(fake_wait_releases(f, before + 1));
    usleep(20000);
    assert_int_equal(fake_get(f, &f->releases), before + 1);  // b's only
    fake_stop(f);
}

static void lost_channel_is_reconnected_on_registration(void **state) {
    struct fake *f = fake_start();
    struct shm_seg *a, *b;
    char err[LIB_ERR_MAX];
    assert_int_equal(shm_seg_new(f->endpoint, 100, false, &a, err), 0);
    fake_cmd(f, 'd');
    assert_int_equal(shm_seg_new(f->endpoint, 100, false, &b, err), 0);
    assert_int_equal(fake_get(f, &f->connections), 2);
    shm_seg_free(a);
    shm_seg_free(b);
    fake_stop(f);
}

static void threshold_comes_from_the_environment(void **state) {
    unsetenv("MLXD_SHM_THRESHOLD");
    assert_int_equal(shm_threshold(), LIB_SHM_THRESHOLD_DEFAULT);
    setenv("MLXD_SHM_THRESHOLD", "0", 1);
    assert_int_equal(shm_threshold(), 0);
    setenv("MLXD_SHM_THRESHOLD", "65536", 1);
    assert_int_equal(shm_threshold(), 65536);
    setenv("MLXD_SHM_THRESHOLD", "64k", 1);
    assert_int_equal(shm_threshold(), LIB_SHM_THRESHOLD_DEFAULT);
    setenv("MLXD_SHM_THRESHOLD", "-1", 1);
    assert_int_equal(shm_threshold(), LIB_SHM_THRESHOLD_DEFAULT);
    setenv("MLXD_SHM_THRESHOLD", "", 1);
    assert_int_equal(shm_threshold(), LIB_SHM_THRESHOLD_DEFAULT);
    unsetenv("MLXD_SHM_THRESHOLD");
}

static void staging_grows_and_is_reused(void **state) {
    struct fake *f = fake_start();
    struct staging st = { 0 };
    uint8_t *p1 = shm_staging_reserve(&st, f->endpoint, 1000);
    assert_non_null(p1);
    assert_ptr_equal(shm_staging_reserve(&st, f->endpoint, 500), p1);
    assert_ptr_equal(shm_staging_reserve(&st, f->endpoint, page()), p1);
    assert_int_equal(fake_get(f, &f->registers), 1);
    uint8_t *p2 = shm_staging_reserve(&st, f->endpoint, 5 * page());
    assert_non_null(p2);
    p2[5 * page() - 1] = 1;
    assert_int_equal(fake_get(f, &f->registers), 2);
    assert_true(fake_wait_releases(f, 1));   // the small one went first
    shm_staging_free(&st);
    assert_null(st.seg);
    assert_true(fake_wait_releases(f, 2));
    fake_stop(f);
}

static void staging_refused_is_not_asked_again_at_once(void **state) {
    struct fake *f = fake_start();
    struct staging st = { 0 };
    pthread_mutex_lock(&f->lock);
    f->refuse = MLXD_ENOMEM;
    pthread_mutex_unlock(&f->lock);
    assert_null(shm_staging_reserve(&st, f->endpoint, 8 * page()));
    assert_null(shm_staging_reserve(&st, f->endpoint, 8 * page()));
    assert_null(shm_staging_reserve(&st, f->endpoint, 9 * page()));
    assert_int_equal(fake_get(f, &f->registers), 1);
    pthread_mutex_lock(&f->lock);
    f->refuse = 0;
    pthread_mutex_unlock(&f->lock);
    // A smaller one may fit: asked at once.
    assert_non_null(shm_staging_reserve(&st, f->endpoint, page()));
    assert_int_equal(fake_get(f, &f->registers), 2);
    shm_staging_free(&st);
    fake_stop(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lookup_maps_pointers_inside_a_segment_only),
        cmocka_unit_test(segments_are_sealed_memfds_of_whole_pages),
        cmocka_unit_test(free_releases_the_segment),
        cmocka_unit_test(refusal_gives_the_daemons_code_and_message),
        cmocka_unit_test(no_side_channel_is_unavailable),
        cmocka_unit_test(lost_channel_invalidates_its_segments),
        cmocka_unit_test(lost_channel_is_reconnected_on_registration),
        cmocka_unit_test(threshold_comes_from_the_environment),
        cmocka_unit_test(staging_grows_and_is_reused),
        cmocka_unit_test(staging_refused_is_not_asked_again_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
