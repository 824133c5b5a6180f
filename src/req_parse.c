/*
 * req_parse.c - turn one ingestion request into a cJSON array of records.
 *
 * Mixpanel's SDKs encode the same payload at least six ways (spec §2 pitfalls
 * 1, 6, 8, 11); this file is the one place that knows them all, so ingest.c
 * only ever sees "an array of records plus the merged parameters".  The
 * algorithm is spec §3.4, quoted by include/req_parse.h:
 *
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
 * Details the header leaves open, decided here:
 *   - "gzip", "x-gzip" and "deflate" (zlib wrapper) all go through rp_gunzip(),
 *     which auto-detects gzip/zlib; an empty body is not inflated.  After a
 *     complete member only more gzip members or whitespace may follow.
 *   - A UTF-8 byte order mark at the start of a JSON body is skipped (as
 *     cJSON does); error offsets count from the start of the (inflated) body.
 *   - `data=` for the iOS case must start the body or follow '&'.
 *   - Fields with an empty name are ignored; a repeated name keeps its last
 *     value; names are C strings (a %00 ends them).
 *   - CESU-8 surrogate pairs are rewritten in every JSON text we parse, not only
 *     in base64 payloads: such byte sequences are never valid UTF-8 anyway.
 *   - When a whole JSON body fails to parse and the NDJSON retry fails too, the
 *     NDJSON error is reported only if its first line parsed (the body really
 *     looked like NDJSON); otherwise the whole-body error is.
 *
 * Invariants:
 *   1. Every JSON text handed to cJSON has a readable byte just past its
 *      length (we always parse from our own buffers, never from req->body).
 *   2. Input lengths are never trusted: every buffer we allocate is sized from
 *      the input length (outputs only shrink: percent-, base64-, CESU-8-
 *      decoding) or capped (gunzip, by max_inflated).
 *   3. The strings of res->params live in ONE allocation that starts at
 *      params[0].name; rp_result_free() frees that block and the array.
 *   4. No function here is worse than O(n log n) in the input size (the log
 *      is the parameter de-duplication sort).
 *
 * Memory: on allocation failure every function returns MP_E_NOMEM (or NULL)
 * and frees what it allocated; nothing aborts.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

#include "req_parse.h"

#define RP_ERR_NODATA  "data, missing or empty"
#define RP_ERR_BASE64  "invalid base64 in data"
#define RP_ERR_GZIP    "invalid gzip body"
#define RP_ERR_TOOBIG  "request body too large after decompression"
#define RP_ERR_JSON    "invalid JSON in data"
#define RP_ERR_TYPE    "data must be a JSON object or array"
#define RP_ERR_NOMEM   "out of memory"

/* ---- small helpers ---------------------------------------------------- */

static void rp_seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void rp_seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static int rp_is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int rp_hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Case-insensitive compare of the media type of header value H (up to ';'
 * or whitespace) with TYPE. */
static int rp_media_is(const char *h, const char *type)
{
	size_t n, tl = strlen(type);

	if (h == NULL)
		return 0;
	while (*h == ' ' || *h == '\t')
		h++;
	n = 0;
	while (h[n] != '\0' && h[n] != ';' && h[n] != ' ' && h[n] != '\t')
		n++;
	return n == tl && strncasecmp(h, type, n) == 0;
}

/* 1 if Content-Encoding value H asks for inflating. */
static int rp_encoding_is_gzip(const char *h)
{
	return rp_media_is(h, "gzip") || rp_media_is(h, "x-gzip") ||
	       rp_media_is(h, "deflate");
}

/* ---- percent-decoding and form fields -------------------------------- */

/* Decode LEN bytes of SRC into DST ('+' -> ' ', %XX -> byte, a '%' not
 * followed by two hex digits is kept as is).  DST may equal SRC.  Returns the
 * decoded length, never more than LEN.  Plain runs are found with memchr and
 * moved in one go; the next '%' and '+' are remembered so each is searched
 * for once (linear in LEN). */
static size_t rp_pct_decode(char *dst, const char *src, size_t len)
{
	const char *end = src + len, *pct, *plus, *p = src;
	size_t o = 0;

	pct = memchr(p, '%', len);
	plus = memchr(p, '+', len);
	for (;;) {
		const char *next = pct == NULL ? plus :
				   plus == NULL ? pct : (pct < plus ? pct : plus);
		size_t run = (size_t)((next ? next : end) - p);

		if (run > 0) {
			if (dst + o != p)
				memmove(dst + o, p, run);
			o += run;
			p += run;
		}
		if (next == NULL)
			break;
		if (next == plus) {
			dst[o++] = ' ';
			p++;
			plus = memchr(p, '+', (size_t)(end - p));
			continue;
		}
		if (end - p >= 3 && rp_hexval((unsigned char)p[1]) >= 0 &&
		    rp_hexval((unsigned char)p[2]) >= 0) {
			dst[o++] = (char)(rp_hexval((unsigned char)p[1]) << 4 |
					  rp_hexval((unsigned char)p[2]));
			p += 3;
		} else {
			dst[o++] = '%';
			p++;
		}
		pct = memchr(p, '%', (size_t)(end - p));
		if (plus != NULL && plus < p)
			plus = memchr(p, '+', (size_t)(end - p));
	}
	return o;
}

/* One decoded form field.  NAME and VALUE are NUL-terminated in scratch
 * memory owned by the walker; VALUE_LEN counts bytes up to its NUL (a %00
 * inside is kept); RAW points into the input. */
struct rp_field {
	const char *name;
	char *value;
	size_t value_len;
	const char *raw;
	size_t raw_len;
};

typedef enum mp_err (*rp_field_fn)(const struct rp_field *f, void *ctx);

/* Walk the form S (LEN bytes).  Decoded fields are laid out one after the
 * other in one scratch buffer, so every field stays valid until the caller
 * frees *SCRATCHP (set even on error; may be NULL).  Sizing: a field of raw
 * length L decodes to at most L + 2 bytes including both NULs, and there are
 * at most count('&') + 1 fields. */
static enum mp_err rp_form_walk(const char *s, size_t len, char **scratchp,
				rp_field_fn fn, void *ctx)
{
	size_t namp = 0, pos = 0, off = 0, cap;
	const char *p = s, *end = s + len;
	char *scratch;
	enum mp_err rc = MP_OK;

	*scratchp = NULL;
	if (len == 0)
		return MP_OK;
	while (p < end && (p = memchr(p, '&', (size_t)(end - p))) != NULL) {
		namp++;
		p++;
	}
	if (len > (SIZE_MAX - 3) / 3)
		return MP_E_NOMEM;
	cap = len + 2 * (namp + 1) + 1;
	scratch = malloc(cap);
	if (scratch == NULL)
		return MP_E_NOMEM;
	*scratchp = scratch;

	while (pos < len) {
		const char *seg = s + pos, *amp, *eq;
		size_t seglen, nlen, vlen;
		struct rp_field f;

		amp = memchr(seg, '&', len - pos);
		seglen = amp ? (size_t)(amp - seg) : len - pos;
		pos += seglen + 1;
		if (seglen == 0)
			continue;
		eq = memchr(seg, '=', seglen);
		nlen = eq ? (size_t)(eq - seg) : seglen;

		f.name = scratch + off;
		off += rp_pct_decode(scratch + off, seg, nlen);
		scratch[off++] = '\0';
		f.value = scratch + off;
		if (eq) {
			f.raw = eq + 1;
			f.raw_len = seglen - nlen - 1;
		} else {
			f.raw = seg + seglen;
			f.raw_len = 0;
		}
		vlen = rp_pct_decode(f.value, f.raw, f.raw_len);
		f.value[vlen] = '\0';
		f.value_len = vlen;
		off += vlen + 1;

		rc = fn(&f, ctx);
		if (rc != MP_OK)
			break;
	}
	return rc;
}

struct rp_public_ctx {
	rp_field_cb cb;
	void *ctx;
};

static enum mp_err rp_public_field(const struct rp_field *f, void *ctx)
{
	struct rp_public_ctx *pc = ctx;

	return pc->cb(f->name, f->value, f->raw, f->raw_len, pc->ctx);
}

enum mp_err rp_form_parse(const char *s, size_t len, rp_field_cb cb, void *ctx)
{
	struct rp_public_ctx pc = { cb, ctx };
	char *scratch = NULL;
	enum mp_err rc;

	if (s == NULL || cb == NULL)
		return MP_OK;
	rc = rp_form_walk(s, len, &scratch, rp_public_field, &pc);
	free(scratch);
	return rc;
}

/* ---- base64 ------------------------------------------------------------ */

#define RP_B64_BAD  (-1)
#define RP_B64_SKIP (-2)   /* CR, LF */
#define RP_B64_PAD  (-3)   /* '=' */

/* Both alphabets: '+' '-' and ' ' are 62 (a form decoder turned Node's raw
 * '+' into ' '), '/' and '_' are 63. */
static const signed char rp_b64_val[256] = {
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -2, -1, -1, -2, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	62, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, 62, -1, 63,
	52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -3, -1, -1,
	-1,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14,
	15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, 63,
	-1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
	41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

static const char rp_b64_alpha[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Lenient decode of LEN bytes of S into OUT, which has room for
 * len / 4 * 3 + 3 bytes and may be S itself (every output byte is written
 * after the input bytes it comes from were read, at an offset no greater
 * than theirs).  Returns 0 and *OUTLEN, or -1 when S is not base64.
 * Grammar: alphabet characters and CR/LF, then optionally '=' (only after 2
 * or 3 characters of a group) followed by nothing but '=' and CR/LF.  A group
 * of 1 character is invalid; unused low bits of the last group are ignored. */
static int rp_b64_decode_into(const unsigned char *s, size_t len,
			      unsigned char *out, size_t *outlen)
{
	size_t i = 0, o = 0;
	uint32_t acc = 0;
	int nacc = 0, pad = 0;

	while (i < len) {
		int v;

		if (nacc == 0 && !pad) {
			/* fast path: whole groups of four alphabet characters */
			while (len - i >= 4) {
				int a = rp_b64_val[s[i]], b = rp_b64_val[s[i + 1]];
				int c = rp_b64_val[s[i + 2]], d = rp_b64_val[s[i + 3]];
				uint32_t q;

				if ((a | b | c | d) < 0)
					break;
				q = (uint32_t)a << 18 | (uint32_t)b << 12 |
				    (uint32_t)c << 6 | (uint32_t)d;
				out[o++] = (unsigned char)(q >> 16);
				out[o++] = (unsigned char)(q >> 8);
				out[o++] = (unsigned char)q;
				i += 4;
			}
			if (i >= len)
				break;
		}
		v = rp_b64_val[s[i++]];
		if (v >= 0) {
			if (pad)
				return -1;
			acc = acc << 6 | (uint32_t)v;
			if (++nacc == 4) {
				out[o++] = (unsigned char)(acc >> 16);
				out[o++] = (unsigned char)(acc >> 8);
				out[o++] = (unsigned char)acc;
				acc = 0;
				nacc = 0;
			}
		} else if (v == RP_B64_SKIP) {
			continue;
		} else if (v == RP_B64_PAD) {
			if (!pad && nacc < 2)
				return -1;
			pad = 1;
		} else {
			return -1;
		}
	}
	if (nacc == 1)
		return -1;
	if (nacc == 2) {
		out[o++] = (unsigned char)(acc >> 4);
	} else if (nacc == 3) {
		out[o++] = (unsigned char)(acc >> 10);
		out[o++] = (unsigned char)(acc >> 2);
	}
	*outlen = o;
	return 0;
}

unsigned char *rp_base64_decode(const char *in, size_t len, size_t *outlen)
{
	unsigned char *out;
	size_t n = 0;

	if (outlen != NULL)
		*outlen = 0;
	if ((in == NULL && len != 0) || len > SIZE_MAX - 8)
		return NULL;
	out = malloc(len / 4 * 3 + 4);
	if (out == NULL)
		return NULL;
	if (len > 0 && rp_b64_decode_into((const unsigned char *)in, len, out, &n) != 0) {
		free(out);
		return NULL;
	}
	out[n] = '\0';
	if (outlen != NULL)
		*outlen = n;
	return out;
}

char *rp_base64_encode(const unsigned char *in, size_t len)
{
	size_t i = 0, o = 0;
	char *out;

	if (len > (SIZE_MAX - 1) / 4 * 3 - 3)
		return NULL;
	out = malloc((len + 2) / 3 * 4 + 1);
	if (out == NULL)
		return NULL;
	for (; len - i >= 3; i += 3) {
		uint32_t q = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

		out[o++] = rp_b64_alpha[q >> 18];
		out[o++] = rp_b64_alpha[(q >> 12) & 63];
		out[o++] = rp_b64_alpha[(q >> 6) & 63];
		out[o++] = rp_b64_alpha[q & 63];
	}
	if (len - i == 1) {
		uint32_t q = (uint32_t)in[i] << 16;

		out[o++] = rp_b64_alpha[q >> 18];
		out[o++] = rp_b64_alpha[(q >> 12) & 63];
		out[o++] = '=';
		out[o++] = '=';
	} else if (len - i == 2) {
		uint32_t q = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

		out[o++] = rp_b64_alpha[q >> 18];
		out[o++] = rp_b64_alpha[(q >> 12) & 63];
		out[o++] = rp_b64_alpha[(q >> 6) & 63];
		out[o++] = '=';
	}
	out[o] = '\0';
	return out;
}

/* ---- CESU-8 ------------------------------------------------------------ */

/* 1 if P (at least 6 bytes) is a CESU-8 surrogate pair:
 * ED A0..AF 80..BF  ED B0..BF 80..BF. */
static int rp_is_cesu_pair(const unsigned char *p)
{
	return p[0] == 0xED && (p[1] & 0xF0) == 0xA0 && (p[2] & 0xC0) == 0x80 &&
	       p[3] == 0xED && (p[4] & 0xF0) == 0xB0 && (p[5] & 0xC0) == 0x80;
}

size_t rp_cesu8_fix(unsigned char *buf, size_t len)
{
	unsigned char *p;
	size_t r, w;

	if (buf == NULL || len < 6)
		return len;
	p = memchr(buf, 0xED, len);
	if (p == NULL)
		return len;
	r = w = (size_t)(p - buf);
	while (r < len) {
		unsigned char *next;
		size_t run;

		if (buf[r] == 0xED && len - r >= 6 && rp_is_cesu_pair(buf + r)) {
			uint32_t hi = (uint32_t)(buf[r + 1] & 0x0F) << 6 | (buf[r + 2] & 0x3F);
			uint32_t lo = (uint32_t)(buf[r + 4] & 0x0F) << 6 | (buf[r + 5] & 0x3F);
			uint32_t cp = 0x10000 + (hi << 10) + lo;

			buf[w++] = (unsigned char)(0xF0 | cp >> 18);
			buf[w++] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
			buf[w++] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
			buf[w++] = (unsigned char)(0x80 | (cp & 0x3F));
			r += 6;
			continue;
		}
		/* copy up to the next 0xED in one move */
		next = memchr(buf + r + 1, 0xED, len - r - 1);
		run = next ? (size_t)(next - (buf + r)) : len - r;
		if (w != r)
			memmove(buf + w, buf + r, run);
		w += run;
		r += run;
	}
	return w;
}

/* ---- gunzip ------------------------------------------------------------ */

enum mp_err rp_gunzip(const unsigned char *in, size_t len, size_t max_out,
		      unsigned char **out, size_t *outlen)
{
	z_stream zs;
	unsigned char *buf, *nbuf;
	size_t limit, cap, produced = 0, in_left = len;
	enum mp_err rc = MP_OK;
	int z;

	*out = NULL;
	*outlen = 0;
	if (in == NULL)
		return MP_E_PARSE;
	if (max_out > SIZE_MAX - 2)
		max_out = SIZE_MAX - 2;
	/* Producing LIMIT bytes proves the output is longer than allowed. */
	limit = max_out + 1;
	cap = len < limit / 4 ? len * 4 : limit;
	if (cap < 4096)
		cap = limit < 4096 ? limit : 4096;
	buf = malloc(cap + 1);
	if (buf == NULL)
		return MP_E_NOMEM;

	memset(&zs, 0, sizeof(zs));
	z = inflateInit2(&zs, 15 + 32);
	if (z != Z_OK) {
		free(buf);
		return z == Z_MEM_ERROR ? MP_E_NOMEM : MP_E_PARSE;
	}
	for (;;) {
		size_t room;

		if (zs.avail_in == 0 && in_left > 0) {
			uInt chunk = in_left > UINT_MAX ? UINT_MAX : (uInt)in_left;

			zs.next_in = (Bytef *)(uintptr_t)(in + (len - in_left));
			zs.avail_in = chunk;
			in_left -= chunk;
		}
		if (produced == cap) {
			size_t ncap;

			if (cap == limit) {
				rc = MP_E_TOOBIG;
				break;
			}
			ncap = cap > limit / 2 ? limit : cap * 2;
			nbuf = realloc(buf, ncap + 1);
			if (nbuf == NULL) {
				rc = MP_E_NOMEM;
				break;
			}
			buf = nbuf;
			cap = ncap;
		}
		room = cap - produced;
		if (room > UINT_MAX)
			room = UINT_MAX;
		zs.next_out = buf + produced;
		zs.avail_out = (uInt)room;
		z = inflate(&zs, Z_NO_FLUSH);
		produced += room - zs.avail_out;

		if (z == Z_STREAM_END) {
			/* Where are we in IN?  Rewind the chunking to that point. */
			size_t pos = (size_t)(zs.next_in - (const Bytef *)in);
			const unsigned char *rest = in + pos;

			in_left = len - pos;
			zs.avail_in = 0;
			while (in_left > 0 && rp_is_ws(*rest)) {
				rest++;
				in_left--;
			}
			if (in_left == 0)
				break;
			if (in_left >= 2 && rest[0] == 0x1f && rest[1] == 0x8b) {
				if (inflateReset(&zs) != Z_OK) {
					rc = MP_E_PARSE;
					break;
				}
				/* next chunk starts at REST */
				in_left = len - (size_t)(rest - in);
				continue;
			}
			rc = MP_E_PARSE;
			break;
		}
		if (z == Z_OK) {
			if (zs.avail_out != 0 && zs.avail_in == 0 && in_left == 0) {
				rc = MP_E_PARSE;  /* truncated */
				break;
			}
			continue;
		}
		if (z == Z_BUF_ERROR && zs.avail_out == 0)
			continue;  /* grow (or TOOBIG) at the top */
		rc = z == Z_MEM_ERROR ? MP_E_NOMEM : MP_E_PARSE;
		break;
	}
	inflateEnd(&zs);
	if (rc == MP_OK && produced > max_out)
		rc = MP_E_TOOBIG;
	if (rc != MP_OK) {
		free(buf);
		return rc;
	}
	buf[produced] = '\0';
	*out = buf;
	*outlen = produced;
	return MP_OK;
}

/* ---- JSON -------------------------------------------------------------- */

/* Parse exactly LEN bytes of TEXT (TEXT[LEN] must be readable) as one JSON
 * value; only whitespace may follow it.  On MP_E_PARSE *ERRPOS is the byte
 * offset cJSON stopped at. */
static enum mp_err rp_json_parse(const char *text, size_t len, cJSON **out,
				 size_t *errpos)
{
	const char *end = NULL;
	cJSON *j;
	size_t pos;

	*out = NULL;
	*errpos = 0;
	j = cJSON_ParseWithLengthOpts(text, len, &end, 0);
	if (j == NULL) {
		if (end != NULL && end >= text && end <= text + len)
			*errpos = (size_t)(end - text);
		return MP_E_PARSE;
	}
	pos = (end != NULL && end >= text && end <= text + len) ? (size_t)(end - text) : len;
	while (pos < len && rp_is_ws((unsigned char)text[pos]))
		pos++;
	if (pos != len) {
		cJSON_Delete(j);
		*errpos = pos;
		return MP_E_PARSE;
	}
	*out = j;
	return MP_OK;
}

/* Wrap an object into a one-element array, or pass an array through.  Takes
 * ownership of J in every case. */
static enum mp_err rp_records_from(cJSON *j, struct rp_result *res, char *err,
				   size_t errlen)
{
	cJSON *arr;

	if (cJSON_IsArray(j)) {
		res->records = j;
		res->single = 0;
		return MP_OK;
	}
	if (!cJSON_IsObject(j)) {
		cJSON_Delete(j);
		rp_seterr(err, errlen, RP_ERR_TYPE);
		return MP_E_PARSE;
	}
	arr = cJSON_CreateArray();
	if (arr == NULL) {
		cJSON_Delete(j);
		rp_seterr(err, errlen, RP_ERR_NOMEM);
		return MP_E_NOMEM;
	}
	cJSON_AddItemToArray(arr, j);  /* J now belongs to ARR */
	res->records = arr;
	res->single = 1;
	return MP_OK;
}

/* NDJSON: TEXT (LEN bytes, TEXT[LEN] readable) split on '\n', surrounding
 * whitespace ('\r' included) stripped, blank lines skipped, every line one
 * object.  *NOK counts the lines that parsed before a failure.  On error ERR
 * names the byte offset in TEXT and the 1-based line. */
static enum mp_err rp_ndjson_parse(const char *text, size_t len, cJSON **out,
				   size_t *nok, char *err, size_t errlen)
{
	cJSON *arr;
	size_t pos = 0, line = 0;

	*out = NULL;
	*nok = 0;
	arr = cJSON_CreateArray();
	if (arr == NULL) {
		rp_seterr(err, errlen, RP_ERR_NOMEM);
		return MP_E_NOMEM;
	}
	while (pos < len) {
		const char *s = text + pos, *nl;
		size_t l, b = 0, errpos;
		cJSON *j;

		nl = memchr(s, '\n', len - pos);
		l = nl ? (size_t)(nl - s) : len - pos;
		pos += l + 1;
		line++;
		while (b < l && rp_is_ws((unsigned char)s[b]))
			b++;
		if (b == l)
			continue;  /* blank line */
		while (l > b && rp_is_ws((unsigned char)s[l - 1]))
			l--;
		if (rp_json_parse(s + b, l - b, &j, &errpos) != MP_OK) {
			rp_seterr(err, errlen, RP_ERR_JSON ": syntax error at byte %zu (line %zu)",
				  (size_t)(s + b - text) + errpos, line);
			cJSON_Delete(arr);
			return MP_E_PARSE;
		}
		if (!cJSON_IsObject(j)) {
			rp_seterr(err, errlen, RP_ERR_JSON ": line %zu is not a JSON object", line);
			cJSON_Delete(j);
			cJSON_Delete(arr);
			return MP_E_PARSE;
		}
		cJSON_AddItemToArray(arr, j);  /* J now belongs to ARR */
		(*nok)++;
	}
	*out = arr;
	return MP_OK;
}

/* Step 2: TEXT (LEN bytes, NUL-terminated, ours) is a JSON or NDJSON body. */
static enum mp_err rp_body_json(char *text, size_t len, int ndjson,
				struct rp_result *res, char *err, size_t errlen)
{
	cJSON *j = NULL;
	size_t errpos = 0, nok = 0;
	char nderr[160];
	enum mp_err rc;

	len = rp_cesu8_fix((unsigned char *)text, len);
	text[len] = '\0';
	if (ndjson) {
		rc = rp_ndjson_parse(text, len, &j, &nok, err, errlen);
		if (rc != MP_OK)
			return rc;
		res->records = j;
		res->single = 0;
		return MP_OK;
	}
	if (rp_json_parse(text, len, &j, &errpos) == MP_OK)
		return rp_records_from(j, res, err, errlen);
	/* A whole-body parse failed: maybe NDJSON without its Content-Type. */
	if (memchr(text, '\n', len) != NULL) {
		nderr[0] = '\0';
		rc = rp_ndjson_parse(text, len, &j, &nok, nderr, sizeof(nderr));
		if (rc == MP_OK) {
			res->records = j;
			res->single = 0;
			return MP_OK;
		}
		if (rc == MP_E_NOMEM || nok > 0) {
			rp_seterr(err, errlen, "%s", nderr);
			return rc;
		}
	}
	rp_seterr(err, errlen, RP_ERR_JSON ": syntax error at byte %zu", errpos);
	return MP_E_PARSE;
}

/* Step 6 for one candidate value BUF (LEN bytes, ours, BUF[LEN] writable;
 * decoded in place).  Fills *OUT with the parsed JSON and *IS_B64. */
static enum mp_err rp_data_try(char *buf, size_t len, cJSON **out, int *is_b64,
			       char *err, size_t errlen)
{
	size_t errpos;

	*out = NULL;
	*is_b64 = 0;
	while (len > 0 && rp_is_ws((unsigned char)buf[len - 1]))
		len--;
	while (len > 0 && rp_is_ws((unsigned char)*buf)) {
		buf++;
		len--;
	}
	if (len == 0) {
		rp_seterr(err, errlen, RP_ERR_NODATA);
		return MP_E_PARSE;
	}
	if (buf[0] != '[' && buf[0] != '{') {
		if (rp_b64_decode_into((unsigned char *)buf, len, (unsigned char *)buf, &len) != 0) {
			rp_seterr(err, errlen, RP_ERR_BASE64);
			return MP_E_PARSE;
		}
		*is_b64 = 1;
	}
	len = rp_cesu8_fix((unsigned char *)buf, len);
	buf[len] = '\0';
	if (rp_json_parse(buf, len, out, &errpos) != MP_OK) {
		*is_b64 = 0;
		rp_seterr(err, errlen, RP_ERR_JSON ": syntax error at byte %zu", errpos);
		return MP_E_PARSE;
	}
	return MP_OK;
}

/* ---- parameters -------------------------------------------------------- */

struct rp_entry {
	const char *name;   /* scratch memory of a form walk */
	const char *value;
	size_t seq;         /* arrival order: query fields first, then body */
	int keep;
};

struct rp_data_slot {
	int found;
	char *value;        /* scratch memory; value[value_len] is writable */
	size_t value_len;
	const char *raw;    /* into the query or body */
	size_t raw_len;
};

struct rp_collect {
	struct rp_entry *a;
	size_t n, cap;
	struct rp_data_slot *slot;  /* where `data` of the current source goes */
};

static enum mp_err rp_collect_field(const struct rp_field *f, void *ctx)
{
	struct rp_collect *c = ctx;

	if (f->name[0] == '\0')
		return MP_OK;
	if (strcmp(f->name, "data") == 0) {
		c->slot->found = 1;
		c->slot->value = f->value;
		c->slot->value_len = f->value_len;
		c->slot->raw = f->raw;
		c->slot->raw_len = f->raw_len;
		return MP_OK;
	}
	if (c->n == c->cap) {
		size_t ncap = c->cap ? c->cap * 2 : 16;
		struct rp_entry *na;

		if (ncap > SIZE_MAX / sizeof(*na))
			return MP_E_NOMEM;
		na = realloc(c->a, ncap * sizeof(*na));
		if (na == NULL)
			return MP_E_NOMEM;
		c->a = na;
		c->cap = ncap;
	}
	c->a[c->n].name = f->name;
	c->a[c->n].value = f->value;
	c->a[c->n].seq = c->n;
	c->a[c->n].keep = 1;
	c->n++;
	return MP_OK;
}

static int rp_entry_by_name(const void *x, const void *y)
{
	const struct rp_entry *a = x, *b = y;
	int d = strcmp(a->name, b->name);

	if (d != 0)
		return d;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int rp_entry_by_seq(const void *x, const void *y)
{
	const struct rp_entry *a = x, *b = y;

	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Keep the last value of each name (body fields come after query fields, so
 * the body wins), in arrival order, copied into one block (invariant 3). */
static enum mp_err rp_params_build(struct rp_collect *c, struct rp_result *res)
{
	size_t i, k = 0, total = 0;
	struct rp_param *p;
	char *block;

	if (c->n == 0)
		return MP_OK;
	if (c->n > 1) {
		qsort(c->a, c->n, sizeof(*c->a), rp_entry_by_name);
		for (i = 0; i + 1 < c->n; i++)
			if (strcmp(c->a[i].name, c->a[i + 1].name) == 0)
				c->a[i].keep = 0;
		qsort(c->a, c->n, sizeof(*c->a), rp_entry_by_seq);
	}
	for (i = 0; i < c->n; i++) {
		if (!c->a[i].keep)
			continue;
		total += strlen(c->a[i].name) + strlen(c->a[i].value) + 2;
		k++;
	}
	p = calloc(k, sizeof(*p));
	block = malloc(total);
	if (p == NULL || block == NULL) {
		free(p);
		free(block);
		return MP_E_NOMEM;
	}
	k = 0;
	for (i = 0; i < c->n; i++) {
		size_t nl, vl;

		if (!c->a[i].keep)
			continue;
		nl = strlen(c->a[i].name) + 1;
		vl = strlen(c->a[i].value) + 1;
		memcpy(block, c->a[i].name, nl);
		p[k].name = block;
		block += nl;
		memcpy(block, c->a[i].value, vl);
		p[k].value = block;
		block += vl;
		k++;
	}
	res->params = p;
	res->n_params = k;
	return MP_OK;
}

const char *rp_param(const struct rp_result *res, const char *name)
{
	size_t i;

	if (res == NULL || name == NULL || strcmp(name, "data") == 0)
		return NULL;
	for (i = 0; i < res->n_params; i++)
		if (strcmp(res->params[i].name, name) == 0)
			return res->params[i].value;
	return NULL;
}

void rp_result_free(struct rp_result *res)
{
	if (res == NULL)
		return;
	cJSON_Delete(res->records);
	if (res->params != NULL && res->n_params > 0)
		free(res->params[0].name);  /* the block of all strings */
	free(res->params);
	memset(res, 0, sizeof(*res));
}

/* ---- rp_decode --------------------------------------------------------- */

/* Find the iOS `data=[` / `data={` at the start of BODY or right after '&';
 * returns its offset or LEN.  Only field starts are looked at. */
static int rp_is_raw_json_data(const char *p, size_t n)
{
	return n >= 6 && memcmp(p, "data=", 5) == 0 && (p[5] == '[' || p[5] == '{');
}

static size_t rp_find_raw_json_data(const char *body, size_t len)
{
	const char *p = body, *end = body + len;

	if (len == 0)
		return 0;
	if (rp_is_raw_json_data(body, len))
		return 0;
	while ((p = memchr(p, '&', (size_t)(end - p))) != NULL) {
		p++;
		if (rp_is_raw_json_data(p, (size_t)(end - p)))
			return (size_t)(p - body);
	}
	return len;
}

enum mp_err rp_decode(const struct rp_request *req, struct rp_result *res,
		      char *err, size_t errlen)
{
	struct rp_collect col = { NULL, 0, 0, NULL };
	struct rp_data_slot qdata = { 0, NULL, 0, NULL, 0 };
	struct rp_data_slot bdata = { 0, NULL, 0, NULL, 0 };
	struct rp_data_slot *data;
	char *qscratch = NULL, *bscratch = NULL, *work = NULL, *rawcopy = NULL;
	const char *body;
	size_t blen, i, form_len;
	enum rp_source source;
	cJSON *json = NULL;
	int is_b64 = 0, raw_differs;
	enum mp_err rc = MP_OK;

	if (res == NULL)
		return MP_E_PARSE;
	memset(res, 0, sizeof(*res));
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (req == NULL) {
		rp_seterr(err, errlen, RP_ERR_NODATA);
		return MP_E_PARSE;
	}

	/* query-string fields first: they are the params even if the body fails */
	col.slot = &qdata;
	if (req->query != NULL && req->query_len > 0) {
		rc = rp_form_walk(req->query, req->query_len, &qscratch,
				  rp_collect_field, &col);
		if (rc != MP_OK)
			goto nomem;
	}

	/* 1. gunzip */
	body = (const char *)req->body;
	blen = req->body != NULL ? req->body_len : 0;
	if (blen > 0 && rp_encoding_is_gzip(req->content_encoding)) {
		unsigned char *inflated = NULL;
		size_t ilen = 0;

		rc = rp_gunzip(req->body, blen, req->max_inflated, &inflated, &ilen);
		if (rc != MP_OK) {
			enum mp_err prc = rp_params_build(&col, res);  /* query only */

			if (rc == MP_E_NOMEM || prc != MP_OK)
				goto nomem;
			rp_seterr(err, errlen, "%s", rc == MP_E_TOOBIG ? RP_ERR_TOOBIG : RP_ERR_GZIP);
			goto fail;
		}
		work = (char *)inflated;
		body = work;
		blen = ilen;
	}

	/* 2. JSON body */
	i = blen >= 3 && memcmp(body, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
	while (i < blen && rp_is_ws((unsigned char)body[i]))
		i++;
	if (i < blen && (body[i] == '[' || body[i] == '{')) {
		if (work == NULL) {
			work = malloc(blen + 1);
			if (work == NULL)
				goto nomem;
			memcpy(work, body, blen);
		}
		work[blen] = '\0';
		rc = rp_params_build(&col, res);
		if (rc != MP_OK)
			goto nomem;
		/* from byte 0, so error offsets count from the body's start;
		 * cJSON skips the whitespace and a leading BOM itself */
		rc = rp_body_json(work, blen,
				  rp_media_is(req->content_type, "application/x-ndjson"),
				  res, err, errlen);
		if (rc != MP_OK)
			goto fail;
		res->source = RP_SRC_BODY_JSON;
		goto out;
	}

	/* 3. iOS: `data=` followed by raw JSON up to the end of the body */
	form_len = rp_find_raw_json_data(body, blen);
	if (form_len < blen) {
		size_t jlen = blen - form_len - 5;

		if (work == NULL) {
			work = malloc(jlen + 1);
			if (work == NULL)
				goto nomem;
			memcpy(work, body + form_len + 5, jlen);
			work[jlen] = '\0';
			bdata.value = work;
		} else {
			bdata.value = work + form_len + 5;
		}
		bdata.found = 1;
		bdata.value_len = jlen;
		bdata.raw = NULL;  /* verbatim already: no fallback */
		bdata.raw_len = 0;
	}

	/* 4. form fields of the body (before the iOS data, if any) */
	col.slot = &bdata;
	if (form_len > 0) {
		struct rp_data_slot keep = bdata;

		rc = rp_form_walk(body, form_len, &bscratch, rp_collect_field, &col);
		if (rc != MP_OK)
			goto nomem;
		if (keep.found)
			bdata = keep;  /* the verbatim JSON beats an earlier data= */
	}

	/* 5. parameters, and where `data` comes from */
	rc = rp_params_build(&col, res);
	if (rc != MP_OK)
		goto nomem;
	if (bdata.found) {
		data = &bdata;
		source = RP_SRC_FORM;
	} else if (qdata.found) {
		data = &qdata;
		source = RP_SRC_QUERY;
	} else {
		rp_seterr(err, errlen, RP_ERR_NODATA);
		rc = MP_E_PARSE;
		goto fail;
	}

	/* 6. decode `data`, falling back to its raw undecoded value */
	raw_differs = data->raw != NULL &&
		      (data->raw_len != data->value_len ||
		       memcmp(data->raw, data->value, data->raw_len) != 0);
	rc = rp_data_try(data->value, data->value_len, &json, &is_b64, err, errlen);
	if (rc == MP_E_PARSE && raw_differs) {
		char tmp[8];

		rawcopy = malloc(data->raw_len + 1);
		if (rawcopy == NULL)
			goto nomem;
		memcpy(rawcopy, data->raw, data->raw_len);
		rawcopy[data->raw_len] = '\0';
		if (rp_data_try(rawcopy, data->raw_len, &json, &is_b64, tmp, sizeof(tmp)) == MP_OK)
			rc = MP_OK;
	}
	if (rc == MP_E_NOMEM)
		goto nomem;
	if (rc != MP_OK)
		goto fail;

	/* 7. object or array */
	rc = rp_records_from(json, res, err, errlen);
	json = NULL;
	if (rc == MP_E_NOMEM)
		goto nomem;
	if (rc != MP_OK)
		goto fail;
	res->source = source;
	res->base64 = is_b64;
	goto out;

nomem:
	rc = MP_E_NOMEM;
	rp_seterr(err, errlen, RP_ERR_NOMEM);
fail:
	cJSON_Delete(res->records);
	res->records = NULL;
	res->single = 0;
	res->source = RP_SRC_NONE;
	res->base64 = 0;
	if (err != NULL && errlen > 0 && err[0] == '\0')
		rp_seterr(err, errlen, "%s", mp_strerror(rc));
out:
	cJSON_Delete(json);
	free(col.a);
	free(qscratch);
	free(bscratch);
	free(work);
	free(rawcopy);
	return rc;
}
