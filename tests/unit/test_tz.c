/*
 * test_tz.c - unit tests for src/tz.c (contract: include/tz.h).
 *
 * What is checked: the calendar helpers and tz_parse_date; offsets, civil
 * times, tz_from_civil (gaps and overlaps), bucket floors, nexts and keys in
 * UTC, America/Los_Angeles, Europe/Paris, Australia/Lord_Howe (30-minute
 * DST), Asia/Kolkata, Asia/Kathmandu and Etc/GMT+5, from 1971 to 2100 (the
 * years after 2037 come from the POSIX footer); footer rules of every form
 * on hand-built TZif files; rejection of missing zones, bad names and every
 * truncation or corruption of a real file; the floor/next invariants on
 * random instants; and, against glibc's localtime_r (TZ is set only here),
 * 10,000 random instants 1971-2037 in America/New_York and Europe/Berlin
 * plus footer zones up to 2200.
 *
 * Expected instants are written as U(y, m, d, h, mi, s) in UTC, computed by
 * a naive day count that shares no code with tz.c; the values were checked
 * by hand against the zones' published rules (and zdump).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tz.h"
#include "testlib.h"

#define H 3600
#define ZI TZ_ZONEINFO "/"

/* ---------- helpers ---------- */

static int t_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* UTC ms of y-m-d h:mi:s by counting days one year and month at a time
 * (years >= 1900). */
static int64_t U(int y, int m, int d, int h, int mi, int s)
{
	static const int ml[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int64_t days = 0;
	int i;

	for (i = 1970; i < y; i++)
		days += t_leap(i) ? 366 : 365;
	for (i = y; i < 1970; i++)
		days -= t_leap(i) ? 366 : 365;
	for (i = 1; i < m; i++)
		days += ml[i - 1] + (i == 2 && t_leap(y));
	days += d - 1;
	return ((days * 24 + h) * 60 + mi) * 60000 + (int64_t)s * 1000;
}

static struct tz *load(const char *name)
{
	struct tz *tz = NULL;
	enum mp_err rc = tz_load(name, &tz);

	if (rc != MP_OK || !tz) {
		fprintf(stderr, "test_tz: cannot load zone %s: %s (is %s installed?)\n", name,
			mp_strerror(rc), TZ_ZONEINFO);
		tl_cur_failed = 1;
		return NULL;
	}
	return tz;
}

static unsigned char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *data;
	long n;

	if (!f) {
		fprintf(stderr, "test_tz: cannot open %s\n", path);
		return NULL;
	}
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0 ||
	    !(data = malloc((size_t)n + 1)) || fread(data, 1, (size_t)n, f) != (size_t)n) {
		fclose(f);
		return NULL;
	}
	fclose(f);
	*len = (size_t)n;
	return data;
}

static const char *key(const struct tz *tz, enum tz_unit u, int64_t start)
{
	static char buf[64];
	size_t n = tz_bucket_key(tz, u, start, buf, sizeof buf);

	if (n != strlen(buf))
		return "(length mismatch)";
	return buf;
}

/* ---------- hand-built TZif files ---------- */

struct tb {
	unsigned char b[4096];
	size_t n;
};

static void tb_put(struct tb *t, const void *p, size_t n)
{
	if (n > 0 && t->n + n <= sizeof t->b) {
		memcpy(t->b + t->n, p, n);
		t->n += n;
	}
}

static void tb_u32(struct tb *t, uint32_t v)
{
	unsigned char x[4] = { (unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
			       (unsigned char)v };

	tb_put(t, x, 4);
}

static void tb_i64(struct tb *t, int64_t v)
{
	tb_u32(t, (uint32_t)((uint64_t)v >> 32));
	tb_u32(t, (uint32_t)v);
}

static void tb_header(struct tb *t, char version, uint32_t timecnt, uint32_t typecnt, uint32_t charcnt)
{
	static const unsigned char zero[15];

	tb_put(t, "TZif", 4);
	tb_put(t, &version, 1);
	tb_put(t, zero, 15);
	tb_u32(t, 0);          /* isutcnt */
	tb_u32(t, 0);          /* isstdcnt */
	tb_u32(t, 0);          /* leapcnt */
	tb_u32(t, timecnt);
	tb_u32(t, typecnt);
	tb_u32(t, charcnt);
}

/* A version-2 file: a minimal v1 block, then N transitions at AT[i] to type
 * IDX[i], NT types with offsets OFF[], and FOOTER (NULL: none at all). */
static void tb_build(struct tb *t, const int64_t *at, const unsigned char *idx, size_t n,
		     const int32_t *off, size_t nt, const char *footer)
{
	size_t i;

	t->n = 0;
	tb_header(t, '2', 0, 1, 1);
	tb_u32(t, 0);
	tb_put(t, "\0\0\0", 3);        /* isdst 0, desigidx 0, then the one char */
	tb_header(t, '2', (uint32_t)n, (uint32_t)nt, 4);
	for (i = 0; i < n; i++)
		tb_i64(t, at[i]);
	tb_put(t, idx, n);
	for (i = 0; i < nt; i++) {
		tb_u32(t, (uint32_t)off[i]);
		tb_put(t, "\0\0", 2);
	}
	tb_put(t, "ABC\0", 4);
	if (footer) {
		tb_put(t, "\n", 1);
		tb_put(t, footer, strlen(footer));
		tb_put(t, "\n", 1);
	}
}

static struct tz *footer_zone(const char *footer)
{
	static const int32_t off[1] = { 0 };
	struct tb t;
	struct tz *tz = NULL;
	enum mp_err rc;

	tb_build(&t, NULL, NULL, 0, off, 1, footer);
	rc = tz_parse(t.b, t.n, &tz);
	if (rc != MP_OK) {
		fprintf(stderr, "test_tz: footer \"%s\" rejected: %s\n", footer, mp_strerror(rc));
		tl_cur_failed = 1;
		return NULL;
	}
	return tz;
}

/* ---------- calendar ---------- */

static void days_from_civil_matches_known_dates_and_normalizes(void)
{
	static const struct { int y, m, d; int64_t days; } tab[] = {
		{ 1970, 1, 1, 0 }, { 1969, 12, 31, -1 }, { 2000, 3, 1, 11017 }, { 2024, 3, 10, 19792 },
		{ 1900, 1, 1, -25567 }, { 2100, 1, 1, 47482 }, { 2038, 1, 19, 24855 },
		{ 2024, 13, 1, 20089 },   /* = 2025-01-01 */
		{ 2024, 3, 0, 19782 },    /* = 2024-02-29 */
		{ 2024, 0, 1, 19692 },    /* = 2023-12-01 */
		{ 2024, 1, 32, 19754 },   /* = 2024-02-01 */
		{ 2024, 25, 1, 20454 },   /* = 2026-01-01 */
		{ 2024, -11, 1, 19358 },  /* = 2023-01-01 */
	};
	size_t i;

	for (i = 0; i < sizeof tab / sizeof tab[0]; i++)
		CHECK_INT(tz_days_from_civil(tab[i].y, tab[i].m, tab[i].d), tab[i].days);
}

static void civil_from_days_round_trips(void)
{
	int64_t days;
	int y, m, d, ok = 1;

	tz_civil_from_days(19782, &y, &m, &d);
	CHECK_INT(y, 2024);
	CHECK_INT(m, 2);
	CHECK_INT(d, 29);
	tz_civil_from_days(-1, &y, &m, &d);
	CHECK(y == 1969 && m == 12 && d == 31);
	tz_civil_from_days(-719468, &y, &m, &d);          /* 0000-03-01 */
	CHECK(y == 0 && m == 3 && d == 1);
	for (days = -800000; days < 3000000 && ok; days += 7) {
		tz_civil_from_days(days, &y, &m, &d);
		if (tz_days_from_civil(y, m, d) != days || m < 1 || m > 12 || d < 1 || d > 31) {
			CHECK_INT(tz_days_from_civil(y, m, d), days);
			ok = 0;
		}
	}
	/* huge values are clamped, not undefined */
	tz_civil_from_days(INT64_MAX, &y, &m, &d);
	CHECK(y > 1000000);
	tz_civil_from_days(INT64_MIN, &y, &m, &d);
	CHECK(y < -1000000);
}

static void parse_date_is_strict(void)
{
	static const struct { const char *s; int ok, y, m, d; } tab[] = {
		{ "2024-02-29", 1, 2024, 2, 29 },
		{ "1970-01-01", 1, 1970, 1, 1 },
		{ "9999-12-31", 1, 9999, 12, 31 },
		{ "2000-02-29", 1, 2000, 2, 29 },
		{ "2024-02-30", 0, 0, 0, 0 },
		{ "2023-02-29", 0, 0, 0, 0 },
		{ "1900-02-29", 0, 0, 0, 0 },
		{ "2024-2-01", 0, 0, 0, 0 },
		{ "2024-02-01x", 0, 0, 0, 0 },
		{ "2024-02-1", 0, 0, 0, 0 },
		{ "1969-12-31", 0, 0, 0, 0 },
		{ "2024-00-10", 0, 0, 0, 0 },
		{ "2024-13-10", 0, 0, 0, 0 },
		{ "2024-04-31", 0, 0, 0, 0 },
		{ "2024-04-00", 0, 0, 0, 0 },
		{ "2024/04/01", 0, 0, 0, 0 },
		{ "+024-04-01", 0, 0, 0, 0 },
		{ "2024-04- 1", 0, 0, 0, 0 },
		{ "", 0, 0, 0, 0 },
	};
	size_t i;

	for (i = 0; i < sizeof tab / sizeof tab[0]; i++) {
		int y = -1, m = -1, d = -1;
		int ok = tz_parse_date(tab[i].s, strlen(tab[i].s), &y, &m, &d);

		if (ok != tab[i].ok)
			fprintf(stderr, "parse_date(\"%s\")\n", tab[i].s);
		CHECK_INT(ok, tab[i].ok);
		if (tab[i].ok) {
			CHECK(y == tab[i].y && m == tab[i].m && d == tab[i].d);
		} else {
			CHECK(y == -1 && m == -1 && d == -1);
		}
	}
	/* the length is what counts, not a NUL */
	CHECK_INT(tz_parse_date("2024-02-01x", 10, &(int){ 0 }, &(int){ 0 }, &(int){ 0 }), 1);
	CHECK_INT(tz_parse_date("2024-02-01", 9, &(int){ 0 }, &(int){ 0 }, &(int){ 0 }), 0);
}

/* ---------- offsets ---------- */

struct off_case {
	const char *zone;
	int64_t at;
	int32_t off;
};

static void offsets_match_hand_checked_table(void)
{
	const struct off_case tab[] = {
		{ "UTC", 0, 0 },
		{ "Etc/UTC", U(2024, 6, 1, 0, 0, 0), 0 },
		/* Los Angeles 2024: PDT from Mar 10 10:00Z, PST from Nov 3 09:00Z */
		{ "America/Los_Angeles", U(2024, 3, 10, 9, 59, 59), -8 * H },
		{ "America/Los_Angeles", U(2024, 3, 10, 10, 0, 0), -7 * H },
		{ "America/Los_Angeles", 1710064800000 - 1, -8 * H },
		{ "America/Los_Angeles", U(2024, 11, 3, 8, 59, 59), -7 * H },
		{ "America/Los_Angeles", U(2024, 11, 3, 9, 0, 0), -8 * H },
		/* 1971: last Sunday of April to last Sunday of October */
		{ "America/Los_Angeles", U(1971, 4, 25, 9, 59, 59), -8 * H },
		{ "America/Los_Angeles", U(1971, 4, 25, 10, 0, 0), -7 * H },
		{ "America/Los_Angeles", U(1971, 10, 31, 8, 59, 59), -7 * H },
		{ "America/Los_Angeles", U(1971, 10, 31, 9, 0, 0), -8 * H },
		/* 2100 (footer PST8PDT,M3.2.0,M11.1.0): Mar 14 and Nov 7 */
		{ "America/Los_Angeles", U(2100, 3, 14, 9, 59, 59), -8 * H },
		{ "America/Los_Angeles", U(2100, 3, 14, 10, 0, 0), -7 * H },
		{ "America/Los_Angeles", U(2100, 11, 7, 8, 59, 59), -7 * H },
		{ "America/Los_Angeles", U(2100, 11, 7, 9, 0, 0), -8 * H },
		/* Paris: 01:00Z on the last Sundays of March and October */
		{ "Europe/Paris", U(2024, 3, 31, 0, 59, 59), 1 * H },
		{ "Europe/Paris", U(2024, 3, 31, 1, 0, 0), 2 * H },
		{ "Europe/Paris", U(2024, 10, 27, 0, 59, 59), 2 * H },
		{ "Europe/Paris", U(2024, 10, 27, 1, 0, 0), 1 * H },
		{ "Europe/Paris", U(1971, 7, 1, 12, 0, 0), 1 * H },     /* no DST until 1976 */
		{ "Europe/Paris", U(2100, 3, 28, 0, 59, 59), 1 * H },
		{ "Europe/Paris", U(2100, 3, 28, 1, 0, 0), 2 * H },
		{ "Europe/Paris", U(2100, 10, 31, 0, 59, 59), 2 * H },
		{ "Europe/Paris", U(2100, 10, 31, 1, 0, 0), 1 * H },
		/* Kolkata +5:30 and Kathmandu +5:45 */
		{ "Asia/Kolkata", U(2024, 1, 1, 0, 10, 0), 19800 },
		{ "Asia/Kolkata", U(2100, 1, 1, 0, 0, 0), 19800 },
		{ "Asia/Kolkata", U(1971, 1, 1, 0, 0, 0), 19800 },
		{ "Asia/Kathmandu", U(2024, 1, 1, 0, 0, 0), 20700 },
		{ "Asia/Kathmandu", U(1971, 1, 1, 0, 0, 0), 19800 },    /* +5:30 until 1986 */
		/* Etc/GMT+5 is UTC-5 all the time */
		{ "Etc/GMT+5", U(1971, 1, 1, 0, 0, 0), -5 * H },
		{ "Etc/GMT+5", U(2024, 7, 1, 0, 0, 0), -5 * H },
		{ "Etc/GMT+5", U(2100, 7, 1, 0, 0, 0), -5 * H },
		/* footers with /26, /-1, /24 and negative DST */
		{ "Asia/Jerusalem", U(2100, 3, 25, 23, 59, 59), 2 * H },  /* M3.4.4/26 */
		{ "Asia/Jerusalem", U(2100, 3, 26, 0, 0, 0), 3 * H },
		{ "Asia/Jerusalem", U(2100, 10, 30, 22, 59, 59), 3 * H },
		{ "Asia/Jerusalem", U(2100, 10, 30, 23, 0, 0), 2 * H },
		{ "America/Nuuk", U(2100, 3, 28, 0, 59, 59), -2 * H },   /* M3.5.0/-1 */
		{ "America/Nuuk", U(2100, 3, 28, 1, 0, 0), -1 * H },
		{ "America/Nuuk", U(2100, 10, 31, 0, 59, 59), -1 * H },  /* M10.5.0/0 */
		{ "America/Nuuk", U(2100, 10, 31, 1, 0, 0), -2 * H },
		{ "America/Santiago", U(2100, 9, 5, 3, 59, 59), -4 * H }, /* M9.1.6/24 */
		{ "America/Santiago", U(2100, 9, 5, 4, 0, 0), -3 * H },
		{ "America/Santiago", U(2100, 4, 4, 2, 59, 59), -3 * H }, /* M4.1.6/24 */
		{ "America/Santiago", U(2100, 4, 4, 3, 0, 0), -4 * H },
		{ "Europe/Dublin", U(2100, 3, 28, 0, 59, 59), 0 },        /* IST-1GMT0 */
		{ "Europe/Dublin", U(2100, 3, 28, 1, 0, 0), 1 * H },
		{ "Europe/Dublin", U(2100, 12, 1, 0, 0, 0), 0 },
		/* Lord Howe: +11 -> +10:30 at 2024-04-07 02:00, back at 10-06 02:00 */
		{ "Australia/Lord_Howe", U(2024, 4, 6, 14, 59, 59), 39600 },
		{ "Australia/Lord_Howe", U(2024, 4, 6, 15, 0, 0), 37800 },
		{ "Australia/Lord_Howe", U(2024, 10, 5, 15, 29, 59), 37800 },
		{ "Australia/Lord_Howe", U(2024, 10, 5, 15, 30, 0), 39600 },
		{ "Australia/Lord_Howe", U(1971, 4, 25, 10, 0, 0), 36000 },
		{ "Australia/Lord_Howe", U(2100, 3, 14, 10, 0, 0), 39600 },
	};
	size_t i;

	for (i = 0; i < sizeof tab / sizeof tab[0]; i++) {
		struct tz *tz = load(tab[i].zone);
		int32_t got;

		if (!tz)
			continue;
		got = tz_offset_at(tz, tab[i].at);
		if (got != tab[i].off)
			fprintf(stderr, "%s at %lld: got %d want %d\n", tab[i].zone, (long long)tab[i].at,
				(int)got, (int)tab[i].off);
		CHECK_INT(got, tab[i].off);
		tz_free(tz);
	}
}

static void civil_is_local_wall_time_with_monday_zero(void)
{
	struct tz *utc = load("UTC"), *la = load("America/Los_Angeles"), *kol = load("Asia/Kolkata");
	struct tz_civil c;

	if (!utc || !la || !kol)
		goto out;
	tz_to_civil(utc, -1, &c);                             /* 1969-12-31 23:59:59.999, a Wednesday */
	CHECK(c.year == 1969 && c.month == 12 && c.day == 31 && c.hour == 23 && c.minute == 59 &&
	      c.second == 59 && c.wday == 2);
	tz_to_civil(utc, 0, &c);
	CHECK(c.year == 1970 && c.month == 1 && c.day == 1 && c.hour == 0 && c.wday == 3);
	tz_to_civil(la, U(2024, 3, 10, 10, 0, 0), &c);        /* Sunday 03:00 PDT */
	CHECK(c.year == 2024 && c.month == 3 && c.day == 10 && c.hour == 3 && c.minute == 0 && c.wday == 6);
	tz_to_civil(la, U(2024, 3, 10, 9, 59, 59), &c);       /* 01:59:59 PST */
	CHECK(c.day == 10 && c.hour == 1 && c.minute == 59 && c.second == 59);
	tz_to_civil(kol, U(2024, 1, 1, 0, 10, 0), &c);        /* Monday 05:40 IST */
	CHECK(c.year == 2024 && c.month == 1 && c.day == 1 && c.hour == 5 && c.minute == 40 && c.wday == 0);
	tz_to_civil(la, U(2023, 12, 31, 20, 0, 5), &c);       /* Sunday 12:00:05 */
	CHECK(c.day == 31 && c.hour == 12 && c.second == 5 && c.wday == 6);
out:
	tz_free(utc);
	tz_free(la);
	tz_free(kol);
}

/* ---------- tz_from_civil ---------- */

static void from_civil_handles_gap_overlap_and_normalization(void)
{
	const struct {
		const char *zone;
		int y, m, d, hh, mm;
		int64_t want;
	} tab[] = {
		{ "UTC", 2024, 3, 10, 2, 30, U(2024, 3, 10, 2, 30, 0) },
		{ "UTC", 2024, 12, 32, 0, 0, U(2025, 1, 1, 0, 0, 0) },
		{ "UTC", 2024, 13, 1, 0, 0, U(2025, 1, 1, 0, 0, 0) },
		{ "UTC", 2024, 3, 1, -1, 0, U(2024, 2, 29, 23, 0, 0) },
		{ "UTC", 2024, 1, 1, 0, 1440, U(2024, 1, 2, 0, 0, 0) },
		{ "America/Los_Angeles", 2024, 3, 10, 0, 0, U(2024, 3, 10, 8, 0, 0) },
		{ "America/Los_Angeles", 2024, 3, 10, 1, 59, U(2024, 3, 10, 9, 59, 0) },
		/* 02:00-02:59 do not exist: the gap ends at 03:00 PDT = 10:00Z */
		{ "America/Los_Angeles", 2024, 3, 10, 2, 0, U(2024, 3, 10, 10, 0, 0) },
		{ "America/Los_Angeles", 2024, 3, 10, 2, 30, U(2024, 3, 10, 10, 0, 0) },
		{ "America/Los_Angeles", 2024, 3, 10, 3, 0, U(2024, 3, 10, 10, 0, 0) },
		{ "America/Los_Angeles", 2024, 3, 10, 3, 1, U(2024, 3, 10, 10, 1, 0) },
		/* 01:00-01:59 on Nov 3 happen twice: the PDT one */
		{ "America/Los_Angeles", 2024, 11, 3, 0, 59, U(2024, 11, 3, 7, 59, 0) },
		{ "America/Los_Angeles", 2024, 11, 3, 1, 0, U(2024, 11, 3, 8, 0, 0) },
		{ "America/Los_Angeles", 2024, 11, 3, 1, 30, U(2024, 11, 3, 8, 30, 0) },
		{ "America/Los_Angeles", 2024, 11, 3, 2, 0, U(2024, 11, 3, 10, 0, 0) },
		{ "America/Los_Angeles", 2024, 10, 34, 1, 30, U(2024, 11, 3, 8, 30, 0) },
		{ "America/Los_Angeles", 2100, 3, 14, 2, 30, U(2100, 3, 14, 10, 0, 0) },
		{ "America/Los_Angeles", 2100, 11, 7, 1, 30, U(2100, 11, 7, 8, 30, 0) },
		{ "Europe/Paris", 2024, 3, 31, 2, 30, U(2024, 3, 31, 1, 0, 0) },
		{ "Europe/Paris", 2024, 10, 27, 2, 30, U(2024, 10, 27, 0, 30, 0) },
		{ "Europe/Paris", 2024, 10, 27, 3, 0, U(2024, 10, 27, 2, 0, 0) },
		{ "Australia/Lord_Howe", 2024, 10, 6, 2, 15, U(2024, 10, 5, 15, 30, 0) },
		{ "Australia/Lord_Howe", 2024, 4, 7, 1, 45, U(2024, 4, 6, 14, 45, 0) },
		{ "Asia/Kolkata", 2024, 1, 1, 0, 0, U(2023, 12, 31, 18, 30, 0) },
		{ "Asia/Kathmandu", 2024, 1, 1, 5, 0, U(2023, 12, 31, 23, 15, 0) },
		{ "Etc/GMT+5", 2024, 1, 1, 0, 0, U(2024, 1, 1, 5, 0, 0) },
	};
	size_t i;

	for (i = 0; i < sizeof tab / sizeof tab[0]; i++) {
		struct tz *tz = load(tab[i].zone);
		int64_t got;

		if (!tz)
			continue;
		got = tz_from_civil(tz, tab[i].y, tab[i].m, tab[i].d, tab[i].hh, tab[i].mm);
		if (got != tab[i].want)
			fprintf(stderr, "from_civil %s %d-%d-%d %d:%d: got %lld want %lld\n", tab[i].zone,
				tab[i].y, tab[i].m, tab[i].d, tab[i].hh, tab[i].mm, (long long)got,
				(long long)tab[i].want);
		CHECK_INT(got, tab[i].want);
		tz_free(tz);
	}
}

/* ---------- buckets ---------- */

struct bucket_case {
	const char *zone;
	enum tz_unit unit;
	int64_t x;          /* an instant */
	int64_t floor;      /* start of its bucket */
	int64_t next;       /* start of the following one */
	const char *key;
};

static void buckets_match_hand_checked_table(void)
{
	const struct bucket_case tab[] = {
		{ "UTC", TZ_DAY, U(2024, 3, 10, 12, 0, 0) + 123, U(2024, 3, 10, 0, 0, 0), U(2024, 3, 11, 0, 0, 0), "2024-03-10" },
		{ "UTC", TZ_HOUR, U(2024, 3, 10, 12, 34, 56), U(2024, 3, 10, 12, 0, 0), U(2024, 3, 10, 13, 0, 0), "2024-03-10 12:00:00" },
		{ "UTC", TZ_MINUTE, U(2024, 3, 10, 12, 34, 56), U(2024, 3, 10, 12, 34, 0), U(2024, 3, 10, 12, 35, 0), "2024-03-10 12:34:00" },
		{ "UTC", TZ_MINUTE, -1, U(1969, 12, 31, 23, 59, 0), 0, "1969-12-31 23:59:00" },
		/* weeks start on Monday, also across a month and a year end */
		{ "UTC", TZ_WEEK, U(2024, 1, 3, 12, 0, 0), U(2024, 1, 1, 0, 0, 0), U(2024, 1, 8, 0, 0, 0), "2024-01-01" },
		{ "UTC", TZ_WEEK, U(2024, 1, 7, 23, 59, 59), U(2024, 1, 1, 0, 0, 0), U(2024, 1, 8, 0, 0, 0), "2024-01-01" },
		{ "UTC", TZ_WEEK, U(2024, 3, 1, 12, 0, 0), U(2024, 2, 26, 0, 0, 0), U(2024, 3, 4, 0, 0, 0), "2024-02-26" },
		{ "UTC", TZ_WEEK, U(2025, 1, 1, 12, 0, 0), U(2024, 12, 30, 0, 0, 0), U(2025, 1, 6, 0, 0, 0), "2024-12-30" },
		{ "UTC", TZ_WEEK, U(1970, 1, 1, 0, 0, 0), U(1969, 12, 29, 0, 0, 0), U(1970, 1, 5, 0, 0, 0), "1969-12-29" },
		{ "UTC", TZ_MONTH, U(2024, 2, 29, 23, 59, 59), U(2024, 2, 1, 0, 0, 0), U(2024, 3, 1, 0, 0, 0), "2024-02-01" },
		{ "UTC", TZ_MONTH, U(2024, 12, 31, 23, 0, 0), U(2024, 12, 1, 0, 0, 0), U(2025, 1, 1, 0, 0, 0), "2024-12-01" },
		/* Los Angeles: a 23-hour and a 25-hour day */
		{ "America/Los_Angeles", TZ_DAY, U(2024, 3, 10, 20, 0, 0), U(2024, 3, 10, 8, 0, 0), U(2024, 3, 11, 7, 0, 0), "2024-03-10" },
		{ "America/Los_Angeles", TZ_DAY, U(2024, 3, 10, 8, 0, 0), U(2024, 3, 10, 8, 0, 0), U(2024, 3, 11, 7, 0, 0), "2024-03-10" },
		{ "America/Los_Angeles", TZ_DAY, U(2024, 3, 10, 7, 59, 59), U(2024, 3, 9, 8, 0, 0), U(2024, 3, 10, 8, 0, 0), "2024-03-09" },
		{ "America/Los_Angeles", TZ_DAY, U(2024, 11, 3, 9, 30, 0), U(2024, 11, 3, 7, 0, 0), U(2024, 11, 4, 8, 0, 0), "2024-11-03" },
		{ "America/Los_Angeles", TZ_DAY, U(2024, 11, 4, 7, 59, 59), U(2024, 11, 3, 7, 0, 0), U(2024, 11, 4, 8, 0, 0), "2024-11-03" },
		/* hours: 01:00 PST is followed by 03:00 PDT; 01:00 comes twice in November */
		{ "America/Los_Angeles", TZ_HOUR, U(2024, 3, 10, 9, 30, 0), U(2024, 3, 10, 9, 0, 0), U(2024, 3, 10, 10, 0, 0), "2024-03-10 01:00:00" },
		{ "America/Los_Angeles", TZ_HOUR, U(2024, 3, 10, 10, 15, 0), U(2024, 3, 10, 10, 0, 0), U(2024, 3, 10, 11, 0, 0), "2024-03-10 03:00:00" },
		{ "America/Los_Angeles", TZ_HOUR, U(2024, 11, 3, 8, 30, 0), U(2024, 11, 3, 8, 0, 0), U(2024, 11, 3, 9, 0, 0), "2024-11-03 01:00:00" },
		{ "America/Los_Angeles", TZ_HOUR, U(2024, 11, 3, 9, 30, 0), U(2024, 11, 3, 9, 0, 0), U(2024, 11, 3, 10, 0, 0), "2024-11-03 01:00:00" },
		{ "America/Los_Angeles", TZ_HOUR, U(2024, 11, 3, 10, 0, 0), U(2024, 11, 3, 10, 0, 0), U(2024, 11, 3, 11, 0, 0), "2024-11-03 02:00:00" },
		{ "America/Los_Angeles", TZ_MINUTE, U(2024, 11, 3, 9, 0, 30), U(2024, 11, 3, 9, 0, 0), U(2024, 11, 3, 9, 1, 0), "2024-11-03 01:00:00" },
		{ "America/Los_Angeles", TZ_MINUTE, U(2024, 3, 10, 9, 59, 30), U(2024, 3, 10, 9, 59, 0), U(2024, 3, 10, 10, 0, 0), "2024-03-10 01:59:00" },
		/* the week of the spring change is an hour short; Sunday belongs to it */
		{ "America/Los_Angeles", TZ_WEEK, U(2024, 3, 10, 20, 0, 0), U(2024, 3, 4, 8, 0, 0), U(2024, 3, 11, 7, 0, 0), "2024-03-04" },
		{ "America/Los_Angeles", TZ_WEEK, U(2025, 1, 1, 7, 59, 59), U(2024, 12, 30, 8, 0, 0), U(2025, 1, 6, 8, 0, 0), "2024-12-30" },
		{ "America/Los_Angeles", TZ_MONTH, U(2024, 3, 15, 0, 0, 0), U(2024, 3, 1, 8, 0, 0), U(2024, 4, 1, 7, 0, 0), "2024-03-01" },
		{ "America/Los_Angeles", TZ_MONTH, U(2025, 1, 1, 7, 59, 59), U(2024, 12, 1, 8, 0, 0), U(2025, 1, 1, 8, 0, 0), "2024-12-01" },
		{ "America/Los_Angeles", TZ_DAY, U(2100, 3, 14, 20, 0, 0), U(2100, 3, 14, 8, 0, 0), U(2100, 3, 15, 7, 0, 0), "2100-03-14" },
		{ "America/Los_Angeles", TZ_DAY, U(2100, 11, 7, 20, 0, 0), U(2100, 11, 7, 7, 0, 0), U(2100, 11, 8, 8, 0, 0), "2100-11-07" },
		{ "America/Los_Angeles", TZ_DAY, U(1971, 4, 25, 20, 0, 0), U(1971, 4, 25, 8, 0, 0), U(1971, 4, 26, 7, 0, 0), "1971-04-25" },
		/* Paris: months over the year end and over the spring change */
		{ "Europe/Paris", TZ_MONTH, U(2024, 12, 15, 12, 0, 0), U(2024, 11, 30, 23, 0, 0), U(2024, 12, 31, 23, 0, 0), "2024-12-01" },
		{ "Europe/Paris", TZ_MONTH, U(2024, 12, 31, 23, 0, 0), U(2024, 12, 31, 23, 0, 0), U(2025, 1, 31, 23, 0, 0), "2025-01-01" },
		{ "Europe/Paris", TZ_MONTH, U(2024, 12, 31, 22, 59, 59), U(2024, 11, 30, 23, 0, 0), U(2024, 12, 31, 23, 0, 0), "2024-12-01" },
		{ "Europe/Paris", TZ_MONTH, U(2024, 3, 31, 21, 59, 59), U(2024, 2, 29, 23, 0, 0), U(2024, 3, 31, 22, 0, 0), "2024-03-01" },
		{ "Europe/Paris", TZ_DAY, U(2024, 3, 31, 12, 0, 0), U(2024, 3, 30, 23, 0, 0), U(2024, 3, 31, 22, 0, 0), "2024-03-31" },
		{ "Europe/Paris", TZ_DAY, U(2024, 10, 27, 12, 0, 0), U(2024, 10, 26, 22, 0, 0), U(2024, 10, 27, 23, 0, 0), "2024-10-27" },
		{ "Europe/Paris", TZ_HOUR, U(2024, 10, 27, 0, 30, 0), U(2024, 10, 27, 0, 0, 0), U(2024, 10, 27, 1, 0, 0), "2024-10-27 02:00:00" },
		{ "Europe/Paris", TZ_HOUR, U(2024, 10, 27, 1, 30, 0), U(2024, 10, 27, 1, 0, 0), U(2024, 10, 27, 2, 0, 0), "2024-10-27 02:00:00" },
		{ "Europe/Paris", TZ_WEEK, U(2025, 1, 1, 12, 0, 0), U(2024, 12, 29, 23, 0, 0), U(2025, 1, 5, 23, 0, 0), "2024-12-30" },
		{ "Europe/Paris", TZ_DAY, U(2100, 10, 31, 12, 0, 0), U(2100, 10, 30, 22, 0, 0), U(2100, 10, 31, 23, 0, 0), "2100-10-31" },
		{ "Europe/Paris", TZ_DAY, U(1971, 6, 1, 12, 0, 0), U(1971, 5, 31, 23, 0, 0), U(1971, 6, 1, 23, 0, 0), "1971-06-01" },
		/* Lord Howe: 01:30-02:00 repeats (the 01:00 bucket lasts 90 minutes);
		 * 02:00-02:30 is skipped (the 02:00 bucket lasts 30 minutes) */
		{ "Australia/Lord_Howe", TZ_HOUR, U(2024, 4, 6, 14, 45, 0), U(2024, 4, 6, 14, 0, 0), U(2024, 4, 6, 15, 30, 0), "2024-04-07 01:00:00" },
		{ "Australia/Lord_Howe", TZ_HOUR, U(2024, 4, 6, 15, 15, 0), U(2024, 4, 6, 14, 0, 0), U(2024, 4, 6, 15, 30, 0), "2024-04-07 01:00:00" },
		{ "Australia/Lord_Howe", TZ_HOUR, U(2024, 4, 6, 15, 30, 0), U(2024, 4, 6, 15, 30, 0), U(2024, 4, 6, 16, 30, 0), "2024-04-07 02:00:00" },
		{ "Australia/Lord_Howe", TZ_HOUR, U(2024, 10, 5, 15, 0, 0), U(2024, 10, 5, 14, 30, 0), U(2024, 10, 5, 15, 30, 0), "2024-10-06 01:00:00" },
		{ "Australia/Lord_Howe", TZ_HOUR, U(2024, 10, 5, 15, 45, 0), U(2024, 10, 5, 15, 30, 0), U(2024, 10, 5, 16, 0, 0), "2024-10-06 02:00:00" },
		{ "Australia/Lord_Howe", TZ_DAY, U(2024, 4, 6, 15, 0, 0), U(2024, 4, 6, 13, 0, 0), U(2024, 4, 7, 13, 30, 0), "2024-04-07" },
		{ "Australia/Lord_Howe", TZ_DAY, U(2024, 10, 5, 15, 0, 0), U(2024, 10, 5, 13, 30, 0), U(2024, 10, 6, 13, 0, 0), "2024-10-06" },
		/* Kolkata and Kathmandu: hours start at local :00 */
		{ "Asia/Kolkata", TZ_HOUR, U(2024, 1, 1, 0, 10, 0), U(2023, 12, 31, 23, 30, 0), U(2024, 1, 1, 0, 30, 0), "2024-01-01 05:00:00" },
		{ "Asia/Kolkata", TZ_DAY, U(2024, 1, 1, 0, 10, 0), U(2023, 12, 31, 18, 30, 0), U(2024, 1, 1, 18, 30, 0), "2024-01-01" },
		{ "Asia/Kolkata", TZ_DAY, U(2023, 12, 31, 18, 29, 59), U(2023, 12, 30, 18, 30, 0), U(2023, 12, 31, 18, 30, 0), "2023-12-31" },
		{ "Asia/Kolkata", TZ_MINUTE, U(2024, 1, 1, 0, 10, 59), U(2024, 1, 1, 0, 10, 0), U(2024, 1, 1, 0, 11, 0), "2024-01-01 05:40:00" },
		{ "Asia/Kathmandu", TZ_HOUR, U(2024, 1, 1, 0, 10, 0), U(2023, 12, 31, 23, 15, 0), U(2024, 1, 1, 0, 15, 0), "2024-01-01 05:00:00" },
		{ "Asia/Kathmandu", TZ_HOUR, U(2024, 1, 1, 0, 15, 0), U(2024, 1, 1, 0, 15, 0), U(2024, 1, 1, 1, 15, 0), "2024-01-01 06:00:00" },
		/* Etc/GMT+5 */
		{ "Etc/GMT+5", TZ_DAY, U(2024, 1, 1, 4, 59, 59), U(2023, 12, 31, 5, 0, 0), U(2024, 1, 1, 5, 0, 0), "2023-12-31" },
		{ "Etc/GMT+5", TZ_MONTH, U(2100, 1, 1, 5, 0, 0), U(2100, 1, 1, 5, 0, 0), U(2100, 2, 1, 5, 0, 0), "2100-01-01" },
		{ "Etc/GMT+5", TZ_DAY, U(1971, 1, 1, 5, 0, 0), U(1971, 1, 1, 5, 0, 0), U(1971, 1, 2, 5, 0, 0), "1971-01-01" },
	};
	size_t i;

	for (i = 0; i < sizeof tab / sizeof tab[0]; i++) {
		const struct bucket_case *c = &tab[i];
		struct tz *tz = load(c->zone);
		int64_t f, n;

		if (!tz)
			continue;
		f = tz_bucket_floor(tz, c->unit, c->x);
		n = tz_bucket_next(tz, c->unit, f);
		if (f != c->floor || n != c->next || strcmp(key(tz, c->unit, f), c->key) != 0)
			fprintf(stderr, "bucket case %zu (%s unit %d): floor %lld next %lld key %s\n", i, c->zone,
				(int)c->unit, (long long)f, (long long)n, key(tz, c->unit, f));
		CHECK_INT(f, c->floor);
		CHECK_INT(n, c->next);
		CHECK_STR(key(tz, c->unit, f), c->key);
		CHECK_INT(tz_bucket_floor(tz, c->unit, n), n);
		CHECK_INT(tz_bucket_floor(tz, c->unit, n - 1), f);
		tz_free(tz);
	}
}

static void day_lengths_over_dst_changes(void)
{
	struct tz *la = load("America/Los_Angeles");
	int64_t b;

	if (!la)
		return;
	b = tz_bucket_floor(la, TZ_DAY, U(2024, 3, 10, 12, 0, 0));
	CHECK_INT(tz_bucket_next(la, TZ_DAY, b) - b, 23 * H * 1000LL);
	b = tz_bucket_floor(la, TZ_DAY, U(2024, 11, 3, 12, 0, 0));
	CHECK_INT(tz_bucket_next(la, TZ_DAY, b) - b, 25 * H * 1000LL);
	b = tz_bucket_floor(la, TZ_DAY, U(2024, 7, 3, 12, 0, 0));
	CHECK_INT(tz_bucket_next(la, TZ_DAY, b) - b, 24 * H * 1000LL);
	/* Nov 3 has 25 hour buckets, "01:00:00" twice; Mar 10 has 23 and no 02:00 */
	{
		int n = 0, repeated = 0;
		char prev[64] = "";

		b = tz_bucket_floor(la, TZ_DAY, U(2024, 11, 3, 12, 0, 0));
		for (b = tz_bucket_floor(la, TZ_HOUR, b); b < U(2024, 11, 4, 8, 0, 0); b = tz_bucket_next(la, TZ_HOUR, b)) {
			if (strcmp(prev, key(la, TZ_HOUR, b)) == 0)
				repeated++;
			snprintf(prev, sizeof prev, "%s", key(la, TZ_HOUR, b));
			n++;
		}
		CHECK_INT(n, 25);
		CHECK_INT(repeated, 1);
		n = 0;
		for (b = U(2024, 3, 10, 8, 0, 0); b < U(2024, 3, 11, 7, 0, 0); b = tz_bucket_next(la, TZ_HOUR, b)) {
			CHECK(strcmp(key(la, TZ_HOUR, b), "2024-03-10 02:00:00") != 0);
			n++;
		}
		CHECK_INT(n, 23);
	}
	tz_free(la);
}

static void key_is_truncated_to_the_buffer(void)
{
	struct tz *utc = load("UTC");
	char buf[8];

	if (!utc)
		return;
	CHECK_INT(tz_bucket_key(utc, TZ_HOUR, 0, buf, sizeof buf), 7);
	CHECK_STR(buf, "1970-01");
	CHECK_INT(tz_bucket_key(utc, TZ_DAY, 0, buf, 1), 0);
	CHECK_STR(buf, "");
	CHECK_INT(tz_bucket_key(utc, TZ_DAY, 0, buf, 0), 0);
	tz_free(utc);
}

/* ---------- footer rules on hand-built files ---------- */

static void footer_rules_of_every_form(void)
{
	const struct { const char *footer; int64_t at; int32_t off; } tab[] = {
		/* fixed offsets */
		{ "<-03>3", U(2024, 6, 1, 0, 0, 0), -3 * H },
		{ "<+0545>-5:45", U(2024, 6, 1, 0, 0, 0), 20700 },
		{ "UTC0", U(2024, 6, 1, 0, 0, 0), 0 },
		{ "XXX-24:59:59", 0, 89999 },
		/* all-year DST: EST5EDT,0/0,J365/25 is always -4 */
		{ "EST5EDT,0/0,J365/25", U(2030, 1, 1, 0, 0, 0), -4 * H },
		{ "EST5EDT,0/0,J365/25", U(2030, 12, 31, 23, 59, 59), -4 * H },
		{ "EST5EDT,0/0,J365/25", U(2030, 7, 1, 0, 0, 0), -4 * H },
		{ "EST5EDT,0/0,J365/25", U(2032, 12, 31, 4, 30, 0), -4 * H },
		/* Jn skips Feb 29: J60 is Mar 1 also in 2024; -1 h before it in std
		 * (-3) is 2024-03-01 02:00Z; J300 is Oct 27, 26:00 in dst (-2) is
		 * 2024-10-28 04:00Z */
		{ "AAA3BBB,J60/-1,J300/26", U(2024, 3, 1, 1, 59, 59), -3 * H },
		{ "AAA3BBB,J60/-1,J300/26", U(2024, 3, 1, 2, 0, 0), -2 * H },
		{ "AAA3BBB,J60/-1,J300/26", U(2024, 10, 28, 3, 59, 59), -2 * H },
		{ "AAA3BBB,J60/-1,J300/26", U(2024, 10, 28, 4, 0, 0), -3 * H },
		{ "AAA3BBB,J60/-1,J300/26", U(2023, 3, 1, 2, 0, 0), -2 * H },
		/* zero-based n counts Feb 29: day 59 is Feb 29 in 2024, Mar 1 in
		 * 2023; day 304 is Oct 31 in 2024, Nov 1 in 2023; default 02:00 */
		{ "CCC-1DDD,59,304", U(2024, 2, 29, 0, 59, 59), 1 * H },
		{ "CCC-1DDD,59,304", U(2024, 2, 29, 1, 0, 0), 2 * H },
		{ "CCC-1DDD,59,304", U(2024, 10, 30, 23, 59, 59), 2 * H },
		{ "CCC-1DDD,59,304", U(2024, 10, 31, 0, 0, 0), 1 * H },
		{ "CCC-1DDD,59,304", U(2023, 3, 1, 0, 59, 59), 1 * H },
		{ "CCC-1DDD,59,304", U(2023, 3, 1, 1, 0, 0), 2 * H },
		{ "CCC-1DDD,59,304", U(2023, 11, 1, 0, 0, 0), 1 * H },
		/* southern hemisphere, explicit dst offset, times with minutes and
		 * seconds: DST from the first Sunday of October 02:00:30 (+9:30)
		 * to the first Sunday of April 03:00 (+10:30) */
		{ "ACST-9:30ACDT-10:30,M10.1.0/2:00:30,M4.1.0/3", U(2024, 10, 5, 16, 30, 29), 34200 },
		{ "ACST-9:30ACDT-10:30,M10.1.0/2:00:30,M4.1.0/3", U(2024, 10, 5, 16, 30, 30), 37800 },
		{ "ACST-9:30ACDT-10:30,M10.1.0/2:00:30,M4.1.0/3", U(2025, 1, 1, 0, 0, 0), 37800 },
		{ "ACST-9:30ACDT-10:30,M10.1.0/2:00:30,M4.1.0/3", U(2024, 4, 6, 16, 29, 59), 37800 },
		{ "ACST-9:30ACDT-10:30,M10.1.0/2:00:30,M4.1.0/3", U(2024, 4, 6, 16, 30, 0), 34200 },
		/* week 5 = last: Feb 2024 has five Thursdays (29th), 2023 four (23rd);
		 * +167 h from Mar 1 2024 (Friday) = Mar 7 23:00 */
		{ "EEE0FFF,M2.5.4/0,M3.1.5/+167", U(2024, 2, 28, 23, 59, 59), 0 },
		{ "EEE0FFF,M2.5.4/0,M3.1.5/+167", U(2024, 2, 29, 0, 0, 0), 1 * H },
		{ "EEE0FFF,M2.5.4/0,M3.1.5/+167", U(2023, 2, 23, 0, 0, 0), 1 * H },
		{ "EEE0FFF,M2.5.4/0,M3.1.5/+167", U(2023, 2, 22, 23, 59, 59), 0 },
		{ "EEE0FFF,M2.5.4/0,M3.1.5/+167", U(2024, 3, 7, 21, 59, 59), 1 * H },
		{ "EEE0FFF,M2.5.4/0,M3.1.5/+167", U(2024, 3, 7, 22, 0, 0), 0 },
		/* -167 h: DST starts 167 h before Jan 1 (std), ends June 29 in 2024 */
		{ "GGG0HHH,0/-167,180", U(2023, 12, 25, 0, 59, 59), 0 },
		{ "GGG0HHH,0/-167,180", U(2023, 12, 25, 1, 0, 0), 1 * H },
		{ "GGG0HHH,0/-167,180", U(2024, 6, 29, 0, 59, 59), 1 * H },
		{ "GGG0HHH,0/-167,180", U(2024, 6, 29, 1, 0, 0), 0 },
	};
	size_t i;

	for (i = 0; i < sizeof tab / sizeof tab[0]; i++) {
		struct tz *tz = footer_zone(tab[i].footer);
		int32_t got;

		if (!tz)
			continue;
		got = tz_offset_at(tz, tab[i].at);
		if (got != tab[i].off)
			fprintf(stderr, "footer \"%s\" at %lld: got %d want %d\n", tab[i].footer,
				(long long)tab[i].at, (int)got, (int)tab[i].off);
		CHECK_INT(got, tab[i].off);
		tz_free(tz);
	}
}

static void footer_takes_over_at_the_last_transition(void)
{
	/* table: +1 until 2000, +2 from 2000 to 2010, then the footer (fixed +3) */
	static const int32_t off[2] = { 1 * H, 2 * H };
	static const unsigned char idx[2] = { 1, 0 };
	int64_t at[2] = { U(2000, 1, 1, 0, 0, 0) / 1000, U(2010, 1, 1, 0, 0, 0) / 1000 };
	struct tb t;
	struct tz *tz = NULL;

	tb_build(&t, at, idx, 2, off, 2, "<+03>-3");
	CHECK_INT(tz_parse(t.b, t.n, &tz), MP_OK);
	if (!tz)
		return;
	CHECK_INT(tz_offset_at(tz, U(1999, 12, 31, 23, 59, 59)), 1 * H);
	CHECK_INT(tz_offset_at(tz, U(2000, 1, 1, 0, 0, 0)), 2 * H);
	CHECK_INT(tz_offset_at(tz, U(2009, 12, 31, 23, 59, 59)), 2 * H);
	CHECK_INT(tz_offset_at(tz, U(2010, 1, 1, 0, 0, 0)), 3 * H);
	CHECK_INT(tz_offset_at(tz, U(3000, 1, 1, 0, 0, 0)), 3 * H);
	tz_free(tz);
	/* with an empty footer the last type goes on */
	tb_build(&t, at, idx, 2, off, 2, "");
	CHECK_INT(tz_parse(t.b, t.n, &tz), MP_OK);
	if (!tz)
		return;
	CHECK_INT(tz_offset_at(tz, U(3000, 1, 1, 0, 0, 0)), 1 * H);
	tz_free(tz);
}

static void version_1_files_and_later_versions_are_read(void)
{
	static const int32_t off[2] = { -5 * H, -4 * H };
	static const unsigned char idx[2] = { 1, 0 };
	int64_t at[2] = { U(2000, 4, 2, 7, 0, 0) / 1000, U(2000, 10, 29, 6, 0, 0) / 1000 };
	const size_t v2 = 44 + 6 + 1;
	struct tb t;
	struct tz *tz = NULL;
	size_t i;

	/* version 1: 32-bit times, no footer; the last type goes on */
	t.n = 0;
	tb_header(&t, 0, 2, 2, 4);
	for (i = 0; i < 2; i++)
		tb_u32(&t, (uint32_t)at[i]);
	tb_put(&t, idx, 2);
	for (i = 0; i < 2; i++) {
		tb_u32(&t, (uint32_t)off[i]);
		tb_put(&t, "\0\0", 2);
	}
	tb_put(&t, "ABC\0", 4);
	CHECK_INT(tz_parse(t.b, t.n, &tz), MP_OK);
	if (tz) {
		CHECK_INT(tz_offset_at(tz, U(1990, 1, 1, 0, 0, 0)), -5 * H);
		CHECK_INT(tz_offset_at(tz, U(2000, 4, 2, 6, 59, 59)), -5 * H);
		CHECK_INT(tz_offset_at(tz, U(2000, 4, 2, 7, 0, 0)), -4 * H);
		CHECK_INT(tz_offset_at(tz, U(2000, 10, 29, 6, 0, 0)), -5 * H);
		CHECK_INT(tz_offset_at(tz, U(2100, 7, 1, 0, 0, 0)), -5 * H);
		tz_free(tz);
		tz = NULL;
	}
	/* one byte short of the last designation */
	CHECK_INT(tz_parse(t.b, t.n - 1, &tz), MP_E_INVALID);
	/* versions 3 and 4 have the layout of version 2; V2 is where the
	 * second header starts (44 + one 6-byte type + one designation byte) */
	tb_build(&t, at, idx, 2, off, 2, "EST5EDT,M4.1.0,M10.5.0");
	t.b[4] = '3';
	t.b[v2 + 4] = '4';
	CHECK(memcmp(t.b + v2, "TZif4", 5) == 0);
	CHECK_INT(tz_parse(t.b, t.n, &tz), MP_OK);
	if (tz)
		CHECK_INT(tz_offset_at(tz, U(2100, 7, 1, 0, 0, 0)), -4 * H);
	tz_free(tz);
	tz = NULL;
	/* the second header must be there and be version 2+ */
	t.b[v2 + 4] = 0;
	CHECK_INT(tz_parse(t.b, t.n, &tz), MP_E_INVALID);
	t.b[v2 + 4] = '2';
	t.b[v2] = 'X';
	CHECK_INT(tz_parse(t.b, t.n, &tz), MP_E_INVALID);
}

static void bad_footers_and_fields_are_rejected(void)
{
	static const char *const bad[] = {
		"X", "<-03", "<>3", "<ab>3", "AB3", "EST", "EST5EDT", "EST5EDT,M3.2.0", "EST5EDT,M3.2.0,",
		"EST5EDT,M13.2.0,M11.1.0", "EST5EDT,M3.6.0,M11.1.0", "EST5EDT,M3.2.7,M11.1.0",
		"EST5EDT,M3.0.0,M11.1.0", "EST5EDT,J0,J100", "EST5EDT,J366,J100", "EST5EDT,366,1",
		"EST5EDT,M3.2.0/168,M11.1.0", "EST5EDT,M3.2.0/-168,M11.1.0", "EST25", "EST5:60",
		"EST5:00:60", "EST5EDT,M3.2.0,M11.1.0x", "EST5 ", " EST5", "EST5\r", "EST5EDT4:0000,1,2",
		"EST+", "EST5EDT,M3.2.0/,M11.1.0", "EST5EDT,M3..0,M11.1.0", ":America/New_York",
	};
	static const int32_t off1[1] = { 0 };
	static const int32_t offbig[1] = { 93600 };
	static const int32_t offneg[1] = { -93600 };
	static const unsigned char idx_bad[1] = { 1 };
	static const unsigned char idx_ok[2] = { 0, 0 };
	int64_t at_same[2] = { 100, 100 }, at_down[2] = { 100, 99 };
	struct tb t;
	struct tz *tz = NULL;
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		enum mp_err rc;

		tb_build(&t, NULL, NULL, 0, off1, 1, bad[i]);
		rc = tz_parse(t.b, t.n, &tz);
		if (rc != MP_E_INVALID)
			fprintf(stderr, "footer \"%s\" accepted\n", bad[i]);
		CHECK_INT(rc, MP_E_INVALID);
	}
	/* the good version of the same builder is accepted */
	tb_build(&t, NULL, NULL, 0, off1, 1, "EST5EDT,M3.2.0,M11.1.0");
	CHECK_INT(tz_parse(t.b, t.n, &tz), MP_OK);
	tz_free(tz);
	tz = NULL;
	/* no footer at all in a v2 file */
	tb_build(&t, NULL, NULL, 0, off1, 1, NULL);
	CHECK_INT(tz_parse(t.b, t.n, &tz), MP_E_INVALID);
	/* offsets of 26 hours */
	tb_build(&t, NULL, NULL, 0, offbig, 1, "");
	CHECK_INT(tz_parse(t.b, t.n, &tz), MP_E_INVALID);
	tb_build(&t, NULL, NULL, 0, offneg, 1, "");
	CHECK_INT(tz_parse(t.b, t.n, &tz), MP_E_INVALID);
	/* type index out of range, times not strictly ascending */
	tb_build(&t, at_same, idx_bad, 1, off1, 1, "");
	CHECK_INT(tz_parse(t.b, t.n, &tz), MP_E_INVALID);
	tb_build(&t, at_same, idx_ok, 2, off1, 1, "");
	CHECK_INT(tz_parse(t.b, t.n, &tz), MP_E_INVALID);
	tb_build(&t, at_down, idx_ok, 2, off1, 1, "");
	CHECK_INT(tz_parse(t.b, t.n, &tz), MP_E_INVALID);
	/* no types */
	tb_build(&t, NULL, NULL, 0, off1, 0, "");
	CHECK_INT(tz_parse(t.b, t.n, &tz), MP_E_INVALID);
	CHECK(tz == NULL);
}

/* ---------- loading real and broken files ---------- */

static void load_rejects_missing_zones_and_bad_names(void)
{
	static const char *const invalid[] = {
		"", "/etc/passwd", "../../etc/passwd", "Europe/../UTC", "Europe", "America/New York",
		"zone1970.tab", "Europe/Paris\n",
	};
	struct tz *tz = NULL;
	size_t i;

	CHECK_INT(tz_load("Mars/Olympus_Mons", &tz), MP_E_NOTFOUND);
	CHECK_INT(tz_load("Europe/Paris/x", &tz), MP_E_NOTFOUND);
	for (i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
		enum mp_err rc = tz_load(invalid[i], &tz);

		if (rc != MP_E_INVALID)
			fprintf(stderr, "tz_load(\"%s\") = %s\n", invalid[i], mp_strerror(rc));
		CHECK_INT(rc, MP_E_INVALID);
	}
	CHECK(tz == NULL);
	tz_free(NULL);
}

static void every_truncation_of_a_real_file_is_rejected(void)
{
	static const char *const zones[] = { "America/Los_Angeles", "Asia/Kolkata", "Etc/GMT+5" };
	size_t z;

	for (z = 0; z < sizeof zones / sizeof zones[0]; z++) {
		char path[256];
		unsigned char *data, *copy;
		size_t len = 0, cut;
		struct tz *tz = NULL;
		int bad = 0;

		snprintf(path, sizeof path, ZI "%s", zones[z]);
		data = read_all(path, &len);
		CHECK(data != NULL);
		if (!data)
			continue;
		CHECK_INT(tz_parse(data, len, &tz), MP_OK);
		tz_free(tz);
		tz = NULL;
		for (cut = 0; cut < len; cut++) {
			/* an exact-size copy so that a read past CUT would be caught under ASan */
			copy = malloc(cut ? cut : 1);
			if (!copy)
				break;
			memcpy(copy, data, cut);
			if (tz_parse(copy, cut, &tz) != MP_E_INVALID && !bad++)
				fprintf(stderr, "%s truncated to %zu bytes accepted\n", zones[z], cut);
			free(copy);
		}
		CHECK_INT(bad, 0);
		CHECK(tz == NULL);
		free(data);
	}
}

static void garbage_and_corrupt_files_are_rejected(void)
{
	unsigned char junk[4096], *data;
	size_t len = 0, i;
	struct tz *tz = NULL;
	uint32_t seed = 12345;

	for (i = 0; i < sizeof junk; i++) {
		seed = seed * 1103515245 + 12345;
		junk[i] = (unsigned char)(seed >> 16);
	}
	CHECK_INT(tz_parse(junk, sizeof junk, &tz), MP_E_INVALID);
	memcpy(junk, "TZif2", 5);
	CHECK_INT(tz_parse(junk, sizeof junk, &tz), MP_E_INVALID);
	CHECK_INT(tz_parse(NULL, 0, &tz), MP_E_INVALID);
	CHECK_INT(tz_parse((const unsigned char *)"", 0, &tz), MP_E_INVALID);

	data = read_all(ZI "Europe/Paris", &len);
	CHECK(data != NULL);
	if (!data)
		return;
	CHECK(len > 100);
	data[0] = 'X';                                 /* magic */
	CHECK_INT(tz_parse(data, len, &tz), MP_E_INVALID);
	data[0] = 'T';
	data[4] = '1';                                 /* no such version */
	CHECK_INT(tz_parse(data, len, &tz), MP_E_INVALID);
	data[4] = '2';
	data[32] ^= 0x40;                              /* v1 timecnt far too big */
	CHECK_INT(tz_parse(data, len, &tz), MP_E_INVALID);
	data[32] ^= 0x40;
	data[len - 1] = 'x';                           /* footer not terminated */
	CHECK_INT(tz_parse(data, len, &tz), MP_E_INVALID);
	data[len - 1] = '\n';
	data[len - 3] = '?';                           /* footer rule broken ("M10.5.0/3" -> "M10.5.0?3") */
	CHECK_INT(tz_parse(data, len, &tz), MP_E_INVALID);
	CHECK(tz == NULL);
	free(data);
}

/* ---------- invariants ---------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void floor_and_next_agree_on_random_instants(void)
{
	static const char *const zones[] = {
		"UTC", "America/Los_Angeles", "Europe/Paris", "Australia/Lord_Howe", "Asia/Kolkata",
		"Asia/Kathmandu", "America/Sao_Paulo", "Europe/Dublin", "America/Nuuk", "America/Santiago",
		"Asia/Jerusalem", "Africa/Casablanca", "Pacific/Apia", "America/St_Johns", "Etc/GMT+5",
	};
	size_t z;
	int i, u;

	for (z = 0; z < sizeof zones / sizeof zones[0]; z++) {
		struct tz *tz = load(zones[z]);
		int bad = 0;

		if (!tz)
			continue;
		for (i = 0; i < 3000 && bad < 3; i++) {
			/* 1900 .. 2200, whole seconds or not */
			int64_t x = U(1900, 1, 1, 0, 0, 0) + (int64_t)(rng() % (uint64_t)(U(2200, 1, 1, 0, 0, 0) - U(1900, 1, 1, 0, 0, 0)));
			struct tz_civil c;
			int64_t fc;

			for (u = TZ_MINUTE; u <= TZ_MONTH; u++) {
				int64_t f = tz_bucket_floor(tz, (enum tz_unit)u, x);
				int64_t n = tz_bucket_next(tz, (enum tz_unit)u, f);
				int64_t nn = tz_bucket_next(tz, (enum tz_unit)u, n);
				char k1[64], k2[64];

				snprintf(k1, sizeof k1, "%s", key(tz, (enum tz_unit)u, f));
				snprintf(k2, sizeof k2, "%s", key(tz, (enum tz_unit)u, n));
				if (!(f <= x && x < n && n < nn && f % 1000 == 0 &&
				      tz_bucket_floor(tz, (enum tz_unit)u, n) == n &&
				      tz_bucket_floor(tz, (enum tz_unit)u, f) == f &&
				      tz_bucket_floor(tz, (enum tz_unit)u, n - 1) == f &&
				      tz_bucket_next(tz, (enum tz_unit)u, x) == n &&
				      (strcmp(k1, k2) < 0 || (u <= TZ_HOUR && strcmp(k1, k2) == 0)))) {
					fprintf(stderr, "%s unit %d x=%lld: floor %lld next %lld keys %s %s\n", zones[z], u,
						(long long)x, (long long)f, (long long)n, k1, k2);
					bad++;
				}
			}
			/* from_civil(civil(x)) is x's minute, or the same wall minute earlier */
			tz_to_civil(tz, x, &c);
			fc = tz_from_civil(tz, c.year, c.month, c.day, c.hour, c.minute);
			if (fc > x || x - fc >= 60000 + 52 * H * 1000LL) {
				fprintf(stderr, "%s from_civil(to_civil(%lld)) = %lld\n", zones[z], (long long)x, (long long)fc);
				bad++;
			} else {
				struct tz_civil c2;

				/* the wall minute exists at FC, or FC ends a gap that swallowed its start */
				tz_to_civil(tz, fc, &c2);
				if ((c2.year != c.year || c2.month != c.month || c2.day != c.day || c2.hour != c.hour ||
				     c2.minute != c.minute || c2.second != 0) &&
				    tz_offset_at(tz, fc - 1) == tz_offset_at(tz, fc)) {
					fprintf(stderr, "%s: wall time of from_civil differs at %lld\n", zones[z], (long long)x);
					bad++;
				}
			}
		}
		CHECK_INT(bad, 0);
		tz_free(tz);
	}
}

static void extreme_instants_do_not_overflow(void)
{
	struct tz *la = load("America/Los_Angeles");
	static const int64_t xs[] = { INT64_MIN, INT64_MIN + 1, -TZ_MS_MAX, TZ_MS_MAX, INT64_MAX };
	size_t i;
	int u;

	if (!la)
		return;
	for (i = 0; i < sizeof xs / sizeof xs[0]; i++) {
		struct tz_civil c;
		char buf[32];

		CHECK(tz_offset_at(la, xs[i]) > -12 * H && tz_offset_at(la, xs[i]) < 0);
		tz_to_civil(la, xs[i], &c);
		CHECK(c.month >= 1 && c.month <= 12 && c.day >= 1 && c.day <= 31);
		for (u = TZ_MINUTE; u <= TZ_MONTH; u++) {
			int64_t f = tz_bucket_floor(la, (enum tz_unit)u, xs[i]);

			CHECK(tz_bucket_next(la, (enum tz_unit)u, f) > f);
			CHECK(tz_bucket_key(la, (enum tz_unit)u, f, buf, sizeof buf) < sizeof buf);
		}
	}
	CHECK(tz_from_civil(la, INT32_MAX, INT32_MAX, INT32_MAX, INT32_MAX, INT32_MAX) > TZ_MS_MAX - 86400000LL * 2);
	CHECK(tz_from_civil(la, INT32_MIN, INT32_MIN, INT32_MIN, INT32_MIN, INT32_MIN) < -TZ_MS_MAX + 86400000LL * 2);
	tz_free(la);
}

/* ---------- against glibc ---------- */

static int cross_check(const char *zone, int64_t from_s, int64_t to_s, int count)
{
	struct tz *tz = load(zone);
	char path[256];
	FILE *f;
	int i, bad = 0;

	snprintf(path, sizeof path, ZI "%s", zone);
	f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "test_tz: %s is missing; the glibc cross-check needs it\n", path);
		tz_free(tz);
		return 1;
	}
	fclose(f);
	if (!tz)
		return 1;
	if (setenv("TZ", zone, 1) != 0)
		return 1;
	tzset();
	for (i = 0; i < count; i++) {
		time_t t = (time_t)(from_s + (int64_t)(rng() % (uint64_t)(to_s - from_s)));
		struct tm tm;
		struct tz_civil c;
		int64_t ms = (int64_t)t * 1000 + (int64_t)(rng() % 1000);

		if (!localtime_r(&t, &tm)) {
			bad++;
			continue;
		}
		tz_to_civil(tz, ms, &c);
		if (tz_offset_at(tz, ms) != tm.tm_gmtoff || c.year != tm.tm_year + 1900 || c.month != tm.tm_mon + 1 ||
		    c.day != tm.tm_mday || c.hour != tm.tm_hour || c.minute != tm.tm_min || c.second != tm.tm_sec ||
		    c.wday != (tm.tm_wday + 6) % 7) {
			if (bad++ < 5)
				fprintf(stderr, "%s at %lld: tz offset %d, glibc %ld\n", zone, (long long)t,
					(int)tz_offset_at(tz, ms), (long)tm.tm_gmtoff);
		}
	}
	unsetenv("TZ");
	tzset();
	tz_free(tz);
	return bad;
}

static void offsets_agree_with_glibc_1971_to_2037(void)
{
	int64_t from = U(1971, 1, 1, 0, 0, 0) / 1000, to = U(2037, 12, 31, 0, 0, 0) / 1000;

	CHECK_INT(cross_check("America/New_York", from, to, 10000), 0);
	CHECK_INT(cross_check("Europe/Berlin", from, to, 10000), 0);
}

static void footer_offsets_agree_with_glibc_to_2200(void)
{
	static const char *const zones[] = {
		"America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Jerusalem", "America/Nuuk",
		"Europe/Dublin", "America/Santiago", "Pacific/Chatham", "America/Sao_Paulo",
	};
	int64_t from = U(2030, 1, 1, 0, 0, 0) / 1000, to = U(2200, 1, 1, 0, 0, 0) / 1000;
	size_t i;

	for (i = 0; i < sizeof zones / sizeof zones[0]; i++)
		CHECK_INT(cross_check(zones[i], from, to, 3000), 0);
}

int main(void)
{
	TEST_RUN(days_from_civil_matches_known_dates_and_normalizes);
	TEST_RUN(civil_from_days_round_trips);
	TEST_RUN(parse_date_is_strict);
	TEST_RUN(offsets_match_hand_checked_table);
	TEST_RUN(civil_is_local_wall_time_with_monday_zero);
	TEST_RUN(from_civil_handles_gap_overlap_and_normalization);
	TEST_RUN(buckets_match_hand_checked_table);
	TEST_RUN(day_lengths_over_dst_changes);
	TEST_RUN(key_is_truncated_to_the_buffer);
	TEST_RUN(footer_rules_of_every_form);
	TEST_RUN(footer_takes_over_at_the_last_transition);
	TEST_RUN(version_1_files_and_later_versions_are_read);
	TEST_RUN(bad_footers_and_fields_are_rejected);
	TEST_RUN(load_rejects_missing_zones_and_bad_names);
	TEST_RUN(every_truncation_of_a_real_file_is_rejected);
	TEST_RUN(garbage_and_corrupt_files_are_rejected);
	TEST_RUN(floor_and_next_agree_on_random_instants);
	TEST_RUN(extreme_instants_do_not_overflow);
	TEST_RUN(offsets_agree_with_glibc_1971_to_2037);
	TEST_RUN(footer_offsets_agree_with_glibc_to_2200);
	return TEST_DONE();
}
