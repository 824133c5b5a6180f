/*
 * q_funnels.c - funnels, funnels/list, funnels/create (docs/QUERIES.md).
 *
 * A funnel walks one user at a time (the projection keeps a user's events
 * together and in time order): the steps each event qualifies for are
 * computed once per user (a bit per step), then every entry (the user's
 * first step-1 event of a date bucket) is followed through the steps with
 * Mixpanel's rules: loose order, the first qualifying event at or after
 * (previous step - 2 s), never an event already used, all inside the window
 * counted from step 1.
 */
#include "query_report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#define FN_MAX_STEPS 32

struct fn_step {
	char *event;
	uint32_t eid;
	char *where_src;
	struct expr *where;
	struct qx wx;              /* `where` over the projection (funnels) */
};

struct funnel {
	struct fn_step step[FN_MAX_STEPS];
	size_t n;
	int64_t window_ms;
	long length;
	char length_unit[16];
};

static void fn_free(struct funnel *f)
{
	size_t i;

	for (i = 0; i < f->n; i++) {
		free(f->step[i].event);
		free(f->step[i].where_src);
		if (f->step[i].wx.e)
			q_qx_free(&f->step[i].wx); /* owns where */
		else
			expr_free(f->step[i].where);
	}
	f->n = 0;
}

static int fn_unit_ms(const char *u, int64_t *ms)
{
	static const struct { const char *n; int64_t ms; } units[] = {
		{ "second", 1000 }, { "minute", 60000 }, { "hour", 3600000 }, { "day", 86400000 },
		{ "week", 7 * 86400000LL },
	};
	size_t i;

	for (i = 0; i < sizeof units / sizeof units[0]; i++)
		if (!strcmp(u, units[i].n)) {
			*ms = units[i].ms;
			return 0;
		}
	return -1;
}

/* Steps from a JSON array of {"event": NAME, "where": EXPR?} (or bare names). */
static int fn_steps(struct qctx *q, const cJSON *arr, const char *what, struct funnel *f)
{
	const cJSON *it;

	if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) < 1)
		return q_fail(q, 400, "'%s' must be a non-empty JSON array of steps {\"event\": NAME, \"where\": EXPR}", what);
	if (cJSON_GetArraySize(arr) > FN_MAX_STEPS)
		return q_fail(q, 400, "a funnel has at most %d steps", FN_MAX_STEPS);
	cJSON_ArrayForEach(it, arr) {
		const cJSON *ev = cJSON_IsString(it) ? it : cJSON_GetObjectItemCaseSensitive(it, "event");
		const cJSON *wh = cJSON_IsObject(it) ? cJSON_GetObjectItemCaseSensitive(it, "where") : NULL;
		struct fn_step *s = &f->step[f->n];

		if (!cJSON_IsString(ev) || !ev->valuestring[0])
			return q_fail(q, 400, "step %zu of '%s' needs an \"event\" name", f->n + 1, what);
		if (wh && !cJSON_IsNull(wh) && !cJSON_IsString(wh))
			return q_fail(q, 400, "step %zu of '%s': \"where\" must be an expression string", f->n + 1, what);
		if (!(s->event = strdup(ev->valuestring)))
			return q_oom(q);
		f->n++;
		if (cJSON_IsString(wh) && wh->valuestring[0]) {
			char label[64];

			if (!(s->where_src = strdup(wh->valuestring)))
				return q_oom(q);
			snprintf(label, sizeof label, "%s step %zu where", what, f->n);
			if (q_expr_src(q, label, s->where_src, &s->where))
				return q->status;
		}
	}
	return 0;
}

static int fn_window(struct qctx *q, struct funnel *f, long def_len, const char *def_unit)
{
	const char *u = q_param(q, "length_unit");
	int64_t unit_ms;

	if (!u)
		u = def_unit;
	if (fn_unit_ms(u, &unit_ms))
		return q_fail(q, 400, "'length_unit' must be one of: second, minute, hour, day, week (got '%.40s')", u);
	if (q_int(q, "length", def_len, 1, 366L * 86400, &f->length))
		return q->status;
	f->window_ms = f->length * unit_ms;
	if (f->window_ms > 366LL * 86400000)
		return q_fail(q, 400, "the conversion window may not exceed 366 days");
	snprintf(f->length_unit, sizeof f->length_unit, "%s", u);
	return 0;
}

/* ---------- funnels/create and funnels/list ---------- */

int q_funnels_create(struct qctx *q)
{
	cJSON *body = NULL, *steps = NULL, *def = NULL, *arr;
	const char *name;
	struct funnel f;
	char *text = NULL;
	int64_t id;
	size_t i;
	enum mp_err rc;
	int status;

	memset(&f, 0, sizeof f);
	if (q->rq->body && q->rq->body_len && q->rq->body[0] == '{')
		body = cJSON_ParseWithLength(q->rq->body, q->rq->body_len);
	if (body) {
		const cJSON *n = cJSON_GetObjectItemCaseSensitive(body, "name");
		const cJSON *l = cJSON_GetObjectItemCaseSensitive(body, "length");
		const cJSON *lu = cJSON_GetObjectItemCaseSensitive(body, "length_unit");
		char len_text[32];

		name = cJSON_IsString(n) ? n->valuestring : NULL;
		arr = cJSON_GetObjectItemCaseSensitive(body, "steps");
		if (l && !cJSON_IsNumber(l)) {
			status = q_fail(q, 400, "\"length\" must be a number");
			goto out;
		}
		snprintf(len_text, sizeof len_text, "%ld", l ? (long)l->valuedouble : 30L);
		if (!name || !name[0]) {
			status = q_fail(q, 400, "\"name\" is required");
			goto out;
		}
		if (fn_steps(q, arr, "steps", &f)) {
			status = q->status;
			goto out;
		}
		{
			int64_t unit_ms;
			const char *u = cJSON_IsString(lu) ? lu->valuestring : "day";

			if (lu && !cJSON_IsString(lu)) {
				status = q_fail(q, 400, "\"length_unit\" must be a string");
				goto out;
			}
			if (fn_unit_ms(u, &unit_ms)) {
				status = q_fail(q, 400, "\"length_unit\" must be one of: second, minute, hour, day, week");
				goto out;
			}
			f.length = l ? (long)l->valuedouble : 30;
			if (f.length < 1 || f.length * unit_ms > 366LL * 86400000) {
				status = q_fail(q, 400, "\"length\" must be at least 1 and the window at most 366 days");
				goto out;
			}
			snprintf(f.length_unit, sizeof f.length_unit, "%s", u);
		}
	} else {
		const char *st = q_param(q, "steps");

		name = q_param(q, "name");
		if (!name) {
			status = q_fail(q, 400, "'name' is a required parameter");
			goto out;
		}
		if (!st) {
			status = q_fail(q, 400, "'steps' is a required parameter");
			goto out;
		}
		steps = cJSON_Parse(st);
		if (fn_steps(q, steps, "steps", &f) || fn_window(q, &f, 30, "day")) {
			status = q->status;
			goto out;
		}
	}
	if (!(def = cJSON_CreateObject()) || !(arr = cJSON_AddArrayToObject(def, "steps"))) {
		status = q_oom(q);
		goto out;
	}
	for (i = 0; i < f.n; i++) {
		cJSON *s = cJSON_CreateObject();

		if (!s || !cJSON_AddItemToArray(arr, s) || !cJSON_AddStringToObject(s, "event", f.step[i].event) ||
		    (f.step[i].where_src && !cJSON_AddStringToObject(s, "where", f.step[i].where_src))) {
			status = q_oom(q);
			goto out;
		}
	}
	if (!cJSON_AddNumberToObject(def, "length", (double)f.length) ||
	    !cJSON_AddStringToObject(def, "length_unit", f.length_unit) || !(text = cJSON_PrintUnformatted(def))) {
		status = q_oom(q);
		goto out;
	}
	if ((rc = store_funnel_create(q->sp, name, text, &id)) != MP_OK) {
		status = q_fail(q, 503, "cannot save the funnel: %s", mp_strerror(rc));
		goto out;
	}
	if (buf_printf(q->out, "{\"funnel_id\":%lld,\"name\":", (long long)id) != MP_OK ||
	    buf_json_str(q->out, name, strlen(name)) != MP_OK || buf_putc(q->out, '}') != MP_OK)
		status = q_oom(q);
	else
		status = 200;
out:
	free(text);
	cJSON_Delete(def);
	cJSON_Delete(steps);
	cJSON_Delete(body);
	fn_free(&f);
	return status;
}

int q_funnels_list(struct qctx *q)
{
	enum mp_err rc = store_funnel_list(q->sp, q->out);

	if (rc != MP_OK)
		return q_fail(q, 503, "cannot read saved funnels: %s", mp_strerror(rc));
	return 200;
}

/* ---------- funnels ---------- */

/* Accumulators of one segment: per bucket, per step. */
struct fn_acc {
	double *count, *t_prev, *t_start; /* [bucket * n_steps + step] */
	double entries;
};

struct fn_run {
	struct qctx *q;
	struct funnel *f;
	struct qx where, on;
	struct qbuckets b;
	int64_t from, to;
	struct qsegs segs;         /* `on` values -> index into acc (after $overall) */
	struct fn_acc *acc;        /* [0] = $overall, [1 + k] = segment k */
	size_t n_acc, cap_acc;
	/* per-user scratch */
	uint32_t *mask;
	size_t mask_cap;
	/* the entry being recorded */
	size_t bucket;
	size_t reached;
	int64_t tk[FN_MAX_STEPS];
};

static int fn_acc_new(struct fn_run *r)
{
	size_t cells = r->b.n * r->f->n;
	struct fn_acc *a;

	if (r->n_acc == r->cap_acc) {
		size_t cap = r->cap_acc ? r->cap_acc * 2 : 8;
		struct fn_acc *na = realloc(r->acc, cap * sizeof *na);

		if (!na)
			return q_oom(r->q);
		r->acc = na;
		r->cap_acc = cap;
	}
	a = &r->acc[r->n_acc];
	memset(a, 0, sizeof *a);
	a->count = calloc(cells ? cells : 1, sizeof *a->count);
	a->t_prev = calloc(cells ? cells : 1, sizeof *a->t_prev);
	a->t_start = calloc(cells ? cells : 1, sizeof *a->t_start);
	r->n_acc++;
	if (!a->count || !a->t_prev || !a->t_start)
		return q_oom(r->q);
	return 0;
}

static void fn_record(struct fn_run *r, struct fn_acc *a)
{
	size_t k, base = r->bucket * r->f->n;

	a->entries += 1;
	for (k = 0; k < r->reached; k++) {
		a->count[base + k] += 1;
		if (k) {
			a->t_prev[base + k] += (double)(r->tk[k] - r->tk[k - 1]) / 1000.0;
			a->t_start[base + k] += (double)(r->tk[k] - r->tk[0]) / 1000.0;
		}
	}
}

static int fn_record_seg(void *ctx, size_t k)
{
	struct fn_run *r = ctx;

	while (r->n_acc < k + 2)
		if (fn_acc_new(r))
			return -1;
	fn_record(r, &r->acc[k + 1]);
	return 0;
}

/* The steps event I qualifies for, as a bit mask. */
static int fn_mask(struct fn_run *r, struct cs_eval *ce, size_t i, uint32_t *out)
{
	const struct cs_view *v = r->q->v;
	uint32_t m = 0;
	size_t k;
	int base = -1;

	for (k = 0; k < r->f->n; k++) {
		struct fn_step *s = &r->f->step[k];
		int w;

		if (v->ev[i] != s->eid)
			continue;
		ce->i = i;
		if (base < 0 && (base = q_qx_where(r->q, &r->where, ce)) < 0)
			return -1;
		if (!base)
			break;
		if ((w = q_qx_where(r->q, &s->wx, ce)) < 0)
			return -1;
		if (!w)
			continue;
		m |= 1u << k;
	}
	*out = m;
	return 0;
}

/* Follow the attempt entered at event E0 (index into the user's block
 * starting at A, N events); sets r->reached and r->tk. */
static void fn_follow(struct fn_run *r, const int64_t *t, const uint32_t *mask, size_t n, size_t e0)
{
	size_t used[FN_MAX_STEPS], k, j, start;
	int64_t t1 = t[e0], deadline = t1 + r->f->window_ms;

	used[0] = e0;
	r->tk[0] = t1;
	r->reached = 1;
	for (k = 1; k < r->f->n; k++) {
		int64_t lo = r->tk[k - 1] - 2000;
		size_t found = SIZE_MAX, u;

		/* back up to the first event at or after lo */
		start = used[k - 1];
		while (start > 0 && t[start - 1] >= lo)
			start--;
		for (j = start; j < n && t[j] < deadline; j++) {
			if (t[j] < lo || !(mask[j] & (1u << k)))
				continue;
			for (u = 0; u < k && used[u] != j; u++)
				;
			if (u < k)
				continue;
			found = j;
			break;
		}
		if (found == SIZE_MAX)
			break;
		used[k] = found;
		r->tk[k] = t[found];
		r->reached++;
	}
}

static int fn_scan(struct fn_run *r)
{
	const struct cs_view *v = r->q->v;
	struct cs_eval ce;
	uint32_t u;
	size_t nb = r->b.n;
	size_t *entered = NULL;    /* per bucket: last user entered + 1 */
	int rc = 0;

	q_eval_init(r->q, &ce);
	if (!(entered = calloc(nb ? nb : 1, sizeof *entered)))
		return q_oom(r->q);
	for (u = 0; u < v->n_users && !rc; u++) {
		size_t a = v->ustart[u], n = v->ustart[u + 1] - a, j;
		const int64_t *t = v->t + a;
		int any = 0;

		if (n > r->mask_cap) {
			uint32_t *nm = realloc(r->mask, n * sizeof *nm);

			if (!nm) {
				rc = q_oom(r->q);
				break;
			}
			r->mask = nm;
			r->mask_cap = n;
		}
		for (j = 0; j < n; j++) {
			if (fn_mask(r, &ce, a + j, &r->mask[j])) {
				rc = r->q->status;
				break;
			}
			any |= (r->mask[j] & 1u) && t[j] >= r->from && t[j] < r->to;
		}
		if (rc || !any)
			continue;
		for (j = 0; j < n && !rc; j++) {
			size_t bk;

			if (!(r->mask[j] & 1u) || t[j] < r->from || t[j] >= r->to ||
			    (bk = qb_find(&r->b, t[j])) == SIZE_MAX || entered[bk] == (size_t)u + 1)
				continue;
			entered[bk] = (size_t)u + 1;
			r->bucket = bk;
			fn_follow(r, t, r->mask, n, j);
			fn_record(r, &r->acc[0]);
			if (r->on.e) {
				ce.i = a + j;
				if (q_qx_on(r->q, &r->on, &ce, &r->segs, fn_record_seg, r))
					rc = r->q->status ? r->q->status : 503;
			}
		}
	}
	free(entered);
	return rc;
}

static int fn_json_steps(struct fn_run *r, const struct fn_acc *a, size_t bucket)
{
	struct buf *o = r->q->out;
	size_t k, n = r->f->n, base = bucket * n;
	double first = a->count[base];

	if (buf_putc(o, '[') != MP_OK)
		return q_oom(r->q);
	for (k = 0; k < n; k++) {
		double c = a->count[base + k], prev = k ? a->count[base + k - 1] : c;
		const char *ev = r->f->step[k].event;

		if ((k && buf_putc(o, ',') != MP_OK) || buf_printf(o, "{\"count\":%.0f,\"avg_time\":", c) != MP_OK ||
		    (k && c > 0 ? buf_json_num(o, a->t_prev[base + k] / c) : buf_append(o, "null", 4)) != MP_OK ||
		    buf_append(o, ",\"avg_time_from_start\":", 23) != MP_OK ||
		    (k && c > 0 ? buf_json_num(o, a->t_start[base + k] / c) : buf_append(o, "null", 4)) != MP_OK ||
		    buf_append(o, ",\"step_conv_ratio\":", 19) != MP_OK ||
		    buf_json_num(o, prev > 0 ? c / prev : 0) != MP_OK ||
		    buf_append(o, ",\"overall_conv_ratio\":", 22) != MP_OK ||
		    buf_json_num(o, first > 0 ? c / first : 0) != MP_OK ||
		    buf_append(o, ",\"goal\":", 8) != MP_OK || buf_json_str(o, ev, strlen(ev)) != MP_OK ||
		    buf_append(o, ",\"event\":", 9) != MP_OK || buf_json_str(o, ev, strlen(ev)) != MP_OK ||
		    buf_putc(o, '}') != MP_OK)
			return q_oom(r->q);
	}
	return buf_putc(o, ']') == MP_OK ? 0 : q_oom(r->q);
}

static int fn_json_analysis(struct fn_run *r, const struct fn_acc *a, size_t bucket)
{
	size_t k, n = r->f->n, base = bucket * n, worst = 1;
	double maxdrop = -1;

	for (k = 1; k < n; k++) {
		double drop = a->count[base + k - 1] - a->count[base + k];

		if (drop > maxdrop) {
			maxdrop = drop;
			worst = k;
		}
	}
	if (buf_printf(r->q->out, ",\"analysis\":{\"completion\":%.0f,\"starting_amount\":%.0f,\"steps\":%zu,\"worst\":%zu}",
		       a->count[base + n - 1], a->count[base], n, worst) != MP_OK)
		return q_oom(r->q);
	return 0;
}

static int fn_answer(struct fn_run *r, long limit)
{
	struct buf *o = r->q->out;
	size_t i, j, *order = NULL, n_order = 0;
	double *total = NULL;
	int rc = 0;

	if (r->on.e) {
		if (!(total = calloc(r->segs.n ? r->segs.n : 1, sizeof *total)))
			return q_oom(r->q);
		for (i = 0; i < r->segs.n; i++)
			total[i] = r->acc[i + 1].entries;
		if (!(order = qsegs_top(&r->segs, total, (size_t)limit, &n_order))) {
			free(total);
			return q_oom(r->q);
		}
	}
	if (buf_append(o, "{\"meta\":{\"dates\":", 17) != MP_OK || q_json_series_keys(r->q, &r->b) ||
	    buf_append(o, "},\"data\":{", 10) != MP_OK) {
		rc = q_oom(r->q);
		goto out;
	}
	for (j = 0; j < r->b.n && !rc; j++) {
		if ((j && buf_putc(o, ',') != MP_OK) || buf_json_str(o, r->b.key[j], strlen(r->b.key[j])) != MP_OK) {
			rc = q_oom(r->q);
			break;
		}
		if (!r->on.e) {
			if (buf_append(o, ":{\"steps\":", 10) != MP_OK || fn_json_steps(r, &r->acc[0], j) ||
			    fn_json_analysis(r, &r->acc[0], j) || buf_putc(o, '}') != MP_OK)
				rc = q_oom(r->q);
			continue;
		}
		if (buf_append(o, ":{\"$overall\":", 13) != MP_OK || fn_json_steps(r, &r->acc[0], j)) {
			rc = q_oom(r->q);
			break;
		}
		for (i = 0; i < n_order && !rc; i++) {
			size_t k = order[i];

			if (buf_putc(o, ',') != MP_OK ||
			    buf_json_str(o, r->segs.name[k], r->segs.name_len[k]) != MP_OK ||
			    buf_putc(o, ':') != MP_OK || fn_json_steps(r, &r->acc[k + 1], j))
				rc = q_oom(r->q);
		}
		if (!rc && buf_putc(o, '}') != MP_OK)
			rc = q_oom(r->q);
	}
	if (!rc && buf_append(o, "}}", 2) != MP_OK)
		rc = q_oom(r->q);
out:
	free(order);
	free(total);
	return rc;
}

int q_funnels(struct qctx *q)
{
	struct funnel f;
	struct fn_run r;
	const char *fid = q_param(q, "funnel_id"), *evs = q_param(q, "events");
	cJSON *def = NULL, *steps = NULL;
	char *name = NULL, *text = NULL;
	long interval, limit;
	size_t i;
	int rc;

	memset(&f, 0, sizeof f);
	memset(&r, 0, sizeof r);
	r.q = q;
	r.f = &f;
	if (!fid && !evs && !(evs = q_param(q, "steps"))) {
		rc = q_fail(q, 400, "'funnel_id' (or an ad-hoc 'events' array of steps) is a required parameter");
		goto out;
	}
	if (fid) {
		char *end;
		long long id = strtoll(fid, &end, 10);
		enum mp_err er;
		const cJSON *l, *lu;

		if (*end || id < 1) {
			rc = q_fail(q, 400, "'funnel_id' must be a positive integer");
			goto out;
		}
		if ((er = store_funnel_get(q->sp, id, &name, &text)) != MP_OK) {
			rc = er == MP_E_NOTFOUND ? q_fail(q, 404, "funnel %lld not found", id)
						 : q_fail(q, 503, "cannot read the funnel: %s", mp_strerror(er));
			goto out;
		}
		if (!(def = cJSON_Parse(text))) {
			rc = q_fail(q, 503, "saved funnel %lld is unreadable", id);
			goto out;
		}
		l = cJSON_GetObjectItemCaseSensitive(def, "length");
		lu = cJSON_GetObjectItemCaseSensitive(def, "length_unit");
		if (fn_steps(q, cJSON_GetObjectItemCaseSensitive(def, "steps"), "funnel", &f) ||
		    fn_window(q, &f, cJSON_IsNumber(l) ? (long)l->valuedouble : 30,
			      cJSON_IsString(lu) ? lu->valuestring : "day")) {
			rc = q->status;
			goto out;
		}
	} else {
		if (!(steps = cJSON_Parse(evs))) {
			rc = q_fail(q, 400, "'events' is not valid JSON: expected an array of steps");
			goto out;
		}
		if (fn_steps(q, steps, "events", &f) || fn_window(q, &f, 30, "day")) {
			rc = q->status;
			goto out;
		}
	}
	for (i = 0; i < f.n; i++) {
		f.step[i].eid = cs_string_id(q->v, f.step[i].event, strlen(f.step[i].event));
		q_qx_init(q, &f.step[i].wx, f.step[i].where);
	}
	if (q_dates(q, &r.from, &r.to) || q_int(q, "limit", 255, 1, 10000, &limit) ||
	    q_qx_param(q, "where", &r.where) || q_qx_param(q, "on", &r.on)) {
		rc = q->status;
		goto out;
	}
	if (q_param(q, "unit")) {
		enum tz_unit unit;

		if (q_unit(q, "unit", TZ_DAY, (1u << TZ_DAY) | (1u << TZ_WEEK) | (1u << TZ_MONTH), &unit) ||
		    q_buckets_unit(q, r.from, r.to, unit, &r.b)) {
			rc = q->status;
			goto out;
		}
	} else if (q_int(q, "interval", 1, 1, 3660, &interval) || q_buckets_days(q, r.from, r.to, interval, &r.b)) {
		rc = q->status;
		goto out;
	}
	qsegs_init(&r.segs, 1);
	if (fn_acc_new(&r) || fn_scan(&r) || fn_answer(&r, limit)) {
		rc = q->status ? q->status : 503;
		goto out;
	}
	rc = 200;
out:
	for (i = 0; i < r.n_acc; i++) {
		free(r.acc[i].count);
		free(r.acc[i].t_prev);
		free(r.acc[i].t_start);
	}
	free(r.acc);
	free(r.mask);
	qsegs_free(&r.segs);
	qb_free(&r.b);
	q_qx_free(&r.where);
	q_qx_free(&r.on);
	fn_free(&f);
	cJSON_Delete(def);
	cJSON_Delete(steps);
	free(name);
	free(text);
	return rc;
}
