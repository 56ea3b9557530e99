#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

// Enforced on what scrapers may hold: connections at once, and how long an
// idle one may stay.
#define HTTP_MAX_CONNECTIONS 16
#define HTTP_CONNECTION_TIMEOUT_S 10

struct http {
    struct MHD_Daemon *daemon;
    pthread_mutex_t lock;           // guards text and len
    char *text;                     // the published snapshot, or NULL
    size_t len;
};

int http_parse_addr(const char *s, struct sockaddr_storage *ret_addr, char *err, size_t errlen) {
    char host[256];
    const char *port;
    const char *colon = strrchr(s, ':');

    if (!colon) {
        snprintf(host, sizeof host, "127.0.0.1");
        port = s;
    } else if (s[0] == '[') {
        // [IPv6]:PORT
        const char *close = strchr(s, ']');
        if (!close || close + 1 != colon || (size_t) (close - s - 1) >= sizeof host) {
            snprintf(err, errlen, "'%s' is not HOST:PORT (an IPv6 address goes in brackets: [::1]:9464)", s);
            return -EINVAL;
        }
        memcpy(host, s + 1, (size_t) (close - s - 1));
        host[close - s - 1] = '\0';
        port = colon + 1;
    } else {
        if ((size_t) (colon - s) >= sizeof host || memchr(s, ':', (size_t) (colon - s))) {
            snprintf(err, errlen, "'%s' is not HOST:PORT (an IPv6 address goes in brackets: [::1]:9464)", s);
            return -EINVAL;
        }
        memcpy(host, s, (size_t) (colon - s));
        host[colon - s] = '\0';
        port = colon + 1;
    }
    if (!*host) {
        snprintf(err, errlen, "'%s' has no host: give 127.0.0.1:PORT, or 0.0.0.0:PORT to listen on every address", s);
        return -EINVAL;
    }
    char *end;
    errno = 0;
    long p = strtol(port, &end, 10);
    if (!*port || *end || errno || p < 0 || p > 65535 || port[0] == '-' || port[0] == '+') {
        snprintf(err, errlen, "'%s' has no port from 0 to 65535 after the last ':'", s);
        return -EINVAL;
    }
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
    struct addrinfo *res = NULL;
    int r = getaddrinfo(host, port, &hints, &res);
    if (r != 0 || !res) {
        snprintf(err, errlen, "cannot resolve the host of '%s': %s", s, r ? gai_strerror(r) : "no address");
        return -EINVAL;
    }
    struct sockaddr_storage a = { 0 };
    memcpy(&a, res->ai_addr, res->ai_addrlen < sizeof a ? res->ai_addrlen : sizeof a);
    freeaddrinfo(res);
    *ret_addr = a;
    return 0;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_data_size,
                              void **con_cls) {
    struct http *h = cls;
    struct MHD_Response *resp;
    unsigned status;
    static const char not_found[] = "Not found: mlxd serves /metrics\n";
    static const char not_allowed[] = "Only GET and HEAD\n";

    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        status = MHD_HTTP_METHOD_NOT_ALLOWED;
        resp = MHD_create_response_from_buffer(sizeof not_allowed - 1, (void *) not_allowed, MHD_RESPMEM_PERSISTENT);
        if (resp)
            MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    } else if (strcmp(url, "/metrics") != 0) {
        status = MHD_HTTP_NOT_FOUND;
        resp = MHD_create_response_from_buffer(sizeof not_found - 1, (void *) not_found, MHD_RESPMEM_PERSISTENT);
    } else {
        status = MHD_HTTP_OK;
        pthread_mutex_lock(&h->lock);
        resp = MHD_create_response_from_buffer(h->text ? h->len : 0, h->text ? h->text : (void *) "",
                                               MHD_RESPMEM_MUST_COPY);
        pthread_mutex_unlock(&h->lock);
        if (resp)
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
    }
    if (!resp)
        return MHD_NO;
    enum MHD_Result r = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return r;
}

int http_start(const char *addr, struct http **ret) {
    struct sockaddr_storage sa;
    char err[512], shown[INET6_ADDRSTRLEN] = "?";
    if (http_parse_addr(addr, &sa, err, sizeof err) < 0)
        return log_errno(LOG_ERR, -EINVAL, "--metrics: %s", err);
    struct http *h = calloc(1, sizeof *h);
    if (!h)
        return log_errno(LOG_ERR, -ENOMEM, "Out of memory starting the metrics server");
    pthread_mutex_init(&h->lock, NULL);
    unsigned flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
    if (sa.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    h->daemon = MHD_start_daemon(flags, 0, NULL, NULL, answer, h,
                                 MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &sa,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned) HTTP_MAX_CONNECTIONS,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) HTTP_CONNECTION_TIMEOUT_S,
                                 MHD_OPTION_END);
    if (!h->daemon) {
        int r = errno ? -errno : -EADDRNOTAVAIL;
        http_stop(h);
        return log_errno(LOG_ERR, r, "Failed to serve metrics on %s: %m", addr);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    unsigned port = info ? info->port : 0;
    if (sa.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *) &sa)->sin6_addr, shown, sizeof shown);
    else
        inet_ntop(AF_INET, &((struct sockaddr_in *) &sa)->sin_addr, shown, sizeof shown);
    log_notice(sa.ss_family == AF_INET6 ? "Serving metrics on http://[%s]:%u/metrics" : "Serving metrics on http://%s:%u/metrics",
               shown, port);
    *ret = h;
    return 0;
}

void http_publish(struct http *h, char *text, size_t len) {
    if (!h) {
        free(text);
        return;
    }
    pthread_mutex_lock(&h->lock);
    char *old = h->text;
    h->text = text;
    h->len = len;
    pthread_mutex_unlock(&h->lock);
    free(old);
}

struct http *http_stop(struct http *h) {
    if (!h)
        return NULL;
    if (h->daemon)
        MHD_stop_daemon(h->daemon);
    pthread_mutex_destroy(&h->lock);
    free(h->text);
    free(h);
    return NULL;
}
