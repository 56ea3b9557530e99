/* `mlxctl status` and `mlxctl wait`: one request to the daemon over a ZeroMQ
 * DEALER socket, its reply checked before use, and the StatusReply printed as
 * aligned tables or as JSON. Whatever the daemon sends, mlxctl reports it and
 * never crashes: frame sizes are checked, decoding is bounded by the frame,
 * Reply.code is honoured and absent fields print as "-". */
#include "mlxctl.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "wire.h"

// Bound on what ZeroMQ buffers for one incoming frame; the protobuf frame
// itself must stay under WIRE_MAX_REPLY_FRAME.
#define MAX_INCOMING_FRAME (64 * 1024 * 1024)

// How many hosts and missing ranks the text output lists before "+N more".
#define MAX_LISTED 16

// Backoff of `mlxctl wait` between attempts, and how long one attempt waits
// for its Ping to be answered.
#define WAIT_BACKOFF_MIN_MS 10
#define WAIT_BACKOFF_MAX_MS 200
#define WAIT_ATTEMPT_MS 1000

/* ---- strings the daemon sent, made safe to print ---- */

// Decodes one UTF-8 sequence of s[0..len); returns its length (>= 1) and the
// code point, or UINT32_MAX in *ret_cp for an invalid sequence (length 1).
static size_t utf8_next(const unsigned char *s, size_t len, uint32_t *ret_cp) {
    unsigned char c = s[0];
    size_t n;
    uint32_t cp, min;
    if (c < 0x80) {
        *ret_cp = c;
        return 1;
    }
    if ((c & 0xe0) == 0xc0)
        n = 2, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0)
        n = 3, cp = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0)
        n = 4, cp = c & 0x07, min = 0x10000;
    else
        goto invalid;
    if (n > len)
        goto invalid;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            goto invalid;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        goto invalid;
    *ret_cp = cp;
    return n;
invalid:
    *ret_cp = UINT32_MAX;
    return 1;
}

// A copy of s fit for a terminal: control characters and invalid UTF-8
// become '?', line breaks and tabs a space, trailing blanks are dropped.
// Returns NULL when out of memory; NULL s gives "".
static char *term_clean(const char *s) {
    if (!s)
        s = "";
    size_t len = strlen(s), o = 0;
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = utf8_next((const unsigned char *) s + i, len - i, &cp);
        if (cp == '\n' || cp == '\r' || cp == '\t')
            out[o++] = ' ';
        else if (cp == UINT32_MAX || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            out[o++] = '?';
        else {
            memcpy(out + o, s + i, n);
            o += n;
        }
        i += n;
    }
    while (o > 0 && out[o - 1] == ' ')
        o--;
    out[o] = '\0';
    return out;
}

// Columns a cleaned string takes: one per code point.
static size_t display_width(const char *s) {
    size_t w = 0;
    for (; *s; s++)
        w += ((unsigned char) *s & 0xc0) != 0x80;
    return w;
}

// Text fields of protobuf-c messages are "" when absent; guard against NULL
// anyway.
static const char *str_or(const char *s, const char *dflt) {
    return s && *s ? s : dflt;
}

/* ---- human-readable numbers ---- */

static void human_bytes(char *buf, size_t size, uint64_t n) {
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    if (n < 1024) {
        snprintf(buf, size, "%" PRIu64 " B", n);
        return;
    }
    double v = (double) n;
    size_t u = 0;
    while (v >= 1024.0 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, size, v < 100.0 ? "%.1f %s" : "%.0f %s", v, units[u]);
}

// "850µs", "1.3ms", "2.50s", "4m 05s", "3h 02m", "2d 03h".
static void human_duration_us(char *buf, size_t size, uint64_t us) {
    if (us < 1000) {
        snprintf(buf, size, "%" PRIu64 "µs", us);
        return;
    }
    if (us < 1000000) {
        snprintf(buf, size, us < 10000 ? "%.2fms" : "%.1fms", (double) us / 1e3);
        return;
    }
    if (us < 60 * 1000000ull) {
        snprintf(buf, size, "%.2fs", (double) us / 1e6);
        return;
    }
    uint64_t s = us / 1000000;
    if (s < 3600)
        snprintf(buf, size, "%" PRIu64 "m %02" PRIu64 "s", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, size, "%" PRIu64 "h %02" PRIu64 "m", s / 3600, s / 60 % 60);
    else
        snprintf(buf, size, "%" PRIu64 "d %02" PRIu64 "h", s / 86400, s / 3600 % 24);
}

static void human_duration_ms(char *buf, size_t size, uint64_t ms) {
    human_duration_us(buf, size, ms > UINT64_MAX / 1000 ? UINT64_MAX : ms * 1000);
}

// Uptime to the second: "42s", then as human_duration_us().
static void human_uptime_ms(char *buf, size_t size, uint64_t ms) {
    if (ms < 60000)
        snprintf(buf, size, "%" PRIu64 "s", ms / 1000);
    else
        human_duration_ms(buf, size, ms);
}

/* ---- aligned tables ---- */

struct table {
    size_t ncols;
    const char *const *headers;
    const char *right;              // per column: 1 = right-aligned (numbers)
    char **cells;                   // row-major, owned, each a term_clean()ed string
    size_t ncells, cap;
};

// Makes room for nrows rows; false when out of memory.
static bool table_init(struct table *t, size_t nrows) {
    t->cap = nrows * t->ncols;
    t->ncells = 0;
    t->cells = calloc(t->cap ? t->cap : 1, sizeof *t->cells);
    return t->cells != NULL;
}

// Fills the next cell; the row is implied by the column count. A cell that
// cannot be formatted prints as "?".
__attribute__((format(printf, 2, 3)))
static void table_cell(struct table *t, const char *fmt, ...) {
    char *raw = NULL;
    va_list ap;
    if (t->ncells >= t->cap)
        return;
    va_start(ap, fmt);
    if (vasprintf(&raw, fmt, ap) < 0)
        raw = NULL;
    va_end(ap);
    t->cells[t->ncells++] = term_clean(raw ? raw : "?");
    free(raw);
}

static void table_print(FILE *f, const struct table *t, const char *indent) {
    size_t nrows = t->ncells / t->ncols;
    size_t width[16] = { 0 };
    if (t->ncols > sizeof width / sizeof width[0])
        return;
    for (size_t c = 0; c < t->ncols; c++)
        width[c] = display_width(t->headers[c]);
    for (size_t i = 0; i < nrows * t->ncols; i++) {
        size_t w = display_width(t->cells[i] ? t->cells[i] : "?");
        if (w > width[i % t->ncols])
            width[i % t->ncols] = w;
    }
    for (size_t r = 0; r <= nrows; r++) {
        fputs(indent, f);
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = r == 0 ? t->headers[c] : t->cells[(r - 1) * t->ncols + c];
            if (!s)
                s = "?";
            size_t pad = width[c] - display_width(s);
            bool last = c + 1 == t->ncols;
            if (t->right[c])
                fprintf(f, "%*s%s", (int) pad, "", s);
            else
                fprintf(f, "%s%*s", s, last ? 0 : (int) pad, "");
            if (!last)
                fputs("  ", f);
        }
        fputc('\n', f);
    }
}

static void table_free(struct table *t) {
    for (size_t i = 0; i < t->ncells; i++)
        free(t->cells[i]);
    free(t->cells);
    t->cells = NULL;
    t->ncells = t->cap = 0;
}

/* ---- text output ---- */

// "0,1,5" (at most MAX_LISTED entries, then "+N more") into buf.
static void format_ranks(char *buf, size_t size, const int32_t *ranks, size_t n) {
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && i < MAX_LISTED && o < size; i++)
        o += (size_t) snprintf(buf + o, size - o, "%s%" PRId32, i ? "," : "", ranks[i]);
    if (n > MAX_LISTED && o < size)
        snprintf(buf + o, size - o, " +%zu more", n - MAX_LISTED);
}

static void print_clients(FILE *f, const Mlxd__DaemonStatus *d) {
    static const char *const headers[] = { "PID", "UID", "JOB", "RANK", "GROUP", "OPS", "PENDING", "SHM" };
    static const char right[] = { 1, 1, 0, 1, 1, 1, 0, 1 };
    struct table t = { .ncols = sizeof headers / sizeof headers[0], .headers = headers, .right = right };

    fprintf(f, "Clients:\n");
    if (d->n_clients == 0 || !d->clients) {
        fprintf(f, "  no clients\n");
        return;
    }
    if (!table_init(&t, d->n_clients)) {
        fprintf(f, "  (out of memory)\n");
        return;
    }
    for (size_t i = 0; i < d->n_clients; i++) {
        const Mlxd__ClientStatus *c = d->clients[i];
        if (!c)
            continue;
        table_cell(&t, "%" PRId32, c->pid);
        table_cell(&t, "%" PRIu32, c->uid);
        table_cell(&t, "%s", str_or(c->job, "-"));
        if (str_or(c->job, NULL))
            table_cell(&t, "%" PRId32, c->rank);
        else
            table_cell(&t, "-");
        if (c->group)
            table_cell(&t, "%" PRIu64, c->group);
        else
            table_cell(&t, "-");
        table_cell(&t, "%" PRIu64, c->ops);
        table_cell(&t, "%s", str_or(c->pending, "-"));
        if (c->shm_segments) {
            char bytes[32];
            human_bytes(bytes, sizeof bytes, c->shm_bytes);
            table_cell(&t, "%s in %" PRIu32, bytes, c->shm_segments);
        } else {
            table_cell(&t, "-");
        }
    }
    table_print(f, &t, "  ");
    table_free(&t);
}

static void print_jobs(FILE *f, const Mlxd__DaemonStatus *d) {
    static const char *const headers[] = {
        "ID", "SIZE", "LOCAL", "STATE", "OPS", "STALLED IN", "MISSING", "FOR", "LAST ERROR",
    };
    static const char right[] = { 0, 1, 1, 0, 1, 0, 0, 1, 0 };
    struct table t = { .ncols = 9, .headers = headers, .right = right };

    fprintf(f, "Jobs:\n");
    if (d->n_jobs == 0 || !d->jobs) {
        fprintf(f, "  no jobs\n");
        return;
    }
    if (!table_init(&t, d->n_jobs)) {
        fprintf(f, "  (out of memory)\n");
        return;
    }
    for (size_t i = 0; i < d->n_jobs; i++) {
        const Mlxd__JobStatus *j = d->jobs[i];
        if (!j)
            continue;
        bool stalled = str_or(j->stalled_op, NULL) != NULL;
        char missing[256], dur[32];
        format_ranks(missing, sizeof missing, j->missing_ranks, j->missing_ranks ? j->n_missing_ranks : 0);
        human_duration_ms(dur, sizeof dur, j->stalled_ms);
        table_cell(&t, "%s", str_or(j->id, "-"));
        table_cell(&t, "%" PRId32, j->size);
        table_cell(&t, "%" PRId32, j->local_members);
        table_cell(&t, "%s", str_or(j->state, "-"));
        table_cell(&t, "%" PRIu64, j->ops_done);
        table_cell(&t, "%s", stalled ? j->stalled_op : "-");
        table_cell(&t, "%s", *missing ? missing : "-");
        table_cell(&t, "%s", stalled ? dur : "-");
        table_cell(&t, "%s", str_or(j->last_error, "-"));
    }
    table_print(f, &t, "  ");
    table_free(&t);
}

static void print_totals(FILE *f, const Mlxd__DaemonStatus *d) {
    static const char *const headers[] = { "OP", "COUNT", "BYTES", "P50", "P99", "ERRORS" };
    static const char right[] = { 0, 1, 1, 1, 1, 1 };
    struct table t = { .ncols = 6, .headers = headers, .right = right };

    fprintf(f, "Totals:\n");
    if (d->n_totals == 0 || !d->totals) {
        fprintf(f, "  no ops yet\n");
        return;
    }
    if (!table_init(&t, d->n_totals)) {
        fprintf(f, "  (out of memory)\n");
        return;
    }
    for (size_t i = 0; i < d->n_totals; i++) {
        const Mlxd__OpTotals *o = d->totals[i];
        if (!o)
            continue;
        char bytes[32], p50[32], p99[32];
        human_bytes(bytes, sizeof bytes, o->bytes);
        human_duration_us(p50, sizeof p50, o->p50_us);
        human_duration_us(p99, sizeof p99, o->p99_us);
        table_cell(&t, "%s", str_or(o->op, "-"));
        table_cell(&t, "%" PRIu64, o->count);
        table_cell(&t, "%s", bytes);
        table_cell(&t, "%s", p50);
        table_cell(&t, "%s", p99);
        table_cell(&t, "%" PRIu64, o->errors);
    }
    table_print(f, &t, "  ");
    table_free(&t);
}

// Prints "  key: value" with the value cleaned for the terminal.
static void print_field(FILE *f, const char *key, const char *value) {
    char *v = term_clean(value);
    fprintf(f, "  %-9s %s\n", key, v ? v : "?");
    free(v);
}

static void print_daemon(FILE *f, const Mlxd__DaemonStatus *d) {
    char up[32], line[1024];
    char *version = term_clean(str_or(d->version, "?"));
    char *host = term_clean(str_or(d->host, "?"));

    human_uptime_ms(up, sizeof up, d->uptime_ms);
    fprintf(f, "mlxd %s on %s, pid %" PRId32 ", up %s\n", version ? version : "?", host ? host : "?",
            d->pid, up);
    free(version);
    free(host);
    print_field(f, "endpoint:", str_or(d->endpoint, "-"));

    if (d->world_size > 0) {
        size_t o = (size_t) snprintf(line, sizeof line, "rank %" PRId32 " of %" PRId32,
                                     d->world_rank, d->world_size);
        size_t n = d->hosts ? d->n_hosts : 0;
        for (size_t i = 0; i < n && i < MAX_LISTED && o < sizeof line; i++)
            o += (size_t) snprintf(line + o, sizeof line - o, "%s%s", i ? ", " : " (",
                                   str_or(d->hosts[i], "?"));
        if (n > MAX_LISTED && o < sizeof line)
            o += (size_t) snprintf(line + o, sizeof line - o, ", +%zu more", n - MAX_LISTED);
        if (n > 0 && o < sizeof line)
            snprintf(line + o, sizeof line - o, ")");
        print_field(f, "world:", line);
    } else
        print_field(f, "world:", "-");
    print_field(f, "mpi:", str_or(d->mpi_version, "-"));
    fputc('\n', f);
    print_clients(f, d);
    fputc('\n', f);
    print_jobs(f, d);
    fputc('\n', f);
    print_totals(f, d);
}

/* ---- JSON output ---- */

#define JSON_MAX_DEPTH 8

struct json {
    FILE *f;
    int depth;
    bool has_items[JSON_MAX_DEPTH];  // per open container: something was written
};

// Writes s as a JSON string: quotes, backslashes and control characters
// escaped, invalid UTF-8 replaced by U+FFFD so the output always parses.
static void json_string(FILE *f, const char *s) {
    if (!s)
        s = "";
    size_t len = strlen(s);
    fputc('"', f);
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = utf8_next((const unsigned char *) s + i, len - i, &cp);
        switch (cp) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        case UINT32_MAX: fputs("\\ufffd", f); break;
        default:
            if (cp < 0x20 || cp == 0x7f)
                fprintf(f, "\\u%04x", (unsigned) cp);
            else
                fwrite(s + i, 1, n, f);
        }
        i += n;
    }
    fputc('"', f);
}

// Starts the next item of the current container, with its key in an object.
static void json_item(struct json *j, const char *key) {
    if (j->depth > 0) {
        if (j->has_items[j->depth])
            fputc(',', j->f);
        fputc('\n', j->f);
        j->has_items[j->depth] = true;
        fprintf(j->f, "%*s", 2 * j->depth, "");
    }
    if (key) {
        json_string(j->f, key);
        fputs(": ", j->f);
    }
}

static void json_open(struct json *j, const char *key, char bracket) {
    json_item(j, key);
    fputc(bracket, j->f);
    if (j->depth + 1 < JSON_MAX_DEPTH)
        j->depth++;
    j->has_items[j->depth] = false;
}

static void json_close(struct json *j, char bracket) {
    bool items = j->has_items[j->depth];
    if (j->depth > 0)
        j->depth--;
    if (items)
        fprintf(j->f, "\n%*s", 2 * j->depth, "");
    fputc(bracket, j->f);
    if (j->depth == 0)
        fputc('\n', j->f);
}

static void json_str(struct json *j, const char *key, const char *v) {
    json_item(j, key);
    json_string(j->f, v);
}

static void json_i64(struct json *j, const char *key, int64_t v) {
    json_item(j, key);
    fprintf(j->f, "%" PRId64, v);
}

static void json_u64(struct json *j, const char *key, uint64_t v) {
    json_item(j, key);
    fprintf(j->f, "%" PRIu64, v);
}

static void json_daemon(struct json *j, const Mlxd__DaemonStatus *d) {
    json_open(j, NULL, '{');
    json_str(j, "version", d->version);
    json_i64(j, "pid", d->pid);
    json_u64(j, "uptime_ms", d->uptime_ms);
    json_str(j, "endpoint", d->endpoint);
    json_str(j, "host", d->host);

    json_open(j, "world", '{');
    json_i64(j, "rank", d->world_rank);
    json_i64(j, "size", d->world_size);
    json_open(j, "hosts", '[');
    for (size_t i = 0; d->hosts && i < d->n_hosts; i++)
        json_str(j, NULL, d->hosts[i]);
    json_close(j, ']');
    json_str(j, "mpi_version", d->mpi_version);
    json_close(j, '}');

    json_open(j, "clients", '[');
    for (size_t i = 0; d->clients && i < d->n_clients; i++) {
        const Mlxd__ClientStatus *c = d->clients[i];
        if (!c)
            continue;
        json_open(j, NULL, '{');
        json_i64(j, "pid", c->pid);
        json_u64(j, "uid", c->uid);
        json_str(j, "job", c->job);
        json_i64(j, "rank", c->rank);
        json_u64(j, "group", c->group);
        json_u64(j, "ops", c->ops);
        json_str(j, "pending", c->pending);
        json_u64(j, "shm_segments", c->shm_segments);
        json_u64(j, "shm_bytes", c->shm_bytes);
        json_close(j, '}');
    }
    json_close(j, ']');

    json_open(j, "jobs", '[');
    for (size_t i = 0; d->jobs && i < d->n_jobs; i++) {
        const Mlxd__JobStatus *b = d->jobs[i];
        if (!b)
            continue;
        json_open(j, NULL, '{');
        json_str(j, "id", b->id);
        json_i64(j, "size", b->size);
        json_i64(j, "local_members", b->local_members);
        json_str(j, "state", b->state);
        json_u64(j, "ops_done", b->ops_done);
        json_str(j, "last_error", b->last_error);
        json_str(j, "stalled_op", b->stalled_op);
        json_open(j, "missing_ranks", '[');
        for (size_t k = 0; b->missing_ranks && k < b->n_missing_ranks; k++)
            json_i64(j, NULL, b->missing_ranks[k]);
        json_close(j, ']');
        json_u64(j, "stalled_ms", b->stalled_ms);
        json_u64(j, "uid", b->uid);
        json_i64(j, "groups", b->groups);
        json_close(j, '}');
    }
    json_close(j, ']');

    json_open(j, "totals", '[');
    for (size_t i = 0; d->totals && i < d->n_totals; i++) {
        const Mlxd__OpTotals *o = d->totals[i];
        if (!o)
            continue;
        json_open(j, NULL, '{');
        json_str(j, "op", o->op);
        json_u64(j, "count", o->count);
        json_u64(j, "bytes", o->bytes);
        json_u64(j, "p50_us", o->p50_us);
        json_u64(j, "p99_us", o->p99_us);
        json_u64(j, "errors", o->errors);
        json_close(j, '}');
    }
    json_close(j, ']');
    json_close(j, '}');
}

static void json_status(FILE *f, const Mlxd__StatusReply *s) {
    struct json j = { .f = f };
    json_open(&j, NULL, '{');
    json_open(&j, "daemons", '[');
    for (size_t i = 0; s->daemons && i < s->n_daemons; i++)
        if (s->daemons[i])
            json_daemon(&j, s->daemons[i]);
    json_close(&j, ']');
    json_close(&j, '}');
}

/* ---- talking to the daemon ---- */

struct conn {
    void *ctx;
    void *sock;
};

static void conn_close(struct conn *c) {
    if (c->sock)
        zmq_close(c->sock);
    if (c->ctx)
        zmq_ctx_term(c->ctx);
    c->sock = c->ctx = NULL;
}

static int conn_open(struct conn *c, const char *endpoint) {
    int linger = 0;
    int64_t maxsize = MAX_INCOMING_FRAME;
    c->ctx = zmq_ctx_new();
    if (!c->ctx)
        return -errno;
    c->sock = zmq_socket(c->ctx, ZMQ_DEALER);
    if (!c->sock) {
        int r = -zmq_errno();
        conn_close(c);
        return r;
    }
    if (zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof linger) < 0 ||
        zmq_setsockopt(c->sock, ZMQ_MAXMSGSIZE, &maxsize, sizeof maxsize) < 0 ||
        zmq_connect(c->sock, endpoint) < 0) {
        int r = -zmq_errno();
        conn_close(c);
        return r;
    }
    return 0;
}

// Receives frames until the reply to id arrives or deadline_us (wire_now_us)
// passes. Returns 0 with the decoded reply in *ret_reply (free with
// mlxd__reply__free_unpacked), -ETIMEDOUT, -EMSGSIZE for a protobuf frame
// over the limit, -EBADMSG for one that does not decode, or another -errno.
static int recv_reply(void *sock, uint64_t id, uint64_t deadline_us, Mlxd__Reply **ret_reply) {
    for (;;) {
        uint64_t now = wire_now_us();
        if (now >= deadline_us)
            return -ETIMEDOUT;
        zmq_pollitem_t item = { .socket = sock, .events = ZMQ_POLLIN };
        long wait_ms = (long) ((deadline_us - now + 999) / 1000);
        int n = zmq_poll(&item, 1, wait_ms);
        if (n < 0) {
            if (zmq_errno() == EINTR)
                continue;
            return -zmq_errno();
        }
        if (n == 0)
            continue;

        zmq_msg_t first;
        zmq_msg_init(&first);
        if (zmq_msg_recv(&first, sock, ZMQ_DONTWAIT) < 0) {
            int r = zmq_errno();
            zmq_msg_close(&first);
            if (r == EAGAIN || r == EINTR)
                continue;
            return -r;
        }
        // Status and ping replies carry no tensor frames; drop any that come.
        bool more = zmq_msg_more(&first);
        while (more) {
            zmq_msg_t extra;
            zmq_msg_init(&extra);
            if (zmq_msg_recv(&extra, sock, 0) < 0)
                more = false;
            else
                more = zmq_msg_more(&extra);
            zmq_msg_close(&extra);
        }

        size_t size = zmq_msg_size(&first);
        if (size > WIRE_MAX_REPLY_FRAME) {
            zmq_msg_close(&first);
            return -EMSGSIZE;
        }
        Mlxd__Reply *reply = mlxd__reply__unpack(NULL, size, zmq_msg_data(&first));
        zmq_msg_close(&first);
        if (!reply)
            return -EBADMSG;
        // id 0 is the daemon's answer to a request it could not decode.
        if (reply->id == id || (reply->id == 0 && reply->code != 0)) {
            *ret_reply = reply;
            return 0;
        }
        mlxd__reply__free_unpacked(reply, NULL);
    }
}

// Sends req on a new connection to endpoint and waits for its reply.
static int request(const char *endpoint, const Mlxd__Request *req, uint64_t deadline_us,
                   Mlxd__Reply **ret_reply) {
    struct conn c = { 0 };
    int r = conn_open(&c, endpoint);
    if (r < 0)
        return r;
    r = wire_send_pb(c.sock, &req->base, 0);
    if (r >= 0)
        r = recv_reply(c.sock, req->id, deadline_us, ret_reply);
    conn_close(&c);
    return r;
}

static bool is_absent(int r) {
    return r == -ENOENT || r == -ECONNREFUSED || r == -ENOTDIR;
}

// Prints why nothing could be reached at o's endpoint, as advice.
static void print_unreachable(const char *endpoint, bool given, int r, int timeout_ms) {
    if (r == -EACCES || r == -EPERM) {
        fprintf(stderr, "mlxctl: cannot connect to %s: %s; run as the daemon's user, as root, "
                "or as a member of the socket's group\n", endpoint, strerror(-r));
        return;
    }
    if (is_absent(r) || r == -ETIMEDOUT) {
        fprintf(stderr, "mlxctl: no mlxd answers at %s", endpoint);
        if (r == -ETIMEDOUT)
            fprintf(stderr, " (waited %g s)", timeout_ms / 1000.0);
        fputs(": ", stderr);
        mlxctl_print_start_hint(stderr, endpoint, given);
        fputc('\n', stderr);
        return;
    }
    fprintf(stderr, "mlxctl: cannot talk to mlxd at %s: %s\n", endpoint, strerror(-r));
}

static void print_bad_reply(const char *endpoint, int r) {
    if (r == -EMSGSIZE)
        fprintf(stderr, "mlxctl: mlxd at %s sent a reply larger than %u bytes; "
                "is it a different version than mlxctl %s?\n", endpoint, WIRE_MAX_REPLY_FRAME,
                MLXD_VERSION_STRING);
    else
        fprintf(stderr, "mlxctl: mlxd at %s sent a reply that does not decode; "
                "is it a different version than mlxctl %s?\n", endpoint, MLXD_VERSION_STRING);
}

int status_run(const struct status_opts *o) {
    bool ipc = wire_ipc_path(o->endpoint) != NULL;
    int r;

    if (ipc) {
        // Fails at once when nothing listens, rather than after the timeout.
        r = wire_probe_ipc(o->endpoint);
        if (r < 0) {
            print_unreachable(o->endpoint, o->endpoint_given, r, o->timeout_ms);
            return MLXCTL_EXIT_FAILURE;
        }
    }

    Mlxd__StatusRequest status = MLXD__STATUS_REQUEST__INIT;
    Mlxd__Request req = MLXD__REQUEST__INIT;
    status.world = o->world;
    req.id = 1;
    // The daemon's deadline comes first, so that a world query that cannot
    // reach every daemon still answers before mlxctl gives up.
    req.timeout_ms = (uint32_t) (o->timeout_ms > 4 ? o->timeout_ms / 4 * 3 : o->timeout_ms);
    req.body_case = MLXD__REQUEST__BODY_STATUS;
    req.status = &status;

    Mlxd__Reply *reply = NULL;
    r = request(o->endpoint, &req, wire_now_us() + (uint64_t) o->timeout_ms * 1000, &reply);
    if (r == -ETIMEDOUT && ipc) {
        fprintf(stderr, "mlxctl: mlxd at %s accepted the connection but did not answer within %g s; "
                "check its log (journalctl -u mlxd) or retry with a larger --timeout\n",
                o->endpoint, o->timeout_ms / 1000.0);
        return MLXCTL_EXIT_FAILURE;
    }
    if (r == -EMSGSIZE || r == -EBADMSG) {
        print_bad_reply(o->endpoint, r);
        return MLXCTL_EXIT_FAILURE;
    }
    if (r < 0) {
        print_unreachable(o->endpoint, o->endpoint_given, r, o->timeout_ms);
        return MLXCTL_EXIT_FAILURE;
    }

    int exit_status = MLXCTL_EXIT_FAILURE;
    if (reply->code != 0) {
        char *msg = term_clean(str_or(reply->message, "no detail given"));
        fprintf(stderr, "mlxctl: mlxd at %s refused the status request: %s: %s\n", o->endpoint,
                wire_error_name(reply->code), msg ? msg : "?");
        free(msg);
    } else if (reply->body_case != MLXD__REPLY__BODY_STATUS || !reply->status) {
        fprintf(stderr, "mlxctl: mlxd at %s answered without a status; "
                "is it a different version than mlxctl %s?\n", o->endpoint, MLXD_VERSION_STRING);
    } else {
        const Mlxd__StatusReply *s = reply->status;
        // A partial answer (some daemons of the world were silent) says so.
        if (str_or(reply->message, NULL)) {
            char *msg = term_clean(reply->message);
            fprintf(stderr, "mlxctl: warning: %s\n", msg ? msg : "?");
            free(msg);
        }
        if (o->json)
            json_status(stdout, s);
        else if (s->n_daemons == 0 || !s->daemons)
            printf("mlxd at %s reported no daemons\n", o->endpoint);
        else {
            bool first = true;
            for (size_t i = 0; i < s->n_daemons; i++) {
                if (!s->daemons[i])
                    continue;
                if (!first)
                    fputs("\n\n", stdout);
                print_daemon(stdout, s->daemons[i]);
                first = false;
            }
        }
        if (fflush(stdout) != 0 || ferror(stdout))
            fprintf(stderr, "mlxctl: cannot write the status: %s\n", strerror(errno));
        else
            exit_status = MLXCTL_EXIT_OK;
    }
    mlxd__reply__free_unpacked(reply, NULL);
    return exit_status;
}

int wait_run(const struct wait_opts *o) {
    uint64_t deadline = wire_now_us() + (uint64_t) o->timeout_ms * 1000;
    bool ipc = wire_ipc_path(o->endpoint) != NULL;
    int backoff_ms = WAIT_BACKOFF_MIN_MS;
    // The failure the final message explains: "no daemon" unless something
    // more telling happened (permission denied, a reply that is garbage).
    int verdict = -ETIMEDOUT;
    uint64_t id = 0;

    for (;;) {
        uint64_t now = wire_now_us();
        if (now >= deadline)
            break;
        int r = ipc ? wire_probe_ipc(o->endpoint) : 0;
        if (r >= 0) {
            Mlxd__Ping ping = MLXD__PING__INIT;
            Mlxd__Request req = MLXD__REQUEST__INIT;
            Mlxd__Reply *reply = NULL;
            uint64_t until = now + WAIT_ATTEMPT_MS * 1000;
            req.id = ++id;
            req.body_case = MLXD__REQUEST__BODY_PING;
            req.ping = &ping;
            r = request(o->endpoint, &req, until < deadline ? until : deadline, &reply);
            if (r >= 0) {
                int code = reply->code;
                mlxd__reply__free_unpacked(reply, NULL);
                if (code == 0)
                    return MLXCTL_EXIT_OK;
                r = -EAGAIN;        // starting or shutting down: ask again
            }
        }
        verdict = r == -ETIMEDOUT || r == -EAGAIN || is_absent(r) ? -ETIMEDOUT : r;

        now = wire_now_us();
        if (now >= deadline)
            break;
        uint64_t left_ms = (deadline - now + 999) / 1000;
        poll(NULL, 0, (int) ((uint64_t) backoff_ms < left_ms ? (uint64_t) backoff_ms : left_ms));
        backoff_ms = backoff_ms * 2 > WAIT_BACKOFF_MAX_MS ? WAIT_BACKOFF_MAX_MS : backoff_ms * 2;
    }
    if (verdict == -EMSGSIZE || verdict == -EBADMSG)
        print_bad_reply(o->endpoint, verdict);
    else
        print_unreachable(o->endpoint, o->endpoint_given, verdict, o->timeout_ms);
    return MLXCTL_EXIT_FAILURE;
}
