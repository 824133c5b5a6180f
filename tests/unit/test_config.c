/*
 * test_config.c - unit tests for src/config.c (contract: include/config.h).
 *
 * Every error case checks the return code, that *out was left alone, and
 * that the message names the file, the line and the key (or section).  The
 * example config is loaded from the repository top level, so run this
 * binary from the repository root.
 */
#include "config.h"
#include "testlib.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILE_NAME "t.ini"
/* The smallest valid project section, used as a suffix or prefix. */
#define PROJ "[project.p]\nid = 1\ntoken = t\napi_secret = s\n"

/* Parse TEXT expecting success; prints the message when it fails. */
static struct config *parse_ok_at(const char *text, int caller)
{
	char err[512] = "";
	struct config *cfg = NULL;
	enum mp_err rc = config_parse(text, strlen(text), FILE_NAME, &cfg, err, sizeof err);

	if (rc != MP_OK || !cfg) {
		fprintf(stderr, "%s:%d: unexpected parse error %d: %s\n", __FILE__, caller, (int)rc, err);
		tl_cur_failed = 1;
		return NULL;
	}
	return cfg;
}
#define PARSE_OK(text) parse_ok_at((text), __LINE__)

/* Parse TEXT expecting code RC and a message that contains "t.ini:LINE: "
 * and NEEDLE (the key or section, usually); *out must stay untouched. */
static void parse_err_at(const char *text, enum mp_err want, int line, const char *needle, int caller)
{
	char err[512] = "", prefix[64];
	struct config sentinel, *cfg = &sentinel;
	enum mp_err rc = config_parse(text, strlen(text), FILE_NAME, &cfg, err, sizeof err);

	snprintf(prefix, sizeof prefix, "%s:%d: ", FILE_NAME, line);
	if (rc != want || cfg != &sentinel || strncmp(err, prefix, strlen(prefix)) != 0 ||
	    (needle && !strstr(err, needle))) {
		fprintf(stderr, "%s:%d: expected error %d at '%s' with '%s', got %d: '%s'%s\n", __FILE__,
			caller, (int)want, prefix, needle ? needle : "", (int)rc, err,
			cfg != &sentinel ? " (and *out was written)" : "");
		tl_cur_failed = 1;
		if (rc == MP_OK && cfg != &sentinel)
			config_free(cfg);
	}
}
#define PARSE_ERR(text, line, needle) parse_err_at((text), MP_E_CONFIG, (line), (needle), __LINE__)

/* One [server] key on line 2 followed by a project; expect an error at line 2. */
static void server_bad(const char *kv, const char *needle, int caller)
{
	char text[1024];

	snprintf(text, sizeof text, "[server]\n%s\n" PROJ, kv);
	parse_err_at(text, MP_E_CONFIG, 2, needle, caller);
}
#define SERVER_BAD(kv, needle) server_bad((kv), (needle), __LINE__)

static struct config *server_ok_at(const char *kv, int caller)
{
	char text[1024];

	snprintf(text, sizeof text, "[server]\n%s\n" PROJ, kv);
	return parse_ok_at(text, caller);
}
#define SERVER_OK(kv) server_ok_at((kv), __LINE__)

static int file_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Write TEXT to a new temp file; returns its path in PATH. */
static int write_temp(char *path, size_t pathlen, const char *text)
{
	int fd;
	size_t n = strlen(text);

	snprintf(path, pathlen, "/tmp/test_config_XXXXXX");
	fd = mkstemp(path);
	if (fd < 0)
		return -1;
	if (write(fd, text, n) != (ssize_t)n) {
		close(fd);
		return -1;
	}
	return close(fd);
}

/* ---- values ------------------------------------------------------------ */

static void test_defaults(void)
{
	struct config *cfg = PARSE_OK(PROJ);

	if (!cfg)
		return;
	CHECK_STR(cfg->bind, "127.0.0.1");
	CHECK_INT(cfg->port, 8080);
	CHECK_INT(cfg->threads, 4);
	CHECK_INT(cfg->max_body_bytes, 10485760);
	CHECK_INT(cfg->max_events_per_request, 2000);
	CHECK_INT(cfg->track_max_age_days, 5);
	CHECK_INT(cfg->trust_proxy, 0);
	CHECK(cfg->tls_cert == NULL && cfg->tls_key == NULL);
	CHECK(cfg->tls_cert_pem == NULL && cfg->tls_key_pem == NULL);
	CHECK_STR(cfg->data_dir, "./data");
	CHECK_INT(cfg->shard_period, CONFIG_SHARD_MONTH);
	CHECK_INT(cfg->sync, CONFIG_SYNC_NORMAL);
	CHECK_INT(cfg->n_projects, 1);
	CHECK_STR(cfg->projects[0].name, "p");
	CHECK_INT(cfg->projects[0].id, 1);
	CHECK_STR(cfg->projects[0].token, "t");
	CHECK_STR(cfg->projects[0].api_secret, "s");
	CHECK_STR(cfg->projects[0].timezone, "UTC");
	config_free(cfg);
}

static void test_every_key(void)
{
	const char *tz = file_exists("/usr/share/zoneinfo/Europe/Paris") ? "Europe/Paris" : "UTC";
	char text[2048];
	struct config *cfg;

	snprintf(text, sizeof text,
		 "[server]\n"
		 "bind = ::1\n"
		 "port = 443\n"
		 "threads = 16\n"
		 "max_body_bytes = 2m\n"
		 "max_events_per_request = 500\n"
		 "track_max_age_days = 0\n"
		 "trust_proxy = yes\n"
		 "[storage]\n"
		 "data_dir = /var/lib/mixpaneld\n"
		 "shard_period = day\n"
		 "sync = full\n"
		 "[project.shop-eu_2]\n"
		 "id = 2147483647\n"
		 "token = 0123abcd\n"
		 "api_secret = s3cr3t\n"
		 "timezone = %s\n", tz);
	cfg = PARSE_OK(text);
	if (!cfg)
		return;
	CHECK_STR(cfg->bind, "::1");
	CHECK_INT(cfg->port, 443);
	CHECK_INT(cfg->threads, 16);
	CHECK_INT(cfg->max_body_bytes, 2 * 1024 * 1024);
	CHECK_INT(cfg->max_events_per_request, 500);
	CHECK_INT(cfg->track_max_age_days, 0);
	CHECK_INT(cfg->trust_proxy, 1);
	CHECK_STR(cfg->data_dir, "/var/lib/mixpaneld");
	CHECK_INT(cfg->shard_period, CONFIG_SHARD_DAY);
	CHECK_INT(cfg->sync, CONFIG_SYNC_FULL);
	CHECK_INT(cfg->n_projects, 1);
	CHECK_STR(cfg->projects[0].name, "shop-eu_2");
	CHECK_INT(cfg->projects[0].id, 2147483647L);
	CHECK_STR(cfg->projects[0].token, "0123abcd");
	CHECK_STR(cfg->projects[0].api_secret, "s3cr3t");
	CHECK_STR(cfg->projects[0].timezone, tz);
	config_free(cfg);
}

static void test_booleans(void)
{
	static const struct { const char *text; int want; } cases[] = {
		{ "true", 1 }, { "false", 0 }, { "yes", 1 }, { "no", 0 },
		{ "1", 1 }, { "0", 0 }, { "on", 1 }, { "off", 0 }, { "TRUE", 1 }, { "Off", 0 },
	};
	char kv[64];
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct config *cfg;

		snprintf(kv, sizeof kv, "trust_proxy = %s", cases[i].text);
		cfg = SERVER_OK(kv);
		if (!cfg)
			continue;
		CHECK_INT(cfg->trust_proxy, cases[i].want);
		config_free(cfg);
	}
	SERVER_BAD("trust_proxy = maybe", "key 'trust_proxy'");
	SERVER_BAD("trust_proxy = 2", "key 'trust_proxy'");
	SERVER_BAD("trust_proxy =", "key 'trust_proxy'");
}

static void test_integer_ranges(void)
{
	struct config *cfg;

	cfg = SERVER_OK("port = 1");
	if (cfg) {
		CHECK_INT(cfg->port, 1);
		config_free(cfg);
	}
	cfg = SERVER_OK("port = 65535");
	if (cfg) {
		CHECK_INT(cfg->port, 65535);
		config_free(cfg);
	}
	cfg = SERVER_OK("threads = 256");
	if (cfg) {
		CHECK_INT(cfg->threads, 256);
		config_free(cfg);
	}
	cfg = SERVER_OK("track_max_age_days = 36500");
	if (cfg) {
		CHECK_INT(cfg->track_max_age_days, 36500);
		config_free(cfg);
	}
	cfg = SERVER_OK("max_events_per_request = 100000");
	if (cfg) {
		CHECK_INT(cfg->max_events_per_request, 100000);
		config_free(cfg);
	}
	SERVER_BAD("port = 0", "key 'port': 0 is out of range (allowed 1..65535)");
	SERVER_BAD("port = 65536", "allowed 1..65535");
	SERVER_BAD("port = -1", "allowed 1..65535");
	SERVER_BAD("port = 80x", "key 'port': '80x' is not an integer");
	SERVER_BAD("port = 8 0", "key 'port'");
	SERVER_BAD("port = 0x50", "key 'port'");
	SERVER_BAD("port = +80", "key 'port'");
	SERVER_BAD("port = \" 80\"", "key 'port'");
	SERVER_BAD("port =", "key 'port'");
	SERVER_BAD("port = 99999999999999999999999", "key 'port'");
	SERVER_BAD("threads = 0", "key 'threads': 0 is out of range (allowed 1..256)");
	SERVER_BAD("threads = 257", "allowed 1..256");
	SERVER_BAD("max_events_per_request = 0", "key 'max_events_per_request'");
	SERVER_BAD("max_events_per_request = 100001", "allowed 1..100000");
	SERVER_BAD("track_max_age_days = -1", "key 'track_max_age_days'");
	SERVER_BAD("track_max_age_days = 36501", "allowed 0..36500");

	parse_err_at("[project.p]\nid = 0\ntoken = t\napi_secret = s\n", MP_E_CONFIG, 2,
		     "key 'id': 0 is out of range (allowed 1..2147483647)", __LINE__);
	PARSE_ERR("[project.p]\nid = 2147483648\ntoken = t\napi_secret = s\n", 2, "key 'id'");
	PARSE_ERR("[project.p]\nid = one\ntoken = t\napi_secret = s\n", 2, "key 'id'");
}

static void test_max_body_bytes(void)
{
	static const struct { const char *text; size_t want; } ok[] = {
		{ "1024", 1024 }, { "1k", 1024 }, { "1K", 1024 }, { "64k", 65536 },
		{ "10m", 10485760 }, { "10M", 10485760 }, { "1g", 1073741824 }, { "1G", 1073741824 },
		{ "1073741824", 1073741824 },
	};
	static const char *const bad[] = {
		"1023", "0", "-1k", "2g", "1073741825", "1048577k", "10x", "10kb", "k", "", "10 k",
		"99999999999999999999g", "9223372036854775807k",
	};
	char kv[128];
	size_t i;

	for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		struct config *cfg;

		snprintf(kv, sizeof kv, "max_body_bytes = %s", ok[i].text);
		cfg = SERVER_OK(kv);
		if (!cfg)
			continue;
		CHECK_INT(cfg->max_body_bytes, ok[i].want);
		config_free(cfg);
	}
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		snprintf(kv, sizeof kv, "max_body_bytes = %s", bad[i]);
		server_bad(kv, "key 'max_body_bytes'", __LINE__);
	}
	SERVER_BAD("max_body_bytes = 2g", "allowed 1024..1073741824");
}

static void test_bind(void)
{
	static const char *const ok[] = { "localhost", "0.0.0.0", "10.1.2.3", "::", "fe80::1" };
	static const char *const bad[] = { "example.com", "1.2.3", "256.1.1.1", "[::1]", "" };
	char kv[128];
	size_t i;

	for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		struct config *cfg;

		snprintf(kv, sizeof kv, "bind = %s", ok[i]);
		cfg = SERVER_OK(kv);
		if (!cfg)
			continue;
		CHECK_STR(cfg->bind, ok[i]);
		config_free(cfg);
	}
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		snprintf(kv, sizeof kv, "bind = %s", bad[i]);
		server_bad(kv, "key 'bind'", __LINE__);
	}
}

static void test_storage_values(void)
{
	struct config *cfg = PARSE_OK("[storage]\nshard_period = MONTH\nsync = normal\n" PROJ);

	if (cfg) {
		CHECK_INT(cfg->shard_period, CONFIG_SHARD_MONTH);
		CHECK_INT(cfg->sync, CONFIG_SYNC_NORMAL);
		config_free(cfg);
	}
	PARSE_ERR("[storage]\nshard_period = week\n" PROJ, 2, "key 'shard_period'");
	PARSE_ERR("[storage]\nsync = fast\n" PROJ, 2, "key 'sync'");
	PARSE_ERR("[storage]\ndata_dir =\n" PROJ, 2, "key 'data_dir'");
	PARSE_ERR("[storage]\ndata_dir = \"\"\n" PROJ, 2, "key 'data_dir'");
}

static void test_timezone(void)
{
	static const char *const bad[] = {
		"", "/etc/passwd", "../../../etc/passwd", "Europe/../UTC", "Nowhere/Atlantis",
		"Europe", "Bad Zone", "Europe/Paris\\x",
	};
	char text[512];
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		snprintf(text, sizeof text, "[project.p]\nid = 1\ntoken = t\napi_secret = s\ntimezone = %s\n",
			 bad[i]);
		parse_err_at(text, MP_E_CONFIG, 5, "key 'timezone'", __LINE__);
	}
	/* A regular file under zoneinfo that is not a zone is refused too. */
	if (file_exists("/usr/share/zoneinfo/zone.tab"))
		PARSE_ERR("[project.p]\nid = 1\ntoken = t\napi_secret = s\ntimezone = zone.tab\n", 5,
			  "key 'timezone'");
	if (file_exists("/usr/share/zoneinfo/America/New_York")) {
		struct config *cfg = PARSE_OK("[project.p]\nid = 1\ntoken = t\napi_secret = s\n"
					      "timezone = \"America/New_York\"\n");

		if (cfg) {
			CHECK_STR(cfg->projects[0].timezone, "America/New_York");
			config_free(cfg);
		}
	}
}

/* ---- syntax errors ----------------------------------------------------- */

static void test_section_errors(void)
{
	char text[512];

	PARSE_ERR("[foo]\n" PROJ, 1, "section '[foo]': unknown section");
	PARSE_ERR("[project]\n" PROJ, 1, "section '[project]'");
	PARSE_ERR("[project.]\nid = 1\n", 1, "section '[project.]'");
	PARSE_ERR(PROJ "[project.a b]\n", 5, "section '[project.a b]'");
	PARSE_ERR(PROJ "[project.a.b]\n", 5, "section '[project.a.b]'");
	PARSE_ERR(PROJ "[project.caf\xc3\xa9]\n", 5, "invalid project name");
	PARSE_ERR("[server\n" PROJ, 1, "section '[server'");
	PARSE_ERR("[server] # no trailing comments\n" PROJ, 1, "section '[server]");
	PARSE_ERR("[]\n" PROJ, 1, "section '[]'");
	/* 64 characters is the limit. */
	snprintf(text, sizeof text, "[project.%064d]\nid = 1\ntoken = t\napi_secret = s\n", 7);
	if (1) {
		struct config *cfg = PARSE_OK(text);

		config_free(cfg);
	}
	snprintf(text, sizeof text, "[project.%065d]\nid = 1\ntoken = t\napi_secret = s\n", 7);
	PARSE_ERR(text, 1, "invalid project name");
	/* Whitespace inside the brackets is allowed. */
	if (1) {
		struct config *cfg = PARSE_OK("[ server ]\nport = 81\n[ project.p ]\nid = 1\n"
					      "token = t\napi_secret = s\n");

		if (cfg) {
			CHECK_INT(cfg->port, 81);
			CHECK_STR(cfg->projects[0].name, "p");
			config_free(cfg);
		}
	}
}

static void test_duplicate_sections(void)
{
	PARSE_ERR("[server]\n[storage]\n[server]\n" PROJ, 3, "section '[server]': duplicate section (first at line 1)");
	PARSE_ERR("[storage]\n" PROJ "[storage]\n", 6, "section '[storage]': duplicate section");
	PARSE_ERR(PROJ "[project.p]\n", 5, "section '[project.p]': duplicate section (first at line 1)");
}

static void test_key_errors(void)
{
	PARSE_ERR("port = 80\n" PROJ, 1, "key 'port': not inside a section");
	PARSE_ERR("\n# c\nport = 80\n" PROJ, 3, "key 'port'");
	PARSE_ERR("[server]\nport 80\n" PROJ, 2, "key 'port 80': missing '='");
	PARSE_ERR("[server]\njunk\n" PROJ, 2, "key 'junk'");
	PARSE_ERR("[server]\n = 80\n" PROJ, 2, "missing key name");
	PARSE_ERR("[server]\nprot = 80\n" PROJ, 2, "key 'prot': unknown key in [server]");
	PARSE_ERR("[server]\nPort = 80\n" PROJ, 2, "key 'Port'");
	PARSE_ERR("[server]\ndata_dir = x\n" PROJ, 2, "key 'data_dir': unknown key in [server]");
	PARSE_ERR("[storage]\nport = 1\n" PROJ, 2, "key 'port': unknown key in [storage]");
	PARSE_ERR(PROJ "secret = x\n", 5, "key 'secret': unknown key in [project.p]");
	PARSE_ERR("[server]\nport = 80\nthreads = 2\nport = 81\n" PROJ, 4,
		  "key 'port': duplicate key (first set at line 2)");
	PARSE_ERR("[project.p]\nid = 1\ntoken = t\ntoken = u\napi_secret = s\n", 4,
		  "key 'token': duplicate key");
	PARSE_ERR("[project.p]\nid = 1\ntoken = t\napi_secret =\n", 4, "key 'api_secret'");
	PARSE_ERR("[project.p]\nid = 1\ntoken = \"\"\napi_secret = s\n", 3, "key 'token'");
	PARSE_ERR("[project.p]\nid = 1\ntoken = a\x01z\napi_secret = s\n", 3, "key 'token'");
	PARSE_ERR("[server]\ntls_cert =\n" PROJ, 2, "key 'tls_cert'");
}

static void test_project_errors(void)
{
	PARSE_ERR(PROJ "[project.q]\nid = 1\ntoken = u\napi_secret = s\n", 6,
		  "key 'id': duplicate project id 1 (already used by [project.p] at line 2)");
	PARSE_ERR(PROJ "[project.q]\nid = 2\ntoken = t\napi_secret = s\n", 7,
		  "key 'token': duplicate token (already used by [project.p] at line 3)");
	PARSE_ERR("[server]\n\n[project.p]\ntoken = t\napi_secret = s\n[storage]\n", 3,
		  "section '[project.p]': missing required key(s): id");
	PARSE_ERR("[project.p]\n", 1, "missing required key(s): id, token, api_secret");
	PARSE_ERR(PROJ "[project.q]\nid = 2\n", 5, "section '[project.q]': missing required key(s): token, api_secret");
	PARSE_ERR("[server]\nport = 80\n", 2, "at least one project is required");
	PARSE_ERR("# nothing\n\n", 2, "at least one project is required");
	PARSE_ERR("", 1, "at least one project is required");
}

static void test_line_errors(void)
{
	static const char nul_in_value[] = "[server]\nport = 8\0" "0\n" PROJ;
	char *text;
	size_t n;
	char err[256] = "";
	struct config *cfg = NULL;
	enum mp_err rc;

	/* A 4096-byte line is fine, 4097 is not (the "\r\n" does not count). */
	n = strlen(PROJ) + 4096 + 4 + 4097 + 2 + 1;
	text = malloc(n + 16);
	if (!text) {
		CHECK(0);
		return;
	}
	memcpy(text, PROJ, strlen(PROJ));
	n = strlen(PROJ);
	text[n++] = '#';
	memset(text + n, 'x', 4095);
	n += 4095;
	memcpy(text + n, "\r\n", 2);
	n += 2;
	rc = config_parse(text, n, FILE_NAME, &cfg, err, sizeof err);
	CHECK_INT(rc, MP_OK);
	config_free(cfg);
	cfg = NULL;
	text[n++] = '#';
	memset(text + n, 'y', 4096);
	n += 4096;
	rc = config_parse(text, n, FILE_NAME, &cfg, err, sizeof err);
	CHECK_INT(rc, MP_E_CONFIG);
	CHECK(cfg == NULL);
	CHECK(strstr(err, FILE_NAME ":6: line is longer than 4096 bytes") == err);
	free(text);

	/* NUL bytes anywhere, even in a comment. */
	rc = config_parse(PROJ "# a\0b\n", strlen(PROJ) + 6, FILE_NAME, &cfg, err, sizeof err);
	CHECK_INT(rc, MP_E_CONFIG);
	CHECK(cfg == NULL);
	CHECK(strstr(err, FILE_NAME ":5: ") == err && strstr(err, "NUL byte"));
	rc = config_parse(nul_in_value, sizeof nul_in_value - 1, FILE_NAME, &cfg, err, sizeof err);
	CHECK_INT(rc, MP_E_CONFIG);
	CHECK(strstr(err, FILE_NAME ":2: ") == err && strstr(err, "NUL byte"));
}

/* ---- layout ------------------------------------------------------------ */

static void test_crlf_bom_and_last_line(void)
{
	const char *text = "\xEF\xBB\xBF[server]\r\nport = 9000\r\n\r\n[project.p]\r\nid = 3\r\n"
			   "token = tok\r\napi_secret = sec\r\ntimezone = UTC";
	struct config *cfg = PARSE_OK(text);

	if (!cfg)
		return;
	CHECK_INT(cfg->port, 9000);
	CHECK_INT(cfg->projects[0].id, 3);
	CHECK_STR(cfg->projects[0].token, "tok");
	CHECK_STR(cfg->projects[0].api_secret, "sec");
	CHECK_STR(cfg->projects[0].timezone, "UTC");
	config_free(cfg);
	/* Line numbers still count CRLF lines. */
	PARSE_ERR("[server]\r\n\r\nbogus = 1\r\n" PROJ, 3, "key 'bogus'");
}

static void test_quotes_and_hash(void)
{
	struct config *cfg = PARSE_OK("[storage]\ndata_dir = \"/srv/my data\"\n"
				      "[project.p]\nid = \"7\"\n"
				      "token = \"  spaced  \"\n"
				      "api_secret = abc # not a comment ; really\n");

	if (!cfg)
		return;
	CHECK_STR(cfg->data_dir, "/srv/my data");
	CHECK_INT(cfg->projects[0].id, 7);
	CHECK_STR(cfg->projects[0].token, "  spaced  ");
	CHECK_STR(cfg->projects[0].api_secret, "abc # not a comment ; really");
	config_free(cfg);

	/* Only one pair is removed; a lone quote stays. */
	cfg = PARSE_OK("[project.p]\nid = 1\ntoken = \"\"x\"\"\napi_secret = \"\n");
	if (!cfg)
		return;
	CHECK_STR(cfg->projects[0].token, "\"x\"");
	CHECK_STR(cfg->projects[0].api_secret, "\"");
	config_free(cfg);

	/* '=' in a value is part of the value. */
	cfg = PARSE_OK("[project.p]\nid=1\ntoken=a=b\napi_secret==\n");
	if (!cfg)
		return;
	CHECK_STR(cfg->projects[0].token, "a=b");
	CHECK_STR(cfg->projects[0].api_secret, "=");
	config_free(cfg);
}

static void test_comments_and_blanks(void)
{
	struct config *cfg = PARSE_OK("# top\n; also a comment\n   \t\n  # indented\n[server]\n"
				      "\t; x = 1\n  port   =   81  \n" PROJ "# end\n");

	if (!cfg)
		return;
	CHECK_INT(cfg->port, 81);
	config_free(cfg);
}

static void test_not_nul_terminated(void)
{
	const char full[] = PROJ "[server]\nport = 1234\n";
	char err[256];
	struct config *cfg = NULL;
	/* Stop right after "port = 12": the rest of the buffer must not be read. */
	size_t len = strlen(PROJ) + strlen("[server]\nport = 12");
	char *copy = malloc(len);
	enum mp_err rc;

	if (!copy) {
		CHECK(0);
		return;
	}
	memcpy(copy, full, len);
	rc = config_parse(copy, len, FILE_NAME, &cfg, err, sizeof err);
	CHECK_INT(rc, MP_OK);
	if (cfg) {
		CHECK_INT(cfg->port, 12);
		config_free(cfg);
	}
	free(copy);
}

static void test_project_order_and_lookups(void)
{
	struct config *cfg = PARSE_OK("[project.b]\nid = 20\ntoken = tb\napi_secret = sb\n"
				      "[project.a]\nid = 10\ntoken = ta\napi_secret = sa\n"
				      "[project.c]\nid = 30\ntoken = tc\napi_secret = sc\n"
				      "[project.d]\nid = 40\ntoken = td\napi_secret = sd\n"
				      "[project.e]\nid = 50\ntoken = te\napi_secret = se\n");
	const struct config_project *p;

	if (!cfg)
		return;
	CHECK_INT(cfg->n_projects, 5);
	CHECK_STR(cfg->projects[0].name, "b");
	CHECK_STR(cfg->projects[1].name, "a");
	CHECK_STR(cfg->projects[4].name, "e");
	p = config_project_by_name(cfg, "a");
	CHECK(p == &cfg->projects[1]);
	p = config_project_by_token(cfg, "tc");
	CHECK(p && p->id == 30);
	p = config_project_by_id(cfg, 50);
	CHECK(p && strcmp(p->name, "e") == 0);
	CHECK(config_project_by_name(cfg, "z") == NULL);
	CHECK(config_project_by_name(cfg, "A") == NULL);
	CHECK(config_project_by_token(cfg, "sa") == NULL);
	CHECK(config_project_by_id(cfg, 0) == NULL);
	CHECK(config_project_by_id(cfg, 11) == NULL);
	CHECK(config_project_by_name(NULL, "a") == NULL);
	CHECK(config_project_by_token(NULL, "ta") == NULL);
	CHECK(config_project_by_id(NULL, 10) == NULL);
	CHECK(config_project_by_name(cfg, NULL) == NULL);
	CHECK(config_project_by_token(cfg, NULL) == NULL);
	config_free(cfg);
	config_free(NULL);
}

static void test_error_buffer(void)
{
	char small[12];
	struct config *cfg = NULL;
	enum mp_err rc;

	memset(small, 'Z', sizeof small);
	rc = config_parse("[foo]\n", 6, FILE_NAME, &cfg, small, sizeof small);
	CHECK_INT(rc, MP_E_CONFIG);
	CHECK(memchr(small, '\0', sizeof small) != NULL);
	CHECK(strncmp(small, FILE_NAME ":1: ", 9) == 0);
	CHECK_INT(strlen(small), sizeof small - 1);
	rc = config_parse("[foo]\n", 6, FILE_NAME, &cfg, NULL, 0);
	CHECK_INT(rc, MP_E_CONFIG);
	CHECK(cfg == NULL);
	rc = config_parse(PROJ, strlen(PROJ), NULL, &cfg, NULL, 0);
	CHECK_INT(rc, MP_OK);
	config_free(cfg);
}

/* ---- files ------------------------------------------------------------- */

static void test_tls_files(void)
{
	const char *cert_pem = "-----BEGIN CERTIFICATE-----\nMIIfake\n-----END CERTIFICATE-----\n";
	const char *key_pem = "-----BEGIN PRIVATE KEY-----\nMIIfake\n-----END PRIVATE KEY-----\n";
	char cert[64], key[64], empty[64], text[1024];
	struct config *cfg;

	if (write_temp(cert, sizeof cert, cert_pem) != 0 || write_temp(key, sizeof key, key_pem) != 0 ||
	    write_temp(empty, sizeof empty, "") != 0) {
		CHECK(0);
		return;
	}
	snprintf(text, sizeof text, "[server]\ntls_cert = %s\ntls_key = \"%s\"\n" PROJ, cert, key);
	cfg = PARSE_OK(text);
	if (cfg) {
		CHECK_STR(cfg->tls_cert, cert);
		CHECK_STR(cfg->tls_key, key);
		CHECK_STR(cfg->tls_cert_pem, cert_pem);
		CHECK_STR(cfg->tls_key_pem, key_pem);
		config_free(cfg);
	}

	/* Both or neither: the message points at the one that is set. */
	snprintf(text, sizeof text, "[server]\nport = 1\ntls_cert = %s\n" PROJ, cert);
	PARSE_ERR(text, 3, "key 'tls_cert': tls_key must be set too");
	snprintf(text, sizeof text, "[server]\ntls_key = %s\n" PROJ, key);
	PARSE_ERR(text, 2, "key 'tls_key': tls_cert must be set too");

	/* Unreadable files: MP_E_IO naming the key, its line and the path. */
	snprintf(text, sizeof text, "[server]\ntls_cert = /nonexistent/cert.pem\ntls_key = %s\n" PROJ, key);
	parse_err_at(text, MP_E_IO, 2, "key 'tls_cert': cannot read '/nonexistent/cert.pem'", __LINE__);
	snprintf(text, sizeof text, "[server]\ntls_cert = %s\n\ntls_key = /nonexistent/key.pem\n" PROJ, cert);
	parse_err_at(text, MP_E_IO, 4, "key 'tls_key': cannot read", __LINE__);
	snprintf(text, sizeof text, "[server]\ntls_cert = /tmp\ntls_key = %s\n" PROJ, key);
	PARSE_ERR(text, 2, "not a regular file");
	snprintf(text, sizeof text, "[server]\ntls_cert = %s\ntls_key = %s\n" PROJ, cert, empty);
	PARSE_ERR(text, 3, "key 'tls_key': file");
	unlink(cert);
	unlink(key);
	unlink(empty);
}

static void test_example_config(void)
{
	char err[512] = "";
	struct config *cfg = NULL;
	const struct config_project *p;
	enum mp_err rc = config_load("config.example.ini", &cfg, err, sizeof err);

	if (rc != MP_OK)
		fprintf(stderr, "config.example.ini: %s\n", err);
	CHECK_INT(rc, MP_OK);
	if (!cfg)
		return;
	CHECK_STR(cfg->bind, "127.0.0.1");
	CHECK_INT(cfg->port, 8080);
	CHECK_INT(cfg->threads, 4);
	CHECK_INT(cfg->max_body_bytes, 10485760);
	CHECK_INT(cfg->max_events_per_request, 2000);
	CHECK_INT(cfg->track_max_age_days, 5);
	CHECK_INT(cfg->trust_proxy, 0);
	CHECK(cfg->tls_cert == NULL && cfg->tls_key == NULL);
	CHECK_STR(cfg->data_dir, "./data");
	CHECK_INT(cfg->shard_period, CONFIG_SHARD_MONTH);
	CHECK_INT(cfg->sync, CONFIG_SYNC_NORMAL);
	CHECK_INT(cfg->n_projects, 1);
	p = config_project_by_name(cfg, "demo");
	CHECK(p != NULL);
	if (p) {
		CHECK_INT(p->id, 1);
		CHECK_STR(p->token, "demo-token");
		CHECK_STR(p->api_secret, "demo-secret");
		CHECK_STR(p->timezone, "UTC");
	}
	config_free(cfg);
}

static void test_load_errors(void)
{
	char path[64], err[512] = "";
	struct config sentinel, *cfg = &sentinel;
	enum mp_err rc = config_load("/nonexistent/mixpaneld.ini", &cfg, err, sizeof err);

	CHECK_INT(rc, MP_E_IO);
	CHECK(cfg == &sentinel);
	CHECK(strstr(err, "/nonexistent/mixpaneld.ini: ") == err);

	rc = config_load("/tmp", &cfg, err, sizeof err);
	CHECK_INT(rc, MP_E_CONFIG);
	CHECK(cfg == &sentinel);

	/* Parse errors from a file carry its path. */
	if (write_temp(path, sizeof path, "[server]\nport = 0\n" PROJ) != 0) {
		CHECK(0);
		return;
	}
	rc = config_load(path, &cfg, err, sizeof err);
	CHECK_INT(rc, MP_E_CONFIG);
	CHECK(cfg == &sentinel);
	CHECK(strncmp(err, path, strlen(path)) == 0 && strstr(err, ":2: key 'port': "));
	unlink(path);
}

/* ---- [service_account.NAME] -------------------------------------------- */

/* Three projects, a b c, on lines 1-12. */
#define PROJ3 "[project.a]\nid = 1\ntoken = ta\napi_secret = sa\n" \
	      "[project.b]\nid = 2\ntoken = tb\napi_secret = sb\n" \
	      "[project.c]\nid = 3\ntoken = tc\napi_secret = sc\n"

static void test_account_one_project(void)
{
	struct config *cfg = PARSE_OK(PROJ "[service_account.bot]\nusername = reader\nsecret = \"s3 cret\"\n"
				      "projects = p\n");
	const struct config_service_account *a;

	if (!cfg)
		return;
	CHECK_INT(cfg->n_accounts, 1);
	a = &cfg->accounts[0];
	CHECK_STR(a->name, "bot");
	CHECK_STR(a->username, "reader");
	CHECK_STR(a->secret, "s3 cret");
	CHECK_INT(a->n_projects, 1);
	if (a->n_projects == 1)
		CHECK_STR(a->projects[0], "p");
	CHECK(config_account_by_username(cfg, "reader", 6) == a);
	/* LEN bytes of USERNAME, which need not be NUL-terminated */
	CHECK(config_account_by_username(cfg, "reader:s3 cret", 6) == a);
	CHECK(config_account_by_username(cfg, "reade", 5) == NULL);
	CHECK(config_account_by_username(cfg, "readers", 7) == NULL);
	CHECK(config_account_by_username(cfg, "Reader", 6) == NULL);
	CHECK(config_account_by_username(cfg, "", 0) == NULL);
	CHECK(config_account_by_username(cfg, "s3 cret", 7) == NULL);  /* the secret is no username */
	CHECK(config_account_by_username(cfg, "bot", 3) == NULL);      /* nor the section name */
	CHECK(config_account_by_username(NULL, "reader", 6) == NULL);
	CHECK_INT(config_account_grants(a, &cfg->projects[0]), 1);
	CHECK_INT(config_account_grants(a, config_project_by_name(cfg, "p")), 1);
	CHECK_INT(config_account_grants(NULL, &cfg->projects[0]), 0);
	CHECK_INT(config_account_grants(a, NULL), 0);
	config_free(cfg);
}

static void test_account_several_projects(void)
{
	/* accounts may come before the projects they name */
	struct config *cfg = PARSE_OK("[service_account.ac]\nprojects = a, c\nsecret = x\nusername = u-ac\n"
				      PROJ3
				      "[service_account.all]\nusername = u_all\nsecret = y\n"
				      "projects = \" c ,b,a, \"\n"
				      "[service_account.only_b]\nusername = u.b@example\nsecret = z\nprojects = b,\n");
	const struct config_service_account *ac, *all, *ob;
	const struct config_project *pa, *pb, *pc;

	if (!cfg)
		return;
	CHECK_INT(cfg->n_accounts, 3);
	CHECK_INT(cfg->n_projects, 3);
	ac = &cfg->accounts[0];
	all = &cfg->accounts[1];
	ob = &cfg->accounts[2];
	pa = config_project_by_name(cfg, "a");
	pb = config_project_by_name(cfg, "b");
	pc = config_project_by_name(cfg, "c");
	CHECK(pa && pb && pc);
	CHECK_STR(ac->name, "ac");
	CHECK_INT(ac->n_projects, 2);
	if (ac->n_projects == 2) {
		CHECK_STR(ac->projects[0], "a");
		CHECK_STR(ac->projects[1], "c");
	}
	CHECK_INT(all->n_projects, 3);
	if (all->n_projects == 3) {
		CHECK_STR(all->projects[0], "c");
		CHECK_STR(all->projects[1], "b");
		CHECK_STR(all->projects[2], "a");
	}
	CHECK_INT(ob->n_projects, 1);
	CHECK(config_account_by_username(cfg, "u-ac", 4) == ac);
	CHECK(config_account_by_username(cfg, "u_all", 5) == all);
	CHECK(config_account_by_username(cfg, "u.b@example", 11) == ob);
	CHECK(config_account_by_username(cfg, "u", 1) == NULL);
	CHECK_INT(config_account_grants(ac, pa), 1);
	CHECK_INT(config_account_grants(ac, pb), 0);
	CHECK_INT(config_account_grants(ac, pc), 1);
	CHECK_INT(config_account_grants(all, pa), 1);
	CHECK_INT(config_account_grants(all, pb), 1);
	CHECK_INT(config_account_grants(all, pc), 1);
	CHECK_INT(config_account_grants(ob, pa), 0);
	CHECK_INT(config_account_grants(ob, pb), 1);
	CHECK_INT(config_account_grants(ob, pc), 0);
	config_free(cfg);
	/* no accounts at all */
	cfg = PARSE_OK(PROJ);
	if (cfg) {
		CHECK_INT(cfg->n_accounts, 0);
		CHECK(config_account_by_username(cfg, "reader", 6) == NULL);
		config_free(cfg);
	}
}

static void test_account_missing_keys(void)
{
	/* closed by the next section, and at the end of the file */
	PARSE_ERR(PROJ "[service_account.bot]\nsecret = s\nprojects = p\n[server]\n", 5,
		  "section '[service_account.bot]': missing required key(s)");
	PARSE_ERR(PROJ "[service_account.bot]\nusername = u\nprojects = p\n", 5,
		  "section '[service_account.bot]': missing required key(s)");
	PARSE_ERR(PROJ "\n[service_account.bot]\nusername = u\nsecret = s\n", 6,
		  "section '[service_account.bot]': missing required key(s)");
	PARSE_ERR("[service_account.bot]\n" PROJ, 1, "section '[service_account.bot]'");
	PARSE_ERR(PROJ "[service_account.ok]\nusername = u\nsecret = s\nprojects = p\n"
		  "[service_account.bad]\nusername = v\nsecret = s\n", 9, "[service_account.bad]");
	/* empty values are errors at their own line */
	PARSE_ERR(PROJ "[service_account.bot]\nusername =\nsecret = s\nprojects = p\n", 6, "key 'username'");
	PARSE_ERR(PROJ "[service_account.bot]\nusername = u\nsecret = \"\"\nprojects = p\n", 7, "key 'secret'");
	PARSE_ERR(PROJ "[service_account.bot]\nusername = u\nsecret = s\nprojects =\n", 8, "key 'projects'");
	PARSE_ERR(PROJ "[service_account.bot]\nusername = u\nsecret = s\nprojects = , ,\n", 8,
		  "key 'projects': must name at least one project");
	PARSE_ERR(PROJ "[service_account.bot]\nusername = u\nsecret = a\x01z\nprojects = p\n", 7, "key 'secret'");
}

static void test_account_unknown_project(void)
{
	PARSE_ERR(PROJ "[service_account.bot]\nusername = u\nsecret = s\nprojects = p, nope\n", 8,
		  "key 'projects': [service_account.bot] grants unknown project 'nope'");
	/* the line of the projects key of the account at fault, reported
	 * after the whole file is read */
	PARSE_ERR(PROJ3 "[service_account.one]\nprojects = a\nusername = u1\nsecret = s\n"
		  "[service_account.two]\nusername = u2\nprojects = b,P\nsecret = s\n"
		  "[project.d]\nid = 4\ntoken = td\napi_secret = sd\n", 19,
		  "key 'projects': [service_account.two] grants unknown project 'P'");
	/* names a project that is declared later: fine */
	{
		struct config *cfg = PARSE_OK("[service_account.x]\nusername = u\nsecret = s\nprojects = later\n"
					      "[project.later]\nid = 9\ntoken = t\napi_secret = s\n");

		if (cfg) {
			CHECK_INT(config_account_grants(&cfg->accounts[0], &cfg->projects[0]), 1);
			config_free(cfg);
		}
	}
}

static void test_account_username_rules(void)
{
	PARSE_ERR(PROJ "[service_account.a]\nusername = same\nsecret = s\nprojects = p\n"
		  "[service_account.b]\nsecret = s\nusername = same\nprojects = p\n", 11,
		  "key 'username': duplicate username (already used by [service_account.a])");
	PARSE_ERR(PROJ "[service_account.a]\nusername = us:er\nsecret = s\nprojects = p\n", 6,
		  "key 'username': must not contain ':'");
	PARSE_ERR(PROJ "[service_account.a]\nusername = :\nsecret = s\nprojects = p\n", 6, "key 'username'");
	PARSE_ERR(PROJ "[service_account.a]\nusername = u\nusername = v\nsecret = s\nprojects = p\n", 7,
		  "key 'username': duplicate key (first set at line 6)");
	/* a ':' in the secret is fine (HTTP Basic splits at the first one) */
	{
		struct config *cfg = PARSE_OK(PROJ "[service_account.a]\nusername = u\nsecret = s:e:c\nprojects = p\n");

		if (cfg) {
			CHECK_STR(cfg->accounts[0].secret, "s:e:c");
			config_free(cfg);
		}
	}
	/* usernames are case-sensitive: these two differ */
	{
		struct config *cfg = PARSE_OK(PROJ "[service_account.a]\nusername = U\nsecret = s\nprojects = p\n"
					      "[service_account.b]\nusername = u\nsecret = s\nprojects = p\n");

		if (cfg) {
			CHECK(config_account_by_username(cfg, "U", 1) == &cfg->accounts[0]);
			CHECK(config_account_by_username(cfg, "u", 1) == &cfg->accounts[1]);
			config_free(cfg);
		}
	}
}

static void test_account_section_errors(void)
{
	PARSE_ERR(PROJ "[service_account.a]\nusername = u\nsecret = s\nprojects = p\n"
		  "[service_account.a]\nusername = v\nsecret = s\nprojects = p\n", 9,
		  "section '[service_account.a]': duplicate section (first at line 5)");
	PARSE_ERR(PROJ "[service_account.bot]\nusername = u\nrole = admin\nsecret = s\nprojects = p\n", 7,
		  "key 'role': unknown key in [service_account.bot]");
	PARSE_ERR(PROJ "[service_account.bot]\nusername = u\nsecret = s\nprojects = p\nid = 1\n", 9,
		  "key 'id': unknown key in [service_account.bot]");
	PARSE_ERR(PROJ "[service_account.]\n", 5, "section '[service_account.]'");
	PARSE_ERR(PROJ "[service_account.a b]\n", 5, "section '[service_account.a b]'");
	PARSE_ERR(PROJ "[service_account.a:b]\n", 5, "invalid service account name");
	PARSE_ERR(PROJ "[service_account]\n", 5, "section '[service_account]'");
	/* a service account and a project may share a name */
	{
		struct config *cfg = PARSE_OK(PROJ "[service_account.p]\nusername = u\nsecret = s\nprojects = p\n");

		if (cfg) {
			CHECK_STR(cfg->accounts[0].name, "p");
			config_free(cfg);
		}
	}
}

int main(void)
{
	TEST_RUN(test_defaults);
	TEST_RUN(test_every_key);
	TEST_RUN(test_booleans);
	TEST_RUN(test_integer_ranges);
	TEST_RUN(test_max_body_bytes);
	TEST_RUN(test_bind);
	TEST_RUN(test_storage_values);
	TEST_RUN(test_timezone);
	TEST_RUN(test_section_errors);
	TEST_RUN(test_duplicate_sections);
	TEST_RUN(test_key_errors);
	TEST_RUN(test_project_errors);
	TEST_RUN(test_line_errors);
	TEST_RUN(test_crlf_bom_and_last_line);
	TEST_RUN(test_quotes_and_hash);
	TEST_RUN(test_comments_and_blanks);
	TEST_RUN(test_not_nul_terminated);
	TEST_RUN(test_project_order_and_lookups);
	TEST_RUN(test_error_buffer);
	TEST_RUN(test_tls_files);
	TEST_RUN(test_example_config);
	TEST_RUN(test_load_errors);
	TEST_RUN(test_account_one_project);
	TEST_RUN(test_account_several_projects);
	TEST_RUN(test_account_missing_keys);
	TEST_RUN(test_account_unknown_project);
	TEST_RUN(test_account_username_rules);
	TEST_RUN(test_account_section_errors);
	return TEST_DONE();
}
