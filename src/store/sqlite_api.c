/* store/sqlite_api.c: the API's tables in the SQLite backend: API keys (hash only),
 * account grants of merchant keys, and stored idempotent responses. Writes run on the
 * writer thread inside the batch transaction; reads on an API thread's reader.
 * Statements are prepared per call (a few microseconds each), except the stored
 * replies' that every Idempotency-Key request runs: their connection keeps them
 * (sqlite_stmt_cache.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite_internal.h"
#include "store/store_api.h"

const char *store_sqlite_api_schema(void) {
    return "CREATE TABLE api_keys("
           "  id TEXT PRIMARY KEY,"
           "  key_hash BLOB NOT NULL UNIQUE,"
           "  scope TEXT NOT NULL,"
           "  name TEXT NOT NULL,"
           "  created_ns INTEGER NOT NULL,"
           "  revoked_ns INTEGER NOT NULL DEFAULT 0);"
           "CREATE TABLE account_grants("
           "  key_id TEXT NOT NULL,"
           "  account_id TEXT NOT NULL,"
           "  PRIMARY KEY(key_id, account_id)) WITHOUT ROWID;"
           "CREATE TABLE idempotency_keys("
           "  key_id TEXT NOT NULL,"
           "  idempotency_key TEXT NOT NULL,"
           "  request_hash BLOB NOT NULL,"
           "  status INTEGER NOT NULL,"
           "  body TEXT NOT NULL,"
           "  created_ns INTEGER NOT NULL,"
           "  PRIMARY KEY(key_id, idempotency_key)) WITHOUT ROWID;";
}

/* Version 3: the room each stored reply takes, and an index by age (it also covers
 * key_id and row_bytes), so the purge finds expired rows and the start counts what
 * each key stores without reading a body. */
const char *store_sqlite_api_schema_v3(void) {
    return "ALTER TABLE idempotency_keys ADD COLUMN row_bytes INTEGER NOT NULL DEFAULT 0;"
           "UPDATE idempotency_keys SET row_bytes = length(CAST(body AS BLOB))"
           "  + length(CAST(key_id AS BLOB)) + length(CAST(idempotency_key AS BLOB)) + 64;"
           "CREATE INDEX idempotency_keys_created ON idempotency_keys(created_ns, row_bytes);";
}

/* The room a row takes: its body and keys, plus the hash and integers. Kept equal to
 * the v3 migration's formula. */
static uint64_t idem_row_bytes(const char *key_id, const char *idempotency_key, size_t body_bytes) {
    return (uint64_t)body_bytes + strlen(key_id) + strlen(idempotency_key) + 64;
}

static pc_status sqlite_api_key_insert(store_tx_t *tx, const store_api_key_t *key) {
    sqlite3_stmt *stmt;
    sqlite3 *db = store_sqlite_tx_db(tx);
    if (store_sqlite_prepare(db, "INSERT INTO api_keys(id, key_hash, scope, name, created_ns, revoked_ns)"
                    " VALUES(?1, ?2, ?3, ?4, ?5, ?6)", &stmt, PC_STORE_READ_FAILED) != PC_OK) {
        return PC_STORE_COMMIT_FAILED;
    }
    sqlite3_bind_text(stmt, 1, key->id, -1, SQLITE_STATIC);
    sqlite3_bind_blob(stmt, 2, key->key_hash, STORE_API_HASH_BYTES, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, key->scope, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, key->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 5, (sqlite3_int64)key->created_ns);
    sqlite3_bind_int64(stmt, 6, (sqlite3_int64)key->revoked_ns);
    return store_sqlite_step_done(stmt);
}

static pc_status sqlite_api_key_revoke(store_tx_t *tx, const char *id, uint64_t now_ns, bool *found) {
    sqlite3_stmt *stmt;
    sqlite3 *db = store_sqlite_tx_db(tx);
    *found = false;
    if (store_sqlite_prepare(db, "UPDATE api_keys SET revoked_ns = CASE WHEN revoked_ns = 0 THEN ?1"
                    " ELSE revoked_ns END WHERE id = ?2", &stmt, PC_STORE_READ_FAILED) != PC_OK) {
        return PC_STORE_COMMIT_FAILED;
    }
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)now_ns);
    sqlite3_bind_text(stmt, 2, id, -1, SQLITE_STATIC);
    pc_status status = store_sqlite_step_done(stmt);
    if (status == PC_OK) *found = sqlite3_changes(db) > 0;
    return status;
}

static void key_from_row(sqlite3_stmt *stmt, store_api_key_t *key) {
    memset(key, 0, sizeof(*key));
    const char *id = (const char *)sqlite3_column_text(stmt, 0);
    const char *scope = (const char *)sqlite3_column_text(stmt, 2);
    const char *name = (const char *)sqlite3_column_text(stmt, 3);
    if (id) strncpy(key->id, id, sizeof(key->id) - 1);
    if (scope) strncpy(key->scope, scope, sizeof(key->scope) - 1);
    if (name) strncpy(key->name, name, sizeof(key->name) - 1);
    if (sqlite3_column_bytes(stmt, 1) == STORE_API_HASH_BYTES) {
        memcpy(key->key_hash, sqlite3_column_blob(stmt, 1), STORE_API_HASH_BYTES);
    }
    key->created_ns = (uint64_t)sqlite3_column_int64(stmt, 4);
    key->revoked_ns = (uint64_t)sqlite3_column_int64(stmt, 5);
}

static pc_status sqlite_api_keys_list(store_reader_t *reader, const char *starting_after,
                              uint32_t limit, store_api_key_fn fn, void *ctx, bool *has_more) {
    sqlite3_stmt *stmt;
    *has_more = false;
    if (store_sqlite_prepare(store_sqlite_reader_db(reader),
                "SELECT id, key_hash, scope, name, created_ns, revoked_ns FROM api_keys"
                " WHERE id > ?1 ORDER BY id LIMIT ?2", &stmt, PC_STORE_READ_FAILED) != PC_OK) {
        return PC_STORE_READ_FAILED;
    }
    sqlite3_bind_text(stmt, 1, starting_after ? starting_after : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, limit == 0 ? -1 : (sqlite3_int64)limit + 1);
    uint32_t rows = 0;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (limit != 0 && rows == limit) {
            *has_more = true;
            break;
        }
        store_api_key_t key;
        key_from_row(stmt, &key);
        fn(&key, ctx);
        rows++;
    }
    sqlite3_finalize(stmt);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? PC_OK : PC_STORE_READ_FAILED;
}

static pc_status sqlite_api_grant_insert(store_tx_t *tx, const char *key_id, const char *account_id) {
    sqlite3_stmt *stmt;
    if (store_sqlite_prepare(store_sqlite_tx_db(tx), "INSERT OR IGNORE INTO account_grants(key_id, account_id)"
                                        " VALUES(?1, ?2)", &stmt, PC_STORE_READ_FAILED) != PC_OK) {
        return PC_STORE_COMMIT_FAILED;
    }
    sqlite3_bind_text(stmt, 1, key_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, account_id, -1, SQLITE_STATIC);
    return store_sqlite_step_done(stmt);
}

static pc_status sqlite_api_grant_exists(store_reader_t *reader, const char *key_id,
                                 const char *account_id, bool *exists) {
    sqlite3_stmt *stmt;
    *exists = false;
    if (store_sqlite_prepare(store_sqlite_reader_db(reader), "SELECT 1 FROM account_grants WHERE key_id = ?1"
                                                " AND account_id = ?2", &stmt, PC_STORE_READ_FAILED) != PC_OK) {
        return PC_STORE_READ_FAILED;
    }
    sqlite3_bind_text(stmt, 1, key_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, account_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    *exists = rc == SQLITE_ROW;
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? PC_OK : PC_STORE_READ_FAILED;
}

static pc_status sqlite_api_grants_list(store_reader_t *reader, store_api_grant_fn fn, void *ctx) {
    sqlite3_stmt *stmt;
    if (store_sqlite_prepare(store_sqlite_reader_db(reader), "SELECT key_id, account_id FROM account_grants"
                                                " ORDER BY key_id, account_id", &stmt, PC_STORE_READ_FAILED) != PC_OK) {
        return PC_STORE_READ_FAILED;
    }
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *key_id = (const char *)sqlite3_column_text(stmt, 0);
        const char *account_id = (const char *)sqlite3_column_text(stmt, 1);
        if (key_id != NULL && account_id != NULL) fn(key_id, account_id, ctx);
    }
    sqlite3_finalize(stmt);
    return rc == SQLITE_DONE ? PC_OK : PC_STORE_READ_FAILED;
}

/* Version 13: the replies appended by seq in the order they are stored, with no index
 * by key (sqlite_idem_rows.c finds a key's row) and none by age (the purge walks seq
 * order: a reply stored later is never older, but for a clock stepped back). The
 * small columns come first: the load at open reads the keys without a body. */
const char *store_sqlite_api_schema_v13(void) {
    return "CREATE TABLE idempotency_replies("
           "  seq INTEGER PRIMARY KEY,"
           "  key_id TEXT NOT NULL,"
           "  idempotency_key TEXT NOT NULL,"
           "  created_ns INTEGER NOT NULL,"
           "  row_bytes INTEGER NOT NULL,"
           "  status INTEGER NOT NULL,"
           "  request_hash BLOB NOT NULL,"
           "  body TEXT NOT NULL);"
           "INSERT INTO idempotency_replies(key_id, idempotency_key, created_ns, row_bytes, status, request_hash,"
           "  body) SELECT key_id, idempotency_key, created_ns, row_bytes, status, request_hash, body"
           "  FROM idempotency_keys ORDER BY created_ns, key_id, idempotency_key;"
           "DROP TABLE idempotency_keys;"
           "ALTER TABLE idempotency_replies RENAME TO idempotency_keys;";
}

/* A scan's pages pass through a small cache of its own connection's: a scan of
 * millions of replies would otherwise fill that connection's page cache (128 MiB,
 * store_sqlite_configure) with pages nothing reads again. Not inside a transaction
 * (the writer's), where a smaller cache could spill the batch's pages early. */
#define IDEM_SCAN_CACHE_KIB 2048

static int cache_size_swap(sqlite3 *db, int cache_size) {
    int old = 0;
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(db, "PRAGMA cache_size", -1, &stmt, NULL) != SQLITE_OK) return 0;
    if (sqlite3_step(stmt) == SQLITE_ROW) old = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    char sql[48];
    snprintf(sql, sizeof sql, "PRAGMA cache_size=%d", cache_size);
    if (old != 0) (void)sqlite3_exec(db, sql, NULL, NULL, NULL);
    return old;
}

/* In seq order: the keys and the room come before the body in each row, so a large
 * body's overflow pages are not read. */
static pc_status idem_keys_scan(sqlite3 *db, bool (*fn)(sqlite3_stmt *stmt, void *ctx), void *ctx) {
    sqlite3_stmt *stmt;
    if (store_sqlite_prepare(db, "SELECT seq, key_id, idempotency_key, row_bytes FROM idempotency_keys ORDER BY seq",
                             &stmt, PC_STORE_READ_FAILED) != PC_OK) {
        return PC_STORE_READ_FAILED;
    }
    int cache_size = sqlite3_get_autocommit(db) ? cache_size_swap(db, -IDEM_SCAN_CACHE_KIB) : 0;
    int rc;
    bool going = true;
    while (going && (rc = sqlite3_step(stmt)) == SQLITE_ROW) going = fn(stmt, ctx);
    sqlite3_finalize(stmt);
    if (cache_size != 0) (void)cache_size_swap(db, cache_size);
    if (!going) return PC_SHUTTING_DOWN;
    return rc == SQLITE_DONE ? PC_OK : PC_STORE_READ_FAILED;
}

/* A row's entry into the map being loaded; false (the scan stops) on a bad row or
 * want of memory, said in '*status'. */
static bool idem_rows_add_row(store_idem_rows_t *rows, sqlite3_stmt *stmt, pc_status *status) {
    const char *key_id = (const char *)sqlite3_column_text(stmt, 1);
    const char *idempotency_key = (const char *)sqlite3_column_text(stmt, 2);
    uint64_t seq = (uint64_t)sqlite3_column_int64(stmt, 0);
    if (key_id == NULL || idempotency_key == NULL || seq == 0) { /* NOT NULL columns, seq from 1 */
        *status = PC_STORE_READ_FAILED;
        return false;
    }
    *status = store_idem_rows_add_loaded(rows, store_idem_rows_tag(rows, key_id, idempotency_key), seq);
    return *status == PC_OK;
}

typedef struct {
    store_idem_rows_t *rows; /* NULL: the map is loaded already */
    pc_status status;        /* the map's load: its failure stops the scan */
    store_api_idem_key_fn fn;
    void *ctx;
} idem_keys_ctx;

static bool idem_key_row(sqlite3_stmt *stmt, void *ctx) {
    idem_keys_ctx *keys = ctx;
    if (keys->rows != NULL && !idem_rows_add_row(keys->rows, stmt, &keys->status)) return false;
    if (keys->fn == NULL) return true;
    const char *key_id = (const char *)sqlite3_column_text(stmt, 1);
    const char *idempotency_key = (const char *)sqlite3_column_text(stmt, 2);
    return keys->fn(key_id ? key_id : "", idempotency_key ? idempotency_key : "",
                    (uint64_t)sqlite3_column_int64(stmt, 3), keys->ctx);
}

/* One scan of the replies for 'fn' (NULL: none) that loads the map too when it is
 * not loaded yet ("Loading", sqlite_idem_rows.c). A load cut short (by 'fn' or a
 * failure) leaves the map to the next use. */
static pc_status idem_keys_each(store_idem_rows_t *rows, sqlite3 *db, store_api_idem_key_fn fn, void *ctx) {
    bool loading = store_idem_rows_load_begin(rows);
    if (!loading && fn == NULL) return PC_OK;
    idem_keys_ctx keys = {.rows = loading ? rows : NULL, .status = PC_OK, .fn = fn, .ctx = ctx};
    pc_status status = idem_keys_scan(db, idem_key_row, &keys);
    if (status == PC_SHUTTING_DOWN && keys.status != PC_OK) status = keys.status;
    if (loading) store_idem_rows_load_end(rows, status == PC_OK);
    return status;
}

/* The map, loaded before its first use; 'failed' names a failed read. */
static pc_status idem_rows_ready(store_idem_rows_t *rows, sqlite3 *db, pc_status failed) {
    pc_status status = idem_keys_each(rows, db, NULL, NULL);
    return status == PC_STORE_READ_FAILED ? failed : status;
}

/* The map's candidates for a key: in 'small' when they fit, else in '*seqs' (malloc'ed:
 * the caller frees it when it is not 'small'). */
static pc_status idem_candidates(store_idem_rows_t *rows, uint32_t tag, uint64_t small[8], uint64_t **seqs,
                                 uint32_t *count) {
    *seqs = small;
    *count = store_idem_rows_candidates(rows, tag, small, 8);
    while (*count > 8) { /* rare: tags shared by many rows; every one is read all the same */
        uint32_t want = *count;
        if (*seqs != small) free(*seqs);
        *seqs = malloc(want * sizeof **seqs);
        if (*seqs == NULL) return PC_NO_MEMORY;
        *count = store_idem_rows_candidates(rows, tag, *seqs, want);
        if (*count <= want) break;
    }
    return PC_OK;
}

/* Steps 'stmt' (the key bound as ?2 and ?3) over each candidate seq bound as ?1 until
 * a row matches: SQLITE_ROW with the statement on it (the caller resets it), or
 * SQLITE_DONE when none is the key's, or the error. */
static int idem_row_find(sqlite3_stmt *stmt, const uint64_t *seqs, uint32_t count) {
    int rc = SQLITE_DONE;
    for (uint32_t i = 0; i < count && rc == SQLITE_DONE; i++) {
        sqlite3_reset(stmt);
        sqlite3_bind_int64(stmt, 1, (sqlite3_int64)seqs[i]);
        rc = sqlite3_step(stmt);
    }
    return rc;
}

static store_idem_rows_t *reader_idem_rows(store_reader_t *reader) {
    return ((sqlite_store_t *)reader->store)->idem_rows;
}

static store_idem_rows_t *tx_idem_rows(store_tx_t *tx) {
    return ((sqlite_store_t *)tx->store)->idem_rows;
}

static void idem_from_row(sqlite3_stmt *stmt, store_api_idem_t *out) {
    if (sqlite3_column_bytes(stmt, 0) == STORE_API_HASH_BYTES) {
        memcpy(out->request_hash, sqlite3_column_blob(stmt, 0), STORE_API_HASH_BYTES);
    }
    out->http_status = sqlite3_column_int(stmt, 1);
    out->body_bytes = (size_t)sqlite3_column_bytes(stmt, 2);
    out->created_ns = (uint64_t)sqlite3_column_int64(stmt, 3);
}

static pc_status sqlite_api_idem_get(store_reader_t *reader, const char *key_id,
                             const char *idempotency_key, store_api_idem_t *out, bool *found) {
    sqlite3_stmt *stmt;
    memset(out, 0, sizeof(*out));
    *found = false;
    store_idem_rows_t *rows = reader_idem_rows(reader);
    uint64_t small[8], *seqs;
    uint32_t count;
    pc_status status = idem_rows_ready(rows, store_sqlite_reader_db(reader), PC_STORE_READ_FAILED);
    if (status != PC_OK) return status;
    status = idem_candidates(rows, store_idem_rows_tag(rows, key_id, idempotency_key), small, &seqs, &count);
    if (status != PC_OK || count == 0) return status;
    store_conn_t c = store_sqlite_reader_conn(reader);
    if (store_sqlite_stmt_take(c, STORE_STMT_API_IDEM_GET,
                               "SELECT request_hash, status, body, created_ns FROM idempotency_keys"
                               " WHERE seq = ?1 AND key_id = ?2 AND idempotency_key = ?3",
                               &stmt, PC_STORE_READ_FAILED) != PC_OK) {
        if (seqs != small) free(seqs);
        return PC_STORE_READ_FAILED;
    }
    sqlite3_bind_text(stmt, 2, key_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, idempotency_key, -1, SQLITE_STATIC);
    int rc = idem_row_find(stmt, seqs, count);
    if (seqs != small) free(seqs);
    status = rc == SQLITE_ROW || rc == SQLITE_DONE ? PC_OK : PC_STORE_READ_FAILED;
    if (rc == SQLITE_ROW) {
        idem_from_row(stmt, out);
        out->body = malloc(out->body_bytes + 1);
        if (out->body == NULL) {
            status = PC_NO_MEMORY;
        } else {
            memcpy(out->body, sqlite3_column_text(stmt, 2), out->body_bytes);
            out->body[out->body_bytes] = '\0';
            *found = true;
        }
    }
    store_sqlite_stmt_give_back(c, STORE_STMT_API_IDEM_GET, stmt);
    return status;
}

/* A reply waits in the transaction and goes in with the batch's others, several a
 * statement (sqlite_rows.c), at COMMIT: a card payment stores two, and each alone paid
 * SQLite's statement costs (~4.3k writer instructions an insert, callgrind). Its seq
 * (the rowid) is taken now, so the order of storing stays the order of seqs. The map
 * has its entry before it waits ("Exactness", sqlite_idem_rows.c); what reads the table
 * on the writer's connection inside a batch inserts the waiting replies first (a
 * key's candidates, the purge); readers see committed rows only. A reply whose body is
 * past IDEM_REPLY_WAIT_BYTES_MAX goes in at once, alone (after those waiting): the
 * buffer's memory stays bounded by 16 such bodies. */
#define IDEM_REPLY_INSERT_PREFIX                                                                       \
    "INSERT OR FAIL INTO idempotency_keys(seq, key_id, idempotency_key, created_ns, row_bytes, status," \
    " request_hash, body) VALUES"
#define IDEM_REPLY_COLUMNS 8
#define IDEM_REPLY_WAIT_BYTES_MAX (16 * 1024)

static pc_status idem_replies_flush(sqlite_store_t *store) {
    if (store->idem_replies == NULL || !store_sqlite_rows_waiting(store->idem_replies)) return PC_OK;
    return store_sqlite_rows_flush(store->idem_replies) == PC_OK ? PC_OK : PC_STORE_COMMIT_FAILED;
}

static pc_status idem_row_insert(sqlite_store_t *store, uint64_t seq, const char *key_id, const char *idempotency_key,
                                 const store_api_idem_t *record) {
    if (store->idem_replies == NULL) {
        pc_status status = store_sqlite_rows_new(store, IDEM_REPLY_INSERT_PREFIX, IDEM_REPLY_COLUMNS, &store->idem_replies);
        if (status != PC_OK) return status;
    }
    store_sqlite_rows_t *rows = store->idem_replies;
    store_sqlite_rows_int(rows, (int64_t)seq);
    store_sqlite_rows_text(rows, key_id, strlen(key_id));
    store_sqlite_rows_text(rows, idempotency_key, strlen(idempotency_key));
    store_sqlite_rows_int(rows, (int64_t)record->created_ns);
    store_sqlite_rows_int(rows, (int64_t)record->row_bytes);
    store_sqlite_rows_int(rows, record->http_status);
    store_sqlite_rows_blob(rows, record->request_hash, STORE_API_HASH_BYTES);
    store_sqlite_rows_text(rows, record->body, record->body_bytes);
    if (store_sqlite_rows_end_row(rows) != PC_OK) return PC_STORE_COMMIT_FAILED;
    return record->body_bytes > IDEM_REPLY_WAIT_BYTES_MAX ? idem_replies_flush(store) : PC_OK;
}

/* The row stored under the key ('tag'), as the writer's transaction sees it: its seq
 * and room (0, 0 when none). */
static pc_status idem_row_stored(store_tx_t *tx, uint32_t tag, const char *key_id, const char *idempotency_key,
                                 uint64_t *seq, uint64_t *row_bytes) {
    sqlite3_stmt *stmt;
    *seq = 0;
    *row_bytes = 0;
    uint64_t small[8], *seqs;
    uint32_t count;
    pc_status status = idem_rows_ready(tx_idem_rows(tx), store_sqlite_tx_db(tx), PC_STORE_COMMIT_FAILED);
    if (status != PC_OK) return status;
    status = idem_candidates(tx_idem_rows(tx), tag, small, &seqs, &count);
    if (status == PC_OK && count > 0) status = idem_replies_flush(store_sqlite_tx_store(tx)); /* one may wait */
    if (status != PC_OK || count == 0) {
        if (seqs != small) free(seqs);
        return status;
    }
    store_conn_t c = store_sqlite_tx_conn(tx);
    if (store_sqlite_stmt_take(c, STORE_STMT_API_IDEM_ROW_BYTES,
                               "SELECT seq, row_bytes FROM idempotency_keys"
                               " WHERE seq = ?1 AND key_id = ?2 AND idempotency_key = ?3",
                               &stmt, PC_STORE_COMMIT_FAILED) != PC_OK) {
        if (seqs != small) free(seqs);
        return PC_STORE_COMMIT_FAILED;
    }
    sqlite3_bind_text(stmt, 2, key_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, idempotency_key, -1, SQLITE_STATIC);
    int rc = idem_row_find(stmt, seqs, count);
    if (seqs != small) free(seqs);
    if (rc == SQLITE_ROW) {
        *seq = (uint64_t)sqlite3_column_int64(stmt, 0);
        *row_bytes = (uint64_t)sqlite3_column_int64(stmt, 1);
    }
    store_sqlite_stmt_give_back(c, STORE_STMT_API_IDEM_ROW_BYTES, stmt);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? PC_OK : PC_STORE_COMMIT_FAILED;
}

static pc_status idem_row_delete(sqlite3 *db, uint64_t seq) {
    sqlite3_stmt *stmt;
    if (store_sqlite_prepare(db, "DELETE FROM idempotency_keys WHERE seq = ?1", &stmt, PC_STORE_READ_FAILED) != PC_OK) {
        return PC_STORE_COMMIT_FAILED;
    }
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)seq);
    int rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    return rc == SQLITE_DONE ? PC_OK : PC_STORE_COMMIT_FAILED;
}

/* A reply replacing one of the same key is appended too (the old row deleted): seq
 * order stays the order replies were stored, which the purge walks. The key's row is
 * looked up whatever 'absent_known' says (a lookup in memory): two rows of one key
 * can never be stored. */
static pc_status sqlite_api_idem_put(store_tx_t *tx, const char *key_id, const char *idempotency_key,
                             store_api_idem_t *record, uint64_t *replaced_row_bytes) {
    store_idem_rows_t *rows = tx_idem_rows(tx);
    uint32_t tag = store_idem_rows_tag(rows, key_id, idempotency_key);
    uint64_t old_seq = 0;
    *replaced_row_bytes = 0;
    pc_status status = idem_row_stored(tx, tag, key_id, idempotency_key, &old_seq, replaced_row_bytes);
    if (status == PC_OK && old_seq != 0) status = store_idem_rows_forget_later(rows, tag, old_seq);
    if (status == PC_OK && old_seq != 0) status = idem_row_delete(store_sqlite_tx_db(tx), old_seq);
    if (status != PC_OK) return status;
    record->row_bytes = idem_row_bytes(key_id, idempotency_key, record->body_bytes);
    uint64_t seq = store_idem_rows_seq_take(rows);
    status = store_idem_rows_add(rows, tag, seq); /* before the row can commit */
    if (status == PC_OK) status = idem_row_insert(store_sqlite_tx_store(tx), seq, key_id, idempotency_key, record);
    return status;
}

/* The purge's victims, chosen before any is deleted (a SELECT must not walk rows its
 * own connection is deleting). On the stack: a purge allocates nothing, so it cannot
 * fail the batch it rides in for want of memory. */
typedef struct {
    uint32_t count;
    uint64_t seqs[API_IDEM_PURGE_ROWS_MAX];
    char key_ids[API_IDEM_PURGE_ROWS_MAX][PC_ID_SIZE];
    char idempotency_keys[API_IDEM_PURGE_ROWS_MAX][API_IDEMPOTENCY_KEY_BYTES_MAX + 1];
    uint64_t row_bytes[API_IDEM_PURGE_ROWS_MAX];
} idem_victims;

/* The oldest replies in seq order, up to the first one not created before
 * 'before_ns' (the rest are younger, but for a clock stepped back: such a reply is
 * purged once it expires itself, and the replies behind it then; an expired reply
 * reads as absent whether purged or not, idempotency.c). */
static pc_status idem_victims_select(sqlite3 *db, uint64_t before_ns, uint32_t rows_max,
                                     uint64_t bytes_max, idem_victims *v) {
    sqlite3_stmt *stmt;
    if (store_sqlite_prepare(db, "SELECT seq, key_id, idempotency_key, row_bytes, created_ns FROM idempotency_keys"
                    " ORDER BY seq LIMIT ?1", &stmt, PC_STORE_READ_FAILED) != PC_OK) {
        return PC_STORE_COMMIT_FAILED;
    }
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)rows_max);
    uint64_t bytes = 0;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW && v->count < rows_max) {
        uint64_t row_bytes = (uint64_t)sqlite3_column_int64(stmt, 3);
        if ((uint64_t)sqlite3_column_int64(stmt, 4) >= before_ns) break;
        if (v->count > 0 && bytes + row_bytes > bytes_max) break;
        const char *key_id = (const char *)sqlite3_column_text(stmt, 1);
        const char *idem_key = (const char *)sqlite3_column_text(stmt, 2);
        v->seqs[v->count] = (uint64_t)sqlite3_column_int64(stmt, 0);
        snprintf(v->key_ids[v->count], PC_ID_SIZE, "%s", key_id ? key_id : "");
        snprintf(v->idempotency_keys[v->count], API_IDEMPOTENCY_KEY_BYTES_MAX + 1, "%s",
                 idem_key ? idem_key : "");
        v->row_bytes[v->count++] = row_bytes;
        bytes += row_bytes;
    }
    sqlite3_finalize(stmt);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? PC_OK : PC_STORE_COMMIT_FAILED;
}

/* The victims are the first rows in seq order, so one range holds them and nothing
 * else (a row stored since has a larger seq): one statement deletes them all. */
static pc_status idem_victims_delete(store_tx_t *tx, const idem_victims *v, store_api_idem_purged_fn fn,
                                     void *ctx) {
    if (v->count == 0) return PC_OK;
    store_idem_rows_t *rows = tx_idem_rows(tx);
    pc_status status = PC_OK;
    for (uint32_t i = 0; i < v->count && status == PC_OK; i++) {
        uint32_t tag = store_idem_rows_tag(rows, v->key_ids[i], v->idempotency_keys[i]);
        status = store_idem_rows_forget_later(rows, tag, v->seqs[i]);
    }
    sqlite3 *db = store_sqlite_tx_db(tx);
    sqlite3_stmt *stmt = NULL;
    if (status == PC_OK && store_sqlite_prepare(db, "DELETE FROM idempotency_keys WHERE seq BETWEEN ?1 AND ?2", &stmt,
                                                PC_STORE_READ_FAILED) != PC_OK) {
        status = PC_STORE_COMMIT_FAILED;
    }
    if (status == PC_OK) {
        sqlite3_bind_int64(stmt, 1, (sqlite3_int64)v->seqs[0]);
        sqlite3_bind_int64(stmt, 2, (sqlite3_int64)v->seqs[v->count - 1]);
        int rc = sqlite3_step(stmt);
        /* anything but exactly the victims (a row between them unseen): the batch fails */
        if (rc != SQLITE_DONE || sqlite3_changes(db) != (int)v->count) status = PC_STORE_COMMIT_FAILED;
    }
    sqlite3_finalize(stmt);
    for (uint32_t i = 0; i < v->count && status == PC_OK; i++) {
        fn(v->key_ids[i], v->idempotency_keys[i], v->row_bytes[i], ctx);
    }
    return status;
}

static pc_status sqlite_api_idem_purge(store_tx_t *tx, uint64_t before_ns, uint32_t rows_max,
                               uint64_t bytes_max, store_api_idem_purged_fn fn, void *ctx) {
    PC_ASSERT(rows_max > 0 && rows_max <= API_IDEM_PURGE_ROWS_MAX);
    idem_victims v;
    v.count = 0;
    pc_status status = idem_rows_ready(tx_idem_rows(tx), store_sqlite_tx_db(tx), PC_STORE_COMMIT_FAILED);
    if (status == PC_OK) status = idem_replies_flush(store_sqlite_tx_store(tx)); /* the select reads the table */
    if (status == PC_OK) status = idem_victims_select(store_sqlite_tx_db(tx), before_ns, rows_max, bytes_max, &v);
    if (status == PC_OK) status = idem_victims_delete(tx, &v, fn, ctx);
    return status;
}

static pc_status sqlite_api_idem_keys(store_reader_t *reader, store_api_idem_key_fn fn, void *ctx) {
    return idem_keys_each(reader_idem_rows(reader), store_sqlite_reader_db(reader), fn, ctx);
}

pc_status store_sqlite_idem_rows_open(sqlite_store_t *store) {
    pc_status status = store_idem_rows_new(&store->idem_rows);
    if (status != PC_OK) (void)store_sqlite_fail(store, status, "idempotency replies map");
    return status;
}

const store_api_ops_t store_sqlite_api_ops = {
    .key_insert = sqlite_api_key_insert,
    .key_revoke = sqlite_api_key_revoke,
    .keys_list = sqlite_api_keys_list,
    .grant_insert = sqlite_api_grant_insert,
    .grant_exists = sqlite_api_grant_exists,
    .grants_list = sqlite_api_grants_list,
    .idem_get = sqlite_api_idem_get,
    .idem_put = sqlite_api_idem_put,
    .idem_purge = sqlite_api_idem_purge,
    .idem_keys = sqlite_api_idem_keys,
};
