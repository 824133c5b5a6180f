/*
 * colstore.h - the columnar projection of a project's events that every
 * report reads (the storage-backend interface of the query engine).
 *
 * The SQLite shards stay the durable truth; this is a rebuildable, in-memory
 * copy laid out for scans:
 *   - one row per stored event, sorted by (user key, time, storage order),
 *     so one user's events are contiguous and time-ordered (funnels,
 *     retention and unique counts walk a user at a time);
 *   - columns t (ms, UTC), ev (event name), did (distinct_id), user (dense
 *     user key), and each event's property record (propcodec format, with
 *     every dict id rewritten to the project-wide string id);
 *   - one project-wide string table (event names, distinct_ids, property
 *     keys and short values), append-only, so a string id is stable for the
 *     life of the process and two strings are equal iff their ids are.
 *
 * Restarts: see colstore_persist().
 *
 * Currency: colstore_acquire() checks every shard file (PRAGMA data_version
 * on a kept read connection, one cheap call per shard) and re-reads the
 * shards that changed since they were loaded, then rebuilds the sorted view
 * (a stable counting sort by user: O(events)).  A view is therefore
 * exactly the committed data at the time of the call.
 *
 * The user key: colstore_user_key() is the one seam through which every
 * report counts users.  Today it is the distinct_id itself; the identity
 * issue replaces it with the resolved identity.  Events whose distinct_id
 * is "" have user == CS_NO_USER and sort after every user.
 *
 * Thread-safety: any thread may acquire; a view is immutable and
 * refcounted, so queries run concurrently with a rebuild.  String lookups
 * (cs_string_id) take the projection's mutex.
 */
#ifndef MP_COLSTORE_H
#define MP_COLSTORE_H

#include <stddef.h>
#include <stdint.h>
#include "err.h"
#include "expr.h"
#include "identity.h"
#include "store.h"

#define CS_NO_USER UINT32_MAX

struct colstore;
struct cs_strings;

struct cs_view {
	size_t n;                  /* events */
	const int64_t *t;          /* time, ms since epoch, UTC */
	const uint32_t *ev;        /* string id of the event name */
	const uint32_t *did;       /* string id of the distinct_id */
	const uint32_t *user;      /* user key, 0..n_users-1, or CS_NO_USER */
	uintptr_t rec_base;        /* property record of event i (a varint length, then
				      the record; use cs_props) at rec_base + rec_off[i] */
	const uint64_t *rec_off;
	uint64_t rec_limit;        /* offsets and records end below this (cs_props checks) */
	uint32_t n_users;
	const uint32_t *ustart;    /* events of user u: [ustart[u], ustart[u+1]); then the CS_NO_USER ones */
	/* the same events grouped by event name, each group in time order */
	uint32_t n_names;          /* distinct event names */
	const uint32_t *name_sid;  /* name index -> string id */
	const uint32_t *nstart;    /* events of name k: [nstart[k], nstart[k+1]) in nt/npos */
	const int64_t *nt;         /* time */
	const uint32_t *npos;      /* position in the arrays above (t, ev, did, user, rec);
				      readers skip a position >= n (a damaged projection file) */
	uint32_t n_strings;        /* string ids 1..n_strings-1 are valid in this view */
	const struct cs_strings *strings;
	/* private */
	struct cs_view_priv *priv;
};

/* Open the projection of SP, whose identity setting is original ID merge
 * when IDENTITY_ORIGINAL (else simplified); nothing is read until the
 * first acquire. */
enum mp_err colstore_open(struct store_project *sp, int identity_original, struct colstore **out);
void colstore_free(struct colstore *cs); /* NULL-safe; views must be released first */

/* A view of every event committed before the call (see Currency). */
enum mp_err colstore_acquire(struct colstore *cs, struct cs_view **out);
void colstore_release(struct cs_view *v); /* NULL-safe */

/* Make loads in progress (and later ones) give up with MP_E_SHUTDOWN, so a
 * stopping server does not wait for a long projection build.  Any thread. */
void colstore_stop(struct colstore *cs);

/* Write the current view to data_dir/<project>/projection.bin when it is
 * not there yet and was built at least QUIET_MS ago (so a busy project is
 * not rewritten after every commit).  The first acquire after a restart maps
 * that file instead of reading every shard when each shard's persistent
 * change counter still matches; it is a cache, rebuilt whenever in doubt. */
enum mp_err colstore_persist(struct colstore *cs, int64_t quiet_ms);

/* Remove the projection file (after a privacy deletion, so no copy of the
 * deleted events stays on disk); the next quiet period writes a new one. */
void colstore_drop_file(struct colstore *cs);

/* The string of id ID (1 <= ID < v->n_strings) and its length. */
const char *cs_string(const struct cs_view *v, uint32_t id, size_t *len);

/* The id of string S (N bytes) or 0 if no event holds it. */
uint32_t cs_string_id(const struct cs_view *v, const char *s, size_t n);

/* The property record of event I: *LEN bytes at the returned pointer. */
const unsigned char *cs_props(const struct cs_view *v, size_t i, size_t *len);

/* The name index of event-name string id SID, or UINT32_MAX. */
uint32_t cs_name_index(const struct cs_view *v, uint32_t sid);

/* First index in [A, B) of the time-sorted array T whose time is >= X. */
size_t cs_lower_bound(const int64_t *t, size_t a, size_t b, int64_t x);

/* A property column: the top-level property with key string id KEY for every
 * event (indexed like t/ev/...), decoded once and cached in the view.
 * code[i]: CS_V_UNDEF (absent), CS_V_NULL, CS_V_FALSE, CS_V_TRUE,
 * CS_V_NUMBER (value in num[i]), CS_V_OTHER (a list, an object or a long
 * inline string: evaluate the record), or CS_V_STR + string id. */
enum { CS_V_UNDEF = 0, CS_V_NULL, CS_V_FALSE, CS_V_TRUE, CS_V_NUMBER, CS_V_OTHER, CS_V_STR = 8 };
enum { CS_COL_MAIN = 1, CS_COL_BYNAME = 2 };
struct cs_column {
	uint32_t key;
	unsigned orders;           /* which of the arrays below exist */
	const uint32_t *code;      /* CS_COL_MAIN: indexed like t/ev/... */
	const double *num;         /* NULL when no event has a number */
	const uint32_t *ncode;     /* CS_COL_BYNAME: in by-name order, ncode[j] = code[npos[j]] */
	const double *nnum;
};
/* The column with (at least) the orders in ORDERS (NULL on out of memory,
 * or when the view already holds 32 columns: evaluate the records then). */
const struct cs_column *cs_column(const struct cs_view *v, uint32_t key, unsigned orders);

/* The user key of a distinct_id string id (the identity seam): ids merged
 * into one identity cluster share one key (docs/IDENTITY.md). */
uint32_t colstore_user_key(const struct cs_view *v, uint32_t did);

/* ---------- identity (docs/IDENTITY.md) ----------
 *
 * Each view resolves every distinct_id to its cluster's canonical
 * distinct_id when it is built, from the identity links in the data
 * (simplified: $device_id/$user_id pairs; original: $identify,
 * $create_alias, $merge events), replayed in event-time order so arrival
 * order never matters. */

/* The canonical distinct_id (string id) of distinct_id string id DID: DID
 * itself when it is merged with nothing (or unknown). */
uint32_t colstore_canonical(const struct cs_view *v, uint32_t did);

/* The string ids of every distinct_id in the cluster of canonical id CANON
 * that occurs in the data (as an event's distinct_id or in a link), CANON
 * first; up to MAX written to OUT; returns how many there are. */
size_t colstore_cluster(const struct cs_view *v, uint32_t canon, uint32_t *out, size_t max);

/* The links the identity was built from, in the order they were applied
 * (simplified: by time), each with its outcome (identity.h). */
size_t colstore_links(const struct cs_view *v, const struct id_link **out);

/* ---------- group analytics ----------
 *
 * The group view of V for group key KEY (the string id of an event
 * property such as "company"): the same events re-sorted by (group, time),
 * where each "user" is one group id, the value of the event's KEY property
 * (a string, or a number written as text; an event whose KEY is a list
 * counts under each distinct id in it, so it appears once per group).
 * Every report runs unchanged on it and counts groups instead of users.
 * Events without the key are left out.  Built on first use and kept with V
 * (up to 16 derived views), so *OUT lives as long as V is held.  MP_E_NOMEM,
 * MP_E_TOOBIG (too many derived views), MP_E_INVALID (V is a group view). */
enum mp_err colstore_group_view(const struct cs_view *v, uint32_t key, struct cs_view **out);
/* The id of group GROUP (0..n_users-1) of group view G. */
const char *colstore_group_name(const struct cs_view *g, uint32_t group, size_t *len);

/* ---------- filtered views (cohorts) ----------
 *
 * The events of V's users U with KEEP[U] (V->n_users entries) set, same
 * order and user keys; every report runs unchanged on it.  KEY names the
 * filter (same key, same KEEP): the view is kept with V (up to 4 filtered
 * views) and reused; when V's cache is full *OWNED is set and the caller
 * frees *OUT with colstore_derived_free() after use.  KEEP NULL: only look
 * the view up (MP_E_NOTFOUND when it is not kept).  A group view can be
 * made of a filtered view.  MP_E_NOMEM, MP_E_INVALID (V is derived). */
enum mp_err colstore_filter_view(const struct cs_view *v, uint64_t key, const uint8_t *keep,
				 struct cs_view **out, int *owned);
void colstore_derived_free(struct cs_view *g); /* NULL-safe; only derived views */

/* ---------- expression evaluation over a view ---------- */

/* Per-query evaluation context: set .i to the event, pass cs_eval_lookup
 * and the context to expr_eval/expr_eval_where.  Scopes:
 *   properties["x"]   the event's property (also "time": seconds, and
 *                     "distinct_id")
 *   event["$time"]    datetime; event["name"] / event["$event_name"];
 *                     event["distinct_id"]
 *   user[...], group[...]  through EXT (see below) */
struct cs_eval {
	const struct cs_view *v;
	size_t i;
	size_t j;                  /* the event's index in the by-name order, or SIZE_MAX
				      (lets column reads be sequential in by-name scans) */
	/* private: property names resolved to string ids, and list scratch */
	struct { const char *name; size_t len; uint32_t id; } names[16];
	size_t n_names;
	struct expr_value items[256];
	/* user[...] and group[...]: answered by EXT when set, else undefined
	 * (the query layer reads profiles: query_report.h q_eval_init) */
	int (*ext)(void *ext_ctx, struct cs_eval *ce, enum expr_scope scope, const char *name, size_t len,
		   struct expr_value *out);
	void *ext_ctx;
};

void cs_eval_init(struct cs_eval *ce, const struct cs_view *v);
int cs_eval_lookup(void *ctx, enum expr_scope scope, const char *name, size_t name_len,
		   struct expr_value *out);

#endif
