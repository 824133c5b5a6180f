/*
 * test_jarena.c - unit tests for src/jarena.c (contract: include/jarena.h).
 *
 * What is checked: cJSON trees parsed inside an arena come from it and
 * still print, modify and delete as usual; trees mixing arena and malloc'd
 * memory (nodes added outside the arena, a string replaced by a malloc'd
 * one, as ingest's UTF-8 repair does) delete cleanly; large allocations
 * and allocations outside an arena are malloc'd; released chunks are
 * reused, also past the warm pool and after jarena_trim (pages given
 * back); two threads use
 * their own arenas at once; the real ingestion path (rp_decode, then
 * ingest_prepare) runs in an arena.  Built with SAN=1 this runs under
 * ASan, which then also sees the arena's poisoning.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "ingest.h"
#include "jarena.h"
#include "req_parse.h"
#include "testlib.h"

static void parse_in_arena_counts_its_bytes_and_prints_back(void)
{
	struct jarena *a = jarena_new();
	cJSON *j;
	char *s;

	CHECK(a != NULL);
	CHECK_INT(jarena_used(a), 0);
	jarena_enter(a);
	j = cJSON_Parse("{\"event\":\"x\",\"properties\":{\"a\":[1,2,\"three\"],\"b\":{\"c\":null}}}");
	jarena_leave();
	CHECK(j != NULL);
	CHECK(jarena_used(a) >= 9 * sizeof(cJSON));
	s = cJSON_PrintUnformatted(j);  /* outside the arena: malloc'd */
	CHECK_STR(s, "{\"event\":\"x\",\"properties\":{\"a\":[1,2,\"three\"],\"b\":{\"c\":null}}}");
	free(s);
	cJSON_Delete(j);
	jarena_release(a);
}

static void trees_mixing_arena_and_malloc_memory_delete_cleanly(void)
{
	struct jarena *a = jarena_new();
	cJSON *j, *props, *name;
	size_t used;
	char *fixed;

	jarena_enter(a);
	j = cJSON_Parse("{\"event\":\"x\",\"properties\":{\"k\":\"v\"}}");
	cJSON_AddTrueToObject(cJSON_GetObjectItem(j, "properties"), "in_arena");
	jarena_leave();
	used = jarena_used(a);
	props = cJSON_GetObjectItem(j, "properties");
	/* added by another thread, or after the arena's span: malloc'd */
	CHECK(cJSON_AddStringToObject(props, "outside", "a malloc'd string") != NULL);
	CHECK_INT(jarena_used(a), used);
	/* a value replaced by a malloc'd string, freed by cJSON later */
	name = cJSON_GetObjectItem(j, "event");
	fixed = strdup("repaired");
	cJSON_free(name->valuestring);  /* arena memory: a no-op */
	name->valuestring = fixed;
	/* detach and delete an arena node, then a malloc'd one */
	cJSON_Delete(cJSON_DetachItemFromObject(props, "k"));
	cJSON_Delete(cJSON_DetachItemFromObject(props, "outside"));
	CHECK(cJSON_IsTrue(cJSON_GetObjectItem(props, "in_arena")));
	CHECK_STR(cJSON_GetObjectItem(j, "event")->valuestring, "repaired");
	cJSON_Delete(j);
	jarena_release(a);
}

static void large_allocations_and_no_current_arena_use_malloc(void)
{
	struct jarena *a = jarena_new();
	size_t n = JARENA_BIG + 100, used;
	char *big = malloc(n + 3), *t;
	cJSON *j;

	memset(big, 'x', n + 2);
	big[0] = '"';
	big[n + 1] = '"';
	big[n + 2] = '\0';
	jarena_enter(a);
	j = cJSON_Parse(big);  /* one string of JARENA_BIG + 100 bytes */
	jarena_leave();
	CHECK(cJSON_IsString(j));
	CHECK_INT(strlen(j->valuestring), n);
	used = jarena_used(a);
	CHECK(used < 1024);  /* the node, not the string */
	cJSON_Delete(j);
	/* no arena entered: nothing is counted */
	t = cJSON_PrintUnformatted(cJSON_GetArrayItem(NULL, 0));
	CHECK(t == NULL);
	j = cJSON_Parse("[1,2,3]");
	CHECK_INT(jarena_used(a), used);
	cJSON_Delete(j);
	free(big);
	jarena_release(a);
	jarena_enter(NULL);  /* allowed: malloc */
	j = cJSON_CreateObject();
	jarena_leave();
	cJSON_Delete(j);
}

/* More arenas than the warm pool holds, each filling a few chunks, released
 * and made again: the chunks given back to the kernel are reused. */
static void chunks_are_reused_past_the_warm_pool(void)
{
	enum { N = 80, PER = 3000 };
	struct jarena *a[N];
	int round, i, k;

	for (round = 0; round < 3; round++) {
		for (i = 0; i < N; i++) {
			cJSON *arr;

			CHECK((a[i] = jarena_new()) != NULL);
			jarena_enter(a[i]);
			arr = cJSON_CreateArray();
			for (k = 0; k < PER; k++)
				cJSON_AddItemToArray(arr, cJSON_CreateString("a string of some length"));
			jarena_leave();
			CHECK_INT(cJSON_GetArraySize(arr), PER);
			CHECK(jarena_used(a[i]) > 256 * 1024);  /* more than one chunk */
			CHECK_STR(cJSON_GetArrayItem(arr, PER - 1)->valuestring, "a string of some length");
			cJSON_Delete(arr);
		}
		for (i = 0; i < N; i++)
			jarena_release(a[i]);
		if (round == 1)
			jarena_trim();  /* every free chunk's pages given back: still reusable */
	}
}

static void *thread_parse(void *arg)
{
	int *ok = arg, i;

	for (i = 0; i < 2000; i++) {
		struct jarena *a = jarena_new();
		cJSON *j;
		char buf[64];

		snprintf(buf, sizeof buf, "{\"n\":%d,\"s\":\"t%d\"}", i, i);
		jarena_enter(a);
		j = cJSON_Parse(buf);
		jarena_leave();
		if (!j || cJSON_GetObjectItem(j, "n")->valueint != i)
			*ok = 0;
		cJSON_Delete(j);
		jarena_release(a);
	}
	return NULL;
}

static void two_threads_use_their_own_arenas(void)
{
	pthread_t t1, t2;
	int ok1 = 1, ok2 = 1;

	CHECK(pthread_create(&t1, NULL, thread_parse, &ok1) == 0);
	CHECK(pthread_create(&t2, NULL, thread_parse, &ok2) == 0);
	pthread_join(t1, NULL);
	pthread_join(t2, NULL);
	CHECK(ok1 && ok2);
}

/* The HTTP path: decode and validate in the arena, free the result, then
 * release.  The events exercise the repairs that swap strings (invalid
 * UTF-8), truncation, repeated keys and the properties taken out. */
static void ingestion_path_runs_in_an_arena(void)
{
	static const char body[] =
		"[{\"event\":\"e1\",\"properties\":{\"token\":\"tok\",\"time\":1700000000,"
		"\"distinct_id\":\"u1\",\"bad\":\"\xff\xfe\",\"dup\":1,\"dup\":2,\"$insert_id\":\"i1\"}},"
		"{\"event\":\"e2\",\"properties\":{\"token\":\"tok\",\"time\":1700000001123,"
		"\"distinct_id\":\"u2\",\"long\":\"%s\",\"ip\":\"1.2.3.4\"}},"
		"{\"event\":\"\",\"properties\":{\"token\":\"tok\"}}]";
	char *text = malloc(sizeof body + 400), longv[301], err[256];
	struct config cfg;
	struct config_project proj;
	struct rp_request in;
	struct rp_result rp;
	struct ingest_opts opts;
	struct ingest_result res;
	struct jarena *a = jarena_new();
	enum mp_err rc;

	memset(longv, 'y', 300);
	longv[300] = '\0';
	snprintf(text, sizeof body + 400, body, longv);
	memset(&cfg, 0, sizeof cfg);
	memset(&proj, 0, sizeof proj);
	proj.name = "p";
	proj.id = 1;
	proj.token = "tok";
	proj.api_secret = "s";
	cfg.projects = &proj;
	cfg.n_projects = 1;
	cfg.max_events_per_request = 2000;
	cfg.track_max_age_days = 0;
	memset(&in, 0, sizeof in);
	in.query = "";
	in.body = (const unsigned char *)text;
	in.body_len = strlen(text);
	in.content_type = "application/json";
	in.max_inflated = 1 << 20;
	jarena_enter(a);
	rc = rp_decode(&in, &rp, err, sizeof err);
	jarena_leave();
	CHECK_INT(rc, MP_OK);
	memset(&opts, 0, sizeof opts);
	opts.endpoint = INGEST_TRACK;
	opts.cfg = &cfg;
	opts.now_ms = 1700000002000LL;
	jarena_enter(a);
	rc = ingest_prepare(rp.records, &opts, &res);
	jarena_leave();
	rp.records = NULL;
	CHECK_INT(rc, MP_OK);
	CHECK_INT(res.n_records, 3);
	CHECK_INT(res.batch.n_events, 2);
	CHECK_INT(res.n_failures, 1);
	CHECK_STR(res.batch.events[0].distinct_id, "u1");
	CHECK_STR(res.batch.events[1].name, "e2");
	CHECK(jarena_used(a) > 0);
	/* the repaired string came from the arena too: nothing to walk (under
	 * LSan a malloc'd block left in the trees would show as a leak) */
	CHECK(jarena_pure(a));
	ingest_result_forget_trees(&res);
	ingest_result_free(&res);
	rp_result_free(&rp);
	jarena_release(a);
	free(text);
}

/* A string over JARENA_BIG is malloc'd: the arena is no longer pure, and
 * the tree is freed with cJSON_Delete before the release. */
static void a_large_allocation_makes_the_arena_impure(void)
{
	struct jarena *a = jarena_new();
	size_t n = JARENA_BIG * 2;
	char *text = malloc(n + 16);
	cJSON *j;

	CHECK(jarena_pure(a));
	CHECK(!jarena_pure(NULL));
	memcpy(text, "[\"", 2);
	memset(text + 2, 'z', n);
	memcpy(text + 2 + n, "\"]", 3);
	jarena_enter(a);
	j = cJSON_Parse(text);
	jarena_leave();
	CHECK(cJSON_IsArray(j));
	CHECK(!jarena_pure(a));
	cJSON_Delete(j);
	jarena_release(a);
	free(text);
}

int main(void)
{
	if (jarena_install() != 0) {
		fprintf(stderr, "jarena_install failed\n");
		return 1;
	}
	CHECK_INT(jarena_install(), 0);  /* idempotent */
	TEST_RUN(parse_in_arena_counts_its_bytes_and_prints_back);
	TEST_RUN(trees_mixing_arena_and_malloc_memory_delete_cleanly);
	TEST_RUN(large_allocations_and_no_current_arena_use_malloc);
	TEST_RUN(chunks_are_reused_past_the_warm_pool);
	TEST_RUN(two_threads_use_their_own_arenas);
	TEST_RUN(ingestion_path_runs_in_an_arena);
	TEST_RUN(a_large_allocation_makes_the_arena_impure);
	return TEST_DONE();
}
