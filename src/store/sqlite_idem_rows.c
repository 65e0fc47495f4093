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
 *   - an entry is added before the row's transaction commits (and taken out again if
 *     that rolls back; meanwhile, a reader may see the entry of a row it cannot see
 *     yet: it reads nothing there. A seq is never handed out twice in a process);
 *   - an entry is removed only after the deletion of its row committed
 *     (store_idem_rows_forget_later, then _committed or _rolled_back);
 *   - the map is loaded from the table before its first use (below), and no reply
 *     is written or deleted before: every write and delete uses the map first.
 *
 * Loading: not at open (most commands that open the store never read a reply) but
 * at the first use of the replies. At a server's start that use is the API's own
 * scan of the stored keys (its idempotency index and each API key's room,
 * store_api_idem_keys): the same scan of the table fills the map, so the table is
 * read once. Any other first use (a lookup, a put, a purge) loads it on its own.
 * A load runs under load_mutex; a use that needs the map waits for it. A load cut
 * short (a stop asked meanwhile) empties the map again: the next use loads it.
 *
 * Table: open addressing with linear probing, the home slot taken from the tag's
 * high bits (so a growth re-homes entries without their keys). 12 bytes a slot
 * (seq, tag); live entries fill between 1/4 and 3/4 of the slots (it doubles past
 * 1/2 when live and deleted ones reach 3/4): 16 to 48 bytes a stored reply. The rows
 * are bounded by the API's room for replies (--idempotency-max-bytes); the load
 * reads every row's keys once.
 *
 * Threads: the writer adds and forgets; readers look up. One mutex guards the table;
 * row reads happen outside it. */
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "paycore/limits.h"
#include "store/idem_index.h"
#include "store/sqlite_internal.h"

#define SEQ_EMPTY 0ull
#define SEQ_DELETED UINT64_MAX
#define SLOTS_MIN 1024ull
#define SLOTS_MAX (1ull << 32) /* the home is the tag's high bits */

typedef struct {
    uint64_t *seqs;
    uint32_t *tags;
    uint32_t count;
    uint32_t room;
} store_idem_rows_list_t;

struct store_idem_rows {
    pthread_mutex_t load_mutex; /* held by a load, from its begin to its end */
    _Atomic bool loaded;        /* every stored row has its entry */
    pthread_mutex_t mutex;
    uint8_t hash_key[IDEM_KEY_HASH_KEY_BYTES]; /* random per process: tags cannot be aimed */
    uint64_t *seqs;         /* the row of each slot; SEQ_EMPTY, SEQ_DELETED */
    uint32_t *tags;
    uint64_t slot_count;    /* a power of two */
    uint32_t home_shift;    /* 32 - log2(slot_count) */
    uint64_t used;
    uint64_t deleted;
    uint64_t seq_next;      /* writer only: the next row's seq, never handed out twice */
    store_idem_rows_list_t added;   /* writer only: rows inserted by the open transaction */
    store_idem_rows_list_t forget;  /* writer only: rows deleted by the open transaction */
};

uint32_t store_idem_rows_tag(const store_idem_rows_t *rows, const char *key_id, const char *idempotency_key) {
    return (uint32_t)(idem_key_hash(rows->hash_key, key_id, idempotency_key) >> 32);
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
    pthread_mutex_init(&rows->load_mutex, NULL);
    *out = rows;
    return PC_OK;
}

void store_idem_rows_free(store_idem_rows_t *rows) {
    if (rows == NULL) return;
    if (rows->seqs != NULL && rows->tags != NULL) {
        pthread_mutex_destroy(&rows->mutex);
        pthread_mutex_destroy(&rows->load_mutex);
    }
    free(rows->seqs);
    free(rows->tags);
    free(rows->added.seqs);
    free(rows->added.tags);
    free(rows->forget.seqs);
    free(rows->forget.tags);
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
 * past that it doubles when the live ones fill more than half, else deleted slots are
 * swept at the same size. */
static bool table_room(store_idem_rows_t *rows) {
    if ((rows->used + rows->deleted + 1) * 4 <= rows->slot_count * 3) return true;
    bool grow = (rows->used + 1) * 2 > rows->slot_count;
    if (grow && rows->slot_count >= SLOTS_MAX) return false;
    return table_rebuild(rows, grow ? rows->slot_count * 2 : rows->slot_count);
}

static bool list_push(store_idem_rows_list_t *list, uint32_t tag, uint64_t seq) {
    if (list->count == list->room) {
        uint32_t room = list->room ? list->room * 2 : 64;
        uint64_t *seqs = realloc(list->seqs, room * sizeof *seqs);
        if (seqs == NULL) return false;
        list->seqs = seqs;
        uint32_t *tags = realloc(list->tags, room * sizeof *tags);
        if (tags == NULL) return false;
        list->tags = tags;
        list->room = room;
    }
    list->seqs[list->count] = seq;
    list->tags[list->count++] = tag;
    return true;
}

/* Under the mutex. */
static bool entry_add(store_idem_rows_t *rows, uint32_t tag, uint64_t seq) {
    if (!table_room(rows)) return false;
    slot_put(rows->seqs, rows->tags, rows->slot_count, rows->home_shift, tag, seq);
    rows->used++;
    if (seq >= rows->seq_next) rows->seq_next = seq + 1;
    return true;
}

bool store_idem_rows_load_begin(store_idem_rows_t *rows) {
    if (atomic_load(&rows->loaded)) return false;
    pthread_mutex_lock(&rows->load_mutex);
    if (!atomic_load(&rows->loaded)) return true;
    pthread_mutex_unlock(&rows->load_mutex);
    return false;
}

/* A load cut short: back to no entry (nothing else adds one before the map is loaded). */
static void table_clear(store_idem_rows_t *rows) {
    pthread_mutex_lock(&rows->mutex);
    memset(rows->seqs, 0, rows->slot_count * sizeof *rows->seqs);
    memset(rows->tags, 0, rows->slot_count * sizeof *rows->tags);
    rows->used = 0;
    rows->deleted = 0;
    rows->seq_next = 1;
    pthread_mutex_unlock(&rows->mutex);
}

void store_idem_rows_load_end(store_idem_rows_t *rows, bool complete) {
    if (complete) atomic_store(&rows->loaded, true);
    else table_clear(rows);
    pthread_mutex_unlock(&rows->load_mutex);
}

pc_status store_idem_rows_add_loaded(store_idem_rows_t *rows, uint32_t tag, uint64_t seq) {
    PC_ASSERT(seq_live(seq));
    pthread_mutex_lock(&rows->mutex);
    bool added = entry_add(rows, tag, seq);
    pthread_mutex_unlock(&rows->mutex);
    return added ? PC_OK : PC_NO_MEMORY;
}

pc_status store_idem_rows_add(store_idem_rows_t *rows, uint32_t tag, uint64_t seq) {
    PC_ASSERT(seq_live(seq));
    if (!list_push(&rows->added, tag, seq)) return PC_NO_MEMORY;
    pthread_mutex_lock(&rows->mutex);
    bool added = entry_add(rows, tag, seq);
    pthread_mutex_unlock(&rows->mutex);
    if (!added) rows->added.count--;
    return added ? PC_OK : PC_NO_MEMORY;
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
    return list_push(&rows->forget, tag, seq) ? PC_OK : PC_NO_MEMORY; /* no deletion commits without it */
}

/* Takes the entries of 'list' out of the table and empties it. */
static void list_remove(store_idem_rows_t *rows, store_idem_rows_list_t *list) {
    if (list->count == 0) return;
    pthread_mutex_lock(&rows->mutex);
    for (uint32_t i = 0; i < list->count; i++) entry_remove(rows, list->tags[i], list->seqs[i]);
    pthread_mutex_unlock(&rows->mutex);
    list->count = 0;
}

void store_idem_rows_committed(store_idem_rows_t *rows) {
    if (rows == NULL) return;
    rows->added.count = 0; /* their rows exist now */
    list_remove(rows, &rows->forget);
}

void store_idem_rows_rolled_back(store_idem_rows_t *rows) {
    if (rows == NULL) return;
    rows->forget.count = 0; /* their rows stay */
    list_remove(rows, &rows->added);
}
