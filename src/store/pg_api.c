/* store/pg_api.c: the API's tables (keys, grants, idempotent replies) on PostgreSQL,
 * the same rows and semantics as sqlite_api.c. Writes run on the writer's connection
 * inside the batch's transaction; reads on the reader's connection. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg_internal.h"

/* The room a row takes: kept equal to sqlite_api.c's. */
static uint64_t idem_row_bytes(const char *key_id, const char *idempotency_key, size_t body_bytes) {
    return (uint64_t)body_bytes + strlen(key_id) + strlen(idempotency_key) + 64;
}

static pc_status pg_api_key_insert(store_tx_t *tx, const store_api_key_t *key) {
    char hash[2 * STORE_API_HASH_BYTES + 3], created[24], revoked[24];
    pg_bytea_text(key->key_hash, STORE_API_HASH_BYTES, hash);
    snprintf(created, sizeof created, "%" PRIu64, key->created_ns);
    snprintf(revoked, sizeof revoked, "%" PRIu64, key->revoked_ns);
    const char *params[] = {key->id, hash, key->scope, key->name, created, revoked};
    return pg_write(pg_tx_conn(tx), "INSERT INTO api_keys(id, key_hash, scope, name, created_ns, revoked_ns)"
                                      " VALUES($1, $2, $3, $4, $5, $6)", 6, params, NULL);
}

static pc_status pg_api_key_revoke(store_tx_t *tx, const char *id, uint64_t now_ns, bool *found) {
    char now[24];
    snprintf(now, sizeof now, "%" PRIu64, now_ns);
    const char *params[] = {now, id};
    int64_t rows = 0;
    pc_status status = pg_write(pg_tx_conn(tx), "UPDATE api_keys SET revoked_ns = CASE WHEN revoked_ns = 0 THEN $1"
                                  " ELSE revoked_ns END WHERE id = $2", 2, params, &rows);
    *found = status == PC_OK && rows > 0;
    return status;
}

static pc_status pg_api_keys_list(store_reader_t *reader, const char *starting_after, uint32_t limit,
                                  store_api_key_fn fn, void *ctx, bool *has_more) {
    char limit_text[16];
    snprintf(limit_text, sizeof limit_text, "%u", limit + 1);
    const char *params[] = {starting_after ? starting_after : "", limit == 0 ? NULL : limit_text};
    PGresult *result = pg_query(pg_reader_conn(reader), "SELECT id, key_hash, scope, name, created_ns, revoked_ns"
                                " FROM api_keys WHERE id > $1 ORDER BY id LIMIT $2", 2, params);
    *has_more = false;
    if (result == NULL) return PC_STORE_READ_FAILED;
    int rows = PQntuples(result);
    for (int row = 0; row < rows; row++) {
        if (limit != 0 && (uint32_t)row == limit) {
            *has_more = true;
            break;
        }
        store_api_key_t key;
        memset(&key, 0, sizeof key);
        pg_text_copy(key.id, sizeof key.id, result, row, 0);
        (void)pg_bytea(result, row, 1, key.key_hash, STORE_API_HASH_BYTES);
        pg_text_copy(key.scope, sizeof key.scope, result, row, 2);
        pg_text_copy(key.name, sizeof key.name, result, row, 3);
        key.created_ns = (uint64_t)pg_int(result, row, 4);
        key.revoked_ns = (uint64_t)pg_int(result, row, 5);
        fn(&key, ctx);
    }
    PQclear(result);
    return PC_OK;
}

static pc_status pg_api_grant_insert(store_tx_t *tx, const char *key_id, const char *account_id) {
    const char *params[] = {key_id, account_id};
    return pg_write(pg_tx_conn(tx), "INSERT INTO account_grants(key_id, account_id) VALUES($1, $2)"
                                      " ON CONFLICT DO NOTHING", 2, params, NULL);
}

static pc_status pg_api_grant_exists(store_reader_t *reader, const char *key_id, const char *account_id,
                                     bool *exists) {
    const char *params[] = {key_id, account_id};
    PGresult *result = pg_query(pg_reader_conn(reader), "SELECT 1 FROM account_grants WHERE key_id = $1 AND"
                                " account_id = $2", 2, params);
    *exists = false;
    if (result == NULL) return PC_STORE_READ_FAILED;
    *exists = PQntuples(result) > 0;
    PQclear(result);
    return PC_OK;
}

static pc_status pg_api_grants_list(store_reader_t *reader, store_api_grant_fn fn, void *ctx) {
    PGresult *result = pg_query(pg_reader_conn(reader), "SELECT key_id, account_id FROM account_grants"
                                " ORDER BY key_id, account_id", 0, NULL);
    if (result == NULL) return PC_STORE_READ_FAILED;
    for (int row = 0; row < PQntuples(result); row++) fn(PQgetvalue(result, row, 0), PQgetvalue(result, row, 1), ctx);
    PQclear(result);
    return PC_OK;
}

static pc_status pg_api_idem_get(store_reader_t *reader, const char *key_id, const char *idempotency_key,
                                 store_api_idem_t *out, bool *found) {
    memset(out, 0, sizeof *out);
    *found = false;
    const char *params[] = {key_id, idempotency_key};
    PGresult *result = pg_query(pg_reader_conn(reader), "SELECT request_hash, status, body, created_ns FROM"
                                " idempotency_keys WHERE key_id = $1 AND idempotency_key = $2", 2, params);
    if (result == NULL) return PC_STORE_READ_FAILED;
    pc_status status = PC_OK;
    if (PQntuples(result) == 1) {
        (void)pg_bytea(result, 0, 0, out->request_hash, STORE_API_HASH_BYTES);
        out->http_status = (int)pg_int(result, 0, 1);
        out->body_bytes = (size_t)PQgetlength(result, 0, 2);
        out->created_ns = (uint64_t)pg_int(result, 0, 3);
        out->body = malloc(out->body_bytes + 1);
        if (out->body == NULL) {
            status = PC_NO_MEMORY;
        } else {
            memcpy(out->body, PQgetvalue(result, 0, 2), out->body_bytes + 1);
            *found = true;
        }
    }
    PQclear(result);
    return status;
}

static pc_status pg_api_idem_put(store_tx_t *tx, const char *key_id, const char *idempotency_key,
                                 store_api_idem_t *record, uint64_t *replaced_row_bytes) {
    PGconn *conn = pg_tx_conn(tx);
    record->row_bytes = idem_row_bytes(key_id, idempotency_key, record->body_bytes);
    char hash[2 * STORE_API_HASH_BYTES + 3], status_text[16], created[24], row_bytes[24];
    pg_bytea_text(record->request_hash, STORE_API_HASH_BYTES, hash);
    snprintf(status_text, sizeof status_text, "%d", record->http_status);
    snprintf(created, sizeof created, "%" PRIu64, record->created_ns);
    snprintf(row_bytes, sizeof row_bytes, "%" PRIu64, record->row_bytes);
    char *body = malloc(record->body_bytes + 1); /* the record's body need not end in NUL */
    if (body == NULL) return PC_NO_MEMORY;
    memcpy(body, record->body, record->body_bytes);
    body[record->body_bytes] = '\0';
    const char *params[] = {key_id, idempotency_key, hash, status_text, body, created, row_bytes};
    /* One round trip: the WITH's select reads the row as it was before the insert
     * (every part of a statement sees the same snapshot). */
    PGresult *result = pg_query(conn, "WITH replaced AS (SELECT row_bytes FROM idempotency_keys WHERE key_id = $1"
                                      " AND idempotency_key = $2) INSERT INTO idempotency_keys(key_id,"
                                      " idempotency_key, request_hash, status, body, created_ns, row_bytes)"
                                      " VALUES($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (key_id, idempotency_key) DO"
                                      " UPDATE SET request_hash = excluded.request_hash, status = excluded.status,"
                                      " body = excluded.body, created_ns = excluded.created_ns, row_bytes ="
                                      " excluded.row_bytes RETURNING (SELECT row_bytes FROM replaced)", 7, params);
    free(body);
    if (result == NULL) return PC_STORE_COMMIT_FAILED;
    *replaced_row_bytes = PQntuples(result) == 1 ? (uint64_t)pg_int(result, 0, 0) : 0; /* null: none replaced */
    PQclear(result);
    return PC_OK;
}

/* Deletes the oldest rows (at most 'rows_max', and past the first at most 'bytes_max'
 * of them, by their running sum in age order) in one statement: the purge must keep
 * up with the rate replies are stored, a round trip a row would not. */
static pc_status pg_api_idem_purge(store_tx_t *tx, uint64_t before_ns, uint32_t rows_max, uint64_t bytes_max,
                                   store_api_idem_purged_fn fn, void *ctx) {
    PC_ASSERT(rows_max > 0 && rows_max <= API_IDEM_PURGE_ROWS_MAX);
    PGconn *conn = pg_tx_conn(tx);
    char before[24], limit[16], bytes[24];
    snprintf(before, sizeof before, "%" PRIu64, before_ns);
    snprintf(limit, sizeof limit, "%u", rows_max);
    snprintf(bytes, sizeof bytes, "%" PRIu64, bytes_max);
    const char *params[] = {before, limit, bytes};
    PGresult *purged = pg_query(conn, "WITH oldest AS (SELECT key_id, idempotency_key, row_bytes, created_ns FROM"
                                      " idempotency_keys WHERE created_ns < $1 ORDER BY created_ns LIMIT $2),"
                                      " victims AS (SELECT key_id, idempotency_key, row_number() OVER w AS n,"
                                      " sum(row_bytes) OVER w AS running FROM oldest WINDOW w AS (ORDER BY"
                                      " created_ns, key_id, idempotency_key))"
                                      " DELETE FROM idempotency_keys k USING victims v WHERE k.key_id = v.key_id"
                                      " AND k.idempotency_key = v.idempotency_key AND (v.n = 1 OR v.running <= $3)"
                                      " RETURNING k.key_id, k.idempotency_key, k.row_bytes", 3, params);
    if (purged == NULL) return PC_STORE_COMMIT_FAILED;
    for (int row = 0; row < PQntuples(purged); row++) {
        fn(PQgetvalue(purged, row, 0), PQgetvalue(purged, row, 1), (uint64_t)pg_int(purged, row, 2), ctx);
    }
    PQclear(purged);
    return PC_OK;
}

#define IDEM_KEYS_PAGE_ROWS 10000 /* a page of keys in memory at a time, not the whole table */

/* Each row of a page to 'fn'; false when it stopped the scan. */
static bool idem_keys_page(const PGresult *result, int rows, store_api_idem_key_fn fn, void *ctx) {
    for (int row = 0; row < rows; row++) {
        if (!fn(PQgetvalue(result, row, 0), PQgetvalue(result, row, 1), (uint64_t)pg_int(result, row, 2), ctx)) {
            return false;
        }
    }
    return true;
}

/* In key order, a page at a time (the primary key's index; each page after the last key). */
static pc_status pg_api_idem_keys(store_reader_t *reader, store_api_idem_key_fn fn, void *ctx) {
    char after_id[PC_ID_SIZE] = "", after_key[API_IDEMPOTENCY_KEY_BYTES_MAX + 1] = "", limit[16];
    snprintf(limit, sizeof limit, "%d", IDEM_KEYS_PAGE_ROWS);
    for (;;) {
        const char *params[] = {after_id, after_key, limit};
        PGresult *result = pg_query(pg_reader_conn(reader), "SELECT key_id, idempotency_key, row_bytes FROM"
                                    " idempotency_keys WHERE (key_id, idempotency_key) > ($1, $2)"
                                    " ORDER BY key_id, idempotency_key LIMIT $3", 3, params);
        if (result == NULL) return PC_STORE_READ_FAILED;
        int rows = PQntuples(result);
        bool going = idem_keys_page(result, rows, fn, ctx);
        if (going && rows > 0) {
            snprintf(after_id, sizeof after_id, "%s", PQgetvalue(result, rows - 1, 0));
            snprintf(after_key, sizeof after_key, "%s", PQgetvalue(result, rows - 1, 1));
        }
        PQclear(result);
        if (!going) return PC_SHUTTING_DOWN;
        if (rows < IDEM_KEYS_PAGE_ROWS) return PC_OK;
    }
}

const store_api_ops_t store_pg_api_ops = {
    .key_insert = pg_api_key_insert,
    .key_revoke = pg_api_key_revoke,
    .keys_list = pg_api_keys_list,
    .grant_insert = pg_api_grant_insert,
    .grant_exists = pg_api_grant_exists,
    .grants_list = pg_api_grants_list,
    .idem_get = pg_api_idem_get,
    .idem_put = pg_api_idem_put,
    .idem_purge = pg_api_idem_purge,
    .idem_keys = pg_api_idem_keys,
};
