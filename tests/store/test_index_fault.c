/* Goal: a failing index file never stalls the ledger. Every request whose batch
 * committed is answered, a stop completes, nothing acknowledged is lost, nothing
 * refused was written, and verify passes; a start on a still-failing index file is
 * refused with its own code instead of hanging.
 * Method: small memtables (back-pressure after MEMTABLE_MAX unindexed transfers) and
 * the indexer's writes failing from the second one on (the fault hook), while four
 * submitters (two of batches, two of single transfers) run until the store refuses
 * them; the writer must tell the process to stop (its failed callback, once, with
 * store_index_failed). The store is stopped as SIGTERM stops it (writer, then store), reopened
 * without the fault: the index is rebuilt from the main file, every acknowledged id
 * is found and answers exists when resubmitted, no refused id is found, balances
 * equal the acknowledged sums and verify passes. A watchdog turns a stall (the
 * writer waiting for ever after COMMIT, or a stop that never ends) into a failure. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/core.h"
#include "journal/verify.h"
#include "ledger/ledger.h"
#include "store/store.h"
#include "test.h"
#include "writer/writer.h"

#define MEMTABLE_MAX 4000          /* unindexed transfers before the writer waits */
#define BATCH_TRANSFERS 500
#define SUBMITTERS 4               /* even: batches; odd: single transfers */
#define ROUNDS_MAX 400             /* per submitter: far more than it takes to be refused */
#define WATCHDOG_S 600

static char dir[256], db_path[300], key_path[300];

typedef struct {
    writer_t *writer;
    uint32_t number;
    uint32_t acked_count, refused_count;
    int64_t acked_amount;
    char (*acked)[PC_ID_SIZE];
    char (*refused)[PC_ID_SIZE];
} submitter_t;

static void watchdog(int signal_number) {
    (void)signal_number;
    static const char text[] = "FAIL test_index_fault: stalled (a committed request unanswered, or a stop hung)\n";
    ssize_t ignored = write(2, text, sizeof text - 1);
    (void)ignored;
    _exit(1);
}

/* What the writer told the process (the server exits 1 on it). */
static pc_status failed_status = PC_OK;
static uint32_t failed_calls;

static void on_writer_failed(void *ctx, pc_status status) {
    (void)ctx;
    failed_status = status;
    failed_calls++;
}

static void open_store(store_t **store, writer_t **writer, const store_options_t *options) {
    ASSERT_STATUS(store_open(store, db_path, options), PC_OK);
    writer_config_t config = {.failed = on_writer_failed};
    ASSERT_STATUS(writer_start(writer, *store, key_path, &config), PC_OK);
}

static void accounts_create(writer_t *writer) {
    ledger_account_t accounts[2] = {0};
    ledger_account_result_t results[2];
    snprintf(accounts[0].id, sizeof accounts[0].id, "a");
    snprintf(accounts[1].id, sizeof accounts[1].id, "b");
    memcpy(accounts[0].currency, "USD", 4);
    memcpy(accounts[1].currency, "USD", 4);
    writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_ACCOUNTS, .event_count = 2, .accounts = accounts,
                        .account_results = results};
    ASSERT_STATUS(writer_submit_wait(writer, &cmd), PC_OK);
}

/* One command; true while the store takes writes. A refusal must be the index's. */
static bool submit_round(submitter_t *s, uint32_t round, ledger_transfer_t *events, ledger_transfer_result_t *results) {
    uint32_t count = s->number % 2 == 0 ? BATCH_TRANSFERS : 1;
    for (uint32_t i = 0; i < count; i++) {
        memset(&events[i], 0, sizeof events[i]);
        snprintf(events[i].id, sizeof events[i].id, "s%u-%u-%u", s->number, round, i);
        snprintf(events[i].debit_account_id, PC_ID_SIZE, "a");
        snprintf(events[i].credit_account_id, PC_ID_SIZE, "b");
        memcpy(events[i].currency, "USD", 4);
        events[i].amount = 1 + (round + i) % 3;
    }
    writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = count, .transfers = events,
                        .transfer_results = results};
    pc_status status = writer_submit_wait(s->writer, &cmd);
    for (uint32_t i = 0; i < count; i++) {
        if (status == PC_OK) {
            ASSERT_STATUS(results[i].status, PC_OK);
            memcpy(s->acked[s->acked_count++], events[i].id, PC_ID_SIZE);
            s->acked_amount += events[i].amount;
        } else {
            memcpy(s->refused[s->refused_count++], events[i].id, PC_ID_SIZE);
        }
    }
    if (status != PC_OK) ASSERT_STATUS(status, PC_STORE_INDEX_FAILED);
    return status == PC_OK;
}

static void *submitter_main(void *arg) {
    submitter_t *s = arg;
    static __thread ledger_transfer_t events[BATCH_TRANSFERS];
    static __thread ledger_transfer_result_t results[BATCH_TRANSFERS];
    for (uint32_t round = 0; round < ROUNDS_MAX; round++) {
        if (!submit_round(s, round, events, results)) return NULL;
    }
    TEST_FAIL("submitter %u: never refused in %u rounds: the index fault did not stop writes", s->number, ROUNDS_MAX);
}

/* Every acknowledged id is found and answers exists; no refused id is found. */
static void check_ids(store_t *store, writer_t *writer, const submitter_t *s) {
    store_reader_t *reader;
    ASSERT_STATUS(store_reader_open(store, &reader), PC_OK);
    for (uint32_t i = 0; i < s->acked_count; i++) {
        store_transfer_t t;
        ASSERT_STATUS(store_read_transfer(reader, s->acked[i], &t), PC_OK);
        store_transfer_free(&t);
    }
    for (uint32_t i = 0; i < s->refused_count; i++) {
        store_transfer_t t;
        ASSERT_STATUS(store_read_transfer(reader, s->refused[i], &t), PC_NOT_FOUND);
    }
    store_reader_close(reader);
    for (uint32_t i = 0; i < s->acked_count; i += 97) { /* a sample through the writer */
        ledger_transfer_t again = {0};
        ledger_transfer_result_t result;
        snprintf(again.id, sizeof again.id, "%s", s->acked[i]);
        snprintf(again.debit_account_id, PC_ID_SIZE, "a");
        snprintf(again.credit_account_id, PC_ID_SIZE, "b");
        memcpy(again.currency, "USD", 4);
        unsigned number, round, index;
        ASSERT_EQ(sscanf(again.id, "s%u-%u-%u", &number, &round, &index), 3);
        again.amount = 1 + (round + index) % 3;
        writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = 1, .transfers = &again,
                            .transfer_results = &result};
        ASSERT_STATUS(writer_submit_wait(writer, &cmd), PC_OK);
        ASSERT_STATUS(result.status, PC_EXISTS);
    }
}

static void load_until_refused(writer_t *writer, submitter_t *submitters) {
    pthread_t threads[SUBMITTERS];
    for (uint32_t i = 0; i < SUBMITTERS; i++) {
        uint32_t capacity = ROUNDS_MAX * (i % 2 == 0 ? BATCH_TRANSFERS : 1);
        submitters[i] = (submitter_t){.writer = writer, .number = i};
        submitters[i].acked = calloc(capacity, PC_ID_SIZE);
        submitters[i].refused = calloc(capacity, PC_ID_SIZE);
        ASSERT_TRUE(submitters[i].acked != NULL && submitters[i].refused != NULL);
        ASSERT_EQ(pthread_create(&threads[i], NULL, submitter_main, &submitters[i]), 0);
    }
    for (uint32_t i = 0; i < SUBMITTERS; i++) ASSERT_EQ(pthread_join(threads[i], NULL), 0);
}

static void test_index_fault(void) {
    store_t *store;
    writer_t *writer;
    store_options_t faulty = {.create = true, .fault_index_write_from = 2, .index_memtable_entries_max = MEMTABLE_MAX};
    open_store(&store, &writer, &faulty);
    accounts_create(writer);
    submitter_t submitters[SUBMITTERS];
    load_until_refused(writer, submitters);
    writer_stop(writer); /* what SIGTERM does: it must complete */
    ASSERT_EQ(failed_calls, 1); /* the process was told to stop, once (writer thread, joined) */
    ASSERT_STATUS(failed_status, PC_STORE_INDEX_FAILED);
    store_close(store);
    int64_t acked_amount = 0;
    uint32_t acked = 0, refused = 0;
    for (uint32_t i = 0; i < SUBMITTERS; i++) {
        acked_amount += submitters[i].acked_amount;
        acked += submitters[i].acked_count;
        refused += submitters[i].refused_count;
    }
    printf("acked=%u refused=%u\n", acked, refused);
    ASSERT_TRUE(acked > MEMTABLE_MAX); /* the fault met a full memtable, not an idle one */
    ASSERT_TRUE(refused > 0);
    store_options_t still_failing = {.fault_index_write_from = 1, .index_memtable_entries_max = MEMTABLE_MAX / 4};
    ASSERT_STATUS(store_open(&store, db_path, &still_failing), PC_OK);
    ASSERT_STATUS(writer_start(&writer, store, key_path, NULL), PC_STORE_INDEX_FAILED); /* catch-up at load */
    store_close(store);
    store_options_t clean = {0};
    open_store(&store, &writer, &clean);
    const ledger_account_t *b = ledger_account_find(writer_ledger(writer), "b");
    ASSERT_EQ(b->balances.credits_posted, acked_amount);
    for (uint32_t i = 0; i < SUBMITTERS; i++) check_ids(store, writer, &submitters[i]);
    writer_stop(writer);
    store_close(store);
    journal_report_t report;
    ASSERT_STATUS(store_verify(db_path, NULL, &report), PC_OK);
    if (!report.ok) TEST_FAIL("verify: %s", report.error_detail);
    for (uint32_t i = 0; i < SUBMITTERS; i++) {
        free(submitters[i].acked);
        free(submitters[i].refused);
    }
}

int main(void) {
    signal(SIGALRM, watchdog);
    alarm(WATCHDOG_S);
    snprintf(dir, sizeof dir, "/tmp/paycore-index-fault-XXXXXX");
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    snprintf(db_path, sizeof db_path, "%s/f.db", dir);
    snprintf(key_path, sizeof key_path, "%s/f.db.key", dir);
    TEST_RUN(test_index_fault);
    char command[300];
    snprintf(command, sizeof command, "rm -rf '%s'", dir);
    ASSERT_EQ(system(command), 0);
    return test_finish();
}
