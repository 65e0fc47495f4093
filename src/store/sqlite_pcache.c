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
 * exactly as without this layer. Every other call is passed through unchanged.
 *
 * The pages' memory comes from one region mapped at install, 2 MiB-aligned and asked
 * for huge pages (store_table_alloc; where the kernel refuses them, the same region in
 * 4 KiB pages). A growing cache took each page from the heap: on the payments load
 * sysmalloc (the writer thread's arena grown a few pages at a time) and first-touch
 * page faults were about 13 % of the writer's samples. SQLite's allocator is wrapped
 * (SQLITE_CONFIG_MALLOC): an allocation of a page's size (a 4 KiB page and its
 * headers, SQLITE_CONFIG_PCACHE_HDRSZ) takes a slot of the region, anything else and
 * pages past the region's end go to SQLite's own allocator. The page cache itself
 * (pcache1) is unchanged, and with it each connection's cache_size bound: the region
 * only says where a page's bytes live. SQLITE_CONFIG_PAGECACHE was not used: its
 * buffer is written whole at start (every slot linked), and once nearly used up every
 * cache stops growing below its cache_size.
 *
 * The region's memory is faulted in ahead of use by a thread of its own
 * ("paycore-pcwarm", nice +10, started by the first page taken from the region), at
 * most STORE_PCACHE_WARM_AHEAD_BYTES past the pages handed out: the first touch of a
 * huge page zeroes 2 MiB, and it was the writer's (7-9 % of its samples on the
 * payments load). See "the region faulted in ahead of use" below. */
#include "store/sqlite_pcache.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "paycore/limits.h"
#include "store/store_bloom.h"

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

/* ---- the pages' region ---- */

#define ARENA_PAGE_BYTES 4096u          /* the store's page size (SQLite's default) */
#define ARENA_HUGE_PAGE_BYTES (2u * 1024 * 1024)

typedef struct arena_slot {
    struct arena_slot *next;
} arena_slot_t;

static struct {
    sqlite3_mem_methods heap;   /* SQLite's own allocator: all but pages, and pages past the region */
    char *start;                /* the region: [start, end), slots of slot_bytes */
    char *end;
    char *fresh;                /* never handed out from here on (untouched memory) */
    size_t slot_bytes;          /* a page and its headers, rounded to 8 */
    arena_slot_t *free_slots;   /* handed out once and given back */
    pthread_mutex_t mutex;      /* fresh, free_slots, slots_used, warm_mark_bytes */
    uint64_t slots_used;
    size_t warm_mark_bytes;     /* the warmer is asked again once fresh is this far into the region */
    atomic_uint_fast64_t heap_pages; /* pages the region had no room for */
} arena = {.mutex = PTHREAD_MUTEX_INITIALIZER};

static bool arena_holds(const void *p) { return (const char *)p >= arena.start && (const char *)p < arena.end; }

static bool arena_sized(int bytes) {
    return arena.start != NULL && bytes > (int)ARENA_PAGE_BYTES && (size_t)bytes <= arena.slot_bytes;
}

/* ---- the region faulted in ahead of use ----
 * A slot's first touch faults its memory in: in a huge-page region the kernel zeroes
 * 2 MiB there and then, inside the writer's batch (7-9 % of the writer's samples on the
 * payments load, clear_page under do_huge_pmd_anonymous_page). A thread of its own,
 * "paycore-pcwarm" at nice +WARM_NICE, faults the region in ahead of arena.fresh instead,
 * up to STORE_PCACHE_WARM_AHEAD_BYTES past it (rounded up to a whole huge page), asked
 * by arena_take each time fresh has moved half that distance: the region's resident
 * size runs at most that far ahead of its use.
 * - It starts at the first ask (a process that never caches a page never has it); a
 *   failed start leaves the slots to be faulted in by whoever takes them, as before.
 * - It holds no lock while it faults memory in or sleeps (but below): taking a slot
 *   never waits for it. At exit it stops with the process, in the middle of
 *   nothing that anyone waits for (the region is never unmapped).
 * - fork: the thread ends before (pthread_atfork; at most one 2 MiB piece to finish),
 *   so a process that had no other thread forks single-threaded as before (a child
 *   that starts threads after a multi-threaded fork is refused under ThreadSanitizer,
 *   and the tests fork such children); the next ask, in parent or child, starts a
 *   new one. Only a test program forks: the server never does.
 * - Faulting memory changes no byte in it: MADV_POPULATE_WRITE (Linux 5.14) maps pages
 *   writable without writing, whoever uses them meanwhile. Where the kernel refuses it
 *   (EINVAL) each 4 KiB page wholly past fresh gets an atomic add of zero, under
 *   arena.mutex so that no slot there is handed out meanwhile (a take may then wait
 *   for one fault, one it would otherwise have taken itself). */
#define WARM_NICE 10
#define WARM_SMALL_PAGE_BYTES 4096u

static struct {
    pthread_mutex_t mutex;
    pthread_cond_t wake;   /* the thread: target moved past warmed */
    pthread_cond_t idle;   /* store_sqlite_pcache_warm_wait: warmed reached target */
    char *target;          /* fault the region in up to here */
    char *warmed;          /* faulted in below here (or passed: fresh had gone past it) */
    char *fresh_seen;      /* arena.fresh at the last ask: memory below it is in use */
    bool started;          /* the thread's start was tried (since the last fork) */
    bool running;
    bool stopping;         /* a fork is waiting for the thread to end */
    pthread_t thread;
    bool populate_refused; /* the kernel has no MADV_POPULATE_WRITE: touch pages instead */
    bool failure_logged;
} warmer = {.mutex = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .idle = PTHREAD_COND_INITIALIZER};

static pthread_once_t warmer_fork_once = PTHREAD_ONCE_INIT;

/* Ends the thread; warmer.mutex stays held across the fork, so that no ask starts
 * another meanwhile (started stays true until after it). */
static void warmer_fork_prepare(void) {
    pthread_mutex_lock(&warmer.mutex);
    if (!warmer.running) return;
    warmer.stopping = true;
    pthread_cond_signal(&warmer.wake);
    pthread_mutex_unlock(&warmer.mutex);
    pthread_join(warmer.thread, NULL);
    pthread_mutex_lock(&warmer.mutex);
    warmer.running = false;
    warmer.stopping = false;
    pthread_cond_broadcast(&warmer.idle); /* a waiter sees it stopped */
}

/* The next ask starts a thread again. */
static void warmer_fork_parent(void) {
    warmer.started = false;
    pthread_mutex_unlock(&warmer.mutex);
}

/* Likewise; no thread of the parent waits on the conditions here. */
static void warmer_fork_child(void) {
    pthread_cond_init(&warmer.wake, NULL);
    pthread_cond_init(&warmer.idle, NULL);
    warmer.started = false;
    pthread_mutex_unlock(&warmer.mutex);
}

static void warmer_fork_register(void) {
    (void)pthread_atfork(warmer_fork_prepare, warmer_fork_parent, warmer_fork_child);
}

static void warmer_log_failure(const char *what, int error) {
    if (warmer.failure_logged) return;
    warmer.failure_logged = true;
    fprintf(stderr, "{\"level\":\"notice\",\"msg\":\"store: page cache region not faulted in ahead: %s\","
                    "\"errno\":%d}\n", what, error);
}

/* Faults [from, to) in without changing a byte; 'from' is 4 KiB-aligned. */
static void region_fault_in(char *from, char *to) {
    if (!warmer.populate_refused) {
        if (madvise(from, (size_t)(to - from), MADV_POPULATE_WRITE) == 0) return;
        if (errno != EINVAL) { /* out of memory, say: the taker faults it in, as before */
            warmer_log_failure("madvise(MADV_POPULATE_WRITE) failed", errno);
            return;
        }
        warmer.populate_refused = true; /* a kernel before 5.14 */
    }
    for (char *page = from; page < to; page += WARM_SMALL_PAGE_BYTES) {
        pthread_mutex_lock(&arena.mutex);
        if (page >= arena.fresh) (void)__atomic_fetch_add(page, 0, __ATOMIC_RELAXED); /* never handed out */
        pthread_mutex_unlock(&arena.mutex);
    }
}

static char *small_page_floor(char *p) { return p - (uintptr_t)p % WARM_SMALL_PAGE_BYTES; }

/* The next piece to fault in, at most to the next huge-page boundary; called with
 * warmer.mutex held and warmed below target. */
static char *warm_piece_end(char *from) {
    char *huge_floor = from - (uintptr_t)from % ARENA_HUGE_PAGE_BYTES;
    size_t piece_bytes = (size_t)(huge_floor - from) + ARENA_HUGE_PAGE_BYTES;
    return (size_t)(warmer.target - from) < piece_bytes ? warmer.target : from + piece_bytes;
}

static void *warmer_main(void *unused) {
    (void)unused;
    pthread_setname_np(pthread_self(), "paycore-pcwarm"); /* top, perf */
    (void)setpriority(PRIO_PROCESS, (id_t)gettid(), WARM_NICE); /* refused: off the writer all the same */
    pthread_mutex_lock(&warmer.mutex);
    for (;;) { /* ends only before a fork (or with the process) */
        while (!warmer.stopping && warmer.warmed >= warmer.target) {
            pthread_cond_broadcast(&warmer.idle);
            pthread_cond_wait(&warmer.wake, &warmer.mutex);
        }
        if (warmer.stopping) break;
        char *in_use_floor = small_page_floor(warmer.fresh_seen);
        char *from = warmer.warmed > in_use_floor ? warmer.warmed : in_use_floor;
        char *to = warm_piece_end(from);
        pthread_mutex_unlock(&warmer.mutex);
        region_fault_in(from, to);
        pthread_mutex_lock(&warmer.mutex);
        if (to > warmer.warmed) warmer.warmed = to;
    }
    pthread_mutex_unlock(&warmer.mutex);
    return NULL;
}

/* Called with warmer.mutex held, once a process (and once after each fork). The
 * thread is joinable only for the fork's sake: nothing else waits for its end. */
static bool warmer_start(void) {
    (void)pthread_once(&warmer_fork_once, warmer_fork_register);
    int error = pthread_create(&warmer.thread, NULL, warmer_main, NULL);
    if (error != 0) warmer_log_failure("thread start failed", error);
    return error == 0;
}

/* 'fresh' has moved half the distance since the last ask: the thread is to fault the
 * region in up to the distance past it, rounded up to a huge page (the region starts
 * on one), at most to the region's end. */
static void warmer_ask(char *fresh) {
    size_t ahead_bytes = (size_t)(fresh - arena.start) + STORE_PCACHE_WARM_AHEAD_BYTES;
    ahead_bytes = (ahead_bytes + ARENA_HUGE_PAGE_BYTES - 1) / ARENA_HUGE_PAGE_BYTES * ARENA_HUGE_PAGE_BYTES;
    char *target = ahead_bytes < (size_t)(arena.end - arena.start) ? arena.start + ahead_bytes : arena.end;
    pthread_mutex_lock(&warmer.mutex);
    if (warmer.warmed == NULL) warmer.warmed = arena.start;
    if (target > warmer.target) warmer.target = target;
    if (fresh > warmer.fresh_seen) warmer.fresh_seen = fresh;
    if (!warmer.started) {
        warmer.started = true;
        warmer.running = warmer_start();
    }
    if (warmer.running) pthread_cond_signal(&warmer.wake);
    pthread_mutex_unlock(&warmer.mutex);
}

static void *arena_take(void) {
    char *warm_from = NULL;
    pthread_mutex_lock(&arena.mutex);
    void *slot = arena.free_slots;
    if (slot != NULL) {
        arena.free_slots = arena.free_slots->next;
    } else if ((size_t)(arena.end - arena.fresh) >= arena.slot_bytes) {
        slot = arena.fresh;
        arena.fresh += arena.slot_bytes;
        size_t fresh_bytes = (size_t)(arena.fresh - arena.start);
        if (fresh_bytes >= arena.warm_mark_bytes) {
            arena.warm_mark_bytes = fresh_bytes + STORE_PCACHE_WARM_AHEAD_BYTES / 2;
            warm_from = arena.fresh;
        }
    }
    if (slot != NULL) arena.slots_used++;
    pthread_mutex_unlock(&arena.mutex);
    if (warm_from != NULL) warmer_ask(warm_from);
    return slot;
}

static void arena_give(void *p) {
    arena_slot_t *slot = p;
    pthread_mutex_lock(&arena.mutex);
    slot->next = arena.free_slots;
    arena.free_slots = slot;
    arena.slots_used--;
    pthread_mutex_unlock(&arena.mutex);
}

/* ---- small blocks kept by each thread ----
 * SQLite (built without its lookaside allocator here) takes a statement's cursors and
 * the records it builds from the heap and gives them back when the statement ends:
 * about 110 malloc/free pairs per payment on the writer thread, ~280 instructions a
 * pair through SQLite's allocator and glibc, ~8 % of its instructions. A block of a
 * size class, given back, waits in its thread's list for the next request of that
 * class (a pop), at most SMALL_KEPT_MAX a class; a thread's lists go back to the heap
 * when it ends. The blocks are the heap's own (heap.xMalloc of the class's size; a
 * block given back joins the largest class its size serves), so xSize, xRealloc and
 * xFree of the heap work on them unchanged. */
#define SMALL_CLASSES 6
#define SMALL_KEPT_MAX 64
static const int small_class_bytes[SMALL_CLASSES] = {64, 128, 256, 512, 1024, 2048};

typedef struct small_block {
    struct small_block *next;
} small_block_t;

typedef struct {
    small_block_t *head[SMALL_CLASSES];
    uint32_t count[SMALL_CLASSES];
    bool registered; /* the thread's exit drains them (small_key) */
} small_lists_t;

static _Thread_local small_lists_t small_lists;
static pthread_key_t small_key;
static pthread_once_t small_key_once = PTHREAD_ONCE_INIT;

static int small_class(int bytes) {
    for (int c = 0; c < SMALL_CLASSES; c++) {
        if (bytes <= small_class_bytes[c]) return c;
    }
    return -1;
}

static void small_lists_drain(void *unused) {
    (void)unused;
    for (int c = 0; c < SMALL_CLASSES; c++) {
        while (small_lists.head[c] != NULL) {
            small_block_t *block = small_lists.head[c];
            small_lists.head[c] = block->next;
            arena.heap.xFree(block);
        }
        small_lists.count[c] = 0;
    }
}

static void small_key_make(void) { (void)pthread_key_create(&small_key, small_lists_drain); }

/* A thread's first kept block: its exit is to drain the lists (the key's value must
 * be non-NULL for the destructor to run). */
static bool small_register(void) {
    if (small_lists.registered) return true;
    (void)pthread_once(&small_key_once, small_key_make);
    small_lists.registered = pthread_setspecific(small_key, &small_lists) == 0;
    return small_lists.registered;
}

static void *small_take(int c) {
    small_block_t *block = small_lists.head[c];
    if (block == NULL) return arena.heap.xMalloc(small_class_bytes[c]);
    small_lists.head[c] = block->next;
    small_lists.count[c]--;
    return block;
}

/* The largest class a block of 'bytes' can serve; -1: smaller than every class. */
static int small_class_served(int bytes) {
    int c = SMALL_CLASSES - 1;
    while (c >= 0 && small_class_bytes[c] > bytes) c--;
    return c;
}

/* Keeps a heap block in the list of the largest class it can serve; false: the caller
 * frees it. */
static bool small_keep(void *p) {
    int c = small_class_served(arena.heap.xSize(p));
    if (c < 0 || small_lists.count[c] >= SMALL_KEPT_MAX) return false;
    if (!small_register()) return false;
    small_block_t *block = p;
    block->next = small_lists.head[c];
    small_lists.head[c] = block;
    small_lists.count[c]++;
    return true;
}

static void *arena_malloc(int bytes) {
    if (arena_sized(bytes)) {
        void *slot = arena_take();
        if (slot != NULL) return slot;
        atomic_fetch_add_explicit(&arena.heap_pages, 1, memory_order_relaxed);
    }
    int c = bytes > 0 ? small_class(bytes) : -1;
    return c >= 0 ? small_take(c) : arena.heap.xMalloc(bytes);
}

static void arena_free(void *p) {
    if (arena_holds(p)) arena_give(p);
    else if (p != NULL && !small_keep(p)) arena.heap.xFree(p);
}

static void *arena_realloc(void *p, int bytes) {
    if (!arena_holds(p)) return arena.heap.xRealloc(p, bytes);
    if (bytes > 0 && (size_t)bytes <= arena.slot_bytes) return p;
    void *moved = arena.heap.xMalloc(bytes);
    if (moved == NULL) return NULL;
    memcpy(moved, p, arena.slot_bytes);
    arena_give(p);
    return moved;
}

static int arena_size(void *p) { return arena_holds(p) ? (int)arena.slot_bytes : arena.heap.xSize(p); }

static int arena_roundup(int bytes) {
    if (arena_sized(bytes)) return (int)arena.slot_bytes;
    int c = bytes > 0 ? small_class(bytes) : -1;
    return c >= 0 ? small_class_bytes[c] : arena.heap.xRoundup(bytes);
}

static int arena_init(void *arg) {
    (void)arg;
    return arena.heap.xInit(arena.heap.pAppData);
}

static void arena_shutdown(void *arg) {
    (void)arg;
    arena.heap.xShutdown(arena.heap.pAppData);
}

/* Maps the region for 'pages' pages and puts it under SQLite's allocator; false (and
 * SQLite's allocator unchanged) when SQLite has started or no region could be mapped. */
static bool arena_install(uint32_t pages) {
    int header_bytes = 0;
    if (sqlite3_config(SQLITE_CONFIG_GETMALLOC, &arena.heap) != SQLITE_OK) return false;
    if (sqlite3_config(SQLITE_CONFIG_PCACHE_HDRSZ, &header_bytes) != SQLITE_OK || header_bytes <= 0) return false;
    size_t slot_bytes = (ARENA_PAGE_BYTES + (size_t)header_bytes + 7) & ~(size_t)7;
    size_t region_bytes = slot_bytes * pages;
    region_bytes = (region_bytes + ARENA_HUGE_PAGE_BYTES - 1) / ARENA_HUGE_PAGE_BYTES * ARENA_HUGE_PAGE_BYTES;
    char *region = store_table_alloc(region_bytes); /* 2 MiB-aligned, MADV_HUGEPAGE (or 4 KiB pages) */
    if (region == NULL) return false;
    sqlite3_mem_methods wrapped = {
        .xMalloc = arena_malloc,
        .xFree = arena_free,
        .xRealloc = arena_realloc,
        .xSize = arena_size,
        .xRoundup = arena_roundup,
        .xInit = arena_init,
        .xShutdown = arena_shutdown,
        .pAppData = NULL,
    };
    arena.slot_bytes = slot_bytes;
    arena.start = arena.fresh = region;
    arena.end = region + region_bytes / slot_bytes * slot_bytes;
    if (sqlite3_config(SQLITE_CONFIG_MALLOC, &wrapped) == SQLITE_OK) return true;
    arena.start = arena.end = arena.fresh = NULL;
    store_table_free(region, region_bytes);
    return false;
}

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

static pthread_mutex_t install_mutex = PTHREAD_MUTEX_INITIALIZER;
static bool install_tried;  /* under install_mutex: only the first call configures SQLite */
static bool install_done;

/* The layer over SQLite's page cache as it is now (its default: SQLite has not started). */
static bool layer_install(void) {
    sqlite3_pcache_methods2 methods;
    if (sqlite3_config(SQLITE_CONFIG_GETPCACHE2, &methods) != SQLITE_OK || methods.iVersion < 1) return false;
    if (methods.xCreate == pcache_create) return true; /* never over itself */
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

/* SQLite is configured once: a later call (another subsystem's start, a second store)
 * answers as the first did and changes nothing, so no methods are replaced under the
 * connections opened meanwhile (sqlite3_config is not safe once SQLite runs). */
bool store_sqlite_pcache_install_with(uint32_t arena_pages) {
    pthread_mutex_lock(&install_mutex);
    if (!install_tried) {
        install_tried = true;
        install_done = layer_install();
        if (install_done && arena_pages > 0) (void)arena_install(arena_pages); /* refused: pages from the heap */
    }
    bool done = install_done;
    pthread_mutex_unlock(&install_mutex);
    return done;
}

bool store_sqlite_pcache_install(void) { return store_sqlite_pcache_install_with(STORE_PCACHE_ARENA_PAGES); }

uint64_t store_sqlite_pcache_swaps(void) { return atomic_load_explicit(&swaps_renumbered, memory_order_relaxed); }

store_sqlite_pcache_arena_stats_t store_sqlite_pcache_arena_stats(void) {
    store_sqlite_pcache_arena_stats_t stats = {0};
    pthread_mutex_lock(&arena.mutex);
    stats.slots = arena.slot_bytes > 0 ? (uint64_t)((size_t)(arena.end - arena.start) / arena.slot_bytes) : 0;
    stats.slots_touched = arena.slot_bytes > 0 ? (uint64_t)((size_t)(arena.fresh - arena.start) / arena.slot_bytes) : 0;
    stats.slots_used = arena.slots_used;
    pthread_mutex_unlock(&arena.mutex);
    stats.heap_pages = atomic_load_explicit(&arena.heap_pages, memory_order_relaxed);
    pthread_mutex_lock(&warmer.mutex);
    stats.warmed_bytes = warmer.warmed != NULL ? (uint64_t)(warmer.warmed - arena.start) : 0;
    stats.warmer_running = warmer.running;
    pthread_mutex_unlock(&warmer.mutex);
    return stats;
}

void store_sqlite_pcache_warm_by_touch(void) {
    pthread_mutex_lock(&warmer.mutex);
    warmer.populate_refused = true; /* the thread, started later, reads it unlocked */
    pthread_mutex_unlock(&warmer.mutex);
}

void store_sqlite_pcache_warm_wait(void) {
    pthread_mutex_lock(&warmer.mutex);
    while (warmer.running && warmer.warmed < warmer.target) pthread_cond_wait(&warmer.idle, &warmer.mutex);
    pthread_mutex_unlock(&warmer.mutex);
}
