/*
 * test_ingest.c - unit tests for src/ingest.c (contract: include/ingest.h,
 * rules: ../shared/spec/mixpanel-http-api.md §6.1-§6.4 and §7).
 *
 * Records are written as JSON with ' for " (see J()) and run through
 * ingest_prepare() with a configuration parsed from CFG_TEXT.  Every run
 * checks the result invariants (n_valid + n_failures == n_records; the
 * batch holds n_valid - n_ignored items) before the test looks at details.
 * Times are relative to NOW, 2024-03-15T10:00:00.123Z.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "ingest.h"
#include "testlib.h"

#define NOW INT64_C(1710496800123)
#define DAY_MS INT64_C(86400000)
#define HOUR_MS INT64_C(3600000)

static const char CFG_TEXT[] =
	"[server]\n"
	"track_max_age_days = 5\n"
	"max_events_per_request = 10\n"
	"[project.p]\nid = 1\ntoken = tok1\napi_secret = s1\n"
	"[project.q]\nid = 2\ntoken = tok2\napi_secret = s2\n";

static struct config *cfg;

static struct ingest_opts opts_for(enum ingest_endpoint ep, int strict)
{
	struct ingest_opts o;

	memset(&o, 0, sizeof o);
	o.endpoint = ep;
	o.cfg = cfg;
	o.project = ep == INGEST_IMPORT ? &cfg->projects[0] : NULL;
	o.strict = strict;
	o.now_ms = NOW;
	return o;
}

/* Check the invariants of a result that ingest_prepare() returned MP_OK for. */
static void check_invariants_at(const struct ingest_result *r, enum ingest_endpoint ep, int line)
{
	size_t in_batch = ep == INGEST_TRACK || ep == INGEST_IMPORT ? r->batch.n_events : r->batch.n_updates;

	if (r->n_valid + r->n_failures != r->n_records || in_batch + r->n_ignored != r->n_valid ||
	    (r->n_failures && strcmp(r->first_error, r->failures[0].message) != 0) ||
	    (!r->n_failures && r->first_error[0])) {
		fprintf(stderr, "%s:%d: invariant broken: records %zu valid %zu failures %zu ignored %zu batch %zu "
			"first_error '%s'\n", __FILE__, line, r->n_records, r->n_valid, r->n_failures, r->n_ignored,
			in_batch, r->first_error);
		tl_cur_failed = 1;
	}
}

/* Run ingest_prepare on RECORDS (ownership passes) and check invariants. */
static enum mp_err run_at(cJSON *records, const struct ingest_opts *o, struct ingest_result *r, int line)
{
	enum mp_err rc = ingest_prepare(records, o, r);

	if (rc == MP_OK)
		check_invariants_at(r, o->endpoint, line);
	return rc;
}
#define RUN(records, o, r) run_at((records), (o), (r), __LINE__)

/* One endpoint, one JSON text. */
static enum mp_err prep_at(const char *sq, enum ingest_endpoint ep, int strict, struct ingest_result *r, int line)
{
	struct ingest_opts o = opts_for(ep, strict);

	return run_at(J(sq), &o, r, line);
}
#define PREP(sq, ep, strict, r) prep_at((sq), (ep), (strict), (r), __LINE__)

/* One track event with PROPS_SQ inside properties (token added). */
static enum mp_err track1_at(const char *props_sq, struct ingest_result *r, int line)
{
	char text[4096];

	snprintf(text, sizeof text, "[{'event':'e','properties':{'token':'tok1'%s%s}}]",
		 props_sq[0] ? "," : "", props_sq);
	return prep_at(text, INGEST_TRACK, 0, r, line);
}
#define TRACK1(props_sq, r) track1_at((props_sq), (r), __LINE__)

/* One import event (strict or not) with PROPS_SQ inside properties. */
static enum mp_err import1_at(const char *props_sq, int strict, struct ingest_result *r, int line)
{
	char text[4096];

	snprintf(text, sizeof text, "[{'event':'e','properties':{%s}}]", props_sq);
	return prep_at(text, INGEST_IMPORT, strict, r, line);
}
#define IMPORT1(props_sq, strict, r) import1_at((props_sq), (strict), (r), __LINE__)

/* Expect exactly one record, failed with FIELD and MESSAGE. */
static void one_failure_at(const struct ingest_result *r, const char *field, const char *message, int line)
{
	if (r->n_records != 1 || r->n_failures != 1 || r->n_valid != 0 || strcmp(r->failures[0].field, field) != 0 ||
	    strcmp(r->failures[0].message, message) != 0 || r->failures[0].index != 0) {
		fprintf(stderr, "%s:%d: want one failure %s: \"%s\"\n  got %zu failures%s%s%s%s\n", __FILE__, line,
			field, message, r->n_failures, r->n_failures ? ", first: " : "",
			r->n_failures ? r->failures[0].field : "", r->n_failures ? ": " : "",
			r->n_failures ? r->failures[0].message : "");
		tl_cur_failed = 1;
	}
}
#define ONE_FAILURE(r, field, message) one_failure_at((r), (field), (message), __LINE__)

/* Expect exactly one valid stored event and return it (NULL otherwise). */
static const struct store_event *one_event_at(const struct ingest_result *r, int line)
{
	if (r->n_records != 1 || r->n_valid != 1 || r->n_failures != 0 || r->batch.n_events != 1) {
		fprintf(stderr, "%s:%d: want one valid event, got valid %zu failures %zu%s%s\n", __FILE__, line,
			r->n_valid, r->n_failures, r->n_failures ? ": " : "", r->n_failures ? r->failures[0].message : "");
		tl_cur_failed = 1;
		return NULL;
	}
	return &r->batch.events[0];
}
#define ONE_EVENT(r) one_event_at((r), __LINE__)

static const char *prop_str(const struct store_event *e, const char *key)
{
	const cJSON *v = e ? cJSON_GetObjectItemCaseSensitive(e->props, key) : NULL;

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static char *repeat(const char *unit, size_t times, const char *prefix)
{
	size_t ul = strlen(unit), pl = strlen(prefix), i;
	char *s = malloc(pl + ul * times + 1);

	memcpy(s, prefix, pl);
	for (i = 0; i < times; i++)
		memcpy(s + pl + i * ul, unit, ul);
	s[pl + ul * times] = '\0';
	return s;
}

/* ---------- time ---------- */

static void time_in_seconds_becomes_ms(void)
{
	struct ingest_result r;
	const struct store_event *e;

	CHECK_INT(TRACK1("'time':1710496000", &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK(e && e->time_ms == INT64_C(1710496000000));
	ingest_result_free(&r);
}

static void time_fractional_seconds_keep_milliseconds(void)
{
	struct ingest_result r;
	const struct store_event *e;

	CHECK_INT(TRACK1("'time':1710496000.123", &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK(e && e->time_ms == INT64_C(1710496000123));
	ingest_result_free(&r);
}

static void time_at_or_above_1e11_is_milliseconds(void)
{
	struct ingest_result r;
	const struct store_event *e;

	CHECK_INT(TRACK1("'time':1710496000123", &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK(e && e->time_ms == INT64_C(1710496000123));
	ingest_result_free(&r);
}

static void time_numeric_string_is_accepted(void)
{
	struct ingest_result r;
	const struct store_event *e;

	CHECK_INT(TRACK1("'time':'1710496000'", &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK(e && e->time_ms == INT64_C(1710496000000));
	ingest_result_free(&r);
	CHECK_INT(TRACK1("'time':'1710496000.5'", &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK(e && e->time_ms == INT64_C(1710496000500));
	ingest_result_free(&r);
}

static void time_missing_or_null_is_receive_time(void)
{
	struct ingest_result r;
	const struct store_event *e;

	CHECK_INT(TRACK1("", &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK(e && e->time_ms == NOW);
	ingest_result_free(&r);
	CHECK_INT(TRACK1("'time':null", &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK(e && e->time_ms == NOW);
	ingest_result_free(&r);
	CHECK_INT(IMPORT1("'distinct_id':'u'", 0, &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK(e && e->time_ms == NOW);
	ingest_result_free(&r);
}

static void time_that_is_not_a_number_fails(void)
{
	static const char *const bad[] = { "'yesterday'", "''", "'12abc'", "-5", "true", "[1]", "{}", "'inf'" };
	struct ingest_result r;
	size_t i;
	char props[64];

	for (i = 0; i < sizeof bad / sizeof *bad; i++) {
		snprintf(props, sizeof props, "'time':%s", bad[i]);
		CHECK_INT(TRACK1(props, &r), MP_OK);
		ONE_FAILURE(&r, "properties.time",
			    "'properties.time' is invalid: must be specified as seconds since epoch");
		ingest_result_free(&r);
	}
}

static void ingest_time_ms_parses_numbers_and_numeric_strings_only(void)
{
	int64_t t = -1;
	cJSON *v;

	v = cJSON_CreateNumber(1e3);
	CHECK_INT(ingest_time_ms(v, &t), 1);
	CHECK_INT(t, 1000000);
	cJSON_Delete(v);
	v = cJSON_CreateString("1e11");
	CHECK_INT(ingest_time_ms(v, &t), 1);
	CHECK_INT(t, INT64_C(100000000000));
	cJSON_Delete(v);
	v = cJSON_CreateNumber(99999999999.0);  /* just below 1e11: seconds */
	CHECK_INT(ingest_time_ms(v, &t), 1);
	CHECK_INT(t, INT64_C(99999999999000));
	cJSON_Delete(v);
	t = 7;
	v = cJSON_CreateTrue();
	CHECK_INT(ingest_time_ms(v, &t), 0);
	cJSON_Delete(v);
	v = cJSON_CreateString("nan");
	CHECK_INT(ingest_time_ms(v, &t), 0);
	cJSON_Delete(v);
	v = cJSON_CreateNumber(9.3e15);
	CHECK_INT(ingest_time_ms(v, &t), 0);
	cJSON_Delete(v);
	CHECK_INT(ingest_time_ms(NULL, &t), 0);
	CHECK_INT(t, 7);
}

static void track_future_time_becomes_now(void)
{
	struct ingest_result r;
	const struct store_event *e;

	CHECK_INT(TRACK1("'time':1711000000", &r), MP_OK);     /* 5.8 days ahead */
	e = ONE_EVENT(&r);
	CHECK(e && e->time_ms == NOW);
	ingest_result_free(&r);
	CHECK_INT(TRACK1("'time':1710496800124", &r), MP_OK);  /* 1 ms ahead */
	e = ONE_EVENT(&r);
	CHECK(e && e->time_ms == NOW);
	ingest_result_free(&r);
}

static void track_older_than_max_age_fails_and_the_boundary_passes(void)
{
	struct ingest_result r;
	const struct store_event *e;
	char props[64];

	snprintf(props, sizeof props, "'time':%lld", (long long)(NOW - 5 * DAY_MS));
	CHECK_INT(TRACK1(props, &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK(e && e->time_ms == NOW - 5 * DAY_MS);
	ingest_result_free(&r);
	snprintf(props, sizeof props, "'time':%lld", (long long)(NOW - 5 * DAY_MS - 1));
	CHECK_INT(TRACK1(props, &r), MP_OK);
	ONE_FAILURE(&r, "properties.time", "'properties.time' is older than 5 days: send old events to /import");
	ingest_result_free(&r);
	CHECK_INT(TRACK1("'time':1262304000", &r), MP_OK);      /* 2010 */
	ONE_FAILURE(&r, "properties.time", "'properties.time' is older than 5 days: send old events to /import");
	ingest_result_free(&r);
}

static void track_max_age_zero_means_no_age_limit(void)
{
	static const char text[] = "[server]\ntrack_max_age_days = 0\n[project.p]\nid = 1\ntoken = tok1\napi_secret = s\n";
	struct config *c = NULL;
	char err[256];
	struct ingest_opts o;
	struct ingest_result r;
	const struct store_event *e;

	CHECK_INT(config_parse(text, strlen(text), "t.ini", &c, err, sizeof err), MP_OK);
	if (!c)
		return;
	o = opts_for(INGEST_TRACK, 0);
	o.cfg = c;
	CHECK_INT(RUN(J("[{'event':'e','properties':{'token':'tok1','time':978307200}}]"), &o, &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK(e && e->time_ms == INT64_C(978307200000));
	ingest_result_free(&r);
	config_free(c);
}

static void import_accepts_old_events_from_1971_on(void)
{
	struct ingest_result r;
	const struct store_event *e;

	CHECK_INT(IMPORT1("'time':1262304000", 0, &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK(e && e->time_ms == INT64_C(1262304000000));
	ingest_result_free(&r);
	CHECK_INT(IMPORT1("'time':31536000", 0, &r), MP_OK);    /* 1971-01-01T00:00:00Z */
	e = ONE_EVENT(&r);
	CHECK(e && e->time_ms == INT64_C(31536000000));
	ingest_result_free(&r);
}

static void import_before_1971_fails(void)
{
	struct ingest_result r;

	CHECK_INT(IMPORT1("'time':31535999", 0, &r), MP_OK);
	ONE_FAILURE(&r, "properties.time", "'properties.time' is invalid: must be after 1971-01-01");
	ingest_result_free(&r);
	CHECK_INT(IMPORT1("'time':0", 0, &r), MP_OK);
	ONE_FAILURE(&r, "properties.time", "'properties.time' is invalid: must be after 1971-01-01");
	ingest_result_free(&r);
}

static void import_more_than_one_hour_ahead_fails(void)
{
	struct ingest_result r;
	char props[64];

	snprintf(props, sizeof props, "'time':%lld", (long long)(NOW + HOUR_MS + 1));
	CHECK_INT(IMPORT1(props, 0, &r), MP_OK);
	ONE_FAILURE(&r, "properties.time", "'properties.time' is more than 1 hour in the future");
	ingest_result_free(&r);
	CHECK_INT(IMPORT1("'time':1720000000", 1, &r), MP_OK);
	CHECK_INT(r.n_failures, 1);
	ingest_result_free(&r);
}

static void import_up_to_one_hour_ahead_is_clamped_to_now(void)
{
	struct ingest_result r;
	const struct store_event *e;
	char props[64];

	snprintf(props, sizeof props, "'time':%lld", (long long)(NOW + HOUR_MS));
	CHECK_INT(IMPORT1(props, 0, &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK(e && e->time_ms == NOW);
	ingest_result_free(&r);
	snprintf(props, sizeof props, "'time':%lld", (long long)(NOW + HOUR_MS / 2));
	CHECK_INT(IMPORT1(props, 0, &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK(e && e->time_ms == NOW);
	ingest_result_free(&r);
}

/* ---------- distinct_id ---------- */

static void distinct_id_missing_comes_from_user_id(void)
{
	struct ingest_result r;
	const struct store_event *e;

	CHECK_INT(TRACK1("'$user_id':'u1','$device_id':'d1'", &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK_STR(e ? e->distinct_id : NULL, "u1");
	ingest_result_free(&r);
	CHECK_INT(TRACK1("'$user_id':123", &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK_STR(e ? e->distinct_id : NULL, "123");
	ingest_result_free(&r);
}

static void distinct_id_missing_comes_from_device_id_with_prefix(void)
{
	struct ingest_result r;
	const struct store_event *e;

	CHECK_INT(TRACK1("'$device_id':'d1'", &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK_STR(e ? e->distinct_id : NULL, "$device:d1");
	ingest_result_free(&r);
	CHECK_INT(TRACK1("'distinct_id':null,'$user_id':'','$device_id':'d2'", &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK_STR(e ? e->distinct_id : NULL, "$device:d2");
	ingest_result_free(&r);
}

static void distinct_id_missing_with_ip_1_is_a_hash_of_the_client_ip(void)
{
	struct ingest_opts o = opts_for(INGEST_TRACK, 0);
	struct ingest_result r;
	const struct store_event *e;

	o.use_ip = 1;
	o.client_ip = "203.0.113.7";
	/* FNV-1a 64 of "203.0.113.7" */
	CHECK_INT(RUN(J("[{'event':'e','properties':{'token':'tok1'}}]"), &o, &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK_STR(e ? e->distinct_id : NULL, "6de8a80a0ad3bc36");
	ingest_result_free(&r);
	/* an explicit distinct_id wins */
	CHECK_INT(RUN(J("[{'event':'e','properties':{'token':'tok1','distinct_id':'x'}}]"), &o, &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK_STR(e ? e->distinct_id : NULL, "x");
	ingest_result_free(&r);
	/* without a known client address there is nothing to hash */
	o.client_ip = NULL;
	CHECK_INT(RUN(J("[{'event':'e','properties':{'token':'tok1'}}]"), &o, &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK_STR(e ? e->distinct_id : NULL, "");
	ingest_result_free(&r);
}

static void distinct_id_missing_without_ip_1_is_empty(void)
{
	struct ingest_opts o = opts_for(INGEST_TRACK, 0);
	struct ingest_result r;
	const struct store_event *e;

	o.client_ip = "203.0.113.7";
	CHECK_INT(RUN(J("[{'event':'e','properties':{'token':'tok1'}}]"), &o, &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK_STR(e ? e->distinct_id : NULL, "");
	ingest_result_free(&r);
}

static void distinct_id_number_becomes_its_decimal_string(void)
{
	static const char *const in[] = { "42", "-7", "1.5", "0", "1e20" };
	static const char *const want[] = { "42", "-7", "1.5", "0", "1e+20" };
	struct ingest_result r;
	const struct store_event *e;
	char props[64];
	size_t i;

	for (i = 0; i < sizeof in / sizeof *in; i++) {
		snprintf(props, sizeof props, "'distinct_id':%s", in[i]);
		CHECK_INT(TRACK1(props, &r), MP_OK);
		e = ONE_EVENT(&r);
		CHECK_STR(e ? e->distinct_id : NULL, want[i]);
		ingest_result_free(&r);
	}
}

static void distinct_id_of_another_type_or_too_long_fails(void)
{
	struct ingest_result r;
	char *long_id = repeat("x", 256, "'distinct_id':'"), props[400];

	CHECK_INT(TRACK1("'distinct_id':true", &r), MP_OK);
	ONE_FAILURE(&r, "properties.distinct_id", "'properties.distinct_id' must be a string");
	ingest_result_free(&r);
	CHECK_INT(TRACK1("'distinct_id':{'a':1}", &r), MP_OK);
	ONE_FAILURE(&r, "properties.distinct_id", "'properties.distinct_id' must be a string");
	ingest_result_free(&r);
	snprintf(props, sizeof props, "%s'", long_id);
	CHECK_INT(TRACK1(props, &r), MP_OK);
	ONE_FAILURE(&r, "properties.distinct_id", "'properties.distinct_id' is longer than 255 bytes");
	ingest_result_free(&r);
	free(long_id);
}

/* ---------- identity (spec §9.1) ---------- */

static void simplified_identity_prefers_user_id_and_keeps_the_sent_id(void)
{
	struct ingest_result r;
	const struct store_event *e;

	CHECK_INT(TRACK1("'distinct_id':'x','$user_id':'u1','$device_id':'d1'", &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK_STR(e ? e->distinct_id : NULL, "u1");
	CHECK_STR(prop_str(e, "$distinct_id_before_identity"), "x");
	ingest_result_free(&r);
	CHECK_INT(TRACK1("'distinct_id':'anon-1','$device_id':'d1'", &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK_STR(e ? e->distinct_id : NULL, "$device:d1");
	CHECK_STR(prop_str(e, "$distinct_id_before_identity"), "anon-1");
	ingest_result_free(&r);
}

static void simplified_identity_does_not_record_an_unchanged_id(void)
{
	struct ingest_result r;
	const struct store_event *e;

	CHECK_INT(TRACK1("'distinct_id':'$device:d1','$device_id':'d1'", &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK_STR(e ? e->distinct_id : NULL, "$device:d1");
	CHECK(e && !cJSON_GetObjectItemCaseSensitive(e->props, "$distinct_id_before_identity"));
	ingest_result_free(&r);
	CHECK_INT(TRACK1("'distinct_id':'u1','$user_id':'u1'", &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK_STR(e ? e->distinct_id : NULL, "u1");
	CHECK(e && !cJSON_GetObjectItemCaseSensitive(e->props, "$distinct_id_before_identity"));
	ingest_result_free(&r);
	CHECK_INT(TRACK1("'distinct_id':'x'", &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK_STR(e ? e->distinct_id : NULL, "x");
	CHECK(e && !cJSON_GetObjectItemCaseSensitive(e->props, "$distinct_id_before_identity"));
	ingest_result_free(&r);
}

static void original_identity_keeps_the_sent_id_and_only_fills_a_missing_one(void)
{
	static const char text[] = "[project.p]\nid = 1\ntoken = tok1\napi_secret = s\nidentity = original\n";
	struct config *c = NULL;
	char err[256];
	struct ingest_opts o;
	struct ingest_result r;
	const struct store_event *e;

	CHECK_INT(config_parse(text, strlen(text), "t.ini", &c, err, sizeof err), MP_OK);
	if (!c)
		return;
	o = opts_for(INGEST_TRACK, 0);
	o.cfg = c;
	CHECK_INT(RUN(J("[{'event':'e','properties':{'token':'tok1','distinct_id':'x','$user_id':'u1'}}]"), &o, &r),
		  MP_OK);
	e = ONE_EVENT(&r);
	CHECK_STR(e ? e->distinct_id : NULL, "x");
	CHECK(e && !cJSON_GetObjectItemCaseSensitive(e->props, "$distinct_id_before_identity"));
	ingest_result_free(&r);
	CHECK_INT(RUN(J("[{'event':'e','properties':{'token':'tok1','$device_id':'d1'}}]"), &o, &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK_STR(e ? e->distinct_id : NULL, "$device:d1");
	ingest_result_free(&r);
	/* /import reads the identity mode of the authenticated project */
	o = opts_for(INGEST_IMPORT, 0);
	o.cfg = c;
	o.project = &c->projects[0];
	CHECK_INT(RUN(J("[{'event':'e','properties':{'time':1710496000,'distinct_id':'x','$user_id':'u1'}}]"), &o, &r),
		  MP_OK);
	e = ONE_EVENT(&r);
	CHECK_STR(e ? e->distinct_id : NULL, "x");
	ingest_result_free(&r);
	config_free(c);
}

/* ---------- strict import ---------- */

static void strict_import_accepts_a_complete_event(void)
{
	struct ingest_result r;
	const struct store_event *e;

	CHECK_INT(IMPORT1("'time':1710496000,'distinct_id':'u1','$insert_id':'abcdefgh-1234-5678-9012-ABCDEFGHIJKL'", 1, &r),
		  MP_OK);
	e = ONE_EVENT(&r);
	CHECK_STR(e ? e->insert_id : NULL, "abcdefgh-1234-5678-9012-ABCDEFGHIJKL");
	CHECK_STR(e ? e->distinct_id : NULL, "u1");
	CHECK_STR(e ? e->name : NULL, "e");
	ingest_result_free(&r);
	/* an empty distinct_id is allowed */
	CHECK_INT(IMPORT1("'time':1710496000,'distinct_id':'','$insert_id':'a1'", 1, &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK_STR(e ? e->distinct_id : NULL, "");
	ingest_result_free(&r);
}

static void strict_import_requires_insert_id(void)
{
	struct ingest_result r;

	CHECK_INT(IMPORT1("'time':1710496000,'distinct_id':'u1'", 1, &r), MP_OK);
	ONE_FAILURE(&r, "properties.$insert_id", "'properties.$insert_id' is required");
	CHECK(r.n_failures == 1 && r.failures[0].insert_id == NULL);
	ingest_result_free(&r);
}

static void strict_import_rejects_malformed_or_blocked_insert_ids(void)
{
	static const char *const bad[] = {
		"'a_b'", "'abcdefgh-1234-5678-9012-ABCDEFGHIJKLM'" /* 37 */, "''", "'undefined'", "'NULL'",
		"'with space'", "'caf\xc3\xa9'", "'00000000-0000-0000-0000-000000000000'", "'-1'",
	};
	static const char msg[] = "'properties.$insert_id' is invalid: must be 1-36 characters of [A-Za-z0-9-]";
	struct ingest_result r;
	char props[128];
	size_t i;

	for (i = 0; i < sizeof bad / sizeof *bad; i++) {
		cJSON *v;

		snprintf(props, sizeof props, "'time':1710496000,'distinct_id':'u1','$insert_id':%s", bad[i]);
		CHECK_INT(IMPORT1(props, 1, &r), MP_OK);
		ONE_FAILURE(&r, "properties.$insert_id", msg);
		/* the failure echoes the string it rejected */
		v = J(bad[i]);
		if (r.n_failures == 1)
			CHECK_STR(r.failures[0].insert_id, v->valuestring);
		cJSON_Delete(v);
		ingest_result_free(&r);
	}
	CHECK_INT(IMPORT1("'time':1710496000,'distinct_id':'u1','$insert_id':5", 1, &r), MP_OK);
	ONE_FAILURE(&r, "properties.$insert_id", msg);
	CHECK(r.n_failures == 1 && r.failures[0].insert_id == NULL);
	ingest_result_free(&r);
}

static void strict_import_rejects_blocked_distinct_ids_case_insensitively(void)
{
	static const char *const bad[] = {
		"Anonymous", "NULL", "undefined", "N/A", "<nil>", "0", "-1", "TRUE", "[]", "{}",
		"00000000-0000-0000-0000-000000000000",
	};
	struct ingest_result r;
	char props[160], msg[160];
	size_t i;

	for (i = 0; i < sizeof bad / sizeof *bad; i++) {
		snprintf(props, sizeof props, "'time':1710496000,'distinct_id':'%s','$insert_id':'iid-%zu'", bad[i], i);
		snprintf(msg, sizeof msg, "'properties.distinct_id' is invalid: '%s' is a blocked value", bad[i]);
		CHECK_INT(IMPORT1(props, 1, &r), MP_OK);
		ONE_FAILURE(&r, "properties.distinct_id", msg);
		if (r.n_failures == 1) {
			char want_iid[16];

			snprintf(want_iid, sizeof want_iid, "iid-%zu", i);
			CHECK_STR(r.failures[0].insert_id, want_iid);
		}
		ingest_result_free(&r);
	}
	/* not strict: the same values are kept */
	CHECK_INT(IMPORT1("'time':1710496000,'distinct_id':'Anonymous'", 0, &r), MP_OK);
	CHECK(ONE_EVENT(&r) != NULL);
	ingest_result_free(&r);
	CHECK_INT(TRACK1("'distinct_id':'null'", &r), MP_OK);
	CHECK(ONE_EVENT(&r) != NULL);
	ingest_result_free(&r);
}

static void blocked_id_list_matches_exact_values_ignoring_case(void)
{
	CHECK_INT(ingest_blocked_id("anon"), 1);
	CHECK_INT(ingest_blocked_id("ANON"), 1);
	CHECK_INT(ingest_blocked_id("nOnE"), 1);
	CHECK_INT(ingest_blocked_id("na"), 1);
	CHECK_INT(ingest_blocked_id("False"), 1);
	CHECK_INT(ingest_blocked_id("anon1"), 0);
	CHECK_INT(ingest_blocked_id(" anon"), 0);
	CHECK_INT(ingest_blocked_id(""), 0);
	CHECK_INT(ingest_blocked_id("00000000-0000-0000-0000-000000000001"), 0);
}

static void failures_carry_index_insert_id_field_and_message_in_order(void)
{
	struct ingest_result r;

	CHECK_INT(PREP("[{'event':'a','properties':{'time':1710496000,'distinct_id':'u1','$insert_id':'ok-1'}},"
		       "{'event':'b','properties':{'time':'bad','distinct_id':'u1','$insert_id':'bad-event-0002'}},"
		       "{'event':'c','properties':{'time':1710496001,'distinct_id':'u2','$insert_id':'ok-3'}},"
		       "{'event':'d','properties':{'time':1710496002,'distinct_id':'anon','$insert_id':'bad-4'}}]",
		       INGEST_IMPORT, 1, &r), MP_OK);
	CHECK_INT(r.n_records, 4);
	CHECK_INT(r.n_valid, 2);
	CHECK_INT(r.n_failures, 2);
	if (r.n_failures == 2) {
		CHECK_INT(r.failures[0].index, 1);
		CHECK_STR(r.failures[0].insert_id, "bad-event-0002");
		CHECK_STR(r.failures[0].field, "properties.time");
		CHECK_STR(r.failures[0].message, "'properties.time' is invalid: must be specified as seconds since epoch");
		CHECK(r.failures[0].distinct_id == NULL);
		CHECK_INT(r.failures[1].index, 3);
		CHECK_STR(r.failures[1].insert_id, "bad-4");
		CHECK_STR(r.failures[1].field, "properties.distinct_id");
		CHECK_STR(r.first_error, "'properties.time' is invalid: must be specified as seconds since epoch");
	}
	if (r.batch.n_events == 2) {
		CHECK_STR(r.batch.events[0].name, "a");
		CHECK_STR(r.batch.events[0].insert_id, "ok-1");
		CHECK_STR(r.batch.events[1].name, "c");
		CHECK(r.batch.events[1].time_ms == INT64_C(1710496001000));
	}
	CHECK(r.project == &cfg->projects[0]);
	CHECK(r.batch.recv_ms == NOW);
	ingest_result_free(&r);
}

static void non_strict_drops_an_unusable_insert_id(void)
{
	struct ingest_result r;
	const struct store_event *e;

	CHECK_INT(TRACK1("'$insert_id':5", &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK(e && e->insert_id == NULL && !cJSON_GetObjectItemCaseSensitive(e->props, "$insert_id"));
	ingest_result_free(&r);
	CHECK_INT(TRACK1("'$insert_id':''", &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK(e && e->insert_id == NULL && !cJSON_GetObjectItemCaseSensitive(e->props, "$insert_id"));
	ingest_result_free(&r);
	CHECK_INT(TRACK1("'$insert_id':'k3j4h5g6f7d8s9a0'", &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK_STR(e ? e->insert_id : NULL, "k3j4h5g6f7d8s9a0");
	CHECK_STR(prop_str(e, "$insert_id"), "k3j4h5g6f7d8s9a0");
	ingest_result_free(&r);
}

/* ---------- $ignore, tokens, projects ---------- */

static void ignored_event_counts_as_valid_but_is_not_stored(void)
{
	struct ingest_result r;

	CHECK_INT(PREP("[{'event':'a','properties':{'token':'tok1','$ignore':true}},"
		       "{'event':'b','properties':{'token':'tok1','$ignore':false}},"
		       "{'event':'c','properties':{'token':'tok1'}}]", INGEST_TRACK, 0, &r), MP_OK);
	CHECK_INT(r.n_records, 3);
	CHECK_INT(r.n_valid, 3);
	CHECK_INT(r.n_ignored, 2);
	CHECK_INT(r.n_failures, 0);
	CHECK_INT(r.batch.n_events, 1);
	if (r.batch.n_events == 1)
		CHECK_STR(r.batch.events[0].name, "c");
	ingest_result_free(&r);
}

static void track_unknown_or_missing_token_fails(void)
{
	struct ingest_result r;

	CHECK_INT(PREP("[{'event':'e','properties':{'token':'nope'}}]", INGEST_TRACK, 0, &r), MP_OK);
	ONE_FAILURE(&r, "properties.token", "unknown project token");
	CHECK(r.project == NULL);
	ingest_result_free(&r);
	CHECK_INT(PREP("[{'event':'e','properties':{'distinct_id':'u'}}]", INGEST_TRACK, 0, &r), MP_OK);
	ONE_FAILURE(&r, "properties.token", "'properties.token' is missing");
	ingest_result_free(&r);
	CHECK_INT(PREP("[{'event':'e','properties':{'token':''}}]", INGEST_TRACK, 0, &r), MP_OK);
	ONE_FAILURE(&r, "properties.token", "'properties.token' is missing");
	ingest_result_free(&r);
}

static void track_second_project_in_one_request_fails(void)
{
	struct ingest_result r;

	CHECK_INT(PREP("[{'event':'a','properties':{'token':'tok1'}},"
		       "{'event':'b','properties':{'token':'tok2'}},"
		       "{'event':'c','properties':{'token':'tok1'}}]", INGEST_TRACK, 0, &r), MP_OK);
	CHECK(r.project == &cfg->projects[0]);
	CHECK_INT(r.n_valid, 2);
	CHECK_INT(r.n_failures, 1);
	if (r.n_failures == 1) {
		CHECK_INT(r.failures[0].index, 1);
		CHECK_STR(r.failures[0].field, "properties.token");
		CHECK_STR(r.failures[0].message, "records of different projects in one request are not supported");
	}
	ingest_result_free(&r);
}

static void import_uses_the_authenticated_project_and_ignores_token(void)
{
	struct ingest_opts o = opts_for(INGEST_IMPORT, 0);
	struct ingest_result r;

	o.project = &cfg->projects[1];
	CHECK_INT(RUN(J("[{'event':'e','properties':{'token':'nope','time':1710496000}},"
			"{'event':'e','properties':{'token':'tok1','time':1710496000}}]"), &o, &r), MP_OK);
	CHECK_INT(r.n_valid, 2);
	CHECK(r.project == &cfg->projects[1]);
	ingest_result_free(&r);
}

/* ---------- record shape ---------- */

static void record_shape_errors_are_failures(void)
{
	struct ingest_result r;

	CHECK_INT(PREP("[5]", INGEST_TRACK, 0, &r), MP_OK);
	ONE_FAILURE(&r, "event", "record is not a JSON object");
	ingest_result_free(&r);
	CHECK_INT(PREP("[{'properties':{'token':'tok1'}}]", INGEST_TRACK, 0, &r), MP_OK);
	ONE_FAILURE(&r, "event", "'event' must be a non-empty string");
	ingest_result_free(&r);
	CHECK_INT(PREP("[{'event':'','properties':{'token':'tok1'}}]", INGEST_TRACK, 0, &r), MP_OK);
	ONE_FAILURE(&r, "event", "'event' must be a non-empty string");
	ingest_result_free(&r);
	CHECK_INT(PREP("[{'event':'e'}]", INGEST_TRACK, 0, &r), MP_OK);
	ONE_FAILURE(&r, "properties", "'properties' must be a JSON object");
	ingest_result_free(&r);
	CHECK_INT(PREP("[{'event':'e','properties':[1]}]", INGEST_TRACK, 0, &r), MP_OK);
	ONE_FAILURE(&r, "properties", "'properties' must be a JSON object");
	ingest_result_free(&r);
}

static void empty_array_is_ok_with_nothing_to_store(void)
{
	struct ingest_result r;

	CHECK_INT(PREP("[]", INGEST_TRACK, 0, &r), MP_OK);
	CHECK_INT(r.n_records, 0);
	CHECK_INT(r.batch.n_events, 0);
	CHECK(r.project == NULL);
	ingest_result_free(&r);
}

static void more_records_than_the_limit_is_toobig_and_keeps_nothing(void)
{
	struct ingest_result r;
	cJSON *arr = cJSON_CreateArray();
	struct ingest_opts o = opts_for(INGEST_TRACK, 0);
	int i;

	for (i = 0; i < 11; i++)
		cJSON_AddItemToArray(arr, J("{'event':'e','properties':{'token':'tok1'}}"));
	CHECK_INT(ingest_prepare(arr, &o, &r), MP_E_TOOBIG);
	CHECK_STR(r.first_error, "too many records in one request: 11 (the limit is 10)");
	CHECK_INT(r.batch.n_events, 0);
	CHECK_INT(r.n_valid, 0);
	CHECK_INT(r.n_failures, 0);
	ingest_result_free(&r);

	arr = cJSON_CreateArray();
	for (i = 0; i < 10; i++)
		cJSON_AddItemToArray(arr, J("{'event':'e','properties':{'token':'tok1'}}"));
	CHECK_INT(RUN(arr, &o, &r), MP_OK);
	CHECK_INT(r.n_valid, 10);
	ingest_result_free(&r);
}

/* ---------- limits ---------- */

/* A track event with N properties p0..p(N-1) (token included in N). */
static cJSON *event_with_props(int n)
{
	cJSON *ev = J("{'event':'e','properties':{'token':'tok1'}}");
	cJSON *props = cJSON_GetObjectItemCaseSensitive(ev, "properties");
	int i;

	for (i = 1; i < n; i++) {
		char k[16];

		snprintf(k, sizeof k, "p%d", i);
		cJSON_AddNumberToObject(props, k, i);
	}
	return ev;
}

static void event_with_255_properties_passes_and_256_fails(void)
{
	struct ingest_opts o = opts_for(INGEST_TRACK, 0);
	struct ingest_result r;
	cJSON *arr;

	arr = cJSON_CreateArray();
	cJSON_AddItemToArray(arr, event_with_props(255));
	CHECK_INT(RUN(arr, &o, &r), MP_OK);
	CHECK(ONE_EVENT(&r) != NULL);
	ingest_result_free(&r);

	arr = cJSON_CreateArray();
	cJSON_AddItemToArray(arr, event_with_props(256));
	CHECK_INT(RUN(arr, &o, &r), MP_OK);
	ONE_FAILURE(&r, "properties", "event has more than 255 properties");
	ingest_result_free(&r);
}

static void property_name_of_255_bytes_passes_and_256_fails(void)
{
	struct ingest_result r;
	char *k255 = repeat("k", 255, "'"), *k256 = repeat("k", 256, "'"), props[400];

	snprintf(props, sizeof props, "%s':1", k255);
	CHECK_INT(TRACK1(props, &r), MP_OK);
	CHECK(ONE_EVENT(&r) != NULL);
	ingest_result_free(&r);
	snprintf(props, sizeof props, "%s':1", k256);
	CHECK_INT(TRACK1(props, &r), MP_OK);
	ONE_FAILURE(&r, "properties", "a property name is longer than 255 bytes");
	ingest_result_free(&r);
	/* inside an object */
	snprintf(props, sizeof props, "'o':{%s':1}", k256);
	CHECK_INT(TRACK1(props, &r), MP_OK);
	ONE_FAILURE(&r, "properties.o", "a key inside 'properties.o' is longer than 255 bytes");
	ingest_result_free(&r);
	free(k255);
	free(k256);
}

static void nesting_of_three_levels_passes_and_four_fails(void)
{
	struct ingest_result r;

	CHECK_INT(TRACK1("'o':{'a':{'b':{'c':1}}},'l':[[[1]]]", &r), MP_OK);
	CHECK(ONE_EVENT(&r) != NULL);
	ingest_result_free(&r);
	CHECK_INT(TRACK1("'o':{'a':{'b':{'c':{}}}}", &r), MP_OK);
	ONE_FAILURE(&r, "properties.o", "'properties.o' is nested deeper than 3 levels");
	ingest_result_free(&r);
	CHECK_INT(TRACK1("'l':[[[[1]]]]", &r), MP_OK);
	ONE_FAILURE(&r, "properties.l", "'properties.l' is nested deeper than 3 levels");
	ingest_result_free(&r);
	CHECK_INT(TRACK1("'l':[{'a':[{}]}]", &r), MP_OK);
	ONE_FAILURE(&r, "properties.l", "'properties.l' is nested deeper than 3 levels");
	ingest_result_free(&r);
}

static void list_of_255_items_passes_and_256_fails(void)
{
	struct ingest_opts o = opts_for(INGEST_TRACK, 0);
	struct ingest_result r;
	int n, i;

	for (n = 255; n <= 256; n++) {
		cJSON *arr = cJSON_CreateArray(), *ev = event_with_props(1), *l = cJSON_CreateArray(), *ob = cJSON_CreateObject();

		for (i = 0; i < n; i++) {
			char k[16];

			cJSON_AddItemToArray(l, cJSON_CreateNumber(i));
			snprintf(k, sizeof k, "k%d", i);
			cJSON_AddNumberToObject(ob, k, i);
		}
		cJSON_AddItemToObject(cJSON_GetObjectItemCaseSensitive(ev, "properties"), "l", l);
		cJSON_AddItemToArray(arr, ev);
		ev = event_with_props(1);
		cJSON_AddItemToObject(cJSON_GetObjectItemCaseSensitive(ev, "properties"), "ob", ob);
		cJSON_AddItemToArray(arr, ev);
		CHECK_INT(RUN(arr, &o, &r), MP_OK);
		if (n == 255) {
			CHECK_INT(r.n_valid, 2);
		} else {
			CHECK_INT(r.n_failures, 2);
			if (r.n_failures == 2) {
				CHECK_STR(r.failures[0].field, "properties.l");
				CHECK_STR(r.failures[0].message, "'properties.l' has more than 255 items");
				CHECK_STR(r.failures[1].field, "properties.ob");
				CHECK_STR(r.failures[1].message, "'properties.ob' has more than 255 keys");
			}
		}
		ingest_result_free(&r);
	}
}

/* An event with a 1.1 MB string property "big", followed by "after":1
 * when AFTER. */
static enum mp_err run_big_event(int after, struct ingest_result *r)
{
	struct ingest_opts o = opts_for(INGEST_TRACK, 0);
	cJSON *arr = cJSON_CreateArray(), *ev = event_with_props(1);
	char *big = repeat("x", 1100000, "");
	enum mp_err rc;

	cJSON_AddStringToObject(cJSON_GetObjectItemCaseSensitive(ev, "properties"), "big", big);
	if (after)
		cJSON_AddNumberToObject(cJSON_GetObjectItemCaseSensitive(ev, "properties"), "after", 1);
	cJSON_AddItemToArray(arr, ev);
	rc = RUN(arr, &o, r);
	free(big);
	return rc;
}

static void event_over_1_mb_fails_when_more_properties_follow(void)
{
	struct ingest_result r;

	CHECK_INT(run_big_event(1, &r), MP_OK);
	ONE_FAILURE(&r, "properties", "event is larger than 1 MB");
	ingest_result_free(&r);
}

/* The size of a string is added after the 1 MB check, so the last value's
 * own bytes are never checked. */
static void event_over_1_mb_fails_when_the_big_string_is_last(void)
{
	struct ingest_result r;

	CHECK_INT(run_big_event(0, &r), MP_OK);
	ONE_FAILURE(&r, "properties", "event is larger than 1 MB");
	ingest_result_free(&r);
}

/* Run one track event whose property "s" is S; return a copy of the
 * stored "s" (caller frees), NULL if the event was not stored. */
static char *stored_s(const char *s)
{
	struct ingest_opts o = opts_for(INGEST_TRACK, 0);
	struct ingest_result r;
	cJSON *arr = cJSON_CreateArray(), *ev = event_with_props(1);
	char *res = NULL;

	cJSON_AddStringToObject(cJSON_GetObjectItemCaseSensitive(ev, "properties"), "s", s);
	cJSON_AddItemToArray(arr, ev);
	if (RUN(arr, &o, &r) == MP_OK && r.batch.n_events == 1) {
		const char *v = prop_str(&r.batch.events[0], "s");

		res = v ? strdup(v) : NULL;
	}
	ingest_result_free(&r);
	return res;
}

static void check_stored_at(const char *in, const char *want, int line)
{
	char *got = stored_s(in);

	if (!got || strcmp(got, want) != 0) {
		fprintf(stderr, "%s:%d: stored value is %zu bytes, want %zu\n", __FILE__, line,
			got ? strlen(got) : 0, strlen(want));
		tl_cur_failed = 1;
	}
	free(got);
}
#define STORED(in, want) check_stored_at((in), (want), __LINE__)

static void strings_over_255_bytes_are_cut_on_a_character_boundary(void)
{
	char *in, *want;

	in = repeat("a", 300, "");
	want = repeat("a", 255, "");
	STORED(in, want);
	free(in);
	free(want);
	/* 2-byte character across the cut: bytes 254..255 */
	want = repeat("a", 254, "");
	in = malloc(301);
	memset(in, 'a', 254);
	memcpy(in + 254, "\xc3\xa9\xc3\xa9", 4);
	memset(in + 258, 'b', 42);
	in[300] = '\0';
	STORED(in, want);
	free(want);
	/* 3-byte character at 253..255 */
	want = repeat("a", 253, "");
	memset(in, 'a', 253);
	memcpy(in + 253, "\xe2\x82\xac", 3);
	memset(in + 256, 'b', 44);
	STORED(in, want);
	free(want);
	/* 4-byte character at 252..255 */
	want = repeat("a", 252, "");
	memset(in, 'a', 252);
	memcpy(in + 252, "\xf0\x9f\x98\x80", 4);
	memset(in + 256, 'b', 44);
	STORED(in, want);
	free(want);
	/* a character that ends exactly at byte 255 is kept */
	want = malloc(256);
	memset(want, 'a', 253);
	memcpy(want + 253, "\xc3\xa9", 2);
	want[255] = '\0';
	memset(in, 'a', 253);
	memcpy(in + 253, "\xc3\xa9", 2);
	memset(in + 255, 'b', 45);
	STORED(in, want);
	free(want);
	free(in);
	/* exactly 255 bytes: unchanged */
	in = repeat("\xe2\x82\xac", 85, "");
	STORED(in, in);
	free(in);
}

static void nested_strings_and_event_names_are_cut_too(void)
{
	struct ingest_opts o = opts_for(INGEST_TRACK, 0);
	struct ingest_result r;
	cJSON *arr = cJSON_CreateArray(), *ev, *props, *l = cJSON_CreateArray(), *ob = cJSON_CreateObject();
	char *s300 = repeat("z", 300, ""), *name = repeat("\xc3\xa9", 150, "");
	const struct store_event *e;

	ev = J("{'event':'x','properties':{'token':'tok1'}}");
	cJSON_SetValuestring(cJSON_GetObjectItemCaseSensitive(ev, "event"), name);
	props = cJSON_GetObjectItemCaseSensitive(ev, "properties");
	cJSON_AddItemToArray(l, cJSON_CreateString(s300));
	cJSON_AddItemToObject(props, "l", l);
	cJSON_AddStringToObject(ob, "in", s300);
	cJSON_AddItemToObject(props, "o", ob);
	cJSON_AddItemToArray(arr, ev);
	CHECK_INT(RUN(arr, &o, &r), MP_OK);
	e = ONE_EVENT(&r);
	if (e) {
		const cJSON *ll = cJSON_GetObjectItemCaseSensitive(e->props, "l");
		const cJSON *oo = cJSON_GetObjectItemCaseSensitive(e->props, "o");

		CHECK_INT(strlen(e->name), 254);  /* 127 é */
		CHECK_INT(strlen(cJSON_GetArrayItem(ll, 0)->valuestring), 255);
		CHECK_INT(strlen(cJSON_GetObjectItemCaseSensitive(oo, "in")->valuestring), 255);
	}
	ingest_result_free(&r);
	free(s300);
	free(name);
}

static void invalid_utf8_is_repaired_when_not_strict(void)
{
	char *got;

	got = stored_s("ab\xff" "cd");
	CHECK_STR(got, "ab\xef\xbf\xbd" "cd");
	free(got);
	got = stored_s("\xc0\xaf");           /* overlong '/' */
	CHECK_STR(got, "\xef\xbf\xbd\xef\xbf\xbd");
	free(got);
	got = stored_s("\xed\xa0\x80");       /* UTF-16 surrogate */
	CHECK_STR(got, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	free(got);
	got = stored_s("x\xe2\x82");          /* cut sequence at the end */
	CHECK_STR(got, "x\xef\xbf\xbd\xef\xbf\xbd");
	free(got);
	got = stored_s("ok \xf0\x9f\x98\x80"); /* valid 4-byte: untouched */
	CHECK_STR(got, "ok \xf0\x9f\x98\x80");
	free(got);
}

static void invalid_utf8_in_a_nested_string_is_repaired_when_not_strict(void)
{
	struct ingest_result r;
	const struct store_event *e;

	CHECK_INT(TRACK1("'l':['a\xff'],'o':{'k':'\xc3'}", &r), MP_OK);
	e = ONE_EVENT(&r);
	if (e) {
		const cJSON *l = cJSON_GetObjectItemCaseSensitive(e->props, "l");
		const cJSON *o = cJSON_GetObjectItemCaseSensitive(e->props, "o");

		CHECK_STR(cJSON_GetArrayItem(l, 0)->valuestring, "a\xef\xbf\xbd");
		CHECK_STR(cJSON_GetObjectItemCaseSensitive(o, "k")->valuestring, "\xef\xbf\xbd");
	}
	ingest_result_free(&r);
}

static void invalid_utf8_is_rejected_when_strict(void)
{
	struct ingest_result r;

	CHECK_INT(IMPORT1("'time':1710496000,'distinct_id':'u','$insert_id':'i1','s':'ab\xff'", 1, &r), MP_OK);
	ONE_FAILURE(&r, "properties.s", "'properties.s' is not valid UTF-8");
	ingest_result_free(&r);
	CHECK_INT(IMPORT1("'time':1710496000,'distinct_id':'u','$insert_id':'i1','l':[1,'\xc3']", 1, &r), MP_OK);
	ONE_FAILURE(&r, "properties.l", "'properties.l' is not valid UTF-8");
	ingest_result_free(&r);
	CHECK_INT(PREP("[{'event':'e','properties':{'token':'tok1','s':'\xff'}}]", INGEST_TRACK, 1, &r), MP_OK);
	ONE_FAILURE(&r, "properties.s", "'properties.s' is not valid UTF-8");
	ingest_result_free(&r);
}

static void invalid_utf8_property_name_is_repaired_or_rejected_when_strict(void)
{
	struct ingest_result r;
	const struct store_event *e;

	CHECK_INT(TRACK1("'k\xff':1", &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK(e && cJSON_GetObjectItemCaseSensitive(e->props, "k\xef\xbf\xbd") != NULL);
	ingest_result_free(&r);
	CHECK_INT(IMPORT1("'time':1710496000,'distinct_id':'u','$insert_id':'i1','k\xff':1", 1, &r), MP_OK);
	ONE_FAILURE(&r, "properties", "a property name is not valid UTF-8");
	ingest_result_free(&r);
}

static void invalid_utf8_event_name_or_distinct_id_fails(void)
{
	struct ingest_result r;

	CHECK_INT(PREP("[{'event':'e\xff','properties':{'token':'tok1'}}]", INGEST_TRACK, 0, &r), MP_OK);
	ONE_FAILURE(&r, "event", "'event' is not valid UTF-8");
	ingest_result_free(&r);
	CHECK_INT(TRACK1("'distinct_id':'u\xff'", &r), MP_OK);
	ONE_FAILURE(&r, "properties.distinct_id", "'properties.distinct_id' is not valid UTF-8");
	ingest_result_free(&r);
}

/* Contract: every string value is valid UTF-8 after ingest (repaired when
 * not strict).  $insert_id is a string property too, and it is exported. */
static void invalid_utf8_insert_id_is_repaired_when_not_strict(void)
{
	struct ingest_result r;
	const struct store_event *e;

	CHECK_INT(TRACK1("'$insert_id':'ab\xff'", &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK_STR(prop_str(e, "$insert_id"), "ab\xef\xbf\xbd");
	CHECK_STR(e ? e->insert_id : NULL, "ab\xef\xbf\xbd");
	ingest_result_free(&r);
}

/* Contract: invalid UTF-8 is an error with strict=1, keys inside objects
 * included (they are exported as JSON keys). */
static void invalid_utf8_key_inside_an_object_is_rejected_when_strict(void)
{
	struct ingest_result r;

	CHECK_INT(IMPORT1("'time':1710496000,'distinct_id':'u','$insert_id':'i1','o':{'k\xff':1}", 1, &r), MP_OK);
	CHECK_INT(r.n_failures, 1);
	CHECK_INT(r.n_valid, 0);
	ingest_result_free(&r);
}

/* ---------- stored property set ---------- */

static void row_fields_and_unstored_keys_are_taken_out_of_properties(void)
{
	static const char *const gone[] = { "time", "distinct_id", "token", "ip", "mp_processing_time_ms" };
	struct ingest_result r;
	const struct store_event *e;
	size_t i;

	CHECK_INT(TRACK1("'time':1710496000,'distinct_id':'u1','ip':'1.2.3.4','mp_processing_time_ms':5,'keep':1", &r),
		  MP_OK);
	e = ONE_EVENT(&r);
	for (i = 0; e && i < sizeof gone / sizeof *gone; i++)
		CHECK(!cJSON_GetObjectItemCaseSensitive(e->props, gone[i]));
	CHECK(e && cJSON_GetObjectItemCaseSensitive(e->props, "keep"));
	/* the batch still points at valid strings */
	CHECK_STR(e ? e->distinct_id : NULL, "u1");
	CHECK(e && e->time_ms == INT64_C(1710496000000));
	ingest_result_free(&r);
}

static void repeated_property_keys_keep_the_last_copy(void)
{
	struct ingest_result r;
	const struct store_event *e;

	CHECK_INT(TRACK1("'a':1,'time':1,'a':2,'distinct_id':'first','time':1710496000,'distinct_id':'last'", &r), MP_OK);
	e = ONE_EVENT(&r);
	if (e) {
		const cJSON *c;
		int n = 0;

		cJSON_ArrayForEach(c, e->props)
			n += strcmp(c->string, "a") == 0;
		CHECK_INT(n, 1);
		CHECK(cJSON_GetObjectItemCaseSensitive(e->props, "a")->valuedouble == 2);
		CHECK(e->time_ms == INT64_C(1710496000000));
		CHECK_STR(e->distinct_id, "last");
	}
	ingest_result_free(&r);
}

/* The property limit must cut off an oversized object before any work
 * that grows faster than the key count: a 10 MB body holds ~1M keys and
 * the repeated-key pass (ingest_dedupe_keys) is quadratic.  Checked without
 * a clock: the object carries a repeated key, and after the rejection both
 * copies are still there, i.e. the repeated-key pass never ran. */
static void event_with_40000_keys_is_rejected_before_the_key_pass(void)
{
	struct ingest_opts o = opts_for(INGEST_TRACK, 0);
	struct ingest_result r;
	cJSON *arr = cJSON_CreateArray(), *ev = event_with_props(40000);
	cJSON *props = cJSON_GetObjectItemCaseSensitive(ev, "properties"), *c;
	int n = 0;

	cJSON_AddNumberToObject(props, "twice", 1);
	cJSON_AddNumberToObject(props, "twice", 2);
	cJSON_AddItemToArray(arr, ev);
	CHECK_INT(RUN(arr, &o, &r), MP_OK);
	ONE_FAILURE(&r, "properties", "event has more than 255 properties");
	cJSON_ArrayForEach(c, props)
		n += strcmp(c->string, "twice") == 0;
	CHECK_INT(n, 2);
	ingest_result_free(&r);
}

static void track_time_before_1971_fails_even_without_an_age_limit(void)
{
	static const char text[] = "[server]\ntrack_max_age_days = 0\n[project.p]\nid = 1\ntoken = tok1\napi_secret = s\n";
	struct config *c = NULL;
	char err[256];
	struct ingest_opts o;
	struct ingest_result r;

	CHECK_INT(config_parse(text, strlen(text), "t.ini", &c, err, sizeof err), MP_OK);
	if (!c)
		return;
	o = opts_for(INGEST_TRACK, 0);
	o.cfg = c;
	CHECK_INT(RUN(J("[{'event':'e','properties':{'token':'tok1','time':31535999}}]"), &o, &r), MP_OK);
	ONE_FAILURE(&r, "properties.time", "'properties.time' is invalid: must be after 1971-01-01");
	ingest_result_free(&r);
	config_free(c);
}



static void ip_and_processing_time_are_removed(void)
{
	struct ingest_result r;
	const struct store_event *e;

	CHECK_INT(TRACK1("'ip':'1.2.3.4','mp_processing_time_ms':5,'keep':1", &r), MP_OK);
	e = ONE_EVENT(&r);
	CHECK(e && !cJSON_GetObjectItemCaseSensitive(e->props, "ip"));
	CHECK(e && !cJSON_GetObjectItemCaseSensitive(e->props, "mp_processing_time_ms"));
	CHECK(e && cJSON_GetObjectItemCaseSensitive(e->props, "keep"));
	CHECK(e && !cJSON_GetObjectItemCaseSensitive(e->props, "$import"));
	ingest_result_free(&r);
}

static void import_adds_import_true_once(void)
{
	struct ingest_result r;
	const struct store_event *e;

	CHECK_INT(IMPORT1("'time':1710496000,'$import':false,'ip':'1.2.3.4'", 0, &r), MP_OK);
	e = ONE_EVENT(&r);
	if (e) {
		const cJSON *c;
		int n = 0;

		CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e->props, "$import")));
		cJSON_ArrayForEach(c, e->props)
			n += strcmp(c->string, "$import") == 0;
		CHECK_INT(n, 1);
		CHECK(!cJSON_GetObjectItemCaseSensitive(e->props, "ip"));
	}
	ingest_result_free(&r);
}

/* ---------- /engage ---------- */

static void engage_update_names_the_user_and_keeps_the_record(void)
{
	struct ingest_result r;

	CHECK_INT(PREP("[{'$token':'tok1','$distinct_id':'u1','$set':{'a':1}},"
		       "{'$token':'tok1','$distinct_id':42,'$delete':''}]", INGEST_ENGAGE, 0, &r), MP_OK);
	CHECK_INT(r.n_valid, 2);
	CHECK_INT(r.batch.n_updates, 2);
	CHECK_INT(r.batch.n_events, 0);
	CHECK(r.project == &cfg->projects[0]);
	if (r.batch.n_updates == 2) {
		CHECK_INT(r.batch.updates[0].kind, PROFILE_USER);
		CHECK_STR(r.batch.updates[0].distinct_id, "u1");
		CHECK(cJSON_GetObjectItemCaseSensitive(r.batch.updates[0].update, "$set") != NULL);
		CHECK_STR(r.batch.updates[1].distinct_id, "42");
	}
	ingest_result_free(&r);
}

static void engage_requires_token_distinct_id_and_an_operation(void)
{
	struct ingest_result r;

	CHECK_INT(PREP("[{'$distinct_id':'u1','$set':{'a':1}}]", INGEST_ENGAGE, 0, &r), MP_OK);
	ONE_FAILURE(&r, "$token", "'$token' is missing");
	CHECK(r.n_failures == 1 && r.failures[0].distinct_id && strcmp(r.failures[0].distinct_id, "u1") == 0);
	ingest_result_free(&r);
	CHECK_INT(PREP("[{'$token':'bad','$distinct_id':'u1','$set':{'a':1}}]", INGEST_ENGAGE, 0, &r), MP_OK);
	ONE_FAILURE(&r, "$token", "unknown project token");
	ingest_result_free(&r);
	CHECK_INT(PREP("[{'$token':'tok1','$set':{'a':1}}]", INGEST_ENGAGE, 0, &r), MP_OK);
	ONE_FAILURE(&r, "$distinct_id", "'$distinct_id' must be a non-empty string");
	ingest_result_free(&r);
	CHECK_INT(PREP("[{'$token':'tok1','$distinct_id':'','$set':{'a':1}}]", INGEST_ENGAGE, 0, &r), MP_OK);
	ONE_FAILURE(&r, "$distinct_id", "'$distinct_id' must be a non-empty string");
	ingest_result_free(&r);
	CHECK_INT(PREP("[{'$token':'tok1','$distinct_id':'u1','$ip':'1.2.3.4'}]", INGEST_ENGAGE, 0, &r), MP_OK);
	ONE_FAILURE(&r, "$set", "no profile operation in update");
	CHECK(r.n_failures == 1 && r.failures[0].distinct_id && strcmp(r.failures[0].distinct_id, "u1") == 0);
	CHECK(r.n_failures == 1 && r.failures[0].insert_id == NULL);
	ingest_result_free(&r);
	CHECK_INT(PREP("[7]", INGEST_ENGAGE, 0, &r), MP_OK);
	ONE_FAILURE(&r, "$token", "record is not a JSON object");
	ingest_result_free(&r);
}

static void engage_strict_rejects_blocked_distinct_ids(void)
{
	struct ingest_result r;

	CHECK_INT(PREP("[{'$token':'tok1','$distinct_id':'Null','$set':{'a':1}}]", INGEST_ENGAGE, 1, &r), MP_OK);
	ONE_FAILURE(&r, "$distinct_id", "'$distinct_id' is invalid: 'Null' is a blocked value");
	ingest_result_free(&r);
	CHECK_INT(PREP("[{'$token':'tok1','$distinct_id':'Null','$set':{'a':1}}]", INGEST_ENGAGE, 0, &r), MP_OK);
	CHECK_INT(r.n_valid, 1);
	ingest_result_free(&r);
}

/* ---------- /groups ---------- */

static void groups_update_names_key_and_id_with_number_ids_as_strings(void)
{
	struct ingest_result r;

	CHECK_INT(PREP("[{'$token':'tok1','$group_key':'company','$group_id':42,'$set':{'name':'Acme'}},"
		       "{'$token':'tok1','$group_key':'company','$group_id':'acme','$union':{'l':[1]}}]",
		       INGEST_GROUPS, 0, &r), MP_OK);
	CHECK_INT(r.n_valid, 2);
	if (r.batch.n_updates == 2) {
		CHECK_INT(r.batch.updates[0].kind, PROFILE_GROUP);
		CHECK_STR(r.batch.updates[0].group_key, "company");
		CHECK_STR(r.batch.updates[0].group_id, "42");
		CHECK(r.batch.updates[0].distinct_id == NULL);
		CHECK_STR(r.batch.updates[1].group_id, "acme");
	}
	ingest_result_free(&r);
}

static void groups_require_key_and_id(void)
{
	struct ingest_result r;

	CHECK_INT(PREP("[{'$token':'tok1','$group_id':'acme','$set':{'a':1}}]", INGEST_GROUPS, 0, &r), MP_OK);
	ONE_FAILURE(&r, "$group_key", "'$group_key' must be a non-empty string");
	ingest_result_free(&r);
	CHECK_INT(PREP("[{'$token':'tok1','$group_key':'company','$group_id':'','$set':{'a':1}}]", INGEST_GROUPS, 0, &r),
		  MP_OK);
	ONE_FAILURE(&r, "$group_id", "'$group_id' must be a non-empty string or number");
	ingest_result_free(&r);
	CHECK_INT(PREP("[{'$token':'tok1','$group_key':'company','$group_id':'acme'}]", INGEST_GROUPS, 0, &r), MP_OK);
	ONE_FAILURE(&r, "$set", "no profile operation in update");
	ingest_result_free(&r);
}

static void groups_append_only_update_fails(void)
{
	struct ingest_result r;

	CHECK_INT(PREP("[{'$token':'tok1','$group_key':'company','$group_id':'acme','$append':{'l':1}}]",
		       INGEST_GROUPS, 0, &r), MP_OK);
	ONE_FAILURE(&r, "$append", "$append is not supported for group profiles");
	ingest_result_free(&r);
	/* with another operation the update is valid ($append is refused by profile_apply) */
	CHECK_INT(PREP("[{'$token':'tok1','$group_key':'company','$group_id':'acme','$append':{'l':1},'$set':{'a':1}}]",
		       INGEST_GROUPS, 0, &r), MP_OK);
	CHECK_INT(r.n_valid, 1);
	ingest_result_free(&r);
	/* engage allows $append alone */
	CHECK_INT(PREP("[{'$token':'tok1','$distinct_id':'u','$append':{'l':1}}]", INGEST_ENGAGE, 0, &r), MP_OK);
	CHECK_INT(r.n_valid, 1);
	ingest_result_free(&r);
}

/* $merge is an operation (ingest_ops[]), so $append + $merge is not an
 * $append-only update and must be accepted like $append + $set. */
static void groups_append_with_merge_is_not_append_only(void)
{
	struct ingest_result r;

	CHECK_INT(PREP("[{'$token':'tok1','$group_key':'company','$group_id':'acme','$append':{'l':1},"
		       "'$merge':{'o':{'a':1}}}]", INGEST_GROUPS, 0, &r), MP_OK);
	CHECK_INT(r.n_valid, 1);
	CHECK_INT(r.n_failures, 0);
	ingest_result_free(&r);
}

static void groups_and_engage_enforce_one_project_per_request(void)
{
	struct ingest_result r;

	CHECK_INT(PREP("[{'$token':'tok2','$group_key':'k','$group_id':'1','$set':{'a':1}},"
		       "{'$token':'tok1','$group_key':'k','$group_id':'2','$set':{'a':1}}]", INGEST_GROUPS, 0, &r), MP_OK);
	CHECK(r.project == &cfg->projects[1]);
	CHECK_INT(r.n_failures, 1);
	if (r.n_failures == 1) {
		CHECK_INT(r.failures[0].index, 1);
		CHECK_STR(r.failures[0].message, "records of different projects in one request are not supported");
	}
	ingest_result_free(&r);
}

int main(void)
{
	char err[256] = "";

	if (config_parse(CFG_TEXT, strlen(CFG_TEXT), "test.ini", &cfg, err, sizeof err) != MP_OK) {
		fprintf(stderr, "config: %s\n", err);
		return 1;
	}
	TEST_RUN(time_in_seconds_becomes_ms);
	TEST_RUN(time_fractional_seconds_keep_milliseconds);
	TEST_RUN(time_at_or_above_1e11_is_milliseconds);
	TEST_RUN(time_numeric_string_is_accepted);
	TEST_RUN(time_missing_or_null_is_receive_time);
	TEST_RUN(time_that_is_not_a_number_fails);
	TEST_RUN(ingest_time_ms_parses_numbers_and_numeric_strings_only);
	TEST_RUN(track_future_time_becomes_now);
	TEST_RUN(track_older_than_max_age_fails_and_the_boundary_passes);
	TEST_RUN(track_max_age_zero_means_no_age_limit);
	TEST_RUN(import_accepts_old_events_from_1971_on);
	TEST_RUN(import_before_1971_fails);
	TEST_RUN(import_more_than_one_hour_ahead_fails);
	TEST_RUN(import_up_to_one_hour_ahead_is_clamped_to_now);
	TEST_RUN(distinct_id_missing_comes_from_user_id);
	TEST_RUN(distinct_id_missing_comes_from_device_id_with_prefix);
	TEST_RUN(distinct_id_missing_with_ip_1_is_a_hash_of_the_client_ip);
	TEST_RUN(distinct_id_missing_without_ip_1_is_empty);
	TEST_RUN(distinct_id_number_becomes_its_decimal_string);
	TEST_RUN(distinct_id_of_another_type_or_too_long_fails);
	TEST_RUN(simplified_identity_prefers_user_id_and_keeps_the_sent_id);
	TEST_RUN(simplified_identity_does_not_record_an_unchanged_id);
	TEST_RUN(original_identity_keeps_the_sent_id_and_only_fills_a_missing_one);
	TEST_RUN(strict_import_accepts_a_complete_event);
	TEST_RUN(strict_import_requires_insert_id);
	TEST_RUN(strict_import_rejects_malformed_or_blocked_insert_ids);
	TEST_RUN(strict_import_rejects_blocked_distinct_ids_case_insensitively);
	TEST_RUN(blocked_id_list_matches_exact_values_ignoring_case);
	TEST_RUN(failures_carry_index_insert_id_field_and_message_in_order);
	TEST_RUN(non_strict_drops_an_unusable_insert_id);
	TEST_RUN(ignored_event_counts_as_valid_but_is_not_stored);
	TEST_RUN(track_unknown_or_missing_token_fails);
	TEST_RUN(track_second_project_in_one_request_fails);
	TEST_RUN(import_uses_the_authenticated_project_and_ignores_token);
	TEST_RUN(record_shape_errors_are_failures);
	TEST_RUN(empty_array_is_ok_with_nothing_to_store);
	TEST_RUN(more_records_than_the_limit_is_toobig_and_keeps_nothing);
	TEST_RUN(event_with_255_properties_passes_and_256_fails);
	TEST_RUN(property_name_of_255_bytes_passes_and_256_fails);
	TEST_RUN(nesting_of_three_levels_passes_and_four_fails);
	TEST_RUN(list_of_255_items_passes_and_256_fails);
	TEST_RUN(event_over_1_mb_fails_when_more_properties_follow);
	TEST_RUN(event_over_1_mb_fails_when_the_big_string_is_last);
	TEST_RUN(strings_over_255_bytes_are_cut_on_a_character_boundary);
	TEST_RUN(nested_strings_and_event_names_are_cut_too);
	TEST_RUN(invalid_utf8_is_repaired_when_not_strict);
	TEST_RUN(invalid_utf8_in_a_nested_string_is_repaired_when_not_strict);
	TEST_RUN(invalid_utf8_is_rejected_when_strict);
	TEST_RUN(invalid_utf8_property_name_is_repaired_or_rejected_when_strict);
	TEST_RUN(invalid_utf8_event_name_or_distinct_id_fails);
	TEST_RUN(invalid_utf8_insert_id_is_repaired_when_not_strict);
	TEST_RUN(invalid_utf8_key_inside_an_object_is_rejected_when_strict);
	TEST_RUN(row_fields_and_unstored_keys_are_taken_out_of_properties);
	TEST_RUN(repeated_property_keys_keep_the_last_copy);
	TEST_RUN(event_with_40000_keys_is_rejected_before_the_key_pass);
	TEST_RUN(track_time_before_1971_fails_even_without_an_age_limit);
	TEST_RUN(ip_and_processing_time_are_removed);
	TEST_RUN(import_adds_import_true_once);
	TEST_RUN(engage_update_names_the_user_and_keeps_the_record);
	TEST_RUN(engage_requires_token_distinct_id_and_an_operation);
	TEST_RUN(engage_strict_rejects_blocked_distinct_ids);
	TEST_RUN(groups_update_names_key_and_id_with_number_ids_as_strings);
	TEST_RUN(groups_require_key_and_id);
	TEST_RUN(groups_append_only_update_fails);
	TEST_RUN(groups_append_with_merge_is_not_append_only);
	TEST_RUN(groups_and_engage_enforce_one_project_per_request);
	config_free(cfg);
	return TEST_DONE();
}
