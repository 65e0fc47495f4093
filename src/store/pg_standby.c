/* store/pg_standby.c: a standby's own reads of the shards (store_standby.h). Each
 * shard has a pool of read-only connections: a read takes one (or opens one), runs
 * one statement and gives it back; a connection whose statement failed is closed, so
 * a shard's restart costs one failed read, not a broken pool. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ledger/ledger.h"
#include "store/pg_internal.h"
#include "store/store_shard.h"
#include "store/store_standby.h"

typedef struct {
    char *url;
    PGconn **idle;
    uint32_t idle_count;
    uint32_t idle_capacity;
} standby_shard_t;

struct store_standby {
    pthread_mutex_t mutex;
    standby_shard_t *shards;
    uint32_t count;
};

pc_status store_standby_open(store_standby_t **out, const char *const *urls, uint32_t count) {
    store_standby_t *standby = calloc(1, sizeof *standby);
    if (standby == NULL) return PC_NO_MEMORY;
    standby->shards = calloc(count, sizeof *standby->shards);
    pthread_mutex_init(&standby->mutex, NULL);
    bool ok = standby->shards != NULL;
    for (uint32_t i = 0; ok && i < count; i++) {
        standby->shards[i].url = pc_strdup(urls[i]);
        ok = standby->shards[i].url != NULL;
        standby->count = i + 1;
    }
    if (!ok) {
        store_standby_close(standby);
        return PC_NO_MEMORY;
    }
    *out = standby;
    return PC_OK;
}

void store_standby_close(store_standby_t *standby) {
    if (standby == NULL) return;
    for (uint32_t i = 0; i < standby->count; i++) {
        for (uint32_t j = 0; j < standby->shards[i].idle_count; j++) PQfinish(standby->shards[i].idle[j]);
        free(standby->shards[i].idle);
        free(standby->shards[i].url);
    }
    free(standby->shards);
    pthread_mutex_destroy(&standby->mutex);
    free(standby);
}

static PGconn *conn_take(store_standby_t *standby, uint32_t shard) {
    standby_shard_t *s = &standby->shards[shard];
    PGconn *conn = NULL;
    pthread_mutex_lock(&standby->mutex);
    if (s->idle_count > 0) conn = s->idle[--s->idle_count];
    pthread_mutex_unlock(&standby->mutex);
    if (conn != NULL) return conn;
    char detail[400];
    if (pg_connect(s->url, &conn, detail, sizeof detail) != PC_OK) {
        pg_log_error("standby read: cannot connect", pc_status_code(PC_STORE_READ_FAILED), detail);
        return NULL;
    }
    if (!pg_exec_ok(conn, "SET default_transaction_read_only = on")) {
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

/* Back to the pool after a statement that worked; closed after one that failed. */
static void conn_give_back(store_standby_t *standby, uint32_t shard, PGconn *conn, bool worked) {
    standby_shard_t *s = &standby->shards[shard];
    if (worked) {
        pthread_mutex_lock(&standby->mutex);
        if (s->idle_count == s->idle_capacity) {
            uint32_t capacity = s->idle_capacity < 8 ? 8 : s->idle_capacity * 2;
            PGconn **grown = realloc(s->idle, capacity * sizeof *grown);
            if (grown != NULL) s->idle = grown, s->idle_capacity = capacity;
        }
        if (s->idle_count < s->idle_capacity) s->idle[s->idle_count++] = conn, conn = NULL;
        pthread_mutex_unlock(&standby->mutex);
    }
    if (conn != NULL) PQfinish(conn);
}

/* One statement on a pooled connection of 'shard': its result, or NULL (logged). */
static PGresult *standby_query(store_standby_t *standby, uint32_t shard, const char *sql, int param_count,
                               const char *const *params) {
    if (shard >= standby->count) return NULL;
    PGconn *conn = conn_take(standby, shard);
    if (conn == NULL) return NULL;
    PGresult *result = pg_query(conn, sql, param_count, params);
    if (result == NULL) {
        char line[300];
        pg_log_error("standby read failed", pc_status_code(PC_STORE_READ_FAILED),
                     pg_error_line(conn, line, sizeof line));
    }
    conn_give_back(standby, shard, conn, result != NULL);
    return result;
}

pc_status store_standby_key_find(store_standby_t *standby, const uint8_t key_hash[STORE_API_HASH_BYTES],
                                 store_api_key_t *out) {
    char hash_text[2 * STORE_API_HASH_BYTES + 3];
    pg_bytea_text(key_hash, STORE_API_HASH_BYTES, hash_text);
    const char *params[] = {hash_text};
    PGresult *result = standby_query(standby, 0, "SELECT id, scope, name, created_ns, revoked_ns FROM api_keys"
                                                 " WHERE key_hash = $1::bytea", 1, params);
    if (result == NULL) return PC_STORE_READ_FAILED;
    pc_status status = PQntuples(result) == 1 ? PC_OK : PC_NOT_FOUND;
    if (status == PC_OK) {
        memset(out, 0, sizeof *out);
        pg_text_copy(out->id, sizeof out->id, result, 0, 0);
        pg_text_copy(out->scope, sizeof out->scope, result, 0, 1);
        pg_text_copy(out->name, sizeof out->name, result, 0, 2);
        memcpy(out->key_hash, key_hash, STORE_API_HASH_BYTES);
        out->created_ns = (uint64_t)pg_int(result, 0, 3);
        out->revoked_ns = (uint64_t)pg_int(result, 0, 4);
    }
    PQclear(result);
    return status;
}

pc_status store_standby_grant_exists(store_standby_t *standby, uint32_t shard, const char *key_id,
                                     const char *account_id, bool *exists) {
    const char *params[] = {key_id, account_id};
    PGresult *result = standby_query(standby, shard, "SELECT 1 FROM account_grants WHERE key_id = $1 AND"
                                                     " account_id = $2", 2, params);
    *exists = false;
    if (result == NULL) return PC_STORE_READ_FAILED;
    *exists = PQntuples(result) > 0;
    PQclear(result);
    return PC_OK;
}

/* The account row (its balance snapshot) plus what each transfer committed after the
 * snapshot did to it, as ledger_load_replay does: a post or a void takes its pending
 * transfer's amount off pending (a post adds its own amount to posted), a pending
 * transfer adds to pending, any other to posted. The transfers after the snapshot are
 * found by timestamp (an index range: a batch's timestamps are above every earlier
 * batch's) and kept by batch_seq. */
static const char standby_account_sql[] =
    "WITH m AS (SELECT value::bigint AS as_of FROM paycore_meta WHERE key = 'accounts_as_of_seq'),"
    " b AS (SELECT m.as_of, coalesce((SELECT j.timestamp_last FROM journal j WHERE j.seq = m.as_of), 0)"
    "   AS after_ts FROM m),"
    " t AS (SELECT t.flags, t.amount, p.amount AS pending_amount, true AS debit"
    "   FROM b, transfers t LEFT JOIN transfers p ON p.id = t.pending_id"
    "   WHERE t.debit_account_id = $1 AND t.timestamp > b.after_ts AND t.batch_seq > b.as_of"
    "   UNION ALL SELECT t.flags, t.amount, p.amount, false"
    "   FROM b, transfers t LEFT JOIN transfers p ON p.id = t.pending_id"
    "   WHERE t.credit_account_id = $1 AND t.timestamp > b.after_ts AND t.batch_seq > b.as_of),"
    /* $2: a post's flag, $3: a void's, $4: a pending transfer's */
    " d AS (SELECT debit, CASE WHEN flags & ($2::integer | $3::integer) <> 0 THEN -pending_amount"
    "   WHEN flags & $4::integer <> 0 THEN amount ELSE 0 END AS pending,"
    "   CASE WHEN flags & $2::integer <> 0 THEN amount WHEN flags & ($3::integer | $4::integer) <> 0 THEN 0"
    "   ELSE amount END AS posted, pending_amount IS NULL AND flags & ($2::integer | $3::integer) <> 0"
    "   AS orphan FROM t)"
    " SELECT a.id, a.currency, a.code, a.flags,"
    "  (a.debits_pending + coalesce((SELECT sum(pending) FROM d WHERE debit), 0))::bigint,"
    "  (a.debits_posted + coalesce((SELECT sum(posted) FROM d WHERE debit), 0))::bigint,"
    "  (a.credits_pending + coalesce((SELECT sum(pending) FROM d WHERE NOT debit), 0))::bigint,"
    "  (a.credits_posted + coalesce((SELECT sum(posted) FROM d WHERE NOT debit), 0))::bigint,"
    "  a.timestamp, a.metadata, a.no, (SELECT count(*) FROM d WHERE orphan) FROM accounts a WHERE a.id = $1";

pc_status store_standby_account(store_standby_t *standby, uint32_t shard, const char *id, store_account_t *out) {
    PG_U64(post, LEDGER_TRANSFER_POST_PENDING);
    PG_U64(void_, LEDGER_TRANSFER_VOID_PENDING);
    PG_U64(pending, LEDGER_TRANSFER_PENDING);
    const char *params[] = {id, post, void_, pending};
    PGresult *result = standby_query(standby, shard, standby_account_sql, 4, params);
    if (result == NULL) return PC_STORE_READ_FAILED;
    pc_status status = PQntuples(result) == 1 ? PC_OK : PC_NOT_FOUND;
    if (status == PC_OK && pg_int(result, 0, 11) != 0) {
        pg_log_error("standby read: a post or void after the snapshot names no pending transfer",
                     pc_status_code(PC_STORE_CORRUPT), id);
        status = PC_STORE_READ_FAILED; /* the writer's load would refuse the same rows */
    }
    if (status == PC_OK) {
        pg_account_from_row(result, 0, &out->account);
        out->metadata_owned = pc_strdup(out->account.metadata_json);
        out->account.metadata_json = out->metadata_owned;
    }
    PQclear(result);
    return status;
}

pc_status store_standby_transfer(store_standby_t *standby, uint32_t shard, const char *id, store_transfer_t *out) {
    const char *params[] = {id};
    PGresult *result = standby_query(standby, shard, "SELECT " PG_TRANSFER_COLUMNS " FROM transfers WHERE id = $1",
                                     1, params);
    if (result == NULL) return PC_STORE_READ_FAILED;
    pc_status status = PQntuples(result) == 1 ? PC_OK : PC_NOT_FOUND;
    if (status == PC_OK) {
        pg_transfer_from_row(result, 0, &out->transfer);
        out->pending_state = (ledger_pending_state)pg_int(result, 0, 11);
        out->metadata_owned = pc_strdup(out->transfer.metadata_json);
        out->transfer.metadata_json = out->metadata_owned;
    }
    PQclear(result);
    return status;
}
