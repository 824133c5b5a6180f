/*
 * q_events.c - what a project's events look like: events/top,
 * events/names, events/properties/top and events/properties/values
 * (docs/QUERIES.md).  events and events/properties are segmentation
 * variants and live in q_segmentation.c.
 */
#include "query_report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "propcodec.h"

/* [today - 30 days, end of today) in the project's time zone. */
static void ev_last31(struct qctx *q, int64_t *from, int64_t *to)
{
	struct tz_civil c;

	tz_to_civil(q->tz, q->now_ms, &c);
	*from = tz_from_civil(q->tz, c.year, c.month, c.day - 30, 0, 0);
	*to = tz_from_civil(q->tz, c.year, c.month, c.day + 1, 0, 0);
}

static int ev_json_string_array(struct qctx *q, const struct qsegs *s, const size_t *order, size_t n)
{
	size_t i;

	if (buf_putc(q->out, '[') != MP_OK)
		return q_oom(q);
	for (i = 0; i < n; i++)
		if ((i && buf_putc(q->out, ',') != MP_OK) ||
		    buf_json_str(q->out, s->name[order[i]], s->name_len[order[i]]) != MP_OK)
			return q_oom(q);
	return buf_putc(q->out, ']') == MP_OK ? 200 : q_oom(q);
}

/* Counts per event name over [FROM, TO): events (val[0]) and users (val[1]). */
static int ev_count_names(struct qctx *q, int64_t from, int64_t to, struct qsegs *s)
{
	const struct cs_view *v = q->v;
	size_t i, k, n;
	const char *name;

	qsegs_init(s, 2);
	for (i = 0; i < v->n; i++) {
		if (v->t[i] < from || v->t[i] >= to)
			continue;
		name = cs_string(v, v->ev[i], &n);
		if ((k = qsegs_get(s, name, n)) == SIZE_MAX)
			return q_oom(q);
		s->val[2 * k] += 1;
		if (v->user[i] != CS_NO_USER && s->last[2 * k + 1] != v->user[i] + 1) {
			s->last[2 * k + 1] = v->user[i] + 1;
			s->val[2 * k + 1] += 1;
		}
	}
	return 0;
}

int q_events_names(struct qctx *q)
{
	struct qsegs s;
	int64_t from, to;
	size_t *order = NULL, n, i;
	long limit;
	int rc;

	if (q_int(q, "limit", 255, 1, 100000, &limit))
		return q->status;
	ev_last31(q, &from, &to);
	/* counts straight from the by-name index: two binary searches a name */
	qsegs_init(&s, 1);
	for (i = 0; i < q->v->n_names; i++) {
		size_t a = cs_lower_bound(q->v->nt, q->v->nstart[i], q->v->nstart[i + 1], from);
		size_t z = cs_lower_bound(q->v->nt, a, q->v->nstart[i + 1], to), k, nl;
		const char *nm = cs_string(q->v, q->v->name_sid[i], &nl);

		if (z == a)
			continue;
		if ((k = qsegs_get(&s, nm, nl)) == SIZE_MAX) {
			qsegs_free(&s);
			return q_oom(q);
		}
		s.val[k] = (double)(z - a);
	}
	/* one value per segment: the counts are the ranking */
	if (!(order = qsegs_top(&s, s.val, (size_t)limit, &n)))
		rc = q_oom(q);
	else
		rc = ev_json_string_array(q, &s, order, n);
	free(order);
	qsegs_free(&s);
	return rc;
}

int q_events_top(struct qctx *q)
{
	const char *type = q_param(q, "type");
	struct qsegs today, yday;
	struct tz_civil c;
	int64_t t0, t1, y0;
	double *amount = NULL, frac;
	size_t *order = NULL, n, i;
	long limit;
	int rc = 200, kind;

	if (!type)
		type = "general";
	if (!strcmp(type, "general"))
		kind = 0;
	else if (!strcmp(type, "unique"))
		kind = 1;
	else if (!strcmp(type, "average"))
		kind = 2;
	else
		return q_fail(q, 400, "'type' must be one of: general, unique, average (got '%.40s')", type);
	if (q_int(q, "limit", 100, 1, 100000, &limit))
		return q->status;
	tz_to_civil(q->tz, q->now_ms, &c);
	t0 = tz_from_civil(q->tz, c.year, c.month, c.day, 0, 0);
	t1 = tz_from_civil(q->tz, c.year, c.month, c.day + 1, 0, 0);
	y0 = tz_from_civil(q->tz, c.year, c.month, c.day - 1, 0, 0);
	frac = t1 > t0 ? (double)(q->now_ms - t0) / (double)(t1 - t0) : 1;
	memset(&yday, 0, sizeof yday);
	if (ev_count_names(q, t0, t1, &today) || ev_count_names(q, y0, t0, &yday)) {
		rc = q->status;
		goto out;
	}
	if (!(amount = malloc((today.n ? today.n : 1) * sizeof *amount))) {
		rc = q_oom(q);
		goto out;
	}
	for (i = 0; i < today.n; i++)
		amount[i] = kind == 0 ? today.val[2 * i] : kind == 1 ? today.val[2 * i + 1]
			  : today.val[2 * i + 1] > 0 ? today.val[2 * i] / today.val[2 * i + 1] : 0;
	if (!(order = qsegs_top(&today, amount, (size_t)limit, &n))) {
		rc = q_oom(q);
		goto out;
	}
	if (buf_append(q->out, "{\"events\":[", 11) != MP_OK) {
		rc = q_oom(q);
		goto out;
	}
	for (i = 0; i < n; i++) {
		size_t k = order[i], yk;
		double y = 0, pc;

		for (yk = 0; yk < yday.n; yk++)
			if (yday.name_len[yk] == today.name_len[k] && !memcmp(yday.name[yk], today.name[k], today.name_len[k]))
				break;
		if (yk < yday.n)
			y = kind == 0 ? yday.val[2 * yk] : kind == 1 ? yday.val[2 * yk + 1]
			  : yday.val[2 * yk + 1] > 0 ? yday.val[2 * yk] / yday.val[2 * yk + 1] : 0;
		y *= frac;
		pc = y > 0 ? (amount[k] - y) / y : 1;
		if ((i && buf_putc(q->out, ',') != MP_OK) || buf_append(q->out, "{\"amount\":", 10) != MP_OK ||
		    buf_json_num(q->out, amount[k]) != MP_OK || buf_append(q->out, ",\"event\":", 9) != MP_OK ||
		    buf_json_str(q->out, today.name[k], today.name_len[k]) != MP_OK ||
		    buf_append(q->out, ",\"percent_change\":", 18) != MP_OK || buf_json_num(q->out, pc) != MP_OK ||
		    buf_putc(q->out, '}') != MP_OK) {
			rc = q_oom(q);
			goto out;
		}
	}
	if (buf_printf(q->out, "],\"type\":\"%s\"}", type) != MP_OK)
		rc = q_oom(q);
out:
	free(amount);
	free(order);
	qsegs_free(&today);
	qsegs_free(&yday);
	return rc;
}

/* The server-side bookkeeping properties that a user never sent. */
static int ev_hidden(const char *k, size_t n)
{
	return (n == 10 && !memcmp(k, "$insert_id", 10)) || (n == 21 && !memcmp(k, "mp_processing_time_ms", 21)) ||
	       (n == 7 && !memcmp(k, "$import", 7));
}

int q_events_properties_top(struct qctx *q)
{
	const char *event = q_param(q, "event");
	const struct cs_view *v = q->v;
	struct qsegs s;
	int64_t from, to;
	size_t *order = NULL, n, i;
	uint32_t eid;
	long limit;
	int rc = 200;

	if (!event)
		return q_fail(q, 400, "'event' is a required parameter");
	if (q_int(q, "limit", 10, 1, 100000, &limit))
		return q->status;
	ev_last31(q, &from, &to);
	eid = cs_string_id(v, event, strlen(event));
	qsegs_init(&s, 1);
	for (i = 0; eid && i < v->n; i++) {
		const unsigned char *p, *end;
		size_t pn;

		if (v->ev[i] != eid || v->t[i] < from || v->t[i] >= to)
			continue;
		p = cs_props(v, i, &pn);
		end = p + pn;
		if (pn < 1)
			continue;
		for (p++; p && p < end; ) {
			uint64_t key;
			const char *ks;
			size_t kl, k;

			if (!(p = pc_varint(p, end, &key)))
				break;
			ks = cs_string(v, (uint32_t)key, &kl);
			p = pc_skip_value(p, end, 0);
			if (ev_hidden(ks, kl))
				continue;
			if ((k = qsegs_get(&s, ks, kl)) == SIZE_MAX) {
				rc = q_oom(q);
				goto out;
			}
			s.val[k] += 1;
		}
	}
	if (!(order = qsegs_top(&s, s.val, (size_t)limit, &n))) {
		rc = q_oom(q);
		goto out;
	}
	if (buf_putc(q->out, '{') != MP_OK) {
		rc = q_oom(q);
		goto out;
	}
	for (i = 0; i < n; i++)
		if ((i && buf_putc(q->out, ',') != MP_OK) ||
		    buf_json_str(q->out, s.name[order[i]], s.name_len[order[i]]) != MP_OK ||
		    buf_printf(q->out, ":{\"count\":%.0f}", s.val[order[i]]) != MP_OK) {
			rc = q_oom(q);
			goto out;
		}
	if (buf_putc(q->out, '}') != MP_OK)
		rc = q_oom(q);
out:
	free(order);
	qsegs_free(&s);
	return rc;
}

static int ev_count_value(void *ctx, size_t k)
{
	struct qsegs *s = ctx;

	s->val[k] += 1;
	return 0;
}

int q_events_properties_values(struct qctx *q)
{
	const char *event = q_param(q, "event"), *name = q_param(q, "name");
	const struct cs_view *v = q->v;
	struct qsegs s;
	struct expr *on = NULL;
	struct qx onx;
	struct cs_eval ce;
	int64_t from, to;
	size_t *order = NULL, n, i;
	uint32_t eid = 0;
	long limit;
	int rc = 200;

	if (!name)
		return q_fail(q, 400, "'name' is a required parameter");
	if (q_int(q, "limit", 255, 1, 100000, &limit))
		return q->status;
	if (q_property_expr(q, name, &on))
		return q->status;
	q_qx_init(q, &onx, on);
	if (event && !(eid = cs_string_id(v, event, strlen(event)))) {
		q_qx_free(&onx);
		return buf_append(q->out, "[]", 2) == MP_OK ? 200 : q_oom(q);
	}
	ev_last31(q, &from, &to);
	qsegs_init(&s, 1);
	q_eval_init(q, &ce);
	for (i = 0; i < v->n; i++) {
		if ((eid && v->ev[i] != eid) || v->t[i] < from || v->t[i] >= to)
			continue;
		ce.i = i;
		if (q_qx_on(q, &onx, &ce, &s, ev_count_value, &s)) {
			rc = q->status;
			goto out;
		}
	}
	if (!(order = qsegs_top(&s, s.val, (size_t)limit, &n)))
		rc = q_oom(q);
	else
		rc = ev_json_string_array(q, &s, order, n);
out:
	free(order);
	qsegs_free(&s);
	q_qx_free(&onx);
	return rc;
}
