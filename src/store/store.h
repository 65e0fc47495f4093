/* store/store.h: the durable truth behind the ledger. One interface, several
 * backends (SQLite now; PostgreSQL and sharded PostgreSQL next): each backend is an
 * ops table (store_backend.h) behind these functions.
 *
 * Threads: the writer thread alone uses store_t's write side (load, source, tx_*).
 * Readers (API threads) each open a store_reader_t: reads never wait for the writer.
 *
 * Durability: store_tx_commit returns PC_OK only once the batch is on disk (fsync);
 * on any error nothing of the batch is visible and the caller rolls the ledger back. */
#ifndef PAYCORE_STORE_H
#define PAYCORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "journal/journal.h"
#include "ledger/ledger.h"
#include "paycore/status.h"

typedef struct store store_t;
typedef struct store_tx store_tx_t;
typedef struct store_reader store_reader_t;

typedef struct {
    bool create;               /* create the database when missing (paycore init) */
    bool synchronous_off;      /* tests and benchmarks of CPU only: never in production */
    uint32_t fault_commit_at;  /* tests: the Nth commit (1-based) fails after writing
                                  everything, before COMMIT; 0 = never */
} store_options_t;

/* Opens 'path' (a SQLite file). A file of another schema version is
 * PC_STORE_VERSION_UNSUPPORTED; a file that is not paycore's is PC_STORE_NOT_PAYCORE;
 * a missing file without options->create is PC_STORE_OPEN_FAILED. */
PC_MUST_USE pc_status store_open(store_t **out, const char *path, const store_options_t *options);
void store_close(store_t *store);
const char *store_path(const store_t *store);
/* The last error's inside detail (SQLite message, errno): for logs, never clients. */
const char *store_error_detail(const store_t *store);

/* Loads accounts, open pending transfers and the clock into 'ledger', and the
 * journal head into *head (seq 0 and zero hash for an empty store). */
PC_MUST_USE pc_status store_load(store_t *store, ledger_t *ledger, journal_entry_t *head);

/* Committed transfers for the ledger's lookups (writer thread). */
ledger_source_t store_source(store_t *store);

/* One batch = one transaction. */
PC_MUST_USE pc_status store_tx_begin(store_t *store, store_tx_t **out);
PC_MUST_USE pc_status store_tx_write_changes(store_tx_t *tx, const ledger_t *ledger,
                                             const ledger_changes_t *changes, uint64_t batch_seq,
                                             journal_content_t *content);
PC_MUST_USE pc_status store_tx_write_journal(store_tx_t *tx, const journal_entry_t *entry,
                                             const journal_checkpoint_t *checkpoint /* or NULL */);
PC_MUST_USE pc_status store_tx_commit(store_tx_t *tx);  /* durable on PC_OK; frees tx */
void store_tx_rollback(store_tx_t *tx);                 /* frees tx */
/* Writes every account balance changed since the last checkpoint (a clean stop calls
 * it, so the next start re-derives nothing). Writer thread, outside a batch. */
PC_MUST_USE pc_status store_checkpoint(store_t *store, const ledger_t *ledger);

/* ---- backup (any process, while a writer runs: sqlite_backup.c) ----
 * Copies the database at 'db_path' into a new file 'out_path' (mode 0600): one
 * consistent snapshot read on its own read-only connection, so the writer is never
 * blocked. Written beside 'out_path' first, made durable, then renamed. On failure
 * 'detail' says why (for the operator; never an API client). */
PC_MUST_USE pc_status store_backup(const char *db_path, const char *out_path, uint64_t *pages_out,
                                   char *detail, size_t detail_bytes);

/* ---- reads (any thread, each with its own reader) ---- */
PC_MUST_USE pc_status store_reader_open(store_t *store, store_reader_t **out);
void store_reader_close(store_reader_t *reader);

/* Strings in results (ids, metadata) are copied into caller-owned buffers inside the
 * result structs below; metadata is malloc'ed and freed by store_*_free. */
typedef struct {
    ledger_account_t account;
    char *metadata_owned;
} store_account_t;
typedef struct {
    ledger_transfer_t transfer;
    ledger_pending_state pending_state;
    char *metadata_owned;
} store_transfer_t;
void store_account_free(store_account_t *account);
void store_transfer_free(store_transfer_t *transfer);

PC_MUST_USE pc_status store_read_account(store_reader_t *reader, const char *id, store_account_t *out);
PC_MUST_USE pc_status store_read_transfer(store_reader_t *reader, const char *id, store_transfer_t *out);

typedef struct {
    const char *starting_after;   /* an id, or NULL */
    uint64_t from_ns;             /* inclusive; 0 = no bound */
    uint64_t to_ns;               /* exclusive; 0 = no bound */
    bool descending;
    uint32_t limit;               /* 1..API_LIST_LIMIT_MAX */
} store_query_t;

/* Lists call 'fn' for each row in order, at most query->limit times, and set
 * *has_more. A row passed to 'fn' is borrowed for the call. */
typedef void (*store_account_fn)(const ledger_account_t *account, void *ctx);
typedef void (*store_transfer_fn)(const ledger_transfer_t *transfer, ledger_pending_state state, void *ctx);
typedef void (*store_history_fn)(const ledger_history_t *row, void *ctx);

/* Accounts by id order; 'visible' (or NULL) filters rows (a merchant key's accounts). */
PC_MUST_USE pc_status store_list_accounts(store_reader_t *reader, const store_query_t *query,
                                          bool (*visible)(const char *account_id, void *ctx),
                                          store_account_fn fn, void *ctx, bool *has_more);
/* An account's transfers by timestamp (debit or credit side). */
PC_MUST_USE pc_status store_list_account_transfers(store_reader_t *reader, const char *account_id,
                                                   const store_query_t *query, store_transfer_fn fn,
                                                   void *ctx, bool *has_more);
/* An account's balance history (accounts with the history flag). */
PC_MUST_USE pc_status store_list_history(store_reader_t *reader, const char *account_id,
                                         const store_query_t *query, store_history_fn fn,
                                         void *ctx, bool *has_more);

#endif
