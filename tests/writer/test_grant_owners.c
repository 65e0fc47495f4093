/* Goal: the owners of an account the writer answers in its batch (held in memory and
 * cached by account id: writer_batch_account_owners, every event's owners) are the
 * store's (store_events_account_owners) at every point: after grants of accounts that
 * exist and of ids whose account comes later, accounts created with and without an
 * owner, batches that fail and take their grants back, and restarts that load the
 * grants again. Method: a real SQLite file and writer; random batches, each one
 * command whose in_transaction asks both for every id (all of an account's owners and
 * its first few), then fails its batch at random. Every id is asked in every batch, so
 * an answer kept across a change it missed differs from the store's. Most batches
 * bring a new key (its row, and a transfer it cannot reach: no grant at all), so that
 * the table of owner ids grows under the answers kept (their ids are borrowed from
 * it). Seeded (PAYCORE_SEED=<n>). */
#include <stdlib.h>
#include <unistd.h>

#include "core/core.h"
#include "ledger/ledger.h"
#include "paycore/limits.h"
#include "store/store.h"
#include "store/store_api.h"
#include "store/store_events.h"
#include "test.h"
#include "writer/writer.h"

#define KEYS 6          /* more than an account's owners the writer caches */
#define NAMES 24        /* acct-<n>: created during the run; later-<n>: granted before */
#define ROUNDS 400
#define RESTART_EVERY 200

static char dir[256], db_path[300], key_path[300];
static uint64_t rng_state;
static uint64_t checks;
static uint32_t keys_new; /* keys made after the first KEYS */

static uint32_t rng_below(uint32_t n) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

static void name_of(char out[PC_ID_SIZE], uint32_t n) {
    snprintf(out, PC_ID_SIZE, n % 3 == 0 ? "later-%u" : "acct-%u", n);
}

static void key_of(char out[PC_ID_SIZE], uint32_t k) { snprintf(out, PC_ID_SIZE, "key_%u", k); }

static void start(store_t **store, writer_t **writer) {
    store_options_t options = {.create = true};
    ASSERT_STATUS(store_open(store, db_path, &options), PC_OK);
    ASSERT_STATUS(writer_start(writer, *store, key_path, NULL), PC_OK);
}

static void stop(store_t *store, writer_t *writer) {
    writer_stop(writer);
    store_close(store);
}

/* The merchant keys' rows (the store's owners are grants of merchant keys). */
static pc_status keys_in_tx(writer_cmd_t *cmd, store_tx_t *tx) {
    (void)cmd;
    pc_status status = PC_OK;
    for (uint32_t k = 0; k < KEYS && status == PC_OK; k++) {
        store_api_key_t key = {.scope = "merchant", .name = "m", .created_ns = 1};
        key_of(key.id, k);
        key.key_hash[0] = (uint8_t)(k + 1); /* each its own */
        status = store_api_key_insert(tx, &key);
    }
    return status;
}

/* ---- one batch ---- */

typedef struct {
    writer_cmd_t cmd;
    ledger_account_t account;
    ledger_account_result_t account_result;
    ledger_transfer_t transfer;
    ledger_transfer_result_t transfer_result;
    char owner[PC_ID_SIZE], grantee[PC_ID_SIZE];
    bool grantee_new;            /* its row is inserted in the batch */
    char grant_names[4][PC_ID_SIZE];
    const char *grant_ids[4];
    bool fail;
} round_job;

/* Both answers for 'id', the first 'owners_max' owners. */
static void check_id(store_events_writer_t *events, const char *id, uint32_t owners_max) {
    const char *held[EVENTS_OWNERS_MAX];
    char stored[EVENTS_OWNERS_MAX][PC_ID_SIZE];
    uint32_t held_count = 0, stored_count = 0;
    if (!writer_batch_account_owners(id, held, owners_max, &held_count)) TEST_FAIL("not on the writer's batch");
    ASSERT_STATUS(store_events_account_owners(events, id, stored, owners_max, &stored_count), PC_OK);
    if (held_count != stored_count) TEST_FAIL("%s: %u owners held, %u stored", id, held_count, stored_count);
    for (uint32_t i = 0; i < held_count; i++) {
        if (strcmp(held[i], stored[i]) != 0) TEST_FAIL("%s: owner %u is %s, stored %s", id, i, held[i], stored[i]);
    }
    checks++;
}

static pc_status round_in_tx(writer_cmd_t *cmd, store_tx_t *tx) {
    round_job *job = (round_job *)cmd;
    if (job->grantee_new) {
        store_api_key_t key = {.scope = "merchant", .name = "m", .created_ns = 1};
        memcpy(key.id, job->grantee, sizeof key.id);
        memcpy(key.key_hash, &keys_new, sizeof keys_new); /* each its own */
        key.key_hash[sizeof keys_new] = 1;
        ASSERT_STATUS(store_api_key_insert(tx, &key), PC_OK);
    }
    store_events_writer_t *events;
    ASSERT_STATUS(store_events_writer_begin(tx, &events), PC_OK);
    char id[PC_ID_SIZE];
    for (uint32_t n = 0; n < NAMES; n++) {
        name_of(id, n);
        check_id(events, id, EVENTS_OWNERS_MAX);
        check_id(events, id, 1 + rng_below(3));
        check_id(events, id, EVENTS_OWNERS_MAX); /* again: the answer just kept */
    }
    store_events_writer_end(events);
    return job->fail ? PC_INTERNAL : PC_OK;
}

/* A new key's first command: a transfer it cannot reach, so it grants nothing, but its
 * id joins the owner ids all the same (their table grows with no grant). */
static void round_new_key_transfer(round_job *job) {
    job->grantee_new = true;
    key_of(job->grantee, KEYS + keys_new++);
    job->cmd.kind = WRITER_CMD_CREATE_TRANSFERS;
    job->cmd.owner_id = job->grantee;
    job->cmd.event_count = 1;
    job->cmd.transfers = &job->transfer;
    job->cmd.transfer_results = &job->transfer_result;
    snprintf(job->transfer.id, sizeof job->transfer.id, "t-%u", keys_new);
    name_of(job->transfer.debit_account_id, 1);
    name_of(job->transfer.credit_account_id, 2);
    memcpy(job->transfer.currency, "EUR", 4);
    job->transfer.amount = 1;
    job->transfer.code = 1;
}

/* Grants to 'key' of up to four ids, each a checked name or (spare) one no check asks. */
static void round_grants(round_job *job, const char *key, bool spare) {
    memcpy(job->grantee, key, PC_ID_SIZE);
    job->cmd.grantee_id = job->grantee;
    job->cmd.grant_count = 1 + rng_below(4);
    for (uint32_t i = 0; i < job->cmd.grant_count; i++) {
        if (spare) snprintf(job->grant_names[i], PC_ID_SIZE, "spare-%u", rng_below(NAMES));
        else name_of(job->grant_names[i], rng_below(NAMES));
        job->grant_ids[i] = job->grant_names[i];
    }
    job->cmd.grant_account_ids = job->grant_ids;
}

/* A random command: an account created (by a key, or by an admin: no grant), grants
 * to a key of ids with or without their account, a new key's transfer, grants of
 * spare ids to a later key, or only the check. */
static void round_build(round_job *job, const bool *created) {
    memset(job, 0, sizeof *job);
    job->cmd = (writer_cmd_t){.kind = WRITER_CMD_EXEC, .in_transaction = round_in_tx};
    uint32_t n = rng_below(NAMES);
    if (rng_below(3) == 0 && !created[n]) {
        job->cmd.kind = WRITER_CMD_CREATE_ACCOUNTS;
        job->cmd.event_count = 1;
        job->cmd.accounts = &job->account;
        job->cmd.account_results = &job->account_result;
        name_of(job->account.id, n);
        memcpy(job->account.currency, "EUR", 4);
        job->account.code = 7;
        if (rng_below(4) != 0) {
            key_of(job->owner, rng_below(KEYS));
            job->cmd.owner_id = job->owner;
        }
    }
    char key[PC_ID_SIZE];
    uint32_t pick = rng_below(8);
    if (job->cmd.kind == WRITER_CMD_EXEC && pick < 5) {
        round_new_key_transfer(job);
    } else if (pick == 5 && keys_new > 0) {
        key_of(key, KEYS + rng_below(keys_new));
        round_grants(job, key, true);
    } else if (pick >= 5 || rng_below(2) == 0) {
        key_of(key, rng_below(KEYS));
        round_grants(job, key, false);
    }
    job->fail = rng_below(6) == 0;
}

static void test_owners_as_stored(void) {
    const char *seed_text = getenv("PAYCORE_SEED");
    rng_state = seed_text ? strtoull(seed_text, NULL, 10) | 1 : (pc_wall_ns() | 1);
    printf("seed %llu (PAYCORE_SEED replays it)\n", (unsigned long long)rng_state);
    snprintf(dir, sizeof dir, "/tmp/paycore-test-XXXXXX");
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    snprintf(db_path, sizeof db_path, "%s/owners.db", dir);
    snprintf(key_path, sizeof key_path, "%s/owners.db.key", dir);
    store_t *store;
    writer_t *writer;
    start(&store, &writer);
    writer_cmd_t keys = {.kind = WRITER_CMD_EXEC, .in_transaction = keys_in_tx};
    ASSERT_STATUS(writer_submit_wait(writer, &keys), PC_OK);
    bool created[NAMES] = {false};
    uint32_t failed = 0;
    for (uint32_t round = 1; round <= ROUNDS; round++) {
        round_job job;
        round_build(&job, created);
        pc_status status = writer_submit_wait(writer, &job.cmd);
        ASSERT_STATUS(status, job.fail ? PC_INTERNAL : PC_OK);
        if (job.cmd.kind == WRITER_CMD_CREATE_ACCOUNTS && !job.fail) {
            ASSERT_STATUS(job.account_result.status, PC_OK);
            for (uint32_t n = 0; n < NAMES; n++) {
                char id[PC_ID_SIZE];
                name_of(id, n);
                if (strcmp(id, job.account.id) == 0) created[n] = true;
            }
        }
        failed += job.fail;
        if (job.fail) { /* what the failed batch took back, before any other change */
            round_job check;
            memset(&check, 0, sizeof check);
            check.cmd = (writer_cmd_t){.kind = WRITER_CMD_EXEC, .in_transaction = round_in_tx};
            ASSERT_STATUS(writer_submit_wait(writer, &check.cmd), PC_OK);
        }
        if (round % RESTART_EVERY == 0) {
            stop(store, writer);
            start(&store, &writer);
        }
    }
    round_job last; /* the state the last batch left, after the last restart too */
    memset(&last, 0, sizeof last);
    last.cmd = (writer_cmd_t){.kind = WRITER_CMD_EXEC, .in_transaction = round_in_tx};
    ASSERT_STATUS(writer_submit_wait(writer, &last.cmd), PC_OK);
    stop(store, writer);
    ASSERT_TRUE(failed > 0 && keys_new > 64); /* a failed batch; the owner ids grew */
    ASSERT_EQ(checks, (uint64_t)(ROUNDS + failed + 1) * NAMES * 3);
    char command[320];
    snprintf(command, sizeof command, "rm -rf '%s'", dir);
    ASSERT_EQ(system(command), 0);
}

int main(void) {
    TEST_RUN(test_owners_as_stored);
    return test_finish();
}
