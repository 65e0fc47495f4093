/* store/sqlite_internal.h: what the SQLite backend's files share. Not a contract:
 * only src/store/ includes this. */
#ifndef PAYCORE_STORE_SQLITE_INTERNAL_H
#define PAYCORE_STORE_SQLITE_INTERNAL_H

#include <sqlite3.h>

#include "core/core.h"
#include "store/store_backend.h"
#include "store/store_dirty.h"
#include "store/store_shadow.h"

/* The backend's store: struct sqlite_store below. */
typedef struct sqlite_store sqlite_store_t;

/* The backend's parts (sqlite_api.c, sqlite_events.c, sqlite_payments.c). */
extern const store_api_ops_t store_sqlite_api_ops;
extern const store_events_ops_t store_sqlite_events_ops;
extern const store_payments_ops_t store_sqlite_payments_ops;

/* The connection of a write transaction (writer thread) and of a reader. */
sqlite3 *store_sqlite_tx_db(store_tx_t *tx);
sqlite_store_t *store_sqlite_tx_store(store_tx_t *tx);
sqlite3 *store_sqlite_reader_db(store_reader_t *reader);

/* ---- sqlite_stmt_cache.c: a connection's statements kept between calls ---- */
enum { /* one slot per kept statement, over the files that keep them */
    STORE_STMT_PAY_OBJECT_PUT,
    STORE_STMT_PAY_OBJECT_UPDATE,
    STORE_STMT_PAY_OBJECT_GET,
    STORE_STMT_PAY_CURSOR_FIND,
    STORE_STMT_PAY_VERSION_GET,
    STORE_STMT_PAY_LOOKUP_PUT,
    STORE_STMT_PAY_LOOKUP_GET,
    STORE_STMT_PAY_LOOKUP_PREFIX,
    STORE_STMT_VAULT_KEY_PUT,
    STORE_STMT_VAULT_KEYS_LIST,
    STORE_STMT_VAULT_CARD_GET,
    STORE_STMT_API_IDEM_GET,
    STORE_STMT_API_IDEM_ROW_BYTES,
    STORE_STMT_SLOT_COUNT,
};
typedef struct store_stmt_cache store_stmt_cache_t;
typedef struct {
    store_stmt_cache_t **cache; /* the connection's, made on first use */
    sqlite3 *db;
} store_conn_t;
store_conn_t store_sqlite_tx_conn(store_tx_t *tx);
store_conn_t store_sqlite_reader_conn(store_reader_t *reader);
/* The connection's statement of 'slot' (whose 'sql' is the same on every call),
 * prepared on first use; a fresh one when the kept one is still stepping (a caller's
 * callback reading through the same connection). Hand it back with give_back. */
pc_status store_sqlite_stmt_take(store_conn_t conn, int slot, const char *sql, sqlite3_stmt **out,
                                 pc_status failure);
/* Resets the kept statement (ending its read, dropping borrowed bindings); finalizes
 * a fresh one. */
void store_sqlite_stmt_give_back(store_conn_t conn, int slot, sqlite3_stmt *stmt);
void store_sqlite_stmt_cache_free(store_stmt_cache_t *cache); /* before the connection closes */
/* ---- sqlite_pay_pack.c: payment records packed for pay_versions (schema version 16) ---- */
typedef struct store_pay_pack store_pay_pack_t;
/* The connection's packing contexts (kept with its statements; NULL: none kept, each
 * call makes its own). */
store_pay_pack_t **store_sqlite_conn_pack(store_conn_t conn);
/* 'text' packed into *out (the context's buffer, valid until its next call); *out NULL
 * when packing would not make it smaller: it is stored as text. */
PC_MUST_USE pc_status store_sqlite_pay_pack(store_pay_pack_t **pack, const char *text, size_t bytes,
                                            const uint8_t **out, size_t *out_bytes);
/* A packed record's text (malloc'ed, NUL-terminated); PC_STORE_CORRUPT when the blob is
 * not one this paycore packed or does not check. */
PC_MUST_USE pc_status store_sqlite_pay_unpack(store_pay_pack_t **pack, const void *blob, size_t blob_bytes,
                                              char **text_out, size_t *bytes_out);
void store_sqlite_pay_pack_free(store_pay_pack_t *pack);
/* store_sqlite_pay_pack with the calling thread's own contexts (any thread), into a
 * malloc'ed copy (*packed_out NULL: kept as text, or no memory). */
PC_MUST_USE pc_status store_sqlite_pay_pack_ahead(const char *text, size_t bytes, uint8_t **packed_out,
                                                  size_t *packed_bytes_out);
/* The dictionary of format 1 (sqlite_pay_dict.c). */
const char *store_sqlite_pay_dict_v1(size_t *bytes_out);
/* Prepares 'sql' (a NULL db: PC_INTERNAL; SQLite refusing it: 'failure'). */
pc_status store_sqlite_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **out, pc_status failure);
/* Runs a write statement to completion and finalizes it (else PC_STORE_COMMIT_FAILED). */
pc_status store_sqlite_step_done(sqlite3_stmt *stmt);

/* ---- sqlite_rows.c: appended rows inserted several per statement ---- */
#define STORE_SQLITE_ROWS_PER_INSERT 16
#define STORE_SQLITE_ROWS_COLUMNS_MAX 14 /* a transfer's row */
#define STORE_SQLITE_DEFERRED_MAX 8 /* buffers of one store: events, spans, payments' versions, transfers,
                                     * cards, Idempotency-Key replies (6), and room for two more */
#define STORE_SQLITE_PENDING_UPDATE_ROWS_MAX 16 /* pending transfers' new states a statement (sqlite_tx.c) */
typedef struct store_sqlite_rows store_sqlite_rows_t;
/* A buffer of rows for 'insert_prefix' ("INSERT OR FAIL INTO t(a, b) VALUES": OR FAIL
 * or OR IGNORE, asserted, so that SQLite keeps no statement journal; a failing row fails
 * the transaction, whose ROLLBACK undoes the rows before it), kept by the store until
 * freed: its rows go in before the store's COMMIT and are dropped at its ROLLBACK.
 * Free it before the store closes. */
PC_MUST_USE pc_status store_sqlite_rows_new(sqlite_store_t *store, const char *insert_prefix, uint32_t columns,
                                            store_sqlite_rows_t **out);
void store_sqlite_rows_free(store_sqlite_rows_t *rows);
/* One row: its columns' values in order (texts copied), then end_row, which inserts
 * the waiting rows once STORE_SQLITE_ROWS_PER_INSERT wait. */
void store_sqlite_rows_int(store_sqlite_rows_t *rows, int64_t number);
void store_sqlite_rows_null(store_sqlite_rows_t *rows);
void store_sqlite_rows_text(store_sqlite_rows_t *rows, const char *text, size_t bytes);
void store_sqlite_rows_blob(store_sqlite_rows_t *rows, const void *blob, size_t bytes);
PC_MUST_USE pc_status store_sqlite_rows_end_row(store_sqlite_rows_t *rows);
/* Inserts the waiting rows now (before a statement that reads their table). Rows whose
 * transaction SQLite has already rolled back (an I/O error, a full disk or no memory
 * mid-statement) are refused, never inserted on their own. */
PC_MUST_USE pc_status store_sqlite_rows_flush(store_sqlite_rows_t *rows);
void store_sqlite_rows_drop(store_sqlite_rows_t *rows);
bool store_sqlite_rows_waiting(const store_sqlite_rows_t *rows);
/* Every buffer of the store: before COMMIT (up to the first that fails), and at ROLLBACK. */
PC_MUST_USE pc_status store_sqlite_rows_flush_all(sqlite_store_t *store);
void store_sqlite_rows_drop_all(sqlite_store_t *store);
/* "<head>(?,?),(?,?)<tail>": 'rows' groups of 'columns' parameters between 'head' and
 * 'tail' (NULL: none); malloc'ed, NULL when out of memory. */
char *store_sqlite_rows_sql(const char *head, uint32_t columns, uint32_t rows, const char *tail);

/* SQL creating the API's tables (keys, grants, idempotency), run by schema
 * migration 1 in the same transaction as the ledger's tables. sqlite_api.c. */
const char *store_sqlite_api_schema(void);
/* Migration 3: idempotency_keys.row_bytes and its index by age. */
const char *store_sqlite_api_schema_v3(void);
/* Migration 13: idempotency_keys appended by seq, found through memory (sqlite_idem_rows.c). */
const char *store_sqlite_api_schema_v13(void);
/* SQL creating the events outbox and delivery tables (schema migration 4).
 * sqlite_events.c. */
const char *store_sqlite_events_schema(void);
const char *store_sqlite_events_schema_v10(void);
/* The SQL of a listing of events, arm 0 or 1 ("" when it has no such arm): tests read
 * its query plan. sqlite_events.c. */
void store_sqlite_events_list_sql(const store_events_query_t *query, uint32_t arm, char *sql, size_t sql_bytes);
/* Migration 17: a merchant's events found through event_owner_spans, not an index. */
const char *store_sqlite_events_schema_v17(void);
/* The spans of a merchant's events (sqlite_event_spans.c): every event of the
 * transaction is added in seq order ('owner' its first owner, or NULL); the spans
 * still open are written before COMMIT (flush) and dropped at ROLLBACK; made on first
 * use, freed with the store. */
typedef struct store_sqlite_event_spans store_sqlite_event_spans_t;
PC_MUST_USE pc_status store_sqlite_event_spans_add(sqlite_store_t *store, const char *owner, uint64_t seq);
PC_MUST_USE pc_status store_sqlite_event_spans_flush(sqlite_store_t *store);
void store_sqlite_event_spans_drop(sqlite_store_t *store);
void store_sqlite_event_spans_free(sqlite_store_t *store);
/* SQL creating the payments layer's tables and the vault's (sqlite_payments.c). */
const char *store_sqlite_payments_schema(void);
const char *store_sqlite_payments_schema_v6(void);
const char *store_sqlite_payments_schema_v8(void);
const char *store_sqlite_payments_schema_v9(void);
const char *store_sqlite_payments_schema_v11(void);
/* The objects' new versions waiting in the transaction written now, several rows a
 * statement (before COMMIT: sqlite_tx.c); a ROLLBACK drops them; freed with the store. */
PC_MUST_USE pc_status store_sqlite_pay_rows_flush(sqlite_store_t *store);
void store_sqlite_pay_rows_drop(sqlite_store_t *store);
void store_sqlite_pay_rows_free(sqlite_store_t *store);
uint32_t store_sqlite_pay_rows_waiting(const sqlite_store_t *store); /* rows waiting (tests) */
/* The SQL of a listing of payments' objects (tests read its query plan). */
void store_sqlite_pay_list_sql(const store_pay_query_t *q, bool cursor, char *sql, size_t sql_bytes);

/* The batch's new cards still waiting inserted now: before a statement of the
 * transaction reads vault_cards (sqlite_vault.c). */
PC_MUST_USE pc_status store_sqlite_vault_cards_flush(sqlite_store_t *store);
/* The vault's re-encryption (store_payments.h: store_vault_cards_not_under,
 * store_vault_card_rekey, store_vault_key_retire). sqlite_vault.c. */
pc_status store_sqlite_vault_cards_not_under(store_reader_t *reader, const char *key_id, const char *after_token,
                                        uint32_t limit, store_vault_card_fn fn, void *ctx);
pc_status store_sqlite_vault_card_rekey(store_tx_t *tx, const store_vault_card_t *card, const char *from_key_id);
pc_status store_sqlite_vault_key_retire(store_tx_t *tx, const char *key_id, bool *retired);

/* ---- sqlite_index.c: transfer indexes off the commit path ---- */
typedef struct {
    uint64_t key;        /* store_index_key(index, id) */
    uint64_t ts;         /* the transfer's timestamp: its row in the main file */
    uint32_t debit_no;   /* account numbers (ledger table indices) */
    uint32_t credit_no;
} store_index_entry_t;

typedef struct store_index store_index_t;
/* An id's key in the index: SipHash under the database's id key, 63 bits, non-zero.
 * Equal keys do not mean equal ids: lookups compare the ids. */
uint64_t store_index_key(const store_index_t *index, const char *id);
/* A fingerprint of an id key (a keyed hash of a constant): tells a file keyed
 * otherwise without revealing the key. Positive, non-zero. */
int64_t store_index_key_check(const pc_hash_key_t *id_key);
typedef struct {
    const char *main_path;          /* the index file is '<main_path>-index' */
    int64_t main_instance_id;       /* meta.instance_id: an index of another database is rebuilt */
    uint64_t main_last_ts;          /* the main file's last transfer: an index ahead is rebuilt */
    const pc_hash_key_t *id_key;    /* borrowed for the call: the index keeps a copy */
    uint32_t key_bits;              /* store_options_t.index_key_bits (0 in production) */
    uint32_t fault_write_from;      /* store_options_t.fault_index_write_from */
    uint32_t memtable_entries_max;  /* store_options_t.index_memtable_entries_max */
} store_index_config_t;
pc_status store_index_open(store_index_t **out, const store_index_config_t *config);
void store_index_close(store_index_t *index);          /* flushes everything first */
uint64_t store_index_indexed_through_ts(const store_index_t *index);
uint64_t store_index_step_count(const store_index_t *index); /* transactions the indexer committed (tests) */
/* Before a batch's COMMIT (writer thread): waits while the indexer is a full memtable
 * behind (back-pressure). PC_STORE_INDEX_FAILED, with 'detail', when the indexer gave
 * up writing the index file: the store must take no more writes. */
PC_MUST_USE pc_status store_index_room_wait(store_index_t *index, char *detail, size_t detail_bytes);
/* Adds a committed batch's transfers (writer thread, after COMMIT); never waits:
 * store_index_room_wait made room for a whole batch. */
void store_index_add(store_index_t *index, const store_index_entry_t *entries, uint32_t count);
void store_index_flush(store_index_t *index);     /* returns early when the indexer gave up */
void store_index_bloom_add(store_index_t *index, uint64_t key);
bool store_index_bloom_maybe(const store_index_t *index, uint64_t key);
sqlite3 *store_index_reader_open(store_index_t *index);
/* Calls 'visit' with the timestamp of every indexed transfer whose id key is 'key',
 * until it returns anything but PC_NOT_FOUND (a match, or an error), and returns
 * that; PC_NOT_FOUND when no candidate matched. Every candidate is visited: the
 * count is bounded by the entries held, never by a constant. Any thread, with its
 * own index connection 'reader'. */
typedef pc_status (*store_index_visit_fn)(void *ctx, uint64_t ts);
pc_status store_index_find(store_index_t *index, sqlite3 *reader, uint64_t key, store_index_visit_fn visit,
                           void *ctx);
pc_status store_index_account(store_index_t *index, sqlite3 *reader, uint32_t account_no, uint64_t low,
                              uint64_t high, bool descending, uint32_t limit, uint64_t *ts_out,
                              uint32_t *count);

/* The parts of the store readers share. */
store_index_t *store_sqlite_index(sqlite_store_t *store);
store_shadow_t *store_sqlite_shadow(sqlite_store_t *store);

/* ---- sqlite_idem_rows.c: where each stored Idempotency-Key reply is ---- */
typedef struct store_idem_rows store_idem_rows_t;
PC_MUST_USE pc_status store_idem_rows_new(store_idem_rows_t **out);
void store_idem_rows_free(store_idem_rows_t *rows);
/* The key's tag: a keyed hash of ('key_id', 'idempotency_key'). Equal tags do not
 * mean equal keys: lookups compare the keys of the rows. */
uint32_t store_idem_rows_tag(const store_idem_rows_t *rows, const char *key_id, const char *idempotency_key);
/* The seqs of the rows that may be the key's (every entry of 'tag'): fills at most
 * 'seqs_max' and returns how many there are (more than 'seqs_max': ask again with
 * room for all). Any thread. */
uint32_t store_idem_rows_candidates(store_idem_rows_t *rows, uint32_t tag, uint64_t *seqs, uint32_t seqs_max);
/* The load (sqlite_idem_rows.c, "Loading"): true when the caller is to load the map
 * now (it holds the load until _load_end: every row of the table through
 * _add_loaded, 'complete' when all were), false when it is loaded already. */
bool store_idem_rows_load_begin(store_idem_rows_t *rows);
void store_idem_rows_load_end(store_idem_rows_t *rows, bool complete);
/* Writer: a row's seq (never handed out twice in a process), then its entry, added
 * before the row's transaction commits and taken out if it rolls back (PC_NO_MEMORY:
 * the row must not commit). _add_loaded: a row of the file, by a load. */
uint64_t store_idem_rows_seq_take(store_idem_rows_t *rows);
PC_MUST_USE pc_status store_idem_rows_add(store_idem_rows_t *rows, uint32_t tag, uint64_t seq);
PC_MUST_USE pc_status store_idem_rows_add_loaded(store_idem_rows_t *rows, uint32_t tag, uint64_t seq);
/* Writer: the row (tag, seq) is deleted by the open transaction; its entry goes once
 * that commits (PC_NO_MEMORY: the deletion must not commit). */
PC_MUST_USE pc_status store_idem_rows_forget_later(store_idem_rows_t *rows, uint32_t tag, uint64_t seq);
/* After the writer's COMMIT / ROLLBACK (sqlite_tx.c); NULL: nothing. */
void store_idem_rows_committed(store_idem_rows_t *rows);
void store_idem_rows_rolled_back(store_idem_rows_t *rows);
/* The map, empty and not loaded yet, at open (sqlite_api.c loads it at first use). */
PC_MUST_USE pc_status store_sqlite_idem_rows_open(sqlite_store_t *store);

/* ---- sqlite_wal_checkpointer.c: WAL checkpoints off the writer's commit path ---- */
typedef struct store_wal_checkpointer store_wal_checkpointer_t;
store_wal_checkpointer_t *store_wal_checkpointer_start(const char *path, sqlite3 *writer_db);
void store_wal_checkpointer_stop(store_wal_checkpointer_t *checkpointer, sqlite3 *writer_db);
/* Checkpoints finished (those run because the writer paused among them) and WAL
 * restarts seen so far (tests). */
typedef struct {
    uint64_t runs;
    uint64_t idle_runs;
    uint64_t restarts;
} store_wal_checkpoint_counts;
store_wal_checkpoint_counts store_wal_checkpointer_counts(store_wal_checkpointer_t *checkpointer);

/* ---- sqlite_file.c: the file outside SQLite: its kind, the writer's lock, modes ---- */
typedef enum {
    STORE_FILE_MISSING,
    STORE_FILE_EMPTY,       /* 0 bytes: SQLite makes a database of it */
    STORE_FILE_PAYCORE,     /* an SQLite header with paycore's application_id, or none yet */
    STORE_FILE_FOREIGN,     /* not SQLite, or SQLite with another application_id */
    STORE_FILE_TRUNCATED,   /* an SQLite header, but the file is shorter than it says */
    STORE_FILE_UNREADABLE,  /* open or read failed (detail says why) */
} store_file_kind;
/* Reads the header of 'path' (before any SQLite connection to it is open); fills
 * 'detail' for every kind but PAYCORE and EMPTY. */
store_file_kind store_sqlite_file_kind(const char *path, char *detail, size_t detail_bytes);
/* '<db>.lock' with flock(LOCK_EX | LOCK_NB) and our pid in it. PC_STORE_IN_USE with
 * "database in use by pid N" in 'detail' when another process holds it. */
pc_status store_sqlite_lock_take(const char *db_path, int *fd_out, char *detail, size_t detail_bytes);
void store_sqlite_lock_release(const char *db_path, int fd); /* removes the file */
/* chmod to the owner's bits alone when group or others had any; true when changed. */
bool store_sqlite_mode_tighten(const char *path);

#include "store/sqlite_vfs.h"

/* ---- sqlite_fault.c: the fault-injecting VFS (tests) ---- */
const char *store_sqlite_fault_vfs(void); /* registers it once; returns its name */

/* Row decoding shared by the writer's and readers' statements. Columns 0..10 are
 * timestamp, id, debit_account_id, credit_account_id, amount, currency, code, flags,
 * pending_id, timeout_s, metadata; 'metadata_json' points into the statement. */
void store_sqlite_text_copy(char *dst, size_t dst_size, sqlite3_stmt *stmt, int column);
void store_sqlite_transfer_from_row(sqlite3_stmt *stmt, ledger_transfer_t *out);
/* Account columns 0..9: id, currency, code, flags, the four balances, timestamp,
 * metadata ('metadata_json' points into the statement). */
void store_sqlite_account_from_row(sqlite3_stmt *stmt, ledger_account_t *out);

/* WAL, synchronous, busy timeout, cache: the writer's and readers' settings. */
pc_status store_sqlite_configure(sqlite3 *db, bool synchronous_off);

/* ---- the writer's side: sqlite_store.c (open, load, lookups), sqlite_tx.c ---- */
enum {
    STMT_ACCOUNT_INSERT,
    STMT_ACCOUNT_UPDATE,
    STMT_FAILURE_INSERT,
    STMT_HISTORY_INSERT,
    STMT_JOURNAL_INSERT,
    STMT_JOURNAL_CHECKPOINT_INSERT,
    STMT_TRANSFER_FIND,
    STMT_FAILURE_FIND,
    STMT_META_SET,
    STMT_BEGIN,  /* a batch's BEGIN IMMEDIATE and COMMIT, kept: not parsed again every batch */
    STMT_COMMIT,
    STMT_COUNT,
};

struct sqlite_store {
    store_t base;           /* first: store.c finds the ops there */
    sqlite3 *db;
    char *path;
    store_options_t options;
    sqlite3_stmt *statements[STMT_COUNT];
    store_stmt_cache_t *stmt_cache; /* the writer connection's kept statements */
    int lock_fd;            /* '<path>.lock', held while open; -1 when not taken */
    uint32_t commit_count;
    char *metadata_scratch; /* transfer_find's metadata, valid until the next call */
    store_index_t *index;   /* opened by store_load */
    sqlite3 *index_reader;  /* the writer's connection to the index file */
    store_shadow_t *shadow;
    store_idem_rows_t *idem_rows; /* where each stored Idempotency-Key reply is */
    store_wal_checkpointer_t *wal_checkpointer;
    store_sqlite_rows_t *deferred[STORE_SQLITE_DEFERRED_MAX]; /* rows waiting for COMMIT (sqlite_rows.c) */
    uint32_t deferred_count;
    store_sqlite_rows_t *pay_versions; /* sqlite_payments.c's, made on first use */
    struct store_sqlite_pay_rows *pay_rows; /* sqlite_payments.c's objects' rows waiting, made on first use */
    store_sqlite_rows_t *transfer_rows; /* sqlite_tx.c's: the batch's transfers, made on first use */
    store_sqlite_rows_t *vault_cards;   /* sqlite_payments.c's: the batch's new cards, made on first use */
    store_sqlite_rows_t *idem_replies;  /* sqlite_api.c's: the batch's Idempotency-Key replies, made on first use */
    sqlite3_stmt *pending_updates[STORE_SQLITE_PENDING_UPDATE_ROWS_MAX]; /* sqlite_tx.c's: [n - 1] sets n rows */
    struct store_sqlite_event_spans *event_spans; /* sqlite_event_spans.c's, made on first use */
    int64_t instance_id;    /* meta.instance_id: ties the index file to this database */
    pc_hash_key_t id_key;   /* '<path>.idkey': ids are hashed with it (sqlite_index.c) */
    /* Accounts whose balances changed since the balance snapshot, in committed
     * batches only (a batch's accounts join after its COMMIT). */
    store_dirty_t dirty;
    uint64_t accounts_as_of_seq; /* the balance snapshot's journal seq; <= journal_head_seq */
    uint64_t journal_head_seq;   /* the last journal row committed */
    pc_status failed;            /* PC_OK, or PC_STORE_FAILED for good */
    bool writable;               /* the last write attempt did not fail in a way that may pass */
    char error_detail[512];
};

/* Records the connection's error as the store's detail; returns 'status'. */
pc_status store_sqlite_fail(sqlite_store_t *store, pc_status status, const char *what);
/* Waits for room in the id memtable before a batch (sqlite_store.c); the indexer
 * having given up fails the store for good (PC_STORE_INDEX_FAILED). */
pc_status store_sqlite_index_room(sqlite_store_t *store);

/* The batch transaction and what runs outside batches (sqlite_tx.c): the ops of
 * the same names (store_backend.h). */
pc_status store_sqlite_tx_begin(store_t *store, store_tx_t **out);
pc_status store_sqlite_tx_write_changes(store_tx_t *tx, const ledger_t *ledger, const ledger_changes_t *changes,
                                        uint64_t batch_seq, journal_content_t *content);
pc_status store_sqlite_tx_write_journal(store_tx_t *tx, const journal_entry_t *entry,
                                        const journal_checkpoint_t *checkpoint);
pc_status store_sqlite_tx_commit(store_tx_t *tx);
void store_sqlite_tx_rollback(store_tx_t *tx);
/* The batch's transfers still waiting in their rows buffer inserted now: before a
 * statement of the transaction reads the transfers table. */
pc_status store_sqlite_transfer_rows_flush(sqlite_store_t *store);
pc_status store_sqlite_balance_snapshot(store_t *store, const ledger_t *ledger);
pc_status store_sqlite_probe(store_t *store);

/* Readers (sqlite_read.c): the ops of the same names. */
pc_status store_sqlite_reader_open(store_t *store, store_reader_t **out);
void store_sqlite_reader_close(store_reader_t *reader);
pc_status store_sqlite_read_account(store_reader_t *reader, const char *id, store_account_t *out);
pc_status store_sqlite_read_transfer(store_reader_t *reader, const char *id, store_transfer_t *out);
pc_status store_sqlite_read_transfer_at(store_reader_t *reader, uint64_t timestamp_ns, const char *id,
                                        store_transfer_t *out);
pc_status store_sqlite_list_accounts(store_reader_t *reader, const store_query_t *query, store_account_fn fn,
                                     void *ctx, bool *has_more);
pc_status store_sqlite_list_accounts_granted(store_reader_t *reader, const char *key_id,
                                             const store_query_t *query, store_account_fn fn, void *ctx,
                                             bool *has_more);
pc_status store_sqlite_list_account_transfers(store_reader_t *reader, const char *account_id,
                                              const store_query_t *query, store_transfer_fn fn, void *ctx,
                                              bool *has_more);
pc_status store_sqlite_list_history(store_reader_t *reader, const char *account_id, const store_query_t *query,
                                    store_history_fn fn, void *ctx, bool *has_more);

/* Schema (sqlite_schema.c). */
int store_sqlite_schema_version_latest(void);
int store_sqlite_application_id(void);
int store_sqlite_migrate(sqlite3 *db, int version_from, char **error_out);

#endif
