/*
 * q_formulas.c - the formulas report (ours; Mixpanel's Insights formulas):
 * an arithmetic expression over lettered metrics, "A / B * 100", evaluated
 * per time bucket and per `on` segment (docs/QUERIES.md#formulas).
 *
 * Each metric (`metrics`: {"A": {"event", "type", "property", "where"}})
 * is one segmentation scan of the projection (q_metric_scan in
 * q_segmentation.c), so a letter holds exactly what segmentation would
 * count: events, distinct users, or the sum / average / min / max of a
 * numeric property, per bucket and segment, plus the whole range as one
 * bucket (the totals that rank the segments: a unique metric there is the
 * distinct users of the range, not a sum of daily uniques).  The formula is
 * compiled by the expression module (expr_compile_formula), never parsed
 * here; each evaluation binds the letters through the lookup
 * (EXPR_SCOPE_METRIC).
 *
 * Invariants:
 *   1. Every letter the formula reads is a defined metric (else 400 before
 *      any scan); defined but unused metrics are computed and reported.
 *   2. A metric value is a number, or NAN for "no value" (average, min, max
 *      of no events), which the formula sees as undefined.
 *   3. Any formula result that is not a finite number (undefined from a
 *      division by zero, a boolean, NaN, infinity) is answered as null.
 *   4. The segments are the union of the metrics' segments; a metric without
 *      events in a segment has its empty value there (0, or undefined).
 */
#include "query_report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cjson/cJSON.h>

#define FM_LETTERS 26
#define FM_UNITS ((1u << TZ_MINUTE) | (1u << TZ_HOUR) | (1u << TZ_DAY) | (1u << TZ_WEEK) | (1u << TZ_MONTH))

/* A defined metric: its scan and its saved definition (borrowed from the
 * parsed `metrics` JSON). */
struct fm_metric {
	char letter;
	struct q_metric m;
	const char *where;         /* NULL: none */
	size_t *seg;               /* union segment -> segment of m.segs, or SIZE_MAX */
};

/* The letters' values for one evaluation: NAN is undefined (invariant 2). */
struct fm_env {
	double v[FM_LETTERS];
};

static int fm_lookup(void *ctx, enum expr_scope scope, const char *name, size_t len, struct expr_value *out)
{
	const struct fm_env *env = ctx;

	out->type = EXPR_UNDEFINED;
	if (scope == EXPR_SCOPE_METRIC && len == 1 && name[0] >= 'A' && name[0] <= 'Z' &&
	    !isnan(env->v[name[0] - 'A'])) {
		out->type = EXPR_NUMBER;
		out->u.n = env->v[name[0] - 'A'];
	}
	return 0;
}

/* The formula's value for ENV into *OUT (NAN: null, invariant 3).  Nonzero
 * after q_fail: an evaluation error (an operand of `and` that is a number). */
static int fm_eval(struct qctx *q, struct expr *f, const struct fm_env *env, double *out)
{
	struct expr_value v;
	enum mp_err rc = expr_eval(f, fm_lookup, (void *)env, &v);

	if (rc != MP_OK)
		return q_fail(q, 400, "cannot evaluate 'formula': %s",
			      rc == MP_E_INVALID ? expr_error(f) : mp_strerror(rc));
	*out = v.type == EXPR_NUMBER && isfinite(v.u.n) ? v.u.n : NAN;
	return 0;
}

/* ---------- parameters ---------- */

struct fm_refs {
	uint32_t letters;          /* bit L - 'A' for each letter read */
	enum expr_scope other;     /* an accessor that is not a letter */
	const char *name;
	size_t len;
};

static void fm_ref(void *ctx, enum expr_scope scope, const char *name, size_t len)
{
	struct fm_refs *r = ctx;

	if (scope == EXPR_SCOPE_METRIC && len == 1 && name[0] >= 'A' && name[0] <= 'Z') {
		r->letters |= 1u << (name[0] - 'A');
	} else if (!r->name) {
		r->other = scope;
		r->name = name;
		r->len = len;
	}
}

/* Compile `formula` into *OUT and the letters it reads into *LETTERS.
 * Nonzero after q_fail. */
static int fm_formula(struct qctx *q, const char *src, struct expr **out, uint32_t *letters)
{
	static const char *const scope_names[] = { "properties", "user", "event", "group", "metric" };
	struct fm_refs refs = { 0, EXPR_SCOPE_PROPERTIES, NULL, 0 };
	char msg[200];
	size_t off = 0;
	enum mp_err rc = expr_compile_formula(src, strlen(src), out, msg, sizeof msg, &off);

	if (rc == MP_E_NOMEM)
		return q_oom(q);
	if (rc != MP_OK)
		return q_fail(q, 400, "invalid expression in 'formula' at position %zu: %s", off, msg);
	expr_refs(*out, fm_ref, &refs);
	if (refs.name)
		return q_fail(q, 400, "'formula' may read only the metrics A..Z, not %s[\"%.*s\"]",
			      scope_names[refs.other], (int)(refs.len > 40 ? 40 : refs.len), refs.name);
	*letters = refs.letters;
	return 0;
}

static int fm_type(const char *s, enum q_metric_type *t)
{
	static const struct {
		const char *name;
		enum q_metric_type type;
	} types[] = {
		{ "total", QM_TOTAL }, { "general", QM_TOTAL }, { "unique", QM_UNIQUE }, { "sum", QM_SUM },
		{ "average", QM_AVERAGE }, { "min", QM_MIN }, { "max", QM_MAX },
	};
	size_t i;

	for (i = 0; i < sizeof types / sizeof types[0]; i++)
		if (!strcmp(s, types[i].name)) {
			*t = types[i].type;
			return 0;
		}
	return -1;
}

/* One metric definition DEF of letter L into FM.  Nonzero after q_fail. */
static int fm_metric_def(struct qctx *q, char l, const cJSON *def, struct fm_metric *fm)
{
	const cJSON *it, *event = NULL, *type = NULL, *prop = NULL, *where = NULL;

	if (!cJSON_IsObject(def))
		return q_fail(q, 400, "metrics.%c must be an object {\"event\":\"...\",\"type\":\"unique\",...}", l);
	cJSON_ArrayForEach(it, def) {
		const cJSON **slot = !strcmp(it->string, "event")      ? &event
				     : !strcmp(it->string, "type")     ? &type
				     : !strcmp(it->string, "property") ? &prop
				     : !strcmp(it->string, "where")    ? &where
								       : NULL;

		if (!slot)
			return q_fail(q, 400, "metrics.%c: unknown field '%.40s' (a metric has event, type, property, where)",
				      l, it->string);
		if (*slot)
			return q_fail(q, 400, "metrics.%c: '%s' is given twice", l, it->string);
		if (!cJSON_IsNull(it) && !cJSON_IsString(it))
			return q_fail(q, 400, "metrics.%c: '%s' must be a string", l, it->string);
		*slot = cJSON_IsNull(it) || !it->valuestring[0] ? NULL : it;
	}
	fm->letter = l;
	if (!event)
		return q_fail(q, 400, "metrics.%c: 'event' is required (the event name to count)", l);
	fm->m.event = event->valuestring;
	fm->m.type = QM_TOTAL;
	if (type && fm_type(type->valuestring, &fm->m.type))
		return q_fail(q, 400, "metrics.%c: 'type' must be one of: total, unique, sum, average, min, max "
			      "(got '%.40s')", l, type->valuestring);
	if (fm->m.type == QM_TOTAL || fm->m.type == QM_UNIQUE) {
		if (prop)
			return q_fail(q, 400, "metrics.%c: 'property' applies only to the types sum, average, min "
				      "and max", l);
	} else if (!prop) {
		return q_fail(q, 400, "metrics.%c: type %s needs 'property' (a numeric event property name)", l,
			      type->valuestring);
	} else {
		fm->m.property = prop->valuestring;
	}
	fm->where = where ? where->valuestring : NULL;
	return 0;
}

/* `metrics` (parsed into *JSON, which the caller frees) into FM[0..*N), in
 * letter order.  Nonzero after q_fail. */
static int fm_metrics(struct qctx *q, const char *text, cJSON **json, struct fm_metric *fm, size_t *n)
{
	const cJSON *it;
	const cJSON *by_letter[FM_LETTERS] = { 0 };
	size_t i;

	*n = 0;
	if (!cJSON_IsObject(*json = cJSON_Parse(text)))
		return q_fail(q, 400, "'metrics' must be a JSON object of lettered metrics, e.g. "
			      "{\"A\":{\"event\":\"Signup\",\"type\":\"unique\"}}");
	if (cJSON_GetArraySize(*json) > FM_LETTERS)
		return q_fail(q, 400, "too many metrics: at most %d (the letters A..Z)", FM_LETTERS);
	cJSON_ArrayForEach(it, *json) {
		const char *k = it->string;

		if (!k || strlen(k) != 1 || k[0] < 'A' || k[0] > 'Z')
			return q_fail(q, 400, "'metrics' keys must be single capital letters A..Z (got '%.40s')",
				      k ? k : "");
		if (by_letter[k[0] - 'A'])
			return q_fail(q, 400, "metric %c is defined twice", k[0]);
		by_letter[k[0] - 'A'] = it;
	}
	for (i = 0; i < FM_LETTERS; i++)
		if (by_letter[i] && fm_metric_def(q, (char)('A' + i), by_letter[i], &fm[(*n)++]))
			return 1;
	if (!*n)
		return q_fail(q, 400, "'metrics' defines no metric");
	return 0;
}

/* ---------- the answer ---------- */

/* computed_at: now in UTC with microseconds, as segmentation/sum writes it. */
static int fm_head(struct qctx *q, const char *formula, const struct qbuckets *b)
{
	time_t secs = (time_t)(q->now_ms / 1000);
	struct tm tm;

	gmtime_r(&secs, &tm);
	if (buf_printf(q->out, "{\"computed_at\":\"%04d-%02d-%02dT%02d:%02d:%02d.%06d+00:00\",\"formula\":",
		       tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		       (int)(q->now_ms % 1000) * 1000) != MP_OK ||
	    buf_json_str(q->out, formula, strlen(formula)) != MP_OK ||
	    buf_append(q->out, ",\"series\":", 10) != MP_OK || q_json_series_keys(q, b))
		return q_oom(q);
	return 0;
}

/* The letters' values in union segment U (SIZE_MAX: unsegmented), cell J. */
static void fm_bind(const struct fm_metric *fm, size_t n, size_t u, size_t j, struct fm_env *env)
{
	size_t i;

	for (i = 0; i < FM_LETTERS; i++)
		env->v[i] = NAN;
	for (i = 0; i < n; i++) {
		const struct q_metric *m = &fm[i].m;

		env->v[fm[i].letter - 'A'] = u == SIZE_MAX ? q_metric_value(m, &m->all, 0, j)
							   : q_metric_value(m, &m->segs, fm[i].seg[u], j);
	}
}

/* "key":{bucket: value} of the formula over the buckets, into VALS too. */
static int fm_series(struct qctx *q, struct expr *f, const struct fm_metric *fm, size_t n, size_t u,
		     const struct qbuckets *b, const char *key, size_t klen, double *vals)
{
	struct fm_env env;
	size_t j;

	for (j = 0; j < b->n; j++) {
		fm_bind(fm, n, u, j, &env);
		if (fm_eval(q, f, &env, &vals[j]))
			return 1;
	}
	return q_json_series_obj(q, key, klen, b, vals);
}

/* The union of the metrics' `on` segments in U, and each metric's map. */
static int fm_union(struct qctx *q, struct fm_metric *fm, size_t n, struct qsegs *u)
{
	size_t i, k;

	for (i = 0; i < n; i++)
		for (k = 0; k < fm[i].m.segs.n; k++)
			if (qsegs_get(u, fm[i].m.segs.name[k], fm[i].m.segs.name_len[k]) == SIZE_MAX)
				return q_oom(q);
	for (i = 0; i < n; i++) {
		if (!(fm[i].seg = malloc((u->n ? u->n : 1) * sizeof *fm[i].seg)))
			return q_oom(q);
		for (k = 0; k < u->n; k++)
			fm[i].seg[k] = SIZE_MAX;
		for (k = 0; k < fm[i].m.segs.n; k++)
			fm[i].seg[qsegs_get(u, fm[i].m.segs.name[k], fm[i].m.segs.name_len[k])] = k;
	}
	return 0;
}

/* values, totals and metrics of the answer (after "series"). */
static int fm_body(struct qctx *q, struct expr *f, const char *formula, struct fm_metric *fm, size_t n,
		   const struct qbuckets *b, int has_on, size_t limit)
{
	struct qsegs u;
	double *vals = NULL, *total = NULL;
	size_t *order = NULL, n_order = 1, i, j, range = b->n;  /* cell b->n: the whole range */
	struct fm_env env;
	int rc = 0;

	qsegs_init(&u, 1);
	if (!(vals = malloc((b->n ? b->n : 1) * sizeof *vals))) {
		rc = q_oom(q);
		goto out;
	}
	if (has_on) {
		if (fm_union(q, fm, n, &u) || !(total = malloc((u.n ? u.n : 1) * sizeof *total))) {
			rc = q->status ? q->status : q_oom(q);
			goto out;
		}
		for (i = 0; i < u.n; i++) {
			fm_bind(fm, n, i, range, &env);
			if (fm_eval(q, f, &env, &total[i])) {
				rc = q->status;
				goto out;
			}
		}
		/* rank by total, null last (qsegs_top compares numbers) */
		for (i = 0; i < u.n; i++)
			if (isnan(total[i]))
				total[i] = -INFINITY;
		if (!(order = qsegs_top(&u, total, limit, &n_order))) {
			rc = q_oom(q);
			goto out;
		}
		for (i = 0; i < u.n; i++)
			if (total[i] == -INFINITY)
				total[i] = NAN;
	} else {
		if (!(total = malloc(sizeof *total))) {
			rc = q_oom(q);
			goto out;
		}
		fm_bind(fm, n, SIZE_MAX, range, &env);
		if (fm_eval(q, f, &env, &total[0])) {
			rc = q->status;
			goto out;
		}
	}
	if (buf_append(q->out, ",\"values\":{", 11) != MP_OK) {
		rc = q_oom(q);
		goto out;
	}
	for (i = 0; i < n_order; i++) {
		size_t k = has_on ? order[i] : SIZE_MAX;

		if ((i && buf_putc(q->out, ',') != MP_OK)) {
			rc = q_oom(q);
			goto out;
		}
		if (fm_series(q, f, fm, n, k, b, has_on ? u.name[k] : formula, has_on ? u.name_len[k] : strlen(formula),
			      vals)) {
			rc = q->status;
			goto out;
		}
	}
	if (buf_append(q->out, "},\"totals\":{", 12) != MP_OK) {
		rc = q_oom(q);
		goto out;
	}
	for (i = 0; i < n_order; i++) {
		size_t k = has_on ? order[i] : 0;

		if ((i && buf_putc(q->out, ',') != MP_OK) ||
		    buf_json_str(q->out, has_on ? u.name[k] : formula, has_on ? u.name_len[k] : strlen(formula)) != MP_OK ||
		    buf_putc(q->out, ':') != MP_OK || buf_json_num(q->out, total[k]) != MP_OK) {
			rc = q_oom(q);
			goto out;
		}
	}
	if (buf_append(q->out, "},\"metrics\":{", 13) != MP_OK) {
		rc = q_oom(q);
		goto out;
	}
	for (i = 0; i < n; i++) {
		char key[2] = { fm[i].letter, '\0' };

		for (j = 0; j < b->n; j++)
			vals[j] = q_metric_value(&fm[i].m, &fm[i].m.all, 0, j);
		if ((i && buf_putc(q->out, ',') != MP_OK) || q_json_series_obj(q, key, 1, b, vals)) {
			rc = q_oom(q);
			goto out;
		}
	}
	if (buf_append(q->out, "}}", 2) != MP_OK)
		rc = q_oom(q);
out:
	qsegs_free(&u);
	free(vals);
	free(total);
	free(order);
	return rc;
}

int q_formulas(struct qctx *q)
{
	const char *formula = q_param(q, "formula"), *metrics = q_param(q, "metrics");
	struct fm_metric fm[FM_LETTERS];
	struct expr *f = NULL;
	struct qbuckets b = { 0 };
	cJSON *json = NULL;
	enum tz_unit unit;
	uint32_t letters = 0;
	int64_t from, to;
	size_t n = 0, i;
	long limit;
	int rc = 0, has_on = q_param(q, "on") != NULL;

	memset(fm, 0, sizeof fm);
	if (!formula) {
		rc = q_fail(q, 400, "'formula' is a required parameter (an expression over the metrics A..Z, "
			    "e.g. A / B * 100)");
		goto out;
	}
	if (!metrics) {
		rc = q_fail(q, 400, "'metrics' is a required parameter (a JSON object: "
			    "{\"A\":{\"event\":\"...\",\"type\":\"unique\"},...})");
		goto out;
	}
	if (fm_formula(q, formula, &f, &letters) || fm_metrics(q, metrics, &json, fm, &n)) {
		rc = q->status;
		goto out;
	}
	for (i = 0; i < n; i++)
		letters &= ~(1u << (fm[i].letter - 'A'));
	for (i = 0; i < FM_LETTERS; i++)
		if (letters & (1u << i)) {
			rc = q_fail(q, 400, "'formula' uses metric %c, which 'metrics' does not define", (char)('A' + i));
			goto out;
		}
	if (q_dates(q, &from, &to) || q_unit(q, "unit", TZ_DAY, FM_UNITS, &unit) ||
	    q_int(q, "limit", 60, 1, 10000, &limit) || q_buckets_unit(q, from, to, unit, &b)) {
		rc = q->status;
		goto out;
	}
	for (i = 0; i < n; i++) {
		struct expr *where = NULL, *on = NULL;
		char what[32];

		snprintf(what, sizeof what, "metrics.%c.where", fm[i].letter);
		if ((fm[i].where && q_expr_src(q, what, fm[i].where, &where)) || q_expr(q, "on", &on)) {
			expr_free(where);
			rc = q->status;
			goto out;
		}
		if (q_metric_scan(q, &fm[i].m, &b, from, to, where, on)) {
			rc = q->status;
			goto out;
		}
	}
	if (fm_head(q, formula, &b) || fm_body(q, f, formula, fm, n, &b, has_on, (size_t)limit))
		rc = q->status;
out:
	for (i = 0; i < n; i++) {
		q_metric_free(&fm[i].m);
		free(fm[i].seg);
	}
	qb_free(&b);
	expr_free(f);
	cJSON_Delete(json);
	return rc ? rc : 200;
}
