/* The StatusReply of `mlxctl status`, printed as text laid out for a
 * terminal of 80 columns, or as JSON. Whatever the daemon sent prints
 * safely: strings are cleaned for the terminal (or escaped for JSON), absent
 * fields print as "-", and ids are 16 lowercase hex digits (JSON strings, so
 * that no parser rounds them to a double). */
#include "mlxctl.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

// How many hosts and missing ranks the text output lists before "+N more".
#define MAX_LISTED 16
// The width the text view is laid out for, and the indent of a row's
// detail lines (command line, stall, error).
#define TEXT_COLUMNS 80
#define DETAIL_INDENT 6

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
char *status_term_clean(const char *s) {
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

#define term_clean status_term_clean

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

// Counts that fit a column: "1234567", then "12.3M", "4.56G".
static void human_count(char *buf, size_t size, uint64_t n) {
    if (n < 10000000u)
        snprintf(buf, size, "%" PRIu64, n);
    else if (n < 10000000000u)
        snprintf(buf, size, "%.1fM", (double) n / 1e6);
    else
        snprintf(buf, size, "%.2fG", (double) n / 1e9);
}

/* ---- aligned tables ---- */

#define TABLE_MAX_COLS 12
#define TABLE_MAX_DETAILS 3

struct table {
    size_t ncols;
    const char *const *headers;
    const char *right;              // per column: 1 = right-aligned (numbers)
    const unsigned char *max;       // per column: widest it may be (0: any); longer cells are cut with "…"
    char **cells;                   // row-major, owned, each a term_clean()ed string
    char **details;                 // [row][TABLE_MAX_DETAILS]: lines printed under the row
    size_t ncells, cap, nrows;
};

// Makes room for nrows rows; false when out of memory.
static bool table_init(struct table *t, size_t nrows) {
    t->cap = nrows * t->ncols;
    t->ncells = 0;
    t->nrows = nrows;
    t->cells = calloc(t->cap ? t->cap : 1, sizeof *t->cells);
    t->details = calloc(nrows ? nrows * TABLE_MAX_DETAILS : 1, sizeof *t->details);
    return t->cells && t->details && t->ncols <= TABLE_MAX_COLS;
}

static char *format_va(const char *fmt, va_list ap) {
    char *raw = NULL;
    if (vasprintf(&raw, fmt, ap) < 0)
        return NULL;
    char *clean = term_clean(raw);
    free(raw);
    return clean;
}

// Fills the next cell; the row is implied by the column count. A cell that
// cannot be formatted prints as "?".
__attribute__((format(printf, 2, 3)))
static void table_cell(struct table *t, const char *fmt, ...) {
    va_list ap;
    if (t->ncells >= t->cap)
        return;
    va_start(ap, fmt);
    t->cells[t->ncells++] = format_va(fmt, ap);
    va_end(ap);
}

// Adds a line under the row being filled (the one of the last cell).
__attribute__((format(printf, 2, 3)))
static void table_detail(struct table *t, const char *fmt, ...) {
    va_list ap;
    if (t->ncells == 0)
        return;
    size_t row = (t->ncells - 1) / t->ncols;
    char **d = &t->details[row * TABLE_MAX_DETAILS];
    for (int i = 0; i < TABLE_MAX_DETAILS; i++)
        if (!d[i]) {
            va_start(ap, fmt);
            d[i] = format_va(fmt, ap);
            va_end(ap);
            return;
        }
}

// The byte length of s's first `cols` columns.
static size_t prefix_bytes(const char *s, size_t cols) {
    size_t i = 0;
    for (size_t w = 0; s[i]; i++) {
        if (((unsigned char) s[i] & 0xc0) != 0x80 && w++ == cols)
            break;
    }
    return i;
}

// Prints s in at most `cols` columns, cut with "…" when longer.
static void print_cut(FILE *f, const char *s, size_t cols) {
    if (display_width(s) <= cols) {
        fputs(s, f);
        return;
    }
    fwrite(s, 1, prefix_bytes(s, cols > 0 ? cols - 1 : 0), f);
    fputs("…", f);
}

// Prints text from column `indent` on, wrapped at spaces to TEXT_COLUMNS
// (a word longer than a line is cut where the line ends).
static void print_wrapped(FILE *f, size_t indent, const char *text) {
    size_t room = TEXT_COLUMNS > indent + 10 ? TEXT_COLUMNS - indent : 10;
    const char *p = text;
    while (*p == ' ')
        p++;
    while (*p) {
        size_t n = prefix_bytes(p, room);
        if (p[n]) {
            // Break at the last space that fits, if there is one.
            size_t k = n;
            while (k > 0 && p[k] != ' ')
                k--;
            if (k > 0)
                n = k;
        }
        fprintf(f, "%*s%.*s\n", (int) indent, "", (int) n, p);
        p += n;
        while (*p == ' ')
            p++;
    }
}

static void table_print(FILE *f, const struct table *t, const char *indent) {
    size_t nrows = t->ncells / t->ncols;
    size_t width[TABLE_MAX_COLS] = { 0 };
    if (t->ncols > TABLE_MAX_COLS)
        return;
    for (size_t c = 0; c < t->ncols; c++)
        width[c] = display_width(t->headers[c]);
    for (size_t i = 0; i < nrows * t->ncols; i++) {
        size_t c = i % t->ncols, w = display_width(t->cells[i] ? t->cells[i] : "?");
        if (t->max && t->max[c] && w > t->max[c])
            w = t->max[c];
        if (w > width[c])
            width[c] = w;
    }
    for (size_t r = 0; r <= nrows; r++) {
        fputs(indent, f);
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = r == 0 ? t->headers[c] : t->cells[(r - 1) * t->ncols + c];
            if (!s)
                s = "?";
            size_t w = display_width(s) < width[c] ? display_width(s) : width[c];
            size_t pad = width[c] - w;
            bool last = c + 1 == t->ncols;
            if (t->right[c])
                fprintf(f, "%*s", (int) pad, "");
            print_cut(f, s, width[c]);
            if (!t->right[c] && !last)
                fprintf(f, "%*s", (int) pad, "");
            if (!last)
                fputs("  ", f);
        }
        fputc('\n', f);
        for (int d = 0; r > 0 && d < TABLE_MAX_DETAILS; d++) {
            const char *line = t->details[(r - 1) * TABLE_MAX_DETAILS + d];
            if (line && *line)
                print_wrapped(f, DETAIL_INDENT, line);
        }
    }
}

static void table_free(struct table *t) {
    for (size_t i = 0; i < t->ncells; i++)
        free(t->cells[i]);
    for (size_t i = 0; t->details && i < t->nrows * TABLE_MAX_DETAILS; i++)
        free(t->details[i]);
    free(t->cells);
    free(t->details);
    t->cells = t->details = NULL;
    t->ncells = t->cap = t->nrows = 0;
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
    static const char *const headers[] = { "PID", "UID", "JOB", "RANK", "GROUP", "OPS", "WAITS IN" };
    static const char right[] = { 1, 1, 0, 1, 0, 1, 0 };
    static const unsigned char max[] = { 0, 0, 16, 0, 0, 0, 11 };
    struct table t = { .ncols = 7, .headers = headers, .right = right, .max = max };

    fprintf(f, "Clients:\n");
    if (d->n_clients == 0 || !d->clients) {
        fprintf(f, "  no clients\n");
        return;
    }
    if (!table_init(&t, d->n_clients)) {
        fprintf(f, "  (out of memory)\n");
        table_free(&t);
        return;
    }
    for (size_t i = 0; i < d->n_clients; i++) {
        const Mlxd__ClientStatus *c = d->clients[i];
        if (!c)
            continue;
        char ops[32];
        human_count(ops, sizeof ops, c->ops);
        table_cell(&t, "%" PRId32, c->pid);
        table_cell(&t, "%" PRIu32, c->uid);
        table_cell(&t, "%s", str_or(c->job, "-"));
        if (str_or(c->job, NULL))
            table_cell(&t, "%" PRId32, c->rank);
        else
            table_cell(&t, "-");
        if (c->group)
            table_cell(&t, WIRE_ID_FMT, c->group);
        else
            table_cell(&t, "-");
        table_cell(&t, "%s", ops);
        table_cell(&t, "%s", str_or(c->pending, "-"));
        char shm[64] = "";
        if (c->shm_segments) {
            char bytes[32];
            human_bytes(bytes, sizeof bytes, c->shm_bytes);
            snprintf(shm, sizeof shm, "  [shm %s in %" PRIu32 "]", bytes, c->shm_segments);
        }
        if (str_or(c->cmdline, NULL) || *shm)
            table_detail(&t, "%s%s", str_or(c->cmdline, "?"), shm);
    }
    table_print(f, &t, "  ");
    table_free(&t);
}

static void print_jobs(FILE *f, const Mlxd__DaemonStatus *d) {
    static const char *const headers[] = { "JOB", "SIZE", "LOCAL", "STATE", "AGE", "OPS", "OPS/S" };
    static const char right[] = { 0, 1, 1, 0, 1, 1, 1 };
    static const unsigned char max[] = { 28, 0, 0, 0, 0, 0, 0 };
    struct table t = { .ncols = 7, .headers = headers, .right = right, .max = max };

    fprintf(f, "Jobs:\n");
    if (d->n_jobs == 0 || !d->jobs) {
        fprintf(f, "  no jobs\n");
        return;
    }
    if (!table_init(&t, d->n_jobs)) {
        fprintf(f, "  (out of memory)\n");
        table_free(&t);
        return;
    }
    for (size_t i = 0; i < d->n_jobs; i++) {
        const Mlxd__JobStatus *j = d->jobs[i];
        if (!j)
            continue;
        char age[32], ops[32];
        human_uptime_ms(age, sizeof age, j->age_ms);
        human_count(ops, sizeof ops, j->ops_done);
        table_cell(&t, "%s", str_or(j->id, "-"));
        table_cell(&t, "%" PRId32, j->size);
        table_cell(&t, "%" PRId32, j->local_members);
        table_cell(&t, "%s", str_or(j->state, "-"));
        table_cell(&t, "%s", age);
        table_cell(&t, "%s", ops);
        table_cell(&t, j->ops_per_s < 100 ? "%.1f" : "%.0f", j->ops_per_s);
        if (str_or(j->stalled_op, NULL)) {
            char missing[256], dur[32];
            format_ranks(missing, sizeof missing, j->missing_ranks, j->missing_ranks ? j->n_missing_ranks : 0);
            human_duration_ms(dur, sizeof dur, j->stalled_ms);
            table_detail(&t, "stalled in %s for %s%s%s", j->stalled_op, dur, *missing ? ", waiting for rank(s) " : "",
                         missing);
        }
        if (str_or(j->last_error, NULL))
            table_detail(&t, "last error: %s", j->last_error);
    }
    table_print(f, &t, "  ");
    table_free(&t);
}

static void print_recent(FILE *f, const Mlxd__DaemonStatus *d) {
    static const char *const headers[] = { "JOB", "SIZE", "DURATION", "RESULT" };
    static const char right[] = { 0, 1, 1, 0 };
    static const unsigned char max[] = { 40, 0, 0, 0 };
    struct table t = { .ncols = 4, .headers = headers, .right = right, .max = max };

    fprintf(f, "Recent jobs:\n");
    if (d->n_recent_jobs == 0 || !d->recent_jobs) {
        fprintf(f, "  none ended yet\n");
        return;
    }
    if (!table_init(&t, d->n_recent_jobs)) {
        fprintf(f, "  (out of memory)\n");
        table_free(&t);
        return;
    }
    // Newest first: the one that just failed is the one to see.
    for (size_t i = d->n_recent_jobs; i-- > 0;) {
        const Mlxd__RecentJob *r = d->recent_jobs[i];
        if (!r)
            continue;
        char dur[32];
        human_duration_ms(dur, sizeof dur, r->duration_ms);
        table_cell(&t, "%s", str_or(r->id, "-"));
        table_cell(&t, "%" PRId32, r->size);
        table_cell(&t, "%s", dur);
        table_cell(&t, "%s", str_or(r->result, "-"));
        if (str_or(r->error, NULL))
            table_detail(&t, "%s", r->error);
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
        table_free(&t);
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

// Prints "  key:     value", the value cleaned and wrapped to 80 columns.
static void print_field(FILE *f, const char *key, const char *value) {
    char *v = term_clean(value);
    const char *s = v ? v : "?";
    size_t room = TEXT_COLUMNS - 12, n = prefix_bytes(s, room);
    if (s[n]) {
        size_t k = n;
        while (k > 0 && s[k] != ' ')
            k--;
        if (k > 0)
            n = k;
    }
    fprintf(f, "  %-9s %.*s\n", key, (int) n, s);
    if (s[n])
        print_wrapped(f, 12, s + n);
    free(v);
}

static void print_daemon(FILE *f, const Mlxd__DaemonStatus *d) {
    char up[32], line[1024], rss[32];
    char *version = term_clean(str_or(d->version, "?"));
    char *host = term_clean(str_or(d->host, "?"));

    human_uptime_ms(up, sizeof up, d->uptime_ms);
    snprintf(line, sizeof line, "mlxd %s on %s, pid %" PRId32 ", up %s", version ? version : "?", host ? host : "?",
             d->pid, up);
    print_cut(f, line, TEXT_COLUMNS);
    fputc('\n', f);
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
    human_bytes(rss, sizeof rss, d->rss_bytes);
    snprintf(line, sizeof line, "cpu %.1f%% of a core over the last second, rss %s", d->cpu_percent, rss);
    print_field(f, "usage:", line);
    fputc('\n', f);
    print_clients(f, d);
    fputc('\n', f);
    print_jobs(f, d);
    fputc('\n', f);
    print_recent(f, d);
    fputc('\n', f);
    print_totals(f, d);
}

void status_print_text(FILE *f, const Mlxd__StatusReply *s, const char *endpoint) {
    if (s->n_daemons == 0 || !s->daemons) {
        fprintf(f, "mlxd at %s reported no daemons\n", endpoint);
        return;
    }
    bool first = true;
    for (size_t i = 0; i < s->n_daemons; i++) {
        if (!s->daemons[i])
            continue;
        if (!first)
            fputs("\n\n", f);
        print_daemon(f, s->daemons[i]);
        first = false;
    }
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

// An id as a string of 16 hex digits; "" for none (0).
static void json_id(struct json *j, const char *key, uint64_t v) {
    json_item(j, key);
    if (v)
        fprintf(j->f, "\"" WIRE_ID_FMT "\"", v);
    else
        fputs("\"\"", j->f);
}

static void json_double(struct json *j, const char *key, double v) {
    json_item(j, key);
    fprintf(j->f, "%.3f", v == v && v < 1e300 && v > -1e300 ? v : 0.0);
}

static void json_client(struct json *j, const Mlxd__ClientStatus *c) {
    json_open(j, NULL, '{');
    json_i64(j, "pid", c->pid);
    json_u64(j, "uid", c->uid);
    json_str(j, "job", c->job);
    json_i64(j, "rank", c->rank);
    json_id(j, "group", c->group);
    json_u64(j, "ops", c->ops);
    json_str(j, "pending", c->pending);
    json_u64(j, "shm_segments", c->shm_segments);
    json_u64(j, "shm_bytes", c->shm_bytes);
    json_str(j, "cmdline", c->cmdline);
    json_close(j, '}');
}

static void json_job(struct json *j, const Mlxd__JobStatus *b) {
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
    json_u64(j, "age_ms", b->age_ms);
    json_double(j, "ops_per_s", b->ops_per_s);
    json_close(j, '}');
}

static void json_recent_job(struct json *j, const Mlxd__RecentJob *r) {
    json_open(j, NULL, '{');
    json_str(j, "id", r->id);
    json_i64(j, "size", r->size);
    json_u64(j, "duration_ms", r->duration_ms);
    json_str(j, "result", r->result);
    json_str(j, "error", r->error);
    json_close(j, '}');
}

static void json_totals(struct json *j, const Mlxd__OpTotals *o) {
    json_open(j, NULL, '{');
    json_str(j, "op", o->op);
    json_u64(j, "count", o->count);
    json_u64(j, "bytes", o->bytes);
    json_u64(j, "p50_us", o->p50_us);
    json_u64(j, "p99_us", o->p99_us);
    json_u64(j, "errors", o->errors);
    json_close(j, '}');
}

// The array key of n entries of v, each printed by one (NULL entries left out).
#define JSON_ARRAY(j, key, v, n, one)                                                                         \
    do {                                                                                                       \
        json_open(j, key, '[');                                                                                \
        for (size_t i_ = 0; (v) && i_ < (n); i_++)                                                             \
            if ((v)[i_])                                                                                       \
                one(j, (v)[i_]);                                                                               \
        json_close(j, ']');                                                                                    \
    } while (0)

static void json_daemon(struct json *j, const Mlxd__DaemonStatus *d) {
    json_open(j, NULL, '{');
    json_str(j, "version", d->version);
    json_i64(j, "pid", d->pid);
    json_u64(j, "uptime_ms", d->uptime_ms);
    json_str(j, "endpoint", d->endpoint);
    json_str(j, "host", d->host);
    json_double(j, "cpu_percent", d->cpu_percent);
    json_u64(j, "rss_bytes", d->rss_bytes);

    json_open(j, "world", '{');
    json_i64(j, "rank", d->world_rank);
    json_i64(j, "size", d->world_size);
    json_open(j, "hosts", '[');
    for (size_t i = 0; d->hosts && i < d->n_hosts; i++)
        json_str(j, NULL, d->hosts[i]);
    json_close(j, ']');
    json_str(j, "mpi_version", d->mpi_version);
    json_close(j, '}');

    JSON_ARRAY(j, "clients", d->clients, d->n_clients, json_client);
    JSON_ARRAY(j, "jobs", d->jobs, d->n_jobs, json_job);
    JSON_ARRAY(j, "recent_jobs", d->recent_jobs, d->n_recent_jobs, json_recent_job);
    JSON_ARRAY(j, "totals", d->totals, d->n_totals, json_totals);
    json_close(j, '}');
}

void status_print_json(FILE *f, const Mlxd__StatusReply *s) {
    struct json j = { .f = f };
    json_open(&j, NULL, '{');
    JSON_ARRAY(&j, "daemons", s->daemons, s->n_daemons, json_daemon);
    json_close(&j, '}');
}

