/* Logging to stderr. Under systemd (stderr connected to the journal) every
 * line starts with an sd-daemon priority prefix ("<3>") so journald keeps its
 * level; otherwise lines read "mlxd: error: …" with a timestamp. Settings are
 * process-wide globals (the one exception STYLE.md allows). */
#ifndef MLXD_LOG_H
#define MLXD_LOG_H

#include <stdbool.h>
#include <syslog.h>

// Sets the most verbose level printed (LOG_ERR … LOG_DEBUG); detects journald
// from $JOURNAL_STREAM unless prefix is forced with log_set_prefix().
void log_setup(int max_level);
void log_set_prefix(bool on);
int log_get_level(void);

// "error", "warning", "notice", "info", "debug" to a level; -1 otherwise.
int log_level_from_name(const char *name);

void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Logs with errno set to -r (so "%m" names it) and returns r, for
// `return log_errno(LOG_ERR, r, "Failed to bind %s: %m", ep);`.
int log_errno(int level, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_error(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
