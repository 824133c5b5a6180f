/*
 * tz.c - TZif reader, POSIX TZ rules and local-time buckets (see include/tz.h).
 *
 * A loaded zone is a table of transitions (UTC seconds, strictly ascending,
 * each with the UT offset it starts), the offset before the first one
 * (time type 0), and optionally the footer rule that takes over on and after
 * the last transition.  Everything else is built on one primitive,
 * tz_seg(): the maximal interval [s, e) around an instant over which the
 * table or the rule gives a constant offset.  Offsets are bounded
 * (|off| < TZ_OFF_BOUND) so an instant and its local time are never more
 * than 26 hours apart, which bounds every search below.
 *
 * Internally instants are whole seconds; the public functions convert from
 * milliseconds (floor) after clamping to +-TZ_MS_MAX, so nothing overflows.
 */
#include "tz.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TZ_OFF_BOUND 93600                 /* |UT offset| < 26 h */
#define TZ_SEC_MAX (TZ_MS_MAX / 1000)
#define TZ_SEC_LIM (TZ_SEC_MAX + 400 * 86400) /* tz_seg() clamps to this */
#define TZ_DAYS_LIM INT64_C(700000000000)  /* civil years then fit an int */
#define TZ_NAME_MAX 255
#define TZ_RULE_HOURS 167                  /* rule times: -167..167 h (TZif v3) */
#define TZ_EVENTS 10                       /* 2 rule changes x 5 years */

/* One date of a footer rule: Jn (1..365, no Feb 29), n (0..365), Mm.w.d. */
struct tz_rdate {
	char kind;          /* 'J', 'N' or 'M' */
	int a, b, c;        /* J/N: a = n; M: a = month, b = week 1..5, c = weekday 0 = Sunday */
	int32_t time;       /* local seconds after midnight, -167..167 h */
};

struct tz_rule {
	int32_t std_off;    /* seconds east of UTC */
	int32_t dst_off;
	int has_dst;
	struct tz_rdate start, end; /* start: in std time; end: in dst time */
};

struct tz {
	size_t n;           /* transitions */
	int64_t *at;        /* UTC seconds, strictly ascending */
	int32_t *off;       /* offset from at[i] on */
	int32_t off0;       /* before at[0] (time type 0) */
	int has_rule;       /* footer present and non-empty */
	struct tz_rule rule;
};

/* An interval [s, e) of constant offset. */
struct tz_seg {
	int64_t s, e;
	int32_t off;
};

/* ---- arithmetic and calendar ------------------------------------------- */

static int64_t tz_fdiv(int64_t a, int64_t b)     /* floor(a / b), b > 0 */
{
	int64_t q = a / b;

	return (a % b < 0) ? q - 1 : q;
}

static int64_t tz_fmod(int64_t a, int64_t b)     /* in [0, b), b > 0 */
{
	int64_t r = a % b;

	return r < 0 ? r + b : r;
}

static int64_t tz_clamp(int64_t v, int64_t lim)
{
	return v < -lim ? -lim : v > lim ? lim : v;
}

static int tz_is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int tz_month_days(int64_t y, int m)
{
	static const unsigned char len[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	return m == 2 && tz_is_leap(y) ? 29 : len[m - 1];
}

/* Days since 1970-01-01 of Y-M-D for M in 1..12 (H. Hinnant's algorithm). */
static int64_t tz_dfc(int64_t y, int64_t m, int64_t d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = tz_fdiv(y, 400);
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int64_t tz_days_from_civil(int y, int m, int d)
{
	int64_t yy = (int64_t)y + tz_fdiv((int64_t)m - 1, 12);
	int64_t mm = tz_fmod((int64_t)m - 1, 12) + 1;

	return tz_dfc(yy, mm, 1) + (int64_t)d - 1;
}

void tz_civil_from_days(int64_t days, int *y, int *m, int *d)
{
	int64_t z = tz_clamp(days, TZ_DAYS_LIM) + 719468;
	int64_t era = tz_fdiv(z, 146097);
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	int64_t mm = mp < 10 ? mp + 3 : mp - 9;

	*y = (int)(yoe + era * 400 + (mm <= 2));
	*m = (int)mm;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
}

int tz_parse_date(const char *s, size_t len, int *y, int *m, int *d)
{
	static const unsigned char digit_at[] = { 0, 1, 2, 3, 5, 6, 8, 9 };
	int yy, mm, dd;
	size_t i;

	if (!s || len != 10 || s[4] != '-' || s[7] != '-')
		return 0;
	for (i = 0; i < sizeof digit_at; i++)
		if (s[digit_at[i]] < '0' || s[digit_at[i]] > '9')
			return 0;
	yy = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
	mm = (s[5] - '0') * 10 + (s[6] - '0');
	dd = (s[8] - '0') * 10 + (s[9] - '0');
	if (yy < 1970 || mm < 1 || mm > 12 || dd < 1 || dd > tz_month_days(yy, mm))
		return 0;
	*y = yy;
	*m = mm;
	*d = dd;
	return 1;
}

/* ---- footer rule -------------------------------------------------------- */

/* Local seconds (since the epoch, in the local time the rule date is
 * written in) of rule date R in year Y. */
static int64_t tz_rule_local(const struct tz_rdate *r, int64_t y)
{
	int64_t days;

	if (r->kind == 'J') {
		days = tz_dfc(y, 1, 1) + r->a - 1;
		if (tz_is_leap(y) && r->a >= 60)
			days++;
	} else if (r->kind == 'N') {
		days = tz_dfc(y, 1, 1) + r->a;
	} else {
		int64_t first = tz_dfc(y, r->a, 1);
		int64_t wd_first = tz_fmod(first + 4, 7); /* 1970-01-01 was a Thursday */

		days = first + tz_fmod(r->c - wd_first, 7) + 7 * (int64_t)(r->b - 1);
		if (days >= first + tz_month_days(y, r->a))
			days -= 7;                         /* week 5 = last */
	}
	return days * 86400 + r->time;
}

struct tz_event {
	int64_t at;
	int32_t off;
};

/* Segment of the rule around T: the changes of five years around T's year,
 * sorted stably (so where one year's end meets the next year's start, as in
 * all-year DST "EST5EDT,0/0,J365/25", the later one in sequence wins). */
static void tz_rule_seg(const struct tz_rule *r, int64_t t, struct tz_seg *g)
{
	struct tz_event ev[TZ_EVENTS], tmp;
	int64_t y0;
	int y, mo, dd;
	size_t n = 0, i, j;

	if (!r->has_dst) {
		g->s = INT64_MIN;
		g->e = INT64_MAX;
		g->off = r->std_off;
		return;
	}
	tz_civil_from_days(tz_fdiv(t, 86400), &y, &mo, &dd);
	for (y0 = (int64_t)y - 2; y0 <= (int64_t)y + 2; y0++) {
		ev[n].at = tz_rule_local(&r->start, y0) - r->std_off;
		ev[n++].off = r->dst_off;
		ev[n].at = tz_rule_local(&r->end, y0) - r->dst_off;
		ev[n++].off = r->std_off;
	}
	for (i = 1; i < n; i++)
		for (j = i; j > 0 && ev[j - 1].at > ev[j].at; j--) {
			tmp = ev[j];
			ev[j] = ev[j - 1];
			ev[j - 1] = tmp;
		}
	/* Year y-2's changes are over before y begins (times are < 168 h and
	 * offsets < 26 h past their date), and y+2's are after y ends. */
	for (i = 0; i + 1 < n && ev[i + 1].at <= t; i++)
		;
	g->s = ev[i].at;
	g->e = i + 1 < n ? ev[i + 1].at : INT64_MAX;
	g->off = ev[i].off;
}

/* ---- segments ----------------------------------------------------------- */

static void tz_seg(const struct tz *tz, int64_t t, struct tz_seg *g)
{
	size_t lo, hi;

	t = tz_clamp(t, TZ_SEC_LIM);
	if (tz->has_rule && (tz->n == 0 || t >= tz->at[tz->n - 1])) {
		tz_rule_seg(&tz->rule, t, g);
		if (tz->n && g->s < tz->at[tz->n - 1])
			g->s = tz->at[tz->n - 1];
		return;
	}
	if (tz->n == 0 || t < tz->at[0]) {
		g->s = INT64_MIN;
		g->e = tz->n ? tz->at[0] : INT64_MAX;
		g->off = tz->off0;
		return;
	}
	lo = 0;                                    /* at[lo] <= t < at[hi] */
	hi = tz->n;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (tz->at[mid] <= t)
			lo = mid;
		else
			hi = mid;
	}
	g->s = tz->at[lo];
	g->e = hi < tz->n ? tz->at[hi] : INT64_MAX;
	g->off = tz->off[lo];
}

static int32_t tz_off_s(const struct tz *tz, int64_t t)
{
	struct tz_seg g;

	tz_seg(tz, t, &g);
	return g.off;
}

static int64_t tz_ms_to_s(int64_t ms)
{
	return tz_fdiv(tz_clamp(ms, TZ_MS_MAX), 1000);
}

int32_t tz_offset_at(const struct tz *tz, int64_t utc_ms)
{
	return tz_off_s(tz, tz_ms_to_s(utc_ms));
}

static void tz_civil_from_local(int64_t l, struct tz_civil *out)
{
	int64_t days = tz_fdiv(l, 86400), sod = l - days * 86400;

	tz_civil_from_days(days, &out->year, &out->month, &out->day);
	out->hour = (int)(sod / 3600);
	out->minute = (int)(sod / 60 % 60);
	out->second = (int)(sod % 60);
	out->wday = (int)tz_fmod(days + 3, 7);     /* 1970-01-01: Thursday = 3 */
}

void tz_to_civil(const struct tz *tz, int64_t utc_ms, struct tz_civil *out)
{
	int64_t t = tz_ms_to_s(utc_ms);

	tz_civil_from_local(t + tz_off_s(tz, t), out);
}

/* The first instant whose local time is >= L (local seconds): the instant
 * of L itself when it exists (the earlier one when it exists twice), else
 * the end of the gap.  Any instant with local time L lies within
 * TZ_OFF_BOUND of L, and local time at L + TZ_OFF_BOUND is past L, so the
 * walk over the segments of that window ends. */
static int64_t tz_first_at_or_after(const struct tz *tz, int64_t l)
{
	struct tz_seg g;
	int64_t t = l - TZ_OFF_BOUND, c;

	for (;;) {
		tz_seg(tz, t, &g);
		c = l - g.off;
		if (c < t)
			c = t;
		if (c < g.e)
			return c;
		t = g.e;
	}
}

int64_t tz_from_civil(const struct tz *tz, int y, int m, int d, int hh, int mm)
{
	int64_t l = tz_days_from_civil(y, m, d) * 86400 + (int64_t)hh * 3600 + (int64_t)mm * 60;

	return tz_first_at_or_after(tz, tz_clamp(l, TZ_SEC_MAX)) * 1000;
}

/* ---- buckets ------------------------------------------------------------ */

/* Local start of the UNIT holding local time L. */
static int64_t tz_trunc(enum tz_unit unit, int64_t l)
{
	int64_t days;
	int y, m, d;

	switch (unit) {
	case TZ_MINUTE: return l - tz_fmod(l, 60);
	case TZ_HOUR: return l - tz_fmod(l, 3600);
	case TZ_DAY: return l - tz_fmod(l, 86400);
	case TZ_WEEK:
		days = tz_fdiv(l, 86400);
		return (days - tz_fmod(days + 3, 7)) * 86400;
	case TZ_MONTH:
		tz_civil_from_days(tz_fdiv(l, 86400), &y, &m, &d);
		return tz_dfc(y, m, 1) * 86400;
	}
	return l - tz_fmod(l, 86400);
}

/* Local start of the UNIT after the one starting at local time K. */
static int64_t tz_advance(enum tz_unit unit, int64_t k)
{
	int y, m, d;

	switch (unit) {
	case TZ_MINUTE: return k + 60;
	case TZ_HOUR: return k + 3600;
	case TZ_DAY: return k + 86400;
	case TZ_WEEK: return k + 7 * 86400;
	case TZ_MONTH:
		tz_civil_from_days(tz_fdiv(k, 86400), &y, &m, &d);
		return tz_days_from_civil(y, m + 1, 1) * 86400;
	}
	return k + 86400;
}

/*
 * Bucket boundaries are the instants t where the local time is exactly a
 * unit start (tz_trunc(l) == l) or where the key changes (tz_trunc of the
 * local time at t - 1 differs from that at t; within a segment that only
 * happens at unit starts, so only segment starts need checking).
 */

/* The last boundary <= T. */
static int64_t tz_floor_s(const struct tz *tz, enum tz_unit unit, int64_t t)
{
	struct tz_seg g, p;
	int64_t k, b;

	for (;;) {
		tz_seg(tz, t, &g);
		k = tz_trunc(unit, t + g.off);
		b = k - g.off;
		if (b >= g.s)
			return b;
		/* no unit start in [g.s, t]: is g.s itself a key change? */
		tz_seg(tz, g.s - 1, &p);
		if (tz_trunc(unit, g.s - 1 + p.off) != k)
			return g.s;
		t = g.s - 1;
	}
}

/* The first boundary > T. */
static int64_t tz_next_s(const struct tz *tz, enum tz_unit unit, int64_t t)
{
	struct tz_seg g, q;
	int64_t k, c, l;

	for (;;) {
		tz_seg(tz, t, &g);
		k = tz_trunc(unit, t + g.off);
		c = tz_advance(unit, k) - g.off;
		if (c < g.e)
			return c;
		/* no unit start in (t, g.e): is g.e a unit start or a key change? */
		tz_seg(tz, g.e, &q);
		l = g.e + q.off;
		if (tz_trunc(unit, l) == l || tz_trunc(unit, l) != k)
			return g.e;
		t = g.e;
	}
}

int64_t tz_bucket_floor(const struct tz *tz, enum tz_unit unit, int64_t utc_ms)
{
	return tz_floor_s(tz, unit, tz_ms_to_s(utc_ms)) * 1000;
}

int64_t tz_bucket_next(const struct tz *tz, enum tz_unit unit, int64_t start)
{
	return tz_next_s(tz, unit, tz_ms_to_s(start)) * 1000;
}

size_t tz_bucket_key(const struct tz *tz, enum tz_unit unit, int64_t start, char *buf, size_t n)
{
	int64_t t = tz_ms_to_s(start);
	struct tz_civil c;
	int r;

	if (!buf || n == 0)
		return 0;
	tz_civil_from_local(tz_trunc(unit, t + tz_off_s(tz, t)), &c);
	switch (unit) {
	case TZ_MINUTE:
		r = snprintf(buf, n, "%04d-%02d-%02d %02d:%02d:00", c.year, c.month, c.day, c.hour, c.minute);
		break;
	case TZ_HOUR:
		r = snprintf(buf, n, "%04d-%02d-%02d %02d:00:00", c.year, c.month, c.day, c.hour);
		break;
	default:
		r = snprintf(buf, n, "%04d-%02d-%02d", c.year, c.month, c.day);
		break;
	}
	if (r < 0) {
		buf[0] = '\0';
		return 0;
	}
	return (size_t)r < n ? (size_t)r : n - 1;
}

/* ---- POSIX TZ strings (the TZif footer) --------------------------------- */

static int tz_is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int tz_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* A zone abbreviation: 3+ letters, or <3+ of [A-Za-z0-9+-]>.  Returns the
 * position after it, NULL if there is none. */
static const char *tzs_name(const char *p, const char *end)
{
	const char *q;

	if (p < end && *p == '<') {
		for (q = ++p; p < end && *p != '>'; p++)
			if (!tz_is_alpha(*p) && !tz_is_digit(*p) && *p != '+' && *p != '-')
				return NULL;
		return p < end && p - q >= 3 ? p + 1 : NULL;
	}
	for (q = p; p < end && tz_is_alpha(*p); p++)
		;
	return p - q >= 3 ? p : NULL;
}

/* An unsigned number of 1..MAXDIG digits, at most MAX. */
static const char *tzs_num(const char *p, const char *end, int maxdig, int max, int *out)
{
	int v = 0, n = 0;

	while (p < end && tz_is_digit(*p) && n < maxdig) {
		v = v * 10 + (*p++ - '0');
		n++;
	}
	if (n == 0 || v > max || (p < end && tz_is_digit(*p)))
		return NULL;
	*out = v;
	return p;
}

/* [+-]h[h[h]][:mm[:ss]] with hours <= MAXH; seconds, negative after '-'. */
static const char *tzs_time(const char *p, const char *end, int maxh, int32_t *out)
{
	int neg = 0, h, mi = 0, s = 0;

	if (p < end && (*p == '+' || *p == '-'))
		neg = *p++ == '-';
	if (!(p = tzs_num(p, end, 3, maxh, &h)))
		return NULL;
	if (p < end && *p == ':') {
		if (!(p = tzs_num(p + 1, end, 2, 59, &mi)))
			return NULL;
		if (p < end && *p == ':' && !(p = tzs_num(p + 1, end, 2, 59, &s)))
			return NULL;
	}
	*out = (int32_t)((h * 3600 + mi * 60 + s) * (neg ? -1 : 1));
	return p;
}

static const char *tzs_rdate(const char *p, const char *end, struct tz_rdate *r)
{
	r->b = r->c = 0;
	r->time = 7200;
	if (p < end && *p == 'J') {
		r->kind = 'J';
		if (!(p = tzs_num(p + 1, end, 3, 365, &r->a)) || r->a < 1)
			return NULL;
	} else if (p < end && *p == 'M') {
		r->kind = 'M';
		if (!(p = tzs_num(p + 1, end, 2, 12, &r->a)) || r->a < 1 || p >= end || *p != '.' ||
		    !(p = tzs_num(p + 1, end, 1, 5, &r->b)) || r->b < 1 || p >= end || *p != '.' ||
		    !(p = tzs_num(p + 1, end, 1, 6, &r->c)))
			return NULL;
	} else {
		r->kind = 'N';
		if (!(p = tzs_num(p, end, 3, 365, &r->a)))
			return NULL;
	}
	if (p < end && *p == '/')
		p = tzs_time(p + 1, end, TZ_RULE_HOURS, &r->time);
	return p;
}

/* Parse S (LEN bytes) as "std offset [dst [offset] ,start[/time],end[/time]]". */
static int tz_parse_rule(const char *s, size_t len, struct tz_rule *r)
{
	const char *p = s, *end = s + len;
	int32_t v;

	memset(r, 0, sizeof *r);
	if (!(p = tzs_name(p, end)) || !(p = tzs_time(p, end, 24, &v)))
		return 0;
	r->std_off = -v;                           /* POSIX counts west */
	if (p == end)
		return 1;
	if (!(p = tzs_name(p, end)))
		return 0;
	r->has_dst = 1;
	r->dst_off = r->std_off + 3600;
	if (p < end && *p != ',') {
		if (!(p = tzs_time(p, end, 24, &v)))
			return 0;
		r->dst_off = -v;
	}
	if (p == end || *p != ',' || !(p = tzs_rdate(p + 1, end, &r->start)) ||
	    p == end || *p != ',' || !(p = tzs_rdate(p + 1, end, &r->end)))
		return 0;
	return p == end;
}

/* ---- TZif --------------------------------------------------------------- */

#define TZIF_HEADER 44

struct tzif_counts {
	uint32_t isut, isstd, leap, time, type, chars;
};

static uint32_t tz_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t tz_be64(const unsigned char *p)
{
	return (int64_t)((uint64_t)tz_be32(p) << 32 | tz_be32(p + 4));
}

/* Read the header at P (LEN bytes left); its version byte into *VERSION.
 * Returns the size of the data block after it (0 on error; a block is
 * never empty since typecnt >= 1). */
static uint64_t tzif_header(const unsigned char *p, size_t len, unsigned tsize, struct tzif_counts *c,
			    unsigned char *version)
{
	if (len < TZIF_HEADER || memcmp(p, "TZif", 4) != 0)
		return 0;
	*version = p[4];
	if (*version != 0 && (*version < '2' || *version > '9'))
		return 0;
	c->isut = tz_be32(p + 20);
	c->isstd = tz_be32(p + 24);
	c->leap = tz_be32(p + 28);
	c->time = tz_be32(p + 32);
	c->type = tz_be32(p + 36);
	c->chars = tz_be32(p + 40);
	if (c->type == 0 || c->type > 256 || c->chars == 0 ||
	    (c->isut != 0 && c->isut != c->type) || (c->isstd != 0 && c->isstd != c->type))
		return 0;
	return (uint64_t)c->time * (tsize + 1) + (uint64_t)c->type * 6 + c->chars +
	       (uint64_t)c->leap * (tsize + 4) + c->isstd + c->isut;
}

/* Build the transition table from the data block at P (checked to be
 * complete) with TSIZE-byte times. */
static enum mp_err tzif_block(const unsigned char *p, const struct tzif_counts *c, unsigned tsize,
			      struct tz *tz)
{
	const unsigned char *idx = p + (size_t)c->time * tsize;
	const unsigned char *types = idx + c->time;
	int32_t offs[256];
	size_t i;

	for (i = 0; i < c->type; i++) {
		const unsigned char *tt = types + 6 * i;
		int32_t off = (int32_t)tz_be32(tt);

		if (off <= -TZ_OFF_BOUND || off >= TZ_OFF_BOUND || tt[4] > 1 || tt[5] >= c->chars)
			return MP_E_INVALID;
		offs[i] = off;
	}
	tz->off0 = offs[0];
	if (c->time == 0)
		return MP_OK;
	tz->at = malloc((size_t)c->time * sizeof *tz->at);
	tz->off = malloc((size_t)c->time * sizeof *tz->off);
	if (!tz->at || !tz->off)
		return MP_E_NOMEM;
	for (i = 0; i < c->time; i++) {
		int64_t at = tsize == 8 ? tz_be64(p + 8 * i) : (int64_t)(int32_t)tz_be32(p + 4 * i);

		if ((i > 0 && at <= tz->at[i - 1]) || idx[i] >= c->type)
			return MP_E_INVALID;
		tz->at[i] = at;
		tz->off[i] = offs[idx[i]];
	}
	tz->n = c->time;
	return MP_OK;
}

static enum mp_err tz_parse_body(const unsigned char *data, size_t len, struct tz *tz)
{
	struct tzif_counts c;
	unsigned char version, v2;
	uint64_t size;
	const unsigned char *p, *nl;
	size_t pos, rest;

	size = tzif_header(data, len, 4, &c, &version);
	if (size == 0 || size > len - TZIF_HEADER)
		return MP_E_INVALID;
	pos = TZIF_HEADER + (size_t)size;
	if (version == 0)
		return tzif_block(data + TZIF_HEADER, &c, 4, tz);
	/* version 2+: skip the 32-bit block, use the 64-bit one and the footer */
	size = tzif_header(data + pos, len - pos, 8, &c, &v2);
	if (size == 0 || v2 < '2' || size > len - pos - TZIF_HEADER)
		return MP_E_INVALID;
	p = data + pos + TZIF_HEADER;
	pos += TZIF_HEADER + (size_t)size;
	rest = len - pos;
	if (rest < 2 || data[pos] != '\n' || !(nl = memchr(data + pos + 1, '\n', rest - 1)))
		return MP_E_INVALID;
	if (nl > data + pos + 1) {
		if (!tz_parse_rule((const char *)data + pos + 1, (size_t)(nl - (data + pos + 1)), &tz->rule))
			return MP_E_INVALID;
		tz->has_rule = 1;
	}
	return tzif_block(p, &c, 8, tz);
}

void tz_free(struct tz *tz)
{
	if (!tz)
		return;
	free(tz->at);
	free(tz->off);
	free(tz);
}

enum mp_err tz_parse(const unsigned char *data, size_t len, struct tz **out)
{
	struct tz *tz;
	enum mp_err rc;

	if (!data)
		return MP_E_INVALID;
	tz = calloc(1, sizeof *tz);
	if (!tz)
		return MP_E_NOMEM;
	rc = tz_parse_body(data, len, tz);
	if (rc != MP_OK) {
		tz_free(tz);
		return rc;
	}
	*out = tz;
	return MP_OK;
}

/* Read the whole regular file PATH (at most TZ_FILE_MAX bytes). */
static enum mp_err tz_read_file(const char *path, unsigned char **data, size_t *len)
{
	struct stat st;
	unsigned char *buf;
	size_t cap, got = 0;
	ssize_t r;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return errno == ENOENT || errno == ENOTDIR ? MP_E_NOTFOUND : MP_E_IO;
	if (fstat(fd, &st) != 0) {
		close(fd);
		return MP_E_IO;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > TZ_FILE_MAX) {
		close(fd);
		return MP_E_INVALID;
	}
	cap = (size_t)st.st_size + 1;              /* +1: notice a file that grew */
	buf = malloc(cap);
	if (!buf) {
		close(fd);
		return MP_E_NOMEM;
	}
	while (got < cap) {
		r = read(fd, buf + got, cap - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			free(buf);
			close(fd);
			return MP_E_IO;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	if (got == cap) {                          /* changed under us */
		free(buf);
		return MP_E_IO;
	}
	*data = buf;
	*len = got;
	return MP_OK;
}

enum mp_err tz_load(const char *name, struct tz **out)
{
	static const char allowed[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				      "0123456789/_-+.";
	char path[sizeof TZ_ZONEINFO + TZ_NAME_MAX + 1];
	unsigned char *data;
	size_t n, len;
	struct tz *tz;
	enum mp_err rc;

	if (!name || !out)
		return MP_E_INVALID;
	if (strcmp(name, "UTC") == 0 || strcmp(name, "Etc/UTC") == 0) {
		tz = calloc(1, sizeof *tz);
		if (!tz)
			return MP_E_NOMEM;
		*out = tz;                         /* no transitions, offset 0 */
		return MP_OK;
	}
	n = strlen(name);
	if (n == 0 || n > TZ_NAME_MAX || name[0] == '/' || strstr(name, "..") || strspn(name, allowed) != n)
		return MP_E_INVALID;
	snprintf(path, sizeof path, "%s/%s", TZ_ZONEINFO, name);
	rc = tz_read_file(path, &data, &len);
	if (rc != MP_OK)
		return rc;
	rc = tz_parse(data, len, out);
	free(data);
	return rc;
}
