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

/* ---------- pc_remap ---------- */

/* A map that records its calls: id -> id * MUL + ADD, failing (-1) for
 * FAIL_ID and for ids < 1. */
struct remap {
	int64_t mul, add, fail_id;
	int64_t calls[64];
	int n_calls;
};

static int64_t remap_fn(void *ctx, int64_t id)
{
	struct remap *m = ctx;

	if (m->n_calls < 64)
		m->calls[m->n_calls] = id;
	m->n_calls++;
	if (id < 1 || id == m->fail_id)
		return -1;
	return id * m->mul + m->add;
}

/* The dictionary of test_propcodec with every id shifted by 1000. */
static int64_t dict_intern_1000(void *ctx, const char *s, size_t n, int optional)
{
	int64_t id = dict_intern(ctx, s, n, optional);

	return id < 0 ? id : id + 1000;
}

static const char *dict_lookup_1000(void *ctx, int64_t id, size_t *len)
{
	return dict_lookup(ctx, id - 1000, len);
}

/* Remapping with id + 1000 gives the bytes that encoding with a dictionary
 * of ids + 1000 gives: keys and top-level dict strings change (and their
 * varints grow), everything else is copied. */
static void remap_rewrites_keys_and_top_level_dict_strings(void)
{
	cJSON *p = J("{'a':'x','b':-7,'c':['y',{'z':'w'},[1]],'d':'a string value that is longer than "
		     "sixty-four bytes, so it is stored inline','e':{'f':'g','h':[null]},'n':null,"
		     "'dbl':0.5,'t':true,'x':'x','$insert_id':'abc'}");
	struct dict d, d2;
	struct buf enc, want, out;
	struct remap m = { 1, 1000, 0, { 0 }, 0 };
	cJSON *back = NULL;
	enum mp_err rc;

	memset(&d, 0, sizeof d);
	memset(&d2, 0, sizeof d2);
	buf_init(&enc, 1 << 16);
	buf_init(&want, 1 << 16);
	buf_init(&out, 1 << 16);
	CHECK_INT(pc_encode(p, NULL, "$insert_id", dict_intern, &d, &enc), MP_OK);
	CHECK_INT(pc_encode(p, NULL, "$insert_id", dict_intern_1000, &d2, &want), MP_OK);
	/* ids: a=1 x=2 b=3 c=4 d=5 e=6 n=7 dbl=8 t=9 (x again) $insert_id=10 */
	CHECK_INT(d.n, 10);
	rc = pc_remap((const unsigned char *)enc.data, enc.len, remap_fn, &m, &out);
	CHECK_INT(rc, MP_OK);
	CHECK_INT(out.len, want.len);
	CHECK(out.len == want.len && memcmp(out.data, want.data, out.len) == 0);
	CHECK(out.len > enc.len);  /* 2-byte varints now */
	/* one call per key and per top-level dict string, in record order */
	{
		static const int64_t calls[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 2, 2, 10 };
		size_t i;

		CHECK_INT(m.n_calls, sizeof calls / sizeof calls[0]);
		for (i = 0; i < sizeof calls / sizeof calls[0] && (int)i < m.n_calls; i++)
			CHECK_INT(m.calls[i], calls[i]);
	}
	/* and it decodes to the same JSON with the shifted dictionary */
	{
		struct buf js;
		int first = 1;

		buf_init(&js, 1 << 16);
		CHECK_INT(buf_putc(&js, '{'), MP_OK);
		CHECK_INT(pc_to_json((const unsigned char *)out.data, out.len, dict_lookup_1000, &d, &js, &first), MP_OK);
		CHECK_INT(buf_putc(&js, '}'), MP_OK);
		back = cJSON_Parse(js.data);
		CHECK(back && same_exact(back, p));
		buf_free(&js);
	}
	cJSON_Delete(back);
	cJSON_Delete(p);
	buf_free(&enc);
	buf_free(&want);
	buf_free(&out);
	dict_free(&d);
	dict_free(&d2);
}

static void remap_of_hand_written_records(void)
{
	/* key 1 -> dictstr 2; key 3 -> [str "q"]; key 4 -> [dictstr 9] (nested: copied, not mapped) */
	static const unsigned char in[] = { 0x01, 0x01, 0x05, 0x02, 0x03, 0x07, 0x01, 0x06, 0x01, 'q',
					    0x04, 0x07, 0x01, 0x05, 0x09 };
	static const unsigned char want[] = { 'X', 'Y', 0x01, 0x64, 0x05, 0xc8, 0x01, 0xac, 0x02, 0x07, 0x01, 0x06,
					      0x01, 'q', 0x90, 0x03, 0x07, 0x01, 0x05, 0x09 };
	static const unsigned char empty[] = { PC_VERSION };
	struct remap m = { 100, 0, 0, { 0 }, 0 };
	struct buf out;

	buf_init(&out, 1000);
	/* appends to what OUT holds */
	CHECK_INT(buf_append(&out, "XY", 2), MP_OK);
	CHECK_INT(pc_remap(in, sizeof in, remap_fn, &m, &out), MP_OK);
	CHECK(out.len == sizeof want && memcmp(out.data, want, sizeof want) == 0);
	CHECK_INT(m.n_calls, 4);
	CHECK(m.calls[0] == 1 && m.calls[1] == 2 && m.calls[2] == 3 && m.calls[3] == 4);
	/* the version byte alone: an empty record */
	buf_reset(&out);
	m.n_calls = 0;
	CHECK_INT(pc_remap(empty, sizeof empty, remap_fn, &m, &out), MP_OK);
	CHECK(out.len == 1 && out.data[0] == PC_VERSION);
	CHECK_INT(m.n_calls, 0);
	/* a capped output buffer is an error, not an overrun */
	{
		struct buf small;

		buf_init(&small, 4);
		m.n_calls = 0;
		CHECK(pc_remap(in, sizeof in, remap_fn, &m, &small) != MP_OK);
		CHECK(small.len <= 4);
		buf_free(&small);
	}
	buf_free(&out);
}

static void remap_check_at(const unsigned char *blob, size_t n, int64_t fail_id, int line)
{
	struct remap m = { 1, 0, 0, { 0 }, 0 };
	struct buf out;
	enum mp_err rc;

	m.fail_id = fail_id;
	buf_init(&out, 1 << 16);
	rc = pc_remap(blob, n, remap_fn, &m, &out);
	if (rc != MP_E_STORE) {
		fprintf(stderr, "%s:%d: pc_remap returned %d, want MP_E_STORE\n", __FILE__, line, (int)rc);
		tl_cur_failed = 1;
	}
	buf_free(&out);
}
#define REMAP_STORE_ERR(fail_id, ...) do { static const unsigned char b_[] = { __VA_ARGS__ }; \
	remap_check_at(b_, sizeof b_, (fail_id), __LINE__); } while (0)

static void remap_corrupt_input_and_map_failure_are_store_errors(void)
{
	remap_check_at((const unsigned char *)"", 0, 0, __LINE__); /* no version byte */
	REMAP_STORE_ERR(0, 0x02);                                  /* unknown version */
	REMAP_STORE_ERR(0, 0x00, 0x01, 0x00);
	REMAP_STORE_ERR(0, 0x01, 0x01);                            /* key without value */
	REMAP_STORE_ERR(0, 0x01, 0x81);                            /* key varint cut */
	REMAP_STORE_ERR(0, 0x01, 0x01, 0x09);                      /* unknown tag */
	REMAP_STORE_ERR(0, 0x01, 0x01, 0x05);                      /* dictstr without id */
	REMAP_STORE_ERR(0, 0x01, 0x01, 0x05, 0x80);                /* dictstr id cut */
	REMAP_STORE_ERR(0, 0x01, 0x01, 0x03, 0x80);                /* int cut */
	REMAP_STORE_ERR(0, 0x01, 0x01, 0x04, 1, 2, 3);             /* double cut */
	REMAP_STORE_ERR(0, 0x01, 0x01, 0x06, 0x05, 'a');           /* str past the end */
	REMAP_STORE_ERR(0, 0x01, 0x01, 0x07, 0x02, 0x00);          /* array of 2, 1 item */
	REMAP_STORE_ERR(0, 0x01, 0x01, 0x08, 0x01, 0x01, 'k');     /* object member without value */
	REMAP_STORE_ERR(0, 0x01, 0x01, 0x00, 0x02, 0x0a);          /* second entry bad */
	/* mapping failures */
	REMAP_STORE_ERR(1, 0x01, 0x01, 0x00);                      /* of a key */
	REMAP_STORE_ERR(2, 0x01, 0x01, 0x05, 0x02);                /* of a dict string */
	REMAP_STORE_ERR(3, 0x01, 0x01, 0x00, 0x02, 0x05, 0x01, 0x03, 0x02);  /* of a later key */
	REMAP_STORE_ERR(0, 0x01, 0x00, 0x00);                      /* key id 0: map says -1 */
	REMAP_STORE_ERR(0, 0x01, 0x01, 0x05, 0x00);                /* dict string id 0 */
	/* a nested dict-string-looking byte is not mapped: no failure */
	{
		static const unsigned char b[] = { 0x01, 0x01, 0x07, 0x01, 0x05, 0x02 };
		struct remap m = { 1, 0, 2, { 0 }, 0 };
		struct buf out;

		buf_init(&out, 100);
		CHECK_INT(pc_remap(b, sizeof b, remap_fn, &m, &out), MP_OK);
		CHECK(out.len == sizeof b && memcmp(out.data, b, sizeof b) == 0);
		buf_free(&out);
	}
}

/* A valid record cut at an entry boundary remaps; cut anywhere else it is
 * MP_E_STORE (exact-size copies: ASan sees any overread). */
static void remap_detects_truncation_at_every_byte(void)
{
	cJSON *full = J("{'s':'short','i':-300,'d':0.25,'l':'a string that is longer than sixty-four bytes, "
			"so it is stored inline','arr':[1,'two',[3],{'four':4}],'o':{'x':{'y':'z'}},'last':false}");
	size_t bound[16], nb = 0, k, cut;
	struct dict d;
	struct buf enc;
	int nmembers = cJSON_GetArraySize(full);

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
	for (cut = 0; cut <= enc.len; cut++) {
		unsigned char *copy = malloc(cut ? cut : 1);
		struct remap m = { 1, 0, 0, { 0 }, 0 };
		struct buf out;
		int is_bound = 0;
		enum mp_err rc;
		size_t j;

		memcpy(copy, enc.data, cut);
		for (j = 0; j < nb; j++)
			is_bound |= bound[j] == cut;
		buf_init(&out, 1 << 16);
		rc = pc_remap(copy, cut, remap_fn, &m, &out);
		if (rc != (is_bound ? MP_OK : MP_E_STORE)) {
			fprintf(stderr, "  cut at %zu of %zu: pc_remap rc %d\n", cut, enc.len, (int)rc);
			tl_cur_failed = 1;
		}
		if (is_bound && rc == MP_OK && (out.len != cut || memcmp(out.data, copy, cut) != 0)) {
			fprintf(stderr, "  cut at %zu: identity remap changed the bytes\n", cut);
			tl_cur_failed = 1;
		}
		buf_free(&out);
		free(copy);
	}
	cJSON_Delete(full);
	buf_free(&enc);
	dict_free(&d);
}

/* ---------- pc_expr_value ---------- */

#define SENTINEL_N 12345.0

/* Decode the value bytes B with D and up to N_ITEMS list items; returns
 * the result code, the value in *OUT. */
static int xv(const unsigned char *b, size_t n, struct dict *d, struct expr_value *out,
	      struct expr_value *items, size_t n_items)
{
	out->type = EXPR_UNDEFINED;
	return pc_expr_value(b, b + n, dict_lookup, d, out, items, n_items);
}

static int num_is(const struct expr_value *v, double x)
{
	return v->type == EXPR_NUMBER && v->u.n == x;
}

static int string_is(const struct expr_value *v, const char *s)
{
	return v->type == EXPR_STRING && v->u.str.len == strlen(s) && memcmp(v->u.str.s, s, v->u.str.len) == 0;
}

static void expr_value_decodes_each_tag(void)
{
	struct dict d;
	struct expr_value out, items[8];
	static const unsigned char b_null[] = { PC_NULL }, b_false[] = { PC_FALSE }, b_true[] = { PC_TRUE };
	static const unsigned char b_int5[] = { PC_INT, 0x0a }, b_intm1[] = { PC_INT, 0x01 };
	static const unsigned char b_int_max[] = { PC_INT, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f };
	static const unsigned char b_int_min[] = { PC_INT, 0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f };
	static const unsigned char b_d15[] = { PC_DOUBLE, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f };
	static const unsigned char b_d01[] = { PC_DOUBLE, 0x9a, 0x99, 0x99, 0x99, 0x99, 0x99, 0xb9, 0x3f };
	static const unsigned char b_dict[] = { PC_DICTSTR, 0x01 };
	static const unsigned char b_str[] = { PC_STR, 0x03, 'a', 'b', 'c' };
	static const unsigned char b_estr[] = { PC_STR, 0x00 };
	static const unsigned char b_obj[] = { PC_OBJECT, 0x01, 0x01, 'k', PC_NULL };
	static const unsigned char b_eobj[] = { PC_OBJECT, 0x00 };

	memset(&d, 0, sizeof d);
	CHECK_INT(dict_intern(&d, "hello", 5, 1), 1);
	CHECK_INT(xv(b_null, sizeof b_null, &d, &out, items, 8), 0);
	CHECK_INT(out.type, EXPR_NULL);
	CHECK_INT(xv(b_false, sizeof b_false, &d, &out, items, 8), 0);
	CHECK(out.type == EXPR_BOOL && out.u.b == 0);
	CHECK_INT(xv(b_true, sizeof b_true, &d, &out, items, 8), 0);
	CHECK(out.type == EXPR_BOOL && out.u.b == 1);
	CHECK_INT(xv(b_int5, sizeof b_int5, &d, &out, items, 8), 0);
	CHECK(num_is(&out, 5));
	CHECK_INT(xv(b_intm1, sizeof b_intm1, &d, &out, items, 8), 0);
	CHECK(num_is(&out, -1));
	CHECK_INT(xv(b_int_max, sizeof b_int_max, &d, &out, items, 8), 0);
	CHECK(num_is(&out, 9007199254740991.0));
	CHECK_INT(xv(b_int_min, sizeof b_int_min, &d, &out, items, 8), 0);
	CHECK(num_is(&out, -9007199254740991.0));
	CHECK_INT(xv(b_d15, sizeof b_d15, &d, &out, items, 8), 0);
	CHECK(num_is(&out, 1.5));
	CHECK_INT(xv(b_d01, sizeof b_d01, &d, &out, items, 8), 0);
	CHECK(num_is(&out, 0.1));
	CHECK_INT(xv(b_dict, sizeof b_dict, &d, &out, items, 8), 0);
	CHECK(string_is(&out, "hello") && out.u.str.s == d.s[0]);    /* the dictionary's string */
	CHECK_INT(xv(b_str, sizeof b_str, &d, &out, items, 8), 0);
	CHECK(string_is(&out, "abc") && out.u.str.s == (const char *)b_str + 2); /* points into the record */
	CHECK_INT(xv(b_estr, sizeof b_estr, &d, &out, items, 8), 0);
	CHECK(out.type == EXPR_STRING && out.u.str.len == 0);
	out.type = EXPR_NULL;
	CHECK_INT(pc_expr_value(b_obj, b_obj + sizeof b_obj, dict_lookup, &d, &out, items, 8), 0);
	CHECK_INT(out.type, EXPR_UNDEFINED);
	out.type = EXPR_NULL;
	CHECK_INT(pc_expr_value(b_eobj, b_eobj + sizeof b_eobj, dict_lookup, &d, &out, items, 8), 0);
	CHECK_INT(out.type, EXPR_UNDEFINED);
	dict_free(&d);
}

static void expr_value_lists_skip_nested_items_and_respect_capacity(void)
{
	struct dict d;
	struct expr_value out, items[8];
	static const unsigned char b_empty[] = { PC_ARRAY, 0x00 };
	static const unsigned char b_scalars[] = { PC_ARRAY, 0x06, PC_INT, 0x02, PC_STR, 0x01, 'x', PC_TRUE, PC_NULL,
						   PC_DICTSTR, 0x01, PC_DOUBLE, 0, 0, 0, 0, 0, 0, 0xe0, 0x3f };
	/* 1, [2, null], "hello", {"k": []}, false, {} */
	static const unsigned char b_nested[] = { PC_ARRAY, 0x06, PC_INT, 0x02, PC_ARRAY, 0x02, PC_INT, 0x04, PC_NULL,
						  PC_DICTSTR, 0x01, PC_OBJECT, 0x01, 0x01, 'k', PC_ARRAY, 0x00,
						  PC_FALSE, PC_OBJECT, 0x00 };
	static const unsigned char b_only_nested[] = { PC_ARRAY, 0x02, PC_ARRAY, 0x00, PC_OBJECT, 0x00 };
	/* 0 1 2 3 4 */
	static const unsigned char b_five[] = { PC_ARRAY, 0x05, PC_INT, 0x00, PC_INT, 0x02, PC_INT, 0x04,
						PC_INT, 0x06, PC_INT, 0x08 };
	/* [0, [1]] then a nested list, then 2: items 0 and 2 with capacity 2 */
	static const unsigned char b_mixed[] = { PC_ARRAY, 0x03, PC_INT, 0x00, PC_ARRAY, 0x01, PC_INT, 0x02,
						 PC_INT, 0x04 };
	size_t i;

	memset(&d, 0, sizeof d);
	dict_intern(&d, "hello", 5, 1);
	CHECK_INT(xv(b_empty, sizeof b_empty, &d, &out, items, 8), 0);
	CHECK(out.type == EXPR_LIST && out.u.list.n == 0);
	CHECK_INT(xv(b_scalars, sizeof b_scalars, &d, &out, items, 8), 0);
	CHECK(out.type == EXPR_LIST && out.u.list.n == 6 && out.u.list.items == items);
	if (out.type == EXPR_LIST && out.u.list.n == 6) {
		CHECK(num_is(&items[0], 1));
		CHECK(string_is(&items[1], "x"));
		CHECK(items[2].type == EXPR_BOOL && items[2].u.b == 1);
		CHECK_INT(items[3].type, EXPR_NULL);
		CHECK(string_is(&items[4], "hello"));
		CHECK(num_is(&items[5], 0.5));
	}
	CHECK_INT(xv(b_nested, sizeof b_nested, &d, &out, items, 8), 0);
	CHECK(out.type == EXPR_LIST && out.u.list.n == 3);
	if (out.type == EXPR_LIST && out.u.list.n == 3) {
		CHECK(num_is(&items[0], 1));
		CHECK(string_is(&items[1], "hello"));
		CHECK(items[2].type == EXPR_BOOL && items[2].u.b == 0);
	}
	CHECK_INT(xv(b_only_nested, sizeof b_only_nested, &d, &out, items, 8), 0);
	CHECK(out.type == EXPR_LIST && out.u.list.n == 0);
	/* capacity: the first N_ITEMS items, the rest left out, nothing written past */
	for (i = 0; i < 8; i++) {
		items[i].type = EXPR_NUMBER;
		items[i].u.n = SENTINEL_N;
	}
	CHECK_INT(xv(b_five, sizeof b_five, &d, &out, items, 3), 0);
	CHECK(out.type == EXPR_LIST && out.u.list.n == 3);
	CHECK(num_is(&items[0], 0) && num_is(&items[1], 1) && num_is(&items[2], 2));
	CHECK(num_is(&items[3], SENTINEL_N));
	CHECK_INT(xv(b_five, sizeof b_five, &d, &out, items, 5), 0);
	CHECK(out.type == EXPR_LIST && out.u.list.n == 5 && num_is(&items[4], 4));
	CHECK(num_is(&items[5], SENTINEL_N));
	CHECK_INT(xv(b_five, sizeof b_five, &d, &out, NULL, 0), 0);
	CHECK(out.type == EXPR_LIST && out.u.list.n == 0);
	/* skipped nested items take no capacity */
	items[2].u.n = SENTINEL_N;
	CHECK_INT(xv(b_mixed, sizeof b_mixed, &d, &out, items, 2), 0);
	CHECK(out.type == EXPR_LIST && out.u.list.n == 2 && num_is(&items[0], 0) && num_is(&items[1], 2));
	CHECK(num_is(&items[2], SENTINEL_N));
	dict_free(&d);
}

static void xv_corrupt_at(const unsigned char *b, size_t n, size_t n_items, int line)
{
	struct dict d;
	struct expr_value out, items[4];
	int r;

	memset(&d, 0, sizeof d);
	dict_intern(&d, "hello", 5, 1);
	r = xv(b, n, &d, &out, items, n_items);
	if (r != -1) {
		fprintf(stderr, "%s:%d: pc_expr_value on a corrupt value returned %d (type %d), want -1\n", __FILE__,
			line, r, (int)out.type);
		tl_cur_failed = 1;
	}
	dict_free(&d);
}
#define XV_CORRUPT(n_items, ...) do { static const unsigned char b_[] = { __VA_ARGS__ }; \
	xv_corrupt_at(b_, sizeof b_, (n_items), __LINE__); } while (0)

static void expr_value_corrupt_values_are_minus_one(void)
{
	static const unsigned char str3[] = { PC_STR, 0x03, 'a', 'b', 'c' };

	xv_corrupt_at((const unsigned char *)"", 0, 4, __LINE__);     /* V == END */
	XV_CORRUPT(4, 0x09);                                          /* unknown tag */
	XV_CORRUPT(4, 0xff);
	XV_CORRUPT(4, PC_INT);                                        /* int without varint */
	XV_CORRUPT(4, PC_INT, 0x80);
	XV_CORRUPT(4, PC_DOUBLE, 1, 2, 3, 4, 5, 6, 7);
	XV_CORRUPT(4, PC_DICTSTR, 0x02);                              /* unknown dict id */
	XV_CORRUPT(4, PC_DICTSTR, 0x00);
	XV_CORRUPT(4, PC_DICTSTR, 0x81);
	XV_CORRUPT(4, PC_STR, 0x05, 'a');
	XV_CORRUPT(4, PC_STR, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 'a');
	XV_CORRUPT(4, PC_ARRAY);                                      /* no count */
	XV_CORRUPT(4, PC_ARRAY, 0x03, PC_NULL);                       /* 3 items, 1 there */
	XV_CORRUPT(4, PC_ARRAY, 0xff, 0xff, 0xff, 0xff, 0x0f, PC_NULL);
	XV_CORRUPT(4, PC_ARRAY, 0x01, 0x09);                          /* bad item tag */
	XV_CORRUPT(4, PC_ARRAY, 0x01, PC_ARRAY, 0x02, PC_NULL);       /* nested list cut */
	XV_CORRUPT(4, PC_ARRAY, 0x01, PC_OBJECT, 0x01, 0x05, 'k');    /* nested object cut */
	XV_CORRUPT(4, PC_ARRAY, 0x01, PC_DICTSTR, 0x07);              /* item: unknown dict id */
	/* corrupt items past the capacity still make the value corrupt */
	XV_CORRUPT(1, PC_ARRAY, 0x03, PC_NULL, PC_NULL, 0x09);
	XV_CORRUPT(0, PC_ARRAY, 0x02, PC_NULL, PC_INT);
	/* END bounds the value: bytes after it are not read */
	xv_corrupt_at(str3, 3, 4, __LINE__);
}

/* pc_expr_value and pc_find agree on the nesting limit: a list item may be
 * nested as deep as pc_find accepts. */
static void expr_value_nesting_limit_matches_find(void)
{
	unsigned char blob[2 + 2 * 40 + 1];
	struct dict d;
	int levels;

	memset(&d, 0, sizeof d);
	for (levels = 1; levels <= 40; levels++) {
		const unsigned char *v = NULL, *ve = NULL;
		struct expr_value out, items[2];
		size_t n = 0;
		int i, f, r;

		blob[n++] = PC_VERSION;
		blob[n++] = 0x01;
		for (i = 0; i < levels; i++) {
			blob[n++] = PC_ARRAY;
			blob[n++] = 0x01;
		}
		blob[n++] = PC_NULL;
		f = pc_find(blob, n, 1, &v, &ve);
		CHECK_INT(f, levels <= 32 ? 1 : -1);
		r = pc_expr_value(blob + 2, blob + n, dict_lookup, &d, &out, items, 2);
		CHECK_INT(r, levels <= 32 ? 0 : -1);
		if (r == 0) {
			CHECK(out.type == EXPR_LIST);
			CHECK_INT(out.u.list.n, levels == 1 ? 1 : 0);   /* [null] has one item */
		}
	}
}

/* ---------- pc_event_lookup ---------- */

struct ev_ctx {
	struct dict d;
	int key_calls;
};

static int64_t ev_key_id(void *ctx, const char *name, size_t len)
{
	struct ev_ctx *c = ctx;
	size_t i;

	c->key_calls++;
	for (i = 0; i < c->d.n; i++)
		if (c->d.len[i] == len && memcmp(c->d.s[i], name, len) == 0)
			return (int64_t)i + 1;
	return 0;
}

static const char *ev_lookup(void *ctx, int64_t id, size_t *len)
{
	return dict_lookup(&((struct ev_ctx *)ctx)->d, id, len);
}

static int lk(const struct pc_event_ref *ev, enum expr_scope scope, const char *name, struct expr_value *out)
{
	out->type = EXPR_BOOL;   /* must be overwritten */
	return pc_event_lookup(ev, scope, name, strlen(name), out);
}

static void event_lookup_scopes_and_special_names(void)
{
	struct ev_ctx c;
	struct buf enc;
	struct pc_event_ref ev;
	struct expr_value out, items[2];
	cJSON *p = J("{'plan':'pro','n':3,'tags':['a','b','c'],'obj':{'k':1},'time':5,'nothing':null,"
		     "'$insert_id':'i-1'}");
	static const char name[] = "Signed Up!", did[] = "user-1";

	memset(&c, 0, sizeof c);
	buf_init(&enc, 1000);
	CHECK_INT(pc_encode(p, NULL, "$insert_id", dict_intern, &c.d, &enc), MP_OK);
	dict_intern(&c.d, "unused-key", 10, 0);   /* in the dictionary, not in the record */
	memset(&ev, 0, sizeof ev);
	ev.time_ms = INT64_C(1710496800123);
	ev.name = name;
	ev.name_len = 6;                           /* "Signed": lengths, not NULs */
	ev.did = did;
	ev.did_len = strlen(did);
	ev.props = (const unsigned char *)enc.data;
	ev.props_len = enc.len;
	ev.key_id = ev_key_id;
	ev.lookup = ev_lookup;
	ev.ctx = &c;
	ev.items = items;
	ev.n_items = 2;

	/* event[...] */
	CHECK_INT(lk(&ev, EXPR_SCOPE_EVENT, "$time", &out), 0);
	CHECK(out.type == EXPR_DATETIME && out.u.ms == INT64_C(1710496800123));
	CHECK_INT(lk(&ev, EXPR_SCOPE_EVENT, "time", &out), 0);
	CHECK(out.type == EXPR_DATETIME && out.u.ms == INT64_C(1710496800123));
	CHECK_INT(lk(&ev, EXPR_SCOPE_EVENT, "name", &out), 0);
	CHECK(out.type == EXPR_STRING && out.u.str.s == name && out.u.str.len == 6);
	CHECK_INT(lk(&ev, EXPR_SCOPE_EVENT, "$event_name", &out), 0);
	CHECK(string_is(&out, "Signed"));
	CHECK_INT(lk(&ev, EXPR_SCOPE_EVENT, "event", &out), 0);
	CHECK(string_is(&out, "Signed"));
	CHECK_INT(lk(&ev, EXPR_SCOPE_EVENT, "distinct_id", &out), 0);
	CHECK(out.type == EXPR_STRING && out.u.str.s == did && out.u.str.len == 6);
	CHECK_INT(lk(&ev, EXPR_SCOPE_EVENT, "$distinct_id", &out), 0);
	CHECK(string_is(&out, "user-1"));
	CHECK_INT(lk(&ev, EXPR_SCOPE_EVENT, "plan", &out), 0);      /* properties are not event[] */
	CHECK_INT(out.type, EXPR_UNDEFINED);
	CHECK_INT(lk(&ev, EXPR_SCOPE_EVENT, "$times", &out), 0);
	CHECK_INT(out.type, EXPR_UNDEFINED);
	CHECK_INT(lk(&ev, EXPR_SCOPE_EVENT, "Name", &out), 0);
	CHECK_INT(out.type, EXPR_UNDEFINED);
	CHECK_INT(lk(&ev, EXPR_SCOPE_EVENT, "", &out), 0);
	CHECK_INT(out.type, EXPR_UNDEFINED);
	out.type = EXPR_NULL;
	CHECK_INT(pc_event_lookup(&ev, EXPR_SCOPE_EVENT, "names", 4, &out), 0);  /* LEN counts */
	CHECK(string_is(&out, "Signed"));
	CHECK_INT(c.key_calls, 0);

	/* properties[...]: the special names first */
	CHECK_INT(lk(&ev, EXPR_SCOPE_PROPERTIES, "time", &out), 0);
	CHECK(out.type == EXPR_NUMBER && out.u.n == 1710496800.123);   /* seconds, not the record's 5 */
	CHECK_INT(lk(&ev, EXPR_SCOPE_PROPERTIES, "distinct_id", &out), 0);
	CHECK(string_is(&out, "user-1"));
	CHECK_INT(c.key_calls, 0);
	/* then the record */
	CHECK_INT(lk(&ev, EXPR_SCOPE_PROPERTIES, "plan", &out), 0);
	CHECK(string_is(&out, "pro"));
	CHECK_INT(lk(&ev, EXPR_SCOPE_PROPERTIES, "n", &out), 0);
	CHECK(num_is(&out, 3));
	CHECK_INT(lk(&ev, EXPR_SCOPE_PROPERTIES, "nothing", &out), 0);
	CHECK_INT(out.type, EXPR_NULL);
	CHECK_INT(lk(&ev, EXPR_SCOPE_PROPERTIES, "$insert_id", &out), 0);
	CHECK(string_is(&out, "i-1"));
	CHECK_INT(lk(&ev, EXPR_SCOPE_PROPERTIES, "tags", &out), 0);
	CHECK(out.type == EXPR_LIST && out.u.list.n == 2 && out.u.list.items == items); /* n_items = 2 */
	CHECK(string_is(&items[0], "a") && string_is(&items[1], "b"));
	CHECK_INT(lk(&ev, EXPR_SCOPE_PROPERTIES, "obj", &out), 0);
	CHECK_INT(out.type, EXPR_UNDEFINED);
	CHECK_INT(lk(&ev, EXPR_SCOPE_PROPERTIES, "missing", &out), 0);     /* not in the dictionary */
	CHECK_INT(out.type, EXPR_UNDEFINED);
	CHECK_INT(lk(&ev, EXPR_SCOPE_PROPERTIES, "unused-key", &out), 0);  /* not in the record */
	CHECK_INT(out.type, EXPR_UNDEFINED);
	CHECK_INT(lk(&ev, EXPR_SCOPE_PROPERTIES, "pro", &out), 0);         /* a value's id, not a key */
	CHECK_INT(out.type, EXPR_UNDEFINED);
	CHECK_INT(lk(&ev, EXPR_SCOPE_PROPERTIES, "$distinct_id", &out), 0); /* not special here */
	CHECK_INT(out.type, EXPR_UNDEFINED);
	CHECK_INT(pc_event_lookup(&ev, EXPR_SCOPE_PROPERTIES, "plans", 4, &out), 0);
	CHECK(string_is(&out, "pro"));

	/* user[] and group[]: undefined, the record is not consulted */
	c.key_calls = 0;
	CHECK_INT(lk(&ev, EXPR_SCOPE_USER, "plan", &out), 0);
	CHECK_INT(out.type, EXPR_UNDEFINED);
	CHECK_INT(lk(&ev, EXPR_SCOPE_USER, "$time", &out), 0);
	CHECK_INT(out.type, EXPR_UNDEFINED);
	CHECK_INT(lk(&ev, EXPR_SCOPE_GROUP, "plan", &out), 0);
	CHECK_INT(out.type, EXPR_UNDEFINED);
	CHECK_INT(c.key_calls, 0);

	/* a corrupt record: -1 for record lookups only */
	{
		static const unsigned char bad[] = { 0x01, 0x01, 0x09 };

		ev.props = bad;
		ev.props_len = sizeof bad;
		CHECK_INT(lk(&ev, EXPR_SCOPE_PROPERTIES, "plan", &out), -1);
		CHECK_INT(lk(&ev, EXPR_SCOPE_PROPERTIES, "time", &out), 0);
		CHECK_INT(lk(&ev, EXPR_SCOPE_EVENT, "name", &out), 0);
		CHECK(string_is(&out, "Signed"));
		ev.props = (const unsigned char *)enc.data;
		ev.props_len = 0;              /* not even the version byte */
		CHECK_INT(lk(&ev, EXPR_SCOPE_PROPERTIES, "plan", &out), -1);
	}
	/* the empty record */
	{
		static const unsigned char empty[] = { PC_VERSION };

		ev.props = empty;
		ev.props_len = 1;
		CHECK_INT(lk(&ev, EXPR_SCOPE_PROPERTIES, "plan", &out), 0);
		CHECK_INT(out.type, EXPR_UNDEFINED);
	}
	/* a dict string in the record whose id the lookup cannot resolve */
	{
		static const unsigned char dangling[] = { 0x01, 0x01, PC_DICTSTR, 0x63 };

		ev.props = dangling;
		ev.props_len = sizeof dangling;
		CHECK_INT(lk(&ev, EXPR_SCOPE_PROPERTIES, "plan", &out), -1);
	}
	cJSON_Delete(p);
	buf_free(&enc);
	dict_free(&c.d);
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
	TEST_RUN(remap_rewrites_keys_and_top_level_dict_strings);
	TEST_RUN(remap_of_hand_written_records);
	TEST_RUN(remap_corrupt_input_and_map_failure_are_store_errors);
	TEST_RUN(remap_detects_truncation_at_every_byte);
	TEST_RUN(expr_value_decodes_each_tag);
	TEST_RUN(expr_value_lists_skip_nested_items_and_respect_capacity);
	TEST_RUN(expr_value_corrupt_values_are_minus_one);
	TEST_RUN(expr_value_nesting_limit_matches_find);
	TEST_RUN(event_lookup_scopes_and_special_names);
	return TEST_DONE();
}
