/*
 * q_retention.c - retention (birth and compounded) and retention/addiction
 * (frequency), docs/QUERIES.md.
 *
 * Both walk one user at a time over the projection (a user's events are
 * contiguous and in time order): find the user's birth time(s), then mark
 * the retention buckets their returning events fall into.
 */
#include "query_report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RT_MAX_BUCKETS 1000

struct rt_acc {
	double *first;             /* per cohort bucket */
	double *counts;            /* [cohort * (nret) + i] */
};

struct rt_run {
	struct qctx *q;
	struct qbuckets b;         /* cohort buckets */
	size_t nret;               /* interval_count + 1 */
	int unbounded;
	int compounded;
	uint32_t born_eid, ret_eid; /* ret_eid 0 with any_ret: every event returns */
	int any_ret;
	struct qx born_where, where, on;
	int64_t from, to, len_ms;
	struct qsegs segs;
	struct rt_acc *acc;        /* [0] overall, [1 + k] segment k */
	size_t n_acc, cap_acc;
	/* current user */
	size_t cohort;
	unsigned char *hit;        /* nret marks */
};

static int rt_acc_new(struct rt_run *r)
{
	struct rt_acc *a;

	if (r->n_acc == r->cap_acc) {
		size_t cap = r->cap_acc ? r->cap_acc * 2 : 8;
		struct rt_acc *na = realloc(r->acc, cap * sizeof *na);

		if (!na)
			return q_oom(r->q);
		r->acc = na;
		r->cap_acc = cap;
	}
	a = &r->acc[r->n_acc++];
	a->first = calloc(r->b.n ? r->b.n : 1, sizeof *a->first);
	a->counts = calloc((r->b.n ? r->b.n : 1) * r->nret, sizeof *a->counts);
	if (!a->first || !a->counts)
		return q_oom(r->q);
	return 0;
}

static void rt_add(struct rt_run *r, struct rt_acc *a)
{
	size_t i;

	a->first[r->cohort] += 1;
	for (i = 0; i < r->nret; i++)
		a->counts[r->cohort * r->nret + i] += r->hit[i];
}

static int rt_add_seg(void *ctx, size_t k)
{
	struct rt_run *r = ctx;

	while (r->n_acc < k + 2)
		if (rt_acc_new(r))
			return -1;
	rt_add(r, &r->acc[k + 1]);
	return 0;
}

/* Does event I count as a returning event? 1/0, -1 on error. */
static int rt_returns(struct rt_run *r, struct cs_eval *ce, size_t i)
{
	if (!r->any_ret && r->q->v->ev[i] != r->ret_eid)
		return 0;
	ce->i = i;
	return q_qx_where(r->q, &r->where, ce);
}

/* Mark the retention buckets of the user's returning events after birth
 * time B (events [A, Z)); returns 0 or -1. */
static int rt_mark(struct rt_run *r, struct cs_eval *ce, size_t a, size_t z, int64_t birth)
{
	const struct cs_view *v = r->q->v;
	size_t i, k;
	int64_t end = birth + (int64_t)r->nret * r->len_ms;

	memset(r->hit, 0, r->nret);
	for (i = a; i < z; i++) {
		int64_t t = v->t[i];
		int ok;

		if (t <= birth)
			continue;
		if (t >= end)
			break;
		k = (size_t)((t - birth) / r->len_ms);
		if (r->hit[k])
			continue;
		if ((ok = rt_returns(r, ce, i)) < 0)
			return -1;
		r->hit[k] = (unsigned char)ok;
	}
	if (r->unbounded)
		for (k = r->nret - 1; k > 0; k--)
			r->hit[k - 1] |= r->hit[k];
	return 0;
}

static int rt_record(struct rt_run *r, struct cs_eval *ce, size_t birth_i)
{
	rt_add(r, &r->acc[0]);
	if (!r->on.e)
		return 0;
	ce->i = birth_i;
	return q_qx_on(r->q, &r->on, ce, &r->segs, rt_add_seg, r) ? -1 : 0;
}

static int rt_scan(struct rt_run *r)
{
	const struct cs_view *v = r->q->v;
	struct cs_eval ce;
	uint32_t u;

	q_eval_init(r->q, &ce);
	for (u = 0; u < v->n_users; u++) {
		size_t a = v->ustart[u], z = v->ustart[u + 1], i;

		if (!r->compounded) {
			/* birth: the first-ever born event that passes born_where */
			for (i = a; i < z; i++) {
				int ok;

				if (v->ev[i] != r->born_eid)
					continue;
				ce.i = i;
				if ((ok = q_qx_where(r->q, &r->born_where, &ce)) < 0)
					return r->q->status;
				if (ok)
					break;
			}
			if (i == z || v->t[i] < r->from || v->t[i] >= r->to ||
			    (r->cohort = qb_find(&r->b, v->t[i])) == SIZE_MAX)
				continue;
			if (rt_mark(r, &ce, i + 1, z, v->t[i]) || rt_record(r, &ce, i))
				return r->q->status ? r->q->status : 503;
			continue;
		}
		/* compounded: every cohort bucket the user did the event in */
		{
			size_t last = SIZE_MAX;

			for (i = a; i < z; i++) {
				size_t c;
				int ok;

				if (v->t[i] < r->from || v->t[i] >= r->to || (c = qb_find(&r->b, v->t[i])) == SIZE_MAX ||
				    c == last)
					continue;
				if ((ok = rt_returns(r, &ce, i)) < 0)
					return r->q->status;
				if (!ok)
					continue;
				last = r->cohort = c;
				if (rt_mark(r, &ce, i + 1, z, v->t[i]) || rt_record(r, &ce, i))
					return r->q->status ? r->q->status : 503;
			}
		}
	}
	return 0;
}

static int rt_json_cohorts(struct rt_run *r, const struct rt_acc *a)
{
	struct buf *o = r->q->out;
	size_t c, i;

	if (buf_putc(o, '{') != MP_OK)
		return q_oom(r->q);
	for (c = 0; c < r->b.n; c++) {
		if ((c && buf_putc(o, ',') != MP_OK) || buf_json_str(o, r->b.key[c], strlen(r->b.key[c])) != MP_OK ||
		    buf_append(o, ":{\"counts\":[", 12) != MP_OK)
			return q_oom(r->q);
		for (i = 0; i < r->nret; i++)
			if (buf_printf(o, i ? ",%.0f" : "%.0f", a->counts[c * r->nret + i]) != MP_OK)
				return q_oom(r->q);
		if (buf_printf(o, "],\"first\":%.0f}", a->first[c]) != MP_OK)
			return q_oom(r->q);
	}
	return buf_putc(o, '}') == MP_OK ? 0 : q_oom(r->q);
}

int q_retention(struct qctx *q)
{
	struct rt_run r;
	const char *type = q_param(q, "retention_type"), *born = q_param(q, "born_event"), *ev = q_param(q, "event");
	enum tz_unit unit;
	long interval, count, limit;
	size_t i, *order = NULL, n_order = 0;
	double *total = NULL;
	int rc;

	memset(&r, 0, sizeof r);
	r.q = q;
	qsegs_init(&r.segs, 1);
	if (!type || !strcmp(type, "birth"))
		r.compounded = 0;
	else if (!strcmp(type, "compounded") || !strcmp(type, "compounding"))
		r.compounded = 1;
	else {
		rc = q_fail(q, 400, "'retention_type' must be birth or compounded (got '%.40s')", type);
		goto out;
	}
	if (!r.compounded && !born) {
		rc = q_fail(q, 400, "'born_event' is a required parameter for birth retention");
		goto out;
	}
	if (q_dates(q, &r.from, &r.to) ||
	    q_unit(q, "unit", TZ_DAY, (1u << TZ_DAY) | (1u << TZ_WEEK) | (1u << TZ_MONTH), &unit) ||
	    q_int(q, "interval", 1, 1, unit == TZ_DAY ? 90 : 1000, &interval) ||
	    q_int(q, "interval_count", 1, 0, RT_MAX_BUCKETS, &count) || q_bool(q, "unbounded_retention", 0, &r.unbounded) ||
	    q_int(q, "limit", 255, 1, 10000, &limit) ||
	    q_qx_param(q, "born_where", &r.born_where) || q_qx_param(q, "where", &r.where) ||
	    q_qx_param(q, "on", &r.on) ||
	    q_buckets_unit(q, r.from, r.to, unit, &r.b)) {
		rc = q->status;
		goto out;
	}
	r.nret = (size_t)count + 1;
	r.len_ms = interval * (unit == TZ_DAY ? 86400000LL : unit == TZ_WEEK ? 7 * 86400000LL : 30 * 86400000LL);
	if (born)
		r.born_eid = cs_string_id(q->v, born, strlen(born));
	r.any_ret = !ev;
	if (ev)
		r.ret_eid = cs_string_id(q->v, ev, strlen(ev));
	if (r.compounded && r.any_ret && born) {
		/* compounded retention of "did X again": X is the event */
		r.any_ret = 0;
		r.ret_eid = r.born_eid;
	}
	if (!(r.hit = calloc(r.nret, 1)) || rt_acc_new(&r)) {
		rc = q_oom(q);
		goto out;
	}
	if ((!r.compounded && !r.born_eid) || (!r.any_ret && !r.ret_eid && r.compounded)) {
		/* no such event: every cohort is empty */
	} else if (rt_scan(&r)) {
		rc = q->status ? q->status : 503;
		goto out;
	}
	if (!r.on.e) {
		rc = rt_json_cohorts(&r, &r.acc[0]) ? q->status : 200;
		goto out;
	}
	if (!(total = calloc(r.segs.n ? r.segs.n : 1, sizeof *total))) {
		rc = q_oom(q);
		goto out;
	}
	for (i = 0; i < r.segs.n; i++) {
		size_t c;

		for (c = 0; c < r.b.n; c++)
			total[i] += r.acc[i + 1].first[c];
	}
	if (!(order = qsegs_top(&r.segs, total, (size_t)limit, &n_order)) ||
	    buf_append(q->out, "{\"$overall\":", 12) != MP_OK || rt_json_cohorts(&r, &r.acc[0])) {
		rc = q_oom(q);
		goto out;
	}
	for (i = 0; i < n_order; i++) {
		size_t k = order[i];

		if (buf_putc(q->out, ',') != MP_OK || buf_json_str(q->out, r.segs.name[k], r.segs.name_len[k]) != MP_OK ||
		    buf_putc(q->out, ':') != MP_OK || rt_json_cohorts(&r, &r.acc[k + 1])) {
			rc = q_oom(q);
			goto out;
		}
	}
	rc = buf_putc(q->out, '}') == MP_OK ? 200 : q_oom(q);
out:
	for (i = 0; i < r.n_acc; i++) {
		free(r.acc[i].first);
		free(r.acc[i].counts);
	}
	free(r.acc);
	free(r.hit);
	free(order);
	free(total);
	qsegs_free(&r.segs);
	qb_free(&r.b);
	q_qx_free(&r.born_where);
	q_qx_free(&r.where);
	q_qx_free(&r.on);
	return rc;
}

/* ---------- retention/addiction ---------- */

static size_t ad_length(struct qctx *q, enum tz_unit unit, enum tz_unit sub, int64_t start)
{
	size_t days = 1;

	if (unit == TZ_WEEK)
		days = 7;
	else if (unit == TZ_MONTH) {
		struct tz_civil c;
		static const int mdays[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

		tz_to_civil(q->tz, start, &c);
		days = (size_t)mdays[c.month - 1];
		if (c.month == 2 && ((c.year % 4 == 0 && c.year % 100 != 0) || c.year % 400 == 0))
			days = 29;
	}
	return sub == TZ_HOUR ? days * 24 : days;
}

int q_retention_addiction(struct qctx *q)
{
	const struct cs_view *v = q->v;
	const char *ev = q_param(q, "event");
	struct qbuckets b = { 0 };
	struct qx where;
	struct cs_eval ce;
	enum tz_unit unit, sub;
	int64_t from, to;
	uint32_t eid = 0, u;
	double **rows = NULL;
	size_t *len = NULL, c, k;
	int rc;

	memset(&where, 0, sizeof where);
	if (!q_param(q, "unit"))
		return q_fail(q, 400, "'unit' is a required parameter (day, week or month)");
	if (!q_param(q, "addiction_unit"))
		return q_fail(q, 400, "'addiction_unit' is a required parameter (hour or day)");
	if (q_dates(q, &from, &to) ||
	    q_unit(q, "unit", TZ_DAY, (1u << TZ_DAY) | (1u << TZ_WEEK) | (1u << TZ_MONTH), &unit) ||
	    q_unit(q, "addiction_unit", TZ_HOUR, (1u << TZ_HOUR) | (1u << TZ_DAY), &sub) ||
	    q_qx_param(q, "where", &where) || q_buckets_unit(q, from, to, unit, &b)) {
		rc = q->status;
		goto out;
	}
	if (sub >= unit) {
		rc = q_fail(q, 400, "'addiction_unit' must be smaller than 'unit'");
		goto out;
	}
	if (ev && !(eid = cs_string_id(v, ev, strlen(ev))))
		eid = UINT32_MAX; /* no such event: all zeros */
	if (!(rows = calloc(b.n ? b.n : 1, sizeof *rows)) || !(len = calloc(b.n ? b.n : 1, sizeof *len))) {
		rc = q_oom(q);
		goto out;
	}
	for (c = 0; c < b.n; c++) {
		len[c] = ad_length(q, unit, sub, b.start[c]);
		if (!(rows[c] = calloc(len[c], sizeof **rows))) {
			rc = q_oom(q);
			goto out;
		}
	}
	q_eval_init(q, &ce);
	for (u = 0; u < v->n_users && eid != UINT32_MAX; u++) {
		size_t i, cur = SIZE_MAX, n = 0;
		int64_t last_sub = INT64_MIN;

		for (i = v->ustart[u]; i <= v->ustart[u + 1]; i++) {
			size_t bk = SIZE_MAX;
			int ok = 0;

			if (i < v->ustart[u + 1]) {
				if (eid && v->ev[i] != eid)
					continue;
				if (v->t[i] < from || v->t[i] >= to || (bk = qb_find(&b, v->t[i])) == SIZE_MAX)
					continue;
				ce.i = i;
				if ((ok = q_qx_where(q, &where, &ce)) < 0) {
					rc = q->status;
					goto out;
				}
				if (!ok)
					continue;
			}
			if (bk != cur) {
				/* the user's period CUR is complete: n distinct sub-units */
				if (cur != SIZE_MAX)
					for (k = 0; k < n && k < len[cur]; k++)
						rows[cur][k] += 1;
				cur = bk;
				n = 0;
				last_sub = INT64_MIN;
			}
			if (bk != SIZE_MAX) {
				int64_t s = tz_bucket_floor(q->tz, sub, v->t[i]);

				if (s != last_sub) {
					n++;
					last_sub = s;
				}
			}
		}
	}
	if (buf_append(q->out, "{\"data\":{", 9) != MP_OK) {
		rc = q_oom(q);
		goto out;
	}
	for (c = 0; c < b.n; c++) {
		if ((c && buf_putc(q->out, ',') != MP_OK) || buf_json_str(q->out, b.key[c], strlen(b.key[c])) != MP_OK ||
		    buf_append(q->out, ":[", 2) != MP_OK) {
			rc = q_oom(q);
			goto out;
		}
		for (k = 0; k < len[c]; k++)
			if (buf_printf(q->out, k ? ",%.0f" : "%.0f", rows[c][k]) != MP_OK) {
				rc = q_oom(q);
				goto out;
			}
		if (buf_putc(q->out, ']') != MP_OK) {
			rc = q_oom(q);
			goto out;
		}
	}
	rc = buf_append(q->out, "}}", 2) == MP_OK ? 200 : q_oom(q);
out:
	for (c = 0; rows && c < b.n; c++)
		free(rows[c]);
	free(rows);
	free(len);
	qb_free(&b);
	q_qx_free(&where);
	return rc;
}
