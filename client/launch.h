/* Private header of mlxctl launch's files: the launcher and its ranks
 * (launch.c runs them, launch_spawn.c starts each), and the ranks' output
 * under --prefix (launch_output.c). */
#ifndef MLXD_LAUNCH_H
#define MLXD_LAUNCH_H

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "mlxctl.h"
#include "wire.h"

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

// The signals that stop a launch (and are passed on to the ranks).
#define LAUNCH_N_STOPPING 4
extern const int launch_stopping[LAUNCH_N_STOPPING];

struct rank {
    pid_t pid;                      // also its process group; 0 if never started
    bool running;                   // started and not yet reaped
    bool group_gone;                // nothing is left in its process group
    int host;                       // index into o->hosts; -1 for a rank here
    int link;                       // a remote rank's agent's stdin (write end): closing it stops the rank; -1
    struct stream streams[2];       // stdout, stderr
};

enum phase {
    PHASE_RUN,                      // ranks run
    PHASE_STOP,                     // a rank failed, the timeout passed or mlxctl was interrupted
    PHASE_SWEEP,                    // every rank exited: leftovers in their groups get SIGTERM
};

// One launch: its options, its ranks and where the current attempt is.
struct launcher {
    const struct launch_opts *o;
    char job[WIRE_JOB_ID_MAX + 1];
    int attempt;                    // 0, 1, ... as MLXD_ATTEMPT says
    struct rank *ranks;
    int running;                    // ranks not yet reaped
    int sigfd;
    sigset_t blocked, oldmask;
    struct sigaction old_sigpipe;
    struct rlimit old_nofile;       // restored in the ranks when raised here
    bool nofile_raised;
    struct output out;              // where the output of --prefix goes
    char self[PATH_MAX];            // this mlxctl, for remote command lines ("" if unknown)
    char here[PATH_MAX];            // the working directory ("" if unknown)
    char **agent_env;               // the agents' environment: ours without MLXD_*
    bool watch_stdin;               // the remote side: EOF on fd 0 stops the rank

    enum phase phase;
    // This attempt:
    int exit_status;                // the first failure's, 0 while none
    bool failed;
    char failure[PATH_MAX];         // what it was: "rank 2 exited with code 1"
    bool failure_told;              // already printed
    uint64_t stop_at;               // wire_now_us() of the stop, 0 while running
    size_t stop_step;               // the next stop_steps[] entry
    uint64_t kill_at;               // the sweep's SIGKILL
    uint64_t give_up_at;
    // The whole launch:
    int interrupted;                // the signal that stopped mlxctl, 0 if none
    int stopped;                    // ranks that were running then
    bool timed_out;
    bool no_restart;                // interrupted while stopping: no further attempt
    uint64_t timeout_at;            // wire_now_us() deadline of --timeout, 0 when unset
};

/* launch.c */

// The daemon of a rank: contiguous blocks over --daemons, the first
// n % daemons blocks one rank larger (5 ranks on 3 daemons: 2, 2, 1).
const char *launch_rank_endpoint(const struct launch_opts *o, int rank);

/* launch_spawn.c */

// Starts rank i: the command here, or the agent for a remote rank. Returns
// 0, or (after saying why) the exit status for a rank that could not be
// started: 127 when CMD is not found, 126 when it cannot be executed, 1 when
// mlxctl ran out of processes, files or memory or --cwd does not exist.
int launch_spawn(struct launcher *l, int i, bool stdin_to_rank0);

/* launch_output.c */

// Reads what s's pipe holds (it is nonblocking) and passes on its complete
// lines; closes it at its end. Returns true when there may be more.
bool launch_stream_read(struct output *out, int rank, struct stream *s);

// Passes on what is left of s's line (ending it) and closes the pipe.
// Closed already is fine.
void launch_stream_close(struct output *out, int rank, struct stream *s);

#endif
