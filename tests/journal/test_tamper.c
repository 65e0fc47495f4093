/* Goal: `paycore verify` passes on a database the engine wrote, and names the row when
 * someone edits the file by hand: a transfer's amount, a journal hash, a deleted
 * journal row, an account balance, a pending transfer's state, a deleted transfer, a
 * balance-history row, a forged checkpoint signature; a wrong --pubkey is refused;
 * exit codes are 0 / 1 / 2.
 * Method: the real store and writer write ~150 batches (plain, pending, post, void, an
 * expiry, burned ids, two checkpoints) into a temp SQLite file; each case copies the
 * file, edits the copy with the sqlite3 command-line tool, runs the paycore binary
 * (PAYCORE_BIN) and reads its exit status and first line. */
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "journal/journal.h"
#include "journal/verify.h"
#include "store/store.h"
#include "test.h"
#include "writer/writer.h"

static char dir[] = "/tmp/paycore-test-tamper-XXXXXX";
static char db_path[300], key_path[300], pub_path[320];
static const char *paycore_bin;

static writer_t *writer;

static void accounts_create(void) {
    ledger_account_t accounts[6];
    ledger_account_result_t results[6];
    memset(accounts, 0, sizeof(accounts));
    for (uint32_t i = 0; i < 6; i++) {
        snprintf(accounts[i].id, sizeof(accounts[i].id), "acct-%u", i);
        strcpy(accounts[i].currency, i < 4 ? "USD" : "JPY");
        accounts[i].code = 1;
    }
    accounts[5].flags = LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS;
    accounts[1].flags = LEDGER_ACCOUNT_HISTORY;
    writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_ACCOUNTS, .event_count = 6, .accounts = accounts,
                        .account_results = results};
    ASSERT_STATUS(writer_submit_wait(writer, &cmd), PC_OK);
    for (uint32_t i = 0; i < 6; i++) ASSERT_STATUS(results[i].status, PC_OK);
}

/* One transfer in its own batch; returns the ledger's result. */
static pc_status transfer(const char *id, uint32_t debit, uint32_t credit, int64_t amount,
                          uint16_t flags, const char *pending_id, uint32_t timeout_s) {
    ledger_transfer_t t;
    ledger_transfer_result_t result;
    memset(&t, 0, sizeof(t));
    snprintf(t.id, sizeof(t.id), "%s", id);
    if (pending_id == NULL) {
        snprintf(t.debit_account_id, sizeof(t.debit_account_id), "acct-%u", debit);
        snprintf(t.credit_account_id, sizeof(t.credit_account_id), "acct-%u", credit);
        strcpy(t.currency, debit < 4 ? "USD" : "JPY");
    } else {
        snprintf(t.pending_id, sizeof(t.pending_id), "%s", pending_id);
    }
    t.amount = amount;
    t.code = 2;
    t.flags = flags;
    t.timeout_s = timeout_s;
    t.metadata_json = amount % 2 ? "{\"note\":\"odd\"}" : NULL;
    writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = 1, .transfers = &t,
                        .transfer_results = &result};
    ASSERT_STATUS(writer_submit_wait(writer, &cmd), PC_OK);
    return result.status;
}

/* Waits until the writer has committed p-expire's expiry (a fixed pause can end
 * before its timer fires on a loaded machine), bounded by a generous deadline. */
static void expiry_wait(void) {
    writer_stats_t stats = {0};
    for (uint32_t waited_ms = 0; waited_ms < 300000; waited_ms += 20) {
        writer_stats(writer, &stats);
        if (stats.expired_committed >= 1) return;
        struct timespec pause = {0, 20 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    TEST_FAIL("the writer did not expire p-expire within 300 s of its 1 s timeout");
}

static void database_build(void) {
    store_t *store;
    store_options_t options = {.create = true, .synchronous_off = true};
    ASSERT_STATUS(store_open(&store, db_path, &options), PC_OK);
    ASSERT_STATUS(writer_start(&writer, store, key_path, NULL), PC_OK);
    accounts_create();
    char id[32];
    for (uint32_t i = 1; i <= 140; i++) {
        snprintf(id, sizeof(id), "t-%u", i);
        ASSERT_STATUS(transfer(id, i % 4, (i + 1) % 4, 100 + i, 0, NULL, 0), PC_OK);
    }
    ASSERT_STATUS(transfer("p-open", 0, 1, 500, LEDGER_TRANSFER_PENDING, NULL, 0), PC_OK);
    ASSERT_STATUS(transfer("p-post", 1, 2, 300, LEDGER_TRANSFER_PENDING, NULL, 0), PC_OK);
    ASSERT_STATUS(transfer("p-void", 2, 3, 70, LEDGER_TRANSFER_PENDING, NULL, 0), PC_OK);
    ASSERT_STATUS(transfer("p-expire", 4, 5, 9, LEDGER_TRANSFER_PENDING, NULL, 1), PC_OK);
    ASSERT_STATUS(transfer("post-1", 0, 0, 250, LEDGER_TRANSFER_POST_PENDING, "p-post", 0), PC_OK);
    ASSERT_STATUS(transfer("void-1", 0, 0, 0, LEDGER_TRANSFER_VOID_PENDING, "p-void", 0), PC_OK);
    ASSERT_STATUS(transfer("burned-1", 5, 4, 10, 0, NULL, 0), PC_EXCEEDS_CREDITS);
    expiry_wait(); /* the writer's timer voids p-expire */
    ASSERT_STATUS(transfer("t-last", 0, 3, 1, 0, NULL, 0), PC_OK);
    writer_stop(writer);
    store_close(store);
}

static int copy_number;

/* A copy of the intact database edited by the sqlite3 tool; returns its path. */
static const char *tampered(const char *sql) {
    static char path[400];
    char cmd[1400];
    snprintf(path, sizeof(path), "%s/copy-%d.db", dir, ++copy_number);
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && sqlite3 '%s' \"%s\" >/dev/null", db_path, path, path, sql);
    ASSERT_EQ(system(cmd), 0);
    return path;
}

/* Runs `paycore verify <args>`; returns the exit status and the first stdout line. */
static int verify_run(const char *args, char *line, size_t line_bytes) {
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "'%s' verify %s 2>/dev/null", paycore_bin, args);
    FILE *p = popen(cmd, "r");
    ASSERT_TRUE(p != NULL);
    line[0] = '\0';
    if (fgets(line, (int)line_bytes, p) == NULL) line[0] = '\0';
    char rest[256];
    while (fgets(rest, sizeof(rest), p) != NULL) {}
    int status = pclose(p);
    ASSERT_TRUE(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void expect_named(const char *sql, const char *pubkey, const char *want1, const char *want2) {
    char args[1000], line[1200];
    snprintf(args, sizeof(args), "--db '%s'%s%s", tampered(sql), pubkey ? " --pubkey " : "",
             pubkey ? pubkey : "");
    int rc = verify_run(args, line, sizeof(line));
    if (rc != 1 || strncmp(line, "verify failed: ", 15) != 0 || strstr(line, want1) == NULL ||
        strstr(line, want2) == NULL) {
        TEST_FAIL("after \"%s\": exit %d, \"%s\"; want exit 1 naming \"%s\" \"%s\"", sql, rc, line,
                  want1, want2);
    }
}

static void test_intact(void) {
    char args[700], line[1200];
    snprintf(args, sizeof(args), "--db '%s'", db_path);
    ASSERT_EQ(verify_run(args, line, sizeof(line)), 0);
    /* 1 account batch + 140 + 8 transfer batches + the expiry's own batch */
    if (strstr(line, "verify ok batches=") != line || strstr(line, " checkpoints=2 ") == NULL ||
        strstr(line, " failures=1 ") == NULL || strstr(line, " pending_open=1 ") == NULL) {
        TEST_FAIL("intact: \"%s\"", line);
    }
    snprintf(args, sizeof(args), "--db '%s' --pubkey '%s'", db_path, pub_path);
    ASSERT_EQ(verify_run(args, line, sizeof(line)), 0);
    snprintf(args, sizeof(args), "--db=%s --pubkey=%s", db_path, pub_path);
    ASSERT_EQ(verify_run(args, line, sizeof(line)), 0);
}

static void test_tampered_rows(void) {
    expect_named("UPDATE transfers SET amount=amount+1 WHERE id='t-17'", NULL, "transfer t-17 (",
                 "row hash mismatch");
    expect_named("UPDATE transfers SET debit_account_id='acct-1' WHERE id='t-99'", NULL,
                 "transfer t-99 (", "row hash mismatch");
    expect_named("UPDATE accounts SET code=9 WHERE id='acct-2'", NULL, "account acct-2",
                 "row hash mismatch");
    expect_named("UPDATE transfer_failures SET result='exceeds_debits'", NULL, "failure burned-1",
                 "row hash mismatch");
    expect_named("DELETE FROM transfers WHERE id='t-50'", NULL, "journal seq", "transfer_count 1, rows 0");
}

static void test_tampered_chain(void) {
    expect_named("UPDATE journal SET hash=randomblob(32) WHERE seq=40", NULL,
                 "journal seq 40: hash mismatch", "");
    expect_named("DELETE FROM journal WHERE seq=30", NULL, "journal seq 30 missing", "");
    expect_named("UPDATE journal SET prev_hash=randomblob(32) WHERE seq=77", NULL,
                 "journal seq 77: prev_hash", "");
    expect_named("DELETE FROM journal WHERE seq=(SELECT max(seq) FROM journal)", NULL,
                 "transfer t-last", "no journal row");
}

static void test_tampered_balances(void) {
    expect_named("UPDATE accounts SET credits_posted=credits_posted+100 WHERE id='acct-3'", NULL,
                 "account acct-3 (no 3): credits_posted", "replay");
    expect_named("UPDATE accounts SET debits_pending=0 WHERE id='acct-0'", NULL,
                 "account acct-0 (no 0): debits_pending 0, replay 500", "");
    expect_named("UPDATE transfers SET pending_state=2 WHERE id='p-open'", NULL, "transfer p-open",
                 "pending_state posted, replay open");
    expect_named("UPDATE transfers SET pending_state=1 WHERE id='p-expire'", NULL,
                 "transfer p-expire", "pending_state open, replay expired");
}

/* Balance history is not hashed: verify replays it. acct-1 has the history flag;
 * t-1 moves acct-1 -> acct-2, so it has one history row (acct-1's). */
static void test_tampered_history(void) {
    expect_named("UPDATE balance_history SET debits_posted=debits_posted+1 WHERE transfer_id='t-1'",
                 NULL, "balance_history of acct-1 at timestamp", "(transfer t-1): balances differ");
    expect_named("DELETE FROM balance_history WHERE transfer_id='t-1'", NULL, "transfer t-1 (",
                 "0 balance_history rows, expected 1");
    expect_named("INSERT INTO balance_history SELECT 'acct-2', timestamp, transfer_id,"
                 " debits_pending, debits_posted, credits_pending, credits_posted"
                 " FROM balance_history WHERE transfer_id='t-1'", NULL,
                 "balance_history of acct-2", "(transfer t-1): no history flag");
    expect_named("UPDATE balance_history SET timestamp=timestamp+1 WHERE transfer_id='t-1'", NULL,
                 "transfer t-1 (", "0 balance_history rows, expected 1");
}

static void test_tampered_checkpoints(void) {
    expect_named("UPDATE journal_checkpoints SET signature=randomblob(64) WHERE seq=64", NULL,
                 "checkpoint seq 64: signature invalid", "");
    expect_named("UPDATE journal_checkpoints SET hash=randomblob(32) WHERE seq=128", NULL,
                 "checkpoint seq 128: hash differs", "");
    expect_named("DELETE FROM journal_checkpoints WHERE seq=64", NULL, "journal seq 65: no checkpoint", "");
    char other_key[400], other_pub[420];
    snprintf(other_key, sizeof(other_key), "%s/other.key", dir);
    snprintf(other_pub, sizeof(other_pub), "%s.pub", other_key);
    journal_key_t other;
    ASSERT_STATUS(journal_key_load_or_create(other_key, &other), PC_OK);
    expect_named("SELECT 1", other_pub, "checkpoint seq 64: signature invalid for --pubkey", "");
}

static void test_usage(void) {
    char line[1200], args[700];
    ASSERT_EQ(verify_run("", line, sizeof(line)), 2);
    ASSERT_EQ(verify_run("--db", line, sizeof(line)), 2);
    ASSERT_EQ(verify_run("--db x.db --what", line, sizeof(line)), 2);
    ASSERT_EQ(verify_run("--help", line, sizeof(line)), 0);
    ASSERT_TRUE(strstr(line, "usage: paycore verify") == line);
    snprintf(args, sizeof(args), "--db '%s/missing.db'", dir);
    ASSERT_EQ(verify_run(args, line, sizeof(line)), 1);
    ASSERT_TRUE(strstr(line, "store_open_failed") != NULL);
    snprintf(args, sizeof(args), "--db '%s' --pubkey '%s/none.pub'", db_path, dir);
    ASSERT_EQ(verify_run(args, line, sizeof(line)), 1);
}

/* ---- random single-cell edits: verify never passes one and never crashes ---- */

typedef struct {
    const char *table;
    const char *key;          /* a unique key of the table (expression) */
} edited_table_t;

static const edited_table_t edited_tables[] = {
    {"accounts", "no"},
    {"transfers", "timestamp"},
    {"transfer_failures", "id"},
    {"journal", "seq"},
    {"journal_checkpoints", "seq"},
    {"balance_history", "account_id || '@' || timestamp"},
};

/* Values an editor might write: off by one, other types, empty, huge, random bytes. */
static const char *const edited_values[] = {
    "%s+1", "%s-1", "randomblob(16)", "randomblob(32)", "randomblob(64)", "''", "'x'", "-1",
    "9223372036854775807", "%s || 'x'", "lower(%s)", "zeroblob(32)", "'t-1'", "'acct-1'",
    "'USD'", "0", "1", "2", "4", "NULL", "x'00'", "'{}'", "%s*2",
};

static uint64_t rng_state = 0x5eed;
static uint32_t rng_below(uint32_t n) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)((rng_state >> 33) % n);
}

static bool text_of(sqlite3 *db, const char *sql, char *out, size_t out_bytes) {
    sqlite3_stmt *stmt;
    out[0] = '\0';
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) return false;
    bool found = sqlite3_step(stmt) == SQLITE_ROW;
    if (found) snprintf(out, out_bytes, "%s", (const char *)sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
    return found;
}

/* A random column of a random row of 'table'; false when the table is empty. */
static bool cell_pick(sqlite3 *db, const edited_table_t *t, char *column, size_t column_bytes,
                      char *key, size_t key_bytes) {
    char sql[300];
    snprintf(sql, sizeof(sql), "SELECT quote(%s) FROM %s ORDER BY %s LIMIT 1 OFFSET abs(random()) %% "
             "max(1, (SELECT count(*) FROM %s))", t->key, t->table, t->key, t->table);
    if (!text_of(db, sql, key, key_bytes)) return false;
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM pragma_table_info('%s')", t->table);
    char count_text[16];
    ASSERT_TRUE(text_of(db, sql, count_text, sizeof(count_text)));
    snprintf(sql, sizeof(sql), "SELECT name FROM pragma_table_info('%s') LIMIT 1 OFFSET %u",
             t->table, rng_below((uint32_t)atoi(count_text)));
    ASSERT_TRUE(text_of(db, sql, column, column_bytes));
    return strcmp(t->table, "journal") != 0 || strcmp(column, "committed_ns") != 0; /* not hashed */
}

/* Applies one random edit to the copy at 'path'; false when it changed nothing. */
static bool cell_edit(const char *path, char *what, size_t what_bytes) {
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    const edited_table_t *t = &edited_tables[rng_below(sizeof(edited_tables) / sizeof(edited_tables[0]))];
    char column[64], key[200], value[64], sql[800], before[400], after[400];
    bool changed = false;
    if (cell_pick(db, t, column, sizeof(column), key, sizeof(key))) {
        const char *pattern = edited_values[rng_below(sizeof(edited_values) / sizeof(edited_values[0]))];
        snprintf(value, sizeof(value), pattern, column, column);
        snprintf(sql, sizeof(sql), "SELECT quote(%s) FROM %s WHERE %s = %s", column, t->table, t->key, key);
        ASSERT_TRUE(text_of(db, sql, before, sizeof(before)));
        snprintf(sql, sizeof(sql), "UPDATE %s SET %s = %s WHERE %s = %s", t->table, column, value,
                 t->key, key);
        if (sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK) { /* constraints may refuse */
            char check[800];
            snprintf(check, sizeof(check), "SELECT quote(%s) FROM %s WHERE %s = %s", column,
                     t->table, t->key, key);
            changed = !text_of(db, check, after, sizeof(after)) || strcmp(before, after) != 0;
            snprintf(what, what_bytes, "%s", sql);
        }
    }
    ASSERT_EQ(sqlite3_close(db), SQLITE_OK);
    return changed;
}

static void test_random_cell_edits(void) {
    bool sanitized = getenv("PAYCORE_SANITIZED") != NULL;
    uint32_t edits = sanitized ? 150 : 400, refused = 0;
    char path[400], cmd[1000], what[800];
    const char *seed_env = getenv("PAYCORE_SEED");
    if (seed_env != NULL) rng_state = strtoull(seed_env, NULL, 10);
    printf("random edits seed=%llu (PAYCORE_SEED replays it)\n", (unsigned long long)rng_state);
    snprintf(path, sizeof(path), "%s/fuzz.db", dir);
    for (uint32_t i = 0; i < edits; i++) {
        snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", db_path, path);
        ASSERT_EQ(system(cmd), 0);
        if (!cell_edit(path, what, sizeof(what))) continue;
        journal_report_t report;
        pc_status status = store_verify(path, NULL, &report);
        if (status == PC_OK) TEST_FAIL("verify passed after: %s", what);
        ASSERT_FALSE(report.ok);
        ASSERT_TRUE(report.discrepancy[0] != '\0' || report.error_detail[0] != '\0');
        refused++;
    }
    printf("random edits: %u refused by verify (of %u tried)\n", refused, edits);
    ASSERT_TRUE(refused > edits / 2);
}

int main(void) {
    paycore_bin = getenv("PAYCORE_BIN");
    if (paycore_bin == NULL) paycore_bin = "./paycore";
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    snprintf(db_path, sizeof(db_path), "%s/ledger.db", dir);
    snprintf(key_path, sizeof(key_path), "%s/ledger.key", dir);
    snprintf(pub_path, sizeof(pub_path), "%s.pub", key_path);
    database_build();
    TEST_RUN(test_intact);
    TEST_RUN(test_tampered_rows);
    TEST_RUN(test_tampered_chain);
    TEST_RUN(test_tampered_balances);
    TEST_RUN(test_tampered_history);
    TEST_RUN(test_tampered_checkpoints);
    TEST_RUN(test_usage);
    TEST_RUN(test_random_cell_edits);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return test_finish();
}
