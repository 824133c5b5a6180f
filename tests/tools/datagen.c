/*
 * datagen.c - a deterministic, realistic product-analytics data set for the
 * query benchmark (tests/bench/query_bench.mjs; docs/PERFORMANCE.md).
 *
 *   datagen [--events N] [--users U] [--days D] [--end-day YYYY-MM-DD]
 *           [--seed S] [--json-dir DIR] [--format json|ndjson] [--batch N]
 *           [--tsv FILE] [--merge-third] [--quiet]
 *
 * Defaults: 10,000,000 events from 200,000 users over 90 days ending
 * yesterday (UTC), seed 1, batches of 2000 events.  The same arguments give
 * the same events, byte for byte (the end day included: pass --end-day to
 * reproduce a run of another day).
 *
 * Outputs (either or both, written in one pass so they hold the same events):
 *   --json-dir DIR  the events as Mixpanel /import bodies: files
 *                   DIR/b-000000.json ... of --batch events each, a JSON array
 *                   (--format json, Content-Type application/json) or one
 *                   object per line (--format ndjson, application/x-ndjson);
 *   --tsv FILE      one line per event, tab-separated, no header, \N for a
 *                   property the event does not have, in the column order
 *                   name, distinct_id, time_ms, insert_id, os, browser, city,
 *                   country, screen_width, platform, plan, utm_source,
 *                   is_trial (0/1), item_id, amount, item_count
 *                   (for loading the same events into DuckDB and SQLite).
 *   --merge-third   the SAME events, but every third user (index % 3 == 0,
 *                   so all activity levels) is first anonymous and then
 *                   identified, the way an SDK with Simplified ID Merge
 *                   sends it (docs/IDENTITY.md): the user's events before
 *                   their k-th (k = 2..6, from a hash of the user; at most
 *                   the user's event count) have distinct_id
 *                   "$device:<uuid>" and "$device_id":"<uuid>" (a uuid
 *                   derived from the user and the seed), the k-th has
 *                   distinct_id = the user id, "$device_id" and "$user_id"
 *                   (it links the device to the user), the later ones are
 *                   as without the option.  A merged user is thus the same
 *                   person as the plain user: every unique count, funnel
 *                   and retention must be equal on the two data sets
 *                   (tests/bench/identity_bench.mjs).  Costs a second,
 *                   silent generation pass (to count each user's events).
 *                   The TSV gets the distinct_id sent.  Without the option
 *                   the output is byte for byte what it was before it.
 * Events are written in ascending time order (an export replayed).  On
 * stdout: one JSON line describing the set (from_day, to_day, counts per
 * event name, ...; with --merge-third also "merge": users merged, events
 * sent anonymously, linking events); progress on stderr.
 *
 * The model (everything drawn from one seeded xorshift64* generator):
 *   - Users: 20% existed before the window (signed up 1-180 days earlier,
 *     no "Sign Up" event in the data), the others sign up on a day of the
 *     window (more towards the end: the product grows).  Each user has a
 *     Zipf-like activity weight ((rank+1)^-0.5) and fixed attributes:
 *     platform (web/ios/android), $os, $browser (web only), $screen_width,
 *     $city + mp_country_code, plan, utm_source, is_trial.
 *   - Retention: on day d a user's chance of a session is proportional to
 *     weight * R(d - signup), R decaying from 1 to a plateau of 0.1 with a
 *     time constant of ~2 weeks, so weekly cohorts decay.
 *   - Days: events per day follow a slow growth and a weekly cycle (weekends
 *     at 80%); session start times follow a diurnal curve (UTC).
 *   - Sessions: "App Open", then (on the signup day) "Sign Up" and, for
 *     70%, "Complete Onboarding"; then the funnel "View Item" (62%) ->
 *     "Add To Cart" (40%) -> "Checkout" (58%) -> "Purchase" (72%), each
 *     step seconds to minutes after the previous one (15%: 1-18 hours
 *     later), with other events in between and after, drawn from 17 names
 *     with Zipf skew ("Page View" most).  Commerce events carry item_id,
 *     amount (2 decimals) and item_count.  0.2% of "Page View" events are
 *     server-side ones with distinct_id "" (left out of user counts).
 *   - Every event has a unique $insert_id (a bijection of its index) and a
 *     time in ms; no event is later than the end of --end-day.
 * The total is exactly --events: days get their share of the total, the
 * last session is cut at the total.
 *
 * Exit status: 0 done, 2 usage error, 1 I/O error or out of memory.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define DG_DAY_MS 86400000LL
#define DG_HOUR_MS 3600000LL
#define DG_MAX_LAG_DAYS 8          /* a session spans at most 4 x 18 h + minutes */
#define DG_NO_VALUE (-1)

static void dg_die(const char *fmt, ...)
{
	va_list ap;

	fputs("datagen: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void *dg_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		dg_die("out of memory (%zu bytes)", n);
	return p;
}

/* ---------- randomness: xorshift64* ---------- */

static uint64_t dg_state;

static uint64_t dg_rand(void)
{
	uint64_t x = dg_state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	dg_state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* Uniform in [0, 1). */
static double dg_uniform(void)
{
	return (double)(dg_rand() >> 11) * 0x1.0p-53;
}

static int64_t dg_range(int64_t lo, int64_t hi) /* [lo, hi] */
{
	return lo + (int64_t)(dg_uniform() * (double)(hi - lo + 1));
}

static double dg_exp(double mean)
{
	return -mean * log(1.0 - dg_uniform());
}

/* splitmix64 finaliser: a bijection, for ids. */
static uint64_t dg_mix64(uint64_t z)
{
	z ^= z >> 30;
	z *= 0xbf58476d1ce4e5b9ULL;
	z ^= z >> 27;
	z *= 0x94d049bb133111ebULL;
	z ^= z >> 31;
	return z;
}

/* A cumulative distribution over N weights (normalised in place). */
static void dg_cdf_norm(double *w, size_t n)
{
	double sum = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		sum += w[i];
		w[i] = sum;
	}
	for (i = 0; i < n; i++)
		w[i] = sum > 0 ? w[i] / sum : (double)(i + 1) / (double)n;
}

static void dg_zipf(double *cdf, size_t n, double s)
{
	size_t i;

	for (i = 0; i < n; i++)
		cdf[i] = 1.0 / pow((double)(i + 1), s);
	dg_cdf_norm(cdf, n);
}

static size_t dg_pick(const double *cdf, size_t n)
{
	double u = dg_uniform();
	size_t lo = 0, hi = n - 1;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (cdf[mid] <= u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* ---------- the vocabulary ---------- */

enum {
	EV_APP_OPEN, EV_VIEW_ITEM, EV_ADD_TO_CART, EV_CHECKOUT, EV_PURCHASE, EV_SIGN_UP, EV_ONBOARDING,
	EV_FIRST_OTHER
};
static const char *const dg_events[] = {
	"App Open", "View Item", "Add To Cart", "Checkout", "Purchase", "Sign Up", "Complete Onboarding",
	/* the others, most frequent first (Zipf) */
	"Page View", "Search", "Scroll", "Add To Wishlist", "Share Item", "Rate Item", "Watch Video",
	"Open Notification", "Update Profile", "Apply Coupon", "Remove From Cart", "Invite Friend",
	"Contact Support", "Change Settings", "Log Out", "Upgrade Plan", "Cancel Subscription",
};
#define DG_N_EVENTS (sizeof dg_events / sizeof dg_events[0])
#define DG_N_OTHER (DG_N_EVENTS - EV_FIRST_OTHER)

enum { PF_WEB, PF_IOS, PF_ANDROID };
static const char *const dg_platforms[] = { "web", "ios", "android" };
static const char *const dg_web_os[] = { "Windows", "Mac OS X", "Linux", "Chrome OS" };
static const char *const dg_browsers[] = { "Chrome", "Safari", "Firefox", "Edge", "Opera" };
static const int dg_web_widths[] = { 1920, 1366, 1536, 1440, 2560, 1280 };
static const int dg_mobile_widths[] = { 390, 414, 375, 360, 412, 428 };
static const char *const dg_cities[][2] = {
	{ "New York", "US" }, { "London", "GB" }, { "San Francisco", "US" }, { "Berlin", "DE" },
	{ "Paris", "FR" }, { "Toronto", "CA" }, { "Sydney", "AU" }, { "Chicago", "US" },
	{ "Madrid", "ES" }, { "Amsterdam", "NL" }, { "Tokyo", "JP" }, { "Sao Paulo", "BR" },
	{ "Mumbai", "IN" }, { "Singapore", "SG" }, { "Austin", "US" }, { "Dublin", "IE" },
	{ "Stockholm", "SE" }, { "Seoul", "KR" }, { "Mexico City", "MX" }, { "Warsaw", "PL" },
};
static const char *const dg_plans[] = { "free", "pro", "team", "enterprise" };
static const char *const dg_utm[] = {
	"google", "direct", "facebook", "newsletter", "twitter", "bing", "linkedin", "reddit", "tiktok",
};
#define DG_COUNT(a) (sizeof (a) / sizeof (a)[0])
#define DG_N_ITEMS 5000

/* ---------- users ---------- */

struct dg_user {
	int32_t signup;            /* day index (0 = first day of the window; < 0 before) */
	float weight;              /* activity */
	uint8_t platform, os, browser, city, plan, utm, trial, width;
	char id[17];               /* distinct_id: 16 hex digits */
};

/* ---------- events ---------- */

struct dg_event {
	int64_t t;                 /* ms */
	uint64_t seq;              /* generation order: ties */
	uint32_t user;             /* UINT32_MAX: server-side, distinct_id "" */
	uint8_t name;
	int8_t item_count;         /* DG_NO_VALUE: none */
	int32_t item;              /* DG_NO_VALUE: none */
	int64_t cents;             /* amount; DG_NO_VALUE: none */
};

struct dg_daybuf {
	struct dg_event *e;
	size_t n, cap;
};

struct dg_opts {
	long long events;
	long users, days;
	uint64_t seed;
	const char *json_dir, *tsv, *end_day;
	int ndjson, quiet, merge_third;
	long batch;
};

struct dg_out {
	FILE *tsv;
	FILE *json;                /* the current batch file */
	const char *dir;
	int ndjson;
	long batch, in_batch;
	long files;
	uint64_t written;
	uint64_t seed;
	char *buf;                 /* one event's text */
	size_t cap;
	/* --merge-third */
	uint32_t *count;           /* the counting pass: events per user; else NULL */
	const uint32_t *total;     /* the writing pass: each user's event count; NULL: no merges */
	uint32_t *seen;            /* the writing pass: events written per user */
	uint64_t merged_users, anon_events, link_events;
};

/* Growable text into a fixed buffer big enough for one event. */
struct dg_sb {
	char *p;
	size_t n;
};

static void sb_mem(struct dg_sb *b, const char *s, size_t n)
{
	memcpy(b->p + b->n, s, n);
	b->n += n;
}

static void sb_s(struct dg_sb *b, const char *s)
{
	sb_mem(b, s, strlen(s));
}

static void sb_c(struct dg_sb *b, char c)
{
	b->p[b->n++] = c;
}

static void sb_u(struct dg_sb *b, uint64_t v)
{
	char tmp[24];
	int n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		b->p[b->n++] = tmp[--n];
}

static void sb_cents(struct dg_sb *b, int64_t c)
{
	sb_u(b, (uint64_t)(c / 100));
	sb_c(b, '.');
	sb_c(b, (char)('0' + (c / 10) % 10));
	sb_c(b, (char)('0' + c % 10));
}

/* JSON "key":"value" for keys and values without characters to escape. */
static void sb_kv(struct dg_sb *b, const char *k, const char *v)
{
	sb_c(b, ',');
	sb_c(b, '"');
	sb_s(b, k);
	sb_s(b, "\":\"");
	sb_s(b, v);
	sb_c(b, '"');
}

static void sb_ku(struct dg_sb *b, const char *k, uint64_t v)
{
	sb_c(b, ',');
	sb_c(b, '"');
	sb_s(b, k);
	sb_s(b, "\":");
	sb_u(b, v);
}

static void dg_insert_id(char out[17], uint64_t seed, uint64_t idx)
{
	static const char b36[] = "0123456789abcdefghijklmnopqrstuvwxyz";
	uint64_t v = dg_mix64((seed << 40) ^ idx ^ 0x1d5ULL);
	int i;

	/* 16 base-36 digits of a 64-bit bijection: distinct for distinct idx */
	for (i = 15; i >= 0; i--) {
		out[i] = b36[v % 36];
		v /= 36;
	}
	out[16] = '\0';
}

static void dg_item_id(char out[16], int32_t item)
{
	struct dg_sb b = { out, 0 };

	sb_s(&b, "sku-");
	sb_u(&b, (uint64_t)item);
	out[b.n] = '\0';
}

/* --merge-third: a merged user's device id, a uuid derived from the user. */
static void dg_device_id(char out[37], uint64_t seed, uint32_t user)
{
	uint64_t h[2];
	int i, n = 0;

	h[0] = dg_mix64((seed << 32) ^ ((uint64_t)user * 0x9e3779b97f4a7c15ULL) ^ 0xde71ceULL);
	h[1] = dg_mix64(h[0] ^ 0xa5a5a5a5a5a5a5a5ULL);
	for (i = 0; i < 32; i++) {
		if (i == 8 || i == 12 || i == 16 || i == 20)
			out[n++] = '-';
		out[n++] = "0123456789abcdef"[(h[i / 16] >> (60 - 4 * (i % 16))) & 15];
	}
	out[n] = '\0';
}

/* --merge-third: the user's event (1-based) that links the device to the
 * user: 2..6, at most the user's event count. */
static uint32_t dg_link_event(uint64_t seed, uint32_t user, uint32_t total)
{
	uint32_t k = 2 + (uint32_t)(dg_mix64((seed << 32) ^ user ^ 0x11d5ULL) % 5);

	return k < total ? k : total;
}

static void dg_open_batch(struct dg_out *o)
{
	char path[4096];

	if (snprintf(path, sizeof path, "%s/b-%06ld.%s", o->dir, o->files, o->ndjson ? "ndjson" : "json") >=
	    (int)sizeof path)
		dg_die("path too long: %s", o->dir);
	o->json = fopen(path, "w");
	if (!o->json)
		dg_die("cannot create %s: %s", path, strerror(errno));
	setvbuf(o->json, NULL, _IOFBF, 1 << 20);
	o->files++;
	o->in_batch = 0;
	if (!o->ndjson)
		fputc('[', o->json);
}

static void dg_close_batch(struct dg_out *o)
{
	if (!o->json)
		return;
	if (!o->ndjson)
		fputs("]\n", o->json);
	if (ferror(o->json) || fclose(o->json) != 0)
		dg_die("write error in %s: %s", o->dir, strerror(errno));
	o->json = NULL;
}

static void dg_write(struct dg_out *o, const struct dg_event *e, const struct dg_user *users)
{
	const struct dg_user *u = e->user == UINT32_MAX ? NULL : &users[e->user];
	struct dg_sb b = { o->buf, 0 };
	char iid[17], item[16];
	const char *did = u ? u->id : "";
	int plat = u ? u->platform : PF_WEB;
	int merge = 0;             /* 1: anonymous, 2: the linking event */
	char dev[37], anon[46];

	if (o->count) {            /* the counting pass of --merge-third */
		if (u)
			o->count[e->user]++;
		o->written++;
		return;
	}
	if (o->total && u && e->user % 3 == 0) {
		uint32_t k = dg_link_event(o->seed, e->user, o->total[e->user]), i = ++o->seen[e->user];

		if (i <= k) {
			dg_device_id(dev, o->seed, e->user);
			if (i < k) {
				merge = 1;
				memcpy(anon, "$device:", 8);
				memcpy(anon + 8, dev, 37);
				did = anon;
				o->anon_events++;
			} else {
				merge = 2;
				o->link_events++;
			}
			if (i == 1)
				o->merged_users++;
		}
	}
	dg_insert_id(iid, o->seed, o->written);
	if (e->item != DG_NO_VALUE)
		dg_item_id(item, e->item);
	if (o->dir) {
		if (!o->json)
			dg_open_batch(o);
		if (!o->ndjson && o->in_batch)
			sb_c(&b, ',');
		sb_s(&b, "{\"event\":\"");
		sb_s(&b, dg_events[e->name]);
		sb_s(&b, "\",\"properties\":{\"time\":");
		sb_u(&b, (uint64_t)e->t);
		sb_kv(&b, "distinct_id", did);
		sb_kv(&b, "$insert_id", iid);
		if (merge)
			sb_kv(&b, "$device_id", dev);
		if (merge == 2)
			sb_kv(&b, "$user_id", u->id);
		if (u) {
			sb_kv(&b, "$os", plat == PF_WEB ? dg_web_os[u->os] : plat == PF_IOS ? "iOS" : "Android");
			if (plat == PF_WEB)
				sb_kv(&b, "$browser", dg_browsers[u->browser]);
			sb_kv(&b, "$city", dg_cities[u->city][0]);
			sb_kv(&b, "mp_country_code", dg_cities[u->city][1]);
			sb_ku(&b, "$screen_width",
			      (uint64_t)(plat == PF_WEB ? dg_web_widths[u->width] : dg_mobile_widths[u->width]));
			sb_kv(&b, "platform", dg_platforms[plat]);
			sb_kv(&b, "plan", dg_plans[u->plan]);
			sb_kv(&b, "utm_source", dg_utm[u->utm]);
			sb_s(&b, u->trial ? ",\"is_trial\":true" : ",\"is_trial\":false");
		} else {
			sb_kv(&b, "platform", "server");
		}
		if (e->item != DG_NO_VALUE)
			sb_kv(&b, "item_id", item);
		if (e->cents != DG_NO_VALUE) {
			sb_s(&b, ",\"amount\":");
			sb_cents(&b, e->cents);
		}
		if (e->item_count != DG_NO_VALUE)
			sb_ku(&b, "item_count", (uint64_t)e->item_count);
		sb_s(&b, "}}");
		if (o->ndjson)
			sb_c(&b, '\n');
		if (fwrite(b.p, 1, b.n, o->json) != b.n)
			dg_die("write error: %s", strerror(errno));
		if (++o->in_batch == o->batch)
			dg_close_batch(o);
	}
	if (o->tsv) {
		b.n = 0;
		sb_s(&b, dg_events[e->name]);
		sb_c(&b, '\t');
		sb_s(&b, did);
		sb_c(&b, '\t');
		sb_u(&b, (uint64_t)e->t);
		sb_c(&b, '\t');
		sb_s(&b, iid);
		if (u) {
			sb_c(&b, '\t');
			sb_s(&b, plat == PF_WEB ? dg_web_os[u->os] : plat == PF_IOS ? "iOS" : "Android");
			sb_c(&b, '\t');
			sb_s(&b, plat == PF_WEB ? dg_browsers[u->browser] : "\\N");
			sb_c(&b, '\t');
			sb_s(&b, dg_cities[u->city][0]);
			sb_c(&b, '\t');
			sb_s(&b, dg_cities[u->city][1]);
			sb_c(&b, '\t');
			sb_u(&b, (uint64_t)(plat == PF_WEB ? dg_web_widths[u->width] : dg_mobile_widths[u->width]));
			sb_c(&b, '\t');
			sb_s(&b, dg_platforms[plat]);
			sb_c(&b, '\t');
			sb_s(&b, dg_plans[u->plan]);
			sb_c(&b, '\t');
			sb_s(&b, dg_utm[u->utm]);
			sb_s(&b, u->trial ? "\t1" : "\t0");
		} else {
			sb_s(&b, "\t\\N\t\\N\t\\N\t\\N\t\\N\tserver\t\\N\t\\N\t\\N");
		}
		sb_c(&b, '\t');
		sb_s(&b, e->item != DG_NO_VALUE ? item : "\\N");
		sb_c(&b, '\t');
		if (e->cents != DG_NO_VALUE)
			sb_cents(&b, e->cents);
		else
			sb_s(&b, "\\N");
		sb_c(&b, '\t');
		if (e->item_count != DG_NO_VALUE)
			sb_u(&b, (uint64_t)e->item_count);
		else
			sb_s(&b, "\\N");
		sb_c(&b, '\n');
		if (fwrite(b.p, 1, b.n, o->tsv) != b.n)
			dg_die("write error: %s", strerror(errno));
	}
	o->written++;
}

/* ---------- the generator ---------- */

struct dg {
	struct dg_opts opt;
	struct dg_user *users;
	int64_t start_ms, end_ms;  /* [start, end) */
	struct dg_daybuf ring[DG_MAX_LAG_DAYS];
	long day;                  /* the day being generated */
	uint64_t made, seq;        /* events placed so far */
	uint64_t per_name[DG_N_EVENTS];
	double other_cdf[DG_N_OTHER], hour_cdf[24], item_cdf[DG_N_ITEMS];
	int32_t item_cents[DG_N_ITEMS];
};

/* Place one event; 0 when the total is reached or T is past the end. */
static int dg_emit(struct dg *g, int64_t t, uint32_t user, int name, int32_t item, int64_t cents, int count)
{
	long d;
	struct dg_daybuf *b;
	struct dg_event *e;

	if (g->made >= (uint64_t)g->opt.events || t >= g->end_ms)
		return 0;
	d = (long)((t - g->start_ms) / DG_DAY_MS);
	if (d < g->day || d >= g->day + DG_MAX_LAG_DAYS)
		dg_die("internal: event on day %ld while generating day %ld", d, g->day);
	b = &g->ring[d % DG_MAX_LAG_DAYS];
	if (b->n == b->cap) {
		size_t nc = b->cap ? b->cap * 2 : 65536;
		struct dg_event *ne = realloc(b->e, nc * sizeof *ne);

		if (!ne)
			dg_die("out of memory");
		b->e = ne;
		b->cap = nc;
	}
	e = &b->e[b->n++];
	e->t = t;
	e->seq = g->seq++;
	e->user = user;
	e->name = (uint8_t)name;
	e->item = item;
	e->cents = cents;
	e->item_count = (int8_t)count;
	g->made++;
	g->per_name[name]++;
	return 1;
}

/* A gap in ms between two events of one session: seconds to minutes. */
static int64_t dg_gap_short(void)
{
	return 2000 + (int64_t)dg_exp(40000.0);
}

/* Between two funnel steps: minutes, or 15% of the time 1-18 hours. */
static int64_t dg_gap_step(void)
{
	if (dg_uniform() < 0.15)
		return dg_range(DG_HOUR_MS, 18 * DG_HOUR_MS);
	return 3000 + (int64_t)dg_exp(120000.0);
}

/* 0..3 other events (browsing) after *T; 0 when the session must end. */
static int dg_browse(struct dg *g, int64_t *t, uint32_t user, int max)
{
	int k = (int)dg_range(0, max), i;

	for (i = 0; i < k; i++) {
		int name = EV_FIRST_OTHER + (int)dg_pick(g->other_cdf, DG_N_OTHER);
		int32_t item = DG_NO_VALUE;
		int64_t cents = DG_NO_VALUE;
		uint32_t who = user;

		*t += dg_gap_short();
		if (name == EV_FIRST_OTHER && dg_uniform() < 0.002)
			who = UINT32_MAX;  /* a server-side page view without a user */
		switch (name - EV_FIRST_OTHER) {
		case 3:  /* Add To Wishlist */
		case 10: /* Remove From Cart */
			item = (int32_t)dg_pick(g->item_cdf, DG_N_ITEMS);
			cents = g->item_cents[item];
			break;
		case 4:  /* Share Item */
		case 5:  /* Rate Item */
			item = (int32_t)dg_pick(g->item_cdf, DG_N_ITEMS);
			break;
		default:
			break;
		}
		if (!dg_emit(g, *t, who, name, item, cents, DG_NO_VALUE))
			return 0;
	}
	return 1;
}

static void dg_session(struct dg *g, uint32_t user, int64_t t, int signup)
{
	static const double step_p[] = { 0.62, 0.40, 0.58, 0.72 };
	int32_t item = DG_NO_VALUE;
	int64_t cart = 0;
	int count = 0, step;

	if (!dg_emit(g, t, user, EV_APP_OPEN, DG_NO_VALUE, DG_NO_VALUE, DG_NO_VALUE))
		return;
	if (signup) {
		t += dg_gap_short();
		if (!dg_emit(g, t, user, EV_SIGN_UP, DG_NO_VALUE, DG_NO_VALUE, DG_NO_VALUE))
			return;
		if (dg_uniform() < 0.7) {
			t += dg_gap_short() * 3;
			if (!dg_emit(g, t, user, EV_ONBOARDING, DG_NO_VALUE, DG_NO_VALUE, DG_NO_VALUE))
				return;
		}
	}
	for (step = 1; step <= 4; step++) {
		if (dg_uniform() >= step_p[step - 1])
			break;
		if (!dg_browse(g, &t, user, 2))
			return;
		t += dg_gap_step();
		switch (step) {
		case 1:
			item = (int32_t)dg_pick(g->item_cdf, DG_N_ITEMS);
			if (!dg_emit(g, t, user, EV_VIEW_ITEM, item, g->item_cents[item], DG_NO_VALUE))
				return;
			break;
		case 2:
			count = (int)(dg_uniform() < 0.7 ? 1 : dg_range(2, 5));
			cart = (int64_t)g->item_cents[item] * count;
			if (!dg_emit(g, t, user, EV_ADD_TO_CART, item, cart, count))
				return;
			break;
		default:
			if (!dg_emit(g, t, user, step == 3 ? EV_CHECKOUT : EV_PURCHASE, DG_NO_VALUE, cart, count))
				return;
			break;
		}
	}
	dg_browse(g, &t, user, 4);
}

/* A session start on day D: the diurnal curve (UTC). */
static int64_t dg_start_time(struct dg *g, long d)
{
	int h = (int)dg_pick(g->hour_cdf, 24);

	return g->start_ms + d * DG_DAY_MS + h * DG_HOUR_MS + dg_range(0, DG_HOUR_MS - 1);
}

static int dg_event_cmp(const void *a, const void *b)
{
	const struct dg_event *x = a, *y = b;

	if (x->t != y->t)
		return x->t < y->t ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void dg_make_users(struct dg *g)
{
	long n = g->opt.users, u, d;
	double growth[1024], cdf_city[DG_COUNT(dg_cities)], cdf_plan[DG_COUNT(dg_plans)], cdf_utm[DG_COUNT(dg_utm)];
	double cdf_browser[DG_COUNT(dg_browsers)], cdf_os[DG_COUNT(dg_web_os)], cdf_w[DG_COUNT(dg_web_widths)];

	g->users = dg_xmalloc((size_t)n * sizeof *g->users);
	for (d = 0; d < g->opt.days; d++)
		growth[d] = 1.0 + 1.5 * (double)d / (double)g->opt.days;
	dg_cdf_norm(growth, (size_t)g->opt.days);
	dg_zipf(cdf_city, DG_COUNT(cdf_city), 0.9);
	dg_zipf(cdf_plan, DG_COUNT(cdf_plan), 1.6);
	dg_zipf(cdf_utm, DG_COUNT(cdf_utm), 1.1);
	dg_zipf(cdf_browser, DG_COUNT(cdf_browser), 1.3);
	dg_zipf(cdf_os, DG_COUNT(cdf_os), 1.4);
	dg_zipf(cdf_w, DG_COUNT(cdf_w), 1.2);
	for (u = 0; u < n; u++) {
		struct dg_user *p = &g->users[u];
		uint64_t h = dg_mix64(g->opt.seed * 0x9e3779b97f4a7c15ULL + (uint64_t)u + 1);
		double r = dg_uniform();
		int i;

		for (i = 15; i >= 0; i--) {
			p->id[i] = "0123456789abcdef"[h & 15];
			h >>= 4;
		}
		p->id[16] = '\0';
		p->signup = dg_uniform() < 0.2 ? -(int32_t)dg_range(1, 180) : (int32_t)dg_pick(growth, (size_t)g->opt.days);
		p->weight = (float)(1.0 / sqrt((double)u + 1.0));
		p->platform = r < 0.55 ? PF_WEB : r < 0.80 ? PF_IOS : PF_ANDROID;
		p->os = (uint8_t)dg_pick(cdf_os, DG_COUNT(cdf_os));
		p->browser = (uint8_t)dg_pick(cdf_browser, DG_COUNT(cdf_browser));
		p->width = (uint8_t)dg_pick(cdf_w, DG_COUNT(cdf_w));
		p->city = (uint8_t)dg_pick(cdf_city, DG_COUNT(cdf_city));
		p->plan = (uint8_t)dg_pick(cdf_plan, DG_COUNT(cdf_plan));
		p->utm = (uint8_t)dg_pick(cdf_utm, DG_COUNT(cdf_utm));
		p->trial = p->plan != 0 && dg_uniform() < 0.15;
	}
}

static int64_t dg_parse_day(const char *s)
{
	struct tm tm;
	char *end;

	memset(&tm, 0, sizeof tm);
	end = strptime(s, "%Y-%m-%d", &tm);
	if (!end || *end)
		return -1;
	return (int64_t)timegm(&tm) * 1000;
}

static void dg_fmt_day(int64_t ms, char out[11])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 11, "%Y-%m-%d", &tm);
}

static void dg_usage(void)
{
	fputs("usage: datagen [--events N] [--users U] [--days D] [--end-day YYYY-MM-DD] [--seed S]\n"
	      "               [--json-dir DIR] [--format json|ndjson] [--batch N] [--tsv FILE] [--merge-third]\n"
	      "               [--quiet]\n",
	      stderr);
}

static long long dg_num(const char *name, const char *v, long long lo, long long hi)
{
	char *end;
	long long x;

	errno = 0;
	x = v ? strtoll(v, &end, 10) : 0;
	if (!v || errno || *end || x < lo || x > hi) {
		fprintf(stderr, "datagen: %s must be an integer in [%lld, %lld]\n", name, lo, hi);
		dg_usage();
		exit(2);
	}
	return x;
}

int main(int argc, char **argv)
{
	struct dg g;
	struct dg_out out;
	double *ucdf, growth_sum = 0, day_w[1024], rtab[1024 + 200];
	long d, u, i;
	uint64_t target_so_far, state0;
	int pass;
	char from[11], to[11];
	clock_t c0 = clock();

	memset(&g, 0, sizeof g);
	memset(&out, 0, sizeof out);
	g.opt.events = 10000000;
	g.opt.users = 200000;
	g.opt.days = 90;
	g.opt.seed = 1;
	g.opt.batch = 2000;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			dg_usage();
			return 0;
		}
		if (!strcmp(a, "--quiet")) {
			g.opt.quiet = 1;
			continue;
		}
		if (!strcmp(a, "--merge-third")) {
			g.opt.merge_third = 1;
			continue;
		}
		if (strcmp(a, "--events") && strcmp(a, "--users") && strcmp(a, "--days") && strcmp(a, "--seed") &&
		    strcmp(a, "--batch") && strcmp(a, "--end-day") && strcmp(a, "--json-dir") && strcmp(a, "--tsv") &&
		    strcmp(a, "--format")) {
			fprintf(stderr, "datagen: unknown argument %s\n", a);
			dg_usage();
			return 2;
		}
		if (!v) {
			fprintf(stderr, "datagen: %s needs a value\n", a);
			dg_usage();
			return 2;
		}
		i++;
		if (!strcmp(a, "--events"))
			g.opt.events = dg_num(a, v, 1, 2000000000LL);
		else if (!strcmp(a, "--users"))
			g.opt.users = (long)dg_num(a, v, 1, 100000000);
		else if (!strcmp(a, "--days"))
			g.opt.days = (long)dg_num(a, v, 1, 1000);
		else if (!strcmp(a, "--seed"))
			g.opt.seed = (uint64_t)dg_num(a, v, 0, 0xffffff);
		else if (!strcmp(a, "--batch"))
			g.opt.batch = (long)dg_num(a, v, 1, 100000);
		else if (!strcmp(a, "--end-day"))
			g.opt.end_day = v;
		else if (!strcmp(a, "--json-dir"))
			g.opt.json_dir = v;
		else if (!strcmp(a, "--tsv"))
			g.opt.tsv = v;
		else if (!strcmp(a, "--format")) {
			if (strcmp(v, "json") && strcmp(v, "ndjson")) {
				fputs("datagen: --format must be json or ndjson\n", stderr);
				return 2;
			}
			g.opt.ndjson = !strcmp(v, "ndjson");
		} else {
			fprintf(stderr, "datagen: unknown argument %s\n", a);
			dg_usage();
			return 2;
		}
	}
	if (g.opt.end_day) {
		int64_t e = dg_parse_day(g.opt.end_day);

		if (e < 0) {
			fputs("datagen: --end-day must be YYYY-MM-DD\n", stderr);
			return 2;
		}
		g.end_ms = e + DG_DAY_MS;
	} else {
		/* the end of yesterday, UTC: midnight today */
		g.end_ms = ((int64_t)time(NULL) * 1000 / DG_DAY_MS) * DG_DAY_MS;
	}
	g.start_ms = g.end_ms - g.opt.days * DG_DAY_MS;
	dg_state = dg_mix64(g.opt.seed + 0x5eed) | 1;

	/* the distributions */
	dg_zipf(g.other_cdf, DG_N_OTHER, 1.1);
	dg_zipf(g.item_cdf, DG_N_ITEMS, 0.8);
	for (i = 0; i < DG_N_ITEMS; i++) {
		double p = exp(3.2 + 1.1 * (dg_uniform() + dg_uniform() + dg_uniform() - 1.5));

		g.item_cents[i] = (int32_t)(p * 100) + 99;
	}
	for (i = 0; i < 24; i++)  /* quiet at 4-6 UTC, peak at 17-20 UTC */
		g.hour_cdf[i] = 1.0 + 0.8 * sin((double)(i - 11) * M_PI / 12.0) + 0.2;
	dg_cdf_norm(g.hour_cdf, 24);
	/* retention R(days since signup): 1 decaying to 0.1 */
	for (i = 0; i < (long)DG_COUNT(rtab); i++)
		rtab[i] = 0.1 + 0.9 * exp(-(double)i / 14.0);
	/* each day's share of the total: growth and weekends */
	for (d = 0; d < g.opt.days; d++) {
		long wd = (long)(((g.start_ms / DG_DAY_MS) + d + 4) % 7);  /* 0 = Sunday */

		day_w[d] = (1.0 + 0.6 * (double)d / (double)g.opt.days) * (wd == 0 || wd == 6 ? 0.8 : 1.0);
		growth_sum += day_w[d];
	}

	dg_make_users(&g);
	ucdf = dg_xmalloc((size_t)g.opt.users * sizeof *ucdf);
	out.tsv = NULL;
	if (g.opt.tsv) {
		out.tsv = fopen(g.opt.tsv, "w");
		if (!out.tsv)
			dg_die("cannot create %s: %s", g.opt.tsv, strerror(errno));
		setvbuf(out.tsv, NULL, _IOFBF, 1 << 20);
	}
	if (g.opt.json_dir) {
		struct stat st;

		if (mkdir(g.opt.json_dir, 0755) != 0 && (errno != EEXIST || stat(g.opt.json_dir, &st) != 0 ||
							 !S_ISDIR(st.st_mode)))
			dg_die("cannot create %s: %s", g.opt.json_dir, strerror(errno));
	}
	out.dir = g.opt.json_dir;
	out.ndjson = g.opt.ndjson;
	out.batch = g.opt.batch;
	out.seed = g.opt.seed;
	out.buf = dg_xmalloc(4096);

	/* --merge-third: first a silent pass that counts each user's events
	 * (a merged user's linking event must exist), then the same events
	 * again from the same generator state, written */
	state0 = dg_state;
	for (pass = g.opt.merge_third ? 0 : 1; pass <= 1; pass++) {
		if (pass == 0) {
			out.count = dg_xmalloc((size_t)g.opt.users * sizeof *out.count);
			memset(out.count, 0, (size_t)g.opt.users * sizeof *out.count);
		} else if (g.opt.merge_third) {
			out.total = out.count;
			out.count = NULL;
			out.seen = dg_xmalloc((size_t)g.opt.users * sizeof *out.seen);
			memset(out.seen, 0, (size_t)g.opt.users * sizeof *out.seen);
			dg_state = state0;
			g.made = g.seq = 0;
			memset(g.per_name, 0, sizeof g.per_name);
			out.written = 0;
		}
		target_so_far = 0;
		double cum_w = 0;
		for (d = 0; d < g.opt.days; d++) {
			struct dg_daybuf *b;
			double wsum = 0;
			uint64_t target;

			g.day = d;
			cum_w += day_w[d];
			target = d == g.opt.days - 1 ? (uint64_t)g.opt.events
						     : (uint64_t)((double)g.opt.events * cum_w / growth_sum);
			if (target < target_so_far)
				target = target_so_far;
			target_so_far = target;
			/* today's sign-ups, then sessions of the active users */
			for (u = 0; u < g.opt.users; u++) {
				const struct dg_user *p = &g.users[u];
				double w = 0;

				if (p->signup == d)
					dg_session(&g, (uint32_t)u, dg_start_time(&g, d), 1);
				if (p->signup <= d)
					w = p->weight * rtab[d - p->signup];
				wsum += w;
				ucdf[u] = wsum;
			}
			if (wsum > 0) {
				for (u = 0; u < g.opt.users; u++)
					ucdf[u] /= wsum;
				while (g.made < target) {
					uint32_t who = (uint32_t)dg_pick(ucdf, (size_t)g.opt.users);

					dg_session(&g, who, dg_start_time(&g, d), 0);
				}
			}
			/* day d is complete: no later session reaches back */
			b = &g.ring[d % DG_MAX_LAG_DAYS];
			qsort(b->e, b->n, sizeof *b->e, dg_event_cmp);
			for (i = 0; i < (long)b->n; i++)
				dg_write(&out, &b->e[i], g.users);
			b->n = 0;
			if (!g.opt.quiet && pass == 1 && (d % 10 == 9 || d == g.opt.days - 1))
				fprintf(stderr, "datagen: day %ld/%ld, %llu events written\n", d + 1, g.opt.days,
					(unsigned long long)out.written);
		}
	}
	dg_close_batch(&out);
	if (out.tsv && (ferror(out.tsv) || fclose(out.tsv) != 0))
		dg_die("write error in %s", g.opt.tsv);
	if (out.written != g.made)
		dg_die("internal: %llu events placed, %llu written", (unsigned long long)g.made,
		       (unsigned long long)out.written);

	dg_fmt_day(g.start_ms, from);
	dg_fmt_day(g.end_ms - 1, to);
	printf("{\"events\":%llu,\"users\":%ld,\"days\":%ld,\"seed\":%llu,\"from_day\":\"%s\",\"to_day\":\"%s\","
	       "\"start_ms\":%lld,\"end_ms\":%lld,\"files\":%ld,\"batch\":%ld,\"format\":\"%s\",\"cpu_s\":%.2f,"
	       "\"per_event\":{",
	       (unsigned long long)out.written, g.opt.users, g.opt.days, (unsigned long long)g.opt.seed, from, to,
	       (long long)g.start_ms, (long long)g.end_ms, out.files, g.opt.batch, g.opt.ndjson ? "ndjson" : "json",
	       (double)(clock() - c0) / CLOCKS_PER_SEC);
	for (i = 0; i < (long)DG_N_EVENTS; i++)
		printf("%s\"%s\":%llu", i ? "," : "", dg_events[i], (unsigned long long)g.per_name[i]);
	if (g.opt.merge_third)
		printf("},\"merge\":{\"users\":%llu,\"anonymous_events\":%llu,\"linking_events\":%llu}}\n",
		       (unsigned long long)out.merged_users, (unsigned long long)out.anon_events,
		       (unsigned long long)out.link_events);
	else
		printf("}}\n");
	for (i = 0; i < DG_MAX_LAG_DAYS; i++)
		free(g.ring[i].e);
	free(ucdf);
	free(out.count);
	free((void *)out.total);
	free(out.seen);
	free(g.users);
	free(out.buf);
	return 0;
}
