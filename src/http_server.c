/*
 * http_server.c - libmicrohttpd front end: routing, body collection, the
 * suspend/commit/resume cycle of ingestion requests, export streaming,
 * /healthz, CORS and the per-request log line (contract in
 * include/http_server.h).
 *
 * A request's life (struct req, allocated by the URI-log callback, freed by
 * the completion callback):
 *   NEW    first access call: route, method check, early 413 on Content-Length
 *   BODY   collect the body up to max_body_bytes (the rest is discarded)
 *   WAIT   decoded, validated and submitted to the store writer; connection
 *          suspended.  The writer's done() sets DONE and resumes it.
 *   DONE   the next access call answers from the batch outcome.
 * Invariant: a suspended connection is always resumed exactly once (done()
 * is called exactly once for a submitted batch), so http_server_stop() can
 * wait for the in-flight count to reach zero before MHD_stop_daemon().
 */
#include "http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "http_reply.h"
#include "ingest.h"
#include "jarena.h"
#include "expr.h"
#include "log.h"
#include "query.h"
#include "req_parse.h"

/* Per-connection buffer: bounds the request line and headers, so a GET
 * carrying a Node SDK event in its query string may be up to ~30 KiB
 * (larger ones get 414; POST bodies are not limited by it).  libmicrohttpd
 * clears the whole buffer for every request, so it costs CPU per request:
 * under single-event load 256 KiB spent ~20% of the server's CPU in memset,
 * 64 KiB ~6%.  32 KiB is libmicrohttpd's default. */
#define HTTP_CONN_MEMORY ((size_t)32 * 1024)

enum route {
	R_NONE = 0, R_TRACK, R_ENGAGE, R_GROUPS, R_IMPORT, R_EXPORT, R_HEALTHZ, R_DECIDE, R_QUERY
};

enum req_state { RS_NEW = 0, RS_BODY, RS_WAIT, RS_DONE };

struct http_server {
	const struct config *cfg;
	struct store *st;
	struct query_engine *qe;
	struct MHD_Daemon *d;
	uint16_t port;
	time_t started;
	pthread_mutex_t mu;
	int in_flight;          /* requests between URI callback and completion */
	int draining;           /* SIGTERM seen: answers carry Connection: close */
	int stopping;           /* nothing in flight any more: no new suspensions */
};

struct req {
	struct http_server *srv;
	struct MHD_Connection *conn;
	char *uri;              /* raw request target incl. query */
	const char *query;      /* points into uri after '?', or "" */
	enum route route;
	enum req_state state;
	struct timespec t0;
	struct buf body;
	int too_big;
	int status;             /* answered status, for the log line */
	size_t n_events;        /* records stored, for the log line */
	/* ingestion */
	struct rp_result rp;
	struct ingest_result ing;
	struct jarena *arena;   /* the request's cJSON trees (NULL: malloc) */
	enum ingest_endpoint endpoint;
	int json_body;          /* payload was a JSON/NDJSON body (modern /import) */
	const struct config_project *import_project; /* /import: whose secret was presented */
	char method[8];
	char path[128];
	char qname[64];         /* R_QUERY: the endpoint after /api/2.0/ */
	char why[320];          /* why the request (or some of its records) failed, for the log line */
};

/* ---------- small helpers ---------- */

static enum route http_route(const char *url, const char *prefix, char qname[64])
{
	char p[128];
	size_t n, pl = prefix ? strlen(prefix) : 0;

	if (pl && !strncmp(url, prefix, pl) && url[pl] == '/')
		url += pl;
	n = strlen(url);
	if (n >= sizeof p)
		return R_NONE;
	memcpy(p, url, n + 1);
	while (n > 1 && p[n - 1] == '/')
		p[--n] = '\0';
	if (!strcmp(p, "/track")) return R_TRACK;
	if (!strcmp(p, "/engage")) return R_ENGAGE;
	if (!strcmp(p, "/groups")) return R_GROUPS;
	if (!strcmp(p, "/import")) return R_IMPORT;
	if (!strcmp(p, "/decide")) return R_DECIDE;
	if (!strcmp(p, "/healthz")) return R_HEALTHZ;
	if (!strcmp(p, "/api/2.0/export") || !strcmp(p, "/api/query/export")) return R_EXPORT;
	/* Mixpanel's GDPR API: the query engine's "data-deletions[/TASK]" */
	if (!strncmp(p, "/api/app/data-deletions/v3.0", 28) && (p[28] == '\0' || p[28] == '/') &&
	    (n = strlen(p + 28)) < 48) {
		memcpy(qname, "data-deletions", 14);
		memcpy(qname + 14, p + 28, n + 1);
		return query_endpoint_known(qname) ? R_QUERY : R_NONE;
	}
	{
		const char *rest = !strncmp(p, "/api/2.0/", 9) ? p + 9 : !strncmp(p, "/api/query/", 11) ? p + 11 : NULL;

		size_t rl = rest ? strlen(rest) : 0;

		if (rest && rl < 64 && query_endpoint_known(rest)) {
			memcpy(qname, rest, rl + 1);
			return R_QUERY;
		}
	}
	return R_NONE;
}

static const char *http_param(const struct req *r, const char *name)
{
	return rp_param(&r->rp, name);
}

static int http_truthy(const char *v)
{
	return v && (!strcmp(v, "1") || !strcasecmp(v, "true"));
}

static int http_falsy(const char *v)
{
	return v && (!strcmp(v, "0") || !strcasecmp(v, "false"));
}

static void http_client_ip(struct req *r, char *out, size_t n)
{
	const union MHD_ConnectionInfo *ci;
	const char *xff;

	out[0] = '\0';
	if (r->srv->cfg->trust_proxy &&
	    (xff = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Forwarded-For"))) {
		size_t k = strcspn(xff, ", ");

		snprintf(out, n, "%.*s", (int)(k < n ? k : n - 1), xff);
		return;
	}
	ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (!ci || !ci->client_addr)
		return;
	if (ci->client_addr->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)ci->client_addr)->sin_addr, out, (socklen_t)n);
	else if (ci->client_addr->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)ci->client_addr)->sin6_addr, out, (socklen_t)n);
}

/* The query-string parameters alone into OUT (the caller frees it with
 * rp_result_free): rp_decode's "no data" outcome is expected here. */
static void http_query_params(const struct req *r, struct rp_result *out)
{
	struct rp_request q;
	char err[64];

	memset(&q, 0, sizeof q);
	q.query = r->query;
	q.query_len = strlen(r->query);
	rp_decode(&q, out, err, sizeof err);
}

/* Constant-time equality of two secrets of any length. */
static int http_secret_eq(const char *a, size_t an, const char *b, size_t bn)
{
	unsigned char ha[SHA256_DIGEST_LENGTH], hb[SHA256_DIGEST_LENGTH];

	SHA256((const unsigned char *)a, an, ha);
	SHA256((const unsigned char *)b, bn, hb);
	return CRYPTO_memcmp(ha, hb, sizeof ha) == 0 && an == bn;
}

/* Who the Authorization header (HTTP Basic, base64 or plain "user:pass")
 * says is asking, for project_id PID (may be NULL):
 *   - a project's API secret as the user name: that project (a PID naming
 *     another project is 403);
 *   - a service account username:secret: the project PID, which it must be
 *     granted (403 otherwise); without PID, its only project.
 * Returns the project, or NULL with *STATUS 401 (missing or wrong
 * credentials) or 403 (not allowed) and a reason in WHY. */
static const struct config_project *http_auth(struct req *r, const char *pid, int *status,
					      const char **why)
{
	const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
	const struct config *cfg = r->srv->cfg;
	const struct config_project *found = NULL, *want = NULL;
	const struct config_service_account *acct;
	unsigned char *dec = NULL;
	const char *cred, *colon;
	size_t credlen, user_len, i, dl = 0;

	*status = 401;
	*why = "Invalid credentials";
	if (!h || strncasecmp(h, "Basic ", 6) != 0)
		return NULL;
	cred = h + 6;
	while (*cred == ' ')
		cred++;
	credlen = strlen(cred);
	if (!memchr(cred, ':', credlen)) {
		dec = rp_base64_decode(cred, credlen, &dl);
		if (!dec || !memchr(dec, ':', dl)) {
			free(dec);
			return NULL;
		}
		cred = (const char *)dec;
		credlen = dl;
	}
	colon = memchr(cred, ':', credlen);
	user_len = (size_t)(colon - cred);
	if (pid && pid[0]) {
		char *end;
		long id = strtol(pid, &end, 10);

		want = *end ? NULL : config_project_by_id(cfg, id);
	}
	for (i = 0; i < cfg->n_projects; i++) {
		const struct config_project *p = &cfg->projects[i];

		if (http_secret_eq(cred, user_len, p->api_secret, strlen(p->api_secret)) && !found)
			found = p;
	}
	if (found) {
		if (pid && pid[0] && want != found) {
			*status = 403;
			*why = want ? "the API secret does not belong to project_id"
				    : "project_id does not name a project on this server";
			found = NULL;
		}
	} else if ((acct = config_account_by_username(cfg, cred, user_len)) &&
		   http_secret_eq(colon + 1, credlen - user_len - 1, acct->secret, strlen(acct->secret))) {
		if (!(pid && pid[0])) {
			if (acct->n_projects == 1) {
				found = config_project_by_name(cfg, acct->projects[0]);
			} else {
				*status = 400;
				*why = "project_id is required with a service account";
			}
		} else if (want && config_account_grants(acct, want)) {
			found = want;
		} else {
			*status = 403;
			*why = want ? "the service account has no access to this project"
				    : "project_id does not name a project on this server";
		}
	}
	free(dec);
	return found;
}

/* ---------- answering ---------- */

static enum MHD_Result http_send(struct req *r, struct http_reply *rep)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	const char *origin = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin");
	size_t i;

	resp = MHD_create_response_from_buffer(rep->body.len, rep->body.data ? rep->body.data : (char *)"",
					       MHD_RESPMEM_MUST_COPY);
	if (!resp) {
		http_reply_free(rep);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", rep->content_type);
	for (i = 0; i < rep->n_headers; i++)
		MHD_add_response_header(resp, rep->headers[i][0], rep->headers[i][1]);
	if (origin) {
		MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
		MHD_add_response_header(resp, "Access-Control-Allow-Credentials", "true");
		MHD_add_response_header(resp, "Access-Control-Expose-Headers", "Retry-After");
		MHD_add_response_header(resp, "Vary", "Origin");
	}
	pthread_mutex_lock(&r->srv->mu);
	if (r->srv->draining)
		MHD_add_response_header(resp, "Connection", "close");
	pthread_mutex_unlock(&r->srv->mu);
	r->status = rep->status;
	ret = MHD_queue_response(r->conn, (unsigned)rep->status, resp);
	MHD_destroy_response(resp);
	http_reply_free(rep);
	return ret;
}

static enum MHD_Result http_send_error(struct req *r, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static enum MHD_Result http_send_error(struct req *r, int status, const char *fmt, ...)
{
	struct http_reply rep;
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	snprintf(r->why, sizeof r->why, "%s", msg);
	http_reply_error(&rep, status, msg, r->uri);
	return http_send(r, &rep);
}

/* ---------- ingestion ---------- */

static void http_ingest_done(struct store_batch *b, void *arg)
{
	struct req *r = arg;

	(void)b;
	r->state = RS_DONE;
	MHD_resume_connection(r->conn);
}

/* Build the ingestion answer from the request's outcome. */
static enum MHD_Result http_ingest_answer(struct req *r, enum mp_err decode_rc, const char *decode_err)
{
	struct http_reply rep;
	struct http_ingest_outcome o;

	memset(&o, 0, sizeof o);
	o.endpoint_import = r->endpoint == INGEST_IMPORT;
	o.strict_shape = (o.endpoint_import && (r->json_body || http_truthy(http_param(r, "strict")))) ||
			 (r->endpoint != INGEST_TRACK && http_truthy(http_param(r, "strict")));
	o.verbose = http_truthy(http_param(r, "verbose"));
	o.callback = http_param(r, "callback");
	o.img = http_truthy(http_param(r, "img"));
	o.decode_rc = decode_rc;
	o.decode_err = decode_err;
	o.ing = &r->ing;
	o.store_rc = r->ing.batch.rc;
	o.store_err = r->ing.batch.err;
	if (decode_rc == MP_OK && r->ing.batch.rc == MP_OK)
		r->n_events = r->ing.batch.n_new + r->ing.batch.n_dup + r->ing.batch.n_updates;
	if (decode_rc != MP_OK)
		snprintf(r->why, sizeof r->why, "%s", decode_err && decode_err[0] ? decode_err : mp_strerror(decode_rc));
	else if (r->ing.batch.rc != MP_OK)
		snprintf(r->why, sizeof r->why, "%s", r->ing.batch.err);
	else if (r->ing.n_failures)
		snprintf(r->why, sizeof r->why, "%zu of %zu records rejected, first: %s", r->ing.n_failures,
			 r->ing.n_records, r->ing.first_error);
	http_reply_ingest(&rep, &o);
	return http_send(r, &rep);
}

static enum MHD_Result http_ingest(struct req *r)
{
	struct http_server *srv = r->srv;
	struct rp_request in;
	struct ingest_opts opts;
	struct store_project *sp;
	char err[256] = "", ip[INET6_ADDRSTRLEN + 1];
	cJSON *records;
	enum mp_err rc;
	struct timespec now;

	memset(&in, 0, sizeof in);
	in.query = r->query;
	in.query_len = strlen(r->query);
	in.body = (const unsigned char *)r->body.data;
	in.body_len = r->body.len;
	in.content_type = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Type");
	in.content_encoding = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Encoding");
	in.max_inflated = srv->cfg->max_body_bytes;
	/* the trees live until the request is done (http_completed) */
	r->arena = jarena_new();
	jarena_enter(r->arena);
	rc = rp_decode(&in, &r->rp, err, sizeof err);
	jarena_leave();
	memset(&opts, 0, sizeof opts);
	opts.project = r->import_project; /* /import: authenticated before the body was read */
	if (rc == MP_E_TOOBIG)
		return http_send_error(r, 413, "request exceeds max limit of %zu bytes", srv->cfg->max_body_bytes);
	if (rc != MP_OK) {
		const char *ct = in.content_type ? in.content_type : "";
		size_t i = 0;

		while (i < in.body_len && strchr(" \t\r\n", in.body[i]))
			i++;
		r->json_body = strstr(ct, "json") != NULL ||
			       (i < in.body_len && (in.body[i] == '[' || in.body[i] == '{'));
		return http_ingest_answer(r, rc, err);
	}
	r->json_body = r->rp.source == RP_SRC_BODY_JSON;
	records = r->rp.records;
	r->rp.records = NULL;
	clock_gettime(CLOCK_REALTIME, &now);
	http_client_ip(r, ip, sizeof ip);
	opts.endpoint = r->endpoint;
	opts.cfg = srv->cfg;
	opts.strict = http_truthy(http_param(r, "strict"));
	opts.use_ip = http_truthy(http_param(r, "ip"));
	opts.client_ip = ip[0] ? ip : NULL;
	opts.now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
	jarena_enter(r->arena);
	rc = ingest_prepare(records, &opts, &r->ing);
	jarena_leave();
	if (rc == MP_E_TOOBIG)
		return http_ingest_answer(r, MP_E_TOOBIG, r->ing.first_error);
	if (rc != MP_OK)
		return http_send_error(r, 503, "%s", mp_strerror(rc));
	if (!r->ing.batch.n_events && !r->ing.batch.n_updates)
		return http_ingest_answer(r, MP_OK, NULL);
	sp = store_project_get(srv->st, r->ing.project);
	if (!sp)
		return http_send_error(r, 500, "project has no store");
	pthread_mutex_lock(&srv->mu);
	if (srv->stopping) {
		/* past the drain point nothing may be suspended: MHD_stop_daemon()
		 * must not meet a suspended connection.  Clients retry 503s. */
		pthread_mutex_unlock(&srv->mu);
		r->ing.batch.rc = MP_E_SHUTDOWN;
		snprintf(r->ing.batch.err, sizeof r->ing.batch.err, "server is shutting down");
		return http_ingest_answer(r, MP_OK, NULL);
	}
	pthread_mutex_unlock(&srv->mu);
	r->ing.batch.done = http_ingest_done;
	r->ing.batch.arg = r;
	r->state = RS_WAIT;
	MHD_suspend_connection(r->conn);
	if (store_submit(sp, &r->ing.batch) != MP_OK) {
		/* the store is shutting down: answer as a transient failure */
		r->ing.batch.rc = MP_E_SHUTDOWN;
		snprintf(r->ing.batch.err, sizeof r->ing.batch.err, "server is shutting down");
		r->state = RS_DONE;
		MHD_resume_connection(r->conn);
	}
	return MHD_YES;
}

/* ---------- export ---------- */

struct http_export {
	struct store_export *ex;
	struct query_resolver *res;    /* canonical ids, or NULL */
	struct buf chunk;
	size_t off;
	int done;
};

static ssize_t http_export_read(void *cls, uint64_t pos, char *out, size_t max)
{
	struct http_export *he = cls;
	size_t n;

	(void)pos;
	while (he->off >= he->chunk.len) {
		int r;

		if (he->done)
			return MHD_CONTENT_READER_END_OF_STREAM;
		buf_reset(&he->chunk);
		he->off = 0;
		/* fill ~64 KiB per round */
		while (he->chunk.len < 65536) {
			r = store_export_next(he->ex, &he->chunk);
			if (r == 0) {
				he->done = 1;
				break;
			}
			if (r < 0) {
				log_error("export: %s", mp_strerror((enum mp_err)(-r)));
				return MHD_CONTENT_READER_END_WITH_ERROR;
			}
		}
	}
	n = he->chunk.len - he->off;
	if (n > max)
		n = max;
	memcpy(out, he->chunk.data + he->off, n);
	he->off += n;
	return (ssize_t)n;
}

static void http_export_free(void *cls)
{
	struct http_export *he = cls;

	store_export_close(he->ex);
	query_resolver_free(he->res);
	buf_free(&he->chunk);
	free(he);
}

static enum MHD_Result http_export(struct req *r)
{
	const struct config_project *p;
	const char *from, *to, *ev, *lim, *where, *why;
	int64_t from_ms, to_ms;
	int status;
	struct expr *wx = NULL;
	char **names = NULL;
	size_t n_names = 0, limit = 0;
	cJSON *arr = NULL, *it;
	struct http_export *he = NULL;
	struct MHD_Response *resp;
	enum MHD_Result ret;
	enum mp_err rc;
	char err[256];
	const char *origin = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin");

	http_query_params(r, &r->rp);
	if (!(p = http_auth(r, http_param(r, "project_id"), &status, &why)))
		return http_send_error(r, status, "%s", why);
	from = http_param(r, "from_date");
	to = http_param(r, "to_date");
	if (!from || !to)
		return http_send_error(r, 400, "'%s' is a required parameter", from ? "to_date" : "from_date");
	if (http_parse_date(from, &from_ms) != 0)
		return http_send_error(r, 400, "'from_date' is invalid: expected YYYY-MM-DD");
	if (http_parse_date(to, &to_ms) != 0)
		return http_send_error(r, 400, "'to_date' is invalid: expected YYYY-MM-DD");
	to_ms += 86400000LL;
	if (to_ms <= from_ms)
		return http_send_error(r, 400, "'to_date' is before 'from_date'");
	if ((lim = http_param(r, "limit")) && lim[0]) {
		char *end;
		long v = strtol(lim, &end, 10);

		if (*end || v < 1 || v > 100000)
			return http_send_error(r, 400, "'limit' must be an integer from 1 to 100000");
		limit = (size_t)v;
	}
	if ((ev = http_param(r, "event")) && ev[0]) {
		arr = cJSON_Parse(ev);
		if (!cJSON_IsArray(arr)) {
			cJSON_Delete(arr);
			return http_send_error(r, 400, "'event' must be a JSON array of event names");
		}
		names = calloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof *names);
		if (!names) {
			cJSON_Delete(arr);
			return http_send_error(r, 503, "out of memory");
		}
		cJSON_ArrayForEach(it, arr) {
			if (!cJSON_IsString(it)) {
				free(names);
				cJSON_Delete(arr);
				return http_send_error(r, 400, "'event' must be a JSON array of event names");
			}
			names[n_names++] = it->valuestring;
		}
	}
	if ((where = http_param(r, "where")) && where[0]) {
		char msg[200];
		size_t off = 0;
		enum mp_err er = expr_compile(where, strlen(where), &wx, msg, sizeof msg, &off);

		if (er != MP_OK) {
			free(names);
			cJSON_Delete(arr);
			return http_send_error(r, er == MP_E_NOMEM ? 503 : 400,
					       "invalid expression in 'where' at position %zu: %s", off, msg);
		}
	}
	he = calloc(1, sizeof *he);
	if (!he) {
		rc = MP_E_NOMEM;
		expr_free(wx);
	} else {
		buf_init(&he->chunk, (size_t)256 << 20);
		/* the export owns WX from here on */
		rc = store_export_open(store_project_get(r->srv->st, p), from_ms, to_ms,
				       (const char *const *)names, n_names, limit,
				       http_truthy(http_param(r, "time_in_ms")), wx, &he->ex);
		/* resolve_ids=false (ours): the distinct_ids as stored */
		if (rc == MP_OK && r->srv->qe && !http_falsy(http_param(r, "resolve_ids")) &&
		    (rc = query_resolver_open(r->srv->qe, p, &he->res)) == MP_OK && he->res)
			store_export_set_resolver(he->ex, query_resolve, he->res);
	}
	free(names);
	cJSON_Delete(arr);
	if (rc != MP_OK) {
		if (he)
			http_export_free(he);
		snprintf(err, sizeof err, "%s", mp_strerror(rc));
		return http_send_error(r, 503, "export failed: %s", err);
	}
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 65536, http_export_read, he,
						 http_export_free);
	if (!resp) {
		http_export_free(he);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "text/plain; charset=utf-8");
	if (origin) {
		MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
		MHD_add_response_header(resp, "Access-Control-Allow-Credentials", "true");
		MHD_add_response_header(resp, "Vary", "Origin");
	}
	r->status = 200;
	ret = MHD_queue_response(r->conn, 200, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* ---------- query API ---------- */

/* Parameters of a query: the query string, overlaid by a form body. */
struct http_qparams {
	struct rp_result qs;
	struct rp_param *form;
	size_t n_form;
};

static enum mp_err http_qparam_add(const char *name, const char *value, const char *raw, size_t raw_len,
				   void *ctx)
{
	struct http_qparams *qp = ctx;
	struct rp_param *nf = realloc(qp->form, (qp->n_form + 1) * sizeof *nf);

	(void)raw;
	(void)raw_len;
	if (!nf)
		return MP_E_NOMEM;
	qp->form = nf;
	nf[qp->n_form].name = strdup(name);
	nf[qp->n_form].value = strdup(value);
	qp->n_form++;
	return nf[qp->n_form - 1].name && nf[qp->n_form - 1].value ? MP_OK : MP_E_NOMEM;
}

static const char *http_qparam_get(void *ctx, const char *name)
{
	struct http_qparams *qp = ctx;
	size_t i;

	for (i = qp->n_form; i-- > 0; )
		if (!strcmp(qp->form[i].name, name))
			return qp->form[i].value;
	return rp_param(&qp->qs, name);
}

static enum MHD_Result http_query(struct req *r)
{
	struct http_qparams qp;
	struct query_request rq;
	struct http_reply rep;
	struct buf out;
	const struct config_project *p;
	const char *why, *b = r->body.data;
	size_t i, bl = r->body.len;
	int status, form;
	enum MHD_Result ret;

	memset(&qp, 0, sizeof qp);
	http_query_params(r, &qp.qs);
	while (bl && (*b == ' ' || *b == '\n' || *b == '\r' || *b == '\t')) {
		b++;
		bl--;
	}
	/* a JSON body is the request itself (funnels/create); else a form */
	form = bl && *b != '{' && *b != '[';
	if (form && rp_form_parse(b, bl, http_qparam_add, &qp) != MP_OK) {
		ret = http_send_error(r, 503, "out of memory");
		goto out;
	}
	if (!(p = http_auth(r, http_qparam_get(&qp, "project_id"), &status, &why))) {
		ret = http_send_error(r, status, "%s", why);
		goto out;
	}
	memset(&rq, 0, sizeof rq);
	rq.project = p;
	rq.endpoint = r->qname;
	rq.method = r->method;
	rq.param = http_qparam_get;
	rq.param_ctx = &qp;
	rq.body = form ? NULL : b;
	rq.body_len = form ? 0 : bl;
	rq.request = r->uri;
	buf_init(&out, (size_t)1 << 30);
	status = query_run(r->srv->qe, &rq, &out);
	if (status != 200 && out.len) {
		/* the error message for the log line */
		snprintf(r->why, sizeof r->why, "%.*s", (int)(out.len < 300 ? out.len : 300), out.data);
	}
	http_reply_json(&rep, status, &out);
	buf_free(&out);
	ret = http_send(r, &rep);
out:
	rp_result_free(&qp.qs);
	for (i = 0; i < qp.n_form; i++) {
		free(qp.form[i].name);
		free(qp.form[i].value);
	}
	free(qp.form);
	return ret;
}

/* ---------- healthz ---------- */

static enum MHD_Result http_healthz(struct req *r)
{
	struct http_reply rep;
	const struct config *cfg = r->srv->cfg;
	size_t n = cfg->n_projects ? cfg->n_projects : 1, i;
	int64_t *counts = calloc(n, sizeof *counts);
	char (*why)[160] = calloc(n, sizeof *why);
	const char **problems = calloc(n, sizeof *problems);

	if (!counts || !why || !problems) {
		free(counts);
		free(why);
		free(problems);
		return http_send_error(r, 503, "out of memory");
	}
	for (i = 0; i < cfg->n_projects; i++) {
		struct store_project *sp = store_project_get(r->srv->st, &cfg->projects[i]);

		counts[i] = store_event_count(sp);
		if (!store_project_healthy(sp, why[i], sizeof why[i]))
			problems[i] = why[i];
	}
	http_reply_healthz(&rep, cfg, counts, problems, (long long)(time(NULL) - r->srv->started),
			   MIXPANELD_VERSION);
	free(counts);
	free(why);
	free(problems);
	return http_send(r, &rep);
}

/* ---------- MHD callbacks ---------- */

static void *http_uri_cb(void *cls, const char *uri, struct MHD_Connection *con)
{
	struct http_server *srv = cls;
	struct req *r = calloc(1, sizeof *r);
	char *q;

	if (!r)
		return NULL;
	r->srv = srv;
	r->conn = con;
	r->uri = strdup(uri ? uri : "");
	if (!r->uri) {
		free(r);
		return NULL;
	}
	q = strchr(r->uri, '?');
	r->query = q ? q + 1 : "";
	clock_gettime(CLOCK_MONOTONIC, &r->t0);
	buf_init(&r->body, srv->cfg->max_body_bytes);
	pthread_mutex_lock(&srv->mu);
	srv->in_flight++;
	pthread_mutex_unlock(&srv->mu);
	return r;
}

static void http_completed_cb(void *cls, struct MHD_Connection *con, void **con_cls,
			      enum MHD_RequestTerminationCode toe)
{
	struct http_server *srv = cls;
	struct req *r = *con_cls;
	struct timespec t1;
	double ms;

	(void)con;
	if (!r)
		return;
	/* the reason may quote client bytes: keep the log one line per request */
	for (char *c = r->why; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (double)(t1.tv_sec - r->t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - r->t0.tv_nsec) / 1e6;
	log_info("%s %s %d events=%zu %.2fms%s%s%s", r->method[0] ? r->method : "-", r->path[0] ? r->path : "-",
		 r->status, r->n_events, ms,
		 toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection closed early)",
		 r->why[0] ? " error: " : "", r->why);
	rp_result_free(&r->rp);
	/* trees wholly in the arena need no walk: it is released whole */
	if (jarena_pure(r->arena))
		ingest_result_forget_trees(&r->ing);
	ingest_result_free(&r->ing);
	jarena_release(r->arena);
	buf_free(&r->body);
	free(r->uri);
	free(r);
	*con_cls = NULL;
	pthread_mutex_lock(&srv->mu);
	srv->in_flight--;
	pthread_mutex_unlock(&srv->mu);
}

static enum MHD_Result http_access_cb(void *cls, struct MHD_Connection *con, const char *url,
				      const char *method, const char *version,
				      const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	struct http_server *srv = cls;
	struct req *r = *con_cls;

	(void)version;
	if (!r)
		return MHD_NO; /* out of memory in the URI callback */
	if (r->state == RS_NEW) {
		const char *cl;
		int ingest, head = !strcmp(method, "HEAD"), get = !strcmp(method, "GET");
		int post = !strcmp(method, "POST");

		snprintf(r->method, sizeof r->method, "%s", method);
		snprintf(r->path, sizeof r->path, "%s", url);
		r->route = http_route(url, srv->cfg->path_prefix, r->qname);
		r->state = RS_BODY;
		if (!strcmp(method, "OPTIONS")) {
			struct http_reply rep;

			http_reply_preflight(&rep, MHD_lookup_connection_value(con, MHD_HEADER_KIND,
									       "Access-Control-Request-Headers"));
			return http_send(r, &rep);
		}
		if (r->route == R_NONE)
			return http_send_error(r, 404, "unknown path %s", r->path);
		ingest = r->route == R_TRACK || r->route == R_ENGAGE || r->route == R_GROUPS || r->route == R_IMPORT;
		/* HEAD only where answering has no side effect */
		if (!(get || (post && (ingest || r->route == R_QUERY)) ||
		      (head && !ingest && r->route != R_EXPORT && r->route != R_QUERY))) {
			struct http_reply rep;

			http_reply_error(&rep, 405, "method not allowed", r->uri);
			http_reply_header(&rep, "Allow", ingest || r->route == R_QUERY ? "GET, POST, OPTIONS"
										  : "GET, OPTIONS");
			return http_send(r, &rep);
		}
		cl = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Content-Length");
		if (cl) {
			char *end;
			unsigned long long v = strtoull(cl, &end, 10);

			if (*end || v > srv->cfg->max_body_bytes)
				return http_send_error(r, 413, "request exceeds max limit of %zu bytes",
						       srv->cfg->max_body_bytes);
			/* one allocation for the whole body instead of a doubling series
			 * (each large realloc made glibc consolidate its free lists) */
			if (v && buf_reserve(&r->body, (size_t)v) != MP_OK)
				return http_send_error(r, 503, "out of memory");
		}
		if (r->route == R_IMPORT) {
			/* authenticate before reading (let alone decoding) the body;
			 * project_id is a query-string parameter */
			struct rp_result qr;

			http_query_params(r, &qr);
			{
				int status;
				const char *why;

				r->import_project = http_auth(r, rp_param(&qr, "project_id"), &status, &why);
			}
			rp_result_free(&qr);
			if (!r->import_project) {
				struct http_reply rep;

				snprintf(r->why, sizeof r->why, "missing or wrong API secret");
				http_reply_import_unauthorized(&rep);
				return http_send(r, &rep);
			}
		}
		switch (r->route) {
		case R_TRACK: r->endpoint = INGEST_TRACK; break;
		case R_ENGAGE: r->endpoint = INGEST_ENGAGE; break;
		case R_GROUPS: r->endpoint = INGEST_GROUPS; break;
		default: r->endpoint = INGEST_IMPORT; break;
		}
		return MHD_YES;
	}
	if (r->state == RS_BODY && *upload_data_size) {
		if (!r->too_big && buf_append(&r->body, upload_data, *upload_data_size) != MP_OK)
			r->too_big = 1;
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (r->state == RS_BODY) {
		if (r->too_big)
			return http_send_error(r, 413, "request exceeds max limit of %zu bytes",
					       srv->cfg->max_body_bytes);
		switch (r->route) {
		case R_HEALTHZ:
			return http_healthz(r);
		case R_DECIDE: {
			struct http_reply rep;

			http_reply_decide(&rep);
			return http_send(r, &rep);
		}
		case R_EXPORT:
			return http_export(r);
		case R_QUERY:
			return http_query(r);
		default:
			return http_ingest(r);
		}
	}
	if (r->state == RS_DONE)
		return http_ingest_answer(r, MP_OK, NULL);
	return MHD_YES; /* RS_WAIT: spurious call while suspended */
}

/* ---------- lifecycle ---------- */

enum mp_err http_server_start(const struct config *cfg, struct store *st,
			      struct http_server **out, char *err, size_t errlen)
{
	struct http_server *srv = calloc(1, sizeof *srv);
	struct sockaddr_storage ss;
	socklen_t sl;
	unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	const union MHD_DaemonInfo *di;
	const char *bind = cfg->bind;

	if (!srv)
		return MP_E_NOMEM;
	srv->cfg = cfg;
	srv->st = st;
	srv->started = time(NULL);
	pthread_mutex_init(&srv->mu, NULL);
	memset(&ss, 0, sizeof ss);
	if (!strcmp(bind, "localhost"))
		bind = "127.0.0.1";
	if (inet_pton(AF_INET, bind, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		((struct sockaddr_in *)&ss)->sin_family = AF_INET;
		((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)cfg->port);
		sl = sizeof(struct sockaddr_in);
	} else if (inet_pton(AF_INET6, bind, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)cfg->port);
		sl = sizeof(struct sockaddr_in6);
		flags |= MHD_USE_IPv6;
	} else {
		snprintf(err, errlen, "bind address '%s' is not an IP address", cfg->bind);
		free(srv);
		return MP_E_CONFIG;
	}
	(void)sl;
	if (cfg->tls_cert_pem) {
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
			snprintf(err, errlen, "this libmicrohttpd was built without TLS support");
			free(srv);
			return MP_E_CONFIG;
		}
		flags |= MHD_USE_TLS;
	}
	if (query_engine_open(cfg, st, &srv->qe, err, errlen) != MP_OK) {
		free(srv);
		return MP_E_CONFIG;
	}
	{
		struct MHD_OptionItem opts[] = {
			{ MHD_OPTION_SOCK_ADDR, 0, &ss },
			{ MHD_OPTION_THREAD_POOL_SIZE, cfg->threads, NULL },
			{ MHD_OPTION_CONNECTION_TIMEOUT, 120, NULL },
			{ MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)HTTP_CONN_MEMORY, NULL },
			{ MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)http_uri_cb, srv },
			{ MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)http_completed_cb, srv },
			{ MHD_OPTION_END, 0, NULL },  /* TLS options go here when configured */
			{ MHD_OPTION_END, 0, NULL },
			{ MHD_OPTION_END, 0, NULL },
		};

		if (cfg->tls_cert_pem) {
			opts[6] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_CERT, 0, cfg->tls_cert_pem };
			opts[7] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_KEY, 0, cfg->tls_key_pem };
		}
		errno = 0;
		srv->d = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, http_access_cb, srv,
					  MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
	}
	if (!srv->d) {
		if (cfg->tls_cert_pem && errno != EADDRINUSE && errno != EACCES && errno != EADDRNOTAVAIL)
			snprintf(err, errlen, "cannot start HTTPS on %s:%d: libmicrohttpd rejected the TLS "
				 "certificate or key (check tls_cert and tls_key)", cfg->bind, cfg->port);
		else
			snprintf(err, errlen, "cannot listen on %s:%d: %s", cfg->bind, cfg->port,
				 errno ? strerror(errno) : "libmicrohttpd refused the options");
		query_engine_free(srv->qe);
		free(srv);
		return MP_E_IO;
	}
	di = MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_BIND_PORT);
	srv->port = di ? di->port : (uint16_t)cfg->port;
	*out = srv;
	return MP_OK;
}

uint16_t http_server_port(const struct http_server *srv)
{
	return srv->port;
}

int http_server_stop(struct http_server *srv, int drain_ms)
{
	MHD_socket ls;
	int left, waited = 0, grace;

	if (!srv)
		return 0;
	ls = MHD_quiesce_daemon(srv->d);
	if (ls != MHD_INVALID_SOCKET)
		close(ls);
	/* Every request already received is answered normally, however long
	 * its commit takes (bounded by DRAIN_MS); answers now carry
	 * Connection: close so keep-alive clients go away.  Only once nothing is
	 * in flight are new requests on still-open connections refused (503,
	 * not acknowledged): MHD_stop_daemon() must not meet a suspended one. */
	pthread_mutex_lock(&srv->mu);
	srv->draining = 1;
	pthread_mutex_unlock(&srv->mu);
	for (;;) {
		pthread_mutex_lock(&srv->mu);
		left = srv->in_flight;
		if (left == 0)
			srv->stopping = 1;
		pthread_mutex_unlock(&srv->mu);
		if (left == 0 || waited >= drain_ms)
			break;
		usleep(5000);
		waited += 5;
	}
	/* let clients that were told Connection: close hang up by themselves */
	for (grace = 0; grace < 500; grace += 5) {
		const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);

		if (!di || di->num_connections == 0)
			break;
		usleep(5000);
	}
	pthread_mutex_lock(&srv->mu);
	left = srv->in_flight;
	pthread_mutex_unlock(&srv->mu);
	MHD_stop_daemon(srv->d);
	query_engine_free(srv->qe);
	pthread_mutex_destroy(&srv->mu);
	free(srv);
	return left;
}
