/*
 * buf.c - growable capped byte buffer (see include/buf.h).
 */
#include "buf.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

char *buf_take(struct buf *b, size_t *len)
{
	char *p = b->data;

	if (!p)
		p = calloc(1, 1);
	if (len)
		*len = b->len;
	b->data = NULL;
	b->len = b->cap = 0;
	return p;
}

enum mp_err buf_reserve(struct buf *b, size_t n)
{
	size_t need, ncap;
	char *p;

	if (n > b->max || b->len > b->max - n)
		return MP_E_TOOBIG;
	need = b->len + n + 1;
	if (need <= b->cap)
		return MP_OK;
	ncap = b->cap ? b->cap : 256;
	while (ncap < need)
		ncap *= 2;
	p = realloc(b->data, ncap);
	if (!p)
		return MP_E_NOMEM;
	b->data = p;
	b->cap = ncap;
	return MP_OK;
}

enum mp_err buf_append(struct buf *b, const void *p, size_t n)
{
	enum mp_err rc = buf_reserve(b, n);

	if (rc != MP_OK)
		return rc;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return MP_OK;
}

enum mp_err buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;
	enum mp_err rc;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return MP_E_INVALID;
	rc = buf_reserve(b, (size_t)n);
	if (rc != MP_OK)
		return rc;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return MP_OK;
}

/* Length of the valid UTF-8 sequence at S (N bytes left), 0 if invalid. */
size_t buf_utf8_seq(const unsigned char *s, size_t n)
{
	unsigned c = s[0];

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return n >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
			return 0;
		if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0))
			return 0; /* overlong, or a UTF-16 surrogate */
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
			return 0;
		if ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] >= 0x90))
			return 0;
		return 4;
	}
	return 0;
}

enum mp_err buf_json_str(struct buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	enum mp_err rc;
	size_t i, k, need = 2;

	/* exact output size first, so a string that fits under the cap is
	 * taken; bytes that are not UTF-8 become U+FFFD (3 bytes) */
	for (i = 0; i < n; i += k) {
		unsigned char c = u[i];

		k = 1;
		if (c >= 0x80) {
			k = buf_utf8_seq(u + i, n - i);
			need += k ? k : 3;
			k = k ? k : 1;
			continue;
		}
		need += c >= 0x20 && c != '"' && c != '\\' ? 1
			: (c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f') ? 2 : 6;
	}
	if ((rc = buf_reserve(b, need)) != MP_OK)
		return rc;
	b->data[b->len++] = '"';
	for (i = 0; i < n; i += k) {
		unsigned char c = u[i];
		char *o = b->data + b->len;

		k = 1;
		if (c >= 0x80) {
			k = buf_utf8_seq(u + i, n - i);
			if (k) {
				memcpy(o, u + i, k);
				b->len += k;
			} else {
				memcpy(o, "\xef\xbf\xbd", 3);
				b->len += 3;
				k = 1;
			}
			continue;
		}
		if (c >= 0x20 && c != '"' && c != '\\') {
			*o = (char)c;
			b->len++;
			continue;
		}
		o[0] = '\\';
		switch (c) {
		case '"': o[1] = '"'; b->len += 2; break;
		case '\\': o[1] = '\\'; b->len += 2; break;
		case '\n': o[1] = 'n'; b->len += 2; break;
		case '\r': o[1] = 'r'; b->len += 2; break;
		case '\t': o[1] = 't'; b->len += 2; break;
		case '\b': o[1] = 'b'; b->len += 2; break;
		case '\f': o[1] = 'f'; b->len += 2; break;
		default:
			o[1] = 'u'; o[2] = '0'; o[3] = '0';
			o[4] = hex[c >> 4]; o[5] = hex[c & 15];
			b->len += 6;
		}
	}
	b->data[b->len++] = '"';
	b->data[b->len] = '\0';
	return MP_OK;
}

enum mp_err buf_json_num(struct buf *b, double d)
{
	char tmp[32];
	double back;

	if (!isfinite(d))
		return buf_append(b, "null", 4);
	if (fabs(d) < 1e18 && d == (double)(long long)d) {
		snprintf(tmp, sizeof tmp, "%lld", (long long)d);
	} else {
		snprintf(tmp, sizeof tmp, "%1.15g", d);
		if (sscanf(tmp, "%lg", &back) != 1 || back != d)
			snprintf(tmp, sizeof tmp, "%1.17g", d);
	}
	return buf_append(b, tmp, strlen(tmp));
}

enum mp_err buf_varint(struct buf *b, uint64_t v)
{
	unsigned char tmp[10];
	size_t n = 0;

	do {
		unsigned char c = v & 0x7f;
		v >>= 7;
		tmp[n++] = (unsigned char)(c | (v ? 0x80 : 0));
	} while (v);
	return buf_append(b, tmp, n);
}
