/* store/pg_verify.c: the rows `paycore verify` reads (journal/verify.h), from a
 * PostgreSQL store: a connection of its own, one REPEATABLE READ READ ONLY
 * transaction (one snapshot for every stream; the writer keeps committing), one
 * cursor per stream fetched PG_VERIFY_FETCH_ROWS rows at a time in binary form (the
 * values' own types: a hand edit that changed a column's type shows as such). */
#include <endian.h>
#include <stdlib.h>
#include <string.h>

#include "journal/verify.h"
#include "store/pg_internal.h"

/* PostgreSQL's type oids (catalog/pg_type.h, stable across versions). */
enum { PG_OID_BYTEA = 17, PG_OID_INT8 = 20, PG_OID_INT2 = 21, PG_OID_INT4 = 23, PG_OID_TEXT = 25,
       PG_OID_BPCHAR = 1042, PG_OID_VARCHAR = 1043 };

typedef struct {
    bool open;
    PGresult *result;   /* the rows fetched last */
    int row;            /* the current row in it */
} pg_stream_t;

typedef struct {
    journal_rows_t base;  /* first */
    PGconn *conn;
    pg_stream_t streams[JOURNAL_STREAM_COUNT];
    bool account_lists;   /* the database has account_transfers (schema v10) */
    bool batch_derived;   /* transfers have no batch_seq (schema v15): the journal's range says it */
    bool hash_derived;    /* transfers have no row_hash (schema v16): the verifier computes it */
    bool lists_keyed;     /* account_transfers' arrays leave out the key (v16: nullable) */
    char error[JOURNAL_REPORT_TEXT_BYTES];
} pg_rows_t;

/* JOURNAL_COLUMNS_TRANSFERS from a transfer row that names its accounts by number
 * (schema v9). An outer join: a number that names no account reads as a null id, a
 * row the verifier refuses, not a row left out. */
#define PG_VERIFY_TRANSFER_COLUMNS(batch, hash)                                                         \
    "t.timestamp, t.id, d.id, c.id, t.amount, t.currency, t.code, t.flags, t.pending_id, t.timeout_s,"   \
    " t.metadata, t.pending_state, " batch ", " hash
/* Schema v16: no stored row hash; null, the verifier computes it from the row. */
#define PG_VERIFY_NO_HASH "NULL::bytea"
/* Schema v15: a transfer's batch is the first journal row whose last timestamp is at or
 * above its timestamp (batches' timestamps increase with their seq), by the journal's
 * timestamp_last index; none (null, a row verify refuses) above the last batch. */
#define PG_VERIFY_TRANSFER_BATCH                                                                        \
    "(SELECT j.seq FROM journal j WHERE j.timestamp_last >= t.timestamp ORDER BY j.timestamp_last LIMIT 1)"
#define PG_VERIFY_TRANSFERS_FROM                                                                        \
    "transfers t LEFT JOIN accounts d ON d.no = t.debit_no LEFT JOIN accounts c ON c.no = t.credit_no"

/* Schema v10: account_transfers' timestamps against the transfers' two accounts
 * (multisets: an entry twice is a discrepancy too), and each row keyed by its last.
 * v16: the array holds those before the last (null when none), each below the key. */
#define ACCOUNT_LIST_ENTRIES(all) "SELECT account_no, ts FROM account_transfers e, unnest(" all ") AS ts"
#define TRANSFER_SIDES "SELECT debit_no, timestamp FROM transfers UNION ALL SELECT credit_no, timestamp FROM transfers"
#define ACCOUNT_LISTS_SQL(all, keyed_wrong)                                                            \
    "SELECT x.no, x.ts, t.id FROM ((" ACCOUNT_LIST_ENTRIES(all) " EXCEPT ALL (" TRANSFER_SIDES "))"       \
    " UNION ALL ((" TRANSFER_SIDES ") EXCEPT ALL " ACCOUNT_LIST_ENTRIES(all) ")"                        \
    " UNION ALL SELECT account_no, timestamp_last FROM account_transfers WHERE cardinality(timestamps) = 0" \
    " OR " keyed_wrong ") AS x(no, ts) LEFT JOIN transfers t ON t.timestamp = x.ts LIMIT 1"
#define KEYED_WRONG_V10 "timestamp_last IS DISTINCT FROM (SELECT max(ts) FROM unnest(timestamps) AS ts)"
#define KEYED_WRONG_V16 "timestamp_last <= (SELECT max(ts) FROM unnest(timestamps) AS ts)"

/* The transfers' stream for the schema's shape: batch_seq or the journal's range (v15),
 * row_hash or none (v16). */
static const char *transfers_sql(bool batch_derived, bool hash_derived) {
    if (hash_derived) {
        return "SELECT " PG_VERIFY_TRANSFER_COLUMNS(PG_VERIFY_TRANSFER_BATCH, PG_VERIFY_NO_HASH) " FROM "
            PG_VERIFY_TRANSFERS_FROM " ORDER BY t.timestamp";
    }
    return batch_derived ? "SELECT " PG_VERIFY_TRANSFER_COLUMNS(PG_VERIFY_TRANSFER_BATCH, "t.row_hash") " FROM "
                               PG_VERIFY_TRANSFERS_FROM " ORDER BY t.timestamp"
                         : "SELECT " PG_VERIFY_TRANSFER_COLUMNS("t.batch_seq", "t.row_hash") " FROM "
                               PG_VERIFY_TRANSFERS_FROM " ORDER BY t.timestamp";
}

static const char *stream_sql(journal_stream_t stream, const pg_rows_t *rows) {
    switch (stream) {
    case JOURNAL_STREAM_ACCOUNT_COUNT: return "SELECT count(*) FROM accounts";
    case JOURNAL_STREAM_ACCOUNTS:
        return "SELECT " JOURNAL_COLUMNS_ACCOUNTS " FROM accounts ORDER BY no";
    case JOURNAL_STREAM_TRANSFERS: return transfers_sql(rows->batch_derived, rows->hash_derived);
    case JOURNAL_STREAM_FAILURES:
        return "SELECT " JOURNAL_COLUMNS_FAILURES " FROM transfer_failures ORDER BY timestamp, id COLLATE \"C\"";
    case JOURNAL_STREAM_HISTORY:
        return "SELECT " JOURNAL_COLUMNS_HISTORY
               " FROM balance_history ORDER BY timestamp, account_id COLLATE \"C\"";
    case JOURNAL_STREAM_CHECKPOINTS:
        return "SELECT " JOURNAL_COLUMNS_CHECKPOINTS " FROM journal_checkpoints ORDER BY seq";
    case JOURNAL_STREAM_JOURNAL:
        return "SELECT " JOURNAL_COLUMNS_JOURNAL " FROM journal ORDER BY seq";
    case JOURNAL_STREAM_SNAPSHOT_SEQ:
        return "SELECT value FROM paycore_meta WHERE key = 'accounts_as_of_seq'";
    case JOURNAL_STREAM_DUPLICATE_IDS:
        return "SELECT id, count(*) FROM (SELECT id FROM transfers UNION ALL"
               " SELECT id FROM transfer_failures) AS ids GROUP BY id HAVING count(*) > 1 LIMIT 1";
    case JOURNAL_STREAM_ACCOUNT_LISTS:
        if (!rows->account_lists) return "SELECT 0, 0::bigint, NULL::text WHERE false";
        return rows->lists_keyed ? ACCOUNT_LISTS_SQL(PG_ACCOUNT_ROW_TIMESTAMPS("e"), KEYED_WRONG_V16)
                                 : ACCOUNT_LISTS_SQL("e.timestamps", KEYED_WRONG_V10);
    case JOURNAL_STREAM_COUNT: break;
    }
    return NULL;
}

static pc_status rows_fail(pg_rows_t *rows) {
    pg_error_line(rows->conn, rows->error, sizeof rows->error);
    return PC_STORE_READ_FAILED;
}

static pc_status rows_stream_open(journal_rows_t *base, journal_stream_t stream) {
    pg_rows_t *rows = (pg_rows_t *)base;
    PC_ASSERT(stream < JOURNAL_STREAM_COUNT && !rows->streams[stream].open);
    char sql[2048];
    snprintf(sql, sizeof sql, "DECLARE pc_verify_%d NO SCROLL CURSOR FOR %s", (int)stream,
             stream_sql(stream, rows));
    if (!pg_exec_ok(rows->conn, sql)) return rows_fail(rows);
    rows->streams[stream].open = true;
    return PC_OK;
}

static pc_status rows_next(journal_rows_t *base, journal_stream_t stream, bool *has_row) {
    pg_rows_t *rows = (pg_rows_t *)base;
    pg_stream_t *s = &rows->streams[stream];
    *has_row = false;
    if (s->result != NULL && s->row + 1 < PQntuples(s->result)) {
        s->row++;
        *has_row = true;
        return PC_OK;
    }
    PQclear(s->result);
    char sql[64];
    snprintf(sql, sizeof sql, "FETCH FORWARD %d FROM pc_verify_%d", PG_VERIFY_FETCH_ROWS, (int)stream);
    s->result = PQexecParams(rows->conn, sql, 0, NULL, NULL, NULL, NULL, 1 /* binary */);
    s->row = 0;
    if (PQresultStatus(s->result) != PGRES_TUPLES_OK) {
        PQclear(s->result);
        s->result = NULL;
        return rows_fail(rows);
    }
    *has_row = PQntuples(s->result) > 0;
    return PC_OK;
}

static int64_t be_integer(const char *bytes, int byte_count) {
    switch (byte_count) {
    case 2: { uint16_t x; memcpy(&x, bytes, 2); return (int16_t)be16toh(x); }
    case 4: { uint32_t x; memcpy(&x, bytes, 4); return (int32_t)be32toh(x); }
    case 8: { uint64_t x; memcpy(&x, bytes, 8); return (int64_t)be64toh(x); }
    default: return 0;
    }
}

static void rows_value(journal_rows_t *base, journal_stream_t stream, int column, journal_value_t *out) {
    const pg_stream_t *s = &((pg_rows_t *)base)->streams[stream];
    const char *bytes = PQgetvalue(s->result, s->row, column);
    int byte_count = PQgetlength(s->result, s->row, column);
    memset(out, 0, sizeof(*out));
    if (PQgetisnull(s->result, s->row, column)) {
        out->kind = JOURNAL_VALUE_NULL;
        return;
    }
    switch (PQftype(s->result, column)) {
    case PG_OID_INT2:
    case PG_OID_INT4:
    case PG_OID_INT8:
        out->kind = JOURNAL_VALUE_INTEGER;
        out->integer = be_integer(bytes, byte_count);
        return;
    case PG_OID_TEXT:
    case PG_OID_VARCHAR:
    case PG_OID_BPCHAR: out->kind = JOURNAL_VALUE_TEXT; break;
    case PG_OID_BYTEA: out->kind = JOURNAL_VALUE_BLOB; break;
    default: out->kind = JOURNAL_VALUE_OTHER; return;
    }
    out->bytes = (const uint8_t *)bytes; /* libpq ends every value with a NUL */
    out->byte_count = byte_count > 0 ? (size_t)byte_count : 0;
}

static int64_t rows_integer_shown(journal_rows_t *base, journal_stream_t stream, int column) {
    journal_value_t value;
    rows_value(base, stream, column, &value);
    if (value.kind == JOURNAL_VALUE_INTEGER) return value.integer;
    return value.kind == JOURNAL_VALUE_TEXT ? strtoll((const char *)value.bytes, NULL, 10) : 0;
}

static const char *rows_error(journal_rows_t *base) { return ((pg_rows_t *)base)->error; }

static void rows_close(journal_rows_t *base) {
    pg_rows_t *rows = (pg_rows_t *)base;
    for (int i = 0; i < JOURNAL_STREAM_COUNT; i++) PQclear(rows->streams[i].result);
    PQfinish(rows->conn); /* ends the read-only transaction with the session */
    free(rows);
}

static const journal_rows_ops_t pg_rows_ops = {
    .stream_open = rows_stream_open,
    .next = rows_next,
    .value = rows_value,
    .integer_shown = rows_integer_shown,
    .error = rows_error,
    .close = rows_close,
};

/* The database is paycore's, of a schema version this paycore reads (verify reads only
 * the ledger's and the journal's tables, the same in every version). */
static pc_status kind_check(PGconn *conn, char *detail, size_t detail_bytes) {
    int version = 0;
    int64_t other_tables = 0;
    pc_status status = pg_schema_read(conn, &version, &other_tables, detail, detail_bytes);
    if (status != PC_OK) return status;
    if (version == -1) {
        snprintf(detail, detail_bytes, "the database has %lld tables but no paycore_meta: not paycore's",
                 (long long)other_tables);
        return PC_STORE_NOT_PAYCORE;
    }
    if (version == -2) {
        snprintf(detail, detail_bytes, "paycore_meta has no format 'paycore' and schema_version: not paycore's");
        return PC_STORE_NOT_PAYCORE;
    }
    if (version < 1 || version > pg_schema_version_latest()) {
        snprintf(detail, detail_bytes, "schema version %d; this verifier reads versions 1 to %d", version,
                 pg_schema_version_latest());
        return PC_STORE_VERSION_UNSUPPORTED;
    }
    return PC_OK;
}

/* Whether the transfers table has the column (not dropped). */
#define TRANSFERS_HAVE(column)                                                                          \
    "EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('transfers') AND attname = '" column \
    "' AND NOT attisdropped)"

pc_status store_pg_verify_open(const char *location, journal_rows_t **out, char *detail, size_t detail_bytes) {
    pg_rows_t *rows = calloc(1, sizeof(*rows));
    if (rows == NULL) return PC_NO_MEMORY;
    rows->base.ops = &pg_rows_ops;
    pc_status status = pg_connect(location, &rows->conn, detail, detail_bytes);
    if (status == PC_OK && !pg_exec_ok(rows->conn, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")) {
        char line[400];
        snprintf(detail, detail_bytes, "begin: %s", pg_error_line(rows->conn, line, sizeof line));
        status = PC_STORE_READ_FAILED;
    }
    if (status == PC_OK) status = kind_check(rows->conn, detail, detail_bytes);
    PGresult *result = status == PC_OK ? pg_query(rows->conn, "SELECT to_regclass('account_transfers') IS NOT NULL,"
                                                  " NOT " TRANSFERS_HAVE("batch_seq") ", NOT "
                                                  TRANSFERS_HAVE("row_hash") ", EXISTS (SELECT 1 FROM pg_attribute"
                                                  " WHERE attrelid = to_regclass('account_transfers') AND attname ="
                                                  " 'timestamps' AND NOT attnotnull)", 0, NULL) : NULL;
    if (status == PC_OK && result == NULL) {
        char line[400];
        snprintf(detail, detail_bytes, "reading the schema: %s", pg_error_line(rows->conn, line, sizeof line));
        status = PC_STORE_READ_FAILED;
    }
    if (result != NULL) {
        rows->account_lists = strcmp(PQgetvalue(result, 0, 0), "t") == 0;
        rows->batch_derived = strcmp(PQgetvalue(result, 0, 1), "t") == 0;
        rows->hash_derived = strcmp(PQgetvalue(result, 0, 2), "t") == 0;
        rows->lists_keyed = strcmp(PQgetvalue(result, 0, 3), "t") == 0;
    }
    PQclear(result);
    if (status != PC_OK) {
        rows_close(&rows->base);
        return status;
    }
    *out = &rows->base;
    return PC_OK;
}
