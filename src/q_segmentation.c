/*
 * q_segmentation.c - event counts over time: segmentation (general, unique,
 * average; `on`, `where`, `limit`), segmentation/numeric, /sum, /average,
 * events and events/properties (docs/QUERIES.md), and the lettered metrics
 * of the formulas report (q_metric_scan, query_report.h).
 *
 * One scan of the projection serves every variant: events of the wanted
 * names inside the range pass `where`, are keyed by segment (the `on` value,
 * or the event name) and counted per time bucket, in total and per user
 * (the projection holds a user's events together, so "was this user already
 * counted in this cell" is one comparison with the cell's last user).  A
 * metric scan is the same scan with another cell layout (seg_metric_count):
 * its numeric kinds read one property of each event, and every event also
 * counts in a whole-range cell, so a unique metric over the range counts
 * each user once.
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
	struct qx *where, *on;     /* on->e NULL: segment = event name */
	int need_unique;           /* count users too (unique, average) */
	/* metric scans (q_metric_scan); all zero for segmentation */
	size_t width;              /* doubles per segment; 0: 2 * buckets (seg_count) */
	int (*count)(void *ctx, size_t seg); /* NULL: seg_count */
	struct qsegs *all;         /* also count every kept event in its segment 0; without
				      `on` only there */
	const char *num_name;      /* keep only events whose property NUM_NAME is a number */
	size_t num_len;
	const struct cs_column *num_col; /* its column, or NULL: read the record */
	int num_absent;            /* no event has the property: keep none */
	enum q_metric_type type;   /* given to the hits (seg_metric_count) */
	size_t cells;
};

struct seg_hit {
	struct qsegs *segs;
	size_t bucket;
	uint32_t user;             /* CS_NO_USER: not counted as a user */
	/* metric scans */
	enum q_metric_type type;
	size_t cells;              /* cells per kind: buckets + the whole range */
	double x;                  /* the event's number (sum, average, min, max) */
};

static int seg_count(void *ctx, size_t k)
{
	struct seg_hit *h = ctx;
	struct qsegs *s = h->segs;
	size_t nb = s->width / 2;

	s->val[k * s->width + h->bucket] += 1;
	if (h->user != CS_NO_USER && s->last[k * s->width + nb + h->bucket] != h->user + 1) {
		s->last[k * s->width + nb + h->bucket] = h->user + 1;
		s->val[k * s->width + nb + h->bucket] += 1;
	}
	return 0;
}

/* The number of a metric's property for event ce->i: 1 with *X, 0 when it
 * is not a (finite) number, -1 after q_fail.  The column answers most
 * events; a list, an object or a long string (CS_V_OTHER), the built-ins
 * time and distinct_id and a view without the column read the record. */
static int seg_num(struct qctx *q, const struct seg_spec *sp, struct cs_eval *ce, double *x)
{
	const struct cs_column *c = sp->num_col;
	struct expr_value v;
	uint32_t code = CS_V_OTHER;

	if (sp->num_absent)
		return 0;
	if (c && ce->j != SIZE_MAX && c->ncode) {
		code = c->ncode[ce->j];
		if (code == CS_V_NUMBER && c->nnum) {
			*x = c->nnum[ce->j];
			return isfinite(*x) ? 1 : 0;
		}
	} else if (c && c->code) {
		code = c->code[ce->i];
		if (code == CS_V_NUMBER && c->num) {
			*x = c->num[ce->i];
			return isfinite(*x) ? 1 : 0;
		}
	}
	if (code != CS_V_OTHER && code != CS_V_NUMBER)
		return 0;
	if (cs_eval_lookup(ce, EXPR_SCOPE_PROPERTIES, sp->num_name, sp->num_len, &v) < 0) {
		q_fail(q, 503, "cannot read the properties of an event");
		return -1;
	}
	if (v.type != EXPR_NUMBER || !isfinite(v.u.n))
		return 0;
	*x = v.u.n;
	return 1;
}

/* Count event I (in bucket H->bucket): where, then its segments. */
static int seg_one(struct qctx *q, const struct seg_spec *sp, struct cs_eval *ce, struct seg_hit *h,
		   size_t i, size_t j, size_t *by_name)
{
	int (*count)(void *ctx, size_t seg) = sp->count ? sp->count : seg_count;
	int r;

	ce->i = i;
	ce->j = j;
	if ((r = q_qx_where(q, sp->where, ce)) <= 0)
		return r;
	/* users are counted only in the user-order scan */
	h->user = sp->need_unique ? q->v->user[i] : CS_NO_USER;
	if (sp->num_name && (r = seg_num(q, sp, ce, &h->x)) <= 0)
		return r;
	if (sp->all) {
		struct qsegs *segs = h->segs;

		h->segs = sp->all;
		r = count(h, 0);
		h->segs = segs;
		if (r || !sp->on->e)
			return r;
	}
	if (sp->on->e)
		return q_qx_on(q, sp->on, ce, h->segs, count, h);
	if (*by_name == SIZE_MAX) {
		size_t nm;
		const char *name = cs_string(q->v, q->v->ev[i], &nm);

		if ((*by_name = qsegs_get(h->segs, name, nm)) == SIZE_MAX)
			return q_oom(q), -1;
	}
	return count(h, *by_name);
}

/* Scan: S gets width 2 * buckets (general counts, then unique counts).
 * Totals read only the wanted names' events, in time order (the by-name
 * index); unique counts walk users in order so "already counted in this
 * cell" is a comparison with the cell's last user. */
static int seg_scan(struct qctx *q, const struct seg_spec *sp, struct qsegs *s)
{
	const struct cs_view *v = q->v;
	struct cs_eval ce;
	struct seg_hit h = { s, 0, CS_NO_USER, sp->type, sp->cells, 0 };
	size_t i, k, by_name;

	qsegs_init(s, sp->width ? sp->width : 2 * sp->b->n);
	q_eval_init(q, &ce);
	if (!sp->need_unique) {
		for (k = 0; k < sp->n_eids; k++) {
			uint32_t x = cs_name_index(v, sp->eids[k]);
			size_t a, z, bk = 0;

			if (!sp->eids[k] || x == CS_NO_USER)
				continue;
			by_name = SIZE_MAX;
			a = cs_lower_bound(v->nt, v->nstart[x], v->nstart[x + 1], sp->from);
			z = cs_lower_bound(v->nt, a, v->nstart[x + 1], sp->to);
			for (i = a; i < z; i++) {
				int64_t t = v->nt[i];

				while (bk < sp->b->n && t >= sp->b->start[bk + 1])
					bk++;
				if (bk == sp->b->n || t < sp->b->start[bk])
					continue;
				h.bucket = bk;
				if (v->npos[i] < v->n && seg_one(q, sp, &ce, &h, v->npos[i], i, &by_name) < 0)
					return 1;
			}
		}
		return 0;
	}
	for (k = 0; k < sp->n_eids; k++) {
		by_name = SIZE_MAX;
		for (i = 0; sp->eids[k] && i < v->n; i++) {
			if (v->ev[i] != sp->eids[k] || v->t[i] < sp->from || v->t[i] >= sp->to ||
			    (h.bucket = qb_find(sp->b, v->t[i])) == SIZE_MAX)
				continue;
			if (seg_one(q, sp, &ce, &h, i, SIZE_MAX, &by_name) < 0)
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

static int seg_interval_range(struct qctx *q, enum tz_unit unit, long interval, int64_t *from, int64_t *to);

/* from_date/to_date with unit (or interval days) buckets.  With
 * INTERVAL_UNITS (events, events/properties), `interval` without dates means
 * the last N units instead. */
static int seg_range(struct qctx *q, int64_t *from, int64_t *to, struct qbuckets *b, unsigned units,
		     int interval_units)
{
	enum tz_unit unit;
	long interval;

	if (interval_units && !q_param(q, "from_date") && !q_param(q, "to_date") && q_param(q, "interval")) {
		if (q_unit(q, "unit", TZ_DAY, units, &unit) || q_int(q, "interval", 1, 1, 100000, &interval))
			return 1;
		seg_interval_range(q, unit, interval, from, to);
		return q_buckets_unit(q, *from, *to, unit, b);
	}
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
/* ON (taken over; may be NULL) segments the counts. */
static int seg_run(struct qctx *q, const char *event, struct expr *on, long def_limit, cJSON *only,
		   int interval_units)
{
	struct qbuckets b = { 0 };
	struct qsegs s;
	struct seg_spec sp;
	struct qx where, onx;
	enum seg_type type;
	long limit;
	uint32_t eid;
	int rc, has_on = on != NULL;

	memset(&s, 0, sizeof s);
	memset(&sp, 0, sizeof sp);
	memset(&where, 0, sizeof where);
	memset(&onx, 0, sizeof onx);
	onx.e = on;
	if (seg_type_param(q, 0, &type)) {
		rc = q->status;
		goto out;
	}
	/* totals scan the by-name index, unique counts walk users (seg_scan) */
	q->col_orders = type == SEG_GENERAL ? CS_COL_BYNAME : CS_COL_MAIN;
	q_qx_init(q, &onx, on);
	if (q_int(q, "limit", def_limit, 1, 10000, &limit) ||
	    seg_range(q, &sp.from, &sp.to, &b, UNITS_ALL, interval_units) || q_qx_param(q, "where", &where)) {
		rc = q->status;
		goto out;
	}
	eid = seg_event_id(q, event);
	sp.eids = &eid;
	sp.n_eids = 1;
	sp.b = &b;
	sp.where = &where;
	sp.on = &onx;
	sp.need_unique = type != SEG_GENERAL;
	if (seg_scan(q, &sp, &s)) {
		rc = q->status;
		goto out;
	}
	rc = seg_answer(q, &s, &b, type, has_on ? (size_t)limit : 1, has_on ? NULL : &event, has_on ? 0 : 1, only);
out:
	qsegs_free(&s);
	qb_free(&b);
	q_qx_free(&where);
	q_qx_free(&onx);
	return rc;
}

int q_segmentation(struct qctx *q)
{
	const char *event = q_param(q, "event");
	struct expr *on = NULL;

	if (!event)
		return q_fail(q, 400, "'event' is a required parameter");
	if (q_expr(q, "on", &on))
		return q->status;
	return seg_run(q, event, on, 60, NULL, 0);
}

int q_segmentation_total(struct qctx *q, const char *event, int64_t from, int64_t to, double *out)
{
	int64_t start[2] = { from, to };
	char key[1][24] = { "" };
	struct qbuckets b = { 1, start, key };  /* one bucket: the whole range */
	struct qsegs s;
	struct seg_spec sp;
	struct qx where, none;
	enum seg_type type;
	uint32_t eid;
	int rc = 0;

	memset(&s, 0, sizeof s);
	memset(&sp, 0, sizeof sp);
	memset(&where, 0, sizeof where);
	memset(&none, 0, sizeof none);
	*out = 0;
	if (seg_type_param(q, 0, &type))
		return q->status;
	q->col_orders = type == SEG_GENERAL ? CS_COL_BYNAME : CS_COL_MAIN;
	if (q_qx_param(q, "where", &where))
		return q->status;
	eid = seg_event_id(q, event);
	sp.eids = &eid;
	sp.n_eids = 1;
	sp.from = from;
	sp.to = to;
	sp.b = &b;
	sp.where = &where;
	sp.on = &none;
	sp.need_unique = type != SEG_GENERAL;
	if (seg_scan(q, &sp, &s))
		rc = q->status;
	else if (s.n)   /* segment 0 is the event (no `on`) */
		*out = seg_value(&s, 0, 0, type);
	qsegs_free(&s);
	q_qx_free(&where);
	return rc;
}

/* ---------- the lettered metrics of a formula (q_formulas.c) ---------- */

/* Cell kinds of a metric type: its value, then (average, min, max) the
 * number of values, which tells "no value" from a value. */
static size_t seg_metric_kinds(enum q_metric_type t)
{
	return t == QM_AVERAGE || t == QM_MIN || t == QM_MAX ? 2 : 1;
}

/* Count hit H in segment K: its bucket's cell and the whole-range cell
 * (the last one).  Unique cells compare with their last user as seg_count
 * does: the scan walks users in order, so this is exact for the range too. */
static int seg_metric_count(void *ctx, size_t k)
{
	struct seg_hit *h = ctx;
	double *val = h->segs->val + k * h->segs->width, *cnt = val + h->cells;
	uint32_t *last = h->segs->last + k * h->segs->width;
	size_t cell[2] = { h->bucket, h->cells - 1 }, c;

	for (c = 0; c < 2; c++) {
		size_t j = cell[c];

		switch (h->type) {
		case QM_TOTAL:
			val[j] += 1;
			break;
		case QM_UNIQUE:
			if (h->user != CS_NO_USER && last[j] != h->user + 1) {
				last[j] = h->user + 1;
				val[j] += 1;
			}
			break;
		case QM_SUM:
			val[j] += h->x;
			break;
		case QM_AVERAGE:
			val[j] += h->x;
			cnt[j] += 1;
			break;
		case QM_MIN:
			if (cnt[j] == 0 || h->x < val[j])
				val[j] = h->x;
			cnt[j] += 1;
			break;
		case QM_MAX:
			if (cnt[j] == 0 || h->x > val[j])
				val[j] = h->x;
			cnt[j] += 1;
			break;
		}
	}
	return 0;
}

int q_metric_scan(struct qctx *q, struct q_metric *m, const struct qbuckets *b, int64_t from, int64_t to,
		  struct expr *where, struct expr *on)
{
	struct seg_spec sp;
	struct qx wx, ox;
	uint32_t eid;
	int rc = 0;

	memset(&sp, 0, sizeof sp);
	memset(&wx, 0, sizeof wx);
	memset(&ox, 0, sizeof ox);
	m->cells = b->n + 1;
	qsegs_init(&m->segs, 1);
	qsegs_init(&m->all, seg_metric_kinds(m->type) * m->cells);
	if (qsegs_get(&m->all, "", 0) == SIZE_MAX) {
		expr_free(where);
		expr_free(on);
		return q_oom(q);
	}
	/* as segmentation: totals scan the by-name index, unique counts walk users */
	q->col_orders = m->type == QM_UNIQUE ? CS_COL_MAIN : CS_COL_BYNAME;
	q_qx_init(q, &wx, where);
	q_qx_init(q, &ox, on);
	if (m->property) {
		size_t n = strlen(m->property);
		uint32_t key;

		sp.num_name = m->property;
		sp.num_len = n;
		/* the built-ins time and distinct_id are not stored properties */
		if (!(n == 4 && !memcmp(m->property, "time", 4)) && !(n == 11 && !memcmp(m->property, "distinct_id", 11))) {
			if (!(key = cs_string_id(q->v, m->property, n)))
				sp.num_absent = 1;
			else
				sp.num_col = cs_column(q->v, key, q->col_orders);
		}
	}
	eid = seg_event_id(q, m->event);
	sp.eids = &eid;
	sp.n_eids = 1;
	sp.from = from;
	sp.to = to;
	sp.b = b;
	sp.where = &wx;
	sp.on = &ox;
	sp.need_unique = m->type == QM_UNIQUE;
	sp.width = m->all.width;
	sp.count = seg_metric_count;
	sp.all = &m->all;
	sp.type = m->type;
	sp.cells = m->cells;
	if (seg_scan(q, &sp, &m->segs))
		rc = q->status;
	q_qx_free(&wx);
	q_qx_free(&ox);
	return rc;
}

double q_metric_value(const struct q_metric *m, const struct qsegs *s, size_t k, size_t j)
{
	const double *val, *cnt;

	if (k == SIZE_MAX || k >= s->n)
		return m->type == QM_TOTAL || m->type == QM_UNIQUE || m->type == QM_SUM ? 0 : NAN;
	val = s->val + k * s->width;
	cnt = val + m->cells;
	switch (m->type) {
	case QM_TOTAL:
	case QM_UNIQUE:
	case QM_SUM:
		return val[j];
	case QM_AVERAGE:
		return cnt[j] > 0 ? val[j] / cnt[j] : NAN;
	case QM_MIN:
	case QM_MAX:
		return cnt[j] > 0 ? val[j] : NAN;
	}
	return NAN;
}

void q_metric_free(struct q_metric *m)
{
	qsegs_free(&m->segs);
	qsegs_free(&m->all);
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
	rc = seg_run(q, event, on, 255, only, 1);
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
	struct qx none;
	enum seg_type type;
	int rc;

	memset(&s, 0, sizeof s);
	memset(&sp, 0, sizeof sp);
	memset(&none, 0, sizeof none);
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
	if (seg_range(q, &sp.from, &sp.to, &b, UNITS_ALL, 1)) {
		rc = q->status;
		goto out;
	}
	sp.eids = eids;
	sp.n_eids = n;
	sp.b = &b;
	sp.where = &none;
	sp.on = &none;
	sp.need_unique = type != SEG_GENERAL;
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

/* ---------- segmentation/sum, /average and /numeric ---------- */

/* `where`, then the value of `on`, for event ce->i: 1 kept (*VAL set), 0
 * filtered out, -1 error (q_fail done). */
static int seg_where_on(struct qctx *q, struct qx *where, struct expr *on, struct cs_eval *ce,
			struct expr_value *val)
{
	int r = q_qx_where(q, where, ce);

	if (r <= 0)
		return r;
	if (expr_eval(on, cs_eval_lookup, ce, val) != MP_OK) {
		q_fail(q, 400, "cannot evaluate 'on': %s", expr_error(on));
		return -1;
	}
	return 1;
}

int q_segmentation_sum(struct qctx *q, int average)
{
	const char *event = q_param(q, "event");
	struct expr *on = NULL;
	struct qx where;
	struct qbuckets b = { 0 };
	double *sum = NULL, *cnt = NULL;
	int64_t from, to;
	struct cs_eval ce;
	uint32_t x;
	size_t i, j, a, z;
	int rc;
	char stamp[64];

	memset(&where, 0, sizeof where);
	if (!event)
		return q_fail(q, 400, "'event' is a required parameter");
	if (!q_param(q, "on"))
		return q_fail(q, 400, "'on' is a required parameter (a numeric expression)");
	q->col_orders = CS_COL_BYNAME;  /* reads the by-name index */
	if (q_expr(q, "on", &on) || q_qx_param(q, "where", &where) ||
	    seg_range(q, &from, &to, &b, (1u << TZ_HOUR) | (1u << TZ_DAY), 0)) {
		rc = q->status;
		goto out;
	}
	if (!(sum = calloc(b.n ? b.n : 1, sizeof *sum)) || !(cnt = calloc(b.n ? b.n : 1, sizeof *cnt))) {
		rc = q_oom(q);
		goto out;
	}
	q_eval_init(q, &ce);
	/* the event's own events in the range, from the by-name index */
	x = cs_name_index(q->v, seg_event_id(q, event));
	a = z = 0;
	if (x != CS_NO_USER) {
		a = cs_lower_bound(q->v->nt, q->v->nstart[x], q->v->nstart[x + 1], from);
		z = cs_lower_bound(q->v->nt, a, q->v->nstart[x + 1], to);
	}
	for (i = a; i < z; i++) {
		struct expr_value val;
		int r;

		if ((j = qb_find(&b, q->v->nt[i])) == SIZE_MAX || q->v->npos[i] >= q->v->n)
			continue;
		ce.i = q->v->npos[i];
		ce.j = i;
		if ((r = seg_where_on(q, &where, on, &ce, &val)) < 0) {
			rc = q->status;
			goto out;
		}
		if (!r)
			continue;
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
	q_qx_free(&where);
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
	struct expr *on = NULL;
	struct qx where;
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
	memset(&where, 0, sizeof where);
	if (!event)
		return q_fail(q, 400, "'event' is a required parameter");
	if (!q_param(q, "on"))
		return q_fail(q, 400, "'on' is a required parameter (a numeric expression)");
	if (seg_type_param(q, 0, &type) || q_expr(q, "on", &on) || q_qx_param(q, "where", &where) ||
	    seg_range(q, &from, &to, &b, (1u << TZ_HOUR) | (1u << TZ_DAY), 0)) {
		rc = q->status;
		goto out;
	}
	eid = seg_event_id(q, event);
	q_eval_init(q, &ce);
	for (i = 0; eid && i < q->v->n; i++) {
		struct expr_value val;
		int r;

		if (q->v->ev[i] != eid || q->v->t[i] < from || q->v->t[i] >= to)
			continue;
		ce.i = i;
		if ((r = seg_where_on(q, &where, on, &ce, &val)) < 0) {
			rc = q->status;
			goto out;
		}
		if (!r || val.type != EXPR_NUMBER || !isfinite(val.u.n))
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
		struct seg_hit h = { &s, 0, CS_NO_USER, QM_TOTAL, 0, 0 };
		char a[48], z[48], key[100];
		size_t seg;
		double start = base + floor((hits[k].v - base) / w) * w;

		if ((h.bucket = qb_find(&b, q->v->t[hits[k].i])) == SIZE_MAX)
			continue;
		h.user = q->v->user[hits[k].i];
		num_label(start, a, sizeof a);
		num_label(start + w, z, sizeof z);
		snprintf(key, sizeof key, "%s - %s", a, z);
		if ((seg = qsegs_get(&s, key, strlen(key))) == SIZE_MAX) {
			rc = q_oom(q);
			goto out;
		}
		seg_count(&h, seg);
	}
	rc = seg_answer(q, &s, &b, type, 10000, NULL, 0, NULL);
out:
	free(hits);
	qsegs_free(&s);
	qb_free(&b);
	expr_free(on);
	q_qx_free(&where);
	return rc;
}
