/*
 * identity.h - Mixpanel's ID merge: which distinct_ids are one user
 * (spec ../shared/spec/mixpanel-http-api.md §9; our rules: docs/IDENTITY.md).
 *
 * Identity is resolved from the links found in the stored data every time
 * the query engine builds a view, so a merge is retroactive and the outcome
 * depends only on the set of links, never on the order they arrived in:
 *   simplified  ID_LINK_DEVICE ($device:D -> U): per device the link with
 *               the earliest time wins (tie: the smaller U), the device's
 *               other links are refused; user ids never merge.
 *   original    $identify (anon -> identified), $create_alias (alias ->
 *               distinct_id), $merge (ids[0], ids[1]) replayed in order of
 *               (time, event name, ids) with Mixpanel's checks.
 * Ids are small integers (the query engine's string ids); the caller
 * supplies their text for ordering and the anonymous-id check.
 */
#ifndef MP_IDENTITY_H
#define MP_IDENTITY_H

#include <stddef.h>
#include <stdint.h>
#include "err.h"

#define IDENTITY_MAX_CLUSTER 500   /* distinct_ids per cluster (original) */

enum id_link_kind { ID_LINK_DEVICE = 1, ID_LINK_IDENTIFY, ID_LINK_ALIAS, ID_LINK_MERGE };
enum id_fail {
	ID_FAIL_NONE = 0,
	ID_FAIL_SAME_IDS,          /* errSameIDs */
	ID_FAIL_ANON_NON_GUID,     /* errAnonDistinctIdNonGUIDForm */
	ID_FAIL_ANON_ASSIGNED,     /* errAnonDistinctIdAssignedAlready */
	ID_FAIL_MANY_IDS,          /* errManyIDs */
	ID_FAIL_ALIAS_EXISTS,      /* errAliasAlreadyExists */
	ID_FAIL_DEVICE_MAPPED      /* errDeviceAlreadyMapped: not the device's first user */
};

/* One link: A joins B's cluster (device -> user, $anon_id -> $identified_id,
 * alias -> distinct_id, $merge ids[0] and ids[1]) at time T (ms); FAIL is
 * filled by identity_resolve (ID_FAIL_NONE: applied). */
struct id_link {
	int64_t t;
	uint32_t kind, a, b, fail;
};

/* The text of id X (N bytes at the returned pointer). */
typedef const char *(*id_text_fn)(void *ctx, uint32_t x, size_t *n);

/* Resolve LINKS (*N of them, ids < N_IDS; sorted in place into the order
 * they apply in, FAIL filled; a repeat of a simplified pair is dropped and
 * *N lowered).  CANON (N_IDS entries) receives the
 * canonical id of every id (itself when merged with nothing).  ORIGINAL
 * selects the rules.  Returns MP_OK or MP_E_NOMEM. */
enum mp_err identity_resolve(int original, struct id_link *links, size_t *n, uint32_t n_ids,
			     id_text_fn text, void *ctx, uint32_t *canon);

/* Mixpanel's name of FAIL ("errManyIDs", ...), "" for ID_FAIL_NONE. */
const char *identity_fail_name(uint32_t fail);
/* "device", "$identify", "$create_alias" or "$merge". */
const char *identity_kind_name(uint32_t kind);

/* Is S (N bytes) an anonymous id in Mixpanel's sense: after an optional
 * "$device:" prefix, at least 16 characters of hex digits and dashes. */
int identity_anon_ok(const char *s, size_t n);

#endif
