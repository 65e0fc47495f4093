/* Goal: the page cache layer (store/sqlite_pcache.h) changes no byte SQLite reads or
 * writes: B-tree splits that swap pages through the transient number, in caches large
 * and small (pages recycled mid-transaction), with transactions and savepoints rolled
 * back, leave exactly the rows a model of them holds, and the file passes SQLite's
 * integrity check, read by a fresh connection as well.
 * Method: real SQLite files in WAL mode; random-key inserts (which split leaves out of
 * page order), updates that resize rows and deletes, against an in-memory model;
 * every row compared after each round and at the end. The layer's swap count shows
 * the renumbering ran.
 * The pages' region: the pages were taken from it, every one is given back when the
 * connections close, a second install changes nothing; and in a child process with a
 * region far smaller than the cache, pages past it come from the heap and the rows
 * are the same.
 * The region faulted in ahead: after slots are taken, the pages past the last one are
 * resident for at least half the warm-ahead bound and none is past the bound (mincore);
 * the thread ends before a fork (a child that starts threads after a multi-threaded
 * fork dies under ThreadSanitizer), and parent and child each start one again; the
 * same where pages are touched instead of MADV_POPULATE_WRITE; no byte of a slot
 * taken changes.
 * SQLite's small blocks: one given back is handed out again by the next request of
 * its size class on the same thread (no trip through the heap), with room for the
 * request; a thread keeps a bounded number and gives them back when it ends (the
 * sanitizer build's leak check sees any it kept). */
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "paycore/limits.h"
#include "store/sqlite_pcache.h"
#include "test.h"

#define KEYS 6000
#define ROUNDS 40
#define WRITES_PER_ROUND 400

static char dir[256], db_path[300];
static int32_t model[KEYS]; /* the row's value length, or -1: no row */

static void exec_ok(sqlite3 *db, const char *sql) {
    char *message = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &message) != SQLITE_OK) TEST_FAIL("%s: %s", sql, message);
}

static sqlite3 *db_open(int cache_pages) {
    sqlite3 *db = NULL;
    if (sqlite3_open(db_path, &db) != SQLITE_OK) TEST_FAIL("open %s: %s", db_path, sqlite3_errmsg(db));
    char sql[128];
    snprintf(sql, sizeof sql, "PRAGMA journal_mode=WAL; PRAGMA cache_size=%d;", cache_pages);
    exec_ok(db, sql);
    return db;
}

/* A key whose order is unrelated to its number: inserts land all over the tree. */
static void key_text(uint32_t key, char *out, size_t bytes) {
    snprintf(out, bytes, "%08x-%u", (unsigned)(key * 2654435761u), (unsigned)key);
}

/* The value stored for a key of a given length: its bytes derive from both. */
static void value_fill(uint32_t key, int32_t length, uint8_t *out) {
    for (int32_t i = 0; i < length; i++) out[i] = (uint8_t)(key * 31u + (uint32_t)i * 7u + (uint32_t)length);
}

static void row_put(sqlite3_stmt *put, uint32_t key, int32_t length) {
    static uint8_t value[3000];
    char text[32];
    key_text(key, text, sizeof text);
    value_fill(key, length, value);
    sqlite3_bind_text(put, 1, text, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(put, 2, value, length, SQLITE_TRANSIENT);
    ASSERT_EQ(sqlite3_step(put), SQLITE_DONE);
    sqlite3_reset(put);
}

static void row_delete(sqlite3_stmt *del, uint32_t key) {
    char text[32];
    key_text(key, text, sizeof text);
    sqlite3_bind_text(del, 1, text, -1, SQLITE_TRANSIENT);
    ASSERT_EQ(sqlite3_step(del), SQLITE_DONE);
    sqlite3_reset(del);
}

/* Every key's row as the model says: present with its bytes, or absent. */
static void rows_check(sqlite3 *db) {
    sqlite3_stmt *get;
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT v FROM t WHERE k = ?1", -1, &get, NULL), SQLITE_OK);
    static uint8_t expected[3000];
    int64_t present = 0;
    for (uint32_t key = 0; key < KEYS; key++) {
        char text[32];
        key_text(key, text, sizeof text);
        sqlite3_bind_text(get, 1, text, -1, SQLITE_TRANSIENT);
        int rc = sqlite3_step(get);
        if (model[key] < 0) {
            if (rc != SQLITE_DONE) TEST_FAIL("key %u: a row the model does not hold", key);
        } else {
            if (rc != SQLITE_ROW) TEST_FAIL("key %u: row missing", key);
            value_fill(key, model[key], expected);
            ASSERT_EQ(sqlite3_column_bytes(get, 0), model[key]);
            if (memcmp(sqlite3_column_blob(get, 0), expected, (size_t)model[key]) != 0) TEST_FAIL("key %u: bytes differ", key);
            present++;
        }
        sqlite3_reset(get);
    }
    sqlite3_finalize(get);
    sqlite3_stmt *count;
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &count, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(count), SQLITE_ROW);
    ASSERT_EQ(sqlite3_column_int64(count, 0), present);
    sqlite3_finalize(count);
}

static void integrity_ok(sqlite3 *db) {
    sqlite3_stmt *check;
    ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &check, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(check), SQLITE_ROW);
    ASSERT_STR_EQ((const char *)sqlite3_column_text(check, 0), "ok");
    sqlite3_finalize(check);
}

/* One round: writes in a transaction, some under a savepoint rolled back, and every
 * fifth round's whole transaction rolled back (the model keeps only what committed). */
static void round_run(sqlite3 *db, sqlite3_stmt *put, sqlite3_stmt *del, uint32_t round) {
    static int32_t staged[KEYS];
    memcpy(staged, model, sizeof model);
    exec_ok(db, "BEGIN");
    for (uint32_t i = 0; i < WRITES_PER_ROUND; i++) {
        bool savepoint = i % 50 == 10;
        static int32_t before[KEYS];
        if (savepoint) {
            memcpy(before, staged, sizeof staged);
            exec_ok(db, "SAVEPOINT s");
        }
        for (uint32_t j = 0; j < (savepoint ? 30u : 1u); j++) {
            uint32_t key = test_rand_below(KEYS);
            if (staged[key] >= 0 && test_rand_below(4) == 0) {
                row_delete(del, key);
                staged[key] = -1;
            } else {
                int32_t length = (int32_t)(1 + test_rand_below(test_rand_below(8) == 0 ? 2500 : 300));
                row_put(put, key, length);
                staged[key] = length;
            }
        }
        if (savepoint) {
            exec_ok(db, "ROLLBACK TO s; RELEASE s");
            memcpy(staged, before, sizeof staged);
        }
    }
    if (round % 5 == 4) {
        exec_ok(db, "ROLLBACK");
    } else {
        exec_ok(db, "COMMIT");
        memcpy(model, staged, sizeof model);
    }
}

static void run_with_cache(int cache_pages) {
    snprintf(dir, sizeof dir, "/tmp/paycore-test-pcache-XXXXXX");
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    snprintf(db_path, sizeof db_path, "%s/t.db", dir);
    for (uint32_t key = 0; key < KEYS; key++) model[key] = -1;
    uint64_t swaps_before = store_sqlite_pcache_swaps();
    sqlite3 *db = db_open(cache_pages);
    exec_ok(db, "CREATE TABLE t(k TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;"
                "CREATE TABLE n(id INTEGER PRIMARY KEY, k TEXT NOT NULL);"
                "CREATE INDEX n_k ON n(k);");
    sqlite3_stmt *put, *del;
    ASSERT_EQ(sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO t(k, v) VALUES(?1, ?2)", -1, &put, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_prepare_v2(db, "DELETE FROM t WHERE k = ?1", -1, &del, NULL), SQLITE_OK);
    for (uint32_t round = 0; round < ROUNDS; round++) {
        round_run(db, put, del, round);
        if (round % 8 == 7) rows_check(db);
    }
    sqlite3_finalize(put);
    sqlite3_finalize(del);
    rows_check(db);
    integrity_ok(db);
    ASSERT_EQ(sqlite3_close(db), SQLITE_OK);
    ASSERT_TRUE(store_sqlite_pcache_swaps() > swaps_before); /* splits renumbered through the layer */

    sqlite3 *fresh = db_open(-2000);
    rows_check(fresh);
    integrity_ok(fresh);
    ASSERT_EQ(sqlite3_close(fresh), SQLITE_OK);
    char command[400];
    snprintf(command, sizeof command, "rm -rf '%s'", dir);
    ASSERT_EQ(system(command), 0);
}

static void test_large_cache(void) { run_with_cache(-65536); }

/* 40 pages: pages leave the cache within one transaction and come back from the WAL. */
static void test_small_cache(void) { run_with_cache(40); }

/* Every page taken from the region was given back once no connection is open. */
static void arena_all_given_back(void) {
    store_sqlite_pcache_arena_stats_t stats = store_sqlite_pcache_arena_stats();
    ASSERT_TRUE(stats.slots > 0);
    ASSERT_TRUE(stats.slots_touched > 0);
    ASSERT_TRUE(stats.slots_touched <= stats.slots);
    ASSERT_EQ(stats.slots_used, 0);
}

/* The region of the default install holds a 64 MiB cache: no page went to the heap. */
static void test_arena_holds_the_cache(void) {
    arena_all_given_back();
    ASSERT_EQ(store_sqlite_pcache_arena_stats().heap_pages, 0);
}

/* A second install, with SQLite running and connections open: nothing changes (the
 * connection keeps its rows and the layer keeps renumbering). */
static void test_second_install(void) {
    store_sqlite_pcache_arena_stats_t before = store_sqlite_pcache_arena_stats();
    ASSERT_TRUE(store_sqlite_pcache_install());
    ASSERT_TRUE(store_sqlite_pcache_install_with(0));
    store_sqlite_pcache_arena_stats_t after = store_sqlite_pcache_arena_stats();
    ASSERT_EQ(after.slots, before.slots);
    run_with_cache(200);
    arena_all_given_back();
}

/* Waits for a child process, which must have passed (exit 0). */
static void child_passed(pid_t child) {
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
}

/* In a child (SQLite is configured once a process): the smallest region (one 2 MiB
 * piece, some 480 pages) under a 64 MiB cache, for a file of more pages than that.
 * The region is used up first, the pages past it come from the heap, the rows are
 * the same. */
static void test_small_region(void) {
    pid_t child = fork();
    ASSERT_TRUE(child >= 0);
    if (child == 0) {
        ASSERT_TRUE(store_sqlite_pcache_install_with(1));
        run_with_cache(-65536);
        store_sqlite_pcache_arena_stats_t stats = store_sqlite_pcache_arena_stats();
        ASSERT_TRUE(stats.slots > 1 && stats.slots < 600); /* rounded up to a whole 2 MiB */
        ASSERT_EQ(stats.slots_touched, stats.slots);
        ASSERT_TRUE(stats.heap_pages > 0);
        arena_all_given_back();
        exit(0);
    }
    child_passed(child);
}

#define WARM_REGION_PAGES 16384u /* ~70 MiB: the bound and more past the slots taken */
#define WARM_SLOTS_TAKEN 3000u    /* ~13 MiB: the warmer is asked more than once */
#define SMALL_PAGE_BYTES 4096u
#define HUGE_PAGE_BYTES (2u * 1024 * 1024)

/* 4 KiB pages of [from, from + bytes) in memory ('from' is 4 KiB-aligned). */
static size_t resident_pages(char *from, size_t bytes) {
    static unsigned char resident[STORE_PCACHE_WARM_AHEAD_BYTES / SMALL_PAGE_BYTES];
    size_t pages = bytes / SMALL_PAGE_BYTES;
    ASSERT_TRUE(pages <= sizeof resident);
    ASSERT_EQ(mincore(from, bytes, resident), 0);
    size_t count = 0;
    for (size_t i = 0; i < pages; i++) count += resident[i] & 1;
    return count;
}

/* Takes WARM_SLOTS_TAKEN fresh slots (an allocation of a page's size, as SQLite's cache
 * makes) and checks what is resident past the last: every page for half the bound
 * (the warmer is asked each time the slots move that far), none past the bound
 * rounded up to a huge page. The slots stay taken. */
static void warm_ahead_check(void) {
    char *first = sqlite3_malloc((int)SMALL_PAGE_BYTES + 1);
    ASSERT_TRUE(first != NULL);
    size_t slot_bytes = (size_t)sqlite3_msize(first);
    memset(first, 0x5a, slot_bytes);
    char *last = first;
    for (uint32_t i = 1; i < WARM_SLOTS_TAKEN; i++) {
        char *slot = sqlite3_malloc((int)SMALL_PAGE_BYTES + 1);
        ASSERT_TRUE(slot == last + slot_bytes); /* fresh slots, one after another */
        memset(slot, (int)(i & 0xff), slot_bytes);
        last = slot;
    }
    store_sqlite_pcache_warm_wait();
    for (uint32_t i = 1; i < WARM_SLOTS_TAKEN; i++) { /* the warmer changed no byte */
        char *slot = first + i * slot_bytes;
        ASSERT_EQ((uint8_t)slot[0], i & 0xff);
        ASSERT_EQ((uint8_t)slot[slot_bytes - 1], i & 0xff);
    }
    store_sqlite_pcache_arena_stats_t stats = store_sqlite_pcache_arena_stats();
    ASSERT_TRUE(stats.warmer_running);
    char *fresh = last + slot_bytes;
    char *ahead = fresh + (SMALL_PAGE_BYTES - (uintptr_t)fresh % SMALL_PAGE_BYTES) % SMALL_PAGE_BYTES;
    ASSERT_EQ(resident_pages(ahead, STORE_PCACHE_WARM_AHEAD_BYTES / 2),
              STORE_PCACHE_WARM_AHEAD_BYTES / 2 / SMALL_PAGE_BYTES);
    char *beyond = ahead + STORE_PCACHE_WARM_AHEAD_BYTES + HUGE_PAGE_BYTES;
    ASSERT_EQ(resident_pages(beyond, STORE_PCACHE_WARM_AHEAD_BYTES), 0);
    uint64_t fresh_offset = stats.slots_touched * slot_bytes;
    ASSERT_TRUE(stats.warmed_bytes >= fresh_offset + STORE_PCACHE_WARM_AHEAD_BYTES / 2);
    ASSERT_TRUE(stats.warmed_bytes <= fresh_offset + STORE_PCACHE_WARM_AHEAD_BYTES + HUGE_PAGE_BYTES);
}

/* In a child (SQLite is configured once a process), in its own child, and in it
 * again after that fork. */
static void test_warm_ahead(void) {
    pid_t child = fork();
    ASSERT_TRUE(child >= 0);
    if (child == 0) {
        ASSERT_TRUE(store_sqlite_pcache_install_with(WARM_REGION_PAGES));
        ASSERT_TRUE(!store_sqlite_pcache_arena_stats().warmer_running); /* none before the first slot */
        warm_ahead_check();
        pid_t grandchild = fork();
        ASSERT_TRUE(grandchild >= 0);
        if (grandchild == 0) {
            ASSERT_TRUE(!store_sqlite_pcache_arena_stats().warmer_running); /* a fork has no warmer */
            warm_ahead_check();
            exit(0);
        }
        child_passed(grandchild);
        ASSERT_TRUE(!store_sqlite_pcache_arena_stats().warmer_running); /* ended for the fork */
        warm_ahead_check(); /* and started again */
        exit(0);
    }
    child_passed(child);
}

/* The same where the kernel has no MADV_POPULATE_WRITE: each page touched. */
static void test_warm_ahead_by_touch(void) {
    pid_t child = fork();
    ASSERT_TRUE(child >= 0);
    if (child == 0) {
        ASSERT_TRUE(store_sqlite_pcache_install_with(WARM_REGION_PAGES));
        store_sqlite_pcache_warm_by_touch();
        warm_ahead_check();
        exit(0);
    }
    child_passed(child);
}

/* A block of 100 bytes given back serves the next request of 65 to 128 bytes: the
 * same block, with room for it; a block written whole keeps its bytes through a
 * realloc past its class. */
static void test_small_block_reused(void) {
    char *first = sqlite3_malloc(100);
    ASSERT_TRUE(first != NULL);
    ASSERT_TRUE(sqlite3_msize(first) >= 100);
    sqlite3_free(first);
    char *again = sqlite3_malloc(65);
    ASSERT_TRUE(again == first); /* glibc alone gives 65 bytes another bin than 100 */
    ASSERT_TRUE(sqlite3_msize(again) >= 65);
    memset(again, 'x', 65);
    char *grown = sqlite3_realloc(again, 5000);
    ASSERT_TRUE(grown != NULL);
    for (int i = 0; i < 65; i++) ASSERT_EQ(grown[i], 'x');
    sqlite3_free(grown);
}

/* Many blocks of every class taken and given back on a thread that then ends. */
static void *small_blocks_churn(void *unused) {
    (void)unused;
    enum { BLOCKS = 300 };
    static const int sizes[] = {1, 64, 100, 200, 500, 1000, 2000, 3000};
    void *held[BLOCKS];
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        for (int i = 0; i < BLOCKS; i++) {
            held[i] = sqlite3_malloc(sizes[s]);
            ASSERT_TRUE(held[i] != NULL && sqlite3_msize(held[i]) >= (sqlite3_uint64)sizes[s]);
            memset(held[i], i & 0xff, (size_t)sizes[s]);
        }
        for (int i = 0; i < BLOCKS; i++) sqlite3_free(held[i]);
    }
    return NULL;
}

static void test_small_blocks_threads(void) {
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) ASSERT_EQ(pthread_create(&threads[i], NULL, small_blocks_churn, NULL), 0);
    for (int i = 0; i < 4; i++) ASSERT_EQ(pthread_join(threads[i], NULL), 0);
    small_blocks_churn(NULL); /* and on this thread, whose blocks stay until exit */
}

int main(void) {
    TEST_RUN(test_small_region); /* first: the child must find SQLite unconfigured */
    TEST_RUN(test_warm_ahead);   /* likewise */
    TEST_RUN(test_warm_ahead_by_touch);
    ASSERT_TRUE(store_sqlite_pcache_install());
    TEST_RUN(test_large_cache);
    TEST_RUN(test_small_cache);
    TEST_RUN(test_arena_holds_the_cache);
    TEST_RUN(test_second_install);
    TEST_RUN(test_small_block_reused);
    TEST_RUN(test_small_blocks_threads);
    return test_finish();
}
