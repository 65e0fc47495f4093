/* store/sqlite_pcache.h: SQLite's page cache with the B-tree's transient page number
 * kept beside the others (sqlite_pcache.c). Installed once, before SQLite starts. */
#ifndef PAYCORE_STORE_SQLITE_PCACHE_H
#define PAYCORE_STORE_SQLITE_PCACHE_H

#include <stdbool.h>
#include <stdint.h>

/* Wraps SQLite's default page cache for every connection opened afterwards; false
 * (and SQLite's own cache unchanged) when SQLite has already started. */
bool store_sqlite_pcache_install(void);

/* Page swaps through the transient number renumbered so far (all connections): for tests. */
uint64_t store_sqlite_pcache_swaps(void);

#endif
