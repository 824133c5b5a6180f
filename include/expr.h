/*
 * expr.h - Mixpanel's segmentation expression language (`where`, `on`,
 * `born_where`, export `where`), spec ../shared/spec/mixpanel-http-api.md §11.
 *
 * Compile once per query, evaluate once per event/profile with no
 * allocation on the evaluation path (scratch space lives in the compiled
 * expression and is reused; it may grow, rarely, for long string results).
 *
 * Grammar (precedence low -> high; `not` binds looser than comparisons so
 * `not "a" in properties["b"]` is `not ("a" in ...)`):
 *   expr     := or
 *   or       := and ("or" and)*
 *   and      := not ("and" not)*
 *   not      := "not" not | cmp
 *   cmp      := add (("=="|"!="|">"|">="|"<"|"<="|"in"|"not" "in") add)?
 *   add      := mul (("+"|"-") mul)*
 *   mul      := unary (("*"|"/"|"%") unary)*
 *   unary    := "-" unary | primary
 *   primary  := accessor | literal | list | "(" expr ")" | func "(" expr ("," expr)* ")"
 *   accessor := ("properties"|"user"|"event"|"group") "[" string "]"
 *   literal  := string ("..." or '...', escapes \" \' \\ \n \t \uXXXX) | number | "true" | "false" | "null"
 *   list     := "[" (expr ("," expr)*)? "]"
 *   func     := defined | boolean | number | string | datetime | floor | round | ceil | has_prefix
 * Keywords and function names are lower case.  Limits: source <= 64 KiB,
 * nesting <= 64, list literal <= 10000 items.
 *
 * Values and rules (spec §11.3): types undefined, null, boolean, number,
 * string, list, datetime (ms since epoch, UTC).  A missing property is
 * undefined.  Arithmetic on non-numbers, / or % by 0 -> undefined; `+`
 * also concatenates two strings; `==` is always boolean (different types ->
 * false, a list property equals X when any element does; `!=` negates);
 * ordering comparisons need two numbers, two strings (lexicographic by
 * bytes) or two datetimes (a datetime also compares with a string that
 * datetime() parses), else undefined; `a in b`: substring when both are
 * strings, membership when b is a list, else undefined; `and`/`or` take
 * booleans or undefined (undefined = false), any other operand type is an
 * evaluation error (MP_E_INVALID: the query answers 400); `not` of
 * undefined is true, of a non-boolean undefined.  string(), number(),
 * boolean(), datetime() as in the spec's table (datetime accepts
 * "YYYY-MM-DD", "YYYY-MM-DDTHH:MM:SS" with optional fraction and "Z", and
 * numbers as unix seconds); floor/round/ceil on numbers; has_prefix(s, p).
 *
 * Errors: expr_compile() reports syntax and static type errors with a byte
 * offset into the source and a message ("expected ']' at byte 17").
 *
 * Thread-safety: a compiled expression is used by one thread at a time.
 */
#ifndef MP_EXPR_H
#define MP_EXPR_H

#include <stddef.h>
#include <stdint.h>
#include "err.h"

struct expr;

enum expr_type {
	EXPR_UNDEFINED = 0, EXPR_NULL, EXPR_BOOL, EXPR_NUMBER, EXPR_STRING, EXPR_LIST, EXPR_DATETIME
};

struct expr_value {
	enum expr_type type;
	union {
		int b;                                   /* EXPR_BOOL: 0 or 1 */
		double n;                                /* EXPR_NUMBER */
		int64_t ms;                              /* EXPR_DATETIME */
		struct { const char *s; size_t len; } str;            /* EXPR_STRING (not NUL-terminated) */
		struct { const struct expr_value *items; size_t n; } list; /* EXPR_LIST */
	} u;
};

/* Where an accessor reads from: properties["x"], user["x"], event["x"]
 * (e.g. event["$time"], event["name"]), group["x"]. */
enum expr_scope { EXPR_SCOPE_PROPERTIES = 0, EXPR_SCOPE_USER, EXPR_SCOPE_EVENT, EXPR_SCOPE_GROUP,
		  EXPR_SCOPE_METRIC /* a formula's letter A..Z (expr_compile_formula) */ };

/* Supplies the value of SCOPE[NAME] for the record being evaluated: fill
 * *OUT (string and list memory is the caller's and must stay valid until
 * expr_eval returns; set type EXPR_UNDEFINED when absent).  Return 0, or a
 * negative value to abort the evaluation (expr_eval then returns MP_E_STORE). */
typedef int (*expr_lookup_fn)(void *ctx, enum expr_scope scope, const char *name, size_t name_len,
			      struct expr_value *out);

/* Compile SRC (LEN bytes, need not be NUL-terminated).  Returns MP_OK and
 * *OUT (free with expr_free), or MP_E_PARSE with a message in ERR and the
 * byte offset of the problem in *ERR_OFFSET (may be NULL), or MP_E_TOOBIG
 * past the limits, or MP_E_NOMEM. */
enum mp_err expr_compile(const char *src, size_t len, struct expr **out,
			 char *err, size_t errlen, size_t *err_offset);

/* The same language where the single capital letters A..Z are also
 * variables, read through the lookup with EXPR_SCOPE_METRIC and the letter
 * as the name: formulas over lettered metrics, "(A - B) / A * 100". */
enum mp_err expr_compile_formula(const char *src, size_t len, struct expr **out,
				 char *err, size_t errlen, size_t *err_offset);

void expr_free(struct expr *e); /* NULL-safe */

/* Evaluate E for one record.  *OUT is valid until the next expr_eval or
 * expr_free of E.  Returns MP_OK, MP_E_INVALID (a type error such as a
 * string operand of `and`; the message is then in expr_error(E)) or
 * MP_E_STORE (the lookup aborted). */
enum mp_err expr_eval(struct expr *e, expr_lookup_fn lookup, void *ctx, struct expr_value *out);

/* The message of the last evaluation error of E ("" if none). */
const char *expr_error(const struct expr *e);

/* `where` semantics: 1 when E evaluates to boolean true, 0 otherwise
 * (undefined, null, false, any other type), -1 on an evaluation error. */
int expr_eval_where(struct expr *e, expr_lookup_fn lookup, void *ctx);

/* The text Mixpanel shows for V as a segment key of `on`: strings as they
 * are, numbers like JSON ("3", "2.5"), booleans "true"/"false", null
 * "null", undefined "undefined", datetimes "YYYY-MM-DDTHH:MM:SS", lists
 * as compact JSON.  Writes at most N-1 bytes and a NUL into BUF; returns the
 * full length (as snprintf). */
size_t expr_value_key(const struct expr_value *v, char *buf, size_t n);

/* The accessors E reads, so a caller can load only those columns: calls
 * CB(ctx, scope, name, len) once per distinct (scope, name). */
void expr_refs(const struct expr *e,
	       void (*cb)(void *ctx, enum expr_scope scope, const char *name, size_t len), void *ctx);

#endif
