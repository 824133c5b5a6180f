/*
 * q_profiles.c - the profile reports: engage (user and group profiles,
 * spec §10.15) and stream/query (one user's events, §10.18), semantics in
 * docs/QUERIES.md.
 *
 * engage reads the project's meta.db through its own read-only connection
 * (profiles are not in the event projection).  A query first lists the ids
 * of every matching profile in byte order of the id, then renders the page
 * asked for.  That list is the query's snapshot: it is kept under a
 * session id (struct q_sessions) so later pages of the same session are cut
 * from the same list, even when profiles change in between; only the
 * properties are read when a page is fetched.
 *
 * Invariants:
 *   1. A session belongs to one project and one set of selecting parameters
 *      (distinct_id, distinct_ids, where, data_group_id); it is never
 *      answered for another project or other parameters.
 *   2. The cache is bounded (QS_MAX sessions, QS_MAX_BYTES of ids) and every
 *      session expires QS_TTL_MS after its last use; all of it is guarded by
 *      one mutex, and callers only get copies of a page's ids.
 *   3. No SQL is built from request text: every value is a bound parameter.
 *
 * stream/query walks the projection: the events of an identity cluster are
 * one contiguous, time-ordered range of the view (colstore.h), so the
 * newest-first answer is a merge of a few ranges walked backwards.
 */
#include "query_report.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sqlite3.h>
#include <cjson/cJSON.h>

#include "log.h"
#include "propcodec.h"
#include "store.h"

/* ---------- id lists ---------- */

/* Ids back to back in one buffer, each NUL-terminated (so a slice can be
 * bound to SQL as it is); off[i] is where id i starts. */
struct pf_ids {
	struct buf blob;
	size_t *off;
	size_t n, cap;
};

static void pf_ids_init(struct pf_ids *l)
{
	memset(l, 0, sizeof *l);
	buf_init(&l->blob, SIZE_MAX);
}

static void pf_ids_free(struct pf_ids *l)
{
	buf_free(&l->blob);
	free(l->off);
	memset(l, 0, sizeof *l);
}

static const char *pf_ids_at(const struct pf_ids *l, size_t i)
{
	return l->blob.data + l->off[i];
}

/* Bytes the list holds (what the session cache counts). */
static size_t pf_ids_bytes(const struct pf_ids *l)
{
	return l->blob.len + l->cap * sizeof *l->off;
}

/* Append S (N bytes, no NUL inside).  MP_OK or MP_E_NOMEM. */
static enum mp_err pf_ids_add(struct pf_ids *l, const char *s, size_t n)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		size_t *off = realloc(l->off, cap * sizeof *off);

		if (!off)
			return MP_E_NOMEM;
		l->off = off;
		l->cap = cap;
	}
	l->off[l->n] = l->blob.len;
	if (buf_append(&l->blob, s, n) != MP_OK || buf_putc(&l->blob, '\0') != MP_OK) {
		l->blob.len = l->off[l->n];
		return MP_E_NOMEM;
	}
	l->n++;
	return MP_OK;
}

static int pf_ids_cmp(const void *a, const void *b, void *blob)
{
	return strcmp((const char *)blob + *(const size_t *)a, (const char *)blob + *(const size_t *)b);
}

/* Sort the list by byte order and drop repeats. */
static void pf_ids_sort_unique(struct pf_ids *l)
{
	size_t i, w = 0;

	qsort_r(l->off, l->n, sizeof *l->off, pf_ids_cmp, l->blob.data);
	for (i = 0; i < l->n; i++)
		if (!w || strcmp(pf_ids_at(l, w - 1), pf_ids_at(l, i)) != 0)
			l->off[w++] = l->off[i];
	l->n = w;
}

/* ---------- sessions ---------- */

#define QS_MAX 128                         /* sessions kept */
#define QS_MAX_BYTES ((size_t)128 << 20)   /* ids kept, all sessions together */
#define QS_TTL_MS ((int64_t)3600 * 1000)   /* idle time before a session expires */
#define QS_ID_LEN 48

struct qs_entry {
	struct qs_entry *next;
	char id[QS_ID_LEN];
	const struct config_project *proj;
	uint64_t fp;               /* fingerprint of the selecting parameters */
	int64_t used_ms;
	size_t bytes;
	struct pf_ids ids;         /* every matching id, in answer order */
};

struct q_sessions {
	pthread_mutex_t mu;
	struct qs_entry *head;
	size_t n, bytes;
	uint64_t seq;
};

struct q_sessions *q_sessions_new(void)
{
	struct q_sessions *s = calloc(1, sizeof *s);

	if (s && pthread_mutex_init(&s->mu, NULL) != 0) {
		free(s);
		return NULL;
	}
	return s;
}

static void qs_entry_free(struct qs_entry *e)
{
	pf_ids_free(&e->ids);
	free(e);
}

void q_sessions_free(struct q_sessions *s)
{
	struct qs_entry *e, *next;

	if (!s)
		return;
	for (e = s->head; e; e = next) {
		next = e->next;
		qs_entry_free(e);
	}
	pthread_mutex_destroy(&s->mu);
	free(s);
}

/* Unlink *PP (caller holds the mutex). */
static void qs_unlink(struct q_sessions *s, struct qs_entry **pp)
{
	struct qs_entry *e = *pp;

	*pp = e->next;
	s->n--;
	s->bytes -= e->bytes;
	qs_entry_free(e);
}

/* Drop the expired sessions (caller holds the mutex). */
static void qs_expire(struct q_sessions *s, int64_t now_ms)
{
	struct qs_entry **pp = &s->head;

	while (*pp) {
		if ((*pp)->used_ms + QS_TTL_MS <= now_ms)
			qs_unlink(s, pp);
		else
			pp = &(*pp)->next;
	}
}

/* A new session id, "<unix seconds>-<16 hex digits>": random (getentropy),
 * or from the clock and a counter when the system has no entropy to give. */
static void qs_new_id(struct q_sessions *s, int64_t now_ms, char out[QS_ID_LEN])
{
	uint64_t r = 0, seq;

	pthread_mutex_lock(&s->mu);
	seq = ++s->seq;
	pthread_mutex_unlock(&s->mu);
	if (getentropy(&r, sizeof r) != 0) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		r = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (seq * 0x9e3779b97f4a7c15ULL) ^
		    (uint64_t)(uintptr_t)s;
	}
	snprintf(out, QS_ID_LEN, "%lld-%016llX", (long long)(now_ms / 1000), (unsigned long long)r);
}

/* Keep IDS (taken over on success) under session ID.  Returns 1 when kept,
 * 0 when the list alone is over the cache's budget (IDS stays the
 * caller's; later pages of the session are then answered "uncached"). */
static int qs_put(struct q_sessions *s, const char *id, const struct config_project *proj, uint64_t fp,
		  int64_t now_ms, struct pf_ids *ids)
{
	struct qs_entry *e;
	size_t bytes = pf_ids_bytes(ids) + sizeof *e;

	if (bytes > QS_MAX_BYTES || !(e = calloc(1, sizeof *e)))
		return 0;
	snprintf(e->id, sizeof e->id, "%s", id);
	e->proj = proj;
	e->fp = fp;
	e->used_ms = now_ms;
	e->bytes = bytes;
	e->ids = *ids;
	pthread_mutex_lock(&s->mu);
	qs_expire(s, now_ms);
	/* make room: drop the least recently used sessions */
	while (s->head && (s->n >= QS_MAX || s->bytes + bytes > QS_MAX_BYTES)) {
		struct qs_entry **pp, **lru = &s->head;

		for (pp = &s->head; *pp; pp = &(*pp)->next)
			if ((*pp)->used_ms < (*lru)->used_ms)
				lru = pp;
		qs_unlink(s, lru);
	}
	e->next = s->head;
	s->head = e;
	s->n++;
	s->bytes += bytes;
	pthread_mutex_unlock(&s->mu);
	pf_ids_init(ids);
	return 1;
}

/* The ids [START, START + COUNT) of session ID (copied to OUT, which must be
 * empty) and its total in *TOTAL.  Returns 1 found, 0 unknown, expired or
 * not this project's/parameters' session, -1 out of memory. */
static int qs_slice(struct q_sessions *s, const char *id, const struct config_project *proj, uint64_t fp,
		    int64_t now_ms, size_t start, size_t count, struct pf_ids *out, size_t *total)
{
	struct qs_entry *e;
	int r = 0;
	size_t i;

	pthread_mutex_lock(&s->mu);
	qs_expire(s, now_ms);
	for (e = s->head; e; e = e->next)
		if (!strcmp(e->id, id) && e->proj == proj && e->fp == fp)
			break;
	if (e) {
		e->used_ms = now_ms;
		*total = e->ids.n;
		r = 1;
		for (i = start; i < e->ids.n && i - start < count; i++) {
			const char *x = pf_ids_at(&e->ids, i);

			if (pf_ids_add(out, x, strlen(x)) != MP_OK) {
				r = -1;
				break;
			}
		}
	}
	pthread_mutex_unlock(&s->mu);
	return r;
}

/* ---------- engage: parameters ---------- */

static uint64_t pf_fnv(uint64_t h, const char *s)
{
	/* each field with its length first, so ("ab","c") != ("a","bc") */
	size_t n = s ? strlen(s) : SIZE_MAX, i;

	for (i = 0; i < sizeof n; i++)
		h = (h ^ ((n >> (8 * i)) & 0xff)) * 0x100000001b3ULL;
	for (i = 0; s && i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
	return h;
}

static int pf_strcmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Parameter NAME as a JSON array of strings: the strings (borrowed from
 * *JSON, which the caller frees with cJSON_Delete) sorted by bytes and
 * without repeats in *OUT (caller frees), their number in *N.  Absent:
 * *OUT NULL.  Returns 0, or nonzero after q_fail. */
static int pf_string_array(struct qctx *q, const char *name, const char *what, cJSON **json,
			   const char ***out, size_t *n)
{
	const char *s = q_param(q, name);
	const cJSON *it;
	size_t k = 0, i;

	*json = NULL;
	*out = NULL;
	*n = 0;
	if (!s)
		return 0;
	if (!(*json = cJSON_Parse(s)) || !cJSON_IsArray(*json))
		return q_fail(q, 400, "'%s' must be a JSON array of %s", name, what);
	cJSON_ArrayForEach(it, *json)
		if (!cJSON_IsString(it))
			return q_fail(q, 400, "'%s' must be a JSON array of %s", name, what);
	if (!(*out = malloc(((size_t)cJSON_GetArraySize(*json) + 1) * sizeof **out)))
		return q_oom(q);
	cJSON_ArrayForEach(it, *json)
		(*out)[k++] = it->valuestring;
	qsort(*out, k, sizeof **out, pf_strcmp);
	for (i = 0, *n = 0; i < k; i++)
		if (!*n || strcmp((*out)[*n - 1], (*out)[i]))
			(*out)[(*n)++] = (*out)[i];
	return 0;
}

/* ---------- engage: `where` over a profile ---------- */

#define PF_ITEMS 1024

/* One profile as the expression sees it: properties["x"] and user["x"]
 * (for group profiles also group["x"]) are all property x; event[...] is
 * undefined.  "$distinct_id" (and for groups "$group_key", "$group_id")
 * fall back to the profile's own keys when the profile has no such
 * property. */
struct pf_eval {
	const cJSON *props;
	const char *id;
	const char *group_key;     /* NULL for user profiles */
	struct expr_value items[PF_ITEMS]; /* list items of this evaluation */
	size_t n_items;
};

static void pf_str(struct expr_value *out, const char *s)
{
	out->type = EXPR_STRING;
	out->u.str.s = s;
	out->u.str.len = strlen(s);
}

static int pf_lookup(void *ctx, enum expr_scope scope, const char *name, size_t len, struct expr_value *out)
{
	struct pf_eval *pe = ctx;
	const cJSON *it;

	memset(out, 0, sizeof *out);
	out->type = EXPR_UNDEFINED;
	if (scope != EXPR_SCOPE_PROPERTIES && scope != EXPR_SCOPE_USER &&
	    !(scope == EXPR_SCOPE_GROUP && pe->group_key))
		return 0;
	if ((it = q_json_member(pe->props, name, len))) {
		/* list items go to a fresh part of the pool, so two list values of
		 * one expression do not overwrite each other */
		q_json_expr_value(it, pe->items, PF_ITEMS, &pe->n_items, out);
	} else if (len == 12 && !memcmp(name, "$distinct_id", 12)) {
		pf_str(out, pe->id);
	} else if (pe->group_key && len == 9 && !memcmp(name, "$group_id", 9)) {
		pf_str(out, pe->id);
	} else if (pe->group_key && len == 10 && !memcmp(name, "$group_key", 10)) {
		pf_str(out, pe->group_key);
	}
	return 0;
}

/* WHERE on the profile ID with properties PROPS (JSON text): 1 keep, 0 not,
 * -1 after q_fail. */
static int pf_where(struct qctx *q, struct expr *where, struct pf_eval *pe, const char *id,
		    const char *props, size_t n)
{
	cJSON *j;
	int r;

	if (!where)
		return 1;
	j = cJSON_ParseWithLength(props, n);
	pe->props = j;
	pe->id = id;
	pe->n_items = 0;
	r = expr_eval_where(where, pf_lookup, pe);
	cJSON_Delete(j);
	pe->props = NULL;
	if (r < 0)
		q_fail(q, 400, "cannot evaluate expression: %s", expr_error(where));
	return r;
}

/* ---------- engage: reading meta.db ---------- */

struct pf_query {
	const char *group_key;     /* data_group_id, or NULL: user profiles */
	const char **want;         /* distinct_id(s) asked for, sorted, or NULL: all */
	size_t n_want;
	struct expr *where;
	const char **outp;         /* output_properties, sorted, or NULL: all */
	size_t n_outp;
	const struct q_cohort_members *cohort;  /* filter_by_cohort, or NULL */
	int include_all_users;     /* with a cohort: also its members without a profile */
};

static int pf_db_fail(struct qctx *q, int r)
{
	return q_fail(q, 503, "cannot read the profiles: %s", sqlite3_errstr(r));
}

/* The statement reading one profile's properties by its id (?1; groups:
 * group key ?1, group id ?2). */
static int pf_prepare_get(struct qctx *q, sqlite3 *db, const struct pf_query *pq, sqlite3_stmt **st)
{
	int r = sqlite3_prepare_v2(db, pq->group_key ? "SELECT props FROM group_profiles WHERE group_key=?1 AND group_id=?2"
						     : "SELECT props FROM profiles WHERE distinct_id=?1", -1, st, NULL);

	if (r != SQLITE_OK)
		return pf_db_fail(q, r);
	if (pq->group_key)
		sqlite3_bind_text(*st, 1, pq->group_key, -1, SQLITE_TRANSIENT);
	return 0;
}

/* Look up ID with the statement of pf_prepare_get: 1 found (its text and
 * length in *PROPS, *N, valid until the next step/reset), 0 absent, -1
 * after q_fail. */
static int pf_get(struct qctx *q, const struct pf_query *pq, sqlite3_stmt *st, const char *id,
		  const char **props, size_t *n)
{
	int r;

	sqlite3_reset(st);
	sqlite3_bind_text(st, pq->group_key ? 2 : 1, id, -1, SQLITE_STATIC);
	r = sqlite3_step(st);
	if (r == SQLITE_DONE)
		return 0;
	if (r != SQLITE_ROW)
		return pf_db_fail(q, r), -1;
	*props = (const char *)sqlite3_column_text(st, 0);
	*n = (size_t)sqlite3_column_bytes(st, 0);
	if (!*props)
		*props = "";
	return 1;
}

/* include_all_users: the cohort's members that have no profile (their
 * canonical ids), under `where` over an empty profile, added to OUT, which
 * is then sorted again.  0, or nonzero after q_fail. */
static int pf_cohort_without_profiles(struct qctx *q, sqlite3 *db, const struct pf_query *pq,
				      struct pf_eval *pe, struct pf_ids *out)
{
	const struct cs_view *v = q->v;
	sqlite3_stmt *st = NULL;
	const char *props, *id;
	size_t n;
	uint32_t u;
	int r, rc = 0;

	if (pf_prepare_get(q, db, pq, &st))
		return 1;
	for (u = 0; u < v->n_users && !rc; u++) {
		if (!pq->cohort->keep[u])
			continue;
		id = cs_string(v, colstore_canonical(v, v->did[v->ustart[u]]), &n);
		if (pq->want && !bsearch(&id, pq->want, pq->n_want, sizeof *pq->want, pf_strcmp))
			continue;
		if ((r = pf_get(q, pq, st, id, &props, &n)) != 0) {
			rc = r < 0;        /* has a profile: listed by the scan */
			continue;
		}
		if ((r = pf_where(q, pq->where, pe, id, "{}", 2)) < 0)
			rc = 1;
		else if (r && pf_ids_add(out, id, strlen(id)) != MP_OK)
			rc = q_oom(q);
	}
	sqlite3_finalize(st);
	if (!rc)
		pf_ids_sort_unique(out);
	return rc;
}

/* Every matching id, in byte order, appended to OUT.  Returns 0, or
 * nonzero after q_fail. */
static int pf_scan(struct qctx *q, sqlite3 *db, const struct pf_query *pq, struct pf_eval *pe,
		   struct pf_ids *out)
{
	sqlite3_stmt *st = NULL;
	const char *props, *id;
	size_t i, n;
	int r, rc = 0;

	if (pq->want) {
		/* the ids asked for, already sorted: one primary-key read each */
		if (pf_prepare_get(q, db, pq, &st))
			return 1;
		for (i = 0; i < pq->n_want && !rc; i++) {
			if ((r = pf_get(q, pq, st, pq->want[i], &props, &n)) < 0)
				rc = 1;
			else if (r && pq->cohort && !q_cohort_has_profile(pq->cohort, q->v, pq->want[i]))
				r = 0;
			else if (r && (r = pf_where(q, pq->where, pe, pq->want[i], props, n)) < 0)
				rc = 1;
			else if (r && pf_ids_add(out, pq->want[i], strlen(pq->want[i])) != MP_OK)
				rc = q_oom(q);
		}
		sqlite3_finalize(st);
		if (!rc && pq->cohort && pq->include_all_users)
			rc = pf_cohort_without_profiles(q, db, pq, pe, out);
		return rc;
	}
	/* the primary key's order is the byte order of the id (BINARY collation) */
	if (pq->group_key)
		r = sqlite3_prepare_v2(db, pq->where ? "SELECT group_id, props FROM group_profiles WHERE group_key=?1 ORDER BY group_id"
						     : "SELECT group_id FROM group_profiles WHERE group_key=?1 ORDER BY group_id",
				       -1, &st, NULL);
	else
		r = sqlite3_prepare_v2(db, pq->where ? "SELECT distinct_id, props FROM profiles ORDER BY distinct_id"
						     : "SELECT distinct_id FROM profiles ORDER BY distinct_id", -1, &st, NULL);
	if (r != SQLITE_OK)
		return pf_db_fail(q, r);
	if (pq->group_key)
		sqlite3_bind_text(st, 1, pq->group_key, -1, SQLITE_TRANSIENT);
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		if (!(id = (const char *)sqlite3_column_text(st, 0)))
			continue;
		n = (size_t)sqlite3_column_bytes(st, 0);
		if (pq->cohort && !q_cohort_has_profile(pq->cohort, q->v, id))
			continue;
		if (pq->where) {
			const char *p = (const char *)sqlite3_column_text(st, 1);

			if ((r = pf_where(q, pq->where, pe, id, p ? p : "", (size_t)sqlite3_column_bytes(st, 1))) < 0) {
				rc = 1;
				break;
			}
			if (!r)
				continue;
		}
		if (pf_ids_add(out, id, n) != MP_OK) {
			rc = q_oom(q);
			break;
		}
	}
	if (!rc && r != SQLITE_DONE)
		rc = pf_db_fail(q, r);
	sqlite3_finalize(st);
	if (!rc && pq->cohort && pq->include_all_users)
		rc = pf_cohort_without_profiles(q, db, pq, pe, out);
	return rc;
}

/* Append $properties' value: the stored object as it is, only the
 * output_properties members of it, or {} when the profile is gone (deleted
 * after the session's snapshot) or unreadable. */
static int pf_render_props(struct qctx *q, const struct pf_query *pq, const char *props, size_t n)
{
	cJSON *j = props ? cJSON_ParseWithLength(props, n) : NULL;
	const cJSON *it;
	int first = 1, rc = 0;

	if (!j || !cJSON_IsObject(j)) {
		cJSON_Delete(j);
		return buf_append(q->out, "{}", 2) == MP_OK ? 0 : q_oom(q);
	}
	if (!pq->outp) {
		cJSON_Delete(j);
		return buf_append(q->out, props, n) == MP_OK ? 0 : q_oom(q);
	}
	if (buf_putc(q->out, '{') != MP_OK)
		rc = q_oom(q);
	cJSON_ArrayForEach(it, j) {
		char *text;

		if (rc)
			break;
		if (!it->string || !bsearch(&it->string, pq->outp, pq->n_outp, sizeof *pq->outp, pf_strcmp))
			continue;
		if (!(text = cJSON_PrintUnformatted(it)))
			rc = q_oom(q);
		else if ((!first && buf_putc(q->out, ',') != MP_OK) ||
			 buf_json_str(q->out, it->string, strlen(it->string)) != MP_OK ||
			 buf_putc(q->out, ':') != MP_OK || buf_append(q->out, text, strlen(text)) != MP_OK)
			rc = q_oom(q);
		first = 0;
		free(text);
	}
	if (!rc && buf_putc(q->out, '}') != MP_OK)
		rc = q_oom(q);
	cJSON_Delete(j);
	return rc;
}

/* The results array for the ids of PAGE. */
static int pf_render(struct qctx *q, sqlite3 *db, const struct pf_query *pq, const struct pf_ids *page,
		     size_t a, size_t z)
{
	sqlite3_stmt *st = NULL;
	size_t i, n;
	int rc = 0, r;

	if (pf_prepare_get(q, db, pq, &st))
		return 1;
	if (buf_putc(q->out, '[') != MP_OK)
		rc = q_oom(q);
	for (i = a; i < z && !rc; i++) {
		const char *id = pf_ids_at(page, i), *props = NULL;

		if ((r = pf_get(q, pq, st, id, &props, &n)) < 0) {
			rc = 1;
			break;
		}
		if ((i > a && buf_putc(q->out, ',') != MP_OK) ||
		    buf_append(q->out, "{\"$distinct_id\":", 16) != MP_OK ||
		    buf_json_str(q->out, id, strlen(id)) != MP_OK ||
		    (pq->group_key &&
		     (buf_append(q->out, ",\"$group_key\":", 14) != MP_OK ||
		      buf_json_str(q->out, pq->group_key, strlen(pq->group_key)) != MP_OK ||
		      buf_append(q->out, ",\"$group_id\":", 13) != MP_OK ||
		      buf_json_str(q->out, id, strlen(id)) != MP_OK)) ||
		    buf_append(q->out, ",\"$properties\":", 15) != MP_OK) {
			rc = q_oom(q);
			break;
		}
		if ((rc = pf_render_props(q, pq, r ? props : NULL, r ? n : 0)))
			break;
		if (buf_putc(q->out, '}') != MP_OK)
			rc = q_oom(q);
	}
	if (!rc && buf_putc(q->out, ']') != MP_OK)
		rc = q_oom(q);
	sqlite3_finalize(st);
	return rc;
}

#define PF_PAGE_SIZE 1000

int q_engage(struct qctx *q)
{
	const char *session = q_param(q, "session_id");
	struct pf_query pq;
	struct pf_eval *pe = NULL;
	struct pf_ids all, slice;
	const struct pf_ids *page_ids;
	cJSON *jwant = NULL, *joutp = NULL;
	sqlite3 *db = NULL;
	char sid[QS_ID_LEN];
	size_t total = 0, start, a, z;
	long page, page_size;
	uint64_t fp;
	int rc = 200, found = 0, r;
	enum mp_err err;
	struct q_cohort *cohort = NULL;
	struct q_cohort_members members;

	memset(&members, 0, sizeof members);
	memset(&pq, 0, sizeof pq);
	pf_ids_init(&all);
	pf_ids_init(&slice);
	if (q_param(q, "behaviors"))
		return q_fail(q, 400, "'behaviors' is not supported: save the selection as a cohort and use filter_by_cohort");
	if (q_int(q, "page", 0, 0, 1L << 31, &page) || q_int(q, "page_size", PF_PAGE_SIZE, 1, PF_PAGE_SIZE, &page_size))
		return q->status;
	if (page > 0 && !session)
		return q_fail(q, 400, "'session_id' is required when 'page' is greater than 0");
	if (q_group_key(q, &pq.group_key))
		return q->status;
	if (pf_string_array(q, "distinct_ids", "distinct_ids (strings)", &jwant, &pq.want, &pq.n_want) ||
	    pf_string_array(q, "output_properties", "property names", &joutp, &pq.outp, &pq.n_outp) ||
	    q_expr(q, "where", &pq.where)) {
		rc = q->status;
		goto out;
	}
	{
		/* distinct_id joins distinct_ids: the list stays sorted and unique */
		const char *one = q_param(q, "distinct_id");

		if (one && !pq.want) {
			if (!(pq.want = malloc(sizeof *pq.want))) {
				rc = q_oom(q);
				goto out;
			}
			pq.want[0] = one;
			pq.n_want = 1;
		} else if (one) {
			const char **w = realloc(pq.want, (pq.n_want + 1) * sizeof *w);

			if (!w) {
				rc = q_oom(q);
				goto out;
			}
			pq.want = w;
			if (!bsearch(&one, w, pq.n_want, sizeof *w, pf_strcmp)) {
				w[pq.n_want++] = one;
				qsort(w, pq.n_want, sizeof *w, pf_strcmp);
			}
		}
	}
	fp = 0xcbf29ce484222325ULL;
	fp = pf_fnv(fp, pq.group_key);
	fp = pf_fnv(fp, q_param(q, "distinct_id"));
	fp = pf_fnv(fp, q_param(q, "distinct_ids"));
	fp = pf_fnv(fp, q_param(q, "where"));
	fp = pf_fnv(fp, q_param(q, "filter_by_cohort"));
	fp = pf_fnv(fp, q_param(q, "include_all_users"));
	start = (size_t)page * (size_t)page_size;

	if ((err = store_meta_open_ro(q->sp, &db)) != MP_OK) {
		rc = q_fail(q, 503, "cannot read the profiles: %s", mp_strerror(err));
		goto out;
	}
	/* one read transaction: the scan and the page see one snapshot */
	if ((r = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL)) != SQLITE_OK) {
		rc = pf_db_fail(q, r);
		goto out;
	}
	if (session && q->sessions) {
		found = qs_slice(q->sessions, session, q->proj, fp, q->now_ms, start, (size_t)page_size, &slice, &total);
		if (found < 0) {
			rc = q_oom(q);
			goto out;
		}
	}
	if (found) {
		snprintf(sid, sizeof sid, "%s", session);
		page_ids = &slice;
		a = 0;
		z = slice.n;
	} else if (page > 0) {
		rc = q_fail(q, 400, "request for page in uncached query for params");
		goto out;
	} else {
		if (!(pe = malloc(sizeof *pe))) {
			rc = q_oom(q);
			goto out;
		}
		memset(pe, 0, sizeof *pe);
		pe->group_key = pq.group_key;
		if (q_param(q, "filter_by_cohort")) {
			if (pq.group_key) {
				rc = q_fail(q, 400, "filter_by_cohort selects users: it cannot be used with data_group_id");
				goto out;
			}
			if (q_bool(q, "include_all_users", 1, &pq.include_all_users) ||
			    q_cohort_spec(q, q_param(q, "filter_by_cohort"), &cohort) ||
			    q_cohort_members(q, cohort, q->now_ms, 1, &members)) {
				rc = q->status;
				goto out;
			}
			pq.cohort = &members;
		}
		if (pf_scan(q, db, &pq, pe, &all)) {
			rc = q->status;
			goto out;
		}
		if (q->sessions)
			qs_new_id(q->sessions, q->now_ms, sid);
		else
			snprintf(sid, sizeof sid, "none");
		total = all.n;
		page_ids = &all;
		a = start < all.n ? start : all.n;
		z = all.n - a < (size_t)page_size ? all.n : a + (size_t)page_size;
	}
	if (buf_printf(q->out, "{\"page\":%ld,\"page_size\":%ld,\"session_id\":", page, page_size) != MP_OK ||
	    buf_json_str(q->out, sid, strlen(sid)) != MP_OK ||
	    buf_printf(q->out, ",\"status\":\"ok\",\"total\":%zu,\"results\":", total) != MP_OK) {
		rc = q_oom(q);
		goto out;
	}
	if (pf_render(q, db, &pq, page_ids, a, z)) {
		rc = q->status;
		goto out;
	}
	if (buf_putc(q->out, '}') != MP_OK) {
		rc = q_oom(q);
		goto out;
	}
	if (!found && q->sessions && !qs_put(q->sessions, sid, q->proj, fp, q->now_ms, &all))
		log_warn("engage: cannot keep the %zu matching profiles of session %s for paging "
			 "(over the cache's budget or out of memory)", all.n, sid);
out:
	if (db) {
		sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
		sqlite3_close(db);
	}
	free(pe);
	pf_ids_free(&all);
	pf_ids_free(&slice);
	expr_free(pq.where);
	free(pq.want);
	q_cohort_members_free(&members);
	q_cohort_free(cohort);
	free(pq.outp);
	cJSON_Delete(jwant);
	cJSON_Delete(joutp);
	return rc;
}

/* ---------- stream/query ---------- */

#define SQ_LIMIT_DEFAULT 1000
#define SQ_LIMIT_MAX 10000

/* One identity cluster's events still to emit: [lo, hi) of the view,
 * walked from hi - 1 down. */
struct sq_range {
	size_t lo, hi;
};

/* Is range A's next event (hi - 1) newer than B's?  Same time: the later
 * position (storage order within a user, then user key) first. */
static int sq_newer(const struct cs_view *v, const struct sq_range *a, const struct sq_range *b)
{
	int64_t ta = v->t[a->hi - 1], tb = v->t[b->hi - 1];

	return ta != tb ? ta > tb : a->hi > b->hi;
}

static void sq_sift_down(const struct cs_view *v, struct sq_range *h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		struct sq_range tmp;

		if (l < n && sq_newer(v, &h[l], &h[m]))
			m = l;
		if (r < n && sq_newer(v, &h[r], &h[m]))
			m = r;
		if (m == i)
			return;
		tmp = h[i];
		h[i] = h[m];
		h[m] = tmp;
		i = m;
	}
}

static const char *sq_lookup(void *ctx, int64_t id, size_t *len)
{
	const struct cs_view *v = ctx;

	if (id < 1 || id >= (int64_t)v->n_strings)
		return NULL;
	return cs_string(v, (uint32_t)id, len);
}

static int sq_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Event I as {"event":..,"properties":{"time":s,"distinct_id":canon,...}};
 * BEFORE_KEY: the string id of "$distinct_id_before_identity" (0: none). */
static int sq_event(struct qctx *q, size_t i, uint32_t before_key)
{
	const struct cs_view *v = q->v;
	uint32_t canon = colstore_canonical(v, v->did[i]);
	int64_t t = v->t[i], secs = t >= 0 ? t / 1000 : -((-t + 999) / 1000);
	const unsigned char *p, *val, *val_end;
	const char *s;
	size_t n, pn;
	int first = 0;
	enum mp_err rc;

	s = cs_string(v, v->ev[i], &n);
	if (buf_append(q->out, "{\"event\":", 9) != MP_OK || buf_json_str(q->out, s, n) != MP_OK ||
	    buf_printf(q->out, ",\"properties\":{\"time\":%lld,\"distinct_id\":", (long long)secs) != MP_OK)
		return q_oom(q);
	s = cs_string(v, canon, &n);
	if (buf_json_str(q->out, s, n) != MP_OK)
		return q_oom(q);
	p = cs_props(v, i, &pn);
	/* the own id, unless the event names one already (ingest kept the sent id) */
	if (canon != v->did[i] && !(before_key && pc_find(p, pn, before_key, &val, &val_end) == 1)) {
		s = cs_string(v, v->did[i], &n);
		if (buf_append(q->out, ",\"$distinct_id_before_identity\":", 32) != MP_OK ||
		    buf_json_str(q->out, s, n) != MP_OK)
			return q_oom(q);
	}
	n = pn;
	if (n && (rc = pc_to_json(p, n, sq_lookup, (void *)v, q->out, &first)) != MP_OK)
		return rc == MP_E_STORE ? q_fail(q, 503, "event %zu of the projection is damaged", i) : q_oom(q);
	return buf_append(q->out, "}}", 2) == MP_OK ? 0 : q_oom(q);
}

int q_stream_query(struct qctx *q)
{
	const struct cs_view *v = q->v;
	const char **ids = NULL;
	cJSON *json = NULL;
	uint32_t *keys = NULL;
	struct sq_range *heap = NULL;
	size_t n_ids, n_keys = 0, n_heap = 0, i, emitted = 0;
	int64_t from = INT64_MIN, to = INT64_MAX;
	long limit;
	int rc = 200;
	uint32_t before_key = cs_string_id(v, "$distinct_id_before_identity", 28);

	if (!q_param(q, "distinct_ids"))
		return q_fail(q, 400, "'distinct_ids' is a required parameter");
	if (pf_string_array(q, "distinct_ids", "distinct_ids (strings)", &json, &ids, &n_ids) ||
	    ((q_param(q, "from_date") || q_param(q, "to_date")) && q_dates(q, &from, &to)) ||
	    q_int(q, "limit", SQ_LIMIT_DEFAULT, 1, SQ_LIMIT_MAX, &limit)) {
		rc = q->status;
		goto out;
	}
	/* each id's user key; ids of one identity cluster share it */
	if (!(keys = malloc((n_ids ? n_ids : 1) * sizeof *keys)) || !(heap = malloc((n_ids ? n_ids : 1) * sizeof *heap))) {
		rc = q_oom(q);
		goto out;
	}
	for (i = 0; i < n_ids; i++) {
		uint32_t sid = cs_string_id(v, ids[i], strlen(ids[i])), u;

		if (sid && (u = colstore_user_key(v, sid)) != CS_NO_USER && u < v->n_users)
			keys[n_keys++] = u;
	}
	qsort(keys, n_keys, sizeof *keys, sq_cmp_u32);
	for (i = 0; i < n_keys; i++) {
		size_t lo, hi;

		if (i && keys[i] == keys[i - 1])
			continue;
		lo = cs_lower_bound(v->t, v->ustart[keys[i]], v->ustart[keys[i] + 1], from);
		hi = to == INT64_MAX ? v->ustart[keys[i] + 1] : cs_lower_bound(v->t, lo, v->ustart[keys[i] + 1], to);
		if (hi > lo) {
			heap[n_heap].lo = lo;
			heap[n_heap].hi = hi;
			n_heap++;
		}
	}
	for (i = n_heap; i-- > 0; )
		sq_sift_down(v, heap, n_heap, i);
	if (buf_append(q->out, "{\"status\":\"ok\",\"results\":{\"events\":[", 36) != MP_OK) {
		rc = q_oom(q);
		goto out;
	}
	while (n_heap && emitted < (size_t)limit) {
		size_t e = --heap[0].hi;

		if (emitted && buf_putc(q->out, ',') != MP_OK) {
			rc = q_oom(q);
			goto out;
		}
		if (sq_event(q, e, before_key)) {
			rc = q->status;
			goto out;
		}
		emitted++;
		if (heap[0].hi == heap[0].lo)
			heap[0] = heap[--n_heap];
		sq_sift_down(v, heap, n_heap, 0);
	}
	if (buf_append(q->out, "]}}", 3) != MP_OK)
		rc = q_oom(q);
out:
	free(keys);
	free(heap);
	free(ids);
	cJSON_Delete(json);
	return rc;
}
