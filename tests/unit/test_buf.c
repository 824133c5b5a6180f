/*
 * test_buf.c - unit tests for src/buf.c (contract: include/buf.h).
 *
 * What is checked: the size cap (MP_E_TOOBIG, content kept after any
 * failed append), the NUL terminator, ownership hand-off by buf_take(),
 * byte-exact JSON string escaping, JSON numbers, and LEB128 varints.
 * Every expected byte string is written out by hand.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "buf.h"
#include "propcodec.h"
#include "testlib.h"

/* 1 when B holds exactly the N bytes at P, followed by a NUL. */
static int buf_is(const struct buf *b, const void *p, size_t n)
{
	if (b->len != n || b->data == NULL || b->data[n] != '\0')
		return 0;
	return n == 0 || memcmp(b->data, p, n) == 0;
}

/* ---------- init, append, cap ---------- */

static void take_on_fresh_buffer_returns_empty_string(void)
{
	struct buf b;
	size_t len = 99;
	char *s;

	buf_init(&b, 100);
	CHECK(b.data == NULL);
	CHECK_INT(b.len, 0);
	s = buf_take(&b, &len);
	CHECK(s != NULL);
	CHECK_STR(s, "");
	CHECK_INT(len, 0);
	free(s);
	buf_free(&b);
}

static void append_keeps_bytes_and_nul_terminator_while_growing(void)
{
	struct buf b;
	char want[5000];
	size_t i;
	enum mp_err rc = MP_OK;

	buf_init(&b, 1 << 20);
	for (i = 0; i < sizeof want; i++)
		want[i] = (char)('a' + i % 26);
	/* 1, 2, 3, ... byte chunks so the buffer is reallocated several times */
	for (i = 0; i < sizeof want && rc == MP_OK;) {
		size_t n = i % 7 + 1;

		if (n > sizeof want - i)
			n = sizeof want - i;
		rc = buf_append(&b, want + i, n);
		i += n;
	}
	CHECK_INT(rc, MP_OK);
	CHECK(buf_is(&b, want, sizeof want));
	CHECK(b.cap > b.len);
	buf_free(&b);
	CHECK(b.data == NULL);
	CHECK_INT(b.len, 0);
}

static void append_of_zero_bytes_gives_empty_terminated_string(void)
{
	struct buf b;

	buf_init(&b, 0);
	CHECK_INT(buf_append(&b, "", 0), MP_OK);
	CHECK(buf_is(&b, "", 0));
	CHECK_INT(buf_putc(&b, 'x'), MP_E_TOOBIG);
	CHECK(buf_is(&b, "", 0));
	buf_free(&b);
}

static void append_up_to_the_cap_succeeds_and_one_more_byte_is_toobig(void)
{
	struct buf b;

	buf_init(&b, 10);
	CHECK_INT(buf_append(&b, "0123456789", 10), MP_OK);
	CHECK(buf_is(&b, "0123456789", 10));
	CHECK_INT(buf_append(&b, "x", 1), MP_E_TOOBIG);
	CHECK_INT(buf_putc(&b, 'x'), MP_E_TOOBIG);
	CHECK_INT(buf_printf(&b, "%d", 7), MP_E_TOOBIG);
	CHECK_INT(buf_varint(&b, 1), MP_E_TOOBIG);
	CHECK_INT(buf_json_num(&b, 1), MP_E_TOOBIG);
	CHECK_INT(buf_json_str(&b, "", 0), MP_E_TOOBIG);
	CHECK(buf_is(&b, "0123456789", 10));
	buf_free(&b);
}

static void append_over_the_cap_is_toobig_and_keeps_previous_content(void)
{
	struct buf b;

	buf_init(&b, 8);
	CHECK_INT(buf_append(&b, "abc", 3), MP_OK);
	CHECK_INT(buf_append(&b, "123456", 6), MP_E_TOOBIG);
	CHECK(buf_is(&b, "abc", 3));
	CHECK_INT(buf_printf(&b, "%s", "123456"), MP_E_TOOBIG);
	CHECK(buf_is(&b, "abc", 3));
	CHECK_INT(buf_json_str(&b, "abcdefgh", 8), MP_E_TOOBIG);
	CHECK(buf_is(&b, "abc", 3));
	CHECK_INT(buf_json_num(&b, 123456.5), MP_E_TOOBIG);
	CHECK(buf_is(&b, "abc", 3));
	/* a huge length must not wrap around the cap check */
	CHECK_INT(buf_append(&b, "x", SIZE_MAX), MP_E_TOOBIG);
	CHECK_INT(buf_append(&b, "x", SIZE_MAX - 1), MP_E_TOOBIG);
	CHECK(buf_is(&b, "abc", 3));
	CHECK_INT(buf_append(&b, "12345", 5), MP_OK);
	CHECK(buf_is(&b, "abc12345", 8));
	buf_free(&b);
}

static void putc_fills_across_growth_and_stops_at_the_cap(void)
{
	struct buf b;
	char want[600];
	int i;
	enum mp_err rc = MP_OK;

	buf_init(&b, 600);
	for (i = 0; i < 600 && rc == MP_OK; i++) {
		want[i] = (char)('0' + i % 10);
		rc = buf_putc(&b, want[i]);
	}
	CHECK_INT(rc, MP_OK);
	CHECK(buf_is(&b, want, 600));
	CHECK_INT(buf_putc(&b, 'x'), MP_E_TOOBIG);
	CHECK(buf_is(&b, want, 600));
	buf_reset(&b);
	CHECK_INT(buf_putc(&b, 'y'), MP_OK);
	CHECK(buf_is(&b, "y", 1));
	buf_free(&b);
}

static void printf_formats_and_fills_exactly_to_the_cap(void)
{
	struct buf b;

	buf_init(&b, 12);
	CHECK_INT(buf_printf(&b, "%s=%d", "k", -42), MP_OK);
	CHECK(buf_is(&b, "k=-42", 5));
	CHECK_INT(buf_printf(&b, "%07.2f", 3.14159), MP_OK);
	CHECK(buf_is(&b, "k=-420003.14", 12));
	CHECK_INT(buf_printf(&b, "%s", ""), MP_OK);
	CHECK(buf_is(&b, "k=-420003.14", 12));
	buf_free(&b);
}

static void reset_empties_but_keeps_the_allocation(void)
{
	struct buf b;
	char *before;
	size_t cap;

	buf_init(&b, 100);
	CHECK_INT(buf_append(&b, "hello", 5), MP_OK);
	before = b.data;
	cap = b.cap;
	buf_reset(&b);
	CHECK_INT(b.len, 0);
	CHECK(b.data == before);
	CHECK_INT(b.cap, cap);
	CHECK_STR(b.data, "");
	CHECK_INT(buf_append(&b, "x", 1), MP_OK);
	CHECK(buf_is(&b, "x", 1));
	buf_free(&b);
	buf_reset(&b); /* on a freed buffer: no crash */
	CHECK_INT(b.len, 0);
}

static void take_passes_ownership_and_leaves_an_empty_reusable_buffer(void)
{
	struct buf b;
	size_t len = 0;
	char *s;

	buf_init(&b, 100);
	CHECK_INT(buf_append(&b, "abc", 3), MP_OK);
	s = buf_take(&b, &len);
	CHECK_STR(s, "abc");
	CHECK_INT(len, 3);
	CHECK(b.data == NULL);
	CHECK_INT(b.len, 0);
	CHECK_INT(b.cap, 0);
	CHECK_INT(b.max, 100);
	free(s);
	CHECK_INT(buf_append(&b, "de", 2), MP_OK);
	s = buf_take(&b, NULL);
	CHECK_STR(s, "de");
	free(s);
	buf_free(&b);
}

/* ---------- JSON strings ---------- */

static void json_str_escapes_quote_backslash_and_named_controls(void)
{
	struct buf b;
	const char in[] = "a\"b\\c\nd\re\tf\bg\fh/";
	const char want[] = "\"a\\\"b\\\\c\\nd\\re\\tf\\bg\\fh/\"";

	buf_init(&b, 1000);
	CHECK_INT(buf_json_str(&b, in, strlen(in)), MP_OK);
	CHECK(buf_is(&b, want, strlen(want)));
	buf_free(&b);
}

static void json_str_escapes_other_controls_as_lowercase_u00xx(void)
{
	struct buf b;
	const char in[] = { 0x00, 0x01, 0x0b, 0x1a, 0x1f, 0x20, 0x7f };
	const char want[] = "\"\\u0000\\u0001\\u000b\\u001a\\u001f \x7f\"";

	buf_init(&b, 1000);
	CHECK_INT(buf_json_str(&b, in, sizeof in), MP_OK);
	CHECK(buf_is(&b, want, strlen(want)));
	buf_free(&b);
}

static void json_str_passes_utf8_bytes_through_unchanged(void)
{
	struct buf b;
	const char in[] = "\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80"; /* é 日 😀 */
	const char want[] = "\"\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80\"";

	buf_init(&b, 1000);
	CHECK_INT(buf_json_str(&b, in, strlen(in)), MP_OK);
	CHECK(buf_is(&b, want, strlen(want)));
	buf_free(&b);
}

static void json_str_of_empty_string_is_two_quotes_and_appends(void)
{
	struct buf b;

	buf_init(&b, 1000);
	CHECK_INT(buf_append(&b, "x:", 2), MP_OK);
	CHECK_INT(buf_json_str(&b, "", 0), MP_OK);
	CHECK(buf_is(&b, "x:\"\"", 4));
	CHECK_INT(buf_json_str(&b, "ab", 1), MP_OK); /* only N bytes are read */
	CHECK(buf_is(&b, "x:\"\"\"a\"", 7));
	buf_free(&b);
}

static void json_str_output_parses_back_to_the_input(void)
{
	struct buf b;
	char in[256];
	size_t i;
	cJSON *v;

	for (i = 0; i < 255; i++)
		in[i] = (char)(i + 1 < 0x80 ? i + 1 : 'z'); /* every ASCII byte except NUL */
	in[255] = '\0';
	buf_init(&b, 10000);
	CHECK_INT(buf_json_str(&b, in, 255), MP_OK);
	v = cJSON_Parse(b.data);
	CHECK(cJSON_IsString(v));
	if (cJSON_IsString(v))
		CHECK(strcmp(v->valuestring, in) == 0);
	cJSON_Delete(v);
	buf_free(&b);
}

static void json_str_replaces_bytes_that_are_not_utf8_with_fffd(void)
{
	static const struct { const char *in, *want; } cases[] = {
		{ "a\xff" "b", "\"a\xef\xbf\xbd" "b\"" },
		{ "\xc0\xaf", "\"\xef\xbf\xbd\xef\xbf\xbd\"" },                     /* overlong '/' */
		{ "\xed\xa0\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"" },   /* surrogate */
		{ "x\xe2\x82", "\"x\xef\xbf\xbd\xef\xbf\xbd\"" },                   /* cut at the end */
		{ "\xf5\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\"" },
		{ "\xef\xbf\xbd", "\"\xef\xbf\xbd\"" },                              /* U+FFFD itself */
		{ "\xf4\x8f\xbf\xbf", "\"\xf4\x8f\xbf\xbf\"" },                      /* U+10FFFF */
	};
	struct buf b;
	size_t i;

	buf_init(&b, 1000);
	for (i = 0; i < sizeof cases / sizeof *cases; i++) {
		buf_reset(&b);
		CHECK_INT(buf_json_str(&b, cases[i].in, strlen(cases[i].in)), MP_OK);
		if (!buf_is(&b, cases[i].want, strlen(cases[i].want))) {
			fprintf(stderr, "  case %zu: got %zu bytes \"%s\"\n", i, b.len, b.data);
			tl_cur_failed = 1;
		}
	}
	buf_free(&b);
	/* the replacement counts towards the cap: 2 quotes + 3 bytes */
	buf_init(&b, 5);
	CHECK_INT(buf_json_str(&b, "\xff", 1), MP_OK);
	CHECK(buf_is(&b, "\"\xef\xbf\xbd\"", 5));
	buf_free(&b);
	buf_init(&b, 4);
	CHECK_INT(buf_json_str(&b, "\xff", 1), MP_E_TOOBIG);
	CHECK_INT(b.len, 0);
	buf_free(&b);
}

static void utf8_seq_gives_the_length_of_a_valid_sequence_or_0(void)
{
	static const struct { const char *s; size_t n, want; } cases[] = {
		{ "a", 1, 1 }, { "\x7f", 1, 1 },
		{ "\xc3\xa9", 2, 2 }, { "\xc3", 1, 0 }, { "\xc3" "a", 2, 0 }, { "\xc1\xbf", 2, 0 }, { "\xc2\x80", 2, 2 },
		{ "\xe2\x82\xac", 3, 3 }, { "\xe2\x82", 2, 0 }, { "\xe0\x80\x80", 3, 0 }, { "\xe0\xa0\x80", 3, 3 },
		{ "\xed\x9f\xbf", 3, 3 }, { "\xed\xa0\x80", 3, 0 }, { "\xef\xbf\xbf", 3, 3 },
		{ "\xf0\x9f\x98\x80", 4, 4 }, { "\xf0\x8f\xbf\xbf", 4, 0 }, { "\xf4\x8f\xbf\xbf", 4, 4 },
		{ "\xf4\x90\x80\x80", 4, 0 }, { "\xf0\x9f\x98", 3, 0 }, { "\xf5\x80\x80\x80", 4, 0 },
		{ "\x80", 1, 0 }, { "\xbf", 1, 0 }, { "\xfe", 1, 0 }, { "\xff", 1, 0 },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof *cases; i++) {
		size_t got = buf_utf8_seq((const unsigned char *)cases[i].s, cases[i].n);

		if (got != cases[i].want) {
			fprintf(stderr, "  buf_utf8_seq case %zu: %zu, want %zu\n", i, got, cases[i].want);
			tl_cur_failed = 1;
		}
	}
}

/* The contract: TOOBIG only "when the cap would be exceeded".  "abc" takes
 * 5 bytes quoted, so a buffer capped at 5 must take it. */
static void json_str_that_fits_exactly_under_the_cap_is_accepted(void)
{
	struct buf b;

	buf_init(&b, 5);
	CHECK_INT(buf_json_str(&b, "abc", 3), MP_OK);
	CHECK(buf_is(&b, "\"abc\"", 5));
	buf_free(&b);

	buf_init(&b, 100);
	CHECK_INT(buf_append(&b, "0123456789012345678901234567890123456789", 40), MP_OK);
	CHECK_INT(buf_append(&b, "0123456789012345678901234567890123456789", 40), MP_OK);
	/* 80 + 12 quoted bytes = 92 <= 100 */
	CHECK_INT(buf_json_str(&b, "0123456789", 10), MP_OK);
	CHECK_INT(b.len, 92);
	buf_free(&b);
}

/* ---------- JSON numbers ---------- */

static void json_num_check(double d, const char *want, int line)
{
	struct buf b;
	enum mp_err rc;

	buf_init(&b, 100);
	rc = buf_json_num(&b, d);
	if (rc != MP_OK || b.data == NULL || strcmp(b.data, want) != 0) {
		fprintf(stderr, "%s:%d: buf_json_num(%.17g) = rc %d \"%s\", want \"%s\"\n", __FILE__, line, d,
			(int)rc, b.data ? b.data : "(null)", want);
		tl_cur_failed = 1;
	}
	buf_free(&b);
}
#define JSON_NUM(d, want) json_num_check((d), (want), __LINE__)

static void json_num_prints_integers_without_fraction(void)
{
	JSON_NUM(0.0, "0");
	JSON_NUM(-0.0, "0");
	JSON_NUM(1.0, "1");
	JSON_NUM(-5.0, "-5");
	JSON_NUM(2147483647.0, "2147483647");
	JSON_NUM(2147483648.0, "2147483648");
	JSON_NUM(-2147483649.0, "-2147483649");
	JSON_NUM(1e14, "100000000000000");
	JSON_NUM(9007199254740991.0, "9007199254740991");
	JSON_NUM(-9007199254740991.0, "-9007199254740991");
	JSON_NUM(9007199254740992.0, "9007199254740992");
}

static void json_num_prints_fractions_with_15_then_17_digits(void)
{
	JSON_NUM(0.1, "0.1");
	JSON_NUM(1.5, "1.5");
	JSON_NUM(-2.5e-7, "-2.5e-07");
	JSON_NUM(3.14159, "3.14159");
	JSON_NUM(123456.789, "123456.789");
	JSON_NUM(1e-5, "1e-05");
	JSON_NUM(1e300, "1e+300");
	JSON_NUM(-1e300, "-1e+300");
	JSON_NUM(1e18, "1e+18");
	JSON_NUM(1.2345678901234568e+20, "1.2345678901234568e+20");
	/* 15 digits would read back as 0.3: the 17-digit form is used */
	JSON_NUM(0.1 + 0.2, "0.30000000000000004");
	JSON_NUM(5e-324, "4.94065645841247e-324"); /* any 15-digit form reads back exactly */
	JSON_NUM(1.7976931348623157e308, "1.7976931348623157e+308");
}

static void json_num_prints_nan_and_infinity_as_null(void)
{
	JSON_NUM(NAN, "null");
	JSON_NUM(INFINITY, "null");
	JSON_NUM(-INFINITY, "null");
}

static void json_num_output_parses_back_to_the_same_double(void)
{
	static const double v[] = {
		0.1, 0.2, 0.7, 1.0 / 3, 2.0 / 3, 1e-300, 4.35, 100.25, 1e21, 1e22, 123456789.123456789,
		-0.000123, 6.02214076e23, 2.2250738585072014e-308, 9007199254740993.0, 1e15, 1e17,
	};
	struct buf b;
	size_t i;
	uint64_t x = 88172645463325252ULL;

	buf_init(&b, 100);
	for (i = 0; i < sizeof v / sizeof *v + 2000; i++) {
		double d, back;
		cJSON *p;

		if (i < sizeof v / sizeof *v) {
			d = v[i];
		} else {
			x ^= x << 13; x ^= x >> 7; x ^= x << 17;
			memcpy(&d, &x, sizeof d);
			if (!isfinite(d))
				continue;
		}
		buf_reset(&b);
		CHECK_INT(buf_json_num(&b, d), MP_OK);
		p = cJSON_Parse(b.data);
		back = cJSON_IsNumber(p) ? p->valuedouble : NAN;
		if (!(back == d)) {
			fprintf(stderr, "  %.17g printed as %s reads back as %.17g\n", d, b.data, back);
			tl_cur_failed = 1;
		}
		cJSON_Delete(p);
	}
	buf_free(&b);
}

/* ---------- varints ---------- */

static void varint_check(uint64_t v, const unsigned char *want, size_t n, int line)
{
	struct buf b;
	uint64_t back = 0;
	const unsigned char *p, *end;

	buf_init(&b, 100);
	if (buf_varint(&b, v) != MP_OK || !buf_is(&b, want, n)) {
		fprintf(stderr, "%s:%d: buf_varint(%llu) wrong bytes (%zu long)\n", __FILE__, line,
			(unsigned long long)v, b.len);
		tl_cur_failed = 1;
	}
	end = (const unsigned char *)b.data + b.len;
	p = pc_varint((const unsigned char *)b.data, end, &back);
	if (p != end || back != v) {
		fprintf(stderr, "%s:%d: pc_varint does not read back %llu\n", __FILE__, line, (unsigned long long)v);
		tl_cur_failed = 1;
	}
	buf_free(&b);
}
#define VARINT(v, ...) do { static const unsigned char w_[] = { __VA_ARGS__ }; \
	varint_check((v), w_, sizeof w_, __LINE__); } while (0)

static void varint_encodes_unsigned_leb128_byte_exact(void)
{
	VARINT(0, 0x00);
	VARINT(1, 0x01);
	VARINT(127, 0x7f);
	VARINT(128, 0x80, 0x01);
	VARINT(300, 0xac, 0x02);
	VARINT(16383, 0xff, 0x7f);
	VARINT(16384, 0x80, 0x80, 0x01);
	VARINT(624485, 0xe5, 0x8e, 0x26);
	VARINT(UINT64_C(4294967296), 0x80, 0x80, 0x80, 0x80, 0x10);
	VARINT(UINT64_C(0x7fffffffffffffff), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f);
	VARINT(UINT64_MAX, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01);
}

static void varint_appends_after_existing_content(void)
{
	struct buf b;

	buf_init(&b, 100);
	CHECK_INT(buf_putc(&b, 'A'), MP_OK);
	CHECK_INT(buf_varint(&b, 300), MP_OK);
	CHECK_INT(buf_putc(&b, 'B'), MP_OK);
	CHECK(buf_is(&b, "A\xac\x02" "B", 4));
	buf_free(&b);
}

static void varint_that_does_not_fit_is_toobig_and_keeps_content(void)
{
	struct buf b;

	buf_init(&b, 3);
	CHECK_INT(buf_putc(&b, 'A'), MP_OK);
	CHECK_INT(buf_varint(&b, 16384), MP_E_TOOBIG); /* 3 bytes, only 2 left */
	CHECK(buf_is(&b, "A", 1));
	CHECK_INT(buf_varint(&b, 16383), MP_OK);       /* 2 bytes fit exactly */
	CHECK(buf_is(&b, "A\xff\x7f", 3));
	buf_free(&b);
}

static void pc_varint_rejects_truncated_and_overlong_input(void)
{
	static const unsigned char trunc[] = { 0x80, 0x80 };
	static const unsigned char eleven[] = { 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01 };
	uint64_t v = 7;

	CHECK(pc_varint(trunc, trunc + sizeof trunc, &v) == NULL);
	CHECK(pc_varint(trunc, trunc, &v) == NULL);
	CHECK(pc_varint(eleven, eleven + sizeof eleven, &v) == NULL);
	CHECK_INT(v, 7);
}

int main(void)
{
	TEST_RUN(take_on_fresh_buffer_returns_empty_string);
	TEST_RUN(append_keeps_bytes_and_nul_terminator_while_growing);
	TEST_RUN(append_of_zero_bytes_gives_empty_terminated_string);
	TEST_RUN(append_up_to_the_cap_succeeds_and_one_more_byte_is_toobig);
	TEST_RUN(append_over_the_cap_is_toobig_and_keeps_previous_content);
	TEST_RUN(putc_fills_across_growth_and_stops_at_the_cap);
	TEST_RUN(printf_formats_and_fills_exactly_to_the_cap);
	TEST_RUN(reset_empties_but_keeps_the_allocation);
	TEST_RUN(take_passes_ownership_and_leaves_an_empty_reusable_buffer);
	TEST_RUN(json_str_escapes_quote_backslash_and_named_controls);
	TEST_RUN(json_str_escapes_other_controls_as_lowercase_u00xx);
	TEST_RUN(json_str_passes_utf8_bytes_through_unchanged);
	TEST_RUN(json_str_of_empty_string_is_two_quotes_and_appends);
	TEST_RUN(json_str_output_parses_back_to_the_input);
	TEST_RUN(json_str_replaces_bytes_that_are_not_utf8_with_fffd);
	TEST_RUN(utf8_seq_gives_the_length_of_a_valid_sequence_or_0);
	TEST_RUN(json_str_that_fits_exactly_under_the_cap_is_accepted);
	TEST_RUN(json_num_prints_integers_without_fraction);
	TEST_RUN(json_num_prints_fractions_with_15_then_17_digits);
	TEST_RUN(json_num_prints_nan_and_infinity_as_null);
	TEST_RUN(json_num_output_parses_back_to_the_same_double);
	TEST_RUN(varint_encodes_unsigned_leb128_byte_exact);
	TEST_RUN(varint_appends_after_existing_content);
	TEST_RUN(varint_that_does_not_fit_is_toobig_and_keeps_content);
	TEST_RUN(pc_varint_rejects_truncated_and_overlong_input);
	return TEST_DONE();
}
