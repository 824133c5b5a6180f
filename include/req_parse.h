/*
 * req_parse.h - decode an ingestion request into JSON records.
 *
 * Mixpanel's SDKs put the same payload on the wire in many ways (see
 * ../shared/spec/mixpanel-http-api.md §2 pitfalls 1, 6, 8, 11 and §3.4):
 *   - `data=` in the query string (GET, base64, percent-encoded)
 *   - `data=` in a form body: base64 percent-encoded (browser), raw base64 whose
 *     '+' a form decoder would turn into ' ' (Node), percent-encoded JSON
 *     (Python, browser json mode), raw unencoded JSON after `data=` (iOS)
 *   - a raw JSON body (object or array), or NDJSON (one object per line)
 *   - any of those bodies gzip-compressed (Content-Encoding: gzip)
 * The browser SDK's base64 holds CESU-8 (each UTF-16 surrogate as its own
 * 3-byte sequence); we rewrite such pairs to proper 4-byte UTF-8.
 *
 * rp_decode() implements §3.4 of the spec:
 *   1. gunzip if Content-Encoding is gzip (inflated size capped at max_inflated);
 *   2. body starting (after whitespace) with '[' or '{' is JSON; if a whole-body
 *      parse fails, or Content-Type is application/x-ndjson, each non-empty line
 *      is parsed as one record (all lines must parse);
 *   3. otherwise the body is a form; if it contains `data=` immediately followed
 *      by '[' or '{', everything after it is the JSON text verbatim and only the
 *      part before it is parsed as form fields;
 *   4. form fields: split on '&', first '=', percent-decode ('+' -> ' ');
 *   5. parameters = query-string fields overlaid by form fields (body wins);
 *      `data` is taken from the body, else from the query string;
 *   6. `data` value: trimmed; '['/'{' -> JSON, else base64 (spaces read as '+',
 *      URL-safe alphabet accepted, padding optional, CR/LF ignored), and if the
 *      percent-decoded value is not base64, the raw undecoded value is tried;
 *   7. the JSON must be an object (one record) or an array of values.
 *
 * Ownership: rp_decode() fills a struct rp_result that the caller releases
 * with rp_result_free(); the cJSON tree in it is owned by the result until
 * taken (set res->records to NULL after taking it).
 *
 * Thread-safety: pure functions, no global state.
 */
#ifndef MP_REQ_PARSE_H
#define MP_REQ_PARSE_H

#include <stddef.h>
#include <cjson/cJSON.h>
#include "err.h"

struct rp_request {
	const char *query;            /* raw query string after '?', may be NULL */
	size_t query_len;
	const unsigned char *body;    /* raw body as received, may be NULL */
	size_t body_len;
	const char *content_type;     /* header value or NULL */
	const char *content_encoding; /* header value or NULL ("gzip", "identity") */
	size_t max_inflated;          /* cap on the gunzipped size */
};

struct rp_param {
	char *name;   /* percent-decoded */
	char *value;  /* percent-decoded */
};

enum rp_source { RP_SRC_NONE = 0, RP_SRC_QUERY, RP_SRC_FORM, RP_SRC_BODY_JSON };

struct rp_result {
	cJSON *records;           /* JSON array of the records (a single object is wrapped); owned */
	int single;               /* 1 if the payload was one object, not an array */
	enum rp_source source;    /* where the payload came from */
	int base64;               /* 1 if `data` was base64 */
	struct rp_param *params;  /* merged parameters (body wins), data excluded */
	size_t n_params;
};

/* Decode REQ.  Returns MP_OK and fills RES, or:
 *   MP_E_PARSE  no payload, bad base64, bad gzip, bad JSON, JSON not object/array
 *   MP_E_TOOBIG the inflated body would exceed max_inflated
 *   MP_E_NOMEM
 * On error ERR holds a one-line reason fit for a client (e.g.
 * "data, missing or empty", "invalid base64 in data", "invalid gzip body",
 * "invalid JSON at byte 17") and RES is zeroed but its params are still filled
 * when the parameters could be parsed, so the caller can honour `verbose`.
 * The caller calls rp_result_free() in every case. */
enum mp_err rp_decode(const struct rp_request *req, struct rp_result *res,
		      char *err, size_t errlen);

void rp_result_free(struct rp_result *res);

/* Borrowed value of parameter NAME, or NULL. */
const char *rp_param(const struct rp_result *res, const char *name);

/* Helpers shared with other modules (also unit-tested on their own). */

/* Parse an application/x-www-form-urlencoded string of LEN bytes, calling
 * CB(name, value, raw_value, raw_len, ctx) for each field with percent-decoded
 * NUL-terminated name and value (scratch memory, valid during the call) and
 * the raw undecoded value.  Returns MP_OK, MP_E_NOMEM, or what CB returned. */
typedef enum mp_err (*rp_field_cb)(const char *name, const char *value,
				   const char *raw_value, size_t raw_len, void *ctx);
enum mp_err rp_form_parse(const char *s, size_t len, rp_field_cb cb, void *ctx);

/* Lenient base64 decode (see step 6).  Returns a malloc'd buffer and its
 * length in *OUTLEN (NUL-terminated for convenience), or NULL if IN is not
 * base64.  Caller frees. */
unsigned char *rp_base64_decode(const char *in, size_t len, size_t *outlen);

/* Strict standard base64 encode (for Authorization parsing tests and export).
 * Returns a malloc'd NUL-terminated string; caller frees. */
char *rp_base64_encode(const unsigned char *in, size_t len);

/* Gunzip IN (gzip or zlib wrapper).  Returns MP_OK with a malloc'd buffer in
 * *OUT (NUL-terminated) or MP_E_PARSE / MP_E_TOOBIG / MP_E_NOMEM. */
enum mp_err rp_gunzip(const unsigned char *in, size_t len, size_t max_out,
		      unsigned char **out, size_t *outlen);

/* Rewrite CESU-8 surrogate pairs in BUF (LEN bytes) to 4-byte UTF-8 in place;
 * returns the new length (never longer). */
size_t rp_cesu8_fix(unsigned char *buf, size_t len);

#endif
