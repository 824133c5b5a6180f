/*
 * q_scopes.c - user["x"] and group["x"] in report expressions
 * (docs/QUERIES.md "Profile properties"): the colstore evaluator asks here
 * for those two scopes.
 *
 *   user["x"]   property x of the profile of the event's user: the profile
 *               of its cluster's canonical distinct_id, else (no such
 *               profile) the profile of the event's own distinct_id;
 *   group["x"]  property x of the profile of the event's group: for a report
 *               with data_group_id, the group being counted; otherwise the
 *               group named by the event's property for the project's first
 *               group key (the first id when it is a list).
 * Profile values are as they are now (a snapshot per meta.db change,
 * shared by all queries of the project).
 */
#include "query_report.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "userprops.h"

struct q_upcache {
	pthread_mutex_t mu;
	struct sqlite3 *db;        /* kept: its data_version tells when profiles changed */
	int64_t dv;
	struct userprops *up;      /* one reference held here */
};

struct q_upcache *q_upcache_new(void)
{
	struct q_upcache *c = calloc(1, sizeof *c);

	if (c)
		pthread_mutex_init(&c->mu, NULL);
	return c;
}

void q_upcache_free(struct q_upcache *c)
{
	if (!c)
		return;
	userprops_unref(c->up);
	if (c->db)
		sqlite3_close(c->db);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

/* The current snapshot (a reference the caller drops), or NULL. */
static struct userprops *q_upcache_get(struct q_upcache *c, struct store_project *sp)
{
	struct userprops *up = NULL;
	int64_t dv;

	pthread_mutex_lock(&c->mu);
	if (!c->db && store_meta_open_ro(sp, &c->db) != MP_OK) {
		if (c->db)
			sqlite3_close(c->db);
		c->db = NULL;
		goto out;
	}
	dv = store_sql_int64(c->db, "PRAGMA data_version");
	if (!c->up || dv != c->dv) {
		struct userprops *n;

		if (userprops_load(c->db, &n) != MP_OK) {
			log_error("query: cannot read the profiles");
			goto out;
		}
		userprops_unref(c->up);
		c->up = n;
		c->dv = dv;
	}
	up = c->up;
	userprops_ref(up);
out:
	pthread_mutex_unlock(&c->mu);
	return up;
}

const cJSON *q_json_member(const cJSON *obj, const char *name, size_t len)
{
	const cJSON *c;

	for (c = obj ? obj->child : NULL; c; c = c->next)
		if (c->string && strlen(c->string) == len && !memcmp(c->string, name, len))
			return c;
	return NULL;
}

void q_json_expr_value(const cJSON *j, struct expr_value *items, size_t cap, size_t *used,
		       struct expr_value *out)
{
	memset(out, 0, sizeof *out);
	out->type = EXPR_UNDEFINED;
	if (cJSON_IsString(j)) {
		out->type = EXPR_STRING;
		out->u.str.s = j->valuestring;
		out->u.str.len = strlen(j->valuestring);
	} else if (cJSON_IsNumber(j)) {
		out->type = EXPR_NUMBER;
		out->u.n = j->valuedouble;
	} else if (cJSON_IsBool(j)) {
		out->type = EXPR_BOOL;
		out->u.b = cJSON_IsTrue(j);
	} else if (cJSON_IsNull(j)) {
		out->type = EXPR_NULL;
	} else if (cJSON_IsArray(j)) {
		struct expr_value *mine = items + *used;
		const cJSON *c;
		size_t n = 0;

		for (c = j->child; c && *used + n < cap; c = c->next)
			if (!cJSON_IsArray(c) && !cJSON_IsObject(c))
				q_json_expr_value(c, NULL, 0, used, &mine[n++]);
		*used += n;
		out->type = EXPR_LIST;
		out->u.list.items = mine;
		out->u.list.n = n;
	}
}

static const cJSON *q_user_profile(struct qctx *q, struct cs_eval *ce)
{
	const struct cs_view *v = ce->v;
	uint32_t did = v->did[ce->i], canon = colstore_canonical(v, did);
	const cJSON *p;
	const char *s;
	size_t n;

	if (!q->umemo && !(q->umemo = calloc(v->n_strings ? v->n_strings : 1, sizeof *q->umemo)))
		return NULL;
	/* the canonical id's profile, memoized ("none" marked by q) */
	if (canon < v->n_strings && q->umemo[canon]) {
		p = q->umemo[canon] == (const cJSON *)q ? NULL : q->umemo[canon];
	} else {
		s = cs_string(v, canon, &n);
		p = userprops_user(q->up, s, n);
		if (canon < v->n_strings)
			q->umemo[canon] = p ? p : (const cJSON *)q;
	}
	if (p || canon == did)
		return p;
	/* no profile for the cluster: the event's own id's */
	s = cs_string(v, did, &n);
	return userprops_user(q->up, s, n);
}

static const cJSON *q_group_profile(struct qctx *q, struct cs_eval *ce)
{
	const char *key = q->group_key, *id;
	struct expr_value x;
	char tmp[40];
	size_t n;

	if (key) {
		id = colstore_group_name(ce->v, ce->v->user[ce->i], &n);
	} else {
		if (!q->proj->n_group_keys)
			return NULL;
		key = q->proj->group_keys[0];
		ce->ext = NULL;        /* read the event's own property */
		cs_eval_lookup(ce, EXPR_SCOPE_PROPERTIES, key, strlen(key), &x);
		ce->ext = q_scope_lookup;
		if (x.type == EXPR_LIST && x.u.list.n)
			x = x.u.list.items[0];
		if (x.type == EXPR_STRING) {
			id = x.u.str.s;
			n = x.u.str.len;
		} else if (x.type == EXPR_NUMBER) {
			if ((n = expr_value_key(&x, tmp, sizeof tmp)) >= sizeof tmp)
				return NULL;
			id = tmp;
		} else {
			return NULL;
		}
	}
	return userprops_group(q->up, key, strlen(key), id, n);
}

struct userprops *q_userprops(struct qctx *q)
{
	if (!q->up_tried) {
		q->up_tried = 1;
		if (q->upc && !(q->up = q_upcache_get(q->upc, q->sp)))
			q_fail(q, 503, "cannot read the profiles");
	}
	return q->up;
}

int q_scope_lookup(void *ctx, struct cs_eval *ce, enum expr_scope scope, const char *name, size_t len,
		   struct expr_value *out)
{
	struct qctx *q = ctx;
	const cJSON *prof;

	out->type = EXPR_UNDEFINED;
	if (!q_userprops(q))
		return q->status ? -1 : 0;   /* -1: the evaluation fails, the report answers an error */
	if (scope == EXPR_SCOPE_USER)
		prof = q->profile_only ? q->profile_only : q_user_profile(q, ce);
	else
		prof = q->profile_only ? NULL : q_group_profile(q, ce);
	{
		size_t used = 0;  /* the items of each lookup start again at ce->items */

		q_json_expr_value(q_json_member(prof, name, len), ce->items,
				  sizeof ce->items / sizeof ce->items[0], &used, out);
	}
	return 0;
}

void q_eval_init(struct qctx *q, struct cs_eval *ce)
{
	cs_eval_init(ce, q->v);
	ce->ext = q_scope_lookup;
	ce->ext_ctx = q;
}

void q_scopes_done(struct qctx *q)
{
	userprops_unref(q->up);
	q->up = NULL;
	free(q->umemo);
	q->umemo = NULL;
}
