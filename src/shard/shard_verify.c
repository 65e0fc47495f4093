/* shard/shard_verify.c: `paycore verify --shards` (shard.h, docs/scaleout.md §6):
 *
 *   1. the list against the shard map (as serve checks it);
 *   2. one snapshot of every shard, opened while the set's read fence is held shared
 *      (shard_fence.c), so that the snapshots agree on every global transaction;
 *   3. each shard verified as `paycore verify --store` verifies one store (its chain,
 *      signatures, rows, balances replayed, its own books per currency);
 *   4. across shards: each pair's clearing accounts mirror each other (what shard s
 *      owes shard p is what p is owed by s, posted and pending), and the set's
 *      clearing accounts net to zero per currency, so that, each shard balancing on
 *      its own, the set's debits equal its credits per currency;
 *   5. global transactions left open: a coordinator-log intent without done, or a
 *      prepared 'pc_*' transaction on a shard, open at the start and still open
 *      SHARD_VERIFY_IN_DOUBT_WAIT_MS later (a live coordinator ends its own in
 *      milliseconds), are in doubt.
 * Single-threaded use (the CLI): journal_verify_rows opens a store by location and
 * takes no context, so the snapshots opened in step 2 wait for it in a table here. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "paycore/money.h"
#include "shard/shard_internal.h"

/* ---- the snapshots opened under the fence ---- */

static pthread_mutex_t opened_mutex = PTHREAD_MUTEX_INITIALIZER;
static journal_rows_t *opened[SHARD_COUNT_MAX];

/* journal_verify_rows's open: "shard<i>" hands over the snapshot opened for shard i. */
static pc_status opened_take(const char *location, journal_rows_t **out, char *detail, size_t detail_bytes) {
    unsigned index = 0;
    if (sscanf(location, "shard%u", &index) != 1 || index >= SHARD_COUNT_MAX || opened[index] == NULL) {
        snprintf(detail, detail_bytes, "no snapshot of %s", location);
        return PC_STORE_OPEN_FAILED;
    }
    *out = opened[index];
    opened[index] = NULL;
    return PC_OK;
}

static void opened_close_all(void) {
    for (uint32_t i = 0; i < SHARD_COUNT_MAX; i++) {
        if (opened[i] != NULL) opened[i]->ops->close(opened[i]);
        opened[i] = NULL;
    }
}

/* ---- what the checks need ---- */

typedef struct {
    char id[PC_ID_SIZE];
    uint32_t self, peer;
    char currency[4];
    ledger_balances_t balances;
} clearing_t;

/* Open global transactions: gtids, each with its decision and the shards it is
 * prepared on. */
typedef struct {
    char gtid[STORE_GTID_SIZE];
    int decision;               /* from the log: 0 none (or no intent), 1 commit, -1 abort */
    bool logged;
    uint32_t prepared_mask;     /* bit s: prepared on shard s */
} open_gt_t;

#define VERIFY_OPEN_MAX 64 /* open global transactions named; more are counted */

typedef struct {
    open_gt_t rows[VERIFY_OPEN_MAX];
    uint32_t count;
    uint64_t total;
} open_set_t;

typedef struct {
    shard_verify_t *out;
    store_link_t *links[SHARD_COUNT_MAX];
    clearing_t *clearing;
    uint32_t clearing_count, clearing_capacity;
    uint32_t current_shard;
    bool no_memory;
    char misplaced[PC_ID_SIZE + 32]; /* a clearing account on a shard its id does not name */
} verify_run_t;

static void set_error(shard_verify_t *out, const char *format, ...) __attribute__((format(printf, 2, 3)));
static void set_error(shard_verify_t *out, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(out->detail, sizeof out->detail, format, args);
    va_end(args);
}

/* ---- 1. the list against the map ---- */

static pc_status links_open(verify_run_t *run, const char *const *urls, uint32_t count) {
    for (uint32_t i = 0; i < count; i++) {
        char reason[400];
        pc_status status = store_link_open(&run->links[i], urls[i], reason, sizeof reason);
        if (status != PC_OK) {
            set_error(run->out, "shard %u: %s", i, reason);
            return status;
        }
    }
    store_shard_map_t first;
    for (uint32_t i = 0; i < count; i++) {
        store_shard_map_t map;
        char instance[24];
        const char *url = store_link_url(run->links[i]);
        pc_status status = store_link_map_read(run->links[i], &map);
        if (status == PC_OK) status = store_link_instance_id(run->links[i], instance, sizeof instance);
        if (status != PC_OK) {
            set_error(run->out, "shard %u (%s): %s", i, url, store_link_error(run->links[i]));
            return status;
        }
        if (i == 0) first = map;
        const char *wrong = map.count == 0 ? "has no shard map (not a shard of a set)"
                          : map.count != count ? "belongs to a set of another size"
                          : map.self_index != i ? "is another position of its set"
                          : strcmp(instance, first.instance_ids[i]) != 0 ? "is not the database shard 0's map names here"
                          : memcmp(map.instance_ids, first.instance_ids, sizeof map.instance_ids) != 0
                                ? "has another shard map than shard 0" : NULL;
        if (wrong != NULL) {
            set_error(run->out, "shard %u (%s) %s (its map: shard %u of %u): give --shards the list paycore init"
                      " --shards was given, in its order", i, url, wrong, map.self_index, map.count);
            return PC_STORE_SHARD_MAP_MISMATCH;
        }
    }
    return PC_OK;
}

/* ---- 2. the snapshots ---- */

static pc_status snapshots_open(verify_run_t *run, const char *const *urls, uint32_t count) {
    pc_status status = store_link_fence_take(run->links[0], STORE_FENCE_READ);
    if (status != PC_OK) {
        set_error(run->out, "shard 0 (%s): %s%s", store_link_url(run->links[0]), store_link_error(run->links[0]),
                  status == PC_STORE_BUSY ? " (a coordinator held the read fence: a shard may be stuck in a commit)"
                                          : "");
        return status;
    }
    for (uint32_t i = 0; status == PC_OK && i < count; i++) {
        char reason[400];
        status = store_rows_open(urls[i], &opened[i], reason, sizeof reason);
        if (status != PC_OK) set_error(run->out, "shard %u (%s): %s", i, store_link_url(run->links[i]), reason);
    }
    store_link_fence_release(run->links[0], STORE_FENCE_READ);
    return status;
}

/* ---- 3. each shard ---- */

static void balances_seen(const char *account_id, const ledger_balances_t *balances, void *ctx) {
    verify_run_t *run = ctx;
    clearing_t row = {0};
    if (!store_clearing_shard(account_id, &row.self, &row.peer)) return;
    if (row.self != run->current_shard) {
        if (run->misplaced[0] == '\0') {
            snprintf(run->misplaced, sizeof run->misplaced, "shard %u holds %s", run->current_shard, account_id);
        }
        return;
    }
    if (run->clearing_count == run->clearing_capacity) {
        uint32_t capacity = run->clearing_capacity ? 2 * run->clearing_capacity : 64;
        clearing_t *grown = realloc(run->clearing, capacity * sizeof *grown);
        if (grown == NULL) {
            run->no_memory = true;
            return;
        }
        run->clearing = grown;
        run->clearing_capacity = capacity;
    }
    snprintf(row.id, sizeof row.id, "%s", account_id);
    const char *currency = strrchr(account_id, '.');
    snprintf(row.currency, sizeof row.currency, "%s", currency != NULL ? currency + 1 : "");
    row.balances = *balances;
    run->clearing[run->clearing_count++] = row;
}

static pc_status shard_check(verify_run_t *run, uint32_t i, const char *pubkey_path) {
    char location[24];
    snprintf(location, sizeof location, "shard%u", i);
    run->current_shard = i;
    pc_status status = journal_verify_rows(opened_take, location, pubkey_path, &run->out->shards[i], balances_seen, run);
    run->out->shard_status[i] = status;
    run->out->verified = i + 1;
    if (status == PC_OK && run->no_memory) status = PC_NO_MEMORY;
    return status;
}

/* ---- 4. across shards ---- */

static const clearing_t *clearing_find(const verify_run_t *run, uint32_t self, uint32_t peer, const char *currency) {
    for (uint32_t i = 0; i < run->clearing_count; i++) {
        const clearing_t *c = &run->clearing[i];
        if (c->self == self && c->peer == peer && strcmp(c->currency, currency) == 0) return c;
    }
    return NULL;
}

static bool balances_zero(const ledger_balances_t *b) {
    return b->debits_pending == 0 && b->debits_posted == 0 && b->credits_pending == 0 && b->credits_posted == 0;
}

/* Shard s's clearing account for p against p's for s: s credited is p debited. */
static bool mirror_check(verify_run_t *run, const clearing_t *c) {
    const clearing_t *m = clearing_find(run, c->peer, c->self, c->currency);
    ledger_balances_t none = {0};
    const ledger_balances_t *a = &c->balances, *b = m != NULL ? &m->balances : &none;
    if (m == NULL && balances_zero(a)) return true;
    if (a->credits_posted == b->debits_posted && a->debits_posted == b->credits_posted &&
        a->credits_pending == b->debits_pending && a->debits_pending == b->credits_pending) {
        return true;
    }
    char other[PC_ID_SIZE];
    store_clearing_id(c->peer, c->self, c->currency, other);
    snprintf(run->out->discrepancy, sizeof run->out->discrepancy,
             "clearing accounts disagree between shard %u and shard %u in %s: shard %u's %s has credits_posted"
             " %" PRId64 " debits_posted %" PRId64 " credits_pending %" PRId64 " debits_pending %" PRId64
             ", shard %u's %s%s has debits_posted %" PRId64 " credits_posted %" PRId64 " debits_pending %" PRId64
             " credits_pending %" PRId64 " (each should equal the other's opposite side)",
             c->self, c->peer, c->currency, c->self, c->id, a->credits_posted, a->debits_posted, a->credits_pending,
             a->debits_pending, c->peer, other, m == NULL ? " (missing)" : "", b->debits_posted, b->credits_posted,
             b->debits_pending, b->credits_pending);
    return false;
}

/* The clearing accounts of the set net to zero per currency: with every shard's own
 * books balanced, the set's debits equal its credits. */
static bool set_balanced(verify_run_t *run) {
    for (uint32_t i = 0; i < run->clearing_count; i++) {
        const char *currency = run->clearing[i].currency;
        int64_t posted = 0, pending = 0; /* debits - credits, overflow-checked */
        bool overflow = false;
        for (uint32_t k = 0; k < run->clearing_count; k++) {
            const ledger_balances_t *b = &run->clearing[k].balances;
            if (strcmp(run->clearing[k].currency, currency) != 0) continue;
            overflow |= !pc_add_i64(posted, b->debits_posted, &posted) ||
                        !pc_add_i64(posted, -b->credits_posted, &posted) ||
                        !pc_add_i64(pending, b->debits_pending, &pending) ||
                        !pc_add_i64(pending, -b->credits_pending, &pending);
        }
        if (overflow || posted != 0 || pending != 0) {
            snprintf(run->out->discrepancy, sizeof run->out->discrepancy,
                     "the set's debits != credits in %s: its clearing accounts net to %" PRId64 " posted and %" PRId64
                     " pending (debits - credits%s)", currency, posted, pending, overflow ? ", overflowed" : "");
            return false;
        }
    }
    return true;
}

static bool cross_checks(verify_run_t *run) {
    if (run->misplaced[0] != '\0') {
        snprintf(run->out->discrepancy, sizeof run->out->discrepancy, "%s, another shard's clearing account",
                 run->misplaced);
        return false;
    }
    for (uint32_t i = 0; i < run->clearing_count; i++) {
        if (run->clearing[i].peer >= run->out->count || run->clearing[i].peer == run->clearing[i].self) {
            snprintf(run->out->discrepancy, sizeof run->out->discrepancy,
                     "shard %u holds %s, a clearing account for a shard the set does not have",
                     run->clearing[i].self, run->clearing[i].id);
            return false;
        }
        if (!mirror_check(run, &run->clearing[i])) return false;
    }
    return set_balanced(run);
}

/* ---- 5. global transactions left open ---- */

static open_gt_t *open_add(open_set_t *set, const char *gtid) {
    for (uint32_t i = 0; i < set->count; i++) {
        if (strcmp(set->rows[i].gtid, gtid) == 0) return &set->rows[i];
    }
    set->total++;
    if (set->count == VERIFY_OPEN_MAX) return NULL;
    open_gt_t *row = &set->rows[set->count++];
    memset(row, 0, sizeof *row);
    snprintf(row->gtid, sizeof row->gtid, "%s", gtid);
    return row;
}

static void open_logged(const store_link_open_t *log, void *ctx) {
    open_gt_t *row = open_add(ctx, log->gtid);
    if (row == NULL) return;
    row->logged = true;
    row->decision = log->decision;
}

typedef struct {
    open_set_t *set;
    uint32_t shard;
} prepared_scan_t;

static void open_prepared(const char *gtid, uint32_t shard, uint64_t prepared_ns, void *ctx) {
    (void)prepared_ns;
    prepared_scan_t *scan = ctx;
    if (shard != scan->shard) return; /* another database of this server */
    open_gt_t *row = open_add(scan->set, gtid);
    if (row != NULL) row->prepared_mask |= 1u << shard;
}

static pc_status open_read(verify_run_t *run, open_set_t *set) {
    memset(set, 0, sizeof *set);
    pc_status status = store_link_log_open(run->links[0], open_logged, set);
    for (uint32_t s = 0; status == PC_OK && s < run->out->count; s++) {
        prepared_scan_t scan = {set, s};
        status = store_link_prepared_list(run->links[s], open_prepared, &scan);
        if (status != PC_OK) set_error(run->out, "shard %u: %s", s, store_link_error(run->links[s]));
    }
    if (status != PC_OK && run->out->detail[0] == '\0') {
        set_error(run->out, "shard 0: %s", store_link_error(run->links[0]));
    }
    return status;
}

static bool open_has(const open_set_t *set, const char *gtid) {
    for (uint32_t i = 0; i < set->count; i++) {
        if (strcmp(set->rows[i].gtid, gtid) == 0) return true;
    }
    return false;
}

/* Those of 'before' still open in 'now' (a global transaction begun meanwhile is in
 * flight, not in doubt). */
static uint32_t open_still(const open_set_t *before, const open_set_t *now, open_set_t *out) {
    memset(out, 0, sizeof *out);
    for (uint32_t i = 0; i < now->count; i++) {
        if (!open_has(before, now->rows[i].gtid)) continue;
        out->rows[out->count++] = now->rows[i];
    }
    out->total = out->count + (now->total - now->count); /* those past the named ones: counted */
    return out->count;
}

static void sleep_ms(uint32_t ms) {
    struct timespec pause = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
}

static pc_status in_doubt(verify_run_t *run, const open_set_t *before) {
    open_set_t now, still = {0};
    uint64_t deadline_ns = pc_mono_ns() + (uint64_t)SHARD_VERIFY_IN_DOUBT_WAIT_MS * 1000000u;
    for (;;) {
        pc_status status = open_read(run, &now);
        if (status != PC_OK) return status;
        if (open_still(before, &now, &still) == 0 && still.total == 0) break;
        if (pc_mono_ns() >= deadline_ns) break;
        sleep_ms(200);
    }
    run->out->in_doubt = still.total;
    size_t used = 0;
    for (uint32_t i = 0; i < still.count && used + 1 < sizeof run->out->in_doubt_detail; i++) {
        const open_gt_t *row = &still.rows[i];
        char shards[64] = "";
        for (uint32_t s = 0; s < run->out->count; s++) {
            if (row->prepared_mask & (1u << s)) {
                size_t at = strlen(shards);
                snprintf(shards + at, sizeof shards - at, "%s%u", at > 0 ? "," : "", s);
            }
        }
        int n = snprintf(run->out->in_doubt_detail + used, sizeof run->out->in_doubt_detail - used,
                         "%sgtid %s (%s, prepared on shards [%s])", i > 0 ? "; " : "", row->gtid,
                         !row->logged ? "no intent in the log: an orphan"
                         : row->decision > 0 ? "decision commit" : row->decision < 0 ? "decision abort" : "no decision",
                         shards);
        if (n < 0) break;
        used += (size_t)n;
    }
    return PC_OK;
}

/* ---- the whole ---- */

static pc_status verify_run(verify_run_t *run, const char *const *urls, const char *const *pubkeys) {
    shard_verify_t *out = run->out;
    pc_status status = links_open(run, urls, out->count);
    open_set_t before;
    if (status == PC_OK) status = open_read(run, &before);
    if (status == PC_OK) status = snapshots_open(run, urls, out->count);
    pc_status first_bad = PC_OK;
    for (uint32_t i = 0; status == PC_OK && i < out->count; i++) {
        pc_status shard_status = shard_check(run, i, pubkeys != NULL ? pubkeys[i] : NULL);
        if (shard_status == PC_JOURNAL_MISMATCH) {
            if (first_bad == PC_OK) {
                first_bad = shard_status;
                snprintf(out->discrepancy, sizeof out->discrepancy, "shard %u (%s): %s", i,
                         store_link_url(run->links[i]), out->shards[i].discrepancy);
            }
        } else if (shard_status != PC_OK) {
            set_error(out, "shard %u (%s): %s: %s", i, store_link_url(run->links[i]), pc_status_code(shard_status),
                      out->shards[i].error_detail);
            status = shard_status;
        }
    }
    if (status != PC_OK) return status;
    bool crossed = first_bad == PC_OK && cross_checks(run);
    status = in_doubt(run, &before);
    if (status != PC_OK) return status;
    if (first_bad != PC_OK) return first_bad;
    /* an unfinished commit explains a mirror that disagrees: in doubt, not damaged */
    if (out->in_doubt > 0) return PC_GLOBAL_TRANSACTION_IN_DOUBT;
    return crossed ? PC_OK : PC_JOURNAL_MISMATCH;
}

pc_status shard_verify(const char *const *urls, uint32_t count, const char *const *pubkeys, shard_verify_t *out) {
    memset(out, 0, sizeof *out);
    out->count = count;
    if (count == 0 || count > SHARD_COUNT_MAX) {
        set_error(out, "--shards needs 1 to %d URLs", SHARD_COUNT_MAX);
        return PC_INVALID_ARGUMENT;
    }
    verify_run_t run = {.out = out};
    pthread_mutex_lock(&opened_mutex);
    pc_status status = verify_run(&run, urls, pubkeys);
    opened_close_all();
    pthread_mutex_unlock(&opened_mutex);
    out->clearing_accounts = run.clearing_count;
    for (uint32_t i = 0; i < count; i++) store_link_close(run.links[i]);
    free(run.clearing);
    return status;
}

const char *shard_verify_line(const shard_verify_t *report, pc_status status, char *out, size_t out_bytes) {
    switch (status) {
    case PC_OK: {
        uint64_t batches = 0, transfers = 0, accounts = 0;
        for (uint32_t i = 0; i < report->count; i++) {
            batches += report->shards[i].batches;
            transfers += report->shards[i].transfers;
            accounts += report->shards[i].accounts;
        }
        snprintf(out, out_bytes, "verify ok shards=%u batches=%" PRIu64 " transfers=%" PRIu64 " accounts=%" PRIu64
                 " clearing_accounts=%u in_doubt=0", report->count, batches, transfers, accounts,
                 report->clearing_accounts);
        break;
    }
    case PC_JOURNAL_MISMATCH:
        snprintf(out, out_bytes, "verify failed: %s", report->discrepancy);
        break;
    case PC_GLOBAL_TRANSACTION_IN_DOUBT:
        snprintf(out, out_bytes, "verify in doubt: %" PRIu64 " global transaction%s not finished: %s%s%s; paycore"
                 " serve --shards finishes %s at start (recovery)", report->in_doubt, report->in_doubt == 1 ? "" : "s",
                 report->in_doubt_detail, report->discrepancy[0] != '\0' ? "; meanwhile " : "",
                 report->discrepancy, report->in_doubt == 1 ? "it" : "them");
        break;
    default:
        snprintf(out, out_bytes, "verify error: %s: %s", pc_status_code(status), report->detail);
        break;
    }
    return out;
}
