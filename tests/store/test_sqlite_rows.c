/* Goal: rows the SQLite writer appends several per statement (sqlite_rows.c) all go in,
 * whatever their number: every count from 1 to past two full statements, in one
 * transaction, and the same counts again (the statement of a count is kept and its
 * parameters bound anew); a duplicate key among them fails its transaction and leaves
 * none of its rows, whether it lands in a full statement flushed mid-transaction or in
 * the rest flushed at COMMIT; the next transaction's rows go in as before.
 * Method: payment version records (one of the buffered tables) put through the store's
 * transactions, counted and summed with SQL after each commit. */
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

#include "ledger/ledger.h"
#include "store/sqlite_internal.h"
#include "store/store.h"
#include "store/store_payments.h"
#include "test.h"

#define COUNT_MAX (2 * STORE_SQLITE_ROWS_PER_INSERT + 3)

static char dir[256], db_path[300];

/* Rows of 'id' (NULL: every row): their count, and the sum of their versions. */
static void rows_check(const char *id, int64_t count, int64_t version_sum) {
    sqlite3 *db;
    sqlite3_stmt *stmt;
    ASSERT_EQ(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT count(*), coalesce(sum(version), 0) FROM pay_versions"
                                     " WHERE ?1 IS NULL OR object_id = ?1", -1, &stmt, NULL), SQLITE_OK);
    if (id != NULL) sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    ASSERT_EQ(sqlite3_column_int64(stmt, 0), count);
    ASSERT_EQ(sqlite3_column_int64(stmt, 1), version_sum);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
}

/* Versions 1..count of 'id' in one transaction, each with a record naming it. */
static void versions_commit(store_t *store, const char *id, uint32_t count) {
    store_tx_t *tx;
    ASSERT_STATUS(store_tx_begin(store, &tx), PC_OK);
    for (uint32_t v = 1; v <= count; v++) {
        char record[96];
        int bytes = snprintf(record, sizeof record, "{\"id\":\"%s\",\"version\":%u}", id, v);
        ASSERT_STATUS(store_pay_version_put(tx, id, v, record, (size_t)bytes), PC_OK);
    }
    ASSERT_STATUS(store_tx_commit(tx), PC_OK);
}

/* 'count' versions of 'id' where the one at 'twice' is version 1 again: the
 * transaction fails (at the put that flushes it, or at COMMIT) and is rolled back. */
static void duplicate_fails(store_t *store, const char *id, uint32_t count, uint32_t twice) {
    store_tx_t *tx;
    ASSERT_STATUS(store_tx_begin(store, &tx), PC_OK);
    pc_status status = PC_OK;
    for (uint32_t i = 1; status == PC_OK && i <= count; i++) {
        uint32_t v = i == twice ? 1 : i;
        status = store_pay_version_put(tx, id, v, "{}", 2);
    }
    if (status == PC_OK) {
        ASSERT_TRUE(store_tx_commit(tx) != PC_OK); /* rolled back by the failed COMMIT */
    } else {
        store_tx_rollback(tx);
    }
    rows_check(id, 0, 0);
}

static void test_every_count(void) {
    test_dir_make(dir, sizeof dir, "paycore-rows");
    snprintf(db_path, sizeof db_path, "%s/r.db", dir);
    store_t *store;
    ledger_t *ledger;
    journal_entry_t head;
    ASSERT_STATUS(store_open(&store, db_path, &(store_options_t){.create = true}), PC_OK);
    ASSERT_STATUS(ledger_open(&ledger), PC_OK);
    ASSERT_STATUS(store_load(store, ledger, &head), PC_OK);
    for (int round = 0; round < 2; round++) {
        for (uint32_t count = 1; count <= COUNT_MAX; count++) {
            char id[32];
            snprintf(id, sizeof id, "pay_r%d_%u", round, count);
            versions_commit(store, id, count);
            rows_check(id, count, (int64_t)count * (count + 1) / 2);
        }
    }
    duplicate_fails(store, "pay_dup_rest", 7, 5);                                     /* flushed at COMMIT */
    duplicate_fails(store, "pay_dup_full", STORE_SQLITE_ROWS_PER_INSERT + 3, 9);      /* in the full statement */
    duplicate_fails(store, "pay_dup_after", STORE_SQLITE_ROWS_PER_INSERT + 7, STORE_SQLITE_ROWS_PER_INSERT + 4);
    versions_commit(store, "pay_after_failures", 7);
    rows_check("pay_after_failures", 7, 28);
    int64_t rows = 0, version_sum = 28;
    for (int64_t count = 1; count <= COUNT_MAX; count++) {
        rows += 2 * count;
        version_sum += 2 * count * (count + 1) / 2;
    }
    rows_check(NULL, rows + 7, version_sum);
    ledger_close(ledger);
    store_close(store);
    test_dir_remove(dir);
}

int main(void) {
    ASSERT_TRUE(sodium_init() >= 0);
    TEST_RUN(test_every_count);
    return test_finish();
}
