/*
 * fuzz_cohort.c - libFuzzer target for the cohort definition language
 * (q_cohort_spec in src/q_cohorts.c: {"definition": {...}} with nested
 * and/or/not, event and profile conditions, dates, `where` expressions).
 *
 * Contract checked: the parser answers 0 with a cohort, or a 4xx/5xx
 * status with a message; never both, never neither; a parsed cohort frees
 * cleanly (ASan/LSan catch leaks of a half-built tree).
 */
#include "query_report.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const struct tz *fz_tz;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct query_request rq;
	struct qctx q;
	struct q_cohort *c = NULL;
	char *spec;
	int r;

	if (!fz_tz) {
		struct tz *tz;

		if (tz_load("UTC", &tz) != MP_OK)
			abort();
		fz_tz = tz;
	}
	if (!(spec = malloc(size + 1)))
		return 0;
	memcpy(spec, data, size);
	spec[size] = '\0';
	memset(&rq, 0, sizeof rq);
	memset(&q, 0, sizeof q);
	rq.request = "/fuzz";
	q.rq = &rq;
	q.tz = fz_tz;
	q.now_ms = INT64_C(1790000000000);
	r = q_cohort_spec(&q, spec, &c);   /* saved ids need a store: answered 404 here */
	if ((r == 0) != (c != NULL) || (r && (r < 400 || r > 599 || !q.err[0])))
		abort();
	q_cohort_free(c);
	free(spec);
	return 0;
}
