/*
 * q_segmentation.c - event counts over time: segmentation (general, unique,
 * average; `on`, `where`, `limit`), segmentation/numeric, /sum, /average,
 * events and events/properties (docs/QUERIES.md).
 *
 * One scan of the projection serves every variant: events of the wanted
 * names inside the range pass `where`, are keyed by segment (the `on` value,
 * or the event name) and counted per time bucket, in total and per user
 * (the projection holds a user's events together, so "was this user already
 * counted in this cell" is one comparison with the cell's last user).
 */
#include "query_report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cjson/cJSON.h>

enum seg_type { SEG_GENERAL, SEG_UNIQUE, SEG_AVERAGE };

struct seg_spec {
	const uint32_t *eids;      /* wanted event names (string ids; 0 = absent) */
	size_t n_eids;
	int64_t from, to;
	const struct qbuckets *b;
	struct expr *where, *on;   /* may be NULL */
	int key_by_event;          /* no `on`: segment = event name */
};

struct seg_hit {
	struct qctx *q;
	struct qsegs *segs;
	size_t bucket;
	uint32_t user;             /* CS_NO_USER: not counted as a user */
	int failed;
};

static int seg_count(void *ctx, const char *key, size_t n)
{
	struct seg_hit *h = ctx;
	struct qsegs *s = h->segs;
	size_t k = qsegs_get(s, key, n), nb;

	if (k == SIZE_MAX) {
		q_oom(h->q);
		return -1;
	}
	nb = s->width / 2;
	s->val[k * s->width + h->bucket] += 1;
	if (h->user != CS_NO_USER && s->last[k * s->width + nb + h->bucket] != h->user + 1) {
		s->last[k * s->width + nb + h->bucket] = h->user + 1;
		s->val[k * s->width + nb + h->bucket] += 1;
	}
	return 0;
}

/* Scan: S gets width 2 * buckets (general counts, then unique counts). */
static int seg_scan(struct qctx *q, const struct seg_spec *sp, struct qsegs *s)
{
	const struct cs_view *v = q->v;
	struct cs_eval ce;
	struct seg_hit h = { q, s, 0, 0, 0 };
	size_t i, k;
	uint32_t e0 = sp->n_eids == 1 ? sp->eids[0] : 0;

	qsegs_init(s, 2 * sp->b->n);
	cs_eval_init(&ce, v);
	for (i = 0; i < v->n; i++) {
		uint32_t e = v->ev[i];
		int64_t t = v->t[i];
		size_t nm;
		const char *name;

		if (sp->n_eids == 1) {
			if (e != e0)
				continue;
		} else {
			for (k = 0; k < sp->n_eids && sp->eids[k] != e; k++)
				;
			if (k == sp->n_eids)
				continue;
		}
		if (t < sp->from || t >= sp->to || (h.bucket = qb_find(sp->b, t)) == SIZE_MAX)
			continue;
		ce.i = i;
		if (sp->where) {
			int r = q_where(q, sp->where, &ce);

			if (r < 0)
				return 1;
			if (!r)
				continue;
		}
		h.user = v->user[i];
		if (sp->on) {
			if (q_on_keys(q, sp->on, &ce, seg_count, &h))
				return 1;
		} else {
			name = cs_string(v, e, &nm);
			if (seg_count(&h, name, nm))
				return 1;
		}
	}
	return 0;
}

/* The reported value of segment K, bucket J. */
static double seg_value(const struct qsegs *s, size_t k, size_t j, enum seg_type type)
{
	size_t nb = s->width / 2;
	double g = s->val[k * s->width + j], u = s->val[k * s->width + nb + j];

	switch (type) {
	case SEG_UNIQUE: return u;
	case SEG_AVERAGE: return u > 0 ? g / u : 0;
	default: return g;
	}
}

/* {"data":{"series":[...],"values":{...}},"legend_size":N}; with NAMES
 * (the /events form) every name is listed even without events. */
static int seg_answer(struct qctx *q, struct qsegs *s, const struct qbuckets *b, enum seg_type type,
		      size_t limit, const char *const *names, size_t n_names, cJSON *only)
{
	double *total = NULL, *vals = NULL;
	size_t *order = NULL, n_order = 0, i, j, shown = 0;
	int rc = 0;

	for (i = 0; i < n_names; i++)
		if (qsegs_get(s, names[i], strlen(names[i])) == SIZE_MAX)
			return q_oom(q);
	if (!(total = calloc(s->n ? s->n : 1, sizeof *total)) || !(vals = malloc((b->n ? b->n : 1) * sizeof *vals))) {
		rc = q_oom(q);
		goto out;
	}
	for (i = 0; i < s->n; i++)
		for (j = 0; j < b->n; j++)
			total[i] += seg_value(s, i, j, type);
	if (!(order = qsegs_top(s, total, s->n, &n_order))) {
		rc = q_oom(q);
		goto out;
	}
	if (buf_append(q->out, "{\"data\":{\"series\":", 18) != MP_OK || q_json_series_keys(q, b) ||
	    buf_append(q->out, ",\"values\":{", 11) != MP_OK) {
		rc = q_oom(q);
		goto out;
	}
	for (i = 0; i < n_order && shown < limit; i++) {
		size_t k = order[i];

		if (only) {
			const cJSON *it;
			int keep = 0;

			cJSON_ArrayForEach(it, only)
				if (cJSON_IsString(it) && strlen(it->valuestring) == s->name_len[k] &&
				    !memcmp(it->valuestring, s->name[k], s->name_len[k]))
					keep = 1;
			if (!keep)
				continue;
		}
		for (j = 0; j < b->n; j++)
			vals[j] = seg_value(s, k, j, type);
		if ((shown && buf_putc(q->out, ',') != MP_OK) ||
		    q_json_series_obj(q, s->name[k], s->name_len[k], b, vals)) {
			rc = q_oom(q);
			goto out;
		}
		shown++;
	}
	if (buf_printf(q->out, "}},\"legend_size\":%zu}", shown) != MP_OK)
		rc = q_oom(q);
out:
	free(total);
	free(vals);
	free(order);
	return rc ? rc : 200;
}

static int seg_type_param(struct qctx *q, int required, enum seg_type *out)
{
	const char *t = q_param(q, "type");

	if (!t) {
		if (required)
			return q_fail(q, 400, "'type' is a required parameter (general, unique or average)");
		*out = SEG_GENERAL;
		return 0;
	}
	if (!strcmp(t, "general"))
		*out = SEG_GENERAL;
	else if (!strcmp(t, "unique"))
		*out = SEG_UNIQUE;
	else if (!strcmp(t, "average"))
		*out = SEG_AVERAGE;
	else
		return q_fail(q, 400, "'type' must be one of: general, unique, average (got '%.40s')", t);
	return 0;
}

#define UNITS_ALL ((1u << TZ_MINUTE) | (1u << TZ_HOUR) | (1u << TZ_DAY) | (1u << TZ_WEEK) | (1u << TZ_MONTH))

/* from_date/to_date with unit (or interval days) buckets. */
static int seg_range(struct qctx *q, int64_t *from, int64_t *to, struct qbuckets *b, unsigned units)
{
	enum tz_unit unit;
	long interval;

	if (q_dates(q, from, to))
		return 1;
	if (q_param(q, "interval") && !q_param(q, "unit")) {
		if (q_int(q, "interval", 1, 1, 3660, &interval))
			return 1;
		return q_buckets_days(q, *from, *to, interval, b);
	}
	if (q_unit(q, "unit", TZ_DAY, units, &unit))
		return 1;
	return q_buckets_unit(q, *from, *to, unit, b);
}

static uint32_t seg_event_id(struct qctx *q, const char *name)
{
	return cs_string_id(q->v, name, strlen(name));
}

/* segmentation and events/properties share everything but the `on`. */
static int seg_run(struct qctx *q, const char *event, struct expr *on, long def_limit, cJSON *only)
{
	struct qbuckets b = { 0 };
	struct qsegs s;
	struct seg_spec sp;
	struct expr *where = NULL;
	enum seg_type type;
	long limit;
	uint32_t eid;
	int rc;

	memset(&s, 0, sizeof s);
	if (seg_type_param(q, 0, &type) || q_int(q, "limit", def_limit, 1, 10000, &limit) ||
	    seg_range(q, &sp.from, &sp.to, &b, UNITS_ALL) || q_expr(q, "where", &where)) {
		rc = q->status;
		goto out;
	}
	eid = seg_event_id(q, event);
	sp.eids = &eid;
	sp.n_eids = 1;
	sp.b = &b;
	sp.where = where;
	sp.on = on;
	sp.key_by_event = !on;
	if (seg_scan(q, &sp, &s)) {
		rc = q->status;
		goto out;
	}
	rc = seg_answer(q, &s, &b, type, on ? (size_t)limit : 1, on ? NULL : &event, on ? 0 : 1, only);
out:
	qsegs_free(&s);
	qb_free(&b);
	expr_free(where);
	return rc;
}

int q_segmentation(struct qctx *q)
{
	const char *event = q_param(q, "event");
	struct expr *on = NULL;
	int rc;

	if (!event)
		return q_fail(q, 400, "'event' is a required parameter");
	if (q_expr(q, "on", &on))
		return q->status;
	rc = seg_run(q, event, on, 60, NULL);
	expr_free(on);
	return rc;
}

int q_events_properties(struct qctx *q)
{
	const char *event = q_param(q, "event"), *name = q_param(q, "name"), *values = q_param(q, "values");
	struct expr *on = NULL;
	cJSON *only = NULL;
	int rc;

	if (!event || !name)
		return q_fail(q, 400, "'%s' is a required parameter", event ? "name" : "event");
	if (values && !cJSON_IsArray(only = cJSON_Parse(values))) {
		cJSON_Delete(only);
		return q_fail(q, 400, "'values' must be a JSON array of strings");
	}
	if (q_property_expr(q, name, &on)) {
		cJSON_Delete(only);
		return q->status;
	}
	rc = seg_run(q, event, on, 255, only);
	expr_free(on);
	cJSON_Delete(only);
	return rc;
}

/* The last INTERVAL units up to now (the current one included). */
static int seg_interval_range(struct qctx *q, enum tz_unit unit, long interval, int64_t *from, int64_t *to)
{
	int64_t x = tz_bucket_floor(q->tz, unit, q->now_ms);
	long i;

	*to = tz_bucket_next(q->tz, unit, x);
	for (i = 1; i < interval; i++)
		x = tz_bucket_floor(q->tz, unit, x - 1);
	*from = x;
	return 0;
}

int q_events(struct qctx *q)
{
	const char *ev = q_param(q, "event");
	cJSON *arr = NULL, *it;
	const char **names = NULL;
	uint32_t *eids = NULL;
	size_t n = 0;
	struct qbuckets b = { 0 };
	struct qsegs s;
	struct seg_spec sp;
	enum seg_type type;
	enum tz_unit unit;
	int rc;

	memset(&s, 0, sizeof s);
	if (!ev)
		return q_fail(q, 400, "'event' is a required parameter (a JSON array of event names)");
	if (!cJSON_IsArray(arr = cJSON_Parse(ev))) {
		cJSON_Delete(arr);
		return q_fail(q, 400, "'event' must be a JSON array of event names");
	}
	names = calloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof *names);
	eids = calloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof *eids);
	if (!names || !eids) {
		rc = q_oom(q);
		goto out;
	}
	cJSON_ArrayForEach(it, arr) {
		if (!cJSON_IsString(it)) {
			rc = q_fail(q, 400, "'event' must be a JSON array of event names");
			goto out;
		}
		names[n] = it->valuestring;
		eids[n] = seg_event_id(q, it->valuestring);
		n++;
	}
	if (seg_type_param(q, 1, &type)) {
		rc = q->status;
		goto out;
	}
	if (!q_param(q, "unit")) {
		rc = q_fail(q, 400, "'unit' is a required parameter");
		goto out;
	}
	if (q_unit(q, "unit", TZ_DAY, UNITS_ALL, &unit)) {
		rc = q->status;
		goto out;
	}
	if (q_param(q, "from_date") || q_param(q, "to_date") || !q_param(q, "interval")) {
		if (q_dates(q, &sp.from, &sp.to)) {
			rc = q->status;
			goto out;
		}
	} else {
		long interval;

		if (q_int(q, "interval", 1, 1, 100000, &interval)) {
			rc = q->status;
			goto out;
		}
		seg_interval_range(q, unit, interval, &sp.from, &sp.to);
	}
	if (q_buckets_unit(q, sp.from, sp.to, unit, &b)) {
		rc = q->status;
		goto out;
	}
	sp.eids = eids;
	sp.n_eids = n;
	sp.b = &b;
	sp.where = NULL;
	sp.on = NULL;
	sp.key_by_event = 1;
	if (seg_scan(q, &sp, &s)) {
		rc = q->status;
		goto out;
	}
	rc = seg_answer(q, &s, &b, type, n, names, n, NULL);
out:
	qsegs_free(&s);
	qb_free(&b);
	free(names);
	free(eids);
	cJSON_Delete(arr);
	return rc;
}

/* ---------- segmentation/sum and /average ---------- */

int q_segmentation_sum(struct qctx *q, int average)
{
	const char *event = q_param(q, "event");
	struct expr *on = NULL, *where = NULL;
	struct qbuckets b = { 0 };
	double *sum = NULL, *cnt = NULL;
	int64_t from, to;
	struct cs_eval ce;
	uint32_t eid;
	size_t i, j;
	int rc;
	char stamp[64];

	if (!event)
		return q_fail(q, 400, "'event' is a required parameter");
	if (!q_param(q, "on"))
		return q_fail(q, 400, "'on' is a required parameter (a numeric expression)");
	if (q_expr(q, "on", &on) || q_expr(q, "where", &where) ||
	    seg_range(q, &from, &to, &b, (1u << TZ_HOUR) | (1u << TZ_DAY))) {
		rc = q->status;
		goto out;
	}
	if (!(sum = calloc(b.n ? b.n : 1, sizeof *sum)) || !(cnt = calloc(b.n ? b.n : 1, sizeof *cnt))) {
		rc = q_oom(q);
		goto out;
	}
	eid = seg_event_id(q, event);
	cs_eval_init(&ce, q->v);
	for (i = 0; eid && i < q->v->n; i++) {
		struct expr_value val;
		enum mp_err er;

		if (q->v->ev[i] != eid || q->v->t[i] < from || q->v->t[i] >= to ||
		    (j = qb_find(&b, q->v->t[i])) == SIZE_MAX)
			continue;
		ce.i = i;
		if (where) {
			int r = q_where(q, where, &ce);

			if (r < 0) {
				rc = q->status;
				goto out;
			}
			if (!r)
				continue;
		}
		if ((er = expr_eval(on, cs_eval_lookup, &ce, &val)) != MP_OK) {
			rc = q_fail(q, 400, "cannot evaluate 'on': %s", expr_error(on));
			goto out;
		}
		cnt[j] += 1;
		if (val.type == EXPR_NUMBER && isfinite(val.u.n))
			sum[j] += val.u.n;
	}
	{
		time_t secs = (time_t)(q->now_ms / 1000);
		struct tm tm;

		gmtime_r(&secs, &tm);
		snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%06d+00:00", tm.tm_year + 1900,
			 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			 (int)(q->now_ms % 1000) * 1000);
	}
	if (buf_printf(q->out, "{\"status\":\"ok\",\"computed_at\":\"%s\",\"results\":{", stamp) != MP_OK) {
		rc = q_oom(q);
		goto out;
	}
	for (j = 0; j < b.n; j++)
		if ((j && buf_putc(q->out, ',') != MP_OK) ||
		    buf_json_str(q->out, b.key[j], strlen(b.key[j])) != MP_OK || buf_putc(q->out, ':') != MP_OK ||
		    buf_json_num(q->out, average ? (cnt[j] > 0 ? sum[j] / cnt[j] : 0) : sum[j]) != MP_OK) {
			rc = q_oom(q);
			goto out;
		}
	rc = buf_append(q->out, "}}", 2) == MP_OK ? 200 : q_oom(q);
out:
	free(sum);
	free(cnt);
	qb_free(&b);
	expr_free(on);
	expr_free(where);
	return rc;
}

/* ---------- segmentation/numeric ---------- */

/* "12,345" style integer text (numeric bucket bounds are whole numbers). */
static void num_label(double x, char *buf, size_t n)
{
	char digits[64];
	long long v = (long long)x;
	size_t len, i, o = 0;
	int neg = v < 0;

	snprintf(digits, sizeof digits, "%lld", neg ? -v : v);
	len = strlen(digits);
	if (neg && o + 1 < n)
		buf[o++] = '-';
	for (i = 0; i < len && o + 2 < n; i++) {
		if (i && (len - i) % 3 == 0)
			buf[o++] = ',';
		buf[o++] = digits[i];
	}
	buf[o] = '\0';
}

struct num_hit {
	double v;
	size_t i;
};

int q_segmentation_numeric(struct qctx *q)
{
	const char *event = q_param(q, "event");
	struct expr *on = NULL, *where = NULL;
	struct qbuckets b = { 0 };
	struct qsegs s;
	struct num_hit *hits = NULL;
	size_t n_hits = 0, cap = 0, i, k;
	double lo = 0, hi = 0, w = 1, base;
	int64_t from, to;
	struct cs_eval ce;
	enum seg_type type;
	uint32_t eid;
	int rc;

	memset(&s, 0, sizeof s);
	if (!event)
		return q_fail(q, 400, "'event' is a required parameter");
	if (!q_param(q, "on"))
		return q_fail(q, 400, "'on' is a required parameter (a numeric expression)");
	if (seg_type_param(q, 0, &type) || q_expr(q, "on", &on) || q_expr(q, "where", &where) ||
	    seg_range(q, &from, &to, &b, (1u << TZ_HOUR) | (1u << TZ_DAY))) {
		rc = q->status;
		goto out;
	}
	eid = seg_event_id(q, event);
	cs_eval_init(&ce, q->v);
	for (i = 0; eid && i < q->v->n; i++) {
		struct expr_value val;

		if (q->v->ev[i] != eid || q->v->t[i] < from || q->v->t[i] >= to)
			continue;
		ce.i = i;
		if (where) {
			int r = q_where(q, where, &ce);

			if (r < 0) {
				rc = q->status;
				goto out;
			}
			if (!r)
				continue;
		}
		if (expr_eval(on, cs_eval_lookup, &ce, &val) != MP_OK) {
			rc = q_fail(q, 400, "cannot evaluate 'on': %s", expr_error(on));
			goto out;
		}
		if (val.type != EXPR_NUMBER || !isfinite(val.u.n))
			continue;
		if (n_hits == cap) {
			struct num_hit *nh = realloc(hits, (cap = cap ? cap * 2 : 1024) * sizeof *nh);

			if (!nh) {
				rc = q_oom(q);
				goto out;
			}
			hits = nh;
		}
		hits[n_hits].v = val.u.n;
		hits[n_hits].i = i;
		if (!n_hits || val.u.n < lo)
			lo = val.u.n;
		if (!n_hits || val.u.n > hi)
			hi = val.u.n;
		n_hits++;
	}
	/* width: the smallest 1, 2 or 5 x 10^k giving at most 10 buckets */
	for (k = 0; k < 3 * 300; k++) {
		static const double mant[3] = { 1, 2, 5 };

		w = mant[k % 3] * pow(10, (double)(k / 3));
		if (floor(hi / w) - floor(lo / w) + 1 <= 10)
			break;
	}
	base = floor(lo / w) * w;
	qsegs_init(&s, 2 * b.n);
	for (k = 0; k < n_hits; k++) {
		struct seg_hit h = { q, &s, 0, 0, 0 };
		char a[48], z[48], key[100];
		double start = base + floor((hits[k].v - base) / w) * w;

		if ((h.bucket = qb_find(&b, q->v->t[hits[k].i])) == SIZE_MAX)
			continue;
		h.user = q->v->user[hits[k].i];
		num_label(start, a, sizeof a);
		num_label(start + w, z, sizeof z);
		snprintf(key, sizeof key, "%s - %s", a, z);
		if (seg_count(&h, key, strlen(key))) {
			rc = q->status;
			goto out;
		}
	}
	rc = seg_answer(q, &s, &b, type, 10000, NULL, 0, NULL);
out:
	free(hits);
	qsegs_free(&s);
	qb_free(&b);
	expr_free(on);
	expr_free(where);
	return rc;
}
