/*
 * store.h - durable per-project storage: time-partitioned SQLite shards for
 * events, a meta database for profiles and groups, one writer per project.
 *
 * Layout (docs/STORAGE.md has the details):
 *   data_dir/<project>/meta.db            profiles, group profiles
 *   data_dir/<project>/events-YYYY-MM.db  events of one UTC month (shard_period=month)
 *   data_dir/<project>/events-YYYY-MM-DD.db                      (shard_period=day)
 *   data_dir/<project>/LOCK               flock()ed: one process per project
 * An event shard keeps events in two tables, `events` (clustered by time) and
 * `stage` (recent arrivals, merged into `events` in bulk); a reader of raw
 * shard files must read both.
 * Every file is in WAL mode; its schema comes from sql/<kind>/NNN_*.sql and
 * PRAGMA user_version records the last migration applied.
 *
 * Writes: callers hand a struct store_batch to store_submit().  Each project
 * has ONE writer thread (the only writer of its files): it takes every batch
 * queued since its last commit, applies them all in one transaction per file
 * touched (group commit), commits, and only then calls each batch's done()
 * callback.  A batch that fails to apply is rolled back alone: the group is
 * re-applied without it.  So done() with rc == MP_OK means the data is
 * committed (durable against a process crash with sync=normal, against power
 * loss with sync=full).
 *
 * Dedup: events with an $insert_id are keyed by (event, distinct_id, time ms,
 * $insert_id).  A repeat of a stored key replaces the stored event's
 * properties (Mixpanel shows the most recently ingested copy) and is counted
 * in n_dup; it is never stored twice, across batches and restarts.
 *
 * Saved funnels, saved reports (bookmarks) and dashboards live in meta.db;
 * they are written through short-lived connections of the calling thread
 * (store_funnel_*, store_bookmark_*, store_dashboard_*).
 *
 * Reads: store_export_* read committed data through their own read-only
 * connections, concurrently with the writer.
 *
 * Thread-safety: store_submit/store_write/store_event_count may be called
 * from any thread.  store_close() must not race with submits.
 */
#ifndef MP_STORE_H
#define MP_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "buf.h"
#include "config.h"
#include "err.h"
#include "profile.h"

/* Events older than a shard's newest are staged in arrival order and moved
 * into `events`, in id order, once this many are staged (docs/STORAGE.md). */
#define STORE_STAGE_MAX 131072

/* The writer remembers the ids it added to a shard's `events` above the
 * largest id it had loaded (base_max), up to this many (at most 8 MiB of
 * set and 4 MiB of list per shard), so a late event that falls among them
 * needs no lookup: seconds of live traffic.  Past it, base_max moves up to
 * the largest id and they are forgotten. */
#define STORE_APPENDED_MAX 500000

struct store;
struct store_project;
struct store_export;

/* One validated event.  All pointers are borrowed and must stay valid until
 * the batch's done() has been called. */
struct store_event {
	int64_t time_ms;          /* event time, UTC, ms, in [0, 2^42): outside it the
				     whole batch fails with MP_E_INVALID (ingest
				     guarantees 1971 .. now + 1 h) */
	const char *name;         /* event name, non-empty */
	const char *distinct_id;  /* "" allowed */
	const char *insert_id;    /* client $insert_id, or NULL: never deduplicated */
	const char *link_device;  /* "$device:D" when the event carried $device_id D and
				     $user_id (= distinct_id) under simplified ID merge:
				     recorded as an identity link, else NULL */
	const cJSON *props;       /* object of the properties to keep, stored as they
				     are: without token, time, distinct_id (ingest takes
				     them out); with $insert_id if sent */
};

/* One profile or group update (see profile.h). */
struct store_update {
	enum profile_kind kind;
	const char *distinct_id;  /* PROFILE_USER */
	const char *group_key;    /* PROFILE_GROUP */
	const char *group_id;     /* PROFILE_GROUP */
	const cJSON *update;      /* the whole update object (borrowed) */
	struct profile_outcome out; /* filled by the writer */
};

struct store_batch {
	struct store_event *events;
	size_t n_events;
	struct store_update *updates;
	size_t n_updates;
	int64_t recv_ms;          /* server receive time */
	/* privacy deletion (may be combined with nothing else): every event,
	 * identity link and user profile of these distinct_ids is deleted, and
	 * the task recorded in meta.db under DELETION_TASK with its counts */
	const char *const *delete_ids;
	size_t n_delete_ids;
	const char *deletion_task;     /* task id (required with delete_ids) */
	const char *deletion_type;     /* "GDPR" / "CCPA" */
	const char *deletion_ids_json; /* the ids as a JSON array, as recorded */
	/* results, valid in done() */
	enum mp_err rc;
	char err[160];
	size_t n_new;             /* events stored for the first time */
	size_t n_dup;             /* events that replaced a stored duplicate */
	int64_t n_del_events, n_del_profiles, n_del_links;  /* a deletion's counts */
	/* completion: called once, from the writer thread, after commit or failure */
	void (*done)(struct store_batch *b, void *arg);
	void *arg;
	struct store_batch *next_; /* private to store.c */
};

/* Open every configured project under cfg->data_dir (created if missing),
 * apply migrations and start one writer per project.  CFG must outlive the
 * store.  Returns MP_E_IO / MP_E_STORE / MP_E_FULL with a message in ERR. */
enum mp_err store_open(const struct config *cfg, struct store **out, char *err, size_t errlen);

/* Drain every queue (pending batches are still committed), stop the writers,
 * close all files.  NULL-safe. */
void store_close(struct store *st);

/* The project for a configured project (borrowed), or NULL. */
struct store_project *store_project_get(struct store *st, const struct config_project *p);

/* Queue B for the writer.  Returns MP_OK (done() will be called exactly once)
 * or MP_E_SHUTDOWN (done() will not be called). */
enum mp_err store_submit(struct store_project *sp, struct store_batch *b);

/* store_submit() and wait for done(); B->done must be NULL.  Returns B->rc. */
enum mp_err store_write(struct store_project *sp, struct store_batch *b);

/* Committed events in the project (stored once each). */
int64_t store_event_count(struct store_project *sp);

/* 1 if the project's last commit round succeeded; else 0 and the reason in
 * WHY (may be NULL).  A failing disk makes this 0 until a commit succeeds. */
int store_project_healthy(struct store_project *sp, char *why, size_t n);

/* Export: events with FROM_MS <= time < TO_MS, optionally only those named in
 * NAMES (N_NAMES > 0) and only those for which WHERE (may be NULL; the
 * export takes it over and frees it, also on failure) is true, ascending by
 * time (events of the same millisecond in no particular order).  LIMIT 0 =
 * no limit.  Returns MP_OK / MP_E_NOMEM / MP_E_STORE. */
struct expr;
enum mp_err store_export_open(struct store_project *sp, int64_t from_ms, int64_t to_ms,
			      const char *const *names, size_t n_names, size_t limit,
			      int time_in_ms, struct expr *where, struct store_export **out);

/* Append the next event as one JSON line (with '\n') to OUT.  Returns 1 when
 * a line was appended, 0 at the end, or -(enum mp_err) on error
 * (-MP_E_INVALID: the `where` expression failed on an event). */
int store_export_next(struct store_export *ex, struct buf *out);

void store_export_close(struct store_export *ex);
/* Show canonical ids (spec §9.5): RESOLVE(CTX, did, n, &len) returns the
 * canonical distinct_id of DID, or NULL when it is DID itself; an event
 * whose id resolves elsewhere is exported under the canonical id with its
 * own id as $distinct_id_before_identity (unless it already has one). */
void store_export_set_resolver(struct store_export *ex,
			       const char *(*resolve)(void *ctx, const char *did, size_t n, size_t *len),
			       void *ctx);

/* A user or group profile as JSON text (caller frees), or NULL if absent.
 * For groups pass KIND = PROFILE_GROUP with KEY and ID. */
char *store_profile_get(struct store_project *sp, enum profile_kind kind,
			const char *distinct_id, const char *group_key, const char *group_id);

/* ---------- read access for the query engine (colstore) ---------- */

struct sqlite3;

/* data_dir/<project> of SP. */
const char *store_project_dir(const struct store_project *sp);

/* Is NAME an event shard file ("events-KEY.db")?  Then 1, with KEY (32
 * bytes) and its UTC time range [*FROM, *TO) in ms; else 0. */
int store_shard_file(const char *name, char key[32], int64_t *from, int64_t *to);

/* A read-only connection to shard KEY (close with sqlite3_close).  A reader
 * must read both tables, `events` and `stage` (see above), and the shard's
 * `dict`, in one transaction. */
enum mp_err store_shard_open_ro(const struct store_project *sp, const char *key, struct sqlite3 **db);

/* A read-only connection to the project's meta.db (profiles, group_profiles,
 * saved objects; close with sqlite3_close).  PRAGMA data_version on a kept
 * connection tells when the writer committed a change. */
enum mp_err store_meta_open_ro(const struct store_project *sp, struct sqlite3 **db);

/* The first column of the first row of SQL (a fixed statement, no
 * parameters) through DB, or -1 when there is none or it fails. */
int64_t store_sql_int64(struct sqlite3 *db, const char *sql);

/* The shard's change counter (stats 'gen': +1 in every transaction that
 * changed it; persistent), read through DB; -1 if it cannot be read. */
int64_t store_shard_gen(struct sqlite3 *db);

/* ---------- privacy deletions (meta.db table deletions) ----------
 * A deletion is a store_batch with delete_ids, written with store_write():
 * done means committed.  Events are not removed but overwritten with a
 * tombstone (event name id 0, no distinct_id, no properties) that keeps
 * their slot, so deduplication still works (store.c invariant 6); every
 * reader skips tombstones. */
struct store_deletion {
	char compliance_type[8];
	char *distinct_ids;        /* JSON array (caller frees) */
	int64_t requested_ms, completed_ms, events, profiles, links;
};
/* Task TASK_ID, or MP_E_NOTFOUND. */
enum mp_err store_deletion_get(struct store_project *sp, const char *task_id, struct store_deletion *out);

/* ---------- saved cohorts (meta.db table cohorts) ----------
 * A cohort is stored as one JSON object (BODY), validated by the caller. */
/* Insert BODY (*ID == 0: a new cohort, *ID set) or replace cohort *ID
 * (MP_E_NOTFOUND if there is none). */
enum mp_err store_cohort_put(struct store_project *sp, int64_t *id, const char *body);
/* BODY of cohort ID (caller frees) and its times, or MP_E_NOTFOUND. */
enum mp_err store_cohort_get(struct store_project *sp, int64_t id, char **body, int64_t *created_ms,
			     int64_t *updated_ms);
enum mp_err store_cohort_delete(struct store_project *sp, int64_t id); /* MP_E_NOTFOUND if absent */
/* CB once per cohort in id order; a nonzero return stops (and is returned as MP_E_INVALID). */
enum mp_err store_cohort_list(struct store_project *sp,
			      int (*cb)(void *ctx, int64_t id, const char *body, int64_t created_ms,
					int64_t updated_ms),
			      void *ctx);

/* ---------- saved funnels (meta.db table funnels) ---------- */

/* Save a funnel; DEFINITION is its JSON ({"steps":[...],"length":N,
 * "length_unit":"day"}, validated by the caller).  *ID = its funnel_id. */
enum mp_err store_funnel_create(struct store_project *sp, const char *name, const char *definition,
				int64_t *id);

/* Name and definition (caller frees both) of funnel ID, or MP_E_NOTFOUND. */
enum mp_err store_funnel_get(struct store_project *sp, int64_t id, char **name, char **definition);

/* Append the JSON array of saved funnels, [{"funnel_id":N,"name":".."}], to OUT. */
enum mp_err store_funnel_list(struct store_project *sp, struct buf *out);

/* ---------- saved reports (meta.db table bookmarks) ----------
 * The store keeps what it is given: the caller validates names, the type
 * and the params JSON.  Strings of a struct store_bookmark are owned by it
 * (store_bookmark_clear frees them). */
struct store_bookmark {
	int64_t id;
	char *name, *type, *description;
	char *params;              /* JSON object text */
	int64_t created_ms, updated_ms;
};

/* Save a bookmark; *ID = its bookmark_id.  MP_E_STORE / MP_E_NOMEM. */
enum mp_err store_bookmark_create(struct store_project *sp, const char *name, const char *type,
				  const char *description, const char *params, int64_t *id);

/* Bookmark ID into *OUT (clear it after), or MP_E_NOTFOUND. */
enum mp_err store_bookmark_get(struct store_project *sp, int64_t id, struct store_bookmark *out);

/* Every bookmark, by id, as a malloc'ed array of *N (free with
 * store_bookmark_list_free); params are left NULL. */
enum mp_err store_bookmark_list(struct store_project *sp, struct store_bookmark **out, size_t *n);

/* Replace the fields that are not NULL and set updated_ms; MP_E_NOTFOUND
 * when there is no bookmark ID. */
enum mp_err store_bookmark_update(struct store_project *sp, int64_t id, const char *name, const char *type,
				  const char *description, const char *params);

/* Delete bookmark ID and, in the same transaction, its cells in every
 * dashboard's layout.  MP_E_NOTFOUND when there is none. */
enum mp_err store_bookmark_delete(struct store_project *sp, int64_t id);

void store_bookmark_clear(struct store_bookmark *b);            /* NULL-safe */
void store_bookmark_list_free(struct store_bookmark *a, size_t n); /* NULL-safe */

/* ---------- dashboards (meta.db tables dashboards, dashboard_items) ---------- */

/* One cell of a dashboard's layout.  name and type are the bookmark's,
 * filled (and owned) by store_dashboard_get; ignored on input. */
struct store_dash_item {
	int64_t bookmark_id;
	int x, y, w, h;
	char *name, *type;
};

struct store_dashboard {
	int64_t id;
	char *name, *description;
	struct store_dash_item *items; /* layout order */
	size_t n_items;
	int64_t created_ms, updated_ms;
};

/* Save a dashboard with layout ITEMS (N, in order).  Every bookmark must
 * exist when the transaction commits: else MP_E_NOTFOUND with *MISSING = the
 * first bookmark_id that does not (0 on every other outcome). */
enum mp_err store_dashboard_create(struct store_project *sp, const char *name, const char *description,
				   const struct store_dash_item *items, size_t n, int64_t *id, int64_t *missing);

/* Dashboard ID with its layout (each cell with its bookmark's name and
 * type) into *OUT (clear it after), or MP_E_NOTFOUND. */
enum mp_err store_dashboard_get(struct store_project *sp, int64_t id, struct store_dashboard *out);

/* Every dashboard, by id, without layouts (free with store_dashboard_list_free). */
enum mp_err store_dashboard_list(struct store_project *sp, struct store_dashboard **out, size_t *n);

/* Replace name and/or description (when not NULL) and, when SET_LAYOUT,
 * the whole layout with ITEMS.  MP_E_NOTFOUND: no dashboard ID (*MISSING 0)
 * or a bookmark of ITEMS does not exist (*MISSING = its id); nothing is
 * changed then. */
enum mp_err store_dashboard_update(struct store_project *sp, int64_t id, const char *name, const char *description,
				   int set_layout, const struct store_dash_item *items, size_t n, int64_t *missing);

/* Delete dashboard ID (the bookmarks stay), or MP_E_NOTFOUND. */
enum mp_err store_dashboard_delete(struct store_project *sp, int64_t id);

void store_dashboard_clear(struct store_dashboard *d);            /* NULL-safe */
void store_dashboard_list_free(struct store_dashboard *a, size_t n); /* NULL-safe */

#endif
