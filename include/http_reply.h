/*
 * http_reply.h - every HTTP answer mixpaneld gives, built without MHD types
 * so that the byte-exact bodies Mixpanel's clients check are unit-tested:
 *   ingestion: "1" / "0", verbose {"status":1,"error":null}, JSONP, pixel,
 *              strict import JSON with failed_records (spec §4, §6.2)
 *   errors:    {"error":"...","request":"...","status":"error"} (query/export),
 *              {"code":413,"error":"...","status":"Request Entity Too Large"}
 *   /import 401, CORS preflight, /decide, /healthz.
 * Ownership: a filled struct http_reply owns its body; http_reply_free().
 */
#ifndef MP_HTTP_REPLY_H
#define MP_HTTP_REPLY_H

#include <stdint.h>
#include "buf.h"
#include "config.h"
#include "err.h"
#include "ingest.h"

#define HTTP_REPLY_MAX_HEADERS 8

struct http_reply {
	int status;
	const char *content_type;   /* static string */
	struct buf body;
	char headers[HTTP_REPLY_MAX_HEADERS][2][128];
	size_t n_headers;
};

/* What the ingestion answer depends on. */
struct http_ingest_outcome {
	int endpoint_import;        /* /import */
	int strict_shape;           /* answer with the strict JSON (modern /import, strict=1) */
	int verbose;                /* verbose=1 */
	const char *callback;       /* JSONP function name or NULL; ignored unless it is a
				       (dotted) identifier of at most 64 characters */
	int img;                    /* img=1 */
	enum mp_err decode_rc;      /* MP_OK, or why the payload could not be decoded / too many records */
	const char *decode_err;
	const struct ingest_result *ing;
	enum mp_err store_rc;       /* the commit's outcome */
	const char *store_err;
};

void http_reply_free(struct http_reply *rep);
/* A JSON answer whose body is BODY (taken over; BODY is left empty). */
void http_reply_json(struct http_reply *rep, int status, struct buf *body);
void http_reply_header(struct http_reply *rep, const char *name, const char *value);

void http_reply_ingest(struct http_reply *rep, const struct http_ingest_outcome *o);
void http_reply_error(struct http_reply *rep, int status, const char *msg, const char *request);
void http_reply_import_unauthorized(struct http_reply *rep);
void http_reply_preflight(struct http_reply *rep, const char *request_headers);
void http_reply_decide(struct http_reply *rep);
/* 200 {"status":"ok",...}, or 503 {"status":"degraded",...} when a project
 * has a problem (PROBLEMS[i] non-NULL: its last commit failed, say why). */
void http_reply_healthz(struct http_reply *rep, const struct config *cfg, const int64_t *event_counts,
			const char *const *problems, long long uptime_s, const char *version);

/* "YYYY-MM-DD" -> ms of its 00:00:00 UTC; returns 0 on success, -1 if invalid. */
int http_parse_date(const char *s, int64_t *ms);

#endif
