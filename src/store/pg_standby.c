/* store/pg_standby.c: a standby's own reads of the shards (store_standby.h). Each
 * shard has a pool of read-only connections, at most STORE_STANDBY_CONNECTIONS_MAX
 * (the shards' servers have other clients: the writers, the other nodes): a read
 * takes one (opens one, or waits for one), runs one statement and gives it back; a
 * connection whose statement failed is closed, so a shard's restart costs one failed
 * read, not a broken pool. */
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
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
    uint32_t open_count;   /* idle and in use */
    int64_t after_ts_floor; /* the last snapshot batch's last timestamp read (SQL_ACCOUNT) */
} standby_shard_t;

struct store_standby {
    pthread_mutex_t mutex;
    pthread_cond_t given_back;
    standby_shard_t *shards;
    uint32_t count;
    bool cursor_keyed;            /* the set's list cursor key, read once from shard 0 */
    uint8_t cursor_key[STORE_CURSOR_KEY_BYTES];
};

pc_status store_standby_open(store_standby_t **out, const char *const *urls, uint32_t count) {
    store_standby_t *standby = calloc(1, sizeof *standby);
    if (standby == NULL) return PC_NO_MEMORY;
    standby->shards = calloc(count, sizeof *standby->shards);
    pthread_mutex_init(&standby->mutex, NULL);
    pthread_cond_init(&standby->given_back, NULL);
    bool ok = standby->shards != NULL;
    for (uint32_t i = 0; ok && i < count; i++) {
        standby->shards[i].url = pc_strdup(urls[i]);
        standby->shards[i].idle = calloc(STORE_STANDBY_CONNECTIONS_MAX, sizeof(PGconn *));
        ok = standby->shards[i].url != NULL && standby->shards[i].idle != NULL;
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
    pthread_cond_destroy(&standby->given_back);
    pthread_mutex_destroy(&standby->mutex);
    free(standby);
}

/* The account row (its balance snapshot) plus what each transfer committed after the
 * snapshot did to it, as ledger_load_replay does: a post or a void takes its pending
 * transfer's amount off pending (a post adds its own amount to posted), a pending
 * transfer adds to pending, any other to posted. The transfers after the snapshot are
 * those above the last timestamp of the snapshot's batch (j: a batch's timestamps are
 * above every earlier batch's), read in the same statement (one snapshot of the
 * database, so rows and replay agree). To find them by an index range
 * (the account's rows of account_transfers whose last timestamp is above it),
 * $5 is a floor under the snapshot's last timestamp (a batch's timestamps are above
 * every earlier batch's; the newest batch at or below the snapshot that has rows: one
 * without rows, as a snapshot taken while idle may be, records 0): the last such
 * timestamp this node read (column 12), a parameter, not a subquery, so that the
 * planner takes the range and not the account's whole history. Column 13 says the
 * floor was above it (the shard restored from an older copy): read again from 0. */
#define STANDBY_PENDING_DELTA                                                                       \
    "CASE WHEN t.flags & ($2::integer | $3::integer) <> 0 THEN -t.pending_amount"                  \
    " WHEN t.flags & $4::integer <> 0 THEN t.amount ELSE 0 END"
#define STANDBY_POSTED_DELTA                                                                        \
    "CASE WHEN t.flags & $2::integer <> 0 THEN t.amount"                                           \
    " WHEN t.flags & ($3::integer | $4::integer) <> 0 THEN 0 ELSE t.amount END"
/* $2: a post's flag, $3: a void's, $4: a pending transfer's */
#define STANDBY_ACCOUNT_WITH                                                                        \
    "WITH m AS MATERIALIZED (SELECT value::bigint AS as_of FROM paycore_meta WHERE key = 'accounts_as_of_seq')," \
    " n AS MATERIALIZED (SELECT no FROM accounts WHERE id = $1)," \
    " j AS MATERIALIZED (SELECT coalesce((SELECT timestamp_last FROM journal WHERE seq <= (SELECT as_of FROM m)" \
    "   AND timestamp_last > 0 ORDER BY seq DESC LIMIT 1), 0) AS after_ts)," \
    " t AS (SELECT t.flags, t.amount, p.amount AS pending_amount, t.debit_no = n.no AS debit" \
    "   FROM j, n, account_transfers e, unnest(" PG_ACCOUNT_ROW_TIMESTAMPS("e") ") AS u(ts)" \
    "   JOIN transfers t ON t.timestamp = u.ts LEFT JOIN transfers p ON p.id = t.pending_id" \
    "   WHERE e.account_no = n.no AND e.timestamp_last > $5::bigint AND u.ts > $5::bigint" \
    "   AND u.ts > j.after_ts)," \
    " s AS (SELECT coalesce(sum(" STANDBY_PENDING_DELTA ") FILTER (WHERE t.debit), 0) AS dp," \
    "   coalesce(sum(" STANDBY_POSTED_DELTA ") FILTER (WHERE t.debit), 0) AS dd," \
    "   coalesce(sum(" STANDBY_PENDING_DELTA ") FILTER (WHERE NOT t.debit), 0) AS cp," \
    "   coalesce(sum(" STANDBY_POSTED_DELTA ") FILTER (WHERE NOT t.debit), 0) AS cd," \
    "   count(*) FILTER (WHERE t.pending_amount IS NULL AND t.flags & ($2::integer | $3::integer) <> 0) AS orphans" \
    "   FROM t)"
#define STANDBY_ACCOUNT_COLUMNS                                                                     \
    " SELECT a.id, a.currency, a.code, a.flags, (a.debits_pending + s.dp)::bigint,"                \
    "  (a.debits_posted + s.dd)::bigint, (a.credits_pending + s.cp)::bigint, (a.credits_posted + s.cd)::bigint," \
    "  a.timestamp, a.metadata, a.no, s.orphans, j.after_ts, $5::bigint > j.after_ts"
static const char standby_account_sql[] = STANDBY_ACCOUNT_WITH STANDBY_ACCOUNT_COLUMNS
    " FROM accounts a, s, j WHERE a.id = $1";
/* The same on shard 0 with the key whose hash is $6 (columns 14-18) and whether it was
 * granted the account (19): a read of an account there is one round trip. No row when
 * either is missing. */
static const char standby_key_account_sql[] = STANDBY_ACCOUNT_WITH STANDBY_ACCOUNT_COLUMNS
    ", k.id, k.scope, k.name, k.created_ns, k.revoked_ns,"
    "  EXISTS (SELECT 1 FROM account_grants g WHERE g.key_id = k.id AND g.account_id = $1)"
    " FROM accounts a, s, j, api_keys k WHERE a.id = $1 AND k.key_hash = $6::bytea";
#define STANDBY_KEY_COLUMN_FIRST 14

/* The statements, prepared on each connection once: planning costs more than running
 * them, and with the floor a parameter the generic plan takes the index range too. */
/* A transfer (or leg) on shard 0 with the key whose hash is $2 (columns 12-16) and
 * whether the key was granted one of the leg's accounts (17): one row when the key
 * exists, the transfer's columns NULL when shard 0 does not hold it. */
static const char standby_key_transfer_sql[] =
    "SELECT x.*, k.id, k.scope, k.name, k.created_ns, k.revoked_ns, x.id IS NOT NULL AND EXISTS (SELECT 1 FROM"
    " account_grants g WHERE g.key_id = k.id AND g.account_id IN (x.debit_id, x.credit_id))"
    " FROM api_keys k LEFT JOIN LATERAL (SELECT t.timestamp, t.id, d.id AS debit_id, c.id AS credit_id, t.amount,"
    " t.currency, t.code, t.flags, t.pending_id, t.timeout_s, t.metadata, t.pending_state FROM " PG_TRANSFERS_FROM
    " WHERE t.id = $1) x ON true WHERE k.key_hash = $2::bytea";
#define STANDBY_TRANSFER_KEY_COLUMN_FIRST 12

enum { SQL_KEY, SQL_GRANT, SQL_ACCOUNT, SQL_KEY_ACCOUNT, SQL_TRANSFER, SQL_KEY_TRANSFER, SQL_HEAD, SQL_COUNT };
static const char *const statement_names[SQL_COUNT] = {"standby_key", "standby_grant", "standby_account",
                                                       "standby_key_account", "standby_transfer",
                                                       "standby_key_transfer", "standby_head"};
static const char *statement_sql(int statement) {
    switch (statement) {
    case SQL_KEY: return "SELECT id, scope, name, created_ns, revoked_ns FROM api_keys WHERE key_hash = $1::bytea";
    case SQL_GRANT: return "SELECT 1 FROM account_grants WHERE key_id = $1 AND account_id = $2";
    case SQL_ACCOUNT: return standby_account_sql;
    case SQL_KEY_ACCOUNT: return standby_key_account_sql;
    case SQL_KEY_TRANSFER: return standby_key_transfer_sql;
    case SQL_HEAD:
        return "SELECT coalesce(max(seq), 0), coalesce((SELECT string_agg(gid, ' ') FROM pg_prepared_xacts"
               " WHERE database = current_database() AND gid LIKE 'pc\\_%'), '') FROM journal";
    default: return "SELECT " PG_TRANSFER_COLUMNS " FROM " PG_TRANSFERS_FROM " WHERE t.id = $1";
    }
}

static PGconn *conn_open(const char *url) {
    PGconn *conn = NULL;
    char detail[400];
    if (pg_connect(url, &conn, detail, sizeof detail) != PC_OK) {
        pg_log_error("standby read: cannot connect", pc_status_code(PC_STORE_READ_FAILED), detail);
        return NULL;
    }
    bool ok = pg_exec_ok(conn, "SET default_transaction_read_only = on");
    for (int i = 0; ok && i < SQL_COUNT; i++) {
        PGresult *result = PQprepare(conn, statement_names[i], statement_sql(i), 0, NULL);
        ok = PQresultStatus(result) == PGRES_COMMAND_OK;
        if (!ok) {
            char line[300];
            pg_log_error("standby read: cannot prepare", pc_status_code(PC_STORE_READ_FAILED),
                         pg_error_line(conn, line, sizeof line));
        }
        PQclear(result);
    }
    if (!ok) {
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

/* An idle connection, or a new one while under the bound (else waits for one). */
static PGconn *conn_take(store_standby_t *standby, uint32_t shard) {
    standby_shard_t *s = &standby->shards[shard];
    PGconn *conn = NULL;
    pthread_mutex_lock(&standby->mutex);
    while (s->idle_count == 0 && s->open_count >= STORE_STANDBY_CONNECTIONS_MAX) {
        pthread_cond_wait(&standby->given_back, &standby->mutex);
    }
    if (s->idle_count > 0) conn = s->idle[--s->idle_count];
    else s->open_count++; /* a place taken for the one opened below */
    pthread_mutex_unlock(&standby->mutex);
    if (conn != NULL) return conn;
    conn = conn_open(s->url);
    if (conn == NULL) {
        pthread_mutex_lock(&standby->mutex);
        s->open_count--;
        pthread_cond_broadcast(&standby->given_back);
        pthread_mutex_unlock(&standby->mutex);
    }
    return conn;
}

/* Back to the pool after a statement that worked; closed after one that failed. */
static void conn_give_back(store_standby_t *standby, uint32_t shard, PGconn *conn, bool worked) {
    standby_shard_t *s = &standby->shards[shard];
    pthread_mutex_lock(&standby->mutex);
    if (worked) s->idle[s->idle_count++] = conn;
    else s->open_count--;
    pthread_cond_broadcast(&standby->given_back);
    pthread_mutex_unlock(&standby->mutex);
    if (!worked) PQfinish(conn);
}

/* A statement sent on a pooled connection of 'shard' and not answered yet: several
 * run at once on different shards' servers (call_send, then call_result). */
typedef struct {
    uint32_t shard;
    PGconn *conn;
} standby_call_t;

static bool call_send(store_standby_t *standby, standby_call_t *call, uint32_t shard, int statement,
                      int param_count, const char *const *params) {
    call->shard = shard;
    call->conn = shard < standby->count ? conn_take(standby, shard) : NULL;
    if (call->conn == NULL) return false;
    if (PQsendQueryPrepared(call->conn, statement_names[statement], param_count, params, NULL, NULL, 0) == 1) {
        return true;
    }
    char line[300];
    pg_log_error("standby read failed", pc_status_code(PC_STORE_READ_FAILED),
                 pg_error_line(call->conn, line, sizeof line));
    conn_give_back(standby, shard, call->conn, false);
    call->conn = NULL;
    return false;
}

/* The sent statement's rows, or NULL (logged); the connection goes back to the pool
 * (closed when it failed). */
static PGresult *call_result(store_standby_t *standby, standby_call_t *call) {
    if (call->conn == NULL) return NULL;
    PGresult *result = NULL, *next;
    while ((next = PQgetResult(call->conn)) != NULL) {
        if (result == NULL) result = next;
        else PQclear(next);
    }
    if (result != NULL && PQresultStatus(result) != PGRES_TUPLES_OK) {
        PQclear(result);
        result = NULL;
    }
    if (result == NULL) {
        char line[300];
        pg_log_error("standby read failed", pc_status_code(PC_STORE_READ_FAILED),
                     pg_error_line(call->conn, line, sizeof line));
    }
    conn_give_back(standby, call->shard, call->conn, result != NULL);
    call->conn = NULL;
    return result;
}

/* One statement on a pooled connection of 'shard': its result, or NULL (logged). */
static PGresult *standby_query(store_standby_t *standby, uint32_t shard, int statement, int param_count,
                               const char *const *params) {
    standby_call_t call;
    if (!call_send(standby, &call, shard, statement, param_count, params)) return NULL;
    return call_result(standby, &call);
}

/* The key of row 'row' from column 'first' on (id, scope, name, created_ns, revoked_ns). */
static void key_from_row(PGresult *result, int row, int first, const uint8_t key_hash[STORE_API_HASH_BYTES],
                         store_api_key_t *out) {
    memset(out, 0, sizeof *out);
    pg_text_copy(out->id, sizeof out->id, result, row, first);
    pg_text_copy(out->scope, sizeof out->scope, result, row, first + 1);
    pg_text_copy(out->name, sizeof out->name, result, row, first + 2);
    memcpy(out->key_hash, key_hash, STORE_API_HASH_BYTES);
    out->created_ns = (uint64_t)pg_int(result, row, first + 3);
    out->revoked_ns = (uint64_t)pg_int(result, row, first + 4);
}

pc_status store_standby_key_find(store_standby_t *standby, const uint8_t key_hash[STORE_API_HASH_BYTES],
                                 store_api_key_t *out) {
    char hash_text[2 * STORE_API_HASH_BYTES + 3];
    pg_bytea_text(key_hash, STORE_API_HASH_BYTES, hash_text);
    const char *params[] = {hash_text};
    PGresult *result = standby_query(standby, 0, SQL_KEY, 1, params);
    if (result == NULL) return PC_STORE_READ_FAILED;
    pc_status status = PQntuples(result) == 1 ? PC_OK : PC_NOT_FOUND;
    if (status == PC_OK) key_from_row(result, 0, 0, key_hash, out);
    PQclear(result);
    return status;
}

pc_status store_standby_grant_exists(store_standby_t *standby, uint32_t shard, const char *key_id,
                                     const char *account_id, bool *exists) {
    const char *params[] = {key_id, account_id};
    PGresult *result = standby_query(standby, shard, SQL_GRANT, 2, params);
    *exists = false;
    if (result == NULL) return PC_STORE_READ_FAILED;
    *exists = PQntuples(result) > 0;
    PQclear(result);
    return PC_OK;
}

/* What one read of an account asks: its shard and id, and with 'key_hash' the key
 * (shard 0) read with it; what it found. */
typedef struct {
    uint32_t shard;
    const char *id;
    const uint8_t *key_hash;    /* NULL: the account alone */
    store_account_t *account;
    store_api_key_t *key;
    bool *granted;              /* set when the key's grant was read too (shard 0) */
} account_read_t;

/* The account of SQL_ACCOUNT's (or SQL_KEY_ACCOUNT's) one row into 'out'; notes the
 * floor it read. */
static pc_status account_take(store_standby_t *standby, const account_read_t *read, PGresult *result) {
    if (pg_int(result, 0, 11) != 0) {
        pg_log_error("standby read: a post or void after the snapshot names no pending transfer",
                     pc_status_code(PC_STORE_CORRUPT), read->id);
        return PC_STORE_READ_FAILED; /* the writer's load would refuse the same rows */
    }
    pg_account_from_row(result, 0, &read->account->account);
    read->account->metadata_owned = pc_strdup(read->account->account.metadata_json);
    read->account->account.metadata_json = read->account->metadata_owned;
    pthread_mutex_lock(&standby->mutex);
    int64_t after_ts = pg_int(result, 0, 12);
    if (after_ts > standby->shards[read->shard].after_ts_floor) standby->shards[read->shard].after_ts_floor = after_ts;
    pthread_mutex_unlock(&standby->mutex);
    return PC_OK;
}

/* One try with the shard's floor 'floor_ts': on shard 0 with a key, one statement;
 * else the account's on its shard and the key's on shard 0 at once (shard 0's
 * connection taken last: no read holds one of shard 0's while it waits for another
 * shard's, so two reads never wait for each other's). *floor_too_high
 * when the database says the floor was above the snapshot's (nothing taken then). */
static pc_status account_try(store_standby_t *standby, const account_read_t *read, int64_t floor_ts,
                             bool *floor_too_high) {
    PG_U64(post, LEDGER_TRANSFER_POST_PENDING);
    PG_U64(void_, LEDGER_TRANSFER_VOID_PENDING);
    PG_U64(pending, LEDGER_TRANSFER_PENDING);
    PG_U64(floor_text, floor_ts);
    char hash_text[2 * STORE_API_HASH_BYTES + 3] = "";
    if (read->key_hash != NULL) pg_bytea_text(read->key_hash, STORE_API_HASH_BYTES, hash_text);
    const char *params[] = {read->id, post, void_, pending, floor_text, hash_text};
    bool folded = read->key_hash != NULL && read->shard == 0;
    bool apart = read->key_hash != NULL && !folded;
    standby_call_t account_call, key_call = {0};
    bool sent = call_send(standby, &account_call, read->shard, folded ? SQL_KEY_ACCOUNT : SQL_ACCOUNT,
                          folded ? 6 : 5, params);
    bool key_sent = apart && call_send(standby, &key_call, 0, SQL_KEY, 1, (const char *const[]){hash_text});
    PGresult *result = sent ? call_result(standby, &account_call) : NULL;
    PGresult *key_result = key_sent ? call_result(standby, &key_call) : NULL;
    pc_status status = result == NULL || (apart && key_result == NULL) ? PC_STORE_READ_FAILED : PC_OK;
    if (status == PC_OK && (PQntuples(result) != 1 || (apart && PQntuples(key_result) != 1))) status = PC_NOT_FOUND;
    *floor_too_high = status == PC_OK && strcmp(PQgetvalue(result, 0, 13), "t") == 0;
    if (status == PC_OK && !*floor_too_high) status = account_take(standby, read, result);
    if (status == PC_OK && !*floor_too_high && read->key_hash != NULL) {
        key_from_row(folded ? result : key_result, 0, folded ? STANDBY_KEY_COLUMN_FIRST : 0, read->key_hash,
                     read->key);
        if (folded) *read->granted = strcmp(PQgetvalue(result, 0, STANDBY_KEY_COLUMN_FIRST + 5), "t") == 0;
    }
    PQclear(result);
    PQclear(key_result);
    return status;
}

/* The read with the shard's floor; once more from 0 when the floor was too high. */
static pc_status account_read(store_standby_t *standby, const account_read_t *read) {
    if (read->shard >= standby->count) return PC_STORE_READ_FAILED;
    pthread_mutex_lock(&standby->mutex);
    int64_t floor_ts = standby->shards[read->shard].after_ts_floor;
    pthread_mutex_unlock(&standby->mutex);
    bool floor_too_high = false;
    pc_status status = account_try(standby, read, floor_ts, &floor_too_high);
    if (status == PC_OK && floor_too_high) {
        pthread_mutex_lock(&standby->mutex);
        standby->shards[read->shard].after_ts_floor = 0;
        pthread_mutex_unlock(&standby->mutex);
        status = account_try(standby, read, 0, &floor_too_high);
    }
    return status;
}

pc_status store_standby_account(store_standby_t *standby, uint32_t shard, const char *id, store_account_t *out) {
    return account_read(standby, &(account_read_t){.shard = shard, .id = id, .account = out});
}

pc_status store_standby_key_account(store_standby_t *standby, const uint8_t key_hash[STORE_API_HASH_BYTES],
                                    uint32_t shard, const char *id, store_api_key_t *key, store_account_t *out,
                                    bool *granted, bool *granted_known) {
    *granted = false;
    *granted_known = shard == 0;
    return account_read(standby, &(account_read_t){shard, id, key_hash, out, key, granted});
}

pc_status store_standby_transfer(store_standby_t *standby, uint32_t shard, const char *id, store_transfer_t *out) {
    const char *params[] = {id};
    PGresult *result = standby_query(standby, shard, SQL_TRANSFER, 1, params);
    if (result == NULL) return PC_STORE_READ_FAILED;
    return pg_transfer_result_take(result, out);
}

pc_status store_standby_key_transfer(store_standby_t *standby, const uint8_t key_hash[STORE_API_HASH_BYTES],
                                     const char *id, store_api_key_t *key, store_transfer_t *out, bool *found,
                                     bool *granted) {
    char hash_text[2 * STORE_API_HASH_BYTES + 3];
    pg_bytea_text(key_hash, STORE_API_HASH_BYTES, hash_text);
    const char *params[] = {id, hash_text};
    *found = *granted = false;
    PGresult *result = standby_query(standby, 0, SQL_KEY_TRANSFER, 2, params);
    if (result == NULL) return PC_STORE_READ_FAILED;
    pc_status status = PQntuples(result) == 1 ? PC_OK : PC_NOT_FOUND;
    if (status == PC_OK) {
        key_from_row(result, 0, STANDBY_TRANSFER_KEY_COLUMN_FIRST, key_hash, key);
        *found = !PQgetisnull(result, 0, 1);
        *granted = strcmp(PQgetvalue(result, 0, STANDBY_TRANSFER_KEY_COLUMN_FIRST + 5), "t") == 0;
    }
    if (status == PC_OK && *found) pg_transfer_row_take(result, 0, out);
    PQclear(result);
    return status;
}

pc_status store_standby_transfers(store_standby_t *standby, uint32_t first_shard, const char *id,
                                  store_transfer_t *out, pc_status *statuses) {
    standby_call_t calls[SHARD_COUNT_MAX];
    const char *params[] = {id};
    bool sent[SHARD_COUNT_MAX] = {false};
    /* connections taken from the last shard down, as every read taking several does */
    for (uint32_t i = standby->count; i-- > first_shard;) {
        sent[i] = call_send(standby, &calls[i], i, SQL_TRANSFER, 1, params);
    }
    pc_status status = PC_OK;
    for (uint32_t i = first_shard; i < standby->count; i++) {
        PGresult *result = sent[i] ? call_result(standby, &calls[i]) : NULL;
        statuses[i] = result != NULL ? pg_transfer_result_take(result, &out[i]) : PC_STORE_READ_FAILED;
        if (statuses[i] == PC_STORE_READ_FAILED) status = PC_STORE_READ_FAILED;
    }
    return status;
}

/* A list on a pooled connection of 'shard' (the reader's statements); the connection
 * is closed when a statement failed. */
pc_status store_standby_list_account_transfers(store_standby_t *standby, uint32_t shard, const char *account_id,
                                               const store_query_t *query, store_transfer_fn fn, void *ctx,
                                               bool *has_more) {
    PGconn *conn = shard < standby->count ? conn_take(standby, shard) : NULL;
    if (conn == NULL) return PC_STORE_READ_FAILED;
    pc_status status = pg_conn_list_account_transfers(conn, account_id, query, fn, ctx, has_more);
    conn_give_back(standby, shard, conn, status != PC_STORE_READ_FAILED);
    return status;
}

pc_status store_standby_list_history(store_standby_t *standby, uint32_t shard, const char *account_id,
                                     const store_query_t *query, store_history_fn fn, void *ctx, bool *has_more) {
    PGconn *conn = shard < standby->count ? conn_take(standby, shard) : NULL;
    if (conn == NULL) return PC_STORE_READ_FAILED;
    pc_status status = pg_conn_list_history(conn, account_id, query, fn, ctx, has_more);
    conn_give_back(standby, shard, conn, status != PC_STORE_READ_FAILED);
    return status;
}

/* ---- a set's lists of accounts (store_shard_list) ---- */

pc_status store_standby_list_as_of(store_standby_t *standby, uint32_t shard, const char *key_id,
                                   const store_query_t *query, uint64_t as_of, store_account_fn fn, void *ctx,
                                   bool *has_more) {
    PGconn *conn = shard < standby->count ? conn_take(standby, shard) : NULL;
    if (conn == NULL) return PC_STORE_READ_FAILED;
    pc_status status = pg_conn_list_as_of(conn, key_id, query, as_of, fn, ctx, has_more);
    conn_give_back(standby, shard, conn, status != PC_STORE_READ_FAILED);
    return status;
}

/* Each shard's head and its prepared global transactions' names (SQL_HEAD's row). */
typedef struct {
    uint64_t head;
    char *prepared;               /* "pc_<gtid>_<shard> ..." */
} shard_head_t;

static bool head_take(PGresult *result, shard_head_t *out) {
    bool ok = result != NULL && PQntuples(result) == 1;
    if (ok) out->head = (uint64_t)pg_int(result, 0, 0);
    if (ok) out->prepared = pc_strdup(PQgetvalue(result, 0, 1));
    PQclear(result);
    return ok && out->prepared != NULL;
}

/* The read fence held shared on shard 0's connection 'conn0' (a transaction's lock:
 * COMMIT or the connection's end releases it), waiting STORE_STANDBY_FENCE_WAIT_MS
 * at most; then shard 0's head and the global transactions decided commit and not
 * done ('log': their rows, gtid and shards). */
static bool fence_and_head(PGconn *conn0, shard_head_t *head0, PGresult **log) {
    char sql[256];
    snprintf(sql, sizeof sql, "BEGIN; SET LOCAL lock_timeout = %d; SELECT pg_advisory_xact_lock_shared(%d, %d)",
             STORE_STANDBY_FENCE_WAIT_MS, PG_WRITER_LOCK_KEY1, PG_FENCE_LOCK_KEY2);
    if (!pg_exec_ok(conn0, sql)) return false;
    if (!head_take(PQexecPrepared(conn0, statement_names[SQL_HEAD], 0, NULL, NULL, NULL, 0), head0)) return false;
    *log = pg_query(conn0, "SELECT gtid, array_to_string(shards, ',') FROM coordinator_log"
                           " WHERE done_ns IS NULL AND decision = 'commit'", 0, NULL);
    return *log != NULL;
}

/* Whether 'names' (space-separated) holds 'name'. */
static bool name_in(const char *names, const char *name) {
    size_t length = strlen(name);
    for (const char *at = strstr(names, name); at != NULL; at = strstr(at + 1, name)) {
        if ((at == names || at[-1] == ' ') && (at[length] == ' ' || at[length] == '\0')) return true;
    }
    return false;
}

/* A global transaction decided commit is prepared on some of its shards and committed
 * on others only when its coordinator died between its COMMIT PREPAREDs (a live one
 * commits every leg while it holds the fence exclusively); recovery, at the next
 * writer's start, finishes it. No cut holds all of it or none of it meanwhile. */
static bool half_committed(PGresult *log, const shard_head_t *heads, uint32_t count) {
    for (int row = 0; row < PQntuples(log); row++) {
        const char *gtid = PQgetvalue(log, row, 0);
        uint32_t prepared = 0, legs = 0;
        for (const char *at = PQgetvalue(log, row, 1); *at != '\0';) {
            char *end = NULL;
            unsigned long shard = strtoul(at, &end, 10);
            if (end == at) break;
            char name[128];
            snprintf(name, sizeof name, "pc_%s_%lu", gtid, shard);
            legs++;
            if (shard < count && name_in(heads[shard].prepared, name)) prepared++;
            at = *end == ',' ? end + 1 : end;
        }
        if (prepared > 0 && prepared < legs) return true;
    }
    return false;
}

pc_status store_standby_cut(store_standby_t *standby, store_cut_t *cut) {
    PGconn *conns[SHARD_COUNT_MAX] = {NULL};
    shard_head_t heads[SHARD_COUNT_MAX] = {{0}};
    PGresult *log = NULL;
    bool ok = true;
    /* every connection first, shard 0's last, as every read taking several does */
    for (uint32_t i = standby->count; ok && i-- > 0;) ok = (conns[i] = conn_take(standby, i)) != NULL;
    ok = ok && fence_and_head(conns[0], &heads[0], &log);
    for (uint32_t i = 1; ok && i < standby->count; i++) {
        ok = PQsendQueryPrepared(conns[i], statement_names[SQL_HEAD], 0, NULL, NULL, NULL, 0) == 1;
    }
    for (uint32_t i = 1; ok && i < standby->count; i++) {
        standby_call_t call = {i, conns[i]};
        conns[i] = NULL;
        ok = head_take(call_result(standby, &call), &heads[i]); /* call_result gives the connection back */
    }
    ok = ok && pg_exec_ok(conns[0], "COMMIT");
    pc_status status = ok ? PC_OK : PC_STORE_READ_FAILED;
    if (ok && half_committed(log, heads, standby->count)) status = PC_STORE_BUSY;
    cut->count = standby->count;
    for (uint32_t i = 0; i < standby->count; i++) {
        cut->seq[i] = heads[i].head;
        free(heads[i].prepared);
        if (conns[i] != NULL) conn_give_back(standby, i, conns[i], ok); /* closed after a failure */
    }
    PQclear(log);
    return status;
}

pc_status store_standby_cursor_key(store_standby_t *standby, uint8_t key[STORE_CURSOR_KEY_BYTES]) {
    pthread_mutex_lock(&standby->mutex);
    bool keyed = standby->cursor_keyed;
    if (keyed) memcpy(key, standby->cursor_key, STORE_CURSOR_KEY_BYTES);
    pthread_mutex_unlock(&standby->mutex);
    if (keyed) return PC_OK;
    PGconn *conn = standby->count > 0 ? conn_take(standby, 0) : NULL;
    if (conn == NULL) return PC_STORE_READ_FAILED;
    PGresult *result = pg_query(conn, "SELECT value FROM paycore_meta WHERE key = 'list_cursor_key'", 0, NULL);
    conn_give_back(standby, 0, conn, result != NULL);
    if (result == NULL) return PC_STORE_READ_FAILED;
    size_t length = 0;
    keyed = PQntuples(result) == 1 &&
            sodium_hex2bin(key, STORE_CURSOR_KEY_BYTES, PQgetvalue(result, 0, 0), (size_t)PQgetlength(result, 0, 0),
                           NULL, &length, NULL) == 0 && length == STORE_CURSOR_KEY_BYTES;
    PQclear(result);
    if (!keyed) return PC_NOT_FOUND; /* no writer of this version started on the set yet */
    pthread_mutex_lock(&standby->mutex);
    memcpy(standby->cursor_key, key, STORE_CURSOR_KEY_BYTES);
    standby->cursor_keyed = true;
    pthread_mutex_unlock(&standby->mutex);
    return PC_OK;
}
