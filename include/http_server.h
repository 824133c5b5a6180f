/*
 * http_server.h - the HTTP front end (libmicrohttpd).
 *
 * Routes (path only; a trailing '/' is ignored; see docs/API.md):
 *   /track /engage /groups /import   GET, POST     ingestion (token in payload;
 *                                                  /import: API secret, HTTP Basic)
 *   /decide                          GET           legacy SDK config (harmless JSON)
 *   /api/2.0/export, /api/query/export   GET       raw export (API secret)
 *   /healthz                         GET           JSON: version, uptime, event counts
 *   OPTIONS on any path              CORS preflight
 *
 * Threads: a pool of cfg->threads polling threads decodes and validates
 * requests in parallel; an ingestion request is then suspended while the
 * project's store writer commits it, and resumed to answer.  So a request is
 * acknowledged only after its data is committed.
 *
 * Lifecycle: http_server_start() returns once the socket listens.
 * http_server_stop() stops accepting, waits (up to DRAIN_MS) for requests in
 * flight to be answered, then closes every connection.
 */
#ifndef MP_HTTP_SERVER_H
#define MP_HTTP_SERVER_H

#include <stdint.h>
#include "config.h"
#include "err.h"
#include "store.h"

#define MIXPANELD_VERSION "0.1.0"

struct http_server;

/* Start listening on cfg->bind:cfg->port (port 0 picks a free port).
 * CFG and ST must outlive the server.  Returns MP_OK or MP_E_IO/MP_E_CONFIG
 * with a message in ERR. */
enum mp_err http_server_start(const struct config *cfg, struct store *st,
			      struct http_server **out, char *err, size_t errlen);

/* The port actually bound. */
uint16_t http_server_port(const struct http_server *srv);

/* Stop accepting, drain in-flight requests for at most DRAIN_MS, stop.
 * NULL-safe.  Returns the number of requests still in flight at the deadline. */
int http_server_stop(struct http_server *srv, int drain_ms);

#endif
