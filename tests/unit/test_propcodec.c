/*
 * test_propcodec.c - unit tests for src/propcodec.c (format and contract:
 * include/propcodec.h).
 *
 * A tiny in-memory dictionary stands in for the shard's dict table (ids are
 * dense from 1 in interning order, so expected bytes can be written by
 * hand).  Round trips go pc_encode -> pc_to_json -> cJSON_Parse and are
 * compared with cJSON_Compare and with an ordered, exact comparison (the
 * codec keeps member order and every double bit-for-bit, except the sign
 * of zero, which JSON printing drops).  Corrupt blobs must give MP_E_STORE
 * from pc_to_json and -1 from pc_find, never a crash (run under ASan).
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

/* ---------- in-memory dictionary ---------- */

struct dict {
	char *s[512];
	size_t len[512];
	size_t n;
	int fail_at;     /* intern call number (1-based) that fails, 0 = never */
	int calls;
};

static int64_t dict_intern(void *ctx, const char *s, size_t n, int optional)
{
	struct dict *d = ctx;
	size_t i;

	(void)optional; /* this dictionary never declines a string */
	if (d->fail_at && ++d->calls == d->fail_at)
		return -(int64_t)MP_E_NOMEM;
	for (i = 0; i < d->n; i++)
		if (d->len[i] == n && memcmp(d->s[i], s, n) == 0)
			return (int64_t)i + 1;
	if (d->n == sizeof d->s / sizeof *d->s || !(d->s[d->n] = malloc(n + 1)))
		return -(int64_t)MP_E_NOMEM;
	memcpy(d->s[d->n], s, n);
	d->s[d->n][n] = '\0';
	d->len[d->n] = n;
	return (int64_t)++d->n;
}

static const char *dict_lookup(void *ctx, int64_t id, size_t *len)
{
	struct dict *d = ctx;

	if (id < 1 || (uint64_t)id > d->n)
		return NULL;
	*len = d->len[id - 1];
	return d->s[id - 1];
}

static void dict_free(struct dict *d)
{
	size_t i;

	for (i = 0; i < d->n; i++)
		free(d->s[i]);
	memset(d, 0, sizeof *d);
}

/* Ordered, exact equality: member order, key bytes, string bytes and
 * number values (==) must all match. */
static int same_exact(const cJSON *a, const cJSON *b)
{
	const cJSON *x, *y;

	if (!a || !b || (a->type & 0xff) != (b->type & 0xff))
		return 0;
	if (cJSON_IsNumber(a))
		return a->valuedouble == b->valuedouble;
	if (cJSON_IsString(a))
		return strcmp(a->valuestring, b->valuestring) == 0;
	if (!cJSON_IsArray(a) && !cJSON_IsObject(a))
		return 1;
	for (x = a->child, y = b->child; x && y; x = x->next, y = y->next) {
		if (cJSON_IsObject(a) && strcmp(x->string, y->string) != 0)
			return 0;
		if (!same_exact(x, y))
			return 0;
	}
	return x == NULL && y == NULL;
}

/* Decode BLOB with D into a parsed JSON object; NULL (and *RC) on error. */
static cJSON *decode(const unsigned char *p, size_t n, struct dict *d, enum mp_err *rc)
{
	struct buf out;
	int first = 1;
	cJSON *v = NULL;

	buf_init(&out, 1 << 24);
	*rc = buf_putc(&out, '{');
	if (*rc == MP_OK)
		*rc = pc_to_json(p, n, dict_lookup, d, &out, &first);
	if (*rc == MP_OK && (*rc = buf_putc(&out, '}')) == MP_OK) {
		v = cJSON_Parse(out.data);
		if (!v)
			fprintf(stderr, "  decoded JSON does not parse: %s\n", out.data);
	}
	buf_free(&out);
	return v;
}

/* Encode PROPS (skip list, inline key), decode, compare with WANT (PROPS
 * itself when NULL).  Reports at the caller's line. */
/* cJSON_Compare visits nested objects twice per level (2^depth calls), so
 * deep values are compared with same_exact alone (NO_CJSON_COMPARE). */
static int no_cjson_compare;

static void round_trip_at(const cJSON *props, const char *const *skip, const char *inline_key,
			  const cJSON *want, int line)
{
	struct dict d;
	struct buf enc;
	enum mp_err rc;
	cJSON *got = NULL;

	memset(&d, 0, sizeof d);
	buf_init(&enc, 1 << 24);
	rc = pc_encode(props, skip, inline_key, dict_intern, &d, &enc);
	if (rc == MP_OK)
		got = decode((const unsigned char *)enc.data, enc.len, &d, &rc);
	if (!want)
		want = props;
	if (rc != MP_OK || !got || (!no_cjson_compare && !cJSON_Compare(got, want, 1)) || !same_exact(got, want)) {
		char *a = got ? cJSON_PrintUnformatted(got) : NULL, *b = cJSON_PrintUnformatted(want);

		fprintf(stderr, "%s:%d: round trip failed (rc %d)\n  got:  %s\n  want: %s\n", __FILE__, line,
			(int)rc, a ? a : "(none)", b ? b : "?");
		free(a);
		free(b);
		tl_cur_failed = 1;
	}
	cJSON_Delete(got);
	buf_free(&enc);
	dict_free(&d);
}
#define ROUND_TRIP(props) round_trip_at((props), NULL, NULL, NULL, __LINE__)

/* Encode the JSON in SQ with a fresh dict and compare with the bytes. */
static void encodes_to_at(const char *sq, const char *inline_key, const unsigned char *want, size_t n,
			  size_t dict_n, int line)
{
	struct dict d;
	struct buf enc;
	cJSON *props = J(sq);
	enum mp_err rc;
	size_t i;

	memset(&d, 0, sizeof d);
	buf_init(&enc, 1 << 20);
	rc = pc_encode(props, NULL, inline_key, dict_intern, &d, &enc);
	if (rc != MP_OK || enc.len != n || memcmp(enc.data, want, n) != 0 || d.n != dict_n) {
		fprintf(stderr, "%s:%d: encoding of %s: rc %d, dict %zu (want %zu), bytes:", __FILE__, line, sq,
			(int)rc, d.n, dict_n);
		for (i = 0; i < enc.len; i++)
			fprintf(stderr, " %02x", (unsigned char)enc.data[i]);
		fprintf(stderr, "\n");
		tl_cur_failed = 1;
	}
	cJSON_Delete(props);
	buf_free(&enc);
	dict_free(&d);
}
#define ENCODES_TO(sq, inl, ndict, ...) do { static const unsigned char w_[] = { __VA_ARGS__ }; \
	encodes_to_at((sq), (inl), w_, sizeof w_, (ndict), __LINE__); } while (0)

/* ---------- byte-exact encoding ---------- */

static void encodes_null_false_true_as_bare_tags(void)
{
	ENCODES_TO("{'n':null,'f':false,'t':true}", NULL, 3,
		   0x01, 0x01, 0x00, 0x02, 0x01, 0x03, 0x02);
}

static void encodes_integers_as_zigzag_varints(void)
{
	ENCODES_TO("{'i':5,'m':-1,'z':0,'b':300}", NULL, 4,
		   0x01, 0x01, 0x03, 0x0a, 0x02, 0x03, 0x01, 0x03, 0x03, 0x00, 0x04, 0x03, 0xd8, 0x04);
	/* 2^53-1 -> zigzag 2^54-2; -(2^53-1) -> 2^54-3 */
	ENCODES_TO("{'p':9007199254740991,'q':-9007199254740991}", NULL, 2,
		   0x01, 0x01, 0x03, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f,
		   0x02, 0x03, 0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f);
}

static void encodes_fractions_and_2p53_as_little_endian_doubles(void)
{
	ENCODES_TO("{'d':0.1}", NULL, 1, 0x01, 0x01, 0x04, 0x9a, 0x99, 0x99, 0x99, 0x99, 0x99, 0xb9, 0x3f);
	ENCODES_TO("{'d':1.5}", NULL, 1, 0x01, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf8, 0x3f);
	ENCODES_TO("{'d':9007199254740992}", NULL, 1,
		   0x01, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x43);
}

static void encodes_short_top_level_strings_through_the_dict(void)
{
	ENCODES_TO("{'s':'hi','t':'hi'}", NULL, 3, 0x01, 0x01, 0x05, 0x02, 0x03, 0x05, 0x02);
	ENCODES_TO("{'s':''}", NULL, 2, 0x01, 0x01, 0x05, 0x02);
}

static void encodes_strings_over_64_bytes_inline(void)
{
	char sq[200];
	struct dict d;
	struct buf enc;
	cJSON *props;

	/* 64 bytes: dict; 65 bytes: inline with varint length 65 */
	snprintf(sq, sizeof sq, "{'a':'%064d','b':'%065d'}", 0, 0);
	props = J(sq);
	memset(&d, 0, sizeof d);
	buf_init(&enc, 1000);
	CHECK_INT(pc_encode(props, NULL, NULL, dict_intern, &d, &enc), MP_OK);
	CHECK_INT(enc.len, 1 + 3 + 3 + 65);
	CHECK_INT((unsigned char)enc.data[2], PC_DICTSTR);
	CHECK_INT((unsigned char)enc.data[5], PC_STR);
	CHECK_INT((unsigned char)enc.data[6], 65);
	CHECK_INT(d.n, 3); /* a, the 64-byte value, b */
	cJSON_Delete(props);
	buf_free(&enc);
	dict_free(&d);
}

static void encodes_inline_key_as_str_without_interning_its_value(void)
{
	ENCODES_TO("{'$insert_id':'hi','x':'hi'}", "$insert_id", 3,
		   0x01, 0x01, 0x06, 0x02, 'h', 'i', 0x02, 0x05, 0x03);
	/* a non-string value under the inline key is encoded normally */
	ENCODES_TO("{'$insert_id':7}", "$insert_id", 1, 0x01, 0x01, 0x03, 0x0e);
}

static void encodes_nested_strings_inline_and_containers_with_counts(void)
{
	ENCODES_TO("{'l':['a',1]}", NULL, 1, 0x01, 0x01, 0x07, 0x02, 0x06, 0x01, 'a', 0x03, 0x02);
	ENCODES_TO("{'o':{'x':true,'':'v'}}", NULL, 1,
		   0x01, 0x01, 0x08, 0x02, 0x01, 'x', 0x02, 0x00, 0x06, 0x01, 'v');
	ENCODES_TO("{'e':[],'f':{}}", NULL, 2, 0x01, 0x01, 0x07, 0x00, 0x02, 0x08, 0x00);
}

static void encodes_empty_or_null_props_as_the_version_byte(void)
{
	struct dict d;
	struct buf enc;
	cJSON *empty = cJSON_CreateObject();

	memset(&d, 0, sizeof d);
	buf_init(&enc, 100);
	CHECK_INT(pc_encode(empty, NULL, NULL, dict_intern, &d, &enc), MP_OK);
	CHECK(enc.len == 1 && enc.data[0] == PC_VERSION);
	buf_reset(&enc);
	CHECK_INT(pc_encode(NULL, NULL, NULL, dict_intern, &d, &enc), MP_OK);
	CHECK(enc.len == 1 && enc.data[0] == PC_VERSION);
	CHECK_INT(d.n, 0);
	cJSON_Delete(empty);
	buf_free(&enc);
}

/* ---------- round trips ---------- */

static void round_trips_null_bools_and_integers(void)
{
	cJSON *p = J("{'n':null,'t':true,'f':false,'z':0,'one':1,'neg':-1,'big':9007199254740991,"
		     "'nbig':-9007199254740991,'m':-123456789,'i32':2147483648}");

	ROUND_TRIP(p);
	cJSON_Delete(p);
}

static void round_trips_doubles_exactly(void)
{
	cJSON *p = cJSON_CreateObject();

	cJSON_AddNumberToObject(p, "tenth", 0.1);
	cJSON_AddNumberToObject(p, "huge", 1e300);
	cJSON_AddNumberToObject(p, "tiny", -1e-300);
	cJSON_AddNumberToObject(p, "third", 1.0 / 3);
	cJSON_AddNumberToObject(p, "sum", 0.1 + 0.2);
	cJSON_AddNumberToObject(p, "two53", 9007199254740992.0);
	cJSON_AddNumberToObject(p, "beyond", 9007199254740993.0 * 4);
	cJSON_AddNumberToObject(p, "nhalf", -0.5);
	cJSON_AddNumberToObject(p, "denorm", 5e-324);
	cJSON_AddNumberToObject(p, "max", 1.7976931348623157e308);
	ROUND_TRIP(p);
	cJSON_Delete(p);
}

static void round_trips_negative_zero_as_zero(void)
{
	cJSON *p = cJSON_CreateObject(), *want = J("{'nz':0}");

	cJSON_AddNumberToObject(p, "nz", -0.0);
	round_trip_at(p, NULL, NULL, want, __LINE__);
	cJSON_Delete(p);
	cJSON_Delete(want);
}

static void round_trips_strings_empty_long_quoted_control_and_unicode(void)
{
	cJSON *p = cJSON_CreateObject();
	char longs[5001], ctl[40];
	size_t i;

	memset(longs, 'x', 5000);
	longs[5000] = '\0';
	for (i = 0; i < 31; i++)
		ctl[i] = (char)(i + 1);
	ctl[31] = '\0';
	cJSON_AddStringToObject(p, "empty", "");
	cJSON_AddStringToObject(p, "long", longs);
	cJSON_AddStringToObject(p, "quotes", "say \"hi\" \\o/ 'x'");
	cJSON_AddStringToObject(p, "ctl", ctl);
	cJSON_AddStringToObject(p, "utf8", "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80");
	cJSON_AddStringToObject(p, "k\"e\\y\n\xc3\xa9", "key with escapes");
	cJSON_AddStringToObject(p, "", "empty key");
	ROUND_TRIP(p);
	cJSON_Delete(p);
}

static void round_trips_arrays_and_nested_objects(void)
{
	cJSON *p = J("{'list':[1,'a',[true,null,[]],{'x':{'y':[0.5,'deep',{}]}}],"
		     "'obj':{'a':1,'b':{'c':'d','e':[false]},'f':'long string inside an object that is not interned'},"
		     "'empty_list':[],'empty_obj':{},'list_of_objects':[{'k':1},{'k':2}]}");

	ROUND_TRIP(p);
	cJSON_Delete(p);
}

/* DEPTH nested arrays, the innermost empty: [[[...]]] */
static cJSON *nested_arrays(int depth)
{
	cJSON *v = cJSON_CreateArray();
	int i;

	for (i = 1; i < depth; i++) {
		cJSON *outer = cJSON_CreateArray();

		cJSON_AddItemToArray(outer, v);
		v = outer;
	}
	return v;
}

static cJSON *nested_objects(int depth)
{
	cJSON *v = cJSON_CreateObject();
	int i;

	for (i = 1; i < depth; i++) {
		cJSON *outer = cJSON_CreateObject();

		cJSON_AddItemToObject(outer, "k", v);
		v = outer;
	}
	return v;
}

static void round_trips_33_levels_and_rejects_34_as_invalid(void)
{
	struct dict d;
	struct buf enc;
	cJSON *p;
	int k;

	for (k = 0; k < 2; k++) {
		p = cJSON_CreateObject();
		cJSON_AddItemToObject(p, "v", k ? nested_objects(33) : nested_arrays(33));
		no_cjson_compare = 1;
		ROUND_TRIP(p);
		no_cjson_compare = 0;
		cJSON_Delete(p);

		p = cJSON_CreateObject();
		cJSON_AddItemToObject(p, "v", k ? nested_objects(34) : nested_arrays(34));
		memset(&d, 0, sizeof d);
		buf_init(&enc, 1 << 20);
		CHECK_INT(pc_encode(p, NULL, NULL, dict_intern, &d, &enc), MP_E_INVALID);
		cJSON_Delete(p);
		buf_free(&enc);
		dict_free(&d);
	}
}

static void skip_list_leaves_keys_out_and_does_not_intern_them(void)
{
	static const char *const skip[] = { "token", "time", "distinct_id", NULL };
	cJSON *p = J("{'token':'abc','a':1,'time':1710496800,'distinct_id':'u1','b':'x'}");
	cJSON *want = J("{'a':1,'b':'x'}");
	struct dict d;
	struct buf enc;
	size_t i;

	round_trip_at(p, skip, NULL, want, __LINE__);
	memset(&d, 0, sizeof d);
	buf_init(&enc, 1000);
	CHECK_INT(pc_encode(p, skip, NULL, dict_intern, &d, &enc), MP_OK);
	CHECK_INT(d.n, 3); /* a, b, x */
	for (i = 0; i < d.n; i++)
		CHECK(strcmp(d.s[i], "token") != 0 && strcmp(d.s[i], "abc") != 0 && strcmp(d.s[i], "u1") != 0);
	cJSON_Delete(p);
	cJSON_Delete(want);
	buf_free(&enc);
	dict_free(&d);
}

static void inline_key_round_trips_like_any_other_string(void)
{
	cJSON *p = J("{'$insert_id':'abc-123','x':'abc-123'}");

	round_trip_at(p, NULL, "$insert_id", NULL, __LINE__);
	cJSON_Delete(p);
}

/* ---------- pc_to_json details ---------- */

static void to_json_writes_members_with_commas_driven_by_first(void)
{
	struct dict d;
	struct buf enc, out;
	cJSON *p = J("{'a':1,'b':'x','c':[true,null]}");
	int first = 1;

	memset(&d, 0, sizeof d);
	buf_init(&enc, 1000);
	buf_init(&out, 1000);
	CHECK_INT(pc_encode(p, NULL, NULL, dict_intern, &d, &enc), MP_OK);
	CHECK_INT(pc_to_json((unsigned char *)enc.data, enc.len, dict_lookup, &d, &out, &first), MP_OK);
	CHECK_STR(out.data, "\"a\":1,\"b\":\"x\",\"c\":[true,null]");
	CHECK_INT(first, 0);
	buf_reset(&out);
	CHECK_INT(buf_append(&out, "\"pre\":0", 7), MP_OK);
	CHECK_INT(pc_to_json((unsigned char *)enc.data, enc.len, dict_lookup, &d, &out, &first), MP_OK);
	CHECK_STR(out.data, "\"pre\":0,\"a\":1,\"b\":\"x\",\"c\":[true,null]");
	cJSON_Delete(p);
	buf_free(&enc);
	buf_free(&out);
	dict_free(&d);
}

static void to_json_of_empty_record_appends_nothing_and_keeps_first(void)
{
	static const unsigned char blob[] = { PC_VERSION };
	struct dict d;
	struct buf out;
	int first = 1;

	memset(&d, 0, sizeof d);
	buf_init(&out, 100);
	CHECK_INT(pc_to_json(blob, 1, dict_lookup, &d, &out, &first), MP_OK);
	CHECK_INT(out.len, 0);
	CHECK_INT(first, 1);
	buf_free(&out);
}

static void to_json_into_a_full_buffer_returns_toobig(void)
{
	struct dict d;
	struct buf enc, out;
	cJSON *p = J("{'a':'a value that is longer than the output cap'}");
	int first = 1;

	memset(&d, 0, sizeof d);
	buf_init(&enc, 1000);
	buf_init(&out, 16);
	CHECK_INT(pc_encode(p, NULL, NULL, dict_intern, &d, &enc), MP_OK);
	CHECK_INT(pc_to_json((unsigned char *)enc.data, enc.len, dict_lookup, &d, &out, &first), MP_E_TOOBIG);
	cJSON_Delete(p);
	buf_free(&enc);
	buf_free(&out);
	dict_free(&d);
}

static void encode_returns_the_intern_error(void)
{
	struct dict d;
	struct buf enc;
	cJSON *p = J("{'a':'x','b':1}");
	int at;

	/* interning calls: key a, value x, key b */
	for (at = 1; at <= 3; at++) {
		memset(&d, 0, sizeof d);
		d.fail_at = at;
		buf_init(&enc, 1000);
		CHECK_INT(pc_encode(p, NULL, NULL, dict_intern, &d, &enc), MP_E_NOMEM);
		buf_free(&enc);
		dict_free(&d);
	}
	cJSON_Delete(p);
}

/* ---------- pc_find ---------- */

static void find_locates_values_by_key_id(void)
{
	struct dict d;
	struct buf enc;
	cJSON *p = J("{'a':1,'b':'hello','c':[1,2]}");
	const unsigned char *blob, *v = NULL, *ve = NULL;

	/* ids: a=1 b=2 hello=3 c=4 */
	memset(&d, 0, sizeof d);
	buf_init(&enc, 1000);
	CHECK_INT(pc_encode(p, NULL, NULL, dict_intern, &d, &enc), MP_OK);
	blob = (const unsigned char *)enc.data;
	CHECK_INT(pc_find(blob, enc.len, 1, &v, &ve), 1);
	CHECK(v == blob + 2 && ve == blob + 4 && v[0] == PC_INT && v[1] == 2);
	CHECK_INT(pc_find(blob, enc.len, 2, &v, &ve), 1);
	CHECK(v == blob + 5 && ve == blob + 7 && v[0] == PC_DICTSTR && v[1] == 3);
	CHECK_INT(pc_find(blob, enc.len, 4, &v, &ve), 1);
	CHECK(v == blob + 8 && ve == blob + enc.len && v[0] == PC_ARRAY);
	CHECK_INT(pc_find(blob, enc.len, 3, &v, &ve), 0);  /* a value id, not a key */
	CHECK_INT(pc_find(blob, enc.len, 99, &v, &ve), 0);
	CHECK_INT(pc_find(blob, 1, 1, &v, &ve), 0);        /* version byte only */
	CHECK_INT(pc_find(blob, 0, 1, &v, &ve), -1);
	cJSON_Delete(p);
	buf_free(&enc);
	dict_free(&d);
}

/* ---------- corrupt blobs ---------- */

static void corrupt_check(const unsigned char *blob, size_t n, int line)
{
	struct dict d;
	struct buf out;
	int first = 1, f;
	enum mp_err rc;
	const unsigned char *v, *ve;

	memset(&d, 0, sizeof d);
	dict_intern(&d, "k", 1, 0); /* id 1 exists */
	buf_init(&out, 1 << 20);
	rc = pc_to_json(blob, n, dict_lookup, &d, &out, &first);
	f = pc_find(blob, n, 1000, &v, &ve);
	if (rc != MP_E_STORE) {
		fprintf(stderr, "%s:%d: pc_to_json on a corrupt blob returned %d, want MP_E_STORE\n", __FILE__, line, (int)rc);
		tl_cur_failed = 1;
	}
	/* an absent key forces a walk over every entry */
	if (f != -1) {
		fprintf(stderr, "%s:%d: pc_find on a corrupt blob returned %d, want -1\n", __FILE__, line, f);
		tl_cur_failed = 1;
	}
	buf_free(&out);
	dict_free(&d);
}
#define CORRUPT(...) do { static const unsigned char b_[] = { __VA_ARGS__ }; \
	corrupt_check(b_, sizeof b_, __LINE__); } while (0)

static void corrupt_blobs_return_store_error(void)
{
	corrupt_check((const unsigned char *)"", 0, __LINE__);   /* no version byte */
	CORRUPT(0x02);                                         /* unknown version */
	CORRUPT(0x00, 0x01, 0x00);
	CORRUPT(0x01, 0x01, 0x09);                             /* unknown tag */
	CORRUPT(0x01, 0x01, 0xff);
	CORRUPT(0x01, 0x01);                                   /* key without value */
	CORRUPT(0x01, 0x81);                                   /* key varint cut */
	CORRUPT(0x01, 0x01, 0x03, 0x80);                       /* int varint cut */
	CORRUPT(0x01, 0x01, 0x03, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00);
	CORRUPT(0x01, 0x01, 0x04, 1, 2, 3, 4, 5, 6, 7);        /* double with 7 bytes */
	CORRUPT(0x01, 0x01, 0x06, 0x05, 'a', 'b');             /* str past the end */
	CORRUPT(0x01, 0x01, 0x06, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 'a');
	CORRUPT(0x01, 0x01, 0x07, 0x03, 0x00, 0x00);           /* array of 3, 2 items */
	CORRUPT(0x01, 0x01, 0x07, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00);
	CORRUPT(0x01, 0x01, 0x08, 0x01, 0x05, 'a');            /* object key past the end */
	CORRUPT(0x01, 0x01, 0x08, 0x01, 0x01, 'a');            /* object key without value */
	CORRUPT(0x01, 0x01, 0x08, 0x02, 0x01, 'a', 0x00);      /* 2 members, 1 present */
	CORRUPT(0x01, 0x01, 0x00, 0x01, 0x0a);                 /* second entry bad tag */
}

static void unknown_dict_ids_are_store_errors_for_to_json(void)
{
	static const unsigned char unknown_key[] = { 0x01, 0x05, 0x00 };
	static const unsigned char unknown_val[] = { 0x01, 0x01, 0x05, 0x63 };
	static const unsigned char zero_key[] = { 0x01, 0x00, 0x00 };
	static const unsigned char huge_val[] = { 0x01, 0x01, 0x05, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 };
	struct dict d;
	struct buf out;
	int first = 1;
	const unsigned char *v, *ve;

	memset(&d, 0, sizeof d);
	dict_intern(&d, "k", 1, 0);
	buf_init(&out, 1000);
	CHECK_INT(pc_to_json(unknown_key, sizeof unknown_key, dict_lookup, &d, &out, &first), MP_E_STORE);
	CHECK_INT(pc_to_json(unknown_val, sizeof unknown_val, dict_lookup, &d, &out, &first), MP_E_STORE);
	CHECK_INT(pc_to_json(zero_key, sizeof zero_key, dict_lookup, &d, &out, &first), MP_E_STORE);
	CHECK_INT(pc_to_json(huge_val, sizeof huge_val, dict_lookup, &d, &out, &first), MP_E_STORE);
	/* pc_find does not resolve ids: these blobs are structurally fine */
	CHECK_INT(pc_find(unknown_val, sizeof unknown_val, 1, &v, &ve), 1);
	CHECK(v == unknown_val + 2 && ve == unknown_val + 4);
	CHECK_INT(pc_find(huge_val, sizeof huge_val, 1, &v, &ve), 1);
	buf_free(&out);
	dict_free(&d);
}

static void decoder_accepts_32_nested_levels_and_rejects_33(void)
{
	unsigned char blob[2 + 2 * 40 + 1];
	size_t n;
	int levels;
	struct dict d;
	struct buf out;
	int first;

	memset(&d, 0, sizeof d);
	dict_intern(&d, "k", 1, 0);
	buf_init(&out, 1000);
	for (levels = 31; levels <= 40; levels++) {
		int i;
		enum mp_err rc;

		n = 0;
		blob[n++] = PC_VERSION;
		blob[n++] = 0x01;
		for (i = 0; i < levels; i++) {
			blob[n++] = PC_ARRAY;
			blob[n++] = 0x01;
		}
		blob[n++] = PC_NULL;   /* at depth LEVELS */
		first = 1;
		buf_reset(&out);
		rc = pc_to_json(blob, n, dict_lookup, &d, &out, &first);
		CHECK_INT(rc, levels <= 32 ? MP_OK : MP_E_STORE);
		{
			const unsigned char *v, *ve;

			CHECK_INT(pc_find(blob, n, 1, &v, &ve), levels <= 32 ? 1 : -1);
		}
	}
	buf_free(&out);
	dict_free(&d);
}

/* Cut a valid record at every byte: a cut at an entry boundary is a valid
 * shorter record; any other cut is MP_E_STORE / -1. */
static void truncation_at_every_byte_is_detected(void)
{
	cJSON *full = J("{'n':null,'t':true,'i':-300,'d':0.25,'s':'short','l':'"
			"a string that is longer than sixty-four bytes, so it is stored inline',"
			"'arr':[1,'two',[3],{'four':4}],'obj':{'x':{'y':'z'},'e':[]},'last':false}");
	size_t bound[32], nb = 0, cut, k, total;
	struct dict d;
	struct buf enc;
	int nmembers = cJSON_GetArraySize(full);

	/* boundaries: the encoding of the first K members is a prefix */
	for (k = 0; k <= (size_t)nmembers; k++) {
		cJSON *part = cJSON_Duplicate(full, 1);

		while (cJSON_GetArraySize(part) > (int)k)
			cJSON_DeleteItemFromArray(part, cJSON_GetArraySize(part) - 1);
		memset(&d, 0, sizeof d);
		buf_init(&enc, 1 << 16);
		CHECK_INT(pc_encode(part, NULL, NULL, dict_intern, &d, &enc), MP_OK);
		bound[nb++] = enc.len;
		buf_free(&enc);
		dict_free(&d);
		cJSON_Delete(part);
	}
	memset(&d, 0, sizeof d);
	buf_init(&enc, 1 << 16);
	CHECK_INT(pc_encode(full, NULL, NULL, dict_intern, &d, &enc), MP_OK);
	total = enc.len;
	CHECK_INT(bound[nb - 1], total);
	for (cut = 0; cut <= total; cut++) {
		const unsigned char *blob = (const unsigned char *)enc.data, *v, *ve;
		unsigned char *copy = malloc(cut ? cut : 1); /* exact size: ASan sees overreads */
		struct buf out;
		int first = 1, is_bound = 0, f, want_find;
		enum mp_err rc;
		size_t j;

		memcpy(copy, blob, cut);
		for (j = 0; j < nb; j++)
			if (bound[j] == cut)
				is_bound = 1;
		buf_init(&out, 1 << 16);
		rc = pc_to_json(copy, cut, dict_lookup, &d, &out, &first);
		if (rc != (is_bound ? MP_OK : MP_E_STORE)) {
			fprintf(stderr, "  cut at %zu of %zu: pc_to_json rc %d\n", cut, total, (int)rc);
			tl_cur_failed = 1;
		}
		/* the last interned string is the key 'last', found only in the
		 * full record; a shorter valid prefix says absent */
		f = pc_find(copy, cut, (int64_t)d.n, &v, &ve);
		want_find = cut == total ? 1 : is_bound ? 0 : -1;
		if (f != want_find) {
			fprintf(stderr, "  cut at %zu of %zu: pc_find %d, want %d\n", cut, total, f, want_find);
			tl_cur_failed = 1;
		}
		buf_free(&out);
		free(copy);
	}
	CHECK_STR(d.s[d.n - 1], "last");
	cJSON_Delete(full);
	buf_free(&enc);
	dict_free(&d);
}

static void random_garbage_never_crashes_and_valid_output_parses(void)
{
	uint64_t x = 0x9E3779B97F4A7C15ULL;
	struct dict d;
	int i, n_ok = 0, n_bad = 0;

	memset(&d, 0, sizeof d);
	for (i = 0; i < 40; i++) {
		char s[16];

		snprintf(s, sizeof s, "s%d", i);
		dict_intern(&d, s, strlen(s), 0);
	}
	for (i = 0; i < 50000; i++) {
		size_t n, j;
		unsigned char *blob;
		struct buf out;
		int first = 1, f;
		enum mp_err rc;
		const unsigned char *v = NULL, *ve = NULL;

		x ^= x << 13; x ^= x >> 7; x ^= x << 17;
		n = (size_t)(x % 48);
		blob = malloc(n ? n : 1);
		for (j = 0; j < n; j++) {
			x ^= x << 13; x ^= x >> 7; x ^= x << 17;
			/* bias towards small bytes so that tags and short varints occur */
			blob[j] = (unsigned char)((x >> 8) & 1 ? x % 10 : x >> 24);
		}
		if (n && (x & 3))
			blob[0] = PC_VERSION;
		buf_init(&out, 1 << 16);
		CHECK_INT(buf_putc(&out, '{'), MP_OK);
		rc = pc_to_json(blob, n, dict_lookup, &d, &out, &first);
		if (rc == MP_OK) {
			cJSON *p;

			n_ok++;
			CHECK_INT(buf_putc(&out, '}'), MP_OK);
			p = cJSON_Parse(out.data);
			if (!p) {
				fprintf(stderr, "  garbage decoded to invalid JSON: %s\n", out.data);
				tl_cur_failed = 1;
			}
			cJSON_Delete(p);
		} else {
			n_bad++;
			if (rc != MP_E_STORE) {
				fprintf(stderr, "  garbage gave rc %d\n", (int)rc);
				tl_cur_failed = 1;
			}
		}
		f = pc_find(blob, n, (int64_t)(x % 45), &v, &ve);
		if (f < -1 || f > 1 || (f == 1 && !(v >= blob + 1 && v < ve && ve <= blob + n))) {
			fprintf(stderr, "  pc_find on garbage: %d\n", f);
			tl_cur_failed = 1;
		}
		if (n && pc_skip_value(blob, blob + n, 0) != NULL) {
			const unsigned char *e = pc_skip_value(blob, blob + n, 0);

			CHECK(e > blob && e <= blob + n);
		}
		buf_free(&out);
		free(blob);
	}
	/* the generator must exercise both outcomes */
	CHECK(n_ok > 100);
	CHECK(n_bad > 100);
	dict_free(&d);
}

int main(void)
{
	TEST_RUN(encodes_null_false_true_as_bare_tags);
	TEST_RUN(encodes_integers_as_zigzag_varints);
	TEST_RUN(encodes_fractions_and_2p53_as_little_endian_doubles);
	TEST_RUN(encodes_short_top_level_strings_through_the_dict);
	TEST_RUN(encodes_strings_over_64_bytes_inline);
	TEST_RUN(encodes_inline_key_as_str_without_interning_its_value);
	TEST_RUN(encodes_nested_strings_inline_and_containers_with_counts);
	TEST_RUN(encodes_empty_or_null_props_as_the_version_byte);
	TEST_RUN(round_trips_null_bools_and_integers);
	TEST_RUN(round_trips_doubles_exactly);
	TEST_RUN(round_trips_negative_zero_as_zero);
	TEST_RUN(round_trips_strings_empty_long_quoted_control_and_unicode);
	TEST_RUN(round_trips_arrays_and_nested_objects);
	TEST_RUN(round_trips_33_levels_and_rejects_34_as_invalid);
	TEST_RUN(skip_list_leaves_keys_out_and_does_not_intern_them);
	TEST_RUN(inline_key_round_trips_like_any_other_string);
	TEST_RUN(to_json_writes_members_with_commas_driven_by_first);
	TEST_RUN(to_json_of_empty_record_appends_nothing_and_keeps_first);
	TEST_RUN(to_json_into_a_full_buffer_returns_toobig);
	TEST_RUN(encode_returns_the_intern_error);
	TEST_RUN(find_locates_values_by_key_id);
	TEST_RUN(corrupt_blobs_return_store_error);
	TEST_RUN(unknown_dict_ids_are_store_errors_for_to_json);
	TEST_RUN(decoder_accepts_32_nested_levels_and_rejects_33);
	TEST_RUN(truncation_at_every_byte_is_detected);
	TEST_RUN(random_garbage_never_crashes_and_valid_output_parses);
	return TEST_DONE();
}
