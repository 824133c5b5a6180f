/*
 * http_reply.c - the bodies and statuses of every answer (see
 * include/http_reply.h and the spec §4, §6.2, §5.3, §10.1).
 *
 * Only this module maps an outcome to a status code and an error body.
 */
#include "http_reply.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* 1x1 transparent GIF for img=1 */
static const unsigned char http_pixel[] = {
	0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
	0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
	0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b
};

static void http_reply_init(struct http_reply *rep, int status, const char *ctype)
{
	memset(rep, 0, sizeof *rep);
	rep->status = status;
	rep->content_type = ctype;
	buf_init(&rep->body, (size_t)64 << 20);
}

void http_reply_json(struct http_reply *rep, int status, struct buf *body)
{
	http_reply_init(rep, status, "application/json");
	buf_free(&rep->body);
	rep->body = *body;
	buf_init(body, body->max);
}

void http_reply_free(struct http_reply *rep)
{
	buf_free(&rep->body);
}

void http_reply_header(struct http_reply *rep, const char *name, const char *value)
{
	if (rep->n_headers >= HTTP_REPLY_MAX_HEADERS)
		return;
	snprintf(rep->headers[rep->n_headers][0], 128, "%s", name);
	snprintf(rep->headers[rep->n_headers][1], 128, "%s", value);
	rep->n_headers++;
}

/* Append, ignoring failure: a reply that cannot be built in memory is sent
 * truncated rather than not at all (only under OOM). */
#define PUT(...) do { if (buf_printf(&rep->body, __VA_ARGS__) != MP_OK) return; } while (0)
#define PUTSTR(s) do { if (buf_json_str(&rep->body, (s), strlen(s)) != MP_OK) return; } while (0)

static const char *http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 413: return "Request Entity Too Large";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Error";
	}
}

void http_reply_error(struct http_reply *rep, int status, const char *msg, const char *request)
{
	http_reply_init(rep, status, "application/json");
	if (status == 413 || status == 429) {
		PUT("{\"code\":%d,\"error\":", status);
		PUTSTR(msg);
		PUT(",\"status\":\"%s\"}", http_reason(status));
	} else {
		PUT("{\"error\":");
		PUTSTR(msg);
		PUT(",\"request\":");
		PUTSTR(request ? request : "");
		PUT(",\"status\":\"error\"}");
	}
	if (status == 503 || status == 429)
		http_reply_header(rep, "Retry-After", "1");
}

void http_reply_import_unauthorized(struct http_reply *rep)
{
	http_reply_init(rep, 401, "application/json");
	PUT("{\"code\":401,\"error\":\"Invalid credentials\",\"status\":\"Unauthorized\"}");
	http_reply_header(rep, "WWW-Authenticate", "Basic realm=\"mixpanel\"");
}

void http_reply_preflight(struct http_reply *rep, const char *request_headers)
{
	http_reply_init(rep, 204, "text/plain");
	http_reply_header(rep, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
	http_reply_header(rep, "Access-Control-Allow-Headers",
			  request_headers && request_headers[0] && strlen(request_headers) < 128
			  ? request_headers : "Authorization, Content-Type, Content-Encoding, traceparent");
	http_reply_header(rep, "Access-Control-Max-Age", "86400");
}

void http_reply_decide(struct http_reply *rep)
{
	http_reply_init(rep, 200, "application/json");
	PUT("{\"notifications\":[],\"surveys\":[],\"variants\":[],\"event_bindings\":[],"
	    "\"integrations\":[],\"automatic_events\":false,\"config\":{\"enable_collect_everything\":false}}");
}

void http_reply_healthz(struct http_reply *rep, const struct config *cfg, const int64_t *event_counts,
			const char *const *problems, long long uptime_s, const char *version)
{
	size_t i;
	int ok = 1;

	for (i = 0; problems && i < cfg->n_projects; i++)
		if (problems[i])
			ok = 0;
	http_reply_init(rep, ok ? 200 : 503, "application/json");
	PUT("{\"status\":\"%s\",\"version\":", ok ? "ok" : "degraded");
	PUTSTR(version);
	PUT(",\"uptime_s\":%lld,\"projects\":{", uptime_s);
	for (i = 0; i < cfg->n_projects; i++) {
		PUT("%s", i ? "," : "");
		PUTSTR(cfg->projects[i].name);
		PUT(":{\"id\":%ld,\"events\":%lld", cfg->projects[i].id, (long long)event_counts[i]);
		if (problems && problems[i]) {
			PUT(",\"error\":");
			PUTSTR(problems[i]);
		}
		PUT("}");
	}
	PUT("}}");
}

/* The classic 1/0 (or verbose, JSONP, pixel) answer. */
/* A JSONP callback must be a plain (dotted) JavaScript identifier: anything
 * else would let a request inject script into our answer. */
static int http_reply_callback_ok(const char *cb)
{
	size_t i, n;

	if (!cb || !cb[0] || (n = strlen(cb)) > 64)
		return 0;
	for (i = 0; i < n; i++) {
		char c = cb[i];
		int alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c == '$';

		if (!alpha && !(i > 0 && ((c >= '0' && c <= '9') || (c == '.' && cb[i - 1] != '.'))))
			return 0;
	}
	return cb[n - 1] != '.';
}

static void http_reply_classic(struct http_reply *rep, const struct http_ingest_outcome *o,
			       int status, int ok, const char *error)
{
	int js = http_reply_callback_ok(o->callback);

	if (o->img && !js) {
		http_reply_init(rep, status, "image/gif");
		if (buf_append(&rep->body, http_pixel, sizeof http_pixel) != MP_OK)
			return;
		return;
	}
	http_reply_init(rep, status, js ? "text/javascript" : o->verbose ? "application/json" : "text/plain");
	if (js)
		PUT("%s(", o->callback);
	if (o->verbose) {
		PUT("{\"status\":%d,\"error\":", ok ? 1 : 0);
		if (ok || !error)
			PUT("null");
		else
			PUTSTR(error);
		PUT("}");
	} else {
		PUT("%d", ok ? 1 : 0);
	}
	if (js)
		PUT(")");
}

static void http_reply_strict(struct http_reply *rep, const struct http_ingest_outcome *o)
{
	const struct ingest_result *ing = o->ing;
	size_t i, imported = ing->n_valid;

	if (!ing->n_failures) {
		http_reply_init(rep, 200, "application/json");
		PUT("{\"code\":200,\"num_records_imported\":%zu,\"status\":\"OK\"}", imported);
		return;
	}
	http_reply_init(rep, 400, "application/json");
	PUT("{\"code\":400,\"error\":\"some data points in the request failed validation\","
	    "\"num_records_imported\":%zu,\"status\":\"Bad Request\",\"failed_records\":[", imported);
	for (i = 0; i < ing->n_failures; i++) {
		const struct ingest_failure *f = &ing->failures[i];

		PUT("%s{\"index\":%zu", i ? "," : "", f->index);
		if (f->insert_id) {
			PUT(",\"$insert_id\":");
			PUTSTR(f->insert_id);
			PUT(",\"insert_id\":");
			PUTSTR(f->insert_id);
		}
		if (f->distinct_id) {
			PUT(",\"$distinct_id\":");
			PUTSTR(f->distinct_id);
		}
		PUT(",\"field\":");
		PUTSTR(f->field);
		PUT(",\"message\":");
		PUTSTR(f->message);
		PUT("}");
	}
	PUT("]}");
}

void http_reply_ingest(struct http_reply *rep, const struct http_ingest_outcome *o)
{
	if (o->decode_rc != MP_OK) {
		const char *why = o->decode_err && o->decode_err[0] ? o->decode_err : mp_strerror(o->decode_rc);

		if (o->strict_shape) {
			http_reply_init(rep, 400, "application/json");
			PUT("{\"code\":400,\"error\":");
			PUTSTR(why);
			PUT(",\"num_records_imported\":0,\"status\":\"Bad Request\"}");
			return;
		}
		/* never a 4xx for bad data on the classic endpoints (spec pitfall 9) */
		http_reply_classic(rep, o, 200, 0, why);
		return;
	}
	if (o->store_rc != MP_OK) {
		const char *why = o->store_err && o->store_err[0] ? o->store_err : mp_strerror(o->store_rc);

		if (o->strict_shape) {
			http_reply_init(rep, 503, "application/json");
			PUT("{\"code\":503,\"error\":");
			PUTSTR(why);
			PUT(",\"status\":\"Service Unavailable\"}");
		} else {
			struct http_ingest_outcome v = *o;

			v.verbose = 1;   /* a 5xx carries its reason */
			v.img = 0;
			v.callback = NULL;
			http_reply_classic(rep, &v, 503, 0, why);
		}
		http_reply_header(rep, "Retry-After", "1");
		return;
	}
	if (o->strict_shape) {
		http_reply_strict(rep, o);
		return;
	}
	if (!o->ing->n_records) {
		http_reply_classic(rep, o, 200, 0, "data, missing or empty");
		return;
	}
	http_reply_classic(rep, o, 200, o->ing->n_valid > 0, o->ing->first_error);
}

int http_parse_date(const char *s, int64_t *ms)
{
	struct tm tm;
	int y, m, d;
	char tail;

	static const char shape[] = "dddd-dd-dd";
	size_t i;

	if (strlen(s) != 10)
		return -1;
	for (i = 0; i < 10; i++)
		if (shape[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != '-')
			return -1;
	if (sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3)
		return -1;
	if (y < 1971 || y > 9999 || m < 1 || m > 12 || d < 1 || d > 31)
		return -1;
	memset(&tm, 0, sizeof tm);
	tm.tm_year = y - 1900;
	tm.tm_mon = m - 1;
	tm.tm_mday = d;
	*ms = (int64_t)timegm(&tm) * 1000;
	/* reject dates that normalise elsewhere (2024-02-30) */
	{
		time_t t = (time_t)(*ms / 1000);
		struct tm back;

		gmtime_r(&t, &back);
		if (back.tm_mday != d || back.tm_mon != m - 1)
			return -1;
	}
	return 0;
}
