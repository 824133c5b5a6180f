/*
 * profile.h - apply Mixpanel profile operations to a profile.
 *
 * A profile (user or group) is a cJSON object of properties.  One update
 * object from /engage or /groups carries one or more operations; they are
 * applied in the order $set, $set_once, $add, $append, $union, $remove,
 * $unset, $delete (spec §6.3):
 *   $set       object: overwrite each key
 *   $set_once  object: set keys that are not present
 *   $add       object of numbers: add to the current number (missing = 0);
 *              a non-numeric operand, or a non-numeric current value, skips
 *              that key and is reported as a key error
 *   $append    object: append each value to the list (missing -> [v]; a
 *              non-list current value becomes [old, v]); no dedupe.  Not for
 *              groups (PROFILE_GROUP): reported as an error.
 *   $union     object of arrays (a scalar is treated as [scalar]): add each
 *              element not already present (deep equality)
 *   $remove    object: remove every element equal to the value from the list;
 *              no-op when absent or not a list
 *   $unset     array of names (a single string is accepted): delete them
 *   $delete    any value: delete the whole profile
 *   $merge     object {prop: {...}}: shallow-merge into an object property
 *              (Android/Swift)
 * Modifiers next to the operations ($token, $distinct_id, $group_key,
 * $group_id, $ip, $time, $ignore_time, $ignore_alias, $latitude, $longitude,
 * $device_id, $user_id, $had_persisted_distinct_id, $mp_metadata) are not
 * operations and are ignored here (the caller reads them).  Any other key is
 * an unknown operation: reported as an error, the rest still applies.
 * Unless $ignore_time is truthy, `$last_seen` is set to NOW as
 * "YYYY-MM-DDTHH:MM:SS" (UTC) whenever the update did not delete the profile.
 *
 * Limits: a profile keeps at most 2000 properties; keys longer than 255 bytes
 * are rejected; string values are truncated to 255 UTF-8 bytes on a character
 * boundary (list elements too).
 *
 * Ownership: profile_apply() mutates PROFILE in place and never takes
 * ownership of UPDATE (values are deep-copied).
 */
#ifndef MP_PROFILE_H
#define MP_PROFILE_H

#include <stdint.h>
#include <stddef.h>
#include <cjson/cJSON.h>
#include "err.h"

enum profile_kind { PROFILE_USER = 0, PROFILE_GROUP = 1 };

struct profile_outcome {
	int deleted;     /* the update contained $delete: caller removes the profile */
	int n_ops;       /* operations recognised in the update */
	int n_errors;    /* operation keys or property keys that were rejected */
	char error[160]; /* first error, "" if none, e.g. "$add: 'x' is not a number" */
};

/* Apply UPDATE (one update object) to PROFILE (an object, never NULL; pass an
 * empty object for a new profile).  NOW_MS is the server time used for
 * $last_seen.  Returns MP_OK (even when some keys were rejected: see OUT),
 * MP_E_INVALID when UPDATE is not an object or has no operation at all,
 * or MP_E_NOMEM (PROFILE may then be partially updated; the caller discards it). */
enum mp_err profile_apply(cJSON *profile, const cJSON *update, enum profile_kind kind,
			  int64_t now_ms, struct profile_outcome *out);

/* Truncate a UTF-8 string in place to at most MAX bytes on a character
 * boundary; returns the new length.  Shared with ingest. */
size_t profile_utf8_truncate(char *s, size_t max);

#endif
