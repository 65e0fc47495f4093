/* store/sqlite_verify.c: the rows `paycore verify` reads (journal/verify.h), from a
 * SQLite file: opened read-only, one read transaction for every stream (a live
 * server may keep writing meanwhile), one prepared statement per stream. */
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

#include "journal/verify.h"
#include "store/sqlite_internal.h"

/* The file formats verify reads (sqlite_schema.c): version 1 keeps the signed journal
 * checkpoints in 'checkpoints', later versions in 'journal_checkpoints' (3 changed
 * only the API's idempotency_keys table, 4 added the events outbox and 5 the payments
 * layer's tables: none holds money, the ledger does). */
#define VERIFY_SCHEMA_VERSION_MIN 1
#define VERIFY_SCHEMA_VERSION_MAX STORE_SCHEMA_VERSION_MAX /* limits.h */

typedef struct {
    journal_rows_t base;  /* first */
    sqlite3 *db;
    int schema_version;
    sqlite3_stmt *streams[JOURNAL_STREAM_COUNT];
    char error[JOURNAL_REPORT_TEXT_BYTES];
} sqlite_rows_t;

static const char *stream_sql(journal_stream_t stream, int schema_version) {
    switch (stream) {
    case JOURNAL_STREAM_ACCOUNT_COUNT: return "SELECT count(*) FROM accounts";
    case JOURNAL_STREAM_ACCOUNTS:
        return "SELECT " JOURNAL_COLUMNS_ACCOUNTS " FROM accounts ORDER BY no";
    case JOURNAL_STREAM_TRANSFERS:
        return "SELECT " JOURNAL_COLUMNS_TRANSFERS " FROM transfers ORDER BY timestamp";
    case JOURNAL_STREAM_FAILURES:
        return "SELECT " JOURNAL_COLUMNS_FAILURES " FROM transfer_failures ORDER BY timestamp, id";
    case JOURNAL_STREAM_HISTORY:
        return "SELECT " JOURNAL_COLUMNS_HISTORY " FROM balance_history ORDER BY timestamp, account_id";
    case JOURNAL_STREAM_CHECKPOINTS:
        return schema_version == 1
                   ? "SELECT " JOURNAL_COLUMNS_CHECKPOINTS " FROM checkpoints ORDER BY seq"
                   : "SELECT " JOURNAL_COLUMNS_CHECKPOINTS " FROM journal_checkpoints ORDER BY seq";
    case JOURNAL_STREAM_JOURNAL:
        return "SELECT " JOURNAL_COLUMNS_JOURNAL " FROM journal ORDER BY seq";
    case JOURNAL_STREAM_SNAPSHOT_SEQ:
        /* as text, whatever type a hand edit gave it: verify parses it */
        return "SELECT CAST(value AS TEXT) FROM meta WHERE key='accounts_as_of_seq'";
    case JOURNAL_STREAM_DUPLICATE_IDS:
        return "SELECT id, count(*) FROM (SELECT id FROM transfers UNION ALL"
               " SELECT id FROM transfer_failures) GROUP BY id HAVING count(*) > 1 LIMIT 1";
    case JOURNAL_STREAM_ACCOUNT_LISTS: /* the index file is derived: rebuilt, not verified */
        return "SELECT 0, 0, NULL WHERE 0";
    case JOURNAL_STREAM_COUNT: break;
    }
    return NULL;
}

/* SQLite's message, and what to do about a file that needs recovery. */
static void error_keep(sqlite_rows_t *rows) {
    int code = rows->db != NULL ? sqlite3_extended_errcode(rows->db) : SQLITE_OK;
    /* A crash while SQLite wrote outside WAL mode (database creation) leaves a hot
     * rollback journal that a read-only open may not roll back. */
    bool hot = code == SQLITE_READONLY_ROLLBACK || code == SQLITE_READONLY_RECOVERY;
    snprintf(rows->error, sizeof rows->error, "%s%s", rows->db != NULL ? sqlite3_errmsg(rows->db) : "no database",
             hot ? " (the file needs recovery: open it once with paycore serve or init)" : "");
}

static pc_status rows_stream_open(journal_rows_t *base, journal_stream_t stream) {
    sqlite_rows_t *rows = (sqlite_rows_t *)base;
    PC_ASSERT(stream < JOURNAL_STREAM_COUNT && rows->streams[stream] == NULL);
    if (sqlite3_prepare_v2(rows->db, stream_sql(stream, rows->schema_version), -1, &rows->streams[stream], NULL) !=
        SQLITE_OK) {
        error_keep(rows);
        return PC_STORE_READ_FAILED;
    }
    return PC_OK;
}

static pc_status rows_next(journal_rows_t *base, journal_stream_t stream, bool *has_row) {
    sqlite_rows_t *rows = (sqlite_rows_t *)base;
    int rc = sqlite3_step(rows->streams[stream]);
    *has_row = rc == SQLITE_ROW;
    if (rc == SQLITE_ROW || rc == SQLITE_DONE) return PC_OK;
    error_keep(rows);
    return PC_STORE_READ_FAILED;
}

static void rows_value(journal_rows_t *base, journal_stream_t stream, int column, journal_value_t *out) {
    sqlite3_stmt *stmt = ((sqlite_rows_t *)base)->streams[stream];
    int type = sqlite3_column_type(stmt, column); /* before any conversion */
    out->integer = 0;
    out->bytes = NULL;
    out->byte_count = 0;
    switch (type) {
    case SQLITE_NULL: out->kind = JOURNAL_VALUE_NULL; return;
    case SQLITE_INTEGER:
        out->kind = JOURNAL_VALUE_INTEGER;
        out->integer = sqlite3_column_int64(stmt, column);
        return;
    case SQLITE_TEXT:
        out->kind = JOURNAL_VALUE_TEXT;
        out->bytes = sqlite3_column_text(stmt, column);
        break;
    case SQLITE_BLOB:
        out->kind = JOURNAL_VALUE_BLOB;
        out->bytes = sqlite3_column_blob(stmt, column);
        break;
    default: out->kind = JOURNAL_VALUE_OTHER; return;
    }
    int byte_count = sqlite3_column_bytes(stmt, column);
    out->byte_count = byte_count > 0 ? (size_t)byte_count : 0;
}

static int64_t rows_integer_shown(journal_rows_t *base, journal_stream_t stream, int column) {
    return sqlite3_column_int64(((sqlite_rows_t *)base)->streams[stream], column);
}

static const char *rows_error(journal_rows_t *base) { return ((sqlite_rows_t *)base)->error; }

static void rows_close(journal_rows_t *base) {
    sqlite_rows_t *rows = (sqlite_rows_t *)base;
    for (int i = 0; i < JOURNAL_STREAM_COUNT; i++) sqlite3_finalize(rows->streams[i]);
    if (rows->db != NULL) {
        sqlite3_exec(rows->db, "ROLLBACK", NULL, NULL, NULL);
        sqlite3_close(rows->db);
    }
    free(rows);
}

static const journal_rows_ops_t sqlite_rows_ops = {
    .stream_open = rows_stream_open,
    .next = rows_next,
    .value = rows_value,
    .integer_shown = rows_integer_shown,
    .error = rows_error,
    .close = rows_close,
};

static int64_t pragma_int(sqlite3 *db, const char *sql, bool *ok) {
    sqlite3_stmt *stmt = NULL;
    int64_t value = 0;
    *ok = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) == SQLITE_OK && sqlite3_step(stmt) == SQLITE_ROW;
    if (*ok) value = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return value;
}

/* "what: SQLite's message" into 'detail'; returns 'status'. */
static pc_status open_error(sqlite_rows_t *rows, pc_status status, const char *what, char *detail,
                            size_t detail_bytes) {
    error_keep(rows);
    snprintf(detail, detail_bytes, "%s: %s", what, rows->error);
    return status;
}

/* Checks the file is paycore's, of a version verify reads; the read transaction is open. */
static pc_status kind_check(sqlite_rows_t *rows, const char *db_path, char *detail, size_t detail_bytes) {
    bool ok_id, ok_version;
    int64_t application_id = pragma_int(rows->db, "PRAGMA application_id", &ok_id);
    int64_t version = pragma_int(rows->db, "PRAGMA user_version", &ok_version);
    if (!ok_id || !ok_version) {
        bool foreign = sqlite3_errcode(rows->db) == SQLITE_NOTADB;
        return open_error(rows, foreign ? PC_STORE_NOT_PAYCORE : PC_STORE_OPEN_FAILED, db_path, detail, detail_bytes);
    }
    if (application_id != store_sqlite_application_id()) {
        snprintf(detail, detail_bytes, "application_id %" PRId64 " is not paycore's", application_id);
        return PC_STORE_NOT_PAYCORE;
    }
    if (version < VERIFY_SCHEMA_VERSION_MIN || version > VERIFY_SCHEMA_VERSION_MAX) {
        snprintf(detail, detail_bytes, "schema version %" PRId64 "; this verifier reads versions %d to %d", version,
                 VERIFY_SCHEMA_VERSION_MIN, VERIFY_SCHEMA_VERSION_MAX);
        return PC_STORE_VERSION_UNSUPPORTED;
    }
    rows->schema_version = (int)version;
    return PC_OK;
}

pc_status store_sqlite_verify_open(const char *db_path, journal_rows_t **out, char *detail, size_t detail_bytes) {
    sqlite_rows_t *rows = calloc(1, sizeof(*rows));
    if (rows == NULL) return PC_NO_MEMORY;
    rows->base.ops = &sqlite_rows_ops;
    pc_status status = PC_OK;
    /* One thread uses this connection: no SQLite mutexes. */
    if (sqlite3_open_v2(db_path, &rows->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        status = open_error(rows, PC_STORE_OPEN_FAILED, db_path, detail, detail_bytes);
    } else {
        sqlite3_extended_result_codes(rows->db, 1);
        sqlite3_busy_timeout(rows->db, 5000);
        if (sqlite3_exec(rows->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
            status = open_error(rows, PC_STORE_READ_FAILED, "begin", detail, detail_bytes);
        } else {
            status = kind_check(rows, db_path, detail, detail_bytes);
        }
    }
    if (status != PC_OK) {
        rows_close(&rows->base);
        return status;
    }
    *out = &rows->base;
    return PC_OK;
}
