/* store/idem_index.c: the in-memory index of stored Idempotency-Keys (idem_index.h).
 *
 * An open-addressing table of 64-bit fingerprints with linear probing: 0 marks an
 * empty slot, 1 a deleted one (a fingerprint below 2 is moved up by 2). The same
 * fingerprint may sit in several slots (one per row), so removing one row's print
 * leaves the others. The table doubles while it is more than half full, up to twice
 * the bound (twice as many slots as prints); deleted slots are swept by rebuilding
 * at the same size. If memory for a
 * rebuild cannot be had, the index overflows (it answers "may hold" from then on):
 * slower, never wrong. */
#include "store/idem_index.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "paycore/limits.h"

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
    bool overflowed;
};

static uint64_t fingerprint(const idem_index_t *index, const char *key_id, const char *idempotency_key) {
    unsigned char name[PC_ID_SIZE + API_IDEMPOTENCY_KEY_BYTES_MAX + 2];
    size_t id_bytes = strnlen(key_id, PC_ID_SIZE);
    size_t key_bytes = strnlen(idempotency_key, API_IDEMPOTENCY_KEY_BYTES_MAX + 1);
    memcpy(name, key_id, id_bytes);
    name[id_bytes] = '\n'; /* ids hold no newline: the pair reads back one way only */
    memcpy(name + id_bytes + 1, idempotency_key, key_bytes);
    uint8_t out[crypto_shorthash_BYTES];
    crypto_shorthash(out, name, id_bytes + 1 + key_bytes, index->hash_key);
    uint64_t print;
    memcpy(&print, out, sizeof print);
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
    bool may_hold = index->overflowed || slot_find(index, print) < index->slot_count;
    pthread_mutex_unlock(&index->mutex);
    return may_hold;
}

void idem_index_add(idem_index_t *index, const char *key_id, const char *idempotency_key) {
    uint64_t print = fingerprint(index, key_id, idempotency_key);
    pthread_mutex_lock(&index->mutex);
    if (!index->overflowed && (index->keys == index->keys_max || !table_room(index))) {
        index->overflowed = true; /* from now on every lookup reads the store */
    }
    if (!index->overflowed) {
        if (slot_put(index->slots, index->slot_count, print)) index->deleted--;
        index->keys++;
    }
    pthread_mutex_unlock(&index->mutex);
}

void idem_index_remove(idem_index_t *index, const char *key_id, const char *idempotency_key) {
    uint64_t print = fingerprint(index, key_id, idempotency_key);
    pthread_mutex_lock(&index->mutex);
    uint64_t at = index->overflowed ? index->slot_count : slot_find(index, print);
    if (at < index->slot_count) {
        index->slots[at] = SLOT_DELETED;
        index->keys--;
        index->deleted++;
    }
    pthread_mutex_unlock(&index->mutex);
}

void idem_index_stats(idem_index_t *index, idem_index_stats_t *out) {
    pthread_mutex_lock(&index->mutex);
    out->keys = index->keys;
    out->keys_max = index->keys_max;
    out->slots = index->slot_count;
    out->overflowed = index->overflowed;
    pthread_mutex_unlock(&index->mutex);
}
