/*
 * fuzz_req_parse.c - libFuzzer target for src/req_parse.c.
 *
 * Input layout (the corpus in tests/fuzz/corpus/fuzz_req_parse/ follows it):
 *
 *   byte 0      flags
 *                 bit 0     Content-Encoding: gzip, body passed as is
 *                 bit 1     the harness gzips the body first (and says gzip)
 *                 bits 2-4  Content-Type: see content_types[] below
 *                 bit 5     no query string at all (NULL)
 *   bytes 1..   query string, up to the first NUL byte
 *   after NUL   body (may contain NULs); no NUL at all means no body
 *
 * Invariants checked (abort() when violated), from include/req_parse.h:
 *   - MP_OK: records is a non-NULL cJSON array; single implies exactly one
 *     element and that element is an object; source is set; a JSON body is
 *     never base64.
 *   - error: the code is PARSE, TOOBIG (only when inflating) or NOMEM; err is
 *     a non-empty string; records is NULL, single 0, source NONE.
 *   - rp_param() never returns a value for "data"; parameter names are
 *     non-empty, unique and not "data" (rp_param(name) returns that entry).
 *   - rp_result_free() is always called (leaks are caught by ASan).
 * And on the raw input bytes (after the flags byte):
 *   - base64: decode(encode(x)) == x, and if decode(x) = d then
 *     decode(encode(d)) == d with encode's length 4 * ceil(|d| / 3);
 *   - rp_cesu8_fix() never grows its input and leaves input without 0xED as is;
 *   - rp_form_parse() hands out raw values inside the input, and decoded
 *     values no longer than their raw form.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <zlib.h>

#include "req_parse.h"

#define MAX_INFLATED (1u << 20)

static const char *const content_types[8] = {
	NULL,
	"application/x-www-form-urlencoded",
	"text/plain;charset=UTF-8",
	"application/json",
	"application/x-ndjson",
	"application/x-ndjson; charset=utf-8",
	"APPLICATION/X-NDJSON",
	"multipart/form-data",
};

#define INVARIANT(c) do { if (!(c)) abort(); } while (0)

static unsigned char *gzip_buf(const uint8_t *in, size_t len, size_t *outlen)
{
	z_stream zs;
	unsigned char *out;
	uLong bound;

	memset(&zs, 0, sizeof(zs));
	if (deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
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

static void check_decode(const uint8_t *data, size_t size)
{
	uint8_t flags = data[0];
	const char *query = (const char *)data + 1;
	size_t rest = size - 1, qlen;
	const uint8_t *nul = memchr(query, 0, rest);
	const uint8_t *body = NULL;
	unsigned char *zbody = NULL;
	size_t blen = 0, i;
	struct rp_request req;
	struct rp_result res;
	char err[256];
	int inflating = 0;
	enum mp_err rc;

	qlen = nul ? (size_t)(nul - (const uint8_t *)query) : rest;
	if (nul != NULL) {
		body = nul + 1;
		blen = rest - qlen - 1;
	}
	memset(&req, 0, sizeof(req));
	if (!(flags & 0x20)) {
		req.query = query;
		req.query_len = qlen;
	}
	req.content_type = content_types[(flags >> 2) & 7];
	req.max_inflated = MAX_INFLATED;
	if ((flags & 0x02) && body != NULL) {
		zbody = gzip_buf(body, blen, &blen);
		if (zbody == NULL)
			return;
		body = zbody;
		req.content_encoding = "gzip";
		inflating = 1;
	} else if (flags & 0x01) {
		req.content_encoding = "gzip";
		inflating = blen > 0;
	}
	req.body = body;
	req.body_len = blen;

	memset(err, 'X', sizeof(err));
	memset(&res, 0xA5, sizeof(res));
	rc = rp_decode(&req, &res, err, sizeof(err));
	if (rc == MP_OK) {
		INVARIANT(res.records != NULL && cJSON_IsArray(res.records));
		INVARIANT(res.source != RP_SRC_NONE);
		if (res.single) {
			INVARIANT(cJSON_GetArraySize(res.records) == 1);
			INVARIANT(cJSON_IsObject(res.records->child));
		}
		if (res.source == RP_SRC_BODY_JSON)
			INVARIANT(res.base64 == 0);
	} else {
		INVARIANT(rc == MP_E_PARSE || rc == MP_E_NOMEM ||
			  (rc == MP_E_TOOBIG && inflating));
		INVARIANT(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0');
		INVARIANT(res.records == NULL && res.single == 0 &&
			  res.source == RP_SRC_NONE && res.base64 == 0);
	}
	INVARIANT(rp_param(&res, "data") == NULL);
	INVARIANT(res.n_params == 0 || res.params != NULL);
	for (i = 0; i < res.n_params; i++) {
		const struct rp_param *p = &res.params[i];

		INVARIANT(p->name != NULL && p->value != NULL);
		INVARIANT(p->name[0] != '\0' && strcmp(p->name, "data") != 0);
		INVARIANT(rp_param(&res, p->name) == p->value);
	}
	rp_result_free(&res);
	INVARIANT(res.records == NULL && res.params == NULL && res.n_params == 0);
	free(zbody);
}

static void check_base64(const uint8_t *data, size_t size)
{
	char *e;
	unsigned char *d, *d2;
	size_t n = 0, n2 = 0;

	/* decode(encode(x)) == x */
	e = rp_base64_encode(data, size);
	if (e != NULL) {
		INVARIANT(strlen(e) == (size + 2) / 3 * 4);
		d = rp_base64_decode(e, strlen(e), &n);
		INVARIANT(d != NULL && n == size && memcmp(d, data, size) == 0);
		free(d);
		free(e);
	}
	/* the input read as base64 */
	d = rp_base64_decode((const char *)data, size, &n);
	if (d == NULL)
		return;
	INVARIANT(n <= size / 4 * 3 + 2 && d[n] == '\0');
	e = rp_base64_encode(d, n);
	if (e != NULL) {
		INVARIANT(strlen(e) == (n + 2) / 3 * 4);
		d2 = rp_base64_decode(e, strlen(e), &n2);
		INVARIANT(d2 != NULL && n2 == n && memcmp(d2, d, n) == 0);
		free(d2);
		free(e);
	}
	free(d);
}

static void check_cesu8(const uint8_t *data, size_t size)
{
	unsigned char *copy = malloc(size + 1);
	size_t n;

	if (copy == NULL)
		return;
	memcpy(copy, data, size);
	n = rp_cesu8_fix(copy, size);
	INVARIANT(n <= size);
	if (memchr(data, 0xED, size) == NULL)
		INVARIANT(n == size && memcmp(copy, data, size) == 0);
	free(copy);
}

struct form_ctx {
	const char *s;
	size_t len;
	size_t n;
};

static enum mp_err form_cb(const char *name, const char *value, const char *raw,
			   size_t raw_len, void *ctx)
{
	struct form_ctx *fc = ctx;

	INVARIANT(name != NULL && value != NULL);
	INVARIANT(raw >= fc->s && raw + raw_len <= fc->s + fc->len);
	INVARIANT(strlen(value) <= raw_len);
	INVARIANT(memchr(raw, '&', raw_len) == NULL);
	fc->n++;
	return MP_OK;
}

static void check_form(const uint8_t *data, size_t size)
{
	struct form_ctx fc = { (const char *)data, size, 0 };
	size_t amps = 0, i;

	INVARIANT(rp_form_parse((const char *)data, size, form_cb, &fc) == MP_OK);
	for (i = 0; i < size; i++)
		amps += data[i] == '&';
	INVARIANT(fc.n <= amps + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	check_decode(data, size);
	check_base64(data + 1, size - 1);
	check_cesu8(data + 1, size - 1);
	check_form(data + 1, size - 1);
	return 0;
}
