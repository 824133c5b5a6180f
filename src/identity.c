/*
 * identity.c - Mixpanel's ID merge over integer ids (contract in
 * include/identity.h, rules in docs/IDENTITY.md).
 *
 * Original ID merge is a union-find over the ids: each root holds its
 * cluster's size, canonical id and whether an id of the cluster was the
 * $identified_id of an applied $identify; each id remembers whether it was
 * the alias of an applied $create_alias.
 */
#include "identity.h"

#include <stdlib.h>
#include <string.h>

struct id_sort {
	id_text_fn text;
	void *ctx;
};

static int id_text_cmp(const struct id_sort *s, uint32_t x, uint32_t y)
{
	size_t nx, ny;
	const char *a, *b;
	int c;

	if (x == y)
		return 0;
	a = s->text(s->ctx, x, &nx);
	b = s->text(s->ctx, y, &ny);
	c = memcmp(a, b, nx < ny ? nx : ny);
	return c ? c : (nx > ny) - (nx < ny);
}

/* Simplified: by device, then time, then user text. */
static int id_cmp_device(const void *pa, const void *pb, void *arg)
{
	const struct id_link *a = pa, *b = pb;

	if (a->a != b->a)
		return a->a < b->a ? -1 : 1;
	if (a->t != b->t)
		return a->t < b->t ? -1 : 1;
	return id_text_cmp(arg, a->b, b->b);
}

/* Event names in byte order: "$create_alias" < "$identify" < "$merge". */
static int id_kind_rank(uint32_t kind)
{
	return kind == ID_LINK_ALIAS ? 0 : kind == ID_LINK_IDENTIFY ? 1 : 2;
}

/* Original: by time, event name, then the ids' text. */
static int id_cmp_event(const void *pa, const void *pb, void *arg)
{
	const struct id_link *a = pa, *b = pb;
	int c;

	if (a->t != b->t)
		return a->t < b->t ? -1 : 1;
	if ((c = id_kind_rank(a->kind) - id_kind_rank(b->kind)) != 0)
		return c;
	if ((c = id_text_cmp(arg, a->a, b->a)) != 0)
		return c;
	return id_text_cmp(arg, a->b, b->b);
}

static int id_cmp_time(const void *pa, const void *pb)
{
	const struct id_link *a = pa, *b = pb;

	if (a->t != b->t)
		return a->t < b->t ? -1 : 1;
	return (a->a > b->a) - (a->a < b->a);
}

int identity_anon_ok(const char *s, size_t n)
{
	size_t i;

	if (n >= 8 && !memcmp(s, "$device:", 8)) {
		s += 8;
		n -= 8;
	}
	if (n < 16)
		return 0;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '-'))
			return 0;
	}
	return 1;
}

enum { ID_ROOT_IDENTIFIED = 1, ID_USED_AS_ALIAS = 2 };

struct id_uf {
	uint32_t *parent, *size, *canon;
	unsigned char *flags;
};

static uint32_t id_find(struct id_uf *u, uint32_t x)
{
	uint32_t r = x;

	while (u->parent[r] != r)
		r = u->parent[r];
	while (u->parent[x] != r) {    /* path compression */
		uint32_t next = u->parent[x];

		u->parent[x] = r;
		x = next;
	}
	return r;
}

/* Join roots RA and RB; the cluster keeps canonical id CANON. */
static void id_union(struct id_uf *u, uint32_t ra, uint32_t rb, uint32_t canon)
{
	uint32_t big = u->size[ra] >= u->size[rb] ? ra : rb, small = big == ra ? rb : ra;

	u->parent[small] = big;
	u->size[big] += u->size[small];
	u->canon[big] = canon;
	u->flags[big] |= u->flags[small] & ID_ROOT_IDENTIFIED;
}

static uint32_t id_apply(struct id_uf *u, const struct id_link *l, const struct id_sort *s)
{
	uint32_t ra, rb;
	size_t na;
	const char *ta;

	if (l->a == l->b)
		return ID_FAIL_SAME_IDS;
	ra = id_find(u, l->a);
	rb = id_find(u, l->b);
	switch (l->kind) {
	case ID_LINK_IDENTIFY:     /* a = $anon_id, b = $identified_id */
		ta = s->text(s->ctx, l->a, &na);
		if (!identity_anon_ok(ta, na))
			return ID_FAIL_ANON_NON_GUID;
		if (ra == rb) {
			u->flags[rb] |= ID_ROOT_IDENTIFIED;  /* as after a merge (and like an alias) */
			return ID_FAIL_NONE;
		}
		if (u->flags[ra] & ID_ROOT_IDENTIFIED)
			return ID_FAIL_ANON_ASSIGNED;
		if (u->size[ra] + u->size[rb] > IDENTITY_MAX_CLUSTER)
			return ID_FAIL_MANY_IDS;
		u->flags[rb] |= ID_ROOT_IDENTIFIED;
		id_union(u, ra, rb, u->canon[rb]);
		return ID_FAIL_NONE;
	case ID_LINK_ALIAS:        /* a = alias, b = distinct_id */
		if (u->flags[l->a] & ID_USED_AS_ALIAS)
			return ID_FAIL_ALIAS_EXISTS;
		if (ra != rb) {
			if (u->size[ra] + u->size[rb] > IDENTITY_MAX_CLUSTER)
				return ID_FAIL_MANY_IDS;
			id_union(u, ra, rb, u->canon[rb]);
		}
		u->flags[l->a] |= ID_USED_AS_ALIAS;
		return ID_FAIL_NONE;
	default:                   /* $merge */
		if (ra == rb)
			return ID_FAIL_NONE;
		if (u->size[ra] + u->size[rb] > IDENTITY_MAX_CLUSTER)
			return ID_FAIL_MANY_IDS;
		id_union(u, ra, rb, u->size[rb] > u->size[ra] ? u->canon[rb] : u->canon[ra]);
		return ID_FAIL_NONE;
	}
}

enum mp_err identity_resolve(int original, struct id_link *links, size_t *n_io, uint32_t n_ids,
			     id_text_fn text, void *ctx, uint32_t *canon)
{
	struct id_sort s = { text, ctx };
	size_t n = *n_io;
	struct id_uf u = { NULL, NULL, NULL, NULL };
	uint32_t i;
	size_t k;

	for (i = 0; i < n_ids; i++)
		canon[i] = i;
	if (!n)
		return MP_OK;
	if (!original) {
		size_t w = 0, first = 0;

		qsort_r(links, n, sizeof *links, id_cmp_device, &s);
		for (k = 0; k < n; k++) {
			struct id_link l = links[k];

			if (w == 0 || links[first].a != l.a) {
				first = w;     /* the device's earliest link: it wins */
				l.fail = l.a == l.b ? ID_FAIL_SAME_IDS : ID_FAIL_NONE;
				if (!l.fail)
					canon[l.a] = l.b;
			} else if (links[first].b == l.b) {
				continue;      /* the same pair again (another shard) */
			} else {
				l.fail = ID_FAIL_DEVICE_MAPPED;
			}
			links[w++] = l;
		}
		*n_io = n = w;
		/* report them in time order */
		qsort(links, n, sizeof *links, id_cmp_time);
		return MP_OK;
	}
	if (!(u.parent = malloc(n_ids * sizeof *u.parent)) || !(u.size = malloc(n_ids * sizeof *u.size)) ||
	    !(u.canon = malloc(n_ids * sizeof *u.canon)) || !(u.flags = calloc(n_ids, 1))) {
		free(u.parent);
		free(u.size);
		free(u.canon);
		return MP_E_NOMEM;
	}
	for (i = 0; i < n_ids; i++) {
		u.parent[i] = u.canon[i] = i;
		u.size[i] = 1;
	}
	qsort_r(links, n, sizeof *links, id_cmp_event, &s);
	for (k = 0; k < n; k++)
		links[k].fail = id_apply(&u, &links[k], &s);
	for (i = 0; i < n_ids; i++)
		canon[i] = u.canon[id_find(&u, i)];
	free(u.parent);
	free(u.size);
	free(u.canon);
	free(u.flags);
	return MP_OK;
}

const char *identity_fail_name(uint32_t fail)
{
	static const char *const names[] = {
		"", "errSameIDs", "errAnonDistinctIdNonGUIDForm", "errAnonDistinctIdAssignedAlready",
		"errManyIDs", "errAliasAlreadyExists", "errDeviceAlreadyMapped"
	};

	return fail < sizeof names / sizeof names[0] ? names[fail] : "";
}

const char *identity_kind_name(uint32_t kind)
{
	static const char *const names[] = { "", "device", "$identify", "$create_alias", "$merge" };

	return kind < sizeof names / sizeof names[0] ? names[kind] : "";
}
