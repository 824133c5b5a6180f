/*
 * testlib.h - the smallest unit-test harness that still says what failed.
 *
 * Each test file defines test functions and a main() that calls
 * TEST_RUN(fn) for each and returns TEST_DONE().  A failed CHECK prints
 * file:line and the expression, marks the current test failed and goes on.
 * The last line printed is "N passed, N failed", which CI reads.
 */
#ifndef MP_TESTLIB_H
#define MP_TESTLIB_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

static int tl_passed, tl_failed, tl_cur_failed;

#define CHECK(cond) do { if (!(cond)) { \
	fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
	tl_cur_failed = 1; } } while (0)

#define CHECK_STR(a, b) do { const char *tl_a = (a), *tl_b = (b); \
	if (!tl_a || !tl_b || strcmp(tl_a, tl_b) != 0) { \
	fprintf(stderr, "%s:%d: CHECK_STR failed: %s == %s (\"%s\" vs \"%s\")\n", \
		__FILE__, __LINE__, #a, #b, tl_a ? tl_a : "(null)", tl_b ? tl_b : "(null)"); \
	tl_cur_failed = 1; } } while (0)

#define CHECK_INT(a, b) do { long long tl_x = (long long)(a), tl_y = (long long)(b); \
	if (tl_x != tl_y) { \
	fprintf(stderr, "%s:%d: CHECK_INT failed: %s == %s (%lld vs %lld)\n", \
		__FILE__, __LINE__, #a, #b, tl_x, tl_y); \
	tl_cur_failed = 1; } } while (0)

#define TEST_RUN(fn) do { tl_cur_failed = 0; fn(); \
	if (tl_cur_failed) { tl_failed++; fprintf(stderr, "FAIL %s\n", #fn); } \
	else { tl_passed++; } } while (0)

#define TEST_DONE() (printf("%s: %d passed, %d failed\n", __FILE__, tl_passed, tl_failed), \
	tl_failed ? 1 : 0)

/* Parse JSON written with ' for " (readable literals in C); the caller
 * frees the result.  NULL (and a message) if it does not parse. */
__attribute__((unused)) static cJSON *J(const char *sq)
{
	size_t i, n = strlen(sq);
	char *tmp = malloc(n + 1);
	cJSON *v;

	if (tmp == NULL)
		return NULL;
	for (i = 0; i <= n; i++)
		tmp[i] = sq[i] == '\'' ? '"' : sq[i];
	v = cJSON_Parse(tmp);
	if (v == NULL)
		fprintf(stderr, "test JSON does not parse: %s\n", sq);
	free(tmp);
	return v;
}

#endif
