/* ledger/ledger_internal.h: the ledger's inside, shared by its files only. */
#ifndef PAYCORE_LEDGER_INTERNAL_H
#define PAYCORE_LEDGER_INTERNAL_H

#include <stddef.h>

#include "ledger/idmap.h"
#include "ledger/ledger.h"

/* An open pending transfer: what post, void and expiry need without the store. */
typedef struct {
    char id[PC_ID_SIZE];
    uint32_t debit_index;
    uint32_t credit_index;
    int64_t amount;
    char currency[4];
    uint16_t code;
    uint64_t timestamp_ns;
    uint64_t expires_at_ns;   /* 0 = never */
    uint32_t generation;      /* bumped when the slot is freed: stale heap entries */
    bool in_use;
} ledger_pending_t;

typedef struct {
    uint64_t expires_at_ns;
    uint32_t slot;
    uint32_t generation;
} ledger_expiry_t;

typedef enum {
    UNDO_BALANCES = 1,
    UNDO_ACCOUNT_CREATED,
    UNDO_PENDING_ADDED,
    UNDO_PENDING_REMOVED,
} ledger_undo_kind;

typedef struct {
    ledger_undo_kind kind;
    uint32_t index;                /* account index or pending slot */
    ledger_balances_t balances;    /* UNDO_BALANCES: the balances before */
} ledger_undo_t;

/* Lengths to return to when a linked chain fails (ledger.h's batch mark). */
typedef ledger_mark_t ledger_savepoint_t;

/* A growable array of fixed-size items; growth failure is fatal (out of memory). */
#define LEDGER_VEC(type) struct { type *items; uint32_t count; uint32_t capacity; }

#define BATCH_MAP_FAILURE 0x80000000u

struct ledger {
    /* Random per ledger, never stored: ids are client-chosen, and without the key no
     * one can pick ids that pile into one probe run of the maps below. */
    pc_hash_key_t id_key;
    ledger_account_t *accounts;
    uint32_t *account_touched_epoch;
    uint32_t account_count;
    uint32_t account_capacity;
    idmap_t account_map;

    ledger_pending_t *pendings;
    uint32_t pending_capacity;
    uint32_t pending_slots_used;   /* high-water mark of slots ever used */
    uint32_t pending_count;        /* open now */
    LEDGER_VEC(uint32_t) pending_free;
    LEDGER_VEC(uint32_t) pending_freed; /* freed in this batch: reusable after commit */
    idmap_t pending_map;
    LEDGER_VEC(ledger_expiry_t) expiry_heap;
    char *expiry_hold_prefix;      /* ledger_expiry_hold: NULL none */
    ledger_expiry_held_fn expiry_held;
    void *expiry_held_ctx;

    uint64_t clock_ns;     /* last timestamp assigned */
    uint64_t now_ns;       /* the batch's time */
    uint32_t epoch;        /* batch counter, for touched-account dedupe */
    bool batch_open;

    LEDGER_VEC(ledger_undo_t) undo;
    LEDGER_VEC(uint32_t) accounts_created;
    LEDGER_VEC(uint32_t) accounts_touched;
    LEDGER_VEC(ledger_transfer_t) transfers;
    LEDGER_VEC(uint32_t) transfer_accounts; /* two per transfer: debit, credit index */
    LEDGER_VEC(ledger_pending_change_t) pending_changes;
    LEDGER_VEC(ledger_failure_t) failures;
    LEDGER_VEC(ledger_history_t) history;
    idmap_t batch_map;     /* ids made in this batch -> transfers / failures */
    ledger_changes_t changes;
};

/* An id's hash in the ledger's maps (keyed: see struct ledger). */
static inline uint64_t ledger__id_hash(const ledger_t *ledger, const char *id) {
    return idmap_hash(&ledger->id_key, id);
}

/* Grows 'vec' to hold one more item and returns the new slot. */
void *ledger__vec_push(void *vec_items, uint32_t *count, uint32_t *capacity, size_t item_bytes);
#define LEDGER_VEC_PUSH(vec) \
    ((__typeof__((vec).items))ledger__vec_push(&(vec).items, &(vec).count, &(vec).capacity, \
                                               sizeof(*(vec).items)))

uint64_t ledger__timestamp_next(ledger_t *ledger);
/* Records the account indices of the transfer just pushed. */
void ledger__transfer_accounts_push(ledger_t *ledger, uint32_t debit_index, uint32_t credit_index);
void ledger__savepoint(const ledger_t *ledger, ledger_savepoint_t *out);
void ledger__rollback_to(ledger_t *ledger, const ledger_savepoint_t *savepoint);
void ledger__balances_save(ledger_t *ledger, uint32_t account_index);
void ledger__history_add(ledger_t *ledger, uint32_t account_index, const ledger_transfer_t *record);

/* Pending table (pending.c). */
bool ledger__pending_find(const ledger_t *ledger, const char *id, uint32_t *slot);
pc_status ledger__pending_add(ledger_t *ledger, const ledger_transfer_t *record,
                              uint32_t debit_index, uint32_t credit_index);
void ledger__pending_remove(ledger_t *ledger, uint32_t slot, ledger_pending_state state);
void ledger__pending_undo_add(ledger_t *ledger, uint32_t slot);
void ledger__pending_undo_remove(ledger_t *ledger, uint32_t slot);
bool ledger__pending_init(ledger_t *ledger);
void ledger__pending_free(ledger_t *ledger);
void ledger__pending_commit(ledger_t *ledger);

/* Linked chains (chain.c): runs 'apply' on each event; chains commit or fail whole. */
typedef pc_status (*ledger_apply_fn)(ledger_t *ledger, const void *events, uint32_t index,
                                     void *results, const void *ctx);
typedef void (*ledger_result_set_fn)(void *results, uint32_t index, pc_status status);
/* Called for a standalone (unlinked) event that failed: transfers burn the id. */
typedef void (*ledger_failed_fn)(ledger_t *ledger, const void *events, uint32_t index,
                                 pc_status status);
void ledger__apply_chains(ledger_t *ledger, const void *events, uint32_t count,
                          bool (*linked)(const void *events, uint32_t index),
                          ledger_apply_fn apply, ledger_result_set_fn result_set,
                          ledger_failed_fn failed, void *results, const void *ctx);
pc_status ledger__account_create(ledger_t *ledger, const ledger_account_t *account, uint32_t *index);

#endif
