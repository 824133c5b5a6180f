/*
 * test_req_parse.c - unit tests for src/req_parse.c.
 *
 * Two kinds of test: data-driven ones that read the spec's wire variants
 * (../shared/spec/examples/track-body-variants.txt) and replay every request
 * captured from the real SDKs (every .json file in ../shared/fixtures/sdk-capture), and
 * hand-made ones for each encoding rule and error of include/req_parse.h.
 * Paths are relative to the repository root, where `make unit` runs the binary.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <zlib.h>

#include "req_parse.h"
#include "testlib.h"

#define VARIANTS_PATH "../shared/spec/examples/track-body-variants.txt"
#define BATCH_PATH    "../shared/spec/examples/track-batch.json"
#define FIXTURE_DIR   "../shared/fixtures/sdk-capture"
#define MAX_INFLATED  (1u << 20)

/* ---- helpers ----------------------------------------------------------- */

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n + 1);
		if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		}
		if (buf != NULL) {
			buf[n] = '\0';
			if (len != NULL)
				*len = (size_t)n;
		}
	}
	fclose(f);
	return buf;
}

static enum mp_err decode_full(const char *query, const void *body, size_t blen,
			       const char *ctype, const char *cenc, size_t max_inflated,
			       struct rp_result *res, char *err, size_t errlen)
{
	struct rp_request req;

	memset(&req, 0, sizeof(req));
	req.query = query;
	req.query_len = query ? strlen(query) : 0;
	req.body = body;
	req.body_len = blen;
	req.content_type = ctype;
	req.content_encoding = cenc;
	req.max_inflated = max_inflated;
	return rp_decode(&req, res, err, errlen);
}

static enum mp_err decode(const char *query, const char *body, const char *ctype,
			  struct rp_result *res, char *err, size_t errlen)
{
	return decode_full(query, body, body ? strlen(body) : 0, ctype, NULL,
			   MAX_INFLATED, res, err, errlen);
}

/* zlib-compress IN; GZIP selects the gzip wrapper (else zlib's). */
static unsigned char *deflate_buf(const void *in, size_t len, int gzip, size_t *outlen)
{
	z_stream zs;
	unsigned char *out;
	uLong bound;

	memset(&zs, 0, sizeof(zs));
	if (deflateInit2(&zs, 9, Z_DEFLATED, gzip ? 15 + 16 : 15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return NULL;
	bound = deflateBound(&zs, (uLong)len) + 32;
	out = malloc(bound);
	if (out == NULL) {
		deflateEnd(&zs);
		return NULL;
	}
	zs.next_in = (Bytef *)(uintptr_t)in;
	zs.avail_in = (uInt)len;
	zs.next_out = out;
	zs.avail_out = (uInt)bound;
	if (deflate(&zs, Z_FINISH) != Z_STREAM_END) {
		deflateEnd(&zs);
		free(out);
		return NULL;
	}
	*outlen = zs.total_out;
	deflateEnd(&zs);
	return out;
}

/* Percent-encode everything but unreserved characters (encodeURIComponent). */
static char *pct_encode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s), o = 0, i;
	char *out = malloc(n * 3 + 1);

	if (out == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.' || c == '~') {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return out;
}

/* malloc'd concatenation of up to three strings */
static char *cat3(const char *a, const char *b, const char *c)
{
	size_t la = strlen(a), lb = strlen(b), lc = c ? strlen(c) : 0;
	char *out = malloc(la + lb + lc + 1);

	if (out == NULL)
		return NULL;
	memcpy(out, a, la);
	memcpy(out + la, b, lb);
	if (lc)
		memcpy(out + la + lb, c, lc);
	out[la + lb + lc] = '\0';
	return out;
}

/* 1 if RES holds exactly the JSON text EXPECT (an object -> single). */
static int result_is(const struct rp_result *res, const char *expect)
{
	cJSON *e = cJSON_Parse(expect);
	int ok;

	if (e == NULL || res->records == NULL)
		ok = 0;
	else if (cJSON_IsObject(e))
		ok = res->single == 1 && cJSON_GetArraySize(res->records) == 1 &&
		     cJSON_Compare(res->records->child, e, 1);
	else
		ok = res->single == 0 && cJSON_Compare(res->records, e, 1);
	cJSON_Delete(e);
	return ok;
}

/* ---- the five wire variants of one batch ------------------------------- */

struct variant {
	const char *label;
	const char *query;
	const char *ctype;
	enum rp_source source;
	int base64;
	const char *ip, *verbose;
};

static const struct variant variants[5] = {
	{ "js-base64", "verbose=1&ip=1&_=1717000006000", "application/x-www-form-urlencoded",
	  RP_SRC_FORM, 1, "1", "1" },
	{ "node-raw-base64", "ip=0&verbose=0", "application/x-www-form-urlencoded",
	  RP_SRC_FORM, 1, "0", "0" },
	{ "python-json", NULL, "application/x-www-form-urlencoded", RP_SRC_FORM, 0, "0", "1" },
	{ "ios-raw-json", NULL, "application/x-www-form-urlencoded", RP_SRC_FORM, 0, "1", NULL },
	{ "swift-json", "ip=1", "application/json", RP_SRC_BODY_JSON, 0, "1", NULL },
};

/* Bodies are the non-comment, non-empty lines of the file, in order. */
static int load_variants(char *file, char *bodies[5])
{
	int n = 0;
	char *line = file;

	while (line != NULL && *line != '\0') {
		char *nl = strchr(line, '\n');

		if (nl != NULL)
			*nl = '\0';
		if (line[0] != '#' && line[0] != '\0' && n < 5)
			bodies[n++] = line;
		line = nl ? nl + 1 : NULL;
	}
	return n;
}

static void test_variants_same_json(void)
{
	char *file = read_file(VARIANTS_PATH, NULL), *bodies[5] = { 0 };
	char *batch = read_file(BATCH_PATH, NULL);
	cJSON *swift = NULL, *expect = NULL;
	int i;

	CHECK(file != NULL);
	if (file == NULL)
		return;
	CHECK_INT(load_variants(file, bodies), 5);
	swift = cJSON_Parse(bodies[4]);
	CHECK(swift != NULL && cJSON_IsArray(swift) && cJSON_GetArraySize(swift) == 2);
	if (batch != NULL) {
		expect = cJSON_Parse(batch);
		CHECK(cJSON_Compare(expect, swift, 1));
	}
	for (i = 0; i < 5 && bodies[i] != NULL; i++) {
		const struct variant *v = &variants[i];
		struct rp_result res;
		char err[128];
		enum mp_err rc = decode(v->query, bodies[i], v->ctype, &res, err, sizeof(err));

		if (rc != MP_OK)
			fprintf(stderr, "variant %s: %s\n", v->label, err);
		CHECK_INT(rc, MP_OK);
		CHECK(res.records != NULL && cJSON_Compare(res.records, swift, 1));
		CHECK_INT(res.single, 0);
		CHECK_INT(res.source, v->source);
		CHECK_INT(res.base64, v->base64);
		if (v->ip)
			CHECK_STR(rp_param(&res, "ip"), v->ip);
		if (v->verbose)
			CHECK_STR(rp_param(&res, "verbose"), v->verbose);
		else
			CHECK(rp_param(&res, "verbose") == NULL);
		CHECK(rp_param(&res, "data") == NULL);
		rp_result_free(&res);
	}
	cJSON_Delete(swift);
	cJSON_Delete(expect);
	free(batch);
	free(file);
}

/* The same variants, gzipped whole (Android gzips the form; Swift the JSON). */
static void test_gzip_variants(void)
{
	char *file = read_file(VARIANTS_PATH, NULL), *bodies[5] = { 0 };
	cJSON *swift;
	int i, gzip;

	CHECK(file != NULL);
	if (file == NULL)
		return;
	CHECK_INT(load_variants(file, bodies), 5);
	swift = cJSON_Parse(bodies[4]);
	for (gzip = 0; gzip <= 1; gzip++) {
		for (i = 0; i < 5 && bodies[i] != NULL; i++) {
			struct rp_result res;
			char err[128];
			size_t zlen = 0;
			unsigned char *z = deflate_buf(bodies[i], strlen(bodies[i]), gzip, &zlen);

			CHECK(z != NULL);
			if (z == NULL)
				continue;
			CHECK_INT(decode_full(variants[i].query, z, zlen, variants[i].ctype, "gzip",
					      MAX_INFLATED, &res, err, sizeof(err)), MP_OK);
			CHECK(res.records != NULL && cJSON_Compare(res.records, swift, 1));
			CHECK_INT(res.source, variants[i].source);
			rp_result_free(&res);
			free(z);
		}
	}
	cJSON_Delete(swift);
	free(file);
}

/* ---- replay of the captured SDK requests -------------------------------- */

static const char *header(const cJSON *headers, const char *name)
{
	const cJSON *h;

	cJSON_ArrayForEach(h, headers) {
		const cJSON *k = cJSON_GetArrayItem(h, 0), *v = cJSON_GetArrayItem(h, 1);

		if (cJSON_IsString(k) && cJSON_IsString(v) && strcasecmp(k->valuestring, name) == 0)
			return v->valuestring;
	}
	return NULL;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int replay_file(const char *path, int *n_cesu)
{
	char *text = read_file(path, NULL);
	cJSON *doc, *reqs, *r;
	int n = 0;

	CHECK(text != NULL);
	if (text == NULL)
		return 0;
	doc = cJSON_Parse(text);
	CHECK(doc != NULL);
	reqs = cJSON_GetObjectItemCaseSensitive(doc, "requests");
	CHECK(cJSON_IsArray(reqs) && cJSON_GetArraySize(reqs) > 0);
	cJSON_ArrayForEach(r, reqs) {
		const cJSON *qs = cJSON_GetObjectItemCaseSensitive(r, "query_string");
		const cJSON *body = cJSON_GetObjectItemCaseSensitive(r, "body_raw");
		const cJSON *hdrs = cJSON_GetObjectItemCaseSensitive(r, "headers");
		const cJSON *dec = cJSON_GetObjectItemCaseSensitive(r, "decoded");
		const cJSON *data = cJSON_GetObjectItemCaseSensitive(dec, "data");
		const cJSON *value = cJSON_GetObjectItemCaseSensitive(data, "value");
		const cJSON *src = cJSON_GetObjectItemCaseSensitive(data, "source");
		const cJSON *encd = cJSON_GetObjectItemCaseSensitive(data, "encoding");
		const cJSON *dq = cJSON_GetObjectItemCaseSensitive(dec, "query");
		const cJSON *cesu = cJSON_GetObjectItemCaseSensitive(data, "cesu8_surrogates");
		const cJSON *f;
		const char *b = cJSON_IsString(body) ? body->valuestring : "";
		struct rp_result res;
		char err[128];
		enum mp_err rc;
		int ok;

		CHECK(value != NULL);
		rc = decode_full(cJSON_IsString(qs) ? qs->valuestring : NULL, b, strlen(b),
				 header(hdrs, "Content-Type"), header(hdrs, "Content-Encoding"),
				 MAX_INFLATED, &res, err, sizeof(err));
		if (rc != MP_OK)
			fprintf(stderr, "%s seq %d: %s\n", path,
				cJSON_GetObjectItemCaseSensitive(r, "seq")->valueint, err);
		CHECK_INT(rc, MP_OK);
		if (cJSON_IsObject(value))
			ok = res.records != NULL && res.single == 1 &&
			     cJSON_GetArraySize(res.records) == 1 &&
			     cJSON_Compare(res.records->child, value, 1);
		else
			ok = res.records != NULL && res.single == 0 &&
			     cJSON_Compare(res.records, value, 1);
		if (!ok)
			fprintf(stderr, "%s seq %d: payload differs\n", path,
				cJSON_GetObjectItemCaseSensitive(r, "seq")->valueint);
		CHECK(ok);
		if (cJSON_IsString(src))
			CHECK_INT(res.source, strcmp(src->valuestring, "query") == 0
				  ? RP_SRC_QUERY : RP_SRC_FORM);
		if (cJSON_IsString(encd))
			CHECK_INT(res.base64, strcmp(encd->valuestring, "base64") == 0);
		/* every query field except data is a parameter (no body field
		 * other than data is ever sent by these SDKs) */
		cJSON_ArrayForEach(f, dq) {
			if (strcmp(f->string, "data") == 0 || !cJSON_IsString(f))
				continue;
			CHECK_STR(rp_param(&res, f->string), f->valuestring);
		}
		CHECK(rp_param(&res, "data") == NULL);
		if (cJSON_IsTrue(cesu))
			(*n_cesu)++;
		rp_result_free(&res);
		n++;
	}
	cJSON_Delete(doc);
	free(text);
	return n;
}

static void test_fixture_replay(void)
{
	DIR *d = opendir(FIXTURE_DIR);
	struct dirent *e;
	char *names[64];
	size_t nn = 0, i;
	int total = 0, n_cesu = 0;

	CHECK(d != NULL);
	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL && nn < 64) {
		size_t l = strlen(e->d_name);

		if (l > 5 && strcmp(e->d_name + l - 5, ".json") == 0)
			names[nn++] = strdup(e->d_name);
	}
	closedir(d);
	qsort(names, nn, sizeof(names[0]), name_cmp);
	CHECK(nn >= 9);
	for (i = 0; i < nn; i++) {
		char path[512];

		snprintf(path, sizeof(path), "%s/%s", FIXTURE_DIR, names[i]);
		total += replay_file(path, &n_cesu);
		free(names[i]);
	}
	CHECK(total >= 75);
	CHECK(n_cesu > 0);  /* the CESU-8 path was really exercised */
	fprintf(stderr, "fixture replay: %d requests (%d with CESU-8 surrogates)\n", total, n_cesu);
}

/* One real browser request: its base64 holds CESU-8 and must come out as
 * proper 4-byte UTF-8 (U+1F680). */
static void test_browser_cesu8_request(void)
{
	char *text = read_file(FIXTURE_DIR "/browser-batch.json", NULL);
	cJSON *doc, *r, *body, *qs;
	struct rp_result res;
	char err[128], *printed;
	unsigned char *raw;
	size_t rawlen = 0;
	char *b64;

	CHECK(text != NULL);
	if (text == NULL)
		return;
	doc = cJSON_Parse(text);
	r = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "requests"), 0);
	body = cJSON_GetObjectItemCaseSensitive(r, "body_raw");
	qs = cJSON_GetObjectItemCaseSensitive(r, "query_string");
	CHECK(cJSON_IsString(body) && cJSON_IsString(qs));
	if (!cJSON_IsString(body) || !cJSON_IsString(qs))
		goto out;
	/* the wire really carries CESU-8: ED A0 BD ED BA 80 */
	CHECK(strncmp(body->valuestring, "data=", 5) == 0);
	b64 = strdup(body->valuestring + 5);
	{
		size_t i, o = 0;

		for (i = 0; b64[i]; i++) {  /* undo %3D etc. */
			if (b64[i] == '%' && b64[i + 1] && b64[i + 2]) {
				char h[3] = { b64[i + 1], b64[i + 2], 0 };

				b64[o++] = (char)strtol(h, NULL, 16);
				i += 2;
			} else {
				b64[o++] = b64[i];
			}
		}
		b64[o] = '\0';
	}
	raw = rp_base64_decode(b64, strlen(b64), &rawlen);
	CHECK(raw != NULL && memmem(raw, rawlen, "\xED\xA0\xBD\xED\xBA\x80", 6) != NULL);
	free(raw);
	free(b64);

	CHECK_INT(decode(qs->valuestring, body->valuestring,
			 "application/x-www-form-urlencoded", &res, err, sizeof(err)), MP_OK);
	printed = res.records ? cJSON_PrintUnformatted(res.records) : NULL;
	CHECK(printed != NULL && strstr(printed, "Z\xC3\xBCrich \xF0\x9F\x9A\x80 a+b=c & d") != NULL);
	CHECK(printed != NULL && strstr(printed, "\xED\xA0") == NULL);
	free(printed);
	rp_result_free(&res);
out:
	cJSON_Delete(doc);
	free(text);
}

/* ---- hand-made cases ---------------------------------------------------- */

static void test_get_query_base64(void)
{
	/* {"event":"x","properties":{"a":1}} base64 ends in "==" */
	const char *json = "{\"event\":\"x\",\"properties\":{\"a\":1}}";
	char *b64 = rp_base64_encode((const unsigned char *)json, strlen(json));
	char *enc = pct_encode(b64), *q;
	struct rp_result res;
	char err[128];

	CHECK(strstr(b64, "==") != NULL);
	CHECK(strstr(enc, "%3D%3D") != NULL);
	q = cat3("ip=0&verbose=0&data=", enc, NULL);
	CHECK_INT(decode(q, NULL, NULL, &res, err, sizeof(err)), MP_OK);
	CHECK(result_is(&res, json));
	CHECK_INT(res.source, RP_SRC_QUERY);
	CHECK_INT(res.base64, 1);
	CHECK_STR(rp_param(&res, "ip"), "0");
	CHECK_STR(rp_param(&res, "verbose"), "0");
	CHECK_INT(res.n_params, 2);
	rp_result_free(&res);
	free(q);
	free(enc);
	free(b64);
}

static void test_node_raw_plus_form(void)
{
	/* "~>" and "?>" make '+' and '/' in standard base64 */
	const char *json = "[{\"event\":\"e\",\"properties\":{\"n\":\"~~~>>>???\"}}]";
	char *b64 = rp_base64_encode((const unsigned char *)json, strlen(json));
	char *body = cat3("data=", b64, NULL);
	struct rp_result res;
	char err[128];

	CHECK(strchr(b64, '+') != NULL);
	CHECK_INT(decode("ip=0&verbose=0", body, "application/x-www-form-urlencoded",
			 &res, err, sizeof(err)), MP_OK);
	CHECK(result_is(&res, json));
	CHECK_INT(res.source, RP_SRC_FORM);
	CHECK_INT(res.base64, 1);
	rp_result_free(&res);
	free(body);
	free(b64);
}

static void test_gzip_json_and_form(void)
{
	const char *json = "[{\"event\":\"a\",\"properties\":{\"token\":\"t\"}},{\"event\":\"b\"}]";
	char *enc = pct_encode(json), *form = cat3("ip=0&data=", enc, "&verbose=1");
	unsigned char *z;
	size_t zlen = 0;
	struct rp_result res;
	char err[128];

	/* gzip wrapper, JSON body */
	z = deflate_buf(json, strlen(json), 1, &zlen);
	CHECK_INT(decode_full("ip=1", z, zlen, "application/json", "gzip", MAX_INFLATED,
			      &res, err, sizeof(err)), MP_OK);
	CHECK(result_is(&res, json));
	CHECK_INT(res.source, RP_SRC_BODY_JSON);
	rp_result_free(&res);
	free(z);

	/* compress2 (zlib wrapper) of a form, labelled gzip: auto-detected */
	zlen = compressBound(strlen(form));
	z = malloc(zlen);
	{
		uLongf dl = zlen;

		CHECK(compress2(z, &dl, (const Bytef *)form, strlen(form), 9) == Z_OK);
		zlen = dl;
	}
	CHECK_INT(decode_full(NULL, z, zlen, "application/x-www-form-urlencoded", "gzip",
			      MAX_INFLATED, &res, err, sizeof(err)), MP_OK);
	CHECK(result_is(&res, json));
	CHECK_INT(res.source, RP_SRC_FORM);
	CHECK_STR(rp_param(&res, "ip"), "0");
	CHECK_STR(rp_param(&res, "verbose"), "1");
	rp_result_free(&res);
	/* other spellings of the header */
	CHECK_INT(decode_full(NULL, z, zlen, NULL, "deflate", MAX_INFLATED, &res, err,
			      sizeof(err)), MP_OK);
	rp_result_free(&res);
	CHECK_INT(decode_full(NULL, z, zlen, NULL, " GZIP ", MAX_INFLATED, &res, err,
			      sizeof(err)), MP_OK);
	rp_result_free(&res);
	/* not compressed when the header says identity: the bytes are garbage */
	CHECK_INT(decode_full(NULL, z, zlen, NULL, "identity", MAX_INFLATED, &res, err,
			      sizeof(err)), MP_E_PARSE);
	rp_result_free(&res);
	free(z);
	free(form);
	free(enc);
}

/* Two gzip members back to back (what `cat a.gz b.gz` makes), then
 * whitespace; anything else after a member is rejected. */
static void test_gzip_members(void)
{
	const char *a = "[{\"event\":\"a\"},", *b = "{\"event\":\"b\"}]";
	size_t la = 0, lb = 0;
	unsigned char *za = deflate_buf(a, strlen(a), 1, &la);
	unsigned char *zb = deflate_buf(b, strlen(b), 1, &lb);
	unsigned char *both = malloc(la + lb + 8);
	struct rp_result res;
	char err[128];

	memcpy(both, za, la);
	memcpy(both + la, zb, lb);
	memcpy(both + la + lb, "\r\n", 2);
	CHECK_INT(decode_full(NULL, both, la + lb + 2, NULL, "gzip", MAX_INFLATED, &res, err,
			      sizeof(err)), MP_OK);
	CHECK(result_is(&res, "[{\"event\":\"a\"},{\"event\":\"b\"}]"));
	rp_result_free(&res);
	memcpy(both + la + lb, "xx", 2);
	CHECK_INT(decode_full(NULL, both, la + lb + 2, NULL, "gzip", MAX_INFLATED, &res, err,
			      sizeof(err)), MP_E_PARSE);
	CHECK_STR(err, "invalid gzip body");
	CHECK(res.records == NULL);
	rp_result_free(&res);
	free(both);
	free(za);
	free(zb);
}

static void test_gzip_bomb(void)
{
	size_t n = 16u << 20, zlen = 0, olen = 0;
	char *zeros = calloc(1, n);
	unsigned char *z = deflate_buf(zeros, n, 1, &zlen), *out = NULL;
	struct rp_result res;
	char err[128];

	CHECK(z != NULL && zlen < 64 * 1024);
	CHECK_INT(decode_full("ip=1", z, zlen, NULL, "gzip", MAX_INFLATED, &res, err,
			      sizeof(err)), MP_E_TOOBIG);
	CHECK_STR(err, "request body too large after decompression");
	CHECK(res.records == NULL);
	CHECK_STR(rp_param(&res, "ip"), "1");  /* params survive the error */
	rp_result_free(&res);
	/* exact boundary */
	CHECK_INT(rp_gunzip(z, zlen, n, &out, &olen), MP_OK);
	CHECK_INT(olen, n);
	CHECK(out != NULL && out[olen] == '\0');
	free(out);
	CHECK_INT(rp_gunzip(z, zlen, n - 1, &out, &olen), MP_E_TOOBIG);
	CHECK(out == NULL);
	CHECK_INT(rp_gunzip(z, zlen, 0, &out, &olen), MP_E_TOOBIG);
	free(z);
	free(zeros);
}

static void test_gzip_corrupt(void)
{
	const char *json = "[{\"event\":\"a\",\"properties\":{\"x\":\"yyyyyyyyyyyyyyyyyyyyyyy\"}}]";
	size_t zlen = 0, olen;
	unsigned char *z = deflate_buf(json, strlen(json), 1, &zlen), *out = NULL;
	struct rp_result res;
	char err[128];
	size_t cut;

	/* truncated at every length */
	for (cut = 1; cut < zlen; cut++) {
		CHECK_INT(rp_gunzip(z, cut, MAX_INFLATED, &out, &olen), MP_E_PARSE);
		CHECK(out == NULL);
	}
	/* flipped bits in the deflate data or the CRC */
	z[zlen / 2] ^= 0x55;
	CHECK_INT(decode_full(NULL, z, zlen, "application/json", "gzip", MAX_INFLATED, &res,
			      err, sizeof(err)), MP_E_PARSE);
	CHECK_STR(err, "invalid gzip body");
	rp_result_free(&res);
	z[zlen / 2] ^= 0x55;
	z[zlen - 6] ^= 0x01;
	CHECK_INT(rp_gunzip(z, zlen, MAX_INFLATED, &out, &olen), MP_E_PARSE);
	/* not gzip at all */
	CHECK_INT(decode_full(NULL, "data=W10=", 9, NULL, "gzip", MAX_INFLATED, &res, err,
			      sizeof(err)), MP_E_PARSE);
	CHECK_STR(err, "invalid gzip body");
	rp_result_free(&res);
	free(z);
}

static void test_invalid_base64(void)
{
	static const char *bodies[] = {
		"data=abc!def", "data=a", "data=Zg%3Da", "data=W3%00", "data=%FF%FE",
	};
	size_t i;

	for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		struct rp_result res;
		char err[128];

		CHECK_INT(decode("verbose=1", bodies[i], NULL, &res, err, sizeof(err)), MP_E_PARSE);
		CHECK_STR(err, "invalid base64 in data");
		CHECK(res.records == NULL && res.single == 0 && res.source == RP_SRC_NONE);
		CHECK_STR(rp_param(&res, "verbose"), "1");
		rp_result_free(&res);
	}
}

static void test_malformed_json(void)
{
	struct rp_result res;
	char err[128];
	char *b64 = rp_base64_encode((const unsigned char *)"[{\"a\":}]", 8), *body;

	CHECK_INT(decode(NULL, "{\"a\":}", "application/json", &res, err, sizeof(err)), MP_E_PARSE);
	CHECK_STR(err, "invalid JSON in data: syntax error at byte 5");
	CHECK(res.records == NULL);
	rp_result_free(&res);

	CHECK_INT(decode(NULL, "  [1,2] x", NULL, &res, err, sizeof(err)), MP_E_PARSE);
	CHECK_STR(err, "invalid JSON in data: syntax error at byte 8");
	rp_result_free(&res);

	CHECK_INT(decode(NULL, "data=%7B%22a%22%3A%7D", NULL, &res, err, sizeof(err)), MP_E_PARSE);
	CHECK_STR(err, "invalid JSON in data: syntax error at byte 5");
	rp_result_free(&res);

	body = cat3("data=", b64, NULL);
	CHECK_INT(decode(NULL, body, NULL, &res, err, sizeof(err)), MP_E_PARSE);
	CHECK_STR(err, "invalid JSON in data: syntax error at byte 6");
	rp_result_free(&res);
	free(body);
	free(b64);

	/* iOS raw JSON that is broken */
	CHECK_INT(decode(NULL, "ip=1&data=[{\"a\":1},", NULL, &res, err, sizeof(err)), MP_E_PARSE);
	CHECK(strncmp(err, "invalid JSON in data: ", 22) == 0);
	CHECK_STR(rp_param(&res, "ip"), "1");
	rp_result_free(&res);
}

static void test_not_object_or_array(void)
{
	static const char *json[] = { "\"hello\"", "123", "true", "null" };
	size_t i;

	for (i = 0; i < sizeof(json) / sizeof(json[0]); i++) {
		char *b64 = rp_base64_encode((const unsigned char *)json[i], strlen(json[i]));
		char *body = cat3("data=", b64, NULL);
		struct rp_result res;
		char err[128];

		CHECK_INT(decode(NULL, body, NULL, &res, err, sizeof(err)), MP_E_PARSE);
		CHECK_STR(err, "data must be a JSON object or array");
		CHECK(res.records == NULL);
		rp_result_free(&res);
		free(body);
		free(b64);
	}
}

static void test_empty_and_no_data(void)
{
	static const char *bodies[] = { "", "data=", "data=%20%0A", "ip=1&verbose=1", "&&&", "   " };
	size_t i;
	struct rp_result res;
	char err[128];

	CHECK_INT(decode(NULL, NULL, NULL, &res, err, sizeof(err)), MP_E_PARSE);
	CHECK_STR(err, "data, missing or empty");
	CHECK(res.records == NULL && res.n_params == 0);
	rp_result_free(&res);
	for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		CHECK_INT(decode("ip=0&_=1", bodies[i], NULL, &res, err, sizeof(err)), MP_E_PARSE);
		CHECK_STR(err, "data, missing or empty");
		CHECK(res.records == NULL);
		CHECK(rp_param(&res, "_") != NULL);
		rp_result_free(&res);
	}
	/* present but empty in the body beats a query data */
	CHECK_INT(decode("data=W10%3D", "data=", NULL, &res, err, sizeof(err)), MP_E_PARSE);
	CHECK_STR(err, "data, missing or empty");
	rp_result_free(&res);
}

static void test_empty_array(void)
{
	struct rp_result res;
	char err[128];

	CHECK_INT(decode(NULL, " [ ] ", "application/json", &res, err, sizeof(err)), MP_OK);
	CHECK(cJSON_IsArray(res.records) && cJSON_GetArraySize(res.records) == 0);
	CHECK_INT(res.single, 0);
	rp_result_free(&res);
	CHECK_INT(decode("data=W10%3D", NULL, NULL, &res, err, sizeof(err)), MP_OK);
	CHECK(cJSON_IsArray(res.records) && cJSON_GetArraySize(res.records) == 0);
	CHECK_INT(res.base64, 1);
	rp_result_free(&res);
	/* elements are not validated here */
	CHECK_INT(decode(NULL, "data=[1,\"x\",null]", NULL, &res, err, sizeof(err)), MP_OK);
	CHECK_INT(cJSON_GetArraySize(res.records), 3);
	rp_result_free(&res);
}

static void test_ndjson(void)
{
	const char *body = "\r\n{\"event\":\"a\"}\r\n\r\n  \n{\"event\":\"b\",\"p\":[1]}\r\n\n";
	const char *expect = "[{\"event\":\"a\"},{\"event\":\"b\",\"p\":[1]}]";
	struct rp_result res;
	char err[128];

	CHECK_INT(decode("strict=1", body, "application/x-ndjson", &res, err, sizeof(err)), MP_OK);
	CHECK(result_is(&res, expect));
	CHECK_INT(res.source, RP_SRC_BODY_JSON);
	CHECK_STR(rp_param(&res, "strict"), "1");
	rp_result_free(&res);
	/* no Content-Type: the whole-body parse fails, lines work */
	CHECK_INT(decode(NULL, body, "application/json", &res, err, sizeof(err)), MP_OK);
	CHECK(result_is(&res, expect));
	rp_result_free(&res);
	/* with parameters in the Content-Type, one line */
	CHECK_INT(decode(NULL, "{\"event\":\"a\"}", "Application/X-NDJSON; charset=utf-8", &res,
			 err, sizeof(err)), MP_OK);
	CHECK_INT(res.single, 0);
	CHECK_INT(cJSON_GetArraySize(res.records), 1);
	rp_result_free(&res);
	/* a pretty-printed object is still one record without the NDJSON type */
	CHECK_INT(decode(NULL, "{\n \"event\": \"a\"\n}\n", NULL, &res, err, sizeof(err)), MP_OK);
	CHECK(result_is(&res, "{\"event\":\"a\"}"));
	rp_result_free(&res);
}

static void test_ndjson_bad_line(void)
{
	struct rp_result res;
	char err[128];

	CHECK_INT(decode(NULL, "{\"a\":1}\n\n{\"b\":\n{\"c\":3}\n", "application/x-ndjson", &res,
			 err, sizeof(err)), MP_E_PARSE);
	CHECK_STR(err, "invalid JSON in data: syntax error at byte 13 (line 3)");
	CHECK(res.records == NULL);
	rp_result_free(&res);
	CHECK_INT(decode(NULL, "{\"a\":1}\r\n[1]\r\n", "application/x-ndjson", &res, err,
			 sizeof(err)), MP_E_PARSE);
	CHECK_STR(err, "invalid JSON in data: line 2 is not a JSON object");
	rp_result_free(&res);
	/* without the type: first line parsed, so the NDJSON error is reported */
	CHECK_INT(decode(NULL, "{\"a\":1}\n{\"b\"}\n", NULL, &res, err, sizeof(err)), MP_E_PARSE);
	CHECK_STR(err, "invalid JSON in data: syntax error at byte 12 (line 2)");
	rp_result_free(&res);
	/* without the type and a broken first line: the whole-body error */
	CHECK_INT(decode(NULL, "[{\"a\":1},\n{\"b\"}]\n", NULL, &res, err, sizeof(err)), MP_E_PARSE);
	CHECK_STR(err, "invalid JSON in data: syntax error at byte 14");
	rp_result_free(&res);
}

static void test_body_data_overrides_query(void)
{
	struct rp_result res;
	char err[128];

	/* query [{"q":1}], body {"b":2} */
	CHECK_INT(decode("data=W3sicSI6MX1d", "data=eyJiIjoyfQ%3D%3D", NULL, &res, err,
			 sizeof(err)), MP_OK);
	CHECK(result_is(&res, "{\"b\":2}"));
	CHECK_INT(res.source, RP_SRC_FORM);
	rp_result_free(&res);
	/* body has no data: the query's is used */
	CHECK_INT(decode("data=W3sicSI6MX1d", "ip=1", NULL, &res, err, sizeof(err)), MP_OK);
	CHECK(result_is(&res, "[{\"q\":1}]"));
	CHECK_INT(res.source, RP_SRC_QUERY);
	CHECK_STR(rp_param(&res, "ip"), "1");
	rp_result_free(&res);
	/* a JSON body beats a query data */
	CHECK_INT(decode("data=W3sicSI6MX1d", "{\"j\":3}", NULL, &res, err, sizeof(err)), MP_OK);
	CHECK(result_is(&res, "{\"j\":3}"));
	CHECK_INT(res.source, RP_SRC_BODY_JSON);
	rp_result_free(&res);
}

static void test_param_merge(void)
{
	struct rp_result res;
	char err[128];
	size_t i;

	CHECK_INT(decode("verbose=0&ip=1&_=123&data=W10%3D&ip=1",
			 "verbose=1&ip=0&data=W3t9XQ%3D%3D&api_key=k%20k&=nameless",
			 "application/x-www-form-urlencoded", &res, err, sizeof(err)), MP_OK);
	CHECK_STR(rp_param(&res, "verbose"), "1");
	CHECK_STR(rp_param(&res, "ip"), "0");
	CHECK_STR(rp_param(&res, "_"), "123");
	CHECK_STR(rp_param(&res, "api_key"), "k k");
	CHECK(rp_param(&res, "data") == NULL);
	CHECK(rp_param(&res, "") == NULL);
	CHECK(rp_param(&res, "missing") == NULL);
	CHECK_INT(res.n_params, 4);
	for (i = 0; i < res.n_params; i++)
		CHECK(strcmp(res.params[i].name, "data") != 0);
	CHECK(result_is(&res, "[{}]"));
	rp_result_free(&res);
	CHECK(res.params == NULL && res.records == NULL);
	rp_result_free(&res);  /* twice is harmless */
}

/* Many repeated and distinct names stay linear-ish and keep the last value. */
static void test_many_params(void)
{
	size_t n = 200000, i, o = 0;
	char *q = malloc(n * 16 + 32);
	struct rp_result res;
	char err[128];

	for (i = 0; i < n; i++)
		o += (size_t)snprintf(q + o, 32, "%s=%zu&", (i & 1) ? "a" : "b", i);
	for (i = 0; i < 1000; i++)
		o += (size_t)snprintf(q + o, 32, "k%zu=%zu&", i, i);
	memcpy(q + o, "data=W10", 9);
	CHECK_INT(decode(q, "b=last", NULL, &res, err, sizeof(err)), MP_OK);
	CHECK_INT(res.n_params, 1002);
	CHECK_STR(rp_param(&res, "a"), "199999");
	CHECK_STR(rp_param(&res, "b"), "last");
	CHECK_STR(rp_param(&res, "k999"), "999");
	rp_result_free(&res);
	free(q);
}

static void test_urlsafe_and_padding(void)
{
	const char *json = "[{\"event\":\"e\",\"properties\":{\"n\":\"~~~>>>???\",\"m\":\"\xC3\xBF\xC3\xBF\"}}]";
	char *b64 = rp_base64_encode((const unsigned char *)json, strlen(json)), *body;
	size_t i, n = strlen(b64);
	struct rp_result res;
	char err[128];

	CHECK(strchr(b64, '+') != NULL && strchr(b64, '/') != NULL);
	for (i = 0; i < n; i++) {
		if (b64[i] == '+')
			b64[i] = '-';
		else if (b64[i] == '/')
			b64[i] = '_';
	}
	while (n > 0 && b64[n - 1] == '=')
		b64[--n] = '\0';
	body = cat3("data=", b64, NULL);
	CHECK_INT(decode(NULL, body, NULL, &res, err, sizeof(err)), MP_OK);
	CHECK(result_is(&res, json));
	CHECK_INT(res.base64, 1);
	rp_result_free(&res);
	free(body);
	/* also from the query, with CR/LF line breaks (MIME style) */
	body = cat3("data=", "W3sia%0D%0AyI6MX1d", NULL);
	CHECK_INT(decode(body, NULL, NULL, &res, err, sizeof(err)), MP_OK);
	CHECK(result_is(&res, "[{\"k\":1}]"));
	rp_result_free(&res);
	free(body);
	free(b64);
}

static void test_sendbeacon_text_plain(void)
{
	const char *json = "{\"event\":\"beacon\",\"properties\":{\"token\":\"t\",\"time\":1.5}}";
	char *b64 = rp_base64_encode((const unsigned char *)json, strlen(json));
	char *enc = pct_encode(b64), *body = cat3("data=", enc, NULL);
	struct rp_result res;
	char err[128];

	CHECK_INT(decode("ip=1&_=1796301918415", body, "text/plain;charset=UTF-8", &res, err,
			 sizeof(err)), MP_OK);
	CHECK(result_is(&res, json));
	CHECK_INT(res.single, 1);
	CHECK_INT(res.source, RP_SRC_FORM);
	CHECK_INT(res.base64, 1);
	CHECK_STR(rp_param(&res, "ip"), "1");
	rp_result_free(&res);
	free(body);
	free(enc);
	free(b64);
}

static void test_ios_raw_json_special(void)
{
	const char *body = "ip=1&data=[{\"event\":\"a&b+c%20d\",\"properties\":{\"x\":\"data=[\"}}]";
	struct rp_result res;
	char err[128];

	CHECK_INT(decode("ip=0", body, NULL, &res, err, sizeof(err)), MP_OK);
	CHECK(result_is(&res, "[{\"event\":\"a&b+c%20d\",\"properties\":{\"x\":\"data=[\"}}]"));
	CHECK_STR(rp_param(&res, "ip"), "1");
	CHECK_INT(res.source, RP_SRC_FORM);
	CHECK_INT(res.base64, 0);
	rp_result_free(&res);
	/* `data=` not at a field start is not the iOS form */
	CHECK_INT(decode(NULL, "xdata=[1]&data=W10%3D", NULL, &res, err, sizeof(err)), MP_OK);
	CHECK(result_is(&res, "[]"));
	CHECK_STR(rp_param(&res, "xdata"), "[1]");
	rp_result_free(&res);
}

/* The percent-decoded value is broken JSON, the raw one is fine. */
static void test_raw_fallback(void)
{
	struct rp_result res;
	char err[128];

	CHECK_INT(decode("data={\"u\":\"%22x%22\"}", NULL, NULL, &res, err, sizeof(err)), MP_OK);
	CHECK(result_is(&res, "{\"u\":\"%22x%22\"}"));
	CHECK_INT(res.source, RP_SRC_QUERY);
	rp_result_free(&res);
	/* both fail: the decoded value's error is reported */
	CHECK_INT(decode("data={\"u\":%22}", NULL, NULL, &res, err, sizeof(err)), MP_E_PARSE);
	CHECK_STR(err, "invalid JSON in data: syntax error at byte 6");
	rp_result_free(&res);
}

static void test_bom_json_body(void)
{
	struct rp_result res;
	char err[128];

	CHECK_INT(decode(NULL, "\xEF\xBB\xBF[{\"event\":\"a\"}]", "application/json", &res, err,
			 sizeof(err)), MP_OK);
	CHECK(result_is(&res, "[{\"event\":\"a\"}]"));
	rp_result_free(&res);
	CHECK_INT(decode(NULL, "\xEF\xBB\xBF{\"event\":\"a\"}\n\n{\"event\":\"b\"}", "application/x-ndjson",
			 &res, err, sizeof(err)), MP_OK);
	CHECK(result_is(&res, "[{\"event\":\"a\"},{\"event\":\"b\"}]"));
	rp_result_free(&res);
}

static void test_cesu8_fix(void)
{
	unsigned char a[] = "a\xED\xA0\xBD\xED\xBA\x80" "b";
	unsigned char lone[] = "\xED\xA0\xBD x \xED\xBA\x80\xED\xA0";
	unsigned char max[] = "\xED\xAF\xBF\xED\xBF\xBF";
	size_t n;

	n = rp_cesu8_fix(a, sizeof(a) - 1);
	CHECK_INT(n, 6);
	CHECK(memcmp(a, "a\xF0\x9F\x9A\x80" "b", 6) == 0);
	n = rp_cesu8_fix(lone, sizeof(lone) - 1);
	CHECK_INT(n, sizeof(lone) - 1);
	CHECK(memcmp(lone, "\xED\xA0\xBD x \xED\xBA\x80\xED\xA0", n) == 0);
	n = rp_cesu8_fix(max, sizeof(max) - 1);  /* U+10FFFF */
	CHECK_INT(n, 4);
	CHECK(memcmp(max, "\xF4\x8F\xBF\xBF", 4) == 0);
	CHECK_INT(rp_cesu8_fix(NULL, 0), 0);
}

static void test_base64_vectors(void)
{
	static const struct { const char *plain, *b64; } v[] = {
		{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
		{ "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
	};
	static const char *bad[] = { "Z", "Zg=a", "Zm9v!", "Z===", "=", "Zm9vY", "Zm\t9v" };
	size_t i, n;
	unsigned char *d;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char *e = rp_base64_encode((const unsigned char *)v[i].plain, strlen(v[i].plain));

		CHECK_STR(e, v[i].b64);
		free(e);
		d = rp_base64_decode(v[i].b64, strlen(v[i].b64), &n);
		CHECK(d != NULL && n == strlen(v[i].plain) && memcmp(d, v[i].plain, n) == 0);
		CHECK(d != NULL && d[n] == '\0');
		free(d);
	}
	d = rp_base64_decode("Zm9v\r\nYg", 8, &n);  /* CRLF, no padding */
	CHECK(d != NULL && n == 4 && memcmp(d, "foob", 4) == 0);
	free(d);
	d = rp_base64_decode("Zm9vYg==\r\n", 10, &n);
	CHECK(d != NULL && n == 4);
	free(d);
	d = rp_base64_decode("-_ +", 4, &n);  /* URL-safe and form-decoded '+' */
	CHECK(d != NULL && n == 3 && memcmp(d, "\xFB\xFF\xBE", 3) == 0);
	free(d);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		d = rp_base64_decode(bad[i], strlen(bad[i]), &n);
		if (d != NULL)
			fprintf(stderr, "accepted bad base64 \"%s\"\n", bad[i]);
		CHECK(d == NULL);
		free(d);
	}
}

static void test_base64_roundtrip(void)
{
	unsigned char buf[700];
	size_t len, i, n;
	uint32_t x = 2463534242u;

	for (len = 0; len < sizeof(buf); len += (len < 70 ? 1 : 37)) {
		char *e;
		unsigned char *d;

		for (i = 0; i < len; i++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			buf[i] = (unsigned char)x;
		}
		e = rp_base64_encode(buf, len);
		CHECK(e != NULL && strlen(e) == (len + 2) / 3 * 4);
		d = rp_base64_decode(e, strlen(e), &n);
		CHECK(d != NULL && n == len && memcmp(d, buf, len) == 0);
		free(d);
		free(e);
	}
}

struct form_seen {
	int n;
	char names[8][16], values[8][16], raws[8][16];
};

static enum mp_err form_cb(const char *name, const char *value, const char *raw,
			   size_t raw_len, void *ctx)
{
	struct form_seen *s = ctx;

	if (s->n >= 8)
		return MP_E_INVALID;
	snprintf(s->names[s->n], 16, "%s", name);
	snprintf(s->values[s->n], 16, "%s", value);
	snprintf(s->raws[s->n], 16, "%.*s", (int)raw_len, raw);
	s->n++;
	return MP_OK;
}

static void test_form_parse(void)
{
	const char *f = "a=1&b=%41+B&c&&=x&d=%zz%4&e%3D=1=2";
	struct form_seen s;

	memset(&s, 0, sizeof(s));
	CHECK_INT(rp_form_parse(f, strlen(f), form_cb, &s), MP_OK);
	CHECK_INT(s.n, 6);
	CHECK_STR(s.names[0], "a");
	CHECK_STR(s.values[0], "1");
	CHECK_STR(s.names[1], "b");
	CHECK_STR(s.values[1], "A B");
	CHECK_STR(s.raws[1], "%41+B");
	CHECK_STR(s.names[2], "c");
	CHECK_STR(s.values[2], "");
	CHECK_STR(s.names[3], "");
	CHECK_STR(s.values[3], "x");
	CHECK_STR(s.values[4], "%zz%4");
	CHECK_STR(s.names[5], "e=");
	CHECK_STR(s.values[5], "1=2");
	/* the callback's code stops the walk */
	memset(&s, 0, sizeof(s));
	CHECK_INT(rp_form_parse("a&a&a&a&a&a&a&a&a&a", 19, form_cb, &s), MP_E_INVALID);
	CHECK_INT(rp_form_parse("", 0, form_cb, &s), MP_OK);
}

/* Not a pass/fail test: prints decode throughput for the two hot shapes. */
static void test_throughput(void)
{
	const char *ev = "{\"event\":\"Page Viewed\",\"properties\":{\"token\":\"PROJECT_TOKEN\","
			 "\"distinct_id\":\"$device:0f1e2d3c-4b5a-4697-8877-665544332211\","
			 "\"time\":1717000000.123,\"$insert_id\":\"a1b2c3d4e5f6g7h8\","
			 "\"mp_lib\":\"web\",\"$os\":\"Linux\",\"$browser\":\"Firefox\"}}";
	size_t evlen = strlen(ev), i, jlen = 0;
	char *json = malloc(50 * (evlen + 1) + 3), *b64, *enc, *body;
	struct rp_result res;
	char err[128];
	int iters = 50, k, ok = 1;

	json[jlen++] = '[';
	for (i = 0; i < 50; i++) {
		if (i)
			json[jlen++] = ',';
		memcpy(json + jlen, ev, evlen);
		jlen += evlen;
	}
	json[jlen++] = ']';
	json[jlen] = '\0';
	b64 = rp_base64_encode((unsigned char *)json, jlen);
	enc = pct_encode(b64);
	body = cat3("data=", enc, NULL);

	/* repeated decodes of one realistic batch (speed is measured by make bench) */
	for (k = 0; k < iters; k++) {
		ok &= decode("verbose=1&ip=1&_=1", body, NULL, &res, err, sizeof(err)) == MP_OK &&
		      cJSON_GetArraySize(res.records) == 50;
		rp_result_free(&res);
	}
	CHECK(ok);
	for (k = 0; k < iters; k++) {
		ok &= decode("ip=1", json, "application/json", &res, err, sizeof(err)) == MP_OK &&
		      cJSON_GetArraySize(res.records) == 50;
		rp_result_free(&res);
	}
	CHECK(ok);
	free(body);
	free(enc);
	free(b64);
	free(json);
}

int main(void)
{
	TEST_RUN(test_variants_same_json);
	TEST_RUN(test_gzip_variants);
	TEST_RUN(test_fixture_replay);
	TEST_RUN(test_browser_cesu8_request);
	TEST_RUN(test_get_query_base64);
	TEST_RUN(test_node_raw_plus_form);
	TEST_RUN(test_gzip_json_and_form);
	TEST_RUN(test_gzip_members);
	TEST_RUN(test_gzip_bomb);
	TEST_RUN(test_gzip_corrupt);
	TEST_RUN(test_invalid_base64);
	TEST_RUN(test_malformed_json);
	TEST_RUN(test_not_object_or_array);
	TEST_RUN(test_empty_and_no_data);
	TEST_RUN(test_empty_array);
	TEST_RUN(test_ndjson);
	TEST_RUN(test_ndjson_bad_line);
	TEST_RUN(test_body_data_overrides_query);
	TEST_RUN(test_param_merge);
	TEST_RUN(test_many_params);
	TEST_RUN(test_urlsafe_and_padding);
	TEST_RUN(test_sendbeacon_text_plain);
	TEST_RUN(test_ios_raw_json_special);
	TEST_RUN(test_raw_fallback);
	TEST_RUN(test_bom_json_body);
	TEST_RUN(test_cesu8_fix);
	TEST_RUN(test_base64_vectors);
	TEST_RUN(test_base64_roundtrip);
	TEST_RUN(test_form_parse);
	TEST_RUN(test_throughput);
	return TEST_DONE();
}
