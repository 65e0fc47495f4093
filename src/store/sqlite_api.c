/* store/sqlite_api.c: the API's tables in the SQLite backend: API keys (hash only),
 * account grants of merchant keys, and stored idempotent responses. */
#include "store/sqlite_internal.h"

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
