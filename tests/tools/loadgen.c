/*
 * loadgen.c - HTTP/1.1 load generator for the ingestion benchmark
 * (driven by tests/bench/bench.mjs; results in docs/PERFORMANCE.md).
 *
 *   loadgen --url http://127.0.0.1:PORT/path?query --connections N
 *           --duration S [--warmup S] [--requests N] [--timeout S]
 *           ( --gen track1|track50|import2000|trackN|importN [--token T]
 *             [--pool N] [--wrap] [--seed N] [--times uniform|live|ordered]
 *           | --body-file F | --bodies-dir D ) [--events-per-request N]
 *           [--header 'K: V']... [--method POST|GET]
 *           [--expect 1|json200|verbose|any] [--label NAME]
 *
 * --pool is the number of distinct requests built (default --requests, or
 * 10000); --requests caps the requests sent; --timeout (default 30 s) is
 * both the per-request timeout and the drain deadline.  --expect defaults
 * to "1" for --gen track*, "json200" for --gen import* (which also checks
 * num_records_imported), "any" otherwise.
 *
 * Why our own generator: the server deduplicates events on $insert_id, so
 * replaying one body (as wrk or ab do) would measure the dedup path, not
 * ingestion.  --gen builds a pool of distinct, realistic requests: skewed
 * event names (Zipf over 20), 8 properties, distinct_ids over 200k users,
 * times within the last 2 days (uniformly by default; --times live: seconds
 * old but 2% queued offline), a unique $insert_id per event.  The /track
 * bodies are what the browser SDK sends (`data=` + percent-encoded base64
 * of the JSON, one object or an array), /import bodies a JSON array.
 *
 * Model: one thread, one epoll set, N keep-alive connections (opened one
 * after the other, as clients arrive over time), at most one request in
 * flight per connection (no pipelining).  Every request's bytes
 * are built before the clock starts; the timed loop only writes, reads and
 * parses the status line and headers, so the generator costs little CPU.
 *
 * Measured window: requests completed after --warmup seconds count; the
 * window ends at the last completion after --duration (in-flight requests
 * are drained, for at most --timeout).  Latency is from the first byte
 * written to the last byte of the response read, in a log-linear histogram
 * (1/64 relative resolution), so millions of requests cost no memory.
 *
 * Output: one JSON line on stdout {requests, events, errors, seconds,
 * req_per_s, events_per_s, p50_ms, p99_ms, max_ms, ...}; diagnostics on
 * stderr.  Exit status 0 if the run completed (even with errors), 2 on a
 * usage error, 1 if it could not run at all.
 *
 * Invariants:
 *   1. A connection holds a request only in WRITING and READING state.
 *   2. Without --wrap a pool request is sent at most once, so every event
 *      sent is distinct; the run ends early when the pool is used up.
 *   3. Every loop is bounded: --duration, --requests, the pool, and the
 *      drain deadline (--timeout) after the duration.
 * Memory policy: this is a tool; on out-of-memory it prints and exits 1.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LG_MAX_HEADERS 32
#define LG_MAX_CONNS 4096
#define LG_RBUF_MAX (1u << 20)      /* cap on one response (headers + body) */
#define LG_USERS 200000
#define LG_DAY_MS 86400000LL
#define LG_HIST_SUB 64              /* sub-buckets per power of two */
#define LG_HIST_N (LG_HIST_SUB * 40)
#define LG_MAX_ERROR_LOGS 5

/* ---------- small utilities ---------- */

static void lg_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void lg_die(const char *fmt, ...)
{
	va_list ap;

	fputs("loadgen: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void *lg_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		lg_die("out of memory (%zu bytes)", n);
	return p;
}

static uint64_t lg_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int64_t lg_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Growable byte string for building requests (not NUL-terminated). */
struct sb {
	char *p;
	size_t len, cap;
};

static void sb_reserve(struct sb *b, size_t extra)
{
	size_t ncap;
	char *np;

	if (b->len + extra <= b->cap)
		return;
	ncap = b->cap ? b->cap : 256;
	while (ncap < b->len + extra)
		ncap *= 2;
	np = realloc(b->p, ncap);
	if (!np)
		lg_die("out of memory (%zu bytes)", ncap);
	b->p = np;
	b->cap = ncap;
}

static void sb_add(struct sb *b, const void *p, size_t n)
{
	sb_reserve(b, n);
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void sb_str(struct sb *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static void sb_u64(struct sb *b, uint64_t v)
{
	char tmp[24];
	size_t n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	sb_reserve(b, n);
	while (n)
		b->p[b->len++] = tmp[--n];
}

/* V/10^3 with exactly three decimals, e.g. 1733212345678 -> 1733212345.678 */
static void sb_milli(struct sb *b, uint64_t v)
{
	char frac[4];

	sb_u64(b, v / 1000);
	frac[0] = '.';
	frac[1] = (char)('0' + v / 100 % 10);
	frac[2] = (char)('0' + v / 10 % 10);
	frac[3] = (char)('0' + v % 10);
	sb_add(b, frac, 4);
}

/* CENTS/100 as JavaScript prints it: 1230 -> 12.3, 1200 -> 12, 1205 -> 12.05 */
static void sb_cents(struct sb *b, uint64_t cents)
{
	char frac[3];
	size_t n = 0;

	sb_u64(b, cents / 100);
	if (cents % 100 == 0)
		return;
	frac[n++] = '.';
	frac[n++] = (char)('0' + cents / 10 % 10);
	if (cents % 10)
		frac[n++] = (char)('0' + cents % 10);
	sb_add(b, frac, n);
}

static void sb_free(struct sb *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

static long lg_parse_long(const char *opt, const char *s, long lo, long hi)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi) {
		fprintf(stderr, "loadgen: %s: '%s' is not an integer in %ld..%ld\n", opt, s, lo, hi);
		exit(2);
	}
	return v;
}

static double lg_parse_secs(const char *opt, const char *s)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0) || v > 86400) {
		fprintf(stderr, "loadgen: %s: '%s' is not a number of seconds (0..86400)\n", opt, s);
		exit(2);
	}
	return v;
}

/* ---------- deterministic randomness ---------- */

/* splitmix64 finaliser: a bijection on 64-bit values. */
static uint64_t lg_mix64(uint64_t z)
{
	z ^= z >> 30;
	z *= 0xbf58476d1ce4e5b9ULL;
	z ^= z >> 27;
	z *= 0x94d049bb133111ebULL;
	z ^= z >> 31;
	return z;
}

static uint64_t lg_rand(uint64_t *state)
{
	*state += 0x9e3779b97f4a7c15ULL;
	return lg_mix64(*state);
}

static double lg_uniform(uint64_t *state)
{
	return (double)(lg_rand(state) >> 11) * 0x1.0p-53;
}

/* Cumulative distribution of Zipf(S) over N ranks (caller frees). */
static double *lg_zipf_cdf(size_t n, double s)
{
	double *cdf = lg_xmalloc(n * sizeof *cdf), sum = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		sum += 1.0 / pow((double)(i + 1), s);
		cdf[i] = sum;
	}
	for (i = 0; i < n; i++)
		cdf[i] /= sum;
	return cdf;
}

static size_t lg_pick(const double *cdf, size_t n, uint64_t *state)
{
	double u = lg_uniform(state);
	size_t lo = 0, hi = n - 1;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (cdf[mid] < u)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* ---------- realistic events ---------- */

static const char *const lg_event_names[] = {
	"Page Viewed", "Product Viewed", "Button Clicked", "Search Performed", "Added To Cart",
	"Session Started", "Signed In", "Video Played", "Form Submitted", "Checkout Started",
	"Removed From Cart", "Order Completed", "Signed Up", "Plan Upgraded", "Invite Sent",
	"Comment Posted", "File Uploaded", "Settings Changed", "Notification Opened", "Signed Out",
};
#define LG_N_EVENTS (sizeof lg_event_names / sizeof lg_event_names[0])

static const char *const lg_os[] = { "Windows", "Mac OS X", "iOS", "Android", "Linux", "Chrome OS" };
static const char *const lg_browser[] = {
	"Chrome", "Safari", "Mobile Safari", "Firefox", "Edge", "Samsung Internet", "Opera",
};
static const char *const lg_pages[] = {
	"/", "/pricing", "/features", "/blog", "/docs/getting-started", "/signup", "/login",
	"/cart", "/checkout", "/account", "/about", "/contact", "/blog/2024/launch-week",
	"/docs/api", "/careers",
};
static const char *const lg_plans[] = { "free", "pro", "team", "enterprise" };
static const char *const lg_utm[] = {
	"google", "newsletter", "facebook", "twitter", "direct", "bing", "linkedin", "reddit",
};
static const unsigned lg_widths[] = { 1920, 1366, 1536, 390, 1440, 414, 1280, 375, 2560, 360 };

#define LG_COUNT(a) (sizeof (a) / sizeof (a)[0])

/* The lists lg_pick_small() draws from, with their Zipf exponents. */
enum { LG_L_OS, LG_L_BROWSER, LG_L_PAGE, LG_L_WIDTH, LG_L_PLAN, LG_L_UTM, LG_N_LISTS };
static const size_t lg_list_len[LG_N_LISTS] = {
	LG_COUNT(lg_os), LG_COUNT(lg_browser), LG_COUNT(lg_pages), LG_COUNT(lg_widths),
	LG_COUNT(lg_plans), LG_COUNT(lg_utm),
};
static const double lg_list_skew[LG_N_LISTS] = { 1.2, 1.1, 1.0, 1.3, 1.4, 1.0 };

struct lg_gen {
	const char *token;        /* NULL for /import */
	int import;               /* JSON body for /import, else browser form body */
	unsigned batch;           /* events per request */
	uint64_t state;           /* PRNG */
	uint64_t seed;            /* distinguishes $insert_id across runs */
	uint64_t n_made;          /* events generated so far */
	int64_t now_ms;
	int live;                 /* times: 0 uniform over 2 days, 1 near "now", 2 ordered */
	double *cdf_events, *cdf_users, *cdf_products, *cdf_small[LG_N_LISTS];
};

static size_t lg_pick_small(struct lg_gen *g, int which)
{
	return lg_pick(g->cdf_small[which], lg_list_len[which], &g->state);
}

/* A stable UUID-shaped id for user U (the same users recur across runs). */
static void lg_user_id(struct sb *b, size_t u)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t h1 = lg_mix64(0x5eedULL ^ (uint64_t)u), h2 = lg_mix64(h1 ^ 0xa5a5a5a5ULL);
	char s[36];
	int i, k = 0;

	for (i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			s[i] = '-';
			continue;
		}
		if (i == 14 || i == 19) {
			/* version 4, variant 10xx */
			s[i] = i == 14 ? '4' : "89ab"[h2 >> 62];
			continue;
		}
		s[i] = hex[(k < 16 ? h1 >> (4 * k) : h2 >> (4 * (k - 16))) & 15];
		k++;
	}
	sb_add(b, s, sizeof s);
}

/* A 16-character [a-z0-9] $insert_id (like the browser SDK's), unique per
 * (seed, counter): its first 13 characters are a bijection of both. */
static void lg_insert_id(struct sb *b, uint64_t seed, uint64_t counter)
{
	static const char b36[] = "0123456789abcdefghijklmnopqrstuvwxyz";
	uint64_t v = lg_mix64((seed << 40) ^ counter), pad = lg_mix64(v);
	char s[16];
	int i;

	for (i = 12; i >= 0; i--) {
		s[i] = b36[v % 36];
		v /= 36;
	}
	for (i = 13; i < 16; i++) {
		s[i] = b36[pad % 36];
		pad /= 36;
	}
	sb_add(b, s, sizeof s);
}

static void lg_gen_init(struct lg_gen *g, const char *token, int import, unsigned batch, uint64_t seed,
			int live)
{
	int i;

	memset(g, 0, sizeof *g);
	g->token = token;
	g->import = import;
	g->batch = batch;
	g->seed = seed & 0xffffff;
	g->live = live;
	g->state = lg_mix64(seed ^ 0x1234567ULL);
	g->now_ms = lg_wall_ms();
	g->cdf_events = lg_zipf_cdf(LG_N_EVENTS, 1.0);
	g->cdf_users = lg_zipf_cdf(LG_USERS, 0.6);
	g->cdf_products = lg_zipf_cdf(1000, 0.9);
	for (i = 0; i < LG_N_LISTS; i++)
		g->cdf_small[i] = lg_zipf_cdf(lg_list_len[i], lg_list_skew[i]);
}

static void lg_gen_free(struct lg_gen *g)
{
	int i;

	free(g->cdf_events);
	free(g->cdf_users);
	free(g->cdf_products);
	for (i = 0; i < LG_N_LISTS; i++)
		free(g->cdf_small[i]);
}

/* How old an event is when sent.  "uniform": anywhere in the last 2 days
 * (a backfill in random order: the worst case for a time-ordered store).
 * "live": what SDKs send in real time: seconds old (exponential, mean 5 s),
 * except 2% queued offline on mobile, anywhere in the last 2 days.
 * "ordered": ascending, 10 ms apart, as when a Mixpanel export (sorted by
 * time) is replayed into /import. */
static int64_t lg_gen_age_ms(struct lg_gen *g)
{
	double u = lg_uniform(&g->state);

	if (g->live == 2) /* ordered: an export file replayed, 10 ms apart from 2 days ago on */
		return 2 * LG_DAY_MS - (int64_t)(g->n_made % (uint64_t)(2 * LG_DAY_MS / 10)) * 10;
	if (!g->live || u < 0.02)
		return (int64_t)(lg_uniform(&g->state) * 2 * LG_DAY_MS);
	return (int64_t)(-log(1.0 - lg_uniform(&g->state)) * 5000.0);
}

/* Append one event object as JSON. */
static void lg_gen_event(struct lg_gen *g, struct sb *b)
{
	int64_t t = g->now_ms - lg_gen_age_ms(g);
	size_t u = lg_pick(g->cdf_users, LG_USERS, &g->state);

	sb_str(b, "{\"event\":\"");
	sb_str(b, lg_event_names[lg_pick(g->cdf_events, LG_N_EVENTS, &g->state)]);
	sb_str(b, "\",\"properties\":{");
	if (g->import) {
		/* /import: ms timestamps, distinct_id and $insert_id first, no token */
		sb_str(b, "\"time\":");
		sb_u64(b, (uint64_t)t);
		sb_str(b, ",\"distinct_id\":\"");
		lg_user_id(b, u);
		sb_str(b, "\",\"$insert_id\":\"");
		lg_insert_id(b, g->seed, g->n_made);
		sb_str(b, "\",");
	}
	sb_str(b, "\"$os\":\"");
	sb_str(b, lg_os[lg_pick_small(g, LG_L_OS)]);
	sb_str(b, "\",\"$browser\":\"");
	sb_str(b, lg_browser[lg_pick_small(g, LG_L_BROWSER)]);
	sb_str(b, "\",\"$current_url\":\"https://www.example.com");
	if (lg_uniform(&g->state) < 0.6) {
		sb_str(b, lg_pages[lg_pick_small(g, LG_L_PAGE)]);
	} else {
		sb_str(b, "/products/");
		sb_u64(b, lg_pick(g->cdf_products, 1000, &g->state));
	}
	sb_str(b, "\",\"$screen_width\":");
	sb_u64(b, lg_widths[lg_pick_small(g, LG_L_WIDTH)]);
	sb_str(b, ",\"mp_lib\":\"web\",\"plan\":\"");
	sb_str(b, lg_plans[lg_pick_small(g, LG_L_PLAN)]);
	sb_str(b, "\",\"amount\":");
	sb_cents(b, lg_rand(&g->state) % 50000);
	sb_str(b, ",\"utm_source\":\"");
	sb_str(b, lg_utm[lg_pick_small(g, LG_L_UTM)]);
	sb_str(b, "\"");
	if (!g->import) {
		/* browser SDK order: $insert_id, time (s with ms), distinct_id, token */
		sb_str(b, ",\"$insert_id\":\"");
		lg_insert_id(b, g->seed, g->n_made);
		sb_str(b, "\",\"time\":");
		sb_milli(b, (uint64_t)t);
		sb_str(b, ",\"distinct_id\":\"$device:");
		lg_user_id(b, u);
		sb_str(b, "\",\"token\":\"");
		sb_str(b, g->token);
		sb_str(b, "\"");
	}
	sb_str(b, "}}");
	g->n_made++;
}

/* Append "data=" + encodeURIComponent(base64(JSON)) as the browser SDK does:
 * '+', '/' and '=' become %2B, %2F and %3D. */
static void lg_form_base64(struct sb *out, const unsigned char *p, size_t n)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i;
	char *o;

	sb_str(out, "data=");
	sb_reserve(out, (n + 2) / 3 * 4 * 3);   /* worst case: every character escaped */
	o = out->p + out->len;
	for (i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		int k, m = n - i >= 3 ? 4 : (int)(n - i) + 1;

		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		for (k = 0; k < 4; k++) {
			char c = k < m ? tab[v >> (18 - 6 * k) & 63] : '=';

			if (c == '+' || c == '/' || c == '=') {
				*o++ = '%';
				*o++ = c == '+' ? '2' : c == '/' ? '2' : '3';
				*o++ = c == '+' ? 'B' : c == '/' ? 'F' : 'D';
			} else {
				*o++ = c;
			}
		}
	}
	out->len = (size_t)(o - out->p);
}

/* Body of one request of G->batch events into OUT (reset first). */
static void lg_gen_body(struct lg_gen *g, struct sb *out, struct sb *json)
{
	unsigned i;

	out->len = 0;
	json->len = 0;
	if (g->batch > 1 || g->import)
		sb_str(json, "[");
	for (i = 0; i < g->batch; i++) {
		if (i)
			sb_str(json, ",");
		lg_gen_event(g, json);
	}
	if (g->batch > 1 || g->import)
		sb_str(json, "]");
	if (g->import)
		sb_add(out, json->p, json->len);
	else
		lg_form_base64(out, (const unsigned char *)json->p, json->len);
}

/* ---------- requests ---------- */

struct lg_url {
	char host[256];
	char port[8];
	char target[2048];   /* path and query */
	struct sockaddr_storage addr;
	socklen_t addrlen;
};

struct lg_req {
	char *data;          /* request line + headers + body */
	size_t len;
	uint32_t n_events;
};

enum lg_expect { LG_EXPECT_ANY = 0, LG_EXPECT_ONE, LG_EXPECT_JSON200, LG_EXPECT_VERBOSE };

static void lg_url_parse(const char *url, struct lg_url *u)
{
	const char *p, *slash, *colon;
	struct addrinfo hints, *res = NULL;
	size_t hl;
	int rc;

	if (strncmp(url, "http://", 7) != 0)
		lg_die("--url must start with http:// (got '%s')", url);
	p = url + 7;
	slash = strchr(p, '/');
	if (!slash)
		slash = p + strlen(p);
	colon = memchr(p, ':', (size_t)(slash - p));
	hl = (size_t)((colon ? colon : slash) - p);
	if (!hl || hl >= sizeof u->host)
		lg_die("bad host in --url '%s'", url);
	memcpy(u->host, p, hl);
	u->host[hl] = '\0';
	if (colon) {
		size_t pl = (size_t)(slash - colon - 1);

		if (!pl || pl >= sizeof u->port)
			lg_die("bad port in --url '%s'", url);
		memcpy(u->port, colon + 1, pl);
		u->port[pl] = '\0';
	} else {
		memcpy(u->port, "80", 3);
	}
	if (snprintf(u->target, sizeof u->target, "%s", *slash ? slash : "/") >= (int)sizeof u->target)
		lg_die("--url path too long");
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(u->host, u->port, &hints, &res)) != 0 || !res)
		lg_die("cannot resolve %s:%s: %s", u->host, u->port, gai_strerror(rc));
	memcpy(&u->addr, res->ai_addr, res->ai_addrlen);
	u->addrlen = res->ai_addrlen;
	freeaddrinfo(res);
}

struct lg_opts {
	struct lg_url url;
	const char *method;
	const char *headers[LG_MAX_HEADERS];
	int n_headers;
	const char *gen, *token, *body_file, *bodies_dir, *label;
	int connections;
	double duration, warmup, timeout;
	long requests, pool, events_per_request;
	int wrap;
	int live;                 /* --times live */
	uint64_t seed;
	enum lg_expect expect;
	int expect_set;
};

/* Build the bytes of one request with BODY (NULL for none) into R. */
static void lg_req_build(const struct lg_opts *o, const char *extra_default_headers, long serial,
			 const char *body, size_t body_len, uint32_t n_events, struct lg_req *r)
{
	struct sb b = { 0 };
	int i;

	sb_str(&b, o->method);
	sb_str(&b, " ");
	sb_str(&b, o->url.target);
	if (serial >= 0) {
		/* the browser SDK's cache buster: _=<ms> */
		sb_str(&b, strchr(o->url.target, '?') ? "&_=" : "?_=");
		sb_u64(&b, (uint64_t)(lg_wall_ms() + serial));
	}
	sb_str(&b, " HTTP/1.1\r\nHost: ");
	sb_str(&b, o->url.host);
	sb_str(&b, ":");
	sb_str(&b, o->url.port);
	sb_str(&b, "\r\nConnection: keep-alive\r\n");
	if (extra_default_headers)
		sb_str(&b, extra_default_headers);
	for (i = 0; i < o->n_headers; i++) {
		sb_str(&b, o->headers[i]);
		sb_str(&b, "\r\n");
	}
	if (body || !strcmp(o->method, "POST")) {
		sb_str(&b, "Content-Length: ");
		sb_u64(&b, body ? body_len : 0);
		sb_str(&b, "\r\n");
	}
	sb_str(&b, "\r\n");
	if (body)
		sb_add(&b, body, body_len);
	r->data = b.p;
	r->len = b.len;
	r->n_events = n_events;
}

static char *lg_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct sb b = { 0 };
	char tmp[65536];
	size_t n;

	if (!f)
		lg_die("cannot open %s: %s", path, strerror(errno));
	while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
		sb_add(&b, tmp, n);
	if (ferror(f))
		lg_die("cannot read %s", path);
	fclose(f);
	*len = b.len;
	sb_reserve(&b, 1);
	return b.p;
}

static int lg_name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Fill the pool from --gen, --body-file or --bodies-dir.  Returns its size. */
static size_t lg_pool_build(struct lg_opts *o, struct lg_req **out)
{
	struct lg_req *pool;
	size_t n = 0, i;

	if (o->gen) {
		static const char browser_headers[] =
			"Content-Type: application/x-www-form-urlencoded\r\n"
			"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
			"Chrome/126.0.0.0 Safari/537.36\r\n"
			"Accept: */*\r\n"
			"Origin: https://www.example.com\r\n"
			"Referer: https://www.example.com/\r\n"
			"Accept-Language: en-US,en;q=0.9\r\n";
		static const char import_headers[] =
			"Content-Type: application/json\r\n"
			"Accept: application/json\r\n"
			"User-Agent: mixpaneld-loadgen/1\r\n";
		int import = !strncmp(o->gen, "import", 6);
		const char *num = o->gen + (import ? 6 : 5);
		struct lg_gen g;
		struct sb body = { 0 }, json = { 0 };
		long batch;

		if (!import && strncmp(o->gen, "track", 5) != 0)
			lg_die("--gen must be trackN or importN (e.g. track1, track50, import2000)");
		batch = lg_parse_long("--gen", num, 1, 100000);
		if (!import && !o->token)
			lg_die("--gen %s needs --token", o->gen);
		n = (size_t)o->pool;
		lg_gen_init(&g, o->token, import, (unsigned)batch, o->seed, o->live);
		pool = lg_xmalloc(n * sizeof *pool);
		for (i = 0; i < n; i++) {
			lg_gen_body(&g, &body, &json);
			lg_req_build(o, import ? import_headers : browser_headers, import ? -1 : (long)i,
				     body.p, body.len, (uint32_t)batch, &pool[i]);
		}
		sb_free(&body);
		sb_free(&json);
		lg_gen_free(&g);
		if (!o->expect_set)
			o->expect = import ? LG_EXPECT_JSON200 : LG_EXPECT_ONE;
	} else if (o->body_file) {
		size_t bl;
		char *b = lg_read_file(o->body_file, &bl);

		n = 1;
		pool = lg_xmalloc(sizeof *pool);
		lg_req_build(o, NULL, -1, b, bl, (uint32_t)o->events_per_request, &pool[0]);
		free(b);
		o->wrap = 1;
	} else if (o->bodies_dir) {
		DIR *d = opendir(o->bodies_dir);
		struct dirent *de;
		char **names = NULL;
		size_t cap = 0;

		if (!d)
			lg_die("cannot open %s: %s", o->bodies_dir, strerror(errno));
		while ((de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			if (n == cap) {
				char **nn;

				cap = cap ? cap * 2 : 64;
				if (!(nn = realloc(names, cap * sizeof *nn)))
					lg_die("out of memory");
				names = nn;
			}
			if (!(names[n++] = strdup(de->d_name)))
				lg_die("out of memory");
		}
		closedir(d);
		if (!n)
			lg_die("%s holds no files", o->bodies_dir);
		qsort(names, n, sizeof *names, lg_name_cmp);
		pool = lg_xmalloc(n * sizeof *pool);
		for (i = 0; i < n; i++) {
			char path[4096];
			size_t bl;
			char *b;

			if (snprintf(path, sizeof path, "%s/%s", o->bodies_dir, names[i]) >= (int)sizeof path)
				lg_die("path too long: %s/%s", o->bodies_dir, names[i]);
			b = lg_read_file(path, &bl);
			lg_req_build(o, NULL, -1, b, bl, (uint32_t)o->events_per_request, &pool[i]);
			free(b);
			free(names[i]);
		}
		free(names);
		o->wrap = 1;
	} else {
		n = 1;
		pool = lg_xmalloc(sizeof *pool);
		lg_req_build(o, NULL, -1, NULL, 0, (uint32_t)o->events_per_request, &pool[0]);
		o->wrap = 1;
	}
	*out = pool;
	return n;
}

/* ---------- latency histogram (microseconds, log-linear) ---------- */

struct lg_hist {
	uint64_t b[LG_HIST_N];
	uint64_t n, max_us;
};

static size_t lg_hist_index(uint64_t us)
{
	int e;

	if (us < LG_HIST_SUB)
		return (size_t)us;
	e = 63 - __builtin_clzll(us) - 6;  /* us >> e lies in [64, 128) */
	if ((size_t)e >= LG_HIST_N / LG_HIST_SUB - 1)
		return LG_HIST_N - 1;
	return (size_t)e * LG_HIST_SUB + (size_t)(us >> e);
}

/* Upper bound of bucket I in microseconds. */
static double lg_hist_value(size_t i)
{
	size_t e, m;

	if (i < 2 * LG_HIST_SUB)
		return (double)i + 1;
	e = i / LG_HIST_SUB - 1;
	m = i % LG_HIST_SUB + LG_HIST_SUB;
	return (double)((m + 1) << e);
}

static void lg_hist_add(struct lg_hist *h, uint64_t us)
{
	h->b[lg_hist_index(us)]++;
	h->n++;
	if (us > h->max_us)
		h->max_us = us;
}

static double lg_hist_ms(const struct lg_hist *h, double q)
{
	uint64_t want, acc = 0;
	size_t i;

	if (!h->n)
		return 0;
	want = (uint64_t)ceil(q * (double)h->n);
	if (want < 1)
		want = 1;
	for (i = 0; i < LG_HIST_N; i++) {
		acc += h->b[i];
		if (acc >= want) {
			double v = lg_hist_value(i);

			return (v > (double)h->max_us ? (double)h->max_us : v) / 1000.0;
		}
	}
	return (double)h->max_us / 1000.0;
}

/* ---------- connections ---------- */

enum lg_cstate { LG_DOWN = 0, LG_CONNECTING, LG_IDLE, LG_WRITING, LG_READING };

struct lg_conn {
	int fd;
	enum lg_cstate st;
	const struct lg_req *req;
	size_t woff;
	uint64_t t_start;        /* first byte written (ns) */
	uint64_t retry_at;       /* LG_DOWN: reconnect not before (ns) */
	char *rbuf;
	size_t rlen, rcap;
	size_t hdr_len;          /* 0 until the header block is complete */
	size_t body_len;
	int status;
	int close_after;
};

struct lg_run {
	struct lg_opts *o;
	struct lg_req *pool;
	size_t n_pool, next;
	int ep;
	struct lg_conn *conns;
	uint64_t t0, t_window, t_end, t_drain_end, t_last;
	int stopping;
	int n_opened;            /* connections [0, n_opened) have been started */
	long issued;
	int in_flight;
	/* counters */
	uint64_t ok_total, ev_total, ok, events, errors;
	uint64_t err_status, err_body, err_conn, err_timeout;
	uint64_t bytes_out, bytes_in, connects;
	int pool_exhausted, consecutive_connect_fail, error_logs;
	struct lg_hist hist;
};

static void lg_error(struct lg_run *r, uint64_t *kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void lg_error(struct lg_run *r, uint64_t *kind, const char *fmt, ...)
{
	va_list ap;

	r->errors++;
	(*kind)++;
	if (r->error_logs++ >= LG_MAX_ERROR_LOGS)
		return;
	fputs("loadgen: error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void lg_conn_close(struct lg_run *r, struct lg_conn *c, uint64_t retry_delay_ns)
{
	if (c->fd >= 0) {
		epoll_ctl(r->ep, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	if (c->st == LG_WRITING || c->st == LG_READING)
		r->in_flight--;
	c->fd = -1;
	c->st = LG_DOWN;
	c->req = NULL;
	c->rlen = c->hdr_len = 0;
	c->retry_at = lg_now_ns() + retry_delay_ns;
}

static void lg_conn_open(struct lg_run *r, struct lg_conn *c)
{
	const struct lg_url *u = &r->o->url;
	struct epoll_event ev;
	int one = 1;

	c->fd = socket(u->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		lg_die("socket: %s", strerror(errno));
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	r->connects++;
	if (connect(c->fd, (const struct sockaddr *)&u->addr, u->addrlen) != 0 && errno != EINPROGRESS) {
		lg_error(r, &r->err_conn, "connect: %s", strerror(errno));
		close(c->fd);
		c->fd = -1;
		c->retry_at = lg_now_ns() + 10000000ULL;
		r->consecutive_connect_fail++;
		return;
	}
	c->st = LG_CONNECTING;
	memset(&ev, 0, sizeof ev);
	ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
	ev.data.ptr = c;
	if (epoll_ctl(r->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
		lg_die("epoll_ctl: %s", strerror(errno));
}

/* The next request to send, or NULL when the run is winding down. */
static const struct lg_req *lg_next_req(struct lg_run *r)
{
	const struct lg_req *q;

	if (r->stopping)
		return NULL;
	if (r->o->requests && r->issued >= r->o->requests) {
		r->stopping = 1;
		return NULL;
	}
	if (r->next >= r->n_pool) {
		if (!r->o->wrap) {
			r->pool_exhausted = 1;
			r->stopping = 1;
			return NULL;
		}
		r->next = 0;
	}
	q = &r->pool[r->next++];
	r->issued++;
	return q;
}

static void lg_conn_write(struct lg_run *r, struct lg_conn *c);

/* Give an idle connection its next request and start writing it. */
static void lg_conn_start(struct lg_run *r, struct lg_conn *c)
{
	const struct lg_req *q = lg_next_req(r);

	if (!q) {
		c->st = LG_IDLE;
		return;
	}
	c->req = q;
	c->woff = 0;
	c->rlen = c->hdr_len = c->body_len = 0;
	c->status = 0;
	c->close_after = 0;
	c->st = LG_WRITING;
	r->in_flight++;
	c->t_start = lg_now_ns();
	lg_conn_write(r, c);
}

static void lg_conn_write(struct lg_run *r, struct lg_conn *c)
{
	while (c->woff < c->req->len) {
		ssize_t n = send(c->fd, c->req->data + c->woff, c->req->len - c->woff, MSG_NOSIGNAL);

		if (n > 0) {
			c->woff += (size_t)n;
			r->bytes_out += (uint64_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return; /* EPOLLOUT edge resumes */
		lg_error(r, &r->err_conn, "send: %s", n < 0 ? strerror(errno) : "0 bytes");
		lg_conn_close(r, c, 0);
		return;
	}
	c->st = LG_READING;
}

/* Case-insensitive search of header NAME in the block [p, end); value or NULL. */
static const char *lg_header(const char *p, const char *end, const char *name, size_t *vlen)
{
	size_t nl = strlen(name);

	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));

		if (!eol)
			eol = end;
		if ((size_t)(eol - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
			const char *v = p + nl + 1, *ve = eol;

			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
				ve--;
			*vlen = (size_t)(ve - v);
			return v;
		}
		p = eol + 1;
	}
	return NULL;
}

/* Parse the header block once "\r\n\r\n" is in; 0 ok, -1 protocol error. */
static int lg_parse_head(struct lg_conn *c, const char *hend)
{
	const char *p = c->rbuf, *v;
	size_t vl;
	char tmp[32];
	char *e;

	if (c->rlen < 12 || strncmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ')
		return -1;
	memcpy(tmp, p + 9, 3);
	tmp[3] = '\0';
	c->status = (int)strtol(tmp, &e, 10);
	if (*e || c->status < 100)
		return -1;
	c->hdr_len = (size_t)(hend - c->rbuf) + 4;
	if ((v = lg_header(p, hend + 2, "Transfer-Encoding", &vl)) && vl)
		return -1; /* chunked answers are not used by the ingestion API */
	if ((v = lg_header(p, hend + 2, "Content-Length", &vl))) {
		if (!vl || vl >= sizeof tmp)
			return -1;
		memcpy(tmp, v, vl);
		tmp[vl] = '\0';
		c->body_len = (size_t)strtoull(tmp, &e, 10);
		if (*e || c->body_len > LG_RBUF_MAX)
			return -1;
	} else if (c->status == 204 || c->status == 304) {
		c->body_len = 0;
	} else {
		return -1;
	}
	if ((v = lg_header(p, hend + 2, "Connection", &vl)) && vl == 5 && !strncasecmp(v, "close", 5))
		c->close_after = 1;
	if (p[7] == '0')
		c->close_after = 1; /* HTTP/1.0 */
	return 0;
}

/* Does the body match what --expect wants?  Returns NULL or a reason. */
static const char *lg_check_body(const struct lg_run *r, const struct lg_conn *c)
{
	const char *b = c->rbuf + c->hdr_len;
	size_t n = c->body_len;

	switch (r->o->expect) {
	case LG_EXPECT_ANY:
		return NULL;
	case LG_EXPECT_ONE:
		return n == 1 && b[0] == '1' ? NULL : "body is not \"1\"";
	case LG_EXPECT_VERBOSE:
		return memmem(b, n, "\"status\":1", 10) ? NULL : "body lacks \"status\":1";
	case LG_EXPECT_JSON200: {
		const char *k = memmem(b, n, "\"num_records_imported\":", 23);

		if (!memmem(b, n, "\"code\":200", 10) || !memmem(b, n, "\"status\":\"OK\"", 13))
			return "body lacks \"code\":200 and \"status\":\"OK\"";
		if (k) {
			char tmp[24];
			size_t i = 0;

			k += 23;
			while (k < b + n && i < sizeof tmp - 1 && *k >= '0' && *k <= '9')
				tmp[i++] = *k++;
			tmp[i] = '\0';
			if (strtoull(tmp, NULL, 10) != c->req->n_events)
				return "num_records_imported differs from the events sent";
		}
		return NULL;
	}
	}
	return "bad --expect";
}

static void lg_conn_complete(struct lg_run *r, struct lg_conn *c)
{
	uint64_t now = lg_now_ns();
	const char *why = NULL;

	r->in_flight--;
	c->st = LG_IDLE;
	if (c->status != 200) {
		lg_error(r, &r->err_status, "HTTP %d: %.*s", c->status,
			 (int)(c->body_len > 200 ? 200 : c->body_len), c->rbuf + c->hdr_len);
	} else if ((why = lg_check_body(r, c))) {
		lg_error(r, &r->err_body, "%s: %.*s", why,
			 (int)(c->body_len > 200 ? 200 : c->body_len), c->rbuf + c->hdr_len);
	} else {
		r->ok_total++;
		r->ev_total += c->req->n_events;
		if (now >= r->t_window) {
			r->ok++;
			r->events += c->req->n_events;
			lg_hist_add(&r->hist, (now - c->t_start) / 1000);
			r->t_last = now;
		}
	}
	if (c->close_after || c->woff < c->req->len) {
		lg_conn_close(r, c, 0);
		return;
	}
	c->req = NULL;
	lg_conn_start(r, c);
}

static void lg_conn_read(struct lg_run *r, struct lg_conn *c)
{
	for (;;) {
		ssize_t n;

		if (c->rcap - c->rlen < 4096) {
			size_t ncap = c->rcap ? c->rcap * 2 : 16384;
			char *nb;

			if (ncap > LG_RBUF_MAX + 65536) {
				lg_error(r, &r->err_conn, "response larger than %u bytes", LG_RBUF_MAX);
				lg_conn_close(r, c, 0);
				return;
			}
			if (!(nb = realloc(c->rbuf, ncap)))
				lg_die("out of memory");
			c->rbuf = nb;
			c->rcap = ncap;
		}
		n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen - 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			if (c->st == LG_IDLE && n == 0) {
				lg_conn_close(r, c, 0); /* server closed an idle keep-alive connection */
				return;
			}
			lg_error(r, &r->err_conn, "%s%s while %s a response",
				 n == 0 ? "connection closed by the server" : "recv: ",
				 n == 0 ? "" : strerror(errno),
				 c->st == LG_WRITING ? "sending a request, before" : "awaiting");
			lg_conn_close(r, c, 0);
			return;
		}
		r->bytes_in += (uint64_t)n;
		if (c->st != LG_WRITING && c->st != LG_READING) {
			lg_error(r, &r->err_conn, "unsolicited bytes from the server");
			lg_conn_close(r, c, 0);
			return;
		}
		c->rlen += (size_t)n;
		c->rbuf[c->rlen] = '\0';
		if (!c->hdr_len) {
			size_t from = c->rlen > (size_t)n + 3 ? c->rlen - (size_t)n - 3 : 0;
			const char *h = memmem(c->rbuf + from, c->rlen - from, "\r\n\r\n", 4);

			if (!h) {
				if (c->rlen > 65536) {
					lg_error(r, &r->err_conn, "response header block too large");
					lg_conn_close(r, c, 0);
					return;
				}
				continue;
			}
			if (lg_parse_head(c, h) != 0) {
				lg_error(r, &r->err_conn, "unparsable response: %.80s", c->rbuf);
				lg_conn_close(r, c, 0);
				return;
			}
		}
		if (c->rlen > c->hdr_len + c->body_len) {
			lg_error(r, &r->err_conn, "bytes after the response (pipelining is off)");
			lg_conn_close(r, c, 0);
			return;
		}
		if (c->rlen == c->hdr_len + c->body_len) {
			lg_conn_complete(r, c);
			return;
		}
	}
}

static void lg_conn_event(struct lg_run *r, struct lg_conn *c, uint32_t events)
{
	if (c->st == LG_CONNECTING) {
		int err = 0;
		socklen_t el = sizeof err;

		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err) {
			lg_error(r, &r->err_conn, "connect: %s", strerror(err));
			r->consecutive_connect_fail++;
			lg_conn_close(r, c, 10000000ULL);
			return;
		}
		r->consecutive_connect_fail = 0;
		c->st = LG_IDLE;
		if (r->n_opened < r->o->connections)
			lg_conn_open(r, &r->conns[r->n_opened++]);
		lg_conn_start(r, c);
		return;
	}
	if (c->st == LG_WRITING && (events & (EPOLLOUT | EPOLLERR)))
		lg_conn_write(r, c);
	if (c->fd >= 0 && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
		lg_conn_read(r, c);
}

/* Once per loop turn: the clock, timeouts, reconnects, idle connections. */
static void lg_tick(struct lg_run *r)
{
	uint64_t now = lg_now_ns(), tmo = (uint64_t)(r->o->timeout * 1e9);
	int i;

	if (!r->stopping && now >= r->t_end)
		r->stopping = 1;
	if (r->consecutive_connect_fail > 200)
		lg_die("cannot connect to %s:%s (%d attempts failed in a row)", r->o->url.host,
		       r->o->url.port, r->consecutive_connect_fail);
	for (i = 0; i < r->o->connections; i++) {
		struct lg_conn *c = &r->conns[i];

		if ((c->st == LG_WRITING || c->st == LG_READING) && now - c->t_start > tmo) {
			lg_error(r, &r->err_timeout, "no response within %.1f s", r->o->timeout);
			lg_conn_close(r, c, 0);
		}
		if (r->stopping)
			continue;
		if (c->st == LG_DOWN && now >= c->retry_at)
			lg_conn_open(r, c);
		else if (c->st == LG_IDLE)
			lg_conn_start(r, c);
	}
}

static void lg_run(struct lg_run *r)
{
	struct epoll_event evs[256];
	int i;

	r->ep = epoll_create1(EPOLL_CLOEXEC);
	if (r->ep < 0)
		lg_die("epoll_create1: %s", strerror(errno));
	r->conns = calloc((size_t)r->o->connections, sizeof *r->conns);
	if (!r->conns)
		lg_die("out of memory");
	r->t0 = lg_now_ns();
	r->t_window = r->t0 + (uint64_t)(r->o->warmup * 1e9);
	r->t_end = r->t_window + (uint64_t)(r->o->duration * 1e9);
	r->t_drain_end = r->t_end + (uint64_t)(r->o->timeout * 1e9);
	r->t_last = r->t_window;
	/* connect one at a time, each after the previous one is established,
	 * as clients arriving over time do, not as one burst of SYNs */
	for (i = 0; i < r->o->connections; i++) {
		r->conns[i].fd = -1;
		r->conns[i].retry_at = UINT64_MAX;
	}
	r->n_opened = 1;
	lg_conn_open(r, &r->conns[0]);
	for (;;) {
		int n = epoll_wait(r->ep, evs, (int)(sizeof evs / sizeof evs[0]), 2);

		if (n < 0 && errno != EINTR)
			lg_die("epoll_wait: %s", strerror(errno));
		for (i = 0; i < n; i++)
			lg_conn_event(r, evs[i].data.ptr, evs[i].events);
		lg_tick(r);
		if (r->stopping && r->in_flight == 0)
			break;
		if (r->stopping && lg_now_ns() >= r->t_drain_end) {
			fprintf(stderr, "loadgen: %d requests unanswered at the drain deadline\n", r->in_flight);
			break;
		}
	}
	for (i = 0; i < r->o->connections; i++)
		if (r->conns[i].fd >= 0)
			lg_conn_close(r, &r->conns[i], 0);
	close(r->ep);
}

/* ---------- main ---------- */

static void lg_usage(FILE *f)
{
	fputs("usage: loadgen --url http://HOST:PORT/PATH[?QUERY] [--connections N] [--duration S]\n"
	      "               [--warmup S] [--requests N] [--timeout S] [--label NAME]\n"
	      "               (--gen trackN|importN [--token T] [--pool N] [--wrap] [--seed N]\n"
	      "                [--times uniform|live|ordered]\n"
	      "                | --body-file F | --bodies-dir D) [--events-per-request N]\n"
	      "               [--header 'K: V']... [--method POST|GET] [--expect 1|json200|verbose|any]\n",
	      f);
}

static void lg_print_json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			putchar('\\');
		if ((unsigned char)*s >= 0x20)
			putchar(*s);
	}
	putchar('"');
}

int main(int argc, char **argv)
{
	struct lg_opts o;
	struct lg_run r;
	uint64_t tg0, tg1;
	double secs;
	const char *url = NULL;
	int i;
	size_t k;

	memset(&o, 0, sizeof o);
	o.method = NULL;
	o.connections = 16;
	o.duration = 10;
	o.timeout = 30;
	o.events_per_request = 1;
	o.seed = (uint64_t)lg_wall_ms() ^ ((uint64_t)getpid() << 32);
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			lg_usage(stdout);
			return 0;
		}
		if (!strcmp(a, "--wrap")) {
			o.wrap = 1;
			continue;
		}
		if (!v) {
			fprintf(stderr, "loadgen: unknown or incomplete argument '%s'\n", a);
			lg_usage(stderr);
			return 2;
		}
		i++;
		if (!strcmp(a, "--url"))
			url = v;
		else if (!strcmp(a, "--connections"))
			o.connections = (int)lg_parse_long(a, v, 1, LG_MAX_CONNS);
		else if (!strcmp(a, "--duration"))
			o.duration = lg_parse_secs(a, v);
		else if (!strcmp(a, "--warmup"))
			o.warmup = lg_parse_secs(a, v);
		else if (!strcmp(a, "--timeout"))
			o.timeout = lg_parse_secs(a, v);
		else if (!strcmp(a, "--requests"))
			o.requests = lg_parse_long(a, v, 0, 1000000000L);
		else if (!strcmp(a, "--pool"))
			o.pool = lg_parse_long(a, v, 1, 100000000L);
		else if (!strcmp(a, "--events-per-request"))
			o.events_per_request = lg_parse_long(a, v, 0, 1000000L);
		else if (!strcmp(a, "--seed"))
			o.seed = (uint64_t)lg_parse_long(a, v, 0, 0xffffff);
		else if (!strcmp(a, "--gen"))
			o.gen = v;
		else if (!strcmp(a, "--token"))
			o.token = v;
		else if (!strcmp(a, "--body-file"))
			o.body_file = v;
		else if (!strcmp(a, "--bodies-dir"))
			o.bodies_dir = v;
		else if (!strcmp(a, "--times")) {
			if (strcmp(v, "live") && strcmp(v, "uniform") && strcmp(v, "ordered")) {
				fprintf(stderr, "loadgen: --times must be uniform, live or ordered\n");
				return 2;
			}
			o.live = !strcmp(v, "live") ? 1 : !strcmp(v, "ordered") ? 2 : 0;
		} else if (!strcmp(a, "--label"))
			o.label = v;
		else if (!strcmp(a, "--method")) {
			if (strcmp(v, "POST") && strcmp(v, "GET")) {
				fprintf(stderr, "loadgen: --method must be POST or GET\n");
				return 2;
			}
			o.method = v;
		} else if (!strcmp(a, "--header")) {
			if (o.n_headers == LG_MAX_HEADERS || !strchr(v, ':') || strpbrk(v, "\r\n")) {
				fprintf(stderr, "loadgen: --header '%s': want 'Name: value' (at most %d)\n", v,
					LG_MAX_HEADERS);
				return 2;
			}
			o.headers[o.n_headers++] = v;
		} else if (!strcmp(a, "--expect")) {
			o.expect_set = 1;
			if (!strcmp(v, "1"))
				o.expect = LG_EXPECT_ONE;
			else if (!strcmp(v, "json200"))
				o.expect = LG_EXPECT_JSON200;
			else if (!strcmp(v, "verbose"))
				o.expect = LG_EXPECT_VERBOSE;
			else if (!strcmp(v, "any"))
				o.expect = LG_EXPECT_ANY;
			else {
				fprintf(stderr, "loadgen: --expect must be 1, json200, verbose or any\n");
				return 2;
			}
		} else {
			fprintf(stderr, "loadgen: unknown argument '%s'\n", a);
			lg_usage(stderr);
			return 2;
		}
	}
	if (!url || (!!o.gen + !!o.body_file + !!o.bodies_dir) > 1) {
		fprintf(stderr, "loadgen: need --url and at most one of --gen, --body-file, --bodies-dir\n");
		lg_usage(stderr);
		return 2;
	}
	if (!o.method)
		o.method = (o.gen || o.body_file || o.bodies_dir) ? "POST" : "GET";
	if (!o.pool)
		o.pool = o.requests ? o.requests : 10000;
	if (!o.timeout)
		o.timeout = 30;
	lg_url_parse(url, &o.url);
	signal(SIGPIPE, SIG_IGN);

	memset(&r, 0, sizeof r);
	r.o = &o;
	tg0 = lg_now_ns();
	r.n_pool = lg_pool_build(&o, &r.pool);
	tg1 = lg_now_ns();
	{
		uint64_t bytes = 0;

		for (k = 0; k < r.n_pool; k++)
			bytes += r.pool[k].len;
		fprintf(stderr, "loadgen: %zu distinct requests (%.1f MB) built in %.2f s; %d connections, "
			"%.1f s warm-up + %.1f s\n", r.n_pool, (double)bytes / 1e6,
			(double)(tg1 - tg0) / 1e9, o.connections, o.warmup, o.duration);
	}
	lg_run(&r);
	secs = (double)(r.t_last - r.t_window) / 1e9;
	if (secs <= 0)
		secs = 1e-9;
	if (r.pool_exhausted)
		fprintf(stderr, "loadgen: the pool of %zu requests ran out after %.2f s "
			"(raise --pool or --requests for a longer run)\n", r.n_pool, secs);
	printf("{");
	if (o.label) {
		printf("\"label\":");
		lg_print_json_str(o.label);
		printf(",");
	}
	printf("\"requests\":%llu,\"events\":%llu,\"errors\":%llu,\"seconds\":%.3f,"
	       "\"req_per_s\":%.1f,\"events_per_s\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
	       "\"connections\":%d,\"warmup_s\":%.1f,\"total_requests\":%llu,\"total_events\":%llu,"
	       "\"errors_status\":%llu,\"errors_body\":%llu,\"errors_conn\":%llu,\"errors_timeout\":%llu,"
	       "\"connects\":%llu,\"pool\":%zu,\"pool_exhausted\":%s,\"wrap\":%s,"
	       "\"mb_sent\":%.1f,\"gen_seconds\":%.2f}\n",
	       (unsigned long long)r.ok, (unsigned long long)r.events, (unsigned long long)r.errors, secs,
	       (double)r.ok / secs, (double)r.events / secs, lg_hist_ms(&r.hist, 0.50),
	       lg_hist_ms(&r.hist, 0.99), (double)r.hist.max_us / 1000.0, o.connections, o.warmup,
	       (unsigned long long)r.ok_total, (unsigned long long)r.ev_total,
	       (unsigned long long)r.err_status, (unsigned long long)r.err_body,
	       (unsigned long long)r.err_conn, (unsigned long long)r.err_timeout,
	       (unsigned long long)r.connects, r.n_pool, r.pool_exhausted ? "true" : "false",
	       o.wrap ? "true" : "false", (double)r.bytes_out / 1e6, (double)(tg1 - tg0) / 1e9);
	for (k = 0; k < r.n_pool; k++)
		free(r.pool[k].data);
	free(r.pool);
	for (i = 0; i < o.connections; i++)
		free(r.conns[i].rbuf);
	free(r.conns);
	return 0;
}
