/*
 * fuzz_expr.c - libFuzzer target for the expression language
 * (include/expr.h, src/expr.c).
 *
 * Compiles the raw bytes (not NUL-terminated, may hold NULs) and checks the
 * contract instead of only "no crash":
 *   compile: the same input compiled twice gives the same verdict, offset
 *            and message; on failure the code is MP_E_PARSE or MP_E_TOOBIG,
 *            *out is NULL, the offset is <= len and the message is non-empty.
 *   eval:    against a fixed property set, expr_eval returns MP_OK or
 *            MP_E_INVALID (with a non-empty expr_error); the result type is a
 *            valid enum; expr_value_key's return equals strlen of what it
 *            wrote when the buffer is big enough, and a truncated key is a
 *            prefix of the full one; evaluating again gives the same key;
 *            expr_eval_where is -1 exactly when expr_eval failed and
 *            otherwise 1 exactly for boolean true; expr_refs reports each
 *            (scope, name) once.
 * Any violation abort()s so libFuzzer records the input.
 */
#include "expr.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const struct expr_value fz_tags[] = {
	{ .type = EXPR_STRING, .u.str = { "a", 1 } },
	{ .type = EXPR_STRING, .u.str = { "b", 1 } },
	{ .type = EXPR_NUMBER, .u.n = 3 },
};

static int fz_lookup(void *ctx, enum expr_scope scope, const char *name, size_t len,
		     struct expr_value *out)
{
	(void)ctx;
	out->type = EXPR_UNDEFINED;
	if (scope == EXPR_SCOPE_USER && len == 4 && memcmp(name, "plan", 4) == 0) {
		out->type = EXPR_STRING;
		out->u.str.s = "pro";
		out->u.str.len = 3;
		return 0;
	}
	if (scope == EXPR_SCOPE_EVENT && len == 5 && memcmp(name, "$time", 5) == 0) {
		out->type = EXPR_NUMBER;
		out->u.n = 1704067200;
		return 0;
	}
	if (scope != EXPR_SCOPE_PROPERTIES || len != 1)
		return 0;
	switch (name[0]) {
	case 'a': out->type = EXPR_NUMBER; out->u.n = 1; break;
	case 'f': out->type = EXPR_NUMBER; out->u.n = -2.5; break;
	case 's': out->type = EXPR_STRING; out->u.str.s = "hello"; out->u.str.len = 5; break;
	case 'd': out->type = EXPR_STRING; out->u.str.s = "2024-01-01"; out->u.str.len = 10; break;
	case 'e': out->type = EXPR_STRING; out->u.str.s = ""; out->u.str.len = 0; break;
	case 'b': out->type = EXPR_BOOL; out->u.b = 1; break;
	case 'n': out->type = EXPR_NULL; break;
	case 't':
		out->type = EXPR_LIST;
		out->u.list.items = fz_tags;
		out->u.list.n = sizeof(fz_tags) / sizeof(fz_tags[0]);
		break;
	default: break;
	}
	return 0;
}

#define FZ_MAX_REFS 256

struct fz_refs {
	size_t n;
	int overflow;
	enum expr_scope scope[FZ_MAX_REFS];
	const char *name[FZ_MAX_REFS];
	size_t len[FZ_MAX_REFS];
};

static void fz_ref_cb(void *ctx, enum expr_scope scope, const char *name, size_t len)
{
	struct fz_refs *r = ctx;
	size_t i;

	if ((unsigned)scope > (unsigned)EXPR_SCOPE_GROUP)
		abort();
	for (i = 0; i < r->n; i++)
		if (r->scope[i] == scope && r->len[i] == len && memcmp(r->name[i], name, len) == 0)
			abort(); /* reported twice */
	if (r->n == FZ_MAX_REFS) {
		r->overflow = 1;
		return;
	}
	r->scope[r->n] = scope;
	r->name[r->n] = name;
	r->len[r->n] = len;
	r->n++;
}

static char fz_key1[1 << 17], fz_key2[1 << 17];

static size_t fz_key_checked(const struct expr_value *v, char *buf)
{
	size_t n = expr_value_key(v, buf, sizeof(fz_key1));
	char small[8];
	size_t m;

	/* a key holds a NUL only when the value did (a \u0000 escape) */
	if (n < sizeof(fz_key1) && (buf[n] != '\0' || (strlen(buf) != n && !memchr(buf, '\0', n))))
		abort();
	m = expr_value_key(v, small, sizeof(small));
	if (m != n)
		abort();
	if (n < sizeof(fz_key1) && memcmp(small, buf, n < sizeof(small) - 1 ? n : sizeof(small) - 1) != 0)
		abort();
	if (small[n < sizeof(small) - 1 ? n : sizeof(small) - 1] != '\0')
		abort();
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct expr *e = NULL, *e2 = NULL;
	char err[256], err2[256];
	size_t off = 0, off2 = 0;
	enum mp_err rc, rc2, erc, erc2;
	struct expr_value v, v2;
	struct fz_refs refs;
	int w;

	memset(err, 'x', sizeof(err));
	rc = expr_compile((const char *)data, size, &e, err, sizeof(err), &off);
	rc2 = expr_compile((const char *)data, size, &e2, err2, sizeof(err2), &off2);
	if (rc != rc2)
		abort();
	expr_free(e2);
	{
		/* formulas accept a superset (A..Z are variables) */
		struct expr *ef = NULL;
		char errf[256];
		size_t offf = 0;
		enum mp_err rcf = expr_compile_formula((const char *)data, size, &ef, errf, sizeof(errf), &offf);

		if ((rc == MP_OK && rcf != MP_OK) || (rcf == MP_OK) != (ef != NULL) || offf > size)
			abort();
		if (ef && expr_eval(ef, fz_lookup, NULL, &v2) == MP_E_INVALID && expr_error(ef)[0] == '\0')
			abort();
		expr_free(ef);
	}
	if (rc != MP_OK) {
		if (rc != MP_E_PARSE && rc != MP_E_TOOBIG)
			abort();
		if (e != NULL || off > size || off != off2 || err[0] == '\0' ||
		    !memchr(err, '\0', sizeof(err)) || strcmp(err, err2) != 0)
			abort();
		return 0;
	}
	if (!e)
		abort();

	memset(&refs, 0, sizeof(refs));
	expr_refs(e, fz_ref_cb, &refs);

	erc = expr_eval(e, fz_lookup, NULL, &v);
	if (erc != MP_OK && erc != MP_E_INVALID)
		abort();
	if (erc == MP_E_INVALID && expr_error(e)[0] == '\0')
		abort();
	if (erc == MP_OK) {
		size_t n1, n2;

		if ((unsigned)v.type > (unsigned)EXPR_DATETIME)
			abort();
		n1 = fz_key_checked(&v, fz_key1);
		erc2 = expr_eval(e, fz_lookup, NULL, &v2);
		if (erc2 != MP_OK || v2.type != v.type)
			abort();
		n2 = fz_key_checked(&v2, fz_key2);
		if (n1 != n2 || (n1 < sizeof(fz_key1) && memcmp(fz_key1, fz_key2, n1) != 0))
			abort();
	}
	w = expr_eval_where(e, fz_lookup, NULL);
	if ((w == -1) != (erc != MP_OK))
		abort();
	if (erc == MP_OK && w != (v.type == EXPR_BOOL && v.u.b))
		abort();
	expr_free(e);
	return 0;
}
