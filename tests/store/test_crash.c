/* Goal: nothing acknowledged is ever lost and nothing unacknowledged is half there,
 * whenever the process dies. After each SIGKILL: every transfer acknowledged to a
 * submitter is in the store, `verify` passes on the file as the crash left it (row
 * hashes, chain, signatures, every balance re-derived from the transfers, each
 * pending transfer's state), the engine restarts, and per currency debits equal
 * credits.
 * Method: a child process opens a store and writer on a temp SQLite file, creates a
 * few hundred accounts, and runs four submitter threads: plain, pending (some with
 * 1-2 s timeouts, so expiries run across crashes), post and void of its own pending
 * transfers, with and without metadata; two send one transfer a command, one sends
 * 1-16, one sends 30 in linked chains of three. A submitter appends a transfer's id to an ack
 * file (write + fdatasync) only AFTER the writer reported the commit and the ledger
 * said created: the ack file is a subset of what must be durable. The parent kills
 * the child with SIGKILL at a random moment (sometimes during start-up), many rounds,
 * and checks the file each time: verify, the store's load path against verify's replay
 * of every transfer, every ack present, acked transfers sent again answer exists. The
 * seed is printed; PAYCORE_SEED replays it. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "core/core.h"
#include "journal/verify.h"
#include "store/store.h"
#include "test.h"
#include "writer/writer.h"

enum { ACCOUNT_COUNT = 300, SUBMITTERS = 4, PENDING_KEPT = 32 };

static char dir[] = "/tmp/paycore-test-crash-XXXXXX";
static char db_path[300], key_path[300], pub_path[320], ack_path[300];
static uint64_t seed;
static uint32_t tally_unreadable_at_creation;

static const char *const currencies[] = {"USD", "EUR"};

static uint64_t mix(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ---- the child: load through the engine until killed ---- */

typedef struct {
    writer_t *writer;
    int ack_fd;
    uint32_t round;
    uint32_t index;
    uint64_t rng;
    char pending[PENDING_KEPT][PC_ID_SIZE]; /* this submitter's open pending transfers */
    uint32_t pending_count;
} submitter_t;

static void account_id(uint32_t n, char out[PC_ID_SIZE]) {
    snprintf(out, PC_ID_SIZE, "acct-%u", n);
}

/* Account n holds currency n % 2; a few refuse to go below zero. */
static void child_accounts(writer_t *writer) {
    static ledger_account_t accounts[ACCOUNT_COUNT];
    static ledger_account_result_t results[ACCOUNT_COUNT];
    for (uint32_t n = 0; n < ACCOUNT_COUNT; n++) {
        memset(&accounts[n], 0, sizeof(accounts[n]));
        account_id(n, accounts[n].id);
        strcpy(accounts[n].currency, currencies[n % 2]);
        accounts[n].code = 1;
        if (n % 50 == 7) accounts[n].flags = LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS;
        if (n % 10 == 3) accounts[n].flags |= LEDGER_ACCOUNT_HISTORY;
    }
    writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_ACCOUNTS, .event_count = ACCOUNT_COUNT,
                        .accounts = accounts, .account_results = results};
    if (writer_submit_wait(writer, &cmd) != PC_OK) _exit(3);
    for (uint32_t n = 0; n < ACCOUNT_COUNT; n++) {
        if (results[n].status != PC_OK && results[n].status != PC_EXISTS) _exit(4);
    }
}

static void transfer_fill(submitter_t *s, ledger_transfer_t *t, uint64_t k) {
    memset(t, 0, sizeof(*t));
    snprintf(t->id, sizeof(t->id), "r%u-s%u-%" PRIu64, s->round, s->index, k);
    uint32_t r = (uint32_t)(mix(&s->rng) % 100);
    if (r < 20 && s->pending_count > 0) { /* resolve one of ours */
        uint32_t i = (uint32_t)(mix(&s->rng) % s->pending_count);
        strcpy(t->pending_id, s->pending[i]);
        s->pending_count--;
        if (i != s->pending_count) strcpy(s->pending[i], s->pending[s->pending_count]);
        t->flags = r < 14 ? LEDGER_TRANSFER_POST_PENDING : LEDGER_TRANSFER_VOID_PENDING;
        t->amount = r < 7 ? 0 : 1; /* whole, or a partial post of 1 */
        return;
    }
    uint32_t debit = (uint32_t)(mix(&s->rng) % ACCOUNT_COUNT);
    uint32_t credit = (debit + 2 * (1 + (uint32_t)(mix(&s->rng) % (ACCOUNT_COUNT / 2 - 1)))) % ACCOUNT_COUNT;
    account_id(debit, t->debit_account_id);
    account_id(credit, t->credit_account_id);
    strcpy(t->currency, currencies[debit % 2]);
    t->amount = 1 + (int64_t)(mix(&s->rng) % 10000);
    t->code = 1;
    if (r < 40) {
        t->flags = LEDGER_TRANSFER_PENDING;
        t->timeout_s = r < 30 ? (uint32_t)(1 + mix(&s->rng) % 2) : 0;
    }
    if (r % 3 == 0) t->metadata_json = "{\"order\":\"o-1\"}";
}

enum { COMMAND_EVENTS_MAX = 30 };

/* Appends the ids of the created events in one write and one fdatasync. */
static void acks_write(submitter_t *s, const ledger_transfer_t *events,
                       const ledger_transfer_result_t *results, uint32_t count) {
    static __thread char text[COMMAND_EVENTS_MAX * (PC_ID_SIZE + 1)];
    size_t bytes = 0;
    for (uint32_t i = 0; i < count; i++) {
        if (results[i].status != PC_OK) continue;
        bytes += (size_t)snprintf(text + bytes, sizeof(text) - bytes, "%s\n", events[i].id);
        bool pending = events[i].flags & LEDGER_TRANSFER_PENDING;
        if (pending && s->pending_count < PENDING_KEPT) strcpy(s->pending[s->pending_count++], events[i].id);
    }
    if (bytes == 0) return;
    if (write(s->ack_fd, text, bytes) != (ssize_t)bytes || fdatasync(s->ack_fd) != 0) _exit(5);
}

/* Submitters 0 and 1 send one transfer a command; 2 sends 1-16; 3 sends 30 in linked
 * chains of three (a chain commits whole or not at all). */
static uint32_t command_events(submitter_t *s) {
    if (s->index < 2) return 1;
    if (s->index == 2) return 1 + (uint32_t)(mix(&s->rng) % 16);
    return COMMAND_EVENTS_MAX;
}

static void *submitter_main(void *arg) {
    submitter_t *s = arg;
    static __thread ledger_transfer_t events[COMMAND_EVENTS_MAX];
    static __thread ledger_transfer_result_t results[COMMAND_EVENTS_MAX];
    uint64_t k = 0;
    for (uint32_t command = 0; command < 1000000; command++) {
        uint32_t count = command_events(s);
        for (uint32_t i = 0; i < count; i++) {
            transfer_fill(s, &events[i], k++);
            if (s->index == 3 && i % 3 != 2) events[i].flags |= LEDGER_TRANSFER_LINKED;
        }
        writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = count,
                            .transfers = events, .transfer_results = results};
        if (writer_submit_wait(s->writer, &cmd) != PC_OK) continue;
        acks_write(s, events, results, count); /* only after the commit was reported */
    }
    return NULL;
}

static _Noreturn void child_run(uint32_t round) {
    store_t *store;
    writer_t *writer;
    store_options_t options = {.create = true};
    if (store_open(&store, db_path, &options) != PC_OK) _exit(6);
    if (writer_start(&writer, store, key_path, NULL) != PC_OK) _exit(7);
    child_accounts(writer);
    int ack_fd = open(ack_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (ack_fd < 0) _exit(8);
    static submitter_t submitters[SUBMITTERS];
    pthread_t threads[SUBMITTERS];
    for (uint32_t i = 0; i < SUBMITTERS; i++) {
        submitters[i] = (submitter_t){.writer = writer, .ack_fd = ack_fd, .round = round,
                                      .index = i, .rng = seed ^ ((uint64_t)round << 32) ^ i};
        if (pthread_create(&threads[i], NULL, submitter_main, &submitters[i]) != 0) _exit(9);
    }
    for (uint32_t i = 0; i < SUBMITTERS; i++) pthread_join(threads[i], NULL);
    _exit(0); /* not reached in practice: the parent kills first */
}

/* ---- the parent: kill, then check what the crash left ---- */

/* Reads the ack file: every complete line is an acknowledged transfer id. */
static char *acks_read(size_t *bytes_out) {
    FILE *f = fopen(ack_path, "r");
    if (f == NULL) {
        *bytes_out = 0;
        return calloc(1, 1);
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    ASSERT_TRUE(text != NULL);
    ASSERT_EQ(fread(text, 1, (size_t)size, f), size);
    fclose(f);
    text[size] = '\0';
    *bytes_out = (size_t)size;
    return text;
}

enum { RESUBMIT_MAX = 128 };

/* Acknowledged transfers sent again, field for field: each must answer exists, never
 * be created twice (ids must survive a crash in every index the store keeps). */
static void resubmit_expect_exists(writer_t *writer, store_transfer_t *sample, uint32_t count) {
    static ledger_transfer_t events[RESUBMIT_MAX];
    static ledger_transfer_result_t results[RESUBMIT_MAX];
    if (count == 0) return;
    for (uint32_t i = 0; i < count; i++) events[i] = sample[i].transfer;
    writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = count,
                        .transfers = events, .transfer_results = results};
    ASSERT_STATUS(writer_submit_wait(writer, &cmd), PC_OK);
    for (uint32_t i = 0; i < count; i++) {
        if (results[i].status != PC_EXISTS) {
            TEST_FAIL("seed=%" PRIu64 ": acknowledged %s sent again: %s, want exists", seed,
                      events[i].id, pc_status_code(results[i].status));
        }
        ASSERT_EQ(results[i].timestamp_ns, sample[i].transfer.timestamp_ns);
    }
}

/* Every transfer id in the main file, sorted: one scan, then a binary search per ack. */
typedef struct {
    char (*ids)[PC_ID_SIZE];
    size_t count;
} id_set_t;

static int id_compare(const void *a, const void *b) { return strcmp(a, b); }

static id_set_t ids_in_file(void) {
    sqlite3 *db;
    sqlite3_stmt *stmt;
    id_set_t set = {NULL, 0};
    size_t capacity = 0;
    ASSERT_EQ(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    /* The restarted store's threads (WAL checkpointer, recovery) may hold a lock for
     * a moment: wait for it, and never take a read cut short for the whole file. */
    sqlite3_busy_timeout(db, 10000);
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT id FROM transfers", -1, &stmt, NULL), SQLITE_OK);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (set.count == capacity) {
            capacity = capacity ? 2 * capacity : 4096;
            set.ids = realloc(set.ids, capacity * PC_ID_SIZE);
            ASSERT_TRUE(set.ids != NULL);
        }
        snprintf(set.ids[set.count++], PC_ID_SIZE, "%s", (const char *)sqlite3_column_text(stmt, 0));
    }
    if (rc != SQLITE_DONE) TEST_FAIL("reading ids from the file: %s (%d)", sqlite3_errmsg(db), rc);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    if (set.count > 0) qsort(set.ids, set.count, PC_ID_SIZE, id_compare);
    return set;
}

/* Keeps 't' in 'sample': a reservoir of random acks plus a ring of the newest. */
static void sample_keep(store_transfer_t *sample, uint32_t *sample_count, uint64_t count,
                        uint64_t *rng, store_transfer_t *t) {
    uint32_t half = RESUBMIT_MAX / 2, slot = UINT32_MAX;
    if (count <= half) slot = (uint32_t)count - 1;
    else if (mix(rng) % count < half) slot = (uint32_t)(mix(rng) % half);
    if (slot == UINT32_MAX) slot = half + (uint32_t)(count % half);
    if (slot >= *sample_count) {
        slot = *sample_count;
        (*sample_count)++;
    } else {
        store_transfer_free(&sample[slot]);
    }
    sample[slot] = *t;
}

/* Every acknowledged id is in the file; those of this round and one in eight of the
 * older ones are also read through the store (store_read_transfer: its id index must
 * have survived the crash too). Returns how many acks there were; a sample of them is
 * kept in 'sample' to be sent again. */
static uint64_t acks_all_present(store_t *store, uint32_t round, store_transfer_t *sample,
                                 uint32_t *sample_count, uint64_t *rng) {
    size_t bytes;
    char *text = acks_read(&bytes);
    id_set_t in_file = ids_in_file();
    store_reader_t *reader;
    ASSERT_STATUS(store_reader_open(store, &reader), PC_OK);
    char this_round[32];
    int this_round_bytes = snprintf(this_round, sizeof(this_round), "r%u-", round);
    uint64_t count = 0;
    char *line = text;
    for (char *end; (end = strchr(line, '\n')) != NULL; line = end + 1) {
        *end = '\0';
        count++;
        if (in_file.count == 0 || bsearch(line, in_file.ids, in_file.count, PC_ID_SIZE, id_compare) == NULL) {
            TEST_FAIL("seed=%" PRIu64 ": acknowledged transfer %s is not in the file", seed, line);
        }
        if (strncmp(line, this_round, (size_t)this_round_bytes) != 0 && mix(rng) % 8 != 0) continue;
        store_transfer_t t;
        pc_status status = store_read_transfer(reader, line, &t);
        if (status != PC_OK) {
            TEST_FAIL("seed=%" PRIu64 ": acknowledged transfer %s: store_read_transfer says %s",
                      seed, line, pc_status_code(status));
        }
        ASSERT_STR_EQ(t.transfer.id, line);
        sample_keep(sample, sample_count, count, rng, &t);
    }
    store_reader_close(reader);
    free(in_file.ids);
    free(text);
    return count;
}

/* Balances replayed by verify from every transfer, by account number. */
static ledger_balances_t replayed[ACCOUNT_COUNT];
static uint32_t replayed_count;

static void replayed_keep(const char *account_id, const ledger_balances_t *balances, void *ctx) {
    (void)ctx;
    unsigned n;
    ASSERT_EQ(sscanf(account_id, "acct-%u", &n), 1);
    ASSERT_TRUE(n < ACCOUNT_COUNT);
    replayed[n] = *balances;
    replayed_count++;
}

static bool verify_expect_ok(uint32_t round, const char *when, journal_report_t *report,
                             bool initialising) {
    replayed_count = 0;
    pc_status status = journal_verify_sqlite_each(db_path, pub_path, report, replayed_keep, NULL);
    if (status == PC_NOT_FOUND && report->batches == 0) {
        /* killed before the key's .pub existed: verify without it */
        status = journal_verify_sqlite_each(db_path, NULL, report, replayed_keep, NULL);
    }
    /* Killed while the file was being created (before WAL mode): SQLite left a hot
     * rollback journal that only a writable open can roll back. Allowed only while
     * nothing was ever acknowledged; the restart below must then recover it. */
    if (initialising && status != PC_OK && status != PC_JOURNAL_MISMATCH) {
        tally_unreadable_at_creation++;
        return false;
    }
    if (status != PC_OK) {
        char line[1200];
        TEST_FAIL("seed=%" PRIu64 " round=%u %s: %s (%s)", seed, round, when,
                  journal_report_line(report, line, sizeof(line)), report->error_detail);
    }
    return true;
}

/* The store's load path (account rows as of its checkpoint plus the transfers after
 * it) must give every account the balances verify replayed from zero. */
static void load_matches_replay(uint32_t round) {
    store_t *store;
    ledger_t *ledger;
    journal_entry_t head;
    store_options_t options = {.create = false};
    ASSERT_STATUS(store_open(&store, db_path, &options), PC_OK);
    ASSERT_STATUS(ledger_open(&ledger), PC_OK);
    ASSERT_STATUS(store_load(store, ledger, &head), PC_OK);
    ASSERT_EQ(ledger_account_count(ledger), replayed_count);
    for (uint32_t i = 0; i < ledger_account_count(ledger); i++) {
        const ledger_account_t *a = ledger_account_at(ledger, i);
        unsigned n;
        ASSERT_EQ(sscanf(a->id, "acct-%u", &n), 1);
        if (memcmp(&a->balances, &replayed[n], sizeof(a->balances)) != 0) {
            TEST_FAIL("seed=%" PRIu64 " round=%u: %s loaded with dP=%" PRId64 " cP=%" PRId64
                      " dp=%" PRId64 " cp=%" PRId64 ", the replay of every transfer gives dP=%"
                      PRId64 " cP=%" PRId64 " dp=%" PRId64 " cp=%" PRId64, seed, round, a->id,
                      a->balances.debits_posted, a->balances.credits_posted,
                      a->balances.debits_pending, a->balances.credits_pending,
                      replayed[n].debits_posted, replayed[n].credits_posted,
                      replayed[n].debits_pending, replayed[n].credits_pending);
        }
    }
    ledger_close(ledger);
    store_close(store);
}

/* The file as the crash left it verifies; the engine restarts on it and balances. */
static void check_after_crash(uint32_t round, uint64_t *acked_out, uint64_t *transfers_out) {
    struct stat st;
    if (stat(db_path, &st) != 0) return; /* killed before the file existed */
    journal_report_t report;
    size_t ack_bytes;
    free(acks_read(&ack_bytes));
    if (verify_expect_ok(round, "after the crash", &report, ack_bytes == 0) &&
        report.batches > 0) {
        load_matches_replay(round);
    }
    store_t *store;
    writer_t *writer;
    store_options_t options = {.create = true};
    ASSERT_STATUS(store_open(&store, db_path, &options), PC_OK);
    ASSERT_STATUS(writer_start(&writer, store, key_path, NULL), PC_OK);
    char currency[4];
    ASSERT_TRUE(ledger_balanced(writer_ledger(writer), currency));
    store_transfer_t sample[RESUBMIT_MAX];
    uint32_t sample_count = 0;
    uint64_t rng = seed ^ round;
    *acked_out = acks_all_present(store, round, sample, &sample_count, &rng);
    ASSERT_TRUE(*acked_out <= report.transfers);
    resubmit_expect_exists(writer, sample, sample_count);
    for (uint32_t i = 0; i < sample_count; i++) store_transfer_free(&sample[i]);
    writer_stop(writer);
    store_close(store);
    (void)verify_expect_ok(round, "after the restart", &report, false);
    *transfers_out = report.transfers;
}

static uint32_t kill_delay_ms(uint64_t *rng, uint32_t round) {
    uint32_t r = (uint32_t)(mix(rng) % 100);
    if (r < 10) return (uint32_t)(mix(rng) % 20);           /* during start-up */
    return (round == 1 ? 300 : 40) + (uint32_t)(mix(rng) % 400);
}

static void round_run(uint32_t round, uint64_t *rng) {
    pid_t child = fork();
    ASSERT_TRUE(child >= 0);
    if (child == 0) {
        alarm(60); /* never outlive a parent that died */
        child_run(round);
    }
    struct timespec pause = {0, (long)kill_delay_ms(rng, round) * 1000000L};
    nanosleep(&pause, NULL);
    ASSERT_EQ(kill(child, SIGKILL), 0);
    int wait_status;
    ASSERT_EQ(waitpid(child, &wait_status, 0), child);
    if (!WIFSIGNALED(wait_status)) {
        TEST_FAIL("seed=%" PRIu64 " round=%u: child exited by itself (status %d)", seed, round,
                  WEXITSTATUS(wait_status));
    }
}

int main(void) {
    const char *seed_env = getenv("PAYCORE_SEED");
    seed = seed_env != NULL ? strtoull(seed_env, NULL, 10) : pc_wall_ns();
    bool sanitized = getenv("PAYCORE_SANITIZED") != NULL;
    uint32_t rounds = sanitized ? 10 : 24;
    printf("test_crash seed=%" PRIu64 " rounds=%u (PAYCORE_SEED=%" PRIu64 " replays it)\n", seed,
           rounds, seed);
    fflush(stdout);
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    snprintf(db_path, sizeof(db_path), "%s/crash.db", dir);
    snprintf(key_path, sizeof(key_path), "%s/crash.key", dir);
    snprintf(pub_path, sizeof(pub_path), "%s.pub", key_path);
    snprintf(ack_path, sizeof(ack_path), "%s/acks", dir);
    uint64_t rng = seed, acked = 0, transfers = 0;
    for (uint32_t round = 1; round <= rounds; round++) {
        round_run(round, &rng);
        check_after_crash(round, &acked, &transfers);
    }
    printf("rounds=%u acked=%" PRIu64 " transfers=%" PRIu64 " unreadable_at_creation=%u\n", rounds,
           acked, transfers, tally_unreadable_at_creation);
    ASSERT_TRUE(acked > 0);            /* the load must have run, or this proves nothing */
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    test_passed_count++;
    return test_finish();
}
