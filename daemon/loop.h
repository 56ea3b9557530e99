/* The event loop: what other request sources plug into. */
#ifndef MLXD_LOOP_H
#define MLXD_LOOP_H

#include <stdbool.h>
#include <zmq.h>

#include "reply.h"
#include "wire.h"

struct server;

struct loop_state {
    int signal_pipe[2];             // the handlers write, the loop reads
    bool stopping;                  // a signal asked us to stop
};

// A loop that holds nothing yet.
#define LOOP_INIT ((struct loop_state) { .signal_pipe = { -1, -1 } })

// Handles one decoded request from peer p, exactly as if it had come in on
// the ZeroMQ front once the peer's credentials were checked: validates it
// against frames (its raw data frames, nframes of them; frames the request
// uses are moved out, the caller closes them all afterwards) and answers it,
// at once or later, through server_reply(p, ...), that is by p->transport.
// The caller keeps req and frees it afterwards. Loop thread only. Modules
// below the loop reach it through s->replies.on_request (reply.h).
void loop_request(struct server *s, const struct peer *p, const Mlxd__Request *req, zmq_msg_t *frames,
                  int nframes);

// The signal pipe and handlers (SIGTERM, SIGINT, SIGUSR2 stop; SIGHUP says
// where we are): the handlers only set a flag and wake the loop.
int loop_init_signals(struct server *s);
void loop_fini_signals(struct server *s);

// Runs until a signal stops the daemon. 0, or a negative errno when the
// loop itself failed (logged).
int loop_run(struct server *s);

#endif
