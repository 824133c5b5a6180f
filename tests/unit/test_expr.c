/*
 * test_expr.c - unit tests for the segmentation expression language
 * (include/expr.h, src/expr.c).
 *
 * Most tests are table rows: an expression, the event properties and the
 * optional user properties as JSON (single quotes, see J() in testlib.h),
 * and the expected result as its expr_value_key() text, or "ERROR" when
 * expr_compile or expr_eval must fail.  The lookup callback maps cJSON to
 * struct expr_value: numbers, strings, booleans, null and arrays (as
 * EXPR_LIST, nested), anything absent -> EXPR_UNDEFINED.  event["x"] and
 * group["x"] read the "@event" and "@group" objects of the user JSON.
 * Compile errors have their own table with the exact byte offset.
 */
#include "expr.h"
#include "testlib.h"

#include <math.h>
#include <stdint.h>

#define T_POOL 512

struct t_ctx {
	cJSON *props, *user;
	struct expr_value pool[T_POOL];
	size_t used;
	int fail; /* make the lookup abort */
};

static int t_conv(struct t_ctx *c, const cJSON *j, struct expr_value *out)
{
	if (!j) {
		out->type = EXPR_UNDEFINED;
	} else if (cJSON_IsNumber(j)) {
		out->type = EXPR_NUMBER;
		out->u.n = j->valuedouble;
	} else if (cJSON_IsString(j)) {
		out->type = EXPR_STRING;
		out->u.str.s = j->valuestring;
		out->u.str.len = strlen(j->valuestring);
	} else if (cJSON_IsBool(j)) {
		out->type = EXPR_BOOL;
		out->u.b = cJSON_IsTrue(j);
	} else if (cJSON_IsNull(j)) {
		out->type = EXPR_NULL;
	} else if (cJSON_IsArray(j)) {
		size_t n = (size_t)cJSON_GetArraySize(j), i = 0, base = c->used;
		const cJSON *it;

		if (c->used + n > T_POOL)
			return -1;
		c->used += n;
		cJSON_ArrayForEach(it, j) {
			if (t_conv(c, it, &c->pool[base + i++]) < 0)
				return -1;
		}
		out->type = EXPR_LIST;
		out->u.list.items = &c->pool[base];
		out->u.list.n = n;
	} else {
		out->type = EXPR_UNDEFINED;
	}
	return 0;
}

static int t_lookup(void *ctx, enum expr_scope scope, const char *name, size_t len,
		    struct expr_value *out)
{
	struct t_ctx *c = ctx;
	const cJSON *obj = NULL, *it;

	if (c->fail)
		return -1;
	switch (scope) {
	case EXPR_SCOPE_PROPERTIES: obj = c->props; break;
	case EXPR_SCOPE_USER: obj = c->user; break;
	case EXPR_SCOPE_EVENT: obj = cJSON_GetObjectItemCaseSensitive(c->user, "@event"); break;
	case EXPR_SCOPE_GROUP: obj = cJSON_GetObjectItemCaseSensitive(c->user, "@group"); break;
	case EXPR_SCOPE_METRIC: obj = cJSON_GetObjectItemCaseSensitive(c->user, "@metric"); break;
	}
	out->type = EXPR_UNDEFINED;
	cJSON_ArrayForEach(it, obj) {
		if (it->string && strlen(it->string) == len && memcmp(it->string, name, len) == 0)
			return t_conv(c, it, out);
	}
	return 0;
}

struct t_case {
	const char *src, *props, *user, *expect;
};

static const struct t_case t_cases[] = {
	/* arithmetic */
	{ "1 + 2", NULL, NULL, "3" },
	{ "1 - 2 - 3", NULL, NULL, "-4" },
	{ "2 + 3 * 4", NULL, NULL, "14" },
	{ "(2 + 3) * 4", NULL, NULL, "20" },
	{ "2 * 3 - 4 / 2", NULL, NULL, "4" },
	{ "8 / 2 / 2", NULL, NULL, "2" },
	{ "10 / 4", NULL, NULL, "2.5" },
	{ "10 / 0", NULL, NULL, "undefined" },
	{ "10 % 0", NULL, NULL, "undefined" },
	{ "0 / 0", NULL, NULL, "undefined" },
	{ "-7 % 3", NULL, NULL, "-1" },
	{ "7 % -3", NULL, NULL, "1" },
	{ "5.5 % 2", NULL, NULL, "1.5" },
	{ "0.1 + 0.2", NULL, NULL, "0.30000000000000004" },
	{ "1 / 3", NULL, NULL, "0.33333333333333331" },
	{ "1e21", NULL, NULL, "1e+21" },
	{ "3.0", NULL, NULL, "3" },
	{ "1e308 * 10", NULL, NULL, "undefined" },
	{ "2 - -3", NULL, NULL, "5" },
	{ "--3", NULL, NULL, "3" },
	{ "-0", NULL, NULL, "0" },
	{ "-properties[\"n\"]", "{'n':5}", NULL, "-5" },
	{ "-properties[\"s\"]", "{'s':'x'}", NULL, "undefined" },
	{ "-\"a\"", NULL, NULL, "undefined" },
	{ "-null", NULL, NULL, "undefined" },
	{ "-properties[\"m\"]", NULL, NULL, "undefined" },
	{ "\"a\" + \"b\"", NULL, NULL, "ab" },
	{ "properties[\"f\"] + \" \" + properties[\"l\"]", "{'f':'Ada','l':'Lovelace'}", NULL, "Ada Lovelace" },
	{ "\"a\" + 1", NULL, NULL, "undefined" },
	{ "1 + true", NULL, NULL, "undefined" },
	{ "null + 1", NULL, NULL, "undefined" },
	{ "properties[\"m\"] + 1", NULL, NULL, "undefined" },
	{ "\"x\" * 2", NULL, NULL, "undefined" },
	{ "\"6\" / \"2\"", NULL, NULL, "undefined" },
	{ "true - false", NULL, NULL, "undefined" },
	{ "properties[\"n\"] * 2", "{'n':2.5}", NULL, "5" },
	{ "properties[\"n\"] % 4", "{'n':-9}", NULL, "-1" },
	/* equality */
	{ "1 == 1", NULL, NULL, "true" },
	{ "1 == \"1\"", NULL, NULL, "false" },
	{ "1 != \"1\"", NULL, NULL, "true" },
	{ "\"a\" == \"a\"", NULL, NULL, "true" },
	{ "\"a\" != \"b\"", NULL, NULL, "true" },
	{ "true == 1", NULL, NULL, "false" },
	{ "true == true", NULL, NULL, "true" },
	{ "null == null", NULL, NULL, "true" },
	{ "properties[\"x\"] == null", "{'x':null}", NULL, "true" },
	{ "properties[\"x\"] == null", NULL, NULL, "false" },
	{ "properties[\"m\"] == properties[\"q\"]", NULL, NULL, "true" },
	{ "properties[\"m\"] == 0", NULL, NULL, "false" },
	{ "properties[\"m\"] != 0", NULL, NULL, "true" },
	{ "properties[\"plan\"] == \"pro\"", "{'plan':'pro'}", NULL, "true" },
	/* ordering */
	{ "2 > 1", NULL, NULL, "true" },
	{ "1 >= 1", NULL, NULL, "true" },
	{ "1 < 1", NULL, NULL, "false" },
	{ "1 <= 2", NULL, NULL, "true" },
	{ "-1 < -0.5", NULL, NULL, "true" },
	{ "\"b\" > \"a\"", NULL, NULL, "true" },
	{ "\"B\" < \"a\"", NULL, NULL, "true" },
	{ "\"ab\" < \"abc\"", NULL, NULL, "true" },
	{ "\"10\" < \"9\"", NULL, NULL, "true" },
	{ "\"abc\" >= \"abc\"", NULL, NULL, "true" },
	{ "1 < \"2\"", NULL, NULL, "undefined" },
	{ "true > false", NULL, NULL, "undefined" },
	{ "null < 1", NULL, NULL, "undefined" },
	{ "properties[\"m\"] > 1", NULL, NULL, "undefined" },
	{ "properties[\"age\"] >= 18", "{'age':21}", NULL, "true" },
	/* datetime */
	{ "datetime(0)", NULL, NULL, "1970-01-01T00:00:00" },
	{ "datetime(1700000000)", NULL, NULL, "2023-11-14T22:13:20" },
	{ "datetime(1.5)", NULL, NULL, "1970-01-01T00:00:01" },
	{ "datetime(-86400)", NULL, NULL, "1969-12-31T00:00:00" },
	{ "datetime(\"2024-02-29T12:30:45.123Z\")", NULL, NULL, "2024-02-29T12:30:45" },
	{ "datetime(\"2024-01-01T10:00:00\")", NULL, NULL, "2024-01-01T10:00:00" },
	{ "datetime(\"2024-01-01T10:00:00Z\")", NULL, NULL, "2024-01-01T10:00:00" },
	{ "datetime(\"2024-02-30\")", NULL, NULL, "undefined" },
	{ "datetime(\"2023-02-29\")", NULL, NULL, "undefined" },
	{ "datetime(\"2024-01-01 10:00:00\")", NULL, NULL, "undefined" },
	{ "datetime(\"2024-01-01T25:00:00\")", NULL, NULL, "undefined" },
	{ "datetime(\"2024-1-1\")", NULL, NULL, "undefined" },
	{ "datetime(true)", NULL, NULL, "undefined" },
	{ "datetime(null)", NULL, NULL, "undefined" },
	{ "datetime(1e300)", NULL, NULL, "undefined" },
	{ "datetime(datetime(0))", NULL, NULL, "1970-01-01T00:00:00" },
	{ "datetime(\"2024-01-02\") > \"2024-01-01\"", NULL, NULL, "true" },
	{ "\"2024-01-01\" < datetime(\"2024-01-02\")", NULL, NULL, "true" },
	{ "datetime(\"2024-01-02\") > datetime(\"2024-01-01T23:59:59Z\")", NULL, NULL, "true" },
	{ "\"2024-01-01T00:00:00.500Z\" < datetime(\"2024-01-01T00:00:01\")", NULL, NULL, "true" },
	{ "datetime(\"2024-01-01\") == datetime(1704067200)", NULL, NULL, "true" },
	{ "datetime(\"2024-01-01\") <= datetime(1704067200)", NULL, NULL, "true" },
	{ "datetime(\"2024-01-01\") == \"2024-01-01\"", NULL, NULL, "false" },
	{ "datetime(\"2024-01-01\") > \"garbage\"", NULL, NULL, "undefined" },
	{ "datetime(\"2024-01-01\") > 5", NULL, NULL, "undefined" },
	{ "datetime(properties[\"d\"]) < datetime(\"2024-06-01\")", "{'d':'2024-05-31T23:59:59'}", NULL, "true" },
	{ "datetime(event[\"$time\"]) >= datetime(\"2024-01-01\")", NULL, "{'@event':{'$time':1704067200}}", "true" },
	{ "number(datetime(\"1970-01-02\"))", NULL, NULL, "86400" },
	/* in / not in */
	{ "\"ell\" in \"hello\"", NULL, NULL, "true" },
	{ "\"x\" in \"hello\"", NULL, NULL, "false" },
	{ "\"\" in \"a\"", NULL, NULL, "true" },
	{ "\"hello!\" in \"hello\"", NULL, NULL, "false" },
	{ "1 in [1, 2, 3]", NULL, NULL, "true" },
	{ "4 in [1, 2, 3]", NULL, NULL, "false" },
	{ "\"1\" in [1, 2]", NULL, NULL, "false" },
	{ "null in [null]", NULL, NULL, "true" },
	{ "1 in []", NULL, NULL, "false" },
	{ "properties[\"account_id\"] in [1,2,3,4]", "{'account_id':3}", NULL, "true" },
	{ "properties[\"account_id\"] in [1,2,3,4]", "{'account_id':'3'}", NULL, "false" },
	{ "properties[\"n\"] in [0, properties[\"n\"] + 0]", "{'n':7}", NULL, "true" },
	{ "\"a\" in properties[\"tags\"]", "{'tags':['a','b']}", NULL, "true" },
	{ "\"c\" in properties[\"tags\"]", "{'tags':['a','b']}", NULL, "false" },
	{ "properties[\"tags\"] in [\"b\", \"z\"]", "{'tags':['a','b']}", NULL, "true" },
	{ "properties[\"tags\"] in [\"y\", \"z\"]", "{'tags':['a','b']}", NULL, "false" },
	{ "1 in \"1\"", NULL, NULL, "undefined" },
	{ "\"a\" in 5", NULL, NULL, "undefined" },
	{ "\"a\" in properties[\"missing\"]", NULL, NULL, "undefined" },
	{ "\"a\" in null", NULL, NULL, "undefined" },
	{ "\"a\" not in \"abc\"", NULL, NULL, "false" },
	{ "\"z\" not in \"abc\"", NULL, NULL, "true" },
	{ "5 not in [1, 2]", NULL, NULL, "true" },
	{ "\"a\" not in properties[\"missing\"]", NULL, NULL, "true" },
	{ "not \"a\" in properties[\"b\"]", "{'b':'xyz'}", NULL, "true" },
	{ "not \"a\" in properties[\"b\"]", "{'b':'cat'}", NULL, "false" },
	{ "not \"a\" in properties[\"b\"]", NULL, NULL, "true" },
	/* lists and == */
	{ "properties[\"tags\"] == \"a\"", "{'tags':['a','b']}", NULL, "true" },
	{ "\"b\" == properties[\"tags\"]", "{'tags':['a','b']}", NULL, "true" },
	{ "properties[\"tags\"] == \"c\"", "{'tags':['a','b']}", NULL, "false" },
	{ "properties[\"tags\"] != \"c\"", "{'tags':['a','b']}", NULL, "true" },
	{ "properties[\"tags\"] != \"a\"", "{'tags':['a','b']}", NULL, "false" },
	{ "properties[\"ids\"] == 2", "{'ids':[1,2,3]}", NULL, "true" },
	{ "properties[\"ids\"] == 9", "{'ids':[]}", NULL, "false" },
	{ "properties[\"tags\"] == [\"a\", \"b\"]", "{'tags':['a','b']}", NULL, "true" },
	{ "[1, 2] == [1, 2]", NULL, NULL, "true" },
	{ "[1, 2] == [2, 1]", NULL, NULL, "false" },
	{ "[1, [2, 3]] == [1, [2, 3]]", NULL, NULL, "true" },
	{ "[]", NULL, NULL, "[]" },
	{ "[1, \"a\", true, null, 2.5]", NULL, NULL, "[1,\"a\",true,null,2.5]" },
	{ "[properties[\"m\"], -1]", NULL, NULL, "[null,-1]" },
	{ "[datetime(0)]", NULL, NULL, "[\"1970-01-01T00:00:00\"]" },
	{ "[\"q\\\"x\", \"t\\tb\"]", NULL, NULL, "[\"q\\\"x\",\"t\\tb\"]" },
	{ "[[1], [[]]]", NULL, NULL, "[[1],[[]]]" },
	{ "properties[\"tags\"]", "{'tags':['a',1,false]}", NULL, "[\"a\",1,false]" },
	/* and / or / not */
	{ "true and true", NULL, NULL, "true" },
	{ "true and false", NULL, NULL, "false" },
	{ "false or true", NULL, NULL, "true" },
	{ "false or false", NULL, NULL, "false" },
	{ "properties[\"m\"] or true", NULL, NULL, "true" },
	{ "properties[\"m\"] and true", NULL, NULL, "false" },
	{ "properties[\"m\"] or properties[\"q\"]", NULL, NULL, "false" },
	{ "1 and true", NULL, NULL, "ERROR" },
	{ "true or \"x\"", NULL, NULL, "ERROR" },
	{ "null and true", NULL, NULL, "ERROR" },
	{ "false and properties[\"s\"]", "{'s':'x'}", NULL, "ERROR" },
	{ "true or properties[\"l\"]", "{'l':[1]}", NULL, "ERROR" },
	{ "properties[\"b\"] and true", "{'b':true}", NULL, "true" },
	{ "datetime(0) or true", NULL, NULL, "ERROR" },
	{ "true or false and false", NULL, NULL, "true" },
	{ "(true or false) and false", NULL, NULL, "false" },
	{ "false and false or true", NULL, NULL, "true" },
	{ "not true", NULL, NULL, "false" },
	{ "not false", NULL, NULL, "true" },
	{ "not properties[\"m\"]", NULL, NULL, "true" },
	{ "not 1", NULL, NULL, "undefined" },
	{ "not null", NULL, NULL, "undefined" },
	{ "not \"\"", NULL, NULL, "undefined" },
	{ "not not true", NULL, NULL, "true" },
	{ "not 1 == 2", NULL, NULL, "true" },
	{ "not properties[\"a\"] == properties[\"b\"]", "{'a':1,'b':2}", NULL, "true" },
	{ "not properties[\"a\"] == properties[\"b\"]", "{'a':1,'b':1}", NULL, "false" },
	{ "not 1 and true", NULL, NULL, "false" },
	{ "1 + 2 == 3 and 2 * 2 == 4", NULL, NULL, "true" },
	/* defined / boolean / number / string */
	{ "defined(properties[\"a\"])", "{'a':1}", NULL, "true" },
	{ "defined(properties[\"a\"])", NULL, NULL, "false" },
	{ "defined(properties[\"a\"])", "{'a':null}", NULL, "true" },
	{ "not defined(properties[\"a\"])", NULL, NULL, "true" },
	{ "defined(1 / 0)", NULL, NULL, "false" },
	{ "boolean(\"false\")", NULL, NULL, "false" },
	{ "boolean(\"\")", NULL, NULL, "false" },
	{ "boolean(\"0\")", NULL, NULL, "true" },
	{ "boolean(0)", NULL, NULL, "false" },
	{ "boolean(2)", NULL, NULL, "true" },
	{ "boolean(null)", NULL, NULL, "false" },
	{ "boolean(properties[\"m\"])", NULL, NULL, "false" },
	{ "boolean(true)", NULL, NULL, "true" },
	{ "boolean([])", NULL, NULL, "false" },
	{ "boolean([0])", NULL, NULL, "true" },
	{ "boolean(datetime(0))", NULL, NULL, "true" },
	{ "number(\"42\")", NULL, NULL, "42" },
	{ "number(\" 3.5 \")", NULL, NULL, "3.5" },
	{ "number(\"-.5\")", NULL, NULL, "-0.5" },
	{ "number(\"1e3\")", NULL, NULL, "1000" },
	{ "number(\"abc\")", NULL, NULL, "undefined" },
	{ "number(\"\")", NULL, NULL, "undefined" },
	{ "number(\"0x10\")", NULL, NULL, "undefined" },
	{ "number(\"inf\")", NULL, NULL, "undefined" },
	{ "number(\"1e999\")", NULL, NULL, "undefined" },
	{ "number(\"12abc\")", NULL, NULL, "undefined" },
	{ "number(true)", NULL, NULL, "1" },
	{ "number(false)", NULL, NULL, "0" },
	{ "number(null)", NULL, NULL, "undefined" },
	{ "number(properties[\"m\"])", NULL, NULL, "undefined" },
	{ "number(7)", NULL, NULL, "7" },
	{ "number([1])", NULL, NULL, "undefined" },
	{ "number(properties[\"price\"]) > 10", "{'price':'12.50'}", NULL, "true" },
	{ "string(3)", NULL, NULL, "3" },
	{ "string(2.5)", NULL, NULL, "2.5" },
	{ "string(0.1)", NULL, NULL, "0.1" },
	{ "string(1e21)", NULL, NULL, "1e+21" },
	{ "string(true)", NULL, NULL, "true" },
	{ "string(false) == \"false\"", NULL, NULL, "true" },
	{ "string(null)", NULL, NULL, "null" },
	{ "string(null) == null", NULL, NULL, "true" },
	{ "string(properties[\"m\"])", NULL, NULL, "undefined" },
	{ "string(\"x\")", NULL, NULL, "x" },
	{ "string(1) + \"a\"", NULL, NULL, "1a" },
	{ "string(1) + string(2) == \"12\"", NULL, NULL, "true" },
	{ "string([1, \"a\"])", NULL, NULL, "[1,\"a\"]" },
	{ "string(datetime(0))", NULL, NULL, "1970-01-01T00:00:00" },
	{ "string(properties[\"n\"]) == \"5\"", "{'n':5}", NULL, "true" },
	/* floor / round / ceil / has_prefix */
	{ "floor(2.7)", NULL, NULL, "2" },
	{ "floor(-2.5)", NULL, NULL, "-3" },
	{ "round(2.5)", NULL, NULL, "3" },
	{ "round(-2.5)", NULL, NULL, "-3" },
	{ "round(2.4)", NULL, NULL, "2" },
	{ "ceil(2.1)", NULL, NULL, "3" },
	{ "ceil(-2.1)", NULL, NULL, "-2" },
	{ "floor(\"2\")", NULL, NULL, "undefined" },
	{ "ceil(null)", NULL, NULL, "undefined" },
	{ "round(properties[\"m\"])", NULL, NULL, "undefined" },
	{ "round(properties[\"n\"])", "{'n':1.5}", NULL, "2" },
	{ "floor(properties[\"n\"] / 10) * 10", "{'n':57}", NULL, "50" },
	{ "has_prefix(\"hello\", \"he\")", NULL, NULL, "true" },
	{ "has_prefix(\"hello\", \"lo\")", NULL, NULL, "false" },
	{ "has_prefix(\"he\", \"hello\")", NULL, NULL, "false" },
	{ "has_prefix(\"a\", \"\")", NULL, NULL, "true" },
	{ "has_prefix(1, \"1\")", NULL, NULL, "undefined" },
	{ "has_prefix(\"1\", 1)", NULL, NULL, "undefined" },
	{ "has_prefix(properties[\"m\"], \"x\")", NULL, NULL, "undefined" },
	{ "has_prefix(properties[\"url\"], \"https://\")", "{'url':'https://x.io'}", NULL, "true" },
	/* literals, escapes, accessors */
	{ "properties[\"a \\\"quoted\\\" key\"]", "{'a \\'quoted\\' key':7}", NULL, "7" },
	{ "properties['k']", "{'k':1}", NULL, "1" },
	{ "'it\\'s'", NULL, NULL, "it's" },
	{ "'say \"hi\"'", NULL, NULL, "say \"hi\"" },
	{ "\"tab\\there\"", NULL, NULL, "tab\there" },
	{ "\"line\\nbreak\"", NULL, NULL, "line\nbreak" },
	{ "\"a\\\\b\"", NULL, NULL, "a\\b" },
	{ "\"\\u00e9\"", NULL, NULL, "\xc3\xa9" },
	{ "\"\\ud83d\\ude00\"", NULL, NULL, "\xf0\x9f\x98\x80" },
	{ "'a' == \"a\"", NULL, NULL, "true" },
	{ "\"\"", NULL, NULL, "" },
	{ "true", NULL, NULL, "true" },
	{ "false", NULL, NULL, "false" },
	{ "null", NULL, NULL, "null" },
	{ "0.5", NULL, NULL, "0.5" },
	{ "1e2", NULL, NULL, "100" },
	{ "properties[\"m\"]", NULL, NULL, "undefined" },
	{ "properties[\"$browser\"]", "{'$browser':'Chrome'}", NULL, "Chrome" },
	{ "user[\"plan\"] == \"pro\"", NULL, "{'plan':'pro'}", "true" },
	{ "user[\"plan\"]", NULL, NULL, "undefined" },
	{ "user[\"plan\"] == properties[\"plan\"]", "{'plan':'free'}", "{'plan':'pro'}", "false" },
	{ "event[\"name\"] == \"signup\"", NULL, "{'@event':{'name':'signup'}}", "true" },
	{ "group[\"company\"]", NULL, "{'@group':{'company':'Acme'}}", "Acme" },
	{ "  ( 1\t+\n2 )  ", NULL, NULL, "3" },
	{ "1 + foo", NULL, NULL, "ERROR" },
};

/* Evaluate SRC with the JSON contexts; write the key or "ERROR". */
static void t_eval(const char *src, const char *props, const char *user, char *out, size_t n)
{
	static struct t_ctx c;
	struct expr *e = NULL;
	struct expr_value v;
	char err[256];

	memset(&c, 0, sizeof(c));
	c.props = props ? J(props) : NULL;
	c.user = user ? J(user) : NULL;
	if (expr_compile(src, strlen(src), &e, err, sizeof(err), NULL) != MP_OK ||
	    expr_eval(e, t_lookup, &c, &v) != MP_OK)
		snprintf(out, n, "ERROR");
	else
		expr_value_key(&v, out, n);
	expr_free(e);
	cJSON_Delete(c.props);
	cJSON_Delete(c.user);
}

static void test_table(void)
{
	size_t i;
	char got[512];

	for (i = 0; i < sizeof(t_cases) / sizeof(t_cases[0]); i++) {
		t_eval(t_cases[i].src, t_cases[i].props, t_cases[i].user, got, sizeof(got));
		if (strcmp(got, t_cases[i].expect) != 0) {
			fprintf(stderr, "case %zu: %s -> \"%s\", want \"%s\"\n", i, t_cases[i].src, got,
				t_cases[i].expect);
			tl_cur_failed = 1;
		}
	}
	printf("expression table: %zu cases\n", sizeof(t_cases) / sizeof(t_cases[0]));
}

struct t_err {
	const char *src;
	enum mp_err rc;
	size_t off;
	const char *msg; /* exact message, or NULL to check only " at byte N" */
};

static const struct t_err t_errs[] = {
	{ "", MP_E_PARSE, 0, "expected expression, found end of input at byte 0" },
	{ "1 +", MP_E_PARSE, 3, "expected expression, found end of input at byte 3" },
	{ "properties[\"a\"", MP_E_PARSE, 14,
	  "expected ']' after accessor name, found end of input at byte 14" },
	{ "properties[\"a\" == 1", MP_E_PARSE, 15,
	  "expected ']' after accessor name, found '==' at byte 15" },
	{ "properties[a]", MP_E_PARSE, 11, NULL },
	{ "user[1]", MP_E_PARSE, 5, "expected string as accessor name after '[', found number at byte 5" },
	{ "properties \"a\"", MP_E_PARSE, 11, "expected '[' after 'properties', found string at byte 11" },
	{ "foo(1)", MP_E_PARSE, 0, "unknown function 'foo' at byte 0" },
	{ "1 + foo", MP_E_PARSE, 4, "unknown identifier 'foo' at byte 4" },
	{ "Properties[\"a\"]", MP_E_PARSE, 0, "unknown identifier 'Properties' at byte 0" },
	{ "TRUE", MP_E_PARSE, 0, NULL },
	{ "\"abc", MP_E_PARSE, 0, "unterminated string starting at byte 0" },
	{ "1 == 'x", MP_E_PARSE, 5, "unterminated string starting at byte 5" },
	{ "properties[\"a\\\"]", MP_E_PARSE, 11, "unterminated string starting at byte 11" },
	{ "(1 + 2", MP_E_PARSE, 6, "expected ')' to close '(' at byte 0, found end of input at byte 6" },
	{ "(1))", MP_E_PARSE, 3, "expected end of expression, found ')' at byte 3" },
	{ "1 = 2", MP_E_PARSE, 2, "expected '==', found '=' at byte 2" },
	{ "1 ! 2", MP_E_PARSE, 2, NULL },
	{ "1 < 2 < 3", MP_E_PARSE, 6, "expected end of expression, found '<' at byte 6" },
	{ "1 < 2 == true", MP_E_PARSE, 6, NULL },
	{ "1 2", MP_E_PARSE, 2, "expected end of expression, found number at byte 2" },
	{ "[1, 2", MP_E_PARSE, 5, "expected ',' or ']' in list, found end of input at byte 5" },
	{ "[1 2]", MP_E_PARSE, 3, NULL },
	{ "[1,]", MP_E_PARSE, 3, "expected expression, found ']' at byte 3" },
	{ "floor(1, 2)", MP_E_PARSE, 0, "function 'floor' takes 1 argument, got 2 at byte 0" },
	{ "has_prefix(\"a\")", MP_E_PARSE, 0, "function 'has_prefix' takes 2 arguments, got 1 at byte 0" },
	{ "floor()", MP_E_PARSE, 6, "expected expression, found ')' at byte 6" },
	{ "floor 1", MP_E_PARSE, 6, "expected '(' after 'floor', found number at byte 6" },
	{ "round(1", MP_E_PARSE, 7, NULL },
	{ "\"a\\qb\"", MP_E_PARSE, 2, "unknown escape '\\q' at byte 2" },
	{ "\"\\u12\"", MP_E_PARSE, 1, "expected 4 hex digits after '\\u' at byte 1" },
	{ "\"\\ud800\"", MP_E_PARSE, 1, "unpaired surrogate in '\\u' escape at byte 1" },
	{ "1 + #", MP_E_PARSE, 4, "unexpected character '#' at byte 4" },
	{ "1.e5", MP_E_PARSE, 2, "expected digit after '.' in number at byte 2" },
	{ "1e", MP_E_PARSE, 2, NULL },
	{ ".5", MP_E_PARSE, 0, NULL },
	{ "12abc", MP_E_PARSE, 2, NULL },
	{ "1e999", MP_E_PARSE, 0, "number out of range at byte 0" },
	{ "and", MP_E_PARSE, 0, "expected expression, found 'and' at byte 0" },
	{ "true and", MP_E_PARSE, 8, NULL },
	{ "1 not 2", MP_E_PARSE, 2, "expected end of expression, found 'not' at byte 2" },
	{ "not in [1]", MP_E_PARSE, 4, NULL },
	{ "1 in", MP_E_PARSE, 4, NULL },
	{ "-", MP_E_PARSE, 1, NULL },
	{ "properties[\"a\"] == \"b\" and (", MP_E_PARSE, 28, NULL },
};

static void test_compile_errors(void)
{
	size_t i;

	for (i = 0; i < sizeof(t_errs) / sizeof(t_errs[0]); i++) {
		struct expr *e = (struct expr *)1;
		char err[256], suffix[48];
		size_t off = 999999;
		enum mp_err rc = expr_compile(t_errs[i].src, strlen(t_errs[i].src), &e, err,
					      sizeof(err), &off);

		if (rc != t_errs[i].rc || off != t_errs[i].off || e != NULL) {
			fprintf(stderr, "error case %zu: %s -> rc %d off %zu \"%s\", want rc %d off %zu\n",
				i, t_errs[i].src, (int)rc, off, err, (int)t_errs[i].rc, t_errs[i].off);
			tl_cur_failed = 1;
			continue;
		}
		snprintf(suffix, sizeof(suffix), " at byte %zu", t_errs[i].off);
		CHECK(strlen(err) > strlen(suffix) &&
		      strcmp(err + strlen(err) - strlen(suffix), suffix) == 0);
		if (t_errs[i].msg)
			CHECK_STR(err, t_errs[i].msg);
	}
	printf("compile error table: %zu cases\n", sizeof(t_errs) / sizeof(t_errs[0]));
}

/* Repeat S N times into a new string. */
static char *t_repeat(const char *pre, size_t npre, const char *mid, const char *post, size_t npost)
{
	size_t lp = strlen(pre), lm = strlen(mid), lq = strlen(post), i;
	char *s = malloc(lp * npre + lm + lq * npost + 1), *o = s;

	if (!s)
		return NULL;
	for (i = 0; i < npre; i++, o += lp)
		memcpy(o, pre, lp);
	memcpy(o, mid, lm);
	o += lm;
	for (i = 0; i < npost; i++, o += lq)
		memcpy(o, post, lq);
	*o = '\0';
	return s;
}

static void t_check_depth(const char *pre, const char *mid, const char *post, size_t depth,
			  enum mp_err want, const char *want_key)
{
	char *s = t_repeat(pre, depth, mid, post, depth);
	struct expr *e = NULL;
	struct expr_value v;
	char err[256], key[64];
	enum mp_err rc;

	CHECK(s != NULL);
	if (!s)
		return;
	rc = expr_compile(s, strlen(s), &e, err, sizeof(err), NULL);
	CHECK_INT(rc, want);
	if (rc == MP_OK) {
		CHECK_INT(expr_eval(e, NULL, NULL, &v), MP_OK);
		expr_value_key(&v, key, sizeof(key));
		if (want_key)
			CHECK_STR(key, want_key);
	} else {
		CHECK(strstr(err, "deeper than 64") != NULL);
	}
	expr_free(e);
	free(s);
}

static void test_limits(void)
{
	struct expr *e = NULL;
	struct expr_value v;
	char err[256], key[64];
	size_t off, i;
	char *s;

	t_check_depth("(", "1", ")", 64, MP_OK, "1");
	t_check_depth("(", "1", ")", 65, MP_E_TOOBIG, NULL);
	t_check_depth("-", "1", "", 64, MP_OK, "1");
	t_check_depth("-", "1", "", 65, MP_E_TOOBIG, NULL);
	t_check_depth("not ", "true", "", 64, MP_OK, "true");
	t_check_depth("not ", "true", "", 65, MP_E_TOOBIG, NULL);
	t_check_depth("[", "", "]", 64, MP_OK, NULL) ;
	t_check_depth("[", "", "]", 65, MP_E_TOOBIG, NULL);
	t_check_depth("floor(", "1", ")", 64, MP_OK, "1");
	t_check_depth("floor(", "1", ")", 65, MP_E_TOOBIG, NULL);
	/* 100000 opening parens: still bounded, stops at the limit */
	s = t_repeat("(", 60000, "", "", 0);
	CHECK_INT(expr_compile(s, strlen(s), &e, err, sizeof(err), &off), MP_E_TOOBIG);
	CHECK_INT(off, 64);
	free(s);

	/* long flat chains are loops, not recursion */
	s = t_repeat("1+", 20000, "1", "", 0);
	CHECK_INT(expr_compile(s, strlen(s), &e, err, sizeof(err), NULL), MP_OK);
	CHECK_INT(expr_eval(e, NULL, NULL, &v), MP_OK);
	expr_value_key(&v, key, sizeof(key));
	CHECK_STR(key, "20001");
	expr_free(e);
	free(s);

	/* source size */
	s = t_repeat(" ", 65536 - 1, "1", "", 0);
	CHECK_INT(expr_compile(s, strlen(s), &e, err, sizeof(err), NULL), MP_OK);
	expr_free(e);
	free(s);
	s = t_repeat(" ", 65536, "1", "", 0);
	CHECK_INT(expr_compile(s, strlen(s), &e, err, sizeof(err), &off), MP_E_TOOBIG);
	CHECK(e == NULL);
	free(s);

	/* list literal items */
	for (i = 0; i < 2; i++) {
		size_t n = 10000 + i;

		s = t_repeat("1,", n - 1, "2]", "", 0);
		{
			char *t = malloc(strlen(s) + 8);

			memcpy(t, "2 in [", 6);
			memcpy(t + 6, s, strlen(s) + 1);
			free(s);
			s = t;
		}
		CHECK_INT(expr_compile(s, strlen(s), &e, err, sizeof(err), NULL),
			  i ? MP_E_TOOBIG : MP_OK);
		if (!i) {
			CHECK_INT(expr_eval_where(e, NULL, NULL), 1);
			expr_free(e);
		} else {
			CHECK(strstr(err, "10000") != NULL);
		}
		free(s);
	}
	/* a non-constant list literal at the limit */
	s = t_repeat("0+0,", 9999, "3]", "", 0);
	{
		char *t = malloc(strlen(s) + 8);

		memcpy(t, "3 in [", 6);
		memcpy(t + 6, s, strlen(s) + 1);
		free(s);
		s = t;
	}
	CHECK_INT(expr_compile(s, strlen(s), &e, err, sizeof(err), NULL), MP_OK);
	CHECK_INT(expr_eval_where(e, NULL, NULL), 1);
	expr_free(e);
	free(s);
}

static void test_value_key(void)
{
	struct expr_value v, items[3];
	char buf[64];
	const char text[] = "hello world";

	v.type = EXPR_UNDEFINED;
	CHECK_INT(expr_value_key(&v, buf, sizeof(buf)), 9);
	CHECK_STR(buf, "undefined");
	v.type = EXPR_NULL;
	expr_value_key(&v, buf, sizeof(buf));
	CHECK_STR(buf, "null");
	v.type = EXPR_BOOL;
	v.u.b = 1;
	expr_value_key(&v, buf, sizeof(buf));
	CHECK_STR(buf, "true");
	v.u.b = 0;
	expr_value_key(&v, buf, sizeof(buf));
	CHECK_STR(buf, "false");
	v.type = EXPR_NUMBER;
	v.u.n = 3;
	expr_value_key(&v, buf, sizeof(buf));
	CHECK_STR(buf, "3");
	v.u.n = 2.5;
	expr_value_key(&v, buf, sizeof(buf));
	CHECK_STR(buf, "2.5");
	v.u.n = -0.0;
	expr_value_key(&v, buf, sizeof(buf));
	CHECK_STR(buf, "0");
	v.u.n = 1e300;
	expr_value_key(&v, buf, sizeof(buf));
	CHECK_STR(buf, "1e+300");
	v.u.n = 123456789012345.0;
	expr_value_key(&v, buf, sizeof(buf));
	CHECK_STR(buf, "123456789012345");
	v.u.n = 0.1;
	expr_value_key(&v, buf, sizeof(buf));
	CHECK_STR(buf, "0.1");
	v.type = EXPR_STRING;
	v.u.str.s = text;
	v.u.str.len = 5; /* not NUL-terminated there */
	CHECK_INT(expr_value_key(&v, buf, sizeof(buf)), 5);
	CHECK_STR(buf, "hello");
	CHECK_INT(expr_value_key(&v, buf, 4), 5); /* truncated like snprintf */
	CHECK_STR(buf, "hel");
	CHECK_INT(expr_value_key(&v, NULL, 0), 5);
	v.type = EXPR_DATETIME;
	v.u.ms = 1704067200123LL;
	expr_value_key(&v, buf, sizeof(buf));
	CHECK_STR(buf, "2024-01-01T00:00:00");
	v.u.ms = -1;
	expr_value_key(&v, buf, sizeof(buf));
	CHECK_STR(buf, "1969-12-31T23:59:59");
	items[0].type = EXPR_STRING;
	items[0].u.str.s = "a\"b";
	items[0].u.str.len = 3;
	items[1].type = EXPR_NUMBER;
	items[1].u.n = 1.5;
	items[2].type = EXPR_LIST;
	items[2].u.list.items = NULL;
	items[2].u.list.n = 0;
	v.type = EXPR_LIST;
	v.u.list.items = items;
	v.u.list.n = 3;
	CHECK_INT(expr_value_key(&v, buf, sizeof(buf)), strlen("[\"a\\\"b\",1.5,[]]"));
	CHECK_STR(buf, "[\"a\\\"b\",1.5,[]]");
}

static int t_fail_lookup(void *ctx, enum expr_scope scope, const char *name, size_t len,
			 struct expr_value *out)
{
	(void)ctx;
	(void)scope;
	(void)name;
	(void)len;
	(void)out;
	return -1;
}

static int t_where(const char *src, const char *props)
{
	static struct t_ctx c;
	struct expr *e = NULL;
	char err[256];
	int r;

	memset(&c, 0, sizeof(c));
	c.props = props ? J(props) : NULL;
	if (expr_compile(src, strlen(src), &e, err, sizeof(err), NULL) != MP_OK) {
		cJSON_Delete(c.props);
		return -2;
	}
	r = expr_eval_where(e, t_lookup, &c);
	expr_free(e);
	cJSON_Delete(c.props);
	return r;
}

static void test_where(void)
{
	struct expr *e = NULL;
	struct expr_value v;
	char err[256];

	CHECK_INT(t_where("true", NULL), 1);
	CHECK_INT(t_where("false", NULL), 0);
	CHECK_INT(t_where("properties[\"m\"]", NULL), 0);
	CHECK_INT(t_where("null", NULL), 0);
	CHECK_INT(t_where("\"true\"", NULL), 0);
	CHECK_INT(t_where("1", NULL), 0);
	CHECK_INT(t_where("[true]", NULL), 0);
	CHECK_INT(t_where("properties[\"b\"]", "{'b':true}"), 1);
	CHECK_INT(t_where("properties[\"s\"] and true", "{'s':'x'}"), -1);
	CHECK_INT(t_where("properties[\"n\"] > 3 and properties[\"c\"] == \"US\"", "{'n':4,'c':'US'}"), 1);
	CHECK_INT(t_where("properties[\"n\"] > 3 and properties[\"c\"] == \"US\"", "{'n':3,'c':'US'}"), 0);

	/* evaluation error message and lookup abort */
	CHECK_INT(expr_compile("1 or true", 9, &e, err, sizeof(err), NULL), MP_OK);
	CHECK_STR(expr_error(e), "");
	CHECK_INT(expr_eval(e, NULL, NULL, &v), MP_E_INVALID);
	CHECK(strstr(expr_error(e), "'or'") != NULL);
	CHECK(strstr(expr_error(e), "number") != NULL);
	expr_free(e);
	CHECK_INT(expr_compile("properties[\"a\"] == 1", 20, &e, err, sizeof(err), NULL), MP_OK);
	CHECK_INT(expr_eval(e, t_fail_lookup, NULL, &v), MP_E_STORE);
	CHECK_INT(expr_eval_where(e, t_fail_lookup, NULL), -1);
	CHECK_INT(expr_eval(e, NULL, NULL, &v), MP_OK); /* no lookup: undefined */
	CHECK_STR(expr_error(e), "");
	expr_free(e);
	expr_free(NULL);
	/* source need not be NUL-terminated */
	CHECK_INT(expr_compile("1 + 2garbage", 5, &e, err, sizeof(err), NULL), MP_OK);
	CHECK_INT(expr_eval(e, NULL, NULL, &v), MP_OK);
	CHECK(v.type == EXPR_NUMBER && v.u.n == 3);
	expr_free(e);
}

struct t_refs {
	int n;
	char seen[8][32];
};

static void t_ref_cb(void *ctx, enum expr_scope scope, const char *name, size_t len)
{
	struct t_refs *r = ctx;

	if (r->n < 8)
		snprintf(r->seen[r->n], sizeof(r->seen[0]), "%d:%.*s", (int)scope, (int)len, name);
	r->n++;
}

static void test_refs(void)
{
	const char *src = "properties[\"a\"] == 1 or properties[\"a\"] == 2 or user[\"a\"] == 3 or "
			  "defined(properties['b']) or event[\"$time\"] > 0 or group[\"a\"] == user['a']";
	struct expr *e = NULL;
	struct t_refs r;
	char err[256];

	memset(&r, 0, sizeof(r));
	CHECK_INT(expr_compile(src, strlen(src), &e, err, sizeof(err), NULL), MP_OK);
	expr_refs(e, t_ref_cb, &r);
	CHECK_INT(r.n, 5);
	CHECK_STR(r.seen[0], "0:a");
	CHECK_STR(r.seen[1], "1:a");
	CHECK_STR(r.seen[2], "0:b");
	CHECK_STR(r.seen[3], "2:$time");
	CHECK_STR(r.seen[4], "3:a");
	expr_free(e);

	memset(&r, 0, sizeof(r));
	CHECK_INT(expr_compile("1 + 2", 5, &e, err, sizeof(err), NULL), MP_OK);
	expr_refs(e, t_ref_cb, &r);
	CHECK_INT(r.n, 0);
	expr_free(e);
}

struct t_loop {
	double n;
	char s[16];
};

static int t_loop_lookup(void *ctx, enum expr_scope scope, const char *name, size_t len,
			 struct expr_value *out)
{
	struct t_loop *l = ctx;

	(void)scope;
	if (len == 1 && name[0] == 'n') {
		out->type = EXPR_NUMBER;
		out->u.n = l->n;
	} else if (len == 1 && name[0] == 's') {
		out->type = EXPR_STRING;
		out->u.str.s = l->s;
		out->u.str.len = strlen(l->s);
	} else {
		out->type = EXPR_UNDEFINED;
	}
	return 0;
}

static void test_repeated_eval(void)
{
	const char *w = "properties[\"n\"] % 7 == 3 and has_prefix(properties[\"s\"], \"x\") or "
			"properties[\"n\"] in [5000, 5001]";
	const char *k = "string(properties[\"n\"]) + \"-\" + properties[\"s\"]";
	struct expr *ew = NULL, *ek = NULL;
	struct t_loop l;
	struct expr_value v;
	char err[256], key[64], want[64];
	int i, bad = 0;

	CHECK_INT(expr_compile(w, strlen(w), &ew, err, sizeof(err), NULL), MP_OK);
	CHECK_INT(expr_compile(k, strlen(k), &ek, err, sizeof(err), NULL), MP_OK);
	if (!ew || !ek)
		goto out;
	for (i = 0; i < 10000; i++) {
		int exp = (i % 7 == 3 && i % 2 == 0) || i == 5000 || i == 5001;

		l.n = i;
		snprintf(l.s, sizeof(l.s), "%s%d", i % 2 ? "y" : "x", i % 100);
		if (expr_eval_where(ew, t_loop_lookup, &l) != exp)
			bad++;
		if (expr_eval(ek, t_loop_lookup, &l, &v) != MP_OK || v.type != EXPR_STRING) {
			bad++;
			continue;
		}
		expr_value_key(&v, key, sizeof(key));
		snprintf(want, sizeof(want), "%d-%s", i, l.s);
		if (strcmp(key, want) != 0)
			bad++;
	}
	CHECK_INT(bad, 0);
out:
	expr_free(ew);
	expr_free(ek);
}

/* Formulas: A..Z are metric variables only in expr_compile_formula. */
static void test_formula(void)
{
	static const struct { const char *src, *metrics, *expect; } cases[] = {
		{ "A / B * 100", "{\"A\":3,\"B\":4}", "75" },
		{ "(A - B) / A", "{\"A\":4,\"B\":1}", "0.75" },
		{ "A / B", "{\"A\":3,\"B\":0}", "undefined" },      /* division by zero */
		{ "A + Z", "{\"A\":1}", "undefined" },                /* a letter without a value */
		{ "round(A / 3)", "{\"A\":10}", "3" },
	};
	struct t_ctx c;
	struct expr *e = NULL;
	struct expr_value v;
	char err[256], key[64], user[128];
	size_t i, off;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		memset(&c, 0, sizeof c);
		snprintf(user, sizeof user, "{\"@metric\":%s}", cases[i].metrics);
		c.user = cJSON_Parse(user);
		CHECK_INT(expr_compile_formula(cases[i].src, strlen(cases[i].src), &e, err, sizeof err, NULL), MP_OK);
		if (e && expr_eval(e, t_lookup, &c, &v) == MP_OK) {
			expr_value_key(&v, key, sizeof key);
			CHECK_STR(key, cases[i].expect);
		} else {
			CHECK_INT(1, 0);
		}
		expr_free(e);
		e = NULL;
		cJSON_Delete(c.user);
	}
	/* outside formulas a letter is an unknown identifier; lower case and
	 * longer names stay unknown in formulas too */
	CHECK_INT(expr_compile("A + 1", 5, &e, err, sizeof err, &off), MP_E_PARSE);
	CHECK_INT(expr_compile_formula("a + 1", 5, &e, err, sizeof err, &off), MP_E_PARSE);
	CHECK_INT(expr_compile_formula("AB + 1", 6, &e, err, sizeof err, &off), MP_E_PARSE);
}

int main(void)
{
	TEST_RUN(test_table);
	TEST_RUN(test_compile_errors);
	TEST_RUN(test_limits);
	TEST_RUN(test_value_key);
	TEST_RUN(test_where);
	TEST_RUN(test_refs);
	TEST_RUN(test_repeated_eval);
	TEST_RUN(test_formula);
	return TEST_DONE();
}
