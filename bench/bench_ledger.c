/* bench/bench_ledger.c: durable ledger throughput against plain SQLite, measured in
 * the same run, interleaved, on the same disk. One key=value line per figure, the
 * ratio last (tools read batch=, transfers_per_s=, ratio=):
 *   ledger batch=N accounts=A transfers_per_s=… baseline=sqlite_batchN baseline_per_s=… ratio=…
 *   ledger submitters=64 … baseline=sqlite_naive …
 *   ledger_owner batch=N … baseline=ledger_admin …   the same work as a merchant key's:
 *     every account checked against the owner's grants in the writer (ratio ~1: the
 *     cost of the ownership check)
 *   ledger_owner_apply batch=N … check_ns_per_transfer=… share_of_durable=… baseline=…
 *     the ledger's apply alone, in memory, in commands of N events as the writer makes
 *     them, as an admin and as the owner: the check's own cost, measured in this
 *     thread's CPU time (other load on the machine and the disk do not count), and its
 *     share of a durable transfer of the same run (batch=N's figure)
 *   ledger_id_hash batch=N … extra_ns_per_transfer=… share_of_durable=… baseline=pc_hash64 …
 *     the keyed id hashes a durable transfer takes against the unkeyed hash they
 *     replaced, same transfers, this thread's CPU time, and their extra cost's share
 *     of a durable transfer of the same run (batch=N's figure)
 *   ledger_memory accounts=1000000 peak_rss_mib=…
 * The baseline is what a careful engineer writes first: WAL, synchronous=FULL,
 * prepared statements, per transfer two UPDATEs and one INSERT, N per transaction.
 * --quick: 100k accounts, short runs (under a minute); --full: 100k and 1M. */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "ledger/ledger.h"
#include "store/store.h"
#include "writer/grants.h"
#include "writer/writer.h"

typedef struct {
    uint32_t accounts;
    double seconds_per_figure;
    char dir[256];
} bench_config;

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng_next(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void account_id(char *out, size_t size, uint32_t n) { snprintf(out, size, "acct-%07u", n); }

/* ---------------- baseline: plain SQLite ---------------- */

static sqlite3 *baseline_open(const bench_config *config, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.db", config->dir, name);
    unlink(path);
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK) abort();
    sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA cache_size=-131072;"
                     "CREATE TABLE accounts(id TEXT PRIMARY KEY, debits INTEGER NOT NULL, credits INTEGER NOT NULL);"
                     "CREATE TABLE transfers(id TEXT PRIMARY KEY, debit_id TEXT NOT NULL, credit_id TEXT NOT NULL,"
                     " amount INTEGER NOT NULL, timestamp INTEGER NOT NULL);",
                 NULL, NULL, NULL);
    sqlite3_stmt *insert;
    sqlite3_prepare_v2(db, "INSERT INTO accounts VALUES(?,0,0)", -1, &insert, NULL);
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    for (uint32_t i = 0; i < config->accounts; i++) {
        char id[32];
        account_id(id, sizeof id, i);
        sqlite3_bind_text(insert, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_step(insert);
        sqlite3_reset(insert);
    }
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_finalize(insert);
    return db;
}

typedef struct {
    sqlite3 *db;
    sqlite3_stmt *debit, *credit, *insert;
    uint64_t next_id;
} baseline_t;

static void baseline_prepare(baseline_t *b, sqlite3 *db) {
    b->db = db;
    sqlite3_prepare_v2(db, "UPDATE accounts SET debits=debits+?2 WHERE id=?1", -1, &b->debit, NULL);
    sqlite3_prepare_v2(db, "UPDATE accounts SET credits=credits+?2 WHERE id=?1", -1, &b->credit, NULL);
    sqlite3_prepare_v2(db, "INSERT INTO transfers VALUES(?,?,?,?,?)", -1, &b->insert, NULL);
}

static void baseline_finish(baseline_t *b) {
    sqlite3_finalize(b->debit);
    sqlite3_finalize(b->credit);
    sqlite3_finalize(b->insert);
}

static void step_reset(sqlite3_stmt *stmt) {
    if (sqlite3_step(stmt) != SQLITE_DONE) abort();
    sqlite3_reset(stmt);
}

static void baseline_transfer(baseline_t *b, uint32_t account_count) {
    char id[40], dr[32], cr[32];
    uint32_t d = (uint32_t)(rng_next() % account_count), c = (uint32_t)(rng_next() % account_count);
    if (c == d) c = (c + 1) % account_count;
    account_id(dr, sizeof dr, d);
    account_id(cr, sizeof cr, c);
    snprintf(id, sizeof id, "base-%016llx", (unsigned long long)(rng_next() ^ b->next_id++));
    sqlite3_bind_text(b->debit, 1, dr, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(b->debit, 2, 100);
    step_reset(b->debit);
    sqlite3_bind_text(b->credit, 1, cr, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(b->credit, 2, 100);
    step_reset(b->credit);
    sqlite3_bind_text(b->insert, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(b->insert, 2, dr, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(b->insert, 3, cr, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(b->insert, 4, 100);
    sqlite3_bind_int64(b->insert, 5, (int64_t)pc_wall_ns());
    step_reset(b->insert);
}

/* Transfers per second in batches of 'batch' per transaction, for ~seconds. */
static double baseline_run(sqlite3 *db, uint32_t account_count, uint32_t batch, double seconds) {
    baseline_t b = {0};
    baseline_prepare(&b, db);
    uint64_t start_ns = pc_mono_ns(), count = 0;
    while ((double)(pc_mono_ns() - start_ns) / 1e9 < seconds) {
        sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        for (uint32_t i = 0; i < batch; i++) baseline_transfer(&b, account_count);
        if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) abort();
        count += batch;
    }
    baseline_finish(&b);
    return (double)count / ((double)(pc_mono_ns() - start_ns) / 1e9);
}

/* ---------------- paycore: store + writer ---------------- */

typedef struct {
    store_t *store;
    writer_t *writer;
    uint64_t next_id;
} paycore_t;

/* The owner of every account in the benchmark: a merchant key's commands are checked
 * against its grants (one per account). */
#define BENCH_OWNER "key_bench"

static void paycore_accounts(paycore_t *p, uint32_t account_count) {
    static ledger_account_t accounts[LEDGER_BATCH_EVENTS_MAX];
    static ledger_account_result_t results[LEDGER_BATCH_EVENTS_MAX];
    for (uint32_t first = 0; first < account_count; first += LEDGER_BATCH_EVENTS_MAX) {
        uint32_t count = account_count - first < LEDGER_BATCH_EVENTS_MAX ? account_count - first : LEDGER_BATCH_EVENTS_MAX;
        for (uint32_t i = 0; i < count; i++) {
            memset(&accounts[i], 0, sizeof accounts[i]);
            account_id(accounts[i].id, sizeof accounts[i].id, first + i);
            memcpy(accounts[i].currency, "USD", 4);
            accounts[i].code = 1;
        }
        writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_ACCOUNTS, .event_count = count, .accounts = accounts,
                            .account_results = results, .owner_id = BENCH_OWNER};
        if (writer_submit_wait(p->writer, &cmd) != PC_OK) abort();
    }
}

static void paycore_open(paycore_t *p, const bench_config *config, const char *name) {
    char path[512], key[512];
    snprintf(path, sizeof path, "%s/%s.db", config->dir, name);
    snprintf(key, sizeof key, "%s/%s.db.key", config->dir, name);
    unlink(path);
    store_options_t options = {.create = true};
    writer_config_t writer_config = {.batch_events_max = LEDGER_BATCH_EVENTS_MAX};
    if (store_open(&p->store, path, &options) != PC_OK) abort();
    if (writer_start(&p->writer, p->store, key, &writer_config) != PC_OK) abort();
    paycore_accounts(p, config->accounts);
}

static void paycore_close(paycore_t *p) {
    char currency[4];
    if (!ledger_balanced(writer_ledger(p->writer), currency)) {
        fprintf(stderr, "bench: ledger out of balance in %s\n", currency);
        abort();
    }
    writer_stop(p->writer);
    store_close(p->store);
}

static void transfers_fill(paycore_t *p, ledger_transfer_t *events, uint32_t count, uint32_t account_count) {
    for (uint32_t i = 0; i < count; i++) {
        ledger_transfer_t *t = &events[i];
        memset(t, 0, sizeof *t);
        uint32_t d = (uint32_t)(rng_next() % account_count), c = (uint32_t)(rng_next() % account_count);
        if (c == d) c = (c + 1) % account_count;
        account_id(t->debit_account_id, sizeof t->debit_account_id, d);
        account_id(t->credit_account_id, sizeof t->credit_account_id, c);
        snprintf(t->id, sizeof t->id, "tr-%016llx", (unsigned long long)(rng_next() ^ p->next_id++));
        memcpy(t->currency, "USD", 4);
        t->amount = 100;
        t->code = 1;
    }
}

/* Durable transfers per second, one command of 'batch' events per commit, acting for
 * 'owner' (NULL: an admin's). Only the time inside the writer (apply, write, fsync)
 * is counted: the client builds its batch before. */
static double paycore_run(paycore_t *p, uint32_t account_count, uint32_t batch, const char *owner, double seconds) {
    static ledger_transfer_t events[LEDGER_BATCH_EVENTS_MAX];
    static ledger_transfer_result_t results[LEDGER_BATCH_EVENTS_MAX];
    uint64_t busy_ns = 0, count = 0;
    while ((double)busy_ns / 1e9 < seconds) {
        transfers_fill(p, events, batch, account_count);
        writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = batch, .transfers = events,
                            .transfer_results = results, .owner_id = owner};
        uint64_t start_ns = pc_mono_ns();
        if (writer_submit_wait(p->writer, &cmd) != PC_OK) abort();
        busy_ns += pc_mono_ns() - start_ns;
        for (uint32_t i = 0; i < batch; i++) {
            if (results[i].status != PC_OK) abort();
        }
        count += batch;
    }
    return (double)count / ((double)busy_ns / 1e9);
}

/* ---------------- 64 concurrent single-transfer submitters ---------------- */

#define SUBMITTERS 64

typedef struct {
    paycore_t *p;
    uint32_t account_count;
    uint64_t deadline_ns;
    uint64_t count;
    uint64_t seed;
    const char *owner;
} submitter_arg;

static void *submitter_main(void *opaque) {
    submitter_arg *arg = opaque;
    uint64_t state = arg->seed;
    while (pc_mono_ns() < arg->deadline_ns) {
        ledger_transfer_t t = {0};
        ledger_transfer_result_t r;
        state ^= state << 13; state ^= state >> 7; state ^= state << 17;
        uint32_t d = (uint32_t)(state % arg->account_count), c = (uint32_t)((state >> 20) % arg->account_count);
        if (c == d) c = (c + 1) % arg->account_count;
        account_id(t.debit_account_id, sizeof t.debit_account_id, d);
        account_id(t.credit_account_id, sizeof t.credit_account_id, c);
        snprintf(t.id, sizeof t.id, "s%llu-%016llx", (unsigned long long)arg->seed, (unsigned long long)state);
        memcpy(t.currency, "USD", 4);
        t.amount = 1;
        t.code = 1;
        writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = 1, .transfers = &t, .transfer_results = &r,
                            .owner_id = arg->owner};
        if (writer_submit_wait(arg->p->writer, &cmd) != PC_OK || r.status != PC_OK) abort();
        arg->count++;
    }
    return NULL;
}

static double paycore_concurrent(paycore_t *p, uint32_t account_count, const char *owner, double seconds) {
    pthread_t threads[SUBMITTERS];
    submitter_arg args[SUBMITTERS];
    uint64_t start_ns = pc_mono_ns();
    for (int i = 0; i < SUBMITTERS; i++) {
        args[i] = (submitter_arg){p, account_count, start_ns + (uint64_t)(seconds * 1e9), 0, rng_next() | 1, owner};
        pthread_create(&threads[i], NULL, submitter_main, &args[i]);
    }
    uint64_t total = 0;
    for (int i = 0; i < SUBMITTERS; i++) {
        pthread_join(threads[i], NULL);
        total += args[i].count;
    }
    return (double)total / ((double)(pc_mono_ns() - start_ns) / 1e9);
}

/* ---------------- figures ---------------- */

static void figure_owner(const char *shape, uint32_t accounts, double owner_per_s, double admin_per_s) {
    printf("ledger_owner %s accounts=%u transfers_per_s=%.0f baseline=ledger_admin baseline_per_s=%.0f ratio=%.3f\n",
           shape, accounts, owner_per_s, admin_per_s, owner_per_s / admin_per_s);
}

/* Interleaved rounds (the disk's mood hits all three): plain SQLite, paycore as an
 * admin, paycore as the merchant owning every account. */
/* Returns paycore's figure (transfers per second, as an admin). */
/* Admin and owner runs alternate in this many slices of a round: the disk's fsync rate
 * swings 10x within minutes, and slices this short see the same disk, so the owner's
 * ratio to the admin's is the check's cost, not the disk's mood. */
#define OWNER_SLICES 8

typedef double (*paycore_run_fn)(paycore_t *p, uint32_t account_count, uint32_t batch, const char *owner,
                                 double seconds);

static double concurrent_run(paycore_t *p, uint32_t account_count, uint32_t batch, const char *owner,
                             double seconds) {
    (void)batch;
    return paycore_concurrent(p, account_count, owner, seconds);
}

/* 'seconds' of admin runs and as many of owner runs, alternating in OWNER_SLICES
 * slices (neither always first: neither always runs on a warmer cache); adds each
 * side's mean rate to its sum. */
static void owner_pair_run(paycore_run_fn run, paycore_t *p, uint32_t account_count, uint32_t batch,
                           double seconds, double *admin_sum, double *owner_sum) {
    double admin = 0, owner = 0, slice = seconds / OWNER_SLICES;
    for (int s = 0; s < OWNER_SLICES; s++) {
        bool owner_first = s % 2 == 1;
        if (owner_first) owner += run(p, account_count, batch, BENCH_OWNER, slice);
        admin += run(p, account_count, batch, NULL, slice);
        if (!owner_first) owner += run(p, account_count, batch, BENCH_OWNER, slice);
    }
    *admin_sum += admin / OWNER_SLICES;
    *owner_sum += owner / OWNER_SLICES;
}

static double figure_batch(const bench_config *config, paycore_t *p, sqlite3 *base, uint32_t batch, int rounds) {
    double paycore_sum = 0, owner_sum = 0, baseline_sum = 0, seconds = config->seconds_per_figure / rounds;
    for (int round = 0; round < rounds; round++) {
        baseline_sum += baseline_run(base, config->accounts, batch, seconds);
        owner_pair_run(paycore_run, p, config->accounts, batch, seconds, &paycore_sum, &owner_sum);
    }
    double paycore_per_s = paycore_sum / rounds, baseline_per_s = baseline_sum / rounds;
    printf("ledger batch=%u accounts=%u transfers_per_s=%.0f baseline=sqlite_batch%u baseline_per_s=%.0f ratio=%.2f\n",
           batch, config->accounts, paycore_per_s, batch, baseline_per_s, paycore_per_s / baseline_per_s);
    char shape[32];
    snprintf(shape, sizeof shape, "batch=%u", batch);
    figure_owner(shape, config->accounts, owner_sum / rounds, paycore_per_s);
    fflush(stdout);
    return paycore_per_s;
}

static void figure_concurrent(const bench_config *config, paycore_t *p, sqlite3 *base, int rounds) {
    double paycore_sum = 0, owner_sum = 0, baseline_sum = 0, seconds = config->seconds_per_figure / rounds;
    for (int round = 0; round < rounds; round++) {
        baseline_sum += baseline_run(base, config->accounts, 1, seconds);
        owner_pair_run(concurrent_run, p, config->accounts, 1, seconds, &paycore_sum, &owner_sum);
    }
    double paycore_per_s = paycore_sum / rounds, baseline_per_s = baseline_sum / rounds;
    printf("ledger batch=1 submitters=%d accounts=%u transfers_per_s=%.0f baseline=sqlite_naive baseline_per_s=%.0f "
           "ratio=%.2f\n", SUBMITTERS, config->accounts, paycore_per_s, baseline_per_s, paycore_per_s / baseline_per_s);
    char shape[48];
    snprintf(shape, sizeof shape, "batch=1 submitters=%d", SUBMITTERS);
    figure_owner(shape, config->accounts, owner_sum / rounds, paycore_per_s);
    fflush(stdout);
}

/* ---------------- the ownership check alone ---------------- */

#define OWNER_APPLY_ROUNDS 200

static pc_status source_none(void *ctx, const char *id, ledger_transfer_record_t *out) {
    (void)ctx;
    (void)id;
    (void)out;
    return PC_NOT_FOUND; /* every id is new: the same events can be applied again */
}

static double thread_cpu_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return (double)now.tv_sec * 1e9 + (double)now.tv_nsec;
}

/* Applies 'events' as the writer does, in commands of 'batch' events each (the reach
 * built per command, as batch_apply does); CPU ns of this thread per transfer. */
static double apply_ns_per_transfer(ledger_t *ledger, writer_grants_t *grants, const ledger_transfer_t *events,
                                    ledger_transfer_result_t *results, uint32_t count, uint32_t batch,
                                    const char *owner) {
    ledger_source_t source = {source_none, NULL};
    writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_TRANSFERS, .owner_id = owner};
    double start_ns = thread_cpu_ns();
    ledger_batch_begin(ledger, pc_wall_ns());
    for (uint32_t first = 0; first < count; first += batch) {
        writer_reach_t storage;
        const ledger_reach_t *reach = writer_grants_reach(grants, &cmd, &storage);
        ledger_create_transfers(ledger, &source, reach, events + first, batch, results + first);
    }
    ledger_batch_commit(ledger);
    double ns = (thread_cpu_ns() - start_ns) / count;
    for (uint32_t i = 0; i < count; i++) {
        if (results[i].status != PC_OK) abort();
    }
    return ns;
}

/* The ledger's apply in memory (no store, no disk, no other thread), as an admin and
 * as the owner of every account, alternating; CPU time of this thread; best round of
 * each. What the ownership check costs per transfer, against what applying costs and
 * against a durable transfer of the same run ('durable_per_s', the batch's figure). */
static void figure_owner_apply(uint32_t account_count, uint32_t batch, double durable_per_s) {
    ledger_t *ledger;
    writer_grants_t *grants;
    if (ledger_open(&ledger) != PC_OK || writer_grants_open(&grants) != PC_OK) abort();
    static ledger_account_t accounts[LEDGER_BATCH_EVENTS_MAX];
    static ledger_account_result_t account_results[LEDGER_BATCH_EVENTS_MAX];
    uint32_t owner = writer_grants_owner(grants, BENCH_OWNER);
    for (uint32_t first = 0; first < account_count; first += LEDGER_BATCH_EVENTS_MAX) {
        uint32_t count = account_count - first < LEDGER_BATCH_EVENTS_MAX ? account_count - first : LEDGER_BATCH_EVENTS_MAX;
        for (uint32_t i = 0; i < count; i++) {
            memset(&accounts[i], 0, sizeof accounts[i]);
            account_id(accounts[i].id, sizeof accounts[i].id, first + i);
            memcpy(accounts[i].currency, "USD", 4);
            writer_grants_add(grants, owner, first + i, accounts[i].id);
        }
        ledger_batch_begin(ledger, pc_wall_ns());
        ledger_create_accounts(ledger, NULL, accounts, count, account_results);
        ledger_batch_commit(ledger);
    }
    writer_grants_commit(grants);
    static ledger_transfer_t events[LEDGER_BATCH_EVENTS_MAX];
    static ledger_transfer_result_t results[LEDGER_BATCH_EVENTS_MAX];
    paycore_t ids = {0};
    transfers_fill(&ids, events, LEDGER_BATCH_EVENTS_MAX, account_count);
    double admin_ns = 1e18, owner_ns = 1e18;
    for (int round = 0; round < OWNER_APPLY_ROUNDS; round++) {
        for (int turn = 0; turn < 2; turn++) {
            bool as_owner = (turn + round) % 2 == 1;
            double ns = apply_ns_per_transfer(ledger, grants, events, results, LEDGER_BATCH_EVENTS_MAX, batch,
                                              as_owner ? BENCH_OWNER : NULL);
            double *best = as_owner ? &owner_ns : &admin_ns;
            if (ns < *best) *best = ns;
        }
    }
    double durable_ns = 1e9 / durable_per_s;
    printf("ledger_owner_apply batch=%u accounts=%u check_ns_per_transfer=%.1f durable_ns_per_transfer=%.0f "
           "share_of_durable=%.4f transfers_per_cpu_s=%.0f baseline=ledger_admin_apply baseline_per_cpu_s=%.0f "
           "ratio=%.3f\n", batch, account_count, owner_ns - admin_ns, durable_ns, (owner_ns - admin_ns) / durable_ns,
           1e9 / owner_ns, 1e9 / admin_ns, admin_ns / owner_ns);
    fflush(stdout);
    writer_grants_close(grants);
    ledger_close(ledger);
}

/* ---------------- the keyed id hash alone ---------------- */

/* Keyed (SipHash-2-4) hashes a durable transfer takes: its id in the ledger's maps
 * (ledger/transfer.c, once for lookup and insert), both account ids (accounts_hash),
 * its id under the store's key for the lookup (store_source) and for its index entry
 * at commit (sqlite_tx.c). */
#define ID_HASHES_PER_TRANSFER 5
#define ID_HASH_ROUNDS 200

/* CPU ns of this thread per transfer for its ID_HASHES_PER_TRANSFER hashes, keyed
 * under 'key' or (NULL) with the unkeyed pc_hash64 the maps used before. */
static double id_hashes_ns(const pc_hash_key_t *key, const ledger_transfer_t *events, uint32_t count,
                           uint64_t *sink) {
    double start_ns = thread_cpu_ns();
    for (uint32_t i = 0; i < count; i++) {
        const ledger_transfer_t *t = &events[i];
        const char *ids[ID_HASHES_PER_TRANSFER] = {t->id, t->debit_account_id, t->credit_account_id, t->id, t->id};
        for (int h = 0; h < ID_HASHES_PER_TRANSFER; h++) {
            size_t bytes = strlen(ids[h]);
            *sink += key != NULL ? pc_hash_keyed(key, ids[h], bytes) : pc_hash64(ids[h], bytes);
        }
    }
    return (thread_cpu_ns() - start_ns) / count;
}

/* What keying the id hashes costs a durable transfer of this run: the keyed hashes
 * against the unkeyed ones on the same transfers, alternating, best round of each,
 * this thread's CPU time; the difference as a share of 'durable_per_s' (batch=N). */
static void figure_id_hash(uint32_t account_count, uint32_t batch, double durable_per_s) {
    static ledger_transfer_t events[LEDGER_BATCH_EVENTS_MAX];
    paycore_t ids = {0};
    transfers_fill(&ids, events, LEDGER_BATCH_EVENTS_MAX, account_count);
    pc_hash_key_t key;
    pc_hash_key_random(&key);
    double keyed_ns = 1e18, plain_ns = 1e18;
    uint64_t sink = 0;
    for (int round = 0; round < ID_HASH_ROUNDS; round++) {
        for (int turn = 0; turn < 2; turn++) {
            bool keyed = (turn + round) % 2 == 1;
            double ns = id_hashes_ns(keyed ? &key : NULL, events, LEDGER_BATCH_EVENTS_MAX, &sink);
            double *best = keyed ? &keyed_ns : &plain_ns;
            if (ns < *best) *best = ns;
        }
    }
    double durable_ns = 1e9 / durable_per_s;
    printf("ledger_id_hash batch=%u accounts=%u hashes_per_transfer=%d extra_ns_per_transfer=%.1f "
           "durable_ns_per_transfer=%.0f share_of_durable=%.4f keyed_ns_per_transfer=%.1f baseline=pc_hash64 "
           "baseline_ns_per_transfer=%.1f ratio=%.2f\n", batch, account_count, ID_HASHES_PER_TRANSFER,
           keyed_ns - plain_ns, durable_ns, (keyed_ns - plain_ns) / durable_ns, keyed_ns, plain_ns,
           keyed_ns / plain_ns);
    if (sink == 42) printf("#\n"); /* keeps the hashes from being optimised away */
    fflush(stdout);
}

static long status_kib(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    size_t field_bytes = strlen(field);
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, field, field_bytes) == 0) kib = atol(line + field_bytes + 1);
    }
    if (f != NULL) fclose(f);
    return kib;
}

/* Peak resident memory of a ledger holding 'account_count' accounts, measured in a
 * child so nothing else of the benchmark counts. */
static void figure_memory(uint32_t account_count) {
    pid_t pid = fork();
    if (pid == 0) {
        ledger_t *ledger;
        if (ledger_open(&ledger) != PC_OK) _exit(1);
        static ledger_account_t accounts[LEDGER_BATCH_EVENTS_MAX];
        static ledger_account_result_t results[LEDGER_BATCH_EVENTS_MAX];
        for (uint32_t first = 0; first < account_count; first += LEDGER_BATCH_EVENTS_MAX) {
            uint32_t count = account_count - first < LEDGER_BATCH_EVENTS_MAX ? account_count - first : LEDGER_BATCH_EVENTS_MAX;
            for (uint32_t i = 0; i < count; i++) {
                memset(&accounts[i], 0, sizeof accounts[i]);
                account_id(accounts[i].id, sizeof accounts[i].id, first + i);
                memcpy(accounts[i].currency, "USD", 4);
            }
            ledger_batch_begin(ledger, pc_wall_ns());
            ledger_create_accounts(ledger, NULL, accounts, count, results);
            ledger_batch_commit(ledger);
        }
        printf("ledger_memory accounts=%u peak_rss_mib=%.1f limit_mib=300\n", ledger_account_count(ledger),
               (double)status_kib("VmHWM:") / 1024.0);
        fflush(stdout);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
}

static void run_accounts(bench_config *config, uint32_t account_count, int rounds, bool concurrent) {
    config->accounts = account_count;
    sqlite3 *base = baseline_open(config, "baseline");
    paycore_t p = {0};
    paycore_open(&p, config, "paycore");
    double single_per_s = figure_batch(config, &p, base, 1, rounds);
    (void)figure_batch(config, &p, base, 100, rounds);
    double batch_per_s = figure_batch(config, &p, base, LEDGER_BATCH_EVENTS_MAX, rounds);
    if (concurrent) figure_concurrent(config, &p, base, rounds);
    paycore_close(&p);
    sqlite3_close(base);
    figure_owner_apply(account_count, 1, single_per_s);
    figure_owner_apply(account_count, LEDGER_BATCH_EVENTS_MAX, batch_per_s);
    figure_id_hash(account_count, 1, single_per_s);
    figure_id_hash(account_count, LEDGER_BATCH_EVENTS_MAX, batch_per_s);
}

int main(int argc, char **argv) {
    bool full = argc > 1 && strcmp(argv[1], "--full") == 0;
    bench_config config = {.seconds_per_figure = full ? 6.0 : 2.0};
    snprintf(config.dir, sizeof config.dir, "%s/paycore-bench-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(config.dir) == NULL) return 1;
    run_accounts(&config, 100000, full ? 2 : 1, true);
    if (full) run_accounts(&config, 1000000, 2, false);
    figure_memory(1000000);
    char command[600];
    snprintf(command, sizeof command, "rm -rf '%s'", config.dir);
    return system(command) == 0 ? 0 : 1;
}
