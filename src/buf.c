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

static enum mp_err buf_reserve(struct buf *b, size_t n)
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

enum mp_err buf_json_str(struct buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	enum mp_err rc;
	size_t i, need = 2;

	/* exact escaped size first, so a string that fits under the cap is taken */
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		need += c >= 0x20 && c != '"' && c != '\\' ? 1
			: (c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f') ? 2 : 6;
	}
	if ((rc = buf_reserve(b, need)) != MP_OK)
		return rc;
	b->data[b->len++] = '"';
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char *o = b->data + b->len;

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
	if (d == (double)(long long)d && fabs(d) < 1e18) {
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
