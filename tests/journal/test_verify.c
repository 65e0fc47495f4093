/* Goal: verify accepts an intact database and names the first discrepancy of each
 * kind of tampering: a row edited, a row deleted, a journal hash changed, a journal
 * row deleted, a balance changed, a pending state changed, a forged signature, a
 * wrong public key, an attacker who rehashes a row; and refuses non-paycore files.
 * Method: build a database row by row with journal.c's encoders, as the writer
 * would (independent of the writer: this checks verify against the documented
 * format), copy it, tamper each copy with SQL, and read the report. */
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include "journal/verify.h"
#include "store/store.h"
#include "test.h"

/* store/sqlite_schema.c: runs the schema migrations on an open database. */
int store_sqlite_migrate(sqlite3 *db, int version_from, char **error_out);

static char temp_dir[] = "/tmp/paycore-test-verify-XXXXXX";
static char db_path[256];
static char key_path[256];
static char pub_path[300];

enum { ACCOUNTS_MAX = 16, BATCH_ROWS_MAX = 64 };

typedef struct {
    sqlite3 *db;
    journal_key_t key;
    uint64_t clock_ns;
    uint64_t seq;
    uint8_t prev_hash[JOURNAL_HASH_BYTES];
    /* the batch being built */
    uint8_t account_hashes[BATCH_ROWS_MAX][16], transfer_hashes[BATCH_ROWS_MAX][16],
        failure_hashes[BATCH_ROWS_MAX][16];
    uint32_t account_count, transfer_count, failure_count;
    uint64_t ts_first, ts_last;
    /* the model: balances by account */
    char ids[ACCOUNTS_MAX][PC_ID_SIZE];
    ledger_balances_t balances[ACCOUNTS_MAX];
    uint32_t accounts;
} builder_t;

static void exec(sqlite3 *db, const char *sql) {
    char *error = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &error) != SQLITE_OK) TEST_FAIL("%s: %s", sql, error);
}

static uint64_t tick(builder_t *b) {
    b->clock_ns += 1000;
    if (b->ts_first == 0) b->ts_first = b->clock_ns;
    b->ts_last = b->clock_ns;
    return b->clock_ns;
}

static void account_add(builder_t *b, const char *id, const char *currency) {
    ledger_account_t a;
    memset(&a, 0, sizeof(a));
    strcpy(a.id, id);
    strcpy(a.currency, currency);
    a.code = 1;
    a.timestamp_ns = tick(b);
    a.metadata_json = b->accounts % 2 ? "{\"n\":\"1\"}" : NULL;
    journal_row_hash_account(&a, b->account_hashes[b->account_count++]);
    sqlite3_stmt *s;
    ASSERT_EQ(sqlite3_prepare_v2(b->db, "INSERT INTO accounts VALUES(?,?,?,1,0,0,0,0,0,?,?,?,?)",
                                 -1, &s, NULL), SQLITE_OK);
    sqlite3_bind_int64(s, 1, b->accounts);
    sqlite3_bind_text(s, 2, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, currency, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, (int64_t)a.timestamp_ns);
    if (a.metadata_json) sqlite3_bind_text(s, 5, a.metadata_json, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, (int64_t)b->seq + 1);
    sqlite3_bind_blob(s, 7, b->account_hashes[b->account_count - 1], 16, SQLITE_STATIC);
    ASSERT_EQ(sqlite3_step(s), SQLITE_DONE);
    sqlite3_finalize(s);
    strcpy(b->ids[b->accounts++], id);
}

static ledger_balances_t *balances_of(builder_t *b, const char *id) {
    for (uint32_t i = 0; i < b->accounts; i++) {
        if (strcmp(b->ids[i], id) == 0) return &b->balances[i];
    }
    TEST_FAIL("no account %s", id);
}

static void transfer_row_insert(builder_t *b, const ledger_transfer_t *t, int pending_state) {
    journal_row_hash_transfer(t, b->transfer_hashes[b->transfer_count++]);
    sqlite3_stmt *s;
    ASSERT_EQ(sqlite3_prepare_v2(b->db, "INSERT INTO transfers VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                                 -1, &s, NULL), SQLITE_OK);
    sqlite3_bind_int64(s, 1, (int64_t)t->timestamp_ns);
    sqlite3_bind_text(s, 2, t->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, t->debit_account_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, t->credit_account_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, t->amount);
    sqlite3_bind_text(s, 6, t->currency, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 7, t->code);
    sqlite3_bind_int(s, 8, t->flags);
    if (t->pending_id[0]) sqlite3_bind_text(s, 9, t->pending_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 10, t->timeout_s);
    if (t->metadata_json) sqlite3_bind_text(s, 11, t->metadata_json, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 12, pending_state);
    sqlite3_bind_int64(s, 13, (int64_t)b->seq + 1);
    sqlite3_bind_blob(s, 14, b->transfer_hashes[b->transfer_count - 1], 16, SQLITE_STATIC);
    ASSERT_EQ(sqlite3_step(s), SQLITE_DONE);
    sqlite3_finalize(s);
}

static void pending_state_set(builder_t *b, const char *id, int state) {
    char sql[200];
    snprintf(sql, sizeof(sql), "UPDATE transfers SET pending_state=%d WHERE id='%s'", state, id);
    exec(b->db, sql);
}

/* kind: 0 plain, 'P' pending, 'p' post, 'v' void, 'x' expiry. */
static void transfer_add(builder_t *b, const char *id, const char *debit, const char *credit,
                         int64_t amount, int kind, const char *pending_id, int64_t pending_amount) {
    ledger_transfer_t t;
    memset(&t, 0, sizeof(t));
    strcpy(t.id, id);
    strcpy(t.debit_account_id, debit);
    strcpy(t.credit_account_id, credit);
    strcpy(t.currency, "USD");
    t.amount = amount;
    t.code = 9;
    t.timestamp_ns = tick(b);
    t.metadata_json = amount % 2 ? "{\"memo\":\"x\"}" : NULL;
    ledger_balances_t *d = balances_of(b, debit), *c = balances_of(b, credit);
    if (kind == 'P') {
        t.flags = LEDGER_TRANSFER_PENDING;
        t.timeout_s = 60;
        d->debits_pending += amount;
        c->credits_pending += amount;
    } else if (kind == 0) {
        d->debits_posted += amount;
        c->credits_posted += amount;
    } else {
        strcpy(t.pending_id, pending_id);
        t.flags = kind == 'p' ? LEDGER_TRANSFER_POST_PENDING
                  : kind == 'v' ? LEDGER_TRANSFER_VOID_PENDING
                                : (LEDGER_TRANSFER_VOID_PENDING | LEDGER_TRANSFER_EXPIRY);
        d->debits_pending -= pending_amount;
        c->credits_pending -= pending_amount;
        if (kind == 'p') {
            d->debits_posted += amount;
            c->credits_posted += amount;
        }
        pending_state_set(b, pending_id, kind == 'p' ? 2 : kind == 'v' ? 3 : 4);
    }
    transfer_row_insert(b, &t, kind == 'P' ? LEDGER_PENDING_OPEN : LEDGER_PENDING_NONE);
}

static void failure_add(builder_t *b, const char *id, pc_status code) {
    ledger_failure_t f;
    memset(&f, 0, sizeof(f));
    strcpy(f.id, id);
    f.failure = code;
    f.timestamp_ns = tick(b);
    journal_row_hash_failure(&f, b->failure_hashes[b->failure_count++]);
    char sql[300];
    snprintf(sql, sizeof(sql), "INSERT INTO transfer_failures VALUES('%s','%s',%llu,%llu,?)", id,
             pc_status_code(code), (unsigned long long)f.timestamp_ns,
             (unsigned long long)b->seq + 1);
    sqlite3_stmt *s;
    ASSERT_EQ(sqlite3_prepare_v2(b->db, sql, -1, &s, NULL), SQLITE_OK);
    sqlite3_bind_blob(s, 1, b->failure_hashes[b->failure_count - 1], 16, SQLITE_STATIC);
    ASSERT_EQ(sqlite3_step(s), SQLITE_DONE);
    sqlite3_finalize(s);
}

/* Ends the batch: journal row (and a checkpoint every 'checkpoint_every' batches). */
static void batch_commit(builder_t *b, uint32_t checkpoint_every) {
    journal_entry_t e;
    memset(&e, 0, sizeof(e));
    journal_content_t content;
    journal_content_init(&content);
    for (uint32_t i = 0; i < b->account_count; i++) journal_content_add(&content, b->account_hashes[i]);
    for (uint32_t i = 0; i < b->transfer_count; i++) journal_content_add(&content, b->transfer_hashes[i]);
    for (uint32_t i = 0; i < b->failure_count; i++) journal_content_add(&content, b->failure_hashes[i]);
    journal_content_final(&content, e.content_hash);
    e.seq = ++b->seq;
    e.timestamp_first_ns = b->ts_first;
    e.timestamp_last_ns = b->ts_last;
    e.account_count = b->account_count;
    e.transfer_count = b->transfer_count;
    e.failure_count = b->failure_count;
    memcpy(e.prev_hash, b->prev_hash, 32);
    journal_entry_seal(&e);
    sqlite3_stmt *s;
    ASSERT_EQ(sqlite3_prepare_v2(b->db, "INSERT INTO journal VALUES(?,?,?,?,?,?,?,?,?,0)", -1, &s,
                                 NULL), SQLITE_OK);
    sqlite3_bind_int64(s, 1, (int64_t)e.seq);
    sqlite3_bind_int64(s, 2, (int64_t)e.timestamp_first_ns);
    sqlite3_bind_int64(s, 3, (int64_t)e.timestamp_last_ns);
    sqlite3_bind_int(s, 4, (int)e.account_count);
    sqlite3_bind_int(s, 5, (int)e.transfer_count);
    sqlite3_bind_int(s, 6, (int)e.failure_count);
    sqlite3_bind_blob(s, 7, e.content_hash, 32, SQLITE_STATIC);
    sqlite3_bind_blob(s, 8, e.prev_hash, 32, SQLITE_STATIC);
    sqlite3_bind_blob(s, 9, e.hash, 32, SQLITE_STATIC);
    ASSERT_EQ(sqlite3_step(s), SQLITE_DONE);
    sqlite3_finalize(s);
    if (e.seq % checkpoint_every == 0) {
        journal_checkpoint_t cp;
        journal_checkpoint_sign(&b->key, &e, &cp);
        ASSERT_EQ(sqlite3_prepare_v2(b->db, "INSERT INTO journal_checkpoints VALUES(?,?,?,?)", -1, &s,
                                     NULL), SQLITE_OK);
        sqlite3_bind_int64(s, 1, (int64_t)cp.seq);
        sqlite3_bind_blob(s, 2, cp.hash, 32, SQLITE_STATIC);
        sqlite3_bind_blob(s, 3, cp.public_key, 32, SQLITE_STATIC);
        sqlite3_bind_blob(s, 4, cp.signature, 64, SQLITE_STATIC);
        ASSERT_EQ(sqlite3_step(s), SQLITE_DONE);
        sqlite3_finalize(s);
    }
    memcpy(b->prev_hash, e.hash, 32);
    b->account_count = b->transfer_count = b->failure_count = 0;
    b->ts_first = b->ts_last = 0;
}

static void balances_write(builder_t *b) {
    for (uint32_t i = 0; i < b->accounts; i++) {
        char sql[300];
        const ledger_balances_t *x = &b->balances[i];
        snprintf(sql, sizeof(sql),
                 "UPDATE accounts SET debits_pending=%lld, debits_posted=%lld,"
                 " credits_pending=%lld, credits_posted=%lld WHERE id='%s'",
                 (long long)x->debits_pending, (long long)x->debits_posted,
                 (long long)x->credits_pending, (long long)x->credits_posted, b->ids[i]);
        exec(b->db, sql);
    }
}

/* Eight batches: accounts, plain transfers, pending/post/void/expiry, a failure, an
 * empty batch; checkpoints every 3 batches. */
static void build_database(const char *path, bool with_duplicate_id) {
    builder_t b;
    memset(&b, 0, sizeof(b));
    ASSERT_STATUS(journal_key_load_or_create(key_path, &b.key), PC_OK);
    ASSERT_EQ(sqlite3_open(path, &b.db), SQLITE_OK);
    exec(b.db, "PRAGMA journal_mode=DELETE; BEGIN");
    char *error = NULL;
    if (store_sqlite_migrate(b.db, 0, &error) != SQLITE_OK) TEST_FAIL("migrate: %s", error);
    exec(b.db, "PRAGMA application_id=0x50594352; PRAGMA user_version=2");
    account_add(&b, "a-1", "USD"); account_add(&b, "a-2", "USD"); account_add(&b, "a-3", "USD");
    batch_commit(&b, 3);
    transfer_add(&b, "t-1", "a-1", "a-2", 500, 0, NULL, 0);
    transfer_add(&b, "t-2", "a-2", "a-3", 200, 0, NULL, 0);
    batch_commit(&b, 3);
    account_add(&b, "e-1", "EUR");
    transfer_add(&b, "p-1", "a-1", "a-3", 300, 'P', NULL, 0);
    transfer_add(&b, "p-2", "a-1", "a-3", 70, 'P', NULL, 0);
    transfer_add(&b, "p-3", "a-2", "a-1", 11, 'P', NULL, 0);
    transfer_add(&b, "p-4", "a-3", "a-2", 13, 'P', NULL, 0);
    failure_add(&b, "f-1", PC_EXCEEDS_CREDITS);
    batch_commit(&b, 3);
    transfer_add(&b, "t-3", "a-3", "a-1", 41, 0, NULL, 0);
    transfer_add(&b, "t-4", "a-1", "a-3", 250, 'p', "p-1", 300);
    batch_commit(&b, 3);
    batch_commit(&b, 3); /* nothing happened */
    transfer_add(&b, "t-5", "a-1", "a-3", 70, 'v', "p-2", 70);
    transfer_add(&b, "t-6", "a-2", "a-1", 11, 'x', "p-3", 11);
    failure_add(&b, "f-2", PC_ACCOUNT_NOT_FOUND);
    failure_add(&b, "f-3", PC_EXCEEDS_DEBITS);
    batch_commit(&b, 3);
    for (int i = 0; i < 2; i++) {
        char id[16];
        snprintf(id, sizeof(id), "t-%d", with_duplicate_id && i == 1 ? 2 : 7 + i);
        transfer_add(&b, id, "a-2", "a-1", 1 + i, 0, NULL, 0);
        batch_commit(&b, 3);
    }
    balances_write(&b);
    exec(b.db, "COMMIT");
    ASSERT_EQ(sqlite3_close(b.db), SQLITE_OK);
    journal_key_wipe(&b.key);
}

static int copy_number;

/* A fresh copy of the intact database with 'sql' applied; returns its path. */
static const char *tampered(const char *sql) {
    static char path[300];
    char cmd[700];
    snprintf(path, sizeof(path), "%s/copy-%d.db", temp_dir, ++copy_number);
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", db_path, path);
    ASSERT_EQ(system(cmd), 0);
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    exec(db, sql);
    ASSERT_EQ(sqlite3_close(db), SQLITE_OK);
    return path;
}

static void expect_discrepancy(const char *sql, const char *pubkey, const char *want1,
                               const char *want2) {
    journal_report_t report;
    ASSERT_STATUS(store_verify(tampered(sql), pubkey, &report), PC_JOURNAL_MISMATCH);
    ASSERT_FALSE(report.ok);
    if (strstr(report.discrepancy, want1) == NULL || strstr(report.discrepancy, want2) == NULL) {
        TEST_FAIL("after \"%s\": got \"%s\", want \"%s\" and \"%s\"", sql, report.discrepancy,
                  want1, want2);
    }
}

static void test_intact(void) {
    journal_report_t report;
    ASSERT_STATUS(store_verify(db_path, NULL, &report), PC_OK);
    ASSERT_TRUE(report.ok);
    ASSERT_EQ(report.batches, 8);
    ASSERT_EQ(report.accounts, 4);
    ASSERT_EQ(report.transfers, 12);
    ASSERT_EQ(report.failures, 3);
    ASSERT_EQ(report.checkpoints, 2);
    ASSERT_EQ(report.pending_open, 1);
    ASSERT_STR_EQ(report.discrepancy, "");
    ASSERT_STATUS(store_verify(db_path, pub_path, &report), PC_OK);
    char line[1024];
    journal_report_line(&report, line, sizeof(line));
    const char *want = "verify ok batches=8 transfers=12 accounts=4 checkpoints=2 failures=3";
    ASSERT_TRUE(strncmp(line, want, strlen(want)) == 0);
}

/* A version 1 file (signed journal checkpoints in 'checkpoints') verifies as it is;
 * an unreadable or malformed balance-snapshot seq is named, never read as absent. */
static void test_version_1_and_snapshot_seq(void) {
    journal_report_t report;
    ASSERT_STATUS(store_verify(tampered("ALTER TABLE journal_checkpoints RENAME TO checkpoints;"
                                                 " PRAGMA user_version=1"), pub_path, &report), PC_OK);
    ASSERT_EQ(report.checkpoints, 2);
    expect_discrepancy("INSERT OR REPLACE INTO meta VALUES('accounts_as_of_seq', 'x7')", NULL,
                       "meta accounts_as_of_seq is not a seq: 'x7'", "");
    expect_discrepancy("INSERT OR REPLACE INTO meta VALUES('accounts_as_of_seq', 9)", NULL,
                       "meta accounts_as_of_seq 9 is past the last journal seq 8", "");
}

static void test_row_tampering(void) {
    expect_discrepancy("UPDATE transfers SET amount=amount+1 WHERE id='t-3'", NULL,
                       "transfer t-3 (timestamp", "batch 4): row hash mismatch");
    expect_discrepancy("UPDATE transfers SET metadata=NULL WHERE id='t-7'", NULL,
                       "transfer t-7", "row hash mismatch");
    expect_discrepancy("UPDATE transfers SET credit_account_id='a-3' WHERE id='t-1'", NULL,
                       "transfer t-1", "row hash mismatch");
    expect_discrepancy("UPDATE accounts SET currency='EUR' WHERE id='a-2'", NULL,
                       "account a-2 (no 1, batch 1)", "row hash mismatch");
    expect_discrepancy("UPDATE transfer_failures SET result='exceeds_debits' WHERE id='f-1'", NULL,
                       "failure f-1", "row hash mismatch");
    /* An attacker who recomputes the row hash still breaks the batch's content. */
    ledger_transfer_t t;
    memset(&t, 0, sizeof(t));
    strcpy(t.id, "t-1");
    strcpy(t.debit_account_id, "a-1");
    strcpy(t.credit_account_id, "a-2");
    strcpy(t.currency, "USD");
    t.amount = 501;
    t.code = 9;
    t.timestamp_ns = 4000;
    uint8_t row_hash[16];
    char sql[200], hex[33];
    journal_row_hash_transfer(&t, row_hash);
    journal_hex(row_hash, 16, hex);
    snprintf(sql, sizeof(sql), "UPDATE transfers SET amount=501, row_hash=X'%s' WHERE id='t-1'",
             hex);
    expect_discrepancy(sql, NULL, "journal seq 2: content_hash mismatch", "");
    expect_discrepancy("DELETE FROM transfers WHERE id='t-2'", NULL, "journal seq 2",
                       "transfer_count 2, rows 1");
    expect_discrepancy("UPDATE transfers SET row_hash=(SELECT row_hash FROM transfers WHERE"
                       " id='t-2'), amount=200 WHERE id='t-1'", NULL, "transfer t-1",
                       "row hash mismatch");
    /* The file has no unique index on ids: a duplicate, even with a valid row hash,
     * is named, never a crash. */
    ledger_transfer_t d;
    memset(&d, 0, sizeof(d));
    strcpy(d.id, "p-4");
    strcpy(d.debit_account_id, "a-3");
    strcpy(d.credit_account_id, "a-2");
    strcpy(d.currency, "USD");
    d.amount = 13;
    d.code = 9;
    d.flags = LEDGER_TRANSFER_PENDING;
    d.timeout_s = 60;
    d.timestamp_ns = 10001;
    d.metadata_json = "{\"memo\":\"x\"}";
    uint8_t duplicate_hash[16];
    char duplicate_sql[400], duplicate_hex[33];
    journal_row_hash_transfer(&d, duplicate_hash);
    journal_hex(duplicate_hash, 16, duplicate_hex);
    snprintf(duplicate_sql, sizeof(duplicate_sql),
             "INSERT INTO transfers SELECT 10001, id, debit_account_id, credit_account_id,"
             " amount, currency, code, flags, pending_id, timeout_s, metadata, pending_state,"
             " batch_seq, X'%s' FROM transfers WHERE id='p-4'", duplicate_hex);
    expect_discrepancy(duplicate_sql, NULL, "transfer p-4 (timestamp 10001, batch 3)",
                       "id appears twice");
    expect_discrepancy("UPDATE transfers SET batch_seq=3 WHERE id='t-3'", NULL, "transfer t-3",
                       "outside the batch's timestamps");
    expect_discrepancy("UPDATE transfers SET batch_seq=1 WHERE id='t-3'", NULL, "transfer t-3",
                       "out of order");
}

static void test_chain_tampering(void) {
    expect_discrepancy("UPDATE journal SET hash=zeroblob(32) WHERE seq=5", NULL,
                       "journal seq 5: hash mismatch", "");
    expect_discrepancy("UPDATE journal SET content_hash=zeroblob(32) WHERE seq=2", NULL,
                       "journal seq 2: content_hash mismatch", "");
    expect_discrepancy("DELETE FROM journal WHERE seq=4", NULL, "journal seq 4 missing", "");
    expect_discrepancy("DELETE FROM journal WHERE seq=8", NULL, "transfer t-8", "no journal row");
    expect_discrepancy("UPDATE journal SET transfer_count=3 WHERE seq=2", NULL,
                       "journal seq 2: transfer_count 3, rows 2", "");
    expect_discrepancy("UPDATE journal SET timestamp_last=timestamp_last+1 WHERE seq=7", NULL,
                       "journal seq 7: hash mismatch", "");
}

static void test_balance_tampering(void) {
    expect_discrepancy("UPDATE accounts SET credits_posted=credits_posted+1 WHERE id='a-2'", NULL,
                       "account a-2 (no 1): credits_posted", "replay");
    expect_discrepancy("UPDATE accounts SET debits_pending=0 WHERE id='a-3'", NULL,
                       "account a-3 (no 2): debits_pending 0, replay 13", "");
    expect_discrepancy("UPDATE transfers SET pending_state=2 WHERE id='p-4'", NULL,
                       "transfer p-4", "pending_state posted, replay open");
    expect_discrepancy("UPDATE transfers SET pending_state=3 WHERE id='p-1'", NULL,
                       "transfer p-1", "pending_state voided, replay posted");
}

static void test_checkpoint_tampering(void) {
    expect_discrepancy("UPDATE journal_checkpoints SET signature=randomblob(64) WHERE seq=6", NULL,
                       "checkpoint seq 6: signature invalid", "");
    expect_discrepancy("UPDATE journal_checkpoints SET hash=zeroblob(32) WHERE seq=3", NULL,
                       "checkpoint seq 3: hash differs", "");
    expect_discrepancy("UPDATE journal_checkpoints SET public_key=randomblob(32) WHERE seq=6", NULL,
                       "checkpoint seq 6: signed by another key", "");
    expect_discrepancy("DELETE FROM journal WHERE seq=8; INSERT INTO journal_checkpoints"
                       " SELECT 9, hash, public_key, signature FROM journal_checkpoints WHERE seq=6",
                       NULL, "", "no journal row");
    /* Another node's key: every signature fails against it. */
    char other_key[300], other_pub[310];
    snprintf(other_key, sizeof(other_key), "%s/other.key", temp_dir);
    snprintf(other_pub, sizeof(other_pub), "%s.pub", other_key);
    journal_key_t other;
    ASSERT_STATUS(journal_key_load_or_create(other_key, &other), PC_OK);
    expect_discrepancy("SELECT 1", other_pub, "checkpoint seq 3: signature invalid for --pubkey",
                       "");
}

/* A chain that is intact yet holds one id twice (a writer bug, or a forger with the
 * key) is still refused. */
static void test_duplicate_id_in_valid_chain(void) {
    char path[300];
    journal_report_t report;
    snprintf(path, sizeof(path), "%s/duplicate.db", temp_dir);
    build_database(path, true);
    ASSERT_STATUS(store_verify(path, NULL, &report), PC_JOURNAL_MISMATCH);
    ASSERT_STR_EQ(report.discrepancy, "transfer id t-2: appears 2 times");
}

static void test_not_verifiable(void) {
    journal_report_t report;
    char path[300];
    snprintf(path, sizeof(path), "%s/missing.db", temp_dir);
    ASSERT_STATUS(store_verify(path, NULL, &report), PC_STORE_OPEN_FAILED);
    ASSERT_FALSE(report.ok);
    ASSERT_STATUS(store_verify(tampered("PRAGMA application_id=7"), NULL, &report),
                  PC_STORE_NOT_PAYCORE);
    ASSERT_STR_EQ(report.error_detail, "application_id 7 is not paycore's");
    ASSERT_STATUS(store_verify(tampered("PRAGMA user_version=99"), NULL, &report),
                  PC_STORE_VERSION_UNSUPPORTED);
    char expected[96]; /* the newest version is limits.h's: renumbering it is one line */
    snprintf(expected, sizeof expected, "schema version 99; this verifier reads versions 1 to %d",
             STORE_SCHEMA_VERSION_MAX);
    ASSERT_STR_EQ(report.error_detail, expected);
    ASSERT_STATUS(store_verify(db_path, path, &report), PC_NOT_FOUND);
    ASSERT_STATUS(store_verify(db_path, db_path, &report), PC_KEY_FILE_INVALID);
}

int main(void) {
    ASSERT_TRUE(mkdtemp(temp_dir) != NULL);
    snprintf(db_path, sizeof(db_path), "%s/intact.db", temp_dir);
    snprintf(key_path, sizeof(key_path), "%s/node.key", temp_dir);
    snprintf(pub_path, sizeof(pub_path), "%s.pub", key_path);
    build_database(db_path, false);
    TEST_RUN(test_intact);
    TEST_RUN(test_version_1_and_snapshot_seq);
    TEST_RUN(test_row_tampering);
    TEST_RUN(test_chain_tampering);
    TEST_RUN(test_balance_tampering);
    TEST_RUN(test_checkpoint_tampering);
    TEST_RUN(test_duplicate_id_in_valid_chain);
    TEST_RUN(test_not_verifiable);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", temp_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", temp_dir);
    return test_finish();
}
