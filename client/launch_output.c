/* The output of `mlxctl launch --prefix`: each rank's stdout and stderr come
 * through a pipe of their own and are passed on line by line, each line
 * starting with "[rank] ", so that lines of different ranks never mix. A line
 * longer than LAUNCH_LINE_CAP goes out in pieces; a reader that went away
 * makes the output to it dropped, never blocks the ranks. */
#include "launch.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

// Writes all of iov to fd; false when fd is gone (then output to it is
// dropped, so that ranks never block on a reader that left).
static bool write_all(int fd, struct iovec *iov, int n) {
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                struct pollfd p = { .fd = fd, .events = POLLOUT };
                poll(&p, 1, -1);
                continue;
            }
            return false;
        }
        while (n > 0 && (size_t) w >= iov->iov_len) {
            w -= (ssize_t) iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *) iov->iov_base + w;
            iov->iov_len -= (size_t) w;
        }
    }
    return true;
}

// Emits len bytes of s's line, starting with the prefix unless this line
// already started, ending with a newline when end_line.
static void emit(struct output *out, int rank, struct stream *s, const char *data, size_t len, bool end_line) {
    char prefix[32];
    struct iovec iov[3];
    int n = 0;
    if (!s->midline) {
        int p = snprintf(prefix, sizeof prefix, "[%d] ", rank);
        iov[n++] = (struct iovec) { prefix, (size_t) p };
    }
    if (len)
        iov[n++] = (struct iovec) { (void *) data, len };
    if (end_line)
        iov[n++] = (struct iovec) { "\n", 1 };
    s->midline = !end_line;
    if (!out->broken[s->out] && !write_all(s->out, iov, n))
        out->broken[s->out] = true;
}

// Passes on every complete line in s's buffer; a full buffer without a
// newline goes out as a piece of a line.
static void flush_lines(struct output *out, int rank, struct stream *s) {
    size_t start = 0;
    for (;;) {
        char *nl = memchr(s->buf + start, '\n', s->len - start);
        if (!nl)
            break;
        size_t end = (size_t) (nl - s->buf);
        emit(out, rank, s, s->buf + start, end - start, true);
        start = end + 1;
    }
    memmove(s->buf, s->buf + start, s->len - start);
    s->len -= start;
    if (s->len == LAUNCH_LINE_CAP) {
        emit(out, rank, s, s->buf, s->len, false);
        s->len = 0;
    }
}

void launch_stream_close(struct output *out, int rank, struct stream *s) {
    if (s->fd < 0)
        return;
    // A last line without its newline still gets one, so that the next
    // rank's line starts on a line of its own.
    if (s->len > 0 || s->midline)
        emit(out, rank, s, s->buf, s->len, true);
    s->len = 0;
    close(s->fd);
    s->fd = -1;
}

bool launch_stream_read(struct output *out, int rank, struct stream *s) {
    if (s->fd < 0)
        return false;
    ssize_t r = read(s->fd, s->buf + s->len, LAUNCH_LINE_CAP - s->len);
    if (r < 0 && errno == EINTR)
        return true;
    if (r < 0 && errno == EAGAIN)
        return false;
    if (r <= 0) {
        launch_stream_close(out, rank, s);
        return false;
    }
    s->len += (size_t) r;
    flush_lines(out, rank, s);
    return true;
}
