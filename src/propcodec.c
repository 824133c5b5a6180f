/*
 * propcodec.c - encode event properties into the compact binary record and
 * back to JSON (format in include/propcodec.h).
 *
 * Invariants: the encoder only emits the tags listed in the header; every
 * decoder bounds-checks against END and limits nesting to PC_MAX_DEPTH, so a
 * damaged record cannot make a reader loop or overrun.
 */
#include "propcodec.h"

#include <math.h>
#include <string.h>

#define PC_MAX_DEPTH 32

static enum mp_err pc_put_tag(struct buf *out, enum pc_tag t)
{
	return buf_putc(out, (int)t);
}

static enum mp_err pc_put_str(struct buf *out, const char *s, size_t n)
{
	enum mp_err rc;

	if ((rc = pc_put_tag(out, PC_STR)) != MP_OK || (rc = buf_varint(out, n)) != MP_OK)
		return rc;
	return buf_append(out, s, n);
}

static enum mp_err pc_put_number(struct buf *out, double d)
{
	enum mp_err rc;

	if (isfinite(d) && d == floor(d) && fabs(d) < 9007199254740992.0) {
		int64_t i = (int64_t)d;
		uint64_t z = ((uint64_t)i << 1) ^ (uint64_t)(i >> 63);

		if ((rc = pc_put_tag(out, PC_INT)) != MP_OK)
			return rc;
		return buf_varint(out, z);
	}
	if ((rc = pc_put_tag(out, PC_DOUBLE)) != MP_OK)
		return rc;
	{
		unsigned char b[8];
		uint64_t u;
		int k;

		memcpy(&u, &d, 8);
		for (k = 0; k < 8; k++)
			b[k] = (unsigned char)(u >> (8 * k));
		return buf_append(out, b, 8);
	}
}

static enum mp_err pc_put_value(const cJSON *v, int top, int force_inline,
				pc_intern_fn intern, void *ctx, struct buf *out, int depth)
{
	enum mp_err rc;
	const cJSON *c;
	size_t n = 0;

	if (depth > PC_MAX_DEPTH)
		return MP_E_INVALID;
	if (cJSON_IsNull(v) || cJSON_IsInvalid(v))
		return pc_put_tag(out, PC_NULL);
	if (cJSON_IsFalse(v))
		return pc_put_tag(out, PC_FALSE);
	if (cJSON_IsTrue(v))
		return pc_put_tag(out, PC_TRUE);
	if (cJSON_IsNumber(v))
		return pc_put_number(out, v->valuedouble);
	if (cJSON_IsString(v)) {
		size_t len = strlen(v->valuestring);

		if (top && !force_inline && len <= PC_DICT_MAX) {
			int64_t id = intern(ctx, v->valuestring, len, 1);

			if (id < 0)
				return (enum mp_err)(-id);
			if (id > 0) {
				if ((rc = pc_put_tag(out, PC_DICTSTR)) != MP_OK)
					return rc;
				return buf_varint(out, (uint64_t)id);
			}
		}
		return pc_put_str(out, v->valuestring, len);
	}
	for (c = v->child; c; c = c->next)
		n++;
	if (cJSON_IsArray(v)) {
		if ((rc = pc_put_tag(out, PC_ARRAY)) != MP_OK || (rc = buf_varint(out, n)) != MP_OK)
			return rc;
		for (c = v->child; c; c = c->next)
			if ((rc = pc_put_value(c, 0, 1, intern, ctx, out, depth + 1)) != MP_OK)
				return rc;
		return MP_OK;
	}
	/* object */
	if ((rc = pc_put_tag(out, PC_OBJECT)) != MP_OK || (rc = buf_varint(out, n)) != MP_OK)
		return rc;
	for (c = v->child; c; c = c->next) {
		const char *k = c->string ? c->string : "";
		size_t kl = strlen(k);

		if ((rc = buf_varint(out, kl)) != MP_OK || (rc = buf_append(out, k, kl)) != MP_OK)
			return rc;
		if ((rc = pc_put_value(c, 0, 1, intern, ctx, out, depth + 1)) != MP_OK)
			return rc;
	}
	return MP_OK;
}

static int pc_skipped(const char *k, const char *const *skip)
{
	for (; skip && *skip; skip++)
		if (strcmp(k, *skip) == 0)
			return 1;
	return 0;
}

enum mp_err pc_encode(const cJSON *props, const char *const *skip, const char *inline_key,
		      pc_intern_fn intern, void *ctx, struct buf *out)
{
	const cJSON *c;
	enum mp_err rc;

	if ((rc = buf_putc(out, PC_VERSION)) != MP_OK)
		return rc;
	for (c = props ? props->child : NULL; c; c = c->next) {
		int64_t kid;

		if (!c->string || pc_skipped(c->string, skip))
			continue;
		kid = intern(ctx, c->string, strlen(c->string), 0);
		if (kid < 0)
			return (enum mp_err)(-kid);
		if ((rc = buf_varint(out, (uint64_t)kid)) != MP_OK)
			return rc;
		rc = pc_put_value(c, 1, inline_key && strcmp(c->string, inline_key) == 0,
				  intern, ctx, out, 0);
		if (rc != MP_OK)
			return rc;
	}
	return MP_OK;
}

const unsigned char *pc_skip_value(const unsigned char *p, const unsigned char *end, int depth)
{
	uint64_t n, i, kl;

	if (p >= end || depth > PC_MAX_DEPTH)
		return NULL;
	switch (*p++) {
	case PC_NULL: case PC_FALSE: case PC_TRUE:
		return p;
	case PC_INT: case PC_DICTSTR:
		return pc_varint(p, end, &n);
	case PC_DOUBLE:
		return end - p >= 8 ? p + 8 : NULL;
	case PC_STR:
		if (!(p = pc_varint(p, end, &n)) || (uint64_t)(end - p) < n)
			return NULL;
		return p + n;
	case PC_ARRAY:
		if (!(p = pc_varint(p, end, &n)))
			return NULL;
		for (i = 0; i < n && p; i++)
			p = pc_skip_value(p, end, depth + 1);
		return p;
	case PC_OBJECT:
		if (!(p = pc_varint(p, end, &n)))
			return NULL;
		for (i = 0; i < n && p; i++) {
			if (!(p = pc_varint(p, end, &kl)) || (uint64_t)(end - p) < kl)
				return NULL;
			p = pc_skip_value(p + kl, end, depth + 1);
		}
		return p;
	default:
		return NULL;
	}
}

int pc_find(const unsigned char *p, size_t n, int64_t key_id,
	    const unsigned char **val, const unsigned char **val_end)
{
	const unsigned char *end = p + n, *q;
	uint64_t k;

	if (n < 1 || *p != PC_VERSION)
		return -1;
	p++;
	while (p < end) {
		if (!(p = pc_varint(p, end, &k)))
			return -1;
		if (!(q = pc_skip_value(p, end, 0)))
			return -1;
		if ((int64_t)k == key_id) {
			*val = p;
			*val_end = q;
			return 1;
		}
		p = q;
	}
	return 0;
}

static const unsigned char *pc_value_json(const unsigned char *p, const unsigned char *end,
					  pc_lookup_fn lookup, void *ctx, struct buf *out,
					  int depth, enum mp_err *rc)
{
	uint64_t n, i, kl;
	const char *s;
	size_t sl;

	if (p >= end || depth > PC_MAX_DEPTH)
		goto corrupt;
	switch (*p++) {
	case PC_NULL: *rc = buf_append(out, "null", 4); return p;
	case PC_FALSE: *rc = buf_append(out, "false", 5); return p;
	case PC_TRUE: *rc = buf_append(out, "true", 4); return p;
	case PC_INT:
		if (!(p = pc_varint(p, end, &n)))
			goto corrupt;
		*rc = buf_printf(out, "%lld", (long long)((int64_t)(n >> 1) ^ -(int64_t)(n & 1)));
		return p;
	case PC_DOUBLE: {
		uint64_t u = 0;
		double d;
		int k;

		if (end - p < 8)
			goto corrupt;
		for (k = 0; k < 8; k++)
			u |= (uint64_t)p[k] << (8 * k);
		memcpy(&d, &u, 8);
		*rc = buf_json_num(out, d);
		return p + 8;
	}
	case PC_DICTSTR:
		if (!(p = pc_varint(p, end, &n)) || !(s = lookup(ctx, (int64_t)n, &sl)))
			goto corrupt;
		*rc = buf_json_str(out, s, sl);
		return p;
	case PC_STR:
		if (!(p = pc_varint(p, end, &n)) || (uint64_t)(end - p) < n)
			goto corrupt;
		*rc = buf_json_str(out, (const char *)p, (size_t)n);
		return p + n;
	case PC_ARRAY:
		if (!(p = pc_varint(p, end, &n)))
			goto corrupt;
		*rc = buf_putc(out, '[');
		for (i = 0; i < n && *rc == MP_OK; i++) {
			if (i && (*rc = buf_putc(out, ',')) != MP_OK)
				break;
			if (!(p = pc_value_json(p, end, lookup, ctx, out, depth + 1, rc)))
				return NULL;
		}
		if (*rc == MP_OK)
			*rc = buf_putc(out, ']');
		return p;
	case PC_OBJECT:
		if (!(p = pc_varint(p, end, &n)))
			goto corrupt;
		*rc = buf_putc(out, '{');
		for (i = 0; i < n && *rc == MP_OK; i++) {
			if (i && (*rc = buf_putc(out, ',')) != MP_OK)
				break;
			if (!(p = pc_varint(p, end, &kl)) || (uint64_t)(end - p) < kl)
				goto corrupt;
			if ((*rc = buf_json_str(out, (const char *)p, (size_t)kl)) != MP_OK ||
			    (*rc = buf_putc(out, ':')) != MP_OK)
				break;
			if (!(p = pc_value_json(p + kl, end, lookup, ctx, out, depth + 1, rc)))
				return NULL;
		}
		if (*rc == MP_OK)
			*rc = buf_putc(out, '}');
		return p;
	default:
		goto corrupt;
	}
corrupt:
	*rc = MP_E_STORE;
	return NULL;
}

enum mp_err pc_to_json(const unsigned char *p, size_t n, pc_lookup_fn lookup, void *ctx,
		       struct buf *out, int *first)
{
	const unsigned char *end = p + n;
	enum mp_err rc = MP_OK;
	uint64_t k;

	if (n < 1 || *p != PC_VERSION)
		return MP_E_STORE;
	p++;
	while (p < end) {
		const char *key;
		size_t kl;

		if (!(p = pc_varint(p, end, &k)) || !(key = lookup(ctx, (int64_t)k, &kl)))
			return MP_E_STORE;
		if (!*first && (rc = buf_putc(out, ',')) != MP_OK)
			return rc;
		*first = 0;
		if ((rc = buf_json_str(out, key, kl)) != MP_OK || (rc = buf_putc(out, ':')) != MP_OK)
			return rc;
		if (!(p = pc_value_json(p, end, lookup, ctx, out, 0, &rc)))
			return rc == MP_OK ? MP_E_STORE : rc;
		if (rc != MP_OK)
			return rc;
	}
	return MP_OK;
}

enum mp_err pc_remap(const unsigned char *p, size_t n, int64_t (*map)(void *ctx, int64_t id),
		     void *ctx, struct buf *out)
{
	const unsigned char *end = p + n, *q;
	enum mp_err rc;
	uint64_t k, v;
	int64_t m;

	if (n < 1 || *p != PC_VERSION)
		return MP_E_STORE;
	if ((rc = buf_putc(out, PC_VERSION)) != MP_OK)
		return rc;
	p++;
	while (p < end) {
		if (!(p = pc_varint(p, end, &k)) || p >= end || (m = map(ctx, (int64_t)k)) < 0)
			return MP_E_STORE;
		if ((rc = buf_varint(out, (uint64_t)m)) != MP_OK)
			return rc;
		if (*p == PC_DICTSTR) {
			if (!(q = pc_varint(p + 1, end, &v)) || (m = map(ctx, (int64_t)v)) < 0)
				return MP_E_STORE;
			if ((rc = buf_putc(out, PC_DICTSTR)) != MP_OK || (rc = buf_varint(out, (uint64_t)m)) != MP_OK)
				return rc;
		} else {
			if (!(q = pc_skip_value(p, end, 0)))
				return MP_E_STORE;
			if ((rc = buf_append(out, p, (size_t)(q - p))) != MP_OK)
				return rc;
		}
		p = q;
	}
	return MP_OK;
}

static const unsigned char *pc_scalar(const unsigned char *p, const unsigned char *end, pc_lookup_fn lookup,
				      void *ctx, struct expr_value *out)
{
	uint64_t n;
	size_t sl;
	const char *s;

	if (p >= end)
		return NULL;
	switch (*p++) {
	case PC_NULL: out->type = EXPR_NULL; return p;
	case PC_FALSE: out->type = EXPR_BOOL; out->u.b = 0; return p;
	case PC_TRUE: out->type = EXPR_BOOL; out->u.b = 1; return p;
	case PC_INT:
		if (!(p = pc_varint(p, end, &n)))
			return NULL;
		out->type = EXPR_NUMBER;
		out->u.n = (double)((int64_t)(n >> 1) ^ -(int64_t)(n & 1));
		return p;
	case PC_DOUBLE: {
		uint64_t u = 0;
		int k;

		if (end - p < 8)
			return NULL;
		for (k = 0; k < 8; k++)
			u |= (uint64_t)p[k] << (8 * k);
		out->type = EXPR_NUMBER;
		memcpy(&out->u.n, &u, 8);
		return p + 8;
	}
	case PC_DICTSTR:
		if (!(p = pc_varint(p, end, &n)) || !(s = lookup(ctx, (int64_t)n, &sl)))
			return NULL;
		out->type = EXPR_STRING;
		out->u.str.s = s;
		out->u.str.len = sl;
		return p;
	case PC_STR:
		if (!(p = pc_varint(p, end, &n)) || (uint64_t)(end - p) < n)
			return NULL;
		out->type = EXPR_STRING;
		out->u.str.s = (const char *)p;
		out->u.str.len = (size_t)n;
		return p + n;
	default:
		/* a nested list or object: not a scalar */
		out->type = EXPR_UNDEFINED;
		return pc_skip_value(p - 1, end, 1);
	}
}

int pc_expr_value(const unsigned char *v, const unsigned char *end, pc_lookup_fn lookup, void *ctx,
		  struct expr_value *out, struct expr_value *items, size_t n_items)
{
	uint64_t n, i;
	size_t got = 0;

	if (v >= end)
		return -1;
	if (*v == PC_OBJECT) {
		out->type = EXPR_UNDEFINED;
		return 0;
	}
	if (*v != PC_ARRAY)
		return pc_scalar(v, end, lookup, ctx, out) ? 0 : -1;
	if (!(v = pc_varint(v + 1, end, &n)))
		return -1;
	for (i = 0; i < n; i++) {
		struct expr_value it;

		if (!(v = pc_scalar(v, end, lookup, ctx, &it)))
			return -1;
		if (it.type != EXPR_UNDEFINED && got < n_items)
			items[got++] = it;
	}
	out->type = EXPR_LIST;
	out->u.list.items = items;
	out->u.list.n = got;
	return 0;
}

#define NAME_IS(lit) (len == sizeof(lit) - 1 && memcmp(name, lit, sizeof(lit) - 1) == 0)

int pc_event_lookup(const struct pc_event_ref *ev, enum expr_scope scope, const char *name, size_t len,
		    struct expr_value *out)
{
	const unsigned char *val, *val_end;
	int64_t key;

	out->type = EXPR_UNDEFINED;
	switch (scope) {
	case EXPR_SCOPE_EVENT:
		if (NAME_IS("$time") || NAME_IS("time")) {
			out->type = EXPR_DATETIME;
			out->u.ms = ev->time_ms;
		} else if (NAME_IS("name") || NAME_IS("$event_name") || NAME_IS("event")) {
			out->type = EXPR_STRING;
			out->u.str.s = ev->name;
			out->u.str.len = ev->name_len;
		} else if (NAME_IS("distinct_id") || NAME_IS("$distinct_id")) {
			out->type = EXPR_STRING;
			out->u.str.s = ev->did;
			out->u.str.len = ev->did_len;
		}
		return 0;
	case EXPR_SCOPE_PROPERTIES:
		if (NAME_IS("time")) {
			out->type = EXPR_NUMBER;
			out->u.n = (double)ev->time_ms / 1000.0;
			return 0;
		}
		if (NAME_IS("distinct_id")) {
			out->type = EXPR_STRING;
			out->u.str.s = ev->did;
			out->u.str.len = ev->did_len;
			return 0;
		}
		if (!(key = ev->key_id(ev->ctx, name, len)))
			return 0;
		switch (pc_find(ev->props, ev->props_len, key, &val, &val_end)) {
		case 1:
			return pc_expr_value(val, val_end, ev->lookup, ev->ctx, out, ev->items, ev->n_items);
		case 0:
			return 0;
		default:
			return -1;
		}
	default:
		return 0;
	}
}
