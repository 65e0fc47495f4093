/* store/sqlite_read.c: readers for API threads. Each reader has its own SQLite
 * connections (main and index files); in WAL mode a reader sees the last committed
 * batch and never waits for the writer. Balances come from the committed shadow
 * (store_shadow.c), ids and account histories through sqlite_index.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "store/sqlite_internal.h"

typedef struct {
    store_reader_t base;  /* first: store.c finds the store there */
    sqlite3 *db;
    sqlite3 *index_db;
    sqlite_store_t *store;
    store_stmt_cache_t *stmt_cache;
} sqlite_reader_t;

sqlite3 *store_sqlite_reader_db(store_reader_t *reader) { return ((sqlite_reader_t *)reader)->db; }
store_conn_t store_sqlite_reader_conn(store_reader_t *base) {
    sqlite_reader_t *reader = (sqlite_reader_t *)base;
    return (store_conn_t){.cache = &reader->stmt_cache, .db = reader->db};
}

void store_sqlite_reader_close(store_reader_t *base) {
    sqlite_reader_t *reader = (sqlite_reader_t *)base;
    if (reader == NULL) return;
    store_sqlite_stmt_cache_free(reader->stmt_cache);
    if (reader->db != NULL) sqlite3_close(reader->db);
    if (reader->index_db != NULL) sqlite3_close(reader->index_db);
    free(reader);
}

pc_status store_sqlite_reader_open(store_t *base, store_reader_t **out) {
    sqlite_store_t *store = (sqlite_store_t *)base;
    PC_ASSERT(store_sqlite_index(store) != NULL); /* readers come after store_load */
    sqlite_reader_t *reader = calloc(1, sizeof(*reader));
    if (reader == NULL) return PC_NO_MEMORY;
    reader->base.store = base;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
    char pragmas[96];
    snprintf(pragmas, sizeof pragmas, "PRAGMA query_only=1; PRAGMA cache_size=-%d;", (int)STORE_READER_CACHE_KIB);
    if (sqlite3_open_v2(store->path, &reader->db, flags, NULL) != SQLITE_OK ||
        store_sqlite_configure(reader->db, false) != PC_OK ||
        sqlite3_exec(reader->db, pragmas, NULL, NULL, NULL) != SQLITE_OK ||
        (reader->index_db = store_index_reader_open(store_sqlite_index(store))) == NULL) {
        store_sqlite_reader_close(&reader->base);
        return PC_STORE_OPEN_FAILED;
    }
    reader->store = store;
    *out = &reader->base;
    return PC_OK;
}

#define ACCOUNT_COLUMNS \
    "id, currency, code, flags, debits_pending, debits_posted, credits_pending, credits_posted, timestamp, metadata, no"
#define TRANSFER_COLUMNS \
    "timestamp, id, debit_account_id, credit_account_id, amount, currency, code, flags, pending_id," \
    " timeout_s, metadata, pending_state"

/* The journal's highest seq as this reader's connection sees it now. */
static pc_status journal_head_visible(void *ctx, uint64_t *seq_out) {
    sqlite_reader_t *reader = ctx;
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(reader->db, "SELECT coalesce(max(seq), 0) FROM journal", -1, &stmt, NULL) != SQLITE_OK) {
        return PC_STORE_READ_FAILED;
    }
    pc_status status = sqlite3_step(stmt) == SQLITE_ROW ? PC_OK : PC_STORE_READ_FAILED;
    if (status == PC_OK) *seq_out = (uint64_t)sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return status;
}

/* Before balances are read: every batch the file shows is in the shadow (a client that
 * saw a batch's rows, a payment's new state, then sees its balances). */
static void balances_settle(sqlite_reader_t *reader) {
    store_shadow_settle(store_sqlite_shadow(reader->store), journal_head_visible, reader);
}

static void account_from_row(const sqlite_reader_t *reader, sqlite3_stmt *stmt, ledger_account_t *a) {
    store_sqlite_account_from_row(stmt, a);
    /* The row holds balances as of the last balance snapshot; the shadow, as of the last commit. */
    store_shadow_read(store_sqlite_shadow(reader->store), (uint32_t)sqlite3_column_int64(stmt, 10), &a->balances);
}

static void transfer_from_row(sqlite3_stmt *stmt, ledger_transfer_t *t, ledger_pending_state *state) {
    store_sqlite_transfer_from_row(stmt, t);
    *state = (ledger_pending_state)sqlite3_column_int(stmt, 11);
}

static pc_status prepare(sqlite_reader_t *reader, const char *sql, sqlite3_stmt **stmt) {
    /* sqlite3_prepare_v3 with PERSISTENT keeps the plan cached in the connection. */
    return sqlite3_prepare_v3(reader->db, sql, -1, 0, stmt, NULL) == SQLITE_OK ? PC_OK
                                                                             : PC_STORE_READ_FAILED;
}

pc_status store_sqlite_read_account(store_reader_t *base, const char *id, store_account_t *out) {
    sqlite_reader_t *reader = (sqlite_reader_t *)base;
    sqlite3_stmt *stmt;
    if (prepare(reader, "SELECT " ACCOUNT_COLUMNS " FROM accounts WHERE id=?", &stmt) != PC_OK) {
        return PC_STORE_READ_FAILED;
    }
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    balances_settle(reader);
    int rc = sqlite3_step(stmt);
    pc_status status = rc == SQLITE_ROW ? PC_OK : rc == SQLITE_DONE ? PC_NOT_FOUND : PC_STORE_READ_FAILED;
    if (status == PC_OK) {
        account_from_row(reader, stmt, &out->account);
        out->metadata_owned = pc_strdup(out->account.metadata_json);
        out->account.metadata_json = out->metadata_owned;
    }
    sqlite3_finalize(stmt);
    return status;
}

#define TRANSFER_AT_SQL "SELECT " TRANSFER_COLUMNS " FROM transfers WHERE timestamp=?"

/* Reads the transfer row at 'ts' with 'stmt' (TRANSFER_AT_SQL), then resets it;
 * PC_NOT_FOUND when absent or 'id' (if given) differs. */
static pc_status transfer_row_at(sqlite3_stmt *stmt, uint64_t ts, const char *id, store_transfer_t *out) {
    sqlite3_bind_int64(stmt, 1, (int64_t)ts);
    int rc = sqlite3_step(stmt);
    pc_status status = rc == SQLITE_ROW ? PC_OK : rc == SQLITE_DONE ? PC_NOT_FOUND : PC_STORE_READ_FAILED;
    if (status == PC_OK) {
        transfer_from_row(stmt, &out->transfer, &out->pending_state);
        if (id != NULL && strcmp(out->transfer.id, id) != 0) status = PC_NOT_FOUND;
    }
    if (status == PC_OK) {
        out->metadata_owned = pc_strdup(out->transfer.metadata_json);
        out->transfer.metadata_json = out->metadata_owned;
    }
    sqlite3_reset(stmt);
    return status;
}

static pc_status transfer_at(sqlite_reader_t *reader, uint64_t ts, const char *id, store_transfer_t *out) {
    sqlite3_stmt *stmt;
    if (prepare(reader, TRANSFER_AT_SQL, &stmt) != PC_OK) return PC_STORE_READ_FAILED;
    pc_status status = transfer_row_at(stmt, ts, id, out);
    sqlite3_finalize(stmt);
    return status;
}

typedef struct {
    sqlite_reader_t *reader;
    sqlite3_stmt *stmt; /* prepared at the first candidate, for all of them */
    const char *id;
    store_transfer_t *out;
} transfer_find_t;

static pc_status transfer_candidate(void *ctx, uint64_t ts) {
    transfer_find_t *find = ctx;
    if (find->stmt == NULL && prepare(find->reader, TRANSFER_AT_SQL, &find->stmt) != PC_OK) {
        return PC_STORE_READ_FAILED;
    }
    return transfer_row_at(find->stmt, ts, find->id, find->out);
}

pc_status store_sqlite_read_transfer_at(store_reader_t *base, uint64_t timestamp_ns, const char *id,
                                        store_transfer_t *out) {
    memset(out, 0, sizeof(*out));
    return transfer_at((sqlite_reader_t *)base, timestamp_ns, id, out);
}

pc_status store_sqlite_read_transfer(store_reader_t *base, const char *id, store_transfer_t *out) {
    sqlite_reader_t *reader = (sqlite_reader_t *)base;
    store_index_t *index = store_sqlite_index(reader->store);
    transfer_find_t find = {reader, NULL, id, out};
    pc_status status = store_index_find(index, reader->index_db, store_index_key(index, id), transfer_candidate, &find);
    sqlite3_finalize(find.stmt);
    return status;
}

static pc_status transfer_ts_of(sqlite_reader_t *reader, const char *id, int64_t *ts) {
    store_transfer_t found;
    pc_status status = store_sqlite_read_transfer(&reader->base, id, &found);
    if (status != PC_OK) return status;
    *ts = (int64_t)found.transfer.timestamp_ns;
    store_transfer_free(&found);
    return PC_OK;
}

/* Resolves a starting_after id to its position (account no or transfer timestamp). */
static pc_status position_of(sqlite_reader_t *reader, const char *sql, const char *id, int64_t *position) {
    sqlite3_stmt *stmt;
    if (prepare(reader, sql, &stmt) != PC_OK) return PC_STORE_READ_FAILED;
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    pc_status status = rc == SQLITE_ROW ? PC_OK : rc == SQLITE_DONE ? PC_NOT_FOUND : PC_STORE_READ_FAILED;
    if (status == PC_OK) *position = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return status;
}

/* A page of account rows, their metadata copied (a row's text lives until the next step). */
typedef struct {
    ledger_account_t *accounts;
    uint32_t *nos;
    uint32_t count;
} account_page_t;

static void account_page_free(account_page_t *page) {
    for (uint32_t i = 0; i < page->count; i++) free((char *)page->accounts[i].metadata_json);
    free(page->accounts);
    free(page->nos);
}

/* Calls 'fn' for up to query->limit rows of 'stmt' (whose columns start with
 * ACCOUNT_COLUMNS and which yields one row more than a page), their balances as of
 * one batch boundary (store_shadow_read_page); sets *has_more, and finalizes the
 * statement. */
static pc_status accounts_emit(sqlite_reader_t *reader, sqlite3_stmt *stmt, const store_query_t *query,
                               store_account_fn fn, void *ctx, bool *has_more) {
    account_page_t page = {calloc(query->limit + 1, sizeof *page.accounts), calloc(query->limit + 1, sizeof *page.nos),
                           0};
    pc_status status = page.accounts != NULL && page.nos != NULL ? PC_OK : PC_NO_MEMORY;
    int rc = SQLITE_DONE;
    *has_more = false;
    while (status == PC_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (page.count == query->limit) {
            *has_more = true;
            break;
        }
        ledger_account_t *account = &page.accounts[page.count];
        store_sqlite_account_from_row(stmt, account);
        page.nos[page.count++] = (uint32_t)sqlite3_column_int64(stmt, 10);
        if (account->metadata_json != NULL) {
            account->metadata_json = pc_strdup(account->metadata_json);
            if (account->metadata_json == NULL) status = PC_NO_MEMORY;
        }
    }
    sqlite3_finalize(stmt);
    if (status == PC_OK && rc != SQLITE_ROW && rc != SQLITE_DONE) status = PC_STORE_READ_FAILED;
    if (status == PC_OK) balances_settle(reader);
    if (status == PC_OK) store_shadow_read_page(store_sqlite_shadow(reader->store), page.nos, page.accounts, page.count);
    for (uint32_t i = 0; status == PC_OK && i < page.count; i++) fn(&page.accounts[i], ctx);
    account_page_free(&page);
    return status;
}

pc_status store_sqlite_list_accounts(store_reader_t *base, const store_query_t *query, store_account_fn fn,
                              void *ctx, bool *has_more) {
    sqlite_reader_t *reader = (sqlite_reader_t *)base;
    int64_t after = -1;
    if (query->starting_after != NULL) {
        pc_status status = position_of(reader, "SELECT no FROM accounts WHERE id=?", query->starting_after, &after);
        if (status != PC_OK) return status;
    }
    sqlite3_stmt *stmt;
    const char *sql = query->descending
                          ? "SELECT " ACCOUNT_COLUMNS " FROM accounts WHERE no < ?1 ORDER BY no DESC LIMIT ?2"
                          : "SELECT " ACCOUNT_COLUMNS " FROM accounts WHERE no > ?1 ORDER BY no LIMIT ?2";
    if (prepare(reader, sql, &stmt) != PC_OK) return PC_STORE_READ_FAILED;
    sqlite3_bind_int64(stmt, 1, query->descending && after < 0 ? INT64_MAX : after);
    sqlite3_bind_int64(stmt, 2, (int64_t)query->limit + 1);
    return accounts_emit(reader, stmt, query, fn, ctx, has_more);
}

#define GRANTED_ACCOUNT_COLUMNS \
    "a.id, a.currency, a.code, a.flags, a.debits_pending, a.debits_posted, a.credits_pending," \
    " a.credits_posted, a.timestamp, a.metadata, a.no"

/* The grants' primary key (key_id, account_id) is the index: a page is a range scan
 * of the key's grants, each joined to its account by the accounts' id index. Grants
 * of ids that have no account (yet) are skipped. */
pc_status store_sqlite_list_accounts_granted(store_reader_t *base, const char *key_id, const store_query_t *query,
                                      store_account_fn fn, void *ctx, bool *has_more) {
    sqlite_reader_t *reader = (sqlite_reader_t *)base;
    *has_more = false;
    if (query->starting_after != NULL) {
        sqlite3_stmt *cursor;
        if (prepare(reader, "SELECT 1 FROM account_grants g JOIN accounts a ON a.id = g.account_id"
                            " WHERE g.key_id = ?1 AND g.account_id = ?2", &cursor) != PC_OK) {
            return PC_STORE_READ_FAILED;
        }
        sqlite3_bind_text(cursor, 1, key_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(cursor, 2, query->starting_after, -1, SQLITE_STATIC);
        int rc = sqlite3_step(cursor);
        sqlite3_finalize(cursor);
        if (rc != SQLITE_ROW) return rc == SQLITE_DONE ? PC_NOT_FOUND : PC_STORE_READ_FAILED;
    }
    sqlite3_stmt *stmt;
    if (prepare(reader, "SELECT " GRANTED_ACCOUNT_COLUMNS " FROM account_grants g"
                        " JOIN accounts a ON a.id = g.account_id"
                        " WHERE g.key_id = ?1 AND g.account_id > ?2 ORDER BY g.account_id LIMIT ?3",
                &stmt) != PC_OK) {
        return PC_STORE_READ_FAILED;
    }
    sqlite3_bind_text(stmt, 1, key_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, query->starting_after != NULL ? query->starting_after : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 3, (int64_t)query->limit + 1);
    return accounts_emit(reader, stmt, query, fn, ctx, has_more);
}

pc_status store_sqlite_list_account_transfers(store_reader_t *base, const char *account_id, const store_query_t *query,
                                       store_transfer_fn fn, void *ctx, bool *has_more) {
    sqlite_reader_t *reader = (sqlite_reader_t *)base;
    int64_t after_ts = 0, account_no = 0;
    pc_status status = position_of(reader, "SELECT no FROM accounts WHERE id=?", account_id, &account_no);
    if (status != PC_OK) return status;
    if (query->starting_after != NULL) {
        status = transfer_ts_of(reader, query->starting_after, &after_ts);
        if (status != PC_OK) return status;
    }
    int64_t low, high;
    store_query_range(query, after_ts, &low, &high);
    uint64_t ts[API_LIST_LIMIT_MAX + 1];
    uint32_t limit = query->limit < API_LIST_LIMIT_MAX ? query->limit : API_LIST_LIMIT_MAX;
    uint32_t count = 0;
    status = store_index_account(store_sqlite_index(reader->store), reader->index_db, (uint32_t)account_no,
                                 low < 0 ? 0 : (uint64_t)low, (uint64_t)high, query->descending, limit + 1, ts, &count);
    if (status != PC_OK) return status;
    *has_more = count > limit;
    for (uint32_t i = 0; i < count && i < limit; i++) {
        store_transfer_t row;
        status = transfer_at(reader, ts[i], NULL, &row);
        if (status != PC_OK) return status == PC_NOT_FOUND ? PC_STORE_READ_FAILED : status;
        fn(&row.transfer, row.pending_state, ctx);
        store_transfer_free(&row);
    }
    return PC_OK;
}

pc_status store_sqlite_list_history(store_reader_t *base, const char *account_id, const store_query_t *query,
                             store_history_fn fn, void *ctx, bool *has_more) {
    sqlite_reader_t *reader = (sqlite_reader_t *)base;
    int64_t after_ts = 0;
    if (query->starting_after != NULL) {
        pc_status status = transfer_ts_of(reader, query->starting_after, &after_ts);
        if (status != PC_OK) return status;
    }
    int64_t low, high;
    store_query_range(query, after_ts, &low, &high);
    const char *sql = query->descending
        ? "SELECT timestamp, transfer_id, debits_pending, debits_posted, credits_pending, credits_posted FROM"
          " balance_history WHERE account_id=?1 AND timestamp>=?2 AND timestamp<?3 ORDER BY timestamp DESC LIMIT ?4"
        : "SELECT timestamp, transfer_id, debits_pending, debits_posted, credits_pending, credits_posted FROM"
          " balance_history WHERE account_id=?1 AND timestamp>=?2 AND timestamp<?3 ORDER BY timestamp LIMIT ?4";
    sqlite3_stmt *stmt;
    if (prepare(reader, sql, &stmt) != PC_OK) return PC_STORE_READ_FAILED;
    sqlite3_bind_text(stmt, 1, account_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, low);
    sqlite3_bind_int64(stmt, 3, high);
    sqlite3_bind_int64(stmt, 4, (int64_t)query->limit + 1);
    uint32_t emitted = 0;
    int rc;
    *has_more = false;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (emitted == query->limit) {
            *has_more = true;
            break;
        }
        ledger_history_t row = {0};
        row.transfer_timestamp_ns = (uint64_t)sqlite3_column_int64(stmt, 0);
        store_sqlite_text_copy(row.transfer_id, sizeof(row.transfer_id), stmt, 1);
        row.balances.debits_pending = sqlite3_column_int64(stmt, 2);
        row.balances.debits_posted = sqlite3_column_int64(stmt, 3);
        row.balances.credits_pending = sqlite3_column_int64(stmt, 4);
        row.balances.credits_posted = sqlite3_column_int64(stmt, 5);
        fn(&row, ctx);
        emitted++;
    }
    sqlite3_finalize(stmt);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? PC_OK : PC_STORE_READ_FAILED;
}
