/*
 * userprops.h - a read-only snapshot of a project's user and group
 * profiles, for user["x"] and group["x"] in report expressions
 * (docs/QUERIES.md "Profile properties").  Reports use profile values as
 * they are now, as Mixpanel does by default.
 *
 * Thread-safety: immutable once loaded; refcounted (userprops_ref/unref
 * from any thread).
 */
#ifndef MP_USERPROPS_H
#define MP_USERPROPS_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "err.h"

struct sqlite3;
struct userprops;

/* Read every profile and group profile through DB (a meta.db connection). */
enum mp_err userprops_load(struct sqlite3 *db, struct userprops **out);
void userprops_ref(struct userprops *up);
void userprops_unref(struct userprops *up); /* NULL-safe */

/* The properties (a JSON object) of the user profile DID, or NULL. */
const cJSON *userprops_user(const struct userprops *up, const char *did, size_t n);
/* CB once per user profile (distinct_id DID of N bytes, its properties). */
void userprops_each_user(const struct userprops *up,
			 void (*cb)(void *ctx, const char *did, size_t n, const cJSON *props), void *ctx);
/* The properties of group profile (KEY, ID), or NULL. */
const cJSON *userprops_group(const struct userprops *up, const char *key, size_t kn, const char *id,
			     size_t idn);

#endif
