/*
 * config.c - read and validate the INI configuration of mixpaneld.
 *
 * The contract (keys, defaults, ranges, ownership) is include/config.h; this
 * file is the only code that knows the file format.  The grammar, one
 * construct per line:
 *
 *     line     = blank | comment | section | pair
 *     comment  = ws ( "#" | ";" ) any*          -- whole lines only
 *     section  = ws "[" ws name ws "]" ws        -- name: server | storage | project.NAME
 *     pair     = ws key ws "=" ws value ws       -- value may be "double-quoted"
 *
 * Lines end in "\n" or "\r\n" and hold at most CONFIG_LINE_MAX bytes; a
 * leading UTF-8 byte order mark is skipped.  The value is everything after
 * the first '=', trimmed; one pair of surrounding double quotes is removed
 * (no escapes inside).  There are NO inline comments: in `token = abc # x`
 * the value is "abc # x", because tokens and secrets may contain '#' or ';'.
 *
 * Why so strict: a typo in a key or a duplicated project silently changing
 * who may write to which project is worse than refusing to start, so every
 * unknown or repeated thing is an error, and every message says where:
 * "FILE:LINE: key 'x': reason" (or "section '[x]'" for section lines).
 *
 * Invariants of a returned config:
 *   1. n_projects >= 1; project names, ids and tokens are pairwise distinct.
 *   2. every string pointer except tls_* is non-NULL and owned by the config.
 *   3. tls_cert and tls_key are both set or both NULL; when set, the PEM
 *      texts were read at parse time (paths relative to the working
 *      directory) and contain no NUL byte.
 * On any failure nothing is leaked and *out is not written.
 *
 * Out of memory: returned as MP_E_NOMEM (the caller, at start-up, exits).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFIG_LINE_MAX 4096              /* bytes per line, without "\r\n" */
#define CONFIG_FILE_MAX (16u * 1024 * 1024) /* config_load() refuses bigger files */
#define CONFIG_PEM_MAX (1024u * 1024)     /* a certificate chain is far smaller */
#define CONFIG_NAME_MAX 64                /* project name length */
#define CONFIG_TZ_MAX 255                 /* time-zone name length */
#define CONFIG_ZONEINFO "/usr/share/zoneinfo"
#define CONFIG_KEYS_MAX 16                /* keys per section table */
#define CONFIG_SHOW_MAX 64                /* bytes of user text quoted in a message */

enum config_section { SECTION_NONE, SECTION_SERVER, SECTION_STORAGE, SECTION_PROJECT, SECTION_ACCOUNT };

/* Where each project's facts came from, for messages; parallel to cfg->projects. */
struct config_project_lines {
	size_t section;
	size_t id;
	size_t token;
	size_t api_secret;
};

struct config_parser {
	const char *filename;
	char *err;
	size_t errlen;
	struct config *cfg;
	struct config_project_lines *plines;
	size_t cap_projects;
	size_t line;                       /* current line, 1-based */
	enum config_section section;
	size_t section_line;
	size_t key_line[CONFIG_KEYS_MAX];  /* line of each key seen in this section, 0 = not yet */
	size_t server_line, storage_line;  /* first line of those sections, 0 = absent */
	size_t tls_cert_line, tls_key_line;
	size_t *alines;                    /* section line of each service account */
	size_t *aproj_lines;               /* line of each account's `projects` key */
};

struct config_key {
	const char *name;
	enum mp_err (*set)(struct config_parser *p, const char *key, const char *val);
};

/* ---- messages ---------------------------------------------------------- */

/* Copy at most CONFIG_SHOW_MAX bytes of S into BUF for quoting in a message;
 * control characters become '?' so a message is always one printable line. */
static void config_show(const char *s, char *buf, size_t buflen)
{
	size_t n = 0;

	for (; *s && n + 1 < buflen && n < CONFIG_SHOW_MAX; s++, n++) {
		unsigned char c = (unsigned char)*s;
		buf[n] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	if (*s && n + 4 < buflen) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = '\0';
}

/* Write "FILE:LINE: KIND 'NAME': MESSAGE" (or "FILE:LINE: MESSAGE" when KIND
 * is NULL) into the caller's buffer and return RC. */
static enum mp_err config_fail(struct config_parser *p, enum mp_err rc, size_t line,
			       const char *kind, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

static enum mp_err config_fail(struct config_parser *p, enum mp_err rc, size_t line,
			       const char *kind, const char *name, const char *fmt, ...)
{
	char msg[512], shown[CONFIG_SHOW_MAX + 8];
	va_list ap;

	if (!p->err || p->errlen == 0)
		return rc;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (kind) {
		config_show(name, shown, sizeof shown);
		snprintf(p->err, p->errlen, "%s:%zu: %s '%s': %s", p->filename, line, kind, shown, msg);
	} else {
		snprintf(p->err, p->errlen, "%s:%zu: %s", p->filename, line, msg);
	}
	return rc;
}

/* Error about key KEY on the current line. */
#define KEY_FAIL(p, key, ...) config_fail((p), MP_E_CONFIG, (p)->line, "key", (key), __VA_ARGS__)

static enum mp_err config_nomem(struct config_parser *p)
{
	return config_fail(p, MP_E_NOMEM, p->line, NULL, NULL, "out of memory");
}

/* ---- small value parsers ---------------------------------------------- */

static int config_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Trim [*s, *s + *n) in place. */
static void config_trim(const char **s, size_t *n)
{
	while (*n > 0 && config_is_space((*s)[0])) {
		(*s)++;
		(*n)--;
	}
	while (*n > 0 && config_is_space((*s)[*n - 1]))
		(*n)--;
}

static enum mp_err config_set_str(struct config_parser *p, char **dst, const char *val)
{
	char *copy = strdup(val);

	if (!copy)
		return config_nomem(p);
	free(*dst);
	*dst = copy;
	return MP_OK;
}

static enum mp_err config_nonempty_str(struct config_parser *p, const char *key, char **dst,
				       const char *val)
{
	if (val[0] == '\0')
		return KEY_FAIL(p, key, "value must not be empty");
	return config_set_str(p, dst, val);
}

/* Decimal integer: optional '-', digits, nothing else.  Returns 0 on success,
 * -1 if VAL is not an integer, -2 if it does not fit in long long. */
static int config_ll(const char *val, long long *out, const char **end_out)
{
	const char *s = val;
	char *end;
	long long v;

	if (*s == '-')
		s++;
	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoll(val, &end, 10);
	if (errno == ERANGE)
		return -2;
	if (end_out)
		*end_out = end;
	else if (*end != '\0')
		return -1;
	*out = v;
	return 0;
}

/* Parse VAL as an integer in [MIN, MAX]. */
static enum mp_err config_int_range(struct config_parser *p, const char *key, const char *val,
				    long long min, long long max, long long *out)
{
	char shown[CONFIG_SHOW_MAX + 8];
	long long v;
	int r = config_ll(val, &v, NULL);

	config_show(val, shown, sizeof shown);
	if (r == -1)
		return KEY_FAIL(p, key, "'%s' is not an integer (allowed %lld..%lld)", shown, min, max);
	if (r == -2 || v < min || v > max)
		return KEY_FAIL(p, key, "%s is out of range (allowed %lld..%lld)", shown, min, max);
	*out = v;
	return MP_OK;
}

static enum mp_err config_int_field(struct config_parser *p, const char *key, const char *val,
				    long long min, long long max, int *dst)
{
	long long v;
	enum mp_err rc = config_int_range(p, key, val, min, max, &v);

	if (rc == MP_OK)
		*dst = (int)v;
	return rc;
}

static enum mp_err config_bool(struct config_parser *p, const char *key, const char *val, int *dst)
{
	static const char *const yes[] = { "true", "yes", "1", "on" };
	static const char *const no[] = { "false", "no", "0", "off" };
	char shown[CONFIG_SHOW_MAX + 8];
	size_t i;

	for (i = 0; i < sizeof yes / sizeof yes[0]; i++) {
		if (strcasecmp(val, yes[i]) == 0) {
			*dst = 1;
			return MP_OK;
		}
		if (strcasecmp(val, no[i]) == 0) {
			*dst = 0;
			return MP_OK;
		}
	}
	config_show(val, shown, sizeof shown);
	return KEY_FAIL(p, key, "'%s' is not a boolean (use true/false, yes/no, on/off or 1/0)", shown);
}

/* Reject control characters in credentials: they are compared byte for byte
 * with what arrives in HTTP requests, where they can never appear. */
static enum mp_err config_credential(struct config_parser *p, const char *key, const char *val)
{
	const unsigned char *s;

	if (val[0] == '\0')
		return KEY_FAIL(p, key, "value must not be empty");
	for (s = (const unsigned char *)val; *s; s++)
		if (*s < 0x20 || *s == 0x7f)
			return KEY_FAIL(p, key, "value contains a control character");
	return MP_OK;
}

/* NULL if TZ names a usable zone, else the reason.  "UTC" is built in; any
 * other name must be a TZif file under CONFIG_ZONEINFO (so that, e.g.,
 * "zone.tab" or a directory such as "Europe" is refused). */
static const char *config_tz_problem(const char *tz)
{
	static const char allowed[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				      "0123456789/_-+.";
	char path[sizeof CONFIG_ZONEINFO + CONFIG_TZ_MAX + 2];
	char magic[4];
	struct stat st;
	ssize_t got;
	size_t n = strlen(tz);
	int fd;

	if (strcmp(tz, "UTC") == 0)
		return NULL;
	if (n == 0)
		return "value must not be empty";
	if (n > CONFIG_TZ_MAX)
		return "time zone name is too long";
	if (tz[0] == '/')
		return "must be a name under " CONFIG_ZONEINFO " such as Europe/Paris, not an absolute path";
	if (strstr(tz, ".."))
		return "must not contain '..'";
	if (strspn(tz, allowed) != n)
		return "time zone name contains an invalid character";
	snprintf(path, sizeof path, "%s/%s", CONFIG_ZONEINFO, tz);
	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
		return "unknown time zone (no such file under " CONFIG_ZONEINFO ")";
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return "time zone file under " CONFIG_ZONEINFO " cannot be opened";
	do {
		got = read(fd, magic, sizeof magic);
	} while (got < 0 && errno == EINTR);
	close(fd);
	if (got != (ssize_t)sizeof magic || memcmp(magic, "TZif", 4) != 0)
		return "not a time zone file (no TZif header)";
	return NULL;
}

/* ---- [server] ---------------------------------------------------------- */

static enum mp_err config_set_bind(struct config_parser *p, const char *key, const char *val)
{
	struct in6_addr a6;
	struct in_addr a4;
	char shown[CONFIG_SHOW_MAX + 8];

	if (strcmp(val, "localhost") != 0 && inet_pton(AF_INET, val, &a4) != 1 &&
	    inet_pton(AF_INET6, val, &a6) != 1) {
		config_show(val, shown, sizeof shown);
		return KEY_FAIL(p, key, "'%s' is not an IPv4/IPv6 address or \"localhost\"", shown);
	}
	return config_set_str(p, &p->cfg->bind, val);
}

static enum mp_err config_set_port(struct config_parser *p, const char *key, const char *val)
{
	return config_int_field(p, key, val, 1, 65535, &p->cfg->port);
}

static enum mp_err config_set_threads(struct config_parser *p, const char *key, const char *val)
{
	return config_int_field(p, key, val, 1, 256, &p->cfg->threads);
}

/* Bytes, optionally with one k/m/g suffix (powers of 1024). */
static enum mp_err config_set_max_body(struct config_parser *p, const char *key, const char *val)
{
	const long long min = 1024, max = 1073741824;
	char shown[CONFIG_SHOW_MAX + 8];
	const char *end = NULL;
	long long v, mult = 1;
	int r = config_ll(val, &v, &end);

	config_show(val, shown, sizeof shown);
	if (r == 0) {
		switch (*end) {
		case '\0': break;
		case 'k': case 'K': mult = 1024; end++; break;
		case 'm': case 'M': mult = 1024 * 1024; end++; break;
		case 'g': case 'G': mult = 1024 * 1024 * 1024; end++; break;
		default: r = -1; break;
		}
		if (r == 0 && *end != '\0')
			r = -1;
	}
	if (r == -1)
		return KEY_FAIL(p, key, "'%s' is not a size (bytes, or a number with suffix k, m or g; "
			       "allowed %lld..%lld)", shown, min, max);
	if (r == -2 || v < min / mult || v > max / mult || v * mult < min)
		return KEY_FAIL(p, key, "%s is out of range (allowed %lld..%lld bytes)", shown, min, max);
	p->cfg->max_body_bytes = (size_t)(v * mult);
	return MP_OK;
}

static enum mp_err config_set_max_events(struct config_parser *p, const char *key, const char *val)
{
	return config_int_field(p, key, val, 1, 100000, &p->cfg->max_events_per_request);
}

static enum mp_err config_set_max_age(struct config_parser *p, const char *key, const char *val)
{
	return config_int_field(p, key, val, 0, 36500, &p->cfg->track_max_age_days);
}

static enum mp_err config_set_trust_proxy(struct config_parser *p, const char *key, const char *val)
{
	return config_bool(p, key, val, &p->cfg->trust_proxy);
}

static enum mp_err config_set_tls_cert(struct config_parser *p, const char *key, const char *val)
{
	p->tls_cert_line = p->line;
	return config_nonempty_str(p, key, &p->cfg->tls_cert, val);
}

static enum mp_err config_set_tls_key(struct config_parser *p, const char *key, const char *val)
{
	p->tls_key_line = p->line;
	return config_nonempty_str(p, key, &p->cfg->tls_key, val);
}

static enum mp_err config_set_path_prefix(struct config_parser *p, const char *key, const char *val)
{
	size_t n = strlen(val);
	char shown[CONFIG_SHOW_MAX + 8];

	if (n == 0)
		return config_set_str(p, &p->cfg->path_prefix, val);
	if (val[0] != '/' || val[n - 1] == '/' || n > 64 ||
	    strspn(val, "/abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != n) {
		config_show(val, shown, sizeof shown);
		return KEY_FAIL(p, key, "'%s' must start with '/', not end with '/', and use only "
			       "letters, digits and / _ . - (at most 64 bytes)", shown);
	}
	return config_set_str(p, &p->cfg->path_prefix, val);
}

static const struct config_key config_server_keys[] = {
	{ "bind", config_set_bind },
	{ "port", config_set_port },
	{ "threads", config_set_threads },
	{ "max_body_bytes", config_set_max_body },
	{ "max_events_per_request", config_set_max_events },
	{ "track_max_age_days", config_set_max_age },
	{ "trust_proxy", config_set_trust_proxy },
	{ "tls_cert", config_set_tls_cert },
	{ "tls_key", config_set_tls_key },
	{ "path_prefix", config_set_path_prefix },
	{ NULL, NULL }
};

/* ---- [storage] --------------------------------------------------------- */

static enum mp_err config_set_data_dir(struct config_parser *p, const char *key, const char *val)
{
	return config_nonempty_str(p, key, &p->cfg->data_dir, val);
}

static enum mp_err config_set_shard_period(struct config_parser *p, const char *key, const char *val)
{
	char shown[CONFIG_SHOW_MAX + 8];

	if (strcasecmp(val, "month") == 0) {
		p->cfg->shard_period = CONFIG_SHARD_MONTH;
		return MP_OK;
	}
	if (strcasecmp(val, "day") == 0) {
		p->cfg->shard_period = CONFIG_SHARD_DAY;
		return MP_OK;
	}
	config_show(val, shown, sizeof shown);
	return KEY_FAIL(p, key, "'%s' is not one of: month, day", shown);
}

static enum mp_err config_set_sync(struct config_parser *p, const char *key, const char *val)
{
	char shown[CONFIG_SHOW_MAX + 8];

	if (strcasecmp(val, "normal") == 0) {
		p->cfg->sync = CONFIG_SYNC_NORMAL;
		return MP_OK;
	}
	if (strcasecmp(val, "full") == 0) {
		p->cfg->sync = CONFIG_SYNC_FULL;
		return MP_OK;
	}
	config_show(val, shown, sizeof shown);
	return KEY_FAIL(p, key, "'%s' is not one of: normal, full", shown);
}

static const struct config_key config_storage_keys[] = {
	{ "data_dir", config_set_data_dir },
	{ "shard_period", config_set_shard_period },
	{ "sync", config_set_sync },
	{ NULL, NULL }
};

/* ---- [project.NAME] ---------------------------------------------------- */

static struct config_project *config_cur_project(struct config_parser *p)
{
	return &p->cfg->projects[p->cfg->n_projects - 1];
}

static enum mp_err config_set_id(struct config_parser *p, const char *key, const char *val)
{
	struct config_project *pr = config_cur_project(p);
	long long v;
	size_t i;
	enum mp_err rc = config_int_range(p, key, val, 1, 2147483647LL, &v);

	if (rc != MP_OK)
		return rc;
	for (i = 0; i + 1 < p->cfg->n_projects; i++)
		if (p->cfg->projects[i].id == (long)v)
			return KEY_FAIL(p, key, "duplicate project id %lld (already used by [project.%s] at line %zu)",
					v, p->cfg->projects[i].name, p->plines[i].id);
	pr->id = (long)v;
	p->plines[p->cfg->n_projects - 1].id = p->line;
	return MP_OK;
}

static enum mp_err config_set_token(struct config_parser *p, const char *key, const char *val)
{
	struct config_project *pr = config_cur_project(p);
	size_t i;
	enum mp_err rc = config_credential(p, key, val);

	if (rc != MP_OK)
		return rc;
	for (i = 0; i + 1 < p->cfg->n_projects; i++)
		if (p->cfg->projects[i].token && strcmp(p->cfg->projects[i].token, val) == 0)
			return KEY_FAIL(p, key, "duplicate token (already used by [project.%s] at line %zu)",
					p->cfg->projects[i].name, p->plines[i].token);
	p->plines[p->cfg->n_projects - 1].token = p->line;
	return config_set_str(p, &pr->token, val);
}

static enum mp_err config_set_api_secret(struct config_parser *p, const char *key, const char *val)
{
	size_t i;
	enum mp_err rc = config_credential(p, key, val);

	if (rc != MP_OK)
		return rc;
	/* the secret alone selects the project of an /import or export request */
	for (i = 0; i + 1 < p->cfg->n_projects; i++)
		if (p->cfg->projects[i].api_secret && strcmp(p->cfg->projects[i].api_secret, val) == 0)
			return KEY_FAIL(p, key, "duplicate api_secret (already used by [project.%s] at line %zu)",
					p->cfg->projects[i].name, p->plines[i].api_secret);
	p->plines[p->cfg->n_projects - 1].api_secret = p->line;
	return config_set_str(p, &config_cur_project(p)->api_secret, val);
}

static enum mp_err config_set_timezone(struct config_parser *p, const char *key, const char *val)
{
	const char *why = config_tz_problem(val);

	if (why)
		return KEY_FAIL(p, key, "%s", why);
	return config_set_str(p, &config_cur_project(p)->timezone, val);
}

static enum mp_err config_set_identity(struct config_parser *p, const char *key, const char *val)
{
	char shown[CONFIG_SHOW_MAX + 8];

	if (strcasecmp(val, "simplified") == 0) {
		config_cur_project(p)->identity = CONFIG_IDENTITY_SIMPLIFIED;
		return MP_OK;
	}
	if (strcasecmp(val, "original") == 0) {
		config_cur_project(p)->identity = CONFIG_IDENTITY_ORIGINAL;
		return MP_OK;
	}
	config_show(val, shown, sizeof shown);
	return KEY_FAIL(p, key, "'%s' is not one of: simplified, original", shown);
}

/* Append the items of comma-separated list VAL (trimmed, empty ones
 * skipped) to *ITEMS / *N. */
static enum mp_err config_list(struct config_parser *p, const char *val, char ***items, size_t *n_items)
{
	const char *s = val;

	while (*s) {
		const char *e;
		size_t n;
		char **np;

		while (*s == ' ' || *s == '\t' || *s == ',')
			s++;
		if (!*s)
			break;
		for (e = s; *e && *e != ','; e++)
			;
		n = (size_t)(e - s);
		while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
			n--;
		if (!(np = realloc(*items, (*n_items + 1) * sizeof *np)))
			return config_nomem(p);
		*items = np;
		if (!(np[*n_items] = strndup(s, n)))
			return config_nomem(p);
		(*n_items)++;
		s = e;
	}
	return MP_OK;
}

/* Group keys: the event properties that name groups (company, ...). */
static enum mp_err config_set_group_keys(struct config_parser *p, const char *key, const char *val)
{
	struct config_project *pr = config_cur_project(p);
	enum mp_err rc;
	size_t i, j;

	if ((rc = config_list(p, val, &pr->group_keys, &pr->n_group_keys)) != MP_OK)
		return rc;
	for (i = 0; i < pr->n_group_keys; i++) {
		if (strlen(pr->group_keys[i]) > 255)
			return KEY_FAIL(p, key, "a group key is longer than 255 bytes");
		for (j = 0; j < i; j++)
			if (!strcmp(pr->group_keys[i], pr->group_keys[j]))
				return KEY_FAIL(p, key, "group key '%.60s' is listed twice", pr->group_keys[i]);
	}
	return MP_OK;
}

/* Index order matters: config_project_close() checks the first three. */
static const struct config_key config_project_keys[] = {
	{ "id", config_set_id },
	{ "token", config_set_token },
	{ "api_secret", config_set_api_secret },
	{ "timezone", config_set_timezone },
	{ "identity", config_set_identity },
	{ "group_keys", config_set_group_keys },
	{ NULL, NULL }
};

/* ---- [service_account.NAME] ------------------------------------------- */

static struct config_service_account *config_cur_account(struct config_parser *p)
{
	return &p->cfg->accounts[p->cfg->n_accounts - 1];
}

static enum mp_err config_set_acct_username(struct config_parser *p, const char *key, const char *val)
{
	enum mp_err rc = config_credential(p, key, val);
	size_t i;

	if (rc != MP_OK)
		return rc;
	if (strchr(val, ':'))
		return KEY_FAIL(p, key, "must not contain ':' (HTTP Basic separates user and secret with it)");
	for (i = 0; i + 1 < p->cfg->n_accounts; i++)
		if (p->cfg->accounts[i].username && strcmp(p->cfg->accounts[i].username, val) == 0)
			return KEY_FAIL(p, key, "duplicate username (already used by [service_account.%s])",
					p->cfg->accounts[i].name);
	return config_set_str(p, &config_cur_account(p)->username, val);
}

static enum mp_err config_set_acct_secret(struct config_parser *p, const char *key, const char *val)
{
	enum mp_err rc = config_credential(p, key, val);

	if (rc != MP_OK)
		return rc;
	return config_set_str(p, &config_cur_account(p)->secret, val);
}

/* A comma-separated list of project names, checked against the projects
 * once the whole file is read (config_finish). */
static enum mp_err config_set_acct_projects(struct config_parser *p, const char *key, const char *val)
{
	struct config_service_account *a = config_cur_account(p);
	enum mp_err rc;

	p->aproj_lines[p->cfg->n_accounts - 1] = p->line;
	if ((rc = config_list(p, val, &a->projects, &a->n_projects)) != MP_OK)
		return rc;
	if (!a->n_projects)
		return KEY_FAIL(p, key, "must name at least one project (comma-separated project names)");
	return MP_OK;
}

static const struct config_key config_account_keys[] = {
	{ "username", config_set_acct_username },
	{ "secret", config_set_acct_secret },
	{ "projects", config_set_acct_projects },
	{ NULL, NULL }
};

static enum mp_err config_account_open(struct config_parser *p, const char *name, const char *line)
{
	struct config *cfg = p->cfg;
	size_t i, n = strlen(name);
	struct config_service_account *na;
	size_t *nl, *npl;

	if (n == 0 || n > CONFIG_NAME_MAX || strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
						  "0123456789_-") != n)
		return config_fail(p, MP_E_CONFIG, p->line, "section", line,
				   "invalid service account name (1 to 64 of A-Z a-z 0-9 _ -)");
	for (i = 0; i < cfg->n_accounts; i++)
		if (strcmp(cfg->accounts[i].name, name) == 0)
			return config_fail(p, MP_E_CONFIG, p->line, "section", line,
					   "duplicate section (first at line %zu)", p->alines[i]);
	if (!(na = realloc(cfg->accounts, (cfg->n_accounts + 1) * sizeof *na)))
		return config_nomem(p);
	cfg->accounts = na;
	if (!(nl = realloc(p->alines, (cfg->n_accounts + 1) * sizeof *nl)))
		return config_nomem(p);
	p->alines = nl;
	if (!(npl = realloc(p->aproj_lines, (cfg->n_accounts + 1) * sizeof *npl)))
		return config_nomem(p);
	p->aproj_lines = npl;
	memset(&na[cfg->n_accounts], 0, sizeof *na);
	if (!(na[cfg->n_accounts].name = strdup(name)))
		return config_nomem(p);
	p->alines[cfg->n_accounts] = p->line;
	p->aproj_lines[cfg->n_accounts] = 0;
	cfg->n_accounts++;
	return MP_OK;
}

/* Required keys of the account section that is ending. */
static enum mp_err config_account_close(struct config_parser *p)
{
	struct config_service_account *a;
	char section[CONFIG_NAME_MAX + 24];

	if (p->section != SECTION_ACCOUNT)
		return MP_OK;
	a = config_cur_account(p);
	if (a->username && a->secret && a->n_projects)
		return MP_OK;
	snprintf(section, sizeof section, "[service_account.%s]", a->name);
	return config_fail(p, MP_E_CONFIG, p->section_line, "section", section,
			   "missing required key(s): username, secret and projects are all required");
}

const struct config_service_account *config_account_by_username(const struct config *cfg,
								  const char *username, size_t len)
{
	const struct config_service_account *found = NULL;
	unsigned char h1[SHA256_DIGEST_LENGTH], h2[SHA256_DIGEST_LENGTH];
	size_t i;

	if (!cfg)
		return NULL;
	SHA256((const unsigned char *)username, len, h1);
	for (i = 0; i < cfg->n_accounts; i++) {
		const char *u = cfg->accounts[i].username;

		SHA256((const unsigned char *)u, strlen(u), h2);
		if (CRYPTO_memcmp(h1, h2, sizeof h1) == 0 && !found)
			found = &cfg->accounts[i];
	}
	return found;
}

int config_account_grants(const struct config_service_account *a, const struct config_project *p)
{
	size_t i;

	for (i = 0; a && p && i < a->n_projects; i++)
		if (strcmp(a->projects[i], p->name) == 0)
			return 1;
	return 0;
}

/* ---- sections ---------------------------------------------------------- */

/* Check the project section that is ending: required keys, default time zone. */
static enum mp_err config_project_close(struct config_parser *p)
{
	struct config_project *pr;
	char missing[64], section[CONFIG_NAME_MAX + 16];
	size_t i, n = 0;

	if (p->section != SECTION_PROJECT)
		return MP_OK;
	pr = config_cur_project(p);
	missing[0] = '\0';
	for (i = 0; i < 3; i++) {
		if (p->key_line[i] != 0)
			continue;
		int w = snprintf(missing + n, sizeof missing - n, "%s%s", n ? ", " : "",
				 config_project_keys[i].name);

		if (w > 0 && (size_t)w < sizeof missing - n)
			n += (size_t)w;
	}
	if (missing[0]) {
		snprintf(section, sizeof section, "[project.%s]", pr->name);
		return config_fail(p, MP_E_CONFIG, p->section_line, "section", section,
				   "missing required key(s): %s", missing);
	}
	if (!pr->timezone && !(pr->timezone = strdup("UTC")))
		return config_nomem(p);
	return MP_OK;
}

static enum mp_err config_project_open(struct config_parser *p, const char *name, const char *line)
{
	struct config *cfg = p->cfg;
	size_t i, n = strlen(name);

	if (n == 0)
		return config_fail(p, MP_E_CONFIG, p->line, "section", line,
				   "project name must not be empty (use [project.NAME])");
	if (n > CONFIG_NAME_MAX || strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					      "0123456789_-") != n)
		return config_fail(p, MP_E_CONFIG, p->line, "section", line,
				   "invalid project name (1 to 64 of A-Z a-z 0-9 _ -)");
	for (i = 0; i < cfg->n_projects; i++)
		if (strcmp(cfg->projects[i].name, name) == 0)
			return config_fail(p, MP_E_CONFIG, p->line, "section", line,
					   "duplicate section (first at line %zu)", p->plines[i].section);
	if (cfg->n_projects == p->cap_projects) {
		size_t cap = p->cap_projects ? 2 * p->cap_projects : 4;
		struct config_project *np;
		struct config_project_lines *nl;

		np = realloc(cfg->projects, cap * sizeof *np);
		if (!np)
			return config_nomem(p);
		cfg->projects = np;
		nl = realloc(p->plines, cap * sizeof *nl);
		if (!nl)
			return config_nomem(p);
		p->plines = nl;
		p->cap_projects = cap;
	}
	memset(&cfg->projects[cfg->n_projects], 0, sizeof cfg->projects[0]);
	memset(&p->plines[cfg->n_projects], 0, sizeof p->plines[0]);
	cfg->projects[cfg->n_projects].name = strdup(name);
	if (!cfg->projects[cfg->n_projects].name)
		return config_nomem(p);
	p->plines[cfg->n_projects].section = p->line;
	cfg->n_projects++;
	return MP_OK;
}

/* LINE is the whole trimmed line, starting with '['. */
static enum mp_err config_section_line(struct config_parser *p, const char *line, size_t len)
{
	char name[CONFIG_LINE_MAX + 1];
	const char *s = line + 1;
	size_t n;
	enum mp_err rc;

	if (len < 2 || line[len - 1] != ']')
		return config_fail(p, MP_E_CONFIG, p->line, "section", line,
				   "expected ']' at the end of the line");
	n = len - 2;
	config_trim(&s, &n);
	memcpy(name, s, n);
	name[n] = '\0';

	rc = config_project_close(p);
	if (rc == MP_OK)
		rc = config_account_close(p);
	if (rc != MP_OK)
		return rc;
	memset(p->key_line, 0, sizeof p->key_line);
	p->section_line = p->line;

	if (strcmp(name, "server") == 0) {
		if (p->server_line)
			return config_fail(p, MP_E_CONFIG, p->line, "section", line,
					   "duplicate section (first at line %zu)", p->server_line);
		p->server_line = p->line;
		p->section = SECTION_SERVER;
		return MP_OK;
	}
	if (strcmp(name, "storage") == 0) {
		if (p->storage_line)
			return config_fail(p, MP_E_CONFIG, p->line, "section", line,
					   "duplicate section (first at line %zu)", p->storage_line);
		p->storage_line = p->line;
		p->section = SECTION_STORAGE;
		return MP_OK;
	}
	if (strncmp(name, "project.", 8) == 0) {
		/* Leave SECTION_NONE until the project exists, so a failure here
		 * never lets config_project_close() look at the wrong project. */
		p->section = SECTION_NONE;
		rc = config_project_open(p, name + 8, line);
		if (rc == MP_OK)
			p->section = SECTION_PROJECT;
		return rc;
	}
	if (strncmp(name, "service_account.", 16) == 0) {
		p->section = SECTION_NONE;
		rc = config_account_open(p, name + 16, line);
		if (rc == MP_OK)
			p->section = SECTION_ACCOUNT;
		return rc;
	}
	return config_fail(p, MP_E_CONFIG, p->line, "section", line,
			   "unknown section (expected [server], [storage], [project.NAME] or "
			   "[service_account.NAME])");
}

/* ---- key = value ------------------------------------------------------- */

static enum mp_err config_pair_line(struct config_parser *p, const char *line, size_t len)
{
	char key[CONFIG_LINE_MAX + 1], val[CONFIG_LINE_MAX + 1];
	const char *eq = memchr(line, '=', len);
	const struct config_key *table = NULL;
	const char *k = line, *v;
	size_t kn, vn, i;

	if (!eq)
		return config_fail(p, MP_E_CONFIG, p->line, "key", line,
				   "missing '=' (expected 'key = value')");
	kn = (size_t)(eq - line);
	config_trim(&k, &kn);
	memcpy(key, k, kn);
	key[kn] = '\0';
	v = eq + 1;
	vn = len - (size_t)(v - line);
	config_trim(&v, &vn);
	if (vn >= 2 && v[0] == '"' && v[vn - 1] == '"') {
		v++;
		vn -= 2;
	}
	memcpy(val, v, vn);
	val[vn] = '\0';

	if (kn == 0)
		return KEY_FAIL(p, key, "missing key name before '='");
	switch (p->section) {
	case SECTION_SERVER: table = config_server_keys; break;
	case SECTION_STORAGE: table = config_storage_keys; break;
	case SECTION_PROJECT: table = config_project_keys; break;
	case SECTION_ACCOUNT: table = config_account_keys; break;
	case SECTION_NONE:
		return KEY_FAIL(p, key, "not inside a section (put [server], [storage], "
			       "[project.NAME] or [service_account.NAME] above it)");
	}
	for (i = 0; table[i].name; i++)
		if (strcmp(table[i].name, key) == 0)
			break;
	if (!table[i].name) {
		if (p->section == SECTION_PROJECT)
			return KEY_FAIL(p, key, "unknown key in [project.%s] (known: id, token, "
				       "api_secret, timezone, identity, group_keys)", config_cur_project(p)->name);
		if (p->section == SECTION_ACCOUNT)
			return KEY_FAIL(p, key, "unknown key in [service_account.%s] (known: username, "
				       "secret, projects)", config_cur_account(p)->name);
		return KEY_FAIL(p, key, "unknown key in [%s]",
				p->section == SECTION_SERVER ? "server" : "storage");
	}
	if (p->key_line[i])
		return KEY_FAIL(p, key, "duplicate key (first set at line %zu)", p->key_line[i]);
	p->key_line[i] = p->line;
	return table[i].set(p, key, val);
}

/* ---- whole file -------------------------------------------------------- */

/* Read a whole regular file of at most MAX bytes into a NUL-terminated heap
 * buffer.  Returns MP_E_IO (errno set), MP_E_TOOBIG, MP_E_CONFIG (not a
 * regular file) or MP_E_NOMEM.  O_NONBLOCK keeps a FIFO from hanging us. */
static enum mp_err config_slurp(const char *path, size_t max, char **out, size_t *outlen)
{
	struct stat st;
	char *buf = NULL, *nb;
	size_t len = 0, cap;
	enum mp_err rc = MP_OK;
	int saved, fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);

	if (fd < 0)
		return MP_E_IO;
	if (fstat(fd, &st) != 0) {
		rc = MP_E_IO;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = MP_E_CONFIG;
		goto out;
	}
	if (st.st_size < 0 || (uintmax_t)st.st_size > max) {
		rc = MP_E_TOOBIG;
		goto out;
	}
	/* st_size may be 0 for /proc-like files: grow as needed.  The buffer
	 * never exceeds MAX + 2 bytes, enough to notice a file over MAX. */
	cap = (size_t)st.st_size + 1 < 4096 ? 4096 : (size_t)st.st_size + 1;
	if (cap > max + 2)
		cap = max + 2;
	buf = malloc(cap);
	if (!buf) {
		rc = MP_E_NOMEM;
		goto out;
	}
	for (;;) {
		ssize_t got;

		if (len + 1 == cap) {
			cap = cap > (max + 2) / 2 ? max + 2 : cap * 2;
			nb = realloc(buf, cap);
			if (!nb) {
				rc = MP_E_NOMEM;
				goto out;
			}
			buf = nb;
		}
		got = read(fd, buf + len, cap - 1 - len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = MP_E_IO;
			goto out;
		}
		if (got == 0)
			break;
		len += (size_t)got;
		if (len > max) {
			rc = MP_E_TOOBIG;
			goto out;
		}
	}
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	buf = NULL;
out:
	saved = errno;
	free(buf);
	close(fd);
	errno = saved;
	return rc;
}

/* Read the PEM file named by KEY (set at LINE) into *DST. */
static enum mp_err config_read_pem(struct config_parser *p, const char *key, size_t line,
				   const char *path, char **dst)
{
	char shown[CONFIG_SHOW_MAX + 8];
	size_t len = 0;
	enum mp_err rc = config_slurp(path, CONFIG_PEM_MAX, dst, &len);

	config_show(path, shown, sizeof shown);
	switch (rc) {
	case MP_OK:
		break;
	case MP_E_NOMEM:
		return config_nomem(p);
	case MP_E_TOOBIG:
		return config_fail(p, MP_E_CONFIG, line, "key", key, "file '%s' is larger than %u bytes",
				   shown, CONFIG_PEM_MAX);
	case MP_E_CONFIG:
		return config_fail(p, MP_E_CONFIG, line, "key", key, "'%s' is not a regular file", shown);
	default:
		return config_fail(p, MP_E_IO, line, "key", key, "cannot read '%s': %s", shown,
				   strerror(errno));
	}
	if (len == 0 || memchr(*dst, '\0', len)) {
		free(*dst);
		*dst = NULL;
		return config_fail(p, MP_E_CONFIG, line, "key", key, "file '%s' is %s", shown,
				   len == 0 ? "empty" : "not PEM text (it contains NUL bytes)");
	}
	return MP_OK;
}

/* Checks that need the whole file. */
static enum mp_err config_finish(struct config_parser *p)
{
	struct config *cfg = p->cfg;
	enum mp_err rc = config_project_close(p);
	size_t i, j;

	if (rc == MP_OK)
		rc = config_account_close(p);
	if (rc != MP_OK)
		return rc;
	for (i = 0; i < cfg->n_accounts; i++)
		for (j = 0; j < cfg->accounts[i].n_projects; j++)
			if (!config_project_by_name(cfg, cfg->accounts[i].projects[j]))
				return config_fail(p, MP_E_CONFIG, p->aproj_lines[i], "key", "projects",
						   "[service_account.%s] grants unknown project '%.64s'",
						   cfg->accounts[i].name, cfg->accounts[i].projects[j]);
	if (cfg->n_projects == 0)
		return config_fail(p, MP_E_CONFIG, p->line ? p->line : 1, NULL, NULL,
				   "no [project.NAME] section: at least one project is required");
	if (cfg->tls_cert && !cfg->tls_key)
		return config_fail(p, MP_E_CONFIG, p->tls_cert_line, "key", "tls_cert",
				   "tls_key must be set too (both or neither)");
	if (cfg->tls_key && !cfg->tls_cert)
		return config_fail(p, MP_E_CONFIG, p->tls_key_line, "key", "tls_key",
				   "tls_cert must be set too (both or neither)");
	if (cfg->tls_cert) {
		rc = config_read_pem(p, "tls_cert", p->tls_cert_line, cfg->tls_cert, &cfg->tls_cert_pem);
		if (rc == MP_OK)
			rc = config_read_pem(p, "tls_key", p->tls_key_line, cfg->tls_key, &cfg->tls_key_pem);
	}
	return rc;
}

static enum mp_err config_line(struct config_parser *p, const char *raw, size_t n)
{
	char buf[CONFIG_LINE_MAX + 1];
	const char *s = raw;

	if (n > 0 && raw[n - 1] == '\r')
		n--;
	if (n > CONFIG_LINE_MAX)
		return config_fail(p, MP_E_CONFIG, p->line, NULL, NULL,
				   "line is longer than %d bytes", CONFIG_LINE_MAX);
	if (memchr(raw, '\0', n))
		return config_fail(p, MP_E_CONFIG, p->line, NULL, NULL,
				   "NUL byte in line (the file must be text)");
	config_trim(&s, &n);
	if (n == 0 || s[0] == '#' || s[0] == ';')
		return MP_OK;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (buf[0] == '[')
		return config_section_line(p, buf, n);
	return config_pair_line(p, buf, n);
}

static struct config *config_new_defaults(void)
{
	struct config *cfg = calloc(1, sizeof *cfg);

	if (!cfg)
		return NULL;
	cfg->port = 8080;
	cfg->threads = 4;
	cfg->max_body_bytes = 10485760;
	cfg->max_events_per_request = 2000;
	cfg->track_max_age_days = 5;
	cfg->trust_proxy = 0;
	cfg->shard_period = CONFIG_SHARD_MONTH;
	cfg->sync = CONFIG_SYNC_NORMAL;
	cfg->bind = strdup("127.0.0.1");
	cfg->data_dir = strdup("./data");
	if (!cfg->bind || !cfg->data_dir) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

enum mp_err config_parse(const char *text, size_t len, const char *filename,
			 struct config **out, char *err, size_t errlen)
{
	struct config_parser p;
	size_t pos = 0;
	enum mp_err rc = MP_OK;

	memset(&p, 0, sizeof p);
	p.filename = filename ? filename : "<config>";
	p.err = err;
	p.errlen = errlen;
	if (err && errlen)
		err[0] = '\0';
	if (!text && len > 0)
		return config_fail(&p, MP_E_CONFIG, 0, NULL, NULL, "no text");
	p.cfg = config_new_defaults();
	if (!p.cfg)
		return config_nomem(&p);

	if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
		pos = 3;
	while (pos < len && rc == MP_OK) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - text) : len;

		p.line++;
		rc = config_line(&p, text + pos, end - pos);
		pos = nl ? end + 1 : len;
	}
	if (rc == MP_OK)
		rc = config_finish(&p);
	if (rc != MP_OK) {
		config_free(p.cfg);
		free(p.plines);
		free(p.alines);
		free(p.aproj_lines);
		return rc;
	}
	free(p.plines);
	free(p.alines);
	free(p.aproj_lines);
	*out = p.cfg;
	return MP_OK;
}

enum mp_err config_load(const char *path, struct config **out, char *err, size_t errlen)
{
	char *text = NULL;
	size_t len = 0;
	enum mp_err rc = config_slurp(path, CONFIG_FILE_MAX, &text, &len);

	switch (rc) {
	case MP_OK:
		break;
	case MP_E_NOMEM:
		if (err && errlen)
			snprintf(err, errlen, "%s: out of memory", path);
		return rc;
	case MP_E_TOOBIG:
		if (err && errlen)
			snprintf(err, errlen, "%s: config file is larger than %u bytes", path, CONFIG_FILE_MAX);
		return MP_E_CONFIG;
	case MP_E_CONFIG:
		if (err && errlen)
			snprintf(err, errlen, "%s: config file is not a regular file", path);
		return MP_E_CONFIG;
	default:
		if (err && errlen)
			snprintf(err, errlen, "%s: cannot read config file: %s", path, strerror(errno));
		return MP_E_IO;
	}
	rc = config_parse(text, len, path, out, err, errlen);
	free(text);
	return rc;
}

void config_free(struct config *cfg)
{
	size_t i, j;

	if (!cfg)
		return;
	for (i = 0; i < cfg->n_projects; i++) {
		free(cfg->projects[i].name);
		free(cfg->projects[i].token);
		free(cfg->projects[i].api_secret);
		free(cfg->projects[i].timezone);
		for (j = 0; j < cfg->projects[i].n_group_keys; j++)
			free(cfg->projects[i].group_keys[j]);
		free(cfg->projects[i].group_keys);
	}
	free(cfg->projects);
	for (i = 0; i < cfg->n_accounts; i++) {
		size_t j;

		free(cfg->accounts[i].name);
		free(cfg->accounts[i].username);
		free(cfg->accounts[i].secret);
		for (j = 0; j < cfg->accounts[i].n_projects; j++)
			free(cfg->accounts[i].projects[j]);
		free(cfg->accounts[i].projects);
	}
	free(cfg->accounts);
	free(cfg->bind);
	free(cfg->path_prefix);
	free(cfg->tls_cert);
	free(cfg->tls_key);
	free(cfg->tls_cert_pem);
	free(cfg->tls_key_pem);
	free(cfg->data_dir);
	free(cfg);
}

const struct config_project *config_project_by_name(const struct config *cfg, const char *name)
{
	size_t i;

	if (!cfg || !name)
		return NULL;
	for (i = 0; i < cfg->n_projects; i++)
		if (strcmp(cfg->projects[i].name, name) == 0)
			return &cfg->projects[i];
	return NULL;
}

const struct config_project *config_project_by_token(const struct config *cfg, const char *token)
{
	size_t i;

	if (!cfg || !token)
		return NULL;
	for (i = 0; i < cfg->n_projects; i++)
		if (strcmp(cfg->projects[i].token, token) == 0)
			return &cfg->projects[i];
	return NULL;
}

const struct config_project *config_project_by_id(const struct config *cfg, long id)
{
	size_t i;

	if (!cfg)
		return NULL;
	for (i = 0; i < cfg->n_projects; i++)
		if (cfg->projects[i].id == id)
			return &cfg->projects[i];
	return NULL;
}
