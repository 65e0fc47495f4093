/* journal/verify.h: proves a paycore database was not altered. Re-derives, from the
 * rows alone: every row hash, every batch's content hash, the hash chain, every
 * checkpoint signature, every account balance (replaying all transfers from zero),
 * double entry per currency, and each pending transfer's state; stops at the first
 * discrepancy and names it.
 *
 * Verify knows no SQL: it reads ordered row streams (journal_stream_t) from one
 * consistent snapshot of the store, through journal_rows_ops_t, which each store
 * backend implements (SQLite: one read transaction; PostgreSQL: one REPEATABLE READ
 * transaction with a cursor per stream). store_verify (store.h) picks the backend.
 * Memory: the account table is held in memory (as the ledger holds it), plus the
 * open pending transfers; transfers and journal rows are streamed. */
#ifndef PAYCORE_JOURNAL_VERIFY_H
#define PAYCORE_JOURNAL_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "journal/journal.h"
#include "paycore/status.h"

#define JOURNAL_REPORT_TEXT_BYTES 512

typedef struct {
    bool ok;                    /* everything verified */
    uint64_t batches;           /* journal rows verified */
    uint64_t accounts;
    uint64_t transfers;
    uint64_t failures;          /* burned ids (transfer_failures rows) */
    uint64_t checkpoints;       /* signatures verified */
    uint64_t pending_open;      /* pending transfers still open at the head */
    uint8_t head_hash[JOURNAL_HASH_BYTES]; /* the last batch's hash (zero when empty) */
    /* The first discrepancy, e.g. "transfer t-17 (timestamp 1700..., batch 12): row
     * hash mismatch"; "" when ok or when the database could not be read. */
    char discrepancy[JOURNAL_REPORT_TEXT_BYTES];
    /* Why verification could not run (the backend's message, errno); "" otherwise. */
    char error_detail[JOURNAL_REPORT_TEXT_BYTES];
} journal_report_t;

/* ---- the rows verify reads: what a backend implements ---- */

/* Each stream is ordered as said; its columns are numbered from 0 in this order. The
 * column lists of the row streams, as SQL select lists (one definition for every
 * backend: verify reads columns by number). */
#define JOURNAL_COLUMNS_ACCOUNTS                                                            \
    "no, id, currency, code, flags, debits_pending, debits_posted, credits_pending,"      \
    " credits_posted, timestamp, metadata, batch_seq, row_hash"
#define JOURNAL_COLUMNS_TRANSFERS                                                           \
    "timestamp, id, debit_account_id, credit_account_id, amount, currency, code, flags,"  \
    " pending_id, timeout_s, metadata, pending_state, batch_seq, row_hash"
#define JOURNAL_COLUMNS_FAILURES "id, result, timestamp, batch_seq, row_hash"
#define JOURNAL_COLUMNS_HISTORY                                                             \
    "account_id, timestamp, transfer_id, debits_pending, debits_posted, credits_pending,"  \
    " credits_posted"
#define JOURNAL_COLUMNS_CHECKPOINTS "seq, hash, public_key, signature"
#define JOURNAL_COLUMNS_JOURNAL                                                              \
    "seq, timestamp_first, timestamp_last, account_count, transfer_count, failure_count,"  \
    " content_hash, prev_hash, hash"

typedef enum {
    /* one row: count(accounts) */
    JOURNAL_STREAM_ACCOUNT_COUNT,
    /* ORDER BY no: JOURNAL_COLUMNS_ACCOUNTS */
    JOURNAL_STREAM_ACCOUNTS,
    /* ORDER BY timestamp: JOURNAL_COLUMNS_TRANSFERS (row_hash null where the backend
     * stores none: the verifier computes it from the row) */
    JOURNAL_STREAM_TRANSFERS,
    /* ORDER BY timestamp, id: JOURNAL_COLUMNS_FAILURES */
    JOURNAL_STREAM_FAILURES,
    /* ORDER BY timestamp, account_id (bytewise): JOURNAL_COLUMNS_HISTORY */
    JOURNAL_STREAM_HISTORY,
    /* the signed journal checkpoints, ORDER BY seq: JOURNAL_COLUMNS_CHECKPOINTS */
    JOURNAL_STREAM_CHECKPOINTS,
    /* ORDER BY seq: JOURNAL_COLUMNS_JOURNAL */
    JOURNAL_STREAM_JOURNAL,
    /* no row, or one: the value of meta accounts_as_of_seq (the balance snapshot's seq) */
    JOURNAL_STREAM_SNAPSHOT_SEQ,
    /* at most one row: id, count of a transfer id that appears more than once among
     * committed transfers and burned ids together */
    JOURNAL_STREAM_DUPLICATE_IDS,
    /* at most one row: account number, timestamp, the transfer's id (or null) where the
     * backend's own lists of an account's transfers disagree with the transfers (an
     * entry no transfer of that account has, a transfer missing from its account's
     * list, a row keyed wrong); no row where the lists are an index the database keeps
     * (SQLite's derived index file, PostgreSQL before schema version 10) */
    JOURNAL_STREAM_ACCOUNT_LISTS,
    JOURNAL_STREAM_COUNT
} journal_stream_t;

/* A column's value as stored: a tampered row may hold any type. */
typedef enum {
    JOURNAL_VALUE_NULL,
    JOURNAL_VALUE_INTEGER,
    JOURNAL_VALUE_TEXT,    /* bytes NUL-terminated; byte_count excludes the NUL */
    JOURNAL_VALUE_BLOB,
    JOURNAL_VALUE_OTHER,   /* a type the store never writes (a float, a date) */
} journal_value_kind_t;

typedef struct {
    journal_value_kind_t kind;
    int64_t integer;           /* INTEGER */
    const uint8_t *bytes;      /* TEXT, BLOB: valid until the stream's next row */
    size_t byte_count;
} journal_value_t;

typedef struct journal_rows journal_rows_t;

typedef struct {
    /* Starts 'stream' (once per stream; several are open at a time). */
    pc_status (*stream_open)(journal_rows_t *rows, journal_stream_t stream);
    /* The stream's next row: *has_row false at its end. PC_STORE_READ_FAILED when
     * the row cannot be read (error() says why). */
    pc_status (*next)(journal_rows_t *rows, journal_stream_t stream, bool *has_row);
    /* Column 'column' of the stream's current row. */
    void (*value)(journal_rows_t *rows, journal_stream_t stream, int column, journal_value_t *out);
    /* The column as the backend converts it to an integer (0 when it cannot): only
     * for naming a malformed row. */
    int64_t (*integer_shown)(journal_rows_t *rows, journal_stream_t stream, int column);
    /* Why the last call failed: one line. */
    const char *(*error)(journal_rows_t *rows);
    /* Ends the snapshot and frees everything. */
    void (*close)(journal_rows_t *rows);
} journal_rows_ops_t;

/* A backend's snapshot begins with this. */
struct journal_rows {
    const journal_rows_ops_t *ops;
};

/* Opens one consistent snapshot of the store at 'location', read only, after checking
 * it is a paycore store of a version the backend's verifier reads. On failure fills
 * 'detail' and returns PC_STORE_OPEN_FAILED, PC_STORE_NOT_PAYCORE,
 * PC_STORE_VERSION_UNSUPPORTED or PC_STORE_READ_FAILED. */
typedef pc_status (*journal_rows_open_fn)(const char *location, journal_rows_t **out, char *detail,
                                          size_t detail_bytes);

/* Calls 'fn' once per account (in `no` order), when everything verified, with its
 * balances replayed from every committed transfer: what a ledger loaded from this
 * store must hold (tests compare the store's load path against it). */
typedef void (*journal_balances_fn)(const char *account_id, const ledger_balances_t *balances,
                                    void *ctx);

/* Verifies the store 'open' opens at 'location'. Checkpoint signatures are checked
 * against the public key file 'pubkey_path' (64 hex characters, as written beside the
 * node key) or, when NULL, against the key stored in the checkpoints, which must then
 * all carry the same key. 'fn' may be NULL.
 * Returns PC_OK with report->ok = true when everything holds; PC_JOURNAL_MISMATCH with
 * report->discrepancy naming the first discrepancy; or, when verification could not
 * run: open's codes, PC_STORE_READ_FAILED, PC_NO_MEMORY, PC_NOT_FOUND /
 * PC_KEY_FILE_INVALID (pubkey). */
PC_MUST_USE pc_status journal_verify_rows(journal_rows_open_fn open, const char *location,
                                          const char *pubkey_path, journal_report_t *report,
                                          journal_balances_fn fn, void *ctx);

/* One line for logs and the CLI: "verify ok batches=... transfers=... accounts=...
 * failures=... checkpoints=... pending_open=... head_hash=<hex>" or
 * "verify failed: <discrepancy>". Returns 'out'. */
const char *journal_report_line(const journal_report_t *report, char *out, size_t out_bytes);

#endif
