/* writer/grants.c: the owners' grants in memory (grants.h).
 *
 * Most accounts have one owner, the merchant that created them: the first grant of
 * each existing account is kept in a dense array by account index (4 bytes an
 * account; the common check is one load from it). Further grants of the same account
 * are pairs (owner number, account index) packed into 64 bits in an open-addressing
 * set, consulted only when the array says another owner: exact, whatever the ids look
 * like; a second set holds the same pairs placed by the account alone, so that an
 * account's owners (an event's, events/outbox.c) are one probe chain to walk. A
 * grant of an id that has no account yet (a merchant key made with accounts
 * still to come) is kept by id, consulted only when both miss. Owner numbers come
 * from a small table of owner ids.
 *
 * A batch's grants go straight into the tables and are logged; a failed batch takes
 * them out (backward-shift deletion keeps probe chains whole without tombstones).
 * Growth failure is fatal, as for the ledger's own tables: nothing of the batch was
 * acknowledged.
 *
 * The owners of an account named by id (an event's: several a payment, always the
 * same merchant accounts) are kept in a small cache by id, so that the common answer
 * is a hash of the id and one comparison, not the ledger's keyed lookup and a walk.
 * Every change of the tables (a grant, a new owner whose entries may move, a
 * rollback) empties it, so it answers what the tables would. An account created
 * without a grant keeps the owners its id had (its grants by id), so the ledger's
 * changes need no notice. */
#include "writer/grants.h"

#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "paycore/limits.h"
#include "store/store_api.h"
#include "store/store_shard.h"

#define PAIR_EMPTY UINT64_MAX /* owner UINT32_MAX is never handed out */
#define PAIRS_CAPACITY_MIN 1024u
#define NAMES_CAPACITY_MIN 64u
#define OWNERS_CACHE_SLOTS 64u  /* power of two */
#define OWNERS_CACHED_MAX 4u    /* an account with more owners is not cached */

typedef struct {
    uint64_t *slots;
    uint32_t capacity; /* power of two; count <= capacity / 2 */
    uint32_t count;
    bool by_account;   /* placed by the account alone: its owners share one probe chain */
} pair_set;

/* Ids with their owner (owner ids: owner unused), found through 'slots' (entry + 1,
 * 0 = empty). Entries are only appended, or cut back after a failed batch. */
typedef struct {
    uint32_t owner;
    char id[PC_ID_SIZE];
} name_entry;

typedef struct {
    name_entry *entries;
    uint32_t count;
    uint32_t entries_capacity;
    uint32_t *slots;
    uint32_t capacity; /* power of two; count <= capacity / 2 */
} name_table;

/* A growable array of uint32_t (indices, owners + 1). */
typedef struct {
    uint32_t *items;
    uint32_t count;
    uint32_t capacity;
} u32_array;

/* One account's owners as the tables gave them (all of them: count <= OWNERS_CACHED_MAX). */
typedef struct {
    uint64_t filled_at;          /* the tables' change count when filled; 0: empty */
    uint32_t count;
    const char *owners[OWNERS_CACHED_MAX]; /* borrowed from the owners table */
    char account_id[PC_ID_SIZE];
} owners_cached;

struct writer_grants {
    uint64_t changes;            /* counts the tables' changes from 1: a cache entry of another is stale */
    owners_cached *owners_cache; /* OWNERS_CACHE_SLOTS, by id hash */
    u32_array first_owner;       /* per account index: its first grant's owner + 1, 0 = none */
    pair_set pairs;              /* the other grants of existing accounts */
    pair_set pairs_by_account;   /* the same, walked to list an account's owners */
    name_table owners;
    name_table by_id;            /* grants of ids without an account */
    u32_array batch_firsts;      /* account indices whose first grant the open batch made */
    uint64_t *batch_pairs;       /* pairs the open batch added */
    uint32_t batch_pair_count;
    uint32_t batch_pair_capacity;
    uint32_t by_id_committed;    /* by_id entries before the open batch */
};

static uint64_t pair_of(uint32_t owner, uint32_t account_index) {
    return (uint64_t)owner << 32 | account_index;
}

static uint32_t pair_home(const pair_set *set, uint64_t pair) {
    if (set->by_account) {
        uint32_t account_index = (uint32_t)pair;
        return (uint32_t)pc_hash64(&account_index, sizeof account_index) & (set->capacity - 1);
    }
    return (uint32_t)pc_hash64(&pair, sizeof pair) & (set->capacity - 1);
}

static void *array_grow(void *items, uint32_t *capacity, uint32_t capacity_min, size_t item_bytes) {
    uint32_t capacity_new = *capacity ? *capacity * 2u : capacity_min;
    PC_ASSERT(capacity_new > *capacity);
    void *grown = realloc(items, (size_t)capacity_new * item_bytes);
    PC_ASSERT(grown != NULL);
    *capacity = capacity_new;
    return grown;
}

static void u32_push(u32_array *array, uint32_t value) {
    if (array->count == array->capacity) {
        array->items = array_grow(array->items, &array->capacity, 64, sizeof(uint32_t));
    }
    array->items[array->count++] = value;
}

/* The first-owner slot of 'account_index', the array grown (zeroed) to hold it. */
static uint32_t *first_owner_slot(writer_grants_t *grants, uint32_t account_index) {
    u32_array *firsts = &grants->first_owner;
    if (account_index >= firsts->capacity) {
        uint32_t capacity = firsts->capacity ? firsts->capacity : PAIRS_CAPACITY_MIN;
        while (capacity <= account_index) {
            PC_ASSERT(capacity <= UINT32_MAX / 2);
            capacity *= 2;
        }
        firsts->items = realloc(firsts->items, (size_t)capacity * sizeof(uint32_t));
        PC_ASSERT(firsts->items != NULL);
        memset(firsts->items + firsts->capacity, 0, (size_t)(capacity - firsts->capacity) * sizeof(uint32_t));
        firsts->capacity = capacity;
    }
    return &firsts->items[account_index];
}

/* ---- the pair set ---- */

static bool pair_slot(const pair_set *set, uint64_t pair, uint32_t *slot) {
    uint32_t mask = set->capacity - 1;
    for (uint32_t at = pair_home(set, pair);; at = (at + 1) & mask) {
        if (set->slots[at] == pair) {
            *slot = at;
            return true;
        }
        if (set->slots[at] == PAIR_EMPTY) {
            *slot = at;
            return false;
        }
    }
}

static void pairs_resize(pair_set *set, uint32_t capacity) {
    pair_set grown = {.slots = malloc((size_t)capacity * sizeof(uint64_t)), .capacity = capacity,
                      .by_account = set->by_account};
    PC_ASSERT(grown.slots != NULL);
    memset(grown.slots, 0xff, (size_t)capacity * sizeof(uint64_t)); /* PAIR_EMPTY */
    for (uint32_t i = 0; i < set->capacity; i++) {
        uint32_t slot;
        if (set->slots[i] == PAIR_EMPTY) continue;
        bool present = pair_slot(&grown, set->slots[i], &slot);
        PC_ASSERT(!present);
        grown.slots[slot] = set->slots[i];
        grown.count++;
    }
    free(set->slots);
    *set = grown;
}

/* True when added; false when already there. */
static bool pair_insert(pair_set *set, uint64_t pair) {
    PC_ASSERT(pair != PAIR_EMPTY);
    if (set->count + 1 > set->capacity / 2) pairs_resize(set, set->capacity * 2);
    uint32_t slot;
    if (pair_slot(set, pair, &slot)) return false;
    set->slots[slot] = pair;
    set->count++;
    return true;
}

/* Backward-shift deletion: later members of the probe chain move up into the hole
 * unless their home lies cyclically after it. */
static void pair_remove(pair_set *set, uint64_t pair) {
    uint32_t hole, mask = set->capacity - 1;
    bool present = pair_slot(set, pair, &hole);
    PC_ASSERT(present);
    for (uint32_t at = (hole + 1) & mask; set->slots[at] != PAIR_EMPTY; at = (at + 1) & mask) {
        uint32_t home = pair_home(set, set->slots[at]);
        bool stays = hole <= at ? (hole < home && home <= at) : (hole < home || home <= at);
        if (stays) continue;
        set->slots[hole] = set->slots[at];
        hole = at;
    }
    set->slots[hole] = PAIR_EMPTY;
    set->count--;
}

/* ---- name tables ---- */

static uint32_t name_home(const name_table *table, uint32_t owner, const char *id) {
    uint64_t hash = pc_hash64(id, strlen(id)) + owner * 0x9e3779b97f4a7c15ull; /* owner: spread */
    return (uint32_t)hash & (table->capacity - 1);
}

/* The entry index of (owner, id), or -1. */
static int64_t name_find(const name_table *table, uint32_t owner, const char *id) {
    if (table->count == 0) return -1;
    uint32_t mask = table->capacity - 1;
    for (uint32_t at = name_home(table, owner, id); table->slots[at] != 0; at = (at + 1) & mask) {
        const name_entry *entry = &table->entries[table->slots[at] - 1];
        if (entry->owner == owner && strcmp(entry->id, id) == 0) return table->slots[at] - 1;
    }
    return -1;
}

static void name_index(name_table *table, uint32_t entry_index) {
    const name_entry *entry = &table->entries[entry_index];
    uint32_t mask = table->capacity - 1;
    uint32_t at = name_home(table, entry->owner, entry->id);
    while (table->slots[at] != 0) at = (at + 1) & mask;
    table->slots[at] = entry_index + 1;
}

/* Rebuilds the index over entries [0, count) at 'capacity' slots. */
static void names_reindex(name_table *table, uint32_t capacity) {
    free(table->slots);
    table->slots = calloc(capacity, sizeof(uint32_t));
    PC_ASSERT(table->slots != NULL);
    table->capacity = capacity;
    for (uint32_t i = 0; i < table->count; i++) name_index(table, i);
}

static uint32_t name_add(name_table *table, uint32_t owner, const char *id) {
    PC_ASSERT(pc_id_valid(id));
    if (table->count == table->entries_capacity) {
        table->entries = array_grow(table->entries, &table->entries_capacity, NAMES_CAPACITY_MIN,
                                    sizeof(name_entry));
    }
    uint32_t index = table->count++;
    table->entries[index].owner = owner;
    memcpy(table->entries[index].id, id, strlen(id) + 1);
    if (table->count > table->capacity / 2) {
        names_reindex(table, table->capacity ? table->capacity * 2 : NAMES_CAPACITY_MIN);
    } else {
        name_index(table, index);
    }
    return index;
}

static void names_free(name_table *table) {
    free(table->entries);
    free(table->slots);
}

/* ---- the contract ---- */

static bool pairs_open(pair_set *set, bool by_account) {
    set->slots = malloc(PAIRS_CAPACITY_MIN * sizeof(uint64_t));
    if (set->slots == NULL) return false;
    memset(set->slots, 0xff, PAIRS_CAPACITY_MIN * sizeof(uint64_t)); /* PAIR_EMPTY */
    set->capacity = PAIRS_CAPACITY_MIN;
    set->by_account = by_account;
    return true;
}

pc_status writer_grants_open(writer_grants_t **out) {
    writer_grants_t *grants = calloc(1, sizeof(*grants));
    if (grants == NULL) return PC_NO_MEMORY;
    grants->changes = 1;
    grants->owners_cache = calloc(OWNERS_CACHE_SLOTS, sizeof(owners_cached));
    if (grants->owners_cache == NULL || !pairs_open(&grants->pairs, false) ||
        !pairs_open(&grants->pairs_by_account, true)) {
        writer_grants_close(grants);
        return PC_NO_MEMORY;
    }
    *out = grants;
    return PC_OK;
}

void writer_grants_close(writer_grants_t *grants) {
    if (grants == NULL) return;
    free(grants->owners_cache);
    free(grants->first_owner.items);
    free(grants->batch_firsts.items);
    free(grants->pairs.slots);
    free(grants->pairs_by_account.slots);
    names_free(&grants->owners);
    names_free(&grants->by_id);
    free(grants->batch_pairs);
    free(grants);
}

uint32_t writer_grants_owner(writer_grants_t *grants, const char *owner_id) {
    int64_t found = name_find(&grants->owners, 0, owner_id);
    if (found >= 0) return (uint32_t)found;
    PC_ASSERT(grants->owners.count < UINT32_MAX);
    grants->changes++; /* the owner ids the cache borrows may move */
    return name_add(&grants->owners, 0, owner_id);
}

static void batch_pair_log(writer_grants_t *grants, uint64_t pair) {
    if (grants->batch_pair_count == grants->batch_pair_capacity) {
        grants->batch_pairs = array_grow(grants->batch_pairs, &grants->batch_pair_capacity, 64,
                                         sizeof(uint64_t));
    }
    grants->batch_pairs[grants->batch_pair_count++] = pair;
}

void writer_grants_add(writer_grants_t *grants, uint32_t owner, uint32_t account_index,
                       const char *account_id) {
    PC_ASSERT(owner < grants->owners.count);
    if (account_index == WRITER_GRANT_NO_ACCOUNT) {
        if (name_find(&grants->by_id, owner, account_id) >= 0) return;
        grants->changes++;
        name_add(&grants->by_id, owner, account_id);
        return;
    }
    uint32_t *first = first_owner_slot(grants, account_index);
    if (*first == owner + 1) return;
    if (*first == 0) {
        grants->changes++;
        *first = owner + 1;
        u32_push(&grants->batch_firsts, account_index);
        return;
    }
    uint64_t pair = pair_of(owner, account_index);
    if (!pair_insert(&grants->pairs, pair)) return; /* held already: not the batch's to take back */
    grants->changes++;
    bool listed = pair_insert(&grants->pairs_by_account, pair);
    PC_ASSERT(listed);
    batch_pair_log(grants, pair);
}


bool writer_grants_holds(const writer_grants_t *grants, uint32_t owner, uint32_t account_index,
                         const char *account_id) {
    const u32_array *firsts = &grants->first_owner;
    if (account_index < firsts->capacity && firsts->items[account_index] == owner + 1) return true;
    uint32_t slot;
    if (grants->pairs.count > 0 && pair_slot(&grants->pairs, pair_of(owner, account_index), &slot)) return true;
    return grants->by_id.count > 0 && name_find(&grants->by_id, owner, account_id) >= 0;
}

/* Keeps the first 'max' distinct ids in id order in 'out' (*count of them). */
static void owner_keep(const char **out, uint32_t *count, uint32_t max, const char *id) {
    uint32_t at = 0;
    while (at < *count && strcmp(out[at], id) < 0) at++;
    if (at == max || (at < *count && strcmp(out[at], id) == 0)) return;
    uint32_t last = *count < max ? *count : max - 1;
    for (uint32_t i = last; i > at; i--) out[i] = out[i - 1];
    out[at] = id;
    if (*count < max) (*count)++;
}

uint32_t writer_grants_owners_of(const writer_grants_t *grants, uint32_t account_index, const char *account_id,
                                 const char **owners, uint32_t owners_max) {
    PC_ASSERT(owners_max > 0);
    uint32_t count = 0;
    const u32_array *firsts = &grants->first_owner;
    bool indexed = account_index != WRITER_GRANT_NO_ACCOUNT && account_index < firsts->capacity;
    if (indexed && firsts->items[account_index] != 0) {
        owner_keep(owners, &count, owners_max, grants->owners.entries[firsts->items[account_index] - 1].id);
    }
    const pair_set *by_account = &grants->pairs_by_account;
    if (indexed && by_account->count > 0) { /* an account's other owners: one probe chain */
        uint32_t mask = by_account->capacity - 1;
        uint64_t probe = pair_of(0, account_index);
        for (uint32_t at = pair_home(by_account, probe); by_account->slots[at] != PAIR_EMPTY; at = (at + 1) & mask) {
            uint64_t pair = by_account->slots[at];
            if ((uint32_t)pair == account_index) {
                owner_keep(owners, &count, owners_max, grants->owners.entries[pair >> 32].id);
            }
        }
    }
    for (uint32_t i = 0; i < grants->by_id.count; i++) { /* granted before the account existed */
        const name_entry *entry = &grants->by_id.entries[i];
        if (strcmp(entry->id, account_id) == 0) owner_keep(owners, &count, owners_max, grants->owners.entries[entry->owner].id);
    }
    return count;
}

/* The cache's answer for 'account_id': the first 'owners_max' of its owners. */
static uint32_t owners_cached_copy(const owners_cached *entry, const char **owners, uint32_t owners_max) {
    uint32_t count = entry->count < owners_max ? entry->count : owners_max;
    for (uint32_t i = 0; i < count; i++) owners[i] = entry->owners[i];
    return count;
}

uint32_t writer_grants_owners_by_id(writer_grants_t *grants, const ledger_t *ledger, const char *account_id,
                                    const char **owners, uint32_t owners_max) {
    size_t id_bytes = strnlen(account_id, PC_ID_SIZE);
    owners_cached *entry = &grants->owners_cache[pc_hash64(account_id, id_bytes) & (OWNERS_CACHE_SLOTS - 1)];
    bool cacheable = id_bytes < PC_ID_SIZE; /* a longer one names no account */
    if (cacheable && entry->filled_at == grants->changes && memcmp(entry->account_id, account_id, id_bytes + 1) == 0) {
        return owners_cached_copy(entry, owners, owners_max);
    }
    const ledger_account_t *account = ledger_account_find(ledger, account_id);
    uint32_t index = account != NULL ? ledger_account_index(ledger, account) : WRITER_GRANT_NO_ACCOUNT;
    const char *found[OWNERS_CACHED_MAX + 1]; /* one more: tells an account with too many to keep */
    uint32_t count = writer_grants_owners_of(grants, index, account_id, found, OWNERS_CACHED_MAX + 1);
    if (!cacheable || count > OWNERS_CACHED_MAX) {
        return writer_grants_owners_of(grants, index, account_id, owners, owners_max);
    }
    entry->filled_at = grants->changes;
    entry->count = count;
    memcpy(entry->account_id, account_id, id_bytes + 1);
    for (uint32_t i = 0; i < count; i++) entry->owners[i] = found[i];
    return owners_cached_copy(entry, owners, owners_max);
}

void writer_grants_commit(writer_grants_t *grants) {
    grants->batch_firsts.count = 0;
    grants->batch_pair_count = 0;
    grants->by_id_committed = grants->by_id.count;
}

void writer_grants_rollback(writer_grants_t *grants) {
    grants->changes++;
    for (uint32_t i = 0; i < grants->batch_firsts.count; i++) {
        grants->first_owner.items[grants->batch_firsts.items[i]] = 0;
    }
    grants->batch_firsts.count = 0;
    while (grants->batch_pair_count > 0) {
        uint64_t pair = grants->batch_pairs[--grants->batch_pair_count];
        pair_remove(&grants->pairs, pair);
        pair_remove(&grants->pairs_by_account, pair);
    }
    if (grants->by_id.count != grants->by_id_committed) {
        grants->by_id.count = grants->by_id_committed;
        names_reindex(&grants->by_id, grants->by_id.capacity);
    }
}

/* ---- the writer's side ---- */

/* A leg of a global transaction (src/shard/) names a clearing account where the
 * command named an account on another shard: that shard's writer checks the owner's
 * reach of the real account in its own leg. Clients cannot name clearing accounts on
 * a set (id_reserved), and only legs pass this, so a single store is unaffected.
 * The payments' chart is granted to a merchant's keys for reading only: money moves
 * on it through the payments layer (captures, refunds, payouts), never by the owner's
 * own transfers (one would take from its available balance around the payouts, or
 * post or void a reserve of the payments), so it fails as a missing account. */
static bool owner_reaches(const void *ctx, uint32_t account_index, const char *account_id) {
    const writer_reach_t *reach = ctx;
    if (pc_id_payments_chart(account_id)) return false;
    if (reach->leg && store_id_reserved(account_id)) return true;
    return writer_grants_holds(reach->grants, reach->owner, account_index, account_id);
}

const ledger_reach_t *writer_grants_reach(writer_grants_t *grants, const writer_cmd_t *cmd,
                                          writer_reach_t *storage) {
    if (cmd->owner_id == NULL) return NULL;
    storage->grants = grants;
    storage->owner = writer_grants_owner(grants, cmd->owner_id);
    storage->leg = cmd->gtid != NULL;
    storage->reach = (ledger_reach_t){owner_reaches, storage};
    return &storage->reach;
}

static void grant_by_id(writer_grants_t *grants, const ledger_t *ledger, uint32_t owner,
                        const char *account_id) {
    const ledger_account_t *account = ledger_account_find(ledger, account_id);
    uint32_t index = account != NULL ? ledger_account_index(ledger, account) : WRITER_GRANT_NO_ACCOUNT;
    writer_grants_add(grants, owner, index, account_id);
}

void writer_grants_apply(writer_grants_t *grants, const ledger_t *ledger, const writer_cmd_t *cmd) {
    if (cmd->kind == WRITER_CMD_CREATE_ACCOUNTS && cmd->owner_id != NULL) {
        uint32_t owner = writer_grants_owner(grants, cmd->owner_id);
        for (uint32_t i = 0; i < cmd->event_count; i++) {
            if (cmd->account_results[i].status == PC_OK) grant_by_id(grants, ledger, owner, cmd->accounts[i].id);
        }
    }
    if (cmd->grant_count > 0) {
        PC_ASSERT(cmd->grantee_id != NULL);
        uint32_t owner = writer_grants_owner(grants, cmd->grantee_id);
        for (uint32_t i = 0; i < cmd->grant_count; i++) grant_by_id(grants, ledger, owner, cmd->grant_account_ids[i]);
    }
}

pc_status writer_grants_write(const writer_cmd_t *cmd, store_tx_t *tx) {
    pc_status status = PC_OK;
    if (cmd->kind == WRITER_CMD_CREATE_ACCOUNTS && cmd->owner_id != NULL) {
        for (uint32_t i = 0; i < cmd->event_count && status == PC_OK; i++) {
            if (cmd->account_results[i].status != PC_OK) continue;
            status = store_api_grant_insert(tx, cmd->owner_id, cmd->accounts[i].id);
        }
    }
    for (uint32_t i = 0; i < cmd->grant_count && status == PC_OK; i++) {
        status = store_api_grant_insert(tx, cmd->grantee_id, cmd->grant_account_ids[i]);
    }
    return status;
}

typedef struct {
    writer_grants_t *grants;
    const ledger_t *ledger;
} grants_loader;

static void grant_loaded(const char *key_id, const char *account_id, void *ctx) {
    grants_loader *loader = ctx;
    if (!pc_id_valid(key_id) || !pc_id_valid(account_id)) return; /* can name nothing */
    grant_by_id(loader->grants, loader->ledger, writer_grants_owner(loader->grants, key_id), account_id);
}

pc_status writer_grants_load(writer_grants_t *grants, store_t *store, const ledger_t *ledger) {
    store_reader_t *reader;
    pc_status status = store_reader_open(store, &reader);
    if (status != PC_OK) return status;
    grants_loader loader = {grants, ledger};
    status = store_api_grants_list(reader, grant_loaded, &loader);
    store_reader_close(reader);
    writer_grants_commit(grants);
    return status;
}
