/* Goal: the writer and the SQLite store keep what they acknowledge and nothing else.
 * Method: a real SQLite file in a temp dir; accounts and transfers through the writer;
 * restart and compare balances; an injected commit failure must fail every command
 * of its batch and leave memory and disk as before; foreign and future files are
 * refused; 16 threads submit concurrently and totals still balance. */
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include "ledger/ledger.h"
#include "store/store.h"
#include "test.h"
#include "writer/writer.h"

static char dir[256], db_path[300], key_path[300];

static void paths_make(const char *name) {
    snprintf(dir, sizeof dir, "/tmp/paycore-test-XXXXXX");
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    snprintf(db_path, sizeof db_path, "%s/%s.db", dir, name);
    snprintf(key_path, sizeof key_path, "%s/%s.db.key", dir, name);
}

static void start(store_t **store, writer_t **writer, uint32_t fault_commit_at) {
    store_options_t options = {.create = true, .fault_commit_at = fault_commit_at};
    ASSERT_STATUS(store_open(store, db_path, &options), PC_OK);
    ASSERT_STATUS(writer_start(writer, *store, key_path, NULL), PC_OK);
}

static void stop(store_t *store, writer_t *writer) {
    writer_stop(writer);
    store_close(store);
}

static pc_status accounts_create(writer_t *writer, const char **ids, uint32_t count, ledger_account_result_t *results) {
    ledger_account_t accounts[16] = {0};
    for (uint32_t i = 0; i < count; i++) {
        snprintf(accounts[i].id, sizeof accounts[i].id, "%s", ids[i]);
        memcpy(accounts[i].currency, "EUR", 4);
        accounts[i].code = 7;
        accounts[i].flags = LEDGER_ACCOUNT_HISTORY;
    }
    writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_ACCOUNTS, .event_count = count, .accounts = accounts,
                        .account_results = results};
    return writer_submit_wait(writer, &cmd);
}

static pc_status transfer_one(writer_t *writer, const char *id, const char *dr, const char *cr, int64_t amount,
                              ledger_transfer_result_t *result) {
    ledger_transfer_t t = {0};
    snprintf(t.id, sizeof t.id, "%s", id);
    snprintf(t.debit_account_id, sizeof t.debit_account_id, "%s", dr);
    snprintf(t.credit_account_id, sizeof t.credit_account_id, "%s", cr);
    memcpy(t.currency, "EUR", 4);
    t.amount = amount;
    t.code = 1;
    t.metadata_json = "{\"order\":\"o-1\"}";
    writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = 1, .transfers = &t,
                        .transfer_results = result};
    return writer_submit_wait(writer, &cmd);
}

static int64_t stored_balance(store_t *store, const char *id) {
    store_reader_t *reader;
    ASSERT_STATUS(store_reader_open(store, &reader), PC_OK);
    store_account_t account;
    ASSERT_STATUS(store_read_account(reader, id, &account), PC_OK);
    int64_t balance = account.account.balances.credits_posted - account.account.balances.debits_posted;
    store_account_free(&account);
    store_reader_close(reader);
    return balance;
}

static void test_persist_and_restart(void) {
    paths_make("persist");
    store_t *store;
    writer_t *writer;
    start(&store, &writer, 0);
    const char *ids[] = {"a", "b"};
    ledger_account_result_t ar[2];
    ASSERT_STATUS(accounts_create(writer, ids, 2, ar), PC_OK);
    ASSERT_STATUS(ar[0].status, PC_OK);
    ledger_transfer_result_t r;
    ASSERT_STATUS(transfer_one(writer, "t1", "a", "b", 250, &r), PC_OK);
    ASSERT_STATUS(r.status, PC_OK);
    ASSERT_STATUS(transfer_one(writer, "t1", "a", "b", 250, &r), PC_OK);
    ASSERT_STATUS(r.status, PC_EXISTS); /* found through the store */
    ASSERT_EQ(stored_balance(store, "b"), 250);
    stop(store, writer);
    start(&store, &writer, 0);
    ASSERT_EQ(ledger_account_find(writer_ledger(writer), "b")->balances.credits_posted, 250);
    ASSERT_STATUS(transfer_one(writer, "t1", "a", "b", 251, &r), PC_OK);
    ASSERT_STATUS(r.status, PC_EXISTS_WITH_DIFFERENT_AMOUNT);
    store_reader_t *reader;
    ASSERT_STATUS(store_reader_open(store, &reader), PC_OK);
    store_transfer_t t;
    ASSERT_STATUS(store_read_transfer(reader, "t1", &t), PC_OK);
    ASSERT_EQ(t.transfer.amount, 250);
    ASSERT_STR_EQ(t.transfer.metadata_json, "{\"order\":\"o-1\"}");
    store_transfer_free(&t);
    ASSERT_STATUS(store_read_transfer(reader, "nope", &t), PC_NOT_FOUND);
    store_reader_close(reader);
    stop(store, writer);
}

static void test_commit_fault(void) {
    paths_make("fault");
    store_t *store;
    writer_t *writer;
    start(&store, &writer, 3); /* commit 1: accounts, 2: t1, 3: t2 fails */
    const char *ids[] = {"a", "b"};
    ledger_account_result_t ar[2];
    ASSERT_STATUS(accounts_create(writer, ids, 2, ar), PC_OK);
    ledger_transfer_result_t r;
    ASSERT_STATUS(transfer_one(writer, "t1", "a", "b", 100, &r), PC_OK);
    ASSERT_STATUS(transfer_one(writer, "t2", "a", "b", 5, &r), PC_STORE_COMMIT_FAILED);
    ASSERT_EQ(ledger_account_find(writer_ledger(writer), "b")->balances.credits_posted, 100);
    ASSERT_EQ(stored_balance(store, "b"), 100);
    /* The same id works afterwards: nothing of the failed batch remained. */
    ASSERT_STATUS(transfer_one(writer, "t2", "a", "b", 5, &r), PC_OK);
    ASSERT_STATUS(r.status, PC_OK);
    ASSERT_EQ(stored_balance(store, "b"), 105);
    stop(store, writer);
}

static void test_foreign_files(void) {
    paths_make("foreign");
    FILE *f = fopen(db_path, "w");
    fputs("this is not a database, just some text that is long enough to matter\n", f);
    fclose(f);
    store_t *store;
    store_options_t options = {.create = false};
    ASSERT_STATUS(store_open(&store, db_path, &options), PC_STORE_NOT_PAYCORE);
    unlink(db_path);
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open(db_path, &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE other(x); PRAGMA application_id=7;", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    ASSERT_STATUS(store_open(&store, db_path, &options), PC_STORE_NOT_PAYCORE);
    unlink(db_path);
    options.create = true;
    ASSERT_STATUS(store_open(&store, db_path, &options), PC_OK);
    store_close(store);
    ASSERT_EQ(sqlite3_open(db_path, &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version=99;", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    ASSERT_STATUS(store_open(&store, db_path, &options), PC_STORE_VERSION_UNSUPPORTED);
    char missing[320];
    snprintf(missing, sizeof missing, "%s/missing.db", dir);
    options.create = false;
    ASSERT_STATUS(store_open(&store, missing, &options), PC_STORE_OPEN_FAILED);
}

#define THREADS 16
#define PER_THREAD 50
static writer_t *shared_writer;

static void *submitter(void *arg) {
    long n = (long)arg;
    for (int i = 0; i < PER_THREAD; i++) {
        char id[32];
        snprintf(id, sizeof id, "c%ld-%d", n, i);
        ledger_transfer_result_t r;
        pc_status status = transfer_one(shared_writer, id, (i % 2) ? "a" : "b", (i % 2) ? "b" : "a", 1 + i, &r);
        if (status != PC_OK || r.status != PC_OK) TEST_FAIL("concurrent transfer %s: %s / %s", id,
                                                            pc_status_code(status), pc_status_code(r.status));
    }
    return NULL;
}

static void test_concurrent_group_commit(void) {
    paths_make("concurrent");
    store_t *store;
    start(&store, &shared_writer, 0);
    const char *ids[] = {"a", "b"};
    ledger_account_result_t ar[2];
    ASSERT_STATUS(accounts_create(shared_writer, ids, 2, ar), PC_OK);
    pthread_t threads[THREADS];
    for (long i = 0; i < THREADS; i++) pthread_create(&threads[i], NULL, submitter, (void *)i);
    for (int i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
    writer_stats_t stats;
    writer_stats(shared_writer, &stats);
    ASSERT_EQ(stats.transfers_committed, THREADS * PER_THREAD);
    ASSERT_TRUE(ledger_balanced(writer_ledger(shared_writer), NULL));
    int64_t a = stored_balance(store, "a"), b = stored_balance(store, "b");
    ASSERT_EQ(a + b, 0);
    stop(store, shared_writer);
}

int main(void) {
    TEST_RUN(test_persist_and_restart);
    TEST_RUN(test_commit_fault);
    TEST_RUN(test_foreign_files);
    TEST_RUN(test_concurrent_group_commit);
    return test_finish();
}
