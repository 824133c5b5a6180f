/*
 * q_flows.c - flows (our extension: Mixpanel's Flows report), exact
 * semantics in docs/QUERIES.md#flows.
 *
 * What users do in the steps after (forward) or before (backward) an anchor
 * event, or the paths they take from a start event to an end event (paths).
 * One pass over the projection, a user at a time (the projection keeps a
 * user's events together and in time order): find the user's first anchor
 * in the date range that passes `where`, walk at most `steps` events from
 * it, and intern the walked path, an array of event-name indexes, in one
 * hash table keyed by (group, path) with a user count, where group 0 is the
 * overall flow and group 1 + k the `on` segment k.  The answer is built from
 * the distinct paths, never from the events again.
 *
 * Invariants:
 *   1. Each user adds exactly one path to each of its groups (paths: only
 *      when it converted), so node counts, drop-offs and link values are
 *      sums of path counts.
 *   2. "$other" is decided per group and step from those sums alone, so the
 *      node a path passes at step k depends only on its event at step k.
 *   3. Names are kept as name indexes (cs_name_index: dense, one per event
 *      name); strings are read only to sort and to write the answer.
 *   4. The scan allocates only when a path is new (the pool and table grow
 *      geometrically); nothing is allocated per event.
 */
#include "query_report.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#define FL_MAX_STEPS 10
#define FL_MAX_PATH (FL_MAX_STEPS + 2)  /* paths: start, the steps, end */
#define FL_MAX_HIDDEN 10000
#define FL_MAX_WINDOW_MS (366LL * 86400000)

enum fl_mode { FL_FORWARD, FL_BACKWARD, FL_PATHS };

/* One distinct (group, path) and the users who took it. */
struct fl_path {
	uint64_t hash;
	uint64_t count;
	size_t off;                /* names at pool[off .. off + len) */
	uint32_t group;            /* 0 overall, 1 + k segment k */
	uint32_t len;              /* anchor (or start) included */
};

struct fl_group {
	uint64_t users;            /* users with an anchor (a start event) */
	uint64_t converted;        /* paths: users who reached the end event */
};

struct fl_run {
	struct qctx *q;
	enum fl_mode mode;
	int64_t from, to, window;
	long steps, limit, on_limit;
	int collapse;
	uint32_t anchor_sid;       /* event, or start_event (0: not in the data) */
	uint32_t end_sid;          /* paths: end_event (0: not in the data) */
	uint32_t n_names;          /* name indexes are 0..n_names-1; n_names is "$other" */
	uint32_t real_other;       /* name index of an event actually named "$other", or UINT32_MAX */
	unsigned char *hidden;     /* per name index */
	struct qx where, on;
	struct qsegs segs;
	/* the path table */
	struct fl_path *ent;
	size_t n_ent, cap_ent;
	uint32_t *pool;
	size_t n_pool, cap_pool;
	size_t *slot;              /* entry + 1, 0 empty; a power of two */
	size_t cap_slot;
	struct fl_group *grp;
	size_t n_grp, cap_grp;
	/* the current user's path */
	uint32_t cur[FL_MAX_PATH];
	uint32_t cur_len;
	int cur_conv;
	/* answer scratch */
	struct buf tmp;
};

/* ---------- the path table ---------- */

static uint64_t fl_hash(uint32_t group, const uint32_t *p, uint32_t n)
{
	uint64_t h = 0x9e3779b97f4a7c15ULL ^ (((uint64_t)group << 32) | n);
	uint32_t i;

	for (i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0xff51afd7ed558ccdULL;
		h ^= h >> 31;
	}
	return h;
}

static int fl_grow_slots(struct fl_run *r)
{
	size_t cap = r->cap_slot ? r->cap_slot * 2 : 1024, i, j;
	size_t *slot = calloc(cap, sizeof *slot);

	if (!slot)
		return q_oom(r->q);
	for (i = 0; i < r->n_ent; i++) {
		for (j = (size_t)r->ent[i].hash & (cap - 1); slot[j]; j = (j + 1) & (cap - 1))
			;
		slot[j] = i + 1;
	}
	free(r->slot);
	r->slot = slot;
	r->cap_slot = cap;
	return 0;
}

/* Count the current path once more under GROUP. */
static int fl_intern(struct fl_run *r, uint32_t group)
{
	uint64_t h = fl_hash(group, r->cur, r->cur_len);
	struct fl_path *e;
	size_t j;

	if ((r->n_ent + 1) * 2 > r->cap_slot && fl_grow_slots(r))
		return -1;
	for (j = (size_t)h & (r->cap_slot - 1); r->slot[j]; j = (j + 1) & (r->cap_slot - 1)) {
		e = &r->ent[r->slot[j] - 1];
		if (e->hash == h && e->group == group && e->len == r->cur_len &&
		    !memcmp(r->pool + e->off, r->cur, r->cur_len * sizeof *r->cur)) {
			e->count++;
			return 0;
		}
	}
	if (r->n_ent == r->cap_ent) {
		size_t cap = r->cap_ent ? r->cap_ent * 2 : 1024;
		struct fl_path *ne = realloc(r->ent, cap * sizeof *ne);

		if (!ne)
			return q_oom(r->q);
		r->ent = ne;
		r->cap_ent = cap;
	}
	if (r->n_pool + r->cur_len > r->cap_pool) {
		size_t cap = r->cap_pool ? r->cap_pool * 2 : 8192;
		uint32_t *np = realloc(r->pool, cap * sizeof *np);

		if (!np)
			return q_oom(r->q);
		r->pool = np;
		r->cap_pool = cap;
	}
	memcpy(r->pool + r->n_pool, r->cur, r->cur_len * sizeof *r->cur);
	e = &r->ent[r->n_ent];
	e->hash = h;
	e->count = 1;
	e->off = r->n_pool;
	e->group = group;
	e->len = r->cur_len;
	r->n_pool += r->cur_len;
	r->slot[j] = ++r->n_ent;
	return 0;
}

/* Count the current user in GROUP (its path too, unless paths saw no end). */
static int fl_record(struct fl_run *r, uint32_t group)
{
	if (group >= r->n_grp) {
		if (group >= r->cap_grp) {
			size_t cap = r->cap_grp ? r->cap_grp * 2 : 16;
			struct fl_group *ng;

			while (cap <= group)
				cap *= 2;
			if (!(ng = realloc(r->grp, cap * sizeof *ng)))
				return q_oom(r->q);
			r->grp = ng;
			r->cap_grp = cap;
		}
		memset(r->grp + r->n_grp, 0, (group + 1 - r->n_grp) * sizeof *r->grp);
		r->n_grp = group + 1;
	}
	r->grp[group].users++;
	if (r->mode == FL_PATHS) {
		if (!r->cur_conv)
			return 0;
		r->grp[group].converted++;
	}
	return fl_intern(r, group);
}

static int fl_record_seg(void *ctx, size_t seg)
{
	struct fl_run *r = ctx;

	if (seg >= UINT32_MAX - 1)
		return q_oom(r->q);
	return fl_record(r, (uint32_t)seg + 1);
}

/* ---------- the scan ---------- */

/* Append name N to the current path unless it is hidden or, collapsing, a
 * repeat of the last step.  Returns 1 when appended. */
static int fl_take(struct fl_run *r, uint32_t n)
{
	if (n >= r->n_names || r->hidden[n] || (r->collapse && r->cur[r->cur_len - 1] == n))
		return 0;
	r->cur[r->cur_len++] = n;
	return 1;
}

/* The path of the user whose events are [A, B), from the anchor at J. */
static void fl_walk(struct fl_run *r, size_t a, size_t b, size_t j)
{
	const struct cs_view *v = r->q->v;
	int64_t t0 = v->t[j];
	uint32_t max = (uint32_t)r->steps + 1;
	size_t i;

	r->cur[0] = cs_name_index(v, v->ev[j]);
	r->cur_len = 1;
	r->cur_conv = 0;
	switch (r->mode) {
	case FL_FORWARD:
		for (i = j + 1; i < b && r->cur_len < max && v->t[i] < t0 + r->window; i++)
			fl_take(r, cs_name_index(v, v->ev[i]));
		break;
	case FL_BACKWARD:
		for (i = j; i > a && r->cur_len < max && v->t[i - 1] > t0 - r->window; i--)
			fl_take(r, cs_name_index(v, v->ev[i - 1]));
		break;
	case FL_PATHS:
		for (i = j + 1; i < b && v->t[i] < t0 + r->window; i++) {
			uint32_t n;

			if (v->ev[i] == r->end_sid) {
				r->cur[r->cur_len++] = cs_name_index(v, v->ev[i]);
				r->cur_conv = 1;
				break;
			}
			n = cs_name_index(v, v->ev[i]);
			if (n >= r->n_names || r->hidden[n] || (r->collapse && r->cur[r->cur_len - 1] == n))
				continue;
			if (r->cur_len == max)
				break;     /* a step past `steps`: no conversion */
			r->cur[r->cur_len++] = n;
		}
		break;
	}
}

static int fl_scan(struct fl_run *r)
{
	const struct cs_view *v = r->q->v;
	struct cs_eval ce;
	uint32_t u;

	if (!r->anchor_sid)
		return 0;
	q_eval_init(r->q, &ce);
	for (u = 0; u < v->n_users; u++) {
		size_t a = v->ustart[u], b = v->ustart[u + 1], j;
		int w = 0;

		for (j = cs_lower_bound(v->t, a, b, r->from); j < b && v->t[j] < r->to; j++) {
			if (v->ev[j] != r->anchor_sid)
				continue;
			ce.i = j;
			if ((w = q_qx_where(r->q, &r->where, &ce)) < 0)
				return r->q->status;
			if (w)
				break;
		}
		if (!w)
			continue;
		fl_walk(r, a, b, j);
		if (fl_record(r, 0))
			return r->q->status;
		if (r->on.e && q_qx_on(r->q, &r->on, &ce, &r->segs, fl_record_seg, r))
			return r->q->status ? r->q->status : q_oom(r->q);
	}
	return 0;
}

/* ---------- the answer ---------- */

/* The name of name index N ("$other" for r->n_names). */
static const char *fl_name(const struct fl_run *r, uint32_t n, size_t *len)
{
	if (n >= r->n_names) {
		*len = 6;
		return "$other";
	}
	return cs_string(r->q->v, r->q->v->name_sid[n], len);
}

static int fl_name_cmp(const struct fl_run *r, uint32_t x, uint32_t y)
{
	size_t lx, ly;
	const char *sx, *sy;
	int c;

	if (x == y)
		return 0;
	sx = fl_name(r, x, &lx);
	sy = fl_name(r, y, &ly);
	c = memcmp(sx, sy, lx < ly ? lx : ly);
	return c ? c : (lx > ly) - (lx < ly);
}

/* Per-step tallies of one group, to pick the names kept per step. */
struct fl_tally {
	uint64_t key;              /* step * n_names + name */
	uint64_t count;
};

static int fl_tally_cmp(const void *pa, const void *pb, void *arg)
{
	const struct fl_run *r = arg;
	const struct fl_tally *a = pa, *b = pb;
	uint64_t sa = a->key / r->n_names, sb = b->key / r->n_names;

	if (sa != sb)
		return sa < sb ? -1 : 1;
	if (a->count != b->count)
		return a->count > b->count ? -1 : 1;
	return fl_name_cmp(r, (uint32_t)(a->key % r->n_names), (uint32_t)(b->key % r->n_names));
}

/* A node: (step, name) with users and drop-offs; a link between two nodes. */
struct fl_node {
	uint32_t step, name;
	uint64_t count, drop;
	size_t pos;                /* its place in the answer */
};
struct fl_link {
	size_t src, dst;           /* node indexes */
	uint64_t value;
};

/* A hash from a 64-bit key to a dense index. */
struct fl_map {
	uint64_t *key;
	size_t *idx;               /* index + 1, 0 empty */
	size_t cap, n;
};

static void fl_map_free(struct fl_map *m)
{
	free(m->key);
	free(m->idx);
	memset(m, 0, sizeof *m);
}

static uint64_t fl_mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return x;
}

/* The index of KEY, or a new one (m->n before the call; *ISNEW set); SIZE_MAX
 * on out of memory. */
static size_t fl_map_get(struct fl_map *m, uint64_t key, int *isnew)
{
	size_t i;

	*isnew = 0;
	if ((m->n + 1) * 2 > m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 256, k;
		uint64_t *nk = malloc(cap * sizeof *nk);
		size_t *ni = calloc(cap, sizeof *ni);

		if (!nk || !ni) {
			free(nk);
			free(ni);
			return SIZE_MAX;
		}
		for (k = 0; k < m->cap; k++) {
			if (!m->idx[k])
				continue;
			for (i = (size_t)fl_mix(m->key[k]) & (cap - 1); ni[i]; i = (i + 1) & (cap - 1))
				;
			nk[i] = m->key[k];
			ni[i] = m->idx[k];
		}
		free(m->key);
		free(m->idx);
		m->key = nk;
		m->idx = ni;
		m->cap = cap;
	}
	for (i = (size_t)fl_mix(key) & (m->cap - 1); m->idx[i]; i = (i + 1) & (m->cap - 1))
		if (m->key[i] == key)
			return m->idx[i] - 1;
	m->key[i] = key;
	m->idx[i] = ++m->n;
	*isnew = 1;
	return m->n - 1;
}

/* Nodes and links of one group. */
struct fl_graph {
	struct fl_node *node;
	size_t n_node, cap_node;
	struct fl_link *link;
	size_t n_link, cap_link;
	struct fl_map nmap, lmap;
};

static void fl_graph_free(struct fl_graph *g)
{
	free(g->node);
	free(g->link);
	fl_map_free(&g->nmap);
	fl_map_free(&g->lmap);
	memset(g, 0, sizeof *g);
}

static size_t fl_graph_node(struct fl_run *r, struct fl_graph *g, uint32_t step, uint32_t name)
{
	int isnew;
	size_t k = fl_map_get(&g->nmap, (uint64_t)step * ((uint64_t)r->n_names + 1) + name, &isnew);

	if (k == SIZE_MAX || !isnew)
		return k;
	if (g->n_node == g->cap_node) {
		size_t cap = g->cap_node ? g->cap_node * 2 : 64;
		struct fl_node *nn = realloc(g->node, cap * sizeof *nn);

		if (!nn)
			return SIZE_MAX;
		g->node = nn;
		g->cap_node = cap;
	}
	memset(&g->node[k], 0, sizeof g->node[k]);
	g->node[k].step = step;
	g->node[k].name = name;
	g->n_node++;
	return k;
}

static int fl_graph_link(struct fl_graph *g, size_t src, size_t dst, uint64_t value)
{
	int isnew;
	size_t k = fl_map_get(&g->lmap, ((uint64_t)src << 32) | dst, &isnew);

	if (k == SIZE_MAX)
		return -1;
	if (isnew) {
		if (g->n_link == g->cap_link) {
			size_t cap = g->cap_link ? g->cap_link * 2 : 64;
			struct fl_link *nl = realloc(g->link, cap * sizeof *nl);

			if (!nl)
				return -1;
			g->link = nl;
			g->cap_link = cap;
		}
		g->link[k].src = src;
		g->link[k].dst = dst;
		g->link[k].value = 0;
		g->n_link++;
	}
	g->link[k].value += value;
	return 0;
}

/* Add the paths IDX[0..N) to G, each name mapped through KEEP (a
 * step * n_names + name table: 0 means "$other"), or as they are when KEEP
 * is NULL. */
static int fl_graph_add(struct fl_run *r, struct fl_graph *g, const size_t *idx, size_t n,
			const unsigned char *keep)
{
	size_t i, k, prev = 0;

	for (i = 0; i < n; i++) {
		const struct fl_path *e = &r->ent[idx[i]];
		const uint32_t *p = r->pool + e->off;

		for (k = 0; k < e->len; k++) {
			uint32_t name = p[k];
			size_t node;

			if (keep && !keep[k * r->n_names + name])
				name = r->n_names;
			if ((node = fl_graph_node(r, g, (uint32_t)k, name)) == SIZE_MAX)
				return q_oom(r->q);
			g->node[node].count += e->count;
			if (k + 1 == e->len)
				g->node[node].drop += e->count;
			if (k && fl_graph_link(g, prev, node, e->count))
				return q_oom(r->q);
			prev = node;
		}
	}
	return 0;
}

static int fl_node_cmp(const void *pa, const void *pb, void *arg)
{
	const struct fl_run *r = ((void **)arg)[0];
	const struct fl_graph *g = ((void **)arg)[1];
	const struct fl_node *a = &g->node[*(const size_t *)pa], *b = &g->node[*(const size_t *)pb];

	if (a->step != b->step)
		return a->step < b->step ? -1 : 1;
	if (a->count != b->count)
		return a->count > b->count ? -1 : 1;
	return fl_name_cmp(r, a->name, b->name);
}

static int fl_link_cmp(const void *pa, const void *pb, void *arg)
{
	const struct fl_graph *g = arg;
	const struct fl_link *a = pa, *b = pb;
	size_t as = g->node[a->src].pos, bs = g->node[b->src].pos;

	if (as != bs)
		return as < bs ? -1 : 1;
	if (a->value != b->value)
		return a->value > b->value ? -1 : 1;
	as = g->node[a->dst].pos;
	bs = g->node[b->dst].pos;
	return (as > bs) - (as < bs);
}

/* "step:name" of node ND as a JSON string. */
static int fl_json_id(struct fl_run *r, const struct fl_node *nd)
{
	size_t len;
	const char *s = fl_name(r, nd->name, &len);

	buf_reset(&r->tmp);
	if (buf_printf(&r->tmp, "%" PRIu32 ":", nd->step) != MP_OK || buf_append(&r->tmp, s, len) != MP_OK ||
	    buf_json_str(r->q->out, r->tmp.data, r->tmp.len) != MP_OK)
		return -1;
	return 0;
}

/* ,"nodes":[...],"links":[...] of G, sorted (docs/QUERIES.md#flows). */
static int fl_json_graph(struct fl_run *r, struct fl_graph *g, uint64_t users)
{
	struct buf *o = r->q->out;
	size_t *order = malloc((g->n_node ? g->n_node : 1) * sizeof *order), i;
	void *arg[2] = { r, g };
	int bad = 0;

	if (!order)
		return q_oom(r->q);
	for (i = 0; i < g->n_node; i++)
		order[i] = i;
	qsort_r(order, g->n_node, sizeof *order, fl_node_cmp, arg);
	for (i = 0; i < g->n_node; i++)
		g->node[order[i]].pos = i;
	bad |= buf_append(o, ",\"nodes\":[", 10) != MP_OK;
	for (i = 0; i < g->n_node && !bad; i++) {
		const struct fl_node *nd = &g->node[order[i]];
		size_t len;
		const char *s = fl_name(r, nd->name, &len);

		bad |= (i && buf_putc(o, ',') != MP_OK) || buf_append(o, "{\"id\":", 6) != MP_OK ||
		       fl_json_id(r, nd) ||
		       buf_printf(o, ",\"step\":%" PRIu32 ",\"event\":", nd->step) != MP_OK ||
		       buf_json_str(o, s, len) != MP_OK ||
		       buf_printf(o, ",\"count\":%" PRIu64 ",\"drop_off\":%" PRIu64 ",\"conversion\":", nd->count,
				  nd->drop) != MP_OK ||
		       buf_json_num(o, users ? (double)nd->count / (double)users : 0) != MP_OK ||
		       buf_putc(o, '}') != MP_OK;
	}
	free(order);
	if (g->n_link)
		qsort_r(g->link, g->n_link, sizeof *g->link, fl_link_cmp, g);
	bad |= buf_append(o, "],\"links\":[", 11) != MP_OK;
	for (i = 0; i < g->n_link && !bad; i++) {
		const struct fl_link *l = &g->link[i];

		bad |= (i && buf_putc(o, ',') != MP_OK) || buf_append(o, "{\"source\":", 10) != MP_OK ||
		       fl_json_id(r, &g->node[l->src]) || buf_append(o, ",\"target\":", 10) != MP_OK ||
		       fl_json_id(r, &g->node[l->dst]) ||
		       buf_printf(o, ",\"value\":%" PRIu64 "}", l->value) != MP_OK;
	}
	bad |= buf_putc(o, ']') != MP_OK;
	return bad ? q_oom(r->q) : 0;
}

/* The names kept per step for the paths IDX[0..N) of one group: KEEP[step *
 * n_names + name] = 1 for the top `limit` names of each step by users (ties
 * by name); an event named "$other" never takes a place.  CNT is zero on
 * entry and on return. */
static int fl_keep(struct fl_run *r, const size_t *idx, size_t n, uint64_t *cnt, unsigned char *keep,
		   struct fl_tally **tally, size_t *n_tally)
{
	size_t i, k, nt = 0, cap = 0, taken = 0;
	struct fl_tally *t = NULL;
	uint64_t step = UINT64_MAX;

	for (i = 0; i < n; i++) {
		const struct fl_path *e = &r->ent[idx[i]];

		for (k = 0; k < e->len; k++) {
			uint64_t key = (uint64_t)k * r->n_names + r->pool[e->off + k];

			if (!cnt[key]++) {
				if (nt == cap) {
					struct fl_tally *nw;

					cap = cap ? cap * 2 : 256;
					if (!(nw = realloc(t, cap * sizeof *nw))) {
						free(t);
						return q_oom(r->q);
					}
					t = nw;
				}
				t[nt++].key = key;
			}
			cnt[key] += e->count - 1;
		}
	}
	for (i = 0; i < nt; i++) {
		t[i].count = cnt[t[i].key];
		cnt[t[i].key] = 0;
	}
	if (nt)
		qsort_r(t, nt, sizeof *t, fl_tally_cmp, r);
	for (i = 0; i < nt; i++) {
		uint64_t s = t[i].key / r->n_names;

		if (s != step) {
			step = s;
			taken = 0;
		}
		if (t[i].key % r->n_names == r->real_other || taken >= (size_t)r->limit)
			continue;
		keep[t[i].key] = 1;
		taken++;
	}
	*tally = t;
	*n_tally = nt;
	return 0;
}

static int fl_path_cmp(const void *pa, const void *pb, void *arg)
{
	const struct fl_run *r = arg;
	const struct fl_path *a = &r->ent[*(const size_t *)pa], *b = &r->ent[*(const size_t *)pb];
	uint32_t k;
	int c;

	if (a->count != b->count)
		return a->count > b->count ? -1 : 1;
	for (k = 0; k < a->len && k < b->len; k++)
		if ((c = fl_name_cmp(r, r->pool[a->off + k], r->pool[b->off + k])))
			return c;
	return (a->len > b->len) - (a->len < b->len);
}

/* The body of one flow (no braces): users, [converted, conversion, paths],
 * nodes, links of group G, whose paths are IDX[0..N) (sorted in place). */
static int fl_json_flow(struct fl_run *r, uint32_t g, size_t *idx, size_t n, uint64_t *cnt, unsigned char *keep)
{
	struct buf *o = r->q->out;
	struct fl_graph gr;
	struct fl_tally *tally = NULL;
	uint64_t users = g < r->n_grp ? r->grp[g].users : 0;
	size_t i, k, n_tally = 0;
	int rc = 0;

	memset(&gr, 0, sizeof gr);
	if (buf_printf(o, "\"users\":%" PRIu64, users) != MP_OK)
		return q_oom(r->q);
	if (r->mode == FL_PATHS) {
		uint64_t conv = g < r->n_grp ? r->grp[g].converted : 0;

		if (buf_printf(o, ",\"converted\":%" PRIu64 ",\"conversion\":", conv) != MP_OK ||
		    buf_json_num(o, users ? (double)conv / (double)users : 0) != MP_OK ||
		    buf_append(o, ",\"paths\":[", 10) != MP_OK)
			return q_oom(r->q);
		qsort_r(idx, n, sizeof *idx, fl_path_cmp, r);
		if (n > (size_t)r->limit)
			n = (size_t)r->limit;
		for (i = 0; i < n; i++) {
			const struct fl_path *e = &r->ent[idx[i]];

			if ((i && buf_putc(o, ',') != MP_OK) || buf_append(o, "{\"path\":[", 9) != MP_OK)
				return q_oom(r->q);
			for (k = 0; k < e->len; k++) {
				size_t len;
				const char *s = fl_name(r, r->pool[e->off + k], &len);

				if ((k && buf_putc(o, ',') != MP_OK) || buf_json_str(o, s, len) != MP_OK)
					return q_oom(r->q);
			}
			if (buf_printf(o, "],\"count\":%" PRIu64 "}", e->count) != MP_OK)
				return q_oom(r->q);
		}
		if (buf_putc(o, ']') != MP_OK)
			return q_oom(r->q);
		if (fl_graph_add(r, &gr, idx, n, NULL) || fl_json_graph(r, &gr, users))
			rc = r->q->status;
	} else {
		if (fl_keep(r, idx, n, cnt, keep, &tally, &n_tally) || fl_graph_add(r, &gr, idx, n, keep) ||
		    fl_json_graph(r, &gr, users))
			rc = r->q->status;
		for (i = 0; i < n_tally; i++)
			keep[tally[i].key] = 0;
		free(tally);
	}
	fl_graph_free(&gr);
	return rc;
}

static int fl_answer(struct fl_run *r)
{
	struct buf *o = r->q->out;
	static const char *const mode_name[] = { "forward", "backward", "paths" };
	const char *fd = q_param(r->q, "from_date"), *td = q_param(r->q, "to_date");
	size_t *gstart = NULL, *idx = NULL, *order = NULL, n_order = 0, i, ng = r->n_grp ? r->n_grp : 1;
	double *total = NULL;
	uint64_t *cnt = NULL;
	unsigned char *keep = NULL;
	int rc = 0;

	/* the entries grouped by group: a counting sort */
	if (!(gstart = calloc(ng + 1, sizeof *gstart)) || !(idx = malloc((r->n_ent ? r->n_ent : 1) * sizeof *idx))) {
		rc = q_oom(r->q);
		goto out;
	}
	for (i = 0; i < r->n_ent; i++)
		gstart[r->ent[i].group + 1]++;
	for (i = 0; i < ng; i++)
		gstart[i + 1] += gstart[i];
	for (i = 0; i < r->n_ent; i++)
		idx[gstart[r->ent[i].group]++] = i;
	for (i = ng; i > 0; i--)
		gstart[i] = gstart[i - 1];
	gstart[0] = 0;
	if (r->mode != FL_PATHS) {
		size_t cells = ((size_t)r->steps + 1) * (r->n_names ? r->n_names : 1);

		if (!(cnt = calloc(cells, sizeof *cnt)) || !(keep = calloc(cells, 1))) {
			rc = q_oom(r->q);
			goto out;
		}
	}
	if (buf_printf(o, "{\"mode\":\"%s\",\"from_date\":", mode_name[r->mode]) != MP_OK ||
	    buf_json_str(o, fd, strlen(fd)) != MP_OK || buf_append(o, ",\"to_date\":", 11) != MP_OK ||
	    buf_json_str(o, td, strlen(td)) != MP_OK || buf_putc(o, ',') != MP_OK) {
		rc = q_oom(r->q);
		goto out;
	}
	if (fl_json_flow(r, 0, idx + gstart[0], gstart[1] - gstart[0], cnt, keep)) {
		rc = r->q->status;
		goto out;
	}
	if (r->on.e) {
		if (!(total = calloc(r->segs.n ? r->segs.n : 1, sizeof *total))) {
			rc = q_oom(r->q);
			goto out;
		}
		for (i = 0; i < r->segs.n; i++)
			total[i] = i + 1 < r->n_grp ? (double)r->grp[i + 1].users : 0;
		if (!(order = qsegs_top(&r->segs, total, (size_t)r->on_limit, &n_order))) {
			rc = q_oom(r->q);
			goto out;
		}
		if (buf_append(o, ",\"breakdown\":{", 14) != MP_OK) {
			rc = q_oom(r->q);
			goto out;
		}
		for (i = 0; i < n_order; i++) {
			size_t k = order[i], g = k + 1, a = g < ng ? gstart[g] : 0, b = g < ng ? gstart[g + 1] : 0;

			if ((i && buf_putc(o, ',') != MP_OK) ||
			    buf_json_str(o, r->segs.name[k], r->segs.name_len[k]) != MP_OK ||
			    buf_append(o, ":{", 2) != MP_OK) {
				rc = q_oom(r->q);
				goto out;
			}
			if (fl_json_flow(r, (uint32_t)g, idx + a, b - a, cnt, keep)) {
				rc = r->q->status;
				goto out;
			}
			if (buf_putc(o, '}') != MP_OK) {
				rc = q_oom(r->q);
				goto out;
			}
		}
		if (buf_putc(o, '}') != MP_OK) {
			rc = q_oom(r->q);
			goto out;
		}
	}
	if (buf_putc(o, '}') != MP_OK)
		rc = q_oom(r->q);
out:
	free(gstart);
	free(idx);
	free(order);
	free(total);
	free(cnt);
	free(keep);
	return rc;
}

/* ---------- parameters ---------- */

static int fl_window(struct fl_run *r)
{
	static const struct { const char *n; int64_t ms; } units[] = {
		{ "second", 1000 }, { "minute", 60000 }, { "hour", 3600000 }, { "day", 86400000 },
		{ "week", 7 * 86400000LL }, { "month", 30 * 86400000LL },
	};
	const char *u = q_param(r->q, "length_unit");
	long length;
	size_t i;

	if (!u)
		u = "day";
	for (i = 0; i < sizeof units / sizeof units[0] && strcmp(u, units[i].n); i++)
		;
	if (i == sizeof units / sizeof units[0])
		return q_fail(r->q, 400, "'length_unit' must be one of: second, minute, hour, day, week, month (got '%.40s')", u);
	if (q_int(r->q, "length", 7, 1, 366L * 86400, &length))
		return r->q->status;
	r->window = (int64_t)length * units[i].ms;
	if (r->window > FL_MAX_WINDOW_MS)
		return q_fail(r->q, 400, "the conversion window (length x length_unit) may not exceed 366 days");
	return 0;
}

/* The name index of event NAME, or UINT32_MAX when no event has it. */
static uint32_t fl_name_index(const struct cs_view *v, const char *name, size_t len, uint32_t *sid)
{
	uint32_t id = cs_string_id(v, name, len), n = id ? cs_name_index(v, id) : UINT32_MAX;

	if (sid)
		*sid = n < v->n_names ? id : 0;
	return n < v->n_names ? n : UINT32_MAX;
}

static int fl_hidden(struct fl_run *r)
{
	const char *s = q_param(r->q, "hidden_events");
	cJSON *arr, *it;
	int bad = 0;

	if (!s)
		return 0;
	if (!(arr = cJSON_Parse(s)))
		return q_fail(r->q, 400, "'hidden_events' is not valid JSON: expected an array of event names");
	if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) > FL_MAX_HIDDEN)
		bad = 1;
	cJSON_ArrayForEach(it, arr) {
		uint32_t n;

		if (bad || !cJSON_IsString(it)) {
			bad = 1;
			break;
		}
		if ((n = fl_name_index(r->q->v, it->valuestring, strlen(it->valuestring), NULL)) != UINT32_MAX)
			r->hidden[n] = 1;
	}
	cJSON_Delete(arr);
	if (bad)
		return q_fail(r->q, 400, "'hidden_events' must be a JSON array of at most %d event names", FL_MAX_HIDDEN);
	return 0;
}

static int fl_params(struct fl_run *r)
{
	struct qctx *q = r->q;
	const char *m = q_param(q, "mode"), *ev, *end = NULL;

	if (!m || !strcmp(m, "forward"))
		r->mode = FL_FORWARD;
	else if (!strcmp(m, "backward"))
		r->mode = FL_BACKWARD;
	else if (!strcmp(m, "paths"))
		r->mode = FL_PATHS;
	else
		return q_fail(q, 400, "'mode' must be one of: forward, backward, paths (got '%.40s')", m);
	if (q_dates(q, &r->from, &r->to))
		return q->status;
	if (r->mode == FL_PATHS) {
		if (!(ev = q_param(q, "start_event")))
			return q_fail(q, 400, "'start_event' is a required parameter with mode=paths");
		if (!(end = q_param(q, "end_event")))
			return q_fail(q, 400, "'end_event' is a required parameter with mode=paths");
	} else if (!(ev = q_param(q, "event"))) {
		return q_fail(q, 400, "'event' is a required parameter (the anchor event)");
	}
	if (q_int(q, "steps", r->mode == FL_PATHS ? 10 : 5, 1, FL_MAX_STEPS, &r->steps) || fl_window(r) ||
	    q_bool(q, "collapse_repeated", 0, &r->collapse) || q_int(q, "limit", 10, 1, 10000, &r->limit) ||
	    q_int(q, "on_limit", 10, 1, 10000, &r->on_limit))
		return q->status;
	r->n_names = q->v->n_names;
	if (!(r->hidden = calloc(r->n_names ? r->n_names : 1, 1)))
		return q_oom(q);
	if (fl_hidden(r) || q_qx_param(q, "where", &r->where) || q_qx_param(q, "on", &r->on))
		return q->status;
	fl_name_index(q->v, ev, strlen(ev), &r->anchor_sid);
	if (end)
		fl_name_index(q->v, end, strlen(end), &r->end_sid);
	r->real_other = fl_name_index(q->v, "$other", 6, NULL);
	if (r->mode == FL_PATHS && !r->end_sid)
		r->end_sid = UINT32_MAX;   /* matches no event */
	return 0;
}

int q_flows(struct qctx *q)
{
	struct fl_run r;
	int rc;

	memset(&r, 0, sizeof r);
	r.q = q;
	qsegs_init(&r.segs, 1);
	buf_init(&r.tmp, 1 << 20);
	if (fl_params(&r) || fl_scan(&r) || fl_answer(&r))
		rc = q->status ? q->status : q_oom(q);
	else
		rc = 200;
	buf_free(&r.tmp);
	free(r.hidden);
	free(r.ent);
	free(r.pool);
	free(r.slot);
	free(r.grp);
	qsegs_free(&r.segs);
	q_qx_free(&r.where);
	q_qx_free(&r.on);
	return rc;
}
