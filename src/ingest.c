/*
 * ingest.c - Mixpanel's validation rules for events and profile updates
 * (contract in include/ingest.h; rules and their provenance in
 * ../shared/spec/mixpanel-http-api.md §6 and §7).
 *
 * Invariants: a record is either handed to the store batch (n_valid) or
 * listed in failures (n_failures), never both, never neither; n_valid +
 * n_failures == n_records.  Every pointer in the batch points into
 * res->records_ or res->strings_, which the result owns.
 */
#include "ingest.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "profile.h"

#define INGEST_MAX_PROPS 255
#define INGEST_MAX_KEY 255
#define INGEST_MAX_STRING 255
#define INGEST_MAX_DEPTH 3
#define INGEST_MAX_ITEMS 255
#define INGEST_MAX_EVENT_BYTES (1024 * 1024)
#define INGEST_MIN_TIME_MS 31536000000LL     /* 1971-01-01T00:00:00Z */
#define INGEST_FUTURE_SLACK_MS 3600000LL

static const char *const ingest_blocked[] = {
	"00000000-0000-0000-0000-000000000000", "anon", "anonymous", "nil", "none", "null",
	"n/a", "na", "undefined", "unknown", "<nil>", "0", "-1", "true", "false", "[]", "{}", NULL
};

int ingest_blocked_id(const char *s)
{
	size_t i, n = strlen(s);

	/* the blocked values are at most 9 bytes long, or the 36-byte zero UUID;
	 * only one of the same length can match (a UUID-shaped id is common) */
	if (n > 9 && n != 36)
		return 0;
	for (i = 0; ingest_blocked[i]; i++)
		if (strlen(ingest_blocked[i]) == n && strcasecmp(s, ingest_blocked[i]) == 0)
			return 1;
	return 0;
}

int ingest_time_ms(const cJSON *v, int64_t *out)
{
	double d;

	if (cJSON_IsNumber(v)) {
		d = v->valuedouble;
	} else if (cJSON_IsString(v)) {
		char *end;

		/* decimal only: strtod would also take hex, "inf" and "nan" */
		if (!v->valuestring[0] || strspn(v->valuestring, "0123456789.eE+-") != strlen(v->valuestring))
			return 0;
		errno = 0;
		d = strtod(v->valuestring, &end);
		if (end == v->valuestring || *end || errno)
			return 0;
	} else {
		return 0;
	}
	if (!isfinite(d) || d < 0 || d > 9.2e15)
		return 0;
	*out = d >= 1e11 ? (int64_t)llround(d) : (int64_t)llround(d * 1000.0);
	return 1;
}

/* ---------- result helpers ---------- */

static char *ingest_keep(struct ingest_result *res, char *s)
{
	if (!s)
		return NULL;
	if (res->n_strings_ == res->cap_strings_) {
		size_t ncap = res->cap_strings_ ? res->cap_strings_ * 2 : 16;
		char **n = realloc(res->strings_, ncap * sizeof *n);

		if (!n) {
			free(s);
			return NULL;
		}
		res->strings_ = n;
		res->cap_strings_ = ncap;
	}
	res->strings_[res->n_strings_++] = s;
	return s;
}

static enum mp_err ingest_fail(struct ingest_result *res, size_t index, const cJSON *rec,
			       const char *field, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static enum mp_err ingest_fail(struct ingest_result *res, size_t index, const cJSON *rec,
			       const char *field, const char *fmt, ...)
{
	struct ingest_failure *f = &res->failures[res->n_failures++];
	const cJSON *props = cJSON_GetObjectItemCaseSensitive(rec, "properties");
	const cJSON *iid = cJSON_GetObjectItemCaseSensitive(props, "$insert_id");
	const cJSON *did = cJSON_GetObjectItemCaseSensitive(rec, "$distinct_id");
	va_list ap;

	memset(f, 0, sizeof *f);
	f->index = index;
	snprintf(f->field, sizeof f->field, "%s", field);
	va_start(ap, fmt);
	vsnprintf(f->message, sizeof f->message, fmt, ap);
	va_end(ap);
	if (cJSON_IsString(iid) && !(f->insert_id = strdup(iid->valuestring)))
		return MP_E_NOMEM;
	if (cJSON_IsString(did) && !(f->distinct_id = strdup(did->valuestring)))
		return MP_E_NOMEM;
	if (!res->first_error[0])
		snprintf(res->first_error, sizeof res->first_error, "%s", f->message);
	return MP_OK;
}

/* ---------- UTF-8 ---------- */

/* 1 if S is valid UTF-8; *LEN gets strlen(S).  One pass: the ASCII prefix
 * (nearly every string is ASCII) is scanned inline. */
static int ingest_utf8_scan(const char *s, size_t *len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n, i = 0, k;

	while (p[i] && p[i] < 0x80)
		i++;
	*len = n = p[i] ? i + strlen(s + i) : i;
	while (i < n) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		if (!(k = buf_utf8_seq(p + i, n - i)))
			return 0;
		i += k;
	}
	return 1;
}

/* Replace each invalid byte of S (N bytes) with U+FFFD; returns a string
 * from cJSON's allocator (it replaces one of a tree's strings). */
static char *ingest_utf8_repair(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, o = 0, k;
	char *out = cJSON_malloc(n * 3 + 1);

	if (!out)
		return NULL;
	while (i < n) {
		if ((k = buf_utf8_seq(p + i, n - i))) {
			memcpy(out + o, p + i, k);
			o += k;
			i += k;
		} else {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	out[o] = '\0';
	return out;
}

/* ---------- property checks ---------- */

struct ingest_check {
	int strict;
	size_t bytes;           /* approximate JSON size of the event so far */
	char field[64];
	char message[192];
};

/* Check VALUE (a property value at nesting DEPTH) against Mixpanel's limits,
 * truncating long strings and repairing bad UTF-8 in place.  Returns MP_OK,
 * MP_E_INVALID (message in CK) or MP_E_NOMEM. */
static void ingest_check_fail(struct ingest_check *ck, const char *key, const char *fmt, const char *what)
	__attribute__((format(printf, 3, 0)));

/* Record why the event is invalid; KEY (a property name) is cut on a
 * character boundary so the message stays UTF-8. */
static void ingest_check_fail(struct ingest_check *ck, const char *key, const char *fmt, const char *what)
{
	char shown[101];

	snprintf(shown, sizeof shown, "%s", key);
	profile_utf8_truncate(shown, 40);
	snprintf(ck->field, sizeof ck->field, "properties.%.40s", shown);
	snprintf(shown, sizeof shown, "%s", key);
	profile_utf8_truncate(shown, 100);
	snprintf(ck->message, sizeof ck->message, fmt, shown, what);
}

/* Make the string *S valid UTF-8: repaired in place (U+FFFD), or
 * MP_E_INVALID with STRICT.  S is owned by cJSON.  *LEN0 gets its length
 * as sent (also on MP_E_INVALID), *LEN after a repair. */
static enum mp_err ingest_fix_utf8(char **s, int strict, size_t *len0, size_t *len)
{
	char *fixed;

	if (ingest_utf8_scan(*s, len0)) {
		*len = *len0;
		return MP_OK;
	}
	*len = *len0;
	if (strict)
		return MP_E_INVALID;
	if (!(fixed = ingest_utf8_repair(*s, *len0)))
		return MP_E_NOMEM;
	cJSON_free(*s);
	*s = fixed;
	*len = strlen(fixed);
	return MP_OK;
}

/* Check VALUE (a property value at nesting DEPTH, its own key KLEN bytes
 * long, 0 in a list) against Mixpanel's limits, truncating long strings and
 * repairing bad UTF-8 (values and nested keys) in place.  Returns MP_OK,
 * MP_E_INVALID (message in CK) or MP_E_NOMEM. */
static enum mp_err ingest_check_value(cJSON *v, const char *key, size_t klen, int depth,
				      struct ingest_check *ck)
{
	cJSON *c;
	size_t n = 0, len0 = 0, len = 0;
	enum mp_err rc = MP_OK;

	if (cJSON_IsString(v))
		rc = ingest_fix_utf8(&v->valuestring, ck->strict, &len0, &len);
	if (rc == MP_E_NOMEM)
		return rc;
	ck->bytes += (v->string ? klen + 4 : 0) + 8 + len0;
	if (ck->bytes > INGEST_MAX_EVENT_BYTES) {
		snprintf(ck->field, sizeof ck->field, "properties");
		snprintf(ck->message, sizeof ck->message, "event is larger than 1 MB");
		return MP_E_INVALID;
	}
	if (cJSON_IsString(v)) {
		if (rc == MP_E_INVALID) {
			ingest_check_fail(ck, key, "'properties.%s' is not valid UTF-8%s", "");
			return rc;
		}
		if (len > INGEST_MAX_STRING)
			profile_utf8_truncate(v->valuestring, INGEST_MAX_STRING);
		return MP_OK;
	}
	if (!cJSON_IsArray(v) && !cJSON_IsObject(v))
		return MP_OK;
	if (depth >= INGEST_MAX_DEPTH) {
		ingest_check_fail(ck, key, "'properties.%s' is nested deeper than 3 levels%s", "");
		return MP_E_INVALID;
	}
	for (c = v->child; c; c = c->next) {
		if (++n > INGEST_MAX_ITEMS) {
			ingest_check_fail(ck, key, "'properties.%s' has more than 255 %s",
					  cJSON_IsArray(v) ? "items" : "keys");
			return MP_E_INVALID;
		}
		len = 0;
		if (cJSON_IsObject(v) && c->string) {
			if (c->type & cJSON_StringIsConst)
				len0 = len = strlen(c->string), rc = MP_OK;
			else
				rc = ingest_fix_utf8(&c->string, ck->strict, &len0, &len);
			if (rc == MP_E_NOMEM)
				return rc;
			if (len0 > INGEST_MAX_KEY) {
				ingest_check_fail(ck, key, "a key inside 'properties.%s' is longer than 255 bytes%s", "");
				return MP_E_INVALID;
			}
			if (rc == MP_E_INVALID) {
				ingest_check_fail(ck, key, "a key inside 'properties.%s' is not valid UTF-8%s", "");
				return rc;
			}
		}
		if ((rc = ingest_check_value(c, key, len, depth + 1, ck)) != MP_OK)
			return rc;
	}
	return MP_OK;
}

static int ingest_insert_id_ok(const char *s)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > 36 || ingest_blocked_id(s))
		return 0;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-')
			return 0;
	return 1;
}

/* A string form of an id property (string or number); NULL if neither. */
static char *ingest_id_text(struct ingest_result *res, const cJSON *v)
{
	char tmp[64];

	if (cJSON_IsString(v))
		return v->valuestring;
	if (cJSON_IsNumber(v) && isfinite(v->valuedouble)) {
		if (v->valuedouble == floor(v->valuedouble) && fabs(v->valuedouble) < 9e15)
			snprintf(tmp, sizeof tmp, "%lld", (long long)v->valuedouble);
		else
			snprintf(tmp, sizeof tmp, "%.17g", v->valuedouble);
		return ingest_keep(res, strdup(tmp));
	}
	return NULL;
}

static const struct config_project *ingest_project_of(struct ingest_result *res,
						      const struct ingest_opts *opts, const cJSON *tok,
						      size_t index, const cJSON *rec, const char *field,
						      enum mp_err *rc)
{
	const struct config_project *p;

	*rc = MP_OK;
	if (opts->project)
		return opts->project;
	if (!cJSON_IsString(tok) || !tok->valuestring[0]) {
		*rc = ingest_fail(res, index, rec, field, "'%s' is missing", field);
		return NULL;
	}
	if (!(p = config_project_by_token(opts->cfg, tok->valuestring))) {
		*rc = ingest_fail(res, index, rec, field, "unknown project token");
		return NULL;
	}
	if (res->project && res->project != p) {
		*rc = ingest_fail(res, index, rec, field,
				  "records of different projects in one request are not supported");
		return NULL;
	}
	res->project = p;
	return p;
}

/* ---------- events ---------- */

/* Move the property IT of PROPS (NULL: none) into the result's graveyard,
 * where it stays alive until ingest_result_free(). */
static enum mp_err ingest_bury(struct ingest_result *res, cJSON *props, cJSON *it)
{
	if (!it)
		return MP_OK;
	cJSON_DetachItemViaPointer(props, it);
	if (!res->graveyard_ && !(res->graveyard_ = cJSON_CreateArray())) {
		cJSON_Delete(it);
		return MP_E_NOMEM;
	}
	cJSON_AddItemToArray(res->graveyard_, it);
	return MP_OK;
}

/* The properties an event's checks read, move or replace. */
enum ingest_key {
	IK_TOKEN, IK_IGNORE, IK_TIME, IK_DID, IK_USER_ID, IK_DEVICE_ID, IK_FAILURE, IK_BEFORE,
	IK_INSERT_ID, IK_IP, IK_PTIME, IK_IMPORT, IK_N
};

static const char *const ingest_key_names[IK_N] = {
	"token", "$ignore", "time", "distinct_id", "$user_id", "$device_id", "$failure_reason",
	"$distinct_id_before_identity", "$insert_id", "ip", "mp_processing_time_ms", "$import"
};

/* Find every ingest_key of PROPS in one pass (its keys are unique: see
 * ingest_dedupe_keys); FOUND[k] is NULL when absent.  Two bytes are
 * compared inline first: many keys start with '$', as do 7 of the names. */
static void ingest_find_keys(const cJSON *props, cJSON *found[IK_N])
{
	cJSON *c;
	size_t k;

	memset(found, 0, IK_N * sizeof *found);
	for (c = props->child; c; c = c->next) {
		if (!c->string || !c->string[0] || !strchr("$tdim", c->string[0]))
			continue;
		for (k = 0; k < IK_N; k++)
			if (ingest_key_names[k][0] == c->string[0] && ingest_key_names[k][1] == c->string[1] &&
			    !strcmp(ingest_key_names[k], c->string)) {
				found[k] = c;
				break;
			}
	}
}

/* JSON.parse semantics for repeated keys: the last copy wins.  Earlier
 * copies move to the graveyard (a borrowed pointer may point into them). */
static enum mp_err ingest_dedupe_keys(struct ingest_result *res, cJSON *obj)
{
	cJSON *c, *d, *next;

	for (c = obj->child; c; c = next) {
		next = c->next;
		if (!c->string)
			continue;
		/* quadratic in the keys (capped at 255 before this runs); compare
		 * the first two bytes inline, most keys differ there */
		for (d = c->next; d; d = d->next)
			if (d->string && d->string[0] == c->string[0] &&
			    (!c->string[0] || d->string[1] == c->string[1]) && strcmp(c->string, d->string) == 0)
				break;
		if (!d)
			continue;
		cJSON_DetachItemViaPointer(obj, c);
		if (!res->graveyard_ && !(res->graveyard_ = cJSON_CreateArray())) {
			cJSON_Delete(c);
			return MP_E_NOMEM;
		}
		cJSON_AddItemToArray(res->graveyard_, c);
	}
	return MP_OK;
}

static enum mp_err ingest_event(struct ingest_result *res, const struct ingest_opts *opts,
				cJSON *rec, size_t index)
{
	cJSON *ev = cJSON_GetObjectItemCaseSensitive(rec, "event");
	cJSON *props = cJSON_GetObjectItemCaseSensitive(rec, "properties");
	cJSON *c, *tv, *dv, *iv, *key[IK_N];
	struct store_event *se;
	struct ingest_check ck;
	int64_t t;
	size_t nprops = 0, klen0, klen, len;
	int valid;
	const char *did, *sent = NULL, *link = NULL;
	enum mp_err rc;
	int track = opts->endpoint == INGEST_TRACK;
	int simplified;

	if (!cJSON_IsObject(rec))
		return ingest_fail(res, index, rec, "event", "record is not a JSON object");
	if (!cJSON_IsString(ev) || !ev->valuestring[0])
		return ingest_fail(res, index, rec, "event", "'event' must be a non-empty string");
	if (!cJSON_IsObject(props))
		return ingest_fail(res, index, rec, "properties", "'properties' must be a JSON object");
	{
		/* the cap first: the dedupe below is quadratic in the keys */
		size_t nk = 0;

		for (c = props->child; c; c = c->next)
			if (++nk > INGEST_MAX_PROPS)
				return ingest_fail(res, index, rec, "properties",
						   "event has more than %d properties", INGEST_MAX_PROPS);
	}
	if ((rc = ingest_dedupe_keys(res, props)) != MP_OK)
		return rc;
	ingest_find_keys(props, key);
	if (!ingest_project_of(res, opts, key[IK_TOKEN], index, rec, "properties.token", &rc))
		return rc;
	simplified = (opts->project ? opts->project : res->project)->identity == CONFIG_IDENTITY_SIMPLIFIED;
	if (key[IK_IGNORE]) {
		res->n_valid++;
		res->n_ignored++;
		return MP_OK;
	}
	/* time */
	tv = key[IK_TIME];
	if (!tv || cJSON_IsNull(tv)) {
		t = opts->now_ms;
	} else if (!ingest_time_ms(tv, &t)) {
		return ingest_fail(res, index, rec, "properties.time",
				   "'properties.time' is invalid: must be specified as seconds since epoch");
	}
	if (track) {
		if (t > opts->now_ms)
			t = opts->now_ms;
		if (t < INGEST_MIN_TIME_MS)
			return ingest_fail(res, index, rec, "properties.time",
					   "'properties.time' is invalid: must be after 1971-01-01");
		if (opts->cfg->track_max_age_days > 0 &&
		    t < opts->now_ms - (int64_t)opts->cfg->track_max_age_days * 86400000LL)
			return ingest_fail(res, index, rec, "properties.time",
					   "'properties.time' is older than %d days: send old events to /import",
					   opts->cfg->track_max_age_days);
	} else {
		if (t < INGEST_MIN_TIME_MS)
			return ingest_fail(res, index, rec, "properties.time",
					   "'properties.time' is invalid: must be after 1971-01-01");
		if (t > opts->now_ms + INGEST_FUTURE_SLACK_MS)
			return ingest_fail(res, index, rec, "properties.time",
					   "'properties.time' is more than 1 hour in the future");
		if (t > opts->now_ms)
			t = opts->now_ms;
	}
	/* distinct_id.  Simplified ID merge (spec §9.1 rules 1-3) derives it
	 * from $user_id, else "$device:"+$device_id, over what the client sent;
	 * the sent value is kept as $distinct_id_before_identity when it
	 * differs.  Original ID merge keeps it as sent and only fills a missing
	 * one the same way.  Last resort with ip=1: a hash of the client IP. */
	dv = key[IK_DID];
	if (dv && !cJSON_IsNull(dv) && !(sent = ingest_id_text(res, dv))) {
		if (!cJSON_IsString(dv) && !cJSON_IsNumber(dv))
			return ingest_fail(res, index, rec, "properties.distinct_id",
					   "'properties.distinct_id' must be a string");
		return MP_E_NOMEM;
	}
	did = sent;
	if (!did || simplified) {
		const char *uid = ingest_id_text(res, key[IK_USER_ID]);
		const char *dev = ingest_id_text(res, key[IK_DEVICE_ID]);
		char tmp[300];

		if (dev && dev[0])
			snprintf(tmp, sizeof tmp, "$device:%s", dev);
		if (uid && uid[0]) {
			did = uid;
			/* rule 4 of §9.1: the pair links the device to the user */
			if (simplified && dev && dev[0] && strlen(tmp) <= INGEST_MAX_STRING &&
			    !(link = ingest_keep(res, strdup(tmp))))
				return MP_E_NOMEM;
		} else if (dev && dev[0]) {
			if (!(did = sent && !strcmp(sent, tmp) ? sent : ingest_keep(res, strdup(tmp))))
				return MP_E_NOMEM;
		}
	}
	/* $merge only through the authenticated /import (spec §9.2): stored,
	 * but marked so the identity replay leaves it out */
	if (track && !simplified && !strcmp(ev->valuestring, "$merge") &&
	    !key[IK_FAILURE] &&
	    (!cJSON_AddStringToObject(props, "$failure_reason", "errMergeRequiresImport") ||
	     !cJSON_AddStringToObject(props, "$failure_description",
				      "$merge is only accepted through /import with the project secret")))
		return MP_E_NOMEM;
	if (!did && opts->use_ip && opts->client_ip) {
		uint64_t h = 1469598103934665603ULL;
		const char *p;
		char tmp[32];

		for (p = opts->client_ip; *p; p++)
			h = (h ^ (unsigned char)*p) * 1099511628211ULL;
		snprintf(tmp, sizeof tmp, "%016llx", (unsigned long long)h);
		if (!(did = ingest_keep(res, strdup(tmp))))
			return MP_E_NOMEM;
	}
	if (!did)
		did = "";
	if (sent && sent[0] && strcmp(sent, did) != 0 &&
	    !key[IK_BEFORE] &&
	    !cJSON_AddStringToObject(props, "$distinct_id_before_identity", sent))
		return MP_E_NOMEM;
	valid = ingest_utf8_scan(did, &len);
	if (len > INGEST_MAX_STRING)
		return ingest_fail(res, index, rec, "properties.distinct_id",
				   "'properties.distinct_id' is longer than 255 bytes");
	if (opts->strict && did[0] && ingest_blocked_id(did))
		return ingest_fail(res, index, rec, "properties.distinct_id",
				   "'properties.distinct_id' is invalid: '%.60s' is a blocked value", did);
	if (!valid)
		return ingest_fail(res, index, rec, "properties.distinct_id",
				   "'properties.distinct_id' is not valid UTF-8");
	/* $insert_id */
	iv = key[IK_INSERT_ID];
	if (opts->strict && opts->endpoint == INGEST_IMPORT &&
	    (!cJSON_IsString(iv) || !ingest_insert_id_ok(iv->valuestring)))
		return ingest_fail(res, index, rec, "properties.$insert_id",
				   iv ? "'properties.$insert_id' is invalid: must be 1-36 characters of [A-Za-z0-9-]"
				      : "'properties.$insert_id' is required");
	if (iv && (!cJSON_IsString(iv) || !iv->valuestring[0] || strlen(iv->valuestring) > INGEST_MAX_STRING)) {
		/* not usable as a dedup key: drop it so it is not stored either */
		cJSON_Delete(cJSON_DetachItemViaPointer(props, iv));
		iv = NULL;
	}
	/* limits, truncation, UTF-8 */
	memset(&ck, 0, sizeof ck);
	ck.strict = opts->strict;
	for (c = props->child; c; c = c->next) {
		if (!c->string)
			continue;
		if (++nprops > INGEST_MAX_PROPS)
			return ingest_fail(res, index, rec, "properties",
					   "event has more than %d properties", INGEST_MAX_PROPS);
		if ((rc = ingest_fix_utf8(&c->string, opts->strict, &klen0, &klen)) == MP_E_NOMEM)
			return rc;
		if (klen0 > INGEST_MAX_KEY)
			return ingest_fail(res, index, rec, "properties",
					   "a property name is longer than %d bytes", INGEST_MAX_KEY);
		if (rc == MP_E_INVALID)
			return ingest_fail(res, index, rec, "properties", "a property name is not valid UTF-8");
		if ((rc = ingest_check_value(c, c->string, klen, 0, &ck)) == MP_E_INVALID)
			return ingest_fail(res, index, rec, ck.field, "%s", ck.message);
		if (rc != MP_OK)
			return rc;
	}
	valid = ingest_utf8_scan(ev->valuestring, &len);
	if (len > INGEST_MAX_STRING) {
		/* what counts is the name as kept: scan the cut name again */
		profile_utf8_truncate(ev->valuestring, INGEST_MAX_STRING);
		valid = ingest_utf8_scan(ev->valuestring, &len);
	}
	if (!valid)
		return ingest_fail(res, index, rec, "event", "'event' is not valid UTF-8");
	/* Kept in the row itself (time, distinct_id) or not kept at all (token,
	 * ip: spec §7.1; mp_processing_time_ms is set by export, so a re-imported
	 * export must not carry it twice).  Detached, not freed: DID may point
	 * into the distinct_id item. */
	if ((rc = ingest_bury(res, props, key[IK_TIME])) != MP_OK ||
	    (rc = ingest_bury(res, props, key[IK_DID])) != MP_OK ||
	    (rc = ingest_bury(res, props, key[IK_TOKEN])) != MP_OK || (rc = ingest_bury(res, props, key[IK_IP])) != MP_OK ||
	    (rc = ingest_bury(res, props, key[IK_PTIME])) != MP_OK)
		return rc;
	if (opts->endpoint == INGEST_IMPORT) {
		if (key[IK_IMPORT])
			cJSON_Delete(cJSON_DetachItemViaPointer(props, key[IK_IMPORT]));
		if (!cJSON_AddTrueToObject(props, "$import"))
			return MP_E_NOMEM;
	}
	se = &res->batch.events[res->batch.n_events++];
	se->time_ms = t;
	se->name = ev->valuestring;
	se->distinct_id = did;
	se->insert_id = iv ? iv->valuestring : NULL;
	se->link_device = link;
	se->props = props;
	res->n_valid++;
	return MP_OK;
}

/* ---------- profile and group updates ---------- */

static const char *const ingest_ops[] = {
	"$set", "$set_once", "$add", "$append", "$union", "$remove", "$unset", "$delete", "$merge", NULL
};

static enum mp_err ingest_update(struct ingest_result *res, const struct ingest_opts *opts,
				 cJSON *rec, size_t index)
{
	int grp = opts->endpoint == INGEST_GROUPS;
	struct store_update *u;
	const char *did = NULL, *gk = NULL, *gid = NULL;
	size_t i;
	int has_op = 0;
	enum mp_err rc;

	if (!cJSON_IsObject(rec))
		return ingest_fail(res, index, rec, "$token", "record is not a JSON object");
	if (!ingest_project_of(res, opts, cJSON_GetObjectItemCaseSensitive(rec, "$token"), index, rec,
			       "$token", &rc))
		return rc;
	if (grp) {
		gk = ingest_id_text(res, cJSON_GetObjectItemCaseSensitive(rec, "$group_key"));
		gid = ingest_id_text(res, cJSON_GetObjectItemCaseSensitive(rec, "$group_id"));
		if (!gk || !gk[0])
			return ingest_fail(res, index, rec, "$group_key", "'$group_key' must be a non-empty string");
		if (!gid || !gid[0])
			return ingest_fail(res, index, rec, "$group_id", "'$group_id' must be a non-empty string or number");
		if (strlen(gk) > INGEST_MAX_STRING || strlen(gid) > INGEST_MAX_STRING)
			return ingest_fail(res, index, rec, "$group_id", "'$group_key'/'$group_id' longer than 255 bytes");
	} else {
		did = ingest_id_text(res, cJSON_GetObjectItemCaseSensitive(rec, "$distinct_id"));
		if (!did || !did[0])
			return ingest_fail(res, index, rec, "$distinct_id", "'$distinct_id' must be a non-empty string");
		if (strlen(did) > INGEST_MAX_STRING)
			return ingest_fail(res, index, rec, "$distinct_id", "'$distinct_id' is longer than 255 bytes");
		if (opts->strict && ingest_blocked_id(did))
			return ingest_fail(res, index, rec, "$distinct_id",
					   "'$distinct_id' is invalid: '%.60s' is a blocked value", did);
	}
	for (i = 0; ingest_ops[i]; i++)
		if (cJSON_GetObjectItemCaseSensitive(rec, ingest_ops[i]))
			has_op = 1;
	if (!has_op)
		return ingest_fail(res, index, rec, "$set", "no profile operation in update");
	if (grp && cJSON_GetObjectItemCaseSensitive(rec, "$append") &&
	    !cJSON_GetObjectItemCaseSensitive(rec, "$set") && !cJSON_GetObjectItemCaseSensitive(rec, "$set_once") &&
	    !cJSON_GetObjectItemCaseSensitive(rec, "$unset") && !cJSON_GetObjectItemCaseSensitive(rec, "$remove") &&
	    !cJSON_GetObjectItemCaseSensitive(rec, "$union") && !cJSON_GetObjectItemCaseSensitive(rec, "$delete") &&
	    !cJSON_GetObjectItemCaseSensitive(rec, "$add") && !cJSON_GetObjectItemCaseSensitive(rec, "$merge"))
		return ingest_fail(res, index, rec, "$append", "$append is not supported for group profiles");
	u = &res->batch.updates[res->batch.n_updates++];
	memset(u, 0, sizeof *u);
	u->kind = grp ? PROFILE_GROUP : PROFILE_USER;
	u->distinct_id = did;
	u->group_key = gk;
	u->group_id = gid;
	u->update = rec;
	res->n_valid++;
	return MP_OK;
}

/* ---------- entry points ---------- */

enum mp_err ingest_prepare(cJSON *records, const struct ingest_opts *opts, struct ingest_result *res)
{
	size_t n = (size_t)cJSON_GetArraySize(records), i = 0;
	int events = opts->endpoint == INGEST_TRACK || opts->endpoint == INGEST_IMPORT;
	cJSON *rec;
	enum mp_err rc;

	memset(res, 0, sizeof *res);
	res->records_ = records;
	res->n_records = n;
	res->batch.recv_ms = opts->now_ms;
	res->project = opts->project;
	if (n > (size_t)opts->cfg->max_events_per_request) {
		snprintf(res->first_error, sizeof res->first_error,
			 "too many records in one request: %zu (the limit is %d)", n,
			 opts->cfg->max_events_per_request);
		return MP_E_TOOBIG;
	}
	if (!n)
		return MP_OK;
	if (!(res->failures = calloc(n, sizeof *res->failures)))
		return MP_E_NOMEM;
	if (events)
		res->batch.events = calloc(n, sizeof *res->batch.events);
	else
		res->batch.updates = calloc(n, sizeof *res->batch.updates);
	if (!res->batch.events && !res->batch.updates)
		return MP_E_NOMEM;
	cJSON_ArrayForEach(rec, records) {
		rc = events ? ingest_event(res, opts, rec, i) : ingest_update(res, opts, rec, i);
		if (rc != MP_OK)
			return rc;
		i++;
	}
	return MP_OK;
}

void ingest_result_forget_trees(struct ingest_result *res)
{
	res->records_ = NULL;
	res->graveyard_ = NULL;
}

void ingest_result_free(struct ingest_result *res)
{
	size_t i;

	if (!res)
		return;
	for (i = 0; i < res->n_failures; i++) {
		free(res->failures[i].insert_id);
		free(res->failures[i].distinct_id);
	}
	free(res->failures);
	free(res->batch.events);
	free(res->batch.updates);
	for (i = 0; i < res->n_strings_; i++)
		free(res->strings_[i]);
	free(res->strings_);
	cJSON_Delete(res->records_);
	cJSON_Delete(res->graveyard_);
	memset(res, 0, sizeof *res);
}
