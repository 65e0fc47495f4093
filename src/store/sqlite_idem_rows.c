/* store/sqlite_idem_rows.c: where each stored Idempotency-Key reply is, in memory.
 *
 * The replies (idempotency_keys, sqlite_api.c) are appended by seq, their rowid, in
 * the order they are stored: a new reply dirties the table's last page, not a random
 * leaf of a B-tree keyed by the client's key (keys are random: with a B-tree by key
 * nearly every reply of a batch landed on a page of its own). The table has no index
 * by key; this map says where a key's reply is.
 *
 * Exactness: the map holds an entry for every stored row, always. An entry is the
 * row's seq and a 32-bit tag of the key's keyed hash; a lookup takes every entry
 * whose tag matches and reads each row by seq, comparing the key itself: a match of
 * tags (or a stale entry) costs a row read, never a wrong answer, and a row without
 * its entry cannot exist:
 *   - an entry is added before the row's transaction commits (a rolled-back insert
 *     leaves a stale entry: its seq is never handed out again in this process, and
 *     the row it names does not exist);
 *   - an entry is removed only after the deletion of its row committed
 *     (store_idem_rows_forget_later, then _committed or _rolled_back);
 *   - the map is loaded from the table when the store opens, before any write.
 *
 * Table: open addressing with linear probing, the home slot taken from the tag's
 * high bits (so a growth re-homes entries without their keys). 12 bytes a slot
 * (seq, tag), live entries between 3/8 and 3/4 of the slots after a growth: 16 to 32
 * bytes a stored reply. The rows are bounded by the API's room for replies
 * (--idempotency-max-bytes); the load at open reads every row's keys once (about
 * 1 us a row).
 *
 * Threads: the writer adds and forgets; readers look up. One mutex guards the table;
 * row reads happen outside it. */
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "paycore/limits.h"
#include "store/sqlite_internal.h"

#define SEQ_EMPTY 0ull
#define SEQ_DELETED UINT64_MAX
#define SLOTS_MIN 1024ull
#define SLOTS_MAX (1ull << 32) /* the home is the tag's high bits */

struct store_idem_rows {
    pthread_mutex_t mutex;
    uint8_t hash_key[crypto_shorthash_KEYBYTES]; /* random per process: tags cannot be aimed */
    uint64_t *seqs;         /* the row of each slot; SEQ_EMPTY, SEQ_DELETED */
    uint32_t *tags;
    uint64_t slot_count;    /* a power of two */
    uint32_t home_shift;    /* 32 - log2(slot_count) */
    uint64_t used;
    uint64_t deleted;
    uint64_t seq_next;      /* writer only: the next row's seq, never handed out twice */
    uint64_t *forget_seqs;  /* writer only: rows deleted by the open transaction */
    uint32_t *forget_tags;
    uint32_t forget_count;
    uint32_t forget_room;
};

uint32_t store_idem_rows_tag(const store_idem_rows_t *rows, const char *key_id, const char *idempotency_key) {
    unsigned char name[PC_ID_SIZE + API_IDEMPOTENCY_KEY_BYTES_MAX + 2];
    size_t id_bytes = strnlen(key_id, PC_ID_SIZE);
    size_t key_bytes = strnlen(idempotency_key, API_IDEMPOTENCY_KEY_BYTES_MAX + 1);
    memcpy(name, key_id, id_bytes);
    name[id_bytes] = '\n'; /* ids hold no newline: the pair reads back one way only */
    memcpy(name + id_bytes + 1, idempotency_key, key_bytes);
    uint8_t out[crypto_shorthash_BYTES];
    crypto_shorthash(out, name, id_bytes + 1 + key_bytes, rows->hash_key);
    uint32_t tag;
    memcpy(&tag, out, sizeof tag);
    return tag;
}

static bool seq_live(uint64_t seq) { return seq != SEQ_EMPTY && seq != SEQ_DELETED; }

static uint32_t shift_for(uint64_t slot_count) {
    uint32_t bits = 0;
    while ((1ull << bits) < slot_count) bits++;
    return 32 - bits;
}

pc_status store_idem_rows_new(store_idem_rows_t **out) {
    *out = NULL;
    store_idem_rows_t *rows = calloc(1, sizeof *rows);
    if (rows == NULL) return PC_NO_MEMORY;
    rows->slot_count = SLOTS_MIN;
    rows->home_shift = shift_for(SLOTS_MIN);
    rows->seqs = calloc(rows->slot_count, sizeof *rows->seqs);
    rows->tags = calloc(rows->slot_count, sizeof *rows->tags);
    if (rows->seqs == NULL || rows->tags == NULL) {
        store_idem_rows_free(rows);
        return PC_NO_MEMORY;
    }
    randombytes_buf(rows->hash_key, sizeof rows->hash_key);
    rows->seq_next = 1;
    pthread_mutex_init(&rows->mutex, NULL);
    *out = rows;
    return PC_OK;
}

void store_idem_rows_free(store_idem_rows_t *rows) {
    if (rows == NULL) return;
    if (rows->seqs != NULL && rows->tags != NULL) pthread_mutex_destroy(&rows->mutex);
    free(rows->seqs);
    free(rows->tags);
    free(rows->forget_seqs);
    free(rows->forget_tags);
    free(rows);
}

/* Puts (tag, seq) in the first free slot of its run. */
static void slot_put(uint64_t *seqs, uint32_t *tags, uint64_t slot_count, uint32_t shift, uint32_t tag,
                     uint64_t seq) {
    uint64_t mask = slot_count - 1;
    uint64_t at = (uint64_t)(tag >> shift) & mask;
    while (seq_live(seqs[at])) at = (at + 1) & mask;
    seqs[at] = seq;
    tags[at] = tag;
}

/* Rebuilds the table with 'slot_count' slots, without deleted ones. */
static bool table_rebuild(store_idem_rows_t *rows, uint64_t slot_count) {
    uint64_t *seqs = calloc(slot_count, sizeof *seqs);
    uint32_t *tags = calloc(slot_count, sizeof *tags);
    if (seqs == NULL || tags == NULL) {
        free(seqs);
        free(tags);
        return false;
    }
    uint32_t shift = shift_for(slot_count);
    for (uint64_t i = 0; i < rows->slot_count; i++) {
        if (seq_live(rows->seqs[i])) slot_put(seqs, tags, slot_count, shift, rows->tags[i], rows->seqs[i]);
    }
    free(rows->seqs);
    free(rows->tags);
    rows->seqs = seqs;
    rows->tags = tags;
    rows->slot_count = slot_count;
    rows->home_shift = shift;
    rows->deleted = 0;
    return true;
}

/* Room for one more entry: live and deleted slots together at most 3/4 of the table;
 * past that it doubles when the live ones fill more than 3/8, else deleted slots are
 * swept at the same size. */
static bool table_room(store_idem_rows_t *rows) {
    if ((rows->used + rows->deleted + 1) * 4 <= rows->slot_count * 3) return true;
    bool grow = (rows->used + 1) * 8 > rows->slot_count * 3;
    if (grow && rows->slot_count >= SLOTS_MAX) return false;
    return table_rebuild(rows, grow ? rows->slot_count * 2 : rows->slot_count);
}

pc_status store_idem_rows_add(store_idem_rows_t *rows, uint32_t tag, uint64_t seq) {
    PC_ASSERT(seq_live(seq));
    pthread_mutex_lock(&rows->mutex);
    bool room = table_room(rows);
    if (room) {
        slot_put(rows->seqs, rows->tags, rows->slot_count, rows->home_shift, tag, seq);
        rows->used++;
    }
    if (seq >= rows->seq_next) rows->seq_next = seq + 1;
    pthread_mutex_unlock(&rows->mutex);
    return room ? PC_OK : PC_NO_MEMORY;
}

uint64_t store_idem_rows_seq_take(store_idem_rows_t *rows) {
    pthread_mutex_lock(&rows->mutex);
    uint64_t seq = rows->seq_next++;
    pthread_mutex_unlock(&rows->mutex);
    PC_ASSERT(seq_live(seq));
    return seq;
}

uint32_t store_idem_rows_candidates(store_idem_rows_t *rows, uint32_t tag, uint64_t *seqs, uint32_t seqs_max) {
    uint32_t count = 0;
    pthread_mutex_lock(&rows->mutex);
    uint64_t mask = rows->slot_count - 1;
    uint64_t at = (uint64_t)(tag >> rows->home_shift) & mask;
    for (uint64_t probes = 0; probes < rows->slot_count && rows->seqs[at] != SEQ_EMPTY; probes++) {
        if (rows->seqs[at] != SEQ_DELETED && rows->tags[at] == tag) {
            if (count < seqs_max) seqs[count] = rows->seqs[at];
            count++;
        }
        at = (at + 1) & mask;
    }
    pthread_mutex_unlock(&rows->mutex);
    return count;
}

static void entry_remove(store_idem_rows_t *rows, uint32_t tag, uint64_t seq) {
    uint64_t mask = rows->slot_count - 1;
    uint64_t at = (uint64_t)(tag >> rows->home_shift) & mask;
    for (uint64_t probes = 0; probes < rows->slot_count && rows->seqs[at] != SEQ_EMPTY; probes++) {
        if (rows->seqs[at] == seq && rows->tags[at] == tag) {
            rows->seqs[at] = SEQ_DELETED;
            rows->used--;
            rows->deleted++;
            return;
        }
        at = (at + 1) & mask;
    }
}

pc_status store_idem_rows_forget_later(store_idem_rows_t *rows, uint32_t tag, uint64_t seq) {
    if (rows->forget_count == rows->forget_room) {
        uint32_t room = rows->forget_room ? rows->forget_room * 2 : 64;
        uint64_t *seqs = realloc(rows->forget_seqs, room * sizeof *seqs);
        if (seqs != NULL) rows->forget_seqs = seqs;
        uint32_t *tags = seqs != NULL ? realloc(rows->forget_tags, room * sizeof *tags) : NULL;
        if (tags == NULL) return PC_NO_MEMORY; /* the deletion must not commit without its forget */
        rows->forget_tags = tags;
        rows->forget_room = room;
    }
    rows->forget_seqs[rows->forget_count] = seq;
    rows->forget_tags[rows->forget_count++] = tag;
    return PC_OK;
}

void store_idem_rows_committed(store_idem_rows_t *rows) {
    if (rows == NULL || rows->forget_count == 0) return;
    pthread_mutex_lock(&rows->mutex);
    for (uint32_t i = 0; i < rows->forget_count; i++) entry_remove(rows, rows->forget_tags[i], rows->forget_seqs[i]);
    pthread_mutex_unlock(&rows->mutex);
    rows->forget_count = 0;
}

void store_idem_rows_rolled_back(store_idem_rows_t *rows) {
    if (rows != NULL) rows->forget_count = 0;
}

uint64_t store_idem_rows_count(store_idem_rows_t *rows) {
    pthread_mutex_lock(&rows->mutex);
    uint64_t used = rows->used;
    pthread_mutex_unlock(&rows->mutex);
    return used;
}
