/*
 * userprops.c - snapshot of user and group profiles (contract in
 * include/userprops.h): each profile parsed once into a cJSON object, found
 * by a hash of its key (user: the distinct_id; group: key NUL id).
 */
#include "userprops.h"

#include <sqlite3.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct up_ent {
	char *key;                 /* owned */
	size_t len;
	cJSON *props;              /* owned */
};

struct userprops {
	atomic_int refs;
	struct up_ent *ents;       /* open addressing; key NULL = empty */
	size_t cap, n;
};

static uint64_t up_hash(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	while (n--)
		h = (h ^ (unsigned char)*s++) * 0x100000001b3ULL;
	return h ^ (h >> 29);
}

static enum mp_err up_put(struct userprops *up, const char *key, size_t len, cJSON *props)
{
	size_t i;

	if ((up->n + 1) * 2 > up->cap) {
		size_t cap = up->cap ? up->cap * 2 : 1024, k;
		struct up_ent *ne = calloc(cap, sizeof *ne);

		if (!ne)
			return MP_E_NOMEM;
		for (k = 0; k < up->cap; k++)
			if (up->ents[k].key) {
				for (i = up_hash(up->ents[k].key, up->ents[k].len) & (cap - 1); ne[i].key; i = (i + 1) & (cap - 1))
					;
				ne[i] = up->ents[k];
			}
		free(up->ents);
		up->ents = ne;
		up->cap = cap;
	}
	for (i = up_hash(key, len) & (up->cap - 1); up->ents[i].key; i = (i + 1) & (up->cap - 1))
		if (up->ents[i].len == len && !memcmp(up->ents[i].key, key, len))
			return MP_OK;      /* primary keys: cannot repeat */
	if (!(up->ents[i].key = malloc(len + 1)))
		return MP_E_NOMEM;
	memcpy(up->ents[i].key, key, len);
	up->ents[i].key[len] = '\0';
	up->ents[i].len = len;
	up->ents[i].props = props;
	up->n++;
	return MP_OK;
}

static const cJSON *up_get(const struct userprops *up, const char *key, size_t len)
{
	size_t i;

	if (!up || !up->cap)
		return NULL;
	for (i = up_hash(key, len) & (up->cap - 1); up->ents[i].key; i = (i + 1) & (up->cap - 1))
		if (up->ents[i].len == len && !memcmp(up->ents[i].key, key, len))
			return up->ents[i].props;
	return NULL;
}

/* Rows of SQL: (key text, [id text,] props JSON); user keys are "u" + id,
 * group keys "g" + key + NUL + id, so the two kinds share one table. */
static enum mp_err up_read(struct userprops *up, sqlite3 *db, const char *sql, int group)
{
	sqlite3_stmt *st = NULL;
	enum mp_err rc = MP_OK;
	char *key = NULL;
	size_t cap = 0;
	int r;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return MP_E_STORE;
	while (rc == MP_OK && (r = sqlite3_step(st)) == SQLITE_ROW) {
		const char *a = (const char *)sqlite3_column_text(st, 0);
		size_t an = (size_t)sqlite3_column_bytes(st, 0), bn = 0, n;
		const char *b = group ? (const char *)sqlite3_column_text(st, 1) : NULL;
		const char *js = (const char *)sqlite3_column_text(st, group ? 2 : 1);
		cJSON *props;

		if (group)
			bn = (size_t)sqlite3_column_bytes(st, 1);
		if (!a || !js || (group && !b))
			continue;
		n = 1 + an + (group ? 1 + bn : 0);
		if (n > cap) {
			char *nk = realloc(key, cap = n * 2);

			if (!nk) {
				rc = MP_E_NOMEM;
				break;
			}
			key = nk;
		}
		key[0] = group ? 'g' : 'u';
		memcpy(key + 1, a, an);
		if (group) {
			key[1 + an] = '\0';
			memcpy(key + 2 + an, b, bn);
		}
		if (!(props = cJSON_Parse(js)) || !cJSON_IsObject(props)) {
			cJSON_Delete(props);
			continue;      /* the writer stores objects; skip anything else */
		}
		if ((rc = up_put(up, key, n, props)) != MP_OK)
			cJSON_Delete(props);
	}
	if (rc == MP_OK && r != SQLITE_DONE)
		rc = MP_E_STORE;
	free(key);
	sqlite3_finalize(st);
	return rc;
}

enum mp_err userprops_load(sqlite3 *db, struct userprops **out)
{
	struct userprops *up = calloc(1, sizeof *up);
	enum mp_err rc;

	if (!up)
		return MP_E_NOMEM;
	atomic_init(&up->refs, 1);
	if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		userprops_unref(up);
		return MP_E_STORE;
	}
	rc = up_read(up, db, "SELECT distinct_id, props FROM profiles", 0);
	if (rc == MP_OK)
		rc = up_read(up, db, "SELECT group_key, group_id, props FROM group_profiles", 1);
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	if (rc != MP_OK) {
		userprops_unref(up);
		return rc;
	}
	*out = up;
	return MP_OK;
}

void userprops_ref(struct userprops *up)
{
	atomic_fetch_add(&up->refs, 1);
}

void userprops_unref(struct userprops *up)
{
	size_t i;

	if (!up || atomic_fetch_sub(&up->refs, 1) != 1)
		return;
	for (i = 0; i < up->cap; i++)
		if (up->ents[i].key) {
			free(up->ents[i].key);
			cJSON_Delete(up->ents[i].props);
		}
	free(up->ents);
	free(up);
}

void userprops_each_user(const struct userprops *up,
			 void (*cb)(void *ctx, const char *did, size_t n, const cJSON *props), void *ctx)
{
	size_t i;

	for (i = 0; up && i < up->cap; i++)
		if (up->ents[i].key && up->ents[i].key[0] == 'u')
			cb(ctx, up->ents[i].key + 1, up->ents[i].len - 1, up->ents[i].props);
}

const cJSON *userprops_user(const struct userprops *up, const char *did, size_t n)
{
	char tmp[260];

	if (n + 1 > sizeof tmp)
		return NULL;       /* distinct_ids are at most 255 bytes */
	tmp[0] = 'u';
	memcpy(tmp + 1, did, n);
	return up_get(up, tmp, n + 1);
}

const cJSON *userprops_group(const struct userprops *up, const char *key, size_t kn, const char *id,
			     size_t idn)
{
	char tmp[520];

	if (kn + idn + 2 > sizeof tmp)
		return NULL;
	tmp[0] = 'g';
	memcpy(tmp + 1, key, kn);
	tmp[1 + kn] = '\0';
	memcpy(tmp + 2 + kn, id, idn);
	return up_get(up, tmp, kn + idn + 2);
}
