/*
 * ingest.h - validate decoded ingestion records and turn them into a store
 * batch, with Mixpanel's rules (spec §6.1-§6.4, §7).
 *
 * Input is the JSON array from req_parse; output is one struct store_batch
 * for one project plus the per-record outcome the response needs.  No I/O
 * and no HTTP here: the same code serves /track, /import, /engage, /groups
 * and the `mixpaneld import` command.
 *
 * Events (/track, /import):
 *   - `event` non-empty string (cut to 255 bytes); `properties` object;
 *   - project: /track by properties.token (unknown token -> record invalid;
 *     all records of one request must belong to one project); /import by the
 *     authenticated project given in opts (properties.token is ignored);
 *   - `time`: number or numeric string, >= 1e11 is milliseconds else seconds,
 *     fractions kept to the ms; missing -> receive time; /track: future ->
 *     now, older than track_max_age_days -> invalid; /import: before
 *     1971-01-01 or more than 1 h ahead -> invalid, 0-1 h ahead -> now;
 *   - `distinct_id`: string or number.  Projects with identity = simplified
 *     (the default) take $user_id, else "$device:"+$device_id, over the sent
 *     value (Mixpanel's Simplified ID Merge, spec §9.1), keeping a differing
 *     sent value as $distinct_id_before_identity; identity = original keeps
 *     the sent value and only fills a missing one that way.  Still missing:
 *     (ip=1) a hash of the client IP, else "";
 *     strict import rejects Mixpanel's blocked values;
 *   - `$insert_id`: the dedup key when it is a non-empty string; strict import
 *     requires it (<= 36 bytes of [A-Za-z0-9-], not a blocked value);
 *   - `$ignore` present -> dropped silently (counts as accepted);
 *   - limits: <= 255 properties, keys <= 255 bytes, nesting depth <= 3, objects
 *     < 256 keys, lists < 256 items, event JSON < 1 MB; string values are cut
 *     to 255 UTF-8 bytes on a character boundary; invalid UTF-8 is an error
 *     with strict=1 and is repaired (U+FFFD) otherwise;
 *   - `token`, `ip` and `mp_processing_time_ms` are not stored; `time` and
 *     `distinct_id` are taken out of the properties (the store keeps them in
 *     the row); /import adds `$import: true`.
 * Profile and group updates (/engage, /groups): object with `$token`
 * (matching a project), `$distinct_id` (engage) or `$group_key` + `$group_id`
 * (groups), and at least one operation; operations are applied by the store
 * writer through profile.h.
 *
 * Ownership: ingest_prepare() takes ownership of RECORDS; everything in the
 * result (the batch's borrowed pointers point into it) lives until
 * ingest_result_free().
 */
#ifndef MP_INGEST_H
#define MP_INGEST_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "config.h"
#include "err.h"
#include "store.h"

enum ingest_endpoint { INGEST_TRACK, INGEST_IMPORT, INGEST_ENGAGE, INGEST_GROUPS };

struct ingest_opts {
	enum ingest_endpoint endpoint;
	const struct config *cfg;
	const struct config_project *project; /* /import: the authenticated project; else NULL */
	int strict;                 /* strict=1 */
	int use_ip;                 /* ip=1 */
	const char *client_ip;      /* textual client address, may be NULL */
	int64_t now_ms;
};

struct ingest_failure {
	size_t index;               /* 0-based position in the request */
	char *insert_id;            /* NULL if none (events) */
	char *distinct_id;          /* NULL if none (profile updates) */
	char field[64];             /* e.g. "properties.time" */
	char message[192];
};

struct ingest_result {
	const struct config_project *project;  /* NULL if no record named a project */
	struct store_batch batch;   /* events or updates of that project */
	size_t n_records;           /* records in the request */
	size_t n_valid;             /* records handed to the store (incl. $ignore'd) */
	size_t n_ignored;           /* $ignore'd events (valid, not stored) */
	struct ingest_failure *failures;
	size_t n_failures;
	char first_error[192];      /* message of the first failure, "" if none */
	/* private */
	cJSON *records_;
	cJSON *graveyard_;          /* properties taken out of events, kept alive */
	char **strings_;
	size_t n_strings_, cap_strings_;
};

/* Validate RECORDS (a JSON array; ownership taken) for OPTS.  Returns MP_OK
 * (individual records may still have failed: see the result), MP_E_TOOBIG
 * when there are more records than cfg->max_events_per_request (nothing is
 * kept), or MP_E_NOMEM.  The caller frees RES with ingest_result_free() in
 * every case. */
enum mp_err ingest_prepare(cJSON *records, const struct ingest_opts *opts, struct ingest_result *res);

void ingest_result_free(struct ingest_result *res);

/* Drop RES's JSON trees without freeing them: their memory goes back with
 * the arena they were built in (jarena_pure(), include/jarena.h).  Call
 * before ingest_result_free(). */
void ingest_result_forget_trees(struct ingest_result *res);

/* Parse Mixpanel's time value (number or numeric string, s or ms) into ms.
 * Returns 1 on success, 0 if V is not a time. */
int ingest_time_ms(const cJSON *v, int64_t *out);

/* 1 if S is one of the distinct_id / $insert_id values Mixpanel blocks. */
int ingest_blocked_id(const char *s);

#endif
