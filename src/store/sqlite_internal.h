/* store/sqlite_internal.h: what the SQLite backend's files share. Not a contract:
 * only src/store/ includes this. */
#ifndef PAYCORE_STORE_SQLITE_INTERNAL_H
#define PAYCORE_STORE_SQLITE_INTERNAL_H

#include <sqlite3.h>

#include "store/store.h"

/* The connection of a write transaction (writer thread) and of a reader. */
sqlite3 *store_sqlite_tx_db(store_tx_t *tx);
sqlite3 *store_sqlite_reader_db(store_reader_t *reader);

/* SQL creating the API's tables (keys, grants, idempotency), run by schema
 * migration 1 in the same transaction as the ledger's tables. sqlite_api.c. */
const char *store_sqlite_api_schema(void);

/* WAL, synchronous, busy timeout, cache: the writer's and readers' settings. */
pc_status store_sqlite_configure(sqlite3 *db, bool synchronous_off);

/* Schema (sqlite_schema.c). */
int store_sqlite_schema_version_latest(void);
int store_sqlite_application_id(void);
int store_sqlite_migrate(sqlite3 *db, int version_from, char **error_out);

#endif
