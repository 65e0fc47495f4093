/* store/sqlite_stmt_cache.c: a connection's statements kept between calls. The writer's
 * connection (the store) and each reader keep the statements of their busy paths,
 * prepared on first use and reset after each; they are finalized before the
 * connection closes. */
#include <stdlib.h>

#include "store/sqlite_internal.h"

struct store_stmt_cache {
    sqlite3_stmt *statements[STORE_STMT_SLOT_COUNT];
    store_pay_pack_t *pay_pack; /* sqlite_pay_pack.c's contexts, made on first use */
};

void store_sqlite_stmt_cache_free(store_stmt_cache_t *cache) {
    if (cache == NULL) return;
    for (int i = 0; i < STORE_STMT_SLOT_COUNT; i++) sqlite3_finalize(cache->statements[i]);
    store_sqlite_pay_pack_free(cache->pay_pack);
    free(cache);
}

store_pay_pack_t **store_sqlite_conn_pack(store_conn_t c) {
    if (*c.cache == NULL) *c.cache = calloc(1, sizeof **c.cache);
    return *c.cache != NULL ? &(*c.cache)->pay_pack : NULL;
}

pc_status store_sqlite_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **out, pc_status failure) {
    if (db == NULL) return PC_INTERNAL;
    return sqlite3_prepare_v2(db, sql, -1, out, NULL) == SQLITE_OK ? PC_OK : failure;
}

pc_status store_sqlite_step_done(sqlite3_stmt *stmt) {
    int rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    return rc == SQLITE_DONE ? PC_OK : PC_STORE_COMMIT_FAILED;
}

pc_status store_sqlite_stmt_take(store_conn_t c, int slot, const char *sql, sqlite3_stmt **out,
                                 pc_status failure) {
    PC_ASSERT(slot >= 0 && slot < STORE_STMT_SLOT_COUNT);
    if (c.db == NULL) return PC_INTERNAL;
    if (*c.cache == NULL) *c.cache = calloc(1, sizeof **c.cache); /* NULL: prepare per call */
    sqlite3_stmt **kept = *c.cache != NULL ? &(*c.cache)->statements[slot] : NULL;
    if (kept != NULL && *kept == NULL && store_sqlite_prepare(c.db, sql, kept, failure) != PC_OK) {
        *kept = NULL;
        return failure;
    }
    if (kept != NULL && !sqlite3_stmt_busy(*kept)) {
        *out = *kept;
        return PC_OK;
    }
    return store_sqlite_prepare(c.db, sql, out, failure); /* the kept one is stepping: a caller's callback */
}

void store_sqlite_stmt_give_back(store_conn_t c, int slot, sqlite3_stmt *stmt) {
    if (*c.cache != NULL && (*c.cache)->statements[slot] == stmt) {
        sqlite3_reset(stmt); /* ends its read: a reader must not hold an old snapshot */
        sqlite3_clear_bindings(stmt); /* bindings borrow the caller's memory */
    } else {
        sqlite3_finalize(stmt);
    }
}
