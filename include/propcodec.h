/*
 * propcodec.h - the compact binary record that holds an event's properties.
 *
 * Format (version byte 1, then entries until the end of the blob):
 *   entry  := varint key_id  value            key_id: shard dict id of the key
 *   value  := tag payload
 *     0 null | 1 false | 2 true
 *     3 int       zigzag varint (JSON numbers that are integral and |x| < 2^53)
 *     4 double    8 bytes little-endian IEEE 754
 *     5 dictstr   varint dict id          (top-level strings <= PC_DICT_MAX bytes)
 *     6 str       varint len, bytes       (longer strings, nested strings, $insert_id)
 *     7 array     varint count, value*
 *     8 object    varint count, (varint klen, key bytes, value)*
 * Reading one property of an event is a walk over at most ~255 entries with
 * no allocation and no JSON parsing; docs/STORAGE.md explains the choice.
 *
 * Decoding functions treat the blob as untrusted (bounds-checked): a corrupt
 * blob yields MP_E_STORE, never a read out of bounds.
 */
#ifndef MP_PROPCODEC_H
#define MP_PROPCODEC_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "buf.h"
#include "err.h"
#include "expr.h"

#define PC_VERSION 1
#define PC_DICT_MAX 64

enum pc_tag {
	PC_NULL = 0, PC_FALSE = 1, PC_TRUE = 2, PC_INT = 3, PC_DOUBLE = 4,
	PC_DICTSTR = 5, PC_STR = 6, PC_ARRAY = 7, PC_OBJECT = 8
};

/* Returns the dict id (>= 1) of string S (N bytes), creating it if needed,
 * or a negative enum mp_err.  With OPTIONAL (a string value, not a key) it
 * may return 0 instead: "store it inline" (the dictionary is full). */
typedef int64_t (*pc_intern_fn)(void *ctx, const char *s, size_t n, int optional);

/* Encode the members of object PROPS.  Keys in SKIP (NULL-terminated list,
 * may be NULL) are left out; a key equal to INLINE_KEY (may be NULL) always
 * stores its string value inline (PC_STR).  Appends to OUT. */
enum mp_err pc_encode(const cJSON *props, const char *const *skip, const char *inline_key,
		      pc_intern_fn intern, void *ctx, struct buf *out);

/* Resolves a dict id to a string (borrowed) or NULL if unknown. */
typedef const char *(*pc_lookup_fn)(void *ctx, int64_t id, size_t *len);

/* Append the entries as JSON members `"key":value`, each preceded by a comma
 * when *FIRST is 0 (then *FIRST becomes 0).  Returns MP_OK, MP_E_NOMEM,
 * MP_E_TOOBIG or MP_E_STORE (corrupt blob or unknown dict id). */
enum mp_err pc_to_json(const unsigned char *p, size_t n, pc_lookup_fn lookup, void *ctx,
		       struct buf *out, int *first);

/* Find the entry with KEY_ID; on success *VAL points at its tag byte and
 * *VAL_END past its payload.  Returns 1 found, 0 absent, -1 corrupt. */
int pc_find(const unsigned char *p, size_t n, int64_t key_id,
	    const unsigned char **val, const unsigned char **val_end);

/* Decoding primitives (bounds-checked); return the position after the
 * item, or NULL when it would run past END. */
static inline const unsigned char *pc_varint(const unsigned char *p, const unsigned char *end, uint64_t *v)
{
	uint64_t r = 0;
	int shift = 0;

	if (p < end && !(*p & 0x80)) {     /* the common case: one byte */
		*v = *p;
		return p + 1;
	}
	while (p < end && shift < 64) {
		unsigned char c = *p++;

		r |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80)) {
			*v = r;
			return p;
		}
		shift += 7;
	}
	return NULL;
}
const unsigned char *pc_skip_value(const unsigned char *p, const unsigned char *end, int depth);

/* Copy record P (N bytes) to OUT with every dict id (keys and top-level
 * PC_DICTSTR values) replaced by MAP(CTX, id); MAP returns the new id or a
 * negative value (then MP_E_STORE).  Nested values are copied as they are
 * (they hold no dict ids).  Returns MP_OK, MP_E_STORE (corrupt) or MP_E_NOMEM. */
enum mp_err pc_remap(const unsigned char *p, size_t n, int64_t (*map)(void *ctx, int64_t id),
		     void *ctx, struct buf *out);

/* Decode the value at V (its tag byte; END bounds it) into *OUT for the
 * expression evaluator: null, booleans, numbers, strings (dict strings via
 * LOOKUP; inline ones point into the record), and lists of scalars whose
 * items are written to ITEMS (capacity N_ITEMS; extra items and nested
 * lists/objects are left out).  Objects are undefined.  Returns 0, or -1
 * when the record is corrupt. */
int pc_expr_value(const unsigned char *v, const unsigned char *end, pc_lookup_fn lookup, void *ctx,
		  struct expr_value *out, struct expr_value *items, size_t n_items);

/* One stored event as the expression evaluator sees it (spec §11):
 *   properties["x"]  property x of the record (also "time": seconds, and
 *                    "distinct_id", which the record does not hold)
 *   event["$time"]   the time as a datetime; event["name"] (or "$event_name",
 *                    "event") the event name; event["distinct_id"]
 *   user[], group[]  undefined here */
struct pc_event_ref {
	int64_t time_ms;
	const char *name;
	size_t name_len;
	const char *did;
	size_t did_len;
	const unsigned char *props;
	size_t props_len;
	/* dict id of property key NAME in this record's dictionary, 0 if none */
	int64_t (*key_id)(void *ctx, const char *name, size_t len);
	pc_lookup_fn lookup;       /* dict id -> string */
	void *ctx;
	struct expr_value *items;  /* scratch for list values */
	size_t n_items;
};

/* An expr_lookup_fn body for EV: fills *OUT; returns 0, or -1 when the
 * record is corrupt. */
int pc_event_lookup(const struct pc_event_ref *ev, enum expr_scope scope, const char *name, size_t len,
		    struct expr_value *out);

#endif
