/* The metrics HTTP server (mlxd --metrics HOST:PORT): libmicrohttpd on a
 * thread of its own, serving GET /metrics from the last snapshot the event
 * loop published (404 for any other path). The HTTP thread never touches
 * the loop's state: it only copies the snapshot, under a mutex that the loop
 * holds just to swap in the next one. */
#ifndef MLXD_HTTP_H
#define MLXD_HTTP_H

#include <stddef.h>
#include <sys/socket.h>

struct http;

// The address of --metrics: "HOST:PORT" (HOST a name, an IPv4 address or
// "[IPv6]"), or "PORT" alone for 127.0.0.1; PORT 0 picks a free port.
// Returns 0, or -EINVAL with the reason in err.
int http_parse_addr(const char *s, struct sockaddr_storage *ret_addr, char *err, size_t errlen);

// Starts serving on addr (as http_parse_addr takes it). Logs the address
// it listens on, with the port it got. Returns 0 or -errno (logged).
int http_start(const char *addr, struct http **ret);

// Publishes text (malloc'ed, len bytes) as the next answer to GET /metrics;
// takes it. Thread-safe against the HTTP thread; call from the loop.
void http_publish(struct http *h, char *text, size_t len);

// Stops the server and frees it; NULL is fine. Returns NULL.
struct http *http_stop(struct http *h);

#endif
