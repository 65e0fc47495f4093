/* ledger/ledger.c: the account table, batches and their undo, lookups. Only the
 * writer thread calls in, so nothing here locks. A batch records an undo entry for
 * every change; rollback walks the log backwards, so a failed commit or a failed
 * linked chain leaves the table exactly as it was. */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "ledger/ledger_internal.h"

void *ledger__vec_push(void *vec_items, uint32_t *count, uint32_t *capacity, size_t item_bytes) {
    void **items = vec_items;
    if (*count == *capacity) {
        uint32_t capacity_new = *capacity ? *capacity * 2u : 64u;
        void *grown = realloc(*items, (size_t)capacity_new * item_bytes);
        PC_ASSERT(grown != NULL); /* out of memory inside a batch: nothing was acknowledged */
        *items = grown;
        *capacity = capacity_new;
    }
    return (char *)*items + (size_t)(*count)++ * item_bytes;
}

static const char *account_key(const void *owner, uint32_t value) {
    return ((const ledger_t *)owner)->accounts[value].id;
}

static const char *batch_key(const void *owner, uint32_t value) {
    const ledger_t *ledger = owner;
    if (value & BATCH_MAP_FAILURE) return ledger->failures.items[value & ~BATCH_MAP_FAILURE].id;
    return ledger->transfers.items[value].id;
}

pc_status ledger_open(ledger_t **out) {
    ledger_t *ledger = calloc(1, sizeof(*ledger));
    if (ledger == NULL) return PC_NO_MEMORY;
    pc_hash_key_random(&ledger->id_key);
    bool ok = idmap_init(&ledger->account_map, 1024, account_key, ledger) &&
              idmap_init(&ledger->batch_map, LEDGER_BATCH_EVENTS_MAX, batch_key, ledger) &&
              ledger__pending_init(ledger);
    if (!ok) {
        ledger_close(ledger);
        return PC_NO_MEMORY;
    }
    *out = ledger;
    return PC_OK;
}

void ledger_close(ledger_t *ledger) {
    if (ledger == NULL) return;
    for (uint32_t i = 0; i < ledger->account_count; i++) {
        free((char *)ledger->accounts[i].metadata_json);
    }
    free(ledger->accounts);
    free(ledger->account_touched_epoch);
    idmap_free(&ledger->account_map);
    idmap_free(&ledger->batch_map);
    ledger__pending_free(ledger);
    free(ledger->undo.items);
    free(ledger->accounts_created.items);
    free(ledger->accounts_touched.items);
    free(ledger->transfers.items);
    free(ledger->transfer_accounts.items);
    free(ledger->pending_changes.items);
    free(ledger->failures.items);
    free(ledger->history.items);
    free(ledger);
}

/* Appends an account row (load or create); the caller has checked the id is new. */
static pc_status account_append(ledger_t *ledger, const ledger_account_t *account) {
    if (ledger->account_count >= LEDGER_ACCOUNTS_MAX) return PC_ACCOUNT_LIMIT_REACHED;
    if (ledger->account_count == ledger->account_capacity) {
        uint32_t capacity_new = ledger->account_capacity ? ledger->account_capacity * 2u : 1024u;
        ledger_account_t *accounts = realloc(ledger->accounts, capacity_new * sizeof(*accounts));
        if (accounts == NULL) return PC_NO_MEMORY;
        ledger->accounts = accounts;
        uint32_t *epochs = realloc(ledger->account_touched_epoch, capacity_new * sizeof(uint32_t));
        if (epochs == NULL) return PC_NO_MEMORY;
        ledger->account_touched_epoch = epochs;
        ledger->account_capacity = capacity_new;
    }
    char *metadata = NULL;
    if (account->metadata_json != NULL) {
        metadata = pc_strdup(account->metadata_json);
        if (metadata == NULL) return PC_NO_MEMORY;
    }
    uint32_t index = ledger->account_count;
    if (!idmap_insert(&ledger->account_map, ledger__id_hash(ledger, account->id), index)) {
        free(metadata);
        return PC_NO_MEMORY;
    }
    ledger->accounts[index] = *account;
    ledger->accounts[index].metadata_json = metadata;
    ledger->account_touched_epoch[index] = 0;
    ledger->account_count++;
    return PC_OK;
}

pc_status ledger__account_create(ledger_t *ledger, const ledger_account_t *account, uint32_t *index) {
    pc_status status = account_append(ledger, account);
    if (status != PC_OK) return status;
    *index = ledger->account_count - 1;
    *LEDGER_VEC_PUSH(ledger->undo) = (ledger_undo_t){.kind = UNDO_ACCOUNT_CREATED, .index = *index};
    *LEDGER_VEC_PUSH(ledger->accounts_created) = *index;
    return PC_OK;
}

static void account_remove_last(ledger_t *ledger, uint32_t index) {
    PC_ASSERT(index == ledger->account_count - 1);
    ledger_account_t *account = &ledger->accounts[index];
    idmap_remove(&ledger->account_map, ledger__id_hash(ledger, account->id), index);
    free((char *)account->metadata_json);
    ledger->account_count--;
}

pc_status ledger_load_account(ledger_t *ledger, const ledger_account_t *account) {
    PC_ASSERT(!ledger->batch_open);
    uint32_t existing;
    if (idmap_find(&ledger->account_map, account->id, ledger__id_hash(ledger, account->id), &existing)) {
        return PC_EXISTS;
    }
    if (account->timestamp_ns > ledger->clock_ns) ledger->clock_ns = account->timestamp_ns;
    return account_append(ledger, account);
}

void ledger_load_clock(ledger_t *ledger, uint64_t timestamp_last_ns) {
    if (timestamp_last_ns > ledger->clock_ns) ledger->clock_ns = timestamp_last_ns;
}

void ledger__transfer_accounts_push(ledger_t *ledger, uint32_t debit_index, uint32_t credit_index) {
    *LEDGER_VEC_PUSH(ledger->transfer_accounts) = debit_index;
    *LEDGER_VEC_PUSH(ledger->transfer_accounts) = credit_index;
    PC_ASSERT(ledger->transfer_accounts.count == ledger->transfers.count * 2);
}

uint64_t ledger__timestamp_next(ledger_t *ledger) {
    uint64_t next = ledger->now_ns > ledger->clock_ns ? ledger->now_ns : ledger->clock_ns + 1;
    ledger->clock_ns = next;
    return next;
}

void ledger_batch_begin(ledger_t *ledger, uint64_t now_ns) {
    PC_ASSERT(!ledger->batch_open);
    ledger->batch_open = true;
    ledger->now_ns = now_ns;
    ledger->epoch++;
    ledger->undo.count = 0;
    ledger->accounts_created.count = 0;
    ledger->accounts_touched.count = 0;
    ledger->transfers.count = 0;
    ledger->transfer_accounts.count = 0;
    ledger->pending_changes.count = 0;
    ledger->failures.count = 0;
    ledger->history.count = 0;
    ledger->pending_freed.count = 0;
    idmap_clear(&ledger->batch_map);
}

/* Records the balances before a change, once per change, and marks the account
 * touched (once per batch). */
void ledger__balances_save(ledger_t *ledger, uint32_t account_index) {
    *LEDGER_VEC_PUSH(ledger->undo) = (ledger_undo_t){
        .kind = UNDO_BALANCES,
        .index = account_index,
        .balances = ledger->accounts[account_index].balances,
    };
    if (ledger->account_touched_epoch[account_index] != ledger->epoch) {
        ledger->account_touched_epoch[account_index] = ledger->epoch;
        *LEDGER_VEC_PUSH(ledger->accounts_touched) = account_index;
    }
}

void ledger__history_add(ledger_t *ledger, uint32_t account_index, const ledger_transfer_t *record) {
    const ledger_account_t *account = &ledger->accounts[account_index];
    if (!(account->flags & LEDGER_ACCOUNT_HISTORY)) return;
    ledger_history_t *row = LEDGER_VEC_PUSH(ledger->history);
    row->account_index = account_index;
    row->transfer_timestamp_ns = record->timestamp_ns;
    memcpy(row->transfer_id, record->id, sizeof(row->transfer_id));
    row->balances = account->balances;
}

void ledger__savepoint(const ledger_t *ledger, ledger_savepoint_t *out) {
    *out = (ledger_savepoint_t){
        .undo_count = ledger->undo.count,
        .transfers_count = ledger->transfers.count,
        .failures_count = ledger->failures.count,
        .accounts_created_count = ledger->accounts_created.count,
        .accounts_touched_count = ledger->accounts_touched.count,
        .history_count = ledger->history.count,
        .pending_changes_count = ledger->pending_changes.count,
        .pending_freed_count = ledger->pending_freed.count,
    };
}

static void undo_one(ledger_t *ledger, const ledger_undo_t *undo) {
    switch (undo->kind) {
    case UNDO_BALANCES:
        ledger->accounts[undo->index].balances = undo->balances;
        break;
    case UNDO_ACCOUNT_CREATED:
        account_remove_last(ledger, undo->index);
        break;
    case UNDO_PENDING_ADDED:
        ledger__pending_undo_add(ledger, undo->index);
        break;
    case UNDO_PENDING_REMOVED:
        ledger__pending_undo_remove(ledger, undo->index);
        break;
    }
}

/* Undoes everything after 'savepoint'; batch-map entries of dropped rows go too. */
void ledger__rollback_to(ledger_t *ledger, const ledger_savepoint_t *savepoint) {
    while (ledger->undo.count > savepoint->undo_count) {
        undo_one(ledger, &ledger->undo.items[--ledger->undo.count]);
    }
    for (uint32_t i = savepoint->transfers_count; i < ledger->transfers.count; i++) {
        idmap_remove(&ledger->batch_map, ledger__id_hash(ledger, ledger->transfers.items[i].id), i);
    }
    for (uint32_t i = savepoint->failures_count; i < ledger->failures.count; i++) {
        idmap_remove(&ledger->batch_map, ledger__id_hash(ledger, ledger->failures.items[i].id),
                     i | BATCH_MAP_FAILURE);
    }
    ledger->transfers.count = savepoint->transfers_count;
    ledger->transfer_accounts.count = savepoint->transfers_count * 2;
    ledger->failures.count = savepoint->failures_count;
    ledger->accounts_created.count = savepoint->accounts_created_count;
    ledger->history.count = savepoint->history_count;
    ledger->pending_changes.count = savepoint->pending_changes_count;
    ledger->pending_freed.count = savepoint->pending_freed_count;
    /* accounts_touched may keep accounts whose change was undone: rewriting
     * unchanged balances is harmless. Drop the ones that no longer exist. */
    uint32_t kept = 0;
    for (uint32_t i = 0; i < ledger->accounts_touched.count; i++) {
        uint32_t index = ledger->accounts_touched.items[i];
        if (index < ledger->account_count) ledger->accounts_touched.items[kept++] = index;
        else ledger->account_touched_epoch[index] = 0;
    }
    ledger->accounts_touched.count = kept;
}

/* The changes after 'mark' (all of them from a zero mark) into *out. */
static void changes_since(const ledger_t *ledger, const ledger_mark_t *mark, ledger_changes_t *out) {
    *out = (ledger_changes_t){
        .accounts_created = ledger->accounts_created.items + mark->accounts_created_count,
        .accounts_created_count = ledger->accounts_created.count - mark->accounts_created_count,
        .accounts_touched = ledger->accounts_touched.items,
        .accounts_touched_count = ledger->accounts_touched.count,
        .transfers = ledger->transfers.items + mark->transfers_count,
        .transfer_accounts = ledger->transfer_accounts.items + 2 * (size_t)mark->transfers_count,
        .transfers_count = ledger->transfers.count - mark->transfers_count,
        .pending_changes = ledger->pending_changes.items + mark->pending_changes_count,
        .pending_changes_count = ledger->pending_changes.count - mark->pending_changes_count,
        .failures = ledger->failures.items + mark->failures_count,
        .failures_count = ledger->failures.count - mark->failures_count,
        .history = ledger->history.items + mark->history_count,
        .history_count = ledger->history.count - mark->history_count,
    };
    if (out->transfers_count > 0) {
        out->timestamp_first_ns = out->transfers[0].timestamp_ns;
        out->timestamp_last_ns = out->transfers[out->transfers_count - 1].timestamp_ns;
    }
    for (uint32_t i = 0; i < out->accounts_created_count; i++) {
        uint64_t ts = ledger->accounts[out->accounts_created[i]].timestamp_ns;
        if (out->timestamp_first_ns == 0 || ts < out->timestamp_first_ns) out->timestamp_first_ns = ts;
        if (ts > out->timestamp_last_ns) out->timestamp_last_ns = ts;
    }
    for (uint32_t i = 0; i < out->failures_count; i++) {
        uint64_t ts = out->failures[i].timestamp_ns;
        if (out->timestamp_first_ns == 0 || ts < out->timestamp_first_ns) out->timestamp_first_ns = ts;
        if (ts > out->timestamp_last_ns) out->timestamp_last_ns = ts;
    }
}

const ledger_changes_t *ledger_batch_changes(const ledger_t *ledger) {
    static const ledger_mark_t start;
    ledger_t *mutable_ledger = (ledger_t *)ledger;
    changes_since(ledger, &start, &mutable_ledger->changes);
    return &mutable_ledger->changes;
}

void ledger_batch_mark(const ledger_t *ledger, ledger_mark_t *out) {
    PC_ASSERT(ledger->batch_open);
    ledger__savepoint(ledger, out);
}

void ledger_batch_changes_since(const ledger_t *ledger, const ledger_mark_t *mark, ledger_changes_t *out) {
    PC_ASSERT(ledger->batch_open);
    changes_since(ledger, mark, out);
}

void ledger_batch_rollback_to(ledger_t *ledger, const ledger_mark_t *mark) {
    PC_ASSERT(ledger->batch_open);
    ledger__rollback_to(ledger, mark);
}

void ledger_batch_commit(ledger_t *ledger) {
    PC_ASSERT(ledger->batch_open);
    ledger__pending_commit(ledger);
    ledger->batch_open = false;
}

void ledger_batch_rollback(ledger_t *ledger) {
    PC_ASSERT(ledger->batch_open);
    ledger_savepoint_t start = {0};
    ledger__rollback_to(ledger, &start);
    for (uint32_t i = 0; i < ledger->accounts_touched.count; i++) {
        ledger->account_touched_epoch[ledger->accounts_touched.items[i]] = 0;
    }
    ledger->accounts_touched.count = 0;
    ledger->batch_open = false;
}

const ledger_account_t *ledger_account_find(const ledger_t *ledger, const char *id) {
    uint32_t index;
    if (!idmap_find(&ledger->account_map, id, ledger__id_hash(ledger, id), &index)) return NULL;
    return &ledger->accounts[index];
}

uint32_t ledger_account_count(const ledger_t *ledger) { return ledger->account_count; }

const ledger_account_t *ledger_account_at(const ledger_t *ledger, uint32_t index) {
    return index < ledger->account_count ? &ledger->accounts[index] : NULL;
}

uint32_t ledger_account_index(const ledger_t *ledger, const ledger_account_t *account) {
    PC_ASSERT(account >= ledger->accounts && account < ledger->accounts + ledger->account_count);
    return (uint32_t)(account - ledger->accounts);
}

uint32_t ledger_pending_count(const ledger_t *ledger) { return ledger->pending_count; }
uint64_t ledger_clock_ns(const ledger_t *ledger) { return ledger->clock_ns; }

static bool balance_add(int64_t *balance, int64_t delta) {
    int64_t sum;
    if (__builtin_add_overflow(*balance, delta, &sum) || sum < 0) return false;
    *balance = sum;
    return true;
}

pc_status ledger_load_replay(ledger_t *ledger, const ledger_transfer_t *record, int64_t pending_amount) {
    PC_ASSERT(!ledger->batch_open);
    uint32_t dr_i, cr_i;
    if (!idmap_find(&ledger->account_map, record->debit_account_id, ledger__id_hash(ledger, record->debit_account_id), &dr_i) ||
        !idmap_find(&ledger->account_map, record->credit_account_id, ledger__id_hash(ledger, record->credit_account_id), &cr_i)) {
        return PC_STORE_READ_FAILED;
    }
    ledger_balances_t *d = &ledger->accounts[dr_i].balances, *c = &ledger->accounts[cr_i].balances;
    bool ok = true;
    if (record->flags & (LEDGER_TRANSFER_POST_PENDING | LEDGER_TRANSFER_VOID_PENDING)) {
        ok = balance_add(&d->debits_pending, -pending_amount) && balance_add(&c->credits_pending, -pending_amount);
        if (ok && (record->flags & LEDGER_TRANSFER_POST_PENDING)) {
            ok = balance_add(&d->debits_posted, record->amount) && balance_add(&c->credits_posted, record->amount);
        }
    } else if (record->flags & LEDGER_TRANSFER_PENDING) {
        ok = balance_add(&d->debits_pending, record->amount) && balance_add(&c->credits_pending, record->amount);
    } else {
        ok = balance_add(&d->debits_posted, record->amount) && balance_add(&c->credits_posted, record->amount);
    }
    ledger_load_clock(ledger, record->timestamp_ns);
    return ok ? PC_OK : PC_STORE_READ_FAILED;
}
