/*
 * query.h - the query API (reports over stored events), called by the HTTP
 * front end for /api/2.0/<endpoint> and /api/query/<endpoint>.
 *
 * Semantics of every report: docs/QUERIES.md; parameters and compatibility:
 * docs/API.md.  The front end authenticates and picks the project; this
 * module validates parameters, runs the report over the project's columnar
 * projection (colstore.h) and writes the JSON answer.
 *
 * Thread-safety: query_run may be called from any number of threads at once.
 */
#ifndef MP_QUERY_H
#define MP_QUERY_H

#include <stddef.h>
#include "buf.h"
#include "config.h"
#include "err.h"
#include "store.h"

struct query_engine;

struct query_request {
	const struct config_project *project;
	const char *endpoint;      /* "segmentation", "funnels/create", ... (no slashes around) */
	const char *method;        /* "GET" / "POST" */
	/* parameter NAME from the query string or the form body, or NULL */
	const char *(*param)(void *ctx, const char *name);
	void *param_ctx;
	const char *body;          /* raw request body (POST), may be NULL */
	size_t body_len;
	const char *request;       /* "path?query", echoed in error bodies */
};

/* One engine per server: a projection and a time zone per project. */
enum mp_err query_engine_open(const struct config *cfg, struct store *st, struct query_engine **out,
			      char *err, size_t errlen);
void query_engine_free(struct query_engine *qe); /* NULL-safe */

/* 1 if ENDPOINT names a report this module answers. */
int query_endpoint_known(const char *endpoint);

/* Canonical ids for the export of project P (store_export_set_resolver):
 * *OUT is NULL when nothing in the project is merged (no resolver needed). */
struct query_resolver;
enum mp_err query_resolver_open(struct query_engine *qe, const struct config_project *p,
				struct query_resolver **out);
const char *query_resolve(void *ctx, const char *did, size_t n, size_t *len);
void query_resolver_free(struct query_resolver *r); /* NULL-safe */

/* Run the report; the JSON answer (or Mixpanel's error body) is appended to
 * OUT.  Returns the HTTP status. */
int query_run(struct query_engine *qe, const struct query_request *rq, struct buf *out);

#endif
