/* Goal: balances, lookups and listings stay exact across the store's off-commit
 * machinery: account rows written only at balance snapshots, ids indexed by a background
 * thread, a crash that skips the final balance snapshot. Method: a child process commits
 * 70k transfers among three accounts (more than one indexer flush) and exits without
 * stopping the writer; the parent reopens and checks balances against the child's
 * own sums, finds old and new ids, pages through an account's transfers, then stops
 * cleanly and checks that a second start sees the same. */
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ledger/ledger.h"
#include "store/store.h"
#include "test.h"
#include "writer/writer.h"

#define TRANSFERS 70000
static char dir[256], db_path[300], key_path[300];
static const char *names[3] = {"a", "b", "c"};

typedef struct {
    int64_t credits[3], debits[3];
    uint32_t touching_a;
} expected_t;

static void start(store_t **store, writer_t **writer) {
    store_options_t options = {.create = true};
    ASSERT_STATUS(store_open(store, db_path, &options), PC_OK);
    ASSERT_STATUS(writer_start(writer, *store, key_path, NULL), PC_OK);
}

static void child_run(int fd) {
    store_t *store;
    writer_t *writer;
    start(&store, &writer);
    ledger_account_t accounts[3] = {0};
    ledger_account_result_t ar[3];
    for (int i = 0; i < 3; i++) {
        snprintf(accounts[i].id, sizeof accounts[i].id, "%s", names[i]);
        memcpy(accounts[i].currency, "USD", 4);
    }
    writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_ACCOUNTS, .event_count = 3, .accounts = accounts, .account_results = ar};
    ASSERT_STATUS(writer_submit_wait(writer, &cmd), PC_OK);
    static ledger_transfer_t events[LEDGER_BATCH_EVENTS_MAX];
    static ledger_transfer_result_t results[LEDGER_BATCH_EVENTS_MAX];
    expected_t expected = {0};
    uint32_t n = 0;
    while (n < TRANSFERS) {
        uint32_t batch = TRANSFERS - n < LEDGER_BATCH_EVENTS_MAX ? TRANSFERS - n : LEDGER_BATCH_EVENTS_MAX;
        for (uint32_t i = 0; i < batch; i++, n++) {
            ledger_transfer_t *t = &events[i];
            memset(t, 0, sizeof *t);
            int d = (int)(n % 3), c = (int)((n / 3 + 1 + n % 2) % 3);
            if (c == d) c = (d + 1) % 3;
            snprintf(t->id, sizeof t->id, "t-%u", n);
            snprintf(t->debit_account_id, sizeof t->debit_account_id, "%s", names[d]);
            snprintf(t->credit_account_id, sizeof t->credit_account_id, "%s", names[c]);
            memcpy(t->currency, "USD", 4);
            t->amount = 1 + n % 7;
            expected.debits[d] += t->amount;
            expected.credits[c] += t->amount;
            if (d == 0 || c == 0) expected.touching_a++;
        }
        cmd = (writer_cmd_t){.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = batch, .transfers = events,
                             .transfer_results = results};
        ASSERT_STATUS(writer_submit_wait(writer, &cmd), PC_OK);
        for (uint32_t i = 0; i < batch; i++) ASSERT_STATUS(results[i].status, PC_OK);
    }
    ASSERT_EQ(write(fd, &expected, sizeof expected), (long)sizeof expected);
    _exit(0); /* a crash: no final balance snapshot, no index flush */
}

static void list_count(void *ctx_opaque) { (void)ctx_opaque; }
static uint32_t listed;
static char last_id[PC_ID_SIZE];
static uint64_t last_ts;
static void on_transfer(const ledger_transfer_t *t, ledger_pending_state state, void *ctx) {
    (void)state; (void)ctx;
    ASSERT_TRUE(t->timestamp_ns > last_ts); /* ascending, no duplicates */
    last_ts = t->timestamp_ns;
    listed++;
    snprintf(last_id, sizeof last_id, "%s", t->id);
}

static void check(store_t *store, writer_t *writer, const expected_t *expected) {
    for (int i = 0; i < 3; i++) {
        const ledger_account_t *a = ledger_account_find(writer_ledger(writer), names[i]);
        ASSERT_EQ(a->balances.debits_posted, expected->debits[i]);
        ASSERT_EQ(a->balances.credits_posted, expected->credits[i]);
    }
    store_reader_t *reader;
    ASSERT_STATUS(store_reader_open(store, &reader), PC_OK);
    store_account_t account;
    ASSERT_STATUS(store_read_account(reader, "b", &account), PC_OK);
    ASSERT_EQ(account.account.balances.credits_posted, expected->credits[1]);
    store_account_free(&account);
    const char *probes[] = {"t-0", "t-33333", "t-69999"};
    for (int i = 0; i < 3; i++) {
        store_transfer_t t;
        ASSERT_STATUS(store_read_transfer(reader, probes[i], &t), PC_OK);
        ASSERT_STR_EQ(t.transfer.id, probes[i]);
        store_transfer_free(&t);
    }
    store_transfer_t t;
    ASSERT_STATUS(store_read_transfer(reader, "t-70000", &t), PC_NOT_FOUND);
    listed = 0;
    last_ts = 0;
    bool has_more = true;
    for (int page = 0; has_more && page < 10000; page++) {
        store_query_t query = {.starting_after = listed ? last_id : NULL, .limit = 100};
        ASSERT_STATUS(store_list_account_transfers(reader, "a", &query, on_transfer, NULL, &has_more), PC_OK);
    }
    ASSERT_EQ(listed, expected->touching_a);
    store_reader_close(reader);
}

static void test_crash_replay_and_index(void) {
    snprintf(dir, sizeof dir, "/tmp/paycore-index-XXXXXX");
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    snprintf(db_path, sizeof db_path, "%s/i.db", dir);
    snprintf(key_path, sizeof key_path, "%s/i.db.key", dir);
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) child_run(fds[1]);
    expected_t expected;
    ASSERT_EQ(read(fds[0], &expected, sizeof expected), (long)sizeof expected);
    int status;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    store_t *store;
    writer_t *writer;
    start(&store, &writer);
    check(store, writer, &expected);
    writer_stop(writer);
    store_close(store);
    start(&store, &writer); /* after a clean stop: nothing to replay */
    check(store, writer, &expected);
    writer_stop(writer);
    store_close(store);
    (void)list_count;
    char command[300];
    snprintf(command, sizeof command, "rm -rf '%s'", dir);
    ASSERT_EQ(system(command), 0);
}

int main(void) {
    TEST_RUN(test_crash_replay_and_index);
    return test_finish();
}
