/* store/pg_tx.c: one PostgreSQL transaction per writer batch, and the balance
 * snapshot. Writer thread only. The same rows as the SQLite backend (sqlite_tx.c),
 * sent as one COPY per table a batch (accounts, transfers, burned ids, history, and
 * the accounts' lists of their transfers, account_transfers; the transfers and the
 * lists in binary, the transfers sent while they are made: pg_stream_*) and
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

#include "core/bytes.h"
#include "store/pg_internal.h"
#include "store/store_shard.h"

/* As on SQLite: a balance snapshot every this many batches bounds the replay. */
#define PG_BALANCE_SNAPSHOT_BATCHES 64

/* The accounts a batch's COMMIT publishes to readers, copied when it is written: a
 * first part commits after the next part changed memory (store_tx_begin_next), so
 * its balances are kept as of its own rows. */
typedef struct {
    uint32_t *touched;            /* accounts_touched (created ones included) */
    uint32_t touched_count;
    uint32_t *created;
    uint32_t created_count;
    ledger_balances_t *balances;  /* per touched then created account; NULL: memory's */
} pg_publish_t;

typedef struct {
    store_tx_t base;     /* first: store.c finds the store there */
    pg_store_t *store;
    PGconn *conn;        /* store->conn, or store->conn_next for a staged next part */
    bool next;           /* staged behind another transaction (store_tx_begin_next) */
    bool pipelined;      /* a first part: its transfers go by a thread (copy) */
    const ledger_t *ledger;
    bool has_changes;
    pg_publish_t publish;
    pg_copy_async_t *copy;        /* the transfers' COPY, still running */
    bool copy_failed;
    uint64_t batch_seq;
    bool journal_written;         /* given; inserted before the end statement */
    bool journal_inserted;
    journal_entry_t journal;
    journal_checkpoint_t checkpoint;
    bool has_checkpoint;
    bool snapshot_written;
    pc_bytes_t pending_arrays[2]; /* pending_changes_keep: sent after the transfers */
    char gtid[STORE_GTID_SIZE]; /* prepared: its global transaction */
} pg_tx_t;

/* The transfers' COPY done: the connection is the writer's again. */
static void copy_join(pg_tx_t *tx) {
    if (tx->copy == NULL) return;
    if (!pg_stream_join(tx->copy)) tx->copy_failed = true;
    tx->copy = NULL;
    tx->store->conn_copying = false;
}

PGconn *pg_tx_conn(store_tx_t *base) {
    pg_tx_t *tx = (pg_tx_t *)base;
    copy_join(tx);
    return tx->conn;
}

/* A failed statement: the batch fails; a broken connection fails the store, except a
 * staged next part's before its COMMIT: nothing of it can be there, its connection
 * is dropped and made again when needed. */
static pc_status tx_failed(pg_tx_t *tx, const char *what, bool at_commit) {
    pg_store_t *store = tx->store;
    bool broken = PQstatus(tx->conn) != CONNECTION_OK;
    bool fatal = at_commit || (broken && !tx->next);
    pc_status status = fatal ? PC_STORE_FAILED : PC_STORE_COMMIT_FAILED;
    if (store->failed == PC_OK) {
        char line[256];
        snprintf(store->error_detail, sizeof store->error_detail, "%s: %s", what,
                 pg_error_line(tx->conn, line, sizeof line));
    }
    if (fatal) store->failed = PC_STORE_FAILED;
    if (broken && tx->next && !at_commit) {
        PQfinish(store->conn_next);
        store->conn_next = NULL;
        tx->conn = NULL;
    }
    return status;
}

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
 * pending_state integer, timeout_s bigint; v9: the accounts' numbers integer), in the
 * table's column order (v15: no batch_seq, the journal's timestamp range says it; v16:
 * no row_hash, verify computes it from the row). */
#define TRANSFERS_COPY_SQL                                                                                    \
    "COPY transfers(timestamp, amount, timeout_s, debit_no, credit_no, code, flags, pending_state, id,"      \
    " currency, pending_id, metadata) FROM STDIN (FORMAT binary)"
#define TRANSFERS_COPY_FIELDS 12

/* 'accounts': the transfer's debit and credit accounts' numbers (ledger_changes_t). */
static void transfer_row(pg_copy_stream_t *copy, const ledger_transfer_t *t, const uint32_t accounts[2]) {
    pg_stream_row(copy, TRANSFERS_COPY_FIELDS);
    pg_stream_int8(copy, (int64_t)t->timestamp_ns);
    pg_stream_int8(copy, t->amount);
    pg_stream_int8(copy, t->timeout_s);
    pg_stream_int4(copy, (int32_t)accounts[0]);
    pg_stream_int4(copy, (int32_t)accounts[1]);
    pg_stream_int4(copy, t->code);
    pg_stream_int4(copy, t->flags);
    pg_stream_int4(copy, (t->flags & LEDGER_TRANSFER_PENDING) ? LEDGER_PENDING_OPEN : LEDGER_PENDING_NONE);
    pg_stream_text(copy, t->id);
    pg_stream_text(copy, t->currency);
    pg_stream_text(copy, empty_null(t->pending_id));
    pg_stream_text(copy, t->metadata_json);
}

static void failure_row(pg_copy_t *copy, const ledger_failure_t *f, uint64_t seq,
                        uint8_t row_hash[JOURNAL_ROW_HASH_BYTES]) {
    journal_row_hash_failure(f, row_hash);
    pg_copy_text(copy, f->id);
    pg_copy_text(copy, pc_status_code(f->failure));
    pg_copy_int(copy, (int64_t)f->timestamp_ns);
    pg_copy_int(copy, (int64_t)seq);
    pg_copy_bytea(copy, row_hash, JOURNAL_ROW_HASH_BYTES);
    pg_copy_row_end(copy);
}

static void history_row(pg_copy_t *copy, const ledger_t *ledger, const ledger_history_t *h) {
    pg_copy_text(copy, ledger_account_at(ledger, h->account_index)->id);
    pg_copy_int(copy, (int64_t)h->transfer_timestamp_ns);
    pg_copy_text(copy, h->transfer_id);
    copy_balances(copy, &h->balances);
    pg_copy_row_end(copy);
}

/* A bigint[] literal's element, into an array text that grows ("{1,2,3" until
 * arrays_exec closes it). */
static void array_int(pc_bytes_t *array, int64_t value) {
    (void)pc_bytes_appendf(array, "%c%lld", array->bytes == 0 ? '{' : ',', (long long)value);
}

static void arrays_init(pc_bytes_t *arrays, int count) {
    for (int i = 0; i < count; i++) pc_bytes_init(&arrays[i], SIZE_MAX);
}

/* Runs 'sql' with 'count' array parameters (each freed). */
static bool arrays_exec(PGconn *conn, const char *sql, pc_bytes_t *arrays, int count) {
    const char *params[8];
    bool ok = true;
    for (int i = 0; i < count; i++) {
        ok = ok && arrays[i].bytes > 0 && pc_bytes_append(&arrays[i], "}", 1); /* false when it failed */
        params[i] = arrays[i].data;
    }
    PGresult *result = ok ? pg_query(conn, sql, count, params) : NULL;
    PQclear(result);
    for (int i = 0; i < count; i++) pc_bytes_free(&arrays[i]);
    return result != NULL;
}

/* The pending states a batch changed, as the arrays of one UPDATE sent after the
 * transfers are in (a pending transfer may be created and posted in one batch). */
static void pending_changes_keep(pc_bytes_t arrays[2], const ledger_changes_t *c) {
    for (uint32_t i = 0; i < c->pending_changes_count; i++) {
        array_int(&arrays[0], (int64_t)c->pending_changes[i].pending_timestamp_ns);
        array_int(&arrays[1], c->pending_changes[i].state);
    }
}

static bool pending_changes_write(PGconn *conn, pc_bytes_t arrays[2]) {
    if (arrays[0].bytes == 0 && !pc_bytes_failed(&arrays[0])) return true;
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
    pc_bytes_t arrays[5];
    arrays_init(arrays, 5);
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
    if (count == 0) for (int i = 0; i < 5; i++) pc_bytes_free(&arrays[i]);
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
    tx->conn = store->conn;
    arrays_init(tx->pending_arrays, 2);
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
    bool ok = pg_copy_send(tx->conn, "COPY shard_accounts(account_id, shard_index, shard_count) FROM STDIN",
                           &rows);
    pg_copy_free(&rows);
    return ok;
}

#define ACCOUNT_TRANSFERS_COPY_SQL \
    "COPY account_transfers(account_no, timestamp_last, timestamps) FROM STDIN (FORMAT binary)"

/* Sorts 'keys' by their upper 32 bits (the account), keeping the order of equal ones:
 * a radix sort, 11 bits a pass, as many passes as the largest account needs (qsort's
 * comparisons were a tenth of the writer's CPU a batch). 'scratch' holds 'count'. */
#define KEY_RADIX_BITS 11
#define KEY_DIGIT(key, shift) ((uint32_t)((key) >> (shift)) & ((1u << KEY_RADIX_BITS) - 1))
static void keys_sort(uint64_t *keys, uint64_t *scratch, uint32_t count, uint32_t account_max) {
    uint64_t *from = keys, *to = scratch;
    uint32_t shift = 32;
    do {
        uint32_t offsets[1u << KEY_RADIX_BITS] = {0};
        for (uint32_t i = 0; i < count; i++) offsets[KEY_DIGIT(from[i], shift)]++;
        uint32_t sum = 0;
        for (uint32_t d = 0; d < (1u << KEY_RADIX_BITS); d++) {
            uint32_t n = offsets[d];
            offsets[d] = sum;
            sum += n;
        }
        for (uint32_t i = 0; i < count; i++) to[offsets[KEY_DIGIT(from[i], shift)]++] = from[i];
        uint64_t *sorted = to;
        to = from;
        from = sorted;
        shift += KEY_RADIX_BITS;
    } while (shift < 64 && (account_max >> (shift - 32)) != 0);
    if (from != keys) memcpy(keys, from, sizeof *keys * count);
}

/* Each account's transfers in this batch, as rows of account_transfers (schema v10):
 * per account, its transfers' timestamps in ascending order, in rows of at most
 * STORE_PG_ACCOUNT_ROW_TIMESTAMPS keyed by their last. Made in account order, so
 * that the server inserts the key's entries one beside the other. Since schema v16
 * the array holds the timestamps before the last only, null when there are none (an
 * account touched once a batch: most rows): the key says the last. */
static bool account_rows_make(pg_copy_stream_t *rows, const ledger_changes_t *c) {
    uint32_t count = 2 * c->transfers_count;
    /* (account << 32 | transfer index): sorted, each account's transfers in time order */
    uint64_t *keys = malloc(2 * sizeof *keys * count);
    if (keys == NULL) return false;
    uint32_t account_max = 0;
    for (uint32_t i = 0; i < count; i++) {
        keys[i] = (uint64_t)c->transfer_accounts[i] << 32 | (i / 2);
        if (c->transfer_accounts[i] > account_max) account_max = c->transfer_accounts[i];
    }
    keys_sort(keys, keys + count, count, account_max);
    int64_t timestamps[STORE_PG_ACCOUNT_ROW_TIMESTAMPS];
    uint32_t held = 0;
    for (uint32_t k = 0; k < count; k++) {
        uint32_t account = (uint32_t)(keys[k] >> 32);
        timestamps[held++] = (int64_t)c->transfers[(uint32_t)keys[k]].timestamp_ns;
        bool last = k + 1 == count || (uint32_t)(keys[k + 1] >> 32) != account;
        if (!last && held < STORE_PG_ACCOUNT_ROW_TIMESTAMPS) continue;
        pg_stream_row(rows, 3);
        pg_stream_int4(rows, (int32_t)account);
        pg_stream_int8(rows, timestamps[held - 1]);
        if (held == 1) {
            pg_stream_null(rows);
        } else {
            pg_stream_int8_array(rows, timestamps, held - 1);
        }
        held = 0;
    }
    free(keys);
    return true;
}

/* The transfers, in timestamp order (the key's entries appended at the index's end;
 * the id index is a hash: its order does not matter), hashed into 'content', then
 * the accounts' rows. Made whole first, they go out in pieces; a pipelined first
 * part's are sent by a thread (pg_stream_end_async), so that the server inserts them
 * while the writer makes the next part. */
static bool transfers_write(pg_tx_t *tx, const ledger_changes_t *c, journal_content_t *content) {
    uint32_t count = c->transfers_count;
    if (count == 0) return true;
    pg_copy_stream_t transfers, accounts;
    bool ok = pg_stream_begin(&transfers, tx->conn, TRANSFERS_COPY_SQL);
    /* a row without metadata is 116 bytes */
    if (tx->pipelined) pg_stream_hold(&transfers, (size_t)count * 192);
    for (uint32_t i = 0; ok && i < count; i++) {
        uint8_t hash[JOURNAL_ROW_HASH_BYTES];
        journal_row_hash_transfer(&c->transfers[i], hash);
        journal_content_add(content, hash);
        pg_bloom_id_add(tx->store, c->transfers[i].id);
        transfer_row(&transfers, &c->transfers[i], &c->transfer_accounts[2 * i]);
    }
    pg_stream_defer(&accounts, tx->conn, ACCOUNT_TRANSFERS_COPY_SQL);
    if (!account_rows_make(&accounts, c)) accounts.failed = true;
    if (!tx->pipelined || !ok) {
        ok = pg_stream_end(&transfers) && ok;
        if (!ok) accounts.failed = true;
        return pg_stream_end(&accounts) && ok;
    }
    tx->copy = pg_stream_end_async(&transfers, &accounts);
    tx->store->conn_copying = tx->copy != NULL;
    return tx->copy != NULL;
}

/* Every PG_BALANCE_SNAPSHOT_BATCHES batches, the balances in this batch. Not in a
 * staged next part: the accounts a first part created are not visible to it, and
 * the next batch writes the snapshot instead. */
static bool snapshot_due_write(pg_tx_t *tx, const ledger_changes_t *c) {
    pg_store_t *store = tx->store;
    if (tx->next || tx->batch_seq < store->accounts_as_of_seq + PG_BALANCE_SNAPSHOT_BATCHES) return true;
    pc_status status = balance_snapshot_write(store, tx->ledger, c->accounts_touched, c->accounts_touched_count,
                                              tx->batch_seq);
    tx->snapshot_written = status == PC_OK;
    return status == PC_OK;
}

/* The rows, hashed in the journal's content order: accounts, transfers, burned ids.
 * The transfers go last, so that a pipelined part's COPY can still be running when
 * this returns (the burned ids' hashes are added after theirs). */
static bool rows_write(pg_tx_t *tx, const ledger_changes_t *c, journal_content_t *content) {
    PGconn *conn = tx->conn;
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
    uint8_t (*failure_hashes)[JOURNAL_ROW_HASH_BYTES] = NULL;
    if (c->failures_count > 0) failure_hashes = malloc(sizeof *failure_hashes * c->failures_count);
    ok = ok && (c->failures_count == 0 || failure_hashes != NULL);
    for (uint32_t i = 0; ok && i < c->failures_count; i++) {
        failure_row(&failures, &c->failures[i], tx->batch_seq, failure_hashes[i]);
        pg_bloom_id_add(tx->store, c->failures[i].id);
    }
    for (uint32_t i = 0; i < c->history_count; i++) history_row(&history, tx->ledger, &c->history[i]);
    ok = ok && (failures.rows == 0 || pg_copy_send(conn, "COPY transfer_failures(id, result, timestamp, batch_seq,"
                " row_hash) FROM STDIN", &failures));
    ok = ok && (history.rows == 0 || pg_copy_send(conn, "COPY balance_history(account_id, timestamp, transfer_id,"
                " debits_pending, debits_posted, credits_pending, credits_posted) FROM STDIN", &history));
    pending_changes_keep(tx->pending_arrays, c);
    ok = ok && shard_accounts_write(tx, c);
    ok = ok && snapshot_due_write(tx, c);
    ok = ok && transfers_write(tx, c, content);
    for (uint32_t i = 0; ok && i < c->failures_count; i++) journal_content_add(content, failure_hashes[i]);
    free(failure_hashes);
    pg_copy_free(&accounts);
    pg_copy_free(&failures);
    pg_copy_free(&history);
    return ok;
}

static uint32_t *ids_copy(const uint32_t *from, uint32_t count) {
    uint32_t *copy = malloc(sizeof *copy * (count > 0 ? count : 1));
    if (copy != NULL && count > 0) memcpy(copy, from, sizeof *copy * count);
    return copy;
}

/* What the COMMIT will publish; a pipelined first part keeps its balances now. */
static bool publish_keep(pg_tx_t *tx, const ledger_changes_t *c) {
    pg_publish_t *p = &tx->publish;
    p->touched = ids_copy(c->accounts_touched, c->accounts_touched_count);
    p->touched_count = c->accounts_touched_count;
    p->created = ids_copy(c->accounts_created, c->accounts_created_count);
    p->created_count = c->accounts_created_count;
    if (p->touched == NULL || p->created == NULL) return false;
    if (!tx->pipelined) return true;
    p->balances = malloc(sizeof *p->balances * (p->touched_count + p->created_count + 1));
    if (p->balances == NULL) return false;
    for (uint32_t i = 0; i < p->touched_count; i++) {
        p->balances[i] = ledger_account_at(tx->ledger, p->touched[i])->balances;
    }
    for (uint32_t i = 0; i < p->created_count; i++) {
        p->balances[p->touched_count + i] = ledger_account_at(tx->ledger, p->created[i])->balances;
    }
    return true;
}

static void publish_free(pg_publish_t *p) {
    free(p->touched);
    free(p->created);
    free(p->balances);
    *p = (pg_publish_t){0};
}

pc_status pg_tx_write_changes(store_tx_t *base, const ledger_t *ledger, const ledger_changes_t *c, uint64_t batch_seq,
                              journal_content_t *content) {
    pg_tx_t *tx = (pg_tx_t *)base;
    pg_store_t *store = tx->store;
    PC_ASSERT(!tx->has_changes);
    PC_ASSERT(batch_seq == store->journal_head_seq + (tx->next ? 2 : 1));
    PC_ASSERT(!tx->next || c->pending_changes_count == 0);
    tx->ledger = ledger;
    tx->has_changes = true;
    tx->batch_seq = batch_seq;
    if (!tx->next) {
        store->tx_ledger = ledger;
        store->tx_changes = c;
    }
    if (!publish_keep(tx, c)) return PC_NO_MEMORY;
    if (!rows_write(tx, c, content)) return tx_failed(tx, "batch rows", false);
    return PC_OK;
}

/* Kept until the end statement: a pipelined part's transfers may still be going in. */
pc_status pg_tx_write_journal(store_tx_t *base, const journal_entry_t *e, const journal_checkpoint_t *cp) {
    pg_tx_t *tx = (pg_tx_t *)base;
    PC_ASSERT(tx->batch_seq != 0 && e->seq == tx->batch_seq);
    PC_ASSERT(!tx->journal_written);
    tx->journal = *e;
    tx->has_checkpoint = cp != NULL;
    if (cp != NULL) {
        PC_ASSERT(cp->seq == e->seq);
        tx->checkpoint = *cp;
    }
    tx->journal_written = true;
    return PC_OK;
}

/* The journal row and checkpoint given to pg_tx_write_journal. */
static pc_status journal_insert(pg_tx_t *tx) {
    const journal_entry_t *e = &tx->journal;
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
    PGresult *result = pg_query(tx->conn, "INSERT INTO journal(seq, timestamp_first, timestamp_last,"
                                " account_count, transfer_count, failure_count, content_hash, prev_hash, hash,"
                                " committed_ns) VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)", 10, params);
    PQclear(result);
    if (result == NULL) return tx_failed(tx, "insert journal", false);
    tx->journal_inserted = true;
    if (!tx->has_checkpoint) return PC_OK;
    const journal_checkpoint_t *cp = &tx->checkpoint;
    char key[2 * JOURNAL_PUBLIC_KEY_BYTES + 3], signature[2 * JOURNAL_SIGNATURE_BYTES + 3];
    pg_bytea_text(cp->hash, JOURNAL_HASH_BYTES, hashes[0]);
    pg_bytea_text(cp->public_key, JOURNAL_PUBLIC_KEY_BYTES, key);
    pg_bytea_text(cp->signature, JOURNAL_SIGNATURE_BYTES, signature);
    const char *cp_params[] = {numbers[0], hashes[0], key, signature};
    result = pg_query(tx->conn, "INSERT INTO journal_checkpoints(seq, hash, public_key, signature)"
                                " VALUES($1, $2, $3, $4)", 4, cp_params);
    PQclear(result);
    return result != NULL ? PC_OK : tx_failed(tx, "insert journal checkpoint", false);
}

/* After COMMIT: readers see the new balances (as of this transaction's rows); the
 * batch's accounts join the dirty list (or the snapshot it carried cleared it). */
static void tx_publish(pg_tx_t *tx) {
    pg_store_t *store = tx->store;
    const pg_publish_t *p = &tx->publish;
    store->writable = true;
    if (tx->has_changes) {
        PC_ASSERT(tx->journal_inserted);
        store->journal_head_seq = tx->batch_seq;
        store_shadow_batch_begin(store->shadow);
        for (uint32_t i = 0; i < p->touched_count + p->created_count; i++) {
            bool created = i >= p->touched_count;
            uint32_t no = created ? p->created[i - p->touched_count] : p->touched[i];
            const ledger_balances_t *b = p->balances != NULL ? &p->balances[i]
                                                             : &ledger_account_at(tx->ledger, no)->balances;
            store_shadow_publish(store->shadow, no, b);
            if (!created && !tx->snapshot_written) store_dirty_mark(&store->dirty, no);
        }
        store_shadow_batch_end(store->shadow);
        store_shadow_published(store->shadow, tx->batch_seq);
    }
    if (tx->snapshot_written) {
        store_dirty_clear(&store->dirty);
        store->accounts_as_of_seq = tx->batch_seq;
    }
}

static void tx_free(pg_tx_t *tx) {
    PC_ASSERT(tx->copy == NULL);
    pc_bytes_free(&tx->pending_arrays[0]);
    pc_bytes_free(&tx->pending_arrays[1]);
    publish_free(&tx->publish);
    free(tx);
}

/* Everything before the end statement of a batch: the transfers' COPY done, the
 * journal row, the injected fault, the events. On failure tx is rolled back. */
static pc_status tx_end_prepare(pg_tx_t *tx) {
    pg_store_t *store = tx->store;
    PC_ASSERT(!tx->has_changes || tx->journal_written);
    copy_join(tx);
    pc_status status = tx->copy_failed ? tx_failed(tx, "batch rows", false) : PC_OK;
    if (status == PC_OK && !pending_changes_write(tx->conn, tx->pending_arrays)) {
        status = tx_failed(tx, "pending states", false);
    }
    if (status == PC_OK && tx->journal_written) status = journal_insert(tx);
    if (status != PC_OK) {
        pg_tx_rollback(&tx->base);
        return status;
    }
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
    /* a staged next part has no events: pipelined batches have no batch hook */
    PC_ASSERT(!tx->next || (store->events_copy.rows == 0 && store->owners_copy.rows == 0));
    if (!tx->next && pg_events_flush(store) != PC_OK) {
        status = write_failed(store, "events", false);
        pg_tx_rollback(&tx->base);
        return status;
    }
    return PC_OK;
}

/* Runs the batch's end statement ('sql': COMMIT or PREPARE TRANSACTION), whose
 * command tag is 'tag' on success. On failure tx is freed. */
static pc_status tx_end(pg_tx_t *tx, const char *sql, const char *tag, const char *what) {
    pc_status status = tx_end_prepare(tx);
    if (status != PC_OK) return status;
    PC_ASSERT(!tx->next || tx->store->journal_head_seq + 1 == tx->batch_seq); /* its first part committed */
    PGresult *result = PQexec(tx->conn, sql);
    bool ok = PQresultStatus(result) == PGRES_COMMAND_OK;
    /* the end of a transaction a statement aborted answers "ROLLBACK": nothing is there */
    bool rolled_back = ok && strcmp(PQcmdStatus(result), tag) != 0;
    PQclear(result);
    if (!ok || rolled_back) {
        status = tx_failed(tx, what, !rolled_back);
        tx_free(tx);
        return status;
    }
    return PC_OK;
}

pc_status pg_tx_commit(store_tx_t *base) {
    pg_tx_t *tx = (pg_tx_t *)base;
    store_shadow_t *shadow = tx->store->shadow;
    if (tx->has_changes) store_shadow_committing(shadow, tx->batch_seq);
    pc_status status = tx_end(tx, "COMMIT", "COMMIT", "commit");
    if (status != PC_OK) {
        store_shadow_commit_failed(shadow);
        return status;
    }
    tx_publish(tx);
    tx_free(tx);
    return PC_OK;
}

/* The next part's transaction on the second connection (made at the first use, and
 * again after it broke). Its first statement takes the pipeline lock shared for the
 * transaction: a writer that takes over waits for it to end (pg_store.c), so that a
 * next part whose COMMIT is still on its way when this writer's connection dies is
 * in the database, or not, before the new writer loads. */
pc_status pg_tx_begin_next(store_tx_t *first_base, store_tx_t **out) {
    pg_tx_t *first = (pg_tx_t *)first_base;
    pg_store_t *store = first->store;
    PC_ASSERT(!first->next && !first->has_changes && first->conn == store->conn);
    if (store->failed != PC_OK) return store->failed;
    pc_status status = PC_OK;
    if (store->conn_next == NULL) {
        status = pg_connect(store->url, &store->conn_next, store->error_detail, sizeof store->error_detail);
        if (status == PC_OK) {
            status = pg_settings_check(store->conn_next, store->error_detail, sizeof store->error_detail);
        }
        if (status != PC_OK) {
            PQfinish(store->conn_next);
            store->conn_next = NULL;
            return status;
        }
    }
    pg_tx_t *tx = calloc(1, sizeof *tx);
    if (tx == NULL) return PC_NO_MEMORY;
    *tx = (pg_tx_t){.base.store = first_base->store, .store = store, .conn = store->conn_next, .next = true};
    arrays_init(tx->pending_arrays, 2);
    char sql[160];
    snprintf(sql, sizeof sql, "BEGIN; SELECT pg_advisory_xact_lock_shared(%d, %d)", PG_WRITER_LOCK_KEY1,
             PG_PIPELINE_LOCK_KEY2);
    if (!pg_exec_ok(tx->conn, sql)) {
        status = tx_failed(tx, "begin next", false);
        if (tx->conn != NULL) (void)pg_exec_ok(tx->conn, "ROLLBACK");
        free(tx);
        return status;
    }
    first->pipelined = true;
    *out = &tx->base;
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
    PC_ASSERT(!tx->next && !tx->pipelined);
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
    if (commit && tx->has_changes) store_shadow_committing(tx->store->shadow, tx->batch_seq);
    pc_status status = pg_exec_ok(tx->store->conn, sql) ? PC_OK
                                                        : write_failed(tx->store, commit ? "commit prepared"
                                                                                         : "rollback prepared", true);
    if (status != PC_OK) store_shadow_commit_failed(tx->store->shadow);
    if (status == PC_OK && commit) tx_publish(tx);
    tx_free(tx);
    return status;
}

static pc_status pg_tx_commit_prepared(store_tx_t *base) { return prepared_end((pg_tx_t *)base, true); }
static pc_status pg_tx_rollback_prepared(store_tx_t *base) { return prepared_end((pg_tx_t *)base, false); }

const store_two_phase_ops_t store_pg_two_phase_ops = {
    .tx_prepare = pg_tx_prepare,
    .tx_commit_prepared = pg_tx_commit_prepared,
    .tx_rollback_prepared = pg_tx_rollback_prepared,
};

/* A staged next part's rollback leaves the store's batch state (prefetch, events,
 * the first part's ledger) to its first part. */
void pg_tx_rollback(store_tx_t *base) {
    pg_tx_t *tx = (pg_tx_t *)base;
    copy_join(tx);
    if (!tx->next) {
        pg_prefetch_clear(tx->store);
        pg_events_discard(tx->store);
        tx->store->tx_ledger = NULL;
        tx->store->tx_changes = NULL;
    }
    if (tx->conn != NULL && PQtransactionStatus(tx->conn) != PQTRANS_IDLE && !pg_exec_ok(tx->conn, "ROLLBACK")) {
        (void)tx_failed(tx, "rollback", !tx->next);
    }
    tx_free(tx);
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
