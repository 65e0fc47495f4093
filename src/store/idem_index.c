/* store/idem_index.c: the in-memory index of stored Idempotency-Keys (idem_index.h).
 *
 * An open-addressing table of 64-bit fingerprints with linear probing: 0 marks an
 * empty slot, 1 a deleted one (a fingerprint below 2 is moved up by 2). The same
 * fingerprint may sit in several slots (one per row), so removing one row's print
 * leaves the others. The table doubles while it is more than half full, up to twice
 * the bound (twice as many slots as prints); deleted slots are swept by rebuilding
 * at the same size. If memory for a
 * rebuild cannot be had, the index overflows (it answers "may hold" from then on):
 * slower, never wrong.
 *
 * Overflowed, it counts the rows it was told of (added less removed): once the purge
 * brought them under API_IDEM_INDEX_REBUILD_PERCENT of the bound, the owner rebuilds
 * it from the store (idem_index.h, "Recovery"). While it rebuilds, the table starts
 * empty and takes every add (the scan's and the live ones) but no removal, and every
 * lookup still reads the store; a scan that fits the bound makes it an index again. */
#include "store/idem_index.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "paycore/limits.h"

static_assert(IDEM_KEY_HASH_KEY_BYTES == crypto_shorthash_KEYBYTES, "SipHash-2-4's key");

#define SLOT_EMPTY 0u
#define SLOT_DELETED 1u
#define SLOTS_MIN 1024u

struct idem_index {
    pthread_mutex_t mutex;
    uint8_t hash_key[crypto_shorthash_KEYBYTES]; /* random per process: prints cannot be aimed */
    uint64_t *slots;
    uint64_t slot_count;      /* a power of two */
    uint64_t slot_count_max;
    uint64_t keys;
    uint64_t deleted;
    uint64_t keys_max;
    idem_index_state state;
    uint64_t rows_counted;    /* not indexed: rows added less rows removed since it overflowed */
    uint64_t rows_counted_before; /* rows_counted when the current rebuild began */
    uint64_t lookups;
    uint64_t store_reads_held;      /* lookups of a key the table holds */
    uint64_t store_reads_unindexed; /* lookups while not indexed */
    uint64_t overflows;
    uint64_t rebuilds;
    uint64_t rebuilds_failed;
};

uint64_t idem_key_hash(const uint8_t hash_key[IDEM_KEY_HASH_KEY_BYTES], const char *key_id,
                       const char *idempotency_key) {
    unsigned char name[PC_ID_SIZE + API_IDEMPOTENCY_KEY_BYTES_MAX + 2];
    size_t id_bytes = strnlen(key_id, PC_ID_SIZE);
    size_t key_bytes = strnlen(idempotency_key, API_IDEMPOTENCY_KEY_BYTES_MAX + 1);
    memcpy(name, key_id, id_bytes);
    name[id_bytes] = '\n'; /* ids hold no newline: the pair reads back one way only */
    memcpy(name + id_bytes + 1, idempotency_key, key_bytes);
    uint8_t out[crypto_shorthash_BYTES];
    crypto_shorthash(out, name, id_bytes + 1 + key_bytes, hash_key);
    uint64_t hash;
    memcpy(&hash, out, sizeof hash);
    return hash;
}

static uint64_t fingerprint(const idem_index_t *index, const char *key_id, const char *idempotency_key) {
    uint64_t print = idem_key_hash(index->hash_key, key_id, idempotency_key);
    return print < 2 ? print + 2 : print;
}

static uint64_t pow2_at_least(uint64_t n) {
    uint64_t p = SLOTS_MIN;
    while (p < n) p <<= 1;
    return p;
}

pc_status idem_index_new(idem_index_t **out, uint64_t keys_max) {
    *out = NULL;
    if (keys_max == 0 || keys_max > API_IDEM_INDEX_KEYS_MAX) return PC_INVALID_ARGUMENT;
    idem_index_t *index = calloc(1, sizeof *index);
    if (index == NULL) return PC_NO_MEMORY;
    index->keys_max = keys_max;
    index->slot_count_max = pow2_at_least(keys_max * 2);
    index->slot_count = SLOTS_MIN;
    index->slots = calloc(index->slot_count, sizeof *index->slots);
    if (index->slots == NULL) {
        free(index);
        return PC_NO_MEMORY;
    }
    randombytes_buf(index->hash_key, sizeof index->hash_key);
    pthread_mutex_init(&index->mutex, NULL);
    *out = index;
    return PC_OK;
}

void idem_index_free(idem_index_t *index) {
    if (index == NULL) return;
    pthread_mutex_destroy(&index->mutex);
    free(index->slots);
    free(index);
}

/* The slot holding 'print', or the slot count when none does. */
static uint64_t slot_find(const idem_index_t *index, uint64_t print) {
    uint64_t mask = index->slot_count - 1;
    for (uint64_t at = print & mask, probes = 0; probes < index->slot_count; at = (at + 1) & mask, probes++) {
        if (index->slots[at] == print) return at;
        if (index->slots[at] == SLOT_EMPTY) break;
    }
    return index->slot_count;
}

/* Puts 'print' in the first free slot of its run; true when that slot was a deleted one. */
static bool slot_put(uint64_t *slots, uint64_t slot_count, uint64_t print) {
    uint64_t mask = slot_count - 1;
    uint64_t at = print & mask;
    while (slots[at] != SLOT_EMPTY && slots[at] != SLOT_DELETED) at = (at + 1) & mask;
    bool reused = slots[at] == SLOT_DELETED;
    slots[at] = print;
    return reused;
}

/* Rebuilds the table with 'slot_count' slots, without deleted ones. */
static bool table_rebuild(idem_index_t *index, uint64_t slot_count) {
    uint64_t *slots = calloc(slot_count, sizeof *slots);
    if (slots == NULL) return false;
    for (uint64_t i = 0; i < index->slot_count; i++) {
        if (index->slots[i] >= 2) (void)slot_put(slots, slot_count, index->slots[i]);
    }
    free(index->slots);
    index->slots = slots;
    index->slot_count = slot_count;
    index->deleted = 0;
    return true;
}

/* Room for one more print: prints fill at most half the slots (the table doubles up
 * to its bound), prints and deleted slots together three quarters (then they are
 * swept): short probe runs, and a sweep at most every quarter table of changes. */
static bool table_room(idem_index_t *index) {
    bool grow = (index->keys + 1) * 2 > index->slot_count && index->slot_count < index->slot_count_max;
    bool sweep = (index->keys + index->deleted + 1) * 4 > index->slot_count * 3;
    if (!grow && !sweep) return true;
    return table_rebuild(index, grow ? index->slot_count * 2 : index->slot_count);
}

bool idem_index_may_hold(idem_index_t *index, const char *key_id, const char *idempotency_key) {
    uint64_t print = fingerprint(index, key_id, idempotency_key);
    pthread_mutex_lock(&index->mutex);
    bool indexed = index->state == IDEM_INDEX_INDEXED;
    bool held = indexed && slot_find(index, print) < index->slot_count;
    index->lookups++;
    if (!indexed) index->store_reads_unindexed++;
    else if (held) index->store_reads_held++;
    pthread_mutex_unlock(&index->mutex);
    return held || !indexed;
}

/* Past the bound (or out of memory): every lookup reads the store from now on. */
static void overflow(idem_index_t *index) {
    if (index->state == IDEM_INDEX_INDEXED) {
        index->rows_counted = index->keys;
        index->overflows++;
    } else if (index->state == IDEM_INDEX_REBUILDING) {
        index->rebuilds_failed++; /* the scan's adds go on counting the rows */
    }
    index->state = IDEM_INDEX_OVERFLOWED;
}

void idem_index_add(idem_index_t *index, const char *key_id, const char *idempotency_key) {
    uint64_t print = fingerprint(index, key_id, idempotency_key);
    pthread_mutex_lock(&index->mutex);
    if (index->state != IDEM_INDEX_OVERFLOWED && (index->keys == index->keys_max || !table_room(index))) {
        overflow(index);
    }
    if (index->state != IDEM_INDEX_INDEXED) index->rows_counted++;
    if (index->state != IDEM_INDEX_OVERFLOWED) {
        if (slot_put(index->slots, index->slot_count, print)) index->deleted--;
        index->keys++;
    }
    pthread_mutex_unlock(&index->mutex);
}

/* A rebuild takes no removal: its scan may add the row after this call (the print
 * stays, a harmless extra), and the same print may be another row's it already read. */
void idem_index_remove(idem_index_t *index, const char *key_id, const char *idempotency_key) {
    uint64_t print = fingerprint(index, key_id, idempotency_key);
    pthread_mutex_lock(&index->mutex);
    if (index->state != IDEM_INDEX_INDEXED && index->rows_counted > 0) index->rows_counted--;
    uint64_t at = index->state == IDEM_INDEX_INDEXED ? slot_find(index, print) : index->slot_count;
    if (at < index->slot_count) {
        index->slots[at] = SLOT_DELETED;
        index->keys--;
        index->deleted++;
    }
    pthread_mutex_unlock(&index->mutex);
}

bool idem_index_rebuild_wanted(idem_index_t *index) {
    pthread_mutex_lock(&index->mutex);
    bool wanted = index->state == IDEM_INDEX_OVERFLOWED &&
                  index->rows_counted <= index->keys_max * API_IDEM_INDEX_REBUILD_PERCENT / 100;
    pthread_mutex_unlock(&index->mutex);
    return wanted;
}

pc_status idem_index_rebuild_begin(idem_index_t *index) {
    uint64_t *slots = calloc(SLOTS_MIN, sizeof *slots);
    if (slots == NULL) return PC_NO_MEMORY;
    pthread_mutex_lock(&index->mutex);
    PC_ASSERT(index->state == IDEM_INDEX_OVERFLOWED);
    free(index->slots);
    index->slots = slots;
    index->slot_count = SLOTS_MIN;
    index->keys = 0;
    index->deleted = 0;
    index->rows_counted_before = index->rows_counted;
    index->rows_counted = 0; /* the scan counts them again */
    index->state = IDEM_INDEX_REBUILDING;
    pthread_mutex_unlock(&index->mutex);
    return PC_OK;
}

bool idem_index_rebuild_end(idem_index_t *index, bool scanned) {
    pthread_mutex_lock(&index->mutex);
    bool rebuilt = scanned && index->state == IDEM_INDEX_REBUILDING;
    if (rebuilt) {
        index->state = IDEM_INDEX_INDEXED;
        index->rebuilds++;
    } else if (index->state == IDEM_INDEX_REBUILDING) { /* a scan cut short counted a part */
        overflow(index);
        if (index->rows_counted < index->rows_counted_before) index->rows_counted = index->rows_counted_before;
    }
    pthread_mutex_unlock(&index->mutex);
    return rebuilt;
}

/* ---- scans ---- */

/* PAYCORE_TEST_IDEM_SCAN_HOLD_MS: tests hold a scan that long after its first check,
 * asking go_on every few ms, so that a stop surely arrives while it runs. */
static int32_t test_hold_cache_ms = -1;

static bool scan_go_on(idem_index_scan_t *scan) {
    return scan->go_on == NULL || scan->go_on(scan->go_on_ctx);
}

static bool scan_go_on_ctx(void *ctx) { return scan_go_on(ctx); }

static bool scan_test_hold(idem_index_scan_t *scan) {
    uint32_t hold_ms = pc_test_hold_ms(&test_hold_cache_ms, "PAYCORE_TEST_IDEM_SCAN_HOLD_MS", 600000);
    if (hold_ms == 0 || scan->rows != API_IDEM_INDEX_SCAN_CHECK_ROWS) return true;
    return pc_test_hold_sleep(hold_ms, 10, scan_go_on_ctx, scan);
}

bool idem_index_scan_row(idem_index_scan_t *scan, const char *key_id, const char *idempotency_key) {
    idem_index_add(scan->index, key_id, idempotency_key);
    if (++scan->rows % API_IDEM_INDEX_SCAN_CHECK_ROWS != 0) return true;
    scan->stopped = !scan_test_hold(scan) || !scan_go_on(scan);
    return !scan->stopped;
}

void idem_index_stats(idem_index_t *index, idem_index_stats_t *out) {
    pthread_mutex_lock(&index->mutex);
    out->keys = index->keys;
    out->keys_max = index->keys_max;
    out->slots = index->slot_count;
    out->state = index->state;
    out->overflowed = index->state != IDEM_INDEX_INDEXED;
    out->rows_counted = index->rows_counted;
    out->lookups = index->lookups;
    out->store_reads_held = index->store_reads_held;
    out->store_reads_unindexed = index->store_reads_unindexed;
    out->overflows = index->overflows;
    out->rebuilds = index->rebuilds;
    out->rebuilds_failed = index->rebuilds_failed;
    pthread_mutex_unlock(&index->mutex);
}

const char *idem_index_state_name(idem_index_state state) {
    static const char *const names[] = {"indexed", "overflowed", "rebuilding"};
    return state <= IDEM_INDEX_REBUILDING ? names[state] : "unknown";
}

/* ---- /metrics ---- */

static const char metrics_format[] =
    "# HELP paycore_idempotency_index_keys Idempotency-Keys held by the in-memory index.\n"
    "# TYPE paycore_idempotency_index_keys gauge\n"
    "paycore_idempotency_index_keys %llu\n"
    "# HELP paycore_idempotency_index_keys_max The index's bound (--idempotency-index-max-keys).\n"
    "# TYPE paycore_idempotency_index_keys_max gauge\n"
    "paycore_idempotency_index_keys_max %llu\n"
    "# HELP paycore_idempotency_index_state 1 for the index's state: indexed, overflowed (past its bound:"
    " every key is read from the store) or rebuilding (from the store).\n"
    "# TYPE paycore_idempotency_index_state gauge\n"
    "paycore_idempotency_index_state{state=\"indexed\"} %d\n"
    "paycore_idempotency_index_state{state=\"overflowed\"} %d\n"
    "paycore_idempotency_index_state{state=\"rebuilding\"} %d\n"
    "# HELP paycore_idempotency_index_rows_counted Stored rows counted while not indexed (a rebuild"
    " starts under its bound).\n"
    "# TYPE paycore_idempotency_index_rows_counted gauge\n"
    "paycore_idempotency_index_rows_counted %llu\n"
    "# HELP paycore_idempotency_index_lookups_total Requests with an Idempotency-Key looked up.\n"
    "# TYPE paycore_idempotency_index_lookups_total counter\n"
    "paycore_idempotency_index_lookups_total %llu\n"
    "# HELP paycore_idempotency_index_store_reads_total Lookups the index could not answer as new, read"
    " from the store: the key is held (a replay, or a shared print), or the index is not indexed.\n"
    "# TYPE paycore_idempotency_index_store_reads_total counter\n"
    "paycore_idempotency_index_store_reads_total{reason=\"held\"} %llu\n"
    "paycore_idempotency_index_store_reads_total{reason=\"not_indexed\"} %llu\n"
    "# HELP paycore_idempotency_index_overflows_total Times the index went past its bound.\n"
    "# TYPE paycore_idempotency_index_overflows_total counter\n"
    "paycore_idempotency_index_overflows_total %llu\n"
    "# HELP paycore_idempotency_index_rebuilds_total Rebuilds from the store by result.\n"
    "# TYPE paycore_idempotency_index_rebuilds_total counter\n"
    "paycore_idempotency_index_rebuilds_total{result=\"indexed\"} %llu\n"
    "paycore_idempotency_index_rebuilds_total{result=\"overflowed\"} %llu\n";

char *idem_index_metrics_append(idem_index_t *index, char *text, size_t *bytes) {
    if (text == NULL || index == NULL) return text;
    idem_index_stats_t s;
    idem_index_stats(index, &s);
    char part[4096];
    int n = snprintf(part, sizeof part, metrics_format, (unsigned long long)s.keys, (unsigned long long)s.keys_max,
                     s.state == IDEM_INDEX_INDEXED, s.state == IDEM_INDEX_OVERFLOWED,
                     s.state == IDEM_INDEX_REBUILDING, (unsigned long long)s.rows_counted,
                     (unsigned long long)s.lookups, (unsigned long long)s.store_reads_held,
                     (unsigned long long)s.store_reads_unindexed, (unsigned long long)s.overflows,
                     (unsigned long long)s.rebuilds, (unsigned long long)s.rebuilds_failed);
    PC_ASSERT(n > 0 && (size_t)n < sizeof part);
    char *grown = realloc(text, *bytes + (size_t)n + 1);
    if (grown == NULL) return text; /* the old text, whole */
    memcpy(grown + *bytes, part, (size_t)n + 1);
    *bytes += (size_t)n;
    return grown;
}
