/* Goal: balances, lookups and listings stay exact across the store's off-commit
 * machinery: account rows written only at balance snapshots, ids indexed by a background
 * thread, a crash that skips the final balance snapshot. Method: a child process commits
 * 70k transfers among three accounts (more than one indexer flush) and exits without
 * stopping the writer; the parent reopens and checks balances against the child's
 * own sums, finds old and new ids, pages through an account's transfers, then stops
 * cleanly and checks that a second start sees the same. */
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/core.h"
#include "journal/verify.h"
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

/* ---- colliding ids ---- */

#define COLLIDING_BITS 3          /* 8 index keys for every id */
#define COLLIDING_PER_ROUND 400   /* ~50 ids share each key after one round, ~100 after two */
#define COLLIDING_PENDING_EVERY 10

typedef struct {
    int64_t posted;   /* b's credits_posted */
    int64_t pending;  /* b's credits_pending */
} colliding_sums_t;

static void colliding_open(store_t **store, writer_t **writer, uint32_t key_bits, bool create) {
    store_options_t options = {.create = create, .index_key_bits = key_bits};
    ASSERT_STATUS(store_open(store, db_path, &options), PC_OK);
    ASSERT_STATUS(writer_start(writer, *store, key_path, NULL), PC_OK);
}

static void colliding_event(ledger_transfer_t *t, const char *prefix, uint32_t n) {
    memset(t, 0, sizeof *t);
    snprintf(t->id, sizeof t->id, "%s-%u", prefix, n);
    snprintf(t->debit_account_id, sizeof t->debit_account_id, "a");
    snprintf(t->credit_account_id, sizeof t->credit_account_id, "b");
    memcpy(t->currency, "USD", 4);
    t->amount = 1 + n % 5;
    if (n % COLLIDING_PENDING_EVERY == 0) {
        t->flags = LEDGER_TRANSFER_PENDING;
        t->timeout_s = 3600;
    }
}

/* Submits the round's transfers in one command; every result must be 'want'. */
static void colliding_submit(writer_t *writer, const char *prefix, pc_status want, colliding_sums_t *sums) {
    static ledger_transfer_t events[COLLIDING_PER_ROUND];
    static ledger_transfer_result_t results[COLLIDING_PER_ROUND];
    for (uint32_t n = 0; n < COLLIDING_PER_ROUND; n++) colliding_event(&events[n], prefix, n);
    writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = COLLIDING_PER_ROUND, .transfers = events,
                        .transfer_results = results};
    ASSERT_STATUS(writer_submit_wait(writer, &cmd), PC_OK);
    for (uint32_t n = 0; n < COLLIDING_PER_ROUND; n++) {
        ASSERT_STATUS(results[n].status, want);
        if (want != PC_OK) continue;
        if (events[n].flags & LEDGER_TRANSFER_PENDING) sums->pending += events[n].amount;
        else sums->posted += events[n].amount;
    }
}

/* Posts every pending transfer of a round: the post names a pending id among colliders. */
static void colliding_post(writer_t *writer, const char *prefix, colliding_sums_t *sums) {
    for (uint32_t n = 0; n < COLLIDING_PER_ROUND; n += COLLIDING_PENDING_EVERY) {
        ledger_transfer_t post = {0}, pending;
        ledger_transfer_result_t result;
        colliding_event(&pending, prefix, n);
        snprintf(post.id, sizeof post.id, "post-%s-%u", prefix, n);
        snprintf(post.pending_id, sizeof post.pending_id, "%s", pending.id);
        post.flags = LEDGER_TRANSFER_POST_PENDING;
        writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = 1, .transfers = &post,
                            .transfer_results = &result};
        ASSERT_STATUS(writer_submit_wait(writer, &cmd), PC_OK);
        ASSERT_STATUS(result.status, PC_OK);
        sums->pending -= pending.amount;
        sums->posted += pending.amount;
    }
}

/* Every id of the round reads back through a reader, as itself. */
static void colliding_read(store_t *store, const char *prefix) {
    store_reader_t *reader;
    ASSERT_STATUS(store_reader_open(store, &reader), PC_OK);
    for (uint32_t n = 0; n < COLLIDING_PER_ROUND; n++) {
        char id[PC_ID_SIZE];
        snprintf(id, sizeof id, "%s-%u", prefix, n);
        store_transfer_t t;
        ASSERT_STATUS(store_read_transfer(reader, id, &t), PC_OK);
        ASSERT_STR_EQ(t.transfer.id, id);
        store_transfer_free(&t);
    }
    store_transfer_t t;
    ASSERT_STATUS(store_read_transfer(reader, "c-missing", &t), PC_NOT_FOUND);
    store_reader_close(reader);
}

static void colliding_balances(writer_t *writer, const colliding_sums_t *sums) {
    const ledger_account_t *b = ledger_account_find(writer_ledger(writer), "b");
    ASSERT_EQ(b->balances.credits_posted, sums->posted);
    ASSERT_EQ(b->balances.credits_pending, sums->pending);
}

static void colliding_verify(void) {
    journal_report_t report;
    ASSERT_STATUS(store_verify(db_path, NULL, &report), PC_OK);
    if (!report.ok) TEST_FAIL("verify: %s", report.error_detail);
}

static void colliding_accounts(writer_t *writer) {
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

static void colliding_dir(void) {
    snprintf(dir, sizeof dir, "/tmp/paycore-collide-XXXXXX");
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    snprintf(db_path, sizeof db_path, "%s/c.db", dir);
    snprintf(key_path, sizeof key_path, "%s/c.db.key", dir);
}

static void dir_remove(void) {
    char command[300];
    snprintf(command, sizeof command, "rm -rf '%s'", dir);
    ASSERT_EQ(system(command), 0);
}

/* Goal: a lookup never misses an existing id, however many ids share its index key.
 * Method: keep 3 bits of each id's index key, so that ~50 ids share each key (then
 * ~100), far past any fixed candidate cap. Create a round of transfers (some pending);
 * resubmit each (exists: none is created twice) and read each through a reader. Stop
 * cleanly (the round moves to the index file), create a second round (in memory),
 * resubmit and read both, post the first round's pending transfers; balances exact,
 * verify passes. Then open with full keys: the index file, keyed otherwise, is rebuilt
 * and every id is still found. */
static void test_colliding_ids_never_missed(void) {
    colliding_dir();
    store_t *store;
    writer_t *writer;
    colliding_sums_t sums = {0};
    colliding_open(&store, &writer, COLLIDING_BITS, true);
    colliding_accounts(writer);
    colliding_submit(writer, "c", PC_OK, &sums);
    colliding_submit(writer, "c", PC_EXISTS, &sums);
    colliding_read(store, "c");
    writer_stop(writer);
    store_close(store);
    colliding_open(&store, &writer, COLLIDING_BITS, false);
    colliding_submit(writer, "d", PC_OK, &sums);
    colliding_submit(writer, "c", PC_EXISTS, &sums);
    colliding_submit(writer, "d", PC_EXISTS, &sums);
    colliding_post(writer, "c", &sums);
    colliding_read(store, "c");
    colliding_read(store, "d");
    colliding_balances(writer, &sums);
    writer_stop(writer);
    store_close(store);
    colliding_verify();
    colliding_open(&store, &writer, 0, false);
    colliding_submit(writer, "c", PC_EXISTS, &sums);
    colliding_read(store, "d");
    colliding_balances(writer, &sums);
    writer_stop(writer);
    store_close(store);
    dir_remove();
}

/* ---- the id key file ---- */

static void id_key_path(char *out, size_t size) { snprintf(out, size, "%s.idkey", db_path); }

static pc_status open_only(bool create) {
    store_t *store = NULL;
    store_options_t options = {.create = create};
    pc_status status = store_open(&store, db_path, &options);
    if (status == PC_OK) store_close(store);
    return status;
}

/* Opens, checks that the first round's ids are found and resubmitting them creates nothing. */
static void id_key_reopen_finds(void) {
    store_t *store;
    writer_t *writer;
    colliding_sums_t sums = {0};
    colliding_open(&store, &writer, 0, false);
    colliding_submit(writer, "c", PC_EXISTS, &sums);
    colliding_read(store, "c");
    writer_stop(writer);
    store_close(store);
}

/* Goal: the id key lives beside the database, secret, and is never silently replaced.
 * Method: init writes <db>.idkey (0600); with it missing, of another database, or
 * readable by others, a start is refused with store_id_key_invalid (and no key file
 * appears); restored, the start works; lost for good, init makes a new one and the
 * index is rebuilt under it: every id is still found, none is created twice. */
static void test_id_key_file(void) {
    colliding_dir();
    store_t *store;
    writer_t *writer;
    colliding_sums_t sums = {0};
    colliding_open(&store, &writer, 0, true);
    colliding_accounts(writer);
    colliding_submit(writer, "c", PC_OK, &sums);
    writer_stop(writer);
    store_close(store);
    char path[320], saved[330];
    id_key_path(path, sizeof path);
    snprintf(saved, sizeof saved, "%s.saved", path);
    struct stat st;
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600);
    ASSERT_EQ(st.st_size, 2 * PC_HASH_KEY_BYTES + 1);
    ASSERT_EQ(rename(path, saved), 0);
    ASSERT_STATUS(open_only(false), PC_STORE_ID_KEY_INVALID);
    ASSERT_TRUE(access(path, F_OK) != 0); /* refused, not replaced */
    pc_hash_key_t foreign;
    pc_hash_key_random(&foreign);
    ASSERT_STATUS(pc_key_file_write(path, foreign.bytes, sizeof foreign.bytes, 0600), PC_OK);
    ASSERT_STATUS(open_only(false), PC_STORE_ID_KEY_INVALID);
    ASSERT_EQ(rename(saved, path), 0);
    ASSERT_EQ(chmod(path, 0644), 0);
    ASSERT_STATUS(open_only(false), PC_STORE_ID_KEY_INVALID);
    ASSERT_EQ(chmod(path, 0600), 0);
    id_key_reopen_finds();
    ASSERT_EQ(unlink(path), 0);
    ASSERT_STATUS(open_only(true), PC_OK); /* paycore init: a new key, the index rebuilt */
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600);
    id_key_reopen_finds();
    colliding_verify();
    dir_remove();
}

int main(void) {
    TEST_RUN(test_id_key_file);
    TEST_RUN(test_colliding_ids_never_missed);
    TEST_RUN(test_crash_replay_and_index);
    return test_finish();
}
