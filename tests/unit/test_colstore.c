/*
 * test_colstore.c - unit tests for src/colstore.c (contract:
 * include/colstore.h).
 *
 * Each test opens a store on a fresh temporary data_dir (mkdtemp under
 * /tmp, removed afterwards), writes events with store_write() (as in
 * test_store.c), opens the column projection and checks the views it
 * hands out:
 *   - layout: n, the user blocks described by ustart (contiguous, time
 *     ordered, covering [0, n) with the CS_NO_USER events last), the
 *     identity seam colstore_user_key();
 *   - strings: cs_string / cs_string_id round trips;
 *   - values: every property written reads back through cs_eval_lookup
 *     and compiled expressions;
 *   - currency: views see exactly what was committed before the acquire,
 *     and a held view stays unchanged while newer ones are built;
 *   - concurrency: readers acquire/evaluate/release while a writer commits
 *     (run the binary under ASan/UBSan too: make SAN=1).
 * Event k of a generated data set has a property "k" = k, so a row of a
 * view can be matched with what was written whatever order it ends up in.
 * Times are around T0 = 2024-03-15T10:00:00.123Z; every event has its own
 * millisecond, so the time order inside a user is unambiguous.
 */
#include <dirent.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "colstore.h"
#include "config.h"
#include "expr.h"
#include "log.h"
#include "store.h"
#include "store_fixture.h"
#include "testlib.h"

#define T0 INT64_C(1710496800123)
#define DAY_MS INT64_C(86400000)
#define MONTH_STEP (31 * DAY_MS)

/* ---------- fixture: temp data_dir, config, open store, projection ---------- */

struct fx {
	struct store_fx s;
	char *dir;                  /* = s.dir */
	struct store_project *sp;   /* = s.sp */
	struct colstore *cs;
};

static int fx_projection(struct fx *f, int rc)
{
	f->dir = f->s.dir;
	f->sp = f->s.sp;
	if (rc != 0)
		return rc;
	if (colstore_open(f->sp, 0, &f->cs) != MP_OK) {
		fprintf(stderr, "colstore_open failed\n");
		f->cs = NULL;
		tl_cur_failed = 1;
		return -1;
	}
	return 0;
}

/* PERIOD is "month" or "day".  Opens the store and the projection. */
static int fx_open(struct fx *f, const char *period)
{
	memset(f, 0, sizeof *f);
	return fx_projection(f, store_fx_open(&f->s, period, "colstore"));
}

static void fx_close(struct fx *f)
{
	colstore_free(f->cs);
	store_fx_close(&f->s);
	memset(f, 0, sizeof *f);
}

/* Close the store and the projection and open both again on the same
 * data_dir with shard_period PERIOD (as after a restart with a changed
 * configuration). */
static int fx_reopen_with_period(struct fx *f, const char *period)
{
	colstore_free(f->cs);
	f->cs = NULL;
	return fx_projection(f, store_fx_reopen(&f->s, period));
}

/* Event shard files in the project directory. */
static int count_shards(const struct fx *f)
{
	char path[256], key[32];
	DIR *d;
	struct dirent *de;
	int n = 0;
	int64_t a, z;

	snprintf(path, sizeof path, "%s/data/p", f->dir);
	if (!(d = opendir(path)))
		return -1;
	while ((de = readdir(d)))
		if (store_shard_file(de->d_name, key, &a, &z))
			n++;
	closedir(d);
	return n;
}

static struct cs_view *acquire_at(struct colstore *cs, int line)
{
	struct cs_view *v = NULL;
	enum mp_err rc = colstore_acquire(cs, &v);

	if (rc != MP_OK || !v) {
		fprintf(stderr, "%s:%d: colstore_acquire: %s\n", __FILE__, line, mp_strerror(rc));
		tl_cur_failed = 1;
		return NULL;
	}
	return v;
}
#define ACQUIRE(cs) acquire_at((cs), __LINE__)

/* ---------- writing ---------- */

#define RECV_MS (T0 + 400 * DAY_MS)

static struct wres write_parsed(struct store_project *sp, const struct ev *evs, cJSON **props, size_t n)
{
	return store_fx_write_parsed(sp, evs, props, n, RECV_MS);
}

static struct wres write_events(struct store_project *sp, const struct ev *evs, size_t n)
{
	return store_fx_write(sp, evs, n, RECV_MS);
}

static void wrote_at(struct wres w, size_t n_new, size_t n_dup, int line)
{
	if (w.rc != MP_OK || w.n_new != n_new || w.n_dup != n_dup) {
		fprintf(stderr, "%s:%d: write gave rc %d new %zu dup %zu (%s); want rc 0 new %zu dup %zu\n", __FILE__,
			line, (int)w.rc, w.n_new, w.n_dup, w.err, n_new, n_dup);
		tl_cur_failed = 1;
	}
}
#define WRITE(sp, n_new, n_dup, ...) do { const struct ev e_[] = { __VA_ARGS__ }; \
	wrote_at(write_events((sp), e_, sizeof e_ / sizeof *e_), (n_new), (n_dup), __LINE__); } while (0)

/* ---------- the generated data set ---------- */

#define LONG_DID "a-distinct-id-that-is-longer-than-sixty-four-bytes-0123456789-abcdefghij"

static const char *const gen_names[] = { "signup", "purchase", "view page" };
static const char *const gen_dids[] = { "alice", "bob", "carol", "", LONG_DID, "dave" };

/* Event K of a data set spread over N_SHARDS shards STEP ms apart. */
static int64_t gen_time(int k, int n_shards, int64_t step)
{
	return T0 + (int64_t)(k % n_shards) * step + (int64_t)k * 1000 + k % 7;
}
static const char *gen_name(int k) { return gen_names[k % 3]; }
static const char *gen_did(int k) { return gen_dids[k % 6]; }
static const char *gen_plan(int k) { return k % 3 == 0 ? "pro" : "free"; }
static int gen_n(int k) { return k % 10; }
static double gen_ratio(int k) { return k + 0.25; }
static int gen_flag(int k) { return k % 2 == 0; }

static void gen_long(int k, char *buf, size_t n)
{
	snprintf(buf, n, "a long string value, longer than the sixty-four bytes of the dictionary, #%d", k);
}

static cJSON *gen_props(int k)
{
	cJSON *p = cJSON_CreateObject(), *tags, *obj, *inner, *nl, *big;
	char s[160];
	int i;

	cJSON_AddNumberToObject(p, "k", k);
	cJSON_AddStringToObject(p, "plan", gen_plan(k));
	cJSON_AddNumberToObject(p, "n", gen_n(k));
	cJSON_AddNumberToObject(p, "ratio", gen_ratio(k));
	cJSON_AddBoolToObject(p, "flag", gen_flag(k));
	cJSON_AddNullToObject(p, "nothing");
	tags = cJSON_AddArrayToObject(p, "tags");
	if (gen_flag(k)) {
		cJSON_AddItemToArray(tags, cJSON_CreateString("x"));
		snprintf(s, sizeof s, "t%d", k);
		cJSON_AddItemToArray(tags, cJSON_CreateString(s));
	} else {
		cJSON_AddItemToArray(tags, cJSON_CreateString("y"));
		cJSON_AddItemToArray(tags, cJSON_CreateNumber(k));
		cJSON_AddItemToArray(tags, cJSON_CreateTrue());
	}
	obj = cJSON_AddObjectToObject(p, "obj");
	inner = cJSON_AddObjectToObject(obj, "inner");
	cJSON_AddNumberToObject(inner, "deep", k);
	gen_long(k, s, sizeof s);
	cJSON_AddStringToObject(p, "long", s);
	/* a list with nested items: only the scalar "a" is a list item */
	nl = cJSON_AddArrayToObject(p, "nested_list");
	cJSON_AddItemToArray(nl, J("[1,2]"));
	cJSON_AddItemToArray(nl, cJSON_CreateString("a"));
	cJSON_AddItemToArray(nl, J("{'b':1}"));
	if (k == 5) {
		/* more list items than cs_eval holds (256) */
		big = cJSON_AddArrayToObject(p, "big");
		for (i = 0; i < 300; i++)
			cJSON_AddItemToArray(big, cJSON_CreateNumber(i));
	}
	return p;
}

static void gen_iid(int k, char *buf, size_t n)
{
	snprintf(buf, n, "iid-%d", k);
}

/* Write events 0..N-1 in a shuffled order, in batches of BATCH; then
 * re-send every 4th event (same dedup key and properties): duplicates. */
static void gen_write(struct store_project *sp, int n, int n_shards, int64_t step, int batch)
{
	struct ev *evs = calloc((size_t)batch, sizeof *evs);
	cJSON **props = calloc((size_t)batch, sizeof *props);
	char (*iids)[32] = calloc((size_t)batch, sizeof *iids);
	int j, b, pass;

	for (pass = 0; pass < 2; pass++) {
		int total = 0, want = 0;

		for (j = 0; j < n; j += batch) {
			int m = 0;
			struct wres w;

			for (b = j; b < j + batch && b < n; b++) {
				int k = (int)(((long)b * 37 + 11) % n); /* n is not a multiple of 37 */

				if (pass == 1 && k % 4)
					continue;
				gen_iid(k, iids[m], sizeof iids[m]);
				evs[m].t = gen_time(k, n_shards, step);
				evs[m].name = gen_name(k);
				evs[m].did = gen_did(k);
				evs[m].iid = iids[m];
				props[m] = gen_props(k);
				m++;
			}
			w = write_parsed(sp, evs, props, (size_t)m);
			for (b = 0; b < m; b++) {
				cJSON_Delete(props[b]);
				props[b] = NULL;
			}
			if (w.rc != MP_OK || (pass == 0 ? w.n_new : w.n_dup) != (size_t)m ||
			    (pass == 0 ? w.n_dup : w.n_new) != 0) {
				fprintf(stderr, "%s: pass %d batch at %d: rc %d new %zu dup %zu (%s), %d events\n",
					__func__, pass, j, (int)w.rc, w.n_new, w.n_dup, w.err, m);
				tl_cur_failed = 1;
			}
			total += m;
		}
		for (j = 0; j < n; j++)
			want += pass == 0 || j % 4 == 0;
		CHECK_INT(total, want);
	}
	free(evs);
	free(props);
	free(iids);
}

/* ---------- view checks ---------- */

/* The layout promised by colstore.h; returns 1 when it holds (else reports
 * at LINE).  Quiet (no CHECKs) so that it may run on reader threads. */
static int layout_ok(const struct cs_view *v, int line, int report)
{
	size_t i;
	uint32_t u, empty = cs_string_id(v, "", 0);
	int ok = 1;

#define LAYOUT(cond) do { if (!(cond)) { ok = 0; \
	if (report) { fprintf(stderr, "%s:%d: layout: %s (i=%zu u=%u)\n", __FILE__, line, #cond, i, \
			      (unsigned)u); } \
	goto out; } } while (0)
	i = 0;
	u = 0;
	LAYOUT(v->ustart[0] == 0);
	for (u = 0; u < v->n_users; u++) {
		uint32_t a = v->ustart[u], z = v->ustart[u + 1];

		LAYOUT(a < z);                 /* a user has at least one event */
		LAYOUT(z <= v->n);
		for (i = a; i < z; i++) {
			LAYOUT(v->user[i] == u);
			LAYOUT(v->did[i] == v->did[a]); /* today the user is the distinct_id */
			LAYOUT(v->did[i] != empty || empty == 0);
			LAYOUT(colstore_user_key(v, v->did[i]) == u);
			LAYOUT(i == a || v->t[i - 1] <= v->t[i]);
		}
		/* different users have different distinct_ids */
		LAYOUT(u == 0 || v->did[v->ustart[u - 1]] != v->did[a]);
	}
	for (i = v->ustart[v->n_users]; i < v->n; i++) {
		LAYOUT(v->user[i] == CS_NO_USER);
		LAYOUT(empty != 0 && v->did[i] == empty);
		LAYOUT(i == v->ustart[v->n_users] || v->t[i - 1] <= v->t[i]);
	}
	for (i = 0; i < v->n; i++) {
		LAYOUT(v->ev[i] >= 1 && v->ev[i] < v->n_strings);
		LAYOUT(v->did[i] >= 1 && v->did[i] < v->n_strings);
	}
	if (empty)
		LAYOUT(colstore_user_key(v, empty) == CS_NO_USER);
#undef LAYOUT
out:
	return ok;
}
#define LAYOUT_OK(v) CHECK(layout_ok((v), __LINE__, 1))

static int str_is(const struct cs_view *v, uint32_t id, const char *want)
{
	size_t len = 99;
	const char *s = cs_string(v, id, &len);

	return s && len == strlen(want) && memcmp(s, want, len) == 0;
}

static struct expr *compile_at(const char *src, int line)
{
	struct expr *e = NULL;
	char err[256] = "";

	if (expr_compile(src, strlen(src), &e, err, sizeof err, NULL) != MP_OK) {
		fprintf(stderr, "%s:%d: expr_compile(%s): %s\n", __FILE__, line, src, err);
		tl_cur_failed = 1;
		return NULL;
	}
	return e;
}
#define COMPILE(src) compile_at((src), __LINE__)

/* Evaluate E on event I; the value, or type EXPR_UNDEFINED plus a failed
 * check when the evaluation fails. */
static struct expr_value eval_at(struct expr *e, struct cs_eval *ce, size_t i, int line)
{
	struct expr_value out;
	enum mp_err rc;

	out.type = EXPR_UNDEFINED;
	if (!e)
		return out;
	ce->i = i;
	if ((rc = expr_eval(e, cs_eval_lookup, ce, &out)) != MP_OK) {
		fprintf(stderr, "%s:%d: expr_eval on event %zu: %s (%s)\n", __FILE__, line, i, mp_strerror(rc),
			expr_error(e));
		tl_cur_failed = 1;
		out.type = EXPR_UNDEFINED;
	}
	return out;
}
#define EVAL(e, ce, i) eval_at((e), (ce), (i), __LINE__)

static int is_bool(struct expr_value x, int b)
{
	return x.type == EXPR_BOOL && x.u.b == b;
}

static int is_num(struct expr_value x, double d)
{
	return x.type == EXPR_NUMBER && x.u.n == d;
}

static int is_str(struct expr_value x, const char *s)
{
	return x.type == EXPR_STRING && x.u.str.len == strlen(s) && memcmp(x.u.str.s, s, x.u.str.len) == 0;
}

/* The k of event I (property "k"), or -1. */
static int event_k(struct expr *ek, struct cs_eval *ce, size_t i)
{
	struct expr_value x = eval_at(ek, ce, i, __LINE__);

	return x.type == EXPR_NUMBER ? (int)x.u.n : -1;
}

enum {
	E_K, E_PLAN, E_N, E_TAGS, E_RATIO, E_FLAG, E_NULL, E_OBJ, E_LONG, E_MISSING, E_NAME, E_EVNAME,
	E_TIME_GE, E_EVTIME, E_PTIME, E_PDID, E_EDID, E_USER, E_GROUP, E_IID, E_NESTED, E_BIG, E_TAGS_EQ,
	E_WHERE, N_EXPRS
};

/* Check every event of V against the generated data set (events 0..N-1
 * over N_SHARDS shards STEP apart): each k once, at its time, with its
 * name, distinct_id and property values. */
static void check_gen_view(const struct cs_view *v, int n, int n_shards, int64_t step, int line)
{
	char src[N_EXPRS][160], tg[64], longs[160], iid[32];
	struct expr *e[N_EXPRS];
	struct cs_eval ce;
	char *seen = calloc((size_t)n, 1);
	int64_t thr = T0 + step;  /* events of the 2nd shard and later are >= thr, roughly */
	time_t thr_s;
	struct tm tm;
	size_t i;
	int j, bad = 0;

	/* the threshold rounded down to whole seconds, as text */
	thr_s = (time_t)(thr / 1000);
	gmtime_r(&thr_s, &tm);
	strftime(tg, sizeof tg, "%Y-%m-%dT%H:%M:%S", &tm);
	thr = (int64_t)thr_s * 1000;
	snprintf(src[E_K], sizeof src[0], "properties[\"k\"]");
	snprintf(src[E_PLAN], sizeof src[0], "properties[\"plan\"] == \"pro\"");
	snprintf(src[E_N], sizeof src[0], "properties[\"n\"] > 3");
	snprintf(src[E_TAGS], sizeof src[0], "\"x\" in properties[\"tags\"]");
	snprintf(src[E_RATIO], sizeof src[0], "properties[\"ratio\"]");
	snprintf(src[E_FLAG], sizeof src[0], "properties[\"flag\"]");
	snprintf(src[E_NULL], sizeof src[0], "properties[\"nothing\"]");
	snprintf(src[E_OBJ], sizeof src[0], "properties[\"obj\"]");
	snprintf(src[E_LONG], sizeof src[0], "properties[\"long\"]");
	snprintf(src[E_MISSING], sizeof src[0], "properties[\"missing\"]");
	snprintf(src[E_NAME], sizeof src[0], "event[\"name\"]");
	snprintf(src[E_EVNAME], sizeof src[0], "event[\"$event_name\"]");
	snprintf(src[E_TIME_GE], sizeof src[0], "event[\"$time\"] >= datetime(\"%s\")", tg);
	snprintf(src[E_EVTIME], sizeof src[0], "event[\"$time\"]");
	snprintf(src[E_PTIME], sizeof src[0], "properties[\"time\"]");
	snprintf(src[E_PDID], sizeof src[0], "properties[\"distinct_id\"]");
	snprintf(src[E_EDID], sizeof src[0], "event[\"distinct_id\"]");
	snprintf(src[E_USER], sizeof src[0], "user[\"plan\"]");
	snprintf(src[E_GROUP], sizeof src[0], "group[\"plan\"]");
	snprintf(src[E_IID], sizeof src[0], "properties[\"$insert_id\"]");
	snprintf(src[E_NESTED], sizeof src[0], "properties[\"nested_list\"]");
	snprintf(src[E_BIG], sizeof src[0], "properties[\"big\"]");
	snprintf(src[E_TAGS_EQ], sizeof src[0], "properties[\"tags\"] == \"y\"");
	snprintf(src[E_WHERE], sizeof src[0],
		 "properties[\"plan\"] == \"pro\" and properties[\"flag\"] and not defined(properties[\"missing\"])");
	for (j = 0; j < N_EXPRS; j++)
		e[j] = compile_at(src[j], line);
	cs_eval_init(&ce, v);
	if (v->n != (size_t)n) {
		fprintf(stderr, "%s:%d: view has %zu events, want %d\n", __FILE__, line, v->n, n);
		tl_cur_failed = 1;
	}
	for (i = 0; i < v->n && bad < 10; i++) {
		int k = event_k(e[E_K], &ce, i), ok = 1;
		struct expr_value x;
		int64_t t;

#define EXPECT(cond) do { if (!(cond)) { fprintf(stderr, "%s:%d: event %zu (k=%d): %s\n", \
	__FILE__, line, i, k, #cond); ok = 0; } } while (0)
		if (k < 0 || k >= n || seen[k]) {
			fprintf(stderr, "%s:%d: event %zu has k %d (%s)\n", __FILE__, line, i, k,
				k >= 0 && k < n ? "seen before" : "out of range");
			tl_cur_failed = 1;
			bad++;
			continue;
		}
		seen[k] = 1;
		t = gen_time(k, n_shards, step);
		EXPECT(v->t[i] == t);
		EXPECT(str_is(v, v->ev[i], gen_name(k)));
		EXPECT(str_is(v, v->did[i], gen_did(k)));
		EXPECT(v->ev[i] == cs_string_id(v, gen_name(k), strlen(gen_name(k))));
		EXPECT(v->did[i] == cs_string_id(v, gen_did(k), strlen(gen_did(k))));
		EXPECT((v->user[i] == CS_NO_USER) == (gen_did(k)[0] == '\0'));
		EXPECT(colstore_user_key(v, v->did[i]) == v->user[i]);
		EXPECT(is_bool(EVAL(e[E_PLAN], &ce, i), k % 3 == 0));
		EXPECT(is_bool(EVAL(e[E_N], &ce, i), gen_n(k) > 3));
		EXPECT(is_bool(EVAL(e[E_TAGS], &ce, i), gen_flag(k)));
		EXPECT(is_bool(EVAL(e[E_TAGS_EQ], &ce, i), !gen_flag(k)));
		EXPECT(is_num(EVAL(e[E_RATIO], &ce, i), gen_ratio(k)));
		EXPECT(is_bool(EVAL(e[E_FLAG], &ce, i), gen_flag(k)));
		EXPECT(EVAL(e[E_NULL], &ce, i).type == EXPR_NULL);
		EXPECT(EVAL(e[E_OBJ], &ce, i).type == EXPR_UNDEFINED);
		gen_long(k, longs, sizeof longs);
		EXPECT(is_str(EVAL(e[E_LONG], &ce, i), longs));
		EXPECT(EVAL(e[E_MISSING], &ce, i).type == EXPR_UNDEFINED);
		EXPECT(is_str(EVAL(e[E_NAME], &ce, i), gen_name(k)));
		EXPECT(is_str(EVAL(e[E_EVNAME], &ce, i), gen_name(k)));
		EXPECT(is_bool(EVAL(e[E_TIME_GE], &ce, i), t >= thr));
		x = EVAL(e[E_EVTIME], &ce, i);
		EXPECT(x.type == EXPR_DATETIME && x.u.ms == t);
		EXPECT(is_num(EVAL(e[E_PTIME], &ce, i), (double)t / 1000.0));
		EXPECT(is_str(EVAL(e[E_PDID], &ce, i), gen_did(k)));
		EXPECT(is_str(EVAL(e[E_EDID], &ce, i), gen_did(k)));
		EXPECT(EVAL(e[E_USER], &ce, i).type == EXPR_UNDEFINED);
		EXPECT(EVAL(e[E_GROUP], &ce, i).type == EXPR_UNDEFINED);
		gen_iid(k, iid, sizeof iid);
		EXPECT(is_str(EVAL(e[E_IID], &ce, i), iid));
		x = EVAL(e[E_NESTED], &ce, i);
		EXPECT(x.type == EXPR_LIST && x.u.list.n == 1 && is_str(x.u.list.items[0], "a"));
		x = EVAL(e[E_BIG], &ce, i);
		if (k == 5)
			EXPECT(x.type == EXPR_LIST && x.u.list.n == 256 && is_num(x.u.list.items[0], 0) &&
			       is_num(x.u.list.items[255], 255));
		else
			EXPECT(x.type == EXPR_UNDEFINED);
		{	/* the list values themselves */
			struct expr_value tags;
			char tk[32];

			ce.i = i;
			CHECK_INT(cs_eval_lookup(&ce, EXPR_SCOPE_PROPERTIES, "tags", 4, &tags), 0);
			snprintf(tk, sizeof tk, "t%d", k);
			if (gen_flag(k))
				EXPECT(tags.type == EXPR_LIST && tags.u.list.n == 2 && is_str(tags.u.list.items[0], "x") &&
				       is_str(tags.u.list.items[1], tk));
			else
				EXPECT(tags.type == EXPR_LIST && tags.u.list.n == 3 && is_str(tags.u.list.items[0], "y") &&
				       is_num(tags.u.list.items[1], k) && is_bool(tags.u.list.items[2], 1));
		}
		EXPECT(expr_eval_where(e[E_WHERE], cs_eval_lookup, &ce) == (k % 3 == 0 && gen_flag(k)));
		/* the property record itself: a version byte, then entries */
		{
			size_t len = 0;
			const unsigned char *p = cs_props(v, i, &len);

			EXPECT(p && len > 1 && p[0] == 1);
		}
#undef EXPECT
		if (!ok) {
			tl_cur_failed = 1;
			bad++;
		}
	}
	for (j = 0; j < n && v->n == (size_t)n; j++)
		if (!seen[j]) {
			fprintf(stderr, "%s:%d: event k=%d is missing from the view\n", __FILE__, line, j);
			tl_cur_failed = 1;
			break;
		}
	for (j = 0; j < N_EXPRS; j++)
		expr_free(e[j]);
	free(seen);
}

/* ---------- tests ---------- */

static void empty_store_gives_an_empty_view(void)
{
	struct fx f;
	struct cs_view *v;
	size_t len = 7;

	if (fx_open(&f, "day") == 0 && (v = ACQUIRE(f.cs))) {
		CHECK_INT(v->n, 0);
		CHECK_INT(v->n_users, 0);
		CHECK_INT(v->ustart[0], 0);
		CHECK(v->n_strings >= 1);
		CHECK_INT(cs_string_id(v, "x", 1), 0);
		CHECK_INT(cs_string_id(v, "", 0), 0);
		CHECK_STR(cs_string(v, 0, &len), "");
		CHECK_INT(len, 0);
		len = 7;
		CHECK_STR(cs_string(v, 12345, &len), "");
		CHECK_INT(len, 0);
		CHECK_INT(colstore_user_key(v, 0), CS_NO_USER);
		CHECK_INT(colstore_user_key(v, 99), CS_NO_USER);
		LAYOUT_OK(v);
		colstore_release(v);
	}
	colstore_release(NULL);
	colstore_free(NULL);
	fx_close(&f);
}

/* Nothing is read at open; a projection opened before any write sees the
 * shards written later. */
static void projection_opened_before_writes_sees_them(void)
{
	struct fx f;
	struct cs_view *v;

	if (fx_open(&f, "month") != 0) {
		fx_close(&f);
		return;
	}
	WRITE(f.sp, 1, 0, { T0, "e", "u", NULL, "{'a':1}" });
	if ((v = ACQUIRE(f.cs))) {
		CHECK_INT(v->n, 1);
		CHECK_INT(v->n_users, 1);
		CHECK(str_is(v, v->ev[0], "e"));
		CHECK(str_is(v, v->did[0], "u"));
		CHECK_INT(v->t[0], T0);
		CHECK_INT(v->user[0], 0);
		CHECK_INT(v->ustart[0], 0);
		CHECK_INT(v->ustart[1], 1);
		colstore_release(v);
	}
	fx_close(&f);
}

#define GEN_N 211

static void day_shards_layout_strings_and_values(void)
{
	struct fx f;
	struct cs_view *v;
	uint32_t id;
	size_t len;

	if (fx_open(&f, "day") != 0) {
		fx_close(&f);
		return;
	}
	gen_write(f.sp, GEN_N, 4, DAY_MS, 50);
	CHECK_INT(count_shards(&f), 4);
	if (!(v = ACQUIRE(f.cs))) {
		fx_close(&f);
		return;
	}
	LAYOUT_OK(v);
	check_gen_view(v, GEN_N, 4, DAY_MS, __LINE__);
	/* five users (alice bob carol long dave) and the "" events last */
	CHECK_INT(v->n_users, 5);
	CHECK_INT(v->n - v->ustart[v->n_users], (GEN_N + 2) / 6);
	/* strings: names, distinct_ids, keys and short values have ids */
	id = cs_string_id(v, "pro", 3);
	CHECK(id != 0);
	CHECK(str_is(v, id, "pro"));
	CHECK_INT(colstore_user_key(v, id), CS_NO_USER);   /* a value, not a distinct_id */
	id = cs_string_id(v, "plan", 4);
	CHECK(id != 0 && str_is(v, id, "plan"));
	CHECK(cs_string_id(v, "planet", 4) == id);           /* N bytes, not NUL-terminated */
	id = cs_string_id(v, LONG_DID, strlen(LONG_DID));
	CHECK(id != 0 && str_is(v, id, LONG_DID));
	CHECK(colstore_user_key(v, id) != CS_NO_USER);
	id = cs_string_id(v, "view page", 9);
	CHECK(id != 0 && str_is(v, id, "view page"));
	CHECK(cs_string_id(v, "", 0) != 0);
	CHECK_INT(cs_string_id(v, "absent", 6), 0);
	CHECK_INT(cs_string_id(v, "Pro", 3), 0);
	CHECK_INT(cs_string_id(v, "pro ", 4), 0);
	CHECK_INT(cs_string_id(v, "pr", 2), 0);
	/* every valid id round-trips */
	for (id = 1; id < v->n_strings; id++) {
		const char *s = cs_string(v, id, &len);

		if (cs_string_id(v, s, len) != id) {
			fprintf(stderr, "string id %u (%.*s) does not round-trip\n", (unsigned)id, (int)len, s);
			tl_cur_failed = 1;
			break;
		}
	}
	len = 5;
	CHECK_STR(cs_string(v, v->n_strings, &len), "");
	CHECK_INT(len, 0);
	colstore_release(v);
	fx_close(&f);
}

static void month_shards_layout_strings_and_values(void)
{
	struct fx f;
	struct cs_view *v;

	if (fx_open(&f, "month") != 0) {
		fx_close(&f);
		return;
	}
	gen_write(f.sp, GEN_N, 3, MONTH_STEP, 64);
	CHECK_INT(count_shards(&f), 3);
	if ((v = ACQUIRE(f.cs))) {
		LAYOUT_OK(v);
		check_gen_view(v, GEN_N, 3, MONTH_STEP, __LINE__);
		CHECK_INT(v->n_users, 5);
		colstore_release(v);
	}
	fx_close(&f);
}

/* The same data through a second projection of the same store gives the
 * same view (string ids may differ: compare strings). */
static void two_projections_agree(void)
{
	struct fx f;
	struct colstore *cs2 = NULL;
	struct cs_view *a, *b;
	size_t i, la, lb;

	if (fx_open(&f, "day") != 0) {
		fx_close(&f);
		return;
	}
	gen_write(f.sp, 60, 3, DAY_MS, 20);
	CHECK_INT(colstore_open(f.sp, 0, &cs2), MP_OK);
	a = ACQUIRE(f.cs);
	b = cs2 ? ACQUIRE(cs2) : NULL;
	if (a && b) {
		CHECK_INT(a->n, b->n);
		CHECK_INT(a->n_users, b->n_users);
		for (i = 0; i < a->n && i < b->n; i++) {
			const char *sa = cs_string(a, a->did[i], &la), *sb = cs_string(b, b->did[i], &lb);

			CHECK_INT(a->t[i], b->t[i]);
			CHECK(la == lb && memcmp(sa, sb, la) == 0);
			sa = cs_string(a, a->ev[i], &la);
			sb = cs_string(b, b->ev[i], &lb);
			CHECK(la == lb && memcmp(sa, sb, la) == 0);
			CHECK_INT(a->user[i] == CS_NO_USER, b->user[i] == CS_NO_USER);
			if (tl_cur_failed)
				break;
		}
	}
	colstore_release(a);
	colstore_release(b);
	colstore_free(cs2);
	fx_close(&f);
}

/* Duplicates by $insert_id are one event; events without an insert id are
 * never merged; a replacement's properties are visible in the next view
 * and not in a held one. */
static void dedup_counts_once_and_replacement_shows_in_next_view(void)
{
	struct fx f;
	struct cs_view *v1, *v2;
	struct expr *plan;
	struct cs_eval ce;
	size_t i;
	int found;

	if (fx_open(&f, "day") != 0) {
		fx_close(&f);
		return;
	}
	plan = COMPILE("properties[\"plan\"]");
	WRITE(f.sp, 3, 1,
	      { T0, "buy", "u1", "i1", "{'plan':'basic'}" },
	      { T0, "buy", "u1", "i1", "{'plan':'basic'}" },
	      { T0 + 1, "buy", "u1", NULL, "{'plan':'none'}" },
	      { T0 + 1, "buy", "u1", NULL, "{'plan':'none'}" });
	WRITE(f.sp, 0, 1, { T0, "buy", "u1", "i1", "{'plan':'basic'}" });
	/* a different key part: another event */
	WRITE(f.sp, 3, 0,
	      { T0, "buy", "u2", "i1", "{'plan':'basic'}" },
	      { T0 + 5, "buy", "u1", "i1", "{'plan':'basic'}" },
	      { T0, "sell", "u1", "i1", "{'plan':'basic'}" });
	if (!(v1 = ACQUIRE(f.cs))) {
		expr_free(plan);
		fx_close(&f);
		return;
	}
	CHECK_INT(v1->n, 6);
	LAYOUT_OK(v1);
	/* the replacement: same key, new properties */
	WRITE(f.sp, 0, 1, { T0, "buy", "u1", "i1", "{'plan':'enterprise','extra':true}" });
	if ((v2 = ACQUIRE(f.cs))) {
		CHECK(v2 != v1);
		CHECK_INT(v2->n, 6);
		LAYOUT_OK(v2);
		cs_eval_init(&ce, v2);
		for (found = 0, i = 0; i < v2->n; i++) {
			struct expr_value x = EVAL(plan, &ce, i);

			if (v2->t[i] == T0 && str_is(v2, v2->ev[i], "buy") && str_is(v2, v2->did[i], "u1")) {
				found++;
				CHECK(is_str(x, "enterprise"));
			} else {
				CHECK(is_str(x, "basic") || is_str(x, "none"));
			}
		}
		CHECK_INT(found, 1);
		CHECK(cs_string_id(v2, "enterprise", 10) != 0);
		CHECK(cs_string_id(v2, "extra", 5) != 0);
	}
	/* the held view still has the old properties */
	cs_eval_init(&ce, v1);
	for (found = 0, i = 0; i < v1->n; i++) {
		struct expr_value x = EVAL(plan, &ce, i);

		CHECK(x.type == EXPR_STRING && !is_str(x, "enterprise"));
		found += is_str(x, "basic");
	}
	CHECK_INT(found, 4);
	CHECK_INT(cs_string_id(v1, "enterprise", 10), 0);
	colstore_release(v1);
	colstore_release(v2);
	expr_free(plan);
	fx_close(&f);
}

/* Snapshot of a view's columns, to show that a held view never changes. */
struct snap {
	size_t n;
	uint32_t n_users, n_strings;
	int64_t *t;
	uint32_t *ev, *did, *user, *ustart;
	char **props;       /* copy of each property record */
	size_t *props_len;
};

static void snap_take(struct snap *s, const struct cs_view *v)
{
	size_t i;

	s->n = v->n;
	s->n_users = v->n_users;
	s->n_strings = v->n_strings;
	s->t = malloc((v->n + 1) * sizeof *s->t);
	s->ev = malloc((v->n + 1) * sizeof *s->ev);
	s->did = malloc((v->n + 1) * sizeof *s->did);
	s->user = malloc((v->n + 1) * sizeof *s->user);
	s->ustart = malloc((v->n_users + 1) * sizeof *s->ustart);
	s->props = calloc(v->n + 1, sizeof *s->props);
	s->props_len = calloc(v->n + 1, sizeof *s->props_len);
	memcpy(s->t, v->t, v->n * sizeof *s->t);
	memcpy(s->ev, v->ev, v->n * sizeof *s->ev);
	memcpy(s->did, v->did, v->n * sizeof *s->did);
	memcpy(s->user, v->user, v->n * sizeof *s->user);
	memcpy(s->ustart, v->ustart, (v->n_users + 1) * sizeof *s->ustart);
	for (i = 0; i < v->n; i++) {
		const unsigned char *p = cs_props(v, i, &s->props_len[i]);

		s->props[i] = malloc(s->props_len[i] + 1);
		memcpy(s->props[i], p, s->props_len[i]);
	}
}

static int snap_same(const struct snap *s, const struct cs_view *v)
{
	size_t i, len;

	if (s->n != v->n || s->n_users != v->n_users || s->n_strings != v->n_strings ||
	    memcmp(s->t, v->t, v->n * sizeof *s->t) || memcmp(s->ev, v->ev, v->n * sizeof *s->ev) ||
	    memcmp(s->did, v->did, v->n * sizeof *s->did) || memcmp(s->user, v->user, v->n * sizeof *s->user) ||
	    memcmp(s->ustart, v->ustart, (v->n_users + 1) * sizeof *s->ustart))
		return 0;
	for (i = 0; i < v->n; i++) {
		const unsigned char *p = cs_props(v, i, &len);

		if (len != s->props_len[i] || memcmp(p, s->props[i], len))
			return 0;
	}
	return 1;
}

static void snap_free(struct snap *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		free(s->props[i]);
	free(s->props);
	free(s->props_len);
	free(s->t);
	free(s->ev);
	free(s->did);
	free(s->user);
	free(s->ustart);
}

static void views_are_current_and_held_views_unchanged(void)
{
	struct fx f;
	struct cs_view *v1 = NULL, *v2 = NULL, *v3 = NULL;
	struct snap s1;
	struct expr *gold;
	struct cs_eval ce;
	size_t i;
	int n_gold;
	uint32_t zed;

	if (fx_open(&f, "day") != 0) {
		fx_close(&f);
		return;
	}
	gen_write(f.sp, 40, 2, DAY_MS, 40);
	if (!(v1 = ACQUIRE(f.cs))) {
		fx_close(&f);
		return;
	}
	check_gen_view(v1, 40, 2, DAY_MS, __LINE__);
	snap_take(&s1, v1);
	/* no change: an acquire gives the same data */
	if ((v2 = ACQUIRE(f.cs))) {
		CHECK(snap_same(&s1, v2));
		colstore_release(v2);
	}
	/* into the existing shard of day 0 and into a new shard (day 9) */
	WRITE(f.sp, 3, 0,
	      { T0 + 1, "late", "zed", NULL, "{'plan':'gold'}" },
	      { T0 + 2, "late", "alice", NULL, "{'plan':'gold'}" },
	      { T0 + 3, "late", "", NULL, "{'plan':'gold'}" });
	WRITE(f.sp, 2, 0,
	      { T0 + 9 * DAY_MS, "later", "zed", NULL, "{'plan':'gold'}" },
	      { T0 + 9 * DAY_MS + 1, "later", "newbie", NULL, "{'plan':'silver'}" });
	CHECK_INT(count_shards(&f), 3);
	CHECK(snap_same(&s1, v1));   /* held view untouched by the writes */
	if ((v2 = ACQUIRE(f.cs))) {
		CHECK_INT(v2->n, 45);
		CHECK_INT(v2->n_users, v1->n_users + 2);
		LAYOUT_OK(v2);
		CHECK(v2->n_strings > v1->n_strings);
		CHECK(cs_string_id(v2, "gold", 4) != 0);
		CHECK(cs_string_id(v2, "later", 5) != 0);
		zed = cs_string_id(v2, "zed", 3);
		CHECK(zed != 0);
		CHECK(colstore_user_key(v2, zed) != CS_NO_USER);
		/* zed's two events: contiguous, time ordered, across both shards */
		if (zed && colstore_user_key(v2, zed) != CS_NO_USER) {
			uint32_t u = colstore_user_key(v2, zed), a = v2->ustart[u];

			CHECK_INT(v2->ustart[u + 1] - a, 2);
			CHECK_INT(v2->t[a], T0 + 1);
			CHECK_INT(v2->t[a + 1], T0 + 9 * DAY_MS);
			CHECK(str_is(v2, v2->ev[a], "late"));
			CHECK(str_is(v2, v2->ev[a + 1], "later"));
		}
		/* the old view knows none of it */
		CHECK_INT(cs_string_id(v1, "gold", 4), 0);
		CHECK_INT(cs_string_id(v1, "zed", 3), 0);
		CHECK_INT(colstore_user_key(v1, zed), CS_NO_USER);
		gold = COMPILE("properties[\"plan\"] == \"gold\"");
		cs_eval_init(&ce, v2);
		for (n_gold = 0, i = 0; i < v2->n; i++) {
			ce.i = i;
			n_gold += expr_eval_where(gold, cs_eval_lookup, &ce) == 1;
		}
		CHECK_INT(n_gold, 4);
		cs_eval_init(&ce, v1);
		for (n_gold = 0, i = 0; i < v1->n; i++) {
			ce.i = i;
			n_gold += expr_eval_where(gold, cs_eval_lookup, &ce) == 1;
		}
		CHECK_INT(n_gold, 0);
		expr_free(gold);
	}
	/* a new acquire with no write in between: same data as v2 */
	if (v2 && (v3 = ACQUIRE(f.cs))) {
		struct snap s2;

		snap_take(&s2, v2);
		CHECK(snap_same(&s2, v3));
		snap_free(&s2);
	}
	CHECK(snap_same(&s1, v1));
	check_gen_view(v1, 40, 2, DAY_MS, __LINE__);   /* v1 still reads correctly */
	colstore_release(v1);
	colstore_release(v3);
	LAYOUT_OK(v2);                                  /* v2 survives v1 and v3 */
	colstore_release(v2);
	snap_free(&s1);
	fx_close(&f);
}

/* Over STORE_STAGE_MAX staged events the writer merges `stage` into
 * `events`: the view must read both tables. */
static void reads_both_events_and_stage(void)
{
	enum { B = 2000, N = (STORE_STAGE_MAX / B + 2) * B };
	struct fx f;
	struct cs_view *v;
	struct ev *evs = calloc(B, sizeof *evs);
	char (*dids)[16] = calloc(B, sizeof *dids);
	int j, b;

	if (fx_open(&f, "month") != 0) {
		fx_close(&f);
		free(evs);
		free(dids);
		return;
	}
	for (j = 0; j < N; j += B) {
		for (b = 0; b < B; b++) {
			int k = j + b;

			snprintf(dids[b], sizeof dids[b], "u%d", k % 97);
			evs[b].t = T0 + (int64_t)((k * 7919) % N) * 10;  /* not in time order */
			evs[b].name = k % 2 ? "a" : "b";
			evs[b].did = k % 50 == 0 ? "" : dids[b];
			evs[b].iid = NULL;
			evs[b].props = NULL;
		}
		wrote_at(write_events(f.sp, evs, B), B, 0, __LINE__);
	}
	if ((v = ACQUIRE(f.cs))) {
		CHECK_INT(v->n, N);
		CHECK_INT(v->n_users, 97);
		CHECK_INT(v->n - v->ustart[v->n_users], N / 50);
		LAYOUT_OK(v);
		colstore_release(v);
	}
	/* one more event after the merge: into `stage` again */
	WRITE(f.sp, 1, 0, { T0 - 5, "c", "u1", NULL, NULL });
	if ((v = ACQUIRE(f.cs))) {
		uint32_t u = colstore_user_key(v, cs_string_id(v, "u1", 2));

		CHECK_INT(v->n, N + 1);
		LAYOUT_OK(v);
		CHECK(u != CS_NO_USER);
		if (u != CS_NO_USER) {
			CHECK_INT(v->t[v->ustart[u]], T0 - 5);     /* first in u1's block */
			CHECK(str_is(v, v->ev[v->ustart[u]], "c"));
		}
		colstore_release(v);
	}
	free(evs);
	free(dids);
	fx_close(&f);
}

/* A user's events in one millisecond keep storage order and still form
 * one contiguous block; many property names exceed the 16-entry name
 * cache of cs_eval. */
static void many_property_names_and_same_millisecond(void)
{
	struct fx f;
	struct cs_view *v;
	struct cs_eval ce;
	char src[2048], props[2048];
	struct expr *e;
	size_t i, o = 0, po = 0;
	int j;

	if (fx_open(&f, "day") != 0) {
		fx_close(&f);
		return;
	}
	po += (size_t)snprintf(props + po, sizeof props - po, "{");
	o += (size_t)snprintf(src + o, sizeof src - o, "0");
	for (j = 0; j < 24; j++) {
		po += (size_t)snprintf(props + po, sizeof props - po, "%s'p%d':%d", j ? "," : "", j, j + 1);
		o += (size_t)snprintf(src + o, sizeof src - o, " + properties[\"p%d\"]", j);
	}
	snprintf(props + po, sizeof props - po, "}");
	{
		const struct ev evs[] = {
			{ T0, "e", "u", NULL, props },
			{ T0, "e", "u", NULL, props },
			{ T0, "e", "w", NULL, "{'p0':100}" },
			{ T0, "e", "u", NULL, props },
		};

		wrote_at(write_events(f.sp, evs, 4), 4, 0, __LINE__);
	}
	e = COMPILE(src);
	if ((v = ACQUIRE(f.cs))) {
		CHECK_INT(v->n, 4);
		CHECK_INT(v->n_users, 2);
		LAYOUT_OK(v);
		cs_eval_init(&ce, v);
		for (i = 0; i < v->n; i++) {
			struct expr_value x = EVAL(e, &ce, i);

			if (str_is(v, v->did[i], "u"))
				CHECK(is_num(x, 24 * 25 / 2));
			else
				CHECK(x.type == EXPR_UNDEFINED); /* p1.. missing: undefined arithmetic */
		}
		/* evaluating the same names again (from the cache) gives the same */
		for (i = 0; i < v->n; i++)
			if (str_is(v, v->did[i], "u"))
				CHECK(is_num(EVAL(e, &ce, i), 300));
		colstore_release(v);
	}
	expr_free(e);
	fx_close(&f);
}

/* docs/CONFIG.md: after a change of shard_period "the old files are still
 * read".  Then a month file (events-2024-03.db) and day files of the same
 * month (events-2024-03-10.db) overlap in time; a user's events must
 * still come out in time order. */
static void changed_shard_period_keeps_time_order(void)
{
	struct fx f;
	struct cs_view *v;
	const int64_t mar20 = INT64_C(1710928800000), mar10 = INT64_C(1710064800000); /* 10:00 UTC */

	if (fx_open(&f, "month") != 0) {
		fx_close(&f);
		return;
	}
	WRITE(f.sp, 2, 0, { mar20, "e", "u", NULL, NULL }, { mar20 + 1, "e", "w", NULL, NULL });
	if (fx_reopen_with_period(&f, "day") != 0) {
		fx_close(&f);
		return;
	}
	WRITE(f.sp, 2, 0, { mar10, "e", "u", NULL, NULL }, { mar20 + 2, "e", "w", NULL, NULL });
	CHECK_INT(count_shards(&f), 3);   /* 2024-03, 2024-03-10, 2024-03-20 */
	if ((v = ACQUIRE(f.cs))) {
		uint32_t u = colstore_user_key(v, cs_string_id(v, "u", 1));

		CHECK_INT(v->n, 4);
		CHECK_INT(v->n_users, 2);
		LAYOUT_OK(v);
		if (u != CS_NO_USER) {
			CHECK_INT(v->t[v->ustart[u]], mar10);
			CHECK_INT(v->t[v->ustart[u] + 1], mar20);
		}
		colstore_release(v);
	}
	fx_close(&f);
}

/* ---------- concurrency ---------- */

#define CC_BATCH 25
#define CC_BATCHES 48
#define CC_READERS 4

struct cc {
	struct fx *f;
	atomic_int done;
	atomic_int errors;
	atomic_long acquires;
	atomic_long max_seen;
};

static void *cc_writer(void *arg)
{
	struct cc *c = arg;
	struct ev evs[CC_BATCH];
	char dids[CC_BATCH][16], iids[CC_BATCH][16];
	int b, j;

	for (b = 0; b < CC_BATCHES; b++) {
		struct wres w;

		for (j = 0; j < CC_BATCH; j++) {
			int k = b * CC_BATCH + j;

			snprintf(dids[j], sizeof dids[j], "u%d", k % 13);
			snprintf(iids[j], sizeof iids[j], "c%d", k);
			/* batch b goes to day b/6: a new shard every 6 batches */
			evs[j].t = T0 + (int64_t)(b / 6) * DAY_MS + (int64_t)(k % 6) * 1000 + k;
			evs[j].name = "tick";
			evs[j].did = k % 11 == 0 ? "" : dids[j];
			evs[j].iid = iids[j];
			evs[j].props = j % 5 == 0 ? "{'plan':'pro','j':1}" : "{'plan':'free','j':2}";
		}
		w = write_events(c->f->sp, evs, CC_BATCH);
		if (w.rc != MP_OK || w.n_new != CC_BATCH) {
			fprintf(stderr, "cc_writer: batch %d: rc %d new %zu (%s)\n", b, (int)w.rc, w.n_new, w.err);
			atomic_fetch_add(&c->errors, 1);
		}
		/* and one duplicate of the batch's first event */
		w = write_events(c->f->sp, evs, 1);
		if (w.rc != MP_OK || w.n_dup != 1)
			atomic_fetch_add(&c->errors, 1);
	}
	atomic_store(&c->done, 1);
	return NULL;
}

static void *cc_reader(void *arg)
{
	struct cc *c = arg;
	struct expr *pro = NULL, *j2 = NULL;
	struct cs_view *held = NULL;
	size_t last = 0;
	char err[128];
	int after_done = 0, iter;

	static const char pro_src[] = "properties[\"plan\"] == \"pro\"", j_src[] = "properties[\"j\"] + 0";

	if (expr_compile(pro_src, strlen(pro_src), &pro, err, sizeof err, NULL) != MP_OK ||
	    expr_compile(j_src, strlen(j_src), &j2, err, sizeof err, NULL) != MP_OK) {
		atomic_fetch_add(&c->errors, 1);
		expr_free(pro);
		return NULL;
	}
	for (iter = 0; after_done < 2; iter++) {
		struct cs_view *v = NULL;
		struct cs_eval ce;
		size_t i, n_pro = 0;
		double sum = 0;

		if (atomic_load(&c->done))
			after_done++;
		if (colstore_acquire(c->f->cs, &v) != MP_OK || !v) {
			fprintf(stderr, "cc_reader: acquire failed\n");
			atomic_fetch_add(&c->errors, 1);
			break;
		}
		atomic_fetch_add(&c->acquires, 1);
		if (v->n < last || v->n % CC_BATCH != 0 || !layout_ok(v, __LINE__, 1)) {
			fprintf(stderr, "cc_reader: view of %zu events after one of %zu\n", v->n, last);
			atomic_fetch_add(&c->errors, 1);
		}
		last = v->n;
		cs_eval_init(&ce, v);
		for (i = 0; i < v->n; i++) {
			struct expr_value x;

			ce.i = i;
			if (expr_eval_where(pro, cs_eval_lookup, &ce) == 1)
				n_pro++;
			if (expr_eval(j2, cs_eval_lookup, &ce, &x) != MP_OK || x.type != EXPR_NUMBER)
				atomic_fetch_add(&c->errors, 1);
			else
				sum += x.u.n;
		}
		/* 5 of every 25 are "pro" (j = 1), the others j = 2 */
		if (n_pro * CC_BATCH != v->n * 5 || sum != (double)(v->n / CC_BATCH) * (5 + 20 * 2)) {
			fprintf(stderr, "cc_reader: %zu pro, sum %g in %zu events\n", n_pro, sum, v->n);
			atomic_fetch_add(&c->errors, 1);
		}
		{
			long m = atomic_load(&c->max_seen);

			while ((long)v->n > m && !atomic_compare_exchange_weak(&c->max_seen, &m, (long)v->n))
				;
		}
		/* every other round: keep this view across the next acquire */
		if (iter % 2 == 0) {
			colstore_release(held);
			held = v;
		} else {
			if (held && !layout_ok(held, __LINE__, 1))
				atomic_fetch_add(&c->errors, 1);
			colstore_release(v);
		}
	}
	colstore_release(held);
	expr_free(pro);
	expr_free(j2);
	return NULL;
}

static void concurrent_readers_and_writer(void)
{
	struct fx f;
	struct cc c;
	pthread_t rd[CC_READERS], wr;
	struct cs_view *v;
	int i, n_rd = 0, w_ok = 0;

	if (fx_open(&f, "day") != 0) {
		fx_close(&f);
		return;
	}
	memset(&c, 0, sizeof c);
	c.f = &f;
	atomic_init(&c.done, 0);
	atomic_init(&c.errors, 0);
	atomic_init(&c.acquires, 0);
	atomic_init(&c.max_seen, 0);
	for (i = 0; i < CC_READERS; i++)
		if (pthread_create(&rd[i], NULL, cc_reader, &c) == 0)
			n_rd++;
	CHECK_INT(n_rd, CC_READERS);
	if (pthread_create(&wr, NULL, cc_writer, &c) == 0)
		w_ok = 1;
	else
		atomic_store(&c.done, 1);
	CHECK(w_ok);
	if (w_ok)
		pthread_join(wr, NULL);
	for (i = 0; i < n_rd; i++)
		pthread_join(rd[i], NULL);
	CHECK_INT(atomic_load(&c.errors), 0);
	CHECK(atomic_load(&c.acquires) >= 2 * CC_READERS);
	CHECK_INT(atomic_load(&c.max_seen), CC_BATCH * CC_BATCHES);
	CHECK_INT(count_shards(&f), (CC_BATCHES + 5) / 6);
	if ((v = ACQUIRE(f.cs))) {
		CHECK_INT(v->n, CC_BATCH * CC_BATCHES);
		CHECK_INT(v->n_users, 13);
		LAYOUT_OK(v);
		colstore_release(v);
	}
	fx_close(&f);
}

int main(void)
{
	log_set_level(LOG_ERROR);
	TEST_RUN(empty_store_gives_an_empty_view);
	TEST_RUN(projection_opened_before_writes_sees_them);
	TEST_RUN(day_shards_layout_strings_and_values);
	TEST_RUN(month_shards_layout_strings_and_values);
	TEST_RUN(two_projections_agree);
	TEST_RUN(dedup_counts_once_and_replacement_shows_in_next_view);
	TEST_RUN(views_are_current_and_held_views_unchanged);
	TEST_RUN(reads_both_events_and_stage);
	TEST_RUN(many_property_names_and_same_millisecond);
	TEST_RUN(changed_shard_period_keeps_time_order);
	TEST_RUN(concurrent_readers_and_writer);
	return TEST_DONE();
}
