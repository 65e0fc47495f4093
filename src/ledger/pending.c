/* ledger/pending.c: open pending transfers in memory (post, void and expiry need
 * them without the store) and the expiry timer: a min-heap by deadline. Heap entries
 * are not removed when a pending transfer resolves; a stale entry is recognised by
 * its slot's generation and dropped when it reaches the top. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "ledger/ledger_internal.h"

static const char *pending_key(const void *owner, uint32_t value) {
    return ((const ledger_t *)owner)->pendings[value].id;
}

bool ledger__pending_init(ledger_t *ledger) {
    return idmap_init(&ledger->pending_map, 1024, pending_key, ledger);
}

void ledger__pending_free(ledger_t *ledger) {
    idmap_free(&ledger->pending_map);
    free(ledger->pendings);
    free(ledger->pending_free.items);
    free(ledger->pending_freed.items);
    free(ledger->expiry_heap.items);
    free(ledger->expiry_hold_prefix);
}

bool ledger__pending_find(const ledger_t *ledger, const char *id, uint32_t *slot) {
    return idmap_find(&ledger->pending_map, id, ledger__id_hash(ledger, id), slot);
}

static bool heap_less(const ledger_expiry_t *a, const ledger_expiry_t *b) {
    return a->expires_at_ns < b->expires_at_ns;
}

static void heap_push(ledger_t *ledger, ledger_expiry_t entry) {
    *LEDGER_VEC_PUSH(ledger->expiry_heap) = entry;
    ledger_expiry_t *heap = ledger->expiry_heap.items;
    uint32_t i = ledger->expiry_heap.count - 1;
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!heap_less(&heap[i], &heap[parent])) break;
        ledger_expiry_t swap = heap[i];
        heap[i] = heap[parent];
        heap[parent] = swap;
        i = parent;
    }
}

static void heap_pop(ledger_t *ledger) {
    ledger_expiry_t *heap = ledger->expiry_heap.items;
    uint32_t count = --ledger->expiry_heap.count;
    heap[0] = heap[count];
    uint32_t i = 0;
    for (;;) {
        uint32_t left = 2 * i + 1, right = left + 1, smallest = i;
        if (left < count && heap_less(&heap[left], &heap[smallest])) smallest = left;
        if (right < count && heap_less(&heap[right], &heap[smallest])) smallest = right;
        if (smallest == i) break;
        ledger_expiry_t swap = heap[i];
        heap[i] = heap[smallest];
        heap[smallest] = swap;
        i = smallest;
    }
}

static bool heap_entry_live(const ledger_t *ledger, const ledger_expiry_t *entry) {
    const ledger_pending_t *pending = &ledger->pendings[entry->slot];
    return pending->in_use && pending->generation == entry->generation &&
           pending->expires_at_ns == entry->expires_at_ns;
}

static bool slot_take(ledger_t *ledger, uint32_t *slot) {
    if (ledger->pending_free.count > 0) {
        *slot = ledger->pending_free.items[--ledger->pending_free.count];
        return true;
    }
    if (ledger->pending_slots_used == ledger->pending_capacity) {
        uint32_t capacity_new = ledger->pending_capacity ? ledger->pending_capacity * 2u : 1024u;
        ledger_pending_t *grown = realloc(ledger->pendings, capacity_new * sizeof(*grown));
        if (grown == NULL) return false;
        ledger->pendings = grown;
        ledger->pending_capacity = capacity_new;
    }
    *slot = ledger->pending_slots_used++;
    ledger->pendings[*slot].generation = 0;
    return true;
}

static pc_status pending_insert(ledger_t *ledger, const ledger_transfer_t *record,
                                uint32_t debit_index, uint32_t credit_index, uint32_t *slot_out) {
    if (ledger->pending_count >= LEDGER_PENDING_MAX) return PC_PENDING_LIMIT_REACHED;
    uint32_t slot;
    if (!slot_take(ledger, &slot)) return PC_NO_MEMORY;
    ledger_pending_t *pending = &ledger->pendings[slot];
    uint32_t generation = pending->generation;
    memset(pending, 0, sizeof(*pending));
    memcpy(pending->id, record->id, sizeof(pending->id));
    pending->debit_index = debit_index;
    pending->credit_index = credit_index;
    pending->amount = record->amount;
    memcpy(pending->currency, record->currency, 4);
    pending->code = record->code;
    pending->timestamp_ns = record->timestamp_ns;
    pending->expires_at_ns =
        record->timeout_s ? record->timestamp_ns + (uint64_t)record->timeout_s * 1000000000ull : 0;
    pending->generation = generation;
    pending->in_use = true;
    if (!idmap_insert(&ledger->pending_map, ledger__id_hash(ledger, pending->id), slot)) {
        pending->in_use = false;
        *LEDGER_VEC_PUSH(ledger->pending_free) = slot;
        return PC_NO_MEMORY;
    }
    if (pending->expires_at_ns) {
        heap_push(ledger, (ledger_expiry_t){pending->expires_at_ns, slot, generation});
    }
    ledger->pending_count++;
    *slot_out = slot;
    return PC_OK;
}

pc_status ledger__pending_add(ledger_t *ledger, const ledger_transfer_t *record,
                              uint32_t debit_index, uint32_t credit_index) {
    uint32_t slot;
    pc_status status = pending_insert(ledger, record, debit_index, credit_index, &slot);
    if (status != PC_OK) return status;
    *LEDGER_VEC_PUSH(ledger->undo) = (ledger_undo_t){.kind = UNDO_PENDING_ADDED, .index = slot};
    return PC_OK;
}

pc_status ledger_load_pending(ledger_t *ledger, const ledger_transfer_t *pending) {
    PC_ASSERT(!ledger->batch_open);
    const ledger_account_t *debit = ledger_account_find(ledger, pending->debit_account_id);
    const ledger_account_t *credit = ledger_account_find(ledger, pending->credit_account_id);
    if (debit == NULL || credit == NULL) return PC_ACCOUNT_NOT_FOUND;
    ledger_load_clock(ledger, pending->timestamp_ns);
    uint32_t slot;
    return pending_insert(ledger, pending, ledger_account_index(ledger, debit),
                          ledger_account_index(ledger, credit), &slot);
}

/* Resolves a pending transfer: out of the table now, its slot reusable after commit. */
void ledger__pending_remove(ledger_t *ledger, uint32_t slot, ledger_pending_state state) {
    ledger_pending_t *pending = &ledger->pendings[slot];
    PC_ASSERT(pending->in_use);
    idmap_remove(&ledger->pending_map, ledger__id_hash(ledger, pending->id), slot);
    pending->in_use = false;
    ledger->pending_count--;
    *LEDGER_VEC_PUSH(ledger->pending_freed) = slot;
    *LEDGER_VEC_PUSH(ledger->undo) = (ledger_undo_t){.kind = UNDO_PENDING_REMOVED, .index = slot};
    ledger_pending_change_t *change = LEDGER_VEC_PUSH(ledger->pending_changes);
    memcpy(change->pending_id, pending->id, sizeof(change->pending_id));
    change->pending_timestamp_ns = pending->timestamp_ns;
    change->state = state;
}

void ledger__pending_undo_add(ledger_t *ledger, uint32_t slot) {
    ledger_pending_t *pending = &ledger->pendings[slot];
    PC_ASSERT(pending->in_use);
    idmap_remove(&ledger->pending_map, ledger__id_hash(ledger, pending->id), slot);
    pending->in_use = false;
    pending->generation++; /* its heap entry is stale now */
    ledger->pending_count--;
    *LEDGER_VEC_PUSH(ledger->pending_free) = slot;
}

void ledger__pending_undo_remove(ledger_t *ledger, uint32_t slot) {
    ledger_pending_t *pending = &ledger->pendings[slot];
    PC_ASSERT(!pending->in_use);
    pending->in_use = true;
    bool inserted = idmap_insert(&ledger->pending_map, ledger__id_hash(ledger, pending->id), slot);
    PC_ASSERT(inserted); /* the map had room for it before the batch */
    ledger->pending_count++;
    /* Expiry may have popped its heap entry: put one back (a duplicate is harmless). */
    if (pending->expires_at_ns) {
        heap_push(ledger, (ledger_expiry_t){pending->expires_at_ns, slot, pending->generation});
    }
}

/* Slots freed by this batch become reusable; their heap entries turn stale. */
void ledger__pending_commit(ledger_t *ledger) {
    for (uint32_t i = 0; i < ledger->pending_freed.count; i++) {
        uint32_t slot = ledger->pending_freed.items[i];
        ledger->pendings[slot].generation++;
        *LEDGER_VEC_PUSH(ledger->pending_free) = slot;
    }
    ledger->pending_freed.count = 0;
    /* Keep the heap from filling with stale entries. */
    if (ledger->expiry_heap.count > 2u * ledger->pending_count + 1024u) {
        uint32_t kept = 0;
        ledger_expiry_t *heap = ledger->expiry_heap.items;
        uint32_t count = ledger->expiry_heap.count;
        ledger->expiry_heap.count = 0;
        for (uint32_t i = 0; i < count; i++) {
            if (heap_entry_live(ledger, &heap[i])) heap[kept++] = heap[i];
        }
        for (uint32_t i = 0; i < kept; i++) heap_push(ledger, heap[i]);
    }
}

uint64_t ledger_expiry_next_ns(const ledger_t *ledger) {
    ledger_t *mutable_ledger = (ledger_t *)ledger;
    while (mutable_ledger->expiry_heap.count > 0 &&
           !heap_entry_live(ledger, &ledger->expiry_heap.items[0])) {
        heap_pop(mutable_ledger);
    }
    return ledger->expiry_heap.count > 0 ? ledger->expiry_heap.items[0].expires_at_ns : 0;
}

/* Builds the ledger's own void of an expired pending transfer and applies it. */
static void expire_one(ledger_t *ledger, uint32_t slot) {
    ledger_pending_t *pending = &ledger->pendings[slot];
    ledger_transfer_t *record = LEDGER_VEC_PUSH(ledger->transfers);
    memset(record, 0, sizeof(*record));
    record->timestamp_ns = ledger__timestamp_next(ledger);
    /* '~' is not allowed in client ids, so this id can never collide. */
    snprintf(record->id, sizeof(record->id), "~expiry-%llu", (unsigned long long)record->timestamp_ns);
    memcpy(record->pending_id, pending->id, sizeof(record->pending_id));
    memcpy(record->debit_account_id, ledger->accounts[pending->debit_index].id, PC_ID_SIZE);
    memcpy(record->credit_account_id, ledger->accounts[pending->credit_index].id, PC_ID_SIZE);
    record->amount = pending->amount;
    memcpy(record->currency, pending->currency, 4);
    record->code = pending->code;
    record->flags = LEDGER_TRANSFER_VOID_PENDING | LEDGER_TRANSFER_EXPIRY;
    uint32_t index = ledger->transfers.count - 1;
    bool inserted = idmap_insert(&ledger->batch_map, ledger__id_hash(ledger, record->id), index);
    PC_ASSERT(inserted);
    ledger__transfer_accounts_push(ledger, pending->debit_index, pending->credit_index);
    ledger__balances_save(ledger, pending->debit_index);
    ledger__balances_save(ledger, pending->credit_index);
    ledger->accounts[pending->debit_index].balances.debits_pending -= pending->amount;
    ledger->accounts[pending->credit_index].balances.credits_pending -= pending->amount;
    ledger__history_add(ledger, pending->debit_index, record);
    ledger__history_add(ledger, pending->credit_index, record);
    ledger__pending_remove(ledger, slot, LEDGER_PENDING_EXPIRED);
}

void ledger_expiry_hold(ledger_t *ledger, const char *prefix, ledger_expiry_held_fn held, void *ctx) {
    free(ledger->expiry_hold_prefix);
    ledger->expiry_hold_prefix = prefix != NULL ? pc_strdup(prefix) : NULL;
    ledger->expiry_held = held;
    ledger->expiry_held_ctx = ctx;
}

/* A pending transfer someone else expires (ledger_expiry_hold). */
static bool expiry_held(const ledger_t *ledger, const ledger_pending_t *pending) {
    const char *prefix = ledger->expiry_hold_prefix;
    if (prefix == NULL) return false;
    size_t bytes = strlen(prefix);
    return strncmp(ledger->accounts[pending->debit_index].id, prefix, bytes) == 0 ||
           strncmp(ledger->accounts[pending->credit_index].id, prefix, bytes) == 0;
}

uint32_t ledger_expire_due(ledger_t *ledger, uint32_t count_max) {
    PC_ASSERT(ledger->batch_open);
    uint32_t expired = 0;
    while (expired < count_max) {
        uint64_t next_ns = ledger_expiry_next_ns(ledger);
        if (next_ns == 0 || next_ns > ledger->now_ns) break;
        uint32_t slot = ledger->expiry_heap.items[0].slot;
        heap_pop(ledger);
        if (expiry_held(ledger, &ledger->pendings[slot])) {
            /* out of the heap: the holder expires it (and is told again after a reload) */
            if (ledger->expiry_held != NULL) ledger->expiry_held(ledger->expiry_held_ctx, ledger->pendings[slot].id);
            continue;
        }
        expire_one(ledger, slot);
        expired++;
    }
    return expired;
}
