/*
 * q_reports.c - saved reports ("bookmarks"), dashboards, the kpi report and
 * Mixpanel's insights?bookmark_id= (docs/QUERIES.md, docs/API.md).
 *
 * A bookmark is a report type plus that report's query parameters, kept as
 * a JSON object in the project's meta.db (store_bookmark_*).  Running one is
 * a nested request (q_run_nested) to the type's report, whose parameter
 * function reads the saved parameters: one code path answers a report
 * whether it is asked directly or through a bookmark, a dashboard or
 * insights, so their answers are the same by construction.
 *
 * Invariants:
 *   1. A stored bookmark passed validation when it was saved: a known type,
 *      a name of 1..255 bytes, params a JSON object, and one run of it
 *      succeeded (a report that lands later may still refuse it: the run
 *      answers that report's error then).
 *   2. The date range of a run comes from exactly one source: the request
 *      when it has from_date, to_date or last_days, else the saved params.
 *      Within a source, from_date/to_date win over last_days; last_days N
 *      is today - (N - 1) .. today in the project's time zone.
 *   3. Every other parameter of a run is the saved one: a request cannot
 *      change what a saved report means, only its range.
 *   4. A dashboard's layout only names bookmarks that exist: the store
 *      checks them in the transaction that writes the layout, and deleting
 *      a bookmark deletes its cells in the same transaction.
 */
#include "query_report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#define RP_NAME_MAX 255           /* bytes of a bookmark's or dashboard's name */
#define RP_DESC_MAX 4096          /* bytes of a description */
#define RP_MAX_PARAMS 64          /* keys of a bookmark's params */
#define RP_LAST_DAYS_MAX 3660
#define RP_DASH_MAX_ITEMS 100     /* reports on one dashboard */
#define RP_CELL_MAX 10000         /* x, y, w, h of a layout cell */

/* Report types and the endpoint that answers each (q_table names). */
static const struct {
	const char *type;
	const char *endpoint;
} rp_types[] = {
	{ "insights", "segmentation" },
	{ "funnels", "funnels" },
	{ "retention", "retention" },
	{ "flows", "flows" },
	{ "formula", "formulas" },
	{ "kpi", "kpi" },
};

static const char *rp_endpoint(const char *type)
{
	size_t i;

	for (i = 0; i < sizeof rp_types / sizeof rp_types[0]; i++)
		if (!strcmp(rp_types[i].type, type))
			return rp_types[i].endpoint;
	return NULL;
}

/* ---------- dates ---------- */

/* "YYYY-MM-DD" of local day number DAYS (days since 1970-01-01). */
static void rp_day_str(int64_t days, char out[16])
{
	int y, m, d;

	tz_civil_from_days(days, &y, &m, &d);
	snprintf(out, 16, "%04d-%02d-%02d", y, m, d);
}

/* Local day number of instant MS. */
static int64_t rp_local_day(const struct qctx *q, int64_t ms)
{
	struct tz_civil c;

	tz_to_civil(q->tz, ms, &c);
	return tz_days_from_civil(c.year, c.month, c.day);
}

/* "YYYY-MM-DDTHH:MM:SS<frac>+HH:MM": instant MS in the project's local time. */
static void rp_iso_local(const struct qctx *q, int64_t ms, const char *frac, char out[48])
{
	struct tz_civil c;
	int32_t off = tz_offset_at(q->tz, ms), a = off < 0 ? -off : off;

	tz_to_civil(q->tz, ms, &c);
	snprintf(out, 48, "%04d-%02d-%02dT%02d:%02d:%02d%s%c%02d:%02d", c.year, c.month, c.day, c.hour, c.minute,
		 c.second, frac, off < 0 ? '-' : '+', (int)(a / 3600), (int)(a / 60 % 60));
}

/* "YYYY-MM-DDTHH:MM:SSZ": instant MS in UTC (created / updated). */
static void rp_iso_utc(int64_t ms, char out[32])
{
	int64_t s = ms >= 0 ? ms / 1000 : (ms - 999) / 1000, days = s >= 0 ? s / 86400 : (s - 86399) / 86400;
	int64_t r = s - days * 86400;
	int y, m, d;

	tz_civil_from_days(days, &y, &m, &d);
	snprintf(out, 32, "%04d-%02d-%02dT%02d:%02d:%02dZ", y, m, d, (int)(r / 3600), (int)(r / 60 % 60), (int)(r % 60));
}

/* last_days text S as N in 1..RP_LAST_DAYS_MAX; nonzero if it is not. */
static int rp_last_days(const char *s, long *n)
{
	char *end;

	*n = strtol(s, &end, 10);
	return end == s || *end || *n < 1 || *n > RP_LAST_DAYS_MAX;
}

/* ---------- saved parameters ---------- */

/* The parameter function of a nested run (invariants 2 and 3). */
struct rp_params {
	size_t n;
	char *name[RP_MAX_PARAMS];
	char *value[RP_MAX_PARAMS];  /* JSON strings as they are, other values as JSON text */
	const char *from, *to;       /* the range's from_date/to_date, NULL when absent */
	char from_buf[16], to_buf[16];
};

static void rp_params_free(struct rp_params *p)
{
	size_t i;

	for (i = 0; i < p->n; i++) {
		free(p->name[i]);
		free(p->value[i]);
	}
	memset(p, 0, sizeof *p);
}

static const char *rp_saved(const struct rp_params *p, const char *name)
{
	size_t i;

	for (i = 0; i < p->n; i++)
		if (!strcmp(p->name[i], name))
			return p->value[i];
	return NULL;
}

static const char *rp_param(void *ctx, const char *name)
{
	const struct rp_params *p = ctx;

	if (!strcmp(name, "from_date"))
		return p->from;
	if (!strcmp(name, "to_date"))
		return p->to;
	if (!strcmp(name, "last_days") || !strcmp(name, "bookmark_id"))
		return NULL;  /* resolved into from/to; never recursive */
	return rp_saved(p, name);
}

/* A saved value as parameter text, or NULL on out of memory.  JSON null
 * is never asked for (it means absent). */
static char *rp_value_text(const cJSON *v)
{
	char tmp[64];

	if (cJSON_IsString(v))
		return strdup(v->valuestring);
	if (cJSON_IsBool(v))
		return strdup(cJSON_IsTrue(v) ? "true" : "false");
	if (cJSON_IsNumber(v)) {
		double d = v->valuedouble;

		if (d == floor(d) && fabs(d) < 1e15)
			snprintf(tmp, sizeof tmp, "%lld", (long long)d);
		else
			snprintf(tmp, sizeof tmp, "%.17g", d);
		return strdup(tmp);
	}
	return cJSON_PrintUnformatted(v);
}

/* Set P from the saved PARAMS (an object) and, with USE_REQUEST, Q's
 * range parameters.  Returns 0, or the status with the message in ERR. */
static int rp_params_init(struct qctx *q, const cJSON *params, int use_request, struct rp_params *p, char *err,
			  size_t errlen)
{
	const cJSON *it;
	const char *from, *to, *last;
	long n;

	memset(p, 0, sizeof *p);
	cJSON_ArrayForEach(it, params) {
		if (cJSON_IsNull(it))
			continue;
		if (p->n == RP_MAX_PARAMS) {
			snprintf(err, errlen, "'params' has more than %d keys", RP_MAX_PARAMS);
			return 400;
		}
		p->name[p->n] = strdup(it->string ? it->string : "");
		p->value[p->n] = rp_value_text(it);
		p->n++;
		if (!p->name[p->n - 1] || !p->value[p->n - 1]) {
			snprintf(err, errlen, "out of memory");
			return 503;
		}
	}
	if (use_request && (q_param(q, "from_date") || q_param(q, "to_date") || q_param(q, "last_days"))) {
		from = q_param(q, "from_date");
		to = q_param(q, "to_date");
		last = q_param(q, "last_days");
	} else {
		from = rp_saved(p, "from_date");
		to = rp_saved(p, "to_date");
		last = rp_saved(p, "last_days");
		from = from && from[0] ? from : NULL;
		to = to && to[0] ? to : NULL;
		last = last && last[0] ? last : NULL;
	}
	if (from || to || !last) {
		p->from = from;
		p->to = to;
		return 0;
	}
	if (rp_last_days(last, &n)) {
		snprintf(err, errlen, "'last_days' must be an integer from 1 to %d", RP_LAST_DAYS_MAX);
		return 400;
	}
	{
		int64_t today = rp_local_day(q, q->now_ms);

		rp_day_str(today - (n - 1), p->from_buf);
		rp_day_str(today, p->to_buf);
	}
	p->from = p->from_buf;
	p->to = p->to_buf;
	return 0;
}

/* Run a report of TYPE with the saved PARAMS_JSON (see rp_params_init)
 * into OUT.  P (may be NULL) receives the parameters used; the caller frees
 * it.  Returns the status; on failure the message is in ERR. */
static int rp_run(struct qctx *q, const char *type, const char *params_json, int use_request, struct buf *out,
		  struct rp_params *p, char *err, size_t errlen)
{
	const char *endpoint = rp_endpoint(type);
	struct rp_params local;
	cJSON *params;
	int status;

	if (!p)
		p = &local;
	memset(p, 0, sizeof *p);
	if (!endpoint) {
		snprintf(err, errlen, "unknown report type '%.40s'", type);
		return 400;
	}
	if (!cJSON_IsObject(params = cJSON_Parse(params_json))) {
		cJSON_Delete(params);
		snprintf(err, errlen, "the saved params are not a JSON object");
		return 500;
	}
	status = rp_params_init(q, params, use_request, p, err, errlen);
	cJSON_Delete(params);
	if (status == 0)
		status = q_run_nested(q, endpoint, rp_param, p, out, err, errlen);
	if (p == &local)
		rp_params_free(p);
	return status;
}

/* ---------- the request ---------- */

/* The request as one JSON object: the JSON body's fields, and for each of
 * FIELDS the body lacks, the query-string or form parameter (JSON-valued
 * ones, "params" and "layout", parsed).  NULL after q_fail. */
static cJSON *rp_request(struct qctx *q)
{
	static const char *const fields[] = { "bookmark_id", "dashboard_id", "name", "type", "description",
					      "params", "layout" };
	cJSON *o;
	size_t i;

	if (q->rq->body && q->rq->body_len) {
		o = cJSON_ParseWithLength(q->rq->body, q->rq->body_len);
		if (!o) {
			q_fail(q, 400, "the request body is not valid JSON");
			return NULL;
		}
		if (!cJSON_IsObject(o)) {
			cJSON_Delete(o);
			q_fail(q, 400, "the request body must be a JSON object");
			return NULL;
		}
	} else if (!(o = cJSON_CreateObject())) {
		q_oom(q);
		return NULL;
	}
	for (i = 0; i < sizeof fields / sizeof fields[0]; i++) {
		const char *v = q_param(q, fields[i]);
		cJSON *item;

		if (!v || cJSON_GetObjectItemCaseSensitive(o, fields[i]))
			continue;
		if (!strcmp(fields[i], "params") || !strcmp(fields[i], "layout")) {
			if (!(item = cJSON_Parse(v))) {
				q_fail(q, 400, "'%s' is not valid JSON", fields[i]);
				cJSON_Delete(o);
				return NULL;
			}
		} else if (!(item = cJSON_CreateString(v))) {
			q_oom(q);
			cJSON_Delete(o);
			return NULL;
		}
		cJSON_AddItemToObject(o, fields[i], item); /* o owns item */
	}
	return o;
}

/* Positive integer FIELD of O (a number or digits) into *ID.  Nonzero after
 * q_fail: absent, or not a positive integer. */
static int rp_id(struct qctx *q, const cJSON *o, const char *field, int64_t *id)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
	double d = 0;

	if (!v || cJSON_IsNull(v))
		return q_fail(q, 400, "'%s' is a required parameter", field);
	if (cJSON_IsNumber(v)) {
		d = v->valuedouble;
	} else if (cJSON_IsString(v) && v->valuestring[0]) {
		char *end;

		d = strtod(v->valuestring, &end);
		if (*end || strspn(v->valuestring, "0123456789") != strlen(v->valuestring))
			d = 0;
	}
	if (!(d >= 1 && d <= 9007199254740992.0 && d == floor(d)))
		return q_fail(q, 400, "'%s' must be a positive integer", field);
	*id = (int64_t)d;
	return 0;
}

/* bookmark_id / dashboard_id from the query string or form (GET endpoints). */
static int rp_param_id(struct qctx *q, const char *field, int64_t *id)
{
	cJSON *o = rp_request(q);
	int rc;

	if (!o)
		return q->status;
	rc = rp_id(q, o, field, id);
	cJSON_Delete(o);
	return rc;
}

/* Text FIELD of O: *OUT NULL when absent (an error when REQUIRED); a string
 * of at most MAX bytes, non-empty when NONEMPTY.  Nonzero after q_fail. */
static int rp_text(struct qctx *q, const cJSON *o, const char *field, int required, int nonempty, size_t max,
		   const char **out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);

	*out = NULL;
	if (!v || cJSON_IsNull(v))
		return required ? q_fail(q, 400, "'%s' is a required parameter", field) : 0;
	if (!cJSON_IsString(v))
		return q_fail(q, 400, "'%s' must be a string", field);
	if (nonempty && !v->valuestring[0])
		return q_fail(q, 400, "'%s' must not be empty", field);
	if (strlen(v->valuestring) > max)
		return q_fail(q, 400, "'%s' is longer than %zu bytes", field, max);
	*out = v->valuestring;
	return 0;
}

static int rp_store_fail(struct qctx *q, enum mp_err rc, const char *what)
{
	return q_fail(q, 503, "cannot %s: %s", what, mp_strerror(rc));
}

/* JSON text helpers: OUT's "key": prefix, and a string member. */
static int rp_key(struct buf *out, const char *key)
{
	return buf_json_str(out, key, strlen(key)) != MP_OK || buf_putc(out, ':') != MP_OK;
}

static int rp_str_member(struct buf *out, const char *key, const char *v)
{
	return rp_key(out, key) || buf_json_str(out, v, strlen(v)) != MP_OK;
}

static int rp_time_member(struct buf *out, const char *key, int64_t ms)
{
	char t[32];

	rp_iso_utc(ms, t);
	return rp_str_member(out, key, t);
}

/* ---------- bookmarks ---------- */

/* Validate a definition (invariant 1) and run it once; PARAMS is its JSON
 * text.  Returns 0, or nonzero after q_fail: 400 with the report's own
 * message when the run fails (5xx stays 5xx). */
static int rp_validate(struct qctx *q, const char *type, const char *params)
{
	struct buf scratch;
	char err[512];
	int status;

	if (!rp_endpoint(type))
		return q_fail(q, 400, "'type' must be one of: insights, funnels, retention, flows, formula, kpi "
			      "(got '%.40s')", type);
	buf_init(&scratch, q->out->max);
	status = rp_run(q, type, params, 0, &scratch, NULL, err, sizeof err);
	buf_free(&scratch);
	if (status == 200)
		return 0;
	return q_fail(q, status >= 500 ? status : 400, "%s", err);
}

/* PARAMS of O as compact JSON text (caller frees), or NULL after q_fail. */
static char *rp_params_text(struct qctx *q, const cJSON *o)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "params");
	char *t;

	if (!cJSON_IsObject(v)) {
		q_fail(q, 400, "'params' must be a JSON object of the report's parameters");
		return NULL;
	}
	if (!(t = cJSON_PrintUnformatted(v)))
		q_oom(q);
	return t;
}

int q_bookmarks_create(struct qctx *q)
{
	cJSON *o = rp_request(q);
	const char *name, *type, *desc;
	char *params = NULL;
	int64_t id;
	enum mp_err rc;
	int status;

	if (!o)
		return q->status;
	if (rp_text(q, o, "name", 1, 1, RP_NAME_MAX, &name) || rp_text(q, o, "type", 1, 1, 64, &type) ||
	    rp_text(q, o, "description", 0, 0, RP_DESC_MAX, &desc) || !(params = rp_params_text(q, o)) ||
	    rp_validate(q, type, params)) {
		status = q->status;
		goto out;
	}
	if ((rc = store_bookmark_create(q->sp, name, type, desc ? desc : "", params, &id)) != MP_OK) {
		status = rp_store_fail(q, rc, "save the bookmark");
		goto out;
	}
	status = buf_printf(q->out, "{\"status\":\"ok\",\"bookmark_id\":%lld}", (long long)id) == MP_OK ? 200 : q_oom(q);
out:
	free(params);
	cJSON_Delete(o);
	return status;
}

int q_bookmarks_list(struct qctx *q)
{
	struct store_bookmark *a = NULL;
	size_t n = 0, i;
	enum mp_err rc;
	int bad = 0;

	if ((rc = store_bookmark_list(q->sp, &a, &n)) != MP_OK)
		return rp_store_fail(q, rc, "read the bookmarks");
	bad = buf_putc(q->out, '[') != MP_OK;
	for (i = 0; i < n && !bad; i++)
		bad = buf_printf(q->out, "%s{\"bookmark_id\":%lld,", i ? "," : "", (long long)a[i].id) != MP_OK ||
		      rp_str_member(q->out, "name", a[i].name) || buf_putc(q->out, ',') != MP_OK ||
		      rp_str_member(q->out, "type", a[i].type) || buf_putc(q->out, ',') != MP_OK ||
		      rp_str_member(q->out, "description", a[i].description) || buf_putc(q->out, ',') != MP_OK ||
		      rp_time_member(q->out, "created", a[i].created_ms) || buf_putc(q->out, ',') != MP_OK ||
		      rp_time_member(q->out, "updated", a[i].updated_ms) || buf_putc(q->out, '}') != MP_OK;
	if (!bad)
		bad = buf_putc(q->out, ']') != MP_OK;
	store_bookmark_list_free(a, n);
	return bad ? q_oom(q) : 200;
}

/* Bookmark ID into *B, or nonzero after q_fail (404 when there is none). */
static int rp_bookmark_load(struct qctx *q, int64_t id, struct store_bookmark *b)
{
	enum mp_err rc = store_bookmark_get(q->sp, id, b);

	if (rc == MP_E_NOTFOUND)
		return q_fail(q, 404, "bookmark %lld not found", (long long)id);
	if (rc != MP_OK)
		return rp_store_fail(q, rc, "read the bookmark");
	return 0;
}

int q_bookmarks_get(struct qctx *q)
{
	struct store_bookmark b;
	int64_t id;
	int bad;

	if (rp_param_id(q, "bookmark_id", &id) || rp_bookmark_load(q, id, &b))
		return q->status;
	bad = buf_printf(q->out, "{\"bookmark_id\":%lld,", (long long)b.id) != MP_OK ||
	      rp_str_member(q->out, "name", b.name) || buf_putc(q->out, ',') != MP_OK ||
	      rp_str_member(q->out, "type", b.type) || buf_putc(q->out, ',') != MP_OK ||
	      rp_str_member(q->out, "description", b.description) || buf_putc(q->out, ',') != MP_OK ||
	      rp_key(q->out, "params") || buf_append(q->out, b.params, strlen(b.params)) != MP_OK ||
	      buf_putc(q->out, ',') != MP_OK || rp_time_member(q->out, "created", b.created_ms) ||
	      buf_putc(q->out, ',') != MP_OK || rp_time_member(q->out, "updated", b.updated_ms) ||
	      buf_putc(q->out, '}') != MP_OK;
	store_bookmark_clear(&b);
	return bad ? q_oom(q) : 200;
}

int q_bookmarks_update(struct qctx *q)
{
	cJSON *o = rp_request(q);
	struct store_bookmark b;
	const char *name, *type, *desc;
	char *params = NULL;
	int64_t id;
	enum mp_err rc;
	int status;

	memset(&b, 0, sizeof b);
	if (!o)
		return q->status;
	if (rp_id(q, o, "bookmark_id", &id) || rp_text(q, o, "name", 0, 1, RP_NAME_MAX, &name) ||
	    rp_text(q, o, "type", 0, 1, 64, &type) || rp_text(q, o, "description", 0, 0, RP_DESC_MAX, &desc) ||
	    (cJSON_GetObjectItemCaseSensitive(o, "params") && !(params = rp_params_text(q, o)))) {
		status = q->status;
		goto out;
	}
	if (!name && !type && !desc && !params) {
		status = q_fail(q, 400, "nothing to update: give 'name', 'type', 'params' or 'description'");
		goto out;
	}
	if (rp_bookmark_load(q, id, &b)) {
		status = q->status;
		goto out;
	}
	/* the definition as it will be, validated as a whole */
	if ((type || params) && rp_validate(q, type ? type : b.type, params ? params : b.params)) {
		status = q->status;
		goto out;
	}
	rc = store_bookmark_update(q->sp, id, name, type, desc, params);
	if (rc == MP_E_NOTFOUND)
		status = q_fail(q, 404, "bookmark %lld not found", (long long)id);
	else if (rc != MP_OK)
		status = rp_store_fail(q, rc, "save the bookmark");
	else
		status = buf_printf(q->out, "{\"status\":\"ok\",\"bookmark_id\":%lld}", (long long)id) == MP_OK ? 200
														 : q_oom(q);
out:
	store_bookmark_clear(&b);
	free(params);
	cJSON_Delete(o);
	return status;
}

int q_bookmarks_delete(struct qctx *q)
{
	cJSON *o = rp_request(q);
	int64_t id;
	enum mp_err rc;
	int status;

	if (!o)
		return q->status;
	if (rp_id(q, o, "bookmark_id", &id)) {
		status = q->status;
	} else if ((rc = store_bookmark_delete(q->sp, id)) == MP_E_NOTFOUND) {
		status = q_fail(q, 404, "bookmark %lld not found", (long long)id);
	} else if (rc != MP_OK) {
		status = rp_store_fail(q, rc, "delete the bookmark");
	} else {
		status = buf_printf(q->out, "{\"status\":\"ok\",\"bookmark_id\":%lld}", (long long)id) == MP_OK ? 200
														 : q_oom(q);
	}
	cJSON_Delete(o);
	return status;
}

int q_bookmarks_run(struct qctx *q)
{
	struct store_bookmark b;
	char err[512];
	int64_t id;
	int status;

	if (rp_param_id(q, "bookmark_id", &id) || rp_bookmark_load(q, id, &b))
		return q->status;
	status = rp_run(q, b.type, b.params, 1, q->out, NULL, err, sizeof err);
	store_bookmark_clear(&b);
	return status == 200 ? 200 : q_fail(q, status, "%s", err);
}

/* ---------- insights ---------- */

/* Mixpanel's ISO bucket start of a segmentation key ("YYYY-MM-DD" or
 * "YYYY-MM-DD HH:MM:SS", local) into OUT; 0 when KEY is neither. */
static int rp_key_iso(const struct qctx *q, const char *key, char out[48])
{
	int y, m, d, hh = 0, mm = 0, ss = 0;
	size_t n = strlen(key);

	if (n < 10 || !tz_parse_date(key, 10, &y, &m, &d))
		return 0;
	if (n > 10 && sscanf(key + 10, " %d:%d:%d", &hh, &mm, &ss) != 3)
		return 0;
	rp_iso_local(q, tz_from_civil(q->tz, y, m, d, hh, mm), "", out);
	return 1;
}

/* {"<iso>":v,...} of segmentation series SERIES (keys) and VALUES ({key:v}). */
static int rp_insights_series(struct qctx *q, const cJSON *series, const cJSON *values)
{
	const cJSON *k;
	char iso[48];
	int first = 1;

	if (buf_putc(q->out, '{') != MP_OK)
		return 1;
	cJSON_ArrayForEach(k, series) {
		const cJSON *v = cJSON_IsString(k) ? cJSON_GetObjectItemCaseSensitive(values, k->valuestring) : NULL;

		if (!v || !cJSON_IsNumber(v) || !rp_key_iso(q, k->valuestring, iso))
			continue;
		if ((!first && buf_putc(q->out, ',') != MP_OK) || rp_key(q->out, iso) ||
		    buf_json_num(q->out, v->valuedouble) != MP_OK)
			return 1;
		first = 0;
	}
	return buf_putc(q->out, '}') != MP_OK;
}

/* The insights answer (spec §10.17) from segmentation answer SEG; P holds
 * the parameters it ran with. */
static int rp_insights_answer(struct qctx *q, const char *seg, const struct rp_params *p)
{
	cJSON *root = cJSON_Parse(seg), *data, *series, *values, *it;
	const char *event = rp_saved(p, "event"), *on = rp_saved(p, "on");
	char now[48], from[48], to[48];
	int y, m, d, bad = 0, first = 1;
	int64_t from_ms, to_ms;

	data = cJSON_GetObjectItemCaseSensitive(root, "data");
	series = cJSON_GetObjectItemCaseSensitive(data, "series");
	values = cJSON_GetObjectItemCaseSensitive(data, "values");
	if (!cJSON_IsArray(series) || !cJSON_IsObject(values) || !event || !p->from || !p->to ||
	    !tz_parse_date(p->from, strlen(p->from), &y, &m, &d)) {
		cJSON_Delete(root);
		return q_fail(q, 500, "cannot read the segmentation answer");
	}
	from_ms = tz_from_civil(q->tz, y, m, d, 0, 0);
	if (!tz_parse_date(p->to, strlen(p->to), &y, &m, &d)) {
		cJSON_Delete(root);
		return q_fail(q, 500, "cannot read the segmentation answer");
	}
	to_ms = tz_from_civil(q->tz, y, m, d + 1, 0, 0) - 1;
	{
		/* computed_at: UTC with microseconds, as Mixpanel writes it */
		char t[32];

		rp_iso_utc(q->now_ms, t);
		snprintf(now, sizeof now, "%.19s.%03d000+00:00", t, (int)(q->now_ms % 1000));
	}
	rp_iso_local(q, from_ms, "", from);
	rp_iso_local(q, to_ms, ".999000", to);
	bad = buf_putc(q->out, '{') != MP_OK || rp_str_member(q->out, "computed_at", now) ||
	      buf_append(q->out, ",\"date_range\":{", 15) != MP_OK || rp_str_member(q->out, "from_date", from) ||
	      buf_putc(q->out, ',') != MP_OK || rp_str_member(q->out, "to_date", to) ||
	      buf_append(q->out, "},\"headers\":[\"$event\"", 21) != MP_OK;
	if (!bad && on)
		bad = buf_putc(q->out, ',') != MP_OK || buf_json_str(q->out, on, strlen(on)) != MP_OK;
	bad = bad || buf_append(q->out, "],\"series\":{", 12) != MP_OK || rp_key(q->out, event);
	if (!bad && !on) {
		bad = rp_insights_series(q, series, cJSON_GetObjectItemCaseSensitive(values, event));
	} else if (!bad) {
		/* with `on`: one level per segment, in segmentation's order */
		bad = buf_putc(q->out, '{') != MP_OK;
		cJSON_ArrayForEach(it, values) {
			if (bad)
				break;
			bad = (!first && buf_putc(q->out, ',') != MP_OK) || rp_key(q->out, it->string) ||
			      rp_insights_series(q, series, it);
			first = 0;
		}
		bad = bad || buf_putc(q->out, '}') != MP_OK;
	}
	bad = bad || buf_append(q->out, "}}", 2) != MP_OK;
	cJSON_Delete(root);
	return bad ? q_oom(q) : 200;
}

int q_insights(struct qctx *q)
{
	struct store_bookmark b;
	struct rp_params p;
	struct buf seg;
	char err[512];
	int64_t id;
	int status;

	if (rp_param_id(q, "bookmark_id", &id) || rp_bookmark_load(q, id, &b))
		return q->status;
	if (strcmp(b.type, "insights") != 0) {
		status = q_fail(q, 400, "bookmark %lld is a %s report, not insights: run it with bookmarks/run",
				(long long)id, b.type);
		store_bookmark_clear(&b);
		return status;
	}
	buf_init(&seg, q->out->max);
	status = rp_run(q, b.type, b.params, 1, &seg, &p, err, sizeof err);
	if (status != 200)
		q_fail(q, status, "%s", err);
	else
		status = rp_insights_answer(q, seg.data, &p);
	rp_params_free(&p);
	buf_free(&seg);
	store_bookmark_clear(&b);
	return status;
}

/* ---------- kpi ---------- */

/* The range of a kpi: from_date/to_date, or last_days.  [*FROM, *TO) as
 * local midnights.  Nonzero after q_fail. */
static int rp_kpi_range(struct qctx *q, int64_t *from, int64_t *to)
{
	const char *last = q_param(q, "last_days");
	int64_t today;
	int y, m, d;
	long n;

	if (q_param(q, "from_date") || q_param(q, "to_date") || !last)
		return q_dates(q, from, to);
	if (rp_last_days(last, &n))
		return q_fail(q, 400, "'last_days' must be an integer from 1 to %d", RP_LAST_DAYS_MAX);
	today = rp_local_day(q, q->now_ms);
	tz_civil_from_days(today - (n - 1), &y, &m, &d);
	*from = tz_from_civil(q->tz, y, m, d, 0, 0);
	tz_civil_from_days(today + 1, &y, &m, &d);
	*to = tz_from_civil(q->tz, y, m, d, 0, 0);
	return 0;
}

int q_kpi(struct qctx *q)
{
	const char *event = q_param(q, "event"), *type = q_param(q, "type");
	int64_t from, to, pfrom, days;
	double value, previous;
	char f[16], t[16], pf[16], pt[16];
	int y, m, d;

	if (!event)
		return q_fail(q, 400, "'event' is a required parameter");
	if (q_param(q, "on"))
		return q_fail(q, 400, "'on' is not supported by kpi (it is one number)");
	if (rp_kpi_range(q, &from, &to))
		return q->status;
	/* the previous period: as many local days, right before */
	days = rp_local_day(q, to) - rp_local_day(q, from);
	tz_civil_from_days(rp_local_day(q, from) - days, &y, &m, &d);
	pfrom = tz_from_civil(q->tz, y, m, d, 0, 0);
	if (q_segmentation_total(q, event, from, to, &value) || q_segmentation_total(q, event, pfrom, from, &previous))
		return q->status;
	rp_day_str(rp_local_day(q, from), f);
	rp_day_str(rp_local_day(q, to) - 1, t);
	rp_day_str(rp_local_day(q, pfrom), pf);
	rp_day_str(rp_local_day(q, from) - 1, pt);
	if (buf_putc(q->out, '{') != MP_OK || rp_str_member(q->out, "event", event) ||
	    buf_putc(q->out, ',') != MP_OK || rp_str_member(q->out, "type", type ? type : "general") ||
	    buf_printf(q->out, ",\"from_date\":\"%s\",\"to_date\":\"%s\",\"previous_from_date\":\"%s\","
		       "\"previous_to_date\":\"%s\",\"value\":", f, t, pf, pt) != MP_OK ||
	    buf_json_num(q->out, value) != MP_OK || buf_append(q->out, ",\"previous\":", 12) != MP_OK ||
	    buf_json_num(q->out, previous) != MP_OK || buf_append(q->out, ",\"change\":", 10) != MP_OK ||
	    (previous != 0 ? buf_json_num(q->out, (value - previous) / previous)
			   : buf_append(q->out, "null", 4)) != MP_OK ||
	    buf_putc(q->out, '}') != MP_OK)
		return q_oom(q);
	return 200;
}

/* ---------- dashboards ---------- */

/* Integer FIELD of cell V in [MIN, MAX], DEF when absent.  Nonzero after q_fail. */
static int rp_cell_int(struct qctx *q, const cJSON *v, size_t i, const char *field, int def, int min, int *out)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(v, field);

	*out = def;
	if (!x || cJSON_IsNull(x))
		return 0;
	if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) || x->valuedouble < min ||
	    x->valuedouble > RP_CELL_MAX)
		return q_fail(q, 400, "layout[%zu].%s must be an integer from %d to %d", i, field, min, RP_CELL_MAX);
	*out = (int)x->valuedouble;
	return 0;
}

/* The layout array ARR as *N cells (caller frees *ITEMS).  Nonzero after q_fail. */
static int rp_layout(struct qctx *q, const cJSON *arr, struct store_dash_item **items, size_t *n)
{
	const cJSON *v;
	size_t i = 0;

	*items = NULL;
	*n = 0;
	if (!cJSON_IsArray(arr))
		return q_fail(q, 400, "'layout' must be a JSON array of {\"bookmark_id\":N,\"x\":..,\"y\":..,\"w\":..,\"h\":..}");
	if (cJSON_GetArraySize(arr) > RP_DASH_MAX_ITEMS)
		return q_fail(q, 400, "a dashboard has at most %d reports", RP_DASH_MAX_ITEMS);
	if (!(*items = calloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof **items)))
		return q_oom(q);
	cJSON_ArrayForEach(v, arr) {
		struct store_dash_item *it = &(*items)[i];

		if (!cJSON_IsObject(v))
			return q_fail(q, 400, "layout[%zu] must be an object {\"bookmark_id\":N,...}", i);
		if (rp_id(q, v, "bookmark_id", &it->bookmark_id))
			return q_fail(q, 400, "layout[%zu].bookmark_id must be a positive integer", i);
		if (rp_cell_int(q, v, i, "x", 0, 0, &it->x) || rp_cell_int(q, v, i, "y", 0, 0, &it->y) ||
		    rp_cell_int(q, v, i, "w", 6, 1, &it->w) || rp_cell_int(q, v, i, "h", 4, 1, &it->h))
			return q->status;
		i++;
	}
	*n = i;
	return 0;
}

static int rp_dash_missing(struct qctx *q, enum mp_err rc, int64_t dashboard, int64_t missing, const char *what)
{
	if (rc == MP_E_NOTFOUND && missing)
		return q_fail(q, 400, "layout: bookmark %lld does not exist", (long long)missing);
	if (rc == MP_E_NOTFOUND)
		return q_fail(q, 404, "dashboard %lld not found", (long long)dashboard);
	return rp_store_fail(q, rc, what);
}

int q_dashboards_create(struct qctx *q)
{
	cJSON *o = rp_request(q);
	struct store_dash_item *items = NULL;
	const char *name, *desc;
	size_t n = 0;
	int64_t id = 0, missing = 0;
	enum mp_err rc;
	int status;

	if (!o)
		return q->status;
	if (rp_text(q, o, "name", 1, 1, RP_NAME_MAX, &name) || rp_text(q, o, "description", 0, 0, RP_DESC_MAX, &desc) ||
	    rp_layout(q, cJSON_GetObjectItemCaseSensitive(o, "layout"), &items, &n)) {
		status = q->status;
		goto out;
	}
	if ((rc = store_dashboard_create(q->sp, name, desc ? desc : "", items, n, &id, &missing)) != MP_OK)
		status = rp_dash_missing(q, rc, 0, missing, "save the dashboard");
	else
		status = buf_printf(q->out, "{\"status\":\"ok\",\"dashboard_id\":%lld}", (long long)id) == MP_OK ? 200
														  : q_oom(q);
out:
	free(items);
	cJSON_Delete(o);
	return status;
}

int q_dashboards_list(struct qctx *q)
{
	struct store_dashboard *a = NULL;
	size_t n = 0, i;
	enum mp_err rc;
	int bad;

	if ((rc = store_dashboard_list(q->sp, &a, &n)) != MP_OK)
		return rp_store_fail(q, rc, "read the dashboards");
	bad = buf_putc(q->out, '[') != MP_OK;
	for (i = 0; i < n && !bad; i++)
		bad = buf_printf(q->out, "%s{\"dashboard_id\":%lld,", i ? "," : "", (long long)a[i].id) != MP_OK ||
		      rp_str_member(q->out, "name", a[i].name) || buf_putc(q->out, ',') != MP_OK ||
		      rp_str_member(q->out, "description", a[i].description) || buf_putc(q->out, ',') != MP_OK ||
		      rp_time_member(q->out, "created", a[i].created_ms) || buf_putc(q->out, ',') != MP_OK ||
		      rp_time_member(q->out, "updated", a[i].updated_ms) || buf_putc(q->out, '}') != MP_OK;
	if (!bad)
		bad = buf_putc(q->out, ']') != MP_OK;
	store_dashboard_list_free(a, n);
	return bad ? q_oom(q) : 200;
}

static int rp_dashboard_load(struct qctx *q, int64_t id, struct store_dashboard *d)
{
	enum mp_err rc = store_dashboard_get(q->sp, id, d);

	if (rc == MP_E_NOTFOUND)
		return q_fail(q, 404, "dashboard %lld not found", (long long)id);
	if (rc != MP_OK)
		return rp_store_fail(q, rc, "read the dashboard");
	return 0;
}

/* "dashboard_id":N,"name":"..", the head of get's and run's answers. */
static int rp_dash_head(struct qctx *q, const struct store_dashboard *d)
{
	return buf_printf(q->out, "{\"dashboard_id\":%lld,", (long long)d->id) != MP_OK ||
	       rp_str_member(q->out, "name", d->name);
}

int q_dashboards_get(struct qctx *q)
{
	struct store_dashboard d;
	int64_t id;
	size_t i;
	int bad;

	if (rp_param_id(q, "dashboard_id", &id) || rp_dashboard_load(q, id, &d))
		return q->status;
	bad = rp_dash_head(q, &d) || buf_putc(q->out, ',') != MP_OK ||
	      rp_str_member(q->out, "description", d.description) || buf_putc(q->out, ',') != MP_OK ||
	      rp_time_member(q->out, "created", d.created_ms) || buf_putc(q->out, ',') != MP_OK ||
	      rp_time_member(q->out, "updated", d.updated_ms) || buf_append(q->out, ",\"layout\":[", 11) != MP_OK;
	for (i = 0; i < d.n_items && !bad; i++) {
		const struct store_dash_item *it = &d.items[i];

		bad = buf_printf(q->out, "%s{\"bookmark_id\":%lld,\"x\":%d,\"y\":%d,\"w\":%d,\"h\":%d,", i ? "," : "",
				 (long long)it->bookmark_id, it->x, it->y, it->w, it->h) != MP_OK ||
		      rp_str_member(q->out, "name", it->name) || buf_putc(q->out, ',') != MP_OK ||
		      rp_str_member(q->out, "type", it->type) || buf_putc(q->out, '}') != MP_OK;
	}
	bad = bad || buf_append(q->out, "]}", 2) != MP_OK;
	store_dashboard_clear(&d);
	return bad ? q_oom(q) : 200;
}

int q_dashboards_update(struct qctx *q)
{
	cJSON *o = rp_request(q);
	const cJSON *layout;
	struct store_dash_item *items = NULL;
	const char *name, *desc;
	size_t n = 0;
	int64_t id, missing = 0;
	enum mp_err rc;
	int status;

	if (!o)
		return q->status;
	layout = cJSON_GetObjectItemCaseSensitive(o, "layout");
	if (rp_id(q, o, "dashboard_id", &id) || rp_text(q, o, "name", 0, 1, RP_NAME_MAX, &name) ||
	    rp_text(q, o, "description", 0, 0, RP_DESC_MAX, &desc) || (layout && rp_layout(q, layout, &items, &n))) {
		status = q->status;
		goto out;
	}
	if (!name && !desc && !layout) {
		status = q_fail(q, 400, "nothing to update: give 'name', 'description' or 'layout'");
		goto out;
	}
	if ((rc = store_dashboard_update(q->sp, id, name, desc, layout != NULL, items, n, &missing)) != MP_OK)
		status = rp_dash_missing(q, rc, id, missing, "save the dashboard");
	else
		status = buf_printf(q->out, "{\"status\":\"ok\",\"dashboard_id\":%lld}", (long long)id) == MP_OK ? 200
														  : q_oom(q);
out:
	free(items);
	cJSON_Delete(o);
	return status;
}

int q_dashboards_delete(struct qctx *q)
{
	cJSON *o = rp_request(q);
	int64_t id;
	enum mp_err rc;
	int status;

	if (!o)
		return q->status;
	if (rp_id(q, o, "dashboard_id", &id))
		status = q->status;
	else if ((rc = store_dashboard_delete(q->sp, id)) != MP_OK)
		status = rp_dash_missing(q, rc, id, 0, "delete the dashboard");
	else
		status = buf_printf(q->out, "{\"status\":\"ok\",\"dashboard_id\":%lld}", (long long)id) == MP_OK ? 200
														  : q_oom(q);
	cJSON_Delete(o);
	return status;
}

/* One report of a dashboard run: {"bookmark_id","name","type","result"} or
 * {"bookmark_id","name","type","status","error"}.  Nonzero on out of memory. */
static int rp_dash_report(struct qctx *q, const struct store_dash_item *it, struct buf *scratch)
{
	struct store_bookmark b;
	enum mp_err rc = store_bookmark_get(q->sp, it->bookmark_id, &b);
	char err[512];
	int status;

	buf_reset(scratch);
	if (rc == MP_OK) {
		status = rp_run(q, b.type, b.params, 1, scratch, NULL, err, sizeof err);
	} else {
		/* deleted since the layout was read */
		status = rc == MP_E_NOTFOUND ? 404 : 503;
		snprintf(err, sizeof err, rc == MP_E_NOTFOUND ? "bookmark %lld not found" : "cannot read bookmark %lld",
			 (long long)it->bookmark_id);
	}
	store_bookmark_clear(&b);
	if (buf_printf(q->out, "{\"bookmark_id\":%lld,", (long long)it->bookmark_id) != MP_OK ||
	    rp_str_member(q->out, "name", it->name) || buf_putc(q->out, ',') != MP_OK ||
	    rp_str_member(q->out, "type", it->type) || buf_putc(q->out, ',') != MP_OK)
		return 1;
	if (status == 200)
		return rp_key(q->out, "result") || buf_append(q->out, scratch->data, scratch->len) != MP_OK ||
		       buf_putc(q->out, '}') != MP_OK;
	return buf_printf(q->out, "\"status\":%d,", status) != MP_OK || rp_str_member(q->out, "error", err) ||
	       buf_putc(q->out, '}') != MP_OK;
}

int q_dashboards_run(struct qctx *q)
{
	struct store_dashboard d;
	struct buf scratch;
	int64_t id;
	size_t i;
	int bad;

	if (rp_param_id(q, "dashboard_id", &id) || rp_dashboard_load(q, id, &d))
		return q->status;
	buf_init(&scratch, q->out->max);
	bad = rp_dash_head(q, &d) || buf_append(q->out, ",\"reports\":[", 12) != MP_OK;
	for (i = 0; i < d.n_items && !bad; i++)
		bad = (i && buf_putc(q->out, ',') != MP_OK) || rp_dash_report(q, &d.items[i], &scratch);
	bad = bad || buf_append(q->out, "]}", 2) != MP_OK;
	buf_free(&scratch);
	store_dashboard_clear(&d);
	return bad ? q_oom(q) : 200;
}
