/*
 * q_privacy.c - privacy deletions, shaped like Mixpanel's GDPR API v3
 * (docs/API.md "Privacy deletions"):
 *   POST /api/app/data-deletions/v3.0/      {"distinct_ids":[...],"compliance_type":"GDPR"}
 *   GET  /api/app/data-deletions/v3.0/TASK  the task's status and counts
 * A deletion covers every distinct_id merged with the ones asked for
 * (their whole identity cluster).  It is carried out by the project's
 * writer before the answer (store.h: a committed tombstone for every event,
 * the identity links and profiles removed), so "SUCCESS" is final and
 * survives restarts.
 */
#include "query_report.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#define QP_MAX_IDS 2000            /* ids per request (Mixpanel: 2000) */

struct qp_ids {
	char **s;
	size_t n, cap;
};

static int qp_add(struct qp_ids *ids, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < ids->n; i++)
		if (strlen(ids->s[i]) == n && !memcmp(ids->s[i], s, n))
			return 0;
	if (ids->n == ids->cap) {
		char **ns = realloc(ids->s, (ids->cap = ids->cap ? ids->cap * 2 : 16) * sizeof *ns);

		if (!ns)
			return -1;
		ids->s = ns;
	}
	if (!(ids->s[ids->n] = strndup(s, n)))
		return -1;
	ids->n++;
	return 0;
}

static void qp_free(struct qp_ids *ids)
{
	size_t i;

	for (i = 0; i < ids->n; i++)
		free(ids->s[i]);
	free(ids->s);
}

/* ID and every distinct_id merged with it. */
static int qp_cluster(struct qctx *q, struct qp_ids *ids, const char *id)
{
	uint32_t sid = cs_string_id(q->v, id, strlen(id)), *members;
	size_t n, i, len;
	int rc = 0;

	if (qp_add(ids, id, strlen(id)))
		return -1;
	if (!sid)
		return 0;
	n = colstore_cluster(q->v, colstore_canonical(q->v, sid), NULL, 0);
	if (!(members = malloc(n * sizeof *members)))
		return -1;
	colstore_cluster(q->v, colstore_canonical(q->v, sid), members, n);
	for (i = 0; i < n && !rc; i++) {
		const char *s = cs_string(q->v, members[i], &len);

		rc = qp_add(ids, s, len);
	}
	free(members);
	return rc;
}

int q_deletion_create(struct qctx *q)
{
	cJSON *body = NULL, *arr = NULL, *owned = NULL, *item;
	const char *ctype = "GDPR", *token = q_param(q, "token"), *p;
	struct qp_ids ids = { NULL, 0, 0 };
	struct store_batch b;
	unsigned char rnd[16];
	char task[33], *json = NULL;
	size_t i, n_asked = 0;
	int status = 200;

	if (token && strcmp(token, q->proj->token) != 0)
		return q_fail(q, 400, "token does not match the project of the credentials");
	if (q->rq->body && q->rq->body_len && q->rq->body[0] == '{')
		body = cJSON_ParseWithLength(q->rq->body, q->rq->body_len);
	if (body) {
		const cJSON *ct = cJSON_GetObjectItemCaseSensitive(body, "compliance_type");

		arr = cJSON_GetObjectItemCaseSensitive(body, "distinct_ids");
		if (ct && !cJSON_IsString(ct)) {
			status = q_fail(q, 400, "compliance_type must be \"GDPR\" or \"CCPA\"");
			goto out;
		}
		if (ct)
			ctype = ct->valuestring;
	} else {
		if ((p = q_param(q, "compliance_type")))
			ctype = p;
		if ((p = q_param(q, "distinct_ids")) && !(arr = owned = cJSON_Parse(p))) {
			status = q_fail(q, 400, "distinct_ids is not valid JSON");
			goto out;
		}
	}
	if (strcmp(ctype, "GDPR") && strcmp(ctype, "CCPA")) {
		status = q_fail(q, 400, "compliance_type must be \"GDPR\" or \"CCPA\"");
		goto out;
	}
	if (!cJSON_IsArray(arr) || !cJSON_GetArraySize(arr)) {
		status = q_fail(q, 400, "distinct_ids must be a non-empty JSON array of distinct_id strings");
		goto out;
	}
	cJSON_ArrayForEach(item, arr) {
		if (!cJSON_IsString(item) || !item->valuestring[0] || strlen(item->valuestring) > 255) {
			status = q_fail(q, 400, "distinct_ids[%zu] must be a non-empty string of at most 255 bytes", n_asked);
			goto out;
		}
		if (++n_asked > QP_MAX_IDS) {
			status = q_fail(q, 400, "at most %d distinct_ids per request", QP_MAX_IDS);
			goto out;
		}
	}
	cJSON_ArrayForEach(item, arr)
		if (qp_cluster(q, &ids, item->valuestring)) {
			status = q_oom(q);
			goto out;
		}
	{
		cJSON *list = cJSON_CreateStringArray((const char *const *)ids.s, (int)ids.n);

		json = list ? cJSON_PrintUnformatted(list) : NULL;
		cJSON_Delete(list);
		if (!json) {
			status = q_oom(q);
			goto out;
		}
	}
	if (RAND_bytes(rnd, sizeof rnd) != 1) {
		status = q_fail(q, 503, "cannot make a task id");
		goto out;
	}
	for (i = 0; i < sizeof rnd; i++)
		snprintf(task + 2 * i, 3, "%02x", rnd[i]);
	memset(&b, 0, sizeof b);
	b.recv_ms = q->now_ms;
	b.delete_ids = (const char *const *)ids.s;
	b.n_delete_ids = ids.n;
	b.deletion_task = task;
	b.deletion_type = ctype;
	b.deletion_ids_json = json;
	if (store_write(q->sp, &b) != MP_OK) {
		status = q_fail(q, 503, "deletion failed: %s (retry it: a repeated deletion completes it)", b.err);
		goto out;
	}
	colstore_drop_file(q->cs);   /* its copy of the deleted events */
	if (buf_printf(q->out, "{\"status\":\"ok\",\"results\":{\"task_id\":\"%s\"}}", task) != MP_OK)
		status = q_oom(q);
out:
	cJSON_free(json);
	qp_free(&ids);
	cJSON_Delete(body);
	cJSON_Delete(owned);
	return status;
}

static void qp_iso(int64_t ms, char out[32])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int q_deletion_status(struct qctx *q)
{
	const char *task = q->rq->endpoint + strlen("data-deletions/");
	struct store_deletion d;
	char req[32], done[32];
	enum mp_err rc = store_deletion_get(q->sp, task, &d);

	if (rc == MP_E_NOTFOUND)
		return q_fail(q, 404, "no deletion task %s in this project", task);
	if (rc != MP_OK)
		return q_fail(q, 503, "cannot read the deletion tasks: %s", mp_strerror(rc));
	qp_iso(d.requested_ms, req);
	qp_iso(d.completed_ms, done);
	rc = buf_printf(q->out, "{\"status\":\"ok\",\"results\":{\"task_id\":\"%s\",\"status\":\"SUCCESS\","
			"\"compliance_type\":\"%s\",\"distinct_ids\":%s,\"requested\":\"%s\",\"completed\":\"%s\","
			"\"deleted\":{\"events\":%lld,\"profiles\":%lld,\"identity_links\":%lld}}}",
			task, d.compliance_type, d.distinct_ids, req, done, (long long)d.events,
			(long long)d.profiles, (long long)d.links);
	free(d.distinct_ids);
	return rc == MP_OK ? 200 : q_oom(q);
}
