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
#include <time.h>

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
    uint64_t generation_seq; /* the journal seq of the batch published last (or being published) */
    uint64_t committing_seq; /* the batch being committed, or the last published */
    uint64_t published_seq;
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

/* PAYCORE_TEST_SHADOW_PUBLISH_DELAY_MS=<ms>: the writer waits that long after a COMMIT
 * before it publishes the batch's balances, so that tests can read in between. */
static uint32_t publish_delay_ms(void) {
    static int32_t cache_ms = -1;
    return pc_test_hold_ms(&cache_ms, "PAYCORE_TEST_SHADOW_PUBLISH_DELAY_MS", 60000);
}

/* The generation made odd (readers of a page retry), at the batch boundary 'seq'. */
static void generation_open(store_shadow_t *shadow, uint64_t seq) {
    uint64_t generation = __atomic_load_n(&shadow->generation, __ATOMIC_RELAXED);
    PC_ASSERT((generation & 1) == 0);
    __atomic_store_n(&shadow->generation, generation + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    __atomic_store_n(&shadow->generation_seq, seq, __ATOMIC_RELAXED);
}

void store_shadow_batch_begin(store_shadow_t *shadow) {
    uint32_t delay_ms = publish_delay_ms();
    if (delay_ms > 0) (void)pc_test_hold_sleep(delay_ms, delay_ms, NULL, NULL);
    /* the batch being published is the one marked before its COMMIT */
    generation_open(shadow, __atomic_load_n(&shadow->committing_seq, __ATOMIC_RELAXED));
}

void store_shadow_batch_end(store_shadow_t *shadow) {
    uint64_t generation = __atomic_load_n(&shadow->generation, __ATOMIC_RELAXED);
    __atomic_store_n(&shadow->generation, generation + 1, __ATOMIC_RELEASE);
}

uint64_t store_shadow_read_page(const store_shadow_t *shadow, const uint32_t *nos, ledger_account_t *accounts,
                                uint32_t count) {
    for (;;) {
        uint64_t before = __atomic_load_n(&shadow->generation, __ATOMIC_ACQUIRE);
        if (before & 1) {
            sched_yield(); /* a batch is being published: microseconds */
            continue;
        }
        uint64_t seq = __atomic_load_n(&shadow->generation_seq, __ATOMIC_RELAXED);
        for (uint32_t i = 0; i < count; i++) (void)store_shadow_read(shadow, nos[i], &accounts[i].balances);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&shadow->generation, __ATOMIC_RELAXED) == before) return seq;
    }
}

/* ---- a batch readers may see before its balances are here ---- */

void store_shadow_committing(store_shadow_t *shadow, uint64_t seq) {
    PC_ASSERT(seq > __atomic_load_n(&shadow->published_seq, __ATOMIC_RELAXED));
    __atomic_store_n(&shadow->committing_seq, seq, __ATOMIC_SEQ_CST);
}

void store_shadow_published(store_shadow_t *shadow, uint64_t seq) {
    __atomic_store_n(&shadow->published_seq, seq, __ATOMIC_SEQ_CST);
    __atomic_store_n(&shadow->committing_seq, seq, __ATOMIC_SEQ_CST);
}

void store_shadow_loaded(store_shadow_t *shadow, uint64_t seq) {
    generation_open(shadow, seq);
    store_shadow_batch_end(shadow);
    store_shadow_published(shadow, seq);
}

void store_shadow_commit_failed(store_shadow_t *shadow) {
    __atomic_store_n(&shadow->committing_seq, __atomic_load_n(&shadow->published_seq, __ATOMIC_SEQ_CST),
                     __ATOMIC_SEQ_CST);
}

/* The marked batch not yet published, or 0. */
static uint64_t unpublished(const store_shadow_t *shadow) {
    uint64_t committing = __atomic_load_n(&shadow->committing_seq, __ATOMIC_SEQ_CST);
    return committing > __atomic_load_n(&shadow->published_seq, __ATOMIC_SEQ_CST) ? committing : 0;
}

void store_shadow_settle(const store_shadow_t *shadow, pc_status (*visible_head)(void *ctx, uint64_t *seq_out),
                         void *ctx) {
    uint64_t pending = unpublished(shadow);
    uint64_t head = 0;
    if (pending == 0 || visible_head(ctx, &head) != PC_OK || head < pending) return;
    /* committed and visible: the writer is between COMMIT and publishing, or descheduled
     * there; a few yields, then short sleeps */
    for (uint32_t round = 0; unpublished(shadow) == pending; round++) {
        if (round < 64) {
            sched_yield();
        } else {
            struct timespec pause = {0, 100 * 1000};
            nanosleep(&pause, NULL);
        }
    }
}
