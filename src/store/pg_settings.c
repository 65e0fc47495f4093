/* store/pg_settings.c: server settings the writer refuses to start on. paycore
 * acknowledges a batch once its COMMIT returns; with fsync = off (the server never
 * flushes) or synchronous_commit = off (COMMIT returns before the WAL is flushed) a
 * crash of the server loses acknowledged transfers. Every other synchronous_commit
 * value (local, remote_write, on, remote_apply) flushes the local WAL first. */
#include <string.h>

#include "store/pg_internal.h"

pc_status pg_settings_check(PGconn *conn, char *detail, size_t detail_bytes) {
    char line[400];
    PGresult *result = pg_query(conn, "SELECT current_setting('fsync'), current_setting('synchronous_commit')", 0,
                                NULL);
    if (result == NULL) {
        snprintf(detail, detail_bytes, "reading the server's settings: %s", pg_error_line(conn, line, sizeof line));
        return PC_STORE_READ_FAILED;
    }
    bool fsync_off = strcmp(PQgetvalue(result, 0, 0), "off") == 0;
    bool commit_off = strcmp(PQgetvalue(result, 0, 1), "off") == 0;
    PQclear(result);
    if (fsync_off) {
        snprintf(detail, detail_bytes, "the server runs with fsync = off: a crash can lose acknowledged transfers;"
                 " set fsync = on in postgresql.conf and reload the server");
        return PC_STORE_NOT_DURABLE;
    }
    if (commit_off) {
        snprintf(detail, detail_bytes, "synchronous_commit is off for this connection: COMMIT would return before"
                 " the batch is durable; set it on (postgresql.conf, or ALTER DATABASE/ROLE ... SET"
                 " synchronous_commit = on)");
        return PC_STORE_NOT_DURABLE;
    }
    return PC_OK;
}
