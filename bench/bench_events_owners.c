/* bench/bench_events_owners.c: what finding an event's owners costs the writer. Every
 * event names the merchant keys granted its accounts; the outbox finds them in the
 * writer's grants in memory (writer_batch_account_owners); the baseline is the store's
 * query it made before (store_events_account_owners: once per account and batch for
 * the ledger's events, once per event for payments'), measured in the same run, on
 * the same accounts, inside one writer batch, interleaved, in thread CPU time:
 *   events_owners accounts=A keys=K memory_ns_per_lookup=… baseline=sql_query
 *   baseline_ns_per_lookup=… ratio=…
 * (ratio = memory / baseline). --quick: fewer accounts and rounds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "events/events.h"
#include "store/store_api.h"
#include "store/store_events.h"
#include "writer/writer.h"

#define KEYS 500
#define ACCOUNTS_MAX 20000
#define CREATE_CHUNK 4000

static char ids[ACCOUNTS_MAX][PC_ID_SIZE];
static uint32_t account_count;

static double thread_cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void must(pc_status status, const char *what) {
    if (status == PC_OK) return;
    fprintf(stderr, "bench_events_owners: %s: %s\n", what, pc_status_code(status));
    exit(1);
}

static void accounts_create(writer_t *writer) {
    static ledger_account_t list[CREATE_CHUNK];
    static ledger_account_result_t results[CREATE_CHUNK];
    for (uint32_t first = 0; first < account_count; first += CREATE_CHUNK) {
        uint32_t count = account_count - first < CREATE_CHUNK ? account_count - first : CREATE_CHUNK;
        memset(list, 0, sizeof list);
        for (uint32_t i = 0; i < count; i++) {
            snprintf(ids[first + i], PC_ID_SIZE, "mer:m%u:EUR:available", first + i);
            memcpy(list[i].id, ids[first + i], strlen(ids[first + i]) + 1);
            memcpy(list[i].currency, "EUR", 4);
        }
        writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_ACCOUNTS, .event_count = count, .accounts = list,
                            .account_results = results};
        must(writer_submit_wait(writer, &cmd), "create accounts");
    }
}

static pc_status key_in_tx(writer_cmd_t *cmd, store_tx_t *tx) {
    store_api_key_t key = {.scope = "merchant", .name = "bench", .created_ns = 1};
    snprintf(key.id, sizeof key.id, "%s", cmd->grantee_id);
    memcpy(key.key_hash, key.id, strlen(key.id) < sizeof key.key_hash ? strlen(key.id) : sizeof key.key_hash);
    return store_api_key_insert(tx, &key);
}

/* Key k holds the accounts k, k + KEYS, ...; every tenth account a second key too. */
static void keys_grant(writer_t *writer) {
    static const char *granted[ACCOUNTS_MAX];
    for (uint32_t k = 0; k < KEYS; k++) {
        char key_id[32];
        snprintf(key_id, sizeof key_id, "key_%04u", k);
        uint32_t count = 0;
        for (uint32_t a = k; a < account_count; a += KEYS) granted[count++] = ids[a];
        for (uint32_t a = (k + 1) % KEYS; a < account_count; a += 10 * KEYS) granted[count++] = ids[a];
        writer_cmd_t cmd = {.kind = WRITER_CMD_EXEC, .in_transaction = key_in_tx, .grantee_id = key_id,
                            .grant_account_ids = granted, .grant_count = count};
        must(writer_submit_wait(writer, &cmd), "grant");
    }
}

typedef struct {
    writer_cmd_t cmd;
    uint32_t rounds;
    double memory_ns;            /* best round, per lookup */
    double sql_ns;
    uint64_t owners_seen;
} measure_job;

static double memory_round(measure_job *job) {
    const char *owners[EVENTS_OWNERS_MAX];
    uint32_t count;
    double start_ns = thread_cpu_ns();
    for (uint32_t a = 0; a < account_count; a++) {
        if (!writer_batch_account_owners(ids[a], owners, EVENTS_OWNERS_MAX, &count)) return -1;
        job->owners_seen += count;
    }
    return (thread_cpu_ns() - start_ns) / account_count;
}

static double sql_round(measure_job *job, store_events_writer_t *w) {
    char owners[EVENTS_OWNERS_MAX][PC_ID_SIZE];
    uint32_t count;
    double start_ns = thread_cpu_ns();
    for (uint32_t a = 0; a < account_count; a++) {
        if (store_events_account_owners(w, ids[a], owners, EVENTS_OWNERS_MAX, &count) != PC_OK) return -1;
        job->owners_seen += count;
    }
    return (thread_cpu_ns() - start_ns) / account_count;
}

/* Both ways name the same owners, in the same order, for every account. */
static bool same_owners(store_events_writer_t *w) {
    for (uint32_t a = 0; a < account_count; a++) {
        const char *held[EVENTS_OWNERS_MAX];
        char queried[EVENTS_OWNERS_MAX][PC_ID_SIZE];
        uint32_t held_count, queried_count;
        if (!writer_batch_account_owners(ids[a], held, EVENTS_OWNERS_MAX, &held_count) ||
            store_events_account_owners(w, ids[a], queried, EVENTS_OWNERS_MAX, &queried_count) != PC_OK ||
            held_count != queried_count || held_count == 0) {
            return false;
        }
        for (uint32_t i = 0; i < held_count; i++) {
            if (strcmp(held[i], queried[i]) != 0) return false;
        }
    }
    return true;
}

/* On the writer thread, inside a batch: both ways, interleaved, the best round of each. */
static pc_status measure_in_tx(writer_cmd_t *cmd, store_tx_t *tx) {
    measure_job *job = (measure_job *)cmd;
    store_events_writer_t *w;
    pc_status status = store_events_writer_begin(tx, &w);
    if (status != PC_OK) return status;
    job->memory_ns = job->sql_ns = 1e18;
    if (!same_owners(w)) {
        fprintf(stderr, "bench_events_owners: the grants in memory and the store disagree\n");
        status = PC_INTERNAL;
    }
    for (uint32_t r = 0; r < job->rounds && status == PC_OK; r++) {
        double memory_ns = memory_round(job), sql_ns = sql_round(job, w);
        if (memory_ns < 0 || sql_ns < 0) status = PC_INTERNAL;
        if (memory_ns < job->memory_ns) job->memory_ns = memory_ns;
        if (sql_ns < job->sql_ns) job->sql_ns = sql_ns;
    }
    store_events_writer_end(w);
    return status;
}

int main(int argc, char **argv) {
    bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    account_count = quick ? 5000 : ACCOUNTS_MAX;
    char dir[] = "/tmp/paycore-bench-owners-XXXXXX", db[128], key[160];
    if (mkdtemp(dir) == NULL) return 1;
    snprintf(db, sizeof db, "%s/bench.db", dir);
    snprintf(key, sizeof key, "%s/bench.db.key", dir);
    store_t *store;
    store_options_t options = {.create = true};
    must(store_open(&store, db, &options), "store_open");
    events_config_t config;
    events_config_default(&config);
    config.db_path = db;
    config.retention_s = 0;
    events_t *events;
    must(events_open(&events, store, &config), "events_open");
    writer_config_t writer_config = {.batch_hook = events_batch_hook(events)};
    writer_t *writer;
    must(writer_start(&writer, store, key, &writer_config), "writer_start");
    accounts_create(writer);
    keys_grant(writer);
    measure_job job = {.cmd = {.kind = WRITER_CMD_EXEC, .in_transaction = measure_in_tx},
                       .rounds = quick ? 3 : 7};
    must(writer_submit_wait(writer, &job.cmd), "measure");
    writer_stop(writer);
    events_close(events);
    store_close(store);
    char command[256];
    snprintf(command, sizeof command, "rm -rf '%s'", dir);
    if (system(command) != 0) fprintf(stderr, "bench_events_owners: could not remove %s\n", dir);
    if (job.owners_seen == 0) return 1; /* nothing was granted: no figure */
    printf("events_owners accounts=%u keys=%u memory_ns_per_lookup=%.0f baseline=sql_query "
           "baseline_ns_per_lookup=%.0f ratio=%.3f\n",
           account_count, KEYS, job.memory_ns, job.sql_ns, job.memory_ns / job.sql_ns);
    return 0;
}
