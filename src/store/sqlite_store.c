/* store/sqlite_store.c: the SQLite backend's write side: open (kind and version
 * checks, migrations), load into the ledger, lookups for the ledger, and one
 * transaction per batch. WAL with synchronous=FULL: COMMIT returns after fsync, so a
 * batch is durable before any of its requests is answered. Writer thread only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/core.h"
#include "store/sqlite_internal.h"

enum {
    STMT_ACCOUNT_INSERT,
    STMT_ACCOUNT_UPDATE,
    STMT_TRANSFER_INSERT,
    STMT_PENDING_UPDATE,
    STMT_FAILURE_INSERT,
    STMT_HISTORY_INSERT,
    STMT_JOURNAL_INSERT,
    STMT_CHECKPOINT_INSERT,
    STMT_TRANSFER_FIND,
    STMT_FAILURE_FIND,
    STMT_COUNT,
};

static const char *const statement_sql[STMT_COUNT] = {
    [STMT_ACCOUNT_INSERT] =
        "INSERT INTO accounts(no, id, currency, code, flags, debits_pending, debits_posted,"
        " credits_pending, credits_posted, timestamp, metadata, batch_seq, row_hash)"
        " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)",
    [STMT_ACCOUNT_UPDATE] =
        "UPDATE accounts SET debits_pending=?, debits_posted=?, credits_pending=?,"
        " credits_posted=? WHERE no=?",
    [STMT_TRANSFER_INSERT] =
        "INSERT INTO transfers(timestamp, id, debit_account_id, credit_account_id, amount,"
        " currency, code, flags, pending_id, timeout_s, metadata, pending_state, batch_seq,"
        " row_hash) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    [STMT_PENDING_UPDATE] = "UPDATE transfers SET pending_state=? WHERE id=?",
    [STMT_FAILURE_INSERT] =
        "INSERT INTO transfer_failures(id, result, timestamp, batch_seq, row_hash) VALUES(?,?,?,?,?)",
    [STMT_HISTORY_INSERT] =
        "INSERT INTO balance_history(account_id, timestamp, transfer_id, debits_pending,"
        " debits_posted, credits_pending, credits_posted) VALUES(?,?,?,?,?,?,?)",
    [STMT_JOURNAL_INSERT] =
        "INSERT INTO journal(seq, timestamp_first, timestamp_last, account_count, transfer_count,"
        " failure_count, content_hash, prev_hash, hash, committed_ns) VALUES(?,?,?,?,?,?,?,?,?,?)",
    [STMT_CHECKPOINT_INSERT] =
        "INSERT INTO checkpoints(seq, hash, public_key, signature) VALUES(?,?,?,?)",
    [STMT_TRANSFER_FIND] =
        "SELECT timestamp, id, debit_account_id, credit_account_id, amount, currency, code, flags,"
        " pending_id, timeout_s, metadata, pending_state FROM transfers WHERE id=?",
    [STMT_FAILURE_FIND] = "SELECT result, timestamp FROM transfer_failures WHERE id=?",
};

struct store {
    sqlite3 *db;
    char *path;
    store_options_t options;
    sqlite3_stmt *statements[STMT_COUNT];
    uint32_t commit_count;
    char *metadata_scratch; /* transfer_find's metadata, valid until the next call */
    char error_detail[512];
};

struct store_tx {
    store_t *store;
};

static pc_status store_fail(store_t *store, pc_status status, const char *what) {
    snprintf(store->error_detail, sizeof(store->error_detail), "%s: %s (sqlite %d)", what,
             store->db ? sqlite3_errmsg(store->db) : "no connection",
             store->db ? sqlite3_extended_errcode(store->db) : 0);
    return status;
}

const char *store_error_detail(const store_t *store) { return store->error_detail; }
const char *store_path(const store_t *store) { return store->path; }

sqlite3 *store_sqlite_tx_db(store_tx_t *tx) { return tx->store->db; }

static int pragma_int(sqlite3 *db, const char *sql, int *value) {
    sqlite3_stmt *stmt;
    int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
    if (rc != SQLITE_OK) return rc;
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        *value = sqlite3_column_int(stmt, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(stmt);
    return rc;
}

/* Connection settings shared by the writer and readers. */
pc_status store_sqlite_configure(sqlite3 *db, bool synchronous_off) {
    char sql[256];
    snprintf(sql, sizeof(sql),
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA busy_timeout=10000;"
             " PRAGMA cache_size=-131072; PRAGMA temp_store=MEMORY;",
             synchronous_off ? "OFF" : "FULL");
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? PC_OK : PC_STORE_OPEN_FAILED;
}

/* A new file becomes a paycore database; an existing one must already be one. */
static pc_status schema_check_or_create(store_t *store) {
    int application_id = 0, user_version = 0, table_count = 0;
    if (pragma_int(store->db, "PRAGMA application_id", &application_id) != SQLITE_OK ||
        pragma_int(store->db, "PRAGMA user_version", &user_version) != SQLITE_OK ||
        pragma_int(store->db, "SELECT count(*) FROM sqlite_master", &table_count) != SQLITE_OK) {
        /* SQLITE_NOTADB and friends: some other file */
        return store_fail(store, PC_STORE_NOT_PAYCORE, "reading the database header");
    }
    bool empty = application_id == 0 && user_version == 0 && table_count == 0;
    if (!empty && application_id != store_sqlite_application_id()) {
        snprintf(store->error_detail, sizeof(store->error_detail),
                 "%s: application_id %d is not paycore's", store->path, application_id);
        return PC_STORE_NOT_PAYCORE;
    }
    if (user_version > store_sqlite_schema_version_latest()) {
        snprintf(store->error_detail, sizeof(store->error_detail),
                 "%s: schema version %d is newer than this paycore (%d)", store->path, user_version,
                 store_sqlite_schema_version_latest());
        return PC_STORE_VERSION_UNSUPPORTED;
    }
    if (user_version == store_sqlite_schema_version_latest()) return PC_OK;
    if (empty && !store->options.create) {
        snprintf(store->error_detail, sizeof(store->error_detail),
                 "%s: not initialised (run paycore init)", store->path);
        return PC_STORE_NOT_PAYCORE;
    }
    return PC_OK; /* migrations run next */
}

static pc_status schema_migrate(store_t *store) {
    int user_version = 0;
    if (pragma_int(store->db, "PRAGMA user_version", &user_version) != SQLITE_OK) {
        return store_fail(store, PC_STORE_OPEN_FAILED, "reading user_version");
    }
    if (user_version == store_sqlite_schema_version_latest()) return PC_OK;
    char *error = NULL;
    char sql[128];
    snprintf(sql, sizeof(sql), "PRAGMA application_id=%d; PRAGMA user_version=%d;",
             store_sqlite_application_id(), store_sqlite_schema_version_latest());
    if (sqlite3_exec(store->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
        store_sqlite_migrate(store->db, user_version, &error) != SQLITE_OK ||
        sqlite3_exec(store->db, sql, NULL, NULL, &error) != SQLITE_OK ||
        sqlite3_exec(store->db, "INSERT OR REPLACE INTO meta VALUES('format','paycore')", NULL, NULL, &error) != SQLITE_OK ||
        sqlite3_exec(store->db, "COMMIT", NULL, NULL, &error) != SQLITE_OK) {
        snprintf(store->error_detail, sizeof(store->error_detail), "migration: %s", error ? error : "?");
        sqlite3_free(error);
        sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
        return PC_STORE_OPEN_FAILED;
    }
    return PC_OK;
}

static pc_status statements_prepare(store_t *store) {
    for (int i = 0; i < STMT_COUNT; i++) {
        if (sqlite3_prepare_v3(store->db, statement_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &store->statements[i], NULL) != SQLITE_OK) {
            return store_fail(store, PC_STORE_OPEN_FAILED, statement_sql[i]);
        }
    }
    return PC_OK;
}

static pc_status store_open_steps(store_t *store) {
    struct stat st;
    bool exists = stat(store->path, &st) == 0;
    if (!exists && !store->options.create) {
        snprintf(store->error_detail, sizeof(store->error_detail), "%s: no such database (run paycore init)", store->path);
        return PC_STORE_OPEN_FAILED;
    }
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (store->options.create ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(store->path, &store->db, flags, NULL) != SQLITE_OK) {
        return store_fail(store, PC_STORE_OPEN_FAILED, "open");
    }
    sqlite3_extended_result_codes(store->db, 1);
    pc_status status = schema_check_or_create(store);
    if (status != PC_OK) return status;
    if (store_sqlite_configure(store->db, store->options.synchronous_off) != PC_OK) {
        return store_fail(store, PC_STORE_OPEN_FAILED, "configure");
    }
    status = schema_migrate(store);
    if (status != PC_OK) return status;
    return statements_prepare(store);
}

pc_status store_open(store_t **out, const char *path, const store_options_t *options) {
    store_t *store = calloc(1, sizeof(*store));
    if (store == NULL) return PC_NO_MEMORY;
    store->path = pc_strdup(path);
    if (options != NULL) store->options = *options;
    pc_status status = store->path ? store_open_steps(store) : PC_NO_MEMORY;
    if (status != PC_OK) {
        fprintf(stderr, "{\"level\":\"error\",\"msg\":\"store open failed\",\"code\":\"%s\",\"detail\":\"%s\"}\n",
                pc_status_code(status), store->error_detail);
        store_close(store);
        return status;
    }
    *out = store;
    return PC_OK;
}

void store_close(store_t *store) {
    if (store == NULL) return;
    for (int i = 0; i < STMT_COUNT; i++) sqlite3_finalize(store->statements[i]);
    if (store->db != NULL) sqlite3_close(store->db);
    free(store->metadata_scratch);
    free(store->path);
    free(store);
}

/* ---- load ---- */

static void column_copy(char *dst, size_t dst_size, sqlite3_stmt *stmt, int column) {
    const unsigned char *text = sqlite3_column_text(stmt, column);
    snprintf(dst, dst_size, "%s", text ? (const char *)text : "");
}

static pc_status load_accounts(store_t *store, ledger_t *ledger) {
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(store->db,
                           "SELECT id, currency, code, flags, debits_pending, debits_posted, credits_pending,"
                           " credits_posted, timestamp, metadata, no FROM accounts ORDER BY no",
                           -1, &stmt, NULL) != SQLITE_OK) {
        return store_fail(store, PC_STORE_READ_FAILED, "load accounts");
    }
    pc_status status = PC_OK;
    uint32_t expected_no = 0;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        ledger_account_t account = {0};
        column_copy(account.id, sizeof(account.id), stmt, 0);
        column_copy(account.currency, sizeof(account.currency), stmt, 1);
        account.code = (uint16_t)sqlite3_column_int(stmt, 2);
        account.flags = (uint16_t)sqlite3_column_int(stmt, 3);
        account.balances.debits_pending = sqlite3_column_int64(stmt, 4);
        account.balances.debits_posted = sqlite3_column_int64(stmt, 5);
        account.balances.credits_pending = sqlite3_column_int64(stmt, 6);
        account.balances.credits_posted = sqlite3_column_int64(stmt, 7);
        account.timestamp_ns = (uint64_t)sqlite3_column_int64(stmt, 8);
        account.metadata_json = (const char *)sqlite3_column_text(stmt, 9);
        if ((uint32_t)sqlite3_column_int64(stmt, 10) != expected_no++) {
            status = PC_STORE_READ_FAILED; /* account numbers must be dense: indices */
            snprintf(store->error_detail, sizeof(store->error_detail), "account numbers not dense at %s", account.id);
            break;
        }
        status = ledger_load_account(ledger, &account);
        if (status != PC_OK) break;
    }
    if (status == PC_OK && rc != SQLITE_DONE) status = store_fail(store, PC_STORE_READ_FAILED, "load accounts");
    sqlite3_finalize(stmt);
    return status;
}

static void transfer_from_row(sqlite3_stmt *stmt, ledger_transfer_t *t) {
    memset(t, 0, sizeof(*t));
    t->timestamp_ns = (uint64_t)sqlite3_column_int64(stmt, 0);
    column_copy(t->id, sizeof(t->id), stmt, 1);
    column_copy(t->debit_account_id, sizeof(t->debit_account_id), stmt, 2);
    column_copy(t->credit_account_id, sizeof(t->credit_account_id), stmt, 3);
    t->amount = sqlite3_column_int64(stmt, 4);
    column_copy(t->currency, sizeof(t->currency), stmt, 5);
    t->code = (uint16_t)sqlite3_column_int(stmt, 6);
    t->flags = (uint16_t)sqlite3_column_int(stmt, 7);
    column_copy(t->pending_id, sizeof(t->pending_id), stmt, 8);
    t->timeout_s = (uint32_t)sqlite3_column_int64(stmt, 9);
    t->metadata_json = (const char *)sqlite3_column_text(stmt, 10);
}

static pc_status load_pendings(store_t *store, ledger_t *ledger) {
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(store->db,
                           "SELECT timestamp, id, debit_account_id, credit_account_id, amount, currency, code,"
                           " flags, pending_id, timeout_s, metadata FROM transfers WHERE pending_state = 1",
                           -1, &stmt, NULL) != SQLITE_OK) {
        return store_fail(store, PC_STORE_READ_FAILED, "load pending");
    }
    pc_status status = PC_OK;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        ledger_transfer_t pending;
        transfer_from_row(stmt, &pending);
        status = ledger_load_pending(ledger, &pending);
        if (status != PC_OK) break;
    }
    if (status == PC_OK && rc != SQLITE_DONE) status = store_fail(store, PC_STORE_READ_FAILED, "load pending");
    sqlite3_finalize(stmt);
    return status;
}

static pc_status load_clock_and_head(store_t *store, ledger_t *ledger, journal_entry_t *head) {
    sqlite3_stmt *stmt;
    const char *sql =
        "SELECT max((SELECT coalesce(max(timestamp),0) FROM transfers),"
        " (SELECT coalesce(max(timestamp),0) FROM accounts),"
        " (SELECT coalesce(max(timestamp),0) FROM transfer_failures),"
        " (SELECT coalesce(max(timestamp_last),0) FROM journal))";
    if (sqlite3_prepare_v2(store->db, sql, -1, &stmt, NULL) != SQLITE_OK) {
        return store_fail(store, PC_STORE_READ_FAILED, "load clock");
    }
    if (sqlite3_step(stmt) == SQLITE_ROW) ledger_load_clock(ledger, (uint64_t)sqlite3_column_int64(stmt, 0));
    sqlite3_finalize(stmt);
    memset(head, 0, sizeof(*head));
    if (sqlite3_prepare_v2(store->db, "SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1", -1, &stmt,
                           NULL) != SQLITE_OK) {
        return store_fail(store, PC_STORE_READ_FAILED, "load journal head");
    }
    if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_bytes(stmt, 1) == JOURNAL_HASH_BYTES) {
        head->seq = (uint64_t)sqlite3_column_int64(stmt, 0);
        memcpy(head->hash, sqlite3_column_blob(stmt, 1), JOURNAL_HASH_BYTES);
    }
    sqlite3_finalize(stmt);
    return PC_OK;
}

pc_status store_load(store_t *store, ledger_t *ledger, journal_entry_t *head) {
    pc_status status = load_accounts(store, ledger);
    if (status == PC_OK) status = load_pendings(store, ledger);
    if (status == PC_OK) status = load_clock_and_head(store, ledger, head);
    return status;
}

/* ---- the ledger's lookups ---- */

static pc_status failure_find(store_t *store, const char *id, ledger_transfer_record_t *out) {
    sqlite3_stmt *stmt = store->statements[STMT_FAILURE_FIND];
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    pc_status status = PC_NOT_FOUND;
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof(*out));
        const char *code = (const char *)sqlite3_column_text(stmt, 0);
        if (code == NULL || !pc_status_from_code(code, &out->failure)) out->failure = PC_INTERNAL;
        status = PC_OK;
    } else if (rc != SQLITE_DONE) {
        status = store_fail(store, PC_STORE_READ_FAILED, "find failure");
    }
    sqlite3_reset(stmt);
    return status;
}

static pc_status source_transfer_find(void *ctx, const char *id, ledger_transfer_record_t *out) {
    store_t *store = ctx;
    sqlite3_stmt *stmt = store->statements[STMT_TRANSFER_FIND];
    sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof(*out));
        transfer_from_row(stmt, &out->transfer);
        free(store->metadata_scratch);
        store->metadata_scratch = pc_strdup(out->transfer.metadata_json);
        out->transfer.metadata_json = store->metadata_scratch;
        out->pending_state = (ledger_pending_state)sqlite3_column_int(stmt, 11);
        out->failure = PC_OK;
        sqlite3_reset(stmt);
        return PC_OK;
    }
    sqlite3_reset(stmt);
    if (rc != SQLITE_DONE) return store_fail(store, PC_STORE_READ_FAILED, "find transfer");
    return failure_find(store, id, out);
}

ledger_source_t store_source(store_t *store) {
    return (ledger_source_t){source_transfer_find, store};
}

/* ---- one transaction per batch ---- */

static pc_status step_done(store_t *store, sqlite3_stmt *stmt, const char *what) {
    int rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    if (rc != SQLITE_DONE) return store_fail(store, PC_STORE_COMMIT_FAILED, what);
    return PC_OK;
}

static void bind_text_or_null(sqlite3_stmt *stmt, int index, const char *text) {
    if (text == NULL || text[0] == '\0') sqlite3_bind_null(stmt, index);
    else sqlite3_bind_text(stmt, index, text, -1, SQLITE_STATIC);
}

static void bind_balances(sqlite3_stmt *stmt, int first, const ledger_balances_t *b) {
    sqlite3_bind_int64(stmt, first, b->debits_pending);
    sqlite3_bind_int64(stmt, first + 1, b->debits_posted);
    sqlite3_bind_int64(stmt, first + 2, b->credits_pending);
    sqlite3_bind_int64(stmt, first + 3, b->credits_posted);
}

pc_status store_tx_begin(store_t *store, store_tx_t **out) {
    store_tx_t *tx = calloc(1, sizeof(*tx));
    if (tx == NULL) return PC_NO_MEMORY;
    tx->store = store;
    if (sqlite3_exec(store->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        free(tx);
        return store_fail(store, PC_STORE_COMMIT_FAILED, "begin");
    }
    *out = tx;
    return PC_OK;
}

static pc_status write_account_created(store_t *store, const ledger_account_t *a, uint32_t index,
                                       uint64_t batch_seq, journal_content_t *content) {
    uint8_t row_hash[JOURNAL_ROW_HASH_BYTES];
    journal_row_hash_account(a, row_hash);
    journal_content_add(content, row_hash);
    sqlite3_stmt *stmt = store->statements[STMT_ACCOUNT_INSERT];
    sqlite3_bind_int64(stmt, 1, index);
    sqlite3_bind_text(stmt, 2, a->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, a->currency, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 4, a->code);
    sqlite3_bind_int(stmt, 5, a->flags);
    bind_balances(stmt, 6, &a->balances);
    sqlite3_bind_int64(stmt, 10, (int64_t)a->timestamp_ns);
    if (a->metadata_json) sqlite3_bind_text(stmt, 11, a->metadata_json, -1, SQLITE_STATIC);
    else sqlite3_bind_null(stmt, 11);
    sqlite3_bind_int64(stmt, 12, (int64_t)batch_seq);
    sqlite3_bind_blob(stmt, 13, row_hash, sizeof(row_hash), SQLITE_STATIC);
    return step_done(store, stmt, "insert account");
}

static pc_status write_account_balances(store_t *store, const ledger_account_t *a, uint32_t index) {
    sqlite3_stmt *stmt = store->statements[STMT_ACCOUNT_UPDATE];
    bind_balances(stmt, 1, &a->balances);
    sqlite3_bind_int64(stmt, 5, index);
    return step_done(store, stmt, "update account");
}

static pc_status write_transfer(store_t *store, const ledger_transfer_t *t, uint64_t batch_seq,
                                journal_content_t *content) {
    uint8_t row_hash[JOURNAL_ROW_HASH_BYTES];
    journal_row_hash_transfer(t, row_hash);
    journal_content_add(content, row_hash);
    sqlite3_stmt *stmt = store->statements[STMT_TRANSFER_INSERT];
    sqlite3_bind_int64(stmt, 1, (int64_t)t->timestamp_ns);
    sqlite3_bind_text(stmt, 2, t->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, t->debit_account_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, t->credit_account_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 5, t->amount);
    sqlite3_bind_text(stmt, 6, t->currency, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 7, t->code);
    sqlite3_bind_int(stmt, 8, t->flags);
    bind_text_or_null(stmt, 9, t->pending_id);
    sqlite3_bind_int64(stmt, 10, t->timeout_s);
    if (t->metadata_json) sqlite3_bind_text(stmt, 11, t->metadata_json, -1, SQLITE_STATIC);
    else sqlite3_bind_null(stmt, 11);
    sqlite3_bind_int(stmt, 12, (t->flags & LEDGER_TRANSFER_PENDING) ? LEDGER_PENDING_OPEN : LEDGER_PENDING_NONE);
    sqlite3_bind_int64(stmt, 13, (int64_t)batch_seq);
    sqlite3_bind_blob(stmt, 14, row_hash, sizeof(row_hash), SQLITE_STATIC);
    return step_done(store, stmt, "insert transfer");
}

static pc_status write_failure(store_t *store, const ledger_failure_t *f, uint64_t batch_seq,
                               journal_content_t *content) {
    uint8_t row_hash[JOURNAL_ROW_HASH_BYTES];
    journal_row_hash_failure(f, row_hash);
    journal_content_add(content, row_hash);
    sqlite3_stmt *stmt = store->statements[STMT_FAILURE_INSERT];
    sqlite3_bind_text(stmt, 1, f->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, pc_status_code(f->failure), -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 3, (int64_t)f->timestamp_ns);
    sqlite3_bind_int64(stmt, 4, (int64_t)batch_seq);
    sqlite3_bind_blob(stmt, 5, row_hash, sizeof(row_hash), SQLITE_STATIC);
    return step_done(store, stmt, "insert failure");
}

static pc_status write_history(store_t *store, const ledger_t *ledger, const ledger_history_t *h) {
    sqlite3_stmt *stmt = store->statements[STMT_HISTORY_INSERT];
    sqlite3_bind_text(stmt, 1, ledger_account_at(ledger, h->account_index)->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, (int64_t)h->transfer_timestamp_ns);
    sqlite3_bind_text(stmt, 3, h->transfer_id, -1, SQLITE_STATIC);
    bind_balances(stmt, 4, &h->balances);
    return step_done(store, stmt, "insert history");
}

static pc_status write_pending_change(store_t *store, const ledger_pending_change_t *c) {
    sqlite3_stmt *stmt = store->statements[STMT_PENDING_UPDATE];
    sqlite3_bind_int(stmt, 1, c->state);
    sqlite3_bind_text(stmt, 2, c->pending_id, -1, SQLITE_STATIC);
    return step_done(store, stmt, "update pending");
}

static pc_status write_accounts(store_t *store, const ledger_t *ledger, const ledger_changes_t *c,
                                uint64_t batch_seq, journal_content_t *content) {
    /* Accounts created in this batch are the last ones of the table. */
    uint32_t first_created = ledger_account_count(ledger) - c->accounts_created_count;
    for (uint32_t i = 0; i < c->accounts_created_count; i++) {
        uint32_t index = c->accounts_created[i];
        PC_ASSERT(index == first_created + i);
        pc_status status = write_account_created(store, ledger_account_at(ledger, index), index, batch_seq, content);
        if (status != PC_OK) return status;
    }
    for (uint32_t i = 0; i < c->accounts_touched_count; i++) {
        uint32_t index = c->accounts_touched[i];
        if (index >= first_created) continue; /* inserted with current balances */
        pc_status status = write_account_balances(store, ledger_account_at(ledger, index), index);
        if (status != PC_OK) return status;
    }
    return PC_OK;
}

pc_status store_tx_write_changes(store_tx_t *tx, const ledger_t *ledger, const ledger_changes_t *c,
                                 uint64_t batch_seq, journal_content_t *content) {
    store_t *store = tx->store;
    pc_status status = write_accounts(store, ledger, c, batch_seq, content);
    for (uint32_t i = 0; status == PC_OK && i < c->transfers_count; i++) {
        status = write_transfer(store, &c->transfers[i], batch_seq, content);
    }
    for (uint32_t i = 0; status == PC_OK && i < c->failures_count; i++) {
        status = write_failure(store, &c->failures[i], batch_seq, content);
    }
    for (uint32_t i = 0; status == PC_OK && i < c->pending_changes_count; i++) {
        status = write_pending_change(store, &c->pending_changes[i]);
    }
    for (uint32_t i = 0; status == PC_OK && i < c->history_count; i++) {
        status = write_history(store, ledger, &c->history[i]);
    }
    return status;
}

pc_status store_tx_write_journal(store_tx_t *tx, const journal_entry_t *e, const journal_checkpoint_t *cp) {
    store_t *store = tx->store;
    sqlite3_stmt *stmt = store->statements[STMT_JOURNAL_INSERT];
    sqlite3_bind_int64(stmt, 1, (int64_t)e->seq);
    sqlite3_bind_int64(stmt, 2, (int64_t)e->timestamp_first_ns);
    sqlite3_bind_int64(stmt, 3, (int64_t)e->timestamp_last_ns);
    sqlite3_bind_int64(stmt, 4, e->account_count);
    sqlite3_bind_int64(stmt, 5, e->transfer_count);
    sqlite3_bind_int64(stmt, 6, e->failure_count);
    sqlite3_bind_blob(stmt, 7, e->content_hash, JOURNAL_HASH_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob(stmt, 8, e->prev_hash, JOURNAL_HASH_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob(stmt, 9, e->hash, JOURNAL_HASH_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 10, (int64_t)pc_wall_ns());
    pc_status status = step_done(store, stmt, "insert journal");
    if (status != PC_OK || cp == NULL) return status;
    stmt = store->statements[STMT_CHECKPOINT_INSERT];
    sqlite3_bind_int64(stmt, 1, (int64_t)cp->seq);
    sqlite3_bind_blob(stmt, 2, cp->hash, JOURNAL_HASH_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob(stmt, 3, cp->public_key, JOURNAL_PUBLIC_KEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob(stmt, 4, cp->signature, JOURNAL_SIGNATURE_BYTES, SQLITE_STATIC);
    return step_done(store, stmt, "insert checkpoint");
}

pc_status store_tx_commit(store_tx_t *tx) {
    store_t *store = tx->store;
    store->commit_count++;
    if (store->options.fault_commit_at != 0 && store->commit_count == store->options.fault_commit_at) {
        snprintf(store->error_detail, sizeof(store->error_detail), "injected commit fault at commit %u",
                 store->commit_count);
        store_tx_rollback(tx);
        return PC_STORE_COMMIT_FAILED;
    }
    if (sqlite3_exec(store->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        pc_status status = store_fail(store, PC_STORE_COMMIT_FAILED, "commit");
        store_tx_rollback(tx);
        return status;
    }
    free(tx);
    return PC_OK;
}

void store_tx_rollback(store_tx_t *tx) {
    if (!sqlite3_get_autocommit(tx->store->db)) {
        sqlite3_exec(tx->store->db, "ROLLBACK", NULL, NULL, NULL);
    }
    free(tx);
}
