/* journal/verify.c: the verifier (verify.h), over a backend's row streams from one
 * consistent snapshot, merged by journal seq:
 *   accounts      in memory, by `no` (their batch_seq never decreases along `no`)
 *   transfers     ORDER BY timestamp (the order the ledger applied them)
 *   failures      ORDER BY timestamp
 *   checkpoints   ORDER BY seq (signed journal checkpoints)
 * For each journal row the batch's row hashes are fed, in apply order, into the
 * content hash; the entry hash is resealed and linked to the previous one. Transfers
 * are replayed into per-account balances as they stream; open pending transfers sit
 * in a hash table until posted, voided or expired. Account rows hold a balance
 * snapshot as of journal seq meta.accounts_as_of_seq, so the replay is snapshotted
 * at that seq and the stored balances must equal the snapshot;
 * each currency must balance in the stored rows and in the full replay.
 * Everything reports the first discrepancy and stops: later ones are often echoes. */
#include "journal/verify.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

/* ---- accounts, in memory ---- */

typedef struct {
    char *id;                      /* owned */
    char currency[4];
    uint16_t flags;
    uint64_t batch_seq;
    uint64_t timestamp_ns;
    int64_t no;
    ledger_balances_t stored;
    ledger_balances_t replay;
    ledger_balances_t replay_as_of; /* the replay at meta.accounts_as_of_seq */
    uint8_t row_hash[JOURNAL_ROW_HASH_BYTES];
} verify_account_t;

/* Open pending transfers, keyed by id: linear probing, backward-shift deletion. */
typedef struct {
    char id[PC_ID_SIZE];           /* "" = empty slot */
    int64_t amount;
    uint32_t debit_index;
    uint32_t credit_index;
    int64_t stored_state;          /* pending_state on the pending transfer's row */
    uint64_t timestamp_ns;
    uint64_t batch_seq;
} verify_pending_t;

typedef struct {
    verify_pending_t *slots;
    uint64_t capacity;             /* power of two */
    uint64_t count;
} pending_table_t;

/* The account index: the id's hash (to skip most string compares) and index + 1. */
typedef struct {
    uint64_t hash;
    uint32_t entry;                /* index + 1; 0 = empty */
} account_slot_t;

/* One transfer row as read. */
typedef struct {
    ledger_transfer_t transfer;
    int64_t pending_state;
    uint64_t batch_seq;
    uint8_t row_hash[JOURNAL_ROW_HASH_BYTES];
    char metadata[LEDGER_METADATA_BYTES_MAX + 1];
} transfer_row_t;

/* One balance_history row as read. */
typedef struct {
    char account_id[PC_ID_SIZE];
    char transfer_id[PC_ID_SIZE];
    uint64_t timestamp_ns;
    ledger_balances_t balances;
} history_row_t;

typedef struct {
    ledger_failure_t failure;
    uint64_t batch_seq;
    uint8_t row_hash[JOURNAL_ROW_HASH_BYTES];
} failure_row_t;

typedef struct {
    journal_entry_t entry;
    uint8_t stored_hash[JOURNAL_HASH_BYTES];
} journal_row_t;

typedef struct {
    journal_rows_t *rows;
    journal_report_t *report;
    bool failed;                   /* a discrepancy was named */
    pc_status error;               /* could not run (PC_OK while it can) */
    /* accounts */
    verify_account_t *accounts;
    uint32_t account_count;
    account_slot_t *account_slots;  /* open addressing by id hash */
    uint64_t account_slot_count;   /* power of two */
    uint32_t account_cursor;       /* next account to feed into a batch */
    pending_table_t pending;
    /* streams */
    bool transfer_ready;
    transfer_row_t transfer_row;
    bool failure_ready;
    failure_row_t failure_row;
    bool history_ready;
    history_row_t history_row;
    bool checkpoint_ready;
    journal_checkpoint_t checkpoint;
    /* chain */
    uint64_t seq;
    uint8_t hash[JOURNAL_HASH_BYTES];
    uint64_t checkpoint_seq_last;
    uint64_t accounts_as_of_seq;   /* meta: the balance snapshot's seq */
    bool key_given;
    bool key_known;
    uint8_t public_key[JOURNAL_PUBLIC_KEY_BYTES];
} verify_t;

/* ---- reporting ---- */

__attribute__((format(printf, 2, 3))) static bool discrepancy(verify_t *v, const char *fmt, ...) {
    if (v->failed || v->error != PC_OK) return false;
    va_list args;
    va_start(args, fmt);
    vsnprintf(v->report->discrepancy, sizeof(v->report->discrepancy), fmt, args);
    va_end(args);
    v->failed = true;
    return false;
}

static bool read_error(verify_t *v, pc_status status, const char *what) {
    if (v->error == PC_OK && !v->failed) {
        v->error = status;
        snprintf(v->report->error_detail, sizeof(v->report->error_detail), "%s: %s", what,
                 v->rows != NULL ? v->rows->ops->error(v->rows) : "no database");
    }
    return false;
}

static bool stopped(const verify_t *v) { return v->failed || v->error != PC_OK; }

/* ---- column helpers: a tampered row may hold anything; copy with bounds ---- */

/* A column of the current row of a stream. */
typedef struct {
    journal_rows_t *rows;
    journal_stream_t stream;
} row_t;

static row_t row_of(verify_t *v, journal_stream_t stream) { return (row_t){v->rows, stream}; }

static journal_value_t column_value(row_t row, int column) {
    journal_value_t value;
    row.rows->ops->value(row.rows, row.stream, column, &value);
    return value;
}

static bool column_null(row_t row, int column) { return column_value(row, column).kind == JOURNAL_VALUE_NULL; }

/* For naming a malformed row only. */
static int64_t column_shown(row_t row, int column) {
    return row.rows->ops->integer_shown(row.rows, row.stream, column);
}

/* Copies a TEXT column of at most 'size - 1' bytes without NULs ("" for NULL); false
 * for any other type or shape: the store writes text there, anything else is an edit. */
static bool column_text(row_t row, int column, char *out, size_t size) {
    journal_value_t value = column_value(row, column);
    out[0] = '\0';
    if (value.kind == JOURNAL_VALUE_NULL) return true;
    if (value.kind != JOURNAL_VALUE_TEXT || value.bytes == NULL) return false;
    if (value.byte_count >= size) return false;
    if (strlen((const char *)value.bytes) != value.byte_count) return false;
    memcpy(out, value.bytes, value.byte_count + 1);
    return true;
}

static bool column_blob(row_t row, int column, uint8_t *out, size_t byte_count) {
    journal_value_t value = column_value(row, column);
    if (value.kind != JOURNAL_VALUE_BLOB) return false; /* what the store binds */
    if (value.bytes == NULL || value.byte_count != byte_count) return false;
    memcpy(out, value.bytes, byte_count);
    return true;
}

static bool column_in_range(row_t row, int column, int64_t low, int64_t high, int64_t *out) {
    journal_value_t value = column_value(row, column);
    *out = value.kind == JOURNAL_VALUE_INTEGER ? value.integer : column_shown(row, column);
    return value.kind == JOURNAL_VALUE_INTEGER && *out >= low && *out <= high;
}

/* Steps 'stream': true with a row; false at the end (*ready = false) or on an error. */
static bool stream_step(verify_t *v, journal_stream_t stream, bool *ready, const char *what) {
    bool has_row = false;
    pc_status status = v->rows->ops->next(v->rows, stream, &has_row);
    *ready = status == PC_OK && has_row;
    if (status != PC_OK) read_error(v, status, what);
    return *ready;
}

static bool stream_open(verify_t *v, journal_stream_t stream, const char *what) {
    pc_status status = v->rows->ops->stream_open(v->rows, stream);
    return status == PC_OK || read_error(v, status, what);
}

/* ---- the account table ---- */

/* Ids are client-chosen: keyed with a random key per process, so that a database
 * full of crafted ids cannot turn these tables into scans. */
static pc_hash_key_t id_hash_key;
static pthread_once_t id_hash_key_once = PTHREAD_ONCE_INIT;
static void id_hash_key_make(void) { pc_hash_key_random(&id_hash_key); }

static uint64_t id_hash(const char *id) {
    PC_ASSERT(pthread_once(&id_hash_key_once, id_hash_key_make) == 0);
    return pc_hash_keyed(&id_hash_key, id, strlen(id));
}

static uint64_t slot_of_hash(uint64_t hash, uint64_t slot_count) {
    return (hash >> 32) & (slot_count - 1);
}

static uint64_t slot_of(const char *id, uint64_t slot_count) {
    return slot_of_hash(id_hash(id), slot_count);
}

static verify_account_t *account_find(verify_t *v, const char *id) {
    uint64_t mask = v->account_slot_count - 1;
    uint64_t hash = id_hash(id);
    for (uint64_t probe = 0, s = slot_of_hash(hash, v->account_slot_count); probe <= mask;
         probe++, s = (s + 1) & mask) {
        const account_slot_t *slot = &v->account_slots[s];
        if (slot->entry == 0) return NULL;
        if (slot->hash == hash && strcmp(v->accounts[slot->entry - 1].id, id) == 0) {
            return &v->accounts[slot->entry - 1];
        }
    }
    return NULL;
}

static bool account_index_build(verify_t *v) {
    uint64_t slot_count = 16;
    while (slot_count < 2ull * v->account_count) slot_count *= 2;
    v->account_slots = calloc(slot_count, sizeof(account_slot_t));
    if (v->account_slots == NULL) return read_error(v, PC_NO_MEMORY, "account index");
    v->account_slot_count = slot_count;
    for (uint32_t i = 0; i < v->account_count; i++) {
        const char *id = v->accounts[i].id;
        if (account_find(v, id) != NULL) {
            return discrepancy(v, "account %s (no %" PRId64 "): id appears twice", id,
                               v->accounts[i].no);
        }
        uint64_t hash = id_hash(id);
        uint64_t s = slot_of_hash(hash, slot_count);
        while (v->account_slots[s].entry != 0) s = (s + 1) & (slot_count - 1);
        v->account_slots[s] = (account_slot_t){hash, i + 1};
    }
    return true;
}

/* ---- loading accounts ---- */

/* Reads the balance columns 5..8; false when one is not a non-negative integer. */
static bool account_balances_read(row_t row, ledger_balances_t *out) {
    return column_in_range(row, 5, 0, INT64_MAX, &out->debits_pending) &&
           column_in_range(row, 6, 0, INT64_MAX, &out->debits_posted) &&
           column_in_range(row, 7, 0, INT64_MAX, &out->credits_pending) &&
           column_in_range(row, 8, 0, INT64_MAX, &out->credits_posted);
}

/* Decodes one account row into 'a' (and 'event' for hashing); names what is wrong. */
static bool account_row_read(verify_t *v, uint32_t index, verify_account_t *a, char *metadata) {
    row_t cols = row_of(v, JOURNAL_STREAM_ACCOUNTS);
    ledger_account_t event;
    int64_t code, flags, timestamp, batch_seq;
    memset(&event, 0, sizeof(event));
    a->no = column_shown(cols, 0);
    if (!column_text(cols, 1, event.id, sizeof(event.id)) || !pc_id_valid(event.id)) {
        return discrepancy(v, "account at no %" PRId64 ": id is not a valid id", a->no);
    }
    a->id = pc_strdup(event.id);
    if (a->id == NULL) return read_error(v, PC_NO_MEMORY, "account ids");
    if (a->no != (int64_t)index) {
        return discrepancy(v, "account %s (no %" PRId64 "): expected no %" PRIu32, a->id,
                           a->no, index);
    }
    bool fields_ok = column_text(cols, 2, event.currency, sizeof(event.currency)) &&
                     column_in_range(cols, 3, 0, UINT16_MAX, &code) &&
                     column_in_range(cols, 4, 0, UINT16_MAX, &flags) &&
                     account_balances_read(cols, &a->stored) &&
                     column_in_range(cols, 9, 0, INT64_MAX, &timestamp) &&
                     column_text(cols, 10, metadata, LEDGER_METADATA_BYTES_MAX + 1) &&
                     column_in_range(cols, 11, 1, INT64_MAX, &batch_seq) &&
                     column_blob(cols, 12, a->row_hash, JOURNAL_ROW_HASH_BYTES);
    if (!fields_ok) return discrepancy(v, "account %s (no %" PRId64 "): malformed row", a->id, a->no);
    memcpy(a->currency, event.currency, sizeof(a->currency));
    a->timestamp_ns = (uint64_t)timestamp;
    a->batch_seq = (uint64_t)batch_seq;
    a->flags = (uint16_t)flags;
    event.code = (uint16_t)code;
    event.flags = (uint16_t)flags;
    event.timestamp_ns = a->timestamp_ns;
    event.metadata_json = column_null(cols, 10) ? NULL : metadata;
    uint8_t row_hash[JOURNAL_ROW_HASH_BYTES];
    journal_row_hash_account(&event, row_hash);
    if (memcmp(row_hash, a->row_hash, sizeof(row_hash)) != 0) {
        return discrepancy(v, "account %s (no %" PRId64 ", batch %" PRIu64 "): row hash mismatch",
                           a->id, a->no, a->batch_seq);
    }
    return true;
}

static bool accounts_count(verify_t *v, uint32_t *out) {
    bool ready = false;
    if (!stream_open(v, JOURNAL_STREAM_ACCOUNT_COUNT, "count accounts") ||
        !stream_step(v, JOURNAL_STREAM_ACCOUNT_COUNT, &ready, "count accounts")) {
        return read_error(v, PC_STORE_READ_FAILED, "count accounts");
    }
    int64_t count = column_shown(row_of(v, JOURNAL_STREAM_ACCOUNT_COUNT), 0);
    if (count > (int64_t)LEDGER_ACCOUNTS_MAX) {
        return discrepancy(v, "accounts: %" PRId64 " rows, more than the ledger holds", count);
    }
    *out = (uint32_t)count;
    return true;
}

static bool accounts_load(verify_t *v) {
    uint32_t count = 0;
    if (!accounts_count(v, &count)) return false;
    v->accounts = calloc(count > 0 ? count : 1, sizeof(verify_account_t));
    char *metadata = malloc(LEDGER_METADATA_BYTES_MAX + 1);
    if (v->accounts == NULL || metadata == NULL) {
        free(metadata);
        return read_error(v, PC_NO_MEMORY, "accounts");
    }
    if (!stream_open(v, JOURNAL_STREAM_ACCOUNTS, "read accounts")) {
        free(metadata);
        return false;
    }
    uint64_t batch_seq_last = 0;
    bool ready = false;
    while (!stopped(v) && stream_step(v, JOURNAL_STREAM_ACCOUNTS, &ready, "read accounts")) {
        if (v->account_count == count) break; /* the snapshot cannot grow; be safe */
        verify_account_t *a = &v->accounts[v->account_count];
        v->account_count++;
        if (!account_row_read(v, v->account_count - 1, a, metadata)) break;
        if (a->batch_seq < batch_seq_last) {
            discrepancy(v, "account %s (no %" PRId64 ", batch %" PRIu64 "): batch out of order",
                        a->id, a->no, a->batch_seq);
        }
        batch_seq_last = a->batch_seq;
    }
    free(metadata);
    return !stopped(v) && account_index_build(v);
}

/* ---- open pending transfers ---- */

static verify_pending_t *pending_slot(pending_table_t *table, const char *id) {
    uint64_t mask = table->capacity - 1;
    uint64_t s = slot_of(id, table->capacity);
    for (uint64_t probe = 0; probe <= mask; probe++, s = (s + 1) & mask) {
        verify_pending_t *slot = &table->slots[s];
        if (slot->id[0] == '\0' || strcmp(slot->id, id) == 0) return slot;
    }
    PC_ASSERT(false); /* the table is never full: it grows at half */
    return NULL;
}

static bool pending_grow(pending_table_t *table) {
    pending_table_t bigger = {.capacity = table->capacity == 0 ? 1024 : 2 * table->capacity};
    bigger.slots = calloc(bigger.capacity, sizeof(verify_pending_t));
    if (bigger.slots == NULL) return false;
    for (uint64_t i = 0; i < table->capacity; i++) {
        if (table->slots[i].id[0] == '\0') continue;
        *pending_slot(&bigger, table->slots[i].id) = table->slots[i];
        bigger.count++;
    }
    free(table->slots);
    *table = bigger;
    return true;
}

static bool pending_insert(pending_table_t *table, const verify_pending_t *entry) {
    if (2 * (table->count + 1) > table->capacity && !pending_grow(table)) return false;
    verify_pending_t *slot = pending_slot(table, entry->id);
    PC_ASSERT(slot->id[0] == '\0'); /* the caller looked for a duplicate first */
    *slot = *entry;
    table->count++;
    return true;
}

static verify_pending_t *pending_find(pending_table_t *table, const char *id) {
    if (table->capacity == 0) return NULL;
    verify_pending_t *slot = pending_slot(table, id);
    return slot->id[0] == '\0' ? NULL : slot;
}

/* Backward-shift deletion keeps every probe chain unbroken without tombstones. */
static void pending_remove(pending_table_t *table, verify_pending_t *slot) {
    uint64_t mask = table->capacity - 1;
    uint64_t hole = (uint64_t)(slot - table->slots);
    uint64_t s = (hole + 1) & mask;
    for (uint64_t probe = 0; probe < table->capacity; probe++, s = (s + 1) & mask) {
        verify_pending_t *next = &table->slots[s];
        if (next->id[0] == '\0') break;
        uint64_t home = slot_of(next->id, table->capacity);
        /* 'next' may move into the hole when its home is not within (hole, s]. */
        bool stays = hole <= s ? (home > hole && home <= s) : (home > hole || home <= s);
        if (stays) continue;
        table->slots[hole] = *next;
        hole = s;
    }
    table->slots[hole].id[0] = '\0';
    table->count--;
}

/* ---- streams ---- */

static bool transfer_columns_read(row_t cols, transfer_row_t *row) {
    ledger_transfer_t *t = &row->transfer;
    int64_t timestamp = 0, amount = 0, code = 0, flags = 0, timeout_s = 0, batch_seq = 0;
    bool ok = column_in_range(cols, 0, 0, INT64_MAX, &timestamp) &&
              column_text(cols, 2, t->debit_account_id, sizeof(t->debit_account_id)) &&
              column_text(cols, 3, t->credit_account_id, sizeof(t->credit_account_id)) &&
              column_in_range(cols, 4, 0, INT64_MAX, &amount) &&
              column_text(cols, 5, t->currency, sizeof(t->currency)) &&
              column_in_range(cols, 6, 0, UINT16_MAX, &code) &&
              column_in_range(cols, 7, 0, UINT16_MAX, &flags) &&
              column_text(cols, 8, t->pending_id, sizeof(t->pending_id)) &&
              /* no pending_id is NULL: an empty string is not what the store writes */
              (column_null(cols, 8) || t->pending_id[0] != '\0') &&
              column_in_range(cols, 9, 0, UINT32_MAX, &timeout_s) &&
              column_text(cols, 10, row->metadata, sizeof(row->metadata)) &&
              column_in_range(cols, 11, LEDGER_PENDING_NONE, LEDGER_PENDING_EXPIRED,
                              &row->pending_state) &&
              column_in_range(cols, 12, 1, INT64_MAX, &batch_seq) &&
              /* null: a backend that stores no row hash (PostgreSQL from schema v16) */
              (column_null(cols, 13) || column_blob(cols, 13, row->row_hash, JOURNAL_ROW_HASH_BYTES));
    t->timestamp_ns = (uint64_t)timestamp;
    t->amount = amount;
    t->code = (uint16_t)code;
    t->flags = (uint16_t)flags;
    t->timeout_s = (uint32_t)timeout_s;
    t->metadata_json = column_null(cols, 10) ? NULL : row->metadata;
    row->batch_seq = (uint64_t)batch_seq;
    return ok;
}

/* Reads the next transfer and checks its row hash. */
static bool transfer_next(verify_t *v) {
    transfer_row_t *row = &v->transfer_row;
    row_t cols = row_of(v, JOURNAL_STREAM_TRANSFERS);
    if (!stream_step(v, JOURNAL_STREAM_TRANSFERS, &v->transfer_ready, "read transfers")) return false;
    memset(&row->transfer, 0, sizeof(row->transfer));
    if (!column_text(cols, 1, row->transfer.id, sizeof(row->transfer.id))) {
        return discrepancy(v, "transfer at timestamp %" PRId64 ": id is not a valid id",
                           column_shown(cols, 0));
    }
    if (!transfer_columns_read(cols, row)) {
        return discrepancy(v, "transfer %s (timestamp %" PRId64 "): malformed row",
                           row->transfer.id, column_shown(cols, 0));
    }
    uint8_t row_hash[JOURNAL_ROW_HASH_BYTES];
    journal_row_hash_transfer(&row->transfer, row_hash);
    if (column_null(cols, 13)) {
        /* computed from the row: a changed field shows as its batch's content hash */
        memcpy(row->row_hash, row_hash, sizeof(row_hash));
        return true;
    }
    if (memcmp(row_hash, row->row_hash, sizeof(row_hash)) != 0) {
        return discrepancy(v, "transfer %s (timestamp %" PRIu64 ", batch %" PRIu64
                           "): row hash mismatch", row->transfer.id,
                           row->transfer.timestamp_ns, row->batch_seq);
    }
    return true;
}

static bool failure_next(verify_t *v) {
    failure_row_t *row = &v->failure_row;
    row_t cols = row_of(v, JOURNAL_STREAM_FAILURES);
    char code[64];
    int64_t timestamp, batch_seq;
    if (!stream_step(v, JOURNAL_STREAM_FAILURES, &v->failure_ready, "read transfer_failures")) return false;
    memset(row, 0, sizeof(*row));
    if (!column_text(cols, 0, row->failure.id, sizeof(row->failure.id))) {
        return discrepancy(v, "failure at timestamp %" PRId64 ": id is not a valid id",
                           column_shown(cols, 2));
    }
    bool ok = column_text(cols, 1, code, sizeof(code)) &&
              pc_status_from_code(code, &row->failure.failure) &&
              row->failure.failure != PC_OK &&
              column_in_range(cols, 2, 0, INT64_MAX, &timestamp) &&
              column_in_range(cols, 3, 1, INT64_MAX, &batch_seq) &&
              column_blob(cols, 4, row->row_hash, JOURNAL_ROW_HASH_BYTES);
    if (!ok) return discrepancy(v, "failure %s: malformed row", row->failure.id);
    row->failure.timestamp_ns = (uint64_t)timestamp;
    row->batch_seq = (uint64_t)batch_seq;
    uint8_t row_hash[JOURNAL_ROW_HASH_BYTES];
    journal_row_hash_failure(&row->failure, row_hash);
    if (memcmp(row_hash, row->row_hash, sizeof(row_hash)) != 0) {
        return discrepancy(v, "failure %s (timestamp %" PRIu64 ", batch %" PRIu64
                           "): row hash mismatch", row->failure.id, row->failure.timestamp_ns,
                           row->batch_seq);
    }
    return true;
}

static bool history_next(verify_t *v) {
    history_row_t *row = &v->history_row;
    row_t cols = row_of(v, JOURNAL_STREAM_HISTORY);
    int64_t timestamp;
    if (!stream_step(v, JOURNAL_STREAM_HISTORY, &v->history_ready, "read balance_history")) return false;
    memset(row, 0, sizeof(*row));
    bool ok = column_text(cols, 0, row->account_id, sizeof(row->account_id)) &&
              column_in_range(cols, 1, 0, INT64_MAX, &timestamp) &&
              column_text(cols, 2, row->transfer_id, sizeof(row->transfer_id)) &&
              column_in_range(cols, 3, 0, INT64_MAX, &row->balances.debits_pending) &&
              column_in_range(cols, 4, 0, INT64_MAX, &row->balances.debits_posted) &&
              column_in_range(cols, 5, 0, INT64_MAX, &row->balances.credits_pending) &&
              column_in_range(cols, 6, 0, INT64_MAX, &row->balances.credits_posted);
    if (!ok) {
        return discrepancy(v, "balance_history of %s at timestamp %" PRId64 ": malformed row",
                           row->account_id, column_shown(cols, 1));
    }
    row->timestamp_ns = (uint64_t)timestamp;
    return true;
}

static bool checkpoint_next(verify_t *v) {
    row_t cols = row_of(v, JOURNAL_STREAM_CHECKPOINTS);
    journal_checkpoint_t *cp = &v->checkpoint;
    int64_t seq;
    if (!stream_step(v, JOURNAL_STREAM_CHECKPOINTS, &v->checkpoint_ready, "read checkpoints")) return false;
    bool ok = column_in_range(cols, 0, 1, INT64_MAX, &seq) &&
              column_blob(cols, 1, cp->hash, JOURNAL_HASH_BYTES) &&
              column_blob(cols, 2, cp->public_key, JOURNAL_PUBLIC_KEY_BYTES) &&
              column_blob(cols, 3, cp->signature, JOURNAL_SIGNATURE_BYTES);
    if (!ok) {
        return discrepancy(v, "checkpoint seq %" PRId64 ": malformed row", column_shown(cols, 0));
    }
    cp->seq = (uint64_t)seq;
    return true;
}

static bool journal_row_read(verify_t *v, journal_row_t *row) {
    row_t cols = row_of(v, JOURNAL_STREAM_JOURNAL);
    journal_entry_t *e = &row->entry;
    int64_t seq, first, last, accounts, transfers, failures;
    bool ok = column_in_range(cols, 0, 1, INT64_MAX, &seq) &&
              column_in_range(cols, 1, 0, INT64_MAX, &first) &&
              column_in_range(cols, 2, first, INT64_MAX, &last) &&
              column_in_range(cols, 3, 0, UINT32_MAX, &accounts) &&
              column_in_range(cols, 4, 0, UINT32_MAX, &transfers) &&
              column_in_range(cols, 5, 0, UINT32_MAX, &failures) &&
              column_blob(cols, 6, e->content_hash, JOURNAL_HASH_BYTES) &&
              column_blob(cols, 7, e->prev_hash, JOURNAL_HASH_BYTES) &&
              column_blob(cols, 8, row->stored_hash, JOURNAL_HASH_BYTES);
    if (!ok) {
        return discrepancy(v, "journal seq %" PRId64 ": malformed row", column_shown(cols, 0));
    }
    e->seq = (uint64_t)seq;
    e->timestamp_first_ns = (uint64_t)first;
    e->timestamp_last_ns = (uint64_t)last;
    e->account_count = (uint32_t)accounts;
    e->transfer_count = (uint32_t)transfers;
    e->failure_count = (uint32_t)failures;
    return true;
}

/* ---- balance replay ---- */

static const char *state_name(int64_t state) {
    static const char *const names[] = {"none", "open", "posted", "voided", "expired"};
    return state >= 0 && state <= LEDGER_PENDING_EXPIRED ? names[state] : "invalid";
}

/* Names the transfer 'row' in a discrepancy: "transfer t-1 (timestamp 5, batch 2)". */
#define ROW_FMT "transfer %s (timestamp %" PRIu64 ", batch %" PRIu64 ")"
#define ROW_ARGS(row) (row)->transfer.id, (row)->transfer.timestamp_ns, (row)->batch_seq

/* Adds 'delta' (either sign) to one replayed balance; it must stay in 0..INT64_MAX. */
static bool balance_move(verify_t *v, const transfer_row_t *row, const verify_account_t *a,
                         int64_t *balance, int64_t delta, const char *field) {
    int64_t sum;
    if (__builtin_add_overflow(*balance, delta, &sum) || sum < 0) {
        return discrepancy(v, ROW_FMT ": account %s %s leaves 0..INT64_MAX in the replay",
                           ROW_ARGS(row), a->id, field);
    }
    *balance = sum;
    return true;
}

static bool pending_open(verify_t *v, const transfer_row_t *row, verify_account_t *debit,
                         verify_account_t *credit) {
    verify_pending_t entry;
    memset(&entry, 0, sizeof(entry));
    memcpy(entry.id, row->transfer.id, sizeof(entry.id));
    entry.amount = row->transfer.amount;
    entry.debit_index = (uint32_t)(debit - v->accounts);
    entry.credit_index = (uint32_t)(credit - v->accounts);
    entry.stored_state = row->pending_state;
    entry.timestamp_ns = row->transfer.timestamp_ns;
    entry.batch_seq = row->batch_seq;
    if (row->pending_state == LEDGER_PENDING_NONE) {
        return discrepancy(v, ROW_FMT ": pending transfer with pending_state none", ROW_ARGS(row));
    }
    if (pending_find(&v->pending, entry.id) != NULL) {
        return discrepancy(v, ROW_FMT ": id appears twice", ROW_ARGS(row));
    }
    if (!pending_insert(&v->pending, &entry)) return read_error(v, PC_NO_MEMORY, "pending table");
    return balance_move(v, row, debit, &debit->replay.debits_pending, entry.amount,
                        "debits_pending") &&
           balance_move(v, row, credit, &credit->replay.credits_pending, entry.amount,
                        "credits_pending");
}

/* The pending transfer's row must say what its resolution did. */
static bool pending_state_agrees(verify_t *v, const verify_pending_t *p, int64_t state) {
    if (p->stored_state == state) return true;
    return discrepancy(v, "transfer %s (timestamp %" PRIu64 ", batch %" PRIu64
                       "): pending_state %s, replay %s", p->id, p->timestamp_ns, p->batch_seq,
                       state_name(p->stored_state), state_name(state));
}

/* A post, void or expiry: the pending amount leaves *_pending; a post then moves the
 * record's amount (at most the pending amount) to *_posted. */
static bool pending_resolve(verify_t *v, const transfer_row_t *row, verify_account_t *debit,
                            verify_account_t *credit, ledger_pending_state state) {
    const ledger_transfer_t *t = &row->transfer;
    verify_pending_t *p = pending_find(&v->pending, t->pending_id);
    if (p == NULL) {
        return discrepancy(v, ROW_FMT ": pending transfer '%s' is not open here",
                           ROW_ARGS(row), t->pending_id);
    }
    if (&v->accounts[p->debit_index] != debit || &v->accounts[p->credit_index] != credit) {
        return discrepancy(v, ROW_FMT ": accounts differ from pending transfer %s", ROW_ARGS(row),
                           p->id);
    }
    if (state == LEDGER_PENDING_POSTED && (t->amount < 1 || t->amount > p->amount)) {
        return discrepancy(v, ROW_FMT ": posts %" PRId64 " of a pending %" PRId64,
                           ROW_ARGS(row), t->amount, p->amount);
    }
    if (row->pending_state != LEDGER_PENDING_NONE) {
        return discrepancy(v, ROW_FMT ": pending_state %s on a resolving transfer",
                           ROW_ARGS(row), state_name(row->pending_state));
    }
    bool ok = pending_state_agrees(v, p, state) &&
              balance_move(v, row, debit, &debit->replay.debits_pending, -p->amount,
                           "debits_pending") &&
              balance_move(v, row, credit, &credit->replay.credits_pending, -p->amount,
                           "credits_pending");
    pending_remove(&v->pending, p);
    if (!ok || state != LEDGER_PENDING_POSTED) return ok;
    return balance_move(v, row, debit, &debit->replay.debits_posted, t->amount, "debits_posted") &&
           balance_move(v, row, credit, &credit->replay.credits_posted, t->amount,
                        "credits_posted");
}

static bool transfer_accounts(verify_t *v, const transfer_row_t *row, verify_account_t **debit,
                              verify_account_t **credit) {
    const ledger_transfer_t *t = &row->transfer;
    *debit = account_find(v, t->debit_account_id);
    *credit = account_find(v, t->credit_account_id);
    if (*debit == NULL || *credit == NULL || *debit == *credit) {
        return discrepancy(v, ROW_FMT ": accounts %s -> %s not two existing accounts",
                           ROW_ARGS(row), t->debit_account_id, t->credit_account_id);
    }
    if (strcmp((*debit)->currency, t->currency) != 0 ||
        strcmp((*credit)->currency, t->currency) != 0) {
        return discrepancy(v, ROW_FMT ": currency %s differs from an account's", ROW_ARGS(row),
                           t->currency);
    }
    if ((*debit)->timestamp_ns >= t->timestamp_ns || (*credit)->timestamp_ns >= t->timestamp_ns) {
        return discrepancy(v, ROW_FMT ": an account was created after it", ROW_ARGS(row));
    }
    return true;
}

static bool transfer_replay(verify_t *v, const transfer_row_t *row) {
    const ledger_transfer_t *t = &row->transfer;
    verify_account_t *debit, *credit;
    if (!transfer_accounts(v, row, &debit, &credit)) return false;
    if (t->flags & LEDGER_TRANSFER_EXPIRY) {
        return pending_resolve(v, row, debit, credit, LEDGER_PENDING_EXPIRED);
    }
    if (t->flags & LEDGER_TRANSFER_POST_PENDING) {
        return pending_resolve(v, row, debit, credit, LEDGER_PENDING_POSTED);
    }
    if (t->flags & LEDGER_TRANSFER_VOID_PENDING) {
        return pending_resolve(v, row, debit, credit, LEDGER_PENDING_VOIDED);
    }
    if (t->flags & LEDGER_TRANSFER_PENDING) return pending_open(v, row, debit, credit);
    if (row->pending_state != LEDGER_PENDING_NONE) {
        return discrepancy(v, ROW_FMT ": pending_state %s on a posted transfer", ROW_ARGS(row),
                           state_name(row->pending_state));
    }
    if (t->amount < 1) return discrepancy(v, ROW_FMT ": amount %" PRId64, ROW_ARGS(row), t->amount);
    return balance_move(v, row, debit, &debit->replay.debits_posted, t->amount, "debits_posted") &&
           balance_move(v, row, credit, &credit->replay.credits_posted, t->amount,
                        "credits_posted");
}

/* ---- balance history: one row per transfer and side with the history flag ---- */

static bool history_row_wrong(verify_t *v, const history_row_t *h, const char *what) {
    return discrepancy(v, "balance_history of %s at timestamp %" PRIu64 " (transfer %s): %s",
                       h->account_id, h->timestamp_ns, h->transfer_id, what);
}

/* The rows at this transfer's timestamp name it, belong to its accounts with the
 * history flag, and hold those accounts' replayed balances after it. */
static bool transfer_history(verify_t *v, const transfer_row_t *row) {
    const ledger_transfer_t *t = &row->transfer;
    verify_account_t *debit = account_find(v, t->debit_account_id);
    verify_account_t *credit = account_find(v, t->credit_account_id);
    PC_ASSERT(debit != NULL && credit != NULL); /* transfer_accounts checked them */
    uint32_t expected = ((debit->flags & LEDGER_ACCOUNT_HISTORY) != 0) +
                        ((credit->flags & LEDGER_ACCOUNT_HISTORY) != 0);
    uint32_t seen = 0;
    while (!stopped(v) && v->history_ready && v->history_row.timestamp_ns <= t->timestamp_ns) {
        const history_row_t *h = &v->history_row;
        if (h->timestamp_ns < t->timestamp_ns) return history_row_wrong(v, h, "no such transfer");
        verify_account_t *a = strcmp(h->account_id, debit->id) == 0    ? debit
                              : strcmp(h->account_id, credit->id) == 0 ? credit
                                                                       : NULL;
        if (a == NULL || strcmp(h->transfer_id, t->id) != 0) {
            return history_row_wrong(v, h, "not an account of that transfer");
        }
        if (!(a->flags & LEDGER_ACCOUNT_HISTORY)) return history_row_wrong(v, h, "no history flag");
        if (memcmp(&h->balances, &a->replay, sizeof(h->balances)) != 0) {
            return history_row_wrong(v, h, "balances differ from the replay");
        }
        seen++;
        history_next(v);
    }
    if (stopped(v) || seen == expected) return !stopped(v);
    return discrepancy(v, ROW_FMT ": %" PRIu32 " balance_history rows, expected %" PRIu32,
                       ROW_ARGS(row), seen, expected);
}

/* ---- one journal row: its batch's rows, then the chain ---- */

static bool in_batch(verify_t *v, const journal_entry_t *e, uint64_t timestamp_ns,
                     const char *kind, const char *id) {
    if (timestamp_ns >= e->timestamp_first_ns && timestamp_ns <= e->timestamp_last_ns) return true;
    return discrepancy(v, "%s %s (timestamp %" PRIu64 ", batch %" PRIu64
                       "): outside the batch's timestamps %" PRIu64 "..%" PRIu64,
                       kind, id, timestamp_ns, e->seq, e->timestamp_first_ns,
                       e->timestamp_last_ns);
}

static bool batch_accounts(verify_t *v, const journal_entry_t *e, journal_content_t *content,
                           uint32_t *count) {
    while (!stopped(v) && v->account_cursor < v->account_count &&
           v->accounts[v->account_cursor].batch_seq <= e->seq) {
        const verify_account_t *a = &v->accounts[v->account_cursor++];
        if (a->batch_seq < e->seq) {
            return discrepancy(v, "account %s (no %" PRId64 ", batch %" PRIu64
                               "): batch has no journal row", a->id, a->no, a->batch_seq);
        }
        if (!in_batch(v, e, a->timestamp_ns, "account", a->id)) return false;
        journal_content_add(content, a->row_hash);
        (*count)++;
    }
    return !stopped(v);
}

static bool batch_transfers(verify_t *v, const journal_entry_t *e, journal_content_t *content,
                            uint32_t *count) {
    while (!stopped(v) && v->transfer_ready && v->transfer_row.batch_seq <= e->seq) {
        const transfer_row_t *row = &v->transfer_row;
        if (row->batch_seq < e->seq) {
            return discrepancy(v, ROW_FMT ": out of order (after batch %" PRIu64 ")",
                               ROW_ARGS(row), e->seq);
        }
        if (!in_batch(v, e, row->transfer.timestamp_ns, "transfer", row->transfer.id)) {
            return false;
        }
        if (!transfer_replay(v, row) || !transfer_history(v, row)) return false;
        journal_content_add(content, row->row_hash);
        (*count)++;
        transfer_next(v);
    }
    return !stopped(v);
}

static bool batch_failures(verify_t *v, const journal_entry_t *e, journal_content_t *content,
                           uint32_t *count) {
    while (!stopped(v) && v->failure_ready && v->failure_row.batch_seq <= e->seq) {
        const failure_row_t *row = &v->failure_row;
        if (row->batch_seq < e->seq) {
            return discrepancy(v, "failure %s (timestamp %" PRIu64 ", batch %" PRIu64
                               "): out of order", row->failure.id, row->failure.timestamp_ns,
                               row->batch_seq);
        }
        if (!in_batch(v, e, row->failure.timestamp_ns, "failure", row->failure.id)) return false;
        journal_content_add(content, row->row_hash);
        (*count)++;
        failure_next(v);
    }
    return !stopped(v);
}

static bool batch_count_agrees(verify_t *v, uint64_t seq, const char *what, uint32_t stored,
                               uint32_t rows) {
    if (stored == rows) return true;
    return discrepancy(v, "journal seq %" PRIu64 ": %s %" PRIu32 ", rows %" PRIu32, seq, what,
                       stored, rows);
}

/* Feeds the batch's rows; checks counts and the content hash. */
static bool batch_content(verify_t *v, const journal_entry_t *e) {
    journal_content_t content;
    uint32_t accounts = 0, transfers = 0, failures = 0;
    uint8_t content_hash[JOURNAL_HASH_BYTES];
    journal_content_init(&content);
    bool ok = batch_accounts(v, e, &content, &accounts) &&
              batch_transfers(v, e, &content, &transfers) &&
              batch_failures(v, e, &content, &failures);
    journal_content_final(&content, content_hash);
    if (!ok) return false;
    if (!batch_count_agrees(v, e->seq, "account_count", e->account_count, accounts) ||
        !batch_count_agrees(v, e->seq, "transfer_count", e->transfer_count, transfers) ||
        !batch_count_agrees(v, e->seq, "failure_count", e->failure_count, failures)) {
        return false;
    }
    v->report->accounts += accounts;
    v->report->transfers += transfers;
    v->report->failures += failures;
    if (memcmp(content_hash, e->content_hash, JOURNAL_HASH_BYTES) != 0) {
        /* where rows carry no hash of their own, this is where a changed row shows */
        return discrepancy(v, "journal seq %" PRIu64 ": content_hash mismatch (a row of the batch, timestamps %"
                           PRIu64 "..%" PRIu64 ", differs from what the journal sealed)", e->seq,
                           e->timestamp_first_ns, e->timestamp_last_ns);
    }
    return true;
}

static bool checkpoint_check(verify_t *v, const uint8_t journal_hash[JOURNAL_HASH_BYTES]) {
    const journal_checkpoint_t *cp = &v->checkpoint;
    if (memcmp(cp->hash, journal_hash, JOURNAL_HASH_BYTES) != 0) {
        return discrepancy(v, "checkpoint seq %" PRIu64 ": hash differs from the journal's",
                           cp->seq);
    }
    if (!v->key_known) {
        memcpy(v->public_key, cp->public_key, JOURNAL_PUBLIC_KEY_BYTES);
        v->key_known = true;
    }
    if (!v->key_given && memcmp(cp->public_key, v->public_key, JOURNAL_PUBLIC_KEY_BYTES) != 0) {
        return discrepancy(v, "checkpoint seq %" PRIu64 ": signed by another key than the first"
                           " checkpoint", cp->seq);
    }
    if (!journal_checkpoint_valid(cp, v->public_key)) {
        return discrepancy(v, "checkpoint seq %" PRIu64 ": signature invalid%s", cp->seq,
                           v->key_given ? " for --pubkey" : "");
    }
    v->report->checkpoints++;
    v->checkpoint_seq_last = cp->seq;
    return true;
}

/* Checkpoints up to 'seq'; one at 'seq' must sign 'journal_hash'. At most
 * JOURNAL_CHECKPOINT_BATCHES batches may pass without one. */
static bool batch_checkpoints(verify_t *v, uint64_t seq, const uint8_t journal_hash[JOURNAL_HASH_BYTES]) {
    while (!stopped(v) && v->checkpoint_ready && v->checkpoint.seq <= seq) {
        if (v->checkpoint.seq < seq) {
            return discrepancy(v, "checkpoint seq %" PRIu64 ": no journal row", v->checkpoint.seq);
        }
        if (!checkpoint_check(v, journal_hash)) return false;
        checkpoint_next(v);
    }
    if (!stopped(v) && seq - v->checkpoint_seq_last > JOURNAL_CHECKPOINT_BATCHES) {
        return discrepancy(v, "journal seq %" PRIu64 ": no checkpoint since seq %" PRIu64, seq,
                           v->checkpoint_seq_last);
    }
    return !stopped(v);
}

static bool batch_verify(verify_t *v, journal_row_t *row) {
    journal_entry_t *e = &row->entry;
    if (e->seq != v->seq + 1) {
        return discrepancy(v, "journal seq %" PRIu64 " missing (next row is seq %" PRIu64 ")",
                           v->seq + 1, e->seq);
    }
    if (memcmp(e->prev_hash, v->hash, JOURNAL_HASH_BYTES) != 0) {
        return discrepancy(v, "journal seq %" PRIu64 ": prev_hash does not link to seq %" PRIu64,
                           e->seq, v->seq);
    }
    if (!batch_content(v, e)) return false;
    journal_entry_seal(e);
    if (memcmp(e->hash, row->stored_hash, JOURNAL_HASH_BYTES) != 0) {
        return discrepancy(v, "journal seq %" PRIu64 ": hash mismatch", e->seq);
    }
    if (!batch_checkpoints(v, e->seq, e->hash)) return false;
    if (e->seq == v->accounts_as_of_seq) {
        for (uint32_t i = 0; i < v->account_count; i++) v->accounts[i].replay_as_of = v->accounts[i].replay;
    }
    v->seq = e->seq;
    memcpy(v->hash, e->hash, JOURNAL_HASH_BYTES);
    v->report->batches++;
    return true;
}

/* ---- after the last batch ---- */

/* Transfer ids are unique across committed and burned ones (the ledger's idempotency
 * key). The backend finds a repeated one (SQLite's file keeps no unique index on them
 * and sorts on disk when large: memory stays bounded). */
static bool ids_unique(verify_t *v) {
    bool ready = false;
    row_t cols = row_of(v, JOURNAL_STREAM_DUPLICATE_IDS);
    if (!stream_open(v, JOURNAL_STREAM_DUPLICATE_IDS, "prepare id check")) return false;
    if (stream_step(v, JOURNAL_STREAM_DUPLICATE_IDS, &ready, "id check")) {
        char id[PC_ID_SIZE];
        if (!column_text(cols, 0, id, sizeof(id))) snprintf(id, sizeof(id), "(unreadable)");
        discrepancy(v, "transfer id %s: appears %" PRId64 " times", id, column_shown(cols, 1));
    }
    return !stopped(v);
}

/* An account's list of transfers holds exactly the transfers naming the account: a
 * transfer missing there is missing from the account's pages. */
static bool account_lists_match(verify_t *v) {
    bool ready = false;
    row_t cols = row_of(v, JOURNAL_STREAM_ACCOUNT_LISTS);
    if (!stream_open(v, JOURNAL_STREAM_ACCOUNT_LISTS, "prepare account list check")) return false;
    if (stream_step(v, JOURNAL_STREAM_ACCOUNT_LISTS, &ready, "account list check")) {
        char id[PC_ID_SIZE];
        if (!column_text(cols, 2, id, sizeof(id))) snprintf(id, sizeof(id), "(unreadable)");
        discrepancy(v, "account no %" PRId64 ": its list of transfers disagrees with the transfers at timestamp %"
                    PRId64 " (transfer %s)", column_shown(cols, 0), column_shown(cols, 1), id[0] ? id : "(none)");
    }
    return !stopped(v);
}

static bool leftovers_none(verify_t *v) {
    if (v->account_cursor < v->account_count) {
        const verify_account_t *a = &v->accounts[v->account_cursor];
        return discrepancy(v, "account %s (no %" PRId64 ", batch %" PRIu64
                           "): batch has no journal row", a->id, a->no, a->batch_seq);
    }
    if (v->transfer_ready) {
        return discrepancy(v, ROW_FMT ": batch has no journal row", ROW_ARGS(&v->transfer_row));
    }
    if (v->failure_ready) {
        return discrepancy(v, "failure %s (timestamp %" PRIu64 ", batch %" PRIu64
                           "): batch has no journal row", v->failure_row.failure.id,
                           v->failure_row.failure.timestamp_ns, v->failure_row.batch_seq);
    }
    if (v->checkpoint_ready) {
        return discrepancy(v, "checkpoint seq %" PRIu64 ": no journal row", v->checkpoint.seq);
    }
    if (v->history_ready) return history_row_wrong(v, &v->history_row, "no such transfer");
    return true;
}

static bool balance_agrees(verify_t *v, const verify_account_t *a, const char *field,
                           int64_t stored, int64_t replay) {
    if (stored == replay) return true;
    return discrepancy(v, "account %s (no %" PRId64 "): %s %" PRId64 ", replay %" PRId64, a->id,
                       a->no, field, stored, replay);
}

typedef struct {
    char currency[4];
    __int128 debits_pending, debits_posted, credits_pending, credits_posted;
} currency_sum_t;

static bool currency_sums_agree(verify_t *v, const currency_sum_t *sum) {
    if (sum->debits_posted != sum->credits_posted) {
        return discrepancy(v, "currency %s: debits_posted and credits_posted differ",
                           sum->currency);
    }
    if (sum->debits_pending != sum->credits_pending) {
        return discrepancy(v, "currency %s: debits_pending and credits_pending differ",
                           sum->currency);
    }
    return true;
}

/* Per currency, the full replay (every committed batch) balances too. */
static bool replay_sums_verify(verify_t *v) {
    currency_sum_t *sums = calloc(PC_CURRENCIES_MAX, sizeof(currency_sum_t));
    uint32_t sum_count = 0;
    if (sums == NULL) return read_error(v, PC_NO_MEMORY, "currency sums");
    for (uint32_t i = 0; i < v->account_count; i++) {
        const verify_account_t *a = &v->accounts[i];
        uint32_t c = 0;
        while (c < sum_count && strcmp(sums[c].currency, a->currency) != 0) c++;
        if (c == PC_CURRENCIES_MAX) {
            discrepancy(v, "account %s: more than %d currencies", a->id, PC_CURRENCIES_MAX);
            break;
        }
        if (c == sum_count) memcpy(sums[sum_count++].currency, a->currency, 4);
        sums[c].debits_pending += a->replay.debits_pending;
        sums[c].debits_posted += a->replay.debits_posted;
        sums[c].credits_pending += a->replay.credits_pending;
        sums[c].credits_posted += a->replay.credits_posted;
    }
    for (uint32_t c = 0; c < sum_count && !stopped(v); c++) currency_sums_agree(v, &sums[c]);
    free(sums);
    return !stopped(v);
}

/* Stored balances equal the replay as of their checkpoint; per currency, debits
 * equal credits. */
static bool balances_verify(verify_t *v) {
    currency_sum_t *sums = calloc(PC_CURRENCIES_MAX, sizeof(currency_sum_t));
    uint32_t sum_count = 0;
    if (sums == NULL) return read_error(v, PC_NO_MEMORY, "currency sums");
    if (v->accounts_as_of_seq == UINT64_MAX) {
        for (uint32_t i = 0; i < v->account_count; i++) v->accounts[i].replay_as_of = v->accounts[i].replay;
    } else if (v->accounts_as_of_seq > v->seq) {
        free(sums);
        return discrepancy(v, "meta accounts_as_of_seq %" PRIu64 " is past the last journal seq %" PRIu64,
                           v->accounts_as_of_seq, v->seq);
    }
    for (uint32_t i = 0; i < v->account_count && !stopped(v); i++) {
        const verify_account_t *a = &v->accounts[i];
        const ledger_balances_t *s = &a->stored, *r = &a->replay_as_of;
        if (!balance_agrees(v, a, "debits_pending", s->debits_pending, r->debits_pending) ||
            !balance_agrees(v, a, "debits_posted", s->debits_posted, r->debits_posted) ||
            !balance_agrees(v, a, "credits_pending", s->credits_pending, r->credits_pending) ||
            !balance_agrees(v, a, "credits_posted", s->credits_posted, r->credits_posted)) {
            break;
        }
        uint32_t c = 0;
        while (c < sum_count && strcmp(sums[c].currency, a->currency) != 0) c++;
        if (c == sum_count && sum_count == PC_CURRENCIES_MAX) {
            discrepancy(v, "account %s: more than %d currencies", a->id, PC_CURRENCIES_MAX);
            break;
        }
        if (c == sum_count) memcpy(sums[sum_count++].currency, a->currency, 4);
        sums[c].debits_pending += s->debits_pending;
        sums[c].debits_posted += s->debits_posted;
        sums[c].credits_pending += s->credits_pending;
        sums[c].credits_posted += s->credits_posted;
    }
    for (uint32_t c = 0; c < sum_count && !stopped(v); c++) currency_sums_agree(v, &sums[c]);
    free(sums);
    return !stopped(v) && replay_sums_verify(v);
}

/* Pending transfers never resolved must still read "open". */
static bool pending_left_open(verify_t *v) {
    for (uint64_t i = 0; i < v->pending.capacity && !stopped(v); i++) {
        const verify_pending_t *p = &v->pending.slots[i];
        if (p->id[0] != '\0') pending_state_agrees(v, p, LEDGER_PENDING_OPEN);
    }
    v->report->pending_open = v->pending.count;
    return !stopped(v);
}

/* ---- opening and the whole run ---- */

/* meta.accounts_as_of_seq, the balance snapshot's seq. Absent: the rows are final (a
 * store that writes every balance each batch). Unreadable is an error, never absent. */
static bool snapshot_seq_read(verify_t *v) {
    bool ready = false;
    row_t cols = row_of(v, JOURNAL_STREAM_SNAPSHOT_SEQ);
    v->accounts_as_of_seq = UINT64_MAX;
    if (!stream_open(v, JOURNAL_STREAM_SNAPSHOT_SEQ, "meta")) return false;
    if (!stream_step(v, JOURNAL_STREAM_SNAPSHOT_SEQ, &ready, "meta")) return !stopped(v);
    journal_value_t value = column_value(cols, 0);
    const char *text = value.kind == JOURNAL_VALUE_TEXT ? (const char *)value.bytes : NULL;
    char *end = NULL;
    unsigned long long seq = text != NULL ? strtoull(text, &end, 10) : 0;
    if (text == NULL || end == text || *end != '\0' || text[0] == '-') {
        return discrepancy(v, "meta accounts_as_of_seq is not a seq: '%s'", text ? text : "NULL");
    }
    v->accounts_as_of_seq = seq;
    return true;
}

static bool streams_open(verify_t *v) {
    if (!stream_open(v, JOURNAL_STREAM_TRANSFERS, "prepare") ||
        !stream_open(v, JOURNAL_STREAM_FAILURES, "prepare") ||
        !stream_open(v, JOURNAL_STREAM_CHECKPOINTS, "prepare") ||
        !stream_open(v, JOURNAL_STREAM_HISTORY, "prepare")) {
        return false;
    }
    transfer_next(v);
    failure_next(v);
    history_next(v);
    checkpoint_next(v);
    return !stopped(v);
}

static bool journal_walk(verify_t *v) {
    if (!stream_open(v, JOURNAL_STREAM_JOURNAL, "prepare journal")) return false;
    journal_row_t row;
    bool ready = false;
    while (!stopped(v) && stream_step(v, JOURNAL_STREAM_JOURNAL, &ready, "read journal")) {
        if (!journal_row_read(v, &row) || !batch_verify(v, &row)) break;
    }
    return !stopped(v);
}

static void verify_free(verify_t *v) {
    if (v->rows != NULL) v->rows->ops->close(v->rows);
    for (uint32_t i = 0; i < v->account_count; i++) free(v->accounts[i].id);
    free(v->accounts);
    free(v->account_slots);
    free(v->pending.slots);
}

/* Opens the snapshot; the backend's detail becomes the report's. */
static bool database_open(verify_t *v, journal_rows_open_fn open, const char *location) {
    pc_status status = open(location, &v->rows, v->report->error_detail, sizeof(v->report->error_detail));
    if (status == PC_OK) return snapshot_seq_read(v);
    v->rows = NULL;
    v->error = status;
    return false;
}

pc_status journal_verify_rows(journal_rows_open_fn open, const char *location, const char *pubkey_path,
                              journal_report_t *report, journal_balances_fn fn, void *ctx) {
    memset(report, 0, sizeof(*report));
    verify_t *v = calloc(1, sizeof(*v));
    if (v == NULL) return PC_NO_MEMORY;
    v->report = report;
    if (pubkey_path != NULL) {
        v->error = journal_public_key_load(pubkey_path, v->public_key);
        if (v->error != PC_OK) {
            snprintf(report->error_detail, sizeof(report->error_detail), "--pubkey %s: %s",
                     pubkey_path, pc_status_code(v->error));
        }
        v->key_given = v->key_known = true;
    }
    if (!stopped(v) && database_open(v, open, location) && accounts_load(v) && streams_open(v) &&
        journal_walk(v) && leftovers_none(v) && ids_unique(v) && account_lists_match(v) && balances_verify(v)) {
        pending_left_open(v);
    }
    memcpy(report->head_hash, v->hash, JOURNAL_HASH_BYTES);
    pc_status status = v->error != PC_OK ? v->error : v->failed ? PC_JOURNAL_MISMATCH : PC_OK;
    report->ok = status == PC_OK;
    for (uint32_t i = 0; report->ok && fn != NULL && i < v->account_count; i++) {
        fn(v->accounts[i].id, &v->accounts[i].replay, ctx);
    }
    verify_free(v);
    free(v);
    return status;
}

const char *journal_report_line(const journal_report_t *report, char *out, size_t out_bytes) {
    if (!report->ok) {
        snprintf(out, out_bytes, "verify failed: %s",
                 report->discrepancy[0] != '\0' ? report->discrepancy : report->error_detail);
        return out;
    }
    char head_hex[2 * JOURNAL_HASH_BYTES + 1];
    journal_hex(report->head_hash, JOURNAL_HASH_BYTES, head_hex);
    snprintf(out, out_bytes,
             "verify ok batches=%" PRIu64 " transfers=%" PRIu64 " accounts=%" PRIu64
             " checkpoints=%" PRIu64 " failures=%" PRIu64 " pending_open=%" PRIu64
             " head_hash=%s", report->batches, report->transfers, report->accounts,
             report->checkpoints, report->failures, report->pending_open, head_hex);
    return out;
}
