/* store/store.h: the durable truth behind the ledger. One interface, several
 * backends, each an ops table (store_backend.h) chosen by store_open from the
 * location: a file path is SQLite (sqlite_*.c), a postgres:// URL PostgreSQL
 * (pg_*.c). Nothing outside src/store/ knows which one it runs on; where a backend
 * lacks a part yet (store_supports), its calls answer PC_STORE_UNSUPPORTED.
 *
 * Threads: the writer thread alone uses store_t's write side (load, source, tx_*).
 * Readers (API threads) each open a store_reader_t: reads never wait for the writer.
 *
 * Durability: store_tx_commit returns PC_OK only once the batch is on disk (fsync).
 * An error before COMMIT leaves nothing of the batch and the caller rolls the ledger
 * back. A COMMIT that fails (I/O error, full disk, a failed fsync) leaves the file in
 * a state memory cannot know: the store then fails for good (PC_STORE_FAILED, also
 * from every later call that writes), and the process must stop and reload from
 * the file, as PostgreSQL does after a failed fsync.
 *
 * Sequence numbers: a batch that writes ledger rows gets the next journal seq and
 * writes its journal row in the same transaction; a transaction without ledger rows
 * (API keys, idempotency records) gets none. The account rows are a balance
 * snapshot as of meta.accounts_as_of_seq, never past the journal head. */
#ifndef PAYCORE_STORE_H
#define PAYCORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "journal/journal.h"
#include "journal/verify.h"
#include "ledger/ledger.h"
#include "paycore/status.h"

typedef struct store store_t;
typedef struct store_tx store_tx_t;
typedef struct store_reader store_reader_t;

/* Options. Those marked SQLite mean nothing to other backends. */
typedef struct {
    bool create;               /* create the database when missing (paycore init) */
    bool synchronous_off;      /* SQLite; tests and benchmarks of CPU only: never in production */
    uint32_t fault_commit_at;  /* tests: the Nth commit (1-based) fails after writing
                                  everything, before COMMIT; 0 = never */
    bool fault_commit_sticky;  /* tests: and every commit after it too */
    bool fault_vfs;            /* tests: the writer's connection goes through the
                                  fault-injecting VFS (store_fault_arm) */
    uint32_t index_key_bits;   /* tests: keep only this many bits of each id's index key,
                                  so that distinct ids collide; 0 = all of them */
    uint32_t fault_index_write_from; /* tests: the indexer's Nth write of the index file
                                        (1-based) and every later one fail; 0 = never */
    uint32_t index_memtable_entries_max; /* tests: back-pressure from fewer unindexed
                                            transfers; 0 = the built-in bound */
    /* PostgreSQL: a standby. While another writer holds the writer's lock, poll for it
     * (every STORE_STANDBY_POLL_MS) instead of refusing with PC_STORE_IN_USE, as long
     * as 'standby_continue' (optional) returns true; false ends the wait with
     * PC_SHUTTING_DOWN. */
    bool standby;
    bool (*standby_continue)(void *ctx);
    void *standby_ctx;
    /* PostgreSQL, a URL with target_session_attrs=read-write or primary (Patroni): wait
     * this long for a server to be writable (a primary being elected) before refusing
     * with PC_STORE_OPEN_FAILED; 0 = one attempt. standby_continue ends the wait too. */
    uint32_t writable_wait_ms;
    /* PostgreSQL, one shard of a set (src/shard/): each account a batch creates is
     * recorded in shard_accounts with this index; shard_count 0: not a shard. */
    uint32_t shard_count;
    uint32_t shard_index;
} store_options_t;

/* True when 'location' names a PostgreSQL database (postgres:// or postgresql://). */
bool store_location_is_url(const char *location);

/* Opens 'path' for the one writer. A postgres:// URL: see pg_store.c (the writer's
 * lock is an advisory lock on its connection; the same refusals, each with its code:
 * a URL that does not parse or a server that cannot be reached is
 * PC_STORE_OPEN_FAILED). Otherwise a SQLite file, and its lock ('<path>.lock').
 * Refuses, each with its own code and store_error_detail naming the cause: a missing
 * file without options->create (PC_STORE_OPEN_FAILED); another process's lock
 * (PC_STORE_IN_USE, "database in use by pid N"); a file or directory that is not
 * writable (PC_STORE_READ_ONLY); a truncated or damaged paycore file
 * (PC_STORE_CORRUPT); a file that is not paycore's (PC_STORE_NOT_PAYCORE); another
 * schema version (PC_STORE_VERSION_UNSUPPORTED); a read error (PC_STORE_READ_FAILED);
 * an id key file ('<path>.idkey') missing, malformed or of another database once the
 * database has one (PC_STORE_ID_KEY_INVALID; options->create makes a missing one).
 * Nothing is ever read as a default: a value that cannot be read is an error. */
PC_MUST_USE pc_status store_open(store_t **out, const char *path, const store_options_t *options);
void store_close(store_t *store);
const char *store_path(const store_t *store);
/* The backend's name: "sqlite" or "postgres". */
const char *store_backend_name(const store_t *store);
/* Parts a backend may lack for now (store_backend.h): false, and their calls answer
 * PC_STORE_UNSUPPORTED. */
typedef enum {
    STORE_PART_EVENTS,
    STORE_PART_PAYMENTS,
    STORE_PART_FILE, /* a SQLite file at store_path(): store_backup reads it */
} store_part;
bool store_supports(const store_t *store, store_part part);
/* The last error's inside detail (SQLite message, errno): for logs, never clients. */
const char *store_error_detail(const store_t *store);

/* `paycore verify` of the store at 'location' (a SQLite file or a postgres:// URL,
 * as store_open takes): journal_verify_rows over the backend's snapshot, read only,
 * beside a live writer. 'fn' (optional) as in journal_verify_rows. */
PC_MUST_USE pc_status store_verify(const char *location, const char *pubkey_path, journal_report_t *report);
PC_MUST_USE pc_status store_verify_each(const char *location, const char *pubkey_path, journal_report_t *report,
                                        journal_balances_fn fn, void *ctx);
/* The rows verify reads, in one read-only snapshot, for tests and tools that read a
 * store whatever its backend (journal_verify_rows's open); end with
 * (*out)->ops->close(*out). */
PC_MUST_USE pc_status store_rows_open(const char *location, journal_rows_t **out, char *detail, size_t detail_bytes);

/* Loads accounts, open pending transfers and the clock into 'ledger', and the
 * journal head into *head (seq 0 and zero hash for an empty store). */
PC_MUST_USE pc_status store_load(store_t *store, ledger_t *ledger, journal_entry_t *head);
/* The public key of the newest signed journal checkpoint: PC_OK, PC_NOT_FOUND (none
 * signed yet) or a read error. The writer refuses a signing key that differs. */
PC_MUST_USE pc_status store_journal_signer(store_t *store, uint8_t public_key[JOURNAL_PUBLIC_KEY_BYTES]);
/* The last journal seq committed (writer thread). */
uint64_t store_journal_head_seq(const store_t *store);

/* Committed transfers for the ledger's lookups (writer thread). */
ledger_source_t store_source(store_t *store);
/* Before a batch is applied (writer thread): the transfer ids it may look up (ids and
 * pending ids), fetched in one round trip where lookups cost one each (PostgreSQL);
 * a no-op where they are cheap. A failure only means the lookups happen one by one. */
PC_MUST_USE pc_status store_prefetch(store_t *store, const char *const *ids, uint32_t id_count);
/* Whether store_prefetch does anything: the writer gathers the ids only then. */
bool store_wants_prefetch(const store_t *store);

/* One batch = one transaction. A batch with ledger rows calls write_changes with
 * batch_seq = journal head + 1, then write_journal with that seq; one without calls
 * neither (its commands write their own rows through store_api.h).
 * Begin waits while the id indexer is behind (back-pressure); when it gave up
 * writing the index file, the store fails for good with PC_STORE_INDEX_FAILED. */
PC_MUST_USE pc_status store_tx_begin(store_t *store, store_tx_t **out);
PC_MUST_USE pc_status store_tx_write_changes(store_tx_t *tx, const ledger_t *ledger,
                                             const ledger_changes_t *changes, uint64_t batch_seq,
                                             journal_content_t *content);
PC_MUST_USE pc_status store_tx_write_journal(store_tx_t *tx, const journal_entry_t *entry,
                                             const journal_checkpoint_t *checkpoint /* or NULL */);
/* Durable on PC_OK; frees tx. PC_STORE_FAILED: COMMIT itself failed and the store
 * is failed for good (see above); any other error: nothing of the batch remains. */
PC_MUST_USE pc_status store_tx_commit(store_tx_t *tx);
void store_tx_rollback(store_tx_t *tx);                 /* frees tx */
/* The writer's pipeline (writer.c): one ledger batch written as two transactions,
 * the second staged on a connection of its own while the first is still being
 * inserted and committed. Call right after store_tx_begin(first), before writing
 * it; then write first, then the next part into *out with batch_seq = first's + 1,
 * then commit first, and only if that worked, commit *out (else roll it back). The
 * next part may only add rows (no pending changes: they would update rows of the
 * first part it cannot see); its balance snapshot waits for a later batch.
 * PC_STORE_UNSUPPORTED where a store has one connection (SQLite); any other error:
 * nothing staged, the part is written after first commits. */
PC_MUST_USE pc_status store_tx_begin_next(store_tx_t *first, store_tx_t **out);
/* Whether store_tx_begin_next can work on this store. */
bool store_can_pipeline(const store_t *store);
/* Writes the balance snapshot: every account changed since the last one, as of the
 * journal head (a clean stop calls it, so the next start re-derives nothing).
 * Writer thread, outside a batch. Refused once the store failed. */
PC_MUST_USE pc_status store_balance_snapshot(store_t *store, const ledger_t *ledger);

/* ---- the writer's health ---- */
/* PC_OK, or why the store stopped writing for good (PC_STORE_FAILED). */
pc_status store_failed(const store_t *store);
/* False after a write failed for a reason that may pass (full disk before COMMIT,
 * the file locked by another program) until a write succeeds again. */
bool store_writable(const store_t *store);
/* A small durable write (a meta row) to learn whether writes work again. */
PC_MUST_USE pc_status store_probe(store_t *store);

/* ---- faults, for tests (stores opened with options.fault_vfs) ---- */
typedef enum {
    STORE_FAULT_WAL_SYNC,   /* a WAL fsync (each COMMIT has one): SQLITE_IOERR_FSYNC */
    STORE_FAULT_WAL_WRITE,  /* a write into the WAL: SQLITE_FULL */
    STORE_FAULT_READ,       /* any read: SQLITE_IOERR_READ */
    STORE_FAULT_KIND_COUNT,
} store_fault_kind;
/* After 'calls_before' more calls of 'kind' go through, the next 'fail_count' fail
 * (STORE_FAULT_FOREVER: every one after). Process-wide. */
#define STORE_FAULT_FOREVER UINT32_MAX
void store_fault_arm(store_fault_kind kind, uint32_t calls_before, uint32_t fail_count);
void store_fault_disarm_all(void);
uint64_t store_fault_fired(store_fault_kind kind); /* calls failed since armed */

/* ---- backup (any process, while a writer runs: sqlite_backup.c) ----
 * Copies the database at 'db_path' into a new file 'out_path' (mode 0600): one
 * consistent snapshot read on its own read-only connection, so the writer is never
 * blocked. Written beside 'out_path' first, made durable, then renamed. On failure
 * 'detail' says why (for the operator; never an API client). */
PC_MUST_USE pc_status store_backup(const char *db_path, const char *out_path, uint64_t *pages_out,
                                   char *detail, size_t detail_bytes);
/* What a PostgreSQL dump holds. */
typedef struct {
    uint64_t bytes;                         /* the dump file's size */
    uint64_t head_seq;                      /* the journal head in its snapshot (0: none yet) */
    uint8_t head_hash[JOURNAL_HASH_BYTES];
} store_dump_info_t;
/* The same for a PostgreSQL store at 'url' (pg_backup.c): pg_dump's custom format
 * (what pg_restore reads) into a new file 'out_path' (0600), every table in one
 * snapshot whose journal head lands in *info; the writer keeps committing. pg_dump
 * and pg_restore are run from 'pg_bin' (a directory), or found on PATH when it is NULL
 * or empty; the URL's password reaches them in their environment, never on a command
 * line. Refuses a database that is not paycore's (PC_STORE_NOT_PAYCORE); a tool that
 * failed: PC_STORE_READ_FAILED (its own message went to stderr). */
PC_MUST_USE pc_status store_backup_postgres(const char *url, const char *out_path, const char *pg_bin,
                                            store_dump_info_t *info, char *detail, size_t detail_bytes);
/* Restores the dump at 'dump_path' into the empty PostgreSQL database at 'url' with
 * pg_restore (one transaction: all or nothing; the restoring role owns the tables).
 * Refuses a database that holds tables (PC_INVALID_ARGUMENT); a pg_restore that
 * failed: PC_STORE_READ_FAILED (its message went to stderr). */
PC_MUST_USE pc_status store_restore_postgres(const char *dump_path, const char *url, const char *pg_bin,
                                             char *detail, size_t detail_bytes);

/* ---- reads (any thread, each with its own reader; after store_load) ---- */
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
/* The committed transfer 'id' whose timestamp is 'timestamp_ns' (PC_NOT_FOUND when none
 * is), read by its key alone: a transfer just committed is found before the id index
 * has it. PC_STORE_UNSUPPORTED on a backend without that key (SQLite has it). */
PC_MUST_USE pc_status store_read_transfer_at(store_reader_t *reader, uint64_t timestamp_ns, const char *id,
                                             store_transfer_t *out);

typedef struct {
    const char *starting_after;   /* an id, or NULL */
    uint64_t from_ns;             /* inclusive; 0 = no bound */
    uint64_t to_ns;               /* exclusive; 0 = no bound */
    bool descending;
    uint32_t limit;               /* 1..API_LIST_LIMIT_MAX */
    /* Lists of accounts on a set of shards read every page as of the first one
     * (docs/scaleout.md §6): */
    const char *cursor;           /* an earlier page's next_cursor (instead of starting_after), or NULL */
    const char *cursor_owner;     /* the caller's key id: a cursor is good for that key only */
    char *next_cursor;            /* NULL, or STORE_CURSOR_TEXT_SIZE bytes: the next page's cursor
                                     when there is one on a store that reads so, else "" */
} store_query_t;

/* Lists call 'fn' for each row in order, at most query->limit times, and set
 * *has_more. A row passed to 'fn' is borrowed for the call. */
typedef void (*store_account_fn)(const ledger_account_t *account, void *ctx);
typedef void (*store_transfer_fn)(const ledger_transfer_t *transfer, ledger_pending_state state, void *ctx);
typedef void (*store_history_fn)(const ledger_history_t *row, void *ctx);

/* Every account in creation order. A starting_after that names no account is
 * PC_NOT_FOUND; a cursor the store did not issue for this key and list (a store of
 * one database issues none) PC_LIST_CURSOR_INVALID, an old one PC_LIST_CURSOR_EXPIRED. */
PC_MUST_USE pc_status store_list_accounts(store_reader_t *reader, const store_query_t *query,
                                          store_account_fn fn, void *ctx, bool *has_more);
/* The accounts granted to API key 'key_id', in id order, read through the grants'
 * index: the cost is the page's, whatever the number of other accounts. A
 * starting_after that names no account granted to the key is PC_NOT_FOUND. */
PC_MUST_USE pc_status store_list_accounts_granted(store_reader_t *reader, const char *key_id,
                                                  const store_query_t *query, store_account_fn fn,
                                                  void *ctx, bool *has_more);
/* An account's transfers by timestamp (debit or credit side). */
PC_MUST_USE pc_status store_list_account_transfers(store_reader_t *reader, const char *account_id,
                                                   const store_query_t *query, store_transfer_fn fn,
                                                   void *ctx, bool *has_more);
/* An account's balance history (accounts with the history flag). */
PC_MUST_USE pc_status store_list_history(store_reader_t *reader, const char *account_id,
                                         const store_query_t *query, store_history_fn fn,
                                         void *ctx, bool *has_more);

#endif
