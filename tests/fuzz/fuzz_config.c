/*
 * fuzz_config.c - libFuzzer target for config_parse() (src/config.c).
 *
 * Feeds the raw bytes (not NUL-terminated, may hold NULs) to config_parse()
 * and checks the contract of include/config.h instead of only "no crash":
 *   success: at least one project; every project has a name, token, secret,
 *            time zone and an id >= 1; ids and tokens are unique and the token
 *            lookup finds each project; server limits are in range; the TLS
 *            paths and PEM texts are all set or all NULL.
 *   failure: *out untouched; the message is a non-empty string with ':'
 *            (it starts with "FILE:" or "FILE:LINE:").
 * Any violation abort()s so libFuzzer records the input.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void fuzz_check_ok(const struct config *cfg)
{
	size_t i, j;

	if (cfg->n_projects < 1 || !cfg->projects)
		abort();
	if (!cfg->bind || !cfg->data_dir)
		abort();
	if (cfg->port < 1 || cfg->port > 65535 || cfg->threads < 1 || cfg->threads > 256)
		abort();
	if (cfg->max_body_bytes < 1024 || cfg->max_body_bytes > 1073741824)
		abort();
	if (cfg->max_events_per_request < 1 || cfg->track_max_age_days < 0)
		abort();
	if (!cfg->tls_cert != !cfg->tls_key || !cfg->tls_cert != !cfg->tls_cert_pem ||
	    !cfg->tls_key != !cfg->tls_key_pem)
		abort();
	for (i = 0; i < cfg->n_projects; i++) {
		const struct config_project *p = &cfg->projects[i];

		if (!p->name || !p->token || !p->api_secret || !p->timezone || p->id < 1)
			abort();
		for (j = 0; j < i; j++)
			if (cfg->projects[j].id == p->id || strcmp(cfg->projects[j].token, p->token) == 0 ||
			    strcmp(cfg->projects[j].name, p->name) == 0)
				abort();
		if (config_project_by_token(cfg, p->token) != p || config_project_by_id(cfg, p->id) != p ||
		    config_project_by_name(cfg, p->name) != p)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config sentinel, *cfg = &sentinel;
	char err[256];
	char *copy;
	enum mp_err rc;

	/* An exact-size heap copy lets ASan catch any read past SIZE. */
	copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	if (size)
		memcpy(copy, data, size);
	memset(err, 'X', sizeof err);
	rc = config_parse(copy, size, "fuzz.ini", &cfg, err, sizeof err);
	if (rc == MP_OK) {
		if (cfg == &sentinel || !cfg)
			abort();
		fuzz_check_ok(cfg);
		config_free(cfg);
	} else {
		if (cfg != &sentinel)
			abort();
		if (!memchr(err, '\0', sizeof err) || err[0] == '\0' || !strchr(err, ':'))
			abort();
		if (rc != MP_E_CONFIG && rc != MP_E_IO && rc != MP_E_NOMEM)
			abort();
	}
	free(copy);
	return 0;
}
