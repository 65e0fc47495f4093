/* store/sqlite_index.c: the transfer indexes of the SQLite backend, kept off the
 * commit path. Random-key B-tree inserts cost ~10x an append in SQLite (every batch
 * would dirty thousands of scattered index pages), so the main database only appends
 * transfers by timestamp and this file keeps:
 *   - a memtable of committed-but-unindexed entries (id hash, timestamp, account
 *     numbers), two of them: the writer fills 'active' while the indexer thread
 *     writes 'frozen' into <db>-index in one sorted transaction;
 *   - <db>-index: ids(key, ts) and account_transfers(account_no, ts), derived data
 *     that can be deleted and rebuilt from the main file at any time; its meta row
 *     'indexed_through_ts' says how far it goes;
 *   - a fixed-size bloom filter of every transfer id, so that a new id (the common
 *     case) is known new without any I/O.
 * Ids are client-chosen, so they are hashed with SipHash under the database's secret
 * key (<db>.idkey): no one without the key can make ids collide. Lookups still never
 * trust the hash: every candidate's row is read and its id compared, however many
 * there are, so even colliding ids cost time, never a miss.
 * Memory is bounded: the memtables have fixed capacity and the writer waits for the
 * indexer when both are full (back-pressure), before its batch's COMMIT, never after:
 * a committed batch is answered at once. The bloom filter has a fixed size and only
 * its false-positive rate grows with the number of transfers.
 * A memtable goes into the file in steps of about STORE_INDEX_STEP_FRAMES pages, each
 * its own transaction and then a passive checkpoint (limits.h: every fsync on the disk
 * queues behind the flushes already under way, the writer's commit too, so no flush
 * here may be long). Only the last step moves 'indexed_through_ts': a crash between
 * steps leaves entries that the catch-up at start inserts again (INSERT OR IGNORE).
 * A failed index write is retried STORE_INDEX_WRITE_ATTEMPTS_MAX times; then the
 * indexer gives up for good and the store takes no more writes (the process must
 * stop and rebuild the index at its next start) rather than wait for ever: serving
 * lookups from the main file instead would scan it (it has no id index, by design),
 * and holding the unindexed entries would grow memory without bound. */
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "store/sqlite_internal.h"
#include "store/store_bloom.h"

/* Room for one whole batch past STORE_MEMTABLE_ENTRIES_MAX: the writer waits before a
 * batch while the memtable is full, and adds the batch after its COMMIT without
 * waiting. A batch holds at most WRITER_BATCH_EVENTS_MAX transfers and
 * WRITER_EXPIRE_PER_BATCH_MAX expiries (limits.h). */
#define MEMTABLE_BATCH_ENTRIES_MAX (WRITER_BATCH_EVENTS_MAX + WRITER_EXPIRE_PER_BATCH_MAX)
#define MEMTABLE_CAPACITY (STORE_MEMTABLE_ENTRIES_MAX + 2u * WRITER_BATCH_EVENTS_MAX)
#define MEMTABLE_SLOTS (2u * 1024u * 1024u) /* power of two, > 2 x capacity */

static_assert(MEMTABLE_SLOTS >= 2u * MEMTABLE_CAPACITY, "memtable hash must stay under half full");
static_assert(MEMTABLE_CAPACITY - STORE_MEMTABLE_ENTRIES_MAX >= MEMTABLE_BATCH_ENTRIES_MAX,
              "a whole batch fits past the back-pressure bound");

typedef struct {
    store_index_entry_t *entries;
    uint32_t count;
    uint32_t *slots;       /* entry index + 1; 0 = empty */
} memtable_t;

struct store_index {
    char *path;
    pc_hash_key_t id_key;   /* the database's secret id hash key */
    uint64_t key_mask;      /* all 63 bits, or fewer in tests (store_options_t.index_key_bits) */
    int64_t key_check;      /* fingerprint of key and mask: a file keyed otherwise is rebuilt */
    sqlite3 *db;            /* the indexer thread's connection */
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mutex;
    pthread_cond_t work;    /* indexer: a frozen memtable is ready, or stop */
    pthread_cond_t space;   /* writer: the frozen memtable was written */
    memtable_t tables[2];
    memtable_t *active;
    memtable_t *frozen;     /* NULL when the indexer is idle */
    uint32_t entries_max;   /* STORE_MEMTABLE_ENTRIES_MAX, or fewer (tests) */
    uint32_t flush_entries; /* STORE_MEMTABLE_FLUSH_ENTRIES, or fewer (tests) */
    uint32_t write_count;   /* index file writes attempted (indexer thread) */
    uint32_t step_pairs[2]; /* pairs the next step inserts into ids, account_transfers
                             * (indexer thread): a page holds many more of the second */
    _Atomic uint64_t step_count; /* steps committed (the indexer counts; tests read) */
    uint32_t fault_write_from; /* tests: this write and every later one fail */
    bool failed;            /* the indexer gave up: nothing more is written */
    bool stopping;
    uint64_t indexed_through_ts;
    store_bloom_t bloom;
    char error_detail[256];
};

static const char index_schema[] =
    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-262144;"
    "PRAGMA wal_autocheckpoint=0;" /* each step checkpoints (steps_write) */
    "PRAGMA busy_timeout=10000;"
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS ids(key INTEGER NOT NULL, ts INTEGER NOT NULL,"
    " PRIMARY KEY(key, ts)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS account_transfers(account_no INTEGER NOT NULL, ts INTEGER NOT NULL,"
    " PRIMARY KEY(account_no, ts)) WITHOUT ROWID;";

uint64_t store_index_key(const store_index_t *index, const char *id) {
    uint64_t key = (pc_hash_keyed(&index->id_key, id, strlen(id)) >> 1) & index->key_mask; /* fits SQLite's INTEGER */
    return key == 0 ? 1 : key;
}

static int64_t key_check_of(const pc_hash_key_t *id_key, const char *domain) {
    return (int64_t)(pc_hash_keyed(id_key, domain, strlen(domain)) >> 2) | 1;
}

int64_t store_index_key_check(const pc_hash_key_t *id_key) { return key_check_of(id_key, "paycore-id-key-check-v1"); }

/* ---- memtable ---- */

static bool memtable_init(memtable_t *table) {
    table->entries = malloc(MEMTABLE_CAPACITY * sizeof(store_index_entry_t));
    table->slots = store_table_alloc(MEMTABLE_SLOTS * sizeof(uint32_t)); /* probed at random: huge pages */
    table->count = 0;
    return table->entries != NULL && table->slots != NULL;
}

static void memtable_free(memtable_t *table) {
    free(table->entries);
    store_table_free(table->slots, MEMTABLE_SLOTS * sizeof(uint32_t));
}

static void memtable_clear(memtable_t *table) {
    for (uint32_t i = 0; i < table->count; i++) {
        uint32_t slot = (uint32_t)table->entries[i].key & (MEMTABLE_SLOTS - 1);
        while (table->slots[slot] != 0) {
            table->slots[slot] = 0;
            slot = (slot + 1) & (MEMTABLE_SLOTS - 1);
        }
    }
    table->count = 0;
}

static void memtable_add(memtable_t *table, const store_index_entry_t *entry) {
    PC_ASSERT(table->count < MEMTABLE_CAPACITY);
    table->entries[table->count] = *entry;
    uint32_t slot = (uint32_t)entry->key & (MEMTABLE_SLOTS - 1);
    while (table->slots[slot] != 0) slot = (slot + 1) & (MEMTABLE_SLOTS - 1);
    table->slots[slot] = ++table->count;
}

/* Timestamps found: grows past its inline slots, bounded by the entries held. */
typedef struct {
    uint64_t *ts;
    uint32_t count;
    uint32_t capacity;
    uint64_t inline_ts[8];
} ts_list_t;

static bool ts_list_push(ts_list_t *list, uint64_t ts) {
    if (list->count == list->capacity) {
        uint32_t capacity_new = list->capacity * 2u;
        uint64_t *grown = malloc((size_t)capacity_new * sizeof(uint64_t));
        if (grown == NULL) return false;
        memcpy(grown, list->ts, (size_t)list->count * sizeof(uint64_t));
        if (list->ts != list->inline_ts) free(list->ts);
        list->ts = grown;
        list->capacity = capacity_new;
    }
    list->ts[list->count++] = ts;
    return true;
}

/* Collects every entry with 'key' (its whole probe run, no cap); false when out of memory. */
static bool memtable_find(const memtable_t *table, uint64_t key, ts_list_t *found) {
    uint32_t slot = (uint32_t)key & (MEMTABLE_SLOTS - 1);
    while (table->slots[slot] != 0) {
        const store_index_entry_t *entry = &table->entries[table->slots[slot] - 1];
        if (entry->key == key && !ts_list_push(found, entry->ts)) return false;
        slot = (slot + 1) & (MEMTABLE_SLOTS - 1);
    }
    return true;
}

/* ---- bloom filter (writer thread only) ---- */

void store_index_bloom_add(store_index_t *index, uint64_t key) { store_bloom_add(&index->bloom, key); }

bool store_index_bloom_maybe(const store_index_t *index, uint64_t key) {
    return store_bloom_maybe(&index->bloom, key);
}

/* ---- the indexer thread ---- */

static int key_compare(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    uint64_t major;  /* key, or account number */
    uint64_t ts;
} index_pair;

static int pair_compare(const void *a, const void *b) {
    const index_pair *x = a, *y = b;
    if (x->major != y->major) return x->major < y->major ? -1 : 1;
    return x->ts < y->ts ? -1 : x->ts > y->ts;
}

static bool pairs_insert(sqlite3 *db, const char *sql, const index_pair *pairs, uint32_t count) {
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) return false;
    bool ok = true;
    for (uint32_t i = 0; ok && i < count; i++) {
        sqlite3_bind_int64(stmt, 1, (int64_t)pairs[i].major);
        sqlite3_bind_int64(stmt, 2, (int64_t)pairs[i].ts);
        ok = sqlite3_step(stmt) == SQLITE_DONE;
        sqlite3_reset(stmt);
    }
    sqlite3_finalize(stmt);
    return ok;
}

/* The pairs the next step inserts: as many as wrote STORE_INDEX_STEP_FRAMES pages in
 * this one ('pairs' of them wrote 'frames'), at most twice as many as before. */
static void step_pairs_adapt(uint32_t *step_pairs, uint32_t pairs, int64_t frames) {
    uint64_t next = frames > 0 ? (uint64_t)pairs * STORE_INDEX_STEP_FRAMES / (uint64_t)frames : STORE_INDEX_STEP_PAIRS_MAX;
    if (next > 2ull * *step_pairs) next = 2ull * *step_pairs;
    if (next < STORE_INDEX_STEP_PAIRS_MIN) next = STORE_INDEX_STEP_PAIRS_MIN;
    if (next > STORE_INDEX_STEP_PAIRS_MAX) next = STORE_INDEX_STEP_PAIRS_MAX;
    *step_pairs = (uint32_t)next;
}

/* Begins a step: the pages it writes to the WAL are counted from here (SQLite's count
 * of pages written, a spill before the COMMIT too). */
static bool step_begin(store_index_t *index) {
    int unused;
    sqlite3_db_status(index->db, SQLITE_DBSTATUS_CACHE_WRITE, &unused, &unused, 1);
    return sqlite3_exec(index->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK;
}

/* Commits a step and copies it into the file at once (a passive checkpoint: readers
 * never wait), so that the WAL's and the file's fsyncs carry one step's pages. A
 * checkpoint that fails leaves the pages in the WAL, readable and copied by the next. */
static bool step_commit(store_index_t *index, uint32_t *step_pairs, uint32_t pairs) {
    int unused, frames = 0;
    if (sqlite3_exec(index->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) return false;
    sqlite3_db_status(index->db, SQLITE_DBSTATUS_CACHE_WRITE, &frames, &unused, 1); /* pages the step wrote */
    atomic_fetch_add_explicit(&index->step_count, 1, memory_order_relaxed);
    if (step_pairs != NULL) step_pairs_adapt(step_pairs, pairs, frames);
    int rc = sqlite3_wal_checkpoint_v2(index->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
        fprintf(stderr, "{\"level\":\"warn\",\"msg\":\"index checkpoint failed\",\"path\":\"%s\",\"detail\":\"%s\"}\n",
                index->path, sqlite3_errmsg(index->db));
    }
    return true;
}

/* Inserts 'pairs' (sorted here: a step's keys are neighbours, so the steps touch each
 * page about once between them) in steps. */
static bool pairs_write_steps(store_index_t *index, uint32_t *step_pairs, const char *sql, index_pair *pairs,
                              uint32_t count) {
    qsort(pairs, count, sizeof(*pairs), pair_compare);
    for (uint32_t done = 0; done < count;) {
        uint32_t step = count - done < *step_pairs ? count - done : *step_pairs;
        if (!step_begin(index) || !pairs_insert(index->db, sql, pairs + done, step) || !step_commit(index, step_pairs, step)) {
            return false;
        }
        done += step;
    }
    return true;
}

/* The last step: how far the file now goes. */
static bool through_ts_write(store_index_t *index, uint64_t through_ts) {
    char sql[128];
    snprintf(sql, sizeof sql, "INSERT OR REPLACE INTO meta VALUES('indexed_through_ts', %lld)", (long long)through_ts);
    return step_begin(index) && sqlite3_exec(index->db, sql, NULL, NULL, NULL) == SQLITE_OK &&
           step_commit(index, NULL, 0);
}

/* Writes one frozen memtable into the index file, in steps. */
static bool memtable_write(store_index_t *index, const memtable_t *table) {
    index_pair *pairs = malloc((size_t)table->count * 2 * sizeof(index_pair));
    if (pairs == NULL) return false;
    uint64_t through_ts = index->indexed_through_ts;
    for (uint32_t i = 0; i < table->count; i++) {
        pairs[i] = (index_pair){table->entries[i].key, table->entries[i].ts};
        if (table->entries[i].ts > through_ts) through_ts = table->entries[i].ts;
    }
    bool ok = pairs_write_steps(index, &index->step_pairs[0], "INSERT OR IGNORE INTO ids VALUES(?,?)", pairs, table->count);
    for (uint32_t i = 0; ok && i < table->count; i++) {
        pairs[2 * i] = (index_pair){table->entries[i].debit_no, table->entries[i].ts};
        pairs[2 * i + 1] = (index_pair){table->entries[i].credit_no, table->entries[i].ts};
    }
    ok = ok && pairs_write_steps(index, &index->step_pairs[1], "INSERT OR IGNORE INTO account_transfers VALUES(?,?)", pairs, table->count * 2);
    free(pairs);
    ok = ok && through_ts_write(index, through_ts);
    if (!ok) {
        snprintf(index->error_detail, sizeof index->error_detail, "index write: %s", sqlite3_errmsg(index->db));
        if (!sqlite3_get_autocommit(index->db)) sqlite3_exec(index->db, "ROLLBACK", NULL, NULL, NULL);
        return false;
    }
    index->indexed_through_ts = through_ts;
    return true;
}

/* One write; the fault hook (tests) fails it as an I/O error would. */
static bool memtable_write_attempt(store_index_t *index, const memtable_t *table) {
    index->write_count++;
    if (index->fault_write_from != 0 && index->write_count >= index->fault_write_from) {
        snprintf(index->error_detail, sizeof index->error_detail, "index write: injected fault (write %u)",
                 index->write_count);
        return false;
    }
    return memtable_write(index, table);
}

/* Writes a frozen memtable, retrying a failure with growing waits; false when every
 * attempt failed. Lookups still find the entries in memory meanwhile. */
static bool memtable_write_retried(store_index_t *index, const memtable_t *table) {
    uint32_t wait_ms = STORE_INDEX_RETRY_MS_FIRST;
    for (uint32_t attempt = 1;; attempt++) {
        if (memtable_write_attempt(index, table)) return true;
        fprintf(stderr, "{\"level\":\"error\",\"msg\":\"index write failed\",\"path\":\"%s\",\"attempt\":%u,"
                "\"attempts_max\":%u,\"detail\":\"%s\"}\n", index->path, attempt, STORE_INDEX_WRITE_ATTEMPTS_MAX,
                index->error_detail);
        if (attempt == STORE_INDEX_WRITE_ATTEMPTS_MAX) return false;
        usleep(wait_ms * 1000u);
        wait_ms = wait_ms * 2u > STORE_INDEX_RETRY_MS_MAX ? STORE_INDEX_RETRY_MS_MAX : wait_ms * 2u;
    }
}

/* Writes each frozen memtable; gives up for good after a write failed every attempt
 * (index->failed: the store takes no more writes, and waiters are woken). */
static void *indexer_main(void *arg) {
    pthread_setname_np(pthread_self(), "paycore-index"); /* per-thread CPU in top, perf */
    store_index_t *index = arg;
    pthread_mutex_lock(&index->mutex);
    for (;;) {
        while (index->frozen == NULL && !index->stopping) pthread_cond_wait(&index->work, &index->mutex);
        if (index->frozen == NULL) break; /* stopping and nothing left */
        memtable_t *frozen = index->frozen;
        pthread_mutex_unlock(&index->mutex);
        bool written = memtable_write_retried(index, frozen);
        pthread_mutex_lock(&index->mutex);
        if (!written) {
            index->failed = true; /* the entries stay in memory: lookups still find them */
            pthread_cond_broadcast(&index->space);
            break;
        }
        memtable_clear(frozen);
        index->frozen = NULL;
        pthread_cond_broadcast(&index->space);
    }
    pthread_mutex_unlock(&index->mutex);
    return NULL;
}

/* Hands the active memtable to the indexer when it is big enough (or 'force'). */
static void memtable_rotate_locked(store_index_t *index, bool force) {
    if (index->frozen != NULL || index->active->count == 0 || index->failed) return;
    if (!force && index->active->count < index->flush_entries) return;
    index->frozen = index->active;
    index->active = (index->active == &index->tables[0]) ? &index->tables[1] : &index->tables[0];
    pthread_cond_signal(&index->work);
}

pc_status store_index_room_wait(store_index_t *index, char *detail, size_t detail_bytes) {
    pthread_mutex_lock(&index->mutex);
    while (!index->failed && index->active->count >= index->entries_max) {
        memtable_rotate_locked(index, true);
        if (index->active->count < index->entries_max) break;
        pthread_cond_wait(&index->space, &index->mutex); /* back-pressure: the indexer is behind */
    }
    pc_status status = index->failed ? PC_STORE_INDEX_FAILED : PC_OK;
    if (index->failed) snprintf(detail, detail_bytes, "%s: %s", index->path, index->error_detail);
    pthread_mutex_unlock(&index->mutex);
    return status;
}

void store_index_add(store_index_t *index, const store_index_entry_t *entries, uint32_t count) {
    PC_ASSERT(count <= MEMTABLE_BATCH_ENTRIES_MAX);
    pthread_mutex_lock(&index->mutex);
    PC_ASSERT(index->active->count + count <= MEMTABLE_CAPACITY); /* store_index_room_wait came first */
    for (uint32_t i = 0; i < count; i++) memtable_add(index->active, &entries[i]);
    memtable_rotate_locked(index, false);
    pthread_mutex_unlock(&index->mutex);
}

/* Waits until every entry added so far is in the index file, or the indexer gave up. */
void store_index_flush(store_index_t *index) {
    pthread_mutex_lock(&index->mutex);
    while (!index->failed && (index->active->count > 0 || index->frozen != NULL)) {
        memtable_rotate_locked(index, true);
        pthread_cond_wait(&index->space, &index->mutex);
    }
    pthread_mutex_unlock(&index->mutex);
}

/* ---- open, close ---- */

static void index_files_remove(const char *path) {
    char sidecar[PC_PATH_BYTES_MAX];
    unlink(path);
    snprintf(sidecar, sizeof sidecar, "%s-wal", path);
    unlink(sidecar);
    snprintf(sidecar, sizeof sidecar, "%s-shm", path);
    unlink(sidecar);
}

/* A meta value: *value, or 0 when the row is missing. False when it cannot be read
 * (never a default: the caller rebuilds the file). */
static bool meta_get(sqlite3 *db, const char *key, int64_t *value) {
    sqlite3_stmt *stmt;
    *value = 0;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key=?", -1, &stmt, NULL) != SQLITE_OK) return false;
    sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) *value = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return rc == SQLITE_ROW || rc == SQLITE_DONE;
}

/* Sets a meta row when it is missing; returns the value the file holds. */
static bool meta_ensure(sqlite3 *db, const char *key, int64_t value, int64_t *held) {
    if (!meta_get(db, key, held)) return false;
    if (*held != 0) return true;
    char sql[128];
    snprintf(sql, sizeof sql, "INSERT INTO meta VALUES('%s', %lld)", key, (long long)value);
    *held = value;
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK;
}

/* Opens the index file; false when it is unusable (then it is rebuilt). */
static bool index_file_open(store_index_t *index, int64_t main_instance_id, uint64_t main_last_ts) {
    if (sqlite3_open_v2(index->path, &index->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        store_sqlite_walbuf_vfs()) != SQLITE_OK ||
        sqlite3_exec(index->db, index_schema, NULL, NULL, NULL) != SQLITE_OK) {
        return false;
    }
    int64_t owner = 0, key_check = 0;
    if (!meta_ensure(index->db, "main_instance_id", main_instance_id, &owner) ||
        !meta_ensure(index->db, "index_key_check", index->key_check, &key_check)) {
        return false;
    }
    int64_t through_ts = 0;
    if (!meta_get(index->db, "indexed_through_ts", &through_ts)) return false;
    index->indexed_through_ts = (uint64_t)through_ts;
    /* Another database's index, one keyed otherwise (or unkeyed), or one ahead of the
     * main file (a restored backup): rebuild. */
    return owner == main_instance_id && key_check == index->key_check &&
           index->indexed_through_ts <= main_last_ts;
}

static bool bloom_load(store_index_t *index) {
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(index->db, "SELECT key FROM ids", -1, &stmt, NULL) != SQLITE_OK) return false;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) store_index_bloom_add(index, (uint64_t)sqlite3_column_int64(stmt, 0));
    sqlite3_finalize(stmt);
    return rc == SQLITE_DONE;
}

static bool index_memory_init(store_index_t *index) {
    return store_bloom_init(&index->bloom, STORE_BLOOM_BITS, false) && memtable_init(&index->tables[0]) && memtable_init(&index->tables[1]);
}

/* The key, its mask and fingerprint, the memtable bounds and the fault hook. */
static void index_configure(store_index_t *index, const store_index_config_t *config) {
    index->id_key = *config->id_key;
    uint32_t bits = config->key_bits;
    index->key_mask = bits == 0 || bits >= 63 ? INT64_MAX : (1ull << bits) - 1;
    char domain[64];
    snprintf(domain, sizeof domain, "paycore-id-index-v1:%016llx", (unsigned long long)index->key_mask);
    index->key_check = key_check_of(config->id_key, domain);
    uint32_t entries_max = config->memtable_entries_max;
    index->entries_max = entries_max == 0 || entries_max > STORE_MEMTABLE_ENTRIES_MAX ? STORE_MEMTABLE_ENTRIES_MAX : entries_max;
    index->flush_entries = STORE_MEMTABLE_FLUSH_ENTRIES < index->entries_max ? STORE_MEMTABLE_FLUSH_ENTRIES : index->entries_max / 2;
    if (index->flush_entries == 0) index->flush_entries = 1;
    index->fault_write_from = config->fault_write_from;
    index->step_pairs[0] = STORE_INDEX_STEP_FRAMES; /* about a page a pair at most */
    index->step_pairs[1] = STORE_INDEX_STEP_FRAMES;
}

pc_status store_index_open(store_index_t **out, const store_index_config_t *config) {
    store_index_t *index = calloc(1, sizeof(*index));
    if (index == NULL) return PC_NO_MEMORY;
    index_configure(index, config);
    int64_t main_instance_id = config->main_instance_id;
    uint64_t main_last_ts = config->main_last_ts;
    char path[PC_PATH_BYTES_MAX];
    snprintf(path, sizeof path, "%s-index", config->main_path);
    index->path = pc_strdup(path);
    pthread_mutex_init(&index->mutex, NULL);
    pthread_cond_init(&index->work, NULL);
    pthread_cond_init(&index->space, NULL);
    index->active = &index->tables[0];
    if (index->path == NULL || !index_memory_init(index)) {
        store_index_close(index);
        return PC_NO_MEMORY;
    }
    if (!index_file_open(index, main_instance_id, main_last_ts)) {
        sqlite3_close(index->db);
        index->db = NULL;
        index_files_remove(index->path);
        if (!index_file_open(index, main_instance_id, main_last_ts)) {
            store_index_close(index);
            return PC_STORE_OPEN_FAILED;
        }
    }
    if (!bloom_load(index) || pthread_create(&index->thread, NULL, indexer_main, index) != 0) {
        store_index_close(index);
        return PC_STORE_OPEN_FAILED;
    }
    index->thread_started = true;
    *out = index;
    return PC_OK;
}

void store_index_close(store_index_t *index) {
    if (index == NULL) return;
    if (index->thread_started) {
        store_index_flush(index);
        pthread_mutex_lock(&index->mutex);
        index->stopping = true;
        pthread_cond_signal(&index->work);
        pthread_mutex_unlock(&index->mutex);
        pthread_join(index->thread, NULL);
    }
    if (index->db != NULL) sqlite3_close(index->db);
    memtable_free(&index->tables[0]);
    memtable_free(&index->tables[1]);
    store_bloom_free(&index->bloom);
    free(index->path);
    sodium_memzero(&index->id_key, sizeof index->id_key);
    pthread_cond_destroy(&index->space);
    pthread_cond_destroy(&index->work);
    pthread_mutex_destroy(&index->mutex);
    free(index);
}

uint64_t store_index_indexed_through_ts(const store_index_t *index) { return index->indexed_through_ts; }

uint64_t store_index_step_count(const store_index_t *index) {
    return atomic_load_explicit(&index->step_count, memory_order_relaxed);
}

sqlite3 *store_index_reader_open(store_index_t *index) {
    sqlite3 *db;
    if (sqlite3_open_v2(index->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA busy_timeout=10000; PRAGMA query_only=1;", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

/* ---- lookups (any thread, with its own index connection) ---- */

static uint32_t ts_unique(uint64_t *ts, uint32_t count) {
    qsort(ts, count, sizeof(*ts), key_compare);
    uint32_t kept = 0;
    for (uint32_t i = 0; i < count; i++) {
        if (kept == 0 || ts[kept - 1] != ts[i]) ts[kept++] = ts[i];
    }
    return kept;
}

/* Visits the memtables' candidates: copied under the mutex, so that 'visit' (which
 * reads the main file) runs without holding it. */
static pc_status memtables_visit(store_index_t *index, uint64_t key, store_index_visit_fn visit, void *ctx) {
    ts_list_t found = {.count = 0, .capacity = 8};
    found.ts = found.inline_ts;
    pthread_mutex_lock(&index->mutex);
    bool ok = memtable_find(index->active, key, &found);
    if (ok && index->frozen != NULL) ok = memtable_find(index->frozen, key, &found);
    pthread_mutex_unlock(&index->mutex);
    pc_status status = ok ? PC_NOT_FOUND : PC_NO_MEMORY;
    for (uint32_t i = 0; status == PC_NOT_FOUND && i < found.count; i++) status = visit(ctx, found.ts[i]);
    if (found.ts != found.inline_ts) free(found.ts);
    return status;
}

static pc_status file_visit(sqlite3 *reader, uint64_t key, store_index_visit_fn visit, void *ctx) {
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(reader, "SELECT ts FROM ids WHERE key=?", -1, &stmt, NULL) != SQLITE_OK) {
        return PC_STORE_READ_FAILED;
    }
    sqlite3_bind_int64(stmt, 1, (int64_t)key);
    pc_status status = PC_NOT_FOUND;
    int rc = SQLITE_DONE;
    while (status == PC_NOT_FOUND && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        status = visit(ctx, (uint64_t)sqlite3_column_int64(stmt, 0));
    }
    if (status == PC_NOT_FOUND && rc != SQLITE_DONE) status = PC_STORE_READ_FAILED;
    sqlite3_finalize(stmt);
    return status;
}

/* The memtables are read before the file: an entry moving between them is seen once
 * at least, never missed. An entry may be visited twice (memtable and file). */
pc_status store_index_find(store_index_t *index, sqlite3 *reader, uint64_t key, store_index_visit_fn visit,
                           void *ctx) {
    pc_status status = memtables_visit(index, key, visit, ctx);
    return status == PC_NOT_FOUND ? file_visit(reader, key, visit, ctx) : status;
}

static uint32_t memtable_account(const memtable_t *table, uint32_t account_no, uint64_t low, uint64_t high,
                                 uint64_t *ts_out, uint32_t found, uint32_t found_max) {
    for (uint32_t i = 0; i < table->count && found < found_max; i++) {
        const store_index_entry_t *e = &table->entries[i];
        if ((e->debit_no == account_no || e->credit_no == account_no) && e->ts >= low && e->ts < high) {
            ts_out[found++] = e->ts;
        }
    }
    return found;
}

static int ts_compare_desc(const void *a, const void *b) { return key_compare(b, a); }

/* An account's transfer timestamps in [low, high), ordered, at most 'limit'. */
pc_status store_index_account(store_index_t *index, sqlite3 *reader, uint32_t account_no, uint64_t low,
                              uint64_t high, bool descending, uint32_t limit, uint64_t *ts_out, uint32_t *count) {
    uint32_t cap = 2u * MEMTABLE_CAPACITY + limit;
    uint64_t *all = malloc((size_t)cap * sizeof(uint64_t));
    if (all == NULL) return PC_NO_MEMORY;
    pthread_mutex_lock(&index->mutex);
    uint32_t found = memtable_account(index->active, account_no, low, high, all, 0, cap - limit);
    if (index->frozen != NULL) found = memtable_account(index->frozen, account_no, low, high, all, found, cap - limit);
    pthread_mutex_unlock(&index->mutex);
    sqlite3_stmt *stmt;
    const char *sql = descending
        ? "SELECT ts FROM account_transfers WHERE account_no=?1 AND ts>=?2 AND ts<?3 ORDER BY ts DESC LIMIT ?4"
        : "SELECT ts FROM account_transfers WHERE account_no=?1 AND ts>=?2 AND ts<?3 ORDER BY ts LIMIT ?4";
    pc_status status = PC_OK;
    if (sqlite3_prepare_v2(reader, sql, -1, &stmt, NULL) != SQLITE_OK) status = PC_STORE_READ_FAILED;
    if (status == PC_OK) {
        sqlite3_bind_int64(stmt, 1, account_no);
        sqlite3_bind_int64(stmt, 2, (int64_t)low);
        sqlite3_bind_int64(stmt, 3, high > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)high);
        sqlite3_bind_int64(stmt, 4, limit);
        int rc;
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) all[found++] = (uint64_t)sqlite3_column_int64(stmt, 0);
        if (rc != SQLITE_DONE) status = PC_STORE_READ_FAILED;
        sqlite3_finalize(stmt);
    }
    if (status == PC_OK) {
        found = ts_unique(all, found);
        if (descending) qsort(all, found, sizeof(*all), ts_compare_desc);
        *count = found < limit ? found : limit;
        memcpy(ts_out, all, (size_t)*count * sizeof(uint64_t));
    }
    free(all);
    return status;
}
