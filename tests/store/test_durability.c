/* Goal: the store and writer never acknowledge what is not durable, never lose what
 * they acknowledged, and never keep running on memory that may disagree with the
 * file: across batches without ledger rows, failed batches, failed fsyncs, full
 * disks, read errors at start, a second writer, and a lost or foreign signing key.
 * Method: real SQLite files in a temp dir; faults injected where SQLite meets the
 * OS (the fault VFS: a failed WAL fsync, a full disk, a failed read), in
 * in_transaction hooks and at COMMIT; crashes are child processes that _exit
 * without stopping. After each case `verify` must pass on the file and a restart
 * must load the balances every acknowledged transfer implies. A pending transfer
 * posted in the batch that made it is stored posted (the batch's rows wait to be
 * inserted several per statement, its update must still find the row).
 * On PostgreSQL (PAYCORE_TEST_PG_HOST, the socket directory of a throwaway cluster:
 * tests/store/test_durability_pg.py) the cases that are not SQLite faults run against
 * a new database each: batches without ledger rows and a crash, a failed COMMIT's
 * accounts, a failing hook, no spin while commits fail, the signing key, a replaced
 * idempotent reply's room, and the writer's pipeline when either part's COMMIT fails. */
#include <fcntl.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "journal/verify.h"
#include "ledger/ledger.h"
#include "store/store.h"
#include "store/store_api.h"
#include "test.h"
#include "writer/writer.h"

static char dir[256], db_path[300], key_path[300], pub_path[320];
/* The store: db_path, or on PostgreSQL a new database of the cluster at pg_host. */
static char location[600];
static const char *pg_host;

/* CREATE DATABASE on the cluster; its URL into 'location'. */
static void pg_database_make(const char *name) {
    char url[400], sql[200];
    snprintf(url, sizeof url, "postgresql://paycore@/postgres?host=%s", pg_host);
    PGconn *conn = PQconnectdb(url);
    if (PQstatus(conn) != CONNECTION_OK) TEST_FAIL("connecting to %s: %s", url, PQerrorMessage(conn));
    snprintf(sql, sizeof sql, "CREATE DATABASE dur_%s_%d", name, (int)getpid());
    PGresult *result = PQexec(conn, sql);
    if (PQresultStatus(result) != PGRES_COMMAND_OK) TEST_FAIL("%s: %s", sql, PQerrorMessage(conn));
    PQclear(result);
    PQfinish(conn);
    snprintf(location, sizeof location, "postgresql://paycore@/dur_%s_%d?host=%s", name, (int)getpid(), pg_host);
}

static void paths_make(const char *name) {
    snprintf(dir, sizeof dir, "/tmp/paycore-test-durability-XXXXXX");
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    snprintf(db_path, sizeof db_path, "%s/%s.db", dir, name);
    snprintf(key_path, sizeof key_path, "%s/%s.db.key", dir, name);
    snprintf(pub_path, sizeof pub_path, "%s.pub", key_path);
    if (pg_host != NULL) pg_database_make(name);
    else snprintf(location, sizeof location, "%s", db_path);
}

static void paths_remove(void) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ASSERT_EQ(system(cmd), 0);
}

static pc_status start_with(store_t **store, writer_t **writer, const store_options_t *options,
                            const writer_config_t *config) {
    pc_status status = store_open(store, location, options);
    if (status != PC_OK) return status;
    status = writer_start(writer, *store, key_path, config);
    if (status != PC_OK) store_close(*store);
    return status;
}

static void start(store_t **store, writer_t **writer) {
    store_options_t options = {.create = true};
    ASSERT_STATUS(start_with(store, writer, &options, NULL), PC_OK);
}

static void stop(store_t *store, writer_t *writer) {
    writer_stop(writer);
    store_close(store);
}

static pc_status accounts_create(writer_t *writer, const char *const *ids, uint32_t count) {
    ledger_account_t accounts[8] = {0};
    ledger_account_result_t results[8];
    ASSERT_TRUE(count <= 8);
    for (uint32_t i = 0; i < count; i++) {
        snprintf(accounts[i].id, sizeof accounts[i].id, "%s", ids[i]);
        memcpy(accounts[i].currency, "USD", 4);
        accounts[i].code = 1;
    }
    writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_ACCOUNTS, .event_count = count, .accounts = accounts,
                        .account_results = results};
    pc_status status = writer_submit_wait(writer, &cmd);
    for (uint32_t i = 0; status == PC_OK && i < count; i++) ASSERT_STATUS(results[i].status, PC_OK);
    return status;
}

static void transfer_fill(ledger_transfer_t *t, const char *id, const char *dr, const char *cr, int64_t amount) {
    memset(t, 0, sizeof(*t));
    snprintf(t->id, sizeof t->id, "%s", id);
    snprintf(t->debit_account_id, sizeof t->debit_account_id, "%s", dr);
    snprintf(t->credit_account_id, sizeof t->credit_account_id, "%s", cr);
    memcpy(t->currency, "USD", 4);
    t->amount = amount;
    t->code = 1;
}

/* The commit status; *result the ledger's (PC_OK: created). */
static pc_status transfer(writer_t *writer, const char *id, const char *dr, const char *cr, int64_t amount,
                          pc_status *result) {
    ledger_transfer_t t;
    ledger_transfer_result_t r = {0};
    transfer_fill(&t, id, dr, cr, amount);
    writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = 1, .transfers = &t,
                        .transfer_results = &r};
    pc_status status = writer_submit_wait(writer, &cmd);
    if (result != NULL) *result = r.status;
    return status;
}

static void transfer_ok(writer_t *writer, const char *id, const char *dr, const char *cr, int64_t amount) {
    pc_status result;
    ASSERT_STATUS(transfer(writer, id, dr, cr, amount, &result), PC_OK);
    ASSERT_STATUS(result, PC_OK);
}

static char key_id_next[PC_ID_SIZE]; /* writer_submit_wait owns cmd->user */

static pc_status key_insert_in_tx(writer_cmd_t *cmd, store_tx_t *tx) {
    (void)cmd;
    store_api_key_t key = {0};
    snprintf(key.id, sizeof key.id, "%s", key_id_next);
    memset(key.key_hash, key_id_next[strlen(key_id_next) - 1], sizeof key.key_hash);
    snprintf(key.scope, sizeof key.scope, "admin");
    snprintf(key.name, sizeof key.name, "test");
    key.created_ns = 1;
    return store_api_key_insert(tx, &key);
}

/* A batch with no ledger rows: an API key, as the API creates one. */
static void api_key_create(writer_t *writer, const char *key_id) {
    snprintf(key_id_next, sizeof key_id_next, "%s", key_id);
    writer_cmd_t cmd = {.kind = WRITER_CMD_EXEC, .in_transaction = key_insert_in_tx};
    ASSERT_STATUS(writer_submit_wait(writer, &cmd), PC_OK);
}

static int64_t credits_of(writer_t *writer, const char *id) {
    const ledger_account_t *a = ledger_account_find(writer_ledger(writer), id);
    ASSERT_TRUE(a != NULL);
    return a->balances.credits_posted - a->balances.debits_posted;
}

static void verify_ok(const char *when) {
    journal_report_t report;
    pc_status status = store_verify(location, access(pub_path, F_OK) == 0 ? pub_path : NULL, &report);
    if (status != PC_OK) {
        char line[1200];
        TEST_FAIL("%s: %s %s (%s)", when, pc_status_code(status), journal_report_line(&report, line, sizeof line),
                  report.error_detail);
    }
}

/* Whether a transfer row with this id is in the store (read as verify reads it). */
static bool in_file(const char *transfer_id) {
    journal_rows_t *rows;
    char detail[JOURNAL_REPORT_TEXT_BYTES];
    pc_status status = store_rows_open(location, &rows, detail, sizeof detail);
    if (status != PC_OK) TEST_FAIL("reading the store: %s %s", pc_status_code(status), detail);
    ASSERT_STATUS(rows->ops->stream_open(rows, JOURNAL_STREAM_TRANSFERS), PC_OK);
    bool found = false, has_row = false;
    while (!found && rows->ops->next(rows, JOURNAL_STREAM_TRANSFERS, &has_row) == PC_OK && has_row) {
        journal_value_t id;
        rows->ops->value(rows, JOURNAL_STREAM_TRANSFERS, 1, &id);
        found = id.kind == JOURNAL_VALUE_TEXT && strcmp((const char *)id.bytes, transfer_id) == 0;
    }
    rows->ops->close(rows);
    return found;
}

/* Runs 'fn' in a child that dies without stopping anything (a crash); returns the
 * status the child wrote to the pipe. */
static pc_status crash_child(pc_status (*fn)(void)) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t child = fork();
    ASSERT_TRUE(child >= 0);
    if (child == 0) {
        close(fds[0]);
        pc_status status = fn();
        if (write(fds[1], &status, sizeof status) != sizeof status) _exit(9);
        _exit(0);
    }
    close(fds[1]);
    pc_status status = PC_INTERNAL;
    ASSERT_EQ(read(fds[0], &status, sizeof status), (ssize_t)sizeof status);
    close(fds[0]);
    int wait_status;
    ASSERT_EQ(waitpid(child, &wait_status, 0), child);
    ASSERT_TRUE(WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0);
    return status;
}

static const char *const ab[] = {"a", "b"};

/* A new database holding accounts a, b and t1 (a -> b, 100), cleanly stopped. */
static void database_with_t1(const char *name) {
    paths_make(name);
    store_t *store;
    writer_t *writer;
    start(&store, &writer);
    ASSERT_STATUS(accounts_create(writer, ab, 2), PC_OK);
    transfer_ok(writer, "t1", "a", "b", 100);
    stop(store, writer);
}

/* ---- batches without ledger rows take no seq (issue: acknowledged money lost) ---- */

static pc_status crash_after_transfer_50(void) {
    store_t *store;
    writer_t *writer;
    store_options_t options = {.create = false};
    pc_status status = start_with(&store, &writer, &options, NULL);
    if (status != PC_OK) return status;
    pc_status result;
    status = transfer(writer, "t2", "a", "b", 50, &result);
    return status != PC_OK ? status : result; /* and die: no stop, no snapshot */
}

/* Goal: a key creation before a clean stop does not make the next batch's seq fall
 * behind the balance snapshot. Method: a, b; t1 100; an API key; clean stop; verify;
 * restart in a child, t2 50, crash; verify; b must hold 150. */
static void test_batch_without_rows_takes_no_seq(void) {
    paths_make("seq");
    store_t *store;
    writer_t *writer;
    start(&store, &writer);
    verify_ok("an empty database");
    ASSERT_STATUS(accounts_create(writer, ab, 2), PC_OK);
    transfer_ok(writer, "t1", "a", "b", 100);
    uint64_t head = store_journal_head_seq(store);
    api_key_create(writer, "key_1");
    ASSERT_EQ(store_journal_head_seq(store), head);
    pc_status result;
    ASSERT_STATUS(transfer(writer, "t1", "a", "b", 100, &result), PC_OK);
    ASSERT_STATUS(result, PC_EXISTS); /* an idempotent replay: no rows either */
    ASSERT_EQ(store_journal_head_seq(store), head);
    stop(store, writer);
    verify_ok("after a clean stop");
    ASSERT_STATUS(crash_child(crash_after_transfer_50), PC_OK);
    verify_ok("after the crash");
    start(&store, &writer);
    ASSERT_EQ(credits_of(writer, "b"), 150);
    ASSERT_EQ(credits_of(writer, "a"), -150);
    stop(store, writer);
    verify_ok("after the last stop");
    paths_remove();
}

/* ---- a pending transfer posted in the batch that made it ----
 * A batch's transfer rows wait to be inserted several per statement; the pending
 * update of the same batch must find its row (it is inserted first). */

/* The pending_state column of transfer 'id', read as a fresh connection sees the file. */
static int pending_state_in_file(const char *id) {
    sqlite3 *db;
    sqlite3_stmt *stmt;
    int state = -1;
    ASSERT_EQ(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT pending_state FROM transfers WHERE id = ?1", -1, &stmt, NULL),
              SQLITE_OK);
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) == SQLITE_ROW) state = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return state;
}

static void test_pending_posted_in_its_batch(void) {
    enum { PLAIN = 20 }; /* one statement's rows inserted before the pending, a few waiting with it */
    paths_make("posted");
    store_t *store;
    writer_t *writer;
    start(&store, &writer);
    ASSERT_STATUS(accounts_create(writer, ab, 2), PC_OK);
    ledger_transfer_t t[2 + PLAIN];
    ledger_transfer_result_t r[2 + PLAIN];
    for (uint32_t i = 0; i < PLAIN; i++) {
        char id[16];
        snprintf(id, sizeof id, "x%u", i);
        transfer_fill(&t[i], id, "a", "b", 1);
    }
    transfer_fill(&t[PLAIN], "p1", "a", "b", 100);
    t[PLAIN].flags = LEDGER_TRANSFER_PENDING;
    transfer_fill(&t[PLAIN + 1], "p1-post", "a", "b", 100);
    t[PLAIN + 1].flags = LEDGER_TRANSFER_POST_PENDING;
    snprintf(t[PLAIN + 1].pending_id, sizeof t[PLAIN + 1].pending_id, "p1");
    writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = 2 + PLAIN, .transfers = t,
                        .transfer_results = r};
    ASSERT_STATUS(writer_submit_wait(writer, &cmd), PC_OK);
    for (uint32_t i = 0; i < 2 + PLAIN; i++) ASSERT_STATUS(r[i].status, PC_OK);
    ASSERT_EQ(pending_state_in_file("p1"), LEDGER_PENDING_POSTED);
    ASSERT_TRUE(in_file("x19"));
    stop(store, writer);
    verify_ok("after the batch");
    start(&store, &writer); /* an open pending would be loaded again from its row */
    ASSERT_EQ(credits_of(writer, "b"), 100 + PLAIN);
    const ledger_account_t *b = ledger_account_find(writer_ledger(writer), "b");
    ASSERT_TRUE(b != NULL);
    ASSERT_EQ(b->balances.credits_pending, 0);
    stop(store, writer);
    paths_remove();
}

/* Goal: the pending transfers a batch resolves, several a statement (sqlite_tx.c: one
 * UPDATE per state of up to 16 rows), each get their own new state, and the open ones
 * stay in the open-pending index. Method: 40 pending transfers in one batch; the next
 * posts 20 (a statement of 16 and one of 4) and voids 17 (16 and 1), 3 stay open; each
 * row's state is read from the file, the index holds the 3, verify passes, and the
 * restart loads the 3 as pending again. */
static void test_pending_resolved_many(void) {
    enum { PENDINGS = 40, POSTS = 20, VOIDS = 17 };
    paths_make("resolved");
    store_t *store;
    writer_t *writer;
    start(&store, &writer);
    ASSERT_STATUS(accounts_create(writer, ab, 2), PC_OK);
    ledger_transfer_t t[PENDINGS];
    ledger_transfer_result_t r[PENDINGS];
    for (uint32_t i = 0; i < PENDINGS; i++) {
        char id[16];
        snprintf(id, sizeof id, "p%u", i);
        transfer_fill(&t[i], id, "a", "b", 1 + i);
        t[i].flags = LEDGER_TRANSFER_PENDING;
    }
    writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = PENDINGS, .transfers = t,
                        .transfer_results = r};
    ASSERT_STATUS(writer_submit_wait(writer, &cmd), PC_OK);
    for (uint32_t i = 0; i < POSTS + VOIDS; i++) {
        char id[16];
        snprintf(id, sizeof id, "r%u", i);
        transfer_fill(&t[i], id, "a", "b", 1 + i);
        t[i].flags = i < POSTS ? LEDGER_TRANSFER_POST_PENDING : LEDGER_TRANSFER_VOID_PENDING;
        snprintf(t[i].pending_id, sizeof t[i].pending_id, "p%u", i);
    }
    cmd = (writer_cmd_t){.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = POSTS + VOIDS, .transfers = t,
                         .transfer_results = r};
    ASSERT_STATUS(writer_submit_wait(writer, &cmd), PC_OK);
    for (uint32_t i = 0; i < POSTS + VOIDS; i++) ASSERT_STATUS(r[i].status, PC_OK);
    stop(store, writer);
    for (uint32_t i = 0; i < PENDINGS; i++) {
        char id[16];
        snprintf(id, sizeof id, "p%u", i);
        int want = i < POSTS ? LEDGER_PENDING_POSTED : i < POSTS + VOIDS ? LEDGER_PENDING_VOIDED : LEDGER_PENDING_OPEN;
        ASSERT_EQ(pending_state_in_file(id), want);
    }
    sqlite3 *db;
    sqlite3_stmt *stmt;
    ASSERT_EQ(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT count(*) FROM transfers INDEXED BY transfers_open_pending"
                                     " WHERE pending_state = 1", -1, &stmt, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    ASSERT_EQ(sqlite3_column_int(stmt, 0), PENDINGS - POSTS - VOIDS);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    verify_ok("after the resolutions");
    start(&store, &writer); /* the open ones are loaded again from their rows */
    const ledger_account_t *b = ledger_account_find(writer_ledger(writer), "b");
    ASSERT_TRUE(b != NULL);
    ASSERT_EQ(b->balances.credits_pending, 38 + 39 + 40);
    ASSERT_EQ(credits_of(writer, "b"), POSTS * (POSTS + 1) / 2);
    stop(store, writer);
    paths_remove();
}

/* ---- a rolled-back batch leaves nothing on the dirty list ---- */

/* A hook that holds the writer inside its batch until released: commands submitted
 * meanwhile queue up and are drained into the next batch together. */
static pthread_mutex_t hold_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cond = PTHREAD_COND_INITIALIZER;
static int hold_state; /* 0 idle, 1 the writer is held, 2 released */

static pc_status hold_in_tx(writer_cmd_t *cmd, store_tx_t *tx) {
    (void)cmd;
    (void)tx;
    pthread_mutex_lock(&hold_mutex);
    hold_state = 1;
    pthread_cond_broadcast(&hold_cond);
    while (hold_state != 2) pthread_cond_wait(&hold_cond, &hold_mutex);
    pthread_mutex_unlock(&hold_mutex);
    return PC_OK;
}

static void *hold_submit(void *arg) {
    writer_cmd_t cmd = {.kind = WRITER_CMD_EXEC, .in_transaction = hold_in_tx};
    ASSERT_STATUS(writer_submit_wait(arg, &cmd), PC_OK);
    return NULL;
}

typedef struct {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    int done;
    pc_status status[2];
} async_t;

static void async_done(writer_cmd_t *cmd, pc_status status) {
    async_t *a = cmd->user;
    pthread_mutex_lock(&a->mutex);
    a->status[a->done++] = status;
    pthread_cond_signal(&a->cond);
    pthread_mutex_unlock(&a->mutex);
}

/* Goal: accounts a failed batch created and moved money to are not written by the
 * next balance snapshot (they no longer exist). Method: the writer is held inside
 * batch 2 while "create c" and "a -> c" queue up; they run as batch 3, whose COMMIT
 * fails; the stop writes a snapshot; restart: c is absent, verify passes. */
static void test_failed_batch_leaves_no_dirty_accounts(void) {
    paths_make("dirty");
    store_t *store;
    writer_t *writer;
    store_options_t options = {.create = true, .fault_commit_at = 3};
    ASSERT_STATUS(start_with(&store, &writer, &options, NULL), PC_OK);
    ASSERT_STATUS(accounts_create(writer, ab, 2), PC_OK); /* commit 1 */
    pthread_t holder;
    ASSERT_EQ(pthread_create(&holder, NULL, hold_submit, writer), 0); /* commit 2 */
    pthread_mutex_lock(&hold_mutex);
    while (hold_state != 1) pthread_cond_wait(&hold_cond, &hold_mutex);
    pthread_mutex_unlock(&hold_mutex);
    async_t a = {.mutex = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    ledger_account_t c = {.id = "c", .currency = "USD", .code = 1};
    ledger_account_result_t c_result;
    writer_cmd_t create = {.kind = WRITER_CMD_CREATE_ACCOUNTS, .event_count = 1, .accounts = &c,
                           .account_results = &c_result, .done = async_done, .user = &a};
    ledger_transfer_t t;
    ledger_transfer_result_t t_result;
    transfer_fill(&t, "to-c", "a", "c", 5);
    writer_cmd_t move = {.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = 1, .transfers = &t,
                         .transfer_results = &t_result, .done = async_done, .user = &a};
    ASSERT_STATUS(writer_submit(writer, &create), PC_OK);
    ASSERT_STATUS(writer_submit(writer, &move), PC_OK);
    pthread_mutex_lock(&hold_mutex);
    hold_state = 2;
    pthread_cond_broadcast(&hold_cond);
    pthread_mutex_unlock(&hold_mutex);
    pthread_join(holder, NULL);
    pthread_mutex_lock(&a.mutex);
    while (a.done < 2) pthread_cond_wait(&a.cond, &a.mutex);
    pthread_mutex_unlock(&a.mutex);
    ASSERT_STATUS(a.status[0], PC_STORE_COMMIT_FAILED); /* commit 3: both, in one batch */
    ASSERT_STATUS(a.status[1], PC_STORE_COMMIT_FAILED);
    ASSERT_TRUE(ledger_account_find(writer_ledger(writer), "c") == NULL);
    stop(store, writer); /* the snapshot: must not touch c */
    verify_ok("after the stop");
    start(&store, &writer);
    ASSERT_EQ(ledger_account_count(writer_ledger(writer)), 2);
    ASSERT_EQ(credits_of(writer, "a"), 0);
    static const char *const cd[] = {"c", "d"};
    ASSERT_STATUS(accounts_create(writer, cd, 2), PC_OK); /* the ids were never taken */
    transfer_ok(writer, "to-c", "a", "c", 5);
    stop(store, writer);
    verify_ok("after the second stop");
    paths_remove();
}

/* ---- the pipeline (PostgreSQL): a batch's second part staged while the first commits ---- */

typedef struct {
    writer_cmd_t cmd;
    ledger_transfer_t transfer;
    ledger_transfer_result_t result;
    pc_status status;
    bool done;
} staged_cmd_t;

static pthread_mutex_t staged_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t staged_cond = PTHREAD_COND_INITIALIZER;

static void staged_done(writer_cmd_t *cmd, pc_status status) {
    staged_cmd_t *s = (staged_cmd_t *)cmd;
    pthread_mutex_lock(&staged_mutex);
    s->status = status;
    s->done = true;
    pthread_cond_broadcast(&staged_cond);
    pthread_mutex_unlock(&staged_mutex);
}

/* a (debits must not exceed credits), b, c: commit 1. */
static void pipeline_accounts(writer_t *writer) {
    ledger_account_t accounts[3] = {{.id = "a", .flags = LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS},
                                    {.id = "b"}, {.id = "c"}};
    ledger_account_result_t results[3];
    for (int i = 0; i < 3; i++) {
        memcpy(accounts[i].currency, "USD", 4);
        accounts[i].code = 1;
    }
    writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_ACCOUNTS, .event_count = 3, .accounts = accounts,
                        .account_results = results};
    ASSERT_STATUS(writer_submit_wait(writer, &cmd), PC_OK);
}

/* With the writer held in commit 2, x (b -> a 10: a's funds) and y (a -> c 10, which
 * only x's funds allow) queue up; released, they are one pipelined batch in two
 * parts (batch_events_max 1): x's transaction is commit 3, y's commit 4. */
static void pipeline_run(writer_t *writer, staged_cmd_t *x, staged_cmd_t *y) {
    hold_state = 0;
    pthread_t holder;
    ASSERT_EQ(pthread_create(&holder, NULL, hold_submit, writer), 0);
    pthread_mutex_lock(&hold_mutex);
    while (hold_state != 1) pthread_cond_wait(&hold_cond, &hold_mutex);
    pthread_mutex_unlock(&hold_mutex);
    transfer_fill(&x->transfer, "x", "b", "a", 10);
    transfer_fill(&y->transfer, "y", "a", "c", 10);
    staged_cmd_t *both[2] = {x, y};
    for (int i = 0; i < 2; i++) {
        both[i]->cmd = (writer_cmd_t){.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = 1,
                                      .transfers = &both[i]->transfer, .transfer_results = &both[i]->result,
                                      .done = staged_done};
        ASSERT_STATUS(writer_submit(writer, &both[i]->cmd), PC_OK);
    }
    pthread_mutex_lock(&hold_mutex);
    hold_state = 2;
    pthread_cond_broadcast(&hold_cond);
    pthread_mutex_unlock(&hold_mutex);
    pthread_join(holder, NULL);
    pthread_mutex_lock(&staged_mutex);
    while (!x->done || !y->done) pthread_cond_wait(&staged_cond, &staged_mutex);
    pthread_mutex_unlock(&staged_mutex);
    writer_stats_t stats;
    writer_stats(writer, &stats);
    ASSERT_EQ(stats.batches_staged, 1); /* y was staged beside x: the pipeline ran */
}

/* Goal: when the first part's COMMIT fails while the second is staged, the second
 * leaves nothing: not its rows, not its balances, not its reply; it runs again on
 * the state without the first. Method: pipeline_run with commit 3 failing: x fails;
 * y, run again, is refused (a has no funds without x); memory, the database after a
 * restart and verify agree: nothing moved, neither x nor y is a transfer. */
static void test_pipeline_first_commit_fails(void) {
    paths_make("pipe_first");
    store_t *store;
    writer_t *writer;
    store_options_t options = {.create = true, .fault_commit_at = 3};
    writer_config_t config = {.batch_events_max = 1};
    ASSERT_STATUS(start_with(&store, &writer, &options, &config), PC_OK);
    pipeline_accounts(writer);
    staged_cmd_t x = {0}, y = {0};
    pipeline_run(writer, &x, &y);
    ASSERT_STATUS(x.status, PC_STORE_COMMIT_FAILED);
    ASSERT_STATUS(y.status, PC_OK);
    ASSERT_STATUS(y.result.status, PC_EXCEEDS_CREDITS);
    ASSERT_EQ(credits_of(writer, "a"), 0);
    ASSERT_EQ(credits_of(writer, "c"), 0);
    ASSERT_TRUE(ledger_balanced(writer_ledger(writer), NULL));
    stop(store, writer);
    verify_ok("after the failed first part");
    ASSERT_TRUE(!in_file("x") && !in_file("y"));
    start(&store, &writer);
    ASSERT_EQ(credits_of(writer, "a"), 0);
    ASSERT_EQ(credits_of(writer, "b"), 0);
    ASSERT_EQ(credits_of(writer, "c"), 0);
    transfer_ok(writer, "x", "b", "a", 10); /* the id was never taken */
    stop(store, writer);
    verify_ok("after the restart");
    paths_remove();
}

/* Goal: when only the second part's COMMIT fails, the first stays (durable and
 * answered) and memory goes back to it. Method: pipeline_run with commit 4 failing:
 * x commits, y fails; a holds 10, c nothing, in memory and after a restart. */
static void test_pipeline_second_commit_fails(void) {
    paths_make("pipe_second");
    store_t *store;
    writer_t *writer;
    store_options_t options = {.create = true, .fault_commit_at = 4};
    writer_config_t config = {.batch_events_max = 1};
    ASSERT_STATUS(start_with(&store, &writer, &options, &config), PC_OK);
    pipeline_accounts(writer);
    staged_cmd_t x = {0}, y = {0};
    pipeline_run(writer, &x, &y);
    ASSERT_STATUS(x.status, PC_OK);
    ASSERT_STATUS(x.result.status, PC_OK);
    ASSERT_STATUS(y.status, PC_STORE_COMMIT_FAILED);
    ASSERT_EQ(credits_of(writer, "a"), 10);
    ASSERT_EQ(credits_of(writer, "c"), 0);
    stop(store, writer);
    verify_ok("after the failed second part");
    ASSERT_TRUE(in_file("x") && !in_file("y"));
    start(&store, &writer);
    ASSERT_EQ(credits_of(writer, "a"), 10);
    ASSERT_EQ(credits_of(writer, "b"), -10);
    ASSERT_EQ(credits_of(writer, "c"), 0);
    transfer_ok(writer, "y", "a", "c", 10);
    stop(store, writer);
    verify_ok("after the restart");
    paths_remove();
}

/* ---- in_transaction hooks that fail ---- */

static uint32_t hook_calls;
static pc_status hook_fails_second(writer_cmd_t *cmd, store_tx_t *tx) {
    (void)cmd;
    (void)tx;
    return ++hook_calls == 2 ? PC_STORE_COMMIT_FAILED : PC_OK;
}

/* Goal: a command's own rows failing fails its batch and changes nothing, and the
 * next batch takes the seq the failed one would have. */
static void test_in_transaction_fault(void) {
    paths_make("hook");
    store_t *store;
    writer_t *writer;
    start(&store, &writer);
    ASSERT_STATUS(accounts_create(writer, ab, 2), PC_OK);
    ledger_transfer_t t;
    ledger_transfer_result_t r;
    for (int round = 1; round <= 2; round++) {
        transfer_fill(&t, round == 1 ? "h1" : "h2", "a", "b", 10);
        writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = 1, .transfers = &t,
                            .transfer_results = &r, .in_transaction = hook_fails_second};
        uint64_t head = store_journal_head_seq(store);
        pc_status status = writer_submit_wait(writer, &cmd);
        if (round == 1) {
            ASSERT_STATUS(status, PC_OK);
            ASSERT_EQ(store_journal_head_seq(store), head + 1);
        } else {
            ASSERT_STATUS(status, PC_STORE_COMMIT_FAILED);
            ASSERT_EQ(store_journal_head_seq(store), head);
        }
    }
    ASSERT_EQ(credits_of(writer, "b"), 10);
    ASSERT_TRUE(writer_can_commit(writer)); /* a command's failure, not the store's */
    transfer_ok(writer, "h2", "a", "b", 10);  /* the id was not burned */
    stop(store, writer);
    verify_ok("after the stop");
    ASSERT_FALSE(in_file("missing"));
    paths_remove();
}

/* ---- a failed fsync or a full disk at COMMIT stops the writer ---- */

/* Called on the writer thread after it completed the failed commands: a caller woken
 * by its command's status may look before the call happened, so the test waits for it. */
static _Atomic uint32_t failed_calls;
static void on_failed(void *ctx, pc_status status) {
    (void)ctx;
    ASSERT_STATUS(status, PC_STORE_FAILED);
    atomic_fetch_add(&failed_calls, 1);
}

static uint32_t failed_calls_after_wait(void) {
    for (int waited_ms = 0; atomic_load(&failed_calls) == 0 && waited_ms < 30000; waited_ms++) {
        struct timespec pause = {.tv_sec = 0, .tv_nsec = 1000000};
        nanosleep(&pause, NULL);
    }
    return atomic_load(&failed_calls);
}

static pc_status fsync_fault_then_crash(void) {
    store_t *store;
    writer_t *writer;
    store_options_t options = {.create = false, .fault_vfs = true};
    pc_status status = start_with(&store, &writer, &options, NULL);
    if (status != PC_OK) return status;
    store_fault_arm(STORE_FAULT_WAL_SYNC, 0, 1);
    return transfer(writer, "t2", "a", "b", 50, NULL); /* and die */
}

/* Goal: after a WAL fsync fails at COMMIT, the batch is not reported "nothing was
 * applied" (SQLite may recover it from the log at the next open: here it does), the
 * writer refuses everything after it, readiness drops, the process is told, and no
 * snapshot is written at stop. Method: the fault VFS fails one fsync; a crash right
 * after (a child) and a clean stop (in process); verify and reload each time. */
static void test_fsync_fault_at_commit(void) {
    database_with_t1("fsync");
    store_t *store;
    writer_t *writer;
    pc_status reported = crash_child(fsync_fault_then_crash);
    ASSERT_TRUE(reported != PC_OK);
    verify_ok("after the crash");
    if (reported == PC_STORE_COMMIT_FAILED && in_file("t2")) {
        TEST_FAIL("t2 was answered store_commit_failed (nothing applied) but is in the file");
    }
    ASSERT_STATUS(reported, PC_STORE_FAILED);
    bool t2_kept = in_file("t2");

    store_options_t options = {.create = false, .fault_vfs = true};
    writer_config_t config = {.failed = on_failed};
    ASSERT_STATUS(start_with(&store, &writer, &options, &config), PC_OK);
    ASSERT_EQ(credits_of(writer, "b"), t2_kept ? 150 : 100);
    ASSERT_TRUE(writer_can_commit(writer));
    store_fault_arm(STORE_FAULT_WAL_SYNC, 0, 1);
    ASSERT_STATUS(transfer(writer, "t3", "a", "b", 5, NULL), PC_STORE_FAILED);
    ASSERT_EQ(store_fault_fired(STORE_FAULT_WAL_SYNC), 1);
    ASSERT_STATUS(transfer(writer, "t4", "a", "b", 5, NULL), PC_STORE_FAILED); /* refused */
    ASSERT_FALSE(writer_can_commit(writer));
    ASSERT_STATUS(writer_failed(writer), PC_STORE_FAILED);
    ASSERT_EQ(failed_calls_after_wait(), 1);
    stop(store, writer); /* no snapshot from memory that may disagree with the file */
    store_fault_disarm_all();
    ASSERT_FALSE(in_file("t4"));
    verify_ok("after the stop");
    start(&store, &writer);
    bool t3_kept = in_file("t3");
    ASSERT_EQ(credits_of(writer, "b"), 100 + (t2_kept ? 50 : 0) + (t3_kept ? 5 : 0));
    stop(store, writer);
    verify_ok("after the restart");
    paths_remove();
}

/* Goal: a full disk at COMMIT (SQLITE_FULL writing the log) stops the writer the
 * same way; after the disk has room again a restart loses nothing acknowledged. */
static void test_full_disk_at_commit(void) {
    database_with_t1("full");
    store_t *store;
    writer_t *writer;
    store_options_t options = {.create = false, .fault_vfs = true};
    ASSERT_STATUS(start_with(&store, &writer, &options, NULL), PC_OK);
    store_fault_arm(STORE_FAULT_WAL_WRITE, 0, STORE_FAULT_FOREVER);
    ASSERT_STATUS(transfer(writer, "t2", "a", "b", 50, NULL), PC_STORE_FAILED);
    ASSERT_STATUS(transfer(writer, "t3", "a", "b", 50, NULL), PC_STORE_FAILED);
    ASSERT_FALSE(writer_can_commit(writer));
    stop(store, writer);
    store_fault_disarm_all();
    verify_ok("after the full disk");
    start(&store, &writer);
    ASSERT_EQ(credits_of(writer, "b"), 100);
    ASSERT_FALSE(in_file("t2"));
    stop(store, writer);
    paths_remove();
}

/* Goal: a failed balance snapshot at stop loses nothing: the next start re-derives
 * the balances from the transfers. */
static void test_stop_snapshot_fault(void) {
    database_with_t1("snapshot");
    store_t *store;
    writer_t *writer;
    store_options_t options = {.create = false, .fault_vfs = true};
    ASSERT_STATUS(start_with(&store, &writer, &options, NULL), PC_OK);
    transfer_ok(writer, "t2", "b", "a", 30);
    store_fault_arm(STORE_FAULT_WAL_SYNC, 0, 1); /* the snapshot's COMMIT */
    stop(store, writer);
    ASSERT_EQ(store_fault_fired(STORE_FAULT_WAL_SYNC), 1);
    store_fault_disarm_all();
    verify_ok("after the failed snapshot");
    start(&store, &writer);
    ASSERT_EQ(credits_of(writer, "b"), 70);
    stop(store, writer);
    verify_ok("after the restart");
    paths_remove();
}

/* Goal: a store that fails fast before COMMIT while an expiry is due does not spin:
 * retries back off. Method: a pending transfer times out in 1 s, then every commit
 * fails; over the next seconds the writer may try a few dozen times at most (a
 * busy loop tries hundreds of thousands). */
static void test_no_spin_while_expiry_fails(void) {
    paths_make("spin");
    store_t *store;
    writer_t *writer;
    store_options_t options = {.create = true, .fault_commit_at = 4, .fault_commit_sticky = true};
    ASSERT_STATUS(start_with(&store, &writer, &options, NULL), PC_OK);
    ASSERT_STATUS(accounts_create(writer, ab, 2), PC_OK);
    ledger_transfer_t t;
    ledger_transfer_result_t r;
    transfer_fill(&t, "hold", "a", "b", 9);
    t.flags = LEDGER_TRANSFER_PENDING;
    t.timeout_s = 1;
    writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = 1, .transfers = &t,
                        .transfer_results = &r};
    ASSERT_STATUS(writer_submit_wait(writer, &cmd), PC_OK);
    transfer_ok(writer, "t1", "a", "b", 1); /* commit 3; from 4 on every commit fails */
    writer_stats_t stats = {0};
    for (int waited_ms = 0; waited_ms < 60000 && stats.batches_failed < 3; waited_ms += 20) {
        usleep(20 * 1000);
        writer_stats(writer, &stats);
    }
    ASSERT_TRUE(stats.batches_failed >= 3); /* the expiry was tried, and retried */
    usleep(1500 * 1000);
    writer_stats(writer, &stats);
    if (stats.batches_failed > 40) TEST_FAIL("expiry retried %llu times in ~2 s", (unsigned long long)stats.batches_failed);
    stop(store, writer);
    verify_ok("after the failing expiries");
    paths_remove();
}

/* ---- start-up reads: an error is never a default ---- */

/* Goal: a read that fails anywhere in open and load stops the start with an error;
 * no start succeeds with balances other than the file's. Method: a database whose
 * snapshot is older than its head (a crash after t2); for each N and each burst of
 * 1-3, fail reads N.. of the start (a page read again after a failure fails again
 * in a burst), until a start needs fewer than N reads. */
static void test_start_read_errors(void) {
    database_with_t1("reads");
    store_t *store;
    writer_t *writer;
    ASSERT_STATUS(crash_child(crash_after_transfer_50), PC_OK); /* b: 100 in the snapshot, 150 replayed */
    uint32_t failed_starts = 0;
    for (uint32_t burst = 1; burst <= 3; burst++) {
        for (uint32_t n = 0;; n++) {
            store_fault_arm(STORE_FAULT_READ, n, burst);
            store_options_t options = {.create = false, .fault_vfs = true};
            pc_status status = start_with(&store, &writer, &options, NULL);
            bool fired = store_fault_fired(STORE_FAULT_READ) > 0;
            store_fault_disarm_all();
            if (status == PC_OK) {
                if (credits_of(writer, "b") != 150) {
                    TEST_FAIL("reads %u..%u failed, the start succeeded with b=%lld", n, n + burst - 1,
                              (long long)credits_of(writer, "b"));
                }
                stop(store, writer);
            } else {
                failed_starts++;
                ASSERT_TRUE(fired);
            }
            if (!fired) break; /* the start needs fewer reads: all covered */
            ASSERT_TRUE(n < 100000);
        }
    }
    ASSERT_TRUE(failed_starts > 0);
    verify_ok("after the read faults");
    paths_remove();
}

/* ---- one writer per database ---- */

static void test_second_writer_refused(void) {
    paths_make("lock");
    store_t *first, *second;
    store_options_t options = {.create = true};
    ASSERT_STATUS(store_open(&first, db_path, &options), PC_OK);
    char lock_path[320];
    snprintf(lock_path, sizeof lock_path, "%s.lock", db_path);
    struct stat st;
    ASSERT_EQ(stat(lock_path, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600);
    ASSERT_STATUS(store_open(&second, db_path, &options), PC_STORE_IN_USE);
    store_close(first);
    ASSERT_TRUE(stat(lock_path, &st) != 0); /* removed at close */
    ASSERT_STATUS(store_open(&second, db_path, &options), PC_OK);
    store_close(second);
    paths_remove();
}

/* ---- the signing key ---- */

static void key_file_copy(const char *from, const char *to) {
    char cmd[800];
    snprintf(cmd, sizeof cmd, "cp -p '%s' '%s'", from, to);
    ASSERT_EQ(system(cmd), 0);
}

/* Goal: a database with signed journal checkpoints never gets a new key: a missing
 * key or another key refuses the start and creates nothing. */
static void test_signing_key_refused(void) {
    paths_make("key");
    store_t *store;
    writer_t *writer;
    start(&store, &writer);
    ASSERT_STATUS(accounts_create(writer, ab, 2), PC_OK);
    for (int i = 0; i < JOURNAL_CHECKPOINT_BATCHES; i++) {
        char id[16];
        snprintf(id, sizeof id, "k%d", i);
        transfer_ok(writer, id, "a", "b", 1);
    }
    stop(store, writer);
    char saved[400], other[400];
    snprintf(saved, sizeof saved, "%s/saved.key", dir);
    snprintf(other, sizeof other, "%s/other.key", dir);
    key_file_copy(key_path, saved);
    journal_key_t other_key;
    ASSERT_STATUS(journal_key_load_or_create(other, &other_key), PC_OK);
    journal_key_wipe(&other_key);

    store_options_t options = {.create = false};
    ASSERT_EQ(unlink(key_path), 0);
    ASSERT_STATUS(start_with(&store, &writer, &options, NULL), PC_KEY_FILE_MISSING);
    ASSERT_TRUE(access(key_path, F_OK) != 0); /* no new key made */
    ASSERT_EQ(unlink(pub_path), 0);           /* even without its .pub */
    ASSERT_STATUS(start_with(&store, &writer, &options, NULL), PC_KEY_FILE_MISSING);
    ASSERT_TRUE(access(key_path, F_OK) != 0);
    key_file_copy(other, key_path);
    ASSERT_STATUS(start_with(&store, &writer, &options, NULL), PC_KEY_MISMATCH);
    key_file_copy(saved, key_path);
    ASSERT_STATUS(start_with(&store, &writer, &options, NULL), PC_OK); /* .pub written again */
    stop(store, writer);
    ASSERT_EQ(access(pub_path, F_OK), 0);
    key_file_copy(other, pub_path);                /* a .pub of another key */
    ASSERT_STATUS(start_with(&store, &writer, &options, NULL), PC_KEY_MISMATCH);
    paths_remove();
}

/* ---- version 1 files ---- */

/* Goal: a version 1 file opens, its balance snapshot (which version 1 could write
 * past the journal head) is replaced by a replay from zero, and it verifies. */
static void test_version_1_migrates(void) {
    database_with_t1("v1");
    store_t *store;
    writer_t *writer;
    start(&store, &writer);
    transfer_ok(writer, "t2", "a", "b", 50);
    stop(store, writer);
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open(db_path, &db), SQLITE_OK);
    /* What version 1 left after the lost-seq bug: rows behind, a seq ahead (and
     * neither version 2's table name nor version 3's idempotency column (nor version
     * 13's layout of that table), nor version
     * 9's payment answer columns, nor version 10's event owner column, nor version
     * 11's payment's operation in flight). */
    ASSERT_EQ(sqlite3_exec(db, "DROP TABLE idempotency_keys;"
                               "CREATE TABLE idempotency_keys(key_id TEXT NOT NULL,"
                               " idempotency_key TEXT NOT NULL, request_hash BLOB NOT NULL,"
                               " status INTEGER NOT NULL, body TEXT NOT NULL, created_ns INTEGER NOT NULL,"
                               " PRIMARY KEY(key_id, idempotency_key)) WITHOUT ROWID;"
                               "DROP INDEX IF EXISTS events_by_owner;" /* before version 17 */
                               "ALTER TABLE events DROP COLUMN owner;"
                               "DROP INDEX pay_objects_pending_op;"
                               "ALTER TABLE pay_objects DROP COLUMN pending_op;"
                               "ALTER TABLE pay_objects DROP COLUMN answer_version;"
                               "ALTER TABLE pay_objects DROP COLUMN answer_status;"
                               "ALTER TABLE journal_checkpoints RENAME TO checkpoints;"
                               "UPDATE accounts SET credits_posted = 100 WHERE id = 'b';"
                               "UPDATE accounts SET debits_posted = 100 WHERE id = 'a';"
                               "UPDATE meta SET value = (SELECT max(seq) + 1 FROM journal)"
                               " WHERE key = 'accounts_as_of_seq';"
                               "PRAGMA user_version = 1;", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    start(&store, &writer);
    ASSERT_EQ(credits_of(writer, "b"), 150);
    ASSERT_EQ(credits_of(writer, "a"), -150);
    stop(store, writer);
    verify_ok("after the migration");
    paths_remove();
}

/* ---- a replaced idempotent reply reports the room it took ---- */

static const char *idem_body;       /* the reply idem_put_in_tx stores */
static const char *idem_key = "k1"; /* under this Idempotency-Key */
static uint64_t idem_row_bytes, idem_replaced_bytes;

static pc_status idem_put_in_tx(writer_cmd_t *cmd, store_tx_t *tx) {
    (void)cmd;
    store_api_idem_t record = {.http_status = 201, .created_ns = 1, .body = (char *)idem_body,
                               .body_bytes = strlen(idem_body)};
    idem_replaced_bytes = UINT64_MAX;
    pc_status status = store_api_idem_put(tx, "key_1", idem_key, &record, &idem_replaced_bytes);
    idem_row_bytes = record.row_bytes;
    return status;
}

static void idem_put(writer_t *writer, const char *key, const char *body) {
    idem_key = key;
    idem_body = body;
    writer_cmd_t cmd = {.kind = WRITER_CMD_EXEC, .in_transaction = idem_put_in_tx};
    ASSERT_STATUS(writer_submit_wait(writer, &cmd), PC_OK);
}

/* Goal: storing a reply over an expired one of the same key says how much room the
 * old row took (the per-key room counts it back), a new key replaces nothing, and the
 * new reply is the one read. Method: k1 "first"; k1 a longer reply; k2; read k1. */
static void test_idem_replace_reports_room(void) {
    paths_make("idem");
    store_t *store;
    writer_t *writer;
    start(&store, &writer);
    idem_put(writer, "k1", "first");
    ASSERT_EQ(idem_replaced_bytes, 0);
    uint64_t first_bytes = idem_row_bytes;
    ASSERT_TRUE(first_bytes > 0);
    idem_put(writer, "k1", "the second, longer reply");
    ASSERT_EQ(idem_replaced_bytes, first_bytes);
    ASSERT_TRUE(idem_row_bytes > first_bytes);
    idem_put(writer, "k2", "first");
    ASSERT_EQ(idem_replaced_bytes, 0);
    store_reader_t *reader;
    ASSERT_STATUS(store_reader_open(store, &reader), PC_OK);
    store_api_idem_t got;
    bool found = false;
    ASSERT_STATUS(store_api_idem_get(reader, "key_1", "k1", &got, &found), PC_OK);
    ASSERT_TRUE(found && got.body_bytes == strlen("the second, longer reply") &&
                memcmp(got.body, "the second, longer reply", got.body_bytes) == 0);
    free(got.body);
    store_reader_close(reader);
    stop(store, writer);
    paths_remove();
}

/* ---- every stored reply is found, exactly ---- */

#define IDEM_MANY 3000u     /* past the lookup table's first sizes: entries are re-homed */
#define IDEM_PURGED_MAX 64u

typedef struct {
    writer_cmd_t cmd;       /* first */
    const char *key;        /* put this key ... */
    uint32_t many;          /* ... or these keys "g<i>" */
    bool purge;             /* purge the replies created before 2 ns: all */
    bool fail;              /* then fail the command: its batch rolls back */
    uint32_t purged_count;
    char purged[IDEM_PURGED_MAX][16];
} idem_job;

static void idem_purged_note(const char *key_id, const char *idempotency_key, uint64_t row_bytes, void *ctx) {
    idem_job *job = ctx;
    (void)key_id;
    (void)row_bytes;
    ASSERT_TRUE(job->purged_count < IDEM_PURGED_MAX);
    snprintf(job->purged[job->purged_count++], 16, "%s", idempotency_key);
}

static pc_status idem_put_one(store_tx_t *tx, const char *key) {
    store_api_idem_t record = {.http_status = 201, .created_ns = 1, .body = (char *)key, .body_bytes = strlen(key)};
    uint64_t replaced = 0;
    return store_api_idem_put(tx, "key_1", key, &record, &replaced);
}

static pc_status idem_job_in_tx(writer_cmd_t *cmd, store_tx_t *tx) {
    idem_job *job = (idem_job *)cmd;
    pc_status status = job->key != NULL ? idem_put_one(tx, job->key) : PC_OK;
    for (uint32_t i = 0; i < job->many && status == PC_OK; i++) {
        char key[16];
        snprintf(key, sizeof key, "g%u", i);
        status = idem_put_one(tx, key);
    }
    job->purged_count = 0;
    if (status == PC_OK && job->purge) {
        status = store_api_idem_purge(tx, 2, IDEM_PURGED_MAX, UINT64_MAX / 2, idem_purged_note, job);
    }
    return status == PC_OK && job->fail ? PC_INTERNAL : status;
}

static pc_status idem_job_run(writer_t *writer, idem_job *job) {
    job->cmd = (writer_cmd_t){.kind = WRITER_CMD_EXEC, .in_transaction = idem_job_in_tx};
    return writer_submit_wait(writer, &job->cmd);
}

/* The reply of 'key' as 'reader' finds it: its body is the key itself. */
static bool idem_found_by(store_reader_t *reader, const char *key) {
    store_api_idem_t got;
    bool found = false;
    ASSERT_STATUS(store_api_idem_get(reader, "key_1", key, &got, &found), PC_OK);
    if (found) ASSERT_TRUE(got.body_bytes == strlen(key) && memcmp(got.body, key, got.body_bytes) == 0);
    free(got.body);
    return found;
}

static bool idem_found(store_t *store, const char *key) {
    store_reader_t *reader;
    ASSERT_STATUS(store_reader_open(store, &reader), PC_OK);
    bool found = idem_found_by(reader, key);
    store_reader_close(reader);
    return found;
}

static uint32_t idem_found_many(store_t *store) {
    store_reader_t *reader;
    ASSERT_STATUS(store_reader_open(store, &reader), PC_OK);
    uint32_t found = 0;
    for (uint32_t i = 0; i < IDEM_MANY; i++) {
        char key[16];
        snprintf(key, sizeof key, "g%u", i);
        found += idem_found_by(reader, key);
    }
    store_reader_close(reader);
    return found;
}

/* A scan of the stored keys that stops after 'stop_after' rows (0: never). */
typedef struct {
    uint32_t rows;
    uint32_t stop_after;
} idem_scan_count;

static bool idem_scan_row(const char *key_id, const char *idempotency_key, uint64_t row_bytes, void *ctx) {
    idem_scan_count *scan = ctx;
    (void)key_id;
    (void)idempotency_key;
    ASSERT_TRUE(row_bytes > 0);
    scan->rows++;
    return scan->stop_after == 0 || scan->rows < scan->stop_after;
}

static pc_status idem_scan(store_t *store, uint32_t stop_after, uint32_t *rows) {
    store_reader_t *reader;
    ASSERT_STATUS(store_reader_open(store, &reader), PC_OK);
    idem_scan_count scan = {.stop_after = stop_after};
    pc_status status = store_api_idem_keys(reader, idem_scan_row, &scan);
    store_reader_close(reader);
    *rows = scan.rows;
    return status;
}

/* The stored replies are found exactly whatever uses them first after a start (the
 * SQLite store loads its map of them then): a put of a stored key (it replaces the
 * row), a scan of the keys cut short, a whole scan. */
static void idem_first_uses(uint32_t kept, const idem_job *purged) {
    store_t *store;
    writer_t *writer;
    start(&store, &writer);
    idem_put(writer, "lost", "lost");
    ASSERT_TRUE(idem_replaced_bytes > 0);
    ASSERT_EQ(idem_found_many(store) + idem_found(store, "lost"), kept);
    stop(store, writer);
    start(&store, &writer);
    uint32_t rows = 0;
    ASSERT_STATUS(idem_scan(store, 100, &rows), PC_SHUTTING_DOWN);
    ASSERT_EQ(rows, 100u);
    for (uint32_t i = 0; i < purged->purged_count; i++) ASSERT_FALSE(idem_found(store, purged->purged[i]));
    ASSERT_EQ(idem_found_many(store) + idem_found(store, "lost"), kept);
    stop(store, writer);
    start(&store, &writer);
    idem_scan_count whole = {0};
    store_reader_t *reader;
    ASSERT_STATUS(store_reader_open(store, &reader), PC_OK);
    ASSERT_STATUS(store_api_idem_keys(reader, idem_scan_row, &whole), PC_OK);
    store_reader_close(reader);
    ASSERT_EQ(whole.rows, kept);
    idem_put(writer, "late", "late");
    ASSERT_EQ(idem_replaced_bytes, 0u);
    ASSERT_EQ(idem_found_many(store) + idem_found(store, "lost") + idem_found(store, "late"), kept + 1);
    stop(store, writer);
}

/* Goal: a stored reply is never reported missing and a missing one never found: not
 * after a rolled-back put (the key reads missing, then stores once), not after a
 * purge whose batch rolled back (every reply still found), not after a purge that
 * committed (exactly the purged keys missing), not after a restart; a key stored
 * again replaces its reply. Method: 3000 keys in one batch, faults by failing the
 * command (its whole batch rolls back), readers asking for every key. */
static void test_idem_found_exactly(void) {
    paths_make("idem_exact");
    store_t *store;
    writer_t *writer;
    start(&store, &writer);
    idem_job job = {.many = IDEM_MANY};
    ASSERT_STATUS(idem_job_run(writer, &job), PC_OK);
    job = (idem_job){.key = "lost", .fail = true};
    ASSERT_STATUS(idem_job_run(writer, &job), PC_INTERNAL);
    ASSERT_FALSE(idem_found(store, "lost"));
    job = (idem_job){.key = "lost"};
    ASSERT_STATUS(idem_job_run(writer, &job), PC_OK);
    ASSERT_TRUE(idem_found(store, "lost"));
    job = (idem_job){.purge = true, .fail = true};
    ASSERT_STATUS(idem_job_run(writer, &job), PC_INTERNAL);
    ASSERT_EQ(job.purged_count, IDEM_PURGED_MAX);
    ASSERT_EQ(idem_found_many(store), IDEM_MANY);
    job = (idem_job){.purge = true};
    ASSERT_STATUS(idem_job_run(writer, &job), PC_OK);
    ASSERT_EQ(job.purged_count, IDEM_PURGED_MAX);
    for (uint32_t i = 0; i < job.purged_count; i++) ASSERT_FALSE(idem_found(store, job.purged[i]));
    uint32_t kept = IDEM_MANY + 1 - IDEM_PURGED_MAX; /* "lost" counts among them */
    ASSERT_EQ(idem_found_many(store) + idem_found(store, "lost"), kept);
    stop(store, writer);
    start(&store, &writer);
    for (uint32_t i = 0; i < job.purged_count; i++) ASSERT_FALSE(idem_found(store, job.purged[i]));
    ASSERT_EQ(idem_found_many(store) + idem_found(store, "lost"), kept);
    idem_put(writer, "lost", "lost"); /* found through memory after the restart: replaced */
    ASSERT_TRUE(idem_replaced_bytes > 0);
    ASSERT_TRUE(idem_found(store, "lost"));
    stop(store, writer);
    idem_first_uses(kept, &job);
    paths_remove();
}

int main(void) {
    pg_host = getenv("PAYCORE_TEST_PG_HOST");
    if (pg_host != NULL) { /* the cases that are not SQLite faults or SQLite files */
        TEST_RUN(test_batch_without_rows_takes_no_seq);
        TEST_RUN(test_failed_batch_leaves_no_dirty_accounts);
        TEST_RUN(test_in_transaction_fault);
        TEST_RUN(test_no_spin_while_expiry_fails);
        TEST_RUN(test_signing_key_refused);
        TEST_RUN(test_idem_replace_reports_room);
        TEST_RUN(test_idem_found_exactly);
        TEST_RUN(test_pipeline_first_commit_fails);
        TEST_RUN(test_pipeline_second_commit_fails);
        return test_finish();
    }
    TEST_RUN(test_batch_without_rows_takes_no_seq);
    TEST_RUN(test_pending_posted_in_its_batch);
    TEST_RUN(test_pending_resolved_many);
    TEST_RUN(test_failed_batch_leaves_no_dirty_accounts);
    TEST_RUN(test_in_transaction_fault);
    TEST_RUN(test_fsync_fault_at_commit);
    TEST_RUN(test_full_disk_at_commit);
    TEST_RUN(test_stop_snapshot_fault);
    TEST_RUN(test_no_spin_while_expiry_fails);
    TEST_RUN(test_start_read_errors);
    TEST_RUN(test_second_writer_refused);
    TEST_RUN(test_signing_key_refused);
    TEST_RUN(test_version_1_migrates);
    TEST_RUN(test_idem_replace_reports_room);
    TEST_RUN(test_idem_found_exactly);
    return test_finish();
}
