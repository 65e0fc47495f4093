/* store/pg_internal.h: what the PostgreSQL backend's files share (pg_*.c). Not a
 * contract: only src/store/ includes this. docs/scaleout.md has the schema and why. */
#ifndef PAYCORE_STORE_PG_INTERNAL_H
#define PAYCORE_STORE_PG_INTERNAL_H

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>

#include "core/core.h"
#include "paycore/limits.h"
#include "store/store_backend.h"
#include "store/store_bloom.h"
#include "store/store_dirty.h"
#include "store/store_shadow.h"

/* The writer's lock: a session advisory lock on the writer's connection, so it goes
 * with the connection (a crashed writer's lock is released by the server). Two
 * 32-bit keys: "PYCR" and the shard number (0: a single database). */
#define PG_WRITER_LOCK_KEY1 0x50594352
#define PG_WRITER_LOCK_KEY2 0
#define PG_FENCE_LOCK_KEY2 0x46454e43 /* "FENC": the set's read fence (store_link_fence_take) */
/* "PIPE": taken shared by each staged next part's transaction (pg_tx_begin_next),
 * and exclusive by a writer after it took the writer's lock, before it loads. */
#define PG_PIPELINE_LOCK_KEY2 0x50495045

/* A COPY ... FROM STDIN text-format buffer: one batch's rows of one table. */
typedef struct {
    char *data;
    size_t bytes;
    size_t capacity;
    uint32_t row_fields; /* fields in the row being written */
    uint32_t rows;
    bool failed;         /* out of memory */
} pg_copy_t;
/* An id a prefetch holds (one batch's ids): found or not. */
typedef struct {
    const char *id;                  /* in the store's prefetched_ids */
    uint64_t hash;
    ledger_transfer_record_t *found; /* NULL: not found; else malloc'ed, its metadata after it */
} pg_prefetched_t;

typedef struct pg_store {
    store_t base;                /* first: store.c finds the ops there */
    PGconn *conn;                /* the writer's connection; holds the writer's lock */
    PGconn *conn_next;           /* the writer's second connection (pipelined next parts), or NULL */
    bool conn_copying;           /* conn is a thread's (a first part's transfers going in): look up on conn_next */
    char *url;                   /* as given: readers connect with it */
    char *url_shown;             /* for messages: without the password */
    store_options_t options;
    uint32_t commit_count;
    store_shadow_t *shadow;
    store_dirty_t dirty;         /* accounts changed since the balance snapshot */
    uint64_t accounts_as_of_seq;
    uint64_t journal_head_seq;
    pg_prefetched_t *prefetched; /* valid until the batch ends */
    uint32_t prefetched_count;
    uint32_t *prefetched_slots;  /* open addressing by hash: index + 1, 0 empty */
    uint32_t prefetched_capacity; /* a power of two, twice the ids at least */
    char *prefetched_ids;        /* the ids' text, one after the other */
    store_bloom_t ids_bloom;     /* every transfer and burned id (pg_store.c's bloom_load); unmade: look up all */
    ledger_transfer_record_t *lookup_scratch; /* a lookup's record and metadata, valid until the next */
    const ledger_t *tx_ledger;   /* the batch being written (pg_tx_write_changes) */
    const ledger_changes_t *tx_changes;
    pg_copy_t events_copy;       /* the batch's events, sent before its COMMIT */
    pg_copy_t owners_copy;       /* and their owners */
    pc_status failed;
    bool writable;
    char error_detail[512];
} pg_store_t;

/* ---- pg_conn.c: connections, errors, values ---- */
/* Connects to 'url'; on failure fills 'detail' (one line) and returns
 * PC_STORE_OPEN_FAILED: a URL that does not parse, a server not reachable. */
pc_status pg_connect(const char *url, PGconn **out, char *detail, size_t detail_bytes);
/* pg_connect, but a URL asking for a writable server (target_session_attrs=read-write
 * or primary) is retried every STORE_WRITABLE_POLL_MS while none is, for up to
 * options->writable_wait_ms (0: one attempt), or until options->standby_continue says
 * stop (PC_SHUTTING_DOWN). */
pc_status pg_connect_wait(const char *url, const store_options_t *options, PGconn **out, char *detail,
                          size_t detail_bytes);
/* 'url' without its password, for messages (malloc'ed). */
char *pg_url_shown(const char *url);
/* The first line of the connection's error. */
const char *pg_error_line(PGconn *conn, char *buf, size_t buf_bytes);
/* One JSON log line on stderr (the store logs below obs/), 'detail' escaped. */
void pg_log_error(const char *msg, const char *code, const char *detail);
/* Records "what: error" as the store's detail; returns 'status'. */
pc_status pg_fail(pg_store_t *store, pc_status status, const char *what);
/* Runs 'sql' (no parameters, no rows wanted): true on success. */
bool pg_exec_ok(PGconn *conn, const char *sql);
/* Runs a query with text parameters; NULL on failure (the caller reads PQerrorMessage). */
PGresult *pg_query(PGconn *conn, const char *sql, int param_count, const char *const *params);
/* Runs a write with text parameters: PC_OK, or PC_STORE_COMMIT_FAILED (the batch
 * fails); *rows_out (optional) gets the rows it touched. */
pc_status pg_write(PGconn *conn, const char *sql, int param_count, const char *const *params, int64_t *rows_out);
/* A parameter's text for an unsigned integer: declares char name[24]. */
#define PG_U64(name, value) \
    char name[24];          \
    snprintf(name, sizeof name, "%" PRIu64, (uint64_t)(value))
int64_t pg_int(const PGresult *result, int row, int column);
/* Copies a bytea column (text form "\x...") into 'out' when it has exactly 'bytes'. */
bool pg_bytea(const PGresult *result, int row, int column, uint8_t *out, size_t bytes);
/* "\x" + hex of 'bytes' bytes into 'out' (2 * bytes + 3 room). */
void pg_bytea_text(const uint8_t *data, size_t bytes, char *out);
void pg_text_copy(char *dst, size_t dst_bytes, const PGresult *result, int row, int column);

void pg_copy_text(pg_copy_t *copy, const char *text);   /* NULL: \N */
void pg_copy_int(pg_copy_t *copy, int64_t value);
void pg_copy_bytea(pg_copy_t *copy, const uint8_t *data, size_t bytes);
void pg_copy_row_end(pg_copy_t *copy);
/* Sends the buffer with 'copy_sql' (COPY t(cols) FROM STDIN); frees it. */
bool pg_copy_send(PGconn *conn, const char *copy_sql, pg_copy_t *copy);
void pg_copy_free(pg_copy_t *copy);

/* A COPY ... FROM STDIN (FORMAT binary) sent while its rows are made: the server
 * inserts the first rows (their index entries: most of a batch's time there) while
 * the writer makes the next ones, and parses no text. Every STORE_PG_COPY_CHUNK_BYTES
 * the rows so far go out. Fields in the table's column types exactly (int8, int4,
 * text, bytea): binary COPY refuses a mismatch. */
typedef struct {
    PGconn *conn;
    pg_copy_t buffer;    /* what is made and not yet sent */
    bool failed;         /* the COPY did not start, or sending failed */
    bool hold;           /* keep every row until pg_stream_end_async */
    const char *deferred_sql; /* pg_stream_defer: the COPY, not started yet */
} pg_copy_stream_t;
/* Starts 'copy_sql' (COPY t(cols) FROM STDIN (FORMAT binary)). */
bool pg_stream_begin(pg_copy_stream_t *stream, PGconn *conn, const char *copy_sql);
void pg_stream_row(pg_copy_stream_t *stream, uint16_t field_count);
void pg_stream_int8(pg_copy_stream_t *stream, int64_t value);
void pg_stream_int4(pg_copy_stream_t *stream, int32_t value);
void pg_stream_text(pg_copy_stream_t *stream, const char *text); /* NULL: a null */
void pg_stream_null(pg_copy_stream_t *stream);
void pg_stream_int8_array(pg_copy_stream_t *stream, const int64_t *values, uint32_t count); /* bigint[] */
/* A stream whose rows are kept and whose COPY starts only when it ends (after another
 * COPY on the same connection: pg_stream_end_async's 'then', or pg_stream_end). */
void pg_stream_defer(pg_copy_stream_t *stream, PGconn *conn, const char *copy_sql);
void pg_stream_bytes(pg_copy_stream_t *stream, const uint8_t *data, size_t bytes);
/* Ends the COPY (or aborts it after a failure) and frees: true when every row is in. */
bool pg_stream_end(pg_copy_stream_t *stream);
/* Keeps every row until pg_stream_end_async, with room for 'bytes' made now. */
void pg_stream_hold(pg_copy_stream_t *stream, size_t bytes);
/* A held stream's rows sent and its COPY ended by a thread of its own, so that the
 * server inserts them while the writer goes on (pg_tx.c's pipeline), then those of
 * 'then' (a deferred stream on the same connection, or NULL); the connection is the
 * thread's until pg_stream_join, which frees and says what pg_stream_end would have
 * for both. NULL only when out of memory (the COPYs are then ended, failed). */
typedef struct pg_copy_async pg_copy_async_t;
pg_copy_async_t *pg_stream_end_async(pg_copy_stream_t *stream, pg_copy_stream_t *then);
bool pg_stream_join(pg_copy_async_t *async);

/* Row decoding, columns as in pg_store.c's TRANSFER_COLUMNS / ACCOUNT_COLUMNS;
 * metadata_json points into 'result'. */
void pg_transfer_from_row(const PGresult *result, int row, ledger_transfer_t *out);
/* The one transfer a "SELECT PG_TRANSFER_COLUMNS ... WHERE id = $1" found into 'out'
 * (metadata copied: out->metadata_owned); PC_NOT_FOUND when none. Clears 'result'. */
/* Row 'row' of 'result' (PG_TRANSFER_COLUMNS, then the pending state) into 'out', its
 * metadata copied (out->metadata_owned). */
void pg_transfer_row_take(PGresult *result, int row, store_transfer_t *out);
pc_status pg_transfer_result_take(PGresult *result, store_transfer_t *out);
void pg_account_from_row(const PGresult *result, int row, ledger_account_t *out);
/* A transfer row names its accounts by number (schema v9): read with their ids,
 * "SELECT " PG_TRANSFER_COLUMNS " FROM " PG_TRANSFERS_FROM " WHERE t.id = $1". */
#define PG_TRANSFER_COLUMNS \
    "t.timestamp, t.id, d.id, c.id, t.amount, t.currency, t.code, t.flags, t.pending_id," \
    " t.timeout_s, t.metadata, t.pending_state"
#define PG_TRANSFERS_FROM "transfers t JOIN accounts d ON d.no = t.debit_no JOIN accounts c ON c.no = t.credit_no"
/* Every timestamp of the account_transfers row 'e' (schema v16: the array holds those
 * before the last, null when none; the last is the key). */
#define PG_ACCOUNT_ROW_TIMESTAMPS(e) "array_append(" e ".timestamps, " e ".timestamp_last)"
#define PG_ACCOUNT_COLUMNS \
    "id, currency, code, flags, debits_pending, debits_posted, credits_pending, credits_posted," \
    " timestamp, metadata, no"

/* ---- pg_settings.c ---- */
/* PC_STORE_NOT_DURABLE with 'detail' naming the setting when the server runs with
 * fsync or synchronous_commit off (the writer refuses to start on it). */
pc_status pg_settings_check(PGconn *conn, char *detail, size_t detail_bytes);

/* ---- pg_schema.c ---- */
int pg_schema_version_latest(void);
/* What the database holds: *version = -1 when it has no paycore_meta (with
 * *other_tables the count of other tables in the current schema), -2 when its
 * paycore_meta has no format 'paycore' and schema_version; PC_STORE_READ_FAILED with
 * 'detail' when it cannot be read. */
pc_status pg_schema_read(PGconn *conn, int *version, int64_t *other_tables, char *detail, size_t detail_bytes);
/* Checks what 'conn' holds: a paycore database of a version this paycore reads, an
 * empty one (created when 'create'), or refuses with the code and 'detail'; then
 * migrates to the latest version. The writer's lock is held. */
pc_status pg_schema_prepare(PGconn *conn, bool create, char *detail, size_t detail_bytes);

/* ---- pg_tx.c ---- */
pc_status pg_tx_begin(store_t *store, store_tx_t **out);
pc_status pg_tx_write_changes(store_tx_t *tx, const ledger_t *ledger, const ledger_changes_t *changes,
                              uint64_t batch_seq, journal_content_t *content);
pc_status pg_tx_write_journal(store_tx_t *tx, const journal_entry_t *entry, const journal_checkpoint_t *checkpoint);
pc_status pg_tx_commit(store_tx_t *tx);
pc_status pg_tx_begin_next(store_tx_t *first, store_tx_t **out);
void pg_tx_rollback(store_tx_t *tx);
pc_status pg_balance_snapshot(store_t *store, const ledger_t *ledger);
pc_status pg_probe(store_t *store);
PGconn *pg_tx_conn(store_tx_t *tx);
void pg_prefetch_clear(pg_store_t *store);
/* An id the writer writes (a transfer's, a burned one) joins the ids' filter, whether
 * its transaction then commits or not (the filter may say "maybe" wrongly, never "no"). */
void pg_bloom_id_add(pg_store_t *store, const char *id);

/* ---- pg_read.c ---- */
pc_status pg_reader_open(store_t *store, store_reader_t **out);
void pg_reader_close(store_reader_t *reader);
PGconn *pg_reader_conn(store_reader_t *reader);
pc_status pg_read_account(store_reader_t *reader, const char *id, store_account_t *out);
pc_status pg_read_transfer(store_reader_t *reader, const char *id, store_transfer_t *out);
pc_status pg_list_accounts(store_reader_t *reader, const store_query_t *query, store_account_fn fn, void *ctx,
                           bool *has_more);
pc_status pg_list_accounts_granted(store_reader_t *reader, const char *key_id, const store_query_t *query,
                                   store_account_fn fn, void *ctx, bool *has_more);
pc_status pg_list_account_transfers(store_reader_t *reader, const char *account_id, const store_query_t *query,
                                    store_transfer_fn fn, void *ctx, bool *has_more);
pc_status pg_list_history(store_reader_t *reader, const char *account_id, const store_query_t *query,
                          store_history_fn fn, void *ctx, bool *has_more);
pc_status pg_conn_list_account_transfers(PGconn *conn, const char *account_id, const store_query_t *query,
                                         store_transfer_fn fn, void *ctx, bool *has_more);
pc_status pg_conn_list_history(PGconn *conn, const char *account_id, const store_query_t *query,
                               store_history_fn fn, void *ctx, bool *has_more);
/* A set's list of accounts on one shard as of journal seq 'as_of' (store_shard_list_as_of
 * without a shadow: the balances always from the rows), and the journal's head. */
pc_status pg_conn_list_as_of(PGconn *conn, const char *key_id, const store_query_t *query, uint64_t as_of,
                             store_account_fn fn, void *ctx, bool *has_more);
pc_status pg_conn_journal_head(PGconn *conn, uint64_t *seq_out);

/* ---- pg_api.c, pg_events.c ---- */
extern const store_api_ops_t store_pg_api_ops;
extern const store_events_ops_t store_pg_events_ops;
extern const store_payments_ops_t store_pg_payments_ops; /* pg_payments.c */

/* The vault's re-encryption (store_payments.h: store_vault_cards_not_under,
 * store_vault_card_rekey, store_vault_key_retire). pg_vault.c. */
pc_status store_pg_vault_cards_not_under(store_reader_t *reader, const char *key_id, const char *after_token,
                                        uint32_t limit, store_vault_card_fn fn, void *ctx);
pc_status store_pg_vault_card_rekey(store_tx_t *tx, const store_vault_card_t *card, const char *from_key_id);
pc_status store_pg_vault_key_retire(store_tx_t *tx, const char *key_id, bool *retired);
/* Sends the batch's gathered events and owners (before COMMIT, or before a statement
 * that reads the events table); discard drops them (rollback). */
pc_status pg_events_flush(pg_store_t *store);
void pg_events_discard(pg_store_t *store);

#endif
