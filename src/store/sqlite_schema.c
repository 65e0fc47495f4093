/* store/sqlite_schema.c: the SQLite schema, one migration a version. A database
 * records its version in PRAGMA user_version and its kind in PRAGMA application_id
 * (0x50594352, "PYCR"): a file of another kind or a newer version is refused.
 *
 * Transfers are appended by timestamp with no secondary index on the commit path:
 * the id and per-account indexes live in <db>-index (sqlite_index.c). Account
 * balances in 'accounts' are a balance snapshot as of journal seq
 * meta.accounts_as_of_seq (an account created later is inserted with zero
 * balances), and the rest is re-derived from the transfers at load. Rows are
 * append-only except those balances and a pending transfer's pending_state. Every
 * row a batch adds carries batch_seq (the journal row of its batch) and row_hash
 * (journal.h), so verify can re-derive the chain and name a tampered row.
 *
 * Three things are easily confused, so each has its own name:
 *   balance snapshot    the account rows' balances, as of meta.accounts_as_of_seq
 *   journal checkpoint  a journal hash signed with the node key (journal_checkpoints)
 *   WAL checkpoint      SQLite copying its write-ahead log into the main file */
#include <stddef.h>

#include "store/sqlite_internal.h"

#define STORE_SQLITE_APPLICATION_ID 0x50594352

static const char schema_v1[] =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE accounts("
    "  no INTEGER PRIMARY KEY,"              /* index in the ledger's table, from 0 */
    "  id TEXT NOT NULL UNIQUE,"
    "  currency TEXT NOT NULL,"
    "  code INTEGER NOT NULL,"
    "  flags INTEGER NOT NULL,"
    "  debits_pending INTEGER NOT NULL,"
    "  debits_posted INTEGER NOT NULL,"
    "  credits_pending INTEGER NOT NULL,"
    "  credits_posted INTEGER NOT NULL,"
    "  timestamp INTEGER NOT NULL,"
    "  metadata TEXT,"
    "  batch_seq INTEGER NOT NULL,"
    "  row_hash BLOB NOT NULL);"
    "CREATE TABLE transfers("
    "  timestamp INTEGER PRIMARY KEY,"       /* unique, strictly increasing */
    "  id TEXT NOT NULL,"
    "  debit_account_id TEXT NOT NULL,"
    "  credit_account_id TEXT NOT NULL,"
    "  amount INTEGER NOT NULL,"
    "  currency TEXT NOT NULL,"
    "  code INTEGER NOT NULL,"
    "  flags INTEGER NOT NULL,"
    "  pending_id TEXT,"                     /* NULL unless post/void/expiry */
    "  timeout_s INTEGER NOT NULL,"
    "  metadata TEXT,"
    "  pending_state INTEGER NOT NULL DEFAULT 0," /* ledger_pending_state; mutable */
    "  batch_seq INTEGER NOT NULL,"
    "  row_hash BLOB NOT NULL);"
    "CREATE INDEX transfers_open_pending ON transfers(pending_state) WHERE pending_state = 1;"
    "CREATE TABLE transfer_failures("         /* ids burned by transient failures */
    "  id TEXT PRIMARY KEY,"
    "  result TEXT NOT NULL,"                /* the stable code, e.g. exceeds_credits */
    "  timestamp INTEGER NOT NULL,"
    "  batch_seq INTEGER NOT NULL,"
    "  row_hash BLOB NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE balance_history("
    "  account_id TEXT NOT NULL,"
    "  timestamp INTEGER NOT NULL,"
    "  transfer_id TEXT NOT NULL,"
    "  debits_pending INTEGER NOT NULL,"
    "  debits_posted INTEGER NOT NULL,"
    "  credits_pending INTEGER NOT NULL,"
    "  credits_posted INTEGER NOT NULL,"
    "  PRIMARY KEY(account_id, timestamp)) WITHOUT ROWID;"
    "CREATE TABLE journal("
    "  seq INTEGER PRIMARY KEY,"
    "  timestamp_first INTEGER NOT NULL,"
    "  timestamp_last INTEGER NOT NULL,"
    "  account_count INTEGER NOT NULL,"
    "  transfer_count INTEGER NOT NULL,"
    "  failure_count INTEGER NOT NULL,"
    "  content_hash BLOB NOT NULL,"
    "  prev_hash BLOB NOT NULL,"
    "  hash BLOB NOT NULL,"
    "  committed_ns INTEGER NOT NULL);"
    "CREATE TABLE checkpoints("             /* journal checkpoints; renamed in v2 */
    "  seq INTEGER PRIMARY KEY,"
    "  hash BLOB NOT NULL,"
    "  public_key BLOB NOT NULL,"
    "  signature BLOB NOT NULL);";

/* Version 2: the signed journal checkpoints get a name of their own. Balance
 * snapshots of version 1 could claim a journal seq that had no journal row yet (a
 * batch that wrote no ledger rows still advanced the seq), so their balances cannot
 * be trusted: every snapshot goes back to zero as of seq 0 (true by construction:
 * accounts are created at zero) and the next start re-derives every balance from
 * the transfers, once, then writes a fresh snapshot. */
static const char schema_v2[] =
    "ALTER TABLE checkpoints RENAME TO journal_checkpoints;"
    "UPDATE accounts SET debits_pending = 0, debits_posted = 0, credits_pending = 0,"
    "  credits_posted = 0;"
    "UPDATE meta SET value = 0 WHERE key = 'accounts_as_of_seq';";

/* Migrations: index i takes a database from version i to i+1. Append only. */
typedef struct {
    const char *sql;
    const char *(*extra_sql)(void);
} schema_migration;

static const schema_migration migrations[] = {
    {schema_v1, store_sqlite_api_schema},
    {schema_v2, NULL},
    {"", store_sqlite_api_schema_v3}, /* idempotency_keys.row_bytes, index by age */
    {"", store_sqlite_events_schema}, /* v4: the events outbox and delivery state */
    {"", store_sqlite_payments_schema}, /* v5: payments, their lookups, the card vault */
    {"", store_sqlite_payments_schema_v6}, /* v6: payments' versions as appended records */
    /* v7: events.body may be a reference ("@payment:<id>:<version>", events.h) rendered
     * when read; no table changes, but a paycore of v6 would deliver the reference
     * itself as the event: it must refuse the file */
    {"", NULL},
    /* v8: fewer index pages per payment. The events' type and object indexes go: the
     * listings' filters are NULL-tolerant, so SQLite walks events by seq and never used
     * them (sqlite_events.c). Operations leave the payments' listing indexes. */
    {"DROP INDEX IF EXISTS events_by_type;"
     "DROP INDEX IF EXISTS events_by_object;",
     store_sqlite_payments_schema_v8},
    /* v9: a payment's row keeps the final answer of the request that made it (its
     * stored reply is not rewritten) */
    {"", store_sqlite_payments_schema_v9},
    /* v10: an event's first owner on its row (sqlite_events.c) */
    {"", store_sqlite_events_schema_v10},
    /* v11: a card payment's operations without rows; the payment's row names the one
     * in flight (sqlite_payments.c) */
    {"", store_sqlite_payments_schema_v11},
    /* v12: the operations waiting for a bank callback, indexed: the recovery's sweep
     * over them ('processing', recovery.c) read the whole table without it */
    {"CREATE INDEX IF NOT EXISTS pay_objects_processing ON pay_objects(kind, created_ns)"
     "  WHERE status = 'processing';",
     NULL},
    /* v13: Idempotency-Key replies appended by seq, without the B-tree by key whose
     * random inserts dirtied a page per reply (sqlite_api.c, sqlite_idem_rows.c) */
    {"", store_sqlite_api_schema_v13},
    /* v14: a payment's version record may name the record that holds its fixed members
     * and routing whole ("$fixed", "$routing": payments/model.c) instead of repeating
     * them. No table changes, but a paycore of v13 would read such a record without
     * those members: it must refuse the file */
    {"", NULL},
    /* v15: a transfer event's body may be a reference to its transfers ("@transfer",
     * events.h) rendered when read. No table changes, but a paycore of v14 would hand
     * such a body to the payments' renderer: it must refuse the file */
    {"", NULL},
    /* v16: a payment's version record may be stored packed (pay_versions.doc a BLOB: zstd
     * with a dictionary of typical records, sqlite_pay_pack.c), a fifth of its text.
     * Records written before stay text and read as they are. No table changes, but a
     * paycore of v15 would read a packed record as text: it must refuse the file */
    {"", NULL},
    /* v17: a merchant's events found through spans of seqs (event_owner_spans, a row
     * per owner and run of a transaction's events), not an index entry per event
     * (sqlite_events.c, sqlite_event_spans.c) */
    {"", store_sqlite_events_schema_v17},
};

#define SCHEMA_VERSION_LATEST ((int)(sizeof(migrations) / sizeof(migrations[0])))
static_assert(sizeof(migrations) / sizeof(migrations[0]) == STORE_SCHEMA_VERSION_MAX,
              "verify reads every version the store writes: raise STORE_SCHEMA_VERSION_MAX");

int store_sqlite_schema_version_latest(void) { return SCHEMA_VERSION_LATEST; }
int store_sqlite_application_id(void) { return STORE_SQLITE_APPLICATION_ID; }

/* Runs migrations from 'version_from' to the latest inside the caller's transaction. */
int store_sqlite_migrate(sqlite3 *db, int version_from, char **error_out) {
    for (int v = version_from; v < SCHEMA_VERSION_LATEST; v++) {
        int rc = sqlite3_exec(db, migrations[v].sql, NULL, NULL, error_out);
        if (rc != SQLITE_OK) return rc;
        if (migrations[v].extra_sql != NULL) {
            rc = sqlite3_exec(db, migrations[v].extra_sql(), NULL, NULL, error_out);
            if (rc != SQLITE_OK) return rc;
        }
    }
    return SQLITE_OK;
}
