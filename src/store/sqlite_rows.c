/* store/sqlite_rows.c: rows the writer appends, inserted several per statement.
 * A one-row INSERT pays SQLite's statement costs (step, cursors opened on the table
 * and each index, halt, reset) for every row; a statement of 16 rows pays them once.
 * Measured on this machine (an events-like table with one index, 64 rows a commit):
 * 14.7k instructions a row one per statement, 9.1k sixteen per statement.
 *
 * The rows are copied here as they come and inserted when STORE_SQLITE_ROWS_PER_INSERT
 * are waiting, and at the latest before COMMIT (store_sqlite_rows_flush_all, from
 * sqlite_tx.c) or before a statement of the same transaction that reads their table;
 * a ROLLBACK drops them. A row that fails (a duplicate key) fails the statement, and
 * so the batch, as it would have failed alone. Writer thread only.
 *
 * The statements are INSERT OR FAIL: one of several rows that may abort makes SQLite
 * keep a statement journal (each page it changes that the transaction had already
 * changed is copied first, to undo the rows before a failing one). Every caller fails
 * its batch on a failed flush and the batch's ROLLBACK undoes those rows anyway, so the
 * copy is waste. Without it an I/O error, a full disk or no memory mid-statement rolls
 * back the whole transaction: a flush after that is refused, not run on its own.
 * INSERT OR IGNORE (the vault's cards: a token stored again is left as it is) cannot
 * abort at all and keeps no statement journal either.
 *
 * Every flush is one statement: the one of exactly as many rows as wait, prepared the
 * first time that count is flushed and kept. Statements of 16, 4 and 1 rows took up to
 * 3 + n % 4 statements for the n < 16 rows a COMMIT flushes (~6k instructions each);
 * at most STORE_SQLITE_ROWS_PER_INSERT statements are kept a buffer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/sqlite_internal.h"

enum { VALUE_NULL, VALUE_INT, VALUE_TEXT, VALUE_BLOB };

typedef struct {
    int kind;
    int64_t number;     /* VALUE_INT */
    size_t text_at;     /* VALUE_TEXT, VALUE_BLOB: offset in the arena */
    size_t text_bytes;
} rows_value_t;

struct store_sqlite_rows {
    sqlite_store_t *store;
    char *insert_prefix;
    uint32_t columns;
    sqlite3_stmt *statements[STORE_SQLITE_ROWS_PER_INSERT]; /* [n - 1]: n rows; NULL until first used */
    rows_value_t values[STORE_SQLITE_ROWS_PER_INSERT * STORE_SQLITE_ROWS_COLUMNS_MAX];
    uint32_t values_count;   /* of the rows begun, the last one maybe incomplete */
    char *arena;             /* the texts of the waiting rows */
    size_t arena_bytes, arena_capacity;
    bool failed;             /* out of memory while copying: the next flush fails */
};

char *store_sqlite_rows_sql(const char *head, uint32_t columns, uint32_t rows, const char *tail) {
    PC_ASSERT(columns >= 1 && rows >= 1);
    size_t head_bytes = strlen(head), tail_bytes = tail != NULL ? strlen(tail) : 0;
    size_t group_bytes = (size_t)columns * 2 + 2; /* "(?,?)" and the comma before the next */
    char *sql = malloc(head_bytes + (size_t)rows * group_bytes + tail_bytes + 1);
    if (sql == NULL) return NULL;
    memcpy(sql, head, head_bytes);
    size_t n = head_bytes;
    for (uint32_t r = 0; r < rows; r++) {
        if (r > 0) sql[n++] = ',';
        sql[n++] = '(';
        for (uint32_t c = 0; c < columns; c++) {
            if (c > 0) sql[n++] = ',';
            sql[n++] = '?';
        }
        sql[n++] = ')';
    }
    if (tail_bytes > 0) memcpy(sql + n, tail, tail_bytes);
    sql[n + tail_bytes] = '\0';
    return sql;
}

static bool deferred_add(sqlite_store_t *store, store_sqlite_rows_t *rows) {
    if (store->deferred_count == STORE_SQLITE_DEFERRED_MAX) return false;
    store->deferred[store->deferred_count++] = rows;
    return true;
}

static void deferred_remove(sqlite_store_t *store, store_sqlite_rows_t *rows) {
    for (uint32_t i = 0; i < store->deferred_count; i++) {
        if (store->deferred[i] != rows) continue;
        store->deferred[i] = store->deferred[--store->deferred_count];
        return;
    }
}

/* The statement of 'count' rows, prepared on its first use and kept. */
static pc_status statement_of(store_sqlite_rows_t *rows, uint32_t count, sqlite3_stmt **out) {
    PC_ASSERT(count >= 1 && count <= STORE_SQLITE_ROWS_PER_INSERT);
    sqlite3_stmt **kept = &rows->statements[count - 1];
    if (*kept == NULL) {
        char *sql = store_sqlite_rows_sql(rows->insert_prefix, rows->columns, count, NULL);
        pc_status status = sql == NULL ? PC_NO_MEMORY : store_sqlite_prepare(rows->store->db, sql, kept, PC_STORE_COMMIT_FAILED);
        free(sql);
        if (status != PC_OK) {
            *kept = NULL;
            return status;
        }
    }
    *out = *kept;
    return PC_OK;
}

pc_status store_sqlite_rows_new(sqlite_store_t *store, const char *insert_prefix, uint32_t columns,
                                store_sqlite_rows_t **out) {
    PC_ASSERT(columns >= 1 && columns <= STORE_SQLITE_ROWS_COLUMNS_MAX);
    /* no statement journal: OR FAIL, or OR IGNORE (a row that is there is left as it is) */
    PC_ASSERT(strncmp(insert_prefix, "INSERT OR FAIL ", 15) == 0 || strncmp(insert_prefix, "INSERT OR IGNORE ", 17) == 0);
    *out = NULL;
    store_sqlite_rows_t *rows = calloc(1, sizeof(*rows));
    if (rows == NULL) return PC_NO_MEMORY;
    rows->store = store;
    rows->columns = columns;
    rows->insert_prefix = pc_strdup(insert_prefix);
    /* the one-row statement now: a prefix SQLite refuses fails here, not at a COMMIT */
    sqlite3_stmt *one = NULL;
    pc_status status = rows->insert_prefix == NULL ? PC_NO_MEMORY : statement_of(rows, 1, &one);
    if (status == PC_OK && !deferred_add(store, rows)) status = PC_INTERNAL;
    if (status != PC_OK) {
        sqlite3_finalize(one);
        free(rows->insert_prefix);
        free(rows);
        return status;
    }
    *out = rows;
    return PC_OK;
}

void store_sqlite_rows_free(store_sqlite_rows_t *rows) {
    if (rows == NULL) return;
    deferred_remove(rows->store, rows);
    for (uint32_t i = 0; i < STORE_SQLITE_ROWS_PER_INSERT; i++) sqlite3_finalize(rows->statements[i]);
    free(rows->insert_prefix);
    free(rows->arena);
    free(rows);
}

static rows_value_t *value_next(store_sqlite_rows_t *rows) {
    PC_ASSERT(rows->values_count < STORE_SQLITE_ROWS_PER_INSERT * rows->columns);
    return &rows->values[rows->values_count++];
}

void store_sqlite_rows_int(store_sqlite_rows_t *rows, int64_t number) {
    *value_next(rows) = (rows_value_t){.kind = VALUE_INT, .number = number};
}

void store_sqlite_rows_null(store_sqlite_rows_t *rows) { *value_next(rows) = (rows_value_t){.kind = VALUE_NULL}; }

/* A text or blob: its bytes copied into the arena. */
static void bytes_copy(store_sqlite_rows_t *rows, int kind, const void *text, size_t bytes) {
    rows_value_t *value = value_next(rows);
    *value = (rows_value_t){.kind = kind, .text_at = rows->arena_bytes, .text_bytes = bytes};
    if (rows->arena_bytes + bytes > rows->arena_capacity) {
        size_t capacity = rows->arena_capacity ? rows->arena_capacity : 4096;
        while (capacity < rows->arena_bytes + bytes) capacity *= 2;
        char *grown = realloc(rows->arena, capacity);
        if (grown == NULL) {
            rows->failed = true;
            value->text_bytes = 0;
            return;
        }
        rows->arena = grown;
        rows->arena_capacity = capacity;
    }
    if (bytes > 0) memcpy(rows->arena + rows->arena_bytes, text, bytes);
    rows->arena_bytes += bytes;
}

void store_sqlite_rows_text(store_sqlite_rows_t *rows, const char *text, size_t bytes) {
    bytes_copy(rows, VALUE_TEXT, text, bytes);
}

void store_sqlite_rows_blob(store_sqlite_rows_t *rows, const void *blob, size_t bytes) {
    bytes_copy(rows, VALUE_BLOB, blob, bytes);
}

/* Binds rows [first, first + count) to 'stmt' and runs it. */
static pc_status insert_run(store_sqlite_rows_t *rows, sqlite3_stmt *stmt, uint32_t first, uint32_t count) {
    int param = 1;
    for (uint32_t v = first * rows->columns; v < (first + count) * rows->columns; v++, param++) {
        const rows_value_t *value = &rows->values[v];
        if (value->kind == VALUE_INT) sqlite3_bind_int64(stmt, param, value->number);
        else if (value->kind == VALUE_NULL) sqlite3_bind_null(stmt, param);
        else if (value->kind == VALUE_BLOB) {
            sqlite3_bind_blob(stmt, param, rows->arena + value->text_at, (int)value->text_bytes, SQLITE_STATIC);
        } else sqlite3_bind_text(stmt, param, rows->arena + value->text_at, (int)value->text_bytes, SQLITE_STATIC);
    }
    int rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    /* its bindings still borrow the arena, but the statement runs again only after
     * this function has bound every one of its parameters anew */
    return rc == SQLITE_DONE ? PC_OK : PC_STORE_COMMIT_FAILED;
}

pc_status store_sqlite_rows_flush(store_sqlite_rows_t *rows) {
    PC_ASSERT(rows->values_count % rows->columns == 0); /* no row half given */
    uint32_t waiting = rows->values_count / rows->columns;
    PC_ASSERT(waiting <= STORE_SQLITE_ROWS_PER_INSERT);
    pc_status status = rows->failed ? PC_NO_MEMORY : PC_OK;
    sqlite3_stmt *stmt = NULL;
    /* SQLite rolled the whole transaction back (a statement without a statement journal
     * hit an I/O error, a full disk or no memory): these rows would go in alone */
    if (status == PC_OK && waiting > 0 && sqlite3_get_autocommit(rows->store->db)) {
        status = PC_STORE_COMMIT_FAILED;
    }
    if (status == PC_OK && waiting > 0) status = statement_of(rows, waiting, &stmt);
    if (status == PC_OK && waiting > 0) status = insert_run(rows, stmt, 0, waiting);
    store_sqlite_rows_drop(rows);
    return status;
}

pc_status store_sqlite_rows_end_row(store_sqlite_rows_t *rows) {
    PC_ASSERT(rows->values_count % rows->columns == 0);
    if (rows->values_count < STORE_SQLITE_ROWS_PER_INSERT * rows->columns) return PC_OK;
    return store_sqlite_rows_flush(rows);
}

void store_sqlite_rows_drop(store_sqlite_rows_t *rows) {
    rows->values_count = 0;
    rows->arena_bytes = 0;
    rows->failed = false;
}

bool store_sqlite_rows_waiting(const store_sqlite_rows_t *rows) { return rows->values_count > 0; }

pc_status store_sqlite_rows_flush_all(sqlite_store_t *store) {
    pc_status status = PC_OK; /* past a failure the rest wait for the ROLLBACK that drops them */
    for (uint32_t i = 0; status == PC_OK && i < store->deferred_count; i++) {
        status = store_sqlite_rows_flush(store->deferred[i]);
    }
    return status;
}

void store_sqlite_rows_drop_all(sqlite_store_t *store) {
    for (uint32_t i = 0; i < store->deferred_count; i++) store_sqlite_rows_drop(store->deferred[i]);
}
