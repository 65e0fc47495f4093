/* store/pg_link.c: the shard link (store_shard.h) on PostgreSQL: a connection of its
 * own to one shard for the shard map, the coordinator log and recovery. Every
 * statement runs in autocommit, so a logged intent or decision is durable when the
 * call returns (synchronous_commit). */
#include <inttypes.h>
#include <stdio.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg_internal.h"
#include "store/store_shard.h"

struct store_link {
    PGconn *conn;
    char *url_shown;
    char error[400];
};

const char *store_link_url(const store_link_t *link) { return link->url_shown; }
const char *store_link_error(const store_link_t *link) { return link->error; }

static pc_status link_fail(store_link_t *link, pc_status status, const char *what) {
    char line[300];
    snprintf(link->error, sizeof link->error, "%s: %s", what, pg_error_line(link->conn, line, sizeof line));
    return status;
}

pc_status store_link_open(store_link_t **out, const char *url, char *detail, size_t detail_bytes) {
    if (!store_location_is_url(url)) {
        snprintf(detail, detail_bytes, "'%s' is not a postgres:// URL: shards are PostgreSQL databases", url);
        return PC_STORE_OPEN_FAILED;
    }
    store_link_t *link = calloc(1, sizeof *link);
    if (link == NULL) return PC_NO_MEMORY;
    link->url_shown = pg_url_shown(url);
    pc_status status = link->url_shown != NULL ? pg_connect(url, &link->conn, detail, detail_bytes) : PC_NO_MEMORY;
    /* an existing paycore database of this version: init made it, nothing is created here */
    if (status == PC_OK) status = pg_schema_prepare(link->conn, false, detail, detail_bytes);
    if (status != PC_OK) {
        store_link_close(link);
        return status;
    }
    *out = link;
    return PC_OK;
}

void store_link_close(store_link_t *link) {
    if (link == NULL) return;
    PQfinish(link->conn);
    free(link->url_shown);
    free(link);
}

/* One value of a one-row query, as text into 'out'. */
static pc_status link_value(store_link_t *link, const char *sql, char *out, size_t out_bytes) {
    PGresult *result = pg_query(link->conn, sql, 0, NULL);
    if (result == NULL) return link_fail(link, PC_STORE_READ_FAILED, sql);
    pc_status status = PQntuples(result) == 1 && !PQgetisnull(result, 0, 0) ? PC_OK : PC_NOT_FOUND;
    if (status == PC_OK) pg_text_copy(out, out_bytes, result, 0, 0);
    PQclear(result);
    return status;
}

pc_status store_link_home_misplaced(store_link_t *link, char *out, size_t out_bytes) {
    static const char *const prefixes[] = {STORE_SHARD_HOME_PREFIXES};
    char sql[512];
    size_t used = (size_t)snprintf(sql, sizeof sql, "SELECT min(account_id) FROM shard_accounts WHERE false");
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0] && used < sizeof sql; i++) {
        used += (size_t)snprintf(sql + used, sizeof sql - used, " OR left(account_id, %zu) = '%s'",
                                 strlen(prefixes[i]), prefixes[i]);
    }
    return link_value(link, sql, out, out_bytes);
}

pc_status store_link_max_prepared(store_link_t *link, int64_t *out) {
    char value[24];
    pc_status status = link_value(link, "SELECT current_setting('max_prepared_transactions')", value, sizeof value);
    *out = status == PC_OK ? strtoll(value, NULL, 10) : 0;
    return status;
}

pc_status store_link_instance_id(store_link_t *link, char *out, size_t out_bytes) {
    return link_value(link, "SELECT value FROM paycore_meta WHERE key = 'instance_id'", out, out_bytes);
}

pc_status store_link_map_read(store_link_t *link, store_shard_map_t *out) {
    memset(out, 0, sizeof *out);
    PGresult *result = pg_query(link->conn, "SELECT shard_index, instance_id, shard_count, self FROM shard_map"
                                            " ORDER BY shard_index", 0, NULL);
    if (result == NULL) return link_fail(link, PC_STORE_READ_FAILED, "read the shard map");
    pc_status status = PC_OK;
    int rows = PQntuples(result);
    for (int row = 0; row < rows; row++) {
        int64_t index = pg_int(result, row, 0), count = pg_int(result, row, 2);
        if (index != row || count != rows || count > SHARD_COUNT_MAX) {
            snprintf(link->error, sizeof link->error, "the shard map is damaged at row %d", row);
            status = PC_STORE_CORRUPT;
            break;
        }
        pg_text_copy(out->instance_ids[row], sizeof out->instance_ids[row], result, row, 1);
        if (strcmp(PQgetvalue(result, row, 3), "t") == 0) out->self_index = (uint32_t)row;
    }
    if (status == PC_OK) out->count = (uint32_t)rows;
    PQclear(result);
    return status;
}

pc_status store_link_map_write(store_link_t *link, const store_shard_map_t *map) {
    store_shard_map_t existing;
    pc_status status = store_link_map_read(link, &existing);
    if (status != PC_OK) return status;
    if (existing.count != 0) {
        snprintf(link->error, sizeof link->error, "this database is already shard %u of a set of %u",
                 existing.self_index, existing.count);
        return PC_STORE_SHARD_MAP_MISMATCH;
    }
    if (!pg_exec_ok(link->conn, "BEGIN")) return link_fail(link, PC_STORE_COMMIT_FAILED, "shard map");
    for (uint32_t i = 0; status == PC_OK && i < map->count; i++) {
        PG_U64(index, i);
        PG_U64(count, map->count);
        const char *params[] = {index, map->instance_ids[i], count, i == map->self_index ? "t" : "f"};
        status = pg_write(link->conn, "INSERT INTO shard_map VALUES($1, $2, $3, $4)", 4, params, NULL);
    }
    if (status != PC_OK || !pg_exec_ok(link->conn, "COMMIT")) {
        status = link_fail(link, PC_STORE_COMMIT_FAILED, "shard map");
        (void)pg_exec_ok(link->conn, "ROLLBACK");
    }
    return status;
}

/* ---- the coordinator log ---- */

pc_status store_link_log_intent(store_link_t *link, const char *gtid, const uint32_t *shards, uint32_t shard_count,
                                const char *legs_json) {
    char array[16 * SHARD_COUNT_MAX + 3] = "{";
    for (uint32_t i = 0; i < shard_count; i++) {
        size_t used = strlen(array);
        snprintf(array + used, sizeof array - used, "%s%u", i > 0 ? "," : "", shards[i]);
    }
    strcat(array, "}");
    PG_U64(now, pc_wall_ns());
    const char *params[] = {gtid, array, legs_json, now};
    /* Not waited for (synchronous_commit off in this transaction alone): presumed abort
     * needs no durable intent. A prepared leg whose intent was lost is an orphan, rolled
     * back by recovery; the decision's commit, waited for, flushes the intent before it. */
    pc_status status = pg_write(link->conn, "INSERT INTO coordinator_log(gtid, shards, legs, intent_ns)"
                                " SELECT $1::text, $2::integer[], $3::text, $4::bigint"
                                " WHERE set_config('synchronous_commit', 'off', true) IS NOT NULL", 4, params, NULL);
    return status == PC_OK ? PC_OK : link_fail(link, status, "log intent");
}

pc_status store_link_log_decision(store_link_t *link, const char *gtid, bool commit) {
    PG_U64(now, pc_wall_ns());
    const char *params[] = {gtid, commit ? "commit" : "abort", now};
    int64_t rows = 0;
    pc_status status = pg_write(link->conn, "UPDATE coordinator_log SET decision = $2, decided_ns = $3"
                                " WHERE gtid = $1 AND decision IS NULL", 3, params, &rows);
    if (status != PC_OK) return link_fail(link, status, "log decision");
    return rows == 1 ? PC_OK : PC_EXISTS; /* decided before (by recovery) */
}

pc_status store_link_log_done(store_link_t *link, const char *gtid) {
    PG_U64(now, pc_wall_ns());
    const char *params[] = {gtid, now};
    /* Not waited for either: a done that is lost leaves the row open, and recovery finishes
     * it again (a leg no longer prepared is finished). */
    pc_status status = pg_write(link->conn, "UPDATE coordinator_log SET done_ns = $2 WHERE gtid = $1"
                                " AND set_config('synchronous_commit', 'off', true) IS NOT NULL", 2, params, NULL);
    return status == PC_OK ? PC_OK : link_fail(link, status, "log done");
}

static int decision_of(const PGresult *result, int row, int column) {
    if (PQgetisnull(result, row, column)) return 0;
    return strcmp(PQgetvalue(result, row, column), "commit") == 0 ? 1 : -1;
}

/* "{0,2}" into shards[]. */
static uint32_t shards_parse(const char *text, uint32_t shards[SHARD_COUNT_MAX]) {
    uint32_t count = 0;
    for (const char *c = text; *c != '\0' && count < SHARD_COUNT_MAX; c++) {
        if (*c < '0' || *c > '9') continue;
        char *end;
        shards[count++] = (uint32_t)strtoul(c, &end, 10);
        c = end - 1;
    }
    return count;
}

pc_status store_link_log_open(store_link_t *link, store_link_open_fn fn, void *ctx) {
    PGresult *result = pg_query(link->conn, "SELECT gtid, decision, intent_ns, shards FROM coordinator_log"
                                            " WHERE done_ns IS NULL ORDER BY intent_ns", 0, NULL);
    if (result == NULL) return link_fail(link, PC_STORE_READ_FAILED, "read the coordinator log");
    for (int row = 0; row < PQntuples(result); row++) {
        store_link_open_t open = {.decision = decision_of(result, row, 1),
                                  .intent_ns = (uint64_t)pg_int(result, row, 2)};
        pg_text_copy(open.gtid, sizeof open.gtid, result, row, 0);
        open.shard_count = shards_parse(PQgetvalue(result, row, 3), open.shards);
        fn(&open, ctx);
    }
    PQclear(result);
    return PC_OK;
}

pc_status store_link_log_find(store_link_t *link, const char *gtid, bool *found, int *decision) {
    const char *params[] = {gtid};
    PGresult *result = pg_query(link->conn, "SELECT decision FROM coordinator_log WHERE gtid = $1", 1, params);
    if (result == NULL) return link_fail(link, PC_STORE_READ_FAILED, "find in the coordinator log");
    *found = PQntuples(result) == 1;
    *decision = *found ? decision_of(result, 0, 0) : 0;
    PQclear(result);
    return PC_OK;
}

/* 'pc_<gtid>_<shard>' of this database: the gtid part, and the shard it names. */
pc_status store_link_prepared_list(store_link_t *link, store_link_prepared_fn fn, void *ctx) {
    PGresult *result = pg_query(link->conn, "SELECT gid, (extract(epoch FROM prepared) * 1e9)::bigint"
                                            " FROM pg_prepared_xacts WHERE database = current_database()"
                                            " AND gid LIKE 'pc\\_%' ORDER BY prepared", 0, NULL);
    if (result == NULL) return link_fail(link, PC_STORE_READ_FAILED, "read pg_prepared_xacts");
    for (int row = 0; row < PQntuples(result); row++) {
        char gid[96], *gtid = gid + 3;
        pg_text_copy(gid, sizeof gid, result, row, 0);
        char *cut = strrchr(gtid, '_');
        uint32_t shard = cut != NULL ? (uint32_t)strtoul(cut + 1, NULL, 10) : UINT32_MAX;
        if (cut != NULL) *cut = '\0';
        fn(gtid, shard, (uint64_t)pg_int(result, row, 1), ctx);
    }
    PQclear(result);
    return PC_OK;
}

pc_status store_link_prepared_finish(store_link_t *link, const char *gtid, uint32_t shard, bool commit) {
    for (const char *c = gtid; *c != '\0'; c++) {
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'))) return PC_NOT_FOUND; /* not ours */
    }
    char sql[128];
    snprintf(sql, sizeof sql, "%s 'pc_%s_%u'", commit ? "COMMIT PREPARED" : "ROLLBACK PREPARED", gtid, shard);
    PGresult *result = PQexec(link->conn, sql);
    pc_status status = PC_OK;
    if (PQresultStatus(result) != PGRES_COMMAND_OK) {
        const char *state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
        status = state != NULL && strcmp(state, "42704") == 0 ? PC_NOT_FOUND /* undefined_object */
                                                              : link_fail(link, PC_STORE_COMMIT_FAILED, sql);
    }
    PQclear(result);
    return status;
}

/* ---- the read fence ---- */

pc_status store_link_fence_take(store_link_t *link, store_fence_mode mode) {
    char sql[160];
    if (mode == STORE_FENCE_COMMIT) {
        snprintf(sql, sizeof sql, "SELECT pg_advisory_lock(%d, %d)", PG_WRITER_LOCK_KEY1, PG_FENCE_LOCK_KEY2);
        return pg_exec_ok(link->conn, sql) ? PC_OK : link_fail(link, PC_STORE_COMMIT_FAILED, "hold the read fence");
    }
    /* a reader waits a bounded time: the coordinator holds it for one commit, or a
     * COMMIT PREPARED is stuck on a shard that is gone */
    snprintf(sql, sizeof sql, "SET lock_timeout = %d", SHARD_FENCE_WAIT_MS);
    if (!pg_exec_ok(link->conn, sql)) return link_fail(link, PC_STORE_READ_FAILED, "set lock_timeout");
    snprintf(sql, sizeof sql, "SELECT pg_advisory_lock_shared(%d, %d)", PG_WRITER_LOCK_KEY1, PG_FENCE_LOCK_KEY2);
    PGresult *result = PQexec(link->conn, sql);
    pc_status status = PC_OK;
    if (PQresultStatus(result) != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
        status = link_fail(link, state != NULL && strcmp(state, "55P03") == 0 ? PC_STORE_BUSY : PC_STORE_READ_FAILED,
                           "wait for the read fence");
    }
    PQclear(result);
    (void)pg_exec_ok(link->conn, "RESET lock_timeout");
    return status;
}

pc_status store_link_fence_release(store_link_t *link, store_fence_mode mode) {
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT pg_advisory_unlock%s(%d, %d)", mode == STORE_FENCE_READ ? "_shared" : "",
             PG_WRITER_LOCK_KEY1, PG_FENCE_LOCK_KEY2);
    return pg_exec_ok(link->conn, sql) ? PC_OK : link_fail(link, PC_STORE_COMMIT_FAILED, "release the read fence");
}

/* ---- the key of list cursors (shard_cursor.c) ---- */

pc_status store_link_cursor_key(store_link_t *link, uint8_t key[STORE_CURSOR_KEY_BYTES]) {
    uint8_t fresh[STORE_CURSOR_KEY_BYTES];
    char hex[2 * STORE_CURSOR_KEY_BYTES + 1];
    randombytes_buf(fresh, sizeof fresh);
    sodium_bin2hex(hex, sizeof hex, fresh, sizeof fresh);
    sodium_memzero(fresh, sizeof fresh);
    const char *params[] = {hex};
    /* the first writer's key stays: every node and restart reads the same one */
    PGresult *result = pg_query(link->conn, "INSERT INTO paycore_meta(key, value) VALUES('list_cursor_key', $1)"
                                " ON CONFLICT (key) DO NOTHING", 1, params);
    sodium_memzero(hex, sizeof hex);
    if (result == NULL) return link_fail(link, PC_STORE_COMMIT_FAILED, "write the list cursor key");
    PQclear(result);
    char value[2 * STORE_CURSOR_KEY_BYTES + 2];
    pc_status status = link_value(link, "SELECT value FROM paycore_meta WHERE key = 'list_cursor_key'", value,
                                  sizeof value);
    size_t length = 0;
    if (status == PC_OK && (sodium_hex2bin(key, STORE_CURSOR_KEY_BYTES, value, strlen(value), NULL, &length, NULL) != 0
                            || length != STORE_CURSOR_KEY_BYTES)) {
        snprintf(link->error, sizeof link->error, "paycore_meta's list_cursor_key is not %d bytes of hex",
                 STORE_CURSOR_KEY_BYTES);
        status = PC_STORE_CORRUPT;
    }
    sodium_memzero(value, sizeof value);
    return status;
}
