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
 * Payments' objects' rows: a flush of first versions and new versions (the same listing
 * keys, other keys, no row yet, a first version over a row that is there) leaves each
 * row as one statement a write did, the first final answer kept; a flush of first
 * versions copies no page into a statement journal (counted where SQLite opens one,
 * with no spill to memory); a full disk in their insert rolls the whole transaction
 * back and the new versions waiting with them are not written on their own.
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
#include "store/sqlite_pcache.h"
#include "store/store.h"
#include "store/store_payments.h"
#include "test.h"

#define COUNT_MAX (2 * STORE_SQLITE_ROWS_PER_INSERT + 3)

static char dir[256], db_path[300];

#define PAY_TEST_ROWS 8            /* first versions of one flush */
#define PAY_TEST_BIG_BYTES 9000    /* a document that spills to overflow pages */

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

/* ---- payments' objects' rows (sqlite_payments.c) ---- */

/* Sub-journals (statement journals) SQLite opened through the VFS: with no spill to
 * memory (SQLITE_CONFIG_STMTJRNL_SPILL 0, set before SQLite starts) and temp_store=FILE
 * on the connection, every statement journal that copies a page opens one. */
static sqlite3_vfs counting_vfs;
static sqlite3_vfs *counting_below;
static int subjournals_opened;

static int counting_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out_flags) {
    (void)vfs;
    if (flags & SQLITE_OPEN_SUBJOURNAL) subjournals_opened++;
    return counting_below->xOpen(counting_below, name, file, flags, out_flags);
}

/* Below every VFS the store registers after it (they wrap the default one). */
static void counting_vfs_install(void) {
    counting_below = sqlite3_vfs_find(NULL);
    ASSERT_TRUE(counting_below != NULL);
    counting_vfs = *counting_below;
    counting_vfs.zName = "paycore-test-subjournals";
    counting_vfs.xOpen = counting_open;
    ASSERT_EQ(sqlite3_vfs_register(&counting_vfs, 1), SQLITE_OK);
}

static store_pay_object_t object_row(const char *id, uint32_t version, const char *merchant_id, const char *doc) {
    store_pay_object_t o = {.version = version, .created_ns = 1000, .updated_ns = 1000 + version, .doc = (char *)doc,
                            .doc_bytes = strlen(doc)};
    snprintf(o.id, sizeof o.id, "%s", id);
    snprintf(o.kind, sizeof o.kind, "payment");
    snprintf(o.merchant_id, sizeof o.merchant_id, "%s", merchant_id);
    snprintf(o.status, sizeof o.status, "%s", version == 1 ? "created" : "captured");
    return o;
}

static void objects_commit(store_t *store, const store_pay_object_t *rows, uint32_t count) {
    store_tx_t *tx;
    ASSERT_STATUS(store_tx_begin(store, &tx), PC_OK);
    for (uint32_t i = 0; i < count; i++) ASSERT_STATUS(store_pay_object_put(tx, &rows[i]), PC_OK);
    ASSERT_STATUS(store_tx_commit(tx), PC_OK);
}

/* The row of 'id' in the file as "merchant|status|version|doc|answer_version|answer_status". */
static void object_check(const char *id, const char *want) {
    sqlite3 *db;
    sqlite3_stmt *stmt;
    ASSERT_EQ(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_prepare_v2(db,
                                 "SELECT merchant_id || '|' || status || '|' || version || '|' || doc || '|' ||"
                                 " answer_version || '|' || answer_status FROM pay_objects WHERE id = ?1",
                                 -1, &stmt, NULL),
              SQLITE_OK);
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    ASSERT_STR_EQ((const char *)sqlite3_column_text(stmt, 0), want);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
}

/* One flush of first versions (new objects, and one over a row that is there) and new
 * versions (the same listing keys, other keys, no row yet): the insert and the upsert
 * leave rows for the rows written again alone; every row as one statement a write
 * left it, the first final answer kept. */
static void test_objects_new_and_updated(void) {
    store_t *store;
    ledger_t *ledger;
    store_start("paycore-rows-objects", &store, &ledger);
    store_pay_object_t before[3] = {object_row("pay_a", 1, "m1", "a1"), object_row("pay_b", 1, "m1", "b1"),
                                    object_row("pay_c", 1, "m1", "c1")};
    before[1].answer_version = 1; /* pay_b's first final answer */
    before[1].answer_status = 201;
    objects_commit(store, before, 3);
    store_pay_object_t batch[6] = {
        object_row("pay_new1", 1, "m1", "n1"), object_row("pay_a", 2, "m1", "a2"), /* same keys */
        object_row("pay_b", 2, "m1", "b2"),    object_row("pay_c", 1, "m2", "c1 again"), /* over a row */
        object_row("pay_new2", 1, "m1", "n2"), object_row("pay_d", 3, "m3", "d3"), /* no row yet */
    };
    batch[1].answer_version = 2;
    batch[1].answer_status = 200;
    batch[2].answer_version = 2; /* not kept: pay_b has its first */
    batch[2].answer_status = 402;
    objects_commit(store, batch, 6);
    ASSERT_EQ(file_int("SELECT count(*) FROM pay_objects"), 6);
    object_check("pay_new1", "m1|created|1|n1|0|0");
    object_check("pay_a", "m1|captured|2|a2|2|200");
    object_check("pay_b", "m1|captured|2|b2|1|201");
    object_check("pay_c", "m2|created|1|c1 again|0|0");
    object_check("pay_new2", "m1|created|1|n2|0|0");
    object_check("pay_d", "m3|captured|3|d3|0|0");
    /* listing keys changed: the whole row again, its first final answer the new one's */
    store_pay_object_t moved = object_row("pay_b", 3, "m9", "b3");
    moved.answer_version = 3;
    moved.answer_status = 409;
    objects_commit(store, &moved, 1);
    object_check("pay_b", "m9|captured|3|b3|3|409");
    store_stop(store, ledger);
}

/* A flush of first versions (new payments) copies no page into a statement journal:
 * the multi-row upsert that wrote them did. */
static void test_objects_first_versions_no_statement_journal(void) {
    store_t *store;
    ledger_t *ledger;
    store_start("paycore-rows-journal", &store, &ledger);
    sqlite3 *db = ((sqlite_store_t *)store)->db;
    ASSERT_EQ(sqlite3_exec(db, "PRAGMA temp_store=FILE", NULL, NULL, NULL), SQLITE_OK);
    store_pay_object_t rows[PAY_TEST_ROWS];
    char ids[PAY_TEST_ROWS][16];
    for (uint32_t round = 0; round < 3; round++) {
        for (uint32_t i = 0; i < PAY_TEST_ROWS; i++) {
            snprintf(ids[i], sizeof ids[i], "pay_%u_%02u", round, i);
            rows[i] = object_row(ids[i], 1, "m1", "{}");
        }
        int opened = subjournals_opened;
        objects_commit(store, rows, PAY_TEST_ROWS);
        ASSERT_EQ(subjournals_opened - opened, 0);
    }
    ASSERT_EQ(file_int("SELECT count(*) FROM pay_objects"), 3 * PAY_TEST_ROWS);
    store_stop(store, ledger);
}

/* A full disk in the insert of first versions (no statement journal): SQLite rolls the
 * whole transaction back, and the upsert of the new versions waiting with them is not
 * run on its own (it would commit alone): the file holds nothing of the batch. */
static void test_objects_insert_full_rolls_back(void) {
    store_t *store;
    ledger_t *ledger;
    store_start("paycore-rows-full", &store, &ledger);
    store_pay_object_t old = object_row("pay_old", 1, "m1", "o1");
    objects_commit(store, &old, 1);
    static char big[PAY_TEST_BIG_BYTES];
    memset(big, 'x', sizeof big - 1);
    store_pay_object_t batch[PAY_TEST_ROWS + 1];
    char ids[PAY_TEST_ROWS][16];
    for (uint32_t i = 0; i < PAY_TEST_ROWS; i++) {
        snprintf(ids[i], sizeof ids[i], "pay_big_%02u", i);
        batch[i] = object_row(ids[i], 1, "m1", big); /* each needs pages the file has not */
    }
    batch[PAY_TEST_ROWS] = object_row("pay_old", 2, "m1", "o2"); /* fits its page */
    sqlite3 *db = ((sqlite_store_t *)store)->db;
    ASSERT_TRUE(query_int(db, "PRAGMA freelist_count") * 4096 < (int64_t)sizeof big);
    store_tx_t *tx;
    ASSERT_STATUS(store_tx_begin(store, &tx), PC_OK);
    for (uint32_t i = 0; i <= PAY_TEST_ROWS; i++) ASSERT_STATUS(store_pay_object_put(tx, &batch[i]), PC_OK);
    char sql[96];
    snprintf(sql, sizeof sql, "PRAGMA max_page_count = %lld", (long long)query_int(db, "PRAGMA page_count"));
    ASSERT_EQ(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    ASSERT_TRUE(store_tx_commit(tx) != PC_OK);
    ASSERT_EQ(sqlite3_extended_errcode(db) & 0xff, SQLITE_FULL);
    ASSERT_EQ(file_int("SELECT count(*) FROM pay_objects"), 1);
    object_check("pay_old", "m1|created|1|o1|0|0");
    ASSERT_STATUS(store_failed(store), PC_OK);
    /* room again: the same batch goes in */
    ASSERT_EQ(sqlite3_exec(db, "PRAGMA max_page_count = 1073741823", NULL, NULL, NULL), SQLITE_OK);
    objects_commit(store, batch, PAY_TEST_ROWS + 1);
    ASSERT_EQ(file_int("SELECT count(*) FROM pay_objects"), PAY_TEST_ROWS + 1);
    object_check("pay_old", "m1|captured|2|o2|0|0");
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
    /* before SQLite starts: statement journals through the VFS (counting_vfs) */
    ASSERT_EQ(sqlite3_config(SQLITE_CONFIG_STMTJRNL_SPILL, 0), SQLITE_OK);
    ASSERT_EQ(sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0), SQLITE_OK); /* as the store's start */
    ASSERT_TRUE(store_sqlite_pcache_install());
    counting_vfs_install();
    ASSERT_TRUE(sodium_init() >= 0);
    TEST_RUN(test_every_count);
    TEST_RUN(test_version_fails_mid_statement);
    TEST_RUN(test_transfer_fails);
    TEST_RUN(test_transaction_gone);
    TEST_RUN(test_sql_every_count);
    TEST_RUN(test_objects_new_and_updated);
    TEST_RUN(test_objects_first_versions_no_statement_journal);
    TEST_RUN(test_objects_insert_full_rolls_back);
    return test_finish();
}
