/*
 * jarena.c - bump allocation of cJSON trees per request (contract in
 * include/jarena.h).
 *
 * One address range of JARENA_RANGE bytes is reserved at install time
 * (MAP_NORESERVE: only pages written to cost memory).  It is cut into
 * chunks of JARENA_CHUNK bytes, handed to arenas from a pool:
 *   1. chunks come from the warm stack (pages resident), then the cold
 *      stack (given back to the kernel), then the untouched end of the
 *      range; when all are in use, allocations fall back to malloc;
 *   2. a released chunk goes to the warm stack while it holds fewer than
 *      JARENA_WARM chunks, else its pages are given back (MADV_DONTNEED)
 *      and it goes to the cold stack, so the pool keeps at most
 *      JARENA_WARM * JARENA_CHUNK bytes resident between bursts;
 *   3. an address inside the range is arena memory and nothing else is:
 *      that is the whole test of the free hook.
 * Under AddressSanitizer free chunks are poisoned and every allocation is
 * followed by a poisoned gap, so a use after jarena_release() or an
 * overflow is reported as with malloc.
 */
#include "jarena.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <cjson/cJSON.h>

#if defined(__SANITIZE_ADDRESS__)
#define JARENA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define JARENA_ASAN 1
#endif
#endif
#ifdef JARENA_ASAN
#include <sanitizer/asan_interface.h>
#define JARENA_GAP 16
#else
#define ASAN_POISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#define ASAN_UNPOISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#define JARENA_GAP 0
#endif

#define JARENA_CHUNK ((size_t)256 * 1024)
#define JARENA_RANGE ((size_t)8 << 30)          /* 32,768 chunks */
#define JARENA_NCHUNKS (JARENA_RANGE / JARENA_CHUNK)
#define JARENA_WARM 64                          /* 16 MiB kept resident */
#define JARENA_ALIGN 16

struct jarena_chunk {
	struct jarena_chunk *next;
	char pad[JARENA_ALIGN - sizeof(void *)];
};

struct jarena {
	struct jarena_chunk *chunks;    /* newest first; the first holds this struct */
	char *cur, *end;
	size_t used;
	size_t n_malloc;                /* allocations malloc'd while current */
};

static char *jarena_base;               /* NULL: not installed */
static pthread_mutex_t jarena_mu = PTHREAD_MUTEX_INITIALIZER;
static struct jarena_chunk **jarena_warm, **jarena_cold;
static size_t jarena_n_warm, jarena_n_cold, jarena_fresh;
static _Thread_local struct jarena *jarena_cur;

static int jarena_owns(const void *p)
{
	return jarena_base && (uintptr_t)p - (uintptr_t)jarena_base < JARENA_RANGE;
}

static struct jarena_chunk *jarena_chunk_take(void)
{
	struct jarena_chunk *c = NULL;

	pthread_mutex_lock(&jarena_mu);
	if (jarena_n_warm)
		c = jarena_warm[--jarena_n_warm];
	else if (jarena_n_cold)
		c = jarena_cold[--jarena_n_cold];
	else if (jarena_fresh < JARENA_NCHUNKS)
		c = (struct jarena_chunk *)(jarena_base + jarena_fresh++ * JARENA_CHUNK);
	pthread_mutex_unlock(&jarena_mu);
	if (c) {
		/* fresh chunks are poisoned here rather than the whole range at
		 * install (its shadow would be 1 GiB) */
		ASAN_POISON_MEMORY_REGION(c, JARENA_CHUNK);
		ASAN_UNPOISON_MEMORY_REGION(c, sizeof *c);
		c->next = NULL;
	}
	return c;
}

/* Give C's pages back to the kernel and put it on the cold stack.  Called
 * outside the lock: the kernel call is the slow part.  A failed madvise
 * leaves the pages resident, which is only memory. */
static void jarena_chunk_cool(struct jarena_chunk *c)
{
	ASAN_UNPOISON_MEMORY_REGION(c, JARENA_CHUNK);
	(void)madvise(c, JARENA_CHUNK, MADV_DONTNEED);
	ASAN_POISON_MEMORY_REGION(c, JARENA_CHUNK);
	pthread_mutex_lock(&jarena_mu);
	jarena_cold[jarena_n_cold++] = c;
	pthread_mutex_unlock(&jarena_mu);
}

static void jarena_chunk_give(struct jarena_chunk *c)
{
	int warm;

	pthread_mutex_lock(&jarena_mu);
	warm = jarena_n_warm < JARENA_WARM;
	if (warm)
		jarena_warm[jarena_n_warm++] = c;
	pthread_mutex_unlock(&jarena_mu);
	if (warm)
		ASAN_POISON_MEMORY_REGION(c, JARENA_CHUNK);
	else
		jarena_chunk_cool(c);
}

static void *jarena_alloc(struct jarena *a, size_t n)
{
	size_t need = (n + JARENA_GAP + JARENA_ALIGN - 1) & ~(size_t)(JARENA_ALIGN - 1);
	char *p;

	if ((size_t)(a->end - a->cur) < need) {
		struct jarena_chunk *c = jarena_chunk_take();

		if (!c)
			return NULL;
		c->next = a->chunks;
		a->chunks = c;
		a->cur = (char *)(c + 1);
		a->end = (char *)c + JARENA_CHUNK;
	}
	p = a->cur;
	a->cur += need;
	a->used += need;
	ASAN_UNPOISON_MEMORY_REGION(p, n);
	return p;
}

static void *jarena_malloc_hook(size_t n)
{
	struct jarena *a = jarena_cur;
	void *p;

	if (a && n && n <= JARENA_BIG && (p = jarena_alloc(a, n)))
		return p;
	if (a)
		a->n_malloc++;
	return malloc(n);
}

static void jarena_free_hook(void *p)
{
	if (!jarena_owns(p))
		free(p);
}

int jarena_install(void)
{
	void *m;
	cJSON_Hooks hooks = { jarena_malloc_hook, jarena_free_hook };

	if (jarena_base)
		return 0;
	jarena_warm = calloc(JARENA_NCHUNKS, sizeof *jarena_warm);
	jarena_cold = calloc(JARENA_NCHUNKS, sizeof *jarena_cold);
	m = mmap(NULL, JARENA_RANGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (!jarena_warm || !jarena_cold || m == MAP_FAILED) {
		free(jarena_warm);
		free(jarena_cold);
		jarena_warm = jarena_cold = NULL;
		if (m != MAP_FAILED)
			munmap(m, JARENA_RANGE);
		return -1;
	}
	jarena_base = m;
	cJSON_InitHooks(&hooks);
	return 0;
}

struct jarena *jarena_new(void)
{
	struct jarena_chunk *c;
	struct jarena *a;

	if (!jarena_base || !(c = jarena_chunk_take()))
		return NULL;
	a = (struct jarena *)(c + 1);
	ASAN_UNPOISON_MEMORY_REGION(a, sizeof *a);
	a->chunks = c;
	a->cur = (char *)(c + 1) + ((sizeof *a + JARENA_GAP + JARENA_ALIGN - 1) & ~(size_t)(JARENA_ALIGN - 1));
	a->end = (char *)c + JARENA_CHUNK;
	a->used = 0;
	a->n_malloc = 0;
	return a;
}

void jarena_enter(struct jarena *a)
{
	jarena_cur = a;
}

void jarena_leave(void)
{
	jarena_cur = NULL;
}

void jarena_release(struct jarena *a)
{
	struct jarena_chunk *c, *next;

	if (!a)
		return;
	if (jarena_cur == a)
		jarena_cur = NULL;
	/* the struct lives in the last chunk of the list: read it first */
	for (c = a->chunks; c; c = next) {
		next = c->next;
		jarena_chunk_give(c);
	}
}

void jarena_trim(void)
{
	struct jarena_chunk *c;

	for (;;) {
		pthread_mutex_lock(&jarena_mu);
		c = jarena_n_warm ? jarena_warm[--jarena_n_warm] : NULL;
		pthread_mutex_unlock(&jarena_mu);
		if (!c)
			return;
		jarena_chunk_cool(c);
	}
}

int jarena_pure(const struct jarena *a)
{
	return a && !a->n_malloc;
}

size_t jarena_used(const struct jarena *a)
{
	return a ? a->used : 0;
}
