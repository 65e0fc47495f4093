/* store/pg_read.c: readers for API threads on PostgreSQL. Each reader has its own
 * connection (READ COMMITTED: a statement sees the batches committed before it
 * began) and never waits for the writer. Balances come from the shadow
 * (store_shadow.c), as on SQLite: the rows hold a balance snapshot. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg_internal.h"

typedef struct {
    store_reader_t base; /* first: store.c finds the store there */
    PGconn *conn;
    pg_store_t *store;
} pg_reader_t;

PGconn *pg_reader_conn(store_reader_t *reader) { return ((pg_reader_t *)reader)->conn; }

void pg_reader_close(store_reader_t *base) {
    pg_reader_t *reader = (pg_reader_t *)base;
    if (reader == NULL) return;
    PQfinish(reader->conn);
    free(reader);
}

pc_status pg_reader_open(store_t *base, store_reader_t **out) {
    pg_store_t *store = (pg_store_t *)base;
    pg_reader_t *reader = calloc(1, sizeof *reader);
    if (reader == NULL) return PC_NO_MEMORY;
    reader->base.store = base;
    reader->store = store;
    char detail[512] = "";
    bool ok = pg_connect_wait(store->url, &store->options, &reader->conn, detail, sizeof detail) == PC_OK;
    if (ok && !pg_exec_ok(reader->conn, "SET default_transaction_read_only = on")) {
        (void)pg_error_line(reader->conn, detail, sizeof detail);
        ok = false;
    }
    if (!ok) {
        pg_log_error("store reader open failed", pc_status_code(PC_STORE_OPEN_FAILED), detail);
        pg_reader_close(&reader->base);
        return PC_STORE_OPEN_FAILED;
    }
    *out = &reader->base;
    return PC_OK;
}

/* The journal's highest seq as this reader's connection sees it now. */
static pc_status journal_head_visible(void *ctx, uint64_t *seq_out) {
    pg_reader_t *reader = ctx;
    PGresult *result = pg_query(reader->conn, "SELECT coalesce(max(seq), 0) FROM journal", 0, NULL);
    if (result == NULL) return PC_STORE_READ_FAILED;
    pc_status status = PQntuples(result) == 1 ? PC_OK : PC_STORE_READ_FAILED;
    if (status == PC_OK) *seq_out = (uint64_t)pg_int(result, 0, 0);
    PQclear(result);
    return status;
}

/* Before balances are read: every batch the database shows is in the shadow (a client
 * that saw a batch's rows, a payment's new state, then sees its balances). */
static void balances_settle(pg_reader_t *reader) {
    store_shadow_settle(reader->store->shadow, journal_head_visible, reader);
}

static void account_from_row(const pg_reader_t *reader, const PGresult *result, int row,
                             ledger_account_t *a) {
    pg_account_from_row(result, row, a);
    store_shadow_read(reader->store->shadow, (uint32_t)pg_int(result, row, 10), &a->balances);
}

pc_status pg_read_account(store_reader_t *base, const char *id, store_account_t *out) {
    pg_reader_t *reader = (pg_reader_t *)base;
    const char *params[] = {id};
    balances_settle(reader);
    PGresult *result = pg_query(reader->conn, "SELECT " PG_ACCOUNT_COLUMNS " FROM accounts WHERE id = $1", 1, params);
    if (result == NULL) return PC_STORE_READ_FAILED;
    pc_status status = PQntuples(result) == 1 ? PC_OK : PC_NOT_FOUND;
    if (status == PC_OK) {
        account_from_row(reader, result, 0, &out->account);
        out->metadata_owned = pc_strdup(out->account.metadata_json);
        out->account.metadata_json = out->metadata_owned;
    }
    PQclear(result);
    return status;
}

pc_status pg_read_transfer(store_reader_t *base, const char *id, store_transfer_t *out) {
    pg_reader_t *reader = (pg_reader_t *)base;
    const char *params[] = {id};
    PGresult *result = pg_query(reader->conn, "SELECT " PG_TRANSFER_COLUMNS " FROM " PG_TRANSFERS_FROM " WHERE t.id = $1",
                                1, params);
    if (result == NULL) return PC_STORE_READ_FAILED;
    return pg_transfer_result_take(result, out);
}

/* One integer of a one-row query with one text parameter: PC_NOT_FOUND without a row. */
static pc_status position_of(pg_reader_t *reader, const char *sql, const char *id, int64_t *position) {
    const char *params[] = {id};
    PGresult *result = pg_query(reader->conn, sql, 1, params);
    if (result == NULL) return PC_STORE_READ_FAILED;
    pc_status status = PQntuples(result) == 1 ? PC_OK : PC_NOT_FOUND;
    if (status == PC_OK) *position = pg_int(result, 0, 0);
    PQclear(result);
    return status;
}

/* The page's accounts (at most query->limit of the rows of 'result', one more than a
 * page) and their numbers, into arrays the caller frees. */
static pc_status accounts_take(PGresult *result, const store_query_t *query, ledger_account_t **accounts_out,
                               uint32_t **nos_out, uint32_t *count_out, bool *has_more) {
    int rows = PQntuples(result);
    *has_more = (uint32_t)rows > query->limit;
    uint32_t count = (uint32_t)rows < query->limit ? (uint32_t)rows : query->limit;
    ledger_account_t *accounts = calloc(count + 1, sizeof *accounts);
    uint32_t *nos = calloc(count + 1, sizeof *nos);
    *accounts_out = accounts;
    *nos_out = nos;
    *count_out = count;
    if (accounts == NULL || nos == NULL) return PC_NO_MEMORY;
    for (uint32_t row = 0; row < count; row++) {
        pg_account_from_row(result, (int)row, &accounts[row]);
        nos[row] = (uint32_t)pg_int(result, (int)row, 10);
    }
    return PC_OK;
}

/* Calls 'fn' for up to query->limit account rows of 'result' (one more than a page),
 * their balances as of one batch boundary (store_shadow_read_page). */
static pc_status accounts_emit(pg_reader_t *reader, PGresult *result, const store_query_t *query,
                               store_account_fn fn, void *ctx, bool *has_more) {
    ledger_account_t *accounts = NULL;
    uint32_t *nos = NULL;
    uint32_t count = 0;
    pc_status status = accounts_take(result, query, &accounts, &nos, &count, has_more);
    if (status == PC_OK) balances_settle(reader);
    if (status == PC_OK) store_shadow_read_page(reader->store->shadow, nos, accounts, count);
    for (uint32_t row = 0; status == PC_OK && row < count; row++) fn(&accounts[row], ctx);
    free(accounts);
    free(nos);
    PQclear(result);
    return status;
}

pc_status pg_list_accounts(store_reader_t *base, const store_query_t *query, store_account_fn fn, void *ctx,
                           bool *has_more) {
    pg_reader_t *reader = (pg_reader_t *)base;
    int64_t after = -1;
    if (query->starting_after != NULL) {
        pc_status status = position_of(reader, "SELECT no FROM accounts WHERE id = $1", query->starting_after, &after);
        if (status != PC_OK) return status;
    }
    char bound[24], limit[16];
    snprintf(bound, sizeof bound, "%lld", (long long)(query->descending && after < 0 ? INT32_MAX : after));
    snprintf(limit, sizeof limit, "%u", query->limit + 1);
    const char *params[] = {bound, limit};
    PGresult *result = pg_query(reader->conn, query->descending
        ? "SELECT " PG_ACCOUNT_COLUMNS " FROM accounts WHERE no < $1 ORDER BY no DESC LIMIT $2"
        : "SELECT " PG_ACCOUNT_COLUMNS " FROM accounts WHERE no > $1 ORDER BY no LIMIT $2", 2, params);
    if (result == NULL) return PC_STORE_READ_FAILED;
    return accounts_emit(reader, result, query, fn, ctx, has_more);
}

/* PC_OK when 'account_id' exists and was granted to 'key_id', else PC_NOT_FOUND. */
static pc_status granted_check(pg_reader_t *reader, const char *key_id, const char *account_id) {
    const char *params[] = {key_id, account_id};
    PGresult *result = pg_query(reader->conn, "SELECT 1 FROM account_grants g JOIN accounts a ON a.id ="
                                " g.account_id WHERE g.key_id = $1 AND g.account_id = $2", 2, params);
    if (result == NULL) return PC_STORE_READ_FAILED;
    int rows = PQntuples(result);
    PQclear(result);
    return rows > 0 ? PC_OK : PC_NOT_FOUND;
}

pc_status pg_list_accounts_granted(store_reader_t *base, const char *key_id, const store_query_t *query,
                                   store_account_fn fn, void *ctx, bool *has_more) {
    pg_reader_t *reader = (pg_reader_t *)base;
    *has_more = false;
    if (query->starting_after != NULL) {
        pc_status status = granted_check(reader, key_id, query->starting_after);
        if (status != PC_OK) return status;
    }
    char limit[16];
    snprintf(limit, sizeof limit, "%u", query->limit + 1);
    const char *params[] = {key_id, query->starting_after != NULL ? query->starting_after : "", limit};
    PGresult *result = pg_query(reader->conn,
        "SELECT a.id, a.currency, a.code, a.flags, a.debits_pending, a.debits_posted, a.credits_pending,"
        " a.credits_posted, a.timestamp, a.metadata, a.no FROM account_grants g JOIN accounts a ON a.id ="
        " g.account_id WHERE g.key_id = $1 AND g.account_id > $2 COLLATE \"C\" ORDER BY g.account_id COLLATE \"C\""
        " LIMIT $3", 3, params);
    if (result == NULL) return PC_STORE_READ_FAILED;
    return accounts_emit(reader, result, query, fn, ctx, has_more);
}

/* A page's parameters after the account id: [low, high) of timestamps after
 * 'after_ts' (0: from the start) and the limit (one row more than a page). */
typedef struct {
    char low[24], high[24], limit[16];
} range_params_t;

static void range_params(const store_query_t *query, int64_t after_ts, range_params_t *out) {
    int64_t low, high;
    store_query_range(query, after_ts, &low, &high);
    snprintf(out->low, sizeof out->low, "%lld", (long long)low);
    snprintf(out->high, sizeof out->high, "%lld", (long long)high);
    snprintf(out->limit, sizeof out->limit, "%u", query->limit + 1);
}

/* An account's page of transfers: its rows of account_transfers (one per batch it
 * took part in, at most STORE_PG_ACCOUNT_ROW_TIMESTAMPS timestamps each, keyed by the
 * last) in order, then the transfers by their timestamp key; then the page's
 * accounts' ids. Rows of one account never overlap in time (a batch's timestamps are
 * above every earlier batch's), so the rows whose last timestamp is in [$2, $3), at
 * most one a transfer of the page, and the one row after them (it may hold transfers
 * below $3) hold the page: a page reads about a page of rows however long the
 * account's history. */
#define ACCOUNT_ROWS(order)                                                                            \
    "(SELECT " PG_ACCOUNT_ROW_TIMESTAMPS("e") " AS timestamps FROM account_transfers e WHERE account_no = $1" \
    " AND timestamp_last >= $2 AND timestamp_last < $3 ORDER BY timestamp_last " order " LIMIT $4) UNION ALL" \
    " (SELECT " PG_ACCOUNT_ROW_TIMESTAMPS("e") " FROM account_transfers e WHERE account_no = $1"        \
    " AND timestamp_last >= $3 ORDER BY timestamp_last LIMIT 1)"
#define ACCOUNT_TRANSFERS_SQL(order)                                                                   \
    "SELECT " PG_TRANSFER_COLUMNS " FROM (SELECT u.ts FROM (" ACCOUNT_ROWS(order) ") AS e,"             \
    " unnest(e.timestamps) AS u(ts) WHERE u.ts >= $2 AND u.ts < $3 ORDER BY u.ts " order " LIMIT $4) AS p" \
    " JOIN transfers t ON t.timestamp = p.ts JOIN accounts d ON d.no = t.debit_no"                     \
    " JOIN accounts c ON c.no = t.credit_no ORDER BY t.timestamp " order

pc_status pg_list_account_transfers(store_reader_t *base, const char *account_id, const store_query_t *query,
                                    store_transfer_fn fn, void *ctx, bool *has_more) {
    pg_reader_t *reader = (pg_reader_t *)base;
    int64_t after_ts = 0, account_no = 0;
    pc_status status = position_of(reader, "SELECT no FROM accounts WHERE id = $1", account_id, &account_no);
    if (status == PC_OK && query->starting_after != NULL) {
        status = position_of(reader, "SELECT timestamp FROM transfers WHERE id = $1", query->starting_after, &after_ts);
    }
    if (status != PC_OK) return status;
    range_params_t range;
    range_params(query, after_ts, &range);
    char no[24];
    snprintf(no, sizeof no, "%lld", (long long)account_no);
    const char *params[] = {no, range.low, range.high, range.limit};
    PGresult *result = pg_query(reader->conn, query->descending ? ACCOUNT_TRANSFERS_SQL("DESC")
                                                                : ACCOUNT_TRANSFERS_SQL("ASC"), 4, params);
    if (result == NULL) return PC_STORE_READ_FAILED;
    int rows = PQntuples(result);
    *has_more = (uint32_t)rows > query->limit;
    for (int row = 0; row < rows && (uint32_t)row < query->limit; row++) {
        ledger_transfer_t transfer;
        pg_transfer_from_row(result, row, &transfer);
        fn(&transfer, (ledger_pending_state)pg_int(result, row, 11), ctx);
    }
    PQclear(result);
    return PC_OK;
}

pc_status pg_list_history(store_reader_t *base, const char *account_id, const store_query_t *query,
                          store_history_fn fn, void *ctx, bool *has_more) {
    pg_reader_t *reader = (pg_reader_t *)base;
    int64_t after_ts = 0;
    if (query->starting_after != NULL) {
        pc_status status = position_of(reader, "SELECT timestamp FROM transfers WHERE id = $1", query->starting_after,
                                       &after_ts);
        if (status != PC_OK) return status;
    }
    range_params_t range;
    range_params(query, after_ts, &range);
    const char *params[] = {account_id, range.low, range.high, range.limit};
    PGresult *result = pg_query(reader->conn, query->descending
        ? "SELECT timestamp, transfer_id, debits_pending, debits_posted, credits_pending, credits_posted FROM"
          " balance_history WHERE account_id = $1 AND timestamp >= $2 AND timestamp < $3"
          " ORDER BY timestamp DESC LIMIT $4"
        : "SELECT timestamp, transfer_id, debits_pending, debits_posted, credits_pending, credits_posted FROM"
          " balance_history WHERE account_id = $1 AND timestamp >= $2 AND timestamp < $3 ORDER BY timestamp LIMIT $4",
        4, params);
    if (result == NULL) return PC_STORE_READ_FAILED;
    int rows = PQntuples(result);
    *has_more = (uint32_t)rows > query->limit;
    for (int row = 0; row < rows && (uint32_t)row < query->limit; row++) {
        ledger_history_t h = {0};
        h.transfer_timestamp_ns = (uint64_t)pg_int(result, row, 0);
        pg_text_copy(h.transfer_id, sizeof h.transfer_id, result, row, 1);
        h.balances.debits_pending = pg_int(result, row, 2);
        h.balances.debits_posted = pg_int(result, row, 3);
        h.balances.credits_pending = pg_int(result, row, 4);
        h.balances.credits_posted = pg_int(result, row, 5);
        fn(&h, ctx);
    }
    PQclear(result);
    return PC_OK;
}

/* ---- a set's lists of accounts read as of a cut (store_shard.h) ---- */

pc_status store_shard_reader_cut(store_reader_t *reader, uint64_t *seq_out) {
    return journal_head_visible(reader, seq_out);
}

/* A transfer's effect on its debit (or credit) account's pending and posted balances,
 * as ledger_load_replay has it ($3: a post's flag, $4: a void's, $5: a pending
 * transfer's; p: the pending transfer a post or void names). */
#define AS_OF_PENDING_DELTA                                                                         \
    "CASE WHEN t.flags & ($3::integer | $4::integer) <> 0 THEN -p.amount"                          \
    " WHEN t.flags & $5::integer <> 0 THEN t.amount ELSE 0 END"
#define AS_OF_POSTED_DELTA                                                                          \
    "CASE WHEN t.flags & $3::integer <> 0 THEN t.amount"                                           \
    " WHEN t.flags & ($4::integer | $5::integer) <> 0 THEN 0 ELSE t.amount END"
#define AS_OF_SIDE(side)                                                                            \
    " LATERAL (SELECT coalesce(sum(" AS_OF_PENDING_DELTA "), 0) AS pending,"                       \
    "  coalesce(sum(" AS_OF_POSTED_DELTA "), 0) AS posted,"                                        \
    "  count(*) FILTER (WHERE p.amount IS NULL AND t.flags & ($3::integer | $4::integer) <> 0) AS orphans" \
    "  FROM account_transfers e, unnest(" PG_ACCOUNT_ROW_TIMESTAMPS("e") ") AS u(ts)"              \
    "  JOIN transfers t ON t.timestamp = u.ts LEFT JOIN transfers p ON p.id = t.pending_id"          \
    "  WHERE e.account_no = a.no AND e.timestamp_last > b.after_ts AND u.ts > b.after_ts"             \
    "  AND u.ts <= b.until_ts AND t." side " = a.no)"
/* The balances of the accounts numbered $1 as of journal seq $2: each row's snapshot
 * (as of accounts_as_of_seq) plus what the transfers between the snapshot and $2 did,
 * or minus it when the snapshot is the later one; those transfers are the account's
 * account_transfers rows above the last timestamp of the earlier of the two batches
 * (as on a standby, §7) and up to the later one's (a batch's timestamps are above every
 * earlier batch's: the range is the batches), joined to transfers by their timestamp key.
 * One statement: one snapshot of the rows, the meta row and the transfers. */
static const char as_of_balances_sql[] =
    "WITH m AS MATERIALIZED (SELECT value::bigint AS as_of FROM paycore_meta WHERE key = 'accounts_as_of_seq'),"
    " b AS MATERIALIZED (SELECT CASE WHEN m.as_of <= $2::bigint THEN 1 ELSE -1 END AS sign,"
    "  coalesce((SELECT timestamp_last FROM journal WHERE seq <= least(m.as_of, $2::bigint) AND timestamp_last > 0"
    "   ORDER BY seq DESC LIMIT 1), 0) AS after_ts,"
    "  coalesce((SELECT timestamp_last FROM journal WHERE seq <= greatest(m.as_of, $2::bigint) AND timestamp_last > 0"
    "   ORDER BY seq DESC LIMIT 1), 0) AS until_ts FROM m)"
    " SELECT a.no, (a.debits_pending + b.sign * d.pending)::bigint, (a.debits_posted + b.sign * d.posted)::bigint,"
    "  (a.credits_pending + b.sign * c.pending)::bigint, (a.credits_posted + b.sign * c.posted)::bigint,"
    "  d.orphans + c.orphans"
    " FROM b, accounts a," AS_OF_SIDE("debit_no") " d," AS_OF_SIDE("credit_no") " c"
    " WHERE a.no = ANY($1::integer[])";

/* The balances of 'count' accounts (numbers 'nos') as of 'as_of' into 'accounts'. */
static pc_status balances_as_of(PGconn *conn, const uint32_t *nos, ledger_account_t *accounts, uint32_t count,
                                uint64_t as_of) {
    char array[2 + 11 * API_LIST_LIMIT_MAX + 2] = "{";
    size_t used = 1;
    for (uint32_t i = 0; i < count && used < sizeof array - 12; i++) {
        used += (size_t)snprintf(array + used, sizeof array - used, "%s%u", i > 0 ? "," : "", nos[i]);
    }
    snprintf(array + used, sizeof array - used, "}");
    PG_U64(seq, as_of);
    PG_U64(post, LEDGER_TRANSFER_POST_PENDING);
    PG_U64(void_, LEDGER_TRANSFER_VOID_PENDING);
    PG_U64(pending, LEDGER_TRANSFER_PENDING);
    const char *params[] = {array, seq, post, void_, pending};
    PGresult *result = pg_query(conn, as_of_balances_sql, 5, params);
    if (result == NULL) return PC_STORE_READ_FAILED;
    pc_status status = PQntuples(result) == (int)count ? PC_OK : PC_STORE_READ_FAILED;
    for (int row = 0; status == PC_OK && row < PQntuples(result); row++) {
        if (pg_int(result, row, 5) != 0) status = PC_STORE_CORRUPT; /* the writer's load refuses the same */
        uint32_t no = (uint32_t)pg_int(result, row, 0);
        for (uint32_t i = 0; status == PC_OK && i < count; i++) {
            if (nos[i] != no) continue;
            accounts[i].balances = (ledger_balances_t){pg_int(result, row, 1), pg_int(result, row, 2),
                                                       pg_int(result, row, 3), pg_int(result, row, 4)};
        }
    }
    PQclear(result);
    return status;
}

/* Calls 'fn' for up to query->limit account rows of 'result' (one more than a page)
 * with their balances as of 'as_of': the shadow's when it is at that batch boundary
 * still ('shadow' NULL: none, a standby's connection), else balances_as_of. */
static pc_status accounts_emit_as_of(PGconn *conn, const store_shadow_t *shadow, PGresult *result,
                                     const store_query_t *query, uint64_t as_of, store_account_fn fn, void *ctx,
                                     bool *has_more) {
    ledger_account_t *accounts = NULL;
    uint32_t *nos = NULL;
    uint32_t count = 0;
    pc_status status = accounts_take(result, query, &accounts, &nos, &count, has_more);
    bool shadow_at = status == PC_OK && shadow != NULL && store_shadow_read_page(shadow, nos, accounts, count) == as_of;
    if (status == PC_OK && !shadow_at && count > 0) status = balances_as_of(conn, nos, accounts, count, as_of);
    for (uint32_t row = 0; status == PC_OK && row < count; row++) fn(&accounts[row], ctx);
    free(accounts);
    free(nos);
    PQclear(result);
    return status;
}

/* The rows of a page as of 'as_of' (created by then); NULL on failure. */
static PGresult *rows_as_of(pg_reader_t *reader, const char *key_id, const store_query_t *query, uint64_t as_of,
                            pc_status *status) {
    PG_U64(seq, as_of);
    char limit[16];
    snprintf(limit, sizeof limit, "%u", query->limit + 1);
    if (key_id != NULL && query->starting_after != NULL) {
        *status = granted_check(reader, key_id, query->starting_after);
        if (*status != PC_OK) return NULL;
    }
    if (key_id != NULL) {
        const char *params[] = {key_id, query->starting_after != NULL ? query->starting_after : "", limit, seq};
        return pg_query(reader->conn,
            "SELECT a.id, a.currency, a.code, a.flags, a.debits_pending, a.debits_posted, a.credits_pending,"
            " a.credits_posted, a.timestamp, a.metadata, a.no FROM account_grants g JOIN accounts a ON a.id ="
            " g.account_id WHERE g.key_id = $1 AND g.account_id > $2 COLLATE \"C\" AND a.batch_seq <= $4::bigint"
            " ORDER BY g.account_id COLLATE \"C\" LIMIT $3", 4, params);
    }
    int64_t after = -1;
    if (query->starting_after != NULL) {
        *status = position_of(reader, "SELECT no FROM accounts WHERE id = $1", query->starting_after, &after);
        if (*status != PC_OK) return NULL;
    }
    char bound[24];
    snprintf(bound, sizeof bound, "%lld", (long long)(query->descending && after < 0 ? INT32_MAX : after));
    const char *params[] = {bound, limit, seq};
    return pg_query(reader->conn, query->descending
        ? "SELECT " PG_ACCOUNT_COLUMNS " FROM accounts WHERE no < $1 AND batch_seq <= $3::bigint ORDER BY no DESC"
          " LIMIT $2"
        : "SELECT " PG_ACCOUNT_COLUMNS " FROM accounts WHERE no > $1 AND batch_seq <= $3::bigint ORDER BY no LIMIT $2",
        3, params);
}

static pc_status list_as_of(pg_reader_t *reader, const char *key_id, const store_query_t *query, uint64_t as_of,
                            store_account_fn fn, void *ctx, bool *has_more) {
    *has_more = false;
    pc_status status = PC_STORE_READ_FAILED;
    PGresult *result = rows_as_of(reader, key_id, query, as_of, &status);
    if (result == NULL) return status;
    const store_shadow_t *shadow = reader->store != NULL ? reader->store->shadow : NULL;
    return accounts_emit_as_of(reader->conn, shadow, result, query, as_of, fn, ctx, has_more);
}

pc_status store_shard_list_as_of(store_reader_t *reader, const char *key_id, const store_query_t *query,
                                 uint64_t as_of, store_account_fn fn, void *ctx, bool *has_more) {
    return list_as_of((pg_reader_t *)reader, key_id, query, as_of, fn, ctx, has_more);
}

pc_status pg_conn_list_as_of(PGconn *conn, const char *key_id, const store_query_t *query, uint64_t as_of,
                             store_account_fn fn, void *ctx, bool *has_more) {
    pg_reader_t reader = {.conn = conn};
    return list_as_of(&reader, key_id, query, as_of, fn, ctx, has_more);
}

pc_status pg_conn_journal_head(PGconn *conn, uint64_t *seq_out) {
    pg_reader_t reader = {.conn = conn};
    return journal_head_visible(&reader, seq_out);
}

/* The lists of one account on a bare connection (a standby's pooled one, store_standby.h):
 * the same statements as a reader's, so that both answer alike. */
pc_status pg_conn_list_account_transfers(PGconn *conn, const char *account_id, const store_query_t *query,
                                         store_transfer_fn fn, void *ctx, bool *has_more) {
    pg_reader_t reader = {.conn = conn};
    return pg_list_account_transfers(&reader.base, account_id, query, fn, ctx, has_more);
}

pc_status pg_conn_list_history(PGconn *conn, const char *account_id, const store_query_t *query,
                               store_history_fn fn, void *ctx, bool *has_more) {
    pg_reader_t reader = {.conn = conn};
    return pg_list_history(&reader.base, account_id, query, fn, ctx, has_more);
}
