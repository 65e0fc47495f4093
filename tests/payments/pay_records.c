/* tests/payments/pay_records.c: the payment records of a SQLite file as text, for the
 * tests that read pay_versions directly (not a test itself). Since schema version 16 a
 * record is stored packed (store/sqlite_pay_pack.c): this prints each row as one JSON
 * line {"seq", "object_id", "version", "stored": "text"|"packed", "stored_bytes", "doc"},
 * the doc unpacked by the store's own code. Usage: pay_records DB [OBJECT_ID]. */
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

#include "store/sqlite_internal.h"

static int row_print(sqlite3_stmt *stmt, store_pay_pack_t **pack) {
    const void *stored = sqlite3_column_blob(stmt, 3);
    size_t stored_bytes = (size_t)sqlite3_column_bytes(stmt, 3);
    bool packed = sqlite3_column_type(stmt, 3) == SQLITE_BLOB;
    char *doc = NULL;
    size_t bytes = 0;
    if (packed && store_sqlite_pay_unpack(pack, stored, stored_bytes, &doc, &bytes) != PC_OK) {
        fprintf(stderr, "pay_records: seq %lld does not unpack\n", (long long)sqlite3_column_int64(stmt, 0));
        return 1;
    }
    json_t *line = json_pack("{s:I,s:s,s:I,s:s,s:I,s:s#}", "seq", (json_int_t)sqlite3_column_int64(stmt, 0),
                             "object_id", (const char *)sqlite3_column_text(stmt, 1), "version",
                             (json_int_t)sqlite3_column_int64(stmt, 2), "stored", packed ? "packed" : "text",
                             "stored_bytes", (json_int_t)stored_bytes, "doc",
                             packed ? doc : (const char *)sqlite3_column_text(stmt, 3),
                             packed ? bytes : stored_bytes);
    free(doc);
    char *text = line != NULL ? json_dumps(line, JSON_COMPACT) : NULL;
    json_decref(line);
    if (text == NULL) return 1;
    puts(text);
    free(text);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: pay_records DB [OBJECT_ID]\n");
        return 2;
    }
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    const char *sql = argc == 3 ? "SELECT seq, object_id, version, doc FROM pay_versions WHERE object_id = ?1 ORDER BY seq"
                                : "SELECT seq, object_id, version, doc FROM pay_versions ORDER BY seq";
    if (sqlite3_open_v2(argv[1], &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        fprintf(stderr, "pay_records: %s: %s\n", argv[1], sqlite3_errmsg(db));
        sqlite3_close(db);
        return 1;
    }
    if (argc == 3) sqlite3_bind_text(stmt, 1, argv[2], -1, SQLITE_STATIC);
    store_pay_pack_t *pack = NULL;
    int failed = 0, rc;
    while (!failed && (rc = sqlite3_step(stmt)) == SQLITE_ROW) failed = row_print(stmt, &pack);
    store_sqlite_pay_pack_free(pack);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return failed || rc != SQLITE_DONE ? 1 : 0;
}
