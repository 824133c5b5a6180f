/*
 * q_cohorts.c - saved behavioural cohorts (docs/QUERIES.md "Cohorts"):
 * definitions, their members as of a time, the cohorts endpoints and
 * filter_by_cohort for every report.
 *
 * A definition is a tree:
 *   {"and": [c, ...]}  {"or": [c, ...]}  {"not": c}
 *   {"event": "Purchase", "at_least": 3, "within_days": 30, "where": "..."}
 *       one of at_least / at_most / exactly (a count), "did": true (at
 *       least 1), "did_not": true (at most 0); default: did.  The window is
 *       within_days D (the D days before the as-of time), or from_date and
 *       to_date (local days, inclusive), or all time before the as-of time.
 *   {"profile": "user[\"plan\"] == \"pro\""}: an expression over the
 *       user's profile (user[...]; properties[...] reads the same profile).
 * Members are evaluated at query time over the current data: the users
 * (resolved identities) with events, and the users that only have a
 * profile (for them every event count is 0).
 *
 * Evaluation: each event leaf counts, per user, the events of its name in
 * its window that pass its `where`, by walking the by-name index of the
 * view (only those events are read); then the tree is evaluated per user.
 */
#include "query_report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "userprops.h"

#define CH_MAX_DEPTH 8
#define CH_MAX_NODES 128
#define CH_DAY_MS INT64_C(86400000)

enum ch_kind { CH_AND, CH_OR, CH_NOT, CH_EVENT, CH_PROFILE };
enum ch_op { CH_AT_LEAST, CH_AT_MOST, CH_EXACTLY };

struct ch_node {
	enum ch_kind kind;
	struct ch_node **kids;
	size_t n_kids;
	/* CH_EVENT */
	char *event;
	enum ch_op op;
	long count;
	long within_days;          /* 0: none */
	int64_t from_ms, to_ms;    /* absolute window, or from_ms = INT64_MIN */
	struct expr *where;
	uint32_t *cnt;             /* per user key: the events counted (evaluation) */
	/* CH_PROFILE */
	struct expr *expr;
};

struct q_cohort {
	int64_t id;                /* 0: an inline definition */
	char *name, *description;
	int is_visible;
	int64_t created_ms;
	char *def_text;            /* the definition as compact JSON (cache key) */
	struct ch_node *root;
	size_t n_nodes;
};

/* ---------- definitions ---------- */

static void ch_node_free(struct ch_node *n)
{
	size_t i;

	if (!n)
		return;
	for (i = 0; i < n->n_kids; i++)
		ch_node_free(n->kids[i]);
	free(n->kids);
	free(n->event);
	expr_free(n->where);
	expr_free(n->expr);
	free(n->cnt);
	free(n);
}

void q_cohort_free(struct q_cohort *c)
{
	if (!c)
		return;
	free(c->name);
	free(c->description);
	free(c->def_text);
	ch_node_free(c->root);
	free(c);
}

static int ch_parse(struct qctx *q, struct q_cohort *c, const cJSON *j, const char *path, int depth,
		    struct ch_node **out);

static int ch_parse_list(struct qctx *q, struct q_cohort *c, struct ch_node *n, const cJSON *arr,
			 const char *path, int depth)
{
	const cJSON *it;
	char sub[160];

	if (!cJSON_IsArray(arr) || !cJSON_GetArraySize(arr))
		return q_fail(q, 400, "%s must be a non-empty array of conditions", path);
	if (!(n->kids = calloc((size_t)cJSON_GetArraySize(arr), sizeof *n->kids)))
		return q_oom(q);
	cJSON_ArrayForEach(it, arr) {
		snprintf(sub, sizeof sub, "%.120s[%zu]", path, n->n_kids);
		/* counted first: a child that fails half-built is freed with N */
		if (ch_parse(q, c, it, sub, depth + 1, &n->kids[n->n_kids++]))
			return q->status;
	}
	return 0;
}

static int ch_count_key(struct qctx *q, const cJSON *v, const char *path, const char *key, long *out)
{
	if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e9 ||
	    v->valuedouble != (double)(long)v->valuedouble)
		return q_fail(q, 400, "%s.%s must be a non-negative integer", path, key);
	*out = (long)v->valuedouble;
	return 0;
}

static int ch_parse_event(struct qctx *q, struct ch_node *n, const cJSON *j, const char *path)
{
	static const char *const known[] = { "event", "at_least", "at_most", "exactly", "did", "did_not",
					     "within_days", "from_date", "to_date", "where", NULL };
	const cJSON *it, *ev = cJSON_GetObjectItemCaseSensitive(j, "event");
	int n_ops = 0;
	size_t k;

	cJSON_ArrayForEach(it, j) {
		for (k = 0; known[k] && strcmp(known[k], it->string); k++)
			;
		if (!known[k])
			return q_fail(q, 400, "%s: unknown key '%.60s' in an event condition (known: event, at_least, "
				      "at_most, exactly, did, did_not, within_days, from_date, to_date, where)", path, it->string);
	}
	if (!cJSON_IsString(ev) || !ev->valuestring[0] || strlen(ev->valuestring) > 255)
		return q_fail(q, 400, "%s.event must be a non-empty event name", path);
	if (!(n->event = strdup(ev->valuestring)))
		return q_oom(q);
	n->kind = CH_EVENT;
	n->op = CH_AT_LEAST;
	n->count = 1;
	n->from_ms = INT64_MIN;
	if ((it = cJSON_GetObjectItemCaseSensitive(j, "at_least")) && (++n_ops, ch_count_key(q, it, path, "at_least", &n->count)))
		return q->status;
	if ((it = cJSON_GetObjectItemCaseSensitive(j, "at_most")) && (++n_ops, n->op = CH_AT_MOST, ch_count_key(q, it, path, "at_most", &n->count)))
		return q->status;
	if ((it = cJSON_GetObjectItemCaseSensitive(j, "exactly")) && (++n_ops, n->op = CH_EXACTLY, ch_count_key(q, it, path, "exactly", &n->count)))
		return q->status;
	if ((it = cJSON_GetObjectItemCaseSensitive(j, "did"))) {
		if (!cJSON_IsTrue(it))
			return q_fail(q, 400, "%s.did must be true (use did_not)", path);
		n_ops++;
		n->op = CH_AT_LEAST;
		n->count = 1;
	}
	if ((it = cJSON_GetObjectItemCaseSensitive(j, "did_not"))) {
		if (!cJSON_IsTrue(it))
			return q_fail(q, 400, "%s.did_not must be true (use did)", path);
		n_ops++;
		n->op = CH_AT_MOST;
		n->count = 0;
	}
	if (n_ops > 1)
		return q_fail(q, 400, "%s: give one of at_least, at_most, exactly, did, did_not", path);
	if ((it = cJSON_GetObjectItemCaseSensitive(j, "within_days"))) {
		if (ch_count_key(q, it, path, "within_days", &n->within_days))
			return q->status;
		if (n->within_days < 1 || n->within_days > 3660)
			return q_fail(q, 400, "%s.within_days must be 1..3660", path);
	}
	{
		const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "from_date");
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "to_date");
		char what[200];

		if (f || t) {
			if (n->within_days)
				return q_fail(q, 400, "%s: give within_days or from_date/to_date, not both", path);
			if (!cJSON_IsString(f) || !cJSON_IsString(t))
				return q_fail(q, 400, "%s: from_date and to_date go together (YYYY-MM-DD)", path);
			snprintf(what, sizeof what, "%.160s.from_date", path);
			if (q_date_str(q, what, f->valuestring, &n->from_ms))
				return q->status;
			snprintf(what, sizeof what, "%.160s.to_date", path);
			if (q_date_str(q, what, t->valuestring, &n->to_ms))
				return q->status;
			n->to_ms += CH_DAY_MS;     /* inclusive; DST days are re-derived below */
			{
				struct tz_civil cv;

				tz_to_civil(q->tz, n->to_ms - CH_DAY_MS, &cv);
				n->to_ms = tz_from_civil(q->tz, cv.year, cv.month, cv.day + 1, 0, 0);
			}
			if (n->to_ms <= n->from_ms)
				return q_fail(q, 400, "%s.to_date must not be before from_date", path);
		}
	}
	if ((it = cJSON_GetObjectItemCaseSensitive(j, "where"))) {
		char what[200];

		if (!cJSON_IsString(it))
			return q_fail(q, 400, "%s.where must be an expression (a string)", path);
		snprintf(what, sizeof what, "%.160s.where", path);
		if (q_expr_src(q, what, it->valuestring, &n->where))
			return q->status;
	}
	return 0;
}

static int ch_parse(struct qctx *q, struct q_cohort *c, const cJSON *j, const char *path, int depth,
		    struct ch_node **out)
{
	struct ch_node *n;
	const cJSON *it;
	char sub[160];

	if (depth > CH_MAX_DEPTH)
		return q_fail(q, 400, "%s: conditions nest deeper than %d", path, CH_MAX_DEPTH);
	if (++c->n_nodes > CH_MAX_NODES)
		return q_fail(q, 400, "the definition has more than %d conditions", CH_MAX_NODES);
	if (!cJSON_IsObject(j) || !j->child)
		return q_fail(q, 400, "%s must be a condition object (and, or, not, event or profile)", path);
	if (!(*out = n = calloc(1, sizeof *n)))
		return q_oom(q);
	if ((it = cJSON_GetObjectItemCaseSensitive(j, "and")) || (it = cJSON_GetObjectItemCaseSensitive(j, "or"))) {
		if (cJSON_GetArraySize(j) != 1)
			return q_fail(q, 400, "%s: '%s' takes no other keys", path, it->string);
		n->kind = !strcmp(it->string, "and") ? CH_AND : CH_OR;
		snprintf(sub, sizeof sub, "%.120s.%.8s", path, it->string);
		return ch_parse_list(q, c, n, it, sub, depth);
	}
	if ((it = cJSON_GetObjectItemCaseSensitive(j, "not"))) {
		if (cJSON_GetArraySize(j) != 1)
			return q_fail(q, 400, "%s: 'not' takes no other keys", path);
		n->kind = CH_NOT;
		if (!(n->kids = calloc(1, sizeof *n->kids)))
			return q_oom(q);
		snprintf(sub, sizeof sub, "%.120s.not", path);
		n->n_kids = 1;
		return ch_parse(q, c, it, sub, depth + 1, &n->kids[0]);
	}
	if ((it = cJSON_GetObjectItemCaseSensitive(j, "profile"))) {
		if (cJSON_GetArraySize(j) != 1)
			return q_fail(q, 400, "%s: 'profile' takes no other keys", path);
		if (!cJSON_IsString(it))
			return q_fail(q, 400, "%s.profile must be an expression over user[...] (a string)", path);
		n->kind = CH_PROFILE;
		snprintf(sub, sizeof sub, "%.120s.profile", path);
		return q_expr_src(q, sub, it->valuestring, &n->expr);
	}
	if (cJSON_GetObjectItemCaseSensitive(j, "event"))
		return ch_parse_event(q, n, j, path);
	return q_fail(q, 400, "%s: a condition needs one of and, or, not, event, profile (got '%.60s')",
		      path, j->child->string ? j->child->string : "");
}

/* A cohort from BODY ({"name","description","is_visible","definition"});
 * NEED_NAME: name required.  Returns 0 and *OUT, or the status after q_fail. */
static int ch_from_body(struct qctx *q, const cJSON *body, int need_name, struct q_cohort **out)
{
	struct q_cohort *c = calloc(1, sizeof *c);
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(body, "name");
	const cJSON *desc = cJSON_GetObjectItemCaseSensitive(body, "description");
	const cJSON *vis = cJSON_GetObjectItemCaseSensitive(body, "is_visible");
	const cJSON *def = cJSON_GetObjectItemCaseSensitive(body, "definition");

	*out = NULL;
	if (!c)
		return q_oom(q);
	c->is_visible = 1;
	if (need_name && (!cJSON_IsString(name) || !name->valuestring[0] || strlen(name->valuestring) > 255)) {
		q_fail(q, 400, "name must be a non-empty string of at most 255 bytes");
		goto fail;
	}
	if (desc && !cJSON_IsString(desc)) {
		q_fail(q, 400, "description must be a string");
		goto fail;
	}
	if (vis && !cJSON_IsBool(vis) && !cJSON_IsNumber(vis)) {
		q_fail(q, 400, "is_visible must be 0/1 or a boolean");
		goto fail;
	}
	if (!def) {
		q_fail(q, 400, "definition is required (a condition object: and, or, not, event, profile)");
		goto fail;
	}
	if (!(c->name = strdup(cJSON_IsString(name) ? name->valuestring : "")) ||
	    !(c->description = strdup(cJSON_IsString(desc) ? desc->valuestring : "")) ||
	    !(c->def_text = cJSON_PrintUnformatted(def))) {
		q_oom(q);
		goto fail;
	}
	if (vis)
		c->is_visible = cJSON_IsBool(vis) ? cJSON_IsTrue(vis) : vis->valuedouble != 0;
	if (ch_parse(q, c, def, "definition", 0, &c->root))
		goto fail;
	*out = c;
	return 0;
fail:
	q_cohort_free(c);
	return q->status;
}

/* Saved cohort ID. */
static int ch_load(struct qctx *q, int64_t id, struct q_cohort **out)
{
	char *text = NULL;
	int64_t created, updated;
	cJSON *body;
	enum mp_err rc = q->sp ? store_cohort_get(q->sp, id, &text, &created, &updated) : MP_E_NOTFOUND;
	int r;

	*out = NULL;
	if (rc == MP_E_NOTFOUND)
		return q_fail(q, 404, "no cohort %lld in this project", (long long)id);
	if (rc != MP_OK)
		return q_fail(q, 503, "cannot read the cohorts: %s", mp_strerror(rc));
	body = cJSON_Parse(text);
	free(text);
	if (!body)
		return q_fail(q, 503, "cohort %lld is damaged", (long long)id);
	r = ch_from_body(q, body, 0, out);
	cJSON_Delete(body);
	if (r)
		return r;
	(*out)->id = id;
	(*out)->created_ms = created;
	return 0;
}

int q_cohort_spec(struct qctx *q, const char *spec, struct q_cohort **out)
{
	cJSON *j = cJSON_Parse(spec), *id;
	int r;

	*out = NULL;
	if (!j)
		return q_fail(q, 400, "filter_by_cohort is not valid JSON: expected {\"id\": N}");
	if (cJSON_IsNumber(j))
		id = j;
	else
		id = cJSON_GetObjectItemCaseSensitive(j, "id");
	if (cJSON_IsNumber(id) && id->valuedouble >= 1 && id->valuedouble == (double)(int64_t)id->valuedouble) {
		r = ch_load(q, (int64_t)id->valuedouble, out);
	} else if (cJSON_IsObject(j) && cJSON_GetObjectItemCaseSensitive(j, "definition")) {
		r = ch_from_body(q, j, 0, out);  /* an inline definition (ours) */
	} else {
		r = q_fail(q, 400, "filter_by_cohort must be {\"id\": N} (a saved cohort) or {\"definition\": {...}}");
	}
	cJSON_Delete(j);
	return r;
}

/* ---------- members ---------- */

static int ch_count(struct qctx *q, struct ch_node *n, int64_t as_of, struct cs_eval *ce)
{
	const struct cs_view *v = q->v;
	size_t i, a, z;
	uint32_t sid, k;
	int64_t lo, hi;

	for (i = 0; i < n->n_kids; i++)
		if (ch_count(q, n->kids[i], as_of, ce))
			return q->status;
	if (n->kind != CH_EVENT)
		return 0;
	free(n->cnt);
	if (!(n->cnt = calloc(v->n_users ? v->n_users : 1, sizeof *n->cnt)))
		return q_oom(q);
	sid = cs_string_id(v, n->event, strlen(n->event));
	if (!sid || (k = cs_name_index(v, sid)) == UINT32_MAX)
		return 0;
	if (n->from_ms != INT64_MIN) {
		lo = n->from_ms;
		hi = n->to_ms < as_of ? n->to_ms : as_of;
	} else {
		lo = n->within_days ? as_of - n->within_days * CH_DAY_MS : INT64_MIN;
		hi = as_of;
	}
	a = cs_lower_bound(v->nt, v->nstart[k], v->nstart[k + 1], lo);
	z = cs_lower_bound(v->nt, a, v->nstart[k + 1], hi);
	for (i = a; i < z; i++) {
		uint32_t e = v->npos[i], u;

		if (e >= v->n || (u = v->user[e]) == CS_NO_USER || u >= v->n_users)
			continue;
		if (n->where) {
			int r;

			ce->i = e;
			ce->j = i;
			if ((r = expr_eval_where(n->where, cs_eval_lookup, ce)) < 0)
				return q_fail(q, 400, "cohort: %s", expr_error(n->where));
			if (!r)
				continue;
		}
		if (n->cnt[u] < UINT32_MAX)
			n->cnt[u]++;
	}
	return 0;
}

/* A profile condition reads the user's profile only: properties[...] and
 * user[...] are its properties; event[...] and group[...] are undefined. */
static int ch_profile_lookup(void *ctx, enum expr_scope scope, const char *name, size_t len,
			     struct expr_value *out)
{
	struct cs_eval *ce = ctx;

	out->type = EXPR_UNDEFINED;
	if (scope != EXPR_SCOPE_PROPERTIES && scope != EXPR_SCOPE_USER)
		return 0;
	return q_scope_lookup(ce->ext_ctx, ce, EXPR_SCOPE_USER, name, len, out);
}

/* The tree's value for user U (UINT32_MAX: a user without events, whose
 * profile is q->profile_only); -1 after q_fail. */
static int ch_value(struct qctx *q, const struct ch_node *n, uint32_t u, struct cs_eval *ce)
{
	size_t i;
	uint32_t c;
	int r;

	switch (n->kind) {
	case CH_AND:
	case CH_OR:
		for (i = 0; i < n->n_kids; i++) {
			if ((r = ch_value(q, n->kids[i], u, ce)) < 0)
				return -1;
			if (r == (n->kind == CH_OR))
				return r;
		}
		return n->kind == CH_AND;
	case CH_NOT:
		return (r = ch_value(q, n->kids[0], u, ce)) < 0 ? -1 : !r;
	case CH_EVENT:
		c = u == UINT32_MAX ? 0 : n->cnt[u];
		return n->op == CH_AT_LEAST ? c >= (uint32_t)n->count
		     : n->op == CH_AT_MOST ? c <= (uint32_t)n->count : c == (uint32_t)n->count;
	default:                   /* CH_PROFILE */
		ce->i = u == UINT32_MAX ? SIZE_MAX : q->v->ustart[u];  /* no event is read for SIZE_MAX */
		ce->j = SIZE_MAX;
		if ((r = expr_eval_where(n->expr, ch_profile_lookup, ce)) < 0) {
			if (!q->status)
				q_fail(q, 400, "cohort: %s", expr_error(n->expr));
			return -1;
		}
		return r;
	}
}

/* Does the tree read profiles? (Users without events can only match then,
 * or through did_not / at_most conditions.) */
struct ch_only_ctx {
	struct qctx *q;
	struct q_cohort *c;
	struct cs_eval *ce;
	struct q_cohort_members *m;
	int failed;
};

static void ch_only_cb(void *ctx, const char *did, size_t n, const cJSON *props)
{
	struct ch_only_ctx *x = ctx;
	uint32_t sid;
	char **nl;
	int r;

	if (x->failed || !n)
		return;
	sid = cs_string_id(x->q->v, did, n);
	if (sid && colstore_user_key(x->q->v, sid) != CS_NO_USER)
		return;            /* a user with events: evaluated already */
	x->q->profile_only = props;
	r = ch_value(x->q, x->c->root, UINT32_MAX, x->ce);
	x->q->profile_only = NULL;
	if (r < 0) {
		x->failed = 1;
		return;
	}
	if (!r)
		return;
	if (!(nl = realloc(x->m->only, (x->m->n_only + 1) * sizeof *nl)) || !(nl[x->m->n_only] = strndup(did, n))) {
		if (nl)
			x->m->only = nl;
		x->failed = 1;
		q_oom(x->q);
		return;
	}
	x->m->only = nl;
	x->m->n_only++;
}

static int ch_cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int q_cohort_members(struct qctx *q, struct q_cohort *c, int64_t as_of, int with_profile_only,
		     struct q_cohort_members *m)
{
	const struct cs_view *v = q->v;
	struct cs_eval ce;
	uint32_t u;
	int r;

	memset(m, 0, sizeof *m);
	if (!(m->keep = calloc(v->n_users ? v->n_users : 1, 1)))
		return q_oom(q);
	q_eval_init(q, &ce);
	if (ch_count(q, c->root, as_of, &ce))
		return q->status;
	for (u = 0; u < v->n_users; u++) {
		if (v->ustart[u] == v->ustart[u + 1])
			continue;      /* no events here (a filtered view) */
		if ((r = ch_value(q, c->root, u, &ce)) < 0)
			return q->status ? q->status : q_fail(q, 400, "cohort: evaluation failed");
		m->keep[u] = (uint8_t)r;
		m->n_users += (size_t)r;
	}
	if (with_profile_only) {
		struct ch_only_ctx x = { q, c, &ce, m, 0 };
		struct userprops *up = q_userprops(q);

		if (!up && q->status)
			return q->status;
		userprops_each_user(up, ch_only_cb, &x);
		if (x.failed)
			return q->status ? q->status : q_fail(q, 400, "cohort: evaluation failed");
		if (m->n_only)
			qsort(m->only, m->n_only, sizeof *m->only, ch_cmp_str);
	}
	return 0;
}

void q_cohort_members_free(struct q_cohort_members *m)
{
	size_t i;

	free(m->keep);
	for (i = 0; i < m->n_only; i++)
		free(m->only[i]);
	free(m->only);
	memset(m, 0, sizeof *m);
}

int q_cohort_has_profile(const struct q_cohort_members *m, const struct cs_view *v, const char *did)
{
	uint32_t sid = cs_string_id(v, did, strlen(did)), u;
	size_t lo = 0, hi = m->n_only;

	if (sid && (u = colstore_user_key(v, sid)) != CS_NO_USER && u < v->n_users)
		return m->keep[u];
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(m->only[mid], did);

		if (!c)
			return 1;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

/* FNV-1a of the N bytes at P (the member bitmap: the filtered-view key). */
static uint64_t ch_hash_bytes(const uint8_t *p, size_t n, uint64_t h)
{
	while (n--)
		h = (h ^ *p++) * 0x100000001b3ULL;
	return h;
}

int q_cohort_filter(struct qctx *q)
{
	const char *spec = q_param(q, "filter_by_cohort");
	struct q_cohort *c = NULL;
	struct q_cohort_members m;
	struct cs_view *fv;
	uint64_t key;
	enum mp_err rc;
	int owned, r;

	if (!spec)
		return 0;
	if ((r = q_cohort_spec(q, spec, &c)))
		return r;
	/* evaluated now; one set of members is one filtered view (kept with
	 * the view, so the same members are not copied out again) */
	if ((r = q_cohort_members(q, c, q->now_ms, 0, &m))) {
		q_cohort_members_free(&m);
		q_cohort_free(c);
		return r;
	}
	key = ch_hash_bytes(m.keep, q->v->n_users, 0xcbf29ce484222325ULL);
	rc = colstore_filter_view(q->v, key, m.keep, &fv, &owned);
	q_cohort_members_free(&m);
	q_cohort_free(c);
	if (rc != MP_OK)
		return q_fail(q, rc == MP_E_NOMEM ? 503 : 400, "filter_by_cohort: %s", mp_strerror(rc));
	if (owned)
		q->owned_view = fv;
	q->v = fv;
	return 0;
}

/* ---------- endpoints ---------- */

/* The request's JSON body (an object), or the form parameters as one. */
static cJSON *ch_body(struct qctx *q)
{
	static const char *const keys[] = { "id", "name", "description", "is_visible", "definition", NULL };
	cJSON *b;
	size_t i;

	if (q->rq->body && q->rq->body_len && q->rq->body[0] == '{')
		return cJSON_ParseWithLength(q->rq->body, q->rq->body_len);
	if (!(b = cJSON_CreateObject()))
		return NULL;
	for (i = 0; keys[i]; i++) {
		const char *p = q_param(q, keys[i]);
		cJSON *v;

		if (!p)
			continue;
		if (!strcmp(keys[i], "name") || !strcmp(keys[i], "description"))
			v = cJSON_CreateString(p);
		else if (!(v = cJSON_Parse(p)))
			v = cJSON_CreateString(p);  /* reported as the wrong type */
		if (v)
			cJSON_AddItemToObject(b, keys[i], v);
	}
	return b;
}

static int64_t ch_body_id(const cJSON *b)
{
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(b, "id");

	if (cJSON_IsString(id))
		return strtoll(id->valuestring, NULL, 10);
	return cJSON_IsNumber(id) && id->valuedouble >= 1 ? (int64_t)id->valuedouble : 0;
}

/* The stored form of C. */
static char *ch_store_text(const struct q_cohort *c)
{
	cJSON *o = cJSON_CreateObject(), *def = cJSON_Parse(c->def_text);
	char *s = NULL;

	if (o && def && cJSON_AddStringToObject(o, "name", c->name) &&
	    cJSON_AddStringToObject(o, "description", c->description) &&
	    cJSON_AddNumberToObject(o, "is_visible", c->is_visible)) {
		cJSON_AddItemToObject(o, "definition", def);
		def = NULL;
		s = cJSON_PrintUnformatted(o);
	}
	cJSON_Delete(def);
	cJSON_Delete(o);
	return s;
}

/* Evaluate C once over the current data, so a definition that cannot be
 * evaluated (a type error in a `where`) is refused when it is saved. */
static int ch_check(struct qctx *q, struct q_cohort *c)
{
	struct q_cohort_members m;
	int r = q_cohort_members(q, c, q->now_ms, 1, &m);

	q_cohort_members_free(&m);
	return r;
}

static int ch_save(struct qctx *q, struct q_cohort *c, int64_t *id)
{
	char *text = ch_store_text(c);
	enum mp_err rc;

	if (!text)
		return q_oom(q);
	rc = store_cohort_put(q->sp, id, text);
	cJSON_free(text);
	if (rc == MP_E_NOTFOUND)
		return q_fail(q, 404, "no cohort %lld in this project", (long long)*id);
	if (rc != MP_OK)
		return q_fail(q, 503, "cannot save the cohort: %s", mp_strerror(rc));
	return 0;
}

int q_cohorts_create(struct qctx *q)
{
	cJSON *b = ch_body(q);
	struct q_cohort *c = NULL;
	int64_t id = 0;
	int r;

	if (!b)
		return q_fail(q, 400, "the body is not valid JSON");
	r = ch_from_body(q, b, 1, &c);
	cJSON_Delete(b);
	if (r || (r = ch_check(q, c)) || (r = ch_save(q, c, &id))) {
		q_cohort_free(c);
		return r;
	}
	q_cohort_free(c);
	return buf_printf(q->out, "{\"status\":\"ok\",\"id\":%lld}", (long long)id) == MP_OK ? 200 : q_oom(q);
}

int q_cohorts_update(struct qctx *q)
{
	cJSON *b = ch_body(q), *cur = NULL, *it;
	struct q_cohort *c = NULL;
	char *text = NULL;
	int64_t id, created, updated;
	enum mp_err rc;
	int r = 0;

	if (!b)
		return q_fail(q, 400, "the body is not valid JSON");
	if (!(id = ch_body_id(b))) {
		r = q_fail(q, 400, "id (the cohort to update) is required");
		goto out;
	}
	if ((rc = store_cohort_get(q->sp, id, &text, &created, &updated)) != MP_OK) {
		r = rc == MP_E_NOTFOUND ? q_fail(q, 404, "no cohort %lld in this project", (long long)id)
					: q_fail(q, 503, "cannot read the cohorts: %s", mp_strerror(rc));
		goto out;
	}
	if (!(cur = cJSON_Parse(text))) {
		r = q_fail(q, 503, "cohort %lld is damaged", (long long)id);
		goto out;
	}
	/* the given fields replace the stored ones */
	for (it = b->child; it; it = it->next) {
		if (!strcmp(it->string, "id"))
			continue;
		cJSON_DeleteItemFromObjectCaseSensitive(cur, it->string);
		cJSON_AddItemToObject(cur, it->string, cJSON_Duplicate(it, 1));
	}
	if ((r = ch_from_body(q, cur, 1, &c)) || (r = ch_check(q, c)) || (r = ch_save(q, c, &id)))
		goto out;
	r = buf_printf(q->out, "{\"status\":\"ok\",\"id\":%lld}", (long long)id) == MP_OK ? 200 : q_oom(q);
out:
	free(text);
	cJSON_Delete(cur);
	cJSON_Delete(b);
	q_cohort_free(c);
	return r;
}

int q_cohorts_delete(struct qctx *q)
{
	cJSON *b = ch_body(q);
	int64_t id = b ? ch_body_id(b) : 0;
	enum mp_err rc;

	cJSON_Delete(b);
	if (!id)
		return q_fail(q, 400, "id (the cohort to delete) is required");
	if ((rc = store_cohort_delete(q->sp, id)) == MP_E_NOTFOUND)
		return q_fail(q, 404, "no cohort %lld in this project", (long long)id);
	if (rc != MP_OK)
		return q_fail(q, 503, "cannot delete the cohort: %s", mp_strerror(rc));
	return buf_printf(q->out, "{\"status\":\"ok\",\"id\":%lld}", (long long)id) == MP_OK ? 200 : q_oom(q);
}

static void ch_time(int64_t ms, char out[24])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 24, "%Y-%m-%d %H:%M:%S", &tm);
}

struct ch_list_ctx {
	struct qctx *q;
	size_t n;
	int failed;
};

static int ch_list_cb(void *ctx, int64_t id, const char *body, int64_t created_ms, int64_t updated_ms)
{
	struct ch_list_ctx *x = ctx;
	struct qctx *q = x->q;
	struct q_cohort *c = NULL;
	struct q_cohort_members m;
	cJSON *b = cJSON_Parse(body);
	char when[24], count[24];
	int r;

	(void)updated_ms;
	r = b ? ch_from_body(q, b, 0, &c) : q_fail(q, 503, "cohort %lld is damaged", (long long)id);
	cJSON_Delete(b);
	if (r) {
		x->failed = 1;
		return 1;
	}
	/* a cohort the current data cannot be evaluated for (a type error in a
	 * `where`) is listed with "count": null */
	if ((r = q_cohort_members(q, c, q->now_ms, 1, &m)) != 0) {
		if (r == 503) {
			q_cohort_members_free(&m);
			q_cohort_free(c);
			x->failed = 1;
			return 1;
		}
		q->status = 0;
		count[0] = '\0';
	}
	if (!r)
		snprintf(count, sizeof count, "%zu", m.n_users + m.n_only);
	ch_time(created_ms, when);
	if (buf_printf(q->out, "%s{\"count\":%s,\"is_visible\":%d,\"description\":", x->n++ ? "," : "",
		       r ? "null" : count, c->is_visible) != MP_OK ||
	    buf_json_str(q->out, c->description, strlen(c->description)) != MP_OK ||
	    buf_printf(q->out, ",\"created\":\"%s\",\"project_id\":%ld,\"id\":%lld,\"name\":", when, q->proj->id,
		       (long long)id) != MP_OK ||
	    buf_json_str(q->out, c->name, strlen(c->name)) != MP_OK || buf_putc(q->out, '}') != MP_OK) {
		q_oom(q);
		x->failed = 1;
	}
	q_cohort_members_free(&m);
	q_cohort_free(c);
	return x->failed;
}

int q_cohorts_list(struct qctx *q)
{
	struct ch_list_ctx x = { q, 0, 0 };
	enum mp_err rc;

	if (buf_putc(q->out, '[') != MP_OK)
		return q_oom(q);
	rc = store_cohort_list(q->sp, ch_list_cb, &x);
	if (x.failed)
		return q->status;
	if (rc != MP_OK)
		return q_fail(q, 503, "cannot read the cohorts: %s", mp_strerror(rc));
	return buf_putc(q->out, ']') == MP_OK ? 200 : q_oom(q);
}

/* The cohort of the request: id=N (saved) or definition={...} (inline). */
static int ch_request_cohort(struct qctx *q, struct q_cohort **out)
{
	const char *id = q_param(q, "id"), *def = q_param(q, "definition");
	char *end;
	long long n;
	cJSON *b;
	int r;

	*out = NULL;
	if (id) {
		n = strtoll(id, &end, 10);
		if (*end || n < 1)
			return q_fail(q, 400, "id must be a cohort id");
		return ch_load(q, n, out);
	}
	if (!def)
		return q_fail(q, 400, "id (a saved cohort) or definition (a cohort definition) is required");
	if (!(b = cJSON_CreateObject()))
		return q_oom(q);
	{
		cJSON *d = cJSON_Parse(def);

		if (!d) {
			cJSON_Delete(b);
			return q_fail(q, 400, "definition is not valid JSON");
		}
		cJSON_AddItemToObject(b, "definition", d);
	}
	r = ch_from_body(q, b, 0, out);
	cJSON_Delete(b);
	return r;
}

/* The canonical distinct_id of user U of the view. */
static const char *ch_user_id(const struct cs_view *v, uint32_t u, size_t *n)
{
	return cs_string(v, colstore_canonical(v, v->did[v->ustart[u]]), n);
}

struct ch_member {
	const char *s;
	size_t n;
};

static int ch_member_cmp(const void *a, const void *b)
{
	const struct ch_member *x = a, *y = b;
	int c = memcmp(x->s, y->s, x->n < y->n ? x->n : y->n);

	return c ? c : (x->n > y->n) - (x->n < y->n);
}

int q_cohorts_members(struct qctx *q)
{
	struct q_cohort *c = NULL;
	struct q_cohort_members m;
	struct ch_member *all = NULL;
	long page, page_size;
	size_t n = 0, i, a, z;
	uint32_t u;
	int r;

	memset(&m, 0, sizeof m);
	if ((r = ch_request_cohort(q, &c)) || q_int(q, "page", 0, 0, 1L << 30, &page) ||
	    q_int(q, "page_size", 1000, 1, 10000, &page_size) || (r = q_cohort_members(q, c, q->now_ms, 1, &m)))
		goto out;
	if (!(all = malloc((m.n_users + m.n_only + 1) * sizeof *all))) {
		r = q_oom(q);
		goto out;
	}
	for (u = 0; u < q->v->n_users; u++)
		if (m.keep[u]) {
			all[n].s = ch_user_id(q->v, u, &all[n].n);
			n++;
		}
	for (i = 0; i < m.n_only; i++) {
		all[n].s = m.only[i];
		all[n++].n = strlen(m.only[i]);
	}
	qsort(all, n, sizeof *all, ch_member_cmp);
	a = (size_t)page * (size_t)page_size;
	z = a + (size_t)page_size;
	if (a > n)
		a = n;
	if (z > n)
		z = n;
	if (buf_printf(q->out, "{\"status\":\"ok\",\"id\":%lld,\"total\":%zu,\"page\":%ld,\"page_size\":%ld,\"results\":[",
		       (long long)c->id, n, page, page_size) != MP_OK) {
		r = q_oom(q);
		goto out;
	}
	for (i = a; i < z; i++)
		if ((i > a && buf_putc(q->out, ',') != MP_OK) || buf_append(q->out, "{\"$distinct_id\":", 16) != MP_OK ||
		    buf_json_str(q->out, all[i].s, all[i].n) != MP_OK || buf_putc(q->out, '}') != MP_OK) {
			r = q_oom(q);
			goto out;
		}
	r = buf_append(q->out, "]}", 2) == MP_OK ? 200 : q_oom(q);
out:
	free(all);
	q_cohort_members_free(&m);
	q_cohort_free(c);
	return r ? r : q->status;
}

int q_cohorts_size(struct qctx *q)
{
	struct q_cohort *c = NULL;
	struct qbuckets b;
	enum tz_unit unit;
	int64_t from, to;
	double *vals = NULL;
	size_t k;
	int r;

	memset(&b, 0, sizeof b);
	if ((r = ch_request_cohort(q, &c)) || q_dates(q, &from, &to) ||
	    q_unit(q, "unit", TZ_DAY, 1u << TZ_DAY | 1u << TZ_WEEK | 1u << TZ_MONTH, &unit) ||
	    q_buckets_unit(q, from, to, unit, &b))
		goto out;
	if (!(vals = calloc(b.n ? b.n : 1, sizeof *vals))) {
		r = q_oom(q);
		goto out;
	}
	/* the size as of the end of each bucket (not after now) */
	for (k = 0; k < b.n; k++) {
		struct q_cohort_members m;
		int64_t as_of = b.start[k + 1] < to ? b.start[k + 1] : to;

		if (as_of > q->now_ms)
			as_of = q->now_ms;
		if ((r = q_cohort_members(q, c, as_of, 1, &m))) {
			q_cohort_members_free(&m);
			goto out;
		}
		vals[k] = (double)(m.n_users + m.n_only);
		q_cohort_members_free(&m);
	}
	if (buf_printf(q->out, "{\"status\":\"ok\",\"id\":%lld,\"unit\":\"%s\",\"series\":", (long long)c->id,
		       unit == TZ_DAY ? "day" : unit == TZ_WEEK ? "week" : "month") != MP_OK ||
	    buf_putc(q->out, '{') != MP_OK) {
		r = q_oom(q);
		goto out;
	}
	for (k = 0; k < b.n; k++)
		if (buf_printf(q->out, "%s\"%s\":%.0f", k ? "," : "", b.key[k], vals[k]) != MP_OK) {
			r = q_oom(q);
			goto out;
		}
	r = buf_append(q->out, "}}", 2) == MP_OK ? 200 : q_oom(q);
out:
	free(vals);
	qb_free(&b);
	q_cohort_free(c);
	return r ? r : q->status;
}

/* composition: the distribution of profile properties among the members */
struct ch_comp {
	struct qctx *q;
	const char **names;
	size_t n_names;
	struct qsegs *segs;        /* one per name */
	int failed;
};

static void ch_comp_add(struct ch_comp *x, const cJSON *prof)
{
	size_t i;
	char key[256];

	for (i = 0; i < x->n_names && !x->failed; i++) {
		const cJSON *p = prof ? cJSON_GetObjectItemCaseSensitive(prof, x->names[i]) : NULL;
		char *txt = NULL;
		size_t n, k;

		if (!p) {
			snprintf(key, sizeof key, "undefined");
		} else if (cJSON_IsString(p)) {
			snprintf(key, sizeof key, "%s", p->valuestring);
		} else {
			txt = cJSON_PrintUnformatted(p);
			snprintf(key, sizeof key, "%s", txt ? txt : "null");
			cJSON_free(txt);
		}
		n = strlen(key);
		if ((k = qsegs_get(&x->segs[i], key, n)) == SIZE_MAX) {
			x->failed = 1;
			return;
		}
		x->segs[i].val[k] += 1;
	}
}

int q_cohorts_composition(struct qctx *q)
{
	struct q_cohort *c = NULL;
	struct q_cohort_members m;
	struct ch_comp x;
	cJSON *props = NULL, *it;
	struct userprops *up;
	size_t i, k;
	uint32_t u;
	int r;

	memset(&m, 0, sizeof m);
	memset(&x, 0, sizeof x);
	x.q = q;
	if ((r = ch_request_cohort(q, &c)))
		goto out;
	if (!q_param(q, "properties") || !(props = cJSON_Parse(q_param(q, "properties"))) || !cJSON_IsArray(props) ||
	    !cJSON_GetArraySize(props) || cJSON_GetArraySize(props) > 20) {
		r = q_fail(q, 400, "properties must be a JSON array of 1 to 20 profile property names");
		goto out;
	}
	cJSON_ArrayForEach(it, props)
		if (!cJSON_IsString(it)) {
			r = q_fail(q, 400, "properties must be a JSON array of 1 to 20 profile property names");
			goto out;
		}
	if ((r = q_cohort_members(q, c, q->now_ms, 1, &m)))
		goto out;
	x.n_names = (size_t)cJSON_GetArraySize(props);
	if (!(x.names = calloc(x.n_names, sizeof *x.names)) || !(x.segs = calloc(x.n_names, sizeof *x.segs))) {
		r = q_oom(q);
		goto out;
	}
	i = 0;
	cJSON_ArrayForEach(it, props) {
		x.names[i] = it->valuestring;
		qsegs_init(&x.segs[i++], 1);
	}
	up = q_userprops(q);
	if (!up && q->status) {
		r = q->status;
		goto out;
	}
	for (u = 0; u < q->v->n_users && !x.failed; u++) {
		const char *s;
		size_t n;

		if (!m.keep[u])
			continue;
		s = ch_user_id(q->v, u, &n);
		ch_comp_add(&x, up ? userprops_user(up, s, n) : NULL);
	}
	for (i = 0; i < m.n_only && !x.failed; i++)
		ch_comp_add(&x, up ? userprops_user(up, m.only[i], strlen(m.only[i])) : NULL);
	if (x.failed) {
		r = q_oom(q);
		goto out;
	}
	if (buf_printf(q->out, "{\"status\":\"ok\",\"id\":%lld,\"total\":%zu,\"properties\":{", (long long)c->id,
		       m.n_users + m.n_only) != MP_OK) {
		r = q_oom(q);
		goto out;
	}
	for (i = 0; i < x.n_names; i++) {
		size_t nn, *order = qsegs_top(&x.segs[i], x.segs[i].val, 100, &nn);

		if (!order && x.segs[i].n) {
			r = q_oom(q);
			goto out;
		}
		if ((i && buf_putc(q->out, ',') != MP_OK) || buf_json_str(q->out, x.names[i], strlen(x.names[i])) != MP_OK ||
		    buf_append(q->out, ":{", 2) != MP_OK) {
			free(order);
			r = q_oom(q);
			goto out;
		}
		for (k = 0; k < nn; k++)
			if ((k && buf_putc(q->out, ',') != MP_OK) ||
			    buf_json_str(q->out, x.segs[i].name[order[k]], x.segs[i].name_len[order[k]]) != MP_OK ||
			    buf_printf(q->out, ":%.0f", x.segs[i].val[order[k]]) != MP_OK) {
				free(order);
				r = q_oom(q);
				goto out;
			}
		free(order);
		if (buf_putc(q->out, '}') != MP_OK) {
			r = q_oom(q);
			goto out;
		}
	}
	r = buf_append(q->out, "}}", 2) == MP_OK ? 200 : q_oom(q);
out:
	for (i = 0; x.segs && i < x.n_names; i++)
		qsegs_free(&x.segs[i]);
	free(x.segs);
	free(x.names);
	cJSON_Delete(props);
	q_cohort_members_free(&m);
	q_cohort_free(c);
	return r ? r : q->status;
}
