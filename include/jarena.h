/*
 * jarena.h - per-request memory for the cJSON trees of the ingestion path.
 *
 * Why: an /import body of 2000 events is ~30,000 cJSON nodes and strings.
 * With malloc, building and freeing them was half of the HTTP threads' time
 * (malloc, free, malloc_consolidate, heap growth and trimming: perf, see
 * docs/PERFORMANCE.md).  An arena hands them out by bumping a pointer and
 * gives them back all at once when the request is done.
 *
 * How: jarena_install() gives cJSON allocation hooks that serve the
 * calling thread's current arena (jarena_enter .. jarena_leave) and plain
 * malloc otherwise.  Arena memory comes from one reserved address range,
 * so the free hook tells the two apart by address alone: freeing arena
 * memory is a no-op, anything else goes to free().  So trees may freely mix
 * both kinds (a node added by another thread, a string replaced with a
 * malloc'd one), and cJSON_Delete() works on every tree, before the arena
 * is released.
 *
 * Rules for callers:
 *   - memory that cJSON allocated while an arena was current must be freed
 *     through cJSON (cJSON_Delete, cJSON_free), never with free(), and must
 *     not be used after jarena_release() of its arena;
 *   - jarena_install() runs once, before any thread uses cJSON (it changes
 *     cJSON's global hooks).  Without it, jarena_new() returns NULL and
 *     jarena_enter(NULL) is a no-op: everything is malloc'd as before.
 * Allocations larger than JARENA_BIG, or made when the reserved range is
 * used up, are malloc'd (and freed) as usual.
 */
#ifndef MP_JARENA_H
#define MP_JARENA_H

#include <stddef.h>

#define JARENA_BIG (64 * 1024)

struct jarena;

/* Reserve the address range and install the cJSON hooks.  Returns 0, or
 * -1 when the range could not be reserved (arenas are then disabled and
 * cJSON keeps malloc).  Idempotent; not thread-safe. */
int jarena_install(void);

/* A new, empty arena; NULL when arenas are disabled or out of memory (the
 * caller goes on with malloc: jarena_enter(NULL) is valid). */
struct jarena *jarena_new(void);

/* cJSON allocations of the calling thread go to A (NULL: to malloc) until
 * jarena_leave().  Not nested. */
void jarena_enter(struct jarena *a);
void jarena_leave(void);

/* Give A's memory back (NULL-safe).  Every tree built in A is dead. */
void jarena_release(struct jarena *a);

/* Give the pages of every free chunk back to the kernel (an idle server;
 * thread-safe).  The chunks stay reusable. */
void jarena_trim(void);

/* 1 when every cJSON allocation made while A was current came from A (none
 * was too large or fell back to malloc): a tree built then, and changed
 * only through cJSON while A was current, holds no malloc'd memory and
 * needs no cJSON_Delete() before jarena_release().  0 for NULL. */
int jarena_pure(const struct jarena *a);

/* Bytes of arena memory handed out to A so far (tests, stats). */
size_t jarena_used(const struct jarena *a);

#endif
