#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int max_level = LOG_INFO;
static bool sd_prefix;

static const char *const level_names[] = {
    [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert", [LOG_CRIT] = "crit",
    [LOG_ERR] = "error", [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
    [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

// True when stderr is the journal stream systemd set up for us.
static bool stderr_is_journal(void) {
    const char *e = getenv("JOURNAL_STREAM");
    unsigned long dev, ino;
    struct stat st;
    if (!e || sscanf(e, "%lu:%lu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
        return false;
    return st.st_dev == dev && st.st_ino == ino;
}

void log_setup(int level) {
    max_level = level;
    sd_prefix = stderr_is_journal();
}

void log_set_prefix(bool on) {
    sd_prefix = on;
}

int log_get_level(void) {
    return max_level;
}

int log_level_from_name(const char *name) {
    for (int i = LOG_ERR; i <= LOG_DEBUG; i++)
        if (strcmp(level_names[i], name) == 0)
            return i;
    return -1;
}

static void log_va(int level, const char *fmt, va_list ap) {
    char text[2048];
    vsnprintf(text, sizeof text, fmt, ap);
    if (sd_prefix) {
        fprintf(stderr, "<%d>%s\n", level, text);
        return;
    }
    struct timespec ts;
    struct tm tm;
    char when[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof when, "%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ld mlxd[%d] %s: %s\n", when, ts.tv_nsec / 1000000L, (int) getpid(),
            level_names[level], text);
}

void log_msg(int level, const char *fmt, ...) {
    if (level > max_level)
        return;
    int saved = errno;
    va_list ap;
    va_start(ap, fmt);
    log_va(level, fmt, ap);
    va_end(ap);
    errno = saved;
}

int log_errno(int level, int r, const char *fmt, ...) {
    if (level > max_level)
        return r;
    int saved = errno;
    va_list ap;
    errno = r < 0 ? -r : r;
    va_start(ap, fmt);
    log_va(level, fmt, ap);
    va_end(ap);
    errno = saved;
    return r;
}
