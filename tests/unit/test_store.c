/*
 * test_store.c - unit tests for src/store.c (contract: include/store.h;
 * dedup and export rules: ../shared/spec/mixpanel-http-api.md §7.4, §13).
 *
 * Each test opens a store on a fresh temporary data_dir (mkdtemp under
 * /tmp, removed afterwards) with a configuration parsed from text, writes
 * batches with store_write(), and checks what comes back through the
 * export and profile readers.  Export lines are parsed with cJSON; one
 * line per test is also compared byte for byte.
 * Times are around T0 = 2024-03-15T10:00:00.123Z.
 */
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "config.h"
#include "log.h"
#include "store.h"
#include "store_fixture.h"
#include "testlib.h"

#define T0 INT64_C(1710496800123)
#define RECV INT64_C(1710496805123)
#define DAY_MS INT64_C(86400000)
#define ALL_FROM INT64_C(0)
#define ALL_TO INT64_C(253402300800000) /* 10000-01-01 */

/* ---------- fixture: temp data_dir, config, open store ---------- */


static int fx_open(struct store_fx *f, const char *period)
{
	return store_fx_open(f, period, "store");
}

static int fx_reopen(struct store_fx *f)
{
	return store_fx_reopen(f, NULL);
}

static void fx_close(struct store_fx *f)
{
	store_fx_close(f);
}

static int file_exists(const struct store_fx *f, const char *name)
{
	char path[256];
	struct stat sb;

	snprintf(path, sizeof path, "%s/data/p/%s", f->dir, name);
	return stat(path, &sb) == 0;
}

/* Rows in the shard's dict table, and how many distinct strings they hold. */
static void dict_counts(const struct store_fx *f, const char *shard, long *rows, long *distinct)
{
	char path[256];
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;

	*rows = *distinct = -1;
	snprintf(path, sizeof path, "%s/data/p/%s", f->dir, shard);
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, "SELECT count(*), count(DISTINCT s) FROM dict", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW) {
		*rows = sqlite3_column_int64(st, 0);
		*distinct = sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
}

/* ---------- writing ---------- */

static void wrote_at(struct wres w, enum mp_err rc, size_t n_new, size_t n_dup, int line)
{
	if (w.rc != rc || w.n_new != n_new || w.n_dup != n_dup) {
		fprintf(stderr, "%s:%d: write gave rc %d new %zu dup %zu (%s); want rc %d new %zu dup %zu\n", __FILE__,
			line, (int)w.rc, w.n_new, w.n_dup, w.err, (int)rc, n_new, n_dup);
		tl_cur_failed = 1;
	}
}
#define WRITE(sp, recv, rc, n_new, n_dup, ...) do { const struct ev e_[] = { __VA_ARGS__ }; \
	wrote_at(store_fx_write((sp), e_, sizeof e_ / sizeof *e_, (recv)), (rc), (n_new), (n_dup), __LINE__); } while (0)

/* One update (UPDATE_SQ) applied at RECV_MS; returns the batch rc. */
static enum mp_err write_update(struct store_project *sp, enum profile_kind kind, const char *did, const char *gk,
				const char *gid, const char *update_sq, int64_t recv_ms, struct profile_outcome *out)
{
	struct store_update u;
	struct store_batch b;
	cJSON *upd = J(update_sq);
	enum mp_err rc;

	memset(&u, 0, sizeof u);
	u.kind = kind;
	u.distinct_id = did;
	u.group_key = gk;
	u.group_id = gid;
	u.update = upd;
	memset(&b, 0, sizeof b);
	b.updates = &u;
	b.n_updates = 1;
	b.recv_ms = recv_ms;
	rc = store_write(sp, &b);
	if (out)
		*out = u.out;
	cJSON_Delete(upd);
	return rc;
}

/* ---------- reading ---------- */

/* Export as a JSON array of the parsed lines; NULL (test failed) on any
 * error or malformed line.  RAW, when given, receives the text. */
static cJSON *export_at(struct store_project *sp, int64_t from, int64_t to, const char *const *names, size_t n_names,
			size_t limit, int time_in_ms, char **raw, int line)
{
	struct store_export *ex = NULL;
	struct buf out;
	cJSON *arr;
	int r;
	size_t start = 0;

	if (store_export_open(sp, from, to, names, n_names, limit, time_in_ms, NULL, &ex) != MP_OK) {
		fprintf(stderr, "%s:%d: store_export_open failed\n", __FILE__, line);
		tl_cur_failed = 1;
		return NULL;
	}
	buf_init(&out, (size_t)1 << 30);
	arr = cJSON_CreateArray();
	while ((r = store_export_next(ex, &out)) == 1) {
		char *nl = memchr(out.data + start, '\n', out.len - start);
		cJSON *v;

		if (!nl || nl != out.data + out.len - 1) {
			fprintf(stderr, "%s:%d: export line is not one line\n", __FILE__, line);
			tl_cur_failed = 1;
			break;
		}
		v = cJSON_ParseWithLength(out.data + start, out.len - start);
		if (!v) {
			fprintf(stderr, "%s:%d: export line does not parse: %s", __FILE__, line, out.data + start);
			tl_cur_failed = 1;
			break;
		}
		cJSON_AddItemToArray(arr, v);
		start = out.len;
	}
	if (r < 0) {
		fprintf(stderr, "%s:%d: store_export_next failed: %d\n", __FILE__, line, r);
		tl_cur_failed = 1;
	}
	store_export_close(ex);
	if (raw)
		*raw = buf_take(&out, NULL);
	buf_free(&out);
	return arr;
}
#define EXPORT(sp, from, to, names, n_names, limit, ms) \
	export_at((sp), (from), (to), (names), (n_names), (limit), (ms), NULL, __LINE__)
#define EXPORT_ALL(sp) EXPORT((sp), ALL_FROM, ALL_TO, NULL, 0, 0, 1)

static const cJSON *line_props(const cJSON *arr, int i)
{
	return cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(arr, i), "properties");
}

static const char *line_str(const cJSON *arr, int i, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(line_props(arr, i), key);

	if (strcmp(key, "event") == 0)
		v = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(arr, i), "event");
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double line_num(const cJSON *arr, int i, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(line_props(arr, i), key);

	return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* Compare the sequence of a string property (or "event") over all lines
 * with WANT (NULL-terminated). */
static void seq_is_at(const cJSON *arr, const char *key, const char *const *want, int line)
{
	int n = cJSON_GetArraySize(arr), i;
	int ok = 1;

	for (i = 0; want[i]; i++)
		if (i >= n || !line_str(arr, i, key) || strcmp(line_str(arr, i, key), want[i]) != 0)
			ok = 0;
	if (i != n)
		ok = 0;
	if (!ok) {
		fprintf(stderr, "%s:%d: export sequence of '%s':", __FILE__, line, key);
		for (i = 0; i < n; i++)
			fprintf(stderr, " %s", line_str(arr, i, key) ? line_str(arr, i, key) : "(none)");
		fprintf(stderr, "\n  want:");
		for (i = 0; want[i]; i++)
			fprintf(stderr, " %s", want[i]);
		fprintf(stderr, "\n");
		tl_cur_failed = 1;
	}
}
#define SEQ_IS(arr, key, ...) do { static const char *const w_[] = { __VA_ARGS__, NULL }; \
	seq_is_at((arr), (key), w_, __LINE__); } while (0)

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Like SEQ_IS, in any order: WANT must be sorted. */
static void set_is_at(const cJSON *arr, const char *key, const char *const *want, int line)
{
	int n = cJSON_GetArraySize(arr), i;
	const char **got = calloc((size_t)n + 1, sizeof *got);
	cJSON *sorted = cJSON_CreateArray();

	for (i = 0; i < n; i++)
		got[i] = line_str(arr, i, key) ? line_str(arr, i, key) : "(none)";
	qsort(got, (size_t)n, sizeof *got, cmp_str);
	for (i = 0; i < n; i++) {
		cJSON *line = cJSON_CreateObject(), *p = cJSON_AddObjectToObject(line, "properties");

		cJSON_AddStringToObject(p, key, got[i]);
		cJSON_AddItemToArray(sorted, line);
	}
	seq_is_at(sorted, key, want, line);
	cJSON_Delete(sorted);
	free(got);
}
#define SET_IS(arr, key, ...) do { static const char *const w_[] = { __VA_ARGS__, NULL }; \
	set_is_at((arr), (key), w_, __LINE__); } while (0)

static void profile_is_at(struct store_project *sp, enum profile_kind kind, const char *did, const char *gk,
			  const char *gid, const char *want_sq, int line)
{
	char *got = store_profile_get(sp, kind, did, gk, gid);
	cJSON *g = got ? cJSON_Parse(got) : NULL, *w = want_sq ? J(want_sq) : NULL;

	if (want_sq ? !cJSON_Compare(g, w, 1) : got != NULL) {
		fprintf(stderr, "%s:%d: profile is %s\n  want %s\n", __FILE__, line, got ? got : "(none)",
			want_sq ? want_sq : "(none)");
		tl_cur_failed = 1;
	}
	free(got);
	cJSON_Delete(g);
	cJSON_Delete(w);
}
#define USER_IS(sp, did, want) profile_is_at((sp), PROFILE_USER, (did), NULL, NULL, (want), __LINE__)
#define GROUP_IS(sp, gk, gid, want) profile_is_at((sp), PROFILE_GROUP, NULL, (gk), (gid), (want), __LINE__)

/* ---------- writes and counts ---------- */

static void write_counts_new_events_and_the_project_total(void)
{
	struct store_fx f;
	cJSON *arr;

	if (fx_open(&f, "month") != 0)
		goto out;
	CHECK_INT(store_event_count(f.sp), 0);
	WRITE(f.sp, RECV, MP_OK, 3, 0,
	      { T0, "a", "u1", "i1", NULL }, { T0 + 1, "b", "u1", "i2", NULL }, { T0 + 2, "c", "u2", NULL, NULL });
	CHECK_INT(store_event_count(f.sp), 3);
	arr = EXPORT_ALL(f.sp);
	CHECK_INT(cJSON_GetArraySize(arr), 3);
	SEQ_IS(arr, "event", "a", "b", "c");
	cJSON_Delete(arr);
	CHECK(file_exists(&f, "events-2024-03.db"));
	CHECK(file_exists(&f, "meta.db"));
	CHECK(file_exists(&f, "LOCK"));
out:
	fx_close(&f);
}

static void empty_batch_and_empty_project_are_fine(void)
{
	struct store_fx f;
	cJSON *arr;
	struct store_batch b;

	if (fx_open(&f, "month") != 0)
		goto out;
	memset(&b, 0, sizeof b);
	b.recv_ms = RECV;
	CHECK_INT(store_write(f.sp, &b), MP_OK);
	CHECK_INT(b.n_new, 0);
	arr = EXPORT_ALL(f.sp);
	CHECK_INT(cJSON_GetArraySize(arr), 0);
	cJSON_Delete(arr);
	CHECK_INT(store_event_count(f.sp), 0);
	{
		struct config_project other = f.cfg->projects[0];

		CHECK(store_project_get(f.st, &other) == NULL);
	}
out:
	fx_close(&f);
}

/* ---------- dedup ---------- */

static void duplicate_key_counts_as_dup_and_export_shows_the_last_copy(void)
{
	struct store_fx f;
	char *raw = NULL;
	cJSON *arr;

	if (fx_open(&f, "month") != 0)
		goto out;
	WRITE(f.sp, RECV, MP_OK, 1, 0, { T0, "e", "u1", "iid-1", "{'v':1,'a':'first'}" });
	WRITE(f.sp, RECV + 1000, MP_OK, 0, 1, { T0, "e", "u1", "iid-1", "{'v':2,'b':'second'}" });
	CHECK_INT(store_event_count(f.sp), 1);
	arr = export_at(f.sp, ALL_FROM, ALL_TO, NULL, 0, 0, 0, &raw, __LINE__);
	CHECK_INT(cJSON_GetArraySize(arr), 1);
	CHECK_STR(raw, "{\"event\":\"e\",\"properties\":{\"time\":1710496800,\"distinct_id\":\"u1\",\"v\":2,"
		       "\"b\":\"second\",\"$insert_id\":\"iid-1\",\"mp_processing_time_ms\":1710496806123}}\n");
	cJSON_Delete(arr);
	free(raw);
out:
	fx_close(&f);
}

static void same_insert_id_with_other_time_name_or_distinct_id_is_a_new_event(void)
{
	struct store_fx f;
	cJSON *arr;

	if (fx_open(&f, "month") != 0)
		goto out;
	WRITE(f.sp, RECV, MP_OK, 4, 0,
	      { T0, "e", "u1", "x", "{'k':'base'}" }, { T0 + 1, "e", "u1", "x", "{'k':'time'}" },
	      { T0, "f", "u1", "x", "{'k':'name'}" }, { T0, "e", "u2", "x", "{'k':'did'}" });
	WRITE(f.sp, RECV, MP_OK, 1, 0, { T0, "e", "u1", "y", "{'k':'iid'}" });
	WRITE(f.sp, RECV, MP_OK, 0, 1, { T0, "e", "u1", "x", "{'k':'base2'}" });
	CHECK_INT(store_event_count(f.sp), 5);
	arr = EXPORT_ALL(f.sp);
	SET_IS(arr, "k", "base2", "did", "iid", "name", "time");
	cJSON_Delete(arr);
out:
	fx_close(&f);
}

static void events_without_insert_id_never_dedup(void)
{
	struct store_fx f;
	cJSON *arr;

	if (fx_open(&f, "month") != 0)
		goto out;
	WRITE(f.sp, RECV, MP_OK, 2, 0, { T0, "e", "u1", NULL, "{'v':1}" }, { T0, "e", "u1", NULL, "{'v':1}" });
	WRITE(f.sp, RECV, MP_OK, 2, 0, { T0, "e", "u1", NULL, "{'v':1}" }, { T0, "e", "u1", NULL, "{'v':1}" });
	CHECK_INT(store_event_count(f.sp), 4);
	arr = EXPORT_ALL(f.sp);
	CHECK_INT(cJSON_GetArraySize(arr), 4);
	if (cJSON_GetArraySize(arr) == 4) {
		int i, j;

		for (i = 0; i < 4; i++)
			for (j = i + 1; j < 4; j++)
				CHECK(strcmp(line_str(arr, i, "$insert_id"), line_str(arr, j, "$insert_id")) != 0);
	}
	cJSON_Delete(arr);
out:
	fx_close(&f);
}

static void duplicates_within_one_batch_keep_the_last_copy(void)
{
	struct store_fx f;
	cJSON *arr;

	if (fx_open(&f, "month") != 0)
		goto out;
	WRITE(f.sp, RECV, MP_OK, 2, 1,
	      { T0, "e", "u1", "k", "{'v':'one'}" }, { T0 + 1, "e", "u1", "other", "{'v':'other'}" },
	      { T0, "e", "u1", "k", "{'v':'three'}" });
	CHECK_INT(store_event_count(f.sp), 2);
	arr = EXPORT_ALL(f.sp);
	SEQ_IS(arr, "v", "three", "other");
	SEQ_IS(arr, "$insert_id", "k", "other");
	cJSON_Delete(arr);
out:
	fx_close(&f);
}

static void dedup_and_event_count_survive_a_restart(void)
{
	struct store_fx f;
	cJSON *arr;

	if (fx_open(&f, "month") != 0)
		goto out;
	WRITE(f.sp, RECV, MP_OK, 3, 0,
	      { T0, "e", "u1", "a", "{'v':1}" }, { T0 - 40 * DAY_MS, "e", "u1", "b", "{'v':1}" },
	      { T0 + 5, "e", "u1", NULL, "{'v':1}" });
	if (fx_reopen(&f) != 0)
		goto out;
	CHECK_INT(store_event_count(f.sp), 3);
	WRITE(f.sp, RECV, MP_OK, 0, 2, { T0 - 40 * DAY_MS, "e", "u1", "b", "{'v':2}" }, { T0, "e", "u1", "a", "{'v':2}" });
	WRITE(f.sp, RECV, MP_OK, 1, 0, { T0 + 1, "e", "u1", "c", "{'v':2}" });
	CHECK_INT(store_event_count(f.sp), 4);
	if (fx_reopen(&f) != 0)
		goto out;
	CHECK_INT(store_event_count(f.sp), 4);
	WRITE(f.sp, RECV, MP_OK, 0, 1, { T0 + 1, "e", "u1", "c", "{'v':3}" });
	arr = EXPORT_ALL(f.sp);
	CHECK_INT(cJSON_GetArraySize(arr), 4);
	CHECK_STR(line_str(arr, 0, "$insert_id"), "b");
	CHECK_STR(line_str(arr, 1, "$insert_id"), "a");
	CHECK_STR(line_str(arr, 2, "$insert_id"), "c");
	CHECK(line_num(arr, 0, "v") == 2 && line_num(arr, 1, "v") == 2);
	CHECK(line_num(arr, 2, "v") == 3 && line_num(arr, 3, "v") == 1);
	cJSON_Delete(arr);
out:
	fx_close(&f);
}

/* ---------- export ---------- */

static void export_is_in_time_order_across_month_shards(void)
{
	struct store_fx f;
	cJSON *arr;
	const int64_t dec = INT64_C(1702000000000), jan = INT64_C(1705000000000), feb = INT64_C(1708000000000);

	if (fx_open(&f, "month") != 0)
		goto out;
	WRITE(f.sp, RECV, MP_OK, 3, 0, { T0, "mar", "u", NULL, NULL }, { jan, "jan", "u", NULL, NULL },
	      { feb, "feb", "u", NULL, NULL });
	WRITE(f.sp, RECV, MP_OK, 2, 0, { feb + 1, "feb-later", "u", NULL, NULL }, { dec, "dec", "u", NULL, NULL });
	WRITE(f.sp, RECV, MP_OK, 1, 0, { feb - 1, "feb-earlier", "u", NULL, NULL });
	arr = EXPORT_ALL(f.sp);
	SEQ_IS(arr, "event", "dec", "jan", "feb-earlier", "feb", "feb-later", "mar");
	cJSON_Delete(arr);
	CHECK(file_exists(&f, "events-2023-12.db"));
	CHECK(file_exists(&f, "events-2024-01.db"));
	CHECK(file_exists(&f, "events-2024-02.db"));
	CHECK(file_exists(&f, "events-2024-03.db"));
out:
	fx_close(&f);
}

/* store.h: ascending by time; events of one millisecond in no particular
 * order.  Twenty events share one millisecond (two batches, with and
 * without $insert_id) and sit between two others: all twenty come out
 * once each, between the earlier and the later event. */
static void export_keeps_every_event_of_one_ms_between_its_neighbours(void)
{
	static const char *const iids[10] = { "q", "w", "e", "r", "t", "y", "u", "i", "o", "p" };
	struct store_fx f;
	struct ev evs[10];
	char names[20][16];
	int seen[20] = { 0 };
	cJSON *arr;
	int i, n;

	if (fx_open(&f, "month") != 0)
		goto out;
	for (i = 0; i < 20; i++)
		snprintf(names[i], sizeof names[i], "%02d", i);
	for (i = 0; i < 10; i++) {
		evs[i].t = T0;
		evs[i].name = names[i];
		evs[i].did = "u";
		evs[i].iid = NULL;
		evs[i].props = NULL;
	}
	wrote_at(store_fx_write(f.sp, evs, 10, RECV), MP_OK, 10, 0, __LINE__);
	for (i = 0; i < 10; i++) {
		evs[i].name = names[10 + i];
		evs[i].iid = iids[i];
	}
	wrote_at(store_fx_write(f.sp, evs, 10, RECV), MP_OK, 10, 0, __LINE__);
	WRITE(f.sp, RECV, MP_OK, 2, 0, { T0 + 1, "later", "u", NULL, NULL }, { T0 - 1, "earlier", "u", NULL, NULL });
	arr = EXPORT_ALL(f.sp);
	n = cJSON_GetArraySize(arr);
	CHECK_INT(n, 22);
	CHECK_STR(line_str(arr, 0, "event"), "earlier");
	CHECK_STR(line_str(arr, n - 1, "event"), "later");
	for (i = 1; i < n - 1; i++) {
		const char *e = line_str(arr, i, "event");
		int k = e ? (int)strtol(e, NULL, 10) : -1;

		CHECK(e && k >= 0 && k < 20);
		if (e && k >= 0 && k < 20)
			seen[k]++;
	}
	for (i = 0; i < 20; i++)
		CHECK_INT(seen[i], 1);
	cJSON_Delete(arr);
out:
	fx_close(&f);
}

static void export_is_in_time_order_across_day_shards(void)
{
	struct store_fx f;
	cJSON *arr;

	if (fx_open(&f, "day") != 0)
		goto out;
	WRITE(f.sp, RECV, MP_OK, 4, 0, { T0 + DAY_MS, "d16", "u", NULL, NULL }, { T0 - DAY_MS, "d14", "u", NULL, NULL },
	      { T0, "d15", "u", NULL, NULL }, { T0 - 10 * 3600000, "d15-early", "u", NULL, NULL });
	arr = EXPORT_ALL(f.sp);
	SEQ_IS(arr, "event", "d14", "d15-early", "d15", "d16");
	cJSON_Delete(arr);
	CHECK(file_exists(&f, "events-2024-03-14.db"));
	CHECK(file_exists(&f, "events-2024-03-15.db"));
	CHECK(file_exists(&f, "events-2024-03-16.db"));
	CHECK(!file_exists(&f, "events-2024-03.db"));
	/* a day range picks only its shard */
	arr = EXPORT(f.sp, INT64_C(1710460800000), INT64_C(1710547200000), NULL, 0, 0, 1);
	SEQ_IS(arr, "event", "d15-early", "d15");
	cJSON_Delete(arr);
out:
	fx_close(&f);
}

static void export_from_is_inclusive_and_to_is_exclusive_at_the_ms(void)
{
	struct store_fx f;
	cJSON *arr;
	const int64_t T = INT64_C(1709251200000); /* 2024-03-01T00:00:00Z, a shard boundary */

	if (fx_open(&f, "month") != 0)
		goto out;
	WRITE(f.sp, RECV, MP_OK, 4, 0, { T - 1, "before", "u", NULL, NULL }, { T, "at", "u", NULL, NULL },
	      { T + 999, "in", "u", NULL, NULL }, { T + 1000, "after", "u", NULL, NULL });
	arr = EXPORT(f.sp, T, T + 1000, NULL, 0, 0, 1);
	SEQ_IS(arr, "event", "at", "in");
	cJSON_Delete(arr);
	arr = EXPORT(f.sp, T - 1, T, NULL, 0, 0, 1);
	SEQ_IS(arr, "event", "before");
	cJSON_Delete(arr);
	arr = EXPORT(f.sp, T - 1, T + 1001, NULL, 0, 0, 1);
	SEQ_IS(arr, "event", "before", "at", "in", "after");
	cJSON_Delete(arr);
	arr = EXPORT(f.sp, T + 1001, ALL_TO, NULL, 0, 0, 1);
	CHECK_INT(cJSON_GetArraySize(arr), 0);
	cJSON_Delete(arr);
	arr = EXPORT(f.sp, T, T, NULL, 0, 0, 1);
	CHECK_INT(cJSON_GetArraySize(arr), 0);
	cJSON_Delete(arr);
out:
	fx_close(&f);
}

static void export_filters_by_event_name(void)
{
	static const char *const ac[] = { "A", "C" }, *const none[] = { "nope" }, *const quoted[] = { "x\"y'z" };
	struct store_fx f;
	cJSON *arr;

	if (fx_open(&f, "month") != 0)
		goto out;
	WRITE(f.sp, RECV, MP_OK, 5, 0, { T0, "A", "u", NULL, NULL }, { T0 + 1, "B", "u", NULL, NULL },
	      { T0 + 2, "C", "u", NULL, NULL }, { T0 - 40 * DAY_MS, "A", "u", NULL, NULL },
	      { T0 + 3, "x\"y'z", "u", NULL, NULL });
	arr = EXPORT(f.sp, ALL_FROM, ALL_TO, ac, 2, 0, 1);
	SEQ_IS(arr, "event", "A", "A", "C");
	cJSON_Delete(arr);
	arr = EXPORT(f.sp, ALL_FROM, ALL_TO, none, 1, 0, 1);
	CHECK_INT(cJSON_GetArraySize(arr), 0);
	cJSON_Delete(arr);
	arr = EXPORT(f.sp, ALL_FROM, ALL_TO, quoted, 1, 0, 1);
	SEQ_IS(arr, "event", "x\"y'z");
	cJSON_Delete(arr);
out:
	fx_close(&f);
}

static void export_limit_stops_after_n_lines_across_shards(void)
{
	struct store_fx f;
	cJSON *arr;

	if (fx_open(&f, "month") != 0)
		goto out;
	WRITE(f.sp, RECV, MP_OK, 5, 0, { T0 - 40 * DAY_MS, "1", "u", NULL, NULL }, { T0 - 39 * DAY_MS, "2", "u", NULL, NULL },
	      { T0, "3", "u", NULL, NULL }, { T0 + 1, "4", "u", NULL, NULL }, { T0 + 2, "5", "u", NULL, NULL });
	arr = EXPORT(f.sp, ALL_FROM, ALL_TO, NULL, 0, 3, 1);
	SEQ_IS(arr, "event", "1", "2", "3");
	cJSON_Delete(arr);
	arr = EXPORT(f.sp, ALL_FROM, ALL_TO, NULL, 0, 1, 1);
	SEQ_IS(arr, "event", "1");
	cJSON_Delete(arr);
	arr = EXPORT(f.sp, ALL_FROM, ALL_TO, NULL, 0, 0, 1);
	CHECK_INT(cJSON_GetArraySize(arr), 5);
	cJSON_Delete(arr);
out:
	fx_close(&f);
}

static void export_time_is_seconds_unless_time_in_ms(void)
{
	struct store_fx f;
	cJSON *arr;
	char *raw = NULL;

	if (fx_open(&f, "month") != 0)
		goto out;
	WRITE(f.sp, RECV, MP_OK, 1, 0, { T0 + 876, "e", "", "i", NULL });
	arr = export_at(f.sp, ALL_FROM, ALL_TO, NULL, 0, 0, 1, &raw, __LINE__);
	CHECK_STR(raw, "{\"event\":\"e\",\"properties\":{\"time\":1710496800999,\"distinct_id\":\"\","
		       "\"$insert_id\":\"i\",\"mp_processing_time_ms\":1710496805123}}\n");
	cJSON_Delete(arr);
	free(raw);
	arr = EXPORT(f.sp, ALL_FROM, ALL_TO, NULL, 0, 0, 0);
	CHECK(line_num(arr, 0, "time") == 1710496800.0);
	cJSON_Delete(arr);
out:
	fx_close(&f);
}

/* A generated $insert_id: at least 16 lowercase hex digits (the exact
 * format is not part of the contract). */
static int is_generated_id(const char *s)
{
	size_t i;

	if (!s || strlen(s) < 16 || strlen(s) > 36)
		return 0;
	for (i = 0; s[i]; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

static void generated_insert_id_is_stable_across_exports_and_restarts(void)
{
	struct store_fx f;
	cJSON *a1, *a2, *a3;

	if (fx_open(&f, "month") != 0)
		goto out;
	WRITE(f.sp, RECV, MP_OK, 3, 0, { T0, "e", "u", NULL, NULL }, { T0, "e", "u", NULL, NULL },
	      { T0 + 5, "e", "u", "client-id", NULL });
	a1 = EXPORT_ALL(f.sp);
	a2 = EXPORT_ALL(f.sp);
	CHECK(is_generated_id(line_str(a1, 0, "$insert_id")));
	CHECK(is_generated_id(line_str(a1, 1, "$insert_id")));
	CHECK_STR(line_str(a1, 2, "$insert_id"), "client-id");
	CHECK(cJSON_Compare(a1, a2, 1));
	if (fx_reopen(&f) == 0) {
		WRITE(f.sp, RECV, MP_OK, 1, 0, { T0 - 1, "e", "u", NULL, NULL });
		a3 = EXPORT_ALL(f.sp);
		CHECK_INT(cJSON_GetArraySize(a3), 4);
		CHECK_STR(line_str(a3, 1, "$insert_id"), line_str(a1, 0, "$insert_id"));
		CHECK_STR(line_str(a3, 2, "$insert_id"), line_str(a1, 1, "$insert_id"));
		CHECK(is_generated_id(line_str(a3, 0, "$insert_id")));
		CHECK(strcmp(line_str(a3, 0, "$insert_id"), line_str(a1, 0, "$insert_id")) != 0);
		cJSON_Delete(a3);
	}
	cJSON_Delete(a1);
	cJSON_Delete(a2);
out:
	fx_close(&f);
}

static void property_values_round_trip_exactly(void)
{
	static const char props_sq[] =
		"{'n':null,'t':true,'f':false,'zero':0,'neg':-42,"
		"'max':9007199254740991,'nmax':-9007199254740991,'big':1e300,'tenth':0.1,'frac':-2.5e-7,"
		"'two53':9007199254740992,'empty':'','short':'dict me',"
		"'long':'this string is longer than sixty-four bytes so it is stored inline in the record',"
		"'quote':'say \\'hi\\' \\\\ \\n\\t\\u0001','utf8':'caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80',"
		"'list':[1,'a',[true,null],{'x':{'y':[0.5]}}],'obj':{'k':'v','e':{},'l':[]},"
		"'k\\'ey \xc3\xa9':'key with escapes'}";
	struct store_fx f;
	cJSON *arr, *sent = NULL, *want = NULL, *got = NULL;

	if (fx_open(&f, "month") != 0)
		goto out;
	WRITE(f.sp, RECV, MP_OK, 1, 0, { T0, "name \"q\" \xc3\xa9", "did \\ \xe6\x97\xa5", "iid-rt", props_sq });
	arr = EXPORT_ALL(f.sp);
	CHECK_STR(line_str(arr, 0, "event"), "name \"q\" \xc3\xa9");
	CHECK_STR(line_str(arr, 0, "distinct_id"), "did \\ \xe6\x97\xa5");
	CHECK(line_num(arr, 0, "time") == (double)T0);
	CHECK(line_num(arr, 0, "mp_processing_time_ms") == (double)RECV);
	/* what was sent, plus $insert_id (write_events adds it like ingest) */
	sent = J(props_sq);
	want = cJSON_Duplicate(sent, 1);
	cJSON_AddStringToObject(want, "$insert_id", "iid-rt");
	got = cJSON_Duplicate(line_props(arr, 0), 1);
	cJSON_DeleteItemFromObjectCaseSensitive(got, "time");
	cJSON_DeleteItemFromObjectCaseSensitive(got, "distinct_id");
	cJSON_DeleteItemFromObjectCaseSensitive(got, "mp_processing_time_ms");
	if (!cJSON_Compare(got, want, 1)) {
		char *a = cJSON_PrintUnformatted(got), *b = cJSON_PrintUnformatted(want);

		fprintf(stderr, "  got:  %s\n  want: %s\n", a, b);
		free(a);
		free(b);
		tl_cur_failed = 1;
	}
	/* exact doubles, not cJSON_Compare's tolerance */
	CHECK(line_num(arr, 0, "tenth") == 0.1);
	CHECK(line_num(arr, 0, "frac") == -2.5e-7);
	CHECK(line_num(arr, 0, "max") == 9007199254740991.0);
	CHECK(line_num(arr, 0, "big") == 1e300);
	cJSON_Delete(arr);
	cJSON_Delete(sent);
	cJSON_Delete(want);
	cJSON_Delete(got);
out:
	fx_close(&f);
}

/* 4000 keyed events and 1000 anonymous ones in one millisecond: with 2^20
 * slots per ms some keys find their slot taken (birthday bound, ~8 expected
 * collisions), so dedup must also find copies stored past their home slot.
 * Re-sending every keyed event must then replace each, never add one. */
static void many_events_in_one_ms_all_dedup_on_resend(void)
{
	enum { N_KEYED = 4000, N_ANON = 1000 };
	struct store_fx f;
	struct ev *evs = calloc(N_KEYED + N_ANON, sizeof *evs);
	char (*iids)[16] = calloc(N_KEYED, sizeof *iids);
	cJSON *arr;

	if (fx_open(&f, "month") != 0)
		goto out;
	for (int i = 0; i < N_KEYED + N_ANON; i++) {
		evs[i].t = T0;
		evs[i].name = "e";
		evs[i].did = "u";
		if (i < N_KEYED) {
			snprintf(iids[i], sizeof iids[i], "k%d", i);
			evs[i].iid = iids[i];
		}
		evs[i].props = "{'copy':1}";
	}
	/* interleave: anonymous events take random slots between keyed ones */
	wrote_at(store_fx_write(f.sp, evs + N_KEYED, N_ANON / 2, RECV), MP_OK, N_ANON / 2, 0, __LINE__);
	wrote_at(store_fx_write(f.sp, evs, N_KEYED, RECV), MP_OK, N_KEYED, 0, __LINE__);
	wrote_at(store_fx_write(f.sp, evs + N_KEYED + N_ANON / 2, N_ANON / 2, RECV), MP_OK, N_ANON / 2, 0, __LINE__);
	for (int i = 0; i < N_KEYED; i++)
		evs[i].props = "{'copy':2}";
	wrote_at(store_fx_write(f.sp, evs, N_KEYED, RECV), MP_OK, 0, N_KEYED, __LINE__);
	CHECK_INT(store_event_count(f.sp), N_KEYED + N_ANON);
	if (fx_reopen(&f) == 0)
		wrote_at(store_fx_write(f.sp, evs, N_KEYED, RECV), MP_OK, 0, N_KEYED, __LINE__);
	arr = EXPORT_ALL(f.sp);
	CHECK_INT(cJSON_GetArraySize(arr), N_KEYED + N_ANON);
	{
		int n2 = 0, i;

		for (i = 0; i < cJSON_GetArraySize(arr); i++)
			n2 += line_num(arr, i, "copy") == 2;
		CHECK_INT(n2, N_KEYED);
	}
	cJSON_Delete(arr);
out:
	free(evs);
	free(iids);
	fx_close(&f);
}

/* ---------- profiles ---------- */

static void user_profile_set_add_unset_and_delete(void)
{
	struct store_fx f;
	struct profile_outcome out;

	if (fx_open(&f, "month") != 0)
		goto out;
	USER_IS(f.sp, "u1", NULL);
	CHECK_INT(write_update(f.sp, PROFILE_USER, "u1", NULL, NULL,
			       "{'$token':'tok1','$distinct_id':'u1','$set':{'a':1,'b':'x','l':[1]}}", T0, &out), MP_OK);
	CHECK_INT(out.n_ops, 1);
	CHECK_INT(out.n_errors, 0);
	USER_IS(f.sp, "u1", "{'a':1,'b':'x','l':[1],'$last_seen':'2024-03-15T10:00:00'}");
	CHECK_INT(write_update(f.sp, PROFILE_USER, "u1", NULL, NULL,
			       "{'$token':'tok1','$distinct_id':'u1','$add':{'a':2,'c':-1.5},'$unset':['b']}",
			       T0 + DAY_MS, &out), MP_OK);
	USER_IS(f.sp, "u1", "{'a':3,'c':-1.5,'l':[1],'$last_seen':'2024-03-16T10:00:00'}");
	CHECK_INT(write_update(f.sp, PROFILE_USER, "u1", NULL, NULL,
			       "{'$distinct_id':'u1','$set':{'d':true},'$ignore_time':true}", T0 + 2 * DAY_MS, &out),
		  MP_OK);
	USER_IS(f.sp, "u1", "{'a':3,'c':-1.5,'l':[1],'d':true,'$last_seen':'2024-03-16T10:00:00'}");
	USER_IS(f.sp, "u2", NULL);
	CHECK_INT(write_update(f.sp, PROFILE_USER, "u1", NULL, NULL, "{'$distinct_id':'u1','$delete':''}", T0, &out),
		  MP_OK);
	CHECK_INT(out.deleted, 1);
	USER_IS(f.sp, "u1", NULL);
	/* profiles survive a restart */
	CHECK_INT(write_update(f.sp, PROFILE_USER, "u3", NULL, NULL, "{'$set_once':{'s':'once'}}", T0, NULL), MP_OK);
	if (fx_reopen(&f) == 0)
		USER_IS(f.sp, "u3", "{'s':'once','$last_seen':'2024-03-15T10:00:00'}");
out:
	fx_close(&f);
}

static void group_profile_is_keyed_by_group_key_and_id(void)
{
	struct store_fx f;
	struct profile_outcome out;

	if (fx_open(&f, "month") != 0)
		goto out;
	CHECK_INT(write_update(f.sp, PROFILE_GROUP, NULL, "company", "acme",
			       "{'$group_key':'company','$group_id':'acme','$set':{'name':'Acme'},'$union':{'tags':['a']}}",
			       T0, &out), MP_OK);
	GROUP_IS(f.sp, "company", "acme", "{'name':'Acme','tags':['a'],'$last_seen':'2024-03-15T10:00:00'}");
	GROUP_IS(f.sp, "company", "other", NULL);
	GROUP_IS(f.sp, "team", "acme", NULL);
	USER_IS(f.sp, "acme", NULL);
	/* $append is refused for groups; the rest of the update applies */
	CHECK_INT(write_update(f.sp, PROFILE_GROUP, NULL, "company", "acme",
			       "{'$append':{'l':1},'$set':{'plan':'pro'},'$ignore_time':1}", T0 + DAY_MS, &out), MP_OK);
	CHECK_INT(out.n_errors, 1);
	GROUP_IS(f.sp, "company", "acme", "{'name':'Acme','tags':['a'],'plan':'pro','$last_seen':'2024-03-15T10:00:00'}");
	CHECK_INT(write_update(f.sp, PROFILE_GROUP, NULL, "company", "acme", "{'$delete':null}", T0, &out), MP_OK);
	GROUP_IS(f.sp, "company", "acme", NULL);
out:
	fx_close(&f);
}

static void events_and_updates_in_one_batch_are_both_committed(void)
{
	struct store_fx f;
	struct store_event e;
	struct store_update u;
	struct store_batch b;
	cJSON *props = J("{'v':1}"), *upd = J("{'$set':{'x':1}}"), *arr;

	if (fx_open(&f, "month") != 0)
		goto out;
	memset(&e, 0, sizeof e);
	e.time_ms = T0;
	e.name = "e";
	e.distinct_id = "u1";
	e.props = props;
	memset(&u, 0, sizeof u);
	u.kind = PROFILE_USER;
	u.distinct_id = "u1";
	u.update = upd;
	memset(&b, 0, sizeof b);
	b.events = &e;
	b.n_events = 1;
	b.updates = &u;
	b.n_updates = 1;
	b.recv_ms = T0;
	CHECK_INT(store_write(f.sp, &b), MP_OK);
	CHECK_INT(b.n_new, 1);
	USER_IS(f.sp, "u1", "{'x':1,'$last_seen':'2024-03-15T10:00:00'}");
	arr = EXPORT_ALL(f.sp);
	CHECK_INT(cJSON_GetArraySize(arr), 1);
	cJSON_Delete(arr);
out:
	cJSON_Delete(props);
	cJSON_Delete(upd);
	fx_close(&f);
}

/* ---------- failures ---------- */

static void second_open_of_the_same_data_dir_fails_on_the_lock(void)
{
	struct store_fx f;
	struct store *st2 = NULL;
	char err[512] = "";
	enum mp_err rc;

	if (fx_open(&f, "month") != 0)
		goto out;
	rc = store_open(f.cfg, &st2, err, sizeof err);
	CHECK(rc != MP_OK);
	CHECK_INT(rc, MP_E_IO);
	CHECK(st2 == NULL);
	CHECK(strstr(err, "in use by another mixpaneld process") != NULL);
	CHECK(strstr(err, f.dir) != NULL);
	if (rc == MP_OK)
		store_close(st2);
	/* the first store still works, and the lock goes with it */
	WRITE(f.sp, RECV, MP_OK, 1, 0, { T0, "e", "u", NULL, NULL });
	store_close(f.st);
	f.st = NULL;
	st2 = NULL;
	rc = store_open(f.cfg, &st2, err, sizeof err);
	CHECK_INT(rc, MP_OK);
	if (rc == MP_OK) {
		CHECK_INT(store_event_count(store_project_get(st2, &f.cfg->projects[0])), 1);
		store_close(st2);
	}
out:
	fx_close(&f);
}

/* PROPS whose property "deep" nests 40 arrays: the codec refuses it. */
static cJSON *too_deep_props(void)
{
	cJSON *p = cJSON_CreateObject(), *v = cJSON_CreateArray();
	int i;

	for (i = 0; i < 40; i++) {
		cJSON *outer = cJSON_CreateArray();

		cJSON_AddItemToArray(outer, v);
		v = outer;
	}
	cJSON_AddItemToObject(p, "deep", v);
	return p;
}

static void failing_batch_is_rolled_back_alone(void)
{
	struct store_fx f;
	struct store_event e[2];
	struct store_batch b;
	cJSON *good = J("{'v':'bad-batch'}"), *bad = too_deep_props(), *arr;

	if (fx_open(&f, "month") != 0)
		goto out;
	WRITE(f.sp, RECV, MP_OK, 2, 0, { T0, "e", "u", "1", "{'v':'one'}" }, { T0 + 1, "e", "u", "2", "{'v':'two'}" });
	memset(e, 0, sizeof e);
	e[0].time_ms = T0 + 2;
	e[0].name = "e";
	e[0].distinct_id = "u";
	e[0].props = good;
	e[1] = e[0];
	e[1].props = bad;
	memset(&b, 0, sizeof b);
	b.events = e;
	b.n_events = 2;
	b.recv_ms = RECV;
	CHECK(store_write(f.sp, &b) != MP_OK);
	CHECK_INT(b.rc, MP_E_INVALID);
	CHECK_STR(b.err, "invalid record");
	CHECK_INT(b.n_new, 0);
	CHECK_INT(store_event_count(f.sp), 2);
	WRITE(f.sp, RECV, MP_OK, 1, 0, { T0 + 3, "e", "u", "3", "{'v':'three'}" });
	WRITE(f.sp, RECV, MP_OK, 0, 1, { T0, "e", "u", "1", "{'v':'one again'}" });
	CHECK_INT(store_event_count(f.sp), 3);
	arr = EXPORT_ALL(f.sp);
	SEQ_IS(arr, "v", "one again", "two", "three");
	cJSON_Delete(arr);
out:
	cJSON_Delete(good);
	cJSON_Delete(bad);
	fx_close(&f);
}

struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
};

static void count_done(struct store_batch *b, void *arg)
{
	struct waiter *w = arg;

	(void)b;
	pthread_mutex_lock(&w->mu);
	w->done++;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static void queued_batches_fail_alone_and_done_is_called_once_each(void)
{
	struct store_fx f;
	struct store_event e[3];
	struct store_batch b[3];
	struct waiter w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
	cJSON *p0 = J("{'v':0}"), *p2 = J("{'v':2}"), *bad = too_deep_props(), *arr;
	int i;

	if (fx_open(&f, "month") != 0)
		goto out;
	memset(e, 0, sizeof e);
	memset(b, 0, sizeof b);
	for (i = 0; i < 3; i++) {
		e[i].time_ms = T0 + i;
		e[i].name = "e";
		e[i].distinct_id = "u";
		e[i].props = i == 0 ? p0 : i == 1 ? bad : p2;
		b[i].events = &e[i];
		b[i].n_events = 1;
		b[i].recv_ms = RECV;
		b[i].done = count_done;
		b[i].arg = &w;
	}
	for (i = 0; i < 3; i++)
		CHECK_INT(store_submit(f.sp, &b[i]), MP_OK);
	pthread_mutex_lock(&w.mu);
	while (w.done < 3)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	CHECK_INT(b[0].rc, MP_OK);
	CHECK_INT(b[0].n_new, 1);
	CHECK_INT(b[1].rc, MP_E_INVALID);
	CHECK_INT(b[2].rc, MP_OK);
	CHECK_INT(b[2].n_new, 1);
	CHECK_INT(store_event_count(f.sp), 2);
	arr = EXPORT_ALL(f.sp);
	CHECK_INT(cJSON_GetArraySize(arr), 2);
	cJSON_Delete(arr);
	store_close(f.st);
	f.st = NULL;
	CHECK_INT(w.done, 3);
out:
	cJSON_Delete(p0);
	cJSON_Delete(p2);
	cJSON_Delete(bad);
	fx_close(&f);
}

/* A valid /import batch may hold events of many days (or months); the
 * store must take it in one go, not fail it for touching more shards than
 * it keeps open (STORE_MAX_OPEN_SHARDS). */
static void batch_spanning_30_day_shards_is_stored(void)
{
	struct store_fx f;
	struct ev evs[30];
	struct wres w;
	char names[30][16];
	int i;

	if (fx_open(&f, "day") != 0)
		goto out;
	for (i = 0; i < 30; i++) {
		snprintf(names[i], sizeof names[i], "d%02d", i);
		evs[i].t = T0 - (int64_t)i * DAY_MS;
		evs[i].name = names[i];
		evs[i].did = "u";
		evs[i].iid = NULL;
		evs[i].props = NULL;
	}
	w = store_fx_write(f.sp, evs, 30, RECV);
	wrote_at(w, MP_OK, 30, 0, __LINE__);
	CHECK_INT(store_event_count(f.sp), 30);
out:
	fx_close(&f);
}

/* The writer creates a shard file (0 bytes, no schema) before its first
 * migration commits; an export running then lists the file.  A shard
 * without events must read as empty, not fail the whole export.  (Found
 * by the concurrent reader in four_writers_commit_every_event_exactly_once,
 * which fails intermittently with -MP_E_STORE; this is its deterministic
 * form.) */
static void export_treats_a_shard_file_without_schema_as_empty(void)
{
	struct store_fx f;
	char path[256];
	FILE *fp;
	cJSON *arr;

	if (fx_open(&f, "month") != 0)
		goto out;
	WRITE(f.sp, RECV, MP_OK, 1, 0, { T0, "e", "u", NULL, NULL });
	snprintf(path, sizeof path, "%s/data/p/events-2024-04.db", f.dir);
	fp = fopen(path, "wb");
	CHECK(fp != NULL);
	if (fp)
		fclose(fp);
	arr = EXPORT_ALL(f.sp);
	CHECK_INT(cJSON_GetArraySize(arr), 1);
	cJSON_Delete(arr);
	/* and the writer can still use that shard */
	WRITE(f.sp, RECV, MP_OK, 1, 0, { T0 + 20 * DAY_MS, "april", "u", NULL, NULL });
	arr = EXPORT_ALL(f.sp);
	SEQ_IS(arr, "event", "e", "april");
	cJSON_Delete(arr);
out:
	fx_close(&f);
}

/* ---------- concurrency ---------- */

#define N_THREADS 4
#define N_BATCHES 200
#define N_PER_BATCH 50
#define N_TOTAL (N_THREADS * N_BATCHES * N_PER_BATCH)

struct writer_arg {
	struct store_project *sp;
	int thread;
	size_t n_new, n_dup;
	int n_fail;
};

static void *writer_main(void *arg)
{
	struct writer_arg *wa = arg;
	struct store_event e[N_PER_BATCH];
	cJSON *props[N_PER_BATCH];
	char iid[N_PER_BATCH][32], did[16];
	int bi, i;

	snprintf(did, sizeof did, "u%d", wa->thread);
	memset(e, 0, sizeof e);
	for (bi = 0; bi < N_BATCHES; bi++) {
		struct store_batch b;

		for (i = 0; i < N_PER_BATCH; i++) {
			int n = (wa->thread * N_BATCHES + bi) * N_PER_BATCH + i;

			props[i] = cJSON_CreateObject();
			cJSON_AddNumberToObject(props[i], "n", n);
			snprintf(iid[i], sizeof iid[i], "t%d-%d-%d", wa->thread, bi, i);
			cJSON_AddStringToObject(props[i], "$insert_id", iid[i]);
			/* spread over ~4 months so several shards are written at once */
			e[i].time_ms = T0 - (int64_t)(n % 120) * DAY_MS + n;
			e[i].name = (n & 1) ? "odd" : "even";
			e[i].distinct_id = did;
			e[i].insert_id = iid[i];
			e[i].props = props[i];
		}
		memset(&b, 0, sizeof b);
		b.events = e;
		b.n_events = N_PER_BATCH;
		b.recv_ms = RECV;
		if (store_write(wa->sp, &b) != MP_OK)
			wa->n_fail++;
		wa->n_new += b.n_new;
		wa->n_dup += b.n_dup;
		for (i = 0; i < N_PER_BATCH; i++)
			cJSON_Delete(props[i]);
	}
	return NULL;
}

struct reader_arg {
	struct store_project *sp;
	atomic_int *stop;
	int n_exports, n_errors;
	long last_count;
};

/* Export repeatedly while the writers run: every export must succeed and
 * see a growing number of events (committed data only). */
static void *reader_main(void *arg)
{
	struct reader_arg *ra = arg;
	struct buf out;

	buf_init(&out, (size_t)1 << 30);
	while (!atomic_load(ra->stop)) {
		struct store_export *ex = NULL;
		long n = 0;
		int r;

		if (store_export_open(ra->sp, ALL_FROM, ALL_TO, NULL, 0, 0, 1, NULL, &ex) != MP_OK) {
			ra->n_errors++;
			break;
		}
		while ((r = store_export_next(ex, &out)) == 1) {
			n++;
			buf_reset(&out);
		}
		store_export_close(ex);
		if (r < 0) {
			fprintf(stderr, "  concurrent export failed: %d after %ld lines\n", r, n);
			ra->n_errors++;
		}
		if (n < ra->last_count)
			ra->n_errors++;
		ra->last_count = n;
		ra->n_exports++;
		usleep(20000);
	}
	buf_free(&out);
	return NULL;
}

static void four_writers_commit_every_event_exactly_once(void)
{
	struct store_fx f;
	pthread_t th[N_THREADS], rd;
	struct writer_arg wa[N_THREADS];
	struct reader_arg ra;
	atomic_int stop = 0;
	size_t n_new = 0, n_dup = 0;
	int i, n_fail = 0, n, bad_order = 0;
	unsigned char *seen;
	cJSON *arr, *line;
	double last_t = -1;

	if (fx_open(&f, "month") != 0)
		goto out;
	memset(&ra, 0, sizeof ra);
	ra.sp = f.sp;
	ra.stop = &stop;
	CHECK_INT(pthread_create(&rd, NULL, reader_main, &ra), 0);
	for (i = 0; i < N_THREADS; i++) {
		memset(&wa[i], 0, sizeof wa[i]);
		wa[i].sp = f.sp;
		wa[i].thread = i;
		CHECK_INT(pthread_create(&th[i], NULL, writer_main, &wa[i]), 0);
	}
	for (i = 0; i < N_THREADS; i++) {
		pthread_join(th[i], NULL);
		n_new += wa[i].n_new;
		n_dup += wa[i].n_dup;
		n_fail += wa[i].n_fail;
	}
	atomic_store(&stop, 1);
	pthread_join(rd, NULL);
	CHECK_INT(n_fail, 0);
	CHECK_INT(n_new, N_TOTAL);
	CHECK_INT(n_dup, 0);
	CHECK_INT(store_event_count(f.sp), N_TOTAL);
	CHECK_INT(ra.n_errors, 0);
	CHECK(ra.n_exports > 0);

	arr = EXPORT_ALL(f.sp);
	n = cJSON_GetArraySize(arr);
	CHECK_INT(n, N_TOTAL);
	seen = calloc(N_TOTAL, 1);
	cJSON_ArrayForEach(line, arr) {
		const cJSON *p = cJSON_GetObjectItemCaseSensitive(line, "properties");
		double k = cJSON_GetObjectItemCaseSensitive(p, "n")->valuedouble;
		double t = cJSON_GetObjectItemCaseSensitive(p, "time")->valuedouble;

		if (k >= 0 && k < N_TOTAL)
			seen[(int)k]++;
		if (t < last_t)
			bad_order++;
		last_t = t;
	}
	for (i = 0; i < N_TOTAL; i++)
		if (seen[i] != 1) {
			fprintf(stderr, "  event n=%d exported %d times\n", i, seen[i]);
			tl_cur_failed = 1;
			break;
		}
	CHECK_INT(bad_order, 0);
	free(seen);
	cJSON_Delete(arr);
	/* and it all survives a restart */
	if (fx_reopen(&f) == 0)
		CHECK_INT(store_event_count(f.sp), N_TOTAL);
out:
	fx_close(&f);
}

/* The dict table has no unique index: the writer's in-memory map keeps each
 * string once, across batches, restarts and a rolled-back batch. */
static void dictionary_holds_each_string_once_across_restarts_and_rollbacks(void)
{
	struct store_fx f;
	long rows, distinct, rows_before;

	if (fx_open(&f, "month") != 0)
		goto out;
	WRITE(f.sp, RECV, MP_OK, 2, 0, { T0, "a", "u1", "i1", NULL }, { T0 + 1, "a", "u2", "i2", NULL });
	WRITE(f.sp, RECV, MP_OK, 1, 0, { T0 + 2, "a", "u1", "i3", NULL });
	if (fx_reopen(&f) != 0)
		goto out;
	WRITE(f.sp, RECV, MP_OK, 2, 0, { T0 + 3, "a", "u2", "i4", NULL }, { T0 + 4, "b", "u3", "i5", NULL });
	dict_counts(&f, "events-2024-03.db", &rows_before, &distinct);
	CHECK_INT(rows_before, distinct);
	/* a batch that fails after interning new strings is rolled back whole */
	WRITE(f.sp, RECV, MP_E_INVALID, 0, 0, { T0 + 5, "c", "u4", "i6", NULL }, { -1, "d", "u5", NULL, NULL });
	WRITE(f.sp, RECV, MP_OK, 1, 0, { T0 + 6, "c", "u4", "i7", NULL });
	if (fx_reopen(&f) != 0)
		goto out;
	dict_counts(&f, "events-2024-03.db", &rows, &distinct);
	CHECK_INT(rows, distinct);
	CHECK_INT(rows, rows_before + 2); /* "c" and "u4" once; "d", "u5" never committed */
out:
	fx_close(&f);
}

/* 1 if the exported lines ARR are in time order; *AGAIN (if not NULL)
 * counts the lines whose properties carry "again": true. */
static int export_in_time_order(const cJSON *arr, int *again)
{
	const cJSON *line;
	long long prev = -1;
	int ordered = 1;

	cJSON_ArrayForEach(line, arr) {
		const cJSON *props = cJSON_GetObjectItemCaseSensitive(line, "properties");
		long long t = (long long)cJSON_GetObjectItemCaseSensitive(props, "time")->valuedouble;

		if (t < prev)
			ordered = 0;
		prev = t;
		if (again)
			*again += cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(props, "again"));
	}
	return ordered;
}

/* Past STORE_STAGE_MAX staged events the stage is merged into `events`:
 * duplicates are still found on both sides of a merge, and export sees
 * every event once, in time order, whichever table holds it.  The batches
 * go newest first, so all but the first are older than `events`' newest
 * row and are staged: one merge, then a few batches staged again. */
static void dedup_and_export_span_the_stage_and_the_merged_table(void)
{
	enum { B = 2000, N = (STORE_STAGE_MAX / B + 4) * B };
	static char iid[N][16];
	struct ev *evs = calloc(B, sizeof *evs);
	struct store_fx f;
	cJSON *arr = NULL;
	int i, k, n;

	if (!evs || fx_open(&f, "month") != 0)
		goto out;
	for (i = 0; i < N; i++)
		snprintf(iid[i], sizeof iid[i], "m%d", i);
	for (k = N / B - 1; k >= 0; k--) {
		for (i = 0; i < B; i++)
			evs[i] = (struct ev){ T0 + (k * B + i) * 7 % (N * 7), "e", "u", iid[k * B + i], NULL };
		wrote_at(store_fx_write(f.sp, evs, B, RECV), MP_OK, B, 0, __LINE__);
	}
	/* the oldest batch (sent last) is staged, the newest one was appended,
	 * the ones between were merged */
	for (i = 0; i < B; i++)
		evs[i] = (struct ev){ T0 + i * 7 % (N * 7), "e", "u", iid[i], "{'again':true}" };
	wrote_at(store_fx_write(f.sp, evs, B, RECV), MP_OK, 0, B, __LINE__);
	for (i = 0; i < B; i++)
		evs[i] = (struct ev){ T0 + (N - B + i) * 7 % (N * 7), "e", "u", iid[N - B + i], "{'again':true}" };
	wrote_at(store_fx_write(f.sp, evs, B, RECV), MP_OK, 0, B, __LINE__);
	for (i = 0; i < B; i++)
		evs[i] = (struct ev){ T0 + (N / 2 + i) * 7 % (N * 7), "e", "u", iid[N / 2 + i], "{'again':true}" };
	wrote_at(store_fx_write(f.sp, evs, B, RECV), MP_OK, 0, B, __LINE__);
	if (fx_reopen(&f) != 0)
		goto out;
	arr = EXPORT_ALL(f.sp);
	n = cJSON_GetArraySize(arr);
	CHECK_INT(n, N);
	CHECK(export_in_time_order(arr, NULL));
	CHECK_INT(store_event_count(f.sp), N);
out:
	cJSON_Delete(arr);
	free(evs);
	fx_close(&f);
}

/* A time-ordered import appends at the right edge of `events` and never
 * stages.  Past STORE_APPENDED_MAX appended ids the writer forgets them
 * and looks them up instead: duplicates are found before that point,
 * after it and in the last appended rows; late events in between go
 * through the stage; export sees each event once, in time order. */
static void ordered_import_appends_and_still_dedups(void)
{
	enum { B = 2000, N = (STORE_APPENDED_MAX / B + 5) * B, LATE = 500 };
	static char iid[N][16], late_iid[LATE][16];
	struct ev *evs = calloc(B, sizeof *evs);
	struct store_fx f;
	cJSON *arr = NULL;
	int i, k, n, again = 0;

	if (!evs || fx_open(&f, "month") != 0)
		goto out;
	for (i = 0; i < N; i++)
		snprintf(iid[i], sizeof iid[i], "o%d", i);
	for (i = 0; i < LATE; i++)
		snprintf(late_iid[i], sizeof late_iid[i], "late%d", i);
	for (k = 0; k < N / B; k++) {
		for (i = 0; i < B; i++)
			evs[i] = (struct ev){ T0 + (long long)(k * B + i) * 3, "e", "u", iid[k * B + i], NULL };
		wrote_at(store_fx_write(f.sp, evs, B, RECV), MP_OK, B, 0, __LINE__);
		if (k == N / B / 2) {
			/* late events, older than everything stored: staged */
			for (i = 0; i < LATE; i++)
				evs[i] = (struct ev){ T0 + (long long)i * 30 + 1, "e", "u", late_iid[i], NULL };
			wrote_at(store_fx_write(f.sp, evs, LATE, RECV), MP_OK, LATE, 0, __LINE__);
		}
	}
	/* resend: the oldest rows, some around the middle, the newest ones */
	for (int from = 0; from < 3; from++) {
		int a = from == 0 ? 0 : from == 1 ? N / 2 - B / 2 : N - B;

		for (i = 0; i < B; i++)
			evs[i] = (struct ev){ T0 + (long long)(a + i) * 3, "e", "u", iid[a + i], "{'again':true}" };
		wrote_at(store_fx_write(f.sp, evs, B, RECV), MP_OK, 0, B, __LINE__);
	}
	for (i = 0; i < LATE; i++)
		evs[i] = (struct ev){ T0 + (long long)i * 30 + 1, "e", "u", late_iid[i], "{'again':true}" };
	wrote_at(store_fx_write(f.sp, evs, LATE, RECV), MP_OK, 0, LATE, __LINE__);
	CHECK_INT(store_event_count(f.sp), N + LATE);
	if (fx_reopen(&f) != 0)
		goto out;
	/* after a restart the same copies are still found */
	wrote_at(store_fx_write(f.sp, evs, LATE, RECV), MP_OK, 0, LATE, __LINE__);
	arr = EXPORT_ALL(f.sp);
	n = cJSON_GetArraySize(arr);
	CHECK_INT(n, N + LATE);
	CHECK(export_in_time_order(arr, &again));
	CHECK_INT(again, 3 * B + LATE);
	CHECK_INT(store_event_count(f.sp), N + LATE);
out:
	cJSON_Delete(arr);
	free(evs);
	fx_close(&f);
}

/* A backfill behind newer rows, in time order (invariant 7: slot lookups
 * remember the gap up to the next stored row).  Rows A are stored first,
 * then one newer event, and the store is reopened; then backfills C
 * (between A's rows, some in the same ms as an A row) and D (past A, more
 * than a stage's worth, so a merge happens in the middle), each sent twice:
 * every copy is found. */
static void backfill_behind_newer_rows_still_dedups(void)
{
	enum { NA = 2000, NC = 2000, ND = STORE_STAGE_MAX + 2000, B = 2000 };
	static char iid_a[NA][16], iid_c[NC][16], iid_d[ND][16];
	struct ev *evs = calloc(B, sizeof *evs);
	struct store_fx f;
	cJSON *arr = NULL;
	int i, k, n, again = 0, pass;

	if (!evs || fx_open(&f, "month") != 0)
		goto out;
	for (i = 0; i < NA; i++) {
		snprintf(iid_a[i], sizeof iid_a[i], "a%d", i);
		evs[i] = (struct ev){ T0 + (long long)i * 20, "e", "u", iid_a[i], NULL };
	}
	wrote_at(store_fx_write(f.sp, evs, NA, RECV), MP_OK, NA, 0, __LINE__);
	WRITE(f.sp, RECV, MP_OK, 1, 0, { T0 + 100000000, "e", "u", "newest", NULL });
	/* reopened, the writer knows only the largest id: ids below it take
	 * lookups (or a remembered gap), not the appended map */
	if (fx_reopen(&f) != 0)
		goto out;
	for (pass = 0; pass < 2; pass++) {
		const char *props = pass ? "{'again':true}" : NULL;

		/* C: odd ones between A's rows, even ones in the ms of an A row */
		for (i = 0; i < NC; i++) {
			snprintf(iid_c[i], sizeof iid_c[i], "c%d", i);
			evs[i] = (struct ev){ T0 + (long long)i * 20 + (i % 2 ? 10 : 0), "e", "u", iid_c[i], props };
		}
		wrote_at(store_fx_write(f.sp, evs, NC, RECV), MP_OK, pass ? 0 : NC, pass ? NC : 0, __LINE__);
		if (!pass) {
			/* a gap ends at the next stored row: A's rows above it are found */
			WRITE(f.sp, RECV, MP_OK, 1, 0, { T0 + 5, "e", "u", "between", NULL });
			for (i = 0; i < NA; i++)
				evs[i] = (struct ev){ T0 + (long long)i * 20, "e", "u", iid_a[i], NULL };
			wrote_at(store_fx_write(f.sp, evs, NA, RECV), MP_OK, 0, NA, __LINE__);
		}
		for (k = 0; k < ND; k += B) {
			int m = ND - k < B ? ND - k : B;

			for (i = 0; i < m; i++) {
				snprintf(iid_d[k + i], sizeof iid_d[k + i], "d%d", k + i);
				evs[i] = (struct ev){ T0 + NA * 20 + (long long)(k + i) * 3, "e", "u", iid_d[k + i], props };
			}
			wrote_at(store_fx_write(f.sp, evs, m, RECV), MP_OK, pass ? 0 : m, pass ? m : 0, __LINE__);
		}
	}
	CHECK_INT(store_event_count(f.sp), NA + 2 + NC + ND);
	if (fx_reopen(&f) != 0)
		goto out;
	for (i = 0; i < B; i++)
		evs[i] = (struct ev){ T0 + NA * 20 + (long long)i * 3, "e", "u", iid_d[i], "{'again':true}" };
	wrote_at(store_fx_write(f.sp, evs, B, RECV), MP_OK, 0, B, __LINE__);
	arr = EXPORT_ALL(f.sp);
	n = cJSON_GetArraySize(arr);
	CHECK_INT(n, NA + 2 + NC + ND);
	CHECK(export_in_time_order(arr, &again));
	CHECK_INT(again, NC + ND);
out:
	cJSON_Delete(arr);
	free(evs);
	fx_close(&f);
}

int main(void)
{
	log_set_level(LOG_WARN);
	TEST_RUN(write_counts_new_events_and_the_project_total);
	TEST_RUN(empty_batch_and_empty_project_are_fine);
	TEST_RUN(duplicate_key_counts_as_dup_and_export_shows_the_last_copy);
	TEST_RUN(same_insert_id_with_other_time_name_or_distinct_id_is_a_new_event);
	TEST_RUN(events_without_insert_id_never_dedup);
	TEST_RUN(duplicates_within_one_batch_keep_the_last_copy);
	TEST_RUN(dedup_and_event_count_survive_a_restart);
	TEST_RUN(export_is_in_time_order_across_month_shards);
	TEST_RUN(export_keeps_every_event_of_one_ms_between_its_neighbours);
	TEST_RUN(dictionary_holds_each_string_once_across_restarts_and_rollbacks);
	TEST_RUN(dedup_and_export_span_the_stage_and_the_merged_table);
	TEST_RUN(ordered_import_appends_and_still_dedups);
	TEST_RUN(backfill_behind_newer_rows_still_dedups);
	TEST_RUN(export_is_in_time_order_across_day_shards);
	TEST_RUN(export_from_is_inclusive_and_to_is_exclusive_at_the_ms);
	TEST_RUN(export_filters_by_event_name);
	TEST_RUN(export_limit_stops_after_n_lines_across_shards);
	TEST_RUN(export_time_is_seconds_unless_time_in_ms);
	TEST_RUN(generated_insert_id_is_stable_across_exports_and_restarts);
	TEST_RUN(property_values_round_trip_exactly);
	TEST_RUN(many_events_in_one_ms_all_dedup_on_resend);
	TEST_RUN(user_profile_set_add_unset_and_delete);
	TEST_RUN(group_profile_is_keyed_by_group_key_and_id);
	TEST_RUN(events_and_updates_in_one_batch_are_both_committed);
	TEST_RUN(second_open_of_the_same_data_dir_fails_on_the_lock);
	TEST_RUN(failing_batch_is_rolled_back_alone);
	TEST_RUN(queued_batches_fail_alone_and_done_is_called_once_each);
	TEST_RUN(batch_spanning_30_day_shards_is_stored);
	TEST_RUN(export_treats_a_shard_file_without_schema_as_empty);
	TEST_RUN(four_writers_commit_every_event_exactly_once);
	return TEST_DONE();
}
