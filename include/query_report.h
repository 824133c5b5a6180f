/*
 * query_report.h - what the report modules (q_*.c) share: the per-request
 * context, parameter parsing with Mixpanel's error answers, time buckets in
 * the project's time zone, segment tables for `on`, and the report entry
 * points that query.c dispatches to.
 *
 * Error convention: a helper that rejects a parameter records the status
 * and message in the context (q_fail) and returns nonzero; the report
 * returns q->status unchanged.  A report that succeeds writes its JSON into
 * q->out and returns 200.
 */
#ifndef MP_QUERY_REPORT_H
#define MP_QUERY_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "buf.h"
#include "colstore.h"
#include "expr.h"
#include "query.h"
#include "tz.h"

struct qctx {
	struct query_engine *qe;
	const struct query_request *rq;
	const struct config_project *proj;
	struct store_project *sp;
	struct colstore *cs;       /* the project's projection */
	struct cs_view *v;
	const struct tz *tz;
	int64_t now_ms;
	unsigned col_orders;       /* property columns the report reads: CS_COL_MAIN (user
				      order, the default) and/or CS_COL_BYNAME */
	struct buf *out;
	struct q_sessions *sessions; /* the engine's engage sessions (may be NULL: no paging) */
	/* user[] / group[] (q_scopes.c) */
	struct q_upcache *upc;     /* the project's profile snapshots (may be NULL) */
	struct userprops *up;      /* this query's snapshot, loaded on first use */
	int up_tried;
	const void **umemo;        /* canonical id -> its profile (or q: none) */
	const char *group_key;     /* data_group_id's key when the view is a group view */
	const void *profile_only;  /* set: user[] reads this profile (a cJSON object), not
				      the event's (cohorts evaluate users without events) */
	struct cs_view *owned_view; /* a derived view this query frees (colstore_filter_view) */
	int status;
	char err[512];
};

/* Record an error answer; returns STATUS. */
int q_fail(struct qctx *q, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Parameter NAME, or NULL when absent or empty. */
const char *q_param(struct qctx *q, const char *name);

/* from_date/to_date as [*FROM, *TO) in UTC ms (local midnights).  Returns 0,
 * or nonzero after q_fail (missing, malformed, to before from). */
int q_dates(struct qctx *q, int64_t *from, int64_t *to);

/* S (the value of NAME) as the local midnight starting that day. */
int q_date_str(struct qctx *q, const char *name, const char *s, int64_t *ms);

/* An integer parameter in [MIN, MAX], DEF when absent. */
int q_int(struct qctx *q, const char *name, long def, long min, long max, long *out);

/* A boolean parameter ("1"/"true"/"0"/"false"), DEF when absent. */
int q_bool(struct qctx *q, const char *name, int def, int *out);

/* `unit`-style parameter NAME: one of the units allowed by MASK (bit
 * 1 << TZ_x), DEF when absent. */
int q_unit(struct qctx *q, const char *name, enum tz_unit def, unsigned mask, enum tz_unit *out);

/* Compile expression parameter NAME (NULL *OUT when absent).  400 on a
 * syntax error, with the offset. */
int q_expr(struct qctx *q, const char *name, struct expr **out);
int q_expr_src(struct qctx *q, const char *what, const char *src, struct expr **out);

/* properties["NAME"] compiled (NAME a property name). */
int q_property_expr(struct qctx *q, const char *name, struct expr **out);

/* data_group_id as a group key: the project's group_keys[N-1] for a number
 * N, else the parameter itself; *KEY NULL when absent.  Nonzero after
 * q_fail (a number that names no group key). */
int q_group_key(struct qctx *q, const char **key);

/* `where` filter without the fast path (see struct qx). */
int q_where(struct qctx *q, struct expr *e, struct cs_eval *ce);

/* Run report ENDPOINT (a GET report of the dispatch table) as a request
 * nested in Q: same project, request text and clock (now_ms), but its
 * parameters come from PARAM(CTX, name) and its answer is appended to OUT.
 * It gets its own context and takes its own view of the events, so Q must
 * not hold one (a QK_NOVIEW or QK_WRITE entry), and a data_group_id among
 * its parameters applies.  Returns the HTTP status; on failure ERR holds the
 * nested report's own message and OUT may hold a partial answer.  An
 * ENDPOINT the table does not have (or a POST-only one) is 400 "unknown
 * report type". */
int q_run_nested(struct qctx *q, const char *endpoint, const char *(*param)(void *ctx, const char *name),
		 void *ctx, struct buf *out, char *err, size_t errlen);

/* ---------- time buckets ---------- */

struct qbuckets {
	size_t n;
	int64_t *start;            /* n + 1 boundaries, ascending */
	char (*key)[24];           /* n keys */
};

/* Buckets of UNIT covering [FROM, TO) (the first starts at or before FROM). */
int q_buckets_unit(struct qctx *q, int64_t from, int64_t to, enum tz_unit unit, struct qbuckets *b);
/* Buckets of DAYS local days starting at FROM (a local midnight), up to TO. */
int q_buckets_days(struct qctx *q, int64_t from, int64_t to, long days, struct qbuckets *b);
/* Index of the bucket holding T, or SIZE_MAX. */
size_t qb_find(const struct qbuckets *b, int64_t t);
void qb_free(struct qbuckets *b);

/* ---------- segments (the values of `on`) ---------- */

struct qsegs {
	size_t n, cap;
	char **name;
	size_t *name_len;
	size_t *slot;              /* hash index: segment + 1, 0 empty */
	size_t slot_cap;
	size_t width;              /* doubles per segment in .val */
	double *val;               /* n * width */
	uint32_t *last;            /* n * width: last user counted + 1 (unique counts) */
};

void qsegs_init(struct qsegs *s, size_t width);
void qsegs_free(struct qsegs *s);
/* Index of segment KEY (N bytes), added when new; SIZE_MAX on out of memory. */
size_t qsegs_get(struct qsegs *s, const char *key, size_t n);

/* ---------- expressions over the projection ---------- */

/* A compiled `where`/`on` with a fast path: when it reads exactly one
 * top-level event property and nothing else, its value for an event depends
 * only on that property's code in the column (colstore.h), so the outcome is
 * memoized per code and most events cost one array read. */
struct qx {
	struct expr *e;                /* NULL when the parameter is absent */
	const struct cs_column *col;   /* the fast path, or NULL */
	int32_t *memo;                 /* per code: 0 unknown; where: 1 false, 2 true;
					  on: 1 no segment, k + 2 segment k */
	size_t memo_n;
};

/* Take over E (may be NULL) and set up the fast path. */
int q_qx_init(struct qctx *q, struct qx *x, struct expr *e);
/* q_expr + q_qx_init. */
int q_qx_param(struct qctx *q, const char *name, struct qx *x);
void q_qx_free(struct qx *x);

/* `where` on event ce->i: 1 keep (also when absent), 0 drop, -1 error (q_fail done). */
int q_qx_where(struct qctx *q, struct qx *x, struct cs_eval *ce);

/* The segments of the `on` value for event ce->i (values of S): calls CB
 * once per distinct segment (a list counts under each distinct element;
 * undefined: none).  Returns 0, or -1 after q_fail. */
int q_qx_on(struct qctx *q, struct qx *x, struct cs_eval *ce, struct qsegs *s,
	    int (*cb)(void *ctx, size_t seg), void *ctx);

/* The order to report segments in: the top LIMIT by TOTAL (descending, then
 * key ascending).  Returns a malloc'ed array of *N indexes. */
size_t *qsegs_top(const struct qsegs *s, const double *total, size_t limit, size_t *n);

/* ---------- JSON helpers ---------- */

/* "key":{"b0":v0,...} for every bucket (no leading comma). */
int q_json_series_obj(struct qctx *q, const char *key, size_t klen, const struct qbuckets *b,
		      const double *vals);
int q_json_series_keys(struct qctx *q, const struct qbuckets *b);
/* Out of memory while writing JSON. */
int q_oom(struct qctx *q);

/* ---------- reports (q_*.c) ---------- */

int q_segmentation(struct qctx *q);           /* segmentation */
int q_segmentation_numeric(struct qctx *q);   /* segmentation/numeric */
int q_segmentation_sum(struct qctx *q, int average); /* segmentation/sum, /average */
int q_events(struct qctx *q);                 /* events */
int q_events_properties(struct qctx *q);      /* events/properties */
int q_events_top(struct qctx *q);             /* events/top */
int q_events_names(struct qctx *q);           /* events/names */
int q_events_properties_top(struct qctx *q);  /* events/properties/top */
int q_events_properties_values(struct qctx *q); /* events/properties/values */
int q_funnels(struct qctx *q);                /* funnels */
int q_funnels_list(struct qctx *q);           /* funnels/list */
int q_funnels_create(struct qctx *q);         /* funnels/create */
int q_flows(struct qctx *q);                  /* flows (ours) */
int q_retention(struct qctx *q);              /* retention */
int q_retention_addiction(struct qctx *q);    /* retention/addiction */
int q_identity_graph(struct qctx *q);         /* identity/graph (ours) */
int q_engage(struct qctx *q);                 /* engage (profiles; no view) */
int q_stream_query(struct qctx *q);           /* stream/query */
int q_deletion_create(struct qctx *q);        /* data-deletions (POST) */
int q_deletion_status(struct qctx *q);        /* data-deletions/TASK */
int q_kpi(struct qctx *q);                    /* kpi (ours) */
int q_formulas(struct qctx *q);               /* formulas (ours) */
int q_insights(struct qctx *q);               /* insights?bookmark_id= */
int q_bookmarks_create(struct qctx *q);       /* bookmarks/... (ours, q_reports.c) */
int q_bookmarks_list(struct qctx *q);
int q_bookmarks_get(struct qctx *q);
int q_bookmarks_update(struct qctx *q);
int q_bookmarks_delete(struct qctx *q);
int q_bookmarks_run(struct qctx *q);
int q_dashboards_create(struct qctx *q);      /* dashboards/... (ours, q_reports.c) */
int q_dashboards_list(struct qctx *q);
int q_dashboards_get(struct qctx *q);
int q_dashboards_update(struct qctx *q);
int q_dashboards_delete(struct qctx *q);
int q_dashboards_run(struct qctx *q);

/* The segmentation value of EVENT over [FROM, TO) taken as ONE bucket,
 * with `type` (general, unique, average) and `where` read from Q's
 * parameters as segmentation reads them: unique is the number of distinct
 * users over the whole range (not a sum of per-day uniques).  Needs Q's
 * view.  Returns 0, or nonzero after q_fail. */
int q_segmentation_total(struct qctx *q, const char *event, int64_t from, int64_t to, double *out);

/* ---------- lettered metrics of a formula (q_segmentation.c) ---------- */

enum q_metric_type {
	QM_TOTAL,                  /* events (segmentation's general) */
	QM_UNIQUE,                 /* distinct users */
	QM_SUM, QM_AVERAGE, QM_MIN, QM_MAX /* over the numbers of a property */
};

/* One metric counted as segmentation counts: per time bucket and per `on`
 * segment, plus one more cell, the whole range as one bucket (a unique
 * count there is the distinct users of the range, as q_segmentation_total). */
struct q_metric {
	/* set by the caller */
	const char *event;         /* borrowed */
	enum q_metric_type type;
	const char *property;      /* QM_SUM..QM_MAX: the property (borrowed); events whose
				      value is not a finite number are left out; else NULL */
	/* results of q_metric_scan */
	size_t cells;              /* cells per segment: the buckets, then the range */
	struct qsegs segs;         /* per segment of `on` (none without `on`) */
	struct qsegs all;          /* segment 0: every counted event, unsegmented */
};

/* One scan of Q's view for M: events named M->event in [FROM, TO) inside a
 * bucket of B that pass WHERE, segmented by ON.  WHERE and ON (may be NULL)
 * are taken over and freed here.  Sets q->col_orders.  Returns 0, or
 * nonzero after q_fail; free M with q_metric_free either way. */
int q_metric_scan(struct qctx *q, struct q_metric *m, const struct qbuckets *b, int64_t from, int64_t to,
		  struct expr *where, struct expr *on);
/* M's value in segment K of S (&m->segs or &m->all; SIZE_MAX: a segment
 * M has no events in), cell J (a bucket, or m->cells - 1 for the range):
 * total and unique count, sum is 0 without events; average, min and max of
 * no values are NAN (undefined). */
double q_metric_value(const struct q_metric *m, const struct qsegs *s, size_t k, size_t j);
void q_metric_free(struct q_metric *m); /* NULL-safe contents; M itself is the caller's */

int q_cohorts_create(struct qctx *q);         /* cohorts/create */
int q_cohorts_update(struct qctx *q);         /* cohorts/update */
int q_cohorts_delete(struct qctx *q);         /* cohorts/delete */
int q_cohorts_list(struct qctx *q);           /* cohorts/list */
int q_cohorts_members(struct qctx *q);        /* cohorts/members (ours) */
int q_cohorts_size(struct qctx *q);           /* cohorts/size (ours) */
int q_cohorts_composition(struct qctx *q);    /* cohorts/composition (ours) */

/* ---------- cohorts (q_cohorts.c) ---------- */

struct q_cohort;
/* A cohort from a filter_by_cohort value: {"id": N} or N (saved), or
 * {"definition": {...}} (inline, ours).  0 or the status after q_fail. */
int q_cohort_spec(struct qctx *q, const char *spec, struct q_cohort **out);
void q_cohort_free(struct q_cohort *c);
/* Members as of AS_OF (ms): KEEP[u] for the view's users; with
 * WITH_PROFILE_ONLY also the users that have a profile and no events
 * (ONLY, sorted).  Free with q_cohort_members_free (also after failure). */
struct q_cohort_members {
	uint8_t *keep;
	size_t n_users;            /* members with events */
	char **only;
	size_t n_only;
};
int q_cohort_members(struct qctx *q, struct q_cohort *c, int64_t as_of, int with_profile_only,
		     struct q_cohort_members *m);
void q_cohort_members_free(struct q_cohort_members *m);
/* Is the profile DID a member (by its user's key, or among ONLY)? */
int q_cohort_has_profile(const struct q_cohort_members *m, const struct cs_view *v, const char *did);
/* filter_by_cohort: run the report on the members' events only (a filtered
 * view, colstore.h).  0 or the status after q_fail. */
int q_cohort_filter(struct qctx *q);

/* ---------- user[] and group[] in expressions (q_scopes.c) ---------- */

/* cs_eval_init for Q's view, with user[...] and group[...] answered from
 * the project's profiles. */
void q_eval_init(struct qctx *q, struct cs_eval *ce);
/* The cs_eval ext hook behind it. */
int q_scope_lookup(void *ctx, struct cs_eval *ce, enum expr_scope scope, const char *name, size_t len,
		   struct expr_value *out);
/* Member NAME (LEN bytes, not NUL-terminated) of JSON object OBJ, or NULL. */
const cJSON *q_json_member(const cJSON *obj, const char *name, size_t len);
/* JSON value J (may be NULL: undefined) as the expression evaluator sees
 * it: strings, numbers, booleans, null; a list's scalar items are written
 * to ITEMS from *USED on (room for CAP in all; *USED advances, so two lists
 * of one evaluation keep apart); objects and nested lists are undefined. */
void q_json_expr_value(const cJSON *j, struct expr_value *items, size_t cap, size_t *used,
		       struct expr_value *out);

/* Release what the query's lookups held. */
void q_scopes_done(struct qctx *q);
/* The query's profile snapshot (loaded on first use), or NULL after q_fail. */
struct userprops *q_userprops(struct qctx *q);
/* Per-project profile snapshot cache: NULL on out of memory; free is NULL-safe. */
struct q_upcache;
struct q_upcache *q_upcache_new(void);
void q_upcache_free(struct q_upcache *c);

/* ---------- engage sessions (q_profiles.c) ----------
 *
 * The matching-id lists of recent engage queries, so every page of one
 * session_id is cut from the same snapshot.  One per engine; bounded, idle
 * sessions expire after an hour; thread-safe (one mutex). */
struct q_sessions;
/* NULL on out of memory. */
struct q_sessions *q_sessions_new(void);
/* NULL-safe; no query may be running. */
void q_sessions_free(struct q_sessions *s);

#endif
