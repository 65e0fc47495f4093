/* store/sqlite_pcache.h: SQLite's page cache with the B-tree's transient page number
 * kept beside the others (sqlite_pcache.c). Installed once, before SQLite starts. */
#ifndef PAYCORE_STORE_SQLITE_PCACHE_H
#define PAYCORE_STORE_SQLITE_PCACHE_H

#include <stdbool.h>
#include <stdint.h>

/* Pages of 4 KiB the region holds: the writer's cache bound (cache_size=-131072, 128
 * MiB) and as much again for the readers and the id index; past it pages come from
 * the heap. Mapped at install; faulted in as pages are cached, by a thread of its own
 * ("paycore-pcwarm", started at the first page cached) at most
 * STORE_PCACHE_WARM_AHEAD_BYTES ahead of the pages handed out (sqlite_pcache.c). */
#define STORE_PCACHE_ARENA_PAGES 65536u

/* Wraps SQLite's default page cache for every connection opened afterwards, its pages
 * in one huge-page region of STORE_PCACHE_ARENA_PAGES; false (and SQLite's own cache
 * unchanged) when SQLite has already started. Only the first call configures SQLite:
 * any later one returns what the first did and changes nothing. */
bool store_sqlite_pcache_install(void);
/* The same with a region of 'arena_pages' (0: none, pages from the heap): for tests. */
bool store_sqlite_pcache_install_with(uint32_t arena_pages);

/* Page swaps through the transient number renumbered so far (all connections): for tests. */
uint64_t store_sqlite_pcache_swaps(void);

typedef struct {
    uint64_t slots;          /* pages the region holds (0: no region) */
    uint64_t slots_touched;  /* handed out at least once: the region's memory in use or kept */
    uint64_t slots_used;     /* holding a page now */
    uint64_t heap_pages;     /* page allocations the full region sent to the heap */
    uint64_t warmed_bytes;   /* the region's first bytes faulted in ahead of use (or passed) */
    bool warmer_running;     /* the thread faulting them in has started */
} store_sqlite_pcache_arena_stats_t;
store_sqlite_pcache_arena_stats_t store_sqlite_pcache_arena_stats(void);

/* Returns once the warmer thread has faulted the region in as far as it was last
 * asked to, at once if it never started: for tests. */
void store_sqlite_pcache_warm_wait(void);
/* The warmer touches a byte a 4 KiB page, as where the kernel refuses
 * MADV_POPULATE_WRITE: for tests, before the first page is taken from the region. */
void store_sqlite_pcache_warm_by_touch(void);

#endif
