/* store/sqlite_tx.c: one SQLite transaction per writer batch, and the balance
 * snapshot. Writer thread only.
 *
 * What a batch with ledger rows writes: its transfers (appended by timestamp),
 * created accounts (zero balances), burned ids, pending-state updates, history rows
 * and its journal row, seq = journal head + 1. A transaction without ledger rows
 * (API keys, idempotency records) writes its commands' rows and takes no seq.
 *
 * The balance snapshot: every STORE_BALANCE_SNAPSHOT_BATCHES batches (and at a clean
 * stop) the account rows of every account changed since the last snapshot get their
 * balances, as of the batch's seq, recorded in meta.accounts_as_of_seq. The dirty
 * list holds the accounts of committed batches only: a batch's accounts join it
 * after its COMMIT, so a rolled-back batch leaves nothing there (its created
 * accounts no longer exist).
 *
 * Failures: an error before COMMIT rolls back and leaves nothing. A failed COMMIT
 * (or ROLLBACK), an I/O error or a damaged file leaves the file in a state memory
 * cannot know (SQLite may recover a batch whose fsync failed at the next open): the
 * store is then failed for good and refuses every later write. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "store/sqlite_internal.h"

typedef struct {
    store_tx_t base;                 /* first: store.c finds the store there */
    sqlite_store_t *store;
    const ledger_t *ledger;
    const ledger_changes_t *changes; /* NULL: a transaction without ledger rows */
    uint64_t batch_seq;              /* 0 unless changes were written */
    bool journal_written;
    bool snapshot_written;
    store_index_entry_t *index_entries;
    uint32_t index_entry_count;
} sqlite_tx_t;

sqlite3 *store_sqlite_tx_db(store_tx_t *tx) { return ((sqlite_tx_t *)tx)->store->db; }
sqlite_store_t *store_sqlite_tx_store(store_tx_t *tx) { return ((sqlite_tx_t *)tx)->store; }
store_conn_t store_sqlite_tx_conn(store_tx_t *tx) {
    sqlite_store_t *store = ((sqlite_tx_t *)tx)->store;
    return (store_conn_t){.cache = &store->stmt_cache, .db = store->db};
}

/* ---- failures ---- */

static bool error_may_pass(int primary) {
    return primary == SQLITE_FULL || primary == SQLITE_BUSY || primary == SQLITE_LOCKED;
}

static bool error_fatal(int primary) {
    return primary == SQLITE_IOERR || primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB ||
           primary == SQLITE_CANTOPEN || primary == SQLITE_READONLY;
}

/* Classifies the connection's last error after a failed write ('at_commit': COMMIT
 * or ROLLBACK itself failed) and returns the status the batch gets. */
static pc_status write_failed(sqlite_store_t *store, const char *what, bool at_commit) {
    int primary = sqlite3_errcode(store->db) & 0xff;
    bool fatal = at_commit || error_fatal(primary);
    pc_status status = fatal ? PC_STORE_FAILED
                       : primary == SQLITE_BUSY || primary == SQLITE_LOCKED ? PC_STORE_BUSY
                                                                           : PC_STORE_COMMIT_FAILED;
    if (store->failed == PC_OK) store_sqlite_fail(store, status, what);
    if (fatal) store->failed = PC_STORE_FAILED;
    if (error_may_pass(primary)) store->writable = false;
    return status;
}

/* A kept statement without parameters or rows (BEGIN IMMEDIATE, COMMIT): true when it
 * worked; else the connection's error is the statement's (sqlite3_reset passes it on). */
static bool step_reset_ok(sqlite3_stmt *stmt) {
    int rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE;
}

static pc_status step_done(sqlite_store_t *store, sqlite3_stmt *stmt, const char *what) {
    int rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? PC_OK : write_failed(store, what, false);
}

/* ---- rows ---- */

static void bind_balances(sqlite3_stmt *stmt, int first, const ledger_balances_t *b) {
    sqlite3_bind_int64(stmt, first, b->debits_pending);
    sqlite3_bind_int64(stmt, first + 1, b->debits_posted);
    sqlite3_bind_int64(stmt, first + 2, b->credits_pending);
    sqlite3_bind_int64(stmt, first + 3, b->credits_posted);
}

/* A new account row starts at zero: its balances come from replay until the next
 * balance snapshot writes them (the row's balances are always as of
 * accounts_as_of_seq). */
static pc_status write_account_created(sqlite_store_t *store, const ledger_account_t *a, uint32_t index,
                                       uint64_t batch_seq, journal_content_t *content) {
    uint8_t row_hash[JOURNAL_ROW_HASH_BYTES];
    journal_row_hash_account(a, row_hash);
    journal_content_add(content, row_hash);
    static const ledger_balances_t zero;
    sqlite3_stmt *stmt = store->statements[STMT_ACCOUNT_INSERT];
    sqlite3_bind_int64(stmt, 1, index);
    sqlite3_bind_text(stmt, 2, a->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, a->currency, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 4, a->code);
    sqlite3_bind_int(stmt, 5, a->flags);
    bind_balances(stmt, 6, &zero);
    sqlite3_bind_int64(stmt, 10, (int64_t)a->timestamp_ns);
    if (a->metadata_json) sqlite3_bind_text(stmt, 11, a->metadata_json, -1, SQLITE_STATIC);
    else sqlite3_bind_null(stmt, 11);
    sqlite3_bind_int64(stmt, 12, (int64_t)batch_seq);
    sqlite3_bind_blob(stmt, 13, row_hash, sizeof(row_hash), SQLITE_STATIC);
    return step_done(store, stmt, "insert account");
}

/* Transfers are appended with the batch's other rows, 16 a statement (sqlite_rows.c):
 * a one-row INSERT paid the statement's own costs for each. Read back in the same
 * transaction only by the pending updates and the ledger's lookups, which insert the
 * waiting rows first (transfer_rows_flush). OR FAIL: no statement journal; a row that
 * fails (a timestamp stored already) fails the batch, whose ROLLBACK undoes the rest. */
#define TRANSFER_INSERT_PREFIX                                                                                 \
    "INSERT OR FAIL INTO transfers(timestamp, id, debit_account_id, credit_account_id, amount, currency, code, flags," \
    " pending_id, timeout_s, metadata, pending_state, batch_seq, row_hash) VALUES"
#define TRANSFER_COLUMNS 14

static void rows_text_or_null(store_sqlite_rows_t *rows, const char *text) {
    if (text == NULL) store_sqlite_rows_null(rows);
    else store_sqlite_rows_text(rows, text, strlen(text));
}

static pc_status write_transfer(sqlite_store_t *store, const ledger_transfer_t *t, uint64_t batch_seq,
                                journal_content_t *content) {
    uint8_t row_hash[JOURNAL_ROW_HASH_BYTES];
    journal_row_hash_transfer(t, row_hash);
    journal_content_add(content, row_hash);
    if (store->transfer_rows == NULL &&
        store_sqlite_rows_new(store, TRANSFER_INSERT_PREFIX, TRANSFER_COLUMNS, &store->transfer_rows) != PC_OK) {
        return write_failed(store, "insert transfer", false);
    }
    store_sqlite_rows_t *rows = store->transfer_rows;
    store_sqlite_rows_int(rows, (int64_t)t->timestamp_ns);
    store_sqlite_rows_text(rows, t->id, strlen(t->id));
    store_sqlite_rows_text(rows, t->debit_account_id, strlen(t->debit_account_id));
    store_sqlite_rows_text(rows, t->credit_account_id, strlen(t->credit_account_id));
    store_sqlite_rows_int(rows, t->amount);
    store_sqlite_rows_text(rows, t->currency, strlen(t->currency));
    store_sqlite_rows_int(rows, t->code);
    store_sqlite_rows_int(rows, t->flags);
    rows_text_or_null(rows, t->pending_id[0] != '\0' ? t->pending_id : NULL);
    store_sqlite_rows_int(rows, t->timeout_s);
    rows_text_or_null(rows, t->metadata_json);
    store_sqlite_rows_int(rows, (t->flags & LEDGER_TRANSFER_PENDING) ? LEDGER_PENDING_OPEN : LEDGER_PENDING_NONE);
    store_sqlite_rows_int(rows, (int64_t)batch_seq);
    store_sqlite_rows_blob(rows, row_hash, sizeof(row_hash));
    return store_sqlite_rows_end_row(rows) == PC_OK ? PC_OK : write_failed(store, "insert transfer", false);
}

pc_status store_sqlite_transfer_rows_flush(sqlite_store_t *store) {
    if (store->transfer_rows == NULL || !store_sqlite_rows_waiting(store->transfer_rows)) return PC_OK;
    if (store_sqlite_rows_flush(store->transfer_rows) == PC_OK) return PC_OK;
    return write_failed(store, "insert transfer", false);
}

static pc_status write_failure(sqlite_store_t *store, const ledger_failure_t *f, uint64_t batch_seq,
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

static pc_status write_history(sqlite_store_t *store, const ledger_t *ledger, const ledger_history_t *h) {
    sqlite3_stmt *stmt = store->statements[STMT_HISTORY_INSERT];
    sqlite3_bind_text(stmt, 1, ledger_account_at(ledger, h->account_index)->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, (int64_t)h->transfer_timestamp_ns);
    sqlite3_bind_text(stmt, 3, h->transfer_id, -1, SQLITE_STATIC);
    bind_balances(stmt, 4, &h->balances);
    return step_done(store, stmt, "insert history");
}

/* ---- the pending transfers' new states, several a statement ----
 * A capture or a void changes its pending transfer's state, and one UPDATE a change paid
 * SQLite's statement costs each time (~11.3k writer instructions a card payment's
 * capture, callgrind). The batch's changes to one state go in as one "UPDATE OR FAIL
 * transfers SET pending_state = ?1 WHERE timestamp IN (?2, ...)" of up to
 * STORE_SQLITE_PENDING_UPDATE_ROWS_MAX rows, the statement of each count prepared once
 * and kept. OR FAIL: an UPDATE that may change several rows and may abort (its NOT NULL
 * checks) makes SQLite copy each page it changes into a statement journal first; a
 * failure fails the batch, whose ROLLBACK undoes the rows before it anyway. A batch
 * changes a pending transfer once at most (the ledger refuses a second resolution), so
 * the order of the changes does not matter. */
static pc_status pending_update_statement(sqlite_store_t *store, uint32_t count, sqlite3_stmt **out) {
    PC_ASSERT(count >= 1 && count <= STORE_SQLITE_PENDING_UPDATE_ROWS_MAX);
    sqlite3_stmt **kept = &store->pending_updates[count - 1];
    if (*kept == NULL) {
        char sql[96 + 2 * STORE_SQLITE_PENDING_UPDATE_ROWS_MAX];
        int at = snprintf(sql, sizeof sql, "UPDATE OR FAIL transfers SET pending_state = ?1 WHERE timestamp IN (?");
        for (uint32_t i = 1; i < count; i++) at += snprintf(sql + at, sizeof sql - (size_t)at, ",?");
        snprintf(sql + at, sizeof sql - (size_t)at, ")");
        if (store_sqlite_prepare(store->db, sql, kept, PC_STORE_COMMIT_FAILED) != PC_OK) {
            *kept = NULL;
            return write_failed(store, "prepare pending update", false);
        }
    }
    *out = *kept;
    return PC_OK;
}

/* The rows of 'timestamps_ns' set to 'state'. */
static pc_status pending_update_run(sqlite_store_t *store, int state, const uint64_t *timestamps_ns, uint32_t count) {
    sqlite3_stmt *stmt = NULL;
    pc_status status = pending_update_statement(store, count, &stmt);
    if (status != PC_OK) return status;
    sqlite3_bind_int(stmt, 1, state);
    for (uint32_t i = 0; i < count; i++) sqlite3_bind_int64(stmt, (int)i + 2, (int64_t)timestamps_ns[i]);
    return step_done(store, stmt, "update pending");
}

static pc_status write_pending_changes(sqlite_store_t *store, const ledger_pending_change_t *changes, uint32_t count) {
    pc_status status = PC_OK;
    for (int state = LEDGER_PENDING_NONE; status == PC_OK && state <= LEDGER_PENDING_EXPIRED; state++) {
        uint64_t timestamps_ns[STORE_SQLITE_PENDING_UPDATE_ROWS_MAX];
        uint32_t waiting = 0;
        for (uint32_t i = 0; status == PC_OK && i < count; i++) {
            if ((int)changes[i].state != state) continue;
            timestamps_ns[waiting++] = changes[i].pending_timestamp_ns;
            if (waiting < STORE_SQLITE_PENDING_UPDATE_ROWS_MAX) continue;
            status = pending_update_run(store, state, timestamps_ns, waiting);
            waiting = 0;
        }
        if (status == PC_OK && waiting > 0) status = pending_update_run(store, state, timestamps_ns, waiting);
    }
    return status;
}

static pc_status meta_set(sqlite_store_t *store, const char *key, int64_t value) {
    sqlite3_stmt *stmt = store->statements[STMT_META_SET];
    sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, value);
    return step_done(store, stmt, "meta");
}

/* ---- the balance snapshot ---- */

/* Writes the balances of every dirty account and of 'extra' (the batch being
 * written, not yet committed), as of journal seq 'seq'. In rowid order: each B-tree
 * page is visited once (5x faster than the order the accounts were touched in). The
 * dirty list itself changes only after COMMIT. */
static pc_status balance_snapshot_write(sqlite_store_t *store, const ledger_t *ledger, const uint32_t *extra,
                                        uint32_t extra_count, uint64_t seq) {
    PC_ASSERT(seq >= store->accounts_as_of_seq);
    uint32_t count = 0;
    uint32_t *nos = store_dirty_sorted(&store->dirty, extra, extra_count, &count);
    if (nos == NULL) return PC_NO_MEMORY;
    uint32_t account_count = ledger_account_count(ledger);
    sqlite3_stmt *stmt = store->statements[STMT_ACCOUNT_UPDATE];
    pc_status status = PC_OK;
    for (uint32_t i = 0; status == PC_OK && i < count; i++) {
        PC_ASSERT(nos[i] < account_count); /* a number the ledger still holds */
        bind_balances(stmt, 1, &ledger_account_at(ledger, nos[i])->balances);
        sqlite3_bind_int64(stmt, 5, nos[i]);
        status = step_done(store, stmt, "balance snapshot");
    }
    free(nos);
    return status == PC_OK ? meta_set(store, "accounts_as_of_seq", (int64_t)seq) : status;
}

/* ---- one transaction per batch ---- */

pc_status store_sqlite_tx_begin(store_t *base, store_tx_t **out) {
    sqlite_store_t *store = (sqlite_store_t *)base;
    if (store->failed != PC_OK) return store->failed;
    pc_status status = store_sqlite_index_room(store); /* back-pressure before a batch, never after its COMMIT */
    if (status != PC_OK) return status;
    sqlite_tx_t *tx = calloc(1, sizeof(*tx));
    if (tx == NULL) return PC_NO_MEMORY;
    tx->base.store = base;
    tx->store = store;
    if (!step_reset_ok(store->statements[STMT_BEGIN])) {
        free(tx);
        return write_failed(store, "begin", false);
    }
    *out = &tx->base;
    return PC_OK;
}

static pc_status write_transfers(sqlite_tx_t *tx, const ledger_changes_t *c, journal_content_t *content) {
    sqlite_store_t *store = tx->store;
    tx->index_entries = malloc(sizeof(store_index_entry_t) * (c->transfers_count ? c->transfers_count : 1));
    if (tx->index_entries == NULL) return PC_NO_MEMORY;
    for (uint32_t i = 0; i < c->transfers_count; i++) {
        const ledger_transfer_t *t = &c->transfers[i];
        pc_status status = write_transfer(store, t, tx->batch_seq, content);
        if (status != PC_OK) return status;
        tx->index_entries[tx->index_entry_count++] = (store_index_entry_t){
            store_index_key(store->index, t->id), t->timestamp_ns, c->transfer_accounts[2 * i], c->transfer_accounts[2 * i + 1]};
    }
    return PC_OK;
}

static bool changes_have_rows(const ledger_changes_t *c) {
    return c->accounts_created_count + c->transfers_count + c->failures_count > 0;
}

static pc_status write_rows(sqlite_tx_t *tx, const ledger_changes_t *c, journal_content_t *content) {
    sqlite_store_t *store = tx->store;
    uint32_t first_created = ledger_account_count(tx->ledger) - c->accounts_created_count;
    pc_status status = PC_OK;
    for (uint32_t i = 0; status == PC_OK && i < c->accounts_created_count; i++) {
        PC_ASSERT(c->accounts_created[i] == first_created + i);
        status = write_account_created(store, ledger_account_at(tx->ledger, first_created + i), first_created + i,
                                       tx->batch_seq, content);
    }
    if (status == PC_OK) status = write_transfers(tx, c, content);
    for (uint32_t i = 0; status == PC_OK && i < c->failures_count; i++) {
        status = write_failure(store, &c->failures[i], tx->batch_seq, content);
    }
    /* the updates may name a transfer of this batch */
    if (status == PC_OK && c->pending_changes_count > 0) status = store_sqlite_transfer_rows_flush(store);
    if (status == PC_OK) status = write_pending_changes(store, c->pending_changes, c->pending_changes_count);
    for (uint32_t i = 0; status == PC_OK && i < c->history_count; i++) {
        status = write_history(store, tx->ledger, &c->history[i]);
    }
    return status;
}

pc_status store_sqlite_tx_write_changes(store_tx_t *base, const ledger_t *ledger, const ledger_changes_t *c,
                                        uint64_t batch_seq, journal_content_t *content) {
    sqlite_tx_t *tx = (sqlite_tx_t *)base;
    sqlite_store_t *store = tx->store;
    PC_ASSERT(tx->changes == NULL);                      /* once a transaction */
    PC_ASSERT(changes_have_rows(c));                     /* a seq only with a journal row */
    PC_ASSERT(batch_seq == store->journal_head_seq + 1);
    tx->ledger = ledger;
    tx->changes = c;
    tx->batch_seq = batch_seq;
    pc_status status = write_rows(tx, c, content);
    if (status == PC_OK && batch_seq >= store->accounts_as_of_seq + STORE_BALANCE_SNAPSHOT_BATCHES) {
        status = balance_snapshot_write(store, ledger, c->accounts_touched, c->accounts_touched_count, batch_seq);
        tx->snapshot_written = status == PC_OK;
    }
    return status;
}

pc_status store_sqlite_tx_write_journal(store_tx_t *base, const journal_entry_t *e, const journal_checkpoint_t *cp) {
    sqlite_tx_t *tx = (sqlite_tx_t *)base;
    sqlite_store_t *store = tx->store;
    PC_ASSERT(tx->batch_seq != 0 && e->seq == tx->batch_seq); /* the seq its rows carry */
    PC_ASSERT(!tx->journal_written);
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
    tx->journal_written = status == PC_OK;
    if (status != PC_OK || cp == NULL) return status;
    PC_ASSERT(cp->seq == e->seq);
    stmt = store->statements[STMT_JOURNAL_CHECKPOINT_INSERT];
    sqlite3_bind_int64(stmt, 1, (int64_t)cp->seq);
    sqlite3_bind_blob(stmt, 2, cp->hash, JOURNAL_HASH_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob(stmt, 3, cp->public_key, JOURNAL_PUBLIC_KEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob(stmt, 4, cp->signature, JOURNAL_SIGNATURE_BYTES, SQLITE_STATIC);
    return step_done(store, stmt, "insert journal checkpoint");
}

#ifdef PC_SLOW_ASSERTS
/* The journal head as the file says it (slow asserts only: one query a commit). */
static uint64_t journal_head_in_file(sqlite_store_t *store) {
    sqlite3_stmt *stmt;
    uint64_t seq = UINT64_MAX;
    if (sqlite3_prepare_v2(store->db, "SELECT coalesce(max(seq), 0) FROM journal", -1, &stmt, NULL) == SQLITE_OK) {
        if (sqlite3_step(stmt) == SQLITE_ROW) seq = (uint64_t)sqlite3_column_int64(stmt, 0);
        sqlite3_finalize(stmt);
    }
    return seq;
}
#endif

/* After COMMIT: readers see the new balances, lookups find the new ids, the batch's
 * accounts join the dirty list (or the snapshot it carried cleared it). */
static void tx_publish(sqlite_tx_t *tx) {
    sqlite_store_t *store = tx->store;
    const ledger_changes_t *c = tx->changes;
    store->writable = true;
    if (c != NULL) {
        PC_ASSERT(tx->journal_written);
        PC_ASSERT(tx->batch_seq == store->journal_head_seq + 1);
        store->journal_head_seq = tx->batch_seq;
        uint32_t account_count = ledger_account_count(tx->ledger);
        store_shadow_batch_begin(store->shadow);
        for (uint32_t i = 0; i < c->accounts_touched_count; i++) {
            uint32_t no = c->accounts_touched[i];
            PC_ASSERT(no < account_count);
            store_shadow_publish(store->shadow, no, &ledger_account_at(tx->ledger, no)->balances);
            if (!tx->snapshot_written) store_dirty_mark(&store->dirty, no);
        }
        for (uint32_t i = 0; i < c->accounts_created_count; i++) {
            uint32_t no = c->accounts_created[i];
            store_shadow_publish(store->shadow, no, &ledger_account_at(tx->ledger, no)->balances);
        }
        store_shadow_batch_end(store->shadow);
        store_shadow_published(store->shadow, tx->batch_seq);
        for (uint32_t i = 0; i < c->failures_count; i++) {
            store_index_bloom_add(store->index, store_index_key(store->index, c->failures[i].id));
        }
        for (uint32_t i = 0; i < tx->index_entry_count; i++) store_index_bloom_add(store->index, tx->index_entries[i].key);
        if (tx->index_entry_count > 0) store_index_add(store->index, tx->index_entries, tx->index_entry_count);
    }
    if (tx->snapshot_written) {
        store_dirty_clear(&store->dirty);
        store->accounts_as_of_seq = tx->batch_seq;
    }
    PC_ASSERT(store->accounts_as_of_seq <= store->journal_head_seq);
    PC_ASSERT_SLOW(journal_head_in_file(store) == store->journal_head_seq);
}

static void tx_free(sqlite_tx_t *tx) {
    free(tx->index_entries);
    free(tx);
}

pc_status store_sqlite_tx_commit(store_tx_t *base) {
    sqlite_tx_t *tx = (sqlite_tx_t *)base;
    sqlite_store_t *store = tx->store;
    PC_ASSERT(tx->changes == NULL || tx->journal_written); /* no seq without its journal row */
    store->commit_count++;
    uint32_t fault_at = store->options.fault_commit_at;
    if (fault_at != 0 && (store->commit_count == fault_at ||
                          (store->options.fault_commit_sticky && store->commit_count > fault_at))) {
        snprintf(store->error_detail, sizeof(store->error_detail), "injected commit fault at commit %u",
                 store->commit_count);
        store_sqlite_tx_rollback(base);
        return PC_STORE_COMMIT_FAILED;
    }
    if (store_sqlite_pay_rows_flush(store) != PC_OK) { /* objects' rows: the last version of each */
        pc_status status = write_failed(store, "write payments' objects", false);
        store_sqlite_tx_rollback(base);
        return status;
    }
    if (store_sqlite_event_spans_flush(store) != PC_OK) { /* the merchants' last runs of events */
        pc_status status = write_failed(store, "write event spans", false);
        store_sqlite_tx_rollback(base);
        return status;
    }
    if (store_sqlite_rows_flush_all(store) != PC_OK) { /* the rows appended several per statement */
        pc_status status = write_failed(store, "insert rows", false);
        store_sqlite_tx_rollback(base);
        return status;
    }
    if (tx->changes != NULL) store_shadow_committing(store->shadow, tx->batch_seq);
    if (!step_reset_ok(store->statements[STMT_COMMIT])) {
        pc_status status = write_failed(store, "commit", true);
        store_shadow_commit_failed(store->shadow);
        store_sqlite_tx_rollback(base);
        return status;
    }
    tx_publish(tx);
    store_idem_rows_committed(store->idem_rows); /* the entries of the replies it deleted go */
    tx_free(tx);
    return PC_OK;
}

/* An error of a command's own rows (store_api.h) reaches the store only here: an
 * I/O error or damage seen by the connection fails the store all the same. */
void store_sqlite_tx_rollback(store_tx_t *base) {
    sqlite_tx_t *tx = (sqlite_tx_t *)base;
    sqlite_store_t *store = tx->store;
    int primary = sqlite3_errcode(store->db) & 0xff;
    if (store->failed == PC_OK && error_fatal(primary)) (void)write_failed(store, "before rollback", false);
    if (!sqlite3_get_autocommit(store->db) && sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL) != SQLITE_OK) {
        (void)write_failed(store, "rollback", true);
    }
    store_sqlite_rows_drop_all(store);
    store_sqlite_event_spans_drop(store);
    store_sqlite_pay_rows_drop(store);
    store_idem_rows_rolled_back(store->idem_rows); /* its replies' entries go, those it deleted stay */
    tx_free(tx);
}

/* ---- outside batches ---- */

/* A clean stop: every account row up to date, so the next start replays nothing. */
pc_status store_sqlite_balance_snapshot(store_t *base, const ledger_t *ledger) {
    sqlite_store_t *store = (sqlite_store_t *)base;
    if (store->failed != PC_OK) return store->failed; /* memory may disagree with the file */
    if (store->dirty.count == 0 && store->accounts_as_of_seq == store->journal_head_seq) return PC_OK;
    if (sqlite3_exec(store->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        return write_failed(store, "balance snapshot begin", false);
    }
    pc_status status = balance_snapshot_write(store, ledger, NULL, 0, store->journal_head_seq);
    if (status == PC_OK && sqlite3_exec(store->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        status = write_failed(store, "balance snapshot commit", true);
    }
    if (status != PC_OK) {
        if (!sqlite3_get_autocommit(store->db)) sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
        return status;
    }
    store_dirty_clear(&store->dirty);
    store->accounts_as_of_seq = store->journal_head_seq;
    store->writable = true;
    return PC_OK;
}

pc_status store_sqlite_probe(store_t *base) {
    sqlite_store_t *store = (sqlite_store_t *)base;
    if (store->failed != PC_OK) return store->failed;
    if (sqlite3_exec(store->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        return write_failed(store, "probe begin", false);
    }
    pc_status status = meta_set(store, "writer_probe_ns", (int64_t)pc_wall_ns());
    if (status == PC_OK && sqlite3_exec(store->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        status = write_failed(store, "probe commit", true);
    }
    if (status != PC_OK) {
        if (!sqlite3_get_autocommit(store->db)) sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
        return status;
    }
    store->writable = true;
    return PC_OK;
}
