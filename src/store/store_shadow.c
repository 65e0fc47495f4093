/* store/store_shadow.c: the committed balances of every account, for readers, on
 * every backend. Account rows in the database are written at balance snapshots only (writing ~16k random
 * rows a batch would cost as much as the transfers), so readers take balances from
 * here: the writer publishes each touched account after COMMIT under a per-account
 * sequence lock; a reader retries while a publish is in flight. A batch's publishes
 * sit inside one more sequence lock (the generation), so that a reader of several
 * accounts retries until it read them all between two batches: per-account locks
 * alone let a page of balances show one leg of a transfer without the other. Chunks
 * never move, so readers need no lock to find an entry. */
#include <sched.h>
#include <stdlib.h>

#include "core/core.h"
#include "store/store_shadow.h"

#define SHADOW_CHUNK_ENTRIES 65536u
#define SHADOW_CHUNKS ((LEDGER_ACCOUNTS_MAX + SHADOW_CHUNK_ENTRIES - 1) / SHADOW_CHUNK_ENTRIES)

typedef struct {
    uint32_t seq;          /* odd while being written; 0 = never published */
    int64_t balances[4];
} shadow_entry;

struct store_shadow {
    uint64_t generation;   /* odd while the writer publishes a batch */
    shadow_entry *chunks[SHADOW_CHUNKS];
};

store_shadow_t *store_shadow_new(void) { return calloc(1, sizeof(store_shadow_t)); }

void store_shadow_free(store_shadow_t *shadow) {
    if (shadow == NULL) return;
    for (uint32_t i = 0; i < SHADOW_CHUNKS; i++) free(shadow->chunks[i]);
    free(shadow);
}

void store_shadow_publish(store_shadow_t *shadow, uint32_t account_no, const ledger_balances_t *b) {
    PC_ASSERT(account_no < LEDGER_ACCOUNTS_MAX);
    shadow_entry *chunk = __atomic_load_n(&shadow->chunks[account_no / SHADOW_CHUNK_ENTRIES], __ATOMIC_ACQUIRE);
    if (chunk == NULL) {
        chunk = calloc(SHADOW_CHUNK_ENTRIES, sizeof(shadow_entry));
        PC_ASSERT(chunk != NULL);
        __atomic_store_n(&shadow->chunks[account_no / SHADOW_CHUNK_ENTRIES], chunk, __ATOMIC_RELEASE);
    }
    shadow_entry *e = &chunk[account_no % SHADOW_CHUNK_ENTRIES];
    uint32_t seq = __atomic_load_n(&e->seq, __ATOMIC_RELAXED);
    __atomic_store_n(&e->seq, seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    __atomic_store_n(&e->balances[0], b->debits_pending, __ATOMIC_RELAXED);
    __atomic_store_n(&e->balances[1], b->debits_posted, __ATOMIC_RELAXED);
    __atomic_store_n(&e->balances[2], b->credits_pending, __ATOMIC_RELAXED);
    __atomic_store_n(&e->balances[3], b->credits_posted, __ATOMIC_RELAXED);
    __atomic_store_n(&e->seq, seq + 2, __ATOMIC_RELEASE);
}

bool store_shadow_read(const store_shadow_t *shadow, uint32_t account_no, ledger_balances_t *out) {
    if (account_no >= LEDGER_ACCOUNTS_MAX) return false;
    const shadow_entry *chunk = __atomic_load_n(&shadow->chunks[account_no / SHADOW_CHUNK_ENTRIES], __ATOMIC_ACQUIRE);
    if (chunk == NULL) return false;
    const shadow_entry *e = &chunk[account_no % SHADOW_CHUNK_ENTRIES];
    for (;;) {
        uint32_t before = __atomic_load_n(&e->seq, __ATOMIC_ACQUIRE);
        if (before == 0) return false;
        if (before & 1) continue; /* a publish is in flight: a few stores, retry */
        out->debits_pending = __atomic_load_n(&e->balances[0], __ATOMIC_RELAXED);
        out->debits_posted = __atomic_load_n(&e->balances[1], __ATOMIC_RELAXED);
        out->credits_pending = __atomic_load_n(&e->balances[2], __ATOMIC_RELAXED);
        out->credits_posted = __atomic_load_n(&e->balances[3], __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&e->seq, __ATOMIC_RELAXED) == before) return true;
    }
}

void store_shadow_batch_begin(store_shadow_t *shadow) {
    uint64_t generation = __atomic_load_n(&shadow->generation, __ATOMIC_RELAXED);
    PC_ASSERT((generation & 1) == 0);
    __atomic_store_n(&shadow->generation, generation + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

void store_shadow_batch_end(store_shadow_t *shadow) {
    uint64_t generation = __atomic_load_n(&shadow->generation, __ATOMIC_RELAXED);
    __atomic_store_n(&shadow->generation, generation + 1, __ATOMIC_RELEASE);
}

void store_shadow_read_page(const store_shadow_t *shadow, const uint32_t *nos, ledger_account_t *accounts,
                            uint32_t count) {
    for (;;) {
        uint64_t before = __atomic_load_n(&shadow->generation, __ATOMIC_ACQUIRE);
        if (before & 1) {
            sched_yield(); /* a batch is being published: microseconds */
            continue;
        }
        for (uint32_t i = 0; i < count; i++) (void)store_shadow_read(shadow, nos[i], &accounts[i].balances);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&shadow->generation, __ATOMIC_RELAXED) == before) return;
    }
}
