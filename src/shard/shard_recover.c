/* shard/shard_recover.c: ending in-doubt global transactions, at open (before any
 * writer loads, so no writer's memory holds a leg recovery then changes) and every
 * SHARD_RECOVERY_INTERVAL_MS (holding the set's global mutex: never while a global
 * transaction of this node runs). The rules (docs/scaleout.md §6):
 *
 *   - an intent with a decision: finish it on every shard it names (COMMIT or
 *     ROLLBACK PREPARED; "not prepared" means already finished), then log done;
 *   - an intent without a decision: log abort first (so that no coordinator can
 *     commit it any more), then roll back, then log done; no shard committed
 *     anything, since a commit needs the decision logged;
 *   - a prepared 'pc_*' transaction whose intent has a decision but which is still
 *     prepared (its PREPARE's answer was lost: the coordinator counted a no vote and
 *     may have logged done): finished as decided;
 *   - a prepared 'pc_*' transaction without an intent in the log: an orphan (the
 *     intent is logged before any PREPARE, so it comes from a log restored from an
 *     older backup or from another set): rolled back.
 *
 * What cannot be finished (a shard down) stays open and counts in the in-doubt gauge. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "shard/shard_internal.h"

typedef struct {
    shard_set_t *set;
    uint64_t unresolved;
    uint64_t oldest_ns;
    pc_status status;
} pass_t;

/* A link that failed is reopened on the next pass (or by the coordinator's next use). */
store_link_t *shard_link_get(shard_set_t *set, uint32_t shard) {
    if (set->links[shard] != NULL) return set->links[shard];
    char detail[400];
    if (store_link_open(&set->links[shard], set->urls[shard], detail, sizeof detail) != PC_OK) {
        set->links[shard] = NULL;
        return NULL;
    }
    return set->links[shard];
}

static void link_drop(shard_set_t *set, uint32_t shard) {
    store_link_close(set->links[shard]);
    set->links[shard] = NULL;
}

static void log_line(const char *what, const char *gtid, uint32_t shard) {
    fprintf(stderr, "{\"level\":\"notice\",\"msg\":\"2pc recovery: %s\",\"gtid\":\"%s\",\"shard\":%u}\n", what,
            gtid, shard);
}

static bool finish_legs(pass_t *pass, const store_link_open_t *row, bool commit);

/* Committing legs holds the read fence, as the coordinator does (shard_fence.c). */
static bool finish_on(pass_t *pass, const store_link_open_t *row, bool commit) {
    if (!commit) return finish_legs(pass, row, false);
    store_link_t *home = shard_link_get(pass->set, 0);
    if (home == NULL || store_link_fence_take(home, STORE_FENCE_COMMIT) != PC_OK) return false;
    store_shard_route_fence(pass->set->read_store, true);
    bool all = finish_legs(pass, row, true);
    store_shard_route_fence(pass->set->read_store, false);
    if (pass->set->links[0] != NULL) store_link_fence_release(pass->set->links[0], STORE_FENCE_COMMIT);
    return all;
}

static bool finish_legs(pass_t *pass, const store_link_open_t *row, bool commit) {
    bool all = true;
    for (uint32_t i = 0; i < row->shard_count; i++) {
        uint32_t shard = row->shards[i];
        store_link_t *link = shard < pass->set->count ? shard_link_get(pass->set, shard) : NULL;
        pc_status status = link != NULL ? store_link_prepared_finish(link, row->gtid, shard, commit)
                                        : PC_STORE_OPEN_FAILED;
        if (status == PC_OK) log_line(commit ? "committed a prepared leg" : "rolled back a prepared leg", row->gtid, shard);
        if (status != PC_OK && status != PC_NOT_FOUND) {
            all = false;
            if (link != NULL) link_drop(pass->set, shard);
        }
    }
    return all;
}

static void open_row(const store_link_open_t *row, void *ctx) {
    pass_t *pass = ctx;
    shard_set_t *set = pass->set;
    bool commit = row->decision > 0;
    bool logged = row->decision != 0;
    if (!logged && shard_link_get(set, 0) != NULL) {
        pc_status status = store_link_log_decision(set->links[0], row->gtid, false);
        int decision = 0;
        bool found = false;
        if (status == PC_EXISTS && store_link_log_find(set->links[0], row->gtid, &found, &decision) == PC_OK) {
            commit = decision > 0; /* decided meanwhile */
        }
        logged = status == PC_OK || (status == PC_EXISTS && found);
    }
    bool finished = logged && finish_on(pass, row, commit);
    if (finished && store_link_log_done(set->links[0], row->gtid) == PC_OK) {
        atomic_fetch_add(commit ? &set->recovered_committed : &set->recovered_aborted, 1);
        return;
    }
    pass->unresolved++;
    if (pass->oldest_ns == 0 || row->intent_ns < pass->oldest_ns) pass->oldest_ns = row->intent_ns;
}

typedef struct {
    pass_t *pass;
    uint32_t shard;
} orphan_scan_t;

static void prepared_row(const char *gtid, uint32_t shard, uint64_t prepared_ns, void *ctx) {
    orphan_scan_t *scan = ctx;
    shard_set_t *set = scan->pass->set;
    bool found = false;
    int decision = 0;
    if (shard_link_get(set, 0) == NULL || store_link_log_find(set->links[0], gtid, &found, &decision) != PC_OK) {
        scan->pass->unresolved++; /* cannot tell now */
        if (scan->pass->oldest_ns == 0 || prepared_ns < scan->pass->oldest_ns) scan->pass->oldest_ns = prepared_ns;
        return;
    }
    if (found && decision == 0) return; /* open and undecided: open_row logs abort first */
    if (shard != scan->shard) return; /* another database's name on this server (pg_prepared_xacts filters) */
    if (found) {
        /* Decided, yet still prepared here: its PREPARE completed at the server but the
         * answer was lost (the shard restarted), so the coordinator counted a no vote
         * and may have logged done. The logged decision ends it. */
        store_link_open_t row = {.decision = decision, .shard_count = 1, .shards = {shard}};
        snprintf(row.gtid, sizeof row.gtid, "%s", gtid);
        if (!finish_on(scan->pass, &row, decision > 0)) scan->pass->unresolved++;
        return;
    }
    if (store_link_prepared_finish(set->links[scan->shard], gtid, shard, false) == PC_OK) {
        log_line("rolled back an orphan prepared transaction (no intent in the coordinator log)", gtid, scan->shard);
        atomic_fetch_add(&set->orphans, 1);
    }
}

pc_status shard_recover_locked(shard_set_t *set) {
    pass_t pass = {.set = set, .status = PC_OK};
    store_link_t *home = shard_link_get(set, 0);
    if (home == NULL || store_link_log_open(home, open_row, &pass) != PC_OK) {
        if (home != NULL) link_drop(set, 0);
        pass.status = PC_STORE_READ_FAILED;
    }
    for (uint32_t s = 0; pass.status == PC_OK && s < set->count; s++) {
        orphan_scan_t scan = {&pass, s};
        store_link_t *link = shard_link_get(set, s);
        if (link == NULL || store_link_prepared_list(link, prepared_row, &scan) != PC_OK) {
            if (link != NULL) link_drop(set, s);
            pass.unresolved++;
        }
    }
    atomic_store(&set->unresolved_oldest_ns, pass.oldest_ns);
    atomic_store(&set->unresolved, pass.unresolved);
    return pass.status;
}

pc_status shard_recover(shard_set_t *set) {
    pthread_mutex_lock(&set->global_mutex);
    pc_status status = shard_recover_locked(set);
    pthread_mutex_unlock(&set->global_mutex);
    return status;
}

static void *recovery_main(void *arg) {
    pthread_setname_np(pthread_self(), "paycore-shrecov"); /* per-thread CPU in top, perf */
    shard_set_t *set = arg;
    pthread_mutex_lock(&set->recovery_mutex);
    while (!set->stopping) {
        uint64_t at_ns = pc_wall_ns() + (uint64_t)SHARD_RECOVERY_INTERVAL_MS * 1000000u;
        struct timespec until = {(time_t)(at_ns / 1000000000u), (long)(at_ns % 1000000000u)};
        pthread_cond_timedwait(&set->recovery_wake, &set->recovery_mutex, &until);
        if (set->stopping) break;
        pthread_mutex_unlock(&set->recovery_mutex);
        pc_status status = shard_recover(set);
        if (status != PC_OK) {
            fprintf(stderr, "{\"level\":\"warn\",\"msg\":\"2pc recovery pass failed; retrying\",\"code\":\"%s\"}\n",
                    pc_status_code(status));
        }
        pthread_mutex_lock(&set->recovery_mutex);
    }
    pthread_mutex_unlock(&set->recovery_mutex);
    return NULL;
}

pc_status shard_recovery_start(shard_set_t *set) {
    if (pthread_create(&set->recovery_thread, NULL, recovery_main, set) != 0) return PC_INTERNAL;
    set->recovery_started = true;
    return PC_OK;
}

void shard_recovery_stop(shard_set_t *set) {
    if (!set->recovery_started) return;
    pthread_mutex_lock(&set->recovery_mutex);
    set->stopping = true;
    pthread_cond_signal(&set->recovery_wake);
    pthread_mutex_unlock(&set->recovery_mutex);
    pthread_join(set->recovery_thread, NULL);
    set->recovery_started = false;
}
