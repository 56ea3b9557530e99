/* mlxctl: the command-line tool of mlxd. This file owns the command line:
 * main(), option parsing for every subcommand, the help texts and usage
 * errors. The work is done by status.c (status, wait) and launch.c (launch). */
#include "mlxctl.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hint.h"
#include "mlxd/mlxd.h"
#include "wire.h"

struct command {
    const char *name;
    const char *usage;              // the synopsis, after "mlxctl "
    const char *help;               // the rest of `mlxctl help NAME`
    int (*main)(const struct command *c, int argc, char **argv);
};

static const char top_usage[] = "mlxctl [--help] [--version] COMMAND [ARGS...]";

static const char top_help[] =
    "Control and use mlxd, the daemon that serves MLX's distributed collectives.\n"
    "\n"
    "Commands:\n"
    "  status   show the daemon's clients, jobs and op totals\n"
    "  wait     wait until a daemon answers (for scripts)\n"
    "  launch   start the N ranks of a job\n"
    "  help     show the help of a command\n"
    "\n"
    "Options:\n"
    "  -h, --help       show this help\n"
    "  -V, --version    show mlxctl's version\n"
    "\n"
    "The daemon's endpoint is --socket, else $MLXD_SOCKET, else\n"
    "ipc:///run/mlxd/mlxd.sock for root, ipc://$XDG_RUNTIME_DIR/mlxd/mlxd.sock\n"
    "or ipc:///tmp/mlxd-$UID/mlxd.sock for other users.\n"
    "\n"
    "Exit status: 0 success, 1 failure, 2 usage error.\n"
    "Run 'mlxctl help COMMAND' for the options of a command.\n";

static const char status_help[] =
    "Ask the daemon for its state and print it: version, pid, uptime, endpoint\n"
    "and host, its CPU use and memory; the MPI world; the connected clients\n"
    "(with their command lines); the jobs (age, ops per second, and the op they\n"
    "are stalled in for more than a second, with the ranks it waits for); the\n"
    "last 32 jobs that ended, with their result; totals per op type. Group ids\n"
    "are 16 hex digits (strings in JSON).\n"
    "\n"
    "Options:\n"
    "  --json           print the same as one JSON object\n"
    "  --world          ask every daemon of the world, not just this host's\n"
    "  --watch [S]      redraw it in place every S seconds (default 2) until\n"
    "                   Ctrl-C, which exits 0\n"
    "  --socket EP      the daemon's endpoint (default: see 'mlxctl --help')\n"
    "  --timeout S      give up after S seconds (default 5)\n"
    "  -h, --help       show this help\n"
    "\n"
    "Exit status: 0 when the daemon answered, 1 when it did not, 2 usage error.\n";

static const char wait_help[] =
    "Wait until a daemon answers at the endpoint, retrying with a short backoff.\n"
    "Meant for scripts that start mlxd and then use it:\n"
    "  mlxd --socket ipc:///tmp/m/mlxd.sock & mlxctl wait --socket ipc:///tmp/m/mlxd.sock\n"
    "\n"
    "Options:\n"
    "  --socket EP      the daemon's endpoint (default: see 'mlxctl --help')\n"
    "  --timeout S      give up after S seconds (default 10)\n"
    "  -h, --help       show this help\n"
    "\n"
    "Exit status: 0 once a daemon answers, 1 after the timeout, 2 usage error.\n";

static const char launch_help[] =
    "Start N processes of CMD, ranks 0..N-1 of one job, here or (with --hosts or\n"
    "--hostfile) on other hosts. Each gets MLXD_JOB, MLXD_RANK, MLXD_SIZE,\n"
    "MLXD_ATTEMPT and MLXD_SOCKET in its environment. Every daemon the ranks use\n"
    "here must answer, else launch refuses to start (exit status 1).\n"
    "\n"
    "Options:\n"
    "  -n, --np N           the number of ranks in all (required without hosts;\n"
    "                       with them, the hosts' slots together by default)\n"
    "  --job ID             the job id (default: unique per launch, from the host\n"
    "                       name, pid, time and random bits); attempt K > 0 of\n"
    "                       --max-restarts uses ID.K\n"
    "  --socket EP          the daemon's endpoint for every rank here, or on each\n"
    "                       host with --hosts (default: see 'mlxctl --help')\n"
    "  --daemons EP1,EP2,.. spread the ranks over these daemons in contiguous\n"
    "                       blocks; every one must answer\n"
    "  --allow-singleton    start even where no daemon answers: the ranks run as\n"
    "                       groups of one\n"
    "  --max-restarts N     after a rank fails, start the whole job again, up to\n"
    "                       N times, each time with a new job id (default 0)\n"
    "  --hosts H1[:S],...   run the ranks on these hosts, S ranks each (default\n"
    "                       1), in contiguous blocks\n"
    "  --hostfile FILE      the hosts from FILE: 'host slots=S' lines, # comments\n"
    "  --repeat-hosts K     K ranks on every host, whatever its slots say\n"
    "  --rsh CMD            how to reach a host: run as CMD HOST COMMANDLINE\n"
    "                       (default ssh; CMD may carry options, split at blanks)\n"
    "  --env K=V            set K=V for every rank (repeatable)\n"
    "  --cwd DIR            run every rank in DIR (default: the current directory,\n"
    "                       on a host where it exists)\n"
    "  --prefix             start each line of output with \"[rank] \"\n"
    "  --timeout S          stop the job after S seconds, restarts included\n"
    "                       (exit status 1)\n"
    "  -h, --help           show this help\n"
    "\n"
    "Output passes through as it is (with --prefix, line by line). Each rank runs\n"
    "in its own process group. Standard input goes to rank 0 here (to no rank when\n"
    "it is a terminal); the other ranks and remote ranks read /dev/null. When a\n"
    "rank exits non-zero or dies of a signal, the others get SIGTERM and, 2 s\n"
    "later, SIGKILL, and mlxctl says \"rank R exited with code C\"; while attempts\n"
    "of --max-restarts are left it adds \"; restarting (attempt 2 of 3)\" and\n"
    "starts the job again on the same daemons. SIGINT (Ctrl-C), SIGTERM, SIGHUP\n"
    "and SIGQUIT sent to mlxctl are passed on to the ranks, which are then stopped\n"
    "the same way; mlxctl says \"interrupted: stopped N ranks\" and starts nothing\n"
    "again. Once every rank has exited, what they left running in their process\n"
    "groups is stopped too, so that a job leaves nothing behind.\n"
    "\n"
    "On each host, the agent runs a shell command line that sets the rank's\n"
    "environment and --env, changes to the directory and execs\n"
    "'mlxctl launch --remote-rank HOST -- CMD...' (this mlxctl's path, else\n"
    "mlxctl from $PATH there). That fails the rank when the host's daemon (its\n"
    "default endpoint, or --socket) does not answer, runs CMD, and stops it when\n"
    "the agent's connection closes: stopping mlxctl stops every rank everywhere.\n"
    "\n"
    "Examples:\n"
    "  mlxctl launch -n 4 --prefix -- python3 train.py --epochs 3\n"
    "  mlxctl launch --hostfile hosts.txt --max-restarts 2 -- python3 train.py\n"
    "\n"
    "Exit status: 0 when every rank exits 0; else the last attempt's first failing\n"
    "rank's code (128 + N for signal N); 128 + N when signal N stopped mlxctl\n"
    "(130 for Ctrl-C); 127 when CMD is not found, 126 when it cannot be executed;\n"
    "1 when a daemon does not answer, on a timeout or another failure; 2 usage\n"
    "error.\n";

static const char help_help[] = "Show the help of COMMAND, or mlxctl's own help without one.\n";

static int status_main(const struct command *c, int argc, char **argv);
static int wait_main(const struct command *c, int argc, char **argv);
static int launch_main(const struct command *c, int argc, char **argv);
static int help_main(const struct command *c, int argc, char **argv);

static const struct command commands[] = {
    { "status", "mlxctl status [--json] [--world] [--watch [S]] [--socket EP] [--timeout S]", status_help,
      status_main },
    { "wait", "mlxctl wait [--socket EP] [--timeout S]", wait_help, wait_main },
    { "launch",
      "mlxctl launch -n N [--job ID] [--socket EP | --daemons EP1,EP2,...]\n"
      "         [--allow-singleton] [--hosts H1[:S],... | --hostfile FILE]\n"
      "         [--repeat-hosts K] [--rsh CMD] [--env K=V]... [--cwd DIR]\n"
      "         [--max-restarts N] [--prefix] [--timeout S] [--] CMD [ARGS...]",
      launch_help, launch_main },
    { "help", "mlxctl help [COMMAND]", help_help, help_main },
};

#define N_COMMANDS (sizeof commands / sizeof commands[0])

static const struct command *find_command(const char *name) {
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static void print_help(const struct command *c) {
    if (!c) {
        printf("Usage: %s\n\n%s", top_usage, top_help);
        return;
    }
    printf("Usage: %s\n\n%s", c->usage, c->help);
}

// Prints "mlxctl CMD: <what>", the usage line and a hint to --help; returns
// the usage exit status.
__attribute__((format(printf, 2, 3)))
static int usage_error(const struct command *c, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "mlxctl%s%s: ", c ? " " : "", c ? c->name : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nUsage: %s\n", c ? c->usage : top_usage);
    if (c)
        fprintf(stderr, "Try 'mlxctl %s --help' for more information.\n", c->name);
    else
        fprintf(stderr, "Try 'mlxctl --help' for more information.\n");
    return MLXCTL_EXIT_USAGE;
}

// The usage error for what getopt_long() returned ('?' or ':').
static int option_error(const struct command *c, int opt, char **argv) {
    const char *arg = argv[optind - 1];
    if (opt == ':')
        return usage_error(c, "option '%s' needs an argument", arg);
    if (optopt && strncmp(arg, "--", 2) != 0)
        return usage_error(c, "unknown option '-%c'", optopt);
    return usage_error(c, "unknown option '%s'", arg);
}

// Parses a positive number of seconds ("5", "0.25", at most about 24 days)
// into milliseconds.
static int parse_seconds(const char *s, int *ret_ms) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v) || v <= 0 || v > (INT_MAX - 1) / 1000.0)
        return -EINVAL;
    // Round up, so that 0.0001 s is 1 ms rather than no deadline at all.
    double ms = v * 1000.0;
    int whole = (int) ms;
    *ret_ms = whole < ms ? whole + 1 : whole;
    return 0;
}

// Parses a decimal integer in [lo, hi].
static int parse_int(const char *s, long lo, long hi, int *ret_value) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi)
        return -EINVAL;
    *ret_value = (int) v;
    return 0;
}

// Fills buf with --socket's value (checked) or the default endpoint.
static int resolve_endpoint(const struct command *c, const char *given, char *buf, size_t size) {
    int r;
    if (given) {
        if (strlen(given) >= size)
            return usage_error(c, "endpoint '%.60s...' is too long", given);
        r = wire_check_endpoint(given);
        if (r == -ENAMETOOLONG)
            return usage_error(c, "the ipc path of '%s' is longer than %d bytes; use a shorter path",
                               given, WIRE_MAX_IPC_PATH);
        if (r < 0)
            return usage_error(c, "'%s' is not an endpoint; use ipc:///path/to/mlxd.sock or tcp://host:port",
                               given);
        snprintf(buf, size, "%s", given);
        return 0;
    }
    r = wire_default_endpoint(buf, size);
    if (r >= 0)
        r = wire_check_endpoint(buf);
    if (r < 0) {
        fprintf(stderr, "mlxctl: the default endpoint ('%s') is not usable: %s; "
                "fix $MLXD_SOCKET or pass --socket EP\n",
                getenv("MLXD_SOCKET") ? getenv("MLXD_SOCKET") : buf, strerror(-r));
        return MLXCTL_EXIT_FAILURE;
    }
    return 0;
}

void mlxctl_print_start_hint(FILE *f, const char *endpoint, bool endpoint_given) {
    char hint[MLXCTL_ENDPOINT_MAX + 128];
    hint_start(hint, sizeof hint, endpoint, endpoint_given);
    fputs(hint, f);
}

enum {
    OPT_JSON = 0x100,
    OPT_WORLD,
    OPT_SOCKET,
    OPT_TIMEOUT,
    OPT_JOB,
    OPT_DAEMONS,
    OPT_PREFIX,
    OPT_WATCH,
};

// After a command's options: no stray argument, and the endpoint from
// --socket or the default. Returns 0, or the exit status of a usage error.
static int finish_endpoint(const struct command *c, int argc, char **argv, const char *socket, char *endpoint,
                           size_t size, bool *ret_given) {
    if (optind < argc)
        return usage_error(c, "unexpected argument '%s'", argv[optind]);
    int r = resolve_endpoint(c, socket, endpoint, size);
    if (r == 0)
        *ret_given = socket != NULL;
    return r;
}

// What shared_option() returns for an option it took and the parsing goes on.
#define OPT_NEXT (-1)

// The options status and wait share (--socket, --timeout, --help) and the
// errors of options neither knows: OPT_NEXT, or the exit status to return.
static int shared_option(const struct command *c, int opt, char **argv, const char **socket, int *timeout_ms) {
    switch (opt) {
    case OPT_SOCKET:
        *socket = optarg;
        return OPT_NEXT;
    case OPT_TIMEOUT:
        if (parse_seconds(optarg, timeout_ms) < 0)
            return usage_error(c, "--timeout wants a positive number of seconds, not '%s'", optarg);
        return OPT_NEXT;
    case 'h':
        print_help(c);
        return MLXCTL_EXIT_OK;
    default:
        return option_error(c, opt, argv);
    }
}

static int status_main(const struct command *c, int argc, char **argv) {
    static const struct option longopts[] = {
        { "json", no_argument, NULL, OPT_JSON },
        { "world", no_argument, NULL, OPT_WORLD },
        { "watch", optional_argument, NULL, OPT_WATCH },
        { "socket", required_argument, NULL, OPT_SOCKET },
        { "timeout", required_argument, NULL, OPT_TIMEOUT },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    struct status_opts o = { .timeout_ms = MLXCTL_STATUS_TIMEOUT_MS };
    const char *watch;
    const char *socket = NULL;
    int opt, r;

    while ((opt = getopt_long(argc, argv, "+:h", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_JSON:
            o.json = true;
            break;
        case OPT_WORLD:
            o.world = true;
            break;
        case OPT_WATCH:
            // --watch=S, --watch S (when S is a number), or --watch alone.
            watch = optarg;
            if (!watch && optind < argc && argv[optind][0] != '-' && parse_seconds(argv[optind], &o.watch_ms) == 0)
                watch = argv[optind++];
            if (!watch)
                o.watch_ms = MLXCTL_WATCH_DEFAULT_MS;
            else if (parse_seconds(watch, &o.watch_ms) < 0 || o.watch_ms < 100)
                return usage_error(c, "--watch wants an interval of 0.1 seconds or more, not '%s'", watch);
            break;
        default:
            if ((r = shared_option(c, opt, argv, &socket, &o.timeout_ms)) != OPT_NEXT)
                return r;
        }
    }
    r = finish_endpoint(c, argc, argv, socket, o.endpoint, sizeof o.endpoint, &o.endpoint_given);
    return r != 0 ? r : status_run(&o);
}

static int wait_main(const struct command *c, int argc, char **argv) {
    static const struct option longopts[] = {
        { "socket", required_argument, NULL, OPT_SOCKET },
        { "timeout", required_argument, NULL, OPT_TIMEOUT },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    struct wait_opts o = { .timeout_ms = MLXCTL_WAIT_TIMEOUT_MS };
    const char *socket = NULL;
    int opt, r;

    while ((opt = getopt_long(argc, argv, "+:h", longopts, NULL)) != -1)
        if ((r = shared_option(c, opt, argv, &socket, &o.timeout_ms)) != OPT_NEXT)
            return r;
    r = finish_endpoint(c, argc, argv, socket, o.endpoint, sizeof o.endpoint, &o.endpoint_given);
    return r != 0 ? r : wait_run(&o);
}

// Splits "EP1,EP2,..." into a new array of checked endpoints; on a bad list
// prints the usage error and returns its status.
static int parse_daemons(const struct command *c, const char *list, char ***ret_eps, size_t *ret_n) {
    size_t n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    char **eps = calloc(n, sizeof *eps);
    char *copy = strdup(list);
    if (!eps || !copy) {
        free(eps);
        free(copy);
        fprintf(stderr, "mlxctl: out of memory\n");
        return MLXCTL_EXIT_FAILURE;
    }
    // Every entry points into copy, which eps[0] owns.
    char *p = copy;
    for (size_t i = 0; i < n; i++) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        eps[i] = p;
        p = comma ? comma + 1 : p + strlen(p);
    }
    for (size_t i = 0; i < n; i++) {
        int r = *eps[i] ? wire_check_endpoint(eps[i]) : -EINVAL;
        if (r < 0) {
            if (!*eps[i])
                r = usage_error(c, "--daemons has an empty entry; give EP1,EP2,... without blanks");
            else if (r == -ENAMETOOLONG)
                r = usage_error(c, "the ipc path of '%s' is longer than %d bytes", eps[i], WIRE_MAX_IPC_PATH);
            else
                r = usage_error(c, "'%s' in --daemons is not an endpoint; use ipc:///path or tcp://host:port",
                                eps[i]);
            free(copy);
            free(eps);
            return r;
        }
    }
    *ret_eps = eps;
    *ret_n = n;
    return 0;
}

// launch's own options, beside the ones it shares with status and wait.
enum {
    OPT_ALLOW_SINGLETON = 0x200,
    OPT_MAX_RESTARTS,
    OPT_HOSTS,
    OPT_HOSTFILE,
    OPT_REPEAT_HOSTS,
    OPT_RSH,
    OPT_ENV,
    OPT_CWD,
    OPT_REMOTE_RANK,
};

// launch's hosts: --hosts or --hostfile read, --repeat-hosts applied, -n
// checked against the slots (or set to them). Returns 0 or a usage error.
static int launch_hosts(const struct command *c, struct launch_opts *o, const char *hosts, const char *hostfile,
                        int repeat) {
    char err[512];
    int r;
    if (hosts && hostfile)
        return usage_error(c, "give either --hosts or --hostfile, not both");
    if (!hosts && !hostfile)
        return repeat ? usage_error(c, "--repeat-hosts needs --hosts or --hostfile") : 0;
    if (o->daemons)
        return usage_error(c, "--daemons is for ranks here; with hosts, each rank uses its host's daemon");
    r = hosts ? launch_parse_hosts(hosts, &o->hosts, &o->n_hosts, err, sizeof err)
              : launch_read_hostfile(hostfile, &o->hosts, &o->n_hosts, err, sizeof err);
    if (r < 0)
        return usage_error(c, "%s", err);
    for (size_t i = 0; repeat && i < o->n_hosts; i++)
        o->hosts[i].slots = repeat;
    int total = launch_total_slots(o->hosts, o->n_hosts);
    if (o->n == 0 && total > MLXCTL_MAX_RANKS)
        return usage_error(c, "the hosts have more than %d slots; say how many ranks to start with -n N",
                           MLXCTL_MAX_RANKS);
    if (o->n == 0)
        o->n = total;
    if (o->n > total)
        return usage_error(c, "-n %d is more ranks than the hosts' %d slots; give each host more "
                           "(H:S, slots=S, --repeat-hosts K)", o->n, total);
    return 0;
}

// What launch's command line says beyond struct launch_opts, until checked.
struct launch_args {
    const char *daemons, *socket, *hosts, *hostfile, *rsh;
    int repeat;                         // --repeat-hosts; 0 when not given
    bool rsh_given;
};

// Takes one of launch's options into o and a: 0, -1 after --help, or the
// exit status of a usage error.
static int launch_option(const struct command *c, int opt, char **argv, struct launch_opts *o,
                         struct launch_args *a) {
    int r = 0;
    switch (opt) {
    case 'n':
        if (parse_int(optarg, 1, MLXCTL_MAX_RANKS, &o->n) < 0)
            r = usage_error(c, "-n wants a number of ranks from 1 to %d, not '%s'", MLXCTL_MAX_RANKS, optarg);
        break;
    case OPT_JOB:
        if (!wire_job_id_valid(optarg))
            r = usage_error(c, "--job '%s' is not a job id: use 1 to 128 characters of "
                            "A-Z a-z 0-9 . _ : @ + -", optarg);
        o->job = optarg;
        break;
    case OPT_SOCKET:
        a->socket = optarg;
        break;
    case OPT_DAEMONS:
        a->daemons = optarg;
        break;
    case OPT_ALLOW_SINGLETON:
        o->allow_singleton = true;
        break;
    case OPT_MAX_RESTARTS:
        if (parse_int(optarg, 0, 1000, &o->max_restarts) < 0)
            r = usage_error(c, "--max-restarts wants a number from 0 to 1000, not '%s'", optarg);
        break;
    case OPT_HOSTS:
        a->hosts = optarg;
        break;
    case OPT_HOSTFILE:
        a->hostfile = optarg;
        break;
    case OPT_REPEAT_HOSTS:
        if (parse_int(optarg, 1, MLXCTL_MAX_RANKS, &a->repeat) < 0)
            r = usage_error(c, "--repeat-hosts wants a number of ranks per host from 1 to %d, not '%s'",
                            MLXCTL_MAX_RANKS, optarg);
        break;
    case OPT_RSH:
        a->rsh = optarg;
        a->rsh_given = true;
        break;
    case OPT_ENV:
        if (!launch_env_is_valid(optarg))
            r = usage_error(c, "--env '%s' is not K=V with K a variable name (MLXD_JOB, MLXD_RANK, "
                            "MLXD_SIZE, MLXD_ATTEMPT and MLXD_SOCKET are launch's own)", optarg);
        o->env[o->n_env++] = optarg;
        break;
    case OPT_CWD:
        o->cwd = optarg;
        break;
    case OPT_PREFIX:
        o->prefix = true;
        break;
    case OPT_TIMEOUT:
        if (parse_seconds(optarg, &o->timeout_ms) < 0)
            r = usage_error(c, "--timeout wants a positive number of seconds, not '%s'", optarg);
        break;
    case OPT_REMOTE_RANK:
        o->remote_host = optarg;
        break;
    case 'h':
        print_help(c);
        return -1;
    default:
        return option_error(c, opt, argv);
    }
    return r;
}

// launch's options once all are read, before anything is resolved: 0, or
// the exit status of a usage error.
static int launch_check(const struct command *c, int argc, struct launch_opts *o, const struct launch_args *a) {
    if (o->remote_host)
        o->n = 1;
    if (o->n == 0 && !a->hosts && !a->hostfile)
        return usage_error(c, "say how many ranks to start with -n N");
    if (optind >= argc)
        return usage_error(c, "give the command to run after the options (and an optional --)");
    if (a->socket && a->daemons)
        return usage_error(c, "give either --socket or --daemons, not both");
    if (o->job && o->max_restarts > 0 && strlen(o->job) + 6 > WIRE_JOB_ID_MAX)
        return usage_error(c, "--job with --max-restarts must leave room for '.K': at most 122 characters");
    if (!a->hosts && !a->hostfile && a->rsh_given)
        return usage_error(c, "--rsh is for --hosts or --hostfile");
    return 0;
}

static int launch_main(const struct command *c, int argc, char **argv) {
    static const struct option longopts[] = {
        { "np", required_argument, NULL, 'n' },
        { "job", required_argument, NULL, OPT_JOB },
        { "socket", required_argument, NULL, OPT_SOCKET },
        { "daemons", required_argument, NULL, OPT_DAEMONS },
        { "allow-singleton", no_argument, NULL, OPT_ALLOW_SINGLETON },
        { "max-restarts", required_argument, NULL, OPT_MAX_RESTARTS },
        { "hosts", required_argument, NULL, OPT_HOSTS },
        { "hostfile", required_argument, NULL, OPT_HOSTFILE },
        { "repeat-hosts", required_argument, NULL, OPT_REPEAT_HOSTS },
        { "rsh", required_argument, NULL, OPT_RSH },
        { "env", required_argument, NULL, OPT_ENV },
        { "cwd", required_argument, NULL, OPT_CWD },
        { "prefix", no_argument, NULL, OPT_PREFIX },
        { "timeout", required_argument, NULL, OPT_TIMEOUT },
        { "remote-rank", required_argument, NULL, OPT_REMOTE_RANK },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    struct launch_opts o = { .n = 0 };
    struct launch_args a = { .rsh = "ssh" };
    char **env = calloc((size_t) argc + 1, sizeof *env);
    int opt, r;

    if (!env) {
        fprintf(stderr, "mlxctl: out of memory\n");
        return MLXCTL_EXIT_FAILURE;
    }
    o.env = env;
    while ((opt = getopt_long(argc, argv, "+:hn:", longopts, NULL)) != -1) {
        if ((r = launch_option(c, opt, argv, &o, &a)) != 0)
            goto out;
    }
    if ((r = launch_check(c, argc, &o, &a)) != 0)
        goto out;
    o.argv = argv + optind;
    // With hosts, the default endpoint is each host's own.
    if (a.daemons)
        r = parse_daemons(c, a.daemons, &o.daemons, &o.n_daemons);
    else if (a.socket || (!a.hosts && !a.hostfile))
        r = resolve_endpoint(c, a.socket, o.default_endpoint, sizeof o.default_endpoint);
    o.endpoint_given = a.socket != NULL;
    if (r == 0 && !o.remote_host)
        r = launch_hosts(c, &o, a.hosts, a.hostfile, a.repeat);
    if (r == 0 && o.hosts && launch_split_rsh(a.rsh, &o.rsh) < 0)
        r = usage_error(c, "--rsh '%s' names no command", a.rsh);
    if (r == 0)
        r = launch_run(&o);
out:
    if (o.daemons) {
        free(o.daemons[0]);
        free(o.daemons);
    }
    launch_hosts_free(o.hosts, o.n_hosts);
    free(o.rsh);
    free(env);
    return r < 0 ? MLXCTL_EXIT_OK : r;
}

static int help_main(const struct command *c, int argc, char **argv) {
    if (argc > 2)
        return usage_error(c, "unexpected argument '%s'", argv[2]);
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        print_help(c);
        return MLXCTL_EXIT_OK;
    }
    if (argc < 2) {
        print_help(NULL);
        return MLXCTL_EXIT_OK;
    }
    const struct command *target = find_command(argv[1]);
    if (!target)
        return usage_error(c, "there is no command '%s'; the commands are status, wait, launch, help", argv[1]);
    print_help(target);
    return MLXCTL_EXIT_OK;
}

int main(int argc, char **argv) {
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { 0 },
    };
    int opt;

    opterr = 0;
    while ((opt = getopt_long(argc, argv, "+:hV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'h':
            print_help(NULL);
            return MLXCTL_EXIT_OK;
        case 'V':
            printf("mlxctl %s (protocol %d)\n", MLXD_VERSION_STRING, MLXD_PROTOCOL_VERSION);
            return MLXCTL_EXIT_OK;
        default:
            return option_error(NULL, opt, argv);
        }
    }
    if (optind >= argc)
        return usage_error(NULL, "no command given");

    const struct command *c = find_command(argv[optind]);
    if (!c)
        return usage_error(NULL, "there is no command '%s'; the commands are status, wait, launch, help",
                           argv[optind]);
    // Each command parses its own arguments, with its name as argv[0];
    // optind = 0 makes GNU getopt start afresh.
    int sub_argc = argc - optind;
    char **sub_argv = argv + optind;
    optind = 0;
    return c->main(c, sub_argc, sub_argv);
}
