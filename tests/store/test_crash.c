/* Goal: nothing acknowledged is ever lost and nothing unacknowledged is half there,
 * whenever the process dies or stops. After each cycle: every transfer acknowledged
 * to a submitter is in the store, `verify` passes on the file as the cycle left it
 * (row hashes, chain, signatures, every balance re-derived from the transfers, each
 * pending transfer's state), the store's load path gives the balances verify
 * replayed, those equal an independent model built from what the clients asked for,
 * the engine restarts, and per currency debits equal credits.
 * Method: a child process opens a store and writer on a temp SQLite file, creates a
 * few hundred accounts, and runs four submitter threads: plain, pending (some with
 * 1-2 s timeouts, so expiries run across crashes), post and void of its own pending
 * transfers, with and without metadata; two send one transfer a command, one sends
 * 1-16, one sends 30 in linked chains of three. A fifth thread writes what moves no
 * money: API keys, and idempotent replays of acknowledged transfers with their
 * idempotency records (batches without ledger rows); one of its hooks in twenty
 * fails, failing its whole batch. Every transfer is written to an intents file
 * before it is submitted; a submitter appends its id to an ack file (write +
 * fdatasync) only AFTER the writer reported the commit and the ledger said created:
 * the ack file is a subset of what must be durable. Cycles, in turn:
 *   - SIGKILL at a random moment (sometimes during start-up);
 *   - SIGTERM: the child stops cleanly (most times after a last write that moves no
 *     money; a third of the time its balance snapshot's fsync fails) and must exit
 *     0 with the snapshot at the journal head, unless the fault stopped it;
 *   - SIGKILL soon after that restart, after a handful of batches (far fewer than a
 *     balance snapshot's 64);
 *   - a failed WAL fsync at a random COMMIT: the writer must stop (store_failed) and
 *     the child exits 3, as the server does.
 * The seed is printed; PAYCORE_SEED replays it. PAYCORE_CRASH_ROUNDS sets the number
 * of cycles (`make test-long` runs hundreds).
 * On PostgreSQL (PAYCORE_TEST_STORE_URL, set by tests/store/test_crash_pg.py with a
 * throwaway cluster) the same cycles run against that database, except the SQLite
 * faults: the failed-fsync cycle crashes and restarts the PostgreSQL server under the
 * load instead (PAYCORE_TEST_PG_RESTART), so the writer's connection breaks mid-batch
 * and the child must exit 3; the clean stop has no failing snapshot; the writer takes
 * one command a batch, so that batches wait behind each other and its pipeline (a
 * batch's second part staged while the first commits) runs under the kills. The store is
 * read back through store_rows_open (verify's row streams), whatever its backend. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "core/core.h"
#include "journal/verify.h"
#include "store/store.h"
#include "store/store_api.h"
#include "test.h"
#include "writer/writer.h"

enum { ACCOUNT_COUNT = 300, SUBMITTERS = 4, PENDING_KEPT = 32, PG_PIPELINE_BATCH_EVENTS = 1 };

/* What a cycle does to the child. */
typedef enum {
    CYCLE_KILL,        /* SIGKILL at a random moment */
    CYCLE_TERM,        /* SIGTERM: a clean stop */
    CYCLE_KILL_SOON,   /* SIGKILL after a handful of batches */
    CYCLE_FSYNC_FAULT, /* a WAL fsync fails: the writer stops, the child exits 3 */
    CYCLE_KIND_COUNT,
} cycle_kind;
static const char *const cycle_names[CYCLE_KIND_COUNT] = {"kill", "term", "kill_soon", "fsync_fault"};

enum { EXIT_STORE_FAILED = 3, SOON_COMMANDS = 3 };

static char dir[] = "/tmp/paycore-test-crash-XXXXXX";
static char db_path[300], key_path[300], pub_path[320], ack_path[300], intent_path[300];
/* The store: db_path (SQLite), or PAYCORE_TEST_STORE_URL (PostgreSQL, an empty database
 * of a throwaway cluster: tests/store/test_crash_pg.py), with PAYCORE_TEST_PG_RESTART
 * the command that crashes and restarts that cluster's server. */
static const char *store_location;
static const char *pg_restart_command;
static bool on_pg;
static uint64_t seed;
static uint32_t tally_unreadable_at_creation;
static uint32_t tally_cycles[CYCLE_KIND_COUNT];
static uint32_t tally_snapshot_faults;

static const char *const currencies[] = {"USD", "EUR"};

static uint64_t mix(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ---- the child: load through the engine until killed or stopped ---- */

typedef struct {
    writer_t *writer;
    int ack_fd;
    int intent_fd;
    uint32_t round;
    uint32_t index;
    uint32_t commands_max;   /* 0: until stopped */
    uint64_t rng;
    char pending[PENDING_KEPT][PC_ID_SIZE]; /* this submitter's open pending transfers */
    uint32_t pending_count;
    char acked[PC_ID_SIZE];  /* one acknowledged plain transfer, for the replays */
    ledger_transfer_t acked_transfer;
} submitter_t;

static atomic_int child_stopping; /* set by the child's main thread on SIGTERM */

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
    pc_status status = writer_submit_wait(writer, &cmd);
    if (status == PC_STORE_FAILED) _exit(EXIT_STORE_FAILED);
    if (status != PC_OK) _exit(3 + 10);
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

/* What the client asked, one line a transfer, written before it is submitted:
 * "id debit credit amount flags pending_id". The model is built from these. */
static void intents_write(submitter_t *s, const ledger_transfer_t *events, uint32_t count) {
    static __thread char text[COMMAND_EVENTS_MAX * (4 * PC_ID_SIZE + 48)];
    size_t bytes = 0;
    for (uint32_t i = 0; i < count; i++) {
        const ledger_transfer_t *t = &events[i];
        bytes += (size_t)snprintf(text + bytes, sizeof(text) - bytes, "%s %s %s %" PRId64 " %u %s\n", t->id,
                                  t->debit_account_id[0] ? t->debit_account_id : "-",
                                  t->credit_account_id[0] ? t->credit_account_id : "-", t->amount,
                                  (unsigned)t->flags, t->pending_id[0] ? t->pending_id : "-");
    }
    if (write(s->intent_fd, text, bytes) != (ssize_t)bytes) _exit(5);
}

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
        if (events[i].flags == 0) strcpy(s->acked, events[i].id);
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
    for (uint32_t command = 0; command < 1000000 && !atomic_load(&child_stopping); command++) {
        if (s->commands_max != 0 && command == s->commands_max) break;
        uint32_t count = command_events(s);
        for (uint32_t i = 0; i < count; i++) {
            transfer_fill(s, &events[i], k++);
            if (s->index == 3 && i % 3 != 2) events[i].flags |= LEDGER_TRANSFER_LINKED;
        }
        intents_write(s, events, count);
        writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = count,
                            .transfers = events, .transfer_results = results};
        pc_status status = writer_submit_wait(s->writer, &cmd);
        if (status == PC_STORE_FAILED) break; /* the writer stopped: nothing more */
        if (status != PC_OK) continue;
        acks_write(s, events, results, count); /* only after the commit was reported */
    }
    return NULL;
}

/* ---- writes that move no money ---- */

/* A command with what its hook needs: hooks run on the writer thread. */
typedef struct {
    writer_cmd_t cmd; /* first: the hook gets &cmd */
    char key_id[PC_ID_SIZE];
    bool hook_fails;  /* fails its whole batch (other submitters' too) */
} nemesis_cmd_t;

static pc_status nemesis_key_in_tx(writer_cmd_t *cmd, store_tx_t *tx) {
    const nemesis_cmd_t *n = (const nemesis_cmd_t *)cmd;
    if (n->hook_fails) return PC_STORE_COMMIT_FAILED;
    store_api_key_t key = {0};
    snprintf(key.id, sizeof key.id, "%s", n->key_id);
    crypto_generichash(key.key_hash, sizeof key.key_hash, (const uint8_t *)n->key_id, strlen(n->key_id), NULL, 0);
    snprintf(key.scope, sizeof key.scope, "read_only");
    snprintf(key.name, sizeof key.name, "nemesis");
    key.created_ns = pc_wall_ns();
    return store_api_key_insert(tx, &key);
}

static pc_status nemesis_idem_in_tx(writer_cmd_t *cmd, store_tx_t *tx) {
    const nemesis_cmd_t *n = (const nemesis_cmd_t *)cmd;
    if (n->hook_fails) return PC_STORE_COMMIT_FAILED;
    store_api_idem_t record = {.http_status = 200, .body = "{}", .body_bytes = 2, .created_ns = pc_wall_ns()};
    uint64_t replaced_row_bytes;
    return store_api_idem_put(tx, "key_nemesis", n->key_id, &record, &replaced_row_bytes);
}

/* An API key, as POST /v1/api-keys writes it: a batch without ledger rows. */
static pc_status nemesis_key(writer_t *writer, uint32_t round, uint64_t i, bool hook_fails) {
    nemesis_cmd_t n = {.cmd = {.kind = WRITER_CMD_EXEC, .in_transaction = nemesis_key_in_tx},
                       .hook_fails = hook_fails};
    snprintf(n.key_id, sizeof n.key_id, "key_r%u_%" PRIu64, round, i);
    return writer_submit_wait(writer, &n.cmd);
}

/* An acknowledged transfer sent again with an Idempotency-Key: exists, no ledger
 * rows, only the idempotency record. */
static pc_status nemesis_replay(writer_t *writer, const ledger_transfer_t *acked, uint32_t round, uint64_t i,
                                bool hook_fails) {
    ledger_transfer_t event = *acked;
    ledger_transfer_result_t result;
    nemesis_cmd_t n = {.cmd = {.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = 1, .transfers = &event,
                               .transfer_results = &result, .in_transaction = nemesis_idem_in_tx},
                       .hook_fails = hook_fails};
    snprintf(n.key_id, sizeof n.key_id, "idem_r%u_%" PRIu64, round, i);
    pc_status status = writer_submit_wait(writer, &n.cmd);
    if (status == PC_OK && result.status != PC_EXISTS) _exit(6); /* a replay moved money */
    return status;
}

typedef struct {
    writer_t *writer;
    uint32_t round;
    uint32_t commands_max;
    ledger_transfer_t acked;   /* a transfer acknowledged before this cycle */
    bool have_acked;
} nemesis_t;

static void *nemesis_main(void *arg) {
    nemesis_t *n = arg;
    uint64_t rng = seed ^ ((uint64_t)n->round << 40) ^ 0x5eed;
    for (uint64_t i = 0; i < 1000000 && !atomic_load(&child_stopping); i++) {
        if (n->commands_max != 0 && i == n->commands_max) break;
        bool hook_fails = mix(&rng) % 20 == 0;
        pc_status status = n->have_acked && i % 2 == 1 ? nemesis_replay(n->writer, &n->acked, n->round, i, hook_fails)
                                                       : nemesis_key(n->writer, n->round, i, hook_fails);
        if (status == PC_STORE_FAILED) break;
        struct timespec pause = {0, 2 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    return NULL;
}

/* An acknowledged transfer of an earlier cycle, field for field, chosen by the parent
 * before the fork (the child inherits it). */
static ledger_transfer_t replay_sample;
static char replay_metadata[LEDGER_METADATA_BYTES_MAX + 1];
static bool replay_sample_set;

static bool acked_earlier(uint32_t round, ledger_transfer_t *out) {
    (void)round;
    if (!replay_sample_set) return false;
    *out = replay_sample;
    out->metadata_json = replay_sample.metadata_json != NULL ? replay_metadata : NULL;
    return true;
}

typedef struct {
    store_t *store;
    writer_t *writer;
    submitter_t submitters[SUBMITTERS];
    pthread_t threads[SUBMITTERS];
    nemesis_t nemesis;
    pthread_t nemesis_thread;
} child_t;

static void child_fail_fast(void *ctx, pc_status status) {
    (void)ctx;
    (void)status;
}

static void child_open(child_t *c, cycle_kind kind, uint64_t *rng) {
    store_options_t options = {.create = true, .fault_vfs = !on_pg};
    if (store_open(&c->store, store_location, &options) != PC_OK) _exit(6);
    /* on PostgreSQL, small batches queue behind each other: the writer's pipeline
     * stages every other one while the one before commits, and kills fall between */
    writer_config_t config = {.failed = child_fail_fast, .batch_events_max = on_pg ? PG_PIPELINE_BATCH_EVENTS : 0};
    pc_status status = writer_start(&c->writer, c->store, key_path, &config);
    if (status == PC_STORE_FAILED) _exit(EXIT_STORE_FAILED);
    if (status != PC_OK) _exit(7);
    if (kind == CYCLE_FSYNC_FAULT && !on_pg) store_fault_arm(STORE_FAULT_WAL_SYNC, (uint32_t)(mix(rng) % 40), 1);
}

static void child_threads_start(child_t *c, cycle_kind kind, uint32_t round, int ack_fd, int intent_fd) {
    uint32_t commands_max = kind == CYCLE_KILL_SOON ? SOON_COMMANDS : 0;
    for (uint32_t i = 0; i < SUBMITTERS; i++) {
        c->submitters[i] = (submitter_t){.writer = c->writer, .ack_fd = ack_fd, .intent_fd = intent_fd,
                                         .round = round, .index = i, .commands_max = commands_max,
                                         .rng = seed ^ ((uint64_t)round << 32) ^ i};
        if (pthread_create(&c->threads[i], NULL, submitter_main, &c->submitters[i]) != 0) _exit(9);
    }
    c->nemesis = (nemesis_t){.writer = c->writer, .round = round, .commands_max = commands_max};
    c->nemesis.have_acked = acked_earlier(round, &c->nemesis.acked);
    if (pthread_create(&c->nemesis_thread, NULL, nemesis_main, &c->nemesis) != 0) _exit(9);
}

static void child_threads_join(child_t *c) {
    for (uint32_t i = 0; i < SUBMITTERS; i++) pthread_join(c->threads[i], NULL);
    pthread_join(c->nemesis_thread, NULL);
}

/* SIGTERM: stop the load, maybe one more write that moves no money, maybe a failed
 * snapshot fsync, then the clean stop. Exit 0, or 3 when the store failed. */
static _Noreturn void child_stop(child_t *c, uint32_t round, uint64_t *rng, bool snapshot_fault) {
    atomic_store(&child_stopping, 1);
    child_threads_join(c);
    if (mix(rng) % 4 != 0 && nemesis_key(c->writer, round, 999999, false) != PC_OK) _exit(12);
    bool failed = writer_failed(c->writer) != PC_OK;
    if (snapshot_fault) store_fault_arm(STORE_FAULT_WAL_SYNC, 0, 1);
    writer_stop(c->writer);
    store_close(c->store);
    _exit(failed ? EXIT_STORE_FAILED : 0);
}

/* SIGTERM is blocked from before the fork (the parent unblocks it in itself), so a
 * SIGTERM that arrives while the child starts waits for sigwait below. */
static _Noreturn void child_run(uint32_t round, cycle_kind kind, int ready_fd, bool snapshot_fault) {
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    uint64_t rng = seed ^ ((uint64_t)round << 20) ^ 0xc1d;
    child_t c;
    memset(&c, 0, sizeof c);
    child_open(&c, kind, &rng);
    child_accounts(c.writer);
    int ack_fd = open(ack_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    char round_intents[340];
    snprintf(round_intents, sizeof round_intents, "%s-%u", intent_path, round);
    int intent_fd = open(round_intents, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (ack_fd < 0 || intent_fd < 0) _exit(8);
    child_threads_start(&c, kind, round, ack_fd, intent_fd);
    if (kind == CYCLE_KILL_SOON) { /* a handful of batches, then wait to be killed */
        child_threads_join(&c);
        if (write(ready_fd, "R", 1) != 1) _exit(10);
        for (;;) pause();
    }
    if (kind == CYCLE_FSYNC_FAULT) { /* the submitters end when the writer stops */
        if (on_pg && write(ready_fd, "R", 1) != 1) _exit(10); /* the parent crashes the server now */
        child_threads_join(&c);
        if (writer_failed(c.writer) != PC_STORE_FAILED) _exit(11);
        writer_stop(c.writer);
        store_close(c.store);
        _exit(EXIT_STORE_FAILED);
    }
    int signal_number = 0;
    while (sigwait(&term, &signal_number) != 0) {
    }
    child_stop(&c, round, &rng, snapshot_fault);
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

/* ---- reading the store as verify does (either backend) ---- */

static journal_rows_t *rows_open(journal_stream_t stream) {
    journal_rows_t *rows;
    char detail[JOURNAL_REPORT_TEXT_BYTES];
    pc_status status = store_rows_open(store_location, &rows, detail, sizeof detail);
    if (status != PC_OK) TEST_FAIL("seed=%" PRIu64 ": reading the store: %s %s", seed, pc_status_code(status), detail);
    ASSERT_STATUS(rows->ops->stream_open(rows, stream), PC_OK);
    return rows;
}

static bool rows_next(journal_rows_t *rows, journal_stream_t stream) {
    bool has_row = false;
    pc_status status = rows->ops->next(rows, stream, &has_row);
    if (status != PC_OK) TEST_FAIL("seed=%" PRIu64 ": reading the store: %s", seed, rows->ops->error(rows));
    return has_row;
}

static int64_t rows_int(journal_rows_t *rows, journal_stream_t stream, int column) {
    journal_value_t value;
    rows->ops->value(rows, stream, column, &value);
    ASSERT_EQ(value.kind, JOURNAL_VALUE_INTEGER);
    return value.integer;
}

/* "" for NULL. */
static const char *rows_text(journal_rows_t *rows, journal_stream_t stream, int column) {
    journal_value_t value;
    rows->ops->value(rows, stream, column, &value);
    if (value.kind == JOURNAL_VALUE_NULL) return "";
    ASSERT_EQ(value.kind, JOURNAL_VALUE_TEXT);
    return (const char *)value.bytes;
}

/* Transfer stream columns (journal/verify.h). */
enum { T_TIMESTAMP = 0, T_ID = 1, T_FLAGS = 7, T_PENDING_ID = 8 };

static id_set_t ids_in_file(void) {
    id_set_t set = {NULL, 0};
    size_t capacity = 0;
    journal_rows_t *rows = rows_open(JOURNAL_STREAM_TRANSFERS);
    while (rows_next(rows, JOURNAL_STREAM_TRANSFERS)) {
        if (set.count == capacity) {
            capacity = capacity ? 2 * capacity : 4096;
            set.ids = realloc(set.ids, capacity * PC_ID_SIZE);
            ASSERT_TRUE(set.ids != NULL);
        }
        snprintf(set.ids[set.count++], PC_ID_SIZE, "%s", rows_text(rows, JOURNAL_STREAM_TRANSFERS, T_ID));
    }
    rows->ops->close(rows);
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
    pc_status status = store_verify_each(store_location, pub_path, report, replayed_keep, NULL);
    if (status == PC_NOT_FOUND && report->batches == 0) {
        /* killed before the key's .pub existed: verify without it */
        status = store_verify_each(store_location, NULL, report, replayed_keep, NULL);
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

/* What the cycle left, for the messages of the checks after it. */
typedef struct {
    bool verified;     /* verify could read the file (else: killed while it was created) */
    uint64_t batches;
    size_t ack_bytes;
    bool clean;
} cycle_state_t;

/* Names the cycle's state in a failure. */
#define CYCLE_FMT " (verify %s, %" PRIu64 " batches, %zu acknowledgement bytes, clean stop %d; the file stays in %s)"
#define CYCLE_ARGS(st) (st)->verified ? "passed" : "could not read the file", (st)->batches, (st)->ack_bytes, \
                       (st)->clean, store_location

/* The store's load path (account rows as of its balance snapshot plus the transfers after
 * it), into a ledger no writer runs on: per currency debits equal credits, and, when
 * verify could read the file, every account has the balances verify replayed from zero.
 * (The writer's own ledger is read only once its thread stopped: a writer started on
 * the file expires at once the pending transfers that came due during the cycle, and a
 * read during that batch sees a debit moved before its credit.) Opens as the restart
 * does (create: a file killed while it was created is made whole). */
static void load_checks(uint32_t round, const cycle_state_t *st) {
    store_t *store;
    ledger_t *ledger;
    journal_entry_t head;
    store_options_t options = {.create = true};
    ASSERT_STATUS(store_open(&store, store_location, &options), PC_OK);
    ASSERT_STATUS(ledger_open(&ledger), PC_OK);
    ASSERT_STATUS(store_load(store, ledger, &head), PC_OK);
    char currency[4];
    if (!ledger_balanced(ledger, currency)) {
        TEST_FAIL("seed=%" PRIu64 " round=%u: the ledger loaded after the cycle is unbalanced in %s" CYCLE_FMT,
                  seed, round, currency, CYCLE_ARGS(st));
    }
    if (!st->verified || st->batches == 0) {
        ledger_close(ledger);
        store_close(store);
        return;
    }
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

/* ---- the model: balances from what the clients asked for ---- */

/* One intent (a line of an intents file): what a client asked. */
typedef struct {
    char id[PC_ID_SIZE];
    char pending_id[PC_ID_SIZE];
    uint16_t debit, credit;     /* account numbers; a post/void's come from its pending */
    int64_t amount;
    uint16_t flags;
    bool in_file;               /* its row was seen */
    bool resolved;              /* a pending one: posted, voided or expired */
    bool used;
} intent_t;

static intent_t *intents;
static size_t intent_capacity, intent_count;
static ledger_balances_t model[ACCOUNT_COUNT];
static uint64_t model_through_ts; /* rows up to this timestamp are in the model */
static uint64_t model_rows;

static uint64_t id_hash(const char *id) {
    uint64_t h = 1469598103934665603ull;
    for (; *id; id++) h = (h ^ (uint8_t)*id) * 1099511628211ull;
    return h;
}

static intent_t *intent_slot(const char *id) {
    size_t mask = intent_capacity - 1;
    for (size_t i = id_hash(id) & mask;; i = (i + 1) & mask) {
        if (!intents[i].used || strcmp(intents[i].id, id) == 0) return &intents[i];
    }
}

static void intents_grow(void) {
    intent_t *old = intents;
    size_t old_capacity = intent_capacity;
    intent_capacity = intent_capacity ? 2 * intent_capacity : 1u << 16;
    intents = calloc(intent_capacity, sizeof(intent_t));
    ASSERT_TRUE(intents != NULL);
    for (size_t i = 0; i < old_capacity; i++) {
        if (old[i].used) *intent_slot(old[i].id) = old[i];
    }
    free(old);
}

static uint16_t account_no(const char *id) {
    unsigned n = 0;
    if (strcmp(id, "-") == 0) return UINT16_MAX;
    ASSERT_EQ(sscanf(id, "acct-%u", &n), 1);
    ASSERT_TRUE(n < ACCOUNT_COUNT);
    return (uint16_t)n;
}

/* Reads round 'round''s intents file; an incomplete last line (killed mid-write) was
 * never submitted. */
static void intents_load(uint32_t round) {
    char path[340], line[4 * PC_ID_SIZE + 64];
    snprintf(path, sizeof path, "%s-%u", intent_path, round);
    FILE *f = fopen(path, "r");
    if (f == NULL) return; /* killed before it wrote one */
    while (fgets(line, sizeof line, f) != NULL) {
        if (strchr(line, '\n') == NULL) break;
        char id[PC_ID_SIZE], debit[PC_ID_SIZE], credit[PC_ID_SIZE], pending[PC_ID_SIZE];
        long long amount;
        unsigned flags;
        ASSERT_EQ(sscanf(line, "%64s %64s %64s %lld %u %64s", id, debit, credit, &amount, &flags, pending), 6);
        if (2 * (intent_count + 1) > intent_capacity) intents_grow();
        intent_t *it = intent_slot(id);
        ASSERT_FALSE(it->used); /* ids are never reused */
        *it = (intent_t){.debit = account_no(debit), .credit = account_no(credit), .amount = amount,
                         .flags = (uint16_t)(flags & ~LEDGER_TRANSFER_LINKED), .used = true};
        snprintf(it->id, sizeof it->id, "%s", id);
        snprintf(it->pending_id, sizeof it->pending_id, "%s", strcmp(pending, "-") == 0 ? "" : pending);
        intent_count++;
    }
    fclose(f);
    unlink(path);
}

static intent_t *open_pending(const char *pending_id, const char *by) {
    intent_t *p = intent_slot(pending_id);
    if (!p->used || !p->in_file || !(p->flags & LEDGER_TRANSFER_PENDING) || p->resolved) {
        TEST_FAIL("seed=%" PRIu64 ": %s resolves %s, which is not an open pending transfer", seed, by, pending_id);
    }
    p->resolved = true;
    model[p->debit].debits_pending -= p->amount;
    model[p->credit].credits_pending -= p->amount;
    return p;
}

/* Applies one transfer row (id, flags, pending_id as the file says) to the model,
 * with the amounts and accounts the client asked for. */
static void model_apply(const char *id, uint16_t flags, const char *pending_id) {
    if (flags & LEDGER_TRANSFER_EXPIRY) { /* made by the ledger: no intent */
        open_pending(pending_id, id);
        return;
    }
    intent_t *it = intent_slot(id);
    if (!it->used) TEST_FAIL("seed=%" PRIu64 ": transfer %s is in the file, but nobody asked for it", seed, id);
    if (it->in_file) TEST_FAIL("seed=%" PRIu64 ": transfer %s is in the file twice", seed, id);
    it->in_file = true;
    if (it->flags & (LEDGER_TRANSFER_POST_PENDING | LEDGER_TRANSFER_VOID_PENDING)) {
        intent_t *p = open_pending(it->pending_id, id);
        if (it->flags & LEDGER_TRANSFER_POST_PENDING) {
            int64_t posted = it->amount != 0 ? it->amount : p->amount;
            model[p->debit].debits_posted += posted;
            model[p->credit].credits_posted += posted;
        }
    } else if (it->flags & LEDGER_TRANSFER_PENDING) {
        model[it->debit].debits_pending += it->amount;
        model[it->credit].credits_pending += it->amount;
    } else {
        model[it->debit].debits_posted += it->amount;
        model[it->credit].credits_posted += it->amount;
    }
}

/* Rows committed since the model last looked; the rows it saw must all still be
 * there (a committed row never goes away). */
static void model_update(void) {
    journal_rows_t *rows = rows_open(JOURNAL_STREAM_TRANSFERS);
    const journal_stream_t t = JOURNAL_STREAM_TRANSFERS;
    uint64_t seen = 0, through_ts = model_through_ts;
    while (rows_next(rows, t)) {
        uint64_t ts = (uint64_t)rows_int(rows, t, T_TIMESTAMP);
        if (ts <= through_ts) {
            seen++;
            continue;
        }
        if (seen != model_rows) {
            TEST_FAIL("seed=%" PRIu64 ": %" PRIu64 " transfer rows up to %" PRIu64 ", the model saw %" PRIu64, seed,
                      seen, through_ts, model_rows);
        }
        model_apply(rows_text(rows, t, T_ID), (uint16_t)rows_int(rows, t, T_FLAGS), rows_text(rows, t, T_PENDING_ID));
        model_through_ts = ts;
        model_rows++;
        seen = model_rows;
    }
    if (seen != model_rows) {
        TEST_FAIL("seed=%" PRIu64 ": %" PRIu64 " transfer rows up to %" PRIu64 ", the model saw %" PRIu64, seed, seen,
                  through_ts, model_rows);
    }
    rows->ops->close(rows);
}

/* verify's replay (of the same file) equals the model, account by account. */
static void model_matches_replay(uint32_t round, const char *when) {
    model_update();
    ASSERT_EQ(replayed_count, ACCOUNT_COUNT);
    for (uint32_t n = 0; n < ACCOUNT_COUNT; n++) {
        if (memcmp(&model[n], &replayed[n], sizeof model[n]) != 0) {
            TEST_FAIL("seed=%" PRIu64 " round=%u %s: acct-%u: the model says dP=%" PRId64 " cP=%" PRId64
                      " dp=%" PRId64 " cp=%" PRId64 ", the file dP=%" PRId64 " cP=%" PRId64 " dp=%" PRId64
                      " cp=%" PRId64, seed, round, when, n, model[n].debits_posted, model[n].credits_posted,
                      model[n].debits_pending, model[n].credits_pending, replayed[n].debits_posted,
                      replayed[n].credits_posted, replayed[n].debits_pending, replayed[n].credits_pending);
        }
    }
}

/* After a clean stop the balance snapshot is at the journal head, never past it. */
static void snapshot_at_head(uint32_t round) {
    journal_rows_t *rows = rows_open(JOURNAL_STREAM_SNAPSHOT_SEQ);
    int64_t as_of = -1, head = 0;
    if (rows_next(rows, JOURNAL_STREAM_SNAPSHOT_SEQ)) as_of = strtoll(rows_text(rows, JOURNAL_STREAM_SNAPSHOT_SEQ, 0), NULL, 10);
    ASSERT_STATUS(rows->ops->stream_open(rows, JOURNAL_STREAM_JOURNAL), PC_OK);
    while (rows_next(rows, JOURNAL_STREAM_JOURNAL)) head = rows_int(rows, JOURNAL_STREAM_JOURNAL, 0);
    rows->ops->close(rows);
    if (as_of != head) {
        TEST_FAIL("seed=%" PRIu64 " round=%u: after a clean stop accounts_as_of_seq is %" PRId64
                  ", the journal head %" PRId64, seed, round, as_of, head);
    }
}

/* The next child replays one of these acknowledged transfers (with its idempotency
 * record): the newest sampled plain one. */
static void replay_sample_keep(const store_transfer_t *sample, uint32_t count) {
    for (uint32_t i = count; i-- > 0;) {
        const ledger_transfer_t *t = &sample[i].transfer;
        if (t->flags != 0) continue;
        replay_sample = *t;
        snprintf(replay_metadata, sizeof replay_metadata, "%s", t->metadata_json ? t->metadata_json : "");
        replay_sample.metadata_json = t->metadata_json ? replay_metadata : NULL;
        replay_sample_set = true;
        return;
    }
}

/* The file as the cycle left it verifies and equals the model; the engine restarts on
 * it, finds every ack and balances; after its clean stop the same holds again. */
static void check_after_crash(uint32_t round, bool clean, uint64_t *acked_out, uint64_t *transfers_out) {
    struct stat st;
    if (!on_pg && stat(db_path, &st) != 0) return; /* killed before the file existed */
    journal_report_t report;
    cycle_state_t cycle = {.clean = clean};
    free(acks_read(&cycle.ack_bytes));
    cycle.verified = verify_expect_ok(round, "after the cycle", &report, cycle.ack_bytes == 0);
    cycle.batches = report.batches;
    if (cycle.verified && report.batches > 0) model_matches_replay(round, "after the cycle");
    load_checks(round, &cycle);
    if (clean) snapshot_at_head(round);
    store_t *store;
    writer_t *writer;
    store_options_t options = {.create = true};
    ASSERT_STATUS(store_open(&store, store_location, &options), PC_OK);
    ASSERT_STATUS(writer_start(&writer, store, key_path, NULL), PC_OK);
    store_transfer_t sample[RESUBMIT_MAX];
    uint32_t sample_count = 0;
    uint64_t rng = seed ^ round;
    *acked_out = acks_all_present(store, round, sample, &sample_count, &rng);
    ASSERT_TRUE(*acked_out <= report.transfers);
    resubmit_expect_exists(writer, sample, sample_count);
    replay_sample_keep(sample, sample_count);
    for (uint32_t i = 0; i < sample_count; i++) store_transfer_free(&sample[i]);
    writer_drain(writer); /* its thread has stopped: its ledger holds still */
    char currency[4];
    if (!ledger_balanced(writer_ledger(writer), currency)) {
        TEST_FAIL("seed=%" PRIu64 " round=%u: the ledger after the restart is unbalanced in %s" CYCLE_FMT, seed,
                  round, currency, CYCLE_ARGS(&cycle));
    }
    writer_free(writer);
    store_close(store);
    if (verify_expect_ok(round, "after the restart", &report, false) && report.batches > 0) {
        model_matches_replay(round, "after the restart");
        snapshot_at_head(round);
    }
    *transfers_out = report.transfers;
}

/* ---- the cycles ---- */

static uint32_t kill_delay_ms(uint64_t *rng, uint32_t round) {
    uint32_t r = (uint32_t)(mix(rng) % 100);
    if (r < 10) return (uint32_t)(mix(rng) % 20);           /* during start-up */
    return (round == 1 ? 300 : 40) + (uint32_t)(mix(rng) % 400);
}

static void pause_ms(uint32_t ms) {
    struct timespec pause = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
}

static void child_expect(pid_t child, uint32_t round, cycle_kind kind, int want_signal, int want_exit) {
    int wait_status;
    ASSERT_EQ(waitpid(child, &wait_status, 0), child);
    if (want_signal != 0 && WIFSIGNALED(wait_status) && WTERMSIG(wait_status) == want_signal) return;
    if (want_signal == 0 && WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == want_exit) return;
    TEST_FAIL("seed=%" PRIu64 " round=%u %s: child ended with %s %d", seed, round, cycle_names[kind],
              WIFSIGNALED(wait_status) ? "signal" : "exit",
              WIFSIGNALED(wait_status) ? WTERMSIG(wait_status) : WEXITSTATUS(wait_status));
}

/* Runs one cycle of 'kind'; true when the child stopped cleanly (snapshot at head). */
static bool cycle_run(uint32_t round, cycle_kind kind, uint64_t *rng, bool snapshot_fault) {
    int ready[2];
    ASSERT_EQ(pipe(ready), 0);
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &term, NULL), 0); /* the child inherits it */
    pid_t child = fork();
    ASSERT_TRUE(child >= 0);
    if (child == 0) {
        close(ready[0]);
        alarm(120); /* never outlive a parent that died */
        child_run(round, kind, ready[1], snapshot_fault);
    }
    ASSERT_EQ(pthread_sigmask(SIG_UNBLOCK, &term, NULL), 0);
    close(ready[1]);
    bool clean = false;
    char byte;
    switch (kind) {
    case CYCLE_KILL:
        pause_ms(kill_delay_ms(rng, round));
        ASSERT_EQ(kill(child, SIGKILL), 0);
        child_expect(child, round, kind, SIGKILL, 0);
        break;
    case CYCLE_KILL_SOON:
        ASSERT_EQ(read(ready[0], &byte, 1), 1); /* its handful of batches committed */
        ASSERT_EQ(kill(child, SIGKILL), 0);
        child_expect(child, round, kind, SIGKILL, 0);
        break;
    case CYCLE_TERM:
        pause_ms(40 + (uint32_t)(mix(rng) % 400));
        ASSERT_EQ(kill(child, SIGTERM), 0);
        child_expect(child, round, kind, 0, 0);
        clean = !snapshot_fault;
        break;
    case CYCLE_FSYNC_FAULT:
        if (on_pg) { /* the server crashes under the load: the writer's connection breaks */
            ASSERT_EQ(read(ready[0], &byte, 1), 1);
            pause_ms(20 + (uint32_t)(mix(rng) % 200));
            if (system(pg_restart_command) != 0) TEST_FAIL("seed=%" PRIu64 ": %s failed", seed, pg_restart_command);
        }
        child_expect(child, round, kind, 0, EXIT_STORE_FAILED);
        break;
    case CYCLE_KIND_COUNT:
        PC_ASSERT(false);
    }
    close(ready[0]);
    tally_cycles[kind]++;
    return clean;
}

/* Round 1 crashes; then, in turn: a clean stop, a crash soon after its restart, a
 * failed fsync, a crash at a random moment. */
static cycle_kind cycle_kind_of(uint32_t round) {
    static const cycle_kind order[] = {CYCLE_TERM, CYCLE_KILL_SOON, CYCLE_FSYNC_FAULT, CYCLE_KILL};
    return round == 1 ? CYCLE_KILL : order[(round - 2) % 4];
}

int main(void) {
    const char *seed_env = getenv("PAYCORE_SEED");
    const char *rounds_env = getenv("PAYCORE_CRASH_ROUNDS");
    seed = seed_env != NULL ? strtoull(seed_env, NULL, 10) : pc_wall_ns();
    bool sanitized = getenv("PAYCORE_SANITIZED") != NULL;
    uint32_t rounds = rounds_env != NULL ? (uint32_t)strtoul(rounds_env, NULL, 10) : sanitized ? 10 : 24;
    printf("test_crash seed=%" PRIu64 " rounds=%u (PAYCORE_SEED=%" PRIu64 " replays it)\n", seed,
           rounds, seed);
    fflush(stdout);
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    snprintf(db_path, sizeof(db_path), "%s/crash.db", dir);
    snprintf(key_path, sizeof(key_path), "%s/crash.key", dir);
    snprintf(pub_path, sizeof(pub_path), "%s.pub", key_path);
    snprintf(ack_path, sizeof(ack_path), "%s/acks", dir);
    snprintf(intent_path, sizeof(intent_path), "%s/intents", dir);
    store_location = getenv("PAYCORE_TEST_STORE_URL") != NULL ? getenv("PAYCORE_TEST_STORE_URL") : db_path;
    on_pg = store_location_is_url(store_location);
    pg_restart_command = getenv("PAYCORE_TEST_PG_RESTART");
    if (on_pg && pg_restart_command == NULL) TEST_FAIL("PAYCORE_TEST_STORE_URL needs PAYCORE_TEST_PG_RESTART");
    uint64_t rng = seed, acked = 0, transfers = 0;
    for (uint32_t round = 1; round <= rounds; round++) {
        cycle_kind kind = cycle_kind_of(round);
        bool snapshot_fault = kind == CYCLE_TERM && mix(&rng) % 3 == 0 && !on_pg; /* a SQLite fault */
        tally_snapshot_faults += snapshot_fault;
        bool clean = cycle_run(round, kind, &rng, snapshot_fault);
        intents_load(round);
        check_after_crash(round, clean, &acked, &transfers);
    }
    printf("rounds=%u acked=%" PRIu64 " transfers=%" PRIu64 " model_rows=%" PRIu64
           " kill=%u term=%u kill_soon=%u fsync_fault=%u snapshot_faults=%u unreadable_at_creation=%u\n",
           rounds, acked, transfers, model_rows, tally_cycles[CYCLE_KILL], tally_cycles[CYCLE_TERM],
           tally_cycles[CYCLE_KILL_SOON], tally_cycles[CYCLE_FSYNC_FAULT], tally_snapshot_faults,
           tally_unreadable_at_creation);
    ASSERT_TRUE(acked > 0);            /* the load must have run, or this proves nothing */
    ASSERT_EQ(model_rows, transfers);  /* the model saw every row verify counted */
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    test_passed_count++;
    return test_finish();
}
