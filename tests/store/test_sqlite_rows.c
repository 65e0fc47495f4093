/* Goal: rows the SQLite writer appends several per statement (sqlite_rows.c) all go in,
 * whatever their number: every count from 1 to past two full statements, in one
 * transaction, and the same counts again (the statement of a count is kept and its
 * parameters bound anew); a duplicate key among them fails its transaction and leaves
 * none of its rows, whether it lands in a full statement flushed mid-transaction or in
 * the rest flushed at COMMIT; the next transaction's rows go in as before.
 * The statements are INSERT OR FAIL (no statement journal): a row that fails mid-statement
 * (a version stored twice, a transfer's timestamp twice) leaves the rows before it in the
 * open transaction, and the batch's ROLLBACK leaves none of the batch in the file, of
 * any of its tables. Rows whose transaction SQLite rolled back itself (as it does on an
 * I/O error, a full disk or no memory in a statement without a statement journal) are
 * refused at COMMIT, never inserted on their own. The multi-row SQL of every row count
 * 1..16, with and without a tail (the payments' objects' upsert).
 * Method: payment version records and transfers put through the store's transactions,
 * counted with SQL inside the transaction (its own connection) and in the file after. */
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journal/journal.h"
#include "ledger/ledger.h"
#include "store/sqlite_internal.h"
#include "store/store.h"
#include "store/store_payments.h"
#include "test.h"

#define COUNT_MAX (2 * STORE_SQLITE_ROWS_PER_INSERT + 3)

static char dir[256], db_path[300];

/* The single integer 'sql' answers on 'db'. */
static int64_t query_int(sqlite3 *db, const char *sql) {
    sqlite3_stmt *stmt;
    ASSERT_EQ(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    int64_t value = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return value;
}

/* The same in the file, as another connection sees it (committed rows only). */
static int64_t file_int(const char *sql) {
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    int64_t value = query_int(db, sql);
    sqlite3_close(db);
    return value;
}

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

static void store_start(const char *name, store_t **store, ledger_t **ledger) {
    test_dir_make(dir, sizeof dir, name);
    snprintf(db_path, sizeof db_path, "%s/r.db", dir);
    journal_entry_t head;
    ASSERT_STATUS(store_open(store, db_path, &(store_options_t){.create = true}), PC_OK);
    ASSERT_STATUS(ledger_open(ledger), PC_OK);
    ASSERT_STATUS(store_load(*store, *ledger, &head), PC_OK);
}

static void store_stop(store_t *store, ledger_t *ledger) {
    ledger_close(ledger);
    store_close(store);
    test_dir_remove(dir);
}

static void test_every_count(void) {
    store_t *store;
    ledger_t *ledger;
    store_start("paycore-rows", &store, &ledger);
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
    store_stop(store, ledger);
}

/* Versions 1..STORE_SQLITE_ROWS_PER_INSERT of 'id', the one at 'twice' being 'twice - 6'
 * again: the put that fills the statement fails at that row. */
static void test_version_fails_mid_statement(void) {
    store_t *store;
    ledger_t *ledger;
    store_start("paycore-rows-mid", &store, &ledger);
    const uint32_t twice = 9;
    store_tx_t *tx;
    ASSERT_STATUS(store_tx_begin(store, &tx), PC_OK);
    pc_status status = PC_OK;
    uint32_t v = 1;
    for (; status == PC_OK && v <= STORE_SQLITE_ROWS_PER_INSERT; v++) {
        status = store_pay_version_put(tx, "pay_mid", v == twice ? twice - 6 : v, "{}", 2);
    }
    ASSERT_TRUE(status != PC_OK);
    ASSERT_EQ(v - 1, STORE_SQLITE_ROWS_PER_INSERT); /* the put that flushed the statement */
    /* OR FAIL: the rows before the failing one are there until the ROLLBACK */
    ASSERT_EQ(query_int(store_sqlite_tx_db(tx), "SELECT count(*) FROM pay_versions WHERE object_id = 'pay_mid'"),
              twice - 1);
    store_tx_rollback(tx);
    rows_check("pay_mid", 0, 0);
    versions_commit(store, "pay_mid", 3); /* the same versions go in afterwards */
    rows_check("pay_mid", 3, 6);
    store_stop(store, ledger);
}

/* Transfers' rows of batch 1: 'count' of them, the one at 'twice' with the timestamp
 * of the one at 'first' (the table's key). */
static void transfers_make(ledger_transfer_t *transfers, uint32_t count, uint32_t first, uint32_t twice) {
    for (uint32_t i = 0; i < count; i++) {
        ledger_transfer_t *t = &transfers[i];
        memset(t, 0, sizeof *t);
        snprintf(t->id, sizeof t->id, "t%u", i);
        snprintf(t->debit_account_id, sizeof t->debit_account_id, "a");
        snprintf(t->credit_account_id, sizeof t->credit_account_id, "b");
        snprintf(t->currency, sizeof t->currency, "USD");
        t->amount = 100 + i;
        t->code = 1;
        t->timestamp_ns = 1000 + (i == twice ? first : i);
    }
}

/* A batch's transfers and payment versions in one transaction, one transfer's timestamp
 * twice: the batch fails (mid-transaction when the transfer fills a statement, else at
 * COMMIT) and the file holds nothing of it, transfers, versions or journal row. */
static void transfers_batch_fails(store_t *store, const ledger_t *ledger, uint32_t count, uint32_t twice) {
    ledger_transfer_t transfers[2 * STORE_SQLITE_ROWS_PER_INSERT];
    uint32_t accounts[4 * STORE_SQLITE_ROWS_PER_INSERT] = {0};
    ASSERT_TRUE(count <= 2 * STORE_SQLITE_ROWS_PER_INSERT);
    transfers_make(transfers, count, 2, twice);
    ledger_changes_t changes = {.transfers = transfers, .transfer_accounts = accounts, .transfers_count = count,
                                .timestamp_first_ns = transfers[0].timestamp_ns,
                                .timestamp_last_ns = transfers[count - 1].timestamp_ns};
    store_tx_t *tx;
    ASSERT_STATUS(store_tx_begin(store, &tx), PC_OK);
    for (uint32_t v = 1; v <= 3; v++) ASSERT_STATUS(store_pay_version_put(tx, "pay_with_transfers", v, "{}", 2), PC_OK);
    journal_content_t content;
    journal_content_init(&content);
    pc_status status = store_tx_write_changes(tx, ledger, &changes, 1, &content);
    if (status == PC_OK) {
        ASSERT_TRUE(twice >= STORE_SQLITE_ROWS_PER_INSERT * (count / STORE_SQLITE_ROWS_PER_INSERT));
        journal_entry_t entry = {.seq = 1, .transfer_count = count, .timestamp_first_ns = changes.timestamp_first_ns,
                                 .timestamp_last_ns = changes.timestamp_last_ns};
        journal_content_final(&content, entry.content_hash);
        journal_entry_seal(&entry);
        ASSERT_STATUS(store_tx_write_journal(tx, &entry, NULL), PC_OK);
        ASSERT_TRUE(store_tx_commit(tx) != PC_OK); /* rolled back by the failed COMMIT */
    } else {
        ASSERT_TRUE(twice < STORE_SQLITE_ROWS_PER_INSERT); /* in the first, full statement */
        /* OR FAIL: the transfers before the failing one are there until the ROLLBACK */
        ASSERT_EQ(query_int(store_sqlite_tx_db(tx), "SELECT count(*) FROM transfers"), twice);
        store_tx_rollback(tx);
    }
    ASSERT_EQ(file_int("SELECT count(*) FROM transfers"), 0);
    ASSERT_EQ(file_int("SELECT count(*) FROM journal"), 0);
    rows_check("pay_with_transfers", 0, 0);
}

static void test_transfer_fails(void) {
    store_t *store;
    ledger_t *ledger;
    store_start("paycore-rows-transfers", &store, &ledger);
    transfers_batch_fails(store, ledger, STORE_SQLITE_ROWS_PER_INSERT + 4, 11); /* mid-transaction */
    transfers_batch_fails(store, ledger, 7, 5);                                  /* at COMMIT */
    transfers_batch_fails(store, ledger, STORE_SQLITE_ROWS_PER_INSERT + 4, STORE_SQLITE_ROWS_PER_INSERT + 2);
    store_stop(store, ledger);
}

/* Versions 1..3 of 'id', and its object's row when 'object', in a transaction SQLite
 * rolls back itself (here by a ROLLBACK on the store's connection): COMMIT refuses them
 * and the file holds none of them. */
static void rows_of_gone_transaction(store_t *store, const char *id, bool object) {
    store_tx_t *tx;
    ASSERT_STATUS(store_tx_begin(store, &tx), PC_OK);
    for (uint32_t v = 1; v <= 3; v++) ASSERT_STATUS(store_pay_version_put(tx, id, v, "{}", 2), PC_OK);
    store_pay_object_t row = {.version = 1, .created_ns = 1, .updated_ns = 1, .doc = "{}", .doc_bytes = 2};
    snprintf(row.id, sizeof row.id, "%s", id);
    snprintf(row.kind, sizeof row.kind, "payment");
    snprintf(row.status, sizeof row.status, "pending");
    if (object) ASSERT_STATUS(store_pay_object_put(tx, &row), PC_OK);
    ASSERT_EQ(sqlite3_exec(store_sqlite_tx_db(tx), "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    ASSERT_TRUE(store_tx_commit(tx) != PC_OK);
    rows_check(id, 0, 0);
    ASSERT_EQ(file_int("SELECT count(*) FROM pay_objects"), 0);
    ASSERT_STATUS(store_failed(store), PC_OK);
}

/* A transaction SQLite rolled back itself (as after an I/O error, a full disk or no
 * memory in a statement without a statement journal): its waiting rows are never
 * inserted on their own; the store writes on. */
static void test_transaction_gone(void) {
    store_t *store;
    ledger_t *ledger;
    store_start("paycore-rows-gone", &store, &ledger);
    rows_of_gone_transaction(store, "pay_gone", false);
    rows_of_gone_transaction(store, "pay_gone", true);
    versions_commit(store, "pay_gone", 2);
    rows_check("pay_gone", 2, 3);
    store_stop(store, ledger);
}

/* The multi-row SQL as a plain loop writes it. */
static void sql_expected(char *out, size_t out_bytes, const char *head, uint32_t columns, uint32_t rows,
                         const char *tail) {
    size_t n = (size_t)snprintf(out, out_bytes, "%s", head);
    for (uint32_t r = 0; r < rows; r++) {
        n += (size_t)snprintf(out + n, out_bytes - n, "%s(", r > 0 ? "," : "");
        for (uint32_t c = 0; c < columns; c++) n += (size_t)snprintf(out + n, out_bytes - n, c > 0 ? ",?" : "?");
        n += (size_t)snprintf(out + n, out_bytes - n, ")");
    }
    snprintf(out + n, out_bytes - n, "%s", tail != NULL ? tail : "");
}

/* Every row count of a statement, 1..16, for one column up to a transfer's 14, without
 * and with a tail: the text a plain loop writes, and SQLite takes it with one parameter
 * a value. */
static void test_sql_every_count(void) {
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open(":memory:", &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE t(c1 PRIMARY KEY, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14)",
                           NULL, NULL, NULL), SQLITE_OK);
    static const char *const tails[] = {NULL, " ON CONFLICT(c1) DO UPDATE SET c2 = excluded.c2"};
    for (uint32_t columns = 1; columns <= STORE_SQLITE_ROWS_COLUMNS_MAX; columns++) {
        char head[160];
        int n = snprintf(head, sizeof head, "INSERT OR FAIL INTO t(");
        for (uint32_t c = 1; c <= columns; c++) n += snprintf(head + n, sizeof head - (size_t)n, "%sc%u", c > 1 ? ", " : "", c);
        snprintf(head + n, sizeof head - (size_t)n, ") VALUES");
        for (uint32_t rows = 1; rows <= STORE_SQLITE_ROWS_PER_INSERT; rows++) {
            for (size_t t = 0; t < sizeof tails / sizeof tails[0]; t++) {
                char want[2048];
                sql_expected(want, sizeof want, head, columns, rows, tails[t]);
                char *sql = store_sqlite_rows_sql(head, columns, rows, tails[t]);
                ASSERT_TRUE(sql != NULL);
                ASSERT_STR_EQ(sql, want);
                sqlite3_stmt *stmt;
                ASSERT_EQ(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
                ASSERT_EQ(sqlite3_bind_parameter_count(stmt), (int)(rows * columns));
                sqlite3_finalize(stmt);
                free(sql);
            }
        }
    }
    sqlite3_close(db);
}

int main(void) {
    ASSERT_TRUE(sodium_init() >= 0);
    TEST_RUN(test_every_count);
    TEST_RUN(test_version_fails_mid_statement);
    TEST_RUN(test_transfer_fails);
    TEST_RUN(test_transaction_gone);
    TEST_RUN(test_sql_every_count);
    return test_finish();
}
