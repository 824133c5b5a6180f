/*
 * profile.c - apply one /engage or /groups update object to a profile.
 *
 * A profile is a flat cJSON object of properties; one update carries one or
 * more operations plus modifier keys (contract and semantics: profile.h,
 * spec §6.3 and §6.4).  This module only transforms JSON: it never stores,
 * resolves identities or geolocates; the caller reads the modifiers.
 *
 * Invariants and decisions:
 *  1. Operations run in the fixed order of OPS[] below ($set, $set_once,
 *     $add, $append, $union, $remove, $merge, $unset, $delete), whatever
 *     their order in the update; a repeated operation key runs once per
 *     occurrence, in document order.  $merge is not in the spec's order; it
 *     runs with the other list/object ops, before $unset.
 *  2. The UPDATE is never modified: every value written is a deep copy
 *     (cJSON_Duplicate) whose strings, at any depth, are truncated to 255
 *     UTF-8 bytes.  $union and $remove compare against the truncated copy,
 *     so removing a long string that was stored truncated still matches.
 *  3. A rejected key or operation increments n_errors and keeps the first
 *     message; the rest of the update still applies.  Only a non-object
 *     update or one without any operation is MP_E_INVALID, and then PROFILE
 *     is untouched (all key checks happen before the first write).
 *  4. The 2000-property cap applies to every key an operation would create;
 *     `$last_seen` is server-maintained and exempt, so it is always written.
 *  5. $delete clears PROFILE in place and sets out->deleted; no $last_seen.
 *  6. On MP_E_NOMEM PROFILE may be half updated; the caller discards it.
 */
#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "profile.h"

#define PROFILE_MAX_PROPS 2000
#define PROFILE_MAX_KEY 255
#define PROFILE_MAX_STRING 255
/* bytes of a property name quoted in an error message */
#define PROFILE_ERR_KEY 48

/* State shared by the operation handlers of one profile_apply() call. */
struct apply_ctx {
	cJSON *profile;
	enum profile_kind kind;
	int n_props; /* children of PROFILE, kept in step with every add/delete */
	struct profile_outcome *out;
};

typedef enum mp_err (*op_fn)(struct apply_ctx *c, const char *op, const cJSON *val);

static enum mp_err op_set(struct apply_ctx *c, const char *op, const cJSON *val);
static enum mp_err op_set_once(struct apply_ctx *c, const char *op, const cJSON *val);
static enum mp_err op_add(struct apply_ctx *c, const char *op, const cJSON *val);
static enum mp_err op_append(struct apply_ctx *c, const char *op, const cJSON *val);
static enum mp_err op_union(struct apply_ctx *c, const char *op, const cJSON *val);
static enum mp_err op_remove(struct apply_ctx *c, const char *op, const cJSON *val);
static enum mp_err op_merge(struct apply_ctx *c, const char *op, const cJSON *val);
static enum mp_err op_unset(struct apply_ctx *c, const char *op, const cJSON *val);
static enum mp_err op_delete(struct apply_ctx *c, const char *op, const cJSON *val);

/* The operations, in the order they are applied (invariant 1). */
static const struct {
	const char *name;
	op_fn fn;
} OPS[] = {
	{ "$set", op_set },
	{ "$set_once", op_set_once },
	{ "$add", op_add },
	{ "$append", op_append },
	{ "$union", op_union },
	{ "$remove", op_remove },
	{ "$merge", op_merge },
	{ "$unset", op_unset },
	{ "$delete", op_delete },
};

/* Keys that may sit next to the operations; read by the caller, not here. */
static const char *const MODIFIERS[] = {
	"$token", "$distinct_id", "$group_key", "$group_id", "$ip", "$time",
	"$ignore_time", "$ignore_alias", "$latitude", "$longitude",
	"$device_id", "$user_id", "$had_persisted_distinct_id", "$mp_metadata",
};

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

size_t profile_utf8_truncate(char *s, size_t max)
{
	size_t n, cut;

	if (s == NULL)
		return 0;
	n = strnlen(s, max);
	if (s[n] == '\0')
		return n; /* already short enough */
	/* s[max] is the first byte dropped; if it continues a character, that
	 * character straddles the limit and goes too.  A UTF-8 character has
	 * at most 3 continuation bytes; a longer run is malformed input and is
	 * cut at MAX as is. */
	cut = max;
	while (cut > 0 && max - cut < 3 && ((unsigned char)s[cut] & 0xC0) == 0x80)
		cut--;
	if (((unsigned char)s[cut] & 0xC0) == 0x80)
		cut = max;
	s[cut] = '\0';
	return cut;
}

/* Record an error: count it, keep the message if it is the first.  The
 * message is "OP: 'KEY' WHAT", or "WHAT 'KEY'" when OP is NULL; OP and KEY
 * may be NULL.  KEY is shortened to PROFILE_ERR_KEY bytes on a character
 * boundary so that the message stays valid UTF-8 and fits. */
static void note_error(struct apply_ctx *c, const char *op, const char *key,
		       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void note_error(struct apply_ctx *c, const char *op, const char *key,
		       const char *fmt, ...)
{
	char what[96], k[PROFILE_ERR_KEY + 4];
	size_t klen;
	va_list ap;

	c->out->n_errors++;
	if (c->out->error[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	if (key == NULL) {
		if (op == NULL)
			snprintf(c->out->error, sizeof c->out->error, "%s", what);
		else
			snprintf(c->out->error, sizeof c->out->error, "%s: %s", op, what);
		return;
	}
	klen = strnlen(key, PROFILE_ERR_KEY + 1);
	memcpy(k, key, klen);
	k[klen] = '\0';
	if (klen > PROFILE_ERR_KEY) {
		klen = profile_utf8_truncate(k, PROFILE_ERR_KEY);
		memcpy(k + klen, "...", 4);
	}
	if (op == NULL)
		snprintf(c->out->error, sizeof c->out->error, "%s '%s'", what, k);
	else
		snprintf(c->out->error, sizeof c->out->error, "%s: '%s' %s", op, k, what);
}

/* Truncate every string inside V (V included) in place; V is our copy. */
static void truncate_strings(cJSON *v)
{
	cJSON *ch;

	if (cJSON_IsString(v) && v->valuestring != NULL) {
		profile_utf8_truncate(v->valuestring, PROFILE_MAX_STRING);
		return;
	}
	if (cJSON_IsArray(v) || cJSON_IsObject(v))
		for (ch = v->child; ch != NULL; ch = ch->next)
			truncate_strings(ch);
}

/* Deep copy of V with strings truncated; NULL only when out of memory. */
static cJSON *copy_value(const cJSON *v)
{
	cJSON *d = cJSON_Duplicate(v, 1);

	if (d != NULL)
		truncate_strings(d);
	return d;
}

/* Reject property names over the limit; 1 when KEY may be used. */
static int key_ok(struct apply_ctx *c, const char *op, const char *key)
{
	if (key == NULL) { /* only from a hand-built update, never parsed */
		note_error(c, op, NULL, "property name missing");
		return 0;
	}
	if (strlen(key) <= PROFILE_MAX_KEY)
		return 1;
	note_error(c, op, key, "is longer than %d bytes", PROFILE_MAX_KEY);
	return 0;
}

/* 1 when a new key may be added without passing the property cap. */
static int room_for_key(struct apply_ctx *c, const char *op, const char *key)
{
	if (c->n_props < PROFILE_MAX_PROPS)
		return 1;
	note_error(c, op, key, "not added: profile has %d properties", PROFILE_MAX_PROPS);
	return 0;
}

/* Store ITEM (ownership taken in all cases) under KEY: replace CUR when it
 * is the current value, else add a new key (caller checked the cap). */
static enum mp_err put_prop(struct apply_ctx *c, const char *key, cJSON *cur, cJSON *item)
{
	if (cur != NULL) {
		if (!cJSON_ReplaceItemInObjectCaseSensitive(c->profile, key, item)) {
			cJSON_Delete(item);
			return MP_E_NOMEM;
		}
		return MP_OK;
	}
	/* cJSON_AddItemToObject hands ITEM to the profile on success */
	if (!cJSON_AddItemToObject(c->profile, key, item)) {
		cJSON_Delete(item);
		return MP_E_NOMEM;
	}
	c->n_props++;
	return MP_OK;
}

/* Common front of the object-valued operations: 1 when VAL is an object. */
static int need_object(struct apply_ctx *c, const char *op, const cJSON *val)
{
	if (cJSON_IsObject(val))
		return 1;
	note_error(c, op, NULL, "value must be an object");
	return 0;
}

static enum mp_err set_common(struct apply_ctx *c, const char *op, const cJSON *val, int once)
{
	const cJSON *kv;
	cJSON *cur, *copy;
	enum mp_err rc;

	if (!need_object(c, op, val))
		return MP_OK;
	cJSON_ArrayForEach(kv, val) {
		if (!key_ok(c, op, kv->string))
			continue;
		cur = cJSON_GetObjectItemCaseSensitive(c->profile, kv->string);
		if (cur != NULL && once)
			continue;
		if (cur == NULL && !room_for_key(c, op, kv->string))
			continue;
		if ((copy = copy_value(kv)) == NULL)
			return MP_E_NOMEM;
		if ((rc = put_prop(c, kv->string, cur, copy)) != MP_OK)
			return rc;
	}
	return MP_OK;
}

static enum mp_err op_set(struct apply_ctx *c, const char *op, const cJSON *val)
{
	return set_common(c, op, val, 0);
}

static enum mp_err op_set_once(struct apply_ctx *c, const char *op, const cJSON *val)
{
	return set_common(c, op, val, 1);
}

/* The sum is a double; integral operands give an integral result as long as
 * it stays below 2^53.  A non-finite sum would print as null: rejected. */
static enum mp_err op_add(struct apply_ctx *c, const char *op, const cJSON *val)
{
	const cJSON *kv;
	cJSON *cur, *num;
	double sum;

	if (!need_object(c, op, val))
		return MP_OK;
	cJSON_ArrayForEach(kv, val) {
		if (!key_ok(c, op, kv->string))
			continue;
		if (!cJSON_IsNumber(kv)) {
			note_error(c, op, kv->string, "is not a number");
			continue;
		}
		cur = cJSON_GetObjectItemCaseSensitive(c->profile, kv->string);
		if (cur != NULL && !cJSON_IsNumber(cur)) {
			note_error(c, op, kv->string, "current value is not a number");
			continue;
		}
		sum = (cur != NULL ? cur->valuedouble : 0.0) + kv->valuedouble;
		if (!isfinite(sum)) {
			note_error(c, op, kv->string, "result is out of range");
			continue;
		}
		if (cur != NULL) {
			cJSON_SetNumberHelper(cur, sum);
			continue;
		}
		if (!room_for_key(c, op, kv->string))
			continue;
		if ((num = cJSON_CreateNumber(sum)) == NULL)
			return MP_E_NOMEM;
		if (put_prop(c, kv->string, NULL, num) != MP_OK)
			return MP_E_NOMEM;
	}
	return MP_OK;
}

/* Return the list stored under KEY, creating it (missing: []) or wrapping a
 * non-list current value into [old].  *LIST is NULL with MP_OK when the key
 * would pass the property cap (error already noted). */
static enum mp_err get_list(struct apply_ctx *c, const char *op, const char *key, cJSON **list)
{
	cJSON *cur, *arr, *old;
	enum mp_err rc;

	*list = NULL;
	cur = cJSON_GetObjectItemCaseSensitive(c->profile, key);
	if (cJSON_IsArray(cur)) {
		*list = cur;
		return MP_OK;
	}
	if (cur == NULL && !room_for_key(c, op, key))
		return MP_OK;
	if ((arr = cJSON_CreateArray()) == NULL)
		return MP_E_NOMEM;
	if (cur != NULL) {
		/* copy, because replacing CUR below frees it */
		if ((old = cJSON_Duplicate(cur, 1)) == NULL) {
			cJSON_Delete(arr);
			return MP_E_NOMEM;
		}
		cJSON_AddItemToArray(arr, old); /* ARR owns OLD */
	}
	if ((rc = put_prop(c, key, cur, arr)) != MP_OK)
		return rc;
	*list = arr;
	return MP_OK;
}

static enum mp_err op_append(struct apply_ctx *c, const char *op, const cJSON *val)
{
	const cJSON *kv;
	cJSON *list, *copy;
	enum mp_err rc;

	if (c->kind == PROFILE_GROUP) {
		note_error(c, op, NULL, "not supported for group profiles");
		return MP_OK;
	}
	if (!need_object(c, op, val))
		return MP_OK;
	cJSON_ArrayForEach(kv, val) {
		if (!key_ok(c, op, kv->string))
			continue;
		if ((rc = get_list(c, op, kv->string, &list)) != MP_OK)
			return rc;
		if (list == NULL)
			continue;
		if ((copy = copy_value(kv)) == NULL)
			return MP_E_NOMEM;
		cJSON_AddItemToArray(list, copy); /* LIST owns COPY */
	}
	return MP_OK;
}

static int list_contains(const cJSON *list, const cJSON *v)
{
	const cJSON *e;

	cJSON_ArrayForEach(e, list)
		if (cJSON_Compare(e, v, 1))
			return 1;
	return 0;
}

/* Add EL (our copy, ownership taken) to LIST unless an equal one is there. */
static void union_one(cJSON *list, cJSON *el)
{
	if (list_contains(list, el))
		cJSON_Delete(el);
	else
		cJSON_AddItemToArray(list, el); /* LIST owns EL */
}

static enum mp_err op_union(struct apply_ctx *c, const char *op, const cJSON *val)
{
	const cJSON *kv, *e;
	cJSON *list, *copy;
	enum mp_err rc;

	if (!need_object(c, op, val))
		return MP_OK;
	cJSON_ArrayForEach(kv, val) {
		if (!key_ok(c, op, kv->string))
			continue;
		if ((rc = get_list(c, op, kv->string, &list)) != MP_OK)
			return rc;
		if (list == NULL)
			continue;
		if (!cJSON_IsArray(kv)) {
			/* a scalar operand is the one-element list [scalar] */
			if ((copy = copy_value(kv)) == NULL)
				return MP_E_NOMEM;
			union_one(list, copy);
			continue;
		}
		cJSON_ArrayForEach(e, kv) {
			if ((copy = copy_value(e)) == NULL)
				return MP_E_NOMEM;
			union_one(list, copy);
		}
	}
	return MP_OK;
}

static enum mp_err op_remove(struct apply_ctx *c, const char *op, const cJSON *val)
{
	const cJSON *kv;
	cJSON *list, *e, *next, *needle;

	if (!need_object(c, op, val))
		return MP_OK;
	cJSON_ArrayForEach(kv, val) {
		if (!key_ok(c, op, kv->string))
			continue;
		list = cJSON_GetObjectItemCaseSensitive(c->profile, kv->string);
		if (!cJSON_IsArray(list))
			continue;
		/* compare as stored: truncated like every written string */
		if ((needle = copy_value(kv)) == NULL)
			return MP_E_NOMEM;
		for (e = list->child; e != NULL; e = next) {
			next = e->next;
			if (cJSON_Compare(e, needle, 1))
				cJSON_Delete(cJSON_DetachItemViaPointer(list, e));
		}
		cJSON_Delete(needle);
	}
	return MP_OK;
}

/* {prop: {...}}: shallow-merge into an object property; a missing or
 * non-object current value is replaced by a copy of the given object. */
static enum mp_err op_merge(struct apply_ctx *c, const char *op, const cJSON *val)
{
	const cJSON *kv, *m;
	cJSON *cur, *copy;
	enum mp_err rc;

	if (!need_object(c, op, val))
		return MP_OK;
	cJSON_ArrayForEach(kv, val) {
		if (!key_ok(c, op, kv->string))
			continue;
		if (!cJSON_IsObject(kv)) {
			note_error(c, op, kv->string, "value must be an object");
			continue;
		}
		cur = cJSON_GetObjectItemCaseSensitive(c->profile, kv->string);
		if (!cJSON_IsObject(cur)) {
			if (cur == NULL && !room_for_key(c, op, kv->string))
				continue;
			if ((copy = copy_value(kv)) == NULL)
				return MP_E_NOMEM;
			if ((rc = put_prop(c, kv->string, cur, copy)) != MP_OK)
				return rc;
			continue;
		}
		cJSON_ArrayForEach(m, kv) {
			if ((copy = copy_value(m)) == NULL)
				return MP_E_NOMEM;
			if (cJSON_GetObjectItemCaseSensitive(cur, m->string) != NULL) {
				if (!cJSON_ReplaceItemInObjectCaseSensitive(cur, m->string, copy)) {
					cJSON_Delete(copy);
					return MP_E_NOMEM;
				}
			} else if (!cJSON_AddItemToObject(cur, m->string, copy)) {
				cJSON_Delete(copy);
				return MP_E_NOMEM;
			}
		}
	}
	return MP_OK;
}

static void unset_one(struct apply_ctx *c, const char *op, const cJSON *name)
{
	cJSON *cur;

	if (!cJSON_IsString(name) || name->valuestring == NULL) {
		note_error(c, op, NULL, "names must be strings");
		return;
	}
	if (!key_ok(c, op, name->valuestring))
		return;
	cur = cJSON_GetObjectItemCaseSensitive(c->profile, name->valuestring);
	if (cur == NULL)
		return;
	cJSON_Delete(cJSON_DetachItemViaPointer(c->profile, cur));
	c->n_props--;
}

static enum mp_err op_unset(struct apply_ctx *c, const char *op, const cJSON *val)
{
	const cJSON *name;

	if (cJSON_IsString(val)) {
		unset_one(c, op, val);
		return MP_OK;
	}
	if (!cJSON_IsArray(val)) {
		note_error(c, op, NULL, "value must be an array");
		return MP_OK;
	}
	cJSON_ArrayForEach(name, val)
		unset_one(c, op, name);
	return MP_OK;
}

static enum mp_err op_delete(struct apply_ctx *c, const char *op, const cJSON *val)
{
	cJSON *ch;

	(void)op;
	(void)val; /* any value, "" and null included */
	while ((ch = c->profile->child) != NULL)
		cJSON_Delete(cJSON_DetachItemViaPointer(c->profile, ch));
	c->n_props = 0;
	c->out->deleted = 1;
	return MP_OK;
}

static int is_operation(const char *key)
{
	size_t i;

	for (i = 0; i < N_ELEMS(OPS); i++)
		if (strcmp(key, OPS[i].name) == 0)
			return 1;
	return 0;
}

static int is_modifier(const char *key)
{
	size_t i;

	for (i = 0; i < N_ELEMS(MODIFIERS); i++)
		if (strcmp(key, MODIFIERS[i]) == 0)
			return 1;
	return 0;
}

/* $ignore_time: true, 1, "true" and "1" are true; anything else is false. */
static int ignore_time(const cJSON *update)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(update, "$ignore_time");

	if (cJSON_IsTrue(v))
		return 1;
	if (cJSON_IsNumber(v))
		return v->valuedouble == 1.0;
	if (cJSON_IsString(v) && v->valuestring != NULL)
		return strcmp(v->valuestring, "true") == 0 || strcmp(v->valuestring, "1") == 0;
	return 0;
}

/* $last_seen = NOW_MS as "YYYY-MM-DDTHH:MM:SS" UTC; exempt from the cap. */
static enum mp_err set_last_seen(struct apply_ctx *c, int64_t now_ms)
{
	char buf[32];
	struct tm tm;
	time_t secs;
	cJSON *cur, *item;

	secs = (time_t)(now_ms / 1000 - (now_ms % 1000 < 0 ? 1 : 0));
	if (gmtime_r(&secs, &tm) == NULL ||
	    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		return MP_OK; /* time out of range: leave $last_seen alone */
	if ((item = cJSON_CreateString(buf)) == NULL)
		return MP_E_NOMEM;
	cur = cJSON_GetObjectItemCaseSensitive(c->profile, "$last_seen");
	return put_prop(c, "$last_seen", cur, item);
}

enum mp_err profile_apply(cJSON *profile, const cJSON *update, enum profile_kind kind,
			  int64_t now_ms, struct profile_outcome *out)
{
	struct profile_outcome scratch;
	struct apply_ctx c;
	const cJSON *kv;
	enum mp_err rc;
	size_t i;

	assert(profile != NULL && cJSON_IsObject(profile));
	if (out == NULL)
		out = &scratch;
	memset(out, 0, sizeof *out);
	c.profile = profile;
	c.kind = kind;
	c.n_props = cJSON_GetArraySize(profile);
	c.out = out;

	if (!cJSON_IsObject(update)) {
		note_error(&c, NULL, NULL, "update must be an object");
		return MP_E_INVALID;
	}
	cJSON_ArrayForEach(kv, update) {
		if (kv->string == NULL)
			continue; /* not from a parser; never an operation */
		if (is_operation(kv->string))
			out->n_ops++;
		else if (!is_modifier(kv->string))
			note_error(&c, NULL, kv->string, "unknown operation");
	}
	if (out->n_ops == 0) {
		snprintf(out->error, sizeof out->error, "no operation in update");
		return MP_E_INVALID;
	}
	for (i = 0; i < N_ELEMS(OPS); i++) {
		cJSON_ArrayForEach(kv, update) {
			if (kv->string == NULL || strcmp(kv->string, OPS[i].name) != 0)
				continue;
			if ((rc = OPS[i].fn(&c, OPS[i].name, kv)) != MP_OK)
				return rc;
		}
	}
	if (!out->deleted && !ignore_time(update))
		return set_last_seen(&c, now_ms);
	return MP_OK;
}
