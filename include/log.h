/*
 * log.h - one-line log records on stderr.
 *
 * Every line starts with an ISO-8601 UTC timestamp and a level.  Lines are
 * written with a single write(2) so concurrent threads never interleave.
 * Request lines (log_request) carry method, path, status, events and latency.
 */
#ifndef MP_LOG_H
#define MP_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Lines below LEVEL are dropped (default LOG_INFO). */
void log_set_level(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
