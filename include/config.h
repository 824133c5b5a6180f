/*
 * config.h - the INI configuration of mixpaneld.
 *
 * Grammar (one construct per line, '#' or ';' starts a comment line):
 *     [section]            or  [project.NAME]
 *     key = value          value is trimmed; optional surrounding "double quotes" are removed
 * Blank lines are ignored.  Unknown sections, unknown keys, duplicate keys,
 * duplicate projects (by name, id or token) and bad values are errors; the
 * error text names the file, the line and the key ("FILE:LINE: key 'x': ...").
 *
 * Contract (documented for users in docs/CONFIG.md):
 *   [server]  bind (IPv4/IPv6 literal or "localhost", default 127.0.0.1)
 *             port (1..65535, default 8080)
 *             threads (1..256, default 4)
 *             max_body_bytes (1024..1073741824, default 10485760; also caps a
 *                             gzip body after inflating)
 *             max_events_per_request (1..100000, default 2000)
 *             track_max_age_days (0..36500, default 5; 0 = no age limit on /track)
 *             trust_proxy (true|false, default false: take the client IP from
 *                          the first X-Forwarded-For address)
 *             tls_cert, tls_key (PEM file paths; both or neither; files are
 *                                read at load time and must exist)
 *             path_prefix (default empty; e.g. "/mp": every route is also
 *                          answered under the prefix, for SDKs whose host
 *                          setting carries a path, spec pitfall 7)
 *   [storage] data_dir (default ./data), shard_period (month|day, default month),
 *             sync (normal|full, default normal)
 *   [project.NAME]  NAME is [A-Za-z0-9_-]{1,64}; id (1..2^31-1, required),
 *             token (required, unique), api_secret (required),
 *             timezone (default UTC; "UTC" or a name under /usr/share/zoneinfo)
 *             identity (simplified|original, default simplified: Mixpanel's ID
 *                       merge system; simplified derives distinct_id from
 *                       $user_id / $device_id on every event, spec §9.1)
 *             group_keys (comma-separated event property names that name groups,
 *                       e.g. "company, team"; reports take data_group_id = the
 *                       1-based position or the key itself)
 *   At least one project is required.
 *
 * Ownership: config_load()/config_parse() return a config that the caller
 * frees with config_free().  All strings inside are owned by the config.
 */
#ifndef MP_CONFIG_H
#define MP_CONFIG_H

#include <stddef.h>
#include "err.h"

enum config_shard_period { CONFIG_SHARD_MONTH = 0, CONFIG_SHARD_DAY = 1 };
enum config_sync { CONFIG_SYNC_NORMAL = 0, CONFIG_SYNC_FULL = 1 };
enum config_identity { CONFIG_IDENTITY_SIMPLIFIED = 0, CONFIG_IDENTITY_ORIGINAL = 1 };

struct config_project {
	char *name;
	long id;
	char *token;
	char *api_secret;
	char *timezone;
	enum config_identity identity;
	char **group_keys;         /* group_keys: event properties naming groups; data_group_id
				      N (1-based) is group_keys[N-1] */
	size_t n_group_keys;
};

/* [service_account.NAME]: HTTP Basic username:secret for the query, export
 * and import APIs of the projects it is granted (with project_id). */
struct config_service_account {
	char *name;
	char *username;
	char *secret;
	char **projects;           /* project names, each one configured */
	size_t n_projects;
};

struct config {
	/* [server] */
	char *bind;
	int port;
	int threads;
	size_t max_body_bytes;
	int max_events_per_request;
	int track_max_age_days;
	int trust_proxy;
	char *path_prefix;  /* NULL or "" = none */
	char *tls_cert;     /* path or NULL */
	char *tls_key;      /* path or NULL */
	char *tls_cert_pem; /* file contents, NUL-terminated, or NULL */
	char *tls_key_pem;
	/* [storage] */
	char *data_dir;
	enum config_shard_period shard_period;
	enum config_sync sync;
	/* [project.*], in file order */
	struct config_project *projects;
	size_t n_projects;
	struct config_service_account *accounts;
	size_t n_accounts;
};

/* Parse TEXT (LEN bytes, need not be NUL-terminated).  FILENAME is used in
 * messages only.  On error returns MP_E_CONFIG (or MP_E_NOMEM / MP_E_IO for
 * TLS files) with a message in ERR; *OUT is untouched. */
enum mp_err config_parse(const char *text, size_t len, const char *filename,
			 struct config **out, char *err, size_t errlen);

/* Read PATH and parse it as config_parse() does. */
enum mp_err config_load(const char *path, struct config **out, char *err, size_t errlen);

/* NULL-safe. */
void config_free(struct config *cfg);

/* Lookups; return a borrowed pointer or NULL. */
const struct config_project *config_project_by_name(const struct config *cfg, const char *name);
const struct config_project *config_project_by_token(const struct config *cfg, const char *token);
const struct config_project *config_project_by_id(const struct config *cfg, long id);

/* The account with USERNAME (compared in constant time), or NULL. */
const struct config_service_account *config_account_by_username(const struct config *cfg,
								  const char *username, size_t len);

/* 1 if account A may read project P. */
int config_account_grants(const struct config_service_account *a, const struct config_project *p);

#endif
