/* Goal: a batch holding nothing but a linked chain that failed (its first transfer
 * applied, then undone by a later one) commits as a batch without ledger rows: the
 * writer does not stop, the failure is answered per event, no balance moved, and the
 * next batch works. Before the fix the writer asserted that such a batch touched no
 * account and the server aborted (a failed chain leaves its accounts in
 * accounts_touched, ledger.h).
 * Method: a real SQLite file and writer; the chain is the only command of its batch
 * (writer_submit_wait); balances read back through a reader. */
#include <stdlib.h>
#include <unistd.h>

#include "core/core.h"
#include "ledger/ledger.h"
#include "store/store.h"
#include "test.h"
#include "writer/writer.h"

static void account_event(ledger_account_t *a, const char *id, uint16_t flags) {
    memset(a, 0, sizeof *a);
    snprintf(a->id, sizeof a->id, "%s", id);
    memcpy(a->currency, "EUR", 4);
    a->code = 7;
    a->flags = flags;
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

static int64_t posted(store_t *store, const char *id, bool debits) {
    store_reader_t *reader;
    ASSERT_STATUS(store_reader_open(store, &reader), PC_OK);
    store_account_t account;
    ASSERT_STATUS(store_read_account(reader, id, &account), PC_OK);
    int64_t value = debits ? account.account.balances.debits_posted : account.account.balances.credits_posted;
    store_account_free(&account);
    store_reader_close(reader);
    return value;
}

int main(void) {
    char dir[] = "/tmp/paycore-test-XXXXXX", db_path[300], key_path[300];
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    snprintf(db_path, sizeof db_path, "%s/chain.db", dir);
    snprintf(key_path, sizeof key_path, "%s/chain.db.key", dir);
    store_t *store;
    writer_t *writer;
    store_options_t options = {.create = true};
    ASSERT_STATUS(store_open(&store, db_path, &options), PC_OK);
    ASSERT_STATUS(writer_start(&writer, store, key_path, NULL), PC_OK);

    ledger_account_t accounts[3];
    ledger_account_result_t account_results[3];
    account_event(&accounts[0], "bank", 0);
    account_event(&accounts[1], "b", LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS);
    account_event(&accounts[2], "c", LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS);
    writer_cmd_t create = {.kind = WRITER_CMD_CREATE_ACCOUNTS, .event_count = 3, .accounts = accounts,
                           .account_results = account_results};
    ASSERT_STATUS(writer_submit_wait(writer, &create), PC_OK);

    for (int round = 0; round < 3; round++) {
        ledger_transfer_t chain[2];
        ledger_transfer_result_t results[2];
        char id1[32], id2[32];
        snprintf(id1, sizeof id1, "fund-%d", round);
        snprintf(id2, sizeof id2, "spend-%d", round);
        transfer_event(&chain[0], id1, "bank", "b", 1, LEDGER_TRANSFER_LINKED);
        transfer_event(&chain[1], id2, "b", "c", 5, 0); /* more than b holds: the chain fails */
        writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = 2, .transfers = chain,
                            .transfer_results = results};
        ASSERT_STATUS(writer_submit_wait(writer, &cmd), PC_OK);
        ASSERT_STATUS(results[0].status, PC_LINKED_EVENT_FAILED);
        ASSERT_STATUS(results[1].status, PC_EXCEEDS_CREDITS);
        ASSERT_STATUS(writer_failed(writer), PC_OK);
    }
    ASSERT_TRUE(posted(store, "bank", true) == 0 && posted(store, "b", false) == 0);

    ledger_transfer_t after;
    ledger_transfer_result_t after_result;
    transfer_event(&after, "after", "bank", "b", 3, 0);
    writer_cmd_t next = {.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = 1, .transfers = &after,
                         .transfer_results = &after_result};
    ASSERT_STATUS(writer_submit_wait(writer, &next), PC_OK);
    ASSERT_STATUS(after_result.status, PC_OK);
    ASSERT_TRUE(posted(store, "bank", true) == 3 && posted(store, "b", false) == 3);

    writer_stop(writer);
    store_close(store);
    char command[400];
    snprintf(command, sizeof command, "rm -rf %s", dir);
    ASSERT_TRUE(system(command) == 0);
    printf("ok\n");
    return 0;
}
