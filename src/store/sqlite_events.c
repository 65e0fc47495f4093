/* store/sqlite_events.c: the events outbox and delivery state in the SQLite backend.
 * Every write runs on the writer thread inside a batch transaction; reads run on a
 * reader's connection. The events table is appended by seq (INTEGER PRIMARY KEY), so
 * the hot path is an append. An event's first owner is a column of its row (schema
 * version 10), not indexed: a merchant's runs of events are rows of event_owner_spans
 * (schema version 17, sqlite_event_spans.c), and its listing walks them and reads the
 * events in each by seq. The owners table keeps only the rare further owners (a
 * transfer between two merchants' accounts, a merchant with several keys), walked
 * beside it. The type and object filters are checked on the rows walked by seq (schema
 * version 8 drops the per-type and per-object indexes older versions kept: no plan
 * used them). A batch's events share one set of prepared statements
 * (store_events_writer_t); the rare writes prepare per call. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite_internal.h"
#include "store/store_events.h"

/* Idempotent (IF NOT EXISTS): a file rewound to an older version number by hand, as
 * the migration tests do, migrates again. */
const char *store_sqlite_events_schema(void) {
    return "CREATE TABLE IF NOT EXISTS events("
           "  seq INTEGER PRIMARY KEY,"          /* id and creation time (ns), increasing */
           "  type TEXT NOT NULL,"
           "  object_id TEXT NOT NULL,"
           "  object_seq INTEGER NOT NULL,"
           "  body TEXT NOT NULL);"
           "CREATE INDEX IF NOT EXISTS events_by_type ON events(type, seq);"
           "CREATE INDEX IF NOT EXISTS events_by_object ON events(object_id, seq);"
           "CREATE TABLE IF NOT EXISTS event_owners("          /* merchants (key ids) who may see an event */
           "  owner TEXT NOT NULL,"
           "  seq INTEGER NOT NULL,"
           "  PRIMARY KEY(owner, seq)) WITHOUT ROWID;"
           "CREATE INDEX IF NOT EXISTS event_owners_by_seq ON event_owners(seq);" /* retention's deletes */
           "CREATE TABLE IF NOT EXISTS event_destinations("
           "  id TEXT PRIMARY KEY,"
           "  kind TEXT NOT NULL,"               /* webhook | amqp */
           "  merchant_id TEXT NOT NULL,"        /* '' = every event */
           "  url TEXT NOT NULL,"
           "  types TEXT NOT NULL,"
           "  secret_box BLOB,"                  /* XChaCha20-Poly1305 under <db>.webhook-key */
           "  previous_box BLOB,"
           "  previous_until_ns INTEGER NOT NULL DEFAULT 0,"
           "  cursor_seq INTEGER NOT NULL,"
           "  cursor_epoch INTEGER NOT NULL DEFAULT 0,"
           "  created_ns INTEGER NOT NULL,"
           "  failing_since_ns INTEGER NOT NULL DEFAULT 0,"
           "  disabled_ns INTEGER NOT NULL DEFAULT 0,"
           "  disabled_reason TEXT NOT NULL DEFAULT '') WITHOUT ROWID;"
           "CREATE TABLE IF NOT EXISTS event_deliveries("      /* deliveries that did not succeed at once */
           "  destination_id TEXT NOT NULL,"
           "  seq INTEGER NOT NULL,"
           "  state INTEGER NOT NULL,"           /* 1 retrying, 2 dead-lettered */
           "  attempts INTEGER NOT NULL,"
           "  first_attempt_ns INTEGER NOT NULL,"
           "  next_attempt_ns INTEGER NOT NULL,"
           "  updated_ns INTEGER NOT NULL,"
           "  last_error TEXT NOT NULL,"
           "  PRIMARY KEY(destination_id, seq)) WITHOUT ROWID;"
           "CREATE INDEX IF NOT EXISTS event_deliveries_by_seq ON event_deliveries(seq);"
           /* the outbox finds the merchants of an account */
           "CREATE INDEX IF NOT EXISTS account_grants_by_account ON account_grants(account_id, key_id);";
}

/* Version 10: an event's first owner on its row, one index entry an event instead of
 * an owners row and its two index entries; the owners table keeps the further owners.
 * Events written before move their smallest owner onto the row. */
const char *store_sqlite_events_schema_v10(void) {
    return "ALTER TABLE events ADD COLUMN owner TEXT;" /* NULL: admins only */
           "UPDATE events SET owner = (SELECT min(o.owner) FROM event_owners o WHERE o.seq = events.seq)"
           "  WHERE seq IN (SELECT seq FROM event_owners);"
           "DELETE FROM event_owners WHERE owner = (SELECT e.owner FROM events e WHERE e.seq = event_owners.seq);"
           /* seq is the rowid, the tail of every index entry: (owner) orders by (owner, seq) */
           "CREATE INDEX IF NOT EXISTS events_by_owner ON events(owner) WHERE owner IS NOT NULL;";
}

/* Version 17: a merchant's events found through spans of seqs, one row per owner and
 * run of its events (sqlite_event_spans.c), instead of an index entry per event. The
 * events written before get a span per run of consecutive events of one owner (none
 * of another's inside). Idempotent: a file rewound by hand builds them again. */
const char *store_sqlite_events_schema_v17(void) {
    return "CREATE TABLE IF NOT EXISTS event_owner_spans("
           "  owner TEXT NOT NULL,"
           "  first_seq INTEGER NOT NULL,"       /* the owner's first and last event of the run */
           "  last_seq INTEGER NOT NULL,"
           "  PRIMARY KEY(owner, first_seq)) WITHOUT ROWID;"
           "DELETE FROM event_owner_spans;"
           /* a run: the rank among all events less the rank among the owner's is constant */
           "INSERT INTO event_owner_spans(owner, first_seq, last_seq)"
           "  SELECT owner, min(seq), max(seq) FROM (SELECT seq, owner, row_number() OVER (ORDER BY seq)"
           "    - row_number() OVER (PARTITION BY owner ORDER BY seq) AS run FROM events)"
           "  WHERE owner IS NOT NULL GROUP BY owner, run;"
           "DROP INDEX IF EXISTS events_by_owner;";
}

static pc_status prepare_write(store_tx_t *tx, const char *sql, sqlite3_stmt **out) {
    return store_sqlite_prepare(store_sqlite_tx_db(tx), sql, out, PC_STORE_READ_FAILED) == PC_OK ? PC_OK : PC_STORE_COMMIT_FAILED;
}

static void text_copy(char *dst, size_t dst_size, sqlite3_stmt *stmt, int column) {
    store_sqlite_text_copy(dst, dst_size, stmt, column);
}

/* ---- writing events ---- */

enum { EW_SEQ_MAX, EW_OWNER, EW_GRANTS, EW_COUNT }; /* the events themselves: 'rows' */

typedef struct {
    store_events_writer_t base;    /* first: store_parts.c finds the store there */
    sqlite3_stmt *statements[EW_COUNT];
    uint64_t seq_last;             /* the last seq handed out in this transaction */
    store_sqlite_rows_t *rows;     /* the events waiting: inserted 16 a statement (sqlite_rows.c) */
    sqlite_store_t *sqlite;        /* its spans of owners' events (sqlite_event_spans.c) */
} sqlite_events_writer_t;

/* OR FAIL: a statement of several rows that may abort keeps a statement journal (each
 * page it changes that the transaction had already changed is copied first, to undo
 * the rows before a failing one); a failing row fails the batch, whose ROLLBACK undoes
 * them anyway (sqlite_rows.c), so nothing needs that copy. */
#define EVENT_INSERT_PREFIX "INSERT OR FAIL INTO events(seq, type, object_id, object_seq, body, owner) VALUES"

static const char *const writer_sql[EW_COUNT] = {
    [EW_SEQ_MAX] = "SELECT coalesce(max(seq), 0) FROM events",
    [EW_OWNER] = "INSERT OR IGNORE INTO event_owners(owner, seq) VALUES(?,?)", /* the second owner on */
    [EW_GRANTS] = "SELECT g.key_id FROM account_grants g JOIN api_keys k ON k.id = g.key_id"
                  " WHERE g.account_id = ? AND k.scope = 'merchant' ORDER BY g.key_id LIMIT ?",
};

static void sqlite_events_writer_end(store_events_writer_t *base);

static pc_status sqlite_events_writer_begin(store_tx_t *tx, store_events_writer_t **out) {
    sqlite_events_writer_t *writer = calloc(1, sizeof(*writer));
    if (writer == NULL) return PC_NO_MEMORY;
    writer->base.store = tx->store;
    writer->sqlite = store_sqlite_tx_store(tx);
    sqlite3 *db = store_sqlite_tx_db(tx);
    for (int i = 0; i < EW_COUNT; i++) {
        if (sqlite3_prepare_v2(db, writer_sql[i], -1, &writer->statements[i], NULL) != SQLITE_OK) {
            sqlite_events_writer_end(&writer->base);
            return PC_STORE_COMMIT_FAILED;
        }
    }
    pc_status status = store_sqlite_rows_new(store_sqlite_tx_store(tx), EVENT_INSERT_PREFIX, 6, &writer->rows);
    if (status != PC_OK) {
        sqlite_events_writer_end(&writer->base);
        return status;
    }
    *out = &writer->base;
    return PC_OK;
}

/* Called between transactions and, by the ledger's hook, within one: events still
 * waiting to be inserted mean the transaction is open, and its seq_last is their
 * max (max(seq) of the table would not see them). */
static void sqlite_events_writer_reset(store_events_writer_t *base) {
    sqlite_events_writer_t *writer = (sqlite_events_writer_t *)base;
    if (store_sqlite_rows_waiting(writer->rows)) return;
    writer->seq_last = 0; /* read max(seq) again: the last transaction may have rolled back */
}

static void sqlite_events_writer_end(store_events_writer_t *base) {
    sqlite_events_writer_t *writer = (sqlite_events_writer_t *)base;
    if (writer == NULL) return;
    store_sqlite_rows_free(writer->rows);
    for (int i = 0; i < EW_COUNT; i++) sqlite3_finalize(writer->statements[i]);
    free(writer);
}

static pc_status sqlite_events_seq_next(store_events_writer_t *base, uint64_t floor_ns, uint64_t *seq_out) {
    sqlite_events_writer_t *writer = (sqlite_events_writer_t *)base;
    if (writer->seq_last == 0) {
        sqlite3_stmt *stmt = writer->statements[EW_SEQ_MAX];
        int rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW) writer->seq_last = (uint64_t)sqlite3_column_int64(stmt, 0);
        sqlite3_reset(stmt);
        if (rc != SQLITE_ROW) return PC_STORE_COMMIT_FAILED;
    }
    uint64_t seq = writer->seq_last + 1 > floor_ns ? writer->seq_last + 1 : floor_ns;
    PC_ASSERT(seq <= (uint64_t)INT64_MAX);
    writer->seq_last = seq;
    *seq_out = seq;
    return PC_OK;
}

static pc_status step_reset(sqlite3_stmt *stmt) {
    int rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? PC_OK : PC_STORE_COMMIT_FAILED;
}

static pc_status sqlite_events_insert(store_events_writer_t *base, const store_event_t *event) {
    sqlite_events_writer_t *writer = (sqlite_events_writer_t *)base;
    PC_ASSERT(event->seq != 0 && event->seq <= writer->seq_last);
    store_sqlite_rows_t *rows = writer->rows;
    store_sqlite_rows_int(rows, (int64_t)event->seq);
    store_sqlite_rows_text(rows, event->type, strlen(event->type));
    store_sqlite_rows_text(rows, event->object_id, strlen(event->object_id));
    store_sqlite_rows_int(rows, event->object_seq);
    store_sqlite_rows_text(rows, event->body, event->body_bytes);
    if (event->owner_count > 0) store_sqlite_rows_text(rows, event->owners[0], strlen(event->owners[0]));
    else store_sqlite_rows_null(rows);
    pc_status status = store_sqlite_rows_end_row(rows);
    if (status == PC_OK) {
        const char *owner = event->owner_count > 0 ? event->owners[0] : NULL;
        status = store_sqlite_event_spans_add(writer->sqlite, owner, event->seq);
    }
    sqlite3_stmt *stmt = writer->statements[EW_OWNER];
    for (uint32_t i = 1; status == PC_OK && i < event->owner_count; i++) {
        if (strcmp(event->owners[i], event->owners[0]) == 0) continue; /* on the row */
        sqlite3_bind_text(stmt, 1, event->owners[i], -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 2, (sqlite3_int64)event->seq);
        status = step_reset(stmt);
    }
    return status;
}

static pc_status sqlite_events_account_owners(store_events_writer_t *base, const char *account_id,
                                      char (*owners)[PC_ID_SIZE], uint32_t owners_max, uint32_t *count) {
    sqlite_events_writer_t *writer = (sqlite_events_writer_t *)base;
    sqlite3_stmt *stmt = writer->statements[EW_GRANTS];
    sqlite3_bind_text(stmt, 1, account_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, owners_max);
    *count = 0;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW && *count < owners_max) {
        text_copy(owners[*count], PC_ID_SIZE, stmt, 0);
        (*count)++;
    }
    sqlite3_reset(stmt);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? PC_OK : PC_STORE_COMMIT_FAILED;
}

/* ---- reading events ---- */

#define EVENT_COLUMNS "e.seq, e.type, e.object_id, e.object_seq, e.body"

static void event_from_row(sqlite3_stmt *stmt, store_event_t *event) {
    memset(event, 0, sizeof(*event));
    event->seq = (uint64_t)sqlite3_column_int64(stmt, 0);
    event->type = (const char *)sqlite3_column_text(stmt, 1);
    event->object_id = (const char *)sqlite3_column_text(stmt, 2);
    event->object_seq = (uint32_t)sqlite3_column_int64(stmt, 3);
    event->body = (const char *)sqlite3_column_text(stmt, 4);
    event->body_bytes = (size_t)sqlite3_column_bytes(stmt, 4);
}

/* The list queries; the optional filters are NULL-tolerant so that one statement
 * serves every call. Every event, or a merchant's in two arms merged in seq order by
 * list_merge: the events whose row names it, found through its spans (each span's
 * events read by seq and filtered by e.owner), and those whose further owners do
 * (event_owners). Each arm is walked in its key's order (no sort: the spans of one
 * owner never overlap, so first_seq order then seq order is seq order) and stops at
 * the limit. The spans walked start at the one holding after_seq (the last to start
 * at or before it), found by one seek. An event is in one arm only (its first owner
 * is never in the owners table). */
#define LIST_FILTERS " AND (?3 IS NULL OR e.type = ?3) AND (?4 IS NULL OR e.object_id = ?4)"

enum { LIST_ARMS_MAX = 2 };

static uint32_t list_sql(const store_events_query_t *query, char sql[LIST_ARMS_MAX][768]) {
    const char *direction = query->descending ? "DESC" : "ASC";
    if (query->owner == NULL) {
        snprintf(sql[0], sizeof sql[0], "SELECT " EVENT_COLUMNS " FROM events e WHERE e.seq > ?1 AND e.seq < ?2"
                 LIST_FILTERS " ORDER BY e.seq %s LIMIT ?6", direction);
        return 1;
    }
    snprintf(sql[0], sizeof sql[0],
             "SELECT " EVENT_COLUMNS " FROM event_owner_spans s JOIN events e"
             " ON e.seq >= max(s.first_seq, ?1 + 1) AND e.seq <= min(s.last_seq, ?2 - 1)"
             " WHERE s.owner = ?5 AND s.first_seq < ?2 AND s.first_seq >= coalesce((SELECT first_seq"
             " FROM event_owner_spans WHERE owner = ?5 AND first_seq <= ?1 ORDER BY first_seq DESC LIMIT 1), 0)"
             " AND e.owner = ?5" LIST_FILTERS " ORDER BY s.first_seq %s, e.seq %s LIMIT ?6",
             direction, direction);
    snprintf(sql[1], sizeof sql[1],
             "SELECT o.seq, e.type, e.object_id, e.object_seq, e.body FROM event_owners o JOIN events e"
             " ON e.seq = o.seq WHERE o.owner = ?5 AND o.seq > ?1 AND o.seq < ?2" LIST_FILTERS
             " ORDER BY o.seq %s LIMIT ?6", direction);
    return 2;
}

void store_sqlite_events_list_sql(const store_events_query_t *query, uint32_t arm, char *sql, size_t sql_bytes) {
    char arms[LIST_ARMS_MAX][768];
    uint32_t count = list_sql(query, arms);
    snprintf(sql, sql_bytes, "%s", arm < count ? arms[arm] : "");
}

static void bind_text_or_null(sqlite3_stmt *stmt, int index, const char *text) {
    if (text == NULL) sqlite3_bind_null(stmt, index);
    else sqlite3_bind_text(stmt, index, text, -1, SQLITE_STATIC);
}

static void list_bind(sqlite3_stmt *stmt, const store_events_query_t *query) {
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)query->after_seq);
    sqlite3_bind_int64(stmt, 2, query->before_seq ? (sqlite3_int64)query->before_seq : INT64_MAX);
    bind_text_or_null(stmt, 3, query->type);
    bind_text_or_null(stmt, 4, query->object_id);
    bind_text_or_null(stmt, 5, query->owner);
    sqlite3_bind_int64(stmt, 6, (sqlite3_int64)query->limit + 1);
}

/* Steps an arm; *live: it stands on a row. */
static bool arm_step(sqlite3_stmt *stmt, bool *live) {
    int rc = sqlite3_step(stmt);
    *live = rc == SQLITE_ROW;
    return rc == SQLITE_ROW || rc == SQLITE_DONE;
}

/* The arm whose row comes next in the listing's order, or -1 when all are done. */
static int arm_next(sqlite3_stmt *const *arms, const bool *live, uint32_t count, bool descending) {
    int next = -1;
    for (uint32_t i = 0; i < count; i++) {
        if (!live[i]) continue;
        if (next >= 0) {
            sqlite3_int64 seq = sqlite3_column_int64(arms[i], 0), best = sqlite3_column_int64(arms[next], 0);
            if (descending ? seq <= best : seq >= best) continue;
        }
        next = (int)i;
    }
    return next;
}

/* The arms' rows in seq order up to the limit; one more sets *has_more. */
static pc_status list_merge(sqlite3_stmt *const *arms, uint32_t count, const store_events_query_t *query,
                            store_event_fn fn, void *ctx, bool *has_more) {
    bool live[LIST_ARMS_MAX];
    for (uint32_t i = 0; i < count; i++) {
        if (!arm_step(arms[i], &live[i])) return PC_STORE_READ_FAILED;
    }
    for (uint32_t rows = 0;; rows++) {
        int next = arm_next(arms, live, count, query->descending);
        if (next < 0) return PC_OK;
        if (rows == query->limit) {
            *has_more = true;
            return PC_OK;
        }
        store_event_t event;
        event_from_row(arms[next], &event);
        fn(&event, ctx);
        if (!arm_step(arms[next], &live[next])) return PC_STORE_READ_FAILED;
    }
}

static pc_status sqlite_events_list(store_reader_t *reader, const store_events_query_t *query, store_event_fn fn,
                            void *ctx, bool *has_more) {
    char sql[LIST_ARMS_MAX][768];
    sqlite3_stmt *arms[LIST_ARMS_MAX] = {NULL};
    uint32_t count = list_sql(query, sql);
    *has_more = false;
    pc_status status = PC_OK;
    for (uint32_t i = 0; i < count && status == PC_OK; i++) {
        status = store_sqlite_prepare(store_sqlite_reader_db(reader), sql[i], &arms[i], PC_STORE_READ_FAILED);
        if (status == PC_OK) list_bind(arms[i], query);
    }
    if (status == PC_OK) status = list_merge(arms, count, query, fn, ctx, has_more);
    for (uint32_t i = 0; i < count; i++) sqlite3_finalize(arms[i]);
    return status == PC_OK ? PC_OK : PC_STORE_READ_FAILED;
}

static pc_status sqlite_events_get(store_reader_t *reader, uint64_t seq, const char *owner, store_event_fn fn,
                           void *ctx) {
    sqlite3_stmt *stmt;
    const char *sql = owner != NULL
                          ? "SELECT " EVENT_COLUMNS " FROM events e WHERE e.seq = ?1 AND (e.owner = ?2 OR EXISTS"
                            " (SELECT 1 FROM event_owners o WHERE o.owner = ?2 AND o.seq = ?1))"
                          : "SELECT " EVENT_COLUMNS " FROM events e WHERE e.seq = ?1";
    if (store_sqlite_prepare(store_sqlite_reader_db(reader), sql, &stmt, PC_STORE_READ_FAILED) != PC_OK) return PC_STORE_READ_FAILED;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)seq);
    if (owner != NULL) sqlite3_bind_text(stmt, 2, owner, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    pc_status status = rc == SQLITE_ROW ? PC_OK : rc == SQLITE_DONE ? PC_NOT_FOUND : PC_STORE_READ_FAILED;
    if (status == PC_OK) {
        store_event_t event;
        event_from_row(stmt, &event);
        fn(&event, ctx);
    }
    sqlite3_finalize(stmt);
    return status;
}

static pc_status read_int64(store_reader_t *reader, const char *sql, uint64_t *out) {
    sqlite3_stmt *stmt;
    if (store_sqlite_prepare(store_sqlite_reader_db(reader), sql, &stmt, PC_STORE_READ_FAILED) != PC_OK) return PC_STORE_READ_FAILED;
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) *out = (uint64_t)sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return rc == SQLITE_ROW ? PC_OK : PC_STORE_READ_FAILED;
}

static pc_status sqlite_events_latest(store_reader_t *reader, uint64_t *seq_out) {
    return read_int64(reader, "SELECT coalesce(max(seq), 0) FROM events", seq_out);
}

static pc_status sqlite_events_count(store_reader_t *reader, uint64_t *count_out) {
    return read_int64(reader, "SELECT count(*) FROM events", count_out);
}

/* ---- destinations ---- */

#define DESTINATION_COLUMNS                                                                       \
    "id, kind, merchant_id, url, types, secret_box, previous_box, previous_until_ns, cursor_seq," \
    " cursor_epoch, created_ns, failing_since_ns, disabled_ns, disabled_reason"

static void blob_copy(uint8_t *dst, uint32_t *dst_bytes, sqlite3_stmt *stmt, int column) {
    int bytes = sqlite3_column_bytes(stmt, column);
    *dst_bytes = 0;
    if (bytes <= 0 || bytes > STORE_EVENT_SECRET_BOX_BYTES_MAX) return;
    memcpy(dst, sqlite3_column_blob(stmt, column), (size_t)bytes);
    *dst_bytes = (uint32_t)bytes;
}

static void destination_from_row(sqlite3_stmt *stmt, store_event_destination_t *d) {
    memset(d, 0, sizeof(*d));
    text_copy(d->id, sizeof d->id, stmt, 0);
    text_copy(d->kind, sizeof d->kind, stmt, 1);
    text_copy(d->merchant_id, sizeof d->merchant_id, stmt, 2);
    text_copy(d->url, sizeof d->url, stmt, 3);
    text_copy(d->types, sizeof d->types, stmt, 4);
    blob_copy(d->secret_box, &d->secret_box_bytes, stmt, 5);
    blob_copy(d->previous_box, &d->previous_box_bytes, stmt, 6);
    d->previous_until_ns = (uint64_t)sqlite3_column_int64(stmt, 7);
    d->cursor_seq = (uint64_t)sqlite3_column_int64(stmt, 8);
    d->cursor_epoch = (uint64_t)sqlite3_column_int64(stmt, 9);
    d->created_ns = (uint64_t)sqlite3_column_int64(stmt, 10);
    d->failing_since_ns = (uint64_t)sqlite3_column_int64(stmt, 11);
    d->disabled_ns = (uint64_t)sqlite3_column_int64(stmt, 12);
    text_copy(d->disabled_reason, sizeof d->disabled_reason, stmt, 13);
}

static void bind_blob_or_null(sqlite3_stmt *stmt, int index, const uint8_t *blob, uint32_t bytes) {
    if (blob == NULL || bytes == 0) sqlite3_bind_null(stmt, index);
    else sqlite3_bind_blob(stmt, index, blob, (int)bytes, SQLITE_STATIC);
}

static pc_status sqlite_events_destination_insert(store_tx_t *tx, const store_event_destination_t *d) {
    sqlite3_stmt *stmt;
    if (store_sqlite_rows_flush_all(store_sqlite_tx_store(tx)) != PC_OK) return PC_STORE_COMMIT_FAILED; /* max(seq) */
    if (prepare_write(tx, "INSERT OR IGNORE INTO event_destinations(id, kind, merchant_id, url, types, secret_box,"
                          " cursor_seq, created_ns) VALUES(?1, ?2, ?3, ?4, ?5, ?6,"
                          " (SELECT coalesce(max(seq), 0) FROM events), ?7)", &stmt) != PC_OK) {
        return PC_STORE_COMMIT_FAILED;
    }
    sqlite3_bind_text(stmt, 1, d->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, d->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, d->merchant_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, d->url, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 5, d->types, -1, SQLITE_STATIC);
    bind_blob_or_null(stmt, 6, d->secret_box, d->secret_box_bytes);
    sqlite3_bind_int64(stmt, 7, (sqlite3_int64)d->created_ns);
    pc_status status = store_sqlite_step_done(stmt);
    if (status == PC_OK && sqlite3_changes(store_sqlite_tx_db(tx)) == 0) status = PC_EXISTS;
    return status;
}

/* Runs 'sql' with 'id' as ?1 (and optional int64 ?2); *found: a row changed. */
static pc_status write_by_id(store_tx_t *tx, const char *sql, const char *id, bool *found) {
    sqlite3_stmt *stmt;
    if (prepare_write(tx, sql, &stmt) != PC_OK) return PC_STORE_COMMIT_FAILED;
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    pc_status status = store_sqlite_step_done(stmt);
    if (found != NULL) *found = status == PC_OK && sqlite3_changes(store_sqlite_tx_db(tx)) > 0;
    return status;
}

static pc_status sqlite_events_destination_delete(store_tx_t *tx, const char *id, bool *found) {
    pc_status status = write_by_id(tx, "DELETE FROM event_destinations WHERE id = ?1", id, found);
    if (status != PC_OK) return status;
    return write_by_id(tx, "DELETE FROM event_deliveries WHERE destination_id = ?1", id, NULL);
}

static pc_status sqlite_events_cursor_advance(store_tx_t *tx, const char *id, uint64_t epoch, uint64_t seq) {
    sqlite3_stmt *stmt;
    if (prepare_write(tx, "UPDATE event_destinations SET cursor_seq = ?3 WHERE id = ?1 AND cursor_epoch = ?2"
                          " AND cursor_seq < ?3", &stmt) != PC_OK) {
        return PC_STORE_COMMIT_FAILED;
    }
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, (sqlite3_int64)epoch);
    sqlite3_bind_int64(stmt, 3, (sqlite3_int64)seq);
    return store_sqlite_step_done(stmt);
}

static pc_status sqlite_events_cursor_rewind(store_tx_t *tx, const char *id, uint64_t since_ns, bool *found) {
    sqlite3_stmt *stmt;
    if (prepare_write(tx, "UPDATE event_destinations SET cursor_epoch = cursor_epoch + 1,"
                          " cursor_seq = min(cursor_seq, ?2 - 1) WHERE id = ?1", &stmt) != PC_OK) {
        return PC_STORE_COMMIT_FAILED;
    }
    sqlite3_int64 since = since_ns == 0 ? 1 : since_ns > (uint64_t)INT64_MAX ? INT64_MAX : (sqlite3_int64)since_ns;
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, since);
    pc_status status = store_sqlite_step_done(stmt);
    *found = status == PC_OK && sqlite3_changes(store_sqlite_tx_db(tx)) > 0;
    if (status != PC_OK || !*found) return status;
    /* the rows from 'since' on are delivered again from the outbox, in order */
    if (prepare_write(tx, "DELETE FROM event_deliveries WHERE destination_id = ?1 AND seq >= ?2", &stmt) != PC_OK) {
        return PC_STORE_COMMIT_FAILED;
    }
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, since);
    return store_sqlite_step_done(stmt);
}

static pc_status sqlite_events_destination_health(store_tx_t *tx, const char *id, uint64_t failing_since_ns,
                                          uint64_t disabled_ns, const char *reason) {
    sqlite3_stmt *stmt;
    if (prepare_write(tx, "UPDATE event_destinations SET failing_since_ns = ?2, disabled_ns = ?3,"
                          " disabled_reason = ?4 WHERE id = ?1", &stmt) != PC_OK) {
        return PC_STORE_COMMIT_FAILED;
    }
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, (sqlite3_int64)failing_since_ns);
    sqlite3_bind_int64(stmt, 3, (sqlite3_int64)disabled_ns);
    sqlite3_bind_text(stmt, 4, reason ? reason : "", -1, SQLITE_STATIC);
    return store_sqlite_step_done(stmt);
}

static pc_status sqlite_events_destination_secret(store_tx_t *tx, const char *id, const uint8_t *box,
                                          uint32_t box_bytes, const uint8_t *previous_box,
                                          uint32_t previous_box_bytes, uint64_t previous_until_ns,
                                          bool *found) {
    sqlite3_stmt *stmt;
    if (prepare_write(tx, "UPDATE event_destinations SET secret_box = ?2, previous_box = ?3,"
                          " previous_until_ns = ?4 WHERE id = ?1", &stmt) != PC_OK) {
        return PC_STORE_COMMIT_FAILED;
    }
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    bind_blob_or_null(stmt, 2, box, box_bytes);
    bind_blob_or_null(stmt, 3, previous_box, previous_box_bytes);
    sqlite3_bind_int64(stmt, 4, (sqlite3_int64)previous_until_ns);
    pc_status status = store_sqlite_step_done(stmt);
    *found = status == PC_OK && sqlite3_changes(store_sqlite_tx_db(tx)) > 0;
    return status;
}

static pc_status sqlite_events_destinations_list(store_reader_t *reader, const char *merchant_id,
                                         const char *starting_after, uint32_t limit,
                                         store_event_destination_fn fn, void *ctx, bool *has_more) {
    sqlite3_stmt *stmt;
    *has_more = false;
    if (store_sqlite_prepare(store_sqlite_reader_db(reader),
                "SELECT " DESTINATION_COLUMNS " FROM event_destinations WHERE id > ?1"
                " AND (?2 IS NULL OR merchant_id = ?2) ORDER BY id LIMIT ?3", &stmt, PC_STORE_READ_FAILED) != PC_OK) {
        return PC_STORE_READ_FAILED;
    }
    sqlite3_bind_text(stmt, 1, starting_after ? starting_after : "", -1, SQLITE_STATIC);
    bind_text_or_null(stmt, 2, merchant_id);
    sqlite3_bind_int64(stmt, 3, limit == 0 ? -1 : (sqlite3_int64)limit + 1);
    uint32_t rows = 0;
    int rc;
    store_event_destination_t *d = malloc(sizeof(*d));
    if (d == NULL) {
        sqlite3_finalize(stmt);
        return PC_NO_MEMORY;
    }
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (limit != 0 && rows == limit) {
            *has_more = true;
            break;
        }
        destination_from_row(stmt, d);
        fn(d, ctx);
        rows++;
    }
    free(d);
    sqlite3_finalize(stmt);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? PC_OK : PC_STORE_READ_FAILED;
}

static pc_status sqlite_events_destination_get(store_reader_t *reader, const char *id, store_event_destination_t *out) {
    sqlite3_stmt *stmt;
    if (store_sqlite_prepare(store_sqlite_reader_db(reader),
                "SELECT " DESTINATION_COLUMNS " FROM event_destinations WHERE id = ?1", &stmt, PC_STORE_READ_FAILED) != PC_OK) {
        return PC_STORE_READ_FAILED;
    }
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    pc_status status = rc == SQLITE_ROW ? PC_OK : rc == SQLITE_DONE ? PC_NOT_FOUND : PC_STORE_READ_FAILED;
    if (status == PC_OK) destination_from_row(stmt, out);
    sqlite3_finalize(stmt);
    return status;
}

static pc_status sqlite_events_destination_counts(store_reader_t *reader, const char *merchant_id,
                                          uint32_t *merchant_count, uint32_t *total_count) {
    sqlite3_stmt *stmt;
    if (store_sqlite_prepare(store_sqlite_reader_db(reader),
                "SELECT count(*), coalesce(sum(merchant_id = ?1), 0) FROM event_destinations"
                " WHERE kind = 'webhook'", &stmt, PC_STORE_READ_FAILED) != PC_OK) {
        return PC_STORE_READ_FAILED;
    }
    sqlite3_bind_text(stmt, 1, merchant_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        *total_count = (uint32_t)sqlite3_column_int64(stmt, 0);
        *merchant_count = (uint32_t)sqlite3_column_int64(stmt, 1);
    }
    sqlite3_finalize(stmt);
    return rc == SQLITE_ROW ? PC_OK : PC_STORE_READ_FAILED;
}

/* ---- deliveries ---- */

static pc_status sqlite_events_delivery_put(store_tx_t *tx, const store_event_delivery_t *d, uint64_t epoch) {
    sqlite3_stmt *stmt;
    if (prepare_write(tx, "INSERT OR REPLACE INTO event_deliveries(destination_id, seq, state, attempts,"
                          " first_attempt_ns, next_attempt_ns, updated_ns, last_error)"
                          " SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 WHERE EXISTS"
                          " (SELECT 1 FROM event_destinations WHERE id = ?1 AND cursor_epoch = ?9)", &stmt) != PC_OK) {
        return PC_STORE_COMMIT_FAILED;
    }
    sqlite3_bind_int64(stmt, 9, (sqlite3_int64)epoch);
    sqlite3_bind_text(stmt, 1, d->destination_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, (sqlite3_int64)d->seq);
    sqlite3_bind_int(stmt, 3, (int)d->state);
    sqlite3_bind_int64(stmt, 4, d->attempts);
    sqlite3_bind_int64(stmt, 5, (sqlite3_int64)d->first_attempt_ns);
    sqlite3_bind_int64(stmt, 6, (sqlite3_int64)d->next_attempt_ns);
    sqlite3_bind_int64(stmt, 7, (sqlite3_int64)d->updated_ns);
    sqlite3_bind_text(stmt, 8, d->last_error, -1, SQLITE_STATIC);
    return store_sqlite_step_done(stmt);
}

static pc_status sqlite_events_delivery_delete(store_tx_t *tx, const char *destination_id, uint64_t seq) {
    sqlite3_stmt *stmt;
    if (prepare_write(tx, "DELETE FROM event_deliveries WHERE destination_id = ?1 AND seq = ?2", &stmt) != PC_OK) {
        return PC_STORE_COMMIT_FAILED;
    }
    sqlite3_bind_text(stmt, 1, destination_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, (sqlite3_int64)seq);
    return store_sqlite_step_done(stmt);
}

static pc_status sqlite_events_delivery_redeliver(store_tx_t *tx, const char *destination_id, uint64_t seq,
                                          uint64_t now_ns) {
    /* A row of this event: due now, attempts from zero (a dead letter comes back). */
    sqlite3_stmt *stmt;
    if (prepare_write(tx, "UPDATE event_deliveries SET state = 1, attempts = 0, first_attempt_ns = 0,"
                          " next_attempt_ns = ?3, updated_ns = ?3, last_error = 'redelivery requested'"
                          " WHERE destination_id = ?1 AND seq = ?2", &stmt) != PC_OK) {
        return PC_STORE_COMMIT_FAILED;
    }
    sqlite3_bind_text(stmt, 1, destination_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, (sqlite3_int64)seq);
    sqlite3_bind_int64(stmt, 3, (sqlite3_int64)now_ns);
    pc_status status = store_sqlite_step_done(stmt);
    if (status != PC_OK || sqlite3_changes(store_sqlite_tx_db(tx)) > 0) return status;
    /* No row: add one for an event at or below the cursor (settled, so every earlier
     * event of its object is settled too). Above the cursor it is still to come. */
    store_event_delivery_t d = {.seq = seq, .state = STORE_DELIVERY_RETRYING, .next_attempt_ns = now_ns,
                                .updated_ns = now_ns};
    snprintf(d.destination_id, sizeof d.destination_id, "%s", destination_id);
    snprintf(d.last_error, sizeof d.last_error, "redelivery requested");
    if (prepare_write(tx, "INSERT INTO event_deliveries(destination_id, seq, state, attempts, first_attempt_ns,"
                          " next_attempt_ns, updated_ns, last_error) SELECT ?1, ?2, 1, 0, 0, ?3, ?3, ?4"
                          " WHERE EXISTS (SELECT 1 FROM event_destinations WHERE id = ?1 AND cursor_seq >= ?2)",
                      &stmt) != PC_OK) {
        return PC_STORE_COMMIT_FAILED;
    }
    sqlite3_bind_text(stmt, 1, d.destination_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, (sqlite3_int64)seq);
    sqlite3_bind_int64(stmt, 3, (sqlite3_int64)now_ns);
    sqlite3_bind_text(stmt, 4, d.last_error, -1, SQLITE_STATIC);
    return store_sqlite_step_done(stmt);
}

static pc_status sqlite_events_deliveries_list(store_reader_t *reader, const char *destination_id,
                                       store_delivery_state state, uint64_t after_seq, uint32_t limit,
                                       store_event_delivery_fn fn, void *ctx, bool *has_more) {
    sqlite3_stmt *stmt;
    *has_more = false;
    if (store_sqlite_prepare(store_sqlite_reader_db(reader),
                "SELECT d.destination_id, d.seq, d.state, d.attempts, d.first_attempt_ns, d.next_attempt_ns,"
                " d.updated_ns, d.last_error, e.object_id FROM event_deliveries d JOIN events e ON e.seq = d.seq"
                " WHERE d.destination_id = ?1 AND d.seq > ?2 AND (?3 = 0 OR d.state = ?3)"
                " ORDER BY d.seq LIMIT ?4", &stmt, PC_STORE_READ_FAILED) != PC_OK) {
        return PC_STORE_READ_FAILED;
    }
    sqlite3_bind_text(stmt, 1, destination_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, (sqlite3_int64)after_seq);
    sqlite3_bind_int(stmt, 3, (int)state);
    sqlite3_bind_int64(stmt, 4, limit == 0 ? -1 : (sqlite3_int64)limit + 1);
    uint32_t rows = 0;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (limit != 0 && rows == limit) {
            *has_more = true;
            break;
        }
        store_event_delivery_t d;
        memset(&d, 0, sizeof d);
        text_copy(d.destination_id, sizeof d.destination_id, stmt, 0);
        d.seq = (uint64_t)sqlite3_column_int64(stmt, 1);
        d.state = (store_delivery_state)sqlite3_column_int(stmt, 2);
        d.attempts = (uint32_t)sqlite3_column_int64(stmt, 3);
        d.first_attempt_ns = (uint64_t)sqlite3_column_int64(stmt, 4);
        d.next_attempt_ns = (uint64_t)sqlite3_column_int64(stmt, 5);
        d.updated_ns = (uint64_t)sqlite3_column_int64(stmt, 6);
        text_copy(d.last_error, sizeof d.last_error, stmt, 7);
        d.object_id = (const char *)sqlite3_column_text(stmt, 8);
        fn(&d, ctx);
        rows++;
    }
    sqlite3_finalize(stmt);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? PC_OK : PC_STORE_READ_FAILED;
}

/* ---- retention ---- */

static pc_status sqlite_events_purge(store_tx_t *tx, uint64_t before_ns, uint32_t rows_max, uint32_t *deleted_count) {
    static const char victims[] =
        "SELECT seq FROM events WHERE seq < ?1"
        " AND seq <= (SELECT coalesce(min(cursor_seq), 9223372036854775807) FROM event_destinations)"
        " AND seq < (SELECT max(seq) FROM events)"
        " AND NOT EXISTS (SELECT 1 FROM event_deliveries d WHERE d.seq = events.seq)"
        " ORDER BY seq LIMIT ?2";
    char sql[2048];
    *deleted_count = 0;
    sqlite3 *db = store_sqlite_tx_db(tx);
    if (store_sqlite_rows_flush_all(store_sqlite_tx_store(tx)) != PC_OK) return PC_STORE_COMMIT_FAILED; /* max(seq) */
    /* spans and owners first: the same victims, while their events still exist. A span
     * goes when no event of its owner in it stays; the candidates are the victims'
     * owners' oldest spans (one seek each), and a span kept for an event kept (its
     * delivery row) goes at a later round. */
    const char *const targets[] = {
        "DELETE FROM event_owner_spans WHERE owner IN (SELECT owner FROM events WHERE seq IN (%s))"
        " AND first_seq <= (SELECT max(seq) FROM (%s)) AND NOT EXISTS (SELECT 1 FROM events e"
        " WHERE e.seq >= event_owner_spans.first_seq AND e.seq <= event_owner_spans.last_seq"
        " AND e.owner = event_owner_spans.owner AND e.seq NOT IN (%s))",
        "DELETE FROM event_owners WHERE seq IN (%s)",
        "DELETE FROM events WHERE seq IN (%s)"};
    for (int i = 0; i < 3; i++) {
        sqlite3_stmt *stmt;
        snprintf(sql, sizeof sql, targets[i], victims, victims, victims);
        if (prepare_write(tx, sql, &stmt) != PC_OK) return PC_STORE_COMMIT_FAILED;
        sqlite3_bind_int64(stmt, 1, (sqlite3_int64)before_ns);
        sqlite3_bind_int64(stmt, 2, rows_max);
        pc_status status = store_sqlite_step_done(stmt);
        if (status != PC_OK) return status;
        if (i == 2) *deleted_count = (uint32_t)sqlite3_changes(db);
    }
    return PC_OK;
}

const store_events_ops_t store_sqlite_events_ops = {
    .writer_begin = sqlite_events_writer_begin,
    .ledger_refs = true,
    .writer_reset = sqlite_events_writer_reset,
    .writer_end = sqlite_events_writer_end,
    .seq_next = sqlite_events_seq_next,
    .insert = sqlite_events_insert,
    .account_owners = sqlite_events_account_owners,
    .list = sqlite_events_list,
    .get = sqlite_events_get,
    .latest = sqlite_events_latest,
    .count = sqlite_events_count,
    .destination_insert = sqlite_events_destination_insert,
    .destination_delete = sqlite_events_destination_delete,
    .cursor_advance = sqlite_events_cursor_advance,
    .cursor_rewind = sqlite_events_cursor_rewind,
    .destination_health = sqlite_events_destination_health,
    .destination_secret = sqlite_events_destination_secret,
    .destinations_list = sqlite_events_destinations_list,
    .destination_get = sqlite_events_destination_get,
    .destination_counts = sqlite_events_destination_counts,
    .delivery_put = sqlite_events_delivery_put,
    .delivery_delete = sqlite_events_delivery_delete,
    .delivery_redeliver = sqlite_events_delivery_redeliver,
    .deliveries_list = sqlite_events_deliveries_list,
    .purge = sqlite_events_purge,
};
