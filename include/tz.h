/*
 * tz.h - time zones for bucketing events by a project's local time.
 *
 * A struct tz is immutable once loaded: every function below only reads it,
 * so one zone may be shared by any number of threads.  The module has no
 * global state and never touches the process's TZ or the C library's
 * localtime machinery.
 *
 * Loading.  tz_load("UTC") and tz_load("Etc/UTC") need no file; any other
 * NAME is read from TZ_ZONEINFO/NAME, a TZif file (RFC 8536, versions 1-4;
 * a version byte of 5-9 is read with the version 4 layout).
 * From a version 2+ file only the 64-bit data block and the footer are used.
 * Local time before the first transition is time type 0; on or after the
 * last transition it is the footer's POSIX TZ string when there is one
 * (std offset [dst [offset] ,start[/time],end[/time]] with Jn, n and Mm.w.d
 * dates and times of -167..167 hours), else the last transition's type.
 * Leap-second records are checked for size and otherwise ignored (a
 * "right/" zone is read as if its times were POSIX times).  The file is
 * untrusted: every count and index is bounds-checked, and MP_E_INVALID is
 * returned for anything malformed: bad magic or version, truncation at any
 * byte, no time types, a type index out of range, transition times not
 * strictly ascending, a UT offset outside +-25:59:59, a missing or bad
 * footer (a DST zone must spell out its rule).  Other errors: MP_E_NOTFOUND
 * (no such zone file), MP_E_IO, MP_E_NOMEM.
 *
 * Instants.  All instants are int64 milliseconds since the Unix epoch (UTC).
 * Inputs are clamped to +-TZ_MS_MAX (JavaScript's Date range, years -271821
 * to 275760); within it no arithmetic overflows.
 *
 * Buckets.  A bucket of a unit (minute, hour, day, Monday-based week, month)
 * is a maximal run of instants whose local wall time has the same truncation
 * to that unit (its key), additionally cut wherever the local clock shows
 * exactly the start of a unit.  So:
 *   - a day over a DST change lasts 23 or 25 hours;
 *   - a spring-forward gap has no hour bucket; the bucket after it starts
 *     where the gap ends (e.g. at 03:00);
 *   - a fall-back that repeats 01:00-02:00 gives two hour buckets with the
 *     same key "... 01:00:00"; a repeated half hour (Lord Howe, 02:00 ->
 *     01:30) stays in the 01:00 bucket, which then lasts 90 minutes;
 *   - hour buckets start at local :00 also for +5:30 or +5:45 zones.
 * tz_bucket_floor and tz_bucket_next walk the same boundary set, so
 * floor(x) <= x < next(floor(x)) and floor(next(b)) == next(b) for any
 * bucket start b and any instant x well inside the clamped range.
 */
#ifndef MP_TZ_H
#define MP_TZ_H

#include <stddef.h>
#include <stdint.h>
#include "err.h"

#define TZ_ZONEINFO "/usr/share/zoneinfo"
#define TZ_FILE_MAX (1 << 20)            /* larger "zone files" are refused */
#define TZ_MS_MAX INT64_C(8640000000000000)

struct tz;

/* Load zone NAME (see above).  NAME must be relative, without "..", and
 * made of [A-Za-z0-9/_+.-].  On success *OUT is the caller's to tz_free(). */
enum mp_err tz_load(const char *name, struct tz **out);
/* Parse the LEN bytes of a TZif file at DATA (need not be NUL-terminated).
 * On failure *OUT is not written. */
enum mp_err tz_parse(const unsigned char *data, size_t len, struct tz **out);
void tz_free(struct tz *tz);             /* NULL-safe */

/* UT offset in seconds east of UTC in force at UTC_MS.  O(log transitions). */
int32_t tz_offset_at(const struct tz *tz, int64_t utc_ms);

struct tz_civil {
	int year, month /* 1-12 */, day /* 1-31 */;
	int hour, minute, second;
	int wday;                        /* 0 = Monday .. 6 = Sunday */
};

/* Local wall time at UTC_MS. */
void tz_to_civil(const struct tz *tz, int64_t utc_ms, struct tz_civil *out);
/* UTC ms of local wall time Y-M-D HH:MM:00.  Fields may be out of range
 * and are normalized (day 32, month 13, hour -1, ...).  A wall time in a
 * gap gives the instant the gap ends; an ambiguous one the earlier instant. */
int64_t tz_from_civil(const struct tz *tz, int y, int m, int d, int hh, int mm);

enum tz_unit { TZ_MINUTE, TZ_HOUR, TZ_DAY, TZ_WEEK /* from Monday */, TZ_MONTH };

/* Start (UTC ms, a whole second) of the local bucket of UNIT holding UTC_MS. */
int64_t tz_bucket_floor(const struct tz *tz, enum tz_unit unit, int64_t utc_ms);
/* Start of the bucket after the one holding START (normally a bucket start). */
int64_t tz_bucket_next(const struct tz *tz, enum tz_unit unit, int64_t start);
/* Mixpanel's key of the bucket holding START, in local time: "YYYY-MM-DD"
 * for day, week (its Monday) and month (its 1st), "YYYY-MM-DD HH:00:00"
 * for hour, "YYYY-MM-DD HH:MM:00" for minute.  Writes a NUL-terminated
 * string into BUF (N >= 20 holds every key of years 0..9999; longer keys
 * are truncated) and returns its length. */
size_t tz_bucket_key(const struct tz *tz, enum tz_unit unit, int64_t start, char *buf, size_t n);

/* Strict "YYYY-MM-DD": exactly LEN == 10, a real date, year 1970..9999.
 * Returns 1 and sets the fields, else 0 (fields untouched). */
int tz_parse_date(const char *s, size_t len, int *y, int *m, int *d);

/* Proleptic Gregorian calendar: days since 1970-01-01 of Y-M-D, where M
 * and D may be out of range (normalized like tz_from_civil); and back
 * (DAYS is clamped so that the year fits an int). */
int64_t tz_days_from_civil(int y, int m, int d);
void tz_civil_from_days(int64_t days, int *y, int *m, int *d);

#endif
