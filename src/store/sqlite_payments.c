/* store/sqlite_payments.c: the payments layer's tables in the SQLite backend.
 * Objects (merchants, payments, operations, wallets, payouts) are a row each: the
 * columns the listings and recovery need, plus the payments layer's JSON document.
 * Lookups map unique names (an Idempotency-Key, a risk decision, a channel attempt's
 * key) to objects. The vault's rows hold ciphertext only: a card number never reaches
 * this file in clear. Writes run on the writer thread inside the batch transaction. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite_internal.h"
#include "store/store_payments.h"

/* Version 6: a record per version of an object, appended (never rewritten). Rows
 * are appended in the order versions are made (rowid); the index finds an object's
 * version, and payment ids begin with their creation time, so the entries a batch
 * adds land on few index pages. Since version 16 'doc' holds a record packed (a BLOB,
 * sqlite_pay_pack.c) or, written before, as text. */
const char *store_sqlite_payments_schema_v6(void) {
    return "CREATE TABLE IF NOT EXISTS pay_versions("
           "  seq INTEGER PRIMARY KEY,"
           "  object_id TEXT NOT NULL,"
           "  version INTEGER NOT NULL,"
           "  doc TEXT NOT NULL);"
           "CREATE UNIQUE INDEX IF NOT EXISTS pay_versions_object ON pay_versions(object_id, version);";
}

/* Version 8: an operation's row is listed only by the recovery's pending index, so
 * the listings' indexes leave operations out (a listing names its kind and adds
 * "kind <> 'op'", which lets the planner use them); nothing lists by parent. */
const char *store_sqlite_payments_schema_v8(void) {
    return "DROP INDEX IF EXISTS pay_objects_parent;"
           "DROP INDEX IF EXISTS pay_objects_merchant;"
           "DROP INDEX IF EXISTS pay_objects_kind;"
           "CREATE INDEX pay_objects_merchant ON pay_objects(kind, merchant_id, created_ns, id)"
           "  WHERE kind <> 'op';"
           "CREATE INDEX pay_objects_kind ON pay_objects(kind, created_ns, id) WHERE kind <> 'op';";
}

/* Version 9: a payment's row keeps the final answer of the request that made it (its
 * version and HTTP status), so that the request's stored Idempotency-Key reply, written
 * with the payment's first command as its name ("@payment:<id>"), is not rewritten by
 * the command that answers: one row and one random index page less per payment. */
const char *store_sqlite_payments_schema_v9(void) {
    return "ALTER TABLE pay_objects ADD COLUMN answer_version INTEGER NOT NULL DEFAULT 0;"
           "ALTER TABLE pay_objects ADD COLUMN answer_status INTEGER NOT NULL DEFAULT 0;";
}

/* Version 11: a card payment's operations have no rows of their own (their payment's
 * records hold them): the payment's row names the one in flight, and the recovery finds
 * those through this partial index instead of the operations' pending index. */
const char *store_sqlite_payments_schema_v11(void) {
    return "ALTER TABLE pay_objects ADD COLUMN pending_op TEXT NOT NULL DEFAULT '';"
           "CREATE INDEX pay_objects_pending_op ON pay_objects(kind, created_ns, id) WHERE pending_op <> '';";
}

const char *store_sqlite_payments_schema(void) {
    return "CREATE TABLE IF NOT EXISTS pay_objects("
           "  id TEXT PRIMARY KEY,"
           "  kind TEXT NOT NULL,"
           "  merchant_id TEXT NOT NULL,"
           "  parent_id TEXT NOT NULL,"
           "  status TEXT NOT NULL,"
           "  created_ns INTEGER NOT NULL,"
           "  updated_ns INTEGER NOT NULL,"
           "  version INTEGER NOT NULL,"
           "  doc TEXT NOT NULL) WITHOUT ROWID;"
           "CREATE INDEX IF NOT EXISTS pay_objects_merchant"
           "  ON pay_objects(kind, merchant_id, created_ns, id);"
           "CREATE INDEX IF NOT EXISTS pay_objects_kind ON pay_objects(kind, created_ns, id);"
           "CREATE INDEX IF NOT EXISTS pay_objects_parent ON pay_objects(parent_id, created_ns, id)"
           "  WHERE parent_id <> '';"
           "CREATE INDEX IF NOT EXISTS pay_objects_pending ON pay_objects(kind, created_ns)"
           "  WHERE status = 'pending';"
           "CREATE TABLE IF NOT EXISTS pay_lookups("
           "  name TEXT PRIMARY KEY,"
           "  object_id TEXT NOT NULL,"
           "  extra BLOB) WITHOUT ROWID;"
           "CREATE TABLE IF NOT EXISTS vault_keys("
           "  id TEXT PRIMARY KEY,"
           "  kind TEXT NOT NULL,"
           "  kek_id TEXT NOT NULL,"
           "  wrapped BLOB NOT NULL,"
           "  created_ns INTEGER NOT NULL) WITHOUT ROWID;"
           "CREATE TABLE IF NOT EXISTS vault_cards("
           "  token TEXT PRIMARY KEY,"
           "  data_key_id TEXT NOT NULL,"
           "  nonce BLOB NOT NULL,"
           "  ciphertext BLOB NOT NULL,"
           "  bin TEXT NOT NULL,"
           "  last4 TEXT NOT NULL,"
           "  exp_month INTEGER NOT NULL,"
           "  exp_year INTEGER NOT NULL,"
           "  fingerprint TEXT NOT NULL,"
           "  created_ns INTEGER NOT NULL) WITHOUT ROWID;";
}

/* ---- statements kept by each connection (sqlite_stmt_cache.c) ---- */

#define OBJECT_COLUMNS "id, kind, merchant_id, parent_id, status, created_ns, updated_ns, version, doc, pending_op"
#define OBJECT_ANSWER_COLUMNS OBJECT_COLUMNS ", answer_version, answer_status"

static const char *const statement_sql[STORE_STMT_SLOT_COUNT] = {
    [STORE_STMT_PAY_OBJECT_PUT] =
        "INSERT OR REPLACE INTO pay_objects(id, kind, merchant_id, parent_id, status, created_ns, updated_ns,"
        " version, doc, answer_version, answer_status, pending_op) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)",
    /* a new version of an object: only the columns a version changes, so the listings'
     * indexes (of kind, merchant and creation time) are not rewritten; the first final
     * answer stays (a later command of the payment never replaces it) */
    [STORE_STMT_PAY_OBJECT_UPDATE] =
        "UPDATE pay_objects SET status = ?5, updated_ns = ?7, version = ?8, doc = ?9, pending_op = ?12,"
        " answer_status = CASE answer_version WHEN 0 THEN ?11 ELSE answer_status END,"
        " answer_version = CASE answer_version WHEN 0 THEN ?10 ELSE answer_version END"
        " WHERE id = ?1 AND kind = ?2 AND merchant_id = ?3 AND parent_id = ?4 AND created_ns = ?6",
    [STORE_STMT_PAY_OBJECT_GET] = "SELECT " OBJECT_ANSWER_COLUMNS " FROM pay_objects WHERE id = ?1",
    [STORE_STMT_PAY_CURSOR_FIND] = "SELECT created_ns, merchant_id FROM pay_objects WHERE id = ?1 AND kind = ?2",
    [STORE_STMT_PAY_VERSION_GET] = "SELECT doc FROM pay_versions WHERE object_id = ?1 AND version = ?2",
    [STORE_STMT_PAY_LOOKUP_PUT] = "INSERT OR IGNORE INTO pay_lookups(name, object_id, extra) VALUES(?1, ?2, ?3)",
    [STORE_STMT_PAY_LOOKUP_GET] = "SELECT object_id, extra FROM pay_lookups WHERE name = ?1",
    [STORE_STMT_PAY_LOOKUP_PREFIX] =
        "SELECT name, object_id, extra FROM pay_lookups WHERE name >= ?1 AND name < ?1 || char(1114111)"
        " ORDER BY name",
    [STORE_STMT_VAULT_KEY_PUT] =
        "INSERT OR REPLACE INTO vault_keys(id, kind, kek_id, wrapped, created_ns) VALUES(?1,?2,?3,?4,?5)",
    [STORE_STMT_VAULT_KEYS_LIST] = "SELECT id, kind, kek_id, wrapped, created_ns FROM vault_keys ORDER BY created_ns, id",
    [STORE_STMT_VAULT_CARD_GET] =
        "SELECT token, data_key_id, nonce, ciphertext, bin, last4, exp_month, exp_year, fingerprint,"
        " created_ns FROM vault_cards WHERE token = ?1",
};

static pc_status take(store_conn_t c, int slot, sqlite3_stmt **out, pc_status failure) {
    return store_sqlite_stmt_take(c, slot, statement_sql[slot], out, failure);
}

static void give_back(store_conn_t c, int slot, sqlite3_stmt *stmt) {
    store_sqlite_stmt_give_back(c, slot, stmt);
}

static pc_status step_done(store_conn_t c, int slot, sqlite3_stmt *stmt) {
    int rc = sqlite3_step(stmt);
    give_back(c, slot, stmt);
    return rc == SQLITE_DONE ? PC_OK : PC_STORE_COMMIT_FAILED;
}

/* The object's 12 columns bound from parameter 'first' on, in the put's order. */
static void row_bind(sqlite3_stmt *stmt, int first, const store_pay_object_t *o) {
    sqlite3_bind_text(stmt, first, o->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, first + 1, o->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, first + 2, o->merchant_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, first + 3, o->parent_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, first + 4, o->status, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, first + 5, (sqlite3_int64)o->created_ns);
    sqlite3_bind_int64(stmt, first + 6, (sqlite3_int64)o->updated_ns);
    sqlite3_bind_int64(stmt, first + 7, (sqlite3_int64)o->version);
    sqlite3_bind_text(stmt, first + 8, o->doc != NULL ? o->doc : "", (int)o->doc_bytes, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, first + 9, (sqlite3_int64)o->answer_version);
    sqlite3_bind_int(stmt, first + 10, o->answer_version != 0 ? o->answer_status : 0);
    sqlite3_bind_text(stmt, first + 11, o->pending_op, -1, SQLITE_STATIC);
}

/* Runs the put or the update statement with the object's columns bound. */
static pc_status object_write(store_conn_t c, int slot, const store_pay_object_t *o) {
    sqlite3_stmt *stmt;
    if (take(c, slot, &stmt, PC_STORE_COMMIT_FAILED) != PC_OK) return PC_STORE_COMMIT_FAILED;
    row_bind(stmt, 1, o);
    return step_done(c, slot, stmt);
}

/* An update in place when the row exists with the same listing keys, else the whole
 * row (object_write_now: a statement a row). */
static pc_status object_write_now(store_conn_t c, const store_pay_object_t *o) {
    if (o->version <= 1) return object_write(c, STORE_STMT_PAY_OBJECT_PUT, o);
    pc_status status = object_write(c, STORE_STMT_PAY_OBJECT_UPDATE, o);
    if (status != PC_OK || sqlite3_changes(c.db) == 1) return status;
    return object_write(c, STORE_STMT_PAY_OBJECT_PUT, o);
}

/* ---- rows written at COMMIT, several a statement ----
 * A payment's row is written by every command that writes the payment (made, then its
 * status, version, the op in flight), and each write alone paid SQLite's statement
 * costs (step, a cursor on the table and on each index it keeps, halt, reset): about
 * 20k instructions an update, 27k the first insert. A write waits here until COMMIT
 * (or until PAY_ROWS_MAX wait, or another write of the same object that cannot join
 * it) and goes in with the others: the first versions in one INSERT OR IGNORE of
 * exactly that many rows (a row not there is inserted whole), the new versions in one
 * INSERT ... ON CONFLICT DO UPDATE of exactly that many (a row not there is inserted
 * whole; a row with the same listing keys gets what the single UPDATE did: the columns
 * a version changes, the first final answer kept). A row they left as they were (a
 * first version of a row that is there, listing keys not the same) makes the flush
 * write each of its rows again alone as before (the update, else the whole row; the
 * same update again, or the same whole row again, is the same row). A new version of a
 * new version waiting with the same listing keys replaces it: one write of the last,
 * with the first final answer of the two. The rows of a flush are of distinct objects,
 * so the order of the two statements does not matter. Nothing reads pay_objects on the
 * writer's connection inside a batch (readers have their own connections and see
 * committed rows only). Writer thread only.
 *
 * Statement journals: a statement of several rows that may abort makes SQLite copy
 * each page it changes first (to undo the rows before a failing one). The INSERT OR
 * IGNORE cannot abort, so it keeps none: 3.9 pages copied a flush of 4 first versions
 * and 12 new versions, 10.1 when the upsert wrote them all (callgrind). The upsert keeps
 * one whatever its clause: its DO UPDATE half checks its NOT NULL columns as ABORT.
 * Without a journal an I/O error, a full disk or no memory mid-statement makes SQLite
 * roll the whole transaction back: the upsert after a failed insert is not run (it
 * would commit alone), and neither is a flush after that. */
#define PAY_ROWS_MAX 16

struct store_sqlite_pay_rows {
    store_pay_object_t rows[PAY_ROWS_MAX]; /* doc: malloc'ed here (NULL for "") */
    uint32_t count;
    sqlite3_stmt *inserts[PAY_ROWS_MAX]; /* [n - 1]: n first versions; prepared on first use, kept */
    sqlite3_stmt *upserts[PAY_ROWS_MAX]; /* [n - 1]: n new versions; the same */
};

#define PAY_ROWS_COLUMNS 12 /* row_bind's */
#define PAY_INSERT_HEAD                                                                                          \
    "INSERT OR IGNORE INTO pay_objects(id, kind, merchant_id, parent_id, status, created_ns, updated_ns, version," \
    " doc, answer_version, answer_status, pending_op) VALUES"
#define PAY_UPSERT_HEAD                                                                                 \
    "INSERT INTO pay_objects(id, kind, merchant_id, parent_id, status, created_ns, updated_ns, version," \
    " doc, answer_version, answer_status, pending_op) VALUES"
#define PAY_UPSERT_TAIL                                                                                    \
    " ON CONFLICT(id) DO UPDATE SET status = excluded.status, updated_ns = excluded.updated_ns,"           \
    " version = excluded.version, doc = excluded.doc, pending_op = excluded.pending_op,"                   \
    " answer_status = CASE answer_version WHEN 0 THEN excluded.answer_status ELSE answer_status END,"      \
    " answer_version = CASE answer_version WHEN 0 THEN excluded.answer_version ELSE answer_version END"    \
    " WHERE excluded.version > 1 AND kind = excluded.kind AND merchant_id = excluded.merchant_id"          \
    " AND parent_id = excluded.parent_id AND created_ns = excluded.created_ns"

/* A first version is written whole (over a row that is there: the fallback's put). */
static bool row_is_first(const store_pay_object_t *o) { return o->version <= 1; }

/* The statement of 'count' first versions (the insert) or new versions (the upsert),
 * prepared on its first use and kept. */
static pc_status rows_statement(sqlite_store_t *store, bool first, uint32_t count, sqlite3_stmt **out) {
    sqlite3_stmt **kept = first ? &store->pay_rows->inserts[count - 1] : &store->pay_rows->upserts[count - 1];
    if (*kept == NULL) {
        char *sql = first ? store_sqlite_rows_sql(PAY_INSERT_HEAD, PAY_ROWS_COLUMNS, count, NULL)
                          : store_sqlite_rows_sql(PAY_UPSERT_HEAD, PAY_ROWS_COLUMNS, count, PAY_UPSERT_TAIL);
        pc_status status = sql == NULL ? PC_NO_MEMORY : store_sqlite_prepare(store->db, sql, kept, PC_STORE_COMMIT_FAILED);
        free(sql);
        if (status != PC_OK) {
            *kept = NULL;
            return status;
        }
    }
    *out = *kept;
    return PC_OK;
}

/* The waiting rows that are first versions ('first') or new versions, in one
 * statement; '*all' cleared when it left one of them as it was. */
static pc_status rows_write(sqlite_store_t *store, bool first, uint32_t count, bool *all) {
    struct store_sqlite_pay_rows *rows = store->pay_rows;
    sqlite3_stmt *stmt = NULL;
    pc_status status = rows_statement(store, first, count, &stmt);
    if (status != PC_OK) return status;
    int at = 1;
    for (uint32_t i = 0; i < rows->count; i++) {
        if (row_is_first(&rows->rows[i]) != first) continue;
        row_bind(stmt, at, &rows->rows[i]);
        at += PAY_ROWS_COLUMNS;
    }
    int rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    if (rc != SQLITE_DONE) return PC_STORE_COMMIT_FAILED;
    if ((uint32_t)sqlite3_changes(store->db) != count) *all = false;
    return PC_OK;
}

static void rows_clear(struct store_sqlite_pay_rows *rows) {
    for (uint32_t i = 0; i < rows->count; i++) free(rows->rows[i].doc);
    rows->count = 0;
}

pc_status store_sqlite_pay_rows_flush(sqlite_store_t *store) {
    struct store_sqlite_pay_rows *rows = store->pay_rows;
    if (rows == NULL || rows->count == 0) return PC_OK;
    /* a transaction SQLite rolled back (an I/O error): these rows would go in alone */
    pc_status status = sqlite3_get_autocommit(store->db) ? PC_STORE_COMMIT_FAILED : PC_OK;
    uint32_t firsts = 0;
    for (uint32_t i = 0; i < rows->count; i++) firsts += row_is_first(&rows->rows[i]);
    bool all = true;
    if (status == PC_OK && firsts > 0) status = rows_write(store, true, firsts, &all);
    if (status == PC_OK && firsts < rows->count) status = rows_write(store, false, rows->count - firsts, &all);
    /* a row the statements left as they were: each row again alone (the same update, or
     * the same whole row, is the same row again) */
    store_conn_t c = {.cache = &store->stmt_cache, .db = store->db};
    for (uint32_t i = 0; status == PC_OK && !all && i < rows->count; i++) status = object_write_now(c, &rows->rows[i]);
    rows_clear(rows);
    return status;
}

void store_sqlite_pay_rows_drop(sqlite_store_t *store) {
    if (store->pay_rows != NULL) rows_clear(store->pay_rows);
}

uint32_t store_sqlite_pay_rows_waiting(const sqlite_store_t *store) {
    return store->pay_rows != NULL ? store->pay_rows->count : 0;
}

void store_sqlite_pay_rows_free(sqlite_store_t *store) {
    struct store_sqlite_pay_rows *rows = store->pay_rows;
    if (rows == NULL) return;
    rows_clear(rows);
    for (uint32_t i = 0; i < PAY_ROWS_MAX; i++) {
        sqlite3_finalize(rows->inserts[i]);
        sqlite3_finalize(rows->upserts[i]);
    }
    free(rows);
    store->pay_rows = NULL;
}

static bool same_listing_keys(const store_pay_object_t *a, const store_pay_object_t *b) {
    return strcmp(a->kind, b->kind) == 0 && strcmp(a->merchant_id, b->merchant_id) == 0 &&
           strcmp(a->parent_id, b->parent_id) == 0 && a->created_ns == b->created_ns;
}

static struct store_sqlite_pay_rows *rows_waiting_for(sqlite_store_t *store, const char *id, uint32_t *at) {
    struct store_sqlite_pay_rows *rows = store->pay_rows;
    for (uint32_t i = 0; rows != NULL && i < rows->count; i++) {
        if (strcmp(rows->rows[i].id, id) == 0) {
            *at = i;
            return rows;
        }
    }
    return NULL;
}

/* 'o' as it waits: its document copied (the caller's is borrowed for the call only). */
static pc_status row_keep(store_pay_object_t *kept, const store_pay_object_t *o) {
    size_t doc_bytes = o->doc == NULL ? 0 : o->doc_bytes ? o->doc_bytes : strlen(o->doc);
    char *doc = NULL;
    if (doc_bytes > 0) {
        doc = malloc(doc_bytes);
        if (doc == NULL) return PC_NO_MEMORY;
        memcpy(doc, o->doc, doc_bytes);
    }
    uint32_t answer_version = kept->answer_version; /* a version of the same row waiting: its first answer */
    int answer_status = kept->answer_status;
    free(kept->doc);
    *kept = *o;
    kept->doc = doc;
    kept->doc_bytes = doc_bytes;
    if (answer_version != 0) {
        kept->answer_version = answer_version;
        kept->answer_status = answer_status;
    }
    return PC_OK;
}

/* A version waits for COMMIT; a new version of a new version waiting, with the same
 * keys, replaces it (a first version is the whole row: the next one waits after it). */
static pc_status object_defer(sqlite_store_t *store, const store_pay_object_t *o) {
    uint32_t at = 0;
    struct store_sqlite_pay_rows *rows = rows_waiting_for(store, o->id, &at);
    if (rows != NULL && o->version > 1 && rows->rows[at].version > 1 && same_listing_keys(&rows->rows[at], o)) {
        return row_keep(&rows->rows[at], o);
    }
    if (rows != NULL || (store->pay_rows != NULL && store->pay_rows->count == PAY_ROWS_MAX)) {
        pc_status status = store_sqlite_pay_rows_flush(store); /* in the order they came */
        if (status != PC_OK) return status;
    }
    if (store->pay_rows == NULL) {
        store->pay_rows = calloc(1, sizeof *store->pay_rows);
        if (store->pay_rows == NULL) return PC_NO_MEMORY;
    }
    rows = store->pay_rows;
    store_pay_object_t *kept = &rows->rows[rows->count];
    memset(kept, 0, sizeof *kept);
    pc_status status = row_keep(kept, o);
    if (status == PC_OK) rows->count++;
    return status;
}

static pc_status sqlite_pay_object_put(store_tx_t *tx, const store_pay_object_t *o) {
    return object_defer(store_sqlite_tx_store(tx), o);
}

/* Columns of OBJECT_COLUMNS into 'out'; the doc is borrowed from the statement. */
static void object_from_row(sqlite3_stmt *stmt, store_pay_object_t *out) {
    memset(out, 0, sizeof(*out));
    store_sqlite_text_copy(out->id, sizeof out->id, stmt, 0);
    store_sqlite_text_copy(out->kind, sizeof out->kind, stmt, 1);
    store_sqlite_text_copy(out->merchant_id, sizeof out->merchant_id, stmt, 2);
    store_sqlite_text_copy(out->parent_id, sizeof out->parent_id, stmt, 3);
    store_sqlite_text_copy(out->status, sizeof out->status, stmt, 4);
    out->created_ns = (uint64_t)sqlite3_column_int64(stmt, 5);
    out->updated_ns = (uint64_t)sqlite3_column_int64(stmt, 6);
    out->version = (uint32_t)sqlite3_column_int64(stmt, 7);
    out->doc = (char *)sqlite3_column_text(stmt, 8);
    out->doc_bytes = (size_t)sqlite3_column_bytes(stmt, 8);
    store_sqlite_text_copy(out->pending_op, sizeof out->pending_op, stmt, 9);
}

static pc_status sqlite_pay_object_get(store_reader_t *reader, const char *id, store_pay_object_t *out) {
    store_conn_t c = store_sqlite_reader_conn(reader);
    sqlite3_stmt *stmt;
    memset(out, 0, sizeof(*out));
    if (take(c, STORE_STMT_PAY_OBJECT_GET, &stmt, PC_STORE_READ_FAILED) != PC_OK) return PC_STORE_READ_FAILED;
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    pc_status status = rc == SQLITE_ROW ? PC_OK : rc == SQLITE_DONE ? PC_NOT_FOUND : PC_STORE_READ_FAILED;
    if (status == PC_OK) {
        object_from_row(stmt, out);
        out->answer_version = (uint32_t)sqlite3_column_int64(stmt, 10);
        out->answer_status = sqlite3_column_int(stmt, 11);
        char *doc = malloc(out->doc_bytes + 1);
        if (doc == NULL) {
            status = PC_NO_MEMORY;
            out->doc = NULL;
        } else {
            memcpy(doc, out->doc ? out->doc : "", out->doc_bytes);
            doc[out->doc_bytes] = '\0';
            out->doc = doc;
        }
    }
    give_back(c, STORE_STMT_PAY_OBJECT_GET, stmt);
    return status;
}

/* The created_ns of 'id' when it belongs to the listing's kind; PC_NOT_FOUND otherwise. */
static pc_status cursor_find(store_conn_t c, const store_pay_query_t *q, uint64_t *created_ns) {
    sqlite3_stmt *stmt;
    if (take(c, STORE_STMT_PAY_CURSOR_FIND, &stmt, PC_STORE_READ_FAILED) != PC_OK) return PC_STORE_READ_FAILED;
    sqlite3_bind_text(stmt, 1, q->starting_after, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, q->kind, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    pc_status status = rc == SQLITE_ROW ? PC_OK : rc == SQLITE_DONE ? PC_NOT_FOUND : PC_STORE_READ_FAILED;
    if (status == PC_OK) {
        *created_ns = (uint64_t)sqlite3_column_int64(stmt, 0);
        const char *merchant = (const char *)sqlite3_column_text(stmt, 1);
        if (q->merchant_id != NULL && (merchant == NULL || strcmp(merchant, q->merchant_id) != 0)) {
            status = PC_NOT_FOUND; /* another merchant's object is no cursor of this listing */
        }
    }
    give_back(c, STORE_STMT_PAY_CURSOR_FIND, stmt);
    return status;
}

/* A status with a partial index of its own (the recovery's sweeps: operations pending,
 * and those waiting for a bank callback): named in the SQL text, not bound. */
static bool status_literal(const store_pay_query_t *q) {
    return q->status != NULL && (strcmp(q->status, "pending") == 0 || strcmp(q->status, "processing") == 0);
}

/* The listing's SQL: only the conditions that apply, so that the index serves it. */
void store_sqlite_pay_list_sql(const store_pay_query_t *q, bool cursor, char *sql, size_t sql_bytes) {
    /* payments with an operation in flight: their partial index, named (the listings'
     * indexes hold the same columns) */
    int n = snprintf(sql, sql_bytes, "SELECT " OBJECT_COLUMNS " FROM pay_objects%s WHERE kind = ?1",
                     q->pending_op ? " INDEXED BY pay_objects_pending_op" : "");
    if (q->pending_op) n += snprintf(sql + n, sql_bytes - (size_t)n, " AND pending_op <> ''");
    /* the listings' indexes leave operations out: this term lets the planner use them */
    if (strcmp(q->kind, "op") != 0) n += snprintf(sql + n, sql_bytes - (size_t)n, " AND kind <> 'op'");
    if (q->merchant_id) n += snprintf(sql + n, sql_bytes - (size_t)n, " AND merchant_id = ?2");
    if (q->parent_id) n += snprintf(sql + n, sql_bytes - (size_t)n, " AND parent_id = ?3");
    /* the recovery's statuses inline: their partial indexes serve only a literal */
    if (status_literal(q)) n += snprintf(sql + n, sql_bytes - (size_t)n, " AND status = '%s'", q->status);
    else if (q->status) n += snprintf(sql + n, sql_bytes - (size_t)n, " AND status = ?4");
    n += snprintf(sql + n, sql_bytes - (size_t)n, " AND created_ns >= ?5 AND created_ns < ?6");
    if (cursor) {
        n += snprintf(sql + n, sql_bytes - (size_t)n, q->descending ? " AND (created_ns, id) < (?7, ?8)"
                                                                    : " AND (created_ns, id) > (?7, ?8)");
    }
    snprintf(sql + n, sql_bytes - (size_t)n, q->descending ? " ORDER BY created_ns DESC, id DESC LIMIT ?9"
                                                           : " ORDER BY created_ns, id LIMIT ?9");
}

static pc_status sqlite_pay_objects_list(store_reader_t *reader, const store_pay_query_t *q,
                                 store_pay_object_fn fn, void *ctx, bool *has_more) {
    sqlite3 *db = store_sqlite_reader_db(reader);
    *has_more = false;
    uint64_t cursor_ns = 0;
    if (q->starting_after != NULL) {
        pc_status status = cursor_find(store_sqlite_reader_conn(reader), q, &cursor_ns);
        if (status != PC_OK) return status;
    }
    char sql[512];
    store_sqlite_pay_list_sql(q, q->starting_after != NULL, sql, sizeof sql);
    sqlite3_stmt *stmt;
    if (store_sqlite_prepare(db, sql, &stmt, PC_STORE_READ_FAILED) != PC_OK) return PC_STORE_READ_FAILED;
    sqlite3_bind_text(stmt, 1, q->kind, -1, SQLITE_STATIC);
    if (q->merchant_id) sqlite3_bind_text(stmt, 2, q->merchant_id, -1, SQLITE_STATIC);
    if (q->parent_id) sqlite3_bind_text(stmt, 3, q->parent_id, -1, SQLITE_STATIC);
    if (q->status && !status_literal(q)) sqlite3_bind_text(stmt, 4, q->status, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 5, (sqlite3_int64)q->created_from_ns);
    sqlite3_bind_int64(stmt, 6, q->created_to_ns ? (sqlite3_int64)q->created_to_ns : INT64_MAX);
    if (q->starting_after) {
        sqlite3_bind_int64(stmt, 7, (sqlite3_int64)cursor_ns);
        sqlite3_bind_text(stmt, 8, q->starting_after, -1, SQLITE_STATIC);
    }
    sqlite3_bind_int64(stmt, 9, q->limit ? (sqlite3_int64)q->limit + 1 : -1);
    uint32_t rows = 0;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (q->limit != 0 && rows == q->limit) {
            *has_more = true;
            break;
        }
        store_pay_object_t object;
        object_from_row(stmt, &object);
        fn(&object, ctx);
        rows++;
    }
    sqlite3_finalize(stmt);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? PC_OK : PC_STORE_READ_FAILED;
}

/* Version 16: a record is stored packed (sqlite_pay_pack.c), a BLOB; a TEXT is a record
 * as it is (written before, or one that packing would not make smaller or could not
 * pack: the text reads the same, packing only saves room). */
static void version_doc_add(store_sqlite_rows_t *rows, store_pay_pack_t **pack, const char *doc, size_t doc_bytes) {
    const uint8_t *packed = NULL;
    size_t packed_bytes = 0;
    if (store_sqlite_pay_pack(pack, doc, doc_bytes, &packed, &packed_bytes) == PC_OK && packed != NULL) {
        store_sqlite_rows_blob(rows, packed, packed_bytes);
    } else {
        store_sqlite_rows_text(rows, doc, doc_bytes);
    }
}

/* Appended with the batch's other records, 16 a statement (sqlite_rows.c): nothing
 * reads the table in the writer's transaction. A version stored twice fails the batch
 * (the key is unique; OR FAIL: its ROLLBACK undoes the rows before it), as its own
 * statement failed before. 'packed':
 * the record's frame made ahead (store_sqlite_pay_pack_ahead of 'doc'), or NULL. */
#define VERSION_INSERT_PREFIX "INSERT OR FAIL INTO pay_versions(object_id, version, doc) VALUES"

static pc_status version_row_add(store_tx_t *tx, const char *object_id, uint32_t version, const char *doc,
                                 size_t doc_bytes, const uint8_t *packed, size_t packed_bytes) {
    sqlite_store_t *store = store_sqlite_tx_store(tx);
    if (store->pay_versions == NULL) {
        pc_status status = store_sqlite_rows_new(store, VERSION_INSERT_PREFIX, 3, &store->pay_versions);
        if (status != PC_OK) return status;
    }
    store_sqlite_rows_t *rows = store->pay_versions;
    store_sqlite_rows_text(rows, object_id, strlen(object_id));
    store_sqlite_rows_int(rows, (int64_t)version);
    if (packed != NULL) {
        store_sqlite_rows_blob(rows, packed, packed_bytes);
    } else {
        store_pay_pack_t *own = NULL, **pack = store_sqlite_conn_pack(store_sqlite_tx_conn(tx));
        version_doc_add(rows, pack != NULL ? pack : &own, doc, doc_bytes);
        store_sqlite_pay_pack_free(own);
    }
    return store_sqlite_rows_end_row(rows);
}

static pc_status sqlite_pay_version_put(store_tx_t *tx, const char *object_id, uint32_t version, const char *doc,
                                        size_t doc_bytes) {
    return version_row_add(tx, object_id, version, doc, doc_bytes, NULL, 0);
}

#ifdef PC_SLOW_ASSERTS
/* The frame made ahead reads back as 'doc', byte for byte. */
static bool packed_matches(const uint8_t *packed, size_t packed_bytes, const char *doc, size_t doc_bytes) {
    store_pay_pack_t *pack = NULL;
    char *text = NULL;
    size_t text_bytes = 0;
    bool same = store_sqlite_pay_unpack(&pack, packed, packed_bytes, &text, &text_bytes) == PC_OK &&
                text_bytes == doc_bytes && memcmp(text, doc, doc_bytes) == 0;
    free(text);
    store_sqlite_pay_pack_free(pack);
    return same;
}
#endif

static pc_status sqlite_pay_version_put_packed(store_tx_t *tx, const char *object_id, uint32_t version,
                                               const char *doc, size_t doc_bytes, const uint8_t *packed,
                                               size_t packed_bytes) {
#ifdef PC_SLOW_ASSERTS
    PC_ASSERT(packed == NULL || packed_matches(packed, packed_bytes, doc, doc_bytes));
#endif
    return version_row_add(tx, object_id, version, doc, doc_bytes, packed, packed_bytes);
}

/* The record in column 0: a packed one unpacked, a text copied (malloc'ed, NUL-ended). */
static pc_status version_doc_read(store_conn_t c, sqlite3_stmt *stmt, char **doc_out, size_t *doc_bytes_out) {
    size_t bytes = (size_t)sqlite3_column_bytes(stmt, 0);
    if (sqlite3_column_type(stmt, 0) == SQLITE_BLOB) {
        store_pay_pack_t *own = NULL, **pack = store_sqlite_conn_pack(c);
        pc_status status = store_sqlite_pay_unpack(pack != NULL ? pack : &own, sqlite3_column_blob(stmt, 0), bytes,
                                                   doc_out, doc_bytes_out);
        store_sqlite_pay_pack_free(own);
        return status;
    }
    const unsigned char *text = sqlite3_column_text(stmt, 0);
    char *doc = malloc(bytes + 1);
    if (doc == NULL) return PC_NO_MEMORY;
    if (bytes > 0) memcpy(doc, text, bytes);
    doc[bytes] = '\0';
    *doc_out = doc;
    *doc_bytes_out = bytes;
    return PC_OK;
}

static pc_status sqlite_pay_version_get(store_reader_t *reader, const char *object_id, uint32_t version,
                                        char **doc_out, size_t *doc_bytes_out) {
    store_conn_t c = store_sqlite_reader_conn(reader);
    sqlite3_stmt *stmt;
    if (take(c, STORE_STMT_PAY_VERSION_GET, &stmt, PC_STORE_READ_FAILED) != PC_OK) return PC_STORE_READ_FAILED;
    sqlite3_bind_text(stmt, 1, object_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, (sqlite3_int64)version);
    int rc = sqlite3_step(stmt);
    pc_status status = rc == SQLITE_ROW ? PC_OK : rc == SQLITE_DONE ? PC_NOT_FOUND : PC_STORE_READ_FAILED;
    if (status == PC_OK) status = version_doc_read(c, stmt, doc_out, doc_bytes_out);
    give_back(c, STORE_STMT_PAY_VERSION_GET, stmt);
    return status;
}

static pc_status sqlite_pay_lookup_put(store_tx_t *tx, const char *name, const char *object_id,
                               const uint8_t *extra, size_t extra_bytes) {
    store_conn_t c = store_sqlite_tx_conn(tx);
    sqlite3_stmt *stmt;
    if (take(c, STORE_STMT_PAY_LOOKUP_PUT, &stmt, PC_STORE_COMMIT_FAILED) != PC_OK) return PC_STORE_COMMIT_FAILED;
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, object_id, -1, SQLITE_STATIC);
    if (extra_bytes > 0) sqlite3_bind_blob(stmt, 3, extra, (int)extra_bytes, SQLITE_STATIC);
    else sqlite3_bind_null(stmt, 3);
    pc_status status = step_done(c, STORE_STMT_PAY_LOOKUP_PUT, stmt);
    if (status == PC_OK && sqlite3_changes(c.db) == 0) status = PC_EXISTS;
    return status;
}

static void lookup_from_row(sqlite3_stmt *stmt, int first, store_pay_lookup_t *out) {
    memset(out, 0, sizeof(*out));
    store_sqlite_text_copy(out->object_id, sizeof out->object_id, stmt, first);
    int bytes = sqlite3_column_bytes(stmt, first + 1);
    if (bytes > 0 && (size_t)bytes <= sizeof out->extra) {
        memcpy(out->extra, sqlite3_column_blob(stmt, first + 1), (size_t)bytes);
        out->extra_bytes = (size_t)bytes;
    }
}

static pc_status sqlite_pay_lookup_get(store_reader_t *reader, const char *name, store_pay_lookup_t *out) {
    store_conn_t c = store_sqlite_reader_conn(reader);
    sqlite3_stmt *stmt;
    memset(out, 0, sizeof(*out));
    if (take(c, STORE_STMT_PAY_LOOKUP_GET, &stmt, PC_STORE_READ_FAILED) != PC_OK) return PC_STORE_READ_FAILED;
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    pc_status status = rc == SQLITE_ROW ? PC_OK : rc == SQLITE_DONE ? PC_NOT_FOUND : PC_STORE_READ_FAILED;
    if (status == PC_OK) lookup_from_row(stmt, 0, out);
    give_back(c, STORE_STMT_PAY_LOOKUP_GET, stmt);
    return status;
}

static pc_status sqlite_pay_lookups_prefix(store_reader_t *reader, const char *prefix, store_pay_lookup_fn fn,
                                   void *ctx) {
    store_conn_t c = store_sqlite_reader_conn(reader);
    sqlite3_stmt *stmt;
    if (take(c, STORE_STMT_PAY_LOOKUP_PREFIX, &stmt, PC_STORE_READ_FAILED) != PC_OK) return PC_STORE_READ_FAILED;
    sqlite3_bind_text(stmt, 1, prefix, -1, SQLITE_STATIC);
    int rc;
    bool going = true;
    while (going && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(stmt, 0);
        if (name == NULL || strncmp(name, prefix, strlen(prefix)) != 0) continue;
        store_pay_lookup_t lookup;
        lookup_from_row(stmt, 1, &lookup);
        going = fn(name, &lookup, ctx);
    }
    give_back(c, STORE_STMT_PAY_LOOKUP_PREFIX, stmt);
    if (!going) return PC_SHUTTING_DOWN;
    return rc == SQLITE_DONE ? PC_OK : PC_STORE_READ_FAILED;
}

/* ---- the vault ---- */

static pc_status sqlite_vault_key_put(store_tx_t *tx, const store_vault_key_t *key) {
    store_conn_t c = store_sqlite_tx_conn(tx);
    sqlite3_stmt *stmt;
    if (take(c, STORE_STMT_VAULT_KEY_PUT, &stmt, PC_STORE_COMMIT_FAILED) != PC_OK) return PC_STORE_COMMIT_FAILED;
    sqlite3_bind_text(stmt, 1, key->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, key->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, key->kek_id, -1, SQLITE_STATIC);
    sqlite3_bind_blob(stmt, 4, key->wrapped, (int)key->wrapped_bytes, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 5, (sqlite3_int64)key->created_ns);
    return step_done(c, STORE_STMT_VAULT_KEY_PUT, stmt);
}

static pc_status sqlite_vault_keys_list(store_reader_t *reader, store_vault_key_fn fn, void *ctx) {
    store_conn_t c = store_sqlite_reader_conn(reader);
    sqlite3_stmt *stmt;
    if (take(c, STORE_STMT_VAULT_KEYS_LIST, &stmt, PC_STORE_READ_FAILED) != PC_OK) return PC_STORE_READ_FAILED;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        store_vault_key_t key;
        memset(&key, 0, sizeof key);
        store_sqlite_text_copy(key.id, sizeof key.id, stmt, 0);
        store_sqlite_text_copy(key.kind, sizeof key.kind, stmt, 1);
        store_sqlite_text_copy(key.kek_id, sizeof key.kek_id, stmt, 2);
        int bytes = sqlite3_column_bytes(stmt, 3);
        if (bytes < 0 || (size_t)bytes > sizeof key.wrapped) continue;
        memcpy(key.wrapped, sqlite3_column_blob(stmt, 3), (size_t)bytes);
        key.wrapped_bytes = (size_t)bytes;
        key.created_ns = (uint64_t)sqlite3_column_int64(stmt, 4);
        fn(&key, ctx);
    }
    give_back(c, STORE_STMT_VAULT_KEYS_LIST, stmt);
    return rc == SQLITE_DONE ? PC_OK : PC_STORE_READ_FAILED;
}

/* A new card waits in the transaction and goes in with the batch's other cards, several
 * a statement (sqlite_rows.c), at COMMIT: its own one-row statement cost ~10.4k writer
 * instructions a card payment (callgrind, bench_payments --profile). OR IGNORE as
 * before: a token stored again keeps its first row, and the insert cannot abort, so
 * SQLite keeps no statement journal for it. Only the rotation's rekey and key
 * retirement read vault_cards on the writer's connection: they insert the waiting
 * cards first (store_sqlite_vault_cards_flush); readers see committed rows only. */
#define VAULT_CARD_INSERT_PREFIX                                                                    \
    "INSERT OR IGNORE INTO vault_cards(token, data_key_id, nonce, ciphertext, bin, last4, exp_month," \
    " exp_year, fingerprint, created_ns) VALUES"
#define VAULT_CARD_COLUMNS 10

static pc_status sqlite_vault_card_put(store_tx_t *tx, const store_vault_card_t *card) {
    sqlite_store_t *store = store_sqlite_tx_store(tx);
    if (store->vault_cards == NULL) {
        pc_status status = store_sqlite_rows_new(store, VAULT_CARD_INSERT_PREFIX, VAULT_CARD_COLUMNS, &store->vault_cards);
        if (status != PC_OK) return status;
    }
    store_sqlite_rows_t *rows = store->vault_cards;
    store_sqlite_rows_text(rows, card->token, strlen(card->token));
    store_sqlite_rows_text(rows, card->data_key_id, strlen(card->data_key_id));
    store_sqlite_rows_blob(rows, card->nonce, sizeof card->nonce);
    store_sqlite_rows_blob(rows, card->ciphertext, card->ciphertext_bytes);
    store_sqlite_rows_text(rows, card->bin, strlen(card->bin));
    store_sqlite_rows_text(rows, card->last4, strlen(card->last4));
    store_sqlite_rows_int(rows, (int64_t)card->exp_month);
    store_sqlite_rows_int(rows, (int64_t)card->exp_year);
    store_sqlite_rows_text(rows, card->fingerprint, strlen(card->fingerprint));
    store_sqlite_rows_int(rows, (int64_t)card->created_ns);
    return store_sqlite_rows_end_row(rows) == PC_OK ? PC_OK : PC_STORE_COMMIT_FAILED;
}

pc_status store_sqlite_vault_cards_flush(sqlite_store_t *store) {
    if (store->vault_cards == NULL || !store_sqlite_rows_waiting(store->vault_cards)) return PC_OK;
    return store_sqlite_rows_flush(store->vault_cards) == PC_OK ? PC_OK : PC_STORE_COMMIT_FAILED;
}

static pc_status sqlite_vault_card_get(store_reader_t *reader, const char *token, store_vault_card_t *out) {
    store_conn_t c = store_sqlite_reader_conn(reader);
    sqlite3_stmt *stmt;
    memset(out, 0, sizeof(*out));
    if (take(c, STORE_STMT_VAULT_CARD_GET, &stmt, PC_STORE_READ_FAILED) != PC_OK) return PC_STORE_READ_FAILED;
    sqlite3_bind_text(stmt, 1, token, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    pc_status status = rc == SQLITE_ROW ? PC_OK : rc == SQLITE_DONE ? PC_NOT_FOUND : PC_STORE_READ_FAILED;
    if (status == PC_OK) {
        store_sqlite_text_copy(out->token, sizeof out->token, stmt, 0);
        store_sqlite_text_copy(out->data_key_id, sizeof out->data_key_id, stmt, 1);
        int nonce_bytes = sqlite3_column_bytes(stmt, 2);
        int ct_bytes = sqlite3_column_bytes(stmt, 3);
        if (nonce_bytes != (int)sizeof out->nonce || ct_bytes < 0 || (size_t)ct_bytes > sizeof out->ciphertext) {
            status = PC_STORE_CORRUPT;
        } else {
            memcpy(out->nonce, sqlite3_column_blob(stmt, 2), sizeof out->nonce);
            memcpy(out->ciphertext, sqlite3_column_blob(stmt, 3), (size_t)ct_bytes);
            out->ciphertext_bytes = (size_t)ct_bytes;
        }
        store_sqlite_text_copy(out->bin, sizeof out->bin, stmt, 4);
        store_sqlite_text_copy(out->last4, sizeof out->last4, stmt, 5);
        out->exp_month = (uint32_t)sqlite3_column_int(stmt, 6);
        out->exp_year = (uint32_t)sqlite3_column_int(stmt, 7);
        store_sqlite_text_copy(out->fingerprint, sizeof out->fingerprint, stmt, 8);
        out->created_ns = (uint64_t)sqlite3_column_int64(stmt, 9);
    }
    give_back(c, STORE_STMT_VAULT_CARD_GET, stmt);
    return status;
}

const store_payments_ops_t store_sqlite_payments_ops = {
    .object_put = sqlite_pay_object_put,
    .object_get = sqlite_pay_object_get,
    .objects_list = sqlite_pay_objects_list,
    .version_put = sqlite_pay_version_put,
    .version_get = sqlite_pay_version_get,
    .version_pack = store_sqlite_pay_pack_ahead, /* sqlite_pay_pack.c */
    .version_put_packed = sqlite_pay_version_put_packed,
    .lookup_put = sqlite_pay_lookup_put,
    .lookup_get = sqlite_pay_lookup_get,
    .lookups_prefix = sqlite_pay_lookups_prefix,
    .vault_key_put = sqlite_vault_key_put,
    .vault_keys_list = sqlite_vault_keys_list,
    .vault_card_put = sqlite_vault_card_put,
    .vault_card_get = sqlite_vault_card_get,
    .vault_cards_not_under = store_sqlite_vault_cards_not_under, /* sqlite_vault.c / pg_vault.c */
    .vault_card_rekey = store_sqlite_vault_card_rekey,
    .vault_key_retire = store_sqlite_vault_key_retire,
};
