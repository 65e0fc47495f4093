/* Goal: a store reader's page cache stays within STORE_READER_CACHE_KIB however much
 * is read through it while nothing is written (under writes SQLite empties it at each
 * read anyway): pooled readers, one per busy thread, then never hold the database
 * many times over.
 * Method: a real SQLite store with a table of 48 MiB of rows (three times the bound)
 * written beside the store's own; one reader reads every row three times over with no
 * commit in between, and its connection's own figure (SQLITE_DBSTATUS_CACHE_USED)
 * must stay within the bound plus SQLite's per-page headers; the rows must all be
 * read (the sum of their lengths checked), so the cache was really offered them. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/core.h"
#include "store/sqlite_internal.h"
#include "store/store.h"
#include "test.h"
#include "writer/writer.h"

#define ROWS 48000
#define ROW_BYTES 1000
#define READS 3

static char dir[256], db_path[300], key_path[300];

static void bulk_write(void) {
    sqlite3 *db = NULL;
    ASSERT_EQ(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    char sql[256];
    snprintf(sql, sizeof sql,
             "PRAGMA busy_timeout=10000; CREATE TABLE bulk(b BLOB NOT NULL);"
             " WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d)"
             " INSERT INTO bulk SELECT randomblob(%d) FROM n;",
             ROWS, ROW_BYTES);
    char *message = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &message) != SQLITE_OK) TEST_FAIL("bulk rows: %s", message);
    ASSERT_EQ(sqlite3_close(db), SQLITE_OK);
}

static int64_t bulk_read(sqlite3 *db) {
    sqlite3_stmt *stmt = NULL;
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT sum(length(hex(b))) FROM bulk", -1, &stmt, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    int64_t hex_bytes = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return hex_bytes;
}

static void test_reader_cache_bounded(void) {
    test_dir_make(dir, sizeof dir, "paycore-reader-cache");
    snprintf(db_path, sizeof db_path, "%s/r.db", dir);
    snprintf(key_path, sizeof key_path, "%s/r.db.key", dir);
    store_t *store = NULL;
    writer_t *writer = NULL;
    store_options_t options = {.create = true};
    ASSERT_STATUS(store_open(&store, db_path, &options), PC_OK);
    ASSERT_STATUS(writer_start(&writer, store, key_path, NULL), PC_OK);
    bulk_write();

    store_reader_t *reader = NULL;
    ASSERT_STATUS(store_reader_open(store, &reader), PC_OK);
    sqlite3 *db = store_sqlite_reader_db(reader);
    for (int i = 0; i < READS; i++) ASSERT_EQ(bulk_read(db), (int64_t)ROWS * ROW_BYTES * 2);
    int used_bytes = 0, highest_bytes = 0;
    ASSERT_EQ(sqlite3_db_status(db, SQLITE_DBSTATUS_CACHE_USED, &used_bytes, &highest_bytes, 0), SQLITE_OK);
    /* a cached 4 KiB page also carries SQLite's headers (a few hundred bytes): 1/4 more */
    int64_t bound_bytes = (int64_t)STORE_READER_CACHE_KIB * 1024 * 5 / 4;
    if (used_bytes > bound_bytes) {
        TEST_FAIL("reader cache %d bytes, bound %lld (%d KiB of pages)", used_bytes, (long long)bound_bytes,
                  (int)STORE_READER_CACHE_KIB);
    }
    ASSERT_TRUE((int64_t)ROWS * ROW_BYTES > 2 * bound_bytes); /* the rows could not have fit */

    store_reader_close(reader);
    writer_stop(writer);
    store_close(store);
    test_dir_remove(dir);
}

int main(void) {
    TEST_RUN(test_reader_cache_bounded);
    return test_finish();
}
