/*
 * log.c - timestamped single-write log lines on stderr (see include/log.h).
 *
 * The date and time up to the second are formatted once per second per
 * thread: gmtime_r takes glibc's time zone lock, and every request logs a
 * line.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static enum log_level log_min = LOG_INFO;

void log_set_level(enum log_level level)
{
	log_min = level;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *names[] = { "debug", "info", "warn", "error" };
	static _Thread_local time_t sec_cached = -1;
	static _Thread_local char sec_text[32];
	static _Thread_local size_t sec_len;
	char line[2048];
	struct timeval tv;
	size_t n;
	int k;
	va_list ap;

	if (level < log_min)
		return;
	gettimeofday(&tv, NULL);
	if (tv.tv_sec != sec_cached) {
		struct tm tm;

		gmtime_r(&tv.tv_sec, &tm);
		sec_len = strftime(sec_text, sizeof sec_text, "%Y-%m-%dT%H:%M:%S", &tm);
		sec_cached = tv.tv_sec;
	}
	memcpy(line, sec_text, sec_len);
	n = sec_len;
	k = snprintf(line + n, sizeof line - n, ".%03dZ %s ", (int)(tv.tv_usec / 1000), names[level]);
	if (k > 0)
		n += (size_t)k;
	va_start(ap, fmt);
	k = vsnprintf(line + n, sizeof line - n, fmt, ap);
	va_end(ap);
	if (k > 0)
		n = n + (size_t)k < sizeof line - 1 ? n + (size_t)k : sizeof line - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0) {
		/* nothing sensible to do when stderr is gone */
	}
}
