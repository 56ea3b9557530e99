/* Private header of mlxctl launch's files (launch.c, launch_output.c):
 * the ranks' output under --prefix. */
#ifndef MLXD_LAUNCH_H
#define MLXD_LAUNCH_H

#include <stdbool.h>
#include <stddef.h>

// Longest line --prefix holds back; a longer one is passed on in pieces.
#define LAUNCH_LINE_CAP (64 * 1024)

// One output stream of a rank under --prefix.
struct stream {
    int fd;                         // read end of the rank's pipe; -1 once closed
    int out;                        // where its lines go: 1 or 2
    char *buf;                      // LAUNCH_LINE_CAP bytes, the line so far; owned by the caller
    size_t len;
    bool midline;                   // a piece of this line went out already
};

// Where the lines go: by fd (1, 2), whether a write failed (then output to
// that fd is dropped).
struct output {
    bool broken[3];
};

/* launch_output.c */

// Reads what s's pipe holds (it is nonblocking) and passes on its complete
// lines; closes it at its end. Returns true when there may be more.
bool launch_stream_read(struct output *out, int rank, struct stream *s);

// Passes on what is left of s's line (ending it) and closes the pipe.
// Closed already is fine.
void launch_stream_close(struct output *out, int rank, struct stream *s);

#endif
