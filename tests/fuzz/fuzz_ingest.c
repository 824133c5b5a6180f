/*
 * fuzz_ingest.c - libFuzzer target for the JSON payload rules (ingest.c).
 *
 * Input: one flags byte (bits 0-1 endpoint, 2 strict, 3 use_ip, 4 malloc
 * instead of a request arena), then a JSON payload.  The payload goes
 * through the same path as a request body (rp_decode) and then
 * ingest_prepare(), in a request arena as the server does (include/jarena.h:
 * when the arena stayed pure the trees are dropped unwalked, so a malloc'd
 * block left in them shows as a leak).  Invariants checked (abort on
 * violation):
 *   - every record is either valid or failed: n_valid + n_failures == n_records
 *   - batch sizes match: events for /track,/import, updates for /engage,/groups
 *   - every stored event has a non-empty name, a distinct_id, a time in
 *     1971..now for /import (now for /track), and props without token/time
 *   - every failure has an index < n_records and a non-empty message
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ingest.h"
#include "jarena.h"
#include "req_parse.h"

static struct config *fz_cfg;

static void fz_init(void)
{
	static const char ini[] =
		"[server]\nmax_events_per_request = 50\ntrack_max_age_days = 5\n"
		"[storage]\ndata_dir = /tmp/fuzz-unused\n"
		"[project.a]\nid = 1\ntoken = tok\napi_secret = sec\n"
		"[project.b]\nid = 2\ntoken = tok2\napi_secret = sec2\n";
	char err[256];

	if (config_parse(ini, sizeof ini - 1, "fuzz.ini", &fz_cfg, err, sizeof err) != MP_OK)
		abort();
	if (jarena_install() != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rp_request rq;
	struct rp_result rr;
	struct ingest_opts o;
	struct ingest_result res;
	struct jarena *arena;
	char err[256];
	size_t i;
	const int64_t now = 1796300000000LL;

	if (!fz_cfg)
		fz_init();
	if (size < 1)
		return 0;
	memset(&rq, 0, sizeof rq);
	rq.body = data + 1;
	rq.body_len = size - 1;
	rq.content_type = "application/json";
	rq.max_inflated = 1 << 20;
	arena = data[0] & 16 ? NULL : jarena_new();
	jarena_enter(arena);
	if (rp_decode(&rq, &rr, err, sizeof err) != MP_OK) {
		jarena_leave();
		rp_result_free(&rr);
		jarena_release(arena);
		return 0;
	}
	memset(&o, 0, sizeof o);
	o.endpoint = (enum ingest_endpoint)(data[0] & 3);
	o.cfg = fz_cfg;
	o.project = o.endpoint == INGEST_IMPORT ? &fz_cfg->projects[0] : NULL;
	o.strict = (data[0] >> 2) & 1;
	o.use_ip = (data[0] >> 3) & 1;
	o.client_ip = "127.0.0.1";
	o.now_ms = now;
	if (ingest_prepare(rr.records, &o, &res) == MP_OK) {
		jarena_leave();
		int events = o.endpoint == INGEST_TRACK || o.endpoint == INGEST_IMPORT;

		if (res.n_valid + res.n_failures != res.n_records)
			abort();
		if (events && res.batch.n_events + res.n_ignored != res.n_valid)
			abort();
		if (!events && res.batch.n_updates != res.n_valid)
			abort();
		for (i = 0; i < res.batch.n_events; i++) {
			const struct store_event *e = &res.batch.events[i];

			if (!e->name || !e->name[0] || !e->distinct_id || e->time_ms > now ||
			    e->time_ms < (o.endpoint == INGEST_IMPORT ? 31536000000LL : now - 5 * 86400000LL))
				abort();
			if (cJSON_GetObjectItemCaseSensitive(e->props, "token") ||
			    cJSON_GetObjectItemCaseSensitive(e->props, "time") ||
			    cJSON_GetObjectItemCaseSensitive(e->props, "distinct_id"))
				abort();
		}
		for (i = 0; i < res.n_failures; i++)
			if (res.failures[i].index >= res.n_records || !res.failures[i].message[0])
				abort();
	}
	jarena_leave();
	rr.records = NULL; /* taken by ingest_prepare */
	if (jarena_pure(arena))
		ingest_result_forget_trees(&res);
	ingest_result_free(&res);
	rp_result_free(&rr);
	jarena_release(arena);
	return 0;
}
