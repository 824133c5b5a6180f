/*
 * query.c - the query engine: one projection and time zone per project,
 * dispatch of /api/2.0/<endpoint> to the report modules, and the helpers
 * they share (contracts in include/query.h and include/query_report.h).
 */
#include "query_report.h"

#include <limits.h>
#include <pthread.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

struct query_engine {
	const struct config *cfg;
	struct store *st;
	struct colstore **cs;      /* per project, parallel to cfg->projects */
	struct tz **tz;
	struct q_sessions *sessions; /* engage paging snapshots */
	struct q_upcache **upc;    /* per project: profile snapshots for user[] / group[] */
	pthread_t warm;            /* loads every projection at start, then keeps the files */
	int warm_started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stopping;
};

#define QUERY_PERSIST_EVERY_MS 5000   /* how often the projection files are looked after */
#define QUERY_PERSIST_QUIET_MS 5000   /* a view this old is written to its file */

/* Build each project's projection in the background right after start, so
 * the first query does not pay for reading every shard (a query that comes
 * earlier waits for the load in progress: it never sees a partial view). */
static void *query_warm_main(void *arg)
{
	struct query_engine *qe = arg;
	size_t i;

	for (i = 0; i < qe->cfg->n_projects; i++) {
		struct cs_view *v = NULL;
		struct timespec a, b;
		enum mp_err rc;

		clock_gettime(CLOCK_MONOTONIC, &a);
		rc = colstore_acquire(qe->cs[i], &v);
		clock_gettime(CLOCK_MONOTONIC, &b);
		if (rc == MP_OK)
			log_info("project %s: query projection ready: %zu events, %u users in %.2f s",
				 qe->cfg->projects[i].name, v->n, v->n_users,
				 (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9);
		else
			log_error("project %s: query projection: %s", qe->cfg->projects[i].name, mp_strerror(rc));
		colstore_release(v);
	}
	/* then keep each project's projection file current, so a restart maps it
	 * instead of reading every shard */
	pthread_mutex_lock(&qe->mu);
	while (!qe->stopping) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += QUERY_PERSIST_EVERY_MS / 1000;
		pthread_cond_timedwait(&qe->cv, &qe->mu, &ts);
		if (qe->stopping)
			break;
		pthread_mutex_unlock(&qe->mu);
		for (i = 0; i < qe->cfg->n_projects; i++)
			colstore_persist(qe->cs[i], QUERY_PERSIST_QUIET_MS);
		pthread_mutex_lock(&qe->mu);
	}
	pthread_mutex_unlock(&qe->mu);
	return NULL;
}

enum mp_err query_engine_open(const struct config *cfg, struct store *st, struct query_engine **out,
			      char *err, size_t errlen)
{
	struct query_engine *qe = calloc(1, sizeof *qe);
	size_t i, n = cfg->n_projects;
	enum mp_err rc;

	if (!qe || !(qe->cs = calloc(n ? n : 1, sizeof *qe->cs)) || !(qe->tz = calloc(n ? n : 1, sizeof *qe->tz)) ||
	    !(qe->upc = calloc(n ? n : 1, sizeof *qe->upc)) || !(qe->sessions = q_sessions_new())) {
		query_engine_free(qe);
		return MP_E_NOMEM;
	}
	qe->cfg = cfg;
	qe->st = st;
	pthread_mutex_init(&qe->mu, NULL);
	pthread_cond_init(&qe->cv, NULL);
	for (i = 0; i < n; i++) {
		const struct config_project *p = &cfg->projects[i];

		if ((rc = tz_load(p->timezone, &qe->tz[i])) != MP_OK) {
			snprintf(err, errlen, "project %s: cannot load time zone %s: %s", p->name, p->timezone,
				 mp_strerror(rc));
			query_engine_free(qe);
			return rc;
		}
		if (!(qe->upc[i] = q_upcache_new())) {
			query_engine_free(qe);
			return MP_E_NOMEM;
		}
		if ((rc = colstore_open(store_project_get(st, p), p->identity == CONFIG_IDENTITY_ORIGINAL, &qe->cs[i])) != MP_OK) {
			snprintf(err, errlen, "project %s: %s", p->name, mp_strerror(rc));
			query_engine_free(qe);
			return rc;
		}
	}
	qe->warm_started = pthread_create(&qe->warm, NULL, query_warm_main, qe) == 0;
	*out = qe;
	return MP_OK;
}

void query_engine_free(struct query_engine *qe)
{
	size_t i;

	if (!qe)
		return;
	for (i = 0; qe->cfg && qe->cs && i < qe->cfg->n_projects; i++)
		colstore_stop(qe->cs[i]);
	if (qe->warm_started) {
		pthread_mutex_lock(&qe->mu);
		qe->stopping = 1;
		pthread_cond_signal(&qe->cv);
		pthread_mutex_unlock(&qe->mu);
		pthread_join(qe->warm, NULL);
	}
	for (i = 0; qe->cfg && i < qe->cfg->n_projects; i++) {
		if (qe->cs)
			colstore_free(qe->cs[i]);
		if (qe->tz)
			tz_free(qe->tz[i]);
		if (qe->upc)
			q_upcache_free(qe->upc[i]);
	}
	free(qe->upc);
	free(qe->cs);
	free(qe->tz);
	q_sessions_free(qe->sessions);
	free(qe);
}

/* ---------- dispatch ---------- */

/* QK_READ: reads the view; QK_WRITE: POST only, no view; QK_NOVIEW: no
 * view; QK_READ_WRITE: POST only, with the view */
enum q_kind { QK_READ, QK_WRITE, QK_NOVIEW, QK_READ_WRITE };

static const struct {
	const char *name;
	enum q_kind kind;
	int (*run)(struct qctx *q);
} q_table[] = {
	{ "segmentation", QK_READ, q_segmentation },
	{ "segmentation/numeric", QK_READ, q_segmentation_numeric },
	{ "segmentation/sum", QK_READ, NULL },
	{ "segmentation/average", QK_READ, NULL },
	{ "events", QK_READ, q_events },
	{ "events/top", QK_READ, q_events_top },
	{ "events/names", QK_READ, q_events_names },
	{ "events/properties", QK_READ, q_events_properties },
	{ "events/properties/top", QK_READ, q_events_properties_top },
	{ "events/properties/values", QK_READ, q_events_properties_values },
	{ "funnels", QK_READ, q_funnels },
	{ "funnels/list", QK_NOVIEW, q_funnels_list },
	{ "funnels/create", QK_WRITE, q_funnels_create },
	{ "flows", QK_READ, q_flows },
	{ "retention", QK_READ, q_retention },
	{ "retention/addiction", QK_READ, q_retention_addiction },
	{ "identity/graph", QK_READ, q_identity_graph },
	{ "engage", QK_READ, q_engage },
	{ "stream/query", QK_READ, q_stream_query },
	{ "data-deletions", QK_READ_WRITE, q_deletion_create },
	{ "data-deletions/", QK_NOVIEW, q_deletion_status },  /* + task id */
	{ "cohorts/create", QK_READ_WRITE, q_cohorts_create },
	{ "cohorts/update", QK_READ_WRITE, q_cohorts_update },
	{ "cohorts/delete", QK_WRITE, q_cohorts_delete },
	{ "cohorts/list", QK_READ, q_cohorts_list },
	{ "cohorts/members", QK_READ, q_cohorts_members },
	{ "cohorts/size", QK_READ, q_cohorts_size },
	{ "cohorts/composition", QK_READ, q_cohorts_composition },
	{ "kpi", QK_READ, q_kpi },
	{ "formulas", QK_READ, q_formulas },
	{ "insights", QK_NOVIEW, q_insights },
	/* saved reports and dashboards: a run is a nested request per report
	 * (q_run_nested), which takes its own view */
	{ "bookmarks/create", QK_WRITE, q_bookmarks_create },
	{ "bookmarks/list", QK_NOVIEW, q_bookmarks_list },
	{ "bookmarks/get", QK_NOVIEW, q_bookmarks_get },
	{ "bookmarks/update", QK_WRITE, q_bookmarks_update },
	{ "bookmarks/delete", QK_WRITE, q_bookmarks_delete },
	{ "bookmarks/run", QK_NOVIEW, q_bookmarks_run },
	{ "dashboards/create", QK_WRITE, q_dashboards_create },
	{ "dashboards/list", QK_NOVIEW, q_dashboards_list },
	{ "dashboards/get", QK_NOVIEW, q_dashboards_get },
	{ "dashboards/update", QK_WRITE, q_dashboards_update },
	{ "dashboards/delete", QK_WRITE, q_dashboards_delete },
	{ "dashboards/run", QK_NOVIEW, q_dashboards_run },
};

static int q_find(const char *endpoint)
{
	size_t i;

	for (i = 0; i < sizeof q_table / sizeof q_table[0]; i++) {
		size_t n = strlen(q_table[i].name);

		if (!strcmp(q_table[i].name, endpoint) ||
		    (n && q_table[i].name[n - 1] == '/' && !strncmp(q_table[i].name, endpoint, n) &&
		     endpoint[n] && !strchr(endpoint + n, '/')))
			return (int)i;
	}
	return -1;
}

/* data_group_id: count groups instead of users by running the report on
 * the group view of that group key (colstore.h).  The key is the project's
 * group_keys[N-1] for a number N, else the parameter itself.  Returns 0,
 * or nonzero after q_fail. */
int q_group_key(struct qctx *q, const char **key)
{
	const char *g = q_param(q, "data_group_id");
	char *end;
	long n;

	*key = g;
	if (!g)
		return 0;
	n = strtol(g, &end, 10);
	if (*end == '\0') {
		if (n < 1 || (size_t)n > q->proj->n_group_keys)
			return q_fail(q, 400, "data_group_id %s is not a group key of this project (it has %zu: "
				      "set group_keys in its [project] section)", g, q->proj->n_group_keys);
		*key = q->proj->group_keys[n - 1];
	}
	return 0;
}

/* filter_by_cohort on the reports that count users (not on the ones that
 * answer about a given user or manage cohorts). */
static int q_filter_cohort(struct qctx *q)
{
	static const char *const skip[] = { "identity/graph", "data-deletions", "engage", "cohorts/" };
	size_t i;

	for (i = 0; i < sizeof skip / sizeof skip[0]; i++)
		if (!strncmp(q->rq->endpoint, skip[i], strlen(skip[i])))
			return 0;
	return q_cohort_filter(q);
}

static int q_group_view(struct qctx *q)
{
	/* these answer about users, or read data_group_id themselves (engage) */
	static const char *const user_only[] = { "identity/graph", "stream/query", "data-deletions", "engage",
						 "cohorts/" };
	const char *key;
	struct cs_view *gv;
	enum mp_err rc;
	size_t i;

	for (i = 0; i < sizeof user_only / sizeof user_only[0]; i++)
		if (!strncmp(q->rq->endpoint, user_only[i], strlen(user_only[i])))
			return 0;
	if (q_group_key(q, &key) || !key)
		return q->status;
	rc = colstore_group_view(q->v, cs_string_id(q->v, key, strlen(key)), &gv);
	if (rc == MP_E_TOOBIG)
		return q_fail(q, 400, "too many different data_group_id keys queried at once");
	if (rc != MP_OK)
		return q_oom(q);
	q->v = gv;
	q->group_key = key;
	return 0;
}

/* ---------- canonical ids for the export ---------- */

struct query_resolver {
	struct cs_view *v;
};

enum mp_err query_resolver_open(struct query_engine *qe, const struct config_project *p,
				struct query_resolver **out)
{
	struct query_resolver *r;
	const struct id_link *links;
	struct cs_view *v;
	enum mp_err rc;

	*out = NULL;
	if ((rc = colstore_acquire(qe->cs[p - qe->cfg->projects], &v)) != MP_OK)
		return rc;
	if (!colstore_links(v, &links)) {
		colstore_release(v);
		return MP_OK;
	}
	if (!(r = malloc(sizeof *r))) {
		colstore_release(v);
		return MP_E_NOMEM;
	}
	r->v = v;
	*out = r;
	return MP_OK;
}

const char *query_resolve(void *ctx, const char *did, size_t n, size_t *len)
{
	struct query_resolver *r = ctx;
	uint32_t sid = n ? cs_string_id(r->v, did, n) : 0, c;

	if (!sid || (c = colstore_canonical(r->v, sid)) == sid)
		return NULL;
	return cs_string(r->v, c, len);
}

void query_resolver_free(struct query_resolver *r)
{
	if (!r)
		return;
	colstore_release(r->v);
	free(r);
}

int query_endpoint_known(const char *endpoint)
{
	return q_find(endpoint) >= 0;
}

static void q_error_body(struct qctx *q)
{
	buf_reset(q->out);
	if (buf_append(q->out, "{\"error\":", 9) != MP_OK ||
	    buf_json_str(q->out, q->err, strlen(q->err)) != MP_OK ||
	    buf_append(q->out, ",\"request\":", 11) != MP_OK ||
	    buf_json_str(q->out, q->rq->request, strlen(q->rq->request)) != MP_OK ||
	    buf_append(q->out, ",\"status\":\"error\"}", 18) != MP_OK)
		buf_reset(q->out);
}

/* A fresh context for RQ on engine QE, answering into OUT. */
static void q_ctx_init(struct query_engine *qe, const struct query_request *rq, struct buf *out, struct qctx *q)
{
	size_t pi = (size_t)(rq->project - qe->cfg->projects);
	struct timespec ts;

	memset(q, 0, sizeof *q);
	q->qe = qe;
	q->rq = rq;
	q->proj = rq->project;
	q->sp = store_project_get(qe->st, rq->project);
	q->cs = qe->cs[pi];
	q->tz = qe->tz[pi];
	q->col_orders = CS_COL_MAIN;
	q->out = out;
	q->sessions = qe->sessions;
	q->upc = qe->upc[pi];
	clock_gettime(CLOCK_REALTIME, &ts);
	q->now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Run table entry K in Q (method already checked): take the view (and the
 * group view) the entry needs, run it, let go.  Returns the status; on
 * failure Q's err holds the message. */
static int q_exec(struct qctx *q, int k)
{
	size_t pi = (size_t)(q->proj - q->qe->cfg->projects);
	struct cs_view *held = NULL;
	enum mp_err rc;
	int status;

	if ((q_table[k].kind == QK_READ || q_table[k].kind == QK_READ_WRITE) &&
	    (rc = colstore_acquire(q->qe->cs[pi], &q->v)) != MP_OK)
		return q_fail(q, 503, "cannot read the event store: %s", mp_strerror(rc));
	held = q->v;
	if (held && (q_filter_cohort(q) != 0 || q_group_view(q) != 0)) {
		colstore_derived_free(q->owned_view);
		colstore_release(held);
		return q->status;
	}
	if (!strcmp(q_table[k].name, "segmentation/sum"))
		status = q_segmentation_sum(q, 0);
	else if (!strcmp(q_table[k].name, "segmentation/average"))
		status = q_segmentation_sum(q, 1);
	else
		status = q_table[k].run(q);
	q_scopes_done(q);
	colstore_derived_free(q->owned_view);
	q->owned_view = NULL;
	colstore_release(held);
	return status;
}

int query_run(struct query_engine *qe, const struct query_request *rq, struct buf *out)
{
	struct qctx q;
	int k = q_find(rq->endpoint), status;

	q_ctx_init(qe, rq, out, &q);
	if (k < 0) {
		status = q_fail(&q, 404, "unknown endpoint '%s'", rq->endpoint);
		goto done;
	}
	if ((q_table[k].kind == QK_WRITE || q_table[k].kind == QK_READ_WRITE) && strcmp(rq->method, "POST") != 0) {
		status = q_fail(&q, 405, "%s needs POST", rq->endpoint);
		goto done;
	}
	status = q_exec(&q, k);
done:
	if (status != 200)
		q_error_body(&q);
	return status;
}

int q_run_nested(struct qctx *q, const char *endpoint, const char *(*param)(void *ctx, const char *name),
		 void *ctx, struct buf *out, char *err, size_t errlen)
{
	struct query_request rq = *q->rq;
	struct qctx sub;
	int k = q_find(endpoint), status;

	if (k < 0 || q_table[k].kind == QK_WRITE || q_table[k].kind == QK_READ_WRITE) {
		/* flows until its report lands */
		snprintf(err, errlen, "unknown report type: this server has no '%s' report", endpoint);
		return 400;
	}
	rq.endpoint = endpoint;
	rq.method = "GET";
	rq.param = param;
	rq.param_ctx = ctx;
	rq.body = NULL;
	rq.body_len = 0;
	q_ctx_init(q->qe, &rq, out, &sub);
	sub.now_ms = q->now_ms;
	status = q_exec(&sub, k);
	if (status != 200)
		snprintf(err, errlen, "%s", sub.err);
	return status;
}

/* ---------- parameters ---------- */

int q_fail(struct qctx *q, int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(q->err, sizeof q->err, fmt, ap);
	va_end(ap);
	q->status = status;
	return status;
}

int q_oom(struct qctx *q)
{
	return q_fail(q, 503, "out of memory");
}

const char *q_param(struct qctx *q, const char *name)
{
	const char *v = q->rq->param(q->rq->param_ctx, name);

	return v && v[0] ? v : NULL;
}

int q_date_str(struct qctx *q, const char *name, const char *s, int64_t *ms)
{
	int y, m, d;

	if (!s)
		return q_fail(q, 400, "'%s' is a required parameter", name);
	if (!tz_parse_date(s, strlen(s), &y, &m, &d))
		return q_fail(q, 400, "'%s' is invalid: expected a date YYYY-MM-DD, got '%.40s'", name, s);
	*ms = tz_from_civil(q->tz, y, m, d, 0, 0);
	return 0;
}

static int q_date(struct qctx *q, const char *name, int64_t *ms)
{
	return q_date_str(q, name, q_param(q, name), ms);
}

int q_dates(struct qctx *q, int64_t *from, int64_t *to)
{
	struct tz_civil c;

	if (q_date(q, "from_date", from) || q_date(q, "to_date", to))
		return 1;
	tz_to_civil(q->tz, *to, &c);
	*to = tz_from_civil(q->tz, c.year, c.month, c.day + 1, 0, 0);
	if (*to <= *from)
		return q_fail(q, 400, "'to_date' must not be before 'from_date'");
	return 0;
}

int q_int(struct qctx *q, const char *name, long def, long min, long max, long *out)
{
	const char *s = q_param(q, name);
	char *end;
	long v;

	if (!s) {
		*out = def;
		return 0;
	}
	v = strtol(s, &end, 10);
	if (*end || end == s || v < min || v > max)
		return q_fail(q, 400, "'%s' must be an integer from %ld to %ld", name, min, max);
	*out = v;
	return 0;
}

int q_bool(struct qctx *q, const char *name, int def, int *out)
{
	const char *s = q_param(q, name);

	if (!s)
		*out = def;
	else if (!strcmp(s, "1") || !strcasecmp(s, "true"))
		*out = 1;
	else if (!strcmp(s, "0") || !strcasecmp(s, "false"))
		*out = 0;
	else
		return q_fail(q, 400, "'%s' must be true or false", name);
	return 0;
}

static const char *const q_unit_names[] = { "minute", "hour", "day", "week", "month" };

int q_unit(struct qctx *q, const char *name, enum tz_unit def, unsigned mask, enum tz_unit *out)
{
	const char *s = q_param(q, name);
	char allowed[64];
	size_t i, n = 0;

	if (!s) {
		*out = def;
		return 0;
	}
	for (i = 0; i < 5; i++)
		if ((mask & (1u << i)) && !strcmp(s, q_unit_names[i])) {
			*out = (enum tz_unit)i;
			return 0;
		}
	allowed[0] = '\0';
	for (i = 0; i < 5; i++)
		if (mask & (1u << i))
			n += (size_t)snprintf(allowed + n, sizeof allowed - n, "%s%s", n ? ", " : "", q_unit_names[i]);
	return q_fail(q, 400, "'%s' must be one of: %s (got '%.40s')", name, allowed, s);
}

int q_expr_src(struct qctx *q, const char *what, const char *src, struct expr **out)
{
	char msg[200];
	size_t off = 0;
	enum mp_err rc = expr_compile(src, strlen(src), out, msg, sizeof msg, &off);

	if (rc == MP_OK)
		return 0;
	*out = NULL;
	if (rc == MP_E_NOMEM)
		return q_oom(q);
	return q_fail(q, 400, "invalid expression in '%s' at position %zu: %s", what, off, msg);
}

int q_expr(struct qctx *q, const char *name, struct expr **out)
{
	const char *s = q_param(q, name);

	*out = NULL;
	return s ? q_expr_src(q, name, s, out) : 0;
}

int q_property_expr(struct qctx *q, const char *name, struct expr **out)
{
	struct buf src;
	int rc;

	/* built as source text so it goes through the one parser */
	buf_init(&src, 1 << 20);
	if (buf_append(&src, "properties[", 11) != MP_OK || buf_json_str(&src, name, strlen(name)) != MP_OK ||
	    buf_putc(&src, ']') != MP_OK) {
		buf_free(&src);
		return q_oom(q);
	}
	rc = q_expr_src(q, "name", src.data, out);
	buf_free(&src);
	return rc;
}

int q_where(struct qctx *q, struct expr *e, struct cs_eval *ce)
{
	int r;

	if (!e)
		return 1;
	r = expr_eval_where(e, cs_eval_lookup, ce);
	if (r < 0)
		q_fail(q, 400, "cannot evaluate expression: %s", expr_error(e));
	return r;
}

/* ---------- buckets ---------- */

static int qb_alloc(struct qctx *q, struct qbuckets *b, size_t n)
{
	b->n = 0;
	b->start = malloc((n + 1) * sizeof *b->start);
	b->key = malloc((n ? n : 1) * sizeof *b->key);
	if (!b->start || !b->key) {
		qb_free(b);
		return q_oom(q);
	}
	return 0;
}

#define Q_MAX_BUCKETS 200000

int q_buckets_unit(struct qctx *q, int64_t from, int64_t to, enum tz_unit unit, struct qbuckets *b)
{
	int64_t s = tz_bucket_floor(q->tz, unit, from), x;
	size_t n = 0;

	for (x = s; x < to; x = tz_bucket_next(q->tz, unit, x))
		if (++n > Q_MAX_BUCKETS)
			return q_fail(q, 400, "too many time buckets: use a larger unit or a shorter range");
	if (qb_alloc(q, b, n))
		return 1;
	for (x = s; x < to; x = tz_bucket_next(q->tz, unit, x)) {
		tz_bucket_key(q->tz, unit, x, b->key[b->n], sizeof b->key[0]);
		/* the hour repeated when clocks go back has the same key: one
		 * bucket (JSON objects cannot hold a key twice) */
		if (b->n && !strcmp(b->key[b->n], b->key[b->n - 1]))
			continue;
		b->start[b->n] = x;
		b->n++;
	}
	b->start[b->n] = x;
	return 0;
}

int q_buckets_days(struct qctx *q, int64_t from, int64_t to, long days, struct qbuckets *b)
{
	struct tz_civil c;
	size_t n = 0, i;
	int64_t x;

	tz_to_civil(q->tz, from, &c);
	for (x = from; x < to; x = tz_from_civil(q->tz, c.year, c.month, c.day + (int)(days * (long)n), 0, 0))
		if (++n > Q_MAX_BUCKETS)
			return q_fail(q, 400, "too many time buckets");
	if (qb_alloc(q, b, n))
		return 1;
	for (i = 0; i < n; i++) {
		b->start[i] = tz_from_civil(q->tz, c.year, c.month, c.day + (int)(days * (long)i), 0, 0);
		tz_bucket_key(q->tz, TZ_DAY, b->start[i], b->key[i], sizeof b->key[0]);
	}
	b->n = n;
	b->start[n] = to;
	return 0;
}

size_t qb_find(const struct qbuckets *b, int64_t t)
{
	size_t lo = 0, hi = b->n;

	if (!b->n || t < b->start[0] || t >= b->start[b->n])
		return SIZE_MAX;
	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;

		if (b->start[mid] <= t)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

void qb_free(struct qbuckets *b)
{
	free(b->start);
	free(b->key);
	b->start = NULL;
	b->key = NULL;
	b->n = 0;
}

int q_json_series_keys(struct qctx *q, const struct qbuckets *b)
{
	size_t i;

	if (buf_putc(q->out, '[') != MP_OK)
		return q_oom(q);
	for (i = 0; i < b->n; i++)
		if ((i && buf_putc(q->out, ',') != MP_OK) ||
		    buf_json_str(q->out, b->key[i], strlen(b->key[i])) != MP_OK)
			return q_oom(q);
	return buf_putc(q->out, ']') == MP_OK ? 0 : q_oom(q);
}

int q_json_series_obj(struct qctx *q, const char *key, size_t klen, const struct qbuckets *b,
		      const double *vals)
{
	size_t i;

	if (buf_json_str(q->out, key, klen) != MP_OK || buf_append(q->out, ":{", 2) != MP_OK)
		return q_oom(q);
	for (i = 0; i < b->n; i++)
		if ((i && buf_putc(q->out, ',') != MP_OK) ||
		    buf_json_str(q->out, b->key[i], strlen(b->key[i])) != MP_OK ||
		    buf_putc(q->out, ':') != MP_OK || buf_json_num(q->out, vals[i]) != MP_OK)
			return q_oom(q);
	return buf_putc(q->out, '}') == MP_OK ? 0 : q_oom(q);
}

/* ---------- segments ---------- */

void qsegs_init(struct qsegs *s, size_t width)
{
	memset(s, 0, sizeof *s);
	s->width = width ? width : 1;
}

void qsegs_free(struct qsegs *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		free(s->name[i]);
	free(s->name);
	free(s->name_len);
	free(s->slot);
	free(s->val);
	free(s->last);
	memset(s, 0, sizeof *s);
}

static uint64_t q_hash(const char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	while (n--)
		h = (h ^ (unsigned char)*p++) * 0x100000001b3ULL;
	return h;
}

size_t qsegs_get(struct qsegs *s, const char *key, size_t n)
{
	size_t i, j;

	if (s->slot_cap) {
		for (i = q_hash(key, n) & (s->slot_cap - 1); s->slot[i]; i = (i + 1) & (s->slot_cap - 1)) {
			size_t k = s->slot[i] - 1;

			if (s->name_len[k] == n && memcmp(s->name[k], key, n) == 0)
				return k;
		}
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		char **nm = realloc(s->name, cap * sizeof *nm);
		size_t *nl;
		double *val;
		uint32_t *last;

		if (!nm)
			return SIZE_MAX;
		s->name = nm;
		if (!(nl = realloc(s->name_len, cap * sizeof *nl)))
			return SIZE_MAX;
		s->name_len = nl;
		if (!(val = realloc(s->val, cap * s->width * sizeof *val)))
			return SIZE_MAX;
		s->val = val;
		if (!(last = realloc(s->last, cap * s->width * sizeof *last)))
			return SIZE_MAX;
		s->last = last;
		s->cap = cap;
	}
	if ((s->n + 1) * 2 > s->slot_cap) {
		size_t cap = s->slot_cap ? s->slot_cap * 2 : 64;
		size_t *slot = calloc(cap, sizeof *slot);

		if (!slot)
			return SIZE_MAX;
		for (j = 0; j < s->n; j++) {
			for (i = q_hash(s->name[j], s->name_len[j]) & (cap - 1); slot[i]; i = (i + 1) & (cap - 1))
				;
			slot[i] = j + 1;
		}
		free(s->slot);
		s->slot = slot;
		s->slot_cap = cap;
	}
	if (!(s->name[s->n] = malloc(n + 1)))
		return SIZE_MAX;
	memcpy(s->name[s->n], key, n);
	s->name[s->n][n] = '\0';
	s->name_len[s->n] = n;
	memset(s->val + s->n * s->width, 0, s->width * sizeof *s->val);
	memset(s->last + s->n * s->width, 0, s->width * sizeof *s->last);
	for (i = q_hash(key, n) & (s->slot_cap - 1); s->slot[i]; i = (i + 1) & (s->slot_cap - 1))
		;
	s->slot[i] = s->n + 1;
	return s->n++;
}

/* The segment of scalar value V (not a list), or SIZE_MAX when undefined;
 * SIZE_MAX - 1 on out of memory. */
static size_t q_value_seg(const struct expr_value *v, struct qsegs *s)
{
	char tmp[512];
	size_t n, k;

	if (v->type == EXPR_UNDEFINED)
		return SIZE_MAX;
	if (v->type == EXPR_STRING) {
		k = qsegs_get(s, v->u.str.s, v->u.str.len);
	} else {
		n = expr_value_key(v, tmp, sizeof tmp);
		if (n >= sizeof tmp)
			n = sizeof tmp - 1;
		k = qsegs_get(s, tmp, n);
	}
	return k == SIZE_MAX ? SIZE_MAX - 1 : k;
}

static int q_same_value(const struct expr_value *a, const struct expr_value *b)
{
	if (a->type != b->type)
		return 0;
	switch (a->type) {
	case EXPR_STRING: return a->u.str.len == b->u.str.len && !memcmp(a->u.str.s, b->u.str.s, a->u.str.len);
	case EXPR_NUMBER: return a->u.n == b->u.n;
	case EXPR_BOOL: return a->u.b == b->u.b;
	case EXPR_DATETIME: return a->u.ms == b->u.ms;
	case EXPR_NULL: case EXPR_UNDEFINED: return 1;
	default: return 0;
	}
}

/* The slow path of q_qx_on: evaluate the expression on the record. */
static int q_on_eval(struct qctx *q, struct expr *on, struct cs_eval *ce, struct qsegs *s,
		     int (*cb)(void *ctx, size_t seg), void *ctx, size_t *single)
{
	struct expr_value v;
	size_t i, j, k;
	enum mp_err rc = expr_eval(on, cs_eval_lookup, ce, &v);

	*single = SIZE_MAX;
	if (rc != MP_OK) {
		q_fail(q, rc == MP_E_INVALID ? 400 : 503, "cannot evaluate 'on': %s",
		       rc == MP_E_INVALID ? expr_error(on) : mp_strerror(rc));
		return -1;
	}
	if (v.type != EXPR_LIST) {
		if ((k = q_value_seg(&v, s)) == SIZE_MAX - 1)
			return q_oom(q), -1;
		*single = k;
		return k == SIZE_MAX ? 0 : cb(ctx, k);
	}
	*single = SIZE_MAX - 1; /* a list: not memoizable */
	for (i = 0; i < v.u.list.n; i++) {
		const struct expr_value *it = &v.u.list.items[i];

		for (j = 0; j < i && !q_same_value(&v.u.list.items[j], it); j++)
			;
		if (j < i)
			continue;
		if ((k = q_value_seg(it, s)) == SIZE_MAX - 1)
			return q_oom(q), -1;
		if (k != SIZE_MAX && cb(ctx, k))
			return -1;
	}
	return 0;
}

struct q_refs {
	size_t n;
	enum expr_scope scope;
	const char *name;
	size_t len;
};

static void q_count_ref(void *ctx, enum expr_scope scope, const char *name, size_t len)
{
	struct q_refs *r = ctx;

	r->n++;
	r->scope = scope;
	r->name = name;
	r->len = len;
}

int q_qx_init(struct qctx *q, struct qx *x, struct expr *e)
{
	struct q_refs refs = { 0, EXPR_SCOPE_PROPERTIES, NULL, 0 };
	uint32_t key;

	memset(x, 0, sizeof *x);
	x->e = e;
	if (!e)
		return 0;
	expr_refs(e, q_count_ref, &refs);
	if (refs.n != 1 || refs.scope != EXPR_SCOPE_PROPERTIES ||
	    (refs.len == 4 && !memcmp(refs.name, "time", 4)) ||
	    (refs.len == 11 && !memcmp(refs.name, "distinct_id", 11)))
		return 0;
	if (!(key = cs_string_id(q->v, refs.name, refs.len)))
		return 0; /* no event has it: every event sees undefined, evaluate normally */
	x->col = cs_column(q->v, key, q->col_orders);
	x->memo_n = (size_t)q->v->n_strings + CS_V_STR;
	return 0;
}

int q_qx_param(struct qctx *q, const char *name, struct qx *x)
{
	struct expr *e;

	memset(x, 0, sizeof *x);
	if (q_expr(q, name, &e))
		return q->status;
	return q_qx_init(q, x, e);
}

void q_qx_free(struct qx *x)
{
	expr_free(x->e);
	free(x->memo);
	memset(x, 0, sizeof *x);
}

/* The memo slot for event ce->i, or NULL when the fast path does not apply. */
static int32_t *q_qx_slot(struct qx *x, struct cs_eval *ce)
{
	uint32_t code;

	if (!x->col)
		return NULL;
	if (ce->j != SIZE_MAX && x->col->ncode)
		code = x->col->ncode[ce->j];
	else if (x->col->code)
		code = x->col->code[ce->i];
	else
		return NULL;
	if (code == CS_V_NUMBER || code == CS_V_OTHER || code >= x->memo_n)
		return NULL;
	if (!x->memo && !(x->memo = calloc(x->memo_n, sizeof *x->memo))) {
		x->col = NULL;
		return NULL;
	}
	return &x->memo[code];
}

int q_qx_where(struct qctx *q, struct qx *x, struct cs_eval *ce)
{
	int32_t *m;
	int r;

	if (!x->e)
		return 1;
	if ((m = q_qx_slot(x, ce)) && *m)
		return *m - 1;
	r = q_where(q, x->e, ce);
	if (m && r >= 0)
		*m = r + 1;
	return r;
}

int q_qx_on(struct qctx *q, struct qx *x, struct cs_eval *ce, struct qsegs *s,
	    int (*cb)(void *ctx, size_t seg), void *ctx)
{
	int32_t *m = q_qx_slot(x, ce);
	size_t single;

	if (m && *m)
		return *m == 1 ? 0 : cb(ctx, (size_t)(*m - 2));
	if (q_on_eval(q, x->e, ce, s, cb, ctx, &single))
		return -1;
	if (m && single != SIZE_MAX - 1 && (single == SIZE_MAX || single < INT32_MAX - 2))
		*m = single == SIZE_MAX ? 1 : (int32_t)single + 2;
	return 0;
}

struct q_top_ctx {
	const struct qsegs *s;
	const double *total;
};

static int q_top_cmp(const void *a, const void *b, void *arg)
{
	const struct q_top_ctx *c = arg;
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	double tx = c->total[x], ty = c->total[y];
	const struct qsegs *s = c->s;
	size_t n = s->name_len[x] < s->name_len[y] ? s->name_len[x] : s->name_len[y];
	int r;

	if (tx != ty)
		return tx > ty ? -1 : 1;
	r = memcmp(s->name[x], s->name[y], n);
	if (r)
		return r;
	return s->name_len[x] < s->name_len[y] ? -1 : s->name_len[x] > s->name_len[y];
}

size_t *qsegs_top(const struct qsegs *s, const double *total, size_t limit, size_t *n)
{
	size_t *idx = malloc((s->n ? s->n : 1) * sizeof *idx), i;
	struct q_top_ctx c = { s, total };

	if (!idx)
		return NULL;
	for (i = 0; i < s->n; i++)
		idx[i] = i;
	qsort_r(idx, s->n, sizeof *idx, q_top_cmp, &c);
	*n = s->n < limit ? s->n : limit;
	return idx;
}
