/* Goal: a merchant's command reaches only the accounts granted to it, decided by the
 * writer as each event is applied: a pending hold made earlier in the same batch by
 * another merchant cannot be posted or voided, and the refusal is byte for byte the
 * one a missing object gets (no balances, no field beyond the missing one's); grants
 * made earlier in the same batch count; a batch that fails to commit takes its grants
 * back; grants survive a restart, also those of ids whose account came later.
 * Method: a real SQLite file and writer. A gate command blocks the writer inside a
 * batch while the test queues a whole round of commands, so that the round is applied
 * in ONE batch (checked in the file: every row carries the same batch_seq); many
 * rounds. Owners are API key ids; the writer needs nothing else of them. */
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/core.h"
#include "ledger/ledger.h"
#include "store/store.h"
#include "test.h"
#include "writer/writer.h"

#define ROUNDS 200

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

/* ---- commands ---- */

typedef struct {
    writer_cmd_t cmd;
    ledger_account_t accounts[2];
    ledger_account_result_t account_results[2];
    ledger_transfer_t transfers[2];
    ledger_transfer_result_t transfer_results[2];
} job_t;

static void account_event(ledger_account_t *a, const char *id) {
    memset(a, 0, sizeof *a);
    snprintf(a->id, sizeof a->id, "%s", id);
    memcpy(a->currency, "EUR", 4);
    a->code = 7;
}

static void transfer_event(ledger_transfer_t *t, const char *id, const char *dr, const char *cr, int64_t amount,
                           uint16_t flags) {
    memset(t, 0, sizeof *t);
    snprintf(t->id, sizeof t->id, "%s", id);
    snprintf(t->debit_account_id, sizeof t->debit_account_id, "%s", dr);
    snprintf(t->credit_account_id, sizeof t->credit_account_id, "%s", cr);
    memcpy(t->currency, "EUR", 4);
    t->amount = amount;
    t->code = 1;
    t->flags = flags;
}

static void resolution_event(ledger_transfer_t *t, const char *id, const char *pending_id, uint16_t flags) {
    memset(t, 0, sizeof *t);
    snprintf(t->id, sizeof t->id, "%s", id);
    snprintf(t->pending_id, sizeof t->pending_id, "%s", pending_id);
    t->flags = flags;
}

static void job_accounts(job_t *job, const char *owner, uint32_t count) {
    job->cmd = (writer_cmd_t){.kind = WRITER_CMD_CREATE_ACCOUNTS, .event_count = count, .accounts = job->accounts,
                              .account_results = job->account_results, .owner_id = owner};
}

static void job_transfers(job_t *job, const char *owner, uint32_t count) {
    job->cmd = (writer_cmd_t){.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = count, .transfers = job->transfers,
                              .transfer_results = job->transfer_results, .owner_id = owner};
}

/* ---- completions of asynchronously submitted commands ---- */

static pthread_mutex_t done_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static uint32_t done_count;
static pc_status done_worst;

static void job_done(writer_cmd_t *cmd, pc_status commit_status) {
    (void)cmd;
    pthread_mutex_lock(&done_mutex);
    done_count++;
    if (commit_status != PC_OK) done_worst = commit_status;
    pthread_cond_broadcast(&done_cond);
    pthread_mutex_unlock(&done_mutex);
}

static void submit(writer_t *writer, job_t *job) {
    job->cmd.done = job_done;
    ASSERT_STATUS(writer_submit(writer, &job->cmd), PC_OK);
}

static void wait_done(uint32_t count) {
    pthread_mutex_lock(&done_mutex);
    while (done_count < count) pthread_cond_wait(&done_cond, &done_mutex);
    ASSERT_STATUS(done_worst, PC_OK);
    done_count = 0;
    pthread_mutex_unlock(&done_mutex);
}

/* ---- the gate: holds the writer inside a batch until opened ---- */

static pthread_mutex_t gate_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_entered, gate_open;

static pc_status gate_in_tx(writer_cmd_t *cmd, store_tx_t *tx) {
    (void)cmd;
    (void)tx;
    pthread_mutex_lock(&gate_mutex);
    gate_entered = true;
    pthread_cond_broadcast(&gate_cond);
    while (!gate_open) pthread_cond_wait(&gate_cond, &gate_mutex);
    pthread_mutex_unlock(&gate_mutex);
    return PC_OK;
}

/* Submits the gate and returns once the writer is inside it: whatever is submitted
 * next waits in the queue and is drained as one batch when the gate opens. */
static void gate_close(writer_t *writer, job_t *gate) {
    gate_entered = gate_open = false;
    gate->cmd = (writer_cmd_t){.kind = WRITER_CMD_EXEC, .in_transaction = gate_in_tx};
    submit(writer, gate);
    pthread_mutex_lock(&gate_mutex);
    while (!gate_entered) pthread_cond_wait(&gate_cond, &gate_mutex);
    pthread_mutex_unlock(&gate_mutex);
}

static void gate_release(void) {
    pthread_mutex_lock(&gate_mutex);
    gate_open = true;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_mutex);
}

/* ---- reading the file ---- */

static int64_t batch_of(sqlite3 *db, const char *sql, const char *id) {
    sqlite3_stmt *stmt;
    ASSERT_EQ(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    int64_t seq = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return seq;
}

static bool balances_equal(const ledger_balances_t *a, const ledger_balances_t *b) {
    return a->debits_pending == b->debits_pending && a->debits_posted == b->debits_posted &&
           a->credits_pending == b->credits_pending && a->credits_posted == b->credits_posted;
}

/* Every member a caller could be shown. */
static bool results_equal(const ledger_transfer_result_t *a, const ledger_transfer_result_t *b) {
    return a->status == b->status && a->field == b->field && a->timestamp_ns == b->timestamp_ns &&
           balances_equal(&a->debit_balances, &b->debit_balances) &&
           balances_equal(&a->credit_balances, &b->credit_balances) && a->amount == b->amount &&
           strcmp(a->debit_account_id, b->debit_account_id) == 0 &&
           strcmp(a->credit_account_id, b->credit_account_id) == 0 &&
           strcmp(a->currency, b->currency) == 0 && a->code == b->code;
}

/* ---- tests ---- */

/* One round, all in one batch: A creates two accounts, moves money between them and
 * ends with a pending hold; B then tries to post it, void it, debit A's account and
 * take A's account id; B's post of a missing pending transfer is the reference; A
 * finally voids its own hold. */
static void race_round(writer_t *writer, sqlite3 *db, uint32_t round) {
    char a1[32], a2[32], pending[32], id[32];
    snprintf(a1, sizeof a1, "a1-%u", round);
    snprintf(a2, sizeof a2, "a2-%u", round);
    snprintf(pending, sizeof pending, "hold-%u", round);
    job_t gate, create, move, post, cancel, steal, take, missing, own_void;
    gate_close(writer, &gate);
    account_event(&create.accounts[0], a1);
    account_event(&create.accounts[1], a2);
    job_accounts(&create, "key_a", 2);
    snprintf(id, sizeof id, "move-%u", round);
    transfer_event(&move.transfers[0], id, a1, a2, 5, 0);
    transfer_event(&move.transfers[1], pending, a1, a2, 10, LEDGER_TRANSFER_PENDING);
    job_transfers(&move, "key_a", 2);
    snprintf(id, sizeof id, "b-post-%u", round);
    resolution_event(&post.transfers[0], id, pending, LEDGER_TRANSFER_POST_PENDING);
    job_transfers(&post, "key_b", 1);
    snprintf(id, sizeof id, "b-void-%u", round);
    resolution_event(&cancel.transfers[0], id, pending, LEDGER_TRANSFER_VOID_PENDING);
    job_transfers(&cancel, "key_b", 1);
    snprintf(id, sizeof id, "b-steal-%u", round);
    transfer_event(&steal.transfers[0], id, a1, "b-main", 1, 0);
    job_transfers(&steal, "key_b", 1);
    account_event(&take.accounts[0], a1);
    job_accounts(&take, "key_b", 1);
    snprintf(id, sizeof id, "b-post-missing-%u", round);
    resolution_event(&missing.transfers[0], id, "no-such-hold", LEDGER_TRANSFER_POST_PENDING);
    job_transfers(&missing, "key_b", 1);
    snprintf(id, sizeof id, "a-void-%u", round);
    resolution_event(&own_void.transfers[0], id, pending, LEDGER_TRANSFER_VOID_PENDING);
    job_transfers(&own_void, "key_a", 1);
    job_t *round_jobs[] = {&create, &move, &post, &cancel, &steal, &take, &missing, &own_void};
    for (uint32_t i = 0; i < 8; i++) submit(writer, round_jobs[i]);
    gate_release();
    wait_done(9);

    ASSERT_STATUS(create.account_results[0].status, PC_OK);
    ASSERT_STATUS(create.account_results[1].status, PC_OK);
    ASSERT_STATUS(move.transfer_results[0].status, PC_OK);   /* grants of this batch count */
    ASSERT_STATUS(move.transfer_results[1].status, PC_OK);
    ASSERT_STATUS(missing.transfer_results[0].status, PC_PENDING_TRANSFER_NOT_FOUND);
    ASSERT_TRUE(results_equal(&post.transfer_results[0], &missing.transfer_results[0]));
    ASSERT_TRUE(results_equal(&cancel.transfer_results[0], &missing.transfer_results[0]));
    ASSERT_STATUS(steal.transfer_results[0].status, PC_ACCOUNT_NOT_FOUND);
    ASSERT_EQ(steal.transfer_results[0].field, LEDGER_FIELD_DEBIT_ACCOUNT_ID);
    ASSERT_EQ(steal.transfer_results[0].debit_balances.debits_posted, 0);
    ASSERT_STATUS(take.account_results[0].status, PC_ID_TAKEN);
    ASSERT_EQ(take.account_results[0].timestamp_ns, 0);
    ASSERT_STATUS(own_void.transfer_results[0].status, PC_OK); /* still open for its owner */
    ASSERT_STR_EQ(own_void.transfer_results[0].debit_account_id, a1);

    int64_t seq = batch_of(db, "SELECT batch_seq FROM accounts WHERE id = ?1", a1);
    ASSERT_EQ(batch_of(db, "SELECT batch_seq FROM transfers WHERE id = ?1", pending), seq);
    snprintf(id, sizeof id, "a-void-%u", round);
    ASSERT_EQ(batch_of(db, "SELECT batch_seq FROM transfers WHERE id = ?1", id), seq);
}

static void test_race_in_one_batch(void) {
    paths_make("race");
    store_t *store;
    writer_t *writer;
    start(&store, &writer, 0);
    job_t b_account;
    account_event(&b_account.accounts[0], "b-main");
    job_accounts(&b_account, "key_b", 1);
    submit(writer, &b_account);
    wait_done(1);
    ASSERT_STATUS(b_account.account_results[0].status, PC_OK);
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    for (uint32_t round = 0; round < ROUNDS; round++) race_round(writer, db, round);
    sqlite3_close(db);
    ASSERT_TRUE(ledger_balanced(writer_ledger(writer), NULL));
    stop(store, writer);
}

static pc_status submit_wait(writer_t *writer, job_t *job) {
    return writer_submit_wait(writer, &job->cmd);
}

static pc_status move_as(writer_t *writer, const char *owner, const char *id, const char *dr, const char *cr,
                         ledger_transfer_result_t *result) {
    job_t job;
    transfer_event(&job.transfers[0], id, dr, cr, 1, 0);
    job_transfers(&job, owner, 1);
    pc_status status = submit_wait(writer, &job);
    *result = job.transfer_results[0];
    return status;
}

/* A key's grants whose batch failed to commit are taken back, in memory as on disk. */
static void test_failed_batch_takes_grants_back(void) {
    paths_make("rollback");
    store_t *store;
    writer_t *writer;
    start(&store, &writer, 2); /* commit 1: the accounts; commit 2: the grant, failing */
    job_t admin;
    account_event(&admin.accounts[0], "bank");
    account_event(&admin.accounts[1], "till");
    job_accounts(&admin, NULL, 2);
    ASSERT_STATUS(submit_wait(writer, &admin), PC_OK);
    const char *granted[] = {"bank", "till"};
    writer_cmd_t grant = {.kind = WRITER_CMD_EXEC, .grantee_id = "key_c", .grant_account_ids = granted,
                          .grant_count = 2};
    ASSERT_STATUS(writer_submit_wait(writer, &grant), PC_STORE_COMMIT_FAILED);
    ledger_transfer_result_t result;
    ASSERT_STATUS(move_as(writer, "key_c", "c-1", "bank", "till", &result), PC_OK);
    ASSERT_STATUS(result.status, PC_ACCOUNT_NOT_FOUND);
    ASSERT_EQ(result.field, LEDGER_FIELD_DEBIT_ACCOUNT_ID);
    grant.done = NULL;
    grant.user = NULL;
    ASSERT_STATUS(writer_submit_wait(writer, &grant), PC_OK);
    ASSERT_STATUS(move_as(writer, "key_c", "c-2", "bank", "till", &result), PC_OK);
    ASSERT_STATUS(result.status, PC_OK);
    stop(store, writer);
}

/* Grants are loaded at start: those of created accounts, of a key's list, and of an
 * id whose account was created after the grant. */
static void test_grants_survive_restart(void) {
    paths_make("restart");
    store_t *store;
    writer_t *writer;
    start(&store, &writer, 0);
    job_t job;
    account_event(&job.accounts[0], "a-own");
    account_event(&job.accounts[1], "a-own2");
    job_accounts(&job, "key_a", 2);
    ASSERT_STATUS(submit_wait(writer, &job), PC_OK);
    const char *later[] = {"later", "later2"};
    writer_cmd_t grant = {.kind = WRITER_CMD_EXEC, .grantee_id = "key_d", .grant_account_ids = later,
                          .grant_count = 2};
    ASSERT_STATUS(writer_submit_wait(writer, &grant), PC_OK);
    account_event(&job.accounts[0], "later");
    account_event(&job.accounts[1], "later2");
    job_accounts(&job, NULL, 2);
    ASSERT_STATUS(submit_wait(writer, &job), PC_OK);
    ledger_transfer_result_t result;
    ASSERT_STATUS(move_as(writer, "key_d", "d-1", "later", "later2", &result), PC_OK);
    ASSERT_STATUS(result.status, PC_OK);
    stop(store, writer);

    start(&store, &writer, 0);
    ASSERT_STATUS(move_as(writer, "key_a", "a-1", "a-own", "a-own2", &result), PC_OK);
    ASSERT_STATUS(result.status, PC_OK);
    ASSERT_STATUS(move_as(writer, "key_d", "d-2", "later", "later2", &result), PC_OK);
    ASSERT_STATUS(result.status, PC_OK);
    ASSERT_STATUS(move_as(writer, "key_d", "d-3", "a-own", "later2", &result), PC_OK);
    ASSERT_STATUS(result.status, PC_ACCOUNT_NOT_FOUND);
    ASSERT_STATUS(move_as(writer, "key_a", "d-1", "a-own", "a-own2", &result), PC_OK);
    ASSERT_STATUS(result.status, PC_ID_TAKEN); /* key_d's transfer: nothing of it is told */
    ASSERT_STATUS(move_as(writer, "key_d", "d-1", "later", "later2", &result), PC_OK);
    ASSERT_STATUS(result.status, PC_EXISTS);   /* its owner's retry */
    ASSERT_STR_EQ(result.debit_account_id, "later");
    stop(store, writer);
}

int main(void) {
    TEST_RUN(test_race_in_one_batch);
    TEST_RUN(test_failed_batch_takes_grants_back);
    TEST_RUN(test_grants_survive_restart);
    return test_finish();
}
