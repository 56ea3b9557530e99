/* Private header of mlxctl. mlxctl.c parses the command line into one of the
 * option structs below and hands it to the module that runs the subcommand;
 * each *_run() returns the process's exit status. Nothing here is kept in
 * globals: every function gets what it needs as arguments. */
#ifndef MLXD_MLXCTL_H
#define MLXD_MLXCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

// Exit statuses, as the help text and DESIGN.md promise.
enum {
    MLXCTL_EXIT_OK = 0,
    MLXCTL_EXIT_FAILURE = 1,        // the command ran and failed
    MLXCTL_EXIT_USAGE = 2,          // the command line is wrong
};

// Room for an endpoint: an ipc path is at most WIRE_MAX_IPC_PATH (103) bytes,
// a tcp:// one a host name and a port.
#define MLXCTL_ENDPOINT_MAX 512

#define MLXCTL_STATUS_TIMEOUT_MS 5000
#define MLXCTL_WAIT_TIMEOUT_MS 10000

// Ranks `mlxctl launch` starts at most; each needs a process group and, with
// --prefix, two pipes.
#define MLXCTL_MAX_RANKS 1024

struct status_opts {
    char endpoint[MLXCTL_ENDPOINT_MAX];
    bool endpoint_given;            // --socket, not the default
    bool json;
    bool world;
    int timeout_ms;
    int watch_ms;                   // --watch: redraw every watch_ms until Ctrl-C; 0: once
};

#define MLXCTL_WATCH_DEFAULT_MS 2000

struct wait_opts {
    char endpoint[MLXCTL_ENDPOINT_MAX];
    bool endpoint_given;
    int timeout_ms;
};

// A host of --hosts or --hostfile: its name, as the rsh agent takes it, and
// how many ranks it runs.
struct launch_host {
    char *name;
    int slots;
};

struct launch_opts {
    int n;                          // ranks, 1..MLXCTL_MAX_RANKS
    const char *job;                // NULL: make a unique id
    char **daemons;                 // NULL or n_daemons endpoints, owned by the caller
    size_t n_daemons;
    char default_endpoint[MLXCTL_ENDPOINT_MAX];  // --socket or MLXD_SOCKET, without --daemons
    bool endpoint_given;            // --socket: remote ranks use it too
    bool prefix;                    // tag each output line with "[rank] "
    int timeout_ms;                 // 0: no limit
    bool allow_singleton;           // start even where no daemon answers
    int max_restarts;               // attempts after the first one
    struct launch_host *hosts;      // NULL: every rank runs here; else n_hosts, owned by the caller
    size_t n_hosts;
    char **rsh;                     // the agent's words (NULL-terminated), with hosts
    char **env;                     // --env K=V entries, n_env of them, owned by argv
    size_t n_env;
    const char *cwd;                // --cwd: where every rank runs; NULL: here (and there if it exists)
    const char *remote_host;        // internal --remote-rank HOST: the remote side of one rank
    char *const *argv;              // the command and its arguments, NULL-terminated
};

/* mlxctl.c */

// Writes the advice for an endpoint where no daemon answers, e.g. "start it
// with `mlxd` or `systemctl start mlxd`", to f (no newline).
void mlxctl_print_start_hint(FILE *f, const char *endpoint, bool endpoint_given);

/* status.c */

// `mlxctl status`: asks the daemon for its StatusReply and prints it.
int status_run(const struct status_opts *o);

// `mlxctl wait`: returns 0 once a daemon answers a Ping, 1 after the timeout.
int wait_run(const struct wait_opts *o);

/* status_print.c */

struct Mlxd__StatusReply;

// Prints a StatusReply as text laid out for 80 columns (endpoint: whom it
// came from, for "reported no daemons").
void status_print_text(FILE *f, const struct Mlxd__StatusReply *s, const char *endpoint);
// Prints it as one JSON object; ids are strings of 16 hex digits.
void status_print_json(FILE *f, const struct Mlxd__StatusReply *s);
// A copy of s fit for a terminal (control characters and invalid UTF-8 as
// '?'), to free; NULL when out of memory; NULL s gives "".
char *status_term_clean(const char *s);

/* launch.c */


// `mlxctl launch`: runs the job to its end, again after a failure while
// --max-restarts allows; returns the last attempt's first failing rank's
// status (128 + signal for a signal), 128 + the signal that interrupted
// mlxctl, 1 on a timeout, a launch failure or a missing daemon.
int launch_run(const struct launch_opts *o);

/* launch_hosts.c */

// Parses --hosts "H1[:S],H2[:S],..." (S defaults to 1) into a new array.
// Returns 0, or -EINVAL / -ENOMEM with the reason in err.
int launch_parse_hosts(const char *list, struct launch_host **ret_hosts, size_t *ret_n, char *err, size_t errsize);

// Reads a hostfile: "host [slots=S]" lines, # comments, blank lines.
// Returns 0, or a negative errno with the reason (file and line) in err.
int launch_read_hostfile(const char *path, struct launch_host **ret_hosts, size_t *ret_n, char *err,
                         size_t errsize);

// Frees what launch_parse_hosts() or launch_read_hostfile() made. NULL is fine.
void launch_hosts_free(struct launch_host *hosts, size_t n);

// The slots of every host together (capped at MLXCTL_MAX_RANKS + 1).
int launch_total_slots(const struct launch_host *hosts, size_t n);

// Splits --rsh "CMD [ARGS...]" at blanks into a new NULL-terminated array
// (one allocation: free it with free()). -EINVAL when it has no word.
int launch_split_rsh(const char *cmd, char ***ret_words);

// True when s is "NAME=VALUE" with NAME a shell variable name other than
// the MLXD_* variables launch sets itself.
bool launch_env_is_valid(const char *s);

// The host (index into o->hosts) of rank r: contiguous blocks of slots.
size_t launch_host_of_rank(const struct launch_opts *o, int rank);

// The shell command line that runs rank r on its host: it sets the rank's
// environment and the --env variables, changes to --cwd (or to here, when
// that exists there), and execs `SELF launch --remote-rank HOST ... -- CMD`
// (mlxctl from $PATH when SELF does not exist there). NULL without memory;
// free() it.
char *launch_remote_cmdline(const struct launch_opts *o, const char *self, const char *here, const char *job,
                            int rank, int attempt);

#endif
