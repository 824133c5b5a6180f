/*
 * test_http_reply.c - unit tests for src/http_reply.c (contract:
 * include/http_reply.h; bodies: ../shared/spec/mixpanel-http-api.md §4,
 * §5.3, §6.2, §6.5).
 *
 * Bodies, statuses, content types and headers are compared byte for byte
 * with literals written from the spec; the strict /import bodies are also
 * compared in shape (cJSON_Compare) with the spec's example files, which
 * are read at run time.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "http_reply.h"
#include "ingest.h"
#include "testlib.h"

#define SPEC_EXAMPLES "../shared/spec/examples/"

static const char *header(const struct http_reply *rep, const char *name)
{
	size_t i;

	for (i = 0; i < rep->n_headers; i++)
		if (strcmp(rep->headers[i][0], name) == 0)
			return rep->headers[i][1];
	return NULL;
}

/* Compare status, content type and body (exact bytes). */
static void reply_is_at(const struct http_reply *rep, int status, const char *ctype, const char *body, int line)
{
	size_t n = strlen(body);

	if (rep->status != status || !rep->content_type || strcmp(rep->content_type, ctype) != 0 ||
	    rep->body.len != n || (n && memcmp(rep->body.data, body, n) != 0)) {
		fprintf(stderr, "%s:%d: reply %d %s \"%.*s\"\n          want %d %s \"%s\"\n", __FILE__, line,
			rep->status, rep->content_type ? rep->content_type : "(null)", (int)rep->body.len,
			rep->body.data ? rep->body.data : "", status, ctype, body);
		tl_cur_failed = 1;
	}
}
#define REPLY_IS(rep, status, ctype, body) reply_is_at((rep), (status), (ctype), (body), __LINE__)

static cJSON *read_json_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *text;
	long n;
	cJSON *v;

	if (!f) {
		fprintf(stderr, "cannot open %s\n", path);
		return NULL;
	}
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	text = malloc((size_t)n + 1);
	if (!text || fread(text, 1, (size_t)n, f) != (size_t)n) {
		fclose(f);
		free(text);
		return NULL;
	}
	text[n] = '\0';
	fclose(f);
	v = cJSON_Parse(text);
	free(text);
	return v;
}

/* An ingest outcome over RES with everything else at its default. */
static struct http_ingest_outcome outcome(const struct ingest_result *res)
{
	struct http_ingest_outcome o;

	memset(&o, 0, sizeof o);
	o.ing = res;
	return o;
}

static struct ingest_result result(size_t n_records, size_t n_valid)
{
	struct ingest_result r;

	memset(&r, 0, sizeof r);
	r.n_records = n_records;
	r.n_valid = n_valid;
	return r;
}

static const unsigned char PIXEL[43] = {
	'G', 'I', 'F', '8', '9', 'a', 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00,   /* 1x1, 2-colour table */
	0x00, 0x00, 0x00, 0xff, 0xff, 0xff,                                       /* black, white */
	0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00,                           /* transparent index 0 */
	0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00,               /* image descriptor */
	0x02, 0x02, 0x44, 0x01, 0x00,                                             /* LZW data */
	0x3b,
};

/* ---------- classic ingestion answers ---------- */

static void plain_accepted_is_200_text_1(void)
{
	struct ingest_result r = result(2, 1);
	struct http_ingest_outcome o = outcome(&r);
	struct http_reply rep;

	snprintf(r.first_error, sizeof r.first_error, "%s", "'event' must be a non-empty string");
	http_reply_ingest(&rep, &o);
	REPLY_IS(&rep, 200, "text/plain", "1");
	CHECK_INT(rep.n_headers, 0);
	http_reply_free(&rep);
}

static void plain_nothing_accepted_is_200_text_0(void)
{
	struct ingest_result r = result(2, 0);
	struct http_ingest_outcome o = outcome(&r);
	struct http_reply rep;

	http_reply_ingest(&rep, &o);
	REPLY_IS(&rep, 200, "text/plain", "0");
	http_reply_free(&rep);
	r = result(0, 0);
	http_reply_ingest(&rep, &o);
	REPLY_IS(&rep, 200, "text/plain", "0");
	http_reply_free(&rep);
}

static void verbose_accepted_is_status_1_error_null(void)
{
	struct ingest_result r = result(1, 1);
	struct http_ingest_outcome o = outcome(&r);
	struct http_reply rep;

	o.verbose = 1;
	http_reply_ingest(&rep, &o);
	REPLY_IS(&rep, 200, "application/json", "{\"status\":1,\"error\":null}");
	http_reply_free(&rep);
}

static void verbose_rejected_carries_the_first_error_escaped(void)
{
	struct ingest_result r = result(1, 0);
	struct http_ingest_outcome o = outcome(&r);
	struct http_reply rep;

	o.verbose = 1;
	snprintf(r.first_error, sizeof r.first_error, "%s", "bad \"q\" \\ 'x'");
	http_reply_ingest(&rep, &o);
	REPLY_IS(&rep, 200, "application/json", "{\"status\":0,\"error\":\"bad \\\"q\\\" \\\\ 'x'\"}");
	http_reply_free(&rep);
}

static void verbose_empty_request_says_data_missing_or_empty(void)
{
	struct ingest_result r = result(0, 0);
	struct http_ingest_outcome o = outcome(&r);
	struct http_reply rep;

	o.verbose = 1;
	http_reply_ingest(&rep, &o);
	REPLY_IS(&rep, 200, "application/json", "{\"status\":0,\"error\":\"data, missing or empty\"}");
	http_reply_free(&rep);
}

static void jsonp_wraps_the_answer_in_the_callback(void)
{
	struct ingest_result r = result(1, 1);
	struct http_ingest_outcome o = outcome(&r);
	struct http_reply rep;

	o.callback = "cb";
	http_reply_ingest(&rep, &o);
	REPLY_IS(&rep, 200, "text/javascript", "cb(1)");
	http_reply_free(&rep);
	o.verbose = 1;
	http_reply_ingest(&rep, &o);
	REPLY_IS(&rep, 200, "text/javascript", "cb({\"status\":1,\"error\":null})");
	http_reply_free(&rep);
	r = result(1, 0);
	o.verbose = 0;
	http_reply_ingest(&rep, &o);
	REPLY_IS(&rep, 200, "text/javascript", "cb(0)");
	http_reply_free(&rep);
	/* an empty callback is no callback */
	o.callback = "";
	http_reply_ingest(&rep, &o);
	REPLY_IS(&rep, 200, "text/plain", "0");
	http_reply_free(&rep);
}

static void img_answers_the_transparent_gif_whatever_the_outcome(void)
{
	struct ingest_result r = result(1, 1);
	struct http_ingest_outcome o = outcome(&r);
	struct http_reply rep;
	int k;

	o.img = 1;
	for (k = 0; k < 3; k++) {
		if (k == 1)
			r = result(1, 0);
		if (k == 2) {
			o.decode_rc = MP_E_PARSE;
			o.verbose = 1;
		}
		http_reply_ingest(&rep, &o);
		CHECK_INT(rep.status, 200);
		CHECK_STR(rep.content_type, "image/gif");
		CHECK_INT(rep.body.len, sizeof PIXEL);
		CHECK(rep.body.len == sizeof PIXEL && memcmp(rep.body.data, PIXEL, sizeof PIXEL) == 0);
		http_reply_free(&rep);
	}
}

/* ---------- strict /import answers ---------- */

static void strict_success_is_200_with_count_matching_the_spec_example(void)
{
	struct ingest_result r = result(2, 2);
	struct http_ingest_outcome o = outcome(&r);
	struct http_reply rep;
	cJSON *got, *want = read_json_file(SPEC_EXAMPLES "import-strict-200.json");

	o.endpoint_import = 1;
	o.strict_shape = 1;
	http_reply_ingest(&rep, &o);
	REPLY_IS(&rep, 200, "application/json", "{\"code\":200,\"num_records_imported\":2,\"status\":\"OK\"}");
	got = cJSON_Parse(rep.body.data);
	CHECK(want != NULL);
	CHECK(cJSON_Compare(got, want, 1));
	cJSON_Delete(got);
	cJSON_Delete(want);
	http_reply_free(&rep);
	r = result(0, 0);
	http_reply_ingest(&rep, &o);
	REPLY_IS(&rep, 200, "application/json", "{\"code\":200,\"num_records_imported\":0,\"status\":\"OK\"}");
	http_reply_free(&rep);
}

static void strict_failure_is_400_with_failed_records_matching_the_spec_example(void)
{
	struct ingest_result r = result(2, 1);
	struct ingest_failure f[1];
	struct http_ingest_outcome o = outcome(&r);
	struct http_reply rep;
	char iid[] = "bad-event-0002";
	cJSON *got, *want = read_json_file(SPEC_EXAMPLES "import-strict-400.json");

	memset(f, 0, sizeof f);
	f[0].index = 1;
	f[0].insert_id = iid;
	snprintf(f[0].field, sizeof f[0].field, "properties.time");
	snprintf(f[0].message, sizeof f[0].message,
		 "'properties.time' is invalid: must be specified as seconds since epoch");
	r.failures = f;
	r.n_failures = 1;
	o.endpoint_import = 1;
	o.strict_shape = 1;
	http_reply_ingest(&rep, &o);
	REPLY_IS(&rep, 400, "application/json",
		 "{\"code\":400,\"error\":\"some data points in the request failed validation\","
		 "\"num_records_imported\":1,\"status\":\"Bad Request\",\"failed_records\":["
		 "{\"index\":1,\"$insert_id\":\"bad-event-0002\",\"insert_id\":\"bad-event-0002\","
		 "\"field\":\"properties.time\","
		 "\"message\":\"'properties.time' is invalid: must be specified as seconds since epoch\"}]}");
	got = cJSON_Parse(rep.body.data);
	CHECK(want != NULL);
	CHECK(cJSON_Compare(got, want, 1));
	cJSON_Delete(got);
	cJSON_Delete(want);
	CHECK_INT(rep.n_headers, 0);
	http_reply_free(&rep);
}

static void strict_failure_lists_every_record_and_omits_absent_ids(void)
{
	struct ingest_result r = result(3, 0);
	struct ingest_failure f[3];
	struct http_ingest_outcome o = outcome(&r);
	struct http_reply rep;
	char did[] = "u \"1\"", iid[] = "i-3";

	memset(f, 0, sizeof f);
	f[0].index = 0;
	snprintf(f[0].field, sizeof f[0].field, "properties.$insert_id");
	snprintf(f[0].message, sizeof f[0].message, "'properties.$insert_id' is required");
	f[1].index = 1;
	f[1].distinct_id = did;
	snprintf(f[1].field, sizeof f[1].field, "$set");
	snprintf(f[1].message, sizeof f[1].message, "no profile operation in update");
	f[2].index = 2;
	f[2].insert_id = iid;
	snprintf(f[2].field, sizeof f[2].field, "properties");
	snprintf(f[2].message, sizeof f[2].message, "a\nb");
	r.failures = f;
	r.n_failures = 3;
	o.strict_shape = 1;
	http_reply_ingest(&rep, &o);
	REPLY_IS(&rep, 400, "application/json",
		 "{\"code\":400,\"error\":\"some data points in the request failed validation\","
		 "\"num_records_imported\":0,\"status\":\"Bad Request\",\"failed_records\":["
		 "{\"index\":0,\"field\":\"properties.$insert_id\",\"message\":\"'properties.$insert_id' is required\"},"
		 "{\"index\":1,\"$distinct_id\":\"u \\\"1\\\"\",\"field\":\"$set\",\"message\":\"no profile operation in update\"},"
		 "{\"index\":2,\"$insert_id\":\"i-3\",\"insert_id\":\"i-3\",\"field\":\"properties\",\"message\":\"a\\nb\"}]}");
	http_reply_free(&rep);
}

static void strict_decode_failure_is_400_with_the_reason(void)
{
	struct http_ingest_outcome o = outcome(NULL);
	struct http_reply rep;

	o.endpoint_import = 1;
	o.strict_shape = 1;
	o.decode_rc = MP_E_PARSE;
	o.decode_err = "cannot decode 'data': invalid \"base64\"";
	http_reply_ingest(&rep, &o);
	REPLY_IS(&rep, 400, "application/json",
		 "{\"code\":400,\"error\":\"cannot decode 'data': invalid \\\"base64\\\"\","
		 "\"num_records_imported\":0,\"status\":\"Bad Request\"}");
	http_reply_free(&rep);
	o.decode_err = NULL;
	http_reply_ingest(&rep, &o);
	REPLY_IS(&rep, 400, "application/json",
		 "{\"code\":400,\"error\":\"cannot decode payload\",\"num_records_imported\":0,\"status\":\"Bad Request\"}");
	http_reply_free(&rep);
	o.decode_rc = MP_E_TOOBIG;
	o.decode_err = "too many records in one request: 2001 (the limit is 2000)";
	http_reply_ingest(&rep, &o);
	REPLY_IS(&rep, 400, "application/json",
		 "{\"code\":400,\"error\":\"too many records in one request: 2001 (the limit is 2000)\","
		 "\"num_records_imported\":0,\"status\":\"Bad Request\"}");
	http_reply_free(&rep);
}

static void classic_decode_failure_is_200_with_0(void)
{
	struct http_ingest_outcome o = outcome(NULL);
	struct http_reply rep;

	o.decode_rc = MP_E_PARSE;
	o.decode_err = "invalid JSON at byte 3";
	http_reply_ingest(&rep, &o);
	REPLY_IS(&rep, 200, "text/plain", "0");
	http_reply_free(&rep);
	o.verbose = 1;
	http_reply_ingest(&rep, &o);
	REPLY_IS(&rep, 200, "application/json", "{\"status\":0,\"error\":\"invalid JSON at byte 3\"}");
	http_reply_free(&rep);
	o.decode_err = "";
	http_reply_ingest(&rep, &o);
	REPLY_IS(&rep, 200, "application/json", "{\"status\":0,\"error\":\"cannot decode payload\"}");
	http_reply_free(&rep);
	o.callback = "f";
	o.verbose = 0;
	http_reply_ingest(&rep, &o);
	REPLY_IS(&rep, 200, "text/javascript", "f(0)");
	http_reply_free(&rep);
}

/* ---------- store failures ---------- */

static void store_failure_is_503_verbose_json_with_retry_after(void)
{
	struct ingest_result r = result(1, 1);
	struct http_ingest_outcome o = outcome(&r);
	struct http_reply rep;

	o.store_rc = MP_E_FULL;
	o.store_err = "storage unavailable (disk full or data directory not writable)";
	http_reply_ingest(&rep, &o);
	REPLY_IS(&rep, 503, "application/json",
		 "{\"status\":0,\"error\":\"storage unavailable (disk full or data directory not writable)\"}");
	CHECK_STR(header(&rep, "Retry-After"), "1");
	http_reply_free(&rep);
	/* a pixel or JSONP request still gets the JSON reason on a 5xx */
	o.img = 1;
	o.callback = "cb";
	o.store_rc = MP_E_STORE;
	o.store_err = "";
	http_reply_ingest(&rep, &o);
	REPLY_IS(&rep, 503, "application/json", "{\"status\":0,\"error\":\"storage error\"}");
	CHECK_STR(header(&rep, "Retry-After"), "1");
	http_reply_free(&rep);
}

static void strict_store_failure_is_503_strict_json_with_retry_after(void)
{
	struct ingest_result r = result(2, 2);
	struct http_ingest_outcome o = outcome(&r);
	struct http_reply rep;

	o.endpoint_import = 1;
	o.strict_shape = 1;
	o.store_rc = MP_E_SHUTDOWN;
	o.store_err = "server is shutting down";
	http_reply_ingest(&rep, &o);
	REPLY_IS(&rep, 503, "application/json",
		 "{\"code\":503,\"error\":\"server is shutting down\",\"status\":\"Service Unavailable\"}");
	CHECK_STR(header(&rep, "Retry-After"), "1");
	CHECK_INT(rep.n_headers, 1);
	http_reply_free(&rep);
	o.store_err = NULL;
	http_reply_ingest(&rep, &o);
	REPLY_IS(&rep, 503, "application/json",
		 "{\"code\":503,\"error\":\"server is shutting down\",\"status\":\"Service Unavailable\"}");
	http_reply_free(&rep);
}

/* ---------- errors and fixed answers ---------- */

static void error_413_uses_the_code_error_status_shape(void)
{
	struct http_reply rep;

	http_reply_error(&rep, 413, "request exceeds max limit of 2097152 bytes", "/import");
	REPLY_IS(&rep, 413, "application/json",
		 "{\"code\":413,\"error\":\"request exceeds max limit of 2097152 bytes\","
		 "\"status\":\"Request Entity Too Large\"}");
	CHECK(header(&rep, "Retry-After") == NULL);
	http_reply_free(&rep);
}

static void error_429_uses_the_code_shape_and_asks_to_retry(void)
{
	struct http_reply rep;

	http_reply_error(&rep, 429, "Project exceeded rate limits. Please retry the request with exponential backoff.", NULL);
	REPLY_IS(&rep, 429, "application/json",
		 "{\"code\":429,\"error\":\"Project exceeded rate limits. Please retry the request with exponential backoff.\","
		 "\"status\":\"Too Many Requests\"}");
	CHECK_STR(header(&rep, "Retry-After"), "1");
	http_reply_free(&rep);
}

static void query_errors_echo_the_request_with_status_error(void)
{
	struct http_reply rep;

	http_reply_error(&rep, 400, "bad \"from_date\"", "/api/2.0/export?from_date=2024-02-30");
	REPLY_IS(&rep, 400, "application/json",
		 "{\"error\":\"bad \\\"from_date\\\"\",\"request\":\"/api/2.0/export?from_date=2024-02-30\","
		 "\"status\":\"error\"}");
	CHECK_INT(rep.n_headers, 0);
	http_reply_free(&rep);
	http_reply_error(&rep, 401, "Invalid credentials", NULL);
	REPLY_IS(&rep, 401, "application/json", "{\"error\":\"Invalid credentials\",\"request\":\"\",\"status\":\"error\"}");
	http_reply_free(&rep);
	http_reply_error(&rep, 503, "server busy, retry later", "/track");
	REPLY_IS(&rep, 503, "application/json",
		 "{\"error\":\"server busy, retry later\",\"request\":\"/track\",\"status\":\"error\"}");
	CHECK_STR(header(&rep, "Retry-After"), "1");
	http_reply_free(&rep);
}

static void import_unauthorized_is_401_with_basic_challenge(void)
{
	struct http_reply rep;

	http_reply_import_unauthorized(&rep);
	REPLY_IS(&rep, 401, "application/json", "{\"code\":401,\"error\":\"Invalid credentials\",\"status\":\"Unauthorized\"}");
	CHECK_STR(header(&rep, "WWW-Authenticate"), "Basic realm=\"mixpanel\"");
	http_reply_free(&rep);
}

static void preflight_is_204_allowing_methods_and_requested_headers(void)
{
	struct http_reply rep;
	char longh[200];

	http_reply_preflight(&rep, "Authorization, X-Custom");
	REPLY_IS(&rep, 204, "text/plain", "");
	CHECK_STR(header(&rep, "Access-Control-Allow-Methods"), "GET, POST, OPTIONS");
	CHECK_STR(header(&rep, "Access-Control-Allow-Headers"), "Authorization, X-Custom");
	CHECK_STR(header(&rep, "Access-Control-Max-Age"), "86400");
	http_reply_free(&rep);
	http_reply_preflight(&rep, NULL);
	CHECK_STR(header(&rep, "Access-Control-Allow-Headers"),
		  "Authorization, Content-Type, Content-Encoding, traceparent");
	http_reply_free(&rep);
	http_reply_preflight(&rep, "");
	CHECK_STR(header(&rep, "Access-Control-Allow-Headers"),
		  "Authorization, Content-Type, Content-Encoding, traceparent");
	http_reply_free(&rep);
	memset(longh, 'h', 150);
	longh[150] = '\0';
	http_reply_preflight(&rep, longh);
	CHECK_STR(header(&rep, "Access-Control-Allow-Headers"),
		  "Authorization, Content-Type, Content-Encoding, traceparent");
	http_reply_free(&rep);
}

static void decide_answers_the_universal_empty_configuration(void)
{
	struct http_reply rep;

	http_reply_decide(&rep);
	REPLY_IS(&rep, 200, "application/json",
		 "{\"notifications\":[],\"surveys\":[],\"variants\":[],\"event_bindings\":[],"
		 "\"integrations\":[],\"automatic_events\":false,\"config\":{\"enable_collect_everything\":false}}");
	http_reply_free(&rep);
}

static const char HEALTHZ_CFG[] = "[project.p]\nid = 1\ntoken = t1\napi_secret = s1\n"
				   "[project.q-2]\nid = 2147483647\ntoken = t2\napi_secret = s2\n";

static void healthz_lists_projects_with_ids_and_event_counts(void)
{
	struct config *cfg = NULL;
	char err[256];
	int64_t counts[2] = { 7, INT64_C(12345678901) };
	const char *const no_problems[2] = { NULL, NULL };
	struct http_reply rep;

	CHECK_INT(config_parse(HEALTHZ_CFG, strlen(HEALTHZ_CFG), "t.ini", &cfg, err, sizeof err), MP_OK);
	if (!cfg)
		return;
	http_reply_healthz(&rep, cfg, counts, NULL, 42, "1.2.3");
	REPLY_IS(&rep, 200, "application/json",
		 "{\"status\":\"ok\",\"version\":\"1.2.3\",\"uptime_s\":42,\"projects\":{"
		 "\"p\":{\"id\":1,\"events\":7},\"q-2\":{\"id\":2147483647,\"events\":12345678901}}}");
	http_reply_free(&rep);
	http_reply_healthz(&rep, cfg, counts, no_problems, 0, "v");
	REPLY_IS(&rep, 200, "application/json",
		 "{\"status\":\"ok\",\"version\":\"v\",\"uptime_s\":0,\"projects\":{"
		 "\"p\":{\"id\":1,\"events\":7},\"q-2\":{\"id\":2147483647,\"events\":12345678901}}}");
	http_reply_free(&rep);
	config_free(cfg);
}

static void healthz_with_a_failing_project_is_503_degraded_with_its_error(void)
{
	struct config *cfg = NULL;
	char err[256];
	int64_t counts[2] = { 7, 0 };
	const char *const problems[2] = { NULL, "storage unavailable (disk \"full\")" };
	struct http_reply rep;

	CHECK_INT(config_parse(HEALTHZ_CFG, strlen(HEALTHZ_CFG), "t.ini", &cfg, err, sizeof err), MP_OK);
	if (!cfg)
		return;
	http_reply_healthz(&rep, cfg, counts, problems, 5, "1.2.3");
	REPLY_IS(&rep, 503, "application/json",
		 "{\"status\":\"degraded\",\"version\":\"1.2.3\",\"uptime_s\":5,\"projects\":{"
		 "\"p\":{\"id\":1,\"events\":7},"
		 "\"q-2\":{\"id\":2147483647,\"events\":0,\"error\":\"storage unavailable (disk \\\"full\\\")\"}}}");
	http_reply_free(&rep);
	config_free(cfg);
}

static void header_list_is_capped_and_values_are_cut_to_127_bytes(void)
{
	struct http_reply rep;
	char name[16], longv[300];
	int i;

	http_reply_decide(&rep);
	for (i = 0; i < HTTP_REPLY_MAX_HEADERS + 2; i++) {
		snprintf(name, sizeof name, "X-H%d", i);
		http_reply_header(&rep, name, "v");
	}
	CHECK_INT(rep.n_headers, HTTP_REPLY_MAX_HEADERS);
	CHECK(header(&rep, "X-H7") != NULL);
	CHECK(header(&rep, "X-H8") == NULL);
	http_reply_free(&rep);
	http_reply_decide(&rep);
	memset(longv, 'v', 299);
	longv[299] = '\0';
	http_reply_header(&rep, "X-Long", longv);
	CHECK_INT(strlen(header(&rep, "X-Long")), 127);
	http_reply_free(&rep);
}

/* ---------- http_parse_date ---------- */

static void date_check_at(const char *s, int want_rc, int64_t want_ms, int line)
{
	int64_t ms = -1;
	int rc = http_parse_date(s, &ms);

	if (rc != want_rc || (want_rc == 0 && ms != want_ms)) {
		fprintf(stderr, "%s:%d: http_parse_date(\"%s\") = %d, %lld; want %d, %lld\n", __FILE__, line, s, rc,
			(long long)ms, want_rc, (long long)want_ms);
		tl_cur_failed = 1;
	}
}
#define DATE_OK(s, ms) date_check_at((s), 0, (ms), __LINE__)
#define DATE_BAD(s) date_check_at((s), -1, 0, __LINE__)

static void parse_date_gives_utc_midnight_in_ms(void)
{
	DATE_OK("1971-01-01", INT64_C(31536000000));
	DATE_OK("2024-01-01", INT64_C(1704067200000));
	DATE_OK("2024-02-29", INT64_C(1709164800000));
	DATE_OK("2024-03-15", INT64_C(1710460800000));
	DATE_OK("2000-02-29", INT64_C(951782400000));
	DATE_OK("9999-12-31", INT64_C(253402214400000));
}

static void parse_date_rejects_impossible_dates(void)
{
	DATE_BAD("2024-02-30");
	DATE_BAD("2023-02-29");
	DATE_BAD("1900-02-29");
	DATE_BAD("2024-04-31");
	DATE_BAD("2024-13-01");
	DATE_BAD("2024-00-10");
	DATE_BAD("2024-01-00");
	DATE_BAD("2024-01-32");
}

static void parse_date_rejects_other_shapes(void)
{
	DATE_BAD("2024-1-1");
	DATE_BAD("2024-01-1");
	DATE_BAD("24-01-01");
	DATE_BAD("2024/01/01");
	DATE_BAD("2024-01-01x");
	DATE_BAD("2024-01-01 ");
	DATE_BAD("2024-01-01T00:00:00");
	DATE_BAD("");
	DATE_BAD("abcd-ef-gh");
	DATE_BAD("20240101");
}

/* "YYYY-MM-DD" means digits only: scanf's %d also takes signs and skips
 * blanks, and the length check alone lets these ten-byte strings through. */
static void parse_date_rejects_signs_and_blanks_inside_the_fields(void)
{
	DATE_BAD("2024-+1-01");
	DATE_BAD("2024- 1-01");
	DATE_BAD("2024-01-+1");
	DATE_BAD(" 2024-01-1");
	DATE_BAD("+024-01-01");
}

int main(void)
{
	TEST_RUN(plain_accepted_is_200_text_1);
	TEST_RUN(plain_nothing_accepted_is_200_text_0);
	TEST_RUN(verbose_accepted_is_status_1_error_null);
	TEST_RUN(verbose_rejected_carries_the_first_error_escaped);
	TEST_RUN(verbose_empty_request_says_data_missing_or_empty);
	TEST_RUN(jsonp_wraps_the_answer_in_the_callback);
	TEST_RUN(img_answers_the_transparent_gif_whatever_the_outcome);
	TEST_RUN(strict_success_is_200_with_count_matching_the_spec_example);
	TEST_RUN(strict_failure_is_400_with_failed_records_matching_the_spec_example);
	TEST_RUN(strict_failure_lists_every_record_and_omits_absent_ids);
	TEST_RUN(strict_decode_failure_is_400_with_the_reason);
	TEST_RUN(classic_decode_failure_is_200_with_0);
	TEST_RUN(store_failure_is_503_verbose_json_with_retry_after);
	TEST_RUN(strict_store_failure_is_503_strict_json_with_retry_after);
	TEST_RUN(error_413_uses_the_code_error_status_shape);
	TEST_RUN(error_429_uses_the_code_shape_and_asks_to_retry);
	TEST_RUN(query_errors_echo_the_request_with_status_error);
	TEST_RUN(import_unauthorized_is_401_with_basic_challenge);
	TEST_RUN(preflight_is_204_allowing_methods_and_requested_headers);
	TEST_RUN(decide_answers_the_universal_empty_configuration);
	TEST_RUN(healthz_lists_projects_with_ids_and_event_counts);
	TEST_RUN(healthz_with_a_failing_project_is_503_degraded_with_its_error);
	TEST_RUN(header_list_is_capped_and_values_are_cut_to_127_bytes);
	TEST_RUN(parse_date_gives_utc_midnight_in_ms);
	TEST_RUN(parse_date_rejects_impossible_dates);
	TEST_RUN(parse_date_rejects_other_shapes);
	TEST_RUN(parse_date_rejects_signs_and_blanks_inside_the_fields);
	return TEST_DONE();
}
