/*
 * expr.c - compiler and evaluator for the segmentation expression language
 * (include/expr.h, spec §11): lexer, recursive-descent parser emitting
 * postfix bytecode, and a stack machine that evaluates it per record.
 *
 * Why bytecode: a `where` runs once per event, so evaluation must be a flat
 * loop with no allocation and no recursion whose depth depends on the input
 * (`1+1+1+...` is 32K levels deep as a tree but needs two stack slots here).
 *
 * Invariants:
 *  1. The parser recurses only through parenthesised groups, list literals,
 *     function calls and the prefix operators `-` and `not`; each of those
 *     counts one nesting level and more than EXPR_MAX_DEPTH levels is
 *     MP_E_TOOBIG, so C stack use is bounded.  Binary operator chains are
 *     loops.
 *  2. Every string constant points into e->pool, allocated once at compile
 *     time with len+1 bytes (unescaping never grows a string), so those
 *     pointers never move.
 *  3. Each instruction that can produce a new string (`+`, string()) owns its
 *     scratch buffer; an instruction runs at most once per evaluation, so a
 *     result stays valid until the next expr_eval even while later
 *     instructions run.  A buffer grows (realloc) only when too small.
 *  4. Each non-constant list literal owns an item array sized at compile
 *     time; constant list literals are folded into one constant.  All item
 *     arrays are listed in e->arrays and freed by expr_free.
 *  5. The value stack is sized at compile time (e->max_stack) from the
 *     exact stack effect of every emitted instruction.
 *
 * Choices where include/expr.h is silent (the most Mixpanel-like reading):
 *  - `and`/`or` evaluate both operands (no short-circuit), so a non-boolean
 *    operand is always an error, whatever the other operand is.
 *  - `not in` is `not (a in b)`, so it is true when `in` is undefined.
 *  - `==`: two lists are equal when they have equal elements in order; a list
 *    and a non-list are equal when any element is equal; undefined ==
 *    undefined and null == null are true.  A datetime equals only a datetime.
 *  - `in` with a list on both sides is true when any left element is a
 *    member of the right list.
 *  - defined(x) is true for every type except undefined (null is "set").
 *  - boolean(x): false for undefined, null, false, 0, "", "false" and the
 *    empty list; true otherwise.
 *  - number(x): strings must be a decimal number (optional sign, fraction,
 *    exponent; surrounding blanks ignored), datetimes give unix seconds.
 *  - string(x) of a datetime or list gives its expr_value_key text.
 *  - round() rounds half away from zero (C round()).
 *  - A number result that is not finite (1e308*10) becomes undefined, and so
 *    does a NaN or infinite number returned by the lookup callback.  A number
 *    literal that overflows is a compile error.
 *  - Datetimes are limited to years 0000-9999; datetime(n) outside gives
 *    undefined.
 *  - Nesting depth counts `(`, `[`, function calls and each prefix `-` or
 *    `not`; 64 levels compile, 65 give MP_E_TOOBIG.
 *  - Beyond the header's escapes, \/ \r \b \f (as in JSON) are accepted.
 *  - Functions check their argument count at compile time (a static error).
 *  - expr_eval can also return MP_E_NOMEM when a string scratch buffer
 *    cannot grow.
 */
#include "expr.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPR_MAX_SRC 65536
#define EXPR_MAX_DEPTH 64
#define EXPR_MAX_LIST 10000
#define EXPR_MAX_VALUE_DEPTH 64 /* recursion cap for nested list values */
#define EXPR_SCRATCH_INIT 64

enum expr_op {
	OP_CONST, OP_LOOKUP, OP_LIST, OP_NEG, OP_NOT,
	OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MOD,
	OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN,
	OP_AND, OP_OR,
	OP_F_DEFINED, OP_F_BOOLEAN, OP_F_NUMBER, OP_F_STRING, OP_F_DATETIME,
	OP_F_FLOOR, OP_F_ROUND, OP_F_CEIL, OP_F_HAS_PREFIX
};

struct expr_insn {
	enum expr_op op;
	size_t pos;                /* source byte offset, for messages */
	size_t n;                  /* OP_LIST: items; OP_LOOKUP: ref index */
	struct expr_value v;       /* OP_CONST */
	struct expr_value *items;  /* OP_LIST: owned through e->arrays */
	char *buf;                 /* OP_ADD, OP_F_STRING: string scratch */
	size_t cap;
};

struct expr_ref {
	enum expr_scope scope;
	const char *name;          /* into e->pool */
	size_t len;
};

struct expr {
	char *pool;
	size_t pool_len;
	struct expr_insn *code;
	size_t n_code, cap_code;
	struct expr_ref *refs;
	size_t n_refs, cap_refs;
	struct expr_value **arrays;
	size_t n_arrays, cap_arrays;
	struct expr_value *stack;
	size_t max_stack;
	char errmsg[160];
};

/* ---------------------------------------------------------------- lexer */

enum expr_tok_kind {
	TK_EOF, TK_NUM, TK_STR, TK_IDENT,
	TK_LPAREN, TK_RPAREN, TK_LBRACK, TK_RBRACK, TK_COMMA,
	TK_PLUS, TK_MINUS, TK_STAR, TK_SLASH, TK_PERCENT,
	TK_EQ, TK_NE, TK_LT, TK_LE, TK_GT, TK_GE
};

struct expr_tok {
	enum expr_tok_kind kind;
	size_t pos, len;           /* source span */
	double num;
	const char *str;           /* TK_STR: unescaped, in pool */
	size_t str_len;
};

struct expr_parser {
	const char *src;
	size_t len, pos;           /* lexer position: end of cur */
	struct expr_tok cur;
	struct expr *e;
	int depth;
	size_t stack, max_stack;
	enum mp_err rc;
	char *err;
	size_t errlen;
	size_t err_off;
	int letters;               /* formulas: A..Z are metric variables */
};

static int expr_fail(struct expr_parser *p, enum mp_err rc, size_t off, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int expr_fail(struct expr_parser *p, enum mp_err rc, size_t off, const char *fmt, ...)
{
	va_list ap;
	char msg[200];

	if (p->rc != MP_OK)
		return -1;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	p->rc = rc;
	p->err_off = off;
	if (p->err && p->errlen > 0)
		snprintf(p->err, p->errlen, "%s at byte %zu", msg, off);
	return -1;
}

/* Describe token T for "found ..." parts of messages. */
static void expr_tok_describe(const struct expr_parser *p, const struct expr_tok *t, char *out,
			      size_t n)
{
	switch (t->kind) {
	case TK_EOF: snprintf(out, n, "end of input"); break;
	case TK_NUM: snprintf(out, n, "number"); break;
	case TK_STR: snprintf(out, n, "string"); break;
	default: {
		int l = t->len > 32 ? 32 : (int)t->len;

		snprintf(out, n, "'%.*s'", l, p->src + t->pos);
		break;
	}
	}
}

static int expr_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static long expr_read_u4(const char *s, size_t avail)
{
	long v = 0;
	size_t i;

	if (avail < 4)
		return -1;
	for (i = 0; i < 4; i++) {
		int h = expr_hexval((unsigned char)s[i]);

		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

static size_t expr_utf8_put(char *out, unsigned long cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* Lex a quoted string at p->pos into the pool (invariant 2). */
static int expr_lex_string(struct expr_parser *p, struct expr_tok *t)
{
	const char *s = p->src;
	size_t start = p->pos, i = p->pos + 1;
	char q = s[start];
	char *out = p->e->pool + p->e->pool_len;
	size_t o = 0;

	for (;;) {
		unsigned char c;

		if (i >= p->len)
			return expr_fail(p, MP_E_PARSE, start, "unterminated string starting");
		c = (unsigned char)s[i];
		if (c == (unsigned char)q) {
			i++;
			break;
		}
		if (c != '\\') {
			out[o++] = (char)c;
			i++;
			continue;
		}
		if (i + 1 >= p->len)
			return expr_fail(p, MP_E_PARSE, start, "unterminated string starting");
		c = (unsigned char)s[i + 1];
		switch (c) {
		case '"': case '\'': case '\\': case '/': out[o++] = (char)c; i += 2; break;
		case 'n': out[o++] = '\n'; i += 2; break;
		case 't': out[o++] = '\t'; i += 2; break;
		case 'r': out[o++] = '\r'; i += 2; break;
		case 'b': out[o++] = '\b'; i += 2; break;
		case 'f': out[o++] = '\f'; i += 2; break;
		case 'u': {
			long cp = expr_read_u4(s + i + 2, p->len - (i + 2));
			size_t esc = i;

			if (cp < 0)
				return expr_fail(p, MP_E_PARSE, esc,
						 "expected 4 hex digits after '\\u'");
			i += 6;
			if (cp >= 0xDC00 && cp <= 0xDFFF)
				return expr_fail(p, MP_E_PARSE, esc, "unpaired surrogate in '\\u' escape");
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				long lo = -1;

				if (i + 1 < p->len && s[i] == '\\' && s[i + 1] == 'u')
					lo = expr_read_u4(s + i + 2, p->len - (i + 2));
				if (lo < 0xDC00 || lo > 0xDFFF)
					return expr_fail(p, MP_E_PARSE, esc,
							 "unpaired surrogate in '\\u' escape");
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
				i += 6;
			}
			o += expr_utf8_put(out + o, (unsigned long)cp);
			break;
		}
		default:
			if (c >= 0x20 && c < 0x7F)
				return expr_fail(p, MP_E_PARSE, i, "unknown escape '\\%c'", c);
			return expr_fail(p, MP_E_PARSE, i, "unknown escape '\\\\x%02x'", c);
		}
	}
	t->kind = TK_STR;
	t->str = out;
	t->str_len = o;
	p->e->pool_len += o;
	p->pos = i;
	return 0;
}

static int expr_lex_number(struct expr_parser *p, struct expr_tok *t)
{
	const char *s = p->src;
	size_t i = p->pos, start = p->pos;
	char tmp[128];
	char *end;

	while (i < p->len && s[i] >= '0' && s[i] <= '9')
		i++;
	if (i < p->len && s[i] == '.') {
		i++;
		if (i >= p->len || s[i] < '0' || s[i] > '9')
			return expr_fail(p, MP_E_PARSE, i, "expected digit after '.' in number");
		while (i < p->len && s[i] >= '0' && s[i] <= '9')
			i++;
	}
	if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < p->len && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i >= p->len || s[i] < '0' || s[i] > '9')
			return expr_fail(p, MP_E_PARSE, i, "expected digit in number exponent");
		while (i < p->len && s[i] >= '0' && s[i] <= '9')
			i++;
	}
	if (i < p->len && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
			   s[i] == '_' || s[i] == '.'))
		return expr_fail(p, MP_E_PARSE, i, "unexpected '%c' after number", s[i]);
	if (i - start >= sizeof(tmp))
		return expr_fail(p, MP_E_PARSE, start, "number literal longer than %zu bytes",
				 sizeof(tmp) - 1);
	memcpy(tmp, s + start, i - start);
	tmp[i - start] = '\0';
	t->num = strtod(tmp, &end);
	if (end != tmp + (i - start) || !isfinite(t->num))
		return expr_fail(p, MP_E_PARSE, start, "number out of range");
	t->kind = TK_NUM;
	p->pos = i;
	return 0;
}

static int expr_is_ident(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (c >= '0' && c <= '9') ||
	       c == '$';
}

/* Lex the token starting at p->pos into p->cur. */
static int expr_next(struct expr_parser *p)
{
	const char *s = p->src;
	struct expr_tok *t = &p->cur;
	unsigned char c;

	while (p->pos < p->len && (s[p->pos] == ' ' || s[p->pos] == '\t' || s[p->pos] == '\n' ||
				   s[p->pos] == '\r'))
		p->pos++;
	memset(t, 0, sizeof(*t));
	t->pos = p->pos;
	if (p->pos >= p->len) {
		t->kind = TK_EOF;
		return 0;
	}
	c = (unsigned char)s[p->pos];
	if (c == '"' || c == '\'') {
		if (expr_lex_string(p, t) < 0)
			return -1;
	} else if (c >= '0' && c <= '9') {
		if (expr_lex_number(p, t) < 0)
			return -1;
	} else if (c == '.' && p->pos + 1 < p->len && s[p->pos + 1] >= '0' && s[p->pos + 1] <= '9') {
		return expr_fail(p, MP_E_PARSE, p->pos, "expected digit before '.' in number");
	} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$') {
		while (p->pos < p->len && expr_is_ident((unsigned char)s[p->pos]))
			p->pos++;
		t->kind = TK_IDENT;
	} else {
		size_t two = p->pos + 1 < p->len && s[p->pos + 1] == '=';

		switch (c) {
		case '(': t->kind = TK_LPAREN; break;
		case ')': t->kind = TK_RPAREN; break;
		case '[': t->kind = TK_LBRACK; break;
		case ']': t->kind = TK_RBRACK; break;
		case ',': t->kind = TK_COMMA; break;
		case '+': t->kind = TK_PLUS; break;
		case '-': t->kind = TK_MINUS; break;
		case '*': t->kind = TK_STAR; break;
		case '/': t->kind = TK_SLASH; break;
		case '%': t->kind = TK_PERCENT; break;
		case '<': t->kind = two ? TK_LE : TK_LT; p->pos += two; break;
		case '>': t->kind = two ? TK_GE : TK_GT; p->pos += two; break;
		case '=':
			if (!two)
				return expr_fail(p, MP_E_PARSE, p->pos, "expected '==', found '='");
			t->kind = TK_EQ;
			p->pos++;
			break;
		case '!':
			if (!two)
				return expr_fail(p, MP_E_PARSE, p->pos, "expected '!=', found '!'");
			t->kind = TK_NE;
			p->pos++;
			break;
		default:
			if (c >= 0x21 && c < 0x7F)
				return expr_fail(p, MP_E_PARSE, p->pos, "unexpected character '%c'", c);
			return expr_fail(p, MP_E_PARSE, p->pos, "unexpected byte 0x%02x", c);
		}
		p->pos++;
	}
	t->len = p->pos - t->pos;
	return 0;
}

static int expr_tok_is(const struct expr_parser *p, const struct expr_tok *t, const char *word)
{
	size_t n = strlen(word);

	return t->kind == TK_IDENT && t->len == n && memcmp(p->src + t->pos, word, n) == 0;
}

/* Is the token after the current one the keyword `in`?  Lexes ahead without
 * consuming (and without keeping any pool bytes). */
static int expr_peek_is_in(struct expr_parser *p)
{
	struct expr_tok save = p->cur;
	size_t pos = p->pos, pool_len = p->e->pool_len;
	enum mp_err rc = p->rc;
	char *err = p->err;
	int r;

	p->err = NULL; /* a lex error here is reported again when really lexed */
	r = expr_next(p) == 0 && expr_tok_is(p, &p->cur, "in");
	p->cur = save;
	p->pos = pos;
	p->e->pool_len = pool_len;
	p->rc = rc;
	p->err = err;
	return r;
}

/* --------------------------------------------------------------- emitter */

static struct expr_insn *expr_emit(struct expr_parser *p, enum expr_op op, size_t pos, int effect)
{
	struct expr *e = p->e;
	struct expr_insn *in;

	if (e->n_code == e->cap_code) {
		size_t nc = e->cap_code ? e->cap_code * 2 : 32;
		struct expr_insn *c = realloc(e->code, nc * sizeof(*c));

		if (!c) {
			expr_fail(p, MP_E_NOMEM, pos, "out of memory");
			return NULL;
		}
		e->code = c;
		e->cap_code = nc;
	}
	in = &e->code[e->n_code++];
	memset(in, 0, sizeof(*in));
	in->op = op;
	in->pos = pos;
	if (effect < 0)
		p->stack -= (size_t)-effect;
	else
		p->stack += (size_t)effect;
	if (p->stack > p->max_stack)
		p->max_stack = p->stack;
	if (op == OP_ADD || op == OP_F_STRING) {
		in->buf = malloc(EXPR_SCRATCH_INIT);
		if (!in->buf) {
			e->n_code--;
			expr_fail(p, MP_E_NOMEM, pos, "out of memory");
			return NULL;
		}
		in->cap = EXPR_SCRATCH_INIT;
	}
	return in;
}

static struct expr_value *expr_new_array(struct expr_parser *p, size_t n)
{
	struct expr *e = p->e;
	struct expr_value *a;

	if (e->n_arrays == e->cap_arrays) {
		size_t nc = e->cap_arrays ? e->cap_arrays * 2 : 8;
		struct expr_value **na = realloc(e->arrays, nc * sizeof(*na));

		if (!na)
			goto nomem;
		e->arrays = na;
		e->cap_arrays = nc;
	}
	a = calloc(n ? n : 1, sizeof(*a));
	if (!a)
		goto nomem;
	e->arrays[e->n_arrays++] = a;
	return a;
nomem:
	expr_fail(p, MP_E_NOMEM, p->cur.pos, "out of memory");
	return NULL;
}

static int expr_add_ref(struct expr_parser *p, enum expr_scope scope, const char *name, size_t len,
			size_t *idx)
{
	struct expr *e = p->e;
	size_t i;

	for (i = 0; i < e->n_refs; i++) {
		if (e->refs[i].scope == scope && e->refs[i].len == len &&
		    memcmp(e->refs[i].name, name, len) == 0) {
			*idx = i;
			return 0;
		}
	}
	if (e->n_refs == e->cap_refs) {
		size_t nc = e->cap_refs ? e->cap_refs * 2 : 8;
		struct expr_ref *r = realloc(e->refs, nc * sizeof(*r));

		if (!r)
			return expr_fail(p, MP_E_NOMEM, p->cur.pos, "out of memory");
		e->refs = r;
		e->cap_refs = nc;
	}
	e->refs[e->n_refs].scope = scope;
	e->refs[e->n_refs].name = name;
	e->refs[e->n_refs].len = len;
	*idx = e->n_refs++;
	return 0;
}

/* ---------------------------------------------------------------- parser */

static int expr_parse_or(struct expr_parser *p);

static int expr_enter(struct expr_parser *p, size_t pos)
{
	if (++p->depth > EXPR_MAX_DEPTH)
		return expr_fail(p, MP_E_TOOBIG, pos, "expression nested deeper than %d levels",
				 EXPR_MAX_DEPTH);
	return 0;
}

static int expr_expect(struct expr_parser *p, enum expr_tok_kind kind, const char *what,
		       const char *ctx)
{
	char found[48];

	if (p->cur.kind == kind)
		return expr_next(p);
	expr_tok_describe(p, &p->cur, found, sizeof(found));
	return expr_fail(p, MP_E_PARSE, p->cur.pos, "expected %s %s, found %s", what, ctx, found);
}

static const struct {
	const char *name;
	enum expr_op op;
	int argc;
} expr_funcs[] = {
	{ "defined", OP_F_DEFINED, 1 }, { "boolean", OP_F_BOOLEAN, 1 },
	{ "number", OP_F_NUMBER, 1 },   { "string", OP_F_STRING, 1 },
	{ "datetime", OP_F_DATETIME, 1 }, { "floor", OP_F_FLOOR, 1 },
	{ "round", OP_F_ROUND, 1 },     { "ceil", OP_F_CEIL, 1 },
	{ "has_prefix", OP_F_HAS_PREFIX, 2 },
};

static int expr_parse_call(struct expr_parser *p, size_t fi)
{
	size_t pos = p->cur.pos, argc = 0;
	char found[48];

	if (expr_next(p) < 0)
		return -1;
	if (p->cur.kind != TK_LPAREN) {
		expr_tok_describe(p, &p->cur, found, sizeof(found));
		return expr_fail(p, MP_E_PARSE, p->cur.pos, "expected '(' after '%s', found %s",
				 expr_funcs[fi].name, found);
	}
	if (expr_enter(p, p->cur.pos) < 0 || expr_next(p) < 0)
		return -1;
	for (;;) {
		if (expr_parse_or(p) < 0)
			return -1;
		argc++;
		if (p->cur.kind == TK_COMMA) {
			if (expr_next(p) < 0)
				return -1;
			continue;
		}
		if (p->cur.kind == TK_RPAREN)
			break;
		expr_tok_describe(p, &p->cur, found, sizeof(found));
		return expr_fail(p, MP_E_PARSE, p->cur.pos,
				 "expected ',' or ')' in arguments of '%s', found %s",
				 expr_funcs[fi].name, found);
	}
	if ((int)argc != expr_funcs[fi].argc)
		return expr_fail(p, MP_E_PARSE, pos, "function '%s' takes %d argument%s, got %zu",
				 expr_funcs[fi].name, expr_funcs[fi].argc,
				 expr_funcs[fi].argc == 1 ? "" : "s", argc);
	p->depth--;
	if (!expr_emit(p, expr_funcs[fi].op, pos, 1 - (int)argc))
		return -1;
	return expr_next(p);
}

static int expr_parse_list(struct expr_parser *p)
{
	struct expr *e = p->e;
	size_t pos = p->cur.pos, n = 0, first = e->n_code, i;
	int all_const = 1;
	struct expr_value *items;
	struct expr_insn *in;
	char found[48];

	if (expr_enter(p, pos) < 0 || expr_next(p) < 0)
		return -1;
	if (p->cur.kind != TK_RBRACK) {
		for (;;) {
			size_t before = e->n_code;

			if (n == EXPR_MAX_LIST)
				return expr_fail(p, MP_E_TOOBIG, p->cur.pos,
						 "list literal longer than %d items", EXPR_MAX_LIST);
			if (expr_parse_or(p) < 0)
				return -1;
			if (e->n_code != before + 1 || e->code[before].op != OP_CONST)
				all_const = 0;
			n++;
			if (p->cur.kind == TK_COMMA) {
				if (expr_next(p) < 0)
					return -1;
				continue;
			}
			if (p->cur.kind == TK_RBRACK)
				break;
			expr_tok_describe(p, &p->cur, found, sizeof(found));
			return expr_fail(p, MP_E_PARSE, p->cur.pos,
					 "expected ',' or ']' in list, found %s", found);
		}
	}
	p->depth--;
	items = expr_new_array(p, n);
	if (!items)
		return -1;
	if (all_const) {
		/* fold: n constants become one list constant (invariant 4) */
		for (i = 0; i < n; i++)
			items[i] = e->code[first + i].v;
		e->n_code = first;
		p->stack -= n;
		in = expr_emit(p, OP_CONST, pos, 1);
		if (!in)
			return -1;
		in->v.type = EXPR_LIST;
		in->v.u.list.items = items;
		in->v.u.list.n = n;
	} else {
		in = expr_emit(p, OP_LIST, pos, 1 - (int)n);
		if (!in)
			return -1;
		in->items = items;
		in->n = n;
	}
	return expr_next(p);
}

static int expr_parse_accessor(struct expr_parser *p, enum expr_scope scope)
{
	size_t pos = p->cur.pos, idx = 0;
	int l = (int)p->cur.len;
	char what[48];
	struct expr_tok name;
	struct expr_insn *in;

	snprintf(what, sizeof(what), "after '%.*s'", l, p->src + pos);
	if (expr_next(p) < 0 || expr_expect(p, TK_LBRACK, "'['", what) < 0)
		return -1;
	if (p->cur.kind != TK_STR) {
		char found[48];

		expr_tok_describe(p, &p->cur, found, sizeof(found));
		return expr_fail(p, MP_E_PARSE, p->cur.pos,
				 "expected string as accessor name after '[', found %s", found);
	}
	name = p->cur;
	if (expr_next(p) < 0 || expr_expect(p, TK_RBRACK, "']'", "after accessor name") < 0)
		return -1;
	if (expr_add_ref(p, scope, name.str, name.str_len, &idx) < 0)
		return -1;
	in = expr_emit(p, OP_LOOKUP, pos, 1);
	if (!in)
		return -1;
	in->n = idx;
	return 0;
}

static int expr_parse_primary(struct expr_parser *p)
{
	struct expr_tok t = p->cur;
	struct expr_insn *in;
	char found[48];
	size_t i;

	switch (t.kind) {
	case TK_NUM:
		in = expr_emit(p, OP_CONST, t.pos, 1);
		if (!in)
			return -1;
		in->v.type = EXPR_NUMBER;
		in->v.u.n = t.num;
		return expr_next(p);
	case TK_STR:
		in = expr_emit(p, OP_CONST, t.pos, 1);
		if (!in)
			return -1;
		in->v.type = EXPR_STRING;
		in->v.u.str.s = t.str;
		in->v.u.str.len = t.str_len;
		return expr_next(p);
	case TK_LPAREN:
		if (expr_enter(p, t.pos) < 0 || expr_next(p) < 0 || expr_parse_or(p) < 0)
			return -1;
		if (p->cur.kind != TK_RPAREN) {
			expr_tok_describe(p, &p->cur, found, sizeof(found));
			return expr_fail(p, MP_E_PARSE, p->cur.pos,
					 "expected ')' to close '(' at byte %zu, found %s", t.pos, found);
		}
		p->depth--;
		return expr_next(p);
	case TK_LBRACK:
		return expr_parse_list(p);
	case TK_IDENT:
		if (expr_tok_is(p, &t, "true") || expr_tok_is(p, &t, "false") ||
		    expr_tok_is(p, &t, "null")) {
			in = expr_emit(p, OP_CONST, t.pos, 1);
			if (!in)
				return -1;
			if (expr_tok_is(p, &t, "null")) {
				in->v.type = EXPR_NULL;
			} else {
				in->v.type = EXPR_BOOL;
				in->v.u.b = expr_tok_is(p, &t, "true");
			}
			return expr_next(p);
		}
		if (expr_tok_is(p, &t, "properties"))
			return expr_parse_accessor(p, EXPR_SCOPE_PROPERTIES);
		if (expr_tok_is(p, &t, "user"))
			return expr_parse_accessor(p, EXPR_SCOPE_USER);
		if (expr_tok_is(p, &t, "event"))
			return expr_parse_accessor(p, EXPR_SCOPE_EVENT);
		if (expr_tok_is(p, &t, "group"))
			return expr_parse_accessor(p, EXPR_SCOPE_GROUP);
		if (p->letters && t.len == 1 && p->src[t.pos] >= 'A' && p->src[t.pos] <= 'Z') {
			size_t idx;

			/* a metric variable of a formula: looked up like an accessor */
			if (expr_add_ref(p, EXPR_SCOPE_METRIC, p->src + t.pos, 1, &idx) < 0 ||
			    !(in = expr_emit(p, OP_LOOKUP, t.pos, 1)))
				return -1;
			in->n = idx;
			return expr_next(p);
		}
		for (i = 0; i < sizeof(expr_funcs) / sizeof(expr_funcs[0]); i++)
			if (expr_tok_is(p, &t, expr_funcs[i].name))
				return expr_parse_call(p, i);
		if (expr_tok_is(p, &t, "and") || expr_tok_is(p, &t, "or") ||
		    expr_tok_is(p, &t, "in") || expr_tok_is(p, &t, "not")) {
			expr_tok_describe(p, &t, found, sizeof(found));
			return expr_fail(p, MP_E_PARSE, t.pos, "expected expression, found %s", found);
		}
		{
			int l = t.len > 32 ? 32 : (int)t.len;
			size_t after = p->pos;

			while (after < p->len && (p->src[after] == ' ' || p->src[after] == '\t' ||
						  p->src[after] == '\n' || p->src[after] == '\r'))
				after++;
			if (after < p->len && p->src[after] == '(')
				return expr_fail(p, MP_E_PARSE, t.pos, "unknown function '%.*s'", l,
						 p->src + t.pos);
			return expr_fail(p, MP_E_PARSE, t.pos, "unknown identifier '%.*s'", l,
					 p->src + t.pos);
		}
	default:
		expr_tok_describe(p, &t, found, sizeof(found));
		return expr_fail(p, MP_E_PARSE, t.pos, "expected expression, found %s", found);
	}
}

static int expr_parse_unary(struct expr_parser *p)
{
	size_t pos = p->cur.pos;
	struct expr_insn *last;

	if (p->cur.kind != TK_MINUS)
		return expr_parse_primary(p);
	if (expr_enter(p, pos) < 0 || expr_next(p) < 0 || expr_parse_unary(p) < 0)
		return -1;
	p->depth--;
	last = &p->e->code[p->e->n_code - 1];
	if (last->op == OP_CONST && last->v.type == EXPR_NUMBER) {
		last->v.u.n = -last->v.u.n; /* fold a negative literal */
		return 0;
	}
	return expr_emit(p, OP_NEG, pos, 0) ? 0 : -1;
}

static int expr_parse_binary_loop(struct expr_parser *p, int level)
{
	if (level == 0) {
		/* mul := unary (("*"|"/"|"%") unary)* */
		if (expr_parse_unary(p) < 0)
			return -1;
		while (p->cur.kind == TK_STAR || p->cur.kind == TK_SLASH || p->cur.kind == TK_PERCENT) {
			enum expr_op op = p->cur.kind == TK_STAR ? OP_MUL :
					  p->cur.kind == TK_SLASH ? OP_DIV : OP_MOD;
			size_t pos = p->cur.pos;

			if (expr_next(p) < 0 || expr_parse_unary(p) < 0 || !expr_emit(p, op, pos, -1))
				return -1;
		}
		return 0;
	}
	/* add := mul (("+"|"-") mul)* */
	if (expr_parse_binary_loop(p, 0) < 0)
		return -1;
	while (p->cur.kind == TK_PLUS || p->cur.kind == TK_MINUS) {
		enum expr_op op = p->cur.kind == TK_PLUS ? OP_ADD : OP_SUB;
		size_t pos = p->cur.pos;

		if (expr_next(p) < 0 || expr_parse_binary_loop(p, 0) < 0 || !expr_emit(p, op, pos, -1))
			return -1;
	}
	return 0;
}

static int expr_parse_cmp(struct expr_parser *p)
{
	enum expr_op op;
	size_t pos;

	if (expr_parse_binary_loop(p, 1) < 0)
		return -1;
	pos = p->cur.pos;
	switch (p->cur.kind) {
	case TK_EQ: op = OP_EQ; break;
	case TK_NE: op = OP_NE; break;
	case TK_LT: op = OP_LT; break;
	case TK_LE: op = OP_LE; break;
	case TK_GT: op = OP_GT; break;
	case TK_GE: op = OP_GE; break;
	case TK_IDENT:
		if (expr_tok_is(p, &p->cur, "in")) {
			op = OP_IN;
			break;
		}
		if (expr_tok_is(p, &p->cur, "not") && expr_peek_is_in(p)) {
			if (expr_next(p) < 0)
				return -1;
			op = OP_NOTIN;
			break;
		}
		return 0;
	default:
		return 0;
	}
	if (expr_next(p) < 0 || expr_parse_binary_loop(p, 1) < 0)
		return -1;
	return expr_emit(p, op, pos, -1) ? 0 : -1;
}

static int expr_parse_not(struct expr_parser *p)
{
	size_t pos = p->cur.pos;

	if (!expr_tok_is(p, &p->cur, "not"))
		return expr_parse_cmp(p);
	if (expr_enter(p, pos) < 0 || expr_next(p) < 0 || expr_parse_not(p) < 0)
		return -1;
	p->depth--;
	return expr_emit(p, OP_NOT, pos, 0) ? 0 : -1;
}

static int expr_parse_and(struct expr_parser *p)
{
	if (expr_parse_not(p) < 0)
		return -1;
	while (expr_tok_is(p, &p->cur, "and")) {
		size_t pos = p->cur.pos;

		if (expr_next(p) < 0 || expr_parse_not(p) < 0 || !expr_emit(p, OP_AND, pos, -1))
			return -1;
	}
	return 0;
}

static int expr_parse_or(struct expr_parser *p)
{
	if (expr_parse_and(p) < 0)
		return -1;
	while (expr_tok_is(p, &p->cur, "or")) {
		size_t pos = p->cur.pos;

		if (expr_next(p) < 0 || expr_parse_and(p) < 0 || !expr_emit(p, OP_OR, pos, -1))
			return -1;
	}
	return 0;
}

void expr_free(struct expr *e)
{
	size_t i;

	if (!e)
		return;
	for (i = 0; i < e->n_code; i++)
		free(e->code[i].buf);
	for (i = 0; i < e->n_arrays; i++)
		free(e->arrays[i]);
	free(e->arrays);
	free(e->code);
	free(e->refs);
	free(e->pool);
	free(e->stack);
	free(e);
}

static enum mp_err expr_compile_mode(const char *src, size_t len, int letters, struct expr **out, char *err,
				     size_t errlen, size_t *err_offset);

enum mp_err expr_compile(const char *src, size_t len, struct expr **out, char *err, size_t errlen,
			 size_t *err_offset)
{
	return expr_compile_mode(src, len, 0, out, err, errlen, err_offset);
}

enum mp_err expr_compile_formula(const char *src, size_t len, struct expr **out, char *err, size_t errlen,
				 size_t *err_offset)
{
	return expr_compile_mode(src, len, 1, out, err, errlen, err_offset);
}

static enum mp_err expr_compile_mode(const char *src, size_t len, int letters, struct expr **out, char *err,
				     size_t errlen, size_t *err_offset)
{
	struct expr_parser p;
	struct expr *e;

	memset(&p, 0, sizeof(p));
	p.letters = letters;
	p.err = err;
	p.errlen = errlen;
	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (err_offset)
		*err_offset = 0;
	if (len > EXPR_MAX_SRC) {
		expr_fail(&p, MP_E_TOOBIG, EXPR_MAX_SRC, "expression longer than %d bytes",
			  EXPR_MAX_SRC);
		goto out_err;
	}
	if (!src)
		src = "";
	e = calloc(1, sizeof(*e));
	if (!e) {
		expr_fail(&p, MP_E_NOMEM, 0, "out of memory");
		goto out_err;
	}
	e->pool = malloc(len + 1);
	p.e = e;
	p.src = src;
	p.len = len;
	if (!e->pool) {
		expr_fail(&p, MP_E_NOMEM, 0, "out of memory");
		goto out_free;
	}
	if (expr_next(&p) < 0 || expr_parse_or(&p) < 0)
		goto out_free;
	if (p.cur.kind != TK_EOF) {
		char found[48];

		expr_tok_describe(&p, &p.cur, found, sizeof(found));
		expr_fail(&p, MP_E_PARSE, p.cur.pos, "expected end of expression, found %s", found);
		goto out_free;
	}
	e->max_stack = p.max_stack;
	e->stack = calloc(p.max_stack ? p.max_stack : 1, sizeof(*e->stack));
	if (!e->stack) {
		expr_fail(&p, MP_E_NOMEM, 0, "out of memory");
		goto out_free;
	}
	*out = e;
	return MP_OK;
out_free:
	expr_free(e);
out_err:
	if (err_offset)
		*err_offset = p.err_off;
	return p.rc;
}

/* ------------------------------------------------------------- datetimes */

static int64_t expr_days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void expr_civil_from_days(int64_t z, int *y, int *m, int *d)
{
	int64_t era, doe, yoe, doy, mp, yy;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	yy = yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = (int)(yy + (*m <= 2));
}

#define EXPR_MS_MIN (-62167219200000LL) /* 0000-01-01T00:00:00Z */
#define EXPR_MS_MAX (253402300799999LL) /* 9999-12-31T23:59:59.999Z */

static int expr_digits(const char *s, size_t n, int *out)
{
	size_t i;
	int v = 0;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

/* Parse "YYYY-MM-DD" or "YYYY-MM-DDTHH:MM:SS[.f+][Z]" (UTC). */
static int expr_parse_datetime(const char *s, size_t n, int64_t *ms)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, mo, d, h = 0, mi = 0, se = 0, frac = 0, dim;
	size_t i;

	if (n < 10 || s[4] != '-' || s[7] != '-' || expr_digits(s, 4, &y) < 0 ||
	    expr_digits(s + 5, 2, &mo) < 0 || expr_digits(s + 8, 2, &d) < 0)
		return -1;
	if (mo < 1 || mo > 12)
		return -1;
	dim = mdays[mo - 1] + (mo == 2 && (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)));
	if (d < 1 || d > dim)
		return -1;
	if (n > 10) {
		if (n < 19 || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
		    expr_digits(s + 11, 2, &h) < 0 || expr_digits(s + 14, 2, &mi) < 0 ||
		    expr_digits(s + 17, 2, &se) < 0 || h > 23 || mi > 59 || se > 59)
			return -1;
		i = 19;
		if (i < n && s[i] == '.') {
			size_t start = ++i;
			int scale = 100;

			while (i < n && s[i] >= '0' && s[i] <= '9') {
				frac += (s[i] - '0') * scale;
				scale /= 10;
				i++;
			}
			if (i == start)
				return -1;
		}
		if (i < n && s[i] == 'Z')
			i++;
		if (i != n)
			return -1;
	}
	*ms = ((expr_days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60000LL + se * 1000LL + frac;
	return 0;
}

static int expr_datetime_from_seconds(double s, int64_t *ms)
{
	double v = s * 1000.0;

	if (!isfinite(v) || v < (double)EXPR_MS_MIN || v > (double)EXPR_MS_MAX)
		return -1;
	*ms = (int64_t)llround(v);
	return 0;
}

/* ---------------------------------------------------------- value keys */

struct expr_writer {
	char *buf;
	size_t n, len;
};

static void expr_put(struct expr_writer *w, const char *s, size_t len)
{
	if (w->len + 1 < w->n) {
		size_t room = w->n - 1 - w->len;

		memcpy(w->buf + w->len, s, len < room ? len : room);
	}
	w->len += len;
}

static size_t expr_fmt_number(double n, char *out, size_t cap)
{
	int r;

	if (n == 0) {
		r = snprintf(out, cap, "0");
	} else {
		r = snprintf(out, cap, "%.15g", n);
		if (r > 0 && strtod(out, NULL) != n)
			r = snprintf(out, cap, "%.17g", n);
	}
	return r > 0 ? (size_t)r : 0;
}

static size_t expr_fmt_datetime(int64_t ms, char *out, size_t cap)
{
	int64_t days, rem;
	int y, m, d, r;

	if (ms < EXPR_MS_MIN)
		ms = EXPR_MS_MIN;
	if (ms > EXPR_MS_MAX)
		ms = EXPR_MS_MAX;
	days = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
	rem = (ms - days * 86400000) / 1000;
	expr_civil_from_days(days, &y, &m, &d);
	r = snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d", y, m, d, (int)(rem / 3600),
		     (int)(rem / 60 % 60), (int)(rem % 60));
	return r > 0 ? (size_t)r : 0;
}

static void expr_put_json_string(struct expr_writer *w, const char *s, size_t len)
{
	size_t i, run = 0;

	expr_put(w, "\"", 1);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[8];
		const char *e = NULL;
		size_t el = 2;

		switch (c) {
		case '"': e = "\\\""; break;
		case '\\': e = "\\\\"; break;
		case '\n': e = "\\n"; break;
		case '\t': e = "\\t"; break;
		case '\r': e = "\\r"; break;
		default:
			if (c < 0x20) {
				snprintf(esc, sizeof(esc), "\\u%04x", c);
				e = esc;
				el = 6;
			}
		}
		if (!e)
			continue;
		expr_put(w, s + run, i - run);
		expr_put(w, e, el);
		run = i + 1;
	}
	expr_put(w, s + run, len - run);
	expr_put(w, "\"", 1);
}

static void expr_put_value(struct expr_writer *w, const struct expr_value *v, int in_list, int depth)
{
	char tmp[40];
	size_t i, l;

	switch (v->type) {
	case EXPR_UNDEFINED:
		if (in_list)
			expr_put(w, "null", 4);
		else
			expr_put(w, "undefined", 9);
		return;
	case EXPR_NULL: expr_put(w, "null", 4); return;
	case EXPR_BOOL:
		if (v->u.b)
			expr_put(w, "true", 4);
		else
			expr_put(w, "false", 5);
		return;
	case EXPR_NUMBER:
		if (!isfinite(v->u.n)) {
			expr_put(w, "null", 4);
			return;
		}
		l = expr_fmt_number(v->u.n, tmp, sizeof(tmp));
		expr_put(w, tmp, l);
		return;
	case EXPR_STRING:
		if (in_list)
			expr_put_json_string(w, v->u.str.s, v->u.str.len);
		else
			expr_put(w, v->u.str.s, v->u.str.len);
		return;
	case EXPR_DATETIME:
		l = expr_fmt_datetime(v->u.ms, tmp, sizeof(tmp));
		if (in_list)
			expr_put(w, "\"", 1);
		expr_put(w, tmp, l);
		if (in_list)
			expr_put(w, "\"", 1);
		return;
	case EXPR_LIST:
		if (depth >= EXPR_MAX_VALUE_DEPTH) {
			expr_put(w, "null", 4);
			return;
		}
		expr_put(w, "[", 1);
		for (i = 0; i < v->u.list.n; i++) {
			if (i)
				expr_put(w, ",", 1);
			expr_put_value(w, &v->u.list.items[i], 1, depth + 1);
		}
		expr_put(w, "]", 1);
		return;
	}
	expr_put(w, "undefined", 9);
}

size_t expr_value_key(const struct expr_value *v, char *buf, size_t n)
{
	struct expr_writer w = { buf, n, 0 };

	expr_put_value(&w, v, 0, 0);
	if (n > 0)
		buf[w.len < n ? w.len : n - 1] = '\0';
	return w.len;
}

/* ------------------------------------------------------------ evaluator */

static int expr_value_eq(const struct expr_value *a, const struct expr_value *b, int depth)
{
	size_t i;

	if (a->type != b->type)
		return 0;
	switch (a->type) {
	case EXPR_UNDEFINED: case EXPR_NULL: return 1;
	case EXPR_BOOL: return !a->u.b == !b->u.b;
	case EXPR_NUMBER: return a->u.n == b->u.n;
	case EXPR_DATETIME: return a->u.ms == b->u.ms;
	case EXPR_STRING:
		return a->u.str.len == b->u.str.len &&
		       (a->u.str.len == 0 || memcmp(a->u.str.s, b->u.str.s, a->u.str.len) == 0);
	case EXPR_LIST:
		if (a->u.list.n != b->u.list.n || depth >= EXPR_MAX_VALUE_DEPTH)
			return 0;
		for (i = 0; i < a->u.list.n; i++)
			if (!expr_value_eq(&a->u.list.items[i], &b->u.list.items[i], depth + 1))
				return 0;
		return 1;
	}
	return 0;
}

/* `==`: a list against a non-list matches when any element does. */
static int expr_eq(const struct expr_value *a, const struct expr_value *b)
{
	const struct expr_value *l = NULL, *x = NULL;
	size_t i;

	if (a->type == EXPR_LIST && b->type != EXPR_LIST) {
		l = a;
		x = b;
	} else if (b->type == EXPR_LIST && a->type != EXPR_LIST) {
		l = b;
		x = a;
	}
	if (!l)
		return expr_value_eq(a, b, 0);
	for (i = 0; i < l->u.list.n; i++)
		if (expr_value_eq(&l->u.list.items[i], x, 1))
			return 1;
	return 0;
}

static int expr_is_member(const struct expr_value *x, const struct expr_value *list)
{
	size_t i;

	for (i = 0; i < list->u.list.n; i++)
		if (expr_value_eq(&list->u.list.items[i], x, 1))
			return 1;
	return 0;
}

static void expr_set_undef(struct expr_value *v)
{
	v->type = EXPR_UNDEFINED;
}

static void expr_set_bool(struct expr_value *v, int b)
{
	v->type = EXPR_BOOL;
	v->u.b = b ? 1 : 0;
}

static void expr_set_num(struct expr_value *v, double n)
{
	if (!isfinite(n)) {
		v->type = EXPR_UNDEFINED;
		return;
	}
	v->type = EXPR_NUMBER;
	v->u.n = n;
}

static int expr_str_cmp(const struct expr_value *a, const struct expr_value *b)
{
	size_t m = a->u.str.len < b->u.str.len ? a->u.str.len : b->u.str.len;
	int c = m ? memcmp(a->u.str.s, b->u.str.s, m) : 0;

	if (c)
		return c;
	return a->u.str.len < b->u.str.len ? -1 : a->u.str.len > b->u.str.len;
}

/* Ordering of A and B into *C (<0, 0, >0); -1 when they do not compare. */
static int expr_order(const struct expr_value *a, const struct expr_value *b, int *c)
{
	int64_t x, y;

	if (a->type == EXPR_NUMBER && b->type == EXPR_NUMBER) {
		*c = a->u.n < b->u.n ? -1 : a->u.n > b->u.n;
		return 0;
	}
	if (a->type == EXPR_STRING && b->type == EXPR_STRING) {
		*c = expr_str_cmp(a, b);
		return 0;
	}
	/* a datetime against a datetime or a string that datetime() parses */
	if (a->type != EXPR_DATETIME && b->type != EXPR_DATETIME)
		return -1;
	if (a->type == EXPR_DATETIME)
		x = a->u.ms;
	else if (a->type != EXPR_STRING || expr_parse_datetime(a->u.str.s, a->u.str.len, &x) < 0)
		return -1;
	if (b->type == EXPR_DATETIME)
		y = b->u.ms;
	else if (b->type != EXPR_STRING || expr_parse_datetime(b->u.str.s, b->u.str.len, &y) < 0)
		return -1;
	*c = x < y ? -1 : x > y;
	return 0;
}

static int expr_substr(const struct expr_value *needle, const struct expr_value *hay)
{
	size_t n = needle->u.str.len, h = hay->u.str.len, i;

	if (n == 0)
		return 1;
	if (n > h)
		return 0;
	for (i = 0; i + n <= h; i++)
		if (hay->u.str.s[i] == needle->u.str.s[0] && memcmp(hay->u.str.s + i, needle->u.str.s, n) == 0)
			return 1;
	return 0;
}

/* `a in b` into *R (may be undefined). */
static void expr_in(const struct expr_value *a, const struct expr_value *b, struct expr_value *r)
{
	size_t i;

	if (a->type == EXPR_STRING && b->type == EXPR_STRING) {
		expr_set_bool(r, expr_substr(a, b));
	} else if (b->type == EXPR_LIST) {
		if (a->type != EXPR_LIST) {
			expr_set_bool(r, expr_is_member(a, b));
			return;
		}
		for (i = 0; i < a->u.list.n; i++) {
			if (expr_is_member(&a->u.list.items[i], b)) {
				expr_set_bool(r, 1);
				return;
			}
		}
		expr_set_bool(r, 0);
	} else {
		expr_set_undef(r);
	}
}

static void expr_not(struct expr_value *v)
{
	if (v->type == EXPR_BOOL)
		v->u.b = !v->u.b;
	else if (v->type == EXPR_UNDEFINED)
		expr_set_bool(v, 1);
	else
		expr_set_undef(v);
}

static const char *expr_type_name(enum expr_type t)
{
	switch (t) {
	case EXPR_UNDEFINED: return "undefined";
	case EXPR_NULL: return "null";
	case EXPR_BOOL: return "boolean";
	case EXPR_NUMBER: return "number";
	case EXPR_STRING: return "string";
	case EXPR_LIST: return "list";
	case EXPR_DATETIME: return "datetime";
	}
	return "unknown";
}

/* Make sure IN's scratch holds NEED bytes (invariant 3). */
static int expr_scratch(struct expr_insn *in, size_t need)
{
	char *nb;
	size_t nc = in->cap ? in->cap : EXPR_SCRATCH_INIT;

	if (need <= in->cap)
		return 0;
	while (nc < need) {
		if (nc > ((size_t)-1) / 2)
			return -1;
		nc *= 2;
	}
	nb = realloc(in->buf, nc);
	if (!nb)
		return -1;
	in->buf = nb;
	in->cap = nc;
	return 0;
}

static int expr_parse_number_str(const char *s, size_t n, double *out)
{
	char tmp[128];
	size_t i = 0, j, k;
	char *end;

	while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	while (n > i && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
		n--;
	if (n - i == 0 || n - i >= sizeof(tmp))
		return -1;
	/* strict decimal syntax: [+-]d+[.d+][(e|E)[+-]d+] or [+-].d+ */
	j = i;
	if (s[j] == '+' || s[j] == '-')
		j++;
	k = j;
	while (j < n && s[j] >= '0' && s[j] <= '9')
		j++;
	if (j < n && s[j] == '.') {
		size_t f = ++j;

		while (j < n && s[j] >= '0' && s[j] <= '9')
			j++;
		if (j == f)
			return -1;
	} else if (j == k) {
		return -1;
	}
	if (j < n && (s[j] == 'e' || s[j] == 'E')) {
		size_t x;

		j++;
		if (j < n && (s[j] == '+' || s[j] == '-'))
			j++;
		x = j;
		while (j < n && s[j] >= '0' && s[j] <= '9')
			j++;
		if (j == x)
			return -1;
	}
	if (j != n)
		return -1;
	memcpy(tmp, s + i, n - i);
	tmp[n - i] = '\0';
	*out = strtod(tmp, &end);
	if (end != tmp + (n - i) || !isfinite(*out))
		return -1;
	return 0;
}

/* Apply a one-argument function to *V in place. */
static enum mp_err expr_call1(struct expr_insn *in, struct expr_value *v)
{
	int64_t ms;
	double d;

	switch (in->op) {
	case OP_F_DEFINED:
		expr_set_bool(v, v->type != EXPR_UNDEFINED);
		break;
	case OP_F_BOOLEAN:
		switch (v->type) {
		case EXPR_UNDEFINED: case EXPR_NULL: expr_set_bool(v, 0); break;
		case EXPR_BOOL: break;
		case EXPR_NUMBER: expr_set_bool(v, v->u.n != 0); break;
		case EXPR_STRING:
			expr_set_bool(v, !(v->u.str.len == 0 ||
					   (v->u.str.len == 5 && memcmp(v->u.str.s, "false", 5) == 0)));
			break;
		case EXPR_LIST: expr_set_bool(v, v->u.list.n != 0); break;
		case EXPR_DATETIME: expr_set_bool(v, 1); break;
		}
		break;
	case OP_F_NUMBER:
		switch (v->type) {
		case EXPR_NUMBER: break;
		case EXPR_BOOL: expr_set_num(v, v->u.b ? 1 : 0); break;
		case EXPR_STRING:
			if (expr_parse_number_str(v->u.str.s, v->u.str.len, &d) < 0)
				expr_set_undef(v);
			else
				expr_set_num(v, d);
			break;
		case EXPR_DATETIME: expr_set_num(v, (double)v->u.ms / 1000.0); break;
		default: expr_set_undef(v); break;
		}
		break;
	case OP_F_STRING: {
		size_t need;

		if (v->type == EXPR_UNDEFINED || v->type == EXPR_NULL || v->type == EXPR_STRING)
			break;
		need = expr_value_key(v, in->buf, in->cap);
		if (need >= in->cap) {
			if (expr_scratch(in, need + 1) < 0)
				return MP_E_NOMEM;
			expr_value_key(v, in->buf, in->cap);
		}
		v->type = EXPR_STRING;
		v->u.str.s = in->buf;
		v->u.str.len = need;
		break;
	}
	case OP_F_DATETIME:
		if (v->type == EXPR_DATETIME)
			break;
		if (v->type == EXPR_STRING && expr_parse_datetime(v->u.str.s, v->u.str.len, &ms) == 0) {
			v->type = EXPR_DATETIME;
			v->u.ms = ms;
		} else if (v->type == EXPR_NUMBER && expr_datetime_from_seconds(v->u.n, &ms) == 0) {
			v->type = EXPR_DATETIME;
			v->u.ms = ms;
		} else {
			expr_set_undef(v);
		}
		break;
	case OP_F_FLOOR: case OP_F_ROUND: case OP_F_CEIL:
		if (v->type != EXPR_NUMBER)
			expr_set_undef(v);
		else
			expr_set_num(v, in->op == OP_F_FLOOR ? floor(v->u.n) :
					in->op == OP_F_CEIL ? ceil(v->u.n) : round(v->u.n));
		break;
	default:
		break;
	}
	return MP_OK;
}

static enum mp_err expr_logic_error(struct expr *e, const struct expr_insn *in,
				    const struct expr_value *bad)
{
	snprintf(e->errmsg, sizeof(e->errmsg), "operand of '%s' at byte %zu is a %s, expected boolean",
		 in->op == OP_AND ? "and" : "or", in->pos, expr_type_name(bad->type));
	return MP_E_INVALID;
}

/* Make a value from the lookup callback safe to use: unknown types, NULL
 * pointers and non-finite numbers become undefined or empty. */
static void expr_normalize(struct expr_value *v)
{
	if ((unsigned)v->type > (unsigned)EXPR_DATETIME)
		v->type = EXPR_UNDEFINED;
	else if (v->type == EXPR_NUMBER && !isfinite(v->u.n))
		v->type = EXPR_UNDEFINED;
	else if (v->type == EXPR_STRING && !v->u.str.s) {
		v->u.str.s = "";
		v->u.str.len = 0;
	} else if (v->type == EXPR_LIST && !v->u.list.items)
		v->u.list.n = 0;
}

enum mp_err expr_eval(struct expr *e, expr_lookup_fn lookup, void *ctx, struct expr_value *out)
{
	struct expr_value *st = e->stack;
	size_t sp = 0, pc;
	enum mp_err rc;

	e->errmsg[0] = '\0';
	for (pc = 0; pc < e->n_code; pc++) {
		struct expr_insn *in = &e->code[pc];
		struct expr_value *a, *b;
		int c;

		switch (in->op) {
		case OP_CONST:
			st[sp++] = in->v;
			break;
		case OP_LOOKUP: {
			const struct expr_ref *r = &e->refs[in->n];

			a = &st[sp++];
			memset(a, 0, sizeof(*a));
			if (lookup && lookup(ctx, r->scope, r->name, r->len, a) < 0) {
				snprintf(e->errmsg, sizeof(e->errmsg), "lookup of '%.*s' failed",
					 r->len > 64 ? 64 : (int)r->len, r->name);
				return MP_E_STORE;
			}
			expr_normalize(a);
			break;
		}
		case OP_LIST:
			sp -= in->n;
			if (in->n)
				memcpy(in->items, &st[sp], in->n * sizeof(*in->items));
			a = &st[sp++];
			a->type = EXPR_LIST;
			a->u.list.items = in->items;
			a->u.list.n = in->n;
			break;
		case OP_NEG:
			a = &st[sp - 1];
			if (a->type == EXPR_NUMBER)
				expr_set_num(a, -a->u.n);
			else
				expr_set_undef(a);
			break;
		case OP_NOT:
			expr_not(&st[sp - 1]);
			break;
		case OP_F_HAS_PREFIX:
			b = &st[--sp];
			a = &st[sp - 1];
			if (a->type == EXPR_STRING && b->type == EXPR_STRING)
				expr_set_bool(a, b->u.str.len <= a->u.str.len &&
					      (b->u.str.len == 0 ||
					       memcmp(a->u.str.s, b->u.str.s, b->u.str.len) == 0));
			else
				expr_set_undef(a);
			break;
		case OP_F_DEFINED: case OP_F_BOOLEAN: case OP_F_NUMBER: case OP_F_STRING:
		case OP_F_DATETIME: case OP_F_FLOOR: case OP_F_ROUND: case OP_F_CEIL:
			rc = expr_call1(in, &st[sp - 1]);
			if (rc != MP_OK) {
				snprintf(e->errmsg, sizeof(e->errmsg), "out of memory");
				return rc;
			}
			break;
		default:
			/* binary operators: A op B -> A */
			b = &st[--sp];
			a = &st[sp - 1];
			switch (in->op) {
			case OP_ADD:
				if (a->type == EXPR_NUMBER && b->type == EXPR_NUMBER) {
					expr_set_num(a, a->u.n + b->u.n);
				} else if (a->type == EXPR_STRING && b->type == EXPR_STRING) {
					size_t la = a->u.str.len, lb = b->u.str.len;

					if (la + lb < la || expr_scratch(in, la + lb + 1) < 0) {
						snprintf(e->errmsg, sizeof(e->errmsg), "out of memory");
						return MP_E_NOMEM;
					}
					if (la)
						memmove(in->buf, a->u.str.s, la);
					if (lb)
						memmove(in->buf + la, b->u.str.s, lb);
					a->u.str.s = in->buf;
					a->u.str.len = la + lb;
				} else {
					expr_set_undef(a);
				}
				break;
			case OP_SUB: case OP_MUL: case OP_DIV: case OP_MOD:
				if (a->type != EXPR_NUMBER || b->type != EXPR_NUMBER ||
				    ((in->op == OP_DIV || in->op == OP_MOD) && b->u.n == 0)) {
					expr_set_undef(a);
					break;
				}
				expr_set_num(a, in->op == OP_SUB ? a->u.n - b->u.n :
						in->op == OP_MUL ? a->u.n * b->u.n :
						in->op == OP_DIV ? a->u.n / b->u.n : fmod(a->u.n, b->u.n));
				break;
			case OP_EQ: expr_set_bool(a, expr_eq(a, b)); break;
			case OP_NE: expr_set_bool(a, !expr_eq(a, b)); break;
			case OP_LT: case OP_LE: case OP_GT: case OP_GE:
				if (expr_order(a, b, &c) < 0) {
					expr_set_undef(a);
					break;
				}
				expr_set_bool(a, in->op == OP_LT ? c < 0 : in->op == OP_LE ? c <= 0 :
						 in->op == OP_GT ? c > 0 : c >= 0);
				break;
			case OP_IN: case OP_NOTIN: {
				struct expr_value r;

				expr_in(a, b, &r);
				*a = r;
				if (in->op == OP_NOTIN)
					expr_not(a);
				break;
			}
			case OP_AND: case OP_OR:
				if (a->type != EXPR_BOOL && a->type != EXPR_UNDEFINED)
					return expr_logic_error(e, in, a);
				if (b->type != EXPR_BOOL && b->type != EXPR_UNDEFINED)
					return expr_logic_error(e, in, b);
				{
					int x = a->type == EXPR_BOOL && a->u.b;
					int y = b->type == EXPR_BOOL && b->u.b;

					expr_set_bool(a, in->op == OP_AND ? (x && y) : (x || y));
				}
				break;
			default:
				break;
			}
			break;
		}
	}
	*out = st[0];
	return MP_OK;
}

const char *expr_error(const struct expr *e)
{
	return e ? e->errmsg : "";
}

int expr_eval_where(struct expr *e, expr_lookup_fn lookup, void *ctx)
{
	struct expr_value v;

	if (expr_eval(e, lookup, ctx, &v) != MP_OK)
		return -1;
	return v.type == EXPR_BOOL && v.u.b;
}

void expr_refs(const struct expr *e,
	       void (*cb)(void *ctx, enum expr_scope scope, const char *name, size_t len), void *ctx)
{
	size_t i;

	for (i = 0; i < e->n_refs; i++)
		cb(ctx, e->refs[i].scope, e->refs[i].name, e->refs[i].len);
}
