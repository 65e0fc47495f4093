/* store/pg_writers.c: the writers table (schema version 6, store_shard.h): the row a
 * shard's writer writes after taking the shard's writer's lock, and the read other
 * nodes make to find where to forward a command. The row's liveness is the lock
 * itself: pg_locks says whether the backend pid in the row still holds it, so a dead
 * writer's row is recognised at once, whatever the clocks of the nodes say. */
#include <stdlib.h>
#include <string.h>

#include "store/pg_internal.h"
#include "store/store_shard.h"

pc_status store_writer_advertise(store_t *base, uint32_t shard, const char *address, const char *node_id,
                                 uint64_t *epoch) {
    if (strcmp(store_backend_name(base), "postgres") != 0) return PC_STORE_UNSUPPORTED;
    pg_store_t *store = (pg_store_t *)base;
    PG_U64(shard_text, shard);
    PG_U64(now_text, pc_wall_ns());
    const char *params[] = {shard_text, address, node_id, now_text};
    PGresult *result = pg_query(store->conn,
        "INSERT INTO writers(shard_index, address, node_id, epoch, backend_pid, taken_ns)"
        " VALUES($1::integer, $2, $3, 1, pg_backend_pid(), $4::bigint)"
        " ON CONFLICT (shard_index) DO UPDATE SET address = excluded.address, node_id = excluded.node_id,"
        " epoch = writers.epoch + 1, backend_pid = excluded.backend_pid, taken_ns = excluded.taken_ns"
        " RETURNING epoch", 4, params);
    if (result == NULL) return pg_fail(store, PC_STORE_COMMIT_FAILED, "writing the writers row");
    *epoch = (uint64_t)pg_int(result, 0, 0);
    PQclear(result);
    return PC_OK;
}

struct store_writers {
    char *url;
    PGconn *conn;      /* NULL after a failure: reopened at the next find */
    char error[400];
};

pc_status store_writers_open(store_writers_t **out, const char *url, char *detail, size_t detail_bytes) {
    store_writers_t *writers = calloc(1, sizeof *writers);
    if (writers == NULL) return PC_NO_MEMORY;
    writers->url = pc_strdup(url);
    if (writers->url == NULL) {
        free(writers);
        return PC_NO_MEMORY;
    }
    pc_status status = pg_connect(url, &writers->conn, detail, detail_bytes);
    if (status != PC_OK) {
        store_writers_close(writers);
        return status;
    }
    *out = writers;
    return PC_OK;
}

const char *store_writers_error(const store_writers_t *writers) { return writers->error; }

static pc_status writers_connect(store_writers_t *writers) {
    if (writers->conn != NULL) return PC_OK;
    return pg_connect(writers->url, &writers->conn, writers->error, sizeof writers->error);
}

pc_status store_writers_find(store_writers_t *writers, uint32_t shard, store_writer_row_t *out) {
    memset(out, 0, sizeof *out);
    pc_status status = writers_connect(writers);
    if (status != PC_OK) return PC_STORE_READ_FAILED;
    char sql[768];
    snprintf(sql, sizeof sql,
             "SELECT w.address, w.node_id, w.epoch, EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory'"
             " AND l.granted AND l.classid = %d AND l.objid = %d AND l.pid = w.backend_pid AND l.database ="
             " (SELECT oid FROM pg_database WHERE datname = current_database())),"
             " (SELECT value FROM paycore_meta WHERE key = 'instance_id') FROM writers w"
             " WHERE w.shard_index = $1::integer", PG_WRITER_LOCK_KEY1, PG_WRITER_LOCK_KEY2);
    PG_U64(shard_text, shard);
    const char *params[] = {shard_text};
    PGresult *result = pg_query(writers->conn, sql, 1, params);
    if (result == NULL) {
        char line[300];
        snprintf(writers->error, sizeof writers->error, "reading the writers row: %s",
                 pg_error_line(writers->conn, line, sizeof line));
        PQfinish(writers->conn);
        writers->conn = NULL;
        return PC_STORE_READ_FAILED;
    }
    status = PQntuples(result) == 1 ? PC_OK : PC_NOT_FOUND;
    if (status == PC_OK) {
        pg_text_copy(out->address, sizeof out->address, result, 0, 0);
        pg_text_copy(out->node_id, sizeof out->node_id, result, 0, 1);
        out->epoch = (uint64_t)pg_int(result, 0, 2);
        out->live = strcmp(PQgetvalue(result, 0, 3), "t") == 0;
        pg_text_copy(out->instance_id, sizeof out->instance_id, result, 0, 4);
    }
    PQclear(result);
    return status;
}

void store_writers_close(store_writers_t *writers) {
    if (writers == NULL) return;
    if (writers->conn != NULL) PQfinish(writers->conn);
    free(writers->url);
    free(writers);
}
