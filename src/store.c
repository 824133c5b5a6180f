/*
 * store.c - per-project SQLite shards, group-commit writer, export reader.
 *
 * What it keeps: events in time-partitioned shard files, profiles and group
 * profiles in meta.db (layout in include/store.h and docs/STORAGE.md).
 *
 * Invariants:
 *   1. Exactly one thread writes a project's files: its writer thread.  All
 *      shard handles, dict caches and prepared statements in struct shard and
 *      the meta statements are touched by that thread only (after open).
 *   2. A batch's done() runs only after every file it touched has committed,
 *      or after it was rolled back (rc != MP_OK).
 *   3. The dict map of an open shard holds exactly the rows of its dict
 *      table as the writer's transaction sees them: every string once, so
 *      the table needs no unique index.  After a rollback it is reloaded.
 *   4. Readers (export) use their own read-only connections and never see
 *      uncommitted data (WAL snapshot isolation).
 *   5. An event row is in exactly one of `events` and `stage`, under its
 *      final id; the staged map of an open shard holds exactly the stage
 *      table's (id -> seq) as the writer's transaction sees them, and the
 *      appended set and the edge list together exactly the ids in `events`
 *      above base_max (the rows merged from the stage, and the rows
 *      appended at its right edge, in id order, since base_max was set).
 *      Saved definitions (the funnels, bookmarks, dashboards and
 *      dashboard_items tables of meta.db) are the exception:
 *      they hold no cached state, so short-lived connections of the query
 *      threads write them and SQLite's locking orders them with the writer.
 *   6. Event rows are never deleted (only replaced in place by a duplicate):
 *      dedup relies on unbroken runs of taken slots from a key's home slot.
 *      A privacy deletion overwrites a row with a tombstone (e = 0, d = 0,
 *      empty properties) that keeps its slot taken; readers skip e = 0.
 *   7. No row of `events` has an id in a shard's [gap_lo, gap_hi): a slot
 *      lookup that found the next row above an id remembers the gap, so
 *      later ids in it (a backfill behind newer rows, in time order) need
 *      no lookup, and go straight into `events`, each moving gap_lo above
 *      itself.  Appends land above main_max >= gap_hi - 1; a stage merge
 *      and a rollback (map reload) empty the gap.
 */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <malloc.h>
#include <unistd.h>
#include <time.h>

#include "expr.h"
#include "jarena.h"
#include "log.h"
#include "propcodec.h"
#include "schema.h"

#define STORE_KEEP_OPEN_SHARDS 24   /* shards kept open between groups; a group may open more */
#define STORE_DICT_VALUES_MAX (1u << 20)  /* past this many strings, new short values go inline */
#define STORE_WAL_CKPT_PAGES 16384       /* new WAL frames (64 MiB) that wake the checkpointer */
#define STORE_WAL_MAX_PAGES 65536        /* WAL frames (256 MiB) past which the writer checkpoints */
#define STORE_CKPT_QUEUE 32              /* shards waiting for the checkpointer */
#define STORE_WAL_LEFT_PAGES 512         /* new frames a checkpoint pass may leave to the writer */
#define STORE_IDLE_RELEASE_S 2           /* idle writer: release page caches after this long */
#define STORE_SLOT_BITS 20
#define STORE_SLOTS ((int64_t)1 << STORE_SLOT_BITS)
#define STORE_MAX_TIME_MS ((int64_t)1 << 42)   /* 2109-05-15; row ids stay below 2^62 */

/* ---------- string -> id cache (open addressing, power-of-two) ---------- */

/* An entry keeps the string's first 8 bytes and its hash beside the id, so
 * a lookup of a short string (most property keys and values) reads no other
 * memory, and a longer one compares only its tail. */
struct strmap_ent {
	char *s;          /* NULL: empty */
	uint64_t head;    /* the first 8 bytes, zero-padded */
	uint32_t len;
	uint32_t hash;
	int64_t id;
};

struct strmap {
	struct strmap_ent *ents;
	size_t cap;   /* power of two or 0 */
	size_t n;
};

/* A string looked up or added: computed once per string. */
struct strmap_key {
	const char *s;
	size_t n;
	uint64_t head;
	uint32_t hash;
};

static uint64_t strmap_load8(const char *p)
{
	uint64_t w;

	memcpy(&w, p, 8);
	return w;
}

/* The map's own hash: in memory only (never persisted, unlike
 * store_hash64's slot choice), so it may change freely.  Fixed-size loads
 * only: the head, then 8 bytes at a time, the last load overlapping. */
static struct strmap_key strmap_key(const char *s, size_t n)
{
	struct strmap_key k = { s, n, 0, 0 };
	uint64_t h;
	size_t i;

	if (n >= 8) {
		k.head = strmap_load8(s);
	} else {
		for (i = 0; i < n; i++)
			k.head |= (uint64_t)(unsigned char)s[i] << (8 * i);
	}
	h = (k.head ^ (uint64_t)n * 0x9E3779B97F4A7C15ULL) * 0xff51afd7ed558ccdULL;
	if (n > 8) {
		for (i = 8; i + 8 < n; i += 8) {
			h = (h ^ strmap_load8(s + i)) * 0xc4ceb9fe1a85ec53ULL;
			h ^= h >> 29;
		}
		h = (h ^ strmap_load8(s + n - 8)) * 0xc4ceb9fe1a85ec53ULL;
	}
	h ^= h >> 32;
	h *= 0x9E3779B97F4A7C15ULL;
	k.hash = (uint32_t)(h >> 32);
	return k;
}

static uint64_t store_hash64(const void *p, size_t n, uint64_t h)
{
	const unsigned char *s = p;
	uint64_t w;

	/* 8 bytes per round (multiply-xorshift), then a splitmix64 avalanche;
	 * the value is persisted only through slot choice, which is also
	 * re-derived by probing, so changing it never breaks old shards */
	h ^= (uint64_t)n * 0x9E3779B97F4A7C15ULL;
	while (n >= 8) {
		memcpy(&w, s, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdULL;
		h ^= h >> 32;
		s += 8;
		n -= 8;
	}
	w = 0;
	memcpy(&w, s, n);
	h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 30; h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27; h *= 0x94d049bb133111ebULL;
	h ^= h >> 31;
	return h;
}

static void strmap_clear(struct strmap *m)
{
	size_t i;

	for (i = 0; i < m->cap; i++)
		free(m->ents[i].s);
	free(m->ents);
	m->ents = NULL;
	m->cap = m->n = 0;
}

static int64_t strmap_get(const struct strmap *m, const struct strmap_key *k)
{
	size_t i;

	if (!m->cap)
		return 0;
	for (i = k->hash & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		const struct strmap_ent *e = &m->ents[i];

		if (!e->s)
			return 0;
		if (e->hash == k->hash && e->len == k->n && e->head == k->head &&
		    (k->n <= 8 || memcmp(e->s + 8, k->s + 8, k->n - 8) == 0))
			return e->id;
	}
}

static enum mp_err strmap_put(struct strmap *m, const struct strmap_key *k, int64_t id)
{
	struct strmap_ent *e;
	size_t i;

	if ((m->n + 1) * 2 > m->cap) {
		size_t ncap = m->cap ? m->cap * 2 : 1024, j;
		struct strmap_ent *ne = calloc(ncap, sizeof *ne);

		if (!ne)
			return MP_E_NOMEM;
		for (j = 0; j < m->cap; j++) {
			e = &m->ents[j];
			if (!e->s)
				continue;
			for (i = e->hash & (ncap - 1); ne[i].s; i = (i + 1) & (ncap - 1))
				;
			ne[i] = *e;
		}
		free(m->ents);
		m->ents = ne;
		m->cap = ncap;
	}
	for (i = k->hash & (m->cap - 1); m->ents[i].s; i = (i + 1) & (m->cap - 1))
		;
	e = &m->ents[i];
	if (!(e->s = malloc(k->n + 1)))
		return MP_E_NOMEM;
	memcpy(e->s, k->s, k->n);
	e->s[k->n] = '\0';
	e->head = k->head;
	e->len = (uint32_t)k->n;
	e->hash = k->hash;
	e->id = id;
	m->n++;
	return MP_OK;
}

/* ---------- int64 -> int64 map (open addressing; key 0 = empty) ---------- */

/* With keys_only set the map keeps no values (a set, 8 bytes a slot) and
 * imap_get() answers 1 for every key it holds. */
struct imap {
	int64_t *keys, *vals;     /* vals: NULL when keys_only */
	size_t cap, n;            /* cap: power of two or 0 */
	int keys_only;
};

/* Free the table (the keys_only choice stays). */
static void imap_clear(struct imap *m)
{
	int keys_only = m->keys_only;

	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof *m);
	m->keys_only = keys_only;
}

static size_t imap_slot(const struct imap *m, int64_t k)
{
	uint64_t h = (uint64_t)k * 0x9E3779B97F4A7C15ULL;

	return (size_t)(h ^ (h >> 29)) & (m->cap - 1);
}

/* Forget every entry, keeping the table for the next ones. */
static void imap_empty(struct imap *m)
{
	if (m->cap)
		memset(m->keys, 0, m->cap * sizeof *m->keys);
	m->n = 0;
}

/* Value of K, or 0 if absent (values are row ids >= 1). */
static int64_t imap_get(const struct imap *m, int64_t k)
{
	size_t i;

	if (!m->n)
		return 0;  /* an emptied table is not read (its cache lines are cold) */
	for (i = imap_slot(m, k); m->keys[i]; i = (i + 1) & (m->cap - 1))
		if (m->keys[i] == k)
			return m->vals ? m->vals[i] : 1;
	return 0;
}

/* ---------- ascending int64 list (ids appended at the right edge) ---------- */

struct ivec {
	int64_t *v;
	size_t n, cap;
};

static void ivec_clear(struct ivec *a)
{
	free(a->v);
	memset(a, 0, sizeof *a);
}

/* Append K, larger than every element. */
static enum mp_err ivec_push(struct ivec *a, int64_t k)
{
	if (a->n == a->cap) {
		size_t ncap = a->cap ? a->cap * 2 : 1024;
		int64_t *nv = realloc(a->v, ncap * sizeof *nv);

		if (!nv)
			return MP_E_NOMEM;
		a->v = nv;
		a->cap = ncap;
	}
	a->v[a->n++] = k;
	return MP_OK;
}

static int ivec_has(const struct ivec *a, int64_t k)
{
	size_t lo = 0, hi = a->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (a->v[mid] < k)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < a->n && a->v[lo] == k;
}

static enum mp_err imap_put(struct imap *m, int64_t k, int64_t v)
{
	size_t i;

	if ((m->n + 1) * 2 > m->cap) {
		struct imap big = { NULL, NULL, m->cap ? m->cap * 2 : 1024, 0, m->keys_only };

		big.keys = calloc(big.cap, sizeof *big.keys);
		big.vals = big.keys_only ? NULL : calloc(big.cap, sizeof *big.vals);
		if (!big.keys || (!big.keys_only && !big.vals)) {
			imap_clear(&big);
			return MP_E_NOMEM;
		}
		for (i = 0; i < m->cap; i++)
			if (m->keys[i] && imap_put(&big, m->keys[i], m->vals ? m->vals[i] : 1) != MP_OK) {
				imap_clear(&big);
				return MP_E_NOMEM;
			}
		imap_clear(m);
		*m = big;
	}
	for (i = imap_slot(m, k); m->keys[i] && m->keys[i] != k; i = (i + 1) & (m->cap - 1))
		;
	if (!m->keys[i])
		m->n++;
	m->keys[i] = k;
	if (m->vals)
		m->vals[i] = v;
	return MP_OK;
}

/* ---------- structures ---------- */

struct shard {
	struct store_project *sp;
	char key[16];             /* "2024-05" or "2024-05-17" */
	int64_t from_ms, to_ms;   /* the times it holds: [from_ms, to_ms) */
	sqlite3 *db;
	sqlite3_stmt *st_stage_ins, *st_stage_upd, *st_main_ins, *st_main_get, *st_stage_get, *st_dup_upd,
		*st_dict_ins, *st_stat, *st_begin, *st_commit;
	sqlite3_stmt *st_link_put;
	struct strmap dict;
	struct imap links;        /* a << 32 | b -> earliest time + 1 of every idlinks row */
	struct imap staged;       /* id -> stage.seq of every staged row (invariant 5) */
	struct imap appended;     /* keys only: the rows merged into `events` above base_max (invariant 5) */
	struct ivec edge;         /* ascending: the rows appended at its right edge above base_max */
	int64_t base_max;         /* ids up to here are looked up in `events`; above, in appended */
	int64_t main_max;         /* largest id in `events` (0 if empty): ids above it are not there */
	int64_t gap_lo, gap_hi;   /* no row of `events` has an id in [gap_lo, gap_hi) (invariant 7) */
	int wal_asked;            /* WAL frames when the checkpointer was last asked (0: since the log restarted) */
	uint64_t anon_seq;        /* slot source for events without $insert_id */
	int64_t insert_id_key;    /* dict id of "$insert_id", 0 if not yet interned */
	int in_tx;
	int64_t added;            /* events added in the open transaction */
	uint64_t last_use;
};

struct store_project {
	struct store *st;
	const struct config_project *cfg;
	char *dir;
	int lock_fd;              /* flock'ed data_dir/<project>/LOCK: one process per project */
	sqlite3 *meta;
	sqlite3_stmt *st_prof_get, *st_prof_put, *st_prof_del;
	sqlite3_stmt *st_grp_get, *st_grp_put, *st_grp_del;
	int meta_in_tx;
	struct shard **shards;    /* open shards; more than STORE_KEEP_OPEN_SHARDS only during a group */
	size_t n_shards, cap_shards;
	struct shard *last;       /* the shard used last (the common case for the next event) */
	uint64_t use_clock;
	struct buf enc;           /* writer scratch for property records */

	pthread_t writer;
	int writer_started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct store_batch *q_head, *q_tail;
	int stopping;
	int64_t n_events;         /* guarded by mu */
	char last_error[160];     /* guarded by mu: why the last commit failed, "" if it did not */

	/* the checkpointer copies shards' WAL into their files, so the writer
	 * does not wait for those copies and their fsyncs */
	pthread_t ckpt;
	int ckpt_started;
	pthread_mutex_t ckpt_mu;
	pthread_cond_t ckpt_cv;
	char ckpt_keys[STORE_CKPT_QUEUE][16]; /* guarded by ckpt_mu: shard keys waiting */
	size_t n_ckpt;
	char ckpt_done[STORE_CKPT_QUEUE][16]; /* guarded by ckpt_mu: keys checkpointed since */
	size_t n_done;
	int ckpt_stopping;
};

struct store {
	const struct config *cfg;
	struct store_project *projects;
	size_t n_projects;
};

/* ---------- helpers ---------- */

static enum mp_err store_sqlite_err(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_FULL: case SQLITE_READONLY: case SQLITE_CANTOPEN: case SQLITE_IOERR:
	case SQLITE_PERM:
		return MP_E_FULL;
	case SQLITE_NOMEM:
		return MP_E_NOMEM;
	default:
		return MP_E_STORE;
	}
}

static enum mp_err store_exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);

	if (rc != SQLITE_OK) {
		log_error("sqlite: %s: %s", sql, msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return store_sqlite_err(rc);
	}
	return MP_OK;
}

/* Run a statement without results (BEGIN, COMMIT) and reset it. */
static enum mp_err store_step_reset(sqlite3_stmt *st)
{
	int r = sqlite3_step(st);

	sqlite3_reset(st);
	return r == SQLITE_DONE ? MP_OK : store_sqlite_err(r);
}

static enum mp_err store_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
	int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);

	if (rc != SQLITE_OK) {
		log_error("sqlite prepare: %s: %s", sql, sqlite3_errmsg(db));
		return store_sqlite_err(rc);
	}
	return MP_OK;
}

/* The pragma for the configured sync mode (every connection that writes or
 * checkpoints a file must sync it the same way). */
static const char *store_sync_pragma(enum config_sync sync)
{
	return sync == CONFIG_SYNC_FULL ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL";
}

/* Open a database file, set WAL and sync mode, apply KIND's migrations. */
static enum mp_err store_db_open(const char *path, const char *kind, enum config_sync sync,
				 int readonly, sqlite3 **out)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int flags = readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	int rc, version = 0;
	unsigned i;
	enum mp_err err = MP_OK;
	char sql[64];

	rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		log_error("open %s: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		err = store_sqlite_err(rc);
		goto out;
	}
	sqlite3_busy_timeout(db, 5000);
	if (readonly)
		goto check_version;
	/* 4 KiB pages (SQLite's default, stated so it is a decision): a commit
	 * writes every page it dirtied to the WAL, and small group commits
	 * dirty a few pages each, so smaller pages mean less WAL traffic (16 KiB
	 * pages cost 2-3x the bytes written per event for ~4% less disk) */
	if ((err = store_exec(db, "PRAGMA page_size=4096")) != MP_OK)
		goto out;
	if ((err = store_exec(db, "PRAGMA journal_mode=WAL")) != MP_OK)
		goto out;
	/* checkpoint every ~64 MiB of WAL instead of 4 MiB: fewer fsyncs */
	if ((err = store_exec(db, "PRAGMA wal_autocheckpoint=16384")) != MP_OK)
		goto out;
	if ((err = store_exec(db, store_sync_pragma(sync))) != MP_OK)
		goto out;
	/* 64 MiB of page cache per open file (used only as pages are touched):
	 * keeps a month shard's hot b-tree pages and dictionary index in memory */
	if ((err = store_exec(db, "PRAGMA cache_size=-65536")) != MP_OK)
		goto out;
check_version:
	if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW) {
		err = MP_E_STORE;
		goto out;
	}
	version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	st = NULL;
	{
		unsigned newest = 0;

		for (i = 0; i < schema_n_migrations; i++)
			if (!strcmp(schema_migrations[i].kind, kind) && schema_migrations[i].version > newest)
				newest = schema_migrations[i].version;
		if (version > (int)newest) {
			/* written by a newer mixpaneld: refuse rather than misread it */
			log_error("%s: schema version %d is newer than this mixpaneld knows (%u); "
				  "upgrade mixpaneld", path, version, newest);
			err = MP_E_STORE;
			goto out;
		}
	}
	for (i = 0; !readonly && i < schema_n_migrations; i++) {
		const struct schema_migration *m = &schema_migrations[i];

		if (strcmp(m->kind, kind) != 0 || (int)m->version <= version)
			continue;
		if ((err = store_exec(db, "BEGIN IMMEDIATE")) != MP_OK)
			goto out;
		snprintf(sql, sizeof sql, "PRAGMA user_version=%u", m->version);
		if ((err = store_exec(db, m->sql)) != MP_OK || (err = store_exec(db, sql)) != MP_OK) {
			log_error("%s: migration %s/%s failed", path, kind, m->file);
			store_exec(db, "ROLLBACK");
			goto out;
		}
		if ((err = store_exec(db, "COMMIT")) != MP_OK)
			goto out;
		log_info("%s: applied migration %s/%s", path, kind, m->file);
	}
out:
	sqlite3_finalize(st);
	if (err != MP_OK) {
		sqlite3_close(db);
		db = NULL;
	}
	*out = db;
	return err;
}

/* Shard key of a UTC time; the key orders like the time. */
static void store_shard_key(int64_t t_ms, enum config_shard_period period, char key[16])
{
	time_t secs = (time_t)(t_ms >= 0 ? t_ms / 1000 : (t_ms - 999) / 1000);
	struct tm tm;

	gmtime_r(&secs, &tm);
	/* times are validated to lie in 1971..9999 before they reach the store */
	strftime(key, 16, period == CONFIG_SHARD_DAY ? "%Y-%m-%d" : "%Y-%m", &tm);
}

/* Time range [from, to) in ms of a shard key; returns 0 if KEY is no shard key. */
static int store_shard_range(const char *key, int64_t *from, int64_t *to)
{
	struct tm tm;
	int y, mo, d = 0;
	char tail;

	memset(&tm, 0, sizeof tm);
	if (sscanf(key, "%4d-%2d-%2d%c", &y, &mo, &d, &tail) == 3) {
		tm.tm_year = y - 1900; tm.tm_mon = mo - 1; tm.tm_mday = d;
		*from = (int64_t)timegm(&tm) * 1000;
		tm.tm_mday++;
	} else if (sscanf(key, "%4d-%2d%c", &y, &mo, &tail) == 2) {
		tm.tm_year = y - 1900; tm.tm_mon = mo - 1; tm.tm_mday = 1;
		*from = (int64_t)timegm(&tm) * 1000;
		tm.tm_mon++;
	} else {
		return 0;
	}
	if (mo < 1 || mo > 12 || (d && (d < 1 || d > 31)))
		return 0;
	*to = (int64_t)timegm(&tm) * 1000;
	return 1;
}

/* Is NAME an event shard file ("events-KEY.db")?  Then 1, with KEY (32
 * bytes) and its time range [*FROM, *TO); else 0. */
int store_shard_file(const char *name, char key[32], int64_t *from, int64_t *to)
{
	size_t n = strlen(name);

	if (n < 11 || strncmp(name, "events-", 7) != 0 || strcmp(name + n - 3, ".db") != 0 || n - 10 >= 32)
		return 0;
	memcpy(key, name + 7, n - 10);
	key[n - 10] = '\0';
	return store_shard_range(key, from, to);
}

/* ---------- shard handles (writer thread only) ---------- */

static void shard_close(struct shard *sh)
{
	if (!sh)
		return;
	sqlite3_finalize(sh->st_stage_ins);
	sqlite3_finalize(sh->st_stage_upd);
	sqlite3_finalize(sh->st_main_ins);
	sqlite3_finalize(sh->st_main_get);
	sqlite3_finalize(sh->st_stage_get);
	sqlite3_finalize(sh->st_dup_upd);
	imap_clear(&sh->staged);
	imap_clear(&sh->appended);
	ivec_clear(&sh->edge);
	sqlite3_finalize(sh->st_link_put);
	imap_clear(&sh->links);
	sqlite3_finalize(sh->st_dict_ins);
	sqlite3_finalize(sh->st_stat);
	sqlite3_finalize(sh->st_begin);
	sqlite3_finalize(sh->st_commit);
	strmap_clear(&sh->dict);
	if (sqlite3_close(sh->db) != SQLITE_OK)
		log_error("shard %s: close failed", sh->key);
	free(sh);
}

/* Read the shard's whole dictionary into its map (invariant 3). */
static enum mp_err shard_load_dict(struct shard *sh)
{
	sqlite3_stmt *st = NULL;
	enum mp_err rc = MP_OK;
	int r;

	strmap_clear(&sh->dict);
	sh->insert_id_key = 0;
	if (sqlite3_prepare_v2(sh->db, "SELECT id, s FROM dict", -1, &st, NULL) != SQLITE_OK)
		return MP_E_STORE;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		const char *s = (const char *)sqlite3_column_text(st, 1);
		size_t n = (size_t)sqlite3_column_bytes(st, 1);
		int64_t id = sqlite3_column_int64(st, 0);

		if (!s)
			continue;
		struct strmap_key k = strmap_key(s, n);

		if ((rc = strmap_put(&sh->dict, &k, id)) != MP_OK)
			break;
		if (n == 10 && memcmp(s, "$insert_id", 10) == 0)
			sh->insert_id_key = id;
	}
	if (rc == MP_OK && r != SQLITE_DONE)
		rc = store_sqlite_err(r);
	sqlite3_finalize(st);
	return rc;
}

/* Read the shard's identity links into its map. */
static enum mp_err shard_load_links(struct shard *sh)
{
	sqlite3_stmt *st = NULL;
	enum mp_err rc = MP_OK;
	int r;

	imap_clear(&sh->links);
	if (sqlite3_prepare_v2(sh->db, "SELECT a, b, t FROM idlinks", -1, &st, NULL) != SQLITE_OK)
		return MP_E_STORE;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t a = sqlite3_column_int64(st, 0), b = sqlite3_column_int64(st, 1);

		if (a > 0 && b > 0 && a < INT32_MAX && b < INT32_MAX &&
		    (rc = imap_put(&sh->links, a << 32 | b, sqlite3_column_int64(st, 2) + 1)) != MP_OK)
			break;
	}
	if (rc == MP_OK && r != SQLITE_DONE)
		rc = store_sqlite_err(r);
	sqlite3_finalize(st);
	return rc;
}

/* Rebuild the map of staged rows from the stage table (invariant 5), and
 * the largest id in `events`, which becomes base_max (no appended rows). */
static enum mp_err shard_load_stage(struct shard *sh)
{
	sqlite3_stmt *st = NULL;
	enum mp_err rc = MP_OK;
	int r;

	imap_clear(&sh->staged);
	imap_clear(&sh->appended);
	ivec_clear(&sh->edge);
	if (sqlite3_prepare_v2(sh->db, "SELECT coalesce(max(id),0) FROM events", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		return MP_E_STORE;
	}
	sh->main_max = sh->base_max = sqlite3_column_int64(st, 0);
	sh->gap_lo = sh->gap_hi = 0;
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(sh->db, "SELECT seq, id FROM stage", -1, &st, NULL) != SQLITE_OK)
		return MP_E_STORE;
	while ((r = sqlite3_step(st)) == SQLITE_ROW)
		if ((rc = imap_put(&sh->staged, sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 0))) != MP_OK)
			break;
	if (rc == MP_OK && r != SQLITE_DONE)
		rc = store_sqlite_err(r);
	sqlite3_finalize(st);
	return rc;
}

/* ---------- the checkpointer ---------- */

/* Add KEY to the key list KEYS of *N (ckpt_mu held); 1 if it was added,
 * 0 if it was there already or the list is full. */
static int store_ckpt_push(char (*keys)[16], size_t *n, const char *key)
{
	size_t i;

	for (i = 0; i < *n && strcmp(keys[i], key); i++)
		;
	if (i < *n || *n == STORE_CKPT_QUEUE)
		return 0;
	snprintf(keys[(*n)++], sizeof keys[0], "%s", key);
	return 1;
}

/* Take KEY out of the key list KEYS of *N (ckpt_mu held); 1 if it was there. */
static int store_ckpt_take(char (*keys)[16], size_t *n, const char *key)
{
	size_t i;

	for (i = 0; i < *n && strcmp(keys[i], key); i++)
		;
	if (i == *n)
		return 0;
	memmove(keys[i], keys[i + 1], (--*n - i) * sizeof keys[0]);
	return 1;
}

/* SQLite's WAL hook, run by the writer after each commit of a shard.
 *
 * Every STORE_WAL_CKPT_PAGES new frames wake the checkpointer, which copies
 * the log into the file (and syncs both) while the writer goes on.  The log
 * can only restart from its beginning when a write transaction starts with
 * every frame copied, which never happens while the writer keeps appending:
 * so once the checkpointer is done, the writer copies the few frames it
 * added meanwhile itself, here, between two transactions.  A log past
 * STORE_WAL_MAX_PAGES (the checkpointer cannot keep up) is checkpointed here
 * too, as SQLite's autocheckpoint would. */
static int store_wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
	struct shard *sh = arg;
	struct store_project *sp = sh->sp;
	int finish = frames >= STORE_WAL_MAX_PAGES;

	if (frames < sh->wal_asked)
		sh->wal_asked = 0; /* the log restarted */
	if (sh->wal_asked) {
		pthread_mutex_lock(&sp->ckpt_mu);
		finish |= store_ckpt_take(sp->ckpt_done, &sp->n_done, sh->key);
		pthread_mutex_unlock(&sp->ckpt_mu);
	}
	if (finish) {
		sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	} else if (frames >= sh->wal_asked + STORE_WAL_CKPT_PAGES) {
		pthread_mutex_lock(&sp->ckpt_mu);
		if (store_ckpt_push(sp->ckpt_keys, &sp->n_ckpt, sh->key))
			pthread_cond_signal(&sp->ckpt_cv);
		pthread_mutex_unlock(&sp->ckpt_mu);
		sh->wal_asked = frames;
	}
	return SQLITE_OK;
}

/* Checkpointer thread: a passive checkpoint of each shard asked for, on a
 * connection of its own (it never blocks the writer; a shard's last
 * connection to close does the final checkpoint, whichever it is). */
static void *store_ckpt_main(void *arg)
{
	struct store_project *sp = arg;

	pthread_setname_np(pthread_self(), "mp-ckpt");
	pthread_mutex_lock(&sp->ckpt_mu);
	for (;;) {
		char key[16], path[4096];
		sqlite3 *db = NULL;
		int rc, pass, done;

		while (!sp->n_ckpt && !sp->ckpt_stopping)
			pthread_cond_wait(&sp->ckpt_cv, &sp->ckpt_mu);
		if (sp->ckpt_stopping)
			break;
		memcpy(key, sp->ckpt_keys[0], sizeof key);
		store_ckpt_take(sp->ckpt_keys, &sp->n_ckpt, key);
		pthread_mutex_unlock(&sp->ckpt_mu);

		snprintf(path, sizeof path, "%s/events-%s.db", sp->dir, key);
		rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(db, store_sync_pragma(sp->st->cfg->sync), NULL, NULL, NULL);
		/* again while the writer added many frames during the last pass:
		 * it copies what is left at its next commit, briefly */
		for (pass = 0, done = 0; rc == SQLITE_OK && pass < 6; pass++) {
			int n_log = 0, n_ckpt = 0;

			rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &n_log, &n_ckpt);
			if (rc != SQLITE_OK || n_log - done <= STORE_WAL_LEFT_PAGES)
				break;
			done = n_log;
		}
		if (rc != SQLITE_OK && rc != SQLITE_BUSY)
			log_warn("shard %s: checkpoint: %s", key, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		pthread_mutex_lock(&sp->ckpt_mu);
		if (rc == SQLITE_OK)
			store_ckpt_push(sp->ckpt_done, &sp->n_done, key);
	}
	pthread_mutex_unlock(&sp->ckpt_mu);
	return NULL;
}

static enum mp_err shard_open(struct store_project *sp, const char *key, struct shard **out)
{
	struct shard *sh = calloc(1, sizeof *sh);
	char path[4096];
	enum mp_err rc;

	if (!sh)
		return MP_E_NOMEM;
	sh->sp = sp;
	sh->appended.keys_only = 1;
	snprintf(sh->key, sizeof sh->key, "%s", key);
	if (!store_shard_range(key, &sh->from_ms, &sh->to_ms)) {
		rc = MP_E_INVALID;
		goto fail;
	}
	snprintf(path, sizeof path, "%s/events-%s.db", sp->dir, key);
	if ((rc = store_db_open(path, "shard", sp->st->cfg->sync, 0, &sh->db)) != MP_OK)
		goto fail;
	if ((rc = store_prepare(sh->db, "INSERT INTO stage(id,e,d,r,p) VALUES(?,?,?,?,?)", &sh->st_stage_ins)) ||
	    (rc = store_prepare(sh->db, "UPDATE stage SET p=?, r=? WHERE seq=?", &sh->st_stage_upd)) ||
	    (rc = store_prepare(sh->db, "INSERT INTO events(id,e,d,r,p) VALUES(?,?,?,?,?)", &sh->st_main_ins)) ||
	    (rc = store_prepare(sh->db, "SELECT e,d,p,id FROM events WHERE id>=? ORDER BY id LIMIT 1", &sh->st_main_get)) ||
	    (rc = store_prepare(sh->db, "SELECT e,d,p FROM stage WHERE seq=?", &sh->st_stage_get)) ||
	    (rc = store_prepare(sh->db, "UPDATE events SET p=?, r=? WHERE id=?", &sh->st_dup_upd)) ||
	    (rc = store_prepare(sh->db, "INSERT INTO dict(s) VALUES(?)", &sh->st_dict_ins)) ||
	    (rc = store_prepare(sh->db, "INSERT INTO idlinks(a,b,t) VALUES(?1,?2,?3) ON CONFLICT(a,b) "
					"DO UPDATE SET t=excluded.t WHERE excluded.t < idlinks.t", &sh->st_link_put)) ||
	    (rc = store_prepare(sh->db, "UPDATE stats SET value=value+CASE name WHEN 'gen' THEN 1 ELSE ?1 END "
						  "WHERE name IN ('events','gen')", &sh->st_stat)) ||
	    /* a transaction per group: prepared once, not compiled per commit */
	    (rc = store_prepare(sh->db, "BEGIN IMMEDIATE", &sh->st_begin)) ||
	    (rc = store_prepare(sh->db, "COMMIT", &sh->st_commit)))
		goto fail;
	/* the writer's log is checkpointed by the checkpointer thread */
	sqlite3_wal_hook(sh->db, store_wal_hook, sh);
	sh->anon_seq = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ULL;
	if ((rc = shard_load_dict(sh)) != MP_OK || (rc = shard_load_stage(sh)) != MP_OK ||
	    (rc = shard_load_links(sh)) != MP_OK)
		goto fail;
	*out = sh;
	return MP_OK;
fail:
	shard_close(sh);
	return rc;
}

/* Shard KEY, opened (and its transaction begun) on demand. */
static enum mp_err store_shard_get(struct store_project *sp, const char *key, struct shard **out)
{
	size_t i;
	struct shard *sh = NULL;
	enum mp_err rc;

	for (i = 0; i < sp->n_shards; i++) {
		if (strcmp(sp->shards[i]->key, key) == 0) {
			sh = sp->shards[i];
			break;
		}
	}
	if (!sh) {
		if (sp->n_shards == sp->cap_shards) {
			size_t ncap = sp->cap_shards ? sp->cap_shards * 2 : STORE_KEEP_OPEN_SHARDS * 2;
			struct shard **n = realloc(sp->shards, ncap * sizeof *n);

			if (!n)
				return MP_E_NOMEM;
			sp->shards = n;
			sp->cap_shards = ncap;
		}
		if ((rc = shard_open(sp, key, &sh)) != MP_OK)
			return rc;
		sp->shards[sp->n_shards++] = sh;
	}
	sh->last_use = ++sp->use_clock;
	if (!sh->in_tx) {
		if ((rc = store_step_reset(sh->st_begin)) != MP_OK)
			return rc;
		sh->in_tx = 1;
		sh->added = 0;
	}
	*out = sh;
	return MP_OK;
}

/* The shard for time T, opened (and its transaction begun) on demand. */
static enum mp_err store_shard_for(struct store_project *sp, int64_t t_ms, struct shard **out)
{
	char key[16];
	enum mp_err rc;

	if (sp->last && t_ms >= sp->last->from_ms && t_ms < sp->last->to_ms && sp->last->in_tx) {
		sp->last->last_use = ++sp->use_clock;
		*out = sp->last;
		return MP_OK;
	}
	store_shard_key(t_ms, sp->st->cfg->shard_period, key);
	if ((rc = store_shard_get(sp, key, out)) == MP_OK)
		sp->last = *out;
	return rc;
}

static int64_t shard_intern(void *ctx, const char *s, size_t n, int optional)
{
	struct shard *sh = ctx;
	struct strmap_key k = strmap_key(s, n);
	int64_t id = strmap_get(&sh->dict, &k);
	int rc;

	if (id > 0)
		return id;
	/* the map holds the whole dictionary (invariant 3): a miss is a new
	 * string.  Short values stop being added past a cap, so a column of
	 * unique ids cannot grow the map without bound; they go inline. */
	if (optional && sh->dict.n >= STORE_DICT_VALUES_MAX)
		return 0;
	sqlite3_bind_text(sh->st_dict_ins, 1, s, (int)n, SQLITE_STATIC);
	rc = sqlite3_step(sh->st_dict_ins);
	sqlite3_reset(sh->st_dict_ins);
	if (rc != SQLITE_DONE)
		return -(int64_t)store_sqlite_err(rc);
	id = sqlite3_last_insert_rowid(sh->db);
	if (strmap_put(&sh->dict, &k, id) != MP_OK)
		return -(int64_t)MP_E_NOMEM;
	return id;
}

/* ---------- applying one batch (writer thread) ---------- */

/* Is slot ID taken (in `events` or staged)?  Returns 1 taken, 0 free, 2 free
 * and inside the gap remembered from an earlier lookup, or a negative enum
 * mp_err.  When taken and EV has an $insert_id, *DUP says
 * whether the row there carries EV's dedup key, and *STAGE_SEQ is its stage
 * row (0 when it is in `events`). */
static int store_slot(struct shard *sh, int64_t id, const struct store_event *ev, int64_t e_id,
		      int64_t d_id, int *dup, int64_t *stage_seq)
{
	int64_t seq = imap_get(&sh->staged, id);
	sqlite3_stmt *st = seq ? sh->st_stage_get : sh->st_main_get;
	int r;

	*dup = 0;
	*stage_seq = seq;
	if (!seq && id <= sh->main_max && id >= sh->gap_lo && id < sh->gap_hi)
		return 2; /* inside the remembered gap (invariant 7) */
	if (!seq && (id > sh->main_max ||
		     (id > sh->base_max && !imap_get(&sh->appended, id) && !ivec_has(&sh->edge, id))))
		return 0; /* not in `events` (invariant 5): the common case, no lookup */
	sqlite3_bind_int64(st, 1, seq ? seq : id);
	r = sqlite3_step(st);
	if (r == SQLITE_ROW && !seq && sqlite3_column_int64(st, 3) != id) {
		/* the seek found the next row above ID: nothing in between */
		sh->gap_lo = id;
		sh->gap_hi = sqlite3_column_int64(st, 3);
		sqlite3_reset(st);
		return 0;
	}
	if (r == SQLITE_ROW) {
		if (ev->insert_id && sqlite3_column_int64(st, 0) == e_id && sqlite3_column_int64(st, 1) == d_id) {
			const unsigned char *p = sqlite3_column_blob(st, 2), *v, *ve, *s;
			size_t pn = (size_t)sqlite3_column_bytes(st, 2), il = strlen(ev->insert_id);
			uint64_t len;

			if (pc_find(p, pn, sh->insert_id_key, &v, &ve) == 1 && *v == PC_STR &&
			    (s = pc_varint(v + 1, ve, &len)) && len == il && memcmp(s, ev->insert_id, il) == 0)
				*dup = 1;
		}
		sqlite3_reset(st);
		return 1;
	}
	sqlite3_reset(st);
	if (r != SQLITE_DONE)
		return -(int)store_sqlite_err(r);
	if (seq) {
		log_error("shard %s: staged row %lld is missing", sh->key, (long long)seq);
		return -(int)MP_E_STORE;
	}
	sh->gap_lo = id;  /* no row at or above ID */
	sh->gap_hi = sh->main_max + 1;
	return 0;
}

/* Find where EV goes in the millisecond of its time: walk the slots from
 * HOME (wrapping inside the millisecond) until a free one.  Rows are never
 * deleted, so a stored copy of EV's dedup key sits on the unbroken run of
 * taken slots that starts at HOME: if one is met, *DUP_ID is its id and
 * *DUP_SEQ its stage row (0 if in `events`).  Otherwise *FREE_ID is the free
 * slot, and *IN_GAP says it lies in the gap an earlier lookup found.  MP_E_TOOBIG when the millisecond is full (2^20 events). */
static enum mp_err store_probe(struct shard *sh, const struct store_event *ev, int64_t e_id,
			       int64_t d_id, uint32_t home, int64_t *free_id, int *in_gap,
			       int64_t *dup_id, int64_t *dup_seq)
{
	int64_t base = ev->time_ms << STORE_SLOT_BITS;
	int64_t k;

	*dup_id = *free_id = *dup_seq = 0;
	*in_gap = 0;
	for (k = 0; k < STORE_SLOTS; k++) {
		int64_t id = base + ((home + k) & (STORE_SLOTS - 1)), seq;
		int dup, r = store_slot(sh, id, ev, e_id, d_id, &dup, &seq);

		if (r < 0)
			return (enum mp_err)(-r);
		if (r != 1) {
			*free_id = id;
			*in_gap = r == 2;
			return MP_OK;
		}
		if (dup) {
			*dup_id = id;
			*dup_seq = seq;
			return MP_OK;
		}
	}
	return MP_E_TOOBIG;
}

/* Forget the appended ids: ids up to main_max take the lookup from now on
 * (invariant 5 holds with base_max = main_max).  FREE: give the map's
 * memory back too (an idle writer), else keep it for the next ids. */
static void shard_forget_appended(struct shard *sh, int free_map)
{
	if (free_map) {
		imap_clear(&sh->appended);
		ivec_clear(&sh->edge);
	} else {
		imap_empty(&sh->appended);
		sh->edge.n = 0;
	}
	sh->base_max = sh->main_max;
}

/* Past STORE_APPENDED_MAX remembered ids, forget them. */
static void shard_bound_appended(struct shard *sh)
{
	if (sh->appended.n + sh->edge.n >= STORE_APPENDED_MAX)
		shard_forget_appended(sh, 0);
}

/* Move every staged row into `events`, in id order (invariant 5). */
static enum mp_err store_merge_stage(struct shard *sh)
{
	enum mp_err rc;
	size_t i;

	sh->gap_lo = sh->gap_hi = 0;  /* invariant 7: rows land anywhere */
	if ((rc = store_exec(sh->db, "INSERT INTO events(id,e,d,r,p) SELECT id,e,d,r,p FROM stage ORDER BY id")) != MP_OK ||
	    (rc = store_exec(sh->db, "DELETE FROM stage")) != MP_OK)
		return rc;
	/* the staged rows are in `events` now: those above base_max join the
	 * appended ones (a rollback reloads every map from the tables) */
	for (i = 0; i < sh->staged.cap; i++) {
		int64_t id = sh->staged.keys[i];

		if (id > sh->base_max && (rc = imap_put(&sh->appended, id, 1)) != MP_OK)
			return rc;
		if (id > sh->main_max)
			sh->main_max = id;
	}
	imap_empty(&sh->staged);
	shard_bound_appended(sh);
	return MP_OK;
}

/* Record the identity link DEVICE -> D_ID at time T unless the shard holds
 * it with an earlier or equal time (the map answers without SQL). */
static enum mp_err store_put_link(struct shard *sh, const char *device, int64_t d_id, int64_t t)
{
	int64_t a = shard_intern(sh, device, strlen(device), 0), key, known;
	int r;

	if (a < 0)
		return (enum mp_err)(-a);
	if (a >= INT32_MAX || d_id >= INT32_MAX)
		return MP_E_TOOBIG;
	key = a << 32 | d_id;
	known = imap_get(&sh->links, key);
	if (known && known - 1 <= t)
		return MP_OK;
	sqlite3_bind_int64(sh->st_link_put, 1, a);
	sqlite3_bind_int64(sh->st_link_put, 2, d_id);
	sqlite3_bind_int64(sh->st_link_put, 3, t);
	r = sqlite3_step(sh->st_link_put);
	sqlite3_reset(sh->st_link_put);
	if (r != SQLITE_DONE)
		return store_sqlite_err(r);
	return imap_put(&sh->links, key, t + 1);
}

static enum mp_err store_apply_event(struct store_project *sp, struct store_batch *b,
				     const struct store_event *ev)
{
	struct shard *sh;
	sqlite3_stmt *ins;
	enum mp_err rc;
	int64_t e_id, d_id, free_id, dup_id, dup_seq;
	uint32_t home;
	int r, append, direct, in_gap;

	if (ev->time_ms < 0 || ev->time_ms >= STORE_MAX_TIME_MS)
		return MP_E_INVALID;
	if ((rc = store_shard_for(sp, ev->time_ms, &sh)) != MP_OK)
		return rc;
	e_id = shard_intern(sh, ev->name, strlen(ev->name), 0);
	if (e_id < 0)
		return (enum mp_err)(-e_id);
	d_id = shard_intern(sh, ev->distinct_id, strlen(ev->distinct_id), 0);
	if (d_id < 0)
		return (enum mp_err)(-d_id);
	buf_reset(&sp->enc);
	rc = pc_encode(ev->props, NULL, "$insert_id", shard_intern, sh, &sp->enc);
	if (rc != MP_OK)
		return rc;
	if (ev->insert_id) {
		uint64_t h;

		if (!sh->insert_id_key) {
			int64_t id = shard_intern(sh, "$insert_id", 10, 0);

			if (id < 0)
				return (enum mp_err)(-id);
			sh->insert_id_key = id;
		}
		h = store_hash64(ev->name, strlen(ev->name), 0x243F6A8885A308D3ULL);
		h = store_hash64(ev->distinct_id, strlen(ev->distinct_id), h);
		h = store_hash64(ev->insert_id, strlen(ev->insert_id), h);
		home = (uint32_t)(h & (STORE_SLOTS - 1));
	} else {
		home = (uint32_t)(store_hash64(&sh->anon_seq, sizeof sh->anon_seq, 0) & (STORE_SLOTS - 1));
		sh->anon_seq++;
	}
	if ((rc = store_probe(sh, ev, e_id, d_id, home, &free_id, &in_gap, &dup_id, &dup_seq)) != MP_OK)
		return rc;
	if (ev->link_device && ev->distinct_id[0] &&
	    (rc = store_put_link(sh, ev->link_device, d_id, ev->time_ms)) != MP_OK)
		return rc;
	if (dup_id) {
		/* Mixpanel keeps the most recently ingested copy */
		sqlite3_stmt *up = dup_seq ? sh->st_stage_upd : sh->st_dup_upd;

		sqlite3_bind_blob(up, 1, sp->enc.data, (int)sp->enc.len, SQLITE_STATIC);
		sqlite3_bind_int64(up, 2, b->recv_ms - ev->time_ms);
		sqlite3_bind_int64(up, 3, dup_seq ? dup_seq : dup_id);
		r = sqlite3_step(up);
		sqlite3_reset(up);
		if (r != SQLITE_DONE)
			return store_sqlite_err(r);
		b->n_dup++;
		return MP_OK;
	}
	/* newer than every row of `events`: append at its right edge (a
	 * time-ordered import never stages).  Inside the gap an earlier
	 * lookup found: the next row of a time-ordered backfill behind newer
	 * rows, which fills the gap from below, in order, like an append.
	 * Else stage it for the next merge (a late live event, or a backfill
	 * in random order: each of those takes a lookup of its own). */
	append = free_id > sh->main_max;
	direct = !append && in_gap;
	ins = append || direct ? sh->st_main_ins : sh->st_stage_ins;
	sqlite3_bind_int64(ins, 1, free_id);
	sqlite3_bind_int64(ins, 2, e_id);
	sqlite3_bind_int64(ins, 3, d_id);
	sqlite3_bind_int64(ins, 4, b->recv_ms - ev->time_ms);
	sqlite3_bind_blob(ins, 5, sp->enc.data, (int)sp->enc.len, SQLITE_STATIC);
	r = sqlite3_step(ins);
	sqlite3_reset(ins);
	if (r != SQLITE_DONE) {
		log_error("shard %s: insert: %s", sh->key, sqlite3_errmsg(sh->db));
		return store_sqlite_err(r);
	}
	if (append) {
		sh->main_max = free_id;
		if ((rc = ivec_push(&sh->edge, free_id)) != MP_OK)
			return rc;
		shard_bound_appended(sh);
	} else if (direct) {
		sh->gap_lo = free_id + 1;  /* invariant 7: the gap is above the new row */
		/* never true today (a row sits at base_max, so a gap found below
		 * it ends there); kept so invariant 5 holds whatever moves it */
		if (free_id > sh->base_max) {
			if ((rc = imap_put(&sh->appended, free_id, 1)) != MP_OK)
				return rc;
			shard_bound_appended(sh);
		}
	} else if ((rc = imap_put(&sh->staged, free_id, sqlite3_last_insert_rowid(sh->db))) != MP_OK) {
		return rc;
	}
	sh->added++;
	b->n_new++;
	return MP_OK;
}

static enum mp_err store_meta_begin(struct store_project *sp)
{
	enum mp_err rc;

	if (sp->meta_in_tx)
		return MP_OK;
	if ((rc = store_exec(sp->meta, "BEGIN IMMEDIATE")) != MP_OK)
		return rc;
	sp->meta_in_tx = 1;
	return MP_OK;
}

static void store_bind_update_key(sqlite3_stmt *st, const struct store_update *u)
{
	if (u->kind == PROFILE_GROUP) {
		sqlite3_bind_text(st, 1, u->group_key, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, u->group_id, -1, SQLITE_STATIC);
	} else {
		sqlite3_bind_text(st, 1, u->distinct_id, -1, SQLITE_STATIC);
	}
}

static enum mp_err store_apply_update(struct store_project *sp, struct store_batch *b,
				      struct store_update *u)
{
	int grp = u->kind == PROFILE_GROUP;
	sqlite3_stmt *get = grp ? sp->st_grp_get : sp->st_prof_get;
	sqlite3_stmt *put = grp ? sp->st_grp_put : sp->st_prof_put;
	sqlite3_stmt *del = grp ? sp->st_grp_del : sp->st_prof_del;
	int nkey = grp ? 2 : 1, r;
	cJSON *prof = NULL;
	char *text = NULL;
	enum mp_err rc;

	if ((rc = store_meta_begin(sp)) != MP_OK)
		return rc;
	store_bind_update_key(get, u);
	r = sqlite3_step(get);
	if (r == SQLITE_ROW)
		prof = cJSON_Parse((const char *)sqlite3_column_text(get, 0));
	sqlite3_reset(get);
	if (r != SQLITE_ROW && r != SQLITE_DONE)
		return store_sqlite_err(r);
	if (!prof && !(prof = cJSON_CreateObject()))
		return MP_E_NOMEM;
	rc = profile_apply(prof, u->update, u->kind, b->recv_ms, &u->out);
	if (rc == MP_E_INVALID) {
		/* nothing to apply: the caller already counted the record as invalid */
		cJSON_Delete(prof);
		return MP_OK;
	}
	if (rc != MP_OK)
		goto out;
	if (u->out.deleted) {
		store_bind_update_key(del, u);
		r = sqlite3_step(del);
		sqlite3_reset(del);
	} else {
		if (!(text = cJSON_PrintUnformatted(prof))) {
			rc = MP_E_NOMEM;
			goto out;
		}
		store_bind_update_key(put, u);
		sqlite3_bind_text(put, nkey + 1, text, -1, SQLITE_STATIC);
		sqlite3_bind_int64(put, nkey + 2, b->recv_ms);
		r = sqlite3_step(put);
		sqlite3_reset(put);
	}
	if (r != SQLITE_DONE)
		rc = store_sqlite_err(r);
out:
	cJSON_free(text);
	cJSON_Delete(prof);
	return rc;
}

/* Prepare SQL (with "%s" where a list of N placeholders goes, up to
 * twice), bound to IDS[0..N). */
static enum mp_err store_prepare_ids(sqlite3 *db, const char *sql, const int64_t *ids, size_t n, sqlite3_stmt **st)
{
	char text[8192], list[4096];
	size_t i, len = 0;

	for (i = 0; i < n && len + 8 < sizeof list; i++)
		len += (size_t)snprintf(list + len, sizeof list - len, i ? ",?%zu" : "?%zu", i + 1);
	snprintf(text, sizeof text, sql, list, list);
	if (sqlite3_prepare_v2(db, text, -1, st, NULL) != SQLITE_OK)
		return MP_E_STORE;
	for (i = 0; i < n; i++)
		sqlite3_bind_int64(*st, (int)i + 1, ids[i]);
	return MP_OK;
}

/* Run SQL as store_prepare_ids; *CHANGES += the rows it changed. */
static enum mp_err store_exec_ids(sqlite3 *db, const char *sql, const int64_t *ids, size_t n, int64_t *changes)
{
	sqlite3_stmt *st = NULL;
	enum mp_err rc;
	int r;

	if ((rc = store_prepare_ids(db, sql, ids, n, &st)) != MP_OK)
		return rc;
	r = sqlite3_step(st);
	sqlite3_finalize(st);
	if (r != SQLITE_DONE)
		return store_sqlite_err(r);
	*changes += sqlite3_changes(db);
	return MP_OK;
}

/* ---------- scrubbing deleted strings from a shard's dictionary ----------
 * After a deletion the strings only the deleted events held (their
 * distinct_ids, property values) must not stay readable in `dict`: each
 * such row's text is overwritten with a unique placeholder. */

struct store_bits {
	unsigned char *b;
	int64_t n;
};

static int64_t store_bits_mark(void *ctx, int64_t id)
{
	struct store_bits *s = ctx;

	if (id > 0 && id < s->n)
		s->b[id >> 3] |= (unsigned char)(1u << (id & 7));
	return id;
}

static int store_bits_has(const struct store_bits *s, int64_t id)
{
	return id > 0 && id < s->n && (s->b[id >> 3] >> (id & 7) & 1);
}

/* Mark every dict id the rows of ST (columns e, d, p) use. */
static enum mp_err store_mark_rows(sqlite3_stmt *st, struct store_bits *bits, struct buf *scratch)
{
	int r;

	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		store_bits_mark(bits, sqlite3_column_int64(st, 0));
		store_bits_mark(bits, sqlite3_column_int64(st, 1));
		buf_reset(scratch);
		/* a damaged record marks what it can; it is not ours to repair here */
		(void)pc_remap(sqlite3_column_blob(st, 2), (size_t)sqlite3_column_bytes(st, 2), store_bits_mark, bits,
			       scratch);
	}
	return r == SQLITE_DONE ? MP_OK : store_sqlite_err(r);
}

#define STORE_DELETE_CHUNK 200     /* ids per statement */

/* Overwrite the dict rows in CAND that no remaining row or link uses, and
 * reload the shard's dictionary map (invariant 3). */
static enum mp_err store_scrub_dict(struct shard *sh, const struct store_bits *cand, struct buf *scratch)
{
	struct store_bits used = { NULL, cand->n };
	sqlite3_stmt *st = NULL;
	enum mp_err rc;
	int64_t id;
	int r;

	if (!(used.b = calloc((size_t)used.n / 8 + 1, 1)))
		return MP_E_NOMEM;
	if ((rc = store_prepare(sh->db, "SELECT e, d, p FROM events WHERE e<>0 UNION ALL "
				"SELECT e, d, p FROM stage WHERE e<>0 UNION ALL SELECT a, b, x'' FROM idlinks", &st)) == MP_OK)
		rc = store_mark_rows(st, &used, scratch);
	sqlite3_finalize(st);
	st = NULL;
	if (rc == MP_OK && sh->insert_id_key)
		store_bits_mark(&used, sh->insert_id_key);
	if (rc == MP_OK && (rc = store_prepare(sh->db, "UPDATE dict SET s=?1 WHERE id=?2", &st)) == MP_OK) {
		for (id = 1; id < cand->n && rc == MP_OK; id++) {
			char gone[40];

			if (!store_bits_has(cand, id) || store_bits_has(&used, id))
				continue;
			snprintf(gone, sizeof gone, "\001deleted %lld", (long long)id);  /* unique: the id */
			sqlite3_bind_text(st, 1, gone, -1, SQLITE_TRANSIENT);
			sqlite3_bind_int64(st, 2, id);
			r = sqlite3_step(st);
			sqlite3_reset(st);
			if (r != SQLITE_DONE)
				rc = store_sqlite_err(r);
		}
	}
	sqlite3_finalize(st);
	free(used.b);
	return rc == MP_OK ? shard_load_dict(sh) : rc;
}

/* A privacy deletion (store.h): tombstone the events of B's ids in every
 * shard file, drop their identity links and profiles, record the task. */
static enum mp_err store_apply_delete(struct store_project *sp, struct store_batch *b)
{
	DIR *d = opendir(sp->dir);
	struct dirent *de;
	int64_t ids[STORE_DELETE_CHUNK];
	sqlite3_stmt *st = NULL;
	enum mp_err rc = MP_OK;
	size_t i;
	int r;

	if (!d)
		return MP_E_IO;
	while (rc == MP_OK && (de = readdir(d))) {
		char key[32];
		int64_t a, z, events = 0, links = 0;
		struct shard *sh;
		size_t n = 0;
		struct store_bits cand = { NULL, 0 };

		if (!store_shard_file(de->d_name, key, &a, &z) || (rc = store_shard_get(sp, key, &sh)) != MP_OK)
			continue;
		/* freed pages are zeroed while the deleted rows go */
		store_exec(sh->db, "PRAGMA secure_delete=ON");
		cand.n = store_sql_int64(sh->db, "SELECT coalesce(max(id),0)+1 FROM dict");
		if (cand.n < 1 || !(cand.b = calloc((size_t)cand.n / 8 + 1, 1))) {
			rc = MP_E_NOMEM;
			break;
		}
		for (i = 0; rc == MP_OK && i <= b->n_delete_ids; i++) {
			if (i < b->n_delete_ids) {
				const char *s = b->delete_ids[i];
				size_t len = strlen(s);
				struct strmap_key k = strmap_key(s, len);
				int64_t id = strmap_get(&sh->dict, &k);

				if (id > 0)
					ids[n++] = id;
				if (n < STORE_DELETE_CHUNK)
					continue;
			}
			if (!n)
				continue;
			/* the strings these rows use are candidates for scrubbing */
			{
				sqlite3_stmt *st2 = NULL;

				if ((rc = store_prepare_ids(sh->db, "SELECT e, d, p FROM events WHERE d IN (%s) UNION ALL "
							    "SELECT e, d, p FROM stage WHERE d IN (%s)", ids, n, &st2)) == MP_OK)
					rc = store_mark_rows(st2, &cand, &sp->enc);
				sqlite3_finalize(st2);
				if (rc != MP_OK)
					break;
			}
			if ((rc = store_exec_ids(sh->db, "UPDATE events SET e=0, d=0, r=0, p=x'' WHERE d IN (%s)",
						 ids, n, &events)) == MP_OK &&
			    (rc = store_exec_ids(sh->db, "UPDATE stage SET e=0, d=0, r=0, p=x'' WHERE d IN (%s)",
						 ids, n, &events)) == MP_OK)
				rc = store_exec_ids(sh->db, "DELETE FROM idlinks WHERE a IN (%s) OR b IN (%s)", ids, n, &links);
			n = 0;
		}
		if (rc == MP_OK && links)
			rc = shard_load_links(sh);
		if (rc == MP_OK && (events || links))
			rc = store_scrub_dict(sh, &cand, &sp->enc);
		store_exec(sh->db, "PRAGMA secure_delete=OFF");
		free(cand.b);
		sh->added -= events;
		b->n_del_events += events;
		b->n_del_links += links;
	}
	closedir(d);
	if (rc != MP_OK || (rc = store_meta_begin(sp)) != MP_OK)
		return rc;
	store_exec(sp->meta, "PRAGMA secure_delete=ON");
	for (i = 0; i < b->n_delete_ids; i++) {
		sqlite3_bind_text(sp->st_prof_del, 1, b->delete_ids[i], -1, SQLITE_STATIC);
		r = sqlite3_step(sp->st_prof_del);
		sqlite3_reset(sp->st_prof_del);
		if (r != SQLITE_DONE)
			return store_sqlite_err(r);
		b->n_del_profiles += sqlite3_changes(sp->meta);
	}
	store_exec(sp->meta, "PRAGMA secure_delete=OFF");
	if ((rc = store_prepare(sp->meta, "INSERT OR REPLACE INTO deletions(task_id, compliance_type, distinct_ids, "
				"requested_ms, completed_ms, events, profiles, links) VALUES(?,?,?,?,?,?,?,?)", &st)) != MP_OK)
		return rc;
	sqlite3_bind_text(st, 1, b->deletion_task, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, b->deletion_type ? b->deletion_type : "GDPR", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, b->deletion_ids_json ? b->deletion_ids_json : "[]", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, b->recv_ms);
	sqlite3_bind_int64(st, 5, (int64_t)time(NULL) * 1000);
	sqlite3_bind_int64(st, 6, b->n_del_events);
	sqlite3_bind_int64(st, 7, b->n_del_profiles);
	sqlite3_bind_int64(st, 8, b->n_del_links);
	r = sqlite3_step(st);
	sqlite3_finalize(st);
	return r == SQLITE_DONE ? MP_OK : store_sqlite_err(r);
}

static enum mp_err store_apply_batch(struct store_project *sp, struct store_batch *b)
{
	size_t i;
	enum mp_err rc;

	b->n_new = b->n_dup = 0;
	b->n_del_events = b->n_del_profiles = b->n_del_links = 0;
	if (b->n_delete_ids)
		return b->deletion_task ? store_apply_delete(sp, b) : MP_E_INVALID;
	for (i = 0; i < b->n_events; i++)
		if ((rc = store_apply_event(sp, b, &b->events[i])) != MP_OK)
			return rc;
	for (i = 0; i < b->n_updates; i++)
		if ((rc = store_apply_update(sp, b, &b->updates[i])) != MP_OK)
			return rc;
	return MP_OK;
}

static void store_rollback_all(struct store_project *sp)
{
	size_t i;

	for (i = 0; i < sp->n_shards; i++) {
		struct shard *sh = sp->shards[i];

		if (!sh->in_tx)
			continue;
		store_exec(sh->db, "ROLLBACK");
		sh->in_tx = 0;
		/* invariants 3 and 5: the maps may hold rows the rollback took away */
		if (shard_load_dict(sh) != MP_OK || shard_load_stage(sh) != MP_OK || shard_load_links(sh) != MP_OK)
			log_error("shard %s: cannot reload its maps after a rollback", sh->key);
	}
	if (sp->meta_in_tx) {
		store_exec(sp->meta, "ROLLBACK");
		sp->meta_in_tx = 0;
	}
}

/* Close least recently used shards (none is in a transaction any more)
 * until at most STORE_KEEP_OPEN_SHARDS stay open. */
static void store_trim_shards(struct store_project *sp)
{
	while (sp->n_shards > STORE_KEEP_OPEN_SHARDS) {
		size_t i, victim = 0;

		for (i = 1; i < sp->n_shards; i++)
			if (sp->shards[i]->last_use < sp->shards[victim]->last_use)
				victim = i;
		if (sp->shards[victim] == sp->last)
			sp->last = NULL;
		shard_close(sp->shards[victim]);
		sp->shards[victim] = sp->shards[--sp->n_shards];
	}
}

/* Commit every open transaction.  Returns the first failure. */
static enum mp_err store_commit_all(struct store_project *sp, int64_t *added)
{
	enum mp_err rc = MP_OK, r;
	size_t i;

	*added = 0;
	for (i = 0; i < sp->n_shards; i++) {
		struct shard *sh = sp->shards[i];
		int s;

		if (!sh->in_tx)
			continue;
		if (sh->staged.n >= STORE_STAGE_MAX && (rc = store_merge_stage(sh)) != MP_OK)
			break;
		sqlite3_bind_int64(sh->st_stat, 1, sh->added);
		s = sqlite3_step(sh->st_stat);
		sqlite3_reset(sh->st_stat);
		if (s != SQLITE_DONE) {
			rc = store_sqlite_err(s);
			break;
		}
		if ((r = store_step_reset(sh->st_commit)) != MP_OK) {
			rc = r;
			break;
		}
		sh->in_tx = 0;
		*added += sh->added;
	}
	if (rc == MP_OK && sp->meta_in_tx) {
		if ((rc = store_exec(sp->meta, "COMMIT")) == MP_OK)
			sp->meta_in_tx = 0;
	}
	if (rc != MP_OK)
		store_rollback_all(sp);
	store_trim_shards(sp);
	return rc;
}

static void store_fail(struct store_batch *b, enum mp_err rc)
{
	b->rc = rc;
	b->n_new = b->n_dup = 0;
	snprintf(b->err, sizeof b->err, "%s", rc == MP_E_FULL
		 ? "storage unavailable (disk full or data directory not writable)"
		 : mp_strerror(rc));
}

/* Apply and commit GROUP (a list).  A batch that fails to apply is failed
 * alone and the rest are applied again without it. */
static void store_commit_group(struct store_project *sp, struct store_batch *group)
{
	struct store_batch *b;
	enum mp_err rc;
	int64_t added = 0;

	for (;;) {
		struct store_batch *bad = NULL;

		for (b = group; b; b = b->next_) {
			if (b->rc != MP_OK)
				continue;
			if ((rc = store_apply_batch(sp, b)) != MP_OK) {
				bad = b;
				break;
			}
		}
		if (!bad)
			break;
		store_rollback_all(sp);
		store_fail(bad, rc);
		log_error("project %s: batch rolled back: %s", sp->cfg->name, mp_strerror(rc));
	}
	rc = store_commit_all(sp, &added);
	if (rc != MP_OK) {
		log_error("project %s: commit failed: %s", sp->cfg->name, mp_strerror(rc));
		for (b = group; b; b = b->next_)
			if (b->rc == MP_OK)
				store_fail(b, rc);
	}
	pthread_mutex_lock(&sp->mu);
	if (rc == MP_OK)
		sp->n_events += added;
	/* health: the last round failed on storage (not on one bad batch) */
	sp->last_error[0] = '\0';
	for (b = group; b; b = b->next_)
		if (b->rc == MP_E_FULL || b->rc == MP_E_STORE || b->rc == MP_E_NOMEM) {
			snprintf(sp->last_error, sizeof sp->last_error, "%s", b->err);
			break;
		}
	pthread_mutex_unlock(&sp->mu);
}

static void *store_writer_main(void *arg)
{
	struct store_project *sp = arg;

	int cached = 0;            /* page caches may hold memory since the last release */

	for (;;) {
		struct store_batch *group, *b, *next;

		pthread_mutex_lock(&sp->mu);
		while (!sp->q_head && !sp->stopping) {
			struct timespec ts;

			if (!cached) {
				pthread_cond_wait(&sp->cv, &sp->mu);
				continue;
			}
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += STORE_IDLE_RELEASE_S;
			if (pthread_cond_timedwait(&sp->cv, &sp->mu, &ts) != 0 && !sp->q_head && !sp->stopping) {
				/* idle: give back the shards' page caches (up to
				 * 64 MiB each) until the next write needs them */
				size_t i;

				pthread_mutex_unlock(&sp->mu);
				for (i = 0; i < sp->n_shards; i++) {
					struct shard *sh = sp->shards[i];

					sqlite3_db_release_memory(sh->db);
					/* the remembered ids (up to 12 MiB per shard) */
					shard_forget_appended(sh, 1);
					if (!sh->staged.n)
						imap_clear(&sh->staged);
				}
				sqlite3_db_release_memory(sp->meta);
				/* and the heap and the request arenas the requests'
				 * parsing left free */
				malloc_trim(0);
				jarena_trim();
				cached = 0;
				pthread_mutex_lock(&sp->mu);
			}
		}
		group = sp->q_head;
		sp->q_head = sp->q_tail = NULL;
		if (!group && sp->stopping) {
			pthread_mutex_unlock(&sp->mu);
			break;
		}
		pthread_mutex_unlock(&sp->mu);

		for (b = group; b; b = b->next_)
			b->rc = MP_OK;
		store_commit_group(sp, group);
		cached = 1;
		for (b = group; b; b = next) {
			next = b->next_;
			b->next_ = NULL;
			if (b->done)
				b->done(b, b->arg);
		}
	}
	return NULL;
}

/* ---------- open / close ---------- */

static enum mp_err store_mkdir(const char *path, char *err, size_t errlen)
{
	if (mkdir(path, 0750) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		return MP_E_IO;
	}
	return MP_OK;
}

static int64_t store_count_events(struct store_project *sp, int *n_bad)
{
	DIR *d = opendir(sp->dir);
	struct dirent *de;
	int64_t total = 0;
	int bad = 0;

	*n_bad = 0;
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		char path[4096], key[32];
		int64_t a, z;
		sqlite3 *db;
		sqlite3_stmt *st;

		if (!store_shard_file(de->d_name, key, &a, &z))
			continue;
		snprintf(path, sizeof path, "%s/%s", sp->dir, de->d_name);
		/* read-write: applies pending migrations to every shard at start */
		if (store_db_open(path, "shard", sp->st->cfg->sync, 0, &db) != MP_OK) {
			bad++;
			continue;
		}
		if (sqlite3_prepare_v2(db, "SELECT value FROM stats WHERE name='events'", -1, &st, NULL) == SQLITE_OK) {
			if (sqlite3_step(st) == SQLITE_ROW)
				total += sqlite3_column_int64(st, 0);
			sqlite3_finalize(st);
		}
		sqlite3_close(db);
	}
	closedir(d);
	*n_bad = bad;
	return total;
}

static enum mp_err store_project_open(struct store *st, struct store_project *sp,
				      const struct config_project *cp, char *err, size_t errlen)
{
	size_t n = strlen(st->cfg->data_dir) + strlen(cp->name) + 2;
	char path[4096];
	enum mp_err rc;

	sp->st = st;
	sp->cfg = cp;
	sp->lock_fd = -1;
	buf_init(&sp->enc, (size_t)64 << 20);
	pthread_mutex_init(&sp->mu, NULL);
	pthread_cond_init(&sp->cv, NULL);
	pthread_mutex_init(&sp->ckpt_mu, NULL);
	pthread_cond_init(&sp->ckpt_cv, NULL);
	if (!(sp->dir = malloc(n)))
		return MP_E_NOMEM;
	snprintf(sp->dir, n, "%s/%s", st->cfg->data_dir, cp->name);
	if ((rc = store_mkdir(sp->dir, err, errlen)) != MP_OK)
		return rc;
	/* the writer's dictionary caches assume it is the only writer: refuse a
	 * second process (a running server and `mixpaneld import`, say) */
	snprintf(path, sizeof path, "%s/LOCK", sp->dir);
	sp->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (sp->lock_fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return MP_E_FULL;
	}
	if (flock(sp->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		snprintf(err, errlen, "%s is in use by another mixpaneld process "
			 "(stop the server, or send the data to its /import endpoint)", sp->dir);
		return MP_E_IO;
	}
	snprintf(path, sizeof path, "%s/meta.db", sp->dir);
	if ((rc = store_db_open(path, "meta", st->cfg->sync, 0, &sp->meta)) != MP_OK) {
		snprintf(err, errlen, "cannot open %s: %s", path, mp_strerror(rc));
		return rc;
	}
	if ((rc = store_prepare(sp->meta, "SELECT props FROM profiles WHERE distinct_id=?", &sp->st_prof_get)) ||
	    (rc = store_prepare(sp->meta, "INSERT OR REPLACE INTO profiles(distinct_id,props,updated_ms) VALUES(?,?,?)", &sp->st_prof_put)) ||
	    (rc = store_prepare(sp->meta, "DELETE FROM profiles WHERE distinct_id=?", &sp->st_prof_del)) ||
	    (rc = store_prepare(sp->meta, "SELECT props FROM group_profiles WHERE group_key=? AND group_id=?", &sp->st_grp_get)) ||
	    (rc = store_prepare(sp->meta, "INSERT OR REPLACE INTO group_profiles(group_key,group_id,props,updated_ms) VALUES(?,?,?,?)", &sp->st_grp_put)) ||
	    (rc = store_prepare(sp->meta, "DELETE FROM group_profiles WHERE group_key=? AND group_id=?", &sp->st_grp_del))) {
		snprintf(err, errlen, "%s: cannot prepare statements", path);
		return rc;
	}
	{
		int bad;

		sp->n_events = store_count_events(sp, &bad);
		if (bad) {
			snprintf(err, errlen, "%s: %d event shard(s) cannot be opened or migrated (see the log)",
				 sp->dir, bad);
			return MP_E_STORE;
		}
	}
	if (pthread_create(&sp->writer, NULL, store_writer_main, sp) != 0) {
		snprintf(err, errlen, "cannot start writer thread");
		return MP_E_NOMEM;
	}
	sp->writer_started = 1;
	if (pthread_create(&sp->ckpt, NULL, store_ckpt_main, sp) != 0) {
		snprintf(err, errlen, "cannot start checkpointer thread");
		return MP_E_NOMEM;
	}
	sp->ckpt_started = 1;
	log_info("project %s (id %ld): %s, %lld events", cp->name, cp->id, sp->dir, (long long)sp->n_events);
	return MP_OK;
}

enum mp_err store_open(const struct config *cfg, struct store **out, char *err, size_t errlen)
{
	struct store *st = calloc(1, sizeof *st);
	enum mp_err rc;
	size_t i;

	if (!st)
		return MP_E_NOMEM;
	st->cfg = cfg;
	sqlite3_config(SQLITE_CONFIG_MULTITHREAD);
	if ((rc = store_mkdir(cfg->data_dir, err, errlen)) != MP_OK)
		goto fail;
	st->projects = calloc(cfg->n_projects, sizeof *st->projects);
	if (!st->projects) {
		rc = MP_E_NOMEM;
		goto fail;
	}
	for (i = 0; i < cfg->n_projects; i++) {
		st->n_projects++;
		if ((rc = store_project_open(st, &st->projects[i], &cfg->projects[i], err, errlen)) != MP_OK)
			goto fail;
	}
	*out = st;
	return MP_OK;
fail:
	store_close(st);
	return rc;
}

/* Set *STOPPING under MU, wake the thread waiting on CV, and join it. */
static void store_stop_thread(pthread_t t, pthread_mutex_t *mu, pthread_cond_t *cv, int *stopping)
{
	pthread_mutex_lock(mu);
	*stopping = 1;
	pthread_cond_signal(cv);
	pthread_mutex_unlock(mu);
	pthread_join(t, NULL);
}

static void store_project_close(struct store_project *sp)
{
	size_t i;

	/* the writer first: its last commits may still ask for checkpoints */
	if (sp->writer_started)
		store_stop_thread(sp->writer, &sp->mu, &sp->cv, &sp->stopping);
	if (sp->ckpt_started)
		store_stop_thread(sp->ckpt, &sp->ckpt_mu, &sp->ckpt_cv, &sp->ckpt_stopping);
	for (i = 0; i < sp->n_shards; i++)
		shard_close(sp->shards[i]);
	free(sp->shards);
	sqlite3_finalize(sp->st_prof_get);
	sqlite3_finalize(sp->st_prof_put);
	sqlite3_finalize(sp->st_prof_del);
	sqlite3_finalize(sp->st_grp_get);
	sqlite3_finalize(sp->st_grp_put);
	sqlite3_finalize(sp->st_grp_del);
	if (sp->meta)
		sqlite3_close(sp->meta);
	buf_free(&sp->enc);
	if (sp->lock_fd >= 0)
		close(sp->lock_fd);
	free(sp->dir);
	pthread_mutex_destroy(&sp->mu);
	pthread_cond_destroy(&sp->cv);
	pthread_mutex_destroy(&sp->ckpt_mu);
	pthread_cond_destroy(&sp->ckpt_cv);
}

void store_close(struct store *st)
{
	size_t i;

	if (!st)
		return;
	for (i = 0; i < st->n_projects; i++)
		store_project_close(&st->projects[i]);
	free(st->projects);
	free(st);
}

struct store_project *store_project_get(struct store *st, const struct config_project *p)
{
	size_t i;

	for (i = 0; i < st->n_projects; i++)
		if (st->projects[i].cfg == p)
			return &st->projects[i];
	return NULL;
}

enum mp_err store_submit(struct store_project *sp, struct store_batch *b)
{
	pthread_mutex_lock(&sp->mu);
	if (sp->stopping) {
		pthread_mutex_unlock(&sp->mu);
		return MP_E_SHUTDOWN;
	}
	b->next_ = NULL;
	b->rc = MP_OK;
	b->err[0] = '\0';
	if (sp->q_tail)
		sp->q_tail->next_ = b;
	else
		sp->q_head = b;
	sp->q_tail = b;
	pthread_cond_signal(&sp->cv);
	pthread_mutex_unlock(&sp->mu);
	return MP_OK;
}

struct store_waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
};

static void store_write_done(struct store_batch *b, void *arg)
{
	struct store_waiter *w = arg;

	(void)b;
	pthread_mutex_lock(&w->mu);
	w->done = 1;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

enum mp_err store_write(struct store_project *sp, struct store_batch *b)
{
	struct store_waiter w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
	enum mp_err rc;

	b->done = store_write_done;
	b->arg = &w;
	if ((rc = store_submit(sp, b)) != MP_OK)
		return rc;
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	pthread_mutex_destroy(&w.mu);
	pthread_cond_destroy(&w.cv);
	b->done = NULL;
	return b->rc;
}

int store_project_healthy(struct store_project *sp, char *why, size_t n)
{
	int ok;

	pthread_mutex_lock(&sp->mu);
	ok = sp->last_error[0] == '\0';
	if (!ok && why && n)
		snprintf(why, n, "%s", sp->last_error);
	pthread_mutex_unlock(&sp->mu);
	return ok;
}

int64_t store_event_count(struct store_project *sp)
{
	int64_t n;

	pthread_mutex_lock(&sp->mu);
	n = sp->n_events;
	pthread_mutex_unlock(&sp->mu);
	return n;
}

/* ---------- profiles (read) ---------- */

char *store_profile_get(struct store_project *sp, enum profile_kind kind,
			const char *distinct_id, const char *group_key, const char *group_id)
{
	char path[4096];
	sqlite3 *db;
	sqlite3_stmt *st = NULL;
	char *res = NULL;

	snprintf(path, sizeof path, "%s/meta.db", sp->dir);
	if (store_db_open(path, "meta", CONFIG_SYNC_NORMAL, 1, &db) != MP_OK)
		return NULL;
	if (kind == PROFILE_GROUP) {
		if (sqlite3_prepare_v2(db, "SELECT props FROM group_profiles WHERE group_key=? AND group_id=?", -1, &st, NULL) == SQLITE_OK) {
			sqlite3_bind_text(st, 1, group_key, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 2, group_id, -1, SQLITE_STATIC);
		}
	} else if (sqlite3_prepare_v2(db, "SELECT props FROM profiles WHERE distinct_id=?", -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, distinct_id, -1, SQLITE_STATIC);
	}
	if (st && sqlite3_step(st) == SQLITE_ROW)
		res = strdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return res;
}

/* ---------- export ---------- */

struct store_export {
	struct store_project *sp;
	int64_t from_ms, to_ms;
	char **names;
	size_t n_names;
	size_t limit, emitted;
	int time_in_ms;
	char **keys;            /* shard keys in time order */
	size_t n_keys, next_key;
	/* current shard */
	sqlite3 *db;
	sqlite3_stmt *st;
	char **dict;            /* id -> string, index 0 unused */
	size_t *dict_len;
	size_t n_dict;
	int64_t iid_key;        /* dict id of "$insert_id" in this shard, 0 if none */
	int empty;              /* current shard has no schema yet: nothing to read */
	char key[16];
	/* `where` filter and what its evaluation of the current row needs */
	struct expr *where;
	struct { const char *name; size_t len; int64_t id; } keys_[16];
	size_t n_keys_;
	struct expr_value items[256];
	/* canonical ids (store_export_set_resolver) */
	const char *(*resolve)(void *ctx, const char *did, size_t n, size_t *len);
	void *resolve_ctx;
};

void store_export_set_resolver(struct store_export *ex,
			       const char *(*resolve)(void *ctx, const char *did, size_t n, size_t *len),
			       void *ctx)
{
	ex->resolve = resolve;
	ex->resolve_ctx = ctx;
}

static int64_t store_clamp_ms(int64_t ms)
{
	return ms < 0 ? 0 : ms > STORE_MAX_TIME_MS ? STORE_MAX_TIME_MS : ms;
}

static int store_key_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void store_export_close_shard(struct store_export *ex)
{
	size_t i;

	sqlite3_finalize(ex->st);
	ex->st = NULL;
	if (ex->db)
		sqlite3_close(ex->db);
	ex->db = NULL;
	for (i = 0; i < ex->n_dict; i++)
		free(ex->dict[i]);
	free(ex->dict);
	free(ex->dict_len);
	ex->dict = NULL;
	ex->dict_len = NULL;
	ex->n_dict = 0;
	ex->iid_key = 0;
	ex->empty = 0;
	ex->n_keys_ = 0;
}

void store_export_close(struct store_export *ex)
{
	size_t i;

	if (!ex)
		return;
	store_export_close_shard(ex);
	for (i = 0; i < ex->n_keys; i++)
		free(ex->keys[i]);
	free(ex->keys);
	for (i = 0; i < ex->n_names; i++)
		free(ex->names[i]);
	free(ex->names);
	expr_free(ex->where);
	free(ex);
}

enum mp_err store_export_open(struct store_project *sp, int64_t from_ms, int64_t to_ms,
			      const char *const *names, size_t n_names, size_t limit,
			      int time_in_ms, struct expr *where, struct store_export **out)
{
	struct store_export *ex = calloc(1, sizeof *ex);
	DIR *d;
	struct dirent *de;
	size_t cap = 0, i;

	if (!ex) {
		expr_free(where);
		return MP_E_NOMEM;
	}
	ex->where = where;
	ex->sp = sp;
	ex->from_ms = from_ms;
	ex->to_ms = to_ms;
	ex->limit = limit;
	ex->time_in_ms = time_in_ms;
	if (n_names) {
		if (!(ex->names = calloc(n_names, sizeof *ex->names)))
			goto nomem;
		for (i = 0; i < n_names; i++) {
			if (!(ex->names[i] = strdup(names[i])))
				goto nomem;
			ex->n_names++;
		}
	}
	if (!(d = opendir(sp->dir)))
		goto done;
	while ((de = readdir(d))) {
		char key[32];
		int64_t a, z;

		if (!store_shard_file(de->d_name, key, &a, &z) || z <= from_ms || a >= to_ms)
			continue;
		if (ex->n_keys == cap) {
			char **nk = realloc(ex->keys, (cap = cap ? cap * 2 : 16) * sizeof *nk);

			if (!nk) {
				closedir(d);
				goto nomem;
			}
			ex->keys = nk;
		}
		if (!(ex->keys[ex->n_keys] = strdup(key))) {
			closedir(d);
			goto nomem;
		}
		ex->n_keys++;
	}
	closedir(d);
	if (ex->n_keys > 1)
		qsort(ex->keys, ex->n_keys, sizeof *ex->keys, store_key_cmp);
done:
	*out = ex;
	return MP_OK;
nomem:
	store_export_close(ex);
	return MP_E_NOMEM;
}

static const char *store_export_lookup(void *ctx, int64_t id, size_t *len)
{
	struct store_export *ex = ctx;

	if (id < 1 || (size_t)id >= ex->n_dict || !ex->dict[id])
		return NULL;
	*len = ex->dict_len[id];
	return ex->dict[id];
}

static enum mp_err store_export_open_shard(struct store_export *ex, const char *key)
{
	char path[4096];
	sqlite3_stmt *st = NULL;
	struct buf sql;
	enum mp_err rc = MP_OK;
	size_t i;
	int arm;
	int64_t maxid = 0;

	snprintf(ex->key, sizeof ex->key, "%s", key);
	snprintf(path, sizeof path, "%s/events-%s.db", ex->sp->dir, key);
	if ((rc = store_db_open(path, "shard", CONFIG_SYNC_NORMAL, 1, &ex->db)) != MP_OK)
		return rc;
	/* one read transaction so the dict and the events are one snapshot */
	if ((rc = store_exec(ex->db, "BEGIN")) != MP_OK)
		return rc;
	/* a shard the writer is creating right now (or a crash left before its
	 * first migration committed) has no tables yet: it holds no events */
	if (sqlite3_prepare_v2(ex->db, "SELECT count(*) FROM sqlite_master WHERE name='events'", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		return MP_E_STORE;
	}
	if (sqlite3_column_int(st, 0) == 0) {
		sqlite3_finalize(st);
		ex->empty = 1;
		return MP_OK;
	}
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(ex->db, "SELECT coalesce(max(id),0) FROM dict", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		return MP_E_STORE;
	}
	maxid = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	ex->n_dict = (size_t)maxid + 1;
	ex->dict = calloc(ex->n_dict, sizeof *ex->dict);
	ex->dict_len = calloc(ex->n_dict, sizeof *ex->dict_len);
	if (!ex->dict || !ex->dict_len)
		return MP_E_NOMEM;
	if (sqlite3_prepare_v2(ex->db, "SELECT id, s FROM dict", -1, &st, NULL) != SQLITE_OK)
		return MP_E_STORE;
	while (sqlite3_step(st) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0);
		size_t n = (size_t)sqlite3_column_bytes(st, 1);

		if (id < 1 || id > maxid)
			continue;
		if (!(ex->dict[id] = malloc(n + 1))) {
			sqlite3_finalize(st);
			return MP_E_NOMEM;
		}
		memcpy(ex->dict[id], sqlite3_column_text(st, 1), n);
		ex->dict[id][n] = '\0';
		ex->dict_len[id] = n;
		if (n == 10 && memcmp(ex->dict[id], "$insert_id", 10) == 0)
			ex->iid_key = id;
	}
	sqlite3_finalize(st);

	/* placeholders only: names are bound, never pasted */
	buf_init(&sql, 1 << 20);
	/* both tables (invariant 5), merged in id order by SQLite */
	for (arm = 0; rc == MP_OK && arm < 2; arm++) {
		rc = buf_printf(&sql, "%sSELECT id, e, d, r, p FROM %s WHERE id >= ?1 AND id < ?2 AND e <> 0",
				arm ? " UNION ALL " : "", arm ? "stage" : "events");
		if (rc == MP_OK && ex->n_names) {
			rc = buf_printf(&sql, " AND e IN (SELECT id FROM dict WHERE s IN (");
			for (i = 0; rc == MP_OK && i < ex->n_names; i++)
				rc = buf_printf(&sql, i ? ",?%zu" : "?%zu", i + 3);
			if (rc == MP_OK)
				rc = buf_printf(&sql, "))");
		}
	}
	if (rc == MP_OK)
		rc = buf_printf(&sql, " ORDER BY id");
	if (rc != MP_OK) {
		buf_free(&sql);
		return rc;
	}
	if (sqlite3_prepare_v2(ex->db, sql.data, -1, &ex->st, NULL) != SQLITE_OK) {
		log_error("export: %s", sqlite3_errmsg(ex->db));
		buf_free(&sql);
		return MP_E_STORE;
	}
	buf_free(&sql);
	sqlite3_bind_int64(ex->st, 1, store_clamp_ms(ex->from_ms) << STORE_SLOT_BITS);
	sqlite3_bind_int64(ex->st, 2, store_clamp_ms(ex->to_ms) << STORE_SLOT_BITS);
	for (i = 0; i < ex->n_names; i++)
		sqlite3_bind_text(ex->st, (int)i + 3, ex->names[i], -1, SQLITE_STATIC);
	return MP_OK;
}

/* The shard dict id of property key NAME (0 if the shard has none); a
 * linear search of the dictionary, cached per shard. */
static int64_t store_export_key_id(void *ctx, const char *name, size_t len)
{
	struct store_export *ex = ctx;
	size_t i;
	int64_t id = 0;

	for (i = 0; i < ex->n_keys_; i++)
		if (ex->keys_[i].len == len && memcmp(ex->keys_[i].name, name, len) == 0)
			return ex->keys_[i].id;
	for (i = 1; i < ex->n_dict; i++)
		if (ex->dict[i] && ex->dict_len[i] == len && memcmp(ex->dict[i], name, len) == 0) {
			id = (int64_t)i;
			break;
		}
	if (ex->n_keys_ < sizeof ex->keys_ / sizeof ex->keys_[0]) {
		ex->keys_[ex->n_keys_].name = name;
		ex->keys_[ex->n_keys_].len = len;
		ex->keys_[ex->n_keys_].id = id;
		ex->n_keys_++;
	}
	return id;
}

struct store_export_row {
	struct store_export *ex;
	struct pc_event_ref ev;
};

static int store_export_eval_lookup(void *ctx, enum expr_scope scope, const char *name, size_t len,
				    struct expr_value *out)
{
	struct store_export_row *row = ctx;

	return pc_event_lookup(&row->ev, scope, name, len, out);
}

/* Deterministic $insert_id for events stored without one: stable for the
 * life of the row (shard key + row id). */
static enum mp_err store_export_gen_insert_id(struct buf *out, const char *key, int64_t id)
{
	uint64_t h = store_hash64(key, strlen(key), 0x84222325cbf29ce4ULL);

	h = store_hash64(&id, sizeof id, h);
	return buf_printf(out, ",\"$insert_id\":\"%016llx\"", (unsigned long long)h);
}

int store_export_next(struct store_export *ex, struct buf *out)
{
	enum mp_err rc;

	for (;;) {
		int r;

		if (ex->limit && ex->emitted >= ex->limit)
			return 0;
		if (!ex->st) {
			if (ex->next_key >= ex->n_keys)
				return 0;
			store_export_close_shard(ex);
			if ((rc = store_export_open_shard(ex, ex->keys[ex->next_key++])) != MP_OK)
				return -(int)rc;
			if (ex->empty) {
				store_export_close_shard(ex);
				continue;
			}
		}
		r = sqlite3_step(ex->st);
		if (r == SQLITE_DONE) {
			store_export_close_shard(ex);
			continue;
		}
		if (r != SQLITE_ROW)
			return -(int)store_sqlite_err(r);
		{
			int64_t id = sqlite3_column_int64(ex->st, 0);
			int64_t t = id >> STORE_SLOT_BITS;
			const char *name, *did, *canon, *before = NULL;
			size_t nl, dl, cl, bl = 0;
			const unsigned char *p = sqlite3_column_blob(ex->st, 4), *v, *ve;
			size_t pn = (size_t)sqlite3_column_bytes(ex->st, 4);
			int first = 0, has_iid = 0;

			if (!(name = store_export_lookup(ex, sqlite3_column_int64(ex->st, 1), &nl)) ||
			    !(did = store_export_lookup(ex, sqlite3_column_int64(ex->st, 2), &dl)))
				return -(int)MP_E_STORE;
			if (ex->where) {
				struct store_export_row row;
				int keep;

				row.ex = ex;
				row.ev.time_ms = t;
				row.ev.name = name;
				row.ev.name_len = nl;
				row.ev.did = did;
				row.ev.did_len = dl;
				row.ev.props = p;
				row.ev.props_len = pn;
				row.ev.key_id = store_export_key_id;
				row.ev.lookup = store_export_lookup;
				row.ev.ctx = ex;
				row.ev.items = ex->items;
				row.ev.n_items = sizeof ex->items / sizeof ex->items[0];
				keep = expr_eval_where(ex->where, store_export_eval_lookup, &row);
				if (keep < 0)
					return -(int)MP_E_INVALID;
				if (!keep)
					continue;
			}
			if (ex->iid_key)
				has_iid = pc_find(p, pn, ex->iid_key, &v, &ve) == 1;
			if (ex->resolve && (canon = ex->resolve(ex->resolve_ctx, did, dl, &cl)) != NULL) {
				int64_t k = store_export_key_id(ex, "$distinct_id_before_identity", 28);

				before = did;
				bl = dl;
				if (k && pc_find(p, pn, k, &v, &ve) == 1)
					before = NULL;     /* the event names it already */
				did = canon;
				dl = cl;
			}
			if ((rc = buf_append(out, "{\"event\":", 9)) != MP_OK ||
			    (rc = buf_json_str(out, name, nl)) != MP_OK ||
			    (rc = buf_append(out, ",\"properties\":{\"time\":", 22)) != MP_OK ||
			    (rc = ex->time_in_ms ? buf_printf(out, "%lld", (long long)t)
						 : buf_printf(out, "%lld", (long long)(t >= 0 ? t / 1000 : -((-t + 999) / 1000)))) != MP_OK ||
			    (rc = buf_append(out, ",\"distinct_id\":", 15)) != MP_OK ||
			    (rc = buf_json_str(out, did, dl)) != MP_OK)
				return -(int)rc;
			if (!has_iid && (rc = store_export_gen_insert_id(out, ex->key, id)) != MP_OK)
				return -(int)rc;
			if (before && ((rc = buf_append(out, ",\"$distinct_id_before_identity\":", 32)) != MP_OK ||
				       (rc = buf_json_str(out, before, bl)) != MP_OK))
				return -(int)rc;
			if ((rc = pc_to_json(p, pn, store_export_lookup, ex, out, &first)) != MP_OK)
				return -(int)rc;
			if ((rc = buf_printf(out, ",\"mp_processing_time_ms\":%lld}}\n",
					     (long long)(t + sqlite3_column_int64(ex->st, 3)))) != MP_OK)
				return -(int)rc;
			ex->emitted++;
			return 1;
		}
	}
}

/* ---------- read access for the query engine ---------- */

const char *store_project_dir(const struct store_project *sp)
{
	return sp->dir;
}

int64_t store_sql_int64(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int64_t v = -1;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

int64_t store_shard_gen(sqlite3 *db)
{
	return store_sql_int64(db, "SELECT value FROM stats WHERE name='gen'");
}

enum mp_err store_shard_open_ro(const struct store_project *sp, const char *key, sqlite3 **db)
{
	char path[4096];

	snprintf(path, sizeof path, "%s/events-%s.db", sp->dir, key);
	return store_db_open(path, "shard", CONFIG_SYNC_NORMAL, 1, db);
}

/* ---------- privacy deletions ---------- */

enum mp_err store_deletion_get(struct store_project *sp, const char *task_id, struct store_deletion *out)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	enum mp_err rc;
	int r;

	memset(out, 0, sizeof *out);
	if ((rc = store_meta_open_ro(sp, &db)) != MP_OK)
		return rc;
	if (sqlite3_prepare_v2(db, "SELECT compliance_type, distinct_ids, requested_ms, completed_ms, events, "
				   "profiles, links FROM deletions WHERE task_id=?", -1, &st, NULL) != SQLITE_OK) {
		sqlite3_close(db);
		return MP_E_STORE;
	}
	sqlite3_bind_text(st, 1, task_id, -1, SQLITE_STATIC);
	if ((r = sqlite3_step(st)) == SQLITE_ROW) {
		snprintf(out->compliance_type, sizeof out->compliance_type, "%s",
			 (const char *)sqlite3_column_text(st, 0));
		out->distinct_ids = strdup((const char *)sqlite3_column_text(st, 1));
		out->requested_ms = sqlite3_column_int64(st, 2);
		out->completed_ms = sqlite3_column_int64(st, 3);
		out->events = sqlite3_column_int64(st, 4);
		out->profiles = sqlite3_column_int64(st, 5);
		out->links = sqlite3_column_int64(st, 6);
		rc = out->distinct_ids ? MP_OK : MP_E_NOMEM;
	} else {
		rc = r == SQLITE_DONE ? MP_E_NOTFOUND : MP_E_STORE;
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}

/* ---------- saved funnels (meta.db) ---------- */

static enum mp_err store_meta_conn(const struct store_project *sp, int readonly, sqlite3 **db)
{
	char path[4096];

	snprintf(path, sizeof path, "%s/meta.db", sp->dir);
	return store_db_open(path, "meta", sp->st->cfg->sync, readonly, db);
}

enum mp_err store_meta_open_ro(const struct store_project *sp, sqlite3 **db)
{
	return store_meta_conn(sp, 1, db);
}

/* ---------- saved cohorts (meta.db) ---------- */

enum mp_err store_cohort_put(struct store_project *sp, int64_t *id, const char *body)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	enum mp_err rc;
	struct timespec ts;
	int r;

	if ((rc = store_meta_conn(sp, 0, &db)) != MP_OK)
		return rc;
	clock_gettime(CLOCK_REALTIME, &ts);
	if ((rc = store_prepare(db, *id ? "UPDATE cohorts SET body=?1, updated_ms=?2 WHERE id=?3"
				       : "INSERT INTO cohorts(body, created_ms, updated_ms) VALUES(?1,?2,?2)", &st)) == MP_OK) {
		sqlite3_bind_text(st, 1, body, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
		if (*id)
			sqlite3_bind_int64(st, 3, *id);
		r = sqlite3_step(st);
		if (r != SQLITE_DONE)
			rc = store_sqlite_err(r);
		else if (!*id)
			*id = sqlite3_last_insert_rowid(db);
		else if (sqlite3_changes(db) == 0)
			rc = MP_E_NOTFOUND;
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}

enum mp_err store_cohort_get(struct store_project *sp, int64_t id, char **body, int64_t *created_ms,
			     int64_t *updated_ms)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	enum mp_err rc;
	int r;

	*body = NULL;
	if ((rc = store_meta_conn(sp, 1, &db)) != MP_OK)
		return rc;
	if ((rc = store_prepare(db, "SELECT body, created_ms, updated_ms FROM cohorts WHERE id=?", &st)) == MP_OK) {
		sqlite3_bind_int64(st, 1, id);
		r = sqlite3_step(st);
		if (r == SQLITE_ROW) {
			*created_ms = sqlite3_column_int64(st, 1);
			*updated_ms = sqlite3_column_int64(st, 2);
			if (!(*body = strdup((const char *)sqlite3_column_text(st, 0))))
				rc = MP_E_NOMEM;
		} else {
			rc = r == SQLITE_DONE ? MP_E_NOTFOUND : store_sqlite_err(r);
		}
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}



enum mp_err store_cohort_list(struct store_project *sp,
			      int (*cb)(void *ctx, int64_t id, const char *body, int64_t created_ms,
					int64_t updated_ms),
			      void *ctx)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	enum mp_err rc;
	int r;

	if ((rc = store_meta_conn(sp, 1, &db)) != MP_OK)
		return rc;
	if ((rc = store_prepare(db, "SELECT id, body, created_ms, updated_ms FROM cohorts ORDER BY id", &st)) == MP_OK) {
		while ((r = sqlite3_step(st)) == SQLITE_ROW)
			if (cb(ctx, sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 1),
			       sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3))) {
				rc = MP_E_INVALID;
				break;
			}
		if (rc == MP_OK && r != SQLITE_DONE)
			rc = store_sqlite_err(r);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}

enum mp_err store_funnel_create(struct store_project *sp, const char *name, const char *definition,
				int64_t *id)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	enum mp_err rc;
	struct timespec ts;
	int r;

	if ((rc = store_meta_conn(sp, 0, &db)) != MP_OK)
		return rc;
	clock_gettime(CLOCK_REALTIME, &ts);
	if ((rc = store_prepare(db, "INSERT INTO funnels(name, definition, created_ms) VALUES(?,?,?)", &st)) == MP_OK) {
		sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, definition, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
		r = sqlite3_step(st);
		if (r == SQLITE_DONE)
			*id = sqlite3_last_insert_rowid(db);
		else
			rc = store_sqlite_err(r);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}

enum mp_err store_funnel_get(struct store_project *sp, int64_t id, char **name, char **definition)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	enum mp_err rc;
	int r;

	*name = *definition = NULL;
	if ((rc = store_meta_conn(sp, 1, &db)) != MP_OK)
		return rc;
	if ((rc = store_prepare(db, "SELECT name, definition FROM funnels WHERE id=?", &st)) == MP_OK) {
		sqlite3_bind_int64(st, 1, id);
		r = sqlite3_step(st);
		if (r == SQLITE_ROW) {
			*name = strdup((const char *)sqlite3_column_text(st, 0));
			*definition = strdup((const char *)sqlite3_column_text(st, 1));
			if (!*name || !*definition) {
				free(*name);
				free(*definition);
				*name = *definition = NULL;
				rc = MP_E_NOMEM;
			}
		} else {
			rc = r == SQLITE_DONE ? MP_E_NOTFOUND : store_sqlite_err(r);
		}
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}

enum mp_err store_funnel_list(struct store_project *sp, struct buf *out)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	enum mp_err rc;
	int r, first = 1;

	if ((rc = store_meta_conn(sp, 1, &db)) != MP_OK)
		return rc;
	if ((rc = store_prepare(db, "SELECT id, name FROM funnels ORDER BY id", &st)) == MP_OK &&
	    (rc = buf_putc(out, '[')) == MP_OK) {
		while (rc == MP_OK && (r = sqlite3_step(st)) == SQLITE_ROW) {
			const char *nm = (const char *)sqlite3_column_text(st, 1);

			if ((rc = buf_printf(out, "%s{\"funnel_id\":%lld,\"name\":", first ? "" : ",",
					     (long long)sqlite3_column_int64(st, 0))) == MP_OK &&
			    (rc = buf_json_str(out, nm, strlen(nm))) == MP_OK)
				rc = buf_putc(out, '}');
			first = 0;
		}
		if (rc == MP_OK && r != SQLITE_DONE)
			rc = store_sqlite_err(r);
		if (rc == MP_OK)
			rc = buf_putc(out, ']');
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}

/* ---------- saved reports and dashboards (meta.db) ---------- */

static int64_t store_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Column I of the current row as a malloc'ed string ("" for NULL), or NULL
 * on out of memory. */
static char *store_col_dup(sqlite3_stmt *st, int i)
{
	const char *t = (const char *)sqlite3_column_text(st, i);

	return strdup(t ? t : "");
}

/* Step a bound statement that returns no rows. */
static enum mp_err store_step_done(sqlite3_stmt *st)
{
	int r = sqlite3_step(st);

	return r == SQLITE_DONE ? MP_OK : store_sqlite_err(r);
}

/* Bind TEXT (may be NULL: SQL NULL) as parameter I. */
static void store_bind_opt(sqlite3_stmt *st, int i, const char *text)
{
	if (text)
		sqlite3_bind_text(st, i, text, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

void store_bookmark_clear(struct store_bookmark *b)
{
	if (!b)
		return;
	free(b->name);
	free(b->type);
	free(b->description);
	free(b->params);
	memset(b, 0, sizeof *b);
}

void store_bookmark_list_free(struct store_bookmark *a, size_t n)
{
	size_t i;

	for (i = 0; a && i < n; i++)
		store_bookmark_clear(&a[i]);
	free(a);
}

enum mp_err store_bookmark_create(struct store_project *sp, const char *name, const char *type,
				  const char *description, const char *params, int64_t *id)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	enum mp_err rc;
	int64_t now = store_now_ms();

	if ((rc = store_meta_conn(sp, 0, &db)) != MP_OK)
		return rc;
	if ((rc = store_prepare(db, "INSERT INTO bookmarks(name, type, description, params, created_ms, updated_ms) "
			       "VALUES(?,?,?,?,?,?)", &st)) == MP_OK) {
		sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, type, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, description ? description : "", -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, params, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 5, now);
		sqlite3_bind_int64(st, 6, now);
		if ((rc = store_step_done(st)) == MP_OK)
			*id = sqlite3_last_insert_rowid(db);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}

/* A bookmark row (id, name, type, description, created_ms, updated_ms
 * [, params]) into *B. */
static enum mp_err store_bookmark_row(sqlite3_stmt *st, int with_params, struct store_bookmark *b)
{
	memset(b, 0, sizeof *b);
	b->id = sqlite3_column_int64(st, 0);
	b->name = store_col_dup(st, 1);
	b->type = store_col_dup(st, 2);
	b->description = store_col_dup(st, 3);
	b->created_ms = sqlite3_column_int64(st, 4);
	b->updated_ms = sqlite3_column_int64(st, 5);
	if (with_params)
		b->params = store_col_dup(st, 6);
	if (!b->name || !b->type || !b->description || (with_params && !b->params)) {
		store_bookmark_clear(b);
		return MP_E_NOMEM;
	}
	return MP_OK;
}

enum mp_err store_bookmark_get(struct store_project *sp, int64_t id, struct store_bookmark *out)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	enum mp_err rc;
	int r;

	memset(out, 0, sizeof *out);
	if ((rc = store_meta_conn(sp, 1, &db)) != MP_OK)
		return rc;
	if ((rc = store_prepare(db, "SELECT id, name, type, description, created_ms, updated_ms, params "
			       "FROM bookmarks WHERE id=?", &st)) == MP_OK) {
		sqlite3_bind_int64(st, 1, id);
		r = sqlite3_step(st);
		if (r == SQLITE_ROW)
			rc = store_bookmark_row(st, 1, out);
		else
			rc = r == SQLITE_DONE ? MP_E_NOTFOUND : store_sqlite_err(r);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}

enum mp_err store_bookmark_list(struct store_project *sp, struct store_bookmark **out, size_t *n)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	struct store_bookmark *a = NULL;
	size_t cap = 0;
	enum mp_err rc;
	int r = SQLITE_DONE;

	*out = NULL;
	*n = 0;
	if ((rc = store_meta_conn(sp, 1, &db)) != MP_OK)
		return rc;
	if ((rc = store_prepare(db, "SELECT id, name, type, description, created_ms, updated_ms "
			       "FROM bookmarks ORDER BY id", &st)) == MP_OK) {
		while (rc == MP_OK && (r = sqlite3_step(st)) == SQLITE_ROW) {
			if (*n == cap) {
				struct store_bookmark *na = realloc(a, (cap = cap ? cap * 2 : 16) * sizeof *na);

				if (!na) {
					rc = MP_E_NOMEM;
					break;
				}
				a = na;
			}
			if ((rc = store_bookmark_row(st, 0, &a[*n])) == MP_OK)
				(*n)++;
		}
		if (rc == MP_OK && r != SQLITE_DONE)
			rc = store_sqlite_err(r);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	if (rc != MP_OK) {
		store_bookmark_list_free(a, *n);
		*n = 0;
		return rc;
	}
	*out = a;
	return MP_OK;
}

enum mp_err store_bookmark_update(struct store_project *sp, int64_t id, const char *name, const char *type,
				  const char *description, const char *params)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	enum mp_err rc;

	if ((rc = store_meta_conn(sp, 0, &db)) != MP_OK)
		return rc;
	if ((rc = store_prepare(db, "UPDATE bookmarks SET name=COALESCE(?1,name), type=COALESCE(?2,type), "
			       "description=COALESCE(?3,description), params=COALESCE(?4,params), updated_ms=?5 "
			       "WHERE id=?6", &st)) == MP_OK) {
		store_bind_opt(st, 1, name);
		store_bind_opt(st, 2, type);
		store_bind_opt(st, 3, description);
		store_bind_opt(st, 4, params);
		sqlite3_bind_int64(st, 5, store_now_ms());
		sqlite3_bind_int64(st, 6, id);
		if ((rc = store_step_done(st)) == MP_OK && sqlite3_changes(db) == 0)
			rc = MP_E_NOTFOUND;
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}

/* Run the one-parameter (ID) statement SQL through DB; *CHANGES = rows changed. */
static enum mp_err store_exec_id(sqlite3 *db, const char *sql, int64_t id, int *changes)
{
	sqlite3_stmt *st = NULL;
	enum mp_err rc;

	if ((rc = store_prepare(db, sql, &st)) == MP_OK) {
		sqlite3_bind_int64(st, 1, id);
		if ((rc = store_step_done(st)) == MP_OK && changes)
			*changes = sqlite3_changes(db);
	}
	sqlite3_finalize(st);
	return rc;
}

/* Delete row ID of a saved object (MAIN_SQL) and the dashboard cells that
 * name it (ITEMS_SQL, may be NULL), in one transaction of a short-lived
 * meta.db connection.  MP_E_NOTFOUND when there is no such row. */
static enum mp_err store_meta_delete(struct store_project *sp, const char *items_sql, const char *main_sql,
				     int64_t id)
{
	sqlite3 *db = NULL;
	enum mp_err rc;
	int changes = 0;

	if ((rc = store_meta_conn(sp, 0, &db)) != MP_OK)
		return rc;
	if ((rc = store_exec(db, "BEGIN IMMEDIATE")) == MP_OK) {
		if ((!items_sql || (rc = store_exec_id(db, items_sql, id, NULL)) == MP_OK) &&
		    (rc = store_exec_id(db, main_sql, id, &changes)) == MP_OK && !changes)
			rc = MP_E_NOTFOUND;
		if (rc == MP_OK)
			rc = store_exec(db, "COMMIT");
		if (rc != MP_OK)
			store_exec(db, "ROLLBACK");
	}
	sqlite3_close(db);
	return rc;
}

enum mp_err store_bookmark_delete(struct store_project *sp, int64_t id)
{
	return store_meta_delete(sp, "DELETE FROM dashboard_items WHERE bookmark_id=?",
				 "DELETE FROM bookmarks WHERE id=?", id);
}

void store_dashboard_clear(struct store_dashboard *d)
{
	size_t i;

	if (!d)
		return;
	for (i = 0; i < d->n_items; i++) {
		free(d->items[i].name);
		free(d->items[i].type);
	}
	free(d->items);
	free(d->name);
	free(d->description);
	memset(d, 0, sizeof *d);
}

void store_dashboard_list_free(struct store_dashboard *a, size_t n)
{
	size_t i;

	for (i = 0; a && i < n; i++)
		store_dashboard_clear(&a[i]);
	free(a);
}

/* Replace dashboard ID's layout with ITEMS inside the caller's transaction:
 * MP_E_NOTFOUND with *MISSING when a bookmark does not exist. */
static enum mp_err store_dash_put_items(sqlite3 *db, int64_t id, const struct store_dash_item *items, size_t n,
					int64_t *missing)
{
	sqlite3_stmt *chk = NULL, *ins = NULL;
	enum mp_err rc;
	size_t i;
	int r;

	if ((rc = store_exec_id(db, "DELETE FROM dashboard_items WHERE dashboard_id=?", id, NULL)) != MP_OK ||
	    (rc = store_prepare(db, "SELECT 1 FROM bookmarks WHERE id=?", &chk)) != MP_OK ||
	    (rc = store_prepare(db, "INSERT INTO dashboard_items(dashboard_id, pos, bookmark_id, x, y, w, h) "
			       "VALUES(?,?,?,?,?,?,?)", &ins)) != MP_OK)
		goto out;
	for (i = 0; i < n && rc == MP_OK; i++) {
		sqlite3_reset(chk);
		sqlite3_bind_int64(chk, 1, items[i].bookmark_id);
		if ((r = sqlite3_step(chk)) == SQLITE_DONE) {
			*missing = items[i].bookmark_id;
			rc = MP_E_NOTFOUND;
			break;
		}
		if (r != SQLITE_ROW) {
			rc = store_sqlite_err(r);
			break;
		}
		sqlite3_reset(ins);
		sqlite3_bind_int64(ins, 1, id);
		sqlite3_bind_int64(ins, 2, (int64_t)i);
		sqlite3_bind_int64(ins, 3, items[i].bookmark_id);
		sqlite3_bind_int(ins, 4, items[i].x);
		sqlite3_bind_int(ins, 5, items[i].y);
		sqlite3_bind_int(ins, 6, items[i].w);
		sqlite3_bind_int(ins, 7, items[i].h);
		rc = store_step_done(ins);
	}
out:
	sqlite3_finalize(chk);
	sqlite3_finalize(ins);
	return rc;
}

enum mp_err store_dashboard_create(struct store_project *sp, const char *name, const char *description,
				   const struct store_dash_item *items, size_t n, int64_t *id, int64_t *missing)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	enum mp_err rc;
	int64_t now = store_now_ms();

	*missing = 0;
	if ((rc = store_meta_conn(sp, 0, &db)) != MP_OK)
		return rc;
	if ((rc = store_exec(db, "BEGIN IMMEDIATE")) != MP_OK)
		goto out;
	if ((rc = store_prepare(db, "INSERT INTO dashboards(name, description, created_ms, updated_ms) VALUES(?,?,?,?)",
				&st)) == MP_OK) {
		sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, description ? description : "", -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, now);
		sqlite3_bind_int64(st, 4, now);
		if ((rc = store_step_done(st)) == MP_OK) {
			*id = sqlite3_last_insert_rowid(db);
			rc = store_dash_put_items(db, *id, items, n, missing);
		}
	}
	if (rc == MP_OK)
		rc = store_exec(db, "COMMIT");
	if (rc != MP_OK)
		store_exec(db, "ROLLBACK");
out:
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}

enum mp_err store_dashboard_get(struct store_project *sp, int64_t id, struct store_dashboard *out)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	size_t cap = 0;
	enum mp_err rc;
	int r;

	memset(out, 0, sizeof *out);
	if ((rc = store_meta_conn(sp, 1, &db)) != MP_OK)
		return rc;
	/* one read transaction: the dashboard and its layout agree */
	if ((rc = store_exec(db, "BEGIN")) != MP_OK)
		goto out;
	if ((rc = store_prepare(db, "SELECT name, description, created_ms, updated_ms FROM dashboards WHERE id=?",
				&st)) != MP_OK)
		goto out;
	sqlite3_bind_int64(st, 1, id);
	if ((r = sqlite3_step(st)) != SQLITE_ROW) {
		rc = r == SQLITE_DONE ? MP_E_NOTFOUND : store_sqlite_err(r);
		goto out;
	}
	out->id = id;
	out->name = store_col_dup(st, 0);
	out->description = store_col_dup(st, 1);
	out->created_ms = sqlite3_column_int64(st, 2);
	out->updated_ms = sqlite3_column_int64(st, 3);
	if (!out->name || !out->description) {
		rc = MP_E_NOMEM;
		goto out;
	}
	sqlite3_finalize(st);
	st = NULL;
	if ((rc = store_prepare(db, "SELECT i.bookmark_id, i.x, i.y, i.w, i.h, b.name, b.type FROM dashboard_items i "
			       "JOIN bookmarks b ON b.id = i.bookmark_id WHERE i.dashboard_id=? ORDER BY i.pos",
			       &st)) != MP_OK)
		goto out;
	sqlite3_bind_int64(st, 1, id);
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_dash_item *it;

		if (out->n_items == cap) {
			struct store_dash_item *na = realloc(out->items, (cap = cap ? cap * 2 : 8) * sizeof *na);

			if (!na) {
				rc = MP_E_NOMEM;
				goto out;
			}
			out->items = na;
		}
		it = &out->items[out->n_items];
		it->bookmark_id = sqlite3_column_int64(st, 0);
		it->x = sqlite3_column_int(st, 1);
		it->y = sqlite3_column_int(st, 2);
		it->w = sqlite3_column_int(st, 3);
		it->h = sqlite3_column_int(st, 4);
		it->name = store_col_dup(st, 5);
		it->type = store_col_dup(st, 6);
		out->n_items++;
		if (!it->name || !it->type) {
			rc = MP_E_NOMEM;
			goto out;
		}
	}
	if (r != SQLITE_DONE)
		rc = store_sqlite_err(r);
out:
	sqlite3_finalize(st);
	if (sqlite3_get_autocommit(db) == 0)
		store_exec(db, "COMMIT");
	sqlite3_close(db);
	if (rc != MP_OK)
		store_dashboard_clear(out);
	return rc;
}

enum mp_err store_dashboard_list(struct store_project *sp, struct store_dashboard **out, size_t *n)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	struct store_dashboard *a = NULL;
	size_t cap = 0;
	enum mp_err rc;
	int r = SQLITE_DONE;

	*out = NULL;
	*n = 0;
	if ((rc = store_meta_conn(sp, 1, &db)) != MP_OK)
		return rc;
	if ((rc = store_prepare(db, "SELECT id, name, description, created_ms, updated_ms FROM dashboards ORDER BY id",
				&st)) == MP_OK) {
		while ((r = sqlite3_step(st)) == SQLITE_ROW) {
			struct store_dashboard *d;

			if (*n == cap) {
				struct store_dashboard *na = realloc(a, (cap = cap ? cap * 2 : 16) * sizeof *na);

				if (!na) {
					rc = MP_E_NOMEM;
					break;
				}
				a = na;
			}
			d = &a[(*n)++];
			memset(d, 0, sizeof *d);
			d->id = sqlite3_column_int64(st, 0);
			d->name = store_col_dup(st, 1);
			d->description = store_col_dup(st, 2);
			d->created_ms = sqlite3_column_int64(st, 3);
			d->updated_ms = sqlite3_column_int64(st, 4);
			if (!d->name || !d->description) {
				rc = MP_E_NOMEM;
				break;
			}
		}
		if (rc == MP_OK && r != SQLITE_DONE)
			rc = store_sqlite_err(r);
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	if (rc != MP_OK) {
		store_dashboard_list_free(a, *n);
		*n = 0;
		return rc;
	}
	*out = a;
	return MP_OK;
}

enum mp_err store_dashboard_update(struct store_project *sp, int64_t id, const char *name, const char *description,
				   int set_layout, const struct store_dash_item *items, size_t n, int64_t *missing)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	enum mp_err rc;

	*missing = 0;
	if ((rc = store_meta_conn(sp, 0, &db)) != MP_OK)
		return rc;
	if ((rc = store_exec(db, "BEGIN IMMEDIATE")) != MP_OK)
		goto out;
	if ((rc = store_prepare(db, "UPDATE dashboards SET name=COALESCE(?1,name), "
			       "description=COALESCE(?2,description), updated_ms=?3 WHERE id=?4", &st)) == MP_OK) {
		store_bind_opt(st, 1, name);
		store_bind_opt(st, 2, description);
		sqlite3_bind_int64(st, 3, store_now_ms());
		sqlite3_bind_int64(st, 4, id);
		if ((rc = store_step_done(st)) == MP_OK && sqlite3_changes(db) == 0)
			rc = MP_E_NOTFOUND;
		if (rc == MP_OK && set_layout)
			rc = store_dash_put_items(db, id, items, n, missing);
	}
	if (rc == MP_OK)
		rc = store_exec(db, "COMMIT");
	if (rc != MP_OK)
		store_exec(db, "ROLLBACK");
out:
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}

enum mp_err store_dashboard_delete(struct store_project *sp, int64_t id)
{
	return store_meta_delete(sp, "DELETE FROM dashboard_items WHERE dashboard_id=?",
				 "DELETE FROM dashboards WHERE id=?", id);
}

enum mp_err store_cohort_delete(struct store_project *sp, int64_t id)
{
	return store_meta_delete(sp, NULL, "DELETE FROM cohorts WHERE id=?", id);
}
