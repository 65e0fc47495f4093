/* journal/verify.h: proves a paycore database was not altered. Re-derives, from the
 * rows alone: every row hash, every batch's content hash, the hash chain, every
 * checkpoint signature, every account balance (replaying all transfers from zero),
 * double entry per currency, and each pending transfer's state; stops at the first
 * discrepancy and names it.
 *
 * This is the SQLite backend's verifier: it opens the file read-only with sqlite3
 * and reads one consistent snapshot (a live server may keep writing meanwhile).
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
    /* Why verification could not run (SQLite message, errno); "" otherwise. */
    char error_detail[JOURNAL_REPORT_TEXT_BYTES];
} journal_report_t;

/* Verifies the SQLite database at 'db_path'. Checkpoint signatures are checked
 * against the public key file 'pubkey_path' (64 hex characters, as written beside the
 * node key) or, when NULL, against the key stored in the checkpoints, which must then
 * all carry the same key.
 * Returns PC_OK with report->ok = true when everything holds; PC_JOURNAL_MISMATCH with
 * report->discrepancy naming the first discrepancy; or, when verification could not
 * run: PC_STORE_OPEN_FAILED, PC_STORE_NOT_PAYCORE, PC_STORE_VERSION_UNSUPPORTED,
 * PC_STORE_READ_FAILED, PC_NO_MEMORY, PC_NOT_FOUND / PC_KEY_FILE_INVALID (pubkey). */
PC_MUST_USE pc_status journal_verify_sqlite(const char *db_path, const char *pubkey_path,
                                            journal_report_t *report);

/* The same, and when everything verified, calls 'fn' once per account (in `no` order)
 * with its balances replayed from every committed transfer: what a ledger loaded from
 * this file must hold (tests compare the store's load path against it). */
typedef void (*journal_balances_fn)(const char *account_id, const ledger_balances_t *balances,
                                    void *ctx);
PC_MUST_USE pc_status journal_verify_sqlite_each(const char *db_path, const char *pubkey_path,
                                                 journal_report_t *report, journal_balances_fn fn,
                                                 void *ctx);

/* One line for logs and the CLI: "verify ok batches=... transfers=... accounts=...
 * failures=... checkpoints=... pending_open=... head_hash=<hex>" or
 * "verify failed: <discrepancy>". Returns 'out'. */
const char *journal_report_line(const journal_report_t *report, char *out, size_t out_bytes);

#endif
