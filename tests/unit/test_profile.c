/*
 * test_profile.c - unit tests for profile.c (profile operations).
 *
 * Every expected profile is computed by hand from the spec (§6.3, §6.4) and
 * written literally.  JSON literals use single quotes (J() turns them into
 * double quotes) to keep them readable.  The SDK replay tests read the Node
 * captures from ../shared/fixtures/sdk-capture/ (beside the checkout) at run time.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "profile.h"
#include "testlib.h"

#define FIXTURE_DIR "../shared/fixtures/sdk-capture/"
#define SPEC_EXAMPLES "../shared/spec/examples/"

/* 2024-03-15T10:00:00.123Z */
#define T0_MS INT64_C(1710496800123)

/* Apply the update written in SQ (see J()). */
static enum mp_err apply(cJSON *profile, const char *sq, enum profile_kind kind,
			 int64_t now_ms, struct profile_outcome *out)
{
	cJSON *u = J(sq);
	enum mp_err rc;

	if (u == NULL)
		return MP_E_PARSE;
	rc = profile_apply(profile, u, kind, now_ms, out);
	cJSON_Delete(u);
	return rc;
}

/* 1 when PROFILE equals the JSON in SQ; $last_seen is ignored when
 * IGNORE_LAST_SEEN.  Prints both sides on a mismatch. */
static int same(const cJSON *profile, const char *sq, int ignore_last_seen)
{
	cJSON *want = J(sq), *got = cJSON_Duplicate(profile, 1);
	int eq = 0;

	if (want != NULL && got != NULL) {
		if (ignore_last_seen)
			cJSON_DeleteItemFromObjectCaseSensitive(got, "$last_seen");
		eq = cJSON_Compare(got, want, 1);
		if (!eq) {
			char *a = cJSON_PrintUnformatted(got), *b = cJSON_PrintUnformatted(want);
			fprintf(stderr, "  got:  %s\n  want: %s\n", a ? a : "?", b ? b : "?");
			free(a);
			free(b);
		}
	}
	cJSON_Delete(want);
	cJSON_Delete(got);
	return eq;
}

static const char *last_seen(const cJSON *profile)
{
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(profile, "$last_seen"));
}

/* Text of PROFILE[KEY] as cJSON prints it (static buffer). */
static const char *printed(const cJSON *profile, const char *key)
{
	static char buf[512];
	char *s = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(profile, key));

	snprintf(buf, sizeof buf, "%s", s ? s : "(none)");
	free(s);
	return buf;
}

/* 1 when V is the string S. */
static int str_is(const cJSON *v, const char *s)
{
	const char *vs = cJSON_GetStringValue(v);

	return vs != NULL && strcmp(vs, s) == 0;
}

static cJSON *read_json_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;
	cJSON *v = NULL;

	if (f == NULL) {
		fprintf(stderr, "cannot open %s\n", path);
		return NULL;
	}
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (buf = malloc((size_t)n + 1)) != NULL && fread(buf, 1, (size_t)n, f) == (size_t)n) {
		buf[n] = '\0';
		v = cJSON_Parse(buf);
	}
	free(buf);
	fclose(f);
	return v;
}

/* A string of TOTAL bytes: N_A times 'a', then MID, then 'b' up to TOTAL
 * (TOTAL 0: no filler).  The caller frees it. */
static char *make_str(size_t n_a, const char *mid, size_t total)
{
	size_t m = strlen(mid), n = n_a + m > total ? n_a + m : total;
	char *s = malloc(n + 1);

	if (s == NULL)
		return NULL;
	memset(s, 'a', n_a);
	memcpy(s + n_a, mid, m);
	memset(s + n_a + m, 'b', n - n_a - m);
	s[n] = '\0';
	return s;
}

/* ---- profile_utf8_truncate ---- */

static void test_truncate_edges(void)
{
	char s[64];

	CHECK_INT(profile_utf8_truncate(NULL, 5), 0);

	snprintf(s, sizeof s, "%s", "");
	CHECK_INT(profile_utf8_truncate(s, 0), 0);
	CHECK_STR(s, "");

	snprintf(s, sizeof s, "%s", "abc");
	CHECK_INT(profile_utf8_truncate(s, 0), 0);
	CHECK_STR(s, "");

	snprintf(s, sizeof s, "%s", "abc");
	CHECK_INT(profile_utf8_truncate(s, 5), 3);
	CHECK_STR(s, "abc");

	snprintf(s, sizeof s, "%s", "abc");
	CHECK_INT(profile_utf8_truncate(s, 3), 3); /* exactly at the limit */
	CHECK_STR(s, "abc");

	snprintf(s, sizeof s, "%s", "abcd");
	CHECK_INT(profile_utf8_truncate(s, 3), 3);
	CHECK_STR(s, "abc");

	/* 2-byte é straddling the limit goes entirely */
	snprintf(s, sizeof s, "%s", "a\xc3\xa9");
	CHECK_INT(profile_utf8_truncate(s, 2), 1);
	CHECK_STR(s, "a");

	/* é ending exactly at the limit stays */
	snprintf(s, sizeof s, "%s", "a\xc3\xa9z");
	CHECK_INT(profile_utf8_truncate(s, 3), 3);
	CHECK_STR(s, "a\xc3\xa9");

	/* 3-byte € cut after 1 and after 2 of its bytes */
	snprintf(s, sizeof s, "%s", "x\xe2\x82\xac");
	CHECK_INT(profile_utf8_truncate(s, 2), 1);
	CHECK_STR(s, "x");
	snprintf(s, sizeof s, "%s", "x\xe2\x82\xac");
	CHECK_INT(profile_utf8_truncate(s, 3), 1);
	CHECK_STR(s, "x");

	/* 4-byte emoji: every cut inside it drops it; after it, kept */
	snprintf(s, sizeof s, "%s", "a\xf0\x9f\x98\x80" "b");
	CHECK_INT(profile_utf8_truncate(s, 4), 1);
	CHECK_STR(s, "a");
	snprintf(s, sizeof s, "%s", "a\xf0\x9f\x98\x80" "b");
	CHECK_INT(profile_utf8_truncate(s, 5), 5);
	CHECK_STR(s, "a\xf0\x9f\x98\x80");

	/* a multi-byte character as the whole string, limit inside it */
	snprintf(s, sizeof s, "%s", "\xc3\xa9");
	CHECK_INT(profile_utf8_truncate(s, 1), 0);
	CHECK_STR(s, "");

	/* malformed: a run of continuation bytes is cut at the limit as is */
	snprintf(s, sizeof s, "%s", "\x80\x80\x80\x80\x80\x80");
	CHECK_INT(profile_utf8_truncate(s, 4), 4);
	CHECK_INT(strlen(s), 4);
}

/* ---- $set, $set_once, $last_seen ---- */

static void test_set_overwrites_and_last_seen(void)
{
	cJSON *p = cJSON_CreateObject();
	struct profile_outcome out;

	CHECK_INT(apply(p, "{'$token':'t','$distinct_id':'u','$set':{'a':1,'b':'x'}}",
			PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(out.n_ops, 1);
	CHECK_INT(out.n_errors, 0);
	CHECK_INT(out.deleted, 0);
	CHECK_STR(out.error, "");
	CHECK(same(p, "{'a':1,'b':'x','$last_seen':'2024-03-15T10:00:00'}", 0));

	CHECK_INT(apply(p, "{'$set':{'a':{'n':[1,2]},'c':null}}", PROFILE_USER,
			T0_MS + 3600 * 1000, &out), MP_OK);
	CHECK(same(p, "{'a':{'n':[1,2]},'b':'x','c':null,'$last_seen':'2024-03-15T11:00:00'}", 0));
	cJSON_Delete(p);
}

static void test_set_once_does_not_overwrite(void)
{
	cJSON *p = J("{'plan':'pro'}");
	struct profile_outcome out;

	CHECK_INT(apply(p, "{'$set_once':{'plan':'free','first':'2024-03-01'}}",
			PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(out.n_errors, 0);
	CHECK(same(p, "{'plan':'pro','first':'2024-03-01'}", 1));
	/* a null current value is present: not overwritten either */
	CHECK_INT(apply(p, "{'$set':{'n':null}}", PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(apply(p, "{'$set_once':{'n':5}}", PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_STR(printed(p, "n"), "null");
	cJSON_Delete(p);
}

static void test_ignore_time_values(void)
{
	static const char *truthy[] = { "true", "1", "'true'", "'1'" };
	static const char *falsy[] = { "false", "0", "'0'", "'false'", "null", "'yes'", "2" };
	char u[128];
	size_t i;
	struct profile_outcome out;

	for (i = 0; i < sizeof truthy / sizeof truthy[0]; i++) {
		cJSON *p = cJSON_CreateObject();
		snprintf(u, sizeof u, "{'$set':{'a':1},'$ignore_time':%s}", truthy[i]);
		CHECK_INT(apply(p, u, PROFILE_USER, T0_MS, &out), MP_OK);
		if (last_seen(p) != NULL)
			fprintf(stderr, "  $ignore_time %s did not suppress $last_seen\n", truthy[i]);
		CHECK(last_seen(p) == NULL);
		CHECK(same(p, "{'a':1}", 0));
		cJSON_Delete(p);
	}
	for (i = 0; i < sizeof falsy / sizeof falsy[0]; i++) {
		cJSON *p = cJSON_CreateObject();
		snprintf(u, sizeof u, "{'$set':{'a':1},'$ignore_time':%s}", falsy[i]);
		CHECK_INT(apply(p, u, PROFILE_USER, T0_MS, &out), MP_OK);
		if (last_seen(p) == NULL)
			fprintf(stderr, "  $ignore_time %s suppressed $last_seen\n", falsy[i]);
		CHECK_STR(last_seen(p), "2024-03-15T10:00:00");
		cJSON_Delete(p);
	}
}

static void test_ignore_time_keeps_old_last_seen(void)
{
	cJSON *p = J("{'$last_seen':'2020-01-01T00:00:00'}");
	struct profile_outcome out;

	CHECK_INT(apply(p, "{'$add':{'n':1},'$ignore_time':true}", PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK(same(p, "{'$last_seen':'2020-01-01T00:00:00','n':1}", 0));
	cJSON_Delete(p);
}

static void test_last_seen_format(void)
{
	cJSON *p = cJSON_CreateObject();
	struct profile_outcome out;

	/* 1999-12-31T23:59:59.999Z: milliseconds are dropped, not rounded */
	CHECK_INT(apply(p, "{'$set':{'a':1}}", PROFILE_USER, INT64_C(946684799999), &out), MP_OK);
	CHECK_STR(last_seen(p), "1999-12-31T23:59:59");
	CHECK_INT(apply(p, "{'$set':{'a':1}}", PROFILE_USER, 0, &out), MP_OK);
	CHECK_STR(last_seen(p), "1970-01-01T00:00:00");
	cJSON_Delete(p);
}

/* ---- $add ---- */

static void test_add_numbers(void)
{
	cJSON *p = J("{'logins':3,'score':1.5}");
	struct profile_outcome out;

	CHECK_INT(apply(p, "{'$add':{'logins':2,'credits':-5,'score':-0.25,'frac':0.5}}",
			PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(out.n_errors, 0);
	CHECK(same(p, "{'logins':5,'score':1.25,'credits':-5,'frac':0.5}", 1));
	/* integers stay integral in print, fractions keep their digits */
	CHECK_STR(printed(p, "logins"), "5");
	CHECK_STR(printed(p, "credits"), "-5");
	CHECK_STR(printed(p, "score"), "1.25");

	CHECK_INT(apply(p, "{'$add':{'logins':-7,'frac':0.25}}", PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_STR(printed(p, "logins"), "-2");
	CHECK_STR(printed(p, "frac"), "0.75");
	CHECK(cJSON_GetObjectItemCaseSensitive(p, "logins")->valuedouble == -2.0);
	/* a fractional sum that comes back to a whole number prints whole */
	CHECK_INT(apply(p, "{'$add':{'frac':0.25}}", PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_STR(printed(p, "frac"), "1");
	cJSON_Delete(p);
}

static void test_add_rejects_non_numbers(void)
{
	cJSON *p = J("{'name':'ada','n':1}");
	struct profile_outcome out;

	CHECK_INT(apply(p, "{'$add':{'x':'5','name':1,'n':2,'b':true}}",
			PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(out.n_errors, 3);
	CHECK_STR(out.error, "$add: 'x' is not a number");
	CHECK(same(p, "{'name':'ada','n':3}", 1));

	CHECK_INT(apply(p, "{'$add':{'name':1}}", PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(out.n_errors, 1);
	CHECK_STR(out.error, "$add: 'name' current value is not a number");
	/* overflow to infinity would print as null: rejected */
	CHECK_INT(apply(p, "{'$add':{'n':1e308}}", PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(apply(p, "{'$add':{'n':1e308}}", PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(out.n_errors, 1);
	CHECK(cJSON_GetObjectItemCaseSensitive(p, "n")->valuedouble == 1e308); /* + 3 is lost in rounding */
	cJSON_Delete(p);
}

/* ---- $append ---- */

static void test_append(void)
{
	cJSON *p = J("{'list':['a'],'scalar':'s','obj':{'k':1}}");
	struct profile_outcome out;

	CHECK_INT(apply(p, "{'$append':{'list':'a','scalar':'t','obj':2,'new':[1,2],'nul':null}}",
			PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(out.n_errors, 0);
	/* no dedupe; non-list becomes [old, v]; an array is one element */
	CHECK(same(p, "{'list':['a','a'],'scalar':['s','t'],'obj':[{'k':1},2],"
		      "'new':[[1,2]],'nul':[null]}", 1));
	CHECK_INT(apply(p, "{'$append':{'list':{'x':1}}}", PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_STR(printed(p, "list"), "[\"a\",\"a\",{\"x\":1}]");
	cJSON_Delete(p);
}

static void test_group_rejects_append_applies_set(void)
{
	cJSON *p = J("{'tags':['a']}");
	struct profile_outcome out;

	CHECK_INT(apply(p, "{'$token':'t','$group_key':'company','$group_id':'c-1',"
			   "'$append':{'tags':'b'},'$set':{'$name':'Acme'},'$union':{'tags':['c']}}",
			PROFILE_GROUP, T0_MS, &out), MP_OK);
	CHECK_INT(out.n_ops, 3);
	CHECK_INT(out.n_errors, 1);
	CHECK_STR(out.error, "$append: not supported for group profiles");
	CHECK(same(p, "{'tags':['a','c'],'$name':'Acme','$last_seen':'2024-03-15T10:00:00'}", 0));

	/* the same update on a user appends */
	cJSON_Delete(p);
	p = J("{'tags':['a']}");
	CHECK_INT(apply(p, "{'$append':{'tags':'b'},'$set':{'$name':'Acme'}}",
			PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(out.n_errors, 0);
	CHECK(same(p, "{'tags':['a','b'],'$name':'Acme'}", 1));
	cJSON_Delete(p);
}

/* ---- $union ---- */

static void test_union_dedupe(void)
{
	cJSON *p = J("{'tags':['a',{'k':[1,2]},3],'one':'x'}");
	struct profile_outcome out;

	CHECK_INT(apply(p, "{'$union':{'tags':['a','b',{'k':[1,2]},{'k':[2,1]},3,3.0,'3','b'],"
			   "'new':['x','x'],'one':['x','y'],'sc':'v'}}",
			PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(out.n_errors, 0);
	/* objects compare deeply (array order matters); 3 == 3.0; '3' != 3;
	 * duplicates inside the operand collapse; a scalar operand is [scalar];
	 * a scalar current value is treated as [scalar] */
	CHECK(same(p, "{'tags':['a',{'k':[1,2]},3,'b',{'k':[2,1]},'3'],"
		      "'new':['x'],'one':['x','y'],'sc':['v']}", 1));
	/* object keys in another order are still equal */
	CHECK_INT(apply(p, "{'$union':{'objs':[{'a':1,'b':2}]}}", PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(apply(p, "{'$union':{'objs':[{'b':2,'a':1}]}}", PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_STR(printed(p, "objs"), "[{\"a\":1,\"b\":2}]");
	cJSON_Delete(p);
}

/* ---- $remove ---- */

static void test_remove_all_occurrences(void)
{
	cJSON *p = J("{'tags':['a','b','a',{'o':1},'a',{'o':1}],'s':'a'}");
	struct profile_outcome out;

	CHECK_INT(apply(p, "{'$remove':{'tags':'a','s':'a','missing':'a'}}",
			PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(out.n_errors, 0);
	/* absent key and non-list are no-ops (and no key is created) */
	CHECK(same(p, "{'tags':['b',{'o':1},{'o':1}],'s':'a'}", 1));
	CHECK_INT(apply(p, "{'$remove':{'tags':{'o':1}}}", PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK(same(p, "{'tags':['b'],'s':'a'}", 1));
	CHECK_INT(apply(p, "{'$remove':{'tags':'b'}}", PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK(same(p, "{'tags':[],'s':'a'}", 1));
	cJSON_Delete(p);
}

/* ---- $unset, $delete, $merge ---- */

static void test_unset(void)
{
	cJSON *p = J("{'a':1,'b':2,'c':3,'d':4}");
	struct profile_outcome out;

	CHECK_INT(apply(p, "{'$unset':['a','nope']}", PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(out.n_errors, 0);
	CHECK(same(p, "{'b':2,'c':3,'d':4}", 1));
	CHECK_INT(apply(p, "{'$unset':'b'}", PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK(same(p, "{'c':3,'d':4}", 1));
	CHECK_INT(apply(p, "{'$unset':['c',7,'d']}", PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(out.n_errors, 1);
	CHECK_STR(out.error, "$unset: names must be strings");
	CHECK(same(p, "{}", 1));
	cJSON_Delete(p);
}

static void test_delete(void)
{
	cJSON *p = J("{'a':1,'$last_seen':'2020-01-01T00:00:00'}");
	struct profile_outcome out;

	CHECK_INT(apply(p, "{'$token':'t','$distinct_id':'u','$delete':''}",
			PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(out.deleted, 1);
	CHECK_INT(out.n_ops, 1);
	CHECK_INT(out.n_errors, 0);
	CHECK(same(p, "{}", 0)); /* no $last_seen after a delete */

	cJSON_Delete(p);
	p = J("{'a':1}");
	CHECK_INT(apply(p, "{'$delete':null,'$ignore_alias':true,'$set':{'b':2}}",
			PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(out.deleted, 1);
	CHECK_INT(out.n_ops, 2);
	CHECK(same(p, "{}", 0));
	cJSON_Delete(p);
}

static void test_merge(void)
{
	cJSON *p = J("{'o':{'a':1,'b':2},'s':'x'}");
	struct profile_outcome out;

	CHECK_INT(apply(p, "{'$merge':{'o':{'b':3,'c':4},'s':{'k':1},'n':{'z':true},'bad':5}}",
			PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(out.n_errors, 1);
	CHECK_STR(out.error, "$merge: 'bad' value must be an object");
	CHECK(same(p, "{'o':{'a':1,'b':3,'c':4},'s':{'k':1},'n':{'z':true}}", 1));
	cJSON_Delete(p);
}

/* ---- several operations, errors ---- */

static void test_multi_op_order(void)
{
	cJSON *p = cJSON_CreateObject();
	struct profile_outcome out;

	/* written $unset first, applied $set then $unset: key absent */
	CHECK_INT(apply(p, "{'$unset':['k'],'$set':{'k':1,'keep':2}}", PROFILE_USER, T0_MS, &out),
		  MP_OK);
	CHECK_INT(out.n_ops, 2);
	CHECK(same(p, "{'keep':2}", 1));

	/* $set before $set_once, $add after $set, $remove after $append and $union */
	CHECK_INT(apply(p, "{'$remove':{'l':'x'},'$union':{'l':['x','y']},'$append':{'l':'x'},"
			   "'$add':{'n':1},'$set_once':{'s':'once'},'$set':{'s':'set','n':10}}",
			PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(out.n_ops, 6);
	CHECK_INT(out.n_errors, 0);
	CHECK(same(p, "{'keep':2,'s':'set','n':11,'l':['y']}", 1));
	cJSON_Delete(p);
}

static void test_unknown_operation(void)
{
	cJSON *p = cJSON_CreateObject();
	struct profile_outcome out;

	CHECK_INT(apply(p, "{'$token':'t','$distinct_id':'u','$bogus':{'a':1},'$set':{'b':2},"
			   "'$ip':'0','$time':1710496800000,'$ignore_alias':false,'$latitude':1,"
			   "'$longitude':2,'$device_id':'d','$user_id':'u','$mp_metadata':{},"
			   "'$had_persisted_distinct_id':true}",
			PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(out.n_ops, 1);
	CHECK_INT(out.n_errors, 1);
	CHECK_STR(out.error, "unknown operation '$bogus'");
	/* modifiers never become properties */
	CHECK(same(p, "{'b':2}", 1));

	CHECK_INT(apply(p, "{'$set':{'c':3},'plain':1}", PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(out.n_errors, 1);
	CHECK_STR(out.error, "unknown operation 'plain'");
	CHECK(same(p, "{'b':2,'c':3}", 1));
	cJSON_Delete(p);
}

static void test_no_operation_is_invalid(void)
{
	cJSON *p = J("{'a':1}");
	cJSON *arr = J("[{'$set':{'a':2}}]");
	struct profile_outcome out;

	CHECK_INT(apply(p, "{'$token':'t','$distinct_id':'u'}", PROFILE_USER, T0_MS, &out),
		  MP_E_INVALID);
	CHECK_STR(out.error, "no operation in update");
	CHECK_INT(out.n_ops, 0);
	CHECK_INT(apply(p, "{}", PROFILE_USER, T0_MS, &out), MP_E_INVALID);
	CHECK_STR(out.error, "no operation in update");
	CHECK_INT(apply(p, "{'$sett':{'a':2}}", PROFILE_USER, T0_MS, &out), MP_E_INVALID);
	CHECK_STR(out.error, "no operation in update");
	CHECK_INT(profile_apply(p, arr, PROFILE_USER, T0_MS, &out), MP_E_INVALID);
	CHECK_STR(out.error, "update must be an object");
	CHECK_INT(profile_apply(p, NULL, PROFILE_USER, T0_MS, &out), MP_E_INVALID);
	/* untouched: not even $last_seen */
	CHECK(same(p, "{'a':1}", 0));
	cJSON_Delete(arr);
	cJSON_Delete(p);
}

static void test_wrong_value_types(void)
{
	cJSON *p = J("{'a':1}");
	struct profile_outcome out;

	CHECK_INT(apply(p, "{'$set':5}", PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(out.n_ops, 1);
	CHECK_INT(out.n_errors, 1);
	CHECK_STR(out.error, "$set: value must be an object");
	CHECK_INT(apply(p, "{'$unset':{}}", PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(out.n_errors, 1);
	CHECK_STR(out.error, "$unset: value must be an array");
	CHECK_INT(apply(p, "{'$set_once':[1],'$add':'x','$append':null,'$union':[],"
			   "'$remove':true,'$merge':1,'$set':{'b':2}}",
			PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(out.n_ops, 7);
	CHECK_INT(out.n_errors, 6);
	CHECK_STR(out.error, "$set_once: value must be an object");
	CHECK(same(p, "{'a':1,'b':2}", 1));
	cJSON_Delete(p);
}

/* ---- limits ---- */

static void test_truncate_300_byte_string(void)
{
	cJSON *p = cJSON_CreateObject(), *u = cJSON_CreateObject(), *op, *arr;
	/* 254 'a', then é at bytes 254-255 straddling the limit, then filler */
	char *s = make_str(254, "\xc3\xa9", 300);
	char *want = make_str(254, "", 0);
	/* 253 'a' then € at bytes 253-255: exactly 256 bytes, € goes */
	char *s2 = make_str(253, "\xe2\x82\xac", 300);
	char *want2 = make_str(253, "", 0);
	/* 252 'a' then € at bytes 252-254: ends at the limit, stays */
	char *s3 = make_str(252, "\xe2\x82\xac", 300);
	char *want3 = make_str(252, "\xe2\x82\xac", 0);
	struct profile_outcome out;
	const cJSON *e;

	CHECK(s != NULL && want != NULL && s2 != NULL && want2 != NULL && s3 && want3);
	if (!s || !want || !s2 || !want2 || !s3 || !want3)
		goto out;
	CHECK_INT(strlen(s), 300);
	CHECK((unsigned char)s[254] == 0xc3);
	CHECK((unsigned char)s2[253] == 0xe2);
	CHECK((unsigned char)s3[252] == 0xe2);

	op = cJSON_AddObjectToObject(u, "$set");
	cJSON_AddStringToObject(op, "s", s);
	cJSON_AddStringToObject(op, "s2", s2);
	cJSON_AddStringToObject(op, "s3", s3);
	arr = cJSON_AddArrayToObject(op, "list");
	cJSON_AddItemToArray(arr, cJSON_CreateString(s));
	cJSON_AddStringToObject(cJSON_AddObjectToObject(op, "obj"), "deep", s);
	cJSON_AddStringToObject(cJSON_AddObjectToObject(u, "$set_once"), "once", s);
	cJSON_AddStringToObject(cJSON_AddObjectToObject(u, "$append"), "app", s);
	arr = cJSON_AddArrayToObject(cJSON_AddObjectToObject(u, "$union"), "uni");
	cJSON_AddItemToArray(arr, cJSON_CreateString(s));
	cJSON_AddItemToArray(arr, cJSON_CreateString(s)); /* equal once truncated */

	CHECK_INT(profile_apply(p, u, PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(out.n_errors, 0);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "s")), want);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "s2")), want2);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "s3")), want3);
	CHECK_INT(strlen(want3), 255);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetArrayItem(
			cJSON_GetObjectItemCaseSensitive(p, "list"), 0)), want);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
			cJSON_GetObjectItemCaseSensitive(p, "obj"), "deep")), want);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "once")), want);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetArrayItem(
			cJSON_GetObjectItemCaseSensitive(p, "app"), 0)), want);
	e = cJSON_GetObjectItemCaseSensitive(p, "uni");
	CHECK_INT(cJSON_GetArraySize(e), 1);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetArrayItem(e, 0)), want);
	/* the update itself is not modified */
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
			cJSON_GetObjectItemCaseSensitive(u, "$set"), "s")), s);

	/* $remove with the untruncated string finds the stored truncated one */
	cJSON_Delete(u);
	u = cJSON_CreateObject();
	cJSON_AddStringToObject(cJSON_AddObjectToObject(u, "$remove"), "app", s);
	CHECK_INT(profile_apply(p, u, PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(p, "app")), 0);
out:
	free(s);
	free(want);
	free(s2);
	free(want2);
	free(s3);
	free(want3);
	cJSON_Delete(u);
	cJSON_Delete(p);
}

static void test_long_key_rejected(void)
{
	cJSON *p = cJSON_CreateObject(), *u = cJSON_CreateObject(), *op;
	char *k256 = make_str(256, "", 0), *k255 = make_str(255, "", 0);
	struct profile_outcome out;

	CHECK(k256 != NULL && k255 != NULL);
	if (k256 == NULL || k255 == NULL)
		goto out;
	op = cJSON_AddObjectToObject(u, "$set");
	cJSON_AddNumberToObject(op, k256, 1);
	cJSON_AddNumberToObject(op, k255, 2);
	cJSON_AddNumberToObject(op, "ok", 3);
	cJSON_AddNumberToObject(cJSON_AddObjectToObject(u, "$add"), k256, 1);
	CHECK_INT(profile_apply(p, u, PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(out.n_errors, 2);
	CHECK(cJSON_GetObjectItemCaseSensitive(p, k256) == NULL);
	CHECK(cJSON_GetObjectItemCaseSensitive(p, k255) != NULL);
	CHECK(cJSON_GetObjectItemCaseSensitive(p, "ok") != NULL);
	/* message quotes the first 48 bytes of the key and marks the cut */
	CHECK(strncmp(out.error, "$set: 'aaaaaaaa", 15) == 0);
	CHECK(strstr(out.error, "...' is longer than 255 bytes") != NULL);
	CHECK(strlen(out.error) < sizeof out.error - 1);
out:
	free(k256);
	free(k255);
	cJSON_Delete(u);
	cJSON_Delete(p);
}

static void test_property_cap(void)
{
	cJSON *p = cJSON_CreateObject();
	struct profile_outcome out;
	char key[16];
	int i;

	for (i = 0; i < 1999; i++) {
		snprintf(key, sizeof key, "k%d", i);
		cJSON_AddNumberToObject(p, key, i);
	}
	/* new1 makes 2000; new2, new3, the $union and $add keys pass it;
	 * existing k0 is still overwritten and k1 still added to */
	CHECK_INT(apply(p, "{'$set':{'new1':1,'new2':2,'k0':'x'},'$set_once':{'new3':3},"
			   "'$union':{'new4':['a']},'$add':{'k1':10,'new5':1}}",
			PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(out.n_errors, 4);
	CHECK_STR(out.error, "$set: 'new2' not added: profile has 2000 properties");
	CHECK(cJSON_GetObjectItemCaseSensitive(p, "new1") != NULL);
	CHECK(cJSON_GetObjectItemCaseSensitive(p, "new2") == NULL);
	CHECK(cJSON_GetObjectItemCaseSensitive(p, "new3") == NULL);
	CHECK(cJSON_GetObjectItemCaseSensitive(p, "new4") == NULL);
	CHECK(cJSON_GetObjectItemCaseSensitive(p, "new5") == NULL);
	CHECK_STR(printed(p, "k0"), "\"x\"");
	CHECK_STR(printed(p, "k1"), "11");
	/* $last_seen is server-maintained and exempt */
	CHECK_STR(last_seen(p), "2024-03-15T10:00:00");
	CHECK_INT(cJSON_GetArraySize(p), 2001);

	/* $unset runs after $set: the room it frees is not there for the $set
	 * of the same update, only for the next update */
	CHECK_INT(apply(p, "{'$unset':['k2','k3'],'$set':{'new6':6}}", PROFILE_USER, T0_MS, &out),
		  MP_OK);
	CHECK_INT(out.n_errors, 1);
	CHECK_INT(apply(p, "{'$set':{'new6':6}}", PROFILE_USER, T0_MS, &out), MP_OK);
	CHECK_INT(out.n_errors, 0);
	CHECK(cJSON_GetObjectItemCaseSensitive(p, "new6") != NULL);
	cJSON_Delete(p);
}

static void test_update_not_modified_and_null_out(void)
{
	cJSON *p = J("{'l':['a']}");
	cJSON *u = J("{'$set':{'o':{'x':[1]}},'$append':{'l':'b'},'$union':{'u':['c']},"
		     "'$merge':{'m':{'k':1}}}");
	cJSON *copy = cJSON_Duplicate(u, 1);

	CHECK_INT(profile_apply(p, u, PROFILE_USER, T0_MS, NULL), MP_OK);
	CHECK(cJSON_Compare(u, copy, 1));
	/* the profile holds copies: changing it leaves the update alone */
	cJSON_AddNumberToObject(cJSON_GetObjectItemCaseSensitive(p, "o"), "y", 2);
	CHECK(cJSON_Compare(u, copy, 1));
	CHECK(same(p, "{'l':['a','b'],'o':{'x':[1],'y':2},'u':['c'],'m':{'k':1}}", 1));
	cJSON_Delete(copy);
	cJSON_Delete(u);
	cJSON_Delete(p);
}

/* ---- replays of SDK captures and spec examples ---- */

/* Apply, in order, the updates of FILE's requests[].decoded.data.value whose
 * ID_KEY equals ID.  Returns how many were applied; stops at the first error.
 * *PROFILE follows the caller's contract: on deleted it is replaced by a new
 * empty object.  When SNAPSHOT_AT > 0, *SNAPSHOT receives a copy of the
 * profile after that many updates. */
static int replay(const char *file, const char *id_key, const char *id, enum profile_kind kind,
		  cJSON **profile, int snapshot_at, cJSON **snapshot, int *n_deleted)
{
	cJSON *doc = read_json_file(file), *req, *v;
	struct profile_outcome out;
	int n = 0;

	CHECK(doc != NULL);
	if (doc == NULL)
		return 0;
	cJSON_ArrayForEach(req, cJSON_GetObjectItemCaseSensitive(doc, "requests")) {
		v = cJSON_GetObjectItemCaseSensitive(req, "decoded");
		v = cJSON_GetObjectItemCaseSensitive(v, "data");
		v = cJSON_GetObjectItemCaseSensitive(v, "value");
		if (!cJSON_IsObject(v))
			continue;
		if (!str_is(cJSON_GetObjectItemCaseSensitive(v, id_key), id))
			continue;
		n++;
		if (profile_apply(*profile, v, kind, T0_MS + n * 1000, &out) != MP_OK ||
		    out.n_errors != 0) {
			fprintf(stderr, "  update %d of %s failed: %s\n", n, file, out.error);
			CHECK(0);
			break;
		}
		if (out.deleted) {
			CHECK_INT(cJSON_GetArraySize(*profile), 0);
			(*n_deleted)++;
			cJSON_Delete(*profile);
			*profile = cJSON_CreateObject();
		}
		if (n == snapshot_at)
			*snapshot = cJSON_Duplicate(*profile, 1);
	}
	cJSON_Delete(doc);
	return n;
}

/*
 * node-people.json, user-1001, steps 1-16 by hand:
 *   1 $set plan=pro               2 $set $name,$email,$created,seats=5,beta
 *   3 $set plan=team ($ignore_time: $last_seen stays at step 2)
 *   4 $set_once first_seen        5 $add logins 1 -> 1
 *   6 $add credits -5 -> -5       7 $add logins 2 -> 3, points 10
 *   8 $append tags early-adopter  9 $append tags vip, pages pricing
 *  10 $union features [alerts,export], teams [core]
 *  11 $remove tags vip -> [early-adopter]
 *  12 $unset beta                13 $unset seats, first_seen
 *  14 $append $transactions {$time,sku,$amount}
 *  15 $set $transactions []      16 $delete ""
 */
static void test_replay_node_people(void)
{
	cJSON *p = cJSON_CreateObject(), *at3 = NULL, *at14 = NULL, *at15 = NULL;
	int n, deleted = 0;

	n = replay(FIXTURE_DIR "node-people.json", "$distinct_id", "user-1001", PROFILE_USER,
		   &p, 3, &at3, &deleted);
	CHECK_INT(n, 16);
	CHECK_INT(deleted, 1);
	/* the final state: step 16 deleted the profile */
	CHECK(same(p, "{}", 0));
	CHECK(at3 != NULL && same(at3, "{'plan':'team','$name':'Ada L\xc3\xb6velace',"
				  "'$email':'ada@example.com','$created':'2024-03-01T09:30:00',"
				  "'seats':5,'beta':true,'$last_seen':'2024-03-15T10:00:02'}", 0));
	cJSON_Delete(p);

	/* again, stopping before the delete */
	p = cJSON_CreateObject();
	deleted = 0;
	n = replay(FIXTURE_DIR "node-people.json", "$distinct_id", "user-1001", PROFILE_USER,
		   &p, 14, &at14, &deleted);
	CHECK(at14 != NULL && same(at14, "{'plan':'team','$name':'Ada L\xc3\xb6velace',"
				   "'$email':'ada@example.com','$created':'2024-03-01T09:30:00',"
				   "'logins':3,'credits':-5,'points':10,'tags':['early-adopter'],"
				   "'pages':['pricing'],'features':['alerts','export'],'teams':['core'],"
				   "'$transactions':[{'$time':'2024-03-15T10:00:00.000Z',"
				   "'sku':'pro-monthly','$amount':19.99}]}", 1));
	cJSON_Delete(p);

	p = cJSON_CreateObject();
	deleted = 0;
	n = replay(FIXTURE_DIR "node-people.json", "$distinct_id", "user-1001", PROFILE_USER,
		   &p, 15, &at15, &deleted);
	CHECK(at15 != NULL && same(at15, "{'plan':'team','$name':'Ada L\xc3\xb6velace',"
				   "'$email':'ada@example.com','$created':'2024-03-01T09:30:00',"
				   "'logins':3,'credits':-5,'points':10,'tags':['early-adopter'],"
				   "'pages':['pricing'],'features':['alerts','export'],'teams':['core'],"
				   "'$transactions':[],'$last_seen':'2024-03-15T10:00:15'}", 0));
	cJSON_Delete(at3);
	cJSON_Delete(at14);
	cJSON_Delete(at15);
	cJSON_Delete(p);
}

/* node-groups.json, company/c-001: set $name; set industry, employees,
 * paying; set_once founded; union products [anvil,rocket]; remove anvil;
 * unset paying; delete. */
static void test_replay_node_groups(void)
{
	cJSON *p = cJSON_CreateObject(), *at6 = NULL;
	int n, deleted = 0;

	n = replay(FIXTURE_DIR "node-groups.json", "$group_id", "c-001", PROFILE_GROUP,
		   &p, 6, &at6, &deleted);
	CHECK_INT(n, 7);
	CHECK_INT(deleted, 1);
	CHECK(same(p, "{}", 0));
	CHECK(at6 != NULL && same(at6, "{'$name':'Acme Inc.','industry':'software','employees':120,"
				  "'founded':2011,'products':['rocket'],"
				  "'$last_seen':'2024-03-15T10:00:06'}", 0));
	cJSON_Delete(at6);
	cJSON_Delete(p);
}

/* spec/examples/engage-batch.json and groups-batch.json, applied in order. */
static void test_spec_examples(void)
{
	cJSON *batch, *u, *p = cJSON_CreateObject();
	struct profile_outcome out;
	int n = 0;

	batch = read_json_file(SPEC_EXAMPLES "engage-batch.json");
	CHECK(cJSON_IsArray(batch));
	cJSON_ArrayForEach(u, batch) {
		if (!str_is(cJSON_GetObjectItemCaseSensitive(u, "$distinct_id"), "user-1001"))
			continue;
		CHECK_INT(profile_apply(p, u, PROFILE_USER, T0_MS + ++n * 1000, &out), MP_OK);
		CHECK_INT(out.n_errors, 0);
	}
	CHECK_INT(n, 7);
	/* the last update has $ignore_time: $last_seen is from the 6th */
	CHECK(same(p, "{'$email':'ada@example.com','Plan':'pro','$os':'Linux','$browser':'Firefox',"
		      "'First Seen Plan':'free','Logins':1,'Tags':['admin'],'Visited':['/pricing'],"
		      "'$last_seen':'2024-03-15T10:00:06'}", 0));
	cJSON_Delete(batch);
	cJSON_Delete(p);

	p = cJSON_CreateObject();
	batch = read_json_file(SPEC_EXAMPLES "groups-batch.json");
	CHECK(cJSON_IsArray(batch));
	cJSON_ArrayForEach(u, batch) {
		CHECK_INT(profile_apply(p, u, PROFILE_GROUP, T0_MS, &out), MP_OK);
		CHECK_INT(out.n_errors, 0);
	}
	CHECK(same(p, "{'$name':'Acme Inc','Seats':40,'Regions':['eu']}", 1));
	cJSON_Delete(batch);
	cJSON_Delete(p);
}

int main(void)
{
	TEST_RUN(test_truncate_edges);
	TEST_RUN(test_set_overwrites_and_last_seen);
	TEST_RUN(test_set_once_does_not_overwrite);
	TEST_RUN(test_ignore_time_values);
	TEST_RUN(test_ignore_time_keeps_old_last_seen);
	TEST_RUN(test_last_seen_format);
	TEST_RUN(test_add_numbers);
	TEST_RUN(test_add_rejects_non_numbers);
	TEST_RUN(test_append);
	TEST_RUN(test_group_rejects_append_applies_set);
	TEST_RUN(test_union_dedupe);
	TEST_RUN(test_remove_all_occurrences);
	TEST_RUN(test_unset);
	TEST_RUN(test_delete);
	TEST_RUN(test_merge);
	TEST_RUN(test_multi_op_order);
	TEST_RUN(test_unknown_operation);
	TEST_RUN(test_no_operation_is_invalid);
	TEST_RUN(test_wrong_value_types);
	TEST_RUN(test_truncate_300_byte_string);
	TEST_RUN(test_long_key_rejected);
	TEST_RUN(test_property_cap);
	TEST_RUN(test_update_not_modified_and_null_out);
	TEST_RUN(test_replay_node_people);
	TEST_RUN(test_replay_node_groups);
	TEST_RUN(test_spec_examples);
	return TEST_DONE();
}
