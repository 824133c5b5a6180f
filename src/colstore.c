/*
 * colstore.c - the columnar projection of a project's events (contract in
 * include/colstore.h).
 *
 * Pieces:
 *   strings   project-wide string table: chunked arrays that never move
 *             (so a view can read them while a rebuild appends), plus a hash
 *             index used under the mutex only.
 *   segments  one per shard file: its events in id order (time order) as
 *             columns, its property records re-encoded with project-wide
 *             string ids in one arena, and the read connection whose
 *             PRAGMA data_version tells when the file changed.  Refcounted:
 *             views keep the arenas of the segments they point into.
 *   views     the sorted columns of every segment, built by a stable
 *             counting sort by user key over the segments in time order.
 *
 * Invariants:
 *   1. Segments are kept in ascending shard-key order; shard files normally
 *      hold disjoint, increasing time ranges, so concatenating segments gives
 *      (time, id) order and the stable sort by user yields (user, time, id).
 *      After a change of shard_period, month and day files overlap; the view
 *      build then re-sorts the runs that came out of order (cs_fix_order).
 *   2. A string id, once given, keeps its string for the life of the
 *      colstore; equal strings have one id.
 *   3. Only acquire (under cs->mu) creates segments, strings and views.
 */
#include "colstore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "propcodec.h"

/* Event I's record with its length prefix. */
static inline const unsigned char *cs_rec(const struct cs_view *v, size_t i)
{
	return (const unsigned char *)(v->rec_base + (uintptr_t)v->rec_off[i]);
}

#define CS_CHUNK_BITS 16
#define CS_CHUNK ((uint32_t)1 << CS_CHUNK_BITS)
#define CS_MAX_CHUNKS 65536u
#define CS_STRBLOCK ((size_t)1 << 20)
#define CS_SLOT_BITS 20

struct cs_str {
	const char *s;
	uint32_t len;
};

struct cs_strings {
	struct cs_str *chunks[CS_MAX_CHUNKS];
	uint32_t n;                /* next id; id 0 is unused */
	/* string bytes: blocks that never move */
	char **blocks;             /* every allocation, for freeing */
	size_t n_blocks, cap_blocks;
	char *cur_block;           /* small strings are packed here */
	size_t block_used;
	/* hash index: id per slot, 0 = empty */
	uint64_t *idx;             /* slot: hash << 32 | id (0 = empty): probes compare hashes first */
	size_t idx_cap;
};

struct cs_seg {
	char key[32];
	int64_t from_ms, to_ms;    /* the shard's time range */
	sqlite3 *db;
	int64_t dv;                /* PRAGMA data_version when loaded */
	int64_t gen;               /* the shard's persistent change counter when loaded */
	int refs;                  /* colstore + views; guarded by cs->mu */
	size_t n;
	/* the rows, in id order, as a byte stream: per row varint(time - the
	 * previous row's time), varint(event name id), varint(distinct_id id):
	 * about 6 bytes instead of 16 (only cs_view_build reads it, in order) */
	struct buf rows;
	struct buf arena;          /* the rows' property records, in the same order,
				      each a varint length and the record */
	struct id_link *links;     /* the shard's identity links (simplified ID merge) */
	size_t n_links;
	int seen;                  /* scratch for acquire */
};

#define CS_MAX_COLUMNS 32
#define CS_MAX_DERIVED 16         /* group and filtered views kept per view */
#define CS_MAX_FILTERS 4          /* of which filtered views (each up to the size of the view) */

struct cs_file_shard {
	char key[32];
	int64_t gen;
};

struct cs_fshard {
	sqlite3 *db;
	int64_t dv;                /* PRAGMA data_version when the change counter was checked */
};

struct cs_view_priv {
	struct colstore *cs;
	int refs;                  /* guarded by cs->mu */
	struct cs_seg **segs;
	size_t n_segs;
	int64_t *t;
	uint32_t *ev, *did, *user, *ustart, *ukey;
	uint64_t *rec;             /* rec_off: addresses (memory views) or file offsets */
	uint32_t n_ukey;
	/* identity: canonical string id of every string id (NULL: nothing is
	 * merged), and the links it came from */
	uint32_t *canon;
	struct id_link *links;
	size_t n_links;
	/* by event name */
	uint32_t *name_sid, *nstart, *npos, *name_of;
	int64_t *nt;
	/* a view read from the projection file: arrays point into the mapping */
	void *map;
	size_t map_len;
	struct cs_file_shard *manifest;  /* the shards (key, gen) it reflects */
	size_t n_manifest;
	int persisted;             /* the projection file holds this view */
	int64_t built_ms;          /* monotonic time of the build */
	/* property columns, built on demand */
	pthread_mutex_t colmu;
	struct cs_column *cols[CS_MAX_COLUMNS];
	size_t n_cols;
	/* derived views of this view (colstore_group_view, colstore_filter_view),
	 * built on demand under colmu, freed with it; key: 1 << 32 | group key
	 * string id, or the caller's key of a filter (high bit set) */
	struct cs_view *derived[CS_MAX_DERIVED];
	uint64_t derived_key[CS_MAX_DERIVED];
	size_t n_derived;
	/* a group view: its parent (which owns it and the arrays it shares:
	 * ukey, canon, links, name_sid, name_of), and its groups' names */
	const struct cs_view *parent;
	struct buf gnames;         /* the group ids, each NUL-terminated */
	uint8_t *keep;             /* a filtered view: the users it keeps (parent's n_users) */
	uint64_t *gname_off;       /* group k's name at gnames.data + gname_off[k] */
};

struct colstore {
	struct store_project *sp;
	int original;              /* identity = original (else simplified) */
	atomic_int stopping;       /* colstore_stop(): loads give up (MP_E_SHUTDOWN) */
	pthread_mutex_t mu;
	struct cs_strings *strings;
	struct cs_seg **segs;
	size_t n_segs;
	struct cs_view *cur;       /* the newest view (holds one ref) */
	int stale;                 /* cur misses changes (its rebuild failed) */
	int file_mode;             /* cur came from the projection file; no segments loaded */
	int tried_file;            /* the projection file was looked at (once, at the first acquire) */
	void *map;                 /* the mapped projection file (strings point into it), or NULL */
	size_t map_len;
	struct cs_fshard *fsh;     /* file mode: a connection to each shard of the manifest */
	size_t n_fsh;
};

/* ---------- strings ---------- */

static uint64_t cs_hash(const char *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	while (n--)
		h = (h ^ (unsigned char)*s++) * 0x100000001b3ULL;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	return h ^ (h >> 33);
}

static const struct cs_str *cs_str_at(const struct cs_strings *ss, uint32_t id)
{
	return &ss->chunks[id >> CS_CHUNK_BITS][id & (CS_CHUNK - 1)];
}

static uint32_t cs_strings_find(const struct cs_strings *ss, const char *s, size_t n)
{
	uint64_t h = cs_hash(s, n);
	uint32_t h32 = (uint32_t)(h >> 32);
	size_t i;

	if (!ss->idx_cap)
		return 0;
	for (i = h & (ss->idx_cap - 1);; i = (i + 1) & (ss->idx_cap - 1)) {
		uint64_t slot = ss->idx[i];
		const struct cs_str *e;

		if (!slot)
			return 0;
		if ((uint32_t)(slot >> 32) != h32 || (uint32_t)slot >= ss->n)
			continue;
		e = cs_str_at(ss, (uint32_t)slot);
		if (e->len == n && memcmp(e->s, s, n) == 0)
			return (uint32_t)slot;
	}
}

static void cs_strings_slot(uint64_t *idx, size_t cap, uint64_t h, uint32_t id)
{
	size_t j;

	for (j = h & (cap - 1); idx[j]; j = (j + 1) & (cap - 1))
		;
	idx[j] = (h >> 32 << 32) | id;
}

static enum mp_err cs_strings_grow_idx(struct cs_strings *ss)
{
	size_t cap = ss->idx_cap ? ss->idx_cap * 2 : 1 << 16;
	uint64_t *idx = calloc(cap, sizeof *idx);
	uint32_t id;

	if (!idx)
		return MP_E_NOMEM;
	for (id = 1; id < ss->n; id++) {
		const struct cs_str *e = cs_str_at(ss, id);

		cs_strings_slot(idx, cap, cs_hash(e->s, e->len), id);
	}
	free(ss->idx);
	ss->idx = idx;
	ss->idx_cap = cap;
	return MP_OK;
}

static enum mp_err cs_strings_keep(struct cs_strings *ss, char *block)
{
	if (ss->n_blocks == ss->cap_blocks) {
		size_t cap = ss->cap_blocks ? ss->cap_blocks * 2 : 64;
		char **nb = realloc(ss->blocks, cap * sizeof *nb);

		if (!nb)
			return MP_E_NOMEM;
		ss->blocks = nb;
		ss->cap_blocks = cap;
	}
	ss->blocks[ss->n_blocks++] = block;
	return MP_OK;
}

/* Room for N + 1 bytes that never moves: in the current block, a new
 * block, or (long strings) an allocation of its own. */
static char *cs_strings_room(struct cs_strings *ss, size_t n)
{
	char *dst;

	if (n + 1 > CS_STRBLOCK / 4) {
		if (!(dst = malloc(n + 1)) || cs_strings_keep(ss, dst) != MP_OK) {
			free(dst);
			return NULL;
		}
		return dst;
	}
	if (!ss->cur_block || ss->block_used + n + 1 > CS_STRBLOCK) {
		if (!(dst = malloc(CS_STRBLOCK)) || cs_strings_keep(ss, dst) != MP_OK) {
			free(dst);
			return NULL;
		}
		ss->cur_block = dst;
		ss->block_used = 0;
	}
	dst = ss->cur_block + ss->block_used;
	ss->block_used += n + 1;
	return dst;
}

/* The id of S, added when new; 0 on out of memory. */
static uint32_t cs_strings_intern(struct cs_strings *ss, const char *s, size_t n)
{
	uint32_t id = cs_strings_find(ss, s, n);
	struct cs_str *chunk;
	char *dst;

	if (id)
		return id;
	id = ss->n;
	if (id >= CS_CHUNK * (CS_MAX_CHUNKS - 1) || n > UINT32_MAX - 1)
		return 0;
	if ((size_t)(id + 1) * 2 > ss->idx_cap && cs_strings_grow_idx(ss) != MP_OK)
		return 0;
	if (!(chunk = ss->chunks[id >> CS_CHUNK_BITS]) &&
	    !(chunk = ss->chunks[id >> CS_CHUNK_BITS] = calloc(CS_CHUNK, sizeof *chunk)))
		return 0;
	if (!(dst = cs_strings_room(ss, n)))
		return 0;
	memcpy(dst, s, n);
	dst[n] = '\0';
	chunk[id & (CS_CHUNK - 1)].s = dst;
	chunk[id & (CS_CHUNK - 1)].len = (uint32_t)n;
	ss->n = id + 1;
	cs_strings_slot(ss->idx, ss->idx_cap, cs_hash(s, n), id);
	return id;
}

static void cs_strings_free(struct cs_strings *ss)
{
	size_t i;

	if (!ss)
		return;
	for (i = 0; i < CS_MAX_CHUNKS; i++)
		free(ss->chunks[i]);
	for (i = 0; i < ss->n_blocks; i++)
		free(ss->blocks[i]);
	free(ss->blocks);
	free(ss->idx);
	free(ss);
}

/* ---------- segments ---------- */

static void cs_seg_unref(struct cs_seg *g)
{
	if (!g || --g->refs > 0)
		return;
	if (g->db)
		sqlite3_close(g->db);
	buf_free(&g->rows);
	buf_free(&g->arena);
	free(g->links);
	free(g);
}

static void cs_buf_fit(struct buf *b)
{
	char *d;

	if (b->len && b->len + 1 < b->cap && (d = realloc(b->data, b->len + 1))) {
		b->data = d;
		b->cap = b->len + 1;
	}
}

/* Reads a segment's rows in order (see struct cs_seg). */
struct cs_rowit {
	const unsigned char *p, *end;  /* the row stream */
	const unsigned char *r, *rend; /* the records */
	int64_t t;
	uint32_t ev, did;
	const unsigned char *rec;      /* this row's record (with its length prefix) */
};

static void cs_rowit_init(struct cs_rowit *it, const struct cs_seg *g)
{
	memset(it, 0, sizeof *it);
	it->p = (const unsigned char *)g->rows.data;
	it->end = it->p + g->rows.len;
	it->r = (const unsigned char *)g->arena.data;
	it->rend = it->r + g->arena.len;
}

/* 1 with the next row in IT, 0 at the end (the stream is ours: complete). */
static int cs_rowit_next(struct cs_rowit *it)
{
	uint64_t dt, ev, did, len;
	const unsigned char *q;

	if (!it->p || it->p >= it->end || !(it->p = pc_varint(it->p, it->end, &dt)) ||
	    !(it->p = pc_varint(it->p, it->end, &ev)) || !(it->p = pc_varint(it->p, it->end, &did)) ||
	    !(q = pc_varint(it->r, it->rend, &len)))
		return 0;
	it->t += (int64_t)dt;
	it->ev = (uint32_t)ev;
	it->did = (uint32_t)did;
	it->rec = it->r;
	it->r = q + len;
	return 1;
}

static int64_t cs_data_version(sqlite3 *db)
{
	return store_sql_int64(db, "PRAGMA data_version");
}

struct cs_remap {
	uint32_t *map;             /* shard dict id -> string id */
	size_t n;
};

static int64_t cs_remap_id(void *ctx, int64_t id)
{
	struct cs_remap *m = ctx;

	if (id < 1 || (size_t)id >= m->n || !m->map[id])
		return -1;
	return m->map[id];
}

/* The shard's identity links (table idlinks, shard schema 3), with ids
 * remapped to string ids.  Inside cs_seg_load's read transaction. */
static enum mp_err cs_seg_load_links(struct cs_seg *g, struct cs_remap *m)
{
	sqlite3_stmt *st = NULL;
	size_t cap = 0;
	int r;

	free(g->links);
	g->links = NULL;
	g->n_links = 0;
	if (store_sql_int64(g->db, "SELECT count(*) FROM sqlite_master WHERE name='idlinks'") <= 0)
		return MP_OK;  /* not migrated yet: no links */
	if (sqlite3_prepare_v2(g->db, "SELECT a, b, t FROM idlinks", -1, &st, NULL) != SQLITE_OK)
		return MP_E_STORE;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t a = cs_remap_id(m, sqlite3_column_int64(st, 0)), b = cs_remap_id(m, sqlite3_column_int64(st, 1));

		if (a < 0 || b < 0)
			continue;
		if (g->n_links == cap) {
			struct id_link *nl = realloc(g->links, (cap = cap ? cap * 2 : 64) * sizeof *nl);

			if (!nl) {
				sqlite3_finalize(st);
				return MP_E_NOMEM;
			}
			g->links = nl;
		}
		g->links[g->n_links++] = (struct id_link){ sqlite3_column_int64(st, 2), ID_LINK_DEVICE,
							   (uint32_t)a, (uint32_t)b, 0 };
	}
	sqlite3_finalize(st);
	return r == SQLITE_DONE ? MP_OK : MP_E_STORE;
}

/* (Re)read segment G from its file: dictionary, then both event tables,
 * in one read transaction. */
static enum mp_err cs_seg_load(struct colstore *cs, struct cs_seg *g)
{
	sqlite3_stmt *st = NULL;
	struct cs_remap m = { NULL, 0 };
	struct buf tmp;
	enum mp_err rc = MP_OK;
	int64_t last_t = 0, maxid;
	int r, has_tables = 0;

	buf_init(&tmp, (size_t)64 << 20);
	g->dv = cs_data_version(g->db);
	if (sqlite3_exec(g->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		return MP_E_STORE;
	has_tables = store_sql_int64(g->db, "SELECT count(*) FROM sqlite_master WHERE name='stage'") > 0;
	if (!has_tables)
		goto out; /* being created: no events yet */
	g->gen = store_shard_gen(g->db);
	if ((maxid = store_sql_int64(g->db, "SELECT coalesce(max(id),0) FROM dict")) < 0) {
		rc = MP_E_STORE;
		goto out;
	}
	m.n = (size_t)maxid + 1;
	if (!(m.map = calloc(m.n, sizeof *m.map))) {
		rc = MP_E_NOMEM;
		goto out;
	}
	if (sqlite3_prepare_v2(g->db, "SELECT id, s FROM dict", -1, &st, NULL) != SQLITE_OK) {
		rc = MP_E_STORE;
		goto out;
	}
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0);
		const char *s = (const char *)sqlite3_column_text(st, 1);

		if (id < 1 || (size_t)id >= m.n || !s)
			continue;
		if (!(m.map[id] = cs_strings_intern(cs->strings, s, (size_t)sqlite3_column_bytes(st, 1)))) {
			rc = MP_E_NOMEM;
			goto out;
		}
	}
	if (r != SQLITE_DONE) {
		rc = MP_E_STORE;
		goto out;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_prepare_v2(g->db, "SELECT id, e, d, p FROM events UNION ALL "
				      "SELECT id, e, d, p FROM stage ORDER BY id", -1, &st, NULL) != SQLITE_OK) {
		rc = MP_E_STORE;
		goto out;
	}
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t e = sqlite3_column_int64(st, 1), d = sqlite3_column_int64(st, 2);
		int64_t t = sqlite3_column_int64(st, 0) >> CS_SLOT_BITS;

		if (e == 0)
			continue;  /* deleted (a tombstone keeps the slot: store.c invariant 6) */
		if ((g->n & 0xffff) == 0 && atomic_load(&cs->stopping)) {
			rc = MP_E_SHUTDOWN;  /* the server is stopping: do not make it wait */
			goto out;
		}
		const unsigned char *p = sqlite3_column_blob(st, 3);
		size_t pn = (size_t)sqlite3_column_bytes(st, 3);

		if (cs_remap_id(&m, e) < 0 || cs_remap_id(&m, d) < 0 || t < last_t) {
			rc = MP_E_STORE;
			goto out;
		}
		buf_reset(&tmp);
		if ((rc = pc_remap(p, pn, cs_remap_id, &m, &tmp)) != MP_OK)
			goto out;
		if ((rc = buf_varint(&g->rows, (uint64_t)(t - last_t))) != MP_OK ||
		    (rc = buf_varint(&g->rows, m.map[e])) != MP_OK ||
		    (rc = buf_varint(&g->rows, m.map[d])) != MP_OK ||
		    (rc = buf_varint(&g->arena, tmp.len)) != MP_OK ||
		    (rc = buf_append(&g->arena, tmp.data, tmp.len)) != MP_OK)
			goto out;
		last_t = t;
		g->n++;
	}
	if (r != SQLITE_DONE)
		rc = MP_E_STORE;
	if (rc == MP_OK)
		rc = cs_seg_load_links(g, &m);
	/* give back what the doubling reserved (up to half the memory) */
	if (rc == MP_OK)
		cs_buf_fit(&g->rows);
	if (rc == MP_OK)
		cs_buf_fit(&g->arena);
out:
	sqlite3_finalize(st);
	sqlite3_exec(g->db, "COMMIT", NULL, NULL, NULL);
	free(m.map);
	buf_free(&tmp);
	if (rc != MP_OK)
		log_error("colstore: shard %s: cannot load: %s", g->key, mp_strerror(rc));
	return rc;
}

static enum mp_err cs_seg_new(struct colstore *cs, const char *key, int64_t from, int64_t to,
			      struct cs_seg **out)
{
	struct cs_seg *g = calloc(1, sizeof *g);
	enum mp_err rc;

	if (!g)
		return MP_E_NOMEM;
	snprintf(g->key, sizeof g->key, "%s", key);
	g->from_ms = from;
	g->to_ms = to;
	g->refs = 1;
	buf_init(&g->rows, (size_t)1 << 40);
	buf_init(&g->arena, (size_t)1 << 40);
	if ((rc = store_shard_open_ro(cs->sp, key, &g->db)) != MP_OK || (rc = cs_seg_load(cs, g)) != MP_OK) {
		cs_seg_unref(g);
		return rc;
	}
	*out = g;
	return MP_OK;
}

static int cs_key_cmp(const void *a, const void *b)
{
	return strcmp((*(struct cs_seg *const *)a)->key, (*(struct cs_seg *const *)b)->key);
}

/* Bring cs->segs in line with the shard files: new files loaded, changed
 * ones reloaded (as new segments), vanished ones dropped.  Sets *CHANGED. */
static enum mp_err cs_sync_segments(struct colstore *cs, int *changed)
{
	DIR *d = opendir(store_project_dir(cs->sp));
	struct dirent *de;
	enum mp_err rc = MP_OK;
	size_t i, j;

	*changed = 0;
	for (i = 0; i < cs->n_segs; i++)
		cs->segs[i]->seen = 0;
	if (!d)
		return MP_OK;
	while (rc == MP_OK && (de = readdir(d))) {
		char key[32];
		int64_t a, z;
		struct cs_seg *g = NULL, **ns;

		if (!store_shard_file(de->d_name, key, &a, &z))
			continue;
		for (i = 0; i < cs->n_segs && strcmp(cs->segs[i]->key, key) != 0; i++)
			;
		if (i < cs->n_segs) {
			struct cs_seg *old = cs->segs[i];

			old->seen = 1;
			if (cs_data_version(old->db) == old->dv)
				continue;
			if ((rc = cs_seg_new(cs, key, a, z, &g)) != MP_OK)
				break;
			g->seen = 1;
			cs->segs[i] = g;
			cs_seg_unref(old);
			*changed = 1;
			continue;
		}
		if ((rc = cs_seg_new(cs, key, a, z, &g)) != MP_OK)
			break;
		if (!(ns = realloc(cs->segs, (cs->n_segs + 1) * sizeof *ns))) {
			cs_seg_unref(g);
			rc = MP_E_NOMEM;
			break;
		}
		cs->segs = ns;
		g->seen = 1;
		cs->segs[cs->n_segs++] = g;
		*changed = 1;
	}
	closedir(d);
	for (i = j = 0; i < cs->n_segs; i++) {
		if (cs->segs[i]->seen) {
			cs->segs[j++] = cs->segs[i];
		} else {
			cs_seg_unref(cs->segs[i]);
			*changed = 1;
		}
	}
	cs->n_segs = j;
	if (cs->n_segs > 1)
		qsort(cs->segs, cs->n_segs, sizeof *cs->segs, cs_key_cmp);
	return rc;
}

/* ---------- views ---------- */

static void cs_view_free(struct cs_view *v)
{
	struct cs_view_priv *p = v->priv;
	size_t i;

	for (i = 0; i < p->n_segs; i++)
		cs_seg_unref(p->segs[i]);
	for (i = 0; i < p->n_derived; i++)
		cs_view_free(p->derived[i]);
	free(p->segs);
	free(p->manifest);
	buf_free(&p->gnames);
	free(p->gname_off);
	free(p->keep);
	if (p->parent) {
		p->ukey = p->name_sid = p->name_of = p->canon = NULL;
		p->links = NULL;
	}
	if (p->map) {
		/* the arrays live in the mapping, which the colstore owns (its
		 * strings point into it too) */
		p->t = p->nt = NULL;
		p->ev = p->did = p->user = p->ustart = p->ukey = p->name_sid = p->nstart = p->npos = p->name_of = NULL;
		p->canon = NULL;
		p->links = NULL;
	}
	free(p->canon);
	free(p->links);
	free(p->t);
	free(p->ev);
	free(p->did);
	free(p->user);
	free(p->ustart);
	free(p->ukey);
	free(p->rec);
	free(p->name_sid);
	free(p->nstart);
	free(p->npos);
	free(p->name_of);
	free(p->nt);
	for (i = 0; i < p->n_cols; i++) {
		free((void *)p->cols[i]->code);
		free((void *)p->cols[i]->num);
		free((void *)p->cols[i]->ncode);
		free((void *)p->cols[i]->nnum);
		free(p->cols[i]);
	}
	pthread_mutex_destroy(&p->colmu);
	free(p);
	free(v);
}

/* The identity seam (see colstore.h): today the distinct_id is the user. */
uint32_t colstore_user_key(const struct cs_view *v, uint32_t did)
{
	const struct cs_view_priv *p = v->priv;

	return did < p->n_ukey ? p->ukey[did] : CS_NO_USER;
}

uint32_t colstore_canonical(const struct cs_view *v, uint32_t did)
{
	const struct cs_view_priv *p = v->priv;

	return did < p->n_ukey && p->canon ? p->canon[did] : did;
}

size_t colstore_cluster(const struct cs_view *v, uint32_t canon, uint32_t *out, size_t max)
{
	const struct cs_view_priv *p = v->priv;
	size_t n = 0;
	uint32_t i;

	if (max)
		out[n] = canon;
	n++;
	if (!p->canon)
		return n;
	for (i = 1; i < p->n_ukey; i++)
		if (p->canon[i] == canon && i != canon) {
			if (n < max)
				out[n] = i;
			n++;
		}
	return n;
}

size_t colstore_links(const struct cs_view *v, const struct id_link **out)
{
	*out = v->priv->links;
	return v->priv->n_links;
}

struct cs_sort_ctx {
	const int64_t *t;
	const uint32_t *tie;       /* NULL: the index itself breaks ties */
};

static int cs_sort_cmp(const void *a, const void *b, void *arg)
{
	const struct cs_sort_ctx *c = arg;
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	uint32_t tx = c->tie ? c->tie[x] : x, ty = c->tie ? c->tie[y] : y;

	if (c->t[x] != c->t[y])
		return c->t[x] < c->t[y] ? -1 : 1;
	return tx < ty ? -1 : tx > ty;
}

static int cs_run_sorted(const int64_t *t, size_t a, size_t z)
{
	size_t i;

	for (i = a + 1; i < z; i++)
		if (t[i] < t[i - 1])
			return 0;
	return 1;
}

/* Overlapping shards (invariant 1): put every user run and every name group
 * back in time order (ties in scatter order, i.e. storage order). */
static enum mp_err cs_fix_order(struct cs_view_priv *p, size_t n, uint32_t nu, uint32_t nn)
{
	uint32_t *perm = NULL, *idx = NULL, r;
	int64_t *t2 = NULL;
	uint32_t *u2 = NULL;
	uint64_t *r2 = NULL;
	size_t i, k;

	if (!(perm = malloc((n ? n : 1) * sizeof *perm)) || !(idx = malloc((n ? n : 1) * sizeof *idx)) ||
	    !(t2 = malloc((n ? n : 1) * sizeof *t2)) || !(u2 = malloc((n ? n : 1) * sizeof *u2)) ||
	    !(r2 = malloc((n ? n : 1) * sizeof *r2)))
		goto nomem;
	for (i = 0; i < n; i++)
		perm[i] = (uint32_t)i;
	for (r = 0; r <= nu; r++) {
		size_t a = p->ustart[r], z = p->ustart[r + 1];
		struct cs_sort_ctx c = { p->t, NULL };

		if (cs_run_sorted(p->t, a, z))
			continue;
		for (k = a; k < z; k++)
			idx[k] = (uint32_t)k;
		qsort_r(idx + a, z - a, sizeof *idx, cs_sort_cmp, &c);
		for (k = a; k < z; k++) {
			t2[k] = p->t[idx[k]];
			u2[k] = p->ev[idx[k]];
			r2[k] = p->rec[idx[k]];
			perm[idx[k]] = (uint32_t)k;
		}
		memcpy(p->t + a, t2 + a, (z - a) * sizeof *t2);
		memcpy(p->ev + a, u2 + a, (z - a) * sizeof *u2);
		memcpy(p->rec + a, r2 + a, (z - a) * sizeof *r2);
		for (k = a; k < z; k++)
			u2[k] = p->did[idx[k]];
		memcpy(p->did + a, u2 + a, (z - a) * sizeof *u2);
	}
	for (i = 0; i < n; i++)
		p->npos[i] = perm[p->npos[i]];
	for (r = 0; r < nn; r++) {
		size_t a = p->nstart[r], z = p->nstart[r + 1];
		struct cs_sort_ctx c = { p->nt, p->npos };

		if (cs_run_sorted(p->nt, a, z))
			continue;
		for (k = a; k < z; k++)
			idx[k] = (uint32_t)k;
		qsort_r(idx + a, z - a, sizeof *idx, cs_sort_cmp, &c);
		for (k = a; k < z; k++) {
			t2[k] = p->nt[idx[k]];
			u2[k] = p->npos[idx[k]];
		}
		memcpy(p->nt + a, t2 + a, (z - a) * sizeof *t2);
		memcpy(p->npos + a, u2 + a, (z - a) * sizeof *u2);
	}
	free(perm);
	free(idx);
	free(t2);
	free(u2);
	free(r2);
	return MP_OK;
nomem:
	free(perm);
	free(idx);
	free(t2);
	free(u2);
	free(r2);
	return MP_E_NOMEM;
}

/* ---------- identity (identity.h) ---------- */

static const char *cs_id_text(void *ctx, uint32_t x, size_t *n)
{
	const struct cs_str *e = cs_str_at(ctx, x);

	*n = e->len;
	return e->s;
}

/* The string id of the id-like value at V (a string or a number), interned
 * if it was stored inline; 0 when it is none or empty. */
static uint32_t cs_id_value(struct colstore *cs, const unsigned char *v, const unsigned char *end)
{
	uint64_t x;
	const unsigned char *q;
	char tmp[40];
	int n;

	if (v >= end)
		return 0;
	switch (*v) {
	case PC_DICTSTR:
		if (!pc_varint(v + 1, end, &x) || x >= cs->strings->n || !cs_str_at(cs->strings, (uint32_t)x)->len)
			return 0;          /* "" names nobody */
		return (uint32_t)x;
	case PC_STR:
		if (!(q = pc_varint(v + 1, end, &x)) || x == 0 || x > (uint64_t)(end - q))
			return 0;
		return cs_strings_intern(cs->strings, (const char *)q, (size_t)x);
	case PC_INT:
		if (!pc_varint(v + 1, end, &x))
			return 0;
		n = snprintf(tmp, sizeof tmp, "%lld", (long long)((x >> 1) ^ -(x & 1)));
		return cs_strings_intern(cs->strings, tmp, (size_t)n);
	default:
		return 0;
	}
}

/* Property KEY (a string id, 0 = absent everywhere) of record P/N as an id. */
static uint32_t cs_id_prop(struct colstore *cs, const unsigned char *p, size_t n, uint32_t key)
{
	const unsigned char *v, *ve;

	return key && pc_find(p, n, key, &v, &ve) == 1 ? cs_id_value(cs, v, ve) : 0;
}

struct cs_links {
	struct id_link *a;
	size_t n, cap;
};

static enum mp_err cs_links_add(struct cs_links *l, int64_t t, uint32_t kind, uint32_t a, uint32_t b)
{
	if (!a || !b)
		return MP_OK;      /* an id is missing: nothing to link */
	if (l->n == l->cap) {
		struct id_link *na = realloc(l->a, (l->cap = l->cap ? l->cap * 2 : 256) * sizeof *na);

		if (!na)
			return MP_E_NOMEM;
		l->a = na;
	}
	l->a[l->n++] = (struct id_link){ t, kind, a, b, 0 };
	return MP_OK;
}

/* Original ID merge: the links of the $identify, $create_alias and $merge
 * events (spec §9.2/§9.3), read from their property records. */
static enum mp_err cs_identity_events(struct colstore *cs, struct cs_links *l)
{
	struct cs_strings *ss = cs->strings;
	uint32_t e_ident = cs_strings_find(ss, "$identify", 9), e_alias = cs_strings_find(ss, "$create_alias", 13);
	uint32_t e_merge = cs_strings_find(ss, "$merge", 6);
	uint32_t k_fail = cs_strings_find(ss, "$failure_reason", 15), k_ident = cs_strings_find(ss, "$identified_id", 14);
	uint32_t k_anon = cs_strings_find(ss, "$anon_id", 8), k_anon2 = cs_strings_find(ss, "$anon_distinct_id", 17);
	uint32_t k_alias = cs_strings_find(ss, "alias", 5), k_ids = cs_strings_find(ss, "$distinct_ids", 13);
	enum mp_err rc = MP_OK;
	size_t i;

	if (!e_ident && !e_alias && !e_merge)
		return MP_OK;
	for (i = 0; i < cs->n_segs && rc == MP_OK; i++) {
		struct cs_rowit it;

		cs_rowit_init(&it, cs->segs[i]);
		while (rc == MP_OK && cs_rowit_next(&it)) {
			const unsigned char *rec, *v, *ve;
			uint64_t len;
			uint32_t a, b;

			if ((it.ev != e_ident && it.ev != e_alias && it.ev != e_merge) ||
			    !(rec = pc_varint(it.rec, it.rend, &len)) || len > (uint64_t)(it.rend - rec))
				continue;
			if (k_fail && pc_find(rec, (size_t)len, k_fail, &v, &ve) == 1)
				continue;  /* refused when it arrived ($merge through /track) */
			if (it.ev == e_ident) {
				b = cs_id_prop(cs, rec, (size_t)len, k_ident);
				a = cs_id_prop(cs, rec, (size_t)len, k_anon);
				if (!a)
					a = cs_id_prop(cs, rec, (size_t)len, k_anon2);
				rc = cs_links_add(l, it.t, ID_LINK_IDENTIFY, a, b ? b : it.did);
			} else if (it.ev == e_alias) {
				rc = cs_links_add(l, it.t, ID_LINK_ALIAS, cs_id_prop(cs, rec, (size_t)len, k_alias), it.did);
			} else if (k_ids && pc_find(rec, (size_t)len, k_ids, &v, &ve) == 1 && *v == PC_ARRAY) {
				const unsigned char *q = pc_varint(v + 1, ve, &len), *q2;
				uint32_t x = 0, y = 0;

				if (!q || len != 2 || !(q2 = pc_skip_value(q, ve, 0)))
					continue;
				x = cs_id_value(cs, q, q2);
				y = cs_id_value(cs, q2, ve);
				if (!x || !y)
					continue;
				rc = cs_links_add(l, it.t, ID_LINK_MERGE, x, y);
			}
		}
	}
	return rc;
}

/* Resolve the identity of the segments' data into P (canon, links). */
static enum mp_err cs_identity_build(struct colstore *cs, struct cs_view_priv *p)
{
	struct cs_links l = { NULL, 0, 0 };
	enum mp_err rc = MP_OK;
	size_t i;

	if (cs->original) {
		rc = cs_identity_events(cs, &l);
	} else {
		for (i = 0; i < cs->n_segs && rc == MP_OK; i++) {
			const struct cs_seg *g = cs->segs[i];
			size_t k;

			for (k = 0; k < g->n_links && rc == MP_OK; k++)
				rc = cs_links_add(&l, g->links[k].t, ID_LINK_DEVICE, g->links[k].a, g->links[k].b);
		}
	}
	if (rc == MP_OK && l.n) {
		if (!(p->canon = malloc(cs->strings->n * sizeof *p->canon)))
			rc = MP_E_NOMEM;
		else
			rc = identity_resolve(cs->original, l.a, &l.n, cs->strings->n, cs_id_text, cs->strings,
					      p->canon);
	}
	if (rc != MP_OK) {
		free(l.a);
		return rc;
	}
	p->links = l.a;
	p->n_links = l.n;
	return MP_OK;
}

static enum mp_err cs_view_build(struct colstore *cs, struct cs_view **out)
{
	struct cs_view *v = calloc(1, sizeof *v);
	struct cs_view_priv *p = calloc(1, sizeof *p);
	size_t n = 0, i, pos;
	uint32_t nu = 0, empty_id, nn = 0;
	uint32_t *cnt = NULL, *ncnt = NULL;

	if (!v || !p) {
		free(v);
		free(p);
		return MP_E_NOMEM;
	}
	v->priv = p;
	p->cs = cs;
	p->refs = 1;
	pthread_mutex_init(&p->colmu, NULL);
	for (i = 0; i < cs->n_segs; i++)
		n += cs->segs[i]->n;
	if (cs_identity_build(cs, p) != MP_OK)
		goto nomem;  /* (p->segs is still empty: freeing the view is safe) */
	p->n_ukey = cs->strings->n ? cs->strings->n : 1;
	if (!(p->segs = calloc(cs->n_segs ? cs->n_segs : 1, sizeof *p->segs)) ||
	    !(p->t = malloc((n ? n : 1) * sizeof *p->t)) ||
	    !(p->ev = malloc((n ? n : 1) * sizeof *p->ev)) ||
	    !(p->did = malloc((n ? n : 1) * sizeof *p->did)) ||
	    !(p->user = malloc((n ? n : 1) * sizeof *p->user)) ||
	    !(p->rec = malloc((n ? n : 1) * sizeof *p->rec)) ||
	    !(p->ukey = malloc(p->n_ukey * sizeof *p->ukey)) ||
	    !(p->name_of = malloc(p->n_ukey * sizeof *p->name_of)) ||
	    !(p->nt = malloc((n ? n : 1) * sizeof *p->nt)) ||
	    !(p->npos = malloc((n ? n : 1) * sizeof *p->npos)))
		goto nomem;
	for (i = 0; i < cs->n_segs; i++) {
		p->segs[i] = cs->segs[i];
		cs->segs[i]->refs++;
		p->n_segs++;
	}
	/* user keys in order of first appearance */
	for (i = 0; i < p->n_ukey; i++)
		p->ukey[i] = p->name_of[i] = CS_NO_USER;
	empty_id = cs_strings_find(cs->strings, "", 0);
	for (i = 0; i < p->n_segs; i++) {
		struct cs_rowit it;

		cs_rowit_init(&it, p->segs[i]);
		while (cs_rowit_next(&it)) {
			uint32_t c = p->canon ? p->canon[it.did] : it.did;

			if (it.did != empty_id && p->ukey[c] == CS_NO_USER)
				p->ukey[c] = nu++;
			if (p->name_of[it.ev] == CS_NO_USER)
				p->name_of[it.ev] = nn++;
		}
	}
	/* every id of a cluster takes its canonical id's key */
	if (p->canon)
		for (i = 1; i < p->n_ukey; i++)
			if (p->canon[i] != i)
				p->ukey[i] = p->ukey[p->canon[i]];
	if (!(p->name_sid = malloc((nn ? nn : 1) * sizeof *p->name_sid)) ||
	    !(p->nstart = calloc((size_t)nn + 1, sizeof *p->nstart)) ||
	    !(ncnt = calloc((size_t)nn + 1, sizeof *ncnt)) ||
	    !(p->ustart = calloc((size_t)nu + 2, sizeof *p->ustart)) ||
	    !(cnt = calloc((size_t)nu + 1, sizeof *cnt)))
		goto nomem;
	for (i = 0; i < p->n_segs; i++) {
		struct cs_rowit it;

		cs_rowit_init(&it, p->segs[i]);
		while (cs_rowit_next(&it)) {
			uint32_t x = p->name_of[it.ev], u = p->ukey[it.did];

			p->name_sid[x] = it.ev;
			ncnt[x]++;
			cnt[u == CS_NO_USER ? nu : u]++;
		}
	}
	for (pos = 0, i = 0; i < nn; i++) {
		p->nstart[i] = (uint32_t)pos;
		pos += ncnt[i];
		ncnt[i] = p->nstart[i];
	}
	p->nstart[nn] = (uint32_t)pos;
	for (pos = 0, i = 0; i <= nu; i++) {
		p->ustart[i] = (uint32_t)pos;
		pos += cnt[i];
		cnt[i] = p->ustart[i];
	}
	p->ustart[nu + 1] = (uint32_t)pos;
	/* stable scatter: segments in time order, rows in id order (invariant 1) */
	for (i = 0; i < p->n_segs; i++) {
		struct cs_rowit it;

		cs_rowit_init(&it, p->segs[i]);
		while (cs_rowit_next(&it)) {
			uint32_t u = p->ukey[it.did];
			size_t at = cnt[u == CS_NO_USER ? nu : u]++, x = ncnt[p->name_of[it.ev]]++;

			p->t[at] = it.t;
			p->ev[at] = it.ev;
			p->did[at] = it.did;
			p->user[at] = u;
			p->rec[at] = (uint64_t)(uintptr_t)it.rec;
			p->nt[x] = it.t;
			p->npos[x] = (uint32_t)at;
		}
	}
	free(cnt);
	free(ncnt);
	cnt = ncnt = NULL;
	for (i = 1; i < p->n_segs; i++)
		if (p->segs[i]->from_ms < p->segs[i - 1]->to_ms)
			break;
	if (i < p->n_segs && cs_fix_order(p, n, nu, nn) != MP_OK)
		goto nomem;
	v->n_names = nn;
	v->name_sid = p->name_sid;
	v->nstart = p->nstart;
	v->nt = p->nt;
	v->npos = p->npos;
	v->n = n;
	v->t = p->t;
	v->ev = p->ev;
	v->did = p->did;
	v->user = p->user;
	v->rec_base = 0;
	v->rec_off = p->rec;
	v->rec_limit = UINT64_MAX;     /* absolute addresses of the segments' records */
	v->n_users = nu;
	v->ustart = p->ustart;
	v->n_strings = cs->strings->n ? cs->strings->n : 1;
	v->strings = cs->strings;
	*out = v;
	return MP_OK;
nomem:
	free(cnt);
	free(ncnt);
	cs_view_free(v);
	return MP_E_NOMEM;
}

static int64_t cs_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------- the projection file ----------
 *
 * data_dir/<project>/projection.bin holds one view, so a restart need not
 * re-read every shard: a header, the shards it reflects (key and the
 * shard's persistent change counter, stats 'gen'), then the view's arrays,
 * its property records in view order, and the strings.  It is only a
 * cache: it is used when every shard file is listed with its current
 * counter, and any mismatch or malformation means "rebuild from the shards".
 */

#define CS_FILE_NAME "projection.bin"
#define CS_FILE_VERSION 4

enum { CS_F_MANIFEST, CS_F_T, CS_F_EV, CS_F_DID, CS_F_USER, CS_F_USTART, CS_F_NAME_SID, CS_F_NSTART,
       CS_F_NT, CS_F_NPOS, CS_F_UKEY, CS_F_NAME_OF, CS_F_ROFF, CS_F_ARENA, CS_F_STROFF, CS_F_STR, CS_F_IDX,
       CS_F_CANON, CS_F_LINKS, CS_F_NSEC };

struct cs_fhdr {
	char magic[8];
	uint64_t version;
	uint64_t n, n_users, n_names, n_strings, n_ukey, n_shards, arena_len, str_len, idx_cap;
	uint64_t has_canon, n_links;
	uint64_t identity_original;    /* the identity rules the view was resolved with */
	uint64_t off[CS_F_NSEC];
	uint64_t total;
};

struct cs_fw {
	FILE *f;
	uint64_t pos;
	int err;
};

static void cs_fw_put(struct cs_fw *w, const void *p, size_t n)
{
	static const char zero[8];

	if (!w->err && n && fwrite(p, 1, n, w->f) != n)
		w->err = 1;
	w->pos += n;
	if (w->pos % 8) {
		size_t pad = 8 - w->pos % 8;

		if (!w->err && fwrite(zero, 1, pad, w->f) != pad)
			w->err = 1;
		w->pos += pad;
	}
}

static void cs_fw_section(struct cs_fw *w, struct cs_fhdr *h, int sec, const void *p, size_t n)
{
	h->off[sec] = w->pos;
	cs_fw_put(w, p, n);
}

/* Write view V (built from segments) to the projection file. */
static enum mp_err cs_persist_view(struct colstore *cs, struct cs_view *v)
{
	struct cs_view_priv *p = v->priv;
	struct cs_fhdr h;
	struct cs_fw w = { NULL, 0, 0 };
	struct cs_file_shard *man = NULL;
	char path[4096], tmp[4200];
	uint64_t *roff = NULL, *stroff = NULL, x;
	size_t i, len;
	int fd;

	if (p->map || !p->n_segs)
		return MP_OK;
	for (i = 0; i < p->n_segs; i++)
		if (p->segs[i]->gen < 0)
			return MP_OK; /* a shard without a counter cannot be checked later */
	snprintf(path, sizeof path, "%s/" CS_FILE_NAME, store_project_dir(cs->sp));
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	if (!(man = calloc(p->n_segs, sizeof *man)) || !(roff = malloc((v->n + 1) * sizeof *roff)) ||
	    !(stroff = malloc(((size_t)v->n_strings + 1) * sizeof *stroff))) {
		free(man);
		free(roff);
		return MP_E_NOMEM;
	}
	for (i = 0; i < p->n_segs; i++) {
		snprintf(man[i].key, sizeof man[i].key, "%s", p->segs[i]->key);
		man[i].gen = p->segs[i]->gen;
	}
	for (x = 0, i = 0; i < v->n; i++) {
		size_t rl;
		const unsigned char *body = cs_props(v, i, &rl);

		roff[i] = x;
		x += (uint64_t)(body - cs_rec(v, i)) + rl;  /* length prefix + record */
	}
	roff[v->n] = x;
	for (stroff[0] = stroff[1] = 0, i = 1; i < v->n_strings; i++) {
		cs_string(v, (uint32_t)i, &len);
		stroff[i + 1] = stroff[i] + len + 1;
	}
	memset(&h, 0, sizeof h);
	memcpy(h.magic, "MPXPROJ1", 8);
	h.version = CS_FILE_VERSION;
	h.n = v->n;
	h.n_users = v->n_users;
	h.n_names = v->n_names;
	h.n_strings = v->n_strings;
	h.n_ukey = p->n_ukey;
	h.n_shards = p->n_segs;
	h.arena_len = x;
	h.str_len = stroff[v->n_strings];
	h.has_canon = p->canon != NULL;
	h.identity_original = (uint64_t)cs->original;
	h.n_links = p->n_links;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0 || !(w.f = fdopen(fd, "wb"))) {
		if (fd >= 0)
			close(fd);
		free(man);
		free(roff);
		free(stroff);
		return MP_E_IO;
	}
	cs_fw_put(&w, &h, sizeof h);
	cs_fw_section(&w, &h, CS_F_MANIFEST, man, p->n_segs * sizeof *man);
	cs_fw_section(&w, &h, CS_F_T, v->t, v->n * sizeof *v->t);
	cs_fw_section(&w, &h, CS_F_EV, v->ev, v->n * sizeof *v->ev);
	cs_fw_section(&w, &h, CS_F_DID, v->did, v->n * sizeof *v->did);
	cs_fw_section(&w, &h, CS_F_USER, v->user, v->n * sizeof *v->user);
	cs_fw_section(&w, &h, CS_F_USTART, v->ustart, ((size_t)v->n_users + 2) * sizeof *v->ustart);
	cs_fw_section(&w, &h, CS_F_NAME_SID, v->name_sid, (size_t)v->n_names * sizeof *v->name_sid);
	cs_fw_section(&w, &h, CS_F_NSTART, v->nstart, ((size_t)v->n_names + 1) * sizeof *v->nstart);
	cs_fw_section(&w, &h, CS_F_NT, v->nt, v->n * sizeof *v->nt);
	cs_fw_section(&w, &h, CS_F_NPOS, v->npos, v->n * sizeof *v->npos);
	cs_fw_section(&w, &h, CS_F_UKEY, p->ukey, (size_t)p->n_ukey * sizeof *p->ukey);
	cs_fw_section(&w, &h, CS_F_NAME_OF, p->name_of, (size_t)p->n_ukey * sizeof *p->name_of);
	cs_fw_section(&w, &h, CS_F_CANON, p->canon, p->canon ? (size_t)p->n_ukey * sizeof *p->canon : 0);
	cs_fw_section(&w, &h, CS_F_LINKS, p->links, p->n_links * sizeof *p->links);
	cs_fw_section(&w, &h, CS_F_ROFF, roff, (v->n + 1) * sizeof *roff);
	h.off[CS_F_ARENA] = w.pos;
	for (i = 0; i < v->n && !w.err; i++)
		if (fwrite(cs_rec(v, i), 1, (size_t)(roff[i + 1] - roff[i]), w.f) != (size_t)(roff[i + 1] - roff[i]))
			w.err = 1;
	w.pos += x;
	cs_fw_put(&w, NULL, 0);
	cs_fw_section(&w, &h, CS_F_STROFF, stroff, ((size_t)v->n_strings + 1) * sizeof *stroff);
	h.off[CS_F_STR] = w.pos;
	for (i = 1; i < v->n_strings && !w.err; i++) {
		const char *str = cs_string(v, (uint32_t)i, &len);

		if (fwrite(str, 1, len + 1, w.f) != len + 1)
			w.err = 1;
	}
	w.pos += h.str_len;
	cs_fw_put(&w, NULL, 0);
	/* the strings' hash index (positions depend only on the strings), so a
	 * restart need not hash every string again */
	for (h.idx_cap = 1 << 16; h.idx_cap < 2 * (uint64_t)v->n_strings; h.idx_cap *= 2)
		;
	if (!w.err) {
		uint64_t *idx = calloc((size_t)h.idx_cap, sizeof *idx);

		if (!idx) {
			w.err = 1;
		} else {
			for (i = 1; i < v->n_strings; i++) {
				const char *str = cs_string(v, (uint32_t)i, &len);

				cs_strings_slot(idx, (size_t)h.idx_cap, cs_hash(str, len), (uint32_t)i);
			}
			cs_fw_section(&w, &h, CS_F_IDX, idx, (size_t)h.idx_cap * sizeof *idx);
			free(idx);
		}
	}
	h.total = w.pos;
	if (!w.err && (fseek(w.f, 0, SEEK_SET) != 0 || fwrite(&h, 1, sizeof h, w.f) != sizeof h))
		w.err = 1;
	if (fflush(w.f) != 0)
		w.err = 1;
	fd = fileno(w.f);
	if (!w.err && fsync(fd) != 0)
		w.err = 1;
	if (fclose(w.f) != 0)
		w.err = 1;
	free(man);
	free(roff);
	free(stroff);
	if (w.err || rename(tmp, path) != 0) {
		log_error("colstore: cannot write %s: %s", path, strerror(errno));
		unlink(tmp);
		return MP_E_IO;
	}
	return MP_OK;
}

static void cs_fsh_close(struct colstore *cs)
{
	size_t i;

	for (i = 0; i < cs->n_fsh; i++)
		if (cs->fsh[i].db)
			sqlite3_close(cs->fsh[i].db);
	free(cs->fsh);
	cs->fsh = NULL;
	cs->n_fsh = 0;
}

/* Is the set of shard files exactly the N keys of MAN?  With CONNS (one per
 * entry of MAN), also: has none of them changed since its connection
 * recorded PRAGMA data_version? */
static int cs_shards_match(struct colstore *cs, const struct cs_file_shard *man, size_t n_man,
			   const struct cs_fshard *conns)
{
	DIR *d = opendir(store_project_dir(cs->sp));
	struct dirent *de;
	size_t seen = 0, i;
	int ok = 1;

	if (!d)
		return 0;
	while (ok && (de = readdir(d))) {
		char key[32];
		int64_t a, z;

		if (!store_shard_file(de->d_name, key, &a, &z))
			continue;
		for (i = 0; i < n_man && strcmp(man[i].key, key) != 0; i++)
			;
		if (i == n_man || (conns && cs_data_version(conns[i].db) != conns[i].dv))
			ok = 0;
		seen++;
	}
	closedir(d);
	return ok && seen == n_man;
}

/* Is every shard file listed in MAN with its current change counter?  Then
 * keep a read connection to each (cs->fsh), so later checks need only
 * PRAGMA data_version (cs_shards_match). */
static int cs_manifest_current(struct colstore *cs, const struct cs_file_shard *man, size_t n_man)
{
	size_t i;

	cs_fsh_close(cs);
	if (!(cs->fsh = calloc(n_man ? n_man : 1, sizeof *cs->fsh)))
		return 0;
	cs->n_fsh = n_man;
	for (i = 0; i < n_man; i++) {
		/* data_version first: a commit after it is seen by the next check */
		if (store_shard_open_ro(cs->sp, man[i].key, &cs->fsh[i].db) != MP_OK ||
		    (cs->fsh[i].dv = cs_data_version(cs->fsh[i].db)) < 0 ||
		    store_shard_gen(cs->fsh[i].db) != man[i].gen)
			goto no;
	}
	if (cs_shards_match(cs, man, n_man, NULL))
		return 1;
no:
	cs_fsh_close(cs);
	return 0;
}

#define CS_SEC_OK(sec, bytes) (h->off[sec] % 8 == 0 && h->off[sec] <= h->total && (bytes) <= h->total - h->off[sec])

/* Map the projection file and make it the current view, if it is current
 * and well-formed.  Returns 1 when it was taken. */
static int cs_load_file(struct colstore *cs)
{
	char path[4096];
	struct stat st;
	const struct cs_fhdr *h;
	struct cs_view *v = NULL;
	struct cs_view_priv *p = NULL;
	const unsigned char *base;
	const uint64_t *roff, *stroff;
	const struct cs_file_shard *man;
	void *map;
	size_t i, len;
	int fd, strings_set = 0;

	snprintf(path, sizeof path, "%s/" CS_FILE_NAME, store_project_dir(cs->sp));
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 0;
	if (fstat(fd, &st) != 0 || (size_t)st.st_size < sizeof *h) {
		close(fd);
		return 0;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (map == MAP_FAILED)
		return 0;
	base = map;
	h = map;
	if (memcmp(h->magic, "MPXPROJ1", 8) != 0 || h->version != CS_FILE_VERSION || h->total != (uint64_t)st.st_size ||
	    h->n >= UINT32_MAX || h->n_users >= UINT32_MAX || h->n_names >= UINT32_MAX || h->n_strings >= UINT32_MAX ||
	    h->n_ukey != h->n_strings || h->n_strings < 1 ||
	    !CS_SEC_OK(CS_F_MANIFEST, h->n_shards * sizeof(struct cs_file_shard)) ||
	    !CS_SEC_OK(CS_F_T, h->n * 8) || !CS_SEC_OK(CS_F_EV, h->n * 4) || !CS_SEC_OK(CS_F_DID, h->n * 4) ||
	    !CS_SEC_OK(CS_F_USER, h->n * 4) || !CS_SEC_OK(CS_F_USTART, (h->n_users + 2) * 4) ||
	    !CS_SEC_OK(CS_F_NAME_SID, h->n_names * 4) || !CS_SEC_OK(CS_F_NSTART, (h->n_names + 1) * 4) ||
	    !CS_SEC_OK(CS_F_NT, h->n * 8) || !CS_SEC_OK(CS_F_NPOS, h->n * 4) ||
	    !CS_SEC_OK(CS_F_UKEY, h->n_ukey * 4) || !CS_SEC_OK(CS_F_NAME_OF, h->n_ukey * 4) ||
	    !CS_SEC_OK(CS_F_ROFF, (h->n + 1) * 8) || !CS_SEC_OK(CS_F_ARENA, h->arena_len) ||
	    !CS_SEC_OK(CS_F_STROFF, (h->n_strings + 1) * 8) || !CS_SEC_OK(CS_F_STR, h->str_len) ||
	    h->has_canon > 1 || !CS_SEC_OK(CS_F_CANON, h->has_canon * h->n_ukey * 4) ||
	    h->n_links >= UINT32_MAX || !CS_SEC_OK(CS_F_LINKS, h->n_links * sizeof(struct id_link)) ||
	    h->identity_original != (uint64_t)cs->original)   /* the project switched identity rules */
		goto bad;
	man = (const void *)(base + h->off[CS_F_MANIFEST]);
	if (!cs_manifest_current(cs, man, h->n_shards))
		goto bad;
	/* the strings, in id order, read in place from the mapping (which the
	 * colstore keeps for its lifetime), and their hash index */
	if (cs->strings->n != 1 || h->idx_cap < 2 * h->n_strings || (h->idx_cap & (h->idx_cap - 1)) ||
	    h->n_strings >= (uint64_t)CS_CHUNK * (CS_MAX_CHUNKS - 1) || !CS_SEC_OK(CS_F_IDX, h->idx_cap * 8))
		goto bad;
	stroff = (const void *)(base + h->off[CS_F_STROFF]);
	strings_set = 1;
	for (i = 1; i < h->n_strings; i++) {
		const char *str = (const char *)base + h->off[CS_F_STR] + stroff[i];
		struct cs_str *chunk = cs->strings->chunks[i >> CS_CHUNK_BITS];

		if (stroff[i + 1] <= stroff[i] || stroff[i + 1] > h->str_len ||
		    str[(len = (size_t)(stroff[i + 1] - stroff[i] - 1))] != '\0')
			goto bad;
		if (!chunk && !(chunk = cs->strings->chunks[i >> CS_CHUNK_BITS] = calloc(CS_CHUNK, sizeof *chunk)))
			goto bad;
		chunk[i & (CS_CHUNK - 1)].s = str;
		chunk[i & (CS_CHUNK - 1)].len = (uint32_t)len;
	}
	{
		const uint64_t *fidx = (const void *)(base + h->off[CS_F_IDX]);

		/* slots are checked when read (cs_strings_find) */
		if (!(cs->strings->idx = malloc((size_t)h->idx_cap * sizeof *cs->strings->idx)))
			goto bad;
		memcpy(cs->strings->idx, fidx, (size_t)h->idx_cap * sizeof *fidx);
		cs->strings->idx_cap = (size_t)h->idx_cap;
		cs->strings->n = (uint32_t)h->n_strings;
	}
	if (!(v = calloc(1, sizeof *v)) || !(p = calloc(1, sizeof *p)))
		goto bad;
	v->priv = p;
	p->cs = cs;
	p->refs = 1;
	p->map = map;
	p->map_len = (size_t)st.st_size;
	p->persisted = 1;
	pthread_mutex_init(&p->colmu, NULL);
	v->n = (size_t)h->n;
	v->n_users = (uint32_t)h->n_users;
	v->n_names = (uint32_t)h->n_names;
	v->n_strings = (uint32_t)h->n_strings;
	v->strings = cs->strings;
	p->n_ukey = (uint32_t)h->n_ukey;
	v->t = p->t = (void *)(base + h->off[CS_F_T]);
	v->ev = p->ev = (void *)(base + h->off[CS_F_EV]);
	v->did = p->did = (void *)(base + h->off[CS_F_DID]);
	v->user = p->user = (void *)(base + h->off[CS_F_USER]);
	v->ustart = p->ustart = (void *)(base + h->off[CS_F_USTART]);
	v->name_sid = p->name_sid = (void *)(base + h->off[CS_F_NAME_SID]);
	v->nstart = p->nstart = (void *)(base + h->off[CS_F_NSTART]);
	v->nt = p->nt = (void *)(base + h->off[CS_F_NT]);
	v->npos = p->npos = (void *)(base + h->off[CS_F_NPOS]);
	p->ukey = (void *)(base + h->off[CS_F_UKEY]);
	p->name_of = (void *)(base + h->off[CS_F_NAME_OF]);
	p->canon = h->has_canon ? (void *)(base + h->off[CS_F_CANON]) : NULL;
	p->links = (void *)(base + h->off[CS_F_LINKS]);
	p->n_links = (size_t)h->n_links;
	/* everything an array index comes from is checked: a damaged file is
	 * refused, never read out of bounds */
	for (i = 0; i < p->n_links; i++)
		if (p->links[i].a >= v->n_strings || p->links[i].b >= v->n_strings)
			goto bad;
	for (i = 0; i <= v->n_users; i++)
		if (v->ustart[i] > v->ustart[i + 1] || v->ustart[i + 1] > v->n)
			goto bad;
	for (i = 0; i < v->n_names; i++)
		if (v->nstart[i] > v->nstart[i + 1] || v->nstart[i + 1] > v->n || v->name_sid[i] >= v->n_strings)
			goto bad;
	if (v->n_names && v->nstart[v->n_names] != v->n)
		goto bad;
	/* ev and did are read through cs_string(), which checks ids; user
	 * values are only compared, never used as indexes */
	for (i = 0; i < p->n_ukey; i++)
		if ((p->ukey[i] != CS_NO_USER && p->ukey[i] >= v->n_users) ||
		    (p->name_of[i] != CS_NO_USER && p->name_of[i] >= v->n_names) ||
		    (p->canon && p->canon[i] >= p->n_ukey))
			goto bad;
	/* the records are not read here, so loading touches no page of the
	 * arena: cs_props bounds every record by the arena when it is read */
	roff = (const void *)(base + h->off[CS_F_ROFF]);
	/* npos (like rec_off) is not scanned here: its readers check each
	 * position against n (a damaged file gives wrong answers, never a
	 * read out of bounds), so loading reads nothing proportional to n */
	v->rec_base = (uintptr_t)(base + h->off[CS_F_ARENA]);
	v->rec_off = roff;
	v->rec_limit = h->arena_len;   /* cs_props keeps every record inside the arena */
	if (!(p->manifest = malloc((h->n_shards ? h->n_shards : 1) * sizeof *p->manifest)))
		goto bad;
	memcpy(p->manifest, man, h->n_shards * sizeof *man);
	p->n_manifest = h->n_shards;
	cs->cur = v;
	cs->file_mode = 1;
	cs->map = map;
	cs->map_len = (size_t)st.st_size;
	return 1;
bad:
	cs_fsh_close(cs);
	if (strings_set) {
		/* back to an empty string table: nothing may point into the mapping */
		free(cs->strings->idx);
		cs->strings->idx = NULL;
		cs->strings->idx_cap = 0;
		cs->strings->n = 1;
	}
	log_info("colstore: %s is out of date or unreadable: rebuilding from the shards", path);
	if (v && p)
		cs_view_free(v);
	else {
		free(v);
		free(p);
	}
	munmap(map, (size_t)st.st_size);
	return 0;
}

/* ---------- public ---------- */

enum mp_err colstore_open(struct store_project *sp, int identity_original, struct colstore **out)
{
	struct colstore *cs = calloc(1, sizeof *cs);

	if (!cs || !(cs->strings = calloc(1, sizeof *cs->strings))) {
		free(cs);
		return MP_E_NOMEM;
	}
	cs->strings->n = 1;
	cs->sp = sp;
	cs->original = identity_original;
	pthread_mutex_init(&cs->mu, NULL);
	*out = cs;
	return MP_OK;
}

void colstore_free(struct colstore *cs)
{
	size_t i;

	if (!cs)
		return;
	if (cs->cur)
		colstore_release(cs->cur);
	for (i = 0; i < cs->n_segs; i++)
		cs_seg_unref(cs->segs[i]);
	free(cs->segs);
	cs_fsh_close(cs);
	cs_strings_free(cs->strings);
	if (cs->map)
		munmap(cs->map, cs->map_len);
	pthread_mutex_destroy(&cs->mu);
	free(cs);
}

enum mp_err colstore_acquire(struct colstore *cs, struct cs_view **out)
{
	enum mp_err rc;
	int changed;

	pthread_mutex_lock(&cs->mu);
	if (!cs->tried_file) {
		cs->tried_file = 1;
		cs_load_file(cs);
	}
	if (cs->file_mode) {
		struct cs_view_priv *p = cs->cur->priv;

		if (cs_shards_match(cs, p->manifest, p->n_manifest, cs->fsh)) {
			p->refs++;
			*out = cs->cur;
			pthread_mutex_unlock(&cs->mu);
			return MP_OK;
		}
		/* a shard changed: from now on views come from the shards */
		cs->file_mode = 0;
		cs->stale = 1;
		cs_fsh_close(cs);
	}
	rc = cs_sync_segments(cs, &changed);
	if (rc == MP_OK && (changed || !cs->cur || cs->stale)) {
		struct cs_view *v;

		/* a failed build leaves the view stale: the next acquire retries */
		cs->stale = 1;
		if ((rc = cs_view_build(cs, &v)) == MP_OK) {
			struct cs_view *old = cs->cur;

			cs->stale = 0;
			v->priv->built_ms = cs_now_ms();
			cs->cur = v;
			if (old && --old->priv->refs == 0)
				cs_view_free(old);
		}
	}
	if (rc == MP_OK) {
		cs->cur->priv->refs++;
		*out = cs->cur;
	}
	pthread_mutex_unlock(&cs->mu);
	return rc;
}

void colstore_drop_file(struct colstore *cs)
{
	char path[4096];

	snprintf(path, sizeof path, "%s/" CS_FILE_NAME, store_project_dir(cs->sp));
	pthread_mutex_lock(&cs->mu);
	if (unlink(path) != 0 && errno != ENOENT)
		log_error("colstore: cannot remove %s: %s", path, strerror(errno));
	if (cs->cur)
		cs->cur->priv->persisted = 0;
	pthread_mutex_unlock(&cs->mu);
}

void colstore_stop(struct colstore *cs)
{
	if (cs)
		atomic_store(&cs->stopping, 1);
}

enum mp_err colstore_persist(struct colstore *cs, int64_t quiet_ms)
{
	struct cs_view *v = NULL;
	enum mp_err rc;

	pthread_mutex_lock(&cs->mu);
	if (cs->cur && !cs->file_mode && !cs->stale && !cs->cur->priv->persisted &&
	    cs_now_ms() - cs->cur->priv->built_ms >= quiet_ms) {
		v = cs->cur;
		v->priv->refs++;
	}
	pthread_mutex_unlock(&cs->mu);
	if (!v)
		return MP_OK;
	/* the view is immutable: written without holding the lock */
	rc = cs_persist_view(cs, v);
	if (rc == MP_OK) {
		pthread_mutex_lock(&cs->mu);
		v->priv->persisted = 1;
		pthread_mutex_unlock(&cs->mu);
	}
	colstore_release(v);
	return rc;
}

void colstore_release(struct cs_view *v)
{
	struct colstore *cs;
	int last;

	if (!v)
		return;
	cs = v->priv->cs;
	pthread_mutex_lock(&cs->mu);
	last = --v->priv->refs == 0;
	if (last)
		cs_view_free(v);
	pthread_mutex_unlock(&cs->mu);
}

const char *cs_string(const struct cs_view *v, uint32_t id, size_t *len)
{
	const struct cs_str *e;

	if (id < 1 || id >= v->n_strings) {
		*len = 0;
		return "";
	}
	e = cs_str_at(v->strings, id);
	*len = e->len;
	return e->s;
}

uint32_t cs_string_id(const struct cs_view *v, const char *s, size_t n)
{
	struct colstore *cs = v->priv->cs;
	uint32_t id;

	pthread_mutex_lock(&cs->mu);
	id = cs_strings_find(cs->strings, s, n);
	pthread_mutex_unlock(&cs->mu);
	return id < v->n_strings ? id : 0;
}

const unsigned char *cs_props(const struct cs_view *v, size_t i, size_t *len)
{
	uint64_t off = v->rec_off[i], room, n = 0;
	const unsigned char *p, *q;

	if (off >= v->rec_limit) {     /* only a damaged projection file */
		*len = 0;
		return (const unsigned char *)"";
	}
	p = (const unsigned char *)(v->rec_base + (uintptr_t)off);
	room = v->rec_limit - off;
	q = pc_varint(p, p + (room < 10 ? room : 10), &n);
	if (!q || n > room - (uint64_t)(q - p)) {
		*len = 0;
		return p;
	}
	*len = (size_t)n;
	return q;
}

uint32_t cs_name_index(const struct cs_view *v, uint32_t sid)
{
	const struct cs_view_priv *p = v->priv;

	return sid < p->n_ukey ? p->name_of[sid] : CS_NO_USER;
}

size_t cs_lower_bound(const int64_t *t, size_t a, size_t b, int64_t x)
{
	while (a < b) {
		size_t mid = a + (b - a) / 2;

		if (t[mid] < x)
			a = mid + 1;
		else
			b = mid;
	}
	return a;
}

static struct cs_column *cs_column_build(const struct cs_view *v, uint32_t key, unsigned orders)
{
	struct cs_column *c = calloc(1, sizeof *c);
	uint32_t *code = malloc((v->n ? v->n : 1) * sizeof *code);
	double *num = NULL;
	size_t i;

	if (!c || !code)
		goto nomem;
	c->key = key;
	for (i = 0; i < v->n; i++) {
		size_t pn;
		const unsigned char *p = cs_props(v, i, &pn), *val, *end;
		uint64_t x;

		code[i] = CS_V_UNDEF;
		if (pc_find(p, pn, key, &val, &end) != 1)
			continue;
		switch (*val) {
		case PC_NULL: code[i] = CS_V_NULL; break;
		case PC_FALSE: code[i] = CS_V_FALSE; break;
		case PC_TRUE: code[i] = CS_V_TRUE; break;
		case PC_DICTSTR:
			code[i] = pc_varint(val + 1, end, &x) && x < v->n_strings ? CS_V_STR + (uint32_t)x : CS_V_OTHER;
			break;
		case PC_INT: case PC_DOUBLE: {
			struct expr_value ev;

			if (!num && !(num = calloc(v->n ? v->n : 1, sizeof *num)))
				goto nomem;
			if (pc_expr_value(val, end, NULL, NULL, &ev, NULL, 0) == 0 && ev.type == EXPR_NUMBER) {
				code[i] = CS_V_NUMBER;
				num[i] = ev.u.n;
			} else {
				code[i] = CS_V_OTHER;
			}
			break;
		}
		default:
			code[i] = CS_V_OTHER;
		}
	}
	c->code = code;
	c->num = num;
	if (orders & CS_COL_BYNAME) {
		uint32_t *ncode = malloc((v->n ? v->n : 1) * sizeof *ncode);
		double *nnum = num ? malloc((v->n ? v->n : 1) * sizeof *nnum) : NULL;

		if (!ncode || (num && !nnum)) {
			free(ncode);
			free(nnum);
			goto nomem;
		}
		for (i = 0; i < v->n; i++) {
			uint32_t k = v->npos[i];

			ncode[i] = k < v->n ? code[k] : CS_V_UNDEF;
			if (nnum)
				nnum[i] = k < v->n ? num[k] : 0;
		}
		c->ncode = ncode;
		c->nnum = nnum;
	}
	c->orders = orders;
	if (!(orders & CS_COL_MAIN)) {
		free(code);
		free(num);
		c->code = NULL;
		c->num = NULL;
	}
	if (!(orders & CS_COL_BYNAME)) {
		free((void *)c->ncode);
		free((void *)c->nnum);
		c->ncode = NULL;
		c->nnum = NULL;
	}
	return c;
nomem:
	free(c);
	free(code);
	free(num);
	return NULL;
}

const struct cs_column *cs_column(const struct cs_view *v, uint32_t key, unsigned orders)
{
	struct cs_view_priv *p = v->priv;
	struct cs_column *c = NULL;
	size_t i;

	/* built under the view's lock: concurrent queries on one column wait
	 * for one build instead of each building it */
	pthread_mutex_lock(&p->colmu);
	for (i = 0; i < p->n_cols; i++)
		if (p->cols[i]->key == key && (p->cols[i]->orders & orders) == orders) {
			c = p->cols[i];
			break;
		}
	if (!c && (c = cs_column_build(v, key, orders))) {
		if (p->n_cols < CS_MAX_COLUMNS) {
			p->cols[p->n_cols++] = c;
		} else {
			/* no eviction while views are shared: a query may hold the old one */
			free((void *)c->code);
			free((void *)c->num);
			free((void *)c->ncode);
			free((void *)c->nnum);
			free(c);
			c = NULL;
		}
	}
	pthread_mutex_unlock(&p->colmu);
	return c;
}

/* ---------- group views ---------- */

struct cs_gmap {                   /* group id text -> group number */
	uint32_t *slot;            /* group + 1, 0 empty */
	size_t cap;
	uint32_t n;
	struct buf *names;
	uint64_t *off;             /* group -> offset of its name in names */
	size_t off_cap;
};

static uint32_t cs_gmap_get(struct cs_gmap *m, const char *s, size_t n)
{
	uint64_t h = cs_hash(s, n);
	size_t i;

	if ((size_t)(m->n + 1) * 2 > m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 1024, k;
		uint32_t *ns = calloc(cap, sizeof *ns);

		if (!ns)
			return CS_NO_USER;
		for (k = 0; k < m->cap; k++)
			if (m->slot[k]) {
				const char *g = m->names->data + m->off[m->slot[k] - 1];
				size_t j = (size_t)cs_hash(g, strlen(g)) & (cap - 1);

				while (ns[j])
					j = (j + 1) & (cap - 1);
				ns[j] = m->slot[k];
			}
		free(m->slot);
		m->slot = ns;
		m->cap = cap;
	}
	for (i = (size_t)h & (m->cap - 1); m->slot[i]; i = (i + 1) & (m->cap - 1)) {
		const char *g = m->names->data + m->off[m->slot[i] - 1];

		if (strlen(g) == n && !memcmp(g, s, n))
			return m->slot[i] - 1;
	}
	if (m->n == m->off_cap) {
		uint64_t *no = realloc(m->off, (m->off_cap = m->off_cap ? m->off_cap * 2 : 1024) * sizeof *no);

		if (!no)
			return CS_NO_USER;
		m->off = no;
	}
	m->off[m->n] = m->names->len;
	if (buf_append(m->names, s, n) != MP_OK || buf_putc(m->names, '\0') != MP_OK)
		return CS_NO_USER;
	m->slot[i] = m->n + 1;
	return m->n++;
}

/* pc_lookup_fn over a view: string id -> string. */
static const char *cs_view_str(void *ctx, int64_t id, size_t *len)
{
	const struct cs_view *v = ctx;

	if (id < 1 || (uint64_t)id >= v->n_strings)
		return NULL;
	return cs_string(v, (uint32_t)id, len);
}

/* The group of a scalar value at V (a string or a number), CS_NO_USER
 * when it names none (or out of memory: *OOM set). */
static uint32_t cs_group_of_value(const struct cs_view *v, struct cs_gmap *m, const unsigned char *val,
				  const unsigned char *end, int *oom)
{
	struct expr_value x;
	char tmp[40];
	const char *s;
	size_t n;
	uint32_t g;

	if (pc_expr_value(val, end, cs_view_str, (void *)v, &x, NULL, 0) != 0)
		return CS_NO_USER;
	if (x.type == EXPR_STRING) {
		s = x.u.str.s;
		n = x.u.str.len;
	} else if (x.type == EXPR_NUMBER) {
		n = expr_value_key(&x, tmp, sizeof tmp);
		s = tmp;
		if (n >= sizeof tmp)
			return CS_NO_USER;
	} else {
		return CS_NO_USER;
	}
	if (!n || memchr(s, '\0', n))
		return CS_NO_USER;
	if ((g = cs_gmap_get(m, s, n)) == CS_NO_USER)
		*oom = 1;
	return g;
}

/* Pairs (group, event) of view V for the group key KEY: an event whose
 * property is a list belongs to each group it names (once). */
struct cs_gpair {
	uint32_t g;
	uint32_t i;
};

static enum mp_err cs_group_pairs(const struct cs_view *v, uint32_t key, const struct cs_column *col,
				  struct cs_gmap *m, struct cs_gpair **out, size_t *n_out)
{
	struct cs_gpair *pr = NULL;
	size_t n = 0, cap = 0, i;
	uint32_t *memo = NULL;         /* string id -> group + 1 */
	int oom = 0;

	if (!(memo = calloc(v->n_strings ? v->n_strings : 1, sizeof *memo)))
		return MP_E_NOMEM;
	for (i = 0; i < v->n && !oom; i++) {
		uint32_t code = col ? col->code[i] : CS_V_OTHER, gs[300];
		size_t ng = 0, k, len;
		const unsigned char *p, *val, *end, *q;
		uint64_t cnt;

		if (code == CS_V_UNDEF || code == CS_V_NULL || code == CS_V_FALSE || code == CS_V_TRUE)
			continue;
		if (code >= CS_V_STR && memo[code - CS_V_STR]) {
			gs[ng++] = memo[code - CS_V_STR] - 1;
		} else {
			p = cs_props(v, i, &len);
			if (pc_find(p, len, key, &val, &end) != 1)
				continue;
			if (*val == PC_ARRAY) {
				if (!(q = pc_varint(val + 1, end, &cnt)))
					continue;
				for (; cnt-- && q < end && ng < 300; ) {
					const unsigned char *e = pc_skip_value(q, end, 1);
					uint32_t g;

					if (!e)
						break;
					if ((g = cs_group_of_value(v, m, q, e, &oom)) != CS_NO_USER) {
						for (k = 0; k < ng && gs[k] != g; k++)
							;
						if (k == ng)
							gs[ng++] = g;
					}
					q = e;
				}
			} else {
				uint32_t g = cs_group_of_value(v, m, val, end, &oom);

				if (g != CS_NO_USER) {
					gs[ng++] = g;
					if (code >= CS_V_STR)
						memo[code - CS_V_STR] = g + 1;
				}
			}
		}
		for (k = 0; k < ng; k++) {
			if (n == cap) {
				struct cs_gpair *np = realloc(pr, (cap = cap ? cap * 2 : 4096) * sizeof *np);

				if (!np) {
					oom = 1;
					break;
				}
				pr = np;
			}
			pr[n].g = gs[k];
			pr[n++].i = (uint32_t)i;
		}
	}
	free(memo);
	if (oom) {
		free(pr);
		return MP_E_NOMEM;
	}
	*out = pr;
	*n_out = n;
	return MP_OK;
}

static int cs_gpair_cmp(const void *a, const void *b, void *arg)
{
	const struct cs_gpair *x = a, *y = b;
	const int64_t *t = arg;

	if (x->g != y->g)
		return x->g < y->g ? -1 : 1;
	if (t[x->i] != t[y->i])
		return t[x->i] < t[y->i] ? -1 : 1;
	return (x->i > y->i) - (x->i < y->i);
}

/* A new, empty derived view of V (its parent: group and filtered views). */
static struct cs_view *cs_derived_new(const struct cs_view *v)
{
	struct cs_view *g = calloc(1, sizeof *g);
	struct cs_view_priv *p = calloc(1, sizeof *p);

	if (!g || !p) {
		free(g);
		free(p);
		return NULL;
	}
	g->priv = p;
	p->cs = v->priv->cs;
	p->refs = 1;
	p->parent = v;
	pthread_mutex_init(&p->colmu, NULL);
	buf_init(&p->gnames, 1);
	return g;
}

/* The arrays of derived view G for N events and N_USERS users of V
 * (ustart and nstart zeroed).  MP_OK or MP_E_NOMEM. */
static enum mp_err cs_derived_arrays(struct cs_view *g, const struct cs_view *v, size_t n, uint32_t n_users)
{
	struct cs_view_priv *p = g->priv;
	size_t m = n ? n : 1;

	if (!(p->t = malloc(m * sizeof *p->t)) || !(p->ev = malloc(m * sizeof *p->ev)) ||
	    !(p->did = malloc(m * sizeof *p->did)) || !(p->user = malloc(m * sizeof *p->user)) ||
	    !(p->rec = malloc(m * sizeof *p->rec)) || !(p->ustart = calloc((size_t)n_users + 2, sizeof *p->ustart)) ||
	    !(p->nt = malloc(m * sizeof *p->nt)) || !(p->npos = malloc(m * sizeof *p->npos)) ||
	    !(p->nstart = calloc((size_t)v->n_names + 1, sizeof *p->nstart)))
		return MP_E_NOMEM;
	return MP_OK;
}

/* A derived view G of V, its own arrays built (N events, N_USERS users):
 * share V's identity and name tables and publish the arrays. */
static void cs_derived_finish(struct cs_view *g, const struct cs_view *v, size_t n, uint32_t n_users)
{
	struct cs_view_priv *p = g->priv;
	const struct cs_view_priv *vp = v->priv;

	p->ukey = vp->ukey;
	p->n_ukey = vp->n_ukey;
	p->canon = vp->canon;
	p->links = vp->links;
	p->n_links = vp->n_links;
	p->name_sid = vp->name_sid;
	p->name_of = vp->name_of;
	g->n = n;
	g->t = p->t;
	g->ev = p->ev;
	g->did = p->did;
	g->user = p->user;
	g->rec_base = v->rec_base;
	g->rec_off = p->rec;
	g->rec_limit = v->rec_limit;
	g->n_users = n_users;
	g->ustart = p->ustart;
	g->n_names = v->n_names;
	g->name_sid = v->name_sid;
	g->nstart = p->nstart;
	g->nt = p->nt;
	g->npos = p->npos;
	g->n_strings = v->n_strings;
	g->strings = v->strings;
}

/* Build the group view of V for group key KEY (see colstore.h). */
static enum mp_err cs_group_build(const struct cs_view *v, uint32_t key, const struct cs_column *col,
				  struct cs_view **out)
{
	struct cs_view *g = cs_derived_new(v);
	struct cs_view_priv *p;
	struct cs_gmap m;
	struct cs_gpair *pr = NULL;
	size_t n = 0, i, j, k;
	uint32_t *first = NULL;
	enum mp_err rc = MP_E_NOMEM;

	memset(&m, 0, sizeof m);
	if (!g)
		return MP_E_NOMEM;
	p = g->priv;
	buf_init(&p->gnames, (size_t)1 << 36);
	m.names = &p->gnames;
	if ((rc = cs_group_pairs(v, key, col, &m, &pr, &n)) != MP_OK)
		goto fail;
	rc = MP_E_NOMEM;
	if (n >= UINT32_MAX)
		goto fail;
	if (n)
		qsort_r(pr, n, sizeof *pr, cs_gpair_cmp, (void *)v->t);
	if (cs_derived_arrays(g, v, n, m.n) != MP_OK || !(first = calloc(v->n + 1, sizeof *first)))
		goto fail;
	for (k = 0; k < n; k++) {
		size_t i0 = pr[k].i;

		p->t[k] = v->t[i0];
		p->ev[k] = v->ev[i0];
		p->did[k] = v->did[i0];
		p->user[k] = pr[k].g;
		p->rec[k] = v->rec_off[i0];
		p->ustart[pr[k].g + 1]++;
		first[i0 + 1]++;
	}
	for (k = 0; k < m.n; k++)
		p->ustart[k + 1] += p->ustart[k];
	p->ustart[m.n + 1] = (uint32_t)n;
	/* by event name, in time order: walk the parent's by-name order and
	 * emit each event's positions in this view */
	for (i = 0; i < v->n; i++)
		first[i + 1] += first[i];       /* first[i]: how many pairs come from events < i */
	{
		/* pos[first[i] ..]: the pairs of event i, in pair order */
		uint32_t *at = malloc((v->n ? v->n : 1) * sizeof *at), *pos = malloc((n ? n : 1) * sizeof *pos);

		if (!at || !pos) {
			free(at);
			free(pos);
			goto fail;
		}
		memcpy(at, first, v->n * sizeof *at);
		for (k = 0; k < n; k++)
			pos[at[pr[k].i]++] = (uint32_t)k;
		for (j = 0, k = 0; k < v->n_names; k++) {
			size_t x;

			p->nstart[k] = (uint32_t)j;
			for (x = v->nstart[k]; x < v->nstart[k + 1]; x++) {
				uint32_t i0 = v->npos[x], y;

				if (i0 >= v->n)
					continue;
				for (y = first[i0]; y < first[i0 + 1]; y++) {
					p->nt[j] = v->nt[x];
					p->npos[j++] = pos[y];
				}
			}
		}
		p->nstart[v->n_names] = (uint32_t)j;
		free(at);
		free(pos);
	}
	free(first);
	free(pr);
	p->gname_off = m.off;
	free(m.slot);
	cs_derived_finish(g, v, n, m.n);
	*out = g;
	return MP_OK;
fail:
	free(first);
	free(pr);
	free(m.slot);
	p->gname_off = m.off;
	cs_view_free(g);
	return rc;
}

enum mp_err colstore_group_view(const struct cs_view *v, uint32_t key, struct cs_view **out)
{
	struct cs_view_priv *p = v->priv;
	const struct cs_column *col = cs_column(v, key, CS_COL_MAIN);  /* NULL: read the records */
	struct cs_view *g = NULL;
	enum mp_err rc = MP_OK;
	size_t i;

	if (p->parent && p->gname_off)
		return MP_E_INVALID;   /* a group view of a group view */
	pthread_mutex_lock(&p->colmu);
	for (i = 0; i < p->n_derived; i++)
		if (p->derived_key[i] == ((uint64_t)1 << 32 | key))
			g = p->derived[i];
	if (!g && p->n_derived == CS_MAX_DERIVED)
		rc = MP_E_TOOBIG;
	if (!g && rc == MP_OK && (rc = cs_group_build(v, key, col, &g)) == MP_OK) {
		p->derived_key[p->n_derived] = (uint64_t)1 << 32 | key;
		p->derived[p->n_derived++] = g;
	}
	pthread_mutex_unlock(&p->colmu);
	*out = g;
	return rc;
}

const char *colstore_group_name(const struct cs_view *g, uint32_t group, size_t *len)
{
	const struct cs_view_priv *p = g->priv;
	const char *s;

	if (!p->gname_off || group >= g->n_users) {
		*len = 0;
		return "";
	}
	s = p->gnames.data + p->gname_off[group];
	*len = strlen(s);
	return s;
}

/* ---------- filtered views (cohorts) ---------- */

/* The events of the users U with KEEP[U] set, in the same order, user keys
 * unchanged (the others' ranges are empty). */
static enum mp_err cs_filter_build(const struct cs_view *v, const uint8_t *keep, struct cs_view **out)
{
	struct cs_view *g = cs_derived_new(v);
	struct cs_view_priv *p;
	uint32_t *map = NULL, u;
	size_t n = 0, i, j, k;

	if (!g)
		return MP_E_NOMEM;
	p = g->priv;
	if (!(p->keep = malloc(v->n_users ? v->n_users : 1))) {
		cs_view_free(g);
		return MP_E_NOMEM;
	}
	memcpy(p->keep, keep, v->n_users);
	for (u = 0; u < v->n_users; u++)
		if (keep[u])
			n += v->ustart[u + 1] - v->ustart[u];
	if (cs_derived_arrays(g, v, n, v->n_users) != MP_OK || !(map = malloc((v->n ? v->n : 1) * sizeof *map))) {
		free(map);
		cs_view_free(g);
		return MP_E_NOMEM;
	}
	for (j = 0, u = 0; u <= v->n_users; u++) {      /* u == n_users: the events of no user */
		size_t a = v->ustart[u], z = v->ustart[u + 1];

		p->ustart[u] = (uint32_t)j;
		for (i = a; i < z; i++) {
			if (u == v->n_users || !keep[u]) {
				map[i] = UINT32_MAX;
				continue;
			}
			map[i] = (uint32_t)j;
			p->t[j] = v->t[i];
			p->ev[j] = v->ev[i];
			p->did[j] = v->did[i];
			p->user[j] = v->user[i];
			p->rec[j] = v->rec_off[i];
			j++;
		}
	}
	p->ustart[v->n_users + 1] = (uint32_t)j;
	for (j = 0, k = 0; k < v->n_names; k++) {
		size_t x;

		p->nstart[k] = (uint32_t)j;
		for (x = v->nstart[k]; x < v->nstart[k + 1]; x++) {
			uint32_t i0 = v->npos[x];

			if (i0 < v->n && map[i0] != UINT32_MAX) {
				p->nt[j] = v->nt[x];
				p->npos[j++] = map[i0];
			}
		}
	}
	p->nstart[v->n_names] = (uint32_t)j;
	free(map);
	cs_derived_finish(g, v, n, v->n_users);
	*out = g;
	return MP_OK;
}

enum mp_err colstore_filter_view(const struct cs_view *v, uint64_t key, const uint8_t *keep,
				 struct cs_view **out, int *owned)
{
	struct cs_view_priv *p = v->priv;
	struct cs_view *g = NULL;
	enum mp_err rc = MP_OK;
	size_t i, n_filters;

	*owned = 0;
	if (p->parent)
		return MP_E_INVALID;
	key |= (uint64_t)1 << 63;
	pthread_mutex_lock(&p->colmu);
	for (i = n_filters = 0; i < p->n_derived; i++) {
		/* the same key and (a hash is only a hash) the same users */
		if (p->derived_key[i] == key && (!keep || !memcmp(p->derived[i]->priv->keep, keep, v->n_users)))
			g = p->derived[i];
		n_filters += p->derived_key[i] >> 63;
	}
	if (!g && !keep)
		rc = MP_E_NOTFOUND;    /* a lookup only */
	else if (!g && (rc = cs_filter_build(v, keep, &g)) == MP_OK) {
		/* a filtered view can be as large as V: only a few are kept */
		if (p->n_derived < CS_MAX_DERIVED && n_filters < CS_MAX_FILTERS) {
			p->derived_key[p->n_derived] = key;
			p->derived[p->n_derived++] = g;
		} else {
			*owned = 1;    /* the cache is full: the caller frees it */
		}
	}
	pthread_mutex_unlock(&p->colmu);
	*out = g;
	return rc;
}

void colstore_derived_free(struct cs_view *g)
{
	if (g && g->priv->parent)
		cs_view_free(g);
}

/* ---------- expression evaluation ---------- */

void cs_eval_init(struct cs_eval *ce, const struct cs_view *v)
{
	memset(ce, 0, sizeof *ce);
	ce->v = v;
	ce->j = SIZE_MAX;
}

/* pc_lookup_fn over a struct cs_eval: string id -> string. */
static const char *cs_eval_str(void *ctx, int64_t id, size_t *len)
{
	return cs_view_str((void *)((const struct cs_eval *)ctx)->v, id, len);
}

static int64_t cs_eval_name(void *ctx, const char *name, size_t len)
{
	struct cs_eval *ce = ctx;
	size_t i;
	uint32_t id;

	for (i = 0; i < ce->n_names; i++)
		if (ce->names[i].len == len && memcmp(ce->names[i].name, name, len) == 0)
			return ce->names[i].id;
	id = cs_string_id(ce->v, name, len);
	if (ce->n_names < sizeof ce->names / sizeof ce->names[0]) {
		ce->names[ce->n_names].name = name;
		ce->names[ce->n_names].len = len;
		ce->names[ce->n_names].id = id;
		ce->n_names++;
	}
	return id;
}

int cs_eval_lookup(void *ctx, enum expr_scope scope, const char *name, size_t name_len,
		   struct expr_value *out)
{
	struct cs_eval *ce = ctx;
	const struct cs_view *v = ce->v;
	struct pc_event_ref ev;

	if ((scope == EXPR_SCOPE_USER || scope == EXPR_SCOPE_GROUP) && ce->ext)
		return ce->ext(ce->ext_ctx, ce, scope, name, name_len, out);
	ev.time_ms = v->t[ce->i];
	ev.name = cs_string(v, v->ev[ce->i], &ev.name_len);
	ev.did = cs_string(v, v->did[ce->i], &ev.did_len);
	ev.props = cs_props(v, ce->i, &ev.props_len);
	ev.key_id = cs_eval_name;
	ev.lookup = cs_eval_str;
	ev.ctx = ce;
	ev.items = ce->items;
	ev.n_items = sizeof ce->items / sizeof ce->items[0];
	return pc_event_lookup(&ev, scope, name, name_len, out);
}
