/* events/shards.c: the ledger's events of every shard of a set (docs/scaleout.md §6,
 * "Events on a set"). The outbox that destinations read is the home shard's (0); the
 * other shards' events reach it so that every event is there exactly once and in an
 * order consistent with every shard's commit order:
 *
 *  - a local batch of shard 0 writes its events into the outbox as one store does;
 *  - a local batch of shard s > 0 writes them into s's own events table, in the same
 *    transaction; the relay copies them into the home outbox in s's seq order, in a
 *    home transaction that also moves the home's cursor for s (store_shard_relayed_*),
 *    and later deletes the copied rows from s;
 *  - a global transaction's legs hand their events to its home leg (shard 0 prepares
 *    last), which first copies every event the other legs' shards committed before
 *    (their writers wait inside the prepared legs: nothing else commits there), then
 *    writes the transaction's events, a transfer across shards as one event A -> B (its
 *    two legs merged, owners of both sides), all in its prepared transaction: they
 *    commit or roll back with it, recovery included.
 *
 * Why not a per-shard outbox merged by each reader: the destinations keep one cursor
 * over one commit order ("everything up to here is settled"), as do redelivery's
 * "since", retention and the API's starting_after; merged readers would need a cursor
 * per shard in every one of them. Here they stay as on one store. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "events/events_internal.h"
#include "obs/obs.h"
#include "shard/shard.h"
#include "store/store_shard.h"

/* A leg's event, held until the home leg writes the round's events. */
typedef struct {
    events_ledger_event_t event;          /* owners and metadata point below */
    char owners[EVENTS_OWNERS_MAX][PC_ID_SIZE];
    char *metadata[2];                    /* owned copies: the object's, the resolving transfer's */
    char key[PC_ID_SIZE];                 /* the change's id: the account's, the transfer applied */
    bool used;
} capture_t;

typedef struct {
    capture_t *items;
    uint32_t count, capacity;
} capture_list_t;

typedef struct {
    events_shards_t *shards;
    uint32_t index;
    store_events_writer_t *outbox;        /* shard index > 0: its own outbox's statements */
} shard_outbox_t;

struct events_shards {
    events_t *events;
    shard_outbox_t outboxes[SHARD_COUNT_MAX];
    /* the round being prepared (one global transaction at a time) */
    pthread_mutex_t round_mutex;
    char round_gtid[STORE_GTID_SIZE];
    capture_list_t captures[SHARD_COUNT_MAX];
    /* the home writer thread's readers of the other shards (relay, round) */
    store_reader_t *readers[SHARD_COUNT_MAX];
    /* the relay thread */
    shard_set_t *set;
    pthread_t thread;
    bool started;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    bool woken, stopping;
    /* What is new on a shard: its commits with events, counted by its hook, and the
     * count the home had copied everything up to (only a transaction that committed
     * sets it: 'tentative' holds it until then, home writer thread). Equal: nothing
     * to read there. */
    _Atomic uint64_t far_commits[SHARD_COUNT_MAX];
    _Atomic uint64_t copied_commits[SHARD_COUNT_MAX];
    uint64_t tentative[SHARD_COUNT_MAX];
    bool tentative_set[SHARD_COUNT_MAX];
    uint64_t relayed[SHARD_COUNT_MAX];    /* relay thread: the home's cursors, as last seen */
    store_reader_t *home_reader;          /* relay thread: reads them */
    uint64_t cursors_read_ns;
    uint64_t trimmed[SHARD_COUNT_MAX];    /* relay thread: deleted on each shard up to here */
    uint64_t trimmed_at_ns[SHARD_COUNT_MAX]; /* and when (monotonic) */
};

/* ---- captures ---- */

static void capture_list_clear(capture_list_t *list) {
    for (uint32_t i = 0; i < list->count; i++) {
        free(list->items[i].metadata[0]);
        free(list->items[i].metadata[1]);
    }
    list->count = 0;
}

static char *metadata_copy(const char *metadata, bool *failed) {
    if (metadata == NULL) return NULL;
    char *copy = pc_strdup(metadata);
    if (copy == NULL) *failed = true;
    return copy;
}

static pc_status capture_add(void *ctx, const events_ledger_event_t *event) {
    capture_list_t *list = ctx;
    if (list->count == list->capacity) {
        uint32_t capacity = list->capacity ? 2 * list->capacity : 64;
        capture_t *items = realloc(list->items, sizeof *items * capacity);
        if (items == NULL) return PC_NO_MEMORY;
        list->items = items;
        list->capacity = capacity;
    }
    capture_t *c = &list->items[list->count];
    memset(c, 0, sizeof *c);
    c->event = *event;
    for (uint32_t i = 0; i < event->owner_count; i++) snprintf(c->owners[i], PC_ID_SIZE, "%s", event->owners[i]);
    bool failed = false;
    c->metadata[0] = metadata_copy(event->transfer.metadata_json, &failed);
    c->metadata[1] = metadata_copy(event->resolving.metadata_json, &failed);
    c->event.transfer.metadata_json = c->metadata[0];
    c->event.resolving.metadata_json = c->metadata[1];
    const char *key = event->type == EVENTS_TYPE_ACCOUNT_CREATED ? event->account.id
                      : event->resolved                           ? event->resolving.id
                                                                  : event->transfer.id;
    snprintf(c->key, sizeof c->key, "%s", key);
    list->count++;
    if (failed) return PC_NO_MEMORY;
    return PC_OK;
}

/* The capture's event with its owners pointing into it. */
static events_ledger_event_t capture_event(const capture_t *c) {
    events_ledger_event_t event = c->event;
    for (uint32_t i = 0; i < event.owner_count; i++) event.owners[i] = c->owners[i];
    return event;
}

/* ---- the relay: another shard's outbox rows into the home's ---- */

typedef struct {
    store_events_writer_t *outbox;
    uint64_t after;                       /* the home's cursor for the shard */
    pc_status status;
    uint32_t copied;
} copy_ctx;

static void copy_row(const store_event_t *row, void *ctx) {
    copy_ctx *copy = ctx;
    if (copy->status != PC_OK || row->seq <= copy->after) return;
    copy->status = events_row_copy(copy->outbox, row, pc_wall_ns());
    if (copy->status == PC_STORE_CORRUPT) { /* never rendered by this paycore: it cannot be delivered */
        obs_logf(OBS_LEVEL_ERROR, "events: a shard's outbox row %" PRIu64 " (%s) is not a ledger event this paycore"
                 " renders; it is not relayed", row->seq, row->type);
        copy->status = PC_OK;
    }
    if (copy->status != PC_OK) return;
    copy->after = row->seq;
    copy->copied++;
}

static store_reader_t *home_reader(events_shards_t *shards, store_t *store, uint32_t s) {
    if (shards->readers[s] == NULL && store_reader_open(store, &shards->readers[s]) != PC_OK) {
        shards->readers[s] = NULL;
    }
    return shards->readers[s];
}

static void home_reader_drop(events_shards_t *shards, uint32_t s) {
    store_reader_close(shards->readers[s]);
    shards->readers[s] = NULL; /* reopened at the next use: the connection may have broken */
}

/* Home writer thread, in 'tx' on the home shard: the rows of shard 's' after the
 * home's cursor, at most 'rows_max' (0: all), copied with the cursor moved over them
 * (*cursor: where it is now). *more: rows are left. Nothing is read when the shard
 * committed no events since the home copied all it had. */
static pc_status relay_shard(events_shards_t *shards, store_t *store, uint32_t s, store_tx_t *tx,
                             uint32_t rows_max, bool *more, uint64_t *cursor) {
    events_t *events = shards->events;
    uint64_t seen = atomic_load(&shards->far_commits[s]); /* before the read: later ones are read later */
    *more = false;
    *cursor = 0;
    if (seen == atomic_load(&shards->copied_commits[s])) return PC_OK;
    copy_ctx copy = {.status = PC_OK};
    pc_status status = store_shard_relayed_get(tx, s, &copy.after);
    if (status == PC_OK && events->outbox == NULL) status = store_events_writer_begin(tx, &events->outbox);
    copy.outbox = events->outbox;
    store_reader_t *reader = status == PC_OK ? home_reader(shards, store, s) : NULL;
    if (status == PC_OK && reader == NULL) status = PC_STORE_READ_FAILED;
    uint64_t start = copy.after;
    *more = true;
    while (status == PC_OK && *more && (rows_max == 0 || copy.copied < rows_max)) {
        uint32_t page = EVENTS_RELAY_ROWS_MAX;
        status = store_shard_events_after(reader, copy.after, page, copy_row, &copy, more);
        if (status == PC_OK) status = copy.status;
    }
    if (status == PC_STORE_READ_FAILED) home_reader_drop(shards, s);
    if (copy.after != start) { /* what was copied is recorded, whatever failed after it */
        pc_status set_status = store_shard_relayed_set(tx, s, copy.after);
        if (status == PC_OK) status = set_status;
    }
    *cursor = copy.after;
    if (status == PC_OK && !*more) { /* all of it: copied_commits once this transaction commits */
        shards->tentative[s] = seen;
        shards->tentative_set[s] = true;
    }
    return status;
}

/* ---- a global transaction's events, written in its home leg ---- */

/* Captures by key: open addressing over (shard, index) pairs. */
typedef struct {
    uint32_t shard, index;                /* shard UINT32_MAX: empty */
} slot_t;

typedef struct {
    events_shards_t *shards;
    slot_t *slots;
    uint32_t mask;
} key_index_t;

static capture_t *slot_capture(const key_index_t *ix, const slot_t *slot) {
    return &ix->shards->captures[slot->shard].items[slot->index];
}

static bool key_index_build(key_index_t *ix, events_shards_t *shards, uint32_t count) {
    uint32_t total = 0;
    for (uint32_t s = 0; s < count; s++) total += shards->captures[s].count;
    uint32_t capacity = 16;
    while (capacity < 2 * total) capacity *= 2;
    ix->shards = shards;
    ix->slots = malloc(sizeof *ix->slots * capacity);
    if (ix->slots == NULL) return false;
    for (uint32_t i = 0; i < capacity; i++) ix->slots[i].shard = UINT32_MAX;
    ix->mask = capacity - 1;
    for (uint32_t s = 0; s < count; s++) {
        for (uint32_t i = 0; i < shards->captures[s].count; i++) {
            const char *key = shards->captures[s].items[i].key;
            uint32_t at = (uint32_t)(pc_hash64(key, strlen(key)) & ix->mask);
            while (ix->slots[at].shard != UINT32_MAX) at = (at + 1) & ix->mask;
            ix->slots[at] = (slot_t){s, i};
        }
    }
    return true;
}

/* The unused captures of 'key' (at most 'max'), marked used. */
static uint32_t key_take(const key_index_t *ix, const char *key, capture_t **out, uint32_t max) {
    uint32_t n = 0;
    for (uint32_t at = (uint32_t)(pc_hash64(key, strlen(key)) & ix->mask); ix->slots[at].shard != UINT32_MAX;
         at = (at + 1) & ix->mask) {
        capture_t *c = slot_capture(ix, &ix->slots[at]);
        if (c->used || strcmp(c->key, key) != 0 || n == max) continue;
        c->used = true;
        out[n++] = c;
    }
    return n;
}

static bool is_clearing(const char *id) {
    uint32_t self, peer;
    return store_clearing_shard(id, &self, &peer);
}

/* A transfer across shards: the debit leg's event (A -> clearing) with the credit
 * leg's credit account (clearing -> B), as the transfer reads back (A -> B), and the
 * owners of both sides. False when the two are not such a pair. */
static bool merge(const capture_t *a, const capture_t *b, events_ledger_event_t *out) {
    if (a->event.type != b->event.type || a->event.type == EVENTS_TYPE_ACCOUNT_CREATED) return false;
    const capture_t *debit = is_clearing(a->event.transfer.credit_account_id) ? a : b;
    const capture_t *credit = debit == a ? b : a;
    bool pair = is_clearing(debit->event.transfer.credit_account_id) &&
                is_clearing(credit->event.transfer.debit_account_id);
    if (!pair) return false;
    *out = capture_event(debit);
    memcpy(out->transfer.credit_account_id, credit->event.transfer.credit_account_id, PC_ID_SIZE);
    if (out->resolved && is_clearing(out->resolving.credit_account_id)) {
        memcpy(out->resolving.credit_account_id, credit->event.resolving.credit_account_id, PC_ID_SIZE);
    }
    for (uint32_t i = 0; i < credit->event.owner_count && out->owner_count < EVENTS_OWNERS_MAX; i++) {
        bool seen = false;
        for (uint32_t j = 0; j < out->owner_count && !seen; j++) seen = strcmp(out->owners[j], credit->owners[i]) == 0;
        if (!seen) out->owners[out->owner_count++] = credit->owners[i];
    }
    return true;
}

static pc_status write_group(store_events_writer_t *outbox, capture_t **group, uint32_t n) {
    events_ledger_event_t merged;
    if (n == 2 && merge(group[0], group[1], &merged)) return events_ledger_insert(outbox, &merged, pc_wall_ns());
    pc_status status = PC_OK;
    for (uint32_t i = 0; status == PC_OK && i < n; i++) {
        events_ledger_event_t event = capture_event(group[i]);
        status = events_ledger_insert(outbox, &event, pc_wall_ns());
    }
    return status;
}

static const char *cmd_event_id(const writer_cmd_t *cmd, uint32_t e) {
    return cmd->kind == WRITER_CMD_CREATE_TRANSFERS ? cmd->transfers[e].id : cmd->accounts[e].id;
}

/* The round's events in the order one store writes a batch's: what the legs changed
 * besides the command (a shard's expiries, applied first), then the command's events
 * in its order, each transfer across shards once. */
static pc_status round_write(events_shards_t *shards, const shard_leg_view_t *leg, store_events_writer_t *outbox) {
    uint32_t count = shard_count(leg->set);
    key_index_t ix;
    if (!key_index_build(&ix, shards, count)) return PC_NO_MEMORY;
    const writer_cmd_t *cmd = leg->cmd;
    uint32_t events = cmd->kind == WRITER_CMD_EXEC ? 0 : cmd->event_count;
    capture_t *group[4];
    uint32_t *taken = calloc(events + 1, sizeof *taken); /* captures of event e, found first */
    capture_t **taken_items = calloc(4 * (size_t)events + 1, sizeof *taken_items);
    pc_status status = taken != NULL && taken_items != NULL ? PC_OK : PC_NO_MEMORY;
    for (uint32_t e = 0; status == PC_OK && e < events; e++) {
        taken[e] = key_take(&ix, cmd_event_id(cmd, e), taken_items + 4 * (size_t)e, 4);
    }
    for (uint32_t s = 0; status == PC_OK && s < count; s++) {
        capture_list_t *list = &shards->captures[s];
        for (uint32_t i = 0; status == PC_OK && i < list->count; i++) {
            if (list->items[i].used) continue;
            list->items[i].used = true;
            group[0] = &list->items[i];
            status = write_group(outbox, group, 1);
        }
    }
    for (uint32_t e = 0; status == PC_OK && e < events; e++) {
        if (taken[e] > 0) status = write_group(outbox, taken_items + 4 * (size_t)e, taken[e]);
    }
    free(taken);
    free(taken_items);
    free(ix.slots);
    return status;
}

/* A leg's batch: its events held for the home leg; the home leg (last to prepare)
 * then copies what the other legs' shards committed before, and writes the round. */
static pc_status leg_batch(shard_outbox_t *so, const shard_leg_view_t *leg, store_tx_t *tx, const ledger_t *ledger,
                           const ledger_changes_t *changes, const ledger_source_t *source) {
    events_shards_t *shards = so->shards;
    events_t *events = shards->events;
    store_events_writer_t **outbox = so->index == 0 ? &events->outbox : &so->outbox;
    pthread_mutex_lock(&shards->round_mutex);
    if (strcmp(shards->round_gtid, leg->gtid) != 0) { /* a new round: the last one's captures go */
        for (uint32_t s = 0; s < SHARD_COUNT_MAX; s++) capture_list_clear(&shards->captures[s]);
        snprintf(shards->round_gtid, sizeof shards->round_gtid, "%s", leg->gtid);
    }
    capture_list_clear(&shards->captures[so->index]);
    pc_status status = events_ledger_batch(outbox, tx, ledger, changes, source, capture_add,
                                           &shards->captures[so->index]);
    if (status == PC_OK && so->index == 0) {
        for (uint32_t s = 1; status == PC_OK && s < shard_count(leg->set); s++) {
            bool more;
            uint64_t cursor;
            if (leg->involved[s]) status = relay_shard(shards, shard_store(leg->set, s), s, tx, 0, &more, &cursor);
        }
        if (status == PC_OK && events->outbox == NULL) status = store_events_writer_begin(tx, &events->outbox);
        if (status == PC_OK) status = round_write(shards, leg, events->outbox);
    }
    pthread_mutex_unlock(&shards->round_mutex);
    return status;
}

/* ---- the batch hooks ---- */

static void relay_wake(events_shards_t *shards) {
    pthread_mutex_lock(&shards->mutex);
    shards->woken = true;
    pthread_cond_signal(&shards->wake);
    pthread_mutex_unlock(&shards->mutex);
}

/* A far shard's batch wrote events into its own outbox (its writer thread). */
static _Thread_local bool wrote_events;

static pc_status hook_in_transaction(void *ctx, store_tx_t *tx, const ledger_t *ledger,
                                     const ledger_changes_t *changes, const ledger_source_t *source) {
    shard_outbox_t *so = ctx;
    const shard_leg_view_t *leg = shard_batch_leg();
    if (leg != NULL) return leg_batch(so, leg, tx, ledger, changes, source);
    wrote_events = so->index > 0 && changes->accounts_created_count + changes->transfers_count > 0;
    store_events_writer_t **outbox = so->index == 0 ? &so->shards->events->outbox : &so->outbox;
    return events_ledger_batch(outbox, tx, ledger, changes, source, NULL, NULL);
}

static void hook_finished(void *ctx, pc_status commit_status) {
    shard_outbox_t *so = ctx;
    events_t *events = so->shards->events;
    if (so->index == 0) {
        for (uint32_t s = 1; s < SHARD_COUNT_MAX; s++) {
            if (!so->shards->tentative_set[s]) continue;
            if (commit_status == PC_OK) atomic_store(&so->shards->copied_commits[s], so->shards->tentative[s]);
            so->shards->tentative_set[s] = false;
        }
        events_outbox_finished(events, commit_status);
        return;
    }
    events_written_drop(); /* counted when they reach the home outbox */
    if (so->outbox != NULL) store_events_writer_reset(so->outbox);
    if (commit_status == PC_OK && wrote_events) {
        atomic_fetch_add(&so->shards->far_commits[so->index], 1);
        relay_wake(so->shards);
    }
    wrote_events = false;
}

pc_status events_shard_hook(events_t *events, uint32_t index, writer_batch_hook_t *out) {
    *out = (writer_batch_hook_t){0};
    if (events == NULL || !events->config.enabled) return PC_OK;
    if (index >= SHARD_COUNT_MAX) return PC_INVALID_ARGUMENT;
    if (events->shards == NULL) {
        events_shards_t *shards = calloc(1, sizeof *shards);
        if (shards == NULL) return PC_NO_MEMORY;
        shards->events = events;
        pthread_mutex_init(&shards->round_mutex, NULL);
        pthread_mutex_init(&shards->mutex, NULL);
        pthread_cond_init(&shards->wake, NULL);
        for (uint32_t i = 0; i < SHARD_COUNT_MAX; i++) {
            shards->outboxes[i] = (shard_outbox_t){shards, i, NULL};
            atomic_store(&shards->copied_commits[i], UINT64_MAX); /* read each shard once at start */
        }
        events->shards = shards;
    }
    *out = (writer_batch_hook_t){hook_in_transaction, hook_finished, &events->shards->outboxes[index]};
    return PC_OK;
}

/* ---- the relay thread ---- */

typedef struct {
    writer_cmd_t cmd;                     /* first */
    events_shards_t *shards;
    uint64_t relayed[SHARD_COUNT_MAX];    /* the home's cursors after it */
    bool more;
} relay_cmd_t;

/* Home writer thread: every other shard's new rows, a bounded number each. A shard
 * that cannot be read now is left for the next run (nothing of it is copied). */
static pc_status relay_in_transaction(writer_cmd_t *cmd, store_tx_t *tx) {
    relay_cmd_t *relay = (relay_cmd_t *)cmd;
    events_shards_t *shards = relay->shards;
    relay->more = false;
    for (uint32_t s = 1; s < shard_count(shards->set); s++) {
        bool more = false;
        pc_status status = relay_shard(shards, shard_store(shards->set, s), s, tx, EVENTS_RELAY_ROWS_MAX, &more,
                                       &relay->relayed[s]);
        if (status == PC_STORE_READ_FAILED) continue;
        if (status != PC_OK) return status;
        relay->more = relay->more || more;
    }
    return PC_OK;
}

typedef struct {
    writer_cmd_t cmd;                     /* first */
    uint64_t through_seq;
    uint32_t deleted;
} trim_cmd_t;

/* Shard s's writer: the rows the home holds now are deleted there (the newest is
 * kept: it anchors the shard's seq). */
static pc_status trim_in_transaction(writer_cmd_t *cmd, store_tx_t *tx) {
    trim_cmd_t *trim = (trim_cmd_t *)cmd;
    return store_events_purge(tx, trim->through_seq + 1, EVENTS_RELAY_ROWS_MAX, &trim->deleted);
}

static void relay_trim(events_shards_t *shards, uint32_t s, uint64_t relayed) {
    uint64_t now_ns = pc_mono_ns(); /* at most one delete a shard per interval: not one per relay run */
    if (relayed <= shards->trimmed[s] || now_ns - shards->trimmed_at_ns[s] < EVENTS_RELAY_INTERVAL_MS * 1000000ull) {
        return;
    }
    shards->trimmed_at_ns[s] = now_ns;
    trim_cmd_t trim = {.cmd = {.kind = WRITER_CMD_EXEC, .in_transaction = trim_in_transaction},
                       .through_seq = relayed};
    pc_status status = writer_enqueue_wait(shard_writer(shards->set, s), &trim.cmd);
    if (status == PC_OK && trim.deleted < EVENTS_RELAY_ROWS_MAX) shards->trimmed[s] = relayed;
}

static bool relay_wait(events_shards_t *shards) {
    pthread_mutex_lock(&shards->mutex);
    if (!shards->woken && !shards->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        uint64_t ns = (uint64_t)until.tv_nsec + (uint64_t)EVENTS_RELAY_INTERVAL_MS * 1000000u;
        until.tv_sec += (time_t)(ns / 1000000000u);
        until.tv_nsec = (long)(ns % 1000000000u);
        pthread_cond_timedwait(&shards->wake, &shards->mutex, &until);
    }
    shards->woken = false;
    bool stopping = shards->stopping;
    pthread_mutex_unlock(&shards->mutex);
    return !stopping;
}

/* The home's cursors as committed (relay thread, at most once an interval). */
static void relay_cursors_read(events_shards_t *shards) {
    uint64_t now_ns = pc_mono_ns();
    if (now_ns - shards->cursors_read_ns < EVENTS_RELAY_INTERVAL_MS * 1000000ull) return;
    shards->cursors_read_ns = now_ns;
    if (shards->home_reader == NULL && store_reader_open(shard_store(shards->set, 0), &shards->home_reader) != PC_OK) {
        shards->home_reader = NULL;
        return;
    }
    for (uint32_t s = 1; s < shard_count(shards->set); s++) {
        uint64_t cursor;
        if (store_shard_relayed_read(shards->home_reader, s, &cursor) != PC_OK) {
            store_reader_close(shards->home_reader); /* reopened next time */
            shards->home_reader = NULL;
            return;
        }
        if (cursor > shards->relayed[s]) shards->relayed[s] = cursor;
    }
}

static bool relay_due(events_shards_t *shards) {
    for (uint32_t s = 1; s < shard_count(shards->set); s++) {
        if (atomic_load(&shards->far_commits[s]) != atomic_load(&shards->copied_commits[s])) return true;
    }
    return false;
}

static void *relay_main(void *arg) {
    pthread_setname_np(pthread_self(), "paycore-relay"); /* per-thread CPU in top, perf */
    events_shards_t *shards = arg;
    events_thread_background();
    while (relay_wait(shards)) {
        /* one run for many commits: the home writer is not asked for each of them */
        struct timespec gap = {0, EVENTS_RELAY_GAP_MS * 1000000L};
        nanosleep(&gap, NULL);
        relay_cmd_t relay = {.cmd = {.kind = WRITER_CMD_EXEC, .in_transaction = relay_in_transaction},
                             .shards = shards};
        if (relay_due(shards) && writer_enqueue_wait(shard_writer(shards->set, 0), &relay.cmd) == PC_OK) {
            for (uint32_t s = 1; s < shard_count(shards->set); s++) {
                if (relay.relayed[s] > shards->relayed[s]) shards->relayed[s] = relay.relayed[s];
            }
            if (relay.more) relay_wake(shards);
        }
        relay_cursors_read(shards); /* global transactions' home legs move them too */
        for (uint32_t s = 1; s < shard_count(shards->set); s++) relay_trim(shards, s, shards->relayed[s]);
    }
    store_reader_close(shards->home_reader);
    shards->home_reader = NULL;
    return NULL;
}

pc_status events_shards_start(events_t *events, shard_set_t *set) {
    if (events == NULL || events->shards == NULL || shard_count(set) < 2) return PC_OK;
    events_shards_t *shards = events->shards;
    shards->set = set;
    shards->woken = true; /* rows left by the last run */
    if (pthread_create(&shards->thread, NULL, relay_main, shards) != 0) return PC_NO_MEMORY;
    shards->started = true;
    return PC_OK;
}

void events_shards_stop(events_shards_t *shards) {
    if (shards == NULL || !shards->started) return;
    pthread_mutex_lock(&shards->mutex);
    shards->stopping = true;
    pthread_cond_signal(&shards->wake);
    pthread_mutex_unlock(&shards->mutex);
    pthread_join(shards->thread, NULL);
    shards->started = false;
}

void events_shards_free(events_shards_t *shards) {
    if (shards == NULL) return;
    events_shards_stop(shards);
    for (uint32_t s = 0; s < SHARD_COUNT_MAX; s++) {
        capture_list_clear(&shards->captures[s]);
        free(shards->captures[s].items);
        store_reader_close(shards->readers[s]);
        store_events_writer_end(shards->outboxes[s].outbox);
    }
    pthread_mutex_destroy(&shards->round_mutex);
    pthread_mutex_destroy(&shards->mutex);
    pthread_cond_destroy(&shards->wake);
    free(shards);
}
