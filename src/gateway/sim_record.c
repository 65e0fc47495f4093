/* gateway/sim_record.c: the simulator's SQLite record. One connection, used under the
 * simulator's lock; statements are prepared once and cached by their SQL's address.
 * WAL with synchronous=NORMAL: a killed simulator loses nothing it answered; the
 * record is a test fixture's truth, not a bank's, so a power cut may lose the tail.
 * Requests' changes commit in groups (units, below): a commit's cost (WAL append,
 * file locks, the wal-index) is paid once for every request that came meanwhile.
 * While the event loop is in a pass ('batching') units leave the commit to the
 * pass's end (sim_group_flush), so one commit carries every request of the pass. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/core.h"
#include "gateway/sim_internal.h"
#include "obs/obs.h"
#include "store/sqlite_pcache.h"

#define SIM_SCHEMA_VERSION 4
#define RECORD_PAGE_BYTES 1024 /* a new record's; an existing one keeps its own */

/* Where a request's rows go decides what a group commit writes: a table keyed by a
 * random id (the hash-derived authorization and record ids) takes one page per row
 * into the WAL, whatever the group's size, while rows appended in order share their
 * last pages. So the busy tables are appended in arrival order (rowid tables), and the
 * few lookups by id go through small indexes: per kind (wallet payments, bank
 * transfers, refunds by their parent), or, for card authorizations (found by id on
 * every capture) and answers (found by idempotency key on a repeat or an inquiry),
 * maps in memory from the id or key to the rows (sim_db_auth_*, sim_db_answer_*):
 * nothing written for them. (Version 2 kept answers in a table keyed by the key: an
 * index b-tree, whose last leaf splits rewrite its neighbours too; one commit wrote
 * ~11 WAL pages for 11 requests, ~8 with answers appended.)
 * A key's first arrival whose answer is recorded counts through its idempotency row:
 * arrival_counts holds the other arrivals' counts and the view `arrivals` both. */
static const char *const schema_sql =
    "CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS idempotency(key TEXT NOT NULL, operation TEXT NOT NULL,"
    " request_sha256 TEXT NOT NULL, http_status INTEGER NOT NULL, response TEXT NOT NULL,"
    " created_at_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS arrival_counts(key TEXT PRIMARY KEY, count INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE VIEW IF NOT EXISTS arrivals(key, count) AS SELECT key, count FROM arrival_counts"
    " UNION ALL SELECT i.key, 1 FROM idempotency i"
    " WHERE NOT EXISTS (SELECT 1 FROM arrival_counts a WHERE a.key = i.key);"
    "CREATE TABLE IF NOT EXISTS records(id TEXT NOT NULL, kind TEXT NOT NULL, parent_id TEXT,"
    " idempotency_key TEXT NOT NULL, status TEXT NOT NULL, response_code TEXT NOT NULL,"
    " amount INTEGER NOT NULL, currency TEXT NOT NULL, merchant_ref TEXT,"
    " created_at_ms INTEGER NOT NULL, settled_at_ms INTEGER);"
    "CREATE INDEX IF NOT EXISTS records_settled ON records(settled_at_ms)"
    " WHERE settled_at_ms IS NOT NULL;"
    "CREATE INDEX IF NOT EXISTS records_refunds ON records(parent_id) WHERE kind = 'refund';"
    "CREATE UNIQUE INDEX IF NOT EXISTS records_payments ON records(id) WHERE kind = 'payment';"
    "CREATE UNIQUE INDEX IF NOT EXISTS records_transfers ON records(id) WHERE kind = 'transfer';"
    "CREATE TABLE IF NOT EXISTS authorizations(id TEXT NOT NULL, card_number TEXT NOT NULL,"
    " status TEXT NOT NULL, response_code TEXT NOT NULL, amount INTEGER NOT NULL,"
    " currency TEXT NOT NULL, captured_total INTEGER NOT NULL DEFAULT 0,"
    " refunded_total INTEGER NOT NULL DEFAULT 0, challenge_id TEXT, challenge_state TEXT,"
    " capture_requested INTEGER NOT NULL DEFAULT 0, merchant_ref TEXT,"
    " idempotency_key TEXT NOT NULL);"
    "CREATE UNIQUE INDEX IF NOT EXISTS authorizations_challenge ON authorizations(challenge_id)"
    " WHERE challenge_id IS NOT NULL;"
    "CREATE TABLE IF NOT EXISTS cardholder_openings(number TEXT NOT NULL, currency TEXT NOT NULL,"
    " opening_balance INTEGER NOT NULL, opening_held INTEGER NOT NULL DEFAULT 0,"
    " amount_limit INTEGER NOT NULL, PRIMARY KEY(number, currency)) WITHOUT ROWID;"
    "CREATE VIEW IF NOT EXISTS cardholders(number, currency, balance, held, amount_limit) AS"
    " SELECT h.number, h.currency, h.opening_balance + coalesce((SELECT sum(" SIM_HOLDER_BALANCE_MOVE_SQL ")"
    " FROM authorizations a WHERE a.card_number = h.number AND a.currency = h.currency AND "
    SIM_HOLDER_MOVES_WHERE "), 0), h.opening_held + coalesce((SELECT sum(" SIM_HOLDER_HELD_MOVE_SQL ")"
    " FROM authorizations a WHERE a.card_number = h.number AND a.currency = h.currency AND "
    SIM_HOLDER_MOVES_WHERE "), 0), h.amount_limit FROM cardholder_openings h;"
    "CREATE TABLE IF NOT EXISTS wallet_accounts(id TEXT PRIMARY KEY, currency TEXT NOT NULL,"
    " balance INTEGER NOT NULL, frozen INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS bank_accounts(routing_number TEXT NOT NULL,"
    " account_number TEXT NOT NULL, balance INTEGER NOT NULL, closed INTEGER NOT NULL,"
    " PRIMARY KEY(routing_number, account_number)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS transfers(id TEXT PRIMARY KEY, direction TEXT NOT NULL,"
    " routing_number TEXT NOT NULL, account_number TEXT NOT NULL, callback_url TEXT NOT NULL,"
    " status TEXT NOT NULL, return_code TEXT, amount INTEGER NOT NULL, currency TEXT NOT NULL,"
    " reference TEXT, idempotency_key TEXT NOT NULL, due_at_ms INTEGER NOT NULL,"
    " callback_attempts INTEGER NOT NULL DEFAULT 0, callback_next_ms INTEGER,"
    " callback_delivered_at_ms INTEGER, callback_last_status INTEGER, callback_body TEXT);"
    "CREATE INDEX IF NOT EXISTS transfers_due ON transfers(due_at_ms) WHERE status = 'pending';"
    "CREATE INDEX IF NOT EXISTS transfers_callback ON transfers(callback_next_ms)"
    " WHERE callback_next_ms IS NOT NULL;"
    "CREATE TABLE IF NOT EXISTS discrepancies(id INTEGER PRIMARY KEY, date TEXT NOT NULL,"
    " kind TEXT NOT NULL, count INTEGER NOT NULL, created_at_ms INTEGER NOT NULL,"
    " consumed_at_ms INTEGER, detail TEXT);";

/* A version 1 record (tables keyed by id, every arrival counted in `arrivals`) set
 * aside before schema_sql creates version 2's tables; migrate_v1_copy fills them. */
static const char *const migrate_v1_aside_sql =
    "DROP INDEX IF EXISTS records_settled; DROP INDEX IF EXISTS records_parent;"
    " DROP INDEX IF EXISTS authorizations_challenge;"
    " ALTER TABLE arrivals RENAME TO arrival_counts;"
    " ALTER TABLE records RENAME TO records_v1;"
    " ALTER TABLE authorizations RENAME TO authorizations_v1;";
static const char *const migrate_v1_copy_sql =
    "INSERT INTO records(id, kind, parent_id, idempotency_key, status, response_code, amount, currency,"
    " merchant_ref, created_at_ms, settled_at_ms) SELECT id, kind, parent_id, idempotency_key, status,"
    " response_code, amount, currency, merchant_ref, created_at_ms, settled_at_ms FROM records_v1"
    " ORDER BY created_at_ms, id;"
    " INSERT INTO authorizations(id, card_number, status, response_code, amount, currency, captured_total,"
    " refunded_total, challenge_id, challenge_state, capture_requested, merchant_ref, idempotency_key)"
    " SELECT id, card_number, status, response_code, amount, currency, captured_total, refunded_total,"
    " challenge_id, challenge_state, capture_requested, merchant_ref, idempotency_key FROM authorizations_v1;"
    " DROP TABLE records_v1; DROP TABLE authorizations_v1;"
    " UPDATE meta SET value = '2' WHERE name = 'schema_version';";

/* A version 2 record's answers (keyed by the key, WITHOUT ROWID) set aside before
 * schema_sql creates version 3's table; migrate_v2_copy appends them in time order.
 * The view reads the table: it goes first, and schema_sql makes it again. */
static const char *const migrate_v2_aside_sql =
    "DROP VIEW IF EXISTS arrivals; ALTER TABLE idempotency RENAME TO idempotency_v2;";
static const char *const migrate_v2_copy_sql =
    "INSERT INTO idempotency(key, operation, request_sha256, http_status, response, created_at_ms)"
    " SELECT key, operation, request_sha256, http_status, response, created_at_ms FROM idempotency_v2"
    " ORDER BY created_at_ms, key;"
    " DROP TABLE idempotency_v2;"
    " UPDATE meta SET value = '3' WHERE name = 'schema_version';";

/* A version 1..3 record's cardholders held running totals that every card request
 * rewrote; version 4 keeps where each started (sim_internal.h, "card: cardholders"):
 * the table is renamed and its columns with it before schema_sql makes the view
 * `cardholders`, then each row is set back by what its authorizations moved, so what
 * is derived from it is what was stored. */
static const char *const migrate_v3_aside_sql =
    "ALTER TABLE cardholders RENAME TO cardholder_openings;"
    " ALTER TABLE cardholder_openings RENAME COLUMN balance TO opening_balance;"
    " ALTER TABLE cardholder_openings RENAME COLUMN held TO opening_held;";
static const char *const migrate_v3_copy_sql =
    "UPDATE cardholder_openings SET opening_balance = opening_balance - m.balance_move,"
    " opening_held = opening_held - m.held_move FROM (SELECT card_number, currency,"
    " sum(" SIM_HOLDER_BALANCE_MOVE_SQL ") AS balance_move, sum(" SIM_HOLDER_HELD_MOVE_SQL ") AS held_move"
    " FROM authorizations WHERE " SIM_HOLDER_MOVES_WHERE " GROUP BY card_number, currency) AS m"
    " WHERE m.card_number = cardholder_openings.number AND m.currency = cardholder_openings.currency;"
    " UPDATE meta SET value = '4' WHERE name = 'schema_version';";

/* Card authorizations and their records' rows, for the map of ids (sim_db_auth_*): an
 * authorization's row and its record's are written together, so both lists in rowid
 * order pair up one by one (auth_rows_load). Where they do not (a version 1 record's
 * migration copied the records in time order), both are sorted by id and merged. No
 * index on records.id: a join on it built an automatic index at every open (~20 s for
 * a million authorizations), where the walk reads each table once. */
static const char *const auth_rows_in_order_sql[2] = {
    "SELECT id, rowid FROM authorizations ORDER BY rowid",
    "SELECT id, rowid FROM records WHERE kind = 'authorization' ORDER BY rowid"};
static const char *const auth_rows_by_id_sql[2] = {
    "SELECT id, rowid FROM authorizations ORDER BY id, rowid",
    "SELECT id, rowid FROM records WHERE kind = 'authorization' ORDER BY id, rowid"};

/* ---- keys seen ---- */

#define KEYS_SEEN_BITS (UINT64_C(1) << 23) /* 1 MiB: ~3-4% false "maybe" at a million keys */
#define KEYS_SEEN_PROBES 3
#define KEYS_SEEN_BLOCK_BITS 512           /* a text's probes all fall in one block: one cache line */

/* FNV-1a, then a murmur finalizer for the second probe stride. */
static void key_hashes(const char *key, uint64_t *h1, uint64_t *h2) {
    uint64_t h = UINT64_C(14695981039346656037);
    for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++) h = (h ^ *p) * UINT64_C(1099511628211);
    uint64_t m = h ^ (h >> 33);
    m *= UINT64_C(0xff51afd7ed558ccd);
    m ^= m >> 33;
    *h1 = h;
    *h2 = m | 1;
}

/* The block of a text's probes (the high bits of its mixed hash), and the i-th probe's
 * bit in it (9 low bits each, above bit 0, which the stride's "| 1" fixes): each
 * request tests and notes a key and a cardholder, and probes spread over the whole
 * filter cost a cache miss each. */
static uint64_t *seen_block(uint64_t *bits, uint64_t h2) {
    return bits + (h2 >> (64 - 14)) * (KEYS_SEEN_BLOCK_BITS / 64);
}

static uint64_t seen_probe(uint64_t h2, int i) {
    return (h2 >> (1 + 9 * i)) & (KEYS_SEEN_BLOCK_BITS - 1);
}

_Static_assert(KEYS_SEEN_BITS / KEYS_SEEN_BLOCK_BITS == (UINT64_C(1) << 14), "seen_block takes 14 bits");

/* A Bloom filter of KEYS_SEEN_BITS: false only for a text never noted (NULL: every
 * text is a "maybe"). */
static bool seen_maybe(const uint64_t *bits, const char *text) {
    if (bits == NULL) return true;
    uint64_t h1, h2;
    key_hashes(text, &h1, &h2);
    const uint64_t *block = seen_block((uint64_t *)bits, h2);
    for (int i = 0; i < KEYS_SEEN_PROBES; i++) {
        uint64_t bit = seen_probe(h2, i);
        if ((block[bit >> 6] & (UINT64_C(1) << (bit & 63))) == 0) return false;
    }
    return true;
}

static void seen_note(uint64_t *bits, const char *text) {
    if (bits == NULL) return;
    uint64_t h1, h2;
    key_hashes(text, &h1, &h2);
    uint64_t *block = seen_block(bits, h2);
    for (int i = 0; i < KEYS_SEEN_PROBES; i++) {
        uint64_t bit = seen_probe(h2, i);
        block[bit >> 6] |= UINT64_C(1) << (bit & 63);
    }
}

bool sim_db_key_maybe(const sim_db_t *db, const char *key) {
    return seen_maybe(db->keys_seen, key);
}

void sim_db_key_note(sim_db_t *db, const char *key) {
    seen_note(db->keys_seen, key);
}

/* ---- rows by id or key, in memory ---- */

struct sim_row_slot {
    uint64_t hash;                /* of the id or key; 0: empty */
    int64_t row;
    int64_t row2;
};

#define ROWMAP_SLOTS_MIN 1024u

uint64_t sim_text_hash(const char *text) {
    uint64_t h1, h2;
    key_hashes(text, &h1, &h2);
    return h1 != 0 ? h1 : 1;
}

static void rowmap_put(struct sim_row_slot *slots, uint32_t capacity, const struct sim_row_slot *slot) {
    uint32_t at = (uint32_t)slot->hash & (capacity - 1);
    while (slots[at].hash != 0) at = (at + 1) & (capacity - 1);
    slots[at] = *slot;
}

/* Doubles the slots (or makes the first ones); false when out of memory. */
static bool rowmap_grow(sim_rowmap_t *map) {
    uint32_t capacity = map->capacity ? map->capacity * 2 : ROWMAP_SLOTS_MIN;
    if (capacity < map->capacity) return false;
    struct sim_row_slot *slots = calloc(capacity, sizeof *slots);
    if (slots == NULL) return false;
    for (uint32_t i = 0; i < map->capacity; i++) {
        if (map->slots[i].hash != 0) rowmap_put(slots, capacity, &map->slots[i]);
    }
    free(map->slots);
    map->slots = slots;
    map->capacity = capacity;
    return true;
}

static void rowmap_clear(sim_rowmap_t *map) {
    free(map->slots);
    memset(map, 0, sizeof *map);
}

static bool rowmap_note(sim_rowmap_t *map, const char *text, int64_t row, int64_t row2) {
    if ((map->count + 1) * 2 > map->capacity && !rowmap_grow(map)) return false;
    struct sim_row_slot slot = {.hash = sim_text_hash(text), .row = row, .row2 = row2};
    rowmap_put(map->slots, map->capacity, &slot);
    map->count++;
    return true;
}

static bool rowmap_next(const sim_rowmap_t *map, const char *text, uint32_t *cursor, int64_t *row, int64_t *row2) {
    if (map->slots == NULL) return false;
    uint64_t hash = sim_text_hash(text);
    uint32_t mask = map->capacity - 1;
    for (uint32_t probe = *cursor; probe < map->capacity; probe++) {
        const struct sim_row_slot *slot = &map->slots[((uint32_t)hash + probe) & mask];
        if (slot->hash == 0) break;
        if (slot->hash != hash) continue;
        *cursor = probe + 1;
        *row = slot->row;
        *row2 = slot->row2;
        return true;
    }
    *cursor = map->capacity;
    return false;
}

/* (Re)fills 'map' from 'sql' (text, row, row2 per row), noting each text in the filter
 * 'seen' too (NULL: none); on failure the map is left empty and unloaded (slots NULL),
 * and 'what' is logged. */
static bool rowmap_load(sim_db_t *db, sim_rowmap_t *map, uint64_t *seen, const char *sql, const char *what) {
    rowmap_clear(map);
    sqlite3_stmt *stmt = NULL;
    bool ok = rowmap_grow(map);
    int rc = ok ? sqlite3_prepare_v2(db->db, sql, -1, &stmt, NULL) : SQLITE_NOMEM;
    if (ok && rc == SQLITE_OK) {
        while (ok && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
            const char *text = sim_col_text(stmt, 0);
            seen_note(seen, text);
            ok = rowmap_note(map, text, sqlite3_column_int64(stmt, 1), sqlite3_column_int64(stmt, 2));
        }
    }
    sqlite3_finalize(stmt);
    if (ok && rc == SQLITE_DONE) return true;
    obs_logf(OBS_LEVEL_ERROR, "simulator record: the map of %s cannot be loaded (%s)", what,
             ok ? sqlite3_errmsg(db->db) : "out of memory");
    rowmap_clear(map);
    return false;
}

/* ---- card authorizations by id ---- */

bool sim_db_auth_note(sim_db_t *db, const char *id, int64_t auth_row, int64_t record_row) {
    if (rowmap_note(&db->auths, id, auth_row, record_row)) return true;
    obs_log(OBS_LEVEL_ERROR, "simulator record: out of memory for the map of authorizations", NULL);
    return false;
}

bool sim_db_auth_next(const sim_db_t *db, const char *id, uint32_t *cursor, int64_t *auth_row,
                      int64_t *record_row) {
    return rowmap_next(&db->auths, id, cursor, auth_row, record_row);
}

typedef enum { AUTH_PAIRS_DONE, AUTH_PAIRS_OUT_OF_ORDER, AUTH_PAIRS_FAILED, AUTH_PAIRS_NO_MEMORY } auth_pairs_end;

/* Steps the authorizations ('stmts'[0]) and their records ([1]) together, noting each
 * pair of equal ids. Sorted by id, the row with the smaller id steps alone (it has no
 * partner); in rowid order any difference ends the walk (OUT_OF_ORDER). */
static auth_pairs_end auth_pairs_walk(sim_db_t *db, sqlite3_stmt *const stmts[2], bool by_id) {
    int rc[2] = {sqlite3_step(stmts[0]), sqlite3_step(stmts[1])};
    while (rc[0] == SQLITE_ROW && rc[1] == SQLITE_ROW) {
        int order = strcmp(sim_col_text(stmts[0], 0), sim_col_text(stmts[1], 0));
        if (order != 0 && !by_id) return AUTH_PAIRS_OUT_OF_ORDER;
        if (order == 0 && !rowmap_note(&db->auths, sim_col_text(stmts[0], 0), sqlite3_column_int64(stmts[0], 1),
                                       sqlite3_column_int64(stmts[1], 1))) {
            return AUTH_PAIRS_NO_MEMORY;
        }
        if (order <= 0) rc[0] = sqlite3_step(stmts[0]);
        if (order >= 0) rc[1] = sqlite3_step(stmts[1]);
    }
    if ((rc[0] != SQLITE_ROW && rc[0] != SQLITE_DONE) || (rc[1] != SQLITE_ROW && rc[1] != SQLITE_DONE)) {
        return AUTH_PAIRS_FAILED;
    }
    return rc[0] == rc[1] || by_id ? AUTH_PAIRS_DONE : AUTH_PAIRS_OUT_OF_ORDER;
}

/* One walk of the two lists 'sql' reads into the emptied map. */
static auth_pairs_end auth_pairs_load(sim_db_t *db, const char *const sql[2], bool by_id) {
    rowmap_clear(&db->auths);
    sqlite3_stmt *stmts[2] = {NULL, NULL};
    auth_pairs_end end = rowmap_grow(&db->auths) ? AUTH_PAIRS_FAILED : AUTH_PAIRS_NO_MEMORY;
    if (end == AUTH_PAIRS_FAILED && sqlite3_prepare_v2(db->db, sql[0], -1, &stmts[0], NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db->db, sql[1], -1, &stmts[1], NULL) == SQLITE_OK) {
        end = auth_pairs_walk(db, stmts, by_id);
    }
    sqlite3_finalize(stmts[0]);
    sqlite3_finalize(stmts[1]);
    return end;
}

/* (Re)fills the map from the record; on failure the map is left empty and unloaded
 * (lookups find nothing, and answer 500: the record is failing anyway). */
static bool auth_rows_load(sim_db_t *db) {
    auth_pairs_end end = auth_pairs_load(db, auth_rows_in_order_sql, false);
    if (end == AUTH_PAIRS_OUT_OF_ORDER) end = auth_pairs_load(db, auth_rows_by_id_sql, true);
    if (end == AUTH_PAIRS_DONE) return true;
    obs_logf(OBS_LEVEL_ERROR, "simulator record: the map of authorizations cannot be loaded (%s)",
             end == AUTH_PAIRS_NO_MEMORY ? "out of memory" : sqlite3_errmsg(db->db));
    rowmap_clear(&db->auths);
    return false;
}

/* ---- answers by idempotency key ---- */

/* The columns sim_db_answer_find's statement gives (SIM_ANSWER_COL_*), the key last. */
static const char *const answer_row_sql =
    "SELECT operation, request_sha256, http_status, response, key FROM idempotency WHERE rowid = ?";

/* The answers' keys go into the filter of keys seen in the same scan (the largest
 * table: a second read of it took as long as the map). Again after a rollback: a
 * key noted twice changes nothing. */
static bool answer_rows_load(sim_db_t *db) {
    return rowmap_load(db, &db->answers, db->keys_seen, "SELECT key, rowid, 0 FROM idempotency", "answers");
}

int sim_db_answer_find(sim_db_t *db, const char *key, sqlite3_stmt **out) {
    *out = NULL;
    if (db->answers.slots == NULL) {
        obs_log(OBS_LEVEL_ERROR, "simulator record: the map of answers is not loaded", NULL);
        return -1; /* never "not found": that would apply a request twice */
    }
    uint32_t cursor = 0;
    int64_t row = 0, unused = 0;
    while (rowmap_next(&db->answers, key, &cursor, &row, &unused)) {
        sqlite3_stmt *stmt = sim_db_query(db, answer_row_sql, "i", row);
        if (stmt == NULL) return -1;
        int rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW && strcmp(sim_col_text(stmt, SIM_ANSWER_COL_KEY), key) == 0) {
            *out = stmt;
            return 1;
        }
        sqlite3_reset(stmt);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) return -1; /* DONE: a row a rollback undid */
    }
    return 0;
}

bool sim_db_answer_put(sim_db_t *db, const char *key, const char *operation, const char *request_hash,
                       unsigned http_status, const char *response, int64_t created_at_ms) {
    sqlite3_stmt *found = NULL;
    int exists = sim_db_answer_find(db, key, &found);
    if (found != NULL) sqlite3_reset(found);
    if (exists != 0) { /* what the key's uniqueness refused in version 2: the unit fails */
        if (exists > 0) obs_logf(OBS_LEVEL_ERROR, "simulator record: an answer for key %s is recorded already", key);
        return false;
    }
    if (!sim_db_run(db, "INSERT INTO idempotency(key, operation, request_sha256, http_status, response, created_at_ms)"
                    " VALUES (?, ?, ?, ?, ?, ?)", "sssisi", key, operation, request_hash, (int64_t)http_status,
                    response, created_at_ms)) {
        return false;
    }
    if (rowmap_note(&db->answers, key, sqlite3_last_insert_rowid(db->db), 0)) return true;
    obs_log(OBS_LEVEL_ERROR, "simulator record: out of memory for the map of answers", NULL);
    return false; /* the unit fails and its group rolls back: the row goes with it */
}

/* A filter filled with the texts 'sql' reads (one a row); NULL without it (no memory,
 * a failed read: every text is then a "maybe", and 'without' says what that costs). */
static uint64_t *seen_load(sim_db_t *db, const char *sql, const char *without) {
    uint64_t *bits = aligned_alloc(KEYS_SEEN_BLOCK_BITS / 8, KEYS_SEEN_BITS / 8); /* blocks on cache lines */
    if (bits == NULL) return NULL;
    memset(bits, 0, KEYS_SEEN_BITS / 8);
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(db->db, sql, -1, &stmt, NULL);
    if (rc == SQLITE_OK) { /* every row read (the filter used to stop after the first) */
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) seen_note(bits, sim_col_text(stmt, 0));
    }
    sqlite3_finalize(stmt);
    if (rc == SQLITE_DONE) return bits;
    obs_logf(OBS_LEVEL_WARN, "simulator record: %s not indexed (%s)", without, sqlite3_errmsg(db->db));
    free(bits);
    return NULL;
}

/* The keys of arrival_counts; those of idempotency follow with the map of answers
 * (answer_rows_load), before any request. */
static void seen_filters_load(sim_db_t *db) {
    db->keys_seen = seen_load(db, "SELECT key FROM arrival_counts", "keys: every arrival reads its count");
}

/* Creates the file 0600 before SQLite opens it (SQLite gives its -wal and -shm files
 * the same mode). */
static bool create_private(const char *path, char *error, size_t error_bytes) {
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(error, error_bytes, "cannot open %s: %m", path);
        return false;
    }
    close(fd);
    return true;
}

/* Checks (or, on a new file, writes) which channel the record belongs to. */
static bool check_channel(sim_db_t *db, sim_kind kind, char *error, size_t error_bytes) {
    const char *name = sim_kind_name(kind);
    sqlite3_stmt *stmt = sim_db_query(db, "SELECT value FROM meta WHERE name = 'channel'", "");
    if (stmt == NULL) {
        snprintf(error, error_bytes, "cannot read the record: %s", sqlite3_errmsg(db->db));
        return false;
    }
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        bool same = strcmp(sim_col_text(stmt, 0), name) == 0;
        if (!same) snprintf(error, error_bytes, "the record belongs to the %s simulator", sim_col_text(stmt, 0));
        sqlite3_reset(stmt);
        return same;
    }
    sqlite3_reset(stmt);
    if (!sim_db_run(db, "INSERT INTO meta(name, value) VALUES ('channel', ?), ('schema_version', ?)", "si",
                    name, (int64_t)SIM_SCHEMA_VERSION)) {
        snprintf(error, error_bytes, "cannot write the record: %s", sqlite3_errmsg(db->db));
        return false;
    }
    return true;
}

/* The record's version before this open: 0 for a new file. */
static int schema_version(sim_db_t *db) {
    sqlite3_stmt *stmt = NULL;
    int version = 0;
    if (sqlite3_prepare_v2(db->db, "SELECT value FROM meta WHERE name = 'schema_version'", -1, &stmt, NULL) ==
            SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
        version = atoi(sim_col_text(stmt, 0));
    }
    sqlite3_finalize(stmt); /* no meta table yet: a new file */
    return version;
}

/* Runs one step of the schema's change; false with SQLite's message in '*message'. */
static bool schema_step(sim_db_t *db, bool wanted, const char *sql, char **message) {
    return !wanted || sqlite3_exec(db->db, sql, NULL, NULL, message) == SQLITE_OK;
}

/* Creates the tables, migrating a version 1, 2 or 3 record in the same transaction; a
 * record newer than this simulator is refused (its tables may mean something else). */
static bool schema_apply(sim_db_t *db, char **message) {
    if (sqlite3_exec(db->db, "BEGIN IMMEDIATE", NULL, NULL, message) != SQLITE_OK) return false;
    int version = schema_version(db);
    if (version > SIM_SCHEMA_VERSION) {
        sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
        *message = sqlite3_mprintf("the record is version %d, newer than this simulator's %d: refused", version,
                                   SIM_SCHEMA_VERSION);
        return false;
    }
    bool from_v1 = version == 1, before_v3 = version == 1 || version == 2, old = version >= 1 && version <= 3;
    bool ok = schema_step(db, from_v1, migrate_v1_aside_sql, message) &&
              schema_step(db, before_v3, migrate_v2_aside_sql, message) &&
              schema_step(db, old, migrate_v3_aside_sql, message) && schema_step(db, true, schema_sql, message) &&
              schema_step(db, from_v1, migrate_v1_copy_sql, message) &&
              schema_step(db, before_v3, migrate_v2_copy_sql, message) &&
              schema_step(db, old, migrate_v3_copy_sql, message) && schema_step(db, true, "COMMIT", message);
    if (!ok) sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
    else if (old) obs_logf(OBS_LEVEL_INFO, "simulator record: migrated from version %d to %d", version, SIM_SCHEMA_VERSION);
    return ok;
}

static pthread_once_t sqlite_config_once = PTHREAD_ONCE_INIT;

/* The page cache's memory in one mapping, made now and touched as pages are cached: a
 * record that grows takes each new page off a free list, where a heap allocation per
 * page grew the loop thread's arena a few pages at a time (sysmalloc, mprotect, and
 * consolidations of its free chunks). Past SIM_CACHE_KIB SQLite allocates as before. */
static void page_slab_config(void) {
    int header_bytes = 0;
    if (sqlite3_config(SQLITE_CONFIG_PCACHE_HDRSZ, &header_bytes) != SQLITE_OK || header_bytes < 0) return;
    size_t slot_bytes = ((size_t)RECORD_PAGE_BYTES + (size_t)header_bytes + 7) & ~(size_t)7;
    size_t slots = (size_t)SIM_CACHE_KIB * 1024 / RECORD_PAGE_BYTES;
    void *slab = mmap(NULL, slot_bytes * slots, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                      -1, 0);
    if (slab == MAP_FAILED) return;
    if (sqlite3_config(SQLITE_CONFIG_PAGECACHE, slab, (int)slot_bytes, (int)slots) != SQLITE_OK) {
        munmap(slab, slot_bytes * slots);
    }
}

/* Before SQLite starts (a simulator has its process to itself; in a process where
 * SQLite already runs, nothing changes): no global memory statistics, whose mutex and
 * counters every allocation of SQLite's paid, the page cache's memory in one piece,
 * and the store's page cache, which keeps a COMMIT after a B-tree split from visiting
 * every cached page (store/sqlite_pcache.c). */
static void sqlite_config(void) {
    if (sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) != SQLITE_OK) return;
    page_slab_config();
    (void)store_sqlite_pcache_install();
}

bool sim_db_open(sim_db_t *db, const char *path, sim_kind kind, char *error, size_t error_bytes) {
    pthread_once(&sqlite_config_once, sqlite_config);
    memset(db, 0, sizeof(*db));
    if (!create_private(path, error, error_bytes)) return false;
    if (sqlite3_open_v2(path, &db->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, store_sqlite_walbuf_vfs()) != SQLITE_OK) {
        snprintf(error, error_bytes, "cannot open %s: %s", path, db->db ? sqlite3_errmsg(db->db) : "out of memory");
        sim_db_close(db);
        return false;
    }
    sqlite3_busy_timeout(db->db, 10000);
    char *message = NULL;
    /* 1 KiB pages (a new file's; WAL keeps an existing file's size): a row written at
     * a random place (a new cardholder's; until version 4 every card request rewrote
     * its cardholder's) costs a group commit one page besides the appended tables'
     * last leaves; at 4 KiB each of those was 4 KiB of WAL frame to checksum, write and
     * checkpoint (sequential authorize + capture: WAL checksums 12.4M -> 7.2M
     * instructions over 1000 requests, all 114.4M -> 111.2M), for one B-tree level
     * more in the larger tables. SQLite's own mutex is off: the
     * connection is only ever used under the simulator's lock. The cache holds the
     * record (SIM_CACHE_KIB): a miss is a pread on the request's path. */
    char pragmas[256];
    snprintf(pragmas, sizeof pragmas, "PRAGMA page_size=%d; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
             " PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY; PRAGMA cache_size=-%d;", RECORD_PAGE_BYTES,
             (int)SIM_CACHE_KIB);
    if (sqlite3_exec(db->db, pragmas, NULL, NULL, &message) != SQLITE_OK || !schema_apply(db, &message)) {
        snprintf(error, error_bytes, "cannot prepare %s: %s", path, message ? message : "?");
        sqlite3_free(message);
        sim_db_close(db);
        return false;
    }
    if (!check_channel(db, kind, error, error_bytes)) {
        sim_db_close(db);
        return false;
    }
    seen_filters_load(db);
    db->kind = kind;
    if (!auth_rows_load(db) || !answer_rows_load(db) || (kind == SIM_KIND_CARD && !sim_holders_load(db))) {
        snprintf(error, error_bytes, "cannot read the authorizations, answers and cardholders of %s", path);
        sim_db_close(db);
        return false;
    }
    return true;
}

void sim_db_close(sim_db_t *db) {
    for (uint32_t i = 0; i < db->cache_count; i++) sqlite3_finalize(db->cache[i].stmt);
    db->cache_count = 0;
    if (db->db != NULL) sqlite3_close(db->db);
    db->db = NULL;
    free(db->keys_seen);
    db->keys_seen = NULL;
    sim_holders_clear(&db->holders);
    rowmap_clear(&db->auths);
    rowmap_clear(&db->answers);
    free(db->auth_recent);
    db->auth_recent = NULL;
}

static sqlite3_stmt *cached(sim_db_t *db, const char *sql) {
    for (uint32_t i = 0; i < db->cache_count; i++) {
        if (db->cache[i].sql == sql) return db->cache[i].stmt;
    }
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(db->db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        obs_logf(OBS_LEVEL_ERROR, "simulator record: prepare failed: %s", sqlite3_errmsg(db->db));
        return NULL;
    }
    PC_ASSERT(db->cache_count < SIM_STMT_CACHE_MAX); /* the simulator has a fixed set of statements */
    db->cache[db->cache_count].sql = sql;
    db->cache[db->cache_count].stmt = stmt;
    db->cache_count++;
    return stmt;
}

static sqlite3_stmt *bind_all(sim_db_t *db, const char *sql, const char *types, va_list args) {
    sqlite3_stmt *stmt = cached(db, sql);
    if (stmt == NULL) return NULL;
    sqlite3_reset(stmt);
    /* Every parameter is bound each time (no clearing needed): a statement's SQL and its
     * types go together. */
    PC_ASSERT((size_t)sqlite3_bind_parameter_count(stmt) == strlen(types));
    for (int i = 0; types[i] != '\0'; i++) {
        int rc;
        if (types[i] == 's') {
            const char *text = va_arg(args, const char *);
            /* static: the caller's text outlives the statement's use (each use binds it again) */
            rc = text ? sqlite3_bind_text(stmt, i + 1, text, -1, SQLITE_STATIC) : sqlite3_bind_null(stmt, i + 1);
        } else {
            PC_ASSERT(types[i] == 'i');
            rc = sqlite3_bind_int64(stmt, i + 1, va_arg(args, int64_t));
        }
        if (rc != SQLITE_OK) {
            obs_logf(OBS_LEVEL_ERROR, "simulator record: bind failed: %s", sqlite3_errmsg(db->db));
            return NULL;
        }
    }
    return stmt;
}

sqlite3_stmt *sim_db_query(sim_db_t *db, const char *sql, const char *types, ...) {
    va_list args;
    va_start(args, types);
    sqlite3_stmt *stmt = bind_all(db, sql, types, args);
    va_end(args);
    return stmt;
}

bool sim_db_run(sim_db_t *db, const char *sql, const char *types, ...) {
    va_list args;
    va_start(args, types);
    sqlite3_stmt *stmt = bind_all(db, sql, types, args);
    va_end(args);
    if (stmt == NULL) return false;
    int rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    if (rc != SQLITE_DONE) {
        obs_logf(OBS_LEVEL_ERROR, "simulator record: write failed: %s (%d)", sqlite3_errmsg(db->db),
                 sqlite3_extended_errcode(db->db));
        return false;
    }
    return true;
}

bool sim_db_int(sim_db_t *db, int64_t *out, int64_t fallback, const char *sql, const char *types, ...) {
    va_list args;
    va_start(args, types);
    sqlite3_stmt *stmt = bind_all(db, sql, types, args);
    va_end(args);
    if (stmt == NULL) return false;
    int rc = sqlite3_step(stmt);
    *out = rc == SQLITE_ROW && sqlite3_column_type(stmt, 0) != SQLITE_NULL ? sqlite3_column_int64(stmt, 0)
                                                                           : fallback;
    sqlite3_reset(stmt);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        obs_logf(OBS_LEVEL_ERROR, "simulator record: read failed: %s", sqlite3_errmsg(db->db));
        return false;
    }
    return true;
}

bool sim_db_begin(sim_db_t *db) {
    return sim_db_run(db, "BEGIN IMMEDIATE", "");
}

bool sim_db_commit(sim_db_t *db) {
    return sim_db_run(db, "COMMIT", "");
}

void sim_db_rollback(sim_db_t *db) {
    if (!sqlite3_get_autocommit(db->db)) (void)sim_db_run(db, "ROLLBACK", "");
    db->rollbacks++; /* copies of rows taken before are stale */
    /* The maps may name rows the rollback (or a failed COMMIT's) undid. */
    (void)auth_rows_load(db);
    (void)answer_rows_load(db);
    if (db->kind == SIM_KIND_CARD) (void)sim_holders_load(db); /* its sums may hold moves undone */
}

const char *sim_col_text(sqlite3_stmt *stmt, int column) {
    const unsigned char *text = sqlite3_column_text(stmt, column);
    return text ? (const char *)text : "";
}

/* ---- units and group commit ---- */

/* Ends the open group (under the lock): its members hear whether it committed. */
static void group_close(sim_t *sim, bool ok) {
    sim_unit_t *members = sim->group_members;
    if (ok) {
        atomic_fetch_add(&sim->commits, 1);
        atomic_fetch_add(&sim->commit_units, sim->group_units);
    }
    sim->group_open = false;
    sim->group_members = NULL;
    sim->group_units = 0;
    pthread_mutex_lock(&sim->group_lock);
    for (sim_unit_t *unit = members; unit != NULL; unit = unit->next) {
        unit->done = true;
        unit->ok = ok;
    }
    pthread_cond_broadcast(&sim->group_cond);
    pthread_mutex_unlock(&sim->group_lock);
}

/* Commits the open group (under the lock). */
static void group_commit(sim_t *sim) {
    if (!sim->group_open) return;
    bool ok = sim_db_commit(&sim->db);
    if (!ok) {
        obs_logf(OBS_LEVEL_ERROR, "simulator record: a group of %u requests did not commit", sim->group_units);
        sim_db_rollback(&sim->db);
    }
    group_close(sim, ok);
}

/* Rolls the open group back (under the lock): a unit's changes could not be undone alone. */
static void group_abort(sim_t *sim) {
    obs_logf(OBS_LEVEL_ERROR, "simulator record: a failed unit had changed rows; its group of %u was rolled back",
             sim->group_units);
    sim_db_rollback(&sim->db);
    group_close(sim, false);
}

bool sim_unit_begin(sim_t *sim, sim_unit_t *unit, bool writes) {
    memset(unit, 0, sizeof *unit);
    atomic_fetch_add(&sim->entering, 1);
    pthread_mutex_lock(&sim->lock);
    atomic_fetch_sub(&sim->entering, 1);
    if (writes && !sim->group_open) {
        if (!sim_db_begin(&sim->db)) {
            pthread_mutex_unlock(&sim->lock);
            return false;
        }
        sim->group_open = true;
        sim->group_seq++;
    }
    if (sim->group_open) unit->group = sim->group_seq;
    return true;
}

bool sim_unit_mark(sim_t *sim, sim_unit_t *unit) {
    PC_ASSERT(unit->group != 0 && !unit->marked);
    unit->marked = true;
    unit->changes_at_mark = sqlite3_total_changes64(sim->db.db);
    return true;
}

bool sim_unit_changed(sim_t *sim, const sim_unit_t *unit) {
    return unit->marked && sqlite3_total_changes64(sim->db.db) != unit->changes_at_mark;
}

void sim_unit_end(sim_t *sim, sim_unit_t *unit, bool keep) {
    if (!keep && sim_unit_changed(sim, unit) && sim->group_open) {
        group_abort(sim); /* its changes cannot be told apart from the group's: the group fails whole */
        unit->group = 0;
    }
    if (unit->group != 0) {
        unit->next = sim->group_members;
        sim->group_members = unit;
        sim->group_units++;
    }
    bool alone = atomic_load(&sim->entering) == 0 && !atomic_load(&sim->batching);
    if (sim->group_open && (alone || sim->group_units >= SIM_GROUP_UNITS_MAX)) group_commit(sim);
    pthread_mutex_unlock(&sim->lock);
}

bool sim_unit_wait(sim_t *sim, sim_unit_t *unit) {
    if (unit->group == 0) return true;
    pthread_mutex_lock(&sim->group_lock);
    while (!unit->done) pthread_cond_wait(&sim->group_cond, &sim->group_lock);
    pthread_mutex_unlock(&sim->group_lock);
    unit->group = 0; /* waited: no longer a member of anything */
    return unit->ok;
}

bool sim_unit_pending(sim_t *sim, const sim_unit_t *unit) {
    if (unit->group == 0) return false;
    pthread_mutex_lock(&sim->group_lock);
    bool pending = !unit->done;
    pthread_mutex_unlock(&sim->group_lock);
    return pending;
}

void sim_group_flush(sim_t *sim) {
    pthread_mutex_lock(&sim->lock);
    group_commit(sim);
    pthread_mutex_unlock(&sim->lock);
}

/* ---- checkpoints and WAL writeback, off the requests' path ---- */

#define WAL_HEADER_BYTES 32
#define WAL_FRAME_HEADER_BYTES 24

/* After each commit: a WAL grown past the mark asks the worker for a checkpoint (a
 * checkpoint in the commit would hold every request for its writes and fsyncs), and
 * one grown SIM_WAL_WRITEBACK_KIB past the last writeback (or restarted) for another. */
static int on_wal(void *arg, sqlite3 *db, const char *name, int frames) {
    (void)db;
    (void)name;
    sim_t *sim = arg;
    atomic_store_explicit(&sim->wal_frames, frames, memory_order_relaxed);
    bool wake = frames >= sim->checkpoint_frames && !atomic_exchange(&sim->checkpoint_wanted, true);
    int started = atomic_load_explicit(&sim->writeback_frames, memory_order_relaxed);
    if ((frames < started || frames - started >= atomic_load_explicit(&sim->writeback_step_frames, memory_order_relaxed)) &&
        !atomic_exchange(&sim->writeback_wanted, true)) {
        wake = true;
    }
    if (wake) sim_wake(sim);
    return SQLITE_OK;
}

void sim_checkpoints_start(sim_t *sim) {
    int64_t page_bytes = RECORD_PAGE_BYTES; /* an older record's pages may be larger */
    (void)sim_db_int(&sim->db, &page_bytes, RECORD_PAGE_BYTES, "PRAGMA page_size", "");
    if (page_bytes <= 0) page_bytes = RECORD_PAGE_BYTES;
    sim->checkpoint_frames = (int)((int64_t)SIM_CHECKPOINT_WAL_KIB * 1024 / page_bytes);
    sim->writeback_step_frames = (int)((int64_t)SIM_WAL_WRITEBACK_KIB * 1024 / page_bytes);
    sim->wal_frame_bytes = (int)page_bytes + WAL_FRAME_HEADER_BYTES;
    sqlite3_wal_hook(sim->db.db, on_wal, sim); /* replaces SQLite's automatic checkpoint */
}

/* Starts writing to the disk the WAL frames appended since the last writeback, without
 * waiting (the kernel writes them meanwhile): the checkpoint's fsync of the WAL then
 * finds little left. Durability is as before (the commit never waited for the disk). */
static void wal_writeback_run(sim_t *sim) {
    if (!atomic_exchange(&sim->writeback_wanted, false)) return;
    int frames = atomic_load_explicit(&sim->wal_frames, memory_order_relaxed);
    int from = atomic_load_explicit(&sim->writeback_frames, memory_order_relaxed);
    if (frames < from) from = 0; /* the WAL restarted: its frames are written again from its start */
    if (sim->wal_fd < 0) {
        char wal_path[SIM_PATH_BYTES_MAX + 8];
        snprintf(wal_path, sizeof wal_path, "%s-wal", sim->db_path);
        sim->wal_fd = open(wal_path, O_RDONLY | O_CLOEXEC);
        if (sim->wal_fd < 0) {
            obs_logf(OBS_LEVEL_ERROR, "simulator record: WAL writeback: %s: %s", wal_path, strerror(errno));
            atomic_store(&sim->writeback_step_frames, INT32_MAX); /* never asked again: */
            atomic_store(&sim->writeback_frames, 0);              /* no length is below 0 */
            return;
        }
    }
    off_t start = from == 0 ? 0 : WAL_HEADER_BYTES + (off_t)from * sim->wal_frame_bytes;
    off_t end = WAL_HEADER_BYTES + (off_t)frames * sim->wal_frame_bytes;
    if (sync_file_range(sim->wal_fd, start, end - start, SYNC_FILE_RANGE_WRITE) == 0) {
        atomic_fetch_add(&sim->wal_writebacks, 1);
    }
    atomic_store_explicit(&sim->writeback_frames, frames, memory_order_relaxed);
}

void sim_checkpoint_run(sim_t *sim) {
    wal_writeback_run(sim);
    if (!atomic_exchange(&sim->checkpoint_wanted, false)) return;
    /* The schema read opens the WAL: a checkpoint on a connection that has not read
     * yet does nothing. */
    if (sim->checkpoint_db == NULL &&
        (sqlite3_open_v2(sim->db_path, &sim->checkpoint_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
             SQLITE_OK ||
         sqlite3_exec(sim->checkpoint_db, "SELECT count(*) FROM sqlite_schema", NULL, NULL, NULL) != SQLITE_OK)) {
        obs_logf(OBS_LEVEL_ERROR, "simulator record: checkpoint connection: %s",
                 sim->checkpoint_db ? sqlite3_errmsg(sim->checkpoint_db) : "out of memory");
        sqlite3_close(sim->checkpoint_db);
        sim->checkpoint_db = NULL;
        return;
    }
    int log_frames = 0, done_frames = 0;
    int rc = sqlite3_wal_checkpoint_v2(sim->checkpoint_db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log_frames, &done_frames);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
        obs_logf(OBS_LEVEL_ERROR, "simulator record: checkpoint: %s", sqlite3_errmsg(sim->checkpoint_db));
    }
}

void sim_checkpoints_stop(sim_t *sim) {
    if (sim->checkpoint_db != NULL) sqlite3_close(sim->checkpoint_db);
    sim->checkpoint_db = NULL;
    if (sim->wal_fd >= 0) close(sim->wal_fd);
    sim->wal_fd = -1;
}
