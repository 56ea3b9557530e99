/* The watch (world.h): a thread of its own that keeps a CURVE connection with
 * heartbeats to every other daemon, and watches the engine for a step that
 * does not return. */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "wire.h"
#include "world_int.h"

/* ---- the watch ---- */

// What one daemon tells the others at start-up, over MPI: where its watch
// listens and the CURVE public key that proves it is that daemon.
struct watch_card {
    char endpoint[64];              // empty: it has no watch
    char key[41];
};

// Whether a (host order) is in the subnet "a.b.c.d/n".
static bool in_subnet(uint32_t a, const char *cidr) {
    char net[32];
    int bits = 32;
    const char *slash = strchr(cidr, '/');
    size_t len = slash ? (size_t) (slash - cidr) : strlen(cidr);
    if (len >= sizeof net)
        return false;
    memcpy(net, cidr, len);
    net[len] = '\0';
    if (slash)
        bits = atoi(slash + 1);
    struct in_addr n;
    if (inet_pton(AF_INET, net, &n) != 1 || bits < 0 || bits > 32)
        return false;
    uint32_t mask = bits == 0 ? 0 : ~UINT32_C(0) << (32 - bits);
    return (a & mask) == (ntohl(n.s_addr) & mask);
}

// The address the watch binds: loopback when the whole world is on this
// machine (its daemons share a host name); else this host's first IPv4
// address in what Open MPI's TCP transport was told to use (the subnets or
// interface names of OMPI_MCA_btl_tcp_if_include), else on the first
// interface up that is not loopback, as Open MPI would pick.
static int watch_address(const struct world *w, char *buf, size_t size) {
    bool one_machine = true;
    for (int r = 1; r < w->size; r++)
        one_machine &= strcmp(w->hosts[r], w->hosts[0]) == 0;
    if (one_machine) {
        snprintf(buf, size, "127.0.0.1");
        return 0;
    }
    const char *include = getenv("OMPI_MCA_btl_tcp_if_include");
    struct ifaddrs *ifs, *i;
    if (getifaddrs(&ifs) < 0)
        return -errno;
    int r = -EADDRNOTAVAIL;
    for (i = ifs; i && r < 0; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_UP))
            continue;
        uint32_t a = ntohl(((struct sockaddr_in *) i->ifa_addr)->sin_addr.s_addr);
        bool ok = false;
        if (include && *include) {
            char list[256], *save = NULL;
            snprintf(list, sizeof list, "%s", include);
            for (char *t = strtok_r(list, ",", &save); t && !ok; t = strtok_r(NULL, ",", &save))
                ok = strchr(t, '.') ? in_subnet(a, t) : strcmp(t, i->ifa_name) == 0;
        } else {
            ok = !(i->ifa_flags & IFF_LOOPBACK);
        }
        if (ok && inet_ntop(AF_INET, &((struct sockaddr_in *) i->ifa_addr)->sin_addr, buf, (socklen_t) size))
            r = 0;
    }
    freeifaddrs(ifs);
    return r;
}

static void watch_emit(struct world *w, enum world_watch_type type, int rank, uint64_t stuck_ms, const char *why) {
    struct world_watch_event ev = { .type = type, .rank = rank, .stuck_ms = stuck_ms };
    snprintf(ev.why, sizeof ev.why, "%s", why);
    zmq_send(w->watch_end, &ev, sizeof ev, ZMQ_DONTWAIT);
}

// Binds the watch's listener, tells every daemon where it is and its key
// (a collective: every rank takes part, with an empty card if it could not
// bind), and connects to every other daemon's. A daemon without a watch
// still serves; it only learns of lost hosts later, through MPI.
int watch_setup(struct world *w) {
    struct watch_card mine = { 0 }, *cards = calloc((size_t) w->size, sizeof *cards);
    char secret[41], addr[64], ep[128];
    int one = 1, zero = 0, ivl = (int) w->silence_ms / 4, timeout = (int) w->silence_ms, reconnect = 200;
    size_t len = sizeof mine.endpoint;
    if (!cards)
        return -ENOMEM;
    int r = watch_address(w, addr, sizeof addr);
    if (r < 0)
        log_warning("The watch of lost hosts is off: no address of this host to bind it to (%s)", strerror(-r));
    else if (zmq_curve_keypair(mine.key, secret) < 0 || !(w->watch_router = zmq_socket(w->zctx, ZMQ_ROUTER)) ||
             zmq_setsockopt(w->watch_router, ZMQ_CURVE_SERVER, &one, sizeof one) < 0 ||
             zmq_setsockopt(w->watch_router, ZMQ_CURVE_SECRETKEY, secret, 40) < 0 ||
             zmq_setsockopt(w->watch_router, ZMQ_LINGER, &zero, sizeof zero) < 0 ||
             (snprintf(ep, sizeof ep, "tcp://%s:*", addr), zmq_bind(w->watch_router, ep)) < 0 ||
             zmq_getsockopt(w->watch_router, ZMQ_LAST_ENDPOINT, mine.endpoint, &len) < 0) {
        log_warning("The watch of lost hosts is off: cannot listen on %s: %s", addr, zmq_strerror(zmq_errno()));
        mine.endpoint[0] = '\0';
    }
    if (MPI_Allgather(&mine, sizeof mine, MPI_BYTE, cards, sizeof mine, MPI_BYTE, MPI_COMM_WORLD) != MPI_SUCCESS) {
        free(cards);
        return -EIO;
    }
    w->watch_dealers = calloc((size_t) w->size, sizeof *w->watch_dealers);
    w->watch_monitors = calloc((size_t) w->size, sizeof *w->watch_monitors);
    if (!w->watch_dealers || !w->watch_monitors) {
        free(cards);
        return -ENOMEM;
    }
    for (int p = 0; p < w->size && mine.endpoint[0]; p++) {
        cards[p].endpoint[sizeof cards[p].endpoint - 1] = cards[p].key[40] = '\0';
        if (p == w->rank || !cards[p].endpoint[0])
            continue;
        char id[16], mon[64];
        void *d = zmq_socket(w->zctx, ZMQ_DEALER), *m = zmq_socket(w->zctx, ZMQ_PAIR);
        snprintf(id, sizeof id, "%d", w->rank);
        snprintf(mon, sizeof mon, "inproc://mlxd-watch-%p-%d", (void *) w, p);
        if (!d || !m || zmq_setsockopt(d, ZMQ_CURVE_SERVERKEY, cards[p].key, 40) < 0 ||
            zmq_setsockopt(d, ZMQ_CURVE_PUBLICKEY, mine.key, 40) < 0 ||
            zmq_setsockopt(d, ZMQ_CURVE_SECRETKEY, secret, 40) < 0 ||
            zmq_setsockopt(d, ZMQ_ROUTING_ID, id, strlen(id)) < 0 ||
            zmq_setsockopt(d, ZMQ_HEARTBEAT_IVL, &ivl, sizeof ivl) < 0 ||
            zmq_setsockopt(d, ZMQ_HEARTBEAT_TIMEOUT, &timeout, sizeof timeout) < 0 ||
            zmq_setsockopt(d, ZMQ_RECONNECT_IVL, &reconnect, sizeof reconnect) < 0 ||
            zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero) < 0 ||
            zmq_socket_monitor(d, mon, ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED) < 0 ||
            zmq_connect(m, mon) < 0 || zmq_connect(d, cards[p].endpoint) < 0) {
            log_warning("The watch cannot reach world rank %d at %s: %s", p, cards[p].endpoint, zmq_strerror(zmq_errno()));
            if (d)
                zmq_close(d);
            if (m)
                zmq_close(m);
            continue;
        }
        w->watch_dealers[p] = d;
        w->watch_monitors[p] = m;
    }
    explicit_bzero(secret, sizeof secret);
    free(cards);
    if (mine.endpoint[0])
        log_debug("The watch listens on %s", mine.endpoint);
    return 0;
}

// A daemon that stops says so first ("bye" from its link to us): its
// connection closing then is no lost host.
static void watch_read_byes(struct world *w, bool *bye) {
    char id[16], body[8];
    int k;
    while (w->watch_router && (k = zmq_recv(w->watch_router, id, sizeof id - 1, ZMQ_DONTWAIT)) > 0) {
        int more = 0;
        size_t len = sizeof more;
        zmq_getsockopt(w->watch_router, ZMQ_RCVMORE, &more, &len);
        int b = more ? zmq_recv(w->watch_router, body, sizeof body - 1, 0) : -1;
        id[k < (int) sizeof id - 1 ? k : (int) sizeof id - 1] = '\0';
        int p = atoi(id);
        if (b == 3 && memcmp(body, "bye", 3) == 0 && p >= 0 && p < w->size)
            bye[p] = true;
    }
}

// One connection event of the watch's link to rank p.
static void watch_link_event(struct world *w, int p, bool *up, bool *lost, bool *bye) {
    zmq_msg_t m;
    uint16_t ev = 0;
    zmq_msg_init(&m);
    while (zmq_msg_recv(&m, w->watch_monitors[p], ZMQ_DONTWAIT) >= 0) {
        if (zmq_msg_size(&m) >= sizeof ev)
            memcpy(&ev, zmq_msg_data(&m), sizeof ev);
        while (zmq_msg_more(&m))
            zmq_msg_recv(&m, w->watch_monitors[p], 0);
        if (ev == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
            up[p] = true;
            if (lost[p]) {
                lost[p] = false;
                watch_emit(w, WORLD_HOST_BACK, p, 0, "it answers again");
            }
        } else if (ev == ZMQ_EVENT_DISCONNECTED && up[p]) {
            up[p] = false;
            watch_read_byes(w, bye);
            if (!lost[p] && !bye[p]) {
                lost[p] = true;
                char why[128];
                snprintf(why, sizeof why, "its daemon closed the connection, or it was silent for %.1f s",
                         w->silence_ms / 1000.0);
                watch_emit(w, WORLD_HOST_LOST, p, 0, why);
            }
        }
    }
    zmq_msg_close(&m);
}

void *watch_main(void *arg) {
    struct world *w = arg;
    int n = 0, *rank_of = calloc((size_t) w->size + 2, sizeof *rank_of);
    zmq_pollitem_t *items = calloc((size_t) w->size + 2, sizeof *items);
    bool *up = calloc((size_t) w->size, sizeof *up), *lost = calloc((size_t) w->size, sizeof *lost);
    bool *bye = calloc((size_t) w->size, sizeof *bye), wedged = false;
    if (!rank_of || !items || !up || !lost || !bye) {
        log_error("Out of memory starting the watch of lost hosts");
        goto out;
    }
    items[n++] = (zmq_pollitem_t) { .socket = w->watch_end, .events = ZMQ_POLLIN };
    if (w->watch_router)
        items[n++] = (zmq_pollitem_t) { .socket = w->watch_router, .events = ZMQ_POLLIN };
    for (int p = 0; p < w->size; p++)
        if (w->watch_monitors[p]) {
            rank_of[n] = p;
            items[n++] = (zmq_pollitem_t) { .socket = w->watch_monitors[p], .events = ZMQ_POLLIN };
        }
    for (;;) {
        // Link events wake it; the stall check needs no more than 2 a second.
        if (zmq_poll(items, n, 500) < 0 && zmq_errno() != EINTR)
            break;
        if (items[0].revents & ZMQ_POLLIN)
            break;                  // the loop says stop
        if (w->watch_router && (items[1].revents & ZMQ_POLLIN))
            watch_read_byes(w, bye);
        for (int i = 1 + (w->watch_router != NULL); i < n; i++)
            if (items[i].revents & ZMQ_POLLIN)
                watch_link_event(w, rank_of[i], up, lost, bye);
        uint64_t since = atomic_load(&w->busy_since_us), now = wire_now_us();
        if (since && now > since && now - since > w->stall_us && !wedged) {
            wedged = true;
            watch_emit(w, WORLD_WEDGED, w->rank, (now - since) / 1000, "one step of the MPI engine has not returned");
        }
    }
out:
    free(rank_of);
    free(items);
    free(up);
    free(lost);
    free(bye);
    watch_close(w);
    return NULL;
}

// Closes the watch's sockets: goodbyes first, a little time for them to
// leave, then the listener.
void watch_close(struct world *w) {
    for (int p = 0; w->watch_dealers && p < w->size; p++)
        if (w->watch_dealers[p]) {
            int linger = 200;
            zmq_setsockopt(w->watch_dealers[p], ZMQ_LINGER, &linger, sizeof linger);
            zmq_send(w->watch_dealers[p], "bye", 3, ZMQ_DONTWAIT);
            zmq_close(w->watch_dealers[p]);
        }
    if (w->watch_router) {
        struct timespec ts = { 0, 100 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    for (int p = 0; w->watch_monitors && p < w->size; p++)
        if (w->watch_monitors[p])
            zmq_close(w->watch_monitors[p]);
    if (w->watch_router)
        zmq_close(w->watch_router);
    w->watch_router = NULL;
    free(w->watch_dealers);
    free(w->watch_monitors);
    w->watch_dealers = w->watch_monitors = NULL;
}
