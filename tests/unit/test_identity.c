/*
 * test_identity.c - unit tests for src/identity.c (contract: include/identity.h).
 *
 * What is checked, on tiny hand-written id -> text tables:
 *   simplified  the device's earliest link wins, a tie in time goes to the
 *               smaller user text (not the smaller id), a repeat of the same
 *               pair (another shard) is dropped and *n lowered, the other
 *               links of a device are refused with ID_FAIL_DEVICE_MAPPED,
 *               user ids never merge, the links come back in time order;
 *   original    $identify (success, errSameIDs, non-GUID anon, anon already
 *               identified, a repeat inside one cluster is a no-op),
 *               $create_alias twice -> errAliasAlreadyExists, $merge keeps
 *               the canonical id of the larger cluster, the 500-id limit
 *               (500 ok, the 501st refused with ID_FAIL_MANY_IDS), and the
 *               outcome (canon array and every link's fail) independent of
 *               the input order;
 *   identity_anon_ok() and the name functions.
 * Every expected value is written out by hand from the rules in
 * include/identity.h and spec §9.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "identity.h"
#include "testlib.h"

/* ---------- the id -> text table ---------- */

struct names {
	const char *const *s;
	size_t n;
};

static const char *text_of(void *ctx, uint32_t x, size_t *n)
{
	const struct names *t = ctx;

	if (x >= t->n) {
		fprintf(stderr, "test_identity: text asked for id %u of %zu\n", x, t->n);
		tl_cur_failed = 1;
		*n = 0;
		return "";
	}
	*n = strlen(t->s[x]);
	return t->s[x];
}

#define L(t_, kind_, a_, b_) ((struct id_link){ (t_), (kind_), (a_), (b_), 12345 })

static enum mp_err resolve(int original, const char *const *s, size_t n_ids, struct id_link *links, size_t *n,
			   uint32_t *canon)
{
	struct names t = { s, n_ids };

	return identity_resolve(original, links, n, (uint32_t)n_ids, text_of, &t, canon);
}

/* The link of LINKS[0..N) with these fields (its index), or -1. */
static int find_link(const struct id_link *links, size_t n, int64_t t, uint32_t kind, uint32_t a, uint32_t b)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (links[i].t == t && links[i].kind == kind && links[i].a == a && links[i].b == b)
			return (int)i;
	return -1;
}

/* The fail of the link with these fields, or -1 when it is not there. */
static long fail_of(const struct id_link *links, size_t n, int64_t t, uint32_t kind, uint32_t a, uint32_t b)
{
	int i = find_link(links, n, t, kind, a, b);

	return i < 0 ? -1 : (long)links[i].fail;
}

/* ---------- simplified ---------- */

/* ids: 1 device D1, 2 "bob", 3 "alice" (alice's id is the larger one, so a
 * tie broken by id would pick bob), 4 device D2, 5 "carol", 6 device D3 */
static const char *const SIMPLE[] = { "", "$device:d1", "bob", "alice", "$device:d2", "carol", "$device:d3" };
#define N_SIMPLE (sizeof SIMPLE / sizeof SIMPLE[0])

static void simplified_earliest_link_wins(void)
{
	struct id_link l[] = { L(200, ID_LINK_DEVICE, 1, 2), L(100, ID_LINK_DEVICE, 1, 3) };
	uint32_t canon[N_SIMPLE];
	size_t n = 2, i;

	CHECK_INT(resolve(0, SIMPLE, N_SIMPLE, l, &n, canon), MP_OK);
	CHECK_INT(n, 2);
	CHECK_INT(canon[1], 3);                 /* D1 -> alice (t 100) */
	for (i = 0; i < N_SIMPLE; i++)
		if (i != 1)
			CHECK_INT(canon[i], i);  /* users never move; unlinked ids are themselves */
	CHECK_INT(fail_of(l, n, 100, ID_LINK_DEVICE, 1, 3), ID_FAIL_NONE);
	CHECK_INT(fail_of(l, n, 200, ID_LINK_DEVICE, 1, 2), ID_FAIL_DEVICE_MAPPED);
	/* time order */
	CHECK_INT(l[0].t, 100);
	CHECK_INT(l[1].t, 200);
}

static void simplified_tie_goes_to_the_smaller_user_text(void)
{
	/* both at t 100: "alice" < "bob" although alice's id (3) > bob's (2) */
	struct id_link l[] = { L(100, ID_LINK_DEVICE, 1, 2), L(100, ID_LINK_DEVICE, 1, 3) };
	struct id_link r[] = { L(100, ID_LINK_DEVICE, 1, 3), L(100, ID_LINK_DEVICE, 1, 2) };
	uint32_t canon[N_SIMPLE];
	size_t n = 2;

	CHECK_INT(resolve(0, SIMPLE, N_SIMPLE, l, &n, canon), MP_OK);
	CHECK_INT(n, 2);
	CHECK_INT(canon[1], 3);
	CHECK_INT(canon[2], 2);
	CHECK_INT(canon[3], 3);
	CHECK_INT(fail_of(l, n, 100, ID_LINK_DEVICE, 1, 3), ID_FAIL_NONE);
	CHECK_INT(fail_of(l, n, 100, ID_LINK_DEVICE, 1, 2), ID_FAIL_DEVICE_MAPPED);
	/* the other input order: the same */
	n = 2;
	CHECK_INT(resolve(0, SIMPLE, N_SIMPLE, r, &n, canon), MP_OK);
	CHECK_INT(n, 2);
	CHECK_INT(canon[1], 3);
	CHECK_INT(fail_of(r, n, 100, ID_LINK_DEVICE, 1, 3), ID_FAIL_NONE);
	CHECK_INT(fail_of(r, n, 100, ID_LINK_DEVICE, 1, 2), ID_FAIL_DEVICE_MAPPED);
}

static void simplified_repeated_pair_is_dropped(void)
{
	/* D1 -> alice found in two shards (same t), once more later, and D1 -> bob
	 * in between: the repeats go, bob's link is refused */
	struct id_link l[] = {
		L(100, ID_LINK_DEVICE, 1, 3), L(150, ID_LINK_DEVICE, 1, 2), L(100, ID_LINK_DEVICE, 1, 3),
		L(300, ID_LINK_DEVICE, 1, 3),
	};
	uint32_t canon[N_SIMPLE];
	size_t n = 4;

	CHECK_INT(resolve(0, SIMPLE, N_SIMPLE, l, &n, canon), MP_OK);
	CHECK_INT(n, 2);
	CHECK_INT(canon[1], 3);
	CHECK_INT(l[0].t, 100);
	CHECK_INT(l[0].a, 1);
	CHECK_INT(l[0].b, 3);
	CHECK_INT(l[0].fail, ID_FAIL_NONE);
	CHECK_INT(l[1].t, 150);
	CHECK_INT(l[1].b, 2);
	CHECK_INT(l[1].fail, ID_FAIL_DEVICE_MAPPED);
}

static void simplified_output_in_time_order(void)
{
	/* three devices; input grouped by device, times interleaved */
	struct id_link l[] = {
		L(500, ID_LINK_DEVICE, 6, 5),   /* D3 -> carol: first for D3 */
		L(400, ID_LINK_DEVICE, 1, 2),   /* D1 -> bob: refused (alice at 300) */
		L(300, ID_LINK_DEVICE, 1, 3),   /* D1 -> alice */
		L(100, ID_LINK_DEVICE, 4, 2),   /* D2 -> bob */
		L(600, ID_LINK_DEVICE, 4, 5),   /* D2 -> carol: refused */
		L(200, ID_LINK_DEVICE, 6, 3),   /* D3 -> alice: earlier than carol, so it wins */
	};
	uint32_t canon[N_SIMPLE];
	size_t n = 6, i;

	CHECK_INT(resolve(0, SIMPLE, N_SIMPLE, l, &n, canon), MP_OK);
	CHECK_INT(n, 6);
	for (i = 0; i < n; i++)
		CHECK_INT(l[i].t, (int64_t)(i + 1) * 100);
	CHECK_INT(canon[1], 3);
	CHECK_INT(canon[4], 2);
	CHECK_INT(canon[6], 3);
	CHECK_INT(canon[2], 2);
	CHECK_INT(canon[3], 3);
	CHECK_INT(canon[5], 5);
	CHECK_INT(l[0].fail, ID_FAIL_NONE);          /* 100 D2 -> bob */
	CHECK_INT(l[1].fail, ID_FAIL_NONE);          /* 200 D3 -> alice */
	CHECK_INT(l[2].fail, ID_FAIL_NONE);          /* 300 D1 -> alice */
	CHECK_INT(l[3].fail, ID_FAIL_DEVICE_MAPPED); /* 400 D1 -> bob */
	CHECK_INT(l[4].fail, ID_FAIL_DEVICE_MAPPED); /* 500 D3 -> carol */
	CHECK_INT(l[5].fail, ID_FAIL_DEVICE_MAPPED); /* 600 D2 -> carol */
}

static void simplified_no_links(void)
{
	uint32_t canon[N_SIMPLE];
	struct id_link l[1];
	size_t n = 0, i;

	memset(canon, 0xff, sizeof canon);
	CHECK_INT(resolve(0, SIMPLE, N_SIMPLE, l, &n, canon), MP_OK);
	CHECK_INT(n, 0);
	for (i = 0; i < N_SIMPLE; i++)
		CHECK_INT(canon[i], i);
}

/* ---------- original ---------- */

/* ids: anonymous ids are hex of 16+ characters */
enum { U1 = 1, A1, A2, U2, NG, AL, U3, A3, U4, N_ORIG };
static const char *const ORIG[N_ORIG] = {
	"", "u1", "0123456789abcdef", "$device:fedcba98-7654-3210", "u2", "not-a-guid-at-all", "alias1", "u3",
	"ABCDEF0123456789-0", "u4",
};

static void original_identify_success(void)
{
	struct id_link l[] = { L(100, ID_LINK_IDENTIFY, A1, U1) };
	uint32_t canon[N_ORIG];
	size_t n = 1, i;

	CHECK_INT(resolve(1, ORIG, N_ORIG, l, &n, canon), MP_OK);
	CHECK_INT(n, 1);
	CHECK_INT(l[0].fail, ID_FAIL_NONE);
	CHECK_INT(canon[A1], U1);     /* a new cluster from $identify: the identified id is canonical */
	CHECK_INT(canon[U1], U1);
	for (i = 0; i < N_ORIG; i++)
		if (i != A1)
			CHECK_INT(canon[i], i);
	/* "$device:" + 16 hex/dash characters is anonymous too */
	{
		struct id_link m[] = { L(100, ID_LINK_IDENTIFY, A2, U2) };

		n = 1;
		CHECK_INT(resolve(1, ORIG, N_ORIG, m, &n, canon), MP_OK);
		CHECK_INT(m[0].fail, ID_FAIL_NONE);
		CHECK_INT(canon[A2], U2);
	}
}

static void original_identify_failures(void)
{
	/* errSameIDs, non-GUID anon */
	struct id_link l[] = { L(100, ID_LINK_IDENTIFY, U1, U1), L(200, ID_LINK_IDENTIFY, NG, U1),
			       L(300, ID_LINK_IDENTIFY, U2, U1) };
	uint32_t canon[N_ORIG];
	size_t n = 3, i;

	CHECK_INT(resolve(1, ORIG, N_ORIG, l, &n, canon), MP_OK);
	CHECK_INT(n, 3);
	CHECK_INT(fail_of(l, n, 100, ID_LINK_IDENTIFY, U1, U1), ID_FAIL_SAME_IDS);
	CHECK_INT(fail_of(l, n, 200, ID_LINK_IDENTIFY, NG, U1), ID_FAIL_ANON_NON_GUID);
	CHECK_INT(fail_of(l, n, 300, ID_LINK_IDENTIFY, U2, U1), ID_FAIL_ANON_NON_GUID);
	for (i = 0; i < N_ORIG; i++)
		CHECK_INT(canon[i], i);
}

static void original_anon_already_identified(void)
{
	/* A1 -> u1, then A1 -> u2: A1's cluster already holds an identified id */
	struct id_link l[] = { L(200, ID_LINK_IDENTIFY, A1, U2), L(100, ID_LINK_IDENTIFY, A1, U1) };
	uint32_t canon[N_ORIG];
	size_t n = 2;

	CHECK_INT(resolve(1, ORIG, N_ORIG, l, &n, canon), MP_OK);
	CHECK_INT(n, 2);
	CHECK_INT(l[0].t, 100);        /* applied in time order */
	CHECK_INT(l[0].fail, ID_FAIL_NONE);
	CHECK_INT(l[1].t, 200);
	CHECK_INT(l[1].fail, ID_FAIL_ANON_ASSIGNED);
	CHECK_INT(canon[A1], U1);
	CHECK_INT(canon[U2], U2);
	/* a second anonymous id may join the same identified user */
	{
		struct id_link m[] = { L(100, ID_LINK_IDENTIFY, A1, U1), L(200, ID_LINK_IDENTIFY, A3, U1) };

		n = 2;
		CHECK_INT(resolve(1, ORIG, N_ORIG, m, &n, canon), MP_OK);
		CHECK_INT(m[0].fail, ID_FAIL_NONE);
		CHECK_INT(m[1].fail, ID_FAIL_NONE);
		CHECK_INT(canon[A1], U1);
		CHECK_INT(canon[A3], U1);
	}
}

static void original_same_cluster_is_a_noop(void)
{
	/* the same $identify sent twice, and a $merge of two ids of one cluster */
	struct id_link l[] = { L(100, ID_LINK_IDENTIFY, A1, U1), L(200, ID_LINK_IDENTIFY, A1, U1),
			       L(300, ID_LINK_MERGE, U1, A1) };
	uint32_t canon[N_ORIG];
	size_t n = 3;

	CHECK_INT(resolve(1, ORIG, N_ORIG, l, &n, canon), MP_OK);
	CHECK_INT(n, 3);
	CHECK_INT(l[0].fail, ID_FAIL_NONE);
	CHECK_INT(l[1].fail, ID_FAIL_NONE);
	CHECK_INT(l[2].fail, ID_FAIL_NONE);
	CHECK_INT(canon[A1], U1);
	CHECK_INT(canon[U1], U1);
	CHECK_INT(canon[U2], U2);
}

static void original_alias_twice(void)
{
	/* alias1 -> u1, then alias1 -> u2: an alias maps to one id */
	struct id_link l[] = { L(100, ID_LINK_ALIAS, AL, U1), L(200, ID_LINK_ALIAS, AL, U2),
			       L(300, ID_LINK_ALIAS, U3, U3) };
	uint32_t canon[N_ORIG];
	size_t n = 3;

	CHECK_INT(resolve(1, ORIG, N_ORIG, l, &n, canon), MP_OK);
	CHECK_INT(n, 3);
	CHECK_INT(fail_of(l, n, 100, ID_LINK_ALIAS, AL, U1), ID_FAIL_NONE);
	CHECK_INT(fail_of(l, n, 200, ID_LINK_ALIAS, AL, U2), ID_FAIL_ALIAS_EXISTS);
	CHECK_INT(fail_of(l, n, 300, ID_LINK_ALIAS, U3, U3), ID_FAIL_SAME_IDS);
	CHECK_INT(canon[AL], U1);       /* the alias joins distinct_id's cluster */
	CHECK_INT(canon[U1], U1);
	CHECK_INT(canon[U2], U2);
	CHECK_INT(canon[U3], U3);
}

static void original_merge_keeps_the_larger_clusters_canon(void)
{
	/* {A1, u1} (canonical u1, 2 ids) merged with {u2} (1 id), with u2 as
	 * ids[0] and as ids[1]: u1 either way */
	struct id_link l[] = { L(100, ID_LINK_IDENTIFY, A1, U1), L(200, ID_LINK_MERGE, U2, U1) };
	struct id_link r[] = { L(100, ID_LINK_IDENTIFY, A1, U1), L(200, ID_LINK_MERGE, U1, U2) };
	/* {u3} merged into {A3, u4, alias1... }: build a 3-id cluster under u4
	 * and merge u3 (1 id) as ids[0] */
	struct id_link m[] = { L(100, ID_LINK_IDENTIFY, A3, U4), L(150, ID_LINK_ALIAS, AL, U4),
			       L(200, ID_LINK_MERGE, U3, A3) };
	uint32_t canon[N_ORIG];
	size_t n = 2;

	CHECK_INT(resolve(1, ORIG, N_ORIG, l, &n, canon), MP_OK);
	CHECK_INT(l[1].fail, ID_FAIL_NONE);
	CHECK_INT(canon[A1], U1);
	CHECK_INT(canon[U1], U1);
	CHECK_INT(canon[U2], U1);
	n = 2;
	CHECK_INT(resolve(1, ORIG, N_ORIG, r, &n, canon), MP_OK);
	CHECK_INT(r[1].fail, ID_FAIL_NONE);
	CHECK_INT(canon[A1], U1);
	CHECK_INT(canon[U2], U1);
	n = 3;
	CHECK_INT(resolve(1, ORIG, N_ORIG, m, &n, canon), MP_OK);
	CHECK_INT(m[2].fail, ID_FAIL_NONE);
	CHECK_INT(canon[U3], U4);
	CHECK_INT(canon[A3], U4);
	CHECK_INT(canon[AL], U4);
	CHECK_INT(canon[U4], U4);
	/* errSameIDs on $merge too */
	{
		struct id_link s[] = { L(100, ID_LINK_MERGE, U2, U2) };

		n = 1;
		CHECK_INT(resolve(1, ORIG, N_ORIG, s, &n, canon), MP_OK);
		CHECK_INT(s[0].fail, ID_FAIL_SAME_IDS);
	}
}

/* ---------- the 500-id limit ---------- */

#define BIG 1100
static char big_text[BIG][24];
static const char *big_names[BIG];

/* id 0 "", ids 1..3 "user1".."user3", ids >= 10 anonymous hex ids */
static void big_init(void)
{
	size_t i;

	for (i = 0; i < BIG; i++) {
		if (i == 0)
			big_text[i][0] = '\0';
		else if (i < 10)
			snprintf(big_text[i], sizeof big_text[i], "user%zu", i);
		else
			snprintf(big_text[i], sizeof big_text[i], "%016zx-a", i);
		big_names[i] = big_text[i];
	}
}

static void original_cluster_limit_500(void)
{
	/* user1 + 499 anonymous ids ($identify, one per ms): 500 ids, all merged;
	 * the next anonymous id would make 501: refused */
	static struct id_link l[BIG];
	static uint32_t canon[BIG];
	size_t n = 0, i;

	big_init();
	CHECK(identity_anon_ok(big_names[10], strlen(big_names[10])));
	for (i = 0; i < 500; i++)
		l[n++] = L((int64_t)1000 + (int64_t)i, ID_LINK_IDENTIFY, (uint32_t)(10 + i), 1);
	CHECK_INT(resolve(1, big_names, BIG, l, &n, canon), MP_OK);
	CHECK_INT(n, 500);
	for (i = 0; i < 499; i++)
		CHECK_INT(l[i].fail, ID_FAIL_NONE);
	CHECK_INT(l[499].t, 1499);
	CHECK_INT(l[499].fail, ID_FAIL_MANY_IDS);
	CHECK_INT(canon[10], 1);
	CHECK_INT(canon[10 + 498], 1);
	CHECK_INT(canon[10 + 499], 10 + 499);   /* the refused one stays alone */

	/* $merge of two clusters of 250 (500: ok), then one more id by
	 * $create_alias, and by $merge (501: refused) */
	n = 0;
	for (i = 0; i < 249; i++)
		l[n++] = L(100, ID_LINK_IDENTIFY, (uint32_t)(10 + i), 1);     /* user1: 250 ids */
	for (i = 0; i < 249; i++)
		l[n++] = L(100, ID_LINK_IDENTIFY, (uint32_t)(300 + i), 2);    /* user2: 250 ids */
	l[n++] = L(200, ID_LINK_MERGE, 1, 2);
	l[n++] = L(300, ID_LINK_ALIAS, 3, 1);     /* user3 as an alias of user1 */
	l[n++] = L(400, ID_LINK_MERGE, 600, 2);   /* a lone anonymous id */
	l[n++] = L(500, ID_LINK_IDENTIFY, 601, 1);
	CHECK_INT(resolve(1, big_names, BIG, l, &n, canon), MP_OK);
	CHECK_INT(n, 502);
	CHECK_INT(fail_of(l, n, 200, ID_LINK_MERGE, 1, 2), ID_FAIL_NONE);
	CHECK_INT(fail_of(l, n, 300, ID_LINK_ALIAS, 3, 1), ID_FAIL_MANY_IDS);
	CHECK_INT(fail_of(l, n, 400, ID_LINK_MERGE, 600, 2), ID_FAIL_MANY_IDS);
	CHECK_INT(fail_of(l, n, 500, ID_LINK_IDENTIFY, 601, 1), ID_FAIL_MANY_IDS);
	CHECK_INT(canon[2], canon[1]);
	CHECK_INT(canon[300], canon[10]);
	CHECK(canon[1] == 1 || canon[1] == 2);
	CHECK_INT(canon[3], 3);
	CHECK_INT(canon[600], 600);
	CHECK_INT(canon[601], 601);
}

/* ---------- order independence ---------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state % n);
}

static void shuffle(struct id_link *l, size_t n)
{
	size_t i;

	for (i = n; i > 1; i--) {
		size_t j = rnd((uint32_t)i);
		struct id_link t = l[i - 1];

		l[i - 1] = l[j];
		l[j] = t;
	}
}

static int same_links(const struct id_link *a, const struct id_link *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (a[i].t != b[i].t || a[i].kind != b[i].kind || a[i].a != b[i].a || a[i].b != b[i].b ||
		    a[i].fail != b[i].fail)
			return 0;
	return 1;
}

/* A mix of every kind with equal times and conflicts; each shuffle must give
 * the same canon array, the same applied order and the same fails. */
static void original_order_independent(void)
{
	static struct id_link base[64], l[64], want[64];
	static uint32_t canon0[BIG], canon[BIG];
	size_t n = 0, n0, k, i;
	int ok_canon = 1, ok_links = 1, n_fail = 0;

	big_init();
	base[n++] = L(100, ID_LINK_IDENTIFY, 10, 1);
	base[n++] = L(100, ID_LINK_IDENTIFY, 10, 2);   /* same time: one of the two is refused */
	base[n++] = L(100, ID_LINK_ALIAS, 20, 2);      /* same time, other kind */
	base[n++] = L(150, ID_LINK_ALIAS, 20, 3);      /* alias exists */
	base[n++] = L(150, ID_LINK_MERGE, 3, 4);
	base[n++] = L(200, ID_LINK_MERGE, 4, 1);
	base[n++] = L(200, ID_LINK_IDENTIFY, 11, 5);
	base[n++] = L(200, ID_LINK_IDENTIFY, 11, 6);   /* anon assigned */
	base[n++] = L(250, ID_LINK_IDENTIFY, 5, 6);    /* non-GUID */
	base[n++] = L(250, ID_LINK_MERGE, 6, 6);       /* same ids */
	base[n++] = L(300, ID_LINK_MERGE, 12, 13);
	base[n++] = L(300, ID_LINK_MERGE, 13, 12);
	base[n++] = L(300, ID_LINK_ALIAS, 21, 12);
	base[n++] = L(350, ID_LINK_MERGE, 5, 12);
	base[n++] = L(400, ID_LINK_IDENTIFY, 14, 7);
	base[n++] = L(400, ID_LINK_MERGE, 7, 5);
	base[n++] = L(400, ID_LINK_ALIAS, 22, 8);
	base[n++] = L(400, ID_LINK_ALIAS, 22, 9);
	n0 = n;
	memcpy(want, base, n * sizeof *base);
	CHECK_INT(resolve(1, big_names, BIG, want, &n, canon0), MP_OK);
	CHECK_INT(n, n0);
	for (i = 0; i < n; i++)
		n_fail += want[i].fail != ID_FAIL_NONE;
	CHECK(n_fail >= 5);    /* the conflicts above do conflict */
	for (k = 0; k < 200; k++) {
		memcpy(l, base, n0 * sizeof *base);
		shuffle(l, n0);
		n = n0;
		CHECK_INT(resolve(1, big_names, BIG, l, &n, canon), MP_OK);
		CHECK_INT(n, n0);
		ok_canon &= !memcmp(canon, canon0, sizeof canon);
		ok_links &= same_links(l, want, n0);
	}
	CHECK(ok_canon);
	CHECK(ok_links);
	/* simplified too */
	n = 0;
	base[n++] = L(100, ID_LINK_DEVICE, 10, 1);
	base[n++] = L(100, ID_LINK_DEVICE, 10, 2);
	base[n++] = L(90, ID_LINK_DEVICE, 11, 3);
	base[n++] = L(95, ID_LINK_DEVICE, 11, 1);
	base[n++] = L(90, ID_LINK_DEVICE, 11, 3);
	base[n++] = L(300, ID_LINK_DEVICE, 12, 4);
	n0 = n;
	memcpy(want, base, n * sizeof *base);
	CHECK_INT(resolve(0, big_names, BIG, want, &n, canon0), MP_OK);
	CHECK_INT(n, n0 - 1);
	CHECK_INT(canon0[10], 1);
	CHECK_INT(canon0[11], 3);
	CHECK_INT(canon0[12], 4);
	n0 = n;
	ok_canon = ok_links = 1;
	for (k = 0; k < 100; k++) {
		memcpy(l, base, 6 * sizeof *base);
		shuffle(l, 6);
		n = 6;
		CHECK_INT(resolve(0, big_names, BIG, l, &n, canon), MP_OK);
		CHECK_INT(n, n0);
		ok_canon &= !memcmp(canon, canon0, sizeof canon);
		ok_links &= same_links(l, want, n0);
	}
	CHECK(ok_canon);
	CHECK(ok_links);
}

/* ---------- identity_anon_ok and names ---------- */

static int anon(const char *s)
{
	return identity_anon_ok(s, strlen(s));
}

static void anon_ok_cases(void)
{
	CHECK(anon("0123456789abcdef"));                       /* 16 hex */
	CHECK(anon("0123456789ABCDEF"));                       /* upper case */
	CHECK(anon("d5b1a0c4-3c1e-4f7b-9a0e-2b9f0c1d2e3f"));   /* a UUID */
	CHECK(anon("$device:d5b1a0c4-3c1e-4f7b-9a0e-2b9f0c1d2e3f"));
	CHECK(anon("$device:0123456789abcdef"));
	CHECK(anon("----------------"));                       /* dashes count */
	CHECK(!anon("0123456789abcde"));                       /* 15 */
	CHECK(!anon("$device:0123456789abcde"));               /* 15 after the prefix */
	CHECK(!anon("0123456789abcdeg"));                      /* g */
	CHECK(!anon("0123456789abcdef "));                     /* space */
	CHECK(!anon("$device:"));
	CHECK(!anon(""));
	CHECK(!anon("user@example.com-0000"));
	CHECK(!anon("$DEVICE:0123456789abcdef"));              /* the prefix is case-sensitive */
	CHECK(!anon("$device:$device:0123456789abcdef"));      /* stripped once */
	/* the length argument is honoured: only the first N bytes */
	CHECK(identity_anon_ok("0123456789abcdefXYZ", 16));
	CHECK(!identity_anon_ok("0123456789abcdef", 15));
}

static void names(void)
{
	CHECK_STR(identity_fail_name(ID_FAIL_NONE), "");
	CHECK_STR(identity_fail_name(ID_FAIL_SAME_IDS), "errSameIDs");
	CHECK_STR(identity_fail_name(ID_FAIL_ANON_NON_GUID), "errAnonDistinctIdNonGUIDForm");
	CHECK_STR(identity_fail_name(ID_FAIL_ANON_ASSIGNED), "errAnonDistinctIdAssignedAlready");
	CHECK_STR(identity_fail_name(ID_FAIL_MANY_IDS), "errManyIDs");
	CHECK_STR(identity_fail_name(ID_FAIL_ALIAS_EXISTS), "errAliasAlreadyExists");
	CHECK_STR(identity_fail_name(ID_FAIL_DEVICE_MAPPED), "errDeviceAlreadyMapped");
	CHECK_STR(identity_fail_name(99), "");
	CHECK_STR(identity_kind_name(ID_LINK_DEVICE), "device");
	CHECK_STR(identity_kind_name(ID_LINK_IDENTIFY), "$identify");
	CHECK_STR(identity_kind_name(ID_LINK_ALIAS), "$create_alias");
	CHECK_STR(identity_kind_name(ID_LINK_MERGE), "$merge");
	CHECK_STR(identity_kind_name(0), "");
}

int main(void)
{
	TEST_RUN(simplified_earliest_link_wins);
	TEST_RUN(simplified_tie_goes_to_the_smaller_user_text);
	TEST_RUN(simplified_repeated_pair_is_dropped);
	TEST_RUN(simplified_output_in_time_order);
	TEST_RUN(simplified_no_links);
	TEST_RUN(original_identify_success);
	TEST_RUN(original_identify_failures);
	TEST_RUN(original_anon_already_identified);
	TEST_RUN(original_same_cluster_is_a_noop);
	TEST_RUN(original_alias_twice);
	TEST_RUN(original_merge_keeps_the_larger_clusters_canon);
	TEST_RUN(original_cluster_limit_500);
	TEST_RUN(original_order_independent);
	TEST_RUN(anon_ok_cases);
	TEST_RUN(names);
	return TEST_DONE();
}
