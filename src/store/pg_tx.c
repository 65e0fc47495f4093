/* store/pg_tx.c: one PostgreSQL transaction per writer batch, and the balance
 * snapshot. Writer thread only. The same rows as the SQLite backend (sqlite_tx.c),
 * sent as one COPY per table a batch (accounts, transfers, burned ids, history; the
 * transfers in binary, sent while they are made: pg_stream_*) and
 * one UPDATE ... FROM unnest() for pending states and snapshot balances: a handful
 * of round trips a batch, however many rows it has.
 *
 * Failures: an error before COMMIT rolls back and leaves nothing. A COMMIT whose
 * answer is lost, or a connection that broke (the writer's lock went with it), leaves
 * the database in a state memory cannot know: the store fails for good and the
 * process must reload, as with SQLite. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg_internal.h"
#include "store/store_shard.h"

/* As on SQLite: a balance snapshot every this many batches bounds the replay. */
#define PG_BALANCE_SNAPSHOT_BATCHES 64

typedef struct {
    store_tx_t base;     /* first: store.c finds the store there */
    pg_store_t *store;
    const ledger_t *ledger;
    const ledger_changes_t *changes;
    uint64_t batch_seq;
    bool journal_written;
    bool snapshot_written;
    char gtid[STORE_GTID_SIZE]; /* prepared: its global transaction */
} pg_tx_t;

PGconn *pg_tx_conn(store_tx_t *tx) { return ((pg_tx_t *)tx)->store->conn; }

/* A failed statement: the batch fails; a broken connection fails the store. */
static pc_status write_failed(pg_store_t *store, const char *what, bool at_commit) {
    bool fatal = at_commit || PQstatus(store->conn) != CONNECTION_OK;
    pc_status status = fatal ? PC_STORE_FAILED : PC_STORE_COMMIT_FAILED;
    if (store->failed == PC_OK) (void)pg_fail(store, status, what);
    if (fatal) store->failed = PC_STORE_FAILED;
    return status;
}

/* ---- rows ---- */

static void copy_balances(pg_copy_t *copy, const ledger_balances_t *b) {
    pg_copy_int(copy, b->debits_pending);
    pg_copy_int(copy, b->debits_posted);
    pg_copy_int(copy, b->credits_pending);
    pg_copy_int(copy, b->credits_posted);
}

static const char *empty_null(const char *text) { return text == NULL || text[0] == '\0' ? NULL : text; }

static void account_row(pg_copy_t *copy, const ledger_account_t *a, uint32_t no, uint64_t seq,
                        journal_content_t *content) {
    static const ledger_balances_t zero;
    uint8_t row_hash[JOURNAL_ROW_HASH_BYTES];
    journal_row_hash_account(a, row_hash);
    journal_content_add(content, row_hash);
    pg_copy_int(copy, no);
    pg_copy_text(copy, a->id);
    pg_copy_text(copy, a->currency);
    pg_copy_int(copy, a->code);
    pg_copy_int(copy, a->flags);
    copy_balances(copy, &zero); /* balances come from replay until the next snapshot */
    pg_copy_int(copy, (int64_t)a->timestamp_ns);
    pg_copy_text(copy, a->metadata_json);
    pg_copy_int(copy, (int64_t)seq);
    pg_copy_bytea(copy, row_hash, sizeof row_hash);
    pg_copy_row_end(copy);
}

/* Binary COPY: each field in its column's type (schema v1: code, flags and
 * pending_state integer, timeout_s bigint). */
#define TRANSFERS_COPY_SQL                                                                                    \
    "COPY transfers(timestamp, id, debit_account_id, credit_account_id, amount, currency, code, flags,"      \
    " pending_id, timeout_s, metadata, pending_state, batch_seq, row_hash) FROM STDIN (FORMAT binary)"
#define TRANSFERS_COPY_FIELDS 14

static void transfer_row(pg_copy_stream_t *copy, const ledger_transfer_t *t, uint64_t seq,
                         journal_content_t *content) {
    uint8_t row_hash[JOURNAL_ROW_HASH_BYTES];
    journal_row_hash_transfer(t, row_hash);
    journal_content_add(content, row_hash);
    pg_stream_row(copy, TRANSFERS_COPY_FIELDS);
    pg_stream_int8(copy, (int64_t)t->timestamp_ns);
    pg_stream_text(copy, t->id);
    pg_stream_text(copy, t->debit_account_id);
    pg_stream_text(copy, t->credit_account_id);
    pg_stream_int8(copy, t->amount);
    pg_stream_text(copy, t->currency);
    pg_stream_int4(copy, t->code);
    pg_stream_int4(copy, t->flags);
    pg_stream_text(copy, empty_null(t->pending_id));
    pg_stream_int8(copy, t->timeout_s);
    pg_stream_text(copy, t->metadata_json);
    pg_stream_int4(copy, (t->flags & LEDGER_TRANSFER_PENDING) ? LEDGER_PENDING_OPEN : LEDGER_PENDING_NONE);
    pg_stream_int8(copy, (int64_t)seq);
    pg_stream_bytes(copy, row_hash, sizeof row_hash);
}

static void failure_row(pg_copy_t *copy, const ledger_failure_t *f, uint64_t seq,
                        journal_content_t *content) {
    uint8_t row_hash[JOURNAL_ROW_HASH_BYTES];
    journal_row_hash_failure(f, row_hash);
    journal_content_add(content, row_hash);
    pg_copy_text(copy, f->id);
    pg_copy_text(copy, pc_status_code(f->failure));
    pg_copy_int(copy, (int64_t)f->timestamp_ns);
    pg_copy_int(copy, (int64_t)seq);
    pg_copy_bytea(copy, row_hash, sizeof row_hash);
    pg_copy_row_end(copy);
}

static void history_row(pg_copy_t *copy, const ledger_t *ledger, const ledger_history_t *h) {
    pg_copy_text(copy, ledger_account_at(ledger, h->account_index)->id);
    pg_copy_int(copy, (int64_t)h->transfer_timestamp_ns);
    pg_copy_text(copy, h->transfer_id);
    copy_balances(copy, &h->balances);
    pg_copy_row_end(copy);
}

/* A bigint[] literal's element, into an array buffer that grows. */
static void array_int(pg_copy_t *array, int64_t value) {
    char text[24];
    snprintf(text, sizeof text, "%lld", (long long)value);
    size_t length = strlen(text);
    if (array->failed) return;
    if (array->bytes + length + 3 > array->capacity) {
        size_t capacity = array->capacity ? array->capacity * 2 : 256;
        while (capacity < array->bytes + length + 3) capacity *= 2;
        char *grown = realloc(array->data, capacity);
        if (grown == NULL) {
            array->failed = true;
            return;
        }
        array->data = grown;
        array->capacity = capacity;
    }
    if (array->bytes == 0) array->data[array->bytes++] = '{';
    else array->data[array->bytes++] = ',';
    memcpy(array->data + array->bytes, text, length);
    array->bytes += length;
    memcpy(array->data + array->bytes, "}", 2); /* closed after every element */
}

/* Runs 'sql' with 'count' array parameters (each freed). */
static bool arrays_exec(PGconn *conn, const char *sql, pg_copy_t *arrays, int count) {
    const char *params[8];
    bool ok = true;
    for (int i = 0; i < count; i++) {
        ok = ok && !arrays[i].failed && arrays[i].data != NULL;
        params[i] = arrays[i].data;
    }
    PGresult *result = ok ? pg_query(conn, sql, count, params) : NULL;
    PQclear(result);
    for (int i = 0; i < count; i++) pg_copy_free(&arrays[i]);
    return result != NULL;
}

static bool pending_changes_write(PGconn *conn, const ledger_changes_t *c) {
    if (c->pending_changes_count == 0) return true;
    pg_copy_t arrays[2] = {{0}, {0}};
    for (uint32_t i = 0; i < c->pending_changes_count; i++) {
        array_int(&arrays[0], (int64_t)c->pending_changes[i].pending_timestamp_ns);
        array_int(&arrays[1], c->pending_changes[i].state);
    }
    return arrays_exec(conn, "UPDATE transfers t SET pending_state = u.state FROM unnest($1::bigint[],"
                             " $2::integer[]) AS u(ts, state) WHERE t.timestamp = u.ts", arrays, 2);
}

/* The balances of every dirty account and of 'extra' (the batch being written), as
 * of journal seq 'seq', in one statement. */
static pc_status balance_snapshot_write(pg_store_t *store, const ledger_t *ledger, const uint32_t *extra,
                                        uint32_t extra_count, uint64_t seq) {
    uint32_t count = 0;
    uint32_t *nos = store_dirty_sorted(&store->dirty, extra, extra_count, &count);
    if (nos == NULL) return PC_NO_MEMORY;
    pg_copy_t arrays[5] = {{0}, {0}, {0}, {0}, {0}};
    for (uint32_t i = 0; i < count; i++) {
        const ledger_balances_t *b = &ledger_account_at(ledger, nos[i])->balances;
        array_int(&arrays[0], nos[i]);
        array_int(&arrays[1], b->debits_pending);
        array_int(&arrays[2], b->debits_posted);
        array_int(&arrays[3], b->credits_pending);
        array_int(&arrays[4], b->credits_posted);
    }
    free(nos);
    bool ok = count == 0 ||
              arrays_exec(store->conn, "UPDATE accounts a SET debits_pending = u.dp, debits_posted = u.dd,"
                                       " credits_pending = u.cp, credits_posted = u.cc FROM unnest($1::integer[],"
                                       " $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])"
                                       " AS u(no, dp, dd, cp, cc) WHERE a.no = u.no", arrays, 5);
    if (count == 0) for (int i = 0; i < 5; i++) pg_copy_free(&arrays[i]);
    char value[24];
    snprintf(value, sizeof value, "%" PRIu64, seq);
    const char *params[] = {value};
    PGresult *result = ok ? pg_query(store->conn, "UPDATE paycore_meta SET value = $1 WHERE key = 'accounts_as_of_seq'",
                                     1, params) : NULL;
    PQclear(result);
    return result != NULL ? PC_OK : write_failed(store, "balance snapshot", false);
}

/* ---- one transaction per batch ---- */

pc_status pg_tx_begin(store_t *base, store_tx_t **out) {
    pg_store_t *store = (pg_store_t *)base;
    if (store->failed != PC_OK) return store->failed;
    pg_tx_t *tx = calloc(1, sizeof *tx);
    if (tx == NULL) return PC_NO_MEMORY;
    tx->base.store = base;
    tx->store = store;
    if (!pg_exec_ok(store->conn, "BEGIN")) {
        free(tx);
        return write_failed(store, "begin", false);
    }
    *out = &tx->base;
    return PC_OK;
}

/* A shard records the shard each account it creates was placed on (the shard map). */
static bool shard_accounts_write(pg_tx_t *tx, const ledger_changes_t *c) {
    const store_options_t *options = &tx->store->options;
    if (options->shard_count == 0 || c->accounts_created_count == 0) return true;
    pg_copy_t rows = {0};
    for (uint32_t i = 0; i < c->accounts_created_count; i++) {
        pg_copy_text(&rows, ledger_account_at(tx->ledger, c->accounts_created[i])->id);
        pg_copy_int(&rows, options->shard_index);
        pg_copy_int(&rows, options->shard_count);
        pg_copy_row_end(&rows);
    }
    bool ok = pg_copy_send(tx->store->conn, "COPY shard_accounts(account_id, shard_index, shard_count) FROM STDIN",
                           &rows);
    pg_copy_free(&rows);
    return ok;
}

/* The transfers, hashed into 'content' in order, go out while they are made. */
static bool transfers_write(PGconn *conn, const ledger_changes_t *c, uint64_t seq, journal_content_t *content) {
    if (c->transfers_count == 0) return true;
    pg_copy_stream_t transfers;
    bool ok = pg_stream_begin(&transfers, conn, TRANSFERS_COPY_SQL);
    for (uint32_t i = 0; ok && i < c->transfers_count; i++) transfer_row(&transfers, &c->transfers[i], seq, content);
    return pg_stream_end(&transfers) && ok;
}

/* The rows in the journal's content order: accounts, transfers, burned ids. */
static bool rows_write(pg_tx_t *tx, const ledger_changes_t *c, journal_content_t *content) {
    PGconn *conn = tx->store->conn;
    pg_copy_t accounts = {0}, failures = {0}, history = {0};
    uint32_t first_created = ledger_account_count(tx->ledger) - c->accounts_created_count;
    for (uint32_t i = 0; i < c->accounts_created_count; i++) {
        PC_ASSERT(c->accounts_created[i] == first_created + i);
        account_row(&accounts, ledger_account_at(tx->ledger, first_created + i), first_created + i, tx->batch_seq,
                    content);
    }
    bool ok = accounts.rows == 0 || pg_copy_send(conn, "COPY accounts(no, id, currency, code, flags, debits_pending,"
                                   " debits_posted, credits_pending, credits_posted, timestamp, metadata, batch_seq,"
                                   " row_hash) FROM STDIN", &accounts);
    ok = ok && transfers_write(conn, c, tx->batch_seq, content);
    for (uint32_t i = 0; i < c->failures_count; i++) failure_row(&failures, &c->failures[i], tx->batch_seq, content);
    for (uint32_t i = 0; i < c->history_count; i++) history_row(&history, tx->ledger, &c->history[i]);
    ok = ok && (failures.rows == 0 || pg_copy_send(conn, "COPY transfer_failures(id, result, timestamp, batch_seq,"
                " row_hash) FROM STDIN", &failures));
    ok = ok && (history.rows == 0 || pg_copy_send(conn, "COPY balance_history(account_id, timestamp, transfer_id,"
                " debits_pending, debits_posted, credits_pending, credits_posted) FROM STDIN", &history));
    ok = ok && pending_changes_write(conn, c);
    ok = ok && shard_accounts_write(tx, c);
    pg_copy_free(&accounts);
    pg_copy_free(&failures);
    pg_copy_free(&history);
    return ok;
}

pc_status pg_tx_write_changes(store_tx_t *base, const ledger_t *ledger, const ledger_changes_t *c, uint64_t batch_seq,
                              journal_content_t *content) {
    pg_tx_t *tx = (pg_tx_t *)base;
    pg_store_t *store = tx->store;
    PC_ASSERT(tx->changes == NULL);
    PC_ASSERT(batch_seq == store->journal_head_seq + 1);
    tx->ledger = ledger;
    tx->changes = c;
    tx->batch_seq = batch_seq;
    store->tx_ledger = ledger;
    store->tx_changes = c;
    if (!rows_write(tx, c, content)) return write_failed(store, "batch rows", false);
    if (batch_seq >= store->accounts_as_of_seq + PG_BALANCE_SNAPSHOT_BATCHES) {
        pc_status status = balance_snapshot_write(store, ledger, c->accounts_touched, c->accounts_touched_count,
                                                  batch_seq);
        if (status != PC_OK) return status;
        tx->snapshot_written = true;
    }
    return PC_OK;
}

pc_status pg_tx_write_journal(store_tx_t *base, const journal_entry_t *e, const journal_checkpoint_t *cp) {
    pg_tx_t *tx = (pg_tx_t *)base;
    PC_ASSERT(tx->batch_seq != 0 && e->seq == tx->batch_seq);
    PC_ASSERT(!tx->journal_written);
    char numbers[7][24], hashes[3][2 * JOURNAL_HASH_BYTES + 3];
    snprintf(numbers[0], 24, "%" PRIu64, e->seq);
    snprintf(numbers[1], 24, "%" PRIu64, e->timestamp_first_ns);
    snprintf(numbers[2], 24, "%" PRIu64, e->timestamp_last_ns);
    snprintf(numbers[3], 24, "%" PRIu64, (uint64_t)e->account_count);
    snprintf(numbers[4], 24, "%" PRIu64, (uint64_t)e->transfer_count);
    snprintf(numbers[5], 24, "%" PRIu64, (uint64_t)e->failure_count);
    snprintf(numbers[6], 24, "%" PRIu64, pc_wall_ns());
    pg_bytea_text(e->content_hash, JOURNAL_HASH_BYTES, hashes[0]);
    pg_bytea_text(e->prev_hash, JOURNAL_HASH_BYTES, hashes[1]);
    pg_bytea_text(e->hash, JOURNAL_HASH_BYTES, hashes[2]);
    const char *params[] = {numbers[0], numbers[1], numbers[2], numbers[3], numbers[4], numbers[5],
                            hashes[0], hashes[1], hashes[2], numbers[6]};
    PGresult *result = pg_query(tx->store->conn, "INSERT INTO journal(seq, timestamp_first, timestamp_last,"
                                " account_count, transfer_count, failure_count, content_hash, prev_hash, hash,"
                                " committed_ns) VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)", 10, params);
    PQclear(result);
    if (result == NULL) return write_failed(tx->store, "insert journal", false);
    tx->journal_written = true;
    if (cp == NULL) return PC_OK;
    PC_ASSERT(cp->seq == e->seq);
    char key[2 * JOURNAL_PUBLIC_KEY_BYTES + 3], signature[2 * JOURNAL_SIGNATURE_BYTES + 3];
    pg_bytea_text(cp->hash, JOURNAL_HASH_BYTES, hashes[0]);
    pg_bytea_text(cp->public_key, JOURNAL_PUBLIC_KEY_BYTES, key);
    pg_bytea_text(cp->signature, JOURNAL_SIGNATURE_BYTES, signature);
    const char *cp_params[] = {numbers[0], hashes[0], key, signature};
    result = pg_query(tx->store->conn, "INSERT INTO journal_checkpoints(seq, hash, public_key, signature)"
                                       " VALUES($1, $2, $3, $4)", 4, cp_params);
    PQclear(result);
    return result != NULL ? PC_OK : write_failed(tx->store, "insert journal checkpoint", false);
}

/* After COMMIT: readers see the new balances; the batch's accounts join the dirty
 * list (or the snapshot it carried cleared it). */
static void tx_publish(pg_tx_t *tx) {
    pg_store_t *store = tx->store;
    const ledger_changes_t *c = tx->changes;
    store->writable = true;
    if (c != NULL) {
        PC_ASSERT(tx->journal_written);
        store->journal_head_seq = tx->batch_seq;
        store_shadow_batch_begin(store->shadow);
        for (uint32_t i = 0; i < c->accounts_touched_count; i++) {
            uint32_t no = c->accounts_touched[i];
            store_shadow_publish(store->shadow, no, &ledger_account_at(tx->ledger, no)->balances);
            if (!tx->snapshot_written) store_dirty_mark(&store->dirty, no);
        }
        for (uint32_t i = 0; i < c->accounts_created_count; i++) {
            uint32_t no = c->accounts_created[i];
            store_shadow_publish(store->shadow, no, &ledger_account_at(tx->ledger, no)->balances);
        }
        store_shadow_batch_end(store->shadow);
        store_shadow_published(store->shadow, tx->batch_seq);
    }
    if (tx->snapshot_written) {
        store_dirty_clear(&store->dirty);
        store->accounts_as_of_seq = tx->batch_seq;
    }
}

/* Everything before the end statement of a batch: the injected fault, the events. */
static pc_status tx_end_prepare(pg_tx_t *tx) {
    pg_store_t *store = tx->store;
    PC_ASSERT(tx->changes == NULL || tx->journal_written);
    store->commit_count++;
    uint32_t fault_at = store->options.fault_commit_at;
    if (fault_at != 0 && (store->commit_count == fault_at ||
                          (store->options.fault_commit_sticky && store->commit_count > fault_at))) {
        snprintf(store->error_detail, sizeof store->error_detail, "injected commit fault at commit %u",
                 store->commit_count);
        pg_tx_rollback(&tx->base);
        return PC_STORE_COMMIT_FAILED;
    }
    pg_prefetch_clear(store); /* the next batch sees this one's ids committed */
    store->tx_ledger = NULL;
    store->tx_changes = NULL;
    if (pg_events_flush(store) != PC_OK) {
        pc_status status = write_failed(store, "events", false);
        pg_tx_rollback(&tx->base);
        return status;
    }
    return PC_OK;
}

/* Runs the batch's end statement ('sql': COMMIT or PREPARE TRANSACTION), whose
 * command tag is 'tag' on success. On failure tx is freed. */
static pc_status tx_end(pg_tx_t *tx, const char *sql, const char *tag, const char *what) {
    pg_store_t *store = tx->store;
    pc_status status = tx_end_prepare(tx);
    if (status != PC_OK) return status;
    PGresult *result = PQexec(store->conn, sql);
    bool ok = PQresultStatus(result) == PGRES_COMMAND_OK;
    /* the end of a transaction a statement aborted answers "ROLLBACK": nothing is there */
    bool rolled_back = ok && strcmp(PQcmdStatus(result), tag) != 0;
    PQclear(result);
    if (!ok || rolled_back) {
        status = write_failed(store, what, !rolled_back);
        free(tx);
        return status;
    }
    return PC_OK;
}

pc_status pg_tx_commit(store_tx_t *base) {
    pg_tx_t *tx = (pg_tx_t *)base;
    store_shadow_t *shadow = tx->store->shadow;
    if (tx->changes != NULL) store_shadow_committing(shadow, tx->batch_seq);
    pc_status status = tx_end(tx, "COMMIT", "COMMIT", "commit");
    if (status != PC_OK) {
        store_shadow_commit_failed(shadow);
        return status;
    }
    tx_publish(tx);
    free(tx);
    return PC_OK;
}

/* ---- two-phase commit (store_shard.h) ---- */

/* 'pc_<gtid>_<shard>': prepared transactions' names are the server's, not the
 * database's, and two shards may be databases of one server. */
static void prepared_sql(char *out, size_t out_bytes, const char *verb, const pg_tx_t *tx) {
    snprintf(out, out_bytes, "%s 'pc_%s_%u'", verb, tx->gtid, tx->store->options.shard_index); /* hex digits */
}

static pc_status pg_tx_prepare(store_tx_t *base, const char *gtid) {
    pg_tx_t *tx = (pg_tx_t *)base;
    for (const char *c = gtid; *c != '\0'; c++) PC_ASSERT((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'));
    snprintf(tx->gtid, sizeof tx->gtid, "%s", gtid);
    char sql[96];
    prepared_sql(sql, sizeof sql, "PREPARE TRANSACTION", tx);
    /* A PREPARE whose answer is lost leaves a prepared transaction memory cannot know
     * of: the store fails for good, and recovery ends it from the coordinator log. */
    return tx_end(tx, sql, "PREPARE TRANSACTION", "prepare");
}

static pc_status prepared_end(pg_tx_t *tx, bool commit) {
    char sql[96];
    prepared_sql(sql, sizeof sql, commit ? "COMMIT PREPARED" : "ROLLBACK PREPARED", tx);
    if (commit && tx->changes != NULL) store_shadow_committing(tx->store->shadow, tx->batch_seq);
    pc_status status = pg_exec_ok(tx->store->conn, sql) ? PC_OK
                                                        : write_failed(tx->store, commit ? "commit prepared"
                                                                                         : "rollback prepared", true);
    if (status != PC_OK) store_shadow_commit_failed(tx->store->shadow);
    if (status == PC_OK && commit) tx_publish(tx);
    free(tx);
    return status;
}

static pc_status pg_tx_commit_prepared(store_tx_t *base) { return prepared_end((pg_tx_t *)base, true); }
static pc_status pg_tx_rollback_prepared(store_tx_t *base) { return prepared_end((pg_tx_t *)base, false); }

const store_two_phase_ops_t store_pg_two_phase_ops = {
    .tx_prepare = pg_tx_prepare,
    .tx_commit_prepared = pg_tx_commit_prepared,
    .tx_rollback_prepared = pg_tx_rollback_prepared,
};

void pg_tx_rollback(store_tx_t *base) {
    pg_tx_t *tx = (pg_tx_t *)base;
    pg_prefetch_clear(tx->store);
    pg_events_discard(tx->store);
    tx->store->tx_ledger = NULL;
    tx->store->tx_changes = NULL;
    if (PQtransactionStatus(tx->store->conn) != PQTRANS_IDLE && !pg_exec_ok(tx->store->conn, "ROLLBACK")) {
        (void)write_failed(tx->store, "rollback", true);
    }
    free(tx);
}

/* ---- outside batches ---- */

static pc_status single_transaction_end(pg_store_t *store, pc_status status, const char *what) {
    if (status == PC_OK && !pg_exec_ok(store->conn, "COMMIT")) return write_failed(store, what, true);
    if (status != PC_OK) (void)pg_exec_ok(store->conn, "ROLLBACK");
    if (status == PC_OK) store->writable = true;
    return status;
}

pc_status pg_balance_snapshot(store_t *base, const ledger_t *ledger) {
    pg_store_t *store = (pg_store_t *)base;
    if (store->failed != PC_OK) return store->failed;
    if (store->dirty.count == 0 && store->accounts_as_of_seq == store->journal_head_seq) return PC_OK;
    if (!pg_exec_ok(store->conn, "BEGIN")) return write_failed(store, "balance snapshot begin", false);
    pc_status status = balance_snapshot_write(store, ledger, NULL, 0, store->journal_head_seq);
    status = single_transaction_end(store, status, "balance snapshot commit");
    if (status != PC_OK) return status;
    store_dirty_clear(&store->dirty);
    store->accounts_as_of_seq = store->journal_head_seq;
    return PC_OK;
}

pc_status pg_probe(store_t *base) {
    pg_store_t *store = (pg_store_t *)base;
    if (store->failed != PC_OK) return store->failed;
    if (!pg_exec_ok(store->conn, "BEGIN")) return write_failed(store, "probe begin", false);
    char value[24];
    snprintf(value, sizeof value, "%" PRIu64, pc_wall_ns());
    const char *params[] = {value};
    PGresult *result = pg_query(store->conn, "INSERT INTO paycore_meta VALUES('writer_probe_ns', $1) ON CONFLICT"
                                             " (key) DO UPDATE SET value = excluded.value", 1, params);
    PQclear(result);
    pc_status status = result != NULL ? PC_OK : write_failed(store, "probe", false);
    return single_transaction_end(store, status, "probe commit");
}
