/* shard/shard_expiry.c: a pending transfer across shards expires in one global
 * transaction (docs/scaleout.md §6). Its two legs (A -> clearing on A's shard,
 * clearing -> B on B's) are held by their writers' ledgers (ledger_expiry_hold on the
 * clearing prefix): a writer whose leg is due tells the set (shard_expiry_held), and
 * the coordinator thread, between commands, reads both legs and, once both are due,
 * runs one command voiding them with the expiry flag: both legs expire together or
 * neither does, and a post racing the timeout is refused as a whole (its legs then say
 * pending_transfer_expired).
 *
 *   - a leg resolved meanwhile (posted, voided, expired): nothing to do;
 *   - a leg not due yet by its own clock (each leg has its own timestamp): tried again
 *     at the later deadline;
 *   - a shard that cannot be read or a round that aborts: tried again after
 *     SHARD_EXPIRY_RETRY_MS;
 *   - after a restart each writer's load holds its legs again and tells the set when
 *     they are due, so nothing is lost with the process. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "shard/shard_internal.h"

typedef struct {
    char pending_id[PC_ID_SIZE];
    uint64_t at_ns;                 /* try at or after */
} expiry_due_t;

struct shard_expiry {
    pthread_mutex_t mutex;
    expiry_due_t *due;
    uint32_t count, capacity;
    uint64_t rounds;                /* names each round's expiry ids */
};

pc_status shard_expiry_open(shard_set_t *set) {
    shard_expiry_t *expiry = calloc(1, sizeof *expiry);
    if (expiry == NULL) return PC_NO_MEMORY;
    pthread_mutex_init(&expiry->mutex, NULL);
    set->expiry = expiry;
    return PC_OK;
}

void shard_expiry_close(shard_set_t *set) {
    if (set->expiry == NULL) return;
    pthread_mutex_destroy(&set->expiry->mutex);
    free(set->expiry->due);
    free(set->expiry);
    set->expiry = NULL;
}

/* Under the mutex. False on no memory (the leg is then expired at the next load). */
static bool due_add(shard_expiry_t *expiry, const char *pending_id, uint64_t at_ns) {
    for (uint32_t i = 0; i < expiry->count; i++) {
        if (strcmp(expiry->due[i].pending_id, pending_id) != 0) continue;
        if (at_ns < expiry->due[i].at_ns) expiry->due[i].at_ns = at_ns;
        return true;
    }
    if (expiry->count == expiry->capacity) {
        uint32_t capacity = expiry->capacity ? 2 * expiry->capacity : 64;
        expiry_due_t *grown = realloc(expiry->due, capacity * sizeof *grown);
        if (grown == NULL) return false;
        expiry->due = grown;
        expiry->capacity = capacity;
    }
    expiry_due_t *row = &expiry->due[expiry->count++];
    snprintf(row->pending_id, sizeof row->pending_id, "%s", pending_id);
    row->at_ns = at_ns;
    return true;
}

void shard_expiry_held(void *ctx, const char *pending_id) {
    shard_set_t *set = ctx;
    pthread_mutex_lock(&set->expiry->mutex);
    bool added = due_add(set->expiry, pending_id, 0);
    pthread_mutex_unlock(&set->expiry->mutex);
    if (!added) {
        fprintf(stderr, "{\"level\":\"warn\",\"msg\":\"shard expiry: no memory to note a due leg; it expires after"
                " the next restart\",\"pending_id\":\"%s\"}\n", pending_id);
    }
    shard_coord_wake(set);
}

uint64_t shard_expiry_next_ns(shard_set_t *set) {
    uint64_t next_ns = 0;
    pthread_mutex_lock(&set->expiry->mutex);
    for (uint32_t i = 0; i < set->expiry->count; i++) {
        uint64_t at_ns = set->expiry->due[i].at_ns > 0 ? set->expiry->due[i].at_ns : 1;
        if (next_ns == 0 || at_ns < next_ns) next_ns = at_ns;
    }
    pthread_mutex_unlock(&set->expiry->mutex);
    return next_ns;
}

/* ---- one pass (coordinator thread) ---- */

typedef enum { LEGS_GONE, LEGS_WAIT, LEGS_RETRY, LEGS_READY } legs_state;

/* Both legs of 'pending_id', open: the event that voids them (A -> B as the client
 * named it), and the later leg's deadline. */
static legs_state legs_read(shard_set_t *set, const char *pending_id, ledger_transfer_t *event, uint64_t *due_ns) {
    bool debit_seen = false, credit_seen = false, closed = false, unreadable = false;
    *due_ns = 0;
    for (uint32_t s = 0; s < set->count; s++) {
        store_transfer_t row;
        pc_status status = store_read_transfer(shard_coord_reader(set, s), pending_id, &row);
        if (status == PC_NOT_FOUND) continue;
        if (status != PC_OK) {
            unreadable = true;
            continue;
        }
        const ledger_transfer_t *t = &row.transfer;
        uint32_t self, peer;
        if (store_clearing_shard(t->credit_account_id, &self, &peer)) { /* the debit leg: A -> clearing */
            debit_seen = true;
            snprintf(event->debit_account_id, sizeof event->debit_account_id, "%s", t->debit_account_id);
            snprintf(event->currency, sizeof event->currency, "%s", t->currency);
        } else if (store_clearing_shard(t->debit_account_id, &self, &peer)) { /* clearing -> B */
            credit_seen = true;
            snprintf(event->credit_account_id, sizeof event->credit_account_id, "%s", t->credit_account_id);
        }
        closed |= row.pending_state != LEDGER_PENDING_OPEN;
        uint64_t leg_due_ns = t->timestamp_ns + (uint64_t)t->timeout_s * 1000000000u;
        if (leg_due_ns > *due_ns) *due_ns = leg_due_ns;
        store_transfer_free(&row);
    }
    if (closed) return LEGS_GONE; /* posted, voided or expired meanwhile: both legs together */
    if (unreadable || (debit_seen != credit_seen)) return LEGS_RETRY;
    if (!debit_seen) return LEGS_GONE;
    return pc_wall_ns() >= *due_ns ? LEGS_READY : LEGS_WAIT;
}

typedef struct {
    expiry_due_t *rows;              /* taken from the list */
    uint32_t count;
    ledger_transfer_t *events;
    ledger_transfer_result_t *results;
    uint32_t *row_of;                /* event k expires rows[row_of[k]] */
    uint32_t event_count;
} pass_t;

/* Back into the list: what must be tried again, at 'at_ns'. */
static void pass_keep(shard_set_t *set, const char *pending_id, uint64_t at_ns) {
    pthread_mutex_lock(&set->expiry->mutex);
    (void)due_add(set->expiry, pending_id, at_ns);
    pthread_mutex_unlock(&set->expiry->mutex);
}

/* The due rows whose legs are ready become events; the rest go back or go away. */
static void pass_plan(shard_set_t *set, pass_t *pass, uint64_t round) {
    uint64_t now_ns = pc_wall_ns();
    for (uint32_t i = 0; i < pass->count; i++) {
        expiry_due_t *row = &pass->rows[i];
        if (row->at_ns > now_ns) {
            pass_keep(set, row->pending_id, row->at_ns);
            continue;
        }
        ledger_transfer_t event = {.flags = LEDGER_TRANSFER_VOID_PENDING | LEDGER_TRANSFER_EXPIRY};
        uint64_t due_ns = 0;
        legs_state state = legs_read(set, row->pending_id, &event, &due_ns);
        if (state == LEGS_WAIT) pass_keep(set, row->pending_id, due_ns);
        if (state == LEGS_RETRY) pass_keep(set, row->pending_id, now_ns + (uint64_t)SHARD_EXPIRY_RETRY_MS * 1000000u);
        if (state != LEGS_READY) continue;
        snprintf(event.id, sizeof event.id, "%sg%" PRIx64 "-%" PRIx64 "-%u", LEDGER_EXPIRY_ID_PREFIX,
                 (uint64_t)pc_wall_ns(), round, pass->event_count);
        snprintf(event.pending_id, sizeof event.pending_id, "%s", row->pending_id);
        pass->row_of[pass->event_count] = i;
        pass->events[pass->event_count++] = event;
    }
}

/* After the command: an event not expired (nor found resolved) is tried again. */
static void pass_finish(shard_set_t *set, pass_t *pass, pc_status status) {
    uint64_t retry_ns = pc_wall_ns() + (uint64_t)SHARD_EXPIRY_RETRY_MS * 1000000u;
    for (uint32_t k = 0; k < pass->event_count; k++) {
        pc_status result = status == PC_OK ? pass->results[k].status : status;
        bool settled = result == PC_OK || result == PC_EXISTS || result == PC_PENDING_TRANSFER_EXPIRED ||
                       result == PC_PENDING_TRANSFER_ALREADY_POSTED || result == PC_PENDING_TRANSFER_ALREADY_VOIDED ||
                       result == PC_PENDING_TRANSFER_NOT_FOUND;
        if (!settled) pass_keep(set, pass->rows[pass->row_of[k]].pending_id, retry_ns);
        if (!settled) {
            fprintf(stderr, "{\"level\":\"warn\",\"msg\":\"shard expiry: a pending transfer across shards did not"
                    " expire; retrying\",\"pending_id\":\"%s\",\"code\":\"%s\"}\n",
                    pass->rows[pass->row_of[k]].pending_id, pc_status_code(result));
        }
    }
}

void shard_expiry_run(shard_set_t *set) {
    shard_expiry_t *expiry = set->expiry;
    pass_t pass = {0};
    pthread_mutex_lock(&expiry->mutex);
    uint32_t count = expiry->count < LEDGER_BATCH_EVENTS_MAX ? expiry->count : LEDGER_BATCH_EVENTS_MAX;
    pass.rows = count > 0 ? malloc(count * sizeof *pass.rows) : NULL;
    if (pass.rows != NULL) { /* the first 'count' rows: the rest stay listed for the next pass */
        memcpy(pass.rows, expiry->due, count * sizeof *pass.rows);
        memmove(expiry->due, expiry->due + count, (expiry->count - count) * sizeof *expiry->due);
        expiry->count -= count;
        pass.count = count;
    }
    uint64_t round = ++expiry->rounds;
    pthread_mutex_unlock(&expiry->mutex);
    if (pass.count == 0) return; /* nothing, or no memory: the rows wait for the next pass */
    pass.events = calloc(pass.count, sizeof *pass.events);
    pass.results = calloc(pass.count, sizeof *pass.results);
    pass.row_of = calloc(pass.count, sizeof *pass.row_of);
    if (pass.events == NULL || pass.results == NULL || pass.row_of == NULL) {
        for (uint32_t i = 0; i < pass.count; i++) pass_keep(set, pass.rows[i].pending_id, pc_wall_ns());
    } else {
        pass_plan(set, &pass, round);
        if (pass.event_count > 0) {
            writer_cmd_t cmd = {.kind = WRITER_CMD_CREATE_TRANSFERS, .event_count = pass.event_count,
                                .transfers = pass.events, .transfer_results = pass.results};
            pass_finish(set, &pass, shard_coord_run(set, &cmd));
        }
    }
    free(pass.events);
    free(pass.results);
    free(pass.row_of);
    free(pass.rows);
}
