/* store/sqlite_pcache.c: SQLite's default page cache, with one page number moved.
 *
 * When a B-tree split leaves its new sibling pages out of order, SQLite swaps two of
 * them through a transient page number, the one after the lock-byte page
 * (1 GiB / page size + 1: 262145 with 4 KiB pages). The default cache remembers the
 * largest number it ever held, and every COMMIT drops the cached pages past the end
 * of the file: with that bound far past the end, the drop visits every slot of the
 * cache's hash table and every cached page. Measured on the payments load: about a
 * tenth of the writer thread's CPU at 12k cached pages, and more as the cache fills.
 *
 * This layer gives the default cache, for the transient number, the number after the
 * largest one it holds (the swap lasts three renumberings within one split; nothing
 * else is fetched meanwhile), so its bound stays at the end of the file and the drop
 * at COMMIT looks at a slot or two. Should any other call name that stand-in number
 * while a page sits there, the page first moves to SQLite's own transient number,
 * exactly as without this layer. Every other call is passed through unchanged. */
#include "store/sqlite_pcache.h"

#include <sqlite3.h>
#include <stdatomic.h>
#include <stdlib.h>

/* SQLite's lock byte (PENDING_BYTE): the page after the one holding it is the
 * transient number of a swap (btree.c, balance_nonroot). */
#define LOCK_BYTE_OFFSET 0x40000000u

typedef struct {
    sqlite3_pcache *inner;
    unsigned key_swap;          /* SQLite's transient number for this page size */
    unsigned key_max;           /* no page the inner cache holds has a larger number, the swap's aside */
    unsigned key_swap_inner;    /* 0: no page is at key_swap; else the number the inner cache has it under */
    sqlite3_pcache_page *swap_page;
} pcache_t;

static sqlite3_pcache_methods2 inner_methods;
static atomic_uint_fast64_t swaps_renumbered;

static int pcache_init(void *arg) {
    (void)arg;
    return inner_methods.xInit ? inner_methods.xInit(inner_methods.pArg) : SQLITE_OK;
}

static void pcache_shutdown(void *arg) {
    (void)arg;
    if (inner_methods.xShutdown) inner_methods.xShutdown(inner_methods.pArg);
}

static sqlite3_pcache *pcache_create(int page_bytes, int extra_bytes, int purgeable) {
    pcache_t *cache = sqlite3_malloc(sizeof(*cache));
    if (cache == NULL) return NULL;
    cache->inner = inner_methods.xCreate(page_bytes, extra_bytes, purgeable);
    if (cache->inner == NULL) {
        sqlite3_free(cache);
        return NULL;
    }
    cache->key_swap = page_bytes > 0 ? LOCK_BYTE_OFFSET / (unsigned)page_bytes + 1 : 0;
    cache->key_max = 0;
    cache->key_swap_inner = 0;
    cache->swap_page = NULL;
    return (sqlite3_pcache *)cache;
}

static void pcache_cachesize(sqlite3_pcache *base, int pages) {
    inner_methods.xCachesize(((pcache_t *)base)->inner, pages);
}

static int pcache_pagecount(sqlite3_pcache *base) { return inner_methods.xPagecount(((pcache_t *)base)->inner); }

/* No page at the transient number any more, or none tracked: the inner cache names
 * any page there by SQLite's own number, as without this layer. */
static void swap_forget(pcache_t *cache) {
    cache->key_swap_inner = 0;
    cache->swap_page = NULL;
}

/* The page at the transient number moved to SQLite's own number for it (the inner
 * cache then holds it as it would without this layer), and forgotten. */
static void swap_to_own_number(pcache_t *cache) {
    if (cache->swap_page == NULL) return;
    inner_methods.xRekey(cache->inner, cache->swap_page, cache->key_swap_inner, cache->key_swap);
    swap_forget(cache);
}

/* 'key' names a real page: if the stand-in number is that one, the swapped page
 * leaves it first. */
static void swap_make_way(pcache_t *cache, unsigned key) {
    if (cache->swap_page != NULL && key == cache->key_swap_inner && key != cache->key_swap) swap_to_own_number(cache);
}

static void key_note(pcache_t *cache, unsigned key) {
    if (key != cache->key_swap && key > cache->key_max) cache->key_max = key;
}

static sqlite3_pcache_page *pcache_fetch(sqlite3_pcache *base, unsigned key, int create) {
    pcache_t *cache = (pcache_t *)base;
    swap_make_way(cache, key);
    unsigned key_inner = key == cache->key_swap && cache->swap_page != NULL ? cache->key_swap_inner : key;
    sqlite3_pcache_page *page = inner_methods.xFetch(cache->inner, key_inner, create);
    if (page != NULL) key_note(cache, key);
    return page;
}

static void pcache_unpin(sqlite3_pcache *base, sqlite3_pcache_page *page, int discard) {
    pcache_t *cache = (pcache_t *)base;
    if (page == cache->swap_page) {
        if (discard) swap_forget(cache);
        else swap_to_own_number(cache); /* kept unpinned: under SQLite's number, untracked */
    }
    inner_methods.xUnpin(cache->inner, page, discard);
}

static void pcache_rekey(sqlite3_pcache *base, sqlite3_pcache_page *page, unsigned key_old, unsigned key_new) {
    pcache_t *cache = (pcache_t *)base;
    unsigned inner_old = key_old;
    if (page == cache->swap_page) { /* leaving the transient number */
        inner_old = cache->key_swap_inner;
        swap_forget(cache);
    }
    swap_make_way(cache, key_new);
    unsigned inner_new = key_new;
    if (key_new == cache->key_swap && cache->swap_page == NULL && cache->key_max + 1 < cache->key_swap) {
        inner_new = cache->key_max + 1; /* free: no page held is numbered above key_max */
        cache->key_swap_inner = inner_new;
        cache->swap_page = page;
        atomic_fetch_add_explicit(&swaps_renumbered, 1, memory_order_relaxed);
    }
    inner_methods.xRekey(cache->inner, page, inner_old, inner_new);
    key_note(cache, key_new);
}

/* Drops every page numbered 'key_limit' or above (a page at the transient number
 * too, as SQLite's own number is past any limit it truncates to). */
static void pcache_truncate(sqlite3_pcache *base, unsigned key_limit) {
    pcache_t *cache = (pcache_t *)base;
    swap_to_own_number(cache);
    inner_methods.xTruncate(cache->inner, key_limit);
    if (key_limit > 0 && cache->key_max >= key_limit) cache->key_max = key_limit - 1;
}

static void pcache_destroy(sqlite3_pcache *base) {
    pcache_t *cache = (pcache_t *)base;
    inner_methods.xDestroy(cache->inner);
    sqlite3_free(cache);
}

static void pcache_shrink(sqlite3_pcache *base) { inner_methods.xShrink(((pcache_t *)base)->inner); }

bool store_sqlite_pcache_install(void) {
    sqlite3_pcache_methods2 methods;
    if (sqlite3_config(SQLITE_CONFIG_GETPCACHE2, &methods) != SQLITE_OK || methods.iVersion < 1) return false;
    inner_methods = methods;
    sqlite3_pcache_methods2 layer = {
        .iVersion = 1,
        .pArg = NULL,
        .xInit = pcache_init,
        .xShutdown = pcache_shutdown,
        .xCreate = pcache_create,
        .xCachesize = pcache_cachesize,
        .xPagecount = pcache_pagecount,
        .xFetch = pcache_fetch,
        .xUnpin = pcache_unpin,
        .xRekey = pcache_rekey,
        .xTruncate = pcache_truncate,
        .xDestroy = pcache_destroy,
        .xShrink = pcache_shrink,
    };
    return sqlite3_config(SQLITE_CONFIG_PCACHE2, &layer) == SQLITE_OK;
}

uint64_t store_sqlite_pcache_swaps(void) { return atomic_load_explicit(&swaps_renumbered, memory_order_relaxed); }
