/* shard/shard.c: the set of shards: init, the start checks, each shard's store and
 * writer, and the routing of commands (shard.h). Global transactions are in
 * shard_global.c, recovery in shard_recover.c. */
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/core.h"
#include "shard/shard_internal.h"

/* ---- init ---- */

/* Creates the schema on one shard through a writer's open (the same migrations). */
static pc_status init_schema(const char *url, uint32_t index, char *detail, size_t detail_bytes) {
    store_t *store;
    store_options_t options = {.create = true};
    pc_status status = store_open(&store, url, &options);
    if (status != PC_OK) {
        snprintf(detail, detail_bytes, "shard %u: cannot create paycore's schema (%s): see the line above",
                 index, pc_status_code(status));
        return status;
    }
    store_close(store);
    return PC_OK;
}

pc_status shard_init(const char *const *urls, uint32_t count, char *detail, size_t detail_bytes) {
    if (count == 0 || count > SHARD_COUNT_MAX) {
        snprintf(detail, detail_bytes, "--shards needs 1 to %d URLs", SHARD_COUNT_MAX);
        return PC_INVALID_ARGUMENT;
    }
    store_shard_map_t map = {.count = count};
    store_link_t *links[SHARD_COUNT_MAX] = {0};
    pc_status status = PC_OK;
    for (uint32_t i = 0; status == PC_OK && i < count; i++) {
        status = init_schema(urls[i], i, detail, detail_bytes);
        if (status == PC_OK) status = store_link_open(&links[i], urls[i], detail, detail_bytes);
        if (status == PC_OK) status = store_link_instance_id(links[i], map.instance_ids[i], sizeof map.instance_ids[i]);
        if (status != PC_OK && links[i] != NULL) {
            snprintf(detail, detail_bytes, "shard %u (%s): %s", i, store_link_url(links[i]), store_link_error(links[i]));
        }
    }
    for (uint32_t i = 0; status == PC_OK && i < count; i++) {
        map.self_index = i;
        status = store_link_map_write(links[i], &map);
        if (status != PC_OK) {
            snprintf(detail, detail_bytes, "shard %u (%s): %s; give paycore init --shards empty databases",
                     i, store_link_url(links[i]), store_link_error(links[i]));
        }
    }
    for (uint32_t i = 0; i < count; i++) store_link_close(links[i]);
    return status;
}

/* ---- the start checks ---- */

/* No account on a shard other than the home shard that placement puts on the home
 * shard (the payments' chart: store_shard_home_placed): reads would look for it on
 * shard 0. Such an account predates that placement; moving accounts is not built. */
static pc_status check_home_placed(shard_set_t *set, uint32_t i, char *detail, size_t detail_bytes) {
    char account_id[PC_ID_SIZE];
    pc_status status = store_link_home_misplaced(set->links[i], account_id, sizeof account_id);
    if (status == PC_NOT_FOUND) return PC_OK;
    if (status != PC_OK) {
        snprintf(detail, detail_bytes, "shard %u (%s): %s", i, store_link_url(set->links[i]),
                 store_link_error(set->links[i]));
        return status;
    }
    snprintf(detail, detail_bytes, "shard %u (%s) holds account '%s', which this paycore places on the home"
             " shard (payments' accounts: docs/scaleout.md §6); move it to shard 0 or serve with the paycore"
             " that created it", i, store_link_url(set->links[i]), account_id);
    return PC_STORE_SHARD_MAP_MISMATCH;
}

/* Reachable, paycore's, two-phase commit on, and the map that init wrote for this
 * position in this list. */
static pc_status check_shard(shard_set_t *set, uint32_t i, char *detail, size_t detail_bytes) {
    char reason[400];
    pc_status status = store_link_open(&set->links[i], set->urls[i], reason, sizeof reason);
    if (status != PC_OK) {
        snprintf(detail, detail_bytes, "shard %u: %s", i, reason);
        return status;
    }
    const char *url = store_link_url(set->links[i]);
    int64_t max_prepared = 0;
    status = store_link_max_prepared(set->links[i], &max_prepared);
    if (status == PC_OK && max_prepared <= 0) {
        snprintf(detail, detail_bytes, "shard %u (%s): max_prepared_transactions is 0; set it above 0"
                 " (e.g. 64) in postgresql.conf and restart the server", i, url);
        return PC_STORE_TWO_PHASE_DISABLED;
    }
    store_shard_map_t map;
    if (status == PC_OK) status = store_link_map_read(set->links[i], &map);
    if (status != PC_OK) {
        snprintf(detail, detail_bytes, "shard %u (%s): %s", i, url, store_link_error(set->links[i]));
        return status;
    }
    if (map.count == 0) {
        snprintf(detail, detail_bytes, "shard %u (%s) has no shard map: run paycore init --shards with the"
                 " same list first", i, url);
        return PC_STORE_SHARD_MAP_MISMATCH;
    }
    if (map.count != set->count) {
        snprintf(detail, detail_bytes, "shard %u (%s) belongs to a set of %u shards, --shards names %u: give"
                 " the list paycore init --shards was given", i, url, map.count, set->count);
        return PC_STORE_SHARD_MAP_MISMATCH;
    }
    if (map.self_index != i) {
        snprintf(detail, detail_bytes, "shard %u (%s) is shard %u of its set: --shards lists the shards in"
                 " another order than paycore init --shards did", i, url, map.self_index);
        return PC_STORE_SHARD_MAP_MISMATCH;
    }
    return i == 0 ? PC_OK : check_home_placed(set, i, detail, detail_bytes);
}

/* Every shard's map names the same databases (instance ids) in the same order. */
static pc_status check_instances(shard_set_t *set, char *detail, size_t detail_bytes) {
    store_shard_map_t first;
    pc_status status = store_link_map_read(set->links[0], &first);
    for (uint32_t i = 0; status == PC_OK && i < set->count; i++) {
        char instance[24];
        status = store_link_instance_id(set->links[i], instance, sizeof instance);
        if (status == PC_OK && strcmp(instance, first.instance_ids[i]) != 0) {
            snprintf(detail, detail_bytes, "shard %u (%s) is not the database the shard map names at"
                     " position %u (instance %s, the map says %s): give the list paycore init --shards was"
                     " given", i, store_link_url(set->links[i]), i, instance, first.instance_ids[i]);
            return PC_STORE_SHARD_MAP_MISMATCH;
        }
    }
    return status;
}

/* ---- the fault hook ---- */

static void fault_parse(shard_set_t *set) {
    static const char *const names[] = {"", "after_intent", "after_prepare_one", "after_prepare_all",
                                        "after_decision", "after_commit_one"};
    const char *step = getenv("PAYCORE_2PC_FAULT");
    for (uint32_t i = 1; step != NULL && i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(step, names[i]) == 0) set->fault_step = (shard_step)i;
    }
    const char *action = getenv("PAYCORE_2PC_FAULT_ACTION");
    if (action != NULL && strncmp(action, "pause:", 6) == 0) {
        snprintf(set->fault_pause_path, sizeof set->fault_pause_path, "%s", action + 6);
    }
}

void shard_fault_at(shard_set_t *set, shard_step step) {
    if (set->fault_step == SHARD_STEP_NONE || set->fault_step != step) return;
    if (set->fault_pause_path[0] == '\0') {
        fprintf(stderr, "{\"level\":\"notice\",\"msg\":\"2pc fault: killed at step %d\"}\n", (int)step);
        raise(SIGKILL);
    }
    FILE *file = fopen(set->fault_pause_path, "w");
    if (file != NULL) fclose(file);
    struct stat st;
    struct timespec pause = {0, 20 * 1000000L};
    while (stat(set->fault_pause_path, &st) == 0) nanosleep(&pause, NULL);
}

/* ---- open and close ---- */

static pc_status route_cmd(void *ctx, writer_cmd_t *cmd) { return shard_submit(ctx, cmd); }

/* Each shard's store: its writer's lock is taken here, before recovery, so that no
 * other node can be running global transactions on the set meanwhile. */
static pc_status stores_open(shard_set_t *set, const shard_options_t *options, char *detail, size_t detail_bytes) {
    for (uint32_t i = 0; i < set->count; i++) { /* in order: whoever holds shard 0's lock gets the set */
        store_options_t store_options = {.shard_count = set->count, .shard_index = i, .standby = options->standby,
                                         .standby_continue = options->standby_continue,
                                         .standby_ctx = options->standby_ctx};
        pc_status status = store_open(&set->stores[i], set->urls[i], &store_options);
        if (status != PC_OK) {
            snprintf(detail, detail_bytes, "shard %u (%s): cannot open it as its writer (%s): see the line above",
                     i, store_link_url(set->links[i]), pc_status_code(status));
            return status;
        }
    }
    return PC_OK;
}

static pc_status writers_start(shard_set_t *set, const shard_options_t *options, char *detail,
                               size_t detail_bytes) {
    pc_status status = store_shard_route_open(&set->read_store, set->stores, set->count);
    uint8_t cursor_key[STORE_CURSOR_KEY_BYTES];
    if (status == PC_OK && store_link_cursor_key(set->links[0], cursor_key) != PC_OK) {
        snprintf(detail, detail_bytes, "shard 0 (%s): cannot read or make the list cursor key: %s",
                 store_link_url(set->links[0]), store_link_error(set->links[0]));
        return PC_STORE_READ_FAILED;
    }
    if (status == PC_OK) store_shard_route_cursor_key(set->read_store, cursor_key);
    sodium_memzero(cursor_key, sizeof cursor_key);
    writer_batch_hook_t home_hook = {0};
    if (status == PC_OK && options->home_hook != NULL) {
        status = options->home_hook(options->home_hook_ctx, set->read_store, &home_hook);
    }
    if (status != PC_OK) {
        snprintf(detail, detail_bytes, "cannot prepare the home shard's outbox (%s)", pc_status_code(status));
        return status;
    }
    for (uint32_t i = 0; i < set->count; i++) {
        char key_path[4096];
        if (i == 0) snprintf(key_path, sizeof key_path, "%s", options->key_path);
        else snprintf(key_path, sizeof key_path, "%s.shard%u", options->key_path, i);
        writer_config_t config = options->writer_config;
        config.batch_hook = i == 0 ? home_hook : (writer_batch_hook_t){0}; /* the outbox is the home shard's */
        if (i > 0 && options->shard_hook != NULL) {
            status = options->shard_hook(options->home_hook_ctx, i, &config.batch_hook);
        }
        if (status != PC_OK) {
            snprintf(detail, detail_bytes, "shard %u: cannot prepare its outbox (%s)", i, pc_status_code(status));
            return status;
        }
        /* cross-shard pending legs expire together, by the coordinator (shard_expiry.c) */
        config.expiry_hold = (writer_expiry_hold_t){STORE_CLEARING_PREFIX, shard_expiry_held, set};
        status = writer_start(&set->writers[i], set->stores[i], key_path, &config);
        if (status != PC_OK) {
            snprintf(detail, detail_bytes, "shard %u (%s): cannot start its writer (%s): see the line above",
                     i, store_link_url(set->links[i]), pc_status_code(status));
            return status;
        }
    }
    writer_set_router(set->writers[0], route_cmd, set);
    return PC_OK;
}

pc_status shard_open(shard_set_t **out, const shard_options_t *options, char *detail, size_t detail_bytes) {
    if (detail_bytes > 0) detail[0] = '\0'; /* a step that fails without saying why is named below */
    if (options->count == 0 || options->count > SHARD_COUNT_MAX) {
        snprintf(detail, detail_bytes, "--shards needs 1 to %d URLs", SHARD_COUNT_MAX);
        return PC_INVALID_ARGUMENT;
    }
    shard_set_t *set = calloc(1, sizeof *set);
    if (set == NULL) {
        snprintf(detail, detail_bytes, "cannot open the set of shards: out of memory");
        return PC_NO_MEMORY;
    }
    set->count = options->count;
    set->legs_marked = options->shard_hook != NULL;
    pthread_mutex_init(&set->global_mutex, NULL);
    pthread_mutex_init(&set->recovery_mutex, NULL);
    pthread_cond_init(&set->recovery_wake, NULL);
    fault_parse(set);
    pc_status status = PC_OK;
    for (uint32_t i = 0; status == PC_OK && i < set->count; i++) {
        set->urls[i] = pc_strdup(options->urls[i]);
        status = set->urls[i] != NULL ? check_shard(set, i, detail, detail_bytes) : PC_NO_MEMORY;
    }
    if (status == PC_OK) status = check_instances(set, detail, detail_bytes);
    if (status == PC_OK) status = stores_open(set, options, detail, detail_bytes);
    if (status == PC_OK && options->advertise != NULL) status = shard_advertise(set, options->advertise, detail,
                                                                                detail_bytes);
    if (status == PC_OK) {
        pthread_mutex_lock(&set->global_mutex);
        status = shard_recover_locked(set); /* before any writer loads: no prepared leg left */
        pthread_mutex_unlock(&set->global_mutex);
        if (status != PC_OK) snprintf(detail, detail_bytes, "recovery of global transactions failed (%s)",
                                      pc_status_code(status));
    }
    if (status == PC_OK) status = shard_expiry_open(set);
    if (status == PC_OK) status = writers_start(set, options, detail, detail_bytes);
    if (status == PC_OK) status = shard_coord_start(set);
    if (status == PC_OK) status = shard_recovery_start(set);
    if (status != PC_OK) {
        if (detail_bytes > 0 && detail[0] == '\0') {
            snprintf(detail, detail_bytes, "cannot open the set of shards: %s (%s)", pc_status_message(status),
                     pc_status_code(status));
        }
        shard_close(set);
        return status;
    }
    *out = set;
    return PC_OK;
}

void shard_drain(shard_set_t *set) {
    if (set == NULL) return;
    shard_recovery_stop(set);
    shard_coord_stop(set); /* after the commands it holds ran: the writers still run */
    for (uint32_t i = 0; i < set->count; i++) writer_drain(set->writers[i]);
}

void shard_close(shard_set_t *set) {
    if (set == NULL) return;
    shard_drain(set);
    for (uint32_t i = 0; i < set->count; i++) writer_free(set->writers[i]);
    shard_coord_free(set);
    store_close(set->read_store);
    for (uint32_t i = 0; i < set->count; i++) {
        store_close(set->stores[i]);
        store_link_close(set->links[i]);
        free(set->urls[i]);
    }
    shard_expiry_close(set);
    pthread_cond_destroy(&set->recovery_wake);
    pthread_mutex_destroy(&set->recovery_mutex);
    pthread_mutex_destroy(&set->global_mutex);
    free(set);
}

uint32_t shard_count(const shard_set_t *set) { return set->count; }
writer_t *shard_writer(shard_set_t *set, uint32_t index) { return set->writers[index]; }
store_t *shard_read_store(shard_set_t *set) { return set->read_store; }
store_t *shard_store(shard_set_t *set, uint32_t index) { return index < set->count ? set->stores[index] : NULL; }

/* ---- routing ---- */

static bool pending_in_cmd(const writer_cmd_t *cmd, uint32_t i) {
    for (uint32_t e = 0; e < i; e++) {
        if (strcmp(cmd->transfers[e].id, cmd->transfers[i].pending_id) == 0) return true;
    }
    return false;
}

/* The one shard every event of 'cmd' lives on; false when they span shards or an
 * event needs a lookup first (a post or void naming no accounts). */
static bool cmd_single_shard(const shard_set_t *set, const writer_cmd_t *cmd, uint32_t *shard) {
    bool first = true;
    for (uint32_t i = 0; i < cmd->event_count; i++) {
        uint32_t a, b;
        if (cmd->kind == WRITER_CMD_CREATE_ACCOUNTS) {
            a = b = store_shard_of(cmd->accounts[i].id, set->count);
        } else {
            const ledger_transfer_t *t = &cmd->transfers[i];
            if (t->debit_account_id[0] == '\0' || t->credit_account_id[0] == '\0') {
                /* a post or void of a pending transfer earlier in this command (all of
                 * whose events so far are on one shard): that shard */
                if (first || !pending_in_cmd(cmd, i)) return false;
                continue;
            }
            a = store_shard_of(t->debit_account_id, set->count);
            b = store_shard_of(t->credit_account_id, set->count);
        }
        if (a != b || (!first && a != *shard)) return false;
        *shard = a;
        first = false;
    }
    return true;
}

/* Clearing accounts are paycore's: a client may not create or name one. */
static bool cmd_names_reserved(const writer_cmd_t *cmd) {
    for (uint32_t i = 0; i < cmd->event_count; i++) {
        if (cmd->kind == WRITER_CMD_CREATE_ACCOUNTS && store_id_reserved(cmd->accounts[i].id)) return true;
        if (cmd->kind != WRITER_CMD_CREATE_TRANSFERS) continue;
        const ledger_transfer_t *t = &cmd->transfers[i];
        if (store_id_reserved(t->debit_account_id) || store_id_reserved(t->credit_account_id)) return true;
    }
    return false;
}

/* Grants of accounts that live off the home shard: each goes to its account's shard. */
static bool cmd_grants_elsewhere(const shard_set_t *set, const writer_cmd_t *cmd) {
    for (uint32_t i = 0; i < cmd->grant_count; i++) {
        if (store_shard_of(cmd->grant_account_ids[i], set->count) != 0) return true;
    }
    return false;
}

pc_status shard_submit(shard_set_t *set, writer_cmd_t *cmd) {
    if (cmd_grants_elsewhere(set, cmd)) return shard_coord_submit(set, cmd);
    if (cmd->kind == WRITER_CMD_EXEC) return writer_enqueue(set->writers[0], cmd);
    if (cmd_names_reserved(cmd)) return PC_ID_RESERVED;
    uint32_t shard = 0;
    /* The command's own rows (an idempotent reply) belong on the home shard. */
    if (cmd_single_shard(set, cmd, &shard) && (shard == 0 || cmd->in_transaction == NULL)) {
        return writer_enqueue(set->writers[shard], cmd);
    }
    pc_status status;
    if (shard_split(set, cmd, &status)) return status;
    return shard_coord_submit(set, cmd);
}

/* ---- figures ---- */

void shard_in_doubt(shard_set_t *set, uint64_t *count, uint64_t *oldest_age_s) {
    uint64_t now_ns = pc_wall_ns();
    uint64_t unresolved = atomic_load(&set->unresolved);
    uint64_t oldest_ns = unresolved > 0 ? atomic_load(&set->unresolved_oldest_ns) : 0;
    uint64_t inflight_ns = atomic_load(&set->inflight_since_ns);
    if (inflight_ns != 0) {
        unresolved++;
        if (oldest_ns == 0 || inflight_ns < oldest_ns) oldest_ns = inflight_ns;
    }
    *count = unresolved;
    *oldest_age_s = oldest_ns != 0 && now_ns > oldest_ns ? (now_ns - oldest_ns) / 1000000000u : 0;
}

/* Prometheus text: the two in-doubt gauges (alerted on) and the counters. */
char *shard_metrics_append(shard_set_t *set, char *text, size_t *bytes) {
    if (text == NULL) return NULL;
    uint64_t count = 0, age_s = 0;
    shard_stats_t stats = {0};
    if (set != NULL) {
        shard_in_doubt(set, &count, &age_s);
        shard_stats(set, &stats);
    }
    char more[1600];
    int n = snprintf(more, sizeof more,
        "# HELP paycore_2pc_in_doubt Global transactions (across shards) prepared or logged but not done.\n"
        "# TYPE paycore_2pc_in_doubt gauge\n"
        "paycore_2pc_in_doubt %llu\n"
        "# HELP paycore_2pc_in_doubt_oldest_age_seconds Age of the oldest in-doubt global transaction (0: none).\n"
        "# TYPE paycore_2pc_in_doubt_oldest_age_seconds gauge\n"
        "paycore_2pc_in_doubt_oldest_age_seconds %llu\n"
        "# HELP paycore_2pc_global_total Global transactions ended by this node's coordinator, by outcome.\n"
        "# TYPE paycore_2pc_global_total counter\n"
        "paycore_2pc_global_total{outcome=\"commit\"} %llu\n"
        "paycore_2pc_global_total{outcome=\"abort\"} %llu\n"
        "# HELP paycore_2pc_recovered_total Global transactions ended by recovery, by outcome.\n"
        "# TYPE paycore_2pc_recovered_total counter\n"
        "paycore_2pc_recovered_total{outcome=\"commit\"} %llu\n"
        "paycore_2pc_recovered_total{outcome=\"abort\"} %llu\n"
        "paycore_2pc_recovered_total{outcome=\"orphan\"} %llu\n",
        (unsigned long long)count, (unsigned long long)age_s, (unsigned long long)stats.global_committed,
        (unsigned long long)stats.global_aborted, (unsigned long long)stats.recovered_committed,
        (unsigned long long)stats.recovered_aborted, (unsigned long long)stats.orphans_rolled_back);
    char *grown = realloc(text, *bytes + (size_t)n + 1);
    if (grown == NULL) {
        free(text);
        return NULL;
    }
    memcpy(grown + *bytes, more, (size_t)n + 1);
    *bytes += (size_t)n;
    return grown;
}

void shard_stats(shard_set_t *set, shard_stats_t *out) {
    out->global_committed = atomic_load(&set->global_committed);
    out->global_aborted = atomic_load(&set->global_aborted);
    out->recovered_committed = atomic_load(&set->recovered_committed);
    out->recovered_aborted = atomic_load(&set->recovered_aborted);
    out->orphans_rolled_back = atomic_load(&set->orphans);
}
