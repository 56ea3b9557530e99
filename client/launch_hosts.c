/* The hosts of `mlxctl launch --hosts/--hostfile`: parsing them, placing the
 * ranks on them in blocks of slots, and the shell command line that the rsh
 * agent runs on a host for one rank. That command line execs
 * `mlxctl launch --remote-rank HOST`, the remote side of the rank, which
 * checks the host's daemon, runs the program and stops it when the agent's
 * connection (its standard input) closes: so stopping the launcher stops
 * every rank on every host, whatever the agent does with signals. */
#include "mlxctl.h"
#include "wire.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// A host name as the agent gets it: no blank, no shell or option syntax.
static bool host_name_is_valid(const char *s, size_t n) {
    return n > 0 && n <= 255 && s[0] != '-' && wire_name_chars(s, n, "._@+-");
}

static int parse_slots(const char *s, size_t n, int *ret_slots) {
    int v = 0;
    if (n == 0 || n > 5)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > MLXCTL_MAX_RANKS)
        return -EINVAL;
    *ret_slots = v;
    return 0;
}

// Appends host (name, n bytes) with slots to *hosts.
static int add_host(struct launch_host **hosts, size_t *n, const char *name, size_t len, int slots) {
    if (*n >= MLXCTL_MAX_RANKS)
        return -E2BIG;
    struct launch_host *h = realloc(*hosts, (*n + 1) * sizeof **hosts);
    if (!h)
        return -ENOMEM;
    *hosts = h;
    h[*n].name = strndup(name, len);
    if (!h[*n].name)
        return -ENOMEM;
    h[*n].slots = slots;
    (*n)++;
    return 0;
}

void launch_hosts_free(struct launch_host *hosts, size_t n) {
    for (size_t i = 0; hosts && i < n; i++)
        free(hosts[i].name);
    free(hosts);
}

int launch_parse_hosts(const char *list, struct launch_host **ret_hosts, size_t *ret_n, char *err,
                       size_t errsize) {
    struct launch_host *hosts = NULL;
    size_t n = 0;
    const char *p = list;
    int r = 0;

    for (;;) {
        size_t len = strcspn(p, ",");
        const char *colon = memchr(p, ':', len);
        size_t name_len = colon ? (size_t) (colon - p) : len;
        int slots = 1;
        if (!host_name_is_valid(p, name_len)) {
            snprintf(err, errsize, "'%.*s' in --hosts is not a host name; give H1[:S],H2[:S],...", (int) len, p);
            r = -EINVAL;
            break;
        }
        if (colon && parse_slots(colon + 1, len - name_len - 1, &slots) < 0) {
            snprintf(err, errsize, "'%.*s' in --hosts: the slots after ':' must be a number from 1 to %d",
                     (int) len, p, MLXCTL_MAX_RANKS);
            r = -EINVAL;
            break;
        }
        r = add_host(&hosts, &n, p, name_len, slots);
        if (r < 0) {
            snprintf(err, errsize, r == -E2BIG ? "--hosts names more than %d hosts" : "out of memory",
                     MLXCTL_MAX_RANKS);
            break;
        }
        if (p[len] == '\0')
            break;
        p += len + 1;
    }
    if (r < 0) {
        launch_hosts_free(hosts, n);
        return r;
    }
    *ret_hosts = hosts;
    *ret_n = n;
    return 0;
}

// One line of a hostfile, its comment already cut off: "host [slots=S]".
static int hostfile_line(char *line, struct launch_host **hosts, size_t *n, char *err, size_t errsize) {
    static const char blanks[] = " \t\r\n";
    char *save = NULL;
    char *name = strtok_r(line, blanks, &save);
    int slots = 1;
    if (!name)
        return 0;
    if (!host_name_is_valid(name, strlen(name))) {
        snprintf(err, errsize, "'%s' is not a host name", name);
        return -EINVAL;
    }
    for (char *word; (word = strtok_r(NULL, blanks, &save));) {
        if (strncmp(word, "slots=", 6) != 0) {
            snprintf(err, errsize, "'%s' is not understood; write 'host slots=S'", word);
            return -EINVAL;
        }
        if (parse_slots(word + 6, strlen(word + 6), &slots) < 0) {
            snprintf(err, errsize, "'%s': S must be a number from 1 to %d", word, MLXCTL_MAX_RANKS);
            return -EINVAL;
        }
    }
    int r = add_host(hosts, n, name, strlen(name), slots);
    if (r < 0)
        snprintf(err, errsize, r == -E2BIG ? "more than %d hosts" : "out of memory", MLXCTL_MAX_RANKS);
    return r;
}

int launch_read_hostfile(const char *path, struct launch_host **ret_hosts, size_t *ret_n, char *err,
                         size_t errsize) {
    struct launch_host *hosts = NULL;
    size_t n = 0, cap = 0;
    char *line = NULL, why[256];
    int r = 0, lineno = 0;

    FILE *f = fopen(path, "re");
    if (!f) {
        r = -errno;
        snprintf(err, errsize, "cannot read the hostfile %s: %s", path, strerror(-r));
        return r;
    }
    for (;;) {
        errno = 0;
        ssize_t len = getline(&line, &cap, f);
        if (len < 0) {
            if (errno) {
                r = -errno;
                snprintf(err, errsize, "cannot read the hostfile %s: %s", path, strerror(-r));
            }
            break;
        }
        lineno++;
        line[strcspn(line, "#")] = '\0';
        r = hostfile_line(line, &hosts, &n, why, sizeof why);
        if (r < 0) {
            snprintf(err, errsize, "%s:%d: %s", path, lineno, why);
            break;
        }
    }
    free(line);
    fclose(f);
    if (r == 0 && n == 0) {
        snprintf(err, errsize, "the hostfile %s names no host; write one 'host slots=S' line per host", path);
        r = -EINVAL;
    }
    if (r < 0) {
        launch_hosts_free(hosts, n);
        return r;
    }
    *ret_hosts = hosts;
    *ret_n = n;
    return 0;
}

int launch_total_slots(const struct launch_host *hosts, size_t n) {
    int total = 0;
    for (size_t i = 0; i < n && total <= MLXCTL_MAX_RANKS; i++)
        total += hosts[i].slots;
    return total > MLXCTL_MAX_RANKS ? MLXCTL_MAX_RANKS + 1 : total;
}

int launch_split_rsh(const char *cmd, char ***ret_words) {
    static const char blanks[] = " \t";
    size_t len = strlen(cmd), max = len / 2 + 2;
    // The pointers, then the copy of the words they point into.
    char **words = malloc(max * sizeof *words + len + 1);
    if (!words)
        return -ENOMEM;
    char *copy = (char *) (words + max), *save = NULL;
    size_t n = 0;
    memcpy(copy, cmd, len + 1);
    for (char *w = strtok_r(copy, blanks, &save); w; w = strtok_r(NULL, blanks, &save))
        words[n++] = w;
    words[n] = NULL;
    if (n == 0) {
        free(words);
        return -EINVAL;
    }
    *ret_words = words;
    return 0;
}

bool launch_env_is_valid(const char *s) {
    static const char *const own[] = { "MLXD_JOB", "MLXD_RANK", "MLXD_SIZE", "MLXD_SOCKET", "MLXD_ATTEMPT" };
    const char *eq = strchr(s, '=');
    size_t n = eq ? (size_t) (eq - s) : 0;
    if (n == 0 || (s[0] >= '0' && s[0] <= '9'))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        if (strlen(own[i]) == n && strncmp(s, own[i], n) == 0)
            return false;
    return true;
}

size_t launch_host_of_rank(const struct launch_opts *o, int rank) {
    int first = 0;
    for (size_t h = 0; h < o->n_hosts; h++) {
        first += o->hosts[h].slots;
        if (rank < first)
            return h;
    }
    return o->n_hosts - 1;
}

/* ---- the remote command line ---- */

struct buf {
    char *p;
    size_t len, cap;
    bool failed;
};

static void buf_add(struct buf *b, const char *s, size_t n) {
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s) {
    buf_add(b, s, strlen(s));
}

// s as one shell word: in single quotes, each ' written as '\''.
static void buf_quoted(struct buf *b, const char *s) {
    buf_add(b, "'", 1);
    for (const char *q; (q = strchr(s, '\''));) {
        buf_add(b, s, (size_t) (q - s));
        buf_add(b, "'\\''", 4);
        s = q + 1;
    }
    buf_str(b, s);
    buf_add(b, "'", 1);
}

static void buf_var(struct buf *b, const char *name, const char *value) {
    char word[256];
    snprintf(word, sizeof word, "%s=%s", name, value);
    buf_add(b, " ", 1);
    buf_quoted(b, word);
}

char *launch_remote_cmdline(const struct launch_opts *o, const char *self, const char *here, const char *job,
                            int rank, int attempt) {
    struct buf b = { 0 };
    char num[16];
    const struct launch_host *h = &o->hosts[launch_host_of_rank(o, rank)];

    // A --cwd that does not exist there fails the rank; the launcher's own
    // directory is only used where it exists (else the agent's, as ssh's home).
    buf_str(&b, "cd -- ");
    buf_quoted(&b, o->cwd ? o->cwd : here ? here : "/");
    buf_str(&b, o->cwd ? " || exit 1; " : " 2>/dev/null; ");
    buf_str(&b, "P=");
    buf_quoted(&b, self ? self : "mlxctl");
    buf_str(&b, "; [ -x \"$P\" ] || P=mlxctl; exec env");
    buf_var(&b, "MLXD_JOB", job);
    snprintf(num, sizeof num, "%d", rank);
    buf_var(&b, "MLXD_RANK", num);
    snprintf(num, sizeof num, "%d", o->n);
    buf_var(&b, "MLXD_SIZE", num);
    snprintf(num, sizeof num, "%d", attempt);
    buf_var(&b, "MLXD_ATTEMPT", num);
    for (size_t i = 0; i < o->n_env; i++) {
        buf_add(&b, " ", 1);
        buf_quoted(&b, o->env[i]);
    }
    buf_str(&b, " \"$P\" launch --remote-rank ");
    buf_quoted(&b, h->name);
    if (o->endpoint_given) {
        buf_str(&b, " --socket ");
        buf_quoted(&b, o->default_endpoint);
    }
    if (o->allow_singleton)
        buf_str(&b, " --allow-singleton");
    buf_str(&b, " --");
    for (char *const *a = o->argv; *a; a++) {
        buf_add(&b, " ", 1);
        buf_quoted(&b, *a);
    }
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
